"""placer.spec.source's two routes read every text alike: libyaml's C parser (fast: validate at L
spent 70% of its time in PyYAML's pure-Python scanner) and the pure-Python loader, whose messages
users see and which reads whatever libyaml does not read cleanly, or may read differently."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.generate import size_docs, write_fleet
from placer.spec import source
from placer.spec.source import RawDocument, parse_text, read_fleet_dir

REPO = Path(__file__).resolve().parent.parent
YAML_FILES = sorted(p for root in ("examples", "tests/data", "policies") for p in (REPO / root).rglob("*.y*ml"))
needs_libyaml = pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML without libyaml: one route only")


def pure(text: str, path: str = "f.yaml") -> tuple[str, list[str]]:
    """``text`` as the pure-Python loader reads it, comparable (1 and 1.0 and True apart)."""
    docs, diags = source._read_pure(text, path)
    return seen(docs), [str(d) for d in diags]


def read(text: str, path: str = "f.yaml") -> tuple[str, list[str]]:
    docs, diags = parse_text(text, path)
    return seen(docs), [str(d) for d in diags]


def seen(docs: list[RawDocument]) -> str:
    return repr([(d.path, d.line, d.data, sorted(d.lines.items(), key=repr)) for d in docs])


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fleet(size_docs("S", 0), tmp_path_factory.mktemp("fleet-s"))


class NotPure:
    def __init__(self, *_args: Any) -> None:
        raise AssertionError("read by the pure-Python loader, where libyaml reads it")


@needs_libyaml
def test_a_valid_fleet_is_read_by_libyaml(generated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pure-Python scanner took 8-11 s of every command at L; libyaml reads the same in 0.5 s."""
    monkeypatch.setattr(source, "_NoAliasLoader", NotPure)
    for fleet in (generated, REPO / "examples" / "hybrid"):
        docs, diags = read_fleet_dir(fleet)
        assert diags == [] and docs


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_both_routes_read_every_committed_fleet_file_alike(path: Path) -> None:
    text = path.read_bytes().decode("utf-8", errors="replace")
    assert read(text, str(path)) == pure(text, str(path))


def test_both_routes_read_a_generated_fleet_alike(generated: Path) -> None:
    for path in sorted(generated.rglob("*.yaml")):
        text = path.read_text()
        assert read(text, str(path)) == pure(text, str(path))


@pytest.mark.parametrize(("text", "data", "message"), [
    ("kind: Location\nmetadata: {name: e?dge1}\n", None, "f.yaml:2: invalid YAML: while parsing a flow mapping: "
     "expected ',' or '}', but got '?'"),  # libyaml: the name 'e?dge1'
    ("a: !\nb: 1\n", {"a": None, "b": 1}, None),  # libyaml: ''
    ("a: |2#\n  x\n", None, "f.yaml:1: invalid YAML: while scanning a block scalar: expected chomping or "
     "indentation indicators, but found '#'"),  # libyaml: 'x\n'
    ("a: 1\n---", None, None),  # libyaml: the empty document on line 3, a line past the file
    ("a: 1\n\ufeffb: 2\n", {"a": 1, "\ufeffb": 2}, None),  # libyaml skips the BOM
    ("\ufeffa: 1\n", {"a": 1}, None),  # a BOM at the start: both skip it
    ("a: &x 1\nb: *x\n", None, "f.yaml:2: invalid YAML: " + source.ALIAS_MESSAGE),  # libyaml: shared, b: 1
    ("a:\t1.0\n", None, "f.yaml:1: invalid YAML: a tab character at column 3: use spaces between and after "
     "values, never tabs"),  # libyaml: a: 1.0
])
def test_what_libyaml_reads_otherwise_is_read_as_the_pure_loader_reads_it(text: str, data: object,
                                                                          message: str | None) -> None:
    got = read(text)
    assert got == pure(text)
    docs, diags = parse_text(text, "f.yaml")
    if data is not None:
        assert docs[0].data == data
    assert [str(d) for d in diags] == ([message] if message else [])


@needs_libyaml
def test_duplicate_keys_and_too_many_documents_are_reported_by_libyaml(monkeypatch: pytest.MonkeyPatch) -> None:
    """A duplicate key, a key that is a list and a document past MAX_DOCUMENTS are said by the libyaml route,
    in the pure loader's words and at its lines; each sent the file to the pure loader, and a 1 MB file
    with one duplicate key took 13.8 s (2.8 s clean), one of 200,000 duplicate keys over a minute."""
    monkeypatch.setattr(source, "MAX_DOCUMENTS", 3)
    text = ("a: 1\nb:\n  c: 1\n  c: 2\n[x, y]: 2\n---\napiVersion: v\nkind: K\napiVersion: v\n"
            "---\nk: 1\n---\nk: 2\n---\nk: 3\n")
    expected = pure(text)
    assert expected[1] == ["f.yaml:4: duplicate key 'c', first at line 3: keep one of the two",
                           "f.yaml:5: mapping keys must be plain scalars",
                           "f.yaml:9: duplicate key 'apiVersion', first at line 7: keep one of the two; or, where a "
                           "new document starts here, put a line --- before it",
                           "f.yaml:13: more than 3 documents"]
    monkeypatch.setattr(source, "_NoAliasLoader", NotPure)
    assert read(text) == expected


def test_a_broken_fleet_is_reported_in_the_pure_loaders_words_at_its_lines() -> None:
    """Anything libyaml stops on (a syntax error, a merge key, nesting too deep) is read again by the
    pure-Python loader: its documents before the error, its message, its line; what it reports itself
    (a duplicate key) is what the pure loader reports."""
    for text in ("a: 1\n---\nb: [\n", "a: 1\nb:\n  c: 1\n  c: 2\n", "a: 1\n? [x, y]\n: 2\n",
                 "a: " + "[" * 40 + "]" * 40 + "\n", "a: 1\nb: 'x\nc: 2\n", "a: [1,\n\n\n", "<<: {a: 1}\n"):
        assert read(text) == pure(text)
        assert read(text)[1], text


TOKENS = ["a", "k1", ":", ": ", "- ", "-", "\n", "\n  ", " ", "'", '"', "[", "]", "{", "}", ",", "#", " #c", "?",
          "? ", "!", "!!str ", "!x ", "|", "|-", ">", ">+", "|2", "---", "\n---\n", "\n...\n", "%YAML 1.2\n",
          "\\", "\\x41", "\\/", "010", "0o7", "0x1F", "1e6", "1.5", ".inf", "~", "null", "true", "yes", "NO",
          "2026-01-15", "2026-13-45", "1:30", "3_000", "<<", "é", "\r\n", "\r", "@", "`", "%", "*", "\u00a0",
          "\U0001F600", "version", "'x''y'", "\n- ", "{a: 1}", "\ufeff", "\t", "&a ", "*a", "\x85", "\u2028", "\x07"]


def test_both_routes_read_mutated_fleet_text_alike() -> None:
    """Fleet files with a few tokens inserted, deleted or replaced, valid or not (seeded): what parse_text
    says is what the pure-Python loader says, documents, lines and messages."""
    seeds = [p.read_bytes().decode("utf-8", errors="replace") for p in YAML_FILES if p.stat().st_size < 20_000]
    rng = random.Random(20261130)
    for _ in range(1500):
        lines = rng.choice(seeds).splitlines(keepends=True)
        start = rng.randrange(len(lines))
        text = "".join(lines[start:start + rng.randint(1, 25)])
        for _ in range(rng.randint(1, 4)):
            at, how = rng.randrange(len(text) + 1), rng.random()
            cut = 0 if how < 0.5 else rng.randint(1, 5)
            text = text[:at] + (rng.choice(TOKENS) if how < 0.5 or how > 0.8 else "") + text[at + cut:]
        assert read(text) == pure(text), repr(text)


def test_without_libyaml_the_pure_loader_reads_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml.cyaml", None)  # import yaml.cyaml: ImportError
    assert source._c_loader() is None
    monkeypatch.setattr(source, "_CLoader", None)
    docs, diags = parse_text("a: 010\nb: yes\nc: 1e6\n", "f.yaml")
    assert diags == [] and docs[0].data == {"a": 10, "b": "yes", "c": 1e6}
