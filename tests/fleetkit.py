"""Build small fleets in tests from Python dicts, through the real loader and validation."""

from __future__ import annotations

import datetime as dt
from typing import Any

import policies
from placer.fleet import Fleet, build_fleet
from placer.spec import FleetError, load_document
from placer.spec.source import RawDocument

NOW = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
RULES = policies.build_rules(NOW)


def doc(kind: str, name: str, spec: dict[str, Any] | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"apiVersion": "placer.dev/v1alpha1", "kind": kind, "metadata": {"name": name}}
    if labels:
        out["metadata"]["labels"] = labels
    if spec is not None:
        out["spec"] = spec
    return out


def location(name: str, env: str = "cloud", jurisdiction: str = "EU", local: float = 1.0) -> dict[str, Any]:
    return doc("Location", name, {"environment": env, "jurisdiction": jurisdiction, "localLatencyMs": local})


def link(a: str, b: str, latency: float, egress: float = 0.0) -> dict[str, Any]:
    return doc("Link", f"{a}-{b}", {"between": [a, b], "latencyMs": latency, "egressUsdPerGB": egress})


def pool(name: str, loc: str, gpu: str = "A100-80GB", per_node: int = 8, count: int | None = 1,
         min_nodes: int | None = None, max_nodes: int | None = None, usd: float = 1.0, spot: bool = False,
         provider: str = "static", labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    nodes = {"count": count} if min_nodes is None else {"min": min_nodes, "max": max_nodes}
    spec: dict[str, Any] = {"location": loc, "provider": provider, "gpu": {"type": gpu, "perNode": per_node},
                            "nodes": nodes, "usdPerGpuHour": usd, "spot": spot}
    if provider == "aws":
        spec["target"] = {"aws": {"region": "eu-west-1", "autoScalingGroupName": name}}
    spec.update(extra)
    return doc("Pool", name, spec, labels)


def inference(name: str, demand: list[dict[str, Any]], throughput: dict[str, float] | None = None, gpus: int = 1,
              mem: float = 20, labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"replica": {"gpus": gpus, "memoryGiBPerGpu": mem},
                            "throughput": throughput or {"A100-80GB": 100}, "demand": demand}
    spec.update(extra)
    return doc("Model", name, spec, labels)


def training(name: str, replicas: int, gpus: int = 8, mem: float = 60, labels: dict[str, str] | None = None,
             **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"workload": "training", "replica": {"gpus": gpus, "memoryGiBPerGpu": mem},
                            "replicas": replicas}
    spec.update(extra)
    return doc("Model", name, spec, labels)


def policy(name: str, rule: dict[str, Any], models: dict[str, Any] | None = None, pools: dict[str, Any] | None = None,
           penalty: float | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"rule": rule}
    if models:
        spec["models"] = models
    if pools:
        spec["pools"] = pools
    if penalty is not None:
        spec["enforcement"] = "preferred"
        spec["penaltyUsdPerHour"] = penalty
    return doc("Policy", name, spec)


def settings(**objective: float) -> dict[str, Any]:
    return doc("Settings", "settings", {"objective": objective, "solver": {"timeLimitSeconds": 20, "relativeGap": 0}})


def fleet(*docs: dict[str, Any]) -> Fleet:
    loaded = []
    problems = []
    for i, data in enumerate(docs):
        document, diags = load_document(RawDocument(path="test.yaml", line=i + 1, data=data))
        problems += diags
        if document is not None:
            loaded.append(document)
    built, more = build_fleet(loaded)
    problems += more
    errors = [d for d in problems if d.severity == "error"]
    if errors or built is None:
        raise FleetError(problems)
    return built


def with_groups(f: Fleet, active: set[str]) -> Fleet:
    """``f`` with only the ``active`` required policies and minReplicas (``conflicts.groups``' names):
    every model and every preferred policy kept. The reference a conflict check is tested against."""
    import dataclasses

    models = {n: m if f"model:{n}:minReplicas" in active or not m.spec.min_replicas
              else dataclasses.replace(m, spec=m.spec.model_copy(update={"min_replicas": None}))
              for n, m in f.models.items()}
    policies = tuple(p for p in f.policies if not p.required or f"policy:{p.name}" in active)
    return dataclasses.replace(f, models=models, policies=policies)
