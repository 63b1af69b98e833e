"""The GitOps tree: files (path -> text) for Deployments per cluster and pool sizes for Terraform.

Layout: ``clusters/<context>/<deployment>.yaml`` with a ``kustomization.yaml`` per cluster
(Argo CD and Flux sync it as it is), and ``terraform/placer.auto.tfvars.json``. Output is
deterministic byte for byte: sorted keys, sorted file lists, no timestamps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from placer.planfile import read_said
from placer.render.manifests import MANAGED_BY, cluster_folder, deployment_manifest, manifest_file
from placer.render.moved import MOVED, heir, tree_moved
from placer.spec.source import RENDERED_TFVARS, YAML_SUFFIXES
from placer.spec.writer import dump

TFVARS = RENDERED_TFVARS  # by which the fleet loader knows a rendered tree, and skips it


def manifest_path(target: dict[str, Any]) -> str:
    return f"clusters/{cluster_folder(target)}/{manifest_file(target)}"


def manifest_text(target: dict[str, Any], replicas: int) -> str:
    return dump(deployment_manifest(target, replicas), sort_keys=True, default_flow_style=False)


def kustomization_text(resources: list[str]) -> str:
    doc = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(resources),
    }
    return dump(doc, sort_keys=False, default_flow_style=False)


def tfvars_entry(target: dict[str, Any], nodes: int) -> dict[str, Any]:
    aws = target.get("aws")
    gcp = target.get("gcp")
    return {
        "provider": target.get("provider"),
        "nodes": int(nodes),
        "min_nodes": int(target.get("minNodes", 0)),
        "max_nodes": int(target.get("maxNodes", nodes)),
        "gpu_type": target.get("gpuType"),
        "gpus_per_node": int(target.get("gpusPerNode", 1)),
        "spot": bool(target.get("spot", False)),
        "aws": None if aws is None else {
            "region": aws.get("region"),
            "auto_scaling_group_name": aws.get("autoScalingGroupName"),
            "eks_cluster": (aws.get("eks") or {}).get("cluster"),
            "eks_nodegroup": (aws.get("eks") or {}).get("nodegroup"),
        },
        "gcp": None if gcp is None else {
            "project": gcp.get("project"),
            "zone": gcp.get("zone"),
            "region": gcp.get("region"),
            "instance_group_manager": gcp.get("instanceGroupManager"),
        },
    }


def tfvars_pools(pools: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The tfvars' ``placer_pools`` of a plan's pool table: every pool placer sizes (one with a target),
    at its planned nodes."""
    return {p["pool"]: tfvars_entry(p["target"], int(p["nodes"])) for p in pools if p.get("target")}


def tfvars_text(pools: dict[str, dict[str, Any]], plan_info: dict[str, Any] | None = None) -> str:
    doc: dict[str, Any] = {"placer_pools": dict(sorted(pools.items()))}
    if plan_info is not None:
        doc["placer_plan"] = plan_info
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def listed(path: Path) -> bool:
    """Whether a file of a cluster folder is a manifest its kustomization lists: every ``*.yaml`` and
    ``*.yml`` but the kustomization (a namespace.yml put beside placer's was left out of it, so the
    pipeline stopped applying it). A folder so named is none (render failed on it: "[Errno 21] Is a directory")."""
    return (path.name.endswith(YAML_SUFFIXES) and path.name not in ("kustomization.yaml", "kustomization.yml")
            and not path.is_dir())


def placer_wrote(text: str) -> bool:
    """Whether a manifest's text is one placer writes (labelled as placer's): the ones ``render``
    may remove when a plan no longer has them; a person's own (a namespace, an Argo CD app) stay."""
    try:  # libyaml's parser where PyYAML has it: the pure-Python one took most of a re-render (28 s of 49 at M)
        doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return False
    labels = ((doc or {}).get("metadata") or {}).get("labels") if isinstance(doc, dict) else None
    return isinstance(labels, dict) and labels.get(MANAGED_BY) == "placer"


def plan_renames(plan: dict[str, Any], pools: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The pools a plan renames (old -> new): a pool it releases whose group a pool it sizes (``pools``:
    their tfvars entries) sizes from here on."""
    out = {}
    for change in plan.get("changes", []):
        address, target = str(change.get("address", "")), change.get("target")
        if change.get("action") == "delete" and address.startswith("pool/") and isinstance(target, dict):
            old = address.split("/", 1)[1]
            new = heir(old, tfvars_entry(target, 0), pools)
            if new is not None:
                out[old] = new
    return out


def terraform_files(root: Path) -> dict[str, str]:
    """The ``*.tf`` files of the ``terraform/`` folder of the GitOps tree under ``root`` (name -> text):
    the Terraform root that reads the tfvars, where it lies beside them, and placer's ``placer_moved.tf``."""
    folder = root / TFVARS.rsplit("/", 1)[0]
    if not folder.is_dir() or folder.is_symlink():
        return {}
    return {p.name: read_said(p, "to find the calls of placer's Terraform modules in it")
            for p in sorted(folder.glob("*.tf")) if p.is_file() and not p.is_symlink()}


def tree(plan: dict[str, Any], others: dict[str, list[str]] | None = None,
         terraform: dict[str, str] | None = None, notes: list[str] | None = None) -> dict[str, str]:
    """Every file of the GitOps tree for a plan's placement (not only its changes). ``others``:
    cluster folder -> the manifests placer did not write there, which its kustomization lists too
    (as the gitops apply keeps them). One of those at a Deployment's path is overwritten, as the gitops
    apply writes it, and listed once (it was listed twice, and kustomize refused the folder).
    ``terraform``: the ``*.tf`` files of the tree's ``terraform/`` folder (name -> text), from which
    ``placer_moved.tf`` is written for the pools the plan renames and those it recorded before
    (``tree_moved``); what it cannot write is added to ``notes``."""
    files: dict[str, str] = {}
    by_cluster: dict[str, set[str]] = {folder: set(names) for folder, names in (others or {}).items()}
    for p in plan.get("placements", []):
        target = p["target"]
        path = manifest_path(target)
        files[path] = manifest_text(target, int(p["replicas"]))
        by_cluster.setdefault(cluster_folder(target), set()).add(path.rsplit("/", 1)[1])
    for cluster, resources in by_cluster.items():
        files[f"clusters/{cluster}/kustomization.yaml"] = kustomization_text(sorted(resources))
    pools = tfvars_pools(plan.get("pools", []))
    prior = plan.get("priorState", {})
    files[TFVARS] = tfvars_text(pools, {"fleet_digest": plan.get("fleetDigest"), "serial": prior.get("serial", 0)})
    moved, _, said = tree_moved(terraform or {}, pools, plan_renames(plan, pools))
    if moved is not None:
        files[MOVED] = moved
    if notes is not None:
        notes += said
    return dict(sorted(files.items()))
