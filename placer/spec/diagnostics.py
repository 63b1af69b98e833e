"""Diagnostics: located problems in fleet files, collected rather than raised one at a time.

Every problem renders as ``path:line: Kind/name: field: message`` (SPEC section 4); parts
that do not apply (a YAML syntax error has no kind) are left out rather than invented.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


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
        parts = [f"{self.path}:{self.line}"]
        if self.kind or self.name:
            parts.append(f"{self.kind or '?'}/{self.name or '?'}")
        if self.field:
            parts.append(self.field)
        prefix = "warning: " if self.severity == "warning" else ""
        parts.append(prefix + self.message)
        return ": ".join(parts)


class FleetError(Exception):
    """The fleet has errors; carries every diagnostic found (errors and warnings)."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=_order)
        errors = [d for d in self.diagnostics if d.severity == "error"]
        super().__init__(f"{len(errors)} error(s) in fleet")

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


def _order(d: Diagnostic) -> tuple[str, int, str]:
    return (d.path, d.line, d.message)


def sort_diagnostics(diags: Iterable[Diagnostic]) -> list[Diagnostic]:
    return sorted(diags, key=_order)
