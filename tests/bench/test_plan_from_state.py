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


def _fleet(docs: list[dict], root: Path) -> Path:
    for d in docs:
        if d["kind"] == "Settings":
            d["spec"]["state"] = {"backend": "local", "path": str(root / "state.json")}
            d["spec"]["apply"] = {"mode": "gitops", "directory": str(root / "deploy")}
            d["spec"]["solver"] = {"timeLimitSeconds": 3, "workers": 1}
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
