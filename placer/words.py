"""Lists of names in messages: the first few, then how many more (one way for every message)."""

from __future__ import annotations

from collections.abc import Sequence


def names(items: Sequence[str], limit: int, sep: str = ", ") -> str:
    """``items`` joined by ``sep``, the first ``limit`` of them and then how many more."""
    if len(items) <= limit:
        return sep.join(items)
    return f"{sep.join(items[:limit])} and {len(items) - limit} more"
