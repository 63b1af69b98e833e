"""Recombination (``placer.optimizer.recombine``): a MIP over the configurations of each model the
search has seen. Its plan is never worse than the best plan made of those configurations, keeps
every row, and puts each model in one configuration it was seen in."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import math
import threading
import time

import numpy as np
import pytest
import scipy.sparse as sp

import placer.optimizer.large as large
import placer.optimizer.recombine as recombine_mod
from bench.generate import generate, to_fleet
from placer.cost import price
from placer.optimizer.arrays import build_arrays
from placer.optimizer.highs import Solution
from placer.optimizer.lns import sweep
from placer.optimizer.matrix import build_matrix, rows_broken
from placer.optimizer.recombine import ONTO, Configurations, consolidated, master_duals, on_columns, recombine
from policies import build_rules
from tests.bench import firstplan
from tests.bench.firstplan import assert_feasible, assert_keeps_rules, first_plan

RULES = build_rules(dt.datetime(2026, 11, 28, tzinfo=dt.UTC))


@pytest.fixture(scope="module")
def plans():
    """On a 60 x 14 fleet: the first plan (the LP rounded and completed), and the sweep's plan
    from it, with the configurations the sweep saw recorded."""
    fleet = to_fleet(generate(60, 14, seed=11))
    model, hood, first = first_plan(fleet, RULES)
    configs = Configurations(model, csr=hood.csr)
    configs.add_plan(first)
    swept, stats = sweep(model, hood, first, deadline=time.monotonic() + 20, record=configs.add_step)
    assert stats.improved > 0 and len(configs) > configs.n_models
    return fleet, model, hood, first, swept, configs


def cost(model, v):
    return float(model.cost @ v)


def test_from_the_first_plan_it_finds_a_plan_at_least_as_good_as_the_sweeps(plans):
    """Every configuration of the sweep's plan was recorded (the first plan's, or a step's answer),
    so the sweep's plan is one of the master's answers: recombining from the first plan must do
    at least as well, in one MIP."""
    fleet, model, _, first, swept, configs = plans
    r = recombine(model, configs, first, time_limit=30)
    assert r.values is not None and r.status == "OPTIMAL" and r.moved > 0
    assert cost(model, r.values) <= cost(model, swept) + 1e-6 * abs(cost(model, swept))
    assert cost(model, r.values) < cost(model, first)
    assert_feasible(model, r.values)
    # the plan, priced by placer.cost.price, costs what the model says, and keeps every rule
    placement = large.placement_of(model, r.values)
    assert_keeps_rules(fleet, placement, RULES)
    priced = price(fleet, placement, RULES)
    assert priced.objective == pytest.approx(sum(large.objective_terms(model, r.values).values()), rel=1e-6)


def test_each_model_ends_in_a_configuration_it_was_seen_in(plans):
    _, model, _, first, _, configs = plans
    r = recombine(model, configs, first, time_limit=30)
    assert r.values is not None
    seen = seen_configurations(configs)
    for m in range(configs.n_models):
        cols = configs.columns(m)
        if len(cols):
            assert any(np.allclose(r.values[cols], z) for z in seen[m]), f"model {m}: a configuration never seen"


def test_with_the_incumbents_configurations_alone_there_is_no_better_plan(plans):
    _, model, hood, _, swept, _ = plans
    only = Configurations(model, csr=hood.csr)
    r = recombine(model, only, swept, time_limit=30)
    assert r.values is None and len(only) == sum(len(only.columns(m)) > 0 for m in range(only.n_models))


def test_a_master_answer_that_breaks_a_row_is_not_taken(plans, monkeypatch):
    """HiGHS answers within its tolerances; an answer whose plan breaks a row (here: every elastic
    node switched off) is refused, and the caller keeps its plan."""
    _, model, _, first, _, configs = plans
    real = recombine_mod.solve_arrays

    def broken(A, c, lb, ub, lo, hi, integer, **kw):
        sol = real(A, c, lb, ub, lo, hi, integer, **kw)
        values = np.array(sol.values)
        values[len(configs):] = lb[len(configs):]  # the columns no model owns at their lower bounds
        return Solution(sol.status, sol.cols, sol.rows, values, sol.objective, sol.bound)

    monkeypatch.setattr(recombine_mod, "solve_arrays", broken)
    r = recombine(model, configs, first, time_limit=30)
    assert r.values is None and r.status == "ROWS"


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_a_row_holds_within_a_share_of_its_terms_not_of_its_sum(fmt):
    """HiGHS answers continuous columns within its tolerances. ``rate <= 5,461 x replicas`` with
    one replica sums 5,461 - 5,461.0000019 to about 0: off by 1.9e-6, more than 1e-6 of the sum
    but not of the terms, so it holds (a whole master's plan was refused for this at M). Off by
    0.1 it breaks. The part of a row outside ``A`` (fixed columns) counts in its size too."""
    A = getattr(sp, f"{fmt}_matrix")(np.array([[-5461.0, 1.0], [0.0, 1.0]]))
    lo, hi = np.array([-np.inf, -np.inf]), np.array([0.0, 4.0])
    for over, broken in [(1.9e-6, False), (0.1, True)]:
        v = np.array([1.0, 5461.0 + over])
        got = rows_broken(A, v, A @ v, lo, hi)
        assert list(got) == [broken, True]  # the second row: 5,461 against 4
    # a step that changes the replicas alone: the rate is fixed, outside A, and its size still counts
    step = A[:, [0]]
    act = step @ np.array([1.0]) + np.array([5461.0 + 1.9e-6, 0.0])
    assert not rows_broken(step, np.array([1.0]), act, lo, np.array([0.0, np.inf]))[0]
    # with the old measure (a share of the sum) the first row was broken
    assert act[0] > 1e-6 * max(1.0, abs(act[0]))


def test_a_master_that_gives_the_start_back_at_once_runs_again_without_it(plans, monkeypatch):
    """HiGHS 1.16 now and then gives a MIP start back at once with an objective its values do not
    have (``highs.solve_arrays`` marks it inconsistent): the master then runs again without the
    start in the time left, and its answer is taken. (The search around the master's LP, given the
    start back too, found nothing better: the whole master's search runs from the start.)"""
    _, model, _, first, _, configs = plans
    real = recombine_mod.solve_arrays
    calls: list[bool] = []  # per MIP: from a start

    def gives_start_back(A, c, lb, ub, lo, hi, integer, **kw):
        if integer is None:  # the master's LP
            return real(A, c, lb, ub, lo, hi, integer, **kw)
        calls.append(kw.get("start") is not None)
        if kw.get("start") is not None:
            start = np.asarray(kw["start"], dtype=float)
            return Solution("FEASIBLE", np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), start,
                            float(c @ start), -np.inf, inconsistent=True)
        return real(A, c, lb, ub, lo, hi, integer, **kw)

    monkeypatch.setattr(recombine_mod, "solve_arrays", gives_start_back)
    r = recombine(model, configs, first, time_limit=30)
    assert calls == [True, True, False] and r.retried
    assert r.values is not None and r.status == "OPTIMAL" and cost(model, r.values) < cost(model, first)
    assert_feasible(model, r.values)


def test_a_search_without_the_start_is_not_run_again_when_highs_answer_is_inconsistent(plans, monkeypatch):
    """A small master's second search runs without the start; where HiGHS flags its answer
    inconsistent, running it again without the start would repeat it: it is kept as it is (the
    first search's answer, from the start, counts), and the master says it did not run again."""
    _, model, _, first, _, configs = plans
    real = recombine_mod.solve_arrays
    calls: list[tuple[int, bool]] = []
    lock = threading.Lock()

    def flags_the_second(A, c, lb, ub, lo, hi, integer, **kw):
        if integer is None:  # the master's LP
            return real(A, c, lb, ub, lo, hi, integer, **kw)
        seed = kw["options"]["random_seed"]
        with lock:
            calls.append((seed, kw.get("start") is not None))
        if seed == 1:
            return Solution("FEASIBLE", np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), None,
                            np.inf, -np.inf, inconsistent=True)
        return real(A, c, lb, ub, lo, hi, integer, **kw)

    monkeypatch.setattr(recombine_mod, "solve_arrays", flags_the_second)
    r = recombine(model, copy.deepcopy(configs), first, time_limit=30, workers=2)
    assert sorted(calls) == [(0, True), (0, True), (1, False)], calls  # seed 0: around the LP, then all
    assert not r.retried and r.values is not None and cost(model, r.values) < cost(model, first)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_each_worker_searches_on_its_own_seed_and_the_best_answer_counts(plans, monkeypatch, workers):
    """With ``workers`` threads the master runs once per thread, on seeds 0, 1, ...: the cheapest
    answer is taken, whichever seed found it (here the last: the others are made to find nothing
    better than the incumbent, or nothing at all where they search without it)."""
    _, model, _, first, _, configs = plans
    real = recombine_mod.solve_arrays
    seeds: list[int] = []

    def by_seed(A, c, lb, ub, lo, hi, integer, **kw):
        if integer is None:  # the master's LP
            return real(A, c, lb, ub, lo, hi, integer, **kw)
        seed = kw["options"]["random_seed"]
        seeds.append(seed)
        if seed < workers - 1 and kw.get("start") is None:
            return Solution("UNKNOWN", np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), None, np.inf, -np.inf)
        if seed < workers - 1:
            start = np.asarray(kw["start"], dtype=float)
            return Solution("FEASIBLE", np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), start,
                            float(c @ start), -np.inf)
        return real(A, c, lb, ub, lo, hi, integer, **kw)

    monkeypatch.setattr(recombine_mod, "solve_arrays", by_seed)
    r = recombine(model, configs, first, time_limit=30, workers=workers)
    # seed 0 searches twice: around the master's LP, then the whole master
    assert sorted(seeds) == [0, *range(workers)]
    assert r.values is not None and r.status == "OPTIMAL" and cost(model, r.values) < cost(model, first)
    assert not r.retried
    assert_feasible(model, r.values)


def test_a_small_master_holds_highs_cut_pool_and_searches_once_without_the_start(plans, monkeypatch):
    """Under SMALL_MASTER configurations each of the master's searches holds HiGHS' pool of cuts to
    SMALL_MASTER_OPTIONS' (at the root, a large pool took a dumped master's whole window), and the
    second runs without the start: given one, HiGHS 1.16's presolve now and then priced it wrongly
    in its reduced model and gave the start back, where without it HiGHS' heuristics found a better
    plan at once (before 2026-12-02 both searches started from it, the first at a pool of 200). At
    or over SMALL_MASTER, HiGHS' own options and the start for every search; the answer is the same
    optimum either way, and never worse than the start."""
    _, model, _, first, _, configs = plans
    real = recombine_mod.solve_arrays
    calls: list[tuple[int, object, bool]] = []  # per search: seed, pool, from the start
    lock = threading.Lock()

    def spy(*args, **kw):
        if args[6] is None:  # the master's LP
            return real(*args, **kw)
        with lock:
            calls.append((kw["options"]["random_seed"], kw["options"].get("mip_pool_soft_limit"),
                          kw.get("start") is not None))
        return real(*args, **kw)

    monkeypatch.setattr(recombine_mod, "solve_arrays", spy)
    small = recombine(model, copy.deepcopy(configs), first, time_limit=30, workers=2)
    pool = recombine_mod.SMALL_MASTER_OPTIONS["mip_pool_soft_limit"]
    assert sorted(calls) == [(0, pool, True), (0, pool, True), (1, pool, False)], calls
    calls.clear()
    monkeypatch.setattr(recombine_mod, "SMALL_MASTER", 1)
    large_ = recombine(model, copy.deepcopy(configs), first, time_limit=30, workers=2)
    assert sorted(calls) == [(0, None, True), (0, None, True), (1, None, True)], calls
    assert small.status == large_.status == "OPTIMAL" and small.values is not None and large_.values is not None
    assert cost(model, small.values) == pytest.approx(cost(model, large_.values), rel=1e-9)
    assert cost(model, small.values) <= cost(model, first) + 1e-6


def seen_configurations(configs) -> dict[int, list[np.ndarray]]:
    seen: dict[int, list[np.ndarray]] = {}
    for m, z in configs.entries:
        seen.setdefault(m, []).append(z)
    return seen


def test_the_first_search_searches_around_the_masters_lp_then_the_whole_master_from_its_answer(plans, monkeypatch):
    """Seed 0's search solves the master's LP, then the master over the configurations the LP
    weighs and the incumbent's alone (every other configuration's bound set to 0), from the start;
    then the whole master, from that answer where it beat the start."""
    _, model, _, first, _, configs = plans
    real = recombine_mod.solve_arrays
    calls: list[dict] = []

    def spy(A, c, lb, ub, lo, hi, integer, **kw):
        sol = real(A, c, lb, ub, lo, hi, integer, **kw)
        calls.append({"lp": integer is None, "ub": ub.copy(), "start": kw.get("start"), "values": sol.values,
                      "cost": c})
        return sol

    monkeypatch.setattr(recombine_mod, "solve_arrays", spy)
    r = recombine(model, copy.deepcopy(configs), first, time_limit=30, workers=1)
    assert [c["lp"] for c in calls] == [True, False, False], len(calls)
    lp, near, whole = calls
    weighed = lp["values"] > recombine_mod.LP_WEIGHED
    out = (near["ub"] == 0) & (lp["ub"] > 0)
    assert out.any() and np.all(lp["values"][out] <= recombine_mod.LP_WEIGHED) and np.all(near["start"][out] < 0.5)
    assert np.array_equal(near["ub"][weighed], lp["ub"][weighed])
    assert np.array_equal(whole["ub"], lp["ub"])
    c = lp["cost"]
    assert float(c @ near["values"]) < float(c @ near["start"]) - 1e-9  # it beat the start: the whole master starts there
    assert np.array_equal(whole["start"], near["values"])
    assert r.values is not None and r.status == "OPTIMAL" and cost(model, r.values) < cost(model, first)


def test_where_the_whole_master_finds_nothing_in_its_window_the_answer_around_the_lp_counts(plans, monkeypatch):
    """Given too short a window, HiGHS' search of the whole master gives its start back (at M on a
    slow machine, 5 of 8 dumped masters given 0.8 s): the plan found around the master's LP is
    taken, cheaper than the start, keeping every row, each model in a configuration it was seen in."""
    _, model, _, first, _, configs = plans
    real = recombine_mod.solve_arrays
    full_ub: list[np.ndarray] = []
    lock = threading.Lock()

    def whole_master_in_no_time(A, c, lb, ub, lo, hi, integer, **kw):
        if integer is None:
            with lock:
                full_ub.append(ub.copy())
            return real(A, c, lb, ub, lo, hi, integer, **kw)
        whole = not full_ub or np.array_equal(ub, full_ub[0])
        if whole:  # the window ran out before a better plan: the start, or nothing without one
            start = kw.get("start")
            values = None if start is None else np.asarray(start, dtype=float)
            return Solution("FEASIBLE" if values is not None else "UNKNOWN", np.zeros(0, dtype=np.int64),
                            np.zeros(0, dtype=np.int64), values, np.inf if values is None else float(c @ values), -np.inf)
        return real(A, c, lb, ub, lo, hi, integer, **kw)

    monkeypatch.setattr(recombine_mod, "solve_arrays", whole_master_in_no_time)
    before = copy.deepcopy(configs)
    r = recombine(model, before, first, time_limit=30, workers=2)
    assert r.values is not None and cost(model, r.values) < cost(model, first) and r.moved > 0
    assert_feasible(model, r.values)
    seen = seen_configurations(before)
    for m in range(before.n_models):
        cols = before.columns(m)
        if len(cols):
            assert any(np.allclose(r.values[cols], z) for z in seen[m]), f"model {m}: a configuration never seen"


def stuck_in_a_child(monkeypatch) -> None:
    """``highs.solve_arrays`` never answers in a child process (``highs.solve_within``'s), as HiGHS'
    presolve did inside a large master's RENS heuristic; in this process it solves as ever."""
    import os

    import placer.optimizer.highs as highs

    parent, real = os.getpid(), highs.solve_arrays

    def stuck(*args, **kw):
        if os.getpid() != parent:
            time.sleep(60)
        return real(*args, **kw)

    monkeypatch.setattr(highs, "solve_arrays", stuck)


def test_a_large_master_runs_isolated_and_one_that_never_answers_is_stopped_at_its_limit(plans, monkeypatch):
    """Masters over ISOLATE_MASTER configurations or more run in a child process: isolated, the
    master finds the same optimum; and one whose solve never comes back is stopped shortly past
    its time limit, with no plan (the caller keeps its own)."""
    _, model, _, first, _, configs = plans
    here = recombine(model, copy.deepcopy(configs), first, time_limit=30)
    monkeypatch.setattr(recombine_mod, "ISOLATE_MASTER", 0)
    there = recombine(model, copy.deepcopy(configs), first, time_limit=30)
    assert here.status == there.status == "OPTIMAL" and here.values is not None and there.values is not None
    assert cost(model, there.values) == pytest.approx(cost(model, here.values), rel=1e-9)
    stuck_in_a_child(monkeypatch)
    started = time.monotonic()
    r = recombine(model, copy.deepcopy(configs), first, time_limit=1.0, workers=2)
    assert r.values is None and r.status == "TIME_LIMIT"
    assert time.monotonic() - started < 10  # stopped at 1.25 s, not waited out (60 s)


def test_a_plan_whose_masters_never_answer_comes_in_its_time_and_keeps_every_rule(monkeypatch):
    """The route with every master isolated and stuck: the plan comes at its time limit (with the
    grace the first plan may take), the recombinations said to have stopped there, and the plan
    keeps every rule and costs what ``placer.cost.price`` says."""
    monkeypatch.setattr(large, "FULL_MIP_COLS", 0)
    monkeypatch.setattr(recombine_mod, "ISOLATE_MASTER", 0)
    stuck_in_a_child(monkeypatch)
    fleet = to_fleet(generate(80, 20, seed=3))
    said: list[str] = []
    started = time.monotonic()
    r = large.optimize_large(fleet, RULES, progress=said.append, time_limit=4.0)
    said = r.log  # the route's record of each step done, its time and note
    assert time.monotonic() - started < 4.0 * (1 + large.GRACE) + 2.0  # a margin for a loaded machine
    recombined = [m for m in said if m.startswith("recombine")]
    assert recombined and all("TIME_LIMIT" in m and "0 models moved" in m for m in recombined), said
    assert r.placement is not None
    assert_keeps_rules(fleet, r.placement, RULES)
    assert r.objective == pytest.approx(price(fleet, r.placement, RULES).objective, rel=1e-6, abs=1e-6)


def test_a_master_over_some_models_moves_those_alone_and_keeps_every_row(plans):
    """``models``: a master over one part of the fleet, every other model kept as in the plan (its
    share of the rows between models in their bounds). Over each part in turn from the first
    plan, the plan improves and never breaks a row; over every model at once, the same optimum
    as the master without ``models``."""
    _, model, _, first, _, configs = plans
    parts = large.model_parts(model, first, 20)
    v, gained = first, 0
    for part in parts:
        r = recombine(model, configs, v, time_limit=30, models=part)
        assert r.status == "OPTIMAL"
        if r.values is None:
            continue
        others = np.setdiff1d(np.arange(configs.n_models), part)
        for m in others:
            assert np.array_equal(r.values[configs.columns(int(m))], v[configs.columns(int(m))]), m
        assert_feasible(model, r.values)
        assert cost(model, r.values) < cost(model, v)
        v, gained = r.values, gained + 1
    assert gained >= 2 and len(parts) == 3
    every = recombine(model, configs, first, time_limit=30, models=np.arange(configs.n_models))
    whole = recombine(model, configs, first, time_limit=30)
    assert every.values is not None and whole.values is not None and every.status == whole.status == "OPTIMAL"
    assert cost(model, every.values) == pytest.approx(cost(model, whole.values), rel=1e-9)


def test_parts_hold_every_placed_model_once_with_those_on_pools_near_it(plans):
    """``large.model_parts``: parts of at most the size, every model with pairs in exactly one, in
    the order of the pool holding most of each model's GPUs (a model without replicas: the pool
    of its first pair)."""
    _, model, _, first, _, _ = plans
    a = model.arrays
    x0, x1 = model.blocks["x"]
    v = first.copy()
    gone = int(a.pair_model[np.flatnonzero(np.round(v[x0:x1]) > 0)[0]])
    v[x0:x1][a.pair_model == gone] = 0.0  # one model placed nowhere
    parts = large.model_parts(model, v, 7)
    every = np.concatenate(parts)
    assert all(len(p) <= 7 for p in parts) and np.array_equal(np.sort(every), np.unique(a.pair_model))
    gpus = np.round(v[x0:x1]) * a.pair_c
    home = [int(a.pair_pool[np.flatnonzero(a.pair_model == m)][np.argmax(gpus[a.pair_model == m])]) for m in every]
    assert home == sorted(home) and gone in every


def test_columns_of_a_csr_matrix_as_scipy_selects_them():
    rng = np.random.default_rng(1)
    for n in (1, 50, 5000):
        rows = sp.random(20, n, density=0.1, format="csr", random_state=2)
        for k in sorted({0, 1, min(n, 7), n}):
            cols = np.sort(rng.choice(n, k, replace=False))
            got, want = on_columns(rows, cols), rows[:, cols].tocsc()
            assert got.shape == want.shape and abs(got - want).sum() == 0
            assert np.array_equal(got.indptr, want.indptr) and np.array_equal(got.indices, want.indices)


def test_a_step_answer_is_recorded_with_its_free_columns_set(plans):
    _, model, _, first, _, _ = plans
    configs = Configurations(model)
    m = next(m for m in range(configs.n_models) if len(configs.columns(m)) > 2)
    cols = configs.columns(m)
    free = np.sort(cols[::2])
    new = first[free] + 1.0
    configs.add_step(first, free, new, np.array([m]))
    (got_m, z), = configs.entries
    expect = first[cols].copy()
    expect[::2] = first[cols[::2]] + 1.0  # cols of a block come in column order, so free is cols[::2]
    assert got_m == m and np.array_equal(z, expect)
    configs.add_step(first, free, new, np.array([m]))  # the same again: kept once
    assert len(configs) == 1


@pytest.fixture(scope="module")
def lp_values(plans):
    return firstplan.lp_values(plans[1])


@pytest.mark.parametrize("onto", ONTO)
def test_consolidated_gathers_each_models_fractions_onto_one_pair(plans, lp_values, onto):
    """Per inference model: every pair at the LP's replicas rounded down but one, which carries at
    least the throughput of all the fractions; other models keep the plan's replicas."""
    _, model, _, _, swept, _ = plans
    a = model.arrays
    x0, x1 = model.blocks["x"]
    lp_x = lp_values[x0:x1]
    x = consolidated(model, lp_values, swept, onto)
    floor = np.floor(lp_x + 1e-6)
    gathered = 0
    for m, spec in enumerate(a.models):
        js = np.arange(a.pair_ptr[m], a.pair_ptr[m + 1])
        if not len(js):
            continue
        if not spec.inference:
            assert np.array_equal(x[js], np.round(swept[x0 + js]))
            continue
        up = js[x[js] > floor[js]]
        assert len(up) <= 1 and np.all(x[js] >= floor[js])
        fraction = float(((lp_x[js] - floor[js]) * a.pair_thr[js]).sum())
        if len(up) and x[up[0]] < model.ub[x0 + up[0]]:
            gathered += 1
            assert (x[up[0]] - floor[up[0]]) * a.pair_thr[up[0]] >= fraction - 1e-6
    assert gathered > 0


def test_consolidated_names_the_ways_it_knows(plans, lp_values):
    _, model, _, _, swept, _ = plans
    with pytest.raises(ValueError, match="fraction, cheapest, replicas"):
        consolidated(model, lp_values, swept, "nearest")
    ways = {onto: consolidated(model, lp_values, swept, onto) for onto in ONTO}
    assert not np.array_equal(ways["fraction"], ways["cheapest"])  # they differ on this fleet


def test_the_lps_configurations_keep_every_row_of_their_model(plans, lp_values):
    """Each added configuration has the given replicas and meets every row of its model alone; a
    model whose replicas break one of its own rows (here: maxReplicas) is left out, the rest added;
    and recombining with them is never worse, and keeps every row."""
    _, model, hood, _, swept, _ = plans
    a = model.arrays
    x0, x1 = model.blocks["x"]
    x = consolidated(model, lp_values, swept)
    # one inference model given far more replicas than its maxReplicas (or its pairs) allow
    m_bad = next(m for m, spec in enumerate(a.models) if spec.inference and a.pair_ptr[m + 1] > a.pair_ptr[m]
                 and spec.spec.max_replicas is not None)
    j_bad = int(a.pair_ptr[m_bad])
    x[j_bad] = int(a.models[m_bad].spec.max_replicas) + 1
    configs = copy.deepcopy(plans[5])  # what the sweep saw
    before = len(configs)
    added = configs.add_replicas(x, swept, time_limit=30)
    assert added > 0 and len(configs) == before + added
    local = np.flatnonzero(configs.blocks.local)
    changed = set(a.pair_model[np.round(swept[x0:x1]) != x].tolist())
    for m, z in configs.entries[before:]:
        assert m != m_bad and m in changed
        cols = configs.columns(m)
        w = swept.copy()
        w[cols] = z
        js = np.arange(a.pair_ptr[m], a.pair_ptr[m + 1])
        assert np.array_equal(np.round(w[x0 + js]), x[js])
        act = hood.csr[local] @ w
        mine = np.asarray(abs(hood.csr[local]) @ np.isin(np.arange(model.n_cols), cols).astype(float)) > 0
        tol = 1e-6 * np.maximum(1.0, np.abs(act))
        assert np.all(act[mine] >= model.row_lo[local][mine] - tol[mine])
        assert np.all(act[mine] <= model.row_hi[local][mine] + tol[mine])
    # they are configurations the sweep did not see (added past the sweep's, not found among them)
    seen = {(m, np.round(z, 9).tobytes()) for m, z in configs.entries[:before]}
    assert all((m, np.round(z, 9).tobytes()) not in seen for m, z in configs.entries[before:])
    # the incumbent is among the master's answers: an answer is a better plan, and keeps every row
    r = recombine(model, configs, swept, time_limit=30)
    if r.values is not None:
        assert_feasible(model, r.values)
        assert cost(model, r.values) < cost(model, swept)


@pytest.fixture(scope="module")
def lp_result(plans):
    from placer.optimizer.lp import PairTables, column_generation, initial_pairs

    model = plans[1]
    lp = column_generation(model, PairTables.build(model), initial_pairs(model, np.zeros(0, dtype=np.int64)),
                           deadline=time.monotonic() + 30)
    assert lp.status == "OPTIMAL" and lp.duals is not None
    return lp


def reduced_costs(model, configs, lp):
    from placer.optimizer.bound import linking_reduced_costs

    return linking_reduced_costs(model, lp.duals.pi, configs.blocks)


def test_priced_configurations_are_each_models_best_at_the_duals(plans, lp_result, monkeypatch):
    """With every pair and time enough, each model's priced configuration costs at the LP's duals
    no more than any configuration the sweep saw (within the pricing MIP's 1 % gap), meets every
    row of its model alone, and sums to the Lagrangian bound by model (``bound.model_bound``,
    which solves the same MIPs to 0.01 %) within that gap."""
    monkeypatch.setenv("PLACER_PRICING", "mip")  # HiGHS' pricing MIPs are the subject (a small master: the batch)
    from placer.optimizer.bound import Lagrangian, model_bound
    from placer.optimizer.lp import least_at_bounds, rows_value, signed

    _, model, hood, _, swept, seen = plans
    configs = Configurations(model, csr=hood.csr)
    rc = reduced_costs(model, configs, lp_result)
    every = np.ones(model.arrays.n_pairs, dtype=bool)
    got = configs.add_priced(rc, every, swept, deadline=time.monotonic() + 60, step_limit=5.0)
    owning = [m for m in range(configs.n_models) if len(configs.columns(m))]
    assert got.added == len(configs) == len(owning)  # one each: none of them was there before
    assert np.array_equal(got.improved, owning)  # a model with nothing recorded is improved by any
    local = np.flatnonzero(configs.blocks.local)
    total = 0.0
    for m, z in configs.entries:
        cols = configs.columns(m)
        best = float(rc[cols] @ z)
        total += best
        others = [float(rc[cols] @ w) for k, w in seen.entries if k == m]
        assert best <= min(others) + 1e-2 * max(1.0, abs(min(others))) + 1e-6, f"model {m}"
        w = swept.copy()
        w[cols] = z
        act = hood.csr[local] @ w
        mine = np.asarray(abs(hood.csr[local]) @ np.isin(np.arange(model.n_cols), cols).astype(float)) > 0
        tol = 1e-6 * np.maximum(1.0, np.abs(act))
        assert np.all(act[mine] >= model.row_lo[local][mine] - tol[mine])
        assert np.all(act[mine] <= model.row_hi[local][mine] + tol[mine])
    b = configs.blocks
    linking = signed(model, np.where(b.local, 0.0, lp_result.duals.pi))
    alone = b.owner < 0
    total += float(rows_value(model, linking).sum())
    total += float(least_at_bounds(rc[alone], model.lb[alone], model.ub[alone]).sum())
    exact = model_bound(model, lp_result.duals.pi, time.monotonic() + 60, per_model=5.0)
    assert exact.status == "OPTIMAL"
    assert exact.bound - 1e-6 <= total <= exact.bound + 1e-2 * abs(exact.bound)
    # what each MIP proved: no more than its answer, and together the same bound within the gap
    assert np.isfinite(got.proven[owning]).all()
    lag = Lagrangian.at(model, lp_result.duals.pi, b).total(got.proven)
    assert exact.bound - 1e-2 * abs(exact.bound) <= lag <= total + 1e-6


def test_priced_configurations_use_the_given_pairs_alone_and_stop_at_the_deadline(plans, lp_result):
    _, model, hood, _, swept, _ = plans
    a = model.arrays
    x0, x1 = model.blocks["x"]
    y0, y1 = model.blocks["y"]
    configs = Configurations(model, csr=hood.csr)
    rc = reduced_costs(model, configs, lp_result)
    late = configs.add_priced(rc, np.ones(a.n_pairs, dtype=bool), swept, deadline=time.monotonic() - 1)
    assert late.added == 0 and not len(late.improved)
    pairs = np.round(swept[x0:x1]) > 0  # the plan's pairs alone: the plan's configurations are among the answers
    assert configs.add_priced(rc, pairs, swept, deadline=time.monotonic() + 60).added > 0
    for m, z in configs.entries:
        w = np.zeros(model.n_cols)
        w[configs.columns(m)] = z
        assert not np.any(w[x0:x1][~pairs]) and not np.any(w[y0:y1][~pairs[a.route_pair]])


def test_pricing_some_models_prices_those_alone_and_names_the_ones_it_improved(plans, lp_result, monkeypatch):
    """``add_priced(models=...)`` solves those models' MIPs and no others; ``improved`` names the
    models whose priced configuration costs less at the prices than every one recorded for them
    before, by more than IMPROVED: here the sweep's, some beaten at the LP's duals and some not.
    The same prices again improve none."""
    monkeypatch.setenv("PLACER_PRICING", "mip")  # HiGHS' pricing MIPs are the subject (a small master: the batch)
    _, model, _, _, swept, seen = plans
    configs = copy.deepcopy(seen)
    rc = reduced_costs(model, configs, lp_result)
    every = np.ones(model.arrays.n_pairs, dtype=bool)
    owning = np.array([m for m in range(configs.n_models) if len(configs.columns(m))])
    before = {int(m): min(float(rc[configs.columns(int(m))] @ z) for k, z in configs.entries if k == m)
              for m in owning}
    real = recombine_mod.solve_arrays
    solved: list[int] = []

    def counted(*args, **kw):
        solved.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(recombine_mod, "solve_arrays", counted)
    some = owning[::2]
    n_before = len(configs)
    got = configs.add_priced(rc, every, swept, deadline=time.monotonic() + 60, step_limit=5.0, models=some)
    assert len(solved) == len(some)
    new = configs.entries[n_before:]
    assert got.added == len(new) and {m for m, _ in new} <= set(some.tolist())
    # the model's best at the prices, of its configurations now (the new ones among them)
    after = {int(m): min(float(rc[configs.columns(int(m))] @ z) for k, z in configs.entries if k == m)
             for m in some}
    expected = [int(m) for m in some if after[int(m)] < before[int(m)] - recombine_mod.IMPROVED]
    assert got.improved.tolist() == expected
    assert 0 < len(expected) < len(some)  # the sweep's configurations are beaten for some models, not all
    again = configs.add_priced(rc, every, swept, deadline=time.monotonic() + 60, step_limit=5.0, models=some)
    assert again.added == 0 and not len(again.improved)


def test_pricing_starts_from_the_plans_configuration_where_it_lies_within_the_pairs(plans, lp_result, monkeypatch):
    """A model whose configuration in the plan uses only the given pairs gets it as its pricing
    MIP's start (and its answer costs no more at the duals); a model whose plan uses a pair left
    out gets no start."""
    monkeypatch.setenv("PLACER_PRICING", "mip")  # HiGHS' pricing MIPs are the subject (a small master: the batch)
    _, model, hood, _, swept, _ = plans
    a = model.arrays
    x0, x1 = model.blocks["x"]
    configs = Configurations(model, csr=hood.csr)
    rc = reduced_costs(model, configs, lp_result)
    # every pair but one the plan uses, of the model with most replicas in the plan
    used = np.round(swept[x0:x1]) > 0
    m_out = int(np.argmax(np.bincount(a.pair_model[used], weights=swept[x0:x1][used], minlength=len(a.models))))
    pairs = np.ones(a.n_pairs, dtype=bool)
    pairs[np.flatnonzero(used & (a.pair_model == m_out))[0]] = False
    real = recombine_mod.solve_arrays
    calls: list[tuple[np.ndarray, bool]] = []

    def recorded(A, c, lb, ub, lo, hi, integer, **kw):
        sol = real(A, c, lb, ub, lo, hi, integer, **kw)
        with_start = kw.get("start") is not None
        if with_start:
            start = np.asarray(kw["start"])
            assert (lo - 1e-6 <= A @ start).all() and (A @ start <= hi + 1e-6).all()  # the start meets the rows
            assert sol.values is not None and float(c @ sol.values) <= float(c @ start) + 1e-6
        calls.append((np.asarray(c), with_start))
        return sol

    monkeypatch.setattr(recombine_mod, "solve_arrays", recorded)
    configs.add_priced(rc, pairs, swept, deadline=time.monotonic() + 60)
    models = [m for m in range(configs.n_models) if len(configs.columns(m))]
    assert len(calls) == len(models)
    assert sum(not started for _, started in calls) == 1  # m_out's alone
    # the one without a start is m_out's: its costs are the reduced costs of its columns less the pair left out
    cols = configs.columns(m_out)
    keep = model.with_pairs(pairs)[cols] | (model.lb[cols] > 0)
    unstarted = next(c for c, started in calls if not started)
    assert np.array_equal(unstarted, rc[cols[keep]])


def test_recombining_with_priced_configurations_finds_a_better_plan(plans, lp_result):
    """The priced configurations added to the sweep's: the master over the larger set is at least
    as good (both solved to optimality), keeps every row, and on this fleet is better."""
    _, model, _, _, swept, seen = plans
    more = copy.deepcopy(seen)
    rc = reduced_costs(model, more, lp_result)
    assert more.add_priced(rc, np.ones(model.arrays.n_pairs, dtype=bool), swept,
                           deadline=time.monotonic() + 60).added > 0
    plain = recombine(model, copy.deepcopy(seen), swept, time_limit=30)
    priced = recombine(model, more, swept, time_limit=30)
    assert priced.status == "OPTIMAL" and priced.values is not None
    assert plain.values is None or plain.status == "OPTIMAL"
    before = cost(model, swept if plain.values is None else plain.values)
    assert cost(model, priced.values) < before - 1e-6 * abs(before)
    assert_feasible(model, priced.values)


def test_the_master_lp_lies_between_the_lp_and_the_master_and_its_duals_bound(plans, lp_result):
    """``master_duals``: the LP of the master over the recorded configurations. Each configuration
    meets its model's rows (cover cuts among them), so that LP is at least the model's LP; it is at
    most the master's integer optimum; its duals price the rows between models alone; and at them
    the Lagrangian bound by model (over every configuration, not only those recorded) is at most
    its value (weak duality)."""
    from placer.optimizer.bound import model_bound

    _, model, _, first, _, seen = plans
    configs = copy.deepcopy(seen)
    got = master_duals(model, configs, time_limit=30)
    assert got is not None
    value, pi = got
    best = recombine(model, copy.deepcopy(configs), first, time_limit=30)
    assert best.status == "OPTIMAL" and best.values is not None
    tol = 1e-6 * abs(value)
    assert lp_result.value - tol <= value <= cost(model, best.values) + tol
    assert not pi[configs.blocks.local].any() and np.any(pi != 0)
    bound = model_bound(model, pi, time.monotonic() + 60, workers=2)
    assert bound.status == "OPTIMAL" and bound.bound <= value + tol


@pytest.mark.parametrize("all_onto, by_parts", [(4.0, False), (0.0, False), (0.0, True)])
def test_the_route_recombines_after_its_sweep_and_keeps_every_rule(monkeypatch, all_onto, by_parts):
    """The sweep's configurations first, then the LP's as well: gathered one way when the master
    has under ALL_ONTO_SECONDS (here 1.2 s of 4), every way when it has more; beyond
    RECOMBINE_PAIRS, one way, and a master per part of PART_MODELS models."""
    monkeypatch.setattr(large, "FULL_MIP_COLS", 0)  # as on a fleet too large for HiGHS on the whole model
    monkeypatch.setattr(large, "ALL_ONTO_SECONDS", all_onto)
    if by_parts:
        monkeypatch.setattr(large, "RECOMBINE_PAIRS", 0)
        monkeypatch.setattr(large, "PART_MODELS", 30)
    # pricing's window wide enough for a second round on a loaded machine as well, and the nearest
    # pairs alone (the window never holds the rounds over every pair)
    monkeypatch.setattr(large, "PRICE_SHARE", 0.9)
    monkeypatch.setattr(large, "EVERY_PAIR_ROUNDS", math.inf)
    monkeypatch.setattr(large, "AT_PRICES_ROUNDS", math.inf)
    ways: list[str] = []
    real = large.consolidated

    def consolidated_seen(model, lp_values, v, onto):
        ways.append(onto)
        return real(model, lp_values, v, onto)

    monkeypatch.setattr(large, "consolidated", consolidated_seen)
    duals: list[float] = []
    real_duals = large.master_duals

    def master_duals_seen(*args, **kw):
        got = real_duals(*args, **kw)
        duals.append(math.nan if got is None else got[0])
        return got

    monkeypatch.setattr(large, "master_duals", master_duals_seen)
    fleet = to_fleet(generate(80, 20, seed=3))
    said: list[str] = []
    r = large.optimize_large(fleet, RULES, progress=said.append, time_limit=4.0)
    said = r.log  # the route's record of each step done, its time and note
    assert r.placement is not None and "recombine" in r.stats
    # first the sweep's configurations, then with the LP's as well
    recombined = [m for m in said if m.startswith("recombine")]
    assert len(recombined) == 2 and "from the LP" in recombined[1] and "priced" in recombined[1], said
    assert all(("of 3 parts" in m) == by_parts for m in recombined), said
    assert tuple(ways) == (ONTO if all_onto == 0.0 and not by_parts else ONTO[:1])
    # a second round of pricing, from the master's LP, where the first leaves the time (this
    # fleet's 80 models take a fraction of the window), not by parts
    assert len(duals) == (0 if by_parts else 1) and all(math.isfinite(d) for d in duals)
    assert ("in 2 rounds" in recombined[1]) == (not by_parts), said
    assert_keeps_rules(fleet, r.placement, RULES)
    priced = price(fleet, r.placement, RULES)
    assert r.objective == pytest.approx(priced.objective, rel=1e-6, abs=1e-6)
    assert r.bound <= r.objective + 1e-6


@pytest.mark.parametrize(("first_share", "second"), [(0.3, True), (0.7, False)])
def test_a_second_round_of_pricing_runs_where_the_window_holds_another(monkeypatch, first_share, second):
    """The second round runs when the window left holds the first round's time again
    (``large.SECOND_ROUND``; at M a part of one gains less than the wider pass it replaces). Here
    the first round is made to take 0.3 of its window (0.7 left: a second round) or 0.7 (0.3
    left: none). At 0.4 a loaded machine's work before the first round (its prices and pairs),
    which counts in the round's time, left the window too short for a second."""
    monkeypatch.setattr(large, "FULL_MIP_COLS", 0)
    monkeypatch.setattr(large, "PRICE_SHARE", 0.9)
    monkeypatch.setattr(large, "EVERY_PAIR_ROUNDS", math.inf)
    monkeypatch.setattr(large, "AT_PRICES_ROUNDS", math.inf)
    real = Configurations.add_priced
    calls: list[float] = []

    def slow_first(self, rc, pairs, v, deadline, *args, **kw):
        started = time.monotonic()
        got = real(self, rc, pairs, v, deadline, *args, **kw)
        if not calls:
            time.sleep(max(0.0, started + first_share * (deadline - started) - time.monotonic()))
        calls.append(time.monotonic() - started)
        return got

    monkeypatch.setattr(Configurations, "add_priced", slow_first)
    said: list[str] = []
    r = large.optimize_large(to_fleet(generate(80, 20, seed=3)), RULES, progress=said.append, time_limit=4.0)
    said = r.log  # the route's record of each step done, its time and note
    assert r.placement is not None
    recombined = [m for m in said if m.startswith("recombine")]
    assert ("in 2 rounds" in recombined[-1]) == second, said


@pytest.mark.parametrize("over", [large.OVER_EVERY_PAIR, large.OVER_AT_PRICES, large.OVER_NEAREST])
def test_where_the_window_holds_them_pricing_runs_round_after_round_until_the_masters_lp_stops(monkeypatch, over):
    """Where the window holds EVERY_PAIR_ROUNDS rounds over every pair (here: always), each round
    after the first prices every pair of each model; where it holds only AT_PRICES_ROUNDS rounds
    over the pairs cheapest at the round's prices, those pairs (``pairs_at_prices``); either from a
    master's LP below the last one's by more than MASTER_STOP, until that LP stops falling, no
    configuration is new, or the window closes: more than the two rounds of the nearest pairs.
    Where it holds neither: two rounds over the nearest pairs, with the wider pass after them."""
    monkeypatch.setattr(large, "FULL_MIP_COLS", 0)
    monkeypatch.setattr(large, "PRICE_SHARE", 0.9)
    monkeypatch.setattr(large, "EVERY_PAIR_ROUNDS", 0.0 if over == large.OVER_EVERY_PAIR else math.inf)
    monkeypatch.setattr(large, "AT_PRICES_ROUNDS", 0.0 if over == large.OVER_AT_PRICES else math.inf)
    got: list[large.Pricing] = []
    pairs_seen: list[np.ndarray] = []
    at_prices: list[np.ndarray] = []
    real_price, real_add, real_at = large.price_configurations, Configurations.add_priced, large.pairs_at_prices

    def price_seen(*args, **kw):
        got.append(real_price(*args, **kw))
        return got[-1]

    asked: list[np.ndarray | None] = []  # the models each call priced (None: every one)
    answered: list[recombine_mod.Priced] = []

    batched: list[bool] = []  # per call: whether the batch might take its inference models

    def add_seen(self, rc, pairs, *args, **kw):
        pairs_seen.append(pairs.copy())
        asked.append(kw.get("models"))
        batched.append(kw.get("batched", True))
        answered.append(real_add(self, rc, pairs, *args, **kw))
        return answered[-1]

    def at_seen(model, rc, v, per_group):
        at_prices.append(real_at(model, rc, v, per_group))
        return at_prices[-1]

    monkeypatch.setattr(large, "price_configurations", price_seen)
    monkeypatch.setattr(Configurations, "add_priced", add_seen)
    monkeypatch.setattr(large, "pairs_at_prices", at_seen)
    fleet = to_fleet(generate(80, 20, seed=3))
    said: list[str] = []
    # 8 s: on a quiet machine three rounds fit in 4 s, but with both cores loaded only two did
    r = large.optimize_large(fleet, RULES, progress=said.append, time_limit=8.0)
    said = r.log  # the route's record of each step done, its time and note
    assert r.placement is not None and len(got) == 1
    p, n_pairs = got[0], len(large.build_arrays(fleet, RULES).pair_model)
    assert p.over == over
    recombined = [m for m in said if m.startswith("recombine")]
    assert any(f"over {over}" in m for m in recombined) == (over != large.OVER_NEAREST), said
    if over != large.OVER_NEAREST:
        assert p.rounds >= 3 and len(p.master_lp) == p.rounds - 1
        assert len(pairs_seen) == p.rounds  # and no wider pass after them
        if over == large.OVER_EVERY_PAIR:
            assert all(s.all() for s in pairs_seen[1:])
        else:
            # each round over the pairs cheapest at its own prices (the first set decided the
            # route, at the LP's duals), fewer than every pair
            assert len(at_prices) == p.rounds
            assert all(np.array_equal(s, a) for s, a in zip(pairs_seen[1:], at_prices[1:], strict=True))
            assert all(s.sum() < n_pairs for s in pairs_seen[1:])
        # the first round prices every model; each after it, the models the one before improved,
        # or every model: every WHOLE_EVERY-th round, or when the last improved none or the master's
        # LP stopped falling (only after a round over some models: after one over all, pricing ends);
        # over every pair, the second round too (at the LP's duals, for the bound)
        assert asked[0] is None
        assert p.bounded == (over == large.OVER_EVERY_PAIR)
        # (a round by HiGHS where the batch stalls, BATCH_STALL, prices every model too: the test below)
        since_whole = 0
        for i in range(1, p.rounds):
            stalled = i >= 2 and p.master_lp[i - 1] > p.master_lp[i - 2] - large.MASTER_STOP * abs(p.master_lp[i - 2])
            by_highs = batched[i] is False
            whole = (stalled or by_highs or not len(answered[i - 1].improved) or since_whole + 1 >= large.WHOLE_EVERY
                     or (i == 1 and p.bounded))
            if whole:
                assert asked[i] is None, i
                assert not stalled or since_whole > 0 or (by_highs and batched[i - 1] is not False), i
            else:
                assert np.array_equal(asked[i], answered[i - 1].improved), i
            since_whole = 0 if whole else since_whole + 1
        assert any(m is not None for m in asked)  # some rounds priced some models alone
    else:
        assert p.rounds == 2 and len(p.master_lp) == 1
        # the nearest twice (here nearly every pair: 10 a model), then the wider pass
        sizes = [int(s.sum()) for s in pairs_seen]
        assert len(sizes) == 3 and sizes[0] == sizes[1] <= sizes[2] <= n_pairs
        assert all(m is None for m in asked)  # every model, each time
    assert p.priced > 0
    assert_keeps_rules(fleet, r.placement, RULES)
    assert r.objective == pytest.approx(price(fleet, r.placement, RULES).objective, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("stall", [0.0, large.BATCH_STALL])
def test_where_the_batchs_rounds_stop_paying_highs_prices_the_next_round(monkeypatch, stall):
    """Where the batch prices (``pricing_mode``), its local search stalls where HiGHS does not (at M
    its rounds left the master's LP at 8,945-8,949 USD/h, where one round by HiGHS brought it to
    8,921-8,924). So once a round leaves the master's LP less than BATCH_STALL below the last, the
    next round is HiGHS' (not batched), over every model; and once a round by HiGHS stalls too,
    pricing ends. Here the master's LP never falls: the second round (the first at the master's
    prices) is the batch's, the third HiGHS', and pricing ends there. With BATCH_STALL at 0 no round
    is HiGHS' (before 2026-12-02 none was)."""
    monkeypatch.setattr(large, "FULL_MIP_COLS", 0)
    monkeypatch.setattr(large, "PRICE_SHARE", 0.9)
    monkeypatch.setattr(large, "EVERY_PAIR_ROUNDS", math.inf)
    monkeypatch.setattr(large, "AT_PRICES_ROUNDS", 0.0)
    monkeypatch.setattr(large, "SECOND_ROUND", 0.0)  # a round after the first however long it took (load)
    monkeypatch.setattr(large, "BATCH_STALL", stall)
    monkeypatch.setattr(large, "WHOLE_EVERY", 1)  # every round over every model
    real_duals, real_add, real_price = large.master_duals, Configurations.add_priced, large.price_configurations
    monkeypatch.setattr(large, "master_duals", lambda *a, **kw: (1000.0, real_duals(*a, **kw)[1]))
    calls: list[tuple[bool, object]] = []  # per round: whether the batch may take it, the models asked
    got: list[large.Pricing] = []

    def add_seen(self, rc, pairs, *args, **kw):
        calls.append((kw.get("batched", True), kw.get("models")))
        return real_add(self, rc, pairs, *args, **kw)

    def price_seen(*args, **kw):
        got.append(real_price(*args, **kw))
        return got[-1]

    monkeypatch.setattr(Configurations, "add_priced", add_seen)
    monkeypatch.setattr(large, "price_configurations", price_seen)
    said: list[str] = []
    fleet = to_fleet(generate(80, 20, seed=3))
    r = large.optimize_large(fleet, RULES, progress=said.append, time_limit=8.0)
    said = r.log
    assert r.placement is not None and len(got) == 1
    assert got[0].over == large.OVER_AT_PRICES
    if stall:
        assert calls == [(True, None), (True, None), (False, None)], calls
        assert got[0].rounds == 3 and got[0].by_highs == 1
        assert any("(1 by HiGHS)" in m for m in said if m.startswith("recombine")), said
    else:
        assert calls == [(True, None), (True, None)], calls
        assert got[0].by_highs == 0 and not any("by HiGHS" in m for m in said), said
    assert_keeps_rules(fleet, r.placement, RULES)


@pytest.mark.parametrize(("pace", "over"), [(0.0, large.OVER_EVERY_PAIR), (10.0, large.OVER_AT_PRICES)])
def test_the_exact_round_over_every_pair_is_guessed_at_highs_pace(monkeypatch, pace, over):
    """The first round over every pair is exact: HiGHS prices every model, for the bound. Its time
    is guessed at HiGHS' pace in the first round (``Priced.mip_seconds`` a MIP, times the models over
    the threads, times the ratio of pairs), not at the first round's, which the batch makes 10-50
    times faster a block: guessed so, M at 5 s chose it where its window held a third of it, and the
    round stopped unfinished at the window's end. Here the first round says HiGHS took ``pace``
    seconds a MIP: at 0 the window holds the exact round and it runs; at 10 s (80 models) it does
    not, and the rounds over the pairs cheapest at each round's prices run instead."""
    monkeypatch.setattr(large, "FULL_MIP_COLS", 0)
    monkeypatch.setattr(large, "PRICE_SHARE", 0.9)
    monkeypatch.setattr(large, "EVERY_PAIR_ROUNDS", 1.0)  # the exact round alone
    monkeypatch.setattr(large, "AT_PRICES_ROUNDS", 0.0)  # else these, always
    got: list[large.Pricing] = []
    real_price, real_add = large.price_configurations, Configurations.add_priced

    def price_seen(*args, **kw):
        got.append(real_price(*args, **kw))
        return got[-1]

    def add_paced(self, rc, pairs, *args, **kw):
        answer = real_add(self, rc, pairs, *args, **kw)
        return dataclasses.replace(answer, mip_seconds=pace, mip_models=1) if kw.get("pace") else answer

    monkeypatch.setattr(large, "price_configurations", price_seen)
    monkeypatch.setattr(Configurations, "add_priced", add_paced)
    r = large.optimize_large(to_fleet(generate(80, 20, seed=3)), RULES, progress=lambda _: None, time_limit=4.0)
    assert r.placement is not None and len(got) == 1
    assert got[0].over == over and got[0].bounded == (over == large.OVER_EVERY_PAIR)


@pytest.mark.parametrize("seed", [3, 11])
def test_the_first_round_over_every_pair_prices_at_the_lps_duals_and_bounds_the_plan(monkeypatch, seed):
    """Where pricing runs over every pair, its first such round prices every model over all its
    pairs at the LP's duals: what those MIPs proved makes a Lagrangian bound (``bound.Lagrangian``)
    that the plan reports, above the LP's own (replicas come whole) and never above the optimum."""
    from tests.bench.test_bound import exact

    monkeypatch.setattr(large, "FULL_MIP_COLS", 0)
    monkeypatch.setattr(large, "PRICE_SHARE", 0.9)
    monkeypatch.setattr(large, "EVERY_PAIR_ROUNDS", 0.0)
    monkeypatch.setattr(large, "AT_PRICES_ROUNDS", math.inf)
    seen: list[tuple[large.Pricing, float, np.ndarray]] = []
    rounds: list[tuple[np.ndarray, bool]] = []
    real_price, real_add = large.price_configurations, Configurations.add_priced

    def price_seen(model, configs, lp, *args, **kw):
        got = real_price(model, configs, lp, *args, **kw)
        seen.append((got, lp.duals.bound, lp.duals.pi))
        return got

    def add_seen(self, rc, pairs, *args, **kw):
        rounds.append((rc.copy(), bool(pairs.all()) and kw.get("models") is None))
        return real_add(self, rc, pairs, *args, **kw)

    monkeypatch.setattr(large, "price_configurations", price_seen)
    monkeypatch.setattr(Configurations, "add_priced", add_seen)
    fleet = to_fleet(generate(30, 8, seed=seed))
    said: list[str] = []
    r = large.optimize_large(fleet, RULES, progress=said.append, time_limit=4.0)
    said = r.log  # the route's record of each step done, its time and note
    assert r.placement is not None and len(seen) == 1
    p, lp_bound, _ = seen[0]
    assert p.over == large.OVER_EVERY_PAIR and p.bounded and len(rounds) >= 2
    # the round after the first (at the LP's duals, over the nearest pairs) is at the same prices,
    # over every pair and every model
    assert rounds[1][1] and np.array_equal(rounds[1][0], rounds[0][0])
    assert any(f"bound {p.bound:.2f}" in m for m in said if m.startswith("recombine")), said
    model = build_matrix(build_arrays(fleet, RULES), RULES, {})
    opt = exact(model)
    assert lp_bound + 1e-6 < p.bound <= opt + 1e-6 * abs(opt), (lp_bound, p.bound, opt)
    assert min(p.bound, r.objective) - 1e-6 <= r.bound <= opt + 1e-6 * abs(opt)


def test_a_master_left_no_time_by_its_pricing_is_said(monkeypatch):
    """A pricing round that overruns its share (a loaded machine; at XL a first round with the batch's
    one call over 10,000 models took 32 s) leaves the master no time: the route said nothing of it,
    its record went from the first recombination to the neighbourhood search, and the search's
    time held the pricing's. It now says the master had no time, over how many configurations."""
    monkeypatch.setattr(large, "FULL_MIP_COLS", 0)
    real = large.price_configurations

    def overrun(model, configs, lp, v, allowed, until, *args, **kw):
        got = real(model, configs, lp, v, allowed, until, *args, **kw)
        time.sleep(max(0.0, until - time.monotonic()) + 2.0)  # past any master window of a 4 s route
        return got

    monkeypatch.setattr(large, "price_configurations", overrun)
    fleet = to_fleet(generate(80, 20, seed=3))
    r = large.optimize_large(fleet, RULES, time_limit=4.0)
    recombined = [m for m in r.log if m.startswith("recombine")]
    assert len(recombined) == 2 and "no time left for the master over" in recombined[1], r.log
    assert "priced" in recombined[1], r.log
    assert r.placement is not None
    assert_keeps_rules(fleet, r.placement, RULES)
