"""End to end through the CLI, in gitops mode: plan, apply, re-plan, edits, stale plans, the
lock, an apply killed half-way, failing providers, damaged state and plan files.

Most commands run in-process through ``placer.cli.main`` (fast); one test runs the real
console entry point in subprocesses for the true exit codes. The fleet and the providers
that fail on purpose are in ``lifecycle_helpers.py``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import thread as futures_thread
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lifecycle_helpers as lh

from placer import cli as placer_cli
from placer import planfile
from placer.apply import Applier, ApplyError, RetriesSpent, StalePlanError, check_fresh
from placer.diff import running_replicas
from placer.fleet import load_fleet
from placer.retry import RetryPolicy
from placer.state import LocalBackend
from providers.base import ProviderError
from providers.gitops import GitOpsProvider
from tests import denied
from tests.fleetkit import doc, inference, location, pool


class Env:
    """One fleet in ``tmp_path`` with its state file and GitOps directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.fleet = root / "fleet"
        self.state = root / "state" / "state.json"
        self.deploy = root / "deploy"
        self.said = ""  # what the last ``_rendered`` said on stderr
        self.write()

    def write(self, **edits: Any) -> None:
        lh.write_fleet(self.fleet, {"path": str(self.state)}, self.deploy, **edits)

    @property
    def backend(self) -> LocalBackend:
        return LocalBackend(self.state)

    def state_json(self) -> dict[str, Any]:
        return json.loads(self.state.read_text())


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def placer(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = placer_cli.main(list(args))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    return code, captured.out, captured.err


def plan_json(capsys: pytest.CaptureFixture[str], env: Env, out: Path | None = None) -> dict[str, Any]:
    args = ["plan", str(env.fleet), "--json", "--now", lh.NOW]
    if out is not None:
        args += ["-o", str(out)]
    code, stdout, stderr = placer(capsys, *args)
    assert code == 0, stderr
    return json.loads(stdout)


def apply_ok(capsys: pytest.CaptureFixture[str], plan: Path) -> str:
    code, stdout, stderr = placer(capsys, "apply", str(plan))
    assert code == 0, stderr
    return stdout


def plan_and_apply(capsys: pytest.CaptureFixture[str], env: Env, name: str = "first.json") -> Path:
    """Plan the fleet into ``name`` under the env's root and apply it; the plan's path."""
    path = env.root / name
    plan_json(capsys, env, path)
    apply_ok(capsys, path)
    return path


def load_plan(path: Path) -> planfile.Plan:
    return planfile.read(path)


def demand_of(plan: planfile.Plan) -> dict[str, float]:
    return {m: float(v["demand"]) for m, v in plan.body.get("models", {}).items()}


def run_applier(env: Env, plan_path: Path, provider: Any, **kwargs: Any) -> Any:
    """What ``placer apply`` does, with ``provider`` and sequential changes."""
    plan = load_plan(plan_path)
    backend = env.backend
    applier = Applier(backend, [provider], parallelism=1, retry=RetryPolicy(base_seconds=0.001), **kwargs)
    with backend.lock("apply"):
        state = backend.read()
        check_fresh(plan, state)
        return applier.run(plan, state, "test", plan.body["cost"]["totalUsdPerHour"], demand_of(plan))


# ---------------------------------------------------------------- plan, apply, re-plan


def test_plan_apply_replan_through_the_console_script(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "placer", *args], cwd=env.root, capture_output=True,
                              text=True, timeout=60)

    first = run("plan", str(env.fleet), "-o", "plan.json", "--now", lh.NOW, "--detailed-exitcode")
    assert first.returncode == 2, first.stderr
    assert "Plan: 5 to create, 0 to update, 0 to delete." in first.stdout
    assert not env.state.exists(), "plan must not write the state"
    plan = json.loads((env.root / "plan.json").read_text())
    assert lh.changes_of(plan) == lh.INITIAL_CHANGES
    assert plan["priorState"] == {"lineage": None, "serial": 0}

    applied = run("apply", "plan.json")
    assert applied.returncode == 0, applied.stderr
    assert "Apply complete: 5 change(s) applied; state serial 1." in applied.stdout
    state = env.state_json()
    assert state["serial"] == 1 and state["lineage"] and state["applying"] is None
    assert {k: v["replicas"] for k, v in state["deployments"].items()} == {
        "chat@aws-h100": 3, "embed@aws-h100": 2, "rerank@dc1-a100": 2, "summarize@aws-h100": 1}
    assert {k: v["nodes"] for k, v in state["pools"].items()} == {"aws-h100": 1}
    files = lh.tree(env.deploy)
    assert json.loads(files["terraform/placer.auto.tfvars.json"])["placer_pools"]["aws-h100"]["nodes"] == 1
    assert sum(1 for f in files if f.startswith("clusters/") and not f.endswith("kustomization.yaml")) == 4

    again = run("plan", str(env.fleet), "-o", "again.json", "--now", lh.NOW, "--detailed-exitcode")
    assert again.returncode == 0, again.stderr
    replan = json.loads((env.root / "again.json").read_text())
    assert [c for c in replan["changes"] if c["action"] != "no-op"] == []
    assert replan["priorState"] == {"lineage": state["lineage"], "serial": 1}

    assert "Traceback" not in first.stderr + applied.stderr + again.stderr

    # the rest in-process (each console run costs seconds of imports)
    code, stdout, _ = placer(capsys, "apply", str(env.root / "again.json"))
    assert code == 0 and "No changes" in stdout
    assert env.state_json()["serial"] == 1, "an apply without changes must not bump the serial"
    code, _, stderr = placer(capsys, "plan")  # usage errors exit 1, never 2 (2 means changes present)
    assert code == 1 and "Missing argument" in stderr


def test_edited_fleet_shows_exactly_the_expected_changes(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    plan_and_apply(capsys, env)

    env.write(chat_rate=9000, summarize=False)
    second = env.root / "second.json"
    plan = plan_json(capsys, env, second)
    assert lh.changes_of(plan) == lh.EDITED_CHANGES
    reasons = {c["address"]: c["reasons"] for c in plan["changes"]}
    assert reasons["deployment/chat@aws-h100"] == ["demand changed 3,000 -> 9,000"]
    assert reasons["deployment/summarize@aws-h100"] == ["model removed from the fleet"]
    assert reasons["pool/aws-h100"] == ["more capacity needed"]
    assert plan["priorState"]["serial"] == 1

    code, _, stderr = placer(capsys, "plan", str(env.fleet), "--now", lh.NOW, "--detailed-exitcode")
    assert code == 2, stderr
    apply_ok(capsys, second)
    state = env.state_json()
    assert state["serial"] == 2
    assert {k: v["replicas"] for k, v in state["deployments"].items()} == {
        "chat@aws-h100": 9, "embed@aws-h100": 2, "rerank@dc1-a100": 2}
    assert state["pools"]["aws-h100"]["nodes"] == 2
    assert state["models"]["chat"] == {"demand": 9000.0}
    # the models of the last applied plan only: a removed model's demand stayed, and when it came back
    # its plan said "demand changed" from what it had been before it left
    assert sorted(state["models"]) == ["chat", "embed", "rerank"]
    files = lh.tree(env.deploy)
    assert not [f for f in files if "summarize" in f], "the removed model's manifest must be gone"
    assert json.loads(files["terraform/placer.auto.tfvars.json"])["placer_pools"]["aws-h100"]["nodes"] == 2

    code, _, stderr = placer(capsys, "plan", str(env.fleet), "--now", lh.NOW, "--detailed-exitcode")
    assert code == 0, stderr


def test_an_apply_that_restores_an_edited_kustomization_says_so(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """placer owns each cluster folder's kustomization.yaml: an apply with no changes rewrote one a
    user had edited (commonLabels added) and said only "No changes. The infrastructure matches the
    plan." It says what it restored, and why; one the apply itself left behind is named too."""
    plan_and_apply(capsys, env)
    kust = sorted(env.deploy.rglob("kustomization.yaml"))[0]
    listed = kust.read_text()
    kust.write_text(listed + "commonLabels:\n  team: ml\n")
    again = env.root / "again.json"
    plan_json(capsys, env, again)
    code, stdout, stderr = placer(capsys, "apply", str(again))
    assert code == 0, stderr
    assert kust.read_text() == listed
    said = stdout + stderr
    assert f"restored {kust}: it had been edited" in said and "placer owns" in said, said
    assert f"an overlay above {kust.parent}" in said, said
    assert "No changes." in stdout

    kust.unlink()  # as an apply killed before its phase's end leaves it
    plan_json(capsys, env, again)
    code, stdout, stderr = placer(capsys, "apply", str(again))
    assert code == 0 and f"restored {kust}: it was missing" in stdout + stderr, stdout + stderr
    code, stdout, stderr = placer(capsys, "apply", str(again))
    assert code == 0 and "restored" not in stdout + stderr, "a kustomization as placer wrote it is left unsaid"


def test_a_manifest_deleted_by_hand_and_written_again_is_not_said_removed(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder's manifests deleted by hand, then written again by a refreshed plan's apply: the
    apply said "removed .../kustomization.yaml: its folder holds no manifest" and then wrote both
    back in the same run. What it says is what it leaves."""
    plan_and_apply(capsys, env)
    by_folder: dict[Path, list[Path]] = {}
    for p in env.deploy.rglob("*.yaml"):
        if p.name != "kustomization.yaml":
            by_folder.setdefault(p.parent, []).append(p)
    folder, manifests = sorted(by_folder.items())[0]
    kust = folder / "kustomization.yaml"
    written, listed = {m: m.read_text() for m in manifests}, kust.read_text()
    for m in manifests:
        m.unlink()  # someone emptied the folder by hand
    path = env.root / "refreshed.json"
    code, _, err = placer(capsys, "plan", str(env.fleet), "--refresh", "--now", lh.NOW, "-o", str(path))
    assert code == 0, err
    code, stdout, stderr = placer(capsys, "apply", str(path))
    said = " ".join((stdout + stderr).split())
    assert code == 0, said
    assert {m: m.read_text() for m in manifests} == written and kust.read_text() == listed
    assert "holds no manifest" not in said and f"removed {kust}" not in said, said
    assert f"rewrote {kust}: the manifests it listed had been deleted from its folder; it lists the ones this " \
        "apply wrote there" in said, said
    for m in manifests:
        m.unlink()
    again = env.root / "again.json"
    plan_json(capsys, env, again)  # from the state: nothing to write there again
    code, stdout, stderr = placer(capsys, "apply", str(again))
    assert code == 0 and f"removed {kust}: its folder holds no manifest" in " ".join((stdout + stderr).split())
    assert not kust.exists()


def test_temporary_files_a_killed_write_left_in_the_tree_are_removed(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """SIGKILL between atomic_write's temporary file and its rename left hidden files in the tree
    (clusters/*/.m-pa.yaml.XXXXXXXX, terraform/.placer.auto.tfvars.json.XXXXXXXX) for good. The next
    apply removes them, as does render; files of that look that placer did not name are kept."""
    path = plan_and_apply(capsys, env)
    folder = sorted(env.deploy.rglob("kustomization.yaml"))[0].parent
    left = [folder / ".chat-aws-h100.yaml.k3x_9q2a", folder / ".kustomization.yaml.abcdefgh",
            env.deploy / "terraform" / ".placer.auto.tfvars.json.0a1b2c3d"]
    theirs = [folder / ".gitkeep", folder / ".notes.txt.abcdefgh", env.deploy / "terraform" / ".main.tf.abcdefgh",
              folder / ".chat-aws-h100.yaml.toolong12"]
    for p in left + theirs:
        p.write_text("half\n")
    again = env.root / "again.json"
    plan_json(capsys, env, again)
    code, stdout, stderr = placer(capsys, "apply", str(again))
    assert code == 0, stderr
    assert not [p for p in left if p.exists()], "placer's own leftovers are removed"
    assert all(p.exists() for p in theirs)
    assert "removed 3 temporary file(s)" in stdout + stderr, stdout + stderr

    for p in left:
        p.write_text("half\n")
    code, _, stderr = placer(capsys, "render", str(path), "--out", str(env.deploy))
    assert code == 0, stderr
    assert not [p for p in left if p.exists()] and all(p.exists() for p in theirs)


def test_the_gitops_tfvars_name_the_plan_as_renders_do(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """terraform/README: the tfvars carry placer_plan {fleet_digest, serial}, "every key always
    written"; the gitops apply wrote placer_pools alone (render wrote both)."""
    first = plan_and_apply(capsys, env)
    tfvars = env.deploy / "terraform" / "placer.auto.tfvars.json"
    digest = json.loads(first.read_text())["fleetDigest"]
    assert json.loads(tfvars.read_text())["placer_plan"] == {"fleet_digest": digest, "serial": 0}
    code, _, stderr = placer(capsys, "render", str(first), "--out", str(env.root / "rendered"))
    assert code == 0, stderr
    assert (env.root / "rendered/terraform/placer.auto.tfvars.json").read_text() == tfvars.read_text()
    env.write(chat_rate=3500)  # deployments change, pools do not: the tfvars still name this plan
    second = plan_and_apply(capsys, env, "second.json")
    assert not [c for c in json.loads(second.read_text())["changes"] if c["address"].startswith("pool/")]
    digest = json.loads(second.read_text())["fleetDigest"]
    assert json.loads(tfvars.read_text())["placer_plan"] == {"fleet_digest": digest, "serial": 1}


def test_a_fleet_without_cloud_pools_gets_the_tree_a_render_writes(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """A fleet of fixed pools only: the gitops apply writes the tfvars with no pools, naming its plan,
    as `placer render` of the plan does. It wrote none (no pool change wrote it), so the tree was not the
    plan's, and a Terraform root that reads placer_pools found no value for it."""
    env.write(aws_pool=False)
    first = plan_and_apply(capsys, env)
    assert not [c for c in json.loads(first.read_text())["changes"] if c["address"].startswith("pool/")]
    code, _, stderr = placer(capsys, "render", str(first), "--out", str(env.root / "rendered"))
    assert code == 0, stderr
    assert lh.tree(env.deploy) == lh.tree(env.root / "rendered")
    tfvars = json.loads((env.deploy / "terraform" / "placer.auto.tfvars.json").read_text())
    assert tfvars["placer_pools"] == {} and tfvars["placer_plan"]["serial"] == 0


EKS_H100 = {"cluster": "ml", "nodegroup": "h100"}


def _eks_pool_changes(plan: dict[str, Any]) -> list[tuple[str, int, Any]]:
    return [(c["action"], c["phase"], (c["target"]["aws"]["eks"]["nodegroup"], c["target"]["spot"]))
            for c in plan["changes"] if c["address"] == "pool/aws-h100"]


def _tfvars_group(env: Env) -> tuple[str, bool]:
    pool = json.loads((env.deploy / "terraform" / "placer.auto.tfvars.json").read_text())["placer_pools"]["aws-h100"]
    return pool["aws"]["eks_nodegroup"], pool["spot"]


def test_an_eks_pool_whose_spot_changes_gets_a_new_node_group_made_before_the_old_one_goes(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """EKS cannot change a node group's capacity type in place, and refuses two node groups of one
    name. A spot toggle was `~ pool/aws-h100 spot false -> true` with the tfvars naming h100 still, and
    Terraform replaced h100 destroy first: its GPU nodes went, with the replicas on them, before the
    new group had any. The plan now makes the replacement h100-alt in phase 1 and releases h100 in
    phase 4; the state records h100-alt, later plans keep it, and the next toggle goes back to h100."""
    env.write(eks=EKS_H100, aws_spot=False)
    plan_and_apply(capsys, env)
    assert _tfvars_group(env) == ("h100", False)

    env.write(eks=EKS_H100, aws_spot=True)
    second = env.root / "second.json"
    plan = plan_json(capsys, env, second)
    assert _eks_pool_changes(plan) == [("create", 1, ("h100-alt", True)), ("delete", 4, ("h100", False))], plan["changes"]
    made = next(c for c in plan["changes"] if c["address"] == "pool/aws-h100" and c["action"] == "create")
    assert "EKS node group h100-alt, made" in made["reasons"][0] and "before h100 goes" in made["reasons"][0], made
    apply_ok(capsys, second)
    assert _tfvars_group(env) == ("h100-alt", True)
    recorded = env.state_json()["pools"]["aws-h100"]["target"]
    assert (recorded["aws"]["eks"]["nodegroup"], recorded["spot"]) == ("h100-alt", True)
    code, _, stderr = placer(capsys, "plan", str(env.fleet), "--now", lh.NOW, "--detailed-exitcode")
    assert code == 0, f"the next plan should converge on h100-alt: {stderr}"
    code, _, stderr = placer(capsys, "plan", str(env.fleet), "--now", lh.NOW, "--refresh", "--detailed-exitcode")
    assert code == 0, f"refresh finds h100-alt in the tfvars: {stderr}"

    env.write(eks=EKS_H100, aws_spot=False)
    third = env.root / "third.json"
    plan = plan_json(capsys, env, third)
    assert _eks_pool_changes(plan) == [("create", 1, ("h100", False)), ("delete", 4, ("h100-alt", True))]
    apply_ok(capsys, third)
    assert _tfvars_group(env) == ("h100", False)


def test_an_eks_replacement_stopped_before_its_release_converges(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """An apply killed between the replacement's create (phase 1) and the old group's release (phase 4):
    the state names the new group, which the tfvars already size alone; the next plan has no changes."""
    env.write(eks=EKS_H100, aws_spot=False)
    plan_and_apply(capsys, env)
    env.write(eks=EKS_H100, aws_spot=True)
    second = env.root / "second.json"
    plan_json(capsys, env, second)

    class StopsAtTheRelease(GitOpsProvider):
        def apply(self, change: Any) -> None:
            if change.kind == "pool" and change.action == "delete":
                raise ProviderError(f"{change.address}: killed", retryable=False, address=change.address)
            super().apply(change)

    with pytest.raises(ProviderError, match="killed"):
        run_applier(env, second, StopsAtTheRelease(env.deploy))
    recorded = env.state_json()["pools"]["aws-h100"]
    assert recorded["target"]["aws"]["eks"]["nodegroup"] == "h100-alt"
    assert _tfvars_group(env) == ("h100-alt", True)
    code, _, stderr = placer(capsys, "plan", str(env.fleet), "--now", lh.NOW, "--detailed-exitcode")
    assert code == 0, stderr


def test_a_fixed_cloud_pool_is_sized_at_its_count_from_the_first_plan(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """aws-h100 `nodes: {count: 2}` from the start: the plan placed replicas on its 2 nodes but never
    sized it, so the tfvars had no entry for it (placer's Terraform never made the group); only a pool
    that had been elastic before was sized at its count. Same fleet, same tfvars, whatever its past."""
    env.write(aws_count=2)
    first = env.root / "first.json"
    plan = plan_json(capsys, env, first)
    pool = [(c["action"], c["phase"], c["after"]) for c in plan["changes"] if c["address"] == "pool/aws-h100"]
    assert pool == [("create", 1, {"nodes": 2})], plan["changes"]
    assert any(p["pool"] == "aws-h100" and p["replicas"] > 0 for p in plan["placements"])
    apply_ok(capsys, first)
    tfvars = json.loads((env.deploy / "terraform" / "placer.auto.tfvars.json").read_text())["placer_pools"]
    assert (tfvars["aws-h100"]["nodes"], tfvars["aws-h100"]["min_nodes"], tfvars["aws-h100"]["max_nodes"]) == (2, 2, 2)
    code, _, stderr = placer(capsys, "plan", str(env.fleet), "--now", lh.NOW, "--detailed-exitcode")
    assert code == 0, stderr


def test_a_pool_placer_sized_and_the_fleet_makes_fixed_stays_sized_at_its_count(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """aws-h100 elastic, then `nodes: {count: 2}`: it was released (its tfvars entry dropped, so
    the Terraform that reads them removed the group) by the plan that placed replicas on it."""
    plan_and_apply(capsys, env)
    env.write(aws_count=2)
    second = env.root / "second.json"
    plan = plan_json(capsys, env, second)
    pool = [c for c in plan["changes"] if c["address"] == "pool/aws-h100"]
    assert [(c["action"], c["after"]["nodes"]) for c in pool] == [("update", 2)], pool
    assert any(p["pool"] == "aws-h100" and p["replicas"] > 0 for p in plan["placements"])
    apply_ok(capsys, second)
    tfvars = json.loads((env.deploy / "terraform" / "placer.auto.tfvars.json").read_text())["placer_pools"]
    assert (tfvars["aws-h100"]["nodes"], tfvars["aws-h100"]["min_nodes"], tfvars["aws-h100"]["max_nodes"]) == (2, 2, 2)
    code, _, stderr = placer(capsys, "plan", str(env.fleet), "--now", lh.NOW, "--detailed-exitcode")
    assert code == 0, stderr


def test_naming_the_default_context_moves_nothing_in_the_tree(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """dc1-a100 gains `context: default`: no context is the tree's folder default too. The plan
    replaced the Deployment: its create wrote the manifest, its delete removed the same file, and
    the tree was left empty, the next plan saying "No changes"."""
    plan_and_apply(capsys, env)
    manifest = env.deploy / "clusters" / "default" / "rerank-dc1-a100.yaml"
    assert manifest.exists()
    env.write(dc1_kubernetes={"context": "default"})
    code, stdout, stderr = placer(capsys, "plan", str(env.fleet), "--now", lh.NOW, "--detailed-exitcode")
    assert code == 0 and "deployment/rerank@dc1-a100" not in stdout, stdout + stderr
    assert manifest.exists()


def test_a_pool_removed_from_the_fleet_is_released_and_leaves_the_tfvars(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    plan_and_apply(capsys, env)

    env.write(aws_pool=False)
    second = env.root / "second.json"
    plan = plan_json(capsys, env, second)
    pool = [c for c in plan["changes"] if c["address"] == "pool/aws-h100"]
    # once its deployments are gone (phase 3), placer stops sizing its group: it kept 1 node for
    # ever, in the state and the tfvars, and no plan said so
    assert [(c["action"], c["phase"], c["before"], c["after"]) for c in pool] == [("delete", 4, {"nodes": 1}, None)]
    assert pool[0]["reasons"][0].startswith("pool removed from the fleet: its entry leaves the tfvars")
    assert pool[0]["target"]["aws"]["autoScalingGroupName"] == "h100"
    assert {c["address"] for c in plan["changes"] if c["phase"] == 3} == {
        "deployment/chat@aws-h100", "deployment/embed@aws-h100", "deployment/summarize@aws-h100"}
    code, shown, _ = placer(capsys, "show", str(second))
    assert code == 0 and "pool/aws-h100" in shown and "released: no longer sized by placer" in shown

    apply_ok(capsys, second)
    assert env.state_json()["pools"] == {}
    tfvars = json.loads(lh.tree(env.deploy)["terraform/placer.auto.tfvars.json"])
    assert tfvars["placer_pools"] == {}, "the gitops apply must drop it, as `placer render` of the plan does"
    code, _, stderr = placer(capsys, "plan", str(env.fleet), "--now", lh.NOW, "--detailed-exitcode")
    assert code == 0, stderr


def test_a_changed_image_updates_and_a_changed_place_replaces_the_deployment(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    plan_and_apply(capsys, env)

    # the same count, another image: "No changes", and the tree kept the old image
    env.write(chat_image="reg/chat:2")
    second = env.root / "second.json"
    plan = plan_json(capsys, env, second)
    assert lh.changes_of(plan) == [("deployment/chat@aws-h100", "update", 2, {"replicas": 3, "image": None},
                                    {"replicas": 3, "image": "reg/chat:2"})]
    assert plan["changes"][0]["reasons"] == [
        "image changed in the fleet: the rollout starts all 3 of its replicas anew (1.50 USD of churn)"]
    code, shown, _ = placer(capsys, "show", str(second))
    assert "deployment/chat@aws-h100  [phase 2] image none -> reg/chat:2" in shown
    apply_ok(capsys, second)
    manifest = env.deploy / "clusters/default/chat-aws-h100.yaml"
    assert "image: reg/chat:2" in manifest.read_text()
    code, _, stderr = placer(capsys, "render", str(second), "--out", str(env.root / "rendered"))
    assert code == 0, stderr
    assert (env.root / "rendered/clusters/default/chat-aws-h100.yaml").read_text() == manifest.read_text()

    # another context and namespace: made there (phase 2) before the old one goes (phase 3); the old
    # one stayed beside it, and refresh said "No drift"
    env.write(chat_image="reg/chat:2", dc1_kubernetes={"context": "dc2", "namespace": "team-b"})
    third = env.root / "third.json"
    plan = plan_json(capsys, env, third)
    assert lh.changes_of(plan) == [
        ("deployment/rerank@dc1-a100", "create", 2, None, {"replicas": 2, "context": "dc2", "namespace": "team-b"}),
        ("deployment/rerank@dc1-a100", "delete", 3, {"replicas": 2, "context": None, "namespace": "default",
                                                     "replacedBy": {"context": "dc2", "namespace": "team-b"}}, None)]
    apply_ok(capsys, third)
    files = lh.tree(env.deploy)
    assert "clusters/default/rerank-dc1-a100.yaml" not in files
    assert "namespace: team-b" in files["clusters/dc2/rerank-dc1-a100.yaml"]
    assert "deposed" not in env.state_json()["deployments"]["rerank@dc1-a100"]

    # another namespace in the same context: the same file, rewritten, not deleted by the old one's delete
    env.write(chat_image="reg/chat:2", dc1_kubernetes={"context": "dc2", "namespace": "team-c"})
    fourth = env.root / "fourth.json"
    plan = plan_json(capsys, env, fourth)
    assert [c[:3] for c in lh.changes_of(plan)] == [("deployment/rerank@dc1-a100", "create", 2),
                                                    ("deployment/rerank@dc1-a100", "delete", 3)]
    apply_ok(capsys, fourth)
    assert "namespace: team-c" in lh.tree(env.deploy)["clusters/dc2/rerank-dc1-a100.yaml"]
    code, out, stderr = placer(capsys, "refresh", str(env.fleet))
    assert code == 0 and "No drift" in out, stderr
    code, _, stderr = placer(capsys, "plan", str(env.fleet), "--now", lh.NOW, "--detailed-exitcode")
    assert code == 0, stderr


def test_a_rollout_without_a_surge_pod_is_the_manifest_the_apply_and_every_render_write(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """m and n, 2 replicas each, fill p's 4 GPUs; m's image changes. The plan rolls m out with
    maxSurge 0, maxUnavailable 1 (Kubernetes' default started a surge pod no GPU was free for, and
    the rollout hung): the gitops apply writes that strategy, render of the plan writes the same
    tree, and so does render of the next plan, which changes nothing (the state records it). A
    later change of m's count drops it, in the apply and in render alike."""
    from tests.fleetkit import doc, inference, location, pool

    fleet, deploy = tmp_path / "fleet", tmp_path / "deploy"
    fleet.mkdir()

    def write(image: str, m: int = 2) -> None:
        docs = [location("a"), pool("p", "a", count=1, per_node=4),
                inference("m", [{"location": "a", "rate": 100}], image=image, minReplicas=m, maxReplicas=m),
                inference("n", [{"location": "a", "rate": 100}], minReplicas=2, maxReplicas=2),
                doc("Settings", "s", {"state": {"path": str(tmp_path / "state.json")},
                                      "apply": {"mode": "gitops", "directory": str(deploy)},
                                      "objective": {"churnUsdPerReplica": 0}})]
        (fleet / "fleet.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))

    def plan_apply_render(name: str) -> tuple[str, dict[str, str]]:
        path = tmp_path / f"{name}.json"
        code, shown, stderr = placer(capsys, "plan", str(fleet), "-o", str(path), "--now", lh.NOW)
        assert code == 0, stderr
        apply_ok(capsys, path)
        code, _, stderr = placer(capsys, "render", str(path), "--out", str(tmp_path / name))
        assert code == 0, stderr
        # render writes the manifests the apply wrote (the tfvars, of no pool placer sizes, apart)
        assert lh.tree(tmp_path / name / "clusters") == lh.tree(deploy / "clusters")
        return shown, lh.tree(deploy / "clusters")

    write("reg/m:1")
    plan_apply_render("first")
    write("reg/m:2")
    shown, files = plan_apply_render("second")
    assert ("deployment/m@p  [phase 2] image reg/m:1 -> reg/m:2  # rolled out with maxSurge 0, maxUnavailable 1: p "
            "has no room for the surge pod") in " ".join(shown.split("\n"))
    manifest = yaml.safe_load(files["default/m-p.yaml"])
    assert manifest["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0,
                                                                                      "maxUnavailable": 1}}
    assert "strategy" not in yaml.safe_load(files["default/n-p.yaml"])["spec"]
    assert json.loads((tmp_path / "state.json").read_text())["deployments"]["m@p"]["target"]["strategy"] == {
        "maxSurge": 0, "maxUnavailable": 1}
    shown, again = plan_apply_render("third")
    assert "No changes" in shown and again == files
    write("reg/m:2", m=1)
    _, files = plan_apply_render("fourth")
    assert "strategy" not in yaml.safe_load(files["default/m-p.yaml"])["spec"]


def test_a_changed_place_starts_its_replicas_anew_as_churn_and_an_unchanged_fleet_starts_none(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    plan_and_apply(capsys, env)
    # every deployment where the fleet puts it: what the plan is priced against is the state's replicas
    state = env.backend.read()
    assert running_replicas(load_fleet(env.fleet), state) == state.replicas()
    plan = plan_json(capsys, env)
    assert plan["changes"] == [] and plan["cost"]["churnUsd"] == 0

    # another namespace: rerank's 2 replicas start anew there, 2 x 0.5 USD (SPEC section 2); counted
    # per (model, pool) as running, the replacement was 0.00 USD of churn
    env.write(dc1_kubernetes={"namespace": "team-b"})
    plan = plan_json(capsys, env)
    assert [c[:3] for c in lh.changes_of(plan)] == [("deployment/rerank@dc1-a100", "create", 2),
                                                    ("deployment/rerank@dc1-a100", "delete", 3)]
    cost = plan["cost"]
    assert cost["churnUsd"] == 1.0
    assert plan["solver"]["objectiveUsdPerHour"] == pytest.approx(cost["totalUsdPerHour"] + 1.0, abs=1e-5)
    code, shown, stderr = placer(capsys, "plan", str(env.fleet), "--now", lh.NOW)
    assert code == 0 and re.search(r"churn \(one-off USD\)\s*│\s*1\.00", shown), stderr or shown
    code, out, stderr = placer(capsys, "whatif", str(env.fleet), "--json", "--now", lh.NOW)
    assert code == 0 and json.loads(out)["base"]["cost"]["churnUsd"] == 1.0, stderr


@pytest.mark.parametrize("edit, field", [({"chat_image": "reg/chat:2"}, "image"),
                                         ({"chat_version": "2.0"}, "version"),
                                         ({"chat_gpus": 2}, "gpus")])
def test_a_rollout_in_place_starts_its_replicas_anew_as_churn(
        env: Env, capsys: pytest.CaptureFixture[str], edit: dict[str, Any], field: str) -> None:
    """A new image, version (the pods' label, and the image's tag where the model names no image)
    or GPUs per replica rolls every pod of chat's Deployment out: its 3 replicas start anew, 3 x 0.5
    USD of churn (SPEC section 2), and the change stays an update in place. Counted as running, it
    was 0.00 USD of churn, the plan's objective its running cost alone."""
    plan_and_apply(capsys, env)
    env.write(**edit)
    second = env.root / "second.json"
    plan = plan_json(capsys, env, second)
    chat = [c for c in plan["changes"] if c["address"] == "deployment/chat@aws-h100"]
    assert [(c["action"], c["phase"], c["before"]["replicas"], c["after"]["replicas"], field in c["after"])
            for c in chat] == [("update", 2, 3, 3, True)]
    cost = plan["cost"]
    assert cost["churnUsd"] == 1.5
    assert plan["solver"]["objectiveUsdPerHour"] == pytest.approx(cost["totalUsdPerHour"] + 1.5, abs=1e-5)
    said = f"{field} changed in the fleet: the rollout starts all 3 of its replicas anew (1.50 USD of churn)"
    assert chat[0]["reasons"] == [said]
    code, shown, stderr = placer(capsys, "show", str(second))
    assert code == 0 and re.search(r"churn \(one-off USD\)\s*│\s*1\.50", shown), stderr or shown
    assert said in " ".join(shown.split())
    code, out, stderr = placer(capsys, "whatif", str(env.fleet), "--json", "--now", lh.NOW)
    assert code == 0 and json.loads(out)["base"]["cost"]["churnUsd"] == 1.5, stderr
    # once rolled out, it runs as the fleet has it: nothing starts anew
    apply_ok(capsys, second)
    plan = plan_json(capsys, env)
    assert plan["changes"] == [] and plan["cost"]["churnUsd"] == 0


def test_a_model_whose_rollout_restarts_its_replicas_moves_where_it_is_cheaper(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """m runs on pa (2.00 USD/h a GPU); pb (1.70) would save 0.30 USD/h, less than the 0.50 USD its
    replica's start costs, so the plan keeps m where it runs. Its new image restarts the replica on
    pa as on pb: the plan moves it to pb. Counted as running on pa, the rollout was 0.00 USD of
    churn and the search kept m on the dearer pool."""
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    settings = doc("Settings", "s", {"state": {"path": str(tmp_path / "state.json")},
                                     "apply": {"mode": "gitops", "directory": str(tmp_path / "deploy")},
                                     "solver": {"timeLimitSeconds": 20, "workers": 1}})

    def write(image: str, *pools: dict[str, Any]) -> None:
        model = inference("m", [{"location": "a", "rate": 100}], image=image)
        (fleet / "fleet.yaml").write_text(yaml.safe_dump_all([location("a"), *pools, model, settings]))

    def plan_of() -> dict[str, Any]:
        code, out, stderr = placer(capsys, "plan", str(fleet), "--json", "--now", lh.NOW)
        assert code == 0, stderr
        return json.loads(out)

    pa, pb = pool("pa", "a", usd=2.0), pool("pb", "a", usd=1.7)
    write("reg/m:1", pa)
    code, _, stderr = placer(capsys, "apply", str(fleet), "--auto-approve", "--now", lh.NOW)
    assert code == 0, stderr
    write("reg/m:1", pa, pb)
    plan = plan_of()
    assert (plan["changes"], plan["cost"]["churnUsd"]) == ([], 0)
    write("reg/m:2", pa, pb)
    plan = plan_of()
    assert lh.changes_of(plan) == [("deployment/m@pb", "create", 2, None, {"replicas": 1}),
                                   ("deployment/m@pa", "delete", 3, {"replicas": 1}, None)]
    assert (plan["cost"]["computeUsdPerHour"], plan["cost"]["churnUsd"]) == (1.7, 0.5)


def test_an_apply_stopped_between_a_replacement_and_its_delete_leaves_the_delete_to_the_next_plan(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    plan_and_apply(capsys, env)
    env.write(dc1_kubernetes={"context": "dc2", "namespace": "team-b"})
    second = env.root / "second.json"
    plan_json(capsys, env, second)
    class FailingDelete(GitOpsProvider):
        def apply(self, change: Any) -> None:
            if change.action == "delete":
                raise ProviderError(f"{change.address}: 403 Forbidden", address=change.address)
            super().apply(change)

    with pytest.raises(ProviderError, match="403 Forbidden"):
        run_applier(env, second, FailingDelete(env.deploy))  # made at the new place, the old one's delete fails
    entry = env.state_json()["deployments"]["rerank@dc1-a100"]
    assert entry["target"]["kubernetes"]["context"] == "dc2"
    assert [d["target"]["kubernetes"] for d in entry["deposed"]] == [{"namespace": "default"}]
    # the copy left at the old place runs its replicas there: a fleet put back starts none anew
    env.write()
    assert plan_json(capsys, env)["cost"]["churnUsd"] == 0
    env.write(dc1_kubernetes={"context": "dc2", "namespace": "team-b"})

    third = env.root / "third.json"
    plan = plan_json(capsys, env, third)
    assert plan["cost"]["churnUsd"] == 0
    assert lh.changes_of(plan) == [
        ("deployment/rerank@dc1-a100", "delete", 3, {"replicas": 2, "context": None, "namespace": "default"}, None)]
    assert "an apply stopped before deleting this copy" in plan["changes"][0]["reasons"][0]
    apply_ok(capsys, third)
    assert "clusters/default/rerank-dc1-a100.yaml" not in lh.tree(env.deploy)
    assert "deposed" not in env.state_json()["deployments"]["rerank@dc1-a100"]
    code, _, stderr = placer(capsys, "plan", str(env.fleet), "--now", lh.NOW, "--detailed-exitcode")
    assert code == 0, stderr


def test_a_pools_settings_update_it_and_another_group_replaces_it(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    plan_and_apply(capsys, env)

    env.write(max_nodes=6)
    second = env.root / "second.json"
    plan = plan_json(capsys, env, second)
    assert lh.changes_of(plan) == [("pool/aws-h100", "update", 1, {"nodes": 1, "maxNodes": 4},
                                    {"nodes": 1, "maxNodes": 6})]
    apply_ok(capsys, second)
    tfvars = lambda: json.loads(lh.tree(env.deploy)["terraform/placer.auto.tfvars.json"])  # noqa: E731
    assert tfvars()["placer_pools"]["aws-h100"]["max_nodes"] == 6

    env.write(max_nodes=6, asg="h100-b")
    third = env.root / "third.json"
    plan = plan_json(capsys, env, third)
    assert lh.changes_of(plan) == [
        ("pool/aws-h100", "create", 1, None,
         {"nodes": 1, "aws": {"region": "eu-west-1", "autoScalingGroupName": "h100-b"}}),
        ("pool/aws-h100", "delete", 4, {"nodes": 1}, None)]
    assert plan["changes"][1]["reasons"] == [
        "its group is now Auto Scaling group h100-b in eu-west-1: the tfvars no longer name Auto Scaling group h100 "
        "in eu-west-1, and the Terraform that reads them no longer keeps Auto Scaling group h100 in eu-west-1: "
        "review its plan"]
    apply_ok(capsys, third)
    assert tfvars()["placer_pools"]["aws-h100"]["aws"]["auto_scaling_group_name"] == "h100-b"
    assert env.state_json()["pools"]["aws-h100"]["target"]["aws"]["autoScalingGroupName"] == "h100-b"
    code, _, stderr = placer(capsys, "plan", str(env.fleet), "--now", lh.NOW, "--detailed-exitcode")
    assert code == 0, stderr


def test_a_tfvars_deleted_from_the_tree_is_restored_whole(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """The tfvars deleted from the deploy tree, then an apply that changes no pool: it is written back with
    every pool placer sizes, as `placer render` of the plan writes it, and said so. An apply left it missing,
    and one that changed a pool wrote that pool's entry alone: the Terraform that reads them would destroy
    every other group."""
    plan_and_apply(capsys, env)
    tfvars = env.deploy / "terraform" / "placer.auto.tfvars.json"
    pools = json.loads(tfvars.read_text())["placer_pools"]
    assert list(pools) == ["aws-h100"]
    tfvars.unlink()
    env.write(chat_rate=3500)
    second = env.root / "second.json"
    plan_json(capsys, env, second)
    assert not [c for c in json.loads(second.read_text())["changes"] if c["address"].startswith("pool/")]
    code, _, said = placer(capsys, "apply", str(second))
    assert code == 0, said
    assert f"restored {tfvars}: it was missing" in " ".join(said.split()), said
    assert json.loads(tfvars.read_text())["placer_pools"] == pools
    code, _, stderr = placer(capsys, "render", str(second), "--out", str(env.root / "rendered"))
    assert code == 0, stderr
    assert lh.tree(env.deploy) == lh.tree(env.root / "rendered")


def test_a_renamed_pool_is_released_saying_which_pool_sizes_its_group_now(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """aws-h100 renamed gpu-h100, its Auto Scaling group h100 kept. The release of aws-h100 said the
    Terraform that reads the tfvars no longer keeps group h100 (live: scale it down or delete it), of
    the group gpu-h100 sizes: placer's modules key a group by its pool, and terraform destroyed the
    group with its nodes (moto: the group made for gpu-h100 went with it)."""
    plan_and_apply(capsys, env)
    env.write(aws_name="gpu-h100")
    plan = plan_json(capsys, env, env.root / "second.json")
    (release,) = [c for c in plan["changes"] if c["address"] == "pool/aws-h100"]
    assert release["action"] == "delete" and release["phase"] == 4
    assert release["reasons"] == [
        "pool removed from the fleet: pool gpu-h100 sizes Auto Scaling group h100 in eu-west-1 from here on (a "
        "renamed pool), its tfvars entry named gpu-h100; placer's Terraform modules key a group by its pool, so the "
        "apply writes moved blocks from pool[\"aws-h100\"] to pool[\"gpu-h100\"] into terraform/placer_moved.tf for "
        "each call of placer's modules in terraform/*.tf, and terraform moves the group in its state; a Terraform "
        "root elsewhere: move them yourself (moved blocks, or terraform state mv) before terraform apply, or "
        "terraform destroys the group with its nodes and makes it anew"]
    assert [c["action"] for c in plan["changes"] if c["address"] == "pool/gpu-h100"] == ["create"]
    settings = env.fleet / "settings.yaml"
    settings.write_text(settings.read_text().replace("mode: gitops", "mode: live"))
    live = plan_json(capsys, env)
    (release,) = [c for c in live["changes"] if c["address"] == "pool/aws-h100"]
    assert release["reasons"] == [
        "pool removed from the fleet: pool gpu-h100 sizes Auto Scaling group h100 in eu-west-1 from here on (a "
        "renamed pool); nothing is done to the group"]


ROOT_TF = """\
module "aws_eu" {
  source        = "./modules/aws-gpu-pools" # { a brace in a comment
  region        = "eu-west-1"
  placer_pools  = var.placer_pools
  pool_settings = { for k, v in var.aws_pool_settings : k => v }
}

module "gcp" {
  source       = "git::https://example.com/placer.git//terraform/modules/gcp-gpu-pools?ref=v1"
  placer_pools = var.placer_pools
}

module "other" {
  source = "./modules/placement"
}
"""


def _moved_pairs(env: Env) -> list[tuple[str, str]]:
    text = (env.deploy / "terraform" / "placer_moved.tf").read_text()
    return re.findall(r'from = (\S+)\n  to   = (\S+)\n', text)


def _asg_moves(module: str, old: str, new: str) -> list[tuple[str, str]]:
    return [(f'module.{module}.{kind}.pool["{old}"]', f'module.{module}.{kind}.pool["{new}"]')
            for kind in ("aws_launch_template", "aws_autoscaling_group")]


def _rename(capsys: pytest.CaptureFixture[str], env: Env, name: str, step: str) -> tuple[Path, str]:
    """The fleet's aws pool renamed ``name``: planned and applied; the plan's path and what the apply said."""
    env.write(aws_name=name)
    path = env.root / f"{step}.json"
    plan_json(capsys, env, path)
    code, _, said = placer(capsys, "apply", str(path))
    assert code == 0, said
    return path, " ".join(said.split())


def _rendered(capsys: pytest.CaptureFixture[str], env: Env, plan: Path) -> dict[str, str]:
    """``placer render`` of ``plan`` over a copy of the deploy tree (its moved blocks included, the
    renames recorded there): the tree it leaves; what it said is ``env.said``."""
    out = env.root / "rendered"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(env.deploy, out)
    code, _, stderr = placer(capsys, "render", str(plan), "--out", str(out))
    assert code == 0, stderr
    env.said = " ".join(stderr.split())
    return lh.tree(out)


def test_a_renamed_pool_gets_moved_blocks_beside_the_terraform_root(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """aws-h100 renamed gpu-h100 (its group h100 kept), with a Terraform root in the tree's terraform/
    calling aws-gpu-pools: the gitops apply writes terraform/placer_moved.tf, moving the group's launch
    template and Auto Scaling group from pool["aws-h100"] to pool["gpu-h100"] of that call (none for the
    gcp call, nor the placement module), as `placer render` of the plan writes it. placer wrote none,
    and terraform destroyed the group with its nodes and made it anew. The blocks stay for later plans
    (Terraform needs them until every state has moved); then gpu-h100 -> h100-pool is a chain (Terraform
    refuses two moves to one address); a rename back takes the name out of the chain (no cycle, nor a
    move from a resource in the config, which Terraform refuses); so does the old name used again."""
    (env.deploy / "terraform").mkdir(parents=True)
    (env.deploy / "terraform" / "main.tf").write_text(ROOT_TF)
    plan_and_apply(capsys, env)
    assert not (env.deploy / "terraform" / "placer_moved.tf").exists()

    plan, said = _rename(capsys, env, "gpu-h100", "second")
    assert _moved_pairs(env) == _asg_moves("aws_eu", "aws-h100", "gpu-h100")
    assert f"wrote {env.deploy / 'terraform' / 'placer_moved.tf'}: moved blocks for the renamed pool(s) aws-h100 -> " \
           "gpu-h100, so terraform moves each group's resources in its state" in said, said
    assert _rendered(capsys, env, plan) == lh.tree(env.deploy)
    # a later plan that renames nothing keeps them, apply and render alike
    env.write(aws_name="gpu-h100", chat_rate=5000)
    later = env.root / "later.json"
    plan_json(capsys, env, later)
    apply_ok(capsys, later)
    assert _moved_pairs(env) == _asg_moves("aws_eu", "aws-h100", "gpu-h100")
    assert _rendered(capsys, env, later) == lh.tree(env.deploy)

    plan, _ = _rename(capsys, env, "h100-pool", "third")
    # a chain, as Terraform takes it: it refuses two moves to one address
    assert _moved_pairs(env) == _asg_moves("aws_eu", "aws-h100", "gpu-h100") + _asg_moves("aws_eu", "gpu-h100", "h100-pool")
    assert _rendered(capsys, env, plan) == lh.tree(env.deploy)

    plan, _ = _rename(capsys, env, "aws-h100", "back")
    assert _moved_pairs(env) == _asg_moves("aws_eu", "gpu-h100", "h100-pool") + _asg_moves("aws_eu", "h100-pool", "aws-h100")
    assert _rendered(capsys, env, plan) == lh.tree(env.deploy)

    # gpu-h100 used again, for another group: no block moves the group of aws-h100 onto it
    topology = env.fleet / "topology.yaml"
    docs = list(yaml.safe_load_all(topology.read_text()))
    other = json.loads(json.dumps(next(d for d in docs if d["metadata"]["name"] == "aws-h100")))
    other["metadata"]["name"] = "gpu-h100"
    other["spec"]["target"]["aws"]["autoScalingGroupName"] = "h100-other"
    topology.write_text(yaml.safe_dump_all([*docs, other], sort_keys=False))
    reused = env.root / "reused.json"
    plan_json(capsys, env, reused)
    apply_ok(capsys, reused)
    assert _moved_pairs(env) == _asg_moves("aws_eu", "h100-pool", "aws-h100")
    assert _rendered(capsys, env, reused) == lh.tree(env.deploy)


def test_a_renamed_pool_without_a_terraform_root_in_the_tree_says_to_move_it(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """No call of placer's modules in the tree's terraform/*.tf (the root lies elsewhere), or one made with
    for_each, whose keys placer does not know: no moved blocks for it, and apply and render say so,
    naming the rename."""
    plan_and_apply(capsys, env)
    plan, said = _rename(capsys, env, "gpu-h100", "second")
    assert not (env.deploy / "terraform" / "placer_moved.tf").exists()
    assert "no call of placer's aws-gpu-pools or gcp-gpu-pools module found in terraform/*.tf of the tree, so no " \
           "moved blocks were written for the renamed pool(s) aws-h100 -> gpu-h100: move their resources" in said, said
    (env.deploy / "terraform" / "main.tf").write_text(
        'module "aws" {\n  for_each = toset(["eu-west-1"])\n  source   = "./modules/aws-gpu-pools"\n}\n')
    assert "terraform/placer_moved.tf" not in _rendered(capsys, env, plan)
    assert "module call(s) aws use for_each or count, whose instance keys placer does not know: write the moved " \
           "blocks of the renamed pool(s) aws-h100 -> gpu-h100 for them yourself" in env.said, env.said
    # a file python-hcl2 cannot read (an unclosed block: Terraform refuses it too) is named, not passed over
    (env.deploy / "terraform" / "main.tf").write_text('module "aws" {\n  source = "./modules/aws-gpu-pools"\n')
    assert "terraform/placer_moved.tf" not in _rendered(capsys, env, plan)
    assert "terraform/main.tf could not be read (python-hcl2; run terraform validate on it), so calls of placer's " \
           "modules there got no moved blocks for the renamed pool(s) aws-h100 -> gpu-h100: write them yourself" \
           in env.said, env.said


def test_a_plan_of_another_state_says_so(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """A plan made against one state, applied with another state file (another lineage), said
    "(something was applied since)": nothing was; it is another state."""
    plan_and_apply(capsys, env)
    path = env.root / "second.json"
    env.write(chat_rate=9000)
    plan_json(capsys, env, path)
    data = env.state_json()
    data["lineage"] = "0" * 8 + "-0000-4000-8000-" + "0" * 12  # another fleet's state file put in its place
    env.state.write_text(json.dumps(data))
    before = env.state.read_bytes()
    code, _, stderr = placer(capsys, "apply", str(path))
    said = " ".join(stderr.split())
    assert code == 1 and "another state than the plan's (another fleet's state file, or one made anew since)" \
        in said and "something was applied since" not in said, said
    assert "Check that Settings state (or --state) names this fleet's state" in said
    assert env.state.read_bytes() == before


def test_a_plan_applied_again_says_it_was_applied(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """A plan applied a second time (a CI job run again) said 'stale plan: ... (something was applied
    since)', as of another's apply: the state's history records each apply's plan (planDigest), and
    the refusal says this plan was applied, by which apply, and changes nothing."""
    first = plan_and_apply(capsys, env)
    before, files = env.state.read_bytes(), lh.tree(env.deploy)
    code, _, stderr = placer(capsys, "apply", str(first))
    said = " ".join(stderr.split())
    applied_at = env.state_json()["history"][-1]["appliedAt"]
    assert code == 1 and (f"stale plan: it was applied already, by the apply that made state serial 1 (at "
                          f"{applied_at}); nothing was applied now. Run `placer plan` again to see whether "
                          "anything changed since, and apply the new plan.") in said, said
    assert "something was applied since" not in said
    assert env.state.read_bytes() == before and lh.tree(env.deploy) == files
    # once another apply followed, it says that too
    second = env.root / "second.json"
    env.write(chat_rate=9000)
    plan_json(capsys, env, second)
    apply_ok(capsys, second)
    code, _, stderr = placer(capsys, "apply", str(first))
    said = " ".join(stderr.split())
    assert code == 1 and "by the apply that made state serial 1 (at" in said and \
        "; the state is now serial 2); nothing was applied now" in said, said


def test_stale_plan_is_refused_and_changes_nothing(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = env.root / "a.json", env.root / "b.json"
    plan_json(capsys, env, a)
    env.write(chat_rate=9000)  # another plan: one identical to a (the same --now) was applied with it
    plan_json(capsys, env, b)
    apply_ok(capsys, a)
    before, files = env.state.read_bytes(), lh.tree(env.deploy)

    code, _, stderr = placer(capsys, "apply", str(b))
    assert code == 1
    lineage = env.state_json()["lineage"]
    assert f"stale plan: it was made against no state (nothing applied yet), but the state is now lineage " \
        f"{lineage} serial 1 (something was applied since)" in stderr, stderr
    assert "None" not in stderr
    assert env.state.read_bytes() == before
    assert lh.tree(env.deploy) == files
    assert not env.backend.lock_path.exists(), "the refused apply must release the lock"

    with pytest.raises(StalePlanError, match="stale plan"):
        check_fresh(load_plan(b), env.backend.read())

    c = env.root / "c.json"
    plan_json(capsys, env, c)
    env.state.unlink()
    code, _, stderr = placer(capsys, "apply", str(c))
    said = " ".join(stderr.split())
    assert code == 1 and f"stale plan: it was made against state lineage {lineage} serial 1, but there is no " \
        f"state at {env.state} now (was it removed, or is this another state file?)" in said, stderr


def edited_plan_is_refused(capsys: pytest.CaptureFixture[str], env: Env, edit: Any, said: str) -> None:
    """Apply the first plan, edit the fleet (chat up, summarize gone), plan it, ``edit`` the plan's
    JSON by hand, and see the apply refuse it with ``said``, the state, tree and lock untouched."""
    plan_and_apply(capsys, env)
    env.write(chat_rate=9000, summarize=False)
    path = env.root / "second.json"
    data = plan_json(capsys, env, path)
    assert lh.changes_of(data) == lh.EDITED_CHANGES
    edit(data)
    path.write_text(json.dumps(data))
    state, files = env.state.read_bytes(), lh.tree(env.deploy)
    code, _, stderr = placer(capsys, "apply", str(path))
    assert code == 1 and f"inconsistent plan: {said}" in " ".join(stderr.split()), stderr
    assert env.state.read_bytes() == state and lh.tree(env.deploy) == files
    assert not env.backend.lock_path.exists()


@pytest.mark.parametrize(("index", "before", "said"), [
    (0, {"nodes": 5}, "changes[0] (update pool/aws-h100) starts from nodes 5, but the state it was made from "
                      "(serial 1) records nodes 1"),
    (2, {"replicas": 4}, "changes[2] (delete deployment/summarize@aws-h100) starts from replicas 4, but the state "
                         "it was made from (serial 1) records replicas 1"),
])
def test_a_plan_whose_before_is_not_the_state_it_was_made_from_is_refused(
        env: Env, capsys: pytest.CaptureFixture[str], index: int, before: dict[str, int], said: str) -> None:
    """A plan of the state's own serial was made from it: a before edited to another count (nodes 5
    where the state had 1) was applied as if it were so."""
    edited_plan_is_refused(capsys, env, lambda data: data["changes"][index].update(before=before),
                           f"{said}; was the plan edited by hand? Run `placer plan` again")


@pytest.mark.parametrize(("extra", "said"), [
    # a second scale-up of chat, from where the plan's own left it: 9 -> 30 on a pool of 2 nodes
    ({"address": "deployment/chat@aws-h100", "action": "update", "phase": 2, "before": {"replicas": 3},
      "after": {"replicas": 30}},
     "changes[3] (update deployment/chat@aws-h100) starts from replicas 3, but changes[1] (update) before it at "
     "that address leaves replicas 9"),
    # a create where the plan's own change has just made it
    ({"address": "deployment/chat@aws-h100", "action": "create", "phase": 2, "before": None,
      "after": {"replicas": 30}},
     "changes[3] (create deployment/chat@aws-h100) starts from nothing, but changes[1] (update) before it at that "
     "address leaves replicas 9"),
    # the pool sized again after its own change, from the count it had before
    ({"address": "pool/aws-h100", "action": "update", "phase": 4, "before": {"nodes": 1}, "after": {"nodes": 8}},
     "changes[3] (update pool/aws-h100) starts from nodes 1, but changes[0] (update) before it at that address "
     "leaves nodes 2"),
])
def test_a_change_added_at_an_address_the_plan_changes_already_is_refused(
        env: Env, capsys: pytest.CaptureFixture[str], extra: dict[str, Any], said: str) -> None:
    """A plan edited by hand with one more change at an address it changes already: only the first
    change at an address was held to the state, and what followed it there was not checked, so
    a second create or update of chat was applied as it came (30 replicas on a pool of 2 nodes)."""
    def add(data: dict[str, Any]) -> None:
        twin = next(c for c in data["changes"] if c["address"] == extra["address"])
        data["changes"].append({**twin, **extra})

    edited_plan_is_refused(capsys, env, add, f"{said}; was the plan edited by hand? Run `placer plan` again")


@pytest.mark.parametrize(("index", "said"), [
    (0, "its changes leave pool/aws-h100 at nodes 1, but its pools say 2"),
    (2, "its changes leave deployment/summarize@aws-h100 at replicas 1, but its placements say 0"),
])
def test_a_plan_with_a_change_taken_out_is_refused(env: Env, capsys: pytest.CaptureFixture[str], index: int,
                                                   said: str) -> None:
    """A plan edited by hand to leave out a change (the pool's growth chat's 9 replicas need, the
    delete of summarize, which the fleet no longer has) applied what was left: the state then
    disagreed with the plan's own placements and pools, which the review had shown."""
    edited_plan_is_refused(capsys, env, lambda data: data["changes"].pop(index),
                           f"{said} (was a change taken out, or added, by hand?)")


@pytest.mark.parametrize("how", ["context default named", "state without targets"])
def test_a_plan_whose_places_match_as_the_plan_compares_them_applies(
        env: Env, capsys: pytest.CaptureFixture[str], how: str) -> None:
    """The check that a plan reaches its own placements compared places by context and namespace
    as written: rerank, recorded with no context, left where the fleet now names the context
    default (one folder of the tree, no change), or recorded without a target (a copy the plan puts
    where its address is), was refused as a change taken out by hand, each plan after it too."""
    env.write(dc1_kubernetes={"namespace": "team-b"})
    plan_and_apply(capsys, env)
    if how == "state without targets":
        data = env.state_json()
        for entry in [*data["deployments"].values(), *data["pools"].values()]:
            del entry["target"]
        env.state.write_text(json.dumps(data))
    env.write(chat_rate=9000, dc1_kubernetes={"namespace": "team-b", "context": "default"}
              if how == "context default named" else {"namespace": "team-b"})
    path = env.root / "second.json"
    plan_json(capsys, env, path)
    apply_ok(capsys, path)
    code, _, stderr = placer(capsys, "plan", str(env.fleet), "--now", lh.NOW, "--detailed-exitcode")
    assert code == 0, stderr


def test_a_plan_made_with_refresh_starts_from_what_runs_and_applies(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """``plan --refresh`` plans from what the providers report, so its changes start from the drift
    (replicas 5 where the state records 3), not from the state: apply refused such a plan as
    "inconsistent ... edited by hand", and a plain plan said No changes, so drift could not be undone."""
    plan_and_apply(capsys, env)
    [manifest] = [p for p in env.deploy.rglob("chat-*.yaml")]
    recorded = manifest.read_text()
    assert "replicas: 3" in recorded
    manifest.write_text(recorded.replace("replicas: 3", "replicas: 5"))  # someone scaled it by hand
    path = env.root / "refreshed.json"
    code, out, err = placer(capsys, "plan", str(env.fleet), "--refresh", "--now", lh.NOW, "-o", str(path))
    assert code == 0, err
    assert "state records 3 replicas, the cluster runs 5" in " ".join((out + err).split())
    data = json.loads(path.read_text())
    assert data["priorState"]["refreshed"] is True
    [change] = [c for c in data["changes"] if c["address"].startswith("deployment/chat@")]
    assert change["before"]["replicas"] == 5 and change["after"]["replicas"] == 3
    apply_ok(capsys, path)
    assert manifest.read_text() == recorded
    assert not plan_json(capsys, env)["changes"]
    # a plan made without --refresh still starts from the state's record, and is held to it
    assert "refreshed" not in plan_json(capsys, env)["priorState"]


def test_refresh_finds_a_deployment_whose_recorded_target_does_not_name_its_model_and_pool(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """A recorded target without its model and pool (a state of an older placer, or edited by hand)
    names them by its key, as a plan's change does: refresh in gitops mode failed on it with an
    internal error (KeyError: 'model'), which plan did not."""
    plan_and_apply(capsys, env)
    data = env.state_json()
    [key] = [k for k in data["deployments"] if k.startswith("chat@")]
    for part in ("model", "pool"):
        del data["deployments"][key]["target"][part]
    env.state.write_text(json.dumps(data))
    code, out, err = placer(capsys, "refresh", str(env.fleet))
    assert code == 0, err
    assert "No drift" in out, out + err


def test_a_refreshed_plan_forgets_a_deployment_gone_from_the_cluster_that_the_fleet_dropped(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """A deployment's manifest deleted by hand, its model dropped from the fleet: the refreshed plan
    said "No changes" and its apply left the state recording it, so the next plan said "1 to
    delete" of what ran nowhere, and the state disagreed with the plan just applied."""
    plan_and_apply(capsys, env)
    [manifest] = [p for p in env.deploy.rglob("summarize-*.yaml")]
    manifest.unlink()  # someone deleted it by hand
    env.write(summarize=False)
    path = env.root / "refreshed.json"
    code, _, err = placer(capsys, "plan", str(env.fleet), "--refresh", "--now", lh.NOW, "-o", str(path))
    assert code == 0, err
    [change] = [c for c in json.loads(path.read_text())["changes"] if c["address"].startswith("deployment/summarize@")]
    assert (change["action"], change["before"], change["after"]) == ("delete", {"replicas": 0}, None)
    apply_ok(capsys, path)
    assert not any(k.startswith("summarize@") for k in env.state_json()["deployments"])
    assert not plan_json(capsys, env)["changes"]


def test_a_refreshed_plan_forgets_a_pool_whose_group_is_gone_that_the_fleet_dropped(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """A pool's tfvars entry deleted by hand, the pool dropped from the fleet: the refreshed plan
    left the state recording the pool, so the next plan released it again ("1 to delete")."""
    plan_and_apply(capsys, env)
    tfvars = env.deploy / "terraform" / "placer.auto.tfvars.json"
    data = json.loads(tfvars.read_text())
    del data["placer_pools"]["aws-h100"]  # someone removed the group by hand
    tfvars.write_text(json.dumps(data))
    env.write(aws_pool=False)
    path = env.root / "refreshed.json"
    code, _, err = placer(capsys, "plan", str(env.fleet), "--refresh", "--now", lh.NOW, "-o", str(path))
    assert code == 0, err
    [change] = [c for c in json.loads(path.read_text())["changes"] if c["address"] == "pool/aws-h100"]
    assert (change["action"], change["before"], change["after"]) == ("delete", {"nodes": 0}, None)
    apply_ok(capsys, path)
    assert "aws-h100" not in env.state_json()["pools"]
    assert not plan_json(capsys, env)["changes"]


def test_a_refreshed_plan_moving_a_deployment_gone_from_the_cluster_leaves_no_copy_to_delete(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """A deployment's manifest deleted by hand, its pool's namespace changed: the refreshed plan
    created it in the new namespace, and its apply recorded the copy refresh found gone as a
    replaced one, which the next plan deleted ("an apply stopped before deleting this copy")."""
    env.write(dc1_kubernetes={"context": "dc1", "namespace": "team-a"})
    plan_and_apply(capsys, env)
    [manifest] = [p for p in env.deploy.rglob("rerank-*.yaml")]
    manifest.unlink()  # someone deleted it by hand
    env.write(dc1_kubernetes={"context": "dc1", "namespace": "team-b"})
    path = env.root / "refreshed.json"
    code, _, err = placer(capsys, "plan", str(env.fleet), "--refresh", "--now", lh.NOW, "-o", str(path))
    assert code == 0, err
    apply_ok(capsys, path)
    assert "deposed" not in env.state_json()["deployments"]["rerank@dc1-a100"]
    assert not plan_json(capsys, env)["changes"]


def test_a_fleet_without_pools_or_models_that_deletes_what_runs_is_warned_of(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """The fleet's settings.yaml named as the fleet (a file is a fleet of its documents) planned,
    without a word, to delete every deployment and pool the state records."""
    plan_and_apply(capsys, env)
    code, out, err = placer(capsys, "plan", str(env.fleet), "--now", lh.NOW)
    assert code == 0 and "declares no Pool" not in out + err
    recorded = env.state_json()
    n_dep, n_pool = len(recorded["deployments"]), len(recorded.get("pools", {}))
    settings = env.fleet / "settings.yaml"
    empty = env.root / "empty"
    empty.mkdir()
    (empty / "settings.yaml").write_text(settings.read_text())
    for args in (["plan", str(settings), "--now", lh.NOW],
                 ["apply", str(empty), "--auto-approve", "--now", lh.NOW]):
        code, out, err = placer(capsys, *args)
        said = " ".join((out + err).split())
        assert code == 0, said
        assert f"warning: {args[1]} declares no Pool and no Model, so this plan deletes the {n_dep} deployment(s) " \
            f"and {n_pool} pool(s) the state records: is {args[1]} the fleet's directory?" in said, said


def test_apply_of_a_saved_plan_refuses_now(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """--now sets the time of the plan --auto-approve makes; with a saved plan it was ignored."""
    path = env.root / "plan.json"
    plan_json(capsys, env, path)
    code, _, stderr = placer(capsys, "apply", str(path), "--now", "2030-01-01")
    assert code == 1 and "--now sets the time of the plan that --auto-approve makes from a fleet directory; a " \
        "saved plan was made at its own time (its createdAt): drop --now" in " ".join(stderr.split()), stderr
    assert not env.state.exists() and lh.tree(env.deploy) == {}


def test_apply_of_a_saved_plan_refuses_full_search(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """--full-search sets how --auto-approve's plan is searched; a saved plan's search is over."""
    path = env.root / "plan.json"
    plan_json(capsys, env, path)
    code, _, stderr = placer(capsys, "apply", str(path), "--full-search")
    assert code == 1 and "is a saved plan, searched when it was made: drop --full-search, or plan again with " \
        "`placer plan FLEET --full-search -o PLAN`" in " ".join(stderr.split()), stderr
    assert not env.state.exists() and lh.tree(env.deploy) == {}


def test_a_plan_newer_than_the_state_says_the_state_went_back(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """A state restored from a backup (serial 2 back to 1) made a plan of serial 2 stale "(something
    was applied since)", which nothing was."""
    plan_and_apply(capsys, env)
    backup = env.state.read_bytes()
    env.write(chat_rate=9000)
    plan_and_apply(capsys, env, "second.json")
    third = env.root / "third.json"
    env.write(chat_rate=5000)
    plan_json(capsys, env, third)
    env.state.write_bytes(backup)  # serial 1 again
    code, _, stderr = placer(capsys, "apply", str(third))
    said = " ".join(stderr.split())
    assert code == 1 and "something was applied since" not in said, said
    assert "serial 2, but the state is now serial 1, older than the plan: it was restored from a backup or rolled " \
        "back since" in said and "run `placer plan` again against the current state and apply the new plan" in said
    assert env.state.read_bytes() == backup


def test_a_plan_made_during_another_apply_is_stale_once_that_apply_moves_on(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """A plan read while another apply ran (between its first change, which bumps the serial, and
    its end) carried that apply's final serial, and was accepted once it finished: a fleet reverted
    meanwhile deleted the only copy. It is stale now, and `plan` says an apply is running."""
    plan_and_apply(capsys, env)
    env.write(chat_rate=9000, summarize=False)  # its phase 3 deletes summarize
    edited = env.root / "edited.json"
    plan_json(capsys, env, edited)
    mid = env.root / "mid.json"
    said: list[str] = []

    class PlansMidway(GitOpsProvider):
        def apply(self, change: Any) -> None:
            if change.phase == 3 and not said:
                env.write()  # reverted while the apply runs
                code, _, stderr = placer(capsys, "plan", str(env.fleet), "--now", lh.NOW, "-o", str(mid))
                assert code == 0, stderr
                said.append(stderr)
            super().apply(change)

    run_applier(env, edited, PlansMidway(env.deploy))
    assert said and "an apply is running" in said[0] and f"pid {os.getpid()}" in said[0], said
    assert "did not finish" not in said[0], "the warning after a crash, for an apply still running"
    before = env.state.read_bytes()
    code, _, stderr = placer(capsys, "apply", str(mid))
    assert code == 1 and "stale plan" in stderr and "another apply changed the state since" in stderr, stderr
    assert env.state.read_bytes() == before

    with pytest.raises(StalePlanError, match="another apply changed the state since"):
        check_fresh(load_plan(mid), env.backend.read())


# ---------------------------------------------------------------- the lock


def test_apply_while_locked_is_refused_with_the_holder(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    path = env.root / "plan.json"
    plan_json(capsys, env, path)
    with env.backend.lock("apply") as holder:
        code, _, stderr = placer(capsys, "apply", str(path))
        assert code == 1
        for part in ("is locked", holder["Who"], f"pid {holder['PID']}", holder["Created"], holder["ID"],
                     f"placer force-unlock {holder['ID']}"):
            assert part in stderr, f"{part!r} missing from {stderr}"
        assert not env.state.exists(), "a refused apply must not write the state"
        assert lh.tree(env.deploy) == {}, "a refused apply must not touch the provider"
    apply_ok(capsys, path)


@pytest.mark.parametrize("how", ["chmod", "seam"])
def test_a_state_folder_the_lock_cannot_list_is_said_in_words(env: Env, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """The lock lists the state's folder to sweep a killed write's temporary files; a folder it
    can write but not list (`chmod 300`) stopped the apply with Python's "Error: [Errno 13]
    Permission denied: 'FOLDER'". Now one line says what placer was doing, where and what to do,
    exit 1, the lock released and nothing written (root lists any folder: the seam raises what
    listing one raises)."""
    path = env.root / "plan.json"
    plan_json(capsys, env, path)
    folder = env.state.parent
    folder.mkdir()
    denied.unlistable(folder, monkeypatch, how)
    _lock_refuses(env, capsys, monkeypatch, path, f"cannot list the folder {folder} (permission denied) to remove what "
                  "a killed write left there; nothing was changed: make the folder readable as well as writable by "
                  f"this user (`chmod u+rwx {folder}` if you own it), then run the command again")


def _lock_refuses(env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, path: Path,
                  why: str) -> None:
    """``placer apply PATH`` with the state's folder made one the lock cannot use: exit 1, one line
    'cannot lock the state STATE: WHY', nothing written; once the folder is given back, the same plan
    applies (the state as it was: it is not stale)."""
    folder = env.state.parent
    try:
        code, stdout, stderr = placer(capsys, "apply", str(path))
    finally:
        folder.chmod(0o755)
    assert code == 1 and stdout == "", stdout
    assert stderr == f"Error: cannot lock the state {env.state}: {why}\n", stderr
    monkeypatch.undo()
    assert list(folder.iterdir()) == [] and lh.tree(env.deploy) == {}
    apply_ok(capsys, path)


@pytest.mark.parametrize("how", ["chmod", "seam"])
def test_a_state_folder_the_lock_cannot_enter_is_said_in_words(env: Env, capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """A state folder this user can list but not enter (`chmod 600`): the lock's private file could
    not be made, and the removal of it, never made, failed too, its error said instead: Python's
    "Error: [Errno 13] Permission denied: '.../.state.json.lock.XXXXXXXX'". Now one line says where
    and what to do, exit 1, nothing written (the seam refuses the file and its removal, as such a
    folder does)."""
    path = env.root / "plan.json"
    plan_json(capsys, env, path)
    folder = env.state.parent
    folder.mkdir()
    if how == "chmod":
        denied.unsearchable(folder, monkeypatch, how)
    else:
        import placer.state as state_module

        beside, unlink = state_module.temporary_beside, os.unlink

        def refused(target: Path, staged: list[Any], named: Any) -> Any:
            if target.parent == folder:
                staged.append((named, target, str(folder / f".{target.name}.abcdefgh")))
                raise PermissionError(errno.EACCES, "Permission denied", staged[-1][2])
            return beside(target, staged, named)

        def unlinked(name: Any, *args: Any, **kwargs: Any) -> None:
            if Path(name).parent == folder:
                raise PermissionError(errno.EACCES, "Permission denied", str(name))
            unlink(name, *args, **kwargs)

        monkeypatch.setattr(state_module, "temporary_beside", refused)
        monkeypatch.setattr(os, "unlink", unlinked)
    _lock_refuses(env, capsys, monkeypatch, path, f"cannot create a file in {folder} (permission denied): make the "
                  f"folder writable and searchable by this user (`chmod u+rwx {folder}` if you own it), then run the "
                  "command again")


@pytest.mark.parametrize("how", denied.HOWS)
@pytest.mark.parametrize("what", ["clusters", "cluster folder", "kustomization", "tfvars"])
def test_a_tree_the_gitops_apply_cannot_list_or_read_is_said_in_words(
        env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, what: str, how: str) -> None:
    """The gitops apply lists the tree's folders and reads its kustomizations and tfvars before it
    changes anything; a folder it can write but not list (`chmod 300`) or a file it cannot read
    (`chmod 200`) failed it with Python's "[Errno 13] Permission denied: 'PATH'". Now the path, why
    and what to do, exit 1, nothing written: the state as it was."""
    plan_and_apply(capsys, env)
    kust = sorted(env.deploy.rglob("kustomization.yaml"))[0]
    again = env.root / "again.json"
    plan_json(capsys, env, again)
    state = env.state.read_bytes()
    path = {"clusters": env.deploy / "clusters", "cluster folder": kust.parent, "kustomization": kust,
            "tfvars": env.deploy / "terraform" / "placer.auto.tfvars.json"}[what]
    if path.is_dir():
        denied.unlistable(path, monkeypatch, how)
    else:
        denied.unreadable(path, monkeypatch, how)
    try:
        code, _, stderr = placer(capsys, "apply", str(again))
    finally:
        denied.restore(path)
    said = " ".join(stderr.split())
    if path.is_dir():
        why = (f"cannot list the folder {path} (permission denied) to read which "
               + ("cluster folders" if what == "clusters" else "manifests") + " it holds: make the folder readable "
               f"as well as writable by this user (`chmod u+rwx {path}` if you own it)")
    else:
        why = (f"cannot read {path} (permission denied) to check "
               + ("that it lists its folder's manifests" if what == "kustomization" else "which plan it names")
               + f": make it readable by this user (`chmod u+r {path}` if you own it)")
    assert code == 1 and said.startswith(f"Error: apply failed after 0 of 0 change(s): {why}, then run the command "
                                         "again."), said
    assert "Errno" not in said and env.state.read_bytes() == state
    monkeypatch.undo()
    apply_ok(capsys, again)


def test_force_unlock_a_dead_holder(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    path = env.root / "plan.json"
    plan_json(capsys, env, path)
    dead = env.backend.lock("apply")
    holder = dead.__enter__()  # never released, as if the process died

    code, _, stderr = placer(capsys, "force-unlock", "not-the-id", "--fleet", str(env.fleet))
    assert code == 1 and "does not match" in stderr
    assert env.backend.lock_path.exists()

    code, stdout, stderr = placer(capsys, "force-unlock", holder["ID"], "--fleet", str(env.fleet))
    assert code == 0, stderr
    assert "Unlocked" in stdout and holder["Who"] in stdout
    assert not env.backend.lock_path.exists()
    apply_ok(capsys, path)

    code, _, stderr = placer(capsys, "force-unlock", holder["ID"], "--state", str(env.state))
    assert code == 1 and "not locked" in stderr


def test_the_lock_hints_command_unlocks_as_printed(env: Env, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The refused apply said `placer force-unlock ID`, which, run as printed, looked for the default
    state file and answered "not locked"."""
    path = env.root / "plan.json"
    plan_json(capsys, env, path)
    dead = env.backend.lock("apply")
    dead.__enter__()  # never released, as if the process died
    monkeypatch.chdir(env.root / "state")  # anywhere but where the fleet's default state would be
    code, _, stderr = placer(capsys, "apply", str(path))
    assert code == 1
    printed = re.search(r"`placer (force-unlock [^`]+)`", " ".join(stderr.split()))
    assert printed, stderr
    code, stdout, stderr = placer(capsys, *shlex.split(printed.group(1)))
    assert code == 0 and "Unlocked" in stdout, stderr
    apply_ok(capsys, path)


def test_a_lock_that_cannot_be_removed_is_said_with_the_command_that_removes_it(
        env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The state's folder turned read-only during an apply (a volume remounted, `chattr +i`): the apply
    said "Releasing the state lock failed too: [Errno 1] Operation not permitted: '.../state.json.lock'"
    and no command to remove the lock it left; force-unlock said the same errno, as a bare error."""
    path = env.root / "plan.json"
    plan_json(capsys, env, path)
    unlink = Path.unlink

    def refused(self: Path, missing_ok: bool = False) -> None:
        if self.name.endswith(".lock"):
            raise PermissionError(errno.EPERM, "Operation not permitted", str(self))
        unlink(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", refused)
    code, stdout, stderr = placer(capsys, "apply", str(path))
    said = " ".join(stderr.split())
    assert code == 1 and "Apply complete" in stdout, stdout + stderr
    lock = json.loads(env.backend.lock_path.read_text())
    assert "[Errno" not in said, said
    assert (f"the apply completed, but releasing the state lock failed: cannot remove the lock file "
            f"{env.backend.lock_path} (operation not permitted): the state stays locked; once") in said, said
    printed = re.search(r"`placer (force-unlock [^`]+)`", said)
    assert printed and lock["ID"] in printed.group(1), said

    code, _, stderr = placer(capsys, *shlex.split(printed.group(1)))  # the folder still read-only
    said = " ".join(stderr.split())
    assert code == 1 and "[Errno" not in said, said
    assert f"cannot remove the lock file {env.backend.lock_path} (operation not permitted)" in said, said
    assert env.backend.lock_path.exists()

    monkeypatch.undo()  # the folder writable again: the printed command removes the lock
    code, stdout, stderr = placer(capsys, *shlex.split(printed.group(1)))
    assert code == 0 and "Unlocked" in stdout, stderr
    assert not env.backend.lock_path.exists()


def test_a_lock_whose_apply_is_gone_is_said_by_plan_and_apply_with_the_command(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """An apply SIGKILLed left its lock: the next plan said nothing of it (only, where it had recorded a
    change, that it "did not finish"), and the apply it advised was refused with "If that process is
    gone", of a process of this host placer can tell is gone."""
    path = env.root / "plan.json"
    plan_json(capsys, env, path)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = env.backend.lock("apply")
    holder = dead.__enter__()  # never released
    holder["PID"] = int(gone.stdout)
    env.backend.lock_path.write_text(json.dumps(holder))

    assert placer_cli.main(["plan", str(env.fleet), "--now", lh.NOW]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert (f"warning: the state {env.state} is locked by an apply that no longer runs (pid {holder['PID']} on "
            "this host: killed?)") in said, said
    printed = re.search(r"`placer (force-unlock [^`]+)`", said)
    assert printed and holder["ID"] in printed.group(1), said

    code, _, stderr = placer(capsys, "apply", str(path))
    said = " ".join(stderr.split())
    assert code == 1 and "If that process is gone" not in said, said
    assert f"pid {holder['PID']} no longer runs on this host (killed?): run `placer force-unlock {holder['ID']}" in said

    code, stdout, stderr = placer(capsys, *shlex.split(printed.group(1)))
    assert code == 0 and "Unlocked" in stdout, stderr
    apply_ok(capsys, path)



def test_the_plans_warning_of_a_gone_apply_quotes_its_lock_as_apply_does(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """A lock is a file anyone with access to the state may write: the plan's warning of a lock whose
    process is gone put its ID in the force-unlock command as it was (`x; rm -rf ~` ran a second
    command, pasted) and its escape codes on the terminal, where the refusal of a lock whose holder
    may still run quotes them."""
    plan_json(capsys, env)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = env.backend.lock("apply")
    holder = dead.__enter__()  # never released
    holder.update({"PID": int(gone.stdout), "ID": "x; rm -rf ~\x1b[2J"})
    env.backend.lock_path.write_text(json.dumps(holder))
    code, _, stderr = placer(capsys, "plan", str(env.fleet), "--now", lh.NOW)
    said = " ".join(stderr.split())
    assert code == 0 and "\x1b" not in stderr, stderr
    assert "`placer force-unlock 'x; rm -rf ~\\x1b[2J' --fleet" in said, said


# ---------------------------------------------------------------- an apply killed half-way


def test_apply_killed_half_way_resumes_without_losing_or_repeating(
        env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = env.root / "plan.json"
    plan_json(capsys, env, path)

    # the reference: the same plan applied without interruption elsewhere
    ref = Env(tmp_path / "reference")
    run_applier(ref, path, lh.LoggingProvider(ref.deploy, ref.root / "ref.log"))

    log = env.root / "apply.log"
    proc = subprocess.Popen([sys.executable, str(lh.HERE), "slow-apply", str(path), str(env.state),
                             str(env.deploy), str(log), "0.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            lines = log.read_text().splitlines() if log.exists() else []
            done = [line for line in lines if line.startswith("done ")]
            # at least 3 changes recorded, the next one sleeping before it touches anything
            if len(done) >= 3 and lines[-1].startswith("start "):
                break
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, lines
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    k = len(done)  # 3, unless this machine is very slow
    assert 3 <= k < len(lh.INITIAL_CHANGES)

    # the first change wrote the whole state; the others went to its journal, which read replays
    assert env.state_json()["applying"]["done"] == [lh.INITIAL_CHANGES[0][0]]
    assert len(env.backend.journal_path.read_text().splitlines()) == k - 1
    state = env.backend.read().to_json()
    assert state["serial"] == 1, "the first recorded change bumps the serial"
    assert state["applying"]["done"] == [c[0] for c in lh.INITIAL_CHANGES[:k]]
    assert sorted(state["deployments"]) == sorted(c[0].split("/", 1)[1] for c in lh.INITIAL_CHANGES[1:k])
    lock = json.loads(env.backend.lock_path.read_text())
    assert lock["PID"] == proc.pid, "the killed apply still holds the lock"

    # the interrupted plan is stale now; a new plan holds only what remains
    code, _, stderr = placer(capsys, "apply", str(path))
    assert code == 1 and "is locked" in stderr and f"pid {proc.pid}" in stderr
    remaining = env.root / "remaining.json"
    capsys.readouterr()
    assert placer_cli.main(["plan", str(env.fleet), "-o", str(remaining), "--now", lh.NOW]) == 0
    assert "did not finish" in capsys.readouterr().err
    assert lh.changes_of(json.loads(remaining.read_text())) == lh.INITIAL_CHANGES[k:]

    code, _, stderr = placer(capsys, "force-unlock", lock["ID"], "--state", str(env.state))
    assert code == 0, stderr
    code, _, stderr = placer(capsys, "apply", str(path))
    assert code == 1 and "stale plan" in stderr

    monkeypatch.setattr(placer_cli, "providers_for",
                        lambda cfg, directory_override=None, plan=None: [lh.LoggingProvider(env.deploy, log)])
    apply_ok(capsys, remaining)
    assert not env.backend.journal_path.exists(), "the apply's end folds its journal into the state"

    assert lh.tree(env.deploy) == lh.tree(ref.deploy)
    assert lh.comparable_state(env.state) == lh.comparable_state(ref.state)
    assert env.state_json()["applying"] is None and env.state_json()["serial"] == 2
    lines = log.read_text().splitlines()
    done = Counter(line.split(" ", 1)[1] for line in lines if line.startswith("done "))
    assert done == Counter(c[0] for c in lh.INITIAL_CHANGES), "every change done exactly once"
    started = Counter(line.split(" ", 1)[1] for line in lines if line.startswith("start "))
    assert started - done == Counter({lh.INITIAL_CHANGES[k][0]: 1}), "only the killed change started twice"
    code, _, _ = placer(capsys, "plan", str(env.fleet), "--now", lh.NOW, "--detailed-exitcode")
    assert code == 0


# ---------------------------------------------------------------- providers that fail


def test_transient_provider_errors_are_retried(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    path = env.root / "plan.json"
    plan_json(capsys, env, path)
    provider = lh.FaultyProvider(env.deploy, transient=2)
    delays: list[float] = []
    messages: list[str] = []
    report = run_applier(env, path, provider, sleep=delays.append, progress=lambda m, _c: messages.append(m))

    assert report.retries == 2 * 5
    assert report.applied == [c[0] for c in lh.INITIAL_CHANGES]
    assert Counter(provider.calls) == Counter({c[0]: 3 for c in lh.INITIAL_CHANGES})
    assert len(delays) == 10 and all(0 <= d <= 0.001 * 2 ** 5 for d in delays)
    assert any("429 Too Many Requests" in m for m in messages)
    assert any("503 Service Unavailable" in m for m in messages)
    state = env.state_json()
    assert state["serial"] == 1 and state["applying"] is None and len(state["deployments"]) == 4
    code, _, _ = placer(capsys, "plan", str(env.fleet), "--now", lh.NOW, "--detailed-exitcode")
    assert code == 0


def test_retries_are_bounded(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    path = env.root / "plan.json"
    plan_json(capsys, env, path)
    provider = lh.FaultyProvider(env.deploy, transient=100)
    plan = load_plan(path)
    applier = Applier(env.backend, [provider], parallelism=1,
                      retry=RetryPolicy(attempts=3, base_seconds=0.001), sleep=lambda _s: None)
    with pytest.raises(RetriesSpent, match=r"503|429") as caught:
        applier.run(plan, env.backend.read(), "test", None, {})
    # the provider's message says a retry may help; the apply's says it was retried, and what next
    assert "tried 3 times" in str(caught.value) and "run `placer plan`" in str(caught.value)
    assert isinstance(caught.value.__cause__, ProviderError) and caught.value.__cause__.retryable
    assert not caught.value.retryable
    assert provider.calls == ["pool/aws-h100"] * 3
    assert not env.state.exists(), "nothing was done, so nothing is recorded"


def test_permanent_error_records_exactly_what_was_done(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    path = env.root / "plan.json"
    plan_json(capsys, env, path)
    provider = lh.FaultyProvider(env.deploy, permanent_on=3)
    with pytest.raises(ProviderError, match="400 Bad Request") as caught:
        run_applier(env, path, provider)
    assert not caught.value.retryable
    failed = lh.INITIAL_CHANGES[2][0]
    assert provider.calls.count(failed) == 1, "a permanent error is not retried"
    succeeded = [a for a in provider.calls if a != failed]

    state = env.state_json()
    assert state["serial"] == 1
    assert state["applying"]["done"] == succeeded, "the state records what the provider did, no more, no less"
    assert succeeded[:2] == ["pool/aws-h100", "deployment/chat@aws-h100"]
    assert failed.split("/", 1)[1] not in state["deployments"]
    assert {k: v["nodes"] for k, v in state["pools"].items()} == {"aws-h100": 1}
    manifests = sorted(f for f in lh.tree(env.deploy) if f.startswith("clusters/")
                       and not f.endswith("kustomization.yaml"))
    assert manifests == sorted(f"clusters/default/{k.replace('@', '-')}.yaml" for k in state["deployments"])
    assert not env.backend.lock_path.exists()

    remaining = plan_json(capsys, env)
    assert lh.changes_of(remaining) == [c for c in lh.INITIAL_CHANGES if c[0] not in succeeded]


def test_permanent_error_on_the_third_change_stops_the_apply(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    path = env.root / "plan.json"
    plan_json(capsys, env, path)
    provider = lh.FaultyProvider(env.deploy, permanent_on=3)
    with pytest.raises(ProviderError, match="400 Bad Request"):
        run_applier(env, path, provider)
    assert provider.calls == [c[0] for c in lh.INITIAL_CHANGES[:3]], "no change may start after a failure"
    state = env.state_json()
    assert state["applying"]["done"] == ["pool/aws-h100", "deployment/chat@aws-h100"]
    assert {k: v["replicas"] for k, v in state["deployments"].items()} == {"chat@aws-h100": 3}
    assert lh.changes_of(plan_json(capsys, env)) == lh.INITIAL_CHANGES[2:]


def test_permanent_error_through_the_cli(env: Env, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = env.root / "plan.json"
    plan_json(capsys, env, path)
    monkeypatch.setattr(placer_cli, "providers_for",
                        lambda cfg, directory_override=None, plan=None: [lh.FaultyProvider(env.deploy, permanent_on=3)])
    code, _, stderr = placer(capsys, "apply", str(path))
    assert code == 1
    done = env.state_json()["applying"]["done"]
    assert done[:2] == ["pool/aws-h100", "deployment/chat@aws-h100"]
    assert f"apply failed after {len(done)} of 5 change(s)" in stderr and "400 Bad Request" in stderr
    assert "run `placer plan`" in stderr
    # no health wait failed (the gitops apply waits for none): it said "(a deployment whose health wait did
    # not pass, as made but not healthy)" of every failed apply, a pool's first change too
    assert "health wait" not in stderr and "not healthy" not in stderr, stderr


def test_a_failed_apply_writes_its_metrics_file_success_0(env: Env, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """--metrics-file of an apply a provider fails half-way: success 0, the changes it made and
    recorded, the state's serial, the calls it tried again (they were left out: a failed apply's, after
    throttling, are those an operator looks for), and the last success's time kept from the file it
    replaces; of a stale plan's apply, 0 changes made."""
    from tests.metricskit import leftovers, one, samples

    metrics = env.root / "metrics" / "apply.prom"
    first = plan_and_apply(capsys, env)  # the state serial 1, no metrics yet
    env.write(chat_rate=9000, summarize=False)
    second = env.root / "second.json"
    plan_json(capsys, env, second)
    assert [c[:2] for c in lh.changes_of(json.loads(second.read_text()))] == [c[:2] for c in lh.EDITED_CHANGES]
    code, _, stderr = placer(capsys, "apply", str(first), "--metrics-file", str(metrics))  # stale: applied already
    assert code == 1 and "stale plan" in stderr
    found = samples(metrics)
    assert one(found, "placer_apply_success") == 0.0 and one(found, "placer_apply_changes_applied") == 0.0
    assert one(found, "placer_apply_state_serial") == 1.0
    assert "placer_apply_last_success_timestamp_seconds" not in found  # none written yet: none to keep
    code, _, stderr = placer(capsys, "apply", str(second), "--metrics-file", str(metrics))
    assert code == 0, stderr
    succeeded = one(samples(metrics), "placer_apply_last_success_timestamp_seconds")
    env.write(chat_rate=3000, summarize=True)  # back: chat 9 -> 3, summarize made again, the pool 2 -> 1
    third = env.root / "third.json"
    plan_json(capsys, env, third)
    # the first change is tried again once, the second fails for good: the retries are counted all the same
    monkeypatch.setenv("PLACER_RETRY_BASE_SECONDS", "0.001")
    monkeypatch.setattr(placer_cli, "providers_for", lambda cfg, directory_override=None, plan=None: [
        lh.FaultyProvider(env.deploy, transient=1, permanent_on=2)])
    code, _, stderr = placer(capsys, "apply", str(third), "--metrics-file", str(metrics))
    assert code == 1 and "400 Bad Request" in stderr
    state = env.state_json()
    done = len(state["applying"]["done"])
    assert done == 1 and f"apply failed after {done} of 3 change(s)" in stderr, stderr
    found = samples(metrics)
    assert one(found, "placer_apply_success") == 0.0
    assert one(found, "placer_apply_changes_planned") == 3.0 and one(found, "placer_apply_changes_applied") == done
    assert one(found, "placer_apply_state_serial") == state["serial"] == 3
    assert one(found, "placer_apply_last_success_timestamp_seconds") == succeeded  # kept: alerts see its age
    assert one(found, "placer_apply_finished_timestamp_seconds") > succeeded
    assert one(found, "placer_apply_retries") == 1.0 and leftovers(metrics.parent) == []


def test_transient_errors_through_the_cli(env: Env, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = env.root / "plan.json"
    plan_json(capsys, env, path)
    monkeypatch.setenv("PLACER_RETRY_BASE_SECONDS", "0.001")
    monkeypatch.setattr(placer_cli, "providers_for",
                        lambda cfg, directory_override=None, plan=None: [lh.FaultyProvider(env.deploy, transient=1)])
    stdout = apply_ok(capsys, path)
    assert "5 change(s) applied (5 retried); state serial 1." in stdout


def test_apply_error_is_an_apply_error_when_no_provider_handles_a_change(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    path = env.root / "plan.json"
    plan_json(capsys, env, path)
    with pytest.raises(ApplyError, match="no configured provider"):
        run_applier(env, path, _Nothing())
    assert not env.state.exists()


class _Nothing:
    name = "nothing"

    def handles(self, change: Any) -> bool:
        return False


# ---------------------------------------------------------------- damaged files


def _edited(text: str, edit: Any) -> str:
    data = json.loads(text)
    edit(data)
    return json.dumps(data)


# fields of another type, as a hand edit or a bad merge leaves them: read unchecked, they were an
# internal error in `plan`
EDITS = {
    "replicas-text": (lambda d: next(iter(d["deployments"].values())).update(replicas="three"),
                      "replicas 'three' is no count"),
    "key-without-at": (lambda d: d["deployments"].update(chat=d["deployments"].popitem()[1]),
                       "deployment 'chat' is not <model>@<pool>"),
    "applying-text": (lambda d: d.update(applying="yes"), "applying is not an apply's record"),
    # these were an internal error in `plan` (a TypeError in the diff) or read as something else
    "demand-text": (lambda d: next(iter(d["models"].values())).update(demand="lots"),
                    "demand 'lots' is no number"),
    "serial-negative": (lambda d: d.update(serial=-5), "serial -5 is no count"),
    "lineage-number": (lambda d: d.update(lineage=5), "lineage 5 is no text"),
    "history-mapping": (lambda d: d.update(history={"a": 1}), "history is not a list of applies"),
    # a recorded target of another shape: internal errors in plan and refresh (ValueError, AttributeError)
    "target-text": (lambda d: d["deployments"]["chat@aws-h100"].update(target="x"),
                    "deployment chat@aws-h100: target 'x' is not a mapping"),
    "target-kubernetes-text": (lambda d: d["deployments"]["chat@aws-h100"]["target"].update(kubernetes="x"),
                               "deployment chat@aws-h100: target.kubernetes 'x' is not a mapping"),
    "target-gpus-text": (lambda d: d["deployments"]["chat@aws-h100"]["target"].update(gpus="two"),
                         "deployment chat@aws-h100: target.gpus 'two' is no count"),
    "healthy-text": (lambda d: d["deployments"]["chat@aws-h100"].update(healthy="no"),
                     "deployment chat@aws-h100: healthy 'no' is not true or false"),
    "deposed-target-text": (lambda d: d["deployments"]["chat@aws-h100"].update(deposed=[{"replicas": 1, "target": "x"}]),
                            "deployment chat@aws-h100: deposed[0] target 'x' is not a mapping"),
    "pool-target-text": (lambda d: d["pools"]["aws-h100"].update(target="x"), "pool aws-h100: target 'x' is not a mapping"),
}


def _damage(kind: str, text: str) -> str:
    if kind in EDITS:
        return _edited(text, EDITS[kind][0])
    return {"garbage": "}}} this is not a state", "truncated": text[: len(text) // 3], "empty": ""}[kind]


@pytest.mark.parametrize("kind", ["garbage", "truncated", "empty", *EDITS])
def test_damaged_state_is_a_clear_error_and_stays_as_it_is(
        env: Env, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    plan_and_apply(capsys, env)
    env.write(chat_rate=9000)
    second = env.root / "second.json"
    plan_json(capsys, env, second)
    env.state.write_text(_damage(kind, env.state.read_text()))
    before, files = env.state.read_bytes(), lh.tree(env.deploy)

    for args in (["plan", str(env.fleet), "--now", lh.NOW], ["apply", str(second)]):
        code, stdout, stderr = placer(capsys, *args)
        assert code == 1, (args, stdout)
        assert str(env.state) in stderr
        assert (EDITS[kind][1] if kind in EDITS else "empty" if kind == "empty" else "invalid JSON") in stderr
        assert "internal error" not in stderr
        assert env.state.read_bytes() == before, "a damaged state must never be rewritten"
        assert lh.tree(env.deploy) == files
    assert not env.backend.lock_path.exists()


@pytest.mark.parametrize("inside", ["deploy", "teams/deploy"])
def test_a_gitops_directory_inside_the_fleet_is_refused_before_anything_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], inside: str) -> None:
    """Run from the fleet's folder, the default directory `deploy` is in the fleet: the apply wrote
    its manifests there and the next plan failed on `unknown kind 'Deployment'`."""
    fleet, state = tmp_path / "fleet", tmp_path / "state.json"
    lh.write_fleet(fleet, {"path": str(state)}, fleet / inside)
    for args in (["plan", str(fleet), "--now", lh.NOW], ["apply", str(fleet), "--auto-approve", "--now", lh.NOW]):
        code, _, stderr = placer(capsys, *args)
        assert code == 1
        assert f"Settings apply.directory '{fleet / inside}' is {fleet / inside}, inside the fleet {fleet}" in stderr
    assert not state.exists() and not (fleet / inside).exists()
    lh.write_fleet(fleet, {"path": str(state)}, fleet / ".deploy")  # a hidden folder the loader skips
    code, _, stderr = placer(capsys, "apply", str(fleet), "--auto-approve", "--now", lh.NOW)
    assert code == 0, stderr
    code, _, stderr = placer(capsys, "plan", str(fleet), "--now", lh.NOW, "--detailed-exitcode")
    assert code == 0, stderr


@pytest.mark.parametrize(("now", "said"), [
    ("9999-12-31T23:59:59-12:00", "is out of range"),  # past year 9999 in UTC: an internal OverflowError
    ("0001-01-01", "is out of range"),  # made createdAt "1-01-01T00:00:00Z", no ISO time
    ("2026-13-01", "is not an ISO date or time"),
])
def test_a_now_beyond_what_a_plan_can_record_is_refused(env: Env, capsys: pytest.CaptureFixture[str], now: str,
                                                        said: str) -> None:
    code, _, stderr = placer(capsys, "plan", str(env.fleet), "--now", now)
    assert code == 1 and f"--now {now!r} {said}" in stderr and "internal error" not in stderr


def test_a_now_with_an_offset_is_recorded_in_utc(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, stderr = placer(capsys, "plan", str(env.fleet), "--json", "--now", "2026-11-28T23:30:00-02:00")
    assert code == 0, stderr
    assert json.loads(stdout)["createdAt"] == "2026-11-29T01:30:00Z"


def test_plan_saved_with_a_byte_order_mark_still_applies(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """Windows editors and PowerShell's Out-File write UTF-8 with a BOM; json.loads refuses one."""
    path = env.root / "plan.json"
    plan_json(capsys, env, path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    code, stdout, stderr = placer(capsys, "show", str(path))
    assert code == 0, stderr
    assert "deployment/" in stdout, stdout
    apply_ok(capsys, path)
    assert json.loads(env.state.read_text())["serial"] == 1


# a plan edited by hand: an unknown action was applied as a create; a section of another type was
# an internal error in show and render; true passed for formatVersion 1; Infinity is no JSON;
# replicas -3 and 1e300 were applied into the manifests (changes[0] creates a pool, [1] a deployment)
TAMPERED = {
    "action": (lambda d: d["changes"][0].update(action="destroy"),
               "changes[0] has action 'destroy', not one of create, update, delete, no-op"),
    "phase": (lambda d: d["changes"][0].update(phase=9), "changes[0] has phase 9, not one of 1, 2, 3, 4"),
    # make before break undone: a create applied with the shrinking, after every scale-down and delete
    "phase-late": (lambda d: d["changes"][1].update(phase=4),
                   "changes[1] puts a deployment's create in phase 4 (shrink capacity); placer makes it in phase 2"),
    "phase-kind": (lambda d: d["changes"][0].update(phase=3),
                   "changes[0] puts a pool's create in phase 3 (scale down and delete); placer makes it in phase 1"),
    "address": (lambda d: d["changes"][0].update(address="deployment/x"), "changes[0] has address 'deployment/x'"),
    "cost": (lambda d: d.update(cost="cheap"), "cost is not a JSON object"),
    "cost-entry": (lambda d: d["cost"].update(totalUsdPerHour="1"), "cost.totalUsdPerHour is '1', not a number"),
    "placements": (lambda d: d.update(placements=["x"]), "placements[0] is not an object"),
    "changes": (lambda d: d.update(changes={}), "changes is not a JSON array"),
    "bool-version": (lambda d: d.update(formatVersion=True), "plan formatVersion True is not one"),
    "escape": (lambda d: d["changes"][0].update(reasons=["\x1b[2J"]),
               "changes.0.reasons.0 contains the control character '\\x1b', which would reach the terminal"),
    "negative": (lambda d: d["changes"][1]["after"].update(replicas=-3),
                 "changes[1].after.replicas is -3, not a count (0 to 1,024,000,000)"),
    "absurd": (lambda d: d["changes"][1]["after"].update(replicas=1e300), "changes[1].after.replicas is 1e+300, not"),
    "huge": (lambda d: d["changes"][1]["after"].update(replicas=10 ** 300),
             "changes[1].after.replicas is 1000000000000000000000000000000000000..., not a count"),
    "text-count": (lambda d: d["changes"][0]["after"].update(nodes="1"), "changes[0].after.nodes is '1', not a count"),
    "nodes": (lambda d: d["changes"][0]["after"].update(nodes=1_000_001),
              "changes[0].after.nodes is 1000001, not a count (0 to 1,000,000)"),
    "other-count": (lambda d: d["changes"][0].update(after={"replicas": 1}), "changes[0].after has no nodes"),
    "create-before": (lambda d: d["changes"][1].update(before={"replicas": 1}),
                      "changes[1] is a create with before; a create has no before"),
    "delete-after": (lambda d: d["changes"][1].update(action="delete", before={"replicas": 1}),
                     "changes[1] is a delete with after; a delete has no after"),
    "reasons": (lambda d: d["changes"][1].update(reasons=[1]), "changes[1].reasons is not an array of strings"),
    # a plan without SPEC section 3's sections: shown as 30.00 -> 0.00 USD/h, solved by None, exit 0
    "no-cost": (lambda d: [d.pop(k) for k in ("cost", "solver")],
                "plan file is missing solver, cost; it may be truncated: re-plan"),
    "no-sections": (lambda d: [d.pop(k) for k in ("placements", "pools", "routes", "unmet", "violations", "createdAt",
                                                  "placerVersion")],
                    "plan file is missing placerVersion, createdAt, placements, routes, pools, unmet, violations;"),
    "cost-field": (lambda d: d["cost"].pop("totalUsdPerHour"), "cost has no totalUsdPerHour"),
    "created-null": (lambda d: d.update(createdAt=None), "createdAt is None, not a string"),
    # a target without a field apply reads, or with one of another type: the apply made the changes
    # before it, then failed on a KeyError 'model' or an int() of "x"
    "target-field": (lambda d: d["changes"][1]["target"].pop("model"), "changes[1].target.model: missing"),
    "target-empty": (lambda d: d["changes"][1].update(target={}), "changes[1].target.provider: missing"),
    "target-none": (lambda d: d["changes"][1].pop("target"), "changes[1].target: missing"),
    "target-type": (lambda d: d["changes"][1]["target"].update(gpus="x"),
                    "changes[1].target.gpus: input should be a valid integer, got 'x'"),
    "target-namespace": (lambda d: d["changes"][1]["target"]["kubernetes"].update(namespace=3),
                         "changes[1].target.kubernetes.namespace: input should be a valid string, got 3"),
    # a rollout strategy the API server refuses (diff._surges writes maxSurge 0, maxUnavailable 1)
    "target-strategy": (lambda d: d["changes"][1]["target"].update(strategy={"maxSurge": 0, "maxUnavailable": 0}),
                        "changes[1].target.strategy: maxSurge and maxUnavailable are both 0"),
    "target-nodes": (lambda d: d["changes"][0]["target"].update(maxNodes=-1),
                     "changes[0].target.maxNodes: input should be greater than or equal to 0, got -1"),
    "target-group": (lambda d: d["changes"][0]["target"].pop("aws"), "changes[0].target.aws: missing"),
    "target-region": (lambda d: d["changes"][0]["target"]["aws"].pop("region"),
                      "changes[0].target.aws.region: missing"),
    "target-provider": (lambda d: d["changes"][0]["target"].update(provider="static"),
                        "changes[0].target.provider is 'static', not aws or gcp"),
    # an address that names another pool or model than its target: applied, two tfvars entries sized one group
    "address-pool": (lambda d: d["changes"][0].update(address="pool/zzz"),
                     "changes[0] has address 'pool/zzz', but its target.pool is 'aws-h100': both name the pool"),
    "address-model": (lambda d: d["changes"][1].update(address=d["changes"][1]["address"].replace("@", "x@")),
                      "but its target.model is"),
    # an entry without a field the renderers read, or with one of another type: internal errors in show
    "unmet-entry": (lambda d: d.update(unmet=[{"model": "chat", "demandLocation": "dc1"}]), "unmet[0] has no rate"),
    "violation-entry": (lambda d: d.update(violations=[{"policy": "p", "amount": 1, "detail": "d"}]),
                        "violations[0] has no enforcement"),
    "placement-pool": (lambda d: d["placements"][0].pop("pool"), "placements[0] has no pool"),
    "placement-count": (lambda d: d["placements"][0].update(replicas="3"),
                        "placements[0].replicas is '3', not a count (0 to 1,024,000,000)"),
    "route-rate": (lambda d: d["routes"][0].update(rate=-1.0), "routes[0].rate is -1.0, not a number of 0 or more"),
    "pool-gpus": (lambda d: d["pools"][0].update(gpusUsed=True), "pools[0].gpusUsed is True, not a count of GPUs"),
    "solver-gap": (lambda d: d["solver"].update(gap="abc"), "solver.gap is 'abc', not a number"),
    "model-demand": (lambda d: d["models"].update(chat=[]), "models.chat is not an object"),
    "prior": (lambda d: d.update(priorState="x"), "priorState is not an object"),
    "serial": (lambda d: d["priorState"].update(serial=-1), "priorState.serial is -1, not a whole number"),
    "prior-applying": (lambda d: d["priorState"].update(applying={"plan": "p", "done": "2"}),
                       "priorState.applying.done is '2', not a whole number"),
    "created": (lambda d: d.update(createdAt=5), "createdAt is 5, not a string"),
    "settings": (lambda d: d["settings"].update(apply="x"), "settings.apply is not an object"),
    "settings-field": (lambda d: d["settings"]["apply"].update(parallelism="4"), "settings.apply.parallelism: "),
    # a plan without its settings (or its apply.mode) was applied live, whatever the fleet's Settings said
    "no-settings": (lambda d: d.pop("settings"), "plan file is missing settings; it may be truncated: re-plan"),
    "settings-empty": (lambda d: d.update(settings={}), "settings.state: missing"),
    "settings-mode": (lambda d: d["settings"]["apply"].pop("mode"), "settings.apply.mode: missing"),
    "settings-path": (lambda d: d["settings"]["state"].pop("path"), "settings.state.path: missing"),
    "float-version": (lambda d: d.update(formatVersion=1.0), "plan formatVersion 1.0 is not one"),
    # the rows `render` writes the tree from, their targets unchecked: an internal error on gpus of
    # "two", and a namespace "../x", an image with a space and maxNodes -5 written into the tree
    "placement-target": (lambda d: d["placements"][0]["target"].update(gpus="two"),
                         "placements[0].target.gpus: input should be a valid integer, got 'two'"),
    "placement-namespace": (lambda d: d["placements"][0]["target"]["kubernetes"].update(namespace="../x"),
                            "placements[0].target.kubernetes: namespace '../x' is no Kubernetes namespace"),
    "placement-image": (lambda d: d["placements"][0]["target"].update(image="reg/chat:1 --privileged"),
                        "placements[0].target.image: 'reg/chat:1 --privileged' is no image reference"),
    "placement-model": (lambda d: d["placements"][0]["target"].update(model="zzz"),
                        "placements[0] is of model 'chat', but its target.model is 'zzz'"),
    "pool-target": (lambda d: next(p for p in d["pools"] if p.get("target"))["target"].update(maxNodes=-5),
                    ".target.maxNodes: input should be greater than or equal to 0, got -5"),
    "target-version": (lambda d: d["changes"][1]["target"].update(version="1`\n| x"),
                       "changes[1].target.version: '1`\\n| x' is no version"),
}


@pytest.mark.parametrize("kind", ["version", "truncated", "not-json", "other-json", "missing", "infinity", *TAMPERED])
def test_bad_plan_file_is_a_clear_error(env: Env, capsys: pytest.CaptureFixture[str], kind: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(env.root)  # a plan without settings was applied to the default state path, here
    path = env.root / "plan.json"
    plan_json(capsys, env, path)
    text = path.read_text()
    expected = {
        **{k: why for k, (_, why) in TAMPERED.items()},
        "infinity": "not a plan file (Infinity is no JSON number); re-plan",
        "version": "formatVersion 99",
        "truncated": "not a plan file (invalid JSON",
        "not-json": "not a plan file",
        "other-json": "not a plan file (no formatVersion); create one with `placer plan FLEET -o PLAN`",
        "missing": "no such plan file",
    }[kind]
    if kind == "version":
        data = json.loads(text)
        data["formatVersion"] = 99
        path.write_text(json.dumps(data))
    elif kind == "truncated":
        path.write_text(text[: len(text) // 2])
    elif kind == "not-json":
        path.write_text("formatVersion: 1\n")
    elif kind in TAMPERED:
        data = json.loads(text)
        TAMPERED[kind][0](data)
        path.write_text(json.dumps(data))
    elif kind == "infinity":
        data = json.loads(text)
        data["cost"]["totalUsdPerHour"] = "INF"
        path.write_text(json.dumps(data).replace('"INF"', "Infinity"))
    elif kind == "other-json":  # the state file, say, given where the plan belongs
        path.write_text(json.dumps({"lineage": "x", "serial": 3, "placements": []}))
    else:
        path.unlink()

    tree = env.root / "tree"
    for command in (["apply"], ["show"], ["show", "--markdown"], ["render", "--out", str(tree)]):
        code, _, stderr = placer(capsys, *command, str(path))
        assert code == 1
        assert expected in " ".join(stderr.split()) and str(path) in stderr
        assert "internal error" not in stderr
    assert not env.state.exists() and not (env.root / ".placer").exists()
    assert lh.tree(env.deploy) == {} and not tree.exists()


def test_an_apply_killed_after_its_last_change_is_finished_by_the_next(env: Env,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Killed after its last change was recorded, before the phase's kustomization and the final
    write: the state said "in the middle of an apply" for good, and the GitOps tree's kustomization
    never listed the new manifests, since the re-plan has no changes and the re-apply did nothing."""
    plan_and_apply(capsys, env)
    kust = sorted(env.deploy.rglob("kustomization.yaml"))
    assert kust
    listed = {k: k.read_text() for k in kust}
    for k in kust:  # what the kill leaves: the manifests, no kustomization, an apply not finished
        k.unlink()
    data = env.state_json()
    data["applying"] = {"plan": "killed", "startedAt": "2026-11-28T07:00:00Z", "done": [], "bumped": True}
    env.state.write_text(json.dumps(data))
    again = env.root / "again.json"
    assert [c for c in plan_json(capsys, env, again)["changes"] if c["action"] != "no-op"] == []
    apply_ok(capsys, again)
    assert {k: k.read_text() for k in sorted(env.deploy.rglob("kustomization.yaml"))} == listed
    after = env.state_json()
    assert after.get("applying") is None and len(after["history"]) == len(data["history"]) + 1


def test_a_change_whose_journal_entry_failed_is_in_the_state_the_failed_apply_leaves(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """The first change writes the state; the rest go to the journal. When the journal's first put
    fails (S3 answered 503), the change is done but was in memory only: the fold on failure skipped
    it, and the state said it held "exactly what was done" without it."""
    plan_path = env.root / "plan.json"
    plan_json(capsys, env, plan_path)

    class Flaky(LocalBackend):
        def record(self, state: Any, entry: dict[str, Any]) -> None:
            raise OSError("S3 answered ServiceUnavailable")

    plan = load_plan(plan_path)
    todo = [c for c in plan.changes if c.action != "no-op"]
    assert len(todo) >= 2
    applier = Applier(Flaky(env.state), [GitOpsProvider(env.deploy)], parallelism=1,
                      retry=RetryPolicy(attempts=1, base_seconds=0.001))
    state = env.backend.read()
    with pytest.raises(OSError, match="ServiceUnavailable"):
        applier.run(plan, state, "flaky", None, {})
    done = env.state_json()["applying"]["done"]
    assert done == [c.address for c in sorted(todo, key=lambda c: c.phase)][:2]  # the state write, the failed put


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_apply_says_what_it_did_and_releases_the_lock(
        env: Env, capsys: pytest.CaptureFixture[str], sig: signal.Signals) -> None:
    """Ctrl-C said only "Aborted."; SIGTERM (a CI cancel, docker stop) killed the apply as SIGKILL
    does and left the lock. Both stop after the change in flight, record it, release the lock and
    say how many changes were done and that the state records them."""
    path = env.root / "plan.json"
    plan_json(capsys, env, path)
    log = env.root / "apply.log"
    with lh.cli_apply_running(path, env.deploy, log, 0.5) as proc:
        lh.wait_for_log(proc, log, lh.under_way(2), timeout_s=30)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=30)
    done = [line.split(" ", 1)[1] for line in log.read_text().splitlines() if line.startswith("done ")]
    assert proc.returncode == 1, (proc.returncode, stderr)
    assert "Traceback" not in stderr and "Aborted." not in stderr, stderr
    name = signal.Signals(sig).name
    assert f"apply interrupted ({name}) after {len(done)} of 5 change(s)" in " ".join(stderr.split()), stderr
    assert "records exactly what was done" in " ".join(stderr.split()), stderr
    assert not env.backend.lock_path.exists(), "the interrupted apply releases the lock"
    assert env.backend.read().applying["done"] == done, "the change in flight was finished and recorded"


def _edited_plan(capsys: pytest.CaptureFixture[str], env: Env) -> tuple[Path, Path]:
    """The fleet applied, then edited (chat 3 -> 9, summarize removed) and planned: the plan file, and
    where a slow apply of it logs its steps."""
    plan_and_apply(capsys, env)
    env.write(chat_rate=9000, summarize=False)
    path = env.root / "plan.json"
    plan_json(capsys, env, path)
    return path, env.root / "apply.log"


def test_the_lock_of_an_apply_that_still_runs_is_not_broken(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """The refusal of a second apply said "If that process is gone, run `placer force-unlock ...`" of an
    apply placer could see running on this host, and force-unlock broke its lock: the second apply then ran
    beside it. Both now say it runs and to wait for it (or stop it); the lock stays, and the apply ends well."""
    path, log = _edited_plan(capsys, env)
    with lh.cli_apply_running(path, env.deploy, log, 1) as proc:
        lh.wait_for_log(proc, log, lambda lines: bool(lines) and lines[0].startswith("start "))
        holder = env.backend.holder()
        assert holder is not None and holder["PID"] == proc.pid
        code, _, stderr = placer(capsys, "apply", str(env.fleet), "--auto-approve", "--now", lh.NOW)
        said = " ".join(stderr.split())
        assert code == 1 and "If that process is gone" not in said, said
        assert (f"pid {proc.pid} still runs on this host: wait for that apply to finish, then run the command again "
                f"(or stop it, `kill {proc.pid}`: it stops once the changes in flight are done") in said, said
        code, stdout, stderr = placer(capsys, "force-unlock", holder["ID"], "--state", str(env.state))
        said = " ".join(stderr.split())
        assert code == 1 and "Unlocked" not in stdout, stdout
        assert (f"the lock on {env.state} was not broken: it is held by {holder['Who']} (pid {proc.pid})") in said, said
        assert env.backend.holder() == holder
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert env.state_json()["serial"] == 2 and not env.backend.lock_path.exists()


def test_an_apply_whose_lock_was_broken_while_it_ran_never_writes_over_the_apply_that_took_it(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """An apply's lock broken while it ran (its lock file removed by hand; `placer force-unlock` did it too,
    pasted from the refusal while the apply still ran), and a second apply run: the first went on and wrote
    its serial 2 over the second's serial 3, which was lost (the state said chat 9 replicas of the cluster's
    5, and its serial went back). It now stops at its next record, writes nothing, and says the state may
    not record what it did."""
    path, log = _edited_plan(capsys, env)
    with lh.cli_apply_running(path, env.deploy, log, 4) as proc:
        lh.wait_for_log(proc, log, lh.under_way(1))  # its first change made and recorded (serial 2), the next under way
        env.backend.lock_path.unlink()
        env.write(chat_rate=5000, summarize=False)
        code, stdout, stderr = placer(capsys, "apply", str(env.fleet), "--auto-approve", "--now", lh.NOW)
        assert code == 0 and "state serial 3" in stdout, stderr
        taken = env.state.read_text()
        assert proc.poll() is None, "the first apply must still be running"
        _, stderr = proc.communicate(timeout=60)
    said = " ".join(stderr.split())
    assert proc.returncode == 1, said
    assert env.state.read_text() == taken, "the apply whose lock was broken wrote over the one that took it"
    assert env.state_json()["serial"] == 3
    assert (f"{env.state}: the state changed under you: re-plan (another writer replaced it after this apply read it, "
            "now serial 3, while this apply held the lock") in said, said
    assert "may not record the 2 change(s) this apply made" in said and "`placer plan --refresh`" in said, said
    assert not env.backend.lock_path.exists()


def test_ctrl_c_starts_no_queued_change(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """Interrupted during its first deployment, an apply still started every queued change of the
    phase (about 6 s to exit); as after a failure, nothing new starts, and what ran is recorded."""
    plan_path = env.root / "plan.json"
    plan_json(capsys, env, plan_path)
    started: list[str] = []

    class Interrupted(GitOpsProvider):
        def apply(self, change: Any) -> None:
            started.append(change.address)
            if change.kind == "deployment" and sum(a.startswith("deployment/") for a in started) == 1:
                # Ctrl-C a moment later, on the main thread, which waits on this change meanwhile
                threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()
                time.sleep(0.5)
            super().apply(change)

    plan = load_plan(plan_path)
    deployments = [c for c in plan.changes if c.action != "no-op" and c.kind == "deployment"]
    applier = Applier(env.backend, [Interrupted(env.deploy)], parallelism=1, retry=RetryPolicy(base_seconds=0.001))
    with pytest.raises(KeyboardInterrupt), env.backend.lock("apply"):
        applier.run(plan, env.backend.read(), "interrupted", None, {})
    first = next(a for a in started if a.startswith("deployment/"))
    assert len(deployments) >= 2 and [a for a in started if a.startswith("deployment/")] == [first]
    assert first in env.state_json()["applying"]["done"]


def test_ctrl_c_while_a_worker_thread_starts_waits_for_its_change(
        env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C inside ``submit``, after the worker thread started and before the pool counted it:
    the change that thread took ran on after the apply had returned (and wrote the state then)."""
    plan_path = env.root / "plan.json"
    plan_json(capsys, env, plan_path)
    finished: list[str] = []

    class Slow(GitOpsProvider):
        def apply(self, change: Any) -> None:
            time.sleep(0.5)
            super().apply(change)
            finished.append(change.address)

    real_start = threading.Thread.start

    workers: list[threading.Thread] = []

    def start_then_interrupt(thread: threading.Thread) -> None:
        real_start(thread)
        if getattr(thread, "_target", None) is futures_thread._worker:  # a pool's worker
            workers.append(thread)
            time.sleep(0.1)  # the worker has taken the first change
            raise KeyboardInterrupt

    plan = load_plan(plan_path)
    first = next(c for c in sorted(plan.changes, key=lambda c: c.phase) if c.action != "no-op")
    applier = Applier(env.backend, [Slow(env.deploy)], parallelism=1, retry=RetryPolicy(base_seconds=0.001))
    monkeypatch.setattr(threading.Thread, "start", start_then_interrupt)
    try:
        with pytest.raises(KeyboardInterrupt), env.backend.lock("apply"):
            applier.run(plan, env.backend.read(), "interrupted", None, {})
        assert finished == [first.address], "the apply returned while its worker still ran a change"
    finally:
        monkeypatch.undo()
        for thread in workers:
            thread.join(timeout=10)
    assert finished == [first.address]


def test_a_deployment_that_never_became_healthy_is_recorded_not_healthy_so_its_old_copy_stays(
        tmp_path: Path) -> None:
    """Make before break across a failed apply: asr moves from pa to pb, and pb never becomes
    healthy. pb was recorded as done before its health wait, so the re-plan held only "delete
    asr@pa", and the re-apply deleted the only healthy copy. Recorded as made but not healthy, pb
    is applied again in the next plan, whose health wait comes before any delete."""
    from placer.planfile import Change, Plan
    from placer.state import State

    class Cluster:
        name, waits = "kubernetes", True

        def __init__(self) -> None:
            self.running = {"asr@pa": 3}

        def handles(self, change: Change) -> bool:
            return True

        def apply(self, change: Change) -> None:
            key = change.address.split("/", 1)[1]
            if change.after is None:
                self.running.pop(key, None)
            else:
                self.running[key] = change.after["replicas"]

        def observe(self, change: Change) -> dict[str, Any] | None:
            n = self.running.get(change.address.split("/", 1)[1])
            return None if n is None else {"replicas": n}

        def wait_healthy(self, change: Change, timeout_s: float) -> None:
            raise ApplyError(f"{change.address} is not rolled out after {timeout_s:g}s: 0 ready")

    backend = LocalBackend(tmp_path / "state.json")
    backend.write(State(lineage="l", serial=1, deployments={"asr@pa": {"replicas": 3, "target": {}}}))
    plan = Plan("now", "sha256:x", "l", 1, {}, (
        Change("deployment/asr@pb", "create", 2, None, {"replicas": 3}),
        Change("deployment/asr@pa", "delete", 3, {"replicas": 3}, None)))
    cluster = Cluster()
    applier = Applier(backend, [cluster], parallelism=1, health_timeout_s=1,
                      retry=RetryPolicy(attempts=1, base_seconds=0.001))
    with backend.lock("apply"), pytest.raises(ApplyError, match="not rolled out"):
        applier.run(plan, backend.read(), "p", None, {})
    assert cluster.running == {"asr@pa": 3, "asr@pb": 3}  # nothing deleted
    state = backend.read()
    assert state.replicas() == {("asr", "pa"): 3, ("asr", "pb"): 3}  # what runs
    assert state.deployments["asr@pb"]["healthy"] is False and "healthy" not in state.deployments["asr@pa"]


def test_a_deployment_left_not_healthy_is_applied_again_in_phase_2_whatever_its_count_does(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """The last apply made rerank@dc1-a100 with 3 replicas, and its health wait did not pass; the fleet
    needs 2. A scale-down goes to phase 3, where nothing waits, and its record dropped the mark: the
    plan applies it again in phase 2, waited healthy. The gitops apply waits for nothing (health is the
    pipeline's once the tree is merged): it records the change as made, and healthy."""
    plan_and_apply(capsys, env)
    state = env.state_json()
    state["deployments"]["rerank@dc1-a100"].update(replicas=3, healthy=False)
    env.state.write_text(json.dumps(state))
    again = env.root / "again.json"
    changes = [c for c in plan_json(capsys, env, again)["changes"] if c["action"] != "no-op"]
    assert [(c["address"], c["action"], c["phase"], c["before"], c["after"]) for c in changes] == [
        ("deployment/rerank@dc1-a100", "update", 2, {"replicas": 3, "healthy": False},
         {"replicas": 2, "healthy": True})]
    assert changes[0]["reasons"][0].startswith("the last apply made it, but it did not become healthy")
    assert not Applier(env.backend, [GitOpsProvider(env.deploy)])._waits(planfile.Change.from_json(changes[0]))
    apply_ok(capsys, again)
    entry = env.state_json()["deployments"]["rerank@dc1-a100"]
    assert entry["replicas"] == 2 and "healthy" not in entry
    assert [c for c in plan_json(capsys, env)["changes"] if c["action"] != "no-op"] == []


def test_a_health_wait_retries_an_error_within_one_deadline(tmp_path: Path) -> None:
    """healthTimeoutSeconds bounds the wait and its retries together: each retry gets what is left
    (each got the whole timeout again, six times over)."""
    from placer.planfile import Change, Plan

    now = [0.0]

    class Cluster:
        name, waits = "kubernetes", True

        def __init__(self) -> None:
            self.given: list[float] = []

        def handles(self, change: Change) -> bool:
            return True

        def apply(self, change: Change) -> None:
            pass

        def observe(self, change: Change) -> dict[str, Any] | None:
            return {"replicas": 3}

        def wait_healthy(self, change: Change, timeout_s: float) -> None:
            self.given.append(timeout_s)
            now[0] += 40  # each try fails after 40 s
            raise ProviderError(f"{change.address}: HTTP 503 while waiting", retryable=True)

    backend = LocalBackend(tmp_path / "state.json")
    cluster = Cluster()
    applier = Applier(backend, [cluster], parallelism=1, health_timeout_s=100,
                      retry=RetryPolicy(base_seconds=0.001), sleep=lambda s: now.__setitem__(0, now[0] + s),
                      clock=lambda: now[0])
    plan = Plan("now", "sha256:x", None, 0, {}, (Change("deployment/asr@pb", "create", 2, None, {"replicas": 3}),))
    with backend.lock("apply"), pytest.raises(ProviderError, match="HTTP 503"):
        applier.run(plan, backend.read(), "p", None, {})
    assert cluster.given == [100, pytest.approx(60, abs=0.05), pytest.approx(20, abs=0.05)]
    assert now[0] < 121


def test_a_failed_wait_ends_the_others_of_its_phase_at_once_and_leaves_no_thread(tmp_path: Path) -> None:
    """Four deployments waited for, three at a time: bad's rollout fails at once, slow's pods never
    come up (its wait sleeps between polls in ``providers.base.pause``), and throttled's reads are
    answered 429 with Retry-After 60 (its wait is in the apply's retry backoff). The apply raised bad's
    failure only once the other two had waited out the 120 s timeout. It now ends them at once: bad's
    failure alone is raised (the waits it stopped did not fail), no worker thread runs on, the
    provider's ``stop`` is clear again, and late, not started yet, is not waited for."""
    from placer.planfile import Change, Plan

    class Cluster:
        name, waits = "kubernetes", True

        def __init__(self) -> None:
            self.stop = threading.Event()
            self.started: list[str] = []

        def handles(self, change: Change) -> bool:
            return True

        def apply(self, change: Change) -> None:
            pass

        def observe(self, change: Change) -> dict[str, Any] | None:
            return change.after

        def wait_healthy(self, change: Change, timeout_s: float) -> None:
            from providers.base import pause

            self.started.append(change.address)
            if change.address == "deployment/bad@p":
                time.sleep(0.3)  # the others are under way
                raise ProviderError(f"{change.address}: the rollout is stuck (ProgressDeadlineExceeded)")
            if change.address == "deployment/throttled@p":
                raise ProviderError(f"{change.address}: HTTP 429", retryable=True, retry_after=60.0)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                pause(self.stop, 1.0, change.address, "its rollout")
            raise ProviderError(f"{change.address}: not rolled out after {timeout_s:g}s", retryable=True)

    backend = LocalBackend(tmp_path / "state.json")
    cluster = Cluster()
    applier = Applier(backend, [cluster], parallelism=3, health_timeout_s=120,
                      retry=RetryPolicy(attempts=3, base_seconds=0.001))
    names = ("slow", "throttled", "bad", "late")
    plan = Plan("now", "sha256:x", None, 0, {}, tuple(
        Change(f"deployment/{n}@p", "create", 2, None, {"replicas": 1}) for n in names))
    started = time.monotonic()
    with backend.lock("apply"), pytest.raises(ProviderError, match="bad@p: the rollout is stuck"):
        applier.run(plan, backend.read(), "p", None, {})
    assert time.monotonic() - started < 30, "the other waits ran to their timeout"
    assert applier.also_failed == [] and applier.stopped_waits == {"deployment/slow@p", "deployment/throttled@p"}
    assert "deployment/late@p" not in cluster.started and "deployment/late@p" not in applier.waited
    assert not [t for t in threading.enumerate() if t.name.startswith("placer-apply-")]
    assert not cluster.stop.is_set()
    state = backend.read()
    assert {k: v["healthy"] for k, v in state.deployments.items()} == {n + "@p": False for n in names}


def final_write_fails(monkeypatch: pytest.MonkeyPatch, env: Env, message: str) -> None:
    """The CLI's state backend fails (OSError ``message``) the write that marks an apply finished."""

    class Full(LocalBackend):
        def write(self, state: Any) -> None:
            if state.applying is None:
                raise OSError(message)
            super().write(state)

    monkeypatch.setattr(placer_cli, "backend_from", lambda cfg, path=None, progress=None: Full(env.state))


def test_an_apply_whose_last_state_write_fails_says_every_change_was_made(
        env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The write that marks an apply finished failed (S3 answered 503): the error said "apply failed
    after 0 of 5 change(s)" of an apply that had made and recorded all 5, its period doubled."""
    plan_path = env.root / "plan.json"
    plan_json(capsys, env, plan_path)

    final_write_fails(monkeypatch, env, "cannot write the state: Please reduce your request rate.")
    code, _, stderr = placer(capsys, "apply", str(plan_path))
    assert code == 1
    message = " ".join(stderr.split())
    assert "all 5 change(s) were made and recorded, but the state write that marks the apply finished failed: " \
           "cannot write the state: Please reduce your request rate. The state" in message
    assert "it should find none left" in message and "..." not in message and ".." not in message
    assert len(env.backend.read().applying["done"]) == 5  # the journal holds them all

    monkeypatch.undo()
    again = env.root / "again.json"
    assert [c for c in plan_json(capsys, env, again)["changes"] if c["action"] != "no-op"] == []
    apply_ok(capsys, again)
    assert env.state_json()["applying"] is None


def test_an_apply_whose_last_state_write_fails_names_the_health_waits_it_did_not_record(
        env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Deployments whose health wait passed are marked healthy in the state's final write only: where
    that write failed, the error said the next plan "should find none left", and the plan applied
    each of them again (healthy false -> true)."""
    plan_path = env.root / "plan.json"
    plan_json(capsys, env, plan_path)

    final_write_fails(monkeypatch, env, "cannot write the state: No space left on device")

    class Waiting(GitOpsProvider):
        waits = True

        def wait_healthy(self, change: Any, timeout_s: float) -> None:
            return None

    monkeypatch.setattr(placer_cli, "providers_for", lambda cfg, directory_override=None, plan=None: [Waiting(env.deploy)])
    code, _, stderr = placer(capsys, "apply", str(plan_path))
    message = " ".join(stderr.split())
    assert code == 1 and "all 5 change(s) were made and recorded" in message, message
    # the deployments, and the pool phase 1 grew, whose wait for its nodes passed
    waited = sorted(c["address"] for c in json.loads(plan_path.read_text())["changes"]
                    if c["address"].startswith("deployment/") or c["action"] == "create")
    assert (f"(it should find none left but {', '.join(waited)} (their health wait passed, which that write was "
            "to record: the plan applies them again and waits for them))") in message, message

    monkeypatch.setattr(placer_cli, "backend_from", lambda cfg, path=None, progress=None: LocalBackend(env.state))
    again = env.root / "again.json"
    assert sorted(c["address"] for c in plan_json(capsys, env, again)["changes"] if c["action"] != "no-op") == waited


def test_a_scale_down_that_makes_room_is_recorded_once_made_not_once_healthy(tmp_path: Path) -> None:
    """A phase-2 scale-down that makes room for make before break (``diff._room_first``: 3 -> 2
    before b's replicas come) was recorded only once its health wait passed: a wait that failed
    left the state at 3 while 2 ran, and the next plan of the old fleet said "No changes" with a
    replica short. It is recorded once made, as phase 3's scale-downs are; a scale-up still waits."""

    class Waits:
        name, waits = "kubernetes", True

        def handles(self, change: planfile.Change) -> bool:
            return True

    applier = Applier(LocalBackend(tmp_path / "state.json"), [Waits()])

    def change(before: dict[str, Any] | None, after: dict[str, Any] | None) -> planfile.Change:
        return planfile.Change("deployment/a@p", "update" if before else "create", 2, before, after, (), {})

    assert not applier._waits(change({"replicas": 3}, {"replicas": 2}))  # room first: recorded once made
    assert applier._waits(change({"replicas": 2}, {"replicas": 3}))  # a scale-up: once healthy
    assert applier._waits(change(None, {"replicas": 2}))
    assert applier._waits(change({"replicas": 3, "image": "a:1"}, {"replicas": 2, "image": "a:2"}))  # a rollout
    # the last apply left it not healthy: applied again, and waited for, whatever its count does
    assert applier._waits(change({"replicas": 3, "healthy": False}, {"replicas": 2, "healthy": True}))


def test_a_shrink_whose_resize_wait_was_stopped_is_said_a_shrink_by_the_next_plan(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A phase-4 shrink of a GCP pool (3 -> 1 nodes) whose resize operation wait was stopped (another
    change failed, Ctrl-C) is recorded at the size asked for, not healthy (``_sent_unconfirmed``). The
    next plan re-checked it as "the last apply grew it, but did not see its nodes come up"; it says
    the last apply shrank it, as `refresh` does, and the state keeps that through a second stopped
    wait at the same size. A pool grown the same way is still said grown."""
    from placer.apply import ApplyReport
    from placer.diff import POOL_UNHEALTHY, POOL_UNSHRUNK, pool_target
    from placer.refresh import unready_pools
    from placer.state import State

    gcp = {"gcp": {"project": "acme", "zone": "europe-west4-a", "instanceGroupManager": "grp"}}
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    (fleet / "fleet.yaml").write_text(yaml.safe_dump_all([
        location("a"), pool("p", "a", provider="gcp", count=None, min_nodes=0, max_nodes=4, target=gcp),
        inference("m", [{"location": "a", "rate": 100}]),
        doc("Settings", "s", {"apply": {"mode": "gitops", "directory": str(tmp_path / "deploy")}})]))
    target = pool_target(load_fleet(str(fleet)).pools["p"])
    backend = LocalBackend(tmp_path / "state.json")

    class StoppedResize:  # GCP has yet to carry the resize out: the group is at its old size
        name, waits = "gcp", True

        def __init__(self, nodes: int) -> None:
            self.nodes = nodes

        def handles(self, change: planfile.Change) -> bool:
            return True

        def observe(self, change: planfile.Change) -> dict[str, Any]:
            return {"nodes": self.nodes}

    def stopped_resize(recorded: dict[str, Any], now: int, seen: int) -> dict[str, Any]:
        """The state ``_sent_unconfirmed`` leaves of a change from ``recorded`` (as the plan's ``before``)
        to ``now`` nodes, the group still at ``seen``."""
        state = State(pools={"p": {**recorded, "target": target}})
        before = {k: v for k, v in recorded.items() if k in ("nodes", "healthy")}
        change = planfile.Change("pool/p", "update", 4 if now < before["nodes"] else 1, before, {"nodes": now},
                                 (), target)
        applier = Applier(backend, [StoppedResize(seen)])
        applier._sent_unconfirmed(state, change, ApplyReport(), applier.providers[0],
                                  ProviderError("the apply stopped waiting for its operation"))
        return backend.read().pools["p"]

    def reasons() -> list[str]:
        code, out, err = placer(capsys, "plan", str(fleet), "--json", "--state", str(tmp_path / "state.json"))
        assert code == 0, err
        return [r for c in json.loads(out)["changes"] if c["address"] == "pool/p" for r in c["reasons"]]

    entry = stopped_resize({"nodes": 3}, 1, seen=3)
    assert entry == {"nodes": 1, "target": target, "healthy": False, "shrank": True}, entry
    assert POOL_UNSHRUNK in reasons() and POOL_UNHEALTHY not in reasons()
    assert unready_pools(backend.read()) == ["pool/p: the last apply shrank it to 1 nodes, but did not see the group "
                                             "reach that size; the next plan sizes it again and waits for it"]
    # that plan's change, the same size again, stopped the same way: still a shrink
    again = stopped_resize(entry, 1, seen=3)
    assert again.get("shrank") is True and POOL_UNSHRUNK in reasons()
    # a grow whose nodes were not seen come up is said grown, as before
    grown = stopped_resize({"nodes": 0}, 1, seen=0)
    assert grown == {"nodes": 1, "target": target, "healthy": False}, grown
    assert POOL_UNHEALTHY in reasons() and POOL_UNSHRUNK not in reasons()


def test_an_interrupted_apply_ends_a_health_wait_at_once() -> None:
    """SIGTERM 1 s into a rollout's health wait stopped the apply only at the health timeout (30 s
    of a 30 s wait; 600 s by default), past `docker stop`'s grace, whose SIGKILL left the lock. The
    apply sets each provider's ``stop`` and ``providers.base.pause`` ends the wait at once."""
    from providers.base import pause

    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(ProviderError, match="deployment/a@p: stopped waiting for a to roll out: the apply was "
                                            "interrupted, or another change of its phase failed") as caught:
        pause(stop, 60.0, "deployment/a@p", "a to roll out")
    assert time.monotonic() - started < 10 and not caught.value.retryable and caught.value.stopped
    pause(threading.Event(), 0.01, "deployment/a@p", "a to roll out")  # not stopped: a plain sleep


def test_an_interrupt_ends_a_retrys_wait_and_its_retries(tmp_path: Path) -> None:
    """A server answering 429 with Retry-After: 60 kept an interrupted apply sleeping 60 s a try, 6
    tries, past `docker stop`'s grace, whose SIGKILL left the lock: the wait ends on the interrupt,
    and no retry follows it."""
    from placer.apply import ApplyReport

    applier = Applier(LocalBackend(tmp_path / "state.json"), [])
    calls: list[float] = []

    def throttled() -> None:
        calls.append(time.monotonic())
        raise ProviderError("deployment/a@p: 429 Too Many Requests", retryable=True, retry_after=60.0)

    change = planfile.Change("deployment/a@p", "create", 2, None, {"replicas": 1}, (), {})
    threading.Timer(0.2, applier._stopping.set).start()  # as an interrupt sets it (``Applier._parallel``)
    started = time.monotonic()
    with pytest.raises(ProviderError, match="429"):
        applier._with_retry(change, "apply", throttled, ApplyReport(serial=0))
    assert time.monotonic() - started < 10 and len(calls) == 1
