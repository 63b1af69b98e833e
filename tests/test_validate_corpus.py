"""`placer validate` over a corpus of broken and valid fleets.

Every directory under tests/data/broken/ is one broken fleet: its YAML files (most copy
tests/data/valid/base/fleet.yaml as base.yaml and add a broken.yaml) and ``expected.txt``,
the exact stderr lines `placer validate tests/data/broken/<case>` must print, run from the
repository root, before the final count line. A case whose ``xfail.txt`` exists describes a
known bug in placer: expected.txt holds what placer *should* print, and the test is a strict
xfail until the bug is fixed (then delete xfail.txt).

Directories under tests/data/valid/ must validate (exit 0); their expected.txt lists the
warnings printed to stderr.

The CLI runs in-process (``placer.cli.main``) for speed: its rich consoles look up
sys.stdout / sys.stderr at print time, so capsys captures them. A few cases also run as a
real subprocess, to check the console script end to end.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from placer.cli import main
from placer.fleet import load_fleet

REPO = Path(__file__).resolve().parent.parent
BROKEN = REPO / "tests" / "data" / "broken"
VALID = REPO / "tests" / "data" / "valid"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
COUNT_LINE = re.compile(r"^\d+ errors? in the fleet; nothing was planned or changed\.$")


def _cases(root: Path) -> list[object]:
    params: list[object] = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        marks = []
        xfail = d / "xfail.txt"
        if xfail.exists():
            marks.append(pytest.mark.xfail(reason=xfail.read_text().strip(), strict=True))
        params.append(pytest.param(d.name, marks=marks, id=d.name))
    return params


def _expected(case_dir: Path) -> list[str]:
    path = case_dir / "expected.txt"
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def _lines(text: str) -> list[str]:
    return ANSI.sub("", text).splitlines()


def run_validate(path: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
                 ) -> tuple[int, list[str], list[str]]:
    """`placer validate PATH` in-process, from the repository root: (exit code, stdout, stderr)."""
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("NO_COLOR", "1")
    capsys.readouterr()
    code = main(["validate", path])
    captured = capsys.readouterr()
    return code, _lines(captured.out), _lines(captured.err)


def test_corpus_is_big_enough() -> None:
    cases = [p for p in BROKEN.iterdir() if p.is_dir()]
    assert len(cases) >= 35
    for case in cases:
        assert (case / "expected.txt").exists(), f"{case.name} has no expected.txt"
        assert _expected(case), f"{case.name}: expected.txt is empty"


@pytest.mark.parametrize("case", _cases(BROKEN))
def test_broken_fleet(case: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_validate(f"tests/data/broken/{case}", capsys, monkeypatch)
    text = "\n".join(out + err)
    assert "Traceback" not in text
    assert "internal error" not in text
    assert code == 1, f"exit {code}; stderr:\n" + "\n".join(err)
    assert err, "nothing on stderr"
    assert COUNT_LINE.match(err[-1]), f"last stderr line is not the count line: {err[-1]!r}"
    assert err[:-1] == _expected(BROKEN / case)
    n_errors = sum(1 for line in err[:-1] if ": warning: " not in line)
    assert err[-1].startswith(f"{n_errors} error")
    assert not out, "a failed validate prints nothing on stdout"


@pytest.mark.parametrize("case", _cases(VALID))
def test_valid_fleet(case: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    path = f"tests/data/valid/{case}"
    code, out, err = run_validate(path, capsys, monkeypatch)
    assert code == 0, "\n".join(err)
    assert err == _expected(VALID / case)
    assert all(": warning: " in line for line in err)
    assert len(out) == 1 and out[0].startswith(f"{path}: valid (")
    if err:
        assert out[0].endswith(f", {len(err)} warning(s))")


def test_every_problem_of_a_fleet_is_reported_in_one_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run_validate("tests/data/broken/multi-error", capsys, monkeypatch)
    assert code == 1
    files = {line.split(":", 1)[0] for line in err[:-1]}
    assert len(err) - 1 >= 3 and len(files) == 3
    assert err[-1] == f"{len(err) - 1} errors in the fleet; nothing was planned or changed."


def test_fleet_that_does_not_exist(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_validate("tests/data/broken/no-such-case", capsys, monkeypatch)
    assert code == 1
    assert err[0] == "tests/data/broken/no-such-case:0: no such file or directory"


def test_a_single_file_can_be_validated(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    code, _, err = run_validate("tests/data/broken/link-to-itself/broken.yaml", capsys, monkeypatch)
    assert code == 1
    # Alone, the link's locations are unknown too: the shape error still comes first and alone
    # (a document that fails its shape is not checked for references).
    assert err[:-1] == _expected(BROKEN / "link-to-itself")


@pytest.mark.parametrize("case", ["min-replicas-share-a-pool"])
def test_a_fleet_refused_for_minimums_on_shared_pools_has_no_plan(
    case: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """validate's check of minReplicas on shared pools is a relaxation of the plan: a fleet it refuses
    has no plan, and plan names the same models and policies after its solver's search."""
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("NO_COLOR", "1")
    capsys.readouterr()
    code = main(["plan", f"tests/data/broken/{case}", "--state", str(tmp_path / "state.json"),
                 "-o", str(tmp_path / "plan.json")])
    err = " ".join(_lines(capsys.readouterr().err))
    assert code == 1 and not (tmp_path / "plan.json").exists()
    assert re.search(r"no placement on the fleet's pools satisfies required policies pinned-to-dc1 \(.*\), "
                     r"keep-a-quarter-free \(.*\) and minReplicas of embed \(.*\), rerank \(.*\) together", err), err


def test_policy_with_a_warning_is_still_enforced() -> None:
    fleet = load_fleet(VALID / "selector-unknown-names")
    assert [p.name for p in fleet.policies] == ["on-prem-only"]


# ---------------------------------------------------------------- the real console script


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("tests/data/broken/multi-error", 1),
        ("tests/data/broken/empty-directory", 1),
        ("tests/data/valid/warning-model-no-pool", 0),
    ],
)
def test_subprocess_matches_in_process(path: str, code: int) -> None:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="80")
    env.pop("FORCE_COLOR", None)
    proc = subprocess.run([sys.executable, "-m", "placer", "validate", path], cwd=REPO, capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.returncode == code, proc.stderr
    err = _lines(proc.stderr)
    expected = _expected(REPO / path)
    if code:
        assert err[:-1] == expected
        assert COUNT_LINE.match(err[-1])
    else:
        # Long lines must not be wrapped at the terminal width.
        assert err == expected
