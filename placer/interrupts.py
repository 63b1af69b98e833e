"""Ctrl-C (SIGINT) and SIGTERM (a CI job cancelled, `docker stop`, `timeout`) end every command the
same way: as a KeyboardInterrupt, so that what is being written is cleaned up (a temporary file
removed, a lock released) and the command says it was interrupted, exit 128 + the signal's number
as shells count it. Light on purpose: the console script takes it before placer's modules load.

A signal in a command's last moments, once its work is done and its exit status decided (the
interpreter shutting down, ~0.1-0.25 s), is said and counted the same way: ``Interrupted
(SIGTERM).``, exit 143 (``Interrupted.``, 130, for Ctrl-C). Whoever sent it asked the command to
stop and is told it stopped, so that `placer plan -o P && placer apply P` cancelled then applies
nothing; what the command finished stays done (a plan file written whole, the state written), as
after any interrupt. It was not said: SIGTERM killed the process silent (-15 to a Python caller),
Ctrl-C printed a KeyboardInterrupt traceback, and a SIGTERM just after the command's last line
said "Interrupted." and exited 130.

Once the exit handlers have run, the process ends with the command's status (``os._exit``), before
Python tears its modules down (where ``main``'s is the first exit handler registered, as the console
script's is): there Python gives signals back to the system's default, and a
SIGTERM or Ctrl-C there killed the process silent (-15, -2), its work done and printed: 11 of 40
SIGTERMs sent around the end of a `placer validate`."""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType


class _Interrupting:
    """The SIGTERM handler ``sigterm_interrupts`` installs: a KeyboardInterrupt, the signal's name
    noted on ``stopped_by``, which a nested ``sigterm_interrupts`` shares (each had its own, and a
    SIGTERM that landed in the inner one and was caught by the outer was said as Ctrl-C's, 130)."""

    def __init__(self) -> None:
        self.stopped_by = ["SIGINT"]

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.stopped_by[0] = signal.Signals(signum).name
        raise KeyboardInterrupt


@contextmanager
def sigterm_interrupts() -> Iterator[list[str]]:
    """SIGTERM raises KeyboardInterrupt as Ctrl-C does (it killed the command at once: a render's
    tree left hundreds of hidden temporary files, nothing said). Yields the name of the signal that
    stopped it, once one has (SIGINT until then); within another's, that one's. Only on the main
    thread, where signals arrive."""
    if threading.current_thread() is not threading.main_thread():
        yield ["SIGINT"]
        return
    before = signal.getsignal(signal.SIGTERM)
    if isinstance(before, _Interrupting):
        yield before.stopped_by
        return
    interrupt = _Interrupting()
    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield interrupt.stopped_by
    finally:
        signal.signal(signal.SIGTERM, before)


def interrupted(signal_name: str) -> tuple[str, int]:
    """What a command a signal stopped says, and its exit status: ``Interrupted.`` and 130 for
    Ctrl-C; ``Interrupted (SIGTERM).`` and 143 for SIGTERM."""
    said = "Interrupted." if signal_name == "SIGINT" else f"Interrupted ({signal_name})."
    return said, 128 + signal.Signals[signal_name].value


def from_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` was raised from a KeyboardInterrupt (its ``__cause__`` chain): Python gives one
    in a class's making, as a module loads (pydantic's models: a signal in the first half second of
    a command), as "RuntimeError: Error calling __set_name__ on 'Field' instance ...", its cause the
    interrupt."""
    seen = {id(exc)}
    cause = exc.__cause__
    while cause is not None and id(cause) not in seen:  # a chain may loop (an error raised from itself)
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__
    return False


def _exit_on_signals(said_already: bool) -> None:
    """From here on (the command ended, Python shutting down) SIGINT and SIGTERM are said, unless
    the command said it was interrupted already, and end the process at once with the signal's
    status: there is nothing left to clean up, and a KeyboardInterrupt now would be a traceback."""

    def end(signum: int, _frame: FrameType | None) -> None:
        said, status = interrupted(signal.Signals(signum).name)
        for stream in (sys.stdout, sys.stderr):  # as the command left them; a write under way may refuse
            with suppress(Exception):
                stream.flush()
        if not said_already:
            with suppress(OSError):
                os.write(2, f"{said}\n".encode())
        os._exit(status)

    signal.signal(signal.SIGINT, end)
    signal.signal(signal.SIGTERM, end)


def _end_now(ended: list[int]) -> None:
    """The last exit handler (registered first): the process ends now with the command's status,
    ``ended``'s one entry, its output flushed, rather than after Python's teardown of its modules,
    where a signal is no longer Python's to say (the system's default kills the process silent).
    Where ``main`` did not return (an error escaped it), or a flush fails (a closed pipe), Python
    ends as it would, saying what it says and exiting with its own status."""
    if not ended:
        return
    streams = {id(s): s for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__) if s is not None}
    for stream in streams.values():
        try:
            stream.flush()
        except Exception:
            return
    os._exit(ended[0])


def main() -> int:
    """The console script: placer's command line, a signal while its modules load (the first half
    second of every command) and once it has ended included; the first printed a KeyboardInterrupt
    traceback (or, SIGTERM, nothing). The process's own: what it installs is not put back."""
    interrupt = _Interrupting()
    signal.signal(signal.SIGTERM, interrupt)
    ended: list[int] = []
    # before placer's modules and the libraries register theirs, so run last; not where another was
    # registered before it (a hook, a coverage tool's), which would be skipped
    # (``_ncallbacks`` is CPython's: elsewhere the teardown goes on as Python has it)
    if getattr(atexit, "_ncallbacks", lambda: 1)() == 0:
        atexit.register(_end_now, ended)
    try:
        from placer.cli import main as run

        status = run()
        _exit_on_signals(said_already=False)
    except (KeyboardInterrupt, RuntimeError) as exc:  # while loading, just after the command ended, or a second
        if not isinstance(exc, KeyboardInterrupt) and not from_interrupt(exc):  # one as the first was said
            raise
        _exit_on_signals(said_already=True)
        said, status = interrupted(interrupt.stopped_by[0])
        print(said, file=sys.stderr)
    ended.append(status)
    return status
