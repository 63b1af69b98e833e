"""Read a ``--metrics-file`` back as Prometheus reads it (``prometheus_client``'s own parser), for
the tests of each command's metrics."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families


def samples(path: Path) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Each sample of the file at ``path``, by name, then by its labels (sorted pairs): one a family,
    as a textfile collector requires, every one a gauge."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(path.read_text()):
        assert family.type == "gauge" and family.name not in out, family
        assert family.name.startswith("placer_") and not family.name.endswith("_total"), family.name
        for sample in family.samples:
            assert sample.name == family.name, sample
            out.setdefault(family.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def one(found: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str) -> float:
    """The value of the unlabelled gauge ``name``."""
    return found[name][()]


def by(found: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """The samples of ``name`` keyed by the values of ``labels``, in that order (its only labels)."""
    out = {}
    for key, value in found.get(name, {}).items():
        named = dict(key)
        assert sorted(named) == sorted(labels), (name, key)
        out[tuple(named[label] for label in labels)] = value
    return out


def leftovers(folder: Path) -> list[str]:
    """The hidden temporary files a write left in ``folder`` (placer's ``.<name>.XXXXXXXX``,
    prometheus_client's ``<name>.<pid>.<thread>``)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.count(".prom.") > 0)
