"""The gitops provider: carries out changes by writing files into a directory for a GitOps pipeline.

Deployments become manifests under ``clusters/<context>/`` (with a kustomization per
cluster), pool sizes become ``terraform/placer.auto.tfvars.json``. ``observe`` reads the
files back, so apply verifies what it wrote. Nothing here waits on a cluster: health is
the pipeline's business once the tree is merged.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import yaml

from placer.planfile import Change, atomic_write
from placer.render.tree import (
    TFVARS,
    kustomization_text,
    manifest_path,
    manifest_text,
    tfvars_entry,
    tfvars_text,
)
from providers.base import ProviderError, pool_nodes


class GitOpsProvider:
    name = "gitops"
    waits = False  # nothing to wait for: the tree is synced by the pipeline

    def __init__(self, directory: str | Path) -> None:
        self.root = Path(directory)
        self._lock = threading.Lock()

    def handles(self, change: Change) -> bool:
        return change.kind in ("pool", "deployment")

    # ------------------------------------------------------------ deployments

    def _manifest(self, change: Change) -> Path:
        return self.root / manifest_path(change.target)

    def _refresh_kustomization(self, folder: Path) -> None:
        resources = sorted(p.name for p in folder.glob("*.yaml") if p.name != "kustomization.yaml")
        kust = folder / "kustomization.yaml"
        if resources:
            atomic_write(kust, kustomization_text(resources))
        else:
            kust.unlink(missing_ok=True)
            if not any(folder.iterdir()):
                folder.rmdir()

    # ------------------------------------------------------------ pools

    def _read_tfvars(self) -> dict[str, Any]:
        path = self.root / TFVARS
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ProviderError(f"{path}: not valid JSON ({exc.msg}); fix or remove it before applying") from None
        pools = data.get("placer_pools", {}) if isinstance(data, dict) else {}
        return dict(pools) if isinstance(pools, dict) else {}

    # ------------------------------------------------------------ protocol

    def observe(self, change: Change) -> dict[str, Any] | None:
        if change.kind == "pool":
            entry = self._read_tfvars().get(change.pool)
            return None if entry is None else {"nodes": int(entry["nodes"])}
        path = self._manifest(change)
        if not path.exists():
            return None
        doc = yaml.safe_load(path.read_text())
        return {"replicas": int(doc["spec"]["replicas"])}

    def apply(self, change: Change) -> None:
        with self._lock:
            if change.kind == "pool":
                pools = self._read_tfvars()
                pools[change.pool] = tfvars_entry(change.target, pool_nodes(change))
                atomic_write(self.root / TFVARS, tfvars_text(pools))
                return
            path = self._manifest(change)
            if change.after is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write(path, manifest_text(change.target, int(change.after["replicas"])))
            if path.parent.exists():
                self._refresh_kustomization(path.parent)

    def wait_healthy(self, change: Change, timeout_s: float) -> None:
        return None
