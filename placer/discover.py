"""What ``placer discover`` does with discovered fleet documents: print them, or merge them into a fleet.

Merging keeps the fleet a hand-written thing. A discovered document whose (kind, name) is in
the fleet, or a Pool whose target names the same group (ASG, EKS node group, MIG, Kubernetes
context and node selector, or a hand-written selector that selects exactly the group's nodes; NVML
host), updates only what discovery knows, in place. A Pool of
the fleet's name that is another pool (on another cloud, or whose target names another group of
the discovered provider) is no match: the discovered one is added under a name of its own, its
place (region, zone, context) appended, and ``MergePlan.renamed`` says why.

- Pool: ``spec.gpu``; ``spec.nodes`` only when the discovered provider owns the pool's capacity
  (same provider, not ``static``: one host sees one node of an on-prem pool), and its fields that
  discovery marks as placeholders (the size range of a MIG without an autoscaler) only where the
  pool lacks them; ``spec.spot`` when discovery says; ``spec.target.<provider>`` (``namespace``
  only if missing: discovery cannot know it; ``tolerations`` gain the discovered ones); ``spec.location`` only if missing. Exclusive
  alternatives are swapped, not mixed
  (``nodes.count`` vs ``min``/``max``, ``autoScalingGroupName`` vs ``eks``, ``zone`` vs ``region``).
  A Pool gains the ``placer.dev/node-groups`` annotation Kubernetes discovery writes (``placer.nodegroups``);
  a discovered Pool over a node group a fleet Pool of another provider is over is not added
  (``MergePlan.kept``): one node group found by two discoveries is one pool.
- any other kind: spec fields that are missing are added; none is overwritten.

Everything else (prices, labels, comments, key order, quoting, flow or block style) stays as
written: the edited document is round-tripped with ruamel.yaml, the other documents of its
file are kept byte for byte, and the result is re-read with the fleet's own YAML parser to
check that exactly the intended fields changed; the merged fleet is then checked as a whole as
``placer validate`` checks it (references, duplicate names, shared groups). Documents not in the fleet are appended to
``discovered.yaml`` (a new Location only when a new pool is there). ``merge`` only reads
files; the caller writes what it returns.
"""

from __future__ import annotations

import copy
import io
import itertools
import json
import re
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import yaml

from placer.catalog import BUILTIN_GPU_TYPES, gpu_name, same_gpu_name
from placer.fleet import build_fleet
from placer.nodegroups import NODE_GROUPS, as_mapping, group_words, node_groups, same_group, same_nodegroup
from placer.spec import Diagnostic, Document, RawDocument, load_document, read_fleet_dir
from placer.spec.loader import kind_and_name
from placer.spec.source import NOTHING_TO_PLAN, parse_text
from placer.spec.writer import Dumper, plain_is_text

DISCOVERED_FILE = "discovered.yaml"
_MARKER = re.compile(r"^(---|\.\.\.)(?=\s|$)")


class MergeError(Exception):
    """The fleet cannot take the discovered documents safely; nothing should be written."""


class PoolNote(str):
    """A note that says one thing of some discovered documents of one kind (``names``, where
    ``template`` has ``{names}``). It holds for those of them that are printed or added, and only
    those (``notes_for``): "usdPerGpuHour is 0 for ..." named pools merged into priced ones too."""

    kind: ClassVar[str] = "Pool"
    names: tuple[str, ...]
    template: str

    def __new__(cls, template: str, names: Iterable[str]) -> Self:
        listed = tuple(names)
        note = super().__new__(cls, template.replace("{names}", ", ".join(listed)))
        note.names, note.template = listed, template
        return note

    def __getnewargs__(self) -> tuple[str, tuple[str, ...]]:  # type: ignore[override]  # copy, pickle
        return self.template, self.names


class JurisdictionNote(PoolNote):
    """"set spec.jurisdiction" of some discovered Locations: it holds for those written without one
    (a merge never overwrites a Location's spec: the fleet's own jurisdiction stays)."""

    kind = "Location"


class GpuTypeNote(PoolNote):
    """"added a GPUType document" of some discovered GPUTypes: it holds for those printed or added
    (a merge into a fleet that has the type adds none; every merge after the first said it added it)."""

    kind = "GPUType"


def notes_for(notes: Iterable[str], names: Mapping[str, Mapping[str, str]]) -> list[str]:
    """``notes`` as they hold for ``names`` (by kind, a discovered document's name -> the name it
    is written under, of the documents a note may still be true of): a PoolNote names those of its
    documents there, by that name, and is left out where it names none."""
    out: list[str] = []
    for note in notes:
        if not isinstance(note, PoolNote):
            out.append(note)
        elif kept := [written[n] for n in note.names if n in (written := names.get(note.kind, {}))]:
            out.append(type(note)(note.template, kept))
    return out


class _Missing:
    def __repr__(self) -> str:
        return "(none)"


MISSING: Any = _Missing()  # a key that is not there (before) or is removed (after)

FILL_ONLY = frozenset({("spec", "location"), ("spec", "target", "kubernetes", "namespace")})
ATOMIC = frozenset({"nodeSelector", "tolerations"})  # never merged key by key (tolerations: a union)
EXCLUSIVE: dict[tuple[str, ...], tuple[tuple[str, ...], ...]] = {
    ("spec", "nodes"): (("count",), ("min", "max")),
    ("spec", "target", "aws"): (("autoScalingGroupName",), ("eks",)),
    ("spec", "target", "gcp"): (("zone",), ("region",)),
}


@dataclass(frozen=True)
class FieldChange:
    path: tuple[str, ...]
    before: Any
    after: Any  # MISSING: the key is removed

    def __str__(self) -> str:
        return f"{'.'.join(self.path)}: {_show(self.before)} -> {_show(self.after)}"


@dataclass
class MergePlan:
    """New file contents, and one readable line per thing that changed (or did not)."""

    files: dict[Path, str] = field(default_factory=dict)
    updated: list[str] = field(default_factory=list)  # "path: Kind/name: field: before -> after"
    added: list[str] = field(default_factory=list)  # "path: Kind/name"
    unchanged: list[str] = field(default_factory=list)  # "Kind/name"
    skipped: list[str] = field(default_factory=list)  # "Location/name": new, but no new pool is there
    renamed: list[str] = field(default_factory=list)  # "Pool/old -> Pool/new: why": a namesake is in the fleet
    missing: list[str] = field(default_factory=list)  # "path:line: Pool/name (nodes ...): why": not found any more
    refused: list[str] = field(default_factory=list)  # "Pool/name, ...: why": discovered, but no fleet would take it
    ambiguous: list[str] = field(default_factory=list)  # "path:line: Pool/name ...: why": onto several groups' nodes
    kept: list[str] = field(default_factory=list)  # "path:line: Pool/name ...: why": a discovered twin not added
    notes: list[str] = field(default_factory=list)  # discovery's notes as they hold for what was added (notes_for)


def _show(value: Any) -> str:
    if value is MISSING:
        return "(none)"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(", ", ": "))
    return json.dumps(value) if isinstance(value, bool) or value is None else str(value)


def _same(a: Any, b: Any) -> bool:
    return bool(a == b) and isinstance(a, bool) == isinstance(b, bool)


# ---------------------------------------------------------------- rendering documents


class _Flow(dict[str, Any]):
    """A small mapping written in flow style ({type: H100-80GB, perNode: 8}), as fleets are written."""


class _Dumper(Dumper):
    pass


_Dumper.add_representer(_Flow, lambda d, data: d.represent_mapping("tag:yaml.org,2002:map", data, flow_style=True))


def _styled(value: Any, path: tuple[str, ...] = ()) -> Any:
    if isinstance(value, dict):
        inner = {k: _styled(v, (*path, str(k))) for k, v in value.items()}
        leaf = all(not isinstance(v, dict | list) for v in inner.values())
        if leaf and (path[-1:] in (("gpu",), ("nodes",), ("eks",)) or not value or path[-1:] == ("[]",)):
            return _Flow(inner)
        return inner
    if isinstance(value, list):
        return [_styled(v, (*path, "[]")) for v in value]
    return value


def to_yaml(document: dict[str, Any]) -> str:
    """One fleet document as YAML, keys in their given order, small leaf maps in flow style."""
    return yaml.dump(_styled(document), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=4096)


def _comments(lines: Iterable[str]) -> str:
    return "".join(f"# {line}\n".replace("# \n", "#\n") for text in lines for line in text.splitlines() or [""])


def render(documents: list[dict[str, Any]], header: Iterable[str] = (), notes: Iterable[str] = ()) -> str:
    """Multi-document YAML: a comment header, the notes as comments (those about pools for the
    Pools among ``documents``: ``notes_for``), then the documents."""
    return _header(header, notes_for(notes, _noted(documents))) + "".join(f"---\n{to_yaml(d)}" for d in documents)


def _noted(documents: Iterable[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """The names notes may hold for among ``documents`` (``notes_for``): every Pool and GPUType, and
    the Locations without a jurisdiction."""
    return {"Pool": {str(d["metadata"]["name"]): str(d["metadata"]["name"]) for d in documents if d.get("kind") == "Pool"},
            "GPUType": {str(d["metadata"]["name"]): str(d["metadata"]["name"]) for d in documents
                        if d.get("kind") == "GPUType"},
            "Location": {str(d["metadata"]["name"]): str(d["metadata"]["name"]) for d in documents
                         if d.get("kind") == "Location" and "jurisdiction" not in as_mapping(d.get("spec"))}}


def _header(header: Iterable[str], notes: Iterable[str]) -> str:
    notes = list(notes)
    return _comments(header) + (_comments(["Notes:", *(f"- {n}" for n in notes)]) if notes else "")


def _appended(documents: list[dict[str, Any]], header: Iterable[str], notes: Iterable[str]) -> str:
    """Documents to add after existing ones: the header comments go after the marker, with the first of them."""
    first, *rest = documents
    return f"---\n{_header(header, notes)}{to_yaml(first)}" + "".join(f"---\n{to_yaml(d)}" for d in rest)


def relocate(documents: list[dict[str, Any]], location: str) -> list[dict[str, Any]]:
    """Put every discovered Pool at ``location``: the Locations discovery invented for them give way to one."""
    docs = copy.deepcopy(documents)
    pools = [d for d in docs if d.get("kind") == "Pool"]
    if not pools:
        return docs
    old = {d["spec"].get("location") for d in pools}
    for pool in pools:
        pool["spec"]["location"] = location
    dropped = [d for d in docs if d.get("kind") == "Location" and d["metadata"]["name"] in old | {location}]
    keep = [d for d in docs if not any(d is x for x in dropped)]
    spec = next((d["spec"] for d in dropped if d["metadata"]["name"] == location), None)
    if spec is None:
        spec = {"environment": dropped[0]["spec"].get("environment", "onprem") if dropped else "onprem"}
        jurisdictions = {d["spec"].get("jurisdiction") for d in dropped}
        if len(jurisdictions) == 1 and None not in jurisdictions:
            spec["jurisdiction"] = jurisdictions.pop()  # all the old locations agree
    at = next((i for i, d in enumerate(keep) if d.get("kind") in ("Pool", "GPUType")), len(keep))
    keep.insert(at, {"apiVersion": pools[0]["apiVersion"], "kind": "Location", "metadata": {"name": location},
                     "spec": spec})
    return keep


# ---------------------------------------------------------------- which fields change


def identities(document: dict[str, Any]) -> set[tuple[Any, ...]]:
    """What a Pool's capacity is, as a provider names it: the same group under another pool name is the same pool."""
    spec = as_mapping(document.get("spec"))
    target = as_mapping(spec.get("target"))
    found: set[tuple[Any, ...]] = set()
    aws, gcp, kube = as_mapping(target.get("aws")), as_mapping(target.get("gcp")), as_mapping(target.get("kubernetes"))
    if aws.get("region") and (aws.get("autoScalingGroupName") or aws.get("eks")):
        eks = as_mapping(aws.get("eks"))
        found.add(("aws", aws["region"], aws.get("autoScalingGroupName"), eks.get("cluster"), eks.get("nodegroup")))
    if gcp.get("project") and gcp.get("instanceGroupManager"):
        found.add(("gcp", gcp["project"], gcp.get("zone"), gcp.get("region"), gcp["instanceGroupManager"]))
    if kube.get("nodeSelector"):
        selector = tuple(sorted((str(k), str(v)) for k, v in as_mapping(kube.get("nodeSelector")).items()))
        found.add(("kubernetes", kube.get("context"), selector))
    source = as_mapping(as_mapping(document.get("metadata")).get("annotations")).get("placer.dev/discovered-from")
    if spec.get("provider") == "static" and isinstance(source, str) and source.startswith("nvml:"):
        found.add(("nvml", source, gpu_name(str(as_mapping(spec.get("gpu")).get("type")))))
    return found


def _eks(document: Any) -> tuple[Any, ...] | None:
    """``("eks", region, cluster, nodegroup)`` of an aws Pool over an EKS node group (its target, as
    ``node_groups`` reads it; a Kubernetes Pool's annotated groups are not its target), else None."""
    if as_mapping(as_mapping(document).get("spec")).get("provider") != "aws":
        return None
    return next((g for g in node_groups(document) if g[0] == "eks"), None)


def _as_the_fleet_names_its_node_group(document: dict[str, Any], raws: Iterable[RawDocument]) -> dict[str, Any]:
    """A discovered EKS Pool whose node group a fleet Pool names by its other name (``h100`` and its
    replacement ``h100-alt``, ``placer.nodegroups.same_nodegroup``) under the fleet's name: one pool,
    matched as such, and the fleet's name stays (a merge that wrote over it, or added the group as a
    pool of its own, made the next plan size a group by the wrong name)."""
    found = _eks(document) if document.get("kind") == "Pool" else None
    if found is None:
        return document
    theirs = [g for raw in raws if raw.data.get("kind") == "Pool" and (g := _eks(raw.data)) is not None
              and g[1:3] == found[1:3]]
    if any(g[3] == found[3] for g in theirs):
        return document
    name = next((g[3] for g in theirs if same_nodegroup(g[3], found[3])), None)
    if name is None:
        return document
    renamed = copy.deepcopy(document)
    renamed["spec"]["target"]["aws"]["eks"]["nodegroup"] = name
    return renamed


def _twins(document: dict[str, Any], raws: Iterable[RawDocument]) -> list[tuple[RawDocument, str]]:
    """The fleet's Pools of another provider over the nodes of a node group the discovered Pool
    ``document`` is over (an EKS node group both ``discover aws`` and ``discover kubernetes`` found),
    each with that group in words."""
    mine = node_groups(document)
    out = []
    for raw in raws:
        if not mine or raw.data.get("kind") != "Pool" or kind_and_name(raw.data) is None or \
                _provider(raw.data) == _provider(document):
            continue
        shared = next((group_words(g, m) for g in node_groups(raw.data) for m in mine if same_group(g, m)), None)
        if shared is not None:
            out.append((raw, shared))
    return out


def _own_identity(document: dict[str, Any]) -> tuple[Any, ...] | None:
    """The identity of a discovered Pool by the provider that found it."""
    spec = as_mapping(document.get("spec"))
    wanted = {"aws": "aws", "gcp": "gcp", "kubernetes": "kubernetes", "static": "nvml"}.get(str(spec.get("provider")))
    return next((i for i in identities(document) if i[0] == wanted), None)


def _sync(path: tuple[str, ...], old: Any, new: Any, out: list[FieldChange]) -> None:
    if isinstance(new, dict) and isinstance(old, dict):
        for key, value in new.items():
            child = (*path, key)
            before = old.get(key, MISSING)
            if child in FILL_ONLY and before is not MISSING:
                continue
            if key == "tolerations" and isinstance(before, list) and isinstance(value, list):
                value = before + [t for t in value if t not in before]  # extra tolerations are harmless
            if key in ATOMIC:
                if before is MISSING and value in ([], {}):
                    continue  # none found: the same as a field left out, not an edit
                if before is MISSING or not _same(before, value):
                    out.append(FieldChange(child, before, copy.deepcopy(value)))
                continue
            _sync(child, before, value, out)
        groups = EXCLUSIVE.get(path, ())
        used = [g for g in groups if any(k in new for k in g)]
        for group in groups:
            if used and group not in used:
                out.extend(FieldChange((*path, k), old[k], MISSING) for k in group if k in old and k not in new)
        return
    if old is MISSING and new == {}:
        return
    if old is MISSING or not _same(old, new):
        out.append(FieldChange(path, old, copy.deepcopy(new)))


def _without_guesses(existing: dict[str, Any], found: dict[str, Any],
                     guessed: Iterable[tuple[str, ...]]) -> dict[str, Any]:
    """``found`` less the placeholder fields ``guessed`` that ``existing`` has set, itself or as an
    exclusive alternative (``nodes.count`` for a guessed ``nodes.max``): a guess fills a gap, it
    does not overwrite (a MIG without an autoscaler turned the user's max 4 into 8 on every merge)."""
    found = copy.deepcopy(found)
    for path in guessed:
        old: Any = existing
        new: Any = found
        for key in path[:-1]:
            old, new = as_mapping(old).get(key), as_mapping(new).get(key)
        key = path[-1]
        if not isinstance(new, dict) or key not in new or not isinstance(old, dict):
            continue
        rivals = [k for group in EXCLUSIVE.get(path[:-1], ()) if key not in group for k in group]
        if key in old or any(k in old for k in rivals):
            del new[key]
    return found


def field_changes(existing: dict[str, Any], found: dict[str, Any],
                  guessed: Iterable[tuple[str, ...]] = ()) -> list[FieldChange]:
    """What merging ``found`` into the hand-written ``existing`` document changes (module docstring);
    ``guessed``: the paths of ``found``'s placeholder fields, filled in only where missing."""
    found = _without_guesses(existing, found, guessed)
    old_spec = existing.get("spec")
    new_spec = as_mapping(found.get("spec"))
    if not isinstance(old_spec, dict):
        return [FieldChange(("spec",), old_spec if "spec" in existing else MISSING, copy.deepcopy(new_spec))]
    out: list[FieldChange] = []
    if found.get("kind") != "Pool":
        out.extend(FieldChange(("spec", k), MISSING, copy.deepcopy(v)) for k, v in new_spec.items() if k not in old_spec)
        return out
    provider = new_spec.get("provider")
    owner = provider != "static" and old_spec.get("provider") == provider
    for key in ("gpu", "nodes", "spot", "target", "location"):
        if key not in new_spec:
            continue
        path, before, after = ("spec", key), old_spec.get(key, MISSING), new_spec[key]
        if key == "location" or (key == "nodes" and not owner):
            if before is MISSING:
                out.append(FieldChange(path, MISSING, copy.deepcopy(after)))
        elif key == "spot":
            if bool(old_spec.get("spot", False)) != bool(after):
                out.append(FieldChange(path, before, bool(after)))
        else:
            if key == "gpu" and isinstance(before, dict) and isinstance(after, dict) and \
                    same_gpu_name(str(before.get("type")), str(after.get("type"))):
                after = {**after, "type": before["type"]}  # the fleet's name of that GPU type stays
            _sync(path, before, after, out)
    groups = as_mapping(as_mapping(found.get("metadata")).get("annotations")).get(NODE_GROUPS)
    metadata = existing.get("metadata")
    if isinstance(groups, str) and isinstance(metadata, dict):  # a pool discovered before it was written
        annotations = metadata.get("annotations", MISSING)
        before = annotations.get(NODE_GROUPS, MISSING) if isinstance(annotations, dict) else MISSING
        if (annotations is MISSING or isinstance(annotations, dict)) and before != groups:
            out.append(FieldChange(("metadata", "annotations", NODE_GROUPS), before, groups))
    return out


def apply_changes(document: MutableMapping[str, Any], changes: Iterable[FieldChange]) -> None:
    """Apply ``changes`` in place (a plain dict or a ruamel.yaml CommentedMap alike)."""
    for change in changes:
        node: Any = document
        for key in change.path[:-1]:
            if not isinstance(node.get(key), MutableMapping):
                node[key] = {}
            node = node[key]
        last = change.path[-1]
        if change.after is MISSING:
            _pop_keeping_comments(node, last)
        else:
            node[last] = copy.deepcopy(change.after)


def _pop_keeping_comments(node: MutableMapping[str, Any], key: str) -> None:
    """Remove ``key``; in a ruamel.yaml map, the full-line comments below it move to the key before
    it, or above the map's first key where ``key`` was the first (they were dropped)."""
    if key not in node:
        return
    items = getattr(getattr(node, "ca", None), "items", {})
    token = (items.get(key) or [None, None, None])[2]
    keys = list(node)
    index = keys.index(key)
    node.pop(key)
    rest = token.value.split("\n", 1)[1] if token is not None and "\n" in token.value else ""
    if not rest.strip():
        return  # the end-of-line comment goes with its key
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    if index == 0:
        ca = getattr(node, "ca", None)
        if ca is None or not node:
            return  # no key left to put them above
        if ca.comment is None:
            ca.comment = [None, []]
        ca.comment[1] = [*(ca.comment[1] or []), CommentToken(rest, CommentMark(0), None)]
        return
    holder, last = node, keys[index - 1]
    while (isinstance(holder[last], MutableMapping) and holder[last] and hasattr(holder[last], "fa")
           and not holder[last].fa.flow_style()):
        holder, last = holder[last], list(holder[last])[-1]
    if isinstance(holder[last], list) and not getattr(getattr(holder[last], "fa", None), "flow_style", lambda: False)():
        return  # after a block sequence: no place to put them
    entry = holder.ca.items.setdefault(last, [None, None, None, None])  # type: ignore[attr-defined]
    if entry[2] is None:
        entry[2] = CommentToken("\n" + rest, CommentMark(0), None)
    else:
        entry[2].value += rest


# ---------------------------------------------------------------- editing files in place


def _segments(text: str) -> list[tuple[int, str]]:
    """The file split at document markers (``---``, ``...`` at column 0): (first line, text) each."""
    out: list[tuple[int, list[str]]] = [(1, [])]
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        if _MARKER.match(line):
            out.append((number, [line]))
        else:
            out[-1][1].append(line)
    return [(start, "".join(lines)) for start, lines in out]


def _guess_indent(body: str) -> tuple[int, int]:
    """(mapping indent, dash offset of block sequences) as the document is written."""
    lines = [ln for ln in body.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    mapping = offset = None
    for a, b in itertools.pairwise(lines):
        ia, ib = len(a) - len(a.lstrip()), len(b) - len(b.lstrip())
        if a.rstrip().endswith(":") and not a.lstrip().startswith("- ") and ib >= ia:
            if b.lstrip().startswith("- "):
                offset = ib - ia if offset is None else offset
            elif ib > ia and mapping is None:
                mapping = ib - ia
    mapping = mapping or 2
    return mapping, offset if offset is not None else mapping


def _quoted(value: Any) -> Any:
    """``value`` with the text YAML 1.2 or 1.1 would misread marked to be written quoted, as placer's
    writer quotes it (ruamel.yaml writes ``-.5e3`` and ``yes`` plain: a number to the fleet loader, a
    boolean to YAML 1.1)."""
    from ruamel.yaml.scalarstring import SingleQuotedScalarString

    if isinstance(value, dict):
        return {_quoted(k): _quoted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_quoted(v) for v in value]
    if isinstance(value, str) and not plain_is_text(value):
        return SingleQuotedScalarString(value)
    return value


def _edit(segment: str, changes: list[FieldChange], where: str) -> str:
    """One document's text with ``changes`` applied by a ruamel.yaml round trip."""
    try:
        from ruamel.yaml import YAML
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise MergeError("--merge needs ruamel.yaml to edit fleet files in place: pip install ruamel.yaml") from exc
    lines = segment.splitlines(keepends=True)
    head = ""
    if lines and _MARKER.match(lines[0]) and lines[0][3:].strip()[:1] in ("", "#"):
        head, segment = lines[0], "".join(lines[1:])
    lines = segment.splitlines(keepends=True)
    cut = len(lines)
    while cut and (not lines[cut - 1].strip() or lines[cut - 1].startswith("#")):
        cut -= 1
    segment, trailing = "".join(lines[:cut]), "".join(lines[cut:])  # comments before the next document stay put
    mapping, offset = _guess_indent(segment)
    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 4096
    rt.indent(mapping=mapping, sequence=offset + 2, offset=offset)
    rt.explicit_start = bool(_MARKER.match(segment))
    try:
        data = rt.load(segment)
    except Exception as exc:
        raise MergeError(f"{where}: cannot read this document to edit it in place ({exc})") from exc
    if not isinstance(data, MutableMapping):
        raise MergeError(f"{where}: not a mapping; cannot edit it in place")
    apply_changes(data, [FieldChange(c.path, c.before, _quoted(c.after)) for c in changes])
    buffer = io.StringIO()
    rt.dump(data, buffer)
    return head + buffer.getvalue() + trailing


def _read_exact(path: Path) -> str:
    """A file's text with its line ends as they are (``read_text`` turns CRLF into LF)."""
    return path.read_bytes().decode("utf-8")


def _changed_text(path: Path, text: str, edits: list[tuple[RawDocument, list[FieldChange], str]]) -> str:
    crlf = "\r\n" in text
    bom = "\ufeff" if text.startswith("\ufeff") else ""  # an editor's byte-order mark stays, as the line ends do
    text = text.removeprefix(bom).replace("\r\n", "\n")
    segments = _segments(text)
    bodies = [body for _, body in segments]
    for raw, changes, label in edits:
        index = max(i for i, (start, _) in enumerate(segments) if start <= raw.line)
        where = f"{path}:{raw.line}: {label}"
        new = _edit(bodies[index], changes, where)
        expected = copy.deepcopy(raw.data)
        apply_changes(expected, changes)
        reread, problems = parse_text(new, where)  # as the fleet loader reads it (YAML 1.2), not as PyYAML does
        if problems or [d.data for d in reread if d.data is not None] != [expected]:
            raise MergeError(f"{where}: cannot update it in place without changing other fields (the YAML "
                             f"round trip differs); make these changes by hand: "
                             f"{'; '.join(str(c) for c in changes)}")
        if index + 1 < len(bodies) and not new.endswith("\n"):
            new += "\n"
        bodies[index] = new
    result = bom + "".join(bodies)
    return result.replace("\n", "\r\n") if crlf else result


def _new_problems(before: RawDocument | None, after: RawDocument) -> list[str]:
    """Shape errors ``after`` has that ``before`` (the hand-written version) did not."""
    old = {(d.field, d.message) for d in load_document(before)[1]} if before is not None else set()
    return [str(d) for d in load_document(after)[1] if d.severity == "error" and (d.field, d.message) not in old]


# ---------------------------------------------------------------- what no fleet would take


def refused(documents: list[dict[str, Any]], gpu_types: Iterable[str] = ()) -> tuple[list[dict[str, Any]], list[str]]:
    """``documents`` less those ``placer validate`` would refuse, and one line per document left out
    (``Kind/name: why``) saying why and what to do: a field out of range (allocatable nvidia.com/gpu 10^12), text no fleet
    holds (an ASG name with a line break), a Pool of a GPU type that is neither built in, nor among
    ``documents``, nor one of ``gpu_types`` (the fleet's GPUType documents). One group a fleet cannot
    take no longer stops the others from being printed or merged."""
    kept: list[dict[str, Any]] = []
    out: list[str] = []
    for doc in documents:
        errors = [d for d in load_document(RawDocument("discovered", 0, doc))[1] if d.severity == "error"]
        if errors:
            named = kind_and_name(doc)
            label = f"{named[0]}/{named[1]}" if named else "a document"
            why = "; ".join(f"{d.field}: {d.message}" if d.field else d.message for d in errors)
            out.append(f"{label}: a fleet would refuse it as discovered ({why}); left out, the rest "
                       "goes on: declare its pool by hand if you need it")
        else:
            kept.append(doc)
    known = set(BUILTIN_GPU_TYPES) | set(gpu_types) | {
        d["metadata"]["name"] for d in kept if d.get("kind") == "GPUType"}
    pools = [d for d in kept if d.get("kind") == "Pool"]
    for doc in pools:
        gpu = as_mapping(as_mapping(doc.get("spec")).get("gpu")).get("type")
        if gpu not in known:
            kept.remove(doc)
            out.append(f"Pool/{doc['metadata']['name']}: its GPU type {gpu} is not built in and discovery could "
                       f"not tell its memory; left out: add a GPUType document named {gpu} with its memoryGiB "
                       "to the fleet, then discover again with --merge")
    return kept, out


# ---------------------------------------------------------------- a hand-written selector, by its nodes


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a nodeSelector selects a node of these labels, as Kubernetes reads it."""
    return all(labels.get(str(k)) == (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in selector.items())


def _tolerates(tolerations: Any, taint: Mapping[str, Any]) -> bool:
    """Whether tolerations let a pool's pods onto a node of ``taint`` (a discovered group's taint,
    as the toleration discovery wrote for it), as Kubernetes matches them."""
    for toleration in tolerations if isinstance(tolerations, list) else []:
        t = as_mapping(toleration)
        if t.get("effect") not in (None, "", taint.get("effect")):
            continue
        if t.get("operator") == "Exists" and t.get("key") in (None, "", taint.get("key")):
            return True
        if t.get("operator") != "Exists" and t.get("key") == taint.get("key") and \
                str(t.get("value") or "") == str(taint.get("value") or ""):
            return True
    return False


def _kube_target(document: Any) -> dict[str, Any]:
    return as_mapping(as_mapping(as_mapping(as_mapping(document).get("spec")).get("target")).get("kubernetes"))


@dataclass(frozen=True)
class _Overlap:
    """A discovered group some of whose nodes a fleet pool selects, not being that group."""

    identity: tuple[Any, ...]
    name: str  # the discovered Pool's
    selected: list[str]  # its nodes the fleet pool selects
    nodes: int  # how many it has


def _by_nodes(raws: list[RawDocument], documents: list[dict[str, Any]],
              members: Mapping[str, Mapping[str, Mapping[str, str]]]
              ) -> tuple[dict[int, tuple[Any, ...]], dict[int, list[_Overlap]]]:
    """The discovered Kubernetes group each of the fleet's pools is by its nodes, by ``id`` of its
    RawDocument: where its nodeSelector is no group's own (GPU Feature Discovery sets
    nvidia.com/gpu.count on every GPU node, and a hand-written selector seldom names it), the group
    whose nodes are exactly those its nodeSelector and tolerations let it onto. A pool onto the nodes
    of several groups, or onto some of one group's, is none of them: those come second, as the
    groups it overlaps. ``members``: by discovered Pool name, its nodes' labels (``Discovered.members``)."""
    groups: dict[Any, list[tuple[tuple[Any, ...], str, Mapping[str, Mapping[str, str]], Any]]] = {}
    for doc in documents:
        own = _own_identity(doc) if doc.get("kind") == "Pool" else None
        name = str(as_mapping(doc.get("metadata")).get("name"))
        nodes = members.get(name)
        if own is not None and own[0] == "kubernetes" and nodes:
            groups.setdefault(own[1], []).append((own, name, nodes, _kube_target(doc).get("tolerations")))
    own_selectors = {group[0] for context in groups.values() for group in context}
    found: dict[int, tuple[Any, ...]] = {}
    overlaps: dict[int, list[_Overlap]] = {}
    for raw in raws:
        named = kind_and_name(raw.data)  # a text, a list or a pool without a name is none it can name
        pool = named is not None and named[0] == "Pool"
        theirs = [i for i in identities(raw.data) if i[0] == "kubernetes"] if pool else []
        if not theirs or theirs[0] in own_selectors or theirs[0][1] not in groups:
            continue
        kube = _kube_target(raw.data)
        selector, tolerations = as_mapping(kube.get("nodeSelector")), kube.get("tolerations")
        hits = [_Overlap(own, name, sorted(n for n, labels in nodes.items() if _selects(selector, labels)), len(nodes))
                for own, name, nodes, taints in groups[theirs[0][1]]
                if all(_tolerates(tolerations, as_mapping(t)) for t in taints or [])]
        hits = [hit for hit in hits if hit.selected]
        if len(hits) == 1 and len(hits[0].selected) == hits[0].nodes:
            found[id(raw)] = hits[0].identity
        elif hits:
            overlaps[id(raw)] = hits
    return found, overlaps


def _ambiguous(raw: RawDocument, overlaps: list[_Overlap], held: set[tuple[Any, ...]]) -> str:
    """Why the fleet's pool ``raw`` is none of the discovered groups it overlaps, and what to do;
    ``held``: those of them left out for it (they would count its nodes twice)."""
    groups = ", ".join(f"{o.name} ({', '.join(o.selected)}{'' if len(o.selected) == o.nodes else f' of its {o.nodes} nodes'})"
                       for o in overlaps)
    what = (f"the nodes of {len(overlaps)} discovered groups, not one group's: {groups}; it is "
            f"{'neither' if len(overlaps) == 2 else 'none of them'}" if len(overlaps) > 1 else
            f"some of the nodes of discovered group {groups}; it is not that group")
    left = [o.name for o in overlaps if o.identity in held]
    if len(left) == len(overlaps):
        what += f", and {'they were' if len(left) > 1 else 'it was'} not added"
    elif left:
        what += f", and {', '.join(left)} {'were' if len(left) > 1 else 'was'} not added"
    # the labels the groups' own selectors tell them apart by (nvidia.com/gpu.count, a Karpenter NodePool's
    # karpenter.sh/capacity-type since its spot and on-demand nodes are two pools), which this one lacks
    selector = as_mapping(_kube_target(raw.data).get("nodeSelector"))
    theirs = [dict(o.identity[2]) for o in overlaps]
    telling = sorted(k for k in {k for sel in theirs for k in sel} - {str(k) for k in selector}
                     if len({sel.get(k) for sel in theirs}) > 1) or ["nvidia.com/gpu.count"]
    return (f"{raw.path}:{raw.line_of(('metadata', 'name'))}: Pool/{raw.data['metadata']['name']} (nodeSelector "
            f"{_show(selector)}) selects {what}: add {' or '.join(telling)} or a "
            "node-group label (placer.dev/pool) to its nodeSelector so that it selects exactly one group's nodes, "
            "and merge again")


# ---------------------------------------------------------------- merge


def _provider(doc: Any) -> str:
    return str(as_mapping(as_mapping(doc).get("spec")).get("provider", ""))


def _other_pool(existing: Any, discovered: Any, by_nodes: tuple[Any, ...] | None = None) -> str | None:
    """Why the fleet's Pool ``existing`` is not the discovered Pool of the same name, or None when it is.

    Another provider's pool is another pool (an AWS group named as a GCP or a static pool), except
    that NVML discovery (provider static) sees one host of any on-prem pool. So is a pool whose
    target names another group of the discovered provider (one name in two regions, zones,
    projects or clusters): a name is not a group's identity, its target is. ``by_nodes``: the group
    ``existing`` is by the nodes its nodeSelector selects (``_by_nodes``). NVML's is no group: the
    host a pool was discovered on is one node of it, and another host of the pool (``--pool``)
    updates or leaves it (it added a copy of the pool, "of another nvml group")."""
    a, b = _provider(existing), _provider(discovered)
    if a and b != "static" and a != b:
        return f"a {a} pool (discovery found one on {b})"
    own = _own_identity(discovered)
    if own is None or own[0] == "nvml":
        return None
    theirs = [i for i in [*identities(existing), by_nodes] if i is not None and i[0] == own[0]]
    if theirs and own not in theirs:
        return f"the pool of another {own[0]} group ({_describe(theirs[0])}; discovery found {_describe(own)})"
    return None


def _describe(identity: tuple[Any, ...]) -> str:
    if identity[0] == "kubernetes":
        return f"context {identity[1]}, nodes {', '.join(f'{k}={v}' for k, v in identity[2])}"
    return " ".join(str(part) for part in identity[1:] if part not in (None, ""))


def _place(identity: tuple[Any, ...] | None, provider: str) -> str:
    """Where a discovered pool's group is, to tell it by name from a namesake: region, zone, context."""
    if identity is None:
        return provider
    if identity[0] == "aws":
        return str(identity[1])
    if identity[0] == "gcp":
        return str(identity[2] or identity[3])
    if identity[0] == "kubernetes":
        return str(identity[1] or provider)
    return provider


def _unique_name(name: str, place: str, taken: set[str]) -> str:
    """``name`` suffixed with ``place`` (then a number) as a DNS-1123 label no name in ``taken`` has."""
    def label(text: str, suffix: str) -> str:
        text = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]+", "-", text.lower())).strip("-")
        return f"{text[: 63 - len(suffix)].rstrip('-')}{suffix}"

    place = label(place, "") or "pool"
    candidate, n = label(name, f"-{place[:40]}"), 2
    while candidate in taken:
        candidate = label(name, f"-{place[:40]}-{n}")
        n += 1
    taken.add(candidate)
    return candidate


def plan_merge(fleet: str | Path, documents: list[dict[str, Any]], header: Iterable[str] = (),
               notes: Iterable[str] = (), guessed: Mapping[str, Iterable[tuple[str, ...]]] | None = None,
               scopes: Iterable[tuple[Any, ...]] = (),
               members: Mapping[str, Mapping[str, Mapping[str, str]]] | None = None) -> MergePlan:
    """Merge discovered ``documents`` into the fleet at ``fleet`` (see the module docstring).

    ``header`` and ``notes`` become comments above the documents appended to ``discovered.yaml``.
    ``guessed``: by discovered Pool name, the paths of its placeholder fields (``Discovered.guessed``);
    they fill in what the fleet's pool lacks and never overwrite what it has. ``scopes``: what discovery
    read in full (``Discovered.scopes``); the fleet's pools there that no discovered pool matched are
    listed in ``MergePlan.missing`` (a merge adds and updates; removing is the user's call).
    ``members``: by discovered Pool name, its nodes' labels (``Discovered.members``): a fleet pool whose
    nodeSelector is no group's own is the group whose nodes it selects, and keeps its selector; one
    that selects nodes of several groups is none of them, they are not added, and ``MergePlan.ambiguous`` says so.
    Raises MergeError, and changes nothing, when the fleet cannot be read or an edit is not safe.
    """
    root = Path(fleet)
    if not root.exists():
        raise MergeError(f"{root}: no such fleet directory (create it first to start a new fleet)")
    raws, diags = read_fleet_dir(root)
    # errors only: a warning (a rendered tree the loader skips) is no fleet that does not parse
    diags = [d for d in diags if d.severity == "error" and not d.message.endswith(NOTHING_TO_PLAN)]
    if diags:
        more = f" (and {len(diags) - 1} more)" if len(diags) > 1 else ""
        raise MergeError(f"cannot merge into {root}: {diags[0]}{more}; fix the fleet first")
    by_name: dict[tuple[str, str], RawDocument] = {}
    by_identity: dict[tuple[Any, ...], list[RawDocument]] = {}
    for raw in raws:
        key = kind_and_name(raw.data)
        if key is None:
            continue
        by_name.setdefault(key, raw)
        if key[0] == "Pool":
            for ident in identities(raw.data):
                by_identity.setdefault(ident, []).append(raw)

    documents = [_as_the_fleet_names_its_node_group(d, raws) for d in documents]
    by_nodes, overlaps = _by_nodes(raws, documents, members or {})  # the groups of hand-written selectors
    overlapped = {o.identity for found in overlaps.values() for o in found}
    held: set[tuple[Any, ...]] = set()  # groups not added: a fleet pool that is none of them has their nodes
    by_their_nodes: dict[tuple[Any, ...], list[RawDocument]] = {}
    for raw in raws:
        if id(raw) in by_nodes:
            by_their_nodes.setdefault(by_nodes[id(raw)], []).append(raw)

    plan = MergePlan()
    kept, plan.refused = refused(documents, {name for kind, name in by_name if kind == "GPUType"})
    # the fleet's pools of groups left out are not "not found": discovery saw them
    left_out = [d for d in documents if d.get("kind") == "Pool" and not any(d is k for k in kept)]
    documents = kept
    excused = {id(r) for d in left_out for r in [*by_identity.get(_own_identity(d) or (), []),
                                                 *by_their_nodes.get(_own_identity(d) or (), []),
                                                 by_name.get(("Pool", str(d["metadata"]["name"])))] if r is not None}
    edits: dict[Path, list[tuple[RawDocument, list[FieldChange], str]]] = {}
    matched: set[int] = set()
    fresh: list[dict[str, Any]] = []
    seen: dict[tuple[str, str], dict[str, Any]] = {}  # the first discovered document of each (kind, name)
    problems: list[str] = []
    namesakes: dict[str, str] = {}  # a discovered Pool's name -> why the fleet's pool of its name is another
    type_names: dict[str, str] = {}  # a discovered GPUType's name -> the fleet's name of that GPU type
    for doc in documents:
        key = kind_and_name(doc)
        if key is None:
            continue
        if key in seen:  # a Location per pool repeats; two different pools of one name are one lost
            if key[0] == "Pool" and seen[key] != doc:
                problems.append(f"discovery found two {key[0]}s named {key[1]}; name them apart (--pool) and "
                                "discover again")
            continue
        seen[key] = doc
        hit, how = by_name.get(key), ""
        own = _own_identity(doc) if key[0] == "Pool" else None
        same = [r for r in by_identity.get(own, []) if id(r) not in matched] if own is not None else []
        if own is not None and not same:  # a selector of its own that selects the group's nodes
            same = [r for r in by_their_nodes.get(own, []) if id(r) not in matched]
        if len(same) == 1 and same[0] is not hit:  # its target first: a name can be another pool's
            hit = None
        if hit is not None and key[0] == "Pool" and (why := _other_pool(hit.data, doc, by_nodes.get(id(hit)))) is not None:
            # another pool of that name, not news of it: its GPUs and target were written over the
            # fleet's pool (one name in two regions retargeted the user's pool), the group never added
            namesakes[key[1]] = f"{hit.path}:{hit.line_of(('metadata', 'name'))}: Pool/{key[1]} is {why}"
            hit = None
        if hit is None and own is not None and len(same) == 1:
            hit, how = same[0], f" (discovered as {key[0]}/{key[1]}: same {own[0]} target)"
        if hit is None and key[0] == "GPUType":  # the fleet's name of that GPU, from before (NVIDIA-B200-179GB)
            hit = next((r for (kind, name), r in by_name.items() if kind == "GPUType" and id(r) not in matched
                        and same_gpu_name(name, key[1])), None)
            if hit is not None:
                how = f" (discovered as {key[0]}/{key[1]}: the same GPU)"
                type_names[key[1]] = str(hit.data["metadata"]["name"])
        if (hit is None or id(hit) in matched) and own in overlapped:
            held.add(own)  # added, it would count the nodes of the fleet's pool twice
            continue
        if key[0] == "Pool" and (hit is None or id(hit) in matched) and (twins := _twins(doc, raws)):
            # the same nodes, found by another provider's discovery: added, the plan counted them twice
            plan.kept.append(_kept(twins, doc))
            continue
        if hit is None or id(hit) in matched:
            fresh.append(copy.deepcopy(doc) if key[0] == "Pool" else doc)  # it may be renamed
            continue
        matched.add(id(hit))
        existing = kind_and_name(hit.data) or key
        label = f"{existing[0]}/{existing[1]}"
        if own is not None and own not in identities(hit.data) and by_nodes.get(id(hit)) == own:
            doc = _keeping_selector(doc)  # it selects the group's nodes as the user wrote it
        changes = field_changes(hit.data, doc, (guessed or {}).get(key[1], ()) if key[0] == "Pool" else ())
        if not changes:
            plan.unchanged.append(label + how)
            continue
        edits.setdefault(Path(hit.path), []).append((hit, changes, label))
        plan.updated.extend(f"{hit.path}: {label}{how}: {c}" for c in changes)
        after = copy.deepcopy(hit.data)
        apply_changes(after, changes)
        problems += _new_problems(hit, RawDocument(hit.path, hit.line, after, hit.lines))

    plan.ambiguous = [_ambiguous(raw, overlaps[id(raw)], held) for raw in raws if id(raw) in overlaps]
    plan.missing = _not_found(raws, matched | excused | set(overlaps), list(scopes))
    for doc in fresh:  # a new pool is of the fleet's GPUType of its GPU, which its models list: not of a second
        gpu = as_mapping(as_mapping(doc.get("spec")).get("gpu"))
        if doc.get("kind") == "Pool" and gpu.get("type") in type_names:
            gpu["type"] = type_names[gpu["type"]]
    taken = {name for kind, name in by_name if kind == "Pool"}
    added: dict[str, str] = {}  # a discovered Pool's name -> the name it is added under
    for doc in fresh:  # a new pool never takes a name the fleet has: one name, two pools
        name = doc["metadata"]["name"]
        if doc.get("kind") == "Pool" and name in taken:
            new_name = _unique_name(name, _place(_own_identity(doc), _provider(doc)), taken)
            doc["metadata"]["name"] = new_name
            why = namesakes.get(name, f"Pool/{name} is already in the fleet, as the pool of another group")
            plan.renamed.append(f"Pool/{name} -> Pool/{new_name}: {why}")
            added[name] = new_name
        elif doc.get("kind") == "Pool":
            taken.add(name)
            added[name] = name
    used = {as_mapping(d.get("spec")).get("location") for d in fresh if d.get("kind") == "Pool"}
    plan.skipped = [f"Location/{d['metadata']['name']}" for d in fresh
                    if d.get("kind") == "Location" and d["metadata"]["name"] not in used]
    fresh = [d for d in fresh if d.get("kind") != "Location" or d["metadata"]["name"] in used]
    # the fleet's own Locations keep their spec (a merge only fills in what is missing)
    unset = _noted([*fresh, *(r.data for (kind, _), r in by_name.items() if kind == "Location")])["Location"]
    plan.notes = notes_for(notes, {"Pool": added, "Location": unset, "GPUType": _noted(fresh)["GPUType"]})
    for path, file_edits in edits.items():
        plan.files[path] = _changed_text(path, _read_exact(path), file_edits)

    if fresh:
        target = root / DISCOVERED_FILE if root.is_dir() else root
        if target.exists() and not target.is_file():
            raise MergeError(f"cannot merge into {root}: {target} is a directory, not a file; new documents go "
                             "into that file: move the directory away, then discover again")
        for doc in fresh:
            problems += _new_problems(None, RawDocument(str(target), 0, doc))
        current = plan.files.get(target)
        if current is None:
            current = _read_exact(target) if target.exists() else ""
        end = "\r\n" if "\r\n" in current else "\n"  # the file's line ends, for what is appended too
        if current and not current.endswith("\n"):
            current += end
        more = _appended(fresh, header, plan.notes) if current.strip() else render(fresh, header, plan.notes)
        plan.files[target] = current + more.replace("\n", end)
        plan.added.extend(f"{target}: {d['kind']}/{d['metadata']['name']}" for d in fresh)
    problems += _fleet_problems(raws, plan.files)
    if problems:
        raise MergeError("the merged fleet would be invalid, so nothing was written: " + "; ".join(problems))
    return plan


def _kept(twins: list[tuple[RawDocument, str]], doc: dict[str, Any]) -> str:
    """Why the discovered Pool ``doc`` was not added: the fleet's pools ``twins`` are over its nodes."""
    name, provider = doc["metadata"]["name"], _provider(doc)
    pools = "; ".join(f"{raw.path}:{raw.line_of(('metadata', 'name'))}: Pool/{raw.data['metadata']['name']} "
                      f"({_provider(raw.data)}, {group})" for raw, group in twins)
    theirs = sorted({_provider(raw.data) for raw, _ in twins})
    return (f"{pools}: discovered Pool/{name} ({provider}) is over the same nodes, so it was not added and the "
            f"fleet's pool is kept (a merge never removes a pool, and two pools over one node group count its "
            f"GPUs twice); to have {provider} discovery own them instead, delete the fleet's "
            f"{'pool' if len(twins) == 1 else 'pools'} above ({'/'.join(theirs)}) and merge again")


def _keeping_selector(document: dict[str, Any]) -> dict[str, Any]:
    """A discovered Kubernetes Pool less its nodeSelector: the fleet's selects the same nodes."""
    document = copy.deepcopy(document)
    _kube_target(document).pop("nodeSelector", None)
    return document


def _not_found(raws: list[RawDocument], matched: set[int], scopes: list[tuple[Any, ...]]) -> list[str]:
    """The fleet's Pools in ``scopes`` that discovery did not find: a group that is gone, or the pool
    a transient taint split off (4 nodes claimed where 3 were). Said, not removed."""
    out = []
    for raw in raws:
        if id(raw) in matched or kind_and_name(raw.data) is None or raw.data.get("kind") != "Pool":
            continue
        where = next((s for s in scopes for i in identities(raw.data) if i[:len(s)] == s), None)
        if where is None:
            continue
        nodes = as_mapping(raw.data.get("spec")).get("nodes", MISSING)
        scope = " ".join([{"kubernetes": "kubernetes context"}.get(where[0], where[0]),
                          *(str(part) for part in where[1:] if part not in (None, ""))])
        out.append(f"{raw.path}:{raw.line_of(('metadata', 'name'))}: Pool/{raw.data['metadata']['name']} "
                   f"(nodes {_show(nodes)}): discovery read {scope} and found no such group there; if its "
                   "nodes are gone or now in another pool, remove it (the notes say which nodes were left out)")
    return out


def _fleet_errors(raws: Iterable[RawDocument]) -> dict[tuple[str, str, str, str], Diagnostic]:
    """The fleet-level errors (references, duplicate names, shared groups) ``placer validate`` finds
    in these documents, by what they say (lines move when a file is edited)."""
    docs: list[Document] = []
    invalid: list[tuple[str, str]] = []
    for raw in raws:
        doc, diags = load_document(raw)
        if doc is not None:
            docs.append(doc)
        elif diags and (named := kind_and_name(raw.data)) is not None:
            invalid.append(named)
    return {(d.kind, d.name, d.field, re.sub(r"\S+:\d+", "", d.message)): d
            for d in build_fleet(docs, invalid)[1] if d.severity == "error"}


def _fleet_problems(raws: list[RawDocument], files: dict[Path, str]) -> list[str]:
    """The errors the fleet would have with ``files`` written that it has not now: the merge checks
    the merged fleet as validate would (it wrote a duplicate pool name and a shared group, exit 0)."""
    if not files:
        return []
    after = [r for r in raws if Path(r.path) not in files]
    for path, text in files.items():
        after += parse_text(text, str(path))[0]
    before = _fleet_errors(raws)
    return [str(d) for key, d in _fleet_errors(after).items() if key not in before]


def merge(fleet_dir: str | Path, documents: list[dict[str, Any]]) -> dict[Path, str]:
    """The new contents of every fleet file that merging ``documents`` changes (or creates)."""
    return plan_merge(fleet_dir, documents).files
