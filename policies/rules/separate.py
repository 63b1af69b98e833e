"""separateWorkloads: no pool hosts models of more than one of the listed workloads."""

from __future__ import annotations

from placer.fleet import Fleet, Policy
from placer.placement import Placement
from placer.policy import ModelBuilder, Violation
from policies.base import RuleBase, models, pools, violation


class SeparateWorkloads(RuleBase):
    name = "separateWorkloads"

    def constrain(self, policy: Policy, builder: ModelBuilder) -> None:
        listed = policy.rule.separate_workloads or []
        fleet = builder.fleet
        matched = [m for m in models(policy, fleet) if m.workload in listed]
        for pool in pools(policy, fleet):
            present = []
            for workload in listed:
                pairs = builder.pairs([m for m in matched if m.workload == workload], [pool])
                if not pairs:
                    continue
                hosts = builder.new_bool(f"{policy.name}:{pool.name}:{workload}")
                for m, p in pairs:
                    builder.add(builder.replicas(m, p) <= builder.max_replicas(m, p) * hosts,
                                f"{policy.name}:{p}:{m}")
                present.append(hosts)
            if len(present) < 2:
                continue
            hosted = sum(present[1:], present[0])
            if policy.required:
                builder.at_most(policy, hosted, 1, pool.name)
            else:  # one unit of violation per pool, however many workloads it mixes (SPEC: "(pool)")
                mixed = builder.new_bool(f"{policy.name}:{pool.name}:mixed")
                builder.add(hosted <= 1 + (len(present) - 1) * mixed, f"{policy.name}:{pool.name}:mixed")
                builder.at_most(policy, mixed, 0, pool.name)

    def violations(self, policy: Policy, fleet: Fleet, placement: Placement) -> list[Violation]:
        listed = policy.rule.separate_workloads or []
        matched = {m.name: m.workload for m in models(policy, fleet) if m.workload in listed}
        out = []
        for pool in pools(policy, fleet):
            present = sorted({matched[m] for (m, p), r in placement.replicas.items()
                              if p == pool.name and r > 0 and m in matched})
            if len(present) > 1:
                out.append(violation(policy, 1, f"{pool.name} hosts {' and '.join(present)}", subject=pool.name))
        return out
