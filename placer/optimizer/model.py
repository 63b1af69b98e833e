"""The placement MIP (SPEC section 2), built on OR-Tools' linear solver wrapper.

Variables
    x[m,p] ∈ ℤ≥0      replicas of model m in pool p, for eligible pairs only
    n[p]   ∈ [min,max] nodes of each elastic pool (fixed pools: n[p] = count)
    y[m,d,p] ≥ 0       rate of m's demand entry d routed to p (SLO-feasible routes only)
    u[m,d] ≥ 0         rate of demand entry d left unmet
    k[m] ≥ 0           training/batch replicas not placed;  g[m,p] ∈ {0,1} gang pool choice
    s[m,p] ≥ 0         replicas started beyond what runs now (churn)
Constraints
    Σ_m c[m,p]·x[m,p] ≤ perNode[p]·n[p]                          (capacity, stranded GPUs in c)
    Σ_d y[m,d,p] ≤ thr[m,type(p)]·x[m,p]                         (a route needs replicas)
    Σ_p y[m,d,p] + u[m,d] = rate[m,d]                            (demand is routed or unmet)
    minReplicas ≤ Σ_p x[m,p] ≤ maxReplicas                       (inference bounds)
    Σ_p x[m,p] + k[m] = replicas[m];  x[m,p] = replicas[m]·g[m,p], Σ_p g[m,p] ≤ 1 (gang: all or none)
    s[m,p] ≥ x[m,p] − current[m,p]
    plus each policy's rows (``placer.policy.ModelBuilder.at_most``).
Objective (USD/h; each term kept apart for the report)
    compute  Σ_fixed usd·c·x + Σ_elastic usd·perNode·n
    egress   Σ_data gb/h·egress(src,p)·(Σ_d y[m,d,p] / demand[m])   (training: x/replicas)
    latency  latencyUsdPerMsPer1kRate·Σ y·latency/1000
    unmet    (unmetUsdPerRate·Σ u + unmetUsdPerReplica·Σ k)·(1 + priority/100 if priority > 0)
    churn    churnUsdPerReplica·Σ s;  penalty Σ penalty·slack of preferred policies
    plus 1e-6 per replica and per node so that free capacity is not filled at random
    (removed from the reported objective).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ortools.linear_solver import pywraplp

from placer.candidates import Candidates
from placer.fleet import Fleet, Model, Policy, Pool
from placer.optimizer.arrays import servable
from placer.policy import Rules, behaviour

TIE_BREAK = 1e-6
MIN_RATE = 1e-9
TERMS = ("compute", "egress", "latency", "unmet", "churn", "penalty")


def create_solver(kind: str = "HIGHS") -> pywraplp.Solver:
    for name in (kind, "SCIP", "CBC"):
        solver = pywraplp.Solver.CreateSolver(name)
        if solver is not None:
            solver.placer_kind = name
            return solver
    raise RuntimeError("no MIP solver available in this OR-Tools build (tried HIGHS, SCIP, CBC)")


@dataclass
class MipModel:
    """The built model: the solver, its variables, and the objective terms as (coef, var) lists."""

    solver: pywraplp.Solver
    x: dict[tuple[str, str], Any] = field(default_factory=dict)
    n: dict[str, Any] = field(default_factory=dict)
    y: dict[tuple[str, int, str], Any] = field(default_factory=dict)
    u: dict[tuple[str, int], Any] = field(default_factory=dict)
    k: dict[str, Any] = field(default_factory=dict)
    # the x keys of each model and of each pool, and the u keys of each model: the rules ask per
    # model and per pool, and a scan of every variable per question made the build quadratic
    x_of_model: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    x_of_pool: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    u_of_model: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    terms: dict[str, list[tuple[float, Any]]] = field(default_factory=lambda: {t: [] for t in TERMS})
    tie_break: list[tuple[float, Any]] = field(default_factory=list)
    penalties: list[tuple[Policy, str, Any]] = field(default_factory=list)
    # the rate of each demand entry its routes can serve at most (``arrays.servable``), and USD/h of
    # the rest, which no plan serves and the model leaves out (the cost is the objective plus this)
    rate: dict[tuple[str, int], float] = field(default_factory=dict)
    unserved_usd: float = 0.0


class MipBuilder:
    """Builds the MIP; implements ``placer.policy.ModelBuilder`` for the rules."""

    def __init__(self, fleet: Fleet, cands: Candidates, current: Mapping[tuple[str, str], int],
                 solver: pywraplp.Solver | None = None, relax: bool = False) -> None:
        self.fleet = fleet
        self.cands = cands
        self.current = current
        self.relax = relax
        self.m = MipModel(solver or create_solver())
        self._count = 0

    # ---------------------------------------------------------------- ModelBuilder protocol

    def pairs(self, models: Sequence[Model], pools: Sequence[Pool]) -> list[tuple[str, str]]:
        names = {p.name for p in pools}
        return [(m.name, p) for m in models for p in self.cands.pools_of(m.name) if p in names]

    def replicas(self, model: str, pool: str) -> Any:
        return self.m.x.get((model, pool), 0)

    def replicas_on(self, model: str, pools: Sequence[Pool]) -> Any:
        names = {p.name for p in pools}
        xs = [self.m.x[(model, p)] for p in self.cands.pools_of(model) if p in names and (model, p) in self.m.x]
        return self.m.solver.Sum(xs) if xs else 0

    def max_replicas_on(self, model: str, pools: Sequence[Pool]) -> int:
        names = {p.name for p in pools}
        return sum(self.cands.pairs[(model, p)].max_replicas for p in self.cands.pools_of(model) if p in names)

    def uses(self, model: str, groups: Sequence[Sequence[Pool]], names: Sequence[str]) -> list[Any]:
        seen: set[str] = set()
        for members in groups:
            twice = seen & {p.name for p in members}
            if twice:
                raise ValueError(f"uses(): pool {sorted(twice)[0]} is in two groups")
            seen |= {p.name for p in members}
        out: list[Any] = []
        for members, name in zip(groups, names, strict=True):
            reps = self.replicas_on(model, members)
            if isinstance(reps, int):
                out.append(None)
                continue
            z = self.new_bool(name)
            self.add(z <= reps, name)
            out.append(z)
        return out

    def total_replicas(self, model: str) -> Any:
        return self.m.solver.Sum([self.m.x[key] for key in self.m.x_of_model.get(model, ())])

    def least_replicas(self, model: str) -> int:
        m = self.fleet.models[model]
        if not m.inference or model in self.cands.retired or not self.cands.pools_of(model):
            return 0
        return int(m.spec.min_replicas or 0)

    def unmet_beyond(self, model: str, replicas: int) -> tuple[Any, float]:
        entries = [(key[1], self.m.u[key]) for key in self.m.u_of_model.get(model, ())]
        if not entries:
            return 0, 0.0
        rate = sum(self.m.rate[(model, i)] for i, _ in entries)
        fastest = max((self.cands.pairs[(model, p)].throughput for p in self.cands.pools_of(model)), default=0.0)
        return self.m.solver.Sum([u for _, u in entries]), max(0.0, rate - replicas * fastest)

    def gpus_used(self, pool: str) -> Any:
        return self.m.solver.Sum([
            self.cands.pairs[key].gpus_per_replica * self.m.x[key] for key in self.m.x_of_pool.get(pool, ())
        ])

    def gpus_capacity(self, pool: str) -> Any:
        p = self.fleet.pools[pool]
        if p.name in self.m.n:
            return p.per_node * self.m.n[p.name]
        return p.min_nodes * p.per_node

    def compute_usd(self, model: str, pool: str) -> Any:
        pair = self.cands.pairs.get((model, pool))
        if pair is None:
            return 0
        return self.fleet.pools[pool].usd_per_gpu_hour * pair.gpus_per_replica * self.m.x[(model, pool)]

    def max_replicas(self, model: str, pool: str) -> int:
        pair = self.cands.pairs.get((model, pool))
        return pair.max_replicas if pair else 0

    def new_bool(self, name: str) -> Any:
        self._count += 1
        if self.relax:
            return self.m.solver.NumVar(0, 1, f"{name}#{self._count}")
        return self.m.solver.BoolVar(f"{name}#{self._count}")

    def add(self, constraint: Any, name: str) -> None:
        if isinstance(constraint, bool):
            if not constraint:
                self.m.solver.Add(self.m.solver.Sum([]) >= 1, name)  # trivially infeasible, but named
            return
        self.m.solver.Add(constraint, name)

    def cut(self, constraint: Any, name: str) -> None:
        self.add(constraint, name)

    def at_most(self, policy: Policy, lhs: Any, rhs: Any, what: str) -> None:
        if policy.required:
            self.add(lhs <= rhs, f"{policy.name}:{what}")
            return
        self._count += 1
        slack = self.m.solver.NumVar(0, self.m.solver.infinity(), f"slack:{policy.name}:{what}#{self._count}")
        self.add(lhs - slack <= rhs, f"{policy.name}:{what}")
        self.m.terms["penalty"].append((policy.penalty, slack))
        self.m.penalties.append((policy, what, slack))

    # ---------------------------------------------------------------- building

    def _int(self, lb: float, ub: float, name: str) -> Any:
        if self.relax:
            return self.m.solver.NumVar(lb, ub, name)
        return self.m.solver.IntVar(lb, ub, name)

    def build(self, rules: Rules) -> MipModel:
        fleet, cands, s, m = self.fleet, self.cands, self.m.solver, self.m
        obj = fleet.settings.objective
        inf = s.infinity()
        for key, pair in cands.pairs.items():
            m.x[key] = self._int(0, pair.max_replicas, f"x[{key[0]},{key[1]}]")
            m.x_of_model.setdefault(key[0], []).append(key)
            m.x_of_pool.setdefault(key[1], []).append(key)
        for pool in fleet.pools.values():
            if pool.elastic:
                m.n[pool.name] = self._int(pool.min_nodes, pool.max_nodes, f"n[{pool.name}]")
                m.terms["compute"].append((pool.usd_per_gpu_hour * pool.per_node, m.n[pool.name]))
                m.tie_break.append((TIE_BREAK, m.n[pool.name]))
            used = [(cands.pairs[k].gpus_per_replica, m.x[k]) for k in m.x_of_pool.get(pool.name, ())]
            if used:
                s.Add(s.Sum([c * v for c, v in used]) <= self.gpus_capacity(pool.name), f"capacity[{pool.name}]")
            if not pool.elastic:
                m.terms["compute"].extend((pool.usd_per_gpu_hour * c, v) for c, v in used)
        for key, v in m.x.items():
            m.tie_break.append((TIE_BREAK, v))
            cur = self.current.get(key, 0)
            if obj.churn_usd_per_replica > 0:
                start = s.NumVar(0, inf, f"s[{key[0]},{key[1]}]")
                s.Add(start >= v - cur)
                m.terms["churn"].append((obj.churn_usd_per_replica, start))

        for model in fleet.models.values():
            if model.name in cands.retired:
                continue
            pools = cands.pools_of(model.name)
            factor = model.priority_factor
            if model.inference:
                self._inference(model, pools, factor)
            else:
                self._batch(model, pools, factor)

        for policy in fleet.policies:
            behaviour(rules, policy).constrain(policy, self)

        objective = s.Objective()
        for term in TERMS:
            for coef, var in m.terms[term]:
                objective.SetCoefficient(var, objective.GetCoefficient(var) + coef)
        for coef, var in m.tie_break:
            objective.SetCoefficient(var, objective.GetCoefficient(var) + coef)
        objective.SetMinimization()
        return m

    def _inference(self, model: Model, pools: list[str], factor: float) -> None:
        fleet, cands, s, m = self.fleet, self.cands, self.m.solver, self.m
        obj = fleet.settings.objective
        spec = model.spec
        total_demand = model.total_demand
        routed_to: dict[str, list[Any]] = {p: [] for p in pools}
        for i, dem in enumerate(spec.demand):
            options = cands.routes.get((model.name, i), [])
            pairs = [cands.pairs[(model.name, opt.pool)] for opt in options]
            served, beyond = servable(np.array([dem.rate]), np.zeros(len(pairs), dtype=np.int64),
                                      np.arange(len(pairs)), np.array([p.throughput for p in pairs], dtype=float),
                                      np.array([p.max_replicas for p in pairs], dtype=np.int64),
                                      np.array([spec.max_replicas or 0]))
            rate = float(served[0])
            m.unserved_usd += obj.unmet_usd_per_rate * factor * float(beyond[0])
            if rate < MIN_RATE:
                continue  # numerically nothing: leaves the solver's tolerances alone
            m.rate[(model.name, i)] = rate
            u = s.NumVar(0, rate, f"u[{model.name},{i}]")
            m.u[(model.name, i)] = u
            m.u_of_model.setdefault(model.name, []).append((model.name, i))
            m.terms["unmet"].append((obj.unmet_usd_per_rate * factor, u))
            ys = []
            for opt in options:
                y = s.NumVar(0, rate, f"y[{model.name},{i},{opt.pool}]")
                m.y[(model.name, i, opt.pool)] = y
                ys.append(y)
                routed_to[opt.pool].append(y)
                lat = obj.latency_usd_per_ms_per1k_rate * opt.latency_ms / 1000.0
                egress = 0.0
                if total_demand > 0:
                    pair = cands.pairs[(model.name, opt.pool)]
                    egress = sum(gb * usd for gb, usd in pair.egress_usd_per_gb) / total_demand
                if lat:
                    m.terms["latency"].append((lat, y))
                if egress:
                    m.terms["egress"].append((egress, y))
            s.Add(s.Sum([*ys, u]) == rate, f"demand[{model.name},{i}]")
        for pool in pools:
            if routed_to[pool]:
                thr = cands.pairs[(model.name, pool)].throughput
                s.Add(s.Sum(routed_to[pool]) <= thr * m.x[(model.name, pool)], f"serve[{model.name},{pool}]")
        if spec.min_replicas:
            s.Add(self.total_replicas(model.name) >= spec.min_replicas, f"minReplicas[{model.name}]")
        if spec.max_replicas is not None and pools:
            s.Add(self.total_replicas(model.name) <= spec.max_replicas, f"maxReplicas[{model.name}]")

    def _batch(self, model: Model, pools: list[str], factor: float) -> None:
        fleet, cands, s, m = self.fleet, self.cands, self.m.solver, self.m
        obj = fleet.settings.objective
        wanted = model.spec.replicas or 0
        k = s.NumVar(0, wanted, f"k[{model.name}]") if self.relax else s.IntVar(0, wanted, f"k[{model.name}]")
        m.k[model.name] = k
        m.terms["unmet"].append((obj.unmet_usd_per_replica * factor, k))
        s.Add(s.Sum([m.x[(model.name, p)] for p in pools] + [k]) == wanted, f"replicas[{model.name}]")
        for p in pools:
            pair = cands.pairs[(model.name, p)]
            per_replica = sum(gb * usd for gb, usd in pair.egress_usd_per_gb) / wanted if wanted else 0.0
            if per_replica:
                m.terms["egress"].append((per_replica, m.x[(model.name, p)]))
        if model.spec.gang_effective and pools:
            # all or nothing, on one pool: a gang's replicas start together (4 of 6 workers of a
            # training job were placed, their GPUs held for a job that cannot run)
            gs = []
            for p in pools:
                g = self.new_bool(f"gang[{model.name},{p}]")
                gs.append(g)
                s.Add(m.x[(model.name, p)] == wanted * g)
            s.Add(s.Sum(gs) <= 1, f"gang[{model.name}]")
