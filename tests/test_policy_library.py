"""The policy library (policies/library) and `placer policy test`: every library case passes, each
policy has a case only the policy makes true, and failing or malformed tests are reported with
their reasons and exit 1."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import policies
from placer import policytest
from placer.fleet import load_fleet
from tests import denied

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "policies" / "library"

# `placer policy` is registered on the main group by placer.cli; until then, register it here.
RUN_CLI = (
    "from placer.cli import cli, main\n"
    "from placer.cli_policy import policy\n"
    "if 'policy' not in cli.commands:\n"
    "    cli.add_command(policy)\n"
    "raise SystemExit(main())\n"
)


def placer(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", RUN_CLI, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


def policy_files() -> list[Path]:
    return sorted(p for p in LIBRARY.glob("*.yaml") if not policytest.is_test_file(p))


def test_every_library_case_passes_through_the_cli() -> None:
    r = placer("policy", "test", "policies/library")
    assert r.returncode == 0, r.stdout + r.stderr
    cases = sum(len(yaml.safe_load(p.read_text())["spec"]["cases"]) for p in LIBRARY.glob("*.test.yaml"))
    assert cases >= 30
    assert r.stdout.rstrip().endswith(f"{cases} passed, 0 failed")
    assert r.stdout.count("  PASS  ") == cases and "FAIL" not in r.stdout
    assert r.stderr == ""


def test_every_policy_has_tests_and_one_policy_document() -> None:
    names = [p.stem for p in policy_files()]
    assert len(names) >= 12
    for name in names:
        assert (LIBRARY / f"{name}.test.yaml").exists(), f"{name}.yaml has no {name}.test.yaml"
        docs = [d for d in yaml.safe_load_all((LIBRARY / f"{name}.yaml").read_text()) if d]
        assert [d["kind"] for d in docs] == ["Policy"], name
    for test in LIBRARY.glob("*.test.yaml"):
        assert policytest.policy_file_for(test).exists(), test.name


def test_library_policies_load_into_a_real_fleet(tmp_path: Path) -> None:
    """What users do: copy the policy files (not the tests) into their fleet."""
    fleet = tmp_path / "fleet"
    shutil.copytree(ROOT / "examples" / "gitops" / "fleet", fleet)
    (fleet / "policies.yaml").unlink()  # it holds a copy of residency-eu
    for path in policy_files():
        shutil.copy(path, fleet / path.name)
    loaded = load_fleet(fleet)
    assert len(loaded.policies) == len(policy_files())
    # the example fleet labels no model size, latency or data: us, and has no spot pool, so the
    # policies that select those match nothing there, and say so; nothing else is said of them
    said = [w for w in loaded.warnings if "Policy" in str(w)]
    assert said and all(" selector matches no " in w.message for w in said), said
    assert "no Model has the label 'size'" in " ".join(w.message for w in said)


def test_each_policy_has_a_case_that_fails_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test suite that passes with the policy removed proves nothing about the policy."""
    monkeypatch.setattr(policytest._PolicyFiles, "load", lambda self, path: ([], []))
    report = policytest.run(LIBRARY, policies.build_rules)
    failing_without = {c.test for c in report.cases if not c.passed}
    assert failing_without == {c.test for c in report.cases}


def test_a_failing_case_is_reported_with_its_reasons(tmp_path: Path) -> None:
    shutil.copy(LIBRARY / "residency-eu.yaml", tmp_path / "residency-eu.yaml")
    test = yaml.safe_load((LIBRARY / "residency-eu.test.yaml").read_text())
    case = test["spec"]["cases"][0]
    assert case["name"] == "eu-data-runs-only-on-eu-pools"
    # a wrong belief about the policy: EU data may go to the cheaper US pool
    case["expect"] = [{"model": "chat-eu", "allowed": ["use1-a100"], "denied": ["fra-a100"]}]
    case["placed"] = {"chat-eu": ["use1-a100"]}
    test["spec"]["cases"] = [case, test["spec"]["cases"][1]]
    (tmp_path / "residency-eu.test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))

    r = placer("policy", "test", tmp_path)
    assert r.returncode == 1
    out = r.stdout
    assert "  FAIL  residency-eu/eu-data-runs-only-on-eu-pools" in out
    assert "  PASS  residency-eu/unlabelled-models-are-not-restricted" in out
    assert ("chat-eu: expected allowed on pool use1-a100, got denied (policy: residency-eu: use1-a100 is not "
            "among the pools this policy names)") in out
    assert "chat-eu: expected denied on pool fra-a100, got allowed" in out
    assert "chat-eu: expected placed on use1-a100, got 2 on fra-a100" in out
    assert re.search(r"residency-eu\.test\.yaml:\d+\)", out)  # where the case is
    assert out.rstrip().endswith("1 passed, 1 failed")
    assert "Traceback" not in r.stderr


def test_malformed_test_files_point_at_the_line(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text((LIBRARY / "residency-eu.yaml").read_text())
    (tmp_path / "p.test.yaml").write_text(
        "apiVersion: placer.dev/v1alpha1\n"
        "kind: PolicyTest\n"
        "metadata: {name: p}\n"
        "spec:\n"
        "  cases:\n"
        "    - name: typo\n"
        "      notPlacd: [m]\n"
        "    - name: negative\n"
        "      placed: {m: {fra-a100: -3}}\n")
    (tmp_path / "q.test.yaml").write_text("kind: PolicyTest\nspec: {cases: [\n")
    (tmp_path / "q.yaml").write_text("")
    r = placer("policy", "test", tmp_path)
    assert r.returncode == 1
    assert f"ERROR {tmp_path}/p.test.yaml:7: PolicyTest/p: spec.cases[0].notPlacd: unknown field; did you mean " \
           "'notPlaced'?" in r.stderr
    # a count below 1 was taken, and the case failed as "expected placed not placed, got 2 on fra-a100"
    assert f"ERROR {tmp_path}/p.test.yaml:9: PolicyTest/p: spec.cases[1].placed: m on fra-a100: -3 replicas; give " \
           "a count of 1 or more (a model placed nowhere is notPlaced)" in r.stderr
    assert f"ERROR {tmp_path}/q.test.yaml:2: invalid YAML" in r.stderr
    assert "0 passed, 0 failed, 2 test file(s) with errors" in r.stdout
    assert "Traceback" not in r.stderr


def test_bad_fixtures_and_unknown_names_fail_the_case_at_their_line(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text((LIBRARY / "residency-eu.yaml").read_text())
    (tmp_path / "p.test.yaml").write_text(
        "apiVersion: placer.dev/v1alpha1\n"
        "kind: PolicyTest\n"
        "metadata: {name: p}\n"
        "spec:\n"
        "  fleet:\n"
        "    - {kind: Location, metadata: {name: fra}, spec: {environment: onprem, jurisdiction: EU}}\n"
        "  cases:\n"
        "    - name: unknown-pool\n"
        "      fleet:\n"
        "        - kind: Pool\n"
        "          metadata: {name: fra-a100}\n"
        "          spec: {location: fra, provider: static, gpu: {type: A100-80GB, perNode: 8}, nodes: {count: 1},\n"
        "                 usdPerGpuHour: 1}\n"
        "        - kind: Model\n"
        "          metadata: {name: m, labels: {data: eu}}\n"
        "          spec: {replica: {gpus: 1, memoryGiBPerGpu: 10}, throughput: {A100-80GB: 1}, demand: []}\n"
        "      expect:\n"
        "        - {model: m, allowed: [fra-a10]}\n"
        "    - name: bad-pool\n"
        "      fleet:\n"
        "        - kind: Pool\n"
        "          metadata: {name: fra-a100}\n"
        "          spec: {location: frankfurt, provider: static, gpu: {type: A100-80GB, perNode: 8},\n"
        "                 nodes: {count: 1}, usdPerGpuHour: 1}\n"
        "      violations: 0\n")
    report = policytest.run(tmp_path, policies.build_rules)
    assert not report.file_errors and report.failed == 2
    unknown, bad = report.cases
    assert unknown.errors == (f"{tmp_path}/p.test.yaml:18: PolicyTest/p: spec.cases[0].expect[0].allowed[0]: no pool "
                              "named 'fra-a10' in this case's fleet; did you mean 'fra-a100'?",)
    assert len(bad.errors) == 1
    assert bad.errors[0].startswith(f"{tmp_path}/p.test.yaml:23: Pool/fra-a100: spec.location: unknown location "
                                    "'frankfurt'")


def test_run_selects_cases_and_reports_when_nothing_is_found(tmp_path: Path) -> None:
    report = policytest.run(LIBRARY, policies.build_rules, pattern=r"^residency-us/")
    assert {c.test for c in report.cases} == {"residency-us"} and report.ok
    r = placer("policy", "test", tmp_path)
    assert r.returncode == 1 and "no policy test files" in r.stderr
    r = placer("policy", "test", LIBRARY, "--run", "no-such-case")
    assert r.returncode == 1 and "no case matches --run 'no-such-case'" in r.stdout


# ---------------------------------------------------------------- reading test and policy files


def placer_limited(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`placer` with 3 GiB of address space and 60 s: a reader that reads /dev/zero to its end fails
    soon with MemoryError, one that waits on a FIFO for a writer is stopped."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))

    return subprocess.run([sys.executable, "-c", RUN_CLI, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=60, check=False, preexec_fn=limit)


def a_test_of(policy: str) -> str:
    return ("apiVersion: placer.dev/v1alpha1\nkind: PolicyTest\nmetadata: {name: t}\nspec:\n"
            f"  policy: {policy}\n  cases: [{{name: a, violations: 0}}]\n")


def test_policy_files_are_read_as_fleet_files_are(tmp_path: Path) -> None:
    """/dev/zero filled the memory (an internal error: MemoryError), a FIFO waited for a writer for ever;
    a directory is refused too (its message, at the test's line: see the next test)."""
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "z.test.yaml").write_text(a_test_of("/dev/zero"))
    (tmp_path / "f.test.yaml").write_text(a_test_of("fifo.yaml"))
    (tmp_path / "big.yaml").write_text("# " + "x" * (2**20) + "\n")
    (tmp_path / "big.test.yaml").write_text(a_test_of("big.yaml"))
    (tmp_path / "pols").mkdir()
    (tmp_path / "d.test.yaml").write_text(a_test_of("pols"))
    r = placer_limited("policy", "test", ".", cwd=tmp_path)
    assert r.returncode == 1
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "ERROR big.yaml:1: file is 1048579 bytes, over the 1048576-byte (1 MiB) limit for policy files: split its " \
        "policies over several files" in " ".join(r.stderr.split())
    assert "not a regular file (a character device)" in r.stderr
    assert "not a regular file (a named pipe (FIFO))" in r.stderr
    assert "0 passed, 0 failed, 4 test file(s) with errors" in r.stdout


def test_test_files_are_decoded_as_fleet_files_are(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text((LIBRARY / "residency-eu.yaml").read_text())
    (tmp_path / "p.test.yaml").write_bytes(a_test_of("p.yaml").encode("utf-16"))
    r = placer("policy", "test", tmp_path / "p.test.yaml")
    assert r.returncode == 1
    assert f"ERROR {tmp_path}/p.test.yaml:1: UTF-16 text, not UTF-8: save the file as UTF-8" in r.stderr, r.stderr


def test_an_unreadable_spec_policy_is_said_at_its_line_with_what_to_name(tmp_path: Path) -> None:
    """A directory was "pols:1: cannot read: Is a directory" ("." for policy: ""), naming neither the
    test file nor what to do; a test path that is a device was "no such file or directory"."""
    (tmp_path / "pols").mkdir()
    for name in ("b.yaml", "a.yml", "notes.txt"):
        (tmp_path / "pols" / name).write_text((LIBRARY / "residency-eu.yaml").read_text())
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "d.test.yaml").write_text(a_test_of("pols"))
    (tmp_path / "e.test.yaml").write_text(a_test_of('""'))
    (tmp_path / "f.test.yaml").write_text(a_test_of("[p.yaml, fifo.yaml]"))
    (tmp_path / "p.yaml").write_text((LIBRARY / "residency-eu.yaml").read_text())
    r = placer_limited("policy", "test", ".", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "ERROR d.test.yaml:5: PolicyTest/t: spec.policy: policy file pols is a directory: name the policy files "
        "in it, e.g. policy: [pols/a.yml, pols/b.yaml]",
        "ERROR e.test.yaml:5: PolicyTest/t: spec.policy: an empty file name: name a policy file, relative to this "
        "test file",
        "ERROR f.test.yaml:5: PolicyTest/t: spec.policy[1]: policy file fifo.yaml is not a regular file (a named "
        "pipe (FIFO)): name a YAML file of Policy documents"]
    r = placer("policy", "test", "/dev/null")
    assert r.returncode == 1
    assert r.stderr.strip() == ("Error: /dev/null: not a regular file (a character device): name a policy test "
                                "file (*.test.yaml or *.test.yml) or a directory of them")


def test_a_spec_policy_naming_no_file_says_which_file_was_meant(tmp_path: Path) -> None:
    """spec.policy names files: the stem of one (`residency-eu`), a Policy's name, or a typo of a file
    each said only 'policy file residency-eu not found', beside the file it meant."""
    (tmp_path / "residency-eu.yaml").write_text((LIBRARY / "residency-eu.yaml").read_text())
    (tmp_path / "pols.yml").write_text((LIBRARY / "budget-team.yaml").read_text())
    (tmp_path / "a.test.yaml").write_text(a_test_of("residency-eu"))
    (tmp_path / "b.test.yaml").write_text(a_test_of("budget-team-search"))
    (tmp_path / "c.test.yaml").write_text(a_test_of("[residency-eu.yaml, residncy-eu.yaml]"))
    (tmp_path / "d.test.yaml").write_text(a_test_of("nothing-like-it.yaml"))
    r = placer("policy", "test", ".", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "ERROR a.test.yaml:5: PolicyTest/t: spec.policy: policy file residency-eu not found; did you mean "
        "residency-eu.yaml (policy names files, with their .yaml)?",
        "ERROR b.test.yaml:5: PolicyTest/t: spec.policy: policy file budget-team-search not found; policy names "
        "policy files, not Policy documents: Policy/budget-team-search is in pols.yml, so name that file",
        "ERROR c.test.yaml:5: PolicyTest/t: spec.policy[1]: policy file residncy-eu.yaml not found; did you mean "
        "'residency-eu.yaml'?",
        "ERROR d.test.yaml:5: PolicyTest/t: spec.policy: policy file nothing-like-it.yaml not found"]


def test_policy_tests_given_as_dash_say_they_are_not_read_from_stdin(tmp_path: Path) -> None:
    """`cat p.test.yaml | placer policy test -` said '-: no such file or directory' and nothing of what
    to give, where `placer validate -` and `placer show -` say a fleet or plan is not read from
    standard input: so does policy test, exit 1 as they do."""
    r = placer("policy", "test", "-", cwd=tmp_path)
    assert r.returncode == 1 and r.stdout == "", r.stdout
    assert r.stderr.strip() == ("Error: -: no such file or directory; policy tests are not read from standard "
                                "input: save them to a file (> policy.test.yaml) and give that, or a directory "
                                "of them"), r.stderr


def test_a_case_is_judged_at_the_time_placer_plan_takes_its_now_to_be(tmp_path: Path) -> None:
    """A now with an offset kept it (11-28 at 02:00+05:00), where plan --now converts to UTC (11-27
    at 21:00): the test said a model 30 days unused was retired, and the plan kept it."""
    from placer.cli import parse_now

    for text in ("2026-11-28T02:00:00+05:00", "2026-11-28", "2026-11-27T21:00:00Z", "2026-11-28T00:00:00-05:00"):
        assert str(policytest._as_now(text)) == str(parse_now(text)), text  # the same day too: not just ==
    assert str(policytest._as_now(yaml.safe_load("2026-11-28 02:00:00+05:00"))) == "2026-11-27 21:00:00+00:00"
    (tmp_path / "retire.yaml").write_text("apiVersion: placer.dev/v1alpha1\nkind: Policy\nmetadata: {name: r}\n"
                                          "spec: {rule: {retire: {unusedForDays: 30}}}\n")
    (tmp_path / "retire.test.yaml").write_text(
        "apiVersion: placer.dev/v1alpha1\nkind: PolicyTest\nmetadata: {name: r}\nspec:\n  fleet:\n"
        "    - {kind: Location, metadata: {name: dc}, spec: {environment: onprem}}\n"
        "    - kind: Model\n      metadata: {name: old}\n"
        "      spec: {lastUsed: 2026-10-28, replica: {gpus: 1, memoryGiBPerGpu: 4}, throughput: {A100-80GB: 1}, demand: []}\n"
        "  cases:\n"
        "    - {name: plus-five, now: '2026-11-28T02:00:00+05:00', expect: [], retired: []}\n"
        "    - {name: minus-five, now: 2026-11-28T00:00:00-05:00, retired: [old]}\n")
    report = policytest.run(tmp_path, policies.build_rules)
    assert not report.file_errors, report.file_errors
    assert [(c.name, c.passed) for c in report.cases] == [("plus-five", True), ("minus-five", True)], report.cases
    (tmp_path / "retire.test.yaml").write_text((tmp_path / "retire.test.yaml").read_text()
                                               .replace("retired: []}", "retired: [old]}"))
    plus_five = policytest.run(tmp_path, policies.build_rules).cases[0]
    assert (plus_five.errors, plus_five.failures) == ((), ("old: expected retired, got not retired",))


def test_expectations_are_as_strict_as_fleet_files(tmp_path: Path) -> None:
    """`cheap-spot: true` was a count of 1, `ondemand: 2.0` of 2, `violations: false` 0 and `infeasible: "no"`
    true, where a fleet file refuses each (README: only true and false are booleans)."""
    (tmp_path / "p.yaml").write_text((LIBRARY / "residency-eu.yaml").read_text())
    (tmp_path / "p.test.yaml").write_text(
        "apiVersion: placer.dev/v1alpha1\nkind: PolicyTest\nmetadata: {name: p}\nspec:\n  cases:\n"
        "    - name: loose\n"
        "      placed: {chat: {cheap-spot: true, ondemand: 2.0}, m: 3}\n"
        "      violations: false\n"
        "      infeasible: \"no\"\n"
        "    - {name: text, notPlaced: [12]}\n")
    r = placer("policy", "test", tmp_path)
    assert r.returncode == 1
    where = f"ERROR {tmp_path}/p.test.yaml"
    assert r.stderr.splitlines() == [
        f"{where}:7: PolicyTest/p: spec.cases[0].placed.chat.cheap-spot: Input should be a valid integer, got true",
        f"{where}:7: PolicyTest/p: spec.cases[0].placed.chat.ondemand: Input should be a valid integer, got 2.0; "
        "write 2, without the decimal point",
        f"{where}:7: PolicyTest/p: spec.cases[0].placed.m: must be a list of pools or a mapping {{pool: replicas}}, "
        "got 3",
        f"{where}:8: PolicyTest/p: spec.cases[0].violations: Input should be a valid integer, got false",
        f"{where}:9: PolicyTest/p: spec.cases[0].infeasible: Input should be a valid boolean, got 'no'; write true or "
        "false: placer reads YAML 1.2, where yes, no, on and off are text",
        f"{where}:10: PolicyTest/p: spec.cases[1].notPlaced[0]: Input should be a valid string, got 12; put it in "
        "quotes: YAML reads unquoted 12, 1e6, true or 2026-01-01 as a number, a boolean or a date"]


def test_a_policy_file_listed_twice_is_said_so(tmp_path: Path) -> None:
    """It was read twice, and said "duplicate Policy name; first defined at p.yaml:3" of itself."""
    (tmp_path / "p.yaml").write_text((LIBRARY / "residency-eu.yaml").read_text())
    (tmp_path / "p.test.yaml").write_text(a_test_of("[p.yaml, ./p.yaml]"))
    r = placer("policy", "test", "p.test.yaml", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.splitlines() == ["ERROR p.test.yaml:5: PolicyTest/t: spec.policy[1]: policy file p.yaml is listed "
                                     "twice (spec.policy[0] names it too): list each policy file once"]


def test_the_fleet_loaders_words_are_put_right_for_test_and_policy_files(tmp_path: Path) -> None:
    """Test files were told of "fleet files" and "the fleet directory", and a policy file passed as a
    test file was "a fleet document in a test file?"."""
    (tmp_path / "p.yaml").write_text((LIBRARY / "residency-eu.yaml").read_text())
    (tmp_path / "alias.test.yaml").write_text("a: &x 1\nb: *x\n")
    (tmp_path / "fixture.test.yaml").write_text(
        "apiVersion: placer.dev/v1alpha1\nkind: PolicyTest\nmetadata: {name: f}\nspec:\n  policy: p.yaml\n"
        "  fleet:\n    - {kind: PolicyTest, metadata: {name: g}}\n  cases: [{name: a, violations: 0}]\n")
    (tmp_path / "holds-test.yaml").write_text(a_test_of("p.yaml").replace("{name: t}", "{name: inner}"))
    (tmp_path / "policy.test.yaml").write_text(a_test_of("holds-test.yaml"))
    r = placer("policy", "test", ".", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "ERROR alias.test.yaml:2: invalid YAML: anchors and aliases (*name) are not allowed in policy test files; "
        "write the value out",
        "ERROR fixture.test.yaml:7: PolicyTest/f: spec.fleet[0].kind: a PolicyTest cannot be a fixture: a fleet "
        "here holds fleet documents (Location, Pool, Model, Policy, ...)",
        "ERROR holds-test.yaml:2: PolicyTest/inner: kind: a policy file holds Policy documents only, found "
        "PolicyTest; put it in a test file of its own (*.test.yaml)"]
    r = placer("policy", "test", "p.yaml", cwd=tmp_path)
    assert r.stderr.splitlines() == [
        "ERROR p.yaml:6: kind: kind must be PolicyTest, got 'Policy': p.yaml is a Policy file; pass `placer policy "
        "test` its PolicyTest file (p.test.yaml) or their directory"]


def test_an_empty_spec_policy_reads_no_policy_file(tmp_path: Path) -> None:
    """`policy: []` read the default p.yaml, as if policy were left out: its Policy and the case's own were
    then 'duplicate Policy name'."""
    (tmp_path / "p.yaml").write_text("apiVersion: placer.dev/v1alpha1\nkind: Policy\nmetadata: {name: cap}\n"
                                     "spec: {rule: {maxModelsPerPool: 1}}\n")
    (tmp_path / "p.test.yaml").write_text(
        "apiVersion: placer.dev/v1alpha1\nkind: PolicyTest\nmetadata: {name: own}\nspec:\n  policy: []\n"
        "  fleet:\n    - {kind: Location, metadata: {name: dc}, spec: {environment: onprem}}\n"
        "    - {kind: Policy, metadata: {name: cap}, spec: {rule: {maxModelsPerPool: 2}}}\n"
        "  cases: [{name: fixtures-only, violations: 0}]\n")
    report = policytest.run(tmp_path, policies.build_rules)
    assert not report.file_errors and [(c.name, c.errors, c.failures) for c in report.cases] == \
        [("fixtures-only", (), ())]


def test_expectations_a_case_cannot_both_meet_are_refused_at_their_line(tmp_path: Path) -> None:
    """`infeasible: true` with placed, notPlaced and violations passed, none of them checked (no plan to
    check them on); a model both placed and notPlaced, a pool both allowed and denied, could never pass,
    and failed as if the policy were wrong."""
    (tmp_path / "p.yaml").write_text((LIBRARY / "residency-eu.yaml").read_text())
    (tmp_path / "p.test.yaml").write_text(
        "apiVersion: placer.dev/v1alpha1\nkind: PolicyTest\nmetadata: {name: p}\nspec:\n  cases:\n"
        "    - name: unchecked\n"
        "      infeasible: true\n"
        "      placed: {m: {fra-a100: 7}}\n"
        "      violations: 5\n"
        "    - name: both\n"
        "      placed: {m: [fra-a100]}\n"
        "      notPlaced: [n, m]\n"
        "      expect:\n"
        "        - {model: m, allowed: [fra-a100], denied: [use1-a100]}\n"
        "        - {model: m, denied: [fra-a100], reason: memory}\n"
        "        - {model: n, allowed: [use1-a100], reason: memory}\n")
    r = placer("policy", "test", "p.test.yaml", cwd=tmp_path)
    assert r.returncode == 1
    where = "ERROR p.test.yaml"
    assert r.stderr.splitlines() == [
        f"{where}:7: PolicyTest/p: spec.cases[0].infeasible: infeasible: true leaves no placement to check placed and "
        "violations on; move them to a case of its own",
        f"{where}:12: PolicyTest/p: spec.cases[1].notPlaced[1]: m is placed in this case too; expect it placed or "
        "notPlaced, not both",
        f"{where}:15: PolicyTest/p: spec.cases[1].expect[1].denied[0]: m is expected allowed on fra-a100 in this case "
        "too (expect[0]); expect it allowed or denied, not both",
        f"{where}:16: PolicyTest/p: spec.cases[1].expect[2].reason: reason is the text of a denial's reason, and this "
        "expectation denies no pool; drop it, or list the pools under denied"]
    assert "0 passed, 0 failed, 1 test file(s) with errors" in r.stdout


def test_a_separate_workloads_whose_models_selector_leaves_one_workload_is_warned_of(tmp_path: Path) -> None:
    """`models: {workload: training}` on separateWorkloads [training, inference] selects no inference model,
    so no pool can ever host both: the policy held on nothing, and validate said the fleet was valid."""
    (tmp_path / "fleet.yaml").write_text(
        "apiVersion: placer.dev/v1alpha1\nkind: Location\nmetadata: {name: dc}\nspec: {environment: onprem}\n---\n"
        "apiVersion: placer.dev/v1alpha1\nkind: Pool\nmetadata: {name: p}\nspec: {location: dc, provider: static, "
        "gpu: {type: A100-80GB, perNode: 8}, nodes: {count: 1}, usdPerGpuHour: 1}\n---\n"
        "apiVersion: placer.dev/v1alpha1\nkind: Model\nmetadata: {name: tr}\nspec: {workload: training, replicas: 1, "
        "replica: {gpus: 1, memoryGiBPerGpu: 40}}\n---\n"
        "apiVersion: placer.dev/v1alpha1\nkind: Model\nmetadata: {name: chat}\nspec: {replica: {gpus: 1, "
        "memoryGiBPerGpu: 40}, throughput: {A100-80GB: 100}, demand: [{location: dc, rate: 100}]}\n")
    (tmp_path / "separate.yaml").write_text(
        "apiVersion: placer.dev/v1alpha1\nkind: Policy\nmetadata: {name: sep}\nspec:\n"
        "  models: {workload: [training, batch]}\n  rule: {separateWorkloads: [training, inference]}\n")
    r = placer("validate", ".", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "separate.yaml:5: Policy/sep: spec.models.workload: warning: selects training and batch models only, so " \
        "no pool can host two of the workloads separateWorkloads lists (training, inference): the policy holds on " \
        "nothing; drop the workload selector (the rule names its workloads)" in r.stdout + r.stderr


def test_a_headroom_violation_says_its_fraction_unrounded(tmp_path: Path) -> None:
    """A headroom of 0.004 on a full pool was said as 'keeps < 0% free', which no pool can be short of."""
    (tmp_path / "p.yaml").write_text(
        "apiVersion: placer.dev/v1alpha1\nkind: Policy\nmetadata: {name: head}\nspec:\n  enforcement: preferred\n"
        "  penaltyUsdPerHour: 0.01\n  rule: {headroom: {fraction: 0.004}}\n")
    (tmp_path / "p.test.yaml").write_text(
        "apiVersion: placer.dev/v1alpha1\nkind: PolicyTest\nmetadata: {name: h}\nspec:\n  fleet:\n"
        "    - {kind: Location, metadata: {name: dc}, spec: {environment: onprem}}\n"
        "    - {kind: Pool, metadata: {name: p}, spec: {location: dc, provider: static, "
        "gpu: {type: A100-80GB, perNode: 8}, nodes: {count: 1}, usdPerGpuHour: 1}}\n"
        "    - {kind: Model, metadata: {name: m}, spec: {replica: {gpus: 1, memoryGiBPerGpu: 40}, "
        "throughput: {A100-80GB: 100}, demand: [{location: dc, rate: 800}]}}\n"
        "  cases: [{name: full, violations: 0}]\n")
    report = policytest.run(tmp_path, policies.build_rules)
    assert [c.failures for c in report.cases] == [
        ("expected 0 violation(s), got 1 (head: p: 8 of 8 GPUs used, keeps < 0.4% free)",)]


def test_two_tests_of_one_name_in_a_file_are_refused(tmp_path: Path) -> None:
    """Two PolicyTest documents named t, each with a case c, printed `PASS  t/c` and `FAIL  t/c`: no
    report told them apart, and no --run could pick one."""
    (tmp_path / "p.yaml").write_text((LIBRARY / "residency-eu.yaml").read_text())
    (tmp_path / "p.test.yaml").write_text(a_test_of("p.yaml") + "---\n" + a_test_of("p.yaml"))
    r = placer("policy", "test", "p.test.yaml", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "ERROR p.test.yaml:10: PolicyTest/t: metadata.name: duplicate PolicyTest name 't' in this file; first "
        "defined at p.test.yaml:3: give each test its own name"]


def test_retired_under_a_preferred_retire_says_the_policy_only_charges(tmp_path: Path) -> None:
    """A preferred retire charges its penalty for a model's replicas and takes nothing out of the plan;
    `retired: [m]` failed 'm: expected retired, got not retired', the policy's own verdict unsaid."""
    (tmp_path / "p.yaml").write_text(
        "apiVersion: placer.dev/v1alpha1\nkind: Policy\nmetadata: {name: ret}\nspec:\n  enforcement: preferred\n"
        "  penaltyUsdPerHour: 100\n  rule: {retire: {unusedForDays: 30}}\n")
    (tmp_path / "p.test.yaml").write_text(
        "apiVersion: placer.dev/v1alpha1\nkind: PolicyTest\nmetadata: {name: r}\nspec:\n  now: 2026-11-28\n"
        "  fleet:\n    - {kind: Model, metadata: {name: m}, spec: {workload: batch, replicas: 1, replica: {gpus: 1, "
        "memoryGiBPerGpu: 40}, "
        "lastUsed: 2026-01-01}}\n  cases: [{name: old, retired: [m]}]\n")
    report = policytest.run(tmp_path, policies.build_rules)
    assert [c.failures for c in report.cases] == [
        ("m: expected retired, got not retired (preferred policy ret charges its penalty instead: as required it "
         "would retire it (unused for 331 days (lastUsed 2026-01-01, limit 30)); check notPlaced or violations, or "
         "make it required)",)]


def test_denied_under_a_preferred_policy_says_the_policy_only_charges(tmp_path: Path) -> None:
    """`denied` under a preferred denyPools failed 'expected denied on pool p, got allowed', as if the
    policy did nothing: a preferred policy denies no pool, it charges its penalty."""
    (tmp_path / "p.yaml").write_text(
        "apiVersion: placer.dev/v1alpha1\nkind: Policy\nmetadata: {name: soft}\nspec:\n  enforcement: preferred\n"
        "  penaltyUsdPerHour: 100\n  pools: {names: [p]}\n  rule: {denyPools: {}}\n")
    (tmp_path / "p.test.yaml").write_text(
        "apiVersion: placer.dev/v1alpha1\nkind: PolicyTest\nmetadata: {name: d}\nspec:\n  fleet:\n"
        "    - {kind: Location, metadata: {name: dc}, spec: {environment: onprem}}\n"
        "    - {kind: Pool, metadata: {name: p}, spec: {location: dc, provider: static, "
        "gpu: {type: A100-80GB, perNode: 8}, nodes: {count: 1}, usdPerGpuHour: 1}}\n"
        "    - {kind: Model, metadata: {name: m}, spec: {workload: batch, replicas: 1, replica: {gpus: 1, "
        "memoryGiBPerGpu: 40}}}\n"
        "  cases: [{name: off, expect: [{model: m, denied: [p]}]}]\n")
    report = policytest.run(tmp_path, policies.build_rules)
    assert [c.failures for c in report.cases] == [
        ("m: expected denied on pool p, got allowed (preferred policy soft charges its penalty instead: as required "
         "it would deny p (p is among the pools this policy names); check placed or violations, or make it "
         "required)",)]


def test_a_model_expected_retired_and_placed_is_refused_at_its_line(tmp_path: Path) -> None:
    """`retired` takes a model out of the plan; the same case's `placed` or `allowed` for it could never pass,
    and failed as if the policy were wrong."""
    (tmp_path / "p.yaml").write_text((LIBRARY / "residency-eu.yaml").read_text())
    (tmp_path / "p.test.yaml").write_text(
        "apiVersion: placer.dev/v1alpha1\nkind: PolicyTest\nmetadata: {name: p}\nspec:\n  cases:\n"
        "    - name: both\n"
        "      retired: [m]\n"
        "      placed: {m: [fra-a100]}\n"
        "      expect: [{model: m, allowed: [fra-a100]}]\n")
    r = placer("policy", "test", "p.test.yaml", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "ERROR p.test.yaml:8: PolicyTest/p: spec.cases[0].placed.m: m is expected retired in this case too, and a "
        "retired model is placed nowhere; expect it retired or placed, not both",
        "ERROR p.test.yaml:9: PolicyTest/p: spec.cases[0].expect[0].allowed[0]: m is expected retired in this case "
        "too, and a retired model is allowed on no pool; expect it retired or allowed, not both"]


@pytest.mark.parametrize("how", denied.HOWS)
@pytest.mark.parametrize("enter", [False, True])
def test_a_test_folder_it_cannot_list_is_refused_not_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch, enter: bool,
                                                             how: str) -> None:
    """A folder of tests it cannot list (`chmod 300`) was skipped unsaid: its tests were not run,
    and the run passed, exit 0. One it can list but not enter (`chmod 600`) was Python's "[Errno 13]
    Permission denied: 'FILE'". Now the folder, why and what to do, exit 1, no test run."""
    from placer.cli import main

    shutil.copy(LIBRARY / "budget-team.test.yaml", tmp_path)
    shutil.copy(LIBRARY / "budget-team.yaml", tmp_path)
    sub = tmp_path / "team"
    sub.mkdir()
    shutil.copy(LIBRARY / "budget-team.test.yaml", sub)
    (denied.unsearchable if enter else denied.unlistable)(sub, monkeypatch, how)
    try:
        code = main(["policy", "test", str(tmp_path)])
    finally:
        denied.restore(sub)
    out, err = capsys.readouterr()
    assert code == 1 and out == "", out
    assert " ".join(err.split()) == (f"Error: cannot list the folder {sub} (permission denied) to find the policy tests "
                                     f"in it: make the folder readable by this user (`chmod u+rx {sub}` if you own it), "
                                     "then run the command again; no test was run"), err


@pytest.mark.parametrize("how", denied.HOWS)
def test_a_test_file_in_a_folder_it_cannot_enter_says_what_to_change(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """`policy test DIR/x.test.yaml` where DIR cannot be entered (`chmod 600`) was Python's "Error:
    [Errno 13] Permission denied: 'DIR/x.test.yaml'", as a folder of tests given whole was before. Now
    the file, why and what to change, exit 1, no test run."""
    from placer.cli import main

    sub = tmp_path / "team"
    sub.mkdir()
    shutil.copy(LIBRARY / "budget-team.test.yaml", sub)
    shutil.copy(LIBRARY / "budget-team.yaml", sub)
    test = sub / "budget-team.test.yaml"
    denied.unsearchable(sub, monkeypatch, how)
    # the seam refuses os.stat alone; os.access, which names the folder to change, sees none of it
    todo = (f"the folder {sub} cannot be entered; make it searchable by this user (`chmod u+x {sub}`" if how == "chmod"
            else f"make it readable by this user (`chmod u+r {test}`")
    try:
        code = main(["policy", "test", str(test)])
    finally:
        denied.restore(sub)
    out, err = capsys.readouterr()
    assert code == 1 and out == "", out
    assert " ".join(err.split()) == (f"Error: cannot read {test} (permission denied) to run the policy tests in it: "
                                     f"{todo} if you own it), then run the command again; no test was run"), err
