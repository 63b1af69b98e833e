"""Explain one model's placement: its cost terms, why every other pool is out, and the next best."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from placer.candidates import SLO, Candidates, Exclusion, Exclusions, exclusion, required_of, within_slo
from placer.cost import (
    PENNY,
    churn_usd,
    compute_usd,
    model_usd,
    penalty_by_policy,
    penalty_changes,
    price,
    violations,
)
from placer.fleet import Fleet, Model, Policy, Pool
from placer.idle import Idle, idle_replicas
from placer.optimizer import SolveResult, optimize
from placer.placement import Placement, Route
from placer.policy import Rules, Violation
from placer.render.report import signed
from placer.words import names


@dataclass
class Explanation:
    model: str
    placed: dict[str, int]
    compute_usd: float
    routes: list[tuple[str, str, float, float]]  # demand location, pool, rate, latency
    unmet: list[tuple[str, float]]
    terms: dict[str, float] = field(default_factory=dict)  # the model's terms of the running cost (USD/h)
    unmet_why: dict[str, str] = field(default_factory=dict)  # demand location -> why it is unmet, in words
    missing: int = 0  # training/batch replicas not placed
    missing_why: str | None = None  # in words
    out: dict[str, str] = field(default_factory=dict)  # pool -> reason
    unused: dict[str, str] = field(default_factory=dict)  # eligible pools not chosen -> note
    # eligible pools not chosen -> what the model costs there alone (``cost_alone``: its running
    # cost, USD/h, and its churn): ``grouped`` lists them cheapest first
    unused_cost: dict[str, float] = field(default_factory=dict)
    next_best: dict[str, int] | None = None
    next_best_delta: float | None = None  # the fleet's running cost with the next best, less the plan's (USD/h)
    next_best_churn: float = 0.0  # its one-off churn, less the plan's (USD)
    next_best_from_plan: bool = False  # the next best is this plan with the model moved alone (the scalable route)
    no_next_best: str | None = None  # why there is none, where the model has pools and nothing else takes it
    idle: list[Idle] = field(default_factory=list)  # its pools with replicas beyond what their routes need
    retired: str | None = None  # why no pool is its own, where a required policy retires it (set by the caller)
    # why no replica is needed, where an inference model asks for no rate and no minReplicas
    not_needed: str | None = None
    # the preferred policies the plan breaks about this model -> (their penalty, USD/h, and what each
    # says): the price of where it is, which its own terms leave to the policies
    penalties: dict[str, tuple[float, str]] = field(default_factory=dict)
    # why a saved plan was not made from the state its churn is priced from, as apply refuses it (set by the caller)
    stale: str | None = None
    # where the plan explained was solved afresh by a search that stops at the time limit (the scalable
    # route, or a gap not closed): its status and gap, as the summary gives them (set by the caller)
    afresh: str | None = None

    @property
    def next_best_cheaper(self) -> bool:
        """The move away costs less than the plan, as the plan's search weighs it (running cost and
        churn): the search stopped short of it."""
        return self.next_best_delta is not None and self.next_best_delta + self.next_best_churn < -0.005

    def as_json(self) -> dict[str, Any]:
        """Everything the text tells, for a script (``placer explain --json``)."""
        if self.retired is not None:
            return {"model": self.model, "retired": self.retired}
        return {
            "model": self.model,
            "placed": dict(sorted(self.placed.items())),
            # the model's terms of the running cost: compute, egress, latency, unmetDemand
            "costUsdPerHour": {re.sub(r" (\w)", lambda w: w[1].upper(), k): v for k, v in self.terms.items()},
            "routes": [{"demandLocation": loc, "pool": pool, "rate": rate, "latencyMs": lat}
                       for loc, pool, rate, lat in self.routes],
            "unmet": [{"demandLocation": loc, "rate": rate, "why": self.unmet_why.get(loc)} for loc, rate in self.unmet],
            "unplacedReplicas": self.missing,
            "notNeeded": self.not_needed,
            "penalties": [{"policy": name, "usdPerHour": usd, "detail": detail}
                          for name, (usd, detail) in sorted(self.penalties.items())],
            "unplacedWhy": self.missing_why,
            "idle": [i.as_json() for i in self.idle],
            "otherPools": {**dict(sorted(self.out.items())), **dict(_cheapest_first(self))},
            "nextBest": None if self.next_best is None else {
                "placed": dict(sorted(self.next_best.items())), "deltaUsdPerHour": self.next_best_delta,
                "churnUsd": self.next_best_churn, "modelMovedAlone": self.next_best_from_plan,
                "cheaper": self.next_best_cheaper},
            "nextBestText": self.next_best_text(),
            "stalePlan": self.stale,
            "plannedAfresh": self.afresh,
        }

    def next_best_text(self) -> str | None:
        how = " (every other model where this plan has it)" if self.next_best_from_plan else ""
        if self.no_next_best is not None:
            return f"No next best without its current pools{how}: {self.no_next_best}"
        if self.next_best is None or self.next_best_delta is None:
            return None
        alt = ", ".join(f"{r} on {p}" for p, r in sorted(self.next_best.items())) or "not placed"
        # the churn is paid once, the running cost every hour: apart, as `plan` and `whatif` give them
        churn = f" ({signed(self.next_best_churn)} USD of one-off churn)" if abs(self.next_best_churn) >= 0.005 else ""
        if not self.next_best_cheaper:
            return (f"Next best without its current pools{how}: {alt}, costing {signed(self.next_best_delta)} USD/h "
                    f"for the whole fleet{churn}")
        saves = (f"{-self.next_best_delta:,.2f} USD/h cheaper for the whole fleet{churn}" if self.next_best_delta < 0
                 else f"costing {signed(self.next_best_delta)} USD/h for the whole fleet{churn}, less in all")
        if self.stale is not None:  # the plan weighed the churn from another state: no sign its search stopped short
            return (f"Without its current pools{how}: {alt}, {saves}: its churn is priced from the state as it is "
                    f"now, which this plan was not made from ({self.stale})")
        return (f"Without its current pools{how}: {alt}, {saves}: the plan's search stopped before this move (raise "
                "Settings solver.timeLimitSeconds, or plan again from the applied state)")


def _occupants(fleet: Fleet, placement: Placement, pool: str, model: str, reasons: UnmetReasons) -> str:
    """Why an eligible ``pool`` does not hold ``model``: it has no GPUs, too few left for a replica
    (a gang: for all of it, and who holds them), the replica (the gang) there breaks required
    policies, or else its cost."""
    used = reasons.used.get(pool, 0)
    cap = fleet.pools[pool].max_gpus
    if cap == 0:
        return "eligible, but it has no GPUs (0 nodes)"
    per = fleet.pools[pool].gpus_per_replica
    m = fleet.models[model]
    need = per(m.spec.replica.gpus)
    unit = reasons.unit(m)
    what, there = f"a replica of {need} GPUs", "one more replica there breaks"
    if unit > 1:  # a gang goes whole onto one pool: the room it needs is every replica's
        what, there = f"its gang ({unit} replicas of {need} GPUs, {need * unit} on one pool)", "its gang there breaks"
        need *= unit
        if cap < need:
            return f"eligible but too small for {what}: it has {cap} GPUs"
    if cap - used >= need and not_needed(m) is not None:  # "not chosen (cost)" of a replica nothing asks for
        return f"eligible; not needed (no demand and no minReplicas), {cap - used} of {cap} GPUs free"
    if cap - used >= need:
        held = reasons.held_by(m, fleet.pools[pool])
        if held:  # the check the pool's cost hid (the example's legal-assistant-70b, fra-a100-80)
            one = len(held) == 1
            return (f"eligible; held back by required {'policy' if one else 'policies'} {', '.join(held)}: {there} "
                    f"{'it' if one else 'them'}, {cap - used} of {cap} GPUs free")
        if held is None:
            return (f"eligible; not chosen (cost, or required policies: their checks' {HELD_SECONDS:g} s ran out), "
                    f"{cap - used} of {cap} GPUs free")
        penalties = reasons.penalties(m, fleet.pools[pool])
        if penalties is None:
            return (f"eligible; not chosen (cost, or preferred policies' penalties: their checks' {HELD_SECONDS:g} s "
                    f"ran out), {cap - used} of {cap} GPUs free")
        added = sum(penalties.values())
        if added >= PENNY:  # the price preferred policies add, which "cost" hid (where some fall, net of them)
            whose = "one more replica" if unit == 1 else "its gang"
            total = f"{whose} there adds {added:,.2f} USD/h of"
            if any(usd < 0 for usd in penalties.values()):  # each with its sign, summing to the total
                charged = (f"{total} penalties for preferred policies "
                           + ", ".join(f"{name} ({signed(usd)})" for name, usd in penalties.items()))
            elif len(penalties) == 1:
                charged = f"{total} penalty for preferred policy {next(iter(penalties))}"
            else:
                charged = (f"{total} penalties for preferred policies "
                           + ", ".join(f"{name} ({usd:,.2f})" for name, usd in penalties.items()))
            return f"eligible; not chosen (cost: {charged}), {cap - used} of {cap} GPUs free"
        return f"eligible; not chosen (cost), {cap - used} of {cap} GPUs free"
    gpus = {m: r * per(fleet.models[m].spec.replica.gpus) for m, r in placement.models_on(pool).items() if m != model}
    others = sorted(gpus, key=lambda m: (-gpus[m], m))  # who holds most first
    if used >= cap:
        return f"eligible but full: {used}/{cap} GPUs taken by {names(others, OCCUPANTS) or 'nobody'}"
    return (f"eligible but too full for {what}: {cap - used} free, {used}/{cap} taken by "
            f"{names(others, OCCUPANTS) or 'nobody'}")


def not_needed(model: Model) -> str | None:
    """Why an inference ``model`` needs no replica, in words, where it asks for no rate (its demand
    entries' rates all 0, or none) and has no minReplicas; None otherwise."""
    if not model.inference or model.total_demand > 0 or model.spec.min_replicas:
        return None
    return "it has no demand (every rate is 0) and no minReplicas" if model.spec.demand else \
        "it has no demand entries and no minReplicas"


def every_pool_out(fleet: Fleet, rules: Rules, model: str) -> str | None:
    """Why each pool is out for ``model`` (its fit rules and required policies, as ``explain`` gives
    them), where every pool is: what a fleet with no plan still has to say of a model no pool may
    run (validate's warning sends the reader here for it), the first OCCUPANTS of them named; None
    where some pool may run it."""
    excluded = Exclusions(fleet, rules, {})
    why = {pool: excluded.get((model, pool)) for pool in sorted(fleet.pools)}
    if not why or any(reason is None for reason in why.values()):
        return None
    return f"no pool may run {model}: " + names([f"{pool} ({reason})" for pool, reason in why.items()], OCCUPANTS)


OCCUPANTS = 8  # models named as a full pool's occupants, those holding most GPUs first
GROUP_NAMES = 8  # pools named in a row of pools out for one reason (``--all`` gives one row each)


def _price(fleet: Fleet, model: Model, pool: Pool) -> float:
    """USD/h of ``pool``'s GPUs per unit of rate one replica of ``model`` serves there (per replica
    for training and batch): where unmet demand would be cheapest to serve, before routing."""
    usd = pool.usd_per_gpu_hour * pool.gpus_per_replica(model.spec.replica.gpus)
    if not model.inference:
        return usd
    rate = model.spec.throughput.get(pool.gpu.name, 0.0)
    return usd / rate if rate > 0 else math.inf


def alone_on(fleet: Fleet, placement: Placement, model: Model, pool: Pool) -> Placement:
    """``model`` on ``pool`` alone, in the room the plan's other models leave there: its demand
    within the SLO routed there, nearest first, as far as the pool's free GPUs and its maxReplicas
    allow, with the replicas that takes (its minReplicas at least, where they fit); a training or
    batch model's replicas as many as fit (a gang all or none). The plan holds only the model."""
    per = pool.gpus_per_replica(model.spec.replica.gpus)
    others = sum(r * pool.gpus_per_replica(fleet.models[m].spec.replica.gpus)
                 for m, r in placement.models_on(pool.name).items() if m != model.name and m in fleet.models)
    fits = max(0, pool.max_gpus - others) // per if per > 0 else 0
    if model.spec.max_replicas is not None:
        fits = min(fits, model.spec.max_replicas)
    routes: list[Route] = []
    if not model.inference:
        want = model.spec.replicas or 0
        count = (want if want <= fits else 0) if UnmetReasons.unit(model) > 1 else min(want, fits)
    else:
        thr = model.spec.throughput.get(pool.gpu.name, 0.0)
        left = fits * thr
        reach = [(fleet.topology.latency_ms(d.location, pool.location.name), d.location, d.rate)
                 for d in model.spec.demand if d.rate > 0]
        for lat, loc, rate in sorted(r for r in reach if within_slo(r[0], _slo(model, r[1]))):
            if left <= 0:
                break
            routes.append(Route(model.name, loc, pool.name, min(rate, left), lat))
            left -= routes[-1].rate
        served = sum(r.rate for r in routes)
        count = min(fits, max(math.ceil(served / thr - 1e-9) if thr > 0 else 0, model.spec.min_replicas or 0))
    return replace(placement, replicas={(model.name, pool.name): count} if count else {}, routes=tuple(routes))


def _slo(model: Model, location: str | None) -> float | None:
    """The latency SLO of ``model``'s demand at ``location`` (None: none, or no such demand)."""
    return next((d.latency_slo_ms for d in model.spec.demand if d.location == location), None)


def cost_alone(fleet: Fleet, placement: Placement, model: Model, pool: Pool,
               current: Mapping[tuple[str, str], int]) -> float:
    """What ``model`` costs on ``pool`` alone (``alone_on``), by the cost function's terms: its
    compute, egress, latency and unmet demand (USD/h), and the churn of starting its replicas
    there (one-off USD, from the applied state ``current``), summed as the plan's search sums
    them. What orders the eligible pools not chosen: the first is where the model would cost least."""
    there = alone_on(fleet, placement, model, pool)
    return sum(model_usd(fleet, there, model.name).values()) + churn_usd(fleet, there, current)


def _serving_usd(fleet: Fleet, placement: Placement, model: Model) -> float:
    """The running cost (USD/h) that serving more of ``model`` changes, penalties aside, priced as
    ``price`` prices it: the fleet's compute (an elastic pool's nodes, whole) and the model's egress,
    latency and unmet demand."""
    terms = model_usd(fleet, placement, model.name)
    return compute_usd(fleet, placement) + terms["egress"] + terms["latency"] + terms["unmet demand"]


def _late(fleet: Fleet, model: str, pool: str) -> str | None:
    """Why an eligible ``pool`` serves none of an inference ``model``'s demand: each demand
    entry's latency to it against its SLO; None when some entry reaches it in time."""
    m = fleet.models[model]
    demand = [d for d in m.spec.demand if d.rate > 0] if m.inference else []
    if not demand:
        return None
    where = fleet.pools[pool].location.name
    late = []
    for d in demand:
        lat = fleet.topology.latency_ms(d.location, where)
        if within_slo(lat, d.latency_slo_ms):
            return None
        late.append(f"from {d.location} {lat:g} ms > {d.latency_slo_ms:g} ms" if math.isfinite(lat)
                    else f"from {d.location} unreachable")
    return f"no demand reaches {where} within its SLO ({names(late, 3, '; ')})"


NO_ROOM, NO_POOL, MAX_REPLICAS, COST, POLICY = "noRoom", "noPool", "maxReplicas", "cost", "policy"
DOWN = "down"  # a what-if's: every pool in reach that may run the model is one the scenario fails
CUT = "cut"  # a what-if's: a failed location took every route within the SLO to a pool that may run it
DATA_CUT = "dataCut"  # a what-if's: the model's data is at a failed location, which no pool up can read from
UNMET_REASONS = {NO_ROOM: "no room in reach", DOWN: "every pool in reach that may run it is down",
                 CUT: "cut off by a failed location from every pool that may run it",
                 DATA_CUT: "its data is at a failed location: no pool that may run it can read it", MAX_REPLICAS: "at its maxReplicas", COST: "cost: pools in reach have room",
                 NO_POOL: "no pool in reach may run it: fit rules, required policies or SLO",
                 POLICY: "required policies forbid more replicas where there is room"}


def reason_text(reason: str, holds: Mapping[str, Sequence[str]] | Sequence[str] = (), gang: str | None = None,
                replicas: bool = False, data_at: Sequence[str] = ()) -> str:
    """A reason of ``UnmetReasons.why`` in words, naming the policies that hold the demand back and
    (``holds`` a mapping) the pools each holds: those that hold every pool in reach with room
    first, for relaxing only some of the policies serves nothing more where another holds the pool.
    For COST, ``holds`` are the preferred policies whose penalty makes serving it cost more. For
    NO_POOL, ``gang`` (``UnmetReasons.gang``) is the size of a gang no pool in reach holds whole.
    ``replicas``: what is unmet is a training or batch model's replicas, which Settings'
    unmetUsdPerReplica charges (an inference model's rate: unmetUsdPerRate). For DATA_CUT, ``data_at``:
    the failed locations the model's data is at."""
    if reason == DATA_CUT and data_at:
        one = len(data_at) == 1
        return (f"its data is at failed location{'' if one else 's'} {names(list(data_at), 3)}: no pool that may "
                "run it can read it")
    if reason == NO_POOL and gang is not None:
        return f"no pool in reach may run it: none holds its gang of {gang}"
    if reason == COST and isinstance(holds, Mapping) and holds:
        one = len(holds) == 1
        pools = sorted({p for ps in holds.values() for p in ps})
        return (f"cost: the {'penalty' if one else 'penalties'} of preferred {'policy' if one else 'policies'} "
                f"{', '.join(holds)} make{'s' if one else ''} serving it on {names(pools, 3)} cost more than leaving "
                f"it unmet (what Settings objective.{'unmetUsdPerReplica' if replicas else 'unmetUsdPerRate'} charges)")
    if reason != POLICY or not holds:
        return UNMET_REASONS.get(reason, reason)
    if not isinstance(holds, Mapping):  # the names alone
        return (f"required {'policy' if len(holds) == 1 else 'policies'} {', '.join(holds)} forbid"
                f"{'s' if len(holds) == 1 else ''} more replicas where there is room")
    pools = sorted({p for ps in holds.values() for p in ps})
    every = [name for name, ps in holds.items() if len(set(ps)) == len(pools)]
    some = [f"{name} on {names(sorted(ps), 3)}" for name, ps in holds.items() if name not in every]
    if not every:
        return (f"required policies forbid more replicas on every pool in reach with room, none on all: "
                f"{'; '.join(some)}")
    one = len(every) == 1
    also = f"; {'; '.join(some)} as well" if some else ""
    return (f"required {'policy' if one else 'policies'} {', '.join(every)} forbid{'s' if one else ''} more "
            f"replicas on every pool in reach with room ({names(pools, 3)}){also}")


# pools with room a model's extra replica is tried on, each check the policies' own over the fleet
# (bench M x4 with two locations down: 28 unmet entries, 20 checks, 0.17 s): beyond this many, all
# held by policies, the rest are taken to be held as well
HELD_TRIES = 16
# seconds of such checks for one plan's reasons: each takes 0.14 s at bench XL (from its cheapest-
# pool plan with demand x3: 40 of 109 unmet entries in 5.5 s); past them, a pool with room is
# taken to be free of policies, and the demand is put down to cost, as before the checks
HELD_SECONDS = 10.0


class UnmetReasons:
    """Why demand is left unmet in one plan, model by model (``why``)."""

    def __init__(self, fleet: Fleet, rules: Rules, placement: Placement,
                 broken: Sequence[Violation] | None = None, declared: Fleet | None = None,
                 gone: Collection[str] = ()) -> None:
        """``broken``: the placement's violations, where the caller priced it already. ``declared``:
        the fleet as its files declare it, where ``fleet`` is a scenario's with pools failed: a
        failed pool still holds, once back, the gang it could hold (losing it is a collapse).
        ``gone``: the locations the scenario fails, with their network (``whatif.apply_scenario``)."""
        self.fleet, self.rules, self.placement = fleet, rules, placement
        self.declared = fleet if declared is None else declared
        self.gone = frozenset(gone)
        self.used = {p: placement.gpus_used(fleet, p) for p in fleet.pools}
        self._held: dict[tuple[str, str], tuple[str, ...]] = {}
        self._nodes: dict[tuple[str, str], int | None] = {}  # the pool's nodes held_by settled on
        self._charged: dict[str, float] | None = None  # preferred policy -> the plan's penalty (USD/h)
        self._broken = None if broken is None else self._required(broken)  # (policy, subject) -> amount
        self._deadline: float | None = None  # set by the first check (HELD_SECONDS)

    @staticmethod
    def _required(broken: Sequence[Violation]) -> dict[tuple[str, str], float]:
        """The required policies' violations among ``broken``, each by its identity (``Violation.key``:
        its policy and the model or pool it is about), with how much."""
        out: dict[tuple[str, str], float] = {}
        for v in broken:
            if v.enforcement == "required":
                out[v.key] = out.get(v.key, 0.0) + v.amount
        return out

    def why(self, model: Model, location: str | None) -> tuple[str, dict[str, tuple[str, ...]]]:
        """Why demand of ``model`` at ``location`` (None: a training or batch replica) is left
        unmet, and the policies that hold it back, each with the pools it holds (those that hold
        every pool tried first): MAX_REPLICAS, the model runs its maxReplicas
        already; NO_ROOM, no pool its fit rules and required policies allow, within the demand's
        SLO, has GPUs left for a replica; POLICY, such pools have room, and one more replica on
        each (on HELD_TRIES of them at most) would break a required policy (a spread over failure
        domains the pools in reach do not span, a headroom, a budget, say); NO_POOL, no pool within
        the SLO, full or not (one a scenario fails included), may run it at all, or (a gang) none
        that may is big enough for all of it (``gang``), so that room would not help; DOWN, each
        pool in reach that may run it (and holds a gang of it whole) is one a what-if's scenario
        fails, where the fleet as declared gives it GPUs (a collapse, as NO_ROOM); CUT, no pool is
        within the SLO on the scenario's network, but one that may run it is on the declared one: a
        failed location took every such route (a collapse, as DOWN); DATA_CUT, the model's data is at
        a failed location (``gone``), which no pool reaches, and the fleet as declared has a pool
        within the SLO that may run it: the failure is why it is unmet (a collapse, as CUT); else COST, serving the demand there would cost more than the fleet charges for
        leaving it unmet, with the preferred policies (each with the pool) whose penalty is what
        makes it so on the cheapest such pool, if any. A gang's replicas go onto one pool together
        (``unit``): the room and the policies are checked for all of them."""
        fleet, placement = self.fleet, self.placement
        if model.spec.max_replicas is not None and placement.replicas_of(model.name) >= model.spec.max_replicas:
            return MAX_REPLICAS, {}
        slo = _slo(model, location)
        policies = required_of(fleet, model)
        if self.data_at(model) and any(self._holds_whole(model, pool)
                                       for pool in self._may_run(model, location, slo, policies, self.declared)):
            # no pool up reads data at a failed location (its own are down, and no link leaves it): "no
            # pool in reach may run it: fit rules, required policies or SLO" blamed the model
            return DATA_CUT, {}
        held: dict[str, list[str]] = {}  # policy -> the pools with room it holds back
        tried = 0
        unit = self.unit(model)
        room = [pool for pool in fleet.pools.values()
                if 0 < pool.gpus_per_replica(model.spec.replica.gpus) * unit <= pool.max_gpus - self.used.get(pool.name, 0)
                and (location is None
                     or within_slo(fleet.topology.latency_ms(location, pool.location.name), slo))]
        # cheapest for the model first: where serving would pay, if anywhere, and so where a
        # preferred policy's penalty is what makes it cost more than leaving the demand unmet
        for pool in sorted(room, key=lambda p: (_price(fleet, model, p), p.name)):
            if exclusion(fleet, self.rules, model, pool, policies) is None:
                holders = self.held_by(model, pool)
                if not holders:
                    return COST, {name: (pool.name,) for name in self._charged_off(model, pool, location)}
                for name in holders:
                    held.setdefault(name, []).append(pool.name)
                tried += 1
                if tried == HELD_TRIES:
                    break
        if held:
            # those that hold every pool tried first: relaxing only the others serves nothing more
            order = sorted(held, key=lambda name: (len(held[name]) < tried, name))
            return POLICY, {name: tuple(held[name]) for name in order}
        whole = [pool for pool in self._may_run(model, location, slo, policies) if self._holds_whole(model, pool)]
        if not whole:
            declared = self.declared
            if location is not None and declared.topology is not fleet.topology and any(
                    self._holds_whole(model, pool) for pool in self._may_run(model, location, slo, policies, declared)):
                return CUT, {}  # "no pool in reach may run it: fit rules, required policies or SLO" blamed the model
            return NO_POOL, {}
        if all(self.fleet.pools[p.name].max_gpus == 0 < self.declared.pools[p.name].max_gpus for p in whole):
            return DOWN, {}  # "no room in reach" sent the reader looking for full pools, and named none
        return NO_ROOM, {}

    def _charged_off(self, model: Model, pool: Pool, location: str | None) -> tuple[str, ...]:
        """The preferred policies whose penalty is what makes ``model``'s replica (its gang) on
        ``pool``, serving what it can of the demand unmet at ``location``, cost more than leaving
        it unmet: the plan's running cost, as the cost function prices it, falls with the replica
        there and its penalties aside, and does not with them. None named once the checks' time has
        run out."""
        penalties = self.penalties(model, pool)
        grows = tuple(name for name, usd in (penalties or {}).items() if usd > 0)
        if not penalties or not grows:
            return ()
        more = self._more(model, pool, self._nodes.get((model.name, pool.name)))
        if location is not None:
            rate = model.spec.throughput.get(pool.gpu.name, 0.0) * self.unit(model)
            short = sum(d.rate for d in model.spec.demand if d.location == location) - self.placement.routed(
                model.name, location)
            lat = self.fleet.topology.latency_ms(location, pool.location.name)
            more = replace(more, routes=(*more.routes, Route(model.name, location, pool.name, min(rate, short), lat)))
        gain = _serving_usd(self.fleet, more, model) - _serving_usd(self.fleet, self.placement, model)
        # what the replica adds to the penalties in all: one that falls with it counts against those that grow
        return grows if gain < 0 <= gain + sum(penalties.values()) else ()

    def data_at(self, model: Model) -> list[str]:
        """The failed locations (``gone``) ``model``'s data is at, in its order: no pool up can read it."""
        return list(dict.fromkeys(d.location for d in model.spec.data if d.location in self.gone))

    def _may_run(self, model: Model, location: str | None, slo: float | None,
                 policies: Sequence[Policy], fleet: Fleet | None = None) -> list[Pool]:
        """The pools within the SLO of demand at ``location``, full or not, that may run ``model``
        (``fleet``: the fleet whose network and fit rules say so, this plan's unless given: the
        declared one's, to tell what a what-if's failures took away)."""
        fleet = self.fleet if fleet is None else fleet
        return [pool for pool in fleet.pools.values()
                if (location is None or within_slo(fleet.topology.latency_ms(location, pool.location.name), slo))
                and exclusion(fleet, self.rules, model, pool, policies) is None]

    def full_in_reach(self, model: Model, location: str | None) -> list[str]:
        """The pools, up in this plan's fleet, within the SLO of ``model``'s demand at ``location``
        (None: a training or batch replica) that may run it and could hold its ``unit`` of replicas,
        but have too few GPUs left for one more: where demand unmet for NO_ROOM found none (a pool
        at 7 of 8 GPUs is full for a model of 2-GPU replicas, though not every GPU is used)."""
        unit = self.unit(model)
        full = []
        for pool in self._may_run(model, location, _slo(model, location), required_of(self.fleet, model)):
            need = pool.gpus_per_replica(model.spec.replica.gpus) * unit
            if 0 < need <= pool.max_gpus < self.used.get(pool.name, 0) + need:
                full.append(pool.name)
        return full

    def _holds_whole(self, model: Model, pool: Pool) -> bool:
        """``pool``, at the most GPUs its file gives it (a pool a scenario fails included), holds
        ``model``'s ``unit`` of replicas: a gang's every replica on one pool."""
        unit = self.unit(model)
        return unit == 1 or pool.gpus_per_replica(model.spec.replica.gpus) * unit <= self.declared.pools[
            pool.name].max_gpus

    def gang(self, model: Model) -> str | None:
        """The size of ``model``'s gang in words ("2 x 8 GPUs"), where pools may run its replicas
        but none is big enough for all of them on one pool: why it is unmet at any scale (NO_POOL).
        None for a model that is no gang, or where the gang is not what keeps it off every pool."""
        unit = self.unit(model)
        if unit == 1:
            return None
        pools = self._may_run(model, None, None, required_of(self.fleet, model))
        if not pools or any(self._holds_whole(model, pool) for pool in pools):
            return None
        return f"{unit} x {model.spec.replica.gpus} GPUs"

    @staticmethod
    def unit(model: Model) -> int:
        """The replicas of ``model`` that go onto one pool together: a gang's every replica (all or
        nothing, on one pool), else one."""
        if model.spec.gang_effective and not model.inference:
            return max(1, model.spec.replicas or 1)
        return 1

    def _more(self, model: Model, pool: Pool, count: int | None) -> Placement:
        """The plan with ``model``'s ``unit`` more on ``pool`` (a gang moved there whole), the pool
        at ``count`` nodes (None: as the plan has it)."""
        unit = self.unit(model)
        replicas = dict(self.placement.replicas)
        if unit > 1:  # a gang moves whole: off the pool it has, all onto this one
            replicas = {k: r for k, r in replicas.items() if k[0] != model.name}
        key = (model.name, pool.name)
        replicas[key] = replicas.get(key, 0) + unit
        at = self.placement.nodes if count is None else {**self.placement.nodes, pool.name: count}
        return replace(self.placement, replicas=replicas, nodes=at)

    def _in_time(self) -> bool:
        if self._deadline is None:
            self._deadline = time.monotonic() + HELD_SECONDS
        return time.monotonic() < self._deadline

    def held_by(self, model: Model, pool: Pool) -> tuple[str, ...] | None:
        """The required policies one more replica of ``model`` on ``pool`` would break (a gang: all
        its replicas there, off any pool it has), by the policies' own checks (the cost function's):
        a violation the plan has already (the same policy, about the same model or pool) counts only
        where the replica makes it worse, whatever its words say (they change with the counts: one
        more replica off spot turned "m: 2 of 3 replicas on spot" into "2 of 4", a smaller
        violation, and the replica was said to break the policy). An elastic pool gets the nodes
        the replicas need, and then all it may have: held only if both break a policy (more nodes
        free GPUs a headroom asks for, fewer keep a budget). None, unchecked, once the plan's
        checks have had their HELD_SECONDS."""
        key = (model.name, pool.name)
        if key not in self._held:
            if not self._in_time():
                return None
            if self._broken is None:
                self._broken = self._required(violations(self.fleet, self.placement, self.rules))
            nodes: list[int | None] = [None]
            if pool.elastic:
                need = self.used.get(pool.name, 0) + pool.gpus_per_replica(model.spec.replica.gpus) * self.unit(model)
                have = self.placement.nodes.get(pool.name, pool.min_nodes)
                nodes = [*sorted({max(have, min(pool.max_nodes, -(-need // pool.per_node))), pool.max_nodes})]
            held: tuple[str, ...] = ()
            for count in nodes:
                more = self._more(model, pool, count)
                required = [policy for policy in self.fleet.policies if policy.required]
                after = self._required(violations(self.fleet, more, self.rules, required))
                held = tuple(sorted({policy for (policy, subject), amount in after.items()
                                     if amount > self._broken.get((policy, subject), 0.0) + 1e-9}))
                self._nodes[key] = count
                if not held:
                    break
            self._held[key] = held
        return self._held[key]

    def penalties(self, model: Model, pool: Pool) -> dict[str, float] | None:
        """The preferred policies whose penalty (USD/h, as the cost function prices it) changes by a
        cent or more with ``model``'s replica (its gang) on ``pool``, by how much (less than 0 where
        it falls: an elastic pool's new node lowers a headroom's, a replica on another failure domain
        a spread's), at the nodes ``held_by`` gave the pool; their sum is what ``price``'s penalty
        changes by. None, unchecked, once the plan's checks have had their HELD_SECONDS."""
        key = (model.name, pool.name)
        if not self._in_time() or self.held_by(model, pool) is None:
            return None
        preferred = [p for p in self.fleet.policies if not p.required]
        if not preferred:
            return {}

        def charged(placement: Placement) -> dict[str, float]:
            return penalty_by_policy(violations(self.fleet, placement, self.rules, preferred))

        if self._charged is None:
            self._charged = charged(self.placement)
        return penalty_changes(self._charged, charged(self._more(model, pool, self._nodes.get(key))))


def explain(fleet: Fleet, rules: Rules, model: str, result: SolveResult, current: dict[tuple[str, str], int],
            cands: Candidates, progress: Callable[[str], None] | None = None) -> Explanation:
    placement = result.placement
    assert placement is not None
    placed = placement.pools_of(model)
    # by demand location and pool, as the plan file holds them: `--plan` gave a saved plan's routes in
    # that order and a fresh plan's in the solver's
    routes = sorted((r.demand_location, r.pool, r.rate, r.latency_ms) for r in placement.routes if r.model == model)
    unmet = [(loc, rate) for m, loc, rate in placement.unmet(fleet) if m == model]
    terms = model_usd(fleet, placement, model)
    ex = Explanation(model, placed, terms["compute"], routes, unmet, terms=terms)
    ex.missing = placement.missing_replicas(fleet, model)
    preferred = [p for p in fleet.policies if not p.required]
    for v in violations(fleet, placement, rules, preferred) if preferred else ():
        if v.subject == model and v.amount * v.penalty_usd_per_hour >= PENNY:
            usd, said = ex.penalties.get(v.policy, (0.0, ""))
            ex.penalties[v.policy] = (usd + v.amount * v.penalty_usd_per_hour, "; ".join(filter(None, (said, v.detail))))
    if not placed:
        ex.not_needed = not_needed(fleet.models[model])
    ex.idle = idle_replicas(fleet, rules, placement, model)
    reasons = UnmetReasons(fleet, rules, placement)
    if unmet or ex.missing:
        ex.unmet_why = {loc: reason_text(*reasons.why(fleet.models[model], loc)) for loc, _ in unmet}
        if ex.missing:
            ex.missing_why = reason_text(*reasons.why(fleet.models[model], None), reasons.gang(fleet.models[model]),
                                         replicas=True)
    minimum = bool(fleet.models[model].spec.min_replicas)
    minimum_only: dict[str, str] = {}  # eligible pools no demand reaches in time -> that, in words
    for pool in fleet.pools:
        if pool in placed:
            continue
        reason = cands.excluded.get((model, pool))
        late = None if reason is not None else _late(fleet, model, pool)
        if reason is not None:
            ex.out[pool] = str(reason)
        elif late is not None and not minimum:
            ex.out[pool] = str(Exclusion(SLO, late))
        else:  # a pool no demand reaches in time still holds replicas of a minimum (the plan may put them there)
            ex.unused_cost[pool] = cost_alone(fleet, placement, fleet.models[model], fleet.pools[pool], current)
            if late is not None:
                minimum_only[pool] = late
    # cheapest first: the pools a reader asks about first get the policies' checks, within their time
    for pool in sorted(ex.unused_cost, key=lambda p: (ex.unused_cost[p], p)):
        note = _occupants(fleet, placement, pool, model, reasons)
        if pool in minimum_only:  # every note starts "eligible"
            note = f"eligible, for its minReplicas only, as {minimum_only[pool]}{note.removeprefix('eligible')}"
        ex.unused[pool] = note
    if placed:
        forbid = frozenset((model, p) for p in placed)
        from placer.optimizer.scale import use_large

        if use_large(fleet):
            # two runs of the scalable route differ by more than most models' moves cost (at L, by
            # up to 130 USD/h; a re-plan of XL's plan came out 389 USD/h cheaper for the fleet
            # with the model off its pools): the model alone moves, the others held where they are
            from placer.optimizer.alone import replace_alone

            ex.next_best_from_plan = True
            base, moved = replace_alone(fleet, rules, placement, model, placed, current)
            if moved is None:
                ex.no_next_best = NOWHERE
            else:
                _next_best(ex, fleet, rules, moved, base, current)
            return ex
        alt = optimize(fleet, rules, current=current, forbid=forbid, progress=progress)
        if alt.placement is not None:
            _next_best(ex, fleet, rules, alt.placement, placement, current)
        else:
            ex.no_next_best = NOWHERE if alt.status == "INFEASIBLE" else (
                f"the solver found none within its time limit ({alt.status}; raise Settings solver.timeLimitSeconds)")
    return ex


# why a model has no next best: kept off its pools, no placement of the fleet holds
NOWHERE = "no plan of the fleet holds with it kept off them (its minReplicas or required policies need the pools it has)"


def _next_best(ex: Explanation, fleet: Fleet, rules: Rules, alt: Placement, plan: Placement,
               current: dict[tuple[str, str], int]) -> None:
    """``ex``'s next best: ``alt``, priced against ``plan``, its running cost and its churn apart
    (summed, they once read "USD/h": 108.00 where the running cost rose 148 USD/h and the move
    saved 40 USD of churn)."""
    moved, kept = price(fleet, alt, rules, current), price(fleet, plan, rules, current)
    ex.next_best = alt.pools_of(ex.model)
    ex.next_best_delta = moved.total - kept.total
    ex.next_best_churn = moved.churn - kept.churn


GROUP_ABOVE = 40  # beyond this many other pools, ``grouped`` gathers pools out for the same reason into one row
_FREE = re.compile(r", (\d+) of (\d+) GPUs free$")


def _cheapest_first(ex: Explanation) -> list[tuple[str, str]]:
    """The eligible pools not chosen, with their notes: where the model would cost least alone first
    (``cost_alone``), a tie by name."""
    return sorted(ex.unused.items(), key=lambda kv: (ex.unused_cost.get(kv[0], math.inf), kv[0]))


def grouped(ex: Explanation, above: int = GROUP_ABOVE) -> list[tuple[list[str], str]]:
    """The "other pools" rows, (pools, reason): one row per pool (those out first, then the
    eligible ones not chosen), or, beyond ``above`` pools (at bench L a model has about 300), one
    row per reason, so that every pool still appears, with its reason. A reason that names its
    own pool (spot, node-size, most policies) has the name written ``<pool>`` after its kind, and
    an eligible pool its free and all GPUs beside its name; a pool alone in its row keeps its own text
    (a name that is also a word of its reason, say a pool called "node", makes a template no other
    pool shares)."""
    if len(ex.out) + len(ex.unused) <= above:
        return [([pool], why) for pool, why in [*sorted(ex.out.items()), *_cheapest_first(ex)]]
    groups: dict[str, list[tuple[str, str, str]]] = {}  # template -> (pool, its label, its own text)
    for pool, why in sorted(ex.out.items()):
        kind, sep, detail = why.partition(": ")
        name = re.compile(rf"(?<![\w.-]){re.escape(pool)}(?![\w.-])")
        groups.setdefault(kind + sep + name.sub("<pool>", detail), []).append((pool, pool, why))
    order = ", cheapest for it first" if ex.unused_cost else ""
    for pool, why in _cheapest_first(ex):
        free = _FREE.search(why)
        key, label = ((f"{why[:free.start()]}; free/all GPUs beside each{order}", f"{pool} ({free[1]}/{free[2]})")
                      if free else (why, pool))
        groups.setdefault(key, []).append((pool, label, why))
    return [([label for _, label, _ in members], key) if len(members) > 1 else ([members[0][0]], members[0][2])
            for key, members in groups.items()]
