"""Eligible (model, pool) pairs and routes, with the reason every other pair is out.

Fit rules of SPEC section 2 (node size, memory, GPU allow-list, throughput listing, spot,
data reachability) and the Filter of every required policy. Reasons are constant
strings a user can grep (``memory``, ``gpu-type``, ...), with detail.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from placer.fleet import Fleet, Model, Policy, Pool, model_matches
from placer.placement import EPS, UNMET_DUST
from placer.policy import Rules, behaviour
from placer.spec import Diagnostic

NODE_TOO_SMALL = "node-size"
MEMORY = "memory"
GPU_TYPE = "gpu-type"
NO_THROUGHPUT = "throughput"
SPOT = "spot"
DATA_UNREACHABLE = "data-unreachable"
POLICY = "policy"
RETIRED = "retired"
SLO = "slo"  # explain's reason for an eligible pool no demand reaches within its SLO


@dataclass(frozen=True)
class Exclusion:
    reason: str
    detail: str
    policy: str = ""  # the policy's name, for reason POLICY

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


@dataclass(frozen=True)
class Pair:
    model: str
    pool: str
    gpus_per_replica: int  # c[m,p]
    throughput: float  # rate one replica serves here (0 for training/batch)
    max_replicas: int
    egress_usd_per_gb: tuple[tuple[float, float], ...]  # (gbPerHour, USD/GB) per data entry


@dataclass(frozen=True)
class RouteOption:
    model: str
    demand_index: int
    demand_location: str
    pool: str
    latency_ms: float


@dataclass
class Candidates:
    pairs: dict[tuple[str, str], Pair] = field(default_factory=dict)
    routes: dict[tuple[str, int], list[RouteOption]] = field(default_factory=dict)
    excluded: Mapping[tuple[str, str], Exclusion] = field(default_factory=dict)
    retired: dict[str, str] = field(default_factory=dict)  # model -> why

    def pools_of(self, model: str) -> list[str]:
        """The pools ``model`` may use, from an index of ``pairs`` built again when they change
        (pairs are only ever added). Asked once per model or more by the exact model's build and
        by ``warnings`` on a fleet of any size (``placer validate``): a scan of every pair per call
        is quadratic (at L, 2,000 models by 285,214 pairs)."""
        pairs = self.pairs
        key = (id(pairs), len(pairs))
        index = self.__dict__.get("_pools_index")
        if index is None or index[0] != key:
            by_model: dict[str, list[str]] = {}
            for m, p in pairs:
                by_model.setdefault(m, []).append(p)
            index = (key, by_model)
            self.__dict__["_pools_index"] = index
        return list(index[1].get(model, ()))


def fit(fleet: Fleet, model: Model, pool: Pool) -> Exclusion | None:
    """Why ``model`` cannot run on ``pool`` by the fit rules alone, or None. The GPU type's reasons
    (memory, gpuTypes, throughput) come before the node's size: bigger nodes of a GPU the model
    cannot use would not help, and "node-size" said they would."""
    spec = model.spec
    if pool.gpu.memory_gib < spec.replica.memory_gi_b_per_gpu:
        return Exclusion(MEMORY, f"needs {spec.replica.memory_gi_b_per_gpu:g} GiB per GPU; "
                         f"{pool.gpu.name} has {pool.gpu.memory_gib:g}")
    if spec.gpu_types is not None and pool.gpu.name not in spec.gpu_types:
        return Exclusion(GPU_TYPE, f"{pool.gpu.name} is not in gpuTypes {spec.gpu_types}")
    if model.inference and pool.gpu.name not in spec.throughput:
        return Exclusion(NO_THROUGHPUT, f"no throughput given for {pool.gpu.name}")
    if pool.gpus_per_replica(spec.replica.gpus) == 0:
        return Exclusion(NODE_TOO_SMALL, f"a replica needs {spec.replica.gpus} GPUs on one node; "
                         f"{pool.name} nodes have {pool.per_node}")
    if pool.spot and not spec.spot_tolerant:
        return Exclusion(SPOT, f"{pool.name} is spot and the model is not spotTolerant")
    for src in spec.data:
        if not fleet.topology.reachable(src.location, pool.location.name):
            return Exclusion(DATA_UNREACHABLE, f"data at {src.location} cannot reach {pool.location.name}")
    return None


# ms a route's latency may pass its SLO by and still meet it: a path's latency is a float sum
# (links of 1.1 and 2.2 ms make 3.3000000000000003, which an SLO of 3.3 refused: its demand went
# unmet, "3.3 ms > 3.3 ms"); the plan's own check allows as much (placement.EPS)
SLO_SLACK_MS = 1e-6


def within_slo(latency_ms: float, slo_ms: float | None) -> bool:
    """Whether a route of ``latency_ms`` (inf: none) meets a demand entry's SLO (None: any)."""
    return math.isfinite(latency_ms) and (slo_ms is None or latency_ms <= slo_ms + SLO_SLACK_MS)


def required_of(fleet: Fleet, model: Model, active: Collection[str] | None = None) -> list[Policy]:
    """The required policies that select ``model`` (of those ``active`` names, when given)."""
    return [p for p in fleet.policies if p.required and (active is None or f"policy:{p.name}" in active)
            and model_matches(p.spec.models, model)]


def retirement(fleet: Fleet, rules: Rules, model: Model, policies: Collection[Policy]) -> str | None:
    """Why a required policy among ``policies`` (those that select ``model``) retires it, or None."""
    for policy in policies:
        why = behaviour(rules, policy).retires(policy, fleet, model)
        if why:
            return f"policy {policy.name}: {why}"
    return None


def exclusion(fleet: Fleet, rules: Rules, model: Model, pool: Pool, policies: Collection[Policy]) -> Exclusion | None:
    """Why ``model`` cannot run on ``pool``: the fit rules, then the Filter of each required
    policy among ``policies`` (those that select the model); None when it can."""
    reason = fit(fleet, model, pool)
    if reason is not None:
        return reason
    for policy in policies:
        why = behaviour(rules, policy).excludes(policy, fleet, model, pool)
        if why:
            return Exclusion(POLICY, f"{policy.name}: {why}", policy.name)
    return None


class Exclusions(Mapping[tuple[str, str], Exclusion]):
    """The reason each (model, pool) pair is out, worked out on first lookup: for candidates built
    without them (the scalable route's arrays), so that ``explain`` and a plan's reasons still
    say why. Iterating works out every pair."""

    def __init__(self, fleet: Fleet, rules: Rules, retired: Mapping[str, str]) -> None:
        self._fleet = fleet
        self._rules = rules
        self._retired = retired
        self._policies: dict[str, list[Policy]] = {}
        self._known: dict[tuple[str, str], Exclusion | None] = {}

    def _of(self, key: tuple[str, str]) -> Exclusion | None:
        if key not in self._known:
            model, pool = self._fleet.models.get(key[0]), self._fleet.pools.get(key[1])
            if model is None or pool is None:
                return None
            if model.name in self._retired:
                self._known[key] = Exclusion(RETIRED, self._retired[model.name])
            else:
                if model.name not in self._policies:
                    self._policies[model.name] = required_of(self._fleet, model)
                self._known[key] = exclusion(self._fleet, self._rules, model, pool, self._policies[model.name])
        return self._known[key]

    def __getitem__(self, key: tuple[str, str]) -> Exclusion:
        got = self._of(key)
        if got is None:
            raise KeyError(key)
        return got

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for model in self._fleet.models:
            for pool in self._fleet.pools:
                if self._of((model, pool)) is not None:
                    yield (model, pool)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def find_candidates(fleet: Fleet, rules: Rules) -> Candidates:
    """Eligible pairs and SLO-feasible routes."""
    out = Candidates()
    excluded: dict[tuple[str, str], Exclusion] = {}
    out.excluded = excluded
    matching = {name: required_of(fleet, model) for name, model in fleet.models.items()}
    for model in fleet.models.values():
        why = retirement(fleet, rules, model, matching[model.name])
        if why:
            out.retired[model.name] = why
    for model in fleet.models.values():
        mine: list[str] = []  # the model's pools, as its pairs are added
        for pool in fleet.pools.values():
            key = (model.name, pool.name)
            if model.name in out.retired:
                excluded[key] = Exclusion(RETIRED, out.retired[model.name])
                continue
            reason = exclusion(fleet, rules, model, pool, matching[model.name])
            if reason is not None:
                excluded[key] = reason
                continue
            c = pool.gpus_per_replica(model.spec.replica.gpus)
            cap = pool.max_gpus // c
            if model.inference:
                if model.spec.max_replicas is not None:
                    cap = min(cap, model.spec.max_replicas)
            elif model.spec.replicas is not None:
                cap = min(cap, model.spec.replicas)
            egress = tuple(
                (src.gb_per_hour, fleet.topology.egress_usd_per_gb(src.location, pool.location.name))
                for src in model.spec.data
            )
            out.pairs[key] = Pair(model.name, pool.name, c, model.spec.throughput.get(pool.gpu.name, 0.0), cap, egress)
            mine.append(pool.name)
        for i, dem in enumerate(model.spec.demand):
            options = []
            for pool_name in mine:
                pool = fleet.pools[pool_name]
                lat = fleet.topology.latency_ms(dem.location, pool.location.name)
                if within_slo(lat, dem.latency_slo_ms):
                    options.append(RouteOption(model.name, i, dem.location, pool_name, lat))
            out.routes[(model.name, i)] = options
    return out


def stranded_minimum(fleet: Fleet, retired: Mapping[str, str], n_pools: Callable[[str], int]) -> str | None:
    """An inference model with a minReplicas that no pool can host at all (``n_pools`` counts a
    model's eligible pools), or None. Its minimum makes any plan impossible, but its row counts no
    replica, and a solver given no column at all (no model of the fleet placeable) answers
    "optimal" over nothing: both routes ask this first and answer INFEASIBLE, as they answer when
    other models have pools."""
    for model in fleet.models.values():
        if model.inference and model.spec.min_replicas and model.name not in retired and not n_pools(model.name):
            return model.name
    return None


def eligibility_warnings(fleet: Fleet, retired: Mapping[str, str], n_pools: Callable[[str], int],
                         n_routes: Callable[[str, int], int],
                         reasons: Callable[[str], Iterable[Exclusion]],
                         servable: Callable[[str, int], float],
                         placeable: Callable[[str], Collection[int]]) -> list[Diagnostic]:
    """Models no pool can host, demand no pool can reach within its SLO, and demand beyond what
    any plan could serve (SPEC: "demand that cannot be served ... validate warns about it"),
    given what it counts: a model's eligible pools, a demand entry's routes, why each pool is out
    for a model that has none (asked only of such models), the rate of a demand entry that its
    routes' pools, full of the model's replicas (and no more than its maxReplicas), could serve,
    and the replicas of a training or batch model each pool it may run on could hold.
    ``placer validate`` counts them from the arrays (``optimizer.arrays.fleet_warnings``)."""
    out: list[Diagnostic] = []
    for model in fleet.models.values():
        doc = fleet.document("Model", model.name)
        if doc is None or model.name in retired:
            continue
        if not n_pools(model.name):
            excluded = list(reasons(model.name))
            named = sorted({e.policy for e in excluded if e.reason == POLICY})
            why = [f"{'policy' if len(named) == 1 else 'policies'} {_and(named)}" if reason == POLICY else reason
                   for reason in sorted({e.reason for e in excluded})]
            hint = f" (pools are out for: {', '.join(why)})" if why else ""
            # explain takes the model, not a pool; a fleet without pools has none to explain: it needs one
            said = (f"no pool can host this model{hint}; `placer explain FLEET {model.name}` says why each pool is out"
                    if fleet.pools else
                    "no pool can host this model: the fleet has no pools (add a Pool document for it to run on)")
            out.append(doc.diag("spec", said, severity="warning"))
            continue
        wanted = model.spec.replicas or 0
        if not model.inference and wanted:
            held = placeable(model.name)
            if model.spec.gang_effective and wanted > 1 and max(held, default=0) < wanted:
                out.append(doc.diag("spec.replicas", f"no pool it may run on holds its gang of {wanted} x "
                                    f"{model.spec.replica.gpus} GPUs whole: its {wanted} replicas will be unplaced in "
                                    "any plan; add capacity to one pool or set gang: false", "spec", "replicas",
                                    severity="warning"))
            elif (wanted == 1 or not model.spec.gang_effective) and sum(held) < wanted:
                said = (f"no pool it may run on has room for one of its replicas: its {wanted} will be unplaced in "
                        "any plan; add capacity" if not sum(held) else
                        f"at most {sum(held)} of its {wanted} replicas can be placed (every pool it may run on full "
                        f"of them): {wanted - sum(held)} will be unplaced in any plan; add capacity or lower replicas")
                out.append(doc.diag("spec.replicas", said, "spec", "replicas", severity="warning"))
        for i, dem in enumerate(model.spec.demand):
            if not n_routes(model.name, i) and dem.rate > 0:
                slo = f"{dem.latency_slo_ms:g} ms" if dem.latency_slo_ms is not None else "any latency"
                out.append(doc.diag(f"spec.demand[{i}]", f"no eligible pool is reachable from {dem.location} within "
                                    f"{slo}: this demand will be unmet", "spec", "demand", i, severity="warning"))
                continue
            served = servable(model.name, i)
            if dem.rate - served > max(EPS, min(EPS * dem.rate, UNMET_DUST)):
                cap = (f", and no more than its maxReplicas of {model.spec.max_replicas}"
                       if model.spec.max_replicas is not None else "")
                out.append(doc.diag(f"spec.demand[{i}]", f"at most {served:,.2f} of its rate {dem.rate:,.2f} can be "
                                    f"served (every pool in reach full of this model's replicas{cap}): "
                                    f"{dem.rate - served:,.2f} will be unmet in any plan; add capacity or lower the "
                                    "rate", "spec", "demand", i, severity="warning"))
    return out


def _and(names: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return " and ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} and {names[-1]}"
