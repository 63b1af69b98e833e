"""The plan file (SPEC section 3): the contract between ``plan`` and ``apply``.

A plan is self-contained: every change carries the provider target it needs, so
``apply`` never reads the fleet and never re-solves. Reading refuses unknown format
versions and malformed files with a message that says what to do.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

FORMAT_VERSION = 1
PLACER_VERSION = "0.1.0"

Action = Literal["create", "update", "delete", "no-op"]

# make before break: grow capacity, create and scale up (then wait healthy),
# scale down and delete, shrink capacity
PHASE_GROW, PHASE_UP, PHASE_DOWN, PHASE_SHRINK = 1, 2, 3, 4
PHASE_NAMES = {PHASE_GROW: "grow capacity", PHASE_UP: "create and scale up, wait healthy",
               PHASE_DOWN: "scale down and delete", PHASE_SHRINK: "shrink capacity"}


class PlanFileError(Exception):
    """A plan file that cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class Change:
    address: str  # "pool/<pool>" or "deployment/<model>@<pool>"
    action: Action
    phase: int
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    reasons: tuple[str, ...] = ()
    target: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.address.split("/", 1)[0]

    @property
    def pool(self) -> str:
        rest = self.address.split("/", 1)[1]
        return rest.split("@", 1)[1] if "@" in rest else rest

    @property
    def model(self) -> str | None:
        rest = self.address.split("/", 1)[1]
        return rest.split("@", 1)[0] if "@" in rest else None

    @property
    def provider(self) -> str:
        return str(self.target.get("provider", ""))

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "action": self.action,
            "phase": self.phase,
            "before": self.before,
            "after": self.after,
            "reasons": list(self.reasons),
            "target": self.target,
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> Change:
        return Change(
            address=str(data["address"]),
            action=data["action"],
            phase=int(data["phase"]),
            before=data.get("before"),
            after=data.get("after"),
            reasons=tuple(data.get("reasons") or ()),
            target=dict(data.get("target") or {}),
        )


@dataclass(frozen=True)
class Plan:
    """The plan file, as data. ``body`` holds the report sections (solver, cost, placements...)."""

    created_at: str
    fleet_digest: str
    prior_lineage: str | None
    prior_serial: int
    body: dict[str, Any]
    changes: tuple[Change, ...]
    format_version: int = FORMAT_VERSION
    placer_version: str = PLACER_VERSION

    @property
    def has_changes(self) -> bool:
        return any(c.action != "no-op" for c in self.changes)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "formatVersion": self.format_version,
            "placerVersion": self.placer_version,
            "createdAt": self.created_at,
            "fleetDigest": self.fleet_digest,
            "priorState": {"lineage": self.prior_lineage, "serial": self.prior_serial},
        }
        out.update(self.body)
        out["changes"] = [c.to_json() for c in self.changes]
        return out

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"


REQUIRED_KEYS = ("formatVersion", "priorState", "changes", "fleetDigest")


def loads(text: str, source: str = "plan") -> Plan:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanFileError(f"{source}: not a plan file (invalid JSON at line {exc.lineno}: {exc.msg}); "
                            "create one with `placer plan FLEET -o PLAN`") from None
    if not isinstance(data, dict):
        raise PlanFileError(f"{source}: not a plan file (expected a JSON object)")
    version = data.get("formatVersion")
    if version is None:  # some other JSON file: a state file, a whatif report, a fleet's schema
        raise PlanFileError(f"{source}: not a plan file (no formatVersion); create one with "
                            "`placer plan FLEET -o PLAN`")
    if version != FORMAT_VERSION:
        raise PlanFileError(f"{source}: plan formatVersion {version!r} is not one this placer ({PLACER_VERSION}) "
                            f"knows (it reads {FORMAT_VERSION}); re-plan with this placer version")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise PlanFileError(f"{source}: plan file is missing {', '.join(missing)}; it may be truncated: re-plan")
    try:
        prior = data["priorState"]
        changes = tuple(Change.from_json(c) for c in data["changes"])
        body = {k: v for k, v in data.items()
                if k not in ("formatVersion", "placerVersion", "createdAt", "fleetDigest", "priorState", "changes")}
        return Plan(
            created_at=str(data.get("createdAt", "")),
            fleet_digest=str(data["fleetDigest"]),
            prior_lineage=prior.get("lineage"),
            prior_serial=int(prior.get("serial", 0)),
            body=body,
            changes=changes,
            placer_version=str(data.get("placerVersion", "")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PlanFileError(f"{source}: malformed plan file ({exc}); re-plan") from None


def read(path: str | Path) -> Plan:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanFileError(f"{path}: no such plan file; create one with `placer plan FLEET -o {path}`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanFileError(f"{path}: cannot read plan file: {exc}") from None
    return loads(text, str(path))


def _umask() -> int:
    """The process's umask, read without setting it (os.umask sets it, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def atomic_write(path: str | Path, text: str) -> None:
    """Write via a temporary file in the same directory, fsync, rename: never a half file. An
    OSError names ``path`` and why, never the temporary file."""
    target = Path(path)
    if target.is_symlink():  # the file it points to is replaced, the link kept (it was replaced by a file)
        target = Path(os.path.realpath(target))
    if target.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a directory; give a file path")
    if target.exists() and not target.is_file():
        # a device, a FIFO, a socket: written into, never renamed over (`plan -o /dev/null` as root
        # replaced the device with a file)
        try:
            with open(target, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            raise type(exc)(f"cannot write {path}: {exc.strerror or exc}") from exc
        return
    for above in target.parents:
        if above.exists() and not above.is_dir():
            raise NotADirectoryError(f"cannot write {path}: {above} is a file, not a directory")
    try:
        # the file's own mode where it exists, else what the umask gives a new file (mkstemp's 0600
        # made every plan file and manifest unreadable to the rest of a team)
        mode = target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~_umask()
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        os.fchmod(fd, mode)
    except OSError as exc:
        raise type(exc)(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise type(exc)(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise


def write(plan: Plan, path: str | Path) -> None:
    atomic_write(path, plan.dumps())
