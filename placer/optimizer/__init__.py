"""The placement optimizer: a MIP on OR-Tools (HiGHS), its solve, and conflict explanation."""

from placer.optimizer.conflicts import Conflict, explain_infeasible
from placer.optimizer.solve import SolveResult, optimize

__all__ = ["Conflict", "SolveResult", "explain_infeasible", "optimize"]
