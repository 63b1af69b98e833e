"""``bench.run``'s command line: another time limit than each size's, and where its results go."""

from __future__ import annotations

import json
import re

import pytest

from bench import run


@pytest.fixture(autouse=True)
def _into_a_pipe(monkeypatch):
    """The table as printed into a file or a pipe, 200 wide: pytest-xdist's workers set COLUMNS=80,
    which fitted it to 80 columns and cut the cells the tests read."""
    monkeypatch.delenv("COLUMNS", raising=False)


def test_a_time_limit_of_its_own_plans_each_size_in_it_and_says_so(tmp_path, capsys):
    out = tmp_path / "r.json"
    run.main(["--size", "T", "--methods", "cheapest,placer", "--time-limit", "2", "--out", str(out)])
    got = json.loads(out.read_text())["sizes"]["T"]
    assert got["time_limit"] == 2.0
    assert [r["method"] for r in got["methods"]] == ["cheapest", "placer"]
    placer = got["methods"][1]
    assert placer["time_limit"] == 2.0  # the worker was given 2 s, not T's own 5 s
    assert placer["hard"] == 0 and placer["required_violations"] == 0
    assert "limit 2s" in capsys.readouterr().out


def test_results_at_another_limit_go_beside_results_json():
    assert run.default_out(None).name == "results.json"
    assert run.default_out(30.0).name == "results-30s.json"
    assert run.default_out(2.5).name == "results-2.5s.json"
    assert run.default_out(30.0).parent == run.default_out(None).parent
    # another seed's go to its own file, never into the published results (seed 0's)
    assert run.default_out(None, 0).name == "results.json"
    assert run.default_out(None, 1).name == "results-seed1.json"
    assert run.default_out(30.0, 1).name == "results-30s-seed1.json"


def test_another_seed_never_replaces_the_published_results(tmp_path, monkeypatch, capsys):
    """``make bench SIZE=M SEED=1`` wrote into results.json and replaced M's published seed-0 rows
    whole, after which the fleet's bound (proven_bound) was gone for seed 0."""
    real = run.default_out
    monkeypatch.setattr(run, "default_out", lambda *limit_seed: tmp_path / real(*limit_seed).name)
    published = tmp_path / "results.json"
    published.write_text(held := json.dumps({"sizes": {"T": _entry(rows=EARLIER)}}))
    monkeypatch.setattr(run, "run_worker", lambda size, method, seed, limit: {"method": method, "seed": seed,
                                                                              "cost": 150.0, "bound": 120.0})
    monkeypatch.setenv("SEED", "1")
    run.main(["--size", "T", "--methods", "placer"])
    assert published.read_text() == held and run.proven_bound("T", 0) == 100.0
    got = json.loads((tmp_path / "results-seed1.json").read_text())["sizes"]["T"]
    assert got["seed"] == 1 and [r["method"] for r in got["methods"]] == ["placer"]
    assert run.proven_bound("T", 1) == 120.0  # the seed's own bound, from its own file
    # at another limit, the seed's bound is taken from its own results at the sizes' limits
    monkeypatch.setattr(run, "run_worker", lambda size, method, seed, limit: {"method": method, "cost": 180.0})
    run.main(["--size", "T", "--methods", "cheapest", "--time-limit", "2"])
    got = json.loads((tmp_path / "results-2s-seed1.json").read_text())["sizes"]["T"]
    assert got["best_bound"] == 120.0 and got["methods"][0]["vs_best_bound"] == pytest.approx(0.5)
    assert published.read_text() == held and not (tmp_path / "results-2s.json").exists()


@pytest.mark.parametrize("bad", ["0", "-3", "nan", "inf"])
def test_a_time_limit_that_is_no_number_of_seconds_is_refused(bad, tmp_path):
    with pytest.raises(SystemExit, match="--time-limit must be a positive number of seconds"):
        run.main(["--size", "T", "--methods", "cheapest", "--time-limit", bad, "--out", str(tmp_path / "r.json")])


def test_time_limit_from_the_environment(monkeypatch):
    monkeypatch.setenv("TIME_LIMIT", "30")
    assert run._limit_from_env() == 30.0
    monkeypatch.setenv("TIME_LIMIT", "half a minute")
    with pytest.raises(SystemExit, match="TIME_LIMIT must be a number of seconds, not 'half a minute'"):
        run._limit_from_env()


def test_at_another_limit_costs_are_set_against_the_fleets_bound_in_results_json(tmp_path, monkeypatch):
    """A bound holds for the fleet whatever time a plan is given: with its own limit, a run that
    does not run the bound methods takes results.json's for the same size and seed."""
    known = tmp_path / "results.json"
    known.write_text(json.dumps({"sizes": {"T": {"seed": 0, "best_bound": 1.0}}}))
    monkeypatch.setattr(run, "default_out", lambda limit, seed=0: known if limit is None else tmp_path / "other.json")
    assert run.proven_bound("T", 0) == 1.0
    assert run.proven_bound("T", 1) is None and run.proven_bound("S", 0) is None
    out = tmp_path / "r.json"
    run.main(["--size", "T", "--methods", "cheapest", "--time-limit", "2", "--out", str(out)])
    got = json.loads(out.read_text())["sizes"]["T"]
    cheapest = got["methods"][0]
    assert got["best_bound"] == 1.0 and cheapest["vs_best_bound"] == pytest.approx(cheapest["cost"] - 1.0)
    known.write_text("{not json")
    assert run.proven_bound("T", 0) is None


@pytest.mark.parametrize(("args", "said"), [
    (["--size", "T,Q", "--methods", "cheapest"], "unknown size 'Q' in --size (SIZE); sizes: T, S, M, L, XL"),
    (["--size", "T", "--methods", "cheapest,nonsense"], "unknown method 'nonsense' in --methods (METHODS); methods: "),
    (["--size", ",", "--methods", "cheapest"], "nothing to run"),
])
def test_a_size_or_method_it_does_not_know_is_refused_before_anything_runs(args, said, tmp_path, monkeypatch):
    """METHODS=nonsense ran a worker that failed, printed its row and replaced the size's results
    with it (exit 0); SIZE=S,Q ran every method of S before it named Q."""
    ran: list[str] = []
    monkeypatch.setattr(run, "run_worker", lambda size, method, seed, limit: ran.append(method) or {})
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit, match=re.escape(said)):
        run.main([*args, "--out", str(out)])
    assert ran == [] and not out.exists()


@pytest.mark.parametrize("where", ["missing/r.json", "."])
def test_results_that_cannot_be_written_are_refused_before_anything_runs(where, tmp_path, monkeypatch):
    """An --out in no directory was a FileNotFoundError traceback after every method had run."""
    ran: list[str] = []
    monkeypatch.setattr(run, "run_worker", lambda size, method, seed, limit: ran.append(method) or {})
    with pytest.raises(SystemExit, match=r"cannot write the results to .*(no directory|it is a directory)"):
        run.main(["--size", "T", "--methods", "cheapest", "--out", str(tmp_path / where)])
    assert ran == []


@pytest.mark.parametrize(("held", "said"), [
    ("[]", "not a results file (a JSON object whose 'sizes' is an object)"),
    ('{"sizes": []}', "not a results file"),
    ('{"sizes": {\n<<<<<<< HEAD\n', ":2: not results JSON (Expecting property name enclosed in double quotes)"),
    ("\xff", "not results JSON (byte 0 is not UTF-8)"),
])
def test_a_results_file_that_holds_no_results_is_refused_not_overwritten(held, said, tmp_path, monkeypatch):
    """A results file holding a JSON list was a TypeError traceback after the run; then it, and a
    file that is not JSON (a merge conflict's markers in results.json), were written over with the
    sizes run alone, every other row lost."""
    ran: list[str] = []
    monkeypatch.setattr(run, "run_worker", lambda size, method, seed, limit: ran.append(method) or {})
    out = tmp_path / "r.json"
    out.write_bytes(held.encode("latin-1"))
    with pytest.raises(SystemExit, match=re.escape(said) + ".*move it away or give another --out"):
        run.main(["--size", "T", "--methods", "cheapest", "--out", str(out)])
    assert ran == [] and out.read_bytes() == held.encode("latin-1")


def test_an_empty_results_file_starts_afresh(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "run_worker", lambda size, method, seed, limit: {"method": method, "cost": 2.0})
    out = tmp_path / "r.json"
    out.write_text("\n")
    run.main(["--size", "T", "--methods", "cheapest", "--out", str(out)])
    assert json.loads(out.read_text())["sizes"]["T"]["methods"][0]["cost"] == 2.0


def test_a_write_that_fails_leaves_the_results_as_they_were(tmp_path, monkeypatch):
    """The results were written in place: a full disk (or Ctrl-C) in the write left half a file,
    which the next run then started afresh over, every row lost."""
    import errno
    import os

    monkeypatch.setattr(run, "run_worker", lambda size, method, seed, limit: {"method": method, "cost": 2.0})
    out = tmp_path / "r.json"
    out.write_text(held := json.dumps({"sizes": {"S": {"methods": []}}}))

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(SystemExit, match=re.escape(f"cannot write the results to {out}: No space left on device; "
                                                   "give another --out")):
        run.main(["--size", "T", "--methods", "cheapest", "--out", str(out)])
    assert out.read_text() == held and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_a_replan_has_no_ratio_to_the_bound_in_results_json_as_in_the_table(tmp_path, monkeypatch, capsys):
    """A re-plan prices the fleet with its demand changed: results.json gave it -9.15% against the
    bound of the fleet before, below a lower bound, where the table leaves it empty."""
    rows = {"lp-bound": {"method": "lp-bound", "bound": 100.0},
            "placer": {"method": "placer", "cost": 110.0, "bound": 90.0},
            "replan": {"method": "replan", "cost": 95.0, "bound": 80.0, "wall": 1.0, "first_wall": 4.0}}
    monkeypatch.setattr(run, "run_worker", lambda size, method, seed, limit: dict(rows[method]))
    out = tmp_path / "r.json"
    run.main(["--size", "T", "--methods", "lp-bound,placer,replan", "--out", str(out)])
    got = {r["method"]: r for r in json.loads(out.read_text())["sizes"]["T"]["methods"]}
    assert got["placer"]["vs_best_bound"] == pytest.approx(0.10)
    assert got["replan"]["vs_best_bound"] is None
    table = capsys.readouterr().out
    assert "+10.00%" in table and "-5.00%" not in table


@pytest.mark.parametrize(("env", "args", "said"), [
    ("abc", [], "SEED must be a whole number 0 or more, not 'abc'"),
    ("-1", [], "SEED must be a whole number 0 or more, not '-1'"),
    ("", ["--seed", "-1"], "--seed must be a whole number 0 or more, not -1"),
])
def test_a_seed_that_is_no_generator_seed_is_refused_before_anything_runs(env, args, said, tmp_path, monkeypatch):
    """SEED=abc was a ValueError traceback; a seed below 0 ran every method into the generator's
    'expected non-negative integer', exit 0, its failed rows written over the size's results."""
    ran: list[str] = []
    monkeypatch.setattr(run, "run_worker", lambda size, method, seed, limit: ran.append(method) or {})
    monkeypatch.setenv("SEED", env)
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit, match=re.escape(said)):
        run.main(["--size", "T", "--methods", "cheapest", *args, "--out", str(out)])
    assert ran == [] and not out.exists()


@pytest.mark.parametrize(("env", "args", "seed", "limit"), [
    ({"SEED": "abc"}, ["--seed", "1"], 1, 5.0),
    ({"SEED": "-1"}, ["--seed", "0"], 0, 5.0),
    ({"TIME_LIMIT": "half a minute"}, ["--time-limit", "2"], 0, 2.0),
    ({"SEED": "2", "TIME_LIMIT": "3"}, [], 2, 3.0),
])
def test_the_environment_is_read_only_where_no_option_says(env, args, seed, limit, tmp_path, monkeypatch):
    """SEED and TIME_LIMIT were checked as the parser was built: SEED=abc was refused beside
    --seed 1, which it does not set."""
    ran: list[tuple[int, float]] = []
    monkeypatch.setattr(run, "run_worker", lambda size, method, seed, limit: ran.append((seed, limit)) or {})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    run.main(["--size", "T", "--methods", "cheapest", *args, "--out", str(tmp_path / "r.json")])
    assert ran == [(seed, limit)]


def test_a_worker_whose_last_line_is_no_result_is_a_failed_row(tmp_path, monkeypatch, capsys):
    """A worker's last line starting with "{" that is not JSON (its own output, or a line cut
    short) was a JSONDecodeError traceback that stopped the run; other failures are a row."""
    import subprocess

    real = subprocess.run

    def worker(cmd, **kw):  # bench.worker's run faked; git's (the run's commit) as it is
        if cmd[1:3] != ["-m", "bench.worker"]:
            return real(cmd, **kw)
        return subprocess.CompletedProcess(cmd, 0, stdout='{"size": "T", "method": "placer"}\n{placement: [ok]\n',
                                           stderr="")

    monkeypatch.setattr(subprocess, "run", worker)
    got = run.run_worker("T", "placer", 0, 5.0)
    assert got["size"] == "T" and got["method"] == "placer" and got["wall"] >= 0
    assert got["status"] == ("failed (exit 0): its last line is not a result (Expecting property name enclosed "
                             "in double quotes): {placement: [ok]")
    out = tmp_path / "r.json"
    run.main(["--size", "T", "--methods", "placer,cheapest", "--out", str(out)])  # the run goes on
    rows = json.loads(out.read_text())["sizes"]["T"]["methods"]
    assert [r["status"][:6] for r in rows] == ["failed", "failed"]
    assert "{placement: [ok]" in capsys.readouterr().out


def test_the_worker_refuses_a_size_it_does_not_know(capsys):
    """``python -m bench.worker Q placer`` was a KeyError traceback."""
    from bench import worker

    with pytest.raises(SystemExit) as got:
        worker.main(["Q", "placer"])
    assert got.value.code == 2
    assert "argument size: invalid choice: 'Q'" in capsys.readouterr().err


def test_at_its_own_limit_a_run_without_bound_methods_takes_the_fleets_bound(tmp_path, monkeypatch, capsys):
    """``make bench SIZE=S METHODS=most-allocated,replan`` had no bound: no ratio in its table, and
    results.json's best bound for S (1,326.53) written over with null."""
    known = tmp_path / "results.json"
    known.write_text(json.dumps({"sizes": {"T": {"seed": 0, "best_bound": 100.0}}}))
    monkeypatch.setattr(run, "default_out", lambda limit, seed=0: known if limit is None else tmp_path / "other.json")
    monkeypatch.setattr(run, "run_worker", lambda size, method, seed, limit: {"method": method, "cost": 150.0})
    run.main(["--size", "T", "--methods", "most-allocated"])
    got = json.loads(known.read_text())["sizes"]["T"]
    assert got["best_bound"] == 100.0 and got["methods"][0]["vs_best_bound"] == pytest.approx(0.5)
    assert "+50.00%" in capsys.readouterr().out
    # where a bound method runs at the size's own limit, the run's bounds are the fleet's
    monkeypatch.setattr(run, "run_worker", lambda size, method, seed, limit: {"method": method, "bound": 90.0})
    run.main(["--size", "T", "--methods", "lp-bound"])
    assert json.loads(known.read_text())["sizes"]["T"]["best_bound"] == 90.0


def test_the_full_mip_row_has_its_own_gap_as_placers_has():
    """(d) reported its own bound and a plan, and the table's own gap column was empty for it."""
    from bench import worker

    got = worker.run("T", "full-mip", 0, 5.0)
    assert got["cost"] is not None and got["bound"] is not None
    assert got["gap"] == pytest.approx(max(0.0, got["cost"] - got["bound"]) / max(abs(got["cost"]), 1.0))


def test_a_status_with_brackets_is_printed_as_it_is(tmp_path, monkeypatch, capsys):
    """A worker's failure ends with its last line of output: '[/tmp/a]' in it was read as a rich
    closing tag, a MarkupError traceback after the run (results.json not written), and '[hint]'
    was dropped from the table."""
    status = "failed (exit 1): error: [hint] see [/tmp/a]"
    monkeypatch.setattr(run, "run_worker", lambda size, method, seed, limit: {"method": method, "status": status})
    out = tmp_path / "r.json"
    run.main(["--size", "T", "--methods", "cheapest", "--out", str(out)])
    assert "[hint] see [/tmp/a]" in capsys.readouterr().out
    assert json.loads(out.read_text())["sizes"]["T"]["methods"][0]["status"] == status


def test_the_table_keeps_within_the_terminals_width(tmp_path, monkeypatch, capsys):
    """The table was 200 columns wide whatever the terminal: in a narrower one each row wrapped
    onto the next line, the columns out of line."""
    rows = {"lp-bound": {"method": "lp-bound", "bound": 1265.38, "status": "OPTIMAL", "wall": 0.03, "peak_mib": 101},
            "replan": {"method": "replan", "cost": 1205.18, "bound": 1085.82, "wall": 0.76, "first_wall": 4.62,
                       "peak_mib": 108, "hard": 0, "required_violations": 0, "status": "FEASIBLE",
                       "moves": {"started": 13, "stopped": 9}, "sticky_moves": {"started": 7, "stopped": 4},
                       "running_usd_per_hour": 1180.0, "sticky_running_usd_per_hour": 1185.71, "churn_usd": 6.5}}
    monkeypatch.setattr(run, "run_worker", lambda size, method, seed, limit: dict(rows[method]))
    monkeypatch.setenv("COLUMNS", "120")
    run.main(["--size", "T", "--methods", "lp-bound,replan", "--out", str(tmp_path / "r.json")])
    lines = capsys.readouterr().out.splitlines()
    assert lines and max(len(line.rstrip()) for line in lines) <= 120
    assert "1,205.18" in "\n".join(lines) and "FEASIBLE;" in "\n".join(lines)


def _results(tmp_path, monkeypatch, sizes):
    """A results file holding ``sizes`` (results.json too, for the fleet's bound), and a worker that
    prices every method run now at 105 with an own bound of 90."""
    out = tmp_path / "results.json"
    out.write_text(json.dumps({"sizes": sizes, "machine": {"cpus": 2}}))
    monkeypatch.setattr(run, "default_out", lambda limit, seed=0: out if limit is None else tmp_path / "other.json")
    ran: list[tuple[str, str]] = []

    def worker(size, method, seed, limit):
        ran.append((size, method))
        return {"size": size, "method": method, "seed": seed, "time_limit": limit, "cost": 105.0, "bound": 90.0}

    monkeypatch.setattr(run, "run_worker", worker)
    return out, ran


def _entry(seed=0, limit=5.0, rows=()):
    return {"models": 12, "pools": 8, "time_limit": limit, "seed": seed, "best_bound": 100.0,
            "methods": [{"method": m, "seed": seed, "time_limit": limit, **extra} for m, extra in rows]}


EARLIER = (("lp-bound", {"bound": 100.0}), ("placer", {"cost": 110.0, "bound": 95.0}),
           ("cheapest", {"cost": 300.0, "ran_at": "2026-12-01T10:00:00Z", "commit": "abc1234"}))


def test_a_run_of_some_methods_keeps_the_rows_it_did_not_run(tmp_path, monkeypatch, capsys):
    """``python -m bench.run --size M --methods placer`` wrote M's entry with its one row: the
    bounds', baselines' and re-plan's rows of the published table were lost to a quick check."""
    other_size = _entry(rows=(("placer", {"cost": 7.0}),)) | {"models": 50, "pools": 20}
    out, ran = _results(tmp_path, monkeypatch, {"T": _entry(rows=EARLIER), "S": other_size})
    run.main(["--size", "T", "--methods", "placer", "--out", str(out)])
    assert ran == [("T", "placer")]
    got = json.loads(out.read_text())["sizes"]
    assert got["S"] == other_size  # a size not run is left as it was
    rows = {r["method"]: r for r in got["T"]["methods"]}
    assert [r["method"] for r in got["T"]["methods"]] == ["lp-bound", "placer", "cheapest"]  # in place
    assert rows["placer"]["cost"] == 105.0  # replaced
    assert rows["lp-bound"]["bound"] == 100.0 and rows["cheapest"]["cost"] == 300.0  # kept as they were
    assert "ran_at" not in rows["lp-bound"] and rows["cheapest"]["commit"] == "abc1234"
    # the row run now says when and at which commit
    stamp = run.run_stamp()
    assert rows["placer"]["commit"] == stamp["commit"] and re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:]{8}Z", rows["placer"]["ran_at"])
    # the best bound is the kept lp-bound's, as results.json gave it, and every row is set against it
    assert got["T"]["best_bound"] == 100.0
    assert rows["placer"]["vs_best_bound"] == pytest.approx(0.05) and rows["cheapest"]["vs_best_bound"] == pytest.approx(2.0)
    table = capsys.readouterr().out
    assert "this run" in table and "2026-12-01 10:00 abc1234" in table and "earlier, not recorded" in table
    assert "the other rows are kept from " in table and "results.json, as run before" in " ".join(table.split())


def test_rows_of_another_seed_or_limit_are_never_merged(tmp_path, monkeypatch, capsys):
    """Only the same fleet (size, seed) at the same limit is merged: a size's rows of another seed or
    limit are replaced whole, and said so; a row that says another limit is dropped."""
    out, _ = _results(tmp_path, monkeypatch, {"T": _entry(seed=1, rows=EARLIER)})
    run.main(["--size", "T", "--methods", "placer", "--out", str(out)])
    got = json.loads(out.read_text())["sizes"]["T"]
    assert [r["method"] for r in got["methods"]] == ["placer"] and got["seed"] == 0
    assert f"{out} holds its rows of seed 1, limit 5.0s" in capsys.readouterr().err

    out.write_text(json.dumps({"sizes": {"T": _entry(rows=EARLIER)}}))
    run.main(["--size", "T", "--methods", "placer", "--time-limit", "2", "--out", str(out)])
    assert [r["method"] for r in json.loads(out.read_text())["sizes"]["T"]["methods"]] == ["placer"]

    entry = _entry(rows=EARLIER)
    entry["methods"][0]["time_limit"] = 30.0
    out.write_text(json.dumps({"sizes": {"T": entry}}))
    run.main(["--size", "T", "--methods", "placer", "--out", str(out)])
    assert [r["method"] for r in json.loads(out.read_text())["sizes"]["T"]["methods"]] == ["placer", "cheapest"]


def test_each_row_says_the_machine_it_ran_on(tmp_path, monkeypatch):
    """The file's one ``machine`` described the latest run alone, the rows kept from other runs
    with it: each row run now says its own (CPUs, Python, the load average as the run started)."""
    import os
    import sys

    out, _ = _results(tmp_path, monkeypatch, {"T": _entry(rows=EARLIER)})
    loads = iter([(1.5, 1.0, 0.25), (9.0, 9.0, 9.0)])
    monkeypatch.setattr(os, "getloadavg", lambda: next(loads))
    run.main(["--size", "T", "--methods", "placer,most-allocated", "--out", str(out)])
    got = json.loads(out.read_text())
    rows = {r["method"]: r for r in got["sizes"]["T"]["methods"]}
    machine = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "load_average": [1.5, 1.0, 0.25]}
    assert rows["placer"]["machine"] == machine and rows["most-allocated"]["machine"] == machine  # the run's start
    assert "machine" not in rows["lp-bound"] and "machine" not in got  # kept rows say none; nothing claims them


def test_a_size_or_method_given_twice_runs_once(tmp_path, monkeypatch):
    """``--methods placer,placer`` ran placer twice, the second row written over the first."""
    out, ran = _results(tmp_path, monkeypatch, {})
    run.main(["--size", "T,t", "--methods", "placer,cheapest,placer", "--out", str(out)])
    assert ran == [("T", "placer"), ("T", "cheapest")]


def test_the_run_stamp_has_no_commit_outside_a_checkout(tmp_path):
    assert run.run_stamp(tmp_path)["commit"] is None
    assert run.run_stamp()["commit"]  # this checkout's


def test_the_run_stamp_says_a_tree_with_uncommitted_changes_is_not_its_commits(tmp_path):
    """A row said HEAD's short hash whatever the tree held: a modified tree's numbers were taken for
    the commit's. Changes to tracked files mark it as ``git describe --dirty`` does; an untracked
    file, or a results file bench itself wrote, does not."""
    import subprocess

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "run.py").write_text("x = 1\n")
    (tmp_path / "bench" / "results.json").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "c")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, capture_output=True,
                          text=True, check=True).stdout.strip()
    where = tmp_path / "bench"
    assert run.run_stamp(where)["commit"] == head
    (tmp_path / "bench" / "results.json").write_text('{"sizes": {}}\n')
    (tmp_path / "notes.txt").write_text("untracked\n")
    assert run.run_stamp(where)["commit"] == head
    (tmp_path / "bench" / "run.py").write_text("x = 2\n")
    assert run.run_stamp(where)["commit"] == f"{head}-dirty"
    git("add", "bench/run.py")  # staged, not committed
    assert run.run_stamp(where)["commit"] == f"{head}-dirty"


class _Stopped(Exception):
    """What SIGTERM raises in the test itself (it killed pytest where bench did not take it)."""


def _stopped_run(argv: list[str]) -> object:
    """How ``run.main(argv)`` ended, with SIGTERM raising _Stopped where bench did not take it."""
    import signal

    def stopped(signum, frame):
        raise _Stopped

    before = signal.signal(signal.SIGTERM, stopped)
    try:
        with pytest.raises((SystemExit, KeyboardInterrupt, _Stopped)) as got:
            run.main(argv)
    finally:
        signal.signal(signal.SIGTERM, before)
    return got.value


@pytest.mark.parametrize(("how", "status", "said"), [("SIGINT", 130, "Interrupted."),
                                                     ("SIGTERM", 143, "Interrupted (SIGTERM).")])
def test_a_run_stopped_keeps_the_rows_it_finished_and_says_so(how, status, said, tmp_path, monkeypatch, capsys):
    """Ctrl-C in a run was a KeyboardInterrupt traceback, the rows of the size it was in, run for
    up to half an hour, lost (the results were written once a size ended); SIGTERM killed it, its
    worker left running for up to its wall cap."""
    import os
    import signal

    def worker(size, method, seed, limit):
        if method == "placer":
            if how == "SIGINT":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGTERM)
        return {"method": method, "cost": 2.0}

    monkeypatch.setattr(run, "run_worker", worker)
    out = tmp_path / "r.json"
    ended = _stopped_run(["--size", "T", "--methods", "cheapest,placer", "--out", str(out)])
    assert isinstance(ended, SystemExit) and ended.code == status
    assert [r["method"] for r in json.loads(out.read_text())["sizes"]["T"]["methods"]] == ["cheapest"]
    assert f"{said} Each row run before it is written to {out}" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["_seed_from_env", "read_results"])
@pytest.mark.parametrize(("how", "status", "said"), [("SIGINT", 130, "Interrupted."),
                                                     ("SIGTERM", 143, "Interrupted (SIGTERM).")])
def test_a_run_stopped_before_it_runs_says_so(where, how, status, said, tmp_path, monkeypatch, capsys):
    """Ctrl-C as the arguments were read or the results file was (a slow disk, a big file) was a
    KeyboardInterrupt traceback, and SIGTERM killed it unsaid; the rest of a run says 'Interrupted.'."""
    import os
    import signal

    real = getattr(run, where)

    def stop(*args):
        if how == "SIGINT":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args)

    ran: list[str] = []
    monkeypatch.setattr(run, "run_worker", lambda size, method, seed, limit: ran.append(method) or {})
    monkeypatch.setattr(run, where, stop)
    out = tmp_path / "r.json"
    ended = _stopped_run(["--size", "T", "--methods", "cheapest", "--out", str(out)])
    assert isinstance(ended, SystemExit) and ended.code == status
    assert capsys.readouterr().err == f"{said} Nothing was run, nor any results written.\n"
    assert ran == [] and not out.exists()


@pytest.mark.parametrize(("env", "sizes", "methods"), [
    ({"METHODS": "cheapest", "SIZE": "T"}, ["T"], ["cheapest"]),
    ({"METHODS": " ", "SIZE": ""}, ["S", "M", "L", "XL"], list(run.DEFAULT_METHODS)),
])
def test_sizes_and_methods_from_the_environment(env, sizes, methods, tmp_path, monkeypatch):
    """METHODS=placer python -m bench.run ran every method (only make read METHODS), and SIZE=
    (make bench SIZE= exports it empty) said 'nothing to run'."""
    ran: list[tuple[str, str]] = []
    monkeypatch.setattr(run, "run_worker", lambda size, method, seed, limit: ran.append((size, method)) or {})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    run.main(["--out", str(tmp_path / "r.json")])
    assert ran == [(s, m) for s in sizes for m in methods]


def test_ctrl_c_while_it_loads_is_said_not_a_traceback(tmp_path):
    """Ctrl-C in the first half second of `python -m bench.run`, while numpy and placer load, printed
    a KeyboardInterrupt traceback; now it says so, exit 130, as it does later. The interrupt is made
    to land there: an import hook (sitecustomize) raises it as bench.generate is imported."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class Stop:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'bench.generate':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Stop())\n")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)])}
    r = subprocess.run([sys.executable, "-m", "bench.run", "--size", "S", "--out", str(tmp_path / "r.json")],
                       cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 130 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip() == "Interrupted. Nothing was run, nor any results written."
    assert not (tmp_path / "r.json").exists()
