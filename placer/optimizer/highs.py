"""Solve a column (and row) subset of a ``MatrixModel`` with HiGHS (highspy).

highspy rather than OR-Tools for this route: it takes the CSC matrix as numpy arrays
(OR-Tools' model_builder needs a pass through its own proto), and it gives what the
route needs and OR-Tools' wrappers hide: row duals and reduced costs as arrays, a warm
basis for the next LP, and a MIP start.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import highspy
import numpy as np

from placer.knobs import env_number
from placer.optimizer.arrays import BoolArray, FloatArray, IntArray
from placer.optimizer.matrix import MatrixModel, rows_broken
from placer.optimizer.quiet import quiet_stdout

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
    col_duals: FloatArray | None = None
    inconsistent: bool = False  # a MIP answer whose objective its values do not have (see below)

    @property
    def feasible(self) -> bool:
        return self.values is not None


# HiGHS runs one thread pool per process, sized by the first solve; small MIPs solve fastest
# on one thread, and the route's LPs (simplex) use one anyway.
_banner_lock = threading.Lock()
_banner_shown = False


def highs_threads() -> int:
    """HiGHS' threads, ``PLACER_HIGHS_THREADS`` (1 by default)."""
    return int(env_number("PLACER_HIGHS_THREADS", 1, whole=True, least=1))


SETTLE_SECONDS = 1.0  # at most, for the LP that settles a MIP answer's continuous columns (``_settled``)


def new_highs() -> highspy.Highs:
    global _banner_shown
    if _banner_shown:
        h = highspy.Highs()  # type: ignore[no-untyped-call]
    else:
        with _banner_lock:  # fd 1 is the process's: swapped once, by one thread
            with quiet_stdout():  # the first instance prints a banner on fd 1
                h = highspy.Highs()  # type: ignore[no-untyped-call]
            _banner_shown = True
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", highs_threads())
    return h


def solve(model: MatrixModel, cols: IntArray, *, integer: bool, time_limit: float, rows: IntArray | None = None,
          lb: FloatArray | None = None, ub: FloatArray | None = None, start: FloatArray | None = None,
          basis: Any = None, gap: float = 1e-4, cutoff: float | None = None, options: dict[str, Any] | None = None,
          isolated: bool = False) -> Solution:
    """Solve the model restricted to columns ``cols`` (others fixed at 0) and ``rows``
    (default: every row that touches ``cols`` or cannot hold with them at 0).

    ``lb``/``ub`` override the bounds of the sub-problem's columns; ``start`` is a MIP start
    (full model vector); ``basis`` a (col_status, row_status) pair of ints for this shape;
    ``isolated``: in a child process stopped at the time limit (``solve_within``).
    """
    A = model.A[:, cols].tocsc()
    if rows is None:
        touched = np.zeros(model.n_rows, dtype=bool)
        touched[A.indices] = True
        needed = (model.row_lo > 1e-9) | (model.row_hi < -1e-9)
        rows = np.flatnonzero(touched | needed)
    A = A[rows, :].tocsc()
    sol = (solve_within if isolated else solve_arrays)(
        A, model.cost[cols], model.lb[cols] if lb is None else lb, model.ub[cols] if ub is None else ub,
        model.row_lo[rows], model.row_hi[rows], model.integer[cols] if integer else None,
        time_limit=time_limit, start=None if start is None else np.asarray(start, dtype=float)[cols],
        basis=basis, gap=gap, cutoff=cutoff, options=options)
    sol.cols = cols
    sol.rows = rows
    return sol


def _settled(A: Any, cost: FloatArray, lb: FloatArray, ub: FloatArray, row_lo: FloatArray, row_hi: FloatArray,
             integer: BoolArray, values: FloatArray) -> FloatArray | None:
    """A MIP answer's values with its integer columns rounded, as every caller takes them. HiGHS
    answers within its integrality tolerance, and rounding can break a row: a replica count of
    1e-8 rounds to 0 and leaves 5.3e-5 of rate on a pool with no replica (bench L: a recombination
    master's whole plan was refused for one such configuration). Then the continuous columns are
    set again, at least cost, with the integer columns fixed; None when they cannot meet the rows."""
    out = np.array(values, dtype=np.float64)
    out[integer] = np.round(out[integer])
    if not np.any(rows_broken(A, out, A @ out, row_lo, row_hi)):
        return out
    again = solve_arrays(A, cost, np.where(integer, out, lb), np.where(integer, out, ub), row_lo, row_hi, None,
                         time_limit=SETTLE_SECONDS)
    if again.values is None:
        return None
    fixed = np.where(integer, out, again.values)
    return None if np.any(rows_broken(A, fixed, A @ fixed, row_lo, row_hi)) else fixed


def solve_arrays(A: Any, cost: FloatArray, lb: FloatArray, ub: FloatArray, row_lo: FloatArray, row_hi: FloatArray,
                 integer: Any, *, time_limit: float | None, start: FloatArray | None = None, basis: Any = None,
                 gap: float = 1e-4, cutoff: float | None = None, options: dict[str, Any] | None = None,
                 on_improving: Callable[[FloatArray], None] | None = None) -> Solution:
    """Solve min cost·v s.t. row_lo <= A v <= row_hi, lb <= v <= ub (``integer``: a mask, or None for an LP).
    ``on_improving``: called with each better plan HiGHS' MIP search finds, as it finds it (a MIP only)."""
    A = A.tocsc()
    A.sort_indices()
    n_cols, n_rows = A.shape[1], A.shape[0]
    h = new_highs()
    if time_limit is not None:
        h.setOptionValue("time_limit", max(0.05, float(time_limit)))
    is_mip = integer is not None and bool(np.any(integer))
    if is_mip:
        h.setOptionValue("mip_rel_gap", float(gap))
    for key, value in (options or {}).items():
        h.setOptionValue(key, value)
    inf = highspy.kHighsInf
    integrality = (np.asarray(integer, dtype=np.int32) if is_mip else np.zeros(n_cols, dtype=np.int32))
    h.passModel(
        n_cols, n_rows, A.nnz, 1, 1, 0.0,
        np.ascontiguousarray(cost, dtype=np.float64),
        np.ascontiguousarray(lb, dtype=np.float64),
        np.ascontiguousarray(np.where(np.isinf(ub), inf, ub), dtype=np.float64),
        np.ascontiguousarray(np.where(np.isinf(row_lo), -inf, row_lo), dtype=np.float64),
        np.ascontiguousarray(np.where(np.isinf(row_hi), inf, row_hi), dtype=np.float64),
        A.indptr.astype(np.int32), A.indices.astype(np.int32), A.data.astype(np.float64), integrality,
    )
    if cutoff is not None and is_mip:
        h.setOptionValue("objective_bound", float(cutoff))
    if basis is not None and not is_mip:
        hb = highspy.HighsBasis()
        hb.col_status = [_STATUS[v] for v in np.asarray(basis[0]).tolist()]
        hb.row_status = [_STATUS[v] for v in np.asarray(basis[1]).tolist()]
        hb.valid = True
        hb.alien = True
        h.setBasis(hb)
    if start is not None and is_mip:
        sol = highspy.HighsSolution()
        sol.col_value = list(np.asarray(start, dtype=float))
        sol.value_valid = True
        h.setSolution(sol)
    if on_improving is not None and is_mip:
        h.cbMipImprovingSolution.subscribe(lambda event: on_improving(np.array(event.data_out.mip_solution)))
    h.run()
    status = h.getModelStatus()
    info = h.getInfo()
    seconds = h.getRunTime()
    name = {highspy.HighsModelStatus.kOptimal: "OPTIMAL",
            highspy.HighsModelStatus.kInfeasible: "INFEASIBLE"}.get(status, "UNKNOWN")
    has_sol = info.primal_solution_status == 2  # kSolutionStatusFeasible
    values = None
    row_duals = None
    col_duals = None
    hbasis = None
    if has_sol:
        sol = h.getSolution()
        values = np.array(sol.col_value)
        if name == "UNKNOWN":
            name = "FEASIBLE"
        if not is_mip and sol.dual_valid:
            row_duals = np.array(sol.row_dual)
            col_duals = np.array(sol.col_dual)
            b = h.getBasis()
            if b.valid:
                hbasis = (np.array([int(v) for v in b.col_status], dtype=np.int8),
                          np.array([int(v) for v in b.row_status], dtype=np.int8))
    objective = float(info.objective_function_value) if has_sol else INF
    trusted = True
    if is_mip and values is not None:
        # HiGHS 1.16, given a start, now and then answers OPTIMAL with an objective its values do not
        # have: the start's values come back, and a lower objective than the true optimum (4 of 5,338
        # started solves at bench L; one recombination master: 37,953.70 reported, the start's
        # 38,034.20 returned, 37,999.20 its optimum). The values are what a caller gets: they count,
        # and neither the status nor the bound of that answer is taken
        real = float(np.asarray(cost, dtype=np.float64) @ values)
        trusted = abs(real - objective) <= 1e-6 * max(1.0, abs(real))
        if not trusted:
            objective = real
            name = "FEASIBLE"
        values = _settled(A, cost, lb, ub, row_lo, row_hi, integrality.astype(bool), values)
        if values is None:
            name, objective = "UNKNOWN", INF
        else:
            objective = float(np.asarray(cost, dtype=np.float64) @ values)
    if is_mip:
        bound = float(info.mip_dual_bound) if trusted else -INF
        if name == "INFEASIBLE":
            bound = INF
        elif name == "OPTIMAL":
            bound = min(max(bound, -INF), objective)
    else:
        bound = objective
    empty = np.zeros(0, dtype=np.int64)
    answer = Solution(name, empty, empty, values, objective, bound, row_duals, hbasis, seconds, col_duals,
                      inconsistent=not trusted)
    left = None if time_limit is None else float(time_limit) - seconds
    if not trusted and start is not None and (left is None or left > 0.05):
        # the start came back, however far from the optimum (a fleet of 4 pairs: a gang kept at
        # 17.60 USD/h, left unplaced at 14.60, which the search never found): solve once more
        # without the start, for the time left, and keep the better answer
        again = solve_arrays(A, cost, lb, ub, row_lo, row_hi, integer, time_limit=left, basis=basis, gap=gap,
                             cutoff=cutoff, options=options)
        if again.values is not None and again.objective < objective - 1e-9:
            return replace(again, seconds=seconds + again.seconds)
        answer = replace(answer, seconds=seconds + again.seconds)
    return answer


def _cpu_ticks(cpus: set[int]) -> tuple[int, int] | None:
    """(idle, total) clock ticks of these CPUs since boot (Linux' /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    idle = total = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or not name[3:].isdigit() or int(name[3:]) not in cpus:
            continue
        ticks = [int(t) for t in rest.split()[:8]]  # user nice system idle iowait irq softirq steal
        idle += ticks[3] + ticks[4]
        total += sum(ticks)
    return (idle, total) if total else None


class IdleCores:
    """How many of this process' cores sat idle, on average, between one reading and the next:
    whether a solve on several threads would find a core for each. HiGHS' parallel dual simplex
    spins: XL's second LP round took 13.9 s on two threads against 19.1 s on one on an idle
    machine, and 28.6 s against 17.1 s while another process held a core. A reading is None
    where the OS does not tell (not Linux) or the window was too short to tell (under IDLE_WINDOW
    ticks a core, 0.1 s)."""

    def __init__(self) -> None:
        try:
            self.cpus = set(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            self.cpus = set()
        self._last = _cpu_ticks(self.cpus) if self.cpus else None

    def __call__(self) -> float | None:
        now = _cpu_ticks(self.cpus) if self.cpus else None
        last, self._last = self._last, now
        if now is None or last is None or now[1] - last[1] < IDLE_WINDOW * len(self.cpus):
            return None
        return len(self.cpus) * (now[0] - last[0]) / (now[1] - last[1])

    def hold(self, threads: int) -> bool:
        """Whether, since the last reading, the cores a solve's other ``threads - 1`` threads
        would take sat idle, to within IDLE_SLACK of a core (this process running on one)."""
        spare = self()
        return spare is not None and spare >= threads - 1 - IDLE_SLACK


IDLE_WINDOW = 10  # clock ticks a core (USER_HZ, 100 a second on Linux)
IDLE_SLACK = 0.25


# how long past its time limit an isolated solve may run before it is stopped: HiGHS answers within
# about 0.05 s of its limit when it checks it
ISOLATION_GRACE = 0.25


def solve_within(A: Any, cost: FloatArray, lb: FloatArray, ub: FloatArray, row_lo: FloatArray, row_hi: FloatArray,
                 integer: Any, *, time_limit: float | None, threads: int = 1, **kw: Any) -> Solution:
    """``solve_arrays`` in a forked child process, stopped ISOLATION_GRACE seconds past
    ``time_limit`` (status TIME_LIMIT; UNKNOWN if the child died), with the last better plan its
    MIP search had sent back as it went (``on_improving``), or no values where it found none: a
    dumped L master stopped that way threw away the plans it had found (HiGHS, in its root node,
    past its time limit), and the route kept its start. HiGHS 1.16's MIP checks neither its time limit
    nor ``cancelSolve`` in parts of its root node: on a fleet of 300 models x 60 pools (18,613
    columns), the whole model asked for 2.2 s ran 31 s in ``linesearchRounding``'s objective
    propagation, whatever the heuristic options, and a fleet of 200 x 40 10 s. ``threads``: the
    child's own HiGHS thread pool, of this many (this process keeps its pool of one, which the
    small solves want). Where a fork is not to be had (no fork start method, or HiGHS' own
    thread pool, which a child would lack), it runs here, on this process' pool."""
    import multiprocessing

    if time_limit is None or highs_threads() != 1 or "fork" not in multiprocessing.get_all_start_methods():
        return solve_arrays(A, cost, lb, ub, row_lo, row_hi, integer, time_limit=time_limit, **kw)
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)

    def child() -> None:
        try:
            if threads > 1:  # a pool of its own: the one inherited was sized by this process' first solve
                highspy.Highs.resetGlobalScheduler(True)
                kw["options"] = {**(kw.get("options") or {}), "threads": threads}
            send.send(solve_arrays(A, cost, lb, ub, row_lo, row_hi, integer, time_limit=time_limit,
                                   on_improving=lambda values: send.send(_Improving(values)), **kw))
        except BaseException as exc:  # handed to the parent, which raises it
            send.send(exc)

    proc = ctx.Process(target=child, daemon=True)
    proc.start()
    send.close()
    answer: Any = None
    best: FloatArray | None = None  # the last better plan the child sent
    status = "TIME_LIMIT"
    stop = time.monotonic() + time_limit + ISOLATION_GRACE
    try:
        while receive.poll(max(0.0, stop - time.monotonic())):
            got = receive.recv()
            if not isinstance(got, _Improving):
                answer = got
                break
            best = got.values
    except EOFError:  # the child died without an answer
        status = "UNKNOWN"
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        receive.close()
    if isinstance(answer, BaseException):
        raise answer
    if isinstance(answer, Solution):
        return answer
    empty = np.zeros(0, dtype=np.int64)
    if best is not None:  # settled as an answer from ``solve_arrays`` is (a MIP's: only a MIP sends)
        best = _settled(A.tocsc(), cost, lb, ub, row_lo, row_hi, np.asarray(integer, dtype=bool), best)
    objective = float(np.asarray(cost, dtype=np.float64) @ best) if best is not None else INF
    return Solution(status, empty, empty, best, objective, -INF, seconds=time_limit + ISOLATION_GRACE)


@dataclass
class _Improving:
    """A better plan a child's MIP search sent back while it ran (``solve_within``)."""

    values: FloatArray
