"""Helpers for the end-to-end lifecycle tests: a small gitops fleet, providers that fail or
sleep on purpose, and a stand-alone apply runner (``python lifecycle_helpers.py slow-apply ...``)
that a test can kill with SIGKILL half-way.

The fleet's optimum is unique by construction (each model runs on exactly one GPU type,
replicas = ceil(demand / throughput), churn makes spare replicas cost), so the expected
changes can be written down:

    aws-h100 (elastic, 8 GPUs a node): chat 3 + embed 2 + summarize 1 replicas of 1 GPU -> 1 node
    dc1-a100 (fixed, static):          rerank 2 replicas

    initial plan: pool/aws-h100 create (phase 1); 4 deployment creates (phase 2)
    edited (chat demand 3000 -> 9000, summarize removed): pool/aws-h100 1 -> 2 nodes (phase 1),
    chat 3 -> 9 (phase 2), summarize deleted (phase 3)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from providers.base import ProviderError
from providers.gitops import GitOpsProvider

HERE = Path(__file__).resolve()

NOW = "2026-11-28T07:00:00Z"

INITIAL_CHANGES = [
    ("pool/aws-h100", "create", 1, None, {"nodes": 1}),
    ("deployment/chat@aws-h100", "create", 2, None, {"replicas": 3}),
    ("deployment/embed@aws-h100", "create", 2, None, {"replicas": 2}),
    ("deployment/rerank@dc1-a100", "create", 2, None, {"replicas": 2}),
    ("deployment/summarize@aws-h100", "create", 2, None, {"replicas": 1}),
]

EDITED_CHANGES = [
    ("pool/aws-h100", "update", 1, {"nodes": 1}, {"nodes": 2}),
    ("deployment/chat@aws-h100", "update", 2, {"replicas": 3}, {"replicas": 9}),
    ("deployment/summarize@aws-h100", "delete", 3, {"replicas": 1}, None),
]


def _doc(kind: str, name: str, spec: dict[str, Any], labels: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": "placer.dev/v1alpha1", "kind": kind, "metadata": metadata, "spec": spec}


def _model(name: str, gpu: str, throughput: float, location: str, rate: float) -> dict[str, Any]:
    return _doc("Model", name, {
        "replica": {"gpus": 1, "memoryGiBPerGpu": 20},
        "throughput": {gpu: throughput},
        "demand": [{"location": location, "rate": rate, "latencySloMs": 50}],
    })


def write_fleet(root: Path, state: dict[str, Any], deploy: Path, *, chat_rate: float = 3000,
                summarize: bool = True, aws_pool: bool = True, chat_image: str | None = None,
                chat_version: str | None = None, chat_gpus: int = 1,
                dc1_kubernetes: dict[str, Any] | None = None, asg: str = "h100", max_nodes: int = 4,
                aws_count: int | None = None, aws_name: str = "aws-h100", eks: dict[str, str] | None = None,
                aws_spot: bool | None = None) -> Path:
    """Write the lifecycle fleet under ``root`` (three files) and return ``root``. ``eks``: the aws
    pool sizes that EKS node group ({cluster, nodegroup}) instead of the Auto Scaling group ``asg``;
    ``aws_spot``: the pool's spot, every model then spot tolerant."""
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob("*.yaml"):
        old.unlink()
    topology = [
        _doc("Location", "dc1", {"environment": "onprem", "jurisdiction": "EU"}),
        _doc("Location", "aws-eu", {"environment": "cloud", "jurisdiction": "EU"}),
        _doc("Link", "dc1-aws", {"between": ["dc1", "aws-eu"], "latencyMs": 10, "egressUsdPerGB": 0.02}),
        _doc("Pool", "dc1-a100", {
            "location": "dc1", "provider": "static", "gpu": {"type": "A100-80GB", "perNode": 8},
            "nodes": {"count": 1}, "usdPerGpuHour": 1.0,
            **({"target": {"kubernetes": dc1_kubernetes}} if dc1_kubernetes else {}),
        }),
        _doc("Pool", aws_name, {
            "location": "aws-eu", "provider": "aws", "gpu": {"type": "H100-80GB", "perNode": 8},
            "nodes": {"min": 0, "max": max_nodes} if aws_count is None else {"count": aws_count},
            "usdPerGpuHour": 4.0, "target": {"aws": {"region": "eu-west-1", **(
                {"eks": eks} if eks else {"autoScalingGroupName": asg})}},
            **({"spot": aws_spot} if aws_spot is not None else {}),
        }),
    ]
    if not aws_pool:
        topology = [d for d in topology if d["metadata"]["name"] != aws_name]
    models = [
        _model("chat", "H100-80GB", 1000, "aws-eu", chat_rate),
        _model("embed", "H100-80GB", 1000, "aws-eu", 2000),
        _model("rerank", "A100-80GB", 1000, "dc1", 1500),
    ]
    if chat_image:
        models[0]["spec"]["image"] = chat_image
    if chat_version:
        models[0]["spec"]["version"] = chat_version
    models[0]["spec"]["replica"]["gpus"] = chat_gpus
    if summarize:
        models.append(_model("summarize", "H100-80GB", 1000, "aws-eu", 1000))
    for model in models if aws_spot is not None else []:
        model["spec"]["spotTolerant"] = True
    settings = [_doc("Settings", "settings", {
        "solver": {"timeLimitSeconds": 20, "workers": 1},
        "state": state,
        "apply": {"mode": "gitops", "directory": str(deploy), "parallelism": 1},
    })]
    for name, docs in (("topology.yaml", topology), ("models.yaml", models), ("settings.yaml", settings)):
        (root / name).write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return root


def changes_of(plan: dict[str, Any]) -> list[tuple[str, str, int, Any, Any]]:
    return [(c["address"], c["action"], c["phase"], c["before"], c["after"]) for c in plan["changes"]]


def tree(directory: Path) -> dict[str, str]:
    """Every file below ``directory``: relative path -> text."""
    if not directory.exists():
        return {}
    return {str(p.relative_to(directory)): p.read_text() for p in sorted(directory.rglob("*")) if p.is_file()}


def comparable_state(path: Path) -> dict[str, Any]:
    """The state minus what differs between two equal applies (lineage, serial, history)."""
    data = json.loads(path.read_text())
    return {k: v for k, v in data.items() if k not in ("lineage", "serial", "history")}


# ---------------------------------------------------------------- providers


class LoggingProvider(GitOpsProvider):
    """GitOpsProvider that appends ``start``/``done <address>`` to a log and sleeps before each change."""

    def __init__(self, directory: Path, log: Path, sleep_s: float = 0.0) -> None:
        super().__init__(directory)
        self.log = Path(log)
        self.sleep_s = sleep_s

    def _note(self, line: str) -> None:
        with self.log.open("a") as handle:
            handle.write(line + "\n")
            handle.flush()

    def apply(self, change: Any) -> None:
        self._note(f"start {change.address}")
        time.sleep(self.sleep_s)
        super().apply(change)
        self._note(f"done {change.address}")


class FaultyProvider(GitOpsProvider):
    """GitOpsProvider that fails on purpose.

    ``transient``: how many times each change's first apply attempts fail with a retryable
    error (429 / 503 messages, alternating). ``permanent_on``: the n-th distinct change (1-based)
    fails with a non-retryable error. ``calls`` counts every apply call.
    """

    def __init__(self, directory: Path, transient: int = 0, permanent_on: int | None = None) -> None:
        super().__init__(directory)
        self.transient = transient
        self.permanent_on = permanent_on
        self.calls: list[str] = []
        self.failures: dict[str, int] = {}
        self.seen: list[str] = []

    def apply(self, change: Any) -> None:
        self.calls.append(change.address)
        if change.address not in self.seen:
            self.seen.append(change.address)
        if self.permanent_on is not None and self.seen.index(change.address) + 1 == self.permanent_on:
            raise ProviderError(f"{change.address}: 400 Bad Request: invalid replica count", retryable=False,
                                address=change.address)
        failed = self.failures.get(change.address, 0)
        if failed < self.transient:
            self.failures[change.address] = failed + 1
            message = "429 Too Many Requests: slow down" if failed % 2 == 0 else "503 Service Unavailable"
            raise ProviderError(f"{change.address}: {message}", retryable=True, address=change.address)
        super().apply(change)


# ---------------------------------------------------------------- a killable apply


def slow_apply(plan_path: str, state_path: str, deploy: str, log: str, sleep_s: str) -> int:
    """What ``placer apply`` does, with a LoggingProvider that sleeps before each change."""
    from placer import planfile
    from placer.apply import Applier, check_fresh
    from placer.retry import RetryPolicy
    from placer.state import LocalBackend

    plan = planfile.read(plan_path)
    backend = LocalBackend(state_path)
    provider = LoggingProvider(Path(deploy), Path(log), float(sleep_s))
    applier = Applier(backend, [provider], parallelism=1, retry=RetryPolicy(base_seconds=0.001))
    demand = {m: float(v.get("demand", 0.0)) for m, v in plan.body.get("models", {}).items()}
    with backend.lock("apply"):
        state = backend.read()
        check_fresh(plan, state)
        applier.run(plan, state, "slow-apply", plan.body.get("cost", {}).get("totalUsdPerHour"), demand)
    return 0


def slow_cli_apply(plan_path: str, deploy: str, log: str, sleep_s: str) -> int:
    """``placer apply PLAN`` itself, its provider a LoggingProvider that sleeps before each change."""
    from placer import cli

    def providers_for(cfg: Any, directory_override: Any = None, plan: Any = None) -> list[Any]:
        return [LoggingProvider(Path(deploy), Path(log), float(sleep_s))]

    cli.providers_for = providers_for  # type: ignore[assignment]
    return cli.main(["apply", plan_path])


@contextmanager
def cli_apply_running(plan_path: Path, deploy: Path, log: Path, sleep_s: float) -> Iterator[subprocess.Popen[str]]:
    """``slow_cli_apply`` of ``plan_path`` in a child process (its steps written to ``log``), killed on
    the way out where it still runs."""
    proc = subprocess.Popen([sys.executable, str(HERE), "slow-cli-apply", str(plan_path), str(deploy), str(log),
                             str(sleep_s)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "400"})
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for_log(proc: subprocess.Popen[str], log: Path, ready: Callable[[list[str]], bool],
                 timeout_s: float = 60.0) -> list[str]:
    """The lines of ``log`` once ``ready`` holds of them; fails where ``proc`` ends or time runs out first."""
    deadline = time.monotonic() + timeout_s
    while True:
        lines = log.read_text().splitlines() if log.exists() else []
        if ready(lines):
            return lines
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, lines
        time.sleep(0.02)


def under_way(done: int) -> Callable[[list[str]], bool]:
    """``wait_for_log``'s test of an apply with ``done`` changes made and recorded and the next one begun."""
    return lambda lines: sum(line.startswith("done ") for line in lines) >= done and bool(lines) and \
        lines[-1].startswith("start ")


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "slow-apply":
        sys.exit(slow_apply(*sys.argv[2:]))
    if len(sys.argv) == 6 and sys.argv[1] == "slow-cli-apply":
        sys.exit(slow_cli_apply(*sys.argv[2:]))
    sys.exit(f"usage: {sys.argv[0]} slow-apply PLAN STATE DEPLOY LOG SLEEP_SECONDS\n"
             f"       {sys.argv[0]} slow-cli-apply PLAN DEPLOY LOG SLEEP_SECONDS")
