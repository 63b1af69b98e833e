"""Explain infeasibility: a small set of required policies and model minimums that conflict.

A deletion filter over constraint groups (each required policy, each model's
minReplicas): drop a group, re-check feasibility; keep it only if dropping it makes the
rest feasible. What remains is irreducible: every group in it is needed for the conflict.
"""

from __future__ import annotations

from dataclasses import dataclass

from ortools.linear_solver import pywraplp

from placer.candidates import find_candidates
from placer.fleet import Fleet
from placer.optimizer.model import MipBuilder
from placer.optimizer.solve import configure, solve_quietly
from placer.policy import Rules


@dataclass(frozen=True)
class Conflict:
    policies: tuple[str, ...]
    models: tuple[str, ...]  # models whose minReplicas take part
    checks: int

    def describe(self) -> str:
        parts = []
        if self.policies:
            parts.append("required policies " + ", ".join(self.policies))
        if self.models:
            parts.append("minReplicas of " + ", ".join(self.models))
        return " and ".join(parts) if parts else "the fixed pool minimums"


def groups(fleet: Fleet) -> list[str]:
    out = [f"policy:{p.name}" for p in fleet.policies if p.required]
    out += [f"model:{m.name}:minReplicas" for m in fleet.models.values() if m.inference and m.spec.min_replicas]
    return out


def feasible(fleet: Fleet, rules: Rules, active: set[str], time_limit: float = 10.0) -> bool:
    cands = find_candidates(fleet, rules, active)
    mip = MipBuilder(fleet, cands, {}, active=active, with_objective=False).build(rules)
    params = configure(mip.solver, fleet, time_limit)
    status = solve_quietly(mip.solver, params)
    return status in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE)


def explain_infeasible(fleet: Fleet, rules: Rules) -> Conflict:
    """A minimal set of conflicting groups (assumes the whole set is infeasible)."""
    keep = groups(fleet)
    checks = 0
    for group in list(keep):
        trial = set(keep) - {group}
        checks += 1
        if not feasible(fleet, rules, trial):
            keep.remove(group)
    policies = tuple(g.split(":", 1)[1] for g in keep if g.startswith("policy:"))
    models = tuple(g.split(":")[1] for g in keep if g.startswith("model:"))
    return Conflict(policies, models, checks)
