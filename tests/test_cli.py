"""CLI contract: exit codes 0/1/2, errors on stderr without tracebacks, plan/show/schema."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests import denied
from tests.fleetkit import inference, link, location, policy, pool, training

ROOT = Path(__file__).resolve().parents[1]


def write_fleet(tmp: Path, *extra: dict) -> Path:
    fleet = tmp / "fleet"
    fleet.mkdir()
    docs = [location("a"), location("b"), link("a", "b", 5), pool("p", "a", usd=1),
            inference("m", [{"location": "a", "rate": 100}]),
            {"apiVersion": "placer.dev/v1alpha1", "kind": "Settings", "metadata": {"name": "s"},
             "spec": {"state": {"path": str(tmp / "state.json")},
                      "apply": {"mode": "gitops", "directory": str(tmp / "deploy")}}}, *extra]
    (fleet / "fleet.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return fleet


def placer(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "placer", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_validate_plan_apply_show_exit_codes(tmp_path):
    fleet = write_fleet(tmp_path)
    assert placer("validate", str(fleet)).returncode == 0
    plan = tmp_path / "plan.json"
    r = placer("plan", str(fleet), "-o", str(plan), "--detailed-exitcode")
    assert r.returncode == 2, r.stderr
    assert "Plan: 1 to create" in r.stdout
    data = json.loads(plan.read_text())
    assert data["formatVersion"] == 1 and data["priorState"] == {"lineage": None, "serial": 0}
    assert [c["address"] for c in data["changes"]] == ["deployment/m@p"]
    assert placer("plan", str(fleet)).returncode == 0  # without --detailed-exitcode changes are still 0
    r = placer("show", str(plan), "--markdown")
    assert r.returncode == 0 and "### placer plan" in r.stdout and "+ deployment/m@p" in r.stdout
    r = placer("apply", str(plan))
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "state.json").read_text())["serial"] == 1
    r = placer("plan", str(fleet), "--detailed-exitcode")
    assert r.returncode == 0 and "No changes" in r.stdout
    # the same plan again is stale now
    r = placer("apply", str(plan))
    assert r.returncode == 1 and "stale plan" in r.stderr and "Traceback" not in r.stderr


def test_plan_json_prints_only_the_plan(tmp_path):
    r = placer("plan", str(write_fleet(tmp_path)), "--json")
    assert r.returncode == 0
    assert json.loads(r.stdout)["solver"]["status"] == "OPTIMAL"


def test_plan_json_under_placer_debug_keeps_its_steps_on_stderr(tmp_path, monkeypatch):
    """PLACER_DEBUG printed the scalable route's step times on stdout, inside `plan --json`'s plan."""
    monkeypatch.setenv("PLACER_OPTIMIZER", "scalable")
    monkeypatch.setenv("PLACER_DEBUG", "1")
    r = placer("plan", str(write_fleet(tmp_path)), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["changes"][0]["address"] == "deployment/m@p"
    assert "[large] " in r.stderr


def test_usage_errors_exit_1_not_2(tmp_path):
    for args in (["plan"], ["no-such-command"], ["plan", "x", "--no-such-flag"], ["show", "a", "--json", "--markdown"]):
        r = placer(*args)
        assert r.returncode == 1, (args, r.returncode, r.stderr)
        assert "Traceback" not in r.stderr


def test_a_plan_of_a_newer_format_says_which_placer_wrote_it(tmp_path):
    """A plan file of a newer formatVersion said "re-plan with this placer version" alone, as of a
    plan broken or stale: it now names the placer that wrote it, to show or apply it with. The
    version is read first: a newer format may have renamed the rest (changes here)."""
    fleet = write_fleet(tmp_path)
    plan = tmp_path / "plan.json"
    assert placer("plan", str(fleet), "-o", str(plan)).returncode == 0
    data = json.loads(plan.read_text())
    data.update(formatVersion=2, placerVersion="0.4.0", actions=data.pop("changes"))
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(data))
    said = (f"Error: {newer}: plan formatVersion 2 is newer than this placer (0.1.0) reads (formatVersion 1): it "
            "was written by placer 0.4.0; show or apply it with that placer (or a newer one), or re-plan with this one")
    for command in (["show"], ["show", "--markdown"], ["apply"]):
        r = placer(*command, str(newer))
        assert r.returncode == 1 and r.stderr.strip() == said, (command, r.stderr)
    data["placerVersion"] = "9\x1b[2J"  # nothing of it reaches the terminal
    newer.write_text(json.dumps(data))
    r = placer("show", str(newer))
    assert r.returncode == 1 and "it was written by a newer placer; show or apply it" in r.stderr, r.stderr


def test_a_plan_records_the_version_of_the_installed_distribution(tmp_path, monkeypatch):
    """A plan's placerVersion was "0.1.0" written by hand in planfile.py (and placer.__version__ by hand
    again), apart from pyproject.toml's version: a release that bumped pyproject's wrote plans saying
    0.1.0. It is the installed distribution's version (its metadata); a source tree not installed reads
    its pyproject.toml."""
    import importlib.metadata

    from placer import __version__
    from placer.planfile import PLACER_VERSION

    assert PLACER_VERSION == __version__ == importlib.metadata.version("placer")
    # a distribution of another version ahead on the path: the plan and --version say its version
    dist = tmp_path / "dist"
    (dist / "placer-9.8.7.dist-info").mkdir(parents=True)
    (dist / "placer-9.8.7.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: placer\nVersion: 9.8.7\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(dist), str(ROOT)]))
    fleet, plan = write_fleet(tmp_path), tmp_path / "plan.json"
    r = placer("plan", str(fleet), "-o", str(plan), cwd=tmp_path)  # not ROOT, whose placer.egg-info is first
    assert r.returncode == 0, r.stderr
    assert json.loads(plan.read_text())["placerVersion"] == "9.8.7"
    assert placer("--version", cwd=tmp_path).stdout.strip() == "placer, version 9.8.7"


def test_a_source_tree_not_installed_reads_its_version_from_pyproject(monkeypatch):
    import importlib.metadata
    import tomllib

    from placer import _version

    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert _version() == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_bad_inputs_are_one_line_errors(tmp_path):
    r = placer("plan", str(tmp_path / "missing"))
    assert r.returncode == 1 and "no such file or directory" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"formatVersion": 99}')
    r = placer("apply", str(bad))
    assert r.returncode == 1 and "formatVersion 99" in r.stderr and "Traceback" not in r.stderr
    r = placer("show", str(tmp_path / "none.json"))
    assert r.returncode == 1 and "no such plan file" in r.stderr


def test_show_dash_says_a_plan_is_not_read_from_stdin(tmp_path):
    """`placer show -` (a plan piped in) said to create one with `placer plan FLEET -o -`, which
    writes a file named '-'; it says the plan is read from a file, and how to save one."""
    r = placer("show", "-", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "not read from standard input" in r.stderr and "-o plan.json" in r.stderr, r.stderr
    assert "-o -" not in r.stderr


@pytest.mark.parametrize("command", [["validate", "-"], ["plan", "-"], ["explain", "-", "m"],
                                     ["whatif", "-", "--demand-scale", "2"]])
def test_a_fleet_given_as_dash_says_a_fleet_is_not_read_from_stdin(tmp_path, command):
    """`cat fleet.yaml | placer validate -` said '-:0: no such file or directory' and nothing of what
    to give, where `placer show -` says a plan is not read from standard input: so does a fleet."""
    r = placer(*command, cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.splitlines()[0] == ("-:0: no such file or directory; a fleet is not read from standard input: "
                                        "save it to a file (> fleet.yaml) and give that, or the fleet's directory"), \
        r.stderr


def test_a_file_of_many_problems_prints_the_first_of_them_and_a_count(tmp_path):
    """A file of 200,000 duplicate keys printed 200,000 lines (and ran past a minute); the first
    MOST_PER_FILE of a file are printed, then one line of how many more, and the count is of every error."""
    from placer.spec.diagnostics import MOST_PER_FILE

    fleet = write_fleet(tmp_path)
    keys = MOST_PER_FILE + 10
    (fleet / "dup.yaml").write_text("k: 1\n" * (keys + 1))  # keys duplicates, and 3 problems of the document
    (fleet / "fleet.yaml").write_text((fleet / "fleet.yaml").read_text().replace("rate: 100", "rate: -1"))
    r = placer("validate", str(fleet))
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    dup = [line for line in lines if line.startswith(f"{fleet / 'dup.yaml'}:")]
    assert len(dup) == MOST_PER_FILE + 1
    assert dup[2] == f"{fleet / 'dup.yaml'}:2: duplicate key 'k', first at line 1: keep one of the two"
    # two at line 1 (no apiVersion, no kind), a duplicate at each line to MOST_PER_FILE - 1; its unknown field 'k' too
    assert dup[-1] == (f"{fleet / 'dup.yaml'}:{MOST_PER_FILE}: ... and {keys + 3 - MOST_PER_FILE} more problems in "
                       "this file from this line on, not shown; fix those above and run again")
    assert sum(line.startswith(f"{fleet / 'fleet.yaml'}:") for line in lines) == 1  # another file's own
    assert lines[-1] == f"{keys + 3 + 1} errors in the fleet; nothing was planned or changed."


def test_a_valid_fleet_of_many_warnings_prints_the_first_of_a_file_and_a_count(tmp_path):
    """Warnings are capped per file as errors are: 200 spread policies with a pools selector (which
    spread ignores) printed 200 warnings, from validate and from every command that reads the fleet."""
    from placer.spec.diagnostics import MOST_PER_FILE

    fleet = write_fleet(tmp_path)
    (fleet / "policies.yaml").write_text(yaml.safe_dump_all(
        [policy(f"spread-{i:03d}", {"spread": {"minFailureDomains": 2}}, pools={"names": ["p"]}, penalty=1) for i in range(200)],
        sort_keys=False))
    path = fleet / "policies.yaml"
    for args in (["validate", str(fleet)], ["plan", str(fleet)]):
        r = placer(*args)
        assert r.returncode == 0, r.stderr
        said = [line for line in r.stderr.splitlines() if line.startswith(f"{path}:")]
        assert len(said) == MOST_PER_FILE + 1, (args, len(said))
        assert all("pools selector is ignored" in line for line in said[:-1])
        assert said[-1].startswith(f"{path}:") and said[-1].endswith(
            f": warning: ... and {200 - MOST_PER_FILE} more problems in this file from this line on, not shown; fix "
            "those above and run again"), said[-1]
    assert "200 warning(s)" in placer("validate", str(fleet)).stdout


def test_a_plan_written_where_no_file_can_be_says_where(tmp_path):
    """--out onto a directory, or under a file: the path the user gave and why, exit 1, and no
    temporary file left behind (the message once named the temporary file placer writes first)."""
    fleet = write_fleet(tmp_path)
    taken = tmp_path / "taken"
    taken.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for out, why in ((taken, f"cannot write {taken}: it is a directory; give a file path"),
                     (a_file / "sub" / "plan.json", f"cannot write {a_file / 'sub' / 'plan.json'}: {a_file} is a file, "
                                                    "not a directory")):
        r = placer("plan", str(fleet), "--out", str(out))
        # said once: under a file it was "cannot write P: cannot write P: F is a file, not a directory"
        assert r.returncode == 1 and " ".join(r.stderr.split()) == f"Error: {why}", r.stderr
    assert sorted(p.name for p in taken.iterdir()) == [] and a_file.read_text() == "x"
    from placer.planfile import check_writable

    for out in (taken, a_file / "plan.json"):
        with pytest.raises(OSError) as caught:
            check_writable(out)
        # a refusal said already was raised from itself: its own cause (a cycle a traceback walks)
        assert caught.value.__cause__ is not caught.value, out


@pytest.mark.parametrize("how", denied.HOWS)
def test_a_plan_written_into_a_folder_it_cannot_read_is_saved(tmp_path, capsys, monkeypatch, how):
    """-o into a folder it may write but not read (`chmod 300`, a drop folder): the plan was written,
    then the folder could not be opened to sync the rename, and it said "cannot write FOLDER:
    Permission denied", exit 1, of a plan that was saved. Now it is saved and said so, exit 0."""
    import placer.cli
    from placer import planfile

    fleet = write_fleet(tmp_path)
    drop = tmp_path / "drop"
    drop.mkdir()
    if how == "chmod":
        denied.unlistable(drop, monkeypatch, how)
    else:
        fsync = planfile._fsync

        def unreadable(path, flags):
            if Path(path) == drop:
                raise PermissionError(13, "Permission denied", str(path))
            fsync(path, flags)

        monkeypatch.setattr(planfile, "_fsync", unreadable)
    try:
        code = placer.cli.main(["plan", str(fleet), "-o", str(drop / "plan.json")])
    finally:
        denied.restore(drop)
    out, err = capsys.readouterr()
    assert code == 0 and f"Saved the plan to {drop / 'plan.json'}." in out and err == "", err
    assert os.listdir(drop) == ["plan.json"] and json.loads((drop / "plan.json").read_text())["formatVersion"] == 1


@pytest.mark.parametrize("failure", ["unwritable", "disk full"])
@pytest.mark.parametrize("as_json", [True, False])
def test_a_plan_whose_file_fails_to_be_written_at_the_end_is_still_printed(tmp_path, capsys, monkeypatch, failure,
                                                                          as_json):
    """`plan -o PLAN` whose write failed after the solve (the folder made unwritable meanwhile, a full
    disk) ended with a bare "Error: cannot write PLAN: Permission denied" and nothing on stdout: the
    plan, `--json`'s too, was lost. It is printed, the failure said after it with what to fix, exit 1
    (not --detailed-exitcode's 2), no temporary file left and an earlier plan at PLAN left whole and
    said to be an earlier one; never "Saved the plan to PLAN"."""
    import errno

    import placer.cli
    from placer import planfile

    fleet = write_fleet(tmp_path)
    drop = tmp_path / "drop"
    drop.mkdir()
    out = drop / "plan.json"
    out.write_text("an earlier plan")
    if failure == "unwritable":
        denied.unwritable(drop, monkeypatch, "seam")
        why, fix = "Permission denied", f"give this user write access to {drop}"
    else:
        fsync = os.fsync

        def full(fd):  # the plan's temporary file filled the disk
            if os.readlink(f"/proc/self/fd/{fd}").startswith(str(drop / ".plan.json.")):
                raise OSError(errno.ENOSPC, "No space left on device")
            return fsync(fd)

        monkeypatch.setattr(planfile.os, "fsync", full)
        why, fix = "No space left on device", f"free space on {drop}'s file system"
    code = placer.cli.main(["plan", str(fleet), "-o", str(out), "--detailed-exitcode",
                            *(["--json"] if as_json else [])])
    printed = capsys.readouterr()
    err = " ".join(printed.err.split())
    assert code == 1, err
    if as_json:
        assert json.loads(printed.out)["changes"], printed.out
        done = "its JSON is on stdout"
    else:
        assert "Plan: 1 to create" in printed.out, printed.out
        done = "its summary is above, but no file holds the plan for `placer apply`"
    assert "Saved the plan" not in printed.out and "This plan was not saved" not in printed.out, printed.out
    assert err == (f"Error: writing the plan to -o {out} failed: cannot write {out}: {why}; {done}; {out} was left "
                   f"as it was: it holds an earlier plan, not this one, so do not apply it: {fix}, then run the "
                   "command again"), err
    assert sorted(p.name for p in drop.iterdir()) == ["plan.json"] and out.read_text() == "an earlier plan"


def test_a_path_with_a_name_too_long_is_refused_in_words(tmp_path):
    """plan -o and render --out with a 300-character name: Python's "[Errno 36] File name too long:"
    and the whole path again; now the path given, why and what to do, exit 1, nothing written."""
    fleet = write_fleet(tmp_path)
    long = "a" * 300
    why = "a file or folder name in it is too long for the file system"
    for out in (tmp_path / f"{long}.json", tmp_path / long / "plan.json"):
        r = placer("plan", str(fleet), "-o", str(out))
        said = " ".join(r.stderr.split())
        assert r.returncode == 1 and said.startswith(f"Error: cannot write {out}: {why}"), r.stderr
        assert said.endswith("give a shorter path") and "Errno" not in said, r.stderr
    plan = tmp_path / "plan.json"
    assert placer("plan", str(fleet), "-o", str(plan)).returncode == 0
    for out in (tmp_path / long, tmp_path / long / "tree"):
        r = placer("render", str(plan), "--out", str(out))
        said = " ".join(r.stderr.split())
        assert r.returncode == 1 and said.startswith(f"Error: cannot write {out}: {why}"), r.stderr
        assert said.endswith("give a shorter path") and "Errno" not in said, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet", "plan.json"]


def test_a_plan_path_that_cannot_be_written_is_refused_before_the_solve(tmp_path, monkeypatch):
    """--out onto a directory, under a file, or into a folder placer may not write was found only
    after the whole solve (44 s at L): an infeasible fleet said it was infeasible instead."""
    from tests.fleetkit import policy

    fleet = write_fleet(tmp_path, inference("big", [{"location": "a", "rate": 10}], minReplicas=20),
                        policy("only-p", {"allowPools": {}}, pools={"names": ["p"]}))
    taken = tmp_path / "taken"
    taken.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for out, why in ((taken, f"cannot write {taken}: it is a directory; give a file path"),
                     (a_file / "plan.json", f"cannot write {a_file / 'plan.json'}: {a_file} is a file, not a directory")):
        r = placer("plan", str(fleet), "--out", str(out))
        assert r.returncode == 1 and why in " ".join(r.stderr.split()) and "only-p" not in r.stderr, r.stderr
    assert list(taken.iterdir()) == []
    # a folder it may not write (root may write any: the refusal is the OS's, asked by a file made and removed)
    from placer import planfile

    def refused(*_a, **_k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(planfile.tempfile, "mkstemp", refused)
    with pytest.raises(PermissionError, match=r"^cannot write .*/ro/plan.json: Permission denied$"):
        planfile.check_writable(tmp_path / "ro" / "plan.json")
    monkeypatch.undo()
    planfile.check_writable(tmp_path / "new" / "plan.json")
    assert not (tmp_path / "new").exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "a-file", "fleet", "taken"]


def test_infeasible_plan_names_the_conflict(tmp_path):
    from tests.fleetkit import policy
    fleet = write_fleet(tmp_path, pool("q", "b", count=2), inference("big", [{"location": "a", "rate": 10}], minReplicas=20),
                        policy("only-p", {"allowPools": {}}, pools={"names": ["p"]}))
    r = placer("plan", str(fleet))
    assert r.returncode == 1
    assert "only-p" in r.stderr and "minReplicas of big" in r.stderr and "Traceback" not in r.stderr


def test_a_replica_larger_than_every_node_is_unplaced_not_a_fleet_error(tmp_path):
    # SPEC section 2: demand that cannot be served is not an error; it was one, and no model was planned
    fleet = write_fleet(tmp_path, training("pretrain", 1, gpus=16),
                        inference("wide", [{"location": "a", "rate": 10}], gpus=16))
    plan = tmp_path / "plan.json"
    r = placer("plan", str(fleet), "-o", str(plan))
    assert r.returncode == 0, r.stderr
    assert "Model/pretrain: spec.replica.gpus: warning: a replica of 16 GPUs" in r.stderr
    data = json.loads(plan.read_text())
    assert [(p["model"], p["pool"]) for p in data["placements"]] == [("m", "p")]
    assert data["unplacedReplicas"] == [{"model": "pretrain", "replicas": 1}]
    assert data["unmet"] == [{"model": "wide", "demandLocation": "a", "rate": 10.0}]


def test_a_rule_given_without_its_parameters_is_a_fleet_error_not_an_internal_one(tmp_path):
    """`rule: {spread: null}` passed the loader as no rule at all: validate and plan said 'internal error
    (AssertionError: validated Rule has no rule set) ... report it'."""
    fleet = write_fleet(tmp_path, policy("spread-it", {"spread": None}))
    for command in ("validate", "plan"):
        r = placer(command, str(fleet))
        assert r.returncode == 1, r.stderr
        assert "fleet.yaml:" in r.stderr and "Policy/spread-it: spec.rule.spread: is empty (null)" in r.stderr
        assert "internal error" not in r.stderr and "Traceback" not in r.stderr


def test_explain_and_whatif(tmp_path):
    fleet = write_fleet(tmp_path, pool("q", "b", usd=5, gpu="L4-24GB"))
    r = placer("explain", str(fleet), "m")
    assert r.returncode == 0, r.stderr
    assert "1 replica(s) on p" in r.stdout and "throughput: no throughput given for L4-24GB" in r.stdout
    r = placer("explain", str(fleet), "mm")
    assert r.returncode == 1 and "did you mean 'm'" in r.stderr
    r = placer("whatif", str(fleet), "--demand-scale", "20", "--fail-pool", "p", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["base"]["unmet"] == {} and report["scenario"]["unmet"]["m"] == 2000
    r = placer("whatif", str(fleet), "--fail-pool", "nope")
    assert r.returncode == 1 and "no pool named 'nope'" in r.stderr


def test_a_log_keeps_long_names_whole_on_their_rows(tmp_path):
    """Piped or in a CI log, tables were 80 columns wide: a 63-character pool name was folded over
    two lines, and `placer plan F | grep POOL` missed its row. A terminal's width (COLUMNS) still
    folds."""
    long_pool, long_model = "p" + "-x" * 31, "m" + "-y" * 31
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    docs = [location("a"), pool(long_pool, "a", usd=1), inference(long_model, [{"location": "a", "rate": 100}])]
    (fleet / "fleet.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    r = subprocess.run([sys.executable, "-m", "placer", "plan", str(fleet), "--state", str(tmp_path / "s.json")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    rows = r.stdout.splitlines()
    assert len(long_pool) == len(long_model) == 63
    assert any(long_pool in row and "/" in row for row in rows), r.stdout  # the pools table's row, whole
    assert any(row.strip().startswith(long_model + " ") for row in rows), r.stdout
    narrow = subprocess.run([sys.executable, "-m", "placer", "plan", str(fleet), "--state", str(tmp_path / "s.json")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, env={**env, "COLUMNS": "60"})
    assert not any(long_pool in row for row in narrow.stdout.splitlines() if "┃" in row or "│" in row)


def test_schema_is_json_schema():
    r = placer("schema")
    schema = json.loads(r.stdout)
    kinds = {v["properties"]["kind"]["const"] for v in schema["oneOf"]}
    assert kinds == {"Location", "Link", "GPUType", "Pool", "Model", "Policy", "Settings"}
    import jsonschema
    jsonschema.Draft202012Validator.check_schema(schema)


def test_apply_fleet_needs_auto_approve(tmp_path):
    fleet = write_fleet(tmp_path)
    r = placer("apply", str(fleet))
    assert r.returncode == 1 and "--auto-approve" in r.stderr
    assert not (tmp_path / "state.json").exists()
    r = placer("apply", str(fleet), "--auto-approve")
    assert r.returncode == 0, r.stderr
    assert "Apply complete: 1 change(s) applied" in r.stdout
    assert (tmp_path / "deploy" / "clusters" / "default" / "m-p.yaml").exists()
    assert placer("plan", str(fleet), "--detailed-exitcode").returncode == 0


def slow_optimizer(monkeypatch, seconds: float = 0.35) -> None:
    """The planner's optimizer, made to say "solving: a slow fleet" and take ``seconds`` longer."""
    import time as _time

    import placer.planner

    real = placer.planner.optimize

    def slow(*args, **kwargs):
        kwargs["progress"]("solving: a slow fleet")
        _time.sleep(seconds)
        return real(*args, **{**kwargs, "progress": None})

    monkeypatch.setattr(placer.planner, "optimize", slow)


def test_a_long_plan_in_a_ci_log_says_it_is_still_planning(tmp_path, capsys, monkeypatch):
    """Where stderr is no terminal (a CI log), a plan that takes longer than STILL_EVERY prints
    "Still planning… [Ns elapsed; now: <the current step>]" as it goes, and nothing once done;
    a short plan prints none (the stdout of --json stays the plan alone either way)."""
    import time as _time

    import placer.cli

    fleet = write_fleet(tmp_path)
    slow_optimizer(monkeypatch)

    monkeypatch.setattr(placer.cli, "STILL_EVERY", 0.1)
    assert placer.cli.main(["plan", str(fleet), "--state", str(tmp_path / "state.json")]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("Still planning")]
    assert sum(line.endswith("s elapsed; now: solving: a slow fleet]") for line in lines) >= 2, err
    _time.sleep(0.3)  # the ticker stopped with the plan: nothing more comes
    assert "Still planning" not in capsys.readouterr().err
    monkeypatch.setattr(placer.cli, "STILL_EVERY", 10.0)
    assert placer.cli.main(["plan", str(fleet), "--state", str(tmp_path / "state.json")]) == 0
    assert "Still planning" not in capsys.readouterr().err


def slow_reading(monkeypatch, seconds):
    """Every fleet file takes ``seconds`` more to read (bench L: 8-11 s in all)."""
    import time as _time

    from placer.spec import source

    real = source.parse_text

    def slow(text, path, *what):
        _time.sleep(seconds)
        return real(text, path, *what)

    monkeypatch.setattr(source, "parse_text", slow)


def test_progress_in_a_ci_log_counts_from_the_command_start_reading_the_fleet_too(tmp_path, capsys, monkeypatch):
    """`plan L` in CI printed its first line at 18.5 s, "Still planning… [10s elapsed; ...]": the
    spinner opened, and its clock started, once the fleet was read. The lines now come from the
    command's start, say which file is being read, and the elapsed time counts the reading."""
    import re
    import time as _time

    import placer.cli
    import placer.planner

    fleet = write_fleet(tmp_path)
    slow_reading(monkeypatch, 1.3)
    real = placer.planner.optimize

    def slow(*args, **kwargs):
        kwargs["progress"]("solving: a slow fleet")
        _time.sleep(1.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(placer.planner, "optimize", slow)
    monkeypatch.setattr(placer.cli, "STILL_EVERY", 1.0)
    assert placer.cli.main(["plan", str(fleet), "--state", str(tmp_path / "state.json")]) == 0
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("Still")]
    said = [(int(m[1]), m[2]) for line in lines if (m := re.fullmatch(r"Still planning… \[(\d+)s elapsed; now: (.*)\]",
                                                                      line))]
    assert len(said) == len(lines) and said, err
    assert said[0][1] == "reading fleet: 1 of 1 files", said
    assert all(elapsed >= 2 for elapsed, step in said if step == "solving: a slow fleet"), said  # 1.3 s read first
    assert "Still" not in out and "Plan: 1 to create" in out


def test_validate_warns_of_an_eks_pool_selected_by_its_node_group_name(tmp_path):
    """A spot change of an EKS pool in gitops replaces its node group under another name (h100-alt, made
    before h100 goes): pods whose nodeSelector is eks.amazonaws.com/nodegroup: h100 would not follow it,
    and validate said nothing. It warns (exit 0) at the pool, saying why and to select placer.dev/pool,
    which placer's Terraform module sets on both groups' nodes; a pool that selects that is not warned of."""
    def eks_pool(name, selector):
        return pool(name, "a", provider="aws", count=None, min_nodes=0, max_nodes=2, target={
            "aws": {"region": "eu-west-1", "eks": {"cluster": "ml", "nodegroup": name}},
            "kubernetes": {"context": "ml", "nodeSelector": selector}})

    fleet = write_fleet(tmp_path, eks_pool("h100", {"eks.amazonaws.com/nodegroup": "h100"}),
                        eks_pool("l4", {"placer.dev/pool": "l4"}))
    r = placer("validate", str(fleet))
    assert r.returncode == 0, r.stderr
    said = [line for line in (r.stdout + r.stderr).splitlines() if "eks.amazonaws.com/nodegroup" in line]
    assert len(said) == 1 and "Pool/h100: spec.target.kubernetes.nodeSelector: warning: " \
        "eks.amazonaws.com/nodegroup: h100 does not follow the pool's node group when a change of its spot " \
        "replaces it" in said[0], r.stdout + r.stderr
    assert "placer makes the new group, h100-alt or h100 in turn, before the old one goes" in said[0]
    assert "select placer.dev/pool: h100 instead, which placer's Terraform module puts on the nodes of both" \
        in said[0]
    assert "Pool/l4" not in r.stdout + r.stderr


def test_validate_render_and_explain_show_progress_too(tmp_path, capsys, monkeypatch):
    """`validate`, `render` and `explain --plan` printed nothing until they finished (12 s, 34 s and
    17 s at L); each now shows its steps as plan does, on stderr: stdout holds their output alone."""
    import time as _time

    import placer.cli
    import placer.render.tree

    fleet = write_fleet(tmp_path)
    plan = tmp_path / "plan.json"
    assert placer.cli.main(["plan", str(fleet), "-o", str(plan), "--state", str(tmp_path / "state.json")]) == 0
    capsys.readouterr()
    monkeypatch.setattr(placer.cli, "STILL_EVERY", 0.1)
    slow_reading(monkeypatch, 0.35)
    assert placer.cli.main(["validate", str(fleet)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{fleet}: valid (2 locations, 1 pool, 1 model, 0 policies)\n"
    assert "s elapsed; now: reading fleet: 1 of 1 files]" in err and err.startswith("Still validating… ["), err

    assert placer.cli.main(["explain", str(fleet), "m", "--plan", str(plan)]) == 0
    out, err = capsys.readouterr()
    assert "Still" not in out and out.startswith("m: 1 replica(s) on p")
    assert "Still explaining… [" in err and "now: reading fleet: 1 of 1 files]" in err, err

    real = placer.render.tree.tree

    def slow_tree(*args, **kwargs):
        _time.sleep(0.35)
        return real(*args, **kwargs)

    monkeypatch.setattr(placer.render.tree, "tree", slow_tree)
    assert placer.cli.main(["render", str(plan), "--out", str(tmp_path / "gitops")]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Wrote ") and "Still" not in out
    assert "Still rendering… [" in err and "now: building the GitOps tree]" in err, err


def test_json_output_shows_the_same_progress_on_stderr(tmp_path, capsys, monkeypatch):
    """`plan --json`, `explain --json` and `whatif --json` showed no progress at all: `plan L --json >
    plan.json` was 30 s of silence in a CI log (XL's minutes). They show what the text output does, on
    stderr, stdout holding the JSON alone: the CI log's lines here, a terminal's spinner below."""
    import io
    import re

    from rich.console import Console

    import placer.cli

    fleet = write_fleet(tmp_path)
    state = str(tmp_path / "state.json")
    monkeypatch.setattr(placer.cli, "STILL_EVERY", 0.1)
    slow_optimizer(monkeypatch)
    assert placer.cli.main(["plan", str(fleet), "--json", "--state", state]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["formatVersion"] == 1
    assert re.search(r"^Still planning… \[\d+s elapsed; now: solving: a slow fleet\]$", err, re.M), err

    slow_reading(monkeypatch, 0.35)
    assert placer.cli.main(["explain", str(fleet), "m", "--json", "--state", state]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) and "Still explaining… [" in err and "now: reading fleet: 1 of 1 files]" in err, err
    assert placer.cli.main(["whatif", str(fleet), "--json", "--state", state]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["base"]["feasible"] and "Still planning… [" in err, err

    # `plan --json > plan.json` on a terminal: the spinner is drawn on stderr, and stdout is the plan alone
    monkeypatch.setattr(placer.cli, "SPINNER_TICK", 0.05)
    terminal = Console(file=io.StringIO(), force_terminal=True, _environ={"TERM": "xterm"})
    monkeypatch.setattr(placer.cli, "err", terminal)
    assert placer.cli.main(["plan", str(fleet), "--json", "--state", state]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["formatVersion"] == 1 and err == ""
    drawn = terminal.file.getvalue()
    assert re.search(r"solving: a slow fleet \[\d+s elapsed\]", drawn) and "Still" not in drawn, drawn


def test_the_spinner_shows_the_step_under_way_from_the_command_start(tmp_path, monkeypatch):
    """On a terminal, `plan L` showed nothing for 8 s (the fleet being read), then the solver's last
    finished step ("seed: 0.21s lp: 23889 pairs" through the LP); it shows the step under way."""
    import io

    from rich.console import Console

    import placer.cli

    fleet = write_fleet(tmp_path)
    shown: list[str] = []

    class Status:
        def __init__(self, text):
            shown.append(text)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, text):
            shown.append(text)

    terminal = Console(file=io.StringIO(), force_terminal=True)
    monkeypatch.setattr(terminal, "status", Status)
    monkeypatch.setattr(placer.cli, "err", terminal)
    monkeypatch.setattr(placer.cli, "out", Console(file=io.StringIO()))
    monkeypatch.setenv("PLACER_OPTIMIZER", "scalable")
    assert placer.cli.main(["plan", str(fleet), "--state", str(tmp_path / "state.json")]) == 0
    import re

    # each step with the time since the command started (the ticker says it again, every SPINNER_TICK)
    assert all(re.search(r" \[\d+s elapsed\]$", text) for text in shown[1:]), shown
    steps = [re.sub(r" \[\d+s elapsed\]$", "", text) for text in shown]
    shown = [step for i, step in enumerate(steps) if i == 0 or step != steps[i - 1]]
    assert shown[:3] == ["planning…", "reading fleet", "reading fleet: 1 of 1 files"], shown
    assert "finding eligible pools" in shown and "neighbourhood search" in shown, shown
    assert shown[-2:] == ["pricing the plan and checking its hard rules", "listing the changes from the state"], shown


def test_debug_shows_the_traceback_wherever_it_is_given(monkeypatch, capsys):
    """An internal error says "rerun with --debug"; `placer validate F --debug` was refused ("No
    such option"), only `placer --debug validate F` worked."""
    import placer.cli as cli

    def boom(path: str, progress: object = None, check: object = None) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("placer.fleet.load_fleet", boom)  # the commands import it when they run
    assert cli.main(["validate", "fleet"]) == 1
    said = capsys.readouterr().err
    assert "internal error (RuntimeError: boom); rerun with --debug" in said and "Traceback" not in said
    for argv in (["--debug", "validate", "fleet"], ["validate", "fleet", "--debug"], ["validate", "--debug", "fleet"]):
        assert cli.main(argv) == 1
        said = capsys.readouterr().err
        assert "Traceback" in said and "RuntimeError: boom" in said and "No such option" not in said, argv
        assert "the traceback is above" in said and "rerun with --debug" not in said, argv
    # after `--`, --debug is an argument: a folder of that name, not the option
    assert cli.main(["validate", "--", "--debug"]) == 1
    said = capsys.readouterr().err
    assert "Traceback" not in said and "Missing argument" not in said


def test_placer_alone_prints_its_help_not_an_error(capsys):
    import placer.cli as cli

    assert cli.main([]) == 1
    said = capsys.readouterr().err
    assert said.startswith("Usage: placer [OPTIONS] COMMAND") and "Error" not in said and "Commands:" in said


def test_render_keeps_to_its_tree_and_to_its_own_files(tmp_path):
    """A context is a folder name only where it is a plain name: `../../escaped` wrote manifests
    outside the tree, and an EKS context's ARN made nested folders. A manifest placer did not write
    (a namespace) stays, listed in its folder's kustomization; placer's own stale ones go (render
    removed every file it did not write, and said nothing)."""
    k8s = {"target": {"kubernetes": {"context": "../../escaped"}}}
    arn = {"target": {"kubernetes": {"context": "arn:aws:eks:eu-central-1:111:cluster/fra"}}}
    fleet = write_fleet(tmp_path, pool("q", "b", usd=1, provider="kubernetes", **k8s),
                        pool("r", "b", usd=1, provider="kubernetes", **arn),
                        inference("n", [{"location": "b", "rate": 900}]))
    plan = tmp_path / "plan.json"
    assert placer("plan", str(fleet), "-o", str(plan)).returncode == 0
    out = tmp_path / "a" / "b" / "gitops"
    mine = out / "clusters" / "default"
    mine.mkdir(parents=True)
    (mine / "namespace.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: models}\n")
    (mine / "old-p.yaml").write_text("metadata: {labels: {app.kubernetes.io/managed-by: placer}}\n")
    r = placer("render", str(plan), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "kept 1 manifest(s) placer did not write" in r.stdout
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.yaml") if p.parent != fleet)
    assert all(w.startswith("a/b/gitops/clusters/") and w.count("/") == 5 for w in written), written
    folders = sorted(p.name for p in (out / "clusters").iterdir())
    assert folders[0] == "arn-aws-eks-eu-central-1-111-cluster-fra-" + folders[0][-8:] and len(folders) == 3
    assert folders[1] == "default" and folders[2].startswith("escaped-")
    assert not (mine / "old-p.yaml").exists() and (mine / "namespace.yaml").exists()
    assert "namespace.yaml" in yaml.safe_load((mine / "kustomization.yaml").read_text())["resources"]
    assert r.stdout.startswith("Wrote 7 file(s) under ") and "removed 1 the plan no longer has" in r.stdout
    # the same plan again writes nothing, and says so (it said "Wrote 7 file(s)")
    r = placer("render", str(plan), "--out", str(out))
    assert r.returncode == 0 and r.stdout.startswith(f"Wrote 0 file(s) under {out}, 7 unchanged;"), r.stdout
    # a cluster the plan no longer has leaves no empty folder behind, as the gitops apply leaves none
    gone = out / "clusters" / "edge-gone"
    gone.mkdir()
    (gone / "m-edge.yaml").write_text("metadata: {labels: {app.kubernetes.io/managed-by: placer}}\n")
    (gone / "kustomization.yaml").write_text("resources: [m-edge.yaml]\n")
    r = placer("render", str(plan), "--out", str(out))
    assert r.returncode == 0 and "removed 2 the plan no longer has" in r.stdout, r.stdout
    assert not gone.exists() and sorted(p.name for p in (out / "clusters").iterdir()) == folders


def _planned_for_cluster_c1(tmp_path):
    """A saved plan of one model on a kubernetes pool of context c1, and that cluster's folder of a
    GitOps tree under tmp_path/gitops, made but not rendered into."""
    fleet = write_fleet(tmp_path, pool("q", "b", usd=1, provider="kubernetes",
                                       target={"kubernetes": {"context": "c1"}}),
                        inference("n", [{"location": "b", "rate": 900}]))
    plan = tmp_path / "plan.json"
    assert placer("plan", str(fleet), "-o", str(plan)).returncode == 0
    folder = tmp_path / "gitops" / "clusters" / "c1"
    folder.mkdir(parents=True)
    return plan, folder


@pytest.mark.parametrize("how", denied.HOWS)
@pytest.mark.parametrize("enter", [False, True])
def test_render_into_a_cluster_folder_it_cannot_list_says_so_in_words(tmp_path, capsys, monkeypatch, enter, how):
    """render sweeps what a killed write left in each cluster folder first; one it can write but not
    list (`chmod 300`) said "cannot write OUT: Permission denied", the tree it named writable and no
    word of the folder or what to do, and one it can list but not enter (`chmod 600`) Python's
    "[Errno 13] Permission denied: 'FOLDER/kustomization.yaml'". Now the folder, why and what to
    do, exit 1, nothing written."""
    import placer.cli

    plan, folder = _planned_for_cluster_c1(tmp_path)
    (folder / "namespace.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: models}\n")
    (denied.unsearchable if enter else denied.unlistable)(folder, monkeypatch, how)
    try:
        code = placer.cli.main(["render", str(plan), "--out", str(tmp_path / "gitops")])
    finally:
        denied.restore(folder)
    said = " ".join(capsys.readouterr().err.split())
    assert code == 1 and said == (f"Error: cannot write {tmp_path / 'gitops'}: cannot list the folder {folder} "
                                  "(permission denied) to remove what a killed write left there: make the folder "
                                  f"readable as well as writable by this user (`chmod u+rwx {folder}` if you own "
                                  "it), then run the command again"), said
    assert os.listdir(folder) == ["namespace.yaml"] and not (tmp_path / "gitops" / "terraform").exists()


@pytest.mark.parametrize("how", denied.HOWS)
@pytest.mark.parametrize(("name", "doing"), [("clusters/c1/namespace.yaml", "to tell whether placer wrote it"),
                                             ("terraform/placer.auto.tfvars.json", "to compare it with the plan's")])
def test_render_over_a_file_it_cannot_read_says_so_in_words(tmp_path, capsys, monkeypatch, name, doing, how):
    """A file of the tree render reads (a manifest, to tell whether placer wrote it; a file of the
    plan's, to compare it) that it cannot read (`chmod 200`) said Python's "Error: [Errno 13]
    Permission denied: 'FILE'". Now the file, why and what to do, exit 1, nothing written."""
    import placer.cli

    plan, folder = _planned_for_cluster_c1(tmp_path)
    out = tmp_path / "gitops"
    (folder / "namespace.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: models}\n")
    assert placer.cli.main(["render", str(plan), "--out", str(out)]) == 0
    capsys.readouterr()
    kust = folder / "kustomization.yaml"
    kust.write_text("resources: []\n")  # a render that got past the file would write it
    denied.unreadable(out / name, monkeypatch, how)
    try:
        code = placer.cli.main(["render", str(plan), "--out", str(out)])
    finally:
        denied.restore(out / name)
    said = " ".join(capsys.readouterr().err.split())
    assert code == 1 and said == (f"Error: cannot read {out / name} (permission denied) {doing}; nothing was "
                                  f"written: make it readable by this user (`chmod u+r {out / name}` if you own it), "
                                  "then run the command again"), said
    assert kust.read_text() == "resources: []\n"


def test_render_over_a_file_that_is_no_utf8_writes_the_plans(tmp_path):
    """A file at one of the plan's paths holding bytes that are no UTF-8 was an internal error
    (UnicodeDecodeError); it is written over with the plan's, as any other edit."""
    plan, _ = _planned_for_cluster_c1(tmp_path)
    out = tmp_path / "gitops"
    assert placer("render", str(plan), "--out", str(out)).returncode == 0
    tfvars = out / "terraform" / "placer.auto.tfvars.json"
    want = tfvars.read_bytes()
    tfvars.write_bytes(b"\xff\xfe{}")
    r = placer("render", str(plan), "--out", str(out))
    assert r.returncode == 0 and r.stdout.startswith(f"Wrote 1 file(s) under {out}"), r.stdout + r.stderr
    assert tfvars.read_bytes() == want


def test_render_lists_a_deployment_once_where_a_file_placer_did_not_write_had_its_name(tmp_path):
    """A manifest placer did not write at the path of one of the plan's Deployments (a hand-written
    one from before placer) is replaced by the plan's, as the gitops apply writes it, and said so: the
    kustomization listed the file twice (kustomize refuses the folder) and render said it was kept."""
    plan, folder = _planned_for_cluster_c1(tmp_path)
    (folder / "n-q.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: n-q}\n")
    r = placer("render", str(plan), "--out", str(tmp_path / "gitops"))
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load((folder / "kustomization.yaml").read_text())["resources"] == ["n-q.yaml"]
    assert yaml.safe_load((folder / "n-q.yaml").read_text())["kind"] == "Deployment"
    assert "kept" not in r.stdout and "replaced 1 placer did not write" in r.stdout and "clusters/c1/n-q.yaml" in r.stdout


def test_render_lists_a_yml_manifest_placer_did_not_write(tmp_path):
    """A namespace.yml beside placer's manifests is kept and listed in the kustomization, as a
    namespace.yaml is, whatever its labels (placer writes *.yaml only): it was left out of the list."""
    plan, folder = _planned_for_cluster_c1(tmp_path)
    (folder / "namespace.yml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: models}\n")
    (folder / "copy.yml").write_text("metadata: {labels: {app.kubernetes.io/managed-by: placer}}\n")
    (folder / "base.yaml").mkdir()  # a folder, no manifest: render failed on it ("[Errno 21] Is a directory")
    r = placer("render", str(plan), "--out", str(tmp_path / "gitops"))
    assert r.returncode == 0 and "kept 2 manifest(s) placer did not write" in r.stdout, r.stdout + r.stderr
    resources = yaml.safe_load((folder / "kustomization.yaml").read_text())["resources"]
    assert resources == ["copy.yml", "n-q.yaml", "namespace.yml"] and (folder / "copy.yml").exists()


def test_render_never_writes_through_a_symbolic_link_in_the_tree(tmp_path):
    """As the gitops apply refuses them: a kustomization that was a link to a file outside the tree
    was overwritten with the folder's list, and a cluster folder that was a link got the manifests
    and a kustomization where it pointed. render now stops, naming the link, and writes nothing."""
    fleet = write_fleet(tmp_path, pool("q", "b", usd=1, provider="kubernetes",
                                       target={"kubernetes": {"context": "c1"}}),
                        inference("n", [{"location": "b", "rate": 900}]))
    plan = tmp_path / "plan.json"
    assert placer("plan", str(fleet), "-o", str(plan)).returncode == 0
    out = tmp_path / "gitops"
    assert placer("render", str(plan), "--out", str(out)).returncode == 0
    outside = tmp_path / "outside.yaml"
    outside.write_text("mine\n")
    kust = out / "clusters" / "c1" / "kustomization.yaml"
    kust.unlink()
    kust.symlink_to(outside)
    r = placer("render", str(plan), "--out", str(out))
    assert r.returncode == 1 and f"{kust} is a symbolic link (to {outside})" in r.stderr, r.stderr
    assert outside.read_text() == "mine\n"
    kust.unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    folder = out / "clusters" / "c1"
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    folder.symlink_to(elsewhere)
    r = placer("render", str(plan), "--out", str(out))
    assert r.returncode == 1 and f"{folder} is a symbolic link" in r.stderr, r.stderr
    assert list(elsewhere.iterdir()) == []
    # nor removes through one what the plan no longer has (the pool moved to another context)
    folder.unlink()
    assert placer("render", str(plan), "--out", str(out)).returncode == 0
    (tmp_path / "away").mkdir()
    moved = folder.rename(tmp_path / "away" / "c1")
    folder.symlink_to(moved)
    kept = sorted(p.name for p in moved.iterdir())
    (tmp_path / "v2").mkdir()
    fleet2 = write_fleet(tmp_path / "v2", pool("q", "b", usd=1, provider="kubernetes",
                                              target={"kubernetes": {"context": "c2"}}),
                         inference("n", [{"location": "b", "rate": 900}]))
    plan2 = tmp_path / "plan2.json"
    assert placer("plan", str(fleet2), "-o", str(plan2)).returncode == 0
    r = placer("render", str(plan2), "--out", str(out))
    assert r.returncode == 1 and f"{folder} is a symbolic link" in r.stderr, r.stderr
    assert sorted(p.name for p in moved.iterdir()) == kept and kept


def test_a_plan_edited_to_name_a_path_is_refused_not_written():
    import pytest

    from placer.planfile import PlanFileError
    from placer.render.tree import tree

    for model, where in (("../../x", "p"), ("m", "p/../../y"), ("M", "p")):
        with pytest.raises(PlanFileError, match="which is no DNS-1123 name"):
            tree({"placements": [{"target": {"model": model, "pool": where}, "replicas": 1}]})


def test_long_names_fold_rather_than_cut_on_a_narrow_log():
    """A CI log is 80 columns: two pools whose names end -zone-a and -zone-b both came out
    "...-zo…", one row twice."""
    from rich.console import Console

    from placer.render.summary import render

    names = [f"gpu-pool-in-the-frankfurt-datacentre-rack-row-{z}" for z in ("zone-a", "zone-b")]
    plan = {"solver": {"status": "OPTIMAL"}, "cost": {"totalUsdPerHour": 1.0}, "changes": [],
            "pools": [{"pool": n, "nodes": 1, "gpusUsed": 1, "gpusCapacity": 8} for n in names],
            "placements": [{"model": "a-model-with-a-rather-long-name-v2", "pool": n, "replicas": 1} for n in names]}
    console = Console(width=80, record=True)
    render(plan, console)
    text = console.export_text()
    assert "…" not in text and "zone-a" in text and "zone-b" in text, text  # each name whole, folded


def test_an_empty_path_is_refused(tmp_path):
    """`plan -o ''` exited 0 and saved no plan, saying nothing; `render --out ''` wrote the tree
    into the current directory."""
    fleet = write_fleet(tmp_path)
    r = placer("plan", str(fleet), "-o", "")
    assert r.returncode == 1 and "Invalid value for '-o' / '--out': is empty; give a file or directory path" \
        in r.stderr, r.stderr
    assert "Plan:" not in r.stdout
    plan = tmp_path / "plan.json"
    assert placer("plan", str(fleet), "-o", str(plan)).returncode == 0
    r = placer("render", str(plan), "--out", "", cwd=tmp_path)
    assert r.returncode == 1 and "'--out': is empty" in r.stderr, r.stderr
    assert not (tmp_path / "clusters").exists()


def test_an_ascii_stdout_gets_ascii(tmp_path):
    """Where stdout cannot encode placer's own characters, they degrade ("3xpool", "->", "...")
    as rich's borders do: the × of a placement was an internal error (UnicodeEncodeError)."""
    fleet = write_fleet(tmp_path)
    plan = tmp_path / "plan.json"
    assert placer("plan", str(fleet), "-o", str(plan)).returncode == 0
    (fleet / "more.yaml").write_text(yaml.safe_dump(location("c")))
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}

    def ascii_placer(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "placer", *args], cwd=ROOT, capture_output=True, env=env,
                              timeout=120)

    r = ascii_placer("show", str(plan))
    assert r.returncode == 0, r.stderr
    assert b" 1xp " in r.stdout and r.stdout.isascii()
    r = ascii_placer("apply", str(plan), "--fleet", str(fleet))  # the digests are cut with an ellipsis
    assert r.returncode == 1 and b"was made from another version of" in r.stderr, r.stderr
    assert b"...," in r.stderr and r.stderr.isascii()


def test_a_plan_made_with_state_is_applied_to_that_state(tmp_path):
    """`plan --state S -o PLAN` then `apply PLAN`, as plan's own hint says: the plan carries the
    state it was made against. It carried the fleet's Settings state, so the apply recorded into
    another file than the one planned from, and the next `plan --state S` started from nothing."""
    fleet = write_fleet(tmp_path)
    other, plan = tmp_path / "other" / "state.json", tmp_path / "plan.json"
    r = placer("plan", str(fleet), "-o", str(plan), "--state", str(other))
    assert r.returncode == 0, r.stderr
    assert f"Apply it with: placer apply {plan}" in r.stdout
    assert json.loads(plan.read_text())["settings"]["state"] == {"backend": "local", "path": str(other)}
    r = placer("apply", str(plan))
    assert r.returncode == 0, r.stderr
    assert json.loads(other.read_text())["serial"] == 1
    assert not (tmp_path / "state.json").exists()  # the Settings' state was not planned from
    r = placer("plan", str(fleet), "--state", str(other), "--detailed-exitcode")
    assert r.returncode == 0 and "No changes" in r.stdout, r.stdout + r.stderr


def test_a_fleet_directory_given_as_a_plan_file_says_so(tmp_path):
    """`show`, `render` and `explain --plan` of a directory (the fleet, where the plan file goes)
    say what it is and what to do, as `apply` does; they said "cannot read plan file: [Errno 21]
    Is a directory: '...'"."""
    fleet = write_fleet(tmp_path)
    hint = f"{fleet} is a directory, not a plan file: make one with `placer plan {fleet} -o plan.json` and pass that"
    for args in (["show", str(fleet)], ["render", str(fleet), "--out", str(tmp_path / "tree")],
                 ["explain", str(fleet), "m", "--plan", str(fleet)]):
        r = placer(*args)
        assert r.returncode == 1 and r.stderr.strip() == f"Error: {hint}", (args, r.stderr)


def test_a_plan_file_under_a_file_says_which_is_a_file(tmp_path):
    """`show PLAN/x` where PLAN is a file said "cannot read plan file: [Errno 20] Not a directory:
    '...'"; now which of its folders is a file."""
    plan = tmp_path / "plan.json"
    plan.write_text("{}")
    r = placer("show", str(plan / "x"))
    assert r.returncode == 1 and r.stderr.strip() == (f"Error: {plan / 'x'}: no such plan file: {plan} is a file, not "
                                                      "a directory"), r.stderr


def _refuses_unreadable_plan(command: str, plan: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """``placer COMMAND PLAN`` with ``plan``'s folder one this user cannot enter (chmod), or ``plan``
    one it cannot read (the seam: root enters any folder, and the seam's folder refuses os.stat in
    it, as apply's look at whether PLAN is a fleet folder meets), says what to change, exit 1."""
    import placer.cli

    folder = plan.parent
    denied.unsearchable(folder, monkeypatch, how)
    if how == "chmod":
        todo = f"the folder {folder} cannot be entered; make it searchable by this user (`chmod u+x {folder}`"
    else:
        denied.unreadable(plan, monkeypatch, how)
        todo = f"make it readable by this user (`chmod u+r {plan}`"
    try:
        code = placer.cli.main([command, str(plan)])
    finally:
        denied.restore(folder)
    said = " ".join(capsys.readouterr().err.split())
    assert code == 1 and said == (f"Error: cannot read {plan} (permission denied) as a plan file: {todo} if you own "
                                  "it), then run the command again"), said


@pytest.mark.parametrize("how", denied.HOWS)
def test_a_plan_file_it_cannot_read_says_what_to_change(tmp_path, capsys, monkeypatch, how):
    """A plan file in a folder this user cannot enter (`chmod 600`; a file it cannot read, as the
    seam has it) said "cannot read plan file: [Errno 13] Permission denied: 'PATH'". Now what to
    change, and how, exit 1."""
    folder = tmp_path / "plans"
    folder.mkdir()
    plan = folder / "plan.json"
    plan.write_text("{}")
    _refuses_unreadable_plan("show", plan, capsys, monkeypatch, how)


@pytest.mark.parametrize("how", denied.HOWS)
def test_apply_of_a_plan_in_a_folder_it_cannot_enter_says_what_to_change(tmp_path, capsys, monkeypatch, how):
    """`apply PLAN` where PLAN's folder cannot be entered (`chmod 600`) was Python's "Error: [Errno 13]
    Permission denied: 'PLAN'" (its look at whether PLAN is a fleet folder), where show, render and
    explain --plan say what to change; now apply says it as they do, exit 1, nothing applied."""
    import placer.cli

    fleet = write_fleet(tmp_path)
    folder = tmp_path / "plans"
    folder.mkdir()
    plan = folder / "plan.json"
    assert placer.cli.main(["plan", str(fleet), "-o", str(plan)]) == 0
    capsys.readouterr()
    _refuses_unreadable_plan("apply", plan, capsys, monkeypatch, how)
    assert not (tmp_path / "state.json").exists() and not (tmp_path / "deploy").exists(), "nothing was applied"


@pytest.mark.parametrize("how", denied.HOWS)
def test_a_path_click_finds_unreadable_says_what_to_do(tmp_path, capsys, monkeypatch, how):
    """A plan file this user may not read (`chmod 200`) is refused by the command line's own check,
    which said "Path '...' is not readable." and nothing of what to do."""
    import os

    import placer.cli

    plan = tmp_path / "plan.json"
    plan.write_text("{}")
    if how == "chmod":
        plan.chmod(0o200)
        if os.access(plan, os.R_OK):
            plan.chmod(0o644)
            pytest.skip("this user reads a file whatever its mode; the seam case stands for it")
    else:
        access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(plan) and mode == os.R_OK
                            else access(p, mode, **kw))
    try:
        code = placer.cli.main(["show", str(plan)])
    finally:
        plan.chmod(0o644)
    said = " ".join(capsys.readouterr().err.split())
    assert code == 1 and f"Path '{plan}' is not readable: this user may not read it; make it readable (`chmod u+r` " \
        "a file, `chmod u+rx` a folder) or run placer as a user who may" in said, said


def test_a_mistyped_fleet_path_names_the_folder_meant(tmp_path):
    """A fleet path with a typo names the folder beside it that it was most likely meant to be;
    it said "no such file or directory" and nothing of what to give."""
    write_fleet(tmp_path)
    r = placer("plan", str(tmp_path / "flete"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.splitlines()[0] == f"{tmp_path / 'flete'}:0: no such file or directory; did you mean {tmp_path / 'fleet'}?"


def test_a_plan_file_given_as_the_fleet_says_so(tmp_path):
    """`placer plan PLAN` or `validate PLAN` (the plan file where the fleet goes) is one line saying
    what the file is and what to run; it was an error per plan field, "formatVersion: unknown field;
    did you mean 'apiVersion'?" and 20 more."""
    fleet, plan = write_fleet(tmp_path), tmp_path / "plan.json"
    assert placer("plan", str(fleet), "-o", str(plan)).returncode == 0
    for command in ("plan", "validate"):
        r = placer(command, str(plan))
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert r.stderr.splitlines() == [
            f"{plan}:1: a placer plan file, not a fleet document: name the fleet's directory instead; "
            f"`placer show {plan}` prints this plan, `placer apply {plan}` applies it",
            "1 error in the fleet; nothing was planned or changed."], r.stderr


def test_force_unlock_of_a_state_that_is_not_there_says_to_name_it(tmp_path):
    """`placer force-unlock ID` without --fleet or --state, where the default state does not exist,
    says so and how to name the locked one; it said only "the state .placer/state.json is not
    locked", as if the lock that refused the apply were gone."""
    r = placer("force-unlock", "1111", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr == (
        "Error: the state .placer/state.json is not locked, and there is no state there: name the locked one as "
        "the refused command printed it, with --state PATH or --fleet FLEET (its Settings' state)\n")


def test_a_training_model_short_of_replicas_shows_no_unmet_rate(tmp_path):
    """A training job of 2 x 8 GPUs on one 8-GPU node is not placed: its Models row says so in the
    placement column, and its served and unmet rate columns hold no rate ('-'), as a model without
    demand has none. The unmet column said 0, beside 2 replicas unplaced at 2,000 USD/h."""
    fleet = write_fleet(tmp_path, training("t", 2, gpus=8))
    r = placer("plan", str(fleet))
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if line.strip().startswith("t "))
    assert [c.strip() for c in row.split("│")] == ["t", "2 replica(s) unplaced", "-", "-"], r.stdout
    plan = tmp_path / "plan.json"
    assert placer("plan", str(fleet), "-o", str(plan)).returncode == 0
    markdown = placer("show", str(plan), "--markdown").stdout
    assert "| t | 2 replica(s) unplaced | - | - |" in markdown, markdown


def test_a_columns_of_0_is_no_width_and_nothing_is_lost(tmp_path):
    """COLUMNS=0 (a shell that read a terminal of 0 columns) printed nothing at all: not the plan's
    summary, not an error (exit 1 and not a word); COLUMNS=5 printed tables of empty cells. A
    COLUMNS too narrow for any table is taken as no COLUMNS."""
    fleet = write_fleet(tmp_path)
    plan = tmp_path / "plan.json"
    assert placer("plan", str(fleet), "-o", str(plan)).returncode == 0
    for columns in ("0", "5"):
        env = {**os.environ, "COLUMNS": columns}
        r = subprocess.run([sys.executable, "-m", "placer", "show", str(plan)], cwd=ROOT, capture_output=True,
                           text=True, timeout=120, env=env)
        assert r.returncode == 0 and "Plan: 1 to create" in r.stdout, (columns, r.stdout)
        assert any(row.strip().startswith("p ") and "1 / " in row for row in r.stdout.splitlines()), r.stdout
        r = subprocess.run([sys.executable, "-m", "placer", "show", str(tmp_path / "none.json")], cwd=ROOT,
                           capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 1 and "none.json: no such plan file" in r.stderr, (columns, r.stderr)


def test_a_dumb_terminal_gets_the_ci_logs_progress_lines(tmp_path, monkeypatch):
    """On a terminal of TERM=dumb (Emacs' shell, an IDE's console) the spinner draws nothing, and
    the "Still planning…" lines were a CI log's only: a long plan showed no progress at all."""
    import io

    from rich.console import Console

    import placer.cli

    fleet = write_fleet(tmp_path)
    slow_optimizer(monkeypatch)

    dumb = Console(file=io.StringIO(), force_terminal=True, _environ={"TERM": "dumb"})
    assert dumb.is_terminal and dumb.is_dumb_terminal
    monkeypatch.setattr(placer.cli, "err", dumb)
    monkeypatch.setattr(placer.cli, "out", Console(file=io.StringIO()))
    monkeypatch.setattr(placer.cli, "STILL_EVERY", 0.1)
    assert placer.cli.main(["plan", str(fleet), "--state", str(tmp_path / "state.json")]) == 0
    said = dumb.file.getvalue()
    assert "Still planning… [0s elapsed; now: solving: a slow fleet]" in said, said


def test_a_plan_is_not_written_over_the_state_or_into_the_fleet(tmp_path):
    """`plan F -o STATE` replaced the state file with the plan (its lineage, serial and what runs
    where lost: every later command refused the 'damaged' state), and `-o F/settings.yaml`
    replaced a fleet file. Both are refused before the solve, and nothing is written."""
    fleet = write_fleet(tmp_path)
    plan = tmp_path / "plan.json"
    assert placer("plan", str(fleet), "-o", str(plan)).returncode == 0
    assert placer("apply", str(plan)).returncode == 0
    state = tmp_path / "state.json"
    recorded, source = state.read_text(), (fleet / "fleet.yaml").read_text()
    r = placer("plan", str(fleet), "-o", str(state))
    assert r.returncode == 1 and f"-o {state} is the state file" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = placer("plan", str(fleet), "-o", "../state.json", cwd=fleet)  # the same file, named another way
    assert r.returncode == 1 and "is the state file" in r.stderr, r.stderr
    assert state.read_text() == recorded
    for target in (fleet / "fleet.yaml", fleet / "sub" / "plan.yml"):
        r = placer("plan", str(fleet), "-o", str(target))
        assert r.returncode == 1 and f"-o {target} is a YAML file inside the fleet" in r.stderr, r.stderr
    assert (fleet / "fleet.yaml").read_text() == source and not (fleet / "sub").exists()
    assert placer("plan", str(fleet), "-o", str(fleet / "plan.json")).returncode == 0  # the loader reads no JSON
    one = fleet / "fleet.yaml"  # a fleet of one file, named as the fleet
    r = placer("plan", str(one), "-o", str(one))
    assert r.returncode == 1 and f"-o {one} is the fleet's own file" in r.stderr, r.stderr
    assert one.read_text() == source


def test_a_device_named_as_the_plan_is_refused_unread(tmp_path):
    """`placer show /dev/zero` (or apply, render, explain --plan) read it until the memory ran out,
    where the fleet loader refuses a device unread. A device is refused, saying what it is; a pipe
    (`placer show <(...)`) is still read."""
    r = placer("show", "/dev/null")  # /dev/zero here read without end: the same path, harmless
    assert r.returncode == 1 and "/dev/null: not a plan file (a character device)" in r.stderr, r.stderr
    fleet = write_fleet(tmp_path)
    plan = tmp_path / "plan.json"
    assert placer("plan", str(fleet), "-o", str(plan)).returncode == 0
    shown = subprocess.run(f"{sys.executable} -m placer show <(cat {plan})", shell=True, executable="/bin/bash",
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "Plan: 1 to create" in shown.stdout, shown.stderr


def test_a_reader_of_stderr_that_goes_away_leaves_stdout_alone(tmp_path):
    """`placer plan F 2>&1 >summary.txt | head -1`: the reader of stderr left after the first
    "Still planning…" line, and rich's answer to the broken pipe put /dev/null over stdout, from
    the progress thread: summary.txt stayed empty, exit 0. stderr goes quiet; stdout is kept."""
    fleet = write_fleet(tmp_path)
    script = tmp_path / "slow.py"
    script.write_text(
        "import sys, time\n"
        "import placer.cli, placer.planner\n"
        "real = placer.planner.optimize\n"
        "def slow(*args, **kwargs):\n"
        "    kwargs['progress']('solving')\n"
        "    time.sleep(1.5)\n"
        "    return real(*args, **{**kwargs, 'progress': None})\n"
        "placer.planner.optimize = slow\n"
        "placer.cli.STILL_EVERY = 0.2\n"
        f"sys.exit(placer.cli.main(['plan', {str(fleet)!r}, '--state', {str(tmp_path / 's.json')!r}]))\n")
    summary = tmp_path / "summary.txt"
    with summary.open("w") as sink:
        proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=sink, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        proc.stderr.close()  # the reader goes away at once
        assert proc.wait(timeout=120) == 0
    assert "Plan: 1 to create" in summary.read_text(), summary.read_text()


@pytest.mark.parametrize(("name", "value", "takes"), [
    ("PLACER_HIGHS_THREADS", "abc", "a whole number of 1 or more"),
    ("PLACER_HIGHS_THREADS", "0", "a whole number of 1 or more"),
    ("PLACER_RETRY_BASE_SECONDS", "-1", "a number of 0 or more"),
    ("PLACER_RETRY_BASE_SECONDS", "nan", "a number of 0 or more"),
])
def test_a_placer_variable_set_to_what_it_cannot_take_is_named(tmp_path, monkeypatch, name, value, takes):
    """PLACER_HIGHS_THREADS=abc failed the optimizer's import with Python's traceback; a retry wait
    of 'nan' or -1 was taken as it came. Each is one line naming the variable and what it takes."""
    fleet = write_fleet(tmp_path)
    monkeypatch.setenv(name, value)
    monkeypatch.setenv("PLACER_OPTIMIZER", "scalable")  # the route that runs HiGHS through highspy
    r = placer("apply", str(fleet), "--auto-approve")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"Error: the environment variable {name} is {value!r}, not {takes}: set it to one, or unset it "
        f"({'1' if name == 'PLACER_HIGHS_THREADS' else '0.5'} by default)"), r.stderr
    assert not (tmp_path / "state.json").exists()


@pytest.mark.parametrize("value", ["scaleable", "fast"])
def test_a_placer_optimizer_route_it_has_not_is_named(tmp_path, monkeypatch, value):
    """PLACER_OPTIMIZER=scaleable (a typo of scalable) was taken as unset for the route, yet as set
    for the exact route's fallback, which it turned off: the plan went on without a word. It is one
    line naming the variable and the routes it takes, before anything is applied."""
    fleet = write_fleet(tmp_path)
    monkeypatch.setenv("PLACER_OPTIMIZER", value)
    r = placer("apply", str(fleet), "--auto-approve")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"Error: the environment variable PLACER_OPTIMIZER is {value!r}, not one of exact, scalable: "
        "set it to one, or unset it (the route by the fleet's size)"), r.stderr
    assert not (tmp_path / "state.json").exists()


def test_a_placer_mode_it_has_not_is_named(tmp_path, monkeypatch):
    """PLACER_MODE=replann (a typo of replan) was taken as unset: the scalable route chose its mode by
    what runs and the fleet's size without a word, and a benchmark of one mode measured another. It is
    one line naming the variable and the modes it takes, as PLACER_OPTIMIZER's is."""
    fleet = write_fleet(tmp_path)
    monkeypatch.setenv("PLACER_OPTIMIZER", "scalable")  # the route that reads PLACER_MODE
    monkeypatch.setenv("PLACER_MODE", "replann")
    r = placer("apply", str(fleet), "--auto-approve")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "Error: the environment variable PLACER_MODE is 'replann', not one of lp, direct, replan: set it to "
        "one, or unset it (the mode by what runs and the fleet's size)"), r.stderr
    assert not (tmp_path / "state.json").exists()


def test_a_search_knob_that_cannot_be_read_fails_no_plan_it_is_not_used_in(tmp_path, monkeypatch):
    """PLACER_NEAR_PAIRS=abc was read when the optimizer was imported, and every plan of any fleet
    ended in Python's traceback (ValueError: invalid literal for int()). It is read where the
    scalable route's search uses it, and is an error naming it there."""
    import placer.optimizer.large as large
    from placer.knobs import KnobError

    fleet = write_fleet(tmp_path)
    monkeypatch.setenv("PLACER_NEAR_PAIRS", "abc")
    r = placer("plan", str(fleet))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    with pytest.raises(KnobError, match="PLACER_NEAR_PAIRS is 'abc', not a whole number of 1 or more"):
        large.near_pairs()
    monkeypatch.setenv("PLACER_NEAR_PAIRS", "3")
    assert large.near_pairs() == 3


def test_the_commands_placer_suggests_quote_a_path_with_a_space(tmp_path):
    """"Apply it with: placer apply my plan.json", pasted, applied a file named 'my'. The paths in
    the commands placer suggests are quoted as a shell reads them."""
    fleet = write_fleet(tmp_path)
    spaced = tmp_path / "my fleet"
    fleet.rename(spaced)
    plan = tmp_path / "my plan.json"
    r = placer("plan", str(spaced), "-o", str(plan))
    assert r.returncode == 0, r.stderr
    assert f"Apply it with: placer apply '{plan}'" in r.stdout, r.stdout
    r = placer("apply", str(spaced))
    assert r.returncode == 1 and f"`placer plan '{spaced}' -o plan.json`" in r.stderr, r.stderr
    r = placer("show", str(spaced))
    assert r.returncode == 1 and f"`placer plan '{spaced}' -o plan.json`" in r.stderr, r.stderr
    r = placer("validate", str(plan))
    assert r.returncode == 1 and f"`placer show '{plan}'` prints this plan" in r.stderr, r.stderr


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_a_reader_of_stdout_that_goes_away_leaves_the_plans_exit_status(tmp_path, extra):
    """`placer plan F --detailed-exitcode | head -1`: the reader closed the pipe after a line, and
    the broken pipe (rich's answer to it, and click's) made the exit 1, an error, where the plan has
    changes (2) and its file was written. Through a pipe whose reader is gone: the plan's own status,
    the plan file written, nothing on stderr; `show` of it exits 0."""
    fleet = write_fleet(tmp_path)
    plan = tmp_path / "plan.json"

    def closed_pipe(*args: str) -> tuple[int, str]:
        proc = subprocess.Popen([sys.executable, "-m", "placer", *args], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader goes away at once: every write to stdout is a broken pipe
        stderr = proc.stderr.read()
        return proc.wait(timeout=120), stderr

    code, stderr = closed_pipe("plan", str(fleet), "-o", str(plan), "--detailed-exitcode", *extra)
    assert code == 2 and "Error" not in stderr and "Traceback" not in stderr, stderr
    assert [c["address"] for c in json.loads(plan.read_text())["changes"]] == ["deployment/m@p"]
    for how in ([], ["--json"], ["--markdown"]):
        code, stderr = closed_pipe("show", str(plan), *how)
        assert code == 0 and not stderr, (how, stderr)
    assert placer("apply", str(plan)).returncode == 0
    code, stderr = closed_pipe("plan", str(fleet), "--detailed-exitcode", *extra)
    assert code == 0 and "Error" not in stderr, stderr


def test_a_tree_rendered_inside_the_fleet_is_skipped_by_the_next_plan(tmp_path):
    """`placer render plan.json --out FLEET/deploy`: the next `placer plan FLEET` read the rendered
    Deployments and kustomizations as fleet documents and failed (`unknown kind 'Deployment'`, ten
    errors). The loader knows a tree placer rendered by the tfvars beside its `clusters/` folder,
    and skips that folder with a one-line note, where the tree is a subfolder or the fleet itself;
    a `clusters` folder of fleet documents is read as any."""
    fleet = write_fleet(tmp_path)
    plan = tmp_path / "plan.json"
    assert placer("plan", str(fleet), "-o", str(plan)).returncode == 0
    for out in (fleet / "deploy", fleet):
        r = placer("render", str(plan), "--out", str(out))
        assert r.returncode == 0, r.stderr
        note = (f"{out / 'clusters'}:1: warning: skipped: the manifests of a GitOps tree placer rendered "
                f"(beside {out / 'terraform' / 'placer.auto.tfvars.json'}), no fleet documents; render it outside "
                "the fleet (placer render PLAN --out ../deploy) to drop this note")
        for command in (["validate", str(fleet)], ["plan", str(fleet), "--detailed-exitcode"]):
            r = placer(*command)
            assert r.returncode == 2 if command[0] == "plan" else r.returncode == 0, r.stderr
            assert r.stderr.strip().splitlines() == [note], r.stderr
        r = placer("plan", str(fleet), "--json")
        assert json.loads(r.stdout)["fleetDigest"] == json.loads(plan.read_text())["fleetDigest"]
        shutil.rmtree(out / "clusters")
    own = tmp_path / "own"  # no tfvars beside it: a clusters folder of the fleet's own documents
    (own / "clusters").mkdir(parents=True)
    (fleet / "fleet.yaml").rename(own / "clusters" / "fleet.yaml")
    r = placer("validate", str(own))
    assert r.returncode == 0 and "valid (2 locations, 1 pool, 1 model" in r.stdout, r.stdout + r.stderr


def test_a_plan_made_with_a_relative_state_is_applied_to_it_from_another_directory(tmp_path):
    """`--state st/state.json` names a file from where plan runs; the plan carried the path as typed,
    so `placer apply PLAN` run from another directory (a CI job's) recorded into a new state there,
    and the next `plan --state st/state.json` started from nothing."""
    fleet = write_fleet(tmp_path)
    (tmp_path / "job1").mkdir()
    (tmp_path / "job2").mkdir()
    plan = tmp_path / "plan.json"
    r = placer("plan", str(fleet), "-o", str(plan), "--state", "st/state.json", cwd=tmp_path / "job1")
    assert r.returncode == 0, r.stderr
    r = placer("apply", str(plan), cwd=tmp_path / "job2")
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "job2" / "st").exists()
    assert json.loads((tmp_path / "job1" / "st" / "state.json").read_text())["serial"] == 1
    r = placer("plan", str(fleet), "--state", "st/state.json", "--detailed-exitcode", cwd=tmp_path / "job1")
    assert r.returncode == 0 and "No changes" in r.stdout, r.stdout + r.stderr


def test_the_plan_command_for_a_missing_plan_quotes_its_path(tmp_path):
    """`placer show 'my plan.json'` of a plan not made yet said to create it with `placer plan FLEET
    -o my plan.json`, which, pasted, saves a plan named 'my' (and reads 'plan.json' as the fleet)."""
    r = placer("show", str(tmp_path / "my plan.json"))
    assert r.returncode == 1 and f"`placer plan FLEET -o '{tmp_path / 'my plan.json'}'`" in r.stderr, r.stderr


def test_a_stale_plan_without_its_state_names_the_state_apply_read(tmp_path):
    """A plan applied where its state is not (another machine, the state file moved) was refused as
    'there is no state now (was it removed, or is this another state file?)', without naming the
    file apply had looked for."""
    fleet, state, plan = write_fleet(tmp_path), tmp_path / "st" / "state.json", tmp_path / "plan.json"
    assert placer("apply", str(fleet), "--auto-approve", "--state", str(state)).returncode == 0
    assert placer("plan", str(fleet), "-o", str(plan), "--state", str(state)).returncode == 0
    state.rename(tmp_path / "moved.json")
    r = placer("apply", str(plan))
    assert r.returncode == 1 and f"but there is no state at {state} now" in r.stderr, r.stderr


def test_ctrl_c_during_a_plan_says_interrupted_and_exits_130(tmp_path, capsys, monkeypatch):
    """click turns Ctrl-C into its Abort: the plan said "Aborted." and exited 1, an error (a CI step
    could not tell it from a failed plan), and main's "Interrupted." with 130 never ran. No plan
    file is written."""
    import placer.cli
    import placer.planner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(placer.planner, "optimize", interrupted)
    fleet, out = write_fleet(tmp_path), tmp_path / "plan.json"
    assert placer.cli.main(["plan", str(fleet), "-o", str(out)]) == 130
    err = capsys.readouterr().err
    assert " ".join(err.split()) == f"No plan was written to {out}. Interrupted.", err  # and says so
    assert not out.exists()


def test_a_spot_selector_takes_a_list_as_every_selector_field_does(tmp_path):
    """SPEC: a selector's fields are ANDed, the values of one field ORed. `spot: [true]` was refused
    ("Input should be a valid boolean") where `provider: [aws]` and `provider: aws` are taken alike;
    `spot: [true, false]` is either, and `spot: []` selects nothing, warned of as `names: []` is."""
    from tests.fleetkit import policy

    fleet = write_fleet(tmp_path, pool("cheap", "a", usd=0.1, spot=True),
                        inference("s", [{"location": "a", "rate": 100}], spotTolerant=True),
                        policy("no-spot", {"denyPools": {}}, pools={"spot": [True]}))
    r = placer("validate", str(fleet))
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    plan = tmp_path / "plan.json"
    assert placer("plan", str(fleet), "-o", str(plan)).returncode == 0
    assert {p["pool"] for p in json.loads(plan.read_text())["placements"]} == {"p"}
    for spot, placed in (([True, False], set()), ([False], {"cheap"})):
        (tmp_path / str(spot)).mkdir()
        fleet = write_fleet(tmp_path / str(spot), pool("cheap", "a", usd=0.1, spot=True),
                            inference("s", [{"location": "a", "rate": 100}], spotTolerant=True),
                            policy("no-spot", {"denyPools": {}}, pools={"spot": spot}))
        assert placer("plan", str(fleet), "-o", str(plan)).returncode == 0
        assert {p["pool"] for p in json.loads(plan.read_text())["placements"]} == placed, spot
    (tmp_path / "none").mkdir()
    fleet = write_fleet(tmp_path / "none", policy("no-spot", {"denyPools": {}}, pools={"spot": []}))
    r = placer("validate", str(fleet))
    assert r.returncode == 0 and "spot is an empty list" in r.stderr, r.stderr


def test_a_plan_with_changes_made_without_out_says_it_was_not_saved(tmp_path):
    """SPEC: `placer plan` writes the plan file. Without -o it writes none, as Terraform's plan
    without -out; its summary ended at "Plan: 1 to create" and nothing said that there was no file
    for `placer apply`, or how to get one."""
    fleet = write_fleet(tmp_path)
    r = placer("plan", str(fleet), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Plan: 1 to create" in r.stdout
    assert f"not saved: plan it with -o PLAN (placer plan {fleet} -o plan.json)" in " ".join(r.stdout.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet"]
    assert placer("apply", str(fleet), "--auto-approve").returncode == 0
    r = placer("plan", str(fleet), cwd=tmp_path)  # no changes: nothing to apply, nothing said
    assert r.returncode == 0 and "No changes" in r.stdout and "not saved" not in r.stdout


def test_apply_auto_approve_takes_a_fleet_of_one_file_as_plan_does(tmp_path):
    """`placer plan F.yaml` takes one file as a fleet; `placer apply F.yaml --auto-approve` read it
    as a plan file ("not a plan file (invalid JSON at line 1 ...)"). It plans and applies it, and
    without --auto-approve says it is a fleet and how to save its plan."""
    fleet = write_fleet(tmp_path) / "fleet.yaml"
    r = placer("apply", str(fleet))
    assert r.returncode == 1 and f"{fleet} is a fleet, not a plan: save a plan with `placer plan {fleet} -o plan.json`" \
        in " ".join(r.stderr.split()), r.stderr
    r = placer("apply", str(fleet), "--auto-approve")
    assert r.returncode == 0 and "Apply complete" in r.stdout, r.stdout + r.stderr
    assert json.loads((tmp_path / "state.json").read_text())["serial"] == 1
    r = placer("plan", str(fleet), "--detailed-exitcode")
    assert r.returncode == 0 and "No changes" in r.stdout, r.stdout + r.stderr


def test_a_rendered_tree_named_as_the_fleet_is_nothing_to_plan(tmp_path):
    """`placer plan deploy` (the GitOps tree placer rendered, named for the fleet): its clusters folder
    skipped, the loader read no file and said only its note, so an empty fleet was 'valid' and its plan
    said 'No changes', exit 0, as if the fleet had been read."""
    fleet = write_fleet(tmp_path)
    plan = tmp_path / "plan.json"
    assert placer("plan", str(fleet), "-o", str(plan)).returncode == 0
    assert placer("apply", str(plan)).returncode == 0
    deploy = tmp_path / "deploy"
    assert placer("render", str(plan), "--out", str(deploy)).returncode == 0
    for command in (["validate", str(deploy)], ["plan", str(deploy), "--detailed-exitcode"]):
        r = placer(*command)
        assert r.returncode == 1, r.stdout + r.stderr
        assert r.stderr.splitlines()[0] == (f"{deploy}:0: no *.yaml or *.yml files in this directory but those "
                                            "skipped below: nothing to plan"), r.stderr
        assert "to destroy" not in r.stdout and "delete" not in r.stdout, r.stdout


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, a device every write to fails")
def test_a_stdout_that_cannot_be_written_is_named_with_what_to_do(tmp_path):
    """`placer explain F M --json > /dev/full` said only 'Error: [Errno 28] No space left on device':
    neither that it was stdout nor what to do. Every command's output, as text, JSON or Markdown: one
    line naming stdout (and where it goes), the reason, and what to do; the plan file is still written."""
    fleet = write_fleet(tmp_path)
    plan = tmp_path / "plan.json"
    with open("/dev/full", "w") as full:
        def to_full(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "placer", *args], cwd=ROOT, stdout=full,
                                  stderr=subprocess.PIPE, text=True, timeout=120)

        r = to_full("plan", str(fleet), "-o", str(plan))
        assert r.returncode == 1 and json.loads(plan.read_text())["changes"], r.stderr
        runs = [r] + [to_full(*args) for args in (["show", str(plan)], ["show", str(plan), "--json"],
                                                  ["show", str(plan), "--markdown"], ["schema"],
                                                  ["explain", str(fleet), "m", "--json"], ["validate", str(fleet)])]
    for r in runs:
        lines = r.stderr.splitlines()
        assert r.returncode == 1 and len(lines) == 1, r.stderr
        assert lines[0].startswith("Error: cannot write the output to stdout (/dev/full): No space left on device;"), \
            r.stderr
        assert "[Errno" not in r.stderr and "elsewhere" in r.stderr, r.stderr
    # docs/reference.md quotes the line as placer prints it (it left out the last words, "(> FILE on another disk)")
    reference = " ".join((ROOT / "docs" / "reference.md").read_text(encoding="utf-8").split())
    assert f"`{runs[-1].stderr.strip()}`" in reference, runs[-1].stderr


def test_an_unbuffered_stdout_that_takes_part_of_the_output_fails_the_command(tmp_path):
    """Under PYTHONUNBUFFERED=1 (many container images set it) Python's stdout drops what a write to a
    full disk did not take: `placer schema > f` wrote its first 10,000 bytes, said nothing and exited
    0, a cut JSON file taken for whole. A file that takes part of the output: exit 1, said so."""
    import resource
    import signal

    def at_most_10000_bytes() -> None:  # a file that fills up: a write across the limit is a short one
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))

    target = tmp_path / "schema.json"
    with open(target, "w") as sink:
        r = subprocess.run([sys.executable, "-m", "placer", "schema"], cwd=ROOT, stdout=sink, stderr=subprocess.PIPE,
                           text=True, timeout=120, preexec_fn=at_most_10000_bytes,
                           env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert r.returncode == 1 and f"cannot write the output to stdout ({target})" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and target.stat().st_size == 10_000, r.stderr


def test_a_plan_that_costs_nothing_is_shown_with_no_gap(tmp_path):
    fleet = write_fleet(tmp_path)
    text = (fleet / "fleet.yaml").read_text()
    (fleet / "fleet.yaml").write_text(text.replace("rate: 100", "rate: 0"))  # nothing to serve: a plan of 0 USD/h
    r = placer("plan", str(fleet), "--json")
    assert r.returncode == 0, r.stderr
    solver = json.loads(r.stdout)["solver"]
    assert solver["status"] == "OPTIMAL" and solver["objectiveUsdPerHour"] == 0
    assert solver["gap"] <= 0.001  # HiGHS' absolute tolerance (1e-6 USD/h) over 0 USD/h once read 1000
    r = placer("plan", str(fleet))
    assert r.returncode == 0 and "gap 0.00%" in r.stdout, r.stdout


def test_a_small_unmet_rate_is_not_shown_as_0(tmp_path):
    # b's demand is 5 ms from the only pool and asks for 1 ms: none of its 0.004 units/s is served
    fleet = write_fleet(tmp_path, inference("tiny", [{"location": "b", "rate": 0.004, "latencySloMs": 1}]))
    plan = tmp_path / "plan.json"
    r = placer("plan", str(fleet), "-o", str(plan))
    assert r.returncode == 0, r.stderr
    assert json.loads(plan.read_text())["unmet"] == [{"model": "tiny", "demandLocation": "b", "rate": 0.004}]
    row = next(line for line in r.stdout.splitlines() if line.startswith(" tiny "))
    assert row.split()[-1] == "0.004", row  # it read "0" beside a placement of "-"
    r = placer("show", str(plan), "--markdown")
    assert "| tiny | b | 0.004 |" in r.stdout, r.stdout  # the unmet demand table listed a rate of 0


def test_a_budget_violation_writes_its_numbers_out(tmp_path):
    pricey = [pool("q", "a", gpu="H100-80GB", usd=1_500_000),
              inference("pricey", [{"location": "a", "rate": 100}], throughput={"H100-80GB": 100}, minReplicas=1),
              policy("cap", {"budget": {"maxUsdPerHour": 1_000_000}}, penalty=0.001)]
    r = placer("plan", str(write_fleet(tmp_path, *pricey)))
    assert r.returncode == 0, r.stderr
    # it read "compute 1500001.00 USD/h over budget 1e+06"
    assert "policy cap (preferred): compute 1,500,001.00 USD/h over budget 1,000,000.00" in r.stdout, r.stdout


def test_the_pools_table_writes_thousands_as_the_other_tables_do(tmp_path):
    r = placer("plan", str(write_fleet(tmp_path, pool("big", "a", gpu="H100-80GB", count=2000, usd=9))))
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if line.startswith(" big "))
    assert [cell.strip() for cell in row.split("│")[1:3]] == ["2,000", "0 / 16,000"], row  # it read 2000, 0 / 16000


def test_the_solver_line_says_the_objective_holds_the_one_off_churn():
    """The demo's first plan read "Solver: OPTIMAL in 1.48 s, objective 266.28 USD/h" over a cost
    table whose total was 217.28: the objective is the total and the churn (49.00 USD once), which
    the line did not say. Without churn the objective is the total and the line stays as it was."""
    from rich.console import Console

    from placer.render.summary import render

    def solver_line(churn: float) -> str:
        plan = {"solver": {"status": "OPTIMAL", "objectiveUsdPerHour": 217.28 + churn, "boundUsdPerHour": 217.0,
                           "gap": 0.001, "wallSeconds": 1.48},
                "cost": {"totalUsdPerHour": 217.28, "churnUsd": churn}, "changes": [], "pools": [], "placements": []}
        console = Console(width=200, record=True)
        render(plan, console)
        return console.export_text().splitlines()[0]

    assert solver_line(49.0) == ("Solver: OPTIMAL in 1.48 s, objective 266.28 USD/h (217.28 USD/h and 49.00 USD of "
                                 "one-off churn), bound 217.00, gap 0.10%")
    assert solver_line(0.0) == "Solver: OPTIMAL in 1.48 s, objective 217.28 USD/h, bound 217.00, gap 0.10%"


def test_a_number_is_never_cut_on_a_narrow_terminal():
    """At 40 columns the summary folded its numbers as it folds names: served read "1,500,00" over
    "0,000", and a pool's GPUs "12,000 /" over "16,000"; a number is whole on its row, as whatif's are."""
    from rich.console import Console

    from placer.render.summary import render

    name = "a-pool-with-a-long-name-in-the-frankfurt-datacentre"
    plan = {"solver": {"status": "OPTIMAL"}, "cost": {"totalUsdPerHour": 1.0}, "changes": [],
            "pools": [{"pool": name, "nodes": 2000, "gpusUsed": 12000, "gpusCapacity": 16000}],
            "placements": [{"model": "a-model-with-a-rather-long-name-v2", "pool": name, "replicas": 1500}],
            "routes": [{"model": "a-model-with-a-rather-long-name-v2", "rate": 1.5e9}]}
    console = Console(width=40, record=True)
    render(plan, console)
    text = console.export_text()
    for number in ("2,000", "12,000 / 16,000", "1,500,000,000"):
        assert number in text, text


def _signalled(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m placer ARGS` with ``code`` run first (a hook that sends the signal at a chosen moment)."""
    run = f"import runpy, sys\n{code}\nsys.argv = ['placer', *sys.argv[1:]]\nrunpy.run_module('placer', run_name='__main__')"
    return subprocess.run([sys.executable, "-c", run, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_sigterm_stops_a_render_as_ctrl_c_does_and_leaves_no_temporary_file(tmp_path):
    """Only an apply took SIGTERM (a CI job cancelled, `docker stop`, `timeout`): it killed a render
    at once, nothing said, hundreds of hidden `.name.yaml.XXXXXXXX` files left in the tree at M (a
    plan -o its `.plan.json.XXXXXXXX`). Now it stops as Ctrl-C does: the write cleaned up, one line,
    exit 143 (128 + 15, as shells count it)."""
    plan, _ = _planned_for_cluster_c1(tmp_path)
    hook = ("import os, signal\n"
            "real = os.fdopen\n"
            "def fdopen(fd, *a, **k):\n"
            "    if sys._getframe(1).f_globals.get('__name__') == 'placer.planfile':\n"
            "        os.kill(os.getpid(), signal.SIGTERM)  # the tree's first file under way\n"
            "    return real(fd, *a, **k)\n"
            "os.fdopen = fdopen")
    done = _signalled(hook, "render", str(plan), "--out", str(tmp_path / "gitops"))
    assert done.returncode == 143, (done.returncode, done.stderr)
    assert done.stderr.strip() == "Interrupted (SIGTERM).", done.stderr
    assert [p.name for p in (tmp_path / "gitops").rglob(".*")] == []
    assert placer("render", str(plan), "--out", str(tmp_path / "gitops")).returncode == 0


_JUST_AFTER = {
    # the command's last line printed, its status decided: the SIGTERM was said as Ctrl-C's ("Interrupted.", 130)
    "after its last line": ("import os, signal, placer.cli\n"
                            "real = placer.cli._run\n"
                            "def ran(*a):\n"
                            "    status = real(*a)\n"
                            "    os.kill(os.getpid(), signal.{sig})\n"
                            "    return status\n"
                            "placer.cli._run = ran"),
    # Python shutting down: SIGTERM killed it silent (-15), Ctrl-C was a KeyboardInterrupt traceback
    "as Python shuts down": ("import atexit, os, signal\n"
                             "atexit.register(lambda: os.kill(os.getpid(), signal.{sig}))"),
}


@pytest.mark.parametrize("when", sorted(_JUST_AFTER))
@pytest.mark.parametrize(("sig", "said", "status"), [("SIGTERM", "Interrupted (SIGTERM).", 143),
                                                     ("SIGINT", "Interrupted.", 130)])
def test_a_signal_as_a_command_ends_is_said_and_counted(tmp_path, when, sig, said, status):
    """A signal in a command's last moments, its work done (here: its output printed), is said and
    counted as any other (placer.interrupts): the one who sent it is told the command stopped."""
    fleet = write_fleet(tmp_path)
    done = _signalled(_JUST_AFTER[when].format(sig=sig), "validate", str(fleet))
    assert (done.returncode, done.stderr.strip()) == (status, said), (done.returncode, done.stderr)
    assert done.stdout == placer("validate", str(fleet)).stdout != "", done.stdout


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_as_python_tears_its_modules_down_finds_the_command_ended(tmp_path, sig):
    """Once its exit handlers ran, Python gives signals back to the system's default and tears its
    modules down (~0.1 s): a SIGTERM or Ctrl-C there killed a command silent (-15, -2), its work done
    and printed. The process now ends with the command's status as its exit handlers end (here the
    signal, sent by a finalizer of that teardown, is never sent)."""
    fleet = write_fleet(tmp_path)
    hook = ("import os, signal, time\n"
            "class Late:\n"
            "    def __del__(self):  # run as Python tears the modules down\n"
            f"        os.kill(os.getpid(), signal.{sig})\n"
            "        time.sleep(2)\n"
            "sys.modules['late'] = type(sys)('late')\n"
            "sys.modules['late'].late = Late()")
    done = _signalled(hook, "validate", str(fleet))
    assert (done.returncode, done.stderr) == (0, ""), (done.returncode, done.stderr)
    assert done.stdout == placer("validate", str(fleet)).stdout != "", done.stdout


@pytest.mark.parametrize(("sig", "said", "status"), [("SIGTERM", "Interrupted (SIGTERM).", 143),
                                                     ("SIGINT", "Interrupted.", 130)])
def test_a_signal_as_a_module_makes_its_classes_is_an_interrupt(tmp_path, capsys, monkeypatch, sig, said, status):
    """A signal as a module a command imports makes its classes (pydantic's models, in a command's
    first half second) comes out of Python as "RuntimeError: Error calling __set_name__ ...", its
    cause the KeyboardInterrupt: it was said as an internal error to report, exit 1."""
    import os
    import signal
    import time

    import placer.cli

    fleet = write_fleet(tmp_path)

    def loading(*args, **kwargs):
        class Field:
            def __set_name__(self, owner, name):
                os.kill(os.getpid(), getattr(signal, sig))
                time.sleep(1)  # the handler raises within it

        class Model:  # made as a module loads
            field = Field()

    monkeypatch.setattr("placer.fleet.load_fleet", loading)
    code = placer.cli.main(["validate", str(fleet)])
    assert (code, capsys.readouterr().err.strip()) == (status, said)


@pytest.mark.parametrize(("sig", "said", "status"), [("SIGTERM", "Interrupted (SIGTERM).", 143),
                                                     ("SIGINT", "Interrupted.", 130)])
def test_a_signal_as_placer_loads_its_classes_is_an_interrupt(sig, said, status):
    """The same as placer's command line itself loads (the console script's import of placer.cli):
    the RuntimeError was a traceback."""
    hook = ("import os, signal, time, types\n"
            "cli = types.ModuleType('placer.cli')\n"
            "def loading(name):\n"
            "    class Field:\n"
            "        def __set_name__(self, owner, attr):\n"
            f"            os.kill(os.getpid(), signal.{sig})\n"
            "            time.sleep(1)\n"
            "    class Model:\n"
            "        field = Field()\n"
            "cli.__getattr__ = loading\n"
            "sys.modules['placer.cli'] = cli")
    done = _signalled(hook, "--version")
    assert (done.returncode, done.stderr.strip()) == (status, said), (done.returncode, done.stderr)


def test_ctrl_c_while_placer_loads_says_interrupted_not_a_traceback(tmp_path):
    """A Ctrl-C in a command's first half second, while placer's modules load, printed a
    KeyboardInterrupt traceback of 40 lines (SIGTERM then: nothing)."""
    hook = ("import builtins, os, signal\n"
            "real = builtins.__import__\n"
            "def imported(name, *a, **k):\n"
            "    if name == 'rich.console':\n"
            "        builtins.__import__ = real\n"
            "        os.kill(os.getpid(), signal.SIGINT)\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = imported")
    done = _signalled(hook, "validate", str(write_fleet(tmp_path)))
    assert done.returncode == 130, (done.returncode, done.stderr)
    assert done.stderr.strip() == "Interrupted.", done.stderr


def test_a_terminals_spinner_says_how_long_the_command_has_run(tmp_path, monkeypatch):
    """On a terminal the spinner named the step alone ("the LP by column generation"): nothing said
    how long a plan had run, 30 s at bench L and minutes at XL, where a CI log's lines say "[20s
    elapsed; …]". It gives the seconds since the command started beside the step, and again every
    SPINNER_TICK while the step goes on."""
    import io
    import re

    from rich.console import Console

    import placer.cli

    fleet = write_fleet(tmp_path)
    slow_optimizer(monkeypatch)
    terminal = Console(file=io.StringIO(), force_terminal=True, _environ={"TERM": "xterm"})
    assert terminal.is_terminal and not terminal.is_dumb_terminal
    monkeypatch.setattr(placer.cli, "err", terminal)
    monkeypatch.setattr(placer.cli, "out", Console(file=io.StringIO()))
    monkeypatch.setattr(placer.cli, "SPINNER_TICK", 0.05)
    assert placer.cli.main(["plan", str(fleet), "--state", str(tmp_path / "state.json")]) == 0
    drawn = terminal.file.getvalue()
    assert re.search(r"solving: a slow fleet \[\d+s elapsed\]", drawn), drawn
    assert "Still planning" not in drawn  # the CI log's lines are not a terminal's


def test_a_plan_stopped_before_it_wrote_its_file_says_the_file_there_is_an_earlier_plan(tmp_path, capsys,
                                                                                          monkeypatch):
    """Ctrl-C in `placer plan L -o plan.json` (after 3 to 26 s of its 31) said "Interrupted." alone,
    and left plan.json as it was: an earlier plan, which `placer apply plan.json` then applies as if
    it were this one. It says no plan was written, and what the file there is."""
    import placer.cli
    import placer.planner

    fleet = write_fleet(tmp_path)
    plan = tmp_path / "plan.json"
    state = str(tmp_path / "state.json")
    assert placer.cli.main(["plan", str(fleet), "-o", str(plan), "--state", state]) == 0
    earlier = plan.read_bytes()
    capsys.readouterr()

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(placer.planner, "optimize", stopped)
    assert placer.cli.main(["plan", str(fleet), "-o", str(plan), "--state", state]) == 130
    said = " ".join(capsys.readouterr().err.split())
    assert f"No plan was written: {plan} is as it was, an earlier plan; do not apply it as this one. " \
        "Interrupted." in said, said
    assert plan.read_bytes() == earlier
    assert placer.cli.main(["plan", str(fleet), "-o", str(tmp_path / "new.json"), "--state", state]) == 130
    said = " ".join(capsys.readouterr().err.split())
    assert f"No plan was written to {tmp_path / 'new.json'}. Interrupted." in said, said
    assert placer.cli.main(["plan", str(fleet), "--state", state]) == 130  # no -o: nothing to say of a file
    assert capsys.readouterr().err.split() == ["Interrupted."]
