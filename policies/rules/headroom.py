"""headroom: each matched pool keeps >= f of its GPUs free."""

from __future__ import annotations

from placer.fleet import Fleet, Policy, Pool, pool_matches
from placer.placement import Placement
from placer.policy import HEADROOM_TOLERANCE, ModelBuilder, Violation, headroom_gpus, headroom_limit
from policies.base import RuleBase, pools, violation


def _fraction(policy: Policy) -> float:
    return policy.rule.headroom.fraction if policy.rule.headroom else 0.0


class Headroom(RuleBase):
    """Its arithmetic is ``placer.policy.headroom_limit``'s, which make before break (``placer.diff``)
    shares."""

    name = "headroom"

    def constrain(self, policy: Policy, builder: ModelBuilder) -> None:
        f = _fraction(policy)
        for pool in pools(policy, builder.fleet):
            builder.at_most(policy, builder.gpus_used(pool.name) - headroom_limit(f, builder.gpus_capacity(pool.name)),
                            0, pool.name)

    def usable_gpus(self, policy: Policy, fleet: Fleet, pool: Pool) -> int | None:
        """The pool's GPUs at its most nodes that the headroom leaves, whole, as ``violations`` allows."""
        if not pool_matches(policy.spec.pools, pool):
            return None
        return headroom_gpus(_fraction(policy), pool.max_gpus)

    def violations(self, policy: Policy, fleet: Fleet, placement: Placement) -> list[Violation]:
        f = _fraction(policy)
        out = []
        for pool in pools(policy, fleet):
            used = placement.gpus_used(fleet, pool.name)
            cap = placement.gpus_capacity(fleet, pool.name)
            short = used - headroom_limit(f, cap)
            if short > HEADROOM_TOLERANCE:
                out.append(violation(policy, short, f"{pool.name}: {used} of {cap} GPUs used, keeps < {f * 100:g}% free",
                                     subject=pool.name))
        return out
