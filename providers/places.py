"""Where a cloud region is, as every discovery names it: the Location a region's pools go to and the
jurisdiction it is in; and which GPU a GCP accelerator type or an EC2 instance type is, as GCP or AWS
discovery and Kubernetes discovery of a GKE node (``cloud.google.com/gke-accelerator``) or an EKS one
(``node.kubernetes.io/instance-type``) both name it. One module, free of cloud
SDKs, so that Kubernetes discovery names the nodes of an EKS or GKE cluster's region as AWS and GCP
discovery name that region (it named them ``us-east-1`` beside AWS discovery's ``aws-us-east-1``: two
Locations, no Link, no route), and their GPUs as those discoveries name them."""

from __future__ import annotations

from providers.base import dns_label

# Regions whose prefix says a jurisdiction they are not in: London and Zurich are no EU, and
# Mexico is no Canada (``eu-west-2`` was EU, so a required allowPools of EU placed EU data there)
AWS_JURISDICTIONS = {"eu-west-2": "GB", "eu-central-2": "CH"}
AWS_PREFIXES = {"eu": "EU", "us": "US"}
GCP_JURISDICTIONS = {"europe-west2": "GB", "europe-west6": "CH", "northamerica-south1": "MX"}
GCP_PREFIXES = {"europe": "EU", "us": "US", "northamerica": "CA", "australia": "AU"}
# GCP accelerator type -> catalog GPU type (names alone cannot tell A100 40GB from 80GB)
GCP_ACCELERATORS: dict[str, str] = {
    "nvidia-tesla-t4": "T4-16GB", "nvidia-tesla-t4-vws": "T4-16GB",
    "nvidia-l4": "L4-24GB", "nvidia-l4-vws": "L4-24GB",
    "nvidia-tesla-a100": "A100-40GB", "nvidia-a100-80gb": "A100-80GB",
    "nvidia-h100-80gb": "H100-80GB", "nvidia-h100-mega-80gb": "H100-80GB",
    "nvidia-h200-141gb": "H200-141GB",
}
# GCP accelerator types of GPUs the catalog lacks: GCP reports no memory for them, so here are their
# product and memory (MiB) as NVML and GPU Feature Discovery report them, which name the GPUType as AWS,
# Kubernetes and NVML discovery name it (type_name: NVIDIA B200, 183359 MiB -> B200-179GB)
GCP_OTHER_ACCELERATORS: dict[str, tuple[str, int]] = {
    "nvidia-tesla-v100": ("Tesla V100-SXM2-16GB", 16160),
    "nvidia-tesla-p100": ("Tesla P100-PCIE-16GB", 16280), "nvidia-tesla-p100-vws": ("Tesla P100-PCIE-16GB", 16280),
    "nvidia-tesla-p4": ("Tesla P4", 7611), "nvidia-tesla-p4-vws": ("Tesla P4", 7611),
    "nvidia-b200": ("NVIDIA B200", 183359),
    "nvidia-gb200": ("NVIDIA GB200", 189471),
}
# EC2 instance families of NVIDIA GPUs -> the GPU's name and memory (MiB) as EC2's DescribeInstanceTypes
# reports them (GpuInfo), which AWS discovery types a group's GPU by: Kubernetes discovery types an EKS
# node without GPU Feature Discovery by its node.kubernetes.io/instance-type alike (p6-b200 is B200-179GB
# in both). Every size of a family has the same GPU; the count comes from the node's nvidia.com/gpu.
# Families of fractional GPUs (g6f, gr6f: EC2 reports Count 0, and a share of an L4) are not here, and are
# no pool: placer places whole GPUs. p6e-gb200 (the instances of a P6e-GB200 UltraServer, 4 GPUs each; AWS
# publishes 740 GB of HBM3e per p6e-gb200.36xlarge, 185 GB a GPU) is not in moto's copy of EC2's table:
# its GPU is the one GCP's nvidia-gb200 and NVML name NVIDIA GB200 of 189471 MiB, GB200-185GB everywhere.
AWS_GPU_FAMILIES: dict[str, tuple[str, int]] = {
    "p3": ("V100", 16384), "p3dn": ("V100", 32768),
    "p4d": ("A100", 40960), "p4de": ("A100", 81920),
    "p5": ("H100", 81920), "p5e": ("H200", 144384), "p5en": ("H200", 144384),
    "p6-b200": ("B200", 183359), "p6-b300": ("B300", 275040), "p6e-gb200": ("GB200", 189471),
    "g4dn": ("T4", 16384), "g5g": ("T4g", 16384), "g5": ("A10G", 22888),
    "g6": ("L4", 22888), "gr6": ("L4", 22888), "g6e": ("L40S", 45776),
    "g7": ("RTX PRO 4500", 32768), "g7e": ("RTX PRO Server 6000", 98304),
}
AWS_FRACTIONAL_GPU_FAMILIES = frozenset({"g6f", "gr6f"})


def aws_jurisdiction(region: str) -> str | None:
    """The jurisdiction of an AWS region (``eu-west-1``: EU, ``eu-west-2``: GB), or None where placer cannot tell."""
    return AWS_JURISDICTIONS.get(region) or AWS_PREFIXES.get(region.split("-", 1)[0])


def gcp_jurisdiction(region: str) -> str | None:
    """The jurisdiction of a GCP region (``europe-west4``: EU, ``europe-west6``: CH), or None where placer cannot tell."""
    return GCP_JURISDICTIONS.get(region) or GCP_PREFIXES.get(region.split("-", 1)[0])


def aws_instance_gpu(instance_type: str) -> tuple[str, int] | None:
    """(GPU name, MiB per GPU) of an EC2 instance type as EC2 reports them (``p5.48xlarge``: H100,
    81920), or None where placer does not know its family to have whole NVIDIA GPUs."""
    return AWS_GPU_FAMILIES.get(instance_type.split(".", 1)[0])


def aws_fractional_gpu(instance_type: str) -> bool:
    """Whether an EC2 instance type has a fraction of a GPU (``g6f.xlarge``: an eighth of an L4)."""
    return instance_type.split(".", 1)[0] in AWS_FRACTIONAL_GPU_FAMILIES


def aws_location(region: str) -> str:
    return dns_label(f"aws-{region}", "pool")


def gcp_location(region: str) -> str:
    return dns_label(f"gcp-{region}", "pool")
