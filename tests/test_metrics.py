"""--metrics-file: what `plan`, `apply` and `refresh` write for node_exporter's textfile collector,
read back with prometheus_client's parser and held against the plan file's own figures; and that
the file is replaced whole or not at all. (A failed apply's file: test_lifecycle; whatif's:
test_cli_explain_whatif.)"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import threading
from collections import Counter
from pathlib import Path

import pytest

from placer import cli as placer_cli
from placer import planfile
from tests import denied
from tests.fleetkit import inference, pool, training
from tests.metricskit import by, leftovers, one, samples
from tests.test_cli import ROOT, placer, write_fleet

COST_TERMS = {"compute": "computeUsdPerHour", "egress": "egressUsdPerHour", "latency": "latencyUsdPerHour",
              "unmet": "unmetUsdPerHour", "penalty": "penaltyUsdPerHour"}


def short_fleet(tmp: Path) -> Path:
    """p (static, 8 A100 at a), e (AWS, up to one node of 8 A100 at b), q (8 L4 no model may use);
    m is served, big (2,000 at b, 100 a GPU) is 500 short, and the gang t (3 x 8 GPUs) fits no pool."""
    return write_fleet(tmp, pool("e", "b", provider="aws", count=None, min_nodes=0, max_nodes=1, usd=2),
                       pool("q", "a", gpu="L4-24GB"), inference("big", [{"location": "b", "rate": 2000}]),
                       training("t", 3, gpus=8))


def assert_plan_metrics(found: dict, plan: dict) -> None:
    """Every figure of the plan metrics ``found`` is the plan file's (``plan``)."""
    cost, solver = plan["cost"], plan["solver"]
    assert by(found, "placer_plan_cost_usd_per_hour", "term") == {(t,): cost[k] for t, k in COST_TERMS.items()}
    assert sum(found["placer_plan_cost_usd_per_hour"].values()) == pytest.approx(cost["totalUsdPerHour"])
    assert one(found, "placer_plan_churn_usd") == cost["churnUsd"]
    assert one(found, "placer_plan_objective_usd_per_hour") == solver["objectiveUsdPerHour"]
    assert one(found, "placer_plan_bound_usd_per_hour") == solver["boundUsdPerHour"]
    assert one(found, "placer_plan_gap_ratio") == solver["gap"]
    assert one(found, "placer_plan_solve_duration_seconds") == solver["wallSeconds"]
    assert by(found, "placer_plan_solver_status", "status") == {
        (s,): float(s == solver["status"]) for s in ("OPTIMAL", "FEASIBLE", "INFEASIBLE", "UNKNOWN")}
    created = dt.datetime.fromisoformat(plan["createdAt"].replace("Z", "+00:00")).timestamp()
    assert one(found, "placer_plan_created_timestamp_seconds") == created
    assert one(found, "placer_plan_state_serial") == plan["priorState"]["serial"]
    unmet = Counter[str]()
    for row in plan["unmet"]:
        unmet[row["model"]] += row["rate"]
    demand = {m: e["demand"] for m, e in plan["models"].items() if e["demand"] > 0}
    assert by(found, "placer_plan_demand_rate", "model") == {(m,): d for m, d in demand.items()}
    # every model with demand has its series, 0 where all is served
    assert by(found, "placer_plan_unmet_demand_rate", "model") == {(m,): pytest.approx(unmet[m]) for m in demand}
    assert by(found, "placer_plan_replicas", "model", "pool") == {
        (p["model"], p["pool"]): p["replicas"] for p in plan["placements"]}
    assert one(found, "placer_plan_placements") == len(plan["placements"])
    changes = Counter(c["action"] for c in plan["changes"])
    assert by(found, "placer_plan_changes", "action") == {(a,): changes[a] for a in ("create", "update", "delete")}
    for name, key in (("placer_plan_pool_nodes", "nodes"), ("placer_plan_pool_used_gpus", "gpusUsed"),
                      ("placer_plan_pool_capacity_gpus", "gpusCapacity")):
        assert {p: v for (p, _), v in by(found, name, "pool", "provider").items()} == {
            e["pool"]: e[key] for e in plan["pools"]}, name


def test_plan_metrics_are_the_plan_files_figures(tmp_path):
    fleet = short_fleet(tmp_path)
    out, metrics = tmp_path / "plan.json", tmp_path / "plan.prom"
    r = placer("plan", str(fleet), "-o", str(out), "--metrics-file", str(metrics), "--detailed-exitcode")
    assert r.returncode == 2, r.stderr
    plan = json.loads(out.read_text())
    assert plan["unmet"] and plan["unplacedReplicas"]  # what the metrics are to say
    found = samples(metrics)
    assert_plan_metrics(found, plan)
    assert by(found, "placer_plan_unmet_demand_rate", "model") == {("m",): 0.0, ("big",): 500.0}
    assert by(found, "placer_plan_unplaced_replicas", "model") == {("t",): 3.0}
    # each pool by its provider; p and e hold all they can ever have, q (L4, no model's) none
    assert by(found, "placer_plan_pool_saturated", "pool", "provider") == {
        ("p", "static"): 1.0, ("e", "aws"): 1.0, ("q", "static"): 0.0}
    assert by(found, "placer_plan_pool_max_gpus", "pool", "provider") == {
        ("p", "static"): 8.0, ("e", "aws"): 8.0, ("q", "static"): 8.0}
    assert "placer_plan_drifted_resources" not in found  # no --refresh: not measured
    assert "placer_plan_cost_before_usd_per_hour" not in found  # nothing applied yet
    assert leftovers(tmp_path) == [] and metrics.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_apply_refresh_and_plan_refresh_metrics_say_success_and_drift(tmp_path):
    fleet = short_fleet(tmp_path)
    out = tmp_path / "plan.json"
    assert placer("plan", str(fleet), "-o", str(out)).returncode == 0
    before = dt.datetime.now(dt.UTC).timestamp()
    r = placer("apply", str(out), "--metrics-file", str(tmp_path / "apply.prom"))
    assert r.returncode == 0, r.stderr
    found = samples(tmp_path / "apply.prom")
    assert one(found, "placer_apply_success") == 1.0
    assert one(found, "placer_apply_changes_planned") == one(found, "placer_apply_changes_applied") == 4.0
    assert one(found, "placer_apply_state_serial") == json.loads((tmp_path / "state.json").read_text())["serial"] == 1
    assert one(found, "placer_apply_retries") == 0.0
    assert before <= one(found, "placer_apply_last_success_timestamp_seconds") == one(
        found, "placer_apply_finished_timestamp_seconds") <= dt.datetime.now(dt.UTC).timestamp()
    assert 0 < one(found, "placer_apply_duration_seconds") < 60
    # what runs, deleted behind placer's back: refresh and plan --refresh count it
    (tmp_path / "deploy" / "clusters" / "default" / "m-p.yaml").unlink()
    r = placer("refresh", str(fleet), "--metrics-file", str(tmp_path / "refresh.prom"))
    assert r.returncode == 0 and "drift: deployment/m@p" in r.stderr, r.stderr
    found = samples(tmp_path / "refresh.prom")
    assert found["placer_refresh_drifted_resources"] == {(): 1.0}
    assert found["placer_refresh_unhealthy_deployments"] == {(): 0.0}
    assert found["placer_refresh_unready_pools"] == {(): 0.0}
    r = placer("plan", str(fleet), "--refresh", "--detailed-exitcode", "--json", "--metrics-file",
               str(tmp_path / "plan.prom"))
    assert r.returncode == 2, r.stderr
    found = samples(tmp_path / "plan.prom")
    assert one(found, "placer_plan_drifted_resources") == 1.0
    assert by(found, "placer_plan_changes", "action") == {("create",): 1.0, ("update",): 0.0, ("delete",): 0.0}
    plan = json.loads(r.stdout)
    assert_plan_metrics(found, plan)
    assert one(found, "placer_plan_cost_before_usd_per_hour") == plan["costBeforeUsdPerHour"]
    assert leftovers(tmp_path) == []


def test_hybrid_plan_and_apply_end_to_end(tmp_path):
    """examples/hybrid, planned and applied (gitops, into tmp_path) with a metrics file each."""
    shutil.copytree(ROOT / "examples" / "hybrid", tmp_path / "hybrid")
    r = placer("plan", "hybrid", "-o", "plan.json", "--metrics-file", "metrics/plan.prom", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    plan = json.loads((tmp_path / "plan.json").read_text())
    found = samples(tmp_path / "metrics" / "plan.prom")
    assert_plan_metrics(found, plan)
    providers = {p: v for (p, v), _ in by(found, "placer_plan_pool_used_gpus", "pool", "provider").items()}
    assert set(providers.values()) == {"aws", "gcp", "kubernetes", "static"} and len(providers) == len(plan["pools"])
    r = placer("apply", "plan.json", "--metrics-file", "metrics/apply.prom", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    found = samples(tmp_path / "metrics" / "apply.prom")
    assert one(found, "placer_apply_success") == 1.0
    assert one(found, "placer_apply_changes_applied") == len(plan["changes"]) == 60


def test_a_metrics_file_that_cannot_be_written_is_refused_before_the_solve(tmp_path):
    fleet = short_fleet(tmp_path)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    r = placer("plan", str(fleet), "-o", str(tmp_path / "plan.json"), "--metrics-file", str(a_file / "m.prom"))
    assert r.returncode == 1, r.stderr
    assert " ".join(r.stderr.split()) == (f"Error: --metrics-file: cannot write {a_file / 'm.prom'}: {a_file} is a "
                                          "file, not a directory; nothing was done")
    assert not (tmp_path / "plan.json").exists()
    # a name node_exporter's collector skips is written, with a warning
    r = placer("plan", str(fleet), "--metrics-file", str(tmp_path / "m.txt"))
    assert r.returncode == 0 and "reads only files named *.prom" in r.stderr, r.stderr
    assert samples(tmp_path / "m.txt")["placer_plan_changes"]


@pytest.fixture
def planned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path, str]:
    """A fleet, and its metrics file as a first plan wrote it (the old file): (fleet, file, its text)."""
    fleet = short_fleet(tmp_path)
    metrics = tmp_path / "out" / "plan.prom"
    assert placer_cli.main(["plan", str(fleet), "--metrics-file", str(metrics)]) == 0
    capsys.readouterr()
    return fleet, metrics, metrics.read_text()


def test_a_metrics_file_that_fails_to_be_written_is_left_as_it_was(planned, tmp_path, capsys, monkeypatch):
    """Its folder made unwritable once the command runs (the check before the solve passed): exit 1, the
    old file whole, no temporary file, and the plan file saved said so."""
    fleet, metrics, old = planned
    denied.unwritable(metrics.parent, monkeypatch, "seam")
    code = placer_cli.main(["plan", str(fleet), "-o", str(tmp_path / "plan.json"), "--metrics-file", str(metrics)])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1
    assert (f"Error: writing --metrics-file failed: cannot write {metrics}: Permission denied; the plan was saved "
            f"to {tmp_path / 'plan.json'}") in err, err
    assert metrics.read_text() == old and leftovers(metrics.parent) == []


@pytest.mark.parametrize("as_json", [True, False])
def test_a_plan_whose_metrics_file_fails_to_be_written_still_prints_the_plan(planned, tmp_path, capsys, monkeypatch,
                                                                            as_json):
    """`plan --json` without -o whose metrics write failed at the end printed nothing on stdout: the
    plan, which no file holds, was lost with the metrics (the summary too, without --json). The plan is
    printed, the failure said after it with what to fix, and the exit is 1, not 2, with
    --detailed-exitcode and changes: what alerts read is stale."""
    fleet, metrics, old = planned
    denied.unwritable(metrics.parent, monkeypatch, "seam")
    code = placer_cli.main(["plan", str(fleet), *(["--json"] if as_json else []), "--detailed-exitcode",
                            "--metrics-file", str(metrics)])
    printed = capsys.readouterr()
    err = " ".join(printed.err.split())
    assert code == 1, err
    if as_json:
        plan = json.loads(printed.out)
        assert plan["changes"] and plan["placements"]
        done = "its JSON is on stdout"
    else:
        assert "This plan was not saved" in printed.out, printed.out
        done = "its summary is above"
    assert err.endswith(f"Error: writing --metrics-file failed: cannot write {metrics}: Permission denied; {done}; "
                        f"{metrics} was left as it was (an earlier run's figures, if any, which alerts go on reading "
                        f"as new): give this user write access to {metrics.parent}, then run the command again"), err
    assert metrics.read_text() == old and leftovers(metrics.parent) == []
    assert not (tmp_path / "plan.json").exists()


def test_a_plan_whose_file_and_metrics_file_both_fail_says_both(planned, capsys, monkeypatch):
    """-o and --metrics-file in one folder made unwritable during the solve: the plan's JSON printed,
    then one error that says both, the plan's first (no file holds the plan), exit 1."""
    fleet, metrics, old = planned
    out = metrics.parent / "plan.json"
    denied.unwritable(metrics.parent, monkeypatch, "seam")
    code = placer_cli.main(["plan", str(fleet), "--json", "-o", str(out), "--metrics-file", str(metrics)])
    printed = capsys.readouterr()
    err = " ".join(printed.err.split())
    assert code == 1 and json.loads(printed.out)["placements"], err
    assert err.startswith(f"Error: writing the plan to -o {out} failed: cannot write {out}: Permission denied; its "
                          "JSON is on stdout; no plan file was written: give this user write access to "
                          f"{metrics.parent}, then run the command again; and writing --metrics-file failed: "), err
    assert "the plan was saved" not in err, err
    assert not out.exists() and metrics.read_text() == old and leftovers(metrics.parent) == []


def test_refresh_and_whatif_print_their_findings_when_their_metrics_file_fails(planned, capsys, monkeypatch):
    """refresh and whatif wrote their metrics before their output, and a failed write ended them there
    with a bare "Error: cannot write PATH: ..." (no word of --metrics-file): whatif's comparison (its
    --json too) and refresh's "No drift" were lost. Each prints them, then says the failure, exit 1."""
    fleet, metrics, old = planned
    denied.unwritable(metrics.parent, monkeypatch, "seam")
    assert placer_cli.main(["refresh", str(fleet), "--metrics-file", str(metrics)]) == 1
    printed = capsys.readouterr()
    assert "No drift" in printed.out, printed.out
    assert "Error: writing --metrics-file failed: cannot write" in printed.err
    assert "the refresh's findings are above" in " ".join(printed.err.split()), printed.err
    assert placer_cli.main(["whatif", str(fleet), "--demand-scale", "2", "--json", "--metrics-file", str(metrics)]) == 1
    printed = capsys.readouterr()
    assert json.loads(printed.out)["scenario"]["feasible"] is True
    assert "the comparison's JSON is on stdout" in " ".join(printed.err.split()), printed.err
    assert metrics.read_text() == old and leftovers(metrics.parent) == []


def test_a_metrics_file_is_replaced_whole_keeping_its_mode(planned, capsys, monkeypatch):
    """A write stopped before its rename (Ctrl-C) leaves the old file and no temporary one, where
    prometheus_client's write_to_textfile leaves its ``NAME.PID.THREAD``; a rewrite keeps the mode the
    operator gave (0640, for node_exporter's group), where write_to_textfile's is the umask's."""
    fleet, metrics, old = planned
    metrics.chmod(0o640)

    def stopped(*_a: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(planfile.os, "replace", stopped)
    assert placer_cli.main(["plan", str(fleet), "--metrics-file", str(metrics)]) == 130
    assert metrics.read_text() == old and leftovers(metrics.parent) == []
    monkeypatch.undo()
    metrics.write_text("# an older placer's\n")
    assert placer_cli.main(["plan", str(fleet), "--metrics-file", str(metrics)]) == 0
    capsys.readouterr()
    assert "placer_plan_changes" in samples(metrics) and metrics.stat().st_mode & 0o777 == 0o640


def test_a_metrics_file_naming_the_state_the_plan_or_the_fleet_is_refused(tmp_path, capsys):
    """--metrics-file was checked only for being writable: `plan --metrics-file STATE` replaced the state
    with the metrics (every later command then refused it as damaged), `plan -o P --metrics-file P` the
    plan just saved, `apply P --metrics-file P` the plan applied, and one in the fleet a fleet file. Each
    is refused before the command's work, as `-o` is, and apply writes no metrics over it either."""
    fleet = short_fleet(tmp_path)
    plan, state = tmp_path / "plan.json", tmp_path / "state.json"
    assert placer_cli.main(["plan", str(fleet), "-o", str(plan)]) == 0
    assert placer_cli.main(["apply", str(plan)]) == 0
    assert placer_cli.main(["plan", str(fleet), "-o", str(plan)]) == 0  # no changes: applying it changes nothing
    capsys.readouterr()
    kept = {path: path.read_bytes() for path in (plan, state, fleet / "fleet.yaml")}

    def refused(*args: str) -> str:
        assert placer_cli.main(list(args)) == 1
        said = " ".join(capsys.readouterr().err.split())
        assert said.endswith("nothing was done"), said
        assert {path: path.read_bytes() for path in kept} == kept
        return said

    elsewhere = "write the metrics elsewhere, e.g. --metrics-file /var/lib/node_exporter/placer.prom"
    for command in (["plan", str(fleet)], ["refresh", str(fleet)], ["whatif", str(fleet)], ["apply", str(plan)],
                    ["apply", str(fleet), "--auto-approve"]):
        assert f"Error: --metrics-file {state} is the state file {state}: writing the metrics there would replace " \
               f"it (the state's lineage, serial and what runs where); {elsewhere}" in refused(
                   *command, "--metrics-file", str(state)), command
    assert f"--metrics-file {plan} is the plan file this apply applies ({plan}): the metrics would replace it" in \
        refused("apply", str(plan), "--metrics-file", str(plan))
    other = tmp_path / "other.json"
    assert f"--metrics-file {other} is the file -o saves the plan to ({other})" in refused(
        "plan", str(fleet), "-o", str(other), "--metrics-file", str(other))
    assert not other.exists()
    inside = fleet / "metrics.yaml"
    assert f"--metrics-file {inside} is a YAML file inside the fleet {fleet}: the metrics would replace or join " \
           "the fleet's documents, which the next plan reads; write them outside the fleet, to a file named *.prom" \
           in refused("plan", str(fleet), "--metrics-file", str(inside))
    assert "is the fleet's own file" in refused("apply", str(fleet / "fleet.yaml"), "--auto-approve", "--metrics-file",
                                                str(fleet / "fleet.yaml"))
    assert not inside.exists() and json.loads(state.read_text())["serial"] == 1


def test_replica_series_are_left_out_above_the_most_pairs(tmp_path, capsys, monkeypatch):
    """A bench XL plan's file held 45,601 samples, 21,742 of them placer_plan_replicas (one a model and
    pool): near the 50,000 a scrape is often capped at, past which the whole node_exporter scrape fails.
    Above REPLICA_SERIES_MOST pairs the family is left out; placer_plan_placements counts the pairs."""
    from placer.render import metrics as placer_metrics

    fleet = short_fleet(tmp_path)
    out, path = tmp_path / "plan.json", tmp_path / "plan.prom"
    assert placer_cli.main(["plan", str(fleet), "-o", str(out), "--metrics-file", str(path)]) == 0
    pairs = len(json.loads(out.read_text())["placements"])
    found = samples(path)
    assert pairs > 1 and one(found, "placer_plan_placements") == pairs and len(found["placer_plan_replicas"]) == pairs
    assert one(found, "placer_plan_replica_series_left_out") == 0.0
    monkeypatch.setattr(placer_metrics, "REPLICA_SERIES_MOST", pairs - 1)
    assert placer_cli.main(["plan", str(fleet), "-o", str(out), "--metrics-file", str(path)]) == 0
    capsys.readouterr()
    found = samples(path)
    assert one(found, "placer_plan_placements") == pairs and "placer_plan_replicas" not in found
    assert by(found, "placer_plan_pool_used_gpus", "pool", "provider")  # the rest is all there
    # the file says they were left out, where nothing did (a plan placing nothing has no series either)
    assert one(found, "placer_plan_replica_series_left_out") == pairs
    assert f"at most {pairs - 1}, none where there are more" in path.read_text()


def test_metrics_max_pairs_sets_the_most_replica_series(tmp_path, capsys):
    """The 10,000 pairs above which placer_plan_replicas is left out could not be changed: a Prometheus
    with a higher sample_limit that wanted each pair's replicas, or a lower one, had no way. The CLI
    takes --metrics-max-pairs N (0: no most), refused without --metrics-file or below 0."""
    fleet = short_fleet(tmp_path)
    out, path = tmp_path / "plan.json", tmp_path / "plan.prom"
    assert placer_cli.main(["plan", str(fleet), "-o", str(out), "--metrics-file", str(path)]) == 0
    pairs = len(json.loads(out.read_text())["placements"])
    assert pairs > 1
    assert placer_cli.main(["plan", str(fleet), "--metrics-file", str(path), "--metrics-max-pairs", str(pairs - 1)]) == 0
    found = samples(path)
    assert "placer_plan_replicas" not in found and one(found, "placer_plan_replica_series_left_out") == pairs
    for most in (str(pairs), "0"):
        assert placer_cli.main(["plan", str(fleet), "--metrics-file", str(path), "--metrics-max-pairs", most]) == 0
        found = samples(path)
        assert len(found["placer_plan_replicas"]) == pairs, most
        assert one(found, "placer_plan_replica_series_left_out") == 0.0
    capsys.readouterr()
    assert placer_cli.main(["plan", str(fleet), "--metrics-max-pairs", "5"]) == 1
    assert ("--metrics-max-pairs 5 caps the series of --metrics-file: give --metrics-file PATH.prom too"
            in capsys.readouterr().err)
    assert placer_cli.main(["plan", str(fleet), "--metrics-file", str(path), "--metrics-max-pairs", "-1"]) == 1
    assert "--metrics-max-pairs" in capsys.readouterr().err


def test_metrics_labels_keep_two_fleets_files_apart_on_one_node_exporter(tmp_path, capsys):
    """Two fleets' plan files in one textfile directory exported the same series (the unlabelled ones,
    cost by term, changes by action): node_exporter keeps one and drops the other's as "collected
    before with the same name and label values", which no relabelling in Prometheus undoes. With
    --metrics-label fleet=NAME every series carries the fleet; an apply that fails keeps the last
    success's time from its file, label and all."""
    files = {}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        fleet = short_fleet(tmp_path / name)
        files[name] = tmp_path / "textfile" / f"plan-{name}.prom"
        assert placer_cli.main(["plan", str(fleet), "-o", str(tmp_path / name / "plan.json"), "--metrics-file",
                                str(files[name]), "--metrics-label", f"fleet={name}", "--metrics-label",
                                'team=gpu "infra"\\ops']) == 0
    capsys.readouterr()
    found = {name: samples(path) for name, path in files.items()}  # parsed back, one family each, all gauges
    for name, each in found.items():
        for series in each.values():
            assert all(dict(labels)["fleet"] == name and dict(labels)["team"] == 'gpu "infra"\\ops'
                       for labels in series), name
    gathered = [(metric, labels) for each in found.values() for metric, series in each.items() for labels in series]
    assert len(gathered) == len(set(gathered))  # as node_exporter gathers the directory: no series twice
    cost = {dict(k)["fleet"]: v for k, v in found["a"]["placer_plan_cost_usd_per_hour"].items()
            if dict(k)["term"] == "compute"}
    assert cost == {"a": json.loads((tmp_path / "a" / "plan.json").read_text())["cost"]["computeUsdPerHour"]}

    plan, metrics = tmp_path / "a" / "plan.json", tmp_path / "textfile" / "apply-a.prom"
    labelled = ["--metrics-file", str(metrics), "--metrics-label", "fleet=a"]
    assert placer_cli.main(["apply", str(plan), *labelled]) == 0
    succeeded = samples(metrics)["placer_apply_last_success_timestamp_seconds"][(("fleet", "a"),)]
    assert placer_cli.main(["apply", str(plan), *labelled]) == 1  # stale: applied already
    capsys.readouterr()
    found_apply = samples(metrics)
    assert found_apply["placer_apply_success"] == {(("fleet", "a"),): 0.0}
    assert found_apply["placer_apply_last_success_timestamp_seconds"] == {(("fleet", "a"),): succeeded}


@pytest.mark.parametrize(("given", "why"), [
    (["fleet"], "'fleet': give NAME=VALUE, e.g. --metrics-label fleet=prod"),
    (["1fleet=a"], "'1fleet=a': a label name is letters, digits and underscores, not starting with a digit"),
    (["__name__=x"], "'__name__=x': names starting with __ are Prometheus' own"),
    (["pool=x"], "'pool=x': pool is a label of placer's own series (model, pool, provider, term, action, side, "
                 "status): choose another name"),
    (["fleet="], "'fleet=': an empty value is no label to Prometheus"),
    (["fleet=a", "fleet=b"], "'fleet=b': fleet is given twice"),
])
def test_a_metrics_label_prometheus_would_not_take_is_refused_before_the_solve(tmp_path, capsys, given, why):
    fleet = short_fleet(tmp_path)
    metrics = tmp_path / "plan.prom"
    args = [arg for each in given for arg in ("--metrics-label", each)]
    assert placer_cli.main(["plan", str(fleet), "--metrics-file", str(metrics), *args]) == 1
    said = " ".join(capsys.readouterr().err.split())
    assert f"Error: --metrics-label {why}" in said and said.endswith("nothing was done"), said
    assert not metrics.exists()
    assert placer_cli.main(["whatif", str(fleet), "--metrics-label", "fleet=a"]) == 1
    assert "labels the series of --metrics-file: give --metrics-file PATH.prom too" in capsys.readouterr().err


def test_a_metrics_file_another_command_wrote_is_replaced_with_a_warning(tmp_path, capsys):
    """cron's plan and apply given one --metrics-file: each run replaced the other's series, the plan's
    alerts seeing them vanish after every apply, and nothing said so. The second command warns."""
    fleet = short_fleet(tmp_path)
    plan, metrics = tmp_path / "plan.json", tmp_path / "placer.prom"
    assert placer_cli.main(["plan", str(fleet), "-o", str(plan), "--metrics-file", str(metrics)]) == 0
    assert "holds" not in capsys.readouterr().err
    assert placer_cli.main(["apply", str(plan), "--metrics-file", str(metrics)]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert (f"warning: --metrics-file {metrics} holds `placer plan`'s metrics, which this apply's replace, so their "
            "series vanish until it runs again: give each command its own file, e.g. apply.prom") in said, said
    assert "placer_apply_success" in samples(metrics) and "placer_plan_changes" not in samples(metrics)
    assert placer_cli.main(["apply", str(plan), "--metrics-file", str(metrics)]) == 1  # stale: its own file, no warning
    assert "holds" not in capsys.readouterr().err


def test_a_fifo_metrics_file_is_written_into_never_read(tmp_path):
    """A FIFO as --metrics-file (a collector's pipe), which the writability check lets a command write
    into: a failed apply opened it to read the last success's time, waiting for a writer that never
    came (it hung until killed); nor is it read for another command's metrics before a plan's work."""
    fifo = tmp_path / "metrics.prom"
    os.mkfifo(fifo)
    fleet = short_fleet(tmp_path)
    for command, said in ((["apply", str(tmp_path / "missing.json")], "placer_apply_success 0.0"),
                          (["plan", str(fleet)], "placer_plan_changes{")):
        got: list[str] = []
        reader = threading.Thread(target=lambda into=got: into.append(fifo.read_text()), daemon=True)
        reader.start()
        r = placer(*command, "--metrics-file", str(fifo))
        reader.join(30)
        assert got and said in got[0], (r.returncode, r.stderr)


def test_a_plan_that_finds_none_says_so_in_its_metrics(tmp_path, capsys, monkeypatch):
    """A fleet with no feasible plan (a required policy against a minReplicas): plan exits 1, and the
    metrics file kept the last plan's, placer_plan_solver_status{status="OPTIMAL"} 1 and its cost and
    unmet demand, while every run failed; INFEASIBLE was never 1. It now says INFEASIBLE (UNKNOWN
    where no plan came in the time limit), with no figure of a plan."""
    from tests.fleetkit import policy

    (tmp_path / "ok").mkdir()
    (tmp_path / "no").mkdir()
    metrics = tmp_path / "plan.prom"
    assert placer_cli.main(["plan", str(short_fleet(tmp_path / "ok")), "--metrics-file", str(metrics),
                            "--metrics-label", "fleet=f"]) == 0
    assert by(samples(metrics), "placer_plan_solver_status", "fleet", "status")[("f", "OPTIMAL")] == 1.0
    infeasible = write_fleet(tmp_path / "no", pool("q", "b", count=2),
                             inference("big", [{"location": "a", "rate": 10}], minReplicas=20),
                             policy("only-p", {"allowPools": {}}, pools={"names": ["p"]}))
    assert placer_cli.main(["plan", str(infeasible), "--metrics-file", str(metrics),
                            "--metrics-label", "fleet=f"]) == 1
    assert "only-p" in capsys.readouterr().err
    found = samples(metrics)
    assert sorted(found) == ["placer_plan_solver_status"]
    assert by(found, "placer_plan_solver_status", "fleet", "status") == {
        ("f", "OPTIMAL"): 0.0, ("f", "FEASIBLE"): 0.0, ("f", "INFEASIBLE"): 1.0, ("f", "UNKNOWN"): 0.0}

    from placer import planner

    def no_plan_in_time(*_a: object, **_k: object) -> None:
        raise planner.SolveError("the solver stopped with status UNKNOWN and no placement", status="UNKNOWN")

    monkeypatch.setattr(planner, "make_plan", no_plan_in_time)
    assert placer_cli.main(["plan", str(infeasible), "--metrics-file", str(metrics)]) == 1
    assert by(samples(metrics), "placer_plan_solver_status", "status")[("UNKNOWN",)] == 1.0

def test_a_plan_placer_refuses_says_unknown_in_its_metrics(tmp_path, capsys, monkeypatch):
    """A plan placer's own check refused (the optimizer broke a hard rule: a bug; SolveError with no
    solver status) left the file as it was: the last plan's OPTIMAL, its cost and unmet demand, while
    every run failed. There is no plan: UNKNOWN, as where none came in time."""
    from placer import planner

    fleet = short_fleet(tmp_path)
    metrics = tmp_path / "plan.prom"
    assert placer_cli.main(["plan", str(fleet), "--metrics-file", str(metrics)]) == 0

    def refused(*_a: object, **_k: object) -> None:
        raise planner.SolveError("placer's optimizer made a plan that breaks 1 hard rule(s)")

    monkeypatch.setattr(planner, "make_plan", refused)
    assert placer_cli.main(["plan", str(fleet), "--metrics-file", str(metrics)]) == 1
    assert "breaks 1 hard rule" in capsys.readouterr().err
    found = samples(metrics)
    assert sorted(found) == ["placer_plan_solver_status"]
    assert by(found, "placer_plan_solver_status", "status") == {
        ("OPTIMAL",): 0.0, ("FEASIBLE",): 0.0, ("INFEASIBLE",): 0.0, ("UNKNOWN",): 1.0}


def test_refresh_metrics_count_the_pools_whose_new_nodes_the_last_apply_did_not_see_come_up(tmp_path):
    """A pool the last apply grew whose nodes never came up (EC2 out of capacity: the live apply marks
    it ``"healthy": false``) is a `note: pool/...` line of refresh and a series of its metrics; the
    metrics counted the deployments only, so a stockout that left the pool short raised no alert."""
    fleet = short_fleet(tmp_path)
    out = tmp_path / "plan.json"
    assert placer("plan", str(fleet), "-o", str(out)).returncode == 0
    assert placer("apply", str(out)).returncode == 0
    state_file = tmp_path / "state.json"
    state = json.loads(state_file.read_text())
    state["pools"]["e"]["healthy"] = False  # as a live apply leaves a launch EC2 refused
    state["deployments"]["m@p"]["healthy"] = False  # and a rollout whose wait did not pass
    state_file.write_text(json.dumps(state))
    r = placer("refresh", str(fleet), "--metrics-file", str(tmp_path / "refresh.prom"))
    assert r.returncode == 0, r.stderr
    assert "note: pool/e: the last apply grew it" in r.stderr and "note: deployment/m@p" in r.stderr, r.stderr
    found = samples(tmp_path / "refresh.prom")
    assert found["placer_refresh_unready_pools"] == {(): 1.0}
    assert found["placer_refresh_unhealthy_deployments"] == {(): 1.0}
    assert found["placer_refresh_drifted_resources"] == {(): 0.0}
