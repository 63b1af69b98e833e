"""Rule name -> behaviour. Every rule of the fleet format (``placer.spec.rules.RULE_NAMES``) has one."""

from __future__ import annotations

import datetime as dt

from placer.policy import RuleBehaviour, Rules
from placer.spec.rules import RULE_NAMES
from policies.rules.allow_deny import AllowPools, DenyPools, PreferPools
from policies.rules.budget import Budget
from policies.rules.headroom import Headroom
from policies.rules.max_models import MaxModelsPerPool
from policies.rules.retire import Retire
from policies.rules.separate import SeparateWorkloads
from policies.rules.spot import MaxSpotFraction
from policies.rules.spread import Spread


def build_rules(now: dt.datetime | None = None) -> Rules:
    """The behaviours, with ``now`` (the plan's time, for retire) bound in."""
    when = now or dt.datetime.now(dt.UTC)
    behaviours: list[RuleBehaviour] = [
        AllowPools(), DenyPools(), PreferPools(), SeparateWorkloads(), Spread(), MaxSpotFraction(),
        Budget(), Headroom(), MaxModelsPerPool(), Retire(when),
    ]
    table = {b.name: b for b in behaviours}
    missing = set(RULE_NAMES) - set(table)
    if missing:
        raise LookupError(f"rules without behaviour: {sorted(missing)}")
    return table


def rule_names() -> tuple[str, ...]:
    return RULE_NAMES
