"""From the LP to a feasible plan: round down, cover what is left greedily, complete exactly.

1. Round the LP's replicas down (never over capacity) and shrink its routes to fit them.
2. Cover each demand entry's rest, largest first, with the cheapest way per unit of rate
   among the allowed pairs: spare throughput of replicas already placed, a replica on GPUs
   already paid for (fixed pools, idle GPUs of provisioned nodes), or a new node; then top
   up minReplicas and place training / batch replicas (gang: one pool).
3. Complete: with replicas fixed, a small MIP sets everything else (routes, unmet, nodes,
   policy variables). When a rule cannot hold with those replicas (a spot cap, a spread),
   the models in the broken rows get their replicas freed in that MIP, and it is solved again.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from placer.optimizer.arrays import BoolArray, FloatArray, IntArray, spans
from placer.optimizer.greedy import per_replica_cost
from placer.optimizer.highs import solve_arrays
from placer.optimizer.lns import Neighbourhoods, solve_free, touched_rows
from placer.optimizer.lp import violated_rows
from placer.optimizer.matrix import MatrixModel, pure_x_rows, rows_broken
from placer.optimizer.quiet import DEBUG, debug


def round_and_cover(model: MatrixModel, lp_values: FloatArray, allowed: BoolArray, round_up: float = 0.6,
                    csr: Any = None) -> IntArray:
    """Integer replicas near ``lp_values``: inference pairs whose fraction is at least ``round_up``
    rounded up where capacity and the rules allow, the rest rounded down, and the demand left
    covered greedily; ``allowed`` pairs are preferred, and a pair outside them that the cover has
    to use is added to them (in place). ``csr``: the model's matrix in CSR form, when the caller has it."""
    a = model.arrays
    x0, x1 = model.blocks["x"]
    y0, y1 = model.blocks["y"]
    u0 = model.blocks["u"][0]
    x = np.floor(lp_values[x0:x1] + 1e-6).astype(np.int64)
    x = np.minimum(x, model.ub[x0:x1].astype(np.int64))
    frac = lp_values[x0:x1] - x
    y = lp_values[y0:y1].copy()
    load = np.bincount(a.route_pair, weights=y, minlength=a.n_pairs)
    cap = a.pair_thr * x
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(load > 1e-12, np.minimum(1.0, cap / load), 1.0)
    y *= scale[a.route_pair]
    load = np.bincount(a.route_pair, weights=y, minlength=a.n_pairs)
    spare = np.maximum(0.0, cap - load)
    served = np.bincount(a.route_dem, weights=y, minlength=len(a.dem_model))
    unmet_lp = lp_values[u0:u0 + len(a.dem_model)]
    residual = np.maximum(0.0, a.dem_rate - served - unmet_lp)

    # capacity left: fixed pools by GPUs, elastic pools by GPUs in provisioned nodes and nodes to add
    used = np.bincount(a.pair_pool, weights=x * a.pair_c, minlength=len(a.pools)).astype(float)
    fixed_cap = (a.pool_min_nodes * a.pool_per_node).astype(float)
    elastic = a.pool_elastic
    # nodes paid for: what the LP provisions, rounded up (its idle GPUs are free to fill)
    nodes = np.where(elastic, np.maximum(a.pool_min_nodes, np.ceil(used / a.pool_per_node - 1e-9)), a.pool_min_nodes)
    el = np.flatnonzero(model.elastic_col >= 0)
    nodes[el] = np.maximum(nodes[el], np.ceil(lp_values[model.elastic_col[el]] - 1e-6))
    node_price = a.pool_price * a.pool_per_node
    x_cost = model.cost[x0:x1]  # fixed pools' GPUs, churn, tie-break, training egress
    route_cost = model.cost[y0:y1]
    # rows over replicas alone (a spot cap, headroom on a fixed pool, maxReplicas): checked as
    # replicas are added, so that what the greedy adds keeps them
    csr = model.A.tocsr() if csr is None else csr
    pure = pure_x_rows(model, csr)
    xa = csr[pure][:, x0:x1].tocsc()
    pure_act = xa @ x
    pure_hi = model.row_hi[pure]

    def place(j: int, k: int) -> None:
        """k more replicas on pair j (fewer, for k < 0), with the rows, GPUs and nodes they change."""
        p = int(a.pair_pool[j])
        x[j] += k
        lo_, hi_ = xa.indptr[j], xa.indptr[j + 1]
        pure_act[xa.indices[lo_:hi_]] += k * xa.data[lo_:hi_]
        used[p] += k * a.pair_c[j]
        if elastic[p]:
            nodes[p] = max(nodes[p], max(a.pool_min_nodes[p], math.ceil(used[p] / a.pool_per_node[p] - 1e-9)))

    # a start beyond the LP's (a scaled or a greedy one) may put elastic pools past their most
    # nodes: replicas off, the largest first, until they fit
    over_pools = np.flatnonzero(elastic & (used > a.pool_max_nodes * a.pool_per_node + 1e-9))
    for p in over_pools.tolist():
        room = float(a.pool_max_nodes[p] * a.pool_per_node[p])
        js = np.flatnonzero((a.pair_pool == p) & (x > 0) & (a.pair_c > 0))
        for j in js[np.argsort(-a.pair_c[js], kind="stable")].tolist():
            if used[p] <= room + 1e-9:
                break
            place(j, -min(int(x[j]), math.ceil((used[p] - room) / a.pair_c[j] - 1e-9)))
        nodes[p] = min(nodes[p], a.pool_max_nodes[p])

    # it may break rows over replicas alone (a greedy start ignores spot caps): take replicas off the pairs
    # that push a broken row up, largest push first, until it holds; and again, as taking a
    # replica off may break another row (fewer on-demand replicas, a spot cap broken)
    def rows_over() -> IntArray:
        return np.flatnonzero(pure_act > pure_hi + 1e-7 * np.maximum(1.0, np.abs(pure_act)))

    over = rows_over()
    if len(over) or len(over_pools):
        xr = xa.tocsr()

        def _take_off(rows: IntArray) -> None:
            for row in rows.tolist():
                lo_, hi_ = xr.indptr[row], xr.indptr[row + 1]
                js_, vals_ = xr.indices[lo_:hi_], xr.data[lo_:hi_]
                for k in np.argsort(-vals_, kind="stable").tolist():
                    if pure_act[row] <= pure_hi[row] + 1e-7 * max(1.0, abs(pure_act[row])):
                        break
                    j, val = int(js_[k]), float(vals_[k])
                    if val <= 0 or x[j] <= 0:
                        continue
                    need = math.ceil((pure_act[row] - pure_hi[row]) / val - 1e-9)
                    place(j, -min(int(x[j]), max(1, need)))

        rows_left = over
        while len(rows_left):
            before = int(x.sum())
            _take_off(rows_left)
            rows_left = rows_over()
            if int(x.sum()) == before:  # nothing left to take off (x only falls: this ends)
                break
        # what the removed replicas carried is demand to cover again
        cap = a.pair_thr * x
        load = np.bincount(a.route_pair, weights=y, minlength=a.n_pairs)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(load > 1e-12, np.minimum(1.0, cap / load), 1.0)
        y *= scale[a.route_pair]
        load = np.bincount(a.route_pair, weights=y, minlength=a.n_pairs)
        spare[:] = np.maximum(0.0, cap - load)
        served = np.bincount(a.route_dem, weights=y, minlength=len(a.dem_model))
        residual[:] = np.maximum(0.0, a.dem_rate - served - unmet_lp)

    pool_of, c_of = a.pair_pool, a.pair_c
    per_node = np.where(a.pool_per_node > 0, a.pool_per_node, 1)
    x_ub = model.ub[x0:x1]

    def add_costs(js: IntArray, ks: IntArray) -> FloatArray:
        """What ks more replicas on each pair js cost, nodes included (inf where they do not fit:
        beyond the pair's bound, a row over replicas alone, the pool's nodes or GPUs)."""
        p = pool_of[js]
        need = used[p] + ks * c_of[js]
        n = np.maximum(a.pool_min_nodes[p], np.ceil(need / per_node[p] - 1e-9))
        el = elastic[p]
        cost = ks * x_cost[js] + np.where(el, (n - nodes[p]) * node_price[p], 0.0)
        fits = (x[js] + ks <= x_ub[js]) & np.where(el, n <= a.pool_max_nodes[p], need <= fixed_cap[p] + 1e-9)
        # the rows over replicas alone, for every (pair, k) at once
        seg, at = spans(xa.indptr[js], xa.indptr[js + 1])
        if len(at):
            rows_, vals = xa.indices[at], xa.data[at]
            after = pure_act[rows_] + ks[seg] * vals
            breaks = (vals > 0) & (after > pure_hi[rows_] + 1e-7 * np.maximum(1.0, np.abs(after)))
            fits &= np.bincount(seg[breaks], minlength=len(js)) == 0
        out: FloatArray = np.where(fits, cost, math.inf)
        return out

    def add_cost(j: int, k: int) -> float:
        return float(add_costs(np.array([j]), np.array([k]))[0])

    # an inference replica the LP wants most of is rounded up where it fits: its routes keep their
    # demand, where rounding down would buy a whole replica elsewhere for the fraction
    inference = a.model_inference
    for j in np.argsort(-frac, kind="stable").tolist():
        if frac[j] < round_up:
            break
        if inference[a.pair_model[j]] and math.isfinite(add_cost(j, 1)):
            place(j, 1)
            spare[j] += a.pair_thr[j]
    # replica floors and training / batch replicas
    replica = per_replica_cost(model)
    for mi, m in enumerate(a.models):
        lo, hi = int(a.pair_ptr[mi]), int(a.pair_ptr[mi + 1])
        js = np.arange(lo, hi)
        js = js[allowed[js]]
        if not len(js):
            continue
        if m.inference:
            floor = int(m.spec.min_replicas or 0)
            while int(x[lo:hi].sum()) < floor:
                # the LP's own choice first: its largest fractions, then the cheapest that fits
                costs = add_costs(js, np.ones(len(js), dtype=np.int64)) - 1e6 * lp_values[x0 + js]
                k = int(np.argmin(costs))
                if not math.isfinite(costs[k]):
                    break
                place(int(js[k]), 1)
                spare[int(js[k])] += a.pair_thr[int(js[k])]
            continue
        want = int(m.spec.replicas or 0)
        have = int(x[lo:hi].sum())
        if have >= want:
            continue
        if m.spec.gang_effective:
            # everything on the pair the LP liked best that can take it all
            for j in range(lo, hi):
                if x[j]:
                    place(j, -int(x[j]))
            prefer = js[np.argsort(-lp_values[x0 + js] + 1e-9 * replica[js], kind="stable")]
            for j in prefer.tolist():
                if math.isfinite(add_cost(j, want)):
                    place(j, want)
                    break
            continue
        while have < want:
            costs = add_costs(js, np.ones(len(js), dtype=np.int64))
            k = int(np.argmin(costs))
            if not math.isfinite(costs[k]):
                break
            place(int(js[k]), 1)
            have += 1
    for d in np.argsort(-residual * 1.0, kind="stable").tolist():
        need = float(residual[d])
        if need <= 1e-9:
            break
        r0, r1 = int(a.route_ptr[d]), int(a.route_ptr[d + 1])
        every = np.arange(r0, r1)
        rs = every[allowed[a.route_pair[every]]]
        widened = False
        if not len(rs):
            rs, widened = every, True
        while need > 1e-9:
            js = a.route_pair[rs]
            # spare throughput first: only the route's own cost
            has_spare = spare[js] > 1e-9
            if has_spare.any():
                k = int(np.argmin(np.where(has_spare, route_cost[rs], np.inf)))
                r, j = int(rs[k]), int(js[k])
                take = min(need, float(spare[j]))
                y[r] += take
                spare[j] -= take
                need -= take
                continue
            # one replica, or as many as the rest needs, on each route's pair: the least cost per
            # unit of rate served (ties: the first route, one replica first)
            thr_r = a.pair_thr[js]
            ok = thr_r > 0
            r_ok, j_ok, thr_ok = rs[ok], js[ok], thr_r[ok]
            k_all = np.maximum(1, np.ceil(need / thr_ok - 1e-9)).astype(np.int64)
            kk = np.stack([np.ones(len(j_ok), dtype=np.int64), k_all], axis=1).reshape(-1)
            r2, j2, thr2 = np.repeat(r_ok, 2), np.repeat(j_ok, 2), np.repeat(thr_ok, 2)
            cost2 = add_costs(j2, kk)
            cost2[1::2][k_all == 1] = math.inf  # k = 1 already counted
            serve = np.minimum(need, kk * thr2)
            unit = np.where(np.isfinite(cost2), (cost2 + route_cost[r2] * serve) / serve, math.inf)
            best_r = -1
            if len(unit) and np.isfinite(unit.min()):
                at = int(np.argmin(unit))
                best_r, best_k = int(r2[at]), int(kk[at])
            if best_r < 0:
                if widened:
                    break  # nowhere to go: left unmet
                rs, widened = every, True  # the allowed pairs are full: look at every route
                continue
            j = int(a.route_pair[best_r])
            allowed[j] = True  # a pair the plan uses is one the searches may use
            place(j, best_k)
            thr = float(a.pair_thr[j])
            take = min(need, best_k * thr)
            y[best_r] += take
            spare[j] += best_k * thr - take
            need -= take

    return x


def models_in_rows(model: MatrixModel, hood: Neighbourhoods, rows: IntArray) -> IntArray:
    """Models whose replicas appear in these rows, or in a row sharing a policy variable with them."""
    a = model.arrays
    x0, x1 = model.blocks["x"]
    aux0, aux1 = model.blocks["aux"]
    cols = hood.csr[rows].indices
    aux = np.unique(cols[(cols >= aux0) & (cols < aux1)])
    if len(aux):
        more_rows = np.unique(hood.csc[:, aux].indices)
        cols = np.concatenate([cols, hood.csr[more_rows].indices])
    xs = np.unique(cols[(cols >= x0) & (cols < x1)]) - x0
    return np.unique(a.pair_model[xs])


def neighbours(model: MatrixModel, hood: Neighbourhoods, models: IntArray, v: FloatArray,
               limit: int = 60) -> IntArray:
    """These models and those placed on the pools they may use (the largest holders first)."""
    a = model.arrays
    x0 = model.blocks["x"][0]
    pools = np.unique(np.concatenate([a.pair_pool[a.pair_ptr[m]:a.pair_ptr[m + 1]] for m in models])) \
        if len(models) else np.zeros(0, dtype=np.int64)
    if not len(pools):  # models no pool can run: they have no neighbours
        return np.unique(np.asarray(models, dtype=np.int64))
    js = np.concatenate([hood.by_pool[hood.pool_ptr[p]:hood.pool_ptr[p + 1]] for p in pools])
    x = v[x0 + js]
    js = js[x > 0.5]
    order = np.argsort(-x[x > 0.5] * a.pair_c[js], kind="stable")
    holders = a.pair_model[js[order]]
    _, first = np.unique(holders, return_index=True)
    others = holders[np.sort(first)][:limit]  # each model once, the largest holders first
    return np.unique(np.concatenate([models, others]))


def complete(model: MatrixModel, hood: Neighbourhoods, x: IntArray, time_limit: float,
             deadline: float | None = None, chunk: int = 1500) -> FloatArray | None:
    """A feasible plan with these replicas where the rules allow.

    Nodes first (the least that hold the replicas), then the rest model by model, in chunks
    (with replicas and nodes fixed, what is left decomposes by model). Where the rules do not
    allow the replicas (a spread, a spot cap the rounding broke), the models in the broken
    rows are set aside, and placed afterwards one small MIP at a time around the others."""
    import time

    a = model.arrays
    x0, x1 = model.blocks["x"]
    y0 = model.blocks["y"][0]
    deadline = deadline if deadline is not None else time.monotonic() + 3 * time_limit
    v = np.where(np.isfinite(model.lb), model.lb, 0.0)
    v[x0:x1] = x
    # a model no pool can run is in no neighbourhood: its demand and replicas go unmet here, or
    # its rows stay broken (a batch model's replicas cost nothing: 0 USD/h where 3,000 were due)
    idle = np.setdiff1d(np.arange(len(a.models)), hood.active_models)
    k = hood.k_col[idle]
    u = np.concatenate([np.arange(a.dem_ptr[m], a.dem_ptr[m + 1]) for m in idle]) + hood.u0 if len(idle) else \
        np.zeros(0, dtype=np.int64)
    for cols in (k[k >= 0], u):
        v[cols] = model.ub[cols]
    csc = hood.csc
    ncols = model.elastic_col[model.elastic_col >= 0]
    if len(ncols):
        new, status = solve_free(model, csc, v, ncols, time_limit=max(0.2, min(time_limit, deadline - time.monotonic())))
        if new is None:
            # the replicas need more nodes than pools may have: let the models on those pools be re-decided
            if DEBUG:
                debug(f"    complete: nodes {status}")
            return None
        v[ncols] = new
    act = csc @ v
    aside = np.zeros(len(a.models), dtype=bool)
    # rows over replicas alone that the replicas break (a minReplicas the rounding left short): no
    # column freed below touches them, so a plan that broke them passed for feasible (and priced
    # below the MIP's proven bound); their models are set aside and placed afterwards, rows and all
    pure = hood.pure_rows
    tol = 1e-7 * np.maximum(1.0, np.abs(act[pure]))
    short = pure[(act[pure] < model.row_lo[pure] - tol) | (act[pure] > model.row_hi[pure] + tol)]
    if len(short):
        aside[models_in_rows(model, hood, short)] = True
        gone = np.flatnonzero(aside[a.pair_model] & (v[x0:x1] > 0))
        act += csc[:, x0 + gone] @ -v[x0 + gone]
        v[x0 + gone] = 0
    order = hood.active_models
    for start in range(0, len(order), chunk):
        models = order[start:start + chunk]
        for _ in range(3):
            models = models[~aside[models]]
            if not len(models):
                break
            cols = hood.columns(models)
            is_x = (cols >= x0) & (cols < x1)
            is_y = (cols >= y0) & (cols < y0 + a.n_routes)
            open_route = np.zeros(len(cols), dtype=bool)
            open_route[is_y] = v[x0 + a.route_pair[cols[is_y] - y0]] > 0.5
            free = cols[~is_x & (~is_y | open_route) & ~np.isin(cols, ncols)]
            left = max(0.2, min(time_limit, deadline - time.monotonic()))
            new, status = solve_free(model, csc, v, free, time_limit=left, act=act, gap=1e-3)
            if DEBUG:
                debug(f"    complete: {len(models)} models, {len(free)} free columns: {status}")
            if new is not None:
                act += csc[:, free] @ (new - v[free])
                v[free] = new
                break
            bad = broken_rows(model, hood, v, free, left, fixed_cols=cols[is_x])
            involved = models_in_rows(model, hood, bad) if len(bad) else np.zeros(0, dtype=np.int64)
            if DEBUG:
                debug("    complete: broken rows", [model.row_names.get(int(r), int(r)) for r in bad[:6]], len(bad))
            if not len(involved) or aside[involved].all():
                return None
            aside[involved] = True
            # their replicas leave; their other columns stay at rest until they are placed again
            gone = np.flatnonzero(aside[a.pair_model] & (v[x0:x1] > 0))
            if len(gone):
                delta = -v[x0 + gone]
                act += csc[:, x0 + gone] @ delta
                v[x0 + gone] = 0
        else:
            return None
    if aside.any():
        from placer.optimizer.lns import construct

        order_aside = np.flatnonzero(aside)
        placed = construct(model, hood, order_aside, deadline=deadline, start=v, target_cols=80, step_limit=1.0)
        if DEBUG:
            debug(f"    complete: {len(order_aside)} models placed around the rest: "
                  f"{'ok' if placed is not None else 'failed'}")
        if placed is None:
            return None
        v = placed
        # nodes again: setting models aside may have emptied some
        if len(ncols):
            new, _ = solve_free(model, csc, v, ncols, time_limit=max(0.2, min(time_limit, deadline - time.monotonic())))
            if new is not None:
                v[ncols] = new
    return v


def covered(model: MatrixModel, hood: Neighbourhoods, kept: FloatArray, allowed: BoolArray, time_limit: float,
            deadline: float | None = None) -> FloatArray | None:
    """A plan that keeps every replica of the plan ``kept`` (what runs, completed: its routes the
    best its replicas allow) and covers the demand it leaves unmet with more replicas, the
    cheapest way per unit of rate (``round_and_cover`` from it, its unmet counted as demand to
    cover), then completed. A re-plan's start after demand grew: what runs, covered, moves only
    what the new demand needs, where rounding the greedy routes of what runs dropped replicas
    they left idle and covered again (bench M, a 5% change: 7,985 USD/h against 8,199)."""
    u0 = model.blocks["u"][0]
    start = kept.copy()
    start[u0:u0 + len(model.arrays.dem_model)] = 0.0
    x = round_and_cover(model, start, allowed, csr=hood.csr)
    return complete(model, hood, x, time_limit=time_limit, deadline=deadline)


def broken_rows(model: MatrixModel, hood: Neighbourhoods, v: FloatArray, free: IntArray,
                time_limit: float, fixed_cols: IntArray | None = None) -> IntArray:
    """Rows the fixed columns break alone, else those the sub-problem's feasibility relaxation
    breaks; ``fixed_cols``: the fixed columns whose rows count (default: every row)."""
    csc = hood.csc
    rows, sub = touched_rows(csc, free)
    act = csc @ v
    if fixed_cols is None:
        untouched = np.ones(model.n_rows, dtype=bool)
    else:
        untouched = np.zeros(model.n_rows, dtype=bool)
        untouched[np.unique(csc[:, fixed_cols].indices)] = True
    untouched[rows] = False
    bad = np.flatnonzero(untouched & rows_broken(csc, v, act, model.row_lo, model.row_hi))
    if len(bad):
        return bad
    fixed = act[rows] - sub @ v[free]
    return rows[violated_rows(sub, model.cost[free], model.lb[free], model.ub[free],
                              model.row_lo[rows] - fixed, model.row_hi[rows] - fixed,
                              integer=model.integer[free], time_limit=time_limit)]


__all__ = ["complete", "round_and_cover", "solve_arrays"]
