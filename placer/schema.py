"""The JSON Schema of the fleet format, generated from the typed kinds (for yaml-language-server).

Pydantic's schema of the kinds gives their types and bounds; what the loader checks beyond them
(names, patterns, "exactly one of", a rule's parameters) is added here, from the same regular
expressions, so that an editor flags what `placer validate` refuses, and nothing it accepts.
What JSON Schema cannot say is left to validate: min <= max, the two ends of a link differing
by value only, an integer written 8.0 (JSON Schema's integer is any whole number), control
characters, and every check across documents (references, duplicates).
"""

from __future__ import annotations

import re
from typing import Any

from placer.spec.kinds import (
    API_VERSION,
    ASG_NAME,
    BUCKET,
    DNS1123_LABEL,
    EKS_NAME,
    ENDPOINT,
    GCP_NAME,
    GCP_PROJECT,
    GCP_REGION,
    GCP_ZONE,
    GPU_TYPE_NAME,
    IMAGE,
    K8S_NAME,
    K8S_PREFIX,
    MODEL_SELECTOR_FIELDS,
    POOL_SELECTOR_FIELDS,
    REGION,
    SELECTOR_LISTS,
    SPEC_TYPES,
    URL,
    VERSION,
    Metadata,
    Selector,
)
from placer.spec.rules import EXAMPLES, Rule

# what the loader takes beyond the typed kinds' own schema, so that an editor does not flag a
# document `validate` accepts: a selector field's single value for its list (`names: chat`), and
# a version written as a number or a boolean (`version: 1.10`, kept as the text 1.10)
SCALAR_OR_LIST = ("Selector", [Selector.model_fields[f].alias or f for f in SELECTOR_LISTS])
NUMBER_AS_TEXT = ("ModelSpec", ["version"])


def _whole(rx: re.Pattern[str] | str) -> str:
    """``rx`` (matched with fullmatch by the loader) as a JSON Schema pattern, which matches anywhere."""
    text = rx if isinstance(rx, str) else rx.pattern
    return f"^(?:{text.removeprefix('^').removesuffix('$')})$"


def _optional(rx: re.Pattern[str]) -> str:
    """``rx`` or the empty text (a label value may be empty)."""
    return f"^(?:{rx.pattern})?$"


LABEL_KEY = f"^(?:(?=[^/]{{1,253}}/)(?:{K8S_PREFIX.pattern})/)?(?:{K8S_NAME.pattern})$"
# a mapping of labels, as Kubernetes takes them (a document's labels, a selector's, a nodeSelector)
LABELS = {"propertyNames": {"pattern": LABEL_KEY}, "additionalProperties": {"type": "string", "pattern": _optional(K8S_NAME)}}
NOT_URL = f"^(?!\\s*{URL.pattern.split('://')[0]}://)"
NOT_BLANK = r"\S"
# _a_file: not blank, not a folder (a trailing / or \, or . or .. last), not a URL
STATE_PATH = r"^(?!\s*$)(?!(?:.*/)?\.{1,2}$)" + NOT_URL.removeprefix("^") + r".*[^/\\]$"
# ENDPOINT is matched ignoring case; JSON Schema's patterns have no flags
ENDPOINT_ANY_CASE = _whole(ENDPOINT.pattern.replace("https?", "[Hh][Tt][Tt][Pp][Ss]?"))


def _present(*fields: str, kind: str | dict[str, Any] = "string") -> dict[str, Any]:
    """``fields`` given, none of them null (the loader reads `zone: null` as no zone)."""
    not_null = {"type": kind} if isinstance(kind, str) else kind
    return {"required": list(fields), "properties": {f: not_null for f in fields}}


def _absent(*fields: str) -> dict[str, Any]:
    return {"properties": {f: {"type": "null"} for f in fields}}


# (definition, property) -> keywords the loader's validators check; each applies to a value of
# the right type only (a pattern to text, uniqueItems to a list), so it sits beside the anyOf of
# the property's types
PROPERTY_CHECKS: dict[tuple[str, str], dict[str, Any]] = {
    ("Metadata", "labels"): LABELS,
    ("Selector", "labels"): LABELS,
    ("LocationSpec", "jurisdiction"): {"pattern": _whole(K8S_NAME)},
    ("Selector", "jurisdiction"): {"pattern": _whole(K8S_NAME), "items": {"pattern": _whole(K8S_NAME)}},
    ("PoolSpec", "failureDomain"): {"pattern": _whole(K8S_NAME)},
    ("LinkSpec", "between"): {"uniqueItems": True},
    ("ModelSpec", "version"): {"pattern": _whole(VERSION), "minimum": 0},
    ("ModelSpec", "image"): {"pattern": _whole(IMAGE)},
    ("KubernetesTarget", "namespace"): {"pattern": _whole(DNS1123_LABEL), "maxLength": 63},
    ("KubernetesTarget", "nodeSelector"): LABELS,
    ("Toleration", "key"): {"pattern": f"^(?:{LABEL_KEY.removeprefix('^').removesuffix('$')})?$"},
    ("Toleration", "value"): {"pattern": _optional(K8S_NAME)},
    ("EksTarget", "cluster"): {"pattern": _whole(EKS_NAME), "maxLength": 100},
    ("EksTarget", "nodegroup"): {"pattern": _whole(EKS_NAME), "maxLength": 63},
    ("AwsTarget", "autoScalingGroupName"): {"pattern": _whole(ASG_NAME)},
    ("GcpTarget", "project"): {"pattern": _whole(GCP_PROJECT)},
    ("GcpTarget", "instanceGroupManager"): {"pattern": _whole(GCP_NAME)},
    ("GcpTarget", "zone"): {"pattern": _whole(GCP_ZONE)},
    ("GcpTarget", "region"): {"pattern": _whole(GCP_REGION)},
    ("Rule", "separateWorkloads"): {"uniqueItems": True},
    ("StateSettings", "path"): {"pattern": STATE_PATH},
    ("StateSettings", "bucket"): {"pattern": f"^(?:arn:.*|{BUCKET.pattern})$"},
    ("StateSettings", "key"): {"pattern": NOT_URL},
    ("StateSettings", "endpointUrl"): {"pattern": ENDPOINT_ANY_CASE},
    ("StateSettings", "region"): {"pattern": _whole(REGION)},
    ("ApplySettings", "directory"): {"pattern": NOT_BLANK},
}

# definition -> keywords for the loader's checks of a whole object ("give exactly one of ...")
OBJECT_CHECKS: dict[str, dict[str, Any]] = {
    "PoolNodes": {"oneOf": [{"allOf": [_present("count", kind="integer"), _absent("min", "max")]},
                            {"allOf": [_present("min", "max", kind="integer"), _absent("count")]}]},
    "AwsTarget": {"oneOf": [_present("autoScalingGroupName"), _present("eks", kind="object")]},
    "GcpTarget": {"oneOf": [_present("zone"), _present("region")]},
    "Toleration": {"allOf": [
        # a toleration without a key needs operator: Exists
        {"if": _present("key", kind={"type": "string", "minLength": 1}),
         "else": {"required": ["operator"], "properties": {"operator": {"const": "Exists"}}}},
        # operator Exists takes no value
        {"if": {"required": ["operator"], "properties": {"operator": {"const": "Exists"}}},
         "then": {"properties": {"value": {"anyOf": [{"type": "null"}, {"maxLength": 0}]}}}},
        # tolerationSeconds applies to effect NoExecute only
        {"if": _present("tolerationSeconds", kind="integer"),
         "then": {"required": ["effect"], "properties": {"effect": {"const": "NoExecute"}}}},
    ]},
    "Rule": {"minProperties": 1, "maxProperties": 1},
    "Retire": {"anyOf": [_present("unusedForDays", kind="integer"), _present("keepVersions", kind="integer")]},
    "StateSettings": {"if": {"required": ["backend"], "properties": {"backend": {"const": "s3"}}},
                      "then": _present("bucket", "key", kind={"type": "string", "minLength": 1})},
}


def _given(field: str, *values: str) -> dict[str, Any]:
    """``field`` given as one of ``values`` (for an if)."""
    return {"required": [field], "properties": {field: {"enum": list(values)}}}


# definition -> keywords for the checks of one document that `validate` makes beyond its shape
# (placer.fleet): what a workload, a provider or an enforcement asks of the other fields
DOCUMENT_CHECKS: dict[str, dict[str, Any]] = {
    "ModelSpec": {
        "if": _given("workload", "training", "batch"),
        "then": {"allOf": [_present("replicas", kind="integer"), {"properties": {
            "demand": {"maxItems": 0}, "minReplicas": {"type": "null"}, "maxReplicas": {"type": "null"}}}]},
        "else": {"required": ["throughput"], "properties": {
            "throughput": {"minProperties": 1}, "replicas": {"type": "null"}, "gang": {"type": "null"}}},
    },
    "PoolSpec": {"allOf": [
        {"if": _given("provider", "aws"),
         "then": {"required": ["target"], "properties": {"target": _present("aws", kind="object")}}},
        {"if": _given("provider", "gcp"),
         "then": {"required": ["target"], "properties": {"target": _present("gcp", kind="object")}}},
        # placer cannot add nodes to a static or kubernetes pool
        {"if": _given("provider", "static", "kubernetes"),
         "then": {"properties": {"nodes": _present("count", kind="integer")}}},
        # AWS refuses an EKS node group whose maximum is 0
        {"if": {"allOf": [_given("provider", "aws"), {"required": ["target"], "properties": {"target": {
            "required": ["aws"], "properties": {"aws": _present("eks", kind="object")}}}}]},
         "then": {"properties": {"nodes": {"properties": {"max": {"minimum": 1}}}}}},
    ]},
    "PolicySpec": {"allOf": [
        {"if": _given("enforcement", "preferred"),
         "then": _present("penaltyUsdPerHour", kind="number"),
         "else": {"properties": {"penaltyUsdPerHour": {"type": "null"}}}},
        {"if": {"required": ["rule"], "properties": {"rule": {"required": ["preferPools"]}}},
         "then": _given("enforcement", "preferred")},
    ]},
}


def _side(allowed: frozenset[str]) -> dict[str, Any]:
    """A policy's models or pools selector: the selector fields that side does not take left empty."""
    others = [Selector.model_fields[f].alias or f for f in Selector.model_fields if f not in allowed]
    return {"allOf": [{"$ref": "#/$defs/Selector"}, {"properties": {f: {"type": "null"} for f in others}}]}


def _loosen(defs: dict[str, Any]) -> None:
    kind, fields = SCALAR_OR_LIST
    for name in fields:
        prop = defs[kind]["properties"][name]
        arrays = [a for a in prop.get("anyOf", [prop]) if a.get("type") == "array"]
        prop["anyOf"] = [*prop.get("anyOf", [prop]), *(a["items"] for a in arrays)]
        for key in ("type", "items"):
            prop.pop(key, None)
    kind, fields = NUMBER_AS_TEXT
    for name in fields:
        defs[kind]["properties"][name]["anyOf"] += [{"type": "number"}, {"type": "boolean"}]


def _tighten(defs: dict[str, Any]) -> None:
    for (kind, name), checks in PROPERTY_CHECKS.items():
        defs[kind]["properties"][name].update(checks)
    for kind, checks in (*OBJECT_CHECKS.items(), *DOCUMENT_CHECKS.items()):
        defs[kind].update(checks)
    policy = defs["PolicySpec"]["properties"]
    policy["models"], policy["pools"] = _side(MODEL_SELECTOR_FIELDS), _side(POOL_SELECTOR_FIELDS)
    # a rule with parameters given without them (`spread:` alone) is refused; allowPools: (null) is {}
    for alias in (Rule.model_fields[f].alias or f for f in EXAMPLES):
        prop = defs["Rule"]["properties"][alias]
        prop["anyOf"] = [a for a in prop["anyOf"] if a.get("type") != "null"]


def _metadata(kind: str) -> dict[str, Any]:
    """metadata, its name as the loader's ``check_name`` takes it for ``kind``."""
    name = GPU_TYPE_NAME if kind == "GPUType" else DNS1123_LABEL
    return {"allOf": [{"$ref": "#/$defs/Metadata"},
                      {"properties": {"name": {"pattern": _whole(name), "maxLength": 63}}}]}


def fleet_schema() -> dict[str, Any]:
    variants = []
    defs: dict[str, Any] = {}
    meta = Metadata.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    defs.update(meta.pop("$defs", {}))
    defs["Metadata"] = meta
    for kind, model in SPEC_TYPES.items():
        schema = model.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        defs[f"{kind}Spec"] = schema
        spec: dict[str, Any] = {"$ref": f"#/$defs/{kind}Spec"}
        variants.append({
            "type": "object",
            "additionalProperties": False,
            "required": ["apiVersion", "kind", "metadata"] + ([] if kind == "Settings" else ["spec"]),
            "properties": {
                "apiVersion": {"const": API_VERSION},
                "kind": {"const": kind},
                "metadata": _metadata(kind),
                # a Settings document's spec may be empty (every setting its default)
                "spec": {"anyOf": [spec, {"type": "null"}]} if kind == "Settings" else spec,
            },
        })
    _loosen(defs)
    _tighten(defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://placer.dev/schemas/fleet-v1alpha1.json",
        "title": "placer fleet document",
        "oneOf": variants,
        "$defs": defs,
    }
