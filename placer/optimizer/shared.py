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
``refused_minimum``'s): pools off spot or in other domains, full of others' minimums.

The spot share's flow counts what a spread puts on spot (``_raised``): a model under both, of f > 0
and N <= n domains, whose pools off spot (those that hold one replica) are in k < N domains, has
N - k replicas on spot in any plan (a domain holds replicas off spot only where it has such a pool),
so T >= ceil((N - k - 1e-6) / f) replicas; it counts n' = max(n, that), of which a plan keeps n' off
spot first, at most floor(f·n' + 1e-6) of them on spot, as above.

Models that use exactly the same pools are one node, and pools that the same model nodes use are
one: bench XL's 5,366 models with a minimum and 965 pools are 428 and 59 nodes. Under a spread the
pools of each domain are nodes of their own, and each capped model node has a node per domain it
uses: bench XL's critical models span up to 280 domains, 43,000 nodes and 170,000 arcs, which
networkx's push-relabel took 6-8 s over (the caps were left off models of more than 8 domains). The
network is built as arrays (numpy), and one of more than ``BIG_NETWORK`` arcs is solved by OR-Tools'
max flow (C++; 0.15 s to import, where scipy.sparse.csgraph's took 0.6-1 s): the three flows take
0.3 s at XL (0.7 s before, without the caps past 8 domains). A small fleet's stay with networkx (validate imports no solver).
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
from placer.optimizer.conflicts import (
    Conflict,
    Crowding,
    needed,
    on_spot_for_spread,
    replicas_for_spot,
    spot_share_and_spread,
    usable_gpus,
)
from placer.policy import Rules

# "": the plain flow; "spot": a required maxSpotFraction's cap on a model's spot pools; "spread": a required
# spread's cap on each failure domain (the module docstring)
LAYERS = ("", "spot", "spread")
# a layered conflict's groups are cut to fewer by a deletion filter, a flow each, up to this many
FEWEST_LAYERED = 24
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
        spreads = _limits(fleet, "spread", required)  # under the spot share, what a spread puts on spot
        for layer in LAYERS:
            limits = _limits(fleet, layer, required)
            if layer and not limits:
                continue  # no required policy of the rule
            groups = _layered(a, every, named, layer, limits, spreads)
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
             limits: Sequence[tuple[Policy, set[str]]],
             spreads: Sequence[tuple[Policy, set[str]]] = ()) -> list[_Group]:
    """``groups`` less the ``named`` models, each with its share under ``layer``: what its rule lets
    one part of the group's pools take of its models' minReplicas (``_limit``). Under the spot share a
    model that a required spread (of ``spreads``) puts on spot pools takes the replicas that share needs
    to hold them (``_raised``)."""
    out = []
    for group in groups:
        models = [item for item in group.models if item[0] not in named]
        if not models:
            continue
        if not layer:
            out.append(_Group(group.pools, models, sum(n * g for _, n, g in models)))
            continue
        share = 0
        kept = []
        domains: dict[int, tuple[set[int], set[int]]] = {}  # the group's domains off spot and on spot, once
        for mi, need, g in models:
            model = a.models[mi]
            mine = [p for p, names in limits if model.name in names]
            spread = [p for p, names in spreads if model.name in names] if layer == "spot" and mine else []
            if spread:
                need = _raised(a, model, need, group.pools, [*mine, *spread], domains)[0]
            kept.append((mi, need, g))
            share += _limit(layer, model, need, mine)[0] * g
        out.append(_Group(group.pools, kept, share))
    return out


def _raised(a: FleetArrays, model: Model, need: int, pools: np.ndarray, policies: Sequence[Policy],
            domains: dict[int, tuple[set[int], set[int]]] | None = None) -> tuple[int, int, Policy | None]:
    """The replicas of ``model`` a plan places at least, its minReplicas ``need``, where ``policies``
    (required, selecting it) hold a maxSpotFraction f > 0 and a spread of N <= need domains and its
    ``pools`` off spot are in k < N domains: N - k replicas on spot (one in each other domain), so
    ceil((N - k) / f) in all (the share holds T >= them); with those on spot and the spread's policy.
    (An f of 0 refuses such a model alone: ``conflicts.spot_and_spread``.) ``domains``: where the
    domains of ``pools`` off spot and on spot are kept, for the next model of the same pools."""
    pair = spot_share_and_spread(model, need, policies)
    if pair is None:
        return need, 0, None
    spot, spread = pair
    f, n = spot.rule.max_spot_fraction, spread.rule.spread
    if not f or n is None:
        return need, 0, None
    known = domains if domains is not None else {}
    if 0 not in known:
        of, off = a.pool_domain[pools], ~a.pool_spot[pools]
        known[0] = (set(of[off].tolist()), set(of[~off].tolist()))
    on_spot = on_spot_for_spread(*known[0], n.min_failure_domains)
    if not on_spot:
        return need, 0, None
    return max(need, replicas_for_spot(on_spot, f)), on_spot, spread


@dataclass
class _Network:
    """A flow network as arcs (tail, head, capacity): node 0 the source, 1 the sink, 2 + i group i, then
    the pool nodes (``first_pool`` + j holds the pools ``pools[j]``), then each layered group's node of a
    part."""

    tails: np.ndarray
    heads: np.ndarray
    caps: np.ndarray
    nodes: int
    first_pool: int
    pools: list[list[int]]


def _network(groups: Sequence[_Group], usable: np.ndarray, labels: np.ndarray | None) -> _Network:
    """The flow network of ``groups`` (the module docstring), each layered group's edge to a pool of
    part ``labels[pool] >= 0`` through its node of that part; built with numpy, as bench XL's spread
    network has 170,000 arcs (``networkx``'s add_edge took 2 s of them)."""
    # pools that the same groups use (and of one part) are one node: (the groups, as bytes, part) -> pools
    user = np.repeat(np.arange(len(groups)), [len(g.pools) for g in groups])
    used = np.concatenate([g.pools for g in groups])
    order = np.lexsort((user, used))
    user, used = user[order], used[order]
    starts = np.flatnonzero(np.r_[True, used[1:] != used[:-1]])
    layered = np.array([labels is not None and g.layered for g in groups], dtype=bool)
    split = np.zeros(len(usable), dtype=bool)  # the pools a layered group uses: one node per part
    split[used[layered[user]]] = True
    keys: dict[tuple[bytes, int], int] = {}
    pools: list[list[int]] = []
    parts: list[int] = []
    node_of = np.zeros(len(usable), dtype=np.int64)
    for lo, hi in zip(starts.tolist(), [*starts[1:].tolist(), len(used)], strict=True):
        pool = int(used[lo])
        part = int(labels[pool]) if labels is not None and split[pool] else -1
        j = keys.setdefault((user[lo:hi].tobytes(), part), len(keys))
        if j == len(pools):
            pools.append([])
            parts.append(part)
        pools[j].append(pool)
        node_of[pool] = j
    n_groups, n_pools = len(groups), len(pools)
    first_pool = 2 + n_groups
    gpus = np.array([g.gpus for g in groups], dtype=np.int64)
    unbounded = int(gpus.sum()) + 1
    pair = _distinct(user * n_pools + node_of[used])  # each (group, pool node) once
    gi, pj = pair // n_pools, pair % n_pools
    through = layered[gi] & (np.asarray(parts, dtype=np.int64)[pj] >= 0)
    # a layered group's node of each part it uses: (group, part) -> node
    width = max(0, *parts) + 1
    lay_codes = gi[through] * width + np.asarray(parts, dtype=np.int64)[pj[through]]
    lay_keys = _distinct(lay_codes)
    lay_of = np.searchsorted(lay_keys, lay_codes)
    lay_group = lay_keys // width
    first_lay = first_pool + n_pools
    share = np.array([g.share for g in groups], dtype=np.int64)
    room = np.array([int(usable[p].sum()) for p in pools], dtype=np.int64)
    tails = np.concatenate([np.zeros(n_groups, dtype=np.int64), first_pool + np.arange(n_pools),
                            2 + gi[~through], 2 + lay_group, first_lay + lay_of])
    heads = np.concatenate([2 + np.arange(n_groups), np.ones(n_pools, dtype=np.int64),
                            first_pool + pj[~through], first_lay + np.arange(len(lay_keys)), first_pool + pj[through]])
    caps = np.concatenate([gpus, room, np.full(int((~through).sum()), unbounded, dtype=np.int64),
                           share[lay_group], np.full(int(through.sum()), unbounded, dtype=np.int64)])
    kept = caps > 0  # a share of none (a spot share of 0): no arc, as networkx's residual network has none
    return _Network(tails[kept], heads[kept], caps[kept], first_lay + len(lay_keys), first_pool, pools)


def _distinct(codes: np.ndarray) -> np.ndarray:
    """``codes``' distinct values, ascending: np.unique, by a sort (numpy's hash of 170,000 codes took 0.2-1 s)."""
    ordered = np.sort(codes)
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if len(ordered) else ordered


# a network of more arcs than this is solved by OR-Tools' max flow (C++), fewer by networkx's (Python): a small
# fleet's validate imports no solver (0.15 s), and bench XL's spread network, 170,000 arcs, took networkx 6-8 s
# (scipy's maximum_flow is as quick, but importing scipy.sparse.csgraph took 0.6-1 s)
BIG_NETWORK = 5_000


def _solve(net: _Network) -> tuple[int, np.ndarray]:
    """A maximum flow of ``net``: its value and each arc's flow."""
    if len(net.caps) > BIG_NETWORK:
        from ortools.graph.python.max_flow import SimpleMaxFlow

        solver = SimpleMaxFlow()
        arcs = solver.add_arcs_with_capacity(net.tails, net.heads, net.caps)
        if solver.solve(0, 1) != solver.OPTIMAL:
            raise RuntimeError(f"OR-Tools' max flow failed on validate's network of {len(arcs):,} arcs")
        return int(solver.optimal_flow()), np.asarray(solver.flows(arcs), dtype=np.int64)
    graph = nx.DiGraph()
    graph.add_nodes_from(range(net.nodes))
    graph.add_edges_from((t, h, {"capacity": c})
                         for t, h, c in zip(net.tails.tolist(), net.heads.tolist(), net.caps.tolist(), strict=True))
    residual = preflow_push(graph, 0, 1)
    flows = np.array([residual[t][h]["flow"] for t, h in zip(net.tails.tolist(), net.heads.tolist(), strict=True)],
                     dtype=np.int64)
    return int(residual.graph["flow_value"]), flows


def _reached(net: _Network, flows: np.ndarray, start: int, forward: bool) -> np.ndarray:
    """Whether each node of ``net``'s residual network under ``flows`` is reached from ``start``
    (``forward``: along its arcs; else against them, the nodes that reach it) over arcs the flow leaves
    room on: an arc tail -> head with flow under its capacity, or head -> tail with flow on it."""
    room, back = flows < net.caps, flows > 0
    src = np.concatenate([net.tails[room], net.heads[back]])
    dst = np.concatenate([net.heads[room], net.tails[back]])
    if not forward:
        src, dst = dst, src
    order = np.argsort(src, kind="stable")
    src, dst = src[order], dst[order]
    ptr = np.searchsorted(src, np.arange(net.nodes + 1))
    seen = np.zeros(net.nodes, dtype=bool)
    seen[start] = True
    stack = [start]
    while stack:
        node = stack.pop()
        for other in dst[ptr[node]:ptr[node + 1]].tolist():
            if not seen[other]:
                seen[other] = True
                stack.append(other)
    return seen


def _filled(groups: Sequence[_Group], usable: np.ndarray, labels: np.ndarray | None) -> list[int]:
    """The pools whose room bounds what ``groups``' minReplicas take under the layer of ``labels``: those
    the source reaches in a maximum flow's residual network, whose edges to the sink are in every minimum
    cut, so that more GPUs on any of them let more in. Under a layer the others may have room to spare
    (the spot pool a spot share keeps the models off, the failure domain a spread caps them in): more
    capacity there mends nothing, and "add capacity to those pools" named them all."""
    net = _network(groups, usable, labels)
    reached = _reached(net, _solve(net)[1], 0, forward=True)
    return sorted(p for j, pools in enumerate(net.pools) if reached[net.first_pool + j] for p in pools)


def _short(groups: list[_Group], usable: np.ndarray, labels: np.ndarray | None = None) -> list[list[_Group]]:
    """The sets of model groups whose GPUs pass what the pools they may use hold (under the layer of
    ``labels``), one per connected part of a minimum cut's source side; none where the flow fills
    every group."""
    net = _network(groups, usable, labels)
    value, flows = _solve(net)
    if value >= sum(group.gpus for group in groups):
        return []
    # the nodes that cannot reach the sink in the residual network: a minimum cut's source side
    open_to_sink = _reached(net, flows, 1, forward=False)
    crowded = [i for i in range(len(groups)) if not open_to_sink[2 + i]]
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
    return _solve(_network(groups, usable, labels))[0]


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
    raised: list[tuple[str, int, int, str]] = []
    held = 0
    filled: tuple[str, ...] = ()
    if layer:
        limits = _limits(fleet, layer, required)
        for m, n, _ in needs:
            most, policy = _limit(layer, m, n, [p for p, names in limits if m.name in names])
            if policy is not None:
                caps.append((m.name, most, policy.name))
            least = m.spec.min_replicas or n
            if n > least:
                mi = a.model_index[m.name]
                lo, hi = int(a.pair_ptr[mi]), int(a.pair_ptr[mi + 1])
                mine = a.pair_pool[lo:hi][a.pair_c[lo:hi] <= usable[a.pair_pool[lo:hi]]]
                _, on_spot, spread = _raised(a, m, least, mine, [p for p in required if model_matches(p.spec.models, m)])
                if spread is not None:
                    raised.append((m.name, least, on_spot, spread.name))
        held = _held(groups, usable, _labels(a, layer))
        filled = tuple(a.pools[p].name for p in _filled(groups, usable, _labels(a, layer)))
    where = (tuple(a.pools[p].name for p in pools if a.pool_spot[p]) if layer == "spot" else
             tuple(f"{a.pools[p].name} in {a.pools[p].failure_domain}" for p in pools) if layer == "spread" else ())
    shared = Crowding(tuple((m.name, n, g) for m, n, g in needs),
                      tuple((a.pools[p].name, int(usable[p]), a.pools[p].max_gpus) for p in pools),
                      layer, held, tuple(caps), where, filled, tuple(raised))
    policies = _policies(fleet, rules, a, layer, [(m, m.spec.min_replicas or n) for m, n, _ in needs], required)
    # the caps' policies take part whatever the deletion filter found (it is skipped past POLICY_SEARCH), and
    # the spreads that put models on spot
    capping = [p for p in required if p.name in {name for _, _, name in caps} | {r[3] for r in raised}
               and p not in policies]
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
        for model, least in needs:
            mine = [p for p in policies if model_matches(p.spec.models, model)]
            held = [(i, c) for i, pool in enumerate(a.pools)
                    if exclusion(fleet, rules, model, pool, mine) is None
                    and (c := pool.gpus_per_replica(model.spec.replica.gpus)) <= usable[i]]
            if not held:
                return True  # a model no pool holds one of: short alone
            g = min(c for _, c in held)
            pools = np.array([i for i, _ in held], dtype=np.int64)
            need = _raised(a, model, least, pools, mine)[0] if layer == "spot" else least
            most = _limit(layer, model, need, [p for p, names in limits if model.name in names])[0]
            groups.append(_Group(pools, [(a.model_index[model.name], need, g)], most * g))
        return _held(groups, usable, labels) < sum(g.gpus for g in groups)

    return needed(candidates, short) if short(candidates) else list(candidates)
