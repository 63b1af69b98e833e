"""Trying a call again after an error a retry may pass (its ``retryable``: throttling, a 5xx, a
timeout): the policy (exponential backoff with full jitter, at least the wait a server asked for
with Retry-After, within reason) and the loop, one copy for apply, the S3 state backend and
discovery. It imports nothing of placer's or of a provider's, so that each of them may use it."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_seconds: float = 0.5
    max_seconds: float = 20.0
    most_asked_seconds: float = 60.0  # the longest Retry-After honoured: a server's word, within reason

    def delay(self, attempt: int, asked: float | None = None) -> float:
        """Full jitter: uniform in [0, min(max, base·2^attempt)]; at least what the server
        ``asked`` (Retry-After), up to ``most_asked_seconds``."""
        backoff = random.uniform(0, min(self.max_seconds, self.base_seconds * (2 ** attempt)))
        return max(backoff, min(asked or 0.0, self.most_asked_seconds))

    def asked_words(self, asked: float | None) -> str:
        """Why a wait is as long as it is, where the server asked: ", as the server asked
        (Retry-After 7s)"; "" where it did not."""
        if asked is None:
            return ""
        capped = f", at most {self.most_asked_seconds:g}s" if asked > self.most_asked_seconds else ""
        return f", as the server asked (Retry-After {asked:g}s{capped})"


class RetriesSpent(Exception):
    """A retryable error that every try of the policy met: what failed, how often and over how long
    it was tried, and ``then``, what to do now, so that nobody is told to retry what was retried
    already (``__cause__`` is the last error; not ``retryable``: nothing retries it again). What
    failed is the error's ``facts`` where it has them (a provider's error: its message without its
    advice to retry), else its message."""

    retryable = False

    def __init__(self, last: BaseException, tries: int, seconds: float, then: str) -> None:
        said = (getattr(last, "facts", None) or str(last)).rstrip().rstrip(".")
        super().__init__(f"{said}{' ' if said.endswith('?') else '; '}tried {tries} times over {seconds:.0f}s and it still "
                         f"failed: {then}")
        self.tries = tries
        self.seconds = seconds


def retrying(call: Callable[[], T], policy: RetryPolicy, *,
             spent: Callable[[BaseException, int, float], Exception],
             on_retry: Callable[[BaseException, float, str], object] = lambda _exc, _delay, _why: None,
             sleep: Callable[[float], object] = time.sleep, clock: Callable[[], float] = time.monotonic,
             deadline: float | None = None, stopped: Callable[[], bool] = lambda: False) -> T:
    """``call()``, again after an error whose ``retryable`` is true, up to the policy's attempts.
    Before each wait ``on_retry(error, seconds, asked_words)``; once every try failed, ``spent(last
    error, tries, seconds)`` is raised (a policy of one try raises the error itself: nothing was
    retried). With ``deadline`` (``clock`` time) no retry starts that could not begin before it;
    once ``stopped()`` after a wait (an interrupt), no retry."""
    started = clock()
    for attempt in range(policy.attempts):
        try:
            return call()
        except Exception as exc:
            if not getattr(exc, "retryable", False):
                raise
            if attempt == policy.attempts - 1:
                if attempt == 0:
                    raise
                raise spent(exc, attempt + 1, clock() - started) from exc
            asked = getattr(exc, "retry_after", None)
            delay = policy.delay(attempt, asked)
            if deadline is not None and clock() + delay >= deadline:
                raise
            on_retry(exc, delay, policy.asked_words(asked))
            sleep(delay)
            if stopped():
                raise
    raise AssertionError("unreachable")


def _unsaid(_line: str) -> None:
    pass


@dataclass(frozen=True)
class Retrier:
    """A policy wired to where its waits are said (``progress``, a line each) and to what a caller
    is told to do once its tries are spent (``then``), for a caller that retries its calls one by
    one (discovery's listings and reads). The default makes each call once."""

    policy: RetryPolicy = RetryPolicy(attempts=1)
    then: str = "wait until it answers again, then run the command again"
    progress: Callable[[str], None] = _unsaid
    sleep: Callable[[float], object] = time.sleep

    def __call__(self, call: Callable[[], T]) -> T:
        return retrying(call, self.policy, sleep=self.sleep,
                        on_retry=lambda exc, delay, why: self.progress(f"retrying in {delay:.1f}s{why} after: {exc}"),
                        spent=lambda last, tries, seconds: RetriesSpent(last, tries, seconds, self.then))
