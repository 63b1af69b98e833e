"""The ``s3`` state backend: the state and its lock are objects in one bucket.

Concurrency rests on S3's conditional writes, not on a second service:

- the lock is the object ``<key>.lock``, created with ``If-None-Match: *`` (only if it does
  not exist) and holding ``placer.state.lock_info``; a second locker gets ``LockError``
  naming the holder. The locker looks before it writes and reads the lock back after, which
  also keeps stores that ignore conditional headers (and moto's non-atomic check) honest
  in the common cases. Release and ``force_unlock`` delete it only while it is still the
  same object (``If-Match`` on its ETag);
- the state is written with ``If-Match: <ETag read last>`` (or ``If-None-Match: *`` when
  there was none), so of two writers that read the same state exactly one wins; the other
  gets ``StateError`` ("the state changed under you: re-plan").

A state object that cannot be read (empty, not JSON, not a placer state) is an error and is
never overwritten. botocore errors become ``StateError`` with a message that says what to fix.

Each S3 call is bounded as the AWS provider's are: botocore tries it once (connect 5 s, read 10 s);
``_call`` tries a throttled, failed (5xx) or timed-out one again, up to ``TRIES`` tries within
``WAIT_S`` seconds, says so through ``progress`` before each wait, and stops waiting (and
retrying) once ``stop`` is set (an interrupted apply sets it, as it sets its providers'). botocore's
own retries (4 of them, reading for 30 s) held a hung endpoint 2.5 minutes, silent.

An apply's changes after its first are recorded as small objects under
``<key>.journal/<serial>-<seq>`` (``record``), not by putting the whole state again (a state of
15,000 deployments is 10 MB); ``read`` replays those of an apply that did not finish (which
needs s3:ListBucket), and the apply's last ``write`` deletes them. Journal objects a failed
delete leaves behind belong to an older serial and are never replayed. A journal object is written
whole, in one put: one that does not parse is damage, never a record cut short.
"""

from __future__ import annotations

import json
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from placer.state import (
    LockError,
    State,
    StateConflict,
    StateError,
    changed_under,
    describe_holder,
    journal_line,
    lock_info,
    locked_message,
    refuse_running,
    replay_journal,
)

# codes S3 (and S3-compatible stores) use when a conditional write loses
_CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
_MISSING_KEY_CODES = {"NoSuchKey", "404", "NotFound"}
_UNSUPPORTED_CODES = {"NotImplemented", "501"}
_UNREAD: Any = object()  # the state has not been read by this backend yet
# answers worth another try: throttling, S3's own failures and timeouts
_TRANSIENT_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling",
                    "ThrottlingException", "RequestLimitExceeded", "TooManyRequests", "429", "500", "502", "503",
                    "504"}
TRIES = 4  # tries of one S3 call
WAIT_S = 45.0  # no retry starts that could not begin within this many seconds of the first try
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 10.0
T = TypeVar("T")


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    code = str((response.get("Error") or {}).get("Code") or "")
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return code or (str(status) if status else "")


def _message(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str((response.get("Error") or {}).get("Message") or exc)


def _transient(exc: Exception) -> bool:
    """Whether an S3 call's failure may pass if tried again (throttled, failed, timed out)."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(exc, ClientError):
        code = _code(exc)
        status = ((getattr(exc, "response", None) or {}).get("ResponseMetadata") or {}).get("HTTPStatusCode")
        if code in _UNSUPPORTED_CODES:
            return False  # a store without conditional deletes: the caller falls back at once
        return code in _TRANSIENT_CODES or (isinstance(status, int) and status >= 500)
    return isinstance(exc, ConnectionError | HTTPClientError)


def _said(exc: Exception) -> str:
    """What S3 (or the connection to it) answered, in a clause."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        return f"S3 answered {_code(exc) or 'an error'}: {_message(exc).rstrip('.')}"
    return f"{type(exc).__name__}: {exc}"


def _tried(exc: Exception) -> str:
    """For a failure that may pass (throttled, failed, timed out): how often it was tried, and that
    it is temporary (a SlowDown said only "Please reduce your request rate.")."""
    if not _transient(exc):
        return ""
    tries = int(getattr(exc, "tries", 1))
    return f"; tried {tries} time{'s' if tries != 1 else ''}: this is temporary, try again in a minute"


def _etag(value: str | None) -> str | None:
    return None if value is None else value.strip('"')


class S3Backend:
    """State in ``s3://bucket/key``, locked by ``s3://bucket/key.lock`` (same interface as LocalBackend)."""

    def __init__(self, bucket: str, key: str, region: str | None = None, endpoint_url: str | None = None,
                 client: Any = None, retry_base_s: float = 0.5,
                 progress: Callable[[str], None] | None = None) -> None:
        if not bucket or not key:
            raise StateError("the s3 state backend needs a bucket and a key (Settings state.bucket, state.key)")
        self.bucket = bucket
        self.key = key
        self.lock_key = f"{key}.lock"
        self.region = region
        self.endpoint_url = endpoint_url
        self.location = f"s3://{bucket}/{key}"
        self._client = client
        self.retry_base_s = retry_base_s
        self.progress = progress or (lambda _msg: None)  # told before each wait to try a call again
        self.stop = threading.Event()  # set by an interrupted apply: no wait, no retry (``_call``)
        self.client  # noqa: B018 - made now, in the caller's thread (boto3 clients are thread-safe, making them is not)
        # the ETag of the state object as read last: None = no object; _UNREAD = not read yet
        self._etag: Any = _UNREAD
        self._damaged: str | None = None
        self._journal: list[str] = []  # journal objects the next write folds in and deletes
        self._now: bytes | None = None  # the state object a refused write found (``_landed``), None: none

    # ------------------------------------------------------------ plumbing

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                retries={"total_max_attempts": 1, "mode": "standard"},  # ``_call`` retries, bounded
                connect_timeout=CONNECT_TIMEOUT_S,
                read_timeout=READ_TIMEOUT_S,
                s3={"addressing_style": "path"} if self.endpoint_url else None,
            )
            try:
                self._client = boto3.client("s3", region_name=self.region, endpoint_url=self.endpoint_url,
                                            config=config)
            except Exception as exc:  # bad region or endpoint, broken AWS config file
                raise StateError(f"{self.location}: cannot create an S3 client: {exc}") from None
        return self._client

    def _call(self, doing: str, call: Callable[[], T]) -> T:
        """``call()``, tried again while it fails in a way that may pass (``_transient``): up to
        ``TRIES`` tries, none starting ``WAIT_S`` seconds after the first, with backoff and jitter
        between them (``placer.retry.RetryPolicy``, the apply's), each wait said through ``progress``; once
        ``stop`` is set (an interrupt) no wait and no retry. Raises the last error, its ``tries``
        set to how many tries were made."""
        from placer.retry import RetryPolicy

        policy = RetryPolicy(attempts=TRIES, base_seconds=self.retry_base_s, max_seconds=8.0)
        deadline = time.monotonic() + WAIT_S
        for attempt in range(1, TRIES + 1):
            try:
                return call()
            except Exception as exc:
                exc.tries = attempt  # type: ignore[attr-defined]
                if attempt == TRIES or not _transient(exc) or self.stop.is_set():
                    raise
                delay = policy.delay(attempt - 1)
                if time.monotonic() + delay >= deadline:
                    raise
                self.progress(f"{self.location}: cannot {doing} yet ({_said(exc)}); trying again in {delay:.1f}s "
                              f"(try {attempt + 1} of {TRIES})")
                if self.stop.wait(delay):
                    raise
        raise AssertionError("unreachable")

    def _error(self, exc: Exception, doing: str, key: str | None = None) -> StateError:
        """A botocore error, phrased for the user."""
        from botocore.exceptions import (
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        where = f"s3://{self.bucket}/{key or self.key}"
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return StateError(f"{where}: cannot {doing}: no AWS credentials found; set AWS_PROFILE or "
                              "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or run on a role)")
        if isinstance(exc, EndpointConnectionError):
            return StateError(f"{where}: cannot {doing}: cannot reach the S3 endpoint "
                              f"{self.endpoint_url or '(AWS default)'}: {exc}{_tried(exc)}")
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code == "NoSuchBucket":
                return StateError(f"{where}: cannot {doing}: the bucket {self.bucket!r} does not exist"
                                  + (f" at {self.endpoint_url}" if self.endpoint_url else "")
                                  + "; create it (versioning on) or fix Settings state.bucket")
            if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled"):
                return StateError(f"{where}: cannot {doing}: access denied; the credentials in use need "
                                  "s3:GetObject, s3:PutObject and s3:DeleteObject on the state, its .lock and its .journal/ "
                                  "objects (and s3:ListBucket on the bucket)")
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
                return StateError(f"{where}: cannot {doing}: the AWS credentials were refused ({code}): "
                                  f"{_message(exc)}")
            if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "301"):
                return StateError(f"{where}: cannot {doing}: the bucket {self.bucket!r} is in another region "
                                  "than the client's; set Settings state.region")
            return StateError(f"{where}: cannot {doing}: {_said(exc)}{_tried(exc)}")
        return StateError(f"{where}: cannot {doing}: {_said(exc)}{_tried(exc)}")

    def _get(self, key: str, doing: str) -> tuple[bytes, str | None] | None:
        """(body, ETag) of ``key``, or None when it does not exist."""
        from botocore.exceptions import BotoCoreError, ClientError

        def get() -> tuple[dict[str, Any], bytes]:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            return response, response["Body"].read()

        try:
            response, body = self._call(doing, get)
        except ClientError as exc:
            if _code(exc) in _MISSING_KEY_CODES:
                return None
            raise self._error(exc, doing, key) from None
        except BotoCoreError as exc:
            raise self._error(exc, doing, key) from None
        return body, _etag(response.get("ETag"))

    # ------------------------------------------------------------ state

    def read(self) -> State:
        got = self._get(self.key, "read the state")
        if got is None:
            self._etag = None
            self._damaged = None
            return State()
        body, etag = got
        self._etag = etag
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            self._damaged = "not UTF-8 text"
            raise StateError(f"{self.location}: the state object is not UTF-8 text; restore an earlier version "
                             "(bucket versioning); placer will not overwrite it") from None
        if not text.strip():
            self._damaged = "empty"
            raise StateError(f"{self.location}: the state object is empty (truncated?); restore an earlier "
                             "version (bucket versioning); placer will not overwrite it")
        try:
            state = State.loads(text, self.location)
        except StateError as exc:
            self._damaged = str(exc)
            raise
        self._damaged = None
        if state.applying is not None:
            self._replay(state)
        return state

    def _journal_prefix(self, state: State) -> str:
        return f"{self.key}.journal/{state.serial:010d}-"

    def _replay(self, state: State) -> None:
        """The journal of the apply ``state`` is in the middle of (it did not finish)."""
        from botocore.exceptions import BotoCoreError, ClientError

        prefix = self._journal_prefix(state)
        keys: list[str] = []
        def page(token: str | None) -> dict[str, Any]:
            more = {"ContinuationToken": token} if token else {}
            return dict(self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, **more))

        try:
            token: str | None = None
            while True:
                listed = self._call("list the journal of an apply that did not finish",
                                    lambda token=token: page(token))  # type: ignore[misc]
                keys += [o["Key"] for o in listed.get("Contents", [])]
                token = listed.get("NextContinuationToken") if listed.get("IsTruncated") else None
                if not token:
                    break
        except ClientError as exc:
            if _code(exc) in ("AccessDenied", "403", "Forbidden"):
                raise StateError(f"s3://{self.bucket}/{prefix}*: cannot list the journal of an apply that did not "
                                 "finish: access denied; the credentials in use need s3:ListBucket on the bucket "
                                 "to read it") from None
            raise self._error(exc, "list the journal of an apply that did not finish", prefix) from None
        except BotoCoreError as exc:
            raise self._error(exc, "list the journal of an apply that did not finish", prefix) from None
        lines = []
        for key in sorted(keys):
            got = self._get(key, "read the journal of an apply that did not finish")
            if got is not None:
                lines.append((f"s3://{self.bucket}/{key}", got[0].decode("utf-8", errors="replace")))
        replay_journal(state, lines)
        self._journal = keys

    def record(self, state: State, entry: dict[str, Any]) -> None:
        """Record one change of an apply (``state`` holds it already) as a small object."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = f"{self._journal_prefix(state)}{int(entry['seq']):010d}"
        try:
            body = journal_line(state, entry).encode("utf-8")
            self._call("record a change of the apply", lambda: self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType="application/json"))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "record a change of the apply", key) from None
        self._journal.append(key)

    def _drop_journal(self) -> None:
        """Delete the journal objects the state now holds (best effort: any left are an older
        serial's, which no read replays)."""
        from botocore.exceptions import BotoCoreError, ClientError

        keys, self._journal = self._journal, []
        for i in range(0, len(keys), 1000):
            batch = {"Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True}
            with suppress(ClientError, BotoCoreError):
                self._call("delete the journal", lambda batch=batch: self.client.delete_objects(  # type: ignore[misc]
                    Bucket=self.bucket, Delete=batch))

    def write(self, state: State) -> None:
        """Write ``state`` only over the object read last (``read`` first); else StateError."""
        from botocore.exceptions import BotoCoreError, ClientError

        if self._damaged is not None:
            raise StateError(f"{self.location}: refusing to overwrite a state object that could not be read "
                             f"({self._damaged}); restore it first")
        body = state.dumps().encode("utf-8")
        condition: dict[str, str]
        if self._etag is None or self._etag is _UNREAD:
            condition = {"IfNoneMatch": "*"}  # create: there must still be no state
        else:
            condition = {"IfMatch": f'"{self._etag}"'}
        try:
            response = self._call("write the state", lambda: self.client.put_object(
                Bucket=self.bucket, Key=self.key, Body=body, ContentType="application/json", **condition))
        except ClientError as exc:
            code = _code(exc)
            if code in _CONFLICT_CODES or ("IfMatch" in condition and code in _MISSING_KEY_CODES):
                if self._landed(body):
                    self._drop_journal()
                    return  # our own write landed and a retry of it was refused
                raise self._changed(condition) from None
            raise self._error(exc, "write the state") from None
        except BotoCoreError as exc:
            raise self._error(exc, "write the state") from None
        self._etag = _etag(response.get("ETag"))
        self._drop_journal()

    def _landed(self, body: bytes) -> bool:
        """Whether the object now holds exactly ``body`` (a retried conditional put whose first try won)."""
        got = self._get(self.key, "read the state")
        self._now = None if got is None else got[0]
        if got is None or got[0] != body:
            return False
        self._etag = got[1]
        return True

    def _changed(self, condition: dict[str, str]) -> StateConflict:
        """The conflict of a write ``_landed`` found another's object, or none, in place of."""
        return changed_under(self.location, self._now, found_none="IfNoneMatch" in condition and self._etag is None)

    # ------------------------------------------------------------ lock

    def holder(self) -> dict[str, Any] | None:
        found = self._holder()
        return None if found is None else found[0]

    def _holder(self) -> tuple[dict[str, Any], str | None] | None:
        got = self._get(self.lock_key, "read the state lock")
        if got is None:
            return None
        body, etag = got
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            data = {}
        return (data if isinstance(data, dict) else {}), etag

    def _delete_lock(self, etag: str | None) -> bool:
        """Delete the lock object if it is still ``etag``; False when it changed meanwhile."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            if etag:
                try:
                    self._call("release the state lock", lambda: self.client.delete_object(
                        Bucket=self.bucket, Key=self.lock_key, IfMatch=f'"{etag}"'))
                    return True
                except ClientError as exc:
                    if _code(exc) not in _UNSUPPORTED_CODES:
                        raise
            # a store without conditional deletes: plain delete (we just checked the ID)
            self._call("release the state lock",
                       lambda: self.client.delete_object(Bucket=self.bucket, Key=self.lock_key))
            return True
        except ClientError as exc:
            if _code(exc) in _CONFLICT_CODES or _code(exc) in _MISSING_KEY_CODES:
                return False
            raise self._error(exc, "release the state lock", self.lock_key) from None
        except BotoCoreError as exc:
            raise self._error(exc, "release the state lock", self.lock_key) from None

    def _locked_error(self, holder: dict[str, Any]) -> LockError:
        return LockError(locked_message(self.location, holder, "--fleet FLEET",
                                        ", FLEET being the fleet whose Settings hold this state"), holder)

    def _acquire(self, info: dict[str, Any]) -> str | None:
        from botocore.exceptions import BotoCoreError, ClientError

        body = json.dumps(info).encode("utf-8")
        for _ in range(3):
            # look first: names the holder at once, and keeps a store that ignores If-None-Match from
            # letting a second locker overwrite the lock of the first
            found = self._holder()
            if found is not None:
                raise self._locked_error(found[0])
            try:
                response = self._call("lock the state", lambda: self.client.put_object(
                    Bucket=self.bucket, Key=self.lock_key, Body=body, ContentType="application/json",
                    IfNoneMatch="*"))
            except ClientError as exc:
                if _code(exc) not in _CONFLICT_CODES:
                    raise self._undo_lock(info, None, self._error(exc, "lock the state", self.lock_key),
                                          _transient(exc)) from None
                found = self._holder()
                if found is None:
                    continue  # released meanwhile: try again
                holder, etag = found
                if holder.get("ID") == info["ID"]:
                    return etag  # a retried put whose first try had won
                raise self._locked_error(holder) from None
            except BotoCoreError as exc:
                raise self._undo_lock(info, None, self._error(exc, "lock the state", self.lock_key),
                                      _transient(exc)) from None
            etag = _etag(response.get("ETag"))
            # read back: a store that ignores If-None-Match (or a racing twin) is caught here
            try:
                found = self._holder()
            except StateError as exc:
                raise self._undo_lock(info, etag, exc) from None
            if found is None:
                continue  # force-unlocked in the meantime: try again
            if found[0].get("ID") != info["ID"]:
                raise self._locked_error(found[0])
            return etag
        raise StateError(f"{self.location}: the state lock keeps changing hands; try again")

    def _undo_lock(self, info: dict[str, Any], etag: str | None, error: StateError,
                   maybe: bool = True) -> StateError:
        """``error``, S3's failure once this locker's lock object was created (``etag``) or may have
        been (None: a put whose answer was lost, when ``maybe``): the lock is deleted again, best
        effort, else the error says it is held and how to break it (it was left, unsaid, and the
        next apply was refused as locked by this one)."""
        if not maybe:
            return error
        try:
            if etag is None:
                found = self._holder()
                if found is None or found[0].get("ID") != info["ID"]:
                    return error  # it was not created
                etag = found[1]
            self._delete_lock(etag)
        except StateError:
            made = "the lock it created" if etag else "if a try of it created the lock, it"
            return StateError(f"{str(error).rstrip('.')}; {made} {self._held(info)}")
        return error

    def _held(self, info: dict[str, Any]) -> str:
        return (f"is still held: once S3 answers again, run `placer force-unlock {shlex.quote(str(info['ID']))} --fleet FLEET`, "
                "FLEET being the fleet whose Settings hold this state")

    @contextmanager
    def lock(self, operation: str) -> Iterator[dict[str, Any]]:
        info = lock_info(operation)
        etag = self._acquire(info)
        try:
            yield info
        except BaseException:
            with suppress(StateError):  # the error in flight says more than a failed release
                self._release(info, etag)
            raise
        self._release(info, etag)

    def _release(self, info: dict[str, Any], etag: str | None) -> None:
        try:
            found = self._holder()
            if found is not None and found[0].get("ID") == info["ID"]:
                self._delete_lock(found[1] or etag)
        except StateError as exc:
            raise StateError(f"{exc}; the lock {self._held(info)}") from None

    def force_unlock(self, lock_id: str) -> dict[str, Any]:
        found = self._holder()
        if found is None:
            raise LockError(f"the state {self.location} is not locked")
        holder, etag = found
        # one that names no holder (empty or unreadable) is broken by any ID, as on the local backend
        if holder.get("ID") and holder.get("ID") != lock_id:
            raise LockError(f"lock ID {lock_id} does not match the lock on {self.location} "
                            f"({describe_holder(holder)})", holder)
        refuse_running(self.location, holder)
        if not self._delete_lock(etag):
            raise LockError(f"the lock on {self.location} changed while unlocking; look again", holder)
        return holder

