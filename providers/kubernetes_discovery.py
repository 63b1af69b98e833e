"""Kubernetes GPU pool discovery, pure: GPU nodes (GPU Feature Discovery labels, or GKE's accelerator
labels or an EKS node's EC2 instance type where GFD is not installed, allocatable ``nvidia.com/gpu``, node-group labels, taints) grouped into Pool, GPUType and Location documents.
``KubernetesProvider.discover`` lists the nodes and calls ``pools_from_nodes``."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from placer.catalog import BUILTIN_GPU_TYPES, match_product, type_name
from placer.discover import GpuTypeNote
from placer.nodegroups import (
    EKS_NODEGROUP_LABEL,
    EKSCTL_CLUSTER,
    NODE_GROUPS,
    eks_cluster,
    eksctl_group,
    node_group_text,
)
from placer.spec.kinds import API_VERSION, PoolGpu
from providers.base import Discovered, dns_label
from providers.places import (
    GCP_ACCELERATORS,
    GCP_OTHER_ACCELERATORS,
    aws_fractional_gpu,
    aws_instance_gpu,
    aws_jurisdiction,
    aws_location,
    gcp_jurisdiction,
    gcp_location,
)

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"  # GPU Feature Discovery
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"  # MiB
MIG_STRATEGY_LABEL = "nvidia.com/mig.strategy"  # single: nvidia.com/gpu counts slices; mixed: whole GPUs only
GPU_REPLICAS_LABEL = "nvidia.com/gpu.replicas"  # time-slicing, MPS: nvidia.com/gpu counts each GPU this many times
GPU_SHARING_LABEL = "nvidia.com/gpu.sharing-strategy"  # time-slicing, mps or none
SHARED_SUFFIX = "-SHARED"  # GFD's product label of a shared GPU (NVIDIA-L4-SHARED) unless the resource is renamed
# GKE labels every GPU node with its accelerator type and count, with or without GPU Feature Discovery
# (most GKE clusters run Google's device plugin and no GFD); MIG and GPU sharing are set per node pool
GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"  # nvidia-l4, nvidia-tesla-a100, ...
GKE_ACCELERATOR_COUNT_LABEL = "cloud.google.com/gke-accelerator-count"
GKE_PARTITION_LABEL = "cloud.google.com/gke-gpu-partition-size"  # MIG: nvidia.com/gpu counts partitions
GKE_SHARING_LABEL = "cloud.google.com/gke-gpu-sharing-strategy"  # time-sharing or mps
GKE_SHARED_CLIENTS_LABEL = "cloud.google.com/gke-max-shared-clients-per-gpu"
# EKS managed node groups and Karpenter on AWS label every node with its EC2 instance type, which tells its
# GPU (AWS discovery types it so); Karpenter adds the GPU's name (lowercase: h100, a10g), count, memory (MiB)
# and maker, read where placer does not know the instance type's family
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"  # p5.48xlarge, g6.xlarge, ...
KARPENTER_GPU_NAME_LABEL = "karpenter.k8s.aws/instance-gpu-name"
KARPENTER_GPU_COUNT_LABEL = "karpenter.k8s.aws/instance-gpu-count"
KARPENTER_GPU_MEMORY_LABEL = "karpenter.k8s.aws/instance-gpu-memory"  # MiB per GPU
KARPENTER_GPU_MANUFACTURER_LABEL = "karpenter.k8s.aws/instance-gpu-manufacturer"
REGION_LABEL = "topology.kubernetes.io/region"
# labels that name the node group a node belongs to; placer.dev/pool lets an operator name pools
NODE_POOL_LABELS = (
    "placer.dev/pool",
    "cloud.google.com/gke-nodepool",
    "eks.amazonaws.com/nodegroup",
    "karpenter.sh/nodepool",
    "karpenter.sh/provisioner-name",
    "kubernetes.azure.com/agentpool",
)
SPOT_LABELS = {
    "eks.amazonaws.com/capacityType": "SPOT",
    "karpenter.sh/capacity-type": "spot",
    "cloud.google.com/gke-spot": "true",
    "cloud.google.com/gke-preemptible": "true",
    "kubernetes.azure.com/scalesetpriority": "spot",
}
# taints the node lifecycle and autoscalers set for a while; they do not describe a pool
TRANSIENT_TAINTS = ("node.kubernetes.io/", "node.cloudprovider.kubernetes.io/", "ToBeDeletedByClusterAutoscaler",
                    "DeletionCandidateOfClusterAutoscaler", "karpenter.sh/disrupted", "karpenter.sh/disruption")
CLOUD_LABELS = {"aws": ("eks.amazonaws.com/", "karpenter.k8s.aws/"), "gce": ("cloud.google.com/gke-",)}
CLOUD_PROVIDER_IDS = ("aws://", "gce://", "azure://", "oci://", "ibm://", "alicloud://")
# the most GPUs a fleet's node may hold (Pool spec.gpu.perNode): a node that reports more is broken
MAX_PER_NODE: int = next(m.le for m in PoolGpu.model_fields["per_node"].metadata if hasattr(m, "le"))


def _quantity(value: Any) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return 0


def _ready(node: dict[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _pool_taints(node: dict[str, Any]) -> tuple[tuple[str, str, str], ...]:
    taints = (node.get("spec") or {}).get("taints") or []
    return tuple(sorted(
        (str(t.get("key")), str(t.get("value") or ""), str(t.get("effect")))
        for t in taints
        if t.get("effect") in ("NoSchedule", "NoExecute") and not str(t.get("key")).startswith(TRANSIENT_TAINTS)))


def _toleration(key: str, value: str, effect: str) -> dict[str, str]:
    if value:
        return {"key": key, "operator": "Equal", "value": value, "effect": effect}
    return {"key": key, "operator": "Exists", "effect": effect}


def _impossible(gpus: int, labelled: int, count_label: str) -> str | None:
    """Why a node's count of whole GPUs cannot be true, or None: more than its own count label
    (nvidia.com/gpu.count, GKE's gke-accelerator-count) says it has, or than any node of a fleet holds."""
    if labelled and gpus > labelled:
        return f"its {count_label} label says {labelled}"
    if gpus > MAX_PER_NODE:
        return f"a node of a fleet holds at most {MAX_PER_NODE}"
    return None


def _not_whole(labels: dict[str, str]) -> tuple[str, str] | None:
    """Why a node's nvidia.com/gpu are not whole GPUs that placer can give a pod, and what to do, or
    None: GKE's MIG partitions, and GPUs shared by the device plugin's time-slicing or MPS (GFD's
    replicas and sharing-strategy labels, GKE's time-sharing), where a pod asking for one gets a share
    of a GPU that other pods use too, and one asking for two may get two shares of one GPU (GKE refuses
    it). Counted as whole GPUs, a node of 4 L4s shared 4 ways was a pool of 4 L4s whose replicas could
    all run on one of them, beside whatever else asked for the other 12 shares."""
    partition = labels.get(GKE_PARTITION_LABEL)
    if partition:
        return (f"offer MIG partitions of {partition} ({GKE_PARTITION_LABEL}) as {GPU_RESOURCE}, not whole GPUs",
                "give placer's models a node pool without GPU partitions")
    sharing = labels.get(GKE_SHARING_LABEL)
    if sharing:
        clients = labels.get(GKE_SHARED_CLIENTS_LABEL)
        ways = f", {GKE_SHARED_CLIENTS_LABEL}={clients}" if clients else ""
        return (f"share each GPU ({GKE_SHARING_LABEL}={sharing}{ways}): {GPU_RESOURCE} counts the shares, and a pod "
                "asking for one gets a share of a GPU other pods use too, not the GPU",
                "give placer's models a node pool without GPU sharing")
    replicas = _quantity(labels.get(GPU_REPLICAS_LABEL))
    strategy = labels.get(GPU_SHARING_LABEL)
    product = str(labels.get(GPU_PRODUCT_LABEL) or "")
    if replicas > 1 or strategy not in (None, "", "none") or product.upper().endswith(SHARED_SUFFIX):
        said = ", ".join(f"{k}={labels[k]}" for k in (GPU_REPLICAS_LABEL, GPU_SHARING_LABEL, GPU_PRODUCT_LABEL)
                         if labels.get(k) and (k != GPU_PRODUCT_LABEL or product.upper().endswith(SHARED_SUFFIX)))
        return (f"share each GPU ({said}): {GPU_RESOURCE} counts the shares, and a pod asking for one gets a share "
                "of a GPU other pods use too, not the GPU",
                "turn sharing off for them in the NVIDIA device plugin's config (the nvidia.com/device-plugin.config "
                "label picks it), or run placer's models on nodes without it")
    return None


def _gke_gpu(accelerator: str) -> Any:
    """The catalog GPU of a GKE accelerator type, as GCP discovery names it (nvidia-tesla-a100 is the
    A100 of 40 GB, nvidia-a100-80gb the other), or None."""
    named = GCP_ACCELERATORS.get(accelerator)
    return BUILTIN_GPU_TYPES.get(named) if named else match_product(accelerator)


def _aws_gpu(node: dict[str, Any], labels: dict[str, str]) -> tuple[str, int] | None:
    """(GPU name, MiB per GPU) of an EC2 instance node as AWS discovery reads them from EC2 (H100, 81920),
    by its instance type, else by Karpenter's GPU labels (upper-cased: Karpenter lowercases EC2's name);
    None where it is no EC2 instance, has no instance-type label, or no whole NVIDIA GPUs placer knows of."""
    if _cloud(node) != "aws" or not labels.get(INSTANCE_TYPE_LABEL) or aws_fractional_gpu(labels[INSTANCE_TYPE_LABEL]):
        return None
    known = aws_instance_gpu(str(labels[INSTANCE_TYPE_LABEL]))
    if known is not None:
        return known
    name, mib = labels.get(KARPENTER_GPU_NAME_LABEL), _quantity(labels.get(KARPENTER_GPU_MEMORY_LABEL))
    maker = str(labels.get(KARPENTER_GPU_MANUFACTURER_LABEL) or "nvidia").lower()
    if not name or not mib or maker != "nvidia" or labels.get(KARPENTER_GPU_COUNT_LABEL) == "0":
        return None  # an AMD, Habana or fractional GPU (g6f) is no nvidia.com/gpu placer places
    return str(name).upper(), mib


def _spot(labels: dict[str, str]) -> bool:
    return any(labels.get(k) == v for k, v in SPOT_LABELS.items())


def _by_capacity(groups: dict[tuple[Any, ...], list[dict[str, Any]]]
                 ) -> tuple[dict[tuple[Any, ...], list[dict[str, Any]]], dict[tuple[Any, ...], bool]]:
    """The groups, each that mixes spot and on-demand nodes (a Karpenter NodePool whose requirements
    allow both) split in two, each half selecting its own nodes by the capacity label they all carry
    (``karpenter.sh/capacity-type: spot`` or ``on-demand``); and the halves' keys, each with whether it is
    the spot one. As one pool marked spot, a model that may not run on spot lost the on-demand nodes too."""
    out: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    halves_of: dict[tuple[Any, ...], bool] = {}
    for (selector, taints), members in groups.items():
        flags = [_spot((m.get("metadata") or {}).get("labels") or {}) for m in members]
        if all(flags) or not any(flags):
            out[(selector, taints)] = members
            continue
        halves = []
        for spot in (False, True):
            part = [m for m, flag in zip(members, flags, strict=True) if flag == spot]
            said = {next(((k, str(lab[k])) for k in SPOT_LABELS if lab.get(k)), None)
                    for lab in ((m.get("metadata") or {}).get("labels") or {} for m in part)}
            # a half whose nodes do not all carry one capacity label (GKE marks only its spot nodes)
            # keeps the group's selector; a note then says its pods may run on the other half's nodes
            extra = tuple(said) if len(said) == 1 and None not in said else ()
            halves.append(((tuple(sorted((*selector, *extra))), taints), part, spot))
        if halves[0][0] == halves[1][0]:  # nothing tells them apart: one pool, marked spot, as before
            out[(selector, taints)] = members
            continue
        for key, part, spot in halves:
            out[key] = part
            halves_of[key] = spot
    return out, halves_of


def _most_common(values: Iterable[Any]) -> Any:
    counted = Counter(v for v in values if v not in (None, ""))
    return counted.most_common(1)[0][0] if counted else None


def pools_from_nodes(context_name: str | None, context: str | None, nodes: list[dict[str, Any]],
                     taken: set[str]) -> Discovered:
    """Group one context's GPU nodes by (GPU product, GPU count, node-group labels, taints) into Pools.

    ``context_name`` names things (the current context's real name where known); ``context`` goes
    into the pools' target (None: whatever context is current when placer applies). ``taken``
    holds the pool names already used and gains the new ones.
    """
    base = dns_label(context_name or "cluster")
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    notes: list[str] = []
    unlabelled: list[str] = []
    not_whole: dict[tuple[str, str], list[str]] = {}
    unwhole: list[tuple[str, dict[str, str], tuple[tuple[str, str, str], ...]]] = []  # not_whole's nodes
    for node in nodes:
        labels = (node.get("metadata") or {}).get("labels") or {}
        gpus = _quantity(((node.get("status") or {}).get("allocatable") or {}).get(GPU_RESOURCE))
        product = labels.get(GPU_PRODUCT_LABEL)
        ec2 = not product and not labels.get(GKE_ACCELERATOR_LABEL) and _aws_gpu(node, labels) is not None
        if not product and not labels.get(GKE_ACCELERATOR_LABEL) and not ec2:
            if gpus:
                unlabelled.append(str(node["metadata"]["name"]))
            continue
        shared = _not_whole(labels)
        if shared is not None:
            not_whole.setdefault(shared, []).append(str(node["metadata"]["name"]))
            unwhole.append((str(node["metadata"]["name"]), labels, _pool_taints(node)))
            continue
        # GFD's labels where it runs (as before: a fleet's selectors name them); GKE's where it does not; on
        # EKS without GFD the instance type, which EKS node groups and Karpenter both set and which says the GPU
        gpu_labels = (GPU_PRODUCT_LABEL, GPU_COUNT_LABEL) if product else (INSTANCE_TYPE_LABEL,) if ec2 else \
            (GKE_ACCELERATOR_LABEL, GKE_ACCELERATOR_COUNT_LABEL)
        selector = tuple(sorted((k, labels[k]) for k in (*gpu_labels, *NODE_POOL_LABELS) if labels.get(k)))
        groups.setdefault((selector, _pool_taints(node)), []).append(node)
    if unlabelled:
        notes.append(f"context {base}: nodes {', '.join(sorted(unlabelled))} offer {GPU_RESOURCE} but have no "
                     f"{GPU_PRODUCT_LABEL} label (install NVIDIA GPU Feature Discovery), nor GKE's "
                     f"{GKE_ACCELERATOR_LABEL}, nor an EC2 {INSTANCE_TYPE_LABEL} of NVIDIA GPUs placer knows; "
                     "they are not in any pool")
    for (what, fix), names in sorted(not_whole.items()):
        notes.append(f"context {base}: nodes {', '.join(sorted(names))} {what}; placer places whole GPUs only, so "
                     f"they are not in any pool: {fix}")
    documents: list[dict[str, Any]] = []
    nodes_of: dict[str, dict[str, dict[str, str]]] = {}  # Discovered.members
    keys: dict[str, tuple[Any, ...]] = {}  # a Pool's name -> its group's (selector, taints)
    groups, halves = _by_capacity(groups)
    for (selector, taints), members in sorted(groups.items()):
        doc_notes: list[str] = []
        sel = dict(selector)
        labels_of = [(m.get("metadata") or {}).get("labels") or {} for m in members]
        names = sorted(str(m["metadata"]["name"]) for m in members)
        accelerator = sel.get(GKE_ACCELERATOR_LABEL, "")
        product = sel.get(GPU_PRODUCT_LABEL, "")
        instance_type = sel.get(INSTANCE_TYPE_LABEL, "")  # in the selector of EC2 nodes without GFD only
        count_label = GPU_COUNT_LABEL if product else KARPENTER_GPU_COUNT_LABEL if instance_type else \
            GKE_ACCELERATOR_COUNT_LABEL
        memory_mib = _most_common(_quantity(lab.get(GPU_MEMORY_LABEL)) or None for lab in labels_of)
        # the GPU's name and memory where no GFD label says them: a GKE accelerator the catalog lacks is
        # the GPU GCP discovery names it (nvidia-b200: NVIDIA B200 of 183359 MiB, B200-179GB); it was
        # a type of its own, nvidia-b200, that no model's throughput named
        known_as, memory_from = product, f"its {GPU_MEMORY_LABEL} label"
        other = None if product else GCP_OTHER_ACCELERATORS.get(accelerator)
        if other is not None:
            (known_as, memory_mib), memory_from = other, "the memory its driver reports, as discover gcp adds it"
        # an EC2 instance's GPU as AWS discovery names it (p5.48xlarge: H100 of 81920 MiB, H100-80GB)
        ec2_gpu = _aws_gpu(members[0], labels_of[0]) if instance_type else None
        if ec2_gpu is not None:
            (known_as, memory_mib), memory_from = ec2_gpu, f"EC2's, of {instance_type}, as discover aws adds it"
        memory_gib = round(memory_mib / 1024, 1) if memory_mib else None
        allocatable = [_quantity(((m.get("status") or {}).get("allocatable") or {}).get(GPU_RESOURCE))
                       for m in members]
        # placer places whole GPUs: MIG slices are not GPUs (a node of 8 A100s cut into 7 slices each
        # became 56 "A100-40GB"); shared GPUs were left out above
        strategy = _most_common(lab.get(MIG_STRATEGY_LABEL) or None for lab in labels_of)
        if strategy == "single" or "-MIG-" in product.upper():
            notes.append(f"context {base}: nodes {', '.join(names)} offer MIG slices of {product} as {GPU_RESOURCE} "
                         f"({MIG_STRATEGY_LABEL}={strategy or 'single'}); placer places whole GPUs only, so they are "
                         "not in any pool: turn MIG off there, or declare the pool by hand")
            continue
        # a node that reports more GPUs than it can have (a broken device plugin) is left out alone: taken
        # as the group's perNode, 10^12 GPUs on one L4 node made the whole group a pool no fleet takes
        impossible = {str(m["metadata"]["name"]): (a, why) for m, a, lab in zip(members, allocatable, labels_of,
                                                                                strict=True)
                      if (why := _impossible(a, _quantity(lab.get(count_label)), count_label)) is not None}
        left_alone = "; ".join(f"node {node} reports {a} allocatable {GPU_RESOURCE}, but {why} "
                               f"(`kubectl describe node {node}`)" for node, (a, why) in sorted(impossible.items()))
        sane = [a for m, a in zip(members, allocatable, strict=True) if str(m["metadata"]["name"]) not in impossible]
        if not sane:
            notes.append(f"context {base}: {left_alone}; not in any pool: is the NVIDIA device plugin there broken?")
            continue
        if impossible:
            doc_notes.append(f"{left_alone}; left out of the pool: is the NVIDIA device plugin there broken?")
        if strategy == "mixed":  # the whole GPUs are what is left as nvidia.com/gpu; the slices are not counted
            per_node = max(sane)
            doc_notes.append(f"MIG slices ({MIG_STRATEGY_LABEL}=mixed) are left out; only whole GPUs count")
        else:
            per_node = max(sane) or _most_common(_quantity(lab.get(count_label)) or None for lab in labels_of) or 0
        gpu = match_product(product or known_as, memory_gib) if product or ec2_gpu else None if other else \
            _gke_gpu(accelerator)
        # a type of its own is named by its memory too, as other discoveries name one: by the product
        # alone, groups of one product at two sizes were one GPUType of the first's memory
        gpu_type = gpu.name if gpu else type_name(known_as, memory_gib) if known_as and memory_gib else \
            re.sub(r"[^A-Za-z0-9._-]+", "-", product or accelerator).strip("-._")
        group_label = next((sel[k] for k in NODE_POOL_LABELS if k in sel), None)
        named = sel.get("placer.dev/pool")
        name = dns_label(str(named)) if named else dns_label(f"{base}-{group_label or gpu_type}")
        if halves.get((selector, taints)):  # the on-demand half keeps the group's name
            name = dns_label(f"{name}-spot")
        unique, n = name, 2
        while unique in taken:
            unique, n = dns_label(f"{name}-{n}"), n + 1
        taken.add(unique)
        if per_node < 1 and strategy == "mixed":
            notes.append(f"pool {unique}: every GPU of nodes {', '.join(names)} is cut into MIG slices "
                         f"({MIG_STRATEGY_LABEL}=mixed); placer places whole GPUs only; skipped")
            continue
        if per_node < 1:
            notes.append(f"pool {unique}: nodes {', '.join(names)} report no allocatable {GPU_RESOURCE} and no "
                         f"{count_label} (is the NVIDIA device plugin running?); skipped")
            continue
        if gpu is None and not known_as:
            doc_notes.append(f"GKE accelerator {accelerator!r} is not in the built-in catalog: add a GPUType document "
                             f"named {gpu_type} (or install NVIDIA GPU Feature Discovery, whose {GPU_MEMORY_LABEL} "
                             "label tells its memory)")
        elif gpu is None and not memory_gib:
            doc_notes.append(f"GPU product {product!r} is not in the built-in catalog: its nodes have no "
                             f"{GPU_MEMORY_LABEL} label to tell its memory by")
        elif gpu is None:
            said = f"GPU product {product!r}" if product else f"{instance_type}'s GPU {known_as!r}" if instance_type \
                else f"GKE accelerator {accelerator!r}"
            notes.append(GpuTypeNote(f"pool {unique}: {said} is not in the built-in catalog: added a GPUType document "
                                     f"named {{names}} of {memory_gib} GiB ({memory_from}); check it, and give models "
                                     "a throughput for it", [gpu_type]))
            documents.append({"apiVersion": API_VERSION, "kind": "GPUType", "metadata": {"name": gpu_type},
                              "spec": {"memoryGiB": memory_gib, "vendor": "nvidia"}})
        short = [m["metadata"]["name"] for m, a in zip(members, allocatable, strict=True) if a < per_node]
        if short:
            doc_notes.append(f"nodes {', '.join(sorted(short))} offer fewer than {per_node} GPUs (a failed GPU?)")
        usable = [m for m in members if _ready(m) and not (m.get("spec") or {}).get("unschedulable")
                  and str(m["metadata"]["name"]) not in impossible]
        left_out = sorted(set(names) - set(impossible) - {str(m["metadata"]["name"]) for m in usable})
        if left_out:
            doc_notes.append(f"nodes {', '.join(left_out)} are not Ready or cordoned and are not counted")
        # shared nodes of the same selector (a GFD older than its -SHARED product label, no node-group
        # label to tell them apart): the pool's replicas may be scheduled there, onto a share of a GPU
        onto = sorted(node for node, lab, their_taints in unwhole
                      if set(sel.items()) <= set(lab.items()) and set(their_taints) <= set(taints))
        if onto:
            doc_notes.append(f"its nodeSelector{' and tolerations' if taints else ''} also let its pods onto nodes "
                             f"{', '.join(onto)}, whose GPUs are shared or cut (not in any pool, above): label its "
                             f"own nodes placer.dev/pool={unique} (`kubectl label node NODE placer.dev/pool={unique}`) "
                             "and add that label to its nodeSelector, so that it selects them alone")
        spot_flags = [_spot(lab) for lab in labels_of]
        if any(spot_flags) and not all(spot_flags):
            doc_notes.append("mixes spot and on-demand nodes; marked spot (capacity may be reclaimed)")
        region = _most_common(lab.get(REGION_LABEL) for lab in labels_of)
        location, place = _place(region, base, [_cloud(m) for m in members])
        documents.append({"apiVersion": API_VERSION, "kind": "Location", "metadata": {"name": location},
                          "spec": place})
        spec: dict[str, Any] = {
            "location": location,
            "provider": "kubernetes",
            "gpu": {"type": gpu_type, "perNode": per_node},
            "nodes": {"count": len(usable)},
            "usdPerGpuHour": 0,
            "target": {"kubernetes": {
                "context": context if context is not None else context_name,
                "namespace": "default",
                "nodeSelector": sel,
                "tolerations": [_toleration(*t) for t in taints],
            }},
        }
        if any(spot_flags):
            spec["spot"] = True
        elif (selector, taints) in halves:  # said, so that a merge into the one pool marked spot unmarks it
            spec["spot"] = False
        if spec["target"]["kubernetes"]["context"] is None:
            del spec["target"]["kubernetes"]["context"]
        annotations = {"placer.dev/discovered-from": f"kubernetes context {base}: {len(members)} "
                       f"node{'s' if len(members) > 1 else ''} ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})"}
        clouds = _node_groups(members, context_name)
        if clouds:  # what AWS or GCP discovery calls these nodes: a merge of theirs keeps one pool of them
            annotations[NODE_GROUPS] = ", ".join(node_group_text(g) for g in sorted(clouds, key=str))
        documents.append({"apiVersion": API_VERSION, "kind": "Pool",
                          "metadata": {"name": unique, "annotations": annotations}, "spec": spec})
        nodes_of[unique] = {str(m["metadata"]["name"]): {str(k): str(v) for k, v in lab.items()}
                            for m, lab in zip(members, labels_of, strict=True)}
        keys[unique] = (selector, taints)
        notes.extend(f"pool {unique}: {note}" for note in doc_notes)
    notes.extend(_overlaps(keys, nodes_of))
    return Discovered(documents=documents, notes=notes, members=nodes_of)


def _node_groups(members: list[dict[str, Any]], context_name: str | None) -> set[tuple[Any, ...]]:
    """The cloud node groups (``placer.nodegroups.node_groups``) nodes are instances of, as AWS and GCP
    discovery name them: an EKS managed node group by its label, the cluster by eksctl's label or an
    EKS context name (else unknown), the region by the node's; a self-managed node group (an Auto Scaling
    group whose nodes join the cluster) by eksctl's ``alpha.eksctl.io/nodegroup-name`` label, its cluster
    likewise; a GKE node pool's zonal MIG by the node's
    providerID (``gce://PROJECT/ZONE/INSTANCE``: GKE names a node pool's instances after its MIG,
    ``gke-CLUSTER-POOL-HASH-xxxx`` of ``gke-CLUSTER-POOL-HASH-grp``)."""
    found: set[tuple[Any, ...]] = set()
    context = eks_cluster(context_name)
    for node in members:
        labels = (node.get("metadata") or {}).get("labels") or {}
        nodegroup, region = labels.get(EKS_NODEGROUP_LABEL), labels.get(REGION_LABEL)
        cluster = labels.get(EKSCTL_CLUSTER) or (context[1] if context and context[0] == region else None)
        if nodegroup and region and _cloud(node) == "aws":
            found.add(("eks", str(region), cluster, str(nodegroup)))
        elif _cloud(node) == "aws" and (self_managed := eksctl_group(region, labels, cluster)) is not None:
            found.add(self_managed)
        provider_id = str((node.get("spec") or {}).get("providerID") or "")
        parts = provider_id.removeprefix("gce://").split("/")
        if provider_id.startswith("gce://") and len(parts) == 3 and labels.get("cloud.google.com/gke-nodepool") \
                and re.fullmatch(r"gke-.+-[0-9a-f]{8}-[a-z0-9]{4}", parts[2]):
            found.add(("gcp", parts[0], parts[1], f"{parts[2].rsplit('-', 1)[0]}-grp"))
    return found


def _cloud(node: dict[str, Any]) -> str | None:
    """The cloud a node is an instance of, by its providerID (``aws://``, ``gce://``), else by the labels
    EKS, Karpenter on AWS and GKE set; None on-prem."""
    provider_id = str((node.get("spec") or {}).get("providerID") or "")
    if provider_id.startswith(CLOUD_PROVIDER_IDS):
        return provider_id.split("://", 1)[0]
    labels = (node.get("metadata") or {}).get("labels") or {}
    return next((cloud for cloud, prefixes in CLOUD_LABELS.items() for key in labels if key.startswith(prefixes)), None)


def _place(region: str | None, base: str, clouds: list[str | None]) -> tuple[str, dict[str, Any]]:
    """The Location of a group's nodes, named and placed as AWS and GCP discovery name their region
    where the nodes are EC2 or Compute Engine instances (``aws-us-east-1``, jurisdiction US): named
    ``us-east-1`` beside AWS discovery's ``aws-us-east-1``, an EKS cluster's pools were at a Location
    no Link joined, and no residency policy of US selected them."""
    cloud = _most_common(clouds)
    spec: dict[str, Any] = {"environment": "cloud" if region is not None or cloud else "onprem"}
    if region is None or cloud not in ("aws", "gce"):
        return dns_label(region or base), spec
    jurisdiction = aws_jurisdiction(region) if cloud == "aws" else gcp_jurisdiction(region)
    if jurisdiction:
        spec["jurisdiction"] = jurisdiction
    return (aws_location(region) if cloud == "aws" else gcp_location(region)), spec


def _overlaps(keys: dict[str, tuple[Any, ...]], nodes_of: dict[str, dict[str, dict[str, str]]]) -> list[str]:
    """A note for each pool whose nodeSelector and tolerations also let its pods onto another pool's
    nodes: a selector with fewer labels than the other's (nodes without a node-group label beside
    nodes with one), or the same selector with a taint the other's nodes lack. Its replicas may run
    there, on GPUs placer counts as the other pool's (a tainted node made a pool of one node whose
    Deployments the scheduler could put on any of the group's untainted nodes)."""
    out = []
    for name, (selector, taints) in keys.items():
        onto = [other for other, (theirs, their_taints) in keys.items() if other != name
                and set(selector) <= set(theirs) and set(their_taints) <= set(taints)]
        if onto:
            nodes = sorted(n for other in onto for n in nodes_of[other])
            out.append(f"pool {name}: its nodeSelector{' and tolerations' if taints else ''} also let its pods onto "
                       f"the nodes of pool {', '.join(onto)} ({', '.join(nodes[:5])}{', ...' if len(nodes) > 5 else ''}), "
                       f"whose GPUs placer counts there too: label its own nodes placer.dev/pool={name} (`kubectl "
                       f"label node NODE placer.dev/pool={name}`) and add that label to its nodeSelector where a "
                       "fleet holds it, so that it selects them alone; then discover again")
    return out
