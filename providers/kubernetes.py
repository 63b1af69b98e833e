"""Kubernetes: Deployments by server-side apply; GPU pools discovered from nodes (``kubernetes_discovery``).

One ApiClient per kubeconfig context; a deployment change goes to the context in
``target.kubernetes.context`` (None: the kubeconfig's current context). Placer only ever
changes Deployments it owns (label ``app.kubernetes.io/managed-by=placer`` plus its model
and pool labels): an object of the same name that another tool made is refused, never
patched, forced or deleted.

Which changes: every ``deployment/...`` change whose target has a ``kubernetes`` part, and
those of ``kubernetes``, ``aws`` and ``gcp`` pools without one (their nodes are assumed
to be a node group of the current context's cluster, namespace ``default``). A ``static``
pool without a ``kubernetes`` part is declared capacity with no API behind it, so its
deployments are not this provider's (the gitops provider renders them).
"""

from __future__ import annotations

import json
import os
import shlex
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from placer.discover import PoolNote
from placer.nodegroups import POOL_LABEL
from placer.planfile import Change
from placer.render.manifests import (
    FIELD_MANAGER,
    MANAGED_BY,
    MODEL_LABEL,
    deployment_manifest,
    deployment_name,
)
from placer.retry import Retrier
from providers.base import (
    Discovered,
    ProviderError,
    bounded_pages,
    causes,
    guard,
    host_of,
    pause,
    place_refused,
    retry_after,
    retryable_http,
    unreachable,
)
from providers.kubernetes_discovery import pools_from_nodes

APPLY_PATCH = "application/apply-patch+yaml"
LIST_PAGE = 500  # items a listing asks for at a time (a huge cluster's nodes in pages, not one answer)
ApiClientFactory = Callable[[str | None], Any]


class KubernetesProvider:
    """Applies deployment changes to Kubernetes; discovers GPU pools and what placer runs."""

    name = "kubernetes"

    def __init__(self, kubeconfig: str | None = None, contexts: list[str] | None = None,
                 api_client_factory: ApiClientFactory | None = None, *,
                 request_timeout_s: float = 30.0, poll_interval_s: float = 2.0) -> None:
        self.stop = threading.Event()  # set by an interrupted apply: health waits end at once (base.pause)
        self.kubeconfig = kubeconfig
        self.contexts = list(contexts or [])
        self.request_timeout_s = request_timeout_s
        self.poll_interval_s = poll_interval_s
        self._factory = api_client_factory or self._client_from_kubeconfig
        self._clients: dict[str | None, Any] = {}
        self._lock = threading.Lock()
        # address -> (generation, ProgressDeadlineExceeded condition) of a Deployment whose rollout was
        # stuck when apply read it: its wait does not take that condition for the new spec's
        self._stuck_before: dict[str, tuple[int, dict[str, Any]]] = {}

    # ------------------------------------------------------------ Provider protocol

    def handles(self, change: Change) -> bool:
        if change.kind != "deployment":
            return False
        return bool(change.target.get("kubernetes")) or change.provider != "static"

    def _replaced_here(self, change: Change) -> bool:
        """A replacement's delete whose old place is the object its create made: no context and the
        current context by name, or two contexts of one API server (``cluster_key``; the delete
        deleted the only copy)."""
        new = (change.before or {}).get("replacedBy") if change.action == "delete" else None
        if not isinstance(new, dict):
            return False
        old = _Where.of(change)
        if str(new.get("namespace") or "default") != old.namespace:
            return False
        try:
            return self.cluster_key(old.context) == self.cluster_key(new.get("context") or None)
        except ProviderError:  # a context the kubeconfig no longer has: the delete there says so
            return False

    def observe(self, change: Change) -> dict[str, Any] | None:
        """``{"replicas": r}`` of the Deployment placer owns at ``change.address``; None if there is none
        (an object of that name that placer does not own is not placer's deployment). Where its status
        says it is not healthy (``unhealthy``: a rollout stuck, replicas lost once it had finished, a spec
        the controller has not acted on) ``"unhealthy"`` holds why, in words, for refresh to report."""
        if self._replaced_here(change):
            return None  # the old copy is the new one: nothing of it is left to find
        where = _Where.of(change)
        obj = self._read(where)
        if obj is None or _foreign_owner(obj, where) is not None:
            return None
        seen: dict[str, Any] = {"replicas": int((obj.get("spec") or {}).get("replicas", 1))}
        why = unhealthy(obj)
        if why is not None:
            seen["unhealthy"] = (f"{why}{_edited_by(obj)}; see `kubectl {where.kubectl_args} describe deployment "
                                 f"{where.name}` and its pods' events")
        return seen

    def apply(self, change: Change) -> None:
        where = _Where.of(change)
        if change.action == "no-op":
            return
        if change.action == "delete":
            if not self._replaced_here(change):
                self._delete(where)
            return
        replicas = (change.after or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ProviderError(f"{change.address}: the plan gives after.replicas = {replicas!r}; a deployment "
                                "change needs a whole number >= 0: re-plan", address=change.address)
        current = self._read(where)
        if current is not None:
            self._require_owned(current, where, "update")
        stuck = _stuck_condition(current) if current is not None else None
        with self._lock:
            if stuck is not None and current is not None:
                self._stuck_before[change.address] = (int((current.get("metadata") or {}).get("generation", 0)), stuck)
            else:
                self._stuck_before.pop(change.address, None)
        manifest = deployment_manifest({**change.target, "model": where.model, "pool": where.pool}, replicas)
        api = self._apps(where.context)
        # a server-side apply that makes the object is authorized as create, one that changes it as patch
        verb = "patch" if current is not None else "create"
        guard(where.address, lambda: _body(api.patch_namespaced_deployment(
            where.name, where.namespace, manifest, field_manager=FIELD_MANAGER,
            force=True if current is not None else None, _content_type=APPLY_PATCH,
            _preload_content=False, _request_timeout=self.request_timeout_s)),
            lambda exc: self._classify(exc, where, "server-side apply of", f"{verb} deployments"))

    def wait_healthy(self, change: Change, timeout_s: float) -> None:
        """Wait for the rollout (or, for a delete, for the object to go); retryable error on timeout."""
        where = _Where.of(change)
        deleting = change.action == "delete"
        deadline = time.monotonic() + timeout_s
        last = "no answer from the API server yet"
        while True:
            try:
                obj = self._read(where)
            except ProviderError as exc:
                if not exc.retryable:
                    raise
                last = str(exc)
            else:
                if deleting:
                    if obj is None:
                        return
                    last = "the Deployment still exists"
                else:
                    if obj is None:
                        raise ProviderError(f"{where.address}: {where} was deleted while placer waited for its "
                                            "rollout; run `placer plan` again to see what runs now",
                                            address=where.address)
                    scaled = _scaled_by_another(obj, change, where)
                    if scaled:
                        raise ProviderError(scaled, address=where.address)
                    done, last = rollout_status(obj)
                    if done:
                        return
                    stuck = _stuck_condition(obj)
                    with self._lock:
                        before = self._stuck_before.get(change.address)
                    generation = int((obj.get("metadata") or {}).get("generation", 0))
                    if stuck is not None and before is not None and before[1] == stuck and generation > before[0]:
                        # stuck before this apply changed its spec (a strategy with room to go on): the
                        # controller keeps the condition until the rollout moves, which it may yet
                        last = f"{last}; stuck since {_since(stuck)}, before this apply changed it"
                    elif stuck is not None:
                        raise ProviderError(_stuck_text(obj, stuck, change, where, before is not None),
                                            address=where.address)
            left = deadline - time.monotonic()
            if left <= 0:
                hint = "" if deleting else " (pods pending? no free GPUs on nodes matching the nodeSelector?)"
                raise ProviderError(f"{where.address}: {where} is not {'gone' if deleting else 'rolled out'} after "
                                    f"{timeout_s:g}s: {last}; check `kubectl {where.kubectl_args} describe "
                                    f"deployment {where.name}`{hint}", retryable=True, address=where.address)
            pause(self.stop, min(self.poll_interval_s, left), where.address, f"{where} to {'go' if deleting else 'roll out'}")

    # ------------------------------------------------------------ read-only views

    def discover(self, contexts: list[str] | None = None, retry: Retrier | None = None) -> Discovered:
        """Pool documents (one per group of like GPU nodes) and Location documents, per context.
        ``retry`` tries a node listing again after a retryable failure (throttling, a 5xx, a
        timeout); without it each listing is made once."""
        retry = retry or Retrier()
        shared: dict[tuple[str, str], dict[str, Any]] = {}  # Locations and GPUTypes, once each
        documents: list[dict[str, Any]] = []
        notes: list[str] = []
        taken: set[str] = set()
        scopes: list[tuple[Any, ...]] = []
        members: dict[str, dict[str, dict[str, str]]] = {}
        read: dict[str, str | None] = {}  # an API server -> the context its nodes were read as
        chosen = list(self._contexts(contexts))
        for context in chosen:
            cluster = self.cluster_key(context)
            if cluster in read:  # its nodes as another context's pools: every GPU counted twice
                first = read[cluster] or self._context_name(read[cluster]) or "the current context"
                notes.append(f"context {context}: the API server of context {first} ({cluster}); its nodes are "
                             f"read once, as context {first}'s")
                continue
            read[cluster] = context
            try:
                nodes = self._list(context, "listing nodes of", partial(self._core(context).list_node), "list nodes",
                                   retry)
            except ProviderError as exc:
                told = place_refused(exc, "--context", str(context), chosen, "contexts")
                if told is exc:
                    raise
                raise told from exc
            name = self._context_name(context)
            found = pools_from_nodes(name, context, nodes, taken)
            scopes.append(("kubernetes", context if context is not None else name))  # as the pools' target says
            for doc in found.documents:
                if doc["kind"] == "Pool":
                    documents.append(doc)
                else:
                    shared.setdefault((doc["kind"], doc["metadata"]["name"]), doc)
            notes.extend(found.notes)
            members.update(found.members)
        pools = [d["metadata"]["name"] for d in documents if d["spec"].get("usdPerGpuHour") == 0]
        if pools:  # of the pools printed or added only: a merge keeps a fleet pool's price
            notes.append(PoolNote("usdPerGpuHour is 0 for {names}: fill in what a GPU hour costs you", pools))
        return Discovered(documents=list(shared.values()) + documents, notes=notes, scopes=scopes,
                          members=members)

    def cluster_key(self, context: str | None) -> str:
        """The API server a context (None: the current one) talks to: two contexts of one cluster
        see the same objects."""
        return str(getattr(getattr(self._client(context), "configuration", None), "host", None) or context)

    def observed(self, contexts: list[str] | None = None) -> dict[tuple[str, str, str, str], int]:
        """(model, pool, cluster, namespace) -> replicas of every Deployment placer owns, in every
        namespace of the clusters of ``contexts`` (each API server listed once; ``cluster_key``).
        Keyed by place: summed over namespaces, a copy a killed replacement left in another
        namespace passed for the recorded one."""
        out: dict[tuple[str, str, str, str], int] = {}
        seen: set[str] = set()
        for context in self._contexts(contexts):
            cluster = self.cluster_key(context)
            if cluster in seen:
                continue
            seen.add(cluster)
            fetch = partial(self._apps(context).list_deployment_for_all_namespaces,
                            label_selector=f"{MANAGED_BY}=placer")
            for item in self._list(context, "listing placer's deployments in", fetch,
                                   "list deployments --all-namespaces"):
                meta = item.get("metadata") or {}
                labels = meta.get("labels") or {}
                model, pool = labels.get(MODEL_LABEL), labels.get(POOL_LABEL)
                if model and pool:
                    key = (str(model), str(pool), cluster, str(meta.get("namespace") or "default"))
                    out[key] = out.get(key, 0) + int((item.get("spec") or {}).get("replicas", 1))
        return out

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                close = getattr(client, "close", None)
                if close is not None:
                    close()
            self._clients.clear()

    # ------------------------------------------------------------ internals

    def _client_from_kubeconfig(self, context: str | None) -> Any:
        from kubernetes import client, config

        files = [os.path.expanduser(p) for p in self._kubeconfig_files()]
        if not any(os.path.isfile(p) for p in files):
            raise FileNotFoundError("no such file")  # the client says "Invalid kube-config file"
        for path in files:
            wrong = _not_a_kubeconfig(path)
            if wrong is not None:
                raise ValueError(f"{path} is not a kubeconfig: {wrong}")
        # no urllib3 retries: the apply engine retries with backoff, and a timeout should say so at once
        configuration = client.Configuration(retries=0)
        return config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=self.kubeconfig, context=context, client_configuration=configuration, persist_config=False)

    def _kubeconfig_files(self) -> list[str]:
        """The kubeconfig files the client reads: the given one, else KUBECONFIG's (a path list),
        else ~/.kube/config."""
        if self.kubeconfig:
            return [self.kubeconfig]
        listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
        return listed or ["~/.kube/config"]

    def _client(self, context: str | None) -> Any:
        with self._lock:
            if context not in self._clients:
                try:
                    self._clients[context] = self._factory(context)
                except Exception as exc:
                    source = self.kubeconfig or f"the default kubeconfig ({os.pathsep.join(self._kubeconfig_files())})"
                    which = f"context {context!r}" if context else "the current context"
                    # no file at all: naming a context to check told a newcomer without one nothing
                    fix = ("give placer your clusters' kubeconfig: set KUBECONFIG to its path (discover: or "
                           "--kubeconfig FILE)" if isinstance(exc, FileNotFoundError) else
                           "check `kubectl config get-contexts` and the context named (discover's --context, "
                           "or the pool's target.kubernetes.context)")
                    raise ProviderError(f"cannot load {which} from {source}: {exc}; {fix}") from exc
            return self._clients[context]

    def _apps(self, context: str | None) -> Any:
        from kubernetes import client

        return client.AppsV1Api(self._client(context))

    def _core(self, context: str | None) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self._client(context))

    def _contexts(self, contexts: list[str] | None) -> list[str | None]:
        chosen: list[str | None] = list(contexts or self.contexts)
        return chosen or [None]

    def _context_name(self, context: str | None) -> str | None:
        if context is not None:
            return context
        try:
            from kubernetes import config

            _all, active = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                config_file=self.kubeconfig)
            return str(active["name"])
        except Exception:
            return None

    def _list(self, context: str | None, doing: str, fetch: Callable[..., Any], can_i: str,
              retry: Retrier | None = None) -> list[dict[str, Any]]:
        """Every item of a listing, page after page (``metadata.continue``; a page was all a listing
        read, so a paging server's other nodes were left out). ``can_i``: what RBAC must allow, as
        ``kubectl auth can-i`` takes it ("list nodes"). ``retry`` tries each page again after a
        retryable failure, from its own continue token: a throttled page 3 listed again from page 1,
        and a server that throttles each page once never let a listing of 12 pages through."""
        where = _Where.for_context(context, self._context_name(context))
        again = retry or Retrier()

        def read(token: str) -> dict[str, Any]:
            page = partial(fetch, limit=LIST_PAGE, _preload_content=False,
                           _request_timeout=self.request_timeout_s, **({"_continue": token} if token else {}))
            body = guard(where.address, partial(_read_body, page), lambda exc: self._classify(exc, where, doing, can_i))
            items = body.get("items") if isinstance(body, dict) else None
            # every item an object with its name: a list of another shape was an internal error (KeyError)
            if not isinstance(body, dict) or not isinstance(items, list | None) or not all(
                    isinstance(i, dict) and isinstance(i.get("metadata"), dict)
                    and isinstance(i["metadata"].get("name"), str) for i in items or []):
                raise ProviderError(f"{where.address}: {doing} {where} failed: the answer is not a Kubernetes "
                                    "list of named objects; is the kubeconfig's server the API server, not a "
                                    "proxy?", retryable=True, address=where.address)
            return body

        def pages() -> Any:
            token = ""
            while True:
                body = again(partial(read, token))
                yield body
                token = _continue(body)
                if not token:
                    return

        def listing() -> list[dict[str, Any]]:
            return [item for body in bounded_pages(pages(), f"{where.address}: {doing} {where}", _continue)
                    for item in body.get("items") or []]

        try:
            return listing()
        except ProviderError as exc:
            if getattr(exc.__cause__, "status", None) != 410:
                raise
        # 410 Expired: the API server compacted past the continue token; a new listing from the first
        # page is whole, as client-go's pager does (a second expiry is said, with what to do)
        return listing()

    def _read(self, where: _Where) -> dict[str, Any] | None:
        api = self._apps(where.context)

        def call() -> dict[str, Any] | None:
            from kubernetes.client.exceptions import ApiException

            try:
                return _body(api.read_namespaced_deployment(where.name, where.namespace, _preload_content=False,
                                                            _request_timeout=self.request_timeout_s))
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise

        return guard(where.address, call, lambda exc: self._classify(exc, where, "reading", "get deployments"))

    def _delete(self, where: _Where) -> None:
        from kubernetes.client import V1DeleteOptions, V1Preconditions
        from kubernetes.client.exceptions import ApiException

        current = self._read(where)
        if current is None:
            return  # already gone: deleting twice is fine
        self._require_owned(current, where, "delete")
        uid = (current.get("metadata") or {}).get("uid")
        options = V1DeleteOptions(propagation_policy="Background", preconditions=V1Preconditions(uid=uid))
        api = self._apps(where.context)

        def call() -> None:
            try:  # the uid precondition: delete exactly the object checked above, never a replacement
                _body(api.delete_namespaced_deployment(where.name, where.namespace, body=options,
                                                       _preload_content=False,
                                                       _request_timeout=self.request_timeout_s))
            except ApiException as exc:
                if exc.status != 404:
                    raise

        guard(where.address, call, lambda exc: self._classify(exc, where, "deleting", "delete deployments"))

    def _require_owned(self, obj: dict[str, Any], where: _Where, verb: str) -> None:
        owner = _foreign_owner(obj, where)
        if owner is not None:
            raise ProviderError(
                f"{where.address}: refusing to {verb} {where}: it exists but placer does not own it ({owner}). "
                "Placer leaves it untouched. Remove or rename that object, or point the pool's "
                "target.kubernetes.namespace elsewhere, then re-plan.", retryable=False, address=where.address)

    def _can_i(self, where: _Where, can_i: str) -> str:
        """The `kubectl auth can-i` that checks what a refusal refused (``can_i``: "get deployments"), where
        placer asked it: its context by name (the current one resolved: kubectl's may be another by the time
        it is run), the namespace, and the kubeconfig where placer was given one the shell's KUBECONFIG does
        not name. A target without a context, or `discover kubernetes` without --context, said no context,
        and `--kubeconfig K` was never passed on: the operator's kubectl checked another cluster."""
        context = where.context or self._context_name(None)
        parts = ["kubectl auth can-i", can_i]
        if context:
            parts.append(f"--context {shlex.quote(context)}")
        if where.namespace:
            parts.append(f"-n {where.namespace}")
        if self.kubeconfig and self.kubeconfig != os.environ.get("KUBECONFIG"):
            parts.append(f"--kubeconfig {shlex.quote(self.kubeconfig)}")
        return " ".join(parts)

    def _classify(self, exc: Exception, where: _Where, doing: str, can_i: str) -> ProviderError | None:
        """``can_i``: the verb and resource the call needs, as ``kubectl auth can-i`` takes them
        ("create deployments"); a refusal (401, 403) prints the command that checks it."""
        from kubernetes.client.exceptions import ApiException
        from kubernetes.config.config_exception import ConfigException
        from urllib3.exceptions import HTTPError

        if isinstance(exc, ApiException):
            status = int(exc.status or 0)
            reason, message = _status_details(exc)
            retryable = retryable_http(status) or status == 409
            wait = retry_after(exc.headers) if retryable else None
            hint = _hint(status, where, wait, self._can_i(where, can_i) if status in (401, 403) else "")
            return ProviderError(f"{where.address}: {doing} {where} failed: HTTP {status} {reason}: {message}; "
                                 f"{hint}", retryable=retryable, address=where.address, retry_after=wait,
                                 retry_advice=_RETRY_ADVICE.get(status, "a retry may get through") if retryable else "")
        unanswered = _read_timeout(exc)
        if unanswered is not None:  # it was said "cannot reach the API server", of one that took the request
            return ProviderError(f"{where.address}: {doing} {where} failed: the API server ({unanswered}) did not "
                                 f"answer within {self.request_timeout_s:g}s; is it overloaded?", retryable=True,
                                 address=where.address, retry_advice="a retry may get through")
        if isinstance(exc, HTTPError):  # timeouts, refused connections, dropped connections
            return ProviderError(f"{where.address}: {doing} {where} failed: cannot reach the API server "
                                 f"({unreachable(exc)}); is the cluster up and the kubeconfig right?", retryable=True,
                                 address=where.address, retry_advice="a retry may get through")
        if isinstance(exc, ValueError):  # json's JSONDecodeError: an HTML page, a body cut short
            return ProviderError(f"{where.address}: {doing} {where} failed: the API server's answer is not JSON "
                                 f"({exc}); is the kubeconfig's server the API server, not a proxy's page?",
                                 retryable=True, address=where.address, retry_advice="a retry may get through")
        if isinstance(exc, ConfigException):
            return ProviderError(f"{where.address}: {doing} {where} failed: kubeconfig problem: {exc}",
                                 address=where.address)
        return None


# ---------------------------------------------------------------- where a change lands


class _Where:
    """Context, namespace and name of the Deployment a change addresses."""

    def __init__(self, address: str, context: str | None, namespace: str, model: str, pool: str) -> None:
        self.address, self.context, self.namespace = address, context, namespace
        self.model, self.pool = model, pool
        self.name = deployment_name(model, pool) if model else ""
        self.label = context  # the context's name in messages (None: the current context)

    @staticmethod
    def of(change: Change) -> _Where:
        if change.kind != "deployment" or not change.model:
            raise ProviderError(f"{change.address}: the kubernetes provider applies deployment/<model>@<pool> "
                                "changes only", address=change.address)
        k8s = change.target.get("kubernetes") or {}
        return _Where(change.address, k8s.get("context") or None, str(k8s.get("namespace") or "default"),
                      str(change.target.get("model") or change.model), str(change.target.get("pool") or change.pool))

    @staticmethod
    def for_context(context: str | None, name: str | None) -> _Where:
        where = _Where(f"context {name or '(current)'}", context, "", "", "")
        where.label = name
        return where

    @property
    def kubectl_args(self) -> str:
        ctx = f"--context {shlex.quote(self.context)} " if self.context else ""
        return f"{ctx}-n {self.namespace}"

    def __str__(self) -> str:
        ctx = f"context {self.label}" if self.label else "the current context"
        if not self.name:
            return ctx
        return f"deployment {self.namespace}/{self.name} in {ctx}"


def _continue(body: Any) -> str:
    """A list answer's ``metadata.continue``: the token of its next page, or "" at the last."""
    metadata = body.get("metadata") if isinstance(body, dict) else None
    token = metadata.get("continue") if isinstance(metadata, dict) else None
    return token if isinstance(token, str) else ""


def _read_body(call: Callable[[], Any]) -> dict[str, Any]:
    return _body(call())


def _body(response: Any) -> dict[str, Any]:
    """The JSON body of a raw (``_preload_content=False``) response."""
    try:
        data = response.data
    finally:
        release = getattr(response, "release_conn", None)
        if release is not None:
            release()
    return json.loads(data) if data else {}


def _read_timeout(exc: BaseException) -> str | None:
    """The host:port of an API server that took a request and did not answer it in time (urllib3's
    read timeout, however deep it is wrapped), or None: another failure."""
    from urllib3.exceptions import ReadTimeoutError

    timed_out = next((e for e in causes(exc) if isinstance(e, ReadTimeoutError)), None)
    return None if timed_out is None else host_of(timed_out) or "no host named"


def _status_details(exc: Any) -> tuple[str, str]:
    reason, message = str(exc.reason or ""), ""
    try:
        status = json.loads(exc.body or "")
        if isinstance(status, dict):
            reason = str(status.get("reason") or reason)
            message = str(status.get("message") or "")
            causes = (status.get("details") or {}).get("causes") or []
            if causes and str(status.get("code")) == "422" and not message:
                message = "; ".join(f"{c.get('field')}: {c.get('message')}" for c in causes)
    except (ValueError, TypeError):
        message = str(exc.body or "")[:300]
    # the server's sentence runs on into the hint: "try again later.; the API server is throttling"
    return reason, message.rstrip().rstrip(".") or "(no message)"


# what a retryable status's error advises (after its _hint), left out once retries are spent
_RETRY_ADVICE = {429: "a retry should get through", 409: "a retry reads it again"}


def _hint(status: int, where: _Where, wait: float | None, can_i: str) -> str:
    """What a status means, and what to do where a retry will not pass it (_RETRY_ADVICE says where one may).
    A refusal names the check of the call refused (``can_i``: the whole `kubectl auth can-i` command,
    ``KubernetesProvider._can_i``): it said `kubectl auth can-i patch deployments` of every call, a read, a
    delete, a listing and a create (which RBAC authorizes as create) too."""
    if status == 0:
        return "the TLS connection failed; check the cluster's certificate-authority in the kubeconfig"
    if status == 429:
        return f"the API server is throttling{f' (Retry-After {wait:g}s)' if wait is not None else ''}"
    if status >= 500 or status == 408:
        return "the API server failed or timed out"
    if status == 409:
        return "the object changed at the same time"
    if status in (401, 403):
        return f"check the credentials of {where.label or 'the current context'} and what RBAC allows them (`{can_i}`)"
    if status == 404 and not where.namespace:  # listing nodes: the API itself was not found
        return "the API server has no such path: is the kubeconfig's server the API server (not a proxy's)?"
    if status == 404:  # the context named: the kubeconfig's current one may be another cluster's
        ctx = f"--context {shlex.quote(where.context)} " if where.context else ""
        return f"does namespace {where.namespace!r} exist? (`kubectl {ctx}create namespace {where.namespace}`)"
    if status == 410:
        return "the listing took longer than the API server keeps its continue token; run it again"
    if status == 422:
        return "the API server rejected the rendered manifest; fix the pool's target.kubernetes or the model and re-plan"
    return "fix the request and re-plan"


# ---------------------------------------------------------------- ownership and rollout


def _foreign_owner(obj: dict[str, Any], where: _Where) -> str | None:
    """None when placer owns ``obj`` for this model and pool; else who does, in words."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY) == "placer":
        if labels.get(MODEL_LABEL) == where.model and labels.get(POOL_LABEL) == where.pool:
            return None
        return (f"placer manages it for model {labels.get(MODEL_LABEL)!r} in pool {labels.get(POOL_LABEL)!r}, "
                f"not {where.model!r} in {where.pool!r}")
    managers = sorted({str(m.get("manager")) for m in meta.get("managedFields") or [] if m.get("manager")})
    parts = [f"field managers: {', '.join(managers)}" if managers else "no field managers recorded"]
    parts.append(f"label {MANAGED_BY}={labels[MANAGED_BY]}" if MANAGED_BY in labels
                 else f"no {MANAGED_BY}=placer label")
    return "; ".join(parts)


def rollout_status(obj: dict[str, Any]) -> tuple[bool, str]:
    """Rolled out: the controller saw the latest spec, and every wanted replica is updated, ready,
    available, with no old ones left. Absent counts are 0 (the API omits zeros)."""
    spec, status, meta = obj.get("spec") or {}, obj.get("status") or {}, obj.get("metadata") or {}
    want = int(spec.get("replicas", 1))
    generation, observed = int(meta.get("generation", 0)), int(status.get("observedGeneration", 0))
    if observed < generation:
        return False, f"the controller has not seen generation {generation} yet (observed {observed})"
    counts = {k: int(status.get(k, 0)) for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")}
    if all(v == want for v in counts.values()):
        return True, f"{want} of {want} replicas ready"
    return False, (f"{counts['updatedReplicas']} updated, {counts['readyReplicas']} ready, "
                   f"{counts['availableReplicas']} available, {counts['replicas']} running of {want} wanted")


def unhealthy(obj: dict[str, Any]) -> str | None:
    """Why a Deployment's status says it is not healthy, in words, or None where it is healthy or its
    rollout still runs within its progress deadline. As `kubectl rollout status` judges it, less what is
    still on its way: the controller has not acted on the latest spec (``observedGeneration`` behind
    ``generation``); the rollout is stuck (Progressing False, ProgressDeadlineExceeded: no progress
    within ``progressDeadlineSeconds``); or the rollout had finished (Progressing True,
    NewReplicaSetAvailable, no old replicas left) and fewer replicas are available than wanted (pods
    lost with a node and pending for GPUs, crashing): the controller does not time out a Deployment
    whose rollout had finished, so only its counts and its Available condition tell."""
    spec, status, meta = obj.get("spec") or {}, obj.get("status") or {}, obj.get("metadata") or {}
    want = int(spec.get("replicas", 1))
    generation, observed = int(meta.get("generation", 0)), int(status.get("observedGeneration", 0))
    counts = {k: int(status.get(k, 0)) for k in ("replicas", "updatedReplicas", "availableReplicas")}
    stuck = _stuck_condition(obj)
    if observed < generation:
        return (f"the Deployment controller has not acted on its generation {generation} (it observed "
                f"{observed}): is kube-controller-manager running?")
    if stuck is not None:
        return (f"its rollout has been stuck since {_since(stuck)} (Progressing False, ProgressDeadlineExceeded: "
                f"{stuck.get('message') or 'no progress'}); {counts['updatedReplicas']} of {want} replicas updated, "
                f"{counts['availableReplicas']} available")
    conditions = {str(c.get("type")): c for c in status.get("conditions") or [] if isinstance(c, dict)}
    progressing = conditions.get("Progressing") or {}
    ended = progressing.get("reason") == "NewReplicaSetAvailable" and counts["replicas"] == counts["updatedReplicas"]
    if not ended or counts["availableReplicas"] >= want:
        return None
    available = conditions.get("Available") or {}
    since = f" since {available['lastTransitionTime']}" if (
        available.get("status") == "False" and available.get("lastTransitionTime")) else ""
    said = f"Available {available.get('status')}, {available.get('reason')}" if available else "no Available condition"
    return (f"{counts['availableReplicas']} of its {want} replicas available{since}, though its rollout had finished "
            f"(Progressing True, NewReplicaSetAvailable; {said}): pods lost with a node, pending for GPUs, or "
            "crashing?")


def _edited_by(obj: dict[str, Any]) -> str:
    """Who besides placer set fields of a Deployment's spec (``kubectl edit``, ``kubectl set image``), said
    after why it is not healthy: a spec changed behind placer's back is a rollout placer did not start."""
    others = sorted({str(m.get("manager")) for m in (obj.get("metadata") or {}).get("managedFields") or []
                     if isinstance(m, dict) and m.get("manager") and m.get("manager") != FIELD_MANAGER
                     and "f:spec" in (m.get("fieldsV1") or {})})
    return f"; its spec was changed by {', '.join(others)} too, not by placer alone" if others else ""


def _scaled_by_another(obj: dict[str, Any], change: Change, where: _Where) -> str | None:
    """Why a rollout's wait cannot pass where the Deployment no longer wants the replicas placer applied
    (an autoscaler, `kubectl scale`), or None. Its rollout of their count passed: scaled to 0 while
    placer waited, the apply said "Apply complete" and the state 3 replicas healthy."""
    wanted = (change.after or {}).get("replicas")
    has = int((obj.get("spec") or {}).get("replicas", 1))
    if not isinstance(wanted, int) or has == wanted:
        return None
    return (f"{where.address}: {where} was scaled to {has} replica(s) by someone else while placer waited for "
            f"its rollout of {wanted} (a HorizontalPodAutoscaler, `kubectl scale`? see `kubectl "
            f"{where.kubectl_args} get hpa` and the Deployment's managedFields): stop what scales it, then run "
            f"`placer plan` and apply the new plan, which sets it back to {wanted} and waits for it")


def _stuck_condition(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The Deployment's Progressing condition where its rollout is stuck (ProgressDeadlineExceeded:
    no progress within its progressDeadlineSeconds), else None."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return dict(cond)
    return None


def _since(cond: dict[str, Any]) -> str:
    return str(cond.get("lastUpdateTime") or cond.get("lastTransitionTime") or "an unknown time")


def _stuck_text(obj: dict[str, Any], cond: dict[str, Any], change: Change, where: _Where, before: bool) -> str:
    """Why a rollout's wait fails at once: the Deployment has made no progress since the time its
    condition gives, and what its new pods need. ``before``: it was stuck so when the apply read it,
    and the apply changed nothing of it (a re-apply of the manifest it was stuck with)."""
    status = obj.get("status") or {}
    updated, available = int(status.get("updatedReplicas", 0)), int(status.get("availableReplicas", 0))
    want = int((obj.get("spec") or {}).get("replicas", 1))
    waiting = int(status.get("unavailableReplicas", 0))
    gpus = int(change.target.get("gpus") or 0)
    again = (": the apply found it so, and applied the same Deployment again, which cannot move it"
             if before else "")
    needs = ""
    if waiting and gpus:
        needs = (f"; {waiting} of its new pods {'is' if waiting == 1 else 'are'} not available: where pending, its "
                 f"rollout needs {waiting * gpus} more GPU{'s' if waiting * gpus != 1 else ''} on pool {where.pool} "
                 f"({gpus} a pod)")
    return (f"{where.address}: the rollout of {where} has been stuck since {_since(cond)} (Progressing False, "
            f"ProgressDeadlineExceeded: {cond.get('message') or 'no progress'}){again}; {updated} of {want} "
            f"replicas updated, {available} available{needs}. See `kubectl {where.kubectl_args} describe deployment "
            f"{where.name}` and its pods' events; free the GPUs, or run `placer plan` again: a deployment an apply "
            "left not healthy is rolled out without a surge pod where its pool has no room for one")


# what a kubeconfig holds at its top, beside its kind
KUBECONFIG_KEYS = ("clusters", "contexts", "users", "current-context", "preferences", "extensions")


def _not_a_kubeconfig(path: str) -> str | None:
    """Why the file at ``path`` is no kubeconfig, in one line, or None (a file not there is left to
    the client, which skips it in a KUBECONFIG list). KUBECONFIG=/etc/passwd said "'str' object does
    not support item assignment", and a YAML error ran over four lines."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot read it ({exc})"
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        return f"not YAML{where} ({getattr(exc, 'problem', None) or 'unreadable'})"
    except RecursionError:
        return "YAML nested too deeply"
    if doc is None or doc == {}:
        return None  # empty (or `{}`): the client reads it as no configuration
    # a file of a KUBECONFIG list may hold its preferences only (kind: Config): the client merges it
    if not isinstance(doc, dict) or not (doc.get("kind") == "Config" or any(k in doc for k in KUBECONFIG_KEYS)):
        return "a kubeconfig is a YAML mapping of clusters, contexts and users (kind: Config)"
    return None
