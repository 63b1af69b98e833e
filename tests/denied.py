"""A folder that cannot be listed, a file that cannot be read, for tests of how placer says so.

``how="chmod"`` takes the permission away for real (``chmod 300`` a folder, ``chmod 200`` a file)
and skips the test where it does not bite (root, with CAP_DAC_READ_SEARCH, reads whatever the
mode); ``how="seam"`` makes pathlib raise what it raises then, for that path alone, for any user.
``restore`` gives the permission back (call it in a ``finally``, or tmp_path is left undeletable).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

HOWS = ["chmod", "seam"]


def _denied(path: Path) -> PermissionError:
    return PermissionError(errno.EACCES, "Permission denied", str(path))


def _chmod_bites(path: Path, mode: int, tried: Any, back: int, does: str) -> None:
    """``path`` set to ``mode``, where ``tried()`` then raises PermissionError; else its mode given
    ``back`` and the test skipped (``does``: what this user does whatever the mode)."""
    path.chmod(mode)
    try:
        tried()
    except PermissionError:
        return
    path.chmod(back)
    pytest.skip(f"this user {does} whatever its mode; the seam case stands for it")


def unlistable(folder: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """``folder`` cannot be listed (it can still be written and entered)."""
    if how == "chmod":
        return _chmod_bites(folder, 0o300, lambda: os.listdir(folder), 0o755, "lists a folder")
    iterdir = Path.iterdir
    target = folder.resolve()

    def seam(self: Path) -> Any:
        if self.resolve() == target:
            raise _denied(self)
        return iterdir(self)

    monkeypatch.setattr(Path, "iterdir", seam)


def unwritable(folder: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """No file can be made in ``folder`` (`chmod 500`)."""
    if how == "chmod":
        probe = folder / ".probe"
        return _chmod_bites(folder, 0o500, lambda: (probe.touch(), probe.unlink()), 0o755, "writes in a folder")
    import placer.planfile

    beside = placer.planfile.temporary_beside
    target = folder.resolve()

    def seam(path: Path, *args: Any, **kwargs: Any) -> Any:
        if path.parent.resolve() == target:
            raise _denied(path.parent)
        return beside(path, *args, **kwargs)

    monkeypatch.setattr(placer.planfile, "temporary_beside", seam)


def unsearchable(folder: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """``folder`` can be listed but not entered (`chmod 600`): nothing in it can be looked at."""
    if how == "chmod":
        return _chmod_bites(folder, 0o600, lambda: os.stat(os.path.join(folder, ".")), 0o755, "enters a folder")
    stat = os.stat
    inside = str(folder.resolve()) + os.sep

    def seam(path: Any, *args: Any, **kwargs: Any) -> Any:
        name = os.fspath(path) if isinstance(path, str | os.PathLike) else None
        # a name in it, or the folder itself by way of it ("FOLDER/.")
        if isinstance(name, str) and (os.path.abspath(name).startswith(inside)
                                      or (name.endswith(os.sep + ".") and os.path.abspath(name) + os.sep == inside)):
            raise _denied(Path(name))
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", seam)


def unreadable(file: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """``file`` cannot be read (it can still be written over)."""
    if how == "chmod":
        return _chmod_bites(file, 0o200, file.read_bytes, 0o644, "reads a file")
    opener = Path.open
    target = file.resolve()

    def seam(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "r" in mode and self.resolve() == target:
            raise _denied(self)
        return opener(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", seam)


def restore(*paths: Path) -> None:
    """Give back what ``unlistable`` or ``unreadable`` took (a seam goes with its monkeypatch)."""
    for path in paths:
        if path.is_dir():
            path.chmod(0o755)
        elif path.exists():
            path.chmod(0o644)
