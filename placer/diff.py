"""state x Placement -> ordered changes, make before break (SPEC section 3).

A change of what a deployment or pool *is* reaches the infrastructure as well as a change of its
count: a deployment's image, GPUs, nodeSelector... is an update in place; its place (context,
namespace) a replacement, made and waited healthy before the old one is deleted; a pool's
settings an update; its group (ASG, node group, MIG) a new group sized and the old one released.

Phases: 1 grow capacity; 2 create and scale up (then apply waits until healthy);
3 scale down and delete; 4 shrink capacity. Only pools of a cloud provider (aws, gcp) get
node changes: an elastic one to its planned nodes, a fixed one to its `nodes.count` (kubernetes
and static pools are never changed). Every change carries the
provider target it needs, taken from the fleet or, for what the fleet no longer has,
from the state. A pool the state records that the fleet no longer has placer size (removed,
or no longer on aws or gcp) is released in phase 4, once its deployments are gone: placer
stops sizing its group, which it never shrinks to 0 behind the user's back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from placer.candidates import Candidates
from placer.cost import PENNY
from placer.fleet import Fleet, Model, Pool
from placer.nodegroups import alternate_nodegroup
from placer.placement import Placement
from placer.planfile import (
    PHASE_DOWN,
    PHASE_GROW,
    PHASE_SHRINK,
    PHASE_UP,
    Change,
    deployment_place,
    group_text,
    pool_group,
    tree_place,
)
from placer.policy import HEADROOM_TOLERANCE, Rules, headroom_gpus, headroom_limit
from placer.reasons import Reasons
from placer.render.moved import MOVED
from placer.state import State

MANAGED_POOL_PROVIDERS = ("aws", "gcp")


def pool_target(pool: Pool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "provider": pool.provider,
        "pool": pool.name,
        "minNodes": pool.min_nodes,
        "maxNodes": pool.max_nodes,
        "gpuType": pool.gpu.name,
        "gpusPerNode": pool.per_node,
        "spot": pool.spot,
    }
    for part in ("aws", "gcp"):
        value = getattr(pool.spec.target, part)
        if value is not None:
            out[part] = value.model_dump(mode="json", by_alias=True, exclude_none=True)
    return out


def sized_target(pool: Pool, state: State | None = None, mode: str = "live") -> dict[str, Any]:
    """``pool_target`` naming the group placer sizes for ``pool``: an EKS node group the state records
    under its alternate name (a replacement made it, and the fleet still names the one it replaced)
    keeps it, so that later plans, refresh and the release find the group that runs. In gitops, where
    placer's Terraform module makes the groups, an EKS pool whose spot changed since (EKS cannot change
    a node group's capacity type in place) names the other of its two names: the replacement, made
    before the old group goes (``_regroup``). Terraform replaced it under its one name, destroy first."""
    target = pool_target(pool)
    eks = (target.get("aws") or {}).get("eks")
    recorded = ((state.pools.get(pool.name) or {}).get("target") if state is not None else None) or {}
    if not eks or not recorded:
        return target
    name = str(eks.get("nodegroup"))
    was = recorded.get("aws") or {}
    was_eks = was.get("eks") or {}
    if recorded.get("provider") != "aws" or was.get("region") != target["aws"].get("region") \
            or was.get("autoScalingGroupName") or was_eks.get("cluster") != eks.get("cluster") \
            or was_eks.get("nodegroup") not in (name, alternate_nodegroup(name)):
        return target
    live = str(was_eks["nodegroup"])
    if mode == "gitops" and "spot" in recorded and recorded["spot"] != target.get("spot"):
        live = alternate_nodegroup(name) if live == name else name
    if live == name:
        return target
    return {**target, "aws": {**target["aws"], "eks": {**eks, "nodegroup": live}}}


def deployment_target(model: Model, pool: Pool) -> dict[str, Any]:
    k8s = pool.spec.target.kubernetes
    return {
        "provider": pool.provider,
        "pool": pool.name,
        "model": model.name,
        "gpus": model.spec.replica.gpus,
        "gpuType": pool.gpu.name,
        "image": model.spec.image,
        "version": model.spec.version,
        "workload": model.workload,
        "kubernetes": (k8s.model_dump(mode="json", by_alias=True, exclude_none=True) if k8s
                       else {"namespace": "default"}),
    }


def managed_pool(pool: Pool) -> bool:
    """Whether placer sizes ``pool``'s group: every aws or gcp pool, an elastic one to its planned
    nodes, a fixed one to its `nodes.count`. A fixed one was sized only where placer had sized it
    before (the fleet made it fixed later): one fixed from the start was never sized, its group left
    out of the tfvars (placer's Terraform never made it) and left at whatever size it had live, while
    the plan placed replicas on its count of nodes."""
    return pool.provider in MANAGED_POOL_PROVIDERS


def _release(name: str, entry: dict[str, Any], why: str, mode: str, replaced: bool = False,
             heir: str | None = None) -> Change:
    """Phase 4: placer stops sizing the group ``entry`` records. Live, the group is left as it is (a
    node group placer did not make is not shrunk to 0 behind the user's back); gitops drops its
    tfvars entry (``replaced``: the entry names the new group), as the rendered tree does, and the
    Terraform that reads them decides. ``heir``: the pool of the fleet that sizes the group now (a
    renamed pool), whose group it is not for the user to remove, nor for Terraform to destroy."""
    nodes = int(entry.get("nodes", 0))
    target = dict(entry.get("target") or {})
    group = group_text(target)
    if heir is not None:
        what = f"pool {heir} sizes {group} from here on (a renamed pool)"
        if mode == "gitops":
            what += (f", its tfvars entry named {heir}; placer's Terraform modules key a group by its pool, so the "
                     f"apply writes moved blocks from pool[\"{name}\"] to pool[\"{heir}\"] into {MOVED} for each "
                     "call of placer's modules in terraform/*.tf, and terraform moves the group in its state; a "
                     "Terraform root elsewhere: move them yourself (moved blocks, or terraform state mv) before "
                     "terraform apply, or terraform destroys the group with its nodes and makes it anew")
        else:
            what += "; nothing is done to the group"
        return Change(f"pool/{name}", "delete", PHASE_SHRINK, {"nodes": nodes}, None, (f"{why}: {what}",), target)
    if mode == "gitops":
        what = (f"the tfvars no longer name {group}" if replaced else "its entry leaves the tfvars") + \
            f", and the Terraform that reads them no longer keeps {group}: review its plan"
    else:
        what = (f"placer stops sizing {group} and leaves it as it is ({nodes} nodes): scale it down or delete "
                "it with the tool that made it")
    return Change(f"pool/{name}", "delete", PHASE_SHRINK, {"nodes": nodes}, None, (f"{why}: {what}",), target)


def deployment_spec(target: dict[str, Any]) -> dict[str, Any]:
    """What a Deployment is, beside its place and replicas (what its manifest renders): a change of
    any of these is an update in place."""
    k8s = target.get("kubernetes") or {}
    return {"image": target.get("image"), "version": target.get("version"), "gpus": target.get("gpus"),
            "nodeSelector": dict(k8s.get("nodeSelector") or {}), "tolerations": list(k8s.get("tolerations") or [])}


def spec_changes(recorded: dict[str, Any], target: dict[str, Any]) -> list[str]:
    """What of ``deployment_spec`` differs between the target a deployment was made with
    (``recorded``; none recorded: nothing) and ``target``. Each is in its pods' template (the
    version as a pod label, and the image's tag where the model names no image): a change of any
    rolls every pod out, each replica started anew (all but a version whose label reads as the old
    one's, 1.0+a for 1.0-a, beside an image the model names: counted as a rollout all the same)."""
    if not recorded:
        return []
    was, now = deployment_spec(recorded), deployment_spec(target)
    return [k for k in now if was[k] != now[k]]


# what a pool's target says beside its group (the tfvars carry them): a change of any is an update
POOL_SETTINGS = ("minNodes", "maxNodes", "gpuType", "gpusPerNode", "spot")


def place_text(place: tuple[str | None, str]) -> str:
    context, namespace = place
    return f"namespace {namespace} of context {context}" if context else f"namespace {namespace} of the current context"


def same_place(old: dict[str, Any], new: dict[str, Any], mode: str) -> bool:
    """Whether two deployment targets put their Deployment in one place. In a GitOps tree no
    context is the folder `default`, as is the context named default: a replacement between the
    two wrote the new manifest, then deleted it as the old one. (Live, no context is the
    kubeconfig's current one, which the Kubernetes provider resolves when it deletes.)"""
    if mode == "gitops":
        return tree_place(old) == tree_place(new)
    return deployment_place(old) == deployment_place(new)


def running_replicas(fleet: Fleet, state: State, rollouts_run: bool = False) -> dict[tuple[str, str], int]:
    """The replicas each (model, pool) runs now at the place the fleet gives its Deployment, as
    the fleet has it: what a plan is priced and searched against (churn, SPEC section 2). A
    deployment the state records at another place (context, namespace) runs none there, as its
    replacement starts every replica anew (counted as running, a namespace change was 0.00 USD of
    churn), and a copy a stopped replacement left at the fleet's place (``deposed``) runs its own.
    One whose image, version, GPUs, nodeSelector or tolerations the fleet changes
    (``spec_changes``) runs none either: its rollout restarts every replica where it is, as a
    move starts them elsewhere (counted as running, it was 0.00 USD of churn, and the search kept
    the model where it ran over a cheaper pool that started no more). Where every place and spec
    matches, this is ``state.replicas()``. ``rollouts_run``: such a deployment's replicas counted
    where they run all the same (``placed_replicas``)."""
    mode = fleet.settings.apply.mode
    out = {}
    for key, entry in state.deployments.items():
        model, pool = key.split("@", 1)
        replicas = int(entry.get("replicas", 0))
        if model in fleet.models and pool in fleet.pools:
            want = deployment_target(fleet.models[model], fleet.pools[pool])
            here = [c for c in (entry, *(entry.get("deposed") or []))
                    if not c.get("target")
                    or (same_place(c["target"], want, mode) and (rollouts_run or not spec_changes(c["target"], want)))]
            replicas = int(here[0].get("replicas", 0)) if here else 0
        if replicas > 0:
            out[(model, pool)] = replicas
    return out


def placed_replicas(fleet: Fleet, state: State,
                    running: dict[tuple[str, str], int]) -> dict[tuple[str, str], int] | None:
    """Where replicas run now, a rollout's included, where that differs from ``running`` (the
    caller's ``running_replicas``; else None): what the search starts from and re-plans around, while churn counts the rollout's
    replicas as started anew. Counted as not running, the 13 models of bench M with most demand
    rolled out (15% of it) sent the plan from the short re-plan to the whole route, 27.46 USD dearer
    than rolling them out where they run."""
    placed = running_replicas(fleet, state, rollouts_run=True)
    return placed if placed != running else None


def _replace(address: str, have: int, want: int, old: dict[str, Any], new: dict[str, Any],
             why: tuple[str, ...]) -> list[Change]:
    """A deployment whose place (context, namespace) changes: made at the new place and waited
    healthy (phase 2) before the old one is deleted at its old place (phase 3). The delete names
    the new place (``replacedBy``), so that a provider that finds both are one object deletes
    nothing."""
    was, now = deployment_place(old), deployment_place(new)
    return [
        Change(address, "create", PHASE_UP, None, {"replicas": want, "context": now[0], "namespace": now[1]},
               (f"replaces the one in {place_text(was)}, which is deleted once this one is healthy", *why), new),
        Change(address, "delete", PHASE_DOWN, {"replicas": have, "context": was[0], "namespace": was[1],
                                               "replacedBy": {"context": now[0], "namespace": now[1]}}, None,
               (f"replaced by the one in {place_text(now)}",), old),
    ]


def _rollout(changed: list[str], replicas: int, fleet: Fleet) -> str:
    """Why a deployment is updated in place, and the churn its rollout costs: every replica it
    keeps is started anew (``running_replicas`` counts it as running none). Churn that prices to
    less than a cent is left unsaid, as the other reasons leave out what costs nothing (it said
    '(0.00 USD of churn)' under Settings' churnUsdPerReplica 0)."""
    usd = replicas * fleet.settings.objective.churn_usd_per_replica
    which = "its replica" if replicas == 1 else f"all {replicas} of its replicas"
    churn = f" ({usd:,.2f} USD of churn)" if usd >= PENNY else ""
    return f"{', '.join(changed)} changed in the fleet: the rollout starts {which} anew{churn}"


UNHEALTHY = "the last apply made it, but it did not become healthy: applied again, and waited healthy"
REFRESHED_UNHEALTHY = "recorded healthy, but the refresh found it not healthy in the cluster"
POOL_UNHEALTHY = ("the last apply grew it, but did not see its nodes come up (a launch refused for capacity or "
                  "quota, a wait timed out or interrupted): waited for again before anything is put on it")
POOL_UNSHRUNK = ("the last apply shrank it, but did not see the group reach that size (its wait for the resize was "
                 "stopped by another change's failure or an interrupt, or timed out): sized again and waited for")


def _pool_unhealthy(recorded: dict[str, Any]) -> str:
    """Why a pool the state marks not healthy is waited for again: the last apply grew it, or shrank it
    (``"shrank": true``, ``Applier._record``), and did not see it through."""
    return POOL_UNSHRUNK if recorded.get("shrank") else POOL_UNHEALTHY


def _unhealthy(entry: dict[str, Any]) -> str:
    """Why a deployment the state (or a refresh, ``placer.refresh.observe_state``) marks not healthy is
    applied again: the last apply's wait did not pass, or the refresh found its status in the cluster
    not healthy (``unhealthy``: a rollout stuck since a time, replicas lost), said as the refresh read it."""
    seen = entry.get("unhealthy")
    if not seen:
        return UNHEALTHY
    return f"{REFRESHED_UNHEALTHY}: {seen}; applied again, and waited healthy"


def _deployment_changes(fleet: Fleet, state: State, placement: Placement, cands: Candidates | None,
                        rules: Rules | None) -> list[Change]:
    changes: list[Change] = []
    reasons = Reasons(fleet, state, placement, cands, rules)
    mode = fleet.settings.apply.mode
    current = state.replicas()
    keys = sorted(set(current) | {k for k, r in placement.replicas.items() if r > 0})
    for model, pool in keys:
        have = current.get((model, pool), 0)
        want = placement.replicas.get((model, pool), 0)
        address = f"deployment/{model}@{pool}"
        entry = state.deployments.get(f"{model}@{pool}", {})
        recorded = dict(entry.get("target") or {})
        if model in fleet.models and pool in fleet.pools:
            target = deployment_target(fleet.models[model], fleet.pools[pool])
        else:
            target = recorded
        why = reasons.of(model, pool, have, want) if have != want else ()
        # recorded elsewhere, running nowhere (a refreshed state): replaced from 0, so that the old
        # place's record goes with the apply (it was recorded as a replaced copy, the next plan deleting it)
        gone = have == 0 and not entry.get("deposed") and entry and recorded and not same_place(recorded, target, mode)
        if gone and want > 0:
            changes += _replace(address, 0, want, recorded, target, why)
        elif have == 0:
            changes.append(Change(address, "create", PHASE_UP, None, {"replicas": want}, why, target))
        elif want == 0:
            changes.append(Change(address, "delete", PHASE_DOWN, {"replicas": have}, None, why, recorded or target))
        elif recorded and not same_place(recorded, target, mode):
            changes += _replace(address, have, want, recorded, target, why)
        else:
            was, now = deployment_spec(recorded), deployment_spec(target)
            changed = spec_changes(recorded, target)
            # made by the last apply, whose health wait did not pass (``Applier._waits``): applied
            # again and waited healthy, whatever else changes (recorded only once healthy, the state
            # stayed at what ran before, and the plan of the fleet backed out to it said "No changes")
            sick = entry.get("healthy") is False
            if have == want and not changed and not sick:
                continue
            spec = (_rollout(changed, want, fleet),) if changed else ()
            mark = ({"healthy": False}, {"healthy": True}) if sick else ({}, {})
            # a new spec rolls the pods out, waited healthy in phase 2 whatever the count does
            # (with fewer replicas it went to phase 3, where nothing waits for a rollout)
            changes.append(Change(address, "update", PHASE_UP if want >= have or changed or sick else PHASE_DOWN,
                                  {"replicas": have, **{k: was[k] for k in changed}, **mark[0]},
                                  {"replicas": want, **{k: now[k] for k in changed}, **mark[1]},
                                  spec + ((_unhealthy(entry),) if sick else ()) + why, target))
    # copies a replacement made before an apply stopped, and not yet deleted
    for key, entry in sorted(state.deployments.items()):
        model, pool = key.split("@", 1)
        if (model, pool) not in keys and not entry.get("deposed") and not int(entry.get("replicas", 0)):
            # recorded, and running nowhere (a refreshed state): the delete drops the record, which the
            # next plan from the state deleted again (its refreshed plan said "No changes")
            changes.append(Change(f"deployment/{key}", "delete", PHASE_DOWN, {"replicas": 0}, None,
                                  ("the cluster runs none of it: the state's record of it goes",),
                                  dict(entry.get("target") or {})))
        placed = placement.replicas.get((model, pool), 0) > 0 and model in fleet.models and pool in fleet.pools
        wanted = deployment_target(fleet.models[model], fleet.pools[pool]) if placed else None
        for copy in entry.get("deposed") or []:
            old = dict(copy.get("target") or {})
            place = deployment_place(old)
            if wanted is None or not same_place(old, wanted, mode):
                changes.append(Change(f"deployment/{key}", "delete", PHASE_DOWN,
                                      {"replicas": int(copy.get("replicas", 0)), "context": place[0],
                                       "namespace": place[1]}, None,
                                      (f"replaced by the one in {place_text(deployment_place(entry.get('target') or {}))}"
                                       ": an apply stopped before deleting this copy",), old))
    return changes


def _pool_changes(fleet: Fleet, state: State, placement: Placement, room: _Room, need: dict[str, int],
                  whole: dict[str, int], surge: dict[str, int]) -> list[Change]:
    """Each managed pool to its planned size; one that make before break needs bigger for the
    apply (``need``: GPUs the old replicas and the new take at once, once the scale-downs that go
    first have run; ``whole``: before them; ``surge``: what the rollouts' surge pods take besides,
    ``_surges``) grows to it in phase 1 and back in phase 4."""
    changes: list[Change] = []
    mode = fleet.settings.apply.mode
    for p in fleet.pools.values():
        if not managed_pool(p):
            continue
        want_nodes = placement.nodes.get(p.name, p.min_nodes)
        recorded = state.pools.get(p.name)
        target = sized_target(p, state, mode)
        peak = room.peak(p, need.get(p.name, 0), surge.get(p.name, 0))
        if recorded is None or "nodes" not in recorded:
            first = peak or want_nodes
            changes.append(Change(f"pool/{p.name}", "create", PHASE_GROW, None, {"nodes": first},
                                  ("not yet managed by placer", *_grown(p, room, need, whole, surge, peak, want_nodes)), target))
            changes += _back(p, peak, want_nodes, target)
            continue
        have_nodes = int(recorded["nodes"])
        old = dict(recorded.get("target") or {})
        if old and pool_group(old) != pool_group(target):
            changes += _regroup(p.name, have_nodes, want_nodes, old, target, mode)
            continue
        changed = [k for k in POOL_SETTINGS if k in old and old[k] != target.get(k)]
        # grown by the last apply, whose wait for its nodes did not pass (``Applier._grows``): waited for
        # again in phase 1 where it keeps or grows its size (its group kept the size and goes on trying,
        # which the state recorded, and the plan changed nothing there, so nothing waited for it again)
        sick = recorded.get("healthy") is False
        if peak:
            mark = ({"healthy": False}, {"healthy": True}) if sick else ({}, {})
            changes.append(Change(f"pool/{p.name}", "update", PHASE_GROW,
                                  {"nodes": have_nodes, **{k: old[k] for k in changed}, **mark[0]},
                                  {"nodes": peak, **{k: target.get(k) for k in changed}, **mark[1]},
                                  ((f"{', '.join(changed)} changed in the fleet",) if changed else ())
                                  + ((_pool_unhealthy(recorded),) if sick else ())
                                  + _grown(p, room, need, whole, surge, peak, want_nodes), target))
            changes += _back(p, peak, want_nodes, target)
            continue
        if want_nodes == have_nodes and not changed and not sick:
            continue
        grow = want_nodes >= have_nodes
        why = (("more capacity needed" if grow else "capacity no longer needed",) if want_nodes != have_nodes
               else ())
        # a shrink is not waited for: it drops the mark, as the state records the new size as it is
        mark = ({"healthy": False}, {"healthy": True}) if sick and grow else ({}, {})
        changes.append(Change(f"pool/{p.name}", "update", PHASE_GROW if grow else PHASE_SHRINK,
                              {"nodes": have_nodes, **{k: old[k] for k in changed}, **mark[0]},
                              {"nodes": want_nodes, **{k: target.get(k) for k in changed}, **mark[1]},
                              ((f"{', '.join(changed)} changed in the fleet",) if changed else ())
                              + ((_pool_unhealthy(recorded),) if mark[0] else ()) + why, target))

    managed = {p.name for p in fleet.pools.values() if managed_pool(p)}
    # the pool that sizes each group now (two pools sizing one group are refused by validate)
    sizes = {_group_key(sized_target(fleet.pools[name], state, mode)): name for name in managed}
    for name, entry in sorted(state.pools.items()):
        if name not in managed:
            gone = ("pool removed from the fleet" if name not in fleet.pools
                    else "the pool is no longer an aws or gcp pool that placer sizes")
            heir = sizes.get(_group_key(entry.get("target") or {})) if entry.get("target") else None
            changes.append(_release(name, entry, gone, mode, heir=heir))
    return changes


def _group_key(target: dict[str, Any]) -> str:
    """The group a pool target names (``pool_group``), as a key."""
    return json.dumps(pool_group(target), sort_keys=True)


class _Room:
    """The GPUs a pool may hold while an apply runs, the old replicas and the new at once between
    phases 2 and 3: its nodes' GPUs, less those the strictest required headroom on it keeps free (as
    the headroom rule checks it: ``placer.policy.headroom_gpus``), though never fewer
    than it holds now (a pool that breaks the policy as it runs goes on doing so until phase 3, no
    further). Only the plan's end state was held to a headroom (the optimizer's row, make_plan's
    check), and make before break counted GPUs: a pool kept to 6 of its 8 GPUs held 7 until phase 3."""

    def __init__(self, fleet: Fleet, state: State, placement: Placement) -> None:
        self.fleet, self.state, self.placement = fleet, state, placement
        self.held = _running_gpus(fleet, state)
        self.kept: dict[str, tuple[float, str]] = {}  # pool -> the strictest required headroom's fraction, name
        for policy in fleet.policies:
            rule = policy.rule.headroom
            if policy.required and rule is not None:
                for pool in fleet.pools_of(policy.spec.pools):
                    if rule.fraction > self.kept.get(pool.name, (0.0, ""))[0]:
                        self.kept[pool.name] = (rule.fraction, policy.name)

    def gpus(self, pool: Pool, nodes: int) -> int:
        """The GPUs ``pool`` at ``nodes`` nodes may hold during the apply."""
        cap = nodes * pool.per_node
        if pool.name not in self.kept:
            return cap
        allowed = headroom_gpus(self.kept[pool.name][0], cap)
        return min(cap, max(allowed, self.held.get(pool.name, 0)))

    def kept_text(self, pool: Pool, nodes: int) -> str:
        """', of which required policy P keeps K free' where a headroom keeps some of ``pool``'s GPUs
        at ``nodes`` nodes from the apply; else ''."""
        free = nodes * pool.per_node - self.gpus(pool, nodes)
        return f", of which required policy {self.kept[pool.name][1]} keeps {free} free" if free > 0 else ""

    def grows(self, pool: Pool) -> bool:
        """Whether ``pool`` may grow in phase 1 for the apply: an elastic pool placer sizes, its group
        kept (a new group is sized as planned)."""
        if not pool.elastic or not managed_pool(pool):
            return False
        old = (self.state.pools.get(pool.name) or {}).get("target")
        now = sized_target(pool, self.state, self.fleet.settings.apply.mode)
        return not (old and pool_group(old) != pool_group(now))

    def size(self, pool: Pool) -> int:
        """The nodes ``pool`` has during the apply where it does not grow for it: its planned or
        current size, the larger (a fixed pool's count)."""
        if not pool.elastic:
            return pool.max_nodes
        recorded = self.state.pools.get(pool.name) or {}
        return max(self.placement.nodes.get(pool.name, pool.min_nodes), int(recorded.get("nodes", pool.min_nodes)))

    def most(self, pool: Pool) -> int:
        """The most nodes ``pool`` may have during the apply."""
        return pool.max_nodes if self.grows(pool) else self.size(pool)

    def peak(self, pool: Pool, need: int, surge: int = 0) -> int | None:
        """Nodes an elastic pool grows to in phase 1 so that make before break has room for the old
        replicas and the new at once (``need`` GPUs), and its GPUs for the surge pods of rollouts
        besides (``surge``: a pod that a headroom's free GPUs may hold while it rolls out), up to
        its nodes.max; None where its planned and current sizes already hold them (or placer does
        not size it, or its group is replaced: the new group is sized as planned). Above the
        planned size only until phase 4."""
        if not self.grows(pool):
            return None
        nodes = -(-(need + surge) // pool.per_node)
        kept = self.kept.get(pool.name)
        if kept is not None and self.held.get(pool.name, 0) < need:
            nodes = pool.max_nodes if kept[0] >= 1 else max(
                nodes, math.ceil((need - HEADROOM_TOLERANCE) / headroom_limit(kept[0], pool.per_node)))
        while nodes < pool.max_nodes and self.gpus(pool, nodes) < need:  # a float's rounding: a step at most
            nodes += 1
        nodes = min(pool.max_nodes, nodes)
        return nodes if nodes > self.size(pool) else None


def _nodes(n: int) -> str:
    return f"{n} node{'' if n == 1 else 's'}"


def _grown(pool: Pool, room: _Room, need: dict[str, int], whole: dict[str, int], surge: dict[str, int],
           peak: int | None, want: int) -> tuple[str, ...]:
    """Why a pool's phase-1 change sizes it above its plan, or nothing where it does not."""
    if peak is None:
        return ()
    gpus, before, more = need[pool.name], whole.get(pool.name, need[pool.name]), surge.get(pool.name, 0)
    first = f", less {before - gpus} scaled down first in phase 2: {gpus}" if before > gpus else ""
    rolls = f", and {more} more for the surge pods of rollouts in phase 2: {gpus + more}" if more else ""
    cap, kept = peak * pool.per_node, room.kept_text(pool, peak)
    if room.gpus(pool, peak) >= gpus and cap >= gpus + more:
        held = _nodes(peak) + (f": {cap} GPUs{kept}" if kept else "")
    elif gpus > room.gpus(pool, peak) and gpus <= cap:
        held = (f"{_nodes(peak)}, its nodes.max, hold {cap}{kept}: required policy {room.kept[pool.name][1]} is "
                "broken until phase 3")
    else:
        held = f"{_nodes(peak)}, its nodes.max, hold {cap}{kept}: the new replicas may wait for room"
    return (f"room for make before break: the old replicas and the new at once need {before} GPUs{first}{rolls} "
            f"({held}) until phase 3; back to {_nodes(want)} in phase 4",)


def _back(pool: Pool, peak: int | None, want: int, target: dict[str, Any]) -> list[Change]:
    """Phase 4: a pool grown for make before break back to its planned size."""
    if peak is None:
        return []
    return [Change(f"pool/{pool.name}", "update", PHASE_SHRINK, {"nodes": peak}, {"nodes": want},
                   ("back to its planned size: the room make before break needed in phases 2 and 3 is free",),
                   target)]


def _regroup(name: str, have: int, want: int, old: dict[str, Any], new: dict[str, Any], mode: str) -> list[Change]:
    """A pool whose target names another group: placer sizes the new group (phase 1) and releases
    the old one (phase 4), which it leaves as it is."""
    was, now = pool_group(old), pool_group(new)
    keys = [k for k in now if was.get(k) != now[k]]
    why = f"its group is now {group_text(new)}"
    made = f"{why}, which placer sizes from here on"
    if _alternates(old, new):
        ours, theirs = (new["aws"]["eks"]["nodegroup"], old["aws"]["eks"]["nodegroup"])
        spot = f"spot {str(old.get('spot')).lower()} -> {str(new.get('spot')).lower()}"
        why = f"{spot}: replaced by EKS node group {ours}"
        made = (f"{spot} changed in the fleet, which EKS cannot change in a node group (its capacity type), and EKS "
                f"refuses two node groups of one name: the replacement is EKS node group {ours}, made (the Terraform "
                f"module replaces create before destroy) before {theirs} goes with its nodes; the state records "
                f"{ours} as the pool's group. Pods that select eks.amazonaws.com/nodegroup: {theirs} do not follow: "
                "select placer.dev/pool, which the module labels each node with")
    return [
        Change(f"pool/{name}", "create", PHASE_GROW, None, {"nodes": want, **{k: now[k] for k in keys}},
               (made,), new),
        _release(name, {"nodes": have, "target": old}, why, mode, replaced=True),
    ]


def _alternates(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether ``new`` names the same EKS node group as ``old`` under its other name (``sized_target``)."""
    a, b = (old.get("aws") or {}).get("eks") or {}, (new.get("aws") or {}).get("eks") or {}
    if not a or not b or a.get("cluster") != b.get("cluster") or old["aws"].get("region") != new["aws"].get("region"):
        return False
    names = {str(a.get("nodegroup")), str(b.get("nodegroup"))}
    return len(names) == 2 and any(alternate_nodegroup(n) in names for n in names)


def _gpus(change: Change, side: str, fleet: Fleet) -> int:
    """GPUs a replica of ``change``'s deployment counts on its pool, before or after it."""
    pool = fleet.pools[change.pool]
    values = getattr(change, side) or {}
    model = fleet.models.get(change.model or "")
    gpus = values.get("gpus", change.target.get("gpus") or (model.spec.replica.gpus if model else 1))
    return pool.gpus_per_replica(int(gpus))


def _running_gpus(fleet: Fleet, state: State) -> dict[str, int]:
    """GPUs each pool of the fleet holds as the state records it: the replicas of every deployment
    there and the copies a replacement left."""
    use: dict[str, int] = {}
    for key, entry in state.deployments.items():
        model, on = key.split("@", 1)
        if on not in fleet.pools:
            continue
        gpus = (entry.get("target") or {}).get("gpus") or (
            fleet.models[model].spec.replica.gpus if model in fleet.models else 1)
        copies = [entry, *(entry.get("deposed") or [])]
        use[on] = use.get(on, 0) + sum(int(c.get("replicas", 0)) for c in copies) * \
            fleet.pools[on].gpus_per_replica(int(gpus))
    return use


def _need(fleet: Fleet, state: State, changes: list[Change]) -> dict[str, int]:
    """GPUs each pool holds at once under make before break: the old replicas (and copies a
    replacement left) and what phase 2 adds, before phase 3 takes anything away."""
    use = _running_gpus(fleet, state)
    for c in changes:
        if c.kind == "deployment" and c.phase == PHASE_UP and c.pool in fleet.pools:
            grow = int((c.after or {}).get("replicas", 0)) * _gpus(c, "after", fleet)
            if c.before is not None:  # an update; a replacement's create leaves the old copy counted
                grow -= int(c.before.get("replicas", 0)) * _gpus(c, "before", fleet)
            use[c.pool] = use.get(c.pool, 0) + max(0, grow)
    return use


def _short_text(name: str, pool: Pool, room: _Room, nodes: int, need: int) -> str:
    """'P cannot hold the old replicas and the new at once (make before break needs N of its C
    GPUs ...)': why the apply cannot run ``need`` GPUs on ``pool`` at ``nodes`` nodes."""
    most = " at nodes.max" if pool.elastic and nodes == pool.max_nodes else ""
    return (f"{name} cannot hold the old replicas and the new at once (make before break needs {need} of its "
            f"{nodes * pool.per_node} GPUs{most}{room.kept_text(pool, nodes)})")


def _room_first(fleet: Fleet, state: State, placement: Placement, changes: list[Change],
                use: dict[str, int], room: _Room) -> tuple[list[Change], dict[str, int]]:
    """Make before break needs room for the old replicas and the new at once (``use``: GPUs per
    pool), within what a required headroom leaves (``_Room``). An elastic pool grows for it
    (``_Room.peak``); on a pool that cannot hold both even so (a full fixed pool whose replicas
    change hands: 4 of 4 GPUs held by a, a going to 2 and b to 2 needs 6; an elastic one at its
    nodes.max), the new replicas never became healthy and the apply stopped at its health wait, for
    good (or, where a headroom was what they lacked, ran and broke it until phase 3). There
    scale-downs and deletes run first, in phase 2, and say why: only as many replicas as make the
    room, a count-only scale-down split in two where part of it does (3 -> 2 in phase 2, 2 -> 1 in
    phase 3, as a grown pool's size comes back in phase 4). Where even all of them cannot make it,
    the pool's other phase-2 changes say what follows. Returns the changes and the GPUs each pool
    then holds at once, which it grows to."""
    full: dict[str, str] = {}
    over: dict[str, int] = {}  # GPUs short on a pool, old and new at once
    for name, need in use.items():
        pool = fleet.pools[name]
        nodes = max(room.size(pool), room.peak(pool, need) or 0)
        if need > room.gpus(pool, nodes):
            full[name] = _short_text(name, pool, room, nodes, need)
            over[name] = need - room.gpus(pool, nodes)
    # only as many as make the room, those freeing most first (every one went: a model whose
    # replicas stayed where they were was scaled down with the rest)
    early: dict[int, int] = {}  # change -> replicas it keeps until phase 3 (0: all of it goes first)
    left = dict(use)
    still: dict[str, str] = {}  # pool -> what follows where its scale-downs cannot make the room
    for name, short in over.items():
        downs = [(i, c) for i, c in enumerate(changes)
                 if c.kind == "deployment" and c.phase == PHASE_DOWN and c.pool == name]
        each = {i: _gpus(c, "before", fleet) for i, c in downs}
        freed = {i: int((c.before or {}).get("replicas", 0)) * each[i]
                 - int((c.after or {}).get("replicas", 0)) * _gpus(c, "after", fleet) for i, c in downs}
        for i, c in sorted(downs, key=lambda ic: (-freed[ic[0]], ic[1].address)):
            if short <= 0:
                break
            # a count-only change can stop part way; a copy at another place goes whole or not at all
            keep = 0
            if set(c.before or {}) == {"replicas"} and freed[i] > short and each[i] > 0:
                keep = (freed[i] - short) // each[i]
            early[i] = keep
            short -= freed[i] - keep * each[i]
            left[name] -= freed[i] - keep * each[i]
        if short > 0:
            pool = fleet.pools[name]
            nodes = max(room.size(pool), room.peak(pool, left[name]) or 0)
            cap = nodes * pool.per_node
            what = _short_text(name, pool, room, nodes, left[name])
            if left[name] > cap:
                still[name] = f"{what} even with its scale-downs first: the new replicas may wait for room"
            else:
                still[name] = (f"breaks required policy {room.kept[name][1]} on {name} until phase 3: {what} even "
                               "with its scale-downs first")
    first = {changes[i].address for i, keep in early.items() if changes[i].after is None and not keep}
    out = []
    for i, c in enumerate(changes):
        if early.get(i):
            to = int((c.after or {}).get("replicas", 0))
            mid, rest = to + early[i], f"on to {to}" if c.after is not None else "deleted"
            out.append(Change(c.address, "update", PHASE_UP, c.before, {"replicas": mid},
                              (f"scaled down first: {full[c.pool]}: to {mid} only, and {rest} in phase 3 once the "
                               "new replicas are healthy", *c.reasons), c.target))
            c = Change(c.address, c.action, c.phase, {"replicas": mid}, c.after, c.reasons, c.target)
        elif i in early:
            c = Change(c.address, c.action, PHASE_UP, c.before, c.after, (f"scaled down first: {full[c.pool]}",
                                                                          *c.reasons), c.target)
        elif c.action == "create" and c.address in first and c.reasons and "once this one is healthy" in c.reasons[0]:
            said = c.reasons[0].replace("which is deleted once this one is healthy",
                                        f"which is deleted first: {c.pool} cannot hold both")
            c = Change(c.address, c.action, c.phase, c.before, c.after, (said, *c.reasons[1:]), c.target)
        elif c.kind == "deployment" and c.phase == PHASE_UP and c.after and c.pool in still:
            c = Change(c.address, c.action, c.phase, c.before, c.after, (still[c.pool], *c.reasons), c.target)
        out.append(c)
    return out, left


# the strategy a Deployment is rolled out with where its pool has no room for a surge pod: one old
# pod goes before each new one starts (Kubernetes' default needs a pod more for 1 to 3 replicas)
NO_SURGE = {"maxSurge": 0, "maxUnavailable": 1}


def _surge(c: Change, fleet: Fleet) -> tuple[int, bool]:
    """GPUs the rollout of ``c`` takes on its pool beyond its old replicas and its new at once, with
    Kubernetes' default strategy (RollingUpdate, maxSurge 25% rounded up, maxUnavailable 25%
    rounded down): the surge pods it starts before an old pod may go; and whether it stalls without
    room for them (1 to 3 replicas: no old pod may go first; or the old pods it may take down free
    too few GPUs for a new one). 0 where ``c`` rolls nothing out (a new count only). A re-apply of
    one the last apply left unhealthy (``UNHEALTHY``) counts as a rollout that stalls where it may
    be one: the state keeps no record of what it rolled out from, and a rollout of an earlier apply
    (or placer version) whose surge pod had no room was left so."""
    if c.kind != "deployment" or c.action != "update" or c.phase != PHASE_UP:
        return 0, False
    spec = set(c.before or {}) - {"replicas", "healthy"}  # the pod template (image, GPUs...) changes
    if not spec and (c.before or {}).get("healthy") is not False:
        return 0, False
    have, want = int((c.before or {}).get("replicas", 0)), int((c.after or {}).get("replicas", 0))
    if want <= 0:
        return 0, False
    surge, down = -(-want // 4), want // 4
    new = _gpus(c, "after", fleet)
    stalls = down * _gpus(c, "before", fleet) < new
    if not spec and not stalls:
        return 0, False
    return max(0, want + surge - max(have, want)) * new, stalls


def _no_room(c: Change, fleet: Fleet, need: int, nodes: int, sick: bool) -> Change:
    """``c`` rolled out with NO_SURGE: its pool (at ``nodes``) has no room for the surge pod."""
    pool = fleet.pools[c.pool]
    want = int((c.after or {}).get("replicas", 0))
    down = ("its only replica is down while the new one starts" if want == 1 else
            f"one of its {want} replicas at a time is down while it rolls out")
    most = " at nodes.max" if pool.elastic and nodes == pool.max_nodes else ""
    whose = "its" if any(r.startswith(REFRESHED_UNHEALTHY) for r in c.reasons) else "the last apply's"
    stuck = (f": {whose} rollout may be stuck waiting for that pod, which no re-apply of it "
             "would start" if sick else "")
    why = (f"rolled out with maxSurge 0, maxUnavailable 1: {c.pool} has no room for the surge pod "
           "Kubernetes' default rollout starts first (the old replicas, the new and it need "
           f"{need} of its {nodes * pool.per_node} GPUs{most}){stuck}, so {down}")
    return Change(c.address, c.action, c.phase, c.before, c.after, (why, *c.reasons),
                  {**c.target, "strategy": dict(NO_SURGE)})


def _less_surge(c: Change, fleet: Fleet, room: _Room, nodes: int, need: int, more: int, fits: int) -> Change:
    """``c`` rolled out with the surge pods ``fits`` of the room within a required headroom, and
    the default's maxUnavailable: the default's (``more`` GPUs) would take GPUs the headroom keeps free."""
    pool = fleet.pools[c.pool]
    want = int((c.after or {}).get("replicas", 0))
    pods, down = more // _gpus(c, "after", fleet), want // 4
    holds = f"only {fits}" if fits else "none"
    why = (f"rolled out with maxSurge {fits}, maxUnavailable {down}: Kubernetes' default rollout starts {pods} "
           f"surge pod{'' if pods == 1 else 's'} first, and {c.pool} holds {holds} beside the old replicas and the "
           f"new (with {'it' if pods == 1 else 'them'} they would hold {need} of its {nodes * pool.per_node} "
           f"GPUs{room.kept_text(pool, nodes)}); at most {down} of its {want} replicas "
           "at a time is down, as with the default, and the rollout goes slower")
    return Change(c.address, c.action, c.phase, c.before, c.after, (why, *c.reasons),
                  {**c.target, "strategy": {"maxSurge": fits, "maxUnavailable": down}})


def _surges(fleet: Fleet, room: _Room, changes: list[Change], left: dict[str, int]
            ) -> tuple[list[Change], dict[str, int]]:
    """A Deployment updated in place (image, GPUs, nodeSelector, tolerations) rolls out with its
    strategy: Kubernetes' default starts surge pods before old ones go, which count in the room a
    pool needs in phase 2 beside ``left`` (the old replicas and the new at once).

    A rollout that stalls without room for them (``_surge``: 1 to 3 replicas) hung, with the
    apply's health wait, until its timeout, on a pool with no GPU free for its pod. An elastic pool
    grows for it; GPUs a required headroom keeps free may hold it (they are free, and it is gone
    once the rollout is done: taking a model's only replica down instead would be worse). One its
    pool cannot hold even at its most nodes is applied with NO_SURGE instead (its target's
    ``strategy``), and says so. A re-apply of one the last apply left unhealthy, maybe stuck so,
    does the same without growing a pool (it may be no rollout at all).

    One of 4 replicas or more may take old pods down first (maxUnavailable 25%): it never hangs,
    but its surge pods (25%, rounded up) start at once on the GPUs a required headroom keeps free.
    Where they would, it is rolled out with the surge pods the room within the headroom holds
    (maxSurge 0 where none), the default's maxUnavailable kept, and says so: no pool grows for it,
    as it loses nothing but speed. These are weighed after the others.

    Returns the changes and the GPUs each pool's surges take."""
    taken: dict[str, int] = {}
    out = list(changes)
    weighed = [(i, c, *_surge(c, fleet)) for i, c in enumerate(changes)]
    for i, c, more, stalls in sorted((w for w in weighed if w[2]), key=lambda w: not w[3]):
        pool = fleet.pools[c.pool]
        need = left.get(c.pool, 0) + taken.get(c.pool, 0) + more
        if stalls:
            sick = not set(c.before or {}) - {"replicas", "healthy"}
            nodes = room.size(pool) if sick else room.most(pool)
            if need <= nodes * pool.per_node:
                taken[c.pool] = taken.get(c.pool, 0) + more
            else:
                out[i] = _no_room(c, fleet, need, nodes, sick)
            continue
        # the nodes it has during the apply (grown for the old replicas and the new, not for it)
        nodes = max(room.size(pool), room.peak(pool, left.get(c.pool, 0)) or 0)
        new = _gpus(c, "after", fleet)
        free = nodes * pool.per_node - need + more  # what its surge pods may start on
        starts = min(more, max(0, free) // new * new)  # the rest wait for old pods to go
        kept = room.gpus(pool, nodes) - need + more  # of which the headroom leaves
        if starts <= max(0, kept):
            taken[c.pool] = taken.get(c.pool, 0) + starts
        else:
            fits = max(0, kept) // new
            taken[c.pool] = taken.get(c.pool, 0) + fits * new
            out[i] = _less_surge(c, fleet, room, nodes, need, more, fits)
    return out, taken


def planned_strategies(state: State, changes: Sequence[Change]) -> dict[tuple[str, str], dict[str, Any]]:
    """The rollout strategy each deployment's manifest keeps once the plan is applied, by (model,
    pool), where it has one (``_surges``): the one its create or update is applied with, or, where
    the plan leaves it as it runs, the one it was last applied with (the state's record), so that
    ``render`` writes the manifest the apply wrote, and the tree a later plan renders keeps it."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    changed = set()
    for c in changes:
        if c.kind == "deployment" and c.after is not None and c.model:
            changed.add((c.model, c.pool))
            if c.target.get("strategy"):
                out[(c.model, c.pool)] = dict(c.target["strategy"])
    for key, entry in state.deployments.items():
        model, pool = key.split("@", 1)
        strategy = (entry.get("target") or {}).get("strategy")
        if (model, pool) not in changed and strategy:
            out[(model, pool)] = dict(strategy)
    return out


def diff(fleet: Fleet, state: State, placement: Placement, cands: Candidates | None = None,
         rules: Rules | None = None) -> list[Change]:
    """Ordered changes that take ``state`` to ``placement`` (and to the fleet's targets); within a
    phase, what makes room (a scale-down ``_room_first`` moved up) before what takes it. ``rules``:
    the policies' behaviours, for the reasons that name a policy (``placer.reasons``)."""
    deployments = _deployment_changes(fleet, state, placement, cands, rules)
    need = _need(fleet, state, deployments)
    room = _Room(fleet, state, placement)
    # the scale-downs that must go first come first: a pool grows only for what they leave, and
    # for the surge pods of the rollouts it can hold
    deployments, left = _room_first(fleet, state, placement, deployments, need, room)
    deployments, surge = _surges(fleet, room, deployments, left)
    changes = _pool_changes(fleet, state, placement, room, left, need, surge) + deployments

    def shrinks(c: Change) -> bool:
        return c.after is None or int(c.after.get("replicas", c.after.get("nodes", 0))) < \
            int((c.before or {}).get("replicas", (c.before or {}).get("nodes", 0)))

    return sorted(changes, key=lambda c: (c.phase, not shrinks(c), c.address))
