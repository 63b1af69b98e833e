"""Where a cloud region is, as every discovery names it: the Location a region's pools go to and the
jurisdiction it is in; and which GPU a GCP accelerator type is, as GCP discovery and Kubernetes
discovery of a GKE node (``cloud.google.com/gke-accelerator``) both name it. One module, free of cloud
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


def aws_jurisdiction(region: str) -> str | None:
    """The jurisdiction of an AWS region (``eu-west-1``: EU, ``eu-west-2``: GB), or None where placer cannot tell."""
    return AWS_JURISDICTIONS.get(region) or AWS_PREFIXES.get(region.split("-", 1)[0])


def gcp_jurisdiction(region: str) -> str | None:
    """The jurisdiction of a GCP region (``europe-west4``: EU, ``europe-west6``: CH), or None where placer cannot tell."""
    return GCP_JURISDICTIONS.get(region) or GCP_PREFIXES.get(region.split("-", 1)[0])


def aws_location(region: str) -> str:
    return dns_label(f"aws-{region}", "pool")


def gcp_location(region: str) -> str:
    return dns_label(f"gcp-{region}", "pool")
