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


def unlistable(folder: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """``folder`` cannot be listed (it can still be written and entered)."""
    if how == "chmod":
        folder.chmod(0o300)
        try:
            os.listdir(folder)
        except PermissionError:
            return
        folder.chmod(0o755)
        pytest.skip("this user lists a folder whatever its mode; the seam case stands for it")
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
        folder.chmod(0o500)
        try:
            (folder / ".probe").touch()
        except PermissionError:
            return
        (folder / ".probe").unlink()
        folder.chmod(0o755)
        pytest.skip("this user writes in a folder whatever its mode; the seam case stands for it")
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
        folder.chmod(0o600)
        try:
            os.stat(os.path.join(folder, "."))
        except PermissionError:
            return
        folder.chmod(0o755)
        pytest.skip("this user enters a folder whatever its mode; the seam case stands for it")
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
        file.chmod(0o200)
        try:
            file.read_bytes()
        except PermissionError:
            return
        file.chmod(0o644)
        pytest.skip("this user reads a file whatever its mode; the seam case stands for it")
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
