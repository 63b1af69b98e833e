"""The one-model sweep of the scalable route (``placer.optimizer.lns.sweep``), on a generated fleet:
it pays for less idle replica capacity, keeps every row, and its threads never take a stale answer."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pytest

import placer.optimizer.lns as lns
from bench.generate import generate, to_fleet
from placer.optimizer.arrays import build_arrays
from placer.optimizer.lns import sweep, unused_capacity
from policies import build_rules
from tests.bench.firstplan import assert_feasible, assert_keeps_rules
from tests.bench.firstplan import first_plan as plan_first

RULES = build_rules(dt.datetime(2026, 11, 28, tzinfo=dt.UTC))


@pytest.fixture(scope="module")
def first_plan():
    """The route's first plan on a 60 x 14 fleet: the LP, rounded and completed."""
    return plan_first(to_fleet(generate(60, 14, seed=11)), RULES)


@pytest.mark.parametrize("workers", [1, 2])
def test_sweep_pays_for_less_idle_capacity_and_keeps_every_row(first_plan, workers):
    model, hood, v = first_plan
    assert unused_capacity(model, v).sum() > 1.0  # the rounding left idle replicas to win back
    better, stats = sweep(model, hood, v, deadline=time.monotonic() + 60, workers=workers)
    assert_feasible(model, better)
    assert float(model.cost @ better) < float(model.cost @ v) - 1.0
    assert unused_capacity(model, better).sum() < unused_capacity(model, v).sum()
    assert stats.steps >= int((unused_capacity(model, v) > 1e-9).sum())  # every such model had its turn
    assert stats.improved > 0


def test_an_answer_that_another_thread_made_stale_is_not_taken(first_plan):
    """A step solved against the plan of a moment ago: if the rows it touches have moved since
    (another thread took the capacity), taking it would break them; it is refused as stale."""
    model, hood, v = first_plan
    v = v.copy()
    act = model.A @ v
    waste = unused_capacity(model, v)
    for mi in np.argsort(-waste)[:10]:
        free, part, run = lns._prepare(model, hood, act, v, np.array([mi]), 5.0)
        sol = run()
        new = sol.values.copy()
        new[model.integer[free]] = np.round(new[model.integer[free]])
        grows = np.flatnonzero(part.sub @ (new - v[free]) > 1e-6)
        grows = grows[np.isfinite(model.row_hi[part.rows[grows]])]
        if float(model.cost[free] @ new) < float(model.cost[free] @ v[free]) - 1e-6 and len(grows):
            break
    else:
        pytest.fail("no model's step both gains and fills a bounded row: the fixture no longer tests this")
    row = part.rows[grows[0]]
    moved = act.copy()
    moved[row] = model.row_hi[row]  # someone else filled that row meanwhile
    before = v.copy()
    old, new_cost, stale = lns._commit(model, moved, v, free, part, sol)
    assert stale and new_cost == old
    assert np.array_equal(v, before)  # nothing taken
    old, new_cost, stale = lns._commit(model, act, v, free, part, sol)  # against the plan it was solved for
    assert not stale and new_cost < old


def test_an_error_on_a_sweep_thread_reaches_the_caller(first_plan, monkeypatch):
    model, hood, v = first_plan
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("HiGHS went away")

    monkeypatch.setattr(lns, "solve_arrays", broken)
    with pytest.raises(RuntimeError, match="HiGHS went away"):
        sweep(model, hood, v, deadline=time.monotonic() + 10, workers=2)
    assert calls


def test_unmet_demand_puts_its_model_first_in_the_unmet_neighbourhood_and_the_sweep(first_plan):
    """A model whose demand goes unserved (here: its routes emptied) is the first the unmet
    neighbourhood picks, with the models holding the pools it could use; the sweep serves it again."""
    model, hood, v = first_plan
    a = model.arrays
    y0, y1 = model.blocks["y"]
    u0 = model.blocks["u"][0]
    mi = int(np.argmax(np.bincount(a.dem_model, weights=a.dem_rate, minlength=len(a.models))))
    dems = np.flatnonzero(a.dem_model == mi)
    starved = v.copy()
    starved[y0:y1][np.isin(a.route_dem, dems)] = 0.0
    starved[u0 + dems] = a.dem_rate[dems]
    assert_feasible(model, starved)  # unserved demand is allowed, at its price
    lost = hood.unmet_cost(starved)
    assert int(np.argmax(lost)) == mi and lost[mi] == pytest.approx(float(model.cost[u0 + dems] @ a.dem_rate[dems]))
    picked = hood.unmet(starved, 6)
    assert mi in picked and len(picked) > 1
    served, _ = sweep(model, hood, starved, deadline=time.monotonic() + 60, workers=2)
    assert_feasible(model, served)
    assert hood.unmet_cost(served)[mi] < 0.01 * lost[mi]


def test_ctrl_c_during_a_sweep_stops_every_thread_at_once(first_plan, monkeypatch):
    """Ctrl-C lands on the calling thread, inside its HiGHS call: the other thread must not go on
    sweeping until the deadline before the interrupt reaches the user."""
    model, hood, v = first_plan
    real = lns.solve_arrays
    calls: list[str] = []

    def interrupted(*args, **kwargs):
        import threading

        calls.append(threading.current_thread().name)
        if threading.current_thread() is threading.main_thread():
            raise KeyboardInterrupt
        time.sleep(0.05)
        return real(*args, **kwargs)

    monkeypatch.setattr(lns, "solve_arrays", interrupted)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        sweep(model, hood, v, deadline=time.monotonic() + 60, workers=2)
    assert time.monotonic() - started < 5
    assert len([c for c in calls if c != "MainThread"]) <= 2  # the other thread stopped after its step


def test_the_route_sweeps_when_the_whole_model_is_too_large_for_highs(monkeypatch):
    """Through ``optimize_large``: a fleet over FULL_MIP_COLS (lowered here) gets the sweep, which
    improves the first plan, and the plan keeps every hard constraint and required policy."""
    import placer.optimizer.large as large

    monkeypatch.setattr(large, "FULL_MIP_COLS", 0)
    fleet = to_fleet(generate(60, 14, seed=11))
    said: list[str] = []
    result = large.optimize_large(fleet, RULES, progress=said.append, time_limit=6.0)
    said = result.log  # the route's record of each step done, its time and note
    first = float(next(s for s in said if s.startswith("complete:")).rsplit("value ", 1)[1])
    swept = next(s for s in said if s.startswith("sweep:"))
    assert float(swept.rsplit("value ", 1)[1]) < first - 1.0
    assert f"on {large.search_threads(None)} threads" in swept  # Settings leave solver.workers unset: the cores
    assert result.objective <= first
    assert_keeps_rules(fleet, result.placement, RULES)


def test_touched_rows_are_the_rows_a_columns_slice_touches():
    import scipy.sparse as sp

    rng = np.random.default_rng(4)
    A = sp.random(400, 300, density=0.02, format="csc", random_state=rng)
    for cols in (np.sort(rng.choice(300, 40, replace=False)), np.array([7]), np.arange(300)):
        rows, sub = lns.touched_rows(A, cols)
        assert np.array_equal(rows, np.unique(A[:, cols].indices))
        assert np.array_equal(sub.toarray(), A[:, cols][rows, :].toarray())
        assert sub.shape == (len(rows), len(cols))


def test_a_steps_free_columns_hold_every_policy_variable_in_its_replicas_rows(first_plan):
    """The policy variables come from a rows x policy-variables matrix; the same set as reading
    every row its replicas touch."""
    model, hood, _ = first_plan
    a = model.arrays
    aux0, aux1 = model.blocks["aux"]
    assert aux1 > aux0  # the fleet has policy variables
    for models in (np.array([0]), np.array([3, 17, 40]), hood.active_models):
        cols = hood.columns(models)
        pairs = np.concatenate([np.arange(a.pair_ptr[i], a.pair_ptr[i + 1]) for i in models])
        pairs = pairs[hood.allowed[pairs]]
        rows = np.unique(hood.csc[:, hood.x0 + pairs].indices)
        inrow = hood.csr[rows].indices
        expect = np.unique(inrow[(inrow >= aux0) & (inrow < aux1)])
        assert np.array_equal(cols[(cols >= aux0) & (cols < aux1)], expect)
        assert len(expect) or len(models) < 10  # the whole fleet's replicas touch some


def test_beyond_every_pair_the_searches_use_each_models_nearest_pairs_and_keep_every_rule(monkeypatch):
    """Through ``optimize_large`` with EVERY_PAIR lowered: the sweep and the neighbourhood search
    get each model's pairs nearest to pricing out and the pairs its plans use, not all of them,
    and the plan still keeps every hard constraint and required policy (a model that cannot fit
    may still be placed on any of its pairs, by the construction's rescue)."""
    import placer.optimizer.large as large

    monkeypatch.setattr(large, "EVERY_PAIR", 0)
    monkeypatch.setattr(large, "NEAR_PAIRS", 2)
    seen = []
    real = large.Neighbourhoods

    def spy(model, tables, allowed, *args, **kwargs):
        seen.append(allowed)
        return real(model, tables, allowed, *args, **kwargs)

    monkeypatch.setattr(large, "Neighbourhoods", spy)
    fleet = to_fleet(generate(60, 14, seed=11))
    result = large.optimize_large(fleet, RULES, time_limit=6.0)
    a = build_arrays(fleet, RULES)
    assert len(seen) == 1 and 0 < seen[0].sum() < a.n_pairs
    assert_keeps_rules(fleet, result.placement, RULES)
