"""Solve the placement MIP and read the answer back as a Placement with bound and gap."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ortools.linear_solver import pywraplp

from placer.candidates import Candidates, find_candidates, stranded_minimum
from placer.cost import price
from placer.fleet import Fleet
from placer.optimizer.model import MipBuilder, MipModel
from placer.optimizer.quiet import quiet_stdout
from placer.optimizer.scale import forced_route, use_large
from placer.placement import Placement, Route
from placer.policy import Rules

STATUS_NAMES = {
    pywraplp.Solver.OPTIMAL: "OPTIMAL",
    pywraplp.Solver.FEASIBLE: "FEASIBLE",
    pywraplp.Solver.INFEASIBLE: "INFEASIBLE",
    pywraplp.Solver.UNBOUNDED: "UNBOUNDED",
    pywraplp.Solver.ABNORMAL: "ABNORMAL",
    pywraplp.Solver.NOT_SOLVED: "UNKNOWN",
}


def relative_gap(objective: float, bound: float) -> float:
    """How far a plan's ``objective`` may be above the optimum, as a share of it: to |objective| or
    1 USD/h, whichever is more, as the scalable route's stop measures it (large.py). To |objective|
    alone, a plan of 0 USD/h (nothing to serve) proven to HiGHS' absolute 1e-6 was shown OPTIMAL,
    gap 100000.00%. No finite bound: inf."""
    if not math.isfinite(bound):
        return math.inf
    return max(0.0, objective - bound) / max(abs(objective), 1.0)


@dataclass(frozen=True)
class SolveResult:
    status: str
    placement: Placement | None
    objective: float
    bound: float
    wall_seconds: float
    terms: Mapping[str, float] = field(default_factory=dict)
    candidates: Candidates | None = None
    # what a reader of the gap should know: how the bound was found, where it is weak ("": nothing)
    note: str = ""
    # the scalable route's short re-plan around what runs (``large.REPLAN_NOTE``), not a search of
    # the whole fleet: applied, the state's history counts it towards solver.fullSearchEvery
    replan: bool = False

    def __post_init__(self) -> None:
        # every term of the objective is >= 0, so no plan costs less than 0: a stop's bound below it (HiGHS'
        # absolute 1e-6 under a plan of 0 USD/h) proves nothing more, and read "bound -0.00" in the summary
        if math.isfinite(self.bound) and self.bound < 0.0:
            object.__setattr__(self, "bound", 0.0)

    @property
    def gap(self) -> float:
        return relative_gap(self.objective, self.bound) if self.placement is not None else math.inf

    @property
    def feasible(self) -> bool:
        return self.placement is not None


def solve_quietly(solver: pywraplp.Solver, params: pywraplp.MPSolverParameters) -> int:
    if solver.NumVariables() == 0:
        # no pair, no elastic pool: every row a rule added is a constant, which holds or not; HiGHS
        # answers such a model with no status (99), as if it had run out of time
        held = all(row.lb() <= 1e-9 and row.ub() >= -1e-9 for row in solver.constraints())
        return int(pywraplp.Solver.OPTIMAL if held else pywraplp.Solver.INFEASIBLE)
    with quiet_stdout():
        return int(solver.Solve(params))


HIGHS_ABS_GAP = 1e-6  # HiGHS' mip_abs_gap, left at its default: it also stops within this of its bound


def proven_bound(solver: pywraplp.Solver, status: int, relative_gap: float) -> float:
    """What the solved model's objective is proven no lower than. OR-Tools' HiGHS interface reports
    its plan's objective as the best bound once HiGHS stops within the gap, not HiGHS' own bound:
    what the stop proves is the objective less the gap (HiGHS' gap is to |objective|). Taken as
    the bound, a plan 0.08% above the optimum (20 models x 10 pools) reported that dearer plan as
    the bound, and a gap of 0."""
    if solver.NumVariables() == 0:
        return 0.0
    value = float(solver.Objective().Value())
    best = float(solver.Objective().BestBound())
    if status == pywraplp.Solver.OPTIMAL and getattr(solver, "placer_kind", "") == "HIGHS":
        best = min(best, value - max(relative_gap * abs(value), HIGHS_ABS_GAP))
    return best


def available_cores() -> int:
    """The cores this process may use (its CPU affinity, where the OS tells it): the default for
    Settings' solver.workers."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def configure(solver: pywraplp.Solver, fleet: Fleet, time_limit: float | None = None) -> pywraplp.MPSolverParameters:
    cfg = fleet.settings.solver
    solver.SuppressOutput()
    solver.SetTimeLimit(int(1000 * (time_limit if time_limit is not None else cfg.time_limit_seconds)))
    workers = cfg.workers or available_cores()
    if getattr(solver, "placer_kind", "") != "HIGHS":
        # HiGHS' branch and bound is serial; setting its thread count only prints a banner on stdout.
        solver.SetNumThreads(workers)
    params = pywraplp.MPSolverParameters()
    params.SetDoubleParam(pywraplp.MPSolverParameters.RELATIVE_MIP_GAP, cfg.relative_gap)
    if getattr(solver, "placer_kind", "") == "HIGHS":
        # OR-Tools' HiGHS interface ignores RELATIVE_MIP_GAP; HiGHS' own option takes effect
        # (the call reports False all the same).
        solver.SetSolverSpecificParametersAsString(f"mip_rel_gap={cfg.relative_gap}\n")
    return params


def read_placement(fleet: Fleet, cands: Candidates, mip: MipModel,
                   value: Callable[[Any], float] | None = None) -> Placement:
    """The placement in a solved model; ``value`` reads a variable's value (default: the wrapper's
    own solution)."""
    val = value or (lambda var: float(var.solution_value()))
    replicas = {key: round(val(v)) for key, v in mip.x.items() if round(val(v)) > 0}
    nodes = {p.name: (round(val(mip.n[p.name])) if p.name in mip.n else p.min_nodes)
             for p in fleet.pools.values()}
    routes = []
    for (model, i, pool), y in sorted(mip.y.items()):
        rate = val(y)
        if rate > 1e-7:
            dem = fleet.models[model].spec.demand[i]
            lat = next(o.latency_ms for o in cands.routes[(model, i)] if o.pool == pool)
            routes.append(Route(model, dem.location, pool, rate, lat))
    return Placement(replicas=replicas, nodes=nodes, routes=tuple(routes), retired=frozenset(cands.retired))


def optimize(
    fleet: Fleet,
    rules: Rules,
    current: Mapping[tuple[str, str], int] | None = None,
    progress: Callable[[str], None] | None = None,
    time_limit: float | None = None,
    forbid: frozenset[tuple[str, str]] = frozenset(),
    whole: bool = False,
    placed: Mapping[tuple[str, str], int] | None = None,
) -> SolveResult:
    """Place every model of ``fleet`` at least cost (SPEC section 2).

    ``forbid`` keeps the given (model, pool) pairs empty (for ``explain``'s next-best pool).
    ``whole``: the scalable route searches the whole fleet in the whole time even where what runs
    (``current``) would make it a short re-plan around it; the exact MIP always does. ``placed``:
    where replicas run now, where that differs from ``current`` (a rollout's, which churn counts as
    started anew): the scalable route re-plans around them and starts from them.
    Fleets beyond ``placer.optimizer.scale.SMALL_FLEET`` (models x pools) take the scalable
    route (``placer.optimizer.large``); smaller ones this exact MIP.
    """
    started = time.monotonic()
    if use_large(fleet):
        # scipy, highspy: 0.5 s the first time, counted in the time limit, which counts from this call
        from placer.optimizer.large import optimize_large

        limit = time_limit if time_limit is not None else fleet.settings.solver.time_limit_seconds
        rest = max(0.1 * limit, limit - (time.monotonic() - started))
        large = optimize_large(fleet, rules, current, progress, rest, forbid, whole, placed)
        return _proven(fleet, rules, large.as_solve_result(), forbid, progress)
    say = progress or (lambda _msg: None)
    current = current or {}
    say("finding eligible pools")
    cands = find_candidates(fleet, rules)
    if stranded_minimum(fleet, cands.retired, lambda m: len(cands.pools_of(m))) is not None:
        return SolveResult("INFEASIBLE", None, math.inf, -math.inf, time.monotonic() - started, {}, cands)
    say(f"building model: {len(cands.pairs)} eligible (model, pool) pairs")
    builder = MipBuilder(fleet, cands, current)
    mip = builder.build(rules)
    for key in forbid:
        if key in mip.x:
            mip.x[key].SetUb(0)
    params = configure(mip.solver, fleet, time_limit)
    say(f"solving: {mip.solver.NumVariables()} variables, {mip.solver.NumConstraints()} constraints")
    status = solve_quietly(mip.solver, params)
    wall = time.monotonic() - started
    name = STATUS_NAMES.get(status, "UNKNOWN")
    stopped = status not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE, pywraplp.Solver.INFEASIBLE,
                             pywraplp.Solver.UNBOUNDED, pywraplp.Solver.MODEL_INVALID)
    if stopped and forced_route() is None:
        # HiGHS through pywraplp hands back no incumbent when it stops at the time limit (status
        # 99 or NOT_SOLVED, though HiGHS held a plan): take the scalable route, which always keeps a plan,
        # for the time that is left (at least a tenth of the limit)
        limit = time_limit if time_limit is not None else fleet.settings.solver.time_limit_seconds
        say("the exact MIP found no plan in time; planning by the scalable route")
        from placer.optimizer.large import optimize_large

        rest = max(0.1 * limit, limit - (time.monotonic() - started))
        fallback = optimize_large(fleet, rules, current, progress, rest, forbid, whole, placed).as_solve_result()
        return _proven(fleet, rules, replace(fallback, wall_seconds=time.monotonic() - started,
                                             candidates=fallback.candidates or cands), forbid, progress)
    if status not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        return _proven(fleet, rules, SolveResult(name, None, math.inf, -math.inf, wall, {}, cands), forbid, progress)
    objective, terms, placement = _answer(fleet, rules, cands, mip, current)
    bound = min(proven_bound(mip.solver, status, fleet.settings.solver.relative_gap) - _tie(mip) + mip.unserved_usd,
                objective)
    limit = time_limit if time_limit is not None else fleet.settings.solver.time_limit_seconds
    solved = _solved(mip)
    kept = _kept(fleet, rules, cands, mip, current, placement, forbid, limit - (time.monotonic() - started))
    if kept is not None and kept[0] <= solved + 1e-9:  # the tie break's too: fewer replicas at one cost
        say("keeping what runs: the plan the solver stopped at costs more")
        objective, terms, placement = kept[1]
        bound = min(bound, objective)
    return SolveResult(name, placement, objective, bound, time.monotonic() - started, terms, cands)


def _proven(fleet: Fleet, rules: Rules, result: SolveResult, forbid: frozenset[tuple[str, str]],
            progress: Callable[[str], None] | None) -> SolveResult:
    """``result`` INFEASIBLE where the search stopped with no plan and no proof (a re-plan at M from an
    applied state with a pool's nodes set to 0: its LP did not finish a round in the time) but the
    fleet has no plan, as the conflict search's own check proves (``conflicts.feasible``: its LP,
    then its MIP, 10 s at most), so that plan, explain and whatif name the conflict; they said
    "raise Settings solver.timeLimitSeconds", which no time would have mended. A plan asked with
    ``forbid`` (explain's next best) is left as it is: the fleet without it may have a plan."""
    if result.placement is not None or result.status == "INFEASIBLE" or forbid:
        return result
    from placer.optimizer.conflicts import feasible, groups

    if progress:
        progress("no plan in time: checking whether the fleet has one at all")
    return result if feasible(fleet, rules, set(groups(fleet))) else replace(result, status="INFEASIBLE")


def _tie(mip: MipModel) -> float:
    return float(sum(c * v.solution_value() for c, v in mip.tie_break))


def _solved(mip: MipModel) -> float:
    """The solver's own objective: the plan's with the tie break, without the demand no pool serves."""
    return float(mip.solver.Objective().Value()) if mip.solver.NumVariables() else 0.0


def _answer(fleet: Fleet, rules: Rules, cands: Candidates, mip: MipModel,
            current: Mapping[tuple[str, str], int]) -> tuple[float, dict[str, float], Placement]:
    """The solved model's placement, its objective and terms as the cost function prices it (without
    the tie break, with the demand no pool could serve). Not the model's own values: HiGHS stops
    within solver.relativeGap at a plan whose slacks may sit above what it breaks (a headroom slack
    of 3 GPUs where the plan kept all but 1: 1 USD/h more than the plan costs)."""
    placement = read_placement(fleet, cands, mip)
    cost = price(fleet, placement, rules, current)
    terms = {"compute": cost.compute, "egress": cost.egress, "latency": cost.latency, "unmet": cost.unmet,
             "churn": cost.churn, "penalty": cost.penalty}
    return cost.objective, terms, placement


def _kept(fleet: Fleet, rules: Rules, cands: Candidates, mip: MipModel, current: Mapping[tuple[str, str], int],
          plan: Placement, forbid: frozenset[tuple[str, str]],
          time_left: float) -> tuple[float, tuple[float, dict[str, float], Placement]] | None:
    """What runs kept as it is, nodes and routes planned around it, where the plan moves replicas
    (HiGHS stops within solver.relativeGap of its bound, at a plan that may cost more than keeping
    what runs, churn priced): the solver's objective of it and its answer. None where what runs
    cannot be kept (a pair no longer eligible or forbidden, a rule it breaks) or no answer came."""
    running = {k: r for k, r in current.items() if r > 0}
    if not running or running == dict(plan.replicas) or time_left <= 0:
        return None
    if any(k not in mip.x or k in forbid or r > mip.x[k].ub() for k, r in running.items()):
        return None
    for key, var in mip.x.items():
        var.SetBounds(running.get(key, 0), running.get(key, 0))
    status = solve_quietly(mip.solver, configure(mip.solver, fleet, max(1.0, time_left)))
    if status not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        return None
    return _solved(mip), _answer(fleet, rules, cands, mip, current)
