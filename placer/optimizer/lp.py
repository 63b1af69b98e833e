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
import os
import time
from dataclasses import dataclass

import numpy as np

from placer.optimizer.arrays import BoolArray, FloatArray, IntArray
from placer.optimizer.highs import BASIC, LOWER, solve
from placer.optimizer.matrix import MatrixModel

RC_TOL = 1e-7
DEBUG = bool(os.environ.get("PLACER_DEBUG"))
LP_SOLVER = os.environ.get("PLACER_LP", "simplex")
CHUNK = 400_000


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
        start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        pos = np.arange(len(order)) - np.repeat(start, counts)
        routes = np.full((a.n_pairs, width), -1, dtype=np.int64)
        routes[a.route_pair[order], pos] = order
        rate = np.where(routes >= 0, a.dem_rate[a.route_dem[np.maximum(routes, 0)]], 0.0)
        return PairTables(routes, rate)


def pair_values(model: MatrixModel, tables: PairTables, rc: FloatArray, integer: bool,
                pairs: IntArray | None = None) -> tuple[FloatArray, FloatArray]:
    """(G_j, the x that reaches it) for the given pairs (default: all), from reduced costs ``rc``."""
    a = model.arrays
    x0 = model.blocks["x"][0]
    y0 = model.blocks["y"][0]
    idx = np.arange(a.n_pairs) if pairs is None else pairs
    out_g = np.empty(len(idx))
    out_x = np.empty(len(idx))
    for s in range(0, len(idx), CHUNK):
        js = idx[s:s + CHUNK]
        rcx = rc[x0 + js]
        thr = a.pair_thr[js]
        ub = model.ub[x0 + js]
        r = tables.routes[js]
        ry = np.where(r >= 0, rc[y0 + np.maximum(r, 0)], 0.0)
        rate = np.where((r >= 0) & (ry < 0), tables.rate[js], 0.0)
        ry = np.where(rate > 0, ry, 0.0)
        order = np.argsort(ry, axis=1)
        ry = np.take_along_axis(ry, order, axis=1)
        rate = np.take_along_axis(rate, order, axis=1)
        cum = np.cumsum(rate, axis=1)
        prev = cum - rate
        with np.errstate(divide="ignore", invalid="ignore"):
            brk = np.where(thr[:, None] > 0, cum / thr[:, None], 0.0)
        if integer:
            cands = [np.zeros_like(ub), ub, np.floor(brk), np.ceil(brk)]
        else:
            cands = [np.zeros_like(ub), ub, brk]
        xs = np.minimum(np.concatenate([c.reshape(len(js), -1) for c in cands], axis=1), ub[:, None])
        t = xs * thr[:, None]
        fill = np.clip(t[:, :, None] - prev[:, None, :], 0.0, rate[:, None, :])
        val = rcx[:, None] * xs + (fill * ry[:, None, :]).sum(axis=2)
        best = np.argmin(val, axis=1)
        out_g[s:s + len(js)] = val[np.arange(len(js)), best]
        out_x[s:s + len(js)] = xs[np.arange(len(js)), best]
    return out_g, out_x


@dataclass
class Duals:
    pi: FloatArray  # row multipliers (0 on serve rows)
    rc: FloatArray  # cost - A^T pi
    bound: float  # Lagrangian bound with integer x in the pair problems
    lp_bound: float  # the same with continuous x (the LP's dual bound)
    g_lp: FloatArray  # G_j with continuous x, per pair


def lagrangian(model: MatrixModel, tables: PairTables, row_duals: FloatArray, serve: BoolArray) -> Duals:
    pi = np.where(serve, 0.0, row_duals)
    lo, hi = model.row_lo, model.row_hi
    pi = np.where((pi > 0) & np.isinf(lo), 0.0, pi)
    pi = np.where((pi < 0) & np.isinf(hi), 0.0, pi)
    rows = np.where(pi > 0, pi * np.where(np.isinf(lo), 0.0, lo), pi * np.where(np.isinf(hi), 0.0, hi)).sum()
    rc = model.cost - model.A.T @ pi
    # every column but x and y (nodes, unmet, gang, churn, policy variables) is priced alone
    alone = np.ones(model.n_cols, dtype=bool)
    alone[model.block("x")] = False
    alone[model.block("y")] = False
    r = rc[alone]
    r = np.where(np.abs(r) < RC_TOL, 0.0, r)
    lb, ub = model.lb[alone], model.ub[alone]
    with np.errstate(invalid="ignore"):
        cols = np.where(r >= 0, r * lb, r * ub)
    cols_sum = float(np.sum(cols))
    g_int, _ = pair_values(model, tables, rc, integer=True)
    g_lp, _ = pair_values(model, tables, rc, integer=False)
    base = float(rows) + cols_sum
    bound = base + float(g_int.sum())
    lp_bound = base + float(g_lp.sum())
    if not math.isfinite(bound):
        bound = -math.inf
    if not math.isfinite(lp_bound):
        lp_bound = -math.inf
    return Duals(pi, rc, bound, lp_bound, g_lp)


@dataclass
class LpResult:
    status: str
    value: float  # master LP objective
    values: FloatArray  # full-length primal vector (0 outside the master)
    duals: Duals | None
    master: BoolArray  # pairs in the master
    iterations: int
    seconds: float


def initial_pairs(model: MatrixModel, current_pairs: IntArray, per_demand: int = 4, per_model: int = 3,
                  domains: int = 3) -> BoolArray:
    """A starting master: the cheapest routes of every demand entry by static cost, the cheapest
    pairs of every model (per replica), a cheap pair in a few failure domains, and what runs now."""
    a = model.arrays
    x0, y0 = model.blocks["x"][0], model.blocks["y"][0]
    chosen = np.zeros(a.n_pairs, dtype=bool)
    chosen[current_pairs] = True
    per_replica = model.cost[x0:x0 + a.n_pairs] + np.where(
        a.pool_elastic[a.pair_pool], a.pool_price[a.pair_pool] * a.pair_c, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_rate = model.cost[y0:y0 + a.n_routes] + per_replica[a.route_pair] / a.pair_thr[a.route_pair]
    if a.n_routes:
        order = np.lexsort((per_rate, a.route_dem))
        rank = np.arange(a.n_routes) - a.route_ptr[a.route_dem[order]]
        chosen[a.route_pair[order[rank < per_demand]]] = True
    if a.n_pairs:
        order = np.lexsort((per_replica, a.pair_model))
        rank = np.arange(a.n_pairs) - a.pair_ptr[a.pair_model[order]]
        chosen[order[rank < per_model]] = True
        # and the cheapest on-demand (not spot) pairs, for spot caps
        sure = np.flatnonzero(~a.pool_spot[a.pair_pool])
        order = sure[np.lexsort((per_replica[sure], a.pair_model[sure]))]
        pm = a.pair_model[order]
        rank = np.arange(len(order)) - np.searchsorted(pm, pm, side="left")
        chosen[order[rank < per_model]] = True
        # the cheapest pair of each (model, failure domain), for the `domains` cheapest domains of each model
        dom = a.pool_domain[a.pair_pool]
        order = np.lexsort((per_replica, dom, a.pair_model))
        first = np.ones(len(order), dtype=bool)
        first[1:] = (a.pair_model[order][1:] != a.pair_model[order][:-1]) | (dom[order][1:] != dom[order][:-1])
        heads = order[first]
        order2 = heads[np.lexsort((per_replica[heads], a.pair_model[heads]))]
        starts = np.searchsorted(a.pair_model[order2], a.pair_model[order2], side="left")
        rank = np.arange(len(order2)) - starts
        chosen[order2[rank < domains]] = True
    return chosen


def violated_rows(model: MatrixModel, cols: IntArray, rows: IntArray) -> IntArray:
    """Rows that an infeasible sub-problem cannot satisfy (HiGHS' feasibility relaxation)."""
    import highspy

    A = model.A[:, cols][rows, :].tocsc()
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    inf = highspy.kHighsInf
    lo, hi = model.row_lo[rows], model.row_hi[rows]
    h.passModel(len(cols), len(rows), A.nnz, 1, 1, 0.0, model.cost[cols], model.lb[cols],
                np.where(np.isinf(model.ub[cols]), inf, model.ub[cols]), np.where(np.isinf(lo), -inf, lo),
                np.where(np.isinf(hi), inf, hi), A.indptr.astype(np.int32), A.indices.astype(np.int32),
                A.data.astype(np.float64), np.zeros(len(cols), dtype=np.int32))
    h.feasibilityRelaxation(-1, -1, 1.0)
    act = np.array(h.getSolution().row_value)
    if len(act) != len(rows):
        return np.zeros(0, dtype=np.int64)
    return rows[(act < lo - 1e-6) | (act > hi + 1e-6)]


def master_columns(model: MatrixModel, pair_of_col: IntArray, master: BoolArray) -> IntArray:
    lone = pair_of_col < 0
    inside = np.zeros(model.n_cols, dtype=bool)
    inside[lone] = True
    inside[~lone] = master[pair_of_col[~lone]]
    return np.flatnonzero(inside)


def column_generation(model: MatrixModel, tables: PairTables, pair_of_col: IntArray, master: BoolArray,
                      deadline: float, add_per_model: int = 4, tol: float = 1e-6,
                      max_rounds: int = 60) -> LpResult:
    """Solve the LP over all pairs, starting from ``master``; stop when no pair prices out,
    or at ``deadline`` (then the duals still give a valid bound)."""
    started = time.monotonic()
    a = model.arrays
    serve = np.zeros(model.n_rows, dtype=bool)
    serve[model.serve_row[model.serve_row >= 0]] = True
    col_status = np.full(model.n_cols, LOWER, dtype=np.int8)
    row_status = np.full(model.n_rows, BASIC, dtype=np.int8)
    have_basis = False
    best: LpResult | None = None
    rounds = 0
    master = master.copy()
    while True:
        rounds += 1
        cols = master_columns(model, pair_of_col, master)
        sub = model.A[:, cols]
        touched = np.zeros(model.n_rows, dtype=bool)
        touched[sub.indices] = True
        needed = (model.row_lo > 1e-9) | (model.row_hi < -1e-9)
        rows = np.flatnonzero(touched | needed)
        basis = (col_status[cols], row_status[rows]) if have_basis else None
        left = max(0.5, deadline - time.monotonic())
        options: dict[str, object] = {"presolve": "off"}
        if LP_SOLVER == "ipm":
            options = {"solver": "ipm", "run_crossover": "off"}
            basis = None
        elif basis is not None:
            options["simplex_strategy"] = 4  # the old basis stays primal feasible when columns join
        sol = solve(model, cols, integer=False, time_limit=left, rows=rows, basis=basis, options=options)
        if sol.values is None or sol.row_duals is None:
            if best is not None:
                return best
            if sol.status == "INFEASIBLE" and not master.all():
                # the restricted master cannot satisfy some rule: add every pair of the rows it breaks
                broken = violated_rows(model, cols, rows)
                more = np.zeros(a.n_pairs, dtype=bool)
                if len(broken) and rounds < 4:
                    touched_cols = model.A.tocsr()[broken].indices
                    xs = touched_cols[(touched_cols >= model.blocks["x"][0]) & (touched_cols < model.blocks["x"][1])]
                    more[xs - model.blocks["x"][0]] = True
                if not (more & ~master).any():
                    more[:] = True
                master |= more
                have_basis = False
                continue
            return LpResult(sol.status, math.inf, np.zeros(model.n_cols), None, master, rounds,
                            time.monotonic() - started)
        if sol.basis is not None:
            col_status[cols] = sol.basis[0]
            row_status[rows] = sol.basis[1]
            have_basis = True
        values = np.zeros(model.n_cols)
        values[cols] = sol.values
        row_duals = np.zeros(model.n_rows)
        row_duals[rows] = sol.row_duals
        t_dual = time.monotonic()
        duals = lagrangian(model, tables, row_duals, serve)
        if DEBUG:
            print(f"  cg round {rounds}: master {int(master.sum())} pairs, {len(cols)} cols, {len(rows)} rows, "
                  f"lp {sol.seconds:.2f}s, value {sol.objective:.2f}, lp bound {duals.lp_bound:.2f}, "
                  f"int bound {duals.bound:.2f}, pricing {time.monotonic() - t_dual:.2f}s")
        best = LpResult("OPTIMAL", sol.objective, values, duals, master.copy(), rounds, time.monotonic() - started)
        scale = max(1.0, abs(sol.objective))
        negative = (~master) & (duals.g_lp < -tol * scale / max(1, a.n_pairs) - 1e-9)
        if not negative.any() or (sol.objective - duals.lp_bound) <= 1e-6 * scale:
            return best
        if time.monotonic() >= deadline or rounds >= max_rounds:
            best.status = "FEASIBLE"  # stopped early: the bound is valid, the LP value an upper estimate
            return best
        cand = np.flatnonzero(negative)
        order = cand[np.lexsort((duals.g_lp[cand], a.pair_model[cand]))]
        pm = a.pair_model[order]
        starts = np.searchsorted(pm, pm, side="left")
        rank = np.arange(len(order)) - starts
        master[order[rank < add_per_model]] = True
