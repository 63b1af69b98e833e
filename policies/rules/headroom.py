"""headroom: each matched pool keeps >= f of its GPUs free."""

from __future__ import annotations

import math

from placer.fleet import Fleet, Policy, Pool, pool_matches
from placer.placement import Placement
from placer.policy import ModelBuilder, Violation
from policies.base import RuleBase, pools, violation


class Headroom(RuleBase):
    name = "headroom"

    def constrain(self, policy: Policy, builder: ModelBuilder) -> None:
        f = policy.rule.headroom.fraction if policy.rule.headroom else 0.0
        for pool in pools(policy, builder.fleet):
            builder.at_most(policy, builder.gpus_used(pool.name) - (1 - f) * builder.gpus_capacity(pool.name), 0,
                            pool.name)

    def usable_gpus(self, policy: Policy, fleet: Fleet, pool: Pool) -> int | None:
        """(1 - f) of the pool's GPUs at its most nodes, whole, as ``violations`` allows (1e-6 over)."""
        if not pool_matches(policy.spec.pools, pool):
            return None
        f = policy.rule.headroom.fraction if policy.rule.headroom else 0.0
        return math.floor((1 - f) * pool.max_gpus + 1e-6)

    def violations(self, policy: Policy, fleet: Fleet, placement: Placement) -> list[Violation]:
        f = policy.rule.headroom.fraction if policy.rule.headroom else 0.0
        out = []
        for pool in pools(policy, fleet):
            used = placement.gpus_used(fleet, pool.name)
            cap = placement.gpus_capacity(fleet, pool.name)
            short = used - (1 - f) * cap
            if short > 1e-6:
                out.append(violation(policy, short, f"{pool.name}: {used} of {cap} GPUs used, keeps < {f * 100:g}% free",
                                     subject=pool.name))
        return out
