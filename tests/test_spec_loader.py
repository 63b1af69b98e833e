"""Unit tests of the fleet format's reading layers: placer.spec.source (YAML with positions),
placer.spec.loader (envelope and spec, located diagnostics, did-you-mean) and Diagnostic."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from pathlib import Path

import pytest

from placer.spec import Diagnostic, FleetError, load_document, loader, read_fleet_dir
from placer.spec.diagnostics import MOST_PER_FILE, sort_diagnostics
from placer.spec.kinds import API_VERSION, KINDS, PoolSpec
from placer.spec.loader import check_name, suggest
from placer.spec.source import RawDocument, parse_text

REPO = Path(__file__).resolve().parent.parent
BASE = REPO / "tests" / "data" / "valid" / "base" / "fleet.yaml"

POOL = """\
apiVersion: placer.dev/v1alpha1
kind: Pool
metadata:
  name: dc1-l4
  labels: {tier: gold}
spec:
  location: dc1
  provider: kubernetes
  gpu:
    type: L4-24GB
    perNode: 4
  nodes: {count: 1}
  usdPerGpuHour: 0.5
  target:
    kubernetes:
      tolerations:
      - key: a
        operator: Exists
      - key: b
        effect: NoSchedule
"""


def one(text: str, path: str = "f.yaml") -> RawDocument:
    docs, diags = parse_text(text, path)
    assert diags == []
    assert len(docs) == 1
    return docs[0]


def load(text: str) -> tuple[object, list[str]]:
    doc, diags = load_document(one(text))
    return doc, [str(d) for d in diags]


# ---------------------------------------------------------------- source: positions


def test_every_key_and_item_has_its_line() -> None:
    raw = one(POOL)
    assert raw.line == 1
    assert raw.lines[("metadata", "name")] == 4
    assert raw.lines[("metadata", "labels", "tier")] == 5
    assert raw.lines[("spec", "gpu", "perNode")] == 11
    assert raw.lines[("spec", "nodes", "count")] == 12
    assert raw.lines[("spec", "target", "kubernetes", "tolerations", 0)] == 17
    assert raw.lines[("spec", "target", "kubernetes", "tolerations", 1, "effect")] == 20


def test_line_of_falls_back_to_the_deepest_known_prefix() -> None:
    raw = one(POOL)
    assert raw.line_of(("spec", "gpu", "perNode")) == 11
    assert raw.line_of(("spec", "gpu", "memory")) == 9  # missing key: its parent's line
    assert raw.line_of(("spec", "failureDomain")) == 6
    assert raw.line_of(("nothing", "here")) == 1  # nothing known: the document's first line
    assert raw.line_of(()) == 1


def test_documents_of_one_file_have_their_own_lines() -> None:
    text = "# comment\na: 1\n---\n\n# another\nb:\n  c: 2\n---\n---\nd: [x,\n  y]\n"
    docs, diags = parse_text(text, "multi.yaml")
    assert diags == []
    docs = [d for d in docs if d.data is not None]  # the empty document between two ---
    assert [d.data for d in docs] == [{"a": 1}, {"b": {"c": 2}}, {"d": ["x", "y"]}]
    assert [d.line for d in docs] == [2, 6, 10]
    assert docs[1].lines[("b", "c")] == 7
    assert docs[2].lines[("d", 1)] == 11
    assert all(d.path == "multi.yaml" for d in docs)


def test_base_fleet_documents_start_on_their_apiversion_lines() -> None:
    docs, diags = read_fleet_dir(BASE)
    assert diags == []
    assert [d.line for d in docs] == [3, 11, 19, 28, 39, 52]
    assert docs[-1].lines[("spec", "demand", 1)] == 62


def test_duplicate_keys_are_reported_at_the_second() -> None:
    docs, diags = parse_text("a: 1\nb:\n  c: 1\n  c: 2\n", "dup.yaml")
    assert [str(d) for d in diags] == ["dup.yaml:4: duplicate key 'c', first at line 3: keep one of the two"]
    assert docs[0].data == {"a": 1, "b": {"c": 2}}


def test_a_document_without_its_separator_is_said_to_want_one() -> None:
    """Two documents without the '---' between them were one, and the message said only
    "duplicate key 'apiVersion'": neither where the first was nor that a '---' was missing."""
    doc = "apiVersion: placer.dev/v1alpha1\nkind: Location\nmetadata: {name: a}\nspec: {environment: onprem}\n"
    _, diags = parse_text(doc + doc.replace("name: a", "name: b"), "two.yaml")
    assert [str(d) for d in diags][:2] == [
        "two.yaml:5: duplicate key 'apiVersion', first at line 1: keep one of the two; or, where a new document "
        "starts here, put a line --- before it",
        "two.yaml:6: duplicate key 'kind', first at line 2: keep one of the two; or, where a new document starts "
        "here, put a line --- before it"]


def test_the_keys_1_and_true_are_no_duplicates() -> None:
    """YAML's 1 and true are two keys (Python's 1 == True): 'duplicate key True' was said of them."""
    _, diags = parse_text("a: {1: x, true: y}\n", "k.yaml")
    assert diags == []


def test_non_scalar_keys_are_reported() -> None:
    docs, diags = parse_text("a: 1\n? [x, y]\n: 2\n", "k.yaml")
    assert [str(d) for d in diags] == ["k.yaml:2: mapping keys must be plain scalars"]
    assert docs[0].data == {"a": 1}


def test_aliases_are_refused_at_the_alias() -> None:
    docs, diags = parse_text("a: &x 1\nb: 2\nc: *x\n", "al.yaml")
    assert docs == []
    assert len(diags) == 1
    assert diags[0].line == 3
    assert "anchors and aliases" in diags[0].message


def test_a_syntax_error_keeps_the_documents_before_it() -> None:
    docs, diags = parse_text("a: 1\n---\nb: [\n", "s.yaml")
    assert [d.data for d in docs] == [{"a": 1}]
    assert len(diags) == 1 and diags[0].message.startswith("invalid YAML: ")


@pytest.mark.parametrize(("text", "line"), [
    ("a: 1\nb: 'x\nc: 2\n", 2),  # "found unexpected end of stream": was line 4, past the file
    ('a: 1\nb: "x\n---\nc: 3\n', 2),  # "found unexpected document separator": was line 3
    ("a: 1\nb: {c: 1\n", 2),
    ("a: [1,\n\n\n", 1),  # "while parsing a flow node" marks the end itself: was line 4
    ("a: [1,\n---\n", 1),
])
def test_an_unclosed_quote_or_bracket_is_reported_where_it_opened(text: str, line: int) -> None:
    _, diags = parse_text(text, "q.yaml")
    assert [d.line for d in diags] == [line]
    assert diags[0].message.startswith("invalid YAML: while ")


@pytest.mark.parametrize(("text", "line", "message"), [
    ("a:\n  b: 1.0\t\n  c: 2\n", 2, "a tab character at column 9: use spaces between and after values, never tabs"),
    ("a:\t1.0\n", 1, "a tab character at column 3: use spaces between and after values, never tabs"),
    ("a:\n\tb: 1\n", 2, "a tab character where YAML expects spaces: indent with spaces, never tabs"),
    ("a:\n  \tb: 1\n", 2, "a tab character where YAML expects spaces: indent with spaces, never tabs"),
])
def test_a_tab_is_reported_where_it_is(text: str, line: int, message: str) -> None:
    """A tab after a value was told to indent with spaces, and not which column."""
    _, diags = parse_text(text, "t.yaml")
    assert [str(d) for d in diags] == [f"t.yaml:{line}: invalid YAML: {message}"]


def test_scalars_keep_their_yaml_types() -> None:
    raw = one("i: 3\nf: 1.5\nb: true\ns: '3'\nn: null\nd: 2026-01-15\n")
    assert raw.data["i"] == 3 and raw.data["f"] == 1.5 and raw.data["b"] is True
    assert raw.data["s"] == "3" and raw.data["n"] is None
    assert str(raw.data["d"]) == "2026-01-15"


def test_numbers_in_exponent_form_are_numbers() -> None:
    """``rate: 1e6`` is a million, as YAML 1.2 reads it (PyYAML's YAML 1.1 reads it as the text
    '1e6', and the rate was refused as no number); text that only looks like one stays text."""
    raw = one("a: 1e6\nb: 1.5E+3\nc: -2e-3\nd: 1e\ne: e6\nf: 1.0e+6\ng: 12\nversion: 1e6\n")
    assert raw.data == {"a": 1e6, "b": 1500.0, "c": -0.002, "d": "1e", "e": "e6", "f": 1e6, "g": 12,
                        "version": "1e6"}
    assert isinstance(raw.data["g"], int)


@pytest.mark.parametrize(("text", "value"), [
    ("010", 10), ("07", 7), ("08", 8), ("-010", -10), ("0o10", 8), ("0x1F", 31), ("+12", 12),  # 1.1: 8, 7, error, -8
    ("1:30", "1:30"), ("3_000", "3_000"), ("0b101", "0b101"), ("1_0.5", "1_0.5"),  # 1.1: 90, 3000, 5, 10.5
    (".5", 0.5), ("1.", 1.0), ("-.inf", float("-inf")),
    ("yes", "yes"), ("no", "no"), ("NO", "NO"), ("on", "on"), ("off", "off"), ("y", "y"),  # 1.1: booleans
    ("true", True), ("False", False), ("TRUE", True), ("~", None), ("2026-01-15", datetime.date(2026, 1, 15)),
])
def test_scalars_are_read_as_yaml_1_2_reads_them(text: str, value: object) -> None:
    """`count: 010` was octal 8 and `rate: 1:30` the sexagesimal 90, both valid without a word;
    `jurisdiction: NO` (Norway) was false."""
    raw = one(f"a: {text}\n")
    assert raw.data["a"] == value and type(raw.data["a"]) is type(value)


def test_yaml_1_1_booleans_where_a_boolean_belongs_say_to_write_true_or_false() -> None:
    _, diags = load("apiVersion: placer.dev/v1alpha1\nkind: Pool\nmetadata: {name: p}\nspec:\n"
                    "  location: dc1\n  provider: static\n  gpu: {type: L4-24GB, perNode: 2}\n"
                    "  nodes: {count: 1}\n  usdPerGpuHour: 1\n  spot: yes\n")
    assert diags == ["f.yaml:10: Pool/p: spec.spot: Input should be a valid boolean, got 'yes'; write true or false: "
                     "placer reads YAML 1.2, where yes, no, on and off are text"]


def test_a_sexagesimal_rate_is_text_refused_where_it_is() -> None:
    _, diags = load("apiVersion: placer.dev/v1alpha1\nkind: Model\nmetadata: {name: m}\nspec:\n"
                    "  workload: inference\n  replica: {gpus: 1, memoryGiBPerGpu: 1}\n"
                    "  throughput: {L4-24GB: 10}\n  demand:\n    - {location: dc1, rate: 1:30}\n")
    assert diags == ["f.yaml:9: Model/m: spec.demand[0].rate: Input should be a valid number, got '1:30'"]


# ---------------------------------------------------------------- source: directories


def test_read_fleet_dir_walks_in_sorted_path_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "a.yml").write_text("n: 1\n")
    (tmp_path / "b" / "z.yaml").write_text("n: 2\n")
    (tmp_path / "b" / "a.yaml").write_text("n: 3\n")
    (tmp_path / "c.yaml").write_text("n: 4\n")
    (tmp_path / ".hidden.yaml").write_text("n: 5\n")
    (tmp_path / "notes.txt").write_text("n: 6\n")
    docs, diags = read_fleet_dir(tmp_path)
    assert diags == []
    assert [d.data["n"] for d in docs] == [1, 3, 2, 4]
    assert docs[0].path == str(tmp_path / "a.yml")


def test_read_fleet_dir_accepts_a_single_file() -> None:
    docs, diags = read_fleet_dir(BASE)
    assert diags == [] and len(docs) == 6
    assert docs[0].path == str(BASE)


def test_read_fleet_dir_missing_path(tmp_path: Path) -> None:
    _, diags = read_fleet_dir(tmp_path / "nope")
    assert [str(d) for d in diags] == [f"{tmp_path / 'nope'}:0: no such file or directory"]


# ---------------------------------------------------------------- suggest (did you mean)


@pytest.mark.parametrize(
    ("word", "choices", "hint"),
    [
        ("perNodes", ["type", "perNode"], "perNode"),
        ("Pol", KINDS, "Pool"),
        ("Polcy", KINDS, "Policy"),
        ("pool", KINDS, "Pool"),
        ("LOCATION", KINDS, "Location"),  # too far for difflib: the case-insensitive fallback
        ("settings", KINDS, "Settings"),
        ("latencySloMS", ["location", "rate", "latencySloMs"], "latencySloMs"),
        ("H100", ["H100-80GB", "A100-80GB", "T4-16GB"], "H100-80GB"),
    ],
)
def test_suggest_finds_the_closest(word: str, choices: list[str], hint: str) -> None:
    assert suggest(word, choices) == f"; did you mean {hint!r}?"


@pytest.mark.parametrize(("word", "choices"), [("xyz", KINDS), ("anything", []), ("gpu", ["location", "rate"])])
def test_suggest_stays_quiet_when_nothing_is_close(word: str, choices: list[str]) -> None:
    assert suggest(word, choices) == ""


def test_suggest_takes_any_iterable_of_names() -> None:
    assert suggest("dc01", {"dc1": object(), "cloud-eu": object()}) == "; did you mean 'dc1'?"
    assert suggest("dc01", (n for n in ["dc1"])) == "; did you mean 'dc1'?"


# ---------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["dc1", "a", "eu-west-1", "x" * 63, "0abc"])
def test_valid_dns_names(name: str) -> None:
    assert check_name("Location", name) is None


@pytest.mark.parametrize("name", ["Upper", "under_score", "-lead", "trail-", "x" * 64, "dot.ted", "", None, 3])
def test_invalid_dns_names(name: object) -> None:
    assert check_name("Pool", name) is not None


@pytest.mark.parametrize("name", ["H100-80GB", "Jetson-Thor-128GB", "A10G_24GB", "MI300X.v2"])
def test_gpu_type_names_are_product_names(name: str) -> None:
    assert check_name("GPUType", name) is None
    assert check_name("Pool", name) is not None


# ---------------------------------------------------------------- loader


def test_valid_document_is_typed() -> None:
    doc, diags = load(POOL)
    assert diags == []
    assert doc.kind == "Pool" and doc.name == "dc1-l4" and doc.labels == {"tier": "gold"}
    assert isinstance(doc.spec, PoolSpec)
    assert doc.spec.gpu.per_node == 4 and doc.spec.nodes.count == 1
    assert doc.spec.target.kubernetes.tolerations[1].effect == "NoSchedule"
    assert doc.line_of("spec", "gpu", "perNode") == 11
    d = doc.diag("spec.gpu.perNode", "too many", "spec", "gpu", "perNode", severity="warning")
    assert str(d) == "f.yaml:11: Pool/dc1-l4: spec.gpu.perNode: warning: too many"


def test_nested_errors_are_located_on_their_own_lines() -> None:
    text = POOL.replace("    perNode: 4", "    perNode: 0").replace("        effect: NoSchedule", "        efect: x")
    doc, diags = load(text)
    assert doc is None
    assert diags == [
        "f.yaml:11: Pool/dc1-l4: spec.gpu.perNode: Input should be greater than or equal to 1",
        "f.yaml:20: Pool/dc1-l4: spec.target.kubernetes.tolerations[1].efect: unknown field; "
        "did you mean 'effect'?",
    ]


def test_missing_nested_field_is_located_at_its_parent() -> None:
    doc, diags = load(POOL.replace("    perNode: 4\n", ""))
    assert doc is None
    assert diags == ["f.yaml:9: Pool/dc1-l4: spec.gpu.perNode: required field is missing"]


def test_unknown_field_without_a_close_name_lists_the_fields() -> None:
    _, diags = load("apiVersion: placer.dev/v1alpha1\nkind: GPUType\nmetadata: {name: X1}\n"
                    "spec:\n  memoryGiB: 10\n  colour: red\n")
    assert diags == ["f.yaml:6: GPUType/X1: spec.colour: unknown field; known fields: memoryGiB, vendor, family"]


def test_unknown_rule_lists_the_rules() -> None:
    _, diags = load("apiVersion: placer.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\n"
                    "spec:\n  rule:\n    budgett: {maxUsdPerHour: 5}\n")
    assert len(diags) == 1
    assert diags[0].startswith("f.yaml:6: Policy/p: spec.rule.budgett: unknown rule 'budgett'; "
                               "did you mean 'budget'?; rules are: allowPools, ")


def test_type_errors_name_the_value() -> None:
    _, diags = load("apiVersion: placer.dev/v1alpha1\nkind: Location\nmetadata: {name: a}\n"
                    "spec:\n  environment: onprem\n  localLatencyMs: fast\n")
    assert diags == ["f.yaml:6: Location/a: spec.localLatencyMs: Input should be a valid number, got 'fast'"]


def test_strict_types_refuse_numbers_as_strings_and_floats_as_ints() -> None:
    _, diags = load("apiVersion: placer.dev/v1alpha1\nkind: Pool\nmetadata: {name: p}\nspec:\n"
                    "  location: dc1\n  provider: static\n  gpu: {type: L4-24GB, perNode: 2.5}\n"
                    "  nodes: {count: '2'}\n  usdPerGpuHour: 1\n")
    assert diags == [
        "f.yaml:7: Pool/p: spec.gpu.perNode: Input should be a valid integer, got 2.5",
        "f.yaml:8: Pool/p: spec.nodes.count: Input should be a valid integer, got '2'",
    ]


def test_a_number_where_text_belongs_says_to_quote_it() -> None:
    _, diags = load("apiVersion: placer.dev/v1alpha1\nkind: Location\nmetadata:\n  name: a\n"
                    "  labels: {rack: 12, build: 1e6, name: x}\nspec:\n  environment: onprem\n")
    hint = "put it in quotes: YAML reads unquoted 12, 1e6, true or 2026-01-01 as a number, a boolean or a date"
    assert diags == [f"f.yaml:5: Location/a: metadata.labels.rack: Input should be a valid string, got 12; {hint}",
                     f"f.yaml:5: Location/a: metadata.labels.build: Input should be a valid string, got 1000000.0; "
                     f"{hint}"]


def test_a_key_yaml_reads_as_a_boolean_or_number_is_named_as_written() -> None:
    """It was `metadata.labels[1].[key]` for the key true (pydantic writes it as 1), as if a list."""
    _, diags = load("apiVersion: placer.dev/v1alpha1\nkind: Location\nmetadata:\n  name: a\n"
                    "  labels: {true: x, 12: y, on: off}\nspec:\n  environment: onprem\n")
    hint = "put it in quotes: YAML reads unquoted 12, 1e6, true or 2026-01-01 as a number, a boolean or a date"
    assert diags == [f"f.yaml:5: Location/a: metadata.labels.true: a key must be text, got true; {hint}",
                     f"f.yaml:5: Location/a: metadata.labels.12: a key must be text, got 12; {hint}"]


def test_a_field_key_that_is_not_text_is_named_as_written_and_said_how_to_mend() -> None:
    """A key of a document's fields (not of labels) that YAML reads as a number, null or date was
    `spec[2]: Keys should be strings`, `spec.None`, `spec.datetime.date(2026, 1, 1)`: Python's words."""
    _, diags = load("apiVersion: placer.dev/v1alpha1\nkind: Location\nmetadata:\n  name: a\n"
                    "  labels: {~: x}\nspec:\n  environment: onprem\n  2: x\n  null: y\n  2026-01-01: z\n")
    hint = "put it in quotes: YAML reads unquoted 12, 1e6, true or 2026-01-01 as a number, a boolean or a date"
    assert diags == ["f.yaml:5: Location/a: metadata.labels.null: a key must be text, got null",
                     f"f.yaml:8: Location/a: spec.2: a key must be text, got 2; {hint}",
                     "f.yaml:9: Location/a: spec.null: a key must be text, got null",
                     f"f.yaml:10: Location/a: spec.2026-01-01: a key must be text, got 2026-01-01; {hint}"]


@pytest.mark.parametrize(("kind", "spec", "line"), [
    ("Pool", "  provider: kubernets\n", "spec.provider: Input should be 'kubernetes', 'aws', 'gcp' or 'static', "
     "got 'kubernets'; did you mean 'kubernetes'?"),
    ("Policy", "  enforcement: requried\n  rule: {allowPools: {}}\n", "spec.enforcement: Input should be 'required' "
     "or 'preferred', got 'requried'; did you mean 'required'?"),
    ("Policy", "  pools: {environment: [on-prem]}\n  rule: {allowPools: {}}\n", "spec.pools.environment[0]: Input "
     "should be 'onprem', 'cloud' or 'edge', got 'on-prem'; did you mean 'onprem'?"),
])
def test_a_misspelt_enum_value_gets_a_did_you_mean(kind: str, spec: str, line: str) -> None:
    """Misspelt fields, kinds and rules had one; misspelt values of a closed list did not."""
    _, diags = load(f"apiVersion: placer.dev/v1alpha1\nkind: {kind}\nmetadata: {{name: x}}\nspec:\n{spec}")
    assert [d for d in diags if "did you mean" in d] == [f"f.yaml:5: {kind}/x: {line}"]


def test_envelope_errors() -> None:
    _, diags = load("kind: Locaton\nmetadata: {name: a}\nspec: {}\n")
    assert diags == [
        "f.yaml:1: Locaton/a: apiVersion: required field is missing; use placer.dev/v1alpha1",
        "f.yaml:1: Locaton/a: kind: unknown kind 'Locaton'; did you mean 'Location'?; kinds are "
        + ", ".join(KINDS),
    ]


def test_spec_must_be_a_mapping() -> None:
    _, diags = load(f"apiVersion: {API_VERSION}\nkind: Location\nmetadata: {{name: a}}\nspec: [onprem]\n")
    assert diags == ["f.yaml:4: Location/a: spec: must be a mapping, got a list"]


def test_a_value_of_the_wrong_kind_is_named_in_yaml_words() -> None:
    """`pools: null` said "got NoneType", `spec: 3` "got int": Python's words, not the file's."""
    _, diags = load(f"apiVersion: {API_VERSION}\nkind: Policy\nmetadata: {{name: p, labels: null}}\nspec:\n"
                    "  pools: null\n  models: 3\n  rule: null\n")
    assert diags == [
        "f.yaml:3: Policy/p: metadata.labels: must be a mapping (key: value), got null",
        "f.yaml:6: Policy/p: spec.models: must be a mapping (a selector: names, labels, workload), got 3",
        "f.yaml:5: Policy/p: spec.pools: must be a mapping (a selector: names, labels, jurisdiction, ...), got null",
        "f.yaml:7: Policy/p: spec.rule: must be a mapping with exactly one rule, e.g. {allowPools: {}}, got null"]
    _, diags = load(f"apiVersion: {API_VERSION}\nkind: Location\nmetadata: {{name: a}}\nspec: true\n")
    assert diags == ["f.yaml:4: Location/a: spec: must be a mapping, got true"]


@pytest.mark.parametrize(("rule", "example"), [
    ("spread", "spread: {minFailureDomains: 2}"),
    ("separateWorkloads", "separateWorkloads: [training, inference]"),
    ("maxSpotFraction", "maxSpotFraction: 0.5"),
    ("budget", "budget: {maxUsdPerHour: 100}"),
    ("headroom", "headroom: {fraction: 0.2}"),
    ("maxModelsPerPool", "maxModelsPerPool: 4"),
    ("retire", "retire: {unusedForDays: 30}"),
])
def test_a_rule_without_its_parameters_is_named_with_how_to_write_it(rule: str, example: str) -> None:
    """`spread:` alone (null) was read as no rule at all, and validate and plan ended in 'internal
    error (AssertionError: validated Rule has no rule set)'. (`allowPools:` alone is `allowPools: {}`.)"""
    _, diags = load(f"apiVersion: {API_VERSION}\nkind: Policy\nmetadata: {{name: p}}\nspec:\n  rule:\n    {rule}:\n")
    assert diags == [f"f.yaml:6: Policy/p: spec.rule.{rule}: is empty (null): give the rule its parameters, e.g. {example}"]
    doc, diags = load(f"apiVersion: {API_VERSION}\nkind: Policy\nmetadata: {{name: p}}\nspec:\n  rule: {{denyPools: }}\n")
    assert diags == [] and doc is not None


def test_cloud_group_names_are_what_their_apis_accept() -> None:
    """An EKS node group "g6_12xlarge.big" or a MIG "Infer_A" passed validate and was refused by the
    cloud at `terraform apply`."""
    def pool(target: str) -> list[str]:
        return load(f"apiVersion: {API_VERSION}\nkind: Pool\nmetadata: {{name: p}}\nspec:\n  location: x\n"
                    f"  provider: aws\n  gpu: {{type: L4-24GB, perNode: 1}}\n  nodes: {{min: 0, max: 2}}\n"
                    f"  usdPerGpuHour: 1\n  target: {target}\n")[1]

    assert pool("{aws: {region: eu-west-1, eks: {cluster: ml-eu, nodegroup: g6_12xlarge-big}}}") == []
    [said] = pool("{aws: {region: eu-west-1, eks: {cluster: ml-eu, nodegroup: g6_12xlarge.big}}}")
    assert "spec.target.aws.eks.nodegroup" in said and "'g6_12xlarge.big' is no EKS node group name" in said
    [said] = pool("{aws: {region: eu-west-1, eks: {cluster: -ml, nodegroup: a}}}")
    assert "'-ml' is no EKS cluster name" in said
    assert pool("{gcp: {project: acme, zone: us-central1-a, instanceGroupManager: infer-a1}}") == []
    for bad in ("Infer_A", "infer-", "1infer", "a" * 64):
        [said] = pool(f"{{gcp: {{project: acme, zone: us-central1-a, instanceGroupManager: {bad}}}}}")
        assert f"'{bad}' is no managed instance group name" in said, said


def test_a_gcp_project_is_a_project_id() -> None:
    """Any text passed as target.gcp.project: it went into the tfvars Terraform reads, the Compute API's
    URLs and the gcloud commands placer's errors print to be pasted (`--project proj | x ../../x`), and
    GCP refused it only at apply time."""
    def pool(project: str) -> list[str]:
        return load(f"apiVersion: {API_VERSION}\nkind: Pool\nmetadata: {{name: p}}\nspec:\n  location: x\n"
                    f"  provider: gcp\n  gpu: {{type: L4-24GB, perNode: 1}}\n  nodes: {{min: 0, max: 2}}\n"
                    f"  usdPerGpuHour: 1\n  target: {{gcp: {{project: {project!r}, zone: us-central1-a, "
                    "instanceGroupManager: g}}\n")[1]

    # a project's number too: the Compute API, gcloud and Terraform take it for the ID (it was refused, and
    # `discover gcp --project NUMBER` skipped every pool it found)
    for good in ("acme-ml-prod", "acme", "example.com:ml-prod", "123456789012"):
        assert pool(good) == [], good
    for bad in ("proj | `x` @octo ../../x", "acme;rm -rf ~", "acme/zones/x", "Acme-ML", "1acme", "acme-", "ac\u0435",
                "0123", "12 34"):
        [said] = pool(bad)
        assert f"spec.target.gcp.project: {bad!r} is no GCP project ID: use lowercase letters" in said, said
    assert pool("Acme-ML")[0].endswith("e.g. acme-ml-prod, or the project's number (123456789012); did you mean "
                                       "'acme-ml'?")
    assert pool("ac\u0435")[0].endswith("; '\u0435' in it is CYRILLIC SMALL LETTER IE (U+0435), no ASCII letter")


def test_a_gcp_zone_or_region_has_the_form_gcp_names_them_by() -> None:
    """A zone 'cloud-eu-002-c' or a region given as the zone passed validate and plan, and apply failed
    at the group's first call. google-cloud-compute ships no list of GCP's regions, so only the form is
    checked: a region like us-central1, a zone the region and a letter."""
    def pool(target: str) -> list[str]:
        return load(f"apiVersion: {API_VERSION}\nkind: Pool\nmetadata: {{name: p}}\nspec:\n  location: x\n"
                    f"  provider: gcp\n  gpu: {{type: L4-24GB, perNode: 1}}\n  nodes: {{min: 0, max: 2}}\n"
                    f"  usdPerGpuHour: 1\n  target: {{gcp: {{project: acme, {target}, instanceGroupManager: g}}}}\n")[1]

    for good in ("zone: us-central1-a", "zone: europe-west12-c", "zone: me-central2-a", "region: us-east4",
                 "region: northamerica-northeast2", "region: australia-southeast1"):
        assert pool(good) == [], good
    [said] = pool("zone: europe-west4")
    assert said == ("f.yaml:10: Pool/p: spec.target.gcp.zone: 'europe-west4' is a region, not a zone: give zone: "
                    "europe-west4-a (or the zone of another letter the group is in), or region: europe-west4 (a "
                    "regional group)")
    [said] = pool("region: us-central1-b")
    assert "spec.target.gcp.region: 'us-central1-b' is a zone, not a region: give zone: us-central1-b" in said
    [said] = pool("zone: US-CENTRAL1-A")
    assert "is no GCP zone name" in said and said.endswith("did you mean 'us-central1-a'?"), said
    [said] = pool("region: eu-west-1")
    assert "'eu-west-1' is no GCP region name (an AWS region's form)" in said, said
    for bad in ("zone: cloud-eu-002-c", "zone: us-central1-", "region: us-central", "region: europe_west4"):
        [said] = pool(bad)
        assert "is no GCP" in said, said


def test_an_auto_scaling_group_name_is_one_aws_accepts() -> None:
    """AWS takes 1 to 255 ASCII characters 33 to 126 but ':' as a group's name. A name of 256 passed
    validate and failed terraform plan; an empty one made terraform name the group itself
    (terraform-2026...), one placer never sized; a space or ':' was refused at terraform apply."""
    def pool(name: str) -> list[str]:
        return load(f"apiVersion: {API_VERSION}\nkind: Pool\nmetadata: {{name: p}}\nspec:\n  location: x\n"
                    f"  provider: aws\n  gpu: {{type: L4-24GB, perNode: 1}}\n  nodes: {{min: 0, max: 2}}\n"
                    f"  usdPerGpuHour: 1\n  target: {{aws: {{region: eu-west-1, autoScalingGroupName: '{name}'}}}}\n")[1]

    for good in ("gpu-h100", "Train_P4d.Fleet", "placer.a-b/c@d", "a" * 255):
        assert pool(good) == [], good
    for bad in ("", "a" * 256, "gpu h100", "grp:1", "grüppe"):
        [said] = pool(bad)
        assert "spec.target.aws.autoScalingGroupName" in said and "is no Auto Scaling group name" in said, said


def test_metadata_errors() -> None:
    _, diags = load(f"apiVersion: {API_VERSION}\nkind: Location\nmetadata:\n  name: a\n  labels: {{tier: 1}}\n"
                    "  owner: me\nspec: {environment: edge}\n")
    assert diags == [
        "f.yaml:5: Location/a: metadata.labels.tier: Input should be a valid string, got 1; put it in quotes: "
        "YAML reads unquoted 12, 1e6, true or 2026-01-01 as a number, a boolean or a date",
        "f.yaml:6: Location/a: metadata.owner: unknown field; known fields: name, labels, annotations",
    ]


def test_settings_may_have_no_spec() -> None:
    doc, diags = load(f"apiVersion: {API_VERSION}\nkind: Settings\nmetadata: {{name: s}}\n")
    assert diags == [] and doc is not None
    assert doc.spec.solver.time_limit_seconds == 30


def test_empty_document_is_skipped() -> None:
    assert load_document(RawDocument(path="f.yaml", line=1, data=None)) == (None, [])


def test_scalar_document_is_refused() -> None:
    doc, diags = load_document(RawDocument(path="f.yaml", line=3, data="hello"))
    assert doc is None
    assert [str(d) for d in diags] == [
        "f.yaml:3: a fleet document must be a mapping with apiVersion, kind, metadata and spec"]


def test_unquoted_version_keeps_its_text() -> None:
    doc, diags = load(f"apiVersion: {API_VERSION}\nkind: Model\nmetadata: {{name: m}}\nspec:\n"
                      "  version: 1.10\n  workload: batch\n  replicas: 1\n  replica: {gpus: 1, memoryGiBPerGpu: 1}\n")
    assert diags == [] and doc is not None and doc.spec.version == "1.10"


@pytest.mark.parametrize("text", ["null", "~", ""])
def test_a_null_version_is_no_version(text: str) -> None:
    """`version: null` was the version "null", ranked by retire's keepVersions; `~` was refused."""
    doc, diags = load(f"apiVersion: {API_VERSION}\nkind: Model\nmetadata: {{name: m}}\nspec:\n"
                      f"  version: {text}\n  workload: batch\n  replicas: 1\n  replica: {{gpus: 1, memoryGiBPerGpu: 1}}\n")
    assert diags == [] and doc is not None and doc.spec.version is None


def test_a_quoted_null_version_stays_text() -> None:
    doc, diags = load(f"apiVersion: {API_VERSION}\nkind: Model\nmetadata: {{name: m}}\nspec:\n"
                      "  version: 'null'\n  workload: batch\n  replicas: 1\n  replica: {gpus: 1, memoryGiBPerGpu: 1}\n")
    assert diags == [] and doc is not None and doc.spec.version == "null"


def test_line_numbers_with_crlf_line_ends() -> None:
    raw = one("apiVersion: placer.dev/v1alpha1\r\nkind: Location\r\nmetadata: {name: a}\r\nspec:\r\n"
              "  environment: mars\r\n")
    _, diags = load_document(raw)
    assert [str(d) for d in diags] == [
        "f.yaml:5: Location/a: spec.environment: Input should be 'onprem', 'cloud' or 'edge', got 'mars'"]


# ---------------------------------------------------------------- diagnostics


def test_diagnostic_rendering() -> None:
    assert str(Diagnostic("f.yaml", 3, "bad")) == "f.yaml:3: bad"
    assert str(Diagnostic("f.yaml", 3, "bad", kind="Pool")) == "f.yaml:3: Pool/?: bad"
    assert str(Diagnostic("f.yaml", 3, "bad", name="p")) == "f.yaml:3: ?/p: bad"
    assert str(Diagnostic("f.yaml", 3, "bad", "Pool", "p", "spec.x")) == "f.yaml:3: Pool/p: spec.x: bad"
    assert str(Diagnostic("f.yaml", 3, "meh", "Pool", "p", "spec.x", "warning")) == \
        "f.yaml:3: Pool/p: spec.x: warning: meh"


def test_diagnostics_sort_by_path_then_line() -> None:
    ds = [Diagnostic("b.yaml", 1, "z"), Diagnostic("a.yaml", 10, "y"), Diagnostic("a.yaml", 2, "x")]
    assert [(d.path, d.line) for d in sort_diagnostics(ds)] == [("a.yaml", 2), ("a.yaml", 10), ("b.yaml", 1)]
    err = FleetError([*ds, Diagnostic("a.yaml", 1, "w", severity="warning")])
    assert len(err.errors) == 3 and len(err.diagnostics) == 4
    assert str(err) == "3 error(s) in fleet"


def test_two_placements_that_would_share_a_deployment_name_are_refused() -> None:
    """chat on eu-h100 and chat-eu on h100 are both Deployment chat-eu-h100: render wrote one file
    for both, apply reported two changes and kept one, and the next plan said "No changes". In
    another namespace of the same context they are two objects, but the GitOps tree has one file
    per name in a context's folder: one was lost there (and kustomize refused the folder). In
    another context, the fleet is valid."""
    from tests.fleetkit import fleet, inference, location, pool

    def docs(namespace: str, context: str | None = None) -> list[dict]:
        k8s = {"target": {"kubernetes": {"namespace": namespace, **({"context": context} if context else {})}}}
        return [location("a"), pool("eu-h100", "a", provider="kubernetes", **k8s), pool("h100", "a", provider="kubernetes"),
                inference("chat", [{"location": "a", "rate": 100}]),
                inference("chat-eu", [{"location": "a", "rate": 100}])]

    for namespace in ("default", "other"):
        with pytest.raises(FleetError) as caught:
            fleet(*docs(namespace))
        (error,) = caught.value.errors
        assert error.name == "chat-eu" and error.field == "metadata.name"
        assert ("model chat-eu on pool h100 and model chat on pool eu-h100 would both be Deployment chat-eu-h100 in "
                "one context (placer names a Deployment <model>-<pool>, and writes one file per name in a context's "
                "folder), and one would overwrite the other; rename a model or a pool") in str(error)
    with pytest.raises(FleetError):  # no context is the folder of the context named default
        fleet(*docs("other", context="default"))
    assert fleet(*docs("default", context="eu")).models.keys() == {"chat", "chat-eu"}


@pytest.mark.parametrize(("extra", "field", "message"), [
    ({"version": "1.0\x1b[2J"}, "spec.version", "contains the control character '\\x1b'"),
    ({"labels": {"family": "chat\n```"}}, "metadata.labels.family", "contains the control character '\\n'"),
    ({"version": "1.0\n"}, "spec.version", "contains the control character '\\n'"),
    ({"version": "1.0 `x`"}, "spec.version", "'1.0 `x`' is no version: use letters, digits and . _ + -"),
    ({"image": "registry/m:1 --privileged"}, "spec.image", "is no image reference"),
])
def test_text_that_would_reach_terminals_and_comments_as_code_is_refused(extra: dict, field: str,
                                                                         message: str) -> None:
    """An escape code in a version cleared the terminal that printed the plan; a line break or
    backticks in it broke the pull request's comment (YAML's "\\e" and "\\n" escapes let them in)."""
    from tests.fleetkit import inference, location, pool

    labels = extra.pop("labels", None)
    with pytest.raises(FleetError) as caught:
        from tests.fleetkit import fleet

        fleet(location("a"), pool("p", "a"), inference("m", [{"location": "a", "rate": 1}], labels=labels, **extra))
    assert any(e.field == field and message in e.message for e in caught.value.errors), caught.value.errors


def test_an_invisible_format_character_is_refused_but_in_a_description() -> None:
    """A jurisdiction "U\u200bS" (a zero-width space) looks like US on every screen, and a required
    `denyPools: {jurisdiction: [US]}` let US-data models onto its pools without a word; a label
    with a right-to-left override ("\u202e") reordered the text around it."""
    from tests.fleetkit import fleet, inference, location, policy, pool

    us = location("us", jurisdiction="U\u200bS")
    docs = [location("eu"), us, pool("p-eu", "eu"), pool("p-us", "us"),
            inference("m", [{"location": "eu", "rate": 1}], labels={"team": "a\u202eb"}),
            policy("no-us", {"denyPools": {}}, pools={"jurisdiction": ["US"]})]
    with pytest.raises(FleetError) as caught:
        fleet(*docs)
    said = {(e.name, e.field): e.message for e in caught.value.errors}
    assert {("us", "spec.jurisdiction"), ("m", "metadata.labels.team")} <= said.keys(), said
    assert said[("us", "spec.jurisdiction")].startswith("contains the invisible format character '\\u200b'")
    assert "'\\u202e'" in said[("m", "metadata.labels.team")]
    described = {**policy("x", {"allowPools": {}}), "spec": {"rule": {"allowPools": {}}, "description": "a\u200db"}}
    assert fleet(location("a"), pool("p", "a"), described).pools.keys() == {"p"}


def test_a_lookalike_letter_in_a_jurisdiction_label_or_failure_domain_is_refused_naming_it() -> None:
    """A jurisdiction US whose S is Cyrillic (U+0405) looks like US on every screen and in review, and
    a required `denyPools: {jurisdiction: [US]}` let the models it guards onto its pools, planned
    without an error; a model labelled data: eu with a Cyrillic e (U+0435) escaped a residency policy
    selecting data: eu; failure domains told apart by a lookalike satisfied a spread with one rack."""
    from tests.fleetkit import fleet, inference, location, policy, pool

    docs = [location("eu"), location("us", jurisdiction="U\u0405"), pool("p-eu", "eu"),
            pool("p-us", "us", failureDomain="r\u0430ck-1"),
            inference("m", [{"location": "eu", "rate": 1}], labels={"data": "\u0435u"}),
            policy("no-us", {"denyPools": {}}, models={"labels": {"data": "eu"}}, pools={"jurisdiction": ["US"]}),
            policy("eu-only", {"allowPools": {}}, models={"labels": {"d\u0430ta": "eu"}},
                   pools={"jurisdiction": ["E\u0423"]})]
    with pytest.raises(FleetError) as caught:
        fleet(*docs)
    said = {(e.name, e.field): e.message for e in caught.value.errors}
    assert said[("us", "spec.jurisdiction")] == (
        "'U\u0405' is no jurisdiction: 63 characters at most of ASCII letters, digits, '-', '_' or '.', starting and "
        "ending with a letter or digit, e.g. EU, US or DE-BY; '\u0405' in it is CYRILLIC CAPITAL LETTER DZE (U+0405), "
        "no ASCII letter"), said
    assert "CYRILLIC SMALL LETTER A (U+0430)" in said[("p-us", "spec.failureDomain")]
    assert "is no label value" in said[("m", "metadata.labels.data")]
    assert "CYRILLIC SMALL LETTER IE (U+0435)" in said[("m", "metadata.labels.data")]
    assert "label key 'd\u0430ta'" in said[("eu-only", "spec.models.labels.d\u0430ta")]
    assert "CYRILLIC CAPITAL LETTER U (U+0423)" in said[("eu-only", "spec.pools.jurisdiction[0]")]


@pytest.mark.parametrize("value", ["@octo-org/admins", "![x](https://evil.example/p.png)", "a\\|b", "v`1`",
                                   "<img src=x>", "two words", "-x", "x" * 64])
def test_a_label_value_kubernetes_would_not_take_is_refused(value: str) -> None:
    """A label's value is quoted in plans and pull-request comments: a `family` label of a model a
    retire policy retired went into the comment's table as markdown, where `@octo-org/admins`
    mentioned the team, an image showed, and a backslash before a pipe split the row."""
    from tests.fleetkit import fleet, inference, location, pool

    with pytest.raises(FleetError) as caught:
        fleet(location("a"), pool("p", "a"), inference("m", [{"location": "a", "rate": 1}], labels={"family": value}))
    [error] = caught.value.errors
    assert error.field == "metadata.labels.family" and error.message.startswith(f"{value!r} is no label value: 63 "), \
        error.message


def test_labels_jurisdictions_and_failure_domains_as_kubernetes_takes_labels() -> None:
    from tests.fleetkit import fleet, inference, location, policy, pool

    f = fleet(location("a", jurisdiction="DE-BY"), pool("p", "a", failureDomain="eu-west-1a", labels={"x": ""}),
              inference("m", [{"location": "a", "rate": 1}], labels={"placer.dev/tier": "gold", "family": "llama_3.1"}),
              policy("de", {"allowPools": {}}, models={"labels": {"placer.dev/tier": "gold"}},
                     pools={"jurisdiction": "DE-BY"}))
    assert f.pools["p"].failure_domain == "eu-west-1a" and f.models["m"].labels["family"] == "llama_3.1"


def test_a_description_may_run_over_lines_and_a_version_carry_build_metadata() -> None:
    from placer.render.manifests import deployment_manifest
    from tests.fleetkit import fleet, inference, location, policy, pool

    f = fleet(location("a"), pool("p", "a"), inference("m", [{"location": "a", "rate": 1}], version="3.0+cuda12.4"),
              {**policy("x", {"allowPools": {}}), "spec": {"rule": {"allowPools": {}}, "description": "one\ntwo\tthree"}})
    assert f.models["m"].spec.version == "3.0+cuda12.4"
    image = deployment_manifest({"model": "m", "pool": "p", "version": "3.0+cuda12.4"}, 1)
    assert image["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local/models/m:3.0_cuda12.4"


@pytest.mark.parametrize(("target", "message"), [
    ({"namespace": "Inference_NS"}, "namespace 'Inference_NS' is no Kubernetes namespace"),
    ({"nodeSelector": {"gpu": "NVIDIA H100 80GB"}}, "nodeSelector value 'NVIDIA H100 80GB' (of gpu) is no label value"),
    ({"nodeSelector": {"acme.io/pool/x": "a"}}, "nodeSelector key 'acme.io/pool/x': its prefix before '/' must be a DNS"),
    ({"tolerations": [{"key": "gpu", "operator": "Exists", "value": "yes"}]}, "operator Exists takes no value"),
    ({"tolerations": [{"key": "gpu", "value": "yes", "effect": "NoSchedule", "tolerationSeconds": 30}]},
     "tolerationSeconds applies to effect NoExecute only"),
    ({"tolerations": [{"value": "yes"}]}, "a toleration without a key needs operator: Exists"),
    # a lookalike letter is named, as in a label's value: H\u0421100 (a Cyrillic C) matches no node, pods stay Pending
    ({"nodeSelector": {"gpu": "H\u0421100"}}, "(of gpu) is no label value: 63 characters at most of ASCII letters, "
     "digits, '-', '_' or '.', starting and ending with a letter or digit; '\u0421' in it is CYRILLIC CAPITAL LETTER "
     "ES (U+0421), no ASCII letter"),
    ({"tolerations": [{"key": "gpu", "value": "sh\u0430red", "effect": "NoSchedule"}]},
     "value 'sh\u0430red' is no label value: 63 characters at most of ASCII letters, digits, '-', '_' or '.', "
     "starting and ending with a letter or digit; '\u0430' in it is CYRILLIC SMALL LETTER A (U+0430), no ASCII letter"),
])
def test_a_kubernetes_target_the_api_server_would_refuse_is_refused_here(target: dict, message: str) -> None:
    """kubernetes-validate --strict checks a manifest's types, not these: the API server refuses
    them at apply time, half-way through a plan."""
    from tests.fleetkit import fleet, location, pool

    with pytest.raises(FleetError) as caught:
        fleet(location("a"), pool("p", "a", provider="kubernetes", target={"kubernetes": target}))
    assert any(message in e.message for e in caught.value.errors), caught.value.errors


def test_every_problem_of_a_kubernetes_target_is_named_at_once() -> None:
    """validate names each problem: a namespace and two nodeSelector entries the API server refuses
    were named one at a time, the next only once the first was fixed."""
    from tests.fleetkit import fleet, location, pool

    k8s = {"namespace": "Team_A", "nodeSelector": {"gpu": "a b", "Bad Key": "x"}}
    with pytest.raises(FleetError) as caught:
        fleet(location("a"), pool("p", "a", provider="kubernetes", target={"kubernetes": k8s}))
    said = " ".join(e.message for e in caught.value.errors)
    assert "namespace 'Team_A'" in said and "value 'a b' (of gpu)" in said and "key 'Bad Key'" in said, said


def test_a_kubernetes_target_as_the_api_server_takes_it() -> None:
    from tests.fleetkit import fleet, location, pool

    k8s = {"namespace": "inference", "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "x": ""},
           "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                           {"operator": "Exists"},
                           {"key": "spot", "value": "true", "effect": "NoExecute", "tolerationSeconds": 60}]}
    f = fleet(location("a"), pool("p", "a", provider="kubernetes", target={"kubernetes": k8s}))
    assert f.pools["p"].spec.target.kubernetes is not None


def test_only_the_unknown_fields_a_file_prints_are_matched_for_a_did_you_mean(monkeypatch: pytest.MonkeyPatch) -> None:
    """A document of 100,000 unknown keys spent 10 s in difflib for lines the cap never prints (MOST_PER_FILE
    a file): the first MOST_PER_FILE have their 'did you mean', the rest are only 'unknown field'."""
    asked: list[str] = []

    def counted(word: str, choices: Iterable[str]) -> str:
        asked.append(word)
        return suggest(word, choices)

    monkeypatch.setattr(loader, "suggest", counted)
    keys = "".join(f"specs{i}: 1\n" for i in range(MOST_PER_FILE + 10))
    docs, _ = parse_text("apiVersion: placer.dev/v1alpha1\nkind: Location\nmetadata: {name: a}\n" + keys, "u.yaml")
    _, diags = load_document(docs[0])
    unknown = [d for d in diags if d.message.startswith("unknown field")]
    assert len(unknown) == MOST_PER_FILE + 10 and len(asked) == MOST_PER_FILE
    assert unknown[0].message == "unknown field; did you mean 'spec'?" and unknown[-1].message == "unknown field"
