"""Ctrl-C (SIGINT) and SIGTERM (a CI job cancelled, `docker stop`, `timeout`) end every command the
same way: as a KeyboardInterrupt, so that what is being written is cleaned up (a temporary file
removed, a lock released) and the command says it was interrupted, exit 128 + the signal's number
as shells count it. Light on purpose: the console script takes it before placer's modules load."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def sigterm_interrupts() -> Iterator[list[str]]:
    """SIGTERM raises KeyboardInterrupt as Ctrl-C does (it killed the command at once: a render's
    tree left hundreds of hidden temporary files, nothing said). Yields the name of the signal that
    stopped it, once one has (SIGINT until then). Only on the main thread, where signals arrive."""
    stopped_by = ["SIGINT"]
    if threading.current_thread() is not threading.main_thread():
        yield stopped_by
        return

    def interrupt(signum: int, _frame: Any) -> None:
        stopped_by[0] = signal.Signals(signum).name
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield stopped_by
    finally:
        signal.signal(signal.SIGTERM, before)


def interrupted(signal_name: str) -> tuple[str, int]:
    """What a command a signal stopped says, and its exit status: ``Interrupted.`` and 130 for
    Ctrl-C; ``Interrupted (SIGTERM).`` and 143 for SIGTERM."""
    said = "Interrupted." if signal_name == "SIGINT" else f"Interrupted ({signal_name})."
    return said, 128 + signal.Signals[signal_name].value


def main() -> int:
    """The console script: placer's command line, a signal while its modules load (the first half
    second of every command) included; that printed a KeyboardInterrupt traceback (or, SIGTERM,
    nothing)."""
    with sigterm_interrupts() as stopped_by:
        try:
            from placer.cli import main as run

            return run()
        except KeyboardInterrupt:  # while loading, or a second one while the first was being said
            said, status = interrupted(stopped_by[0])
            print(said, file=sys.stderr)
            return status

