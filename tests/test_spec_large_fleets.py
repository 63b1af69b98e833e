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
