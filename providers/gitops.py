"""The gitops provider: carries out changes by writing files into a directory for a GitOps pipeline.

Deployments become manifests under ``clusters/<context>/`` (with a kustomization per
cluster), pool sizes become ``terraform/placer.auto.tfvars.json``. ``observe`` reads the
files back, so apply verifies what it wrote. Nothing here waits on a cluster: health is
the pipeline's business once the tree is merged.

A cluster's kustomization lists its manifests. It is written once per apply phase
(``finish``), from the manifests this provider knows a folder holds, not after each change:
rewriting a list of 4,000 manifests after each of them made a large fleet's first apply
quadratic. The first change of a provider's life rewrites any kustomization that does not list
its folder (an apply killed between a manifest and its phase's end leaves one behind).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import yaml

from placer.planfile import (
    Change,
    atomic_write,
    deployment_place,
    link_refusal,
    list_folder,
    read_said,
    tree_leftovers,
    tree_place,
)
from placer.render.moved import MOVED, heir, same_group, tree_moved
from placer.render.tree import (
    TFVARS,
    kustomization_text,
    listed,
    manifest_path,
    manifest_text,
    terraform_files,
    tfvars_entry,
    tfvars_text,
)
from providers.base import ProviderError, pool_nodes


class GitOpsProvider:
    name = "gitops"
    waits = False  # nothing to wait for: the tree is synced by the pipeline

    def __init__(self, directory: str | Path, plan_info: dict[str, Any] | None = None,
                 unchanged: dict[str, dict[str, Any]] | None = None) -> None:
        """``plan_info``: the plan's ``{fleet_digest, serial}``, written beside the pools in the
        tfvars as ``placer_plan`` (as ``placer render`` writes it). ``unchanged``: the tfvars entries
        of the pools the plan sizes and does not change (``tfvars_pools`` less its pool changes'), what
        a tfvars missing from the tree is written with before the changes write the others."""
        self.root = Path(directory)
        self.plan_info = plan_info
        self.unchanged = dict(unchanged or {})
        self._lock = threading.Lock()
        self._folders: dict[Path, set[str]] = {}  # a cluster folder's manifests, as on disk
        self._dirty: set[Path] = set()  # folders whose kustomization is behind
        self._checked = False  # whether the kustomizations found on disk were checked
        self._mended: list[str] = []  # what the check found to restore, and why, in words
        # kustomizations whose folder held no manifest when checked: removed, unless the apply writes
        # manifests there again; which of the two, ``said`` tells once the apply's phases are done
        self._emptied: list[Path] = []
        self._moved: list[str] = []  # what became of placer_moved.tf, in words (``_write_moved``)

    def handles(self, change: Change) -> bool:
        return change.kind in ("pool", "deployment")

    # ------------------------------------------------------------ deployments

    def _manifest(self, change: Change) -> Path:
        return self._plain(self.root / manifest_path(change.target), change.address)

    def _plain(self, path: Path, address: str | None = None) -> Path:
        """``path``, a file of the tree, where no symbolic link on the way leads elsewhere: a manifest
        that was a link overwrote the file outside the tree it pointed to, and a cluster folder that
        was one got the manifests and a kustomization there."""
        refused = link_refusal(self.root, path)
        if refused is not None:
            raise ProviderError(refused, retryable=False, address=address)
        return path

    def _names(self, folder: Path) -> set[str]:
        if folder not in self._folders:
            self._folders[folder] = ({p.name for p in list_folder(folder, "to read which manifests it holds")
                                      if listed(p)} if folder.is_dir() else set())
        return self._folders[folder]

    def _check_kustomizations(self) -> None:
        """Mark every cluster folder whose kustomization does not list its manifests."""
        self._checked = True
        clusters = self.root / "clusters"
        if not clusters.is_dir() or clusters.is_symlink():
            return
        # a folder that is a link is none of placer's: its *.yaml were listed, its kustomization written
        for folder in [p for p in list_folder(clusters, "to read which cluster folders it holds")
                       if p.is_dir() and not p.is_symlink()]:
            names = self._names(folder)
            kust = folder / "kustomization.yaml"
            if kust.is_symlink() or kust.is_dir():
                # never read through it, nor said restored: ``finish`` refuses it, naming it (an apply
                # said "restored" of a link to a file outside the tree, then refused to write it)
                self._dirty.add(folder)
                continue
            # placer's own file, whatever is in it: bytes that are no UTF-8 are an edit like any other
            have = read_said(kust, "to check that it lists its folder's manifests") if kust.exists() else None
            if have != (kustomization_text(sorted(names)) if names else None):
                self._dirty.add(folder)
                if names:
                    self._mended.append(_mend_note(kust, have, names))
                else:
                    self._emptied.append(kust)

    def mend(self) -> list[str]:
        """Remove the temporary files a killed write left (``tree_leftovers``), and mark every
        kustomization that is not the list of its folder's manifests placer writes, for
        ``finish`` to write: run by each apply first, changes or none (a killed apply's re-plan has
        none, and its tree stayed broken). What it will restore, and why, in words (a user's edit
        was undone by an apply that said only "No changes")."""
        with self._lock:
            if not self._checked:
                self._check_kustomizations()
            left = tree_leftovers(self.root)
            for path in left:
                path.unlink(missing_ok=True)
            if left:
                self._mended.append(f"removed {len(left)} temporary file(s) a killed write left in {self.root}: "
                                    + ", ".join(str(p.relative_to(self.root)) for p in left))
            self._restore_tfvars()
            mended, self._mended = self._mended, []
            return mended

    def _restore_tfvars(self) -> None:
        """Write the tfvars where the tree has none, as ``placer render`` of the plan writes them (its
        pool changes then write theirs): a fleet without cloud pools had none at all, and a tfvars
        deleted from the tree was left missing, or written with the entries of the plan's pool changes
        alone (the Terraform that reads them would destroy every other group). A link is left to the
        pool changes, which refuse it."""
        path = self.root / TFVARS
        if self.plan_info is None or path.exists() or path.is_symlink():
            return
        atomic_write(self._plain(path), tfvars_text(self.unchanged, self.plan_info))
        if self.unchanged:
            self._mended.append(f"restored {path}: it was missing; it names the {len(self.unchanged)} pool(s) placer "
                                "sizes that this plan does not change, at their sizes, and this apply's pool changes "
                                "write the others")

    def said(self) -> list[str]:
        """What became of the kustomizations whose folder held no manifest when the apply began, in
        words, once its phases are done: removed, or written again for the manifests the apply put
        there (it said "removed ...: its folder holds no manifest" of one it then wrote back); and the
        moved blocks written for renamed pools, or why none could be."""
        with self._lock:
            emptied, self._emptied = self._emptied, []
            moved, self._moved = self._moved, []
            return moved + [f"rewrote {kust}: the manifests it listed had been deleted from its folder; it lists the ones "
                    "this apply wrote there" if kust.exists() else f"removed {kust}: its folder holds no manifest"
                    for kust in emptied]

    def finish(self) -> None:
        """Write the kustomization of every folder this provider changed (the apply's phase ends),
        and the plan's ``placer_plan`` into the tfvars where they name another plan (an apply
        without pool changes left the last one's)."""
        with self._lock:
            path = self.root / TFVARS
            if self.plan_info is not None and path.exists():
                try:
                    stale = json.loads(read_said(path, "to check which plan it names", "strict")).get("placer_plan") != self.plan_info
                except (ValueError, AttributeError, RecursionError):  # not JSON, not UTF-8, nested too deeply
                    stale = False  # the next pool change says what is wrong with the file
                if stale:
                    atomic_write(self._plain(path), tfvars_text(self._read_tfvars(), self.plan_info))
            for folder in sorted(self._dirty):
                names = self._names(folder)
                kust = self._plain(folder / "kustomization.yaml")
                if names:
                    atomic_write(kust, kustomization_text(sorted(names)))
                else:
                    kust.unlink(missing_ok=True)
                    if folder.is_dir() and not any(folder.iterdir()):
                        folder.rmdir()
            self._dirty.clear()

    # ------------------------------------------------------------ pools

    def _read_tfvars(self) -> dict[str, Any]:
        path = self._plain(self.root / TFVARS)
        if not path.exists():
            return {}
        try:
            data = json.loads(read_said(path, "to read the pool sizes placer wrote there", "strict"))
        except json.JSONDecodeError as exc:
            raise ProviderError(f"{path}: not valid JSON ({exc.msg}); fix or remove it before applying") from None
        except UnicodeDecodeError:  # was said as Python's codec error, naming no file
            raise ProviderError(f"{path}: not UTF-8 text, so not the JSON placer writes; fix or remove it before "
                                "applying") from None
        except RecursionError:  # was "maximum recursion depth exceeded", naming no file
            raise ProviderError(f"{path}: JSON nested too deeply to read, not what placer writes; fix or remove it "
                                "before applying") from None
        pools = data.get("placer_pools", {}) if isinstance(data, dict) else {}
        return dict(pools) if isinstance(pools, dict) else {}

    def _write_moved(self, pools: dict[str, Any], renamed: dict[str, str], address: str) -> None:
        """Write the tree's ``placer_moved.tf`` for the tfvars' ``pools``, as ``placer render`` writes it:
        the renames it records kept while they apply, and ``renamed`` (this change's) added, so that
        Terraform moves a renamed pool's group in its state instead of destroying it with its nodes."""
        path = self._plain(self.root / MOVED, address)
        text, _, notes = tree_moved(terraform_files(self.root), pools, renamed)
        have = read_said(path, "to read the renames placer recorded there") if path.is_file() else None
        if text != have:
            if text is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write(path, text)
        if renamed and text is not None and text != have:
            self._moved.append(f"wrote {path}: moved blocks for the renamed pool(s) "
                               + ", ".join(f"{old} -> {new}" for old, new in sorted(renamed.items()))
                               + ", so terraform moves each group's resources in its state instead of destroying "
                               "the group with its nodes and making it anew; review its plan")
        self._moved += [f"{note} ({address})" for note in notes]

    # ------------------------------------------------------------ protocol

    def _read_manifest(self, change: Change) -> dict[str, Any] | None:
        """The Deployment at ``change``'s place: its manifest, where that file holds it (a manifest of
        another namespace at the same path is the copy that replaced it, not this one)."""
        path = self._manifest(change)
        if not path.exists():
            return None
        try:
            doc = yaml.safe_load(read_said(path, f"to read the manifest placer writes for {change.address}", "strict"))
        except (UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:
            # Python's words and no file named (a YAML error's over several lines) failed the apply
            why = ("not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else "YAML nested too deeply to read"
                   if isinstance(exc, RecursionError) else "not YAML")
            raise ProviderError(f"{path}: {why}, not the manifest placer writes for {change.address}; fix or remove "
                                "it before applying") from None
        namespace = ((doc or {}).get("metadata") or {}).get("namespace") if isinstance(doc, dict) else None
        return doc if str(namespace or "default") == deployment_place(change.target)[1] else None

    def _replaced_here(self, change: Change) -> bool:
        """A replacement's delete whose old place is the file its create wrote (no context and the
        context named default are one folder): the delete deleted the only copy."""
        new = (change.before or {}).get("replacedBy") if change.after is None else None
        if not isinstance(new, dict):
            return False
        return tree_place({"kubernetes": new}) == tree_place(change.target)  # one folder, one file name

    def observe(self, change: Change) -> dict[str, Any] | None:
        if change.kind == "deployment" and self._replaced_here(change):
            return None  # the old copy is the new one: nothing of it is left to find
        if change.kind == "pool":
            entry = self._read_tfvars().get(change.pool)
            return None if entry is None or not same_group(entry, tfvars_entry(change.target, 0)) else {"nodes": int(entry["nodes"])}
        doc = self._read_manifest(change)
        if doc is None:
            return None
        replicas = (doc.get("spec") or {}).get("replicas") if isinstance(doc.get("spec"), dict | None) else None
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ProviderError(f"{self._manifest(change)}: its spec.replicas is {replicas!r}, not a count: not the "
                                f"manifest placer writes for {change.address}; fix or remove it before applying")
        return {"replicas": replicas}

    def apply(self, change: Change) -> None:
        with self._lock:
            if not self._checked:
                self._check_kustomizations()
            if change.kind == "pool":
                pools = self._read_tfvars()
                written = True
                if change.action != "delete":
                    pools[change.pool] = tfvars_entry(change.target, pool_nodes(change))
                elif change.pool in pools and same_group(pools[change.pool], tfvars_entry(change.target, 0)):
                    del pools[change.pool]  # released: the Terraform that reads the tfvars no longer keeps it
                else:
                    written = False  # released already, or the entry names the group that replaced it
                if written:
                    atomic_write(self._plain(self.root / TFVARS, change.address), tfvars_text(pools, self.plan_info))
                # a release whose group another pool sizes now: a renamed pool, moved in the Terraform state
                now = heir(change.pool, tfvars_entry(change.target, 0), pools) if change.action == "delete" else None
                self._write_moved(pools, {} if now is None else {change.pool: now}, change.address)
                return
            path = self._manifest(change)
            names = self._names(path.parent)
            if change.after is None:
                if self._replaced_here(change):
                    return  # the file holds the copy that replaced it: the same place by another name
                if self._read_manifest(change) is None and path.exists():
                    return  # the file holds the copy that replaced it (same context, another namespace)
                path.unlink(missing_ok=True)
                names.discard(path.name)
            else:
                atomic_write(path, manifest_text(change.target, int(change.after["replicas"])))
                names.add(path.name)
            self._dirty.add(path.parent)

    def wait_healthy(self, change: Change, timeout_s: float) -> None:
        return None


def _mend_note(kust: Path, have: str | None, names: set[str]) -> str:
    """What ``finish`` will do to the kustomization ``kust`` (``have``: its text, None when missing;
    ``names``: its folder's manifests, not none), and why."""
    if have is None:
        return f"restored {kust}: it was missing (an apply stopped before the end of its phase)"
    try:
        doc = yaml.safe_load(have)
    except (yaml.YAMLError, RecursionError):  # nested too deeply: "maximum recursion depth exceeded" failed the apply
        doc = None
    resources = doc.get("resources") if isinstance(doc, dict) else None
    why = ("it had been edited" if isinstance(resources, list) and set(map(str, resources)) == names
           else "it did not list exactly the folder's manifests (an apply stopped before the end of its phase, or "
                "an edit)")
    return (f"restored {kust}: {why}; placer owns each cluster folder's kustomization.yaml, the list of the "
            f"folder's manifests: put your own kustomize edits in an overlay above {kust.parent} (a "
            "kustomization that lists it as a resource)")


