"""A lower bound stronger than the LP: Lagrangian relaxation by model, with integer replicas.

The rows that tie models together (pool capacity, budgets, spot share, separation, ...) are
priced by multipliers ``pi`` (usually the LP's duals) and dropped; what is left falls apart into
one small MIP per model (its replicas, routes, unmet demand, gang and churn columns, and the
policy variables only its rows use, under every row that touches that model alone), plus the
columns no model owns (elastic nodes, shared policy variables), each priced alone within its
bounds. For any ``pi`` of the right signs,

    L(pi) = sum over dropped rows of pi * (lo if pi > 0 else hi)
            + sum over models of min { (c - A^T pi) z_m : z_m meets its own rows, integer }
            + sum over unowned columns of min over [lb, ub] of (c - A^T pi) v

is at most the optimum (weak duality). With the LP's duals it is at least the LP bound less
solver tolerance, and it sees what the LP misses: that a model's replicas come whole, so a
demand of 2.3 replicas costs 3 of them somewhere. A sub-MIP stopped early counts its own proven
bound, so the sum stays valid.
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from placer.optimizer.arrays import BoolArray, FloatArray, IntArray
from placer.optimizer.highs import solve_arrays
from placer.optimizer.matrix import MatrixModel


@dataclass
class Blocks:
    """Which model owns each column (-1: none), and which rows touch one model's columns only."""

    owner: IntArray
    local: BoolArray
    col_ptr: IntArray  # columns of model m: cols[col_ptr[m]:col_ptr[m + 1]]
    cols: IntArray


def model_blocks(model: MatrixModel, csr: Any = None) -> Blocks:
    """``csr``: the model's matrix as CSR, when the caller has it."""
    a = model.arrays
    owner = np.full(model.n_cols, -1, dtype=np.int64)
    x0 = model.blocks["x"][0]
    y0 = model.blocks["y"][0]
    u0 = model.blocks["u"][0]
    owner[x0:x0 + a.n_pairs] = a.pair_model
    owner[y0:y0 + a.n_routes] = a.pair_model[a.route_pair]
    owner[u0:u0 + len(a.dem_model)] = a.dem_model
    k0, k1 = model.blocks["k"]
    owner[k0:k1] = model.batch_models
    for col in (model.gang_col, model.churn_col):
        has = col >= 0
        owner[col[has]] = a.pair_model[has]
    csr = model.A.tocsr() if csr is None else csr
    row_of = np.repeat(np.arange(model.n_rows), np.diff(csr.indptr))

    def spans(own: IntArray) -> tuple[IntArray, IntArray, BoolArray]:
        """Per row: least and greatest owner among its owned columns, and whether it has an unowned one."""
        o = own[csr.indices]
        lo = np.full(model.n_rows, np.iinfo(np.int64).max)
        hi = np.full(model.n_rows, -1)
        has = o >= 0
        np.minimum.at(lo, row_of[has], o[has])
        np.maximum.at(hi, row_of[has], o[has])
        unowned = np.zeros(model.n_rows, dtype=bool)
        unowned[row_of[~has]] = True
        return lo, hi, unowned

    # a policy variable belongs to a model when every row it is in holds that model's columns only
    lo, hi, _ = spans(owner)
    aux0, aux1 = model.blocks["aux"]
    if aux1 > aux0:
        csc = model.A.tocsc()
        for c in range(aux0, aux1):
            rows = csc.indices[csc.indptr[c]:csc.indptr[c + 1]]
            if len(rows) and (hi[rows] >= 0).all() and (lo[rows] == hi[rows]).all() and (lo[rows] == lo[rows[0]]).all():
                owner[c] = lo[rows[0]]
    lo, hi, unowned = spans(owner)
    local = (hi >= 0) & (lo == hi) & ~unowned
    order = np.argsort(owner, kind="stable")
    ptr = np.searchsorted(owner[order], np.arange(len(a.models) + 1))
    return Blocks(owner, local, ptr, order)


@dataclass
class ModelBound:
    bound: float  # -inf when no valid bound came out (a sub-MIP without a bound, an unbounded column)
    status: str  # OPTIMAL: every sub-MIP solved | BOUNDED: some stopped early | TIME_LIMIT | UNBOUNDED
    seconds: float
    models: int
    linking_rows: int


def model_bound(model: MatrixModel, pi: FloatArray, deadline: float, *, workers: int = 1, per_model: float = 0.5,
                integer: bool = True, blocks: Blocks | None = None) -> ModelBound:
    """L(pi) of the module docstring; ``pi`` row multipliers (positive on a row's lower side). A
    sub-MIP gets at most ``per_model`` seconds (a few take seconds to close their last 0.01%),
    after which its proven bound counts. ``integer=False`` relaxes the models' integrality: at the
    LP's optimal duals that is the LP bound again."""
    started = time.monotonic()
    b = blocks or model_blocks(model)
    lo, hi = model.row_lo, model.row_hi
    pi = np.where(b.local, 0.0, pi)
    pi = np.where((pi > 0) & np.isinf(lo), 0.0, pi)
    pi = np.where((pi < 0) & np.isinf(hi), 0.0, pi)
    rows_term = float(np.where(pi > 0, pi * np.where(np.isinf(lo), 0.0, lo),
                               pi * np.where(np.isinf(hi), 0.0, hi)).sum())
    rc = model.cost - model.A.T @ pi
    alone = b.owner < 0
    r = rc[alone]
    with np.errstate(invalid="ignore"):
        cols = np.where(r > 0, r * model.lb[alone], np.where(r < 0, r * model.ub[alone], 0.0))
    linking = int((~b.local).sum())
    n_models = len(b.col_ptr) - 1
    if not np.isfinite(cols).all():
        return ModelBound(-math.inf, "UNBOUNDED", time.monotonic() - started, 0, linking)
    csc = model.A.tocsc()
    total = [rows_term + float(cols.sum())]
    status = ["OPTIMAL"]
    done = [0]
    lock = threading.Lock()

    def one(m: int) -> None:
        cols_m = b.cols[b.col_ptr[m]:b.col_ptr[m + 1]]
        if not len(cols_m) or status[0] in ("TIME_LIMIT", "UNBOUNDED", "INFEASIBLE"):
            return
        left = deadline - time.monotonic()
        if left <= 0:
            status[0] = "TIME_LIMIT"
            return
        A_m = csc[:, cols_m]
        rows = np.unique(A_m.indices)
        rows = rows[b.local[rows]]
        sol = solve_arrays(A_m[rows, :], rc[cols_m], model.lb[cols_m], model.ub[cols_m], lo[rows], hi[rows],
                           model.integer[cols_m] if integer else None, time_limit=min(left, per_model), gap=1e-4)
        value = sol.bound  # what HiGHS proved, not its incumbent (they differ by the gap)
        with lock:
            if sol.status == "INFEASIBLE":  # the model's own rules cannot hold: nothing is bounded by this
                status[0] = "INFEASIBLE"
            elif not math.isfinite(value):
                status[0] = "UNBOUNDED" if sol.status != "UNKNOWN" else "TIME_LIMIT"
            else:
                total[0] += value
                if sol.status != "OPTIMAL" and status[0] == "OPTIMAL":
                    status[0] = "BOUNDED"
            done[0] += 1

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(one, range(n_models)))
    bound = total[0] if status[0] in ("OPTIMAL", "BOUNDED") else -math.inf
    return ModelBound(bound, status[0], time.monotonic() - started, done[0], linking)
