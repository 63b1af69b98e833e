"""`placer schema` against `placer validate`: an editor's verdict on a fleet document is the loader's.

The differential below mutates valid documents (examples, the valid corpus, a bench fleet) every
way a hand-edited file goes wrong and checks each with the JSON Schema, as an editor does, and
with the loader, as validate does. Where they disagree, an editor either calls a broken file fine
or flags a good one.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from bench.generate import generate
from placer.fleet import build_fleet
from placer.schema import fleet_schema
from placer.spec import load_document
from placer.spec.source import _NoAliasLoader, parse_text

ROOT = Path(__file__).resolve().parents[1]


class EditorYaml(_NoAliasLoader):
    """YAML as yaml-language-server reads it: YAML 1.2's core schema, as the fleet loader, but dates stay text."""


EditorYaml.yaml_implicit_resolvers = {k: [(tag, rx) for tag, rx in v if not tag.endswith("timestamp")]
                                      for k, v in _NoAliasLoader.yaml_implicit_resolvers.items()}

# an editor checks formats (lastUsed: a date)
SCHEMA = fleet_schema()
EDITOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
# the variant of one kind alone: the kinds differ, so a document passes the schema's oneOf where it passes
# its kind's variant, seven times faster to find
BY_KIND = {v["properties"]["kind"]["const"]: jsonschema.Draft202012Validator(
    {**v, "$defs": SCHEMA["$defs"]}, format_checker=jsonschema.FormatChecker()) for v in SCHEMA["oneOf"]}

# what validate refuses and no JSON Schema can say, each documented in placer/schema.py: an integer
# written 8.0 (JSON Schema's integer is any whole number), min > max, two demand entries for one place
BEYOND_SCHEMA = ("without the decimal point", "whole number without", "is greater than", "second demand entry")


def fleet_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted([*(ROOT / "examples").rglob("*.yaml"), *(ROOT / "tests" / "data" / "valid").rglob("*.yaml")]):
        if "clusters" not in path.parts and not path.name.startswith(".") and not path.name.endswith(".test.yaml"):
            docs += [d for d in yaml.load_all(path.read_text(), EditorYaml) if isinstance(d, dict)
                     and str(d.get("apiVersion", "")).startswith("placer.dev")]
    return docs


def validate_errors(doc: dict[str, Any]) -> list[str]:
    """validate's errors about one document, its references to other documents aside."""
    raws, diags = parse_text(json.dumps(doc, ensure_ascii=False) + "\n", "d.yaml")  # JSON is YAML, all text quoted
    loaded, more = load_document(raws[0])
    errors = [d.message for d in [*diags, *more] if d.severity == "error"]
    if errors or loaded is None:
        return errors or ["not loaded"]
    # every text of the document names a document that exists but is broken: no reference is an error
    words = {w for _, v in _walk(doc) for w in ([v] if isinstance(v, str) else v if isinstance(v, dict) else [])}
    others = [(kind, w) for w in words if isinstance(w, str) for kind in ("Location", "GPUType", "Model", "Pool")]
    _, more = build_fleet([loaded], others)
    return [d.message for d in more if d.severity == "error" and "largest node" not in d.message]


def _walk(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield at, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from _walk(item, (*at, key))


GONE = object()
ODD_VALUES = ("x", "", 7, -1, 0, 2.5, 1e13, 10**7, 1e308, True, None, [], {}, ["x"], "ünïcødé", "UPPER", "a" * 300)


def _with(doc: dict[str, Any], at: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    parent = out
    for key in at[:-1]:
        parent = parent[key]
    if not at:
        out.update(value)
    elif value is GONE:
        del parent[at[-1]]
    else:
        parent[at[-1]] = value
    return out


def mutations(doc: dict[str, Any]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Where and what to change in ``doc`` to make it go wrong: each field missing, of every wrong type,
    out of range, a name in unicode, an extra field, a list emptied or doubled; and the combinations a
    workload, provider or enforcement asks of the other fields."""
    for at, value in _walk(doc):
        if not at:
            continue
        if isinstance(at[-1], str):
            yield at, GONE
        for odd in ODD_VALUES:
            yield at, odd
        if isinstance(value, dict):
            yield at, {**value, "bogusField": 1}
        if isinstance(value, list) and value:
            yield at, value + value[:1]
        if isinstance(value, int | float) and not isinstance(value, bool):
            yield at, -value
            yield at, float(value)
    yield (), {"extra": 1}
    spec = doc.get("spec") or {}
    choices = {"Model": [(("spec", "workload"), w) for w in ("inference", "training", "batch")],
               "Pool": [(("spec", "provider"), p) for p in ("aws", "gcp", "static", "kubernetes")],
               "Policy": [(("spec", "enforcement"), e) for e in ("preferred", "required")]
               + [(("spec", "rule"), {"preferPools": {}})]
               + [(("spec", side), {**spec.get(side, {}), field: v}) for side in ("models", "pools")
                  for field, v in (("environment", "cloud"), ("workload", "batch"), ("spot", True))]}
    yield from choices.get(doc.get("kind", ""), [])


def test_the_schema_and_validate_agree_on_every_document():
    """The schema said fine to 1,949 of 56,006 such documents validate refused (a name in capitals or
    unicode, a namespace, image or version no API takes, nodes with both count and max, an aws pool
    without target.aws, a preferred policy without its penalty, a spread rule without parameters, ...)
    and refused a Settings document with an empty spec and `version: true`, both of which validate takes."""
    bases: dict[str, dict[str, Any]] = {}
    for doc in [*fleet_documents(), *generate(12, 8, seed=0)]:  # one of each shape
        bases.setdefault(json.dumps([doc.get("kind"), [at for at, _ in _walk(doc)]], default=str), doc)
    edits = [(b, at, value) for b in bases.values() for at, value in [((), {}), *mutations(b)]]
    rng = random.Random(20261128)
    tried = [_with(*edit) for edit in rng.sample(edits, 3000)]
    disagree, beyond, refused = [], 0, 0
    for doc in tried:
        errors = validate_errors(doc)
        editor = [e.message for e in BY_KIND.get(str(doc.get("kind")), EDITOR).iter_errors(doc)]
        refused += bool(errors)
        if errors and not editor and all(any(b in e for b in BEYOND_SCHEMA) for e in errors):
            beyond += 1
        elif bool(errors) != bool(editor):
            disagree.append((doc.get("kind"), errors[:1] or editor[:1], json.dumps(doc)[:300]))
    assert len(edits) > 30_000 and 500 < refused < 2900  # good documents and broken ones alike
    assert not disagree, (len(disagree), disagree[:5])
    assert beyond < 40


def test_the_schema_accepts_what_validate_accepts():
    """An editor flagged `names: chat` (one value for a list), `version: 1.10` (a number in YAML, kept as
    the text 1.10 by placer) and a Settings document with an empty spec, all of which `placer validate` takes."""
    docs = [yaml.load(text, EditorYaml) for text in (
        "apiVersion: placer.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\n"
        "spec: {models: {names: chat}, pools: {jurisdiction: EU, gpuType: L4-24GB}, rule: {allowPools: {}}}\n",
        "apiVersion: placer.dev/v1alpha1\nkind: Model\nmetadata: {name: m}\nspec: {version: 1.10, workload: batch,"
        " replicas: 1, replica: {gpus: 1, memoryGiBPerGpu: 1}}\n",
        "apiVersion: placer.dev/v1alpha1\nkind: Settings\nmetadata: {name: s}\nspec:\n")]
    docs += fleet_documents()
    assert len(docs) > 50
    for doc in docs:
        errors = [e.message for e in EDITOR.iter_errors(doc)]
        assert not errors, (doc["kind"], doc["metadata"]["name"], errors[:3])


def test_the_schema_flags_a_label_jurisdiction_or_failure_domain_validate_refuses():
    """Labels, jurisdictions and failure domains are what Kubernetes takes as a label's text: the schema
    said fine to a jurisdiction US with a Cyrillic S, and to a label value `@octo-org/admins`."""
    docs = [yaml.load(text, EditorYaml) for text in (
        "apiVersion: placer.dev/v1alpha1\nkind: Location\nmetadata: {name: us}\n"
        "spec: {environment: cloud, jurisdiction: \"U\\u0405\"}\n",
        "apiVersion: placer.dev/v1alpha1\nkind: Location\nmetadata: {name: us, labels: {team: \"@octo-org/admins\"}}\n"
        "spec: {environment: cloud}\n",
        "apiVersion: placer.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\n"
        "spec: {models: {labels: {\"a b\": x}}, pools: {jurisdiction: [\"E U\"]}, rule: {allowPools: {}}}\n",
        "apiVersion: placer.dev/v1alpha1\nkind: Pool\nmetadata: {name: p}\nspec: {location: a, provider: static, "
        "gpu: {type: L4-24GB, perNode: 1}, nodes: {count: 1}, usdPerGpuHour: 1, failureDomain: \"rack 1\"}\n")]
    for doc in docs:
        assert validate_errors(doc), doc
        assert list(EDITOR.iter_errors(doc)), doc
