"""The Lagrangian bound by model (``placer.optimizer.bound``) on fleets small enough to solve
exactly: it must never pass the optimum, for any multipliers of the right signs, and at the
LP's duals it must not fall below the LP bound."""

from __future__ import annotations

import datetime as dt
import math
import time

import numpy as np
import pytest

from bench.generate import generate, to_fleet
from placer.optimizer.arrays import build_arrays
from placer.optimizer.bound import Lagrangian, model_blocks, model_bound
from placer.optimizer.greedy import greedy
from placer.optimizer.highs import solve
from placer.optimizer.lp import Master, PairTables, column_generation, initial_pairs, lagrangian
from placer.optimizer.matrix import build_matrix
from policies import build_rules

RULES = build_rules(dt.datetime(2026, 11, 28, tzinfo=dt.UTC))


def exact(model) -> float:
    sol = solve(model, np.arange(model.n_cols), integer=True, time_limit=120.0, gap=0.0)
    assert sol.status == "OPTIMAL"
    return sol.objective


def lp_duals(model):
    gx, _ = greedy(model)
    seed = initial_pairs(model, np.zeros(0, dtype=np.int64)) | (gx > 0)
    lp = column_generation(model, PairTables.build(model), seed, deadline=time.monotonic() + 60, view=Master(model))
    assert lp.status == "OPTIMAL" and lp.duals is not None
    return lp.duals


@pytest.fixture(scope="module", params=[3, 11])
def small(request):
    model = build_matrix(build_arrays(to_fleet(generate(14, 6, seed=request.param)), RULES), RULES, {})
    return model, exact(model), lp_duals(model)


def test_blocks_partition_the_rows(small):
    model, _, _ = small
    b = model_blocks(model)
    a = model.arrays
    x0 = model.blocks["x"][0]
    assert (b.owner[x0:x0 + a.n_pairs] == a.pair_model).all()
    assert_rows_owned(model, b)
    # capacity rows tie models together: never local when two models can use the pool
    cap = model.capacity_row
    shared = np.flatnonzero(np.bincount(a.pair_pool, minlength=len(a.pools)) > 1)
    assert len(shared) and not b.local[cap[shared][cap[shared] >= 0]].any()
    # every column is in exactly one model's list or owned by none
    listed = np.sort(b.cols[b.col_ptr[0]:b.col_ptr[-1]])
    assert (listed == np.flatnonzero(b.owner >= 0)).all()


def assert_rows_owned(model, b) -> int:
    """A row is one model's exactly when every column in it is that model's (an empty row is
    nobody's); the same blocks come out given the matrix as CSR and CSC. Returns how many rows
    hold two models' columns and no column nobody owns."""
    csr = model.A.tocsr()
    between = 0
    for r in range(model.n_rows):
        owners = b.owner[csr.indices[csr.indptr[r]:csr.indptr[r + 1]]]
        models = set(owners.tolist())
        one = len(models) == 1 and min(models) >= 0
        assert b.local[r] == one and b.row_owner[r] == (min(models) if one else -1), r
        between += int(len(models) > 1 and min(models) >= 0)
    again = model_blocks(model, csr, model.A.tocsc())
    for name in ("owner", "local", "col_ptr", "cols", "row_owner"):
        assert np.array_equal(getattr(again, name), getattr(b, name)), name
    return between


def test_rows_between_models_alone_are_nobodys():
    """On a fleet with rows that hold two models' columns and nothing else (a row with a column
    nobody owns is never one model's, whatever its models' columns)."""
    model = build_matrix(build_arrays(to_fleet(generate(30, 10, seed=3)), RULES), RULES, {})
    assert assert_rows_owned(model, model_blocks(model)) > 0


def test_at_the_lp_duals_between_the_lp_and_the_optimum(small):
    model, opt, duals = small
    got = model_bound(model, duals.pi, time.monotonic() + 60, workers=2)
    assert got.status == "OPTIMAL" and got.models > 0
    assert duals.lp_bound - 1e-6 * abs(opt) <= got.bound <= opt + 1e-6 * abs(opt)
    # without integrality, the same multipliers give the LP's own bound back
    relaxed = model_bound(model, duals.pi, time.monotonic() + 60, integer=False)
    assert relaxed.bound == pytest.approx(duals.lp_bound, rel=1e-7)


def test_lifts_the_lp_bound_at_size_s():
    """On the benchmark's S fleet (50 x 20) replica integrality is much of the LP's gap: the bound
    by model (1,317.6 against the LP's 1,295.3 when written) must lift it by more than 1%, and stay
    below the plan placer finds."""
    from bench.generate import size_docs
    from placer.optimizer.solve import optimize

    fleet = to_fleet(size_docs("S", 0))
    model = build_matrix(build_arrays(fleet, RULES), RULES, {})
    duals = lp_duals(model)
    got = model_bound(model, duals.pi, time.monotonic() + 120, workers=2)
    plan = optimize(fleet, RULES, time_limit=3.0)
    assert plan.placement is not None and got.bound <= plan.objective
    assert got.bound > 1.01 * duals.lp_bound, (duals.lp_bound, got.bound, plan.objective)


@pytest.mark.parametrize("spread", [0.1, 1.0, 10.0])
def test_never_above_the_optimum_for_any_multipliers(small, spread):
    """Weak duality, checked: multipliers drawn at random (signs made valid by model_bound)."""
    model, opt, duals = small
    rng = np.random.default_rng(int(spread * 10))
    for _ in range(3):
        pi = duals.pi + rng.normal(0.0, spread, model.n_rows)
        got = model_bound(model, pi, time.monotonic() + 60)
        relaxed = model_bound(model, pi, time.monotonic() + 60, integer=False)
        assert relaxed.bound <= got.bound + 1e-9 * abs(opt) and got.bound <= opt + 1e-6 * abs(opt), (got, opt)


def test_out_of_time_counts_every_model_at_its_fallback(small):
    """With no time for any sub-MIP, every model counts at ``fallback_bounds``: the sum is then the
    pair Lagrangian of ``lp.lagrangian`` at the same multipliers, term by term."""
    model, opt, duals = small
    got = model_bound(model, duals.pi, time.monotonic() - 1.0)
    pair = lagrangian(model, PairTables.build(model), duals.pi, Master.serve_rows(model), integer=True)
    assert got.status == "BOUNDED" and got.models == 0 and got.fallback == len(model.arrays.models)
    assert got.bound == pytest.approx(pair.bound, rel=1e-9, abs=1e-9)
    assert got.bound <= opt + 1e-6 * abs(opt)
    # the same sum from its parts, with no model proved (NaN), or proofs of nothing (+-inf)
    parts = Lagrangian.at(model, duals.pi, model_blocks(model))
    n = len(model.arrays.models)
    for proven in (np.full(n, np.nan), np.full(n, -np.inf), np.full(n, np.inf)):
        assert parts.total(proven) == pytest.approx(got.bound, rel=1e-9, abs=1e-9)
    # a model's proof counts where it beats its fallback, and only there
    lifted = parts.fallback.copy()
    lifted[0] += 5.0
    lifted[1] -= 5.0
    assert parts.total(lifted) == pytest.approx(got.bound + 5.0, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("solved", [0, 1, 5])
def test_sub_mips_that_prove_nothing_count_at_their_fallback(small, monkeypatch, solved):
    """Sub-MIPs stopped before they prove anything (every one after the first ``solved``) leave a
    bound between the pair Lagrangian and the full bound by model, and valid."""
    from placer.optimizer import bound as bound_module

    model, opt, duals = small
    real = bound_module.solve_arrays
    calls = [0]

    def stopped(*args, **kwargs):
        calls[0] += 1
        sol = real(*args, **kwargs)
        if calls[0] > solved:
            sol.status, sol.bound, sol.values = "UNKNOWN", -math.inf, None
        return sol

    full = model_bound(model, duals.pi, time.monotonic() + 60)
    monkeypatch.setattr(bound_module, "solve_arrays", stopped)
    got = model_bound(model, duals.pi, time.monotonic() + 60)
    pair = lagrangian(model, PairTables.build(model), duals.pi, Master.serve_rows(model), integer=True)
    n = len(model.arrays.models)
    assert got.models == min(solved, n) and got.fallback == n - got.models
    assert pair.bound - 1e-9 * abs(opt) <= got.bound <= full.bound + 1e-9 * abs(opt)
    assert got.bound <= opt + 1e-6 * abs(opt)
    if solved == 0:
        assert got.bound == pytest.approx(pair.bound, rel=1e-9)


def test_an_unbounded_column_gives_no_bound(small):
    model, _, duals = small
    b = model_blocks(model)
    n0 = model.blocks["n"][0]
    if not (b.owner[n0:model.blocks["n"][1]] < 0).any():
        pytest.skip("no elastic pool")
    loose = build_matrix(model.arrays, RULES, {})
    loose.ub[n0] = math.inf
    pi = duals.pi.copy()
    pi[loose.capacity_row[loose.arrays.pool_elastic & (loose.capacity_row >= 0)]] = -1e6  # nodes pay
    got = model_bound(loose, pi, time.monotonic() + 60)
    assert got.status == "UNBOUNDED" and got.bound == -math.inf


def test_the_whole_model_mip_bound_lies_between_the_lp_and_the_optimum(monkeypatch):
    """(c'') of the bench: HiGHS' bound on the whole model, tie-breaks taken off. On a fleet it
    closes, it is the optimum's price (within the tie-breaks), at least the LP's bound; given no
    time, still a bound; beyond MIP_BOUND_COLS, not run (and no bound)."""
    import bench.baselines as baselines
    from placer.optimizer.large import optimize_large

    fleet = to_fleet(generate(14, 6, seed=3))
    model = build_matrix(build_arrays(fleet, RULES), RULES, {})
    opt = exact(model)
    lp = baselines.lp_bound(fleet, RULES, time_limit=60)
    got = baselines.mip_bound(fleet, RULES, time_limit=60)
    assert got.status == "OPTIMAL"
    assert lp.bound - 1e-6 <= got.bound <= opt + 1e-6
    assert got.bound == pytest.approx(opt, rel=1e-4)
    plan = optimize_large(fleet, RULES, time_limit=3.0)
    assert got.bound <= plan.objective + 1e-6
    quick = baselines.mip_bound(fleet, RULES, time_limit=0.01)
    assert quick.bound <= got.bound + 1e-6
    monkeypatch.setattr(baselines, "MIP_BOUND_COLS", 10)
    skipped = baselines.mip_bound(fleet, RULES)
    assert skipped.status.startswith("not run") and skipped.bound == -math.inf


def test_the_lagrangian_dual_climbs_from_the_lps_duals_and_stays_below_the_optimum():
    """``bench.baselines.lagrangian_dual``: rounds of column generation on the master over the
    sub-MIPs' answers raise L(pi) above its value at the LP's duals, never past the optimum nor
    the master's LP, and stop once within DUAL_STOP of it. On this fleet: first 678.24, then
    678.68 after seven rounds, the master's LP 678.73, the optimum 680.23."""
    from bench.baselines import DUAL_STOP, lagrangian_dual
    from bench.baselines import model_bound as bench_model_bound

    fleet = to_fleet(generate(30, 8, seed=2))
    model = build_matrix(build_arrays(fleet, RULES), RULES, {}, cuts=True)
    sol = solve(model, np.arange(model.n_cols), integer=True, time_limit=120.0, gap=0.0)
    assert sol.status == "OPTIMAL"
    opt = sol.objective
    duals = lp_duals(model)
    at_lp = model_bound(model, duals.pi, time.monotonic() + 60)
    got = lagrangian_dual(model, duals.pi, time.monotonic() + 60, plan=lambda: sol.values)
    assert got.first == pytest.approx(at_lp.bound, rel=1e-9)
    assert got.rounds >= 2 and got.bound > got.first + 1e-4 * abs(opt)
    assert got.bound <= opt + 1e-6 * abs(opt)
    assert got.bound <= got.master + 1e-6 * abs(opt)
    assert got.master - got.bound <= DUAL_STOP * abs(got.master)
    # without a plan the master may have no LP at first: never less than the first round, still a bound
    alone = lagrangian_dual(model, duals.pi, time.monotonic() + 60)
    assert alone.first <= alone.bound <= opt + 1e-6 * abs(opt)
    # no time: the first round alone, every model at its fallback bound
    late = lagrangian_dual(model, duals.pi, time.monotonic() - 1.0, plan=lambda: sol.values)
    assert late.rounds == 1 and late.fallback == len(model.arrays.models) and late.bound <= got.first
    # the bench's (c'): the same rounds, from a plan of the route, reported
    bench = bench_model_bound(fleet, RULES, time_limit=60)
    assert "rounds" in bench.status and got.first - 1e-6 * abs(opt) <= bench.bound <= opt + 1e-6 * abs(opt)


def test_an_lp_stopped_early_bounds_on_the_line_between_simple_prices_and_its_duals(monkeypatch):
    """When the route's LP stops before it converges (here after its first round, on a fleet whose
    first master lacks pairs), the plan's bound is the best point of a golden-section search on the
    segment between prices that need no LP and the last master's duals (``lp.bound_on_line``):
    above either end (774.71 and 503.94 when written, 1,000.69 between), below any plan."""
    import placer.optimizer.large as large
    from placer.optimizer.lp import bound_on_line, simple_duals

    fleet = to_fleet(generate(60, 14, seed=11))
    stopped = []
    real = large.column_generation

    def one_round(*args, **kw):
        stopped.append(real(*args, **{**kw, "max_rounds": 1}))
        return stopped[-1]

    monkeypatch.setattr(large, "column_generation", one_round)
    monkeypatch.setattr(large, "FULL_MIP_COLS", 0)
    r = large.optimize_large(fleet, RULES, time_limit=3.0)
    assert r.placement is not None and len(stopped) == 1 and stopped[0].status == "FEASIBLE"
    a = build_arrays(fleet, RULES)
    routed = build_matrix(a, RULES, {}, cuts=True, cut_levels=large.cut_levels(a.n_pairs))  # the route's model
    tables, serve = PairTables.build(routed), Master.serve_rows(routed)
    simple = simple_duals(routed)
    ends = [lagrangian(routed, tables, pi, serve, integer=True, with_lp=False).bound
            for pi in (simple, stopped[0].duals.pi)]
    on_line = bound_on_line(routed, tables, simple, stopped[0].duals.pi, serve, deadline=time.monotonic() + 60)
    assert max(ends) < on_line <= r.objective, (ends, on_line, r.objective)
    # the LP's own bound is the one at its duals: the route hands it in rather than pricing them again
    assert ends[1] == pytest.approx(stopped[0].duals.bound, rel=1e-9, abs=1e-6)
    assert bound_on_line(routed, tables, simple, stopped[0].duals.pi, serve, deadline=time.monotonic() + 60,
                         end_bound=stopped[0].duals.bound) == pytest.approx(on_line, rel=1e-9, abs=1e-6)
    assert on_line - 1e-6 <= r.bound <= r.objective + 1e-6
    # the search stops at its deadline, the ends and two points tried
    assert max(ends) <= bound_on_line(routed, tables, simple, stopped[0].duals.pi, serve,
                                      deadline=time.monotonic() - 1.0) <= on_line
