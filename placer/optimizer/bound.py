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
bound, so the sum stays valid; so does a model whose sub-MIP did not run in time, or proved
nothing, counted at a bound on its own problem that needs no solve (``fallback_bounds``: its own
rows priced by ``pi`` as well, each pair's problem in closed form, as ``lp.lagrangian`` does).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from placer.optimizer.arrays import BoolArray, FloatArray, IntArray
from placer.optimizer.highs import solve_arrays
from placer.optimizer.lp import PairTables, least_at_bounds, pair_values, rows_value, signed
from placer.optimizer.matrix import MatrixModel


@dataclass
class Blocks:
    """Which model owns each column (-1: none), and which rows touch one model's columns only."""

    owner: IntArray
    local: BoolArray
    col_ptr: IntArray  # columns of model m: cols[col_ptr[m]:col_ptr[m + 1]]
    cols: IntArray
    row_owner: IntArray  # per row, the model whose own row it is (-1: a row between models)


def model_blocks(model: MatrixModel, csr: Any = None, csc: Any = None) -> Blocks:
    """``csr``, ``csc``: the model's matrix as CSR and as CSC, when the caller has them."""
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
    nonempty = np.flatnonzero(np.diff(csr.indptr) > 0)
    starts = csr.indptr[nonempty]

    def spans(own: IntArray) -> tuple[IntArray, IntArray, BoolArray]:
        """Per row: least and greatest owner among its owned columns, and whether it has an unowned one.
        (Row by row with ``reduceat``, on 32-bit owners: at XL's 27.6M nonzeros, a vector of every
        nonzero's row and ``minimum.at`` took seconds and 0.9 GB.)"""
        o = own.astype(np.int32)[csr.indices]
        none = o < 0
        unowned = np.zeros(model.n_rows, dtype=bool)
        lo = np.full(model.n_rows, np.iinfo(np.int64).max)
        hi = np.full(model.n_rows, -1)
        if not len(starts):
            return lo, hi, unowned
        unowned[nonempty] = np.logical_or.reduceat(none, starts)
        o[none] = np.iinfo(np.int32).max
        least = np.minimum.reduceat(o, starts)
        lo[nonempty] = np.where(least == np.iinfo(np.int32).max, np.iinfo(np.int64).max, least)
        o[none] = -1
        hi[nonempty] = np.maximum.reduceat(o, starts)
        return lo, hi, unowned

    # a policy variable belongs to a model when every row it is in holds that model's columns only
    # (a spread rule's per-domain flags share a row with no model's column, so they, and the rule,
    # stay between models: owned by their model, M's (c') came out no stronger and priced slower)
    lo, hi, _ = spans(owner)
    aux0, aux1 = model.blocks["aux"]
    if aux1 > aux0:
        csc = model.A.tocsc() if csc is None else csc
        for c in range(aux0, aux1):
            rows = csc.indices[csc.indptr[c]:csc.indptr[c + 1]]
            if len(rows) and (hi[rows] >= 0).all() and (lo[rows] == hi[rows]).all() and (lo[rows] == lo[rows[0]]).all():
                owner[c] = lo[rows[0]]
    lo, hi, unowned = spans(owner)
    local = (hi >= 0) & (lo == hi) & ~unowned
    order = np.argsort(owner, kind="stable")
    ptr = np.searchsorted(owner[order], np.arange(len(a.models) + 1))
    return Blocks(owner, local, ptr, order, np.where(local, hi, -1))


@dataclass
class ModelBound:
    bound: float  # -inf when no valid bound came out (an unbounded column, a model whose rules cannot hold)
    status: str  # OPTIMAL: every sub-MIP solved | BOUNDED: some stopped early or did not run | UNBOUNDED | INFEASIBLE
    seconds: float
    models: int  # sub-MIPs solved (to optimality or to a proven bound)
    linking_rows: int
    fallback: int = 0  # models counted at ``fallback_bounds`` (out of time, or a sub-MIP without a bound)


def linking_multipliers(model: MatrixModel, pi: FloatArray, b: Blocks) -> FloatArray:
    """``pi`` (signed) on the rows between models, 0 on the rows of single models."""
    return signed(model, np.where(b.local, 0.0, pi))


def linking_reduced_costs(model: MatrixModel, pi: FloatArray, b: Blocks, linking: FloatArray | None = None
                          ) -> FloatArray:
    """Every column's cost with the rows between models priced by ``pi`` (signed) and the rows of
    single models not: the costs of each model's own problem in L(pi), its pricing problem.
    ``linking``: ``linking_multipliers`` of ``pi``, when the caller has them."""
    mult = linking_multipliers(model, pi, b) if linking is None else linking
    rc: FloatArray = model.cost - model.A.T @ mult
    return rc


def fallback_bounds(model: MatrixModel, pi: FloatArray, b: Blocks, tables: PairTables | None = None) -> FloatArray:
    """Per model, a lower bound on its own problem in L(pi) without solving it: the Lagrangian
    relaxation of that problem at ``pi``'s multipliers on its own rows (the pairs' serve rows
    kept): what ``lp.lagrangian`` computes, restricted to one model's rows and columns. Any
    multipliers give a valid bound on the model's problem, so a model counted at this one
    keeps the sum valid. -inf for a model with an unbounded column."""
    a = model.arrays
    serve = np.zeros(model.n_rows, dtype=bool)
    serve[model.serve_row[model.serve_row >= 0]] = True
    mu = signed(model, np.where(b.local & ~serve, pi, 0.0))  # the models' own rows only
    n_models = len(b.col_ptr) - 1
    # float whatever the counts (with no model rows at all, bincount answers ints, and the sums below
    # could not be added to them)
    out = np.bincount(b.row_owner[b.local], weights=rows_value(model, mu)[b.local], minlength=n_models).astype(float)
    # reduced costs at pi on the linking rows and mu on the model's own rows
    rc = model.cost - model.A.T @ (np.where(b.local, 0.0, signed(model, pi)) + mu)
    x0, x1 = model.blocks["x"]
    y0, y1 = model.blocks["y"]
    other = b.owner >= 0
    other[x0:x1] = False
    other[y0:y1] = False
    cols = np.flatnonzero(other)
    out += np.bincount(b.owner[cols], weights=least_at_bounds(rc[cols], model.lb[cols], model.ub[cols]),
                       minlength=n_models)
    if a.n_pairs:
        g, _ = pair_values(model, tables if tables is not None else PairTables.build(model), rc, integer=True)
        out += np.bincount(a.pair_model, weights=g, minlength=n_models)
    result: FloatArray = np.where(np.isnan(out), -math.inf, out)
    return result


@dataclass
class Lagrangian:
    """L(pi) of the module docstring taken apart: the terms that need no MIP (the dropped rows and
    the columns no model owns: ``fixed``, -inf when one of those columns is unbounded), and each
    model's bound that needs no solve (``fallback_bounds``), which a model's proven MIP bound may
    raise (``total``)."""

    fixed: float
    fallback: FloatArray

    @staticmethod
    def at(model: MatrixModel, pi: FloatArray, b: Blocks, tables: PairTables | None = None,
           linking: FloatArray | None = None, rc: FloatArray | None = None) -> Lagrangian:
        """At multipliers ``pi``; ``linking``, ``rc``: ``linking_multipliers`` and
        ``linking_reduced_costs`` of ``pi``, when the caller has them."""
        linking = linking_multipliers(model, pi, b) if linking is None else linking
        rc = linking_reduced_costs(model, pi, b, linking) if rc is None else rc
        alone = b.owner < 0
        cols = least_at_bounds(rc[alone], model.lb[alone], model.ub[alone])
        fixed = float(rows_value(model, linking).sum()) + float(cols.sum()) if np.isfinite(cols).all() else -math.inf
        return Lagrangian(fixed, fallback_bounds(model, pi, b, tables))

    def total(self, proven: FloatArray) -> float:
        """L(pi) with each model at the greater of its ``proven`` bound (NaN or -inf: none, a
        sub-MIP that did not run or proved nothing) and its fallback; -inf when no term bounds."""
        best = np.where(np.isfinite(proven), np.maximum(proven, self.fallback), self.fallback)
        out = self.fixed + float(best.sum())
        return out if math.isfinite(out) else -math.inf


def model_bound(model: MatrixModel, pi: FloatArray, deadline: float, *, workers: int = 1, per_model: float = 0.5,
                integer: bool = True, blocks: Blocks | None = None, tables: PairTables | None = None,
                record: Callable[[int, FloatArray], None] | None = None) -> ModelBound:
    """L(pi) of the module docstring; ``pi`` row multipliers (positive on a row's lower side). A
    sub-MIP gets at most ``per_model`` seconds (a few take seconds to close their last 0.01%),
    after which its proven bound counts; the models whose sub-MIP did not run by ``deadline``, or
    proved nothing, count at ``fallback_bounds`` (``tables``: the model's ``PairTables``, when the
    caller has them). ``integer=False`` relaxes the models' integrality: at the LP's optimal duals
    that is the LP bound again. ``record(m, z)``: each sub-MIP's answer, model ``m``'s values on
    its own columns (in ``Blocks.cols`` order): a column for a master over configurations."""
    started = time.monotonic()
    csr = model.A.tocsr()
    b = blocks or model_blocks(model, csr)
    lo, hi = model.row_lo, model.row_hi
    rc = linking_reduced_costs(model, pi, b)
    linking = int((~b.local).sum())
    n_models = len(b.col_ptr) - 1
    parts = Lagrangian.at(model, pi, b, tables, rc=rc)
    if not math.isfinite(parts.fixed):
        return ModelBound(-math.inf, "UNBOUNDED", time.monotonic() - started, 0, linking)
    fallback = parts.fallback
    csc = model.A.tocsc()
    total = [parts.fixed]
    status = ["OPTIMAL"]
    done = [0]
    fell_back = [0]
    lock = threading.Lock()

    def one(m: int) -> None:
        cols_m = b.cols[b.col_ptr[m]:b.col_ptr[m + 1]]
        if not len(cols_m) or status[0] in ("UNBOUNDED", "INFEASIBLE"):
            return
        left = deadline - time.monotonic()
        if left > 0:
            A_m = csc[:, cols_m]
            rows = np.unique(A_m.indices)
            rows = rows[b.local[rows]]
            sol = solve_arrays(A_m[rows, :], rc[cols_m], model.lb[cols_m], model.ub[cols_m], lo[rows], hi[rows],
                               model.integer[cols_m] if integer else None, time_limit=min(left, per_model), gap=1e-4)
            if sol.status == "INFEASIBLE":  # the model's own rules cannot hold: nothing is bounded by this
                with lock:
                    status[0] = "INFEASIBLE"
                return
            value = sol.bound  # what HiGHS proved, not its incumbent (they differ by the gap)
            if record is not None and sol.values is not None:
                with lock:
                    record(m, sol.values)
            if math.isfinite(value):
                with lock:
                    total[0] += max(value, float(fallback[m]))  # a sub-MIP stopped early may prove less
                    done[0] += 1
                    if sol.status != "OPTIMAL" and status[0] == "OPTIMAL":
                        status[0] = "BOUNDED"
                return
        value = float(fallback[m])  # out of time, or a sub-MIP that proved nothing (stopped, or unbounded)
        with lock:
            if not math.isfinite(value):
                status[0] = "UNBOUNDED"
                return
            total[0] += value
            fell_back[0] += 1
            if status[0] == "OPTIMAL":
                status[0] = "BOUNDED"

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(one, range(n_models)))
    bound = total[0] if status[0] in ("OPTIMAL", "BOUNDED") else -math.inf
    return ModelBound(bound, status[0], time.monotonic() - started, done[0], linking, fell_back[0])
