"""A fake kube-apiserver on 127.0.0.1 for tests: the wire protocol of what placer and kubectl use.

It serves discovery (/version, /api, /apis, /api/v1, /apis/apps/v1; /openapi/* answer 404,
which kubectl tolerates), Nodes (list, get) and Deployments (list with labelSelector, get,
create, PUT with resourceVersion checks, PATCH as server-side apply or merge patch, DELETE
with preconditions). Errors are ``kind: Status`` objects with the matching HTTP code.

Server-side apply is modelled at the level of leaf fields: each manager owns the leaves it
applied (lists are atomic); applying a different value to a leaf another manager owns is a
409 conflict unless ``force=true``, which takes the field over; leaves a manager stops
applying are removed when nobody else owns them. ``resourceVersion`` increases on every
write, ``metadata.generation`` when the spec changes. Knobs: ``ready_after_polls`` (a
Deployment reports itself rolled out after that many reads; 0 at once, None never; ``roll_out``
makes one that never would report itself rolled out, as pods do once what held them is fixed),
``namespaces`` (None: every namespace exists; else only these, and a Deployment made in another is a
404 ``namespaces "X" not found``, as the real server answers), ``fail_next`` (the next N requests answer 429 with Retry-After, 503 or 500), ``throttle_pages`` (each
page of a listing answers 429 the first time it is asked for), ``delay_s``
(slow responses), ``gpu_rollouts`` (pods scheduled on the nodes' GPUs: a rollout with no room is stuck,
``remove_node`` leaves pods pending). ``write_kubeconfig`` points kubectl and the Python client at servers.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.servers.loopback import LoopbackServer

KUBE_VERSION = {"major": "1", "minor": "33", "gitVersion": "v1.33.0", "gitCommit": "fake",
                "gitTreeState": "clean", "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.2",
                "compiler": "gc", "platform": "linux/amd64"}

_VERBS_RW = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
CORE_RESOURCES = [
    {"name": "nodes", "singularName": "node", "namespaced": False, "kind": "Node",
     "verbs": ["get", "list"], "shortNames": ["no"]},
    {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace",
     "verbs": ["get", "list"], "shortNames": ["ns"]},
]
APPS_RESOURCES = [
    {"name": "deployments", "singularName": "deployment", "namespaced": True, "kind": "Deployment",
     "verbs": _VERBS_RW, "shortNames": ["deploy"], "categories": ["all"]},
    {"name": "deployments/status", "singularName": "", "namespaced": True, "kind": "Deployment",
     "verbs": ["get"]},
]



def _patch_operation(group: str, kind: str) -> dict[str, Any]:
    params = ["dryRun", "fieldManager", "fieldValidation", "force", "pretty"]
    return {"operationId": f"patch{kind}", "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": group, "version": "v1", "kind": kind},
            "parameters": [{"name": p, "in": "query", "schema": {"type": "string"}} for p in params],
            "responses": {"200": {"description": "OK"}}}


# Just enough OpenAPI v3 for kubectl's query-parameter check (does PATCH accept fieldValidation?),
# so `kubectl apply --server-side` validates on the server instead of downloading schemas.
OPENAPI_V3: dict[str, dict[str, Any]] = {
    "api/v1": {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": {
        "/api/v1/nodes/{name}": {"patch": _patch_operation("", "Node")}}},
    "apis/apps/v1": {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": {
        "/apis/apps/v1/namespaces/{namespace}/deployments/{name}": {"patch": _patch_operation("apps", "Deployment")}}},
}
OPENAPI_HASH = "0123456789abcdef"

# reason and message of injected faults, as the real API server words them
FAULTS: dict[int, tuple[str, str]] = {
    403: ("Forbidden", 'deployments.apps is forbidden: User "fake" cannot patch resource "deployments"'),
    404: ("NotFound", 'namespaces "ml" not found'),
    409: ("Conflict", "Operation cannot be fulfilled: the object has been modified; please apply your changes "
                      "to the latest version and try again"),
    422: ("Invalid", 'Deployment.apps "x" is invalid: spec.replicas: Invalid value: -1: must be greater than '
                     "or equal to 0"),
    429: ("TooManyRequests", "Too many requests, please try again later."),
    500: ("InternalError", 'Internal error occurred: an error on the server ("injected fault") has prevented '
                           "the request from succeeding"),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
}

Path_ = tuple[str, ...]
_MISSING = object()
# the leaves server-side apply tracks: labels, annotations and the spec
_TRACKED_ROOTS = (("metadata", "labels"), ("metadata", "annotations"), ("spec",))


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_object(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``kind: Status`` failure, as the API server writes it."""
    out: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": message, "reason": reason, "code": code}
    if details:
        out["details"] = details
    return out


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.body = status_object(code, reason, message, details)
        self.headers = headers or {}


def _not_found(resource: str, name: str) -> ApiError:
    group = "apps" if resource == "deployments" else ""
    qualified = f"{resource}.{group}" if group else resource
    return ApiError(404, "NotFound", f'{qualified} "{name}" not found',
                    {"name": name, "group": group, "kind": resource})


# ---------------------------------------------------------------- field paths (server-side apply)


def leaf_paths(obj: Any, prefix: Path_ = ()) -> dict[Path_, Any]:
    """Every leaf of ``obj`` under the tracked roots: maps recurse, lists and scalars are leaves."""
    out: dict[Path_, Any] = {}
    if prefix == ():
        for root in _TRACKED_ROOTS:
            value = get_path(obj, root)
            if value is not _MISSING:
                out.update(leaf_paths(value, root))
        return out
    if isinstance(obj, dict) and obj:
        for key, value in obj.items():
            out.update(leaf_paths(value, (*prefix, str(key))))
    else:
        out[prefix] = obj
    return out


def get_path(obj: Any, path: Path_) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return _MISSING
        obj = obj[key]
    return obj


def set_path(obj: dict[str, Any], path: Path_, value: Any) -> None:
    for key in path[:-1]:
        nxt = obj.get(key)
        if not isinstance(nxt, dict):
            nxt = obj[key] = {}
        obj = nxt
    obj[path[-1]] = copy.deepcopy(value)


def del_path(obj: dict[str, Any], path: Path_) -> None:
    """Delete a leaf and the maps it leaves empty (never a top-level key)."""
    chain = [obj]
    for key in path[:-1]:
        nxt = chain[-1].get(key)
        if not isinstance(nxt, dict):
            return
        chain.append(nxt)
    chain[-1].pop(path[-1], None)
    for depth in range(len(path) - 1, 1, -1):
        if not chain[depth]:
            chain[depth - 1].pop(path[depth - 1], None)


def fields_v1(paths: set[Path_]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in sorted(paths):
        node = out
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return out


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ---------------------------------------------------------------- label selectors


def _selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for term in (t.strip() for t in re.split(r",(?![^()]*\))", selector) if t.strip()):
        m = re.fullmatch(r"(\S+?)\s+(in|notin)\s+\(([^)]*)\)", term)
        if m:
            values = {v.strip() for v in m.group(3).split(",")}
            present = m.group(1) in labels and labels[m.group(1)] in values
            if present != (m.group(2) == "in"):
                return False
        elif "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (s.strip() for s in re.split(r"==?", term, maxsplit=1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _field_selector_matches(selector: str, obj: dict[str, Any]) -> bool:
    for term in (t.strip() for t in selector.split(",") if t.strip()):
        negate = "!=" in term
        key, value = (s.strip() for s in re.split(r"!=|==?", term, maxsplit=1))
        actual = get_path(obj, tuple(key.split(".")))
        if (str(actual) == value) == negate:
            return False
    return True


# ---------------------------------------------------------------- validation


_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def validate_deployment(obj: dict[str, Any]) -> None:
    """The checks of the real API server that a wrong manifest is most likely to trip (422 Invalid)."""
    causes: list[dict[str, str]] = []

    def bad(reason: str, fld: str, message: str) -> None:
        causes.append({"reason": reason, "message": message, "field": fld})

    name = str(get_path(obj, ("metadata", "name")) or "")
    if not _DNS1123_SUBDOMAIN.match(name) or len(name) > 253:
        bad("FieldValueInvalid", "metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 subdomain')
    spec: dict[str, Any] = obj["spec"] if isinstance(obj.get("spec"), dict) else {}
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        bad("FieldValueInvalid", "spec.replicas", f"Invalid value: {replicas!r}: must be greater than or equal to 0")
    match = get_path(spec, ("selector", "matchLabels"))
    template_labels = get_path(spec, ("template", "metadata", "labels"))
    if not isinstance(match, dict) or not match:
        bad("FieldValueRequired", "spec.selector", "Required value")
    elif not isinstance(template_labels, dict) or any(template_labels.get(k) != v for k, v in match.items()):
        bad("FieldValueInvalid", "spec.template.metadata.labels",
            "Invalid value: `selector` does not match template `labels`")
    containers = get_path(spec, ("template", "spec", "containers"))
    if not isinstance(containers, list) or not containers:
        bad("FieldValueRequired", "spec.template.spec.containers", "Required value")
    else:
        for i, container in enumerate(containers):
            if not isinstance(container, dict) or not container.get("name"):
                bad("FieldValueRequired", f"spec.template.spec.containers[{i}].name", "Required value")
            elif not container.get("image"):
                bad("FieldValueRequired", f"spec.template.spec.containers[{i}].image", "Required value")
            else:
                limits = get_path(container, ("resources", "limits"))
                requests = get_path(container, ("resources", "requests"))
                for res in ("nvidia.com/gpu",):
                    lim = limits.get(res) if isinstance(limits, dict) else None
                    req = requests.get(res) if isinstance(requests, dict) else None
                    if lim is not None and req is not None and str(lim) != str(req):
                        bad("FieldValueInvalid", f"spec.template.spec.containers[{i}].resources.requests",
                            f"Invalid value: {req!r}: must be equal to {res} limit of {lim}")
    if causes:
        message = f'Deployment.apps "{name}" is invalid: ' + ", ".join(f"{c['field']}: {c['message']}" for c in causes)
        raise ApiError(422, "Invalid", message, {"name": name, "group": "apps", "kind": "Deployment",
                                                 "causes": causes})


# ---------------------------------------------------------------- the store


@dataclass
class _Pods:
    """A Deployment's pods as ``gpu_rollouts`` schedules them: those of its settled template (the old
    ReplicaSet), and, while a rollout runs or is stuck, its new template's, made and running."""
    template: Any
    gpus: int
    count: int
    new_template: Any = None
    new_gpus: int = 0
    made: int = 0
    running: int = 0
    stuck_since: str | None = None
    stale: tuple[dict[str, Any], int] | None = None  # a stuck status still shown, and for how many reads
    lost: int = 0  # settled pods a removed node took, pending until a node has room for them (``remove_node``)
    lost_since: str | None = None


@dataclass
class _Record:
    obj: dict[str, Any]
    owners: dict[str, tuple[str, set[Path_]]] = field(default_factory=dict)
    polls_left: int | None = 0
    pods: _Pods | None = None


@dataclass
class Fault:
    remaining: int
    status: int
    retry_after: int | None
    path_contains: str | None
    method: str | None = None


@dataclass(frozen=True)
class RequestLog:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str | None
    user_agent: str | None
    body: str = ""


class FakeKubeApiServer(LoopbackServer):
    """A kube-apiserver that keeps Nodes and Deployments in memory. Start with ``start()``."""

    thread_name = "fake-kube-apiserver"

    def __init__(self, *, ready_after_polls: int | None = 0, delay_s: float = 0.0) -> None:
        super().__init__()
        self.ready_after_polls = ready_after_polls
        self.delay_s = delay_s
        self.delay_path_contains: str | None = None
        self.page_size: int | None = None  # list at most this many items a page (as a ?limit= would), then continue
        self.repeat_continue = False  # a faulty server: every page's continue token is the first one
        self.expire_continue = 0  # answer this many continued list requests 410 Expired (the token is too old)
        # answer each continued list request 429 (Retry-After 0) the first time its token comes: an API
        # server whose priority and fairness throttles a long listing page after page
        self.throttle_pages = False
        self._throttled: set[str] = set()
        self.namespaces: set[str] | None = None  # the namespaces that exist (None: every one)
        self.requests: list[RequestLog] = []
        self._lock = threading.RLock()
        self._rv = 1000
        self._nodes: dict[str, dict[str, Any]] = {}
        self._deployments: dict[tuple[str, str], _Record] = {}
        self._faults: list[Fault] = []
        # a rollout schedules its pods on the GPUs of the nodes its nodeSelector matches, with its
        # strategy (maxSurge, maxUnavailable; Kubernetes' default 25% each), as the Deployment
        # controller and the scheduler would: one that cannot go on is stuck (Progressing False,
        # ProgressDeadlineExceeded at once), and the GPUs its node set held at most are in peak_gpus
        self.gpu_rollouts = False
        # reads after a stuck rollout's spec changed that still show it stuck (the controller has
        # seen the new generation, and no old pod has gone yet): the real one takes a sync or two
        self.stale_polls = 1
        self.peak_gpus: dict[tuple[str, str], int] = {}

    # ------------------------------------------------------------ lifecycle

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(_Handler):
            fake = server

        return Handler

    # ------------------------------------------------------------ knobs

    def fail_next(self, count: int, status: int = 429, *, retry_after: int | None = 1,
                  path_contains: str | None = None, method: str | None = None) -> None:
        """The next ``count`` requests (with ``method``, whose path contains ``path_contains``) answer
        ``status`` with a Status object; 429s carry ``Retry-After``."""
        with self._lock:
            self._faults.append(Fault(count, status, retry_after if status == 429 else None, path_contains, method))

    def slow(self, delay_s: float, path_contains: str | None = None) -> None:
        self.delay_s, self.delay_path_contains = delay_s, path_contains

    # ------------------------------------------------------------ state for tests

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def add_node(self, name: str, *, labels: dict[str, str] | None = None, gpus: int = 0,
                 taints: list[dict[str, str]] | None = None, provider_id: str | None = None,
                 ready: bool = True, unschedulable: bool = False) -> dict[str, Any]:
        resources = {"cpu": "96", "memory": "1056000Mi", "pods": "110"}
        if gpus:
            resources["nvidia.com/gpu"] = str(gpus)
        node: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": str(uuid.uuid4()), "creationTimestamp": _now(),
                         "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                    **(labels or {})}},
            "spec": {},
            "status": {"capacity": dict(resources), "allocatable": dict(resources),
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "reason": "KubeletReady" if ready else "KubeletNotReady"}]},
        }
        if taints:
            node["spec"]["taints"] = taints
        if provider_id:
            node["spec"]["providerID"] = provider_id
        if unschedulable:
            node["spec"]["unschedulable"] = True
        with self._lock:
            node["metadata"]["resourceVersion"] = self._next_rv()
            self._nodes[name] = node
            if any(r.pods is not None and r.pods.lost for r in self._deployments.values()):
                self._reschedule_settled()
        return copy.deepcopy(node)

    def remove_node(self, name: str) -> None:
        """The node dies (it is gone from the API): with ``gpu_rollouts``, the pods of settled Deployments
        that the GPUs left on their nodes cannot hold are pending, each such Deployment reporting fewer
        replicas available, its Available condition False where below its minimum, while its Progressing
        condition still says its rollout finished (NewReplicaSetAvailable), as the controller leaves it."""
        with self._lock:
            del self._nodes[name]
            self._reschedule_settled()

    def _reschedule_settled(self) -> None:
        """Place the pods of each settled Deployment (no rollout running or stuck) on its nodes' GPUs, in
        the order they were made: those that do not fit are ``lost``, those that fit again are not."""
        if not self.gpu_rollouts:
            return
        used: dict[frozenset[str], int] = {}
        for rec in self._deployments.values():
            pods = rec.pods
            if pods is None:
                continue
            nodes = self._node_set(pods.template)
            if pods.new_template is not None or pods.stuck_since is not None:
                used[nodes] = used.get(nodes, 0) + pods.count * pods.gpus + pods.running * pods.new_gpus
                continue
            capacity = sum(int(self._nodes[n]["status"]["allocatable"].get("nvidia.com/gpu", 0)) for n in nodes)
            free = capacity - used.get(nodes, 0)
            fits = pods.count if not pods.gpus else min(pods.count, max(0, free) // pods.gpus)
            used[nodes] = used.get(nodes, 0) + fits * pods.gpus
            lost = pods.count - fits
            if lost and not pods.lost:
                pods.lost_since = _now()
            pods.lost = lost

    def seed_deployment(self, obj: dict[str, Any], manager: str = "kubectl-create") -> dict[str, Any]:
        """Create a Deployment directly, as another tool (``manager``, operation Update) would."""
        with self._lock:
            return self._create(copy.deepcopy(obj), manager)

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored Deployment (without counting as a poll), or None."""
        with self._lock:
            rec = self._deployments.get((namespace, name))
            return self._render(rec, poll=False) if rec else None

    def roll_out(self, namespace: str, name: str) -> None:
        """The stored Deployment's pods become ready: it reports itself rolled out from now on."""
        with self._lock:
            self._get_record(namespace, name).polls_left = 0

    def deployments(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._render(r, poll=False) for r in self._deployments.values()]

    def writes(self) -> list[RequestLog]:
        return [r for r in self.requests if r.method in ("POST", "PUT", "PATCH", "DELETE")]

    # ------------------------------------------------------------ deployments

    def _render(self, rec: _Record, *, poll: bool) -> dict[str, Any]:
        if poll and rec.polls_left:
            rec.polls_left -= 1
        obj = copy.deepcopy(rec.obj)
        obj["metadata"]["managedFields"] = [
            {"manager": manager, "operation": op, "apiVersion": "apps/v1", "time": obj["metadata"]["creationTimestamp"],
             "fieldsType": "FieldsV1", "fieldsV1": fields_v1(paths)}
            for manager, (op, paths) in rec.owners.items()
        ]
        want = int(obj["spec"].get("replicas", 1))
        gen = int(obj["metadata"]["generation"])
        status: dict[str, Any] = {"observedGeneration": gen}
        pods = rec.pods
        if pods is not None and pods.stale is not None:
            shown, reads = pods.stale
            if poll:
                pods.stale = (shown, reads - 1) if reads > 1 else None
            obj["status"] = {**copy.deepcopy(shown), "observedGeneration": gen}
            return obj
        if pods is not None and pods.stuck_since is not None:
            obj["status"] = {**self._stuck_status(obj, pods), "observedGeneration": gen}
            return obj
        if pods is not None and pods.lost and rec.polls_left == 0:
            available = want - pods.lost
            least = want - want // 4  # Kubernetes' default maxUnavailable: 25%, rounded down
            counts = {"replicas": want, "updatedReplicas": want, "readyReplicas": available,
                      "availableReplicas": available, "unavailableReplicas": pods.lost}
            status.update({k: v for k, v in counts.items() if v})
            status["conditions"] = [
                {"type": "Available", "status": "True" if available >= least else "False",
                 "reason": "MinimumReplicasAvailable" if available >= least else "MinimumReplicasUnavailable",
                 "lastTransitionTime": pods.lost_since},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]
            obj["status"] = status
            return obj
        if rec.polls_left == 0:
            counts = {"replicas": want, "updatedReplicas": want, "readyReplicas": want, "availableReplicas": want}
            conditions = [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                          {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]
        else:
            counts = {"replicas": want, "updatedReplicas": want, "unavailableReplicas": want}
            conditions = [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
                          {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]
        status.update({k: v for k, v in counts.items() if v})  # the API omits zero counts
        status["conditions"] = conditions
        obj["status"] = status
        return obj

    def _store(self, rec: _Record, before: dict[str, Any] | None) -> None:
        meta = rec.obj["metadata"]
        if before is None or before.get("spec") != rec.obj.get("spec"):
            meta["generation"] = int(meta.get("generation", 0)) + 1
            rec.polls_left = self.ready_after_polls
            if self.gpu_rollouts:
                self._schedule(rec)
        meta["resourceVersion"] = self._next_rv()
        self._deployments[(meta["namespace"], meta["name"])] = rec

    # ------------------------------------------------------------ rollouts on GPUs (gpu_rollouts)

    @staticmethod
    def _pod_gpus(template: Any) -> int:
        containers = get_path(template, ("spec", "containers"))
        return sum(int(get_path(c, ("resources", "limits", "nvidia.com/gpu")) or 0) if isinstance(
            get_path(c, ("resources", "limits")), dict) else 0 for c in containers or [])

    def _node_set(self, template: Any) -> frozenset[str]:
        selector = get_path(template, ("spec", "nodeSelector"))
        selector = selector if isinstance(selector, dict) else {}
        return frozenset(n for n, node in self._nodes.items()
                         if all(node["metadata"]["labels"].get(k) == v for k, v in selector.items()))

    def _schedule(self, rec: _Record) -> None:
        """Run ``rec``'s rollout as far as its nodes' GPUs and its strategy let it."""
        spec = rec.obj["spec"]
        want, template = int(spec.get("replicas", 1)), spec.get("template")
        gpus, pods = self._pod_gpus(template), rec.pods
        if pods is None:  # made: its pods start where there is room (no rollout)
            rec.pods = _Pods(template, gpus, want)
            return
        if template == pods.template:  # a count only, or a stuck rollout taken back
            pods.count, pods.new_template, pods.made, pods.running, pods.stuck_since = want, None, 0, 0, None
            return
        was_stuck = self._stuck_status(rec.obj, pods) if pods.stuck_since else None
        if template != pods.new_template:  # a new rollout (a stuck one's pods replaced)
            pods.new_template, pods.new_gpus, pods.made, pods.running = template, gpus, 0, 0
        nodes = self._node_set(template)
        capacity = sum(int(self._nodes[n]["status"]["allocatable"].get("nvidia.com/gpu", 0)) for n in nodes)
        key = (rec.obj["metadata"]["namespace"], rec.obj["metadata"]["name"])
        others = sum((r.pods.count - r.pods.lost) * r.pods.gpus + r.pods.running * r.pods.new_gpus
                     for k, r in self._deployments.items()
                     if k != key and r.pods is not None and self._node_set(r.pods.template) == nodes)
        strategy = get_path(spec, ("strategy", "rollingUpdate"))
        strategy = strategy if isinstance(strategy, dict) else {}

        def count(key: str, up: bool) -> int:
            value = strategy.get(key, "25%")
            if isinstance(value, str) and value.endswith("%"):
                share = want * int(value[:-1]) / 100
                return math.ceil(share) if up else math.floor(share)
            return int(value)
        surge, unavailable = count("maxSurge", True), count("maxUnavailable", False)
        progressed = False
        while True:
            moved = False
            target = min(want, pods.made + max(0, want + surge - pods.count - pods.made))
            if target > pods.made:
                pods.made, moved = target, True
            used = others + pods.count * pods.gpus + pods.running * pods.new_gpus
            while pods.running < pods.made and capacity - used >= pods.new_gpus:
                pods.running, used, moved = pods.running + 1, used + pods.new_gpus, True
            self.peak_gpus[key] = max(self.peak_gpus.get(key, 0), used)
            down = min(pods.count, max(0, pods.count + pods.running - (want - unavailable)))
            if down:
                pods.count, moved = pods.count - down, True
            if pods.running >= want and not pods.count:
                rec.pods = _Pods(template, gpus, want)
                if was_stuck is not None:
                    rec.pods.stale = (was_stuck, self.stale_polls) if self.stale_polls else None
                return
            if not moved:
                break
            progressed = True
        if progressed or not pods.stuck_since:
            pods.stuck_since = _now()
        if progressed and was_stuck is not None and self.stale_polls:
            pods.stale = (was_stuck, self.stale_polls)

    def _stuck_status(self, obj: dict[str, Any], pods: _Pods) -> dict[str, Any]:
        want = int(obj["spec"].get("replicas", 1))
        available = pods.count + pods.running
        counts = {"replicas": pods.count + pods.made, "updatedReplicas": pods.made, "readyReplicas": available,
                  "availableReplicas": available, "unavailableReplicas": pods.made - pods.running}
        name = obj["metadata"]["name"]
        return {**{k: v for k, v in counts.items() if v}, "conditions": [
            {"type": "Available", "status": "True" if available >= want - want // 4 else "False",
             "reason": "MinimumReplicasAvailable" if available >= want - want // 4 else "MinimumReplicasUnavailable"},
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "lastUpdateTime": pods.stuck_since, "lastTransitionTime": pods.stuck_since,
             "message": f'ReplicaSet "{name}-7d9f8b6c5" has timed out progressing.'}]}

    def _create(self, body: dict[str, Any], manager: str, operation: str = "Update",
                namespace: str | None = None) -> dict[str, Any]:
        meta = body.setdefault("metadata", {})
        ns = namespace or meta.get("namespace") or "default"
        if meta.get("namespace") not in (None, ns):
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the "
                           "namespace sent on the request")
        name = str(meta.get("name") or "")
        self._require_namespace(ns)
        if (ns, name) in self._deployments:
            raise ApiError(409, "AlreadyExists", f'deployments.apps "{name}" already exists',
                           {"name": name, "group": "apps", "kind": "deployments"})
        body.pop("status", None)
        body["apiVersion"], body["kind"] = "apps/v1", "Deployment"
        spec = body.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        validate_deployment(body)
        meta.pop("managedFields", None)
        meta.pop("generation", None)
        meta.update({"namespace": ns, "uid": str(uuid.uuid4()), "creationTimestamp": _now()})
        rec = _Record(body, {manager: (operation, set(leaf_paths(body)))})
        self._store(rec, None)
        return self._render(rec, poll=False)

    def _require_namespace(self, ns: str) -> None:
        if self.namespaces is not None and ns not in self.namespaces:
            raise ApiError(404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"})

    def _get_record(self, ns: str, name: str) -> _Record:
        rec = self._deployments.get((ns, name))
        if rec is None:
            raise _not_found("deployments", name)
        return rec

    def _apply(self, ns: str, name: str, applied: dict[str, Any], manager: str,
               force: bool) -> tuple[int, dict[str, Any]]:
        if not isinstance(applied, dict) or applied.get("kind") != "Deployment" or not applied.get("apiVersion"):
            raise ApiError(400, "BadRequest", "apply patches must set apiVersion and kind (apps/v1 Deployment)")
        if not manager:
            raise ApiError(400, "BadRequest", "PATCH, application/apply-patch+yaml: fieldManager is required "
                           "for apply requests")
        body_name = get_path(applied, ("metadata", "name"))
        if body_name not in (_MISSING, name):
            raise ApiError(400, "BadRequest", f"the name of the object ({body_name}) does not match the name "
                           f"on the URL ({name})")
        rec = self._deployments.get((ns, name))
        if rec is None:
            obj = copy.deepcopy(applied)
            obj.setdefault("metadata", {})["name"] = name
            return 201, self._create(obj, manager, "Apply", ns)
        wanted = leaf_paths(applied)
        conflicts = sorted({(other, path) for other, (_op, paths) in rec.owners.items() if other != manager
                            for path in paths & wanted.keys() if get_path(rec.obj, path) != wanted[path]})
        if conflicts and not force:
            causes = [{"reason": "FieldManagerConflict", "message": f'conflict with "{other}"',
                       "field": "." + ".".join(path)} for other, path in conflicts]
            listing = "\n".join(f'- conflict with "{c["message"][15:-1]}": {c["field"]}' for c in causes)
            raise ApiError(409, "Conflict", f"Apply failed with {len(causes)} conflict"
                           f"{'s' if len(causes) > 1 else ''}: {listing}",
                           {"name": name, "group": "apps", "kind": "deployments", "causes": causes})
        before = copy.deepcopy(rec.obj)
        owners_before = {m: (op, set(p)) for m, (op, p) in rec.owners.items()}
        obj = copy.deepcopy(rec.obj)
        owners = {m: (op, set(p)) for m, (op, p) in rec.owners.items()}
        for other, path in conflicts:  # force: take the fields over
            owners[other][1].discard(path)
        _op, mine_before = owners.get(manager, ("Apply", set()))
        for path in mine_before - wanted.keys():
            if not any(path in p for m, (_o, p) in owners.items() if m != manager):
                del_path(obj, path)
        for path, value in wanted.items():
            set_path(obj, path, value)
        owners[manager] = ("Apply", set(wanted))
        owners = {m: v for m, v in owners.items() if v[1]}
        validate_deployment(obj)
        if obj == before and owners == owners_before:
            return 200, self._render(rec, poll=False)  # a no-op apply writes nothing
        new = _Record(obj, owners, rec.polls_left, rec.pods)
        self._store(new, before)
        return 200, self._render(new, poll=False)

    def _update(self, ns: str, name: str, body: dict[str, Any], manager: str) -> dict[str, Any]:
        rec = self._get_record(ns, name)
        sent_rv = get_path(body, ("metadata", "resourceVersion"))
        current_rv = rec.obj["metadata"]["resourceVersion"]
        if sent_rv not in (_MISSING, None, "") and str(sent_rv) != current_rv:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on deployments.apps "{name}": the '
                           "object has been modified; please apply your changes to the latest version and try again",
                           {"name": name, "group": "apps", "kind": "deployments"})
        before = copy.deepcopy(rec.obj)
        obj = copy.deepcopy(body)
        obj.pop("status", None)
        meta = obj.setdefault("metadata", {})
        for key in ("uid", "creationTimestamp", "generation", "namespace", "name"):
            meta[key] = before["metadata"][key]
        meta.pop("managedFields", None)
        obj["apiVersion"], obj["kind"] = "apps/v1", "Deployment"
        obj.setdefault("spec", {}).setdefault("replicas", 1)
        validate_deployment(obj)
        self._record_update(rec, before, obj, manager)
        return self._render(rec, poll=False)

    def _record_update(self, rec: _Record, before: dict[str, Any], obj: dict[str, Any], manager: str) -> None:
        old, new = leaf_paths(before), leaf_paths(obj)
        changed = {p for p, v in new.items() if old.get(p, _MISSING) != v}
        removed = old.keys() - new.keys()
        owners = {m: (op, (p - changed - removed)) for m, (op, p) in rec.owners.items() if m != manager}
        _op, mine = rec.owners.get(manager, ("Update", set()))
        owners[manager] = ("Update", (mine - removed) | changed)
        rec.owners = {m: v for m, v in owners.items() if v[1]}
        rec.obj = obj
        self._store(rec, before)

    def _merge_patch(self, ns: str, name: str, patch: Any, manager: str) -> dict[str, Any]:
        rec = self._get_record(ns, name)
        if not isinstance(patch, dict):
            raise ApiError(400, "BadRequest", "a merge patch is a JSON object")
        before = copy.deepcopy(rec.obj)
        obj = merge_patch(copy.deepcopy(rec.obj), patch)
        for key in ("uid", "creationTimestamp", "generation", "namespace", "name", "resourceVersion"):
            obj["metadata"][key] = before["metadata"][key]
        validate_deployment(obj)
        if obj == before:
            return self._render(rec, poll=False)
        self._record_update(rec, before, obj, manager)
        return self._render(rec, poll=False)

    def _delete(self, ns: str, name: str, options: dict[str, Any]) -> dict[str, Any]:
        rec = self._get_record(ns, name)
        pre = options.get("preconditions") or {}
        meta = rec.obj["metadata"]
        for key, actual in (("uid", meta["uid"]), ("resourceVersion", meta["resourceVersion"])):
            if pre.get(key) and pre[key] != actual:
                raise ApiError(409, "Conflict", f"Operation cannot be fulfilled on deployments.apps \"{name}\": "
                               f"Precondition failed: {key} in precondition: {pre[key]}, {key} in object meta: "
                               f"{actual}", {"name": name, "group": "apps", "kind": "deployments"})
        del self._deployments[(ns, name)]
        self._next_rv()
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "group": "apps", "kind": "deployments", "uid": meta["uid"]}}

    def _list(self, kind: str, items: list[dict[str, Any]], query: dict[str, list[str]]) -> dict[str, Any]:
        label_sel = (query.get("labelSelector") or [""])[0]
        field_sel = (query.get("fieldSelector") or [""])[0]
        chosen = [i for i in items
                  if _selector_matches(label_sel, i["metadata"].get("labels") or {})
                  and _field_selector_matches(field_sel, i)]
        api_version = "apps/v1" if kind == "Deployment" else "v1"
        metadata: dict[str, Any] = {"resourceVersion": str(self._rv)}
        limits = [n for n in (self.page_size, int((query.get("limit") or ["0"])[0]) or None) if n]
        if query.get("continue") and self.expire_continue > 0:  # as etcd compacted past the token's revision
            self.expire_continue -= 1
            raise ApiError(410, "Expired", "The provided continue parameter is too old to display a consistent list "
                           "result. You can start a new list without the continue parameter.")
        token = (query.get("continue") or [""])[0]
        if token and self.throttle_pages and token not in self._throttled:
            self._throttled.add(token)
            raise ApiError(429, "TooManyRequests", "Too many requests, please try again later.",
                           headers={"Retry-After": "0"})
        if limits:  # pages: the continue token is the offset of the next one
            start = int((query.get("continue") or ["0"])[0])
            size = min(limits)
            if start + size < len(chosen):
                metadata["continue"] = str(size if self.repeat_continue else start + size)
                metadata["remainingItemCount"] = len(chosen) - start - size
            chosen = chosen[start:start + size]
        return {"kind": f"{kind}List", "apiVersion": api_version, "metadata": metadata, "items": chosen}

    # ------------------------------------------------------------ routing

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        """One request -> (HTTP status, JSON body, extra headers)."""
        with self._lock:
            self.requests.append(RequestLog(method, path, query, headers.get("content-type"),
                                            headers.get("user-agent"), body.decode("utf-8", "replace")))
            for fault in self._faults:
                if fault.remaining > 0 and (fault.path_contains is None or fault.path_contains in path) \
                        and (fault.method is None or fault.method == method):
                    fault.remaining -= 1
                    extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                    reason, message = FAULTS.get(fault.status, FAULTS[500])
                    return fault.status, status_object(fault.status, reason, message), extra
        try:
            with self._lock:
                code, out = self._route(method, path, query, headers, body)
            return code, out, {}
        except ApiError as err:
            return err.code, err.body, err.headers

    def _route(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str],
               body: bytes) -> tuple[int, dict[str, Any]]:
        path = path.rstrip("/") or "/"
        if method == "GET":
            if path == "/version":
                return 200, KUBE_VERSION
            if path == "/api":
                return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}]}
            if path == "/apis":
                return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [{
                    "name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                    "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}]}
            if path == "/api/v1":
                return 200, {"kind": "APIResourceList", "groupVersion": "v1", "resources": CORE_RESOURCES}
            if path == "/apis/apps/v1":
                return 200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1",
                             "resources": APPS_RESOURCES}
            if path == "/openapi/v3":
                return 200, {"paths": {gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={OPENAPI_HASH}"}
                                       for gv in OPENAPI_V3}}
            if path.startswith("/openapi/v3/") and path[len("/openapi/v3/"):] in OPENAPI_V3:
                return 200, OPENAPI_V3[path[len("/openapi/v3/"):]]
            if path == "/api/v1/nodes":
                return 200, self._list("Node", [copy.deepcopy(n) for n in self._nodes.values()], query)
            m = re.fullmatch(r"/api/v1/nodes/([^/]+)", path)
            if m:
                if m.group(1) not in self._nodes:
                    raise _not_found("nodes", m.group(1))
                return 200, copy.deepcopy(self._nodes[m.group(1)])
            m = re.fullmatch(r"/api/v1/namespaces/([^/]+)", path)
            if m:
                self._require_namespace(m.group(1))
                return 200, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": m.group(1)},
                             "status": {"phase": "Active"}}
        m = re.fullmatch(r"/apis/apps/v1(?:/namespaces/([^/]+))?/deployments", path)
        if m:
            ns = m.group(1)
            if method == "GET":
                recs = [r for (n, _), r in sorted(self._deployments.items()) if ns is None or n == ns]
                return 200, self._list("Deployment", [self._render(r, poll=True) for r in recs], query)
            if method == "POST" and ns:
                return 201, self._create(_parse_body(body, headers), _manager(query, headers), namespace=ns)
            raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on the requested "
                           f"resource ({method} {path})")
        m = re.fullmatch(r"/apis/apps/v1/namespaces/([^/]+)/deployments/([^/]+)(/status)?", path)
        if m:
            ns, name = m.group(1), m.group(2)
            if method == "GET":
                return 200, self._render(self._get_record(ns, name), poll=True)
            if m.group(3):
                raise ApiError(405, "MethodNotAllowed", "this fake serves deployments/status read-only")
            if method == "PUT":
                return 200, self._update(ns, name, _parse_body(body, headers), _manager(query, headers))
            if method == "DELETE":
                return 200, self._delete(ns, name, _parse_body(body, headers) if body else {})
            if method == "PATCH":
                ctype = (headers.get("content-type") or "").split(";")[0].strip()
                if ctype == "application/apply-patch+yaml":
                    force = (query.get("force") or ["false"])[0] == "true"
                    return self._apply(ns, name, _parse_body(body, headers), (query.get("fieldManager") or [""])[0],
                                       force)
                if ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                    return 200, self._merge_patch(ns, name, _parse_body(body, headers), _manager(query, headers))
                raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                               f"accepted media types include: application/apply-patch+yaml, "
                               f"application/merge-patch+json, application/strategic-merge-patch+json (got {ctype})")
        raise ApiError(404, "NotFound", "the server could not find the requested resource")


def _parse_body(body: bytes, headers: dict[str, str]) -> Any:
    try:
        return yaml.safe_load(body.decode("utf-8")) if body else {}  # YAML is a superset of JSON
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ApiError(400, "BadRequest", f"the body of the request could not be decoded: {exc}") from None


def _manager(query: dict[str, list[str]], headers: dict[str, str]) -> str:
    sent = (query.get("fieldManager") or [""])[0]
    if sent:
        return sent
    agent = headers.get("user-agent") or "unknown"
    return agent.split("/")[0]  # the API server's default: the user agent's program name


class _Handler(BaseHTTPRequestHandler):
    fake: FakeKubeApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        fake = self.fake
        if fake.delay_s and (fake.delay_path_contains is None or fake.delay_path_contains in url.path):
            time.sleep(fake.delay_s)
        code, out, extra = fake.handle(self.command, url.path, parse_qs(url.query), headers, body)
        data = json.dumps(out).encode()
        try:
            self.send_response(code, HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else "")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Audit-Id", str(uuid.uuid4()))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


# ---------------------------------------------------------------- kubeconfig


def write_kubeconfig(path: str | Path, servers: dict[str, str], current: str | None = None,
                     namespace: str | None = None) -> Path:
    """A kubeconfig with one context (and cluster and user) per ``{context: server URL}``."""
    target = Path(path)
    names = list(servers)
    doc = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": url, "insecure-skip-tls-verify": True}}
                     for name, url in servers.items()],
        "users": [{"name": f"{name}-user", "user": {"token": f"fake-token-{name}"}} for name in names],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-user",
                                                **({"namespace": namespace} if namespace else {})}}
                     for name in names],
        "current-context": current or names[0],
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return target
