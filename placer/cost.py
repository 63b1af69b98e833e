"""THE cost function: any Placement -> its cost, term by term (SPEC section 2).

Used by the plan report, the baselines, what-if and the tests; the optimizer's objective
must agree with it on every plan. Terms in USD per hour, except churn (one-off USD):
``total`` is the running cost per hour, ``objective`` adds churn as the optimizer does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from placer.fleet import Fleet
from placer.placement import Placement
from placer.policy import Rules, Violation, behaviour


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
    total = 0.0
    for pool in fleet.pools.values():
        if pool.elastic:
            total += pool.usd_per_gpu_hour * pool.per_node * placement.nodes.get(pool.name, pool.min_nodes)
        else:
            total += pool.usd_per_gpu_hour * placement.gpus_used(fleet, pool.name)
    return total


def model_compute_usd(fleet: Fleet, placement: Placement, model: str) -> float:
    """A model's compute cost (SPEC, budget): usdPerGpuHour · c[m,p] over its replicas."""
    gpus = fleet.models[model].spec.replica.gpus
    return sum(
        r * fleet.pools[p].usd_per_gpu_hour * fleet.pools[p].gpus_per_replica(gpus)
        for p, r in placement.pools_of(model).items()
    )


def egress_usd(fleet: Fleet, placement: Placement) -> float:
    total = 0.0
    for model in fleet.models.values():
        if not model.spec.data:
            continue
        shares: dict[str, float] = {}
        if model.inference:
            demand = model.total_demand
            if demand <= 0:
                continue
            for route in placement.routes:
                if route.model == model.name:
                    shares[route.pool] = shares.get(route.pool, 0.0) + route.rate / demand
        else:
            wanted = model.spec.replicas or 0
            for pool, r in placement.pools_of(model.name).items():
                shares[pool] = r / wanted if wanted else 0.0
        for pool, share in shares.items():
            dest = fleet.pools[pool].location.name
            for src in model.spec.data:
                total += src.gb_per_hour * fleet.topology.egress_usd_per_gb(src.location, dest) * share
    return total


def latency_usd(fleet: Fleet, placement: Placement) -> float:
    coef = fleet.settings.objective.latency_usd_per_ms_per1k_rate
    return sum(coef * r.rate / 1000.0 * r.latency_ms for r in placement.routes)


def unmet_usd(fleet: Fleet, placement: Placement) -> float:
    """Demand not routed, as ``Placement.unmet`` reports it (a solver's 1e-7 short of a row is no
    unmet demand: at unmetUsdPerRate 1e9 such dust cost 628.85 USD/h where every model showed 0
    unmet), and training/batch replicas not placed, each at its model's priority."""
    obj = fleet.settings.objective
    total = 0.0
    for name, _location, short in placement.unmet(fleet):
        model = fleet.models[name]
        if model.inference:
            total += obj.unmet_usd_per_rate * short * model.priority_factor
    for model in fleet.models.values():
        if model.name not in placement.retired and not model.inference:
            total += obj.unmet_usd_per_replica * placement.missing_replicas(fleet, model.name) * model.priority_factor
    return total


def churn_usd(fleet: Fleet, placement: Placement, current: Mapping[tuple[str, str], int]) -> float:
    per = fleet.settings.objective.churn_usd_per_replica
    return sum(per * max(0, r - current.get(key, 0)) for key, r in placement.replicas.items())


def violations(fleet: Fleet, placement: Placement, rules: Rules) -> list[Violation]:
    out: list[Violation] = []
    for policy in fleet.policies:
        out.extend(behaviour(rules, policy).violations(policy, fleet, placement))
    return out


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
