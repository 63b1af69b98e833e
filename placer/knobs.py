"""Numbers read from PLACER_* environment variables: the knobs that tests, benchmarks and operators
set (``PLACER_HIGHS_THREADS``, ``PLACER_RETRY_BASE_SECONDS``, ``PLACER_CUT_LEVELS``,
``PLACER_NEAR_PAIRS``), and the choice among words of ``PLACER_OPTIMIZER``. Read where they are
used, not at import: ``PLACER_HIGHS_THREADS=abc`` failed the import of the optimizer with Python's
traceback, before the CLI could say which variable was wrong."""

from __future__ import annotations

import math
import os


class KnobError(ValueError):
    """A PLACER_* variable that is set to what its knob cannot take."""


def env_number(name: str, default: float, *, whole: bool = False, least: float = 0.0) -> float:
    """``name``'s value as a number (a whole one where ``whole``) of at least ``least``; ``default``
    where it is unset or empty. Raises KnobError naming the variable, its value and what it takes."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(int(text)) if whole else float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < least:
        kind = "a whole number" if whole else "a number"
        shown = f"{least:g}"
        raise KnobError(f"the environment variable {name} is {text!r}, not {kind} of {shown} or more: set it to one, "
                        f"or unset it ({default:g} by default)")
    return value


def env_choice(name: str, choices: tuple[str, ...], unset: str) -> str | None:
    """``name``'s value (any case) where it is one of ``choices``; None where it is unset or empty
    (``unset`` says what that means). Raises KnobError naming the variable, its value and the choices:
    ``PLACER_OPTIMIZER=scaleable`` was taken as unset without a word."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    if text.lower() not in choices:
        raise KnobError(f"the environment variable {name} is {text!r}, not one of {', '.join(choices)}: "
                        f"set it to one, or unset it ({unset})")
    return text.lower()
