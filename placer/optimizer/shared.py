"""Models whose minReplicas the pools they share cannot hold together: validate's check, no solver.

Each model alone may fit (``conflicts.capacity_conflicts`` asks that) while several, pinned to the
same pools by their required policies, GPU types, memory or residency, do not: two models with
minReplicas 3 of 2 GPUs on one 8-GPU pool. The check is a relaxation of the plan's rows, a max flow
(networkx):

    source -> model m       capacity minReplicas[m] * g[m], g[m] = min over its pools p of c[m,p]
    model m -> pool p       unbounded, for each pool p the model may use (its eligible pairs, the
                            arrays' ``pair_pool``) that holds one replica of it
    pool p -> sink          capacity U[p]: the GPUs of p at its most nodes less what a required
                            headroom keeps free (``conflicts.usable_gpus``, every required policy)

Any plan gives a flow that fills every model's edge: f[m,p] = g[m]·x[m,p] <= c[m,p]·x[m,p], whose
sum over m is at most U[p] (capacity row and headroom rows), and Σ_p x[m,p] >= minReplicas[m]. So a
maximum flow short of Σ_m minReplicas[m]·g[m] proves that no plan exists (the check never refuses a
fleet that has one; spread, spot shares, maxModelsPerPool and the like are left out, and only make
the plan harder). The source side of a minimum cut is a set of models M whose GPUs exceed what the
pools any of them may use hold (Hall's condition): the error names it, cut to a few models.

Models that use exactly the same pools are one node, and pools that the same model nodes use are
one: bench XL's 5,366 models with a minimum and 965 pools are 428 and 59 nodes.
"""

from __future__ import annotations

import gc
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np
from networkx.algorithms.flow import preflow_push

from placer.candidates import exclusion
from placer.fleet import Fleet, Model, Policy, model_matches
from placer.optimizer.arrays import FleetArrays, build_arrays
from placer.optimizer.conflicts import Conflict, Crowding, needed, usable_gpus
from placer.policy import Rules

# the policies a conflict names are found by a deletion filter, each check asking every pool of each
# model in it; past this many such questions in all the error names the minReplicas alone
POLICY_SEARCH = 200_000


@dataclass
class _Group:
    """Models that may use the same pools: one node of the flow."""

    pools: np.ndarray  # indices of the pools, ascending
    models: list[tuple[int, int, int]]  # (model index, minReplicas, g: the fewest GPUs a replica takes)

    @property
    def gpus(self) -> int:
        return sum(n * g for _, n, g in self.models)


def shared_conflicts(fleet: Fleet, rules: Rules, arrays: FleetArrays | None = None,
                     skip: Collection[str] = ()) -> list[Conflict]:
    """Each set of models whose minReplicas the pools they may use cannot hold together (see the
    module docstring); ``skip``: models left out (a minReplicas already reported)."""
    a = arrays if arrays is not None else build_arrays(fleet, rules)
    # the groups and the flow's dicts are new objects and no garbage: with bench XL's fleet alive, the
    # cycle collector walked it again and again as they grew, 0.2-0.3 s where the check takes 0.1 s
    was = gc.isenabled()
    gc.disable()
    try:
        required = [p for p in fleet.policies if p.required]
        usable = np.array([usable_gpus(fleet, rules, pool, required) for pool in a.pools], dtype=np.int64)
        groups = _groups(a, usable, skip)
        found = _short(groups, usable) if groups else []
    finally:
        if was:
            gc.enable()
    return [_conflict(fleet, rules, a, members, usable, required) for members in found]


def _groups(a: FleetArrays, usable: np.ndarray, skip: Collection[str]) -> list[_Group]:
    """The inference models with a minReplicas (but those ``skip`` names and the retired), grouped by
    the pools they may use that hold one replica of them; a model no pool holds one of is left out
    (``capacity_conflicts`` names it alone)."""
    groups: dict[bytes, _Group] = {}
    for mi, model in enumerate(a.models):
        need = model.spec.min_replicas if model.inference else None
        if not need or model.name in a.retired or model.name in skip:
            continue
        lo, hi = int(a.pair_ptr[mi]), int(a.pair_ptr[mi + 1])
        pools, c = a.pair_pool[lo:hi], a.pair_c[lo:hi]
        holds = c <= usable[pools]
        if not holds.any():
            continue
        mine = pools[holds]
        group = groups.setdefault(mine.tobytes(), _Group(mine, []))
        group.models.append((mi, need, int(c[holds].min())))
    return list(groups.values())


def _short(groups: list[_Group], usable: np.ndarray) -> list[list[_Group]]:
    """The sets of model groups whose GPUs pass what the pools they may use hold, one per connected
    part of a minimum cut's source side; none where the flow fills every group."""
    # pools that the same groups use are one node: (the groups, as bytes) -> those pools
    user = np.repeat(np.arange(len(groups)), [len(g.pools) for g in groups])
    used = np.concatenate([g.pools for g in groups])
    order = np.lexsort((user, used))
    user, used = user[order], used[order]
    starts = np.flatnonzero(np.r_[True, used[1:] != used[:-1]])
    pool_nodes: dict[bytes, list[int]] = {}
    for lo, hi in zip(starts.tolist(), [*starts[1:].tolist(), len(used)], strict=True):
        pool_nodes.setdefault(user[lo:hi].tobytes(), []).append(int(used[lo]))
    graph = nx.DiGraph()
    graph.add_edges_from(("source", ("m", i), {"capacity": group.gpus}) for i, group in enumerate(groups))
    for j, (who, pools) in enumerate(pool_nodes.items()):
        graph.add_edge(("p", j), "sink", capacity=int(usable[pools].sum()))
        graph.add_edges_from((("m", i), ("p", j)) for i in np.frombuffer(who, dtype=user.dtype).tolist())  # unbounded
    wanted = sum(group.gpus for group in groups)
    # phase 1 of push-relabel is a minimum cut: the nodes that cannot reach the sink in its residual
    # network are a cut's source side (as nx.minimum_cut finds it, less its cutset's edge list)
    residual = preflow_push(graph, "source", "sink", value_only=True)
    if residual.graph["flow_value"] >= wanted:
        return []
    open_to_sink = {"sink"}
    stack = ["sink"]
    while stack:
        node = stack.pop()
        for before, edge in residual.pred[node].items():
            if before not in open_to_sink and edge["flow"] < edge["capacity"]:
                open_to_sink.add(before)
                stack.append(before)
    side = set(residual) - open_to_sink
    crowded = [node[1] for node in side if isinstance(node, tuple) and node[0] == "m"]
    parts = nx.connected_components(nx.Graph(
        [(("m", i), ("p", p)) for i in crowded for p in groups[i].pools.tolist()]))
    out = []
    for part in parts:
        members = sorted(i for kind, i in part if kind == "m")
        if _over([groups[i] for i in members], usable) > 0:
            out.append(_fewest([groups[i] for i in members], usable))
    return out


def _over(groups: Sequence[_Group], usable: np.ndarray) -> int:
    """GPUs the ``groups``' minReplicas take beyond what every pool any of them may use holds."""
    pools = np.unique(np.concatenate([group.pools for group in groups]))
    return sum(group.gpus for group in groups) - int(usable[pools].sum())


def _fewest(groups: list[_Group], usable: np.ndarray) -> list[_Group]:
    """Few of ``groups``' models that are still over what their pools hold: whole groups dropped
    while the rest are (smallest first, until none can be), then, of the groups that stay, the
    largest minimum of each and the largest others until their GPUs pass the pools' again."""
    keep = list(groups)
    dropped = True
    while dropped:
        dropped = False
        for group in sorted(keep, key=lambda g: g.gpus):
            trial = [g for g in keep if g is not group]
            if trial and _over(trial, usable) > 0:
                keep, dropped = trial, True
                break
    room = int(usable[np.unique(np.concatenate([g.pools for g in keep]))].sum())
    chosen = [[max(g.models, key=lambda m: m[1] * m[2])] for g in keep]
    total = sum(ms[0][1] * ms[0][2] for ms in chosen)
    others = sorted(((m, k) for k, g in enumerate(keep) for m in g.models if m is not chosen[k][0]),
                    key=lambda item: -item[0][1] * item[0][2])
    for m, k in others:
        if total > room:
            break
        chosen[k].append(m)
        total += m[1] * m[2]
    return [_Group(g.pools, ms) for g, ms in zip(keep, chosen, strict=True)]


def _conflict(fleet: Fleet, rules: Rules, a: FleetArrays, groups: list[_Group], usable: np.ndarray,
              required: list[Policy]) -> Conflict:
    """The conflict of ``groups``: their models' minReplicas, the pools they may use with the GPUs each
    holds, and the required policies (a deletion filter) without which they would not be short."""
    needs = sorted(((a.models[mi], n, g) for group in groups for mi, n, g in group.models),
                   key=lambda item: a.model_index[item[0].name])
    pools = np.unique(np.concatenate([group.pools for group in groups])).tolist()
    shared = Crowding(tuple((m.name, n, g) for m, n, g in needs),
                      tuple((a.pools[p].name, int(usable[p]), a.pools[p].max_gpus) for p in pools))
    policies = _policies(fleet, rules, [(m, n) for m, n, _ in needs], required)
    return Conflict(tuple(p.name for p in policies), tuple(m.name for m, _, _ in needs), 0, shared=shared)


def _policies(fleet: Fleet, rules: Rules, needs: list[tuple[Model, int]], required: list[Policy]) -> list[Policy]:
    """The required policies the conflict of ``needs`` (models and their minReplicas) takes: those that
    keep the models off other pools or a pool's GPUs free, each dropped (a deletion filter) where
    the models are short of room without it."""
    candidates = [p for p in required
                  if p.rule.headroom is not None or any(model_matches(p.spec.models, m) for m, _ in needs)]
    if not candidates or len(needs) * len(fleet.pools) * len(candidates) > POLICY_SEARCH:
        return []

    def short(policies: list[Policy]) -> bool:
        """Whether the models' minReplicas take more GPUs than the pools any of them may use hold,
        ``policies`` the only required ones."""
        room: dict[str, int] = {}
        used: set[str] = set()
        gpus = 0
        for model, need in needs:
            mine = [p for p in policies if model_matches(p.spec.models, model)]
            fewest = 0
            for pool in fleet.pools.values():
                if exclusion(fleet, rules, model, pool, mine) is not None:
                    continue
                if pool.name not in room:
                    room[pool.name] = usable_gpus(fleet, rules, pool, policies)
                c = pool.gpus_per_replica(model.spec.replica.gpus)
                if c <= room[pool.name]:
                    used.add(pool.name)
                    fewest = c if not fewest else min(fewest, c)
            gpus += need * fewest
        return gpus > sum(room[name] for name in used)

    return needed(candidates, short) if short(candidates) else []
