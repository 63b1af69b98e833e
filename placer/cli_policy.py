"""``placer policy``: commands about policy files. ``placer policy test DIR`` runs policy tests.

Registered on the main group by ``placer.cli`` (``cli.add_command(policy)``); the console
and error helpers come from ``placer.cli`` inside the command bodies, to avoid an import cycle.
"""

from __future__ import annotations

import re
from typing import Any

import click


@click.group()
def policy() -> None:
    """Work with policy files: test them against small fleets."""


@policy.command("test")
@click.argument("path", type=click.Path())
@click.option("--run", "pattern", metavar="REGEX",
              help="Run only the cases whose '<test name>/<case name>' matches this regular expression.")
@click.option("-v", "--verbose", is_flag=True, help="Show the time each case took.")
def test(path: str, pattern: str | None, verbose: bool) -> None:
    """Run every policy test case under PATH (a directory or one *.test.yaml file).

    Prints PASS or FAIL per case, with the reason for each failure, then "N passed, M failed".
    Exit 0 when every case passes, 1 otherwise (also for test files that cannot be read).
    """
    from placer.cli import err, fail, out, rules_for
    from placer.policytest import NoTestsError, run
    from placer.spec.diagnostics import capped_per_file

    if pattern:
        try:
            re.compile(pattern)
        except re.error as exc:
            fail(f"--run {pattern!r} is not a regular expression: {exc}")
    try:
        report = run(path, rules_for, pattern)
    except NoTestsError as exc:
        fail(str(exc))

    for diag in capped_per_file(report.file_errors):  # a test file of 100,000 problems: 50 of them, and a count
        err.print(f"ERROR {diag}", style="red", markup=False)
    current = None
    for case in report.cases:
        if case.path != current:
            current = case.path
            out.print(f"{case.path}", style="bold", markup=False)
        took = f" ({case.seconds * 1000:.0f} ms)" if verbose else ""
        if case.passed:
            out.print(f"  PASS  {case.test}/{case.name}{took}", style="green", markup=False)
        else:
            out.print(f"  FAIL  {case.test}/{case.name}{took}  ({case.path}:{case.line})", style="red",
                      markup=False)
        for line in [*case.errors, *case.failures]:
            out.print(f"        {line}", markup=False)
    summary: list[Any] = [f"{report.passed} passed, {report.failed} failed"]
    if report.file_errors:
        files = {d.path for d in report.file_errors}
        summary.append(f"{len(files)} test file(s) with errors")
    if pattern and not report.cases and not report.file_errors:
        summary.append(f"no case matches --run {pattern!r}")
    out.print("-" * 60)
    out.print(", ".join(summary), style="bold" if report.ok else "bold red", markup=False)
    if not report.ok:
        raise SystemExit(1)
