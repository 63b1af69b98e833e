"""A fake Compute Engine REST API (the paths google-cloud-compute sends), for provider tests.

It holds managed instance groups (zonal and regional), instance templates (global and
regional), machine types, accelerator types, autoscalers and operations in memory, so a
resize changes ``targetSize`` and a later GET reads it back. Fault knobs: the next N
requests answer 429/503 (with a Retry-After header if asked), or answer after a delay longer than the client's timeout;
each list page after the first answers 429 once (``state.throttle_pages``);
operations stay RUNNING for K polls, PENDING (the group's size unchanged) until released, or finish DONE
with an error; a resized group stays
unstable for K reads. Unknown objects answer 404 with Google's error JSON.

Paths answered (all under ``/compute/v1/projects/{project}``)::

    GET  aggregated/instanceGroupManagers
    GET  {zones|regions}/{scope}/instanceGroupManagers[/{name}]
    POST {zones|regions}/{scope}/instanceGroupManagers/{name}/resize?size=N
    GET  {zones|regions}/{scope}/instanceGroupManagers/{name}/listErrors
    GET  global/instanceTemplates/{name}, regions/{region}/instanceTemplates/{name}
    GET  zones/{zone}/machineTypes/{name}, zones/{zone}/acceleratorTypes
    GET  {zones|regions}/{scope}/autoscalers/{name}
    GET  {zones|regions}/{scope}/operations/{name}   POST .../operations/{name}/wait
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.servers.loopback import LoopbackServer

BASE = "https://www.googleapis.com/compute/v1"
PREFIX = r"^/compute/v1/projects/(?P<project>[^/]+)/"
SCOPE = r"(?P<kind>zones|regions)/(?P<scope>[^/]+)/"

REASONS = {400: "invalid", 403: "forbidden", 404: "notFound", 429: "rateLimitExceeded",
           500: "backendError", 503: "backendError"}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]


@dataclass
class Fault:
    """Answer the next ``remaining`` matching requests with ``status`` or after ``delay_s``."""

    remaining: int
    status: int | None = None
    delay_s: float = 0.0
    path_contains: str | None = None
    retry_after: int | None = None  # a Retry-After header on the answer


@dataclass
class Operation:
    body: dict[str, Any]
    polls_left: int
    error: tuple[str, str, int] | None  # (code, message, httpErrorStatusCode)
    polls: int = 0
    # a PENDING one (``operations_pending``): the group and size it sets once carried out
    pending: tuple[tuple[str, str, str, str], int] | None = None


@dataclass
class ComputeState:
    """Everything the fake holds; tests seed it through FakeCompute's helpers."""

    migs: dict[tuple[str, str, str, str], dict[str, Any]] = field(default_factory=dict)
    templates: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    machine_types: dict[str, dict[str, Any]] = field(default_factory=dict)
    accelerator_types: dict[str, dict[str, Any]] = field(default_factory=dict)
    autoscalers: dict[tuple[str, str, str, str], dict[str, Any]] = field(default_factory=dict)
    operations: dict[tuple[str, str, str, str], Operation] = field(default_factory=dict)
    unstable: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    # knobs for operations created by later resizes
    op_running_polls: int = 0
    op_error: tuple[str, str, int] | None = None
    op_pending: bool = False
    # (code, message): groups resized from now on create no instance (unstable for ever), listErrors saying why
    instance_error: tuple[str, str] | None = None
    errors: dict[tuple[str, str, str, str], list[dict[str, Any]]] = field(default_factory=dict)
    settle_polls: int = 0
    page_size: int = 500
    op_counter: int = 0
    unreachable: list[str] = field(default_factory=list)  # scopes the aggregated list could not reach
    stuck_token: bool = False  # every list page points back at the first (a faulty proxy)
    # each list page after the first answers 429 the first time it is asked for (a project whose read
    # quota a long listing spends page after page)
    throttle_pages: bool = False
    throttled: set[tuple[str, str]] = field(default_factory=set)


def google_error(status: int, message: str) -> dict[str, Any]:
    reason = REASONS.get(status, "error")
    domain = "usageLimits" if status == 429 else "global"
    return {"error": {"code": status, "message": message,
                      "errors": [{"message": message, "domain": domain, "reason": reason}]}}


def _copy(body: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(body)


class _Reply(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _not_found(resource: str) -> _Reply:
    return _Reply(404, google_error(404, f"The resource '{resource}' was not found"))


class FakeCompute(LoopbackServer):
    """The server: ``with FakeCompute() as gcp: GcpProvider(api_endpoint=gcp.endpoint)``."""

    thread_name = "fake-compute"

    def __init__(self) -> None:
        super().__init__()
        self.state = ComputeState()
        self._lock = threading.Lock()

    # ------------------------------------------------------------ lifecycle

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _make_handler(self)

    @property
    def endpoint(self) -> str:
        return self.url

    # ------------------------------------------------------------ seeding

    def add_template(self, project: str, name: str, machine_type: str, *,
                     accelerators: list[tuple[str, int]] | None = None, spot: bool = False,
                     preemptible: bool = False, region: str | None = None) -> str:
        where = f"regions/{region}" if region else "global"
        link = f"{BASE}/projects/{project}/{where}/instanceTemplates/{name}"
        scheduling: dict[str, Any] = {"preemptible": preemptible, "automaticRestart": not (spot or preemptible)}
        if spot:
            scheduling["provisioningModel"] = "SPOT"
        props: dict[str, Any] = {"machineType": machine_type, "scheduling": scheduling}
        if accelerators:
            props["guestAccelerators"] = [{"acceleratorType": t, "acceleratorCount": n} for t, n in accelerators]
        body: dict[str, Any] = {"kind": "compute#instanceTemplate", "name": name, "selfLink": link,
                                "id": str(abs(hash(link)) % 10**12), "properties": props}
        if region:
            body["region"] = f"{BASE}/projects/{project}/regions/{region}"
        with self._lock:
            self.state.templates[(project, region or "global", name)] = body
        return link

    def add_machine_type(self, name: str, accelerators: list[tuple[str, int]] | None = None) -> None:
        body: dict[str, Any] = {"kind": "compute#machineType", "name": name, "guestCpus": 12}
        if accelerators:
            body["accelerators"] = [{"guestAcceleratorType": t, "guestAcceleratorCount": n} for t, n in accelerators]
        with self._lock:
            self.state.machine_types[name] = body

    def add_accelerator_type(self, name: str, description: str) -> None:
        with self._lock:
            self.state.accelerator_types[name] = {"kind": "compute#acceleratorType", "name": name,
                                                  "description": description, "maximumCardsPerInstance": 8}

    def add_mig(self, project: str, name: str, template_link: str, *, zone: str | None = None,
                region: str | None = None, target_size: int = 0, autoscaler_max: int | None = None) -> None:
        assert (zone is None) != (region is None), "a group is zonal or regional"
        kind, scope = ("zones", zone) if zone else ("regions", region)
        assert scope is not None
        scope_link = f"{BASE}/projects/{project}/{kind}/{scope}"
        body: dict[str, Any] = {
            "kind": "compute#instanceGroupManager", "name": name,
            "id": str(abs(hash((project, kind, scope, name))) % 10**12),
            "selfLink": f"{scope_link}/instanceGroupManagers/{name}",
            "baseInstanceName": name, "instanceTemplate": template_link,
            "versions": [{"instanceTemplate": template_link}],
            "targetSize": target_size,
            "status": {"isStable": True},
            "currentActions": {"none": target_size},
            ("zone" if zone else "region"): scope_link,
        }
        if region:
            body["distributionPolicy"] = {"zones": [{"zone": f"{BASE}/projects/{project}/zones/{region}-{z}"}
                                                    for z in ("b", "c")]}
        if autoscaler_max is not None:
            auto = f"{name}-autoscaler"
            link = f"{scope_link}/autoscalers/{auto}"
            body["status"]["autoscaler"] = link
            with self._lock:
                self.state.autoscalers[(project, kind, scope, auto)] = {
                    "kind": "compute#autoscaler", "name": auto, "selfLink": link, "target": body["selfLink"],
                    "autoscalingPolicy": {"minNumReplicas": 0, "maxNumReplicas": autoscaler_max, "mode": "ON"}}
        with self._lock:
            self.state.migs[(project, kind, scope, name)] = body

    # ------------------------------------------------------------ knobs

    def fail_next(self, n: int, status: int, path_contains: str | None = None, *,
                  retry_after: int | None = None) -> None:
        with self._lock:
            self.state.faults.append(Fault(n, status=status, path_contains=path_contains, retry_after=retry_after))

    def delay_next(self, n: int, seconds: float, path_contains: str | None = None) -> None:
        with self._lock:
            self.state.faults.append(Fault(n, delay_s=seconds, path_contains=path_contains))

    def operations_run_for(self, polls: int) -> None:
        """Operations created from now on answer RUNNING for ``polls`` polls, then DONE."""
        self.state.op_running_polls = polls

    def operations_pending(self) -> None:
        """Resizes from now on answer an operation PENDING (GCP queues it behind the group's other work), the
        group keeping its size, until ``finish_operations``: each poll or wait answers it still PENDING, at
        once (``delay_next`` on "/wait" holds the waits, as GCP holds one up to 2 minutes)."""
        with self._lock:
            self.state.op_pending = True

    def finish_operations(self) -> None:
        """Every PENDING operation is carried out, its group taking the size it asked for, and DONE; resizes
        from now on run as before."""
        with self._lock:
            self.state.op_pending = False
            for op in self.state.operations.values():
                if op.pending is not None:
                    key, size = op.pending
                    op.pending = None
                    if op.error is None:
                        self._take_size(key, size)
                    self._finish(op)

    def operations_fail(self, code: str, message: str, http_status: int = 403) -> None:
        """Operations created from now on finish DONE with this error (the resize is not applied)."""
        self.state.op_error = (code, message, http_status)

    def instances_fail(self, code: str, message: str) -> None:
        """A group resized from now on takes its new size, but creates none of the instances it adds (as
        a MIG in a zone out of its GPUs): it reads unstable, creating them, for ever, and its listErrors
        says ``code: message`` of each try."""
        self.state.instance_error = (code, message)

    def settle_after(self, reads: int) -> None:
        """A group resized from now on reads as unstable (instances creating) for ``reads`` GETs."""
        self.state.settle_polls = reads

    # ------------------------------------------------------------ inspection

    def target_size(self, project: str, name: str, *, zone: str | None = None, region: str | None = None) -> int:
        kind, scope = ("zones", zone) if zone else ("regions", region)
        return int(self.state.migs[(project, kind, str(scope), name)]["targetSize"])

    def requests_to(self, path_contains: str, method: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.state.requests
                    if path_contains in r.path and (method is None or r.method == method)]

    # ------------------------------------------------------------ dispatch

    def handle(self, method: str, raw_path: str) -> tuple[int, dict[str, Any], float, dict[str, str]]:
        """Return (status, body, delay before answering, extra headers)."""
        parts = urlsplit(raw_path)
        path, query = parts.path, parse_qs(parts.query)
        delay = 0.0
        with self._lock:
            self.state.requests.append(Request(method, path, query))
            for fault in self.state.faults:
                if fault.remaining > 0 and (fault.path_contains is None or fault.path_contains in path):
                    fault.remaining -= 1
                    if fault.status is not None:
                        msg = ("Quota exceeded for quota metric 'Queries' and limit 'Queries per minute'"
                               if fault.status == 429 else "Backend Error")
                        extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                        return fault.status, google_error(fault.status, msg), 0.0, extra
                    delay = fault.delay_s
                    break
            page = query.get("pageToken", [""])[0]
            if self.state.throttle_pages and page and (path, page) not in self.state.throttled:
                self.state.throttled.add((path, page))
                return 429, google_error(429, "Quota exceeded for quota metric 'Queries' and limit 'Queries per "
                                              "minute'"), 0.0, {}
            try:
                return 200, self._route(method, path, query), delay, {}
            except _Reply as reply:
                return reply.status, reply.body, delay, {}

    def _route(self, method: str, path: str, query: dict[str, list[str]]) -> dict[str, Any]:
        m = re.match(PREFIX + r"aggregated/instanceGroupManagers$", path)
        if m and method == "GET":
            return self._aggregated(m["project"], query)
        m = re.match(PREFIX + SCOPE + r"instanceGroupManagers$", path)
        if m and method == "GET":
            items = [b for (p, k, s, _), b in sorted(self.state.migs.items())
                     if (p, k, s) == (m["project"], m["kind"], m["scope"])]
            return self._page(items, query, "compute#instanceGroupManagerList")
        m = re.match(PREFIX + SCOPE + r"instanceGroupManagers/(?P<name>[^/]+)(?P<resize>/resize|/listErrors)?$", path)
        if m:
            key = (m["project"], m["kind"], m["scope"], m["name"])
            if key not in self.state.migs:
                raise _not_found(path.removeprefix("/compute/v1/").removesuffix(m["resize"] or ""))
            if m["resize"] == "/listErrors" and method == "GET":
                return self._page(list(reversed(self.state.errors.get(key, []))), query,
                                  "compute#instanceGroupManagersListErrorsResponse")
            if m["resize"] == "/resize" and method == "POST":
                return self._resize(key, query)
            if method == "GET":
                return self._read_mig(key)
        m = re.match(PREFIX + r"(?:global|regions/(?P<region>[^/]+))/instanceTemplates/(?P<name>[^/]+)$", path)
        if m and method == "GET":
            return self._lookup(self.state.templates, (m["project"], m["region"] or "global", m["name"]), path)
        m = re.match(PREFIX + r"zones/(?P<zone>[^/]+)/machineTypes/(?P<name>[^/]+)$", path)
        if m and method == "GET":
            body = dict(self._lookup(self.state.machine_types, m["name"], path))
            return {**body, "zone": m["zone"]}
        m = re.match(PREFIX + r"zones/(?P<zone>[^/]+)/acceleratorTypes$", path)
        if m and method == "GET":
            items = [{**b, "zone": f"{BASE}/projects/{m['project']}/zones/{m['zone']}"}
                     for _, b in sorted(self.state.accelerator_types.items())]
            return self._page(items, query, "compute#acceleratorTypeList")
        m = re.match(PREFIX + SCOPE + r"autoscalers/(?P<name>[^/]+)$", path)
        if m and method == "GET":
            return self._lookup(self.state.autoscalers, (m["project"], m["kind"], m["scope"], m["name"]), path)
        m = re.match(PREFIX + SCOPE + r"operations/(?P<name>[^/]+)(?P<wait>/wait)?$", path)
        if m and ((method == "GET" and not m["wait"]) or (method == "POST" and m["wait"])):
            return self._poll(m["project"], m["kind"], m["scope"], m["name"], path)
        raise _Reply(404, google_error(404, f"fake compute: no route for {method} {path}"))

    def _lookup(self, table: dict[Any, dict[str, Any]], key: Any, path: str) -> dict[str, Any]:
        if key not in table:
            raise _not_found(path.removeprefix("/compute/v1/"))
        return table[key]

    def _page(self, items: list[dict[str, Any]], query: dict[str, list[str]], kind: str) -> dict[str, Any]:
        start = int(query.get("pageToken", ["0"])[0] or 0)
        size = min(int(query.get("maxResults", [str(self.state.page_size)])[0]), self.state.page_size)
        out: dict[str, Any] = {"kind": kind, "items": items[start:start + size]}
        if start + size < len(items):
            out["nextPageToken"] = str(start + size)
        return out

    def _aggregated(self, project: str, query: dict[str, list[str]]) -> dict[str, Any]:
        scopes = sorted({(k, s) for (p, k, s, _) in self.state.migs if p == project})
        start = int(query.get("pageToken", ["0"])[0] or 0)
        chunk = scopes[start:start + self.state.page_size]
        items: dict[str, Any] = {}
        for kind, scope in chunk:
            items[f"{kind}/{scope}"] = {"instanceGroupManagers": [
                b for (p, k, s, _), b in sorted(self.state.migs.items()) if (p, k, s) == (project, kind, scope)]}
        # the real API also lists empty scopes, with a warning instead of items
        items["zones/antarctica-south1-a"] = {"warning": {"code": "NO_RESULTS_ON_PAGE",
                                                          "message": "There are no results for scope"}}
        for scope in self.state.unreachable:  # as the API reports a zone it could not reach
            items[scope] = {"warning": {"code": "UNREACHABLE", "message": f"{scope} is unreachable"}}
        out: dict[str, Any] = {"kind": "compute#instanceGroupManagerAggregatedList", "items": items}
        if self.state.unreachable:
            out["unreachables"] = list(self.state.unreachable)
        if start + self.state.page_size < len(scopes):
            out["nextPageToken"] = str(start + self.state.page_size)
        if self.state.stuck_token:
            out["nextPageToken"] = "0"
        return out

    def _read_mig(self, key: tuple[str, str, str, str]) -> dict[str, Any]:
        body = _copy(self.state.migs[key])
        left = self.state.unstable.get(key, 0)
        if left > 0:
            self.state.unstable[key] = left - 1
            body["status"]["isStable"] = False
            body["currentActions"] = {"none": 0, "creating": body["targetSize"]}
        return body

    def _resize(self, key: tuple[str, str, str, str], query: dict[str, list[str]]) -> dict[str, Any]:
        raw = query.get("size", [""])[0]
        if not raw.lstrip("-").isdigit() or int(raw) < 0:
            raise _Reply(400, google_error(400, f"Invalid value for field 'size': '{raw}'. Must be >= 0"))
        project, kind, scope, _ = key
        mig = self.state.migs[key]
        if self.state.op_error is None and not self.state.op_pending:
            self._take_size(key, int(raw))
        self.state.op_counter += 1
        op_name = f"operation-{self.state.op_counter:04d}-resize"
        scope_link = f"{BASE}/projects/{project}/{kind}/{scope}"
        body: dict[str, Any] = {
            "kind": "compute#operation", "name": op_name, "id": str(10**9 + self.state.op_counter),
            "operationType": "compute.instanceGroupManagers.resize", "targetLink": mig["selfLink"],
            "status": "RUNNING", "progress": 0, "selfLink": f"{scope_link}/operations/{op_name}",
            "zone" if kind == "zones" else "region": scope_link,
        }
        op = Operation(body, self.state.op_running_polls, self.state.op_error)
        if self.state.op_pending:
            op.body["status"], op.pending = "PENDING", (key, int(raw))
        self.state.operations[(project, kind, scope, op_name)] = op
        if op.polls_left == 0 and op.pending is None:
            self._finish(op)
        return _copy(op.body)

    def _take_size(self, key: tuple[str, str, str, str], size: int) -> None:
        """The group of ``key`` resized to ``size`` (its instances created as the knobs say)."""
        mig = self.state.migs[key]
        mig["targetSize"] = size
        mig["currentActions"] = {"none": size}
        self.state.unstable[key] = self.state.settle_polls
        if self.state.instance_error is not None:
            code, message = self.state.instance_error
            self.state.unstable[key] = 10**9
            when = time.strftime("%Y-%m-%dT%H:%M:%S.000-00:00", time.gmtime())
            self.state.errors.setdefault(key, []).append({
                "error": {"code": code, "message": message}, "timestamp": when,
                "instanceActionDetails": {"action": "CREATING",
                                          "instance": f"{mig['selfLink'].rsplit('/', 2)[0]}/instances/{key[3]}-x1"}})

    def _finish(self, op: Operation) -> None:
        op.body["status"] = "DONE"
        op.body["progress"] = 100
        if op.error is not None:
            code, message, http_status = op.error
            op.body["error"] = {"errors": [{"code": code, "message": message}]}
            op.body["httpErrorStatusCode"] = http_status
            op.body["httpErrorMessage"] = REASONS.get(http_status, "error").upper()

    def _poll(self, project: str, kind: str, scope: str, name: str, path: str) -> dict[str, Any]:
        op = self.state.operations.get((project, kind, scope, name))
        if op is None:
            raise _not_found(path.removeprefix("/compute/v1/").removesuffix("/wait"))
        op.polls += 1
        if op.body["status"] != "DONE" and op.pending is None:
            op.polls_left -= 1
            if op.polls_left <= 0:
                self._finish(op)
        return _copy(op.body)


def _make_handler(fake: FakeCompute) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            status, body, delay, extra = fake.handle(self.command, self.path)
            if delay:
                time.sleep(delay)
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                self.close_connection = True

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler
