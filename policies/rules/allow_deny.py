"""allowPools, denyPools, preferPools: which pools a model may (or should) run on."""

from __future__ import annotations

from placer.fleet import Fleet, Model, Policy, Pool, pool_matches
from placer.placement import Placement
from placer.policy import ModelBuilder, Violation
from policies.base import RuleBase, models, violation


class _PoolSet(RuleBase):
    #: True: replicas belong on matched pools; False: replicas belong off them
    inside = True

    def _wrong(self, policy: Policy, pool: Pool) -> bool:
        return pool_matches(policy.spec.pools, pool) != self.inside

    def excludes(self, policy: Policy, fleet: Fleet, model: Model, pool: Pool) -> str | None:
        if policy.required and self._wrong(policy, pool):
            return f"{pool.name} is {'not ' if self.inside else ''}among the pools this policy names"
        return None

    def constrain(self, policy: Policy, builder: ModelBuilder) -> None:
        if policy.required:
            return  # enforced by excludes(): the pairs do not exist
        fleet = builder.fleet
        wrong_pools = [p for p in fleet.pools.values() if self._wrong(policy, p)]
        for model in models(policy, fleet):
            wrong = builder.replicas_on(model.name, wrong_pools)
            if not isinstance(wrong, int):
                builder.at_most(policy, wrong, 0, model.name)

    def violations(self, policy: Policy, fleet: Fleet, placement: Placement) -> list[Violation]:
        out = []
        for model in models(policy, fleet):
            bad = {p: r for p, r in placement.pools_of(model.name).items() if self._wrong(policy, fleet.pools[p])}
            if bad:
                where = ", ".join(f"{r} on {p}" for p, r in sorted(bad.items()))
                out.append(violation(policy, sum(bad.values()), f"{model.name}: {where}", subject=model.name))
        return out


class AllowPools(_PoolSet):
    name = "allowPools"
    inside = True


class PreferPools(_PoolSet):
    name = "preferPools"
    inside = True


class DenyPools(_PoolSet):
    name = "denyPools"
    inside = False
