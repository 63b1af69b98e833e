"""terraform fmt, validate and `terraform test` on the modules, offline.

Runs in temporary copies of terraform/ with a CLI config that installs hashicorp/aws
from a local filesystem mirror only; skips where terraform or the mirror is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.terraform.tfkit import TERRAFORM_DIR, Terraform, copy_terraform_tree, offline_aws_provider


def test_fmt_check(terraform: Terraform, tmp_path: Path) -> None:
    proc = terraform.run(TERRAFORM_DIR.parent, "fmt", "-check", "-recursive", "-diff", "terraform/", check=False)
    assert proc.returncode == 0, f"terraform fmt would change:\n{proc.stdout}{proc.stderr}"


def test_validate_placement(terraform: Terraform, tf_tree: Path) -> None:
    module = tf_tree / "modules" / "placement"
    terraform.init(module)
    proc = terraform.run(module, "validate")
    assert "The configuration is valid" in proc.stdout


def test_validate_aws_gpu_pools(terraform_aws: Terraform, tf_tree: Path) -> None:
    module = tf_tree / "modules" / "aws-gpu-pools"
    terraform_aws.init(module)
    proc = terraform_aws.run(module, "validate")
    assert "The configuration is valid" in proc.stdout
    lock = (module / ".terraform.lock.hcl").read_text()
    assert 'provider "registry.terraform.io/hashicorp/aws"' in lock


def test_placement_terraform_test(terraform: Terraform, tf_tree: Path) -> None:
    module = tf_tree / "modules" / "placement"
    terraform.init(module)
    proc = terraform.run(module, "test", timeout=120)
    assert "0 failed" in proc.stdout and "8 passed" in proc.stdout, proc.stdout


def test_aws_gpu_pools_terraform_test(terraform_aws: Terraform, tf_tree: Path) -> None:
    module = tf_tree / "modules" / "aws-gpu-pools"
    terraform_aws.init(module)
    proc = terraform_aws.run(module, "test", timeout=180)
    assert "0 failed" in proc.stdout and "13 passed" in proc.stdout, proc.stdout


@pytest.mark.parametrize("module", ["aws-gpu-pools", "gcp-gpu-pools", "placement"])
def test_module_has_readme_section(module: str) -> None:
    assert f"`{module}`" in (TERRAFORM_DIR / "README.md").read_text()


_REAL_AWS_ROOT = """\
variable "placer_pools" {
  type = any
}

variable "pool_settings" {
  type = any
}

""" + offline_aws_provider("eu-west-1") + """
module "aws_gpu_pools" {
  source        = "../terraform/modules/aws-gpu-pools"
  placer_pools  = var.placer_pools
  pool_settings = var.pool_settings
}
"""


def test_an_eks_pool_placer_fixed_at_0_nodes_plans(terraform_aws: Terraform, tmp_path: Path) -> None:
    """An EKS pool placer sized that the fleet makes `nodes: {count: 0}` (drained) stays in the tfvars
    at nodes = min_nodes = max_nodes = 0: the node group keeps 0 nodes under a maximum of 1, the least
    EKS takes. The aws provider's own check failed `terraform plan` ("expected
    scaling_config.0.max_size to be at least (1), got 0"). Planned with the real provider, no cloud."""
    copy_terraform_tree(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    (root / "main.tf").write_text(_REAL_AWS_ROOT)
    pool = {"provider": "aws", "nodes": 0, "min_nodes": 0, "max_nodes": 0, "gpu_type": "L4-24GB", "gpus_per_node": 4,
            "spot": False, "gcp": None,
            "aws": {"region": "eu-west-1", "auto_scaling_group_name": None, "eks_cluster": "ml", "eks_nodegroup": "l4"}}
    (root / "placer.auto.tfvars.json").write_text(json.dumps({"placer_pools": {"eks-l4": pool}, "pool_settings": {
        "eks-l4": {"instance_type": "g6.12xlarge", "subnet_ids": ["subnet-0123456789abcdef0"],
                   "node_role_arn": "arn:aws:iam::123456789012:role/eks-nodes"}}}))
    terraform_aws.run(root, "init", "-input=false", "-backend=false")
    terraform_aws.run(root, "plan", "-input=false", "-refresh=false", "-out=tfplan")
    shown = json.loads(terraform_aws.run(root, "show", "-json", "tfplan").stdout)
    (group,) = [r for r in shown["resource_changes"] if r["type"] == "aws_eks_node_group"]
    assert group["change"]["after"]["scaling_config"] == [{"desired_size": 0, "min_size": 0, "max_size": 1}]
