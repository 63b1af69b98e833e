"""Placement: what runs where (replicas, nodes, routes) and its invariant checks.

A Placement is the optimizer's answer and the input to the cost function and the diff;
it can also come from a baseline, the current state or a test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from placer.fleet import Fleet

EPS = 1e-6
# a demand entry short by no more than this many units/s (and by no more than EPS of its rate) is a
# solver's rounding, not unmet demand: the tables print rates to a hundredth. A millionth of the
# rate alone hid a whole unit of 1,000,001 that the solver had left unmet and priced (the plan said
# unmet 0.00 and a total 1.00 USD/h below its objective); a billionth of it (the exact route's rows
# come back about 1e-15 of the rate short, the scalable route's up to about 4e-10) would leave the
# plan file's routes, rounded to 6 decimals, short of small rates
UNMET_DUST = 0.01


@dataclass(frozen=True)
class Route:
    model: str
    demand_location: str
    pool: str
    rate: float
    latency_ms: float


@dataclass(frozen=True)
class Placement:
    replicas: Mapping[tuple[str, str], int]
    nodes: Mapping[str, int]
    routes: tuple[Route, ...] = ()
    retired: frozenset[str] = field(default_factory=frozenset)

    # Indexes by model and by pool, built on first use: the cost function, the diff and the
    # policies ask per model and per pool, and scanning every pair each time made pricing bench
    # XL's plan (10,000 models, about 15,000 placements) take 40 s. A Placement's mappings are
    # not changed after it is made.
    @cached_property
    def _by_model(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (m, p), r in self.replicas.items():
            out.setdefault(m, {})[p] = r
        return out

    @cached_property
    def _by_pool(self) -> dict[str, list[tuple[str, int]]]:
        out: dict[str, list[tuple[str, int]]] = {}
        for (m, p), r in self.replicas.items():
            out.setdefault(p, []).append((m, r))
        return out

    @cached_property
    def _routed(self) -> dict[tuple[str, str], float]:
        out: dict[tuple[str, str], float] = {}
        for r in self.routes:
            key = (r.model, r.demand_location)
            out[key] = out.get(key, 0.0) + r.rate
        return out

    def models_on(self, pool: str) -> dict[str, int]:
        """model -> replicas on ``pool``, for the models with a replica there."""
        return {m: r for m, r in self._by_pool.get(pool, []) if r > 0}

    def replicas_of(self, model: str) -> int:
        return sum(self._by_model.get(model, {}).values())

    def pools_of(self, model: str) -> dict[str, int]:
        return {p: r for p, r in self._by_model.get(model, {}).items() if r > 0}

    def routed(self, model: str, demand_location: str) -> float:
        return self._routed.get((model, demand_location), 0.0)

    def gpus_used(self, fleet: Fleet, pool: str) -> int:
        p = fleet.pools[pool]
        return sum(
            r * p.gpus_per_replica(fleet.models[m].spec.replica.gpus)
            for m, r in self._by_pool.get(pool, ())
            if m in fleet.models
        )

    def gpus_capacity(self, fleet: Fleet, pool: str) -> int:
        return self.nodes.get(pool, fleet.pools[pool].min_nodes) * fleet.pools[pool].per_node

    def unmet(self, fleet: Fleet, model_name: str | None = None) -> list[tuple[str, str, float]]:
        """(model, demand location, rate not routed) for every demand entry short by more than EPS of
        its rate or UNMET_DUST units/s, whichever is less, and by more than EPS
        (``model_name``'s alone, where given: the others' are not looked at)."""
        out = []
        for model in fleet.models.values() if model_name is None else [fleet.models[model_name]]:
            if model.name in self.retired:
                continue  # retired on purpose: its demand is not "unmet"
            for d in model.spec.demand:
                short = d.rate - self.routed(model.name, d.location)
                if short > max(EPS, min(EPS * d.rate, UNMET_DUST)):
                    out.append((model.name, d.location, short))
        return out

    def missing_replicas(self, fleet: Fleet, model: str) -> int:
        m = fleet.models[model]
        if m.inference or m.spec.replicas is None:
            return 0
        return max(0, m.spec.replicas - self.replicas_of(model))


def check_hard_constraints(fleet: Fleet, placement: Placement, throughput_of: Mapping[tuple[str, str], float]) -> list[str]:
    """Every broken hard constraint of SPEC section 2 that does not depend on policies.

    ``throughput_of[(model, pool)]`` is the rate one replica serves there (0 where none).
    """
    problems: list[str] = []
    for pool in fleet.pools.values():
        n = placement.nodes.get(pool.name, pool.min_nodes)
        if not pool.min_nodes <= n <= pool.max_nodes:
            problems.append(f"pool {pool.name}: {n} nodes outside [{pool.min_nodes}, {pool.max_nodes}]")
        used = placement.gpus_used(fleet, pool.name)
        if used > n * pool.per_node:
            problems.append(f"pool {pool.name}: {used} GPUs used > {n * pool.per_node} capacity")
    for (m, p), r in placement.replicas.items():
        if r < 0:
            problems.append(f"{m}@{p}: negative replicas")
        model, pool = fleet.models[m], fleet.pools[p]
        if pool.gpus_per_replica(model.spec.replica.gpus) == 0:
            problems.append(f"{m}@{p}: replica of {model.spec.replica.gpus} GPUs does not fit a node")
        if pool.gpu.memory_gib < model.spec.replica.memory_gi_b_per_gpu:
            problems.append(f"{m}@{p}: memory does not fit")
        if pool.spot and not model.spec.spot_tolerant:
            problems.append(f"{m}@{p}: not spot tolerant")
        if model.spec.gpu_types is not None and pool.gpu.name not in model.spec.gpu_types:
            problems.append(f"{m}@{p}: GPU type not allowed")
        if model.inference and pool.gpu.name not in model.spec.throughput:
            problems.append(f"{m}@{p}: no throughput for {pool.gpu.name}")
    served: dict[tuple[str, str], float] = {}
    for route in placement.routes:
        served[(route.model, route.pool)] = served.get((route.model, route.pool), 0.0) + route.rate
        model = fleet.models[route.model]
        slo = next((d.latency_slo_ms for d in model.spec.demand if d.location == route.demand_location), None)
        if slo is not None and route.latency_ms > slo + EPS:
            problems.append(f"route {route.model} {route.demand_location}->{route.pool}: latency over SLO")
    for (m, p), rate in served.items():
        cap = placement.replicas.get((m, p), 0) * throughput_of.get((m, p), 0.0)
        if rate > cap * (1 + 1e-6) + EPS:
            problems.append(f"{m}@{p}: routes {rate:.3f} > capacity {cap:.3f}")
    for model in fleet.models.values():
        for d in model.spec.demand:
            if placement.routed(model.name, d.location) > d.rate * (1 + 1e-6) + EPS:
                problems.append(f"{model.name}: more than demand routed from {d.location}")
        r = placement.replicas_of(model.name)
        if model.inference:
            if model.spec.min_replicas is not None and r < model.spec.min_replicas and model.name not in placement.retired:
                problems.append(f"{model.name}: {r} replicas < minReplicas {model.spec.min_replicas}")
            if model.spec.max_replicas is not None and r > model.spec.max_replicas:
                problems.append(f"{model.name}: {r} replicas > maxReplicas {model.spec.max_replicas}")
        else:
            if model.spec.replicas is not None and r > model.spec.replicas:
                problems.append(f"{model.name}: {r} replicas > wanted {model.spec.replicas}")
            if model.spec.gang_effective and len(placement.pools_of(model.name)) > 1:
                problems.append(f"{model.name}: gang model split over pools")
            if model.spec.gang_effective and 0 < r < (model.spec.replicas or 0):
                problems.append(f"{model.name}: gang model partly placed ({r} of {model.spec.replicas})")
        if model.name in placement.retired and r > 0:
            problems.append(f"{model.name}: retired but placed")
    return problems
