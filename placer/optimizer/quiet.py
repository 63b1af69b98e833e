"""Keep solver banners and debug lines off placer's stdout (``plan --json`` must print only the plan)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# PLACER_DEBUG (any value): the scalable route's steps and their times, on stderr
DEBUG = bool(os.environ.get("PLACER_DEBUG"))


def debug(*parts: object) -> None:
    """One debug line on stderr: stdout is the plan's (``plan --json``)."""
    print(*parts, file=sys.stderr, flush=True)


@contextmanager
def quiet_stdout() -> Iterator[None]:
    """HiGHS prints a banner on the process's stdout (fd 1) when its first instance is made, whatever
    it is told; send fd 1 to /dev/null meanwhile."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
