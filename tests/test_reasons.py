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
from placer.candidates import find_candidates
from placer.diff import diff
from placer.placement import Placement, Route
from placer.state import State
from tests.fleetkit import RULES, doc, inference, link, location, policy, pool, training
from tests.fleetkit import fleet as built

NOW = "2026-11-28T00:00:00Z"


class Fleet:
    """A fleet folder in ``root`` with its state file and GitOps directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "fleet"
        self.dir.mkdir()

    def write(self, *docs: dict[str, Any], objective: dict[str, float] | None = None) -> None:
        settings = doc("Settings", "s", {"state": {"path": str(self.root / "state.json")},
                                         "apply": {"mode": "gitops", "directory": str(self.root / "deploy")},
                                         "solver": {"timeLimitSeconds": 20, "relativeGap": 0},
                                         "objective": objective or {}})
        (self.dir / "fleet.yaml").write_text(yaml.safe_dump_all([location("a"), *docs, settings], sort_keys=False))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    code = placer_cli.main(list(args))
    out, err = capsys.readouterr()
    assert code in (0, 2), err
    assert "Traceback" not in err, err
    return out


def replan(capsys: pytest.CaptureFixture[str], fleet: Fleet, first: list[dict[str, Any]],
           then: list[dict[str, Any]], objective: dict[str, float] | None = None
           ) -> tuple[dict[str, list[str]], str, str]:
    """Apply ``first``, plan ``then`` (with ``objective``): each change's reasons by address, the
    plan's text and its pull-request markdown."""
    fleet.write(*first)
    run(capsys, "apply", str(fleet.dir), "--auto-approve", "--now", NOW)
    fleet.write(*then, objective=objective)
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


def m(**spec: Any) -> dict[str, Any]:
    return inference("m", [{"location": "a", "rate": 300}], **spec)


def at(a: int, b: int) -> dict[str, Any]:
    """m's demand at a and at b, each within 10 ms."""
    return inference("m", [{"location": "a", "rate": a, "latencySloMs": 10}, {"location": "b", "rate": b, "latencySloMs": 10}])


def n(rate: int) -> dict[str, Any]:
    """n, which only H100s serve."""
    return inference("n", [{"location": "a", "rate": rate}], throughput={"H100-80GB": 100})


def mi(*demand: dict[str, Any]) -> dict[str, Any]:
    """m, 100 units/s at a, on an A100 or an H100 alike."""
    return inference("m", [{"location": "a", "rate": 100}, *demand], throughput={"A100-80GB": 100, "H100-80GB": 100})


PA, PB = pool("pa", "a", usd=2), pool("pb", "a", usd=1)
ROOM = [pool("pa", "a", gpu="H100-80GB", usd=2), PB,
        inference("m1", [{"location": "a", "rate": 400}], throughput={"A100-80GB": 100, "H100-80GB": 100})]
HEADROOM = [pool("pa", "a", gpu="H100-80GB", usd=2), PB,
            inference("m1", [{"location": "a", "rate": 200}], throughput={"A100-80GB": 100, "H100-80GB": 100}),
            policy("keep-free", {"headroom": {"fraction": 0.25}}, pools={"names": ["pb"]})]
KEEP_FREE = ("room on pb for m2 (kept there, its replicas break required policy keep-free: pb: 7 of 8 GPUs used, "
             "keeps < 25% free)")
NODES = [pool("pa", "a", per_node=1, min_nodes=0, max_nodes=4, provider="aws"),
         pool("pb", "a", gpu="H100-80GB", usd=2, min_nodes=0, max_nodes=2, provider="aws"),
         inference("m", [{"location": "a", "rate": 100}], throughput={"A100-80GB": 100, "H100-80GB": 100})]
FEWER = ("pa shrinks 1 -> 0 nodes (1.00 USD/h less), too few to keep its replicas there; it moves onto GPUs pb "
         "runs already, its compute 1.00 -> 2.00 USD/h")
IDLE = [pool("pf", "a"), pool("pe", "a", gpu="H100-80GB", usd=2, per_node=2, min_nodes=0, max_nodes=2, provider="aws")]
IDLE_GPU = ("the fleet's compute 1.00 USD/h less than with it kept as it ran: it frees 1 GPU of pf and uses idle GPUs "
            "of the nodes pe runs anyway; its own compute 1.00 -> 2.00 USD/h")
# pa at a and pb at b, 50 ms apart: each serves only its own location's demand within 10 ms
APART = [location("b"), link("a", "b", 50), PA, pool("pb", "b", usd=2)]
DEAR_B = pool("pb", "b", usd=4)
SHIFT = "capacity for demand: the replicas it may keep serve 200 of its 300 within its latency SLOs"
FAR = [location("c"), link("a", "c", 50)]  # no pool within 5 ms of c
NEAR = [location("b"), link("a", "b", 20), pool("pa", "a", usd=1), pool("pb", "b", usd=2),
        inference("m", [{"location": "b", "rate": 300}])]
LATENCY = ("its latency 5.70 USD/h less than with it kept as it ran: latency of its demand from b 6.00 -> 0.30 USD/h "
           "(20 -> 1 ms); its compute 3.00 -> 6.00 USD/h")
EGRESS = [location("b"), link("a", "b", 20, egress=0.02), pool("pa", "a"), pool("pb", "b", usd=1.5)]
DATA = ("its egress 10.00 USD/h less than with it kept as it ran: egress from its data in b 10.00 -> 0.00 USD/h; "
        "its compute 3.00 -> 4.50 USD/h")
IDLE_FAR = [location("b"), link("a", "b", 10), pool("pf", "a"),
            pool("pe", "b", gpu="H100-80GB", usd=2, per_node=2, min_nodes=0, max_nodes=2, provider="aws")]
IDLE_FAR_GPU = ("the fleet's compute 1.00 USD/h less than with it kept as it ran: it frees 1 GPU of pf and uses idle "
                "GPUs of the nodes pe runs anyway; its latency 0.05 -> 0.50 USD/h, its own compute 1.00 -> 2.00 USD/h")

# scenario -> (fleet applied, fleet planned, objective, the changes' reasons)
SCENARIOS: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, float] | None,
                           dict[str, list[str]]]] = {
    # pb's price rises: the move is cheaper, priced at the fleet's prices (the create said 'capacity for demand')
    "price": ([PA, PB, m()], [PA, pool("pb", "a", usd=3), m()], None, {
        "deployment/m@pa": ["cheaper placement: its compute 9.00 -> 6.00 USD/h"],
        "deployment/m@pb": ["cheaper placement: its compute 9.00 -> 6.00 USD/h"]}),
    # and with demand a little lower, as many replicas move: the price, not the demand (it said 'demand changed')
    "price, demand": ([PA, PB, m()], [PA, pool("pb", "a", usd=3), inference("m", [{"location": "a", "rate": 290}])],
                      None, {"deployment/m@pa": ["cheaper placement: its compute 9.00 -> 6.00 USD/h"],
                             "deployment/m@pb": ["cheaper placement: its compute 9.00 -> 6.00 USD/h"]}),
    # the model's own counts (they said 'capacity for demand', and 'cheaper placement' for a lower maxReplicas)
    "minReplicas": ([PA, PB, m()], [PA, PB, m(minReplicas=4)], None, {
        "deployment/m@pb": ["minReplicas 4: it runs 3"]}),
    "maxReplicas": ([PA, PB, m()], [PA, PB, m(maxReplicas=2)], None, {
        "deployment/m@pb": ["maxReplicas 2: it runs 3"]}),
    "replicas": ([PA, PB, training("t", 1, gpus=1)], [PA, PB, training("t", 2, gpus=1)], None, {
        "deployment/t@pb": ["replicas 2: it runs 1"]}),
    # a throughput halved: the running replicas serve half the demand, which is capacity for demand
    "throughput": ([PA, PB, m()], [PA, PB, m(throughput={"A100-80GB": 50})], None, {
        "deployment/m@pb": ["capacity for demand: the replicas it may keep serve 150 of its 300"]}),
    "added": ([PA, PB, m()], [PA, PB, m(), inference("n", [{"location": "a", "rate": 100}])], None, {
        "deployment/n@pb": ["model added to the fleet"]}),
    # m2's demand grows where only pb serves it: m1 moves half onto the dearer pa to make room (it
    # said 'cheaper placement' for its scale-down and 'capacity for demand' for its create)
    "room": ([*ROOM, inference("m2", [{"location": "a", "rate": 400}])],
             [*ROOM, inference("m2", [{"location": "a", "rate": 600}])], None, {
        "deployment/m1@pa": ["room on pb for m2"],
        "deployment/m1@pb": ["scaled down first: pb cannot hold the old replicas and the new at once (make before "
                             "break needs 10 of its 8 GPUs)", "room on pb for m2"],
        "deployment/m2@pb": ["demand changed 400 -> 600"]}),
    # as "room", but pb is held to 6 of its 8 GPUs by a required headroom: m2's 5 replicas and m1's 2
    # fit its GPUs, not its headroom, so m1 moves a replica to the dearer pa for m2 (it said 'placed anew
    # by the plan', though the headroom is why; found by re-planning bench M, 8 of 16 such models). Its
    # scale-down on pb goes first: made before broken, pb held 7 until phase 3
    "room, headroom": ([*HEADROOM, inference("m2", [{"location": "a", "rate": 300}])],
                       [*HEADROOM, inference("m2", [{"location": "a", "rate": 500}])], None, {
        "deployment/m1@pa": [KEEP_FREE],
        "deployment/m1@pb": ["scaled down first: pb cannot hold the old replicas and the new at once (make before "
                             "break needs 7 of its 8 GPUs, of which required policy keep-free keeps 2 free)", KEEP_FREE],
        "deployment/m2@pb": ["demand changed 300 -> 500"]}),
    # n's demand falls and frees a GPU on pb's one node: m moves there from pa, dearer a GPU, so that pa
    # needs no node (it said 'placed anew by the plan, its compute 1.00 -> 2.00 USD/h', of a move that
    # saves 1 USD/h; found by re-planning bench M)
    "fewer nodes": ([*NODES, inference("n", [{"location": "a", "rate": 800}], throughput={"H100-80GB": 100})],
                    [*NODES, inference("n", [{"location": "a", "rate": 700}], throughput={"H100-80GB": 100})],
                    None, {"deployment/m@pa": [FEWER], "deployment/m@pb": [FEWER],
                           "deployment/n@pb": ["demand changed 800 -> 700"], "pool/pa": ["capacity no longer needed"],
                           "pool/pb": ["back to its planned size: the room make before break needed in phases 2 "
                                       "and 3 is free"]}),
    # n's demand falls and leaves a GPU of pe's one node idle: m moves there from the fixed pf, priced
    # by the GPU used, dearer a GPU for m and 1 USD/h cheaper for the fleet (it said 'placed anew by the
    # plan, its compute 1.00 -> 2.00 USD/h'; 6 of 9 such models in five 5% re-plans of bench M)
    "idle GPUs": ([*IDLE, mi(), n(200)], [*IDLE, mi(), n(100)], None, {
        "deployment/m@pe": [IDLE_GPU], "deployment/m@pf": [IDLE_GPU], "deployment/n@pe": ["demand changed 200 -> 100"],
        "pool/pe": ["back to its planned size: the room make before break needed in phases 2 and 3 is free"]}),
    # as many units/s, a third of them moved from a to b: a replica moves from pa to pb, where the
    # demand now is (it said 'placed anew by the plan, its compute 6.00 -> 6.00 USD/h', its replicas'
    # throughput summed serving the 300; 3 of 9 such models in five 5% re-plans of bench M)
    "demand moved": ([*APART, at(200, 100)], [*APART, at(100, 200)], None, {
        "deployment/m@pa": [SHIFT], "deployment/m@pb": [SHIFT]}),
    # a third less demand, all of it moved from a to b: the 2 replicas made at b are for where the
    # demand is, not for less of it (they said 'demand changed 300 -> 200'; 96 of 822 such lines made
    # or took replicas against the demand's change in 15 re-plans of bench M with demand moved)
    "demand moved and fell": ([*APART[:3], DEAR_B, at(300, 0)], [*APART[:3], DEAR_B, at(0, 200)], None, {
        "deployment/m@pa": ["demand changed 300 -> 200"],
        "deployment/m@pb": ["capacity for demand: the replicas it may keep serve 0 of its 200 within its latency SLOs"]}),
    # as "idle GPUs", with 100 units/s more of m's demand at c, which no pool reaches in time: the
    # replica it keeps serve 100 of its 200, but so does the plan's, and that is no reason to move
    # (it said 'capacity for demand: the replicas it may keep serve 100 of its 200')
    "idle GPUs, demand out of reach": (
        [*FAR, *IDLE, mi({"location": "c", "rate": 100, "latencySloMs": 5}), n(200)],
        [*FAR, *IDLE, mi({"location": "c", "rate": 100, "latencySloMs": 5}), n(100)], None, {
            "deployment/m@pe": [IDLE_GPU], "deployment/m@pf": [IDLE_GPU],
            "deployment/n@pe": ["demand changed 200 -> 100"],
            "pool/pe": ["back to its planned size: the room make before break needed in phases 2 and 3 is free"]}),
    # latency priced higher: m moves to the dearer pool beside its users, 300 units/s at 20 ms kept
    # (6.00 USD/h) against 1 ms (0.30), priced by the cost function (it said 'placed anew by the plan,
    # its compute 3.00 -> 6.00 USD/h', 20 of 20 such lines in five re-plans of bench M with latency priced)
    "latency": (NEAR, NEAR, {"latencyUsdPerMsPer1kRate": 1.0}, {
        "deployment/m@pb": [LATENCY], "deployment/m@pa": [LATENCY]}),
    # m's demand moves from a to b, as much of it: a replica of m at a serves it, 20 ms away
    "demand moved, latency": ([*NEAR[:4], m()], NEAR, {"latencyUsdPerMsPer1kRate": 1.0}, {
        "deployment/m@pb": [LATENCY], "deployment/m@pa": [LATENCY]}),
    # m's data is at b now, 500 GB/h at 0.02 USD/GB to a: it moves beside it, dearer a GPU (it said
    # 'placed anew by the plan, its compute 3.00 -> 4.50 USD/h')
    "egress": ([*EGRESS, m()], [*EGRESS, m(data=[{"location": "b", "gbPerHour": 500}])], None, {
        "deployment/m@pb": [DATA], "deployment/m@pa": [DATA]}),
    # and a training model's, its egress shared by its replicas
    "egress, training": ([*EGRESS, training("t", 1, gpus=1)],
                         [*EGRESS, training("t", 1, gpus=1, data=[{"location": "b", "gbPerHour": 500}])], None, {
        "deployment/t@pb": [DATA.replace("3.00 -> 4.50", "1.00 -> 1.50")],
        "deployment/t@pa": [DATA.replace("3.00 -> 4.50", "1.00 -> 1.50")]}),
    # as "idle GPUs" with pe 10 ms from m's users: the fleet's compute falls more than m's latency
    # grows, which is said beside it
    "idle GPUs, latency grows": ([*IDLE_FAR, mi(), n(200)], [*IDLE_FAR, mi(), n(100)], {"latencyUsdPerMsPer1kRate": 0.5}, {
        "deployment/m@pe": [IDLE_FAR_GPU], "deployment/m@pf": [IDLE_FAR_GPU],
        "deployment/n@pe": ["demand changed 200 -> 100"],
        "pool/pe": ["back to its planned size: the room make before break needed in phases 2 and 3 is free"]}),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_a_reason_is_true_of_what_changed(tmp_path: Path, capsys: pytest.CaptureFixture[str], scenario: str) -> None:
    """'cheaper placement' only where the model's compute, as the cost function prices it at the
    fleet's prices, falls; 'capacity for demand' only where the replicas it may keep fall short of
    its demand; a count of the model's own, a new model, room made for others and the fleet's compute,
    egress or latency a move saves named; else what the model costs as planned. Before, a scale-down was 'cheaper placement' and anything else
    'capacity for demand', whatever changed."""
    first, then, objective, expected = SCENARIOS[scenario]
    reasons, text, markdown = replan(capsys, Fleet(tmp_path), first, then, objective)
    assert reasons == expected
    for address, said in expected.items():
        assert f"{address} " in text and f"# {'; '.join(said)}" in text
        assert f"# {'; '.join(said)}" in markdown


def test_demand_in_a_reason_reads_as_the_plans_tables_give_it(capsys, tmp_path):
    """Tokens/s of a fleet run to millions: the reason gives 1,000,000 -> 1,234,567, as the Models
    table gives the rate. It said 'demand changed 1e+06 -> 1.23457e+06', the new demand rounded
    to six digits (1,000,000 -> 1,000,004 would have read 1e+06 -> 1e+06)."""
    def chat(rate: int) -> dict[str, Any]:
        return inference("chat", [{"location": "a", "rate": rate}], throughput={"A100-80GB": 100_000})

    reasons, text, markdown = replan(capsys, Fleet(tmp_path), [pool("p", "a", count=2), chat(1_000_000)],
                                     [pool("p", "a", count=2), chat(1_234_567)])
    assert reasons == {"deployment/chat@p": ["demand changed 1,000,000 -> 1,234,567"]}
    assert "e+06" not in text + markdown


def test_a_demand_change_smaller_than_a_tables_rounding_is_told_apart(capsys, tmp_path):
    """A change of demand the tables round away (200 -> 200.004 units/s) that takes a replica more
    gives both rates with the digits that tell them apart; it said 'demand changed 200 -> 200'."""
    def m(rate: float) -> dict[str, Any]:
        return inference("m", [{"location": "a", "rate": rate}])

    reasons, _, _ = replan(capsys, Fleet(tmp_path), [pool("p", "a"), m(200)], [pool("p", "a"), m(200.004)],
                           objective={"unmetUsdPerRate": 1000})
    assert reasons == {"deployment/m@p": ["demand changed 200.000 -> 200.004"]}, reasons


def test_a_move_no_term_pays_for_says_what_the_model_costs() -> None:
    """A plan that moves m between two pools alike (a search stopped short, a plan edited) names no
    saving: kept as it ran, m costs as much in every term, and the reason is what it costs as
    planned and where to ask why."""
    f = built(location("a"), pool("pa", "a"), pool("pb", "a"), inference("m", [{"location": "a", "rate": 100}]))
    moved = Placement({("m", "pb"): 1}, {}, (Route("m", "a", "pb", 100.0, 1.0),))
    changes = diff(f, State(deployments={"m@pa": {"replicas": 1}}), moved, find_candidates(f, RULES), RULES)
    anew = ("placed anew by the plan, its compute 1.00 -> 1.00 USD/h (`placer explain FLEET m` says why it runs "
            "where it does)",)
    assert {c.address: c.reasons for c in changes} == {"deployment/m@pa": anew, "deployment/m@pb": anew}
