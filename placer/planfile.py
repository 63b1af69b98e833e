"""The plan file (SPEC section 3): the contract between ``plan`` and ``apply``.

A plan is self-contained: every change carries the provider target it needs, so
``apply`` never reads the fleet and never re-solves. Reading refuses unknown format
versions and malformed files with a message that says what to do.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import math
import os
import re
import secrets
import shlex
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from placer import __version__
from placer.spec.kinds import (
    MOST_COUNT,
    ApplySettings,
    AwsTarget,
    Count,
    GcpTarget,
    KubernetesTarget,
    Provider,
    StateSettings,
    Strict,
    Workload,
    image_reference,
    version_word,
)
from placer.spec.source import not_regular

FORMAT_VERSION = 1
PLACER_VERSION = __version__  # the distribution's (pyproject.toml), what a plan's placerVersion records

Action = Literal["create", "update", "delete", "no-op"]

# make before break: grow capacity, create and scale up (then wait healthy),
# scale down and delete, shrink capacity
PHASE_GROW, PHASE_UP, PHASE_DOWN, PHASE_SHRINK = 1, 2, 3, 4
PHASE_NAMES = {PHASE_GROW: "grow capacity", PHASE_UP: "create and scale up, wait healthy",
               PHASE_DOWN: "scale down and delete", PHASE_SHRINK: "shrink capacity"}
# the phases in which plan puts each kind of change (SPEC: make before break); apply runs by phase.
# A deployment's delete may come in phase 2, first, where its pool cannot hold both copies (diff.py)
PHASES_OF = {("pool", "create"): (PHASE_GROW,), ("pool", "update"): (PHASE_GROW, PHASE_SHRINK),
             ("pool", "delete"): (PHASE_SHRINK,), ("deployment", "create"): (PHASE_UP,),
             ("deployment", "update"): (PHASE_UP, PHASE_DOWN), ("deployment", "delete"): (PHASE_UP, PHASE_DOWN)}


DIGITS = 6  # decimals of a plan file's numbers (and of explain's and whatif's JSON)


def rounded(x: float, digits: int = DIGITS) -> float:
    """``x`` to ``digits`` decimals, as a plan file writes its numbers; never -0.0."""
    value = round(float(x), digits)
    return 0.0 if value == 0 else value


def deployment_place(target: dict[str, Any]) -> tuple[str | None, str]:
    """Where a deployment change's target puts its Deployment: (kubeconfig context, None for the
    current one; namespace). A change there is a replacement, made before the old one is deleted;
    any other change of the target (image, GPUs, nodeSelector...) updates the Deployment in place."""
    k8s = target.get("kubernetes") or {}
    return (k8s.get("context") or None, str(k8s.get("namespace") or "default"))


def tree_place(target: dict[str, Any]) -> tuple[str, str]:
    """Where a deployment change's target puts it in a GitOps tree: (its context's folder, before
    the folder name is made safe; namespace). No context is the folder `default`, as is the
    context named default."""
    context, namespace = deployment_place(target)
    return context or "default", namespace


def pool_group(target: dict[str, Any]) -> dict[str, Any]:
    """The group a pool change's target names (its provider, its ``aws`` or ``gcp`` part): two
    targets that name one group size the same nodes, whatever else of the pool changed."""
    return {k: target.get(k) for k in ("provider", "aws", "gcp")}


def group_text(target: dict[str, Any]) -> str:
    """The node group a pool target names, in words (also what tells two groups apart)."""
    aws, gcp = target.get("aws") or {}, target.get("gcp") or {}
    if aws.get("autoScalingGroupName"):
        return f"Auto Scaling group {aws['autoScalingGroupName']} in {aws.get('region')}"
    if aws.get("eks"):
        return f"EKS node group {aws['eks'].get('nodegroup')} of cluster {aws['eks'].get('cluster')} in {aws.get('region')}"
    if gcp:
        return (f"managed instance group {gcp.get('instanceGroupManager')} in {gcp.get('project')}/"
                f"{gcp.get('zone') or gcp.get('region')}")
    return "its group"


class PlanFileError(Exception):
    """A plan file that cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class Change:
    address: str  # "pool/<pool>" or "deployment/<model>@<pool>"
    action: Action
    phase: int
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    reasons: tuple[str, ...] = ()
    target: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.address.split("/", 1)[0]

    @property
    def pool(self) -> str:
        rest = self.address.split("/", 1)[1]
        return rest.split("@", 1)[1] if "@" in rest else rest

    @property
    def model(self) -> str | None:
        rest = self.address.split("/", 1)[1]
        return rest.split("@", 1)[0] if "@" in rest else None

    @property
    def provider(self) -> str:
        return str(self.target.get("provider", ""))

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "action": self.action,
            "phase": self.phase,
            "before": self.before,
            "after": self.after,
            "reasons": list(self.reasons),
            "target": self.target,
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> Change:
        return Change(
            address=str(data["address"]),
            action=data["action"],
            phase=int(data["phase"]),
            before=data.get("before"),
            after=data.get("after"),
            reasons=tuple(data.get("reasons") or ()),
            target=dict(data.get("target") or {}),
        )


@dataclass(frozen=True)
class Plan:
    """The plan file, as data. ``body`` holds the report sections (solver, cost, placements...)."""

    created_at: str
    fleet_digest: str
    prior_lineage: str | None
    prior_serial: int
    body: dict[str, Any]
    changes: tuple[Change, ...]
    format_version: int = FORMAT_VERSION
    placer_version: str = PLACER_VERSION
    # the unfinished apply the state was in the middle of, as planned ({"plan": its id, "done": the
    # changes it had recorded}; ``State.progress``), or None: a plan read while an apply ran carried
    # its serial, and was accepted once it had moved on
    prior_applying: dict[str, Any] | None = None
    # planned from the state as the providers report it (``plan --refresh``): its changes start from
    # what runs, not from what the state records (``apply.check_before``)
    prior_refreshed: bool = False

    @property
    def has_changes(self) -> bool:
        return any(c.action != "no-op" for c in self.changes)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "formatVersion": self.format_version,
            "placerVersion": self.placer_version,
            "createdAt": self.created_at,
            "fleetDigest": self.fleet_digest,
            "priorState": {"lineage": self.prior_lineage, "serial": self.prior_serial},
        }
        if self.prior_applying is not None:
            out["priorState"]["applying"] = self.prior_applying
        if self.prior_refreshed:
            out["priorState"]["refreshed"] = True
        out.update(self.body)
        out["changes"] = [c.to_json() for c in self.changes]
        return out

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=False, allow_nan=False) + "\n"

    def digest(self) -> str:
        """sha256 of the plan's JSON, keys sorted: the same plan file, read again, has the same one.
        The state's history records it of each apply (``planDigest``), so that a plan applied
        again is told from one another apply made stale."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


# SPEC section 3's fields and sections, and the settings apply reads: a plan without its cost or solver
# was shown as costing 0.00 USD/h, solved by None; one without its settings was applied with the
# defaults' (live, the default state path), whatever the fleet's Settings said
REQUIRED_KEYS = ("formatVersion", "placerVersion", "createdAt", "fleetDigest", "priorState", "solver", "cost",
                 "placements", "routes", "pools", "unmet", "violations", "changes", "settings")
ACTIONS = ("create", "update", "delete", "no-op")
# the report sections the renderers read, and what each must be (a plan edited by hand gave
# `show`, `show --markdown` and `render` an internal error on a section of another type)
SECTIONS: dict[str, type] = {"solver": dict, "cost": dict, "placements": list, "routes": list, "pools": list,
                             "unmet": list, "unplacedReplicas": list, "retired": list, "violations": list,
                             "models": dict, "settings": dict}
# the fields of each section's entries (solver's: its own) and what each holds, as `plan` writes
# them (placer.planner.placement_body): an unmet row without its rate, a violation without its
# enforcement, a placement without its pool were an internal error in `show`. A kind ending in
# "?" may also be null or left out.
FIELDS: dict[str, dict[str, str]] = {
    "cost": {key: "number" for key in ("totalUsdPerHour", "computeUsdPerHour", "egressUsdPerHour", "latencyUsdPerHour",
                                        "unmetUsdPerHour", "churnUsd", "penaltyUsdPerHour")},
    "solver": {"status": "text", "objectiveUsdPerHour": "number", "boundUsdPerHour": "number", "gap": "number?",
               "wallSeconds": "amount", "note": "text?", "search": "text?"},
    "placements": {"model": "name", "pool": "name", "replicas": "replicas", "gpus": "gpus", "target": "object"},
    "routes": {"model": "name", "demandLocation": "name", "pool": "name", "rate": "amount", "latencyMs": "amount"},
    "pools": {"pool": "name", "nodes": "nodes", "gpusUsed": "gpus", "gpusCapacity": "gpus", "target": "object?"},
    "unmet": {"model": "name", "demandLocation": "name", "rate": "amount"},
    "unplacedReplicas": {"model": "name", "replicas": "replicas"},
    "retired": {"model": "name", "reason": "text"},
    "violations": {"policy": "name", "enforcement": "text", "amount": "number", "detail": "text"},
}
# the plan's own fields besides its sections
TOP_FIELDS = {"placerVersion": "text", "createdAt": "text", "fleetDigest": "text", "costBeforeUsdPerHour": "number?",
              "servedRate": "amount?", "servingUsdPerHour": "amount?"}
PRIOR_FIELDS = {"lineage": "text?", "serial": "whole?", "applying": "object?", "refreshed": "flag?"}
APPLYING_FIELDS = {"plan": "text?", "done": "whole"}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    """``value`` as a message quotes it: a 300-digit count is cut."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _count(value: Any, most: int = MOST_COUNT) -> bool:
    """A count as the fleet's: a whole number from 0 to ``most`` (3.0, "3" and -3 are none)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= most


# the most a plan counts: a pool's nodes as the fleet's counts (a million), and its replicas or
# GPUs as a million nodes of at most 1024 GPUs hold, a replica at least one of them
MOST_GPUS = MOST_COUNT * 1024
# the count a change's before and after hold, beside what else of its target changes, and its most
# (a plan applied replicas -3 and 1e300 into the manifests, and the next plan called the state damaged)
CHANGE_COUNT = {"pool": ("nodes", MOST_COUNT), "deployment": ("replicas", MOST_GPUS)}


def _check_sides(i: int, c: dict[str, Any], kind: str) -> str | None:
    """What is wrong with the before and after of the ``i``-th change, a ``kind`` change, or None:
    each holds the count a change of its kind sets, and is there as its action needs."""
    action, (key, most) = c["action"], CHANGE_COUNT[kind]
    need = {"create": (False, True), "update": (True, True), "delete": (True, False)}.get(action)
    for side, wanted in zip(("before", "after"), need or (None, None), strict=True):
        value = c.get(side)
        if value is not None and not isinstance(value, dict):
            return f"changes[{i}].{side} is not an object"
        if wanted is not None and (value is not None) != wanted:
            return (f"changes[{i}] is a {action} {'without' if wanted else 'with'} {side}; "
                    f"a {action} has {'a' if wanted else 'no'} {side}")
        if value is None:
            continue
        if key not in value:
            return f"changes[{i}].{side} has no {key}"
        if not _count(value[key], most):
            return f"changes[{i}].{side}.{key} is {_shown(value[key])}, not a count (0 to {most:,})"
    return None


Name = Annotated[str, Field(min_length=1)]


class _PoolTarget(Strict):
    """A pool change's target as ``diff.pool_target`` writes it, less its group (its provider's part)."""

    pool: Name
    min_nodes: Count
    max_nodes: Count
    gpu_type: Name
    gpus_per_node: int = Field(ge=1, le=1024)
    spot: bool

    @model_validator(mode="after")
    def _bounds(self) -> _PoolTarget:
        if self.min_nodes > self.max_nodes:
            raise ValueError(f"minNodes ({self.min_nodes}) is greater than maxNodes ({self.max_nodes})")
        return self


class AwsPoolTarget(_PoolTarget):
    provider: Literal["aws"]
    aws: AwsTarget


class GcpPoolTarget(_PoolTarget):
    provider: Literal["gcp"]
    gcp: GcpTarget


class RolloutStrategy(Strict):
    """A Deployment's RollingUpdate strategy, where its pool has no room for Kubernetes' default
    surge (``diff._surges``): counts, at least one of them above 0, as the API server asks."""

    max_surge: int = Field(ge=0, le=MOST_GPUS)
    max_unavailable: int = Field(ge=0, le=MOST_GPUS)

    @model_validator(mode="after")
    def _moves(self) -> RolloutStrategy:
        if not self.max_surge and not self.max_unavailable:
            raise ValueError("maxSurge and maxUnavailable are both 0: a rollout could never replace a pod")
        return self


class DeploymentTarget(Strict):
    """A deployment change's target as ``diff.deployment_target`` writes it (image and version may be
    null), with the strategy ``diff._surges`` gives a rollout."""

    provider: Provider
    pool: Name
    model: Name
    gpus: int = Field(ge=1, le=1024)
    gpu_type: Name
    image: str | None
    version: str | None
    workload: Workload
    kubernetes: KubernetesTarget
    strategy: RolloutStrategy | None = None

    # what the fleet's Model takes: they go into the manifests as they are
    _image = field_validator("image")(lambda v: image_reference(v))
    _version = field_validator("version")(lambda v: version_word(v))


# the schema of a pool change's target, by its provider: placer sizes the groups of these only
POOL_TARGETS: dict[str, type[_PoolTarget]] = {"aws": AwsPoolTarget, "gcp": GcpPoolTarget}


def _schema_wrong(where: str, model: type[BaseModel], value: Any) -> str | None:
    """What is wrong with ``value``, found at ``where``, by ``model`` (the first problem, naming
    its field path: ``changes[1].target.model: missing``), or None."""
    try:
        model.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join([where, *map(str, first["loc"])])
        if first["type"] == "missing":
            return f"{path}: missing"
        if first["type"] == "extra_forbidden":
            return f"{path}: not a field placer writes there"
        msg = first["msg"].removeprefix("Value error, ")
        got = "" if isinstance(first["input"], dict) else f", got {_shown(first['input'])}"
        return f"{path}: {msg[:1].lower()}{msg[1:]}{got}"
    return None


def _check_target(where: str, target: Any, kind: str) -> str | None:
    """What is wrong with ``target``, found at ``where``, the target of a ``kind`` change or row, or
    None: each kind of target (a deployment's; an aws or a gcp pool's) has the fields apply, render
    and the providers read, of their types (a target without its model failed the apply half way, on
    a KeyError)."""
    if not isinstance(target, dict):
        return f"{where} is not an object"
    if kind == "deployment":
        return _schema_wrong(where, DeploymentTarget, target)
    provider = target.get("provider")
    if provider not in POOL_TARGETS:
        return (f"{where}.provider: missing" if provider is None else
                f"{where}.provider is {_shown(provider)}, not {' or '.join(POOL_TARGETS)} (placer sizes the "
                "groups of those pools only)")
    return _schema_wrong(where, POOL_TARGETS[str(provider)], target)


def _check_change(i: int, c: Any) -> str | None:
    """What is wrong with the ``i``-th change of a plan file, or None."""
    if not isinstance(c, dict):
        return f"changes[{i}] is not an object"
    if c.get("action") not in ACTIONS:  # an unknown one was applied as a create
        return f"changes[{i}] has action {c.get('action')!r}, not one of {', '.join(ACTIONS)}"
    address = c.get("address")
    kind, _, rest = address.partition("/") if isinstance(address, str) else ("", "", "")
    if kind not in ("pool", "deployment") or not rest or (kind == "deployment") != ("@" in rest):
        return f"changes[{i}] has address {address!r}, not pool/<pool> or deployment/<model>@<pool>"
    if c.get("phase") not in PHASE_NAMES or isinstance(c.get("phase"), bool):
        return f"changes[{i}] has phase {c.get('phase')!r}, not one of {', '.join(map(str, PHASE_NAMES))}"
    wrong = _check_sides(i, c, kind)
    if wrong:
        return wrong
    phases = PHASES_OF.get((kind, c["action"]), tuple(PHASE_NAMES))
    if c["phase"] not in phases:  # a create moved to phase 4 was made after every delete: break before make
        return (f"changes[{i}] puts a {kind}'s {c['action']} in phase {c['phase']} ({PHASE_NAMES[c['phase']]}); placer "
                f"makes it in phase {' or '.join(map(str, phases))}")
    reasons = c.get("reasons") or []
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        return f"changes[{i}].reasons is not an array of strings"
    if "target" not in c:
        return f"changes[{i}].target: missing"
    wrong = _check_target(f"changes[{i}].target", c["target"], kind)
    if wrong:
        return wrong
    # the address and the target name one pool (and model): apply records the change by its address
    # and its providers write the target's (pool/zzz over pb's target gave pb's group two tfvars entries)
    model, at, pool = rest.partition("@")  # as Change.model and Change.pool read it
    for key, named in ({"model": model, "pool": pool} if at else {"pool": rest}).items():
        if c["target"][key] != named:
            return (f"changes[{i}] has address {address!r}, but its target.{key} is {_shown(c['target'][key])}: "
                    f"both name the {key} it changes")
    return None


# each kind of FIELDS: the test a value passes, and what it is in words
KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "name": (lambda v: isinstance(v, str) and v != "", "a name"),
    "text": (lambda v: isinstance(v, str), "a string"),
    "nodes": (_count, f"a count (0 to {MOST_COUNT:,})"),
    "replicas": (lambda v: _count(v, MOST_GPUS), f"a count (0 to {MOST_GPUS:,})"),
    "gpus": (lambda v: _count(v, MOST_GPUS), f"a count of GPUs (0 to {MOST_GPUS:,})"),
    "whole": (lambda v: _count(v, 2 ** 63 - 1), "a whole number of 0 or more"),
    "amount": (lambda v: _number(v) and v >= 0, "a number of 0 or more"),
    "number": (_number, "a number"),
    "object": (lambda v: isinstance(v, dict), "an object"),
    "flag": (lambda v: isinstance(v, bool), "true or false"),
}


def _check_fields(where: str, entry: dict[str, Any], fields: dict[str, str]) -> str | None:
    """What is wrong with ``entry``, found at ``where``, against ``fields`` (see FIELDS), or None."""
    for key, kind in fields.items():
        value = entry.get(key)
        if kind.endswith("?") and value is None:
            continue
        if key not in entry:
            return f"{where} has no {key}"
        test, words = KINDS[kind.rstrip("?")]
        if not test(value):
            return f"{where + '.' if where else ''}{key} is {_shown(value)}, not {words}"
    return None


def _check_settings(settings: dict[str, Any]) -> str | None:
    """What is wrong with the settings apply reads, by the fleet's own Settings rules, or None.
    Each part, and each field of it that ``plan`` writes (all but those null by default), must be
    there: apply takes nothing from a default, as a plan reviewed in gitops mode whose
    ``apply.mode`` was lost went live."""
    for part, model in (("state", StateSettings), ("apply", ApplySettings)):
        if part not in settings:
            return f"settings.{part}: missing"
        if not isinstance(settings[part], dict):
            return f"settings.{part} is not an object"
        written = [f.alias or name for name, f in model.model_fields.items() if f.default is not None]
        lost = next((key for key in written if key not in settings[part]), None)
        if lost is not None:
            return f"settings.{part}.{lost}: missing"
        wrong = _schema_wrong(f"settings.{part}", model, settings[part])
        if wrong:
            return wrong
    return None


def _check_body(data: dict[str, Any]) -> str | None:
    """What is wrong with a plan file's own fields and report sections, or None."""
    prior = data["priorState"]
    if not isinstance(prior, dict):
        return "priorState is not an object"
    wrong = _check_fields("", data, TOP_FIELDS) or _check_fields("priorState", prior, PRIOR_FIELDS)
    if not wrong and prior.get("applying") is not None:
        wrong = _check_fields("priorState.applying", prior["applying"], APPLYING_FIELDS)
    if wrong:
        return wrong
    for key, kind in SECTIONS.items():
        if key in data and not isinstance(data[key], kind):
            return f"{key} is not a JSON {'object' if kind is dict else 'array'}"
    for key, fields in FIELDS.items():
        if key not in data:
            continue
        entries = [data[key]] if isinstance(data[key], dict) else data[key]
        for j, entry in enumerate(entries):
            where = key if isinstance(data[key], dict) else f"{key}[{j}]"
            wrong = f"{where} is not an object" if not isinstance(entry, dict) else _check_fields(where, entry, fields)
            if wrong:
                return wrong
    # the rows render writes the tree from: their targets as a change's (a placement's gpus of "two"
    # was an internal error, a namespace "../x" and maxNodes -5 were written into the tree)
    for key, of in (("placements", "deployment"), ("pools", "pool")):
        for j, entry in enumerate(data.get(key, [])):
            if of == "pool" and entry.get("target") is None:
                continue
            wrong = _check_target(f"{key}[{j}].target", entry["target"], of)
            named = next((k for k in ("model", "pool") if not wrong and k in entry and entry["target"][k] != entry[k]),
                         None)
            if named is not None:
                wrong = (f"{key}[{j}] is of {named} {entry[named]!r}, but its target.{named} is "
                         f"{_shown(entry['target'][named])}: both name the {named} it places")
            if wrong:
                return wrong
    for key, value in data.get("cost", {}).items():
        if not _number(value):
            return f"cost.{key} is {_shown(value)}, not a number"
    for name, model in data.get("models", {}).items():
        wrong = (f"models.{name} is not an object" if not isinstance(model, dict)
                 else _check_fields(f"models.{name}", model, {"demand": "amount"}))
        if wrong:
            return wrong
    return _check_settings(data["settings"])


def loads(text: str, source: str = "plan") -> Plan:
    def finite_only(word: str) -> Any:  # JSON has no Infinity or NaN, and a plan none to carry
        raise ValueError(f"{word} is no JSON number")

    def finite(word: str) -> float:
        value = float(word)
        return value if math.isfinite(value) else finite_only(word)  # 1e400

    try:
        data = json.loads(text, parse_constant=finite_only, parse_float=finite)
    except ValueError as exc:
        if not isinstance(exc, json.JSONDecodeError):
            raise PlanFileError(f"{source}: not a plan file ({exc}); re-plan") from None
        raise PlanFileError(f"{source}: not a plan file (invalid JSON at line {exc.lineno}: {exc.msg}); "
                            "create one with `placer plan FLEET -o PLAN`") from None
    if not isinstance(data, dict):
        raise PlanFileError(f"{source}: not a plan file (expected a JSON object)")
    version = data.get("formatVersion")
    if version is None:  # some other JSON file: a state file, a whatif report, a fleet's schema
        raise PlanFileError(f"{source}: not a plan file (no formatVersion); create one with "
                            "`placer plan FLEET -o PLAN`")
    if type(version) is int and version > FORMAT_VERSION:
        # a plan of a newer placer: "re-plan with this placer version" alone read as if the plan were stale or broken
        writer = data.get("placerVersion")
        by = f"placer {writer}" if isinstance(writer, str) and writer.isprintable() and 0 < len(writer) <= 40 \
            else "a newer placer"
        raise PlanFileError(f"{source}: plan formatVersion {version} is newer than this placer ({PLACER_VERSION}) "
                            f"reads (formatVersion {FORMAT_VERSION}): it was written by {by}; show or apply it with "
                            "that placer (or a newer one), or re-plan with this one")
    if version != FORMAT_VERSION or type(version) is not int:  # true, 1.0 == 1 in Python, not in a plan
        raise PlanFileError(f"{source}: plan formatVersion {version!r} is not one this placer ({PLACER_VERSION}) "
                            f"knows (it reads {FORMAT_VERSION}); re-plan with this placer version")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise PlanFileError(f"{source}: plan file is missing {', '.join(missing)}; it may be truncated: re-plan")
    if not isinstance(data["changes"], list):
        raise PlanFileError(f"{source}: malformed plan file (changes is not a JSON array); re-plan")
    wrong = next((w for w in (_check_change(i, c) for i, c in enumerate(data["changes"])) if w), None) \
        or _check_body(data)
    if wrong:
        raise PlanFileError(f"{source}: malformed plan file ({wrong}); was it edited by hand? re-plan")
    from placer.spec.loader import controls  # the fleet's own check: a plan holds only what a fleet may

    held = controls(data, ())
    if held:
        where = ".".join(map(str, held[0][0]))
        raise PlanFileError(f"{source}: malformed plan file ({where} contains the control character {held[0][1]!r}, "
                            "which would reach the terminal as it is); was it edited by hand? re-plan")
    try:
        prior = data["priorState"]
        changes = tuple(Change.from_json(c) for c in data["changes"])
        body = {k: v for k, v in data.items()
                if k not in ("formatVersion", "placerVersion", "createdAt", "fleetDigest", "priorState", "changes")}
        return Plan(
            created_at=str(data.get("createdAt", "")),
            fleet_digest=str(data["fleetDigest"]),
            prior_lineage=prior.get("lineage"),
            prior_serial=int(prior.get("serial", 0)),
            body=body,
            changes=changes,
            placer_version=str(data.get("placerVersion", "")),
            prior_applying=None if prior.get("applying") is None else dict(prior["applying"]),
            prior_refreshed=prior.get("refreshed") is True,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PlanFileError(f"{source}: malformed plan file ({exc}); re-plan") from None


def read(path: str | Path) -> Plan:
    what = not_regular(path)
    if what in ("a character device", "a block device", "a socket"):  # /dev/zero was read until memory ran out
        raise PlanFileError(f"{path}: not a plan file ({what}); name the file `placer plan FLEET -o PLAN` wrote")
    try:
        # utf-8-sig: an editor or PowerShell's Out-File may have saved the plan with a byte-order mark
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        if str(path) == "-":  # meant as standard input: `plan -o -` would write a file named '-' for it
            raise PlanFileError("-: no such plan file, and a plan is not read from standard input; save one with "
                                "`placer plan FLEET -o plan.json` and pass that path") from None
        raise PlanFileError(f"{path}: no such plan file; create one with `placer plan FLEET -o {shlex.quote(str(path))}`") from None
    except IsADirectoryError:  # the fleet, most likely: it said "[Errno 21] Is a directory"
        raise PlanFileError(f"{path} is a directory, not a plan file: make one with `placer plan {shlex.quote(str(path))} -o plan.json` "
                            "and pass that") from None
    except NotADirectoryError:  # it said "[Errno 20] Not a directory", naming no file
        raise PlanFileError(f"{path}: no such plan file: {blocked_folder(Path(path)) or 'a folder in its path is a file'}"
                            ) from None
    except OSError as exc:  # it said "[Errno 13] Permission denied: 'PATH'"
        raise PlanFileError(str(cannot_read(path, exc, "as a plan file"))) from None
    except UnicodeDecodeError as exc:
        raise PlanFileError(f"{path}: cannot read plan file: {exc}") from None
    return loads(text, str(path))


def _umask() -> int:
    """The process's umask, read without setting it (os.umask sets it, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def link_on_the_way(root: Path, path: Path) -> Path | None:
    """The first symbolic link from below ``root`` down to ``path`` (itself included), or None: a
    tree that keeps to its folder is written where none is (``atomic_write`` follows links, as a
    ``-o`` target may be one, and a link inside a GitOps tree led an apply outside it)."""
    at = root
    for part in path.relative_to(root).parts:
        at = at / part
        if at.is_symlink():
            return at
    return None


def link_refusal(root: Path, path: Path) -> str | None:
    """Why ``path``, a file of the GitOps tree under ``root``, is not written, or None: a symbolic
    link on the way (``link_on_the_way``) may lead outside the tree (a manifest that was a link
    overwrote the file it pointed to; a cluster folder that was one got the manifests there)."""
    link = link_on_the_way(root, path)
    if link is None:
        return None
    what = "folder" if link != path else "file"
    where = "" if link == path else f"cannot write {path}: "
    return (f"{where}{link} is a symbolic link (to {os.readlink(link)}); placer writes its GitOps tree's own "
            f"files, never through a link, which may lead outside {root}: replace the link with a plain {what} "
            "(or remove it) and try again")


def blocked_folder(path: Path) -> str | None:
    """What above ``path`` keeps its folder from being one, in words, or None: a file, or a symbolic
    link to nothing (mkdir said only `File exists`, naming neither)."""
    for above in path.parents:
        if above.is_symlink() and not above.exists():
            return (f"{above} is a symbolic link to {os.readlink(above)}, which does not exist: create what it "
                    "points to, or remove the link")
        if above.exists() and not above.is_dir():
            return f"{above} is a file, not a directory"
    return None


# the temporary file ``atomic_write`` writes before its rename: ``.<name>.`` and mkstemp's 8 characters
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}")


def os_reason(exc: OSError) -> str:
    """An OSError's reason in words, without the file it names (which may be a temporary one):
    ``permission denied``."""
    reason = exc.strerror or str(exc)
    return reason[:1].lower() + reason[1:]


def cannot_list(folder: Path, exc: OSError, doing: str, writes: bool = True) -> OSError:
    """``exc``, an OSError listing ``folder`` (``doing``: what for, in words; ``writes``: whether
    placer writes there too), as one that says so and what to do: a folder it can write but not
    list (`chmod 300`) was Python's "[Errno 13] Permission denied: 'FOLDER'", and no word of what
    placer was doing."""
    said = f"cannot list the folder {folder} ({os_reason(exc)}) {doing}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        said += (": make the folder readable as well as writable by this user (`chmod u+rwx " if writes
                 else ": make the folder readable by this user (`chmod u+rx ")
        said += f"{shlex.quote(str(folder))}` if you own it), then run the command again"
    return type(exc)(said)


def cannot_read(path: str | Path, exc: OSError, doing: str) -> OSError:
    """``exc``, an OSError reading the file ``path`` (``doing``: what for, in words), as one that
    says so and what to do: a file it cannot read (`chmod 200`) was Python's "[Errno 13] Permission
    denied: 'FILE'"."""
    said = f"cannot read {path} ({os_reason(exc)}) {doing}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        # a folder on the way this user cannot enter (`chmod 600`) is what to change, not the file
        closed = next((above for above in reversed(Path(path).parents) if not os.access(above, os.X_OK)), None)
        if closed is not None:
            said += (f": the folder {closed} cannot be entered; make it searchable by this user (`chmod u+x "
                     f"{shlex.quote(str(closed))}` if you own it), then run the command again")
        else:
            said += (f": make it readable by this user (`chmod u+r {shlex.quote(str(path))}` if you own it), then "
                     "run the command again")
    return type(exc)(said)


def read_said(path: Path, doing: str, errors: str = "replace") -> str:
    """The text of the file ``path`` (``doing``: what for); one it cannot read (`chmod 200`) is said
    in words (``cannot_read``): it was Python's "[Errno 13] Permission denied: 'FILE'". ``errors``:
    how bytes that are no UTF-8 are read ("replace": an edit like any other; "strict": raised)."""
    try:
        return path.read_bytes().decode("utf-8", errors=errors)
    except OSError as exc:
        raise cannot_read(path, exc, doing) from None


def list_folder(folder: Path, doing: str, writes: bool = True) -> list[Path]:
    """What ``folder`` holds, sorted; an OSError said as ``cannot_list`` says it. A folder it can
    list but not enter (`chmod 600`) is refused here too: each look at what it holds (``is_dir``,
    ``exists``) was Python's "[Errno 13] Permission denied: 'FOLDER/NAME'" (``FOLDER/.`` is looked
    up through the folder, as its entries are)."""
    try:
        found = sorted(folder.iterdir())
        os.stat(os.path.join(folder, "."))
    except OSError as exc:
        raise cannot_list(folder, exc, doing, writes) from None
    return found


def tree_leftovers(root: Path) -> list[Path]:
    """The temporary files ``atomic_write`` left in the GitOps tree under ``root`` when killed before
    its rename (a SIGKILL mid-apply left hidden ``clusters/*/.m-pa.yaml.XXXXXXXX`` files for good):
    those of the files placer writes there only, a manifest or kustomization in a cluster folder and
    the tfvars, never in a folder that is a link. A folder it cannot list is said in words
    (``cannot_list``)."""
    doing = "to remove what a killed write left there"
    clusters = root / "clusters"
    folders = [] if clusters.is_symlink() or not clusters.is_dir() else list_folder(clusters, doing)
    found = []
    for folder in [*folders, root / "terraform"]:
        if folder.is_symlink() or not folder.is_dir():
            continue
        for path in list_folder(folder, doing):
            match = _TEMPORARY.fullmatch(path.name)
            if match is None or path.is_symlink() or not path.is_file():
                continue
            name = match["name"]
            if name.endswith(".yaml") if folder.parent == clusters else name == "placer.auto.tfvars.json":
                found.append(path)
    return found


def file_leftovers(path: Path) -> list[Path]:
    """The temporary files ``atomic_write`` left beside ``path`` (``.<name>.XXXXXXXX``) when killed
    before its rename."""
    target = Path(os.path.realpath(path))
    if not target.parent.is_dir():
        return []
    return [left for left in sorted(target.parent.iterdir())
            if (match := _TEMPORARY.fullmatch(left.name)) is not None and match["name"] == target.name
            and not left.is_symlink() and left.is_file()]


def _where(path: str | Path) -> Path:
    """The file writing ``path`` writes, refused where it is a folder or under a file."""
    target = Path(path)
    if target.is_symlink():  # the file it points to is replaced, the link kept (it was replaced by a file)
        target = Path(os.path.realpath(target))
    if target.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a directory; give a file path")
    blocked = blocked_folder(target)
    if blocked:
        raise NotADirectoryError(f"cannot write {path}: {blocked}")
    return target


def check_writable(path: str | Path) -> None:
    """Raise the OSError ``atomic_write(path, ...)`` would for a path it cannot write, writing
    nothing that stays: a command that writes at the end (``plan -o`` after a 44 s solve) asks
    first. A temporary file is made and removed in the nearest folder that exists."""
    try:
        target = _where(path)  # a name too long for the file system: its lstat says so
        if target.exists() and not target.is_file():  # a device or FIFO: written into
            if not os.access(target, os.W_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
            return
        base = next(above for above in target.parents if above.exists())
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=base)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        said = cannot_write(path, exc)
        if said is exc:  # said so already (a folder, under a file): raised from itself, its cause was itself
            raise
        raise said from exc


def cannot_write(path: str | Path, exc: OSError) -> OSError:
    """``exc``, an OSError writing ``path``, as one that names ``path`` and why, never a temporary
    file: ``cannot write PATH: Permission denied``. A name too long says what to do (it was Python's
    ``[Errno 36] File name too long: '...'``, the whole path again). One said so already is kept
    (``plan -o FILE/plan.json`` said "cannot write P: cannot write P: FILE is a file, ...")."""
    if str(exc).startswith("cannot write "):
        return exc
    if exc.errno == errno.ENAMETOOLONG:
        return type(exc)(f"cannot write {path}: a file or folder name in it is too long for the file system "
                         "(most take 255 bytes a name, 4,096 a path); give a shorter path")
    return type(exc)(f"cannot write {path}: {exc.strerror or exc}")


def _libc_syncfs() -> Callable[[int], int] | None:
    """syncfs(2) where the C library has it (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return cast(Callable[[int], int], libc.syncfs)
    except (OSError, AttributeError):
        return None


SYNCFS = _libc_syncfs()


SYNCFS_FROM = 16  # files written at once from which a syncfs, wider than an fsync, is worth it: a tree


def _syncfs(folders: list[Path]) -> None:
    """Make what was written in ``folders`` durable with one syncfs(2) per file system they are on
    (a tree at L: 2 calls where a sync a file took thousands). Only where SYNCFS is found."""
    assert SYNCFS is not None
    one: dict[int, Path] = {}
    for folder in folders:
        one.setdefault(folder.stat().st_dev, folder)
    for folder in one.values():
        try:
            fd = os.open(folder, os.O_RDONLY)
        except PermissionError:  # a folder it may write but not read (`chmod 300`): see _fsync_folder
            os.sync()
            return
        try:
            if SYNCFS(fd) != 0:
                code = ctypes.get_errno()
                raise OSError(code, os.strerror(code))
        finally:
            os.close(fd)


def _fsync(path: str | Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable (fsync(2) of the folder). One it may write but not
    read (`chmod 300`, a drop folder) cannot be opened to be synced: sync(2) makes them durable
    instead (every file system's writes), where it failed a write that was done ("cannot write
    FOLDER: Permission denied", the file in place)."""
    try:
        _fsync(folder, os.O_RDONLY)
    except PermissionError:
        os.sync()


def temporary_beside(target: Path, staged: list[tuple[str | Path, Path, str]], path: str | Path) -> tuple[int, str]:
    """Create a temporary file beside ``target`` (``.<name>.XXXXXXXX``, as mkstemp's), open for
    writing, and put it on ``staged``, the list a failed write removes, before it exists: an
    interrupt (Ctrl-C, SIGTERM) inside mkstemp, after it made the file, left the file for good.
    ``atomic_write_all``'s, and the state lock's private file (``state.LocalBackend.lock``)."""
    while True:
        tmp = str(target.parent / f".{target.name}.{''.join(secrets.choice(_TEMPORARY_LETTERS) for _ in range(8))}")
        staged.append((path, target, tmp))
        try:
            return os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600), tmp
        except FileExistsError:  # another's: not ours to remove
            staged.pop()


_TEMPORARY_LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789_"  # mkstemp's, which ``_TEMPORARY`` matches


def atomic_write(path: str | Path, text: str) -> None:
    """Write via a temporary file in the same directory, fsync, rename: never a half file. An
    OSError names ``path`` and why, never the temporary file."""
    atomic_write_all({path: text})


def atomic_write_all(files: Mapping[str, str] | Mapping[Path, str] | Mapping[str | Path, str]) -> None:
    """``atomic_write`` for many files at once, as safe and with far fewer syncs: each file is
    written to a temporary file beside it; once all are, they are made durable (one syncfs per
    file system, else an fsync each), renamed over their paths, and the renames made durable (a
    syncfs again, else an fsync a folder). A file and then its folder, one after the other, took
    2,142 syncs and 5 s for a GitOps tree at M. A crash leaves each file its old text or its new,
    never half of one. An OSError names the path and why, never a temporary file."""
    staged: list[tuple[str | Path, Path, str]] = []  # (path, file it writes, its temporary file)
    path: str | Path = ""
    # a few files (or no syncfs): each synced through the handle that wrote it, as it is written (a
    # reopened one failed on a read-only file's temporary copy, whose mode it already had)
    bulk = SYNCFS is not None and len(files) >= SYNCFS_FROM
    try:
        for path, text in files.items():
            target = _where(path)
            if target.exists() and not target.is_file():
                # a device, a FIFO, a socket: written into, never renamed over (`plan -o /dev/null`
                # as root replaced the device with a file)
                with open(target, "w", encoding="utf-8") as handle:
                    handle.write(text)
                continue
            # the file's own mode where it exists, else what the umask gives a new file (mkstemp's
            # 0600 made every plan file and manifest unreadable to the rest of a team)
            mode = target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~_umask()
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = temporary_beside(target, staged, path)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(fd, mode)
                handle.write(text)
                if not bulk:
                    handle.flush()
                    os.fsync(fd)
        folders = sorted({target.parent for _, target, _ in staged})
        path = folders[0] if folders else ""
        if bulk:
            _syncfs(folders)
        for done, (path, target, tmp) in enumerate(staged):
            os.replace(tmp, target)
            staged[done] = (path, target, "")
        path = folders[0] if folders else ""
        if bulk:
            _syncfs(folders)
        else:
            for folder in folders:
                path = folder
                _fsync_folder(folder)
    except BaseException as exc:
        for _, _, tmp in staged:
            if tmp and os.path.exists(tmp):
                os.unlink(tmp)
        if isinstance(exc, OSError) and cannot_write(path, exc) is not exc:
            raise cannot_write(path, exc) from exc
        raise


def write(plan: Plan, path: str | Path) -> None:
    atomic_write(path, plan.dumps())
