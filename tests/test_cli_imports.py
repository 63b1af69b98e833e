"""What each quick command imports: none of the heavy modules it does not use (no timing here; the
latency itself is bench/cli_latency.py's). `placer --help` loaded the fleet's pydantic models and
networkx, `validate` OR-Tools, `plan` of a small fleet scipy.optimize and the scalable route, and the
error of `show missing.json` the planner's whole stack, to name its class."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import ROOT

HYBRID = str(ROOT / "examples" / "hybrid")
SDKS = ("boto3", "kubernetes", "google.cloud", "pynvml", "prometheus_client")
SOLVER = ("ortools", "scipy", "highspy", "placer.optimizer.solve", "placer.optimizer.large")
FLEET = ("pydantic", "networkx", "numpy", "placer.fleet", "placer.spec.kinds", "placer.planfile")


def imported(args: list[str], cwd: Path) -> tuple[int, set[str]]:
    """The exit status of `placer ARGS` run in a fresh interpreter, and the modules it imported."""
    code = ("import json, sys\nfrom placer.cli import main\nstatus = main(sys.argv[1:])\n"
            "sys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules)) + '\\n')\nsys.exit(status)\n")
    r = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    said = r.stderr.rpartition("\nMODULES ")[2]
    assert said.startswith("["), r.stderr
    return r.returncode, set(json.loads(said))


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """Those of ``names`` (or a module under one) that ``modules`` holds."""
    return sorted(m for m in modules for name in names if m == name or m.startswith(name + "."))


@pytest.mark.parametrize(("args", "unused"), [
    (["--help"], SDKS + SOLVER + FLEET),
    (["schema"], SDKS + SOLVER + ("networkx", "numpy", "placer.fleet")),
    (["validate", HYBRID], SDKS + SOLVER),
])
def test_a_quick_command_imports_no_module_it_does_not_use(tmp_path, args, unused):
    status, modules = imported(args, tmp_path)
    assert status == 0
    assert not loaded(modules, unused), args


def test_show_imports_the_plan_file_alone(tmp_path):
    assert imported(["plan", HYBRID, "-o", "plan.json"], tmp_path)[0] == 0
    status, modules = imported(["show", "plan.json"], tmp_path)
    assert status == 0
    assert not loaded(modules, SDKS + SOLVER + ("networkx", "numpy", "placer.fleet")), modules


def test_a_small_fleets_plan_imports_neither_scipy_networkx_nor_the_scalable_route(tmp_path):
    """A small fleet's plan takes the exact MIP (OR-Tools): neither scipy.optimize (the reasons' LP,
    for a re-plan's change without another reason), networkx (the topology is a dict; the reasons' flow
    is a re-plan's too) nor the scalable route (scipy.sparse, HiGHS)."""
    status, modules = imported(["plan", HYBRID, "--json"], tmp_path)
    assert status == 0
    assert not loaded(modules, (*SDKS, "scipy", "highspy", "networkx", "placer.optimizer.large")), modules
    assert "ortools" in modules  # a plan was made, by the exact MIP


def test_an_error_is_said_without_importing_the_planner(tmp_path):
    status, modules = imported(["show", "missing.json"], tmp_path)
    assert status == 1
    assert not loaded(modules, SDKS + SOLVER + ("placer.planner", "placer.apply")), modules
