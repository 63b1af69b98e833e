"""The placement MIP of ``placer.optimizer.model`` in matrix form (numpy / scipy.sparse).

The same variables, constraints and objective as ``MipBuilder`` (see its docstring for
the math), built with array operations so that millions of columns take seconds:

    columns  x[pair] | y[route] | n[elastic pool] | u[demand entry] | k[batch model]
             | s[pair running now] | g[gang pair] | aux[policy variables]
    rows     capacity[pool], serve[pair with routes], demand[entry], min/max replicas,
             batch replicas, gang, churn, and every policy's rows

Two exact simplifications: churn of a pair that runs nothing now is charged on x itself
(s = x there), and serve rows exist only for pairs with routes. Policy rules add their
rows through ``placer.policy.ModelBuilder``, implemented here with lazy linear
expressions over column indices (``Lin``), so the rules stay opaque behaviours.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp

from placer.fleet import Fleet, Model, Policy, Pool
from placer.optimizer.arrays import BoolArray, FleetArrays, FloatArray, IntArray, spans
from placer.policy import Rules, behaviour

T = TypeVar("T")

TIE_BREAK = 1e-6
INF = float("inf")


# ---------------------------------------------------------------- lazy linear expressions


class Lin:
    """A linear expression over model columns, built lazily so that ``a + b + c + ...`` over
    thousands of terms stays linear in time (a tree, flattened once when a row is added)."""

    __slots__ = ("a", "b", "kind")

    def __init__(self, kind: str, a: Any, b: Any = None) -> None:
        # "leaf" (idx array, coef array) | "one" (column, coef) | "sum" (left, right) | "scale" (child, factor)
        # | "const" (value)
        self.kind = kind
        self.a = a
        self.b = b

    @staticmethod
    def leaf(idx: Any, coef: Any) -> Lin:
        return Lin("leaf", np.asarray(idx, dtype=np.int64).reshape(-1), np.asarray(coef, dtype=float).reshape(-1))

    @staticmethod
    def wrap(x: Any) -> Lin:
        if isinstance(x, Lin):
            return x
        if isinstance(x, int | float | np.integer | np.floating):
            return Lin("const", float(x))
        raise TypeError(f"cannot use {type(x).__name__} in a linear expression")

    def __add__(self, other: Any) -> Lin:
        return Lin("sum", self, Lin.wrap(other))

    __radd__ = __add__

    def __sub__(self, other: Any) -> Lin:
        return Lin("sum", self, Lin("scale", Lin.wrap(other), -1.0))

    def __rsub__(self, other: Any) -> Lin:
        return Lin("sum", Lin.wrap(other), Lin("scale", self, -1.0))

    def __neg__(self) -> Lin:
        return Lin("scale", self, -1.0)

    def __mul__(self, k: Any) -> Lin:
        if isinstance(k, Lin):
            raise TypeError("a product of two expressions is not linear")
        return Lin("scale", self, float(k))

    __rmul__ = __mul__

    def __le__(self, other: Any) -> Row:
        return Row(self - other, -INF, 0.0)

    def __ge__(self, other: Any) -> Row:
        return Row(self - other, 0.0, INF)

    def flatten(self) -> tuple[IntArray, FloatArray, float]:
        idx: list[IntArray] = []
        coef: list[FloatArray] = []
        one_idx: list[int] = []
        one_coef: list[float] = []
        const = 0.0
        stack: list[tuple[Lin, float]] = [(self, 1.0)]
        while stack:
            node, f = stack.pop()
            if node.kind == "one":  # a single column, as Python numbers
                one_idx.append(node.a)
                one_coef.append(node.b * f)
            elif node.kind == "leaf":
                if len(node.a):
                    idx.append(node.a)
                    coef.append(node.b * f if f != 1.0 else node.b)
            elif node.kind == "sum":
                stack.append((node.a, f))
                stack.append((node.b, f))
            elif node.kind == "scale":
                if node.b != 0.0:
                    stack.append((node.a, f * node.b))
            else:
                const += f * node.a
        if one_idx:
            idx.append(np.array(one_idx, dtype=np.int64))
            coef.append(np.array(one_coef, dtype=float))
        if not idx:
            return np.zeros(0, dtype=np.int64), np.zeros(0), const
        if len(idx) == 1:
            return idx[0], coef[0], const
        return np.concatenate(idx), np.concatenate(coef), const


@dataclass
class Row:
    expr: Lin
    lo: float
    hi: float


# a row holds when its activity is within this share of the size of its terms (at least 1) of its
# bounds: HiGHS answers continuous columns within its own tolerances, and a row such as "rate served
# <= capacity a replica x replicas" sums terms of thousands to about 0, so a share of the sum would
# refuse an answer 2e-6 over on terms of 5,461 (seen at M: a whole master's plan refused for it)
ROW_TOLERANCE = 1e-6


def rows_broken(A: Any, v: FloatArray, act: FloatArray, lo: FloatArray, hi: FloatArray) -> BoolArray:
    """Which rows break their bounds ``lo``..``hi``: ``act`` is each row's activity, of which
    ``A @ v`` is the part of the columns ``A`` holds (all of it, or the columns a step changes, the
    rest fixed). A row counts as broken when it is off by more than ROW_TOLERANCE of the size of
    its terms: |A| @ |v|, plus the fixed part's size."""
    out: BoolArray = (act < lo - ROW_TOLERANCE * np.maximum(1.0, np.abs(act))) | \
        (act > hi + ROW_TOLERANCE * np.maximum(1.0, np.abs(act)))
    idx = np.flatnonzero(out)
    if len(idx):  # off by more than a share of the sum: measure against the terms, on those rows alone
        sub = A[idx]
        mine = sub @ v
        size = np.maximum(1.0, abs(sub) @ np.abs(v) + np.abs(act[idx] - mine))
        out[idx] = (act[idx] < lo[idx] - ROW_TOLERANCE * size) | (act[idx] > hi[idx] + ROW_TOLERANCE * size)
    return out


# ---------------------------------------------------------------- the model


def pure_x_rows(model: MatrixModel, csr: Any = None) -> IntArray:
    """Rows whose columns are all replica counts, other than capacity rows (``csr``: the model's
    matrix in CSR form, when the caller has it)."""
    x0, x1 = model.blocks["x"]
    csr = model.A.tocsr() if csr is None else csr
    outside = (csr.indices < x0) | (csr.indices >= x1)
    # summed from the rows with entries alone (an empty last row's start is past the end, where
    # reduceat fails); an empty row counts as not pure
    nonempty = np.diff(csr.indptr) > 0
    n_out = np.ones(len(nonempty), dtype=np.int64)
    if csr.nnz:
        n_out[nonempty] = np.add.reduceat(outside, csr.indptr[:-1][nonempty], dtype=np.int64)  # no int copy of it
    pure = n_out == 0
    cap = model.capacity_row
    if cap is not None:
        pure[cap[cap >= 0]] = False
    return np.flatnonzero(pure)


@dataclass
class MatrixModel:
    arrays: FleetArrays
    cost: FloatArray
    lb: FloatArray
    ub: FloatArray
    integer: BoolArray
    A: sp.csc_matrix
    row_lo: FloatArray
    row_hi: FloatArray
    blocks: dict[str, tuple[int, int]]
    serve_row: IntArray  # row of each pair's serve constraint (-1: pair has no routes)
    elastic_col: IntArray  # n column of each pool (-1: fixed)
    churn_col: IntArray  # s column of each pair (-1: nothing runs there now)
    gang_col: IntArray  # g column of each pair (-1: none)
    capacity_row: IntArray | None = None  # capacity row of each pool (-1: a fixed pool without pairs)
    demand_row0: int = 0  # first demand row (one per demand entry, in order)
    batch_row0: int = -1  # first training / batch replicas row (one per active batch model, in order)
    batch_models: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # model of each k column
    current: FloatArray = field(default_factory=lambda: np.zeros(0))  # replicas running now, per pair
    # where replicas run now, per pair, a rollout's included (which ``current``, for churn, leaves
    # out): what a re-plan searches around and starts from; ``current`` where none is given
    placed: FloatArray = field(default_factory=lambda: np.zeros(0))
    penalties: list[tuple[Policy, str, int]] = field(default_factory=list)
    row_names: dict[int, str] = field(default_factory=dict)
    cut_rows: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # rules' valid inequalities

    @property
    def n_cols(self) -> int:
        return len(self.cost)

    @property
    def unserved_usd(self) -> float:
        """USD/h of the demand no plan can serve (``arrays.dem_excess``), which the model leaves
        out: a plan's objective in the model plus this is its cost, and so is a bound's."""
        a = self.arrays
        if not np.any(a.dem_excess > 0):
            return 0.0
        factor = np.array([m.priority_factor for m in a.models])[a.dem_model]
        return float(a.fleet.settings.objective.unmet_usd_per_rate * np.sum(factor * a.dem_excess))

    @property
    def n_rows(self) -> int:
        return len(self.row_lo)

    def block(self, name: str) -> slice:
        a, b = self.blocks[name]
        return slice(a, b)

    def with_pairs(self, pairs: BoolArray) -> BoolArray:
        """Per column, whether a model restricted to the given pairs keeps it: every column of
        those pairs (replicas, their routes, gang and churn columns) and every column that
        belongs to no pair."""
        a = self.arrays
        keep = np.ones(self.n_cols, dtype=bool)
        x0, x1 = self.blocks["x"]
        y0, y1 = self.blocks["y"]
        keep[x0:x1] = pairs
        keep[y0:y1] = pairs[a.route_pair]
        g = self.gang_col >= 0
        keep[self.gang_col[g]] = pairs[g]
        s = self.churn_col >= 0
        keep[self.churn_col[s]] = pairs[s]
        return keep

    def rounded(self, values: FloatArray, cols: IntArray | None = None) -> FloatArray:
        """A copy of ``values`` (of the columns ``cols``; default every column) with the integer
        columns rounded (a plan from anywhere; ``highs.solve_arrays`` rounds its MIP answers itself)."""
        out: FloatArray = np.array(values, dtype=np.float64)
        ints = self.integer if cols is None else self.integer[cols]
        out[ints] = np.round(out[ints])
        return out


class _CachedFleet:
    """The fleet as rules see it, with selector results memoized (rules ask per model)."""

    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet
        self._pools: dict[int, tuple[Any, list[Pool]]] = {}
        self._models: dict[int, tuple[Any, list[Model]]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fleet, name)

    def pools_of(self, selector: Any) -> list[Pool]:
        return _memo(self._pools, selector, self._fleet.pools_of)

    def models_of(self, selector: Any) -> list[Model]:
        return _memo(self._models, selector, self._fleet.models_of)


def _memo(cache: dict[int, tuple[Any, list[T]]], selector: Any, read: Callable[[Any], list[T]]) -> list[T]:
    """``read(selector)``, kept in ``cache`` by the selector's identity (the selector kept beside it, so
    that another object given the same id once the first is gone is read anew)."""
    hit = cache.get(id(selector))
    if hit is None or hit[0] is not selector:
        hit = (selector, read(selector))
        cache[id(selector)] = hit
    return hit[1]


class _Builder:
    """Accumulates columns and rows; implements ``placer.policy.ModelBuilder`` for the rules."""

    def __init__(self, arrays: FleetArrays) -> None:
        self.arrays = arrays
        self.fleet = _CachedFleet(arrays.fleet)
        self.n_cols = 0
        self.col_parts: list[tuple[FloatArray, FloatArray, FloatArray, BoolArray]] = []
        self.blocks: dict[str, tuple[int, int]] = {}
        self.rows_i: list[IntArray] = []
        self.rows_j: list[IntArray] = []
        self.rows_v: list[FloatArray] = []
        self.row_lo: list[FloatArray] = []
        self.row_hi: list[FloatArray] = []
        self.n_rows = 0
        self.penalties: list[tuple[Policy, str, int]] = []
        self.row_names: dict[int, str] = {}
        self.cut_rows: list[int] = []
        self._memos: dict[tuple[str, int], tuple[Any, Any]] = {}
        self.x0 = 0
        self.elastic_col = np.full(len(arrays.pools), -1, dtype=np.int64)
        self._pair_maps: dict[str, dict[str, int]] = {}
        # single columns and rows added by rules, gathered in lists and stacked once
        self._aux_cost: list[float] = []
        self._aux_ub: list[float] = []
        self._aux_int: list[bool] = []
        self._row_idx: list[IntArray] = []  # the rules' rows, in chunks of one or more rows
        self._row_coef: list[FloatArray] = []
        self._row_lens: list[IntArray] = []  # nonzeros of each row of each chunk
        self._row_lo: list[float] = []
        self._row_hi: list[float] = []

    # ------------------------------------------------------------ columns and rows

    def add_cols(self, name: str, cost: Any, lb: Any, ub: Any, integer: Any) -> int:
        cost = np.asarray(cost, dtype=float).reshape(-1)
        n = len(cost)
        start = self.n_cols
        self.col_parts.append((
            cost,
            np.broadcast_to(np.asarray(lb, dtype=float), (n,)).copy(),
            np.broadcast_to(np.asarray(ub, dtype=float), (n,)).copy(),
            np.broadcast_to(np.asarray(integer, dtype=bool), (n,)).copy(),
        ))
        self.n_cols += n
        if name in self.blocks:
            a, b = self.blocks[name]
            assert b == start
            self.blocks[name] = (a, start + n)
        else:
            self.blocks[name] = (start, start + n)
        return start

    def columns(self) -> tuple[FloatArray, FloatArray, FloatArray, BoolArray]:
        """Cost, lower and upper bound, integrality of every column added so far."""
        return (np.concatenate([p[0] for p in self.col_parts]), np.concatenate([p[1] for p in self.col_parts]),
                np.concatenate([p[2] for p in self.col_parts]), np.concatenate([p[3] for p in self.col_parts]))

    def add_rows(self, i: IntArray, j: IntArray, v: FloatArray, lo: Any, hi: Any, count: int) -> int:
        """Rows ``n_rows .. n_rows+count``; ``i`` counts from 0 within them."""
        start = self.n_rows
        # 32-bit indices (what scipy keeps below 2**31 nonzeros): half the bytes to gather and sort
        self.rows_i.append((np.asarray(i, dtype=np.int64) + start).astype(np.int32))
        self.rows_j.append(np.asarray(j, dtype=np.int32))
        self.rows_v.append(np.asarray(v, dtype=float))
        self.row_lo.append(np.broadcast_to(np.asarray(lo, dtype=float), (count,)).copy())
        self.row_hi.append(np.broadcast_to(np.asarray(hi, dtype=float), (count,)).copy())
        self.n_rows += count
        return start

    # ------------------------------------------------------------ ModelBuilder protocol

    def _memo(self, kind: str, obj: Any, make: Callable[[], Any]) -> Any:
        """``make()``, once per kind and object the rules pass (by identity: rules ask per model)."""
        hit = self._memos.get((kind, id(obj)))
        if hit is None or hit[0] is not obj:
            hit = (obj, make())
            self._memos[(kind, id(obj))] = hit
        return hit[1]

    def _pool_set(self, pools: Sequence[Pool]) -> set[str]:
        names: set[str] = self._memo("names", pools, lambda: {p.name for p in pools})
        return names

    def _pool_mask(self, pools: Sequence[Pool]) -> BoolArray:
        def make() -> BoolArray:
            mask = np.zeros(len(self.arrays.pools), dtype=bool)
            index = self.arrays.pool_index
            mask[[index[p.name] for p in pools if p.name in index]] = True
            return mask

        mask: BoolArray = self._memo("mask", pools, make)
        return mask

    def _pairs_on(self, model: str, pools: Sequence[Pool], a: FleetArrays | None = None) -> IntArray:
        a = a if a is not None else self.arrays
        mi = a.model_index.get(model)
        if mi is None:
            return np.zeros(0, dtype=np.int64)
        lo, hi = int(a.pair_ptr[mi]), int(a.pair_ptr[mi + 1])
        return lo + np.flatnonzero(self._pool_mask(pools)[a.pair_pool[lo:hi]])

    def replicas_on(self, model: str, pools: Sequence[Pool]) -> Any:
        js = self._pairs_on(model, pools)
        return Lin("leaf", self.x0 + js, np.ones(len(js))) if len(js) else 0

    def max_replicas_on(self, model: str, pools: Sequence[Pool]) -> int:
        # on arrays restricted to some pairs, over every pair (the full model's big-M terms)
        a = self.arrays.parent if self.arrays.parent is not None else self.arrays
        return int(a.pair_max[self._pairs_on(model, pools, a)].sum())

    def _group_of(self, groups: Sequence[Sequence[Pool]]) -> IntArray:
        """Group index of each pool (-1: in none)."""
        def make() -> IntArray:
            gid = np.full(len(self.arrays.pools), -1, dtype=np.int64)
            index = self.arrays.pool_index
            for g, members in enumerate(groups):
                for pool in members:
                    i = index.get(pool.name)
                    if i is not None and gid[i] >= 0:
                        raise ValueError(f"uses(): pool {pool.name} is in two groups")
                    if i is not None:
                        gid[i] = g
            return gid

        gid: IntArray = self._memo("groups", groups, make)
        return gid

    def uses(self, model: str, groups: Sequence[Sequence[Pool]], names: Sequence[str]) -> list[Any]:
        out: list[Any] = [None] * len(groups)
        a = self.arrays
        mi = a.model_index.get(model)
        if mi is None:
            return out
        lo, hi = int(a.pair_ptr[mi]), int(a.pair_ptr[mi + 1])
        g = self._group_of(groups)[a.pair_pool[lo:hi]]
        js = lo + np.flatnonzero(g >= 0)
        g = g[g >= 0]
        order = np.argsort(g, kind="stable")
        js, g = js[order], g[order]
        present, starts = np.unique(g, return_index=True)
        n = len(present)
        if not n:
            return out
        # one row per group, all at once: [z_k, x_j of the group...] with coefficients [1, -1...]
        z0 = self._aux(0.0, 1.0, True)
        self._aux_cost.extend([0.0] * (n - 1))
        self._aux_ub.extend([1.0] * (n - 1))
        self._aux_int.extend([True] * (n - 1))
        at_z = starts + np.arange(n)
        is_z = np.zeros(len(js) + n, dtype=bool)
        is_z[at_z] = True
        idx = np.empty(len(is_z), dtype=np.int64)
        idx[is_z] = z0 + np.arange(n)
        idx[~is_z] = self.x0 + js
        coef = np.where(is_z, 1.0, -1.0)
        r0 = self.n_rows + len(self._row_lo)
        self._row_idx.append(idx)
        self._row_coef.append(coef)
        self._row_lens.append(np.diff(np.append(at_z, len(idx))))
        self._row_lo.extend([-INF] * n)
        self._row_hi.extend([0.0] * n)
        for i, k in enumerate(present.tolist()):
            self.row_names[r0 + i] = names[k]
            out[k] = Lin("one", z0 + i, 1.0)
        return out

    def pairs(self, models: Sequence[Model], pools: Sequence[Pool]) -> list[tuple[str, str]]:
        names = self._pool_set(pools)
        a = self.arrays
        out = []
        for m in models:
            mi = a.model_index.get(m.name)
            if mi is None:
                continue
            lo, hi = int(a.pair_ptr[mi]), int(a.pair_ptr[mi + 1])
            for p in a.pair_pool[lo:hi].tolist():
                name = a.pools[p].name
                if name in names:
                    out.append((m.name, name))
        return out

    def _pair(self, model: str, pool: str) -> int | None:
        table = self._pair_maps.get(model)
        if table is None:
            a = self.arrays
            mi = a.model_index.get(model)
            if mi is None:
                return None
            lo, hi = int(a.pair_ptr[mi]), int(a.pair_ptr[mi + 1])
            table = {a.pools[p].name: lo + k for k, p in enumerate(a.pair_pool[lo:hi].tolist())}
            self._pair_maps[model] = table
        return table.get(pool)

    def replicas(self, model: str, pool: str) -> Any:
        j = self._pair(model, pool)
        if j is None:
            return 0
        return Lin("one", self.x0 + j, 1.0)

    def total_replicas(self, model: str) -> Any:
        a = self.arrays
        mi = a.model_index[model]
        lo, hi = int(a.pair_ptr[mi]), int(a.pair_ptr[mi + 1])
        return Lin("leaf", np.arange(self.x0 + lo, self.x0 + hi, dtype=np.int64), np.ones(hi - lo))

    def least_replicas(self, model: str) -> int:
        a = self.arrays
        mi = a.model_index.get(model)
        if mi is None or model in a.retired or not a.models[mi].inference:
            return 0
        return int(a.models[mi].spec.min_replicas or 0)  # build_matrix adds its row for every such model

    def unmet_beyond(self, model: str, replicas: int) -> tuple[Any, float]:
        a = self.arrays
        mi = a.model_index.get(model)
        if mi is None or "u" not in self.blocks:
            return 0, 0.0
        d0, d1 = int(a.dem_ptr[mi]), int(a.dem_ptr[mi + 1])
        if d1 == d0:
            return 0, 0.0
        # on arrays restricted to some pairs, over every pair (as the full model's rows are)
        full = a.parent if a.parent is not None else a
        fm = full.model_index[model]
        thr = full.pair_thr[full.pair_ptr[fm]:full.pair_ptr[fm + 1]]
        fastest = float(thr.max()) if len(thr) else 0.0
        short = float(a.dem_rate[d0:d1].sum()) - replicas * fastest
        u0 = self.blocks["u"][0]
        return Lin("leaf", u0 + np.arange(d0, d1, dtype=np.int64), np.ones(d1 - d0)), max(0.0, short)

    def gpus_used(self, pool: str) -> Any:
        a = self.arrays
        pi = a.pool_index[pool]
        by_pool, ptr = a.by_pool  # sorted on first use (a model of columns only never sorts)
        js = by_pool[ptr[pi]:ptr[pi + 1]]
        return Lin("leaf", self.x0 + js, a.pair_c[js].astype(float))

    def gpus_capacity(self, pool: str) -> Any:
        a = self.arrays
        pi = a.pool_index[pool]
        if self.elastic_col[pi] >= 0:
            return Lin("one", int(self.elastic_col[pi]), float(a.pool_per_node[pi]))
        return int(a.pool_min_nodes[pi] * a.pool_per_node[pi])

    def compute_usd(self, model: str, pool: str) -> Any:
        j = self._pair(model, pool)
        if j is None:
            return 0
        a = self.arrays
        return Lin("one", self.x0 + j, float(a.pool_price[a.pair_pool[j]] * a.pair_c[j]))

    def max_replicas(self, model: str, pool: str) -> int:
        j = self._pair(model, pool)
        return int(self.arrays.pair_max[j]) if j is not None else 0

    def _aux(self, cost: float, ub: float, integer: bool) -> int:
        col = self.blocks["aux"][1] + len(self._aux_cost)
        self._aux_cost.append(cost)
        self._aux_ub.append(ub)
        self._aux_int.append(integer)
        return col

    def _row(self, idx: IntArray, coef: FloatArray, lo: float, hi: float) -> int:
        r = self.n_rows + len(self._row_lo)
        self._row_idx.append(idx)
        self._row_coef.append(coef)
        self._row_lens.append(np.array([len(idx)], dtype=np.int64))
        self._row_lo.append(lo)
        self._row_hi.append(hi)
        return r

    def finish_rules(self) -> None:
        if self._aux_cost:
            self.add_cols("aux", self._aux_cost, 0.0, self._aux_ub, self._aux_int)
            self._aux_cost, self._aux_ub, self._aux_int = [], [], []
        if self._row_lo:
            n = len(self._row_lo)
            lens = np.concatenate(self._row_lens)
            idx = np.concatenate(self._row_idx) if lens.sum() else np.zeros(0, dtype=np.int64)
            coef = np.concatenate(self._row_coef) if lens.sum() else np.zeros(0)
            self.add_rows(np.repeat(np.arange(n), lens), idx, coef, self._row_lo, self._row_hi, n)
            self._row_idx, self._row_coef, self._row_lens, self._row_lo, self._row_hi = [], [], [], [], []

    def new_bool(self, name: str) -> Any:
        return Lin("one", self._aux(0.0, 1.0, True), 1.0)

    def add(self, constraint: Any, name: str) -> None:
        if isinstance(constraint, bool | np.bool_):
            if not constraint:  # trivially infeasible, but named
                self.row_names[self._row(np.zeros(0, dtype=np.int64), np.zeros(0), 1.0, INF)] = name
            return
        if not isinstance(constraint, Row):
            raise TypeError(f"{name}: not a linear constraint: {constraint!r}")
        idx, coef, const = constraint.expr.flatten()
        self.row_names[self._row(idx, coef, constraint.lo - const, constraint.hi - const)] = name

    def cut(self, constraint: Any, name: str) -> None:
        before = self.n_rows + len(self._row_lo)
        self.add(constraint, name)
        self.cut_rows.extend(range(before, self.n_rows + len(self._row_lo)))

    def at_most(self, policy: Policy, lhs: Any, rhs: Any, what: str) -> None:
        if policy.required:
            self.add(Lin.wrap(lhs) <= rhs, f"{policy.name}:{what}")
            return
        col = self._aux(policy.penalty, INF, False)
        self.add(Lin.wrap(lhs) - Lin("one", col, 1.0) <= rhs, f"{policy.name}:{what}")
        self.penalties.append((policy, what, col))


def cover_cuts(b: _Builder, a: FleetArrays, routed: BoolArray, u0: int, per_group: int = 4) -> None:
    """Valid inequalities that integer replicas imply: rounding cuts on the demand a model must cover.

    Summing a model's serve and demand rows over the pairs that can serve a set of its demand
    entries gives  sum_p thr_p x_p + sum_d u_d >= rate  (x integer, u >= 0). Divided by the
    largest throughput T, its mixed-integer rounding (with f the fractional part of rate/T,
    f_p that of thr_p/T) is

        sum_p (floor(thr_p/T) + min(f_p, f)/f) x_p  +  sum_d u_d / (T f)  >=  ceil(rate/T),

    which says: buy whole replicas for the demand, or leave the fraction unserved. Cuts for a
    model's demand as a whole and, when it has several entries, for each entry; for each, one
    with T the largest throughput and more with T the other throughput levels of its pairs
    (up to ``per_group``): the LP splits demand over GPU types, and each level closes part of it.
    Built with array operations, in the order a loop over the groups would add them (the same
    matrix at every bench size; XL: 1.5 s, against 2.9 s one group at a time).
    """
    rate, pair_g, pair_j, dem_g, dem_d = _cover_groups(a, routed)
    n_g = len(rate)
    thr = a.pair_thr[pair_j]
    top = np.full(n_g, -np.inf)
    np.maximum.at(top, pair_g, thr)
    # each group's throughput levels (positive, distinct) and how many of its pairs have each
    pos = thr > 0
    if not pos.any():  # no demand any pair serves (say, no model with demand): no cut
        return
    lg, lt = pair_g[pos], thr[pos]
    order = np.lexsort((lt, lg))
    lg, lt = lg[order], lt[order]
    starts = np.flatnonzero(np.r_[True, (lg[1:] != lg[:-1]) | (lt[1:] != lt[:-1])])
    counts = np.diff(np.r_[starts, len(lg)])
    lg, lt = lg[starts], lt[starts]
    # per group: the largest level first, then the most common others (ties: the smaller first)
    order = np.lexsort((lt, -counts, lt != top[lg], lg))
    lg, lt = lg[order], lt[order]
    rank = np.arange(len(lg)) - np.searchsorted(lg, lg)
    take = (rank < max(1, per_group)) & (rate[lg] > 0)
    g, T = lg[take], lt[take]
    q = rate[g] / T
    f = q - np.floor(q)
    whole = (f < 1e-6) | (f > 1 - 1e-6)  # rate/T whole: the rounding is the summed row itself
    g, T, q, f = g[~whole], T[~whole], q[~whole], f[~whole]
    # the cuts' entries: each cut's pairs, then its demand entries
    pp = np.searchsorted(pair_g, np.arange(n_g + 1))
    dp = np.searchsorted(dem_g, np.arange(n_g + 1))
    cut_p, at_p = spans(pp[g], pp[g + 1])
    cut_d, at_d = spans(dp[g], dp[g + 1])
    ap = a.pair_thr[pair_j[at_p]] / T[cut_p]
    fp = ap - np.floor(ap)
    # laid out cut by cut: its pairs' entries, then its demand entries'
    n_p, n_d = pp[g + 1] - pp[g], dp[g + 1] - dp[g]
    first = np.cumsum(n_p + n_d) - (n_p + n_d)
    put_p = first[cut_p] + at_p - pp[g][cut_p]
    put_d = first[cut_d] + n_p[cut_d] + at_d - dp[g][cut_d]
    cols = np.empty(len(put_p) + len(put_d), dtype=np.int64)
    vals = np.empty(len(cols))
    cols[put_p], cols[put_d] = b.x0 + pair_j[at_p], u0 + dem_d[at_d]
    vals[put_p] = np.floor(ap) + np.minimum(fp, f[cut_p]) / f[cut_p]
    vals[put_d] = 1.0 / (T[cut_d] * f[cut_d])
    if len(g):
        b.add_rows(np.repeat(np.arange(len(g)), n_p + n_d), cols, vals, np.ceil(q), INF, len(g))


def _cover_groups(a: FleetArrays, routed: BoolArray) -> tuple[FloatArray, IntArray, IntArray, IntArray, IntArray]:
    """The demand groups of ``cover_cuts``, numbered model by model: each model's whole demand
    over its routed pairs, then (with several entries) each entry over its routes' pairs.
    Returns each group's rate, and its pairs and its demand entries as (group, index) pairs
    sorted by group, then index."""
    n_models, n_dem = len(a.models), len(a.dem_model)
    dem_ptr = a.dem_ptr
    per_model = np.diff(dem_ptr)
    routes = np.diff(a.route_ptr)
    whole = np.flatnonzero((per_model > 0) & (np.bincount(a.pair_model[routed], minlength=n_models) > 0))
    entry = np.flatnonzero((per_model[a.dem_model] > 1) & (routes > 0))
    # number the groups in model order, a model's whole demand before its entries
    key_model = np.concatenate([whole, a.dem_model[entry]])
    key_entry = np.concatenate([np.full(len(whole), -1), entry])
    gid = np.empty(len(key_model), dtype=np.int64)
    gid[np.lexsort((key_entry, key_model))] = np.arange(len(key_model))
    g_whole, g_entry = gid[:len(whole)], gid[len(whole):]
    rate = np.empty(len(gid))
    rate[g_whole] = np.bincount(a.dem_model, weights=a.dem_rate, minlength=n_models)[whole]
    rate[g_entry] = a.dem_rate[entry]
    # pairs: a model's routed ones; an entry's, from its routes, which ``build_arrays`` sorts by
    # (entry, pool), one per pool: each pair once and in order. Both parts are sorted by group,
    # so the stable sort by group merges two sorted runs.
    of_model = np.full(n_models, -1, dtype=np.int64)
    of_model[whole] = g_whole
    of_entry = np.full(n_dem, -1, dtype=np.int64)
    of_entry[entry] = g_entry
    mine = np.flatnonzero(routed & (of_model[a.pair_model] >= 0))
    route_g = of_entry[np.repeat(np.arange(n_dem), routes)]
    pair_g = np.concatenate([of_model[a.pair_model[mine]], route_g[route_g >= 0]])
    pair_j = np.concatenate([mine, a.route_pair[route_g >= 0]])
    order = np.argsort(pair_g, kind="stable")
    # demand entries: a model's all of them; an entry itself
    _, of_whole = spans(dem_ptr[whole], dem_ptr[whole + 1])
    dem_g = np.concatenate([np.repeat(g_whole, per_model[whole]), g_entry])
    dem_d = np.concatenate([of_whole, entry])
    by_g = np.argsort(dem_g, kind="stable")
    return rate, pair_g[order], pair_j[order], dem_g[by_g], dem_d[by_g]


def build_matrix(arrays: FleetArrays, rules: Rules, current: Mapping[tuple[str, str], int],
                 cuts: bool = True, cut_levels: int = 4, columns_only: bool = False,
                 placed: Mapping[tuple[str, str], int] | None = None) -> MatrixModel:
    """The full placement model (every eligible pair and route) as one sparse matrix; ``cuts``
    adds valid inequalities that tighten its LP relaxation (``cover_cuts``). ``columns_only``: the
    columns' costs and bounds without a row (what choosing pairs by cost needs, in a fifth of the time).
    ``placed``: where replicas run now, where that differs from ``current`` (``MatrixModel.placed``)."""
    a = arrays
    fleet = a.fleet
    obj = fleet.settings.objective
    b = _Builder(a)
    n_pairs, n_routes = a.n_pairs, a.n_routes
    churn = obj.churn_usd_per_replica
    cur = a.current_vector(current)

    # x: fixed pools pay per GPU in use; churn on pairs that run nothing now; batch egress per replica
    price = a.pool_price[a.pair_pool]
    elastic_pair = a.pool_elastic[a.pair_pool]
    cost_x = np.where(elastic_pair, 0.0, price * a.pair_c) + TIE_BREAK
    if churn > 0:
        cost_x = cost_x + np.where(cur > 0, 0.0, churn)
    batch_model = ~a.model_inference
    wanted = np.array([(m.spec.replicas or 0) if not m.inference else 0 for m in a.models], dtype=float)
    pair_batch = batch_model[a.pair_model]
    with np.errstate(divide="ignore", invalid="ignore"):
        per_replica = np.where(pair_batch & (wanted[a.pair_model] > 0), a.pair_egress / wanted[a.pair_model], 0.0)
    cost_x = cost_x + per_replica
    b.x0 = b.add_cols("x", cost_x, 0.0, a.pair_max.astype(float), True)

    # y: latency and egress per unit of rate
    total_demand = np.array([m.total_demand for m in a.models])
    rm = a.dem_model[a.route_dem]
    with np.errstate(divide="ignore", invalid="ignore"):
        eg = np.where(total_demand[rm] > 0, a.pair_egress[a.route_pair] / total_demand[rm], 0.0)
    cost_y = obj.latency_usd_per_ms_per1k_rate * a.route_latency / 1000.0 + eg
    y0 = b.add_cols("y", cost_y, 0.0, a.dem_rate[a.route_dem], False)

    # n: elastic pools
    el = np.flatnonzero(a.pool_elastic)
    n0 = b.add_cols("n", a.pool_price[el] * a.pool_per_node[el] + TIE_BREAK, a.pool_min_nodes[el].astype(float),
                    a.pool_max_nodes[el].astype(float), True)
    b.elastic_col[el] = n0 + np.arange(len(el))

    # u: unmet rate
    factor = np.array([m.priority_factor for m in a.models])
    u0 = b.add_cols("u", obj.unmet_usd_per_rate * factor[a.dem_model], 0.0, a.dem_rate, False)

    # k: batch replicas not placed
    active = np.array([m.name not in a.retired for m in a.models], dtype=bool)
    bm = np.flatnonzero(batch_model & active)
    k0 = b.add_cols("k", obj.unmet_usd_per_replica * factor[bm], 0.0, wanted[bm], True)

    # s: churn of pairs that run something now
    churn_col = np.full(n_pairs, -1, dtype=np.int64)
    if churn > 0:
        running = np.flatnonzero(cur > 0)
        s0 = b.add_cols("s", np.full(len(running), churn), 0.0, INF, False)
        churn_col[running] = s0 + np.arange(len(running))

    # g: gang pool choice
    gang_col = np.full(n_pairs, -1, dtype=np.int64)
    counts = np.diff(a.pair_ptr)
    gang_models = [mi for mi in bm.tolist() if a.models[mi].spec.gang_effective and counts[mi] > 0]
    if gang_models:
        gp = np.concatenate([np.arange(a.pair_ptr[mi], a.pair_ptr[mi + 1]) for mi in gang_models])
        g0 = b.add_cols("g", np.zeros(len(gp)), 0.0, 1.0, True)
        gang_col[gp] = g0 + np.arange(len(gp))
    else:
        b.blocks["g"] = (b.n_cols, b.n_cols)
    b.blocks.setdefault("s", (b.n_cols, b.n_cols))
    if columns_only:
        b.blocks["aux"] = (b.n_cols, b.n_cols)
        cost, lb, ub, integer = b.columns()
        return MatrixModel(
            arrays=a, cost=cost, lb=lb, ub=ub, integer=integer, A=sp.csc_matrix((0, b.n_cols)),
            row_lo=np.zeros(0), row_hi=np.zeros(0), blocks=dict(b.blocks),
            serve_row=np.full(n_pairs, -1, dtype=np.int64), elastic_col=b.elastic_col, churn_col=churn_col,
            gang_col=gang_col, batch_models=bm, current=cur, placed=cur if placed is None else a.current_vector(placed),
        )

    # ------------------------------------------------------------ rows
    # capacity: sum c x - perNode n <= 0 (elastic) | <= count * perNode (fixed), pools with pairs
    # and every elastic pool (its row prices its nodes in a bound, pairs or not: a model restricted
    # to some pairs is bounded as the full one is)
    pools_used = np.union1d(np.unique(a.pair_pool), np.flatnonzero(a.pool_elastic))
    row_of_pool = np.full(len(a.pools), -1, dtype=np.int64)
    row_of_pool[pools_used] = np.arange(len(pools_used))
    cap_hi = np.where(a.pool_elastic[pools_used], 0.0, (a.pool_min_nodes * a.pool_per_node)[pools_used])
    i = row_of_pool[a.pair_pool]
    j = b.x0 + np.arange(n_pairs)
    v = a.pair_c.astype(float)
    el_used = pools_used[a.pool_elastic[pools_used]]
    i = np.concatenate([i, row_of_pool[el_used]])
    j = np.concatenate([j, b.elastic_col[el_used]])
    v = np.concatenate([v, -a.pool_per_node[el_used].astype(float)])
    cap0 = b.add_rows(i, j, v, -INF, cap_hi, len(pools_used))
    capacity_row = np.where(row_of_pool >= 0, row_of_pool + cap0, -1)

    # serve: sum_d y[d,p] - thr x <= 0 for pairs with routes
    has = np.zeros(n_pairs, dtype=bool)
    has[a.route_pair] = True
    served = np.flatnonzero(has)
    serve_row_local = np.full(n_pairs, -1, dtype=np.int64)
    serve_row_local[served] = np.arange(len(served))
    i = np.concatenate([serve_row_local[a.route_pair], serve_row_local[served]])
    j = np.concatenate([y0 + np.arange(n_routes), b.x0 + served])
    v = np.concatenate([np.ones(n_routes), -a.pair_thr[served]])
    s_start = b.add_rows(i, j, v, -INF, 0.0, len(served))
    serve_row = np.where(serve_row_local >= 0, serve_row_local + s_start, -1)

    # demand: sum_p y + u = rate
    n_dem = len(a.dem_model)
    i = np.concatenate([a.route_dem, np.arange(n_dem)])
    j = np.concatenate([y0 + np.arange(n_routes), u0 + np.arange(n_dem)])
    demand_row0 = b.add_rows(i, j, np.ones(len(i)), a.dem_rate, a.dem_rate, n_dem)

    # min / max replicas (inference), replicas (batch), gang
    lo_rows: list[tuple[int, float, float]] = []
    for mi, model in enumerate(a.models):
        if not active[mi]:
            continue
        if model.inference:
            if model.spec.min_replicas:
                lo_rows.append((mi, float(model.spec.min_replicas), INF))
            if model.spec.max_replicas is not None and counts[mi] > 0:
                lo_rows.append((mi, -INF, float(model.spec.max_replicas)))
    if lo_rows:
        ms = np.array([r[0] for r in lo_rows])
        cnt = counts[ms]
        i = np.repeat(np.arange(len(ms)), cnt)
        j = b.x0 + np.concatenate([np.arange(a.pair_ptr[m], a.pair_ptr[m + 1]) for m in ms])
        b.add_rows(i, j, np.ones(len(j)), [r[1] for r in lo_rows], [r[2] for r in lo_rows], len(ms))
    if len(bm):
        cnt = counts[bm]
        i = np.concatenate([np.repeat(np.arange(len(bm)), cnt), np.arange(len(bm))])
        j = np.concatenate([b.x0 + np.concatenate([np.arange(a.pair_ptr[m], a.pair_ptr[m + 1]) for m in bm]),
                            k0 + np.arange(len(bm))])
        batch_row0 = b.add_rows(i, j, np.ones(len(j)), wanted[bm], wanted[bm], len(bm))
    else:
        batch_row0 = -1
    if gang_models:
        gp = np.flatnonzero(gang_col >= 0)
        # x - wanted g = 0: all or none (partly placed, a gang's GPUs are held for a job that cannot run)
        i = np.concatenate([np.arange(len(gp)), np.arange(len(gp))])
        j = np.concatenate([b.x0 + gp, gang_col[gp]])
        v = np.concatenate([np.ones(len(gp)), -wanted[a.pair_model[gp]]])
        b.add_rows(i, j, v, 0.0, 0.0, len(gp))
        # sum g <= 1
        owner = np.searchsorted(np.array(gang_models), a.pair_model[gp])
        b.add_rows(owner, gang_col[gp], np.ones(len(gp)), -INF, 1.0, len(gang_models))
    # churn: s - x >= -current
    run = np.flatnonzero(churn_col >= 0)
    if len(run):
        i = np.concatenate([np.arange(len(run)), np.arange(len(run))])
        j = np.concatenate([churn_col[run], b.x0 + run])
        v = np.concatenate([np.ones(len(run)), -np.ones(len(run))])
        b.add_rows(i, j, v, -cur[run], INF, len(run))

    # policies
    b.blocks["aux"] = (b.n_cols, b.n_cols)
    for policy in fleet.policies:
        behaviour(rules, policy).constrain(policy, b)  # type: ignore[arg-type]
    b.finish_rules()
    if cuts:
        cover_cuts(b, a, serve_row >= 0, u0, per_group=cut_levels)

    cost, lb, ub, integer = b.columns()
    rows_i = np.concatenate(b.rows_i)
    rows_j = np.concatenate(b.rows_j)
    rows_v = np.concatenate(b.rows_v)
    A = sp.csc_matrix((rows_v, (rows_i, rows_j)), shape=(b.n_rows, b.n_cols))
    A.sum_duplicates()
    return MatrixModel(
        arrays=a, cost=cost, lb=lb, ub=ub, integer=integer, A=A,
        row_lo=np.concatenate(b.row_lo), row_hi=np.concatenate(b.row_hi),
        blocks=dict(b.blocks), serve_row=serve_row, elastic_col=b.elastic_col, churn_col=churn_col,
        gang_col=gang_col, penalties=b.penalties, row_names=b.row_names,
        cut_rows=np.array(b.cut_rows, dtype=np.int64),
        capacity_row=capacity_row, demand_row0=demand_row0, batch_row0=batch_row0, batch_models=bm,
        current=cur, placed=cur if placed is None else a.current_vector(placed),
    )
