"""The LP relaxation by column generation over pairs, and a valid lower bound from any duals.

Column generation: a restricted master LP holds a few pairs per model (each pair with its
x, its routes y, and its gang / churn columns) and every other column (nodes, unmet,
policy variables). After each solve, every pair of the full model is priced with the
master's duals, and the pairs that would lower the objective join the master.

The bound (Lagrangian, valid for the MIP). Dualize every row except the pairs' serve rows
with multipliers pi (signs as HiGHS reports them: >= 0 on a row at its lower bound, <= 0
at its upper bound). With reduced costs rc = cost - A^T pi,

    z*  >=  sum_rows contribution(pi)  +  sum_{columns outside pairs} min(rc·lb, rc·ub)
            +  sum_pairs G_j,
    G_j  =  min { rc_x·x + sum_r rc_r·y_r :  x integer in [0, ub_j], 0 <= y_r <= rate_r,
                                             sum_r y_r <= thr_j·x },

since the pairs' serve rows are kept in their own small problems. G_j is computed in
closed form (fill the cheapest routes first; F is convex in x, so the best integer x is
next to a breakpoint). Any pi gives a valid bound; the master's duals give the LP bound
at convergence, and more through the integrality of x inside G.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from placer.optimizer.arrays import BoolArray, FloatArray, IntArray
from placer.optimizer.greedy import per_rate_cost, per_replica_cost
from placer.optimizer.highs import BASIC, LOWER, IdleCores, new_highs, solve_arrays, solve_within
from placer.optimizer.matrix import MatrixModel
from placer.optimizer.quiet import DEBUG, debug

RC_TOL = 1e-7
INF = float("inf")
CHUNK = 400_000
# the next round of column generation is expected to take this many times the last: the second
# twice the first (the master grows most after the first pricing: XL 8.3 -> 19.5 s), later ones
# about as long (XL 19.5 -> 20.8 -> 7.3 s, warm from the last basis)
NEXT_ROUND = 2.0
LATER_ROUND = 1.25


@dataclass
class PairTables:
    """Routes of every pair, padded to the largest number of routes of one pair."""

    routes: IntArray  # [n_pairs, R] route index, -1 where none
    rate: FloatArray  # [n_pairs, R]

    @staticmethod
    def build(model: MatrixModel) -> PairTables:
        a = model.arrays
        order = np.argsort(a.route_pair, kind="stable")
        counts = np.bincount(a.route_pair, minlength=a.n_pairs)
        width = int(counts.max()) if len(counts) and counts.max() > 0 else 1
        start = np.cumsum(counts) - counts
        pos = np.arange(len(order)) - np.repeat(start, counts)
        routes = np.full((a.n_pairs, width), -1, dtype=np.int64)
        routes[a.route_pair[order], pos] = order
        if not len(a.route_dem):  # no routes at all (training and batch alone): nothing to index
            return PairTables(routes, np.zeros(routes.shape))
        rate = np.where(routes >= 0, a.dem_rate[a.route_dem[np.maximum(routes, 0)]], 0.0)
        return PairTables(routes, rate)


def pair_values(model: MatrixModel, tables: PairTables, rc: FloatArray, integer: bool,
                pairs: IntArray | None = None, at_least_one: bool = False) -> tuple[FloatArray, FloatArray]:
    """(G_j, the x that reaches it) for the given pairs (default: all), from reduced costs ``rc``;
    ``at_least_one``: the same with x >= 1 (what opening the pair costs at the least)."""
    g_lp, x_lp, g_int, x_int = pair_values_both(model, tables, rc, pairs, at_least_one)
    return (g_int, x_int) if integer else (g_lp, x_lp)


def pair_values_both(model: MatrixModel, tables: PairTables, rc: FloatArray, pairs: IntArray | None = None,
                     at_least_one: bool = False) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """G_j and its x with x continuous, then with x integer, in one pass.

    For a pair whose routes pay, F(x) = rc_x·x + sum_k ry_k·clip(thr·x - prev_k, 0, rate_k) with
    the routes sorted by ry ascending is convex and piecewise linear, with slope rc_x + thr·ry_k
    on the k-th piece: its least over [lo, ub] is at the end of the last piece of negative slope
    (clipped), and the integer least at the floor or the ceiling of that point."""
    a = model.arrays
    x0 = model.blocks["x"][0]
    y0 = model.blocks["y"][0]
    idx = np.arange(a.n_pairs) if pairs is None else pairs
    # a pair whose F is linear (no route pays) or starts rising (its first piece, the most paying
    # route, does not pay for the replica; often most pairs): x at its least or at ub, whichever
    # costs less. Found route by route, without the pairs' route tables.
    rc_y = rc[y0:y0 + a.n_routes]
    flag = (rc_y < 0) & (a.dem_rate[a.route_dem] > 0)
    if not at_least_one:
        flag &= rc[x0 + a.route_pair] + a.pair_thr[a.route_pair] * rc_y < 0
    fills = (np.bincount(a.route_pair[flag], minlength=a.n_pairs) > 0)[idx]
    ub = model.ub[x0 + idx]
    least = np.minimum(1.0, ub) if at_least_one else np.zeros_like(ub)
    rcx = rc[x0 + idx]
    at_least, at_ub = rcx * least, rcx * ub
    take_ub = at_ub < at_least
    g_lp = np.where(take_ub, at_ub, at_least)
    x_lp = np.where(take_ub, ub, least)
    g_int, x_int = g_lp.copy(), x_lp.copy()
    filled = np.flatnonzero(fills)
    for s in range(0, len(filled), CHUNK):
        rows = filled[s:s + CHUNK]
        js = idx[rows]
        r = tables.routes[js]
        ry = np.where(r >= 0, rc[y0 + np.maximum(r, 0)], 0.0)
        rcx = rc[x0 + js]
        thr = a.pair_thr[js]
        ub = model.ub[x0 + js]
        lo = np.minimum(1.0, ub) if at_least_one else np.zeros_like(ub)
        rate = np.where((r >= 0) & (ry < 0), tables.rate[js], 0.0)
        ry = np.where(rate > 0, ry, 0.0)
        order = np.argsort(ry, axis=1)
        ry = np.take_along_axis(ry, order, axis=1)
        rate = np.take_along_axis(rate, order, axis=1)
        cum = np.cumsum(rate, axis=1)
        prev = cum - rate
        # pieces of negative slope come first; past the last route the slope is rc_x
        k = ((rcx[:, None] + thr[:, None] * ry) < 0).sum(axis=1)
        end = cum[np.arange(len(js)), np.maximum(k, 1) - 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(k > 0, end / thr, 0.0)
        x = np.where(rcx < 0, ub, np.where(thr > 0, x, 0.0))
        x = np.clip(x, lo, ub)
        g_lp[rows], x_lp[rows] = _filled(x, rcx, thr, ry, rate, prev), x
        down = np.clip(np.floor(x + 1e-9), lo, ub)
        up = np.clip(np.ceil(x - 1e-9), lo, ub)
        v_down, v_up = _filled(down, rcx, thr, ry, rate, prev), _filled(up, rcx, thr, ry, rate, prev)
        take_up = v_up < v_down
        g_int[rows] = np.where(take_up, v_up, v_down)
        x_int[rows] = np.where(take_up, up, down)
    return g_lp, x_lp, g_int, x_int


def _filled(x: FloatArray, rcx: FloatArray, thr: FloatArray, ry: FloatArray, rate: FloatArray,
            prev: FloatArray) -> FloatArray:
    """F(x) per pair: x replicas at rc_x, serving their routes the most paying first."""
    fill = np.clip((x * thr)[:, None] - prev, 0.0, rate)
    out: FloatArray = rcx * x + (fill * ry).sum(axis=1)
    return out


@dataclass
class Duals:
    pi: FloatArray  # row multipliers (0 on serve rows)
    rc: FloatArray  # cost - A^T pi
    bound: float  # Lagrangian bound with integer x in the pair problems
    lp_bound: float  # the same with continuous x (the LP's dual bound)
    g_lp: FloatArray  # G_j with continuous x, per pair


def signed(model: MatrixModel, pi: FloatArray) -> FloatArray:
    """``pi`` with the multipliers of the wrong sign for their row set to 0 (a row without a lower
    side cannot price positive, one without an upper side negative)."""
    lo, hi = model.row_lo, model.row_hi
    pi = np.where((pi > 0) & np.isinf(lo), 0.0, pi)
    out: FloatArray = np.where((pi < 0) & np.isinf(hi), 0.0, pi)
    return out


def rows_value(model: MatrixModel, pi: FloatArray) -> FloatArray:
    """Per row, what its multiplier (``pi`` signed) contributes to a Lagrangian bound."""
    lo, hi = model.row_lo, model.row_hi
    out: FloatArray = np.where(pi > 0, pi * np.where(np.isinf(lo), 0.0, lo), pi * np.where(np.isinf(hi), 0.0, hi))
    return out


def least_at_bounds(rc: FloatArray, lb: FloatArray, ub: FloatArray) -> FloatArray:
    """Per column, the least of rc * v over [lb, ub] (0 where rc is 0, whatever the bounds)."""
    with np.errstate(invalid="ignore"):
        out: FloatArray = np.where(rc > 0, rc * lb, np.where(rc < 0, rc * ub, 0.0))
    return out


def lagrangian(model: MatrixModel, tables: PairTables, row_duals: FloatArray, serve: BoolArray,
               integer: bool = True, with_lp: bool = True) -> Duals:
    pi = signed(model, np.where(serve, 0.0, row_duals))
    rows = rows_value(model, pi).sum()
    rc = model.cost - model.A.T @ pi
    # every column but x and y (nodes, unmet, gang, churn, policy variables) is priced alone
    alone = np.ones(model.n_cols, dtype=bool)
    alone[model.block("x")] = False
    alone[model.block("y")] = False
    r = rc[alone]
    r = np.where(np.abs(r) < RC_TOL, 0.0, r)
    cols = least_at_bounds(r, model.lb[alone], model.ub[alone])
    cols_sum = float(np.sum(cols))
    g_lp, _, g_int, _ = pair_values_both(model, tables, rc)
    if not integer:
        g_int = g_lp
    elif not with_lp:
        g_lp = g_int
    base = float(rows) + cols_sum
    bound = base + float(g_int.sum())
    lp_bound = base + float(g_lp.sum())
    if not math.isfinite(bound):
        bound = -math.inf
    if not math.isfinite(lp_bound):
        lp_bound = -math.inf
    return Duals(pi, rc, bound, lp_bound, g_lp)


LINE_STEPS = 10  # golden-section steps of ``bound_on_line``: the segment narrowed to 0.8% of its length


def bound_on_line(model: MatrixModel, tables: PairTables, start: FloatArray, end: FloatArray, serve: BoolArray,
                  deadline: float, steps: int = LINE_STEPS, end_bound: float | None = None) -> float:
    """The best Lagrangian bound (``lagrangian``, replicas whole) at multipliers on the segment from
    ``start`` to ``end``, by golden-section search: the bound is concave in the multipliers, so
    along a line it rises to one peak, then falls. Every point tried bounds; the best counts. For
    an LP stopped before it converged, between prices that need no LP (``simple_duals``) and the
    last master's duals, each of which bounds far less than points between (XL: 142,879 and
    -38,115 at the ends, 160,166 at 0.62 of the way). ``end_bound``: the bound at ``end``, when the
    caller has it (``Duals.bound`` of the LP whose duals ``end`` are)."""

    def at(t: float) -> float:
        return lagrangian(model, tables, start + t * (end - start), serve, integer=True, with_lp=False).bound

    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    lo, hi = 0.0, 1.0
    x1, x2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    f1, f2 = at(x1), at(x2)
    best = max(at(0.0), at(1.0) if end_bound is None else end_bound, f1, f2)
    for _ in range(steps):
        if time.monotonic() >= deadline:
            break
        if f1 < f2:  # the peak lies right of x1
            lo, x1, f1 = x1, x2, f2
            x2 = lo + ratio * (hi - lo)
            f2 = at(x2)
        else:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - ratio * (hi - lo)
            f1 = at(x1)
        best = max(best, f1, f2)
    return best


@dataclass
class Prices:
    """Multipliers without an LP, by what they price (``simple_prices``)."""

    pool: FloatArray  # per pool: an elastic pool's GPU price (0 on fixed pools, whose capacity counts free)
    demand: FloatArray  # per demand entry: the cheapest cost per unit of rate over its routes
    batch: FloatArray  # per active training / batch model (``model.batch_models``): its cheapest replica


def simple_prices(model: MatrixModel) -> Prices:
    """Prices that no pair can beat: a route never serves a unit of rate for less than its demand
    entry's price, nor a replica of a training / batch model cost less than its model's, so that
    every pair's own problem in the Lagrangian bound is worth exactly 0. Columns only: a model
    built with ``columns_only`` will do."""
    a = model.arrays
    replica = per_replica_cost(model)
    demand = np.zeros(len(a.dem_model))
    if a.n_routes:
        best = np.full(len(a.dem_model), np.inf)
        np.minimum.at(best, a.route_dem, per_rate_cost(model, replica))
        best = np.minimum(best, model.cost[model.block("u")])
        demand = np.where(np.isfinite(best), best, 0.0)
    batch = np.zeros(len(model.batch_models))
    k0 = model.blocks["k"][0]
    for row, mi in enumerate(model.batch_models.tolist()):
        lo, hi = int(a.pair_ptr[mi]), int(a.pair_ptr[mi + 1])
        cheapest = float(replica[lo:hi].min()) if hi > lo else np.inf
        batch[row] = min(cheapest, float(model.cost[k0 + row]))
    return Prices(np.where(a.pool_elastic, a.pool_price, 0.0), demand, batch)


def simple_duals(model: MatrixModel, prices: Prices | None = None) -> FloatArray:
    """Row multipliers without an LP, for a quick valid bound (``simple_prices``: elastic pools'
    capacity at their GPU price, demand entries and training / batch models at their cheapest).
    ``prices`` set on the full arrays bound a model restricted to some of their pairs: the pairs
    left out would each be worth 0 in the full model's bound."""
    a = model.arrays
    p = prices if prices is not None else simple_prices(model)
    pi = np.zeros(model.n_rows)
    cap = model.capacity_row
    assert cap is not None, "build_matrix sets the capacity rows"
    el = np.flatnonzero(a.pool_elastic & (cap >= 0))
    pi[cap[el]] = -p.pool[el]
    pi[model.demand_row0:model.demand_row0 + len(a.dem_model)] = p.demand
    if model.batch_row0 >= 0:
        pi[model.batch_row0:model.batch_row0 + len(model.batch_models)] = p.batch
    return pi


@dataclass
class LpResult:
    status: str
    value: float  # master LP objective
    values: FloatArray  # full-length primal vector (0 outside the master)
    duals: Duals | None
    master: BoolArray  # pairs in the master
    iterations: int
    seconds: float


def cheapest_in_groups(values: FloatArray, groups: IntArray, k: int) -> IntArray:
    """Indices of the ``k`` smallest ``values`` of each group (``groups`` sorted ascending), ties to
    the lower index: what ``rank < k`` after ``np.lexsort((values, groups))`` takes, in k linear
    passes instead of a sort (NaN counts as inf)."""
    n = len(values)
    if n == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], groups[1:] != groups[:-1]]))
    seg = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, n)))
    v = np.where(np.isnan(values), np.inf, values)
    alive = np.ones(n, dtype=bool)
    taken = []
    for _ in range(k):
        least = np.minimum.reduceat(v, starts)
        hit = np.flatnonzero(alive & (v == least[seg]))
        if not len(hit):
            break
        first = np.concatenate([[True], seg[hit][1:] != seg[hit][:-1]])
        pick = hit[first]
        taken.append(pick)
        alive[pick] = False
        v[pick] = np.inf
    return np.concatenate(taken) if taken else np.zeros(0, dtype=np.int64)


def domain_cover(model: MatrixModel, per_replica: FloatArray, domains: int, elastic_only: bool = False) -> IntArray:
    """The cheapest pair of each (model, failure domain), for the ``domains`` cheapest domains of each
    model (``elastic_only``: among elastic on-demand pools, whose capacity other models do not use up)."""
    a = model.arrays
    if not a.n_pairs:
        return np.zeros(0, dtype=np.int64)
    dom = a.pool_domain[a.pair_pool]
    if elastic_only:
        per_replica = np.where(a.pool_elastic[a.pair_pool] & ~a.pool_spot[a.pair_pool], per_replica, np.inf)
    # the first cheapest pair of each (model, domain), through a dense table instead of a sort
    n_dom = int(dom.max()) + 1
    cell = a.pair_model.astype(np.int64) * n_dom + dom
    v = np.where(np.isnan(per_replica), np.inf, per_replica)
    least = np.full(len(a.models) * n_dom, np.inf)
    np.minimum.at(least, cell, v)
    at = np.flatnonzero(np.isfinite(v) & (v == least[cell]))
    first = np.full(len(least), a.n_pairs, dtype=np.int64)
    np.minimum.at(first, cell[at], at)
    heads = first[first < a.n_pairs]  # in (model, domain) order
    return heads[cheapest_in_groups(per_replica[heads], a.pair_model[heads], domains)]


def initial_pairs(model: MatrixModel, current_pairs: IntArray, per_demand: int = 4, per_model: int = 3,
                  domains: int = 3) -> BoolArray:
    """A starting master: the cheapest routes of every demand entry by static cost, the cheapest
    pairs of every model (per replica), a cheap pair in a few failure domains, and what runs now."""
    a = model.arrays
    chosen = np.zeros(a.n_pairs, dtype=bool)
    chosen[current_pairs] = True
    per_replica = per_replica_cost(model)
    per_rate = per_rate_cost(model, per_replica)
    # routes come sorted by demand entry, pairs by model (build_arrays)
    if a.n_routes:
        chosen[a.route_pair[cheapest_in_groups(per_rate, a.route_dem, per_demand)]] = True
        # and the cheapest on-demand routes, as spot caps keep part of every model off spot
        sure = np.flatnonzero(~a.pool_spot[a.pair_pool[a.route_pair]])
        chosen[a.route_pair[sure[cheapest_in_groups(per_rate[sure], a.route_dem[sure], max(1, per_demand // 2))]]] = True
    if a.n_pairs:
        chosen[cheapest_in_groups(per_replica, a.pair_model, per_model)] = True
        # and the cheapest on-demand (not spot) pairs, for spot caps
        sure = np.flatnonzero(~a.pool_spot[a.pair_pool])
        chosen[sure[cheapest_in_groups(per_replica[sure], a.pair_model[sure], per_model)]] = True
        chosen[domain_cover(model, per_replica, domains)] = True
        chosen[domain_cover(model, per_replica, domains, elastic_only=True)] = True
    return chosen


def violated_rows(A: Any, cost: FloatArray, lb: FloatArray, ub: FloatArray, lo: FloatArray,
                  hi: FloatArray, integer: BoolArray | None = None, time_limit: float = 10.0) -> IntArray:
    """Positions of the rows an infeasible LP (or MIP, with ``integer``) cannot satisfy (HiGHS'
    feasibility relaxation: the least total violation of the rows)."""
    import highspy

    A = A.tocsc()
    h = new_highs()
    h.setOptionValue("time_limit", time_limit)
    inf = highspy.kHighsInf
    integrality = np.zeros(A.shape[1], dtype=np.int32) if integer is None else integer.astype(np.int32)
    h.passModel(A.shape[1], A.shape[0], A.nnz, 1, 1, 0.0, cost, lb, np.where(np.isinf(ub), inf, ub),
                np.where(np.isinf(lo), -inf, lo), np.where(np.isinf(hi), inf, hi), A.indptr.astype(np.int32),
                A.indices.astype(np.int32), A.data.astype(np.float64), integrality)
    h.feasibilityRelaxation(-1, -1, 1.0)
    act = np.array(h.getSolution().row_value)
    if len(act) != A.shape[0]:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero((act < lo - 1e-6) | (act > hi + 1e-6))


@dataclass
class MasterLp:
    A: Any
    cost: FloatArray
    lb: FloatArray
    ub: FloatArray
    rows: IntArray  # model rows kept as rows
    keys: IntArray  # model column of each master column
    P: IntArray
    R: IntArray
    single_rows: IntArray  # model rows turned into column bounds
    single_col: IntArray  # master column of each
    single_val: FloatArray
    single_low: FloatArray  # the bounds each implies
    single_high: FloatArray

    def single_duals(self, col_duals: FloatArray, values: FloatArray) -> FloatArray:
        """Duals of the rows turned into bounds: a column held at a bound that one of them set
        carries that row's dual in its reduced cost."""
        out = np.zeros(len(self.single_rows))
        rc = col_duals[self.single_col]
        v = values[self.single_col]
        tol = 1e-9
        at_low = (rc > tol) & (np.abs(v - self.single_low) <= 1e-7 * np.maximum(1.0, np.abs(v)))
        at_high = (rc < -tol) & (np.abs(v - self.single_high) <= 1e-7 * np.maximum(1.0, np.abs(v)))
        take = at_low | at_high
        # one row per column takes the dual
        first = np.zeros(len(take), dtype=bool)
        idx = np.flatnonzero(take)
        _, pos = np.unique(self.single_col[idx], return_index=True)
        first[idx[pos]] = True
        out[first] = rc[first] / self.single_val[first]
        return out


class Master:
    """The restricted master LP with x substituted out: x_j = e_j + sum_r y_r / thr_j.

    That removes every serve row (the LP's largest row block) while keeping the LP the same:
    route columns carry their pair's share of x's rows and cost, and e_j >= 0 are replicas
    beyond what the routes need (for minReplicas, spread, spot caps)."""

    @staticmethod
    def serve_rows(model: MatrixModel) -> BoolArray:
        serve = np.zeros(model.n_rows, dtype=bool)
        serve[model.serve_row[model.serve_row >= 0]] = True
        return serve

    def __init__(self, model: MatrixModel) -> None:
        self.model = model
        a = model.arrays
        self.x0, self.x1 = model.blocks["x"]
        self.y0, self.y1 = model.blocks["y"]
        self.Ax = model.A[:, self.x0:self.x1].tocsc()
        self.Ay = model.A[:, self.y0:self.y1].tocsc()
        lone = np.ones(model.n_cols, dtype=bool)
        lone[self.x0:self.x1] = False
        lone[self.y0:self.y1] = False
        self.lone = np.flatnonzero(lone)
        self.A_lone = model.A[:, self.lone].tocsc()
        self.serve = np.zeros(model.n_rows, dtype=bool)
        self.serve[model.serve_row[model.serve_row >= 0]] = True
        self.needed = ((model.row_lo > 1e-9) | (model.row_hi < -1e-9)) & ~self.serve
        with np.errstate(divide="ignore"):
            self.inv_thr = np.where(a.pair_thr > 0, 1.0 / np.maximum(a.pair_thr, 1e-300), 0.0)

    def build(self, master: BoolArray) -> MasterLp:
        m, a = self.model, self.model.arrays
        P = np.flatnonzero(master)
        R = np.flatnonzero(master[a.route_pair])
        rp = a.route_pair[R]
        scale = sp.diags(self.inv_thr[rp])
        A_y = self.Ay[:, R] + self.Ax[:, rp] @ scale
        A = sp.hstack([self.A_lone, self.Ax[:, P], A_y], format="csc")
        cost = np.concatenate([m.cost[self.lone], m.cost[self.x0 + P],
                               m.cost[self.y0 + R] + m.cost[self.x0 + rp] * self.inv_thr[rp]])
        lb = np.concatenate([m.lb[self.lone], np.zeros(len(P)), m.lb[self.y0 + R]])
        ub = np.concatenate([m.ub[self.lone], m.ub[self.x0 + P], m.ub[self.y0 + R]])
        A.eliminate_zeros()
        touched = np.zeros(m.n_rows, dtype=bool)
        touched[A.indices] = True
        rows = np.flatnonzero((touched & ~self.serve) | self.needed)
        A = A[rows, :].tocsr()
        # rows with one entry are bounds on that column (most are policy variables whose pairs are
        # not in the master yet, held at 0): move them into the bounds, recover their duals later
        counts = np.diff(A.indptr)
        single = np.flatnonzero(counts == 1)
        s_col = A.indices[A.indptr[single]]
        s_val = A.data[A.indptr[single]]
        keep_single = np.abs(s_val) > 1e-12
        single, s_col, s_val = single[keep_single], s_col[keep_single], s_val[keep_single]
        lo, hi = m.row_lo[rows[single]], m.row_hi[rows[single]]
        with np.errstate(divide="ignore", invalid="ignore"):
            low = np.where(s_val > 0, lo / s_val, hi / s_val)
            high = np.where(s_val > 0, hi / s_val, lo / s_val)
        low = np.nan_to_num(low, nan=-INF)
        high = np.nan_to_num(high, nan=INF)
        lb2, ub2 = lb.copy(), ub.copy()
        np.maximum.at(lb2, s_col, low)
        np.minimum.at(ub2, s_col, high)
        ok = lb2 <= ub2 + 1e-9
        if not ok.all():  # contradictory bounds: leave those rows as rows
            bad_cols = np.flatnonzero(~ok)
            drop = ~np.isin(s_col, bad_cols)
            single, s_col, s_val, low, high = single[drop], s_col[drop], s_val[drop], low[drop], high[drop]
            lb2, ub2 = lb.copy(), ub.copy()
            np.maximum.at(lb2, s_col, low)
            np.minimum.at(ub2, s_col, high)
        ub2 = np.maximum(ub2, lb2)
        keep = np.ones(len(rows), dtype=bool)
        keep[single] = False
        A = A[keep, :].tocsc()
        keys = np.concatenate([self.lone, self.x0 + P, self.y0 + R])
        return MasterLp(A, cost, lb2, ub2, rows[keep], keys, P, R, rows[single], s_col, s_val, low, high)

    def expand(self, v: FloatArray, P: IntArray, R: IntArray) -> FloatArray:
        """The master's solution in the model's columns (x recovered from e and the routes)."""
        m, a = self.model, self.model.arrays
        out = np.zeros(m.n_cols)
        nl = len(self.lone)
        out[self.lone] = v[:nl]
        e = v[nl:nl + len(P)]
        y = v[nl + len(P):]
        out[self.y0 + R] = y
        x = np.zeros(a.n_pairs)
        x[P] = e
        np.add.at(x, a.route_pair[R], y * self.inv_thr[a.route_pair[R]])
        out[self.x0:self.x1] = x
        return out


def column_generation(model: MatrixModel, tables: PairTables, master: BoolArray, deadline: float,
                      add_per_model: int = 4, tol: float = 1e-6, max_rounds: int = 60,
                      view: Master | None = None, stop_gap: float = 1e-6, threads: int = 1) -> LpResult:
    """Solve the LP over all pairs, starting from ``master``; stop when no pair prices out, when
    the master's value is within ``stop_gap`` (relative) of the bound its duals give, or at
    ``deadline`` (the duals still give a valid bound). ``threads``: cores for each master LP,
    when as many sit idle (the LP then runs in a child with a HiGHS thread pool of its own; this
    process keeps its pool of one, which small solves want)."""
    started = time.monotonic()
    idle = IdleCores() if threads > 1 else None
    a = model.arrays
    view = view or Master(model)
    col_status = np.full(model.n_cols, LOWER, dtype=np.int8)
    row_status = np.full(model.n_rows, BASIC, dtype=np.int8)
    have_basis = False
    best: LpResult | None = None
    rounds = 0
    master = master.copy()
    while True:
        rounds += 1
        mlp = view.build(master)
        A, cost, lb, ub, rows, keys, P, R = mlp.A, mlp.cost, mlp.lb, mlp.ub, mlp.rows, mlp.keys, mlp.P, mlp.R
        basis = (col_status[keys], row_status[rows]) if have_basis else None
        left = max(0.5, deadline - time.monotonic())
        options: dict[str, object] = {"presolve": "off"}  # presolve costs more than it saves here
        lo, hi = model.row_lo[rows], model.row_hi[rows]
        # since the last solve (building this master, pricing), this process ran on one core
        if idle is not None and idle.hold(threads):
            options["simplex_strategy"] = 2  # dual simplex, its pricing and updates on several threads
            sol = solve_within(A, cost, lb, ub, lo, hi, None, time_limit=left, threads=threads, basis=basis,
                               options=options)
        else:
            sol = solve_arrays(A, cost, lb, ub, lo, hi, None, time_limit=left, basis=basis, options=options)
        if idle is not None:
            idle()  # the next reading starts here
        if sol.values is None or sol.row_duals is None:
            if best is not None:  # this round ran out of time: the last one's duals still bound
                best.status = "FEASIBLE"
                return best
            if sol.status == "INFEASIBLE" and not master.all():
                # the restricted master cannot satisfy some rule: add every pair of the rows it breaks
                broken = rows[violated_rows(A, cost, lb, ub, lo, hi)]
                more = np.zeros(a.n_pairs, dtype=bool)
                if len(broken) and rounds < 4:
                    hit = view.Ax.T.tocsc()[:, broken].tocsr()  # pairs x broken rows
                    more[np.unique(hit.nonzero()[0])] = True
                if not (more & ~master).any():
                    more[:] = True
                master |= more
                have_basis = False
                continue
            return LpResult(sol.status, math.inf, np.zeros(model.n_cols), None, master, rounds,
                            time.monotonic() - started)
        if sol.basis is not None:
            col_status[keys] = sol.basis[0]
            row_status[rows] = sol.basis[1]
            have_basis = True
        values = view.expand(sol.values, P, R)
        row_duals = np.zeros(model.n_rows)
        row_duals[rows] = sol.row_duals
        if sol.col_duals is not None and len(mlp.single_rows):
            row_duals[mlp.single_rows] = mlp.single_duals(sol.col_duals, sol.values)
        t_dual = time.monotonic()
        duals = lagrangian(model, tables, row_duals, view.serve, integer=False)
        if DEBUG:
            debug(f"  cg round {rounds}: master {len(P)} pairs, {A.shape[1]} cols, {A.shape[0]} rows, "
                  f"lp {sol.seconds:.2f}s, value {sol.objective:.2f}, lp bound {duals.lp_bound:.2f}, "
                  f"int bound {duals.bound:.2f}, pricing {time.monotonic() - t_dual:.2f}s")
        best = LpResult("OPTIMAL", sol.objective, values, duals, master.copy(), rounds, time.monotonic() - started)
        scale = max(1.0, abs(sol.objective))
        negative = (~master) & (duals.g_lp < -tol * scale / max(1, a.n_pairs) - 1e-9)
        if not negative.any() or (sol.objective - duals.lp_bound) <= stop_gap * scale:
            best.duals = lagrangian(model, tables, row_duals, view.serve, integer=True)
            return best
        # a round that would not finish by the deadline is not started, as its work would be lost
        if time.monotonic() + (NEXT_ROUND if rounds == 1 else LATER_ROUND) * sol.seconds >= deadline \
                or rounds >= max_rounds:
            best.status = "FEASIBLE"  # stopped early: the bound is valid, the LP value an upper estimate
            best.duals = lagrangian(model, tables, row_duals, view.serve, integer=True)
            return best
        cand = np.flatnonzero(negative)
        order = cand[np.lexsort((duals.g_lp[cand], a.pair_model[cand]))]
        pm = a.pair_model[order]
        starts = np.searchsorted(pm, pm, side="left")
        rank = np.arange(len(order)) - starts
        master[order[rank < add_per_model]] = True
