"""Replicas a plan keeps beyond what their routes need, and why: the rules one fewer would break."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from placer.candidates import required_of
from placer.cost import PENNY, model_compute_usd, penalty_by_policy, penalty_changes, violations
from placer.fleet import Fleet
from placer.placement import Placement
from placer.policy import Rules
from placer.render.report import rate_format, signed


@dataclass(frozen=True)
class Idle:
    """Replicas of an inference model on one pool beyond what the rate routed there needs (to a
    reader, idle replicas on a pool serving nothing look like a bug), and why the plan keeps them: ``held``
    of them by the required rules one replica fewer would break (``rules``: "minReplicas N" or the
    policy's name, each with what it says once broken), or ``kept`` of the rest by preferred
    policies whose penalty they spare, net of those they raise; any others no rule needs."""

    pool: str
    replicas: int  # the model's replicas on the pool
    idle: int  # of them, those beyond ceil(routed rate / a replica's throughput there)
    routed: float  # the rate routed to them
    held: int = 0
    rules: tuple[tuple[str, str], ...] = ()  # (rule, what breaks with one fewer replica held)
    kept: int = 0
    # (preferred policy, USD/h its penalty changes by without the kept: less than 0 where it falls)
    penalties: tuple[tuple[str, float], ...] = ()
    saves: float = 0.0  # the compute (USD/h) the kept replicas cost

    @property
    def spare(self) -> int:
        """Idle replicas no rule needs: a search stopped by its time limit may leave one."""
        return self.idle - self.held - self.kept

    def text(self) -> str:
        what = (f"{self.replicas} replica(s) serve no demand now" if self.idle == self.replicas else
                f"{self.idle} of {self.replicas} replica(s) serve no demand now (the {rate_format([self.routed]).format(self.routed)} routed there "
                f"needs {self.replicas - self.idle})")

        def them(n: int) -> str:
            return "it" if n == 1 else "them"

        def some(n: int) -> str:  # how many, where not all of the idle
            return "" if n == self.idle else f"{n} "

        parts = []
        if self.held:
            rules = [rule if rule.startswith("minReplicas") else f"required policy {rule}" for rule, _ in self.rules]
            said = "; ".join(detail for _, detail in self.rules)
            fewer = "one fewer there breaks" if self.held == self.idle else f"{self.idle - self.held + 1} fewer there break"
            parts.append(f"{some(self.held)}held by {' and '.join(rules)} ({fewer} {them(len(rules))}: {said})")
        if self.kept:
            grow = [(name, usd) for name, usd in self.penalties if usd > 0]
            one = len(grow) == 1
            total = sum(u for _, u in self.penalties)
            if len(grow) < len(self.penalties):  # some fall without them: the growth net of those, each signed
                charged = ", ".join(name for name, _ in grow)
                grows = (f"the preferred penalties grow by {total:,.2f} USD/h in all ("
                         + ", ".join(f"{name} {signed(usd)}" for name, usd in self.penalties) + ")")
            else:
                charged = grow[0][0] if one else ", ".join(f"{name} (+{usd:,.2f})" for name, usd in grow)
                grows = f"{'its penalty grows' if one else 'their penalties grow'} by {total:,.2f} USD/h"
            parts.append(f"{some(self.kept)}kept for preferred {'policy' if one else 'policies'} {charged}: without "
                         f"{them(self.kept)} {grows}, more than the {self.saves:,.2f} USD/h of "
                         f"compute {'it costs' if self.kept == 1 else 'they cost'}")
        if self.spare:
            parts.append(f"{some(self.spare)}not needed: no rule holds {them(self.spare)} (the plan's search stopped "
                         f"before dropping {them(self.spare)}: plan again, or raise Settings solver.timeLimitSeconds)")
        return f"{self.pool}: {what}; {'; '.join(parts)}"

    def as_json(self) -> dict[str, Any]:
        return {"pool": self.pool, "replicas": self.replicas, "idle": self.idle, "routedRate": self.routed,
                "heldByRequired": self.held, "requiredRules": [{"rule": r, "broken": d} for r, d in self.rules],
                "keptForPenalty": self.kept,
                "penalties": [{"policy": p, "usdPerHour": u} for p, u in self.penalties],
                "notNeeded": self.spare, "why": self.text()}


def idle_replicas(fleet: Fleet, rules: Rules, placement: Placement, model: str) -> list[Idle]:
    """The pools where inference ``model`` has replicas beyond what the rate routed there needs, each
    with why the plan keeps them, by the rules' own checks on the plan with fewer there: its
    minReplicas and the required policies that select it (those the plan breaks already aside),
    then the preferred policies' penalties (as ``price`` prices them, every preferred policy's: a
    replica fewer lowers a headroom's on its pool, whatever models it selects) net, those that
    fall against those that grow, against the compute saved. Only the model's own required
    rules are checked: a replica fewer only frees GPUs, so no other model's rule can ask for it."""
    m = fleet.models[model]
    if not m.inference:
        return []  # training and batch replicas are their own demand
    routed: dict[str, float] = {}
    for r in placement.routes:
        if r.model == model:
            routed[r.pool] = routed.get(r.pool, 0.0) + r.rate
    idle: list[tuple[str, int, int, float]] = []  # pool, the model's replicas there, how many idle, rate routed
    for pool, count in sorted(placement.pools_of(model).items()):
        rate = routed.get(pool, 0.0)
        thr = m.spec.throughput.get(fleet.pools[pool].gpu.name, 0.0)
        spare = count - min(count, max(0, math.ceil(rate / thr - 1e-6))) if thr > 0 else 0
        if spare:
            idle.append((pool, count, spare, rate))
    if not idle:
        return []
    required = required_of(fleet, m)
    preferred = [p for p in fleet.policies if not p.required]
    def measured(at: Placement) -> dict[str, tuple[float, list[str]]]:
        """Each required policy's violations of ``at``: how much in all, and what each says."""
        got: dict[str, tuple[float, list[str]]] = {p.name: (0.0, []) for p in required}
        for v in violations(fleet, at, rules, required):
            amount, details = got[v.policy]
            got[v.policy] = (amount + v.amount, [*details, v.detail])
        return got

    # what the plan breaks already (a saved plan's, an edited one's): a rule counts as broken by
    # fewer replicas where it is broken by more (its detail alone changes with the counts: a
    # headroom's "228 of 240 GPUs used" became "220 of 240", and was taken for a new violation)
    broken = measured(placement)
    total = placement.replicas_of(model)

    def fewer(pool: str, k: int) -> Placement:
        return replace(placement, replicas={**placement.replicas, (model, pool): placement.replicas[(model, pool)] - k})

    def breaks(pool: str, k: int) -> list[tuple[str, str]]:
        """The required rules broken with ``k`` fewer replicas on ``pool``, each with what it says."""
        said = []
        if m.spec.min_replicas is not None and total - k < m.spec.min_replicas:
            said.append((f"minReplicas {m.spec.min_replicas}", f"{model} would have {total - k} replica(s)"))
        for name, (amount, details) in measured(fewer(pool, k)).items():
            was, seen = broken[name]
            if amount > was + 1e-9:
                said.append((name, next((d for d in details if d not in seen), details[0])))
        return said

    def most_free(pool: str, spare: int) -> int:
        """The most of ``spare`` idle replicas on ``pool`` that may go with no required rule broken
        (a search of their number: fewer only ever breaks more)."""
        if breaks(pool, 1):
            return 0
        if not breaks(pool, spare):
            return spare
        lo, hi = 1, spare  # lo may go, hi may not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if not breaks(pool, mid) else (lo, mid)
        return lo

    def charged(at: Placement) -> dict[str, float]:
        return penalty_by_policy(violations(fleet, at, rules, preferred))

    out: list[Idle] = []
    base: dict[str, float] | None = None  # the plan's penalties, found once
    for pool, count, spare, rate in idle:
        free = most_free(pool, spare)
        entry = Idle(pool, count, spare, rate, held=spare - free,
                     rules=tuple(breaks(pool, free + 1)) if free < spare else ())
        if free and preferred:
            # as price counts them: one that falls without the replicas (a headroom's on the pool)
            # counts against those that grow
            base = charged(placement) if base is None else base
            change = penalty_changes(base, charged(fewer(pool, free)))
            grows = sum(change.values())
            saves = model_compute_usd(fleet, placement, model) - model_compute_usd(fleet, fewer(pool, free), model)
            if grows >= PENNY and grows >= saves:
                entry = replace(entry, kept=free, penalties=tuple(change.items()), saves=saves)
        out.append(entry)
    return out
