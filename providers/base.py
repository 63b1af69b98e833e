"""The provider protocol: read (discover, observe) and write (apply, wait healthy).

A provider handles the changes of a plan whose ``target.provider`` it serves:
``pool/<name>`` changes set an elastic pool's node count (``after = {"nodes": n}``; ``None``
releases the group: placer stops sizing it, and leaves it as it is or, in gitops, drops its tfvars entry),
``deployment/<model>@<pool>`` changes set a Deployment's replicas
(``after = {"replicas": r}``, ``None`` for delete). ``apply`` is idempotent: applying a
change twice leaves the same result. Errors are ``ProviderError`` and say whether a retry
may help (throttling, 5xx, timeouts) or not (bad request, not ours, not found), and how long
the server asked to wait first (``retry_after``, from its Retry-After header).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import http.client
import re
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from placer.planfile import Change

T = TypeVar("T")


class ProviderError(Exception):
    """What failed, where and what the server said (``facts``), then, for an error a retry may pass,
    ``retry_advice`` ("a retry should get through"). The message is both; once every try of a retry
    policy met the error, ``placer.retry.RetriesSpent`` says its facts alone, not advice to retry what
    was just retried ("...; a retry should get through; tried 6 times over 40s and it still failed")."""

    def __init__(self, message: str, *, retryable: bool = False, address: str | None = None,
                 retry_after: float | None = None, retry_advice: str = "", stopped: bool = False) -> None:
        # "check the network, then retry" reads on from its facts (it was "check the network; then retry")
        joint = " " if message.endswith("?") else ", " if retry_advice.startswith("then ") else "; "
        super().__init__(f"{message}{joint}{retry_advice}" if retry_advice else message)
        self.facts = message
        self.retry_advice = retry_advice
        self.retryable = retryable
        self.address = address
        self.retry_after = retry_after  # seconds the server asked to wait before a retry (Retry-After)
        # a wait the apply ended (``pause``): it did not fail, the apply stopped it, which the apply tells apart
        self.stopped = stopped

    def at(self, address: str) -> ProviderError:
        """This error, its message started by ``address`` (the pool or Deployment it is of), its
        advice kept apart."""
        return ProviderError(f"{address}: {self.facts}", retryable=self.retryable, address=address,
                             retry_after=self.retry_after, retry_advice=self.retry_advice, stopped=self.stopped)


@dataclass(frozen=True)
class Discovered:
    """Fleet documents (plain dicts: apiVersion, kind, metadata, spec) a provider found."""

    documents: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Pool name -> the paths of fields (("spec", "nodes", "max")) that are placeholders, not facts
    # about the group (a MIG without an autoscaler has no size range): a merge fills them in where
    # the fleet's pool lacks them, and never writes them over what the user set
    guessed: dict[str, frozenset[tuple[str, ...]]] = field(default_factory=dict)
    # what discovery read in full, as the start of a pool identity (placer.discover.identities):
    # ("kubernetes", context). A fleet pool there that discovery did not find is reported by a merge
    scopes: list[tuple[Any, ...]] = field(default_factory=list)
    # Pool name -> its nodes as discovery saw them, node name -> labels (Kubernetes): a merge runs a
    # hand-written nodeSelector over them to tell which discovered group, if any, the pool is
    members: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    # groups discovery could not read (a 403 on a template), each skipped with a note: not "no GPUs there"
    unread: list[str] = field(default_factory=list)


@runtime_checkable
class Provider(Protocol):
    name: str

    def handles(self, change: Change) -> bool:
        """Whether this provider executes ``change``."""
        ...

    def observe(self, change: Change) -> dict[str, Any] | None:
        """What the infrastructure holds now at ``change.address``: ``{"nodes": n}``,
        ``{"replicas": r}``, or None where it does not exist; a provider that can tell adds
        ``"unhealthy"``, why it is not healthy now, in words (refresh reports it)."""
        ...

    def apply(self, change: Change) -> None:
        """Make the infrastructure hold ``change.after`` (delete where it is None)."""
        ...

    def wait_healthy(self, change: Change, timeout_s: float) -> None:
        """Block until what ``change`` made is healthy (rolled out); ProviderError on timeout."""
        ...


def pause(stop: threading.Event, seconds: float, address: str, waiting_for: str) -> None:
    """Sleep between a health wait's polls, unless the apply stops its waits (``stop``, set by the
    apply on Ctrl-C or SIGTERM, and once another wait of the same phase failed): then stop waiting at
    once, with an error marked ``stopped``. A SIGTERM 1 s into a rollout's wait took until the health
    timeout (600 s by default) to stop, past a CI runner's or `docker stop`'s grace, whose SIGKILL then
    left the lock behind; a launch EC2 refused was said only once a GCP pool's wait beside it had timed
    out. What the wait was for is made already; it is recorded as made but not healthy, so the next
    plan applies it again and waits for it."""
    if stop.wait(max(0.0, seconds)):
        raise _stopped(address, waiting_for)


def _stopped(address: str, waiting_for: str) -> ProviderError:
    return ProviderError(f"{address}: stopped waiting for {waiting_for}: the apply was interrupted, or another "
                         "change of its phase failed", address=address, stopped=True)


def unless_stopped(stop: threading.Event, call: Callable[[], T], address: str, waiting_for: str,
                   every_s: float = 0.1) -> T:
    """``call()`` (one long request: GCP's operation ``wait``, which the server holds up to 2 minutes), its
    answer or its error; but once ``stop`` is set (as for ``pause``) before it answers, the error ``pause``
    raises, within ``every_s``. The request runs in a daemon thread of its own, left to end within its
    own timeout, its answer unused. A resize's operation wait in flight when another change of the phase
    failed held the apply's failure up to 2 minutes a request, up to the operation's timeout (600 s)."""
    if stop.is_set():
        raise _stopped(address, waiting_for)
    done = threading.Event()
    got: list[T] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            got.append(call())
        except BaseException as exc:  # said in the caller's thread, where it is waited for
            failed.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name=f"placer-request-{address}", daemon=True).start()
    while not done.wait(every_s):
        if stop.is_set():
            raise _stopped(address, waiting_for)
    if failed:
        raise failed[0]
    return got[0]


def retryable_http(status: int | None) -> bool:
    """Throttling and server-side failures are worth a retry; client errors are not."""
    return status is not None and (status == 429 or status >= 500 or status == 408)


def retry_after(headers: Any) -> float | None:
    """The seconds a response's Retry-After header asks to wait (delta-seconds or an HTTP date),
    or None: no such header, or one that says neither. ``headers``: any mapping of a response's
    headers, whatever the case of their names."""
    try:
        value = next((v for k, v in dict(headers or {}).items() if str(k).lower() == "retry-after"), None)
    except (TypeError, ValueError):
        return None
    text = str(value).strip() if value is not None else ""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def unreachable(exc: BaseException) -> str:
    """Why a connection failed, in a few words, with the host where the exception names one:
    "127.0.0.1:9: connection refused", "api.example: the host name does not resolve", "timed
    out", "the server closed the connection without answering". requests and urllib3 wrap the
    socket's error two or three deep (MaxRetryError, then NewConnectionError or ProtocolError, then
    the OSError) and print every layer; this digs out the socket's."""
    where = reason = ""
    for e in causes(exc):
        if not where:
            where = host_of(e) or ""
        if isinstance(e, socket.gaierror):
            reason = "the host name does not resolve"
        elif isinstance(e, http.client.RemoteDisconnected):  # a ConnectionResetError without strerror
            reason = "the server closed the connection without answering"
        elif isinstance(e, http.client.IncompleteRead):
            reason = reason or "the server closed the connection before the answer was complete"
        elif isinstance(e, TimeoutError | socket.timeout) or "timed out" in str(e).lower():
            reason = reason or "timed out"
        elif isinstance(e, OSError) and e.strerror:
            reason = e.strerror[:1].lower() + e.strerror[1:]
    reason = reason or f"{type(exc).__name__}: {exc}"
    return f"{where}: {reason}" if where else reason


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps, each once, nearest first: requests and urllib3 wrap the
    socket's error two or three deep (``reason``, the cause and context, the arguments)."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        e = todo.pop(0)
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [getattr(e, "reason", None), e.__cause__, e.__context__, *e.args]


def host_of(exc: BaseException) -> str | None:
    """The host:port a urllib3 exception names (its connection pool's or connection's), or None."""
    pool = vars(exc).get("pool") or vars(exc).get("conn")  # urllib3's; its `pool` property is deprecated
    host, port = getattr(pool, "host", None), getattr(pool, "port", None)
    if not host:
        return None
    return f"{host}:{port}" if port else str(host)


def pool_nodes(change: Change) -> int:
    if change.after is None or "nodes" not in change.after:
        raise ProviderError(f"{change.address}: a pool change needs after.nodes", address=change.address)
    return int(change.after["nodes"])


def bounded_nodes(change: Change, resize: str) -> int:
    """The nodes a pool change sets, refused where they lie outside its Pool's nodes.min..nodes.max
    (``target.minNodes``/``maxNodes``): a plan that no longer matches its Pool. ``resize`` is what the
    message says would have been done ("set <group>", "resize <group>")."""
    nodes = pool_nodes(change)
    low, high = change.target.get("minNodes"), change.target.get("maxNodes")
    if nodes < 0 or (low is not None and nodes < int(low)) or (high is not None and nodes > int(high)):
        raise ProviderError(
            f"{change.address}: refusing to {resize} to {nodes} nodes: the Pool allows "
            f"{low if low is not None else 0}..{high if high is not None else 'unbounded'} "
            "(nodes.min..nodes.max); the plan does not match its Pool: re-plan", address=change.address)
    return nodes


def grown_pool(change: Change, unit: str) -> tuple[str, str, int | None]:
    """Of a pool change whose nodes the cloud cannot launch: the pool's name, its GPUs in words
    ("H100-80GB instances (8 GPUs each)", ``unit`` the cloud's word for a node), and the nodes it had
    before the change; None where it was a pool the last apply grew and whose nodes did not come up,
    waited for again, which had fewer than it holds."""
    pool = str(change.target.get("pool") or change.address.split("/", 1)[-1])
    gpu, per_node = change.target.get("gpuType") or "GPU", change.target.get("gpusPerNode")
    gpus = f"{gpu} {unit}" + (f" ({per_node} GPUs each)" if per_node else "")
    again = (change.before or {}).get("healthy") is False
    has = None if again else (change.before or {}).get("nodes")
    return pool, gpus, None if has is None else int(has)


def guard(address: str, call: Callable[[], T], classify: Callable[[Exception], ProviderError | None]) -> T:
    """Run ``call``; turn the SDK's exception into a ProviderError via ``classify``."""
    try:
        return call()
    except ProviderError:
        raise
    except Exception as exc:
        mapped = classify(exc)
        if mapped is None:
            raise
        mapped.address = mapped.address or address
        raise mapped from exc


def dns_label(text: str, fallback: str = "x") -> str:
    """A DNS-1123 label made from ``text`` (a pool or location name from a cloud group, a node
    label, a host name): lower-case letters, digits and single hyphens; ``fallback`` where nothing
    is left. A long one keeps a hash of ``text``, so that two that share their first 54
    characters stay two (a host's two GPU types once made one pool name, and `--merge` dropped one)."""
    label = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]+", "-", text.lower())).strip("-")
    if not label:
        return fallback
    if len(label) <= 63:
        return label
    return f"{label[:54].rstrip('-')}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def place_refused(exc: ProviderError, option: str, place: str, places: Sequence[object], plural: str) -> ProviderError:
    """``exc``, which stopped a discovery of several ``places`` at ``place``, told how to discover the
    others (``option place`` left out) where a retry would not pass it: discovery stops rather than
    print a fleet silently lacking a place's GPUs, and said so without a way on."""
    if exc.retryable or len(places) < 2:
        return exc
    return ProviderError(f"{exc}; nothing was printed or written; to discover the other {plural} without it, run it "
                         f"again without {option} {place}", address=exc.address)


# pages a listing may take: far beyond any account (50,000 Auto Scaling groups at 100 a page), far short of
# a server that answers page after page for ever (an ASG listing made 660 requests in 30 s)
MOST_PAGES = 500


def bounded_pages(pages: Iterable[T], what: str, token: Callable[[T], str] | None = None) -> Iterator[T]:
    """``pages`` of a listing, stopped with a ProviderError when the server repeats a page token
    (``token``: a page's next token) or answers more than MOST_PAGES pages."""
    seen: set[str] = set()
    for n, page in enumerate(pages, start=1):
        if n > MOST_PAGES:
            raise ProviderError(f"{what}: the server answered more than {MOST_PAGES} pages and kept going; "
                                "stopped, nothing was written (a proxy or an API fault?)")
        yield page
        nxt = token(page) if token is not None else ""
        if nxt and nxt in seen:
            raise ProviderError(f"{what}: the server sent the page token {nxt[:40]!r} twice, which would list "
                                "the same page for ever; stopped, nothing was written")
        if nxt:
            seen.add(nxt)
