"""A fast capacity-aware greedy placement: the column-generation seed and a last-resort plan.

Largest models first; each demand entry takes its cheapest routes (per unit of rate:
latency, egress, and the replica's price spread over its throughput) while the pool has
GPUs left, reusing spare throughput of replicas the model already has there. Policies are
not looked at: the result seeds the LP and the repair, which enforce them.
"""

from __future__ import annotations

import math

import numpy as np

from placer.optimizer.arrays import FloatArray, IntArray
from placer.optimizer.matrix import MatrixModel


def per_replica_cost(model: MatrixModel) -> FloatArray:
    a = model.arrays
    x0, x1 = model.blocks["x"]
    elastic = a.pool_elastic[a.pair_pool]
    return model.cost[x0:x1] + np.where(elastic, a.pool_price[a.pair_pool] * a.pair_c, 0.0)


def per_rate_cost(model: MatrixModel, per_replica: FloatArray | None = None) -> FloatArray:
    """Per route: its own cost per unit of rate plus its pair's replica cost per unit of
    throughput (inf where the pair serves none); ``per_replica``: ``per_replica_cost``, when known."""
    a = model.arrays
    y0 = model.blocks["y"][0]
    replica = per_replica_cost(model) if per_replica is None else per_replica
    with np.errstate(divide="ignore", invalid="ignore"):
        out: FloatArray = model.cost[y0:y0 + a.n_routes] + replica[a.route_pair] / a.pair_thr[a.route_pair]
    return out


def model_size(model: MatrixModel) -> FloatArray:
    """GPUs each model wants at its best throughput (replicas wanted, for training and batch)."""
    a = model.arrays
    out = np.zeros(len(a.models))
    for mi, m in enumerate(a.models):
        lo, hi = int(a.pair_ptr[mi]), int(a.pair_ptr[mi + 1])
        if hi == lo:
            continue
        c = float(a.pair_c[lo:hi].min())
        if m.inference:
            thr = float(a.pair_thr[lo:hi].max()) or 1.0
            out[mi] = max(m.total_demand / thr, float(m.spec.min_replicas or 0)) * c
        else:
            out[mi] = float(m.spec.replicas or 0) * c
    return out


def greedy(model: MatrixModel) -> tuple[IntArray, FloatArray]:
    """(replicas per pair, rate per route)."""
    a = model.arrays
    free = (a.pool_max_nodes * a.pool_per_node).astype(float)
    replica = per_replica_cost(model)
    per_rate = per_rate_cost(model, replica)
    x = np.zeros(a.n_pairs, dtype=np.int64)
    spare = np.zeros(a.n_pairs)  # throughput of placed replicas not yet routed
    y = np.zeros(a.n_routes)
    dem_of_model: dict[int, list[int]] = {}
    for d, m in enumerate(a.dem_model.tolist()):
        dem_of_model.setdefault(m, []).append(d)
    for mi in np.argsort(-model_size(model), kind="stable").tolist():
        model_ = a.models[mi]
        lo, hi = int(a.pair_ptr[mi]), int(a.pair_ptr[mi + 1])
        if hi == lo:
            continue
        if not model_.inference:
            want = model_.spec.replicas or 0
            order = lo + np.argsort(replica[lo:hi], kind="stable")
            gang = model_.spec.gang_effective
            for j in order.tolist():
                if want <= 0:
                    break
                p = int(a.pair_pool[j])
                c = int(a.pair_c[j])
                fit = int(min(free[p] // c, a.pair_max[j] - x[j]))
                if gang and fit < want:
                    continue
                k = min(fit, want)
                if k > 0:
                    x[j] += k
                    free[p] -= k * c
                    want -= k
            continue
        for d in sorted(dem_of_model.get(mi, []), key=lambda d: -a.dem_rate[d]):
            need = float(a.dem_rate[d])
            r0, r1 = int(a.route_ptr[d]), int(a.route_ptr[d + 1])
            for r in (r0 + np.argsort(per_rate[r0:r1], kind="stable")).tolist():
                if need <= 1e-9:
                    break
                j = int(a.route_pair[r])
                use = min(need, spare[j])
                if use > 0:
                    y[r] += use
                    spare[j] -= use
                    need -= use
                if need <= 1e-9:
                    break
                p = int(a.pair_pool[j])
                c = int(a.pair_c[j])
                thr = float(a.pair_thr[j])
                k = min(math.ceil(need / thr - 1e-9), int(free[p] // c), int(a.pair_max[j] - x[j]))
                if k <= 0:
                    continue
                x[j] += k
                free[p] -= k * c
                served = min(need, k * thr)
                y[r] += served
                spare[j] += k * thr - served
                need -= served
        floor = model_.spec.min_replicas or 0
        have = int(x[lo:hi].sum())
        if have < floor:
            for j in (lo + np.argsort(replica[lo:hi], kind="stable")).tolist():
                p = int(a.pair_pool[j])
                c = int(a.pair_c[j])
                k = min(floor - have, int(free[p] // c), int(a.pair_max[j] - x[j]))
                if k > 0:
                    x[j] += k
                    free[p] -= k * c
                    have += k
                if have >= floor:
                    break
    return x, y


def route(model: MatrixModel, x: FloatArray) -> FloatArray:
    """Rates per route that these replicas can carry: each demand entry (largest first) takes its
    cheapest routes while their pairs have throughput left."""
    a = model.arrays
    y0 = model.blocks["y"][0]
    cost = model.cost[y0:y0 + a.n_routes]
    left = a.pair_thr * x
    y = np.zeros(a.n_routes)
    for d in np.argsort(-a.dem_rate, kind="stable").tolist():
        need = float(a.dem_rate[d])
        r0, r1 = int(a.route_ptr[d]), int(a.route_ptr[d + 1])
        if r1 == r0:
            continue
        js = a.route_pair[r0:r1]
        have = left[js] > 1e-9
        if not have.any():
            continue
        rs = np.flatnonzero(have)
        for k in rs[np.argsort(cost[r0 + rs], kind="stable")].tolist():
            j = int(js[k])
            take = min(need, float(left[j]))
            y[r0 + k] += take
            left[j] -= take
            need -= take
            if need <= 1e-9:
                break
    return y


def pseudo_lp(model: MatrixModel, x: FloatArray) -> FloatArray:
    """A model vector around integer replicas: greedy routes, unmet for the rest, nodes to hold
    them (what ``repair.round_and_cover`` takes in place of an LP solution)."""
    a = model.arrays
    v = np.where(np.isfinite(model.lb), model.lb, 0.0)
    x0, x1 = model.blocks["x"]
    y0, y1 = model.blocks["y"]
    u0 = model.blocks["u"][0]
    v[x0:x1] = x
    y = route(model, x)
    v[y0:y1] = y
    served = np.bincount(a.route_dem, weights=y, minlength=len(a.dem_model))
    v[u0:u0 + len(a.dem_model)] = 0.0  # unmet is for the cover to fill, not to keep
    del served
    used = np.bincount(a.pair_pool, weights=x * a.pair_c, minlength=len(a.pools))
    el = np.flatnonzero(model.elastic_col >= 0)
    v[model.elastic_col[el]] = np.clip(used[el] / a.pool_per_node[el], a.pool_min_nodes[el], a.pool_max_nodes[el])
    return v
