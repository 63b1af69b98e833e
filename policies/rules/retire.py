"""retire: models unused for D days, or older than the newest K versions of their family."""

from __future__ import annotations

import datetime as dt
import re

from placer.fleet import Fleet, Model, Policy
from placer.placement import Placement
from placer.policy import ModelBuilder, Violation
from policies.base import RuleBase, models, violation

# words after a release number that mark a later build of it; any other word marks a pre-release
# (semver: 2.0.0-rc1 comes before 2.0.0)
POST_RELEASE = frozenset({"post", "hotfix", "patch", "fix", "rev", "r"})

VersionKey = tuple[tuple[int, ...], int, tuple[tuple[int, int | str], ...]]


def version_key(version: str) -> VersionKey:
    """Order versions as release numbers: 1.10 > 1.9, 1.0 == 1.0.0, 2.0.0-rc1 < 2.0.0 <
    2.0.0-hotfix1; ISO dates order naturally; v-prefixes ignored. Equal keys are one version."""
    parts = re.findall(r"\d+|[A-Za-z]+", version)
    if parts and parts[0].lower() == "v":
        parts = parts[1:]
    release: list[int] = []
    while parts and parts[0].isdigit():
        release.append(int(parts.pop(0)))
    while release and release[-1] == 0:  # 1.0 is 1.0.0
        release.pop()
    phase = 1 if not parts else 2 if parts[0].lower() in POST_RELEASE else 0
    rest = tuple((1, int(p)) if p.isdigit() else (0, p.lower()) for p in parts)
    return tuple(release), phase, rest


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
            # the K newest distinct versions of the family stay, with every model at one of them (two
            # builds of version 2 are both the newest, whatever the documents' order). The family is
            # every model with its label, as SPEC says, not only those the policy selects: ranked among
            # a `stage: canary` selector's models alone, a canary 1.0 was kept beside the family's 2.0
            kin: dict[VersionKey, str] = {}
            for m in fleet.models.values():
                if m.labels.get("family") == family and m.spec.version:
                    kin.setdefault(version_key(m.spec.version), m.spec.version)
            newest = sorted(kin, reverse=True)[: params.keep_versions]
            if version_key(model.spec.version) not in newest:
                return (f"version {model.spec.version} is older than the newest {params.keep_versions} of "
                        f"family {family} ({', '.join(kin[k] for k in newest)})")
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
                out.append(violation(policy, placed, f"{model.name}: {placed} replicas of a retired model ({why})",
                                     subject=model.name))
        return out
