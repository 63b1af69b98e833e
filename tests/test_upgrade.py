"""Upgrading placer in place: the state, saved plans and fleet digest an older placer wrote (files
under tests/data/upgrade, each named for the commit that wrote it) keep working with this one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from placer.fleet import load_fleet
from placer.state import State
from tests.test_cli import placer

DATA = Path(__file__).resolve().parent / "data" / "upgrade"
FLEET = DATA / "fleet"
NOW = "2026-11-28T00:00:00Z"


def test_the_fleet_digest_is_of_the_documents_as_written() -> None:
    """The digest a plan records of its fleet (``apply --fleet`` and ``explain --plan`` compare it
    with the fleet's) is of the documents as written, so a placer upgrade leaves it as it is. It was
    of the typed specs, as each placer reads them: this fleet's was sha256:99f028d0... at 45b2a68
    and 4833375 and sha256:2469f616... at ce5c01e (the selector's ``spot: false`` read as
    ``[false]``), and `apply --fleet` refused the reviewed plan as "made from another version of
    fleet" after the upgrade alone."""
    fleet = load_fleet(str(FLEET))
    assert fleet.digest == "sha256:4a340d205b82f866697563f8a63a566375061c903a75f656239427756facad9d"
    # the typed reading is still known, for the plans placers before this one saved
    assert fleet.legacy_digest == json.loads((DATA / "plan-ce5c01e.json").read_text())["fleetDigest"]


def test_a_plan_an_older_placer_saved_is_applied_with_fleet(tmp_path: Path) -> None:
    """A plan ce5c01e saved, reviewed, then applied by this placer with --fleet (the GitOps
    pipeline's merge): it is of this fleet, and the next plan has no changes."""
    r = placer("apply", str(DATA / "plan-ce5c01e.json"), "--fleet", str(FLEET), cwd=tmp_path)
    assert r.returncode == 0 and "Apply complete: 4 change(s) applied; state serial 1." in r.stdout, r.stderr
    r = placer("plan", str(FLEET), "--now", NOW, "--detailed-exitcode", cwd=tmp_path)
    assert r.returncode == 0 and "No changes." in r.stdout, r.stdout + r.stderr


def test_a_state_an_older_placer_wrote_plans_no_changes_and_is_written_back_as_it_was(tmp_path: Path) -> None:
    """The state 45b2a68 wrote after applying this fleet: this placer plans no changes from it and,
    reading and writing it, changes nothing in it (no churn in a state kept under version control)."""
    text = (DATA / "state-45b2a68.json").read_text()
    shutil.copy(DATA / "state-45b2a68.json", tmp_path / "state.json")
    r = placer("plan", str(FLEET), "--now", NOW, "--detailed-exitcode", cwd=tmp_path)
    assert r.returncode == 0 and "No changes." in r.stdout, r.stdout + r.stderr
    assert State.loads(text, "state.json").dumps() == text
