"""Models whose minReplicas need more places on pools than a required maxModelsPerPool leaves: validate's
check, no solver.

A required ``maxModelsPerPool: N`` lets each pool it selects host N of the models it selects. A model
it selects whose minReplicas n may go only on such pools (every pool it may use that holds one
replica is one of them) takes a place on k of them at least, k the fewest of its pools whose room
holds n (``usable_gpus`` // c[m,p] each, the largest first), and N' at least where a required spread
of N' <= n failure domains selects it (one pool in each). The check is a relaxation of the plan's
rows, a max flow (networkx):

    source -> model m       capacity k[m]
    model m -> pool p       unbounded, for each pool p the model may use that holds one replica of it
    pool p -> sink          capacity N

Any plan gives a flow that fills every model's edge: the model is on at least k[m] pools (its
replicas there are n or more, and any k[m] - 1 of its pools hold fewer), one unit to each of k[m] of
them, and a pool hosts at most N of the models. So a flow short of Σ k[m] proves that no plan exists;
a minimum cut's source side is a set of models M whose places pass N x the pools any of them may use
(Hall's condition), which the error names. Models that may also use a pool the policy leaves
unlimited, or whose minReplicas no pool holds (``capacity_conflicts``), are left out. Models with the
same pools are one node. (``separateWorkloads`` needs no such check: only inference has a minimum,
training and batch replicas are priced when not placed, so a plan with none of them keeps the rule.)
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence

import networkx as nx
import numpy as np

from placer.candidates import exclusion
from placer.fleet import Fleet, Model, Policy, model_matches
from placer.optimizer.arrays import FleetArrays
from placer.optimizer.conflicts import BREAKDOWN, Conflict, needed, usable_gpus
from placer.optimizer.shared import POLICY_SEARCH
from placer.policy import Rules


def slot_conflicts(fleet: Fleet, rules: Rules, a: FleetArrays, skip: Collection[str] = ()) -> Iterator[Conflict]:
    """Each required maxModelsPerPool whose pools cannot host the models its minReplicas put there
    (the module docstring); ``skip``: models left out (a minReplicas already reported)."""
    limited = [p for p in fleet.policies if p.required and p.rule.max_models_per_pool is not None]
    if not limited:
        return
    required = [p for p in fleet.policies if p.required]
    spreads = [(p, {m.name for m in fleet.models_of(p.spec.models)}) for p in required if p.rule.spread is not None]
    usable = np.array([usable_gpus(fleet, rules, pool, required) for pool in a.pools], dtype=np.int64)
    for policy in limited:
        limit = policy.rule.max_models_per_pool or 0
        mine = np.zeros(len(a.pools), dtype=bool)
        mine[[a.pool_index[p.name] for p in fleet.pools_of(policy.spec.pools)]] = True
        places: list[tuple[Model, int, int, np.ndarray]] = []  # (model, minReplicas, k, its pools)
        for model in fleet.models_of(policy.spec.models):
            need = model.spec.min_replicas if model.inference else None
            if not need or model.name in a.retired or model.name in skip:
                continue
            mi = a.model_index[model.name]
            lo, hi = int(a.pair_ptr[mi]), int(a.pair_ptr[mi + 1])
            pools, c = a.pair_pool[lo:hi], a.pair_c[lo:hi]
            holds = c <= usable[pools]
            k = _fewest_pools(usable[pools[holds]] // c[holds], need)
            if k and mine[pools[holds]].all():
                places.append((model, need, max(k, _domains(spreads, model, need)), pools[holds]))
        for members in _short(places, limit):
            yield _conflict(fleet, rules, a, policy, limit, [places[i] for i in members], required)


def _domains(spreads: Sequence[tuple[Policy, set[str]]], model: Model, need: int) -> int:
    """The failure domains, so pools, the required ``spreads`` (each with the models it selects) make
    ``model``'s minReplicas ``need`` use: the most of N <= need (0 where none applies)."""
    return max((p.rule.spread.min_failure_domains for p, names in spreads
                if p.rule.spread is not None and model.name in names and p.rule.spread.min_failure_domains <= need),
               default=0)


def _fewest_pools(rooms: np.ndarray, need: int) -> int:
    """The fewest of ``rooms`` (replicas each pool holds) that hold ``need`` together; 0 where all do not."""
    total = np.cumsum(np.sort(rooms)[::-1])
    k = int(np.searchsorted(total, need)) + 1
    return k if k <= len(total) else 0


def _short(places: Sequence[tuple[Model, int, int, np.ndarray]], limit: int) -> list[list[int]]:
    """The sets of ``places``' models whose places pass ``limit`` x the pools any of them may use, one
    per connected part of a minimum cut's source side; none where the flow fills every model."""
    if not places:
        return []
    groups: dict[bytes, list[int]] = {}
    for i, (_, _, _, pools) in enumerate(places):
        groups.setdefault(pools.tobytes(), []).append(i)
    graph = nx.DiGraph()
    for j, (key, members) in enumerate(groups.items()):
        graph.add_edge("source", ("m", j), capacity=sum(places[i][2] for i in members))
        for p in np.frombuffer(key, dtype=places[members[0]][3].dtype).tolist():
            graph.add_edge(("m", j), ("p", p))  # unbounded
            graph.add_edge(("p", p), "sink", capacity=limit)
    wanted = sum(k for _, _, k, _ in places)
    value, (side, _) = nx.minimum_cut(graph, "source", "sink")
    if value >= wanted:
        return []
    keys = list(groups)
    dtype = places[0][3].dtype
    crowded = [j for kind, j in (n for n in side if isinstance(n, tuple)) if kind == "m"]
    parts = nx.connected_components(nx.Graph(
        [(("m", j), ("p", p)) for j in crowded for p in np.frombuffer(keys[j], dtype=dtype).tolist()]))
    out = []
    for part in parts:
        members = sorted(i for kind, j in part if kind == "m" for i in groups[keys[j]])
        if _over([places[i] for i in members], limit) > 0:
            out.append(members)
    return out


def _over(places: Sequence[tuple[Model, int, int, np.ndarray]], limit: int) -> int:
    """Places ``places``' models take beyond ``limit`` x the pools any of them may use."""
    pools = np.unique(np.concatenate([pools for _, _, _, pools in places]))
    return sum(k for _, _, k, _ in places) - limit * len(pools)


def _conflict(fleet: Fleet, rules: Rules, a: FleetArrays, policy: Policy, limit: int,
              places: list[tuple[Model, int, int, np.ndarray]], required: list[Policy]) -> Conflict:
    """The conflict of ``places``: ``policy``, the other required policies (a deletion filter) without
    which the models would have places enough, and the models' minReplicas, with the numbers."""
    pools = [a.pools[p].name for p in np.unique(np.concatenate([pools for _, _, _, pools in places])).tolist()]
    each = [f"{m.name} {k:,}" for m, _, k, _ in places]
    if len(each) > 2 * BREAKDOWN:
        each[2 * BREAKDOWN - 1:] = [f"and {len(each) - 2 * BREAKDOWN + 1:,} more"]
    named = pools if len(pools) <= 2 * BREAKDOWN else [*pools[:2 * BREAKDOWN - 1],
                                                      f"and {len(pools) - 2 * BREAKDOWN + 1:,} more"]
    wanted = sum(k for _, _, k, _ in places)
    why = (f"{policy.name} lets each of its pools host {limit:,} of the models it selects, and the only pools "
           f"these may use, {', '.join(named)}, host {limit * len(pools):,} in all; their minReplicas take places "
           f"on {wanted:,} (pools each needs at least: {', '.join(each)})")
    others = _policies(fleet, rules, policy, limit, [(m, n) for m, n, _, _ in places],
                       [p for p in required if p is not policy])
    return Conflict((policy.name, *(p.name for p in others)), tuple(m.name for m, _, _, _ in places), 0,
                    refused=why, remedy=f"raise {policy.name}'s maxModelsPerPool or add a pool they may use")


def _policies(fleet: Fleet, rules: Rules, policy: Policy, limit: int, needs: list[tuple[Model, int]],
              required: list[Policy]) -> list[Policy]:
    """The other required policies the conflict of ``needs`` takes: each dropped (a deletion filter)
    where the models' places still pass ``limit`` x their pools without it."""
    candidates = [p for p in required
                  if p.rule.headroom is not None or any(model_matches(p.spec.models, m) for m, _ in needs)]
    if not candidates or len(needs) * len(fleet.pools) * len(candidates) > POLICY_SEARCH:
        return candidates
    limited = {p.name for p in fleet.pools_of(policy.spec.pools)}

    def short(policies: list[Policy]) -> bool:
        spreads = [(p, {m.name for m in fleet.models_of(p.spec.models)}) for p in policies if p.rule.spread is not None]
        used: set[str] = set()
        wanted = 0
        for model, need in needs:
            mine = [p for p in policies if model_matches(p.spec.models, model)]
            rooms = []
            for pool in fleet.pools.values():
                if exclusion(fleet, rules, model, pool, [*mine, policy]) is not None:
                    continue
                c = pool.gpus_per_replica(model.spec.replica.gpus)
                room = usable_gpus(fleet, rules, pool, [*policies, policy]) // max(1, c)
                if room > 0:
                    if pool.name not in limited:
                        return False  # a pool the policy leaves unlimited: no place taken
                    used.add(pool.name)
                    rooms.append(room)
            k = _fewest_pools(np.array(rooms, dtype=np.int64), need)
            if not k:
                return True  # short alone
            wanted += max(k, _domains(spreads, model, need))
        return wanted > limit * len(used)

    return needed(candidates, short) if short(candidates) else candidates
