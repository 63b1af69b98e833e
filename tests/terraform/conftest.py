"""Fixtures for the Terraform module tests (see tfkit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.terraform.tfkit import (
    Terraform,
    copy_terraform_tree,
    find_aws_mirror,
    require_aws_mirror,
    require_terraform,
    write_cli_config,
)


@pytest.fixture(scope="session")
def terraform(tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    """terraform with an offline CLI config (skips where terraform is not on PATH).
    Uses the aws mirror when one is found; provider-less modules need none."""
    binary = require_terraform()
    mirror = find_aws_mirror()
    return Terraform(binary, write_cli_config(tmp_path_factory.mktemp("tfcli"), mirror), mirror)


@pytest.fixture(scope="session")
def terraform_aws(terraform: Terraform) -> Terraform:
    """terraform that can install hashicorp/aws offline (skips where no mirror is found)."""
    require_aws_mirror()
    return terraform


@pytest.fixture()
def tf_tree(tmp_path: Path) -> Path:
    """A fresh copy of terraform/ for one test."""
    return copy_terraform_tree(tmp_path)
