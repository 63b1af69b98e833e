"""spread: each matched model with >= N replicas uses >= N failure domains."""

from __future__ import annotations

from collections.abc import Iterable

from placer.fleet import Fleet, Model, Policy, Pool
from placer.placement import Placement
from placer.policy import ModelBuilder, Violation
from policies.base import RuleBase, models, violation


class Spread(RuleBase):
    name = "spread"

    def constrain(self, policy: Policy, builder: ModelBuilder) -> None:
        need = policy.rule.spread.min_failure_domains if policy.rule.spread else 2
        fleet = builder.fleet
        # every pool: the rule names none (SPEC), and `violations` counts the domains of all the pools
        # a model runs on (with the policy's pools selector, a plan that kept the rule was refused)
        allowed = list(fleet.pools.values())
        by_domain: dict[str, list[Pool]] = {}
        for pool in allowed:
            by_domain.setdefault(pool.failure_domain, []).append(pool)
        domain_names = sorted(by_domain)
        groups = [by_domain[d] for d in domain_names]
        for model in models(policy, fleet):
            big = builder.max_replicas_on(model.name, allowed)
            if big == 0 or big < need:
                continue  # no pairs, or can never reach N replicas here: the rule cannot apply
            names = [f"{policy.name}:{model.name}:{domain}" for domain in domain_names]
            used = [z for z in builder.uses(model.name, groups, names) if z is not None]
            applies = builder.new_bool(f"{policy.name}:{model.name}:applies")
            total = builder.total_replicas(model.name)
            builder.add(total <= need - 1 + big * applies, f"{policy.name}:{model.name}:applies")
            # valid rows that let the LP see the rule (without them it sets `applies` near 0, as big
            # is large, and keeps a model that needs N replicas in one failure domain, which the
            # rounding keeps): with minReplicas >= N the rule always applies; else, with N-1
            # replicas or fewer, at least `short` of the demand goes unmet
            if builder.least_replicas(model.name) >= need:
                builder.cut(applies >= 1, f"{policy.name}:{model.name}:always")
            else:
                unmet, short = builder.unmet_beyond(model.name, need - 1)
                if short > 0:
                    builder.cut(unmet + short * applies >= short, f"{policy.name}:{model.name}:serve-or-spread")
            # no domain at all: a model restricted to pairs outside these pools (a re-plan's model)
            spread = need * applies - sum(used[1:], used[0]) if used else need * applies
            builder.at_most(policy, spread, 0, model.name)

    def refuses_minimum(self, policy: Policy, fleet: Fleet, model: Model, need: int,
                        room: Iterable[tuple[Pool, int]]) -> str | None:
        """A minReplicas of N or more needs N failure domains among the pools with room for the model."""
        spread = policy.rule.spread.min_failure_domains if policy.rule.spread else 2
        if need < spread:
            return None
        domains: set[str] = set()
        for pool, _replicas in room:
            domains.add(pool.failure_domain)
            if len(domains) >= spread:
                return None
        listed = sorted(domains)
        where = ", ".join(listed[:5]) + (f" and {len(listed) - 5} more" if len(listed) > 5 else "")
        return (f"{policy.name} spreads {model.name}'s {need} replicas over {spread} failure domains, and the "
                f"pools it may use are all in {len(listed)}{f' ({where})' if where else ''}")

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
                                     f"{model.name}: {len(domains)} failure domain(s) of {need}", subject=model.name))
        return out
