"""AWS provider: sizes of Auto Scaling groups and EKS managed node groups, and GPU pool discovery (boto3).

An elastic pool on AWS is either an Auto Scaling group (``target.aws.autoScalingGroupName``) or
an EKS managed node group (``target.aws.eks {cluster, nodegroup}``). ``apply`` only moves the
desired size inside the group's own MinSize..MaxSize: the groups themselves belong to whoever
created them (Terraform, eksctl), so placer never creates, resizes the limits of, or deletes them.
Retrying with backoff is the apply engine's job; botocore's own retries are kept short and bounded.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from placer.catalog import match_product
from placer.planfile import Change
from placer.spec.kinds import API_VERSION
from providers.base import Discovered, ProviderError, guard, pool_nodes, retryable_http

T = TypeVar("T")

# Error codes AWS services use for "slow down" and for transient server-side conditions.
THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "RequestLimitExceeded", "TooManyRequestsException", "RequestThrottled", "SlowDown",
    "EC2ThrottledException", "BandwidthLimitExceeded", "ProvisionedThroughputExceededException",
})
TRANSIENT_CODES = frozenset({
    "ScalingActivityInProgress", "ResourceContention", "ResourceInUseException", "PriorRequestNotComplete",
    "ServiceUnavailable", "ServiceUnavailableException", "InternalFailure", "InternalError",
    "InternalServerError", "ServerException", "RequestTimeout", "RequestTimeoutException",
})
AUTH_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "InvalidClientTokenId",
    "UnrecognizedClientException", "ExpiredToken", "ExpiredTokenException", "AuthFailure",
    "SignatureDoesNotMatch", "InvalidSignatureException", "MissingAuthenticationToken",
})
CREDENTIALS_HINT = ("check the AWS credentials placer runs with (AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY) and that they allow this call")

# Approximate on-demand list prices, USD per instance-hour, Linux, us-east-1, mid-2025. Other regions,
# spot, reservations and savings plans differ: discovery says so and the operator reviews them.
APPROX_ON_DEMAND_USD_PER_HOUR: dict[str, float] = {
    "p5.48xlarge": 55.04, "p4de.24xlarge": 27.45, "p4d.24xlarge": 21.96,
    "g6e.xlarge": 1.861, "g6e.2xlarge": 2.242, "g6e.4xlarge": 3.004, "g6e.8xlarge": 4.529,
    "g6e.12xlarge": 10.493, "g6e.16xlarge": 7.577, "g6e.24xlarge": 15.066, "g6e.48xlarge": 30.131,
    "g6.xlarge": 0.805, "g6.2xlarge": 0.978, "g6.4xlarge": 1.323, "g6.8xlarge": 2.014,
    "g6.12xlarge": 4.602, "g6.16xlarge": 3.397, "g6.24xlarge": 6.675, "g6.48xlarge": 13.350,
    "g5.xlarge": 1.006, "g5.2xlarge": 1.212, "g5.4xlarge": 1.624, "g5.8xlarge": 2.448,
    "g5.12xlarge": 5.672, "g5.16xlarge": 4.096, "g5.24xlarge": 8.144, "g5.48xlarge": 16.288,
    "g4dn.xlarge": 0.526, "g4dn.2xlarge": 0.752, "g4dn.4xlarge": 1.204, "g4dn.8xlarge": 2.176,
    "g4dn.12xlarge": 3.912, "g4dn.16xlarge": 4.352, "g4dn.metal": 7.824,
}
# A discovered GPU maps onto a catalog type only if its memory is this close to the catalog's.
CATALOG_MEMORY_TOLERANCE = 0.15
EKS_NODEGROUP_TAG = "eks:nodegroup-name"
FAILED_NODEGROUP_STATES = frozenset({"CREATE_FAILED", "DELETE_FAILED", "DELETING"})


# ---------------------------------------------------------------- errors


def _client_error_parts(exc: ClientError) -> tuple[str, str, int | None]:
    error = exc.response.get("Error", {}) or {}
    status = (exc.response.get("ResponseMetadata", {}) or {}).get("HTTPStatusCode")
    return str(error.get("Code", "")), str(error.get("Message", "")), status


def classify(exc: Exception, what: str, endpoint: str | None = None) -> ProviderError | None:
    """Turn a botocore exception into a ProviderError that says what failed and whether a retry may help."""
    where = f" at {endpoint}" if endpoint else ""
    if isinstance(exc, ClientError):
        code, message, status = _client_error_parts(exc)
        detail = f"{code}: {message}" if message else code
        if code in THROTTLING_CODES or status == 429:
            return ProviderError(f"AWS throttled the request to {what} ({detail}); retry later, "
                                 "or lower apply parallelism", retryable=True)
        if code in TRANSIENT_CODES or retryable_http(status):
            return ProviderError(f"AWS could not {what} for now (HTTP {status}, {detail}); retry",
                                 retryable=True)
        if code in AUTH_CODES or status in (401, 403):
            return ProviderError(f"AWS refused to {what} ({detail}): {CREDENTIALS_HINT}", retryable=False)
        return ProviderError(f"AWS rejected the request to {what} (HTTP {status}, {detail})", retryable=False)
    if isinstance(exc, ReadTimeoutError | ConnectTimeoutError):
        return ProviderError(f"timed out talking to AWS{where} to {what}; retry (check network or "
                             "AWS_ENDPOINT_URL if it keeps happening)", retryable=True)
    if isinstance(exc, HTTPClientError | EndpointConnectionError):  # also ConnectionClosedError, proxies
        return ProviderError(f"could not reach AWS{where} to {what} ({exc}); check network, proxy or "
                             "AWS_ENDPOINT_URL, then retry", retryable=True)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ProviderError(f"no usable AWS credentials to {what}: set AWS_PROFILE, or AWS_ACCESS_KEY_ID "
                             "and AWS_SECRET_ACCESS_KEY", retryable=False)
    if isinstance(exc, NoRegionError):
        return ProviderError(f"no AWS region to {what}: set target.aws.region or AWS_REGION", retryable=False)
    if isinstance(exc, ResponseParserError):
        return ProviderError(f"AWS{where} sent an unreadable answer to the request to {what} "
                             "(the endpoint is probably failing); retry", retryable=True)
    if isinstance(exc, BotoCoreError):
        return ProviderError(f"AWS SDK error while trying to {what}: {exc}", retryable=False)
    return None


# ---------------------------------------------------------------- targets


@dataclass(frozen=True)
class GroupRef:
    """The AWS object a pool change acts on: an Auto Scaling group or an EKS managed node group."""

    region: str
    asg: str | None = None
    cluster: str | None = None
    nodegroup: str | None = None

    def __str__(self) -> str:
        if self.asg is not None:
            return f"Auto Scaling group '{self.asg}' in {self.region}"
        return f"EKS node group '{self.nodegroup}' of cluster '{self.cluster}' in {self.region}"


@dataclass(frozen=True)
class GroupState:
    desired: int
    min_size: int
    max_size: int
    in_service: int | None = None  # ASG: healthy InService instances
    status: str | None = None  # EKS: node group status
    issues: tuple[str, ...] = ()
    asg_names: tuple[str, ...] = ()  # EKS: the Auto Scaling groups behind the node group


def group_ref(change: Change) -> GroupRef:
    """Read ``target.aws`` of a pool change; a malformed target is a plan problem, not worth a retry."""
    aws = change.target.get("aws")
    fix = "the plan's target comes from the Pool's spec.target.aws: fix the Pool and re-plan"
    if not isinstance(aws, dict) or not aws.get("region"):
        raise ProviderError(f"{change.address}: target.aws.region is missing; {fix}", address=change.address)
    region = str(aws["region"])
    eks = aws.get("eks")
    if aws.get("autoScalingGroupName") and not eks:
        return GroupRef(region, asg=str(aws["autoScalingGroupName"]))
    if isinstance(eks, dict) and eks.get("cluster") and eks.get("nodegroup") and not aws.get("autoScalingGroupName"):
        return GroupRef(region, cluster=str(eks["cluster"]), nodegroup=str(eks["nodegroup"]))
    raise ProviderError(f"{change.address}: target.aws needs exactly one of autoScalingGroupName or "
                        f"eks {{cluster, nodegroup}}; {fix}", address=change.address)


# ---------------------------------------------------------------- discovery helpers


@dataclass(frozen=True)
class GpuShape:
    """The GPUs of one instance type, as EC2 describes them."""

    product: str
    manufacturer: str
    memory_gib: float
    count: int


def dns_label(text: str, fallback: str = "pool") -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower())
    label = re.sub(r"-{2,}", "-", label).strip("-")[:63].rstrip("-")
    return label or fallback


def gpu_type_name(shape: GpuShape) -> str:
    stem = re.sub(r"[^A-Za-z0-9.]+", "-", shape.product).strip("-.") or "GPU"
    return f"{stem}-{round(shape.memory_gib)}GB"


def jurisdiction(region: str) -> str | None:
    if region.startswith("eu-"):
        return "EU"
    if region.startswith("us-"):
        return "US"
    return None


def location_name(region: str) -> str:
    return dns_label(f"aws-{region}")


def _in_service(group: dict[str, Any]) -> int:
    return sum(1 for i in group.get("Instances", [])
               if i.get("LifecycleState") == "InService" and i.get("HealthStatus", "Healthy") == "Healthy")


def _batches(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# ---------------------------------------------------------------- the provider


class AwsProvider:
    """Pools backed by Auto Scaling groups or EKS managed node groups."""

    name = "aws"

    def __init__(
        self,
        region_names: list[str] | None = None,
        endpoint_url: str | None = None,
        session: boto3.Session | None = None,
        *,
        max_attempts: int = 3,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 20.0,
        poll_interval_s: float = 5.0,
    ) -> None:
        self.region_names = list(region_names or [])
        self._explicit_endpoint = endpoint_url
        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL")  # boto3 honours it itself too
        self._session = session or boto3.Session()
        self._config = Config(retries={"total_max_attempts": max_attempts, "mode": "standard"},
                              connect_timeout=connect_timeout_s, read_timeout=read_timeout_s,
                              user_agent_extra="placer")
        self._poll_interval_s = poll_interval_s
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()  # a boto3 Session is not thread-safe; the clients it makes are

    # ------------------------------------------------------------ plumbing

    def _client(self, service: str, region: str) -> Any:
        key = (service, region)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self._session.client(
                    service, region_name=region, endpoint_url=self._explicit_endpoint, config=self._config)
            return self._clients[key]

    def _call(self, address: str, what: str, call: Callable[[], T], *, prefix: bool = True) -> T:
        """Run an SDK call; its failure becomes a ProviderError whose message starts with the address."""

        def mapped(exc: Exception) -> ProviderError | None:
            error = classify(exc, what, self.endpoint_url)
            if error is not None and prefix:
                error = ProviderError(f"{address}: {error}", retryable=error.retryable, address=address)
            return error

        return guard(address, call, mapped)

    # ------------------------------------------------------------ Provider protocol

    def handles(self, change: Change) -> bool:
        return change.kind == "pool" and change.provider == self.name

    def observe(self, change: Change) -> dict[str, Any] | None:
        state = self._describe(change.address, group_ref(change))
        return None if state is None else {"nodes": state.desired}

    def apply(self, change: Change) -> None:
        ref = group_ref(change)
        if change.action == "delete" or change.after is None:
            raise ProviderError(
                f"{change.address}: placer does not delete {ref}; it only sets its desired size. Keep the Pool "
                "with nodes.min 0 to scale it to zero, or delete the group with the tool that created it "
                "(Terraform, eksctl)", address=change.address)
        nodes = pool_nodes(change)
        low, high = change.target.get("minNodes"), change.target.get("maxNodes")
        if nodes < 0 or (low is not None and nodes < int(low)) or (high is not None and nodes > int(high)):
            raise ProviderError(
                f"{change.address}: refusing to set {ref} to {nodes} nodes: the Pool allows "
                f"{low if low is not None else 0}..{high if high is not None else 'unbounded'} "
                "(nodes.min..nodes.max); the plan does not match its Pool: re-plan", address=change.address)
        state = self._describe(change.address, ref)
        if state is None:
            raise self._not_found(change, ref)
        if not state.min_size <= nodes <= state.max_size:
            raise ProviderError(
                f"{change.address}: refusing to set {ref} to {nodes} nodes: the group allows "
                f"{state.min_size}..{state.max_size} (MinSize..MaxSize; desired stays {state.desired}). "
                "Change the group's limits where it is defined (Terraform, eksctl) or bring the Pool's "
                "nodes.min/nodes.max within them, then re-plan", address=change.address)
        if state.desired == nodes:
            return  # idempotent: nothing to do
        if ref.asg is not None:
            asg_name = ref.asg
            self._call(change.address, f"set the desired capacity of {ref} to {nodes}",
                       lambda: self._client("autoscaling", ref.region).set_desired_capacity(
                           AutoScalingGroupName=asg_name, DesiredCapacity=nodes, HonorCooldown=False))
        else:
            self._call(change.address, f"set the desired size of {ref} to {nodes}",
                       lambda: self._client("eks", ref.region).update_nodegroup_config(
                           clusterName=ref.cluster, nodegroupName=ref.nodegroup,
                           scalingConfig={"desiredSize": nodes}))

    def wait_healthy(self, change: Change, timeout_s: float) -> None:
        if change.after is None:
            return
        ref = group_ref(change)
        want = pool_nodes(change)
        deadline = time.monotonic() + timeout_s
        while True:
            state = self._describe(change.address, ref)
            if state is None:
                raise self._not_found(change, ref)
            if ref.asg is not None and state.in_service == want and state.desired == want:
                return
            if ref.asg is None:
                if state.status in FAILED_NODEGROUP_STATES:
                    raise ProviderError(
                        f"{change.address}: {ref} is {state.status}{self._issues(state)}; fix the node group "
                        "(EKS console or its Terraform) and re-plan", address=change.address)
                if state.status == "ACTIVE" and state.desired == want:
                    in_service = self._nodegroup_in_service(change.address, ref, state)
                    if in_service is None or in_service == want:
                        return
                    state = replace(state, in_service=in_service)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProviderError(self._timeout_message(change, ref, state, want, timeout_s),
                                    retryable=True, address=change.address)
            time.sleep(min(self._poll_interval_s, remaining))

    # ------------------------------------------------------------ reading groups

    def _describe(self, address: str, ref: GroupRef) -> GroupState | None:
        if ref.asg is not None:
            groups = self._asgs(address, ref, [ref.asg])
            if not groups:
                return None
            group = groups[0]
            return GroupState(desired=int(group["DesiredCapacity"]), min_size=int(group["MinSize"]),
                              max_size=int(group["MaxSize"]), in_service=_in_service(group))

        def read_nodegroup() -> dict[str, Any] | None:
            try:
                return dict(self._client("eks", ref.region).describe_nodegroup(
                    clusterName=ref.cluster, nodegroupName=ref.nodegroup)["nodegroup"])
            except ClientError as exc:
                if _client_error_parts(exc)[0] == "ResourceNotFoundException":
                    return None
                raise

        ng = self._call(address, f"read {ref}", read_nodegroup)
        if ng is None:
            return None
        scaling = ng.get("scalingConfig", {}) or {}
        health = ng.get("health", {}) or {}
        issues = tuple(f"{i.get('code')}: {i.get('message')}" for i in health.get("issues", []))
        asg_names = tuple(a["name"] for a in (ng.get("resources", {}) or {}).get("autoScalingGroups", [])
                          if a.get("name"))
        return GroupState(desired=int(scaling.get("desiredSize", 0)), min_size=int(scaling.get("minSize", 0)),
                          max_size=int(scaling.get("maxSize", 0)), status=ng.get("status"), issues=issues,
                          asg_names=asg_names)

    def _asgs(self, address: str, ref: GroupRef, names: list[str]) -> list[dict[str, Any]]:
        response = self._call(address, f"read {ref}",
                              lambda: self._client("autoscaling", ref.region).describe_auto_scaling_groups(
                                  AutoScalingGroupNames=names))
        return [g for g in response.get("AutoScalingGroups", []) if g.get("AutoScalingGroupName") in names]

    def _nodegroup_in_service(self, address: str, ref: GroupRef, state: GroupState) -> int | None:
        """Healthy InService instances behind an EKS node group; None where its groups cannot be read."""
        if not state.asg_names:
            return None
        try:
            groups = self._asgs(address, ref, list(state.asg_names))
        except ProviderError as exc:
            if exc.retryable:
                raise
            return None  # e.g. no autoscaling:Describe* permission: the node group's ACTIVE is all we know
        return sum(_in_service(g) for g in groups) if groups else None

    def _not_found(self, change: Change, ref: GroupRef) -> ProviderError:
        return ProviderError(
            f"{change.address}: {ref} not found (looked in region {ref.region} of the account of the current "
            "AWS credentials). Check the Pool's target.aws (name, region), AWS_PROFILE and the account, "
            "then re-plan", retryable=False, address=change.address)

    @staticmethod
    def _issues(state: GroupState) -> str:
        return f" ({'; '.join(state.issues)})" if state.issues else ""

    def _timeout_message(self, change: Change, ref: GroupRef, state: GroupState, want: int, timeout_s: float) -> str:
        if ref.asg is not None:
            seen = f"{state.in_service} of {want} instances InService (desired capacity {state.desired})"
            activity = self._latest_activity(ref)
            hint = f"; latest scaling activity: {activity}" if activity else ""
            check = "check the group's activity history (capacity, quotas, launch template)"
        else:
            instances = f", {state.in_service} of {want} instances InService" if state.in_service is not None else ""
            seen = f"status {state.status}, desired size {state.desired} of {want}{instances}{self._issues(state)}"
            hint, check = "", "check the node group's health in EKS"
        return (f"{change.address}: timed out after {timeout_s:g}s waiting for {ref} to be healthy: {seen}"
                f"{hint}; {check}, then apply again to keep waiting")

    def _latest_activity(self, ref: GroupRef) -> str | None:
        try:
            acts = self._client("autoscaling", ref.region).describe_scaling_activities(
                AutoScalingGroupName=ref.asg, MaxRecords=1).get("Activities", [])
        except (ClientError, BotoCoreError, ResponseParserError):
            return None  # only decorates a message
        if not acts:
            return None
        act = acts[0]
        return f"{act.get('StatusCode')}: {act.get('StatusMessage') or act.get('Description', '')}".strip()

    # ------------------------------------------------------------ discovery

    def discover(self, region_names: list[str] | None = None) -> Discovered:
        """Pool documents for every GPU Auto Scaling group and EKS node group, and a Location per region."""
        regions = list(region_names or self.region_names or ([self._session.region_name]
                                                            if self._session.region_name else []))
        if not regions:
            raise ProviderError("AWS discovery needs regions: pass them, or set AWS_REGION / a profile region")
        documents: list[dict[str, Any]] = []
        notes: list[str] = []
        scan = _RegionScan(self, notes)
        for region in regions:
            pools = scan.pools(region)
            if not pools:
                notes.append(f"aws {region}: no GPU Auto Scaling groups or EKS node groups found")
                continue
            location: dict[str, Any] = {"environment": "cloud"}
            guess = jurisdiction(region)
            if guess:
                location["jurisdiction"] = guess
            else:
                notes.append(f"Location {location_name(region)}: set spec.jurisdiction (could not guess it "
                             f"from region {region})")
            documents.append({"apiVersion": API_VERSION, "kind": "Location",
                              "metadata": {"name": location_name(region)}, "spec": location})
            documents.extend(pools)
        documents[:0] = scan.gpu_types.values()
        if scan.priced:
            notes.append("usdPerGpuHour of discovered AWS pools comes from a small built-in table of approximate "
                         "us-east-1 on-demand list prices; other regions, spot and discounts differ: review them")
        return Discovered(documents=documents, notes=notes)


class _RegionScan:
    """One discovery run: reads groups, launch templates and instance types, and builds Pool documents."""

    def __init__(self, provider: AwsProvider, notes: list[str]) -> None:
        self.provider = provider
        self.notes = notes
        self.gpu_types: dict[str, dict[str, Any]] = {}
        self.names: set[str] = set()
        self.priced = False
        self._shapes: dict[tuple[str, str], GpuShape | None] = {}

    def _call(self, region: str, what: str, call: Callable[[], T]) -> T:
        return self.provider._call(f"aws/{region}", what, call, prefix=False)

    def pools(self, region: str) -> list[dict[str, Any]]:
        out = [doc for group in self._asgs(region) if (doc := self._asg_pool(region, group)) is not None]
        out += [doc for group in self._nodegroups(region) if (doc := self._nodegroup_pool(region, group)) is not None]
        return out

    # ------------------------------------------------------------ Auto Scaling groups

    def _asgs(self, region: str) -> list[dict[str, Any]]:
        client = self.provider._client("autoscaling", region)

        def read() -> list[dict[str, Any]]:
            pages = client.get_paginator("describe_auto_scaling_groups").paginate()
            return [g for page in pages for g in page.get("AutoScalingGroups", [])]

        return self._call(region, f"list the Auto Scaling groups in {region}", read)

    def _asg_pool(self, region: str, group: dict[str, Any]) -> dict[str, Any] | None:
        name = group["AutoScalingGroupName"]
        if any(t.get("Key") == EKS_NODEGROUP_TAG for t in group.get("Tags", [])):
            return None  # the ASG of an EKS managed node group: sized through the node group
        if group.get("Status"):  # only set while the group is being deleted
            self.notes.append(f"aws {region}: Auto Scaling group '{name}' skipped: {group['Status']}")
            return None
        types, spot = self._asg_instance_types(region, group)
        if not types:
            self.notes.append(f"aws {region}: Auto Scaling group '{name}' skipped: cannot tell its instance type")
            return None
        where = f"Auto Scaling group '{name}' in {region}"
        gpu = self._pool_gpu(region, types, where)
        if gpu is None:
            return None
        target = {"region": region, "autoScalingGroupName": name}
        return self._pool_doc(region, name, types[0], gpu, int(group["MinSize"]), int(group["MaxSize"]),
                              spot, target, f"aws:{region}:autoscaling/{name}")

    def _asg_instance_types(self, region: str, group: dict[str, Any]) -> tuple[list[str], bool]:
        name = group["AutoScalingGroupName"]
        mixed = group.get("MixedInstancesPolicy")
        if mixed:
            template = mixed.get("LaunchTemplate", {}) or {}
            data = self._template_data(region, template.get("LaunchTemplateSpecification", {}) or {})
            overrides = template.get("Overrides", []) or []
            types = [o["InstanceType"] for o in overrides if o.get("InstanceType")]
            if any("InstanceRequirements" in o for o in overrides):
                self.notes.append(f"aws {region}: Auto Scaling group '{name}' chooses instance types by attributes; "
                                  "only its listed types are considered")
            types = types or ([data["InstanceType"]] if data.get("InstanceType") else [])
            dist = mixed.get("InstancesDistribution", {}) or {}
            above = int(dist.get("OnDemandPercentageAboveBaseCapacity", 100))
            spot = above < 100 or self._template_spot(data)
            if spot and (above > 0 or int(dist.get("OnDemandBaseCapacity", 0)) > 0):
                self.notes.append(f"aws {region}: Auto Scaling group '{name}' mixes on-demand and spot capacity; "
                                  "its pool is marked spot: true because part of it can be reclaimed")
            return types, spot
        if group.get("LaunchTemplate"):
            data = self._template_data(region, group["LaunchTemplate"])
            return ([data["InstanceType"]] if data.get("InstanceType") else self._running_types(group),
                    self._template_spot(data))
        if group.get("LaunchConfigurationName"):
            lc_name = group["LaunchConfigurationName"]
            configs = self._call(region, f"read launch configuration '{lc_name}' in {region}",
                                 lambda: self.provider._client("autoscaling", region).describe_launch_configurations(
                                     LaunchConfigurationNames=[lc_name])).get("LaunchConfigurations", [])
            if configs:
                return [configs[0]["InstanceType"]], bool(configs[0].get("SpotPrice"))
        return self._running_types(group), False

    @staticmethod
    def _running_types(group: dict[str, Any]) -> list[str]:
        return sorted({i["InstanceType"] for i in group.get("Instances", []) if i.get("InstanceType")})

    @staticmethod
    def _template_spot(data: dict[str, Any]) -> bool:
        return (data.get("InstanceMarketOptions", {}) or {}).get("MarketType") == "spot"

    def _template_data(self, region: str, spec: dict[str, Any]) -> dict[str, Any]:
        """LaunchTemplateData of an ASG's (LaunchTemplateId|LaunchTemplateName, Version) or an EKS one's (id|name, version)."""
        ident = spec.get("LaunchTemplateId") or spec.get("id")
        name = spec.get("LaunchTemplateName") or spec.get("name")
        version = str(spec.get("Version") or spec.get("version") or "$Default")
        kwargs: dict[str, Any] = {"Versions": [version]}
        if ident:
            kwargs["LaunchTemplateId"] = ident
        elif name:
            kwargs["LaunchTemplateName"] = name
        else:
            return {}
        versions = self._call(region, f"read launch template {ident or name} version {version} in {region}",
                              lambda: self.provider._client("ec2", region).describe_launch_template_versions(**kwargs))
        found = versions.get("LaunchTemplateVersions", [])
        return dict(found[0].get("LaunchTemplateData", {}) or {}) if found else {}

    # ------------------------------------------------------------ EKS managed node groups

    def _nodegroups(self, region: str) -> list[dict[str, Any]]:
        client = self.provider._client("eks", region)

        def read() -> list[dict[str, Any]]:
            groups = []
            for page in client.get_paginator("list_clusters").paginate():
                for cluster in page.get("clusters", []):
                    for ng_page in client.get_paginator("list_nodegroups").paginate(clusterName=cluster):
                        for ng in ng_page.get("nodegroups", []):
                            groups.append(client.describe_nodegroup(clusterName=cluster, nodegroupName=ng)["nodegroup"])
            return groups

        try:
            return self._call(region, f"list the EKS node groups in {region}", read)
        except ProviderError as exc:
            if exc.retryable:
                raise
            self.notes.append(f"aws {region}: EKS node groups not discovered: {exc}")
            return []

    def _nodegroup_pool(self, region: str, group: dict[str, Any]) -> dict[str, Any] | None:
        cluster, name = group["clusterName"], group["nodegroupName"]
        where = f"EKS node group '{name}' of cluster '{cluster}' in {region}"
        if group.get("status") in FAILED_NODEGROUP_STATES:
            self.notes.append(f"aws {region}: {where} skipped: it is {group['status']}")
            return None
        types: list[str] = []
        if group.get("launchTemplate"):
            # An instance type in the launch template wins (AWS then leaves instanceTypes unset).
            data = self._template_data(region, group["launchTemplate"])
            types = [data["InstanceType"]] if data.get("InstanceType") else []
        types = types or list(group.get("instanceTypes") or [])
        if not types:
            self.notes.append(f"aws {region}: {where} skipped: cannot tell its instance type")
            return None
        gpu = self._pool_gpu(region, types, where)
        if gpu is None:
            return None
        scaling = group.get("scalingConfig", {}) or {}
        target = {"region": region, "eks": {"cluster": cluster, "nodegroup": name}}
        return self._pool_doc(region, f"{cluster}-{name}", types[0], gpu, int(scaling.get("minSize", 0)),
                              int(scaling.get("maxSize", 0)), group.get("capacityType") == "SPOT", target,
                              f"aws:{region}:eks/{cluster}/{name}")

    # ------------------------------------------------------------ GPUs, names, documents

    def _pool_gpu(self, region: str, types: list[str], where: str) -> tuple[str, int] | None:
        """(GPU type name, GPUs per node) of a group's instance types; None where it has no (usable) GPUs."""
        shapes = self._gpu_shapes(region, types)
        if all(s is None for s in shapes.values()):
            return None  # not a GPU group
        kinds = {(self._gpu_type(s), s.count) if s else None for s in shapes.values()}
        if len(kinds) != 1 or None in kinds:
            listed = ", ".join(f"{t}: {f'{s.count}x {s.product}' if s else 'no GPU'}" for t, s in shapes.items())
            self.notes.append(f"aws {region}: {where} skipped: its instance types differ in GPUs ({listed}); "
                              "a pool is homogeneous")
            return None
        return kinds.pop()

    def _gpu_shapes(self, region: str, types: list[str]) -> dict[str, GpuShape | None]:
        missing = sorted({t for t in types if (region, t) not in self._shapes})
        client = self.provider._client("ec2", region)
        for batch in _batches(missing, 100):
            def read(batch: list[str] = batch) -> list[dict[str, Any]] | None:
                try:
                    return list(client.describe_instance_types(InstanceTypes=batch)["InstanceTypes"])
                except ClientError as exc:
                    if _client_error_parts(exc)[0] == "InvalidInstanceType":
                        return None  # one unknown type fails the whole batch
                    raise

            found = self._call(region, f"describe instance types {', '.join(batch)} in {region}", read)
            if found is None:
                if len(batch) == 1:
                    self.notes.append(f"aws {region}: instance type {batch[0]} is unknown to EC2 there; skipped")
                    self._shapes[(region, batch[0])] = None
                else:
                    for one in batch:
                        self._gpu_shapes(region, [one])
                continue
            for info in found:
                self._shapes[(region, info["InstanceType"])] = self._shape(region, info)
            for t in batch:
                self._shapes.setdefault((region, t), None)
        return {t: self._shapes[(region, t)] for t in dict.fromkeys(types)}

    def _shape(self, region: str, info: dict[str, Any]) -> GpuShape | None:
        gpus = (info.get("GpuInfo") or {}).get("Gpus") or []
        if not gpus:
            return None
        names = {g.get("Name") for g in gpus}
        if len(names) != 1:
            self.notes.append(f"aws {region}: instance type {info['InstanceType']} mixes GPU models {sorted(names)}; "
                              "skipped")
            return None
        if any(float(g.get("GpuPartitionSize", 1.0)) < 1.0 for g in gpus):
            self.notes.append(f"aws {region}: instance type {info['InstanceType']} has a fraction of a GPU; "
                              "placer pools need whole GPUs, skipped")
            return None
        first = gpus[0]
        return GpuShape(product=str(first.get("Name")), manufacturer=str(first.get("Manufacturer", "")),
                        memory_gib=float(first.get("MemoryInfo", {}).get("SizeInMiB", 0)) / 1024.0,
                        count=sum(int(g.get("Count", 0)) for g in gpus))

    def _gpu_type(self, shape: GpuShape) -> str:
        """A catalog name when the product and memory match one; otherwise a GPUType document is added."""
        known = match_product(shape.product, shape.memory_gib or None)
        if known and (not shape.memory_gib
                      or abs(known.memory_gib - shape.memory_gib) <= CATALOG_MEMORY_TOLERANCE * known.memory_gib):
            return known.name
        name = gpu_type_name(shape)
        if name not in self.gpu_types:
            spec: dict[str, Any] = {"memoryGiB": round(shape.memory_gib, 1)}
            if shape.manufacturer:
                spec["vendor"] = shape.manufacturer.lower()
            self.gpu_types[name] = {"apiVersion": API_VERSION, "kind": "GPUType", "metadata": {"name": name},
                                    "spec": spec}
            self.notes.append(f"GPUType {name}: AWS GPU '{shape.product}' is not in the built-in catalog; added it "
                              "(check memoryGiB, and give models a throughput for it)")
        return name

    def _unique_name(self, base: str, region: str) -> str:
        name = dns_label(base)
        if name in self.names:
            name = dns_label(f"{base}-{region}")
        stem, n = name, 2
        while name in self.names:
            name = f"{stem[:60].rstrip('-')}-{n}"
            n += 1
        self.names.add(name)
        return name

    def _pool_doc(self, region: str, base_name: str, instance_type: str, gpu: tuple[str, int], low: int,
                  high: int, spot: bool, target: dict[str, Any], source: str) -> dict[str, Any]:
        name = self._unique_name(base_name, region)
        gpu_type, per_node = gpu
        hourly = APPROX_ON_DEMAND_USD_PER_HOUR.get(instance_type)
        if hourly is None:
            price = 0.0
            self.notes.append(f"Pool {name}: usdPerGpuHour is 0: no built-in price for {instance_type}; fill it in")
        else:
            price = round(hourly / per_node, 4)
            self.priced = True
        return {
            "apiVersion": API_VERSION,
            "kind": "Pool",
            "metadata": {"name": name,
                         "annotations": {"placer.dev/discovered-from": source,
                                         "placer.dev/instance-type": instance_type}},
            "spec": {
                "location": location_name(region),
                "provider": "aws",
                "gpu": {"type": gpu_type, "perNode": per_node},
                "nodes": {"min": low, "max": high},
                "usdPerGpuHour": price,
                "spot": spot,
                "target": {"aws": target},
            },
        }
