"""budget: the compute cost of the matched models together (on matched pools) <= X USD/h."""

from __future__ import annotations

from placer.cost import model_compute_usd
from placer.fleet import Fleet, Policy
from placer.placement import Placement
from placer.policy import ModelBuilder, Violation
from policies.base import RuleBase, models, pools, violation


class Budget(RuleBase):
    name = "budget"

    def constrain(self, policy: Policy, builder: ModelBuilder) -> None:
        limit = policy.rule.budget.max_usd_per_hour if policy.rule.budget else 0.0
        pairs = builder.pairs(models(policy, builder.fleet), pools(policy, builder.fleet))
        if pairs:
            costs = [builder.compute_usd(m, p) for m, p in pairs]
            builder.at_most(policy, sum(costs[1:], costs[0]), limit, "budget")

    def violations(self, policy: Policy, fleet: Fleet, placement: Placement) -> list[Violation]:
        limit = policy.rule.budget.max_usd_per_hour if policy.rule.budget else 0.0
        in_scope = {p.name for p in pools(policy, fleet)}
        spent = 0.0
        for model in models(policy, fleet):
            scoped = {k: r for k, r in placement.replicas.items() if k[0] == model.name and k[1] in in_scope}
            spent += model_compute_usd(fleet, type(placement)(scoped, placement.nodes), model.name)
        if spent - limit > 1e-6:
            return [violation(policy, spent - limit, f"compute {spent:,.2f} USD/h over budget {limit:,.2f}",
                              subject="")]
        return []
