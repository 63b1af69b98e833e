"""Where a cloud region is, as every discovery names it: the Location a region's pools go to and the
jurisdiction it is in; and which GPU a GCP accelerator type is, as GCP discovery and Kubernetes
discovery of a GKE node (``cloud.google.com/gke-accelerator``) both name it. One module, free of cloud SDKs, so that Kubernetes discovery names the nodes
of an EKS or GKE cluster's region as AWS and GCP discovery name that region (it named them
``us-east-1`` beside AWS discovery's ``aws-us-east-1``: two Locations, no Link, no route)."""

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
