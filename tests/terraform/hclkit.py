"""Reading Terraform modules with python-hcl2, for checks that need no provider: the
shape of a variable's type constraint, and which attributes of placer's pool objects
a module's expressions read."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

# ---------------------------------------------------------------- type constraints


@dataclass(frozen=True)
class TfType:
    """A parsed type constraint: kind is a primitive name, 'any', 'map', 'list', 'set',
    'object' or 'tuple'; optional marks an object attribute wrapped in optional()."""

    kind: str
    element: TfType | None = None
    attributes: dict[str, TfType] = field(default_factory=dict)
    optional: bool = False


_TOKEN = re.compile(r'\s*(?:(?P<name>[A-Za-z_][\w-]*)|(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>-?\d+(?:\.\d+)?)|(?P<p>[(){}\[\],=:]))')


def _tokens(text: str) -> list[str]:
    out, pos, text = [], 0, text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ValueError(f"cannot tokenize type at {text[pos:pos + 30]!r}")
        out.append(match.group(match.lastgroup or "p"))
        pos = match.end()
    return out


class _TypeParser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise ValueError(f"expected {expected!r}, got {tok!r}")
        self.i += 1
        return tok

    def skip_expression(self) -> None:
        """Skip a default value up to the ',' or ')' that ends it."""
        depth = 0
        while (tok := self.peek()) is not None:
            if depth == 0 and tok in {",", ")"}:
                return
            depth += tok in {"(", "[", "{"}
            depth -= tok in {")", "]", "}"}
            self.i += 1

    def parse(self) -> TfType:
        name = self.take()
        if name in {"string", "number", "bool", "any"}:
            return TfType(name)
        self.take("(")
        if name in {"map", "list", "set"}:
            result = TfType(name, element=self.parse())
        elif name == "optional":
            inner = self.parse()
            if self.peek() == ",":
                self.take(",")
                self.skip_expression()
            result = TfType(inner.kind, inner.element, inner.attributes, optional=True)
        elif name == "object":
            self.take("{")
            attributes: dict[str, TfType] = {}
            while self.peek() != "}":
                key = self.take().strip('"')
                self.take("=") if self.peek() == "=" else self.take(":")
                attributes[key] = self.parse()
                if self.peek() == ",":
                    self.take(",")
            self.take("}")
            result = TfType("object", attributes=attributes)
        elif name == "tuple":
            self.take("[")
            while self.peek() != "]":
                self.parse()
                if self.peek() == ",":
                    self.take(",")
            self.take("]")
            result = TfType("tuple")
        else:
            raise ValueError(f"unknown type constructor {name!r}")
        self.take(")")
        return result


def parse_type(expression: str) -> TfType:
    text = expression.strip()
    if text.startswith("${") and text.endswith("}"):
        text = text[2:-1]
    parser = _TypeParser(text)
    result = parser.parse()
    if parser.peek() is not None:
        raise ValueError(f"trailing tokens in type {expression!r}")
    return result


# ---------------------------------------------------------------- module reading


def _unquote(label: str) -> str:
    return label.strip('"')


def load_module(directory: Path) -> dict[str, list[Any]]:
    """Every top-level block of the module's *.tf files, merged by block type."""
    merged: dict[str, list[Any]] = {}
    for path in sorted(directory.glob("*.tf")):
        with path.open() as handle:
            for block_type, blocks in hcl2.load(handle).items():
                merged.setdefault(block_type, []).extend(blocks)
    return merged


def variables(module: dict[str, list[Any]]) -> dict[str, dict[str, Any]]:
    return {_unquote(name): body for block in module.get("variable", []) for name, body in block.items()}


def locals_(module: dict[str, list[Any]]) -> dict[str, Any]:
    return {name: value for block in module.get("locals", []) for name, value in block.items() if name != "__is_block__"}


def resources(module: dict[str, list[Any]]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for block in module.get("resource", []):
        for rtype, named in block.items():
            for rname, body in named.items():
                yield _unquote(rtype), _unquote(rname), body


def strings(node: Any) -> Iterator[str]:
    """Every string (expression) inside a parsed block, keys of maps included."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


_IDENT_PATH = r"((?:\.[A-Za-z_]\w*)+)"


def pool_locals(module: dict[str, list[Any]], variable: str = "placer_pools") -> set[str]:
    """Locals whose value is a filtered copy of var.<variable> (their values are pool objects):
    `{ for k, p in var.placer_pools : k => p if ... }`, or the same over such a local."""
    found: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, value in locals_(module).items():
            if name in found or not isinstance(value, str):
                continue
            match = re.fullmatch(r"\$\{\{\s*for\s+\w+\s*,\s*(\w+)\s+in\s+(var\.\w+|local\.\w+)\s*:\s*\w+\s*=>\s*(\w+)(\s+if\s+.*)?\}\}",
                                 value.strip(), re.S)
            if not match or match.group(1) != match.group(3):
                continue
            source = match.group(2)
            if source == f"var.{variable}" or source.removeprefix("local.") in found:
                found.add(name)
                changed = True
    return found


def pool_attribute_paths(module: dict[str, list[Any]], variable: str = "placer_pools") -> set[str]:
    """Dotted attribute paths the module reads from the pool objects of var.<variable>:
    through for-expression iteration variables over it (or over its filtered copies),
    through each.value in resources for_each'd over those copies, and by var.<variable>[key]."""
    sources = {f"var.{variable}"} | {f"local.{name}" for name in pool_locals(module, variable)}
    source_alt = "|".join(re.escape(s) for s in sorted(sources))
    paths: set[str] = set()

    def scan(text: str, aliases: set[str]) -> None:
        for match in re.finditer(rf"\bfor\s+\w+\s*,\s*(\w+)\s+in\s+(?:{source_alt})\b(?!\.)", text):
            aliases = aliases | {match.group(1)}
        for alias in aliases:
            for match in re.finditer(rf"(?<![\w.]){re.escape(alias)}{_IDENT_PATH}", text):
                paths.add(match.group(1)[1:])
        for match in re.finditer(rf"\bvar\.{variable}\[[^\]]+\]{_IDENT_PATH}", text):
            paths.add(match.group(1)[1:])

    pool_resources = []
    for _rtype, _rname, body in resources(module):
        for_each = body.get("for_each")
        if isinstance(for_each, str) and for_each.strip().removeprefix("${").removesuffix("}") in sources:
            pool_resources.append(body)
    for block_type, blocks in module.items():
        for block in blocks:
            if block_type == "resource":
                continue
            for text in strings(block):
                scan(text, set())
    for _rtype, _rname, body in resources(module):
        aliases = {"each.value"} if any(body is b for b in pool_resources) else set()
        for text in strings(body):
            scan(text, aliases)
    return paths


def json_paths(value: Any, prefix: str = "") -> set[str]:
    """Dotted paths of every key in nested dicts (null and scalar values are leaves)."""
    out: set[str] = set()
    if isinstance(value, dict):
        for key, child in value.items():
            path = f"{prefix}.{key}" if prefix else key
            out.add(path)
            out |= json_paths(child, path)
    return out


def type_paths(tf_type: TfType, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for key, child in tf_type.attributes.items():
        path = f"{prefix}.{key}" if prefix else key
        out.add(path)
        out |= type_paths(child, path)
    return out
