"""A re-plan on a model of the pairs around what runs (``FleetArrays.restrict``): that model is
the full one with the other pairs held at zero, its bound (prices set on every pair) still holds
for the whole fleet, and the plan keeps every rule."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

import placer.optimizer.large as large
from bench.generate import generate, scale_demand, to_fleet
from bench.worker import check
from placer.cost import price
from placer.optimizer.arrays import build_arrays
from placer.optimizer.highs import solve
from placer.optimizer.lp import Master, PairTables, initial_pairs, lagrangian, simple_duals, simple_prices
from placer.optimizer.matrix import _Builder, build_matrix
from policies import build_rules

RULES = build_rules(dt.datetime(2026, 11, 28, tzinfo=dt.UTC))


@pytest.fixture(scope="module")
def docs():
    return generate(30, 20, seed=5)


@pytest.fixture(scope="module")
def running(docs):
    """What runs: the first plan of the fleet."""
    first = large.optimize_large(to_fleet(docs), RULES, time_limit=3.0)
    assert first.placement is not None
    return {k: r for k, r in first.placement.replicas.items() if r > 0}


@pytest.fixture(scope="module")
def restricted(docs, running):
    """The full model and a restricted one (a few pairs per model besides what runs)."""
    arrays = build_arrays(to_fleet(scale_demand(docs, 1)), RULES)
    full = build_matrix(arrays, RULES, running, cuts=False)
    keep = initial_pairs(full, np.flatnonzero(full.current > 0), per_demand=1, per_model=1, domains=2)
    assert 0 < keep.sum() < 0.7 * arrays.n_pairs
    return full, keep, build_matrix(arrays.restrict(keep), RULES, running, cuts=False)


def plan_value(model):
    """The value of a plan of the full model (above its optimum)."""
    best = solve(model, np.arange(model.n_cols), integer=True, time_limit=5, gap=1e-3)
    assert best.values is not None
    return best.objective


def test_restricted_arrays_keep_models_pools_demand_and_route_order(restricted):
    full, keep, sub = restricted
    a, s = full.arrays, sub.arrays
    assert s.parent is a and s.models == a.models and s.pools == a.pools
    assert np.array_equal(s.dem_rate, a.dem_rate)
    js = np.flatnonzero(keep)
    assert np.array_equal(s.pair_model, a.pair_model[js]) and np.array_equal(s.pair_pool, a.pair_pool[js])
    assert np.all(np.diff(s.route_dem) >= 0)
    # every route kept is its pair's, renumbered; none of a pair left out
    assert np.array_equal(js[s.route_pair], a.route_pair[keep[a.route_pair]])
    for d in range(len(s.dem_model)):
        assert np.all(s.route_dem[s.route_ptr[d]:s.route_ptr[d + 1]] == d)
    assert np.array_equal(s.current_vector({}), np.zeros(s.n_pairs))
    assert np.array_equal(sub.current, full.current[js])


def test_big_m_terms_read_every_pair(restricted):
    """A rule's bound over a model's pairs on some pools is the full model's, not the restricted
    one's (a spread rule would otherwise skip a model that the full fleet lets reach N)."""
    full, _, sub = restricted
    a = full.arrays
    on_full, on_sub = _Builder(a), _Builder(sub.arrays)
    pools = a.pools[: len(a.pools) // 2]
    lower = 0
    for m in a.models:
        assert on_sub.max_replicas_on(m.name, pools) == on_full.max_replicas_on(m.name, pools)
        lower += sum(int(sub.arrays.pair_max[j]) for j in on_sub._pairs_on(m.name, pools))
    assert lower < sum(on_full.max_replicas_on(m.name, pools) for m in a.models)


def test_restricted_model_is_the_full_one_with_the_other_pairs_at_zero(restricted, running):
    full, keep, sub = restricted
    x0, x1 = full.blocks["x"]
    ub = full.ub.copy()
    ub[x0:x1][~keep] = 0.0
    # the LP relaxations, to the last digit (a MIP to optimality takes minutes here)
    whole = solve(full, np.arange(full.n_cols), integer=False, time_limit=60, ub=ub, lb=full.lb)
    part = solve(sub, np.arange(sub.n_cols), integer=False, time_limit=60)
    assert whole.status == part.status == "OPTIMAL"
    assert part.objective == pytest.approx(whole.objective, rel=1e-9)
    # and a plan of the restricted model is one of the whole fleet, at the same cost
    plan = solve(sub, np.arange(sub.n_cols), integer=True, time_limit=5, gap=1e-2)
    assert plan.values is not None
    values = sub.rounded(plan.values)
    cost = price(full.arrays.fleet, large.placement_of(sub, values), RULES, current=running)
    assert [v for v in cost.violations if v.enforcement == "required"] == []
    assert cost.objective == pytest.approx(sum(large.objective_terms(sub, values).values()), rel=1e-6)


@pytest.mark.parametrize("share", [None, 0.3, 0.6])
def test_bound_of_the_restricted_model_holds_for_the_whole_fleet(restricted, running, share):
    """With prices set on every pair, the restricted model's bound is the full model's simple
    bound whichever pairs are kept (those left out are each worth 0 there), below a plan of the
    whole fleet; the restricted model's own prices, which miss the cheapest routes left out, are not."""
    full, keep, _ = restricted
    if share is not None:
        keep = np.random.default_rng(int(share * 10)).random(full.arrays.n_pairs) < share
    sub = build_matrix(full.arrays.restrict(keep), RULES, running, cuts=False)
    serve = Master.serve_rows
    whole = lagrangian(full, PairTables.build(full), simple_duals(full), serve(full), integer=True, with_lp=False)
    columns = build_matrix(full.arrays, RULES, running, columns_only=True)
    part = lagrangian(sub, PairTables.build(sub), simple_duals(sub, simple_prices(columns)), serve(sub),
                      integer=True, with_lp=False)
    assert part.bound == pytest.approx(whole.bound, rel=1e-9)
    assert part.bound <= plan_value(full) + 1e-6
    if share is not None:
        own = lagrangian(sub, PairTables.build(sub), simple_duals(sub), serve(sub), integer=True, with_lp=False)
        assert own.bound > whole.bound + 1e-6


def test_replan_on_the_restricted_model_keeps_every_rule(docs, running, monkeypatch):
    monkeypatch.setattr(large, "SMALL_PAIRS", 0)  # the restricted model at any size
    fleet = to_fleet(scale_demand(docs, 1))
    said = []
    result = large.optimize_large(fleet, RULES, running, said.append, time_limit=3.0)
    said = result.log  # the route's record of each step done, its time and note
    assert any("around what runs" in line for line in said)
    assert result.placement is not None
    got = check(fleet, RULES, result.placement, current=running)  # the bench's own checks, against what runs
    assert got["hard"] == 0, got["hard_examples"]
    assert got["required_violations"] == 0, got["required_examples"]
    assert result.objective == pytest.approx(got["cost"], rel=1e-6, abs=1e-6)
    assert math.isfinite(result.bound) and result.bound <= result.objective + 1e-6


def test_replan_pairs_hold_what_runs_and_room_on_elastic_pools(restricted):
    """What runs, and per demand entry its cheapest routes to elastic pools with room for a
    replica now: where a re-plan puts demand that grew past the cheap (full) pools."""
    full, _, _ = restricted
    a = full.arrays
    columns = build_matrix(a, RULES, {}, columns_only=True)
    columns.current = columns.placed = full.current
    keep = large.replan_pairs(columns)
    assert keep[full.current > 0].all()
    used = np.bincount(a.pair_pool, weights=full.current * a.pair_c, minlength=len(a.pools))
    per_replica = large.per_replica_cost(columns)
    y0 = columns.blocks["y"][0]
    checked = 0
    for d in range(len(a.dem_model)):
        rooms = []
        for r in range(int(a.route_ptr[d]), int(a.route_ptr[d + 1])):
            j = int(a.route_pair[r])
            p = int(a.pair_pool[j])
            room = a.pool_max_nodes[p] * a.pool_per_node[p] - used[p]
            if a.pool_elastic[p] and room >= large.REPLAN_FREE_REPLICAS * a.pair_c[j]:
                rooms.append((columns.cost[y0 + r] + per_replica[j] / a.pair_thr[j], r, j))
        for _, _, j in sorted(rooms)[:large.REPLAN_ROUTES]:
            assert keep[j]
            checked += 1
    assert checked > len(a.dem_model)


def test_bound_holds_when_an_elastic_pool_with_minimum_nodes_loses_all_its_pairs(docs):
    """Its nodes are paid either way; the restricted model still prices them as the full one does
    (through the pool's capacity row), not once more on top of the demand they serve."""
    import copy

    docs = copy.deepcopy(docs)
    pool = next(d for d in docs if d["kind"] == "Pool" and "min" in d["spec"]["nodes"])
    pool["spec"]["nodes"]["min"] = 2
    arrays = build_arrays(to_fleet(docs), RULES)
    p = arrays.pool_index[pool["metadata"]["name"]]
    keep = arrays.pair_pool != p
    assert arrays.pool_min_nodes[p] == 2 and (~keep).any()
    full = build_matrix(arrays, RULES, {}, cuts=False)
    sub = build_matrix(arrays.restrict(keep), RULES, {}, cuts=False)
    serve = Master.serve_rows
    whole = lagrangian(full, PairTables.build(full), simple_duals(full), serve(full), integer=True, with_lp=False)
    prices = simple_prices(build_matrix(arrays, RULES, {}, columns_only=True))
    part = lagrangian(sub, PairTables.build(sub), simple_duals(sub, prices), serve(sub), integer=True, with_lp=False)
    assert part.bound == pytest.approx(whole.bound, rel=1e-9)
