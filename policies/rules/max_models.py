"""maxModelsPerPool: matched pools host at most N distinct matched models."""

from __future__ import annotations

from placer.fleet import Fleet, Policy
from placer.placement import Placement
from placer.policy import ModelBuilder, Violation
from policies.base import RuleBase, models, pools, violation


class MaxModelsPerPool(RuleBase):
    name = "maxModelsPerPool"

    def constrain(self, policy: Policy, builder: ModelBuilder) -> None:
        limit = policy.rule.max_models_per_pool or 0
        matched = models(policy, builder.fleet)
        for pool in pools(policy, builder.fleet):
            pairs = builder.pairs(matched, [pool])
            if len(pairs) <= limit:
                continue
            hosted = []
            for m, p in pairs:
                b = builder.new_bool(f"{policy.name}:{p}:{m}")
                builder.add(builder.replicas(m, p) <= builder.max_replicas(m, p) * b, f"{policy.name}:{p}:{m}")
                hosted.append(b)
            builder.at_most(policy, sum(hosted[1:], hosted[0]), limit, pool.name)

    def violations(self, policy: Policy, fleet: Fleet, placement: Placement) -> list[Violation]:
        limit = policy.rule.max_models_per_pool or 0
        matched = {m.name for m in models(policy, fleet)}
        out = []
        for pool in pools(policy, fleet):
            hosted = {m for (m, p), r in placement.replicas.items() if p == pool.name and r > 0 and m in matched}
            if len(hosted) > limit:
                out.append(violation(policy, len(hosted) - limit, f"{pool.name} hosts {len(hosted)} models (max {limit})",
                                     subject=pool.name))
        return out
