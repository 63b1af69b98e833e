"""The cloud node groups a Pool's nodes are in, as a cloud's discovery and Kubernetes discovery both see
them (an EKS managed node group, an eksctl-named self-managed node group's Auto Scaling group, a GKE node
pool's zonal MIG): one group found by two discoveries is one
pool (``placer.discover`` keeps one when merging, ``placer.fleet`` refuses two)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any


def as_mapping(value: Any) -> dict[str, Any]:
    """``value`` where it is a mapping, else an empty one: a hand-written document's field may be anything."""
    return value if isinstance(value, dict) else {}


NODE_GROUPS = "placer.dev/node-groups"  # the cloud node groups a discovered Kubernetes pool's nodes are in
EKS_NODEGROUP_LABEL = "eks.amazonaws.com/nodegroup"
# a self-managed node group's name and cluster: labels on its nodes and tags on its Auto Scaling group, as
# eksctl sets both (and Terraform modules and users copy); EKS's own label wins where a node has both
EKSCTL_NODEGROUP = "alpha.eksctl.io/nodegroup-name"
EKSCTL_CLUSTER = "alpha.eksctl.io/cluster-name"
POOL_LABEL = "placer.dev/pool"  # on the nodes of the groups placer's Terraform modules make, and its manifests' selectors
# an EKS cluster's kubeconfig context: `aws eks update-kubeconfig`'s ARN, eksctl's user@CLUSTER.REGION.eksctl.io
_EKS_CONTEXT = (re.compile(r"arn:aws[a-z-]*:eks:(?P<region>[a-z0-9-]+):[0-9]*:cluster/(?P<cluster>[^/]+)"),
                re.compile(r"[^@]*@(?P<cluster>[^.@]+)\.(?P<region>[a-z0-9-]+)\.eksctl\.io"))


# EKS names a node group in at most 63 characters; a replacement placer names takes this suffix
EKS_NAME_MAX = 63
ALTERNATE_SUFFIX = "-alt"


def alternate_nodegroup(name: str) -> str:
    """The other name of the EKS node group ``name`` (the fleet's): where a change EKS cannot make in
    place (the capacity type, spot) replaces the group, the new one takes the name the old one does
    not have, ``name`` and ``name-alt`` in turn, as EKS refuses two node groups of one name and the
    new group is made before the old one goes."""
    return name[:EKS_NAME_MAX - len(ALTERNATE_SUFFIX)] + ALTERNATE_SUFFIX


def same_nodegroup(a: str, b: str) -> bool:
    """Whether EKS node group names ``a`` and ``b`` (of one cluster) are one pool's: the same name, or
    one the replacement of the other (``alternate_nodegroup``; the fleet refuses a pool naming the
    replacement name of another's, so the pair is one pool's)."""
    return a == b or alternate_nodegroup(a) == b or alternate_nodegroup(b) == a


def replaced_nodegroup(name: str, listed: Iterable[str] = ()) -> str | None:
    """The node group ``name`` is the replacement of (``alternate_nodegroup``): one of ``listed`` (the
    cluster's other groups) whose replacement name it is, else ``name`` less its ``-alt``; None where
    ``name`` is no replacement's name, or is one of 63 characters whose group is gone (the name was cut
    to fit: the replaced one's may have been longer, and is not known)."""
    if not name.endswith(ALTERNATE_SUFFIX) or len(name) == len(ALTERNATE_SUFFIX):
        return None
    found = next((other for other in sorted(listed) if other != name and alternate_nodegroup(other) == name), None)
    return found or (name[:-len(ALTERNATE_SUFFIX)] if len(name) < EKS_NAME_MAX else None)


def eks_cluster(context: Any) -> tuple[str, str] | None:
    """(region, cluster) of an EKS cluster's kubeconfig context name, or None where it names no EKS cluster."""
    for pattern in _EKS_CONTEXT:
        found = pattern.fullmatch(str(context or ""))
        if found:
            return found["region"], found["cluster"]
    return None


def eksctl_group(region: Any, marks: Mapping[str, Any], cluster: Any = None) -> tuple[Any, ...] | None:
    """``("eksctl", region, cluster, nodegroup)``: the self-managed node group eksctl's labels (a node's) or
    tags (its Auto Scaling group's) ``marks`` name, the cluster theirs, else ``cluster`` (None: not known);
    None where they name none."""
    name = marks.get(EKSCTL_NODEGROUP)
    if not name or not region:
        return None
    return ("eksctl", str(region), str(marks.get(EKSCTL_CLUSTER) or cluster or "") or None, str(name))


def node_group_text(group: tuple[Any, ...]) -> str:
    """A cloud node group (``node_groups``) as the ``placer.dev/node-groups`` annotation writes it:
    ``eks REGION/CLUSTER/NODEGROUP`` (``*`` for a cluster unknown), ``eksctl REGION/CLUSTER/NODEGROUP``
    (a self-managed one), ``gcp PROJECT/ZONE/MIG``."""
    return f"{group[0]} {'/'.join('*' if part is None else str(part) for part in group[1:])}"


def _node_group_parse(text: str) -> tuple[Any, ...] | None:
    kind, _, rest = text.strip().partition(" ")
    parts = rest.split("/")
    if kind not in ("eks", "eksctl", "gcp") or len(parts) != 3 or not all(parts):
        return None
    return (kind, *(None if part == "*" else part for part in parts))


def node_groups(document: Any) -> set[tuple[Any, ...]]:
    """The cloud node groups a Pool's nodes are in, as AWS or GCP discovery and Kubernetes discovery
    both see them: ``("eks", region, cluster, nodegroup)`` for an EKS managed node group (an ``aws``
    pool's ``target.aws.eks``; a Kubernetes pool's ``eks.amazonaws.com/nodegroup`` selector, its
    cluster and region from an EKS context), ``("gcp", project, zone, mig)`` for a zonal MIG (a ``gcp``
    pool's target; the GKE node pool MIGs a Kubernetes pool's nodes are instances of), ``("eksctl",
    region, cluster, nodegroup)`` for a self-managed node group eksctl's labels and tags name. A
    Kubernetes pool's come from its ``placer.dev/node-groups`` annotation, which Kubernetes discovery
    writes; an ``aws`` Auto Scaling group pool's self-managed one from the annotation AWS discovery writes."""
    spec = as_mapping(as_mapping(document).get("spec"))
    target = as_mapping(spec.get("target"))
    found: set[tuple[Any, ...]] = set()
    aws, gcp, kube = as_mapping(target.get("aws")), as_mapping(target.get("gcp")), as_mapping(target.get("kubernetes"))
    provider = spec.get("provider")
    eks = as_mapping(aws.get("eks"))
    if provider == "aws" and aws.get("region") and eks.get("cluster") and eks.get("nodegroup"):
        found.add(("eks", str(aws["region"]), str(eks["cluster"]), str(eks["nodegroup"])))
    if provider == "gcp" and gcp.get("project") and gcp.get("zone") and gcp.get("instanceGroupManager"):
        found.add(("gcp", str(gcp["project"]), str(gcp["zone"]), str(gcp["instanceGroupManager"])))
    written = as_mapping(as_mapping(as_mapping(document).get("metadata")).get("annotations")).get(NODE_GROUPS)
    listed = {g for text in written.split(",") if (g := _node_group_parse(text)) is not None} \
        if isinstance(written, str) else set()
    if provider == "aws" and aws.get("autoScalingGroupName"):
        found |= {g for g in listed if g[0] == "eksctl"}
    if provider == "kubernetes":
        found |= listed
        nodegroup = as_mapping(kube.get("nodeSelector")).get(EKS_NODEGROUP_LABEL)
        cluster = eks_cluster(kube.get("context"))
        if nodegroup and cluster and not any(g[0] == "eks" for g in found):  # a hand-written pool of one
            found.add(("eks", cluster[0], cluster[1], str(nodegroup)))
    return found


def same_group(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Whether two ``node_groups`` are one; a part not known (an EKS cluster, None) matches any. An EKS
    node group and its replacement (``same_nodegroup``: ``h100``, ``h100-alt``) are one: Kubernetes
    discovery reads the name from the nodes, which are the replacement's once a spot change made it."""
    if len(a) != len(b) or not all(x == y or x is None or y is None for x, y in zip(a[:-1], b[:-1], strict=True)):
        return False
    if a[0] == "eks" and a[-1] is not None and b[-1] is not None:
        return same_nodegroup(str(a[-1]), str(b[-1]))
    return a[-1] == b[-1] or a[-1] is None or b[-1] is None


def group_words(group: tuple[Any, ...], other: tuple[Any, ...] | None = None) -> str:
    """A node group in words, for messages; ``other``: the same group as the other pool names it, which
    may know the EKS cluster this one does not (or not know it: then said, with what to do)."""
    if group[0] == "eks":
        cluster = group[2] or (other[2] if other is not None else None)
        words = f"EKS node group {group[3]}{f' of cluster {cluster}' if cluster else ''} in {group[1]}"
        if None in group or (other is not None and None in other):
            words += (" (Kubernetes discovery could not tell the cluster of its nodes and took the node group's "
                      "name and region for it: if they are another cluster's node group of that name, name the "
                      "kubeconfig context after the cluster's ARN, arn:aws:eks:REGION:ACCOUNT:cluster/NAME, and "
                      "discover again)")
        return words
    if group[0] == "eksctl":
        cluster = group[2] or (other[2] if other is not None else None)
        words = (f"self-managed node group {group[3]}{f' of cluster {cluster}' if cluster else ''} in {group[1]} "
                 f"({EKSCTL_NODEGROUP})")
        if None in group or (other is not None and None in other):
            words += (f" (one of the two pools does not say its cluster, neither by its nodes' {EKSCTL_CLUSTER} "
                      f"label nor by its Auto Scaling group's {EKSCTL_CLUSTER} or kubernetes.io/cluster/NAME tag, "
                      "and the node group's name and region were taken for it: if they are another cluster's node "
                      f"group of that name, remove the {NODE_GROUPS} annotation of the one that is not)")
        return words
    return f"GKE node pool MIG {group[3]} in {group[1]}/{group[2]}"
