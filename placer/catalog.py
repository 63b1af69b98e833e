"""Built-in GPU types. A GPUType document adds one or overrides one (SPEC section 1)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuType:
    name: str
    memory_gib: float
    vendor: str | None = None
    family: str | None = None
    # other words a product name calls it by, matched as whole words as the stem is (AWS g5g: "T4g")
    variants: tuple[str, ...] = ()

    def words(self) -> frozenset[str]:
        """The whole words of a product name that name this type: its stem, and its variants."""
        return frozenset({self.name.split("-")[0].upper(), *(v.upper() for v in self.variants)})


BUILTIN_GPU_TYPES: dict[str, GpuType] = {
    t.name: t
    for t in (
        GpuType("H200-141GB", 141, "nvidia", "hopper"),
        GpuType("H100-80GB", 80, "nvidia", "hopper"),
        GpuType("A100-80GB", 80, "nvidia", "ampere"),
        GpuType("A100-40GB", 40, "nvidia", "ampere"),
        GpuType("L40S-48GB", 48, "nvidia", "ada"),
        GpuType("L4-24GB", 24, "nvidia", "ada"),
        GpuType("A10G-24GB", 24, "nvidia", "ampere"),
        GpuType("T4-16GB", 16, "nvidia", "turing", ("T4G",)),
        GpuType("Orin-64GB", 64, "nvidia", "ampere"),
    )
}


# reported memory within this fraction of a catalog type's: the same GPU (drivers report a little less)
MEMORY_TOLERANCE = 0.15


# words of a product name that say its maker, form factor or memory, not which GPU it is: AWS names a
# V100 "V100", Kubernetes (GPU Feature Discovery) "Tesla-V100-SXM2-16GB", NVML "Tesla V100-SXM2-16GB"
NOT_THE_GPU = re.compile(r"NVIDIA|TESLA|SXM[0-9]*|PCIE|HBM[0-9]*E?|[0-9]+GB", re.IGNORECASE)

# one GPU that a cloud names otherwise than NVML does (the words that say which GPU it is, upper case) ->
# NVML's words for it. EC2's DescribeInstanceTypes names g7e's GPU "RTX PRO Server 6000" (98304 MiB);
# on a g7e node NVML and GPU Feature Discovery name it "NVIDIA RTX PRO 6000 Blackwell Server Edition"
# (97887 MiB): RTX-PRO-Server-6000-96GB and RTX-PRO-6000-Blackwell-Server-Edition-96GB were two GPUTypes
# of one GPU. Alike g7's: EC2 "RTX PRO 4500" (32768 MiB), AWS and NVIDIA "NVIDIA RTX PRO 4500 Blackwell
# Server Edition" (docs/reference.md has the sources)
CLOUD_NAMES: dict[tuple[str, ...], tuple[str, ...]] = {
    ("RTX", "PRO", "SERVER", "6000"): ("RTX", "PRO", "6000", "Blackwell", "Server", "Edition"),
    ("RTX", "PRO", "4500"): ("RTX", "PRO", "4500", "Blackwell", "Server", "Edition"),
}


def type_name(product: str, memory_gib: float) -> str:
    """The GPUType name of a GPU the catalog lacks, as every discovery names it: the words of its product
    name that say which GPU it is, and its memory, as the catalog's names are (``NVIDIA RTX A6000``, 48 GiB
    -> ``RTX-A6000-48GB``; ``Tesla-V100-SXM2-16GB`` and AWS's ``V100``, 16 GiB -> ``V100-16GB``), so that
    one GPU is one type whichever discovery found it (AWS's ``B200-179GB`` was Kubernetes'
    ``NVIDIA-B200-179GB``, and a model's throughput for the one missed the other's pools; a cloud's
    other name for a GPU is NVML's, ``CLOUD_NAMES``), and one
    product at two memory sizes two (Kubernetes named both by the product: one type, of the first's memory).

    The size is ``name_gb``'s: the GB a GPU is sold as, from what a driver or cloud reports."""
    words = [w for w in re.split(r"[^A-Za-z0-9.]+", product) if w.strip(".") and not NOT_THE_GPU.fullmatch(w)]
    words = list(CLOUD_NAMES.get(tuple(w.upper() for w in words), words))
    stem = "-".join(words).strip("-.") or "GPU"
    return f"{stem}-{name_gb(memory_gib)}GB"


# reported memory more than this above a whole GiB is the next one's, less what the driver keeps back
NAME_SLACK_GIB = 0.25


def name_gb(memory_gib: float) -> int:
    """The whole GB a GPU's name says, from the GiB a driver or cloud reports of it: the next whole
    number up, unless the report is within NAME_SLACK_GIB above one. A driver reports a little less
    than the GPU is sold as (it keeps some back: NVML's H200 is 140.4 GiB, EC2's and GCP's 141, a P4's
    7611 MiB 7.4 GiB of GCP's 8 GB), a cloud's table the size it is sold as or a little more (B200
    179.06, GB200 185.03): rounded to the nearest, 140.4 was 140 and 141.0 141, so one GPU had two names
    (H200-140GB, H200-141GB) by which discovery read it, and a P4 was P4-7GB. Reports of one GPU
    cluster just below a whole number or at it, far from the quarter above it that splits them."""
    return max(0, math.ceil(round(memory_gib - NAME_SLACK_GIB, 6)))


def gpu_name(written: str) -> str:
    """A GPUType name as ``type_name`` names that GPU now: a fleet's from before it dropped maker and form
    factor (``NVIDIA-RTX-A6000-48GB``) is ``RTX-A6000-48GB``; any other name is itself."""
    named = re.fullmatch(r"(.+)-([0-9]+)GB", written)
    return type_name(named[1], int(named[2])) if named else written


def same_gpu_name(written: str, found: str) -> bool:
    """Whether the GPUType name ``written`` (a fleet's) is the one discovery now names ``found``: a merge
    keeps the fleet's name, which its models' throughput and gpuTypes list. A name from before ``name_gb``
    rounded to the nearest GB (``P4-7GB`` of what is now ``P4-8GB``) is one GB less."""
    if written == found or gpu_name(written) == found:
        return True
    now, then = re.fullmatch(r"(.+)-([0-9]+)GB", found), re.fullmatch(r"(.+)-([0-9]+)GB", gpu_name(written))
    return bool(now and then and now[1] == then[1] and int(then[2]) == int(now[2]) - 1)


def match_product(product: str, memory_gib: float | None = None) -> GpuType | None:
    """Map a product name as NVML, Kubernetes labels or a cloud reports it onto the catalog.

    ``NVIDIA H100 80GB HBM3`` -> H100-80GB; ``Tesla T4`` -> T4-16GB; ``NVIDIA A100-SXM4-40GB`` -> A100-40GB.
    A type's stem (H100, L4, Orin) must be a whole word of the name, not part of one: ``NVIDIA-GH200-480GB``
    is no H200, nor ``L40S`` an L4; a known variant is a word too (``T4g``, AWS g5g's T4). Memory (GiB, as reported) breaks ties between variants of one family,
    and rules out a type whose memory is more than MEMORY_TOLERANCE off: None, not the nearest.
    """
    words = set(re.split(r"[^A-Z0-9]+", product.upper()))
    candidates = [gpu for gpu in BUILTIN_GPU_TYPES.values() if gpu.words() & words]
    if memory_gib is not None:
        candidates = [g for g in candidates if abs(g.memory_gib - memory_gib) <= MEMORY_TOLERANCE * g.memory_gib]
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    size_in_name = [g for g in candidates if g.name.split("-")[1] in words]
    if len(size_in_name) == 1:
        return size_in_name[0]
    if memory_gib is not None:
        return min(candidates, key=lambda g: abs(g.memory_gib - memory_gib))
    return max(candidates, key=lambda g: g.memory_gib)
