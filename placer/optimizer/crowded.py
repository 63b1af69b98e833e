"""A required spread that other models' minReplicas push onto spot pools: validate's warning, plan's words.

A model m (minReplicas n) under a required spread of N <= n failure domains places a replica in N
domains in every plan. Where the pools m may use off spot in a domain d are taken by the minReplicas of
other models that may use no pool but those (``on-pb`` pins ``fill`` to ``pb``, whose GPUs its minimum
takes), m has no replica off spot in d, in any plan: with O_d the GPUs of m's pools off spot in d (at
their most nodes, less a required headroom) and F_d the GPUs of the minReplicas of the models whose every
pool (that holds one replica) is among them, each replica of those at least its fewest GPUs g, a plan
leaves m at most O_d - F_d there, fewer than the fewest GPUs c one of its replicas takes on them. So with
k domains left off spot, k < N, at least N - k of m's replicas are on spot pools (one in each other
domain), in every plan: a warning (spot pools can be reclaimed, and a spread is for resilience).

Under a required maxSpotFraction f of m too, a plan placing T replicas keeps at most f·T + 1e-6 on spot,
the rest off spot, where the domains left hold at most R = sum over them of floor((O_d - F_d) / c_d):
so at most floor((f·R + 1e-6) / (1 - f)) on spot, and fewer than N - k means no plan exists (the
arithmetic of ``conflicts.spot_and_spread``, with the room others' minimums leave). The check is a
relaxation (it counts only models pinned inside one domain's pools), so it never says so of a fleet that
has a plan. validate warns and leaves the refusal to plan, whose conflict (its own search names the
policies and minimums) then says why in these words, with the domains (the search alone named no domain).
Cheap: one pass over the arrays' pairs of the models with a minReplicas, and none where no required
spread is; no solver.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from placer.fleet import Fleet, Policy
from placer.optimizer.arrays import FleetArrays, build_arrays
from placer.optimizer.conflicts import on_spot_for_spread, replicas_for_spot, usable_gpus
from placer.policy import Rules
from placer.words import names

SHOWN = 5  # names of pools, domains, models a message lists before "and N more"


@dataclass(frozen=True)
class CrowdedSpread:
    """Model ``model``'s spread ``spread`` (N ``domains``) that others' minReplicas push onto spot pools."""

    model: str
    need: int  # its minReplicas
    spread: str
    domains: int  # the spread's N
    # each failure domain whose pools off spot the others' minimums take: (domain, those pools, the models)
    closed: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]
    left: tuple[str, ...]  # the domains where it may still run off spot
    spot_pools: tuple[str, ...]  # its spot pools outside ``left``
    on_spot: int  # replicas every plan puts on spot pools
    share: str = ""  # a required maxSpotFraction of the model, where one is
    fraction: float = 1.0
    off_spot: int = 0  # replicas the domains ``left`` hold off spot, at the most
    most: int = 0  # replicas the share then lets be on spot
    total: int = 0  # replicas in all the share needs for ``on_spot`` of them on spot

    @property
    def infeasible(self) -> bool:
        return bool(self.share) and self.most < self.on_spot

    @property
    def models(self) -> tuple[str, ...]:
        return (self.model, *sorted({m for _, _, ms in self.closed for m in ms}))

    def words(self) -> str:
        """Why, in numbers, for validate's warning and plan's conflict."""
        where = "; ".join(f"in {d} the pools it may use off spot ({names(pools, SHOWN)}) are taken by the minReplicas of "
                          f"{names(models, SHOWN)}" for d, pools, models in self.closed[:SHOWN])
        if len(self.closed) > SHOWN:
            where += f"; and {len(self.closed) - SHOWN} more domains"
        said = (f"{self.spread} spreads {self.model}'s {self.need:,} replicas over {self.domains} failure domains, "
                f"but {where}: {self.on_spot:,} of its replicas must go on spot pools ({names(self.spot_pools, SHOWN)}), "
                f"in every plan")
        if not self.share:
            return said
        said += (f", and {self.share} keeps at most {self.fraction:g} of them on spot pools, which takes "
                 + (f"{self.total:,} replicas in all" if self.fraction > 0 else "a share on spot above 0")
                 + f"; its pools off spot in the domains left to it ({names(self.left, SHOWN) or 'none'}) hold "
                 f"{self.off_spot:,} replica{'s' if self.off_spot != 1 else ''}, so at most {self.most:,} can be on spot")
        return said

    def warning(self) -> str:
        """validate's warning: plan refuses the fleet, or the spread rests on spot pools."""
        if self.infeasible:
            return f"{self.words()}: plan will find no placement; {self.remedy()}"
        return (f"{self.words()}; spot capacity can be reclaimed at any time, taking those replicas out of the "
                f"spread: if it should not rest on spot, {self.remedy()}")

    def remedy(self) -> str:
        pools = sorted({p for _, ps, _ in self.closed for p in ps})
        more = f" to hold {self.total - self.on_spot:,} of its replicas there" if self.share and self.fraction > 0 else ""
        return (f"add capacity to {names(pools, SHOWN)} or a pool off spot in {names([d for d, _, _ in self.closed], SHOWN)}"
                + (f", or capacity off spot{more}" if self.infeasible else ""))


def crowded_spreads(fleet: Fleet, rules: Rules, arrays: FleetArrays | None = None) -> list[CrowdedSpread]:
    """Each model whose required spread others' minReplicas push onto spot pools (the module docstring)."""
    spreads = [p for p in fleet.policies if p.required and p.rule.spread is not None]
    if not spreads:
        return []
    a = arrays if arrays is not None else build_arrays(fleet, rules)
    required = [p for p in fleet.policies if p.required]
    # the models each required spread or spot share selects, once (not each model's policies: validate at
    # bench XL asks 10,000 models)
    capping = [(p, {m.name for m in fleet.models_of(p.spec.models)}) for p in required
               if p.rule.spread is not None or (p.rule.max_spot_fraction is not None and p.rule.max_spot_fraction < 1)]
    usable = np.array([usable_gpus(fleet, rules, pool, required) for pool in a.pools], dtype=np.int64)
    wanted = []  # (model index, minReplicas, its required spreads and spot shares), with a minimum and a spread
    pinned: dict[int, list[tuple[frozenset[int], int, str]]] = {}  # domain -> (pools, GPUs of the minimum, model)
    for mi, model in enumerate(a.models):
        need = model.spec.min_replicas if model.inference else None
        if not need or model.name in a.retired:
            continue  # a training or batch model's replicas are no minimum; a retired model needs none
        lo, hi = int(a.pair_ptr[mi]), int(a.pair_ptr[mi + 1])
        pools, c = a.pair_pool[lo:hi], a.pair_c[lo:hi]
        holds = c <= usable[pools]
        if not holds.any():
            continue  # no pool holds one: conflicts.capacity_conflicts names it
        mine = pools[holds]
        domains = set(a.pool_domain[mine].tolist())
        if len(domains) == 1 and not a.pool_spot[mine].any():
            pinned.setdefault(domains.pop(), []).append((frozenset(mine.tolist()), need * int(c[holds].min()), model.name))
        policies = [p for p, names in capping if model.name in names]
        if any(p.rule.spread is not None and p.rule.spread.min_failure_domains <= need for p in policies):
            wanted.append((mi, need, policies))
    names = {int(d): pool.failure_domain for d, pool in zip(a.pool_domain.tolist(), a.pools, strict=True)}
    out = []
    for mi, need, policies in wanted:
        found = _crowded(a, usable, pinned, names, mi, need, policies)
        if found is not None:
            out.append(found)
    return out


def _crowded(a: FleetArrays, usable: np.ndarray, pinned: dict[int, list[tuple[frozenset[int], int, str]]],
             names: dict[int, str], mi: int, need: int, policies: Sequence[Policy]) -> CrowdedSpread | None:
    model = a.models[mi]
    spreads = [(p.rule.spread.min_failure_domains, p.name) for p in policies
               if p.rule.spread is not None and p.rule.spread.min_failure_domains <= need]
    n, spread = max(spreads)
    lo, hi = int(a.pair_ptr[mi]), int(a.pair_ptr[mi + 1])
    pools, c = a.pair_pool[lo:hi], a.pair_c[lo:hi]
    holds = c <= usable[pools]
    pools, c = pools[holds], c[holds]
    off: dict[int, list[tuple[int, int]]] = {}  # domain -> (pool, c) off spot
    spot_domains: dict[int, list[int]] = {}
    for p, cp in zip(pools.tolist(), c.tolist(), strict=True):
        d = int(a.pool_domain[p])
        if a.pool_spot[p]:
            spot_domains.setdefault(d, []).append(p)
        else:
            off.setdefault(d, []).append((p, cp))
    if not spot_domains:
        return None  # not spot tolerant, or no spot pool: the spread's own check (shared.py) counts the room
    closed, left, held = [], [], 0
    for d, members in sorted(off.items(), key=lambda item: names[item[0]]):
        mine = {p for p, _ in members}
        crowd = [(gpus, other) for pools_of, gpus, other in pinned.get(d, [])
                 if other != model.name and pools_of <= mine]
        free = int(usable[list(mine)].sum()) - sum(g for g, _ in crowd)
        fewest = min(cp for _, cp in members)
        if free < fewest:
            closed.append((names[d], tuple(sorted(a.pools[p].name for p in mine)), tuple(sorted({o for _, o in crowd}))))
        else:
            left.append(d)
            held += free // fewest
    if not closed:
        return None
    on_spot = on_spot_for_spread(left, spot_domains, n)
    if not on_spot or on_spot_for_spread(off, spot_domains, n) >= on_spot:
        return None  # the spread cannot be met at all, or the pools off spot are too few without the others
    spot_pools = tuple(sorted(a.pools[p].name for d, ps in spot_domains.items() if d not in left for p in ps))
    found = CrowdedSpread(model.name, need, spread, n, tuple(closed),
                          tuple(names[d] for d in left), spot_pools, on_spot)
    shares = [(p.rule.max_spot_fraction, p.name) for p in policies
              if p.rule.max_spot_fraction is not None and p.rule.max_spot_fraction < 1]
    if not shares:
        return found
    f, share = min(shares)
    most = math.floor((f * held + 1e-6) / (1 - f))
    total = max(need, replicas_for_spot(on_spot, f)) if f > 0 else 0
    return CrowdedSpread(found.model, need, found.spread, n, found.closed, found.left, spot_pools, on_spot,
                         share, f, held, most, total)
