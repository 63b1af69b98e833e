"""The placement optimizer: a MIP on OR-Tools (HiGHS), its solve, and conflict explanation.

``optimize`` and ``SolveResult`` are loaded on first use: ``solve`` imports OR-Tools and the solver
stack, which ``placer validate`` (it reads ``optimizer.arrays`` and the conflict checks, and so ran
this file) paid for and never used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from placer.optimizer.conflicts import Conflict, explain_infeasible

if TYPE_CHECKING:
    from placer.optimizer.solve import SolveResult, optimize

__all__ = ["Conflict", "SolveResult", "explain_infeasible", "optimize"]

_IN_SOLVE = ("SolveResult", "optimize")


def __getattr__(name: str) -> object:  # object, not Any: a misspelt name used is a type error
    if name not in _IN_SOLVE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module("placer.optimizer.solve"), name)
    globals()[name] = value
    return value
