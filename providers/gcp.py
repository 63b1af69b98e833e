"""GCP: managed instance group (MIG) sizes and GPU pool discovery, via google-cloud-compute (REST).

A pool's ``target.gcp`` names a zonal (``zone``) or regional (``region``) MIG; ``apply``
resizes it and waits for the resize operation, ``observe`` reads ``targetSize``,
``wait_healthy`` waits until the group is stable. ``discover`` turns the MIGs whose
instances carry GPUs into Pool and Location documents.

Operations are awaited with our own Zone/RegionOperationsClient: the ExtendedOperation
that ``resize()`` returns polls through an operations client built without our
``client_options`` (so it ignores ``api_endpoint``), and it reports success for an
operation that ends with ``error.errors`` but no HTTP status.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import google.auth
import requests
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from placer.catalog import match_product
from placer.planfile import Change
from placer.spec.kinds import API_VERSION
from providers.base import Discovered, ProviderError, guard, pool_nodes, retryable_http

T = TypeVar("T")

# GCP accelerator type -> catalog GPU type (names alone cannot tell A100 40GB from 80GB)
ACCELERATORS: dict[str, str] = {
    "nvidia-tesla-t4": "T4-16GB", "nvidia-tesla-t4-vws": "T4-16GB",
    "nvidia-l4": "L4-24GB", "nvidia-l4-vws": "L4-24GB",
    "nvidia-tesla-a100": "A100-40GB", "nvidia-a100-80gb": "A100-80GB",
    "nvidia-h100-80gb": "H100-80GB", "nvidia-h100-mega-80gb": "H100-80GB",
    "nvidia-h200-141gb": "H200-141GB",
}
# Approximate on-demand USD per GPU-hour, GPU plus its share of the host VM (us-central1, 2025 list).
USD_PER_GPU_HOUR: dict[str, float] = {
    "T4-16GB": 0.55, "L4-24GB": 0.71, "A100-40GB": 3.67, "A100-80GB": 5.07,
    "H100-80GB": 11.06, "H200-141GB": 10.60,
}
SPOT_FACTOR = 0.35  # spot prices float; about a third of on-demand
DEFAULT_MAX_NODES = 8
JURISDICTIONS = {"europe": "EU", "us": "US", "northamerica": "CA", "australia": "AU"}
_TEMPLATE = re.compile(r"projects/(?P<project>[^/]+)/(?:global|regions/(?P<region>[^/]+))/instanceTemplates/(?P<name>[^/]+)$")
_SCOPED = re.compile(r"projects/(?P<project>[^/]+)/(?P<kind>zones|regions)/(?P<scope>[^/]+)/\w+/(?P<name>[^/]+)$")
_DONE = compute_v1.Operation.Status.DONE
_anonymous: Callable[[], Any] = AnonymousCredentials  # typed handle on an untyped constructor
_NOT_DNS = re.compile(r"[^a-z0-9-]+")
# operation errors that a later retry may get past (stockouts, throttling)
_RETRYABLE_OP_ERRORS = {"ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
                        "RESOURCE_POOL_EXHAUSTED", "RATE_LIMIT_EXCEEDED", "RESOURCE_NOT_READY"}


def _last(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def _short(exc: gexc.GoogleAPICallError) -> str:
    """The API's message without the ``GET https://...:`` prefix the client puts in front."""
    return re.sub(r"^(GET|POST|PUT|PATCH|DELETE) \S+: ", "", str(exc.message)).strip() or type(exc).__name__


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


def _location_document(region: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"environment": "cloud"}
    jurisdiction = JURISDICTIONS.get(region.split("-", 1)[0])
    if jurisdiction:
        spec["jurisdiction"] = jurisdiction
    return {"apiVersion": API_VERSION, "kind": "Location", "metadata": {"name": f"gcp-{region}"}, "spec": spec}


@dataclass(frozen=True)
class Mig:
    """Where a managed instance group lives: a zone or a region of a project."""

    project: str
    name: str
    zone: str | None = None
    region: str | None = None

    @property
    def where(self) -> str:
        return f"zone {self.zone}" if self.zone else f"region {self.region}"

    @property
    def region_name(self) -> str:
        return self.region or str(self.zone).rsplit("-", 1)[0]

    def __str__(self) -> str:
        return f"managed instance group {self.name} (project {self.project}, {self.where})"

    @staticmethod
    def of(change: Change) -> Mig:
        gcp = change.target.get("gcp") or {}
        project, name = gcp.get("project"), gcp.get("instanceGroupManager")
        zone, region = gcp.get("zone"), gcp.get("region")
        if not project or not name or (zone is None) == (region is None):
            raise ProviderError(
                f"{change.address}: target.gcp needs project, instanceGroupManager and exactly one of zone or "
                f"region (got {gcp or 'nothing'}); fix the pool's target in the fleet and re-plan",
                address=change.address)
        return Mig(str(project), str(name), zone=zone, region=region)


NOT_FOUND_HINT = ("check target.gcp (project, zone or region, instanceGroupManager); "
                  "placer resizes existing groups, it does not create them")


def classify(action: str, not_found: str = NOT_FOUND_HINT) -> Callable[[Exception], ProviderError | None]:
    """Map what the client raises to a ProviderError that says what failed and what to do."""

    def mapped(exc: Exception) -> ProviderError | None:
        if isinstance(exc, gexc.GoogleAPICallError):
            code = exc.code if isinstance(exc.code, int) else None
            detail = _short(exc)
            if isinstance(exc, gexc.NotFound):
                hint = not_found
            elif code in (401, 403):
                hint = ("the credentials lack permission: grant roles/compute.instanceAdmin.v1 on the project, "
                        "or run `gcloud auth application-default login` as someone who has it")
            elif retryable_http(code):
                hint = "GCP is throttling or briefly unavailable; a retry should get through"
            else:
                hint = "GCP refused the request as sent; fix the fleet or the plan before retrying"
            return ProviderError(f"gcp: {action} failed: {code} {detail}; {hint}", retryable=retryable_http(code))
        if isinstance(exc, gexc.RetryError | requests.Timeout):
            return ProviderError(f"gcp: {action} failed: no answer in time ({exc}); a retry may succeed",
                                 retryable=True)
        if isinstance(exc, requests.ConnectionError):
            return ProviderError(f"gcp: {action} failed: cannot reach the Compute API ({exc}); "
                                 "check the network and retry", retryable=True)
        if isinstance(exc, auth_exc.DefaultCredentialsError):
            return ProviderError(f"gcp: {action} failed: no Google credentials ({exc}); run "
                                 "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS")
        if isinstance(exc, auth_exc.GoogleAuthError):
            return ProviderError(f"gcp: {action} failed: credentials problem ({exc}); refresh them with "
                                 "`gcloud auth application-default login`",
                                 retryable=bool(getattr(exc, "retryable", False)))
        return None

    return mapped


class GcpProvider:
    """Resizes, observes and discovers GCP managed instance groups.

    ``api_endpoint`` (``http://127.0.0.1:PORT`` in tests) switches to anonymous credentials;
    otherwise Application Default Credentials. Every call is made once, with a short timeout:
    retrying with backoff is the apply engine's job.
    """

    name = "gcp"

    def __init__(self, projects: list[str] | None = None, api_endpoint: str | None = None,
                 credentials: Any = None, *, request_timeout_s: float = 30.0,
                 operation_timeout_s: float = 600.0, poll_interval_s: float = 2.0) -> None:
        self.projects = list(projects or [])
        self._options = ClientOptions(api_endpoint=api_endpoint) if api_endpoint else None
        self._credentials = credentials or (_anonymous() if api_endpoint else None)
        self.request_timeout_s = request_timeout_s
        self.operation_timeout_s = operation_timeout_s
        self.poll_interval_s = poll_interval_s
        self._clients: dict[type, Any] = {}
        self._memo: dict[tuple[str, ...], Any] = {}  # templates, machine and accelerator types, per discover()
        self._lock = threading.Lock()

    # ------------------------------------------------------------ plumbing

    def _client(self, cls: type[T]) -> T:
        with self._lock:
            if cls not in self._clients:
                self._clients[cls] = cls(credentials=self._credentials, client_options=self._options)  # type: ignore[call-arg]
            return self._clients[cls]  # type: ignore[no-any-return]

    def _call(self, address: str, action: str, call: Callable[[], T], not_found: str = NOT_FOUND_HINT) -> T:
        return guard(address, call, classify(action, not_found))

    def _kw(self, timeout: float | None = None) -> dict[str, Any]:
        return {"retry": None, "timeout": timeout if timeout is not None else self.request_timeout_s}

    def _get(self, mig: Mig) -> compute_v1.InstanceGroupManager:
        if mig.zone:
            return self._client(compute_v1.InstanceGroupManagersClient).get(
                project=mig.project, zone=mig.zone, instance_group_manager=mig.name, **self._kw())
        return self._client(compute_v1.RegionInstanceGroupManagersClient).get(
            project=mig.project, region=mig.region, instance_group_manager=mig.name, **self._kw())

    # ------------------------------------------------------------ Provider protocol

    def handles(self, change: Change) -> bool:
        return change.kind == "pool" and change.provider == "gcp"

    def observe(self, change: Change) -> dict[str, Any] | None:
        mig = Mig.of(change)

        def read() -> compute_v1.InstanceGroupManager | None:
            try:
                return self._get(mig)
            except gexc.NotFound:
                return None

        found = self._call(change.address, f"reading the size of {mig}", read)
        return None if found is None else {"nodes": int(found.target_size)}

    def apply(self, change: Change) -> None:
        mig = Mig.of(change)
        nodes = pool_nodes(change)
        low, high = change.target.get("minNodes"), change.target.get("maxNodes")
        if nodes < 0 or (low is not None and nodes < int(low)) or (high is not None and nodes > int(high)):
            raise ProviderError(
                f"{change.address}: refusing to resize {mig} to {nodes} nodes: outside the pool's nodes.min..max "
                f"{low if low is not None else 0}..{high if high is not None else 'unbounded'}; "
                "the plan does not match the fleet, re-plan", address=change.address)
        action = f"resizing {mig} to {nodes} nodes"
        if mig.zone:
            op = self._call(change.address, action, lambda: self._client(
                compute_v1.InstanceGroupManagersClient).resize_unary(
                project=mig.project, zone=mig.zone, instance_group_manager=mig.name, size=nodes, **self._kw()))
        else:
            op = self._call(change.address, action, lambda: self._client(
                compute_v1.RegionInstanceGroupManagersClient).resize_unary(
                project=mig.project, region=mig.region, instance_group_manager=mig.name, size=nodes, **self._kw()))
        self._await(mig, op, change.address, action)

    def _await(self, mig: Mig, op: compute_v1.Operation, address: str, action: str) -> None:
        """Wait for ``op`` with the operations' ``wait`` (a server-side long poll) until our deadline."""
        deadline = time.monotonic() + self.operation_timeout_s
        interval = self.poll_interval_s
        while op.status != _DONE:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                scope = f"--zone {mig.zone}" if mig.zone else f"--region {mig.region}"
                raise ProviderError(
                    f"gcp: {action}: operation {op.name} not finished after {self.operation_timeout_s:g}s "
                    f"(still {compute_v1.Operation.Status(op.status).name}); GCP may still complete it "
                    f"(`gcloud compute operations describe {op.name} {scope} --project {mig.project}`); "
                    "retrying re-sends the same size, which is safe", retryable=True, address=address)
            op = self._call(address, f"waiting for operation {op.name} ({action})",
                            functools.partial(self._wait_once, mig, op, remaining))
            if op.status != _DONE:
                time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
                interval = min(interval * 1.5, 10.0)
        errors = list(op.error.errors) if op.error else []
        if errors or op.http_error_status_code >= 400:
            detail = "; ".join(f"{e.code}: {e.message.rstrip('.')}" for e in errors) or (
                f"{op.http_error_status_code} {op.http_error_message}")
            codes = {e.code for e in errors}
            retryable = bool(codes & _RETRYABLE_OP_ERRORS) or retryable_http(op.http_error_status_code or None)
            hint = ("GPU capacity or rate limits may clear, a retry may succeed; if it persists, pick another "
                    "zone" if retryable else "fix the cause (quota, permissions, template) in GCP, then apply again")
            raise ProviderError(f"gcp: {action} failed: operation {op.name} ended with {detail}; {hint}",
                                retryable=retryable, address=address)

    def _wait_once(self, mig: Mig, op: compute_v1.Operation, remaining: float) -> compute_v1.Operation:
        timeout = max(0.1, min(remaining, 120.0))  # the server answers within 2 minutes, DONE or not
        try:
            if mig.zone:
                return self._client(compute_v1.ZoneOperationsClient).wait(
                    project=mig.project, zone=mig.zone, operation=op.name, **self._kw(timeout))
            return self._client(compute_v1.RegionOperationsClient).wait(
                project=mig.project, region=mig.region, operation=op.name, **self._kw(timeout))
        except requests.Timeout:
            return op  # our deadline came first; the loop reports it

    def wait_healthy(self, change: Change, timeout_s: float) -> None:
        mig = Mig.of(change)
        deadline = time.monotonic() + timeout_s
        interval = self.poll_interval_s
        while True:
            found = self._call(change.address, f"checking that {mig} is stable", lambda: self._get(mig))
            actions = found.current_actions
            pending = {k: getattr(actions, k) for k in compute_v1.InstanceGroupManagerActionsSummary.meta.fields
                       if k != "none" and getattr(actions, k)}
            if found.status.is_stable and not pending:
                return
            if time.monotonic() + interval > deadline:
                doing = ", ".join(f"{k} {v}" for k, v in sorted(pending.items())) or "no actions reported"
                where = f"--zone {mig.zone}" if mig.zone else f"--region {mig.region}"
                raise ProviderError(
                    f"gcp: {mig} not stable after {timeout_s:g}s ({doing}); instances may be waiting on quota "
                    f"or GPU capacity: see `gcloud compute instance-groups managed list-errors {mig.name} "
                    f"{where} --project {mig.project}`", retryable=True, address=change.address)
            time.sleep(interval)
            interval = min(interval * 1.5, 10.0)

    # ------------------------------------------------------------ discovery

    def discover(self, projects: list[str] | None = None, zones: list[str] | None = None,
                 regions: list[str] | None = None) -> Discovered:
        """Pool documents for the MIGs whose instances carry GPUs, and a Location per region.

        With ``zones``/``regions`` only those are listed; otherwise one aggregated list per project.
        """
        notes = [
            "gcp: usdPerGpuHour is an approximate on-demand list price (GPU plus its share of the VM, "
            f"us-central1; spot about {SPOT_FACTOR:g}x): replace it with your negotiated prices",
            f"gcp: nodes.max is the group's autoscaler maximum where it has one, otherwise "
            f"max({DEFAULT_MAX_NODES}, current size): set it to what you are willing to pay for",
        ]
        self._memo = {}
        pools: list[dict[str, Any]] = []
        seen_regions: set[str] = set()
        names: set[str] = set()
        for project in self._projects(projects):
            for mig, body in self._list_migs(project, zones or [], regions or []):
                pool = self._pool_document(mig, body, names, notes)
                if pool is not None:
                    pools.append(pool)
                    seen_regions.add(mig.region_name)
        locations = [_location_document(region) for region in sorted(seen_regions)]
        return Discovered(documents=locations + pools, notes=notes)

    def _list_migs(self, project: str, zones: list[str],
                   regions: list[str]) -> Iterable[tuple[Mig, compute_v1.InstanceGroupManager]]:
        kw = self._kw()
        found: list[tuple[Mig, compute_v1.InstanceGroupManager]] = []

        def zonal(zone: str) -> list[tuple[Mig, compute_v1.InstanceGroupManager]]:
            pager = self._client(compute_v1.InstanceGroupManagersClient).list(project=project, zone=zone, **kw)
            return [(Mig(project, m.name, zone=zone), m) for m in pager]

        def regional(region: str) -> list[tuple[Mig, compute_v1.InstanceGroupManager]]:
            pager = self._client(compute_v1.RegionInstanceGroupManagersClient).list(
                project=project, region=region, **kw)
            return [(Mig(project, m.name, region=region), m) for m in pager]

        for zone in zones:
            found += self._call(f"project/{project}", f"listing managed instance groups in {project}/{zone}",
                                functools.partial(zonal, zone))
        for region in regions:
            found += self._call(f"project/{project}", f"listing managed instance groups in {project}/{region}",
                                functools.partial(regional, region))
        if zones or regions:
            return found

        def aggregated() -> list[tuple[Mig, compute_v1.InstanceGroupManager]]:
            out = []
            pager = self._client(compute_v1.InstanceGroupManagersClient).aggregated_list(project=project, **kw)
            for scope, scoped in pager:
                kind, _, where = scope.partition("/")
                for m in scoped.instance_group_managers:
                    mig = Mig(project, m.name, zone=where) if kind == "zones" else Mig(project, m.name, region=where)
                    out.append((mig, m))
            return out

        return self._call(f"project/{project}", f"listing managed instance groups in project {project}", aggregated)

    def _lookup(self, mig: Mig, what: str, call: Callable[[], T], notes: list[str],
                key: tuple[str, ...] | None = None) -> T | None:
        """A per-group read during discovery, remembered under ``key`` for the rest of this discovery:
        a retryable failure stops discovery, others skip the group with a note."""
        if key is not None and key in self._memo:
            return self._memo[key]  # type: ignore[no-any-return]
        try:
            found: T | None = self._call(f"pool/{mig.name}", f"reading {what} of {mig}", call,
                                         not_found="the group refers to something that no longer exists")
        except ProviderError as exc:
            if exc.retryable:
                raise
            notes.append(f"{exc}; skipped")
            found = None
        if key is not None:
            self._memo[key] = found
        return found

    def _pool_document(self, mig: Mig, body: compute_v1.InstanceGroupManager, names: set[str],
                       notes: list[str]) -> dict[str, Any] | None:
        link = body.instance_template or next((v.instance_template for v in body.versions), "")
        ref = _TEMPLATE.search(link)
        if ref is None:
            notes.append(f"gcp: {mig} has no instance template I can read ({link!r}); skipped")
            return None
        if ref["region"]:
            template = self._lookup(mig, "the instance template", lambda: self._client(
                compute_v1.RegionInstanceTemplatesClient).get(project=ref["project"], region=ref["region"],
                                                              instance_template=ref["name"], **self._kw()), notes,
                key=("template", link))
        else:
            template = self._lookup(mig, "the instance template", lambda: self._client(
                compute_v1.InstanceTemplatesClient).get(project=ref["project"], instance_template=ref["name"],
                                                        **self._kw()), notes, key=("template", link))
        if template is None:
            return None
        props = template.properties
        zone = mig.zone or next((_last(z.zone) for z in body.distribution_policy.zones), f"{mig.region}-a")
        accelerators = [(_last(a.accelerator_type), a.accelerator_count) for a in props.guest_accelerators]
        if not accelerators and props.machine_type:
            machine = self._lookup(mig, f"machine type {_last(props.machine_type)}", lambda: self._client(
                compute_v1.MachineTypesClient).get(project=mig.project, zone=zone,
                                                   machine_type=_last(props.machine_type), **self._kw()), notes,
                key=("machineType", mig.project, _last(props.machine_type)))  # the same GPUs in every zone
            accelerators = [(a.guest_accelerator_type, a.guest_accelerator_count)
                            for a in (machine.accelerators if machine else [])]
        if not accelerators:
            return None  # a CPU-only group is not a GPU pool
        accelerator, per_node = accelerators[0]
        gpu = ACCELERATORS.get(accelerator) or self._gpu_from_description(mig, zone, accelerator, notes)
        if gpu is None:
            notes.append(f"gcp: {mig}: accelerator {accelerator} is not in the GPU catalog; skipped "
                         "(add a GPUType document and a Pool by hand)")
            return None
        spot = props.scheduling.provisioning_model == "SPOT" or bool(props.scheduling.preemptible)
        price = USD_PER_GPU_HOUR.get(gpu)
        if price is None:
            notes.append(f"gcp: no built-in price for {gpu}: set usdPerGpuHour of the pool for {mig}")
        usd = round((price or 0.0) * (SPOT_FACTOR if spot else 1.0), 2)
        spec: dict[str, Any] = {
            "location": f"gcp-{mig.region_name}", "provider": "gcp",
            "gpu": {"type": gpu, "perNode": int(per_node)},
            "nodes": {"min": 0, "max": self._max_nodes(mig, body, notes)},
            "usdPerGpuHour": usd, "spot": spot,
        }
        if mig.zone:
            spec["failureDomain"] = mig.zone
        where = {"zone": mig.zone} if mig.zone else {"region": mig.region}
        spec["target"] = {"gcp": {"project": mig.project, **where, "instanceGroupManager": mig.name}}
        name = _unique(dns1123(mig.name), mig.zone or str(mig.region), names)
        return {"apiVersion": API_VERSION, "kind": "Pool", "metadata": {"name": name}, "spec": spec}

    def _gpu_from_description(self, mig: Mig, zone: str, accelerator: str, notes: list[str]) -> str | None:
        """For accelerator names not in ACCELERATORS: match the accelerator type's description."""
        listed = self._lookup(mig, f"accelerator types of zone {zone}", lambda: list(self._client(
            compute_v1.AcceleratorTypesClient).list(project=mig.project, zone=zone, **self._kw())), notes,
            key=("acceleratorTypes", mig.project, zone)) or []
        description = next((a.description for a in listed if a.name == accelerator), "")
        gpu = match_product(description) if description else None
        return gpu.name if gpu else None

    def _max_nodes(self, mig: Mig, body: compute_v1.InstanceGroupManager, notes: list[str]) -> int:
        fallback = max(DEFAULT_MAX_NODES, int(body.target_size))
        found = _SCOPED.search(body.status.autoscaler or "")
        if found is None:
            return fallback
        ref: dict[str, str] = found.groupdict()

        def read() -> compute_v1.Autoscaler:
            if ref["kind"] == "zones":
                return self._client(compute_v1.AutoscalersClient).get(
                    project=ref["project"], zone=ref["scope"], autoscaler=ref["name"], **self._kw())
            return self._client(compute_v1.RegionAutoscalersClient).get(
                project=ref["project"], region=ref["scope"], autoscaler=ref["name"], **self._kw())

        auto = self._lookup(mig, "the autoscaler", read, notes)
        if auto is None:
            return fallback
        notes.append(f"gcp: {mig} has autoscaler {ref['name']} (max {auto.autoscaling_policy.max_num_replicas}): "
                     "it overrides the sizes placer sets; turn it off (mode OFF) or leave the pool out")
        return int(auto.autoscaling_policy.max_num_replicas)

    def _projects(self, projects: list[str] | None) -> list[str]:
        chosen = list(projects or self.projects)
        if not chosen and self._options is None:
            try:
                _, default = google.auth.default()
            except auth_exc.DefaultCredentialsError as exc:
                raise ProviderError(f"gcp: discovery needs a project and credentials ({exc}); run "
                                    "`gcloud auth application-default login`, or name the projects") from exc
            chosen = [default] if default else []
        if not chosen:
            raise ProviderError("gcp: discovery needs at least one project: name it, or set GOOGLE_CLOUD_PROJECT")
        return chosen
