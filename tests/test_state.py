"""LocalBackend: atomic writes, damaged state files refused (never rewritten), the lock and force-unlock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from placer.state import LocalBackend, LockError, State, StateConflict, StateError, describe_holder
from tests import denied


def sample_state() -> State:
    return State(
        lineage="6f1c3a52-0000-4000-8000-000000000001",
        serial=3,
        deployments={"chat@aws-h100": {"replicas": 3, "target": {"provider": "aws", "pool": "aws-h100"}},
                     "gone@dc1": {"replicas": 0, "target": {}}},
        pools={"aws-h100": {"nodes": 2, "target": {"provider": "aws"}}},
        models={"chat": {"demand": 3000.0}},
        cost_usd_per_hour=64.5,
        history=[{"serial": 3, "appliedAt": "2026-11-28T07:00:00Z", "plan": "p", "changes": 2}],
    )


@pytest.fixture
def backend(tmp_path: Path) -> LocalBackend:
    return LocalBackend(tmp_path / "state" / "state.json")


def leftovers(directory: Path, name: str) -> list[str]:
    """Temporary files atomic_write leaves behind (``.<name>.*``)."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(f".{name}."))


# ---------------------------------------------------------------- read and write


def test_missing_state_reads_as_empty(backend: LocalBackend) -> None:
    state = backend.read()
    assert state.lineage is None and state.serial == 0 and state.deployments == {}
    assert not backend.path.exists(), "reading must not create the file"


def test_round_trip(backend: LocalBackend) -> None:
    backend.write(sample_state())
    again = backend.read()
    assert again == sample_state()
    assert again.replicas() == {("chat", "aws-h100"): 3}  # 0 replicas are not running
    assert again.nodes() == {"aws-h100": 2}
    data = json.loads(backend.path.read_text())
    assert data["lineage"] == sample_state().lineage and data["serial"] == 3 and data["version"] == 1


def test_write_is_atomic_when_rename_fails(backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    backend.write(sample_state())
    before = backend.path.read_bytes()

    def crash(*_args: object, **_kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    newer = sample_state()
    newer.serial = 4
    newer.deployments["chat@aws-h100"]["replicas"] = 9
    with pytest.raises(OSError, match="No space left"):
        backend.write(newer)
    monkeypatch.undo()
    assert backend.path.read_bytes() == before, "a failed write must leave the old state intact"
    assert leftovers(backend.path.parent, backend.path.name) == [], "no temporary file may be left behind"
    assert backend.read().serial == 3


def test_write_is_atomic_when_the_data_write_fails(backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    backend.write(sample_state())
    before = backend.path.read_bytes()

    def crash(_fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", crash)  # fails after the temporary file got (part of) its data
    with pytest.raises(OSError, match="Input/output"):
        backend.write(State(lineage="x", serial=9))
    monkeypatch.undo()
    assert backend.path.read_bytes() == before
    assert leftovers(backend.path.parent, backend.path.name) == []


def test_first_write_creates_the_directory(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "a" / "b" / "state.json")
    backend.write(State(lineage="l", serial=1))
    assert backend.read().serial == 1


VALID = sample_state().dumps()

DAMAGED = {
    "garbage": ("{{{ not json", "invalid JSON"),
    "truncated": (VALID[: len(VALID) // 2], "invalid JSON"),
    "empty": ("", "empty"),
    "blank": ("  \n\n", "empty"),
    "a list": ("[1, 2, 3]", "not a placer state"),
    "a string": ('"state"', "not a placer state"),
    "no serial": ('{"lineage": null}', "not a placer state"),
    "no lineage": ('{"serial": 1}', "not a placer state"),
    "serial not a number": ('{"lineage": "l", "serial": "three"}', "malformed state"),
    "deployments a list": ('{"lineage": "l", "serial": 1, "deployments": [1]}', "malformed state"),
    "deployment not an object": ('{"lineage": "l", "serial": 1, "deployments": {"m@p": 5}}', "malformed state"),
    "newer version": ('{"version": 3, "lineage": "l", "serial": 1}',
                      "state version 3 is newer than this placer reads (2): upgrade placer"),
    # these passed the checks and then broke `plan` with an internal error (or a wrong message)
    "cost NaN": ('{"lineage": "l", "serial": 1, "costUsdPerHour": NaN}', "malformed state (costUsdPerHour nan"),
    "cost infinite": ('{"lineage": "l", "serial": 1, "costUsdPerHour": 1e999}', "costUsdPerHour inf is no number"),
    "cost -Infinity": ('{"lineage": "l", "serial": 1, "costUsdPerHour": -Infinity}', "costUsdPerHour -inf"),
    "nested deeply": ("[" * 100000 + "]" * 100000, "malformed state (nested too deeply to read)"),
    "version as text": ('{"version": "1", "lineage": "l", "serial": 1}', "malformed state (version '1' is no count"),
    "version 0": ('{"version": 0, "lineage": "l", "serial": 1}', "malformed state (version 0 is no count"),
    # names a fleet could not hold: each is printed in the plan as an address, where a line break
    # forged a change line and an escape code reached the terminal, and the plan written was refused
    "deployment name with a line break": (
        json.dumps({"lineage": "l", "serial": 1, "deployments": {
            "m\n  + deployment/x@p  [phase 2] replicas 9@p": {"replicas": 1, "target": {"pool": "p"}}}}),
        "malformed state ('deployments.m\\n  + deployment/x@p"),
    "deployment pool no DNS name": (
        '{"lineage": "l", "serial": 1, "deployments": {"m@../p": {"replicas": 1}}}',
        "malformed state (deployment 'm@../p': pool '../p' is not a DNS-1123 label"),
    "pool name no DNS name": ('{"lineage": "l", "serial": 1, "pools": {"P_1": {"nodes": 1}}}',
                              "malformed state (pools: pool 'P_1' is not a DNS-1123 label"),
    "escape code in a context": (
        '{"lineage": "l", "serial": 1, "deployments": {"m@p": {"replicas": 1, "target": {"kubernetes": '
        '{"context": "dc\\u001b[2J"}}}}}', "'deployments.m@p.target.kubernetes.context' contains the control character '\\x1b'"),
    "applying with an escape code": (
        '{"lineage": "l", "serial": 1, "applying": {"plan": "p\\u001b[2J", "done": []}}',
        "malformed state ('applying.plan' contains the control character '\\x1b'"),
    "lineage with a line break": ('{"lineage": "l\\nx", "serial": 1}', "malformed state (lineage 'l\\nx' is no lineage"),
    # hand edits that passed, then broke `plan` (gpus null: an internal error) or made it write a plan
    # that apply refused as "edited by hand", naming the plan
    "target gpus null": ('{"lineage": "l", "serial": 1, "deployments": {"m@p": {"replicas": 1, "target": {"gpus": null}}}}',
                         "malformed state (deployment m@p: target.gpus None is no count"),
    "target of another pool": (
        '{"lineage": "l", "serial": 1, "deployments": {"m@p": {"replicas": 1, "target": {"model": "m", "pool": "q"}}}}',
        "malformed state (deployment m@p: target.pool 'q' is not its pool 'p'"),
    "deposed target of another model": (
        '{"lineage": "l", "serial": 1, "deployments": {"m@p": {"replicas": 0, "target": {}, "deposed": '
        '[{"replicas": 1, "target": {"model": "x", "pool": "p"}}]}}}',
        "malformed state (deployment m@p: deposed[0] target.model 'x' is not its model 'm'"),
    "pool target of another pool": (
        '{"lineage": "l", "serial": 1, "pools": {"p": {"nodes": 1, "target": {"provider": "aws", "pool": "q"}}}}',
        "malformed state (pool p: target.pool 'q' is not its pool 'p'"),
    "pool target of no provider placer sizes": (
        '{"lineage": "l", "serial": 1, "pools": {"p": {"nodes": 1, "target": {"provider": 5}}}}',
        "malformed state (pool p: target.provider 5 is not aws or gcp"),
}


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_damaged_state_is_an_error_that_names_the_file(backend: LocalBackend, name: str) -> None:
    text, expected = DAMAGED[name]
    backend.path.parent.mkdir(parents=True)
    backend.path.write_text(text)
    before = backend.path.read_bytes()
    with pytest.raises(StateError) as caught:
        backend.read()
    message = str(caught.value)
    assert str(backend.path) in message
    assert expected in message
    assert "\n" not in message and "\x1b" not in message, "the message is one line, with no escape code"
    assert backend.path.read_bytes() == before, "reading a damaged state must not touch it"
    assert leftovers(backend.path.parent, backend.path.name) == []


def test_damaged_state_message_says_what_to_do(backend: LocalBackend) -> None:
    backend.path.parent.mkdir(parents=True)
    backend.path.write_text("{")
    with pytest.raises(StateError, match="restore it from a backup"):
        backend.read()


def test_state_that_is_not_text(backend: LocalBackend) -> None:
    """It said Python's "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte", and nothing
    of what to do (the s3 backend says to restore an earlier version)."""
    backend.path.parent.mkdir(parents=True)
    backend.path.write_bytes(b"\xff\xfe\x00garbage")
    before = backend.path.read_bytes()
    with pytest.raises(StateError) as caught:
        backend.read()
    assert str(caught.value) == (f"{backend.path}: cannot read state: it is not UTF-8 text (byte 0xff at offset 0): the "
                                 f"state file is damaged; restore it from a backup (or from history) rather than "
                                 "deleting it: placer will not overwrite it")
    assert backend.path.read_bytes() == before


@pytest.mark.parametrize("how", denied.HOWS)
def test_a_state_this_user_cannot_read_says_what_to_do(backend: LocalBackend, monkeypatch, how) -> None:
    """A state file this user may not read (`chmod 200`) said "cannot read state: permission
    denied", and nothing of what to do; it is left as it was."""
    backend.path.parent.mkdir(parents=True)
    backend.path.write_text("{}")
    denied.unreadable(backend.path, monkeypatch, how)
    try:
        with pytest.raises(StateError) as caught:
            backend.read()
    finally:
        denied.restore(backend.path)
    assert str(caught.value) == (f"cannot read {backend.path} (permission denied) as the state: make it readable by "
                                 f"this user (`chmod u+r {backend.path}` if you own it), then run the command again")
    monkeypatch.undo()
    assert backend.path.read_text() == "{}"


def test_state_path_that_is_a_directory(backend: LocalBackend) -> None:
    """It said "cannot read state: is a directory", and nothing of what to do."""
    backend.path.mkdir(parents=True)
    with pytest.raises(StateError) as caught:
        backend.read()
    assert str(caught.value) == (f"{backend.path}: cannot read state: it is a directory; name the state file, with "
                                 f"--state FILE or Settings state.path (e.g. {backend.path / 'state.json'})")


# ---------------------------------------------------------------- lock


def test_lock_is_exclusive_and_names_the_holder(backend: LocalBackend) -> None:
    with backend.lock("apply") as info:
        assert backend.lock_path.exists()
        assert json.loads(backend.lock_path.read_text()) == info
        assert info["Operation"] == "apply" and info["PID"] == os.getpid()
        with pytest.raises(LockError) as caught, backend.lock("plan"):
            pass
        message = str(caught.value)
        for part in (info["Who"], f"pid {info['PID']}", f"since {info['Created']}", info["ID"], "apply",
                     str(backend.path), f"placer force-unlock {info['ID']}"):
            assert part in message, f"{part!r} missing from: {message}"
        assert caught.value.holder == info
        assert json.loads(backend.lock_path.read_text()) == info, "a refused locker must not touch the lock"
    assert not backend.lock_path.exists(), "the lock is released at the end of the block"
    with backend.lock("apply"):
        pass


def test_lock_is_released_when_the_block_fails(backend: LocalBackend) -> None:
    with pytest.raises(RuntimeError), backend.lock("apply"):
        raise RuntimeError("apply failed")
    assert not backend.lock_path.exists()


def test_lock_file_that_cannot_be_read_still_locks(backend: LocalBackend) -> None:
    backend.lock_path.parent.mkdir(parents=True)
    backend.lock_path.write_text("not json")
    with pytest.raises(LockError, match="is locked") as caught, backend.lock("apply"):
        pass
    assert backend.lock_path.read_text() == "not json"
    assert "names no holder" in str(caught.value) and "any lock ID breaks it" in str(caught.value)
    assert "placer force-unlock any --state" in str(caught.value)  # not `placer force-unlock ?`
    assert backend.force_unlock("any") == {}
    assert not backend.lock_path.exists()


def test_force_unlock_needs_the_right_id(backend: LocalBackend) -> None:
    with pytest.raises(LockError, match="not locked"):
        backend.force_unlock("whatever")
    first = backend.lock("apply")
    info = first.__enter__()
    with pytest.raises(LockError) as caught:
        backend.force_unlock("not-the-id")
    assert "does not match" in str(caught.value) and info["ID"] in str(caught.value)
    assert json.loads(backend.lock_path.read_text()) == info, "a wrong ID must leave the lock in place"

    assert backend.force_unlock(info["ID"]) == info
    assert not backend.lock_path.exists()

    # someone else takes the lock; the first holder's exit must not release theirs
    second = backend.lock("apply")
    other = second.__enter__()
    first.__exit__(None, None, None)
    assert json.loads(backend.lock_path.read_text())["ID"] == other["ID"]
    second.__exit__(None, None, None)
    assert not backend.lock_path.exists()


def test_a_lock_written_by_another_hand_prints_as_one_line_and_its_unlock_command_is_quoted(
        backend: LocalBackend) -> None:
    """A lock is a file anyone with access to the state may write: its fields reached the terminal
    as they were (line breaks, escape codes), and its ID went unquoted into the `placer
    force-unlock` command the operator is told to run (`x; rm -rf ~` ran a second command)."""
    backend.lock_path.parent.mkdir(parents=True)
    holder = {"ID": "x; rm -rf ~", "Who": "me\n+ deployment/x@p", "Operation": "apply\x1b[2J", "PID": 1,
              "Created": "2026-11-28T07:00:00Z"}
    backend.lock_path.write_text(json.dumps(holder))
    with pytest.raises(LockError) as caught, backend.lock("apply"):
        pass
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message, message
    assert "held by 'me\\n+ deployment/x@p'" in message and "for 'apply\\x1b[2J'" in message, message
    assert "`placer force-unlock 'x; rm -rf ~' --state" in message, message
    assert backend.force_unlock("x; rm -rf ~") == holder


def test_describe_holder_tolerates_missing_fields() -> None:
    assert describe_holder({}) == "held by ? (pid ?) for ? since ?, lock ID ?"


# ---------------------------------------------------------------- the apply's journal


def applying_state() -> State:
    state = sample_state()
    state.serial = 4
    state.applying = {"plan": "p", "startedAt": "2026-11-28T07:00:00Z", "done": ["pool/aws-h100"], "bumped": True}
    return state


def entry(seq: int, n: int, replicas: int | None = 2) -> dict:
    return {"seq": seq, "address": f"deployment/m{n}@dc1", "kind": "deployment", "key": f"m{n}@dc1",
            "value": None if replicas is None else {"replicas": replicas, "target": {"pool": "dc1"}}}


def test_records_go_to_the_journal_and_read_replays_them(backend: LocalBackend) -> None:
    state = applying_state()
    backend.write(state)
    written = backend.path.read_bytes()
    for seq, e in enumerate((entry(2, 1), entry(3, 2), entry(4, 1, replicas=None)), start=2):
        assert e["seq"] == seq
        state.replay(e)
        backend.record(state, e)
    assert backend.path.read_bytes() == written, "a record does not write the state again"
    assert len(backend.journal_path.read_text().splitlines()) == 3
    again = backend.read()
    assert again == state
    assert again.applying is not None and again.applying["done"] == [
        "pool/aws-h100", "deployment/m1@dc1", "deployment/m2@dc1", "deployment/m1@dc1"]
    assert "m1@dc1" not in again.deployments and again.deployments["m2@dc1"]["replicas"] == 2
    backend.write(again)  # a full write folds the journal in
    assert not backend.journal_path.exists() and backend.read() == state


@pytest.mark.parametrize("how", ["replaced", "deleted", "created"])
def test_a_write_or_record_over_a_state_another_writer_changed_is_refused(tmp_path: Path, how: str) -> None:
    """The local backend wrote whatever it held over the file: an apply whose lock was broken while it ran
    wrote its state over the one the apply that took the lock had written (serial 3 went back to 2). As the s3
    backend's conditional writes do, a write or journal record over a state file that is not the one this
    backend read or wrote last is refused, naming what it found; the file is left as it is."""
    path = tmp_path / "state.json"
    first, second = LocalBackend(path), LocalBackend(path)
    if how != "created":
        first.write(sample_state())
    state = first.read()
    other = second.read()
    if how == "deleted":
        path.unlink()
    else:
        other.serial += 1
        second.write(other)
    before = path.read_bytes() if path.exists() else None
    state.applying = {"plan": "p", "done": []}
    found = {"replaced": "another writer replaced it after this apply read it, now serial 4",
             "deleted": "it was deleted after this apply read it",
             "created": "another writer wrote one after this apply found none, now serial 1"}[how]
    for attempt in (lambda: first.record(state, entry(1, 1)), lambda: first.write(state)):
        with pytest.raises(StateConflict) as caught:
            attempt()
        assert str(caught.value).startswith(f"{path}: the state changed under you: re-plan ({found}, while this "
                                            "apply held the lock"), caught.value
        assert (path.read_bytes() if path.exists() else None) == before
        assert not first.journal_path.exists()


def test_a_state_only_touched_or_written_by_its_own_backend_is_written_again(backend: LocalBackend) -> None:
    backend.read()
    state = sample_state()
    for serial in (4, 5):
        state.serial = serial
        backend.write(state)
        os.utime(backend.path, ns=(1, 1))  # a touch (a backup tool, `touch`) changes no content
    state.applying = {"plan": "p", "done": []}
    backend.record(state, entry(1, 1))
    backend.write(state)
    assert LocalBackend(backend.path).read() == state


def test_a_write_whose_file_could_not_be_looked_at_after_is_written_again(
        backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write whose look at the file it wrote failed (an NFS hiccup) kept what it had read before: its own
    next write was refused as another writer's."""
    backend.read()
    real = LocalBackend._stat
    failed: list[bool] = []

    def once(info: os.stat_result) -> tuple[int, ...]:
        if not failed:
            failed.append(True)
            raise OSError(5, "Input/output error")
        return real(info)

    monkeypatch.setattr(LocalBackend, "_stat", staticmethod(once))
    state = sample_state()
    backend.write(state)
    assert failed
    state.serial += 1
    backend.write(state)
    assert LocalBackend(backend.path).read() == state


def test_a_state_named_through_a_link_is_locked_and_journalled_beside_the_file_it_names(
        backend: LocalBackend, tmp_path: Path) -> None:
    # a link to the state (a shared volume's file named from a checkout, --state of a link) is written
    # into: its lock was the link's, and an apply through it ran while another held the file's lock,
    # the last full write dropping the other's changes; its journal, the link's, no read of the file replayed
    backend.write(applying_state())
    link = tmp_path / "link.json"
    link.symlink_to(backend.path)
    through = LocalBackend(link)
    with backend.lock("apply") as info, pytest.raises(LockError) as caught, through.lock("apply"):
        pass
    assert info["ID"] in str(caught.value) and str(link) in str(caught.value)
    with through.lock("apply"), pytest.raises(LockError), backend.lock("apply"):
        pass
    state = through.read()
    state.replay(entry(2, 1))
    through.record(state, entry(2, 1))
    assert backend.read() == state, "the file's readers replay the journal written through the link"
    assert not (tmp_path / "link.json.lock").exists() and not (tmp_path / "link.json.journal").exists()


def test_a_journal_line_cut_short_was_never_recorded(backend: LocalBackend) -> None:
    state = applying_state()
    backend.write(state)
    state.replay(entry(2, 1))
    backend.record(state, entry(2, 1))
    with open(backend.journal_path, "a") as handle:
        handle.write(json.dumps({"lineage": state.lineage, "serial": 4, **entry(3, 2)})[:40])  # a killed write
    again = backend.read()
    assert again == state and "m2@dc1" not in again.deployments


def test_a_journal_line_that_does_not_parse_before_others_is_damage(backend: LocalBackend) -> None:
    """Only a last line is cut short by a killed write: one with records after it was taken for one,
    and it and every record after it were dropped silently (the next apply deleted them)."""
    state = applying_state()
    backend.write(state)
    for seq in (2, 3):
        state.replay(entry(seq, seq))
        backend.record(state, entry(seq, seq))
    lines = backend.journal_path.read_text().splitlines()
    backend.journal_path.write_text("\n".join([lines[0][:40], lines[1]]) + "\n")
    with pytest.raises(StateError) as caught:
        backend.read()
    message = str(caught.value)
    assert f"{backend.journal_path}:1: malformed journal record (not JSON" in message, message
    assert "placer will not overwrite it" in message


def test_a_fold_cut_short_replays_only_what_the_state_lacks(backend: LocalBackend) -> None:
    """Killed between writing the state and removing the journal: the journal's records are in the
    state already (its done list says how many), and are not applied twice."""
    state = applying_state()
    backend.write(state)
    for e in (entry(2, 1), entry(3, 2)):
        state.replay(e)
        backend.record(state, e)
    kept = backend.journal_path.read_text()
    backend.write(state)
    backend.journal_path.write_text(kept)  # as if the removal had not happened
    again = backend.read()
    assert again == state and again.applying is not None and len(again.applying["done"]) == 3


def test_a_journal_of_another_apply_or_of_an_ended_one_is_ignored(backend: LocalBackend) -> None:
    state = applying_state()
    backend.write(state)
    backend.journal_path.write_text(json.dumps({"lineage": state.lineage, "serial": 3, **entry(2, 9)}) + "\n")
    assert backend.read() == state  # serial 3: an older apply's
    ended = sample_state()
    backend.write(ended)
    backend.journal_path.write_text(json.dumps({"lineage": ended.lineage, "serial": 3, **entry(2, 9)}) + "\n")
    assert backend.read() == ended  # no apply under way: what ended is in the state


def test_atomic_write_all_syncs_far_less_than_a_file_and_a_folder_each(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """render synced a file and then its folder, one after the other: 2,142 syncs and 5 s for a
    tree at M. All are written first, then made durable at once: one syncfs per file system before
    the renames and one after (without syncfs, each file and then each folder once); one that
    cannot be written leaves every file as it was and no temporary file."""
    import placer.planfile as planfile

    fsyncs: list[int] = []
    real = os.fsync
    monkeypatch.setattr(planfile.os, "fsync", lambda fd: (fsyncs.append(fd), real(fd))[1])
    files = {tmp_path / "a" / f"m{i}.yaml": f"m{i}\n" for i in range(20)}
    files[tmp_path / "b" / "k.yaml"] = "k\n"
    monkeypatch.setattr(planfile, "SYNCFS", None)
    planfile.atomic_write_all(files)
    assert all(path.read_text() == text for path, text in files.items())
    assert len(fsyncs) == 21 + 2  # each file, then each folder once (it was 42)
    if sys.platform.startswith("linux"):
        syncfs = planfile._libc_syncfs()
        assert syncfs is not None
        calls: list[int] = []
        monkeypatch.setattr(planfile, "SYNCFS", lambda fd: (calls.append(fd), syncfs(fd))[1])
        fsyncs.clear()
        planfile.atomic_write_all({path: text.upper() for path, text in files.items()})
        assert len(calls) == 2 and fsyncs == [] and (tmp_path / "b" / "k.yaml").read_text() == "K\n"
        planfile.atomic_write(tmp_path / "plan.json", "{}")  # a file or two: its own fsyncs, not a whole file system's
        assert len(calls) == 2 and len(fsyncs) == 2
    (tmp_path / "c").write_text("a file")
    with pytest.raises(NotADirectoryError, match="is a file, not a directory"):
        planfile.atomic_write_all({tmp_path / "a" / "m0.yaml": "new\n", tmp_path / "c" / "x.yaml": "x\n"})
    assert (tmp_path / "a" / "m0.yaml").read_text() in ("m0\n", "M0\n") and leftovers(tmp_path / "a", "m0.yaml") == []


@pytest.mark.parametrize("line, why", [
    ({"seq": 2, "address": "deployment/m1@dc1", "kind": "deployment", "key": "m1@dc1"}, "no value"),
    ({**entry(2, 1), "seq": "2"}, "seq '2' is no count"),
    ([1, 2], "not a JSON object"),
    ({**entry(2, 1), "kind": "node"}, "kind 'node'"),
    ({**entry(2, 1), "value": {"replicas": -1}}, "replicas -1 is no count"),
    ({**entry(2, 1), "key": "nopool"}, "is not <model>@<pool>"),
    ({**entry(2, 1), "key": "m1\x1b[2J@dc1"}, "contains the control character '\\x1b'"),
    ({**entry(2, 1), "key": "M1@dc1"}, "model 'M1' is not a DNS-1123 label"),
    ({**entry(2, 1), "value": {"replicas": 1, "healthy": "false"}}, "healthy 'false' is not true or false"),
    ({"seq": 2, "address": "pool/aws-h100", "kind": "pool", "key": "aws-h100",
      "value": {"nodes": 1, "healthy": False, "shrank": "yes"}}, "shrank 'yes' is not true or false"),
])
def test_a_malformed_journal_line_is_a_state_error(backend: LocalBackend, line: Any, why: str) -> None:
    """A journal line that parses but is not a recorded change (a hand edit, another tool) was an
    internal error (KeyError 'value', TypeError on a seq of "1", AttributeError on a list)."""
    state = applying_state()
    backend.write(state)
    record = {"lineage": state.lineage, "serial": 4, **line} if isinstance(line, dict) else line
    backend.journal_path.write_text(json.dumps(entry(2, 7) | {"lineage": state.lineage, "serial": 4}) + "\n"
                                    + json.dumps(record) + "\n")
    with pytest.raises(StateError) as caught:
        backend.read()
    message = str(caught.value)
    assert f"{backend.journal_path}:2: malformed journal record" in message and why in message, message
    assert "restore it" in message


def test_atomic_write_writes_into_links_fifos_and_keeps_modes(tmp_path: Path) -> None:
    """`plan -o /dev/null` as root replaced the device with a file; `-o link` replaced the link, its
    target unchanged; every file came out 0600 whatever the umask."""
    import stat
    import threading

    from placer.planfile import atomic_write

    target = tmp_path / "real.json"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    atomic_write(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # an existing file keeps its mode
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "fresh.json", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "fresh.json").stat().st_mode) == 0o640  # 0666 less the umask
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    atomic_write(fifo, "through the pipe")
    reader.join(10)
    assert got == ["through the pipe"] and stat.S_ISFIFO(fifo.stat().st_mode)  # as /dev/null would be: not
    # tried here, since a regression would replace the machine's device


def test_a_state_where_no_folder_can_be_is_said_so_in_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--state afile/state.json` said `[Errno 17] File exists: 'afile'`; a folder the lock cannot be
    written to named the lock's temporary file; a GitOps directory that is a dangling link said
    `cannot write deploy/clusters/ca/m.yaml: File exists`."""
    from placer.planfile import atomic_write

    afile = tmp_path / "afile"
    afile.write_text("x\n")
    backend = LocalBackend(afile / "state.json")
    with pytest.raises(StateError, match=rf"cannot lock the state {afile}/state.json: {afile} is a file, not a "
                                         "directory"), backend.lock("apply"):
        pass
    with pytest.raises(StateError, match=f"{afile} is a file, not a directory"):
        backend.read()

    real_open = os.open

    def denied(path: str, *args: Any, **kwargs: Any) -> int:  # root may create a file in any folder
        if Path(path).name.startswith(".state.json.lock."):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    ro = LocalBackend(tmp_path / "ro" / "state.json")
    with pytest.raises(StateError) as caught, ro.lock("apply"):
        pass
    assert str(caught.value) == (f"cannot lock the state {tmp_path}/ro/state.json: cannot create a file in "
                                 f"{tmp_path}/ro (permission denied): make the folder writable and searchable by "
                                 f"this user (`chmod u+rwx {tmp_path}/ro` if you own it), then run the command "
                                 "again"), caught.value
    monkeypatch.undo()

    (tmp_path / "deploy").symlink_to("nowhere")
    with pytest.raises(OSError) as raised:
        atomic_write(tmp_path / "deploy" / "clusters" / "ca" / "m.yaml", "x")
    assert str(raised.value) == (f"cannot write {tmp_path}/deploy/clusters/ca/m.yaml: {tmp_path}/deploy is a "
                                 "symbolic link to nowhere, which does not exist: create what it points to, or "
                                 "remove the link"), raised.value


@pytest.mark.parametrize("many", [False, True])
def test_atomic_write_replaces_a_read_only_file_as_a_user_would(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 many: bool) -> None:
    """A read-only file (0444: a state or tfvars a team made so) is replaced, its mode kept. The
    many-file write reopened each temporary file for writing to sync it, after giving it the
    target's mode: as any user but root that open failed, and an apply stopped after making its
    first change, with the state not recording it."""
    import stat

    import placer.planfile as planfile

    real_open = os.open

    def open_as_a_user(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        # root opens anything; a user may not open for writing a file without its write bit
        if flags & (os.O_WRONLY | os.O_RDWR) and os.path.isfile(path) and not os.stat(path).st_mode & stat.S_IWUSR:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(planfile.os, "open", open_as_a_user)
    monkeypatch.setattr(planfile, "SYNCFS", None)  # the route every system without syncfs takes
    target = tmp_path / "state.json"
    target.write_text("old")
    target.chmod(0o444)
    files = {target: "new"} | ({tmp_path / f"f{i}.yaml": "x" for i in range(20)} if many else {})
    planfile.atomic_write_all(files)
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o444
    assert leftovers(tmp_path, "state.json") == []


def test_a_deployment_made_but_not_healthy_keeps_its_mark() -> None:
    """``"healthy": false``: an apply made the deployment and its health wait did not pass. It reads
    back as written, an entry without it as before; a deposed copy's delete keeps the mark of the copy
    that replaced it, a change of that copy drops it (the apply marks it again where it waits)."""
    from placer.state import deployment_entry, health_marked

    state = sample_state()
    state.deployments["chat@aws-h100"]["healthy"] = False
    again = State.loads(state.dumps(), "state.json")
    assert again.deployments["chat@aws-h100"]["healthy"] is False and "healthy" not in again.deployments["gone@dc1"]
    assert again.replicas() == {("chat", "aws-h100"): 3}

    old, new = {"kubernetes": {"namespace": "a"}}, {"kubernetes": {"namespace": "b"}}
    made = health_marked(deployment_entry({"replicas": 2, "target": old}, 2, new) or {}, False)
    assert made == {"replicas": 2, "target": new, "healthy": False, "deposed": [{"replicas": 2, "target": old}]}
    assert deployment_entry(made, None, old) == {"replicas": 2, "target": new, "healthy": False}
    assert deployment_entry(made, 3, new) == {"replicas": 3, "target": new, "deposed": [{"replicas": 2, "target": old}]}
    assert health_marked(made, True) == {"replicas": 2, "target": new, "deposed": [{"replicas": 2, "target": old}]}


def test_a_state_older_placers_would_misread_is_written_as_version_2() -> None:
    """Every placer before this one reads version 1 and refuses any other ("state version 2 is newer
    than this placer reads"). The marks added since, in version 1 states, were ignored by the placers
    that came before them: 4833375 planned "No changes" over a state whose rollout the current
    placer recorded as not healthy (its health wait failed), where this one applies it again. A state
    holding such a mark is version 2, so that they refuse it; one without stays version 1, which
    the placer an operator rolls back to still reads; this placer reads both."""
    plain = sample_state()
    assert json.loads(plain.dumps())["version"] == 1
    marked: dict[str, State] = {}
    for how in ("deployment not healthy", "pool not healthy", "deposed copy", "unfinished apply"):
        state = sample_state()
        if how == "deployment not healthy":
            state.deployments["chat@aws-h100"]["healthy"] = False
        elif how == "pool not healthy":
            state.pools["aws-h100"]["healthy"] = False
        elif how == "deposed copy":
            state.deployments["chat@aws-h100"]["deposed"] = [{"replicas": 1, "target": {"provider": "aws"}}]
        else:
            state = applying_state()
        marked[how] = state
    for how, state in marked.items():
        data = json.loads(state.dumps())
        assert data["version"] == 2, how
        assert State.loads(state.dumps(), "state.json").to_json() == state.to_json(), how
    # the mark cleared (the next apply's health wait passed), the state is version 1 again
    healed = State.loads(marked["deployment not healthy"].dumps(), "state.json")
    del healed.deployments["chat@aws-h100"]["healthy"]
    assert json.loads(healed.dumps())["version"] == 1


def test_the_lock_removes_the_temporary_files_a_killed_write_left(backend: LocalBackend) -> None:
    """A SIGKILL between atomic_write's temporary file and its rename left hidden ``.state.json.XXXXXXXX``
    files beside the state for good, each a whole state (10 MB at XL). Whoever holds the lock is the only
    writer of the state: taking it removes them, and nothing else (a locker's own temporary file may be
    another's under way)."""
    backend.write(sample_state())
    folder = backend.path.parent
    left = [folder / ".state.json.su8x_gl0", folder / ".state.json.ab12cd34"]
    kept = [folder / ".other.json.ab12cd34", folder / ".state.json.notours", folder / ".state.json.lock.ab12cd34",
            folder / "notes.txt"]
    for path in (*left, *kept):
        path.write_text("{}")
    with backend.lock("apply"):
        assert not any(path.exists() for path in left)
        assert all(path.exists() for path in kept)
    assert backend.read() == sample_state()


@pytest.mark.parametrize(("stop", "said"), [(KeyboardInterrupt, KeyboardInterrupt), (PermissionError, StateError)])
def test_a_lock_stopped_while_it_sweeps_is_released(backend: LocalBackend, monkeypatch: pytest.MonkeyPatch,
                                                    stop: type[BaseException], said: type[BaseException]) -> None:
    """Ctrl-C or SIGTERM (a KeyboardInterrupt), or an OSError (said as a StateError), in the sweep of
    a killed write's temporary files, after the lock file was linked into place: the lock was left
    held, every later command refused until a force-unlock. Now it is released, and no private file
    of it is left."""
    import placer.state as state_module

    def sweep(_path: Path) -> list[Path]:
        raise stop

    backend.write(sample_state())
    monkeypatch.setattr(state_module, "file_leftovers", sweep)
    with pytest.raises(said), backend.lock("apply"):
        pytest.fail("the block is not run")
    assert not backend.lock_path.exists(), "the lock is released"
    assert leftovers(backend.path.parent, backend.lock_path.name) == []
    monkeypatch.undo()
    with backend.lock("apply"):
        assert backend.read() == sample_state()


def test_an_interrupt_as_the_locks_private_file_is_made_leaves_none(backend: LocalBackend,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C or SIGTERM landing just after the lock's private file was made, before the lock knew
    its name (mkstemp had made it and not yet returned): the hidden ``.state.json.lock.XXXXXXXX``
    stayed for good. It is removed as the interrupt goes by, and the state is not locked."""
    real_open = os.open

    def made_then_interrupted(path: str, *args: Any, **kwargs: Any) -> int:
        fd = real_open(path, *args, **kwargs)
        if Path(path).name.startswith(".state.json.lock."):
            os.close(fd)
            raise KeyboardInterrupt
        return fd

    backend.path.parent.mkdir()
    monkeypatch.setattr(os, "open", made_then_interrupted)
    with pytest.raises(KeyboardInterrupt), backend.lock("apply"):
        pytest.fail("the block is not run")
    monkeypatch.undo()
    assert sorted(p.name for p in backend.path.parent.iterdir()) == []


def test_a_lock_of_a_gone_process_written_by_another_hand_is_quoted_too(backend: LocalBackend) -> None:
    """A lock naming a process of this host that no longer runs is said with the force-unlock command
    to run; that message put the ID in the command as it was (`x; rm -rf ~` ran a second command),
    where the one for a holder that may still run quotes it."""
    import socket

    backend.lock_path.parent.mkdir(parents=True)
    gone = {"ID": "x; rm -rf ~", "Who": f"me@{socket.gethostname()}", "Operation": "apply", "PID": 4_000_000,
            "Created": "2026-11-28T07:00:00Z"}
    for pid in (4_000_000,):
        backend.lock_path.write_text(json.dumps({**gone, "PID": pid}))
        with pytest.raises(LockError) as caught, backend.lock("apply"):
            pass
        assert "`placer force-unlock 'x; rm -rf ~' --state" in str(caught.value), str(caught.value)


def test_a_lock_naming_a_pid_no_process_can_have_is_refused_in_words(backend: LocalBackend) -> None:
    """A lock written by another hand may name a PID of this host no process can have (1 << 40):
    the check whether that process is gone was an internal error (OverflowError) of every plan and
    apply that read the lock; it may still run, for all placer can tell."""
    import socket

    from placer.state import holder_gone

    holder = {"ID": "x", "Who": f"me@{socket.gethostname()}", "Operation": "apply", "PID": 1 << 40,
              "Created": "2026-11-28T07:00:00Z"}
    assert holder_gone(holder) is False
    backend.lock_path.parent.mkdir(parents=True)
    backend.lock_path.write_text(json.dumps(holder))
    with pytest.raises(LockError) as caught, backend.lock("apply"):
        pass
    assert "If that process is gone, run `placer force-unlock x --state" in str(caught.value), str(caught.value)


def test_a_lock_whose_pid_another_process_has_since_is_said_gone(backend: LocalBackend) -> None:
    """A killed apply's PID given to another process since (a long-lived host): the lock was said held by a
    process that might run ("If that process is gone"); its start time, which the lock records, tells them apart."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with backend.lock("apply") as info:
            taken = {**info, "PID": other.pid, "PIDStart": "1"}  # the PID of a process that started later
        backend.lock_path.write_text(json.dumps(taken))
        with pytest.raises(LockError) as caught, backend.lock("apply"):
            pass
        assert f"pid {other.pid} no longer runs on this host (killed?): run `placer force-unlock {info['ID']}" in str(
            caught.value), caught.value
        assert backend.force_unlock(info["ID"])["ID"] == info["ID"]
    finally:
        other.kill()
        other.wait()


def test_a_lock_held_from_another_pid_namespace_of_this_host_is_not_said_gone(backend: LocalBackend) -> None:
    """A container that shares the host's name (`docker run --network host`, a pod on the host
    network) sees none of the host's processes, nor the host its own: a lock held by a running apply
    there was said to be of a process that 'no longer runs on this host (killed?)', with the
    force-unlock command, which let a second apply in beside it. Only a lock taken in this PID
    namespace (or one of a system without them) is known gone by its PID."""
    import socket

    from placer.state import holder_gone, lock_info

    ours = lock_info("apply")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert holder_gone({**ours, "PID": int(dead.stdout)})  # taken here: its PID is one of ours
    elsewhere = {**ours, "PID": int(dead.stdout), "Who": f"me@{socket.gethostname()}"}
    if not os.path.exists("/proc/self/ns/pid"):
        pytest.skip("no PID namespaces on this system")
    elsewhere["PIDNamespace"] = "pid:[1]"
    assert not holder_gone(elsewhere)
    del elsewhere["PIDNamespace"]  # a lock of an older placer: where it was taken is not known
    assert not holder_gone(elsewhere)
    backend.lock_path.parent.mkdir(parents=True)
    backend.lock_path.write_text(json.dumps({**elsewhere, "PIDNamespace": "pid:[1]"}))
    with pytest.raises(LockError) as caught, backend.lock("apply"):
        pass
    assert "no longer runs" not in str(caught.value) and "If that process is gone" in str(caught.value)


def test_an_interrupt_as_the_temporary_file_is_made_leaves_no_file(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (or SIGTERM) inside mkstemp, after it had made the file and before it returned it,
    left the hidden `.m.yaml.XXXXXXXX` for good: the write's cleanup had not heard of it yet (1 in 5
    interrupted renders at M). The old file stays whole, and no temporary file is left."""
    from placer import planfile

    real_open = os.open

    def interrupted(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        fd = real_open(path, flags, *args, **kwargs)
        if Path(path).name.startswith(".m.yaml."):  # made; the signal arrives before it is handed back
            os.close(fd)
            raise KeyboardInterrupt
        return fd

    target = tmp_path / "m.yaml"
    target.write_text("old\n")
    monkeypatch.setattr(os, "open", interrupted)
    with pytest.raises(KeyboardInterrupt):
        planfile.atomic_write_all({target: "new\n"})
    monkeypatch.undo()
    assert target.read_text() == "old\n"
    assert leftovers(tmp_path, "m.yaml") == []
