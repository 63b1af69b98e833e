"""Pair pricing of the scalable route (``placer.optimizer.lp.pair_values``) against brute force:
for each pair, the least of rc_x·x plus the best routing of at most thr·x of its routes' rate."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from bench.generate import generate, to_fleet
from placer.optimizer.arrays import build_arrays
from placer.optimizer.lp import PairTables, pair_values
from placer.optimizer.matrix import build_matrix
from policies import build_rules

RULES = build_rules(dt.datetime(2026, 11, 28, tzinfo=dt.UTC))


@pytest.fixture(scope="module")
def model():
    return build_matrix(build_arrays(to_fleet(generate(30, 10, seed=7)), RULES), RULES, {})


def brute(model, tables, rc, j, at_least_one):
    a = model.arrays
    x0, y0 = model.blocks["x"][0], model.blocks["y"][0]
    routes = tables.routes[j][tables.routes[j] >= 0]
    pay = sorted((rc[y0 + r], tables.rate[j][k]) for k, r in enumerate(tables.routes[j]) if r >= 0)
    assert len(pay) == len(routes)
    ub = int(model.ub[x0 + j])
    best = np.inf
    for x in range(min(1, ub) if at_least_one else 0, ub + 1):
        room, value = a.pair_thr[j] * x, rc[x0 + j] * x
        for cost, rate in pay:  # the most paying routes first, as much as the replicas serve
            if cost >= 0 or room <= 0:
                break
            take = min(rate, room)
            value += cost * take
            room -= take
        best = min(best, value)
    return best


@pytest.mark.parametrize("at_least_one", [False, True])
@pytest.mark.parametrize("spread", [0.5, 5.0, "balanced"])
def test_integer_pair_values_match_brute_force(model, at_least_one, spread):
    """Reduced costs drawn so that some pairs have paying routes and some none (the fast path);
    ``balanced``: routes worth about a replica each (``balanced_rc``)."""
    tables = PairTables.build(model)
    if spread == "balanced":
        rc = balanced_rc(model, np.random.default_rng(5 + at_least_one))
    else:
        rng = np.random.default_rng(int(spread * 10) + at_least_one)
        rc = model.cost - rng.normal(0.0, spread, model.n_cols) * (rng.random(model.n_cols) < 0.5)
    g, x = pair_values(model, tables, rc, integer=True, at_least_one=at_least_one)
    x0, y0 = model.blocks["x"][0], model.blocks["y"][0]
    routed = tables.routes >= 0
    pays = (np.where(routed, rc[y0 + np.maximum(tables.routes, 0)], 0.0) < 0).any(axis=1)
    assert 0 < pays.sum() < len(pays)  # both paths are taken
    for j in range(model.arrays.n_pairs):
        assert g[j] == pytest.approx(brute(model, tables, rc, int(j), at_least_one), rel=1e-9, abs=1e-9), j
        assert x[j] == int(x[j]) and (not at_least_one or x[j] >= min(1, model.ub[x0 + j]))
    some = np.arange(0, model.arrays.n_pairs, 3)
    g_some, x_some = pair_values(model, tables, rc, integer=True, pairs=some, at_least_one=at_least_one)
    assert np.array_equal(g_some, g[some]) and np.array_equal(x_some, x[some])


def balanced_rc(model, rng):
    """Reduced costs where a route's pay per replica (thr·rc_y) is of the size of the replica's own
    rc_x, so that some routes are worth a replica and some are not: the least of F then falls
    inside the routes, not at the ends."""
    a = model.arrays
    x0, y0 = model.blocks["x"][0], model.blocks["y"][0]
    rc = model.cost.copy()
    rc_x = rng.uniform(-0.5, 3.0, a.n_pairs)
    rc[x0:x0 + a.n_pairs] = rc_x
    per_replica = np.abs(rc_x[a.route_pair]) / np.maximum(a.pair_thr[a.route_pair], 1e-9)
    rc[y0:y0 + a.n_routes] = rng.uniform(-2.5, 0.5, a.n_routes) * per_replica
    return rc


def brute_lp(model, tables, rc, j, at_least_one):
    """The continuous least: F is piecewise linear, so it is reached at an end or where a route fills."""
    a = model.arrays
    x0, y0 = model.blocks["x"][0], model.blocks["y"][0]
    pay = sorted((rc[y0 + r], tables.rate[j][k]) for k, r in enumerate(tables.routes[j]) if r >= 0)
    ub = float(model.ub[x0 + j])
    lo = min(1.0, ub) if at_least_one else 0.0
    thr = a.pair_thr[j]
    xs = {lo, ub}
    if thr > 0:
        filled = 0.0
        for _, rate in pay:
            filled += rate
            xs.add(min(ub, max(lo, filled / thr)))

    def f(x):
        room, value = thr * x, rc[x0 + j] * x
        for cost, rate in pay:
            if cost >= 0 or room <= 0:
                break
            take = min(rate, room)
            value += cost * take
            room -= take
        return value

    return min(f(x) for x in xs)


@pytest.mark.parametrize("at_least_one", [False, True])
def test_continuous_pair_values_match_brute_force(model, at_least_one):
    tables = PairTables.build(model)
    rc = balanced_rc(model, np.random.default_rng(3 + at_least_one))
    g, x = pair_values(model, tables, rc, integer=False, at_least_one=at_least_one)
    g_int, _ = pair_values(model, tables, rc, integer=True, at_least_one=at_least_one)
    ub = model.ub[model.blocks["x"][0]:model.blocks["x"][1]]
    assert np.all((x >= (np.minimum(1.0, ub) if at_least_one else 0.0)) & (x <= ub))
    assert np.all(g <= g_int + 1e-9)
    assert (g < g_int - 1e-6).any()  # integrality shows somewhere
    for j in range(model.arrays.n_pairs):
        assert g[j] == pytest.approx(brute_lp(model, tables, rc, int(j), at_least_one), rel=1e-9, abs=1e-9), j


@pytest.mark.parametrize("k", [1, 2, 4])
def test_cheapest_in_groups_takes_what_a_lexsort_takes(k):
    """The k-pass selection against the sort it replaces, with ties, infinities and empty groups."""
    from placer.optimizer.lp import cheapest_in_groups

    rng = np.random.default_rng(k)
    groups = np.sort(rng.integers(0, 300, 5000))
    values = rng.integers(0, 6, len(groups)).astype(float)  # many ties
    values[rng.random(len(values)) < 0.1] = np.inf
    order = np.lexsort((values, groups))
    rank = np.arange(len(order)) - np.searchsorted(groups[order], groups[order], side="left")
    assert np.array_equal(np.sort(cheapest_in_groups(values, groups, k)), np.sort(order[rank < k]))
    # NaN is never taken before a number of its group
    values[::7] = np.nan
    got = cheapest_in_groups(values, groups, k)
    for g in np.unique(groups[got[np.isnan(values[got])]]):
        members = np.flatnonzero(groups == g)
        assert not (~np.isnan(values[members]) & ~np.isin(members, got)).any()
    assert len(cheapest_in_groups(np.zeros(0), np.zeros(0, dtype=np.int64), k)) == 0


def test_column_generation_does_not_start_a_round_it_cannot_finish(model, monkeypatch):
    """A round that would not end by the deadline is not started (its work would be thrown away):
    with each LP round reported to take 100 s and 150 s to go, one round runs, and its duals
    still give a valid bound."""
    import time

    import placer.optimizer.lp as lp

    calls = []
    real = lp.solve_arrays

    def slow(*args, **kwargs):
        sol = real(*args, **kwargs)
        sol.seconds = 100.0
        calls.append(sol.status)
        return sol

    monkeypatch.setattr(lp, "solve_arrays", slow)
    seed = lp.initial_pairs(model, np.zeros(0, dtype=np.int64), per_demand=1, per_model=1, domains=1)
    out = lp.column_generation(model, PairTables.build(model), seed, deadline=time.monotonic() + 150)
    assert len(calls) == 1 and out.iterations == 1
    assert out.status == "FEASIBLE" and out.duals is not None and np.isfinite(out.duals.bound)
    # given the time, the same start takes more than one round
    monkeypatch.setattr(lp, "solve_arrays", real)
    full = lp.column_generation(model, PairTables.build(model), seed, deadline=time.monotonic() + 60)
    assert full.iterations > 1 and full.status == "OPTIMAL"


def test_column_generation_runs_its_masters_on_idle_cores(model, monkeypatch):
    """Given threads, each master LP runs in a child on that many threads when as many cores sat
    idle since the last solve, and here otherwise (HiGHS' parallel simplex spins: with a core
    taken by another process it is slower than one thread). The LP it converges to is the same."""
    import time

    import placer.optimizer.lp as lp

    seed = lp.initial_pairs(model, np.zeros(0, dtype=np.int64), per_demand=1, per_model=1, domains=1)
    isolated, readings = [], []
    real = lp.solve_within

    def within(*args, **kwargs):
        isolated.append(kwargs["threads"])
        return real(*args, **kwargs)

    class Idle(lp.IdleCores):  # its readings set here, its rule (``hold``) the real one
        spare: float | None = 2.0

        def __init__(self):
            pass

        def __call__(self):
            readings.append(self.spare)
            return self.spare

    monkeypatch.setattr(lp, "solve_within", within)
    monkeypatch.setattr(lp, "IdleCores", Idle)
    one = lp.column_generation(model, PairTables.build(model), seed, deadline=time.monotonic() + 60)
    assert not isolated and not readings  # one thread: no child, no reading
    two = lp.column_generation(model, PairTables.build(model), seed, deadline=time.monotonic() + 60, threads=2)
    assert isolated == [2] * two.iterations and two.iterations > 1
    for busy in (0.5, None):  # a core taken, or no reading: here
        Idle.spare = busy
        isolated.clear()
        here = lp.column_generation(model, PairTables.build(model), seed, deadline=time.monotonic() + 60, threads=2)
        assert not isolated and here.status == "OPTIMAL" and here.value == pytest.approx(one.value, rel=1e-9)
    assert one.status == two.status == "OPTIMAL" and two.value == pytest.approx(one.value, rel=1e-9)
    # its duals (an optimal vertex, maybe another one) still bound: at most the LP, as near as one's
    assert two.duals.bound <= two.value + 1e-6 and two.duals.bound == pytest.approx(one.duals.bound, rel=1e-3)


@pytest.mark.parametrize("elastic_only", [False, True])
def test_domain_cover_takes_the_first_cheapest_pair_of_the_cheapest_domains(model, elastic_only):
    """Against a plain loop: per model, the first cheapest pair of each failure domain, then the
    ``domains`` cheapest of those (ties to the lower domain), with many ties and a NaN."""
    from placer.optimizer.lp import domain_cover

    a = model.arrays
    rng = np.random.default_rng(int(elastic_only))
    values = rng.integers(0, 4, a.n_pairs).astype(float)
    values[::11] = np.nan
    for domains in (1, 2, 3):
        expected = set()
        for mi in range(len(a.models)):
            heads = {}
            for j in range(int(a.pair_ptr[mi]), int(a.pair_ptr[mi + 1])):
                p = int(a.pair_pool[j])
                v = values[j]
                if np.isnan(v) or (elastic_only and not (a.pool_elastic[p] and not a.pool_spot[p])):
                    continue
                d = int(a.pool_domain[p])
                if d not in heads or v < values[heads[d]]:
                    heads[d] = j
            ranked = sorted(heads.items(), key=lambda dj: (values[dj[1]], dj[0]))
            expected |= {j for _, j in ranked[:domains]}
        got = domain_cover(model, values, domains, elastic_only=elastic_only)
        assert len(got) == len(set(got.tolist())) and set(got.tolist()) == expected
