"""Explain infeasibility: a small set of required policies and model minimums that conflict.

The groups are each required policy and each inference model's minReplicas. Two steps:

1. by arithmetic, model by model: a model whose minReplicas exceeds the replicas every pool its
   required policies leave it could ever hold (whole capacity less the GPUs a headroom keeps
   free, other models aside) conflicts with those policies alone; the policies whose exclusions
   it needs are kept by a deletion filter over that sum; so does one whose minReplicas a rule
   refuses on those pools (``refuses_minimum``: a spread of N failure domains over pools all in
   fewer, a spot share the pools off spot hold too few for), with the policies that takes; and a
   required budget that cannot pay for the
   minReplicas of the models it selects, each on the cheapest pools (that it counts) its required
   policies leave it: a lower bound of their compute, each model alone and its minReplicas filled
   cheapest pool first (other models, and nodes an elastic pool shares, only add to it), above
   maxUsdPerHour. The fewest models whose bounds pass the cap are named, largest first, and the
   other policies whose exclusions the sum needs (a deletion filter). No solver runs, so a fleet of
   any size answers at once in these, the common cases.
2. otherwise, QuickXplain (Junker, 2004) over every group, each check a feasibility MIP of the
   fleet with some groups dropped: about 2k log(n/k) checks for a conflict of k of n groups,
   against n for a deletion filter. A check is the scalable route's matrix with no objective
   (its LP first, which settles most infeasible checks alone, then its MIP) over the models
   whose minimum it holds (``touched``). At M, 267 groups: 14 checks in 0.1 s, where the deletion
   filter took 963 s and checks of the exact model over the models the policies select 29 s; at
   L, 1,058 groups: 16 checks in 1.0 s, against 398 s so; at XL, 5,372 groups: 17 checks in
   16.7 s. A check the solver does not settle in its time counts as feasible (infeasibility
   unproven), so the answer may hold more groups than it needs (``minimal`` False: a timed-out
   check kept a group that relaxing frees nothing, and the answer said "relax one of them"); it
   is checked once more at the end, and when that is not proven infeasible, every group is the
   answer.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

from placer.candidates import exclusion, required_of, retirement
from placer.cost import replica_compute_usd
from placer.fleet import Fleet, Model, Policy, Pool, model_matches
from placer.policy import RuleBehaviour, Rules, behaviour
from placer.words import names

CHECK_SECONDS = 10.0  # a feasibility check's time limit
BREAKDOWN = 3  # models whose share of a budget's bound its message names
OVER_BUDGET = 1e-6  # USD/h a bound must pass maxUsdPerHour by: the plan's own budget check allows as much


@dataclass(frozen=True)
class Overspend:
    """Step 1's answer for a required budget: the least its models' minReplicas cost together."""

    policy: str
    cap: float  # its maxUsdPerHour
    usd: float  # the lower bound of their compute (USD/h), over ``cap``
    needs: tuple[tuple[str, int, float], ...]  # (model, minReplicas, its share of ``usd``)


@dataclass(frozen=True)
class Crowding:
    """``placer.optimizer.shared``'s answer: models whose minReplicas the pools they share cannot hold
    together, though each fits alone."""

    needs: tuple[tuple[str, int, int], ...]  # (model, minReplicas, the fewest GPUs a replica takes on its pools)
    pools: tuple[tuple[str, int, int], ...]  # (pool, GPUs a plan may use, GPUs at its most nodes): every pool they may use
    # a rule's layer ("spot": a required maxSpotFraction, "spread": a required spread; "" none): the GPUs of
    # their minReplicas the pools hold at most under it, each capped model's (model, most replicas on spot
    # pools or in one failure domain, the policy), and the spot pools, or each pool with its failure domain
    layer: str = ""
    held: int = 0
    caps: tuple[tuple[str, int, str], ...] = ()
    where: tuple[str, ...] = ()
    # under a layer, the pools the models fill, whose capacity bounds them (``shared._filled``): more GPUs
    # elsewhere (on the spot pools a spot share keeps them off) mend nothing
    filled: tuple[str, ...] = ()
    # under the spot share, each model a required spread puts on spot pools (its pools off spot in too few
    # domains), so that it takes more replicas than its minReplicas for the share to hold them: (model, its
    # minReplicas, the replicas the spread puts on spot, the spread's policy); its ``needs`` count those
    raised: tuple[tuple[str, int, int, str], ...] = ()

    @property
    def gpus(self) -> int:
        return sum(n * g for _, n, g in self.needs)

    @property
    def room(self) -> int:
        return sum(usable for _, usable, _ in self.pools)


@dataclass(frozen=True)
class Conflict:
    policies: tuple[str, ...]
    models: tuple[str, ...]  # models whose minReplicas take part
    checks: int  # feasibility MIPs solved
    minimal: bool = True  # False: some check did not settle in time, and the set may hold more than it needs
    capacity: tuple[int, int] | None = None  # step 1's answer: (replicas the pools could hold, minReplicas)
    budget: Overspend | None = None  # step 1's answer for a budget that cannot pay the minReplicas
    refused: str = ""  # step 1's answer for a policy no plan with the minReplicas keeps: the rule's words why
    remedy: str = ""  # with ``refused``, what to change beside the members ("add capacity" where empty)
    shared: Crowding | None = None  # minReplicas of models that the pools they share cannot hold together

    # "policy:NAME" or "model:NAME" -> "path:line" of its enforcement or its minReplicas (``located``)
    sources: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        where = dict(self.sources)

        def at(group: str, name: str) -> str:
            return f"{name} ({where[group]})" if group in where else name

        parts = []
        if self.policies:
            parts.append("required policies " + ", ".join(at(f"policy:{p}", p) for p in self.policies))
        if self.models:
            parts.append("minReplicas of " + ", ".join(at(f"model:{m}", m) for m in self.models))
        return " and ".join(parts) if parts else "the fixed pool minimums"

    def message(self) -> str:
        """What conflicts (where each is defined, when ``located``), why when the arithmetic shows
        it, and what to do: for a person. The pools' capacity is named only where the arithmetic
        shows it takes part; the fleet may hold more conflicts than this one."""
        members = len(self.policies) + len(self.models)
        together = " together" if members > 1 else ""
        how = []
        if self.policies:
            how.append(f"drop {'the' if len(self.policies) == 1 else 'a'} policy or make it preferred")
        if self.models:
            how.append(f"lower {'the' if len(self.models) == 1 else 'a'} minReplicas")
        if self.budget is not None:
            spent = self.budget
            each = [f"{m}: {n:,} replica{'s' if n != 1 else ''}, {usd:,.2f}" for m, n, usd in spent.needs]
            if len(each) > BREAKDOWN:
                each[BREAKDOWN - 1:] = [f"and {len(each) - BREAKDOWN + 1:,} more"]
            what = (f"no placement satisfies {self.describe()}{together}: {'their' if len(self.models) > 1 else 'its'} "
                    f"minReplicas cost at least {_usd(spent.usd, spent.cap)} USD/h on the cheapest pools allowed "
                    f"({'; '.join(each)}), over {spent.policy}'s maxUsdPerHour of {spent.cap:,g}")
            how.append("raise the maxUsdPerHour")
        elif self.shared is not None:
            what = f"no placement satisfies {self.describe()}{together} with the fleet's capacity: {_crowded(self.shared)}"
            how.append(_more_room(self.shared))
        elif self.refused:
            what = f"no placement satisfies {self.describe()}{together}: {self.refused}"
            how.append(self.remedy or "add capacity")
        elif self.capacity is not None:
            most, need = self.capacity
            allowed = "the pools these policies leave it" if self.policies else "the pools it fits"
            what = (f"no placement satisfies {self.describe()}{together} with the fleet's capacity ({self.models[0]} "
                    f"needs {need:,} replica{'s' if need != 1 else ''}; {allowed} hold at most {most:,})")
            how.append("add capacity")
        else:
            unproven = ("" if self.minimal else
                        " (not proven minimal: some checks ran out of time, so some of these may not take part)")
            what = f"no placement on the fleet's pools satisfies {self.describe()}{together}{unproven}"
        advice = f"{', '.join(how[:-1])}, or {how[-1]}" if len(how) > 1 else "".join(how)
        relax = "relax it" if members == 1 else "relax one of them" if self.minimal else "relax some of them"
        return f"{what}; {relax}{f' ({advice})' if advice else ''}; other conflicts may remain"


def _crowded(shared: Crowding) -> str:
    """Why models' minReplicas do not fit the pools they share, in numbers."""
    raised = {m: (least, spot, policy) for m, least, spot, policy in shared.raised}
    needs = [f"{m} {n:,} x {g} GPU{'s' if g != 1 else ''}" + (
        f" ({raised[m][2]} puts {raised[m][1]:,} on spot pools: {n:,} replicas for its {raised[m][0]:,} minReplicas)"
        if m in raised else "") for m, n, g in shared.needs]
    if len(needs) > 2 * BREAKDOWN:
        needs[2 * BREAKDOWN - 1:] = [f"and {len(needs) - 2 * BREAKDOWN + 1:,} more"]
    pools = [f"{p} {usable:,}" + (f" of {most:,}" if usable != most else "")
             for p, usable, most in sorted(shared.pools, key=lambda item: -item[1])]
    if len(pools) > BREAKDOWN:
        pools[BREAKDOWN - 1:] = [f"and {len(pools) - BREAKDOWN + 1:,} more"]
    kept = any(usable != most for _, usable, most in shared.pools)
    if len(shared.pools) == 1:
        ((pool, usable, most),) = shared.pools
        where = f"the only pool they may use, {pool}, holds {usable:,}" + (
            f" (of {most:,}: a headroom keeps the rest free)" if kept else "")
    else:
        where = (f"the only pools they may use hold {shared.room:,} ({', '.join(pools)}"
                 f"{'; a headroom keeps the rest free' if kept else ''})")
    if shared.layer:
        where += f", but {_capped(shared)}: they hold at most {shared.held:,} of those GPUs"
    return f"they take at least {shared.gpus:,} GPUs ({', '.join(needs)}) and {where}"


def _more_room(shared: Crowding) -> str:
    """Where capacity mends a shortage: every pool the models may use (they fill them all), or under a
    layer the pools they fill, or a new pool off spot or in a failure domain of its own."""
    if not shared.layer:
        return f"add capacity to {'that pool' if len(shared.pools) == 1 else 'those pools'}"
    filled = list(shared.filled)
    if len(filled) > 2 * BREAKDOWN:
        filled[2 * BREAKDOWN - 1:] = [f"and {len(filled) - 2 * BREAKDOWN + 1:,} more"]
    new = f"a pool they may use {'off spot' if shared.layer == 'spot' else 'in a failure domain of its own'}"
    return f"add capacity to {', '.join(filled)} or {new}" if filled else f"add {new}"


def _capped(shared: Crowding) -> str:
    """What a layer's rule keeps of the models' minReplicas, in numbers."""
    policies = sorted({policy for _, _, policy in shared.caps})
    rule = "maxSpotFraction" if shared.layer == "spot" else "spread"
    need = {m: n for m, n, _ in shared.needs}
    each = [f"{most:,} of {m}'s {need[m]:,}" for m, most, _ in shared.caps]
    if len(each) > 2 * BREAKDOWN:
        each[2 * BREAKDOWN - 1:] = [f"and {len(each) - 2 * BREAKDOWN + 1:,} more models'"]
    where = list(shared.where)
    if len(where) > 2 * BREAKDOWN:
        where[2 * BREAKDOWN - 1:] = [f"and {len(where) - 2 * BREAKDOWN + 1:,} more"]
    part = "on spot pools" if shared.layer == "spot" else "in any one failure domain"
    # a model a spread puts on spot takes more replicas than its minReplicas (``Crowding.raised``)
    return (f"the {rule} of {', '.join(policies)} keeps at most {', '.join(each)} "
            f"{'replicas' if shared.raised else 'minReplicas'} {part} "
            f"({', '.join(where)})")


def _usd(usd: float, cap: float) -> str:
    """``usd`` to the cent, or finer where that would print it as ``cap``."""
    cents = f"{usd:,.2f}"
    return f"{usd:,.6f}" if cents == f"{cap:,.2f}" else cents


def located(fleet: Fleet, conflict: Conflict) -> Conflict:
    """``conflict`` with each member's place in the fleet's files: a policy's enforcement (where it
    is made preferred), a model's minReplicas."""
    sources = []
    for kind, listed, key in (("Policy", conflict.policies, "enforcement"), ("Model", conflict.models, "minReplicas")):
        for name in listed:
            doc = fleet.document(kind, name)
            if doc is not None:
                sources.append((f"{kind.lower()}:{name}", f"{doc.path}:{doc.line_of('spec', key)}"))
    return dataclasses.replace(conflict, sources=tuple(sources))


def groups(fleet: Fleet) -> list[str]:
    out = [f"policy:{p.name}" for p in fleet.policies if p.required]
    out += [f"model:{m.name}:minReplicas" for m in fleet.models.values() if m.inference and m.spec.min_replicas]
    return out


def touched(fleet: Fleet, rules: Rules, active: Collection[str]) -> Fleet:
    """The fleet a check solves: the models whose minReplicas is among the ``active`` groups (and
    that no active policy retires), and the active required policies alone. It has a plan exactly
    when the whole fleet with those groups has one: a model with no minimum may go unplaced (its
    demand unmet, its training replicas unplaced), which no policy's row forbids, and so leaves
    every row as it was; a retired model is in no row; a preferred policy pays a penalty and never
    makes a plan impossible. So a check of a narrow set is a model of a few models, however many
    the policies in it select."""
    named = {g.split(":")[1] for g in active if g.startswith("model:")}
    models = {n: m for n, m in fleet.models.items()
              if n in named and not retirement(fleet, rules, m, required_of(fleet, m, active))}
    policies = tuple(p for p in fleet.policies if p.required and f"policy:{p.name}" in active)
    return dataclasses.replace(fleet, models=models, policies=policies)


def feasible(fleet: Fleet, rules: Rules, active: set[str], time_limit: float = CHECK_SECONDS,
             unsettled: Callable[[], None] | None = None) -> bool:
    """Whether the fleet has a plan with only the ``active`` groups: False only when HiGHS proves
    it has none; a check that runs out of time counts as feasible (and calls ``unsettled``: the
    answer built on it is not proven minimal). The fleet's model is the
    scalable route's matrix (``build_matrix``; the same rows as the exact model) with no
    objective: its LP first, which settles most infeasible checks at once, then the MIP, which
    stops at its first plan."""
    import numpy as np  # the scalable route's modules (scipy, highspy): imported when a plan fails

    from placer.optimizer.arrays import build_arrays
    from placer.optimizer.highs import solve_arrays
    from placer.optimizer.matrix import build_matrix

    started = time.monotonic()
    arrays = build_arrays(touched(fleet, rules, active), rules)
    model = build_matrix(arrays, rules, {}, cuts=False)
    if model.n_cols == 0:
        return not bool(np.any((model.row_lo > 1e-9) | (model.row_hi < -1e-9)))
    problem = (model.A, np.zeros(model.n_cols), model.lb, model.ub, model.row_lo, model.row_hi)
    lp = solve_arrays(*problem, None, time_limit=max(0.05, time_limit - (time.monotonic() - started)))
    if lp.status == "INFEASIBLE":
        return False
    left = time_limit - (time.monotonic() - started)
    if left > 0.05:
        # HiGHS' MIP presolve checks no time limit in its dual fixing: at L one check's presolve ran
        # past 6 minutes (10 s asked). Without it the search keeps to the limit.
        mip = solve_arrays(*problem, model.integer, time_limit=left, options={"presolve": "off"})
        if mip.status == "INFEASIBLE":
            return False
        if mip.feasible:
            return True
    if unsettled:
        unsettled()
    return True


def usable_gpus(fleet: Fleet, rules: Rules, pool: Pool, policies: Collection[Policy]) -> int:
    """The GPUs of ``pool`` at its most nodes that ``policies`` (required) leave a plan: all of them,
    less those a policy keeps free (a headroom's share)."""
    gpus = pool.max_gpus
    for policy in policies:
        most = behaviour(rules, policy).usable_gpus(policy, fleet, pool)
        if most is not None:
            gpus = min(gpus, most)
    return gpus


def rooms(fleet: Fleet, rules: Rules, model: Model, policies: Collection[Policy]) -> Iterator[tuple[Pool, int]]:
    """Each pool the fit rules and ``policies`` (required, selecting ``model``) leave it, with the
    replicas of it the pool could hold (``usable_gpus``, the model alone), those with room for one at
    least; lazily, so that a caller may stop once it knows enough."""
    for pool in fleet.pools.values():
        if exclusion(fleet, rules, model, pool, policies) is None:
            held = usable_gpus(fleet, rules, pool, policies) // max(1, pool.gpus_per_replica(model.spec.replica.gpus))
            if held > 0:
                yield pool, held


def most_replicas(fleet: Fleet, rules: Rules, model: Model, policies: Collection[Policy],
                  enough: int | None = None) -> int:
    """The replicas of ``model`` the pools ``policies`` (required, selecting it) and the fit rules
    leave it could hold at most (``rooms``), its maxReplicas at most. ``enough``: the pools are
    counted until they hold that many, and no further (whether they hold a model's minReplicas is
    all validate asks: counting every pool for each of bench XL's 5,366 models with minReplicas,
    5,366,000 pools, was most of its time)."""
    total = 0
    for _pool, held in rooms(fleet, rules, model, policies):
        total += held
        if enough is not None and total >= enough:
            break
    cap = model.spec.max_replicas
    return total if cap is None else min(total, cap)


def minimums(fleet: Fleet, rules: Rules, models: Iterable[Model]) -> Iterator[tuple[Model, int, list[Policy]]]:
    """Of ``models``, each inference model with a minReplicas that no required policy retires: the
    model, its minReplicas and its required policies."""
    for model in models:
        need = model.spec.min_replicas if model.inference else None
        if not need:
            continue
        policies = required_of(fleet, model)
        if not retirement(fleet, rules, model, policies):  # a retired model needs no replicas
            yield model, need, list(policies)


def needed(policies: Sequence[Policy], holds: Callable[[list[Policy]], bool]) -> list[Policy]:
    """The ``policies`` a conflict that ``holds`` with all of them needs: a deletion filter, each
    dropped where the conflict holds without it."""
    keep = list(policies)
    for policy in list(keep):
        trial = [p for p in keep if p is not policy]
        if holds(trial):
            keep = trial
    return keep


def short_of(fleet: Fleet, rules: Rules, model: Model, need: int, policies: list[Policy]) -> bool:
    """Whether the pools ``policies`` leave ``model`` hold fewer than ``need`` of its replicas."""
    return most_replicas(fleet, rules, model, policies, need) < need


def capacity_conflicts(fleet: Fleet, rules: Rules) -> Iterator[Conflict]:
    """Step 1 of the module docstring: each model whose minReplicas no allowed pools hold (no
    solver: ``placer validate`` reports them all, so that a fleet no plan can place fails there)."""
    for model, need, policies in minimums(fleet, rules, fleet.models.values()):
        if not short_of(fleet, rules, model, need, policies):
            refused = refused_minimum(fleet, rules, model, need, policies)
            if refused is not None:
                yield refused
            continue
        keep = needed(policies, partial(short_of, fleet, rules, model, need))
        yield Conflict(tuple(p.name for p in keep), (model.name,), 0,
                       capacity=(most_replicas(fleet, rules, model, keep), need))


def refused_minimum(fleet: Fleet, rules: Rules, model: Model, need: int, policies: list[Policy]) -> Conflict | None:
    """A policy among ``policies`` (required, selecting ``model``) that no plan giving the model its
    minReplicas ``need`` keeps on the pools they leave it, though those hold that many (a spread of N
    failure domains over pools all in fewer), with the other policies that takes (a deletion filter),
    or None."""
    for policy in policies:
        rule = behaviour(rules, policy)

        def refuses(others: list[Policy], rule: RuleBehaviour = rule, policy: Policy = policy) -> str | None:
            return rule.refuses_minimum(policy, fleet, model, need, rooms(fleet, rules, model, [*others, policy]))

        others = [p for p in policies if p is not policy]
        if refuses(others) is None:
            continue
        keep = needed(others, lambda trial: refuses(trial) is not None)
        return Conflict((policy.name, *(p.name for p in keep)), (model.name,), 0, refused=refuses(keep) or "")
    return spot_and_spread(fleet, rules, model, need, policies)


def spot_share_and_spread(model: Model, need: int, policies: Collection[Policy]) -> tuple[Policy, Policy] | None:
    """Of ``policies`` (required, selecting ``model``), the strictest maxSpotFraction under 1 (the least f)
    and the strictest spread whose N domains the minReplicas ``need`` must use (the most N <= need), or
    None where either is missing."""
    spots = [p for p in policies if p.rule.max_spot_fraction is not None and p.rule.max_spot_fraction < 1]
    spreads = [p for p in policies if p.rule.spread is not None and p.rule.spread.min_failure_domains <= need]
    if not spots or not spreads:
        return None
    return (min(spots, key=lambda p: p.rule.max_spot_fraction or 0.0),
            max(spreads, key=lambda p: p.rule.spread.min_failure_domains if p.rule.spread else 0))


def on_spot_for_spread(domains_off: Collection[object], domains_spot: Collection[object], spread: int) -> int:
    """The replicas on spot pools a spread over ``spread`` failure domains puts a model at least, its pools
    off spot in ``domains_off`` and those on spot in ``domains_spot``: one in each domain beyond those
    off spot (0 where the domains are too few for the spread, which refuses the model alone)."""
    short = spread - len(set(domains_off))
    return short if 0 < short <= len(set(domains_spot) - set(domains_off)) else 0


def replicas_for_spot(on_spot: int, fraction: float) -> int:
    """The fewest replicas in all that a share ``fraction`` > 0 of them on spot lets ``on_spot`` be on
    spot pools (1e-6 over, as the rule's check allows)."""
    return math.ceil((on_spot - 1e-6) / fraction)


def spot_and_spread(fleet: Fleet, rules: Rules, model: Model, need: int, policies: list[Policy]) -> Conflict | None:
    """A required maxSpotFraction f and a required spread of N <= ``need`` failure domains that no plan
    giving ``model`` its minReplicas keeps together, though each alone does: its pools off spot are in k <
    N domains, so N - k replicas go on spot pools (one in each other domain), and a plan placing T keeps at
    most f·T + 1e-6 on spot, T - those off spot: no more than floor((f·O + 1e-6) / (1 - f)) where its
    pools off spot hold O replicas, nor f·maxReplicas; fewer than N - k refuses it. With the other
    policies that takes (a deletion filter)."""
    pair = spot_share_and_spread(model, need, policies)
    if pair is None:
        return None
    spot, spread = pair

    def refuses(others: list[Policy]) -> tuple[str, str] | None:
        f = spot.rule.max_spot_fraction or 0.0
        n = spread.rule.spread.min_failure_domains if spread.rule.spread else 2
        cap = model.spec.max_replicas
        # the pools are counted until those off spot span N domains or hold enough for N on spot, and no
        # further (a model's every pool, for each of bench XL's models under both rules, took seconds)
        by_cap_most = math.floor(f * cap + 1e-6) if cap is not None else n
        seen: set[str] = set()
        enough = 0
        held = []
        for pool, r in rooms(fleet, rules, model, [*others, spot, spread]):
            held.append((pool, r))
            if not pool.spot:
                seen.add(pool.failure_domain)
                enough += r
                if len(seen) >= n or min(math.floor((f * enough + 1e-6) / (1 - f)), by_cap_most) >= n:
                    return None
        off = [(pool, r) for pool, r in held if not pool.spot]
        domains_off = sorted({pool.failure_domain for pool, _ in off})
        domains_spot = sorted({pool.failure_domain for pool, _ in held if pool.spot} - set(domains_off))
        on_spot = on_spot_for_spread(domains_off, domains_spot, n)
        if not on_spot:
            return None
        steady = sum(r for _, r in off)
        most = math.floor((f * steady + 1e-6) / (1 - f))
        by_cap = cap is not None and math.floor(f * cap + 1e-6) < most
        if by_cap and cap is not None:
            most = math.floor(f * cap + 1e-6)
        if most >= on_spot:
            return None
        where = names(domains_off, 5) or "none"
        spare = names(domains_spot, 5)
        total = max(need, replicas_for_spot(on_spot, f)) if f > 0 else 0
        takes = f"{total:,} replicas in all" if f > 0 else "a share on spot above 0"
        why = (f"{spread.name} spreads {model.name}'s {need:,} replicas over {n} failure domains and {spot.name} keeps "
               f"at most {f:g} of them on spot pools, but the pools it may use off spot are in {len(domains_off)} "
               f"domain{'s' if len(domains_off) != 1 else ''} ({where}): {on_spot:,} must go on spot pools in "
               f"another ({spare}), which takes {takes}; "
               + (f"its maxReplicas of {cap:,} lets at most {most:,} be on spot" if by_cap else
                  f"the pools off spot hold {steady:,} replica{'s' if steady != 1 else ''}, so at most {most:,} "
                  "can be on spot"))
        more = f" to hold {total - on_spot:,} of its replicas there" if f > 0 else ""
        remedy = (f"raise its maxReplicas to {total:,} or add a pool it may use off spot in another failure domain"
                  if by_cap else f"add a pool it may use off spot in another failure domain, or capacity off spot{more}")
        return why, remedy

    others = [p for p in policies if p is not spot and p is not spread]
    if refuses(others) is None:
        return None
    keep = needed(others, lambda trial: refuses(trial) is not None)
    why, remedy = refuses(keep) or ("", "")
    return Conflict((spread.name, spot.name, *(p.name for p in keep)), (model.name,), 0, refused=why, remedy=remedy)


def least_usd(fleet: Fleet, rules: Rules, model: Model, policies: Collection[Policy], need: int,
              cheapest: Sequence[tuple[float, Pool]]) -> float:
    """The least compute ``need`` replicas of ``model`` can cost on the pools ``policies`` (required,
    selecting it) and the fit rules leave it: ``cheapest`` holds every pool with the cost a budget
    counts of one replica there, cheapest first; each pool's whole capacity is filled in turn (a
    lower bound: other models, and nodes an elastic pool shares, only add to it)."""
    total, left = 0.0, need
    for usd, pool in cheapest:
        if exclusion(fleet, rules, model, pool, policies) is None:
            held = min(left, usable_gpus(fleet, rules, pool, policies) // max(1, pool.gpus_per_replica(model.spec.replica.gpus)))
            total += held * usd
            left -= held
            if left <= 0:
                break
    return total


def budget_conflicts(fleet: Fleet, rules: Rules) -> Iterator[Conflict]:
    """Step 1 of the module docstring for each required budget whose models' minReplicas cost more,
    at the least, than its maxUsdPerHour (no solver: ``placer validate`` reports them all)."""
    for budget in fleet.policies:
        if budget.required and budget.rule.budget is not None:
            found = overspent(fleet, rules, budget, budget.rule.budget.max_usd_per_hour)
            if found is not None:
                yield found


def overspent(fleet: Fleet, rules: Rules, budget: Policy, cap: float) -> Conflict | None:
    """``budget`` (of ``cap`` USD/h) and the fewest of its models whose minReplicas cost more than
    ``cap`` at the least, with the other required policies that bound needs; None where they do not."""
    counted = {p.name for p in fleet.pools_of(budget.spec.pools)}  # the pools whose compute it counts
    orders: dict[int, list[tuple[float, Pool]]] = {}  # by GPUs per replica

    def cheapest(model: Model) -> list[tuple[float, Pool]]:
        gpus = model.spec.replica.gpus
        if gpus not in orders:
            orders[gpus] = sorted(((replica_compute_usd(p, gpus) if p.name in counted else 0.0, p)
                                   for p in fleet.pools.values()), key=lambda item: item[0])
        return orders[gpus]

    def least(model: Model, need: int, policies: Collection[Policy]) -> float:
        mine = [p for p in policies if model_matches(p.spec.models, model)]
        return least_usd(fleet, rules, model, mine, need, cheapest(model))

    needs = [(model, need, least(model, need, policies))
             for model, need, policies in minimums(fleet, rules, fleet.models_of(budget.spec.models))]
    if sum(usd for _, _, usd in needs) - cap <= OVER_BUDGET:
        return None
    # the fewest models whose bounds pass the cap: the largest first
    needs.sort(key=lambda item: -item[2])
    kept: list[tuple[Model, int, float]] = []
    for item in needs:
        kept.append(item)
        if sum(usd for _, _, usd in kept) - cap > OVER_BUDGET:
            break
    # the other policies whose exclusions the bound needs: a deletion filter
    keep = needed(list({p.name: p for m, _, _ in kept for p in required_of(fleet, m) if p is not budget}.values()),
                  lambda trial: sum(least(m, n, trial) for m, n, _ in kept) - cap > OVER_BUDGET)
    shares = tuple((m.name, n, least(m, n, keep)) for m, n, _ in kept)
    return Conflict((budget.name, *(p.name for p in keep)), tuple(m.name for m, _, _ in kept), 0,
                    budget=Overspend(budget.name, cap, sum(usd for _, _, usd in shares), shares))


def arithmetic_conflicts(fleet: Fleet, rules: Rules) -> Iterator[Conflict]:
    """Every conflict step 1 finds: minReplicas beyond the capacity the policies leave, then
    required budgets that cannot pay for them."""
    yield from capacity_conflicts(fleet, rules)
    yield from budget_conflicts(fleet, rules)


def quickxplain(items: Sequence[str], infeasible: Callable[[set[str]], bool]) -> list[str]:
    """A minimal subset of ``items`` that ``infeasible`` (of a set of items) holds for, given that
    it holds for all of them (Junker's QuickXplain, with nothing in the background)."""

    def qx(background: set[str], added: bool, candidates: list[str]) -> list[str]:
        if added and infeasible(background):
            return []
        if len(candidates) == 1:
            return candidates
        half = len(candidates) // 2
        first, second = candidates[:half], candidates[half:]
        right = qx(background | set(first), True, second)
        left = qx(background | set(right), bool(right), first)
        return left + right

    return qx(set(), False, list(items)) if items else []


def explain_infeasible(fleet: Fleet, rules: Rules, progress: Callable[[str], None] | None = None) -> Conflict:
    """A small set of conflicting groups (the whole set must be infeasible); see the module
    docstring. ``progress``: told each check."""
    found = next(arithmetic_conflicts(fleet, rules), None)
    if found is not None:
        return located(fleet, found)
    every = groups(fleet)
    checks = [0]
    timed_out: list[int] = []  # the checks that ran out of time, each counted feasible

    def infeasible(active: set[str]) -> bool:
        checks[0] += 1
        if progress:
            progress(f"conflict check {checks[0]}: {len(active)} of {len(every)} policies and minimums")
        return not feasible(fleet, rules, active, unsettled=lambda: timed_out.append(checks[0]))

    keep = quickxplain(every, infeasible)
    # a check counted feasible for want of time may have kept a group the conflict does not need:
    # the set is proven a conflict by the last check, but minimal only when no check timed out
    proven = infeasible(set(keep))
    minimal = proven and not timed_out
    if not proven:
        keep = every
    policies = tuple(g.split(":", 1)[1] for g in keep if g.startswith("policy:"))
    models = tuple(g.split(":")[1] for g in keep if g.startswith("model:"))
    return located(fleet, _said(fleet, rules, Conflict(policies, models, checks[0], minimal)))


def _said(fleet: Fleet, rules: Rules, conflict: Conflict) -> Conflict:
    """``conflict`` (the search's) with why in numbers where it is a required spread and spot share that
    other models' minReplicas keep apart (``placer.optimizer.crowded``: the search named the policies and
    minimums, and no failure domain)."""
    from placer.optimizer.crowded import crowded_spreads  # it builds on this module

    named = set(conflict.policies)
    if not any(p.rule.spread is not None and p.name in named for p in fleet.policies):
        return conflict
    for crowd in crowded_spreads(fleet, rules):
        if crowd.infeasible and {crowd.spread, crowd.share} <= named and set(crowd.models) <= set(conflict.models):
            return dataclasses.replace(conflict, refused=crowd.words(), remedy=crowd.remedy())
    return conflict
