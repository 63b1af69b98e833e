"""terraform fmt, validate and `terraform test` on the modules, offline.

Runs in temporary copies of terraform/ with a CLI config that installs hashicorp/aws
from a local filesystem mirror only; skips where terraform or the mirror is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.terraform.tfkit import TERRAFORM_DIR, Terraform


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
    assert "0 failed" in proc.stdout and "10 passed" in proc.stdout, proc.stdout


@pytest.mark.parametrize("module", ["aws-gpu-pools", "gcp-gpu-pools", "placement"])
def test_module_has_readme_section(module: str) -> None:
    assert f"`{module}`" in (TERRAFORM_DIR / "README.md").read_text()
