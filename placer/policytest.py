"""Policy tests: tiny fleets with expectations, run against a policy file, like ``opa test``.

A test file ``<name>.test.yaml`` sits next to the policy file ``<name>.yaml`` and holds a
``PolicyTest`` document: shared fixture documents, and cases that add documents and state
what must hold (eligibility, placement, violations). The format is documented in
``policies/library/README.md``. Test files are never fleet documents: they are read here,
one by one, and each case's fleet is built from its own documents plus the policy's.

Pure apart from reading the test and policy files; the rule behaviours come in through
``rules_for`` (the CLI wires in ``policies.build_rules``), as for every other command.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from placer.candidates import POLICY, RETIRED, Candidates, find_candidates
from placer.cost import violations as find_violations
from placer.fleet import Fleet, build_fleet
from placer.optimizer import SolveResult, optimize
from placer.planfile import cannot_read, list_folder
from placer.policy import Rules, behaviour, plan_time
from placer.spec import Diagnostic, Document, load_document
from placer.spec.kinds import API_VERSION
from placer.spec.loader import error_message, error_where, kind_and_name, suggest
from placer.spec.source import YAML_SUFFIXES, Loc, RawDocument, not_regular, read_file

TEST_KIND = "PolicyTest"
TEST_SUFFIXES = (".test.yaml", ".test.yml")
#: how long one case's solve may take; test fleets are tiny, so this is only a guard
CASE_TIME_LIMIT_S = 20.0

RulesFor = Callable[[dt.datetime], Rules]


# ---------------------------------------------------------------- the test file format


class _Strict(BaseModel):
    """As strict as the fleet's models: `violations: false`, `infeasible: "no"` and a count of 2.0 or true are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, alias_generator=to_camel, populate_by_name=True)


# a case's placed.<model>: a list of pools, or replica counts per pool; pydantic names the branch in an
# error's location by its tag, which is left out of the field and line said
_POOLS, _COUNTS = "list of pools", "pool: replicas"


def _placed_shape(value: Any) -> str | None:
    return _POOLS if isinstance(value, list) else _COUNTS if isinstance(value, dict) else None


_Placed = Annotated[
    Annotated[list[str], Tag(_POOLS)] | Annotated[dict[str, int], Tag(_COUNTS)],
    Discriminator(_placed_shape, custom_error_type="placed_shape",
                  custom_error_message="must be a list of pools or a mapping {pool: replicas}"),
]


def _as_now(value: Any) -> dt.datetime | None:
    """A plan time from YAML (a date, a datetime, or ISO text) exactly as ``placer plan --now`` takes it."""
    if value is None:
        return None
    if not isinstance(value, str | dt.date):
        raise ValueError(f"expected an ISO date or time, got {value!r}")
    try:
        return plan_time(value)
    except ValueError as exc:
        raise ValueError(f"{value if isinstance(value, str) else value.isoformat()!r} {exc}") from None


class Eligibility(_Strict):
    """Where ``model`` may run once the fit rules and every required policy have filtered."""

    model: str
    allowed: list[str] = Field(default_factory=list)
    denied: list[str] = Field(default_factory=list)
    #: text the reason of every denial must contain; default: the denial comes from a policy
    reason: str | None = None

    @model_validator(mode="after")
    def _some(self) -> Eligibility:
        if not self.allowed and not self.denied:
            raise ValueError("give allowed, denied or both (lists of pool names)")
        return self


class Case(_Strict):
    name: str = Field(min_length=1)
    description: str | None = None
    now: dt.datetime | None = None
    fleet: list[Any] = Field(default_factory=list)
    expect: list[Eligibility] = Field(default_factory=list)
    retired: list[str] | None = None
    placed: dict[str, _Placed] | None = None
    not_placed: list[str] | None = None
    violations: int | None = Field(default=None, ge=0)
    infeasible: bool | None = None

    @field_validator("now", mode="before")
    @classmethod
    def _when(cls, v: Any) -> dt.datetime | None:
        return _as_now(v)

    @field_validator("placed")
    @classmethod
    def _counts(cls, v: dict[str, list[str] | dict[str, int]] | None) -> dict[str, list[str] | dict[str, int]] | None:
        # `{fra-a100: -3}` was taken, and failed as "expected placed not placed, got 2 on fra-a100"
        for model, where in (v or {}).items():
            if isinstance(where, dict):
                for pool, n in where.items():
                    if n < 1:
                        raise ValueError(f"{model} on {pool}: {n} replicas; give a count of 1 or more (a model "
                                         "placed nowhere is notPlaced)")
        return v

    @model_validator(mode="after")
    def _something_to_check(self) -> Case:
        if not (self.expect or self.retired is not None or self.placed is not None or self.not_placed is not None
                or self.violations is not None or self.infeasible is not None):
            raise ValueError("a case needs at least one expectation: expect, retired, placed, notPlaced, "
                             "violations or infeasible")
        return self

    @property
    def solves(self) -> bool:
        return (self.placed is not None or self.not_placed is not None or self.violations is not None
                or self.infeasible is not None)


class TestSpec(_Strict):
    policy: list[str] | None = None
    description: str | None = None
    now: dt.datetime | None = None
    fleet: list[Any] = Field(default_factory=list)
    cases: list[Case] = Field(min_length=1)

    @field_validator("now", mode="before")
    @classmethod
    def _when(cls, v: Any) -> dt.datetime | None:
        return _as_now(v)

    @field_validator("policy", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("policy")
    @classmethod
    def _named(cls, v: list[str] | None) -> list[str] | None:
        if any(not name.strip() for name in v or []):  # "" was the test file's own directory: ".:1: cannot read"
            raise ValueError("an empty file name: name a policy file, relative to this test file")
        return v


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class CaseResult:
    path: str
    test: str  # metadata.name of the PolicyTest
    name: str
    line: int
    failures: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()  # the case could not be evaluated (bad fixture documents, unknown names)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures and not self.errors


@dataclass
class Report:
    cases: list[CaseResult] = field(default_factory=list)
    file_errors: list[Diagnostic] = field(default_factory=list)  # test files that could not be read
    files: list[str] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(1 for c in self.cases if c.passed)

    @property
    def failed(self) -> int:
        return sum(1 for c in self.cases if not c.passed)

    @property
    def ok(self) -> bool:
        return bool(self.cases) and not self.failed and not self.file_errors


class NoTestsError(Exception):
    """The path holds no test files."""


# ---------------------------------------------------------------- discovery


def is_test_file(path: Path) -> bool:
    return path.name.endswith(TEST_SUFFIXES)


def find_test_files(root: str | Path) -> list[Path]:
    """``root`` itself if it is a file, else every ``*.test.yaml`` below it (sorted; hidden entries skipped)."""
    base = Path(root)
    try:
        if base.is_file():
            return [base]
        is_dir = base.is_dir()
    except OSError as exc:  # in a folder it cannot enter (`chmod 600`): Python's "[Errno 13] Permission denied: 'PATH'"
        raise NoTestsError(f"{cannot_read(base, exc, 'to run the policy tests in it')}; no test was run") from None
    if not is_dir:
        what = not_regular(base)
        if what == "no such file or directory" and str(root) == "-":  # meant as standard input, as a fleet's '-'
            raise NoTestsError(f"-: {what}; policy tests are not read from standard input: save them to a file "
                               f"(> policy{TEST_SUFFIXES[0]}) and give that, or a directory of them")
        if what == "no such file or directory":
            raise NoTestsError(f"{root}: {what}")
        raise NoTestsError(f"{root}: not a regular file ({what}): name a policy test file "
                           f"({' or '.join('*' + s for s in TEST_SUFFIXES)}) or a directory of them")
    found = list(_test_files_below(base))
    if not found:
        raise NoTestsError(f"{root}: no policy test files ({' or '.join('*' + s for s in TEST_SUFFIXES)})")
    return sorted(found)


def _test_files_below(folder: Path) -> Iterable[Path]:
    """The test files below ``folder``, hidden entries and folders that are links skipped (as
    ``rglob`` skipped them). A folder it cannot list or enter is refused (NoTestsError, in words):
    ``rglob`` skipped one it could not list (`chmod 300`), its tests unrun and the run passed, and
    one it could not enter (`chmod 600`) was Python's "[Errno 13] Permission denied: 'FILE'"."""
    try:
        entries = list_folder(folder, "to find the policy tests in it", writes=False)
    except OSError as exc:
        raise NoTestsError(f"{exc}; no test was run") from None
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and not entry.is_symlink():
            yield from _test_files_below(entry)
        elif is_test_file(entry) and entry.is_file():
            yield entry


def policy_file_for(test_file: Path) -> Path:
    """The policy file a test file tests by default: ``x.test.yaml`` -> ``x.yaml`` (or ``x.yml``)."""
    stem = test_file.name
    for suffix in TEST_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    for ext in YAML_SUFFIXES:
        candidate = test_file.with_name(stem + ext)
        if candidate.exists():
            return candidate
    return test_file.with_name(stem + ".yaml")


def policy_test_for(policy_file: Path) -> Path:
    """The test file of a policy file: ``x.yaml`` -> ``x.test.yaml``."""
    return policy_file.with_name(policy_file.name.rsplit(".", 1)[0] + TEST_SUFFIXES[0])


# ---------------------------------------------------------------- reading


def _sub_document(raw: RawDocument, loc: Loc, data: Any) -> RawDocument:
    """The YAML value at ``loc`` of ``raw`` as a document of its own, keeping its lines."""
    n = len(loc)
    lines = {key[n:]: line for key, line in raw.lines.items() if key[:n] == loc and len(key) > n}
    if isinstance(data, dict) and "apiVersion" not in data:
        data = {"apiVersion": API_VERSION, **data}  # fixtures may leave apiVersion out
    return RawDocument(path=raw.path, line=raw.line_of(loc), data=data, lines=lines)


def _dotted(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


@dataclass
class _PolicyFiles:
    """Policy files read once per run: path -> (documents, diagnostics)."""

    cache: dict[Path, tuple[list[Document], list[Diagnostic]]] = field(default_factory=dict)

    def load(self, path: Path) -> tuple[list[Document], list[Diagnostic]]:
        key = path.resolve()
        if key not in self.cache:
            raws, diags = read_file(path, "policy")
            docs: list[Document] = []
            for raw in raws:
                if isinstance(raw.data, dict) and raw.data.get("kind") == TEST_KIND:
                    diags.append(Diagnostic(raw.path, raw.line_of(("kind",)), f"a policy file holds Policy documents "
                                            f"only, found {TEST_KIND}; put it in a test file of its own "
                                            f"({'*' + TEST_SUFFIXES[0]})", TEST_KIND, (kind_and_name(raw.data) or ("", ""))[1], "kind"))
                    continue
                doc, more = load_document(raw)
                diags.extend(more)
                if doc is None:
                    continue
                if doc.kind != "Policy":
                    diags.append(doc.diag("kind", f"a policy file holds Policy documents only, found {doc.kind}; "
                                          "put fixture documents in the test file's fleet", "kind"))
                    continue
                docs.append(doc)
            if not raws and not diags:
                diags.append(Diagnostic(str(path), 1, "the policy file holds no documents"))
            self.cache[key] = (docs, diags)
        return self.cache[key]


@dataclass
class _TestDoc:
    raw: RawDocument
    name: str
    spec: TestSpec

    def line(self, *loc: str | int) -> int:
        return self.raw.line_of(("spec", *loc))

    def diag(self, message: str, *loc: str | int) -> Diagnostic:
        return Diagnostic(self.raw.path, self.line(*loc), message, TEST_KIND, self.name, _dotted(("spec", *loc)))


def _contradictions(case: Case) -> list[tuple[str, Loc]]:
    """Expectations of one case that no result can meet together, or that a result never checks
    (an infeasible case has no placement for placed, notPlaced and violations): each with where it is.
    Such a case passed unchecked, or failed as if the policy were wrong."""
    out: list[tuple[str, Loc]] = []
    if case.infeasible:
        unchecked = [key for key, value in (("placed", case.placed), ("notPlaced", case.not_placed),
                                            ("violations", case.violations)) if value is not None]
        if unchecked:
            out.append((f"infeasible: true leaves no placement to check {' and '.join(unchecked)} on; move "
                        f"{'it' if len(unchecked) == 1 else 'them'} to a case of its own", ("infeasible",)))
    for k, model in enumerate(case.not_placed or []):
        if model in (case.placed or {}):
            out.append((f"{model} is placed in this case too; expect it placed or notPlaced, not both",
                        ("notPlaced", k)))
    retired = set(case.retired or [])
    for model in case.placed or {}:
        if model in retired:
            out.append((f"{model} is expected retired in this case too, and a retired model is placed nowhere; "
                        "expect it retired or placed, not both", ("placed", model)))
    allowed: dict[tuple[str, str], int] = {}
    for j, e in enumerate(case.expect):
        for k, pool in enumerate(e.allowed):
            allowed.setdefault((e.model, pool), j)
            if e.model in retired:
                out.append((f"{e.model} is expected retired in this case too, and a retired model is allowed on no "
                            "pool; expect it retired or allowed, not both", ("expect", j, "allowed", k)))
    for j, e in enumerate(case.expect):
        for k, pool in enumerate(e.denied):
            if (e.model, pool) in allowed:
                first = allowed[(e.model, pool)]
                also = "" if first == j else f" (expect[{first}])"
                out.append((f"{e.model} is expected allowed on {pool} in this case too{also}; expect it allowed or "
                            "denied, not both", ("expect", j, "denied", k)))
        if e.reason is not None and not e.denied:
            out.append(("reason is the text of a denial's reason, and this expectation denies no pool; drop it, or "
                        "list the pools under denied", ("expect", j, "reason")))
    return out


def _parse_test_doc(raw: RawDocument) -> tuple[_TestDoc | None, list[Diagnostic]]:
    data = raw.data
    if data is None:
        return None, []

    def d(message: str, loc: Loc = (), name: str = "") -> Diagnostic:
        return Diagnostic(raw.path, raw.line_of(loc), message, TEST_KIND if name else "", name, _dotted(loc))

    if not isinstance(data, dict):
        return None, [d("a policy test file holds a mapping: apiVersion, kind: PolicyTest, metadata, spec")]
    meta = data.get("metadata")
    raw_name = meta.get("name") if isinstance(meta, dict) else None
    name = raw_name if isinstance(raw_name, str) else ""
    diags: list[Diagnostic] = []
    if data.get("kind") != TEST_KIND:
        kind = data.get("kind")
        hint = ""
        if kind == "Policy" and not is_test_file(Path(raw.path)):  # the file was passed as a test file
            hint = (f": {raw.path} is a Policy file; pass `placer policy test` its {TEST_KIND} file "
                    f"({policy_test_for(Path(raw.path)).name}) or their directory")
        elif isinstance(kind, str) and not is_test_file(Path(raw.path)):
            hint = f": {raw.path} is a fleet file, not a policy test; pass {TEST_KIND} files ({'*' + TEST_SUFFIXES[0]})"
        elif isinstance(kind, str):
            hint = " (a fleet document in a test file? put fixtures under spec.fleet or a case's fleet)"
        return None, [d(f"kind must be {TEST_KIND}, got {kind!r}{hint}", ("kind",) if "kind" in data else ())]
    if data.get("apiVersion") != API_VERSION:
        diags.append(d(f"apiVersion must be {API_VERSION}, got {data.get('apiVersion')!r}",
                       ("apiVersion",) if "apiVersion" in data else (), name))
    for key in data:
        if key not in ("apiVersion", "kind", "metadata", "spec"):
            diags.append(d(f"unknown field{suggest(str(key), ['apiVersion', 'kind', 'metadata', 'spec'])}",
                           (key,), name))
    if not name:
        diags.append(d("metadata.name is required (names the test in reports)", ("metadata",)))
    spec = data.get("spec")
    if not isinstance(spec, dict):
        diags.append(d("spec is required: a mapping with cases (and optionally policy, now, fleet)",
                       ("spec",) if "spec" in data else (), name))
        return None, diags
    try:
        parsed = TestSpec.model_validate(spec)
    except ValidationError as exc:
        for err in exc.errors():  # in the fleet loader's words, as strict as it is
            err["loc"] = tuple(part for part in err["loc"] if part not in (_POOLS, _COUNTS))
            msg = error_message(err, TestSpec, err["loc"])
            if err["type"] == "placed_shape":
                msg += f", got {err['input']!r}"
            field, loc = error_where(("spec",), err)
            diags.append(Diagnostic(raw.path, raw.line_of(loc), msg, TEST_KIND, name, field))
        return None, diags
    seen: dict[str, int] = {}
    for i, case in enumerate(parsed.cases):
        if case.name in seen:
            diags.append(Diagnostic(raw.path, raw.line_of(("spec", "cases", i, "name")),
                                    f"duplicate case name {case.name!r} (first is cases[{seen[case.name]}])",
                                    TEST_KIND, name, f"spec.cases[{i}].name"))
        seen.setdefault(case.name, i)
        for message, loc in _contradictions(case):
            diags.append(Diagnostic(raw.path, raw.line_of(("spec", "cases", i, *loc)), message, TEST_KIND, name,
                                    _dotted(("spec", "cases", i, *loc))))
    if diags:
        return None, diags
    return _TestDoc(raw, name, parsed), []


# ---------------------------------------------------------------- evaluating


def _fixtures(test: _TestDoc, loc: Loc, items: list[Any]) -> tuple[list[Document], list[Diagnostic]]:
    docs: list[Document] = []
    diags: list[Diagnostic] = []
    for j, item in enumerate(items):
        if isinstance(item, dict) and item.get("kind") == TEST_KIND:  # the loader's words are for fleet directories
            diags.append(test.diag(f"a {TEST_KIND} cannot be a fixture: a fleet here holds fleet documents (Location, "
                                   "Pool, Model, Policy, ...)", *loc, j, "kind"))
            continue
        doc, more = load_document(_sub_document(test.raw, ("spec", *loc, j), item))
        diags.extend(more)
        if doc is not None:
            docs.append(doc)
    return docs, diags


def _check_names(test: _TestDoc, i: int, case: Case, fleet: Fleet) -> list[Diagnostic]:
    """Every model and pool an expectation names must exist in the case's fleet."""
    out: list[Diagnostic] = []

    def need(name: str, known: Mapping[str, Any], what: str, *loc: str | int) -> None:
        if name not in known:
            out.append(test.diag(f"no {what} named {name!r} in this case's fleet{suggest(name, known)}",
                                 "cases", i, *loc))

    for j, e in enumerate(case.expect):
        need(e.model, fleet.models, "model", "expect", j, "model")
        for side in ("allowed", "denied"):
            for k, pool in enumerate(getattr(e, side)):
                need(pool, fleet.pools, "pool", "expect", j, side, k)
    for k, model in enumerate(case.retired or []):
        need(model, fleet.models, "model", "retired", k)
    for k, model in enumerate(case.not_placed or []):
        need(model, fleet.models, "model", "notPlaced", k)
    for model, where in (case.placed or {}).items():
        need(model, fleet.models, "model", "placed", model)
        for pool in where:
            need(pool, fleet.pools, "pool", "placed", model)
    return out


def _why_out(cands: Candidates, model: str, pool: str) -> str:
    excl = cands.excluded.get((model, pool))
    return f"denied ({excl})" if excl is not None else "allowed"


def _charged_only(fleet: Fleet, rules: Rules, model: str, pool: str | None, check: str) -> str:
    """Why a model a case expects denied on ``pool`` (or, with None, retired) may be only charged:
    the preferred policies that, were they required, would deny or retire it, with what they would
    say. ``denied`` and ``retired`` look at what required policies do; a preferred one prices the
    model's replicas instead, and its verdict went unsaid ('expected denied on pool p, got allowed')."""
    found = []
    for policy in fleet.policies:
        if policy.required:
            continue
        hard = dataclasses.replace(policy, spec=policy.spec.model_copy(update={"enforcement": "required"}))
        rule, m = behaviour(rules, hard), fleet.models[model]
        if not any(x.name == model for x in fleet.models_of(policy.spec.models)):
            continue
        said = rule.retires(hard, fleet, m) if pool is None else rule.excludes(hard, fleet, m, fleet.pools[pool])
        if said:
            found.append(f"preferred policy {policy.name} charges its penalty instead: as required it would "
                         f"{'retire it' if pool is None else f'deny {pool}'} ({said})")
    return f" ({'; '.join(found)}; check {check}, or make it required)" if found else ""


def _eligibility_failures(case: Case, fleet: Fleet, rules: Rules, cands: Candidates) -> list[str]:
    out: list[str] = []
    for e in case.expect:
        for pool in e.allowed:
            if (e.model, pool) not in cands.pairs:
                out.append(f"{e.model}: expected allowed on pool {pool}, got {_why_out(cands, e.model, pool)}")
        for pool in e.denied:
            excl = cands.excluded.get((e.model, pool))
            if excl is None:
                why = _charged_only(fleet, rules, e.model, pool, "placed or violations")
                out.append(f"{e.model}: expected denied on pool {pool}, got allowed{why}")
            elif e.reason is not None and e.reason not in str(excl):
                out.append(f"{e.model}: expected denied on pool {pool} because of {e.reason!r}, got denied ({excl})")
            elif e.reason is None and excl.reason not in (POLICY, RETIRED):
                out.append(f"{e.model}: expected denied on pool {pool} by a policy, got denied by the fit rules "
                           f"({excl}); the case does not exercise the policy (or set reason)")
    for model in case.retired or []:
        if model not in cands.retired:
            why = _charged_only(fleet, rules, model, None, "notPlaced or violations")
            out.append(f"{model}: expected retired, got not retired{why}")
    return out


def _where(placed: Mapping[str, int]) -> str:
    return ", ".join(f"{r} on {p}" for p, r in sorted(placed.items())) or "not placed"


def _placement_failures(case: Case, fleet: Fleet, rules: Rules, result: SolveResult) -> list[str]:
    out: list[str] = []
    if case.infeasible is True and result.feasible:
        out.append(f"expected no feasible placement, got a placement (solver {result.status})")
    if case.infeasible is False and not result.feasible:
        out.append(f"expected a feasible placement, got none (solver {result.status})")
    wants_placement = case.placed is not None or case.not_placed is not None or case.violations is not None
    placement = result.placement
    if placement is None:
        if wants_placement and case.infeasible is not True:
            out.append(f"expected a placement, got none (solver {result.status})")
        return out
    for model, want in sorted((case.placed or {}).items()):
        got = placement.pools_of(model)
        if isinstance(want, dict):
            expected = {p: r for p, r in want.items() if r > 0}
            if got != expected:
                out.append(f"{model}: expected placed {_where(expected)}, got {_where(got)}")
        elif set(got) != set(want):
            out.append(f"{model}: expected placed on {', '.join(sorted(set(want))) or 'no pool'}, got {_where(got)}")
    for model in case.not_placed or []:
        got = placement.pools_of(model)
        if got:
            out.append(f"{model}: expected not placed, got {_where(got)}")
    if case.violations is not None:
        found = find_violations(fleet, placement, rules)
        if len(found) != case.violations:
            listed = "; ".join(f"{v.policy}: {v.detail}" for v in found) or "none"
            out.append(f"expected {case.violations} violation(s), got {len(found)} ({listed})")
    return out


def _run_case(test: _TestDoc, i: int, case: Case, shared: list[Document], policy_docs: list[Document],
              rules_for: RulesFor) -> CaseResult:
    started = time.monotonic()
    line = test.line("cases", i)

    def result(failures: Iterable[str] = (), errors: Iterable[str] = ()) -> CaseResult:
        return CaseResult(test.raw.path, test.name, case.name, line, tuple(failures), tuple(errors),
                          time.monotonic() - started)

    own, diags = _fixtures(test, ("cases", i, "fleet"), case.fleet)
    fleet, more = build_fleet([*shared, *own, *policy_docs])
    errors = [str(d) for d in [*diags, *more] if d.severity == "error"]
    if errors or fleet is None:
        return result(errors=errors or ["the case's fleet could not be built"])
    named = _check_names(test, i, case, fleet)
    if named:
        return result(errors=[str(d) for d in named])
    now = case.now or test.spec.now or dt.datetime.now(dt.UTC)
    rules = rules_for(now)
    failures = _eligibility_failures(case, fleet, rules, find_candidates(fleet, rules))
    if case.solves:
        limit = min(fleet.settings.solver.time_limit_seconds, CASE_TIME_LIMIT_S)
        failures += _placement_failures(case, fleet, rules, optimize(fleet, rules, time_limit=limit))
    return result(failures=failures)


MOST_FILES_LOOKED_AT = 50  # the policy files beside a missing one read for a Policy of its name


def _meant_policy(missing: Path) -> str:
    """What a spec.policy that names no file may have meant: the file with its .yaml left off, the
    file that holds a Policy of that name (spec.policy names files, not policies), or a file named
    much as it is; ''. It said only 'policy file pols/residency-eu not found' beside residency-eu.yaml."""
    for ext in YAML_SUFFIXES:
        with_ext = missing.with_name(missing.name + ext)
        if with_ext.is_file():
            return f"; did you mean {with_ext.name} (policy names files, with their .yaml)?"
    try:
        beside = sorted(p for p in missing.parent.iterdir() if p.name.endswith(YAML_SUFFIXES)
                        and not is_test_file(p) and not p.name.startswith(".") and p.is_file())
    except OSError:
        return ""
    for candidate in beside[:MOST_FILES_LOOKED_AT]:
        raws, _ = read_file(candidate, "policy")
        if any(kind_and_name(raw.data) == ("Policy", missing.name) for raw in raws):
            return (f"; policy names policy files, not Policy documents: Policy/{missing.name} is in "
                    f"{candidate.name}, so name that file")
    return suggest(missing.name, [p.name for p in beside])


def _unreadable_policy(path: Path, named: str | None) -> str | None:
    """Why the policy file at ``path`` (``named`` so in spec.policy, None for the default) cannot be
    read, and what to name instead; None where it is a regular file. Said at spec.policy's line:
    its reader's "pols:1: cannot read: Is a directory" named neither the test nor what to do."""
    what = not_regular(path)
    if what is None:
        return None
    if what == "no such file or directory":
        return f"policy file {path} not found{_meant_policy(path) if named else ' (the default: set spec.policy to name it)'}"
    if what == "a directory":
        try:
            found = sorted(p.name for p in path.iterdir() if p.name.endswith(YAML_SUFFIXES)
                           and not is_test_file(p) and not p.name.startswith(".") and p.is_file())
        except OSError:
            found = []
        base = PurePosixPath(named or path.name)
        if 0 < len(found) <= 5:
            listed = f", e.g. policy: [{', '.join(str(base / name) for name in found)}]"
        else:
            listed = f" (it holds {len(found)} YAML files)" if found else " (it holds no YAML file)"
        return f"policy file {path} is a directory: name the policy files in it{listed}"
    return f"policy file {path} is not a regular file ({what}): name a YAML file of Policy documents"


def run_file(path: Path, rules_for: RulesFor, select: re.Pattern[str] | None = None,
             policy_files: _PolicyFiles | None = None) -> tuple[list[CaseResult], list[Diagnostic]]:
    """Run the cases of one test file; a file that cannot be read or parsed gives diagnostics instead."""
    policy_files = policy_files or _PolicyFiles()
    raws, diags = read_file(path, "policy test")
    if diags:
        return [], diags
    tests: list[_TestDoc] = []
    by_name: dict[str, _TestDoc] = {}
    for raw in raws:
        test, more = _parse_test_doc(raw)
        diags.extend(more)
        if test is None:
            continue
        earlier = by_name.setdefault(test.name, test)
        if earlier is not test:  # its cases' reports and --run's '<test>/<case>' could not tell the two apart
            diags.append(Diagnostic(raw.path, raw.line_of(("metadata", "name")),
                                    f"duplicate {TEST_KIND} name {test.name!r} in this file; first defined at "
                                    f"{earlier.raw.path}:{earlier.raw.line_of(('metadata', 'name'))}: give each test its "
                                    "own name", TEST_KIND, test.name, "metadata.name"))
        tests.append(test)
    if not raws:
        diags.append(Diagnostic(str(path), 1, f"empty test file: expected a {TEST_KIND} document"))
    if diags:
        return [], diags
    results: list[CaseResult] = []
    for test in tests:
        # `policy: []` is no policy file (the fixtures' own Policy documents only), not the default <name>.yaml
        policy_paths = ([path.parent / p for p in test.spec.policy] if test.spec.policy is not None
                        else [policy_file_for(path)])
        policy_docs: list[Document] = []
        listed_at: dict[Path, int] = {}
        for k, policy_path in enumerate(policy_paths):
            named = test.spec.policy[k] if test.spec.policy else None
            problem = _unreadable_policy(policy_path, named)
            if problem is not None:
                listed = isinstance(test.raw.data["spec"].get("policy"), list)
                where = ("policy", k) if listed else ("policy",) if named is not None else ()
                diags.append(test.diag(problem, *where))
                continue
            first = listed_at.setdefault(policy_path.resolve(), k)
            if first != k:  # its Policy documents were read twice: "duplicate Policy name; first defined at" itself
                diags.append(test.diag(f"policy file {policy_path} is listed twice (spec.policy[{first}] names it "
                                       "too): list each policy file once", "policy", k))
                continue
            docs, more = policy_files.load(policy_path)
            diags.extend(d for d in more if d.severity == "error")
            policy_docs.extend(docs)
        shared, more = _fixtures(test, ("fleet",), test.spec.fleet)
        diags.extend(d for d in more if d.severity == "error")
        if diags:
            continue
        for i, case in enumerate(test.spec.cases):
            if select is not None and not select.search(f"{test.name}/{case.name}"):
                continue
            results.append(_run_case(test, i, case, shared, policy_docs, rules_for))
    return results, diags


def run(root: str | Path, rules_for: RulesFor, pattern: str | None = None) -> Report:
    """Every test case under ``root`` (a directory or one test file). ``pattern``: a regular
    expression over ``<test name>/<case name>`` selecting the cases to run."""
    select = re.compile(pattern) if pattern else None
    report = Report()
    policy_files = _PolicyFiles()
    for path in find_test_files(root):
        report.files.append(str(path))
        results, diags = run_file(path, rules_for, select, policy_files)
        report.cases.extend(results)
        report.file_errors.extend(diags)
    return report
