"""From raw YAML documents to typed, located documents (layer 1 of validation: shape).

Checks the envelope (apiVersion, kind, metadata) and the spec against its typed model,
turning every pydantic error into a Diagnostic at the right file and line, with a
"did you mean" for misspelt fields, kinds, rules and values of a closed list.
Cross-document checks (references, duplicates) are the fleet's job (``placer.fleet``).
"""

from __future__ import annotations

import datetime
import difflib
import re
import shlex
import sys
import types
import typing
import unicodedata
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from placer.spec.diagnostics import MOST_PER_FILE, Diagnostic
from placer.spec.kinds import API_VERSION, DNS1123_LABEL, GPU_TYPE_NAME, KINDS, SPEC_TYPES, Metadata, Selector
from placer.spec.rules import Rule
from placer.spec.source import Loc, RawDocument, plain_tag

ENVELOPE_KEYS = ("apiVersion", "kind", "metadata", "spec")
YAML11_BOOLEANS = frozenset({"yes", "no", "on", "off", "y", "n"})  # booleans in YAML 1.1, text in 1.2


@dataclass(frozen=True)
class Document:
    """A validated fleet document: its kind, name, labels, typed spec, and where it came from."""

    kind: str
    name: str
    labels: dict[str, str]
    spec: Any
    raw: RawDocument

    @property
    def path(self) -> str:
        return self.raw.path

    @property
    def line(self) -> int:
        return self.raw.line

    def line_of(self, *loc: str | int) -> int:
        return self.raw.line_of(tuple(loc))

    def diag(self, field: str, message: str, *loc: str | int, severity: str = "error") -> Diagnostic:
        """A diagnostic about ``field`` of this document, located at ``loc`` (YAML keys)."""
        return Diagnostic(
            path=self.path,
            line=self.line_of(*loc) if loc else self.line,
            message=message,
            kind=self.kind,
            name=self.name,
            field=field,
            severity=severity,  # type: ignore[arg-type]
        )


def suggest(word: str, choices: typing.Iterable[str]) -> str:
    """' (did you mean X?)' for the closest choice, or ''."""
    match = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    if not match:
        lowered = {c.lower(): c for c in choices}
        if str(word).lower() in lowered:
            match = [lowered[str(word).lower()]]
    return f"; did you mean {match[0]!r}?" if match else ""


def _unwrap(annotation: Any) -> Any:
    """Strip Optional and Annotated layers from a type annotation."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The pydantic model class that validates the value at ``loc`` (aliases), if any."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            by_alias = {(info.alias or name): info for name, info in current.model_fields.items()}
            info = by_alias.get(str(part))
            if info is None:
                return None
            current = info.annotation
        elif typing.get_origin(current) in (list, dict):
            current = typing.get_args(current)[-1]
        else:
            return None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _aliases(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def error_where(prefix: Loc, err: Any) -> tuple[str, Loc]:
    """The field to name and the YAML keys to find the line of, for a pydantic error under ``prefix``."""
    loc: Loc = (*prefix, *err["loc"])
    # a key that is not text: of a mapping of text (labels), at [key]; of a document's fields, as the
    # last part (spec[2], spec.None); pydantic writes a key true as 1: name the key as written
    if loc[-1] == "[key]" or err["type"] == "invalid_key":
        key = err["input"]
        parent = loc[:-2] if loc[-1] == "[key]" else loc[:-1]
        return f"{_dotted(parent)}.{key_as_written(key)}", typing.cast(Loc, (*parent, key))
    return _dotted(loc), loc


def key_as_written(key: Any) -> str:
    """A mapping key as YAML wrote it: true, false, null, 12, 2026-01-01 (Python's True, None, datetime.date(...))."""
    if key is None or isinstance(key, bool):
        return shown(key)
    return str(key)


def shown(value: Any) -> str:
    """A value in a message, in YAML's words: null, true, false, a list, a mapping; else as written
    (3, 'text', 2026-01-01). Python's type names ("got NoneType", "got True") are not the file's."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return "a list" if isinstance(value, list) else "a mapping"
    return str(value) if isinstance(value, datetime.date) else repr(value)


def error_message(err: Any, root: type[BaseModel], loc: Loc) -> str:
    """One pydantic error under ``root`` at ``loc``, in the fleet loader's words (also a policy test file's)."""
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _model_at(root, loc[:-1])
        choices = _aliases(parent) if parent else []
        if parent is Rule:
            return f"unknown rule {loc[-1]!r}{suggest(str(loc[-1]), choices)}; rules are: {', '.join(choices)}"
        hint = suggest(str(loc[-1]), choices)
        if not hint and choices:
            hint = f"; known fields: {', '.join(choices)}"
        return f"unknown field{hint}"
    if kind == "missing":
        return "required field is missing"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        got = err.get("input")
        target = _model_at(root, loc)
        if target is Rule:
            return f"must be a mapping with exactly one rule, e.g. {{allowPools: {{}}}}, got {shown(got)}"
        if target is Selector:
            fields = "names, labels, workload" if loc and loc[-1] == "models" else "names, labels, jurisdiction, ..."
            return f"must be a mapping (a selector: {fields}), got {shown(got)}"
        return f"must be a mapping (key: value), got {shown(got)}"
    if kind == "finite_number":
        return "must be a finite number (not .inf or .nan)"
    if kind == "less_than_equal":  # the ceilings every number has (kinds.MOST): "1000000000000" is hard to read
        most = (err.get("ctx") or {}).get("le")
        if isinstance(most, int | float) and most >= 1e6:
            return f"must be at most {most:g}, got {err.get('input')!r}: no fleet needs more, and beyond it a " \
                   "plan's figures stop being numbers"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if kind == "literal_error" and isinstance(err.get("input"), str):  # "Input should be 'aws', 'gcp' or ..."
        choices = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
        msg = f"{msg}, got {err['input']!r}{suggest(err['input'], choices)}"
    if kind == "invalid_key":  # a field's key that is not text (spec: {2: x}): as a text key of labels is said
        kind, loc = "string_type", (*loc[:-1], "[key]")
    if kind in ("int_type", "float_type", "bool_type", "string_type", "list_type", "dict_type", "date_type"):
        got = err.get("input")
        if kind in ("int_type", "float_type") and isinstance(got, str) and plain_tag(got).endswith(":int") \
                and len(got.lstrip("+-")) > sys.get_int_max_str_digits():
            # written plain, too many digits for Python to read as a number: the loader kept the text
            return f"a number of {len(got.lstrip('+-')):,} digits, too many to read; no fleet needs more than 1e12"
        if loc and loc[-1] == "[key]":
            msg = "a key must be text"
        if not isinstance(got, dict | list):
            msg = f"{msg}, got {shown(got)}"
        if kind == "string_type" and isinstance(got, bool | int | float | datetime.date):
            msg += "; put it in quotes: YAML reads unquoted 12, 1e6, true or 2026-01-01 as a number, a boolean or a date"
        if kind == "int_type" and isinstance(got, float) and got.is_integer():
            # an editor cannot flag it: JSON Schema's integer is any whole number, 8.0 among them
            msg += f"; write {int(got)}, without the decimal point" if abs(got) < 1e15 else \
                "; write a whole number without a decimal point or exponent"
        if kind == "bool_type" and isinstance(got, str) and got.lower() in YAML11_BOOLEANS:
            msg += "; write true or false: placer reads YAML 1.2, where yes, no, on and off are text"
    return msg


def kind_and_name(data: Any) -> tuple[str, str] | None:
    """A raw document's kind and metadata.name, where both are text (whatever else is wrong with it)."""
    if not isinstance(data, dict) or not isinstance(data.get("metadata"), dict):
        return None
    kind, name = data.get("kind"), data["metadata"].get("name")
    return (kind, name) if isinstance(kind, str) and isinstance(name, str) else None


def check_name(kind: str, name: Any) -> str | None:
    """Why ``name`` is not a valid metadata.name for ``kind``, or None."""
    if not isinstance(name, str) or not name:
        return "required: a non-empty string"
    if kind == "GPUType":
        if not GPU_TYPE_NAME.fullmatch(name) or len(name) > 63:
            return f"{name!r} is not a valid GPU type name (letters, digits, '.', '_' and '-', at most 63)"
        return None
    if len(name) > 63 or not DNS1123_LABEL.fullmatch(name):
        return (
            f"{name!r} is not a DNS-1123 label (lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters)"
        )
    return None


def controls(value: Any, loc: Loc) -> list[tuple[Loc, str]]:
    """Where a document's text (keys and values) holds a control character, and the first one:
    a tab anywhere, a line break in a description, and no other (an escape code in a version
    cleared the terminal that printed the plan, and a line break in it broke the pull request's
    comment)."""
    found: list[tuple[Loc, str]] = []
    _controls(value, loc, found)
    return found


def _controls(value: Any, loc: Loc, found: list[tuple[Loc, str]]) -> None:
    """``controls``, adding to ``found``."""
    # a number, boolean, date or printable text holds none: only the rest is looked into (every
    # value of bench XL's 11,361 documents was, 639,299 calls)
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, dict | list) or (isinstance(key, str) and not key.isprintable()):
                _controls(key, (*loc, str(key)), found)
            if isinstance(item, dict | list) or (isinstance(item, str) and not item.isprintable()):
                _controls(item, (*loc, str(key)), found)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict | list) or (isinstance(item, str) and not item.isprintable()):
                _controls(item, (*loc, i), found)
    elif isinstance(value, str) and not value.isprintable():  # printable text holds no Cc or Cf character
        described = bool(loc) and loc[-1] == "description"
        allowed = "\t\n" if described else "\t"
        # and, but in a description, an invisible format character (zero-width, bidi override): a
        # jurisdiction "U\u200bS" looked like US and no selector's US matched it, "\u202e" reordered a line
        hidden = ("Cc",) if described else ("Cc", "Cf")
        bad = next((c for c in value if unicodedata.category(c) in hidden and c not in allowed), None)
        if bad is not None:
            found.append((loc, bad))


def load_document(raw: RawDocument) -> tuple[Document | None, list[Diagnostic]]:
    """Validate one raw document's envelope and spec."""
    diags: list[Diagnostic] = []
    data = raw.data
    if data is None:
        return None, []
    if not isinstance(data, dict):
        return None, [Diagnostic(raw.path, raw.line, "a fleet document must be a mapping with apiVersion, kind, metadata and spec")]

    kind = data.get("kind")
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    name = metadata.get("name") if isinstance(metadata, dict) else None
    shown_kind = kind if isinstance(kind, str) else ""
    shown_name = name if isinstance(name, str) else ""

    def d(field: str, message: str, loc: Loc) -> Diagnostic:
        return Diagnostic(raw.path, raw.line_of(loc), message, shown_kind, shown_name, field)

    if "formatVersion" in data and "changes" in data and "kind" not in data and "apiVersion" not in data:
        # a plan file named as the fleet: one line, where each of its fields was an "unknown field"
        return None, [Diagnostic(raw.path, raw.line, "a placer plan file, not a fleet document: name the fleet's "
                                 f"directory instead; `placer show {shlex.quote(raw.path)}` prints this plan, "
                                 f"`placer apply {shlex.quote(raw.path)}` applies it")]
    for n, key in enumerate(key for key in data if key not in ENVELOPE_KEYS):
        # a "did you mean" for those of a file that are printed (MOST_PER_FILE): one for each of
        # 100,000 unknown keys took 10 s, for lines never printed
        hint = suggest(str(key), ENVELOPE_KEYS) if n < MOST_PER_FILE else ""
        diags.append(d(str(key), f"unknown field{hint}", (key,)))
    # a value holding a control character is said once: not also as a value its rule refuses (a
    # jurisdiction "E\eU" was said twice, as a control character and as no label text)
    controlled: set[Loc] = set()
    for loc, char in controls(data, ()):
        controlled.add(loc)
        if unicodedata.category(char) == "Cf":
            diags.append(d(_dotted(loc) or "(document)", f"contains the invisible format character {char!r}: it hides "
                           "or reorders text on screen (a jurisdiction 'U\\u200bS' looks like US, and no selector's US "
                           "matches it); remove it (a description may hold one)", loc))
            continue
        diags.append(d(_dotted(loc) or "(document)", f"contains the control character {char!r}: YAML's escapes (\"\\e\", "
                       "\"\\x1b\") let one in, and it would reach terminals, manifests and pull-request comments as "
                       "it is (a line break only in a description); remove it", loc))
    api = data.get("apiVersion")
    if api is None:
        diags.append(d("apiVersion", f"required field is missing; use {API_VERSION}", ()))
    elif api != API_VERSION:
        diags.append(d("apiVersion", f"unknown apiVersion {api!r}; this placer reads {API_VERSION}", ("apiVersion",)))
    if kind is None:
        diags.append(d("kind", f"required field is missing; one of {', '.join(KINDS)}", ()))
        return None, diags
    if not isinstance(kind, str):
        diags.append(d("kind", f"must be a string, one of {', '.join(KINDS)}; got {kind!r}", ("kind",)))
        return None, diags
    if kind == "PolicyTest":
        diags.append(d("kind", "PolicyTest documents are test cases for `placer policy test`; keep them out of "
                       "the fleet directory", ("kind",)))
        return None, diags
    if kind not in SPEC_TYPES:
        diags.append(d("kind", f"unknown kind {kind!r}{suggest(str(kind), KINDS)}; kinds are {', '.join(KINDS)}", ("kind",)))
        return None, diags

    if "metadata" not in data:
        diags.append(d("metadata", "required field is missing (metadata.name names the document)", ()))
        return None, diags
    if not isinstance(data["metadata"], dict):
        diags.append(d("metadata", "must be a mapping with name (and optionally labels)", ("metadata",)))
        return None, diags
    problem = check_name(kind, name)
    if problem:
        diags.append(d("metadata.name", problem, ("metadata", "name") if isinstance(metadata, dict) and "name" in metadata else ("metadata",)))
    try:
        meta = Metadata.model_validate(metadata)
    except ValidationError as exc:
        for err in exc.errors():
            if err["loc"] == ("name",):
                continue  # reported above
            field, loc = error_where(("metadata",), err)
            if loc not in controlled:
                diags.append(d(field, error_message(err, Metadata, tuple(err["loc"])), loc))
        meta = None

    spec_type = SPEC_TYPES[kind]
    spec_data = data.get("spec")
    if spec_data is None:
        if kind == "Settings":
            spec_data = {}
        elif "spec" in data:
            diags.append(d("spec", f"is empty: write the {kind}'s fields under it", ("spec",)))
            return None, diags
        else:
            diags.append(d("spec", "required field is missing", ()))
            return None, diags
    if not isinstance(spec_data, dict):
        diags.append(d("spec", f"must be a mapping, got {shown(spec_data)}", ("spec",)))
        return None, diags
    try:
        spec = spec_type.model_validate(spec_data)
    except ValidationError as exc:
        for err in exc.errors():
            field, where = error_where(("spec",), err)
            if where not in controlled:
                diags.append(d(field, error_message(err, spec_type, tuple(err["loc"])), where))
        return None, diags
    if diags or meta is None:
        return None, diags
    return Document(kind=kind, name=meta.name, labels=dict(meta.labels), spec=spec, raw=raw), diags
