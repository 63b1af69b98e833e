"""maxSpotFraction: at most f of each matched model's replicas on spot pools."""

from __future__ import annotations

from placer.fleet import Fleet, Policy
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
