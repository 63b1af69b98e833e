"""maxSpotFraction: at most f of each matched model's replicas on spot pools."""

from __future__ import annotations

import math
from collections.abc import Iterable

from placer.fleet import Fleet, Model, Policy, Pool
from placer.placement import Placement
from placer.policy import ModelBuilder, Violation
from policies.base import RuleBase, models, violation


class MaxSpotFraction(RuleBase):
    name = "maxSpotFraction"

    def constrain(self, policy: Policy, builder: ModelBuilder) -> None:
        f = policy.rule.max_spot_fraction or 0.0
        fleet = builder.fleet
        spot_pools = [p for p in fleet.pools.values() if p.spot]
        for model in models(policy, fleet):
            spot = builder.replicas_on(model.name, spot_pools)
            if isinstance(spot, int):
                continue  # no spot pool can run it
            builder.at_most(policy, spot - f * builder.total_replicas(model.name), 0, model.name)

    def refuses_minimum(self, policy: Policy, fleet: Fleet, model: Model, need: int,
                        room: Iterable[tuple[Pool, int]]) -> str | None:
        """With S replicas off spot, at most f·S/(1-f) may be on spot (as ``violations`` allows, 1e-6
        over): fewer than ``need`` in all where the pools off spot hold too few."""
        f = policy.rule.max_spot_fraction or 0.0
        if f >= 1:
            return None
        steady = spot = 0
        for pool, held in room:
            if pool.spot:
                spot += held
            else:
                steady += held
            if steady >= need:
                return None
        most = steady + min(spot, math.floor((f * steady + 1e-6) / (1 - f)))
        if most >= need:
            return None
        return (f"{policy.name} keeps at most {f:g} of {model.name}'s replicas on spot pools, and the pools it may "
                f"use hold {steady} off spot: {most} replica{'s' if most != 1 else ''} in all at most, of {need}")

    def violations(self, policy: Policy, fleet: Fleet, placement: Placement) -> list[Violation]:
        f = policy.rule.max_spot_fraction or 0.0
        out = []
        for model in models(policy, fleet):
            placed = placement.pools_of(model.name)
            total = sum(placed.values())
            spot = sum(r for p, r in placed.items() if fleet.pools[p].spot)
            over = spot - f * total
            if over > 1e-6:
                out.append(violation(policy, over, f"{model.name}: {spot} of {total} replicas on spot (max {f:g})",
                                     subject=model.name))
        return out
