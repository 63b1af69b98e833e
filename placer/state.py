"""State: lineage, serial, what runs where, and the history of applies.

Backends: ``local`` (a JSON file written atomically, locked by a lock file that records
who holds it since when) and ``s3`` (``placer.state_s3``). A state file that cannot be
read is an error that says so; it is never overwritten silently.

An apply records each change as it is done. The local backend appends it to a journal beside
the state file (``<state>.journal``, one JSON line, fsync'd; the s3 backend puts one small
object per change under ``<key>.journal/``) rather than writing the whole state again: a state of 15,000 deployments takes 200 ms to write, and writing it after each of a large
fleet's 22,000 first changes made that apply take over half an hour. ``read`` replays the
journal; a full write folds it in and removes it (when the apply ends, well or not). A line cut
short by a killed process was never recorded.
"""

from __future__ import annotations

import datetime as dt
import errno
import getpass
import hashlib
import json
import math
import os
import shlex
import socket
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from placer.planfile import (
    POOL_TARGETS,
    atomic_write,
    blocked_folder,
    cannot_list,
    cannot_read,
    deployment_place,
    file_leftovers,
    os_reason,
    pool_group,
    temporary_beside,
)

# The newest state version this placer reads. A state is written as version 1, which every placer
# reads, unless it holds what the placers that read version 1 alone take for something else
# (``State.version``): then as version 2, which they refuse ("state version 2 is newer than this
# placer reads") rather than plan from it as if nothing were pending, or write it back without it.
STATE_VERSION = 2
_UNREAD: Any = object()  # the state has not been read by this backend yet


class StateError(Exception):
    """The state cannot be read or written; the message says what to do."""


class StateConflict(StateError):
    """The state is not the one the backend read or wrote last: another writer replaced or removed it
    while this apply held the lock (its lock broken with `placer force-unlock` while it ran, or the state
    edited, restored or deleted by hand). Nothing was written over it."""


def changed_under(location: str, now: bytes | None, found_none: bool = False) -> StateConflict:
    """The conflict of a write refused because the state at ``location`` is now ``now`` (None: gone;
    ``found_none``: there was none when this apply read it)."""
    if now is None:
        how = "it was deleted after this apply read it"
    else:
        try:
            data = json.loads(now)
            serial = f", now serial {data['serial']}" if isinstance(data, dict) and "serial" in data else ""
        except (ValueError, RecursionError):
            serial = ""
        how = (f"another writer wrote one after this apply found none{serial}" if found_none
               else f"another writer replaced it after this apply read it{serial}")
    return StateConflict(f"{location}: the state changed under you: re-plan ({how}, while this apply held the lock: "
                         "the lock broken with `placer force-unlock` while it ran, or the state written, restored or "
                         "deleted by hand; nothing was overwritten)")


class LockError(StateError):
    def __init__(self, message: str, holder: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.holder = holder or {}


@dataclass
class State:
    lineage: str | None = None
    serial: int = 0
    # "model@pool" -> {"replicas": int, "target": {...}, "healthy": false,
    #                  "deposed": [{"replicas": int, "target": {...}}]}
    # (healthy: false, an apply made it and its health wait did not pass (failed, timed out, or was
    # interrupted): the next plan applies it again and waits for it; absent once healthy.
    # deposed: the copies at an older place that a replacement has yet to delete; absent when none)
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    # pool -> {"nodes": int, "target": {...}, "healthy": false, "shrank": true}
    # (healthy: false, an apply grew it and its wait for the nodes did not pass (a launch refused for
    # capacity or quota, a timeout, an interrupt), or resized it and its wait for the resize was
    # stopped: the next plan waits for them again; absent once seen. shrank: true beside it, that
    # resize was a shrink (the next plan says so, not "grew it"); absent otherwise)
    pools: dict[str, dict[str, Any]] = field(default_factory=dict)
    # model -> {"demand": total rate at the last apply}, for the models of the last applied plan only
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    cost_usd_per_hour: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    # an apply that has not finished: {"plan": ..., "startedAt": ..., "done": [addresses]}
    applying: dict[str, Any] | None = None

    def replay(self, entry: dict[str, Any]) -> None:
        """Redo one recorded change of an apply (``Applier`` writes ``entry``: the change's
        ``address``, ``kind``, state ``key`` and ``value``, None for a deletion)."""
        table = self.pools if entry["kind"] == "pool" else self.deployments
        if entry["value"] is None:
            table.pop(entry["key"], None)
        else:
            table[entry["key"]] = dict(entry["value"])
        if self.applying is not None:
            self.applying.setdefault("done", []).append(entry["address"])

    def progress(self) -> dict[str, Any] | None:
        """Where the unfinished apply the state is in the middle of stands: ``{"plan": its id,
        "done": how many changes it recorded}``, or None. A plan records it (``priorState.applying``):
        an apply's serial moves at its first change only, so a plan read while one ran is told from
        one read after it by this."""
        if self.applying is None:
            return None
        plan = self.applying.get("plan")
        return {"plan": None if plan is None else str(plan), "done": len(self.applying.get("done", []))}

    def replans_since_full_search(self) -> int:
        """How many of the last applies in a row applied a short re-plan around what runs (their
        history entries' ``search``, as the plan's solver.search said): an apply of a whole search,
        or one placer recorded before it wrote ``search``, ends the count."""
        count = 0
        for entry in reversed(self.history):
            if entry.get("search") != "replan":
                break
            count += 1
        return count

    def replicas(self) -> dict[tuple[str, str], int]:
        out = {}
        for key, value in self.deployments.items():
            model, pool = key.split("@", 1)
            if int(value.get("replicas", 0)) > 0:
                out[(model, pool)] = int(value["replicas"])
        return out

    def nodes(self) -> dict[str, int]:
        return {p: int(v["nodes"]) for p, v in self.pools.items() if "nodes" in v}

    def version(self) -> int:
        """The version this state is written as: 2 where it holds a mark that a placer reading version
        1 alone ignores (each written into version 1 states by a newer placer before, with no version
        to tell): a deployment or pool made but not healthy yet (``healthy: false``: such a placer
        planned "No changes" for a rollout that never became ready, and its apply of another change
        wrote the entry back without the mark), a deposed copy a replacement has yet to delete (lost,
        the copy leaked), or an apply that has not finished (its changes after the first are in the
        journal, which the placers before it never read); else 1, so that a state without any
        stays readable by the placer an operator rolls back to."""
        pending = (self.applying is not None
                   or any(v.get("healthy") is False or v.get("deposed") for v in self.deployments.values())
                   or any(v.get("healthy") is False for v in self.pools.values()))
        return 2 if pending else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version(),
            "lineage": self.lineage,
            "serial": self.serial,
            "deployments": dict(sorted(self.deployments.items())),
            "pools": dict(sorted(self.pools.items())),
            "models": dict(sorted(self.models.items())),
            "costUsdPerHour": self.cost_usd_per_hour,
            "applying": self.applying,
            "history": self.history,
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    @staticmethod
    def loads(text: str, source: str) -> State:
        hint = (f"the state file {source} is damaged; restore it from a backup (or from history) "
                "rather than deleting it: placer will not overwrite it")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StateError(f"{source}: invalid JSON at line {exc.lineno} ({exc.msg}): {hint}") from None
        except RecursionError:  # ``[[[...]]]`` 100,000 deep was an internal error
            raise StateError(f"{source}: malformed state (nested too deeply to read): {hint}") from None
        if not isinstance(data, dict) or "serial" not in data or "lineage" not in data:
            raise StateError(f"{source}: not a placer state (no lineage/serial): {hint}")
        version = data.get("version", STATE_VERSION)
        if not _count(version) or version < 1:  # a version of "1" was said to be newer than this placer
            raise StateError(f"{source}: malformed state (version {version!r} is no count): {hint}")
        if version > STATE_VERSION:
            # it said only that, not what to do, nor that it is left as it is
            raise StateError(f"{source}: state version {version} is newer than this placer reads ({STATE_VERSION}): "
                             "upgrade placer to the version that wrote it; placer will not overwrite it")
        try:
            state = State(
                lineage=data["lineage"],
                serial=int(data["serial"]),
                deployments={str(k): dict(v) for k, v in (data.get("deployments") or {}).items()},
                pools={str(k): dict(v) for k, v in (data.get("pools") or {}).items()},
                models={str(k): dict(v) for k, v in (data.get("models") or {}).items()},
                cost_usd_per_hour=data.get("costUsdPerHour"),
                history=list(data.get("history") or []),
                applying=data.get("applying"),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise StateError(f"{source}: malformed state ({exc}): {hint}") from None
        wrong = _wrong_top(data) or _wrong_fields(state)
        if wrong:  # read unchecked, they were an internal error in `plan` (a hand edit, a bad merge)
            raise StateError(f"{source}: malformed state ({wrong}): {hint}")
        return state


def deployment_entry(current: dict[str, Any] | None, replicas: int | None,
                     target: dict[str, Any]) -> dict[str, Any] | None:
    """A deployment's state entry once a change made ``replicas`` run at ``target`` (None: deleted it
    there). A replacement (the target's context or namespace changed) creates the new copy before it
    deletes the old one: once the new one is recorded, the old one stays in the entry as ``deposed``
    until its delete is recorded, so that an apply stopped between the two leaves it for the next
    plan to delete (it leaked, and refresh said "No drift")."""
    place = deployment_place(target)
    cur = current or {}
    deposed = [dict(d) for d in cur.get("deposed") or [] if deployment_place(d.get("target") or {}) != place]
    main: dict[str, Any] | None = None
    if int(cur.get("replicas", 0)) > 0:
        main = {"replicas": int(cur["replicas"]), "target": dict(cur.get("target") or {})}
    here = main is None or not main["target"] or not target or deployment_place(main["target"]) == place
    if replicas is not None:
        if not here and main is not None:
            deposed.append(main)
        main = {"replicas": replicas, "target": target}
    elif not here and main is not None and cur.get("healthy") is False:
        main["healthy"] = False  # a deposed copy's delete leaves the copy that replaced it as it was
    elif here:
        main = None
    if main is None and not deposed:
        return None
    entry = main or {"replicas": 0, "target": dict(cur.get("target") or {})}
    return {**entry, "deposed": deposed} if deposed else entry


def health_marked(entry: dict[str, Any], healthy: bool) -> dict[str, Any]:
    """A deployment's (or a grown pool's) state entry marked as made but not healthy (``healthy`` False: its health wait
    has yet to pass, or did not), or with that mark cleared. A rollout recorded only once healthy
    left the state at the old version and count when its wait failed, and the plan of the fleet
    backed out to them said "No changes" while the cluster ran the new ones."""
    kept = {k: v for k, v in entry.items() if k not in ("healthy", "shrank")}  # a pool's shrank goes with the mark
    return kept if healthy else {**kept, "healthy": False, **({"shrank": True} if entry.get("shrank") else {})}


def pool_entry(current: dict[str, Any] | None, nodes: int | None, target: dict[str, Any]) -> dict[str, Any] | None:
    """A pool's state entry once a change set its group at ``target`` to ``nodes``, or released it
    (``nodes`` None: placer no longer sizes that group). Releasing a group other than the one the
    entry records (the pool's group was replaced, and the new one is recorded) keeps the entry."""
    if nodes is not None:
        return {"nodes": nodes, "target": target}
    if current is not None and current.get("target") and target \
            and pool_group(current["target"]) != pool_group(target):
        return dict(current)
    return None


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _wrong_top(data: dict[str, Any]) -> str | None:
    """What in a state's lineage, serial or history, as read, is not what placer writes there, or
    None (``State.loads`` made a mapping of a history its list of keys, and took a serial of -5)."""
    if not _count(data["serial"]):
        return f"serial {data['serial']!r} is no count"
    if data["lineage"] is not None and not isinstance(data["lineage"], str):
        return f"lineage {data['lineage']!r} is no text"
    if data["lineage"] is not None and not data["lineage"].isprintable():  # it is printed, and written in plans
        return f"lineage {data['lineage']!r} is no lineage (it holds a control character)"
    history = data.get("history")
    if history is not None and not (isinstance(history, list) and all(isinstance(h, dict) for h in history)):
        return "history is not a list of applies"
    return None


def _wrong_target(target: Any, names: dict[str, str]) -> str | None:
    """What in a recorded target is not what placer writes there (a plan read it with no check:
    internal errors on a target of "x" or gpus of "two" or null), or None. ``names``: the model and
    pool its key names, which a target that names them names too, as a plan's change must (one
    naming another pool, or a pool's of a provider placer sizes none of, made `plan` write a plan
    that apply refused as "edited by hand")."""
    if not isinstance(target, dict):
        return f"target {target!r} is not a mapping"
    for key, name in names.items():
        if key in target and target[key] != name:
            return f"target.{key} {target[key]!r} is not its {key} {name!r}"
    for part in ("kubernetes", "aws", "gcp"):
        if target.get(part) is not None and not isinstance(target[part], dict):
            return f"target.{part} {target[part]!r} is not a mapping"
    k8s = target.get("kubernetes") or {}
    for key in ("context", "namespace", "image", "version"):
        where = k8s if key in ("context", "namespace") else target
        if where.get(key) is not None and not isinstance(where[key], str):
            return f"target {key} {where[key]!r} is no text"
    if "gpus" in target and not (_count(target["gpus"]) and target["gpus"] >= 1):
        return f"target.gpus {target['gpus']!r} is no count"
    return None


def _wrong_name(kind: str, name: str) -> str | None:
    """Why ``name``, a state's name of a ``kind``, is none a fleet may hold, or None: a key is printed
    in the plan as an address (`- deployment/<model>@<pool>`), so a line break in it forged a plan
    line, an escape code reached the terminal, and the plan written was one apply refuses."""
    from placer.spec.loader import check_name  # the fleet's own check of a name

    why = check_name(kind, name)
    return None if why is None else f"{kind.lower()} {why}"


def _wrong_fields(state: State) -> str | None:
    """What in a state's fields is not what placer writes there, or None."""
    from placer.spec.loader import controls  # the fleet's own check: a state holds only what a fleet may

    for part, table in (("deployments", state.deployments), ("pools", state.pools), ("models", state.models),
                        ("applying", state.applying if isinstance(state.applying, dict) else {})):
        held = controls(table, (part,))
        if held:
            return (f"{'.'.join(map(str, held[0][0]))!r} contains the control character {held[0][1]!r}, which "
                    "would reach the terminal as it is")
    for key in state.models:
        if why := _wrong_name("Model", key):
            return f"models: {why}"
    for key in state.deployments:
        model, _, pool = key.partition("@")
        if why := (_wrong_name("Model", model) or _wrong_name("Pool", pool)) if pool else None:
            return f"deployment {key!r}: {why}"
    for key in state.pools:
        if why := _wrong_name("Pool", key):
            return f"pools: {why}"
    for key, value in state.models.items():
        if "demand" in value and not _number(value["demand"]):
            return f"model {key}: demand {value['demand']!r} is no number"
    for key, value in state.deployments.items():
        if "@" not in key:
            return f"deployment {key!r} is not <model>@<pool>"
        model, _, pool = key.partition("@")
        if not _count(value.get("replicas", 0)):
            return f"deployment {key}: replicas {value.get('replicas')!r} is no count"
        if not isinstance(value.get("healthy", True), bool):
            return f"deployment {key}: healthy {value['healthy']!r} is not true or false"
        deposed = value.get("deposed", [])
        if not isinstance(deposed, list) or not all(isinstance(d, dict) and _count(d.get("replicas", 0))
                                                    for d in deposed):
            return f"deployment {key}: deposed is not a list of replaced copies (replicas, target)"
        for i, entry in enumerate([value, *deposed]):
            why = _wrong_target(entry["target"], {"model": model, "pool": pool}) if "target" in entry else None
            if why:
                return f"deployment {key}: {'deposed[' + str(i - 1) + '] ' if i else ''}{why}"
    for key, value in state.pools.items():
        if "nodes" in value and not _count(value["nodes"]):
            return f"pool {key}: nodes {value['nodes']!r} is no count"
        if not isinstance(value.get("healthy", True), bool):
            return f"pool {key}: healthy {value['healthy']!r} is not true or false"
        if not isinstance(value.get("shrank", True), bool):
            return f"pool {key}: shrank {value['shrank']!r} is not true or false"
        target = value.get("target") or {}
        if isinstance(target, dict) and "provider" in target and target["provider"] not in POOL_TARGETS:
            return (f"pool {key}: target.provider {target['provider']!r} is not {' or '.join(POOL_TARGETS)} "
                    "(placer sizes the groups of those pools only)")
        why = _wrong_target(value["target"], {"pool": key}) if "target" in value else None
        if why:
            return f"pool {key}: {why}"
    applying = state.applying
    if applying is not None and (not isinstance(applying, dict) or not isinstance(applying.get("done", []), list)):
        return "applying is not an apply's record (with a list of the changes done)"
    # NaN or 1e999 (infinite) passed, and `plan -o` failed writing it: "Out of range float values"
    if state.cost_usd_per_hour is not None and not _number(state.cost_usd_per_hour):
        return f"costUsdPerHour {state.cost_usd_per_hour!r} is no number"
    return None


def journal_line(state: State, entry: dict[str, Any]) -> str:
    """One recorded change of an apply, as a journal holds it (with the apply's lineage and serial)."""
    return json.dumps({"lineage": state.lineage, "serial": state.serial, **entry})


def _wrong_record(entry: Any) -> str | None:
    """What in a journal record, as read, is not what ``Applier`` writes there, or None (read
    unchecked, a record without its value or with a seq of "1" was an internal error)."""
    if not isinstance(entry, dict):
        return "not a JSON object"
    if not _count(entry.get("seq")) or entry["seq"] < 1:
        return f"seq {entry.get('seq')!r} is no count"
    if entry.get("kind") not in ("pool", "deployment"):
        return f"kind {entry.get('kind')!r} is not pool or deployment"
    for key in ("address", "key"):
        if not isinstance(entry.get(key), str):
            return f"{key} {entry.get(key)!r} is no text"
    if "value" not in entry:
        return "no value"
    value = entry["value"]
    if value is None:
        return None
    if not isinstance(value, dict):
        return f"value {value!r} is not a mapping or null"
    table = {entry["key"]: value}
    return _wrong_fields(State(pools=table) if entry["kind"] == "pool" else State(deployments=table))


def _damaged_journal(where: str, wrong: str) -> StateError:
    return StateError(f"{where}: malformed journal record ({wrong}): the journal of the apply that did not "
                      "finish is damaged; restore it from a backup rather than deleting it (it records "
                      "changes that were made, which the state alone does not): placer will not overwrite it")


def replay_journal(state: State, records: Iterable[tuple[str, str]], torn_tail: bool = False) -> None:
    """A journal's records, each ``(where it is, its line)``, over ``state``: those of the apply
    the state is in the middle of (its lineage and serial), not yet in it (a record's ``seq`` is
    its place among the apply's done changes: a journal left behind by a fold that was cut short
    repeats some). With ``torn_tail`` (an append-only file), a last line that does not parse was
    cut short by a killed process and was never recorded. Any other that does not parse (the s3
    backend writes each record whole, in one put), or that parses but is no record, is damage: a
    StateError (it and every record after it were dropped, and the next apply deleted them)."""
    if state.applying is None:
        return
    listed = list(records)
    for n, (where, line) in enumerate(listed, start=1):
        try:
            entry = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            if torn_tail and n == len(listed):
                break
            raise _damaged_journal(where, f"not JSON: {getattr(exc, 'msg', 'nested too deeply')}") from None
        if isinstance(entry, dict) and (entry.get("lineage") != state.lineage or entry.get("serial") != state.serial):
            return  # another apply's
        wrong = _wrong_record(entry)
        if wrong:
            raise _damaged_journal(where, wrong)
        if entry["seq"] > len(state.applying.get("done", [])):
            state.replay(entry)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pid_namespace() -> str | None:
    """The PID namespace this process runs in (Linux: ``pid:[4026531836]``), None where there are none:
    a container on the host's network has the host's name, but not its processes."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (Linux: clock ticks since boot, /proc/PID/stat), None where it is not
    known: with its PID, it tells the process that took a lock from another given the same PID since."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return fields[19].decode("ascii")  # field 22, counted from the one after the name's ')'
    except (OSError, IndexError, UnicodeDecodeError, ValueError, OverflowError):
        return None


def lock_info(operation: str) -> dict[str, Any]:
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid())
    info: dict[str, Any] = {
        "ID": str(uuid.uuid4()),
        "Operation": operation,
        "Who": f"{user}@{socket.gethostname()}",
        "PID": os.getpid(),
        "Created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    namespace = pid_namespace()
    if namespace is not None:
        info["PIDNamespace"] = namespace
    started = process_start(os.getpid())
    if started is not None:
        info["PIDStart"] = started
    return info


def holder_gone(holder: dict[str, Any]) -> bool:
    """Whether a lock's holder is known to be gone: a process of this host, and of this PID namespace,
    that no longer runs (a killed apply's lock). One of another host, of another PID namespace (a
    container with the host's name, `docker run --network host`: a running apply's lock was said gone
    and to be forced), of one not recorded (an older placer's lock), or a lock that names none, may
    still run."""
    return _holder_runs(holder) is False


def holder_runs(holder: dict[str, Any]) -> bool:
    """Whether a lock's holder is known to run still: the process of this host, and of this PID namespace,
    that took it (its PID, and its start time where the lock records it: a PID given to another process
    since is not it). `placer force-unlock` of a running apply's lock let another apply write while it ran."""
    # a lock this very process holds is no other apply's (the command line never asks of its own)
    return _holder_runs(holder) is True and holder.get("PIDStart") is not None and holder.get("PID") != os.getpid()


def _holder_runs(holder: dict[str, Any]) -> bool | None:
    """Whether a lock's holder runs (True), is gone (False), or may run for all this process can tell (None)."""
    who, pid = str(holder.get("Who", "")), holder.get("PID")
    if who.rpartition("@")[2] != socket.gethostname() or not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    if holder.get("PIDNamespace") != pid_namespace():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass  # it runs, as another user
    except OverflowError:
        return None  # a PID no process can have (a lock written by another hand): it was an internal error
    started = holder.get("PIDStart")
    return started is None or process_start(pid) in (None, str(started))  # else its PID is another process's now


def said(value: Any) -> str:
    """A lock's field as a message prints it: quoted where it holds a control character (a lock is
    a file or an object anyone with access may write: its line breaks and escape codes reached the
    terminal as they were)."""
    text = str(value)
    return text if text.isprintable() else repr(text)


def describe_holder(holder: dict[str, Any]) -> str:
    return (f"held by {said(holder.get('Who', '?'))} (pid {said(holder.get('PID', '?'))}) for "
            f"{said(holder.get('Operation', '?'))} since {said(holder.get('Created', '?'))}, "
            f"lock ID {said(holder.get('ID', '?'))}")


def unlock_command(holder: dict[str, Any], where: str) -> str:
    """The `placer force-unlock` command that breaks ``holder``'s lock, its ID shell-quoted (a lock is a
    file anyone with access may write: an ID of `x; rm -rf ~`, pasted, ran a second command), or quoted
    as ``said`` does where it holds a control character, whose escape codes reached the terminal."""
    lock_id = str(holder.get("ID"))
    return f"placer force-unlock {shlex.quote(lock_id) if lock_id.isprintable() else said(lock_id)} {where}"


def refuse_running(location: str, holder: dict[str, Any]) -> None:
    """A LockError where ``holder`` is known to run still (``holder_runs``): its lock is not broken (once
    it was, another apply wrote while it ran, and it wrote over that apply's record)."""
    if holder_runs(holder):
        pid = said(holder.get("PID"))
        raise LockError(f"the lock on {location} was not broken: it is {describe_holder(holder)}, and pid {pid} still "
                        "runs on this host; wait for that apply to finish (or stop it, `kill "
                        f"{pid}`: it stops once the changes in flight are done, records them and releases the lock)",
                        holder)


def locked_message(location: str, holder: dict[str, Any], where: str, note: str = "") -> str:
    """Why a lock was refused, and the ``placer force-unlock`` command that breaks it (``where``:
    its --state or --fleet; ``note``: said after it). A lock that names no holder (empty or
    unreadable: written by hand or by another tool, or cut short) is broken by any ID: it said
    `placer force-unlock ?`, which the s3 backend refused."""
    if holder.get("ID") and holder_gone(holder):  # a process of this host: it said "If that process is gone"
        return (f"the state {location} is locked: {describe_holder(holder)}; pid {said(holder.get('PID'))} no "
                f"longer runs on this host (killed?): run `{unlock_command(holder, where)}`{note}")
    if holder.get("ID") and holder_runs(holder):  # it said "If that process is gone" of one that ran
        return (f"the state {location} is locked: {describe_holder(holder)}; pid {said(holder.get('PID'))} still runs "
                "on this host: wait for that apply to finish, then run the command again (or stop it, `kill "
                f"{said(holder.get('PID'))}`: it stops once the changes in flight are done, records them and releases "
                "the lock)")
    if holder.get("ID"):
        return (f"the state {location} is locked: {describe_holder(holder)}. If that process is gone, run "
                f"`{unlock_command(holder, where)}`{note}")
    return (f"the state {location} is locked by a lock that names no holder (empty or unreadable); if no placer is "
            f"using this state, any lock ID breaks it: run `placer force-unlock any {where}`{note}")


class Backend(Protocol):
    location: str

    def read(self) -> State: ...

    def write(self, state: State) -> None: ...

    # optional: ``record(state, entry)`` keeps one change of an apply (``State.replay`` reads
    # ``entry`` back) more cheaply than ``write``; backends without it get ``write`` each time

    def lock(self, operation: str) -> Any:
        """A context manager holding the state lock (LockError if someone else holds it)."""
        ...

    def force_unlock(self, lock_id: str) -> dict[str, Any]: ...

    def holder(self) -> dict[str, Any] | None:
        """Who holds the state lock ({} for a lock that names no one), or None when it is free."""
        ...


class LocalBackend:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # beside the file a write writes (a link's target, as ``atomic_write`` writes into a link), not
        # the link: an apply through a link to the state ran while another held the file's lock
        real = Path(os.path.realpath(self.path))
        self.lock_path = real.with_name(real.name + ".lock")
        self.journal_path = real.with_name(real.name + ".journal")
        self.location = str(self.path)
        # the state file as read or written last: (its stat, its digest); None: there was none; _UNREAD.
        # A write (or a journal record) over another one is refused: an apply whose lock was broken while
        # it ran wrote its serial 2 over the serial 3 of the apply that took the lock after
        self._seen: Any = _UNREAD

    @staticmethod
    def _stat(info: os.stat_result) -> tuple[int, ...]:
        return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns

    def read(self) -> State:
        try:
            with self.path.open("rb") as handle:
                stat = self._stat(os.fstat(handle.fileno()))
                data = handle.read()
            text = data.decode("utf-8")
        except FileNotFoundError:
            self._seen = None
            return State()
        except UnicodeDecodeError as exc:  # it said Python's "'utf-8' codec can't decode byte 0xff ...", no more
            raise StateError(f"{self.path}: cannot read state: it is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                             f"at offset {exc.start}): the state file is damaged; restore it from a backup (or from "
                             "history) rather than deleting it: placer will not overwrite it") from None
        except PermissionError as exc:  # it said "cannot read state: permission denied", and nothing of what to do
            raise StateError(str(cannot_read(self.path, exc, "as the state"))) from None
        except IsADirectoryError:  # it said "cannot read state: is a directory", and nothing of what to do
            raise StateError(f"{self.path}: cannot read state: it is a directory; name the state file, with --state "
                             f"FILE or Settings state.path (e.g. {self.path / 'state.json'})") from None
        except OSError as exc:
            raise StateError(f"{self.path}: cannot read state: {blocked_folder(self.path) or os_reason(exc)}") from None
        self._seen = (stat, hashlib.sha256(data).hexdigest())
        if not text.strip():
            raise StateError(f"{self.path}: the state file is empty (truncated?); restore it from a backup; "
                             "placer will not overwrite it")
        state = State.loads(text, str(self.path))
        self._replay(state)
        return state

    def _replay(self, state: State) -> None:
        if state.applying is None:
            return  # the apply ended with a full write: any journal left is in the state already
        try:
            lines = self.journal_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError) as exc:
            raise StateError(f"{self.journal_path}: cannot read the apply's journal: {exc}") from None
        replay_journal(state, ((f"{self.journal_path}:{n}", line) for n, line in enumerate(lines, start=1)),
                       torn_tail=True)

    def record(self, state: State, entry: dict[str, Any]) -> None:
        """Append one change of an apply to the journal (``state`` holds it already): O(1), where
        ``write`` is O(the state). The apply's last ``write`` folds the journal in."""
        self._unchanged(thorough=False)
        line = journal_line(state, entry) + "\n"
        new = not self.journal_path.exists()
        with open(self.journal_path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        if new:
            _fsync_dir(self.journal_path.parent)

    def write(self, state: State) -> None:
        self._unchanged(thorough=True)
        text = state.dumps()
        atomic_write(self.path, text)
        stat: tuple[int, ...] = ()  # written, its stat unknown: the next write or record reads it whole
        with suppress(OSError):
            stat = self._stat(os.stat(self.path))
        self._seen = (stat, hashlib.sha256(text.encode("utf-8")).hexdigest())
        self.journal_path.unlink(missing_ok=True)  # in the state now (read skips what it holds, if this is cut short)

    def _unchanged(self, thorough: bool) -> None:
        """A StateConflict where the state file is not the one this backend read or wrote last (never
        read: anything goes). Its stat tells at once; where it differs (or ``thorough``), its digest
        decides (a `touch` changes none)."""
        if self._seen is _UNREAD:
            return
        try:
            stat: tuple[int, ...] | None = self._stat(os.stat(self.path))
        except FileNotFoundError:
            stat = None
        except OSError:
            return  # the write says why it cannot
        if self._seen is not None and stat is not None and stat == self._seen[0] and not thorough:
            return
        try:
            now = None if stat is None else self.path.read_bytes()
        except FileNotFoundError:
            now = None
        except OSError:
            return  # the write says why it cannot
        if self._seen is None:
            if now is None:
                return
            raise changed_under(str(self.path), now, found_none=True)
        if now is not None and hashlib.sha256(now).hexdigest() == self._seen[1]:
            self._seen = (stat, self._seen[1])
            return
        raise changed_under(str(self.path), now)

    @contextmanager
    def lock(self, operation: str) -> Iterator[dict[str, Any]]:
        info = lock_info(operation)
        folder = self.lock_path.parent
        cannot = f"cannot lock the state {self.path}"
        # in words: mkdir said `[Errno 17] File exists: 'afile'`, mkstemp named its temporary file
        blocked = blocked_folder(self.lock_path)
        if blocked:
            raise StateError(f"{cannot}: {blocked}")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"{cannot}: cannot create the folder {folder} ({os_reason(exc)})") from None
        # write the holder's identity to a private file, then link it into place: the lock file
        # appears atomically with its content, so it is never seen empty. The private file is on
        # ``staged`` before it exists, and from the link on the lock is released whatever stops the
        # command: an interrupt (Ctrl-C, SIGTERM) or an OSError in the sweep below left the lock held,
        # and one just after mkstemp made the private file left that file, both for good
        staged: list[tuple[str | Path, Path, str]] = []
        try:
            try:
                try:
                    fd, tmp = temporary_beside(self.lock_path, staged, self.lock_path)
                except OSError as exc:
                    todo = (f": make the folder writable and searchable by this user (`chmod u+rwx "
                            f"{shlex.quote(str(folder))}` if you own it), then run the command again"
                            if exc.errno in (errno.EACCES, errno.EPERM) else "")
                    raise StateError(f"{cannot}: cannot create a file in {folder} ({os_reason(exc)}){todo}") from None
                with os.fdopen(fd, "w") as handle:
                    json.dump(info, handle)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.link(tmp, self.lock_path)
            except FileExistsError:
                holder = self._holder()
                raise LockError(locked_message(str(self.path), holder, f"--state {shlex.quote(str(self.path))}"),
                                holder) from None
            except OSError as exc:
                raise StateError(f"{cannot}: cannot write the lock file {self.lock_path} ({os_reason(exc)})") from None
            finally:
                # one never made (a folder it cannot enter, `chmod 600`, refused it) cannot be removed
                # either: that error replaced the refusal's ("[Errno 13] Permission denied: '.state.json.lock.x'")
                for _, _, private in staged:
                    with suppress(OSError):
                        os.unlink(private)
            # the lock's holder is the only writer of the state: a temporary file of it is one a killed write
            # left (it stayed for good, a whole state each); a locker's own (``.state.json.lock.*``) may be
            # another's under way, and is left. A folder it cannot list (writable, not readable: `chmod 300`)
            # was Python's "[Errno 13] Permission denied: 'FOLDER'", and no word of what placer was doing
            try:
                lefts = file_leftovers(self.path)
            except OSError as exc:
                said = cannot_list(folder, exc, "to remove what a killed write left there; nothing was changed")
                raise StateError(f"{cannot}: {said}") from None
            for left in lefts:
                with suppress(OSError):
                    left.unlink()
            yield info
        finally:
            if self._holder().get("ID") == info["ID"]:
                self._remove_lock(f"the state stays locked; once {folder} is writable again, run `placer "
                                  f"force-unlock {info['ID']} --state {shlex.quote(str(self.path))}`")

    def holder(self) -> dict[str, Any] | None:
        return self._holder() if self.lock_path.exists() else None

    def _holder(self) -> dict[str, Any]:
        try:
            data = json.loads(self.lock_path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, json.JSONDecodeError):
            return {}

    def force_unlock(self, lock_id: str) -> dict[str, Any]:
        if not self.lock_path.exists():
            # no state either: most likely not the state meant (--fleet or --state left out), not a lock gone
            nothing = "" if self.path.exists() else (
                ", and there is no state there: name the locked one as the refused command printed it, with "
                "--state PATH or --fleet FLEET (its Settings' state)")
            raise LockError(f"the state {self.path} is not locked{nothing}")
        holder = self._holder()
        again = f"the state stays locked; make {self.lock_path.parent} writable, then run this command again"
        if not holder.get("ID"):
            # unreadable or empty (an older placer crashed while writing it): any ID breaks it
            self._remove_lock(again)
            return holder
        if holder.get("ID") != lock_id:
            raise LockError(f"lock ID {lock_id} does not match the lock on {self.path} ({describe_holder(holder)})",
                            holder)
        refuse_running(self.location, holder)
        self._remove_lock(again)
        return holder

    def _remove_lock(self, then: str) -> None:
        """Remove the lock file (gone already: nothing to do). One that cannot be (its folder made
        read-only, a volume remounted) is a StateError saying so and ``then``, what to do: it was
        Python's "[Errno 1] Operation not permitted: '...lock'", and no word of the lock left."""
        try:
            self.lock_path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StateError(f"cannot remove the lock file {self.lock_path} ({os_reason(exc)}): {then}") from None
