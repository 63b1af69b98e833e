"""Shared pieces for rule behaviours (see ``placer.policy`` for the protocol)."""

from __future__ import annotations

from collections.abc import Iterable

from placer.fleet import Fleet, Model, Policy, Pool
from placer.placement import Placement
from placer.policy import ModelBuilder, Violation


class RuleBase:
    """Defaults: filters nothing, retires nothing, adds nothing, never violated, limits no pool's GPUs
    and refuses no minReplicas."""

    name = ""

    def excludes(self, policy: Policy, fleet: Fleet, model: Model, pool: Pool) -> str | None:
        return None

    def retires(self, policy: Policy, fleet: Fleet, model: Model) -> str | None:
        return None

    def constrain(self, policy: Policy, builder: ModelBuilder) -> None:
        return None

    def violations(self, policy: Policy, fleet: Fleet, placement: Placement) -> list[Violation]:
        return []

    def usable_gpus(self, policy: Policy, fleet: Fleet, pool: Pool) -> int | None:
        return None

    def refuses_minimum(self, policy: Policy, fleet: Fleet, model: Model, need: int,
                        room: Iterable[tuple[Pool, int]]) -> str | None:
        return None


def models(policy: Policy, fleet: Fleet) -> list[Model]:
    return fleet.models_of(policy.spec.models)


def pools(policy: Policy, fleet: Fleet) -> list[Pool]:
    return fleet.pools_of(policy.spec.pools)


def violation(policy: Policy, amount: float, detail: str, *, subject: str) -> Violation:
    """A violation of ``policy`` about ``subject`` (a model's name, a pool's, or "" for all the
    policy selects): ``Violation.key``."""
    return Violation(policy.name, policy.spec.enforcement, amount, detail, policy.penalty, subject)
