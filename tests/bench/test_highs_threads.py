"""HiGHS' one thread pool per process (``placer.optimizer.highs.running``): solves asking for
another size than the pool's run after the pool is restarted, never against it (HiGHS refuses
them), and a restart waits for the solves running on the pool."""

from __future__ import annotations

import threading
import time

import numpy as np
import scipy.sparse as sp

import placer.optimizer.highs as highs
from placer.optimizer.highs import PARALLEL_LP, solve_arrays


def small_lp(n: int = 40) -> tuple:
    rng = np.random.default_rng(n)
    A = sp.random(n, n, density=0.3, random_state=rng, format="csc") + sp.identity(n, format="csc")
    return A, rng.uniform(1, 2, n), np.zeros(n), np.full(n, 10.0), np.ones(n), np.full(n, np.inf)


def test_solves_on_one_and_on_two_threads_alternate_and_agree():
    A, c, lb, ub, lo, hi = small_lp()
    values = []
    for threads in (1, 2, 1, 2, 2, 1):
        options = {"threads": threads, **(PARALLEL_LP if threads > 1 else {})}
        sol = solve_arrays(A, c, lb, ub, lo, hi, None, time_limit=10, options=options)
        assert sol.status == "OPTIMAL", threads  # HiGHS answers kError to a solve against the pool's size
        values.append(sol.objective)
        assert highs._pool_threads == threads and highs._pool_runs == 0
    assert np.allclose(values, values[0])
    # a MIP after the parallel LP, as the sweep runs after the column generation
    ints = np.ones(len(c), dtype=bool)
    assert solve_arrays(A, c, lb, ub, lo, hi, ints, time_limit=10).status == "OPTIMAL"


def test_a_restart_waits_for_the_solves_running_on_the_pool(monkeypatch):
    """While a one-thread solve runs, a two-thread solve waits for it instead of restarting the
    pool under it; then it restarts the pool, once."""
    A, c, lb, ub, lo, hi = small_lp()
    solve_arrays(A, c, lb, ub, lo, hi, None, time_limit=10, options={"threads": 1})  # the pool: one thread
    resets = []
    real = highs.highspy.Highs.resetGlobalScheduler

    def reset(blocking):
        resets.append(highs._pool_runs)  # solves on the pool at the restart
        real(blocking)

    monkeypatch.setattr(highs.highspy.Highs, "resetGlobalScheduler", staticmethod(reset))
    inside = threading.Event()
    release = threading.Event()

    def long_solve():
        with highs.running(1):
            inside.set()
            release.wait(10)

    t = threading.Thread(target=long_solve)
    t.start()
    assert inside.wait(10)
    done = []
    wide = threading.Thread(target=lambda: done.append(
        solve_arrays(A, c, lb, ub, lo, hi, None, time_limit=10, options={"threads": 2, **PARALLEL_LP}).status))
    wide.start()
    time.sleep(0.3)
    assert not done and not resets  # it waits for the one-thread solve
    release.set()
    t.join(10)
    wide.join(10)
    assert done == ["OPTIMAL"] and resets == [0]
