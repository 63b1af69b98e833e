"""GCP: managed instance group (MIG) sizes, via google-cloud-compute (REST); discovery is in
``providers.gcp_discovery``.

A pool's ``target.gcp`` names a zonal (``zone``) or regional (``region``) MIG; ``apply``
resizes it and waits for the resize operation, ``observe`` reads ``targetSize``,
``wait_healthy`` waits until the group is stable.

Operations are awaited with our own Zone/RegionOperationsClient: the ExtendedOperation
that ``resize()`` returns polls through an operations client built without our
``client_options`` (so it ignores ``api_endpoint``), and it reports success for an
operation that ends with ``error.errors`` but no HTTP status.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1
from google.protobuf import json_format

from placer.planfile import Change
from placer.retry import Retrier
from providers.base import (
    Discovered,
    ProviderError,
    bounded_nodes,
    grown_pool,
    guard,
    pause,
    retry_after,
    retryable_http,
    unless_stopped,
    unreachable,
)

T = TypeVar("T")

_DONE = compute_v1.Operation.Status.DONE
_anonymous: Callable[[], Any] = AnonymousCredentials  # typed handle on an untyped constructor
# operation errors that a retry a few seconds later may get past (throttling, a resource still being made)
_RETRYABLE_OP_ERRORS = {"RATE_LIMIT_EXCEEDED", "RESOURCE_NOT_READY"}
# a zone out of the machines asked for (a GPU stockout): GCP ends the operation with one of these and
# HTTP 503, as if briefly unavailable, but a stockout lasts minutes to hours; retried, the apply sent the
# resize 6 times over 37 s (each as long as GCP takes to fail it) and then said to wait for the provider
_STOCKOUT_OP_ERRORS = {"ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
                       "RESOURCE_POOL_EXHAUSTED"}
_STOCKOUT_TEXT = "does not have enough resources available"


def _short(exc: gexc.GoogleAPICallError) -> str:
    """The API's message without the ``GET https://...:`` prefix the client puts in front."""
    return re.sub(r"^(GET|POST|PUT|PATCH|DELETE) \S+: ", "", str(exc.message)).strip() or type(exc).__name__


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


def _capacity_error(ended: str, codes: set[str], text: str, mig: Mig, change: Change,
                    trying: str = "") -> ProviderError | None:
    """The error of a resize GCP refused for want of capacity, or None: a stockout (the zone has no
    machines of the group's GPU type to give) or the project's quota. Neither is retried: a retry in
    seconds does not outlast a stockout, nor raise a quota; the operator decides where the pool's
    share goes, or when to try again. It says the pool, where, the GPU type and what to do."""
    pool, gpus, has = grown_pool(change, "nodes")
    keep = f"to the {has} it has" if has is not None else "to the nodes its group runs now"
    elsewhere = "another zone" if mig.zone else "another region"
    if codes & _STOCKOUT_OP_ERRORS or _STOCKOUT_TEXT in text:
        return ProviderError(
            f"{ended}. GCP has no {gpus} to give in {mig.where} now (a stockout), so pool {pool} cannot grow; "
            f"not {'waited out' if trying else 'retried'}, as a stockout lasts minutes to hours{trying}. Either let the plan place elsewhere: lower pool "
            f"{pool}'s nodes.max {keep}, or point its target.gcp at a group in {elsewhere} (or use another "
            "pool); then run `placer plan` and apply the new plan. Or run `placer plan` again later, once "
            f"{mig.where} has capacity, and apply that plan", address=change.address)
    if "QUOTA_EXCEEDED" in codes:
        return ProviderError(
            f"{ended}. Project {mig.project}'s quota does not allow pool {pool} that many {gpus} in "
            f"{mig.region_name}; not {'waited out' if trying else 'retried'}{trying}. Request more of the quota it names (console: IAM & Admin > Quotas; "
            f"`gcloud compute regions describe {mig.region_name} --project {mig.project}` lists them), or lower "
            f"pool {pool}'s nodes.max {keep} so that the plan places elsewhere; then run `placer plan` and apply "
            "the new plan", address=change.address)
    return None


def _when(timestamp: str) -> float:
    """An RFC 3339 time GCP writes (2026-12-01T07:00:00.123-08:00) as seconds since the epoch; 0 where
    it is none."""
    try:
        return dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


NOT_FOUND_HINT = ("check target.gcp (project, zone or region, instanceGroupManager); "
                  "placer resizes existing groups, it does not create them")
# A 401/403 names the role the refused call needs: a read (discover gcp, refresh, apply's look at a group
# before its resize) needs only roles/compute.viewer; a resize, and what apply reads while it waits on one,
# roles/compute.instanceAdmin.v1. Every 403 said instanceAdmin, which `placer discover gcp` does not need.
READ_REFUSED = ("the credentials may not read it: grant roles/compute.viewer on the project (enough for "
                "`placer discover gcp` and `placer refresh`; `placer apply` needs roles/compute.instanceAdmin.v1, "
                "which includes it), or run `gcloud auth application-default login` as someone who has it")
APPLY_REFUSED = ("the credentials lack permission: grant roles/compute.instanceAdmin.v1 on the project (`placer "
                 "apply` resizes managed instance groups), or run `gcloud auth application-default login` as "
                 "someone who has it")


def classify(action: str, not_found: str = NOT_FOUND_HINT,
             refused: str = READ_REFUSED) -> Callable[[Exception], ProviderError | None]:
    """Map what the client raises to a ProviderError that says what failed and what to do; ``refused``
    is the advice on a 401/403 (the role the call needs)."""

    def mapped(exc: Exception) -> ProviderError | None:
        if isinstance(exc, gexc.GoogleAPICallError):
            code = exc.code if isinstance(exc.code, int) else None
            detail = _short(exc)
            advice = ""
            if isinstance(exc, gexc.NotFound):
                hint = not_found
            elif code in (401, 403):
                hint = refused
            elif retryable_http(code):
                hint, advice = "GCP is throttling or briefly unavailable", "a retry should get through"
            else:
                hint = "GCP refused the request as sent; fix the fleet or the plan before retrying"
            retryable = retryable_http(code)
            wait = retry_after(getattr(exc.response, "headers", None)) if retryable else None
            return ProviderError(f"gcp: {action} failed: {code} {detail}; {hint}", retryable=retryable,
                                 retry_after=wait, retry_advice=advice)
        if isinstance(exc, gexc.RetryError | requests.Timeout):
            why = unreachable(exc) if isinstance(exc, requests.Timeout) else str(exc)
            return ProviderError(f"gcp: {action} failed: no answer in time ({why})", retryable=True,
                                 retry_advice="a retry may succeed")
        if isinstance(exc, requests.ConnectionError):
            return ProviderError(f"gcp: {action} failed: cannot reach the Compute API ({unreachable(exc)}); "
                                 "check the network", retryable=True, retry_advice="then retry")
        if isinstance(exc, json_format.ParseError):  # an HTML page, a body cut short
            return ProviderError(f"gcp: {action} failed: the Compute API's answer is not what it sends ({exc}); "
                                 "a proxy in the way?", retryable=True, retry_advice="a retry may get through")
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
        # set by an apply interrupted, or once another change of the phase failed: health waits, and a resize's
        # wait for its operation, end at once (base.pause, base.unless_stopped)
        self.stop = threading.Event()
        self.projects = list(projects or [])
        self._options = ClientOptions(api_endpoint=api_endpoint) if api_endpoint else None
        self._credentials = credentials or (_anonymous() if api_endpoint else None)
        self.request_timeout_s = request_timeout_s
        self.operation_timeout_s = operation_timeout_s
        self.poll_interval_s = poll_interval_s
        self._clients: dict[type, Any] = {}
        self._lock = threading.Lock()
        self._asked: dict[str, float] = {}  # pool address -> when its resize was sent (time.time())

    # ------------------------------------------------------------ plumbing

    def _client(self, cls: type[T]) -> T:
        with self._lock:
            if cls not in self._clients:
                self._clients[cls] = cls(credentials=self._credentials, client_options=self._options)  # type: ignore[call-arg]
            return self._clients[cls]  # type: ignore[no-any-return]

    def _call(self, address: str, action: str, call: Callable[[], T], not_found: str = NOT_FOUND_HINT,
              refused: str = READ_REFUSED) -> T:
        return guard(address, call, classify(action, not_found, refused))

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
        return self._of_pool(change, self._observe)

    def apply(self, change: Change) -> None:
        self._of_pool(change, self._apply)

    def wait_healthy(self, change: Change, timeout_s: float) -> None:
        self._of_pool(change, functools.partial(self._wait_healthy, timeout_s=timeout_s))

    @staticmethod
    def _of_pool(change: Change, call: Callable[[Change], T]) -> T:
        """``call(change)``; its error says first the pool it is of (the group is named by target.gcp, often
        not as the pool is: a failed apply said which group, and not which pool of the fleet to mend)."""
        try:
            return call(change)
        except ProviderError as exc:
            if str(exc).startswith(f"{change.address}: "):
                raise
            raise exc.at(change.address) from exc

    def _observe(self, change: Change) -> dict[str, Any] | None:
        mig = Mig.of(change)

        def read() -> compute_v1.InstanceGroupManager | None:
            try:
                return self._get(mig)
            except gexc.NotFound:
                return None

        found = self._call(change.address, f"reading the size of {mig}", read)
        return None if found is None else {"nodes": int(found.target_size)}

    def _apply(self, change: Change) -> None:
        if change.action == "delete":
            return  # released (its Pool left the fleet, or names another group): left as it is, no call made
        mig = Mig.of(change)
        nodes = bounded_nodes(change, f"resize {mig}")
        action = f"resizing {mig} to {nodes} nodes"
        self._asked[change.address] = time.time()
        if mig.zone:
            op = self._call(change.address, action, lambda: self._client(
                compute_v1.InstanceGroupManagersClient).resize_unary(
                project=mig.project, zone=mig.zone, instance_group_manager=mig.name, size=nodes, **self._kw()),
                refused=APPLY_REFUSED)
        else:
            op = self._call(change.address, action, lambda: self._client(
                compute_v1.RegionInstanceGroupManagersClient).resize_unary(
                project=mig.project, region=mig.region, instance_group_manager=mig.name, size=nodes, **self._kw()),
                refused=APPLY_REFUSED)
        self._await(mig, op, change, action)

    def _await(self, mig: Mig, op: compute_v1.Operation, change: Change, action: str) -> None:
        """Wait for ``op`` with the operations' ``wait`` (a server-side long poll) until our deadline."""
        deadline = time.monotonic() + self.operation_timeout_s
        interval = self.poll_interval_s
        while op.status != _DONE:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                scope = f"--zone {mig.zone}" if mig.zone else f"--region {mig.region}"
                # not for the apply engine to retry: a retry sent the resize again and waited the whole
                # timeout again, 6 times (an hour at the default 600 s)
                raise ProviderError(
                    f"gcp: {action}: operation {op.name} not finished after {self.operation_timeout_s:g}s "
                    f"(still {compute_v1.Operation.Status(op.status).name}); GCP may still complete it "
                    f"(`gcloud compute operations describe {op.name} {scope} --project {mig.project}`); "
                    "once it is done, run `placer plan` and apply the new plan (it sends the same size again, "
                    "which is safe)", retryable=False, address=change.address)
            waiting_for = f"operation {op.name} ({action})"
            try:
                op = self._call(change.address, f"waiting for {waiting_for}",
                                functools.partial(self._wait_once, mig, op, remaining, waiting_for, change.address),
                                refused=APPLY_REFUSED)
                if op.status != _DONE:
                    pause(self.stop, min(interval, max(0.0, deadline - time.monotonic())), change.address,
                          waiting_for)
            except ProviderError as exc:
                if not exc.stopped:
                    raise
                raise self._left_running(mig, op, change, action) from exc
            interval = min(interval * 1.5, 10.0)
        errors = list(op.error.errors) if op.error else []
        if errors or op.http_error_status_code >= 400:
            detail = "; ".join(f"{e.code}: {e.message.rstrip('.')}" for e in errors) or (
                f"{op.http_error_status_code} {op.http_error_message}")
            codes = {e.code for e in errors}
            ended = f"gcp: {action} failed: operation {op.name} ended with {detail}"
            capacity = _capacity_error(ended, codes, " ".join(e.message for e in errors), mig, change)
            if capacity is not None:
                raise capacity
            retryable = bool(codes & _RETRYABLE_OP_ERRORS) or retryable_http(op.http_error_status_code or None)
            hint = ("GCP is throttling or briefly unavailable" if retryable else
                    "fix the cause (permissions, template) in GCP, then run `placer plan` and apply the new plan")
            raise ProviderError(f"{ended}; {hint}", retryable=retryable, address=change.address,
                                retry_advice="a retry may succeed" if retryable else "")

    @staticmethod
    def _left_running(mig: Mig, op: compute_v1.Operation, change: Change, action: str) -> ProviderError:
        """The apply stopped waiting for ``op`` (``stop``: another change of the phase failed, or Ctrl-C):
        the resize was sent, and GCP may still carry it out. Marked ``stopped``: not a failure of this
        change, which the apply records at the size asked for, not confirmed."""
        scope = f"--zone {mig.zone}" if mig.zone else f"--region {mig.region}"
        status = compute_v1.Operation.Status(op.status).name
        return ProviderError(
            f"gcp: {action}: the resize was sent, and the apply stopped waiting for its operation {op.name} (still "
            f"{status}): GCP may still carry it out, or fail it; `gcloud compute operations describe {op.name} "
            f"{scope} --project {mig.project}` says whether it is DONE and with what error, and `gcloud compute "
            f"instance-groups managed describe {mig.name} {scope} --project {mig.project}` the group's targetSize",
            address=change.address, stopped=True)

    def _wait_once(self, mig: Mig, op: compute_v1.Operation, remaining: float, waiting_for: str,
                   address: str) -> compute_v1.Operation:
        """One ``wait`` on ``op``, which GCP holds until the operation is done or up to 2 minutes: ended at
        once where the apply stops its waits (``stop``; the request is left to end by itself)."""
        timeout = max(0.1, min(remaining, 120.0))  # the server answers within 2 minutes, DONE or not

        def wait() -> compute_v1.Operation:
            if mig.zone:
                return self._client(compute_v1.ZoneOperationsClient).wait(
                    project=mig.project, zone=mig.zone, operation=op.name, **self._kw(timeout))
            return self._client(compute_v1.RegionOperationsClient).wait(
                project=mig.project, region=mig.region, operation=op.name, **self._kw(timeout))

        try:
            return unless_stopped(self.stop, wait, address, waiting_for)
        except requests.Timeout:
            return op  # our deadline came first; the loop reports it

    def _wait_healthy(self, change: Change, timeout_s: float) -> None:
        mig = Mig.of(change)
        deadline = time.monotonic() + timeout_s
        interval = self.poll_interval_s
        pending: dict[str, int] = {}
        # a read a retry may pass (throttling, a 5xx) is waited past until the deadline, as a rollout's wait
        # does: it ended the wait, and the apply's retries of it, counted over the whole wait, were spent by
        # six throttled reads among good ones ("tried 6 times over 18s ... wait until the provider answers")
        failed: ProviderError | None = None
        while True:
            try:
                found = self._call(change.address, f"checking that {mig} is stable", lambda: self._get(mig),
                                   refused=APPLY_REFUSED)
                actions = found.current_actions
                pending = {k: getattr(actions, k) for k in compute_v1.InstanceGroupManagerActionsSummary.meta.fields
                           if k != "none" and getattr(actions, k)}
                if found.status.is_stable and not pending:
                    return
                if pending.get("creating"):
                    self._refused_creation(change, mig, int(found.target_size))
                failed = None
            except ProviderError as exc:
                if not exc.retryable:
                    raise
                failed = exc
            # to the deadline, no further: it gave up a poll interval (up to 10 s) early, the apply tried the
            # wait again in what was left, and its last try said "not stable after 0.9s ... tried 6 times"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                doing = ", ".join(f"{k} {v}" for k, v in sorted(pending.items())) or "no actions reported"
                where = f"--zone {mig.zone}" if mig.zone else f"--region {mig.region}"
                last = f"; its last read failed: {failed.facts.removeprefix(change.address + ': ')}" if failed else ""
                raise ProviderError(
                    f"gcp: {mig} not stable after {timeout_s:g}s ({doing}){last}; instances may be waiting on quota "
                    f"or GPU capacity: see `gcloud compute instance-groups managed list-errors {mig.name} "
                    f"{where} --project {mig.project}`", retryable=True, address=change.address)
            wait = max(interval, min((failed.retry_after if failed else None) or 0.0, 60.0))
            pause(self.stop, min(wait, remaining), change.address, f"{mig} to become stable")
            interval = min(interval * 1.5, 10.0)

    def _refused_creation(self, change: Change, mig: Mig, size: int) -> None:
        """Raise where the group's newest error since its resize (``listErrors``) is GCP refusing to create
        an instance for want of capacity or quota: the group keeps trying, and no wait outlasts a stockout.
        The wait went on to its timeout (600 s), and said only that instances may be waiting on capacity."""
        since = self._asked.get(change.address, time.time()) - 60.0  # GCP's clock against ours

        def newest() -> list[Any]:  # the first page: the newest errors first
            pager: Any
            if mig.zone:
                pager = self._client(compute_v1.InstanceGroupManagersClient).list_errors(
                    request=compute_v1.ListErrorsInstanceGroupManagersRequest(
                        project=mig.project, zone=mig.zone, instance_group_manager=mig.name, max_results=10),
                    **self._kw())
            else:
                pager = self._client(compute_v1.RegionInstanceGroupManagersClient).list_errors(
                    request=compute_v1.ListErrorsRegionInstanceGroupManagersRequest(
                        project=mig.project, region=mig.region, instance_group_manager=mig.name, max_results=10),
                    **self._kw())
            return list(next(iter(pager.pages)).items)

        try:
            errors = self._call(change.address, f"listing the errors of {mig}", newest, refused=APPLY_REFUSED)
        except ProviderError as exc:
            if exc.retryable:
                raise
            return  # no compute.instanceGroupManagers.get permission for it: the wait's timeout says what it can
        recent = [e for e in errors if _when(e.timestamp) >= since]
        if not recent:
            return
        error = recent[0].error
        scope = f"--zone {mig.zone}" if mig.zone else f"--region {mig.region}"
        ended = (f"gcp: {mig} cannot create the instances of its {size} nodes: {error.code}: "
                 f"{error.message.rstrip('.')} (`gcloud compute instance-groups managed list-errors {mig.name} "
                 f"{scope} --project {mig.project}`)")
        trying = (f"; the group keeps its target size {size} and goes on trying (placer records that, and the next "
                  "apply waits for its nodes again)")
        capacity = _capacity_error(ended, {error.code}, error.message, mig, change, trying)
        if capacity is not None:
            raise capacity

    # ------------------------------------------------------------ discovery

    def discover(self, projects: list[str] | None = None, zones: list[str] | None = None,
                 regions: list[str] | None = None, retry: Retrier | None = None) -> Discovered:
        """Pool documents for the MIGs whose instances carry GPUs, and a Location per region
        (``providers.gcp_discovery``).

        With ``zones``/``regions`` only those are listed; otherwise one aggregated list per project.
        ``retry`` tries each call again after a retryable failure (without it each is made once).
        """
        from providers.gcp_discovery import discover

        return discover(self, projects, zones, regions, retry)
