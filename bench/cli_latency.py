"""The CLI's latency on a small fleet: what a pull-request check and an operator at a terminal wait for.

    python -m bench.cli_latency [--runs 9] [--against DIR] [--out FILE]

Times, in a fresh interpreter each run, `placer --help`, `validate examples/hybrid`, `plan
examples/hybrid`, `show PLAN` and `schema`, and prints each command's median, min and max wall time,
how many modules it imported and which heavy ones (`python -X importtime`, one run more). With
``--against DIR``, a checkout of another placer (``git worktree add /tmp/base BASE``) is timed too,
its run and this checkout's alternating, so that both see the same load on the machine. Bytecode
is cached for each (in a temporary PYTHONPYCACHEPREFIX, warmed by an untimed run) as an installed
placer's would be, whatever PYTHONDONTWRITEBYTECODE says.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("ortools", "scipy", "highspy", "numpy", "networkx", "pydantic", "boto3", "botocore", "kubernetes",
         "google", "prometheus_client")


def commands(tree: Path) -> dict[str, list[str]]:
    fleet = str(tree / "examples" / "hybrid")
    return {"--help": ["--help"], "validate": ["validate", fleet], "plan": ["plan", fleet],
            "show": ["show", "plan.json"], "schema": ["schema"]}


class Tree:
    """A placer checkout, run with its own PYTHONPATH, bytecode cache and working directory (where the
    hybrid example's relative state goes, and the plan ``show`` reads)."""

    def __init__(self, label: str, path: Path, scratch: Path) -> None:
        self.label, self.path = label, path
        self.cwd = scratch / label
        self.cwd.mkdir()
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self.env.update(PYTHONPATH=str(path), PYTHONPYCACHEPREFIX=str(scratch / f"pyc-{label}"))
        self.commands = commands(path)

    def run(self, args: list[str], *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *extra, "-m", "placer", *args], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=300)

    def prepare(self) -> None:
        """The plan `show` reads, and every command once, untimed: bytecode written, files cached."""
        r = self.run(["plan", str(self.path / "examples" / "hybrid"), "-o", "plan.json"])
        if r.returncode != 0:
            raise SystemExit(f"{self.label}: placer plan failed: {r.stderr}")
        for args in self.commands.values():
            self.run(args)

    def timed(self, args: list[str]) -> float:
        started = time.perf_counter()
        r = self.run(args)
        took = time.perf_counter() - started
        if r.returncode != 0:
            raise SystemExit(f"{self.label}: placer {' '.join(args)} exited {r.returncode}: {r.stderr}")
        return took

    def imports(self, args: list[str]) -> tuple[int, list[str]]:
        """How many modules `placer ARGS` imports, and which of HEAVY."""
        lines = [line for line in self.run(args, "-X", "importtime").stderr.splitlines()
                 if line.startswith("import time:") and "self [us]" not in line]
        names = {line.rsplit("|", 1)[1].strip() for line in lines}
        return len(names), sorted({n.split(".")[0] for n in names} & set(HEAVY))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9, help="timed runs of each command (default 9)")
    parser.add_argument("--against", type=Path, help="another placer checkout, timed beside this one")
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="placer-latency-") as scratch:
        trees = [Tree("this", ROOT, Path(scratch))]
        if args.against is not None:
            trees.insert(0, Tree("against", args.against.resolve(), Path(scratch)))
        for tree in trees:
            tree.prepare()
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.runs):
            for name in trees[0].commands:
                for tree in trees:  # alternating, so that both see the same load
                    times.setdefault((name, tree.label), []).append(tree.timed(tree.commands[name]))
        results: list[dict[str, Any]] = []
        print(f"{'command':<10} {'tree':<8} {'median s':>9} {'min s':>7} {'max s':>7} {'modules':>8}  heavy imports")
        for name in trees[0].commands:
            for tree in trees:
                took = times[(name, tree.label)]
                count, heavy = tree.imports(tree.commands[name])
                results.append({"command": name, "tree": tree.label, "path": str(tree.path),
                                "median": statistics.median(took), "min": min(took), "max": max(took),
                                "runs": took, "modules": count, "heavy": heavy})
                print(f"{name:<10} {tree.label:<8} {statistics.median(took):>9.3f} {min(took):>7.3f} "
                      f"{max(took):>7.3f} {count:>8}  {', '.join(heavy) or '-'}")
    if args.out is not None:
        args.out.write_text(json.dumps({"runs": args.runs, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
