"""Did-you-mean for names given on the command line."""

from __future__ import annotations

from collections.abc import Iterable

from placer.spec.loader import suggest


def suggest_name(name: str, known: Iterable[str]) -> str:
    return suggest(name, list(known))
