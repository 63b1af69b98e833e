"""Solve a column (and row) subset of a ``MatrixModel`` with HiGHS (highspy).

highspy rather than OR-Tools for this route: it takes the CSC matrix as numpy arrays
(OR-Tools' model_builder needs a pass through its own proto), and it gives what the
route needs and OR-Tools' wrappers hide: row duals and reduced costs as arrays, a warm
basis for the next LP, and a MIP start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import highspy
import numpy as np

from placer.optimizer.arrays import FloatArray, IntArray
from placer.optimizer.matrix import MatrixModel

INF = float("inf")
_STATUS = [highspy.HighsBasisStatus(i) for i in range(5)]  # kLower, kBasic, kUpper, kZero, kNonbasic
LOWER, BASIC = 0, 1


@dataclass
class Solution:
    status: str  # OPTIMAL | FEASIBLE | INFEASIBLE | UNKNOWN
    cols: IntArray  # model columns of this sub-problem
    rows: IntArray
    values: FloatArray | None  # per sub-problem column
    objective: float
    bound: float  # best bound of this sub-problem (MIP), or its objective (LP)
    row_duals: FloatArray | None = None
    basis: Any = None
    seconds: float = 0.0

    @property
    def feasible(self) -> bool:
        return self.values is not None


def _highs(threads: int | None = None) -> highspy.Highs:
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", int(threads or min(os.cpu_count() or 1, 8)))
    return h


def solve(model: MatrixModel, cols: IntArray, *, integer: bool, time_limit: float, rows: IntArray | None = None,
          lb: FloatArray | None = None, ub: FloatArray | None = None, start: FloatArray | None = None,
          basis: Any = None, gap: float = 1e-4, cutoff: float | None = None, options: dict[str, Any] | None = None,
          ) -> Solution:
    """Solve the model restricted to columns ``cols`` (others fixed at 0) and ``rows``
    (default: every row that touches ``cols`` or cannot hold with them at 0).

    ``lb``/``ub`` override the bounds of the sub-problem's columns; ``start`` is a MIP start
    (full model vector); ``basis`` a (col_status, row_status) pair from an earlier LP of
    the same shape.
    """
    A = model.A[:, cols].tocsc()
    if rows is None:
        touched = np.zeros(model.n_rows, dtype=bool)
        touched[A.indices] = True
        needed = (model.row_lo > 1e-9) | (model.row_hi < -1e-9)
        rows = np.flatnonzero(touched | needed)
    A = A[rows, :].tocsc()
    A.sort_indices()
    h = _highs()
    if time_limit is not None:
        h.setOptionValue("time_limit", max(0.05, float(time_limit)))
    if integer:
        h.setOptionValue("mip_rel_gap", float(gap))
    for key, value in (options or {}).items():
        h.setOptionValue(key, value)
    col_lb = model.lb[cols] if lb is None else lb
    col_ub = model.ub[cols] if ub is None else ub
    inf = highspy.kHighsInf
    col_ub = np.where(np.isinf(col_ub), inf, col_ub)
    row_lo = np.where(np.isinf(model.row_lo[rows]), -inf, model.row_lo[rows])
    row_hi = np.where(np.isinf(model.row_hi[rows]), inf, model.row_hi[rows])
    integrality = model.integer[cols].astype(np.int32) if integer else np.zeros(len(cols), dtype=np.int32)
    h.passModel(
        len(cols), len(rows), A.nnz, 1, 1, 0.0,
        np.ascontiguousarray(model.cost[cols], dtype=np.float64),
        np.ascontiguousarray(col_lb, dtype=np.float64), np.ascontiguousarray(col_ub, dtype=np.float64),
        np.ascontiguousarray(row_lo, dtype=np.float64), np.ascontiguousarray(row_hi, dtype=np.float64),
        A.indptr.astype(np.int32), A.indices.astype(np.int32), A.data.astype(np.float64), integrality,
    )
    if cutoff is not None and integer:
        h.setOptionValue("objective_bound", float(cutoff))
    if basis is not None and not integer:
        hb = highspy.HighsBasis()
        hb.col_status = [_STATUS[v] for v in np.asarray(basis[0]).tolist()]
        hb.row_status = [_STATUS[v] for v in np.asarray(basis[1]).tolist()]
        hb.valid = True
        hb.alien = True
        h.setBasis(hb)
    if start is not None and integer:
        sol = highspy.HighsSolution()
        sol.col_value = list(np.asarray(start, dtype=float)[cols])
        sol.value_valid = True
        h.setSolution(sol)
    h.run()
    status = h.getModelStatus()
    info = h.getInfo()
    seconds = h.getRunTime()
    name = {highspy.HighsModelStatus.kOptimal: "OPTIMAL",
            highspy.HighsModelStatus.kInfeasible: "INFEASIBLE"}.get(status, "UNKNOWN")
    has_sol = info.primal_solution_status == 2  # kSolutionStatusFeasible
    values = None
    row_duals = None
    hbasis = None
    if has_sol:
        sol = h.getSolution()
        values = np.array(sol.col_value)
        if name == "UNKNOWN":
            name = "FEASIBLE"
        if not integer and sol.dual_valid:
            row_duals = np.array(sol.row_dual)
            b = h.getBasis()
            if b.valid:
                hbasis = (np.array([int(v) for v in b.col_status], dtype=np.int8),
                          np.array([int(v) for v in b.row_status], dtype=np.int8))
    objective = float(info.objective_function_value) if has_sol else INF
    if integer:
        bound = float(info.mip_dual_bound) if has_sol or name == "UNKNOWN" else INF
        if name == "INFEASIBLE":
            bound = INF
    else:
        bound = objective
    return Solution(name, cols, rows, values, objective, bound, row_duals, hbasis, seconds)
