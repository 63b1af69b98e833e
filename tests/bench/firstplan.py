"""The scalable route's first plan on a small generated fleet, for the tests of what comes after it."""

from __future__ import annotations

import time

import numpy as np

from bench.worker import throughputs
from placer.cost import price
from placer.fleet import Fleet
from placer.optimizer.arrays import build_arrays
from placer.optimizer.lns import Neighbourhoods
from placer.optimizer.lp import PairTables, column_generation, initial_pairs
from placer.optimizer.matrix import MatrixModel, build_matrix
from placer.optimizer.repair import complete, round_and_cover
from placer.placement import Placement, check_hard_constraints
from placer.policy import Rules


def lp_values(model: MatrixModel, tables: PairTables | None = None) -> np.ndarray:
    """The model's LP relaxation, by column generation from the route's initial pairs."""
    lp = column_generation(model, tables or PairTables.build(model), initial_pairs(model, np.zeros(0, dtype=np.int64)),
                           deadline=time.monotonic() + 30)
    assert lp.status == "OPTIMAL"
    return lp.values


def first_plan(fleet: Fleet, rules: Rules) -> tuple[MatrixModel, Neighbourhoods, np.ndarray]:
    """The LP, rounded and completed, with every pair allowed: the model, its neighbourhoods, the plan."""
    model = build_matrix(build_arrays(fleet, rules), rules, {})
    tables = PairTables.build(model)
    allowed = np.ones(model.arrays.n_pairs, dtype=bool)
    hood = Neighbourhoods(model, tables, allowed)
    v = complete(model, hood, round_and_cover(model, lp_values(model, tables), allowed), time_limit=10)
    assert v is not None
    return model, hood, v


def assert_feasible(model: MatrixModel, v: np.ndarray) -> None:
    act = model.A @ v
    tol = 1e-6 * np.maximum(1.0, np.abs(act))
    assert np.all(act >= model.row_lo - tol) and np.all(act <= model.row_hi + tol)
    assert np.all(v >= model.lb - 1e-7) and np.all(v <= model.ub + 1e-7)  # HiGHS: primal feasibility 1e-7
    ints = v[model.integer]
    assert np.allclose(ints, np.round(ints))


def assert_keeps_rules(fleet: Fleet, placement: Placement | None, rules: Rules) -> None:
    """The plan keeps every hard constraint and required policy."""
    assert placement is not None
    assert check_hard_constraints(fleet, placement, throughputs(fleet, rules)) == []
    assert [v for v in price(fleet, placement, rules).violations if v.enforcement == "required"] == []
