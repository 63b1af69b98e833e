"""spread: each matched model with >= N replicas uses >= N failure domains."""

from __future__ import annotations

from placer.fleet import Fleet, Policy
from placer.placement import Placement
from placer.policy import ModelBuilder, Violation
from policies.base import RuleBase, models, pools, violation


class Spread(RuleBase):
    name = "spread"

    def constrain(self, policy: Policy, builder: ModelBuilder) -> None:
        need = policy.rule.spread.min_failure_domains if policy.rule.spread else 2
        fleet = builder.fleet
        for model in models(policy, fleet):
            pairs = builder.pairs([model], pools(policy, fleet))
            if not pairs:
                continue
            big = sum(builder.max_replicas(m, p) for m, p in pairs)
            if big < need:
                continue  # can never reach N replicas here: the rule cannot apply
            by_domain: dict[str, list[str]] = {}
            for _, p in pairs:
                by_domain.setdefault(fleet.pools[p].failure_domain, []).append(p)
            used = []
            for domain, members in sorted(by_domain.items()):
                z = builder.new_bool(f"{policy.name}:{model.name}:{domain}")
                reps = [builder.replicas(model.name, p) for p in members]
                builder.add(z <= sum(reps[1:], reps[0]), f"{policy.name}:{model.name}:{domain}")
                used.append(z)
            applies = builder.new_bool(f"{policy.name}:{model.name}:applies")
            total = builder.total_replicas(model.name)
            builder.add(total <= need - 1 + big * applies, f"{policy.name}:{model.name}:applies")
            builder.at_most(policy, need * applies - sum(used[1:], used[0]), 0, model.name)

    def violations(self, policy: Policy, fleet: Fleet, placement: Placement) -> list[Violation]:
        need = policy.rule.spread.min_failure_domains if policy.rule.spread else 2
        out = []
        for model in models(policy, fleet):
            placed = placement.pools_of(model.name)
            if sum(placed.values()) < need:
                continue
            domains = {fleet.pools[p].failure_domain for p in placed}
            if len(domains) < need:
                out.append(violation(policy, need - len(domains),
                                     f"{model.name}: {len(domains)} failure domain(s) of {need}"))
        return out
