"""`placer plan` from an applied state on the scalable route: what runs makes it a short re-plan
around it, unless `--full-search` asks for the whole fleet, and a rollout's replicas, priced as
started anew, still count as what runs for where the search starts."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import pytest

import placer.optimizer.large as large
from bench.generate import generate, scale_demand, write_fleet
from placer.cli import main
from placer.cost import price
from placer.diff import running_replicas
from placer.fleet import load_fleet
from placer.planfile import read
from placer.planner import placement_of_body
from placer.state import LocalBackend
from policies import build_rules

NOW = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)


def _fleet(docs: list[dict], root: Path, **solver: int) -> Path:
    for d in docs:
        if d["kind"] == "Settings":
            d["spec"]["state"] = {"backend": "local", "path": str(root / "state.json")}
            d["spec"]["apply"] = {"mode": "gitops", "directory": str(root / "deploy")}
            d["spec"]["solver"] = {"timeLimitSeconds": 3, "workers": 1, **solver}
    fleet = root / "fleet"
    if fleet.exists():
        for old in fleet.rglob("*.yaml"):
            old.unlink()
    return write_fleet(docs, fleet)


def _plan(fleet: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    capsys.readouterr()
    assert main(["plan", str(fleet), "--json", "--now", "2026-11-28T00:00:00Z", *extra]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def applied(tmp_path_factory):
    """A generated fleet of 120 models x 30 pools (the scalable route), planned and applied."""
    root = tmp_path_factory.mktemp("applied")
    docs = generate(120, 30, seed=0)
    fleet = _fleet(copy.deepcopy(docs), root)
    assert main(["plan", str(fleet), "-o", str(root / "first.json"), "--now", "2026-11-28T00:00:00Z"]) == 0
    assert main(["apply", str(root / "first.json")]) == 0
    return docs, root


def test_full_search_plans_the_whole_fleet_where_a_replan_would_search_around_what_runs(applied, capsys):
    """A fleet re-planned often drifts dearer (bench M, five 5% changes: +3.1% over the whole
    route), and the re-plan's note named no way out."""
    docs, root = applied
    fleet = _fleet(scale_demand(docs, seed=1), root)
    short = _plan(fleet, capsys)
    assert short["solver"]["note"] == large.REPLAN_NOTE
    assert "placer plan --full-search" in large.REPLAN_NOTE  # the note says the way out
    full = _plan(fleet, capsys, "--full-search")
    assert "note" not in full["solver"] or not full["solver"]["note"]
    # the whole route's bound is its LP's, with cover cuts, far above the simple prices a re-plan has
    assert full["solver"]["boundUsdPerHour"] > short["solver"]["boundUsdPerHour"] * 1.02
    assert full["solver"]["gap"] < short["solver"]["gap"]


def test_apply_auto_approve_full_search_plans_the_whole_fleet(applied, capsys, tmp_path):
    """The re-plan's note names --full-search; a pipeline that plans and applies in one go
    (`placer apply FLEET --auto-approve`) had no way to ask for it."""
    docs, root = applied
    fleet = _fleet(scale_demand(docs, seed=2), root)
    state = tmp_path / "state.json"  # a copy: the module's other tests plan from the state as applied
    state.write_bytes((root / "state.json").read_bytes())
    said = {}
    for label, extra in (("short", ()), ("full", ("--full-search",))):
        capsys.readouterr()
        args = ["apply", str(fleet), "--auto-approve", "--state", str(state), "--now", "2026-11-28T00:00:00Z"]
        assert main([*args, *extra]) == 0
        said[label] = " ".join(capsys.readouterr().out.split())
        state.write_bytes((root / "state.json").read_bytes())
    assert "placer plan --full-search" in said["short"], said["short"]
    assert "re-planned around what runs" not in said["full"], said["full"]


def test_after_full_search_every_applied_re_plans_the_next_plan_searches_the_whole_fleet(applied, capsys, tmp_path):
    """Re-plans drift dearer one after another (bench S, ten 5% changes each re-planned from the
    last: 1.4% above a whole search from the same state after the first, 3.5% after the sixth),
    and nothing searched the whole fleet unless asked. Each apply's history entry now says how its
    plan was searched; after solver.fullSearchEvery re-plans in a row the next plan searches the
    whole fleet and says why, and once applied the count starts again."""
    docs, root = applied
    state = tmp_path / "state.json"  # a copy: the module's other tests plan from the state as applied
    state.write_bytes((root / "state.json").read_bytes())
    assert json.loads(state.read_text())["history"][-1]["search"] == "whole"  # the first plan's
    said = []
    for seed in (3, 4, 5):
        fleet = _fleet(scale_demand(docs, seed=seed), root, fullSearchEvery=2)
        capsys.readouterr()
        assert main(["apply", str(fleet), "--auto-approve", "--state", str(state),
                     "--now", "2026-11-28T00:00:00Z"]) == 0
        said.append(" ".join(capsys.readouterr().out.split()))
    searched = [h.get("search") for h in json.loads(state.read_text())["history"]]
    assert searched[-4:] == ["whole", "replan", "replan", "whole"], searched
    assert all("re-planned around what runs" in s for s in said[:2]), said[:2]
    assert ("the last 2 applied plans were short re-plans around what runs, which drift dearer one after another, "
            "and Settings solver.fullSearchEvery is 2") in said[2], said[2]
    # the count starts again: the next plan is a short re-plan
    fleet = _fleet(scale_demand(docs, seed=6), root, fullSearchEvery=2)
    plan = _plan(fleet, capsys, "--state", str(state))
    assert plan["solver"]["search"] == "replan" and plan["solver"]["note"] == large.REPLAN_NOTE


def test_full_search_every_0_never_searches_the_whole_fleet_by_itself(applied, capsys, tmp_path):
    docs, root = applied
    data = json.loads((root / "state.json").read_text())
    data["history"] += [{**data["history"][-1], "search": "replan"} for _ in range(6)]
    state = tmp_path / "state.json"
    state.write_text(json.dumps(data))
    for every, search in ((0, "replan"), (6, "whole"), (7, "replan")):
        plan = _plan(_fleet(scale_demand(docs, seed=7), root, fullSearchEvery=every), capsys, "--state", str(state))
        assert plan["solver"]["search"] == search, (every, plan["solver"])
        assert ("Settings solver.fullSearchEvery is 6" in plan["solver"].get("note", "")) == (every == 6)


def test_a_rollout_re_plans_around_what_runs_and_never_costs_more_than_rolling_out_in_place(applied, capsys):
    """The models with most demand get a new image: their replicas restart, churn for every one,
    wherever they go. Counted as not running for the search too, what still ran served under 90%
    of the demand and the plan took the whole route, which never weighs leaving everything where
    it is: at bench M, 13 models rolled out (15% of the demand) came out 27.46 USD dearer than
    rolling them out in place."""
    docs, root = applied
    docs = copy.deepcopy(docs)
    models = [d for d in docs if d["kind"] == "Model"]
    rate = {d["metadata"]["name"]: sum(e["rate"] for e in d["spec"].get("demand", [])) for d in models}
    top = sorted(rate, key=rate.get, reverse=True)
    rolled, share = [], 0.0
    for name in top:  # past a tenth of the demand: what still runs, less them, serves under 90% of it
        rolled.append(name)
        share += rate[name] / sum(rate.values())
        if share > 0.15:
            break
    for d in models:
        if d["metadata"]["name"] in rolled:
            d["spec"]["image"] = f"registry.example/{d['metadata']['name']}:2"
    fleet = _fleet(docs, root)
    plan = _plan(fleet, capsys)
    assert plan["solver"].get("note") == large.REPLAN_NOTE, "the rollout sent the plan to the whole route"

    loaded = load_fleet(str(fleet))
    state = LocalBackend(str(root / "state.json")).read()
    current = running_replicas(loaded, state)  # a rollout's replicas start anew: churn
    assert not any(m in rolled for m, _ in current)
    # the first plan, as applied: every model rolled out where it runs
    in_place = placement_of_body(read(str(root / "first.json")).body, loaded)
    kept = price(loaded, in_place, build_rules(NOW), current)
    assert kept.churn >= 0.5 * sum(r for (m, _), r in in_place.replicas.items() if m in rolled) > 0
    objective = plan["cost"]["totalUsdPerHour"] + plan["cost"]["churnUsd"]
    assert objective <= kept.objective + 1e-6


def test_the_guard_keeps_the_short_re_plan_where_the_whole_search_comes_out_dearer(monkeypatch):
    """The whole search alone was at times dearer than the re-plan it replaced (bench S, a loaded
    machine: 1,246.80 USD/h against 1,221.75): the guard's plan is the cheaper of both, and counts
    as a whole search all the same."""
    import placer.planner as planner
    from placer.optimizer import SolveResult
    from placer.placement import Placement

    asked = []

    def fake(fleet, rules, current=None, progress=None, time_limit=None, whole=False, placed=None):
        asked.append((whole, time_limit))
        return SolveResult("FEASIBLE", Placement(replicas={}, nodes={}), 12.0 if whole else 10.0, 5.0, 0.1, replan=not whole)

    monkeypatch.setattr(planner, "optimize", fake)
    fleet = load_fleet(str(Path(__file__).parents[2] / "examples" / "hybrid"))
    got = planner.searched_whole(fleet, build_rules(NOW), {}, None, None, 4.0, 5, 5)
    assert got.objective == 10.0 and not got.replan
    assert "it found nothing cheaper than the short re-plan's plan" in got.note
    assert [w for w, _ in asked] == [False, True] and asked[1][1] <= 4.0


class _Timed:
    """``optimize`` faked on an injected clock: the re-plan takes ``replan_s`` seconds of it, the whole
    search all the time it is given; each call's (whole, time_limit) is kept in ``asked``."""

    def __init__(self, result, replan_s: float) -> None:
        self.result, self.replan_s, self.now, self.asked = result, replan_s, 100.0, []

    def clock(self) -> float:
        return self.now

    def optimize(self, fleet, rules, current=None, progress=None, time_limit=None, whole=False, placed=None):
        import dataclasses

        self.asked.append((whole, time_limit))
        took = time_limit if whole else self.replan_s
        self.now += took
        return dataclasses.replace(self.result, objective=12.0 if whole else 10.0, wall_seconds=took,
                                   replan=not whole)


def _hybrid_result():
    from placer.optimizer import optimize

    fleet = load_fleet(str(Path(__file__).parents[2] / "examples" / "hybrid"))
    return fleet, optimize(fleet, build_rules(NOW))


def test_the_guard_searches_the_whole_fleet_in_what_the_re_plan_leaves_of_the_time_limit(monkeypatch):
    """Settings' time limit bounds the guard's plan, both searches together: the whole search was
    given half the limit where the re-plan had left less (5 s, the re-plan 4 s: 2.5 s more, 6.5 s in
    all), and the plan recorded the wall of the search it kept alone."""
    import placer.planner as planner

    fleet, result = _hybrid_result()
    timed = _Timed(result, replan_s=1.0)
    monkeypatch.setattr(planner, "optimize", timed.optimize)
    got = planner.searched_whole(fleet, build_rules(NOW), {}, None, None, 5.0, 5, 5, clock=timed.clock)
    assert timed.asked == [(False, 5.0), (True, 4.0)]
    assert got.wall_seconds == 5.0 and not got.replan  # both searches', within the limit

    timed = _Timed(result, replan_s=4.0)
    monkeypatch.setattr(planner, "optimize", timed.optimize)
    got = planner.searched_whole(fleet, build_rules(NOW), {}, None, None, 5.0, 5, 5, clock=timed.clock)
    assert timed.asked == [(False, 5.0)]  # 1 s left: no whole search
    assert got.replan and got.objective == 10.0 and got.wall_seconds == 4.0
    assert "the re-plan took 4.0 s of the 5 s time limit, leaving less than 50% of it" in got.note, got.note
    assert "the next plan tries again" in got.note and "solver.timeLimitSeconds" in got.note


def test_a_plan_whose_re_plan_left_too_little_for_the_whole_search_counts_as_a_re_plan(monkeypatch):
    """The plan says why it searched no further, and its search stays ``replan``: applied, the state's
    count of re-plans goes on, and the next plan tries the whole search again."""
    import functools

    import placer.planner as planner
    from placer.state import State

    fleet, result = _hybrid_result()
    every = fleet.settings.solver.full_search_every
    limit = fleet.settings.solver.time_limit_seconds
    timed = _Timed(result, replan_s=0.9 * limit)
    monkeypatch.setattr(planner, "optimize", timed.optimize)
    monkeypatch.setattr(planner, "searched_whole", functools.partial(planner.searched_whole, clock=timed.clock))
    state = State(lineage="l", serial=every, history=[{"serial": s + 1, "search": "replan"} for s in range(every)])
    plan = planner.make_plan(fleet, state, build_rules(NOW), NOW).plan
    assert [w for w, _ in timed.asked] == [False]
    solver = plan.body["solver"]
    assert solver["search"] == "replan" and solver["wallSeconds"] <= limit
    assert f"Settings solver.fullSearchEvery is {every}), but the re-plan took" in solver["note"], solver["note"]
