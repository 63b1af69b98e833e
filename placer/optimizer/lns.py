"""Large-neighbourhood search: improve a feasible plan with many small MIPs.

Each step frees the columns of a few models (their pairs among the allowed ones, routes,
unmet, gang and churn columns), the nodes of the pools those pairs touch, and the policy
variables in the rows they touch; every other column keeps its incumbent value and moves
into the row bounds. HiGHS solves that small MIP from the incumbent (always feasible for
it), and a better answer replaces the incumbent. Neighbourhoods: the models on a pool with
paid-for but idle GPUs, the models sharing pools with one model, and models at random.
``sweep`` runs one-model steps first, over every model that pays for idle replica capacity or
leaves demand unserved, on several threads.
"""

from __future__ import annotations

import collections
import functools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from placer.optimizer.arrays import BoolArray, FleetArrays, FloatArray, IntArray
from placer.optimizer.highs import Solution, solve_arrays
from placer.optimizer.lp import PairTables
from placer.optimizer.matrix import MatrixModel, pure_x_rows, rows_broken
from placer.optimizer.quiet import DEBUG, debug

# small MIPs: HiGHS' own sub-MIP heuristics cost more than they find here
STEP_OPTIONS = {"mip_heuristic_run_rens": False, "mip_heuristic_run_rins": False,
                "mip_heuristic_run_root_reduced_cost": False}
# and a step that starts from the plan has a feasible answer already: feasibility jump, which
# looks for one, took half of every step's time (per one-model step, bench M 9.7 -> 5.0-7.0 ms,
# L 13.5-15.6 -> 7.1-7.2 ms, the same optimum on each of 441 steps)
START_OPTIONS = {**STEP_OPTIONS, "mip_heuristic_run_feasibility_jump": False}


# told each step's answer: the plan, the step's free columns (sorted), their new values, its models
Record = Callable[[FloatArray, IntArray, FloatArray, IntArray], None]


@dataclass
class LnsStats:
    steps: int = 0
    improved: int = 0
    seconds: float = 0.0


class Neighbourhoods:
    def __init__(self, model: MatrixModel, tables: PairTables, allowed: BoolArray, seed: int = 0) -> None:
        self.model = model
        self.tables = tables
        self.allowed = allowed
        a = model.arrays
        self.a = a
        self.csr = model.A.tocsr()
        self.csc = model.A.tocsc()
        self.x0 = model.blocks["x"][0]
        self.y0 = model.blocks["y"][0]
        self.u0 = model.blocks["u"][0]
        self.aux0, self.aux1 = model.blocks["aux"]
        # rows x policy variables alone: a pool's capacity row holds every pair on the pool, and
        # reading whole rows to find the few policy variables cost most of a step at XL
        self.aux_by_row = self.csc[:, self.aux0:self.aux1].tocsr()
        # a preferred rule's penalty, which may sit in a row of the rule's own flags beside no replica
        # count (a spread's missing domains, a models-per-pool limit)
        self.penalty = np.zeros(self.aux1 - self.aux0, dtype=bool)
        self.penalty[[col - self.aux0 for _, _, col in model.penalties]] = True
        self.rng = np.random.default_rng(seed)
        k0, k1 = model.blocks["k"]
        self.k_col = np.full(len(a.models), -1, dtype=np.int64)
        self.k_col[model.batch_models] = np.arange(k0, k1)
        self.dem_ptr = a.dem_ptr
        self.by_pool, self.pool_ptr = a.by_pool
        self.active_models = np.flatnonzero(np.diff(a.pair_ptr) > 0)

    @functools.cached_property
    def pure_rows(self) -> IntArray:
        """Rows over replicas alone, other than capacity (``matrix.pure_x_rows``), found once."""
        return pure_x_rows(self.model, self.csr)

    def columns(self, models: IntArray, every_pair: IntArray | None = None) -> IntArray:
        """Free columns for these models (``every_pair``: models that may use all their pairs, not
        only the allowed ones)."""
        a, m = self.a, self.model
        pairs = np.concatenate([np.arange(a.pair_ptr[i], a.pair_ptr[i + 1]) for i in models]) if len(models) else \
            np.zeros(0, dtype=np.int64)
        ok = self.allowed[pairs]
        if every_pair is not None and len(every_pair):
            ok |= np.isin(a.pair_model[pairs], every_pair)
        pairs = pairs[ok]
        cols = [self.x0 + pairs]
        r = self.tables.routes[pairs]
        cols.append(self.y0 + r[r >= 0])
        cols.append(m.gang_col[pairs][m.gang_col[pairs] >= 0])
        cols.append(m.churn_col[pairs][m.churn_col[pairs] >= 0])
        dems = np.concatenate([np.arange(self.dem_ptr[i], self.dem_ptr[i + 1]) for i in models]) if len(models) \
            else np.zeros(0, dtype=np.int64)
        cols.append(self.u0 + dems)
        k = self.k_col[models]
        cols.append(k[k >= 0])
        pools = np.unique(a.pair_pool[pairs])
        n = m.elastic_col[pools]
        cols.append(n[n >= 0])
        # policy variables in the rows these replicas appear in, and the penalties of the rows those
        # variables appear in: without them a re-plan could not pay a preferred spread's penalty,
        # found the rule "broken", and dropped a replica that kept it (157 USD/h against 73)
        rows = np.unique(self.csc[:, self.x0 + pairs].indices)
        aux = np.unique(self.aux_by_row[rows].indices)
        if len(aux):
            near = self.aux_by_row[np.unique(self.csc[:, self.aux0 + aux].indices)].indices
            aux = np.union1d(aux, near[self.penalty[near]])
        cols.append(self.aux0 + aux)
        return np.unique(np.concatenate(cols))

    # ------------------------------------------------------------ neighbourhood choices

    def idle_pool(self, v: FloatArray, size: int) -> IntArray:
        a, m = self.a, self.model
        x = v[self.x0:self.x0 + a.n_pairs]
        used = np.bincount(a.pair_pool, weights=x * a.pair_c, minlength=len(a.pools))
        el = np.flatnonzero(m.elastic_col >= 0)
        idle = np.zeros(len(a.pools))
        idle[el] = v[m.elastic_col[el]] * a.pool_per_node[el] - used[el]
        weights = np.maximum(idle, 0.0) * a.pool_price
        if weights.sum() <= 1e-9:
            return self.random(v, size)
        p = int(self.rng.choice(len(a.pools), p=weights / weights.sum()))
        return self._around_pool(p, x, size)

    def _around_pool(self, p: int, x: FloatArray, size: int) -> IntArray:
        a = self.a
        js = self.by_pool[self.pool_ptr[p]:self.pool_ptr[p + 1]]
        js = js[self.allowed[js]]
        on = np.unique(a.pair_model[js[x[js] > 0.5]])
        could = np.setdiff1d(np.unique(a.pair_model[js]), on)
        picked = on if len(on) <= size else self.rng.choice(on, size=size, replace=False)
        room = size - len(picked)
        if room > 0 and len(could):
            picked = np.concatenate([picked, self.rng.choice(could, size=min(room, len(could)), replace=False)])
        return np.unique(picked.astype(np.int64))

    def shared(self, v: FloatArray, size: int) -> IntArray:
        a = self.a
        x = v[self.x0:self.x0 + a.n_pairs]
        placed = np.flatnonzero(x > 0.5)
        if not len(placed):
            return self.random(v, size)
        j = int(self.rng.choice(placed))
        return self._around_pool(int(a.pair_pool[j]), x, size)

    def unmet_cost(self, v: FloatArray) -> FloatArray:
        """Per model, the price of the demand (and training / batch replicas) it leaves unserved."""
        a, m = self.a, self.model
        u0 = m.blocks["u"][0]
        n_dem = len(a.dem_model)
        lost = v[u0:u0 + n_dem] * m.cost[u0:u0 + n_dem]
        by_model: FloatArray = np.bincount(a.dem_model, weights=lost, minlength=len(a.models)).astype(np.float64)
        has_k = self.k_col >= 0
        by_model[has_k] += v[self.k_col[has_k]] * m.cost[self.k_col[has_k]]
        return by_model

    def unmet(self, v: FloatArray, size: int) -> IntArray:
        """The models leaving the most demand (by its price) unserved; else the shared-pool choice."""
        m = self.model
        by_model = self.unmet_cost(v)
        # a model no pool can run is unmet whatever the search does (its pools once an empty list)
        worst = np.intersect1d(np.flatnonzero(by_model > 1e-6), self.active_models)
        if not len(worst):
            return self.shared(v, size)
        worst = worst[np.argsort(-by_model[worst], kind="stable")][: max(1, size // 3)]
        # with the models on the pools they could use, so that capacity can move
        from placer.optimizer.repair import neighbours

        return neighbours(m, self, worst, v, limit=max(1, size - len(worst)))

    def random(self, v: FloatArray | None, size: int) -> IntArray:
        pool = self.active_models
        return np.sort(self.rng.choice(pool, size=min(size, len(pool)), replace=False)).astype(np.int64)


@dataclass
class Sub:
    """The MIP over the ``free`` columns with every other column fixed at its value: the rows the
    free columns touch, their bounds less what the fixed columns contribute."""

    rows: IntArray  # every row a free column touches
    sub: Any  # those rows x free columns
    lo: FloatArray
    hi: FloatArray

    def move(self, act: FloatArray, delta: FloatArray) -> None:
        """Row activities ``act`` after the free columns change by ``delta`` (in place)."""
        act[self.rows] += self.sub @ delta


def touched_rows(csc: Any, cols: IntArray) -> tuple[IntArray, Any]:
    """The rows that columns ``cols`` of the CSC matrix ``csc`` touch, and those rows x ``cols``.
    (scipy's row selection on a CSC matrix allocates a vector of every row per call: 3M at XL.)"""
    A_f = csc[:, cols]
    rows, inverse = np.unique(A_f.indices, return_inverse=True)
    sub = sp.csc_matrix((A_f.data, inverse.reshape(-1), A_f.indptr), shape=(len(rows), len(cols)))
    return rows, sub


def subproblem(model: MatrixModel, csc: Any, act: FloatArray, v: FloatArray, free: IntArray) -> Sub:
    rows, sub = touched_rows(csc, free)
    fixed = act[rows] - sub @ v[free]
    return Sub(rows, sub, model.row_lo[rows] - fixed, model.row_hi[rows] - fixed)


def columns_per_model(a: FleetArrays, hood: Neighbourhoods) -> float:
    """About how many columns one model brings to a step's MIP (its allowed pairs, with their
    routes): what sizes a step to its target of columns."""
    pairs_per_model = float(np.maximum(1, np.diff(a.pair_ptr)).mean())
    return max(1.0, pairs_per_model * float(hood.allowed.mean() if len(hood.allowed) else 0.0) * 2.5)


def improve(model: MatrixModel, hood: Neighbourhoods, v: FloatArray, deadline: float, *,
            target_cols: int = 300, step_limit: float = 0.5, stop: Callable[[float], bool] | None = None,
            patience: int = 24, min_gain: float = 1e-5) -> tuple[FloatArray, LnsStats]:
    """Run neighbourhood steps until ``deadline``, ``stop(objective)``, or ``patience`` steps in a
    row that gain less than ``min_gain`` (relative); returns the best plan."""
    stats = LnsStats()
    started = time.monotonic()
    a = model.arrays
    v = v.copy()
    act = model.A @ v
    cost = model.cost
    size = int(np.clip(target_cols / columns_per_model(a, hood), 2, 400))
    strategies = [hood.unmet, hood.idle_pool, hood.shared, hood.random]
    fails = 0
    idle_steps = 0
    while time.monotonic() < deadline - 0.05:
        if stop is not None and stop(float(cost @ v)):
            break
        if idle_steps >= patience:
            break
        pick = strategies[stats.steps % len(strategies)]
        models = pick(v, size)
        stats.steps += 1
        if not len(models):
            continue
        left = deadline - time.monotonic()
        if left < 0.05:
            break
        total = float(cost @ v)
        free, part, run = _prepare(model, hood, act, v, models, min(step_limit, left))
        sol = run()
        if sol.values is None:
            fails += 1
            continue
        old_cost, new_cost, _ = _commit(model, act, v, free, part, sol)
        if DEBUG:
            debug(f"    lns {stats.steps} {pick.__name__}: {len(models)} models, {sol.status} {sol.seconds:.2f}s, "
                  f"{old_cost:.2f} -> {new_cost:.2f}")
        stats.improved += new_cost < old_cost
        idle_steps = idle_steps + 1 if old_cost - new_cost < min_gain * max(1.0, abs(total)) else 0
        # adapt the neighbourhood size to how fast steps solve
        if sol.status == "OPTIMAL" and sol.seconds < 0.25 * step_limit:
            size = min(400, int(size * 1.25) + 1)
        elif sol.status != "OPTIMAL":
            size = max(2, int(size * 0.7))
    stats.seconds = time.monotonic() - started
    return v, stats


def _prepare(model: MatrixModel, hood: Neighbourhoods, act: FloatArray, v: FloatArray, models: IntArray,
             time_limit: float) -> tuple[IntArray, Sub, Callable[[], Solution]]:
    """The step that re-optimizes the columns of ``models`` around the rest, from the incumbent:
    its free columns, its sub-problem, and the HiGHS call (which may run on another thread)."""
    free = hood.columns(models)
    part = subproblem(model, hood.csc, act, v, free)
    lb, ub, cost, ints, start = model.lb[free], model.ub[free], model.cost[free], model.integer[free], v[free].copy()

    def run() -> Solution:
        return solve_arrays(part.sub, cost, lb, ub, part.lo, part.hi, ints, time_limit=time_limit, start=start,
                            gap=1e-6, options=START_OPTIONS)

    return free, part, run


def _commit(model: MatrixModel, act: FloatArray, v: FloatArray, free: IntArray, part: Sub,
            sol: Solution, record: Record | None = None, models: IntArray | None = None,
            ) -> tuple[float, float, bool]:
    """Take the step's answer into ``v`` (and the row activities ``act``) in place when it costs
    less than what the free columns hold now and keeps every row it touches within bounds (other
    steps may have moved the rest since it started). Returns the free columns' cost before and
    after (equal when it was not taken), and whether it was better but stale. ``record`` is told
    every answer, taken or not, with the step's ``models``."""
    cost = model.cost[free]
    old_cost = float(cost @ v[free])
    if sol.values is None:
        return old_cost, old_cost, False
    new = sol.values
    if record is not None and models is not None:
        record(v, free, new, models)
    new_cost = float(cost @ new)
    if new_cost >= old_cost - 1e-7 * max(1.0, abs(old_cost)):
        return old_cost, old_cost, False
    delta = new - v[free]
    rows = part.rows
    after = act[rows] + part.sub @ delta
    if np.any(rows_broken(part.sub, new, after, model.row_lo[rows], model.row_hi[rows])):
        return old_cost, old_cost, True
    act[rows] = after
    v[free] = new
    return old_cost, new_cost, False


def unused_capacity(model: MatrixModel, v: FloatArray) -> FloatArray:
    """Per model, the price of the replica capacity it pays for and routes no demand to: what
    whole replicas, spread over too many pools, cost beyond the demand they serve."""
    a = model.arrays
    x0, x1 = model.blocks["x"]
    y0, y1 = model.blocks["y"]
    x = v[x0:x1]
    served = np.bincount(a.route_pair, weights=v[y0:y1], minlength=a.n_pairs)
    need = np.where(a.pair_thr > 0, served / np.maximum(a.pair_thr, 1e-9), x)
    idle = np.maximum(0.0, x - need) * a.pair_c * a.pool_price[a.pair_pool]
    by_model: FloatArray = np.bincount(a.pair_model, weights=idle, minlength=len(a.models)).astype(np.float64)
    return by_model


def sweep(model: MatrixModel, hood: Neighbourhoods, v: FloatArray, deadline: float, *,
          step_limit: float = 0.2, workers: int = 1, min_gain: float = 1e-4,
          record: Record | None = None) -> tuple[FloatArray, LnsStats]:
    """Re-place the models one at a time around all the others, those paying most for replica
    capacity they do not use or for demand they leave unserved first: rounding leaves most models
    a fraction of a replica idle in each pool they use, and moving their demand so that fewer
    replicas serve it is a one-model decision, as is serving demand where capacity is left.

    ``workers`` threads solve at once (HiGHS lets go of the GIL); each answer is checked against
    the plan as it is when it comes back, and one made stale by another thread is solved once
    more. Passes over the models until ``deadline``, or until a pass gains less than
    ``min_gain`` (relative); returns the better plan. ``record``: told every step's answer."""
    stats = LnsStats()
    started = time.monotonic()
    if deadline - started < 0.1:
        return v, stats
    v = v.copy()
    act = model.A @ v
    queue: collections.deque[int] = collections.deque()
    retried: set[int] = set()
    gained = [math.inf]  # by the pass under way

    def refill() -> None:
        if gained[0] < min_gain * max(1.0, abs(float(model.cost @ v))):
            return
        waste = unused_capacity(model, v) + hood.unmet_cost(v)
        queue.extend(int(mi) for mi in np.argsort(-waste, kind="stable") if waste[mi] > 1e-9)
        retried.clear()
        gained[0] = 0.0

    lock = threading.Lock()
    failed: list[BaseException] = []

    def worker() -> None:
        try:
            steps()
        except BaseException as exc:  # re-raised on the calling thread (Ctrl-C lands there); the others stop
            failed.append(exc)

    def steps() -> None:
        while True:
            with lock:
                left = deadline - time.monotonic()
                if failed:
                    return
                if not queue:
                    refill()
                if not queue or left < 0.05:
                    return
                mi = queue.popleft()
                stats.steps += 1
                free, part, run = _prepare(model, hood, act, v, np.array([mi], dtype=np.int64),
                                           min(step_limit, left))
            sol = run()
            with lock:
                old_cost, new_cost, stale = _commit(model, act, v, free, part, sol, record,
                                                    np.array([mi], dtype=np.int64))
                stats.improved += new_cost < old_cost
                gained[0] += old_cost - new_cost
                if stale and mi not in retried:  # another thread took the capacity meanwhile: once more
                    retried.add(mi)
                    queue.appendleft(mi)

    threads = [threading.Thread(target=worker, name=f"placer-sweep-{i}") for i in range(1, max(1, workers))]
    for t in threads:
        t.start()
    worker()
    for t in threads:
        t.join()
    if failed:
        raise failed[0]
    stats.seconds = time.monotonic() - started
    return v, stats


def construct(model: MatrixModel, hood: Neighbourhoods, order: IntArray, deadline: float, *,
              start: FloatArray | None = None, target_cols: int = 150,
              step_limit: float = 0.3) -> FloatArray | None:
    """Build a feasible plan chunk by chunk: the models of each chunk are placed by a small MIP
    around the models placed before them (fix-and-optimize construction). ``order``: models in
    placement order; ``start``: values for columns outside every chunk (default: lower bounds)."""
    a = model.arrays
    v = np.where(np.isfinite(model.lb), model.lb, 0.0) if start is None else start.copy()
    act = model.A @ v
    cost = model.cost
    size = int(np.clip(target_cols / columns_per_model(a, hood), 1, 400))
    rescue = max(20, len(order))  # models that may free their neighbours to fit
    i = 0
    while i < len(order):
        if time.monotonic() > deadline:
            return None
        models = order[i:i + size]
        advance = len(models)
        free = hood.columns(models)
        part = subproblem(model, hood.csc, act, v, free)
        left = deadline - time.monotonic()
        sol = solve_arrays(part.sub, cost[free], model.lb[free], model.ub[free], part.lo, part.hi, model.integer[free],
                           time_limit=min(step_limit, max(0.05, left)), gap=1e-2, options=STEP_OPTIONS)
        if DEBUG:
            debug(f"    construct {i}/{len(order)}: {len(models)} models, {len(free)} cols, {len(part.rows)} rows, "
                  f"{sol.status} {sol.seconds:.2f}s")
        if sol.values is None:
            if size > 1:
                size = max(1, size // 2)
                continue
            if DEBUG:
                from placer.optimizer.repair import broken_rows

                xs = free[(free >= model.blocks["x"][0]) & (free < model.blocks["x"][1])]
                bad = broken_rows(model, hood, v, free, 2.0, fixed_cols=xs)
                debug("    construct: alone it does not fit:", [model.row_names.get(int(r), int(r)) for r in bad[:6]])
            if not rescue:
                return None
            # alone it does not fit: re-decide the models holding the capacity it could use as well
            from placer.optimizer.repair import neighbours

            stuck = models
            models = neighbours(model, hood, models, v, limit=30)
            free = hood.columns(models, every_pair=stuck)
            part = subproblem(model, hood.csc, act, v, free)
            sol = solve_arrays(part.sub, cost[free], model.lb[free], model.ub[free], part.lo, part.hi, model.integer[free],
                               time_limit=min(3 * step_limit, max(0.05, deadline - time.monotonic())), gap=1e-2,
                               options=STEP_OPTIONS)
            if sol.values is None:
                return None
            rescue -= 1
            size = 1
            advance = 1
        new = sol.values
        part.move(act, new - v[free])
        v[free] = new
        i += advance
        if sol.status == "OPTIMAL" and sol.seconds < 0.2 * step_limit:
            size = min(400, int(size * 1.3) + 1)
        elif sol.status != "OPTIMAL":
            size = max(1, int(size * 0.7))
    return v


def solve_free(model: MatrixModel, csc: Any, v: FloatArray, free: IntArray, time_limit: float, *,
               act: FloatArray | None = None, start: bool = False, gap: float = 1e-6,
               options: dict[str, Any] | None = None) -> tuple[FloatArray | None, str]:
    """Re-optimize the ``free`` columns with every other column fixed at ``v``; returns the new
    values of the free columns (or None) and HiGHS' status."""
    # rows that no free column touches must already hold
    part = subproblem(model, csc, csc @ v if act is None else act, v, free)
    sol = solve_arrays(part.sub, model.cost[free], model.lb[free], model.ub[free], part.lo, part.hi, model.integer[free],
                       time_limit=time_limit, start=v[free] if start else None, gap=gap,
                       options=STEP_OPTIONS if options is None else options)
    if sol.values is None:
        return None, sol.status
    return sol.values, sol.status
