"""Explain infeasibility: a small set of required policies and model minimums that conflict.

The groups are each required policy and each inference model's minReplicas. Two steps:

1. by arithmetic, model by model: a model whose minReplicas exceeds the replicas every pool its
   required policies leave it could ever hold (whole capacity, headroom and other models
   aside) conflicts with those policies alone; the policies whose exclusions it needs are
   kept by a deletion filter over that sum. No solver runs, so a fleet of any size answers at
   once in this, the common case.
2. otherwise, QuickXplain (Junker, 2004) over every group, each check a feasibility MIP of the
   fleet with some groups dropped: about 2k log(n/k) checks for a conflict of k of n groups,
   against n for a deletion filter (at M, 267 groups: 14 checks, 29 s, where the deletion
   filter took 963 s; at L, 1,058 groups: 16 checks, 398 s). A check the solver
   does not settle in its time counts as feasible (infeasibility unproven), so the answer may
   hold more groups than it needs; it is checked once more at the end, and when that is not
   proven infeasible, every group is the answer (``minimal`` False).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from ortools.linear_solver import pywraplp

from placer.candidates import exclusion, find_candidates, required_of, retirement
from placer.fleet import Fleet, Model, Policy
from placer.optimizer.model import MipBuilder
from placer.optimizer.solve import configure, solve_quietly
from placer.policy import Rules

CHECK_SECONDS = 10.0  # a feasibility check's time limit


@dataclass(frozen=True)
class Conflict:
    policies: tuple[str, ...]
    models: tuple[str, ...]  # models whose minReplicas take part
    checks: int  # feasibility MIPs solved
    minimal: bool = True  # False: some check did not settle in time, and the set may hold more than it needs
    capacity: tuple[int, int] | None = None  # step 1's answer: (replicas the pools could hold, minReplicas)

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


def touched(fleet: Fleet, rules: Rules, active: Collection[str]) -> Fleet:
    """The fleet with only the models the ``active`` groups touch (an active policy selects it,
    or its minReplicas is active) and do not retire. It has a plan exactly when the whole fleet
    has one: every other model may go unplaced (its demand unmet, its training replicas
    unplaced), which no row it is in forbids, and a retired model is in no row. A check of a
    narrow set is then a MIP over a few models: at L, the last checks (a pin and two minimums)
    took under 0.1 s, against 27-30 s for the checks with a policy over every model."""
    names = {g.split(":")[1] for g in active if g.startswith("model:")}
    for policy in fleet.policies:
        if f"policy:{policy.name}" in active:
            names |= {m.name for m in fleet.models_of(policy.spec.models)}
    keep = {n: m for n, m in fleet.models.items()
            if n in names and not retirement(fleet, rules, m, required_of(fleet, m, active))}
    return dataclasses.replace(fleet, models=keep)


def feasible(fleet: Fleet, rules: Rules, active: set[str], time_limit: float = CHECK_SECONDS) -> bool:
    """Whether the fleet has a plan with only the ``active`` groups: False only when the solver
    proves it has none; a check that runs out of time counts as feasible."""
    fleet = touched(fleet, rules, active)
    cands = find_candidates(fleet, rules, active)
    mip = MipBuilder(fleet, cands, {}, active=active, with_objective=False).build(rules)
    params = configure(mip.solver, fleet, time_limit)
    if getattr(mip.solver, "placer_kind", "") == "HIGHS":
        # HiGHS' MIP presolve checks no time limit in its dual fixing: at L one check's presolve
        # ran past 6 minutes (10 s asked). Without it the search keeps to the limit.
        mip.solver.SetSolverSpecificParametersAsString("presolve=off\n")
    status = solve_quietly(mip.solver, params)
    return bool(status != pywraplp.Solver.INFEASIBLE)


def most_replicas(fleet: Fleet, rules: Rules, model: Model, policies: Collection[Policy]) -> int:
    """The replicas of ``model`` the pools ``policies`` (required, selecting it) and the fit rules
    leave it could hold at most: each pool's whole capacity, its maxReplicas at most."""
    total = 0
    for pool in fleet.pools.values():
        if exclusion(fleet, rules, model, pool, policies) is None:
            total += pool.max_gpus // max(1, pool.gpus_per_replica(model.spec.replica.gpus))
    cap = model.spec.max_replicas
    return total if cap is None else min(total, cap)


def _by_capacity(fleet: Fleet, rules: Rules) -> Conflict | None:
    """Step 1 of the module docstring: the first model whose minReplicas no allowed pools hold."""
    for model in fleet.models.values():
        need = model.spec.min_replicas if model.inference else None
        if not need:
            continue
        policies = required_of(fleet, model)
        if retirement(fleet, rules, model, policies):
            continue  # a retired model needs no replicas
        if most_replicas(fleet, rules, model, policies) >= need:
            continue
        keep = list(policies)
        for policy in list(keep):
            trial = [p for p in keep if p is not policy]
            if most_replicas(fleet, rules, model, trial) < need:
                keep = trial
        return Conflict(tuple(p.name for p in keep), (model.name,), 0,
                        capacity=(most_replicas(fleet, rules, model, keep), need))
    return None


def quickxplain(items: Sequence[str], infeasible: Callable[[set[str]], bool]) -> list[str]:
    """A minimal subset of ``items`` that ``infeasible`` (of a set of items) holds for, given that
    it holds for all of them (Junker's QuickXplain, with nothing in the background)."""

    def qx(background: set[str], added: bool, candidates: list[str]) -> list[str]:
        if added and infeasible(background):
            return []
        if len(candidates) == 1:
            return candidates
        half = len(candidates) // 2
        first, second = candidates[:half], candidates[half:]
        right = qx(background | set(first), True, second)
        left = qx(background | set(right), bool(right), first)
        return left + right

    return qx(set(), False, list(items)) if items else []


def explain_infeasible(fleet: Fleet, rules: Rules, progress: Callable[[str], None] | None = None) -> Conflict:
    """A small set of conflicting groups (the whole set must be infeasible); see the module
    docstring. ``progress``: told each check."""
    found = _by_capacity(fleet, rules)
    if found is not None:
        return found
    every = groups(fleet)
    checks = [0]

    def infeasible(active: set[str]) -> bool:
        checks[0] += 1
        if progress:
            progress(f"conflict check {checks[0]}: {len(active)} of {len(every)} policies and minimums")
        return not feasible(fleet, rules, active)

    keep = quickxplain(every, infeasible)
    minimal = infeasible(set(keep))
    if not minimal:
        keep = every
    policies = tuple(g.split(":", 1)[1] for g in keep if g.startswith("policy:"))
    models = tuple(g.split(":")[1] for g in keep if g.startswith("model:"))
    return Conflict(policies, models, checks[0], minimal)
