"""The reasons a plan gives for its changes, through the CLI: a fleet applied in gitops mode, then
edited, then planned; each reason is checked against what changed, never guessed from whether a
count went up or down."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from placer import cli as placer_cli
from tests.fleetkit import doc, inference, location, policy, pool, training

NOW = "2026-11-28T00:00:00Z"


class Fleet:
    """A fleet folder in ``root`` with its state file and GitOps directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "fleet"
        self.dir.mkdir()

    def write(self, *docs: dict[str, Any]) -> None:
        settings = doc("Settings", "s", {"state": {"path": str(self.root / "state.json")},
                                         "apply": {"mode": "gitops", "directory": str(self.root / "deploy")},
                                         "solver": {"timeLimitSeconds": 20, "relativeGap": 0}})
        (self.dir / "fleet.yaml").write_text(yaml.safe_dump_all([location("a"), *docs, settings], sort_keys=False))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    code = placer_cli.main(list(args))
    out, err = capsys.readouterr()
    assert code in (0, 2), err
    assert "Traceback" not in err, err
    return out


def replan(capsys: pytest.CaptureFixture[str], fleet: Fleet, first: list[dict[str, Any]],
           then: list[dict[str, Any]]) -> tuple[dict[str, list[str]], str, str]:
    """Apply ``first``, plan ``then``: each change's reasons by address, the plan's text and its
    pull-request markdown."""
    fleet.write(*first)
    run(capsys, "apply", str(fleet.dir), "--auto-approve", "--now", NOW)
    fleet.write(*then)
    saved = fleet.root / "plan.json"
    text = run(capsys, "plan", str(fleet.dir), "-o", str(saved), "--now", NOW)
    plan = json.loads(saved.read_text())
    markdown = run(capsys, "show", str(saved), "--markdown")
    return {c["address"]: c["reasons"] for c in plan["changes"]}, text, markdown


def two_domains() -> list[dict[str, Any]]:
    """pa (2 USD/GPU-h, domain fa) and pb (1 USD/GPU-h, domain fb); m1 and m2 on pb, the cheaper."""
    return [pool("pa", "a", usd=2, failureDomain="fa"), pool("pb", "a", usd=1, failureDomain="fb"),
            inference("m1", [{"location": "a", "rate": 300}]), inference("m2", [{"location": "a", "rate": 200}])]


@pytest.mark.parametrize("penalty", [None, 5.0])
def test_a_change_a_new_policy_forces_names_the_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     penalty: float | None) -> None:
    """m2 spread over two failure domains moves a replica from pb to the dearer pa (compute up from
    2 to 3 USD/h): its create said 'capacity for demand' and its scale-down 'cheaper placement',
    though demand never changed and the move costs more. Both name the spread policy, as its own
    check describes what the running placement breaks (a preferred one: with the penalty saved)."""
    base = two_domains()
    reasons, text, markdown = replan(capsys, Fleet(tmp_path), base, [
        *base, policy("no-pb", {"denyPools": {}}, models={"names": ["m1"]}, pools={"names": ["pb"]}),
        policy("spr", {"spread": {"minFailureDomains": 2}}, models={"names": ["m2"]}, penalty=penalty)])
    spread = ("required policy spr, which the running placement breaks: m2: 1 failure domain(s) of 2" if penalty is None
              else "preferred policy spr, whose penalty this lowers by 5.00 USD/h: m2: 1 failure domain(s) of 2")
    assert reasons["deployment/m2@pa"] == [spread]
    assert reasons["deployment/m2@pb"] == [spread]
    assert reasons["deployment/m1@pa"] == ["required policy no-pb, which the running placement breaks: m1: 3 on pb"]
    assert reasons["deployment/m1@pb"] == ["no longer eligible: policy: no-pb: pb is among the pools this policy names"]
    assert f"~ deployment/m2@pb  [phase 3] replicas 2 -> 1  # {spread}" in text
    assert f"~ deployment/m2@pb [phase 3] replicas 2 -> 1  # {spread}" in markdown
    assert "cheaper placement" not in text + markdown and "capacity for demand" not in text + markdown


def test_a_policy_two_models_moves_keep_together_is_named_for_both_and_no_other(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Training t runs on A100s only, so a new separateWorkloads on pb moves both inference models
    off it, neither enough alone: each names the policy. m3, selected too, grows on pa for its own
    demand: the policy is no reason of its."""
    both = {"A100-80GB": 100, "H100-80GB": 100}
    base = [pool("pa", "a", gpu="H100-80GB", usd=2), pool("pb", "a", usd=1),
            training("t", 1, gpus=1, gpuTypes=["A100-80GB"]),
            inference("m1", [{"location": "a", "rate": 100}], throughput=both),
            inference("m2", [{"location": "a", "rate": 100}], throughput=both)]
    reasons, _, _ = replan(capsys, Fleet(tmp_path), [
        *base, inference("m3", [{"location": "a", "rate": 100}], throughput={"H100-80GB": 100})], [
        *base, inference("m3", [{"location": "a", "rate": 200}], throughput={"H100-80GB": 100}),
        policy("apart", {"separateWorkloads": ["training", "inference"]}, pools={"names": ["pb"]})])
    apart = "required policy apart, which the running placement breaks: pb hosts inference and training"
    assert reasons == {"deployment/m1@pa": [apart], "deployment/m1@pb": [apart], "deployment/m2@pa": [apart],
                       "deployment/m2@pb": [apart], "deployment/m3@pa": ["demand changed 100 -> 200"]}
