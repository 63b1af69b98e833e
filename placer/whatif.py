"""What-if scenarios: the same fleet with demand scaled and pools, locations or providers failed."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from placer.cost import CostBreakdown, churn_usd, price
from placer.explain import DATA_CUT, NO_POOL, NO_ROOM, POLICY, UnmetReasons
from placer.fleet import Fleet, Model, Pool
from placer.optimizer import explain_infeasible, optimize
from placer.optimizer.scale import use_large
from placer.placement import Placement
from placer.policy import Rules
from placer.spec.kinds import PoolNodes
from placer.spec.loader import suggest
from placer.words import names as listing

# the most demand a scenario may ask for, units/s over the fleet: ten million times bench XL's, and
# where floats still count it to the unit (they do to 9e15)
MOST_DEMAND = 1e15


class ScenarioError(ValueError):
    """A scenario the fleet cannot take: names it lacks, or a demand scale that is no number of
    times (phrased for the user)."""


@dataclass(frozen=True)
class Scenario:
    demand_scale: float = 1.0
    fail_pools: frozenset[str] = frozenset()
    fail_locations: frozenset[str] = frozenset()
    fail_providers: frozenset[str] = frozenset()

    def describe(self) -> str:
        parts = []
        if self.demand_scale != 1.0:
            parts.append(f"demand x{_times(self.demand_scale)}")
        for label, names in (("pool", self.fail_pools), ("location", self.fail_locations),
                             ("provider", self.fail_providers)):
            if names:
                parts.append(f"{label} {', '.join(sorted(names))} down")
        return ", ".join(parts) or "no change"

    def failed(self, pool: Pool) -> bool:
        return (pool.name in self.fail_pools or pool.location.name in self.fail_locations
                or pool.provider in self.fail_providers)


def _times(factor: float) -> str:
    """``factor`` as few digits give it back exactly (``:g`` said "demand x1" of 1.00000001, whose
    changes the table showed beside it, and "demand x-0" of -0)."""
    factor += 0.0  # -0.0 is 0
    short = f"{factor:g}"
    return short if float(short) == factor else repr(factor)


def check(fleet: Fleet, scenario: Scenario) -> list[str]:
    """What in the scenario the fleet cannot take: a pool, location or provider it does not have
    (with the closest name it has), a location with no pools (nothing would fail), or a demand
    scale that is not a finite number >= 0."""
    problems = []
    providers = sorted({p.provider for p in fleet.pools.values()})
    kinds = {"pool": set(fleet.pools), "location": set(fleet.locations), "provider": set(providers)}
    for label, names in (("pool", scenario.fail_pools), ("location", scenario.fail_locations)):
        problems += [f"no {label} named {n!r}{_kind_of(n, label, kinds) or suggest(n, kinds[label]) or _listed(label, kinds[label])}"
                     for n in sorted(names) if n not in kinds[label]]
    # a location with no pools, links, demand or data: failing it changes nothing, which a scenario must
    # not pass off as an answer (one with no pools still carries the paths through it and its users)
    there = {p.location.name for p in fleet.pools.values()} | {end for k in fleet.topology.links for end in (k.a, k.b)}
    there |= {d.location for m in fleet.models.values() for d in m.spec.demand}
    there |= {s.location for m in fleet.models.values() for s in m.spec.data}
    problems += [f"location {n!r} has no pools, links, demand or data, so nothing fails there"
                 for n in sorted(scenario.fail_locations) if n in fleet.locations and n not in there]
    listed = f"the fleet's providers: {', '.join(providers)}" if providers else "the fleet has no pools"
    problems += [f"no pool has provider {p!r} ({listed}){_kind_of(p, 'provider', kinds)}"
                 for p in sorted(scenario.fail_providers) if p not in providers]
    if not math.isfinite(scenario.demand_scale) or scenario.demand_scale < 0:
        problems.append(f"--demand-scale must be a finite number >= 0, not {scenario.demand_scale:g}")
    else:
        # every figure the report shows must stay a number, to the unit: 1e308 once gave a demand of
        # inf, an unmet table without the inference models, and "Infinity" in the JSON
        demand = math.fsum(d.rate for m in fleet.models.values() for d in m.spec.demand)
        if demand * scenario.demand_scale > MOST_DEMAND:
            problems.append(f"--demand-scale {scenario.demand_scale:g} asks for more than {MOST_DEMAND:.0e} units/s "
                            f"over the fleet, the most a what-if counts to the unit (the fleet's demand is "
                            f"{demand:,.0f} units/s: give at most {MOST_DEMAND / demand:.3g})")
    return problems


def _listed(label: str, known: set[str]) -> str:
    """The fleet's names of a ``label`` (pool, location), where a name given matches none closely:
    "no pool named 'zz'" alone left the operator to look the names up."""
    return f" (the fleet's {label}s: {listing(sorted(known), 8)})" if known else f" (the fleet has no {label}s)"


def _kind_of(name: str, label: str, kinds: dict[str, set[str]]) -> str:
    """Where ``name``, given as a ``label`` the fleet lacks, is the name of another kind of the
    fleet's (a location given to --fail-pool): which, and the option that fails it; else ''."""
    other = next((kind for kind, known in kinds.items() if kind != label and name in known), None)
    if other is None:
        return ""
    return f"; {name!r} is a {other}: fail it with --fail-{other} {name}"


def _scale(model: Model, factor: float) -> Model:
    if factor == 1.0 or not model.spec.demand:
        return model
    demand = [d.model_copy(update={"rate": d.rate * factor}) for d in model.spec.demand]
    return dataclasses.replace(model, spec=model.spec.model_copy(update={"demand": demand}))


def _fail(pool: Pool) -> Pool:
    nodes = PoolNodes.model_construct(count=0, min=None, max=None)
    return dataclasses.replace(pool, spec=pool.spec.model_copy(update={"nodes": nodes}))


def _cut_off(model: Model, gone: Collection[str]) -> Model:
    """``model`` without its demand from users at the locations ``gone``: cut off with their site."""
    kept = [d for d in model.spec.demand if d.location not in gone]
    if len(kept) == len(model.spec.demand):
        return model
    return dataclasses.replace(model, spec=model.spec.model_copy(update={"demand": kept}))


def apply_scenario(fleet: Fleet, scenario: Scenario) -> Fleet:
    """The fleet as the scenario has it: its failed pools without nodes, its demand scaled, and each
    failed location's network gone with its pools (``Topology.without``: no path passes through it,
    so latency and egress are those of the paths left) and its users' demand cut off with it
    (``lost_with`` reports it apart): the normal plan path plans it like any fleet."""
    gone = scenario.fail_locations
    pools = {n: (_fail(p) if scenario.failed(p) else p) for n, p in fleet.pools.items()}
    models = {n: _cut_off(_scale(m, scenario.demand_scale), gone) for n, m in fleet.models.items()}
    topology = fleet.topology.without(gone) if gone else fleet.topology
    return dataclasses.replace(fleet, pools=pools, models=models, topology=topology)


def lost_with(fleet: Fleet, scenario: Scenario, retired: Collection[str] = (),
              unmet: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, dict[str, Any]]:
    """What each failed location takes with it: its pools, its links (each by the two locations it
    joins), the demand of its users (model -> rate, at the scenario's demand scale; a ``retired``
    model's is nobody's), which is cut off with the site, not left unmet by the fleet, and the models
    whose data is there that the scenario leaves unmet for it (``dataCut``: model -> what is unmet
    for DATA_CUT, of ``unmet``, the scenario's ``unmetWhy``; its rate, or its training or batch
    replicas): their users elsewhere are still there, so that demand is unmet, not cut off."""
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(scenario.fail_locations):
        cut: dict[str, float] = {}
        for model in fleet.models.values():
            rate = math.fsum(d.rate for d in _scale(model, scenario.demand_scale).spec.demand if d.location == name)
            if rate > 0 and model.name not in retired:
                cut[model.name] = rate
        out[name] = {
            "pools": sorted(p.name for p in fleet.pools.values() if p.location.name == name),
            "links": sorted([k.a, k.b] for k in fleet.topology.links if name in (k.a, k.b)),
            "cutOff": dict(sorted(cut.items())),
            "cutOffRate": math.fsum(cut.values()),
            "dataCut": {m: why[DATA_CUT] for m, why in sorted((unmet or {}).items())
                        if DATA_CUT in why and any(d.location == name for d in fleet.models[m].spec.data)},
        }
    return out


def saturated(fleet: Fleet, gpus_used: dict[str, int], full: Collection[str] = ()) -> list[str]:
    """Pools using all the GPUs they could ever have (fixed count, or elastic at max), and those of
    ``full``: too full for one more replica of a model whose demand they could serve is unmet for
    want of room (``UnmetReasons.full_in_reach``), in the fleet's order; a pool with none (one a
    scenario fails has none in the scenario's fleet) is not saturated."""
    out = []
    for pool in fleet.pools.values():
        if pool.max_gpus == 0:
            continue
        if gpus_used.get(pool.name, 0) >= pool.max_gpus or pool.name in full:
            out.append(pool.name)
    return out


def compare(fleet: Fleet, rules: Rules, scenario: Scenario, progress: Callable[[str], None] | None = None,
            current: dict[tuple[str, str], int] | None = None,
            placed: dict[tuple[str, str], int] | None = None) -> dict[str, Any]:
    """Solve the base fleet and the scenario; report cost, unmet per model and saturated pools, or,
    for a side with no feasible plan, its status and (when infeasible) the conflict that makes it so.
    A base with no plan leaves the scenario out: there is nothing to compare it with. The base is
    planned from ``current`` (the applied state's replicas), as `placer plan` plans it, its moves
    priced as churn (``placed``: where replicas run, where a rollout makes it differ from
    ``current``, as `placer plan` has it); the scenario from the base plan."""
    problems = check(fleet, scenario)
    if problems:
        raise ScenarioError("; ".join(problems))
    changed = apply_scenario(fleet, scenario)
    sides: dict[str, Any] = {}
    base_replicas: dict[tuple[str, str], int] | None = None
    retired: Collection[str] = ()
    for label, f in (("base", fleet), ("scenario", changed)):
        if progress:
            progress(f"solving the {label} plan")
        said = progress
        if progress:
            def said(step: str, side: str = label, tell: Callable[[str], None] = progress) -> None:
                tell(f"{side} plan: {step}")
        # the base is what `placer plan` plans from the applied state (a plan that keeps what runs
        # where it runs, not a fresh search's pick); the scenario is planned from the base plan, the
        # state once that plan is applied, its moves priced as churn: what changes is what the
        # scenario asks, not a new search's noise (bench M, a pool down, planned afresh: 6.17 USD/h
        # *cheaper* than the base; from the base: 48.96 dearer), and a small change re-plans in a
        # fraction of the time
        start = base_replicas if label == "scenario" else current
        result = optimize(f, rules, current=start, progress=said, placed=None if label == "scenario" else placed)
        if result.placement is None:
            sides[label] = {"status": result.status, "feasible": False}
            if result.status == "INFEASIBLE":
                if progress:
                    progress(f"the {label} plan is infeasible: looking for the conflicting policies")
                conflict = explain_infeasible(f, rules, progress)
                sides[label]["conflict"] = {"policies": list(conflict.policies), "models": list(conflict.models),
                                            "minimal": conflict.minimal, "message": conflict.message()}
            if label == "base":
                break  # nothing to compare a scenario with
            continue
        # each side's churn is counted from what it is planned from (the scenario's as `fromBase` counts it)
        cost = price(f, result.placement, rules, start)
        if label == "base" and use_large(f):
            # the scalable route's plan is not at its best (at XL 5% above the bound), and a re-plan
            # from it keeps improving: the scenario, re-planned from the base, came out 383.56 USD/h
            # *cheaper* with a pool lost. The base gets the same re-plan from itself, so that both
            # sides have had the same search and the difference is the scenario's
            if progress:
                progress("re-planning the base plan from itself, as the scenario will be")
            again = optimize(f, rules, current=dict(result.placement.replicas), progress=said)
            if again.placement is not None:
                again_cost = price(f, again.placement, rules, start)  # its churn from the state, too
                gained = cost.objective - again_cost.objective
                if gained > 1e-6:
                    # the base's search is the first plan's, the re-plan's its last steps: its status,
                    # bound and gap are the first solve's, whose bound holds for the re-plan too (both
                    # priced from `start`); the re-plan's own bound, of its churn from the first plan
                    # and from simple prices, said bench L's base was FEASIBLE at a 23.84% gap (the
                    # plan's is 4.86%) "re-planned around what runs" where nothing ran, and a small
                    # fleet's OPTIMAL base FEASIBLE at 17.50%
                    result = dataclasses.replace(again, status=result.status, objective=result.objective - gained,
                                                 bound=min(result.bound, result.objective - gained),
                                                 wall_seconds=result.wall_seconds + again.wall_seconds,
                                                 note=result.note)
                    cost = again_cost
        placement = result.placement
        assert placement is not None  # a re-plan from a plan always has one
        retired = placement.retired
        if label == "base":
            base_replicas = dict(placement.replicas)
        sides[label] = _side(f, rules, placement, cost, result.status, result.gap,
                             base_replicas if label == "scenario" else None, fleet, result.note,
                             scenario.fail_locations if label == "scenario" else ())
    unmet = sides.get("scenario", {}).get("unmetWhy")
    lost = {"failedLocations": lost_with(fleet, scenario, retired, unmet)} if scenario.fail_locations else {}
    return {"description": scenario.describe(), **sides, **lost}


def _holding_all_first(holds: dict[str, set[str]]) -> list[str]:
    """The policies of ``holds`` (policy -> pools it holds), those holding every pool first."""
    every = set().union(*holds.values())
    return sorted(holds, key=lambda p: (holds[p] != every, p))


def _side(f: Fleet, rules: Rules, placement: Placement, cost: CostBreakdown, status: str,
          gap: float, base: dict[tuple[str, str], int] | None, declared: Fleet, note: str = "",
          gone: Collection[str] = ()) -> dict[str, Any]:
    """One side's report (``cost``: its placement priced): cost by term, demand and served, what is unmet and why, the preferred
    policies broken, the pools saturated, and (for the scenario) the moves from the ``base`` plan. ``declared``:
    the fleet before the scenario, whose failed pools still hold, once back, the gangs they could hold;
    ``gone``: the locations the scenario fails (a model whose data is at one is unmet for DATA_CUT)."""
    reasons = UnmetReasons(f, rules, placement, cost.violations, declared, gone)
    used = reasons.used
    unmet: dict[str, float] = {}
    why: dict[str, dict[str, float]] = {}  # model -> reason -> how much of its unmet
    # model -> the required policies that hold its demand back (POLICY) -> the pools each holds
    held: dict[str, dict[str, set[str]]] = {}
    # model -> the preferred policies whose penalty leaves its demand unmet (COST) -> the pools
    charged: dict[str, dict[str, set[str]]] = {}
    totals: dict[str, dict[str, Any]] = {}  # reason -> the rate and the replicas unmet for it

    # pool -> the models short of room whose replica it is too full for, though it has GPUs left
    full: dict[str, set[str]] = {}

    def because(model: Model, location: str | None) -> str:
        reason, holds = reasons.why(model, location)
        if reason == NO_ROOM:  # the pools it found no room on are saturated for it, all GPUs used or not
            for pool in reasons.full_in_reach(model, location):
                full.setdefault(pool, set()).add(model.name)
        into = held if reason == POLICY else charged
        for policy, pools in holds.items():
            into.setdefault(model.name, {}).setdefault(policy, set()).update(pools)
        return reason

    for name, loc, rate in placement.unmet(f):
        unmet[name] = unmet.get(name, 0.0) + rate
        reason = because(f.models[name], loc)
        why.setdefault(name, {})[reason] = why.get(name, {}).get(reason, 0.0) + rate
        totals.setdefault(reason, {"rate": 0.0, "replicas": 0})["rate"] += rate
    unplaced: dict[str, int] = {}  # training and batch replicas: counted apart from rates
    gangs: dict[str, str] = {}  # model -> the size of its gang no pool in reach holds whole (NO_POOL), in words
    for model in f.models.values():
        short = placement.missing_replicas(f, model.name)
        if short and model.name not in placement.retired:
            unmet[model.name] = unmet.get(model.name, 0.0) + short
            unplaced[model.name] = short
            reason = because(model, None)
            gang = reasons.gang(model) if reason == NO_POOL else None
            if gang is not None:
                gangs[model.name] = gang
            why.setdefault(model.name, {})[reason] = short
            totals.setdefault(reason, {"rate": 0.0, "replicas": 0})["replicas"] += short
    broken: dict[str, dict[str, float]] = {}  # policy -> how often it is broken and what that costs
    for v in cost.violations:
        if v.enforcement == "preferred":  # priced as cost.price prices it
            entry = broken.setdefault(v.policy, {"count": 0, "penaltyUsdPerHour": 0.0})
            entry["count"] += 1
            entry["penaltyUsdPerHour"] += v.amount * v.penalty_usd_per_hour
    out = {
        "status": status,
        "feasible": True,
        "gap": gap if math.isfinite(gap) else None,  # JSON has no Infinity (no bound, or a plan of cost 0)
        **({"gapNote": note} if note else {}),  # how far the gap may be read (SolveResult.note)
        "cost": cost.as_dict(),
        # a retired model's demand is nobody's to serve, as `plan` counts it
        "demand": sum(m.total_demand for m in f.models.values() if m.name not in placement.retired),
        "served": sum(r.rate for r in placement.routes),
        "unmet": dict(sorted(unmet.items())),
        # the training and batch replicas wanted, as `demand` the rate (a retired model's are nobody's)
        "replicasWanted": sum(m.spec.replicas or 0 for m in f.models.values()
                              if not m.inference and m.name not in placement.retired),
        "unplacedReplicas": sum(unplaced.values()),
        "unplaced": dict(sorted(unplaced.items())),  # model -> training/batch replicas not placed
        "unmetWhy": dict(sorted(why.items())),
        "unmetGangs": dict(sorted(gangs.items())),
        # those that hold every pool in reach with room first (relaxing only the others serves nothing more)
        "unmetPolicies": {m: _holding_all_first(pools) for m, pools in sorted(held.items())},
        "unmetPolicyPools": {m: {p: sorted(pools[p]) for p in _holding_all_first(pools)}
                             for m, pools in sorted(held.items())},
        # the preferred policies whose penalty makes serving cost more than leaving it unmet ("cost")
        "unmetPenalties": {m: {p: sorted(pools[p]) for p in sorted(pools)} for m, pools in sorted(charged.items())},
        "unmetByReason": totals,
        "violations": dict(sorted(broken.items())),
        "saturated": saturated(f, used, full),
        # the saturated pools with GPUs left, too few for a replica of the models short of room there
        "fullFor": {p: {"gpusUsed": used.get(p, 0), "gpusCapacity": f.pools[p].max_gpus, "models": sorted(full[p])}
                    for p in saturated(f, used, full) if used.get(p, 0) < f.pools[p].max_gpus},
        "gpus": {"used": sum(used.values()), "capacity": sum(placement.gpus_capacity(f, p) for p in f.pools)},
    }
    if base is not None:
        after = placement.replicas
        out["fromBase"] = {"started": sum(max(0, r - base.get(k, 0)) for k, r in after.items()),
                           "stopped": sum(max(0, r - after.get(k, 0)) for k, r in base.items()),
                           "churnUsd": churn_usd(f, placement, base)}
    return out
