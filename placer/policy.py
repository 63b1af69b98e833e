"""The contract between placer's core and policy rules (Kubernetes-scheduler style).

A rule is *behaviour* for one rule name of the fleet format: ``excludes`` is its Filter
(a required rule that forbids a (model, pool) pair outright), ``constrain`` adds its
constraints or penalties to the optimizer's model through ``ModelBuilder``, and
``violations`` measures it on any placement (the cost function prices preferred ones).
The optimizer and the cost function receive rules through this protocol; the
implementations live in the ``policies`` package and are wired in by the CLI.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, overload

from placer.fleet import Fleet, Model, Policy, Pool
from placer.placement import Placement


def plan_time(value: str | dt.date) -> dt.datetime:
    """The plan's time as rules judge by it (retire's unusedForDays counts the days to it), in UTC:
    ISO text, a date or a datetime; a time with an offset is converted to UTC, one without is UTC.
    ``placer plan --now`` and a policy test's ``now`` both come through here, so that a test's
    2026-11-28T02:00:00+05:00 is the plan's 2026-11-27 (the test kept the offset's 28th, and
    retired a model the plan kept). ValueError says what is wrong with it, to follow the value."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed = dt.datetime(value.year, value.month, value.day)
    else:
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("is not an ISO date or time (e.g. 2026-11-28 or 2026-11-28T07:00:00Z)") from None
    try:
        parsed = parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    except OverflowError:  # 9999-12-31T23:59:59-12:00 is past year 9999 in UTC
        parsed = dt.datetime.max.replace(tzinfo=dt.UTC)
    if not 1970 <= parsed.year <= 9998:  # a plan's createdAt is an ISO time with a four-digit year
        raise ValueError("is out of range: give a time between 1970 and 9998")
    return parsed


@dataclass(frozen=True)
class Violation:
    policy: str
    enforcement: str
    amount: float
    detail: str
    penalty_usd_per_hour: float = 0.0
    # what it is about: the model (maxSpotFraction, spread, allowPools, denyPools, preferPools,
    # retirement), the pool (headroom, maxModelsPerPool, separateWorkloads), or "" (all the
    # policy selects: a budget)
    subject: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """Which violation this is, whatever its numbers: its policy and its subject. Its detail's
        words are no identity: they change with the counts ("m: 2 of 3 replicas on spot" is
        "m: 2 of 4" with one more replica off spot, the same violation, and a smaller one)."""
        return self.policy, self.subject


class ModelBuilder(Protocol):
    """What the optimizer offers rules: linear expressions over its decision variables."""

    fleet: Fleet

    def pairs(self, models: Sequence[Model], pools: Sequence[Pool]) -> list[tuple[str, str]]:
        """The eligible (model, pool) pairs among the given models and pools."""
        ...

    def replicas(self, model: str, pool: str) -> Any:
        """x[m,p] (0 when the pair is not eligible)."""
        ...

    def replicas_on(self, model: str, pools: Sequence[Pool]) -> Any:
        """The sum of x[m,p] over the model's eligible pairs on these pools (0 when it has none
        there): one expression, where a sum of ``replicas`` would build one term per pool."""
        ...

    def max_replicas_on(self, model: str, pools: Sequence[Pool]) -> int:
        """The sum of ``max_replicas`` over the same pairs."""
        ...

    def uses(self, model: str, groups: Sequence[Sequence[Pool]], names: Sequence[str]) -> list[Any]:
        """Per group of pools (no pool in two groups), a new 0/1 variable z with z <= (the model's
        replicas on them), the row named by ``names``: z can be 1 only where the model runs. None
        for a group where it has no eligible pair (no variable, no row)."""
        ...

    def total_replicas(self, model: str) -> Any: ...

    def least_replicas(self, model: str) -> int:
        """The fewest replicas any plan gives the model: its minReplicas (0 for a model without one,
        or when that row is left out, as when an infeasible plan is explained)."""
        ...

    def unmet_beyond(self, model: str, replicas: int) -> tuple[Any, float]:
        """The model's unmet rate (an expression; 0 for a model without demand), and the least of
        it that any plan with at most ``replicas`` replicas of the model leaves: its demand less
        what that many replicas serve on its fastest eligible pool (0 when they could serve it
        all). For valid inequalities: ``unmet >= that`` unless the model has more replicas."""
        ...

    def gpus_used(self, pool: str) -> Any: ...

    def gpus_capacity(self, pool: str) -> Any: ...

    def compute_usd(self, model: str, pool: str) -> Any:
        """usdPerGpuHour · c[m,p] · x[m,p]."""
        ...

    def max_replicas(self, model: str, pool: str) -> int: ...

    def new_bool(self, name: str) -> Any: ...

    def add(self, constraint: Any, name: str) -> None: ...

    def cut(self, constraint: Any, name: str) -> None:
        """A valid inequality: one every integer plan that keeps the other rows keeps. The LP
        relaxation needs it to see a rule; a solver given the whole MIP may leave it out."""
        ...

    def at_most(self, policy: Policy, lhs: Any, rhs: Any, what: str) -> None:
        """lhs <= rhs: a hard constraint for a required policy; for a preferred one a
        slack s >= lhs - rhs, s >= 0, charged penaltyUsdPerHour per unit."""
        ...


class RuleBehaviour(Protocol):
    name: str
    #: the rule only filters pairs; ``constrain`` adds nothing when required
    def excludes(self, policy: Policy, fleet: Fleet, model: Model, pool: Pool) -> str | None: ...

    def retires(self, policy: Policy, fleet: Fleet, model: Model) -> str | None: ...

    def constrain(self, policy: Policy, builder: ModelBuilder) -> None: ...

    def violations(self, policy: Policy, fleet: Fleet, placement: Placement) -> list[Violation]: ...

    # arithmetic for validate and the conflict search (``placer.optimizer.conflicts``), no solver:
    def usable_gpus(self, policy: Policy, fleet: Fleet, pool: Pool) -> int | None:
        """The most GPUs of ``pool`` any plan that keeps this (required) policy uses, at its largest
        size; None: the policy sets no such limit."""
        ...

    def refuses_minimum(self, policy: Policy, fleet: Fleet, model: Model, need: int,
                        room: Iterable[tuple[Pool, int]]) -> str | None:
        """Why no plan that keeps this (required) policy gives ``model`` ``need`` replicas or more,
        where ``room`` yields (lazily) each pool the fit rules and the other policies leave it with
        the replicas it could hold there (more than 0); None where one may."""
        ...


Rules = Mapping[str, RuleBehaviour]


# GPUs a pool may use beyond (1 - fraction) x capacity and still keep a headroom: a float's rounding
# (1 - 0.9 is 0.09999999999999998, and a headroom of 0.9 on 10 GPUs leaves 0.9999999999999998 of one)
HEADROOM_TOLERANCE = 1e-6


@overload
def headroom_limit(fraction: float, capacity: float) -> float: ...
@overload
def headroom_limit(fraction: float, capacity: Any) -> Any: ...
def headroom_limit(fraction: float, capacity: Any) -> Any:
    """The GPUs a pool of ``capacity`` GPUs may use where a headroom keeps ``fraction`` of them free:
    (1 - fraction) x capacity, not rounded; ``capacity`` a number or an optimizer's expression. The
    headroom rule's arithmetic, stated once: its optimizer row and its check (``policies/rules/
    headroom.py``), and, whole (``headroom_gpus``), what the conflict search and make before break
    (``diff._Room``) leave a pool."""
    return (1 - fraction) * capacity


def headroom_gpus(fraction: float, capacity: int) -> int:
    """The whole GPUs a pool of ``capacity`` GPUs may use under a headroom of ``fraction``: the most
    the headroom rule's check lets pass (``headroom_limit``, HEADROOM_TOLERANCE over)."""
    return math.floor(headroom_limit(fraction, capacity) + HEADROOM_TOLERANCE)


def behaviour(rules: Rules, policy: Policy) -> RuleBehaviour:
    try:
        return rules[policy.rule.name]
    except KeyError:
        raise LookupError(f"no behaviour registered for rule {policy.rule.name!r}") from None
