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
fleet that has one). The source side of a minimum cut is a set of models M whose GPUs exceed what the
pools any of them may use hold (Hall's condition): the error names it, cut to a few models.

Two more flows each add one rule's layer between a model and its pools (``LAYERS``), a cap on what
of its minReplicas n one part of its pools may take: a required ``maxSpotFraction`` f, at most
floor(f·n + 1e-6) replicas on spot pools (model -> its spot node, capacity that x g[m], -> its spot
pools); a required ``spread`` of N <= n failure domains, at most n - N + 1 in any one domain (model
-> a node per domain). Each is a relaxation too: a plan places T >= n replicas, of which it keeps n,
its replicas off spot first (at least (1-f)·T - 1e-6 >= (1-f)·n - 1e-6 of them are), or one in each
of N domains first; those n keep the cap. The two layers cross (a domain holds spot and other
pools), and one model's n chosen for both may not exist (3 of 5 replicas, 3 domains, f 0.4), so
each flow has one layer alone. A cap binds only with other models (a model alone is
``refused_minimum``'s): pools off spot or in other domains, full of others' minimums. A spread's cap
is left off models whose pools span many domains (``SPREAD_DOMAINS``: the flow's cost).

Models that use exactly the same pools are one node, and pools that the same model nodes use are
one: bench XL's 5,366 models with a minimum and 965 pools are 428 and 59 nodes.
"""

from __future__ import annotations

import gc
import math
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

# "": the plain flow; "spot": a required maxSpotFraction's cap on a model's spot pools; "spread": a required
# spread's cap on each failure domain (the module docstring)
LAYERS = ("", "spot", "spread")
# a layered conflict's groups are cut to fewer by a deletion filter, a flow each, up to this many
FEWEST_LAYERED = 24
# a spread's flow caps the groups whose pools span at most this many failure domains: a node per domain of
# each group, where bench XL's critical models span 50 and more, took the flow from 0.15 s to 7 s; over
# many domains a cap of n - N + 1 on each binds only where all the others are full
SPREAD_DOMAINS = 8

# the policies a conflict names are found by a deletion filter, each check asking every pool of each
# model in it; past this many such questions in all the error names the minReplicas alone
POLICY_SEARCH = 200_000


@dataclass
class _Group:
    """Models that may use the same pools: one node of the flow."""

    pools: np.ndarray  # indices of the pools, ascending
    models: list[tuple[int, int, int]]  # (model index, minReplicas, g: the fewest GPUs a replica takes)
    share: int = 0  # the GPUs of the minReplicas a layer lets one part of the pools take (``_limit``), summed

    @property
    def layered(self) -> bool:
        return self.share < self.gpus

    @property
    def gpus(self) -> int:
        return sum(n * g for _, n, g in self.models)


def shared_conflicts(fleet: Fleet, rules: Rules, arrays: FleetArrays | None = None,
                     skip: Collection[str] = ()) -> list[Conflict]:
    """Each set of models whose minReplicas the pools they may use cannot hold together (see the
    module docstring): the plain flow's, then each layer's over the models not yet named; ``skip``:
    models left out (a minReplicas already reported)."""
    a = arrays if arrays is not None else build_arrays(fleet, rules)
    # the groups and the flow's dicts are new objects and no garbage: with bench XL's fleet alive, the
    # cycle collector walked it again and again as they grew, 0.2-0.3 s where the check takes 0.1 s
    was = gc.isenabled()
    gc.disable()
    try:
        required = [p for p in fleet.policies if p.required]
        usable = np.array([usable_gpus(fleet, rules, pool, required) for pool in a.pools], dtype=np.int64)
        found: list[tuple[str, list[_Group]]] = []
        every = _groups(a, usable, skip)
        named: set[int] = set()  # the models of the conflicts found
        for layer in LAYERS:
            limits = _limits(fleet, layer, required)
            if layer and not limits:
                continue  # no required policy of the rule
            groups = _layered(a, every, named, layer, limits)
            if not groups or (layer and not any(g.layered for g in groups)):
                continue
            short = _short(groups, usable, _labels(a, layer))
            found += [(layer, members) for members in short]
            named |= {mi for members in short for g in members for mi, _, _ in g.models}
    finally:
        if was:
            gc.enable()
    return [_conflict(fleet, rules, a, layer, members, usable, required) for layer, members in found]


def _limits(fleet: Fleet, layer: str, required: Sequence[Policy]) -> list[tuple[Policy, set[str]]]:
    """The required policies of ``layer``'s rule, each with the names of the models it selects."""
    mine = [p for p in required if (layer == "spot" and p.rule.max_spot_fraction is not None)
            or (layer == "spread" and p.rule.spread is not None)]
    return [(p, {m.name for m in fleet.models_of(p.spec.models)}) for p in mine]


def _limit(layer: str, model: Model, need: int, policies: Sequence[Policy]) -> tuple[int, Policy | None]:
    """The most of ``model``'s minReplicas ``need`` that the strictest of ``policies`` (required, of
    ``layer``'s rule, selecting it) lets one part of its pools take, and that policy: spot pools
    (maxSpotFraction f: f·need, 1e-6 over as its check allows), one failure domain (spread of N <=
    need domains: need - N + 1); ``need`` and None where none caps it."""
    best: tuple[int, Policy | None] = (need, None)
    for policy in policies:
        if layer == "spot" and policy.rule.max_spot_fraction is not None:
            most = math.floor(policy.rule.max_spot_fraction * need + 1e-6)
        elif layer == "spread" and policy.rule.spread is not None and policy.rule.spread.min_failure_domains <= need:
            most = need - policy.rule.spread.min_failure_domains + 1
        else:
            continue
        if most < best[0]:
            best = (most, policy)
    return best


def _labels(a: FleetArrays, layer: str) -> np.ndarray | None:
    """Each pool's part of a model's pools under ``layer`` (-1: none, the model's edge goes straight to
    it): spot pools 0; a failure domain's id."""
    if layer == "spot":
        return np.where(a.pool_spot, 0, -1).astype(np.int64)
    if layer == "spread":
        return np.asarray(a.pool_domain, dtype=np.int64)
    return None


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
        g = int(c[holds].min())
        group = groups.setdefault(mine.tobytes(), _Group(mine, []))
        group.models.append((mi, need, g))
        group.share += need * g
    return list(groups.values())


def _layered(a: FleetArrays, groups: list[_Group], named: Collection[int], layer: str,
             limits: Sequence[tuple[Policy, set[str]]]) -> list[_Group]:
    """``groups`` less the ``named`` models, each with its share under ``layer``: what its rule lets
    one part of the group's pools take of its models' minReplicas (``_limit``). A spread's cap is
    left off a group whose pools span more than ``SPREAD_DOMAINS`` failure domains (dropping a cap
    keeps the flow a relaxation)."""
    out = []
    for group in groups:
        models = [item for item in group.models if item[0] not in named]
        if not models:
            continue
        if not layer or (layer == "spread" and len(np.unique(a.pool_domain[group.pools])) > SPREAD_DOMAINS):
            out.append(_Group(group.pools, models, sum(n * g for _, n, g in models)))
            continue
        share = 0
        for mi, need, g in models:
            model = a.models[mi]
            share += _limit(layer, model, need, [p for p, names in limits if model.name in names])[0] * g
        out.append(_Group(group.pools, models, share))
    return out


def _network(groups: Sequence[_Group], usable: np.ndarray,
             labels: np.ndarray | None) -> tuple[nx.DiGraph, list[list[int]]]:
    """The flow network of ``groups`` (the module docstring), each layered group's edge to a pool of
    part ``labels[pool] >= 0`` through its node of that part, and the pools of each pool node ("p", j)."""
    # pools that the same groups use (and of one part) are one node: (the groups, as bytes, part) -> pools
    user = np.repeat(np.arange(len(groups)), [len(g.pools) for g in groups])
    used = np.concatenate([g.pools for g in groups])
    order = np.lexsort((user, used))
    user, used = user[order], used[order]
    starts = np.flatnonzero(np.r_[True, used[1:] != used[:-1]])
    split = np.zeros(len(usable), dtype=bool)  # the pools a layered group uses: one node per part
    for group in groups:
        if labels is not None and group.layered:
            split[group.pools] = True
    pool_nodes: dict[tuple[bytes, int], list[int]] = {}
    for lo, hi in zip(starts.tolist(), [*starts[1:].tolist(), len(used)], strict=True):
        pool = int(used[lo])
        part = int(labels[pool]) if labels is not None and split[pool] else -1
        pool_nodes.setdefault((user[lo:hi].tobytes(), part), []).append(pool)
    graph = nx.DiGraph()
    graph.add_edges_from(("source", ("m", i), {"capacity": group.gpus}) for i, group in enumerate(groups))
    for j, ((who, part), pools) in enumerate(pool_nodes.items()):
        graph.add_edge(("p", j), "sink", capacity=int(usable[pools].sum()))
        for i in np.frombuffer(who, dtype=user.dtype).tolist():
            if part >= 0 and groups[i].layered:
                graph.add_edge(("m", i), ("l", i, part), capacity=groups[i].share)
                graph.add_edge(("l", i, part), ("p", j))  # unbounded
            else:
                graph.add_edge(("m", i), ("p", j))  # unbounded
    return graph, list(pool_nodes.values())


def _flow(groups: Sequence[_Group], usable: np.ndarray, labels: np.ndarray | None) -> tuple[nx.DiGraph, int]:
    """The max flow of ``groups`` (``_network``): push-relabel's residual network, and the flow's value."""
    graph, _ = _network(groups, usable, labels)
    # phase 1 of push-relabel is a minimum cut: the nodes that cannot reach the sink in its residual
    # network are a cut's source side (as nx.minimum_cut finds it, less its cutset's edge list)
    residual = preflow_push(graph, "source", "sink", value_only=True)
    return residual, int(residual.graph["flow_value"])


def _filled(groups: Sequence[_Group], usable: np.ndarray, labels: np.ndarray | None) -> list[int]:
    """The pools whose room bounds what ``groups``' minReplicas take under the layer of ``labels``: those
    the source reaches in a maximum flow's residual network, whose edges to the sink are in every minimum
    cut, so that more GPUs on any of them let more in. Under a layer the others may have room to spare
    (the spot pool a spot share keeps the models off, the failure domain a spread caps them in): more
    capacity there mends nothing, and "add capacity to those pools" named them all."""
    graph, nodes = _network(groups, usable, labels)
    residual = preflow_push(graph, "source", "sink")  # a whole flow (phase 2 too): its residual network
    reached = _unsaturated(residual, "source", forward=True)
    return sorted(p for j, pools in enumerate(nodes) if ("p", j) in reached for p in pools)


def _unsaturated(residual: nx.DiGraph, start: object, forward: bool) -> set[object]:
    """The nodes of a max flow's ``residual`` network reached from ``start`` (``forward``: along its
    edges; else against them, the nodes that reach it) over edges the flow leaves room on."""
    reached: set[object] = {start}
    stack: list[object] = [start]
    while stack:
        node = stack.pop()
        for other, edge in (residual.succ if forward else residual.pred)[node].items():
            if other not in reached and edge["flow"] < edge["capacity"]:
                reached.add(other)
                stack.append(other)
    return reached


def _short(groups: list[_Group], usable: np.ndarray, labels: np.ndarray | None = None) -> list[list[_Group]]:
    """The sets of model groups whose GPUs pass what the pools they may use hold (under the layer of
    ``labels``), one per connected part of a minimum cut's source side; none where the flow fills
    every group."""
    residual, value = _flow(groups, usable, labels)
    if value >= sum(group.gpus for group in groups):
        return []
    open_to_sink = _unsaturated(residual, "sink", forward=False)
    side = set(residual) - open_to_sink
    crowded = [node[1] for node in side if isinstance(node, tuple) and node[0] == "m"]
    parts = nx.connected_components(nx.Graph(
        [(("m", i), ("p", p)) for i in crowded for p in groups[i].pools.tolist()]))
    out = []
    for part in parts:
        members = [groups[i] for i in sorted(i for kind, i in part if kind == "m")]
        if labels is None:
            if _over(members, usable) > 0:
                out.append(_fewest(members, usable))
        elif _held(members, usable, labels) < sum(g.gpus for g in members):
            out.append(_fewest_layered(members, usable, labels))
    return out


def _held(groups: Sequence[_Group], usable: np.ndarray, labels: np.ndarray | None) -> int:
    """The GPUs of ``groups``' minReplicas the pools they may use hold at most, under the layer of
    ``labels``: their flow alone."""
    return _flow(groups, usable, labels)[1]


def _fewest_layered(groups: list[_Group], usable: np.ndarray, labels: np.ndarray) -> list[_Group]:
    """Few of ``groups`` still short under the layer: whole groups dropped while the rest are (a
    deletion filter, smallest first; at most ``FEWEST_LAYERED`` groups are tried)."""
    if len(groups) > FEWEST_LAYERED:
        return groups
    keep = list(groups)
    for group in sorted(groups, key=lambda g: g.gpus):
        trial = [g for g in keep if g is not group]
        if trial and _held(trial, usable, labels) < sum(g.gpus for g in trial):
            keep = trial
    return keep


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
    return [_Group(g.pools, ms, sum(n * c for _, n, c in ms)) for g, ms in zip(keep, chosen, strict=True)]


def _conflict(fleet: Fleet, rules: Rules, a: FleetArrays, layer: str, groups: list[_Group], usable: np.ndarray,
              required: list[Policy]) -> Conflict:
    """The conflict of ``groups``: their models' minReplicas, the pools they may use with the GPUs each
    holds (under ``layer``: what its rule lets them hold, and each model's cap), and the required
    policies (a deletion filter) without which they would not be short."""
    needs = sorted(((a.models[mi], n, g) for group in groups for mi, n, g in group.models),
                   key=lambda item: a.model_index[item[0].name])
    pools = np.unique(np.concatenate([group.pools for group in groups])).tolist()
    caps: list[tuple[str, int, str]] = []
    held = 0
    filled: tuple[str, ...] = ()
    if layer:
        limits = _limits(fleet, layer, required)
        for m, n, _ in needs:
            most, policy = _limit(layer, m, n, [p for p, names in limits if m.name in names])
            if policy is not None:
                caps.append((m.name, most, policy.name))
        held = _held(groups, usable, _labels(a, layer))
        filled = tuple(a.pools[p].name for p in _filled(groups, usable, _labels(a, layer)))
    where = (tuple(a.pools[p].name for p in pools if a.pool_spot[p]) if layer == "spot" else
             tuple(f"{a.pools[p].name} in {a.pools[p].failure_domain}" for p in pools) if layer == "spread" else ())
    shared = Crowding(tuple((m.name, n, g) for m, n, g in needs),
                      tuple((a.pools[p].name, int(usable[p]), a.pools[p].max_gpus) for p in pools),
                      layer, held, tuple(caps), where, filled)
    policies = _policies(fleet, rules, a, layer, [(m, n) for m, n, _ in needs], required)
    # the caps' policies take part whatever the deletion filter found (it is skipped past POLICY_SEARCH)
    capping = [p for p in required if p.name in {name for _, _, name in caps} and p not in policies]
    policies = [*capping, *policies]
    return Conflict(tuple(p.name for p in policies), tuple(m.name for m, _, _ in needs), 0, shared=shared)


def _policies(fleet: Fleet, rules: Rules, a: FleetArrays, layer: str, needs: list[tuple[Model, int]],
              required: list[Policy]) -> list[Policy]:
    """The required policies the conflict of ``needs`` (models and their minReplicas) takes: those that
    keep the models off other pools or a pool's GPUs free, or cap them under ``layer``, each dropped
    (a deletion filter) where the models are short of room without it."""
    candidates = [p for p in required
                  if p.rule.headroom is not None or any(model_matches(p.spec.models, m) for m, _ in needs)]
    if not candidates or len(needs) * len(fleet.pools) * len(candidates) > POLICY_SEARCH:
        return []
    if layer:
        return _layered_policies(fleet, rules, a, layer, needs, candidates)

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


def _layered_policies(fleet: Fleet, rules: Rules, a: FleetArrays, layer: str, needs: list[tuple[Model, int]],
                      candidates: list[Policy]) -> list[Policy]:
    """``_policies`` for a conflict under ``layer``: the flow of ``needs`` with only some policies
    (each model a group of its own) short of their GPUs."""
    labels = _labels(a, layer)

    def short(policies: list[Policy]) -> bool:
        usable = np.array([usable_gpus(fleet, rules, pool, policies) for pool in a.pools], dtype=np.int64)
        limits = _limits(fleet, layer, policies)
        groups = []
        for model, need in needs:
            mine = [p for p in policies if model_matches(p.spec.models, model)]
            held = [(i, c) for i, pool in enumerate(a.pools)
                    if exclusion(fleet, rules, model, pool, mine) is None
                    and (c := pool.gpus_per_replica(model.spec.replica.gpus)) <= usable[i]]
            if not held:
                return True  # a model no pool holds one of: short alone
            g = min(c for _, c in held)
            most = _limit(layer, model, need, [p for p, names in limits if model.name in names])[0]
            groups.append(_Group(np.array([i for i, _ in held], dtype=np.int64),
                                 [(a.model_index[model.name], need, g)], most * g))
        return _held(groups, usable, labels) < sum(g.gpus for g in groups)

    return needed(candidates, short) if short(candidates) else list(candidates)
