"""AWS GPU pool discovery: Pool, GPUType and Location documents from Auto Scaling groups (launch
templates, launch configurations, mixed-instances overrides) and EKS managed node groups, for
``placer discover aws``. Calls go through ``AwsProvider`` (its clients, retries and error messages)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from placer.catalog import match_product, type_name
from placer.discover import GpuTypeNote, JurisdictionNote, PoolNote
from placer.nodegroups import NODE_GROUPS, eksctl_group, node_group_text, replaced_nodegroup
from placer.retry import Retrier
from placer.spec.kinds import API_VERSION
from providers.aws import FAILED_NODEGROUP_STATES, PERMISSION_CODES, AwsProvider, client_error_parts
from providers.base import Discovered, ProviderError, bounded_pages, dns_label, place_refused
from providers.places import aws_jurisdiction, aws_location

T = TypeVar("T")
EKS_NODEGROUP_TAG = "eks:nodegroup-name"  # on the Auto Scaling group of an EKS managed node group
PAGE = 100  # items a listing page asks for: the most DescribeAutoScalingGroups and EKS's lists give (ASGs default to 50)

# Approximate on-demand list prices, USD per instance-hour, Linux, us-east-1, mid-2025. Other regions,
# spot, reservations and savings plans differ: discovery says so and the operator reviews them.
APPROX_ON_DEMAND_USD_PER_HOUR: dict[str, float] = {
    "p5.48xlarge": 55.04, "p4de.24xlarge": 27.45, "p4d.24xlarge": 21.96,
    "g6e.xlarge": 1.861, "g6e.2xlarge": 2.242, "g6e.4xlarge": 3.004, "g6e.8xlarge": 4.529,
    "g6e.12xlarge": 10.493, "g6e.16xlarge": 7.577, "g6e.24xlarge": 15.066, "g6e.48xlarge": 30.131,
    "g6.xlarge": 0.805, "g6.2xlarge": 0.978, "g6.4xlarge": 1.323, "g6.8xlarge": 2.014,
    "g6.12xlarge": 4.602, "g6.16xlarge": 3.397, "g6.24xlarge": 6.675, "g6.48xlarge": 13.350,
    "g5.xlarge": 1.006, "g5.2xlarge": 1.212, "g5.4xlarge": 1.624, "g5.8xlarge": 2.448,
    "g5.12xlarge": 5.672, "g5.16xlarge": 4.096, "g5.24xlarge": 8.144, "g5.48xlarge": 16.288,
    "g4dn.xlarge": 0.526, "g4dn.2xlarge": 0.752, "g4dn.4xlarge": 1.204, "g4dn.8xlarge": 2.176,
    "g4dn.12xlarge": 3.912, "g4dn.16xlarge": 4.352, "g4dn.metal": 7.824,
}


@dataclass(frozen=True)
class GpuShape:
    """The GPUs of one instance type, as EC2 describes them."""

    product: str
    manufacturer: str
    memory_gib: float
    count: int


def gpu_type_name(shape: GpuShape) -> str:
    return type_name(shape.product, shape.memory_gib)


jurisdiction = aws_jurisdiction  # as every discovery names the region (Kubernetes of an EKS cluster too)
location_name = aws_location


def _created(group: dict[str, Any]) -> float:
    """When an EKS node group was made (0 where not said)."""
    created = group.get("createdAt")
    return created.timestamp() if isinstance(created, datetime) else 0.0


def _newness(group: dict[str, Any], name: str) -> tuple[float, bool]:
    """How new one of a pool's EKS node groups is: by createdAt, and with it alike the replacement
    (``name``: the fleet's node group) before the fleet's own."""
    return _created(group), group["nodegroupName"] != name


def pool_nodegroup(members: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """Of the EKS node groups of one pool, as DescribeNodegroup answers them (``name``, the fleet's, and its
    replacement ``name-alt`` mid-swap, ``_nodegroup_pools``), the one the pool is: the newest by createdAt
    of those that serve nodes or will (CREATING, ACTIVE, UPDATING, DEGRADED: a degraded group has a health
    issue and still runs its nodes, an updating one too); a group CREATE_FAILED (no nodes), DELETING (going)
    or DELETE_FAILED (going, stuck) loses to any that is not, however new; with createdAt alike, the
    replacement. Where every one of them has failed the one returned has too: the pool is skipped."""
    return max(members, key=lambda g: (g.get("status") not in FAILED_NODEGROUP_STATES, *_newness(g, name)))


def _self_managed(region: str, group: dict[str, Any]) -> tuple[Any, ...] | None:
    """The self-managed node group (``placer.nodegroups.eksctl_group``) an Auto Scaling group's tags name,
    as eksctl tags it: ``alpha.eksctl.io/nodegroup-name``, its cluster by ``alpha.eksctl.io/cluster-name``,
    eksctl's older ``eksctl.cluster.k8s.io/v1alpha1/cluster-name`` or ``kubernetes.io/cluster/NAME``."""
    tags = {str(t.get("Key")): t.get("Value") for t in group.get("Tags", []) if t.get("Key")}
    owner = next((key.removeprefix("kubernetes.io/cluster/") for key, value in sorted(tags.items())
                  if key.startswith("kubernetes.io/cluster/") and value in ("owned", "shared")), None)
    return eksctl_group(region, tags, tags.get("eksctl.cluster.k8s.io/v1alpha1/cluster-name") or owner)


def _batches(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]



def discover(provider: AwsProvider, regions: list[str], retry: Retrier | None = None) -> Discovered:
    """Pool documents for every GPU Auto Scaling group and EKS node group, and a Location per region;
    ``retry`` tries each call again after a retryable failure (without it each is made once)."""
    documents: list[dict[str, Any]] = []
    notes: list[str] = []
    scan = _RegionScan(provider, notes, retry or Retrier())
    for region in regions:
        try:
            pools = scan.pools(region)
        except ProviderError as exc:
            if (told := place_refused(exc, "--region", region, regions, "regions")) is exc:
                raise
            raise told from exc
        if not pools:
            notes.append(f"aws {region}: no GPU Auto Scaling groups or EKS node groups found")
            continue
        location: dict[str, Any] = {"environment": "cloud"}
        guess = jurisdiction(region)
        if guess:
            location["jurisdiction"] = guess
        else:
            notes.append(JurisdictionNote(f"Location {{names}}: set spec.jurisdiction (could not guess it "
                                          f"from region {region})", [location_name(region)]))
        documents.append({"apiVersion": API_VERSION, "kind": "Location",
                          "metadata": {"name": location_name(region)}, "spec": location})
        documents.extend(pools)
    documents[:0] = scan.gpu_types.values()
    if scan.priced:  # of the pools a merge adds only: it never overwrites a fleet's price
        notes.append(PoolNote("usdPerGpuHour of {names} comes from a small built-in table of approximate "
                              "us-east-1 on-demand list prices; other regions, spot and discounts differ: review them",
                              scan.priced))
    return Discovered(documents=documents, notes=notes, unread=scan.unread)


class _RegionScan:
    """One discovery run: reads groups, launch templates and instance types, and builds Pool documents."""

    def __init__(self, provider: AwsProvider, notes: list[str], retry: Retrier) -> None:
        self.provider = provider
        self.retry = retry
        self.notes = notes
        self.gpu_types: dict[str, dict[str, Any]] = {}
        self.names: set[str] = set()
        self.priced: list[str] = []  # the Pools priced from the built-in table
        self.unread: list[str] = []  # Discovered.unread
        self._shapes: dict[tuple[str, str], GpuShape | None] = {}
        self._reads: dict[tuple[str, ...], tuple[Any, str]] = {}  # _read_once: key -> (answer, the group it was read for)

    def _call(self, region: str, what: str, call: Callable[[], T]) -> T:
        """``call`` through the provider (its error messages), tried again while it fails in a way a
        retry may pass (throttling, a 5xx, a timeout): one throttled answer stopped the whole run."""
        return self.retry(functools.partial(self.provider._call, f"aws/{region}", what, call, prefix=False))

    def pools(self, region: str) -> list[dict[str, Any]]:
        out = [doc for group in self._asgs(region) if (doc := self._asg_pool(region, group)) is not None]
        return out + self._nodegroup_pools(region, self._nodegroups(region))

    # ------------------------------------------------------------ Auto Scaling groups

    def _paged(self, region: str, what: str, call: Callable[..., dict[str, Any]], items: str, token: str,
               **kwargs: Any) -> list[Any]:
        """Every ``items`` of a listing, page after page by its ``token`` (NextToken, nextToken), each
        page tried again alone after a retryable failure: a throttled page 3 listed again from page 1,
        and an account throttled page after page never got a long listing through."""
        def pages() -> Iterable[dict[str, Any]]:
            after = ""
            while True:
                page = self._call(region, what, functools.partial(call, **kwargs, **({token: after} if after else {})))
                yield page
                after = str(page.get(token) or "")
                if not after:
                    return

        return [item for page in bounded_pages(pages(), f"aws {region}: {what}", lambda p: str(p.get(token) or ""))
                for item in page.get(items, [])]

    def _asgs(self, region: str) -> list[dict[str, Any]]:
        client = self.provider._client("autoscaling", region)
        return self._paged(region, f"list the Auto Scaling groups in {region}", client.describe_auto_scaling_groups,
                           "AutoScalingGroups", "NextToken", MaxRecords=PAGE)

    def _asg_pool(self, region: str, group: dict[str, Any]) -> dict[str, Any] | None:
        name = group["AutoScalingGroupName"]
        if any(t.get("Key") == EKS_NODEGROUP_TAG for t in group.get("Tags", [])):
            return None  # the ASG of an EKS managed node group: sized through the node group
        if group.get("Status"):  # only set while the group is being deleted
            self.notes.append(f"aws {region}: Auto Scaling group '{name}' skipped: {group['Status']}")
            return None
        where = f"Auto Scaling group '{name}' in {region}"
        found = self._asg_instance_types(region, group, where)
        if found is None:
            return None  # its launch template or configuration may not be read: skipped (a note says why)
        types, spot = found
        if not types:
            self.notes.append(f"aws {region}: Auto Scaling group '{name}' skipped: cannot tell its instance type")
            return None
        gpu = self._pool_gpu(region, types, where)
        if gpu is None:
            return None
        target = {"region": region, "autoScalingGroupName": name}
        doc = self._pool_doc(region, name, types[0], gpu, int(group["MinSize"]), int(group["MaxSize"]),
                             spot, target, f"aws:{region}:autoscaling/{name}")
        self_managed = _self_managed(region, group)
        if self_managed is not None:  # what Kubernetes discovery calls its nodes: a merge of theirs keeps one pool
            doc["metadata"]["annotations"][NODE_GROUPS] = node_group_text(self_managed)
        return doc

    def _asg_instance_types(self, region: str, group: dict[str, Any], where: str) -> tuple[list[str], bool] | None:
        """(instance types, spot) of the group ``where`` names; None where AWS refuses the read of its
        launch template or configuration (skipped with a note, unread)."""
        name = group["AutoScalingGroupName"]
        mixed = group.get("MixedInstancesPolicy")
        if mixed:
            template = mixed.get("LaunchTemplate", {}) or {}
            data = self._template_data(region, template.get("LaunchTemplateSpecification", {}) or {}, where)
            if data is None:
                return None
            overrides = template.get("Overrides", []) or []
            types = [o["InstanceType"] for o in overrides if o.get("InstanceType")]
            if any("InstanceRequirements" in o for o in overrides):
                self.notes.append(f"aws {region}: Auto Scaling group '{name}' chooses instance types by attributes; "
                                  "only its listed types are considered")
            types = types or ([data["InstanceType"]] if data.get("InstanceType") else [])
            dist = mixed.get("InstancesDistribution", {}) or {}
            above = int(dist.get("OnDemandPercentageAboveBaseCapacity", 100))
            spot = above < 100 or self._template_spot(data)
            if spot and (above > 0 or int(dist.get("OnDemandBaseCapacity", 0)) > 0):
                self.notes.append(f"aws {region}: Auto Scaling group '{name}' mixes on-demand and spot capacity; "
                                  "its pool is marked spot: true because part of it can be reclaimed")
            return types, spot
        if group.get("LaunchTemplate"):
            data = self._template_data(region, group["LaunchTemplate"], where)
            if data is None:
                return None
            return ([data["InstanceType"]] if data.get("InstanceType") else self._running_types(group),
                    self._template_spot(data))
        if group.get("LaunchConfigurationName"):
            lc_name = group["LaunchConfigurationName"]
            read = self._read_once(
                ("configuration", region, lc_name), region, f"read launch configuration '{lc_name}' in {region}",
                lambda: self.provider._client("autoscaling", region).describe_launch_configurations(
                    LaunchConfigurationNames=[lc_name]), where, "autoscaling:DescribeLaunchConfigurations")
            if read is None:
                return None
            configs = read.get("LaunchConfigurations", [])
            if configs:
                return [configs[0]["InstanceType"]], bool(configs[0].get("SpotPrice"))
        return self._running_types(group), False

    @staticmethod
    def _running_types(group: dict[str, Any]) -> list[str]:
        return sorted({i["InstanceType"] for i in group.get("Instances", []) if i.get("InstanceType")})

    @staticmethod
    def _template_spot(data: dict[str, Any]) -> bool:
        return (data.get("InstanceMarketOptions", {}) or {}).get("MarketType") == "spot"

    def _template_data(self, region: str, spec: dict[str, Any], where: str) -> dict[str, Any] | None:
        """LaunchTemplateData of an ASG's (LaunchTemplateId|LaunchTemplateName, Version) or an EKS one's
        (id|name, version); None where AWS refuses its read, the group ``where`` names then skipped."""
        ident = spec.get("LaunchTemplateId") or spec.get("id")
        name = spec.get("LaunchTemplateName") or spec.get("name")
        version = str(spec.get("Version") or spec.get("version") or "$Default")
        kwargs: dict[str, Any] = {"Versions": [version]}
        if ident:
            kwargs["LaunchTemplateId"] = ident
        elif name:
            kwargs["LaunchTemplateName"] = name
        else:
            return {}
        versions = self._read_once(
            ("template", region, str(ident or name), version), region,
            f"read launch template {ident or name} version {version} in {region}",
            lambda: self.provider._client("ec2", region).describe_launch_template_versions(**kwargs),
            where, "ec2:DescribeLaunchTemplateVersions")
        if versions is None:
            return None
        found = versions.get("LaunchTemplateVersions", [])
        return dict(found[0].get("LaunchTemplateData", {}) or {}) if found else {}

    # ------------------------------------------------------------ EKS managed node groups

    def _nodegroups(self, region: str) -> list[dict[str, Any]]:
        """Every EKS node group of the region that can be read; a cluster or node group refused
        alone is left out alone, with a note, as unread (one refusal dropped every cluster's)."""
        client = self.provider._client("eks", region)

        def nodegroups(cluster: str, what: str) -> list[str]:
            return self._paged(region, what, client.list_nodegroups, "nodegroups", "nextToken", clusterName=cluster,
                               maxResults=PAGE)

        try:
            names = self._paged(region, f"list the EKS clusters in {region}", client.list_clusters, "clusters",
                                "nextToken", maxResults=PAGE)
        except ProviderError as exc:
            if exc.retryable:
                raise
            # unread, said on stderr: a comment in the printed YAML alone, exit 0, left a fleet without
            # the region's EKS GPUs (an account without EKS answers an empty list, not a refusal)
            self.notes.append(f"aws {region}: EKS node groups not discovered: {exc}; allow eks:ListClusters, "
                              "eks:ListNodegroups and eks:DescribeNodegroup to discover them")
            self.unread.append(f"the EKS node groups in {region}")
            return []
        groups = []
        for cluster in names:
            listed = f"the node groups of EKS cluster '{cluster}' in {region}"
            for ng in self._readable(region, f"list {listed}", functools.partial(nodegroups, cluster, f"list {listed}"),
                                     listed, paged=True) or []:
                one = f"EKS node group '{ng}' of cluster '{cluster}' in {region}"
                group = self._readable(region, f"describe {one}", functools.partial(
                    client.describe_nodegroup, clusterName=cluster, nodegroupName=ng), one)
                if group is not None:
                    groups.append(group["nodegroup"])
        return groups

    def _readable(self, region: str, what: str, call: Callable[[], T], label: str, *, paged: bool = False) -> T | None:
        """``call``'s answer; None where AWS refuses it for good, the ``label``led thing then skipped
        with a note and unread (a retryable failure stops discovery). ``paged``: ``call`` makes its
        calls through ``_call`` itself, page by page."""
        try:
            return call() if paged else self._call(region, what, call)
        except ProviderError as exc:
            if exc.retryable:
                raise
            self.notes.append(f"aws {region}: {label} skipped: {exc}")
            self.unread.append(label)
            return None

    def _read_once(self, key: tuple[str, ...], region: str, what: str, call: Callable[[], T], where: str,
                   permission: str) -> T | None:
        """``_unless_refused``, made once a run for each ``key`` (a launch template version, a launch
        configuration): groups sharing one made a call each, 1,000 groups of one template 1,000 calls. A
        refusal remembered skips each later group of it too, with a note and unread."""
        if key in self._reads:
            found, first = self._reads[key]
            if found is None:
                self.notes.append(f"aws {region}: {where} skipped: AWS refused to {what}, as for {first} above")
                self.unread.append(where)
            return found  # type: ignore[no-any-return]
        found = self._unless_refused(region, what, call, where, permission)
        self._reads[key] = (found, where)
        return found

    def _unless_refused(self, region: str, what: str, call: Callable[[], T], where: str, permission: str) -> T | None:
        """``call``'s answer; None where AWS refuses it (AccessDenied, UnauthorizedOperation: a policy
        scoped to some templates), the group ``where`` names then skipped with a note naming
        ``permission``, and unread (any other failure, throttling or a bad request, stops discovery;
        one refused template once stopped the whole run, no other group discovered)."""
        try:
            return self._call(region, what, call)
        except ProviderError as exc:
            cause = exc.__cause__
            if not isinstance(cause, ClientError) or client_error_parts(cause)[0] not in PERMISSION_CODES:
                raise
            code, message, _ = client_error_parts(cause)
            self.notes.append(f"aws {region}: {where} skipped: AWS refused to {what} "
                              f"({f'{code}: {message}' if message else code}); "
                              f"allow {permission} on it to discover the group")
            self.unread.append(where)
            return None

    def _nodegroup_pools(self, region: str, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A Pool per EKS node group, a replacement placer makes (``<nodegroup>-alt``: a change of a pool's
        spot replaces its group, EKS cannot change a capacity type in place, and the new one is made
        before the old one goes) with the group it replaces: one pool, under the replaced group's name
        (the fleet's), with a note. Where both are there (mid-replacement) the pool is the newer one's
        (its spot and size range, what the pool is once the old one goes); the old one's are not added
        (its range added to the new one's would double the pool's). ``h100-alt`` was a pool of its own."""
        listed: dict[str, set[str]] = {}
        for group in groups:
            listed.setdefault(group["clusterName"], set()).add(group["nodegroupName"])

        def pool_name(cluster: str, name: str) -> str:
            seen = {name}
            while (base := replaced_nodegroup(name, listed[cluster])) is not None and base not in seen:
                seen.add(name := base)  # h100-alt-alt of a listed h100-alt (named h100-alt in a fleet) is h100's too
                if name not in listed[cluster]:
                    break
            return name

        pairs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for group in groups:
            pairs.setdefault((group["clusterName"], pool_name(group["clusterName"], group["nodegroupName"])),
                             []).append(group)
        out = []
        for (cluster, name), members in pairs.items():
            group = pool_nodegroup(members, name)
            both = " and ".join(repr(g["nodegroupName"]) for g in members)
            if len(members) > 1 and group.get("status") in FAILED_NODEGROUP_STATES:
                # every one has failed or is going: one note names them all (the loser went unsaid)
                states = ", ".join(f"'{g['nodegroupName']}' is {g['status']}" for g in members)
                self.notes.append(f"aws {region}: EKS node groups {both} of cluster '{cluster}' in {region} are "
                                  f"one pool mid-replacement and neither serves it ({states}): skipped; fix the "
                                  "node group (EKS console or its Terraform) and discover again")
                continue
            doc = self._nodegroup_pool(region, group, name)
            if doc is None:
                continue
            out.append(doc)
            if len(members) == 1 and group["nodegroupName"] == name:
                continue
            # a newer group that lost has failed or is going: the pool is the older group's, and the note said
            # "'h100' the newer ... the older group's nodes are going" of the group that stays
            lost = [g for g in members if g is not group and g.get("status") in FAILED_NODEGROUP_STATES
                    and _newness(g, name) > _newness(group, name)]
            which = ", ".join(f"'{g['nodegroupName']}' is {g['status']}" for g in lost)
            what = (f"EKS node group '{group['nodegroupName']}' of cluster '{cluster}' in {region} is the "
                    f"replacement placer makes of node group '{name}'") if len(members) == 1 else \
                (f"EKS node groups {both} of cluster '{cluster}' in {region} are one pool mid-replacement, "
                 + (f"'{group['nodegroupName']}' the one that serves it ({which})" if lost
                    else f"'{group['nodegroupName']}' the newer"))
            spot = "spot" if doc["spec"]["spot"] else "on-demand"
            self.notes.append(
                f"aws {region}: {what} (a change of the pool's spot replaces its node group, EKS cannot change "
                f"a capacity type in place; the new group is made before the old one goes): discovered as one "
                f"pool, {doc['metadata']['name']}, target nodegroup '{name}' (the name the fleet knows; placer "
                f"finds the replacement through its state), its spot and nodes those of "
                f"'{group['nodegroupName']}' ({spot}, min {doc['spec']['nodes']['min']}, max "
                f"{doc['spec']['nodes']['max']})" + ("" if len(members) == 1 else
                                                     f"; the newer {which}: left out" if lost else
                                                     "; the older group's nodes are going and are not added"))
        return out

    def _nodegroup_pool(self, region: str, group: dict[str, Any], pool: str | None = None) -> dict[str, Any] | None:
        """The Pool of an EKS node group; ``pool``: the node group name its target takes (the group a
        replacement ``group`` replaced, ``_nodegroup_pools``), ``group``'s own where None."""
        cluster, name = group["clusterName"], group["nodegroupName"]
        where = f"EKS node group '{name}' of cluster '{cluster}' in {region}"
        if group.get("status") in FAILED_NODEGROUP_STATES:
            self.notes.append(f"aws {region}: {where} skipped: it is {group['status']}")
            return None
        types: list[str] = []
        if group.get("launchTemplate"):
            # An instance type in the launch template wins (AWS then leaves instanceTypes unset).
            data = self._template_data(region, group["launchTemplate"], where)
            if data is None:
                return None
            types = [data["InstanceType"]] if data.get("InstanceType") else []
        types = types or list(group.get("instanceTypes") or [])
        if not types:
            self.notes.append(f"aws {region}: {where} skipped: cannot tell its instance type")
            return None
        gpu = self._pool_gpu(region, types, where)
        if gpu is None:
            return None
        scaling = group.get("scalingConfig", {}) or {}
        target = {"region": region, "eks": {"cluster": cluster, "nodegroup": pool or name}}
        return self._pool_doc(region, f"{cluster}-{pool or name}", types[0], gpu, int(scaling.get("minSize", 0)),
                              int(scaling.get("maxSize", 0)), group.get("capacityType") == "SPOT", target,
                              f"aws:{region}:eks/{cluster}/{name}")

    # ------------------------------------------------------------ GPUs, names, documents

    def _pool_gpu(self, region: str, types: list[str], where: str) -> tuple[str, int] | None:
        """(GPU type name, GPUs per node) of a group's instance types; None where it has no (usable) GPUs."""
        shapes = self._gpu_shapes(region, types)
        if all(s is None for s in shapes.values()):
            return None  # not a GPU group
        kinds = {(self._gpu_type(s), s.count) if s else None for s in shapes.values()}
        if len(kinds) != 1 or None in kinds:
            listed = ", ".join(f"{t}: {f'{s.count}x {s.product}' if s else 'no GPU'}" for t, s in shapes.items())
            self.notes.append(f"aws {region}: {where} skipped: its instance types differ in GPUs ({listed}); "
                              "a pool is homogeneous")
            return None
        return kinds.pop()

    def _gpu_shapes(self, region: str, types: list[str]) -> dict[str, GpuShape | None]:
        missing = sorted({t for t in types if (region, t) not in self._shapes})
        client = self.provider._client("ec2", region)
        for batch in _batches(missing, 100):
            def read(batch: list[str] = batch) -> list[dict[str, Any]] | None:
                try:
                    return list(client.describe_instance_types(InstanceTypes=batch)["InstanceTypes"])
                except ClientError as exc:
                    if client_error_parts(exc)[0] == "InvalidInstanceType":
                        return None  # one unknown type fails the whole batch
                    raise

            found = self._call(region, f"describe instance types {', '.join(batch)} in {region}", read)
            if found is None:
                if len(batch) == 1:
                    self.notes.append(f"aws {region}: instance type {batch[0]} is unknown to EC2 there; skipped")
                    self._shapes[(region, batch[0])] = None
                else:
                    for one in batch:
                        self._gpu_shapes(region, [one])
                continue
            for info in found:
                self._shapes[(region, info["InstanceType"])] = self._shape(region, info)
            for t in batch:
                self._shapes.setdefault((region, t), None)
        return {t: self._shapes[(region, t)] for t in dict.fromkeys(types)}

    def _shape(self, region: str, info: dict[str, Any]) -> GpuShape | None:
        gpus = (info.get("GpuInfo") or {}).get("Gpus") or []
        if not gpus:
            return None
        names = {g.get("Name") for g in gpus}
        if len(names) != 1:
            self.notes.append(f"aws {region}: instance type {info['InstanceType']} mixes GPU models {sorted(names)}; "
                              "skipped")
            return None
        if any(float(g.get("GpuPartitionSize", 1.0)) < 1.0 for g in gpus):
            self.notes.append(f"aws {region}: instance type {info['InstanceType']} has a fraction of a GPU; "
                              "placer pools need whole GPUs, skipped")
            return None
        first = gpus[0]
        return GpuShape(product=str(first.get("Name")), manufacturer=str(first.get("Manufacturer", "")),
                        memory_gib=float(first.get("MemoryInfo", {}).get("SizeInMiB", 0)) / 1024.0,
                        count=sum(int(g.get("Count", 0)) for g in gpus))

    def _gpu_type(self, shape: GpuShape) -> str:
        """A catalog name when the product and memory match one; otherwise a GPUType document is added."""
        known = match_product(shape.product, shape.memory_gib or None)  # None where the memory is off
        if known:
            return known.name
        name = gpu_type_name(shape)
        if name not in self.gpu_types:
            spec: dict[str, Any] = {"memoryGiB": round(shape.memory_gib, 1)}
            if shape.manufacturer:
                spec["vendor"] = shape.manufacturer.lower()
            self.gpu_types[name] = {"apiVersion": API_VERSION, "kind": "GPUType", "metadata": {"name": name},
                                    "spec": spec}
            self.notes.append(GpuTypeNote(f"GPUType {{names}}: AWS GPU '{shape.product}' is not in the built-in "
                                          "catalog; added it (check memoryGiB, and give models a throughput for it)",
                                          [name]))
        return name

    def _unique_name(self, base: str, region: str) -> str:
        name = dns_label(base, "pool")
        if name in self.names:
            name = dns_label(f"{base}-{region}", "pool")
        stem, n = name, 2
        while name in self.names:
            name = f"{stem[:60].rstrip('-')}-{n}"
            n += 1
        self.names.add(name)
        return name

    def _pool_doc(self, region: str, base_name: str, instance_type: str, gpu: tuple[str, int], low: int,
                  high: int, spot: bool, target: dict[str, Any], source: str) -> dict[str, Any]:
        name = self._unique_name(base_name, region)
        gpu_type, per_node = gpu
        hourly = APPROX_ON_DEMAND_USD_PER_HOUR.get(instance_type)
        if hourly is None:
            price = 0.0
            self.notes.append(PoolNote(f"Pool {{names}}: usdPerGpuHour is 0: no built-in price for {instance_type}; "
                                       "fill it in", [name]))
        else:
            price = round(hourly / per_node, 4)
            self.priced.append(name)
        return {
            "apiVersion": API_VERSION,
            "kind": "Pool",
            "metadata": {"name": name,
                         "annotations": {"placer.dev/discovered-from": source,
                                         "placer.dev/instance-type": instance_type}},
            "spec": {
                "location": location_name(region),
                "provider": "aws",
                "gpu": {"type": gpu_type, "perNode": per_node},
                "nodes": {"min": low, "max": high},
                "usdPerGpuHour": price,
                "spot": spot,
                "target": {"aws": target},
            },
        }
