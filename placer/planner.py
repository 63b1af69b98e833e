"""Plan: solve the fleet against the state, diff, and assemble the plan file's contents.

Pure given its inputs (fleet, state, rules, time): ``cli`` reads and writes the files.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from placer.cost import CostBreakdown, model_compute_usd, model_egress_usd, price
from placer.diff import (
    deployment_target,
    diff,
    managed_pool,
    placed_replicas,
    planned_strategies,
    running_replicas,
    sized_target,
)
from placer.fleet import Fleet
from placer.optimizer import Conflict, SolveResult, explain_infeasible, optimize
from placer.placement import Placement, Route, check_hard_constraints
from placer.planfile import Change, Plan, PlanFileError
from placer.planfile import rounded as _r
from placer.policy import Rules
from placer.state import State
from placer.words import names


class InfeasibleError(Exception):
    def __init__(self, conflict: Conflict) -> None:
        self.conflict = conflict
        super().__init__(conflict.message())


class SolveError(Exception):
    """The solve gave no plan; ``status``: the solver's, where it stopped with none in its time (None:
    a plan placer refused, which says nothing of the fleet)."""

    def __init__(self, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PlanResult:
    plan: Plan
    result: SolveResult
    cost: CostBreakdown
    placement: Placement


def placement_body(fleet: Fleet, result: SolveResult, placement: Placement, cost: CostBreakdown,
                   state: State, changes: Sequence[Change] = ()) -> dict[str, Any]:
    """The plan's body. Each placement's target is its manifest's once ``changes`` are applied: with
    the rollout strategy a change gives it, or that it keeps (``diff.planned_strategies``)."""
    solver = {
        "status": result.status,
        "objectiveUsdPerHour": _r(result.objective),
        "boundUsdPerHour": _r(result.bound),
        "gap": _r(result.gap) if math.isfinite(result.gap) else None,
        "wallSeconds": _r(result.wall_seconds, 3),
    }
    if result.note:  # how far the gap may be read (a re-plan's weak bound)
        solver["note"] = result.note
    # the search that made it: applied, the state's history counts the re-plans since the last
    # whole search (``State.replans_since_full_search``, Settings solver.fullSearchEvery)
    solver["search"] = "replan" if result.replan else "whole"
    placements = []
    strategies = planned_strategies(state, changes)
    for (model_name, pool_name), replicas in sorted(placement.replicas.items()):
        p = fleet.pools[pool_name]
        m = fleet.models[model_name]
        strategy = strategies.get((model_name, pool_name))
        placements.append({
            "model": model_name, "pool": pool_name, "replicas": replicas,
            "gpus": replicas * p.gpus_per_replica(m.spec.replica.gpus),
            "target": {**deployment_target(m, p), **({"strategy": strategy} if strategy else {})},
        })
    routes = [
        {"model": r.model, "demandLocation": r.demand_location, "pool": r.pool, "rate": _r(r.rate),
         "latencyMs": _r(r.latency_ms)}
        for r in sorted(placement.routes, key=lambda r: (r.model, r.demand_location, r.pool))
    ]
    pools = []
    for pool in fleet.pools.values():
        entry: dict[str, Any] = {
            "pool": pool.name,
            "nodes": placement.nodes.get(pool.name, pool.min_nodes),
            "gpusUsed": placement.gpus_used(fleet, pool.name),
            "gpusCapacity": placement.gpus_capacity(fleet, pool.name),
        }
        if managed_pool(pool):
            entry["target"] = sized_target(pool, state, fleet.settings.apply.mode)
        pools.append(entry)
    unmet = [{"model": m, "demandLocation": loc, "rate": _r(rate)} for m, loc, rate in placement.unmet(fleet)]
    missing = [{"model": m.name, "replicas": placement.missing_replicas(fleet, m.name)}
               for m in fleet.models.values()
               if placement.missing_replicas(fleet, m.name) and m.name not in placement.retired]
    violations = [
        {"policy": v.policy, "enforcement": v.enforcement, "amount": _r(v.amount), "detail": v.detail}
        for v in cost.violations
    ]
    served = sum(r.rate for r in placement.routes)
    # what serving the demand costs: the running compute, egress and latency less the training and batch
    # models' own (their compute was counted per unit served: 67.20 USD/h of which 2.40 served)
    running = cost.compute + cost.egress + cost.latency
    apart = sum(model_compute_usd(fleet, placement, m.name) + model_egress_usd(fleet, placement, m)
                for m in fleet.models.values() if not m.inference)  # no routes: model_usd's scan of them is not needed
    return {
        "solver": solver,
        "cost": {k: _r(v) for k, v in cost.as_dict().items()},
        "costBeforeUsdPerHour": state.cost_usd_per_hour,
        "servedRate": _r(served),
        "servingUsdPerHour": _r(max(0.0, running - apart)),
        "placements": placements,
        "routes": routes,
        "pools": pools,
        "unmet": unmet,
        "unplacedReplicas": missing,
        "retired": [{"model": m, "reason": why} for m, why in sorted((result.candidates.retired
                                                                       if result.candidates else {}).items())],
        "violations": violations,
        "models": {m.name: {"demand": _r(m.total_demand)} for m in fleet.models.values()},
    }


def placement_of_body(body: dict[str, Any], fleet: Fleet) -> Placement:
    """The placement a plan's body records (``placement_body``'s inverse): replicas, nodes, routes
    and retired models, for ``placer explain --plan``. Raises PlanFileError on a body that lacks
    them, or names models, pools or locations ``fleet`` has not (a plan edited by hand: a pool
    renamed in it once ended in an internal error)."""
    try:
        placement = Placement(
            replicas={(str(p["model"]), str(p["pool"])): int(p["replicas"]) for p in body["placements"]},
            nodes={str(p["pool"]): int(p["nodes"]) for p in body["pools"]},
            routes=tuple(Route(str(r["model"]), str(r["demandLocation"]), str(r["pool"]), float(r["rate"]),
                               float(r["latencyMs"])) for r in body["routes"]),
            retired=frozenset(str(r["model"]) for r in body.get("retired", [])),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanFileError(f"the plan's placements, pools or routes are malformed ({type(exc).__name__}: {exc}); "
                            "plan again") from None
    unknown = sorted(
        {f"model {m!r}" for m, _ in placement.replicas if m not in fleet.models}
        | {f"model {r.model!r}" for r in placement.routes if r.model not in fleet.models}
        | {f"pool {p!r}" for _, p in placement.replicas if p not in fleet.pools}
        | {f"pool {p!r}" for p in placement.nodes if p not in fleet.pools}
        | {f"pool {r.pool!r}" for r in placement.routes if r.pool not in fleet.pools}
        | {f"location {r.demand_location!r}" for r in placement.routes if r.demand_location not in fleet.locations})
    if unknown:
        raise PlanFileError(f"the plan names {names(unknown, 5)}, which the fleet does not have (was it "
                            "edited by hand?); plan again")
    negative = sorted(f"{m} on {p}" for (m, p), r in placement.replicas.items() if r < 0)
    if negative:
        raise PlanFileError(f"the plan gives negative replicas to {', '.join(negative[:5])}; plan again")
    return placement


# share of the time limit the re-plan must leave for the guard's whole search, or it is not run: given
# less, it found nothing the re-plan had not (a generated 500 x 30 fleet applied, limit 1.5 s: the
# re-plan 11,664.91 USD/h in 0.86 s, the whole search 11,733.85 in the 0.75 s it was given; limit 3 s,
# 2.05 s left: 11,554.80, 1% cheaper; one run each, a loaded machine). Half the limit is the least the
# guard gave it before, past what was left: wherever it fitted in the limit then, it runs as it did
FULL_SEARCH_LEAST = 0.5


def full_search_note(replans: int, every: int, kept: bool) -> str:
    """What a plan searched whole because the state's last ``replans`` applies were short re-plans."""
    found = ("; it found nothing cheaper than the short re-plan's plan, which this is" if kept else "")
    return (f"searched the whole fleet, its moves priced as churn, as `placer plan --full-search` does{found}: the "
            f"last {replans} applied plans were short re-plans around what runs, which drift dearer one after "
            f"another, and Settings solver.fullSearchEvery is {every} (0: never by itself)")


def full_search_left_out_note(replans: int, every: int, took: float, limit: float) -> str:
    """What a plan that was due a whole search says where its re-plan left too little of the time limit."""
    return (f"a search of the whole fleet was due (the last {replans} applied plans were short re-plans around what "
            f"runs, which drift dearer one after another, and Settings solver.fullSearchEvery is {every}), but the "
            f"re-plan took {took:.1f} s of the {limit:g} s time limit, leaving less than {FULL_SEARCH_LEAST:.0%} of "
            f"it: this plan is the short re-plan (applied, it counts as one, and the next plan tries again); raise "
            f"Settings solver.timeLimitSeconds, or plan with --full-search")


def searched_whole(fleet: Fleet, rules: Rules, current: dict[tuple[str, str], int],
                   placed: dict[tuple[str, str], int] | None, progress: Callable[[str], None] | None,
                   time_limit: float | None, replans: int, every: int,
                   clock: Callable[[], float] = time.monotonic) -> SolveResult:
    """The plan once ``replans`` short re-plans in a row were applied: the short re-plan, then the whole
    fleet searched in the time it leaves of the limit, the cheaper kept (its search ``whole`` either way:
    the count starts again; its wall both searches'). The whole search alone was at times dearer than the
    re-plan (bench S, a loaded machine: 1,246.80 USD/h against 1,221.75, HiGHS' answer on the whole model
    turning on the load). Where the re-plan leaves less than FULL_SEARCH_LEAST of the limit, the re-plan
    it is, its note says why, and its search stays ``replan``, so the next plan tries again: the whole
    search was given half the limit where less was left, and such a plan ran past solver.timeLimitSeconds
    (a generated 500 x 30 fleet at 1 s: the re-plan 1.01 s, then the whole search, given 0.5 s, 0.89 s)."""
    limit = time_limit if time_limit is not None else fleet.settings.solver.time_limit_seconds
    started = clock()
    short = optimize(fleet, rules, current=current, progress=progress, time_limit=limit, placed=placed)
    if not short.replan:  # what runs made no short re-plan (demand doubled): that was the whole search
        return replace(short, note=short.note or full_search_note(replans, every, False))
    took = clock() - started
    rest = limit - took
    if rest < FULL_SEARCH_LEAST * limit:
        left_out = full_search_left_out_note(replans, every, took, limit)
        if progress:
            progress(f"no search of the whole fleet: the re-plan left {max(0.0, rest):.1f} s of {limit:g}")
        return replace(short, note=f"{short.note}; {left_out}" if short.note else left_out)
    full = optimize(fleet, rules, current=current, progress=progress, time_limit=rest, whole=True, placed=placed)
    kept = full.placement is None or (short.placement is not None and short.objective < full.objective)
    best = short if kept else full
    return replace(best, note=full_search_note(replans, every, kept), replan=False, wall_seconds=clock() - started)


def make_plan(
    fleet: Fleet,
    state: State,
    rules: Rules,
    now: dt.datetime,
    progress: Callable[[str], None] | None = None,
    time_limit: float | None = None,
    whole: bool = False,
) -> PlanResult:
    """``whole``: search the whole fleet in the whole time (``optimize``), not a short re-plan; so
    too once the state's history holds Settings solver.fullSearchEvery applied re-plans in a row,
    which drift dearer one after another (docs/optimizer.md), and the plan's note says so."""
    current = running_replicas(fleet, state)
    placed = placed_replicas(fleet, state, current)
    every, replans = fleet.settings.solver.full_search_every, state.replans_since_full_search()
    if not whole and every > 0 and replans >= every:
        result = searched_whole(fleet, rules, current, placed, progress, time_limit, replans, every)
    else:
        result = optimize(fleet, rules, current=current, progress=progress, time_limit=time_limit, whole=whole,
                          placed=placed)
    if result.placement is None:
        if result.status == "INFEASIBLE":
            if progress:
                progress("infeasible: looking for the conflicting policies")
            raise InfeasibleError(explain_infeasible(fleet, rules, progress))
        raise SolveError(
            f"the solver stopped with status {result.status} and no placement within "
            f"{fleet.settings.solver.time_limit_seconds:g} s; raise Settings solver.timeLimitSeconds",
            status=result.status)
    placement = result.placement
    if progress:
        progress("pricing the plan and checking its hard rules")
    cost = price(fleet, placement, rules, current)
    # the plan is checked against the SPEC's hard constraints and the required policies before
    # anyone can apply it: a search that kept a broken row (a minReplicas the scalable route's
    # rounding left short, found by planning random fleets both ways) must fail loudly, not apply
    thr = {(m, p): fleet.models[m].spec.throughput.get(fleet.pools[p].gpu.name, 0.0) for m, p in placement.replicas}
    broken = check_hard_constraints(fleet, placement, thr) + [
        f"required policy {v.policy}: {v.detail}" for v in cost.violations if v.enforcement == "required"]
    if broken:
        raise SolveError(f"placer's optimizer made a plan that breaks {len(broken)} hard rule(s), first {broken[0]}; "
                         "nothing was written: this is a bug in placer, please report it with the fleet "
                         "(`PLACER_OPTIMIZER=exact` may plan it meanwhile)")
    if progress:
        progress("listing the changes from the state")
    changes = diff(fleet, state, placement, result.candidates, rules)
    body = placement_body(fleet, result, placement, cost, state, changes)
    plan = Plan(
        created_at=now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        fleet_digest=fleet.digest,
        prior_lineage=state.lineage,
        prior_serial=state.serial,
        body=body,
        changes=tuple(changes),
        prior_applying=state.progress(),
    )
    return PlanResult(plan, result, cost, placement)
