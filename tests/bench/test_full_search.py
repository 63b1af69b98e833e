"""`placer plan --full-search`: where what runs makes a plan a short re-plan around it, the whole
fleet searched in the whole time instead, its moves priced as churn. A fleet re-planned often
drifts dearer (bench M, five 5% changes: +3.1% over the whole route), and the re-plan's note named
no way out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import placer.optimizer.large as large
from bench.generate import generate, scale_demand, write_fleet
from placer.cli import main


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
    assert main(["plan", str(fleet), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_full_search_plans_the_whole_fleet_where_a_replan_would_search_around_what_runs(tmp_path, capsys):
    docs = generate(120, 30, seed=0)
    fleet = _fleet(docs, tmp_path)
    assert main(["plan", str(fleet), "-o", str(tmp_path / "first.json")]) == 0
    assert main(["apply", str(tmp_path / "first.json")]) == 0
    _fleet(scale_demand(docs, seed=1), tmp_path)

    short = _plan(fleet, capsys)
    assert short["solver"]["note"] == large.REPLAN_NOTE
    assert "placer plan --full-search" in large.REPLAN_NOTE  # the note says the way out
    full = _plan(fleet, capsys, "--full-search")
    assert "note" not in full["solver"] or not full["solver"]["note"]
    # the whole route's bound is its LP's, with cover cuts, far above the simple prices a re-plan has
    assert full["solver"]["boundUsdPerHour"] > short["solver"]["boundUsdPerHour"] * 1.02
    assert full["solver"]["gap"] < short["solver"]["gap"]
