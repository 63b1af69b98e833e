"""Diagnostics: located problems in fleet files, collected rather than raised one at a time.

Every problem renders as ``path:line: Kind/name: field: message`` (SPEC section 4); parts
that do not apply (a YAML syntax error has no kind) are left out rather than invented.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]
MOST_NAME = 100  # characters of a kind, name or field a diagnostic prints (names are at most 63)
# characters of a message: the longest placer writes (a conflict of minReplicas on shared pools, its
# policies, models, numbers and what to do), with room for a value quoted in it
MOST_MESSAGE = 600
MOST_PER_FILE = 50  # diagnostics printed of one file; the rest are counted in one line


@dataclass(frozen=True, order=True)
class Diagnostic:
    path: str
    line: int
    message: str
    kind: str = ""
    name: str = ""
    field: str = ""
    severity: Severity = "error"

    def __str__(self) -> str:
        parts = [f"{_visible(self.path)}:{self.line}"]
        if self.kind or self.name:
            parts.append(f"{_visible(clipped(self.kind, MOST_NAME)) or '?'}/{_visible(clipped(self.name, MOST_NAME)) or '?'}")
        if self.field:
            parts.append(_visible(clipped(self.field, MOST_NAME)))
        prefix = "warning: " if self.severity == "warning" else ""
        message = clipped(self.message, MOST_MESSAGE)
        parts.append(prefix + "".join(c if c.isprintable() else repr(c)[1:-1] for c in message))
        return ": ".join(parts)


def clipped(text: str, most: int) -> str:
    """``text``, or where it is longer than ``most`` its start and end around how much was cut: a
    name, key or number of 100,000 characters, echoed whole, made a diagnostic one line of 100 KB,
    and the message's own words (what to fix, at its end) were lost in it."""
    if len(text) <= most:
        return text
    keep = (most - 30) // 2
    return f"{text[:keep]}...({len(text) - 2 * keep:,} characters)...{text[-keep:]}"


def _visible(text: str) -> str:
    """A file name, document name or field as a diagnostic prints it: quoted where it holds a control
    character (the diagnostic that refused a name's escape code, or a file named with a line break,
    printed it as it was: the code reached the terminal, and the line break forged a diagnostic line)."""
    return text if text.isprintable() else repr(text)


class FleetError(Exception):
    """The fleet has errors; carries every diagnostic found (errors and warnings), sorted
    (``found``), and those to print (``diagnostics``: at most MOST_PER_FILE of a file)."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.found = sorted(diagnostics, key=_order)
        self.diagnostics = capped_per_file(self.found)
        super().__init__(f"{len(self.errors)} error(s) in fleet")

    @property
    def errors(self) -> list[Diagnostic]:
        """Every error found, those not printed too."""
        return [d for d in self.found if d.severity == "error"]


def capped_per_file(diags: list[Diagnostic], most: int = MOST_PER_FILE) -> list[Diagnostic]:
    """The first ``most`` of each file's diagnostics (in their order), then one saying how many more: a
    file of 200,000 duplicate keys printed 200,000 lines, the first problems scrolled out of sight."""
    out: list[Diagnostic] = []
    by_path: dict[str, list[Diagnostic]] = {}
    for d in diags:
        by_path.setdefault(d.path, []).append(d)
    for path, found in by_path.items():
        out += found[:most]
        rest = found[most:]
        if rest:
            severity: Severity = "error" if any(d.severity == "error" for d in rest) else "warning"
            out.append(Diagnostic(path, rest[0].line, f"... and {len(rest):,} more problems in this file from this "
                                  "line on, not shown; fix those above and run again", severity=severity))
    return out


def _order(d: Diagnostic) -> tuple[str, int, str]:
    return (d.path, d.line, d.message)


def sort_diagnostics(diags: Iterable[Diagnostic]) -> list[Diagnostic]:
    return sorted(diags, key=_order)
