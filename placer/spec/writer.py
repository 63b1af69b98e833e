"""Writing YAML that reads back as written under YAML 1.2 (placer's fleet loader, kubectl, Argo CD,
Flux) and YAML 1.1 (PyYAML and the tools built on it) alike.

PyYAML's SafeDumper quotes only the text YAML 1.1 would misread (``yes``, ``1:30``, ``010``); a
YAML 1.2 reader takes ``8e1``, ``1e-3`` and ``0o10`` written plain for the numbers 80, 0.001 and 8.
Every YAML file placer writes (manifests, kustomizations, discovered fleet documents) goes
through :class:`Dumper`, which quotes text that either reading would take for something else.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from placer.spec.source import plain_tag

try:  # libyaml's emitter: the same text (a GitOps tree of bench M's plan byte for byte), render of
    # that plan 2.2-2.6 s against 3.3-3.9 s in all; pure Python only where PyYAML was built without it
    from yaml import CSafeDumper as _Emitting
except ImportError:  # pragma: no cover - PyYAML's wheels carry libyaml
    from yaml import SafeDumper as _Emitting  # type: ignore[assignment]

STR = "tag:yaml.org,2002:str"
_YAML11 = yaml.resolver.Resolver()
_UNICODE_BREAKS = "\x85\u2028\u2029"  # line breaks to a YAML reader; PyYAML writes them as they are
_YES_NO = re.compile(r"^[yYnN]$")  # booleans in YAML 1.1's spec (and go-yaml v2), text to PyYAML


def plain_is_text(text: str) -> bool:
    """Whether ``text`` written plain (unquoted) reads back as that text in YAML 1.2 and 1.1 alike."""
    yaml11 = _YAML11.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    return plain_tag(text) == STR and yaml11 == STR and not _YES_NO.match(text)


class Dumper(_Emitting):
    """A safe dumper (libyaml's emitter where there is one) that quotes text any YAML reader would read as a number, boolean, null or date."""

    def represent_text(self, data: str) -> yaml.ScalarNode:
        if any(ch in data for ch in _UNICODE_BREAKS):
            return self.represent_scalar(STR, data, style='"')  # escaped; raw, a reader takes them for newlines
        if plain_is_text(data):
            return self.represent_str(data)
        return self.represent_scalar(STR, data, style="'")


Dumper.add_representer(str, Dumper.represent_text)


def dump(data: Any, **options: Any) -> str:
    """``data`` as one YAML document (``options`` as ``yaml.dump`` takes them)."""
    return str(yaml.dump(data, Dumper=Dumper, **options))


def dump_all(documents: list[Any], **options: Any) -> str:
    """``documents`` as a YAML stream, each after ``---``."""
    return str(yaml.dump_all(documents, Dumper=Dumper, **options))
