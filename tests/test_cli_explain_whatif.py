"""`placer explain` and `placer whatif` through the CLI, on fleets whose answers are known: every
reason a pool can be out, on both optimizer routes, and each kind of scenario."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from placer.fleet import Fleet
from tests.fleetkit import doc, inference, link, location, policy, pool, training

ROOT = Path(__file__).resolve().parents[1]


def write(tmp: Path, *docs: dict) -> Path:
    fleet = tmp / "fleet"
    fleet.mkdir()
    settings = doc("Settings", "s", {"state": {"path": str(tmp / "state.json")},
                                     "apply": {"mode": "gitops", "directory": str(tmp / "deploy")},
                                     "solver": {"timeLimitSeconds": 5}})
    (fleet / "fleet.yaml").write_text(yaml.safe_dump_all([*docs, settings], sort_keys=False))
    return fleet


def placer(*args: str, optimizer: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    if optimizer:
        env["PLACER_OPTIMIZER"] = optimizer
    return subprocess.run([sys.executable, "-m", "placer", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)


def line_of(fleet: Path, key: str, after: str = "") -> int:
    """The line of ``fleet``'s file where ``key:`` first appears (after the line holding ``after``)."""
    lines = (fleet / "fleet.yaml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if after in line) if after else 0
    return next(i for i, line in enumerate(lines) if i >= start and line.strip().startswith(f"{key}:")) + 1


def why_not(stdout: str) -> dict[str, str]:
    """The "Other pools" table: pool -> reason."""
    rows = {}
    for line in stdout.split("Other pools", 1)[1].splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) == 2 and cells[0]:
            rows[cells[0]] = cells[1]
    return rows


@pytest.fixture(scope="module")
def explained(tmp_path_factory) -> Path:
    """Model m (40 GiB a GPU, A100s only, not spot tolerant, demand at a within 10 ms) fits one
    pool, p; each other pool is out for one reason: its memory, its GPU type, spot, a policy,
    the SLO (b is 40 ms from a), or its GPUs, all taken by n (whose policy keeps it there)."""
    return write(
        tmp_path_factory.mktemp("explain"),
        location("a"), location("b"), link("a", "b", 40),
        pool("p", "a", usd=1.0),
        pool("far", "b", usd=0.5),
        pool("small", "a", gpu="L4-24GB", usd=0.3),
        pool("hopper", "a", gpu="H100-80GB", usd=0.4),
        pool("cheap-spot", "a", usd=0.2, spot=True),
        pool("denied", "a", usd=0.6),
        pool("full", "a", usd=0.9),
        inference("m", [{"location": "a", "rate": 100, "latencySloMs": 10}], mem=40, gpuTypes=["A100-80GB"]),
        inference("n", [{"location": "a", "rate": 800}]),
        policy("keep-off-denied", {"denyPools": {}}, models={"names": ["m"]}, pools={"names": ["denied"]}),
        policy("n-on-full", {"allowPools": {}}, models={"names": ["n"]}, pools={"names": ["full"]}),
    )


@pytest.mark.parametrize("optimizer", ["exact", "scalable"])
def test_explain_gives_each_pool_its_reason_on_both_routes(explained, optimizer):
    """The scalable route keeps no exclusion reasons in its arrays; explain must not call the
    pools a policy or the fit rules forbid "eligible" there (it did, before ``Exclusions``)."""
    r = placer("explain", str(explained), "m", optimizer=optimizer)
    assert r.returncode == 0, r.stderr
    assert "m: 1 replica(s) on p; compute 1.00 USD/h" in r.stdout
    assert "demand at a: 100 routed to p (1 ms)" in r.stdout
    rows = why_not(r.stdout)
    assert rows["small"] == "memory: needs 40 GiB per GPU; L4-24GB has 24"
    assert rows["hopper"].startswith("gpu-type: H100-80GB is not in gpuTypes")
    assert rows["cheap-spot"] == "spot: cheap-spot is spot and the model is not spotTolerant"
    assert rows["denied"] == "policy: keep-off-denied: denied is among the pools this policy names"
    assert rows["far"] == "slo: no demand reaches b within its SLO (from a 40 ms > 10 ms)"
    assert rows["full"] == "eligible but full: 8/8 GPUs taken by n"
    assert set(rows) == {"small", "hopper", "cheap-spot", "denied", "far", "full"}
    # without p, m can only go where n is (or nowhere): the cost of that, for the whole fleet
    # (the scalable route moves the model alone: two of its runs may differ by more than the move)
    how = " (every other model where this plan has it)" if optimizer == "scalable" else ""
    nxt = re.search(rf"Next best without its current pools{re.escape(how)}: (.+), costing \+([\d,.]+) USD/h for "
                    r"the whole fleet \((.+) USD of one-off churn\)", r.stdout)
    assert nxt is not None, r.stdout
    # n's 8 replicas fill "full": m goes unplaced, its 100 of rate unmet (1 USD each), less p's
    # 1 USD/h, on both routes; apart, the one replica fewer started saves 0.5 USD of churn once
    # (summed, they read "+98.50 USD/h")
    assert nxt.groups() == ("not placed", "99.00", "-0.50")


def test_explain_names_the_model_it_cannot_find(explained):
    r = placer("explain", str(explained), "mm")
    assert r.returncode == 1 and "no model named 'mm'" in r.stderr and "did you mean 'm'" in r.stderr
    assert "Traceback" not in r.stderr


def test_grouped_gathers_pools_out_for_one_reason_beyond_the_threshold():
    """Every pool keeps its reason; its own name in the reason becomes <pool>, an eligible pool's
    free and all GPUs go beside its name; up to the threshold, one row each, as before."""
    from placer.explain import Explanation, grouped

    ex = Explanation("m", {"p": 1}, 1.0, [], [])
    ex.out = {"s1": "spot: s1 is spot and the model is not spotTolerant",
              "s1x": "spot: s1x is spot and the model is not spotTolerant",
              "l4": "memory: needs 40 GiB per GPU; L4-24GB has 24",
              "l4b": "memory: needs 40 GiB per GPU; L4-24GB has 24",
              "t4": "memory: needs 40 GiB per GPU; T4-16GB has 16",
              "node": "node-size: a replica needs 4 GPUs on one node; node nodes have 1"}
    ex.unused = {"q": "eligible; not chosen (cost), 3 of 8 GPUs free",
                 "r": "eligible; not chosen (cost), 8 of 8 GPUs free",
                 "full": "eligible but full: 8/8 GPUs taken by n"}
    assert grouped(ex, above=9) == [([p], why) for p, why in [*sorted(ex.out.items()), *sorted(ex.unused.items())]]
    assert grouped(ex, above=3) == [
        (["l4", "l4b"], "memory: needs 40 GiB per GPU; L4-24GB has 24"),
        (["node"], "node-size: a replica needs 4 GPUs on one node; node nodes have 1"),  # alone: its own text
        (["s1", "s1x"], "spot: <pool> is spot and the model is not spotTolerant"),
        (["t4"], "memory: needs 40 GiB per GPU; T4-16GB has 16"),
        (["full"], "eligible but full: 8/8 GPUs taken by n"),  # a pool named like a word of its reason
        (["q (3/8)", "r (8/8)"], "eligible; not chosen (cost); free/all GPUs beside each"),
    ]


def test_explain_groups_many_pools_by_reason_and_all_lists_each(tmp_path):
    """45 other pools: by default one row per reason, the first 8 pools of a reason named and the
    rest counted (at bench XL, 999 pools named one a line made 855 lines); --all, one row each."""
    fleet = write(
        tmp_path, location("a"),
        pool("p", "a", usd=1.0),
        *(pool(f"l4-{i:02d}", "a", gpu="L4-24GB", usd=0.3) for i in range(22)),
        *(pool(f"spot-{i:02d}", "a", usd=0.2, spot=True) for i in range(20)),
        *(pool(f"dear-{i}", "a", usd=usd) for i, usd in enumerate((2.0, 4.0, 3.0))),
        inference("m", [{"location": "a", "rate": 100}], mem=40),
    )
    r = placer("explain", str(fleet), "m")
    assert r.returncode == 0, r.stderr
    table = r.stdout.split("Other pools", 1)[1].split("Next best", 1)[0]
    assert table.startswith(": 45, grouped by reason, up to 8 named a row (--all: one row each)"), table[:200]
    for name in [*(f"l4-{i:02d}" for i in range(8)), *(f"spot-{i:02d}" for i in range(8))]:
        assert len(re.findall(rf"(?<![\w-]){name}(?![\w-])", table)) == 1, name
    for name in [*(f"l4-{i:02d}" for i in range(8, 22)), *(f"spot-{i:02d}" for i in range(8, 20))]:
        assert not re.search(rf"(?<![\w-]){name}(?![\w-])", table), name
    flat = " ".join(table.split())
    assert "l4-07 and 14 more" in flat and "spot-07 and 12 more" in flat
    # the eligible pools not chosen, cheapest GPUs for m's rate first (2, 3, then 4 USD/h a GPU)
    assert "dear-0 (8/8), dear-2 (8/8), dear-1 (8/8)" in flat, table
    assert "free/all GPUs beside each, cheapest for it first" in flat
    assert table.count("memory: needs 40 GiB per GPU; L4-24GB has 24") == 1
    assert table.count("spot: <pool> is spot and the model is not spotTolerant") == 1
    assert table.count("eligible; not chosen (cost); free/all GPUs beside each") == 1
    every = placer("explain", str(fleet), "m", "--all")
    assert every.returncode == 0, every.stderr
    rows = why_not(every.stdout)
    assert len(rows) == 45 and rows["spot-07"] == "spot: spot-07 is spot and the model is not spotTolerant"
    assert rows["dear-2"] == "eligible; not chosen (cost), 8 of 8 GPUs free"


def test_explain_lists_the_eligible_pools_by_what_the_model_costs_there(tmp_path):
    """The eligible pools not chosen were listed by GPU price alone, and read top-down as "next
    best": small (1.20 USD/h a GPU), far (1.50), near and twin (2.00). But far is at b, away from
    the demand and the data at a, whose 100 GB/h cost 0.50 USD a GB to move there: m's 4 replicas
    cost 12 + 50 USD/h there, 16 on near. n holds half of small: the 2 replicas m may have there
    leave 200 of its demand unmet (200 USD/h). Pools that cost the same (near, twin) by name."""
    fleet = write(tmp_path, location("a"), location("b"), link("a", "b", 20, egress=0.5),
                  pool("p", "a", usd=1.0), pool("twin", "a", usd=2.0), pool("near", "a", usd=2.0),
                  pool("far", "b", usd=1.5), pool("small", "a", usd=1.2),
                  inference("m", [{"location": "a", "rate": 400, "latencySloMs": 50}], gpus=2,
                            data=[{"location": "a", "gbPerHour": 100}]),
                  inference("n", [{"location": "a", "rate": 400}], minReplicas=4),
                  policy("n-on-small", {"allowPools": {}}, models={"names": ["n"]}, pools={"names": ["small"]}))
    r = placer("explain", str(fleet), "m")
    assert r.returncode == 0, r.stderr
    assert "m: 4 replica(s) on p; compute 8.00 USD/h" in r.stdout, r.stdout
    assert list(why_not(r.stdout)) == ["near", "twin", "far", "small"], r.stdout
    r = placer("explain", str(fleet), "m", "--json")
    assert r.returncode == 0, r.stderr
    assert list(json.loads(r.stdout)["otherPools"]) == ["near", "twin", "far", "small"]


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory) -> Path:
    """p: 8 GPUs at a, 1 USD/h each in use; q: an AWS pool at b of up to 2 nodes of 8 GPUs, 2 USD/h
    a GPU, paid by the node. m needs one GPU per 100 of rate: 400 at a and 200 at b."""
    return write(
        tmp_path_factory.mktemp("whatif"),
        location("a"), location("b"), link("a", "b", 5),
        pool("p", "a", usd=1.0),
        pool("q", "b", usd=2.0, provider="aws", count=None, min_nodes=0, max_nodes=2),
        inference("m", [{"location": "a", "rate": 400}, {"location": "b", "rate": 200}]),
    )


def whatif(fleet: Path, *args: str, optimizer: str = "") -> dict:
    r = placer("whatif", str(fleet), *args, "--json", optimizer=optimizer)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize(("scale", "said"), [("-0", "demand x0"), ("1.00000001", "demand x1.00000001")])
def test_whatif_describes_a_demand_scale_as_given(scenarios, scale, said):
    """The scenario's line names the scale it ran: ``:g`` gave "demand x1" of 1.00000001, whose
    changes the table showed beside it, and "demand x-0" of -0."""
    assert whatif(scenarios, "--demand-scale", scale)["description"] == said


def test_whatif_demand_doubled_scales_onto_the_elastic_pool(scenarios):
    report = whatif(scenarios, "--demand-scale", "2")
    base, scen = report["base"], report["scenario"]
    assert report["description"] == "demand x2"
    assert base["unmet"] == {} and scen["unmet"] == {}
    assert base["gpus"]["used"] == 6 and scen["gpus"]["used"] == 12 and scen["served"] == pytest.approx(1200)
    # one node of q (8 GPUs, 16 USD/h, paid whole, so filled) and 4 GPUs of p: neither at its maximum
    assert base["cost"]["computeUsdPerHour"] == pytest.approx(6.0)
    assert scen["cost"]["computeUsdPerHour"] == pytest.approx(20.0)
    assert scen["saturated"] == []
    # planned from the base plan: 8 replicas started on q, 2 of p's 6 stopped, 0.5 USD each started
    assert scen["fromBase"] == {"started": 8, "stopped": 2, "churnUsd": pytest.approx(4.0)}
    assert "fromBase" not in base


@pytest.mark.parametrize(("args", "collapse"), [(("--demand-scale", "2"), 0.0),
                                                 (("--demand-scale", "2", "--fail-provider", "aws"), 1.0)])
def test_whatif_metrics_are_the_reports_figures(scenarios, tmp_path, args, collapse):
    """--metrics-file: each side's cost, demand, unmet per model and saturated pools as --json reports
    them, and placer_whatif_collapse as the verdict says ("scales" 0, "partly collapses" 1)."""
    import math

    from placer.render.metrics import whatif_metrics
    from placer.render.whatif import collapses
    from tests.metricskit import by, one, samples

    metrics = tmp_path / "whatif.prom"
    r = placer("whatif", str(scenarios), *args, "--metrics-file", str(metrics))
    assert r.returncode == 0, r.stderr
    assert ("Verdict: scales" in r.stdout) == (collapse == 0.0), r.stdout
    report = whatif(scenarios, *args)
    found = samples(metrics)
    assert one(found, "placer_whatif_collapse") == collapse and one(found, "placer_whatif_demand_scale") == 2.0
    assert by(found, "placer_whatif_feasible", "side") == {("base",): 1.0, ("scenario",): 1.0}
    terms = {"compute": "computeUsdPerHour", "egress": "egressUsdPerHour", "latency": "latencyUsdPerHour",
             "unmet": "unmetUsdPerHour", "penalty": "penaltyUsdPerHour"}
    assert by(found, "placer_whatif_cost_usd_per_hour", "side", "term") == {
        (side, t): pytest.approx(report[side]["cost"][k]) for side in ("base", "scenario") for t, k in terms.items()}
    for name, key in (("placer_whatif_demand_rate", "demand"), ("placer_whatif_served_rate", "served")):
        assert by(found, name, "side") == {(side,): pytest.approx(report[side][key]) for side in ("base", "scenario")}
    assert by(found, "placer_whatif_used_gpus", "side") == {
        (side,): report[side]["gpus"]["used"] for side in ("base", "scenario")}
    assert by(found, "placer_whatif_unmet_demand_rate", "side", "model") == {
        (side, "m"): pytest.approx(report[side]["unmet"].get("m", 0.0)) for side in ("base", "scenario")}
    assert by(found, "placer_whatif_pool_saturated", "side", "pool", "provider") == {
        (side, p, provider): float(p in report[side]["saturated"])
        for side in ("base", "scenario") for p, provider in (("p", "static"), ("q", "aws"))}
    # a scenario with no feasible plan is a collapse; one the solver found no plan for in time is not known
    for status, said in (("INFEASIBLE", 1.0), ("UNKNOWN", math.nan)):
        side = {"status": status, "feasible": False}
        text = whatif_metrics({"base": report["base"], "scenario": side}, collapses(side), 2.0)
        (tmp_path / "x.prom").write_text(text)
        found = samples(tmp_path / "x.prom")
        assert by(found, "placer_whatif_feasible", "side") == {("base",): 1.0, ("scenario",): 0.0}
        value = one(found, "placer_whatif_collapse")
        assert value == said or (math.isnan(said) and math.isnan(value))
        assert set(by(found, "placer_whatif_used_gpus", "side")) == {("base",)}


@pytest.mark.parametrize("optimizer", ["exact", "scalable"])
def test_whatif_demand_far_beyond_the_fleet_still_fills_it(optimizer):
    """Demand 100,000 times the example fleet's serves as much as at 50 times, where it is already
    full. The demand no pool in reach could serve is left out of the solver's objective: in it, at
    5.6e9 USD/h, the relative gap was wider than all the fleet could serve, and a first plan passed
    as optimal (exact: served 0 on 32 GPUs; scalable: 632,939 against 649,531)."""
    served = {}
    for scale in ("50", "100000"):
        r = placer("whatif", str(ROOT / "examples" / "hybrid"), "--demand-scale", scale, "--json", optimizer=optimizer)
        assert r.returncode == 0, r.stderr
        scen = json.loads(r.stdout)["scenario"]
        served[scale] = scen["served"]
        cost = scen["cost"]
        terms = sum(v for k, v in cost.items() if k not in ("totalUsdPerHour", "churnUsd"))
        assert cost["totalUsdPerHour"] == pytest.approx(terms, rel=1e-12)
        assert cost["unmetUsdPerHour"] >= 55_780 * float(scale) - served[scale]  # priorities weigh some more
    assert served["100000"] == pytest.approx(served["50"], rel=2e-3), served
    assert served["50"] > 640_000


def test_whatif_provider_down_with_doubled_demand_collapses_in_part(scenarios):
    r = placer("whatif", str(scenarios), "--demand-scale", "2", "--fail-provider", "aws")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "What if: demand x2, provider aws down" in out
    assert re.search(r"GPUs used\s+│\s+6\s+│\s+8\s+│\s+\+2 *$", out, re.M), out  # as precise as the row
    assert re.search(r"served \(rate\)\s+│\s+600\s+│\s+800\s+│\s+\+200 *$", out, re.M), out
    assert re.search(r"\bm\s+│\s+0\s+│\s+400\s", out), out  # the unmet table: base, scenario
    assert "Saturated pools (1 full): p" in out
    assert "Planned from the base plan: 2 replica(s) started, 0 stopped (churn 1.00 USD once)" in out
    assert "Verdict: partly collapses: 66.67% of demand served; 400 units/s unmet where no pool in reach has room." in out
    report = whatif(scenarios, "--demand-scale", "2", "--fail-provider", "aws")
    assert report["scenario"]["unmet"] == {"m": pytest.approx(400)}
    # the total's terms: the 400 unserved cost 1 USD/h each (unmetUsdPerRate), beside compute
    cost = report["scenario"]["cost"]
    assert cost["unmetUsdPerHour"] == pytest.approx(400) and cost["computeUsdPerHour"] == pytest.approx(8)
    assert re.search(r"^ +unmet demand\s+│\s+0\.00\s+│\s+400\.00\s+│\s+\+400\.00 *$", out, re.M), out
    assert re.search(r"^ +compute\s+│\s+6\.00\s+│\s+8\.00\s+│\s+\+2\.00 *$", out, re.M), out
    terms = sum(v for k, v in cost.items() if k not in ("totalUsdPerHour", "churnUsd"))
    assert cost["totalUsdPerHour"] == pytest.approx(terms)
    assert "policy penalties" not in out  # a term neither side pays is left out


def test_whatif_names_the_preferred_policies_a_scenario_gives_up(tmp_path):
    """m prefers p (0.5 USD/h a replica elsewhere). As it is, p holds all 6 replicas; doubled, the
    rest go to q: the policy is broken in the scenario, and the report says which, how often, and
    for how much of the total's penalty term."""
    fleet = write(tmp_path, location("a"), location("b"), link("a", "b", 5), pool("p", "a", usd=1.0),
                  pool("q", "b", usd=2.0, provider="aws", count=None, min_nodes=0, max_nodes=2),
                  inference("m", [{"location": "a", "rate": 400}, {"location": "b", "rate": 200}]),
                  policy("stay-on-p", {"allowPools": {}}, models={"names": ["m"]}, pools={"names": ["p"]},
                         penalty=0.5))
    report = whatif(fleet, "--demand-scale", "2")
    base, scen = report["base"], report["scenario"]
    assert base["violations"] == {} and base["cost"]["penaltyUsdPerHour"] == 0
    broken = scen["violations"]["stay-on-p"]
    penalty = scen["cost"]["penaltyUsdPerHour"]
    assert penalty >= 4 * 0.5 and broken["penaltyUsdPerHour"] == pytest.approx(penalty)  # p holds 8 of 12
    r = placer("whatif", str(fleet), "--demand-scale", "2")
    assert r.returncode == 0, r.stderr
    assert "Preferred policies broken (times, penalty USD/h)" in r.stdout
    assert re.search(rf"^ stay-on-p\s+│\s+0\s+│\s+{broken['count']} \({penalty:.2f}\) *$", r.stdout, re.M), r.stdout
    assert re.search(rf"^ +policy penalties\s+│\s+0\.00\s+│\s+{penalty:.2f}\s+│\s+\+{penalty:.2f} *$", r.stdout,
                     re.M), r.stdout


def test_whatif_tells_a_collapse_from_a_cap_and_from_cost(tmp_path):
    """Demand left unmet is not always a collapse. Doubled: capped's 800 is beyond its maxReplicas
    of 2 (200 a replica); tiny's 0.4 would take a replica costing 1 USD/h where leaving it unmet
    costs 0.4, though p has room; far's demand at b, within 2 ms, reaches no pool at all, so room
    would not serve it either: none of them is a collapse (the pools in reach full, as in
    test_whatif_every_pool_down_serves_nothing), and the fleet scales, far's demand named apart."""
    docs = [location("a"), location("b"), link("a", "b", 5), pool("p", "a", usd=1.0),
            inference("capped", [{"location": "a", "rate": 400}], throughput={"A100-80GB": 200}, maxReplicas=2),
            inference("tiny", [{"location": "a", "rate": 0.2}])]
    far = inference("far", [{"location": "b", "rate": 100, "latencySloMs": 2}])
    (tmp_path / "one").mkdir()
    report = whatif(write(tmp_path / "one", *docs, far), "--demand-scale", "2")
    scen = report["scenario"]
    assert scen["unmetWhy"] == {"capped": {"maxReplicas": pytest.approx(400)}, "far": {"noPool": pytest.approx(200)},
                                "tiny": {"cost": pytest.approx(0.4)}}
    assert scen["unmetByReason"]["noPool"] == {"rate": pytest.approx(200), "replicas": 0}
    r = placer("whatif", str(tmp_path / "one" / "fleet"), "--demand-scale", "2")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert re.search(r"capped │ 0\.00 │ 400\.00 │ at its maxReplicas", text), r.stdout
    assert re.search(r"far │ 100\.00 │ 200\.00 │ no pool in reach may run it: fit rules, required policies or SLO",
                     text), r.stdout
    assert re.search(r"tiny │ 0\.20 │ 0\.40 │ cost: pools in reach have room", text), r.stdout
    # far's demand is unmet at any scale (it was "no room in reach", a collapse, though room would not serve it)
    assert ("Verdict: no collapse, but not all demand is met: 39.98% of demand served; 200 units/s that no pool in "
            "reach may run (fit rules, "
            "required policies or SLO; `placer explain` tells each pool's reason); 400 units/s beyond the "
            "maxReplicas of capped (raise maxReplicas to serve them); 0.40 units/s left unserved though pools in "
            "reach have room") in text, r.stdout
    (tmp_path / "two").mkdir()
    r = placer("whatif", str(write(tmp_path / "two", *docs)), "--demand-scale", "2")
    assert r.returncode == 0, r.stderr
    assert ("Verdict: no collapse, but not all demand is met: 49.98% of demand served; 400 units/s beyond the "
            "maxReplicas of capped") in \
        " ".join(r.stdout.split()), r.stdout


def test_whatif_verdict_never_says_scales_of_demand_left_unmet(tmp_path):
    """Doubled, m's 600 of rate needs 6 replicas; its maxReplicas is 3 and p has 32 GPUs: half the
    demand goes unmet. That is no collapse (the pools have room), but the verdict said "scales: 50.00%
    of demand served", which an operator asking "would we scale?" stops reading at. Demand scaled a
    billion times over a fleet serving 1,760 of it read "partly collapses: 0.00% of demand served"."""
    fleet = write(tmp_path, location("a"), pool("p", "a", usd=1.0, count=4),
                  inference("m", [{"location": "a", "rate": 300}], maxReplicas=3))
    r = placer("whatif", str(fleet), "--demand-scale", "2")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert ("Verdict: no collapse, but not all demand is met: 50.00% of demand served; 300 units/s beyond the "
            "maxReplicas of m (raise maxReplicas to serve them).") in text, r.stdout
    assert "scales" not in text
    (tmp_path / "big").mkdir()
    fleet = write(tmp_path / "big", location("a"), pool("p", "a", usd=1.0),
                  inference("m", [{"location": "a", "rate": 300}]))
    r = placer("whatif", str(fleet), "--demand-scale", "1e9")
    assert r.returncode == 0, r.stderr
    assert "Verdict: partly collapses: under 0.01% of demand served;" in " ".join(r.stdout.split()), r.stdout


def test_whatif_names_the_required_policies_that_hold_demand_back(tmp_path):
    """Doubled, m wants 8 replicas; p has the GPUs, but required keep-half keeps 4 of its 8 free:
    400 of m's 800 are held back by keep-half, which a plain "cost" hid (on the example with
    fra-dc1 down and demand x3, 11,472 units/s were "cost", all held by required policies:
    made preferred, onprem-failover-headroom let 830 more be served). n needs two failure domains
    for a second replica (required spread) and fits one pool, r (H100s only): held by n-spread. On elastic e, keeping a
    quarter free makes a 7th replica need a second node (16 USD/h for 100 of rate, where leaving
    it unmet costs 10): that is cost, not the policy, since more nodes would keep it."""
    docs = [location("a"), location("b"), location("c"), link("a", "b", 50), link("b", "c", 50),
            pool("p", "a", usd=1.0), pool("r", "c", gpu="H100-80GB", usd=1.0),
            pool("e", "b", usd=2.0, provider="aws", count=None, min_nodes=0, max_nodes=2),
            inference("m", [{"location": "a", "rate": 400, "latencySloMs": 10}]),
            inference("n", [{"location": "c", "rate": 150, "latencySloMs": 10}], throughput={"H100-80GB": 100},
                      labels={"tier": "critical"}),
            inference("w", [{"location": "b", "rate": 350, "latencySloMs": 10}]),
            policy("keep-half", {"headroom": {"fraction": 0.5}}, pools={"names": ["p"]}),
            policy("keep-quarter", {"headroom": {"fraction": 0.25}}, pools={"names": ["e"]}),
            policy("n-spread", {"spread": {"minFailureDomains": 2}}, models={"labels": {"tier": "critical"}})]
    settings = doc("Settings", "s", {"state": {"path": str(tmp_path / "state.json")},
                                     "apply": {"mode": "gitops", "directory": str(tmp_path / "deploy")},
                                     "objective": {"unmetUsdPerRate": 0.1}, "solver": {"timeLimitSeconds": 5}})
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    (fleet / "fleet.yaml").write_text(yaml.safe_dump_all([*docs, settings], sort_keys=False))
    report = whatif(fleet, "--demand-scale", "2")
    scen = report["scenario"]
    assert scen["unmetWhy"]["m"] == {"policy": pytest.approx(400)}
    assert scen["unmetPolicies"] == {"m": ["keep-half"], "n": ["n-spread"]}
    assert scen["unmetWhy"]["w"] == {"cost": pytest.approx(100)}
    r = placer("whatif", str(fleet), "--demand-scale", "2")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert re.search(r"m │ 0 │ 400 │ required policy keep-half forbids more replicas on every pool in reach "
                     r"with room \(p\)", text), r.stdout
    assert ("held back by required policies where pools in reach have room (keep-half, n-spread on every pool in "
            "reach with room): a pool serves more only with every policy that holds it relaxed") in text
    # explain says the same of the fleet with m's demand doubled in its file
    (fleet / "fleet.yaml").write_text(yaml.safe_dump_all(
        [*(inference("m", [{"location": "a", "rate": 800, "latencySloMs": 10}]) if d["metadata"]["name"] == "m" else d
           for d in docs), settings],
        sort_keys=False))
    said = " ".join(placer("explain", str(fleet), "m").stdout.split())
    assert ("demand at a: 400 unmet (required policy keep-half forbids more replicas on every pool in reach with "
            "room (p))") in said


def test_whatif_location_down_cuts_its_users_off_and_serves_the_rest(scenarios):
    """a down takes p and its users' 400 units/s with it: they are cut off, not moved to q over a
    link whose end is gone (as they were), nor counted unmet; b's 200 stay served on q."""
    report = whatif(scenarios, "--fail-location", "a")
    scen = report["scenario"]
    assert report["description"] == "location a down"
    assert report["failedLocations"] == {"a": {"pools": ["p"], "links": [["a", "b"]], "cutOff": {"m": 400.0},
                                               "cutOffRate": 400.0, "dataCut": {}}}
    assert scen["unmet"] == {} and scen["demand"] == pytest.approx(200) and scen["served"] == pytest.approx(200)
    assert scen["gpus"]["used"] == 2 and "p" not in scen["saturated"]  # a failed pool is not "saturated"


@pytest.fixture(scope="module")
def line(tmp_path_factory) -> Path:
    """a - b - c, 5 ms a link, and a direct link a - c of 30 ms; the one pool, p (8 GPUs), at c.
    Users at a: m's 200 units/s within 20 ms (through b only), far's 200 within 40 ms (either
    way); users at b: n's 100. The base serves all 500 on p, a's through b."""
    return write(
        tmp_path_factory.mktemp("line"),
        location("a"), location("b"), location("c"), link("a", "b", 5), link("b", "c", 5), link("a", "c", 30),
        pool("p", "c"),
        inference("m", [{"location": "a", "rate": 200, "latencySloMs": 20}]),
        inference("far", [{"location": "a", "rate": 200, "latencySloMs": 40}]),
        inference("n", [{"location": "b", "rate": 100}]),
    )


@pytest.mark.parametrize("optimizer", ["exact", "scalable"])
def test_whatif_location_down_takes_the_paths_through_it_and_cuts_its_users_off(line, optimizer):
    """b has no pools, but a's shortest path to p runs through it and n's users are there: failing
    b was refused ("has no pools, so nothing fails there"), and failing its pools alone left a's
    demand served through it. Without b, m's 20 ms SLO has no route (a - c is 30 ms) and is unmet,
    far's 40 ms takes the direct link, and n's users are cut off with b, apart from unmet. The same
    on the scalable route (bench M and up), whose plans UnmetReasons reads as the exact route's."""
    report = whatif(line, "--fail-location", "b", optimizer=optimizer)
    base, scen = report["base"], report["scenario"]
    assert base["unmet"] == {} and base["served"] == pytest.approx(500)
    assert report["failedLocations"] == {"b": {"pools": [], "links": [["a", "b"], ["b", "c"]],
                                               "cutOff": {"n": 100.0}, "cutOffRate": 100.0, "dataCut": {}}}
    assert scen["demand"] == pytest.approx(400)  # n's 100 left with b
    assert scen["unmet"] == {"m": pytest.approx(200)} and scen["served"] == pytest.approx(200)
    # p is up and may run m: the network is what failed it ("no pool in reach may run it: fit rules,
    # required policies or SLO" would blame the model), and losing the route is a collapse
    assert scen["unmetWhy"] == {"m": {"cut": pytest.approx(200)}}
    r = placer("whatif", str(line), "--fail-location", "b", optimizer=optimizer)
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stdout.split())
    assert ("Location b down takes with it: no pool; links a <-> b, b <-> c (no path passes through b); 100 units/s "
            "of demand from its users (n), cut off with it: counted apart from unmet demand.") in said, r.stdout
    # the scenario's demand is the base's less what b took: the table says by how much, beside it
    assert re.search(r"\bdemand \(rate\)\s+│\s+500\s+│\s+400\s+│\s+-100\s*\n\s+cut off with b\s+│\s+0\s+│\s+100\s+│"
                     r"\s+\+100\s*\n", r.stdout), r.stdout
    assert ("Verdict: partly collapses: 50.00% of demand served; 200 units/s unmet where a failed location cut every "
            "route within the SLO to a pool that may run it.") in said, r.stdout
    assert re.search(r"\bm\s+│\s+0\s+│\s+200\s+│\s+cut off by a failed location from every pool that may run it",
                     r.stdout), r.stdout


@pytest.mark.parametrize("optimizer", ["exact", "scalable"])
def test_whatif_location_down_prices_egress_over_the_path_left(tmp_path, optimizer):
    """far's 100 GB/h of data at a went to p at c through b, 0.01 + 0.01 USD/GB (2 USD/h); with b
    down, over the direct a - c at 0.5 USD/GB (50 USD/h): it stayed 2, priced through the site gone
    (q, an L4 pool far cannot use, is only there for the old code to let b fail)."""
    fleet = write(tmp_path, location("a"), location("b"), location("c"), link("a", "b", 5, 0.01),
                  link("b", "c", 5, 0.01), link("a", "c", 30, 0.5), pool("p", "c"), pool("q", "b", gpu="L4-24GB"),
                  inference("far", [{"location": "a", "rate": 200, "latencySloMs": 40}],
                            data=[{"location": "a", "gbPerHour": 100}]))
    r = placer("whatif", str(fleet), "--fail-location", "b", "--json", optimizer=optimizer)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["base"]["cost"]["egressUsdPerHour"] == pytest.approx(2.0)
    assert report["scenario"]["cost"]["egressUsdPerHour"] == pytest.approx(50.0)
    assert report["scenario"]["unmet"] == {}


def test_whatif_location_down_leaves_a_pair_it_alone_joined_unconnected(line, tmp_path):
    """Without a - c, b is all that joins a to p: failing it leaves a's demand, every SLO, unmet
    (it was routed through b as if the site still carried traffic)."""
    docs = list(yaml.safe_load_all((line / "fleet.yaml").read_text()))
    fleet = write(tmp_path, *[d for d in docs if d["kind"] != "Settings" and d["metadata"]["name"] != "a-c"])
    scen = whatif(fleet, "--fail-location", "b")["scenario"]
    assert scen["unmet"] == {"far": pytest.approx(200), "m": pytest.approx(200)} and scen["served"] == 0
    assert scen["unmetWhy"] == {"far": {"cut": pytest.approx(200)}, "m": {"cut": pytest.approx(200)}}


def test_whatif_location_down_cuts_off_data_it_alone_joined_to_the_pools(tmp_path):
    """m's data is at c, which b alone joins to a, where p and m's users are: with b down the data
    cannot reach p, which the failure, not the model, is to blame for ("no pool in reach may run
    it: fit rules, required policies or SLO", it said). Its data is not at b: b lists no dataCut."""
    fleet = write(tmp_path, location("a"), location("b"), location("c"), link("a", "b", 5), link("b", "c", 5),
                  pool("p", "a"), inference("m", [{"location": "a", "rate": 200}],
                                             data=[{"location": "c", "gbPerHour": 10}]))
    report = whatif(fleet, "--fail-location", "b")
    assert report["base"]["unmet"] == {}
    assert report["scenario"]["unmetWhy"] == {"m": {"cut": pytest.approx(200)}}
    assert report["failedLocations"]["b"]["dataCut"] == {}


def test_whatif_metrics_give_the_demand_cut_off_with_each_failed_location(scenarios, tmp_path):
    """--metrics-file has placer_whatif_cut_off_demand_rate by failed location, --json's cutOffRate:
    a's 400 units/s left the scenario's demand (600 -> 200) and no metric said where they went."""
    from tests.metricskit import by, samples

    metrics = tmp_path / "whatif.prom"
    r = placer("whatif", str(scenarios), "--fail-location", "a", "--metrics-file", str(metrics))
    assert r.returncode == 0, r.stderr
    found = samples(metrics)
    assert by(found, "placer_whatif_cut_off_demand_rate", "location") == {("a",): 400.0}
    assert by(found, "placer_whatif_demand_rate", "side") == {("base",): 600.0, ("scenario",): 200.0}
    # a scenario that fails no location has the family and no series: nothing was cut off anywhere
    assert placer("whatif", str(scenarios), "--fail-pool", "p", "--metrics-file", str(metrics)).returncode == 0
    assert by(samples(metrics), "placer_whatif_cut_off_demand_rate", "location") == {}


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    """a - b - c, 5 ms a link, and a - c of 30 ms. p: 16 A100 GPUs at a; r: 8 L4 GPUs at b. The data
    of m (200 units/s at a), small (100 at a, L4 only), t (a training job of 8 A100 GPUs) and never (50
    at a, H100 only: no pool may run it) is at b, a data lake; d's (100 at a) at c, which a reaches
    over a - c without b. The base serves m, d on p, small on r, places t on p; never is unmet."""
    return write(
        tmp_path_factory.mktemp("lake"),
        location("a"), location("b"), location("c"), link("a", "b", 5), link("b", "c", 5), link("a", "c", 30),
        pool("p", "a", count=2), pool("r", "b", gpu="L4-24GB"),
        inference("m", [{"location": "a", "rate": 200}], data=[{"location": "b", "gbPerHour": 10}]),
        inference("small", [{"location": "a", "rate": 100}], throughput={"L4-24GB": 100},
                  data=[{"location": "b", "gbPerHour": 10}]),
        training("t", 1, data=[{"location": "b", "gbPerHour": 10}]),
        inference("never", [{"location": "a", "rate": 50}], throughput={"H100-80GB": 100},
                  data=[{"location": "b", "gbPerHour": 10}]),
        inference("d", [{"location": "a", "rate": 100}], data=[{"location": "c", "gbPerHour": 10}]),
    )


@pytest.mark.parametrize("optimizer", ["exact", "scalable"])
def test_whatif_location_down_names_the_models_whose_data_went_with_it(lake, optimizer):
    """b down takes the data of m, small and t with it: no pool up can read it (a pool that data
    cannot reach is out, SPEC 2, and none leaves b), so they are unmet because b failed. They read
    "no pool in reach may run it: fit rules, required policies or SLO" (small: "cut off ... from
    every pool", for r at b), blamed the model, and the verdict said "no collapse". never, which no
    pool could run with b up, stays noPool and is not put down to b; d, whose data at c reaches p
    over a - c, is served."""
    report = whatif(lake, "--fail-location", "b", optimizer=optimizer)
    base, scen = report["base"], report["scenario"]
    assert base["unmet"] == {"never": pytest.approx(50)}
    assert scen["unmetWhy"] == {"m": {"dataCut": pytest.approx(200)}, "small": {"dataCut": pytest.approx(100)},
                                "t": {"dataCut": 1}, "never": {"noPool": pytest.approx(50)}}
    assert report["failedLocations"]["b"]["dataCut"] == {"m": pytest.approx(200), "small": pytest.approx(100), "t": 1}
    assert report["failedLocations"]["b"]["cutOff"] == {}  # no users at b: m's are at a, still there
    assert scen["served"] == pytest.approx(100) and "d" not in scen["unmet"]
    r = placer("whatif", str(lake), "--fail-location", "b", optimizer=optimizer)
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stdout.split())
    assert ("Location b down takes with it: pool r; links a <-> b, b <-> c (no path passes through b); no demand "
            "from users there; the data of m, small, t: 300 units/s and 1 training/batch replica(s) unmet, for no "
            "pool that may run them can read it.") in said, r.stdout
    for model, amount in (("m", "200"), ("small", "100"), ("t", "1")):
        assert re.search(rf"\b{model}\s+│\s+0\s+│\s+{amount}\s+│\s+its data is at failed location b: no pool that may "
                         r"run it can read it", r.stdout), r.stdout
    assert re.search(r"\bnever\s+│\s+50\s+│\s+50\s+│\s+no pool in reach may run it", r.stdout), r.stdout
    assert ("Verdict: partly collapses: 22.22% of demand served and 0 of 1 training/batch replica(s) placed; 300 "
            "units/s and 1 training/batch replica(s) unmet where the model's data is at a failed location, which no "
            "pool that may run it can read; 50 units/s that no pool in reach may run") in said, r.stdout


def test_whatif_every_pool_down_serves_nothing(scenarios):
    r = placer("whatif", str(scenarios), "--fail-pool", "p", "--fail-pool", "q")
    assert r.returncode == 0, r.stderr
    assert "pool p, q down" in r.stdout
    # both down, no pool in reach is full: growing one would serve nothing ("no room in reach" named no pool)
    assert ("Verdict: collapses: 0.00% of demand served; 600 units/s unmet where every pool in reach that may run "
            "it is down.") in " ".join(r.stdout.split()), r.stdout
    assert whatif(scenarios, "--fail-pool", "p", "--fail-pool", "q")["scenario"]["unmetWhy"] == {
        "m": {"down": pytest.approx(600)}}
    assert re.search(r"\bm\s+│\s+0\s+│\s+600\s+│\s+every pool in reach that may run it is down", r.stdout), r.stdout


def test_whatif_calls_a_pool_saturated_that_has_gpus_left_too_few_for_a_replica_short_of_room(tmp_path):
    """p has 8 GPUs: n takes 1 for its 100 of rate, m (2-GPU replicas) 3 replicas for 300 of its
    1,000, and the 8th GPU holds no replica of m. The verdict puts m's 700 down to no room in reach;
    the saturated pools must then name p, where the operator adds capacity (they named none, as p
    used 7 of its 8 GPUs). A 1-GPU model short of room there would fit: for it p is not full."""
    fleet = write(tmp_path, location("a"), pool("p", "a", usd=1.0),
                  inference("m", [{"location": "a", "rate": 1000}], gpus=2),
                  inference("n", [{"location": "a", "rate": 100}]))
    scen = whatif(fleet)["scenario"]
    assert scen["unmetWhy"] == {"m": {"noRoom": pytest.approx(700)}} and scen["gpus"]["used"] == 7
    assert scen["saturated"] == ["p"]
    assert scen["fullFor"] == {"p": {"gpusUsed": 7, "gpusCapacity": 8, "models": ["m"]}}
    r = placer("whatif", str(fleet))
    assert r.returncode == 0, r.stderr
    assert "Saturated pools (1 full): p (7/8 GPUs: too few left for a replica of m)" in " ".join(r.stdout.split())


def test_whatif_counts_unplaced_training_replicas_apart_from_rates(tmp_path):
    """With every pool down, the verdict gives the rate unmet and, apart, the training replicas
    left unplaced (they were in the unmet table, but the verdict spoke of rates alone)."""
    fleet = write(tmp_path, location("a"), pool("p", "a", usd=1.0),
                  inference("m", [{"location": "a", "rate": 200}]), training("t", replicas=1, gpus=2, mem=20))
    r = placer("whatif", str(fleet), "--fail-pool", "p")
    assert r.returncode == 0, r.stderr
    assert ("Verdict: collapses: 0.00% of demand served; 200 units/s and 1 training/batch replica(s) "
            "unmet where every pool in reach that may run it is down.") in " ".join(r.stdout.split())
    report = whatif(fleet, "--fail-pool", "p")
    assert report["scenario"]["unplacedReplicas"] == 1 and report["base"]["unplacedReplicas"] == 0
    assert report["scenario"]["unmet"] == {"m": pytest.approx(200), "t": 1}
    assert report["scenario"]["unplaced"] == {"t": 1} and report["base"]["unplaced"] == {}


def test_whatif_a_fleet_of_training_jobs_all_down_collapses(tmp_path):
    """A fleet with no rate to serve, only training and batch jobs: with every pool down nothing
    runs, a collapse; the verdict said "partly collapses: 100.00% of demand served". With one of
    its two pools down, half the replicas run: a collapse in part, counted in replicas."""
    fleet = write(tmp_path, location("a"), pool("p", "a", count=2), pool("q", "a", usd=2.0),
                  training("t", replicas=2, gpus=8, mem=20), training("b", replicas=2, gpus=4, mem=20, gang=False))
    r = placer("whatif", str(fleet), "--fail-pool", "p", "--fail-pool", "q")
    assert r.returncode == 0, r.stderr
    assert ("Verdict: collapses: 0 of 4 training/batch replica(s) placed; 4 training/batch replica(s) unmet where "
            "every pool in reach that may run it is down.") in " ".join(r.stdout.split()), r.stdout
    r = placer("whatif", str(fleet), "--fail-pool", "p")
    assert r.returncode == 0, r.stderr
    # t's gang (2 x 8 GPUs) fits p alone; b's two 4-GPU replicas fill q
    assert ("Verdict: partly collapses: 2 of 4 training/batch replica(s) placed; 2 training/batch replica(s) unmet "
            "where every pool in reach that may run it is down.") in " ".join(r.stdout.split()), r.stdout
    assert whatif(fleet, "--fail-pool", "p")["scenario"]["replicasWanted"] == 4


def test_whatif_base_side_is_the_base_plan_whatever_the_scenario_fails(tmp_path):
    """The base side reports the base plan: a pool it fills is saturated there though the scenario
    fails it (the base once left out the scenario's failed pools). The scenario's churn is counted
    from the base plan, as its moves are (its cost said 97.50 USD where its moves said 57.50)."""
    fleet = write(tmp_path, location("a"), location("b"), link("a", "b", 5),
                  pool("p", "a", usd=1.0), pool("q", "b", usd=2.0, count=2),
                  inference("m", [{"location": "a", "rate": 800}]))
    report = whatif(fleet, "--fail-pool", "p")
    base, scen = report["base"], report["scenario"]
    assert base["saturated"] == ["p"] and scen["saturated"] == []
    assert scen["fromBase"] == {"started": 8, "stopped": 8, "churnUsd": pytest.approx(4.0)}
    assert scen["cost"]["churnUsd"] == pytest.approx(4.0)
    same = whatif(fleet)["scenario"]
    assert same["fromBase"]["churnUsd"] == 0 and same["cost"]["churnUsd"] == 0


def test_whatif_leaves_a_retired_models_demand_out(tmp_path):
    """A retired model's demand is nobody's to serve, as `plan` counts it: it was in the demand row
    but neither served nor unmet, so "all demand is served" sat beside 91.68% served."""
    fleet = write(tmp_path, location("a"), pool("p", "a", usd=1.0),
                  policy("retire-old", {"retire": {"unusedForDays": 30}}),
                  inference("old", [{"location": "a", "rate": 500}], lastUsed="2026-01-01"),
                  inference("m", [{"location": "a", "rate": 400}], lastUsed="2026-11-27"))
    r = placer("whatif", str(fleet), "--demand-scale", "2", "--now", "2026-11-28", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    for side, demand in (("base", 400), ("scenario", 800)):
        assert report[side]["demand"] == pytest.approx(demand) and report[side]["served"] == pytest.approx(demand)
        assert report[side]["unmet"] == {}
    r = placer("whatif", str(fleet), "--demand-scale", "2", "--now", "2026-11-28")
    assert "Verdict: scales: all demand is served." in r.stdout, r.stdout


@pytest.fixture(scope="module")
def pinned(tmp_path_factory) -> Path:
    """The scenarios' pools, and m pinned to q (AWS) by a required policy, at least 4 replicas."""
    return write(
        tmp_path_factory.mktemp("pinned"),
        location("a"), location("b"), link("a", "b", 5),
        pool("p", "a", usd=1.0),
        pool("q", "b", usd=2.0, provider="aws", count=None, min_nodes=0, max_nodes=2),
        inference("m", [{"location": "a", "rate": 400}], minReplicas=4, labels={"pin": "yes"}),
        inference("free", [{"location": "a", "rate": 200}]),
        policy("pin-to-q", {"allowPools": {}}, models={"labels": {"pin": "yes"}}, pools={"names": ["q"]}),
    )


def test_whatif_names_what_breaks_when_a_scenario_has_no_plan(pinned):
    """AWS down leaves m no pool its pin allows: the scenario has no plan, and the answer names
    the policy and the minimum that conflict, with the arithmetic that shows it."""
    report = whatif(pinned, "--fail-provider", "aws")
    assert report["base"]["feasible"] and report["base"]["unmet"] == {}
    scen = report["scenario"]
    assert scen["feasible"] is False and scen["status"] == "INFEASIBLE"
    assert scen["conflict"]["policies"] == ["pin-to-q"] and scen["conflict"]["models"] == ["m"]
    assert scen["conflict"]["minimal"] is True
    r = placer("whatif", str(pinned), "--fail-provider", "aws")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert re.search(r"The scenario has no feasible plan, a collapse: no placement satisfies required policies "
                     r"pin-to-q \(\S+fleet\.yaml:\d+\) and minReplicas of m \(\S+fleet\.yaml:\d+\) together with "
                     r"the fleet's capacity \(m needs 4 replicas; the pools these policies leave it hold at most 0\); "
                     r"relax one of them \(drop the policy or make it preferred, lower the minReplicas, or add "
                     r"capacity\); other conflicts may remain", text), r.stdout
    assert "Verdict" not in text  # no table of a plan that does not exist


def test_whatif_refuses_a_fleet_with_no_plan_as_it_is(tmp_path):
    """A base that cannot be planned is the fleet's problem, not the scenario's: exit 1, naming it."""
    fleet = write(tmp_path,
                  location("a"), pool("p", "a", usd=1.0),
                  inference("m", [{"location": "a", "rate": 400}], minReplicas=12))
    for extra in ((), ("--json",)):
        r = placer("whatif", str(fleet), "--demand-scale", "2", *extra)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        message = " ".join(r.stderr.split())
        assert "the fleet has no feasible plan as it is, so there is nothing to compare the scenario with" in message
        assert (f"minReplicas of m ({fleet / 'fleet.yaml'}:{line_of(fleet, 'minReplicas')}) with the fleet's "
                "capacity (m needs 12 replicas; the pools it fits hold at most 8)") in message
        assert r.stdout == ""


def test_whatif_on_a_fleet_with_no_plan_as_it_is_says_so_in_its_metrics(scenarios, tmp_path):
    """A base with no plan exits 1, and its --metrics-file was left as it was: the last comparison's
    placer_whatif_collapse 0 and its costs, which an alert went on reading while every run failed. The
    file now says the base has no plan (placer_whatif_feasible{side="base"} 0), the collapse not known
    (NaN, which `placer_whatif_collapse != 0` matches), and no figure of a plan."""
    import math

    from tests.metricskit import by, samples

    metrics = tmp_path / "out" / "whatif.prom"
    r = placer("whatif", str(scenarios), "--demand-scale", "2", "--metrics-file", str(metrics),
               "--metrics-label", "fleet=f")
    assert r.returncode == 0 and samples(metrics)["placer_whatif_collapse"] == {(("fleet", "f"),): 0.0}, r.stderr
    fleet = write(tmp_path, location("a"), pool("p", "a", usd=1.0),
                  inference("m", [{"location": "a", "rate": 400}], minReplicas=12))
    r = placer("whatif", str(fleet), "--demand-scale", "2", "--json", "--metrics-file", str(metrics),
               "--metrics-label", "fleet=f")
    assert r.returncode == 1 and r.stdout == "", r.stderr
    assert "the fleet has no feasible plan as it is" in " ".join(r.stderr.split())
    found = samples(metrics)
    assert sorted(found) == ["placer_whatif_collapse", "placer_whatif_demand_scale", "placer_whatif_feasible"]
    assert math.isnan(found["placer_whatif_collapse"][(("fleet", "f"),)])
    assert by(found, "placer_whatif_feasible", "fleet", "side") == {("f", "base"): 0.0}
    assert found["placer_whatif_demand_scale"] == {(("fleet", "f"),): 2.0}


def test_explain_on_a_fleet_with_no_plan_names_the_conflict(tmp_path):
    fleet = write(tmp_path,
                  location("a"), pool("p", "a", usd=1.0),
                  inference("m", [{"location": "a", "rate": 400}], minReplicas=12))
    r = placer("explain", str(fleet), "m")
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stdout == "", r.stderr
    assert (f"the fleet has no feasible plan, so m has no place: no placement satisfies minReplicas of m "
            f"({fleet / 'fleet.yaml'}:{line_of(fleet, 'minReplicas')}) with the fleet's capacity (m needs 12 replicas; "
            "the pools it fits hold at most 8)") in " ".join(r.stderr.split())


def test_explain_on_a_fleet_with_no_plan_says_why_each_pool_is_out_for_a_model_none_may_run(tmp_path):
    """validate's warning for a model no pool can host sends the reader to `placer explain FLEET m`
    for why each pool is out; where that model's minReplicas (or another's) leaves the fleet no
    plan, explain said only the conflict ("the pools it fits hold at most 0"), never the pools'
    reasons, for that model or any other that no pool may run."""
    fleet = write(tmp_path,
                  location("a"), pool("small", "a", per_node=2), pool("l4", "a", gpu="L4-24GB"),
                  inference("m", [{"location": "a", "rate": 100}], gpus=4, mem=40, minReplicas=2),
                  inference("n", [{"location": "a", "rate": 100}], gpus=4, mem=40),
                  inference("ok", [{"location": "a", "rate": 100}]))
    warned = placer("validate", str(fleet))
    assert "`placer explain FLEET m` says why each pool is out" in warned.stderr + warned.stdout
    for model in ("m", "n"):
        r = placer("explain", str(fleet), model)
        said = " ".join(r.stderr.split())
        assert r.returncode == 1 and "Traceback" not in r.stderr and r.stdout == "", r.stderr
        assert f"the fleet has no feasible plan, so {model} has no place: no placement satisfies minReplicas of m" in said
        assert (f"no pool may run {model}: l4 (memory: needs 40 GiB per GPU; L4-24GB has 24), small (node-size: a "
                "replica needs 4 GPUs on one node; small nodes have 2)") in said, said
    # a model some pool may run has the conflict alone to mend
    r = placer("explain", str(fleet), "ok")
    assert r.returncode == 1 and "no pool may run" not in r.stderr, r.stderr


@pytest.mark.parametrize(("args", "message"), [
    # no name close: the fleet's names, where "no location named 'nowhere'" left the operator to look them up
    (("--fail-location", "nowhere"), "no location named 'nowhere' (the fleet's locations: a, b)"),
    (("--fail-pool", "zz"), "no pool named 'zz' (the fleet's pools: p, q)"),
    (("--fail-provider", "gcp"), "no pool has provider 'gcp' (the fleet's providers: aws, static)"),
    (("--fail-pool", "p", "--fail-pool", "zz"), "no pool named 'zz'"),
    (("--fail-pool", "pp"), "no pool named 'pp'; did you mean 'p'?"),
    # a name of another kind, given to the wrong option: said so, with the option that fails it
    # (it was "no pool named 'a'", and nothing to do)
    (("--fail-pool", "a"), "no pool named 'a'; 'a' is a location: fail it with --fail-location a"),
    (("--fail-location", "q"), "no location named 'q'; 'q' is a pool: fail it with --fail-pool q"),
    (("--fail-pool", "aws"), "no pool named 'aws'; 'aws' is a provider: fail it with --fail-provider aws"),
    (("--fail-provider", "b"), "no pool has provider 'b' (the fleet's providers: aws, static); 'b' is a location: "
     "fail it with --fail-location b"),
    (("--demand-scale", "-1"), "--demand-scale must be a finite number >= 0, not -1"),
    (("--demand-scale", "nan"), "--demand-scale must be a finite number >= 0, not nan"),
    (("--demand-scale", "inf"), "--demand-scale must be a finite number >= 0, not inf"),
    # finite, but its demand is not (it gave an unmet table without the inference models, and
    # "Infinity" in the JSON)
    (("--demand-scale", "1e308"), "--demand-scale 1e+308 asks for more than 1e+15 units/s over the fleet, the most "
     "a what-if counts to the unit (the fleet's demand is 600 units/s: give at most 1.67e+12)"),
])
def test_whatif_refuses_names_the_fleet_lacks(scenarios, args, message):
    """A scenario the fleet cannot take is the user's to mend, not a bug to report: the message
    says what is wrong (an infinite demand scale once reached the solver and came back blaming
    every required policy, exit 0)."""
    r = placer("whatif", str(scenarios), *args)
    assert r.returncode == 1 and message in r.stderr and r.stdout == "", r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr


def tour_commands() -> list[list[str]]:
    """The README tour's commands that only read the example fleet (validate, explain, whatif)."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## A tour", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    out = []
    for line in block.splitlines():
        words = line.split("#", 1)[0].split()
        if words[:1] == ["placer"] and words[1:2] and words[1] in ("validate", "explain", "whatif"):
            out.append(words[1:])
    return out


def test_readme_tour_commands_run_on_the_example_fleet(tmp_path):
    """A newcomer pastes the tour: the model it explains and the provider it fails must exist in
    examples/hybrid (the tour once explained a model the example has no longer); the plan that
    `explain --plan` reads is the one the tour's `placer plan` writes."""
    commands = tour_commands()
    assert sorted(c[0] for c in commands) == ["explain", "explain", "validate", "whatif"]
    plan = tmp_path / "plan.json"
    made = placer("plan", "examples/hybrid", "-o", str(plan))
    assert made.returncode == 0, made.stderr
    for args in commands:
        if "--plan" in args:
            args = [str(plan) if a == "plan.json" else a for a in args]
        r = placer(*args)
        assert r.returncode == 0, f"placer {' '.join(args)}: {r.stderr}"
        if args[0] == "explain":
            assert r.stdout.startswith(f"{args[2]}: "), r.stdout[:200]
            assert "Other pools" in r.stdout and "Next best" in r.stdout


def test_explain_gives_a_fresh_plans_routes_in_a_saved_plans_order(tmp_path):
    """The README's tour explains legal-assistant-70b afresh and `--plan plan.json`, "the same, of a
    saved plan": the fresh one listed its routes in the solver's order (fra-dc1, fra-dc1, edge-muc),
    the saved one by demand location and pool, as the plan file holds them (edge-muc first)."""
    plan = tmp_path / "plan.json"
    made = placer("plan", "examples/hybrid", "-o", str(plan), "--now", "2026-11-28T07:00:00Z")
    assert made.returncode == 0, made.stderr
    fresh = placer("explain", "examples/hybrid", "legal-assistant-70b", "--now", "2026-11-28T07:00:00Z")
    saved = placer("explain", "examples/hybrid", "legal-assistant-70b", "--plan", str(plan))
    assert fresh.returncode == 0 and saved.returncode == 0, fresh.stderr + saved.stderr

    def routes(out: str) -> list[str]:
        return [line for line in out.splitlines() if line.startswith("  demand at ")]

    assert len(routes(saved.stdout)) > 1 and routes(fresh.stdout) == routes(saved.stdout), fresh.stdout + saved.stdout


def test_explain_on_a_retired_model_says_so_once(tmp_path):
    """A model a retire policy takes out: one line with the policy's reason, not the same reason
    on every pool; the fleet's plan is not solved for it (here the fleet has none: the other
    model's minimum cannot hold, and explain still answers, exit 0)."""
    fleet = write(tmp_path,
                  location("a"), pool("p", "a", usd=1.0),
                  policy("retire-old", {"retire": {"unusedForDays": 30}}),
                  inference("old", [{"location": "a", "rate": 100}], lastUsed="2026-01-01"),
                  inference("m", [{"location": "a", "rate": 400}], minReplicas=12, lastUsed="2026-11-27"))
    r = placer("explain", str(fleet), "old", "--now", "2026-11-28")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("old is not placed, on any pool: policy retire-old: "), r.stdout
    assert "p " not in r.stdout and "Other pools" not in r.stdout


def test_whatif_output_stays_short_when_many_models_fall_short():
    """At fleet scale a scenario can leave hundreds of models short and saturate hundreds of pools:
    the terminal lists the largest shortfalls and names the first pools, says how many more there
    are and where to find them all (--json)."""
    from rich.console import Console

    from placer.render.whatif import SATURATED_NAMES, UNMET_ROWS, render

    cost = {"totalUsdPerHour": 0.0, "computeUsdPerHour": 0.0, "unmetUsdPerHour": 0.0}
    side = {"status": "OPTIMAL", "gap": 0.0, "feasible": True, "cost": cost, "demand": 1000.0, "served": 1000.0,
            "gpus": {"used": 0}, "unmet": {}, "saturated": []}
    short = {f"model-{i:03d}": float(i + 1) for i in range(UNMET_ROWS + 7)}
    pools = [f"pool-{i:03d}" for i in range(SATURATED_NAMES + 5)]
    report = {"description": "demand x2", "base": side,
              "scenario": {**side, "served": 1000.0 - sum(short.values()), "unmet": short, "saturated": pools,
                           "unplaced": {"model-000": 1}}}  # a training model, one replica short
    console = Console(width=200, record=True)
    render(report, console)
    text = console.export_text()
    listed = re.findall(r"^ (model-\d+) ", text, re.M)
    assert len(listed) == UNMET_ROWS and listed[0] == f"model-{UNMET_ROWS + 6:03d}"  # the largest first
    assert "model-000" not in listed  # the smallest are counted, not listed
    # 2 + ... + 7 units/s, and model-000's replica apart (once "28.0 in all", rates and replicas summed)
    assert "… and 7 more model(s) short of 27 units/s and 1 training/batch replica(s) in all (--json lists every " \
        "one)" in text
    assert f"Saturated pools ({SATURATED_NAMES + 5} full): pool-000, " in text
    assert f"pool-{SATURATED_NAMES - 1:03d}, and 5 more (--json names every one)" in text
    assert f"pool-{SATURATED_NAMES:03d}" not in text


def test_whatif_shows_each_sides_search_and_doubts_cost_where_it_stopped_short():
    """Each side's status and gap are shown; demand left unserved where pools have room is put
    down to cost as a fact only by a search that finished (a 0.05 s limit left 80 units/s "costing
    more than unmetUsdPerRate charges" where a replica cost 0.8 USD/h against 80)."""
    from rich.console import Console

    from placer.render.whatif import render

    cost = {"totalUsdPerHour": 90.0, "computeUsdPerHour": 10.0, "unmetUsdPerHour": 80.0}
    side = {"status": "OPTIMAL", "gap": 0.0, "feasible": True, "cost": cost, "demand": 1000.0, "served": 920.0,
            "gpus": {"used": 2}, "unmet": {"m": 80.0}, "unmetWhy": {"m": {"cost": 80.0}},
            "unmetByReason": {"cost": {"rate": 80.0, "replicas": 0}}, "saturated": []}
    texts = {}
    for status, gap in (("OPTIMAL", 0.0005), ("FEASIBLE", 0.8), ("FEASIBLE", None)):
        console = Console(width=400, record=True)
        render({"description": "demand x2", "base": side, "scenario": {**side, "status": status, "gap": gap}}, console)
        texts[status, gap] = console.export_text()
    assert "Solver: base OPTIMAL (gap 0.00%), scenario OPTIMAL (gap 0.05%)" in texts["OPTIMAL", 0.0005]
    assert "Solver: base OPTIMAL (gap 0.00%), scenario FEASIBLE (gap n/a)" in texts["FEASIBLE", None]
    charges = "serving them would cost more than Settings objective.unmetUsdPerRate charges"
    assert f"{charges}." in texts["OPTIMAL", 0.0005]
    assert (f"{charges}, or the search stopped before it found how to serve them (FEASIBLE, gap 80.00%; raise "
            "Settings solver.timeLimitSeconds).") in texts["FEASIBLE", 0.8]
    # a re-plan around what runs: its gap, from simple prices, says little, and more time would not
    # bring the whole route's search (it said to raise the time limit, beside the note saying that)
    console = Console(width=400, record=True)
    render({"description": "demand x2", "base": side,
            "scenario": {**side, "status": "FEASIBLE", "gap": 0.36, "gapNote": "re-planned around what runs"}}, console)
    text = console.export_text()
    assert (f"{charges}, or the short search around what runs did not find how to serve them (FEASIBLE; its gap, "
            "36.00%, says little: see the note under Solver).") in text
    assert "(scenario: re-planned around what runs)" in text and "timeLimitSeconds" not in text


def test_whatif_verdict_names_the_unmet_setting_that_charges_each_model():
    """Demand left unserved for its cost names the setting that charges it: unmetUsdPerRate an
    inference model's rate, unmetUsdPerReplica a training or batch model's replicas, each with its
    models where both are left; the verdict said "unmetUsdPerRate (unmetUsdPerReplica)" of either."""
    from rich.console import Console

    from placer.render.whatif import render

    cost = {"totalUsdPerHour": 90.0, "computeUsdPerHour": 10.0, "unmetUsdPerHour": 80.0}
    side = {"status": "OPTIMAL", "gap": 0.0, "feasible": True, "cost": cost, "demand": 1000.0, "served": 1000.0,
            "gpus": {"used": 2}, "unmet": {}, "saturated": [], "replicasWanted": 4}
    training = {"unmet": {"t": 2}, "unplaced": {"t": 2}, "unplacedReplicas": 2, "unmetWhy": {"t": {"cost": 2}},
                "unmetByReason": {"cost": {"rate": 0.0, "replicas": 2}}}
    both = {"served": 920.0, "unmet": {"m": 80.0, "t": 2}, "unplaced": {"t": 2}, "unplacedReplicas": 2,
            "unmetWhy": {"m": {"cost": 80.0}, "t": {"cost": 2}}, "unmetByReason": {"cost": {"rate": 80.0, "replicas": 2}}}
    texts = []
    for scen in (training, both):
        console = Console(width=600, record=True)
        render({"description": "demand x2", "base": side, "scenario": {**side, **scen}}, console)
        texts.append(" ".join(console.export_text().split()))
    assert "cost more than Settings objective.unmetUsdPerReplica charges." in texts[0], texts[0]
    assert "unmetUsdPerRate" not in texts[0]
    assert ("cost more than Settings objective.unmetUsdPerRate (of m) and unmetUsdPerReplica (of t) charge."
            in texts[1]), texts[1]


def test_whatif_rows_show_no_negative_zero_and_no_term_neither_side_pays():
    """A solver's 1e-10 of unmet demand is no term to show, and a change that rounds to nothing
    reads 0.00, not -0.00 (`whatif examples/hybrid --demand-scale 0` showed "unmet demand 0.00 0.00
    -0.00")."""
    from rich.console import Console

    from placer.render.whatif import render

    def side(unmet: float, compute: float, served: float) -> dict:
        cost = {"totalUsdPerHour": compute + unmet, "computeUsdPerHour": compute, "unmetUsdPerHour": unmet}
        return {"status": "OPTIMAL", "gap": 0.0, "feasible": True, "cost": cost, "demand": served, "served": served,
                "gpus": {"used": 2}, "unmet": {}, "saturated": []}

    report = {"description": "demand x0", "base": side(1.4e-10, 4.0, 100.0), "scenario": side(0.0, 4.0 - 1e-9, 100.0)}
    console = Console(width=200, record=True)
    render(report, console)
    text = console.export_text()
    assert "unmet demand" not in text and "-0" not in text, text
    assert re.search(r"^ +compute\s+│\s+4\.00\s+│\s+4\.00\s+│\s+0\.00 *$", text, re.M), text
    assert re.search(r"^ GPUs used\s+│\s+2\s+│\s+2\s+│\s+0 *$", text, re.M), text


def test_whatif_progress_says_which_plan_each_solver_step_belongs_to(scenarios):
    """A long what-if solves twice; its progress lines (the spinner, the CI log's "Still planning…")
    carry the optimizer's own steps, each named for its side, not only "solving the scenario plan"."""
    from placer.fleet import load_fleet
    from placer.whatif import Scenario, compare
    from policies import build_rules

    said: list[str] = []
    compare(load_fleet(str(scenarios)), build_rules(dt.datetime(2026, 1, 1, tzinfo=dt.UTC)),
            Scenario(2.0, frozenset(), frozenset(), frozenset()), said.append)
    base = said.index("solving the base plan")
    scen = said.index("solving the scenario plan")
    assert base < scen
    assert any(s.startswith("base plan: solving") for s in said[base:scen]), said
    assert any(s.startswith("scenario plan: solving") for s in said[scen:]), said


def test_the_scalable_routes_next_best_moves_the_model_alone(tmp_path):
    """On the scalable route the next best is the model moved alone: every other model keeps its
    replicas, the plan is priced as it is (not searched again), and the difference is the move's:
    m from p (1 USD/h a GPU) to q (1.5), the cheaper of the pools left, r being 3."""
    from placer.cost import price
    from placer.fleet import load_fleet
    from placer.optimizer.alone import replace_alone
    from placer.optimizer.solve import optimize
    from policies import build_rules

    fleet = load_fleet(str(write(
        tmp_path, location("a"), pool("p", "a", usd=1.0), pool("q", "a", usd=1.5), pool("r", "a", usd=3.0),
        inference("m", [{"location": "a", "rate": 100}]), inference("n", [{"location": "a", "rate": 400}]),
        training("t", replicas=1, gpus=2, mem=20))))
    rules = build_rules(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    plan = optimize(fleet, rules, time_limit=5).placement
    assert plan is not None and plan.pools_of("m") == {"p": 1}
    base, moved = replace_alone(fleet, rules, plan, "m", ["p"], {})
    assert base.replicas == plan.replicas
    assert moved is not None and moved.pools_of("m") == {"q": 1}
    assert {k: r for k, r in moved.replicas.items() if k[0] != "m"} == {k: r for k, r in plan.replicas.items()
                                                                          if k[0] != "m"}
    assert price(fleet, moved, rules).objective - price(fleet, base, rules).objective == pytest.approx(0.5)
    # kept off every pool that fits it, it goes unplaced: its demand unmet, priced as such
    _, nowhere = replace_alone(fleet, rules, plan, "m", ["p", "q", "r"], {})
    assert nowhere is not None and nowhere.pools_of("m") == {} and nowhere.routed("m", "a") == 0


def test_explain_says_when_moving_the_model_would_save(tmp_path, monkeypatch):
    """A plan whose search stopped short can leave a model where moving it alone costs less (at
    bench XL, 6.48 USD/h less for one model). explain must not call that move the "next best,
    costing -6.48": it says the move is cheaper, and what to do. Here m is put on r (3 USD/h) by
    hand; without r it goes to p, 2 USD/h cheaper."""
    from dataclasses import replace

    from placer.explain import explain
    from placer.fleet import load_fleet
    from placer.optimizer.solve import optimize
    from placer.placement import Placement, Route
    from policies import build_rules

    monkeypatch.setenv("PLACER_OPTIMIZER", "scalable")
    fleet = load_fleet(str(write(
        tmp_path, location("a"), pool("p", "a", usd=1.0), pool("q", "a", usd=1.5), pool("r", "a", usd=3.0),
        inference("m", [{"location": "a", "rate": 100}]), inference("n", [{"location": "a", "rate": 400}]))))
    rules = build_rules(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    result = optimize(fleet, rules, time_limit=5)
    plan = result.placement
    assert plan is not None and result.candidates is not None and plan.pools_of("m") == {"p": 1}
    (route,) = [r for r in plan.routes if r.model == "m"]
    worse = Placement(replicas={**{k: r for k, r in plan.replicas.items() if k[0] != "m"}, ("m", "r"): 1},
                      nodes=plan.nodes, retired=plan.retired,
                      routes=(*[r for r in plan.routes if r.model != "m"], Route("m", "a", "r", 100.0, route.latency_ms)))
    ex = explain(fleet, rules, "m", replace(result, placement=worse), {}, result.candidates)
    assert ex.placed == {"r": 1} and ex.next_best == {"p": 1} and ex.next_best_from_plan
    assert ex.next_best_delta == pytest.approx(-2.0) and ex.next_best_cheaper
    assert ex.next_best_text() == (
        "Without its current pools (every other model where this plan has it): 1 on p, 2.00 USD/h cheaper for the "
        "whole fleet: the plan's search stopped before this move (raise Settings solver.timeLimitSeconds, or plan "
        "again from the applied state)")


def test_a_full_pools_occupants_are_named_biggest_first_and_counted_beyond_eight(tmp_path):
    """At bench L a full edge pool held 15 models, all named; explain names the 8 holding most
    GPUs and counts the rest."""
    pinned = {"labels": {"on": "full"}}
    fleet = write(
        tmp_path, location("a"),
        pool("p", "a", usd=1.0), pool("full", "a", usd=0.5, per_node=10),
        inference("big", [{"location": "a", "rate": 200}], labels={"on": "full"}),
        *(inference(f"n{i}", [{"location": "a", "rate": 100}], labels={"on": "full"}) for i in range(8)),
        inference("m", [{"location": "a", "rate": 100}]),
        policy("stay", {"allowPools": {}}, models=pinned, pools={"names": ["full"]}),
    )
    r = placer("explain", str(fleet), "m")
    assert r.returncode == 0, r.stderr
    assert why_not(r.stdout)["full"] == "eligible but full: 10/10 GPUs taken by big, n0, n1, n2, n3, n4, n5, n6 and 1 more"


def test_explain_says_a_model_with_no_demand_needs_no_replica(tmp_path):
    """z asks for a rate of 0 and has no minReplicas: no plan places it, and explain gave no reason
    but "not chosen (cost)" on a pool with room, as if a replica were too dear for what it serves."""
    fleet = write(tmp_path, location("a"), pool("p", "a", usd=1.0),
                  inference("z", [{"location": "a", "rate": 0}]), inference("m", [{"location": "a", "rate": 100}]))
    r = placer("explain", str(fleet), "z")
    assert r.returncode == 0, r.stderr
    assert ("z is not placed anywhere: it has no demand (every rate is 0) and no minReplicas, so no replica is "
            "needed") in r.stdout, r.stdout
    assert why_not(r.stdout) == {"p": "eligible; not needed (no demand and no minReplicas), 7 of 8 GPUs free"}
    r = placer("explain", str(fleet), "z", "--json")
    assert json.loads(r.stdout)["notNeeded"] == "it has no demand (every rate is 0) and no minReplicas"


def test_explain_says_why_demand_is_unmet(tmp_path):
    """explain gives unmet demand the reason whatif gives it: the model at its maxReplicas, no pool
    in reach with room, or pools with room it would cost more to use than to leave it unmet."""
    fleet = write(tmp_path, location("a"), location("b"), link("a", "b", 5), pool("p", "a", usd=1.0),
                  inference("capped", [{"location": "a", "rate": 800}], throughput={"A100-80GB": 200},
                            maxReplicas=2),
                  inference("tiny", [{"location": "a", "rate": 0.4}]),
                  inference("far", [{"location": "b", "rate": 100, "latencySloMs": 2}]),
                  pool("q", "a", usd=1.0), training("t", replicas=2, gpus=8, mem=20),  # pinned to q: one of
                  # its two replicas fits, and a gang is placed whole or not at all
                  policy("t-on-q", {"allowPools": {}}, models={"names": ["t"]}, pools={"names": ["q"]}))
    said = {}
    for model in ("capped", "tiny", "far", "t"):
        r = placer("explain", str(fleet), model)
        assert r.returncode == 0, r.stderr
        said[model] = " ".join(r.stdout.split())
    assert "demand at a: 400 unmet (at its maxReplicas)" in said["capped"], said["capped"]
    assert "demand at a: 0.40 unmet (cost: pools in reach have room)" in said["tiny"], said["tiny"]
    assert "demand at b: 100 unmet (no pool in reach may run it: fit rules, required policies or SLO)" in \
        said["far"], said["far"]
    # no pool q may run holds the gang whole: unmet at any scale (it was "no room in reach", a collapse)
    assert "2 replica(s) not placed (no pool in reach may run it: none holds its gang of 2 x 8 GPUs)" in said["t"], \
        said["t"]
    assert "q │ eligible but too small for its gang (2 replicas of 8 GPUs, 16 on one pool): it has 8 GPUs" in \
        said["t"], said["t"]


def test_whatif_a_gang_bigger_than_every_pool_is_no_collapse_but_one_crowded_out_is(tmp_path):
    """t's gang (2 x 8 GPUs) fits no pool it may run on (q has 8): unmet at any scale, not a collapse,
    and not for lack of room; whatif called it "no room in reach" and its verdict "collapses". With
    q at 16 GPUs and n pinned there taking 9, the gang fits q but finds no room: that is a collapse.
    A pool the scenario fails counts at its declared size: failing the only pool that holds the gang
    is a collapse too."""
    docs = [location("a"), pool("p", "a", usd=1.0),
            inference("n", [{"location": "a", "rate": 100}]), training("t", replicas=2, gpus=8, mem=20),
            policy("t-on-q", {"allowPools": {}}, models={"names": ["t"]}, pools={"names": ["q"]})]
    (tmp_path / "small").mkdir()
    small = write(tmp_path / "small", *docs, pool("q", "a", usd=1.0))
    report = whatif(small, "--demand-scale", "2")
    scen = report["scenario"]
    assert scen["unmetWhy"]["t"] == {"noPool": 2} and scen["unmetGangs"] == {"t": "2 x 8 GPUs"}, scen
    r = placer("whatif", str(small), "--demand-scale", "2")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "t │ 2 │ 2 │ no pool in reach may run it: none holds its gang of 2 x 8 GPUs" in text, r.stdout
    assert ("Verdict: no collapse, but not all demand is met: 100.00% of demand served and 0 of 2 training/batch "
            "replica(s) placed; 2 training/batch replica(s) that no pool in reach may run "
            "(fit rules, required policies, SLO or a gang bigger than any pool;") in text, r.stdout

    (tmp_path / "crowded").mkdir()
    crowded = write(tmp_path / "crowded", *docs[:2], pool("q", "a", usd=1.0, count=2), *docs[3:],
                    inference("n", [{"location": "a", "rate": 100}], minReplicas=9),
                    policy("n-on-q", {"allowPools": {}}, models={"names": ["n"]}, pools={"names": ["q"]}))
    report = whatif(crowded, "--demand-scale", "2")
    assert report["scenario"]["unmetWhy"]["t"] == {"noRoom": 2} and report["scenario"]["unmetGangs"] == {}
    r = placer("whatif", str(crowded), "--demand-scale", "2")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "t │ 2 │ 2 │ no room in reach" in text, r.stdout
    assert "Verdict: partly collapses:" in text and "2 training/batch replica(s) unmet where no pool in reach has " \
        "room" in text, r.stdout
    said = " ".join(placer("explain", str(crowded), "t").stdout.split())
    assert "2 replica(s) not placed (no room in reach)" in said, said

    (tmp_path / "lost").mkdir()
    lost = write(tmp_path / "lost", *docs, pool("q", "a", usd=1.0, count=2))
    report = whatif(lost, "--fail-pool", "q")
    assert report["base"]["unmet"] == {}, report["base"]
    assert report["scenario"]["unmetWhy"]["t"] == {"down": 2} and report["scenario"]["unmetGangs"] == {}


def test_explain_plan_explains_the_saved_plan_without_planning_again(tmp_path):
    """`explain --plan PLAN` explains what the plan file records (a pull request's plan), not a new
    solve: a plan edited to put m on q is explained with m on q. A plan from another version of
    the fleet, or one whose placements are damaged, is refused with the reason."""
    fleet = write(tmp_path, location("a"), pool("p", "a", usd=1.0), pool("q", "a", usd=2.0),
                  inference("m", [{"location": "a", "rate": 100}]))
    plan = tmp_path / "plan.json"
    r = placer("plan", str(fleet), "-o", str(plan))
    assert r.returncode == 0, r.stderr
    saved = placer("explain", str(fleet), "m", "--plan", str(plan))
    assert saved.returncode == 0, saved.stderr
    assert "m: 1 replica(s) on p; compute 1.00 USD/h" in saved.stdout
    assert "Next best without its current pools: 1 on q, costing +1.00 USD/h" in saved.stdout

    data = json.loads(plan.read_text())
    for entry in (*data["placements"], *data["routes"]):
        entry["pool"] = "q"
    for entry in data["placements"]:  # its target names the pool too (a plan file's check)
        entry["target"]["pool"] = "q"
    plan.write_text(json.dumps(data))
    edited = placer("explain", str(fleet), "m", "--plan", str(plan))
    assert edited.returncode == 0, edited.stderr
    assert "m: 1 replica(s) on q; compute 2.00 USD/h" in edited.stdout
    assert "demand at a: 100 routed to q" in edited.stdout
    assert "1 on p, 1.00 USD/h cheaper for the whole fleet" in " ".join(edited.stdout.split())

    for entry in data["placements"]:  # a pool the fleet lacks: once an internal error (KeyError)
        entry["pool"] = entry["target"]["pool"] = "gone"
    plan.write_text(json.dumps(data))
    renamed = placer("explain", str(fleet), "m", "--plan", str(plan))
    assert renamed.returncode == 1 and "internal error" not in renamed.stderr, renamed.stderr
    assert f"{plan}: the plan names pool 'gone', which the fleet does not have (was it edited by hand?); plan " \
        "again" in " ".join(renamed.stderr.split())

    del data["routes"]
    plan.write_text(json.dumps(data))
    broken = placer("explain", str(fleet), "m", "--plan", str(plan))
    assert broken.returncode == 1 and f"{plan}: plan file is missing routes; it may be truncated: re-plan" \
        in broken.stderr, broken.stderr

    r = placer("plan", str(fleet), "-o", str(plan))
    assert r.returncode == 0, r.stderr
    (fleet / "more.yaml").write_text(yaml.safe_dump(pool("r", "a", usd=0.5)))
    stale = placer("explain", str(fleet), "m", "--plan", str(plan))
    assert stale.returncode == 1 and "was made from another version of" in stale.stderr, stale.stderr
    assert "explain the fleet as it is without --plan, or plan it again" in stale.stderr


def test_whatif_on_the_scalable_route_gives_both_sides_the_same_search(scenarios, monkeypatch):
    """The scalable route's plan is not at its best, and a re-plan from it keeps improving: at bench
    XL, with a pool no plan needs lost, the scenario came out 383.56 USD/h cheaper than the base.
    The base is re-planned from itself first, so losing an unused pool costs nothing (XL: +1.20)."""
    from placer.fleet import load_fleet
    from placer.whatif import Scenario, compare
    from policies import build_rules

    monkeypatch.setenv("PLACER_OPTIMIZER", "scalable")
    said: list[str] = []
    report = compare(load_fleet(str(scenarios)), build_rules(dt.datetime(2026, 1, 1, tzinfo=dt.UTC)),
                     Scenario(fail_pools=frozenset({"q"})), said.append)
    assert "re-planning the base plan from itself, as the scenario will be" in said
    base, scen = report["base"], report["scenario"]
    assert scen["cost"]["totalUsdPerHour"] == pytest.approx(base["cost"]["totalUsdPerHour"])
    assert scen["fromBase"] == {"started": 0, "stopped": 0, "churnUsd": 0.0}


def test_unmet_reasons_check_policies_within_their_time(monkeypatch):
    """m's demand beyond the half of p that required keep-half leaves is held by keep-half; once
    the plan's checks have had their HELD_SECONDS, a pool with room counts as free of policies and
    the demand is put down to cost, as before the checks (bench XL: 0.14 s a check)."""
    import placer.explain as explain_module
    from placer.optimizer import optimize
    from tests.fleetkit import RULES, fleet

    f = fleet(location("a"), pool("p", "a"), inference("m", [{"location": "a", "rate": 800}]),
              policy("keep-half", {"headroom": {"fraction": 0.5}}, pools={"names": ["p"]}))
    placement = optimize(f, RULES).placement
    assert placement is not None and placement.replicas == {("m", "p"): 4}
    assert explain_module.UnmetReasons(f, RULES, placement).why(f.models["m"], "a") == ("policy", {"keep-half": ("p",)})
    monkeypatch.setattr(explain_module, "HELD_SECONDS", 0.0)
    assert explain_module.UnmetReasons(f, RULES, placement).why(f.models["m"], "a") == ("cost", {})


def test_explain_checks_the_cheapest_pools_policies_first_and_says_which_it_could_not(monkeypatch):
    """An eligible pool with room is checked against the required policies cheapest first (at XL
    the checks' time runs out); a pool left unchecked says so rather than "cost"."""
    import time

    import placer.explain as explain_module
    from placer.optimizer import optimize
    from tests.fleetkit import RULES, fleet

    f = fleet(location("a"), pool("dear", "a", usd=2.0), pool("cheap", "a", usd=0.5), pool("home", "a", usd=5.0),
              inference("m", [{"location": "a", "rate": 100}]),
              policy("m-home", {"preferPools": {}}, models={"names": ["m"]}, pools={"names": ["home"]}, penalty=100),
              policy("keep-free", {"headroom": {"fraction": 0.99}}, pools={"names": ["cheap", "dear"]}))
    result = optimize(f, RULES)
    assert result.placement is not None and result.candidates is not None
    assert result.placement.pools_of("m") == {"home": 1}
    checked: list[str] = []
    real = explain_module.UnmetReasons.held_by

    def held_by(self, model, pool):  # the first check uses up the time
        checked.append(pool.name)
        got = real(self, model, pool)
        self._deadline = time.monotonic() - 1
        return got

    monkeypatch.setattr(explain_module.UnmetReasons, "held_by", held_by)
    ex = explain_module.explain(f, RULES, "m", result, {}, result.candidates)
    assert checked == ["cheap", "dear"]
    assert ex.unused["cheap"] == ("eligible; held back by required policy keep-free: one more replica there breaks "
                                  "it, 8 of 8 GPUs free")
    assert ex.unused["dear"] == ("eligible; not chosen (cost, or required policies: their checks' 10 s ran out), 8 "
                                 "of 8 GPUs free")


def test_explain_tells_a_pool_too_full_for_a_replica_held_by_policies_or_without_gpus(tmp_path):
    """An eligible pool the model is not on was "not chosen (cost)" whenever it had a GPU free:
    tight has 2 where a replica needs 4; one more replica on mixed breaks the required
    separateWorkloads (inference runs there); empty has no nodes ("full: 0/0 GPUs taken by
    nobody"). Each is cheaper than dear, where train went."""
    fleet = write(
        tmp_path, location("a"),
        pool("tight", "a", usd=0.5), pool("mixed", "a", usd=0.6), pool("empty", "a", usd=0.1, count=0),
        pool("dear", "a", usd=3.0),
        inference("serve", [{"location": "a", "rate": 600}]), inference("other", [{"location": "a", "rate": 100}]),
        training("train", replicas=1, gpus=4, mem=20),
        policy("serve-on-tight", {"allowPools": {}}, models={"names": ["serve"]}, pools={"names": ["tight"]}),
        policy("other-on-mixed", {"allowPools": {}}, models={"names": ["other"]}, pools={"names": ["mixed"]}),
        policy("apart", {"separateWorkloads": ["training", "inference"]}),
    )
    r = placer("explain", str(fleet), "train")
    assert r.returncode == 0, r.stderr
    assert "train: 1 replica(s) on dear; compute 12.00 USD/h" in r.stdout, r.stdout
    assert why_not(r.stdout) == {
        "tight": "eligible but too full for a replica of 4 GPUs: 2 free, 6/8 taken by serve",
        "mixed": "eligible; held back by required policy apart: one more replica there breaks it, 7 of 8 GPUs free",
        "empty": "eligible, but it has no GPUs (0 nodes)"}


@pytest.mark.parametrize("optimizer", ["exact", "scalable"])
def test_explain_says_when_nothing_else_can_take_the_model(tmp_path, optimizer):
    """m's minimum needs a pool and p is the only one: kept off it, no plan holds. explain said
    nothing of a next best, and printed an empty table of other pools."""
    fleet = write(tmp_path, location("a"), pool("p", "a"), inference("m", [{"location": "a", "rate": 150}],
                                                                     minReplicas=1))
    r = placer("explain", str(fleet), "m", optimizer=optimizer)
    assert r.returncode == 0, r.stderr
    assert "Other pools" not in r.stdout, r.stdout
    assert "No next best without its current pools" in r.stdout
    assert ("no plan of the fleet holds with it kept off them (its minReplicas or required policies need the pools "
            "it has)") in " ".join(r.stdout.split()), r.stdout


def test_explain_gives_the_models_own_terms_of_the_running_cost(tmp_path):
    """"Its cost terms" (the issue): compute, and each other term the model pays (its data moved from
    b: 10 GB/h at 0.1 USD/GB; its unmet demand at 1 USD a unit of rate), not compute alone."""
    fleet = write(tmp_path, location("a"), location("b"), link("a", "b", 5, egress=0.1), pool("p", "a", count=1),
                  inference("m", [{"location": "a", "rate": 900}], data=[{"location": "b", "gbPerHour": 10}]))
    r = placer("explain", str(fleet), "m")
    assert r.returncode == 0, r.stderr
    # 8 replicas serve 800 of its 900: egress by the share served, 800/900 of 1 USD/h
    assert "m: 8 replica(s) on p; compute 8.00, egress 0.89, unmet demand 100.00 USD/h" in r.stdout, r.stdout


def test_explain_gives_the_penalties_of_the_preferred_policies_its_place_breaks(tmp_path):
    """m needs two 8-GPU replicas; p holds one, r the other, which preferred pref-off-r charges
    7 USD/h for. The plan costs 47 USD/h (24 + 16 of compute, 7 of penalty), all of it m's place,
    and explain said "compute 40.00 USD/h" without a word of the 7 its replica on r costs."""
    fleet = write(tmp_path, location("a"), pool("p", "a", usd=3.0), pool("r", "a", usd=2.0),
                  inference("m", [{"location": "a", "rate": 800}], gpus=8, throughput={"A100-80GB": 400}),
                  policy("pref-off-r", {"denyPools": {}}, models={"names": ["m"]}, pools={"names": ["r"]}, penalty=7))
    r = placer("explain", str(fleet), "m")
    assert r.returncode == 0, r.stderr
    assert "m: 1 replica(s) on p, 1 replica(s) on r; compute 40.00 USD/h" in r.stdout, r.stdout
    assert "  breaks preferred policy pref-off-r: 7.00 USD/h of penalty (m: 1 on r)" in r.stdout, r.stdout
    said = json.loads(placer("explain", str(fleet), "m", "--json").stdout)
    assert said["penalties"] == [{"policy": "pref-off-r", "usdPerHour": 7.0, "detail": "m: 1 on r"}]
    plan = json.loads(placer("plan", str(fleet), "--json").stdout)
    assert plan["cost"]["totalUsdPerHour"] == pytest.approx(sum(said["costUsdPerHour"].values()) + 7.0)  # latency 8e-05


def test_a_gangs_reasons_count_the_room_and_policies_of_all_its_replicas():
    """A gang (2 replicas of 8 GPUs, all on one pool or none) was explained by one replica's room
    and one replica's policies: with web's 4 GPUs on big (16), 12 free took one replica of 8, and
    the unplaced gang was "cost: pools in reach have room" (whatif: "scales"); on cheap, required
    keep-60 lets one replica in (8 of 32 used) but not the gang (16 of 32), and explain called it
    "not chosen (cost)"."""
    from placer.explain import NO_ROOM, POLICY, UnmetReasons, explain
    from placer.optimizer import optimize
    from placer.whatif import Scenario, apply_scenario
    from tests.fleetkit import RULES, fleet

    full = fleet(location("dc"), pool("big", "dc", gpu="H100-80GB", count=2),
                 inference("web", [{"location": "dc", "rate": 2000}], throughput={"H100-80GB": 1000}, gpus=2,
                           mem=40, minReplicas=2),
                 training("train", replicas=2, gpus=8, mem=70))
    placement = optimize(full, RULES).placement
    assert placement is not None and placement.missing_replicas(full, "train") == 2
    assert UnmetReasons(full, RULES, placement).why(full.models["train"], None) == (NO_ROOM, {})

    held = fleet(location("dc"), pool("cheap", "dc", gpu="H100-80GB", count=4, usd=1.0),
                 pool("dear", "dc", gpu="H100-80GB", count=2, usd=5.0),
                 training("train", replicas=2, gpus=8, mem=70),
                 policy("keep-60", {"headroom": {"fraction": 0.6}}, pools={"names": ["cheap"]}))
    result = optimize(held, RULES)
    assert result.placement is not None and result.candidates is not None
    assert result.placement.pools_of("train") == {"dear": 2}
    ex = explain(held, RULES, "train", result, {}, result.candidates)
    assert ex.unused["cheap"] == ("eligible; held back by required policy keep-60: its gang there breaks it, "
                                  "32 of 32 GPUs free")
    lost = apply_scenario(held, Scenario(fail_pools=frozenset({"dear"})))
    placement = optimize(lost, RULES).placement
    assert placement is not None and placement.missing_replicas(lost, "train") == 2
    assert UnmetReasons(lost, RULES, placement).why(lost.models["train"], None) == (POLICY, {"keep-60": ("cheap",)})


def test_whatif_plans_its_base_from_the_applied_state_as_plan_does(tmp_path):
    """small runs on l4 (the state says so); l4b is 0.10 USD/h a GPU cheaper, not worth the move,
    so `plan` keeps it there. whatif planned its base afresh (small on l4b), and then `--fail-pool
    l4` changed nothing: 0 started, 0 stopped. Its base is now plan's, read from the state as plan
    and explain read it (--state, else Settings'), and losing l4 moves small's 3 replicas."""
    fleet = write(tmp_path, location("a"), pool("l4", "a", gpu="L4-24GB", per_node=4, count=2, usd=0.6),
                  pool("l4b", "a", gpu="L4-24GB", per_node=4, count=2, usd=0.5),
                  inference("small", [{"location": "a", "rate": 600}], throughput={"L4-24GB": 200}))
    state = tmp_path / "applied.json"
    state.write_text(json.dumps({"version": 1, "lineage": "l", "serial": 1,
                                 "deployments": {"small@l4": {"replicas": 3}}}))
    report = whatif(fleet, "--fail-pool", "l4", "--state", str(state))
    assert report["base"]["cost"]["computeUsdPerHour"] == pytest.approx(1.8)
    assert report["scenario"]["fromBase"]["started"] == 3 and report["scenario"]["fromBase"]["stopped"] == 3
    # with no state applied, the base is planned afresh, as plan plans it
    report = whatif(fleet, "--fail-pool", "l4")
    assert report["base"]["cost"]["computeUsdPerHour"] == pytest.approx(1.5)
    assert report["scenario"]["fromBase"]["started"] == 0


def test_explain_names_the_preferred_policy_that_keeps_a_model_off_a_cheaper_pool():
    """l4 is cheaper for small than h100, but preferred avoid-l4 charges 10 USD/h a replica there:
    explain called l4 "not chosen (cost)", the policy that decided it unnamed."""
    from placer.explain import explain
    from placer.optimizer import optimize
    from tests.fleetkit import RULES, fleet

    f = fleet(location("a"), pool("h100", "a", gpu="H100-80GB", usd=2.0),
              pool("l4", "a", gpu="L4-24GB", per_node=4, count=2, usd=0.5),
              inference("small", [{"location": "a", "rate": 600}], throughput={"L4-24GB": 200, "H100-80GB": 800}),
              policy("avoid-l4", {"denyPools": {}}, models={"names": ["small"]}, pools={"gpuType": ["L4-24GB"]},
                     penalty=10))
    result = optimize(f, RULES)
    assert result.placement is not None and result.candidates is not None
    assert result.placement.pools_of("small") == {"h100": 1}
    ex = explain(f, RULES, "small", result, {}, result.candidates)
    assert ex.unused["l4"] == ("eligible; not chosen (cost: one more replica there adds 10.00 USD/h of penalty for "
                               "preferred policy avoid-l4), 8 of 8 GPUs free")


def _penalty_fleet(off_e: float, unmet_rate: float = 100) -> Fleet:
    """n fills elastic e's one node (8 of 8 GPUs), where preferred e-half (a headroom) charges 4 USD/h;
    a replica of m there takes a second node (9 of 16 GPUs: e-half's penalty 1 USD/h), and
    preferred m-off-e charges ``off_e`` a replica of m there."""
    from tests.fleetkit import fleet

    return fleet(location("a"), pool("p", "a", usd=1.0),
                 pool("e", "a", usd=1.0, provider="aws", count=None, min_nodes=0, max_nodes=2),
                 inference("m", [{"location": "a", "rate": unmet_rate}]), inference("n", [{"location": "a", "rate": 800}]),
                 policy("n-on-e", {"allowPools": {}}, models={"names": ["n"]}, pools={"names": ["e"]}),
                 policy("m-off-e", {"denyPools": {}}, models={"names": ["m"]}, pools={"names": ["e"]}, penalty=off_e),
                 policy("e-half", {"headroom": {"fraction": 0.5}}, pools={"names": ["e"]}, penalty=1.0))


@pytest.mark.parametrize(("off_e", "said"), [
    (0.5, "eligible; not chosen (cost), 8 of 16 GPUs free"),
    (5.0, "eligible; not chosen (cost: one more replica there adds 2.00 USD/h of penalties for preferred policies "
          "e-half (-3.00), m-off-e (+5.00)), 8 of 16 GPUs free")])
def test_a_pools_penalty_note_counts_the_penalties_a_replica_there_lowers(off_e, said):
    """A replica of m on e adds m-off-e's penalty and lowers e-half's by 3 USD/h (e's second node):
    explain named m-off-e alone, "adds 0.50 USD/h of penalty", where the penalties, as price sums
    them, fall 2.50 USD/h in all with it (plain cost), and at 5 USD/h "adds 5.00" where they rise
    2.00."""
    from placer.cost import price
    from placer.explain import explain
    from placer.optimizer import optimize
    from tests.fleetkit import RULES

    f = _penalty_fleet(off_e)
    result = optimize(f, RULES)
    assert result.placement is not None and result.candidates is not None
    assert result.placement.pools_of("m") == {"p": 1} and result.placement.nodes["e"] == 1
    more = replace(result.placement, replicas={**result.placement.replicas, ("m", "e"): 1},
                   nodes={**result.placement.nodes, "e": 2})
    assert price(f, more, RULES).penalty - price(f, result.placement, RULES).penalty == pytest.approx(off_e - 3)
    assert explain(f, RULES, "m", result, {}, result.candidates).unused["e"] == said


def test_unmet_demand_is_put_down_to_a_penalty_only_where_the_penalties_in_all_decide():
    """m's 12 units/s unmet cost 12 USD/h; a replica on e serves them for a second node (8 USD/h),
    adding m-off-e's 5 USD/h and lowering e-half's by 3: serving saves 2 USD/h with every penalty
    counted (a plan whose search stopped short of it), where the unmet reason named m-off-e as what
    makes serving cost more than leaving the demand unmet (5 > 4, e-half's fall uncounted)."""
    from placer.explain import COST, UnmetReasons
    from placer.placement import Placement, Route
    from tests.fleetkit import RULES

    f = _penalty_fleet(5.0, unmet_rate=12)
    plan = Placement({("n", "e"): 8}, {"e": 1}, (Route("n", "a", "e", 800.0, 1.0),))
    assert UnmetReasons(f, RULES, plan).why(f.models["m"], "a") == (COST, {})
    # at 8 USD/h the penalties decide in all (5 USD/h more than the 4 serving saves): named
    f = _penalty_fleet(8.0, unmet_rate=12)
    assert UnmetReasons(f, RULES, plan).why(f.models["m"], "a") == (COST, {"m-off-e": ("e",)})


def test_unmet_reasons_say_which_policy_holds_which_pool():
    """Required cap (a budget of 5 USD/h) holds m back on p1 and p2, keep-half on p1 alone: the
    union, "required policies cap, keep-half forbid more replicas (relax them to serve it)", read
    as if relaxing either would serve more, though without keep-half the budget still binds. The
    policy holding every pool comes first, each other with the pools it holds, and whatif's
    verdict claims no relaxing of a subset serves it."""
    from placer.explain import POLICY, UnmetReasons, reason_text
    from placer.optimizer import optimize
    from placer.render.whatif import _verdict
    from tests.fleetkit import RULES, fleet

    f = fleet(location("dc"), pool("p1", "dc", gpu="H100-80GB", usd=1.0), pool("p2", "dc", gpu="L40S-48GB", per_node=4,
                                                                               usd=0.5),
              inference("m", [{"location": "dc", "rate": 1000, "latencySloMs": 20}], mem=40,
                        throughput={"H100-80GB": 100, "L40S-48GB": 50}),
              policy("keep-half", {"headroom": {"fraction": 0.5}}, pools={"names": ["p1"]}),
              policy("cap", {"budget": {"maxUsdPerHour": 5.0}}, models={"names": ["m"]}))
    placement = optimize(f, RULES).placement
    assert placement is not None
    reason, holds = UnmetReasons(f, RULES, placement).why(f.models["m"], "dc")
    assert reason == POLICY and holds == {"cap": ("p1", "p2"), "keep-half": ("p1",)} and next(iter(holds)) == "cap"
    assert reason_text(reason, holds) == ("required policy cap forbids more replicas on every pool in reach with room "
                                          "(p1, p2); keep-half on p1 as well")
    only = {"keep-half": ("p1",), "spread": ("p2",)}
    assert reason_text(POLICY, only) == ("required policies forbid more replicas on every pool in reach with room, "
                                         "none on all: keep-half on p1; spread on p2")
    verdict, collapses = _verdict({"served": 500, "demand": 1000, "unmetByReason": {POLICY: {"rate": 500.0}},
                                   "unmetPolicyPools": {"m": {"cap": ["p1", "p2"], "keep-half": ["p1"]}}})
    assert not collapses and "relax them to serve it" not in verdict
    assert ("500 units/s held back by required policies where pools in reach have room (cap on every pool in "
            "reach with room; keep-half on some of them): a pool serves more only with every policy that holds it "
            "relaxed") in verdict


def test_plan_names_where_each_member_of_a_conflict_is_defined(tmp_path):
    """An infeasible fleet's error named the policies and models alone, where validate gives each
    problem its file and line: each member now has its path:line (a policy's enforcement, a
    model's minReplicas)."""
    fleet = write(tmp_path, location("a"), pool("p1", "a", failureDomain="fd1"), pool("p2", "a", failureDomain="fd2"),
                  inference("m1", [{"location": "a", "rate": 100}], minReplicas=2),
                  inference("m2", [{"location": "a", "rate": 100}], minReplicas=2),
                  doc("Policy", "spread-all", {"enforcement": "required", "rule": {"spread": {"minFailureDomains": 2}}}),
                  doc("Policy", "max-one", {"enforcement": "required", "rule": {"maxModelsPerPool": 1}}))
    r = placer("plan", str(fleet))
    assert r.returncode == 1, r.stdout
    path = fleet / "fleet.yaml"
    message = " ".join(r.stderr.split())
    assert (f"required policies spread-all ({path}:{line_of(fleet, 'enforcement', 'spread-all')}), max-one "
            f"({path}:{line_of(fleet, 'enforcement', 'max-one')}) and minReplicas of m1 "
            f"({path}:{line_of(fleet, 'minReplicas', 'm1')}), m2 ({path}:{line_of(fleet, 'minReplicas', 'm2')}) "
            "together") in message, message


def budgeted(tmp: Path, cap: float, penalty: float | None = None, counted: list[str] | None = None) -> Path:
    """m (3 replicas of 2 GPUs) pinned to q at 6 USD/h a replica, and n, whose 10 replicas of 1 GPU
    fill p (8 GPUs at 1 USD/h) and then r (2 USD/h): 18 + 8 + 4 = 30 USD/h at the least for the
    minReplicas of the models budget team-cap selects (of the pools it counts, ``counted``)."""
    return write(tmp, location("a"), pool("p", "a", usd=1.0),
                 pool("q", "a", usd=3.0, provider="aws", count=None, min_nodes=0, max_nodes=2),
                 pool("r", "a", usd=2.0),
                 inference("m", [{"location": "a", "rate": 100}], gpus=2, minReplicas=3, labels={"team": "x", "pin": "q"}),
                 inference("n", [{"location": "a", "rate": 100}], minReplicas=10, labels={"team": "x"}),
                 inference("free", [{"location": "a", "rate": 100}], minReplicas=1),
                 policy("pin-q", {"allowPools": {}}, models={"labels": {"pin": "q"}}, pools={"names": ["q"]}),
                 policy("team-cap", {"budget": {"maxUsdPerHour": cap}}, models={"labels": {"team": "x"}},
                        pools={"names": counted} if counted else None, penalty=penalty))


def test_validate_and_plan_name_a_required_budget_that_cannot_pay_for_its_minreplicas(tmp_path):
    """validate passed a fleet whose required budget (29 USD/h) cannot pay for the minReplicas of
    its models (30 USD/h at the least), and plan named the conflict only after a solver search,
    without the arithmetic: validate now fails at the budget's maxUsdPerHour, and plan names the
    same conflict by arithmetic, with the numbers, exit 1."""
    fleet = budgeted(tmp_path, 29)
    path = fleet / "fleet.yaml"
    why = ("their minReplicas cost at least 30.00 USD/h on the cheapest pools allowed (m: 3 replicas, 18.00; n: 10 "
           "replicas, 12.00), over team-cap's maxUsdPerHour of 29; relax one of them (drop a policy or make it "
           "preferred, lower a minReplicas, or raise the maxUsdPerHour); other conflicts may remain")
    r = placer("validate", str(fleet))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert (f"{path}:{line_of(fleet, 'maxUsdPerHour')}: Policy/team-cap: spec.rule.budget.maxUsdPerHour: no placement "
            f"satisfies required policies team-cap, pin-q and minReplicas of m, n together: {why}"
            ) in r.stderr.splitlines(), r.stderr
    r = placer("plan", str(fleet))
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stdout == "", r.stderr
    assert (f"no placement satisfies required policies team-cap ({path}:{line_of(fleet, 'spec', 'team-cap')}), "
            f"pin-q ({path}:{line_of(fleet, 'spec', 'pin-q')}) and minReplicas of m "
            f"({path}:{line_of(fleet, 'minReplicas', 'name: m')}), n ({path}:{line_of(fleet, 'minReplicas', 'name: n')}) "
            f"together: {why}") in " ".join(r.stderr.split()), r.stderr


def one_rule(tmp: Path, rule: str, least: int) -> Path:
    """m (2 GPUs a replica, minReplicas ``least``) may use p and q in location a (pin-a keeps it off
    r, in b), with a required spread over 2 failure domains; or a headroom keeping half of each pool
    free (p and q: 4 of their 8 GPUs, 2 replicas each); or a spot share of 0.25, q then a spot pool
    of 2 nodes (8 replicas), of which p's 4 replicas off spot let 1 be used (5 in all)."""
    rules = {"spread": policy("two-domains", {"spread": {"minFailureDomains": 2}}),
             "headroom": policy("keep-half", {"headroom": {"fraction": 0.5}}),
             "spot": policy("little-spot", {"maxSpotFraction": 0.25})}
    q = (pool("q", "a", spot=True, provider="aws", count=None, min_nodes=0, max_nodes=2) if rule == "spot"
         else pool("q", "a"))
    return write(tmp, location("a"), location("b"), link("a", "b", 5), pool("p", "a"), q, pool("r", "b"),
                 inference("m", [{"location": "a", "rate": 100}], gpus=2, minReplicas=least, labels={"pin": "a"},
                           spotTolerant=True),
                 policy("pin-a", {"allowPools": {}}, models={"labels": {"pin": "a"}}, pools={"location": ["a"]}),
                 rules[rule])


@pytest.mark.parametrize(("rule", "least", "why"), [
    ("spread", 2, "required policies two-domains, pin-a and minReplicas of m together: two-domains spreads m's 2 "
                  "replicas over 2 failure domains, and the pools it may use are all in 1 (a); relax one of them "
                  "(drop a policy or make it preferred, lower the minReplicas, or add capacity)"),
    ("headroom", 5, "required policies pin-a, keep-half and minReplicas of m together with the fleet's capacity (m "
                    "needs 5 replicas; the pools these policies leave it hold at most 4); relax one of them (drop a "
                    "policy or make it preferred, lower the minReplicas, or add capacity)"),
    ("spot", 6, "required policies little-spot, pin-a and minReplicas of m together: little-spot keeps at most 0.25 "
                "of m's replicas on spot pools, and the pools it may use hold 4 off spot: 5 replicas in all at most, "
                "of 6; relax one of them (drop a policy or make it preferred, lower the minReplicas, or add "
                "capacity)"),
])
def test_validate_and_plan_name_a_spread_headroom_or_spot_share_no_plan_with_a_minreplicas_keeps(
        tmp_path, rule, least, why):
    """validate passed a fleet whose minReplicas no plan could place under a required spread (the
    pools the model may use all in one failure domain), headroom (the GPUs it leaves hold fewer
    replicas) or maxSpotFraction (the pools off spot hold too few for the share on spot), found by
    planning random fleets; plan then named the conflict after a solver search, without the
    arithmetic. validate now fails at the minReplicas, and plan names the same conflict."""
    fleet = one_rule(tmp_path, rule, least)
    path = fleet / "fleet.yaml"
    r = placer("validate", str(fleet))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert (f"{path}:{line_of(fleet, 'minReplicas')}: Model/m: spec.minReplicas: no placement satisfies {why}; other "
            "conflicts may remain") in r.stderr.splitlines(), r.stderr
    for optimizer in ("exact", "scalable"):
        r = placer("plan", str(fleet), optimizer=optimizer)
        assert r.returncode == 1 and "Traceback" not in r.stderr and r.stdout == "", r.stderr
        named = why.replace("m together", f"m ({path}:{line_of(fleet, 'minReplicas')}) together")
        for name in [n for n in ("two-domains", "keep-half", "little-spot", "pin-a") if n in why]:
            named = named.replace(f"{name},", f"{name} ({path}:{line_of(fleet, 'spec', name)}),").replace(
                f"{name} and", f"{name} ({path}:{line_of(fleet, 'spec', name)}) and")
        assert named in " ".join(r.stderr.split()), r.stderr


@pytest.mark.parametrize(("rule", "least"), [("spread", 1), ("headroom", 4), ("spot", 5)])
def test_a_spread_headroom_or_spot_share_the_minreplicas_fit_validates_and_plans(tmp_path, rule, least):
    """Below the spread's N replicas, within the GPUs a headroom leaves, or the spot share, there is a plan."""
    fleet = one_rule(tmp_path, rule, least)
    r = placer("validate", str(fleet))
    assert r.returncode == 0, r.stderr
    r = placer("plan", str(fleet), "--json")
    assert r.returncode == 0, r.stderr
    assert sum(p["replicas"] for p in json.loads(r.stdout)["placements"]) >= least


def capped(tmp: Path, rule: str, tight: bool) -> Path:
    """Models whose minReplicas each fit alone and not together under a required rule that caps what
    of them some pools take: ``spot``, m1 and m2 (4 replicas each, 2 when not ``tight``) under a spot
    share of 0.5, each needing half off spot, where the one pool off spot, off, holds 3; ``spread``,
    m1 and m2 (2 replicas each, 1) over 2 failure domains, each needing one in b, whose one pool holds
    1; ``places``, m1, m2 and m3 (2 replicas each) under maxModelsPerPool 1 (2) on p and q."""
    demand = [{"location": "a", "rate": 100}]
    places = [location("a"), location("b"), link("a", "b", 5)]
    if rule == "spot":
        least = 4 if tight else 2
        return write(tmp, *places, pool("off", "a", per_node=3), pool("sp", "a", spot=True),
                     *(inference(m, demand, minReplicas=least, spotTolerant=True) for m in ("m1", "m2")),
                     policy("half-spot", {"maxSpotFraction": 0.5}))
    if rule == "spread":
        least = 2 if tight else 1
        return write(tmp, *places, pool("p", "a"), pool("q", "b", per_node=1),
                     *(inference(m, demand, minReplicas=least) for m in ("m1", "m2")),
                     policy("two-domains", {"spread": {"minFailureDomains": 2}}))
    return write(tmp, *places, pool("p", "a"), pool("q", "b"),
                 *(inference(m, demand, minReplicas=2) for m in ("m1", "m2", "m3")),
                 policy("one-each", {"maxModelsPerPool": 1 if tight else 2}))


CAPPED = {
    "spot": ("half-spot", "they take at least 8 GPUs (m1 4 x 1 GPU, m2 4 x 1 GPU) and the only pools they may use "
             "hold 11 (sp 8, off 3), but the maxSpotFraction of half-spot keeps at most 2 of m1's 4, 2 of m2's 4 "
             "minReplicas on spot pools (sp): they hold at most 7 of those GPUs"),
    "spread": ("two-domains", "they take at least 4 GPUs (m1 2 x 1 GPU, m2 2 x 1 GPU) and the only pools they may "
               "use hold 9 (p 8, q 1), but the spread of two-domains keeps at most 1 of m1's 2, 1 of m2's 2 "
               "minReplicas in any one failure domain (p in a, q in b): they hold at most 3 of those GPUs"),
    "places": ("one-each", "one-each lets each of its pools host 1 of the models it selects, and the only pools these "
               "may use, p, q, host 2 in all; their minReplicas take places on 3 (pools each needs at least: m1 1, "
               "m2 1, m3 1)"),
}


# what capacity mends a spot share's or a spread's conflict: the pools the models fill, not every pool they may use
MORE_ROOM = {"spot": "add capacity to off or a pool they may use off spot",
             "spread": "add capacity to q or a pool they may use in a failure domain of its own"}


@pytest.mark.parametrize("rule", ["spot", "spread", "places"])
def test_validate_refuses_minreplicas_a_spread_spot_share_or_maxmodelsperpool_keeps_from_sharing(tmp_path, rule):
    """validate passed fleets whose models' minReplicas each fit alone and not together under a
    required spot share, spread or maxModelsPerPool, and plan then refused them after its solver's
    search: validate now fails, at each model's minReplicas (the spot share, the spread) or the
    policy's maxModelsPerPool, with the numbers; plan still names the policy and the minimums."""
    name, why = CAPPED[rule]
    fleet = capped(tmp_path, rule, tight=True)
    path = fleet / "fleet.yaml"
    r = placer("validate", str(fleet))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    models = ["m1", "m2", "m3"] if rule == "places" else ["m1", "m2"]
    what = f"no placement satisfies required policies {name} and minReplicas of {', '.join(models)} together"
    if rule == "places":
        wanted = [f"{path}:{line_of(fleet, 'maxModelsPerPool')}: Policy/one-each: spec.rule.maxModelsPerPool: {what}: "
                  f"{why}; relax one of them (drop the policy or make it preferred, lower a minReplicas, or raise "
                  "one-each's maxModelsPerPool or add a pool they may use); other conflicts may remain"]
    else:
        wanted = [f"{path}:{line_of(fleet, 'minReplicas', f'name: {m}')}: Model/{m}: spec.minReplicas: {what} with the "
                  f"fleet's capacity: {why}; relax one of them (drop the policy or make it preferred, lower a "
                  f"minReplicas, or {MORE_ROOM[rule]}); other conflicts may remain" for m in models]
    assert [line for line in r.stderr.splitlines() if "no placement" in line] == wanted, r.stderr
    r = placer("plan", str(fleet))
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stdout == "", r.stderr
    assert f"no placement on the fleet's pools satisfies required policies {name} (" in " ".join(r.stderr.split())


@pytest.mark.parametrize(("rule", "named", "other"), [("spot", "off", "sp"), ("spread", "q", "p")])
def test_a_spot_share_or_spread_conflict_names_the_pools_whose_capacity_mends_it(tmp_path, rule, named, other):
    """validate's advice on a conflict under a spot share or a spread was "add capacity to those pools", every
    pool the models may use: a second node on the spot pool sp (the spread's p, in the failure domain that
    already holds what the spread lets it) left the fleet refused as before. It names the pools the models
    fill: a second node there validates; one on the other pool does not, and the advice does not name it."""
    fleet = capped(tmp_path, rule, tight=True)
    r = placer("validate", str(fleet))
    assert r.returncode == 1 and MORE_ROOM[rule] in r.stderr and f"capacity to {other}" not in r.stderr, r.stderr
    docs = list(yaml.safe_load_all((fleet / "fleet.yaml").read_text()))
    for grown, passes in ((other, False), (named, True)):
        more = [{**d, "spec": {**d["spec"], "nodes": {"count": 2}}} if d["metadata"]["name"] == grown
                and d["kind"] == "Pool" else d for d in docs]
        (fleet / "fleet.yaml").write_text(yaml.safe_dump_all(more, sort_keys=False))
        r = placer("validate", str(fleet))
        assert (r.returncode == 0) == passes, (grown, r.stderr)


def many_domains(tmp: Path, q_nodes: int) -> Path:
    """m1 and m2 (2 replicas each) over 2 failure domains may use p (8 GPUs, in a), q (``q_nodes`` GPUs,
    in b) and r0..r7 (1 GPU each, a domain of its own), which fill's 8 minReplicas, pinned there, fill:
    m1 and m2 each need one replica outside a, and only q has room for them."""
    demand = [{"location": "a", "rate": 100}]
    rs = [f"r{i}" for i in range(8)]
    return write(tmp, location("a"), location("b"), link("a", "b", 5), pool("p", "a"),
                 pool("q", "b", per_node=1, count=q_nodes),
                 *(pool(r, "b", per_node=1, failureDomain=r) for r in rs),
                 *(inference(m, demand, minReplicas=2) for m in ("m1", "m2")),
                 inference("fill", demand, minReplicas=8, labels={"pin": "r"}),
                 policy("on-r", {"allowPools": {}}, models={"labels": {"pin": "r"}}, pools={"names": rs}),
                 policy("two-domains", {"spread": {"minFailureDomains": 2}}))


def test_validate_checks_a_spread_over_models_of_more_than_8_failure_domains(tmp_path):
    """A spread's cap was left off models whose pools span more than 8 failure domains (its flow took
    bench XL's check to 7 s): m1 and m2, whose pools span 10, passed validate, and plan refused the
    fleet after its search. validate now fails at their minReplicas, with the spread's numbers; with a
    second node on q it passes, and plan places them."""
    fleet = many_domains(tmp_path, 1)
    r = placer("validate", str(fleet))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    said = [line for line in r.stderr.splitlines() if "no placement" in line]
    assert len(said) == 3 and all("they take at least 12 GPUs (m1 2 x 1 GPU, m2 2 x 1 GPU, fill 8 x 1 GPU) and the "
                                  "only pools they may use hold 17 (p 8, q 1, and 8 more), but the spread of" in line
                                  for line in said), r.stderr
    assert "minReplicas of m1, m2, fill together" in said[0] and "they hold at most 11 of those GPUs" in said[0]
    assert "add capacity to q, r0, r1, r2, r3, and 4 more or a pool they may use in a failure domain" in said[0]
    r = placer("plan", str(fleet))
    assert r.returncode == 1 and "no placement" in r.stderr, r.stderr
    (tmp_path / "more").mkdir()
    fleet = many_domains(tmp_path / "more", 2)
    r = placer("validate", str(fleet))
    assert r.returncode == 0, r.stderr
    r = placer("plan", str(fleet), "--json")
    assert r.returncode == 0, r.stderr


def spot_and_spread(tmp: Path, shared: bool, tight: bool) -> Path:
    """A required spread and a required spot share on the same models, their pools off spot in fewer
    failure domains than the spread asks for, so that it puts a replica of each on spot. Not ``shared``:
    m (minReplicas 4) over 3 domains, pa and pb (2 GPUs each, in a and b) off spot and sc (spot, in c),
    a spot share of 0.1 (0.25 when not ``tight``): its replica on sc takes 10 replicas in all, 9 off spot,
    where pa and pb hold 4 (3 when 0.25: 4 in all). ``shared``: m1 and m2 (minReplicas 2) over 2 domains,
    off (4 GPUs, in a; 6 when not ``tight``) and sp (spot, in b), a share of 0.25: each takes 4 replicas,
    3 off spot, 6 in all, where each alone fits."""
    demand = [{"location": "a", "rate": 100}]
    if not shared:
        return write(tmp, location("a"), location("b"), location("c"), link("a", "b", 5), link("b", "c", 5),
                     pool("pa", "a", per_node=2), pool("pb", "b", per_node=2), pool("sc", "c", spot=True),
                     inference("m", demand, minReplicas=4, spotTolerant=True),
                     policy("three-domains", {"spread": {"minFailureDomains": 3}}),
                     policy("little-spot", {"maxSpotFraction": 0.1 if tight else 0.25}))
    return write(tmp, location("a"), location("b"), link("a", "b", 5), pool("off", "a", per_node=4 if tight else 6),
                 pool("sp", "b", spot=True), *(inference(m, demand, minReplicas=2, spotTolerant=True) for m in ("m1", "m2")),
                 policy("two-domains", {"spread": {"minFailureDomains": 2}}),
                 policy("quarter-spot", {"maxSpotFraction": 0.25}))


SPOT_AND_SPREAD = {
    False: ("required policies three-domains, little-spot and minReplicas of m together: three-domains spreads m's 4 "
            "replicas over 3 failure domains and little-spot keeps at most 0.1 of them on spot pools, but the pools it "
            "may use off spot are in 2 domains (a, b): 1 must go on spot pools in another (c), which takes 10 replicas "
            "in all; the pools off spot hold 4 replicas, so at most 0 can be on spot; relax one of them (drop a policy "
            "or make it preferred, lower the minReplicas, or add a pool it may use off spot in another failure domain, "
            "or capacity off spot to hold 9 of its replicas there)"),
    True: ("required policies two-domains, quarter-spot and minReplicas of m1, m2 together with the fleet's capacity: "
           "they take at least 8 GPUs (m1 4 x 1 GPU (two-domains puts 1 on spot pools: 4 replicas for its 2 "
           "minReplicas), m2 4 x 1 GPU (two-domains puts 1 on spot pools: 4 replicas for its 2 minReplicas)) and the "
           "only pools they may use hold 12 (sp 8, off 4), but the maxSpotFraction of quarter-spot keeps at most 1 of "
           "m1's 4, 1 of m2's 4 replicas on spot pools (sp): they hold at most 6 of those GPUs; relax one of them "
           "(drop a policy or make it preferred, lower a minReplicas, or add capacity to off or a pool they may use off "
           "spot)"),
}


@pytest.mark.parametrize("shared", [False, True], ids=["one-model", "shared-pools"])
def test_validate_and_plan_name_a_spot_share_and_spread_that_cannot_hold_together(tmp_path, shared):
    """A required spread and spot share on the same models, each of which a plan with the minReplicas
    keeps alone, and not both: the spread puts replicas on spot pools (their pools off spot are in too few
    failure domains), and the share then wants more replicas off spot than the pools there hold, for one
    model or for two sharing them. validate passed both fleets, and plan refused them after its search
    without the arithmetic; validate now fails at each minReplicas with the numbers, and plan names the
    one model's conflict the same way."""
    from placer.spec.diagnostics import MOST_MESSAGE, clipped

    fleet = spot_and_spread(tmp_path, shared, tight=True)
    r = placer("validate", str(fleet))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    why = clipped(f"no placement satisfies {SPOT_AND_SPREAD[shared]}; other conflicts may remain", MOST_MESSAGE)
    path = fleet / "fleet.yaml"
    assert [line for line in r.stderr.splitlines() if "no placement" in line] == [
        f"{path}:{line_of(fleet, 'minReplicas', f'name: {m}')}: Model/{m}: spec.minReplicas: {why}"
        for m in (["m1", "m2"] if shared else ["m"])], r.stderr
    r = placer("plan", str(fleet))
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stdout == "", r.stderr
    said = " ".join(r.stderr.split())
    if shared:
        assert "no placement on the fleet's pools satisfies required policies two-domains (" in said, r.stderr
    else:
        assert "three-domains spreads m's 4 replicas over 3 failure domains and little-spot keeps" in said, r.stderr
        assert "or capacity off spot to hold 9 of its replicas there)" in said, r.stderr


@pytest.mark.parametrize("shared", [False, True], ids=["one-model", "shared-pools"])
def test_a_spot_share_and_spread_that_hold_together_validate_and_plan(tmp_path, shared):
    """A share of 0.25 lets m's replica on sc among 4 (3 off spot, which pa and pb hold); off of 6 GPUs holds
    m1's and m2's 3 off spot each: validate passes and plan places them."""
    fleet = spot_and_spread(tmp_path, shared, tight=False)
    r = placer("validate", str(fleet))
    assert r.returncode == 0, r.stderr
    r = placer("plan", str(fleet), "--json")
    assert r.returncode == 0, r.stderr


def crowded_spread(tmp: Path, share: float | None, pa_gpus: int, pb_gpus: int = 1) -> Path:
    """m (minReplicas 2, spot tolerant) under a required spread over 2 failure domains may use pa (in a,
    ``pa_gpus`` GPUs), pb (in b, ``pb_gpus``) and sb (spot, in b); fill (minReplicas 1), pinned to pb by
    on-pb, takes pb's 1 GPU, so m's replica in b goes on sb. With a required spot share of ``share``
    (0.25): 1 on spot takes 4 replicas in all, 3 off spot, on pa."""
    demand = [{"location": "a", "rate": 100}]
    docs = [location("a"), location("b"), link("a", "b", 5), pool("pa", "a", per_node=pa_gpus),
            pool("pb", "b", per_node=pb_gpus), pool("sb", "b", spot=True),
            inference("m", demand, minReplicas=2, spotTolerant=True),
            inference("fill", demand, minReplicas=1, labels={"pin": "b"}),
            policy("on-pb", {"allowPools": {}}, models={"labels": {"pin": "b"}}, pools={"names": ["pb"]}),
            policy("two-domains", {"spread": {"minFailureDomains": 2}})]
    return write(tmp, *docs, *([policy("little-spot", {"maxSpotFraction": share})] if share is not None else []))


CROWDED = ("two-domains spreads m's 2 replicas over 2 failure domains, but in b the pools it may use off spot (pb) "
           "are taken by the minReplicas of fill: 1 of its replicas must go on spot pools (sb), in every plan")


def test_validate_warns_and_plan_names_the_domains_where_others_push_a_spread_onto_spot(tmp_path):
    """fill's minReplicas take pb, m's one pool off spot in failure domain b, so m's spread puts its replica
    in b on sb (spot), and a spot share of 0.25 then wants 3 replicas off spot, where pa holds 2: no plan.
    validate said nothing (its checks of a spread and a spot share each count a model's pools, not what
    other models' minimums take of them), and plan named the policies and minimums, and no failure domain
    and no numbers. validate now warns at m's minReplicas that plan will find no placement, and plan says
    why, naming the spread, the domain and the pools."""
    fleet = crowded_spread(tmp_path, 0.25, pa_gpus=2)
    path = fleet / "fleet.yaml"
    r = placer("validate", str(fleet))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    said = " ".join(r.stderr.split())
    assert (f"{path}:{line_of(fleet, 'minReplicas')}: Model/m: spec.minReplicas: warning: {CROWDED}, and little-spot "
            "keeps at most 0.25 of them on spot pools, which takes 4 replicas in all; its pools off spot in the domains "
            "left to it (a) hold 2 replicas, so at most 0 can be on spot: plan will find no placement; add capacity to "
            "pb or a pool off spot in b, or capacity off spot to hold 3 of its replicas there") in said, r.stderr
    for optimizer in ("exact", "scalable"):
        r = placer("plan", str(fleet), optimizer=optimizer)
        assert r.returncode == 1 and "Traceback" not in r.stderr and r.stdout == "", r.stderr
        said = " ".join(r.stderr.split())
        assert "no placement satisfies required policies on-pb (" in said and "two-domains (" in said, r.stderr
        assert "little-spot (" in said and "and minReplicas of m (" in said and "fill (" in said, r.stderr
        assert (f"together: {CROWDED}, and little-spot keeps at most 0.25 of them on spot pools, which takes 4 "
                "replicas in all; its pools off spot in the domains left to it (a) hold 2 replicas, so at most 0 can "
                "be on spot; relax one of them (drop a policy or make it preferred, lower a minReplicas, or add "
                "capacity to pb or a pool off spot in b, or capacity off spot to hold 3 of its replicas there)"
                ) in said, r.stderr


@pytest.mark.parametrize(("share", "pa_gpus"), [(None, 8), (0.25, 3)], ids=["no-share", "share-fits"])
def test_validate_warns_of_a_spread_others_push_onto_spot_that_plan_places(tmp_path, share, pa_gpus):
    """Without a spot share, or with pa holding m's 3 replicas off spot, there is a plan, with m's replica in
    b on sb: validate warns that the spread rests on spot there (spot can be reclaimed), passes, and plan
    places m on pa and sb."""
    fleet = crowded_spread(tmp_path, share, pa_gpus)
    r = placer("validate", str(fleet))
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stderr.split())
    assert f"Model/m: spec.minReplicas: warning: {CROWDED}" in said, r.stderr
    assert ("spot capacity can be reclaimed at any time, taking those replicas out of the spread: if it should not "
            "rest on spot, add capacity to pb or a pool off spot in b") in said and "no placement" not in said, r.stderr
    r = placer("plan", str(fleet), "--json")
    assert r.returncode == 0, r.stderr
    placed = {(p["model"], p["pool"]): p["replicas"] for p in json.loads(r.stdout)["placements"]}
    assert placed[("m", "sb")] == 1 and placed[("fill", "pb")] == 1 and placed[("m", "pa")] >= 1, placed


def test_validate_does_not_warn_of_a_spread_with_room_off_spot_in_every_domain(tmp_path):
    """pb of 2 GPUs holds fill's replica and one of m's: the spread needs no spot pool, and validate says nothing."""
    fleet = crowded_spread(tmp_path, 0.25, pa_gpus=2, pb_gpus=2)
    r = placer("validate", str(fleet))
    assert r.returncode == 0 and "warning" not in r.stderr + r.stdout, r.stderr + r.stdout


@pytest.mark.parametrize("rule", ["spot", "spread", "places"])
def test_minreplicas_a_spread_spot_share_or_maxmodelsperpool_lets_share_validate_and_plan(tmp_path, rule):
    """One step looser (fewer minReplicas, or 2 models a pool) there is a plan, and validate passes."""
    fleet = capped(tmp_path, rule, tight=False)
    r = placer("validate", str(fleet))
    assert r.returncode == 0, r.stderr
    r = placer("plan", str(fleet), "--json")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(("cap", "penalty", "counted"), [
    (30, None, None),  # exactly the least the minReplicas cost
    (29, 100.0, None),  # a preferred budget is paid for, never a conflict
    (22, None, ["q", "r"]),  # n's 8 replicas on p, a pool it does not count, cost it nothing: 18 + 4
], ids=["exactly-enough", "preferred", "pools-it-does-not-count"])
def test_a_budget_the_minreplicas_fit_in_validates_and_plans(tmp_path, cap, penalty, counted):
    """The budget's bound is a lower one: a fleet it passes has a plan, within the budget."""
    fleet = budgeted(tmp_path, cap, penalty, counted)
    r = placer("validate", str(fleet))
    assert r.returncode == 0 and "cost at least" not in r.stderr + r.stdout, r.stderr
    r = placer("plan", str(fleet), "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    placed = {(p["model"], p["pool"]): p["replicas"] for p in got["placements"]}
    assert placed[("m", "q")] == 3 and placed.get(("n", "p"), 0) + placed.get(("n", "r"), 0) + placed.get(("n", "q"), 0) == 10
    assert got["violations"] == [] or penalty is not None, got["violations"]


@pytest.mark.parametrize("width", [40, 24])
def test_whatif_never_cuts_a_number_on_a_narrow_terminal(width):
    """On 40 columns the change column read "+5,020.…": a number column is as wide as its widest
    cell, the labels fold, and where even that does not fit the table is as wide as it needs."""
    from rich.console import Console

    from placer.render.whatif import render

    def side(unmet: float, compute: float, served: float, models: dict) -> dict:
        cost = {"totalUsdPerHour": compute + unmet, "computeUsdPerHour": compute, "unmetUsdPerHour": unmet}
        return {"status": "OPTIMAL", "gap": 0.0, "feasible": True, "cost": cost, "demand": 20000, "served": served,
                "gpus": {"used": 23}, "unmet": models, "saturated": [], "unmetWhy": {m: {"noRoom": v} for m, v in
                                                                                      models.items()}}

    report = {"description": "demand x5", "base": side(0.0, 84.0, 20000, {}),
              "scenario": side(5000.0, 104.02, 17000, {"a-model-with-a-long-name": 3000.0})}
    console = Console(width=width, record=True, soft_wrap=True)
    render(report, console)
    text = console.export_text()
    for number in ("+5,020.02", "5,104.02", "+5,000.00", "-3,000"):
        assert number in text, text
    assert re.search(r"│\s+3,000\s+│", text), text  # the unmet table's cell
    assert "…" not in text, text


def test_whatif_refuses_a_location_with_no_pools_and_names_no_providers_of_a_poolless_fleet():
    """Failing a location that has no pools gave an unchanged scenario without a word; a provider
    on a fleet with no pools was refused with "(the fleet's providers: )"."""
    from placer.whatif import Scenario, check
    from tests.fleetkit import fleet

    f = fleet(location("a"), location("empty"), pool("p", "a"), inference("m", [{"location": "a", "rate": 100}]))
    assert check(f, Scenario(fail_locations=frozenset({"empty"}))) == [
        "location 'empty' has no pools, links, demand or data, so nothing fails there"]
    assert check(f, Scenario(fail_locations=frozenset({"a"}))) == []
    # one with no pools that carries paths or users fails them
    hub = fleet(location("a"), location("b"), location("c"), link("a", "b", 5), link("b", "c", 5), pool("p", "c"),
                inference("m", [{"location": "a", "rate": 100}]))
    assert check(hub, Scenario(fail_locations=frozenset({"b"}))) == []
    bare = fleet(location("a"), inference("m", [{"location": "a", "rate": 100}]))
    assert check(bare, Scenario(fail_providers=frozenset({"static"}))) == [
        "no pool has provider 'static' (the fleet has no pools)"]


def _half_spot(tmp: Path, **enforcement: float) -> Path:
    """m's 200 units/s at a are served by spot (0.5 USD/h a GPU); half-spot (maxSpotFraction 0.5)
    asks for as many replicas off spot, and far's are the cheapest (b: no egress while idle)."""
    return write(tmp, location("a"), location("b"), link("a", "b", 5, egress=1),
                 pool("spot", "a", usd=0.5, spot=True), pool("od", "a", usd=4.0), pool("far", "b", usd=1.0),
                 inference("m", [{"location": "a", "rate": 200, "latencySloMs": 50}],
                           data=[{"location": "a", "gbPerHour": 100}], spotTolerant=True),
                 inference("n", [{"location": "a", "rate": 100}], minReplicas=3, gpuTypes=["A100-80GB"]),
                 policy("half-spot", {"maxSpotFraction": 0.5}, models={"names": ["m"]},
                        penalty=enforcement.get("penalty")))


def test_explain_says_which_rule_holds_replicas_no_route_needs(tmp_path):
    """m's 2 replicas on far serve nothing: explain said "2 replica(s) on far" and routed all the
    demand to spot, which a reader took for a bug. It now says which rule one replica fewer breaks
    (the policies' own checks), in the text and in --json; n's minReplicas holds its idle two."""
    fleet = _half_spot(tmp_path)
    r = placer("explain", str(fleet), "m")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "m: 2 replica(s) on far, 2 replica(s) on spot" in text, r.stdout
    assert ("far: 2 replica(s) serve no demand now; held by required policy half-spot (one fewer there breaks it: "
            "m: 2 of 3 replicas on spot (max 0.5))") in text, r.stdout
    assert "spot: " not in text.split("routed to spot", 1)[1]  # the pool whose replicas serve is not listed

    r = placer("explain", str(fleet), "m", "--json")
    assert r.returncode == 0, r.stderr
    said = json.loads(r.stdout)
    assert said["placed"] == {"far": 2, "spot": 2}
    [idle] = said["idle"]
    assert idle["pool"] == "far" and idle["idle"] == idle["heldByRequired"] == 2 and idle["notNeeded"] == 0
    assert idle["requiredRules"] == [{"rule": "half-spot", "broken": "m: 2 of 3 replicas on spot (max 0.5)"}]
    assert said["costUsdPerHour"]["compute"] == pytest.approx(3.0)

    r = placer("explain", str(fleet), "n")
    assert r.returncode == 0, r.stderr
    [pool_of_n] = [p for p in ("od", "far", "spot") if f"3 replica(s) on {p}" in r.stdout]
    assert (f"{pool_of_n}: 2 of 3 replica(s) serve no demand now (the 100 routed there needs 1); held by "
            "minReplicas 3 (one fewer there breaks it: n would have 2 replica(s))") in " ".join(r.stdout.split())


def test_explain_says_when_idle_replicas_are_kept_for_a_penalty_or_not_needed(tmp_path):
    """Idle replicas a preferred policy's penalty pays for are said to be kept for it, with what
    they save; one no rule holds (a saved plan with one more, as a search stopped by its time
    limit may leave) is said to be not needed."""
    fleet = _half_spot(tmp_path, penalty=10)
    r = placer("explain", str(fleet), "m")
    assert r.returncode == 0, r.stderr
    assert ("far: 2 replica(s) serve no demand now; kept for preferred policy half-spot: without them its penalty "
            "grows by 10.00 USD/h, more than the 2.00 USD/h of compute they cost") in " ".join(r.stdout.split())

    plan = tmp_path / "plan.json"
    r = placer("plan", str(fleet), "-o", str(plan))
    assert r.returncode == 0, r.stderr
    data = json.loads(plan.read_text())
    [spot] = [p for p in data["placements"] if p["model"] == "m" and p["pool"] == "spot"]
    spot["replicas"] += 1
    plan.write_text(json.dumps(data))
    r = placer("explain", str(fleet), "m", "--plan", str(plan), "--json")
    assert r.returncode == 0, r.stderr
    idle = {i["pool"]: i for i in json.loads(r.stdout)["idle"]}
    assert idle["spot"]["idle"] == idle["spot"]["notNeeded"] == 1, idle
    assert idle["spot"]["why"] == (
        "spot: 1 of 3 replica(s) serve no demand now (the 200 routed there needs 2); not needed: no rule holds it "
        "(the plan's search stopped before dropping it: plan again, or raise Settings solver.timeLimitSeconds)")


def _far_free(usd: float, models: dict[str, Any] | None = None) -> Fleet:
    """m's 200 units/s at a served by its 2 replicas on spot; preferred half-spot (10 USD/h a replica
    over 0.5 of m's on spot) charges 10 USD/h without 2 more off spot, on far (1 USD/h a GPU), where
    preferred far-free (headroom: 7 of far's 8 GPUs free) charges ``usd`` a GPU of the 2 they take."""
    from tests.fleetkit import fleet

    return fleet(location("a"), location("b"), link("a", "b", 5, egress=1),
                 pool("spot", "a", usd=0.5, spot=True), pool("far", "b", usd=1.0),
                 inference("m", [{"location": "a", "rate": 200, "latencySloMs": 50}], spotTolerant=True),
                 policy("half-spot", {"maxSpotFraction": 0.5}, models={"names": ["m"]}, penalty=10),
                 policy("far-free", {"headroom": {"fraction": 0.875}}, models=models, pools={"names": ["far"]},
                        penalty=usd))


@pytest.mark.parametrize(("usd", "models", "why"), [
    (9.0, None, "far: 2 replica(s) serve no demand now; not needed: no rule holds them (the plan's search stopped "
                "before dropping them: plan again, or raise Settings solver.timeLimitSeconds)"),
    # far-free selects only n, but its penalty falls all the same: price counts every preferred policy
    (9.0, {"names": ["n"]}, "far: 2 replica(s) serve no demand now; not needed: no rule holds them (the plan's "
                            "search stopped before dropping them: plan again, or raise Settings "
                            "solver.timeLimitSeconds)"),
    (7.0, None, "far: 2 replica(s) serve no demand now; kept for preferred policy half-spot: without them the "
                "preferred penalties grow by 3.00 USD/h in all (far-free -7.00, half-spot +10.00), more than the "
                "2.00 USD/h of compute they cost")])
def test_idle_replicas_kept_for_a_penalty_count_the_penalties_dropping_them_lowers(usd, models, why):
    """Dropping m's 2 idle replicas on far raises half-spot's penalty by 10 USD/h and lowers
    far-free's by 7 or 9 (the GPUs they free): explain said "kept for preferred policy half-spot:
    without them its penalty grows by 10.00 USD/h, more than the 2.00 USD/h of compute they cost"
    where, as price sums the penalties, dropping them adds 1.00 USD/h and saves 2.00 (not needed),
    and at 7 USD/h named half-spot's 10.00 where they add 3.00 in all."""
    from placer.cost import price
    from placer.idle import idle_replicas
    from placer.placement import Placement, Route
    from tests.fleetkit import RULES

    f = _far_free(usd, models)
    plan = Placement({("m", "spot"): 2, ("m", "far"): 2}, {}, (Route("m", "a", "spot", 200.0, 1.0),))
    fewer = replace(plan, replicas={("m", "spot"): 2})
    assert price(f, fewer, RULES).penalty - price(f, plan, RULES).penalty == pytest.approx(10 - usd)
    assert price(f, plan, RULES).compute - price(f, fewer, RULES).compute == pytest.approx(2.0)
    [idle] = idle_replicas(f, RULES, plan, "m")
    assert idle.text() == why
    kept = usd == 7.0
    assert idle.as_json()["keptForPenalty"] == (2 if kept else 0) and idle.as_json()["notNeeded"] == (0 if kept else 2)
    assert idle.as_json()["penalties"] == ([{"policy": "far-free", "usdPerHour": pytest.approx(-7.0)},
                                            {"policy": "half-spot", "usdPerHour": pytest.approx(10.0)}] if kept else [])


def test_explain_tells_a_violation_the_plan_has_by_its_policy_and_subject_not_its_words(tmp_path):
    """A saved plan edited to put 2 of m's 3 replicas on spot breaks required few-spot ("m: 2 of 3
    replicas on spot (max 0.25)"). One more replica on od2, off spot, makes that "2 of 4", a
    smaller violation of the same policy about the same model: compared by its words, it was
    new, and od2 was "held back by required policy few-spot". One more on spot2 ("3 of 4") makes
    it worse, and holds spot2 back still."""
    fleet = write(tmp_path, location("a"),
                  pool("spot", "a", usd=0.5, spot=True), pool("od", "a", usd=1.0), pool("od2", "a", usd=3.0),
                  pool("spot2", "a", usd=2.0, spot=True),
                  inference("m", [{"location": "a", "rate": 300}], spotTolerant=True),
                  policy("few-spot", {"maxSpotFraction": 0.25}, models={"names": ["m"]}))
    plan = tmp_path / "plan.json"
    r = placer("plan", str(fleet), "-o", str(plan))
    assert r.returncode == 0, r.stderr
    data = json.loads(plan.read_text())
    [od] = data["placements"]
    [route] = data["routes"]
    assert od["pool"] == "od" and od["replicas"] == 3 and route["rate"] == 300
    spot = json.loads(json.dumps(od))
    spot["target"]["pool"] = spot["pool"] = "spot"
    spot["replicas"] = spot["gpus"] = 2
    od["replicas"] = od["gpus"] = 1
    data["placements"].append(spot)
    data["routes"] = [{**route, "rate": 100.0}, {**route, "pool": "spot", "rate": 200.0}]
    plan.write_text(json.dumps(data))
    r = placer("explain", str(fleet), "m", "--plan", str(plan))
    assert r.returncode == 0, r.stderr
    assert "m: 1 replica(s) on od, 2 replica(s) on spot" in r.stdout, r.stdout
    assert why_not(r.stdout) == {
        "spot2": "eligible; held back by required policy few-spot: one more replica there breaks it, 8 of 8 GPUs free",
        "od2": "eligible; not chosen (cost), 8 of 8 GPUs free"}


def test_whatif_names_the_preferred_policy_whose_penalty_leaves_demand_unmet(tmp_path):
    """A replica of m on p costs 1 USD/h and would serve 100 units/s unmet at 1 USD/h each, but
    preferred avoid-p charges 500 USD/h a replica there: whatif put m's demand down to "cost", the
    policy that decided it unnamed (explain names it in its pool notes). dear costs more to serve
    than its demand is charged unmet with or without its policy's small penalty: plain cost."""
    fleet = write(tmp_path, location("a"), pool("p", "a", usd=1.0),
                  inference("m", [{"location": "a", "rate": 300}]),
                  inference("dear", [{"location": "a", "rate": 1}], throughput={"A100-80GB": 0.5}),
                  policy("avoid-p", {"denyPools": {}}, models={"names": ["m"]}, pools={"names": ["p"]}, penalty=500),
                  policy("tax-dear", {"denyPools": {}}, models={"names": ["dear"]}, pools={"names": ["p"]},
                         penalty=0.5))
    scen = whatif(fleet, "--demand-scale", "2")["scenario"]
    assert scen["unmet"] == {"dear": pytest.approx(2.0), "m": pytest.approx(600.0)}
    assert scen["unmetWhy"] == {"dear": {"cost": pytest.approx(2.0)}, "m": {"cost": pytest.approx(600.0)}}
    assert scen["unmetPenalties"] == {"m": {"avoid-p": ["p"]}}
    assert scen["unmetPolicies"] == {}  # required policies alone: none holds either back

    r = placer("whatif", str(fleet), "--demand-scale", "2")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert ("cost: the penalty of preferred policy avoid-p makes serving it on p cost more than leaving it unmet"
            in text), r.stdout
    assert "dear │ 1 │ 2 │ cost: pools in reach have room" in text, r.stdout

    r = placer("explain", str(fleet), "m")
    assert r.returncode == 0, r.stderr
    assert ("demand at a: 300 unmet (cost: the penalty of preferred policy avoid-p makes serving it on p cost more "
            "than leaving it unmet") in " ".join(r.stdout.split()), r.stdout


def test_validate_says_a_fleet_has_no_pools_instead_of_asking_for_each_pool(tmp_path):
    """A fleet with no Pool documents warned "no pool can host this model (the fleet has no
    pools); run `placer explain` for each pool": there is no pool to run it for."""
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    (fleet / "fleet.yaml").write_text(yaml.safe_dump_all(
        [location("a"), inference("m", [{"location": "a", "rate": 100}])], sort_keys=False))
    r = placer("validate", str(fleet))
    assert r.returncode == 0, r.stderr
    said = " ".join((r.stdout + r.stderr).split())
    assert "Model/m: spec: warning: no pool can host this model: the fleet has no pools (add a Pool document " \
        "for it to run on)" in said, said
    assert "for each pool" not in said


def test_validate_names_the_policies_that_leave_a_model_no_pool_and_the_explain_to_run(tmp_path):
    """It said "pools are out for: policy" without naming one, and to run `placer explain` "for each
    pool", where explain takes the fleet and a model."""
    fleet = write(tmp_path, location("a"), pool("p", "a"), pool("q", "a"), inference("m", [{"location": "a", "rate": 1}]),
                  policy("not-p", {"denyPools": {}}, pools={"names": ["p"]}),
                  policy("not-q", {"denyPools": {}}, pools={"names": ["q"]}))
    r = placer("validate", str(fleet))
    assert r.returncode == 0, r.stderr
    said = " ".join((r.stdout + r.stderr).split())
    assert "Model/m: spec: warning: no pool can host this model (pools are out for: policies not-p and not-q); " \
        "`placer explain FLEET m` says why each pool is out" in said, said
    r = placer("explain", str(fleet), "m")
    assert r.returncode == 0 and "not-p" in r.stdout, r.stdout + r.stderr


def doubled_on_one_node(tmp_path: Path, rate: float) -> tuple[Path, subprocess.CompletedProcess[str],
                                                              dict[str, list[str]]]:
    """``rate`` units/s of m on one 4-GPU node of replicas of 1.5, doubled by whatif: the fleet, the
    run, and its table rows of four cells by their first."""
    fleet = write(tmp_path, location("a"), pool("p", "a", gpu="L4-24GB", per_node=4, usd=0.01),
                  inference("m", [{"location": "a", "rate": rate}], throughput={"L4-24GB": 1.5}, mem=10))
    r = placer("whatif", str(fleet), "--demand-scale", "2")
    assert r.returncode == 0, r.stderr
    rows = {cells[0]: cells[1:] for line in r.stdout.splitlines()
            if len(cells := [c.strip() for c in line.split("│")]) == 4}
    return fleet, r, rows


def test_whatif_shows_rates_that_are_not_whole_as_they_are(tmp_path):
    """A model of 4.5 units/s (a diffusion model's images/s) on replicas of 1.5, doubled: the demand
    and served rows give 4.50 -> 9.00 and 4.50 -> 6.00, as the plan's tables give rates that are
    not whole. Printed whole, they read demand 4 -> 9, change +4, and served 4 -> 6, change +2
    (0.45 read 0 -> 1, change 0)."""
    _, r, rows = doubled_on_one_node(tmp_path, 4.5)
    assert rows["demand (rate)"] == ["4.50", "9.00", "+4.50"], r.stdout
    assert rows["served (rate)"] == ["4.50", "6.00", "+1.50"], r.stdout


def test_whatif_and_the_markdown_plan_give_unmet_rates_as_the_plans_tables_do(tmp_path):
    """6.5 units/s on one 4-GPU node of replicas of 1.5: 0.50 unmet, 7.00 once doubled. The whatif
    Unmet table and verdict and the pull-request comment's Unmet table said them with one decimal,
    0.5 and 7.0 (0.05 read 0.1), where the plan's tables give two."""
    fleet, r, rows = doubled_on_one_node(tmp_path, 6.5)
    assert rows["m"] == ["0.50", "7.00", "no room in reach"], r.stdout
    assert "; 7 units/s unmet where no pool in reach has room" in " ".join(r.stdout.split()), r.stdout
    plan = tmp_path / "plan.json"
    assert placer("plan", str(fleet), "-o", str(plan)).returncode == 0
    markdown = placer("show", str(plan), "--markdown").stdout
    assert "| m | a | 0.50 |" in markdown, markdown


def test_explain_gives_a_routes_rate_as_the_plan_does(tmp_path):
    """4.5 units/s on three replicas of 1.5: explain says 4.50 routed, as the plan's Models table
    says 4.50 served, and 1,000 where it says 1,000. It printed one decimal: '4.5', '1,000.0', and
    for 0.45 on replicas of 0.15 '0.4 routed' (the routes' sum is 0.44999999999999996)."""
    fleet = write(tmp_path, location("a"), pool("p", "a", gpu="L4-24GB", per_node=4, usd=0.01),
                  inference("m", [{"location": "a", "rate": 4.5}], throughput={"L4-24GB": 1.5}, mem=10),
                  inference("n", [{"location": "a", "rate": 1000}], throughput={"L4-24GB": 1000}, mem=10))
    r = placer("explain", str(fleet), "m")
    assert r.returncode == 0, r.stderr
    assert "demand at a: 4.50 routed to p (1 ms)" in r.stdout, r.stdout
    r = placer("explain", str(fleet), "n")
    assert "demand at a: 1,000 routed to p (1 ms)" in r.stdout, r.stdout


def test_explain_of_a_saved_plan_takes_no_other_time(tmp_path):
    """`explain --plan PLAN --now T` explained the plan's placement (made at its createdAt) under
    the rules of T: a model the plan retired, unused since before createdAt, was 'not placed
    anywhere' with every pool out as 'retired: unused for 331 days' at a T it had been used 14
    days before. --now is refused with --plan, as `apply` refuses it with a saved plan."""
    fleet = write(tmp_path, location("a"), pool("p", "a", usd=1.0),
                  policy("retire-old", {"retire": {"unusedForDays": 30}}),
                  inference("old", [{"location": "a", "rate": 100}], lastUsed="2026-01-01"),
                  inference("m", [{"location": "a", "rate": 100}], lastUsed="2026-11-27"))
    plan = tmp_path / "plan.json"
    r = placer("plan", str(fleet), "-o", str(plan), "--now", "2026-11-28")
    assert r.returncode == 0, r.stderr
    r = placer("explain", str(fleet), "old", "--plan", str(plan), "--now", "2026-01-15")
    assert r.returncode == 1 and "Traceback" not in r.stderr, (r.stdout, r.stderr)
    assert "--now" in r.stderr and "createdAt" in r.stderr and "drop --now" in r.stderr, r.stderr
    r = placer("explain", str(fleet), "old", "--plan", str(plan))
    assert r.returncode == 0 and r.stdout.startswith("old is not placed, on any pool: policy retire-old: "), r.stdout


def test_explain_folds_the_reasons_of_a_narrow_terminal_rather_than_cut_them(tmp_path):
    """At 40 columns the 'why not' column cut a policy's name, "policy: eu-data-stays-in-e…": two
    policies that share a start were one, as the plan's tables once made two pools one."""
    name = "keep-this-model-on-the-pools-named-here-only"
    fleet = write(tmp_path, location("a"), pool("p", "a", usd=1.0), pool("q", "a", usd=0.5),
                  policy(name, {"allowPools": {}}, models={"names": ["m"]}, pools={"names": ["p"]}),
                  inference("m", [{"location": "a", "rate": 100}]))
    r = subprocess.run([sys.executable, "-m", "placer", "explain", str(fleet), "m"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "COLUMNS": "40"})
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if "│" in line]
    assert rows and not any("…" in row for row in rows), r.stdout
    assert name in "".join(row.split("│")[-1].strip() for row in rows), r.stdout


def test_a_pool_no_demand_reaches_in_time_is_eligible_for_a_models_minimum(tmp_path):
    """m's minReplicas 3 may sit where no demand reaches in time (its third replica does, on far1):
    far2, as far, was listed as out ("slo: ..."), and then named the next best."""
    fleet = write(tmp_path, location("a"), location("b"), link("a", "b", 50),
                  pool("near", "a", count=1, per_node=4, usd=5.0), pool("far1", "b", count=1, per_node=4, usd=0.1),
                  pool("far2", "b", count=1, per_node=4, usd=0.2),
                  inference("m", [{"location": "a", "rate": 100, "latencySloMs": 5}], minReplicas=3))
    r = placer("explain", str(fleet), "m", "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["placed"] == {"far1": 2, "near": 1}
    assert got["nextBest"]["placed"] == {"far2": 3}
    assert got["otherPools"]["far2"] == ("eligible, for its minReplicas only, as no demand reaches b within its SLO "
                                         "(from a 50 ms > 5 ms); not chosen (cost), 4 of 4 GPUs free")


def test_explain_of_a_saved_plan_prices_churn_from_the_state_the_plan_names(tmp_path):
    """A plan made with --state names that state, as apply reads it: explain --plan priced its next
    best's churn from Settings' state instead (m running on p there: moving it to q cost 0.50 USD of
    churn, where from the plan's empty state it costs none more than p)."""
    fleet = write(tmp_path, location("a"), pool("p", "a", usd=1.0), pool("q", "a", usd=2.0),
                  inference("m", [{"location": "a", "rate": 100}]))
    plan, other = tmp_path / "plan.json", tmp_path / "other.json"
    for args in (("plan", str(fleet), "-o", str(plan)), ("apply", str(plan)),
                 ("plan", str(fleet), "--state", str(other), "-o", str(plan))):
        r = placer(*args)
        assert r.returncode == 0, r.stderr
    r = placer("explain", str(fleet), "m", "--plan", str(plan), "--json")
    assert r.returncode == 0, r.stderr
    best = json.loads(r.stdout)["nextBest"]
    assert (best["placed"], best["deltaUsdPerHour"], best["churnUsd"]) == ({"q": 1}, 1.0, 0.0)
    r = placer("explain", str(fleet), "m", "--plan", str(plan), "--state", str(tmp_path / "state.json"), "--json")
    assert r.returncode == 0, r.stderr  # --state still names another
    assert json.loads(r.stdout)["nextBest"]["churnUsd"] == 0.5


def test_explain_of_a_plan_the_state_has_moved_past_does_not_blame_its_search(tmp_path):
    """Plan A puts m on p (1 USD/h, q 1.2), made from no state; p rises to 2 USD/h, plan B moves m
    onto q and is applied; p falls back, the fleet as A was made from. Explaining A, m's move to q
    costs 0.20 USD/h more and 0.50 USD less churn, from the state now: explain said "the plan's
    search stopped before this move (raise Settings solver.timeLimitSeconds ...)", of an exact search
    that weighed churn from no state. It says the state is not the one the plan was made from, as
    apply says refusing it."""
    docs = [location("a"), pool("p", "a", usd=1.0), pool("q", "a", usd=1.2), inference("m", [{"location": "a", "rate": 100}])]
    fleet = write(tmp_path, *docs)
    first = (fleet / "fleet.yaml").read_text()
    plan_a, plan_b = tmp_path / "a.json", tmp_path / "b.json"
    assert placer("plan", str(fleet), "-o", str(plan_a)).returncode == 0
    (fleet / "fleet.yaml").write_text(first.replace("usdPerGpuHour: 1.0\n", "usdPerGpuHour: 2.0\n", 1))
    for args in (("plan", str(fleet), "-o", str(plan_b)), ("apply", str(plan_b))):
        r = placer(*args)
        assert r.returncode == 0, r.stderr
    (fleet / "fleet.yaml").write_text(first)
    r = placer("explain", str(fleet), "m", "--plan", str(plan_a))
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "the plan's search stopped" not in text, r.stdout
    assert ("Without its current pools: 1 on q, costing +0.20 USD/h for the whole fleet (-0.50 USD of one-off churn), "
            "less in all: its churn is priced from the state as it is now, which this plan was not made from (stale "
            "plan: it was made against no state (nothing applied yet), but the state is now lineage") in text, r.stdout
    r = placer("explain", str(fleet), "m", "--plan", str(plan_a), "--json")
    assert r.returncode == 0, r.stderr
    said = json.loads(r.stdout)
    assert said["nextBest"]["cheaper"] and said["stalePlan"].startswith("stale plan: it was made against no state")
    r = placer("explain", str(fleet), "m", "--json")  # planned now, from the state as it is
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["stalePlan"] is None

def test_a_training_model_left_unplaced_for_a_penalty_names_unmet_usd_per_replica(tmp_path):
    """A training replica on p costs 8 USD/h against unmetUsdPerReplica's 1,000, but preferred
    avoid-p charges 5,000 a replica there: explain and whatif put it down to the penalty and named
    "unmetUsdPerRate or unmetUsdPerReplica" as what leaving it unmet costs; a replica is charged
    unmetUsdPerReplica alone (an inference model's rate, unmetUsdPerRate alone, as above)."""
    fleet = write(tmp_path, location("a"), pool("p", "a", usd=1.0),
                  training("t", 1),
                  policy("avoid-p", {"denyPools": {}}, models={"names": ["t"]}, pools={"names": ["p"]}, penalty=5000))
    r = placer("explain", str(fleet), "t")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert ("the penalty of preferred policy avoid-p makes serving it on p cost more than leaving it unmet (what "
            "Settings objective.unmetUsdPerReplica charges)") in text, r.stdout
    r = placer("whatif", str(fleet), "--demand-scale", "2")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "objective.unmetUsdPerReplica charges)" in text and "unmetUsdPerRate" not in text, r.stdout

    (tmp_path / "inference").mkdir()
    fleet = write(tmp_path / "inference", location("a"), pool("p", "a", usd=1.0),
                  inference("m", [{"location": "a", "rate": 300}]),
                  policy("avoid-p", {"denyPools": {}}, models={"names": ["m"]}, pools={"names": ["p"]}, penalty=500))
    r = placer("explain", str(fleet), "m")
    assert r.returncode == 0, r.stderr
    assert "(what Settings objective.unmetUsdPerRate charges)" in " ".join(r.stdout.split()), r.stdout


def _unrounded(value: object) -> list[float]:
    """The floats in a JSON value with more than 6 decimals."""
    if isinstance(value, float):
        return [value] if round(value, 6) != value else []
    if isinstance(value, dict):
        return [x for v in value.values() for x in _unrounded(v)]
    if isinstance(value, list):
        return [x for v in value for x in _unrounded(v)]
    return []


def test_explain_and_whatif_json_round_their_numbers_as_the_plan_file_does():
    """explain --json printed 1.8800000000000001 and 8.599999999999999e-05, whatif --json
    217.27501178571427, where the plan file rounds every number to 6 decimals."""
    r = placer("explain", "examples/hybrid", "asr-callcenter-eu", "--json")
    assert r.returncode == 0, r.stderr
    assert _unrounded(json.loads(r.stdout)) == []
    assert _unrounded(whatif(ROOT / "examples" / "hybrid", "--demand-scale", "2")) == []


def test_explain_says_it_planned_afresh_where_a_saved_plan_may_differ(tmp_path):
    """`placer explain FLEET MODEL` solves the fleet again. On the scalable route (bench M and up)
    a solve stops at its time limit and places models differently in detail from run to run: at
    bench L the saved plan had m01998-search on onprem-apac-001-p06 and onprem-apac-002-p01, and
    explain, unsaid, explained its own fresh plan's cloud-apac-001-p06 instead. It says it planned
    afresh, how the solve ended, and how to explain the saved plan; the exact route, whose plan is
    proven optimal, and `--plan` do not."""
    fleet = write(tmp_path, location("a"), pool("p", "a", usd=1.0), pool("q", "a", usd=2.0),
                  inference("m", [{"location": "a", "rate": 100}]))
    plan = tmp_path / "plan.json"
    assert placer("plan", str(fleet), "-o", str(plan), optimizer="scalable").returncode == 0
    fresh = placer("explain", str(fleet), "m", optimizer="scalable")
    assert fresh.returncode == 0, fresh.stderr
    first = " ".join(fresh.stdout.split("\nm: ", 1)[0].split())
    assert re.fullmatch(r"Planned afresh \((OPTIMAL|FEASIBLE), gap \d+\.\d\d%, \d+\.\d s\): a fleet this large plans "
                        r"differently in detail from run to run, so a plan you saved may place m elsewhere; "
                        rf"`placer explain {re.escape(str(fleet))} m --plan PLAN` explains that plan", first), first
    said = json.loads(placer("explain", str(fleet), "m", "--json", optimizer="scalable").stdout)
    assert said["plannedAfresh"].startswith(("OPTIMAL, gap", "FEASIBLE, gap"))
    for args, optimizer in (((), "exact"), (("--plan", str(plan)), "scalable")):
        r = placer("explain", str(fleet), "m", *args, optimizer=optimizer)
        assert r.returncode == 0 and r.stdout.startswith("m: 1 replica(s) on p"), r.stdout + r.stderr
        assert json.loads(placer("explain", str(fleet), "m", "--json", *args, optimizer=optimizer).stdout)[
            "plannedAfresh"] is None


def test_whatif_base_keeps_the_status_and_gap_of_its_own_search(tmp_path):
    """On the scalable route the base plan is re-planned from itself (as the scenario is from it),
    and the re-plan was reported in its place: its bound, of a short search's simple prices, gave a
    base proven OPTIMAL as "FEASIBLE (gap 17.50%)" here, and at bench L (nothing applied) "FEASIBLE
    (gap 23.84%)" with a note that it was "re-planned around what runs", where the plan's own gap
    was 4.86%. The base says how its search ended, the re-plan keeping what it gains."""
    docs = [location("a"), pool("p", "a", usd=1.0, count=8), pool("q", "a", usd=2.0, count=8)]
    docs += [inference(f"m{i}", [{"location": "a", "rate": 100 + 37 * i}]) for i in range(6)]
    fleet = write(tmp_path, *docs)
    planned = json.loads(placer("plan", str(fleet), "--json", optimizer="scalable").stdout)["solver"]
    assert planned["status"] == "OPTIMAL" and planned["gap"] == pytest.approx(0.0, abs=1e-9)
    r = placer("whatif", str(fleet), "--demand-scale", "1.5", "--json", optimizer="scalable")
    assert r.returncode == 0, r.stderr
    base = json.loads(r.stdout)["base"]
    assert base["status"] == "OPTIMAL" and base["gap"] == pytest.approx(0.0, abs=1e-9) and "gapNote" not in base, base
    text = placer("whatif", str(fleet), "--demand-scale", "1.5", optimizer="scalable").stdout
    assert "Solver: base OPTIMAL (gap 0.00%)" in text and "re-planned around what runs" not in text, text
