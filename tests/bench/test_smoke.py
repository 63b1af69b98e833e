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
from placer.optimizer import optimize
from placer.optimizer.arrays import build_arrays
from placer.optimizer.large import optimize_large
from placer.placement import check_hard_constraints
from policies import build_rules
from tests.bench.firstplan import assert_keeps_rules

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
    assert_keeps_rules(fleet, result.placement, RULES)


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
    files = {p.relative_to(tmp_path / "fleet").as_posix() for p in (tmp_path / "fleet").rglob("*.yaml")}
    assert {"locations.yaml", "links.yaml", "policies.yaml", "settings.yaml", "models/models-000.yaml"} <= files
    from_disk = load_fleet(tmp_path / "fleet")
    in_memory = to_fleet(docs)
    assert from_disk.digest == in_memory.digest
    assert len(in_memory.models) == 6 and len(in_memory.pools) == 5


def test_exact_route_that_stops_without_a_plan_falls_back_to_the_scalable_route(monkeypatch):
    """HiGHS through pywraplp returns no incumbent when it stops at the time limit; the plan must
    come from the scalable route instead of failing (seam: the exact solve reports that status)."""
    import placer.optimizer.solve as solve_module

    small = to_fleet(generate(10, 6, seed=5))
    monkeypatch.delenv("PLACER_OPTIMIZER", raising=False)
    monkeypatch.setattr(solve_module, "solve_quietly", lambda solver, params: 99)
    said: list[str] = []
    result = solve_module.optimize(small, RULES, progress=said.append, time_limit=2.0)
    assert any("scalable route" in s for s in said)
    assert result.placement is not None
    assert check_hard_constraints(small, result.placement, throughputs(small)) == []
    assert result.objective == pytest.approx(price(small, result.placement, RULES).objective, rel=1e-6, abs=1e-6)


def test_exact_route_under_a_tiny_time_limit_still_plans(monkeypatch):
    small = to_fleet(generate(30, 20, seed=1))  # 600 model x pool: the exact route
    monkeypatch.delenv("PLACER_OPTIMIZER", raising=False)
    result = optimize(small, RULES, time_limit=0.01)
    assert result.placement is not None
    assert check_hard_constraints(small, result.placement, throughputs(small)) == []


def test_plan_json_on_the_scalable_route_is_only_json(tmp_path):
    """HiGHS prints a banner on stdout when its first instance is made: ``plan --json`` must
    print the plan and nothing else on the scalable route too."""
    import json
    import subprocess
    import sys

    docs = generate(30, 30, seed=2)  # 900 model x pool: beyond the exact route
    for d in docs:
        if d["kind"] == "Settings":
            d["spec"].setdefault("solver", {})["timeLimitSeconds"] = 3
    fleet_dir = write_fleet(docs, tmp_path / "fleet")
    proc = subprocess.run([sys.executable, "-m", "placer", "plan", str(fleet_dir), "-o", str(tmp_path / "plan.json"),
                           "--json"], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode in (0, 2), proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["formatVersion"] == 1
    assert plan["placements"]


def test_full_mip_baseline_returns_its_incumbent_and_bound(fleet):
    from bench.baselines import full_mip

    plan = full_mip(fleet, RULES, time_limit=3.0)
    assert plan.placement is not None, plan.status
    assert check_hard_constraints(fleet, plan.placement, throughputs(fleet)) == []
    cost = price(fleet, plan.placement, RULES)
    assert math.isfinite(plan.bound) and plan.bound <= cost.objective + 1e-6


def test_candidates_of_the_scalable_route_are_built_on_first_use(fleet, result):
    from placer.optimizer.arrays import ArrayCandidates

    cands = result.candidates
    assert isinstance(cands, ArrayCandidates) and cands._built is None
    assert cands.retired == build_arrays(fleet, RULES).to_candidates().retired
    eager = build_arrays(fleet, RULES).to_candidates()
    assert cands.pairs == eager.pairs and cands.routes == eager.routes
    assert cands._built is not None
    assert set(cands.pools_of(next(iter(eager.pairs))[0])) == set(eager.pools_of(next(iter(eager.pairs))[0]))
    # the reasons pairs are out (the arrays keep none): the exact route's, pair by pair, and no
    # reason for a pair the route may use
    from placer.candidates import find_candidates

    exact = find_candidates(fleet, RULES)
    assert dict(cands.excluded) == exact.excluded and len(exact.excluded) > 0
    assert all(cands.excluded.get(pair) is None for pair in eager.pairs)
    assert {e.reason for e in exact.excluded.values()} >= {"policy", "throughput"}


def test_an_lp_that_does_not_finish_in_time_still_gives_a_plan(fleet, monkeypatch):
    """On a loaded machine the first LP round of a large fleet may not finish: plan from the greedy
    plan instead of returning none (seam: column generation returns no duals)."""
    import numpy as np

    import placer.optimizer.large as large
    from placer.optimizer.lp import LpResult

    def no_lp(model, *args, **kwargs):
        return LpResult("UNKNOWN", math.inf, np.zeros(model.n_cols), None, np.zeros(model.arrays.n_pairs, dtype=bool),
                        1, 0.0)

    monkeypatch.setenv("PLACER_MODE", "lp")
    monkeypatch.setattr(large, "column_generation", no_lp)
    said: list[str] = []
    result = optimize_large(fleet, RULES, progress=said.append, time_limit=3.0)
    said = result.log  # the route's record of each step done, its time and note
    assert any("no LP in time" in s for s in said)
    assert result.placement is not None
    assert check_hard_constraints(fleet, result.placement, throughputs(fleet)) == []
    assert result.bound <= result.objective + 1e-6


@pytest.mark.parametrize("limit", [7.0, None])
def test_the_scalable_routes_time_limit_counts_from_the_call(monkeypatch, limit):
    """``optimize`` hands the scalable route what is left of the limit (Settings' when none is
    given) once its modules are imported: never more, and not the whole limit again."""
    import time

    import placer.optimizer.large as large
    import placer.optimizer.solve as solve

    fleet = to_fleet(generate(60, 14, seed=11))
    assert solve.use_large(fleet)
    given = []

    def fake(fleet, rules, current, progress, time_limit, forbid, whole, placed):
        given.append(time_limit)
        raise RuntimeError("stop here")

    real_use_large = solve.use_large

    def slow_use_large(f):
        time.sleep(0.2)  # as a first import of scipy and highspy would
        return real_use_large(f)

    monkeypatch.setattr(large, "optimize_large", fake)
    monkeypatch.setattr(solve, "use_large", slow_use_large)
    with pytest.raises(RuntimeError, match="stop here"):
        optimize(fleet, RULES, time_limit=limit)
    full = limit if limit is not None else fleet.settings.solver.time_limit_seconds
    assert len(given) == 1 and 0.5 * full < given[0] <= full - 0.2


def test_highs_on_the_whole_model_gets_every_row_but_the_rules_cuts(monkeypatch):
    """The spread rule's valid inequalities are cuts (``ModelBuilder.cut``): in the LP, and left out
    of the whole model handed to HiGHS (its own search found S's optimum in 6 s without them, and
    not in 9 s with them). The plan still keeps the rule."""
    import numpy as np

    import placer.optimizer.large as large

    fleet = to_fleet(generate(40, 12, seed=5))
    handed: list[np.ndarray] = []
    seen: dict[str, object] = {}
    real_solve, real_build = large.solve, large.build_matrix

    def solve_seen(model, cols, **kw):
        if kw.get("integer") and len(cols) == model.n_cols:
            handed.append(np.asarray(kw["rows"]))
        return real_solve(model, cols, **kw)

    def build_seen(*args, **kw):
        seen["model"] = model = real_build(*args, **kw)
        return model

    monkeypatch.setattr(large, "solve", solve_seen)
    monkeypatch.setattr(large, "build_matrix", build_seen)
    r = optimize_large(fleet, RULES, time_limit=3.0)
    model = seen["model"]
    cut_names = {model.row_names[int(i)].rsplit(":", 1)[1] for i in model.cut_rows}
    assert len(model.cut_rows) and cut_names <= {"always", "serve-or-spread"}
    assert {i for i, n in model.row_names.items() if n.endswith((":always", ":serve-or-spread"))} == set(
        model.cut_rows.tolist())
    assert len(handed) == 1
    assert set(handed[0].tolist()) == set(range(model.n_rows)) - set(model.cut_rows.tolist())
    assert_keeps_rules(fleet, r.placement, RULES)


@pytest.mark.parametrize("seed", [0, 3, 7])
def test_validate_warnings_from_the_arrays_are_find_candidates_warnings(seed):
    """`placer validate` warns from the arrays (fleet_warnings), not one object per pair: the same
    warnings, in the same order, on generated fleets with a model no pool can host and demand no
    pool reaches within its SLO added, and on the generator's own (which may have none)."""
    import copy

    from placer.candidates import eligibility_warnings, find_candidates
    from placer.optimizer.arrays import build_arrays, fleet_warnings

    def warnings(fleet, cands):  # the same counts, read off find_candidates' objects
        a = build_arrays(fleet, RULES)  # what each demand entry and model could be served, as the solver takes it
        served = {(a.models[m].name, i): r for m, i, r in zip(a.dem_model, a.dem_index, a.dem_rate, strict=True)}
        return eligibility_warnings(
            fleet, cands.retired, lambda model: len(cands.pools_of(model)),
            lambda model, i: len(cands.routes.get((model, i)) or ()),
            lambda model: [e for (m, _), e in cands.excluded.items() if m == model],
            lambda model, i: served.get((model, i), 0.0),
            lambda model: a.pair_max[a.pair_ptr[a.model_index[model]]:a.pair_ptr[a.model_index[model] + 1]].tolist())

    docs = generate(30, 12, seed=seed)
    model = next(d for d in docs if d["kind"] == "Model" and d["spec"].get("demand"))
    huge = copy.deepcopy(model)
    huge["metadata"]["name"] = "too-big"
    huge["spec"]["replica"]["memoryGiBPerGpu"] = 10_000
    far = copy.deepcopy(model)
    far["metadata"]["name"] = "too-far"
    far["spec"]["demand"][0]["latencySloMs"] = 0.001
    for extra in ([], [huge, far]):
        fleet = to_fleet(docs + extra)
        exact = [str(d) for d in warnings(fleet, find_candidates(fleet, RULES))]
        assert [str(d) for d in fleet_warnings(fleet, RULES)] == exact
        if extra:
            assert any("too-big" in w and "no pool can host this model (pools are out for: " in w for w in exact)
            assert any("too-far" in w and "within 0.001 ms" in w for w in exact)


def test_most_allocated_keeps_a_spread_by_growing_a_pool_in_another_domain():
    """(b) filters by a spread short of its domains before it prefers pools with room (a topology
    spread constraint, then the cluster autoscaler): on bench S it put both replicas of a critical
    model in the one domain with room, and every replica of one whose demand reaches one domain
    there, 3 spread policies broken that a node more elsewhere keeps."""
    from bench.generate import make_fleet

    small = make_fleet("S", 0)
    plan = most_allocated(small, RULES)
    assert plan.placement is not None
    required = [v for v in price(small, plan.placement, RULES).violations if v.enforcement == "required"]
    assert required == []
    assert check_hard_constraints(small, plan.placement, throughputs(small)) == []



def test_generate_refuses_a_directory_that_holds_another_fleet(tmp_path):
    """``python -m bench.generate S DIR`` over DIR holding an M fleet wrote S's files among M's and
    said 'wrote S fleet': validate then read one fleet of both, 50 errors."""
    import subprocess
    import sys

    def generate_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bench.generate", *args], capture_output=True, text=True,
                              timeout=120, check=False)

    first = generate_cli("T", str(tmp_path / "fleet"))
    assert first.returncode == 0 and "wrote T fleet (seed 0)" in first.stdout
    again = generate_cli("T", str(tmp_path / "fleet"), "1")
    assert again.returncode == 2
    assert "already holds" in again.stderr and "give a new or empty directory" in again.stderr
    assert load_fleet(tmp_path / "fleet").digest == to_fleet(generate(12, 8, 0, 5.0)).digest
    negative = generate_cli("T", str(tmp_path / "other"), "-1")
    assert negative.returncode == 2 and "the seed must be a whole number 0 or more, not -1" in negative.stderr


@pytest.mark.parametrize("size", ["T", "S"])
def test_generated_fleets_validate(size, tmp_path, capsys):
    """A generated fleet passes `placer validate`: its cloud pools name real AWS regions and GCP zones
    (they named their site, region cloud-us-002, zone cloud-eu-002-c, which validate refuses), and its
    models' minReplicas fit the pools they share."""
    from bench.generate import size_docs
    from placer.cli import main

    path = write_fleet(size_docs(size), tmp_path / "fleet")
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
