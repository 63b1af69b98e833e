"""retire: models unused for D days, or older than the newest K versions of their family."""

from __future__ import annotations

import datetime as dt
import re

from placer.fleet import Fleet, Model, Policy
from placer.placement import Placement
from placer.policy import ModelBuilder, Violation
from policies.base import RuleBase, models, violation


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Order versions as release numbers: 1.10 > 1.9; ISO dates order naturally; v-prefixes ignored."""
    parts = re.findall(r"\d+|[A-Za-z]+", version)
    out: list[tuple[int, int | str]] = []
    for part in parts:
        if part.lower() == "v" and not out:
            continue
        out.append((1, int(part)) if part.isdigit() else (0, part.lower()))
    return tuple(out)


class Retire(RuleBase):
    name = "retire"

    def __init__(self, now: dt.datetime) -> None:
        self.today = now.date()

    def reason(self, policy: Policy, fleet: Fleet, model: Model) -> str | None:
        params = policy.rule.retire
        if params is None:
            return None
        if params.unused_for_days is not None and model.spec.last_used is not None:
            idle = (self.today - model.spec.last_used).days
            if idle > params.unused_for_days:
                return f"unused for {idle} days (lastUsed {model.spec.last_used}, limit {params.unused_for_days})"
        family = model.labels.get("family")
        if params.keep_versions is not None and family and model.spec.version:
            kin = [m for m in models(policy, fleet) if m.labels.get("family") == family and m.spec.version]
            newest = sorted(kin, key=lambda m: version_key(m.spec.version or ""), reverse=True)
            keep = {m.name for m in newest[: params.keep_versions]}
            if model.name not in keep:
                return (f"version {model.spec.version} is older than the newest {params.keep_versions} of "
                        f"family {family} ({', '.join(m.spec.version or '' for m in newest[: params.keep_versions])})")
        return None

    def retires(self, policy: Policy, fleet: Fleet, model: Model) -> str | None:
        return self.reason(policy, fleet, model) if policy.required else None

    def constrain(self, policy: Policy, builder: ModelBuilder) -> None:
        if policy.required:
            return
        for model in models(policy, builder.fleet):
            if self.reason(policy, builder.fleet, model):
                builder.at_most(policy, builder.total_replicas(model.name), 0, model.name)

    def violations(self, policy: Policy, fleet: Fleet, placement: Placement) -> list[Violation]:
        out = []
        for model in models(policy, fleet):
            placed = placement.replicas_of(model.name)
            why = self.reason(policy, fleet, model) if placed else None
            if why:
                out.append(violation(policy, placed, f"{model.name}: {placed} replicas of a retired model ({why})"))
        return out
