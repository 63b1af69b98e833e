"""Smoke test of the scalable route on a tiny generated fleet (fast; no timing assertions).

The route's plan must keep every hard constraint and required policy, cost exactly what
``placer.cost.price`` says, report a bound no higher than its cost, and be no worse than
the cheapest-pool (a) and most-allocated (b) baselines.
"""

from __future__ import annotations

import datetime as dt
import math

import pytest

from bench.baselines import cheapest_pool, most_allocated
from bench.generate import generate, to_fleet, write_fleet
from placer.cost import price
from placer.fleet import load_fleet
from placer.optimizer.arrays import build_arrays
from placer.optimizer.large import optimize_large
from placer.placement import check_hard_constraints
from policies import build_rules

RULES = build_rules(dt.datetime(2026, 11, 28, tzinfo=dt.UTC))


@pytest.fixture(scope="module")
def fleet():
    return to_fleet(generate(12, 8, seed=3))


@pytest.fixture(scope="module")
def result(fleet):
    return optimize_large(fleet, RULES, time_limit=3.0)


def throughputs(fleet):
    a = build_arrays(fleet, RULES)
    return {(a.models[m].name, a.pools[p].name): float(t)
            for m, p, t in zip(a.pair_model.tolist(), a.pair_pool.tolist(), a.pair_thr.tolist(), strict=True)}


def test_plan_keeps_hard_constraints_and_required_policies(fleet, result):
    assert result.placement is not None
    assert check_hard_constraints(fleet, result.placement, throughputs(fleet)) == []
    assert [v for v in price(fleet, result.placement, RULES).violations if v.enforcement == "required"] == []


def test_objective_is_the_price_of_the_plan(fleet, result):
    cost = price(fleet, result.placement, RULES)
    assert result.objective == pytest.approx(cost.objective, rel=1e-6, abs=1e-6)
    assert sum(result.terms.values()) == pytest.approx(cost.objective, rel=1e-6, abs=1e-6)


def test_bound_is_below_the_plan(result):
    assert math.isfinite(result.bound)
    assert result.bound <= result.objective + 1e-6


@pytest.mark.parametrize("baseline", [cheapest_pool, most_allocated])
def test_no_worse_than_baselines(fleet, result, baseline):
    plan = baseline(fleet, RULES)
    assert plan.placement is not None
    assert result.objective <= price(fleet, plan.placement, RULES).objective + 1e-6


def test_generator_is_deterministic_and_round_trips_through_yaml(tmp_path):
    docs = generate(6, 5, seed=7)
    assert docs == generate(6, 5, seed=7)
    write_fleet(docs, tmp_path / "fleet")
    from_disk = load_fleet(tmp_path / "fleet")
    in_memory = to_fleet(docs)
    assert from_disk.digest == in_memory.digest
    assert len(in_memory.models) == 6 and len(in_memory.pools) == 5
