"""``highs.solve_arrays``: what a MIP answer reports must be what its values are."""

from __future__ import annotations

import math

import numpy as np
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
