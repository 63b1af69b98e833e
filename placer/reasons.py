"""Why a deployment's replicas change: the reasons a plan's changes give (SPEC section 3).

Each reason is checked, not guessed from the change's direction: the running placement (the
state's replicas on the fleet's pools) is measured against the new fleet with the policies' own
checks (``cost.violations``), and a policy is named where moving the model as the plan does
lessens what the running placement breaks of it.
"""

from __future__ import annotations

from collections.abc import Sequence

from placer.candidates import Candidates
from placer.cost import penalty_by_policy, violations
from placer.fleet import Fleet, Model, Policy, model_matches
from placer.placement import Placement
from placer.policy import Rules, Violation
from placer.state import State

# a preferred policy's penalty that falls by less is no reason (the cost report's cent)
PENNY = 0.005


def running(fleet: Fleet, state: State, placement: Placement) -> Placement:
    """What runs, as the state records it, on the fleet's models and pools: the placement the
    plan's changes start from. Pools the state does not size keep the plan's nodes."""
    replicas = {(m, p): r for (m, p), r in state.replicas().items() if m in fleet.models and p in fleet.pools}
    nodes = {**placement.nodes, **{p: n for p, n in state.nodes().items() if p in fleet.pools}}
    return Placement(replicas, nodes)


class Reasons:
    """The reasons of each deployment change from ``state`` to ``placement``; each model's are
    found once, whichever of its changes asks first."""

    def __init__(self, fleet: Fleet, state: State, placement: Placement, cands: Candidates | None,
                 rules: Rules | None) -> None:
        self.fleet, self.state, self.placement, self.cands, self.rules = fleet, state, placement, cands, rules
        self.before = running(fleet, state, placement)
        self._broken: dict[str, list[Violation]] | None = None
        self._policies: dict[str, tuple[str, ...]] = {}

    def of(self, model: str, pool: str, before: int, after: int) -> tuple[str, ...]:
        """Why ``model``'s replicas on ``pool`` go from ``before`` to ``after``."""
        fleet, state, cands = self.fleet, self.state, self.cands
        if model not in fleet.models:
            return ("model removed from the fleet",)
        if pool not in fleet.pools:
            return ("pool removed from the fleet",)
        if cands is not None:
            if model in cands.retired:
                return (f"retired: {cands.retired[model]}",)
            excluded = cands.excluded.get((model, pool))
            if excluded is not None and after == 0:
                return (f"no longer eligible: {excluded}",)
        if before == 0 and not state.deployments:
            return ("initial placement",)
        reasons: list[str] = []
        m = fleet.models[model]
        prior = state.models.get(model, {}).get("demand")
        if m.inference and prior is not None and abs(prior - m.total_demand) > 1e-9:
            reasons.append(f"demand changed {prior:g} -> {m.total_demand:g}")
        reasons += self.policies(m)
        if not reasons:
            reasons.append("cheaper placement" if before > after else "capacity for demand")
        return tuple(reasons)

    def broken(self) -> dict[str, list[Violation]]:
        """The running placement's violations of the fleet's policies, policy by policy."""
        if self._broken is None:
            self._broken = {}
            if self.rules is not None:
                for v in violations(self.fleet, self.before, self.rules):
                    self._broken.setdefault(v.policy, []).append(v)
        return self._broken

    def policies(self, model: Model) -> tuple[str, ...]:
        """The policies that select ``model`` and that the running placement breaks, where the
        model's planned replicas lessen that (a required one at all, a preferred one by its
        penalty): the running placement with this model alone as planned breaks them less, or,
        failing those (two models off one pool, neither enough alone), the plan with this model
        alone as it runs breaks them more. Each with what the running placement breaks of it."""
        if model.name not in self._policies:
            broken = self.broken()
            mine = [p for p in self.fleet.policies if p.name in broken and model_matches(p.spec.models, model)]
            alone = self._swap(self.before, self.placement, model)
            found = [why for p in mine if (why := self._lessened(p, None, alone))]
            if mine and not found:
                back = self._swap(self.placement, self.before, model)
                found = [why for p in mine if (why := self._lessened(p, back, self.placement))]
            self._policies[model.name] = tuple(found)
        return self._policies[model.name]

    @staticmethod
    def _swap(base: Placement, other: Placement, model: Model) -> Placement:
        """``base`` with ``model``'s replicas as ``other`` has them."""
        replicas = {k: r for k, r in base.replicas.items() if k[0] != model.name}
        replicas.update({k: r for k, r in other.replicas.items() if k[0] == model.name and r > 0})
        return Placement(replicas, base.nodes)

    def _lessened(self, policy: Policy, was_at: Placement | None, at: Placement) -> str | None:
        """What ``policy`` says the running placement breaks, where ``at`` breaks it less than
        ``was_at`` (None: the running placement) does; or None."""
        assert self.rules is not None  # broken() found nothing without rules
        running = self.broken()[policy.name]
        was = running if was_at is None else violations(self.fleet, was_at, self.rules, [policy])
        now = violations(self.fleet, at, self.rules, [policy])
        detail = _changed(running, now)
        if policy.required:
            if sum(v.amount for v in now) < sum(v.amount for v in was) - 1e-9:
                return f"required policy {policy.name}, which the running placement breaks: {detail}"
            return None
        saved = penalty_by_policy(was).get(policy.name, 0.0) - penalty_by_policy(now).get(policy.name, 0.0)
        if saved >= PENNY:
            return f"preferred policy {policy.name}, whose penalty this lowers by {saved:,.2f} USD/h: {detail}"
        return None


def _changed(was: Sequence[Violation], now: Sequence[Violation]) -> str:
    """What ``was`` says that ``now`` no longer does (its first detail where all still stand)."""
    still = {v.detail for v in now}
    return next((v.detail for v in was if v.detail not in still), was[0].detail)
