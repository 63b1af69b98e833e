"""state x Placement -> ordered changes, make before break (SPEC section 3).

Phases: 1 grow capacity; 2 create and scale up (then apply waits until healthy);
3 scale down and delete; 4 shrink capacity. Only elastic pools of a cloud provider get
node changes (fixed and static pools are never changed). Every change carries the
provider target it needs, taken from the fleet or, for what the fleet no longer has,
from the state. A pool the state records that the fleet no longer has placer size (removed,
or made fixed) is released in phase 4, once its deployments are gone: placer stops sizing
its group, which it never shrinks to 0 behind the user's back.
"""

from __future__ import annotations

from typing import Any

from placer.candidates import Candidates
from placer.fleet import Fleet, Model, Pool
from placer.placement import Placement
from placer.planfile import PHASE_DOWN, PHASE_GROW, PHASE_SHRINK, PHASE_UP, Change
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
    return pool.elastic and pool.provider in MANAGED_POOL_PROVIDERS


def group_text(target: dict[str, Any]) -> str:
    """The group a pool target names, in words."""
    aws, gcp = target.get("aws") or {}, target.get("gcp") or {}
    if aws.get("autoScalingGroupName"):
        return f"Auto Scaling group {aws['autoScalingGroupName']} in {aws.get('region')}"
    if aws.get("eks"):
        return f"EKS node group {aws['eks'].get('nodegroup')} of cluster {aws['eks'].get('cluster')} in {aws.get('region')}"
    if gcp:
        return f"managed instance group {gcp.get('instanceGroupManager')} in {gcp.get('zone') or gcp.get('region')}"
    return "its group"


def _release(name: str, entry: dict[str, Any], why: str, mode: str) -> Change:
    """Phase 4: placer stops sizing the group ``entry`` records. Live, the group is left as it is (a
    node group placer did not make is not shrunk to 0 behind the user's back); gitops drops its
    tfvars entry, as the rendered tree does, and the Terraform that reads them decides."""
    nodes = int(entry.get("nodes", 0))
    target = dict(entry.get("target") or {})
    group = group_text(target)
    if mode == "gitops":
        what = f"its entry leaves the tfvars, and the Terraform that reads them no longer keeps {group}: review its plan"
    else:
        what = (f"placer stops sizing {group} and leaves it as it is ({nodes} nodes): scale it down or delete "
                "it with the tool that made it")
    return Change(f"pool/{name}", "delete", PHASE_SHRINK, {"nodes": nodes}, None, (f"{why}: {what}",), target)


def _reasons(fleet: Fleet, state: State, cands: Candidates | None, model: str, pool: str,
             before: int, after: int) -> tuple[str, ...]:
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
    reasons = []
    m = fleet.models[model]
    prior = state.models.get(model, {}).get("demand")
    if m.inference and prior is not None and abs(prior - m.total_demand) > 1e-9:
        reasons.append(f"demand changed {prior:g} -> {m.total_demand:g}")
    if before == 0 and not state.deployments:
        reasons.append("initial placement")
    elif not reasons:
        reasons.append("cheaper placement" if before > after else "capacity for demand")
    return tuple(reasons)


def diff(fleet: Fleet, state: State, placement: Placement, cands: Candidates | None = None) -> list[Change]:
    """Ordered changes that take ``state`` to ``placement``."""
    changes: list[Change] = []
    known_nodes = state.nodes()
    for p in fleet.pools.values():
        if not managed_pool(p):
            continue
        want_nodes = placement.nodes.get(p.name, p.min_nodes)
        have_nodes = known_nodes.get(p.name)
        if have_nodes is None:
            changes.append(Change(f"pool/{p.name}", "create", PHASE_GROW, None, {"nodes": want_nodes},
                                  ("not yet managed by placer",), pool_target(p)))
        elif want_nodes != have_nodes:
            grow = want_nodes > have_nodes
            changes.append(Change(f"pool/{p.name}", "update", PHASE_GROW if grow else PHASE_SHRINK,
                                  {"nodes": have_nodes}, {"nodes": want_nodes},
                                  ("more capacity needed" if grow else "capacity no longer needed",), pool_target(p)))

    managed = {p.name for p in fleet.pools.values() if managed_pool(p)}
    for name, entry in sorted(state.pools.items()):
        if name not in managed:
            gone = ("pool removed from the fleet" if name not in fleet.pools
                    else "the pool is no longer an elastic aws or gcp pool that placer sizes")
            changes.append(_release(name, entry, gone, fleet.settings.apply.mode))

    current = state.replicas()
    keys = sorted(set(current) | {k for k, r in placement.replicas.items() if r > 0})
    for model, pool in keys:
        have = current.get((model, pool), 0)
        want = placement.replicas.get((model, pool), 0)
        if have == want:
            continue
        address = f"deployment/{model}@{pool}"
        if model in fleet.models and pool in fleet.pools:
            target = deployment_target(fleet.models[model], fleet.pools[pool])
        else:
            target = dict(state.deployments.get(f"{model}@{pool}", {}).get("target") or {})
        why = _reasons(fleet, state, cands, model, pool, have, want)
        if have == 0:
            changes.append(Change(address, "create", PHASE_UP, None, {"replicas": want}, why, target))
        elif want == 0:
            changes.append(Change(address, "delete", PHASE_DOWN, {"replicas": have}, None, why, target))
        else:
            phase = PHASE_UP if want > have else PHASE_DOWN
            changes.append(Change(address, "update", phase, {"replicas": have}, {"replicas": want}, why, target))
    return sorted(changes, key=lambda c: (c.phase, c.address))
