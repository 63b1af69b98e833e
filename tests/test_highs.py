"""``highs.solve_arrays``: what a MIP answer reports must be what its values are."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

import placer.optimizer.highs as highs


def knapsack():
    """max 5a + 4b + 3c (as min of the negation) with 2a + 3b + c <= 5, binaries: optimum -9 (a and b)."""
    A = sp.csc_matrix(np.array([[2.0, 3.0, 1.0]]))
    cost = np.array([-5.0, -4.0, -3.0])
    return A, cost, np.zeros(3), np.ones(3), np.array([-np.inf]), np.array([5.0]), np.ones(3, dtype=bool)


def test_a_consistent_answer_keeps_its_status_and_bound():
    A, cost, lb, ub, lo, hi, integer = knapsack()
    sol = highs.solve_arrays(A, cost, lb, ub, lo, hi, integer, time_limit=5.0, start=np.array([1.0, 0.0, 0.0]))
    assert sol.status == "OPTIMAL" and sol.values is not None
    assert sol.objective == cost @ sol.values == -9.0 and sol.bound == -9.0 and not sol.inconsistent


def test_an_objective_the_values_do_not_have_is_not_taken(monkeypatch):
    """HiGHS 1.16 has answered OPTIMAL with an objective below the true optimum and the start's
    values: the answer then counts as the values' own cost, FEASIBLE, without a bound."""

    class Info:
        def __init__(self, info):
            self._info = info

        def __getattr__(self, name):
            value = getattr(self._info, name)
            return value - 7.0 if name in ("objective_function_value", "mip_dual_bound") else value

    class Lying:
        def __init__(self, h):
            self._h = h

        def getInfo(self):
            return Info(self._h.getInfo())

        def __getattr__(self, name):
            return getattr(self._h, name)

    real_new = highs.new_highs
    monkeypatch.setattr(highs, "new_highs", lambda: Lying(real_new()))
    A, cost, lb, ub, lo, hi, integer = knapsack()
    sol = highs.solve_arrays(A, cost, lb, ub, lo, hi, integer, time_limit=5.0)
    assert sol.values is not None
    assert sol.objective == float(cost @ sol.values) == -9.0
    assert sol.status == "FEASIBLE" and sol.bound == -math.inf and sol.inconsistent


def rate_on_a_pool():
    """A replica x (integer, 0..1, 1 USD/h) and its rate y (0..10, worth 1e-4 a unit): y <= 5,461 x;
    optimum x = y = 0."""
    A = sp.csc_matrix(np.array([[-5461.0, 1.0], [0.0, 1.0]]))
    cost = np.array([1.0, -1e-4])
    return A, cost, np.zeros(2), np.array([1.0, 10.0]), np.array([-np.inf, 0.0]), np.array([0.0, np.inf]), \
        np.array([True, False])


def answering(monkeypatch, values):
    """HiGHS' first answer (the MIP's) made ``values``: within its tolerances, as it may answer."""
    real_new = highs.new_highs
    told = [False]

    class Answer:
        def __init__(self, h):
            self._h = h

        def getSolution(self):
            sol = self._h.getSolution()
            if not told[0]:
                told[0] = True
                sol.col_value = list(values)
            return sol

        def __getattr__(self, name):
            return getattr(self._h, name)

    monkeypatch.setattr(highs, "new_highs", lambda: Answer(real_new()))


def test_a_mip_answer_comes_back_integral_with_its_rows_held(monkeypatch):
    """A replica count of 1e-8 is 0 within HiGHS' integrality tolerance, and its 5.3e-5 of rate
    meets y <= 5,461 x within HiGHS' tolerance. Rounded, as every caller takes it, the rate would
    sit on a pool with no replica (bench L: a recombination master's whole plan refused for it).
    The answer comes back with x = 0 and the rate set again with x fixed: 0."""
    answering(monkeypatch, [1e-8, 5.3e-5])
    A, cost, lb, ub, lo, hi, integer = rate_on_a_pool()
    sol = highs.solve_arrays(A, cost, lb, ub, lo, hi, integer, time_limit=5.0)
    assert sol.values is not None and list(sol.values) == [0.0, 0.0]
    assert sol.objective == 0.0 and sol.status == "OPTIMAL"


def test_a_mip_answer_that_rounding_breaks_beyond_repair_is_no_answer(monkeypatch):
    """With the rate held at 5e-5 at least, no rate fits beside x = 0: the rounded answer cannot
    meet its rows, and the solve answers nothing rather than a plan that breaks a row."""
    answering(monkeypatch, [1e-8, 5.3e-5])
    A, cost, lb, ub, _, hi, integer = rate_on_a_pool()
    floor = np.array([-np.inf, 5e-5])
    sol = highs.solve_arrays(A, cost, lb, ub, floor, hi, integer, time_limit=5.0)
    assert sol.values is None and sol.status == "UNKNOWN"


def test_an_isolated_solve_answers_as_the_solve_itself():
    A, cost, lb, ub, lo, hi, integer = knapsack()
    here = highs.solve_arrays(A, cost, lb, ub, lo, hi, integer, time_limit=5.0)
    there = highs.solve_within(A, cost, lb, ub, lo, hi, integer, time_limit=5.0)
    assert there.status == here.status == "OPTIMAL" and there.objective == here.objective == -9.0
    assert np.array_equal(there.values, here.values)


def test_an_isolated_solve_is_stopped_at_its_time_limit(monkeypatch):
    """HiGHS checks no time limit in parts of its MIP root node (it ran 31 s of a 2.2 s limit): a
    solve that does not come back is stopped shortly past its limit, with no values."""
    import time

    def stuck(*args, **kw):
        time.sleep(60)

    monkeypatch.setattr(highs, "solve_arrays", stuck)
    started = time.monotonic()
    sol = highs.solve_within(*knapsack(), time_limit=0.3)
    assert sol.status == "TIME_LIMIT" and sol.values is None and not sol.feasible
    assert time.monotonic() - started < 30  # stopped, not waited out


def test_an_isolated_solve_stopped_past_its_limit_keeps_the_best_plan_its_search_sent(monkeypatch):
    """A child whose search found plans and then did not come back (HiGHS past its time limit in its
    root node) is stopped shortly past its limit with the last plan it sent (TIME_LIMIT, values, their
    cost, no bound), not with nothing: a dumped L master stopped at 4.5 s kept 37,287.51 USD/h."""
    import os
    import time

    parent, real = os.getpid(), highs.solve_arrays

    def found_then_stuck(*args, **kw):
        sol = real(*args, **kw)  # its search reports each better plan as it finds it
        if os.getpid() != parent:
            time.sleep(60)
        return sol

    monkeypatch.setattr(highs, "solve_arrays", found_then_stuck)
    A, cost, lb, ub, lo, hi, integer = knapsack()
    started = time.monotonic()
    sol = highs.solve_within(A, cost, lb, ub, lo, hi, integer, time_limit=0.5)
    assert time.monotonic() - started < 30  # stopped, not waited out
    assert sol.status == "TIME_LIMIT" and sol.values is not None
    assert sol.values.tolist() == [1.0, 1.0, 0.0] and sol.objective == -9.0 and sol.bound == -math.inf
    # an LP reports no plans as it goes: stopped, it has none
    sol = highs.solve_within(A, cost, lb, ub, lo, hi, None, time_limit=0.5)
    assert sol.status == "TIME_LIMIT" and sol.values is None


def test_an_isolated_solve_raises_what_the_solve_raised(monkeypatch):
    def broken(*args, **kw):
        raise ValueError("no such option")

    monkeypatch.setattr(highs, "solve_arrays", broken)
    with pytest.raises(ValueError, match="no such option"):
        highs.solve_within(*knapsack(), time_limit=5.0)


def test_an_isolated_solve_whose_process_dies_has_no_answer(monkeypatch):
    import os

    monkeypatch.setattr(highs, "solve_arrays", lambda *args, **kw: os._exit(3))
    sol = highs.solve_within(*knapsack(), time_limit=5.0)
    assert sol.status == "UNKNOWN" and sol.values is None


def transport(n: int = 30, seed: int = 0):
    """A transportation LP, n sources x n sinks (dense enough for the parallel dual simplex)."""
    rng = np.random.default_rng(seed)
    supply = rng.integers(10, 30, n).astype(float)
    demand = supply[rng.permutation(n)] * 0.9
    i, j = np.divmod(np.arange(n * n), n)
    A = sp.vstack([sp.csc_matrix((np.ones(n * n), (i, np.arange(n * n))), shape=(n, n * n)),
                   sp.csc_matrix((np.ones(n * n), (j, np.arange(n * n))), shape=(n, n * n))]).tocsc()
    lo = np.r_[np.full(n, -np.inf), demand]
    hi = np.r_[supply, np.full(n, np.inf)]
    return A, rng.random(n * n) * 10, np.zeros(n * n), np.full(n * n, np.inf), lo, hi


def test_an_isolated_solve_runs_on_threads_of_its_own(monkeypatch):
    """A large LP's child runs HiGHS on a pool of its own threads: asked of this process' pool,
    sized by its first solve, HiGHS answers nothing. The answer (value and duals) is the
    one-thread solve's, and this process' own solves keep their pool of one."""
    A, cost, lb, ub, lo, hi = transport()
    here = highs.solve_arrays(A, cost, lb, ub, lo, hi, None, time_limit=10.0)  # this process' pool: one thread
    assert here.status == "OPTIMAL"
    options = {"simplex_strategy": 2}
    mismatched = highs.solve_arrays(A, cost, lb, ub, lo, hi, None, time_limit=10.0, options={**options, "threads": 2})
    assert mismatched.values is None  # why the child makes a pool of its own
    there = highs.solve_within(A, cost, lb, ub, lo, hi, None, time_limit=10.0, threads=2, options=options)
    assert there.status == "OPTIMAL" and there.objective == pytest.approx(here.objective, rel=1e-9)
    # the duals price the same rows: their bound is the value
    assert float(np.r_[lo[A.shape[0] // 2:]] @ there.row_duals[A.shape[0] // 2:]
                 + hi[:A.shape[0] // 2] @ there.row_duals[:A.shape[0] // 2]) == pytest.approx(here.objective, rel=1e-6)
    again = highs.solve_arrays(A, cost, lb, ub, lo, hi, None, time_limit=10.0)
    assert again.status == "OPTIMAL"
    # the child was asked for two threads
    real = highs.solve_arrays

    def check(*args, **kw):
        if kw.get("options", {}).get("threads") != 2:
            raise AssertionError(f"the child ran on {kw.get('options', {}).get('threads')} threads")
        return real(*args, **kw)

    monkeypatch.setattr(highs, "solve_arrays", check)
    assert highs.solve_within(A, cost, lb, ub, lo, hi, None, time_limit=10.0, threads=2, options=options).feasible


def test_idle_cores_tell_a_busy_core_from_an_idle_one(monkeypatch):
    """Read from /proc/stat: the cores of this process' affinity, idle and iowait ticks over all."""
    import io

    stats = iter([
        "cpu  900 0 100 1000 0 0 0 0 0 0\ncpu0 100 0 0 400 0 0 0 0 0 0\ncpu1 300 0 50 300 0 0 0 0 0 0\n"
        "cpu7 500 0 50 300 0 0 0 0 0 0\nintr 1\n",
        # cpu0 busy 100 ticks; cpu1 idle 95 and waiting 5; cpu7 (not this process') idle
        "cpu  900 0 100 1000 0 0 0 0 0 0\ncpu0 200 0 0 400 0 0 0 0 0 0\ncpu1 300 0 50 395 5 0 0 0 0 0\n"
        "cpu7 500 0 50 400 0 0 0 0 0 0\nintr 1\n",
        # 2 ticks later: too short a window to tell
        "cpu  900 0 100 1000 0 0 0 0 0 0\ncpu0 201 0 0 400 0 0 0 0 0 0\ncpu1 300 0 50 396 5 0 0 0 0 0\n",
    ])
    monkeypatch.setattr(highs.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: io.StringIO(next(stats)))
    idle = highs.IdleCores()
    assert idle() == pytest.approx(1.0)  # one of two cores idle
    assert idle() is None
