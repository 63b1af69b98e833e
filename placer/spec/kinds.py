"""One typed model per fleet kind (SPEC section 1), strict and closed.

Field names are camelCase in YAML and snake_case in Python. Unknown fields are errors
(with a "did you mean" suggestion added by the loader). Rule parameters live in
``placer.spec.rules``.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from placer.spec.rules import Rule

API_VERSION = "placer.dev/v1alpha1"
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# GPU type names are product names (H100-80GB): the built-in catalog is not DNS-1123.
GPU_TYPE_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")

VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]{0,511}")
Environment = Literal["onprem", "cloud", "edge"]
Provider = Literal["kubernetes", "aws", "gcp", "static"]
Workload = Literal["inference", "training", "batch"]
# Every number has a ceiling far above any fleet, so that every figure a plan reports stays a
# number: a rate of 1.7e308 made the plan's objective Infinity (no JSON), and a price of 1e100 a
# solver that "found no placement within 30 s" (its numbers, not its time, were the trouble)
MOST = 1e12  # rates, prices, GB, ms, seconds: a trillion
MOST_COUNT = 1_000_000  # nodes, replicas
NonNeg = Annotated[float, Field(ge=0, le=MOST)]
Positive = Annotated[float, Field(gt=0, le=MOST)]
Count = Annotated[int, Field(ge=0, le=MOST_COUNT)]


class Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, alias_generator=to_camel, populate_by_name=True,
        allow_inf_nan=False,
    )


# what the Kubernetes API server accepts (apimachinery's validation), checked here so that a
# manifest placer renders is not refused at apply time: kubernetes-validate checks types only
K8S_NAME = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)")
K8S_PREFIX = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _label_key(key: str) -> str | None:
    """Why ``key`` is no label key (``[prefix/]name``), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not K8S_PREFIX.fullmatch(prefix)):
        return f"{key!r}: its prefix before '/' must be a DNS subdomain (example.com)"
    if not K8S_NAME.fullmatch(name):
        return (f"{key!r}: its name must be 63 characters at most of letters, digits, '-', '_' or '.', starting and "
                "ending with a letter or digit")
    return None


def lookalike(text: str) -> str:
    """"; 'e' in it is CYRILLIC SMALL LETTER IE (U+0435), no ASCII letter" for the first character of
    ``text`` beyond ASCII, or '': such a letter looks like the ASCII one on screen and in review, and
    matches no selector that names the ASCII one."""
    char = next((c for c in text if not c.isascii()), None)
    if char is None:
        return ""
    return f"; {char!r} in it is {unicodedata.name(char, 'a character')} (U+{ord(char):04X}), no ASCII letter"


LABEL_VALUE_RULE = "63 characters at most of ASCII letters, digits, '-', '_' or '.', starting and ending with a letter or digit"


def label_key(key: str) -> str:
    """``key`` as a label key (``[prefix/]name``, as Kubernetes takes it), or a ValueError saying why it is none."""
    if why := _label_key(key):
        raise ValueError(f"label key {why}{lookalike(key)}")
    return key


def _not_label_value(value: str, after: str = "") -> str | None:
    """Why ``value`` has no label value's form (K8S_NAME; empty has none), or None: the rule, ``after`` it,
    and a lookalike letter in it. The one check of label values, jurisdictions, failure domains,
    tolerations' and nodeSelectors' values, all compared as text (by selectors, by Kubernetes)."""
    return None if K8S_NAME.fullmatch(value) else f"{LABEL_VALUE_RULE}{after}{lookalike(value)}"


def label_value(value: str) -> str:
    """``value`` as a label value (empty, or a Kubernetes label value), or a ValueError saying why it is none:
    a label's text is matched by selectors and quoted in plans and pull-request comments, where a
    value of `@org/team ![x](https://...)` mentioned the team and showed the image, and a `data: eu`
    whose e was a Cyrillic one (U+0435) passed review as it and escaped every policy selecting `data: eu`."""
    if value and (why := _not_label_value(value, ", as Kubernetes takes labels")):
        raise ValueError(f"{value!r} is no label value: {why}")
    return value


def code_word(what: str, example: str) -> AfterValidator:
    """A check that a ``what`` (a jurisdiction, a failure domain) is a label value's form and not empty:
    selectors and the spread rule compare it as text, so a lookalike letter (a jurisdiction US whose S
    was a Cyrillic one, U+0405) passed review as US and escaped a required denyPools of US."""

    def check(value: str) -> str:
        if why := _not_label_value(value, f", e.g. {example}"):
            raise ValueError(f"{value!r} is no {what}: {why}")
        return value

    return AfterValidator(check)


LabelKey = Annotated[str, AfterValidator(label_key)]
LabelValue = Annotated[str, AfterValidator(label_value)]
Jurisdiction = Annotated[str, code_word("jurisdiction", "EU, US or DE-BY")]
FailureDomain = Annotated[str, code_word("failure domain", "rack-2 or eu-west-1a")]


class Metadata(Strict):
    name: str
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


# ---------------------------------------------------------------- Location, Link, GPUType


class LocationSpec(Strict):
    environment: Environment
    jurisdiction: Jurisdiction | None = None
    local_latency_ms: NonNeg = 1.0


class LinkSpec(Strict):
    between: list[str] = Field(min_length=2, max_length=2)
    latency_ms: Positive
    egress_usd_per_gb: NonNeg = Field(default=0.0, alias="egressUsdPerGB")

    @field_validator("between")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if v[0] == v[1]:
            raise ValueError("a link joins two distinct locations")
        return v


class GPUTypeSpec(Strict):
    memory_gi_b: Positive = Field(alias="memoryGiB")
    vendor: str | None = None
    family: str | None = None


# ---------------------------------------------------------------- Pool


class PoolGpu(Strict):
    type: str
    per_node: int = Field(ge=1, le=1024)


class PoolNodes(Strict):
    count: Count | None = None
    min: Count | None = None
    max: Count | None = None

    @model_validator(mode="after")
    def _shape(self) -> PoolNodes:
        if self.count is not None:
            if self.min is not None or self.max is not None:
                raise ValueError("give either count (fixed capacity) or min and max (elastic), not both")
        elif self.min is None or self.max is None:
            raise ValueError("give count (fixed capacity) or both min and max (elastic)")
        elif self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self

    @property
    def elastic(self) -> bool:
        return self.count is None

    @property
    def lower(self) -> int:
        return self.count if self.count is not None else int(self.min or 0)

    @property
    def upper(self) -> int:
        return self.count if self.count is not None else int(self.max or 0)


class Toleration(Strict):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None

    @model_validator(mode="after")
    def _as_kubernetes_takes_it(self) -> Toleration:
        if self.key and (why := _label_key(self.key)):
            raise ValueError(f"key {why}")
        if self.operator == "Exists" and self.value:
            raise ValueError("operator Exists takes no value (Kubernetes refuses one); drop value or use Equal")
        if not self.key and self.operator != "Exists":
            raise ValueError("a toleration without a key needs operator: Exists (it then tolerates every taint)")
        if self.value and (why := _not_label_value(self.value)):
            raise ValueError(f"value {self.value!r} is no label value: {why}")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds applies to effect NoExecute only (Kubernetes refuses it otherwise)")
        return self


class KubernetesTarget(Strict):
    context: str | None = None
    namespace: str = "default"
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)

    @model_validator(mode="after")
    def _as_kubernetes_takes_it(self) -> KubernetesTarget:
        # every problem at once (validate named the first only, and the next after it was fixed)
        problems = []
        if len(self.namespace) > 63 or not DNS1123_LABEL.fullmatch(self.namespace):
            problems.append(f"namespace {self.namespace!r} is no Kubernetes namespace: 63 characters at most of "
                            "lower-case letters, digits and '-', starting and ending with a letter or digit")
        for key, value in self.node_selector.items():
            if why := _label_key(key):
                problems.append(f"nodeSelector key {why}")
            if value and (why := _not_label_value(value)):
                problems.append(f"nodeSelector value {value!r} (of {key}) is no label value: {why}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


# what the AWS and GCP APIs accept as these names: a fleet that passed validate was refused at
# `terraform apply` (an EKS node group "g6_12xlarge.big", a GPU type with a dot in a GCP label)
EKS_NAME = re.compile(r"[0-9A-Za-z][A-Za-z0-9_-]*")
GCP_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
# a project ID: lowercase letters, digits and '-', a letter first, no '-' last (6 to 30 for a project made
# today; the length is not checked, older rules made shorter ones), or a domain-scoped one (example.com:ml);
# or the project's number, which the Compute API, gcloud's --project and Terraform take in its place
# (`discover gcp --project 123456789012` wrote it, and the pools it found were skipped as refused)
GCP_PROJECT = re.compile(r"([a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?:)?[a-z]([-a-z0-9]{0,61}[a-z0-9])?|[1-9][0-9]{0,29}")
# an Auto Scaling group's: 1 to 255 ASCII characters 33 to 126 but ':' (AWS' CreateAutoScalingGroup);
# one of 256 failed terraform plan, an empty one made terraform name the group itself
ASG_NAME = re.compile(r"[!-9;-~]{1,255}")
# a GCP region's form (us-central1, europe-west4, northamerica-northeast2) and a zone's (the region and a
# letter): placer has no list of GCP's regions (google-cloud-compute ships none), so only the form is checked
GCP_REGION = re.compile(r"[a-z]+-[a-z]+[0-9]+")
GCP_ZONE = re.compile(r"[a-z]+-[a-z]+[0-9]+-[a-z]")
AWS_REGION_FORM = re.compile(r"[a-z]{2,4}(-[a-z]+)+-[0-9]+")  # eu-west-1, us-gov-west-1: botocore's list decides


class EksTarget(Strict):
    cluster: str
    nodegroup: str

    @field_validator("cluster", "nodegroup")
    @classmethod
    def _eks_name(cls, v: str, info: ValidationInfo) -> str:
        most = 100 if info.field_name == "cluster" else 63
        if not EKS_NAME.fullmatch(v) or len(v) > most:
            raise ValueError(f"{v!r} is no EKS {'cluster' if most == 100 else 'node group'} name: use letters, "
                             f"digits, - and _ (up to {most}, starting with a letter or digit), as EKS requires")
        return v


class AwsTarget(Strict):
    region: str
    auto_scaling_group_name: str | None = None
    eks: EksTarget | None = None

    @field_validator("auto_scaling_group_name")
    @classmethod
    def _asg_name(cls, v: str | None) -> str | None:
        if v is not None and not ASG_NAME.fullmatch(v):
            raise ValueError(f"{v!r} is no Auto Scaling group name: use 1 to 255 ASCII letters, digits and "
                             "punctuation, without spaces or ':', as AWS requires")
        return v

    @model_validator(mode="after")
    def _one(self) -> AwsTarget:
        if (self.auto_scaling_group_name is None) == (self.eks is None):
            raise ValueError("give exactly one of autoScalingGroupName or eks {cluster, nodegroup}")
        return self


def _lowercase(v: str, form: re.Pattern[str]) -> str:
    """'; did you mean X?' where ``v`` in lowercase has the ``form``, or ''."""
    return f"; did you mean {v.lower()!r}?" if form.fullmatch(v.lower()) else ""


class GcpTarget(Strict):
    project: str
    zone: str | None = None
    region: str | None = None
    instance_group_manager: str

    @field_validator("project")
    @classmethod
    def _gcp_project(cls, v: str) -> str:
        # any text passed: it went into the tfvars, the API's URLs and the gcloud commands errors print
        # (`--project proj; rm -rf ~`), and GCP refused it only at apply time
        if not GCP_PROJECT.fullmatch(v):
            raise ValueError(f"{v!r} is no GCP project ID: use lowercase letters, digits and - (starting with a "
                             f"letter, not ending with -), as GCP requires, e.g. acme-ml-prod, or the project's number "
                             f"(123456789012){_lowercase(v, GCP_PROJECT)}{lookalike(v)}")
        return v

    @field_validator("instance_group_manager")
    @classmethod
    def _gcp_name(cls, v: str) -> str:
        if not GCP_NAME.fullmatch(v):
            raise ValueError(f"{v!r} is no managed instance group name: use lowercase letters, digits and - (up "
                             "to 63, starting with a letter, not ending with -), as GCP requires")
        return v

    @field_validator("region")
    @classmethod
    def _gcp_region(cls, v: str | None) -> str | None:
        if v is None or GCP_REGION.fullmatch(v):
            return v
        if GCP_ZONE.fullmatch(v):
            raise ValueError(f"{v!r} is a zone, not a region: give zone: {v} (a zonal group), or region: "
                             f"{v.rsplit('-', 1)[0]} (a regional group)")
        aws = " (an AWS region's form)" if AWS_REGION_FORM.fullmatch(v) else ""
        raise ValueError(f"{v!r} is no GCP region name{aws}: GCP's are like us-central1 or europe-west4 (lowercase, "
                         f"a number at the end){_lowercase(v, GCP_REGION)}")

    @field_validator("zone")
    @classmethod
    def _gcp_zone(cls, v: str | None) -> str | None:
        if v is None or GCP_ZONE.fullmatch(v):
            return v
        if GCP_REGION.fullmatch(v):
            raise ValueError(f"{v!r} is a region, not a zone: give zone: {v}-a (or the zone of another letter "
                             f"the group is in), or region: {v} (a regional group)")
        raise ValueError(f"{v!r} is no GCP zone name: GCP's are a region and a letter, like us-central1-a or "
                         f"europe-west4-b{_lowercase(v, GCP_ZONE)}")

    @model_validator(mode="after")
    def _one(self) -> GcpTarget:
        if (self.zone is None) == (self.region is None):
            raise ValueError("give exactly one of zone (zonal group) or region (regional group)")
        return self


class PoolTarget(Strict):
    kubernetes: KubernetesTarget | None = None
    aws: AwsTarget | None = None
    gcp: GcpTarget | None = None


class PoolSpec(Strict):
    location: str
    provider: Provider
    gpu: PoolGpu
    nodes: PoolNodes
    usd_per_gpu_hour: NonNeg
    spot: bool = False
    failure_domain: FailureDomain | None = None
    target: PoolTarget = Field(default_factory=PoolTarget)


# ---------------------------------------------------------------- Model


class Replica(Strict):
    gpus: int = Field(ge=1, le=1024)
    memory_gi_b_per_gpu: Positive = Field(alias="memoryGiBPerGpu")


class Demand(Strict):
    location: str
    rate: NonNeg
    latency_slo_ms: Positive | None = None


class DataSource(Strict):
    location: str
    gb_per_hour: NonNeg


def image_reference(v: str | None) -> str | None:
    """``v`` as a model's ``image`` (or a plan's deployment target's), or a ValueError saying why it is none."""
    if v is not None and not IMAGE.fullmatch(v):
        raise ValueError(f"{v!r} is no image reference: registry/name:tag or registry/name@sha256:..., with no "
                         "spaces or quotes")
    return v


def version_word(v: str | None) -> str | None:
    """``v`` as a model's ``version`` (or a plan's deployment target's), or a ValueError saying why it is none:
    it becomes an image tag and a label, and is shown in plans and pull-request comments (a line
    break or backticks in it broke the comment)."""
    if v is not None and not VERSION.fullmatch(v):
        raise ValueError(f"{v!r} is no version: use letters, digits and . _ + - (up to 128, starting with a "
                         "letter or digit), e.g. 1.4.2, 3.0+cuda12.4 or 2026-11-01")
    return v


class ModelSpec(Strict):
    workload: Workload = "inference"
    version: str | None = None
    image: str | None = None
    replica: Replica
    gpu_types: list[str] | None = None
    throughput: dict[str, Positive] = Field(default_factory=dict)
    demand: list[Demand] = Field(default_factory=list)
    min_replicas: Count | None = None
    max_replicas: Count | None = None
    replicas: int | None = Field(default=None, ge=1, le=MOST_COUNT)
    gang: bool | None = None
    data: list[DataSource] = Field(default_factory=list)
    spot_tolerant: bool = False
    priority: int = Field(default=0, ge=-MOST_COUNT, le=MOST_COUNT)
    last_used: dt.date | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        # `version: 2` and `version: 1.5` are natural to write; keep them as text.
        if isinstance(v, int | float) and not isinstance(v, bool):
            return str(v)
        if isinstance(v, dt.date):
            return v.isoformat()
        return v

    @field_validator("image")
    @classmethod
    def _image_reference(cls, v: str | None) -> str | None:
        return image_reference(v)

    @field_validator("version")
    @classmethod
    def _version_word(cls, v: str | None) -> str | None:
        return version_word(v)

    @field_validator("last_used", mode="before")
    @classmethod
    def _date_text(cls, v: Any) -> Any:
        if isinstance(v, dt.datetime):
            return v.date()
        if isinstance(v, str):
            try:
                return dt.date.fromisoformat(v)
            except ValueError:
                raise ValueError(f"{v!r} is not a date (YYYY-MM-DD)") from None
        return v

    @property
    def gang_effective(self) -> bool:
        if self.gang is not None:
            return self.gang
        return self.workload == "training"


# ---------------------------------------------------------------- Policy


def _as_list(v: Any) -> Any:
    if isinstance(v, str | bool):
        return [v]
    return v


# the selector fields that take one value for a list of one (`names: chat`, `spot: true`)
SELECTOR_LISTS = ("names", "environment", "provider", "jurisdiction", "location", "gpu_type", "workload", "spot")


class Selector(Strict):
    """Fields are ANDed; the values of one field ORed. Which fields apply depends on the kind."""

    names: list[str] | None = None
    labels: dict[LabelKey, LabelValue] | None = None
    environment: list[Environment] | None = None
    provider: list[Provider] | None = None
    jurisdiction: list[Jurisdiction] | None = None
    location: list[str] | None = None
    gpu_type: list[str] | None = None
    workload: list[Workload] | None = None
    spot: list[bool] | None = None

    @field_validator(*SELECTOR_LISTS, mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return _as_list(v)


MODEL_SELECTOR_FIELDS = frozenset({"names", "labels", "workload"})
POOL_SELECTOR_FIELDS = frozenset(
    {"names", "labels", "environment", "provider", "jurisdiction", "location", "gpu_type", "spot"}
)


class PolicySpec(Strict):
    enforcement: Literal["required", "preferred"] = "required"
    penalty_usd_per_hour: NonNeg | None = None
    description: str | None = None
    models: Selector = Field(default_factory=Selector)
    pools: Selector = Field(default_factory=Selector)
    rule: Rule



# ---------------------------------------------------------------- Settings


class ObjectiveSettings(Strict):
    latency_usd_per_ms_per1k_rate: NonNeg = Field(default=0.0001, alias="latencyUsdPerMsPer1kRate")
    unmet_usd_per_rate: NonNeg = 1.0
    unmet_usd_per_replica: NonNeg = 1000.0
    churn_usd_per_replica: NonNeg = 0.5


class SolverSettings(Strict):
    time_limit_seconds: Positive = 30.0
    relative_gap: NonNeg = 0.001
    workers: int | None = Field(default=None, ge=1)
    # after this many applied re-plans in a row (the state's history), the next plan searches the
    # whole fleet, as `placer plan --full-search` does: successive short re-plans drift dearer
    # (docs/optimizer.md, "Re-plan drift"); 0: never by itself
    full_search_every: int = Field(default=5, ge=0)


URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+)://(.*)", re.DOTALL)  # two letters at least: not a drive (C://)
# what botocore takes (an ARN aside): its checks, made at the first S3 call
BUCKET = re.compile(r"[a-zA-Z0-9.\-_]{1,255}")
REGION = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?")
ENDPOINT = re.compile(r"https?://[^\s/?#]+(/\S*)?", re.IGNORECASE)


def state_url(path: str) -> tuple[str, str] | None:
    """(what URL ``path`` is, how to name that state), where ``path``, given as a local state file, is a
    URL; None when it is none. Read as a path, `s3://b/k` was the file s3:/b/k here: none, so plan
    planned as if nothing had ever been applied, and apply recorded into that file."""
    found = URL.match(path.strip())
    if found is None:
        return None
    scheme, rest = found.group(1).lower(), found.group(2)
    bucket, _, key = rest.partition("/") if scheme == "s3" else ("", "", "")
    how = (f"name that state in the fleet's Settings as state: {{backend: s3, bucket: {bucket or 'BUCKET'}, key: "
           f"{key or 'KEY'}}}")
    if scheme != "s3":
        return f"a {scheme}:// URL", f"placer keeps its state in a local file or in S3: {how.split(' as ', 1)[1]}"
    return "an S3 URL", how


class StateSettings(Strict):
    backend: Literal["local", "s3"] = "local"
    path: str = ".placer/state.json"
    bucket: str | None = None
    key: str | None = None
    region: str | None = None
    endpoint_url: str | None = None

    @field_validator("path")
    @classmethod
    def _a_file(cls, v: str) -> str:
        # '' and '/' passed validate, and plan failed on an internal error
        if not v.strip() or v.endswith(("/", "\\")) or v.rstrip("/").split("/")[-1] in (".", ".."):
            raise ValueError(f"{v!r} names no file: give the state file's path, e.g. .placer/state.json")
        url = state_url(v)
        if url:  # a local file named s3:/b/k here, and the S3 state unread
            raise ValueError(f"{v!r} is {url[0]}, and path names a local state file: {url[1]}")
        return v

    @field_validator("bucket")
    @classmethod
    def _a_bucket(cls, v: str | None) -> str | None:
        # S3 refused them only at the first read, in botocore's words: 'Invalid bucket name "s3://b": Bucket
        # name must match the regex "^[a-zA-Z0-9.\-_]{1,255}$" or be an ARN matching the regex ...'
        if v is None or v.startswith("arn:") or BUCKET.fullmatch(v):
            return v
        url = URL.match(v)
        if url:
            # it said "key: envs" of s3://b/envs, whatever key named: the state read from there, another
            # object than meant (or none), and the plan was made as if nothing had been applied
            bucket, _, folder = url.group(2).partition("/")
            folder = folder.strip("/")
            raise ValueError(f"{v!r} is a URL: give the bucket's name alone, bucket: {bucket or 'BUCKET'}"
                             + (f", and start key with the URL's path, key: {folder}/... (the object's name under "
                                f"it; key: {folder} where the URL named the state object itself)" if folder else ""))
        if "/" in v:
            bucket, _, folder = v.partition("/")
            raise ValueError(f"{v!r} holds a '/', which no bucket's name does: put the folder at the start of key "
                             f"(bucket: {bucket}, key: {folder.rstrip('/')}/...)")
        raise ValueError(f"{v!r} is no bucket name: give the S3 bucket's name (letters, digits, '.', '-' and '_', "
                         "at most 255), or an access point's ARN")

    @field_validator("key")
    @classmethod
    def _a_key(cls, v: str | None) -> str | None:
        if v is not None and URL.match(v):
            raise ValueError(f"{v!r} is a URL: key is the object's name in the bucket (e.g. envs/prod/placer.json), "
                             "and the bucket is named in bucket")
        return v

    @field_validator("endpoint_url")
    @classmethod
    def _an_endpoint(cls, v: str | None) -> str | None:
        # botocore said only "cannot create an S3 client: Invalid endpoint: localhost:9000", at the first read
        if v is not None and not ENDPOINT.fullmatch(v):
            raise ValueError(f"{v!r} is no endpoint URL: give it with its scheme, e.g. http://localhost:9000 or "
                             "https://s3.eu-west-1.amazonaws.com")
        return v

    @field_validator("region")
    @classmethod
    def _a_region(cls, v: str | None) -> str | None:
        # botocore: "Provided region_name 'eu west 1' doesn't match a supported format.", at the first read
        if v is not None and not REGION.fullmatch(v):
            raise ValueError(f"{v!r} is no region name: give the bucket's AWS region, e.g. eu-west-1")
        return v

    @model_validator(mode="after")
    def _s3(self) -> StateSettings:
        if self.backend == "s3" and (not self.bucket or not self.key):
            raise ValueError("the s3 state backend needs bucket and key")
        return self


class ApplySettings(Strict):
    mode: Literal["live", "gitops"] = "live"
    directory: str = "deploy"
    parallelism: int = Field(default=4, ge=1)
    health_timeout_seconds: Positive = 600.0

    @field_validator("directory")
    @classmethod
    def _a_folder(cls, v: str) -> str:
        if not v.strip():
            raise ValueError(f"{v!r} names no folder: give the folder the gitops apply writes into, e.g. ../deploy")
        return v


class SettingsSpec(Strict):
    objective: ObjectiveSettings = Field(default_factory=ObjectiveSettings)
    solver: SolverSettings = Field(default_factory=SolverSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    apply: ApplySettings = Field(default_factory=ApplySettings)


SPEC_TYPES: dict[str, type[Strict]] = {
    "Location": LocationSpec,
    "Link": LinkSpec,
    "GPUType": GPUTypeSpec,
    "Pool": PoolSpec,
    "Model": ModelSpec,
    "Policy": PolicySpec,
    "Settings": SettingsSpec,
}
KINDS = tuple(SPEC_TYPES)
