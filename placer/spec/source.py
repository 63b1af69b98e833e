"""Reading fleet directories into plain YAML documents with source positions.

Hostile input is refused early and cleanly: files over a size limit, binary data,
anchors and aliases (never expanded, so alias bombs cannot blow up), symlink loops,
too many documents, or nesting too deep.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from placer.spec.diagnostics import Diagnostic

MAX_FILE_BYTES = 1024 * 1024
MAX_TOTAL_BYTES = 16 * 1024 * 1024
MAX_DOCUMENTS = 50_000
MAX_DEPTH = 32
MAX_FILES = 10_000

Loc = tuple[str | int, ...]
YAML_SUFFIXES = (".yaml", ".yml")  # the files a fleet directory's walk reads
NOTHING_TO_PLAN = "nothing to plan"  # how a fleet without documents is refused; discover --merge may start one
# the file every GitOps tree `placer render` writes holds, beside its `clusters/` folder: the loader
# knows such a folder by it and skips its manifests (render --out FLEET/deploy failed the next plan
# on `unknown kind 'Deployment'`)
RENDERED_TFVARS = "terraform/placer.auto.tfvars.json"


@dataclass
class RawDocument:
    """One YAML document, as plain Python data, with the line of every key and item."""

    path: str
    line: int
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int:
        """The line of the deepest known prefix of ``loc``."""
        for n in range(len(loc), 0, -1):
            found = self.lines.get(tuple(loc[:n]))
            if found is not None:
                return found
        return self.line


# how PyYAML's scanner and parser name the end of the file or of a document, met before a closing quote or bracket
STREAM_ENDS = ("end of stream", "document separator", "<stream end>", "<document start>", "<document end>")
ALIAS_MESSAGE = "anchors and aliases (*name) are not allowed in fleet files; write the value out"
MERGE_MESSAGE = "merge keys (<<) are not allowed in fleet files; write the keys out"
TEXT_KEYS = frozenset({"version"})  # `version: 1.10` is the text 1.10, not the number 1.1


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases instead of sharing (and later expanding) nodes.

    The pure-Python loader: its messages are the ones users see. It reads every file that libyaml
    (``_CLoader``, 20 times faster) does not read cleanly, or may read differently (``_PURE_ONLY``).

    Booleans and numbers are read as YAML 1.2's core schema reads them, not as YAML 1.1
    (PyYAML's) does: ``rate: 1e6`` is a rate (1.1: the text "1e6"), ``count: 010`` is ten (1.1:
    octal eight; ``0o10`` is eight), ``1:30`` and ``3_000`` are text (1.1: 90 and 3000), and only
    true and false are booleans (1.1: yes, no, on, off as well, so ``jurisdiction: NO`` was false).
    """

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(problem=ALIAS_MESSAGE, problem_mark=event.start_mark)
        node: yaml.Node | None = super().compose_node(parent, index)
        return node


# YAML 1.2's core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution) in place of PyYAML's 1.1
# resolvers for booleans and numbers, on this loader only; int before float, which also matches "12".
_CORE_SCHEMA = (
    ("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), "tTfF"),
    ("tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), "-+0123456789"),
    ("tag:yaml.org,2002:float", re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                                           r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), "-+.0123456789"),
)
_NoAliasLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in {t for t, _, _ in _CORE_SCHEMA}]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, _regexp, _firsts in reversed(_CORE_SCHEMA):
    for _first in _firsts:
        _NoAliasLoader.yaml_implicit_resolvers.setdefault(_first, []).insert(0, (_tag, _regexp))


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    """An integer as YAML 1.2 reads it: decimal (a leading zero too), 0o octal or 0x hexadecimal."""
    text = str(loader.construct_scalar(node))
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text, 10)


_NoAliasLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


class _Resolver(yaml.resolver.BaseResolver):
    """The fleet loader's tag resolution alone, without a stream to read."""

    yaml_implicit_resolvers = _NoAliasLoader.yaml_implicit_resolvers

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        """The tag of a plain scalar depends on its text alone (there are no path resolvers): each
        text's is looked up once (a fleet's keys, kinds and figures repeat) and kept."""
        if kind is not yaml.ScalarNode or not implicit[0]:
            return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
        tag = _PLAIN_TAGS.get(value)
        if tag is None:
            if len(_PLAIN_TAGS) >= MOST_PLAIN_TAGS:
                _PLAIN_TAGS.clear()
            tag = _PLAIN_TAGS[value] = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
        return tag


MOST_PLAIN_TAGS = 50_000  # texts whose tags are kept (names are seldom met twice, so the store is emptied when full)
_PLAIN_TAGS: dict[str, str] = {}


_RESOLVER = _Resolver()


def _c_loader() -> Any:
    """libyaml's scanner, parser and composer with the fleet loader's tags and constructors; None
    where PyYAML was built without libyaml."""
    try:
        from yaml.cyaml import CParser as c_parser  # type: ignore[attr-defined]
    except ImportError:
        return None

    class CLoader(c_parser, yaml.constructor.SafeConstructor, _Resolver):  # type: ignore[valid-type,misc]
        yaml_constructors = _NoAliasLoader.yaml_constructors

        def __init__(self, stream: str) -> None:
            c_parser.__init__(self, stream)  # type: ignore[misc]
            yaml.constructor.SafeConstructor.__init__(self)
            _Resolver.__init__(self)  # type: ignore[no-untyped-call]

    return CLoader


_CLoader = _c_loader()

# Text the C route leaves to the pure-Python loader, as the two read it differently or only the pure
# loader has the words for it: '&' (an anchor: libyaml's composer shares the node an alias names,
# where the pure loader refuses the alias), '?' (in a flow collection PyYAML ends a plain scalar
# there and refuses the rest, `{name: a?b}`; libyaml reads on), tabs (libyaml takes some PyYAML
# refuses), NEL, LS and PS (line ends to both, counted alike or not), a BOM past the first character
# (libyaml skips one at any line's start), whatever PyYAML's reader refuses as unprintable, a tag
# that may be the bare "!" (an empty value tagged "!" is null to PyYAML, "" to libyaml), and a
# block scalar's header with a comment right after it (`|2#`: libyaml takes it, PyYAML refuses it).
_PURE_ONLY = re.compile("[^\n\r\x20-\x25\x27-\x3e\x40-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd"
                        "\U00010000-\U0010ffff]|(?<![^\\s\\[{,:?\ufeff])!|[|>][-+0-9]*#")


def plain_tag(text: str) -> str:
    """The tag the fleet loader gives ``text`` written plain (unquoted): ``tag:yaml.org,2002:str`` where it
    reads as that text, else the number, boolean, null or date it reads as (``8e1``: a float)."""
    return str(_RESOLVER.resolve(yaml.ScalarNode, text, (True, False)))  # type: ignore[no-untyped-call]


class _TooDeep(Exception):
    pass


STR_TAG = "tag:yaml.org,2002:str"


def _construct(loader: Any, node: yaml.Node) -> Any:
    """The Python value of a key or scalar node: the text of a text scalar as PyYAML's constructor
    gives it (``construct_yaml_str``: the node's value), without its bookkeeping, most of the
    time of a large fleet's reading; any other node as the loader constructs it."""
    if node.tag == STR_TAG and isinstance(node, yaml.ScalarNode):
        return node.value
    return loader.construct_object(node)


def _to_python(
    loader: Any, node: yaml.Node, loc: Loc, lines: dict[Loc, int], depth: int, diags: list[str]
) -> Any:
    if depth > MAX_DEPTH:
        raise _TooDeep()
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        first: dict[tuple[str, Any], int] = {}  # the line of each key, by its tag too: the keys 1 and true are two
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # PyYAML has no constructor for it (an alias it would expand)
                raise yaml.MarkedYAMLError(problem=MERGE_MESSAGE, problem_mark=key_node.start_mark)
            key = _construct(loader, key_node)
            if isinstance(key, list | dict):
                diags.append(f"{key_node.start_mark.line + 1}:mapping keys must be plain scalars")
                continue
            line = key_node.start_mark.line + 1
            if (key_node.tag, key) in first:
                # at a document's top, apiVersion or kind again is most often a document without its '---'
                new_document = "; or, where a new document starts here, put a line --- before it" \
                    if not loc and key in ("apiVersion", "kind") else ""
                diags.append(f"{line}:duplicate key {key!r}, first at line {first[(key_node.tag, key)]}: "
                             f"keep one of the two{new_document}")
            else:
                first[(key_node.tag, key)] = line
            child = (*loc, key)
            lines[child] = line
            out[key] = _to_python(loader, value_node, child, lines, depth + 1, diags)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            child = (*loc, i)
            lines[child] = item.start_mark.line + 1
            items.append(_to_python(loader, item, child, lines, depth + 1, diags))
        return items
    if loc and loc[-1] in TEXT_KEYS and isinstance(node, yaml.ScalarNode) and node.tag != "tag:yaml.org,2002:null":
        return node.value  # `version: null` (or ~, or nothing) is no version, not the text "null"
    try:
        return _construct(loader, node)
    except ValueError:  # an impossible date such as 2024-13-45: keep the text, the schema says why
        return node.value


def _tab_problem(mark: yaml.Mark | None) -> str:
    """Where a tab PyYAML refuses is: in the indentation, or between or after values (``rate: 1.0<tab>``)."""
    before = mark.buffer[mark.pointer - mark.column:mark.pointer] if mark is not None and mark.buffer else ""
    if mark is not None and before.strip(" "):
        return f"a tab character at column {mark.column + 1}: use spaces between and after values, never tabs"
    return "a tab character where YAML expects spaces: indent with spaces, never tabs"


def parse_text(text: str, path: str, what: str = "fleet") -> tuple[list[RawDocument], list[Diagnostic]]:
    """Parse every document of one file; problems come back as diagnostics. ``what``: the kind of
    file, in messages (anchors are not allowed in "policy test" files).

    libyaml reads it where it can (``_read_fast``), and says the problems it finds in a document's
    keys and its count (a duplicate key, a key that is a list, too many documents); the pure-Python
    loader where libyaml is not installed, the text holds what the two may read differently, or
    libyaml stops on what only the pure loader has the words and the line for (a syntax error)."""
    if _libyaml_reads_alike(text):
        read = _read_fast(text, path)
        if read is not None:
            return read
    return _read_pure(text, path, what)


def _libyaml_reads_alike(text: str) -> bool:
    """Whether libyaml is here and reads ``text`` as the pure-Python loader does, if it reads it at all.
    Not where the last line has no line end: libyaml adds one, and an empty value there is a line on."""
    ended = text.endswith(("\n", "\r")) or not text
    return _CLoader is not None and ended and not _PURE_ONLY.search(text, 1 if text.startswith("\ufeff") else 0)


def _read_fast(text: str, path: str) -> tuple[list[RawDocument], list[Diagnostic]] | None:
    """Every document as libyaml reads it, with a diagnostic for each duplicate or non-scalar key
    and for more than MAX_DOCUMENTS documents, at the lines and in the words of ``_read_pure``; None
    where it stops on anything else (a syntax error, a merge key, nesting too deep): the pure-Python
    loader reads that file again and says what, in its words and at its lines. (Every problem sent
    the file to the pure loader: a 1 MB file of duplicate keys took over a minute.)"""
    assert _CLoader is not None
    docs: list[RawDocument] = []
    diags: list[Diagnostic] = []
    loader = _CLoader(text)
    try:
        _read_documents(loader, path, docs, diags, say_too_deep=False)
    except Exception:  # whatever it is, the pure-Python loader names it
        return None
    finally:
        loader.dispose()
    return docs, diags


def _read_documents(loader: Any, path: str, docs: list[RawDocument], diags: list[Diagnostic],
                    say_too_deep: bool) -> None:
    """Each document of ``loader``'s stream (libyaml's or the pure-Python one) into ``docs``, with a
    diagnostic in ``diags`` for each duplicate or non-scalar key and for more than MAX_DOCUMENTS
    documents (the rest unread). A document nested deeper than MAX_DEPTH is a diagnostic, and the
    stream read on, where ``say_too_deep``; else ``_TooDeep`` is raised. Whatever the loader raises
    is raised, ``docs`` and ``diags`` keeping what came before it."""
    while loader.check_node():
        node = loader.get_node()
        if node is None:
            continue
        if len(docs) >= MAX_DOCUMENTS:
            diags.append(Diagnostic(path, node.start_mark.line + 1, f"more than {MAX_DOCUMENTS} documents"))
            break
        lines: dict[Loc, int] = {}
        problems: list[str] = []
        try:
            data = _to_python(loader, node, (), lines, 0, problems)
        except _TooDeep:
            if not say_too_deep:
                raise
            diags.append(Diagnostic(path, node.start_mark.line + 1, f"document nested deeper than {MAX_DEPTH} levels"))
            continue
        diags += _located(path, problems)
        docs.append(RawDocument(path=path, line=node.start_mark.line + 1, data=data, lines=lines))


def _located(path: str, problems: list[str]) -> list[Diagnostic]:
    """``_to_python``'s problems ("12:duplicate key ...") as diagnostics of ``path``."""
    return [Diagnostic(path, int(where), msg) for where, msg in (p.split(":", 1) for p in problems)]


def _read_pure(text: str, path: str, what: str = "fleet") -> tuple[list[RawDocument], list[Diagnostic]]:
    """Every document as the pure-Python loader reads it, with a diagnostic for each problem."""
    docs: list[RawDocument] = []
    diags: list[Diagnostic] = []
    loader = None
    try:
        loader = _NoAliasLoader(text)
        _read_documents(loader, path, docs, diags, say_too_deep=True)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or str(exc)
        if problem in (ALIAS_MESSAGE, MERGE_MESSAGE):
            problem = problem.replace("in fleet files", f"in {what} files")
        if any(end in problem for end in STREAM_ENDS):  # an unclosed quote, '{' or '[': where it opened
            opened = exc.context_mark
            if (opened is None or mark is None or opened.index >= mark.index) and loader is not None and loader.marks:
                opened = loader.marks[-1]  # "while parsing a flow node" marks the end itself: the innermost '[' or '{'
            mark = opened or mark
        last = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
        line = min(mark.line + 1, last) if mark is not None else 1  # never past the file's last line
        if "'\\t'" in problem or "\t" in problem:
            problem = _tab_problem(mark)
        elif exc.context:
            problem = f"{exc.context}: {problem}" if exc.context not in problem else problem
        diags.append(Diagnostic(path, line, f"invalid YAML: {problem}"))
    except yaml.reader.ReaderError as exc:  # control characters and the like
        line = text[: max(0, exc.position)].count("\n") + 1
        what = f"unacceptable character #x{exc.character:04x}" if isinstance(exc.character, int) else "unreadable text"
        diags.append(Diagnostic(path, line, f"invalid YAML: {what}: {exc.reason}"))
    except yaml.YAMLError as exc:
        diags.append(Diagnostic(path, 1, f"invalid YAML: {exc}"))
    except RecursionError:
        diags.append(Diagnostic(path, 1, "invalid YAML: nested too deeply"))
    finally:
        if loader is not None:
            loader.dispose()
    return docs, diags


def _walk(root: Path, diags: list[Diagnostic]) -> list[Path]:
    """Every *.yaml / *.yml below root, in sorted path order; links are followed once."""
    found: list[Path] = []
    seen_dirs: set[str] = set()

    def visit(directory: Path) -> None:
        real = os.path.realpath(directory)
        if real in seen_dirs:
            diags.append(Diagnostic(str(directory), 1, "symbolic link loop: this directory was already read"))
            return
        seen_dirs.add(real)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            diags.append(Diagnostic(str(directory), 1, f"cannot read directory: {exc.strerror}"))
            return
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()
                is_file = entry.is_file()
            except OSError:
                is_dir = is_file = False
            if (is_dir or entry.name.endswith(YAML_SUFFIXES)) \
                    and any(unicodedata.category(c) == "Cc" for c in entry.name):
                # printed in every diagnostic of the file: a line break forged a diagnostic line, an
                # escape code reached the terminal (and its documents were read as any other)
                diags.append(Diagnostic(str(path), 1, f"this {'directory' if is_dir else 'file'} name holds a control "
                                        "character: rename it; it was not read"))
                continue
            if entry.is_symlink() and not os.path.exists(entry.path):
                if entry.name.endswith(YAML_SUFFIXES):
                    diags.append(Diagnostic(str(path), 1, "broken or looping symbolic link"))
                continue
            if is_dir and entry.name == "clusters" and (directory / RENDERED_TFVARS).is_file():
                diags.append(Diagnostic(str(path), 1, "skipped: the manifests of a GitOps tree placer rendered "
                                        f"(beside {directory / RENDERED_TFVARS}), no fleet documents; render it "
                                        "outside the fleet (placer render PLAN --out ../deploy) to drop this note",
                                        severity="warning"))
            elif is_dir:
                visit(path)
            elif is_file and entry.name.endswith(YAML_SUFFIXES):
                found.append(path)
                if len(found) > MAX_FILES:
                    raise OverflowError
            elif entry.name.endswith(YAML_SUFFIXES):  # a FIFO, a device, a socket (or a link to one): never read
                diags.append(Diagnostic(str(path), 1, f"skipped: {not_regular(path)}, not a regular file, so not "
                                        "read; remove it or rename it without .yaml to drop this note",
                                        severity="warning"))

    try:
        visit(root)
    except OverflowError:
        diags.append(Diagnostic(str(root), 1, f"more than {MAX_FILES} YAML files below this directory, the most a fleet "
                                "may have: name the fleet's own directory, not one above it"))
    return sorted(found, key=lambda p: str(p))


# what a path is, where it is no regular file: the words of ``not_regular``
_FILE_TYPES = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"))


def _file_type(mode: int) -> str:
    return next((words for test, words in _FILE_TYPES if test(mode)), "not a file")


def not_regular(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is, where it is no regular file to read (links followed): "no such file or
    directory", "a directory", "a character device", "a named pipe (FIFO)", ...; None for a regular file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "no such file or directory"
    return None if stat.S_ISREG(mode) else _file_type(mode)


# what to do with a file over MAX_FILE_BYTES, by the kind of file read
SPLIT_ADVICE = {"fleet": f"split its documents over several files (a fleet may hold {MAX_TOTAL_BYTES // 2**20} MiB in all)",
                "policy": "split its policies over several files",
                "policy test": "split its tests over several files"}


def _too_big(shown: str, size: int, what: str) -> Diagnostic:
    advice = SPLIT_ADVICE.get(what, "split it over several files")
    return Diagnostic(shown, 1, f"file is {size} bytes, over the {MAX_FILE_BYTES}-byte ({MAX_FILE_BYTES // 2**20} MiB) "
                      f"limit for {what} files: {advice}")


def _decode(raw: bytes, shown: str, what: str) -> tuple[str | None, Diagnostic | None]:
    """A file's bytes as text, or why they are none: UTF-16, binary, or not UTF-8."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None, Diagnostic(shown, 1, "UTF-16 text, not UTF-8: save the file as UTF-8")
    if b"\x00" in raw:
        return None, Diagnostic(shown, 1, "binary file (contains NUL bytes), not YAML")
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return None, Diagnostic(shown, line, f"not UTF-8 text; {what} files must be UTF-8 YAML")


def read_file(path: str | os.PathLike[str], what: str = "fleet") -> tuple[list[RawDocument], list[Diagnostic]]:
    """Every document of one YAML file, read as the fleet loader reads each of its files: a
    regular file only (a device, FIFO or directory is refused, never read: /dev/zero filled the
    memory, a FIFO waited for ever), at most MAX_FILE_BYTES, UTF-8 text. ``what``: the kind of
    file, in messages ("fleet", "policy", "policy test")."""
    shown = str(path)
    if any(unicodedata.category(c) == "Cc" for c in shown):  # printed with every result and diagnostic of it
        return [], [Diagnostic(shown, 1, "this path holds a control character: rename it; it was not read")]
    try:  # non-blocking: a FIFO opens at once (and is refused below) where a plain open waits for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        return [], [Diagnostic(shown, 1, f"cannot read file: {exc.strerror or exc}")]
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
        os.close(fd)
        if not stat.S_ISREG(info.st_mode):
            return [], [Diagnostic(shown, 1, f"not a regular file ({_file_type(info.st_mode)}): name a YAML file")]
        return [], [_too_big(shown, info.st_size, what)]
    with os.fdopen(fd, "rb") as handle:
        try:
            raw = handle.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            return [], [Diagnostic(shown, 1, f"cannot read file: {exc.strerror or exc}")]
    if len(raw) > MAX_FILE_BYTES:  # grown since it was measured
        return [], [_too_big(shown, len(raw), what)]
    text, problem = _decode(raw, shown, what)
    if text is None:
        return [], [problem] if problem is not None else []
    return parse_text(text, shown, what)


def _meant(missing: Path) -> str:
    """'; did you mean examples/hybrid?' where a folder or YAML file beside a missing fleet path is
    named much as it is (a typo said "no such file or directory" and nothing of what to give), or ''.
    ``-`` is standard input, which a fleet is not read from (as a plan file is not)."""
    if str(missing) == "-":
        return ("; a fleet is not read from standard input: save it to a file (> fleet.yaml) and give that, "
                "or the fleet's directory")
    try:
        beside = [entry.name for entry in os.scandir(missing.parent)
                  if entry.is_dir() or entry.name.endswith(YAML_SUFFIXES)]
    except OSError:
        return ""
    match = difflib.get_close_matches(missing.name, beside, n=1, cutoff=0.75)
    return f"; did you mean {missing.parent / match[0]}?" if match else ""


def read_fleet_dir(root: str | os.PathLike[str], progress: Callable[[str], None] | None = None
                   ) -> tuple[list[RawDocument], list[Diagnostic]]:
    """Read every fleet document below ``root`` (a directory, or a single YAML file). ``progress``:
    told "reading fleet: 12 of 51 files" as each file is read."""
    say = progress or (lambda _msg: None)
    say("reading fleet")
    base = Path(root)
    diags: list[Diagnostic] = []
    if not base.exists():
        return [], [Diagnostic(str(base), 0, "no such file or directory" + _meant(base))]
    files = _walk(base, diags) if base.is_dir() else [base]  # a device or FIFO named: read_file refuses it
    if not files and not any(d.severity == "error" for d in diags):  # a FIFO or rendered tree skipped is no fleet
        skipped = " but those skipped below" if diags else ""
        diags.append(Diagnostic(str(base), 0, f"no *.yaml or *.yml files in this directory{skipped}: {NOTHING_TO_PLAN}"))
    docs: list[RawDocument] = []
    sized: list[Path] = []
    total = 0
    for path in files:  # every size first: a fleet over the limit is refused before any file is parsed
        try:
            size = path.stat().st_size
        except OSError as exc:
            diags.append(Diagnostic(str(path), 1, f"cannot read file: {exc.strerror}"))
            continue
        if size > MAX_FILE_BYTES:
            diags.append(_too_big(str(path), size, "fleet"))
            continue
        sized.append(path)
        total += size
    if total > MAX_TOTAL_BYTES:
        diags.append(Diagnostic(str(base), 0, f"the {len(sized)} YAML files here are {total} bytes in all, over the "
                                f"{MAX_TOTAL_BYTES}-byte ({MAX_TOTAL_BYTES // 2**20} MiB) limit for a fleet; none was read: name "
                                "the fleet's own directory, not one above it"))
        return [], diags
    for i, path in enumerate(sized, 1):
        say(f"reading fleet: {i:,} of {len(sized):,} files")
        file_docs, file_diags = read_file(path)
        docs.extend(file_docs)
        diags.extend(file_diags)
    if files and not diags and all(doc.data is None for doc in docs):
        held = "this file holds" if base.is_file() else "the YAML files in this directory hold"
        diags.append(Diagnostic(str(base), 0, f"{held} no documents (empty, or only comments): {NOTHING_TO_PLAN}"))
    return docs, diags
