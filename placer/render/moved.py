"""Terraform ``moved`` blocks for renamed pools, in ``terraform/placer_moved.tf`` of the GitOps tree.

placer's Terraform modules key each group's resources by pool name, so a pool renamed in the fleet
that keeps its group (the plan releases the old name, its group sized by the new one) is another key
to Terraform, which destroys the group with its nodes and makes it anew. placer knows the rename, and
writes a ``moved`` block per resource of the group and per call of its modules that the root in
``terraform/*.tf`` makes. The file is placer's: rewritten whole by ``render`` and the gitops apply.

Terraform must see a block until every state that reads the tree has moved, which placer cannot see,
so the renames stay in the file: read back from it, kept as one chain of old names per group (a -> b,
then b -> c; Terraform refuses two moves to one address), ending at the pool that sizes the group
(``merged``). A user may delete the file once ``terraform apply`` has run on every state.
"""

from __future__ import annotations

import json
import re
from typing import Any

import hcl2

MOVED = "terraform/placer_moved.tf"
AWS_MODULE, GCP_MODULE = "aws-gpu-pools", "gcp-gpu-pools"
HEADER = ("# Written by placer (placer render, gitops apply): do not edit, it is rewritten whole.\n"
          "# A pool renamed in the fleet keeps its group: these blocks move the group's resources in the\n"
          "# Terraform state from the old pool's key to the new one's, where Terraform destroyed the group\n"
          "# and made it anew. Delete this file once `terraform apply` has run on every state that reads it.\n")

# a moved block's address as python-hcl2 reads it: ${module.NAME.TYPE.pool["KEY"]}
_KEY = re.compile(r'^\$\{module\.[^\s]+?\.pool\[("(?:[^"\\]|\\.)*")\]\}$')


def same_group(entry: Any, other: Any) -> bool:
    """Whether two tfvars entries name one group (provider, and its aws or gcp target)."""
    return (isinstance(entry, dict) and isinstance(other, dict)
            and all(entry.get(k) == other.get(k) for k in ("provider", "aws", "gcp")))


def resources(entry: dict[str, Any]) -> list[str]:
    """The resources (type.name) placer's module makes for a pool's tfvars entry."""
    aws, gcp = entry.get("aws") or {}, entry.get("gcp") or {}
    if entry.get("provider") == "aws":
        if aws.get("auto_scaling_group_name"):
            return ["aws_launch_template.pool", "aws_autoscaling_group.pool"]
        return ["aws_eks_node_group.pool"] if aws.get("eks_cluster") else []
    if entry.get("provider") == "gcp":
        manager = ("google_compute_instance_group_manager.pool" if gcp.get("zone")
                   else "google_compute_region_instance_group_manager.pool")
        return ["google_compute_instance_template.pool", manager]
    return []


def _text(value: Any) -> str:
    """A label or string attribute as python-hcl2 reads it (8.x keeps the quotes; 7.x did not), bare."""
    text = str(value)
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            return str(json.loads(text))
        except ValueError:
            return text[1:-1]
    return text


def _parsed(text: str) -> dict[str, Any] | None:
    """A ``.tf`` file's blocks as python-hcl2 reads them, or None where it cannot (Terraform would
    refuse such a file too, or it uses syntax python-hcl2 does not know)."""
    try:
        parsed = hcl2.loads(text)
    except Exception:  # python-hcl2 raises lark's errors, of several classes, on text it cannot read
        return None
    return parsed if isinstance(parsed, dict) else None


def module_calls(texts: dict[str, str]) -> tuple[dict[str, list[str]], list[str], list[str]]:
    """The calls of placer's modules in a root's ``*.tf`` (file name -> text): provider -> module
    names; the calls made with ``for_each`` or ``count``, whose instance keys a moved block must name
    and placer does not know; and the files python-hcl2 cannot read."""
    calls: dict[str, list[str]] = {"aws": [], "gcp": []}
    repeated: list[str] = []
    unreadable: list[str] = []
    for file, text in sorted(texts.items()):
        parsed = _parsed(text)
        if parsed is None:
            unreadable.append(file)
            continue
        for block in parsed.get("module", []):
            for label, body in (block.items() if isinstance(block, dict) else ()):
                if not isinstance(body, dict):
                    continue
                path = _text(body.get("source", "")).rstrip("/")
                provider = "aws" if path.endswith(AWS_MODULE) else "gcp" if path.endswith(GCP_MODULE) else None
                if provider is None:
                    continue
                if "for_each" in body or "count" in body:
                    repeated.append(_text(label))
                else:
                    calls[provider].append(_text(label))
    return {k: sorted(set(v)) for k, v in calls.items()}, sorted(set(repeated)), unreadable


def read_renames(text: str) -> dict[str, str]:
    """The renames (old pool -> new pool) the moved blocks of a ``placer_moved.tf`` record."""
    out: dict[str, str] = {}
    for block in (_parsed(text) or {}).get("moved", []):
        ends = [_KEY.search(str(block.get(k, ""))) if isinstance(block, dict) else None for k in ("from", "to")]
        if ends[0] is None or ends[1] is None:
            continue
        try:
            old, new = json.loads(ends[0].group(1)), json.loads(ends[1].group(1))
        except ValueError:
            continue
        if isinstance(old, str) and isinstance(new, str) and old != new:
            out[old] = new
    return out


def heir(old: str, entry: dict[str, Any], pools: dict[str, dict[str, Any]]) -> str | None:
    """The pool of ``pools`` (tfvars entries) other than ``old`` that sizes the group ``entry`` names."""
    return next((name for name, other in sorted(pools.items()) if name != old and same_group(other, entry)), None)


def merged(kept: dict[str, str], new: dict[str, str], pools: dict[str, dict[str, Any]]) -> dict[str, str]:
    """``kept`` renames with ``new`` ones added, as chains Terraform takes: one path of old names per
    group, ending at the pool that sizes it now (``pools``). Terraform refuses two moves to one address
    ("Ambiguous move statements"), a cycle, and a move from an address its configuration has ("Moved
    object still exists"), so a name that is a pool again (a rename back, or a name used anew) is taken
    out of its path (the name before it moves on to the one after), and a path that ends at no pool
    (the group released) is dropped."""
    out = dict(kept)

    def splice(name: str) -> None:
        if name in out:
            after = out.pop(name)
            for was, to in list(out.items()):
                if to == name:
                    out[was] = after

    for old, now in sorted(new.items()):
        splice(now)
        out[old] = now
    for name in sorted(pools):
        splice(name)

    def end(name: str) -> str | None:
        seen = {name}
        while name in out:
            name = out[name]
            if name in seen:
                return None  # a cycle (a hand-edited file): no move
            seen.add(name)
        return name

    return {old: now for old, now in sorted(out.items()) if old != now and end(old) in pools}


def moved_text(renames: dict[str, str], pools: dict[str, dict[str, Any]], calls: dict[str, list[str]]) -> str | None:
    """The text of ``placer_moved.tf``: a moved block per renamed pool, resource of its group and call
    of the module of its provider; None where there is no block to write."""
    blocks = []
    for old, new in sorted(renames.items()):
        last = new
        for _ in renames:  # the chain's end: the pool that sizes the group now (``merged`` left no cycle)
            last = renames.get(last, last)
        entry = pools.get(last) or {}
        for module in calls.get(str(entry.get("provider")), []):
            for resource in resources(entry):
                blocks.append(f"moved {{\n  from = module.{module}.{resource}[{json.dumps(old)}]\n"
                              f"  to   = module.{module}.{resource}[{json.dumps(new)}]\n}}\n")
    return HEADER + "".join(f"\n{b}" for b in blocks) if blocks else None


def tree_moved(terraform: dict[str, str], pools: dict[str, dict[str, Any]],
               new: dict[str, str]) -> tuple[str | None, dict[str, str], list[str]]:
    """The tree's ``placer_moved.tf`` (None: none), from the ``*.tf`` of its ``terraform/`` folder (file
    name -> text, placer's own among them), the pools the tfvars size and the renames of this plan:
    its text, the renames it records, and notes on renames it cannot write."""
    own = MOVED.rsplit("/", 1)[1]
    renames = merged(read_renames(terraform.get(own, "")), new, pools)
    calls, repeated, unreadable = module_calls({k: v for k, v in terraform.items() if k != own})
    text = moved_text(renames, pools, calls)
    notes = []
    if new and not any(calls[str((pools.get(n) or {}).get("provider"))] for n in new.values() if n in pools):
        notes.append(f"no call of placer's {AWS_MODULE} or {GCP_MODULE} module found in terraform/*.tf of the tree, "
                     "so no moved blocks were written for the renamed pool(s) " + _pairs(new)
                     + ": move their resources in your Terraform root's state yourself (moved blocks, or terraform "
                     "state mv) before terraform apply, or terraform destroys each group with its nodes and makes it anew")
    if new and unreadable:
        notes.append(f"terraform/{', terraform/'.join(unreadable)} could not be read (python-hcl2; run terraform validate "
                     "on it), so calls of placer's modules there got no moved blocks for the renamed pool(s) "
                     + _pairs(new) + ": write them yourself")
    if new and repeated:
        notes.append(f"module call(s) {', '.join(repeated)} use for_each or count, whose instance keys placer does not "
                     "know: write the moved blocks of the renamed pool(s) " + _pairs(new) + " for them yourself")
    return text, renames, notes


def _pairs(renames: dict[str, str]) -> str:
    return ", ".join(f"{old} -> {new}" for old, new in sorted(renames.items()))
