"""The provider protocol: read (discover, observe) and write (apply, wait healthy).

A provider handles the changes of a plan whose ``target.provider`` it serves:
``pool/<name>`` changes set an elastic pool's node count (``after = {"nodes": n}``),
``deployment/<model>@<pool>`` changes set a Deployment's replicas
(``after = {"replicas": r}``, ``None`` for delete). ``apply`` is idempotent: applying a
change twice leaves the same result. Errors are ``ProviderError`` and say whether a retry
may help (throttling, 5xx, timeouts) or not (bad request, not ours, not found).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from placer.planfile import Change

T = TypeVar("T")


class ProviderError(Exception):
    def __init__(self, message: str, *, retryable: bool = False, address: str | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.address = address


@dataclass(frozen=True)
class Discovered:
    """Fleet documents (plain dicts: apiVersion, kind, metadata, spec) a provider found."""

    documents: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@runtime_checkable
class Provider(Protocol):
    name: str

    def handles(self, change: Change) -> bool:
        """Whether this provider executes ``change``."""
        ...

    def observe(self, change: Change) -> dict[str, Any] | None:
        """What the infrastructure holds now at ``change.address``: ``{"nodes": n}``,
        ``{"replicas": r}``, or None where it does not exist."""
        ...

    def apply(self, change: Change) -> None:
        """Make the infrastructure hold ``change.after`` (delete where it is None)."""
        ...

    def wait_healthy(self, change: Change, timeout_s: float) -> None:
        """Block until what ``change`` made is healthy (rolled out); ProviderError on timeout."""
        ...


def retryable_http(status: int | None) -> bool:
    """Throttling and server-side failures are worth a retry; client errors are not."""
    return status is not None and (status == 429 or status >= 500 or status == 408)


def pool_nodes(change: Change) -> int:
    if change.after is None or "nodes" not in change.after:
        raise ProviderError(f"{change.address}: a pool change needs after.nodes", address=change.address)
    return int(change.after["nodes"])


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
