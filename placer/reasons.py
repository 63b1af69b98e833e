"""Why a deployment's replicas change: the reasons a plan's changes give (SPEC section 3).

Each reason is checked, not guessed from whether a count goes up or down: the running placement
(the state's replicas on the fleet's pools) is measured against the new fleet with the policies'
own checks (``cost.violations``), the model's own counts and demand, and the one cost function
(``cost.model_compute_usd``, at the fleet's prices). A policy is named where moving the model as
the plan does lessens what the running placement breaks of it; "cheaper placement" only where the
model's compute falls; the fleet's compute only as ``cost.pool_compute_usd`` prices the pools, and
the model's egress and latency as ``cost.model_egress_usd`` and ``cost.latency_usd`` price them.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

import numpy as np

from placer.candidates import Candidates, within_slo
from placer.cost import (
    PENNY,
    latency_usd,
    model_compute_usd,
    model_egress_by_source,
    penalty_by_policy,
    pool_compute_usd,
    unmet_usd,
    violations,
)
from placer.fleet import Fleet, Model, Policy
from placer.placement import Placement, Route
from placer.policy import Rules, Violation
from placer.render.report import rates_apart
from placer.state import State


def running(fleet: Fleet, state: State, placement: Placement) -> Placement:
    """What runs, as the state records it, on the fleet's models and pools: the placement the
    plan's changes start from. Pools the state does not size keep the plan's nodes."""
    replicas = {(m, p): r for (m, p), r in state.replicas().items() if m in fleet.models and p in fleet.pools}
    nodes = {**placement.nodes, **{p: n for p, n in state.nodes().items() if p in fleet.pools}}
    return Placement(replicas, nodes)


class Reasons:
    """The reasons of each deployment change from ``state`` to ``placement``; each model's are
    found once, whichever of its changes asks first."""

    def __init__(self, fleet: Fleet, state: State, placement: Placement, cands: Candidates | None,
                 rules: Rules | None) -> None:
        self.fleet, self.state, self.placement, self.cands, self.rules = fleet, state, placement, cands, rules
        self.before = running(fleet, state, placement)
        self.runs: dict[str, dict[str, int]] = {}  # model -> pool -> replicas, on any pool the state records
        for (m, p), r in state.replicas().items():
            self.runs.setdefault(m, {})[p] = r
        self._broken: dict[str, list[Violation]] | None = None
        self._policies: dict[str, tuple[str, ...]] = {}
        self._otherwise: dict[str, str] = {}
        self._selected: dict[str, frozenset[str]] = {}  # policy -> the models it selects
        self._required: dict[tuple[str, str], float] | None = None  # what the plan breaks of required policies

    def of(self, model: str, pool: str, before: int, after: int) -> tuple[str, ...]:
        """Why ``model``'s replicas on ``pool`` go from ``before`` to ``after``."""
        fleet, state, cands = self.fleet, self.state, self.cands
        if model not in fleet.models:
            return ("model removed from the fleet",)
        if pool not in fleet.pools:
            return ("pool removed from the fleet",)
        if cands is not None:
            if model in cands.retired:
                return (f"retired: {cands.retired[model]}",)
            excluded = cands.excluded.get((model, pool))
            if excluded is not None and after == 0:
                return (f"no longer eligible: {excluded}",)
        if before == 0 and not state.deployments:
            return ("initial placement",)
        reasons: list[str] = []
        m = fleet.models[model]
        prior = state.models.get(model, {}).get("demand")
        if (m.inference and prior is not None and abs(prior - m.total_demand) > 1e-9 and self.follows(m, prior)
                and (after - before) * (m.total_demand - prior) > 0):
            # as the plan's tables give rates (":g" said 1e+06 -> 1.23457e+06, six digits kept)
            rate = rates_apart([prior, m.total_demand])
            reasons.append(f"demand changed {rate.format(prior)} -> {rate.format(m.total_demand)}")
        reasons += self.policies(m)
        reasons += self.counts(m, before, after)
        if not reasons:
            if model not in self._otherwise:
                self._otherwise[model] = self.otherwise(m)
            reasons.append(self._otherwise[model])
        return tuple(reasons)

    def follows(self, model: Model, prior: float) -> bool:
        """Whether the model's replicas, all its pools together, move the way its demand did
        (more for more): a move with as many replicas, or more for less demand, is for another
        reason. So is a change of one pool's replicas the other way (``of``): 8 replicas made on a
        pool said 'demand changed 21,179 -> 20,563' where the demand had moved there from another
        location (96 of 822 such lines in 15 re-plans of bench M with demand and data moved)."""
        grows = self.placement.replicas_of(model.name) - sum(self.runs.get(model.name, {}).values())
        return grows * (model.total_demand - prior) > 0

    def counts(self, model: Model, before: int, after: int) -> list[str]:
        """The model's own count its running replicas (on any pool) are short of, for a change
        that adds replicas, or over, for one that takes them away."""
        runs = sum(self.runs.get(model.name, {}).values())
        spec = model.spec
        if model.inference:
            bounds = [("minReplicas", spec.min_replicas, 1), ("maxReplicas", spec.max_replicas, -1)]
        else:
            bounds = [("replicas", spec.replicas, 1), ("replicas", spec.replicas, -1)]
        return [f"{name} {n}: it runs {runs}" for name, n, sign in bounds
                if n is not None and (n - runs) * sign > 0 and (after - before) * sign > 0]

    def otherwise(self, model: Model) -> str:
        """Why a change no demand, policy or count of the model's own asks for is made: the
        model is new, cheaper as planned (its compute, as the cost function prices it, against
        what it runs, at the fleet's prices), short of its demand as it runs (where its SLOs let
        its replicas serve it), moved to make room for other models, off nodes the plan saves, or
        where it saves the fleet's compute, or its egress or latency; else only what it costs."""
        name = model.name
        was = model_compute_usd(self.fleet, self.before, name)
        now = model_compute_usd(self.fleet, self.placement, name)
        if name not in self.runs and self.state.models and name not in self.state.models:
            return "model added to the fleet"
        if now < was - PENNY:
            return f"cheaper placement: its compute {was:,.2f} -> {now:,.2f} USD/h"
        short = self._short(model) if model.inference else None
        if short:
            return short
        rooms = [f"room on {p} for {', '.join(others)}{why}" for p, others, why in self._displaced(model)]
        if rooms:
            return "; ".join(rooms)
        fewer = self._shrunk(model)
        if fewer:
            return f"{'; '.join(fewer)}, its compute {was:,.2f} -> {now:,.2f} USD/h"
        saves = self._saves(model, was, now)
        if saves:
            return saves
        return (f"placed anew by the plan, its compute {was:,.2f} -> {now:,.2f} USD/h "
                f"(`placer explain FLEET {name}` says why it runs where it does)")

    def _short(self, model: Model) -> str | None:
        """How much of its demand the replicas the model may keep (on pools it is not excluded
        from) serve, where that falls short of it and the plan's serve more; or None. Served as
        routes may be: a location's demand only by pools within its latency SLO, which is said where
        it is why they fall short (their throughput summed said 'placed anew' of a replica moved to
        where demand grew, 3 of 9 such models in five 5% re-plans of bench M)."""
        fleet, name, demand = self.fleet, model.name, model.total_demand
        excluded = self.cands.excluded if self.cands is not None else {}
        kept = {p: r for p, r in self.before.pools_of(name).items() if (name, p) not in excluded}
        serve = serves(fleet, model, kept)
        # a rate no pool reaches in time is no reason to move: the plan's replicas must serve more
        if serve >= demand - 1e-9 or serves(fleet, model, self.placement.pools_of(name)) <= serve + 1e-6:
            return None
        rate = rates_apart([serve, demand])
        summed = sum(r * model.spec.throughput.get(fleet.pools[p].gpu.name, 0.0) for p, r in kept.items())
        slo = " within its latency SLOs" if summed > serve + 1e-6 else ""
        return f"capacity for demand: the replicas it may keep serve {rate.format(serve)} of its {rate.format(demand)}{slo}"

    def _displaced(self, model: Model) -> list[tuple[str, list[str], str]]:
        """The pools the model leaves replicas on that, as planned, cannot hold them beside the
        other models that grow there, with those models and, where the pool's GPUs could, the
        required policy on it that they would break (a headroom that keeps GPUs free: such a move
        said 'placed anew by the plan', 8 of 16 of them in five re-plans of bench M)."""
        out = []
        fleet, old, new = self.fleet, self.before, self.placement
        each = model.spec.replica.gpus
        for p, r in sorted(old.pools_of(model.name).items()):
            freed = (r - new.replicas.get((model.name, p), 0)) * fleet.pools[p].gpus_per_replica(each)
            others = sorted(m for m, n in new.models_on(p).items()
                            if m != model.name and n > old.replicas.get((m, p), 0))
            if freed <= 0 or not others:
                continue
            if new.gpus_used(fleet, p) + freed > new.gpus_capacity(fleet, p):
                out.append((p, others, ""))
            elif (broken := self._kept_breaks(model.name, p, r)) is not None:
                out.append((p, others, f" (kept there, its replicas break required policy {broken.policy}: "
                                       f"{broken.detail})"))
        return out

    def _shrunk(self, model: Model) -> list[str]:
        """The elastic pools the model leaves replicas on that the plan shrinks to fewer nodes than
        would hold them, each with the nodes' price, and where its replicas go onto nodes that run
        already: a move that saves a node though it costs the model more a GPU (it said 'placed anew
        by the plan, its compute 3.47 -> 3.70 USD/h' of one that saved 3.47 at bench M)."""
        fleet, old, new = self.fleet, self.before, self.placement
        name, each = model.name, model.spec.replica.gpus
        out = []
        for p, r in sorted(old.pools_of(name).items()):
            pool = fleet.pools[p]
            left = r - new.replicas.get((name, p), 0)
            was, now = old.nodes.get(p, pool.min_nodes), new.nodes.get(p, pool.min_nodes)
            if (pool.elastic and left > 0 and now < was
                    and new.gpus_used(fleet, p) + left * pool.gpus_per_replica(each) > new.gpus_capacity(fleet, p)):
                saved = (was - now) * pool.per_node * pool.usd_per_gpu_hour
                out.append(f"{p} shrinks {was} -> {now} nodes ({saved:,.2f} USD/h less), too few to keep its "
                           "replicas there")
        onto = sorted(q for q, r in new.pools_of(name).items()
                      if r > old.replicas.get((name, q), 0) and fleet.pools[q].elastic
                      and new.nodes.get(q, fleet.pools[q].min_nodes) <= old.nodes.get(q, fleet.pools[q].min_nodes))
        if out and onto:
            out.append(f"it moves onto GPUs {', '.join(onto)} run{'s' if len(onto) == 1 else ''} already")
        return out

    def _saves(self, model: Model, was: float, now: float) -> str | None:
        """What the model's replicas as planned save against them kept as they ran, the others as
        planned, where that saves a cent or more in all, by the cost function's terms: the fleet's
        compute (``cost.pool_compute_usd``: an elastic pool's nodes, a fixed pool's GPUs used), and
        how; the model's egress, by where its data is; its latency, by where its demand is. Each term
        that falls is named, each that grows given as it goes, with the model's own compute (``was``,
        ``now``); None where none falls by a cent. Kept, an elastic pool it leaves grows to the nodes
        that hold it again, one it moves onto shrinks by the nodes its replicas there take, and its
        demand is routed over the replicas it ran as the plan's search routes it (``routes_over``);
        None where the nodes or a fixed pool's GPUs cannot hold it, or it breaks a required policy
        more than the plan does (or that is not known). A move off a fixed pool onto GPUs that nodes
        an elastic pool runs anyway leave idle costs the model more a GPU and the fleet less (it said
        'placed anew by the plan', 6 of 9 such models in five 5% re-plans of bench M); one nearer its
        users or its data costs more compute and less latency or egress (it said 'placed anew' too,
        20 of 20 such lines in five re-plans of bench M with latency priced at 0.02)."""
        fleet, new = self.fleet, self.placement
        if self.rules is None and any(p.required for p in fleet.policies):
            return None
        name = model.name
        ran, runs = self.before.pools_of(name), new.pools_of(name)
        left = sorted(p for p in ran if ran[p] > runs.get(p, 0))
        went = sorted(p for p in runs if runs[p] > ran.get(p, 0))
        kept = self._swap(new, self.before, model)
        nodes = dict(new.nodes)
        for p in left + went:
            pool = fleet.pools[p]
            if not pool.elastic:
                if kept.gpus_used(fleet, p) > kept.gpus_capacity(fleet, p):
                    return None
                continue
            planned, hold = new.nodes.get(p, pool.min_nodes), _hold(fleet, kept, p)
            # where it goes, the nodes its replicas take, not those the plan runs beyond what it uses
            nodes[p] = max(planned, hold) if p in left else planned - (_hold(fleet, new, p) - hold)
            if nodes[p] > pool.max_nodes:
                return None
        routes = routes_over(fleet, model, ran) if model.inference else ()
        kept = Placement(kept.replicas, nodes, (*(r for r in new.routes if r.model != name), *routes))
        if self._breaks_more(kept, {name, "", *left, *went}) is not None:
            return None
        compute = sum(pool_compute_usd(fleet, kept, p) - pool_compute_usd(fleet, new, p) for p in left + went)
        mine = [r for r in new.routes if r.model == name]
        # each term kept as it ran and as planned (USD/h), by where its data or its demand is
        egress = _pairs(model_egress_by_source(fleet, kept, model, routes), model_egress_by_source(fleet, new, model, mine))
        latency = _pairs(_latency_by_location(fleet, kept, name), _latency_by_location(fleet, new, name))
        terms = {"egress": (sum(k for k, _ in egress.values()), sum(n for _, n in egress.values())),
                 "latency": (sum(k for k, _ in latency.values()), sum(n for _, n in latency.values()))}
        unmet = unmet_usd(fleet, kept, name) - unmet_usd(fleet, new, name)
        if compute + sum(k - n for k, n in terms.values()) + unmet < PENNY:
            return None
        falls, hows = [], []
        if compute >= PENNY:
            falls.append(f"the fleet's compute {compute:,.2f}")
            hows.append(f"it {_and(self._how(model, ran, runs, left, went, nodes))}")
        if _falls(*terms["egress"]):
            falls.append(f"its egress {terms['egress'][0] - terms['egress'][1]:,.2f}")
            hows += [f"egress from its data in {loc} {k:,.2f} -> {n:,.2f} USD/h" for loc, (k, n) in egress.items()
                     if _falls(k, n)]
        if _falls(*terms["latency"]):
            falls.append(f"its latency {terms['latency'][0] - terms['latency'][1]:,.2f}")
            ms = _pairs(_mean_latency_ms(kept, name), _mean_latency_ms(new, name))
            hows += [f"latency of its demand from {loc} {k:,.2f} -> {n:,.2f} USD/h ({_ms(ms[loc][0])} -> "
                     f"{_ms(ms[loc][1])} ms)" for loc, (k, n) in latency.items() if _falls(k, n)]
        if not falls:
            return None
        grows = [f"its {term} {k:,.2f} -> {n:,.2f} USD/h" for term, (k, n) in terms.items() if _falls(n, k)]
        own = f"its {'own ' if compute >= PENNY else ''}compute {was:,.2f} -> {now:,.2f} USD/h"
        return f"{_and(falls)} USD/h less than with it kept as it ran: {', '.join(hows)}; {', '.join([*grows, own])}"

    def _how(self, model: Model, ran: Mapping[str, int], runs: Mapping[str, int], left: Sequence[str],
             went: Sequence[str], nodes: Mapping[str, int]) -> list[str]:
        """How the model's replicas as planned change the fleet's compute against them kept as they
        ran (``nodes``: the elastic pools' nodes then), pool by pool."""
        fleet, new = self.fleet, self.placement
        how = []
        for p in [*left, *went]:
            pool = fleet.pools[p]
            gpus = abs(ran.get(p, 0) - runs.get(p, 0)) * pool.gpus_per_replica(model.spec.replica.gpus)
            more = nodes[p] - new.nodes.get(p, pool.min_nodes)  # kept: > 0 where it leaves, < 0 where it goes
            if not pool.elastic:
                how.append(f"{'frees' if p in left else 'takes'} {_n(gpus, 'GPU')} of {p}")
            elif more:
                how.append(f"frees {_n(more, 'node')} of {p}" if more > 0 else f"takes {_n(-more, 'node')} more of {p}")
            elif p in went:
                how.append(f"uses idle GPUs of the nodes {p} runs anyway")
        return how

    def _kept_breaks(self, model: str, pool: str, replicas: int) -> Violation | None:
        """A required policy on ``pool`` that the plan, with ``model``'s ``replicas`` kept there,
        breaks there more than the plan does; or None."""
        kept = dict(self.placement.replicas)
        kept[(model, pool)] = replicas
        return self._breaks_more(Placement(kept, self.placement.nodes), {pool})

    def _breaks_more(self, other: Placement, subjects: Collection[str]) -> Violation | None:
        """A required policy's violation about one of ``subjects`` (a model, a pool, "" for a
        budget) that ``other`` breaks more than the plan does; or None (None too without the
        policies' rules)."""
        required = [p for p in self.fleet.policies if p.required]
        if not required or self.rules is None:
            return None
        if self._required is None:
            self._required = _amounts(violations(self.fleet, self.placement, self.rules, required))
        found = [v for v in violations(self.fleet, other, self.rules, required) if v.subject in subjects]
        more = _amounts(found)
        return next((v for v in found if more[v.key] > self._required.get(v.key, 0.0) + 1e-9), None)

    def broken(self) -> dict[str, list[Violation]]:
        """The running placement's violations of the fleet's policies, policy by policy."""
        if self._broken is None:
            self._broken = {}
            if self.rules is not None:
                for v in violations(self.fleet, self.before, self.rules):
                    self._broken.setdefault(v.policy, []).append(v)
        return self._broken

    def policies(self, model: Model) -> tuple[str, ...]:
        """The policies that select ``model`` and that the running placement breaks, where the
        model's planned replicas lessen that (a required one at all, a preferred one by its
        penalty): the running placement with this model alone as planned breaks them less, or,
        failing those (two models off one pool, neither enough alone), the plan with this model
        alone as it runs breaks them more. Each with what the running placement breaks of it."""
        if model.name not in self._policies:
            broken = self.broken()
            mine = [p for p in self.fleet.policies if p.name in broken and model.name in self._selects(p)]
            alone = self._swap(self.before, self.placement, model) if mine else self.before
            found = [why for p in mine if (why := self._lessened(p, None, alone))]
            if mine and not found:
                back = self._swap(self.placement, self.before, model)
                found = [why for p in mine if (why := self._lessened(p, back, self.placement))]
            self._policies[model.name] = tuple(found)
        return self._policies[model.name]

    def _selects(self, policy: Policy) -> frozenset[str]:
        """The names of the models ``policy`` selects (asked once per changed model)."""
        if policy.name not in self._selected:
            self._selected[policy.name] = frozenset(m.name for m in self.fleet.models_of(policy.spec.models))
        return self._selected[policy.name]

    @staticmethod
    def _swap(base: Placement, other: Placement, model: Model) -> Placement:
        """``base`` with ``model``'s replicas as ``other`` has them."""
        replicas = {k: r for k, r in base.replicas.items() if k[0] != model.name}
        replicas.update({k: r for k, r in other.replicas.items() if k[0] == model.name and r > 0})
        return Placement(replicas, base.nodes)

    def _lessened(self, policy: Policy, was_at: Placement | None, at: Placement) -> str | None:
        """What ``policy`` says the running placement breaks, where ``at`` breaks it less than
        ``was_at`` (None: the running placement) does; or None."""
        assert self.rules is not None  # broken() found nothing without rules
        running = self.broken()[policy.name]
        was = running if was_at is None else violations(self.fleet, was_at, self.rules, [policy])
        now = violations(self.fleet, at, self.rules, [policy])
        detail = _changed(running, now)
        if policy.required:
            if sum(v.amount for v in now) < sum(v.amount for v in was) - 1e-9:
                return f"required policy {policy.name}, which the running placement breaks: {detail}"
            return None
        saved = penalty_by_policy(was).get(policy.name, 0.0) - penalty_by_policy(now).get(policy.name, 0.0)
        if saved >= PENNY:
            return f"preferred policy {policy.name}, whose penalty this lowers by {saved:,.2f} USD/h: {detail}"
        return None


def serves(fleet: Fleet, model: Model, replicas: Mapping[str, int]) -> float:
    """The most of ``model``'s demand its ``replicas`` (pool -> count) serve, each demand location's
    only on pools within its latency SLO (a flow: a replica serves one location or shares its
    throughput among several). Summing the replicas' throughput said a replica far from where the
    demand grew served it (bench M: 'placed anew' of three models whose demand outgrew them so)."""
    import networkx as nx  # here: a re-plan's question; every plan imported networkx for it (0.2 s)

    graph = nx.DiGraph()
    for i, d in enumerate(model.spec.demand):
        graph.add_edge("demand", ("at", i), capacity=d.rate)
        for p in replicas:
            if within_slo(fleet.topology.latency_ms(d.location, fleet.pools[p].location.name), d.latency_slo_ms):
                graph.add_edge(("at", i), ("on", p))  # no capacity: as much as the pool's replicas serve
    for p, r in replicas.items():
        graph.add_edge(("on", p), "served", capacity=r * model.spec.throughput.get(fleet.pools[p].gpu.name, 0.0))
    if "demand" not in graph or "served" not in graph:
        return 0.0
    return float(nx.maximum_flow_value(graph, "demand", "served"))


def routes_over(fleet: Fleet, model: Model, replicas: Mapping[str, int]) -> tuple[Route, ...]:
    """The routes of inference ``model``'s demand over its ``replicas`` (pool -> count) that cost
    least as the plan's search prices them: each location's demand onto pools within its latency
    SLO, as much as their replicas serve, each unit of rate at its latency and its share of the
    model's egress (``cost.model_egress_usd``), against what it costs unmet (a linear program)."""
    obj, demand = fleet.settings.objective, model.total_demand
    pairs: list[tuple[str, str, float, float]] = []  # demand location, pool, latency, USD/h per unit of rate
    for d in model.spec.demand:
        for p, r in sorted(replicas.items()):
            pool = fleet.pools[p]
            lat = fleet.topology.latency_ms(d.location, pool.location.name)
            if d.rate <= 0 or r <= 0 or model.spec.throughput.get(pool.gpu.name, 0.0) <= 0 \
                    or not within_slo(lat, d.latency_slo_ms):
                continue
            egress = sum(s.gb_per_hour * fleet.topology.egress_usd_per_gb(s.location, pool.location.name)
                         for s in model.spec.data) / demand
            pairs.append((d.location, p, lat, obj.latency_usd_per_ms_per1k_rate * lat / 1000.0 + egress
                          - obj.unmet_usd_per_rate * model.priority_factor))
    if not pairs or not all(math.isfinite(usd) for *_, usd in pairs):
        return ()
    # here, not at the top: scipy.optimize takes a second to import, which every plan paid (diff imports
    # this module) where only a re-plan's change without another reason asks for these routes
    from scipy.optimize import linprog

    locations = sorted({loc for loc, *_ in pairs})
    pools = sorted({p for _, p, *_ in pairs})
    rows = np.zeros((len(locations) + len(pools), len(pairs)))
    for j, (loc, p, _, _) in enumerate(pairs):
        rows[locations.index(loc), j] = 1.0
        rows[len(locations) + pools.index(p), j] = 1.0
    rates = [sum(d.rate for d in model.spec.demand if d.location == loc) for loc in locations]
    serve = [replicas[p] * model.spec.throughput[fleet.pools[p].gpu.name] for p in pools]
    found = linprog([usd for *_, usd in pairs], A_ub=rows, b_ub=[*rates, *serve], bounds=(0, None), method="highs")
    if found.status != 0:
        return ()
    return tuple(Route(model.name, loc, p, float(x), lat) for (loc, p, lat, _), x in zip(pairs, found.x, strict=True)
                 if x > 1e-9)


def _latency_by_location(fleet: Fleet, placement: Placement, model: str) -> dict[str, float]:
    """``model``'s latency cost (USD/h), as ``cost.latency_usd`` prices its routes, by demand location."""
    out: dict[str, tuple[Route, ...]] = {}
    for r in placement.routes:
        if r.model == model:
            out[r.demand_location] = (*out.get(r.demand_location, ()), r)
    return {loc: latency_usd(fleet, Placement({}, {}, routes), model) for loc, routes in sorted(out.items())}


def _mean_latency_ms(placement: Placement, model: str) -> dict[str, float]:
    """The latency (ms) of ``model``'s demand routed from each location, by the rate routed each way."""
    rate: dict[str, float] = {}
    ms: dict[str, float] = {}
    for r in placement.routes:
        if r.model == model:
            rate[r.demand_location] = rate.get(r.demand_location, 0.0) + r.rate
            ms[r.demand_location] = ms.get(r.demand_location, 0.0) + r.rate * r.latency_ms
    return {loc: ms[loc] / rate[loc] if rate[loc] > 0 else 0.0 for loc in rate}


def _pairs(kept: Mapping[str, float], planned: Mapping[str, float]) -> dict[str, tuple[float, float]]:
    """Each location's amount in ``kept`` and in ``planned`` (0 where it has none)."""
    return {k: (kept.get(k, 0.0), planned.get(k, 0.0)) for k in sorted({*kept, *planned})}


def _falls(was: float, now: float) -> bool:
    """Whether an amount (USD/h) falls from ``was`` to ``now`` by a cent or more, and as the reasons
    give them, to the cent (a term that grew 0.226 -> 0.234 read 'its egress 0.23 -> 0.23 USD/h')."""
    return was - now >= PENNY and f"{was:,.2f}" != f"{now:,.2f}"


def _ms(ms: float) -> str:
    return f"{round(ms, 1):,g}"


def _hold(fleet: Fleet, placement: Placement, pool: str) -> int:
    """The fewest nodes of elastic ``pool`` that hold what ``placement`` runs there."""
    p = fleet.pools[pool]
    return max(p.min_nodes, -(-placement.gpus_used(fleet, pool) // p.per_node))


def _amounts(found: Sequence[Violation]) -> dict[tuple[str, str], float]:
    """How much each violation (policy, subject) breaks, all its entries together."""
    out: dict[tuple[str, str], float] = {}
    for v in found:
        out[v.key] = out.get(v.key, 0.0) + v.amount
    return out


def _n(count: int, thing: str) -> str:
    return f"{count} {thing}{'' if count == 1 else 's'}"


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _changed(was: Sequence[Violation], now: Sequence[Violation]) -> str:
    """What ``was`` says that ``now`` no longer does (its first detail where all still stand)."""
    still = {v.detail for v in now}
    return next((v.detail for v in was if v.detail not in still), was[0].detail)
