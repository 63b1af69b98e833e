"""placer: a hybrid placement engine for GPU workloads."""

from importlib import metadata
from pathlib import Path


def _version() -> str:
    """The version pyproject.toml gives the distribution, read from its installed metadata; from a source
    tree that is not installed (PYTHONPATH=.), from that tree's pyproject.toml; "0+unknown" where neither
    is there. It was written by hand here and in planfile (PLACER_VERSION), apart from pyproject's."""
    try:
        return metadata.version("placer")
    except metadata.PackageNotFoundError:
        pass
    import tomllib

    try:
        with open(Path(__file__).resolve().parent.parent / "pyproject.toml", "rb") as f:
            project = tomllib.load(f).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return "0+unknown"
    return str(project.get("version") or "0+unknown") if project.get("name") == "placer" else "0+unknown"


__version__ = _version()
