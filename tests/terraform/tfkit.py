"""Running Terraform offline in tests: find the binary and a hashicorp/aws provider
mirror, write a CLI config that installs only from that mirror, and run commands in
temporary copies of terraform/ so no .terraform directory lands in the repository.

Missing terraform or a missing mirror make the calling test skip, never fail.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO / "terraform"
MODULES = TERRAFORM_DIR / "modules"
SAMPLE_TFVARS = TERRAFORM_DIR / "examples" / "placer.auto.tfvars.json"

# The modules pin hashicorp/aws ">= 5.0, < 6.0"; a mirror is usable if it holds a 5.x.
AWS_MAJOR = 5
# Where a machine image or a developer usually keeps a provider mirror.
MIRROR_CANDIDATES = (
    "/opt/tf-plugins",
    "/opt/terraform/plugins",
    "/opt/terraform-plugins",
    "/usr/local/share/terraform/plugins",
    "/usr/share/terraform/plugins",
    "~/.terraform.d/plugins",
    "~/.local/share/terraform/plugins",
    "/root/.terraform.d/plugins",
)
# Searched (a few levels deep) when no candidate holds the provider.
MIRROR_SEARCH_ROOTS = ("/opt", "/usr/local/share", "/root")

_SKIP_DIRS = {"proc", "sys", "dev", "node_modules", ".git", "site-packages", "__pycache__", ".venv"}


def terraform_platform() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return f"{platform.system().lower()}_{arch}"


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def aws_versions_in_mirror(mirror: Path) -> list[str]:
    """hashicorp/aws versions for this platform in a filesystem mirror, either layout
    (unpacked: .../aws/VERSION/OS_ARCH/terraform-provider-aws*; packed: .../aws/terraform-provider-aws_VERSION_OS_ARCH.zip)."""
    base = mirror / "registry.terraform.io" / "hashicorp" / "aws"
    if not base.is_dir():
        return []
    plat = terraform_platform()
    found = set()
    for entry in base.iterdir():
        if entry.is_dir() and any((entry / plat).glob("terraform-provider-aws*")):
            found.add(entry.name)
        match = re.fullmatch(rf"terraform-provider-aws_(.+)_{plat}\.zip", entry.name)
        if match and entry.is_file():
            found.add(match.group(1))
    usable = [v for v in found if _version_key(v)[:1] == (AWS_MAJOR,)]
    return sorted(usable, key=_version_key)


def _search(root: Path, depth: int) -> Iterable[Path]:
    if depth < 0 or not root.is_dir():
        return
    try:
        children = sorted(root.iterdir())
    except OSError:
        return
    for child in children:
        if child.name == "registry.terraform.io" and child.is_dir():
            yield root
        elif child.is_dir() and not child.is_symlink() and child.name not in _SKIP_DIRS:
            yield from _search(child, depth - 1)


def find_aws_mirror() -> Path | None:
    """PLACER_TF_MIRROR if set (and usable), else the first likely path holding hashicorp/aws 5.x."""
    explicit = os.environ.get("PLACER_TF_MIRROR")
    if explicit:
        path = Path(explicit).expanduser()
        return path if aws_versions_in_mirror(path) else None
    for candidate in MIRROR_CANDIDATES:
        path = Path(candidate).expanduser()
        if aws_versions_in_mirror(path):
            return path
    for root in MIRROR_SEARCH_ROOTS:
        for path in _search(Path(root), depth=4):
            if aws_versions_in_mirror(path):
                return path
    return None


def require_terraform() -> str:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.skip("terraform not on PATH")
    return binary


def require_aws_mirror() -> Path:
    mirror = find_aws_mirror()
    if mirror is None:
        where = os.environ.get("PLACER_TF_MIRROR") or ", ".join(MIRROR_CANDIDATES + MIRROR_SEARCH_ROOTS)
        pytest.skip(f"no hashicorp/aws provider mirror found (hashicorp/aws {AWS_MAJOR}.x for "
                    f"{terraform_platform()}; looked in {where}; set PLACER_TF_MIRROR)")
    return mirror


def write_cli_config(directory: Path, mirror: Path | None) -> Path:
    """A CLI config that installs hashicorp/* only from the mirror and never from the network."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "terraform.tfrc"
    if mirror is None:
        text = 'provider_installation {\n  direct {\n    exclude = ["registry.terraform.io/*/*"]\n  }\n}\n'
    else:
        text = (
            "provider_installation {\n"
            "  filesystem_mirror {\n"
            f"    path    = {json.dumps(str(mirror))}\n"
            '    include = ["registry.terraform.io/hashicorp/*"]\n'
            "  }\n"
            "  direct {\n"
            '    exclude = ["registry.terraform.io/*/*"]\n'
            "  }\n"
            "}\n"
        )
    path.write_text(text)
    return path


@dataclass(frozen=True)
class Terraform:
    """terraform with an offline CLI config; every command runs in a given directory."""

    binary: str
    cli_config: Path
    mirror: Path | None

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("TF_", "AWS_", "GOOGLE_", "CLOUDSDK_")) and k != "CHECKPOINT_DISABLE"}
        env.update({
            "TF_CLI_CONFIG_FILE": str(self.cli_config),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
            "AWS_EC2_METADATA_DISABLED": "true",
        })
        env.update(extra or {})
        return env

    def run(self, cwd: Path, *args: str, timeout: float = 120, check: bool = True,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([self.binary, *args, "-no-color"] if _takes_no_color(args) else [self.binary, *args],
                              cwd=cwd, env=self.env(env), capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            pytest.fail(f"terraform {' '.join(args)} in {cwd} exited {proc.returncode}\n"
                        f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}")
        return proc

    def init(self, cwd: Path, timeout: float = 120) -> None:
        self.run(cwd, "init", "-input=false", "-backend=false", timeout=timeout)


def _takes_no_color(args: tuple[str, ...]) -> bool:
    return bool(args) and args[0] in {"init", "validate", "plan", "apply", "test", "destroy", "output", "show"}


def copy_terraform_tree(dest: Path) -> Path:
    """A copy of terraform/ without any .terraform directory or state, to run commands in."""
    target = dest / "terraform"
    shutil.copytree(TERRAFORM_DIR, target, ignore=shutil.ignore_patterns(
        ".terraform", ".terraform.lock.hcl", "*.tfstate", "*.tfstate.*", "*.tfplan"))
    return target


def offline_aws_provider(region: str, *more: str) -> str:
    """An ``aws`` provider block that plans without AWS: fake keys, and no credentials, account,
    metadata or region lookups; ``more``: lines of its own to add inside it (endpoints, retries)."""
    settings = [("region", f'"{region}"'), ("access_key", '"test"'), ("secret_key", '"test"'),
                ("skip_credentials_validation", "true"), ("skip_requesting_account_id", "true"),
                ("skip_metadata_api_check", "true"), ("skip_region_validation", "true")]
    body = [f"  {key:<27} = {value}" for key, value in settings] + [f"  {line}" for line in "\n".join(more).splitlines()]
    return 'provider "aws" {\n' + "\n".join(body) + "\n}\n"
