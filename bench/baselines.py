"""Baselines for the benchmark, each priced by ``placer.cost.price`` (the one cost function).

(a) ``cheapest_pool``: per model, largest first, each of its demand locations on the one eligible
    pool within its SLO, with room for all of that demand, where it costs least (SkyPilot's
    optimizer picks one region per task; a location no pool can take whole goes unserved);
(b) ``most_allocated``: Kubernetes-style, one replica at a time onto the feasible pool that
    is most allocated (the MostAllocated score), adding a node when none has room;
(c) ``lp_bound``: the LP relaxation of the full model (no cuts), solved to optimality by
    column generation: a lower bound, not a plan;
(d) ``full_mip``: placer's plain MipBuilder model on HiGHS through OR-Tools' MathOpt (the model of
    ``placer.optimizer.solve``) under the same time limit.

(a) and (b) keep to the hard constraints and the required policies of the generated fleets
in the simple way their namesakes would: eligible pairs only (fit, allowPools, denyPools),
capacity, headroom as reduced capacity, no spot pools for models under a spot cap, and a
spread over failure domains for models a spread policy selects. What they miss shows up in
``price(...).violations``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from placer.fleet import Fleet, model_matches, pool_matches
from placer.optimizer.arrays import FleetArrays, FloatArray, build_arrays
from placer.placement import Placement, Route
from placer.policy import Rules

if TYPE_CHECKING:
    from placer.optimizer.lp import LpResult, PairTables
    from placer.optimizer.matrix import MatrixModel


@dataclass
class Plan:
    placement: Placement | None
    seconds: float
    bound: float = -math.inf
    status: str = "FEASIBLE"


class _State:
    """Capacity bookkeeping shared by the greedy baselines."""

    def __init__(self, fleet: Fleet, a: FleetArrays) -> None:
        self.fleet = fleet
        self.a = a
        self.used = np.zeros(len(a.pools))
        self.nodes = a.pool_min_nodes.astype(float).copy()
        usable = np.ones(len(a.pools))
        for policy in fleet.policies:
            if policy.required and policy.rule.name == "headroom" and policy.rule.headroom:
                f = policy.rule.headroom.fraction
                for i, p in enumerate(a.pools):
                    if pool_matches(policy.spec.pools, p):
                        usable[i] = min(usable[i], 1.0 - f)
        self.usable = usable
        self.x = np.zeros(a.n_pairs, dtype=np.int64)
        self.routes: list[Route] = []
        self.spot_capped = np.zeros(len(a.models), dtype=bool)
        self.spread = np.zeros(len(a.models), dtype=np.int64)
        for policy in fleet.policies:
            if not policy.required:
                continue
            if policy.rule.name == "maxSpotFraction":
                for mi, m in enumerate(a.models):
                    if model_matches(policy.spec.models, m):
                        self.spot_capped[mi] = True
            if policy.rule.name == "spread" and policy.rule.spread:
                for mi, m in enumerate(a.models):
                    if model_matches(policy.spec.models, m):
                        self.spread[mi] = max(self.spread[mi], policy.rule.spread.min_failure_domains)

    def room(self, p: int, c: int, k: int = 1, grow: bool = True) -> bool:
        return bool(self.rooms(np.array([p]), np.array([c]), np.array([k]), grow)[0])

    def rooms(self, p: np.ndarray, c: np.ndarray, k: np.ndarray, grow: bool = True) -> np.ndarray:
        """Whether k more replicas of c GPUs fit pool p (vectorized)."""
        a = self.a
        need = self.used[p] + k * c
        nodes = np.where(a.pool_elastic[p] & grow, a.pool_max_nodes[p], self.nodes[p])
        return need <= np.floor(nodes * a.pool_per_node[p] * self.usable[p] + 1e-9)

    def add(self, j: int, k: int) -> None:
        a = self.a
        p = int(a.pair_pool[j])
        self.x[j] += k
        self.used[p] += k * a.pair_c[j]
        if a.pool_elastic[p]:
            need = math.ceil(self.used[p] / (a.pool_per_node[p] * self.usable[p]) - 1e-9)
            self.nodes[p] = max(self.nodes[p], min(a.pool_max_nodes[p], need))

    def placement(self) -> Placement:
        a = self.a
        replicas = {(a.models[a.pair_model[j]].name, a.pools[a.pair_pool[j]].name): int(self.x[j])
                    for j in np.flatnonzero(self.x > 0).tolist()}
        nodes = {p.name: int(self.nodes[i]) if p.elastic else p.min_nodes for i, p in enumerate(a.pools)}
        return Placement(replicas=replicas, nodes=nodes, routes=tuple(self.routes), retired=frozenset(a.retired))


def _pairs_ok(st: _State, mi: int) -> np.ndarray:
    a = st.a
    js = np.arange(a.pair_ptr[mi], a.pair_ptr[mi + 1])
    if st.spot_capped[mi]:
        js = js[~a.pool_spot[a.pair_pool[js]]]
    return js


def _order(a: FleetArrays) -> list[int]:
    size = np.zeros(len(a.models))
    for mi, m in enumerate(a.models):
        lo, hi = int(a.pair_ptr[mi]), int(a.pair_ptr[mi + 1])
        if hi > lo:
            thr = float(a.pair_thr[lo:hi].max()) or 1.0
            c = float(a.pair_c[lo:hi].min())
            size[mi] = (m.total_demand / thr if m.inference else float(m.spec.replicas or 0)) * c
    return [int(i) for i in np.argsort(-size, kind="stable")]


def _route_cost(fleet: Fleet, a: FleetArrays) -> np.ndarray:
    obj = fleet.settings.objective
    total = np.array([m.total_demand for m in a.models])
    rm = a.dem_model[a.route_dem]
    with np.errstate(divide="ignore", invalid="ignore"):
        eg = np.where(total[rm] > 0, a.pair_egress[a.route_pair] / total[rm], 0.0)
    return obj.latency_usd_per_ms_per1k_rate * a.route_latency / 1000.0 + eg


def cheapest_pool(fleet: Fleet, rules: Rules, arrays: FleetArrays | None = None) -> Plan:
    """(a) Per model, largest first, each demand location gets the cheapest eligible pool within
    its SLO that has room for all of that demand (SkyPilot's per-task cheapest region)."""
    started = time.monotonic()
    a = arrays or build_arrays(fleet, rules)
    st = _State(fleet, a)
    rcost = _route_cost(fleet, a)
    per_replica = a.pool_price[a.pair_pool] * a.pair_c
    allowed = np.zeros(a.n_pairs, dtype=bool)
    for mi in _order(a):
        m = a.models[mi]
        js = _pairs_ok(st, mi)
        if not len(js):
            continue
        allowed[js] = True
        if not m.inference:
            k = int(m.spec.replicas or 0)
            for j in js[np.argsort(per_replica[js], kind="stable")].tolist():
                if k <= a.pair_max[j] and st.room(int(a.pair_pool[j]), int(a.pair_c[j]), k):
                    st.add(j, k)
                    break
            continue
        demand_on: dict[int, float] = {}
        for d in np.flatnonzero(a.dem_model == mi).tolist():
            r0, r1 = int(a.route_ptr[d]), int(a.route_ptr[d + 1])
            rs = np.arange(r0, r1)
            rs = rs[allowed[a.route_pair[rs]]]
            if not len(rs):
                continue
            rate = float(a.dem_rate[d])
            jj = a.route_pair[rs]
            have = np.array([demand_on.get(int(j), 0.0) for j in jj])
            thr = a.pair_thr[jj]
            k = np.ceil((have + rate) / thr - 1e-9) - np.ceil(have / thr - 1e-9)
            ok = (st.x[jj] + k <= a.pair_max[jj]) & st.rooms(a.pair_pool[jj], a.pair_c[jj], k)
            if not ok.any():
                continue
            cost = np.where(ok, k * per_replica[jj] + rcost[rs] * rate, np.inf)
            best = int(np.argmin(cost))
            best_j = int(jj[best])
            demand_on[best_j] = float(have[best]) + rate
            if k[best]:
                st.add(best_j, int(k[best]))
        placed = int(st.x[js].sum())
        floor = int(m.spec.min_replicas or 0)
        need_domains = int(st.spread[mi]) if st.spread[mi] and max(placed, floor) >= st.spread[mi] else 0
        domains = {int(a.pool_domain[a.pair_pool[j]]) for j in js[st.x[js] > 0].tolist()}
        for j in js[np.argsort(per_replica[js], kind="stable")].tolist():
            if placed >= floor and len(domains) >= need_domains:
                break
            d = int(a.pool_domain[a.pair_pool[j]])
            if len(domains) < need_domains and d in domains and placed >= floor:
                continue
            if st.x[j] < a.pair_max[j] and st.room(int(a.pair_pool[j]), int(a.pair_c[j])):
                st.add(j, 1)
                placed += 1
                domains.add(d)
        allowed[js] = False
    return Plan(_fix_routes(fleet, a, st), time.monotonic() - started)


def _fix_routes(fleet: Fleet, a: FleetArrays, st: _State) -> Placement:
    """Route each model's demand over the replicas it got at least cost (an LP per plan: the
    baselines decide replicas; routing them well is not what they are measured on)."""
    try:
        return _route_lp(fleet, a, st)
    except RuntimeError:  # the LP failed: cheapest-first routing
        return _route_greedy(fleet, a, st)


def _route_lp(fleet: Fleet, a: FleetArrays, st: _State) -> Placement:
    import scipy.sparse as sp

    from placer.optimizer.highs import solve_arrays

    rcost = _route_cost(fleet, a)
    open_pairs = st.x > 0
    rs = np.flatnonzero(open_pairs[a.route_pair])
    n_dem = len(a.dem_model)
    obj = fleet.settings.objective
    factor = np.array([m.priority_factor for m in a.models])[a.dem_model]
    # columns: y (open routes), u (unmet per entry); rows: demand (= rate), serve per open pair (<= thr x)
    pairs = np.flatnonzero(open_pairs)
    prow = np.full(a.n_pairs, -1, dtype=np.int64)
    prow[pairs] = n_dem + np.arange(len(pairs))
    ny = len(rs)
    rows = np.concatenate([a.route_dem[rs], prow[a.route_pair[rs]], np.arange(n_dem)])
    cols = np.concatenate([np.arange(ny), np.arange(ny), ny + np.arange(n_dem)])
    A = sp.csc_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_dem + len(pairs), ny + n_dem))
    cap = np.array([st.x[j] * a.pair_thr[j] for j in pairs.tolist()])
    lo = np.concatenate([a.dem_rate, np.full(len(pairs), -np.inf)])
    hi = np.concatenate([a.dem_rate, cap])
    cost = np.concatenate([rcost[rs], obj.unmet_usd_per_rate * factor])
    ub = np.concatenate([a.dem_rate[a.route_dem[rs]], a.dem_rate])
    sol = solve_arrays(A, cost, np.zeros(ny + n_dem), ub, lo, hi, None, time_limit=60.0)
    if sol.values is None:
        raise RuntimeError("routing LP failed")
    y = sol.values[:ny]
    routes = [Route(a.models[a.dem_model[a.route_dem[r]]].name, a.location_names[a.dem_location[a.route_dem[r]]],
                    a.pools[a.pair_pool[a.route_pair[r]]].name, float(v), float(a.route_latency[r]))
              for r, v in zip(rs.tolist(), y.tolist(), strict=True) if v > 1e-7]
    st.routes = routes
    return st.placement()


def _route_greedy(fleet: Fleet, a: FleetArrays, st: _State) -> Placement:
    """Route each model's demand over the replicas it got (cheapest route first, up to capacity)."""
    rcost = _route_cost(fleet, a)
    cap = {int(j): float(st.x[j] * a.pair_thr[j]) for j in np.flatnonzero(st.x > 0).tolist()}
    routes: list[Route] = []
    for d in range(len(a.dem_model)):
        need = float(a.dem_rate[d])
        r0, r1 = int(a.route_ptr[d]), int(a.route_ptr[d + 1])
        order = r0 + np.argsort(rcost[r0:r1], kind="stable")
        for r in order.tolist():
            if need <= 1e-9:
                break
            j = int(a.route_pair[r])
            have = cap.get(j, 0.0)
            if have <= 1e-9:
                continue
            take = min(need, have)
            cap[j] = have - take
            need -= take
            routes.append(Route(a.models[a.dem_model[d]].name, a.location_names[a.dem_location[d]],
                                a.pools[a.pair_pool[j]].name, take, float(a.route_latency[r])))
    st.routes = routes
    return st.placement()


def most_allocated(fleet: Fleet, rules: Rules, arrays: FleetArrays | None = None) -> Plan:
    """(b) One replica at a time onto the most-allocated pool that can take it (MostAllocated)."""
    started = time.monotonic()
    a = arrays or build_arrays(fleet, rules)
    st = _State(fleet, a)
    for mi in _order(a):
        js = _pairs_ok(st, mi)
        if len(js):
            _most_allocated_model(st, mi, js)
    return Plan(_fix_routes(fleet, a, st), time.monotonic() - started)


def _most_allocated_model(st: _State, mi: int, js: np.ndarray) -> None:
    a = st.a
    m = a.models[mi]
    domains: set[int] = set()
    placed = 0

    def score(j: int) -> float:
        p = int(a.pair_pool[j])
        cap = st.nodes[p] * a.pool_per_node[p] * st.usable[p]
        return float((st.used[p] + a.pair_c[j]) / cap) if cap > 0 else -1.0

    def feasible(cands: np.ndarray) -> np.ndarray:
        if (m.spec.max_replicas is not None and placed >= m.spec.max_replicas) or not len(cands):
            return np.zeros(0, dtype=np.int64)
        below = st.x[cands] < a.pair_max[cands]
        one_more = np.ones(len(cands), dtype=np.int64)
        ok = cands[below & st.rooms(a.pair_pool[cands], a.pair_c[cands], one_more, grow=False)]
        if not len(ok):  # cluster autoscaler: a node more where one fits
            ok = cands[below & st.rooms(a.pair_pool[cands], a.pair_c[cands], one_more, grow=True)]
        return ok

    def fresh(cands: np.ndarray) -> np.ndarray:
        return cands[[int(a.pool_domain[a.pair_pool[j]]) not in domains for j in cands.tolist()]]

    def one(cands: np.ndarray, fresh_only: bool = False) -> int | None:
        nonlocal placed
        # a spread short of its domains filters first (a topology spread constraint), then a node
        # more where one fits: a pool in a new domain that must grow beats one in a domain held
        ok = feasible(fresh(cands)) if st.spread[mi] and len(domains) < st.spread[mi] else np.zeros(0, dtype=np.int64)
        if not len(ok) and not fresh_only:
            ok = feasible(cands)
        if not len(ok):
            return None
        p = a.pair_pool[ok]
        cap = st.nodes[p] * a.pool_per_node[p] * st.usable[p]
        scores = np.where(cap > 0, (st.used[p] + a.pair_c[ok]) / np.maximum(cap, 1e-9), -1.0)
        j = int(ok[int(np.argmax(scores))])
        st.add(j, 1)
        domains.add(int(a.pool_domain[a.pair_pool[j]]))
        placed += 1
        return j

    if m.inference:
        for d in np.flatnonzero(a.dem_model == mi).tolist():
            r0, r1 = int(a.route_ptr[d]), int(a.route_ptr[d + 1])
            cands = np.intersect1d(a.route_pair[r0:r1], js)
            left = float(a.dem_rate[d])
            while left > 1e-9:
                j = one(cands)
                if j is None:
                    break
                left -= float(a.pair_thr[j])
    target = int(m.spec.min_replicas or 0) if m.inference else int(m.spec.replicas or 0)
    if m.inference and st.spread[mi] and placed >= st.spread[mi]:
        target = max(target, int(st.spread[mi]))
    if not m.inference and m.spec.gang_effective:
        # gang: all replicas in the most allocated pool that can take them all
        fit = [j for j in js.tolist() if a.pair_max[j] >= target and st.room(int(a.pair_pool[j]), int(a.pair_c[j]), target)]
        if fit:
            st.add(int(max(fit, key=score)), target)
        return
    while placed < target:
        if one(js) is None:
            break
    # the demand's pools held too few domains: a replica more in a new one, as (a) adds (the rule
    # holds from as many replicas as domains)
    while st.spread[mi] and placed >= st.spread[mi] and len(domains) < st.spread[mi]:
        if one(js, fresh_only=True) is None:
            break


def _full_lp(model: MatrixModel, deadline: float, tables: PairTables | None = None) -> LpResult:
    """The LP over every pair by column generation, from the greedy plan and the cheapest pairs."""
    from placer.optimizer.greedy import greedy
    from placer.optimizer.lp import Master, PairTables, column_generation, initial_pairs

    gx, _ = greedy(model)
    seed = initial_pairs(model, np.zeros(0, dtype=np.int64)) | (gx > 0)
    return column_generation(model, tables if tables is not None else PairTables.build(model), seed,
                             deadline=deadline, view=Master(model), max_rounds=200)


def lp_bound(fleet: Fleet, rules: Rules, time_limit: float = 600.0) -> Plan:
    """(c) The LP relaxation of the full model (without cuts): its optimum is a lower bound."""
    from placer.optimizer.matrix import build_matrix

    started = time.monotonic()
    a = build_arrays(fleet, rules)
    model = build_matrix(a, rules, {}, cuts=False)
    lp = _full_lp(model, deadline=time.monotonic() + time_limit)
    # every bound here is the model's, which leaves out the demand no plan serves (``unserved_usd``)
    bound = lp.duals.lp_bound + model.unserved_usd if lp.duals is not None else -math.inf
    return Plan(None, time.monotonic() - started, bound=bound, status=lp.status)


# the Lagrangian dual by column generation (``lagrangian_dual``): each round's multipliers this
# share of the way from the master LP's duals to the best multipliers so far (Wentges' smoothing:
# the master's duals swing; even halfway, M's rounds 2 and 3 gave L(pi) 2,773 and 6,908 after 8,901)
DUAL_SMOOTHING = 0.5
DUAL_STOP = 1e-4  # rounds stop once the best bound is this close to the master's LP, which no such bound passes
SEED_PLAN_SHARE = 0.01  # of model_bound's time: a plan of the route, the master's first feasible columns


@dataclass
class LagrangianDual:
    bound: float  # the best L(pi) of every round: a valid bound
    first: float  # L at the LP's duals (the first round)
    status: str  # the best round's: OPTIMAL (every sub-MIP solved), BOUNDED, UNBOUNDED, INFEASIBLE
    rounds: int
    master: float  # the last master LP: the Lagrangian dual is at most this (inf: no master LP)
    models: int  # the best round's sub-MIPs solved, and models counted at their fallback bound
    fallback: int


def lagrangian_dual(model: MatrixModel, pi: FloatArray, deadline: float, *, workers: int = 1,
                    tables: PairTables | None = None,
                    plan: Callable[[], FloatArray | None] | None = None) -> LagrangianDual:
    """The Lagrangian bound by model (``bound.model_bound``) at ``pi`` (the LP's duals), then at
    multipliers set by column generation on ``recombine``'s master as an LP (Dantzig-Wolfe): each
    round's sub-MIP answers become the master's columns, and its duals, smoothed towards the best
    multipliers so far (DUAL_SMOOTHING), the next round's. Any multipliers give a valid bound;
    the best is kept. ``plan()``: a plan's values on ``model``, whose configurations make the
    master feasible (asked for once, when a second round has the time). A round starts when the
    time the last one took is left before ``deadline``; rounds stop when the master has no LP, or
    the best bound is within DUAL_STOP of the master's LP (the Lagrangian dual lies between)."""
    from placer.optimizer.bound import model_blocks
    from placer.optimizer.bound import model_bound as lagrangian_by_model
    from placer.optimizer.recombine import Configurations, master_duals

    csr = model.A.tocsr()
    blocks = model_blocks(model, csr)
    configs = Configurations(model, blocks, csr)
    best = last = lagrangian_by_model(model, pi, deadline, workers=workers, tables=tables, blocks=blocks,
                                      record=configs.add)
    first, center, rounds, master = best.bound, pi, 1, math.inf
    if plan is not None and best.status in ("OPTIMAL", "BOUNDED") and time.monotonic() + last.seconds < deadline:
        values = plan()
        if values is not None:
            configs.add_plan(values)
    while best.status in ("OPTIMAL", "BOUNDED") and time.monotonic() + last.seconds < deadline:
        got = master_duals(model, configs, deadline - time.monotonic(), csr)
        if got is None:
            break
        master = got[0]
        if master - best.bound <= DUAL_STOP * abs(master):
            break
        pi = np.where(blocks.local, 0.0, DUAL_SMOOTHING * center + (1 - DUAL_SMOOTHING) * got[1])
        last = lagrangian_by_model(model, pi, deadline, workers=workers, tables=tables, blocks=blocks,
                                   record=configs.add)
        rounds += 1
        if last.bound > best.bound:
            best, center = last, pi
    return LagrangianDual(best.bound, first, best.status, rounds, master, best.models, best.fallback)


def model_bound(fleet: Fleet, rules: Rules, time_limit: float = 900.0, workers: int | None = None) -> Plan:
    """(c') The Lagrangian bound by model (``placer.optimizer.bound``) with placer's cover cuts:
    every model's replicas whole, the rows between models priced; at the duals of the LP, then
    at better multipliers as the time allows (``lagrangian_dual``). The models whose MIPs the
    time left does not reach count at a bound that needs no solve (``bound.fallback_bounds``),
    so the bound is valid whenever the LP finished a round; when it is below the LP's own (few
    models reached), the LP with cover cuts is the bound."""
    from placer.optimizer.large import cut_levels, optimize_large
    from placer.optimizer.lp import PairTables
    from placer.optimizer.matrix import build_matrix
    from placer.optimizer.solve import available_cores

    started = time.monotonic()
    deadline = started + time_limit
    a = build_arrays(fleet, rules)
    model = build_matrix(a, rules, {}, cuts=True, cut_levels=cut_levels(a.n_pairs))
    tables = PairTables.build(model)
    lp = _full_lp(model, deadline, tables)
    if lp.duals is None:
        return Plan(None, time.monotonic() - started, status=lp.status)
    lp_note = "" if lp.status == "OPTIMAL" else f" (LP {lp.status}: stopped before it converged)"

    def plan() -> FloatArray | None:
        got = optimize_large(fleet, rules, time_limit=max(5.0, SEED_PLAN_SHARE * time_limit))
        return got.values if got.values is not None and len(got.values) == model.n_cols else None

    result = lagrangian_dual(model, lp.duals.pi, deadline, workers=workers or available_cores(), tables=tables,
                             plan=plan)
    if result.bound < lp.duals.lp_bound:
        return Plan(None, time.monotonic() - started, bound=lp.duals.lp_bound + model.unserved_usd,
                    status=f"{result.status}: LP with cover cuts only{lp_note}")
    status = result.status
    if result.fallback:
        status += f" ({result.models:,} models by MIP, {result.fallback:,} at their fallback bound)"
    if result.rounds > 1:
        status += (f"; {result.rounds} rounds, {result.first:,.2f} at the LP's duals, "
                   f"the master's LP {result.master:,.2f}")
    return Plan(None, time.monotonic() - started, bound=result.bound + model.unserved_usd, status=status + lp_note)


MIP_BOUND_COLS = 100_000  # beyond this many columns HiGHS' whole-model bound stays below (c')'s in its time


def mip_bound(fleet: Fleet, rules: Rules, time_limit: float = 300.0) -> Plan:
    """(c'') HiGHS' bound on the whole model with placer's cover cuts, given minutes: what its
    branch and bound proves, whole nodes included, which no bound by model sees. Its plan is not
    reported (this is a bound, not a method under the time limit). The tie-breaks (1e-6 a replica
    and a node) are taken off, as (d) does."""
    from placer.optimizer.highs import solve
    from placer.optimizer.large import cut_levels
    from placer.optimizer.matrix import TIE_BREAK, build_matrix

    started = time.monotonic()
    a = build_arrays(fleet, rules)
    model = build_matrix(a, rules, {}, cuts=True, cut_levels=cut_levels(a.n_pairs))
    if model.n_cols > MIP_BOUND_COLS:
        return Plan(None, time.monotonic() - started,
                    status=f"not run ({model.n_cols:,} columns: HiGHS' bound would stay below (c')'s)")
    sol = solve(model, np.arange(model.n_cols), integer=True, time_limit=time_limit, gap=1e-6)
    x0, x1 = model.blocks["x"]
    nodes = model.elastic_col[model.elastic_col >= 0]
    slack = TIE_BREAK * float(model.ub[x0:x1].sum() + model.ub[nodes].sum())
    bound = sol.bound - slack + model.unserved_usd if math.isfinite(sol.bound) else -math.inf
    return Plan(None, time.monotonic() - started, bound=bound, status=sol.status)


def full_mip(fleet: Fleet, rules: Rules, time_limit: float) -> Plan:
    """(d) placer's plain full MIP (``MipBuilder``, the exact route's model) on HiGHS through OR-Tools'
    MathOpt, which hands back HiGHS' incumbent and bound when the time limit stops it (pywraplp
    drops both). The model goes to MathOpt as MPS text; values come back by variable name."""
    import datetime as dt

    from ortools.math_opt.io.python import mps_converter
    from ortools.math_opt.python import mathopt

    from placer.candidates import find_candidates
    from placer.optimizer.model import TIE_BREAK, MipBuilder
    from placer.optimizer.quiet import quiet_stdout
    from placer.optimizer.solve import read_placement

    started = time.monotonic()
    cands = find_candidates(fleet, rules)
    mip = MipBuilder(fleet, cands, {}).build(rules)
    model = mathopt.Model.from_model_proto(
        mps_converter.mps_to_model_proto(mip.solver.ExportModelAsMpsFormat(False, False)))
    variables = list(model.variables())
    params = mathopt.SolveParameters(time_limit=dt.timedelta(seconds=time_limit),
                                     relative_gap_tolerance=fleet.settings.solver.relative_gap)
    with quiet_stdout():
        result = mathopt.solve(model, mathopt.SolverType.HIGHS, params=params)
    seconds = time.monotonic() - started
    # the bound less the most the tie-breaks (1e-6 a replica and a node) can add
    slack = TIE_BREAK * (sum(p.max_replicas for p in cands.pairs.values()) +
                         sum(p.max_nodes for p in fleet.pools.values() if p.elastic))
    bound = result.termination.objective_bounds.dual_bound - slack + mip.unserved_usd
    if not result.has_primal_feasible_solution():
        return Plan(None, seconds, bound=bound if math.isfinite(bound) else -math.inf,
                    status=result.termination.reason.name)
    by_name = dict(zip((v.name for v in variables), result.variable_values(variables), strict=True))
    placement = read_placement(fleet, cands, mip, value=lambda var: float(by_name[var.name()]))
    status = "OPTIMAL" if result.termination.reason == mathopt.TerminationReason.OPTIMAL else "FEASIBLE"
    return Plan(placement, seconds, bound=bound, status=status)
