"""Fleet: the validated, resolved, indexed input that the rest of placer reads.

``load_fleet(path)`` reads a fleet directory, validates every document (shape) and the
references between them (semantics), and returns a Fleet or raises FleetError carrying
every diagnostic. Nothing here performs I/O after reading the files.
"""

from __future__ import annotations

import gc
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from placer.catalog import BUILTIN_GPU_TYPES, GpuType
from placer.nodegroups import (
    EKS_NODEGROUP_LABEL,
    NODE_GROUPS,
    POOL_LABEL,
    alternate_nodegroup,
    group_words,
    node_groups,
    same_group,
)
from placer.planfile import group_text, tree_place
from placer.spec import Diagnostic, Document, FleetError, load_document, read_fleet_dir
from placer.spec.diagnostics import sort_diagnostics
from placer.spec.kinds import (
    MODEL_SELECTOR_FIELDS,
    POOL_SELECTOR_FIELDS,
    LocationSpec,
    ModelSpec,
    PolicySpec,
    PoolSpec,
    Selector,
    SettingsSpec,
    SolverSettings,
)
from placer.spec.loader import kind_and_name, suggest
from placer.spec.rules import Rule
from placer.topology import LinkInfo, Topology


@dataclass(frozen=True)
class Location:
    name: str
    labels: Mapping[str, str]
    spec: LocationSpec

    @property
    def environment(self) -> str:
        return self.spec.environment

    @property
    def jurisdiction(self) -> str | None:
        return self.spec.jurisdiction


@dataclass(frozen=True)
class Pool:
    name: str
    labels: Mapping[str, str]
    spec: PoolSpec
    location: Location
    gpu: GpuType

    @property
    def provider(self) -> str:
        return self.spec.provider

    @property
    def per_node(self) -> int:
        return self.spec.gpu.per_node

    @property
    def elastic(self) -> bool:
        return self.spec.nodes.elastic

    @property
    def min_nodes(self) -> int:
        return self.spec.nodes.lower

    @property
    def max_nodes(self) -> int:
        return self.spec.nodes.upper

    @property
    def max_gpus(self) -> int:
        return self.max_nodes * self.per_node

    @property
    def usd_per_gpu_hour(self) -> float:
        return self.spec.usd_per_gpu_hour

    @property
    def spot(self) -> bool:
        return self.spec.spot

    @property
    def failure_domain(self) -> str:
        return self.spec.failure_domain or self.location.name

    def gpus_per_replica(self, gpus: int) -> int:
        """c[m,p]: GPUs one replica of ``gpus`` GPUs counts in this pool, stranded ones included."""
        per_node = self.per_node
        fit = per_node // gpus
        if fit == 0:
            return 0
        return -(-per_node // fit)


@dataclass(frozen=True)
class Model:
    name: str
    labels: Mapping[str, str]
    spec: ModelSpec

    @property
    def workload(self) -> str:
        return self.spec.workload

    @property
    def inference(self) -> bool:
        return self.spec.workload == "inference"

    @property
    def total_demand(self) -> float:
        return sum(d.rate for d in self.spec.demand)

    @property
    def priority_factor(self) -> float:
        p = self.spec.priority
        return 1.0 + p / 100.0 if p > 0 else 1.0


@dataclass(frozen=True)
class Policy:
    name: str
    labels: Mapping[str, str]
    spec: PolicySpec

    @property
    def rule(self) -> Rule:
        return self.spec.rule

    @property
    def required(self) -> bool:
        return self.spec.enforcement == "required"

    @property
    def penalty(self) -> float:
        return float(self.spec.penalty_usd_per_hour or 0.0)


@dataclass(frozen=True)
class Fleet:
    locations: Mapping[str, Location]
    gpu_types: Mapping[str, GpuType]
    pools: Mapping[str, Pool]
    models: Mapping[str, Model]
    policies: tuple[Policy, ...]
    settings: SettingsSpec
    topology: Topology
    documents: tuple[Document, ...] = field(default=(), compare=False, repr=False)
    warnings: tuple[Diagnostic, ...] = field(default=(), compare=False, repr=False)

    @cached_property
    def digest(self) -> str:
        """sha256 of the fleet's documents as written (kind, name, labels, spec): independent of file
        layout, document and key order and comments, and of how a placer reads them. It was taken of
        the typed specs (``legacy_digest``), defaults and this placer's reading of each value
        included, so an upgrade alone changed it (a selector's ``spot: true``, read as ``[true]``
        since ae5503f): ``apply --fleet`` refused the plan a reviewer saw as "made from another
        version of" a fleet no one had touched, and the GitOps pipeline planned afresh."""
        docs = sorted(
            (
                {
                    "kind": d.kind,
                    "name": d.name,
                    "labels": dict(sorted(d.labels.items())),
                    "spec": _as_written(d.raw.data.get("spec") if isinstance(d.raw.data, dict) else None),
                }
                for d in self.documents
            ),
            key=lambda d: (d["kind"], d["name"]),
        )
        blob = json.dumps(docs, sort_keys=True, separators=(",", ":"), default=str).encode()
        return "sha256:" + hashlib.sha256(blob).hexdigest()

    @cached_property
    def legacy_digest(self) -> str:
        """The digest placers before ``digest``'s took of this fleet (of its typed specs): a plan one
        of them saved is still known as made from it."""
        docs = sorted(
            (
                {
                    "kind": d.kind,
                    "name": d.name,
                    "labels": dict(sorted(d.labels.items())),
                    "spec": _as_typed_before(d.kind, d.spec.model_dump(mode="json", by_alias=True, exclude_none=True)),
                }
                for d in self.documents
            ),
            key=lambda d: (d["kind"], d["name"]),
        )
        blob = json.dumps(docs, sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(blob).hexdigest()

    def made_from(self, digest: str) -> bool:
        """Whether a plan's ``fleetDigest`` is this fleet's, as this placer or an older one took it."""
        return digest in (self.digest, self.legacy_digest)

    def document(self, kind: str, name: str) -> Document | None:
        return self._documents_by_name.get((kind, name))

    @cached_property
    def _documents_by_name(self) -> dict[tuple[str, str], Document]:
        """Each document by kind and name, the first where two share them: validate asks once per model
        (``candidates.eligibility_warnings``), and scanning every document each time took 69 s of a
        bench XL validate (10,000 models)."""
        found: dict[tuple[str, str], Document] = {}
        for d in self.documents:
            found.setdefault((d.kind, d.name), d)
        return found

    @cached_property
    def _selected(self) -> dict[tuple[str, int], tuple[Selector, list[Any]]]:
        """What each selector (by identity, held so that no other takes its id) selects: a policy's
        check asks once per placement it checks (a plan's reasons check hundreds at L, and scanning
        2,000 models' labels each time took most of a second)."""
        return {}

    def _select(self, kind: str, selector: Selector, scan: Callable[[], list[Any]]) -> list[Any]:
        hit = self._selected.get((kind, id(selector)))
        if hit is None or hit[0] is not selector:
            hit = self._selected[(kind, id(selector))] = (selector, scan())
        return list(hit[1])

    def pools_of(self, selector: Selector) -> list[Pool]:
        return self._select("pools", selector, lambda: [p for p in self.pools.values() if pool_matches(selector, p)])

    def models_of(self, selector: Selector) -> list[Model]:
        return self._select("models", selector,
                            lambda: [m for m in self.models.values() if model_matches(selector, m)])


# ---------------------------------------------------------------- selectors


def _labels_match(want: Mapping[str, str] | None, have: Mapping[str, str]) -> bool:
    return want is None or all(have.get(k) == v for k, v in want.items())


def model_matches(selector: Selector, model: Model) -> bool:
    return (
        (selector.names is None or model.name in selector.names)
        and _labels_match(selector.labels, model.labels)
        and (selector.workload is None or model.workload in selector.workload)
    )


def pool_matches(selector: Selector, pool: Pool) -> bool:
    return (
        (selector.names is None or pool.name in selector.names)
        and _labels_match(selector.labels, pool.labels)
        and (selector.environment is None or pool.location.environment in selector.environment)
        and (selector.provider is None or pool.provider in selector.provider)
        and (selector.jurisdiction is None or pool.location.jurisdiction in selector.jurisdiction)
        and (selector.location is None or pool.location.name in selector.location)
        and (selector.gpu_type is None or pool.gpu.name in selector.gpu_type)
        and (selector.spot is None or pool.spot in selector.spot)
    )


# ---------------------------------------------------------------- building


def load_fleet(path: str | Path, progress: Callable[[str], None] | None = None,
               check: Callable[[Sequence[Document]], Iterable[Diagnostic]] | None = None) -> Fleet:
    """Read, validate and resolve a fleet directory; raise FleetError with every problem.
    ``progress``: told each step as it begins; ``check``: more problems of the documents that have
    their shape (the CLI's, with what only a provider's SDK knows, such as AWS' regions)."""
    with _collector_paused():
        return _load_fleet(path, progress or (lambda _msg: None), check)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off while a fleet is read (and on again after, as it was): the
    documents are hundreds of thousands of new objects that live on, no garbage, and the collector
    walked all of them again and again as they grew (a third of reading 156,000 Location documents)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _load_fleet(path: str | Path, say: Callable[[str], None],
                check: Callable[[Sequence[Document]], Iterable[Diagnostic]] | None = None) -> Fleet:
    raws, diags = read_fleet_dir(path, say)
    say(f"checking {len(raws):,} fleet documents")
    docs: list[Document] = []
    invalid: list[tuple[str, str]] = []
    for raw in raws:
        doc, doc_diags = load_document(raw)
        diags.extend(doc_diags)
        if doc is not None:
            docs.append(doc)
        elif doc_diags and (named := kind_and_name(raw.data)) is not None:
            invalid.append(named)
    if check is not None:
        diags.extend(check(docs))
    say("resolving the fleet's references")
    fleet, more = build_fleet(docs, invalid)
    diags.extend(more)
    if fleet is None or any(d.severity == "error" for d in diags):
        raise FleetError(diags)
    return Fleet(
        locations=fleet.locations,
        gpu_types=fleet.gpu_types,
        pools=fleet.pools,
        models=fleet.models,
        policies=fleet.policies,
        settings=fleet.settings,
        topology=fleet.topology,
        documents=fleet.documents,
        warnings=tuple(sort_diagnostics(d for d in diags if d.severity == "warning")),
    )


def _unique(docs: Iterable[Document], diags: list[Diagnostic]) -> dict[str, dict[str, Document]]:
    by_kind: dict[str, dict[str, Document]] = {}
    for doc in docs:
        seen = by_kind.setdefault(doc.kind, {})
        if doc.name in seen:
            first = seen[doc.name]
            diags.append(
                doc.diag("metadata.name", f"duplicate {doc.kind} name; first defined at "
                         f"{first.path}:{first.line_of('metadata', 'name')}", "metadata", "name")
            )
            continue
        seen[doc.name] = doc
    return by_kind


def build_fleet(docs: list[Document], invalid: Iterable[tuple[str, str]] = ()
                ) -> tuple[Fleet | None, list[Diagnostic]]:
    """Resolve references between typed documents (layer 2 of validation: semantics).

    ``invalid`` is the (kind, name) of each document that failed its shape: it exists, so a
    reference to it is no error of its own (its error is reported where it is), only unresolved.
    """
    diags: list[Diagnostic] = []
    by_kind = _unique(docs, diags)
    broken: dict[str, set[str]] = {}
    for kind, name in invalid:
        broken.setdefault(kind, set()).add(name)

    settings_docs = [d for d in docs if d.kind == "Settings"]
    for extra in settings_docs[1:]:
        first = settings_docs[0]
        diags.append(extra.diag("kind", f"at most one Settings document per fleet; first at {first.path}:{first.line}"))
    settings = settings_docs[0].spec if settings_docs else SettingsSpec()

    locations = {n: Location(n, d.labels, d.spec) for n, d in by_kind.get("Location", {}).items()}
    gpu_types = dict(BUILTIN_GPU_TYPES)
    for n, d in by_kind.get("GPUType", {}).items():
        gpu_types[n] = GpuType(n, d.spec.memory_gi_b, d.spec.vendor, d.spec.family)

    def need_location(doc: Document, name: str, field: str, *loc: str | int) -> bool:
        if name in locations:
            return True
        if name not in broken.get("Location", ()):
            diags.append(doc.diag(field, f"unknown location {name!r}{suggest(name, locations)}", *loc))
        return False

    def need_gpu(doc: Document, name: str, field: str, *loc: str | int) -> bool:
        if name in gpu_types:
            return True
        if name not in broken.get("GPUType", ()):
            diags.append(doc.diag(field, f"unknown GPU type {name!r}{suggest(name, gpu_types)}", *loc))
        return False

    links: list[LinkInfo] = []
    seen_pairs: dict[frozenset[str], Document] = {}
    for doc in by_kind.get("Link", {}).values():
        a, b = doc.spec.between
        ok = need_location(doc, a, "spec.between[0]", "spec", "between", 0)
        ok = need_location(doc, b, "spec.between[1]", "spec", "between", 1) and ok
        pair = frozenset((a, b))
        if pair in seen_pairs:
            first = seen_pairs[pair]
            diags.append(doc.diag("spec.between", f"a second link between {a} and {b}; first is Link/{first.name}",
                                  "spec", "between"))
            continue
        seen_pairs[pair] = doc
        if ok:
            links.append(LinkInfo(a, b, doc.spec.latency_ms, doc.spec.egress_usd_per_gb))

    pools: dict[str, Pool] = {}
    for name, doc in by_kind.get("Pool", {}).items():
        spec: PoolSpec = doc.spec
        ok = need_location(doc, spec.location, "spec.location", "spec", "location")
        ok = need_gpu(doc, spec.gpu.type, "spec.gpu.type", "spec", "gpu", "type") and ok
        if spec.provider == "aws" and spec.target.aws is None:
            diags.append(doc.diag("spec.target.aws", "an aws pool needs target.aws {region, autoScalingGroupName "
                                  "or eks {cluster, nodegroup}}", "spec", "target"))
        if spec.provider == "gcp" and spec.target.gcp is None:
            diags.append(doc.diag("spec.target.gcp", "a gcp pool needs target.gcp {project, zone or region, "
                                  "instanceGroupManager}", "spec", "target"))
        for other in ("aws", "gcp"):  # another provider's group: placer never sizes it, and said nothing
            if spec.provider != other and getattr(spec.target, other) is not None:
                diags.append(doc.diag(f"spec.target.{other}", f"ignored: the pool's provider is {spec.provider}, so "
                                      f"placer never sizes this {other} group; set provider: {other} for placer to "
                                      f"size it, or remove target.{other}", "spec", "target", other, severity="warning"))
        eks = spec.target.aws.eks if spec.target.aws is not None else None
        kube = spec.target.kubernetes
        if settings.apply.mode == "gitops" and spec.provider == "aws" and eks is not None and kube is not None \
                and EKS_NODEGROUP_LABEL in kube.node_selector:
            # the replacement a spot change makes (diff.sized_target) is another node group name
            diags.append(doc.diag(
                "spec.target.kubernetes.nodeSelector",
                f"{EKS_NODEGROUP_LABEL}: {kube.node_selector[EKS_NODEGROUP_LABEL]} does not follow the pool's node "
                "group when a change of its spot replaces it (EKS cannot change a node group's capacity type in "
                f"place: placer makes the new group, {alternate_nodegroup(eks.nodegroup)} or {eks.nodegroup} in turn, "
                "before the old one goes), so its pods would stay Pending once the old nodes are gone; select "
                f"{POOL_LABEL}: {name} instead, which placer's Terraform module puts on the nodes of both",
                "spec", "target", "kubernetes", "nodeSelector", severity="warning"))
        if spec.provider == "aws" and eks is not None and spec.nodes.elastic and (spec.nodes.max or 0) < 1:
            # AWS refuses a node group whose maximum is 0 (terraform plan of the aws module failed)
            diags.append(doc.diag("spec.nodes.max", "an EKS node group's maximum size is at least 1 (AWS refuses 0); "
                                  "give nodes.max >= 1, or remove the pool", "spec", "nodes", "max"))
        if spec.provider in ("static", "kubernetes") and spec.nodes.elastic:
            diags.append(doc.diag("spec.nodes", f"a {spec.provider} pool has fixed capacity: placer cannot add "
                                  "nodes to it; give nodes.count", "spec", "nodes"))
        if ok:
            pools[name] = Pool(name, doc.labels, spec, locations[spec.location], gpu_types[spec.gpu.type])

    _shared_groups(by_kind.get("Pool", {}), diags)
    # the largest node of every pool written (one whose location or GPU type is wrong too), and none
    # when a pool failed its shape: the replica may fit the node it would have had
    pool_docs = by_kind.get("Pool", {}).values()
    max_per_node = max((d.spec.gpu.per_node for d in pool_docs), default=0)
    models: dict[str, Model] = {}
    for name, doc in by_kind.get("Model", {}).items():
        before = len(diags)
        _check_model(doc, doc.spec, need_location, need_gpu, max_per_node,
                     bool(pool_docs) and "Pool" not in broken, diags)
        if not any(d.severity == "error" for d in diags[before:]):
            models[name] = Model(name, doc.labels, doc.spec)

    for (short, wide), (long, narrow), name in _deployment_clashes(models, pools):
        diags.append(by_kind["Model"][long].diag(
            "metadata.name", f"model {long} on pool {narrow} and model {short} on pool {wide} would both be "
            f"Deployment {name} in one context (placer names a Deployment <model>-<pool>, and writes one file per name "
            "in a context's folder), and one would overwrite the other; rename a model or a pool", "metadata", "name"))

    policies: list[Policy] = []
    for name, doc in by_kind.get("Policy", {}).items():
        before = len(diags)
        _check_policy(doc, doc.spec, locations, gpu_types, by_kind, broken, diags)
        if not any(d.severity == "error" for d in diags[before:]):
            policies.append(Policy(name, doc.labels, doc.spec))
    if not broken and not any(d.severity == "error" for d in diags):  # else a model or pool left out matched
        for policy in policies:
            _selects_nothing(by_kind["Policy"][policy.name], policy.spec, models, pools, diags)

    topology = Topology({n: loc.spec.local_latency_ms for n, loc in locations.items()}, links)
    fleet = Fleet(
        locations=locations,
        gpu_types=gpu_types,
        pools=pools,
        models=models,
        policies=tuple(policies),
        settings=settings,
        topology=topology,
        documents=tuple(docs),
    )
    return fleet, diags


def _deployment_clashes(models: Mapping[str, Model], pools: Mapping[str, Pool]
                        ) -> list[tuple[tuple[str, str], tuple[str, str], str]]:
    """Pairs (model, pool) whose Deployments, named ``<model>-<pool>``, would have one name in one
    context: ``chat`` on ``eu-h100`` and ``chat-eu`` on ``h100``. In two namespaces they would be two
    objects, but the GitOps tree has one file per name in a context's folder, and one was lost. The longer model
    is the shorter, a hyphen and the start of the other pool's name, so only models that extend
    another's name are looked at (none at bench XL), not every pair."""
    rests: dict[str, list[str]] = {}  # a pool name's start before one of its hyphens -> the rest
    for pool in pools:
        for i, ch in enumerate(pool):
            if ch == "-":
                rests.setdefault(pool[:i], []).append(pool[i + 1:])

    def where(pool: Pool) -> str:  # the context's folder (``planfile.tree_place``)
        k8s = pool.spec.target.kubernetes
        return tree_place({"kubernetes": {"context": k8s.context if k8s is not None else None}})[0]

    out = []
    for long in models:
        for i, ch in enumerate(long):
            if ch != "-" or long[:i] not in models:
                continue
            start = long[i + 1:]
            for narrow in rests.get(start, []):
                wide = f"{start}-{narrow}"
                if narrow in pools and where(pools[wide]) == where(pools[narrow]):
                    out.append(((long[:i], wide), (long, narrow), f"{long}-{narrow}"))
    return out


def _check_model(doc: Document, spec: ModelSpec, need_location: Any, need_gpu: Any, max_per_node: int,
                 have_pools: bool, diags: list[Diagnostic]) -> None:
    if spec.workload == "inference":
        if spec.replicas is not None:
            diags.append(doc.diag("spec.replicas", "replicas is for training and batch models; inference models "
                                  "are sized by demand (use minReplicas / maxReplicas)", "spec", "replicas"))
        if spec.gang is not None:
            diags.append(doc.diag("spec.gang", "gang applies to training and batch models only", "spec", "gang"))
        if not spec.throughput:
            diags.append(doc.diag("spec.throughput", "an inference model needs throughput {GPUType: rate per "
                                  "replica}; pools of unlisted types cannot serve it", "spec"))
        if spec.min_replicas is not None and spec.max_replicas is not None and spec.min_replicas > spec.max_replicas:
            diags.append(doc.diag("spec.minReplicas", f"minReplicas ({spec.min_replicas}) is greater than "
                                  f"maxReplicas ({spec.max_replicas})", "spec", "minReplicas"))
    else:
        if spec.demand:
            diags.append(doc.diag("spec.demand", f"demand is for inference models; a {spec.workload} model "
                                  "asks for replicas instead", "spec", "demand"))
        for fname, key in (("minReplicas", spec.min_replicas), ("maxReplicas", spec.max_replicas)):
            if key is not None:
                diags.append(doc.diag(f"spec.{fname}", f"{fname} is for inference models; a {spec.workload} model "
                                      "asks for replicas", "spec", fname))
        if spec.replicas is None:
            diags.append(doc.diag("spec.replicas", f"a {spec.workload} model needs replicas (how many to run)",
                                  "spec"))
        if spec.throughput:
            # SPEC: throughput is an inference model's (rate per replica); here it was read by nothing, and a
            # list of GPU types meant to limit where the model runs limited nothing
            diags.append(doc.diag("spec.throughput", f"throughput is for inference models and is ignored for a "
                                  f"{spec.workload} model: its replicas may run on any GPU type that fits; to "
                                  f"limit them to {', '.join(spec.throughput)}, give gpuTypes instead",
                                  "spec", "throughput", severity="warning"))
    for i, t in enumerate(spec.gpu_types or []):
        need_gpu(doc, t, f"spec.gpuTypes[{i}]", "spec", "gpuTypes", i)
    for t in spec.throughput:
        need_gpu(doc, t, f"spec.throughput.{t}", "spec", "throughput", t)
    seen: dict[str, int] = {}
    for i, dem in enumerate(spec.demand):
        need_location(doc, dem.location, f"spec.demand[{i}].location", "spec", "demand", i, "location")
        if dem.location in seen:
            diags.append(doc.diag(f"spec.demand[{i}].location", f"second demand entry for {dem.location!r} "
                                  f"(first is demand[{seen[dem.location]}]); merge them", "spec", "demand", i))
        seen.setdefault(dem.location, i)
    for i, src in enumerate(spec.data):
        need_location(doc, src.location, f"spec.data[{i}].location", "spec", "data", i, "location")
    if have_pools and spec.replica.gpus > max_per_node:
        # a warning, as every other fit that no pool meets (memory, gpuTypes, spot): SPEC, "demand that
        # cannot be served is not an error"; as an error it stopped the plan of every other model
        what = "its demand is unmet" if spec.workload == "inference" else "its replicas are not placed"
        diags.append(doc.diag("spec.replica.gpus", f"a replica of {spec.replica.gpus} GPUs needs one node with that "
                              f"many; the largest node in the fleet has {max_per_node}, so no pool can run it and "
                              f"{what}: add a pool of nodes with {spec.replica.gpus} GPUs or more, or lower "
                              "replica.gpus", "spec", "replica", "gpus", severity="warning"))


def _node_group(spec: PoolSpec) -> str | None:
    """The cloud node group an aws or gcp pool sizes, in words (``planfile.group_text``), or None."""
    part = getattr(spec.target, spec.provider, None) if spec.provider in ("aws", "gcp") else None
    if part is None:
        return None
    return group_text({spec.provider: part.model_dump(mode="json", by_alias=True, exclude_none=True)})


def _shared_groups(pool_docs: Mapping[str, Document], diags: list[Diagnostic]) -> None:
    """Two pools sizing one node group: the plan counted its nodes twice, and each apply set the
    group to one pool's count, then failed on the other's (and refresh saw no drift). Two pools of two
    providers over one node group's nodes (an EKS node group as `discover aws` and `discover kubernetes`
    print it, both saved into the fleet): the plan counted them twice."""
    _twin_pools(pool_docs, diags)
    first: dict[str, Document] = {}
    for doc in pool_docs.values():
        group = _node_group(doc.spec)
        if group is None:
            continue
        if group in first:
            diags.append(doc.diag("spec.target", f"pool {first[group].name} sizes the same {group}; a node group "
                                  "belongs to one pool (placer sets its size from that pool's nodes)",
                                  "spec", "target"))
        else:
            first[group] = doc
    for doc in list(first.values()):  # the name a replacement of an EKS pool's node group takes (diff.sized_target)
        aws = doc.spec.target.aws if doc.spec.provider == "aws" else None
        if aws is None or aws.eks is None:
            continue
        alt = aws.model_dump(mode="json", by_alias=True, exclude_none=True)
        alt["eks"]["nodegroup"] = alternate_nodegroup(aws.eks.nodegroup)
        taken = first.get(group_text({"aws": alt}))
        if taken is not None and taken.name != doc.name:
            diags.append(taken.diag("spec.target", f"{group_text({'aws': alt})} is the name pool {doc.name}'s node "
                                    f"group {aws.eks.nodegroup} takes where a change of its spot replaces it (EKS "
                                    "cannot change a node group's capacity type in place, and its replacement is "
                                    f"made first, under that name): rename this node group, or pool {doc.name}'s",
                                    "spec", "target"))


def _twin_pools(pool_docs: Mapping[str, Document], diags: list[Diagnostic]) -> None:
    """A pool over the nodes of a node group (``placer.nodegroups``) a pool of another provider before
    it is over: an error, a warning where the EKS cluster of the Kubernetes pool's nodes is not known."""
    seen: list[tuple[Document, tuple[Any, ...]]] = []
    for doc in pool_docs.values():
        mine = node_groups(doc.raw.data)
        twin = next(((other, group, mine_group) for other, group in seen for mine_group in mine
                     if other.spec.provider != doc.spec.provider and same_group(group, mine_group)), None)
        if twin is not None:
            other, group, mine_group = twin
            diags.append(doc.diag("spec.target", f"pool {other.name} ({other.spec.provider}, {other.path}:"
                                  f"{other.line}) is over the same nodes, {group_words(group, mine_group)}: the plan counts "
                                  "their GPUs twice; keep one of the two pools (delete the other, or its "
                                  f"{NODE_GROUPS} annotation if they are not the same nodes)", "spec", "target",
                                  severity="error" if None not in group and None not in mine_group else "warning"))
        seen.extend((doc, group) for group in mine)


# the rules a policy's pools selector means nothing to, and what each looks at instead
NAMES_NO_POOLS = {"spread": "counts the failure domains of every pool a model runs on",
                  "maxSpotFraction": "counts a model's replicas on every spot pool",
                  "retire": "retires models wherever they run"}
# and the rules its models selector means nothing to
NAMES_NO_MODELS = {"headroom": "keeps GPUs free on its pools, whoever runs there"}


def _selects_nothing(doc: Document, spec: PolicySpec, models: Mapping[str, Model], pools: Mapping[str, Pool],
                     diags: list[Diagnostic]) -> None:
    """A selector that matches nothing turns its policy off without a word (a label `data: EU`
    against models labelled `data: eu`: a required residency rule kept nothing in the EU)."""
    rule = spec.rule.name
    sides: list[tuple[str, str, Sequence[Model] | Sequence[Pool], Any]] = []
    if rule not in NAMES_NO_MODELS:
        sides.append(("models", "Model", list(models.values()), model_matches))
    if rule not in NAMES_NO_POOLS:
        sides.append(("pools", "Pool", list(pools.values()), pool_matches))
    for side, kind, items, matches in sides:
        sel: Selector = getattr(spec, side)
        if sel == Selector() or not items or any(matches(sel, item) for item in items):
            continue
        if sel.names and not set(sel.names) & {i.name for i in items}:
            continue  # each name is already reported as unknown; `names: []` has none to report, and is said here
        hints = [f"{info.alias or fname} is an empty list" for fname, info in Selector.model_fields.items()
                 if getattr(sel, fname) == []]
        for key, want in (sel.labels or {}).items():
            seen = sorted({i.labels[key] for i in items if key in i.labels})
            if not seen:
                keys = {k for i in items for k in i.labels}
                hints.append(f"no {kind} has the label {key!r}{suggest(key, keys)}")
            elif want not in seen:
                hints.append(f"label {key} is {', '.join(seen[:5])}{', ...' if len(seen) > 5 else ''} "
                             f"on the fleet's {kind}s, never {want!r}")
        if side == "pools" and sel.jurisdiction is not None:
            have = sorted({p.location.jurisdiction or "" for p in pools.values()} - {""})
            if not set(sel.jurisdiction) & set(have):
                hints.append(f"the pools' jurisdictions are {', '.join(have) or 'unset'}")
        why = f" ({'; '.join(hints)})" if hints else ""
        effect = ("the policy applies to nothing" if side == "models" else
                  "the models it selects may run on no pool" if rule == "allowPools" else
                  "every replica of the models it selects pays the penalty" if rule == "preferPools" else
                  f"{rule} holds on no pool")
        diags.append(doc.diag(f"spec.{side}", f"this {side} selector matches no {kind}{why}; {effect}",
                              "spec", side, severity="warning"))


def _check_policy(doc: Document, spec: PolicySpec, locations: Mapping[str, Location],
                  gpu_types: Mapping[str, GpuType], by_kind: Mapping[str, Mapping[str, Document]],
                  broken: Mapping[str, set[str]], diags: list[Diagnostic]) -> None:
    for side, allowed, kind in (("models", MODEL_SELECTOR_FIELDS, "Model"), ("pools", POOL_SELECTOR_FIELDS, "Pool")):
        sel: Selector = getattr(spec, side)
        for fname, info in Selector.model_fields.items():
            if getattr(sel, fname) is None:
                continue
            alias = info.alias or fname
            if fname not in allowed:
                pretty = sorted(Selector.model_fields[f].alias or f for f in allowed)
                diags.append(doc.diag(f"spec.{side}.{alias}", f"a {side} selector cannot select by {alias}; "
                                      f"it takes {', '.join(pretty)}", "spec", side, alias))
        for i, n in enumerate(sel.names or []):
            if n not in by_kind.get(kind, {}) and n not in broken.get(kind, ()):
                diags.append(doc.diag(f"spec.{side}.names[{i}]",
                                      f"no {kind} named {n!r}{suggest(n, by_kind.get(kind, {}))}",
                                      "spec", side, "names", i, severity="warning"))
        for i, n in enumerate(sel.location or []):
            if n not in locations and n not in broken.get("Location", ()):
                diags.append(doc.diag(f"spec.{side}.location[{i}]", f"unknown location {n!r}{suggest(n, locations)}",
                                      "spec", side, "location", i))
        for i, n in enumerate(sel.gpu_type or []):
            if n not in gpu_types and n not in broken.get("GPUType", ()):
                diags.append(doc.diag(f"spec.{side}.gpuType[{i}]", f"unknown GPU type {n!r}{suggest(n, gpu_types)}",
                                      "spec", side, "gpuType", i))
    if spec.enforcement == "preferred" and spec.penalty_usd_per_hour is None:
        diags.append(doc.diag("spec.penaltyUsdPerHour", "a preferred policy needs penaltyUsdPerHour (the cost of "
                              "one unit of violation)", "spec", "enforcement"))
    if spec.enforcement == "required" and spec.penalty_usd_per_hour is not None:
        diags.append(doc.diag("spec.penaltyUsdPerHour", "applies only to enforcement: preferred (a required policy "
                              "is never violated)", "spec", "penaltyUsdPerHour"))
    rule = spec.rule
    if rule.name in NAMES_NO_POOLS and spec.pools != Selector():
        diags.append(doc.diag("spec.pools", f"{rule.name} names no pools (it {NAMES_NO_POOLS[rule.name]}): this "
                              "pools selector is ignored; remove it", "spec", "pools", severity="warning"))
    if rule.name in NAMES_NO_MODELS and spec.models != Selector():
        diags.append(doc.diag("spec.models", f"{rule.name} names no models (it {NAMES_NO_MODELS[rule.name]}): this "
                              "models selector is ignored; remove it", "spec", "models", severity="warning"))
    listed = rule.separate_workloads or []
    chosen = spec.models.workload
    if listed and chosen and len(set(listed) & set(chosen)) < 2:
        diags.append(doc.diag("spec.models.workload", f"selects {' and '.join(chosen)} models only, so no pool "
                              f"can host two of the workloads separateWorkloads lists ({', '.join(listed)}): the "
                              "policy holds on nothing; drop the workload selector (the rule names its workloads)",
                              "spec", "models", "workload", severity="warning"))
    if rule.name == "preferPools" and spec.enforcement == "required":
        diags.append(doc.diag("spec.rule.preferPools", "preferPools is a soft rule: use enforcement: preferred with "
                              "penaltyUsdPerHour (or allowPools for a hard rule)", "spec", "rule"))


# fields the typed specs gained after ``Fleet.digest`` left them (c0f8341), each with the value a
# fleet that does not set it reads: ``legacy_digest`` leaves them out where they hold it, so that it
# stays what the placers before took (dd11586's solver.fullSearchEvery moved it for every fleet with
# a Settings document, and a plan ce5c01e saved was refused as "made from another version of" it)
TYPED_SINCE: dict[str, dict[str, dict[str, object]]] = {
    "Settings": {"solver": {"fullSearchEvery": SolverSettings.model_fields["full_search_every"].default}}}


def _as_typed_before(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` (a typed spec's dump) without the ``TYPED_SINCE`` fields of ``kind`` at their default."""
    for section, fields in TYPED_SINCE.get(kind, {}).items():
        part = spec.get(section)
        if isinstance(part, dict):
            spec[section] = {k: v for k, v in part.items() if k not in fields or fields[k] != v}
    return spec


def _as_written(value: Any) -> Any:
    """A document's value as JSON for ``Fleet.digest``: mapping keys as text (YAML allows others), a
    date as ISO text."""
    if isinstance(value, dict):
        return {str(k): _as_written(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_written(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
