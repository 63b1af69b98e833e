"""GCP GPU pool discovery: Pool and Location documents from the managed instance groups (MIGs) whose
instances carry GPUs (their instance templates, machine types, accelerator types and autoscalers), for
``placer discover gcp``. Calls go through ``GcpProvider`` (its clients, timeouts and error messages)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import google.auth
from google.auth import exceptions as auth_exc
from google.cloud import compute_v1

from placer.catalog import NOT_THE_GPU, match_product, type_name
from placer.discover import GpuTypeNote, PoolNote
from placer.retry import Retrier
from placer.spec.kinds import API_VERSION
from providers.base import Discovered, ProviderError, bounded_pages, place_refused
from providers.gcp import GcpProvider, Mig
from providers.places import GCP_ACCELERATORS as ACCELERATORS
from providers.places import GCP_OTHER_ACCELERATORS as OTHER_ACCELERATORS
from providers.places import gcp_jurisdiction, gcp_location

T = TypeVar("T")

# Approximate on-demand USD per GPU-hour, GPU plus its share of the host VM (us-central1, 2025 list).
USD_PER_GPU_HOUR: dict[str, float] = {
    "T4-16GB": 0.55, "L4-24GB": 0.71, "A100-40GB": 3.67, "A100-80GB": 5.07,
    "H100-80GB": 11.06, "H200-141GB": 10.60,
}
SPOT_FACTOR = 0.35  # spot prices float; about a third of on-demand
DEFAULT_MAX_NODES = 8
# without an autoscaler a group has no size range: min 0 and max(8, size) are placeholders
GUESSED_SIZES = frozenset({("spec", "nodes", "min"), ("spec", "nodes", "max")})
_TEMPLATE = re.compile(r"projects/(?P<project>[^/]+)/(?:global|regions/(?P<region>[^/]+))/instanceTemplates/(?P<name>[^/]+)$")
_SCOPED = re.compile(r"projects/(?P<project>[^/]+)/(?P<kind>zones|regions)/(?P<scope>[^/]+)/\w+/(?P<name>[^/]+)$")
_NOT_DNS = re.compile(r"[^a-z0-9-]+")

_Listed = list[tuple[Mig, compute_v1.InstanceGroupManager]]


def _last(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def dns1123(name: str) -> str:
    """A DNS-1123 label from a GCP name (already close: lowercase, digits, hyphens, <= 63)."""
    label = _NOT_DNS.sub("-", name.lower()).strip("-")[:63].rstrip("-")
    return label or "pool"


def _unique(name: str, scope: str, taken: set[str]) -> str:
    """Groups of one name in two zones or projects: suffix the later ones with their zone or region."""
    candidate, n = name, 1
    while candidate in taken:
        suffix = f"-{scope}" if n == 1 else f"-{scope}-{n}"
        candidate = name[: 63 - len(suffix)].rstrip("-") + suffix
        n += 1
    taken.add(candidate)
    return candidate


def unknown_type_name(product: str) -> str:
    """The GPUType name a pool of a GPU GCP tells no memory of is of: the words of its accelerator's
    description (or name) that say which GPU it is (``NVIDIA RTX PRO 6000`` -> ``RTX-PRO-6000``)."""
    words = [w for w in re.split(r"[^A-Za-z0-9.]+", product) if w.strip(".") and not NOT_THE_GPU.fullmatch(w)]
    return "-".join(words).strip("-.") or "GPU"


def _scope_region(scope: str) -> str:
    """The region of an aggregated list's scope: ``zones/us-central1-a`` and ``regions/us-central1``
    are both in ``us-central1``."""
    kind, _, where = scope.rpartition("/")
    return where.rsplit("-", 1)[0] if kind.endswith("zones") else where


def _location_document(region: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"environment": "cloud"}
    jurisdiction = gcp_jurisdiction(region)
    if jurisdiction:
        spec["jurisdiction"] = jurisdiction
    return {"apiVersion": API_VERSION, "kind": "Location", "metadata": {"name": gcp_location(region)}, "spec": spec}


def discover(provider: GcpProvider, projects: list[str] | None = None, zones: list[str] | None = None,
             regions: list[str] | None = None, retry: Retrier | None = None) -> Discovered:
    """Pool documents for the MIGs whose instances carry GPUs, and a Location per region.

    With ``zones``/``regions`` only those are listed; otherwise one aggregated list per project.
    ``retry`` tries each call again after a retryable failure (without it each is made once).
    """
    notes = [
        f"gcp: nodes.min/nodes.max are the autoscaler's where the group has one, otherwise 0/"
        f"max({DEFAULT_MAX_NODES}, current size): set them to what you are willing to pay for (a merge "
        "keeps the ones you set)",
    ]
    scan = _MigScan(provider, notes, retry or Retrier())
    pools: list[dict[str, Any]] = []
    seen_regions: set[str] = set()
    listed: _Listed = []
    chosen = _projects(provider, projects)
    for project in chosen:
        try:
            listed += scan.list_migs(project, zones or [], regions or [])
        except ProviderError as exc:
            if (told := place_refused(exc, "--project", project, chosen, "projects")) is exc:
                raise
            raise told from exc
    # names by where the groups are, not by the order the API lists them in (an aggregated list is
    # a map whose order varies): two groups of one name got each other's pool name from run to run
    listed.sort(key=lambda found: (found[0].project, found[0].zone or found[0].region or "", found[0].name))
    for mig, body in listed:
        pool = scan.pool_document(mig, body)
        if pool is not None:
            pools.append(pool)
            seen_regions.add(mig.region_name)
    locations = [*scan.gpu_types.values(), *(_location_document(region) for region in sorted(seen_regions))]
    if scan.priced:  # of the pools a merge adds only: it never overwrites a fleet's price
        notes.insert(0, PoolNote("gcp: usdPerGpuHour of {names} is an approximate on-demand list price (GPU "
                                 f"plus its share of the VM, us-central1; spot about {SPOT_FACTOR:g}x): replace "
                                 "it with your negotiated prices", scan.priced))
    return Discovered(documents=locations + pools, notes=notes, guessed=scan.guessed,
                      unread=sorted(set(scan.unread)))


def _projects(provider: GcpProvider, projects: list[str] | None) -> list[str]:
    chosen = list(projects or provider.projects)
    if not chosen and provider._options is None:
        try:
            _, default = google.auth.default()
        except auth_exc.DefaultCredentialsError as exc:
            # naming a project gets no further without credentials: it said "or name the projects"
            raise ProviderError(f"gcp: discovery needs credentials ({exc}): run `gcloud auth application-default "
                                "login` or set GOOGLE_APPLICATION_CREDENTIALS, and pass --project where they name "
                                "no project") from exc
        chosen = [default] if default else []
    if not chosen:
        raise ProviderError("gcp: discovery needs at least one project: pass --project (repeatable), or set "
                            "GOOGLE_CLOUD_PROJECT")
    return chosen


@dataclass(frozen=True)
class _Unread:
    """A per-group read that failed, remembered: ``first`` names the group it failed for."""

    first: str


class _MigScan:
    """One discovery run: lists the groups, reads their templates, machine types, accelerator types and
    autoscalers (each once per run), and builds Pool documents."""

    def __init__(self, provider: GcpProvider, notes: list[str], retry: Retrier) -> None:
        self.provider = provider
        self.retry = retry
        self.notes = notes
        self.names: set[str] = set()
        self.guessed: dict[str, frozenset[tuple[str, ...]]] = {}  # Discovered.guessed
        self.unread: list[str] = []  # Discovered.unread
        self.priced: list[str] = []  # the Pools priced from the built-in table
        self.gpu_types: dict[str, dict[str, Any]] = {}  # GPUType documents of OTHER_ACCELERATORS found
        self._memo: dict[tuple[str, ...], Any] = {}  # templates, machine and accelerator types

    def _call(self, address: str, action: str, call: Callable[[], T], **kw: str) -> T:
        """``call`` through the provider (its error messages), tried again while it fails in a way a
        retry may pass (throttling, a 5xx, a timeout): one throttled answer stopped the whole run."""
        return self.retry(functools.partial(self.provider._call, address, action, call, **kw))

    def list_migs(self, project: str, zones: list[str], regions: list[str]) -> _Listed:
        client, kw = self.provider._client, self.provider._kw()
        found: _Listed = []

        def token(page: Any) -> str:
            return str(page.next_page_token or "")

        def paged(what: str, first: Callable[[str], Any]) -> Iterator[Any]:
            """The pages of a listing, ``first(token)`` the page at a token, each page tried again
            alone after a retryable failure: a throttled page 3 listed again from page 1."""
            def pages() -> Iterator[Any]:
                after = ""
                while True:
                    page = self._call(f"project/{project}", what, functools.partial(first, after))
                    yield page
                    after = token(page)
                    if not after:
                        return

            return bounded_pages(pages(), f"gcp {project}: {what}", token)

        def zonal_page(zone: str, after: str) -> Any:
            request = compute_v1.ListInstanceGroupManagersRequest(project=project, zone=zone, page_token=after)
            return next(iter(client(compute_v1.InstanceGroupManagersClient).list(request=request, **kw).pages))

        for zone in zones:
            found += [(Mig(project, m.name, zone=zone), m)
                      for page in paged(f"listing managed instance groups in {project}/{zone}",
                                        functools.partial(zonal_page, zone))
                      for m in page.items]
        if zones and not regions:
            return found
        # --region R is every group in R: its regional groups and the zonal ones of its zones, from
        # one aggregated list (listing regions/R alone left out the zonal groups of R-a, R-b... silently)
        chosen = set(regions)

        def wanted(region: str) -> bool:
            return not chosen or region in chosen

        listed = f"{project} ({', '.join(regions)})" if regions else f"project {project}"

        def aggregated_page(after: str) -> Any:
            request = compute_v1.AggregatedListInstanceGroupManagersRequest(project=project, page_token=after)
            return next(iter(client(compute_v1.InstanceGroupManagersClient).aggregated_list(request=request,
                                                                                           **kw).pages))

        def aggregated() -> _Listed:
            out = []
            unreachable: list[str] = []
            for page in paged(f"listing managed instance groups in {listed}", aggregated_page):
                unreachable += [scope for scope in page.unreachables if wanted(_scope_region(scope))]
                for scope, scoped in page.items.items():
                    kind, _, where = scope.partition("/")
                    if not wanted(_scope_region(scope)):
                        continue
                    if getattr(scoped.warning, "code", "") == "UNREACHABLE":
                        unreachable.append(scope)
                    for m in scoped.instance_group_managers:
                        mig = Mig(project, m.name, zone=where) if kind == "zones" else Mig(project, m.name, region=where)
                        if mig.zone not in zones:  # a zone named by --zone too: listed above
                            out.append((mig, m))
            if unreachable:  # a listing without them is not the project's: said, not printed as if whole
                raise ProviderError(f"gcp {project}: the API could not reach {', '.join(sorted(set(unreachable)))}, "
                                    "so the listing is incomplete; discover the other zones with --zone",
                                    retryable=True, retry_advice="a retry may get through")
            return out

        # each page is tried again alone; the whole listing again only where a zone was unreachable
        return found + self.retry(aggregated)

    def _lookup(self, mig: Mig, what: str, call: Callable[[], T], key: tuple[str, ...] | None = None) -> T | None:
        """A per-group read, remembered under ``key`` for the rest of this run: a retryable failure
        stops discovery, others skip the group with a note, and every later group that needs the
        same read (a shared template or machine type) too (they were taken for groups without GPUs)."""
        if key is not None and key in self._memo:
            found = self._memo[key]
            if isinstance(found, _Unread):
                self.notes.append(f"gcp: {mig}: skipped: reading {what} failed, as it did for {found.first} above")
                self.unread.append(str(mig))
                return None
            return found  # type: ignore[no-any-return]
        try:
            found = self._call(f"pool/{mig.name}", f"reading {what} of {mig}", call,
                               not_found="the group refers to something that no longer exists")
        except ProviderError as exc:
            if exc.retryable:
                raise
            self.notes.append(f"{exc}; skipped")
            self.unread.append(str(mig))
            found = _Unread(str(mig))
        if key is not None:
            self._memo[key] = found
        return None if isinstance(found, _Unread) else found

    def pool_document(self, mig: Mig, body: compute_v1.InstanceGroupManager) -> dict[str, Any] | None:
        client, kw = self.provider._client, self.provider._kw
        link = body.instance_template or next((v.instance_template for v in body.versions), "")
        ref = _TEMPLATE.search(link)
        if ref is None:
            self.notes.append(f"gcp: {mig} has no instance template I can read ({link!r}); skipped")
            return None
        if ref["region"]:
            template = self._lookup(mig, "the instance template", lambda: client(
                compute_v1.RegionInstanceTemplatesClient).get(project=ref["project"], region=ref["region"],
                                                              instance_template=ref["name"], **kw()),
                key=("template", link))
        else:
            template = self._lookup(mig, "the instance template", lambda: client(
                compute_v1.InstanceTemplatesClient).get(project=ref["project"], instance_template=ref["name"],
                                                        **kw()), key=("template", link))
        if template is None:
            return None
        props = template.properties
        zone = mig.zone or next((_last(z.zone) for z in body.distribution_policy.zones), f"{mig.region}-a")
        accelerators = [(_last(a.accelerator_type), a.accelerator_count) for a in props.guest_accelerators]
        if not accelerators and props.machine_type:
            machine = self._lookup(mig, f"machine type {_last(props.machine_type)}", lambda: client(
                compute_v1.MachineTypesClient).get(project=mig.project, zone=zone,
                                                   machine_type=_last(props.machine_type), **kw()),
                key=("machineType", mig.project, _last(props.machine_type)))  # the same GPUs in every zone
            accelerators = [(a.guest_accelerator_type, a.guest_accelerator_count)
                            for a in (machine.accelerators if machine else [])]
        if not accelerators:
            return None  # a CPU-only group is not a GPU pool
        accelerator, per_node = accelerators[0]
        other = OTHER_ACCELERATORS.get(accelerator)
        description = ""
        gpu = ACCELERATORS.get(accelerator) or (type_name(other[0], other[1] / 1024) if other else None)
        if gpu is None:
            description = self._description(mig, zone, accelerator)
            known = match_product(description) if description else None
            gpu = known.name if known else None
        unknown = gpu is None
        if gpu is None:
            # GCP says no memory: a GPUType of a guessed one would place models that do not fit. The
            # pool names a type for the user to define; until the fleet has it, it is left out
            # (discover.refused says so), and a merge after adds it
            gpu = unknown_type_name(description or accelerator)
        spot = props.scheduling.provisioning_model == "SPOT" or bool(props.scheduling.preemptible)
        price = USD_PER_GPU_HOUR.get(gpu)
        usd = round((price or 0.0) * (SPOT_FACTOR if spot else 1.0), 2)
        autoscaler = _SCOPED.search(body.status.autoscaler or "")
        sizes = self._autoscaler_sizes(mig, autoscaler.groupdict()) if autoscaler else None
        if autoscaler and sizes is None:
            return None  # its autoscaler, which overrides placer's sizes, could not be read: skipped (a note says why)
        spec: dict[str, Any] = {
            "location": gcp_location(mig.region_name), "provider": "gcp",
            "gpu": {"type": gpu, "perNode": int(per_node)},
            "nodes": {"min": sizes[0], "max": sizes[1]} if sizes else
                     {"min": 0, "max": max(DEFAULT_MAX_NODES, int(body.target_size))},
            "usdPerGpuHour": usd, "spot": spot,
        }
        if mig.zone:
            spec["failureDomain"] = mig.zone
        where = {"zone": mig.zone} if mig.zone else {"region": mig.region}
        spec["target"] = {"gcp": {"project": mig.project, **where, "instanceGroupManager": mig.name}}
        name = _unique(dns1123(mig.name), mig.zone or str(mig.region), self.names)
        if sizes is None:
            self.guessed[name] = GUESSED_SIZES
        if other is not None and gpu not in self.gpu_types:
            self.gpu_types[gpu] = {"apiVersion": API_VERSION, "kind": "GPUType", "metadata": {"name": gpu},
                                   "spec": {"memoryGiB": round(other[1] / 1024, 1), "vendor": "nvidia"}}
            self.notes.append(GpuTypeNote(f"GPUType {{names}}: GCP accelerator {accelerator} is not in the built-in "
                                          "catalog; added it of the memory its driver reports (check memoryGiB, and "
                                          "give models a throughput for it)", [gpu]))
        if unknown:
            self.notes.append(  # said whether the pool is left out or not: refused's note does not say how
                f"gcp: {mig}: accelerator {accelerator}{f' ({description})' if description else ''} is not in "
                f"the built-in catalog and GCP does not report its memory: pool {name} is of GPU type {gpu}, "
                f"which needs a GPUType document named {gpu} in the fleet, its memoryGiB the memory.total "
                "`nvidia-smi` prints on one of the group's VMs, divided by 1024")
        if price is None:
            self.notes.append(PoolNote(f"gcp: no built-in price for {gpu}: set usdPerGpuHour of {{names}} "
                                       f"(group {mig})", [name]))
        else:
            self.priced.append(name)
        return {"apiVersion": API_VERSION, "kind": "Pool", "metadata": {"name": name}, "spec": spec}

    def _description(self, mig: Mig, zone: str, accelerator: str) -> str:
        """For accelerator names in neither table: the accelerator type's description ("NVIDIA A100 80GB"),
        or "" where the zone does not list it."""
        listed = self._lookup(mig, f"accelerator types of zone {zone}", lambda: list(self.provider._client(
            compute_v1.AcceleratorTypesClient).list(project=mig.project, zone=zone, **self.provider._kw())),
            key=("acceleratorTypes", mig.project, zone)) or []
        return str(next((a.description for a in listed if a.name == accelerator), ""))

    def _autoscaler_sizes(self, mig: Mig, ref: dict[str, str]) -> tuple[int, int] | None:
        """(min, max) replicas of the group's autoscaler ``ref`` (``_SCOPED``'s parts of its link), or
        None where it cannot be read (a note says why, and the group is unread)."""
        client, kw = self.provider._client, self.provider._kw

        def read() -> compute_v1.Autoscaler:
            if ref["kind"] == "zones":
                return client(compute_v1.AutoscalersClient).get(
                    project=ref["project"], zone=ref["scope"], autoscaler=ref["name"], **kw())
            return client(compute_v1.RegionAutoscalersClient).get(
                project=ref["project"], region=ref["scope"], autoscaler=ref["name"], **kw())

        auto = self._lookup(mig, "the autoscaler", read)
        if auto is None:
            return None
        policy = auto.autoscaling_policy
        self.notes.append(f"gcp: {mig} has autoscaler {ref['name']} (max {policy.max_num_replicas}): "
                          "it overrides the sizes placer sets; turn it off (mode OFF) or leave the pool out")
        return int(policy.min_num_replicas), int(policy.max_num_replicas)
