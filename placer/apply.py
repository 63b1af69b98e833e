"""Apply: run exactly a plan's changes through providers, phase by phase, under the state lock.

Refuses a stale plan, and one whose changes do not start from the state it was made from. Each
change is retried on retryable provider errors (exponential backoff with jitter, or longer where the server asked: Retry-After), then verified (the provider must now hold what was planned) and
recorded in the state at once (atomic write), so a killed apply leaves a state that says
exactly what was done: the next plan starts from it. The first recorded change of an
apply adds 1 to the serial, which makes the interrupted plan stale; a plan read while an apply
ran records how far it had got (``priorState.applying``), which makes it stale once that apply
records another change or finishes.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from placer.planfile import (
    CHANGE_COUNT,
    PHASE_GROW,
    PHASE_NAMES,
    PHASE_UP,
    Change,
    Plan,
    deployment_place,
    pool_group,
    tree_place,
)
from placer.refresh import reading
from placer.retry import RetriesSpent as Spent
from placer.retry import RetryPolicy, retrying
from placer.state import Backend, State, deployment_entry, health_marked, pool_entry

_POOLS = itertools.count()  # names each apply's worker threads apart


class ApplyError(Exception):
    pass


class StalePlanError(ApplyError):
    pass


class RetriesSpent(Spent, ApplyError):
    """A retryable provider error that every try of the retry policy met (``placer.retry``): the
    operator is told to plan again, not to retry what the apply already retried."""

    def __init__(self, last: BaseException, tries: int, seconds: float) -> None:
        super().__init__(last, tries, seconds, "wait until the provider answers again, then run `placer plan` and "
                         "apply the new plan")


class InconsistentPlanError(ApplyError):
    """A plan made from the state it is applied to whose changes do not start from what that state
    records (edited by hand)."""


class UnfinishedError(ApplyError):
    """Every change was made and recorded, but the state write that marks the apply finished
    failed: the state still says the apply did not finish."""


class ChangeProvider(Protocol):
    """The provider protocol as apply sees it (``providers.base.Provider``)."""

    name: str

    def handles(self, change: Change) -> bool: ...

    def observe(self, change: Change) -> dict[str, Any] | None: ...

    def apply(self, change: Change) -> None: ...

    def wait_healthy(self, change: Change, timeout_s: float) -> None: ...


@dataclass
class ApplyReport:
    applied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    retries: int = 0
    serial: int = 0
    lineage: str = ""
    # what a refreshed plan's refresh saw run where it makes no change, recorded with the apply
    # (``kept_drift``): "deployment/m@p (replicas 1)"
    kept: list[str] = field(default_factory=list)


def check_fresh(plan: Plan, state: State, location: str | None = None) -> None:
    """Refuse a plan not made from ``state``, read at ``location`` (named where a plan finds no state
    there: a plan applied on another machine, or its state moved, said "there is no state now", and
    nothing of which file apply had looked for)."""
    if plan.prior_lineage != state.lineage or plan.prior_serial != state.serial:
        applied = _applied_by(plan, state)
        if applied is not None:
            # this very plan was applied (a CI job run again): it said "something was applied since"
            serial, when = applied.get("serial"), applied.get("appliedAt")
            since = "" if serial == state.serial else f"; the state is now serial {state.serial}"
            raise StalePlanError(f"stale plan: it was applied already, by the apply that made state serial {serial} "
                                 f"(at {when}{since}); nothing was applied now. Run `placer plan` again to see whether "
                                 "anything changed since, and apply the new plan.")
        stopped = _stopped_apply_of(plan, state)
        if stopped is not None:
            # its own apply stopped part-way (a CI job run again after it failed): it said "something was
            # applied since", as of another apply
            total = sum(1 for c in plan.changes if c.action != "no-op")
            done = len(stopped.get("done") or [])
            raise StalePlanError(f"stale plan: it was applied in part already: its apply (started at "
                                 f"{stopped.get('startedAt')}) stopped after {done} of its {total} change(s), which "
                                 f"the state (serial {state.serial}) records; nothing was applied now. Run `placer "
                                 "plan` again: the new plan starts from what that apply did and holds what remains; "
                                 "apply it.")
        # before the first apply there is no state, which a message calls so (it said "lineage None")
        made = ("no state (nothing applied yet)" if plan.prior_lineage is None
                else f"state lineage {plan.prior_lineage} serial {plan.prior_serial}")
        at = f" at {location}" if location else ""
        now = (f"there is no state{at} now (was it removed, or is this another state file?)" if state.lineage is None
               else f"the state is now lineage {state.lineage} serial {state.serial} (something was applied since)")
        again = "Run `placer plan` again and apply the new plan."
        if state.lineage is not None and plan.prior_lineage is not None and state.lineage != plan.prior_lineage:
            # another state than the plan's (it said "something was applied since", of a state file swapped)
            now = (f"the state is now lineage {state.lineage} serial {state.serial}, another state than the plan's "
                   "(another fleet's state file, or one made anew since)")
            again = ("Check that Settings state (or --state) names this fleet's state, then run `placer plan` "
                     "again and apply the new plan.")
        if state.lineage is not None and state.lineage == plan.prior_lineage and state.serial < plan.prior_serial:
            # the serial went back (it said "something was applied since", which nothing was)
            now = (f"the state is now serial {state.serial}, older than the plan: it was restored from a backup "
                   "or rolled back since, and what the later applies did is no longer recorded")
            again = ("Check that the infrastructure is what that state records (`placer refresh FLEET`), then "
                     "run `placer plan` again against the current state and apply the new plan.")
        raise StalePlanError(f"stale plan: it was made against {made}, but {now}. {again}")
    then, now_at = plan.prior_applying, state.progress()
    if then != now_at:
        # an apply moves the serial at its first change only: a plan read while one ran carried
        # the serial it ends with, and was accepted once it had finished (and undid its changes)
        made = ("while no apply was in progress" if then is None
                else f"while an apply was in progress, after {then.get('done')} of its change(s)")
        now = ("that apply has finished" if now_at is None
               else f"the state now records {now_at['done']} change(s) of an unfinished apply")
        raise StalePlanError(f"stale plan: another apply changed the state since it was planned (it was made "
                             f"{made}; {now}). Run `placer plan` again once no apply is running, and apply the "
                             "new plan.")
    # planned from what runs (``plan --refresh``), its changes start from that, not from the state
    check_before(plan, state, from_state=not plan.prior_refreshed)


def _applied_by(plan: Plan, state: State) -> dict[str, Any] | None:
    """The apply of ``state``'s history that applied ``plan`` (by its digest), where it was made
    from this state's lineage, or before it had one, and the state has moved on since; or None."""
    if plan.prior_lineage not in (None, state.lineage) or state.serial <= plan.prior_serial:
        return None
    digest = plan.digest()
    return next((h for h in reversed(state.history) if h.get("planDigest") == digest), None)


def _stopped_apply_of(plan: Plan, state: State) -> dict[str, Any] | None:
    """The unfinished apply ``state`` records (``applying``) where it applied ``plan`` (by its digest),
    made from this state's lineage, or before it had one, and recorded a change since; or None."""
    applying = state.applying
    if applying is None or plan.prior_lineage not in (None, state.lineage) or state.serial <= plan.prior_serial:
        return None
    return applying if applying.get("planDigest") == plan.digest() else None


def _place_of(address: str, target: dict[str, Any]) -> str:
    """What a change or a recorded copy at ``address`` acts on: a deployment's place (a replacement's
    new copy and its old one are two), a pool's group (a new group and the one it replaces are two)."""
    where = deployment_place(target) if address.startswith("deployment/") else pool_group(target)
    return f"{address} {json.dumps(where, sort_keys=True)}"


def _place(change: Change) -> str:
    return _place_of(change.address, change.target)


def _check_reaches(plan: Plan, state: State, left: dict[str, tuple[int, Change]]) -> None:
    """Refuse a plan whose changes, from ``state``, do not reach what its placements and pools say:
    a change taken out of the plan by hand (the create of a pool a deployment needs, the delete of
    a model's copy) was not missed, and the plan applied what was left. Places compare as the plan
    made them (``diff.same_place``): in a GitOps tree no context is the context default, and a copy
    the state records without a target is where the plan puts its address."""
    gitops = ((plan.body.get("settings") or {}).get("apply") or {}).get("mode") == "gitops"
    targets: dict[str, dict[str, Any]] = {}  # address -> the target the plan puts it at
    for row in plan.body.get("placements") or []:
        targets[f"deployment/{row['model']}@{row['pool']}"] = row["target"]
    for row in plan.body.get("pools") or []:
        if row.get("target"):
            targets[f"pool/{row['pool']}"] = row["target"]
    for _, change in left.values():
        targets.setdefault(change.address, change.target)

    def where(address: str, target: dict[str, Any] | None) -> str:
        target = target or targets.get(address) or {}
        if not address.startswith("deployment/"):
            return _place_of(address, target)
        return f"{address} {json.dumps(tree_place(target) if gitops else deployment_place(target))}"

    have: dict[str, tuple[str, int]] = {}  # place -> (address, count) once the changes are made
    for key, entry in state.deployments.items():
        for copy in [entry, *(entry.get("deposed") or [])]:
            have[where(f"deployment/{key}", copy.get("target"))] = (f"deployment/{key}", int(copy.get("replicas", 0)))
    for key, entry in state.pools.items():
        have[where(f"pool/{key}", entry.get("target"))] = (f"pool/{key}", int(entry.get("nodes", 0)))
    for _, change in left.values():
        count = CHANGE_COUNT[change.kind][0]
        have[where(change.address, change.target)] = (
            change.address, 0 if change.after is None else int(change.after.get(count, 0)))
    wanted: dict[str, tuple[str, int]] = {}
    for row in plan.body.get("placements") or []:
        address = f"deployment/{row['model']}@{row['pool']}"
        wanted[where(address, row["target"])] = (address, int(row["replicas"]))
    for row in plan.body.get("pools") or []:
        if row.get("target"):
            wanted[where(f"pool/{row['pool']}", row["target"])] = (f"pool/{row['pool']}", int(row["nodes"]))
    for place in sorted(have.keys() | wanted.keys()):
        address = (have.get(place) or wanted[place])[0]
        got, want = have.get(place, (address, 0))[1], wanted.get(place, (address, 0))[1]
        if got != want:
            count = "nodes" if address.startswith("pool/") else "replicas"
            section = "pools" if count == "nodes" else "placements"
            raise InconsistentPlanError(
                f"inconsistent plan: its changes leave {address} at {count} {got}, but its {section} say {want} "
                "(was a change taken out, or added, by hand?); run `placer plan` again and apply the new plan.")


def check_before(plan: Plan, state: State, from_state: bool = True) -> None:
    """Refuse a plan whose changes do not start from ``state``, the very state it was made from
    (``check_fresh``): the first change apply makes at each place (an address's deployment copy or
    pool group) has for its before the count the state records there (a before.nodes of 5 where the
    state had 1 was applied), and each later one there starts where the one before it left off (a
    second create of a deployment, 2 then 7 replicas on a pool that holds 4, was applied as it came).
    A create starts from nothing, unchecked against the state. A deployment's delete starts from the
    copy at its target's place (a replacement's old copy, or one an apply stopped before deleting).
    Without ``from_state`` (a plan made with --refresh starts from what runs) only the latter holds."""
    left: dict[str, tuple[int, Change]] = {}  # what the last change at a place left there, and which
    for i, change in sorted(enumerate(plan.changes), key=lambda ic: ic[1].phase):
        if change.action == "no-op":
            continue
        count = CHANGE_COUNT[change.kind][0]
        place = _place(change)
        starts = None if change.before is None else change.before.get(count)
        if place in left:
            j, done = left[place]
            after = None if done.after is None else done.after.get(count)
            if starts != after:
                was = "nothing" if starts is None else f"{count} {starts!r}"
                then = "nothing" if after is None else f"{count} {after!r}"
                raise InconsistentPlanError(
                    f"inconsistent plan: changes[{i}] ({change.action} {change.address}) starts from {was}, but "
                    f"changes[{j}] ({done.action}) before it at that address leaves {then}; was the plan edited by "
                    "hand? Run `placer plan` again and apply the new plan.")
            left[place] = (i, change)
            continue
        left[place] = (i, change)
        if not from_state or change.action == "create" or change.before is None:
            continue
        key = change.address.split("/", 1)[1]
        entry = (state.pools if change.kind == "pool" else state.deployments).get(key)
        copies = [] if entry is None else [entry]
        if entry is not None and change.kind == "deployment" and change.action == "delete":
            copies = [c for c in [entry, *(entry.get("deposed") or [])]
                      if deployment_place(c.get("target") or {}) == deployment_place(change.target)] or copies
        have = sorted({int(c.get(count, 0)) for c in copies})
        if starts in have:
            continue
        recorded = (f"records {count} {' or '.join(map(str, have))}" if have
                    else f"records no {change.kind} {key}")
        raise InconsistentPlanError(
            f"inconsistent plan: changes[{i}] ({change.action} {change.address}) starts from {count} "
            f"{starts!r}, but the state it was made from (serial {state.serial}) {recorded}; "
            "was the plan edited by hand? Run `placer plan` again and apply the new plan.")
    if from_state:
        _check_reaches(plan, state, left)


def kept_drift(plan: Plan, state: State) -> list[tuple[str, int]]:
    """(address, count) of each deployment and pool a plan made with --refresh makes no change at
    whose state record differs from the count the plan holds there (its placements and pools): the
    count the refresh saw run, as the plan changed nothing there. The apply records it, as Terraform's
    apply records each resource as its refresh read it; left out, the state kept its old figures, and
    the next plan's "asr 3 -> 1" changed nothing in the cluster. A plan not made with --refresh holds
    the state's own counts (``check_before``); one not healthy yet has a change."""
    if not plan.prior_refreshed:
        return []
    changed = {c.address for c in plan.changes if c.action != "no-op"}
    holds = {f"deployment/{row['model']}@{row['pool']}": int(row["replicas"])
             for row in plan.body.get("placements") or []}
    holds.update({f"pool/{row['pool']}": int(row["nodes"]) for row in plan.body.get("pools") or []
                  if row.get("target")})
    kept = []
    for kind, table, count in (("deployment", state.deployments, "replicas"), ("pool", state.pools, "nodes")):
        for key, entry in sorted(table.items()):
            address = f"{kind}/{key}"
            want = holds.get(address)
            if address in changed or want is None or count not in entry or entry.get("healthy") is False:
                continue
            if int(entry[count]) != want:
                kept.append((address, want))
    return kept


class Applier:
    def __init__(
        self,
        backend: Backend,
        providers: Sequence[ChangeProvider],
        parallelism: int = 4,
        health_timeout_s: float = 600.0,
        retry: RetryPolicy | None = None,
        progress: Callable[[str, Change | None], None] | None = None,
        sleep: Callable[[float], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.providers = list(providers)
        self.parallelism = max(1, parallelism)
        self.health_timeout_s = health_timeout_s
        self.retry = retry or RetryPolicy()
        self.progress = progress or (lambda _msg, _change: None)
        self._failed = threading.Event()
        self._interrupted = threading.Event()  # Ctrl-C or SIGTERM
        # that, or a wait of the phase failed (``_parallel``): a retry's wait ends at once, and no retry follows
        self._stopping = threading.Event()
        self.sleep = sleep if sleep is not None else self._stopping.wait
        self.clock = clock
        self._write = threading.Lock()
        # what this apply recorded that the state file does not hold yet: changes the backend holds in its
        # journal, a health mark cleared in memory
        self._journaled = False
        # changes made whose record failed (a state write or journal put S3 refused): an apply that
        # stops writes them with the state; where that write fails too (``fold_error``), they are
        # made and not recorded, which the caller must say (the next plan makes them again)
        self.unrecorded: list[str] = []
        self.fold_error: Exception | None = None
        # the last run's report as it goes, for a caller whose run raised (its retries, for the metrics)
        self.report: ApplyReport | None = None
        # deployments whose health wait passed, their mark cleared in memory only: the state's next whole
        # write records it; where that write fails, the next plan applies them again and waits for them
        self.healthy_unwritten: list[str] = []
        # deployments whose health wait began: one the apply marked not healthy and stopped before
        # waiting for (another change failed) is said to be so, not to have failed its wait
        self.waited: set[str] = set()
        # of those, the ones whose wait the apply stopped, not failed (Ctrl-C, or another wait of the phase failed)
        self.stopped_waits: set[str] = set()
        self.marked: set[str] = set()  # deployments this apply recorded as made, not healthy yet
        # changes whose provider call failed but which the provider holds even so (``_made_even_so``):
        # recorded as made, for the caller to say beside the error
        self.made_failing: list[str] = []
        # changes whose provider call sent them and then had its wait for them stopped (another change of the
        # phase failed, or Ctrl-C: a GCP resize's operation wait), address -> that error, which says what to
        # check: recorded at the size asked for, not confirmed (``_sent_unconfirmed``)
        self.left_running: dict[str, BaseException] = {}
        self.notes: list[str] = []  # what providers mended before the changes (``mend``), in words
        # changes of the failed phase that failed beside the one the apply raises, for the caller to say
        self.also_failed: list[BaseException] = []

    def provider_for(self, change: Change) -> ChangeProvider:
        for provider in self.providers:
            if provider.handles(change):
                return provider
        raise ApplyError(f"{change.address}: no configured provider handles {change.kind} changes for "
                         f"provider {change.provider!r}; check Settings apply.mode and credentials")

    def _with_retry(self, change: Change, what: str, call: Callable[[], Any], report: ApplyReport,
                    deadline: float | None = None, stopped: Callable[[], bool] | None = None) -> Any:
        """``call``, again after a retryable error, up to the policy's attempts (``placer.retry``);
        with ``deadline`` (``clock`` time) no retry starts that could not begin before it, and none
        after an interrupt or a failed wait (a Retry-After of 60 s, 6 times): ``stopped``, by default
        ``_stopping``."""
        def said(exc: BaseException, delay: float, why: str) -> None:
            report.retries += 1
            self.progress(f"retrying {change.address} ({what}) in {delay:.1f}s{why} after: {exc}", change)

        return retrying(call, self.retry, spent=RetriesSpent, on_retry=said, sleep=self.sleep, clock=self.clock,
                        deadline=deadline, stopped=stopped or self._stopping.is_set)

    def _record(self, state: State, change: Change, report: ApplyReport, healthy: bool = True) -> None:
        """Record ``change`` as made (``healthy`` False: marked as not healthy yet, see ``_waits``)."""
        with self._write:
            first = state.applying is not None and not state.applying.get("bumped")
            if first:
                assert state.applying is not None
                state.serial += 1
                state.applying["bumped"] = True
                report.serial = state.serial
            key = change.address.split("/", 1)[1]
            value: dict[str, Any] | None
            if change.kind == "pool":
                nodes = None if _released(change) else int((change.after or {}).get("nodes", 0))
                current = state.pools.get(key)
                value = pool_entry(current, nodes, change.target)
                if value is not None and not healthy:  # grown, its nodes not waited for yet (``_capacity``)
                    value = health_marked(value, False)
                    if nodes is not None and _shrank(change, nodes, current):
                        value["shrank"] = True  # the next plan says the last apply shrank it, not "grew it"
                    self.marked.add(change.address)
            else:
                replicas = None if change.after is None else int(change.after["replicas"])
                value = deployment_entry(state.deployments.get(key), replicas, change.target)
                if value is not None and replicas is not None:
                    value = health_marked(value, healthy)
                    if not healthy:
                        self.marked.add(change.address)
            entry = {"seq": len((state.applying or {}).get("done", [])) + 1, "address": change.address,
                     "kind": change.kind, "key": key, "value": value}
            state.replay(entry)
            # the first change writes the whole state (the serial it bumps makes the plan stale);
            # the rest go to the backend's journal where it keeps one
            journal = getattr(self.backend, "record", None)
            try:
                if first or journal is None or state.applying is None:
                    self.backend.write(state)
                else:
                    self._journaled = True
                    journal(state, entry)
            except BaseException:
                # done and in memory only, which the fold on failure must write (a 503 on a journal
                # put once left a written manifest unrecorded)
                self.unrecorded.append(change.address)
                raise

    def _one(self, state: State, change: Change, report: ApplyReport) -> None:
        if self._failed.is_set():
            return  # another change failed: start nothing new
        provider = self.provider_for(change)
        self.progress(f"{change.action} {change.address}", change)
        try:
            self._with_retry(change, "apply", lambda: provider.apply(change), report)
        except Exception as exc:
            if getattr(exc, "stopped", False) and change.after is not None and not _released(change):
                self._sent_unconfirmed(state, change, report, provider, exc)
                return  # not a failure of its own: the phase raises the one that stopped it
            if not self._made_even_so(provider, change):
                raise
            self._record(state, change, report, healthy=not self._waits(change))
            report.applied.append(change.address)
            if self._interrupted.is_set():
                return
            self.made_failing.append(change.address)
            raise
        if not _released(change):  # a released group is left as it is: nothing to verify
            try:
                seen = self._with_retry(change, "observe", lambda: provider.observe(change), report)
            except Exception:
                # the provider took the change, and only reading it back failed: recorded as made
                # (marked not healthy where it waits, so the next plan applies it again and checks
                # it); left out, the state said nothing of a Deployment the cluster ran, and the
                # apply said the state recorded exactly what was done
                self._record(state, change, report, healthy=not self._waits(change))
                report.applied.append(change.address)
                raise
            wanted = change.after
            if (seen or None) != (wanted or None) and not _holds(seen, wanted):
                raise ApplyError(f"{change.address}: after apply the {provider.name} provider reports {seen}, "
                                 f"but the plan wanted {wanted}; the state records what was done before this change")
        self._record(state, change, report, healthy=not self._waits(change))
        report.applied.append(change.address)

    def _sent_unconfirmed(self, state: State, change: Change, report: ApplyReport, provider: ChangeProvider,
                          exc: BaseException) -> None:
        """Record ``change``, whose provider call sent it and whose wait for it (a GCP resize's operation) the
        apply stopped: another change of the phase failed, or Ctrl-C. The provider may still carry it out, or
        fail it: it is recorded at the size asked for, marked not healthy (``"healthy": false``) unless the
        provider holds it already and it is not waited for, so that the next plan sizes it again (the same
        size, which is safe) and waits for it, whichever way it ended. The apply waited for the operation to
        its end (600 s) before it said the other change's failure; recorded at the old size, a resize GCP
        carried out later was drift no plan saw."""
        holds = self._made_even_so(provider, change)
        self._record(state, change, report, healthy=holds and not self._waits(change))
        report.applied.append(change.address)
        with self._write:
            self.left_running[change.address] = exc

    def _made_even_so(self, provider: ChangeProvider, change: Change) -> bool:
        """Whether a change whose provider call failed, or an interrupt ended (a GCP resize's operation
        wait, ``providers.base.pause``), was made even so: the provider holds what was planned. A request
        can be taken and its answer lost (a timeout, a proxy's 504, a GCP operation not done in time, its
        wait failing); it is then recorded, as a change in flight is. The apply said it stopped "after 0
        of 4 change(s)" and that the state recorded exactly what was done, of a group GCP had resized, and
        a Deployment the API server had made after the client's timeout was in no state."""
        if _released(change) or not _moves_a_count(change):
            return False  # what observe reports (counts) cannot tell an image or a setting made from one not
        try:
            seen = provider.observe(change)
        except Exception:
            return False  # unknown: not recorded; the next plan makes it again (the same size, which is safe)
        return _holds(seen, change.after)

    def _waits(self, change: Change) -> bool:
        """A deployment created, scaled up or rolled out, by a provider that waits for health: recorded
        once made, marked not healthy (``"healthy": false``) until its wait passes, so that a wait that
        fails (or is interrupted) leaves in the state what the cluster runs, and the next plan applies
        it again and waits for it before any delete (recorded as done, the re-plan's first change
        deleted the only healthy copy, on the pool it was leaving; recorded only once healthy, the
        state kept the old version and count, and the plan of the fleet backed out to them said "No
        changes"). A scale-down that makes room in phase 2 (``diff._room_first``) is not waited for,
        as phase 3's are not: its wait failing left a replica short. A pool that grows is marked so too,
        until phase 1's wait for its nodes passes (``_grows``)."""
        if change.kind == "pool":
            return self._grows(change)
        after, before = change.after or {}, change.before or {}
        room = set(after) == {"replicas"} and before and int(after["replicas"]) < int(before.get("replicas", 0))
        return (change.phase == PHASE_UP and change.kind == "deployment" and bool(after) and not room
                and getattr(self.provider_for(change), "waits", True))

    def _grows(self, change: Change) -> bool:
        """A pool change that adds nodes, or that keeps a size whose nodes the last apply's wait did not see
        come up (the state's ``"healthy": false``: a refused launch, a wait timed out or interrupted), by a
        provider that waits for them (``_capacity``). Such a pool was recorded at its new size as it was,
        and the next plan changed nothing there: nothing waited for its nodes again, and the replicas put on
        it waited the whole health timeout for pods no node came up for."""
        if change.kind != "pool" or change.after is None or _released(change):
            return False
        before = change.before or {}
        more = int(change.after.get("nodes", 0)) > int(before.get("nodes", 0))
        again = before.get("healthy") is False and int(change.after.get("nodes", 0)) >= int(before.get("nodes", 0))
        return (more or again) and bool(getattr(self.provider_for(change), "waits", True))

    def _capacity(self, state: State, change: Change, report: ApplyReport) -> None:
        """Wait, once phase 1 made its changes, for the nodes a pool grew by to come up, before phase 2
        puts replicas on them: a group whose cloud cannot launch them (a GPU stockout, a quota) fails
        here, at once where the provider can tell (``wait_healthy``), and nothing moves onto it. It
        was not waited for: the group's size was taken, the replicas made on it waited the whole health
        timeout (600 s) for pods that no node came up for, and the error said nothing of capacity."""
        if self._failed.is_set():
            return  # another wait failed: start nothing new (its pool stays marked not healthy)
        self.progress(f"waiting for {change.address}'s {(change.after or {}).get('nodes')} nodes to come up", change)
        self._wait_healthy(change, "capacity", report, state.pools)  # the mark ``_record`` set, cleared

    def _healthy(self, state: State, change: Change, report: ApplyReport) -> None:
        if not self._waits(change) or self._failed.is_set():
            # e.g. gitops: health is the pipeline's business once the tree is merged; or another wait
            # failed: start nothing new (it stays marked not healthy)
            return
        self.progress(f"waiting for {change.address} to be healthy", change)
        self._wait_healthy(change, "health", report, state.deployments)

    def _wait_healthy(self, change: Change, what: str, report: ApplyReport, entries: dict[str, dict[str, Any]]) -> None:
        """The provider's wait for ``change`` (a deployment's health, a grown pool's nodes), then its
        "not healthy" mark in ``entries`` (the state's deployments or pools) cleared."""
        provider = self.provider_for(change)
        self.waited.add(change.address)
        # one deadline for the whole wait: a retry after an error waits out what is left of it (the
        # provider's timeout was retried in full, 6 times: an apply told 600 s waited an hour)
        deadline = self.clock() + self.health_timeout_s

        def wait() -> None:  # each try gets what is left of it (rounded: the first gets it whole)
            provider.wait_healthy(change, max(0.0, round(deadline - self.clock(), 2)))

        cut: list[bool] = []

        def stopped() -> bool:  # after a retry's wait: the apply stopped its waits meanwhile
            if self._stopping.is_set():
                cut.append(True)
            return bool(cut)

        try:
            self._with_retry(change, what, wait, report, deadline, stopped)
        except Exception as exc:
            # the provider's wait ended by the apply (``providers.base.pause``), or a retry not made for it:
            # not a failure of this wait, which ``_parallel`` does not say as one
            if cut or getattr(exc, "stopped", False):
                with self._write:
                    self.stopped_waits.add(change.address)
            raise
        with self._write:
            # the mark cleared in memory, in the state file from its next whole write (when the apply
            # ends, well or not): a state read after a kill still says "not healthy" of it, and the
            # next plan waits for it once more
            key = change.address.split("/", 1)[1]
            entry = entries.get(key)
            if entry is not None and "healthy" in entry:
                entries[key] = health_marked(entry, True)
                self._journaled = True
                self.healthy_unwritten.append(change.address)

    def _still_runs(self, state: State, kept: list[tuple[str, int]], report: ApplyReport) -> dict[str, int]:
        """Of the drift a refreshed plan kept (``kept_drift``), what the providers still run once its
        changes are made: read again, under the lock. The world may have moved since the plan: a count
        another reads now is neither what the refresh saw nor what the state records, and is not
        recorded (the state keeps its record, and the next plan, from it, sets the count again); a
        read that fails leaves the record too. Each is said (``notes``)."""
        if not kept:
            return {}
        self.progress(f"reading the {len(kept)} deployment(s) and pool(s) whose drift the refreshed plan kept, "
                      "to record them", None)
        still: dict[str, int] = {}
        for address, want in kept:
            kind, key = address.split("/", 1)
            entry = (state.pools if kind == "pool" else state.deployments)[key]
            count = "nodes" if kind == "pool" else "replicas"
            change = reading(address, entry.get("target") or {})
            provider = next((p for p in self.providers if p.handles(change)), None)
            if provider is None:
                continue
            keeps = f"the state keeps its record, {count} {entry[count]}"
            try:
                seen = self._with_retry(change, "observe", partial(provider.observe, change), report)
            except Exception as exc:
                self.notes.append(f"{address}: reading it to record the {count} {want} the refresh saw run failed "
                                  f"({str(exc).rstrip('.')}): {keeps}; `placer plan --refresh` reads it again")
                continue
            now = None if seen is None else seen.get(count)
            if now == want:
                still[address] = want
                continue
            self.notes.append(f"{address}: the refresh saw {count} {want} run and the plan kept them, but the "
                              f"{provider.name} provider now reports {'none' if now is None else now} (it was "
                              f"changed since the plan): {keeps}; run `placer plan --refresh` again")
        return still

    def run(self, plan: Plan, state: State, plan_id: str, cost_after: float | None,
            demand: dict[str, float]) -> ApplyReport:
        """Execute ``plan`` against ``state`` (already locked and checked fresh)."""
        report = self.report = ApplyReport(serial=state.serial)
        if state.lineage is None:
            state.lineage = str(uuid.uuid4())
        report.lineage = state.lineage
        todo = [c for c in plan.changes if c.action != "no-op"]
        try:
            self._apply(plan, state, plan_id, cost_after, demand, report, todo)
        finally:
            self._said()
        return report

    def _apply(self, plan: Plan, state: State, plan_id: str, cost_after: float | None,
               demand: dict[str, float], report: ApplyReport, todo: list[Change]) -> None:
        """``run``'s work: mend, then each phase's changes, then what a refreshed plan kept of what
        runs read again, then the state marked finished, recording it."""
        self._mend()
        kept = kept_drift(plan, state)  # at addresses no change touches: the same once the changes are made
        if not todo:
            still = self._still_runs(state, kept, report)
            if state.applying is None and not still:
                return
            # an apply stopped after its last change was recorded (killed before its final write):
            # nothing is left to do but to say it finished (the state said "in the middle of an
            # apply" for good, and a GitOps tree's kustomizations stayed behind)
            self._complete(plan, state, plan_id, cost_after, demand, report, still)
            return
        # the plan's digest: the same plan applied again once this apply stopped is told so (``check_fresh``)
        state.applying = {"plan": plan_id, "planDigest": plan.digest(), "startedAt": _now(), "done": [],
                          "bumped": False}
        try:
            for phase in sorted({c.phase for c in todo}):
                batch = [c for c in todo if c.phase == phase]
                self.progress(f"phase {phase}: {PHASE_NAMES.get(phase, '')} ({len(batch)} change(s))", None)
                self._parallel(batch, lambda c: self._one(state, c, report), calls=True)
                self._finish()
                if phase == PHASE_GROW:
                    self._parallel([c for c in batch if self._grows(c)], lambda c: self._capacity(state, c, report),
                                   waits=True)
                if phase == PHASE_UP:
                    up = [c for c in batch if c.kind == "deployment" and c.after]
                    self._parallel(up, lambda c: self._healthy(state, c, report), waits=True)
            still = self._still_runs(state, kept, report)
        except BaseException:
            with suppress(Exception):  # a kustomization left behind is mended by the next apply; the state comes first
                self._finish()
            with self._write:
                if self._journaled or self.unrecorded:  # an apply that stops folds its journal into the state
                    try:
                        self.backend.write(state)
                        self.unrecorded, self.healthy_unwritten = [], []
                    except Exception as exc:
                        # the apply's own error is raised; this one, and what it leaves unrecorded,
                        # the caller says (it replaced that error, and the CLI said the state was exact)
                        self.fold_error = exc
            raise
        self._complete(plan, state, plan_id, cost_after, demand, report, still)

    def _complete(self, plan: Plan, state: State, plan_id: str, cost_after: float | None,
                  demand: dict[str, float], report: ApplyReport, still: dict[str, int]) -> None:
        """The apply finished: the state says so, with the plan's cost, demand and a history entry,
        and records in the same write what a refreshed plan kept of what runs (``still``: address ->
        count). Recording it moves the serial, as an apply's first change does (a plan made from the
        old record is stale), where no change of this apply has moved it."""
        with self._write:
            applying, state.applying = state.applying, None
            before = (dict(state.deployments), dict(state.pools), state.serial)
            for address, count in still.items():
                kind, key = address.split("/", 1)
                table = state.pools if kind == "pool" else state.deployments
                field_name = "nodes" if kind == "pool" else "replicas"
                table[key] = {**table[key], field_name: count}
                report.kept.append(f"{address} ({field_name} {count})")
            if still and not (applying or {}).get("bumped"):
                state.serial += 1
            state.cost_usd_per_hour = cost_after
            # the models of this plan only: a model removed from the fleet kept its demand, and when
            # it came back its plan said "demand changed" from what it had been before it left
            state.models = {model: {"demand": total} for model, total in demand.items()}
            state.history.append({"serial": state.serial, "appliedAt": _now(), "plan": plan_id,
                                  "changes": len(report.applied), "fleetDigest": plan.fleet_digest,
                                  "planDigest": plan.digest(), **search_of(plan)})
            state.history = state.history[-50:]
            try:
                self.backend.write(state)
            except Exception as exc:
                # as the backend still has it: every change done, the apply not finished (cleared
                # first, the caller counted 0 changes done of an apply that had made them all)
                state.applying = applying
                state.deployments, state.pools, state.serial = before
                report.kept = []
                if applying is None:  # no change was made or recorded: the state is as it was
                    raise ApplyError(f"recording what the refreshed plan kept of what runs failed: {exc}; "
                                     "nothing was changed, and the state is as it was") from exc
                raise UnfinishedError(str(exc)) from exc
        report.serial = state.serial

    def _mend(self) -> None:
        """Providers that can mend what a killed apply left half-written or a user edited (``mend``:
        the gitops provider's kustomizations) do it first, whether or not the plan has changes;
        their ``finish`` writes it. What they said they mend is kept in ``notes``."""
        for provider in self.providers:
            mend = getattr(provider, "mend", None)
            if mend is not None:
                self.notes += mend() or []
        self._finish()

    def _said(self) -> None:
        """What providers can tell only once the apply's phases are done (``said``: a gitops
        kustomization removed or written again), added to ``notes``."""
        for provider in self.providers:
            said = getattr(provider, "said", None)
            if said is not None:
                self.notes += said() or []

    def _finish(self) -> None:
        """Providers that keep work for the end of a phase (``finish``: the gitops provider's
        kustomizations) do it now."""
        for provider in self.providers:
            finish = getattr(provider, "finish", None)
            if finish is not None:
                finish()

    def _parallel(self, changes: list[Change], fn: Callable[[Change], None], waits: bool = False,
                  calls: bool = False) -> None:
        """``fn`` of each change, ``parallelism`` at a time; the first to fail stops the rest from starting,
        and, of ``waits`` (phase 1's waits for nodes, phase 2's for health), ends those under way at once
        (``_stop_waits``): a launch EC2 refused was said only once a GCP pool's wait beside it had timed out
        (61.2 s of a 60 s timeout; 600 s by default). Every change that failed is said; a wait stopped so
        did not fail (``stopped_waits``). Of ``calls`` (the changes themselves), it ends the providers'
        waits for what a call sent (a GCP resize's operation, up to 600 s; ``_sent_unconfirmed``), not the
        retries of a call."""
        if not changes:
            return
        def guarded(change: Change) -> None:
            try:
                fn(change)
            except BaseException:
                self._failed.set()
                raise

        prefix = f"placer-apply-{next(_POOLS)}"
        with ThreadPoolExecutor(max_workers=min(self.parallelism, len(changes)), thread_name_prefix=prefix) as pool:
            futures: dict[Future[None], Change] = {}
            try:
                for c in changes:
                    futures[pool.submit(guarded, c)] = c
                done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            except BaseException:  # Ctrl-C: nothing new starts (every queued change did); what runs ends, recorded
                self._failed.set()
                self._interrupted.set()
                self._stopping.set()
                # and a health wait under way ends now (``providers.base.pause``), as does a wait of the
                # state backend to try an S3 call again (``state_s3``: a hung S3 kept it 150 s)
                for provider in (*self.providers, self.backend):
                    stop = getattr(provider, "stop", None)
                    if isinstance(stop, threading.Event):
                        stop.set()
                for f in futures:
                    f.cancel()
                # a second Ctrl-C stops these waits
                wait([f for f in futures if not f.cancelled()])
                pool.shutdown(wait=True, cancel_futures=True)
                # a Ctrl-C inside submit can land after a worker thread started and before the pool
                # counted it (or the future reached ``futures``): its change ran on after the apply
                # had returned; every thread of this pool is waited for by name
                for thread in threading.enumerate():
                    if thread.name.startswith(prefix + "_") and thread is not threading.current_thread():
                        thread.join()
                raise
            if any(f.exception() is not None for f in done):
                for f in pending:
                    f.cancel()
                stopped = self._stop_waits(retries=waits) if waits or calls else []
                wait(pending)
                for stop in stopped:  # each wait has ended: a provider used again waits as it should
                    if not self._interrupted.is_set():
                        stop.clear()
                # every change that failed, in the plan's order: the first is raised, the others are
                # kept for the caller to say (it said one, and the user mended it only to meet the next);
                # a wait the apply stopped is none of them
                errors = [e for f, c in futures.items() if not f.cancelled() and (e := f.exception()) is not None
                          and (c.address not in self.stopped_waits or not waits)]
                errors = errors or [e for f in futures if not f.cancelled() and (e := f.exception()) is not None]
                self.also_failed += errors[1:]
                raise errors[0]

    def _stop_waits(self, retries: bool = True) -> list[threading.Event]:
        """End every wait of the phase under way (a wait or a change failed): with ``retries`` a retry's wait
        (``_stopping``), and the providers' waits, between their polls or in a long request (their ``stop``,
        ``providers.base.pause`` and ``unless_stopped``), which are given back, to be cleared once the waits
        have ended. The state backend's ``stop`` is left: the state write after the failure must retry as
        it does."""
        if retries:
            self._stopping.set()
        stopped = []
        for provider in self.providers:
            stop = getattr(provider, "stop", None)
            if isinstance(stop, threading.Event) and not stop.is_set():
                stop.set()
                stopped.append(stop)
        return stopped


def _released(change: Change) -> bool:
    """A pool change that releases its group: placer stops sizing it (the gitops provider drops it from
    the tfvars; the live ones leave it as it is)."""
    return change.kind == "pool" and change.action == "delete"


def _shrank(change: Change, nodes: int, current: dict[str, Any] | None) -> bool:
    """Whether a pool ``change`` recorded not healthy at ``nodes`` is a shrink (its resize sent and its wait
    stopped, ``Applier._sent_unconfirmed``), or the same size again of one the last apply left so
    (``current``'s ``shrank``): the next plan said "the last apply grew it" of a phase-4 shrink."""
    before = (change.before or {}).get("nodes")
    if before is not None and nodes < int(before):
        return True
    return bool(current and current.get("shrank") and int(current.get("nodes", -1)) == nodes)


def _moves_a_count(change: Change) -> bool:
    """Whether ``change`` changes a count (replicas or nodes), which ``observe`` can tell made."""
    before, after = change.before or {}, change.after or {}
    return any(before.get(k) != after.get(k) for k in ("replicas", "nodes"))


def _holds(seen: dict[str, Any] | None, wanted: dict[str, Any] | None) -> bool:
    """Whether a provider holds the counts a change wanted (the spec a change also carries, its image
    or namespace, is what the provider just wrote; ``observe`` reports counts)."""
    if wanted is None:
        return seen is None or seen.get("replicas", 0) == 0
    return seen is not None and all(seen.get(k) == wanted[k] for k in ("replicas", "nodes") if k in wanted)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def search_of(plan: Plan) -> dict[str, str]:
    """The history entry's ``search``: how the plan applied was searched (its solver.search,
    ``replan`` or ``whole``), which ``State.replans_since_full_search`` counts; nothing for a plan
    written before placer recorded it."""
    search = (plan.body.get("solver") or {}).get("search")
    return {"search": search} if isinstance(search, str) else {}
