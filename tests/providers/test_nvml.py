"""NVML discovery from recordings of real hosts (tests/data/nvml), and on this host, which has no GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pynvml
import pytest

from placer.spec import RawDocument, load_document
from providers.base import Discovered, ProviderError
from providers.nvml import NO_DRIVER, RealNvml, ReplayNvml, discover_host, record

DATA = Path(__file__).resolve().parents[1] / "data" / "nvml"
ROOT = Path(__file__).resolve().parents[2]


def discover(name: str, **kwargs: Any) -> tuple[Discovered, list[Any]]:
    return discover_host(ReplayNvml(DATA / name), **kwargs)


def pools(found: Discovered) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in found.documents if d["kind"] == "Pool"}


def assert_valid(found: Discovered) -> None:
    for doc in found.documents:
        loaded, problems = load_document(RawDocument("discovered", 1, doc))
        assert loaded is not None and not problems, problems


def has_driver() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


# ---------------------------------------------------------------- recordings


def test_dgx_h100_is_one_static_pool_of_its_six_whole_h100s() -> None:
    found, rows = discover("h100x8.json")
    assert_valid(found)
    (pool,) = pools(found).values()
    assert pool["metadata"]["name"] == "dgx-h100-01"  # the short host name
    # GPUs 6 and 7 are in MIG mode: they take no whole-GPU replica
    assert pool["spec"] == {"location": "onprem", "provider": "static", "gpu": {"type": "H100-80GB", "perNode": 6},
                            "nodes": {"count": 1}, "usdPerGpuHour": 0, "target": {}}
    annotations = pool["metadata"]["annotations"]
    assert annotations["placer.dev/nvidia-driver"] == "550.54.15"
    assert annotations["placer.dev/cuda-driver"] == "12.4"
    assert annotations["placer.dev/discovered-from"] == "nvml:dgx-h100-01.lab.example.com"
    locations = [d for d in found.documents if d["kind"] == "Location"]
    assert locations == [{"apiVersion": "placer.dev/v1alpha1", "kind": "Location", "metadata": {"name": "onprem"},
                          "spec": {"environment": "onprem"}}]
    assert any("usdPerGpuHour is 0" in n and "fill in" in n for n in found.notes)
    assert [r.index for r in rows] == list(range(8))
    assert {r.memory_total_gib for r in rows} == {79.6}  # 85520809984 bytes
    assert rows[0].name == "NVIDIA H100 80GB HBM3" and rows[0].uuid.startswith("GPU-")
    assert rows[0].utilization_pct == 97 and rows[0].memory_used_gib == 71.1
    assert [r.mig for r in rows] == ["disabled"] * 6 + ["enabled"] * 2
    assert rows[6].utilization_pct is None  # NVML does not report utilization of a MIG-enabled GPU
    assert any("GPU(s) 6, 7 are in MIG mode" in n and "(6 of 8)" in n for n in found.notes)
    assert annotations["placer.dev/gpus"] == "0,1,2,3,4,5"


def test_t4_host_maps_onto_t4_16gb_and_has_no_mig() -> None:
    found, rows = discover("t4x2.json")
    assert_valid(found)
    (pool,) = pools(found).values()
    assert pool["spec"]["gpu"] == {"type": "T4-16GB", "perNode": 2}
    assert [r.mig for r in rows] == ["n/a", "n/a"]  # Turing: NotSupported
    assert rows[0].memory_total_gib == 14.8  # 15843721216 bytes: what NVML reports with ECC on
    assert "placer.dev/mig" not in pool["metadata"]["annotations"]


def test_a100_40gb_with_mig_reports_mig_per_gpu() -> None:
    found, rows = discover("a100-40gb-mig.json")
    assert_valid(found)
    (pool,) = pools(found).values()
    assert pool["spec"]["gpu"] == {"type": "A100-40GB", "perNode": 3}  # GPU 4 is to be in MIG mode after a reset
    assert [r.mig for r in rows[:5]] == ["enabled"] * 4 + ["disabled (enabled after reset)"]
    assert [r.mig for r in rows[5:]] == ["disabled"] * 3
    assert pool["metadata"]["annotations"]["placer.dev/mig"].startswith("GPU 0: enabled, GPU 1: enabled")
    (note,) = [n for n in found.notes if "MIG" in n]
    assert "GPU(s) 0, 1, 2, 3, 4 are in MIG mode" in note and "left out of gpu.perNode (3 of 8)" in note


def test_mixed_host_gives_one_pool_per_gpu_model_and_a_gpu_type_for_unknown_models() -> None:
    found, _ = discover("mixed.json", location="fra-dc1", pool_name="render")
    assert_valid(found)
    by_name = pools(found)
    assert set(by_name) == {"render-l40s-48gb", "render-rtx-a6000-48gb"}
    l40s, a6000 = by_name["render-l40s-48gb"], by_name["render-rtx-a6000-48gb"]
    assert l40s["spec"]["gpu"] == {"type": "L40S-48GB", "perNode": 2}
    assert l40s["metadata"]["annotations"]["placer.dev/gpus"] == "0,2"
    assert a6000["spec"]["gpu"] == {"type": "RTX-A6000-48GB", "perNode": 1}
    assert {p["spec"]["location"] for p in by_name.values()} == {"fra-dc1"}
    gpu_types = [d for d in found.documents if d["kind"] == "GPUType"]
    assert [(g["metadata"]["name"], g["spec"]["memoryGiB"]) for g in gpu_types] == [("RTX-A6000-48GB", 48.0)]
    assert [d["metadata"]["name"] for d in found.documents if d["kind"] == "Location"] == ["fra-dc1"]


def test_h200_recorded_on_a_real_gpu_idle_and_under_load() -> None:
    """Recorded by ``python -m providers.nvml`` on a real H200 (driver 580.159.04, nvidia-ml-py 13.610.43),
    once idle and once while a process held 40 GiB and ran bf16 matmuls (nvidia-smi: 41,843 MiB, 100 %)."""
    idle, idle_rows = discover("h200-recorded-idle.json")
    busy, busy_rows = discover("h200-recorded-busy.json")
    assert_valid(idle)
    (pool,) = pools(idle).values()
    assert pool["spec"]["gpu"] == {"type": "H200-141GB", "perNode": 1}  # 140.4 GiB reported: within the catalog's 15%
    assert pool["metadata"]["annotations"]["placer.dev/cuda-driver"] == "13.0"
    assert not [d for d in idle.documents if d["kind"] == "GPUType"]  # the catalog knows it: no GPUType added
    (row,) = idle_rows
    assert (row.memory_total_gib, row.memory_used_gib, row.utilization_pct, row.mig) == (140.4, 0.6, 0, "disabled")
    (row,) = busy_rows
    assert (row.memory_used_gib, row.utilization_pct) == (41.5, 100)
    assert busy.documents == idle.documents  # load changes the table, never the pool

def test_pool_name_and_location_are_the_callers() -> None:
    found, _ = discover("h100x8.json", location="ash-dc2", pool_name="ash-dgx")
    (pool,) = pools(found).values()
    assert pool["metadata"]["name"] == "ash-dgx" and pool["spec"]["location"] == "ash-dc2"


def test_a_gpu_that_stops_answering_is_left_out_with_a_note(tmp_path: Path) -> None:
    data = json.loads((DATA / "t4x2.json").read_text())
    data["devices"][1]["memory"] = {"error": "GpuIsLost"}
    (tmp_path / "lost.json").write_text(json.dumps(data))
    found, rows = discover_host(ReplayNvml(tmp_path / "lost.json"))
    assert [r.index for r in rows] == [0]
    assert pools(found)["infer-t4-07"]["spec"]["gpu"]["perNode"] == 1
    assert any("GPU 1" in n and "not counted" in n for n in found.notes)


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.json") if p.name != "no-driver.json"))
def test_recording_a_replay_gives_back_the_recording(name: str) -> None:
    assert record(ReplayNvml(DATA / name)) == json.loads((DATA / name).read_text())


# ---------------------------------------------------------------- no driver


class FailingInit(ReplayNvml):
    def __init__(self, error: type[pynvml.NVMLError]) -> None:
        super().__init__(DATA / "t4x2.json")
        self.error = error
        self.shut = False

    def init(self) -> None:
        raise self.error()

    def shutdown(self) -> None:
        self.shut = True


def test_library_not_found_is_one_clear_line() -> None:
    api = FailingInit(pynvml.NVMLError_LibraryNotFound)
    with pytest.raises(ProviderError) as caught:
        discover_host(api)
    assert str(caught.value) == ("NVML: no NVIDIA driver on this host (libnvidia-ml.so not found); "
                                 "run placer discover nvml on a GPU host")
    assert str(caught.value) == NO_DRIVER and "\n" not in NO_DRIVER
    assert not caught.value.retryable and not api.shut  # NVML was never started, so it is not shut down


@pytest.mark.parametrize(("error", "says"), [
    (pynvml.NVMLError_DriverNotLoaded, "driver is not loaded"),
    (pynvml.NVMLError_NoPermission, "Insufficient Permissions"),
])
def test_other_init_failures_are_one_line_too(error: type[pynvml.NVMLError], says: str) -> None:
    with pytest.raises(ProviderError) as caught:
        discover_host(FailingInit(error))
    message = str(caught.value)
    assert message.startswith("NVML: ") and says in message and "\n" not in message
    assert "run placer discover nvml on a GPU host" in message


def test_a_recorded_host_without_driver_replays_the_error() -> None:
    with pytest.raises(ProviderError, match=r"^NVML: no NVIDIA driver on this host \(libnvidia-ml.so not found\)"):
        discover("no-driver.json")


def test_unreadable_replay_is_a_provider_error(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ProviderError, match="not an NVML recording"):
        ReplayNvml(tmp_path / "x.json")


@pytest.mark.skipif(has_driver(), reason="this host has an NVIDIA driver")
def test_real_nvml_on_this_host_without_gpu() -> None:
    with pytest.raises(ProviderError) as caught:
        discover_host(RealNvml())
    assert str(caught.value) == NO_DRIVER


@pytest.mark.skipif(has_driver(), reason="this host has an NVIDIA driver")
def test_cli_on_this_host_without_gpu_exits_1_with_one_line() -> None:
    registered = subprocess.run(
        [sys.executable, "-c", "import placer.cli as c; print('discover' in c.cli.commands)"],
        cwd=ROOT, capture_output=True, text=True, timeout=60).stdout.strip() == "True"
    if registered:
        argv = [sys.executable, "-m", "placer", "discover", "nvml"]
    else:  # until placer.cli registers the command: the same entry point, registered here
        shim = ("import sys, placer.cli as c; from placer.cli_discover import discover; "
                "c.cli.add_command(discover); sys.exit(c.main())")
        argv = [sys.executable, "-c", shim, "discover", "nvml"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip() == f"Error: {NO_DRIVER}"
    assert "Traceback" not in done.stderr
