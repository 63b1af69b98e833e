"""Kubernetes Deployments and Terraform variables rendered from plan changes.

One Deployment per model per pool, requesting ``nvidia.com/gpu`` per replica, pinned to
the pool by its nodeSelector and tolerations, and labelled as placer's. The gitops
provider writes these; the kubernetes provider server-side applies the same objects.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from placer.nodegroups import POOL_LABEL
from placer.planfile import PlanFileError, tree_place
from placer.spec.loader import check_name

MANAGED_BY = "app.kubernetes.io/managed-by"
MODEL_LABEL = "placer.dev/model"
FIELD_MANAGER = "placer"


def deployment_name(model: str, pool: str) -> str:
    """``<model>-<pool>``, a DNS-1123 label; long names keep a hash so they stay unique."""
    name = f"{model}-{pool}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:54].rstrip('-')}-{digest}"


def deployment_manifest(target: dict[str, Any], replicas: int) -> dict[str, Any]:
    """The Deployment for a deployment change's ``target`` at ``replicas``."""
    model, pool = str(target["model"]), str(target["pool"])
    k8s = target.get("kubernetes") or {}
    labels = {MANAGED_BY: "placer", MODEL_LABEL: model, POOL_LABEL: pool}
    pod_labels = dict(labels)
    version = target.get("version")
    if version:
        pod_labels["app.kubernetes.io/version"] = re.sub(r"[^A-Za-z0-9._-]", "-", str(version))[:63].strip("-._")
    container: dict[str, Any] = {
        "name": "model",
        # an image tag has no "+": a version's build metadata (3.0+cuda12.4) gets "_", as Helm's OCI charts do
        "image": str(target.get("image") or f"registry.local/models/{model}:{str(version or 'latest').replace('+', '_')}"),
        "resources": {
            "limits": {"nvidia.com/gpu": str(int(target.get("gpus", 1)))},
            "requests": {"nvidia.com/gpu": str(int(target.get("gpus", 1)))},
        },
        "env": [
            {"name": "PLACER_MODEL", "value": model},
            {"name": "PLACER_POOL", "value": pool},
        ],
    }
    pod_spec: dict[str, Any] = {"containers": [container]}
    if k8s.get("nodeSelector"):
        pod_spec["nodeSelector"] = dict(sorted(k8s["nodeSelector"].items()))
    if k8s.get("tolerations"):
        pod_spec["tolerations"] = [dict(sorted(t.items())) for t in k8s["tolerations"]]
    spec: dict[str, Any] = {
        "replicas": int(replicas),
        "selector": {"matchLabels": {MODEL_LABEL: model, POOL_LABEL: pool}},
        "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
    }
    strategy = target.get("strategy")
    if strategy:  # a rollout its pool has no room to surge for (diff._surges); else Kubernetes' default
        spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {
            "maxSurge": int(strategy["maxSurge"]), "maxUnavailable": int(strategy["maxUnavailable"])}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(model, pool),
            "namespace": str(k8s.get("namespace") or "default"),
            "labels": labels,
        },
        "spec": spec,
    }


def cluster_of(target: dict[str, Any]) -> str:
    """The kubeconfig context a deployment goes to (no context: `default`; ``planfile.tree_place``)."""
    return tree_place(target)[0]


_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def cluster_folder(target: dict[str, Any]) -> str:
    """The folder of a GitOps tree that a deployment's context gets: the context itself where it
    is a plain name, else its letters and digits and a hash of it, so that a folder never leaves the
    tree (a context of ``../../x`` wrote manifests outside it) and an EKS context's ARN
    (``arn:aws:eks:…:cluster/name``) is one folder, not several."""
    context = cluster_of(target)
    if _PLAIN.fullmatch(context):
        return context
    digest = hashlib.sha256(context.encode()).hexdigest()[:8]
    plain = re.sub(r"[^A-Za-z0-9._-]+", "-", context).strip("-._")[:150]
    return f"{plain}-{digest}" if plain else digest


def manifest_file(target: dict[str, Any]) -> str:
    """A deployment's manifest's file name: its Deployment's name. A plan edited by hand to name a
    model or pool that is no DNS-1123 label (``../x``) is refused, never written elsewhere."""
    model, pool = str(target["model"]), str(target["pool"])
    for kind, name in (("Model", model), ("Pool", pool)):
        if check_name(kind, name) is not None:  # the fleet's own check of a name
            raise PlanFileError(f"the plan names {kind.lower()} {name!r}, which is no DNS-1123 name (was the plan "
                                "edited by hand?); plan again")
    return f"{deployment_name(model, pool)}.yaml"
