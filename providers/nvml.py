"""On-prem GPU discovery on one host through NVML (nvidia-ml-py, module ``pynvml``).

NVML sits behind a narrow seam, ``NvmlApi``: ``RealNvml`` calls pynvml, ``ReplayNvml`` answers
from a JSON recording of a real host (``python -m providers.nvml > host.json`` records one), so
discovery is tested without a GPU. ``discover_host`` turns one host's GPUs into fleet documents:
one static Pool per GPU product (a node of ``perNode`` GPUs), its Location, and per-GPU rows
for a table. The recording format is ``record()``'s output; an answer NVML refuses is stored as
``{"error": "NotSupported"}`` and replayed as the matching ``pynvml.NVMLError_*``.
"""

from __future__ import annotations

import json
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from placer.catalog import match_product, type_name
from placer.discover import GpuTypeNote, JurisdictionNote, PoolNote
from placer.spec.kinds import API_VERSION
from providers.base import Discovered, ProviderError, dns_label

NO_DRIVER = "NVML: no NVIDIA driver on this host (libnvidia-ml.so not found); run placer discover nvml on a GPU host"
DRIVER_NOT_LOADED = ("NVML: no NVIDIA driver on this host (libnvidia-ml.so is there but the driver is not loaded); "
                     "run placer discover nvml on a GPU host")
GIB = 1024**3
FORMAT = "placer.dev/nvml-recording/v1"


class NvmlApi(Protocol):
    """The NVML calls discovery makes. Handles are opaque; errors are ``pynvml.NVMLError`` subclasses."""

    def init(self) -> None: ...
    def shutdown(self) -> None: ...
    def hostname(self) -> str: ...
    def driver_version(self) -> str: ...
    def cuda_driver_version(self) -> int: ...
    def device_count(self) -> int: ...
    def handle(self, index: int) -> Any: ...
    def name(self, handle: Any) -> str: ...
    def uuid(self, handle: Any) -> str: ...
    def memory(self, handle: Any) -> tuple[int, int]:
        """(total, used) bytes."""
        ...
    def utilization(self, handle: Any) -> tuple[int, int]:
        """(GPU, memory) busy percent over the last sample period."""
        ...
    def mig_mode(self, handle: Any) -> tuple[int, int]:
        """(current, pending): 1 enabled, 0 disabled; NotSupported on GPUs without MIG."""
        ...


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RealNvml:
    """NvmlApi on the host's libnvidia-ml.so through pynvml (imported only here)."""

    def __init__(self) -> None:
        try:
            import pynvml
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise ProviderError("NVML: the nvidia-ml-py package is not installed; pip install nvidia-ml-py") from exc
        self._nvml = pynvml

    def init(self) -> None:
        self._nvml.nvmlInit()

    def shutdown(self) -> None:
        self._nvml.nvmlShutdown()

    def hostname(self) -> str:
        return socket.gethostname()

    def driver_version(self) -> str:
        return _text(self._nvml.nvmlSystemGetDriverVersion())

    def cuda_driver_version(self) -> int:
        return int(self._nvml.nvmlSystemGetCudaDriverVersion())

    def device_count(self) -> int:
        return int(self._nvml.nvmlDeviceGetCount())

    def handle(self, index: int) -> Any:
        return self._nvml.nvmlDeviceGetHandleByIndex(index)

    def name(self, handle: Any) -> str:
        return _text(self._nvml.nvmlDeviceGetName(handle))

    def uuid(self, handle: Any) -> str:
        return _text(self._nvml.nvmlDeviceGetUUID(handle))

    def memory(self, handle: Any) -> tuple[int, int]:
        info = self._nvml.nvmlDeviceGetMemoryInfo(handle)
        return int(info.total), int(info.used)

    def utilization(self, handle: Any) -> tuple[int, int]:
        rates = self._nvml.nvmlDeviceGetUtilizationRates(handle)
        return int(rates.gpu), int(rates.memory)

    def mig_mode(self, handle: Any) -> tuple[int, int]:
        current, pending = self._nvml.nvmlDeviceGetMigMode(handle)
        return int(current), int(pending)


def _replayed(answer: Any) -> Any:
    """A recorded answer, or the recorded NVML error raised as pynvml raises it."""
    if isinstance(answer, dict) and set(answer) == {"error"}:
        import pynvml

        cls = getattr(pynvml, f"NVMLError_{answer['error']}", None)
        if cls is None:
            raise ValueError(f"unknown NVML error {answer['error']!r} in the recording")
        raise cls()
    return answer


# each device's answers in a recording, as ``record()`` writes them: text, or pairs of counts
_ANSWERS: dict[str, tuple[str, ...]] = {"name": (), "uuid": (), "memory": ("total", "used"),
                                        "utilization": ("gpu", "memory"), "migMode": ("current", "pending")}


def _recorded_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _wrong_recording(data: dict[str, Any]) -> str | None:
    """What in an NVML recording is not what ``record()`` writes (read as it was, a memory of NaN
    or "lots" was an internal error, and one of -1 byte a GPU type named ``...-0GB``), or None."""
    def wrong_answer(where: str, answer: Any, pair: tuple[str, ...]) -> str | None:
        if isinstance(answer, dict) and set(answer) == {"error"}:
            return None if isinstance(answer["error"], str) else f"{where}.error {answer['error']!r} is no NVML error name"
        if not pair:
            return None if isinstance(answer, str) else f"{where} {answer!r} is no text"
        if not isinstance(answer, dict):
            return f"{where} {answer!r} is not an object of {' and '.join(pair)}"
        bad = next((k for k in pair if not _recorded_count(answer.get(k))), None)
        return None if bad is None else f"{where}.{bad} {answer.get(bad)!r} is no count"

    if not isinstance(data.get("hostname", ""), str):
        return f"hostname {data['hostname']!r} is no text"
    for key in ("driverVersion", "cudaDriverVersion"):  # read only once NVML started
        answer = data.get(key)
        if answer is None or (isinstance(answer, dict) and set(answer) == {"error"}):
            continue
        if key == "driverVersion" and not isinstance(answer, str):
            return f"{key} {answer!r} is no text"
        if key == "cudaDriverVersion" and not _recorded_count(answer):
            return f"{key} {answer!r} is no count"
    devices = data.get("devices", [])
    if not isinstance(devices, list):
        return "devices is not a list"
    for i, device in enumerate(devices):
        if not isinstance(device, dict):
            return f"devices[{i}] is not an object"
        for key, pair in _ANSWERS.items():
            if key not in device:
                return f"devices[{i}] has no {key}"
            if wrong := wrong_answer(f"devices[{i}].{key}", device[key], pair):
                return wrong
    return None


class ReplayNvml:
    """NvmlApi answering from a recording of a real host (``record()``'s JSON)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ProviderError(f"NVML replay {path}: cannot read it ({exc})") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ProviderError(f"NVML replay {path}: not an NVML recording (needs \"format\": \"{FORMAT}\")")
        wrong = _wrong_recording(data)
        if wrong:
            raise ProviderError(f"NVML replay {path}: malformed recording ({wrong}); record the host again with "
                                "`python -m providers.nvml > host.json`")
        self._data = data
        self._devices: list[dict[str, Any]] = list(data.get("devices", []))

    def init(self) -> None:
        _replayed(self._data.get("init"))

    def shutdown(self) -> None:
        pass

    def hostname(self) -> str:
        return str(self._data.get("hostname", "replay"))

    def driver_version(self) -> str:
        return str(_replayed(self._data["driverVersion"]))

    def cuda_driver_version(self) -> int:
        return int(_replayed(self._data["cudaDriverVersion"]))

    def device_count(self) -> int:
        return len(self._devices)

    def handle(self, index: int) -> Any:
        return self._devices[index]

    def name(self, handle: Any) -> str:
        return str(_replayed(handle["name"]))

    def uuid(self, handle: Any) -> str:
        return str(_replayed(handle["uuid"]))

    def memory(self, handle: Any) -> tuple[int, int]:
        mem = _replayed(handle["memory"])
        return int(mem["total"]), int(mem["used"])

    def utilization(self, handle: Any) -> tuple[int, int]:
        util = _replayed(handle["utilization"])
        return int(util["gpu"]), int(util["memory"])

    def mig_mode(self, handle: Any) -> tuple[int, int]:
        mig = _replayed(handle["migMode"])
        return int(mig["current"]), int(mig["pending"])


def record(api: NvmlApi) -> dict[str, Any]:
    """What ``api`` answers, in the format ReplayNvml reads (NVML errors recorded by name)."""
    import pynvml

    def ask(call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except pynvml.NVMLError as exc:
            return {"error": type(exc).__name__.removeprefix("NVMLError_")}

    _started(api)
    try:
        devices = []
        for index in range(api.device_count()):
            h = api.handle(index)
            devices.append({
                "name": ask(api.name, h),
                "uuid": ask(api.uuid, h),
                "memory": _pair(ask(api.memory, h), "total", "used"),
                "utilization": _pair(ask(api.utilization, h), "gpu", "memory"),
                "migMode": _pair(ask(api.mig_mode, h), "current", "pending"),
            })
        return {"format": FORMAT, "hostname": api.hostname(), "driverVersion": ask(api.driver_version),
                "cudaDriverVersion": ask(api.cuda_driver_version), "devices": devices}
    finally:
        api.shutdown()


def _pair(answer: Any, first: str, second: str) -> Any:
    return {first: answer[0], second: answer[1]} if isinstance(answer, tuple) else answer


# ---------------------------------------------------------------- discovery


@dataclass(frozen=True)
class GpuRow:
    """One GPU as the table shows it."""

    index: int
    name: str
    uuid: str
    memory_used_gib: float
    memory_total_gib: float
    utilization_pct: int | None  # None: NVML does not report it (MIG enabled, or unsupported)
    mig: str  # "enabled", "disabled", "enabled (disabled after reset)", "n/a"
    gpu_type: str


def _started(api: NvmlApi) -> None:
    """``api.init()``; a host without a working driver is one clear ProviderError."""
    import pynvml

    try:
        api.init()
    except pynvml.NVMLError_LibraryNotFound as exc:
        raise ProviderError(NO_DRIVER) from exc
    except pynvml.NVMLError_DriverNotLoaded as exc:
        raise ProviderError(DRIVER_NOT_LOADED) from exc
    except pynvml.NVMLError as exc:
        raise ProviderError(f"NVML: cannot start NVML on this host ({exc}); run placer discover nvml on a GPU "
                            "host with a working NVIDIA driver") from exc


def _mig_text(mode: tuple[int, int] | None) -> str:
    if mode is None:
        return "n/a"
    word = {1: "enabled", 0: "disabled"}
    current, pending = word.get(mode[0], str(mode[0])), word.get(mode[1], str(mode[1]))
    return current if current == pending else f"{current} ({pending} after reset)"


def _cuda_text(version: int) -> str:
    return f"{version // 1000}.{version % 1000 // 10}"


def discover_host(api: NvmlApi, location: str | None = None,
                  pool_name: str | None = None) -> tuple[Discovered, list[GpuRow]]:
    """Pool documents (one per GPU product; provider static, one node), a Location, and a row per GPU.

    ``location`` names the Location (default ``onprem``); ``pool_name`` names the Pool (default: the
    host name; with several products, ``<name>-<gpu type>`` each).
    """
    import pynvml

    _started(api)
    try:
        host = api.hostname()
        driver = api.driver_version()
        try:
            cuda: str | None = _cuda_text(api.cuda_driver_version())
        except pynvml.NVMLError:
            cuda = None
        notes: list[str] = []
        rows: list[GpuRow] = []
        gpu_types: dict[str, dict[str, Any]] = {}
        for index in range(api.device_count()):
            try:
                handle = api.handle(index)
                name = api.name(handle)
                total, used = api.memory(handle)
                uuid = api.uuid(handle)
            except pynvml.NVMLError as exc:
                notes.append(f"nvml {host}: GPU {index} did not answer NVML ({exc}); not counted")
                continue
            try:
                util: int | None = api.utilization(handle)[0]
            except pynvml.NVMLError:
                util = None
            try:
                mig: tuple[int, int] | None = api.mig_mode(handle)
            except pynvml.NVMLError:
                mig = None
            gpu_type = _gpu_type(name, total / GIB, gpu_types, notes)
            rows.append(GpuRow(index, name, uuid, round(used / GIB, 1), round(total / GIB, 1), util,
                               _mig_text(mig), gpu_type))
    finally:
        api.shutdown()
    return _documents(host, driver, cuda, rows, gpu_types, notes, location, pool_name), rows


def _gpu_type(product: str, memory_gib: float, added: dict[str, dict[str, Any]], notes: list[str]) -> str:
    """A catalog name when the product and memory match one; otherwise a GPUType document is added."""
    known = match_product(product, memory_gib)  # None where the memory is off
    if known:
        return known.name
    name = type_name(product, memory_gib)
    if name not in added:
        added[name] = {"apiVersion": API_VERSION, "kind": "GPUType", "metadata": {"name": name},
                       "spec": {"memoryGiB": round(memory_gib, 1), "vendor": "nvidia"}}
        notes.append(GpuTypeNote(f"GPUType {{names}}: GPU '{product}' is not in the built-in catalog; added it "
                                 "(check memoryGiB, and give models a throughput for it)", [name]))
    return name


def _documents(host: str, driver: str, cuda: str | None, rows: list[GpuRow], gpu_types: dict[str, dict[str, Any]],
               notes: list[str], location: str | None, pool_name: str | None) -> Discovered:
    where = location or "onprem"
    if not rows:
        notes.append(f"nvml {host}: NVML sees no GPUs on this host; nothing to add")
        return Discovered(documents=[], notes=notes)
    by_type: dict[str, list[GpuRow]] = {}
    for row in rows:
        by_type.setdefault(row.gpu_type, []).append(row)
    base = dns_label(pool_name or host.split(".")[0], "host")
    pools: list[dict[str, Any]] = []
    used: set[str] = set()  # the GPU types of the pools written (a type whose GPUs are all MIG needs no GPUType)
    for gpu_type, all_members in by_type.items():
        name = base if len(by_type) == 1 else dns_label(f"{base}-{gpu_type}", "host")
        # a GPU in MIG mode (or to be at the next reset) takes no whole-GPU replica: counted, a plan put
        # an 8-GPU replica on a host of 6 whole GPUs; Kubernetes discovery leaves MIG slices out too
        mig = [r for r in all_members if r.mig != "n/a" and r.mig != "disabled"]
        members = [r for r in all_members if r not in mig]
        gpus = ", ".join(str(r.index) for r in mig)
        if not members:
            notes.append(f"nvml {host}: every {gpu_type} GPU ({gpus}) is in MIG mode (or will be after a reset); "
                         "placer places whole GPUs only, so they are in no pool: disable MIG there "
                         "(`nvidia-smi -mig 0`, then reset the GPUs) and discover again, or declare the pool by hand")
            continue
        used.add(gpu_type)
        annotations = {"placer.dev/discovered-from": f"nvml:{host}",
                       "placer.dev/gpus": ",".join(str(r.index) for r in members),
                       "placer.dev/nvidia-driver": driver}
        if cuda:
            annotations["placer.dev/cuda-driver"] = cuda
        if mig:
            annotations["placer.dev/mig"] = ", ".join(f"GPU {r.index}: {r.mig}" for r in mig)
            notes.append(f"Pool {name}: GPU(s) {gpus} are in MIG mode (or will be after a reset) and are left out "
                         f"of gpu.perNode ({len(members)} of {len(all_members)}), as placer places whole GPUs only; "
                         "disable MIG there and discover again to count them")
        pools.append({
            "apiVersion": API_VERSION,
            "kind": "Pool",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {
                "location": where,
                "provider": "static",
                "gpu": {"type": gpu_type, "perNode": len(members)},
                "nodes": {"count": 1},
                "usdPerGpuHour": 0,
                "target": {},
            },
        })
        notes.append(PoolNote("Pool {names}: usdPerGpuHour is 0: fill in what a GPU hour of this host costs you "
                              "(amortised hardware, power, space)", [name]))
    if not pools:
        return Discovered(documents=[], notes=notes)
    gpu_types = {name: doc for name, doc in gpu_types.items() if name in used}
    location_doc = {"apiVersion": API_VERSION, "kind": "Location", "metadata": {"name": where},
                    "spec": {"environment": "onprem"}}
    notes.append(JurisdictionNote("Location {names}: set spec.jurisdiction (e.g. EU, US) for residency policies",
                                  [where]))
    if len(pools) > 1:
        notes.append(f"nvml {host}: the host mixes GPU models; one Pool per model, each a node of its GPUs")
    return Discovered(documents=[location_doc, *gpu_types.values(), *pools], notes=notes)


if __name__ == "__main__":  # pragma: no cover - records the host it runs on
    json.dump(record(RealNvml()), sys.stdout, indent=2)
    sys.stdout.write("\n")
