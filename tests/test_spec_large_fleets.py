"""Large valid fleets read in time linear in their size: each test counts the work done, never the time taken."""

from __future__ import annotations


class _CountedDocuments(tuple):  # type: ignore[type-arg]
    """A fleet's documents that count how often they are walked through."""

    walks = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        type(self).walks += 1
        return super().__iter__()


def test_finding_each_document_of_a_large_fleet_walks_its_documents_once() -> None:
    """Fleet.document (asked once per model by validate's warnings) looked through every document each
    time: bench XL's 10,000 models made 10,000 walks of 11,361 documents, 69 s of its validate."""
    import dataclasses

    from tests.fleetkit import fleet, inference, location, pool

    loaded = fleet(location("a"), pool("p", "a"),
                   *(inference(f"m{i}", [{"location": "a", "rate": 1}]) for i in range(200)))
    counted = dataclasses.replace(loaded, documents=_CountedDocuments(loaded.documents))
    for i in range(200):
        found = counted.document("Model", f"m{i}")
        assert found is not None and found.name == f"m{i}"
    assert counted.document("Model", "a") is None and counted.document("Location", "a") is not None
    assert _CountedDocuments.walks <= 1


def _locations(n: int) -> str:
    return "---\n".join(f"apiVersion: placer.dev/v1alpha1\nkind: Location\nmetadata: {{name: loc-{i}}}\n"
                        f"spec: {{environment: cloud, jurisdiction: EU, localLatencyMs: 1.5}}\n" for i in range(n))


def test_a_fleet_file_resolves_each_plain_text_once_and_constructs_no_text(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Reading 176,000 Location documents (16 files of 1 MB) took minutes: PyYAML's resolver matched
    every plain scalar against its patterns (apiVersion, kind, cloud... once per document), and its
    constructor did its bookkeeping for every text. Each text's tag is now looked up once, and a text is
    its node's value."""
    import yaml

    from placer.spec.source import parse_text

    resolved: list[str] = []
    constructed: list[str] = []
    resolve, construct = yaml.resolver.BaseResolver.resolve, yaml.constructor.BaseConstructor.construct_object

    def counting_resolve(self, kind, value, implicit):  # type: ignore[no-untyped-def]
        if kind is yaml.ScalarNode:
            resolved.append(value)
        return resolve(self, kind, value, implicit)

    def counting_construct(self, node, deep=False):  # type: ignore[no-untyped-def]
        constructed.append(node.tag)
        return construct(self, node, deep)

    monkeypatch.setattr(yaml.resolver.BaseResolver, "resolve", counting_resolve)
    monkeypatch.setattr(yaml.constructor.BaseConstructor, "construct_object", counting_construct)
    docs, diags = parse_text(_locations(300), "locations.yaml")
    assert not diags and len(docs) == 300
    assert docs[299].data == {"apiVersion": "placer.dev/v1alpha1", "kind": "Location", "metadata": {"name": "loc-299"},
                              "spec": {"environment": "cloud", "jurisdiction": "EU", "localLatencyMs": 1.5}}
    assert docs[299].lines[("spec", "localLatencyMs")] == docs[299].line + 3
    assert len(resolved) == len(set(resolved)) <= 300 + 13  # each name, and the 13 texts every document repeats
    assert constructed == ["tag:yaml.org,2002:float"] * 300  # the figures; no text


def test_printable_text_is_not_looked_through_character_by_character(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The check for control characters asked the Unicode category of every character of every
    document (800,828 asks for 9,900 small Location documents); text that is printable holds none,
    and only the rest is looked into, so an escape code is still found."""
    import unicodedata

    from placer.spec import load_document
    from placer.spec.source import parse_text

    asked: list[str] = []
    category = unicodedata.category

    def counting(char: str) -> str:
        asked.append(char)
        return category(char)

    monkeypatch.setattr(unicodedata, "category", counting)
    raws, _ = parse_text(_locations(50), "locations.yaml")
    assert all(load_document(raw)[1] == [] for raw in raws)
    assert asked == []
    raws, _ = parse_text('apiVersion: placer.dev/v1alpha1\nkind: Location\nmetadata: {name: a}\n'
                         'spec: {environment: cloud, jurisdiction: "E\\eU"}\n', "escape.yaml")
    _, diags = load_document(raws[0])
    assert [(d.field, d.line) for d in diags] == [("spec.jurisdiction", 4)] and "'\\x1b'" in diags[0].message


def test_validate_counts_a_models_pools_until_they_hold_its_min_replicas(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Whether a model's pools hold its minReplicas counted every pool for every model: 5,366,000
    pools at bench XL, most of its validate's minutes. The pools are counted until they hold enough;
    a model they cannot hold is still found, with all they hold."""
    from placer.optimizer import conflicts
    from tests.fleetkit import RULES, fleet, inference, location, pool

    looked: list[str] = []
    exclusion = conflicts.exclusion

    def counting(fleet, rules, model, pool, policies):  # type: ignore[no-untyped-def]
        looked.append(pool.name)
        return exclusion(fleet, rules, model, pool, policies)

    monkeypatch.setattr(conflicts, "exclusion", counting)
    demand = [{"location": "a", "rate": 1}]
    loaded = fleet(location("a"), *(pool(f"p{i}", "a") for i in range(50)),
                   inference("small", demand, minReplicas=3), inference("big", demand, minReplicas=401))
    found = list(conflicts.capacity_conflicts(loaded, RULES))
    assert [(c.models, c.capacity) for c in found] == [(("big",), (400, 401))]
    assert len(looked) == 1 + 50 + 50  # small: the first pool holds 8; big: all, and all again to say how many


def test_reading_a_fleet_runs_no_cycle_collection(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Python's cycle collector walked a fleet's new documents again and again as they grew, a third
    of the time of reading 156,000 Location documents (71 collections for these 2,000). It is
    off while a fleet loads, and on again after (one collection then), whether the fleet loaded or not."""
    import gc

    import pytest

    from placer.fleet import load_fleet
    from placer.spec import FleetError

    (tmp_path / "locations.yaml").write_text(_locations(2000))
    runs: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            runs.append(info["generation"])

    gc.callbacks.append(count)
    try:
        assert len(load_fleet(tmp_path).locations) == 2000
        assert len(runs) <= 1 and gc.isenabled()
        runs.clear()
        (tmp_path / "broken.yaml").write_text("kind: [\n")
        with pytest.raises(FleetError):
            load_fleet(tmp_path)
        assert len(runs) <= 1 and gc.isenabled()
    finally:
        gc.callbacks.remove(count)
