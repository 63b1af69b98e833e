"""The tfvars contract, checked without any provider: python-hcl2 reads the modules and
the sample placer.auto.tfvars.json; the modules must declare exactly its keys and read
only attributes it has. This is the only check the gcp module gets offline (no google
provider can be installed here), besides `terraform fmt -check`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.terraform.hclkit import (
    TfType,
    json_paths,
    load_module,
    parse_type,
    pool_attribute_paths,
    pool_locals,
    type_paths,
    variables,
)
from tests.terraform.tfkit import MODULES, SAMPLE_TFVARS

PROVIDER_MODULES = {"aws": MODULES / "aws-gpu-pools", "gcp": MODULES / "gcp-gpu-pools"}


@pytest.fixture(scope="module")
def sample() -> dict[str, Any]:
    return json.loads(SAMPLE_TFVARS.read_text())


def _pool_type(module_dir) -> TfType:
    declared = variables(load_module(module_dir))["placer_pools"]["type"]
    tf_type = parse_type(declared)
    assert tf_type.kind == "map" and tf_type.element is not None and tf_type.element.kind == "object", declared
    return tf_type.element


def test_sample_tfvars_has_the_documented_shape(sample: dict[str, Any]) -> None:
    assert set(sample) == {"placer_pools", "placer_plan"}
    assert set(sample["placer_plan"]) == {"fleet_digest", "serial"}
    assert {p["provider"] for p in sample["placer_pools"].values()} == {"aws", "gcp"}
    for name, pool in sample["placer_pools"].items():
        assert set(pool) == {"provider", "nodes", "min_nodes", "max_nodes", "gpu_type", "gpus_per_node",
                             "spot", "aws", "gcp"}, name
        assert pool["min_nodes"] <= pool["nodes"] <= pool["max_nodes"], name
        own, other = pool["provider"], {"aws": "gcp", "gcp": "aws"}[pool["provider"]]
        assert pool[own] is not None and pool[other] is None, name


@pytest.mark.parametrize("provider", sorted(PROVIDER_MODULES))
def test_placer_pools_type_declares_exactly_the_tfvars_keys(provider: str, sample: dict[str, Any]) -> None:
    pool_type = _pool_type(PROVIDER_MODULES[provider])
    sample_paths: set[str] = set()
    for pool in sample["placer_pools"].values():
        sample_paths |= json_paths(pool)
    assert type_paths(pool_type) == sample_paths
    # Keys placer always writes are required; only spot and the provider blocks may be left out.
    assert {k for k, t in pool_type.attributes.items() if t.optional} == {"spot", "aws", "gcp"}


def test_aws_module_placer_plan_type_matches_tfvars(sample: dict[str, Any]) -> None:
    declared = variables(load_module(PROVIDER_MODULES["aws"]))["placer_plan"]["type"]
    assert type_paths(parse_type(declared)) == json_paths(sample["placer_plan"])


@pytest.mark.parametrize("provider", sorted(PROVIDER_MODULES))
def test_module_reads_only_tfvars_attributes(provider: str, sample: dict[str, Any]) -> None:
    module = load_module(PROVIDER_MODULES[provider])
    assert pool_locals(module), "expected locals that filter var.placer_pools (the module's pools)"
    read = pool_attribute_paths(module)

    sample_paths: set[str] = set()
    for pool in sample["placer_pools"].values():
        sample_paths |= json_paths(pool)
    assert read <= sample_paths, f"reads attributes placer does not write: {sorted(read - sample_paths)}"

    # ... and reads every attribute of its own provider's pools (a key it ignored would be
    # a setting placer writes that silently does nothing).
    own_pool = next(p for p in sample["placer_pools"].values() if p["provider"] == provider)
    other = {"aws": "gcp", "gcp": "aws"}[provider]
    needed = {path for path in json_paths(own_pool) if not path.startswith(other)}
    assert needed <= read, f"never reads: {sorted(needed - read)}"


def test_gcp_module_resources_follow_the_pools() -> None:
    """Zonal and regional instance groups take target_size from nodes, templates carry the GPUs."""
    from tests.terraform.hclkit import resources

    module = load_module(PROVIDER_MODULES["gcp"])
    found = {(rtype, name): body for rtype, name, body in resources(module)}
    for rtype in ("google_compute_instance_group_manager", "google_compute_region_instance_group_manager"):
        body = found[(rtype, "pool")]
        assert body["target_size"] == "${each.value.nodes}"
        assert body["name"] == "${each.value.gcp.instance_group_manager}"
    assert found[("google_compute_instance_group_manager", "pool")]["zone"] == "${each.value.gcp.zone}"
    assert found[("google_compute_region_instance_group_manager", "pool")]["region"] == "${each.value.gcp.region}"
    template = found[("google_compute_instance_template", "pool")]
    accelerator = template["guest_accelerator"][0]
    assert accelerator["count"] == "${each.value.gpus_per_node}"
    scheduling = template["scheduling"][0]
    assert scheduling["on_host_maintenance"].strip('"') == "TERMINATE"
    assert "each.value.spot" in scheduling["provisioning_model"]


def test_aws_module_resources_follow_the_pools() -> None:
    from tests.terraform.hclkit import resources

    module = load_module(PROVIDER_MODULES["aws"])
    found = {(rtype, name): body for rtype, name, body in resources(module)}
    asg = found[("aws_autoscaling_group", "pool")]
    assert asg["desired_capacity"] == "${each.value.nodes}"
    assert asg["min_size"] == "${each.value.min_nodes}"
    assert asg["max_size"] == "${each.value.max_nodes}"
    scaling = found[("aws_eks_node_group", "pool")]["scaling_config"][0]
    assert scaling["desired_size"] == "${each.value.nodes}"
    # Nothing that placer sizes may be ignored by terraform.
    for body in found.values():
        for lifecycle in body.get("lifecycle", []):
            ignored = " ".join(str(x) for x in lifecycle.get("ignore_changes", []))
            for attribute in ("desired_capacity", "min_size", "max_size", "scaling_config", "target_size"):
                assert attribute not in ignored


def test_moved_blocks_name_the_resources_each_module_keys_by_pool(sample: dict[str, Any]) -> None:
    """placer_moved.tf moves a renamed pool's resources by type: each type it names for a pool (ASG and
    EKS aws pools, zonal and regional gcp ones) is a resource ``pool`` of that provider's module whose
    instances are keyed by pool name (for_each over its pools), so a moved block names a real address.
    This is all the gcp blocks get offline: no google provider can be installed here."""
    from placer.render.moved import resources

    aws, gcp = (sample["placer_pools"][name] for name in ("aws-eu-h100", "gcp-eu-a100"))
    eks = {**aws, "aws": {**aws["aws"], "auto_scaling_group_name": None, "eks_cluster": "ml", "eks_nodegroup": "a"}}
    regional = {**gcp, "gcp": {**gcp["gcp"], "zone": None, "region": "europe-west4"}}
    declared = {provider: {".".join(part.strip('"') for part in (kind, name)): body for block in load_module(path).get("resource", [])
                           for kind, named in block.items() for name, body in named.items()}
                for provider, path in PROVIDER_MODULES.items()}
    named = {"aws": [resources(aws), resources(eks)], "gcp": [resources(gcp), resources(regional)]}
    assert named == {"aws": [["aws_launch_template.pool", "aws_autoscaling_group.pool"], ["aws_eks_node_group.pool"]],
                     "gcp": [["google_compute_instance_template.pool", "google_compute_instance_group_manager.pool"],
                             ["google_compute_instance_template.pool",
                              "google_compute_region_instance_group_manager.pool"]]}
    for provider, lists in named.items():
        for address in (a for found in lists for a in found):
            assert address in declared[provider], (provider, address)
            assert str(declared[provider][address].get("for_each", "")).startswith("${local."), (provider, address)
