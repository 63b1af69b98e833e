"""THE cost function: any Placement -> its cost, term by term (SPEC section 2).

Used by the plan report, the baselines, what-if and the tests; the optimizer's objective
must agree with it on every plan. Terms in USD per hour, except churn (one-off USD):
``total`` is the running cost per hour, ``objective`` adds churn as the optimizer does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from placer.fleet import Fleet, Model, Policy, Pool
from placer.placement import Placement, Route
from placer.policy import Rules, Violation, behaviour

# the cost report's cent: a change smaller shows as none (a penalty that moves by less is no reason)
PENNY = 0.005


@dataclass(frozen=True)
class CostBreakdown:
    compute: float
    egress: float
    latency: float
    unmet: float
    churn: float
    penalty: float
    violations: tuple[Violation, ...] = ()

    @property
    def total(self) -> float:
        return self.compute + self.egress + self.latency + self.unmet + self.penalty

    @property
    def objective(self) -> float:
        return self.total + self.churn

    def as_dict(self) -> dict[str, float]:
        return {
            "totalUsdPerHour": self.total,
            "computeUsdPerHour": self.compute,
            "egressUsdPerHour": self.egress,
            "latencyUsdPerHour": self.latency,
            "unmetUsdPerHour": self.unmet,
            "churnUsd": self.churn,
            "penaltyUsdPerHour": self.penalty,
        }


def compute_usd(fleet: Fleet, placement: Placement) -> float:
    return sum(pool_compute_usd(fleet, placement, pool) for pool in fleet.pools)


def pool_compute_usd(fleet: Fleet, placement: Placement, pool: str) -> float:
    """``pool``'s compute cost: an elastic pool's nodes, whatever runs on them; a fixed pool's GPUs
    used (its nodes are there all the same)."""
    p = fleet.pools[pool]
    if p.elastic:
        return p.usd_per_gpu_hour * p.per_node * placement.nodes.get(pool, p.min_nodes)
    return p.usd_per_gpu_hour * placement.gpus_used(fleet, pool)


def replica_compute_usd(pool: Pool, gpus: int) -> float:
    """The compute cost (SPEC, budget) of one replica of ``gpus`` GPUs on ``pool``: usdPerGpuHour · c[m,p]."""
    return pool.usd_per_gpu_hour * pool.gpus_per_replica(gpus)


def model_compute_usd(fleet: Fleet, placement: Placement, model: str) -> float:
    """A model's compute cost (SPEC, budget): usdPerGpuHour · c[m,p] over its replicas."""
    gpus = fleet.models[model].spec.replica.gpus
    return sum(r * replica_compute_usd(fleet.pools[p], gpus) for p, r in placement.pools_of(model).items())


def egress_usd(fleet: Fleet, placement: Placement) -> float:
    routes: dict[str, list[Route]] = {}  # each model's, found once for all of them
    for route in placement.routes:
        routes.setdefault(route.model, []).append(route)
    return sum(model_egress_usd(fleet, placement, m, routes.get(m.name, [])) for m in fleet.models.values()
               if m.spec.data)


def model_egress_usd(fleet: Fleet, placement: Placement, model: Model, routes: Iterable[Route] | None = None) -> float:
    """USD/h of ``model``'s data moved to where it runs, each data source to each pool by the share
    of the model there (of its demand routed, or of its replicas for training and batch).
    ``routes``: the model's routes, where the caller has them (default: found in the plan)."""
    total = 0.0
    for pool, share in _egress_shares(placement, model, routes).items():
        dest = fleet.pools[pool].location.name
        for src in model.spec.data:
            total += src.gb_per_hour * fleet.topology.egress_usd_per_gb(src.location, dest) * share
    return total


def model_egress_by_source(fleet: Fleet, placement: Placement, model: Model,
                           routes: Iterable[Route] | None = None) -> dict[str, float]:
    """``model_egress_usd`` by where its data is: the USD/h of the data moved from each location of
    its data sources (those at one location together) to where it runs."""
    out: dict[str, float] = {}
    for pool, share in _egress_shares(placement, model, routes).items():
        dest = fleet.pools[pool].location.name
        for src in model.spec.data:
            usd = src.gb_per_hour * fleet.topology.egress_usd_per_gb(src.location, dest) * share
            out[src.location] = out.get(src.location, 0.0) + usd
    return out


def _egress_shares(placement: Placement, model: Model, routes: Iterable[Route] | None) -> dict[str, float]:
    """The share of ``model`` each pool runs, as its egress is counted (none without data)."""
    shares: dict[str, float] = {}
    if not model.spec.data:
        return shares
    if model.inference:
        demand = model.total_demand
        if demand <= 0:
            return shares
        for route in placement.routes if routes is None else routes:
            if route.model == model.name:
                shares[route.pool] = shares.get(route.pool, 0.0) + route.rate / demand
    else:
        wanted = model.spec.replicas or 0
        for pool, r in placement.pools_of(model.name).items():
            shares[pool] = r / wanted if wanted else 0.0
    return shares


def latency_usd(fleet: Fleet, placement: Placement, model: str | None = None) -> float:
    """USD/h of the plan's routes' latency (``model``'s alone, where given)."""
    coef = fleet.settings.objective.latency_usd_per_ms_per1k_rate
    return sum(coef * r.rate / 1000.0 * r.latency_ms for r in placement.routes if model is None or r.model == model)


def unmet_usd(fleet: Fleet, placement: Placement, model: str | None = None) -> float:
    """Demand not routed, as ``Placement.unmet`` reports it (a solver's 1e-7 short of a row is no
    unmet demand: at unmetUsdPerRate 1e9 such dust cost 628.85 USD/h where every model showed 0
    unmet), and training/batch replicas not placed, each at its model's priority (``model``'s
    alone, where given)."""
    obj = fleet.settings.objective
    total = 0.0
    for name, _location, short in placement.unmet(fleet, model):
        m = fleet.models[name]
        if m.inference:
            total += obj.unmet_usd_per_rate * short * m.priority_factor
    for m in fleet.models.values() if model is None else [fleet.models[model]]:
        if m.name not in placement.retired and not m.inference:
            total += obj.unmet_usd_per_replica * placement.missing_replicas(fleet, m.name) * m.priority_factor
    return total


def model_usd(fleet: Fleet, placement: Placement, model: str) -> dict[str, float]:
    """``model``'s own terms of the plan's running cost (USD/h): its compute, egress, latency and
    unmet demand, each as the fleet's cost counts it (policy penalties belong to the policies)."""
    return {"compute": model_compute_usd(fleet, placement, model),
            "egress": model_egress_usd(fleet, placement, fleet.models[model]),
            "latency": latency_usd(fleet, placement, model),
            "unmet demand": unmet_usd(fleet, placement, model)}


def churn_usd(fleet: Fleet, placement: Placement, current: Mapping[tuple[str, str], int]) -> float:
    per = fleet.settings.objective.churn_usd_per_replica
    return sum(per * max(0, r - current.get(key, 0)) for key, r in placement.replicas.items())


def violations(fleet: Fleet, placement: Placement, rules: Rules,
               policies: Sequence[Policy] | None = None) -> list[Violation]:
    """What ``placement`` breaks of the fleet's policies (``policies``: of these alone), by each
    rule's own check."""
    out: list[Violation] = []
    for policy in fleet.policies if policies is None else policies:
        out.extend(behaviour(rules, policy).violations(policy, fleet, placement))
    return out


def penalty_by_policy(found: Sequence[Violation]) -> dict[str, float]:
    """The preferred policies' penalties among ``found`` violations, policy by policy (USD/h), each
    priced as ``price`` prices it."""
    out: dict[str, float] = {}
    for v in found:
        if v.enforcement == "preferred":
            out[v.policy] = out.get(v.policy, 0.0) + v.amount * v.penalty_usd_per_hour
    return out


def penalty_changes(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """The preferred policies whose penalty (``penalty_by_policy``'s, USD/h) changes by a cent or
    more from ``before`` to ``after``, by how much, by name: less than 0 where it falls. Their sum
    is what ``price``'s penalty changes by, net of those that fall (to the cents left out)."""
    change = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in sorted({*after, *before})}
    return {name: usd for name, usd in change.items() if abs(usd) >= PENNY}


def price(
    fleet: Fleet,
    placement: Placement,
    rules: Rules,
    current: Mapping[tuple[str, str], int] | None = None,
) -> CostBreakdown:
    found = violations(fleet, placement, rules)
    penalty = sum(v.amount * v.penalty_usd_per_hour for v in found if v.enforcement == "preferred")
    return CostBreakdown(
        compute=compute_usd(fleet, placement),
        egress=egress_usd(fleet, placement),
        latency=latency_usd(fleet, placement),
        unmet=unmet_usd(fleet, placement),
        churn=churn_usd(fleet, placement, current or {}),
        penalty=penalty,
        violations=tuple(found),
    )
