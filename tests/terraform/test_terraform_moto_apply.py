"""terraform apply of aws-gpu-pools against moto in server mode, fed placer's tfvars.

A root config points the aws provider at a local moto server, reads
placer.auto.tfvars.json (the sample contract plus a spot ASG pool and an EKS pool), and
applies the module; boto3 then checks that the groups exist at placer's sizes. A second
apply with new node counts checks that terraform converges the groups, changing only them.

Known moto gaps worked around here, none of them in the module:
- moto copies a launch template's own tags into its LaunchTemplateData.TagSpecifications
  (resource type "launch-template"), which makes terraform see drift; the fixture strips
  them (in-process patch of moto's backend).
- moto cannot tag EKS node groups nor report node group updates, so the resize keeps the
  EKS pool and placer_plan (which tags it) unchanged.
"""

from __future__ import annotations

import copy
import json
import textwrap
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import lifecycle_helpers as lh
from tests.terraform.tfkit import SAMPLE_TFVARS, Terraform, copy_terraform_tree, offline_aws_provider

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

REGION = "eu-west-1"
EXTRA_POOLS: dict[str, Any] = {
    "aws-eu-l4-spot": {
        "provider": "aws", "nodes": 3, "min_nodes": 1, "max_nodes": 6, "gpu_type": "L4-24GB",
        "gpus_per_node": 4, "spot": True,
        "aws": {"region": REGION, "auto_scaling_group_name": "placer-aws-eu-l4-spot",
                "eks_cluster": None, "eks_nodegroup": None},
        "gcp": None,
    },
    "aws-eu-eks-a10g": {
        "provider": "aws", "nodes": 2, "min_nodes": 0, "max_nodes": 4, "gpu_type": "A10G-24GB",
        "gpus_per_node": 1, "spot": False,
        "aws": {"region": REGION, "auto_scaling_group_name": None, "eks_cluster": "ml", "eks_nodegroup": "a10g"},
        "gcp": None,
    },
}


def _strip_launch_template_self_tags() -> Any:
    """Wrap moto's create_launch_template so a template's own tags stay off its launch data."""
    from moto.ec2.models.launch_templates import LaunchTemplateBackend

    original = LaunchTemplateBackend.create_launch_template

    def create_launch_template(self: Any, name: str, description: str, template_data: dict[str, Any],
                               tag_spec: dict[str, Any]) -> Any:
        specs = template_data.get("TagSpecifications")
        if specs:
            template_data = {**template_data, "TagSpecifications": [
                s for s in specs if s.get("ResourceType") != "launch-template"]}
        return original(self, name, description, template_data, tag_spec)

    return LaunchTemplateBackend, "create_launch_template", create_launch_template


@dataclass
class MotoRoot:
    terraform: Terraform
    root: Path
    endpoint: str
    tfvars: dict[str, Any]
    first_apply: str

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id="test", aws_secret_access_key="test")

    def write_tfvars(self, tfvars: dict[str, Any]) -> None:
        self.tfvars = tfvars
        (self.root / "placer.auto.tfvars.json").write_text(json.dumps(tfvars, indent=2))

    def apply(self) -> str:
        return self.terraform.run(self.root, "apply", "-auto-approve", "-input=false", timeout=300).stdout

    def groups(self) -> dict[str, dict[str, Any]]:
        found = self.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
        return {g["AutoScalingGroupName"]: g for g in found}


def _root_config(endpoint: str) -> str:
    endpoints = "\n".join(f'  {svc} = "{endpoint}"' for svc in ("ec2", "autoscaling", "sts", "eks", "iam"))
    return textwrap.dedent("""\
        # Root config written by the test: placer's tfvars -> aws-gpu-pools, against moto.
        variable "placer_pools" {
          type = any
        }

        variable "placer_plan" {
          type = any
        }

        variable "pool_settings" {
          type = any
        }

        %(provider)s
        module "aws_gpu_pools" {
          source        = "../terraform/modules/aws-gpu-pools"
          placer_pools  = var.placer_pools
          placer_plan   = var.placer_plan
          pool_settings = var.pool_settings
        }

        output "asg_desired_capacities" {
          value = module.aws_gpu_pools.asg_desired_capacities
        }

        output "pool_nodes" {
          value = module.aws_gpu_pools.pool_nodes
        }
        """) % {"provider": offline_aws_provider(REGION, "max_retries = 2", "endpoints {", endpoints, "}")}


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A moto server on 127.0.0.1 for this module's tests (its backends shared by them): its URL."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        try:
            port = server.get_host_and_port()[1]
        except AttributeError:  # older moto
            port = server._server.server_port
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(*_strip_launch_template_self_tags())
            yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def moto_root(terraform_aws: Terraform, tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str) -> MotoRoot:
    return _apply_first(terraform_aws, tmp_path_factory.mktemp("moto-apply"), moto_endpoint)


def _apply_first(terraform: Terraform, base: Path, endpoint: str) -> MotoRoot:
    copy_terraform_tree(base)
    root = base / "root"
    root.mkdir()
    session = dict(endpoint_url=endpoint, region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test")
    ec2 = boto3.client("ec2", **session)
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
    images = ec2.describe_images(Owners=["amazon"])["Images"]
    ami = images[0]["ImageId"] if images else ec2.register_image(Name="placer-gpu", RootDeviceName="/dev/xvda")["ImageId"]
    iam = boto3.client("iam", **session)
    assume = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "eks.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
    cluster_role = iam.create_role(RoleName="eks-cluster", AssumeRolePolicyDocument=assume)["Role"]["Arn"]
    node_role = iam.create_role(RoleName="eks-nodes", AssumeRolePolicyDocument=assume)["Role"]["Arn"]
    boto3.client("eks", **session).create_cluster(name="ml", roleArn=cluster_role,
                                                  resourcesVpcConfig={"subnetIds": subnets})

    tfvars = json.loads(SAMPLE_TFVARS.read_text())
    tfvars["placer_pools"].update(copy.deepcopy(EXTRA_POOLS))
    settings = {
        "aws-eu-h100": {"instance_type": "p5.48xlarge", "ami_id": ami, "subnet_ids": subnets,
                        "tags": {"team": "ml-platform"}},
        "aws-eu-l4-spot": {"instance_type": "g6.12xlarge", "extra_instance_types": ["g6.24xlarge"],
                           "ami_id": ami, "subnet_ids": subnets},
        "aws-eu-eks-a10g": {"instance_type": "g5.xlarge", "subnet_ids": subnets, "node_role_arn": node_role},
    }
    (root / "main.tf").write_text(_root_config(endpoint))
    (root / "settings.auto.tfvars.json").write_text(json.dumps({"pool_settings": settings}, indent=2))
    scenario = MotoRoot(terraform, root, endpoint, tfvars, first_apply="")
    scenario.write_tfvars(tfvars)
    terraform.run(root, "init", "-input=false", timeout=120)
    scenario.first_apply = scenario.apply()
    return scenario


def test_apply_creates_groups_at_placer_sizes(moto_root: MotoRoot) -> None:
    assert "Apply complete! Resources: 5 added, 0 changed, 0 destroyed." in moto_root.first_apply
    pools = moto_root.tfvars["placer_pools"]
    groups = moto_root.groups()

    asg_pools = {name: p for name, p in pools.items()
                 if p["provider"] == "aws" and p["aws"]["auto_scaling_group_name"]}
    assert set(asg_pools) == {"aws-eu-h100", "aws-eu-l4-spot"}
    # moto's backends are process-wide: other tests in this worker may have left groups of their own
    mine = {p["aws"]["auto_scaling_group_name"] for p in asg_pools.values()}
    assert mine <= set(groups)
    assert {g for g in groups if g.startswith("placer-")} == mine
    for name, pool in asg_pools.items():
        group = groups[pool["aws"]["auto_scaling_group_name"]]
        assert group["DesiredCapacity"] == pool["nodes"], name
        assert (group["MinSize"], group["MaxSize"]) == (pool["min_nodes"], pool["max_nodes"]), name
        tags = {t["Key"]: t["Value"] for t in group["Tags"]}
        assert tags["placer:pool"] == name and tags["placer:gpu-type"] == pool["gpu_type"]
        assert tags["placer:plan-serial"] == str(moto_root.tfvars["placer_plan"]["serial"])

    on_demand = groups["placer-aws-eu-h100"]
    assert "MixedInstancesPolicy" not in on_demand
    template = moto_root.client("ec2").describe_launch_template_versions(
        LaunchTemplateId=on_demand["LaunchTemplate"]["LaunchTemplateId"])["LaunchTemplateVersions"][0]
    assert template["LaunchTemplateData"]["InstanceType"] == "p5.48xlarge"

    spot = groups["placer-aws-eu-l4-spot"]["MixedInstancesPolicy"]
    distribution = spot["InstancesDistribution"]
    assert distribution["OnDemandPercentageAboveBaseCapacity"] == 0
    assert distribution["SpotAllocationStrategy"] == "price-capacity-optimized"
    assert [o["InstanceType"] for o in spot["LaunchTemplate"]["Overrides"]] == ["g6.12xlarge", "g6.24xlarge"]

    nodegroup = moto_root.client("eks").describe_nodegroup(clusterName="ml", nodegroupName="a10g")["nodegroup"]
    eks_pool = pools["aws-eu-eks-a10g"]
    assert nodegroup["scalingConfig"] == {"desiredSize": eks_pool["nodes"], "minSize": eks_pool["min_nodes"],
                                          "maxSize": eks_pool["max_nodes"]}
    assert nodegroup["capacityType"] == "ON_DEMAND"
    assert nodegroup["amiType"] == "AL2023_x86_64_NVIDIA"
    assert nodegroup["instanceTypes"] == ["g5.xlarge"]
    assert nodegroup["labels"]["placer.dev/pool"] == "aws-eu-eks-a10g"

    outputs = json.loads(moto_root.terraform.run(moto_root.root, "output", "-json").stdout)
    assert outputs["pool_nodes"]["value"] == {name: p["nodes"] for name, p in pools.items() if p["provider"] == "aws"}


def test_reapply_with_new_nodes_resizes_only_the_groups(moto_root: MotoRoot) -> None:
    """placer writes new node counts; terraform apply updates the two ASGs in place and nothing else."""
    tfvars = copy.deepcopy(moto_root.tfvars)
    tfvars["placer_pools"]["aws-eu-h100"]["nodes"] = 5
    tfvars["placer_pools"]["aws-eu-l4-spot"]["nodes"] = 1
    moto_root.write_tfvars(tfvars)

    out = moto_root.apply()
    assert "Apply complete! Resources: 0 added, 2 changed, 0 destroyed." in out, out[-3000:]
    groups = moto_root.groups()
    assert groups["placer-aws-eu-h100"]["DesiredCapacity"] == 5
    assert groups["placer-aws-eu-l4-spot"]["DesiredCapacity"] == 1
    assert groups["placer-aws-eu-l4-spot"]["MinSize"] == 1


def _placer(*args: str) -> None:
    from placer import cli as placer_cli

    assert placer_cli.main(list(args)) == 0, args


def _placer_files(deploy: Path) -> dict[str, str]:
    """What placer writes in a deploy tree whose terraform/ is a Terraform root: path -> text."""
    return {str(p.relative_to(deploy)): p.read_text() for p in sorted(
        [*deploy.glob("clusters/*/*"), *deploy.glob("terraform/*.tf"), *deploy.glob("terraform/*.json")])}


def _terraform_plan(terraform: Terraform, root: Path) -> dict[str, Any]:
    """``terraform plan`` of ``root`` as JSON (``terraform show -json`` of the saved plan)."""
    terraform.run(root, "plan", "-input=false", "-out=rename.tfplan", timeout=300)
    return json.loads(terraform.run(root, "show", "-json", "rename.tfplan").stdout)


def _moves(plan: dict[str, Any]) -> tuple[list[tuple[str, str]], Counter[str]]:
    """The plan's moves (from, to) and its resource counts (add, change, destroy) as terraform counts them."""
    moves, counts = [], Counter[str]()
    for change in plan.get("resource_changes", []):
        if change.get("previous_address"):
            moves.append((change["previous_address"], change["address"]))
        actions = change["change"]["actions"]
        counts["add"] += "create" in actions
        counts["change"] += actions == ["update"]
        counts["destroy"] += "delete" in actions
    return sorted(moves), counts


@pytest.mark.timeout(900)
def test_a_renamed_pool_moves_its_group_in_the_terraform_state(
        terraform_aws: Terraform, moto_endpoint: str, tmp_path: Path) -> None:
    """aws-h100 renamed gpu-h100 in the fleet, its Auto Scaling group h100 kept: the gitops apply writes
    terraform/placer_moved.tf beside the root that calls aws-gpu-pools, and terraform moves the group in
    its state, with its launch template (both updated in place: the pool's tags, a new template version)
    where it destroyed the group with its nodes and made it anew. The template keeps its id and name:
    named after the pool, it was made anew at each rename (a new id under the group; AWS cannot rename
    a template). Renamed again (a chain: Terraform refuses two
    moves to one address) and back to the first name (no cycle, nor a move from a resource in the
    config), terraform takes the blocks and moves the group each time. placer render of each plan
    writes the tree the apply left."""
    fleet, deploy, state = tmp_path / "fleet", tmp_path / "deploy", tmp_path / "state.json"
    lh.write_fleet(fleet, {"path": str(state)}, deploy)
    root = copy_terraform_tree(deploy)  # the deploy tree's terraform/ holds the root and a copy of the modules
    (root / "main.tf").write_text(_root_config(moto_endpoint))
    _placer("plan", str(fleet), "--now", lh.NOW, "-o", str(tmp_path / "first.json"))
    _placer("apply", str(tmp_path / "first.json"))
    ec2 = boto3.client("ec2", endpoint_url=moto_endpoint, region_name=REGION, aws_access_key_id="test",
                       aws_secret_access_key="test")
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:1]
    ami = ec2.register_image(Name="placer-rename", RootDeviceName="/dev/xvda")["ImageId"]
    settings = {"instance_type": "p5.48xlarge", "ami_id": ami, "subnet_ids": subnets}
    (root / "settings.auto.tfvars.json").write_text(json.dumps(
        {"pool_settings": {"aws-h100": settings, "gpu-h100": settings, "h100-pool": settings}}))
    terraform_aws.run(root, "init", "-input=false", timeout=120)
    terraform_aws.run(root, "apply", "-auto-approve", "-input=false", timeout=300)
    asg = boto3.client("autoscaling", endpoint_url=moto_endpoint, region_name=REGION, aws_access_key_id="test",
                       aws_secret_access_key="test")
    (made,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["h100"])["AutoScalingGroups"]
    template = made["LaunchTemplate"]
    assert template["LaunchTemplateName"].startswith("placer-aws-h100-"), template
    assert not (root / "placer_moved.tf").exists()

    for step, (old, new) in enumerate((("aws-h100", "gpu-h100"), ("gpu-h100", "h100-pool"), ("h100-pool", "aws-h100"))):
        lh.write_fleet(fleet, {"path": str(state)}, deploy, aws_name=new)
        plan = tmp_path / f"rename-{step}.json"
        _placer("plan", str(fleet), "--now", lh.NOW, "-o", str(plan))
        _placer("apply", str(plan))
        if step == 0:
            assert "The configuration is valid" in terraform_aws.run(root, "validate").stdout
        moves, counts = _moves(_terraform_plan(terraform_aws, root))
        assert moves == [(f'module.aws_gpu_pools.{kind}.pool["{old}"]', f'module.aws_gpu_pools.{kind}.pool["{new}"]')
                         for kind in ("aws_autoscaling_group", "aws_launch_template")], moves
        # the group and its launch template are updated in place (the pool's tags, a new template version)
        assert counts == Counter(change=2), counts
        moved = (root / "placer_moved.tf").read_text()
        terraform_aws.run(root, "apply", "-input=false", "rename.tfplan", timeout=300)
        (kept,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["h100"])["AutoScalingGroups"]
        assert kept["AutoScalingGroupARN"] == made["AutoScalingGroupARN"] and kept["CreatedTime"] == made["CreatedTime"]
        assert {t["Key"]: t["Value"] for t in kept["Tags"]}["placer:pool"] == new
        now = kept["LaunchTemplate"]
        assert (now["LaunchTemplateId"], now["LaunchTemplateName"]) == (template["LaunchTemplateId"],
                                                                       template["LaunchTemplateName"]), now
        (version,) = ec2.describe_launch_template_versions(
            LaunchTemplateId=now["LaunchTemplateId"], Versions=[now["Version"]])["LaunchTemplateVersions"]
        tagged = version["LaunchTemplateData"]["TagSpecifications"][0]["Tags"]
        assert {t["Key"]: t["Value"] for t in tagged}["placer:pool"] == new, tagged
        before = _placer_files(deploy)
        _placer("render", str(plan), "--out", str(deploy))
        assert _placer_files(deploy) == before and (root / "placer_moved.tf").read_text() == moved
    assert _moves(_terraform_plan(terraform_aws, root)) == ([], Counter())


def test_an_eks_pool_placer_replaces_gets_its_new_node_group_before_the_old_one_goes(moto_root: MotoRoot) -> None:
    """A spot toggle changes the node group's capacity type, which EKS cannot update in place: placer
    writes the replacement under the alternate name (a10g-alt), and terraform makes it before it deletes
    a10g. The module replaced node groups destroy-first: a10g and its GPU nodes went before a10g-alt
    existed, and the replicas on them had nowhere to run until it did."""
    eks = moto_root.client("eks")
    tfvars = copy.deepcopy(moto_root.tfvars)
    pool = tfvars["placer_pools"]["aws-eu-eks-a10g"]
    pool["spot"] = True
    pool["aws"]["eks_nodegroup"] = "a10g-alt"
    moto_root.write_tfvars(tfvars)

    out = moto_root.apply()
    address = 'aws_eks_node_group.pool["aws-eu-eks-a10g"]'
    lines = [line for line in out.splitlines() if address in line]
    made = next(i for i, line in enumerate(lines) if "Creation complete" in line)
    gone = next(i for i, line in enumerate(lines) if "Destroying..." in line)
    assert made < gone, "\n".join(lines)
    assert "Resources: 1 added," in out and " 1 destroyed." in out, out[-3000:]
    assert eks.list_nodegroups(clusterName="ml")["nodegroups"] == ["a10g-alt"]
    assert eks.describe_nodegroup(clusterName="ml", nodegroupName="a10g-alt")["nodegroup"]["capacityType"] == "SPOT"


def test_an_eks_replacement_that_keeps_its_name_fails_before_the_node_group_is_deleted(moto_root: MotoRoot) -> None:
    """A replacement pool_settings force (another instance type) keeps the node group's name, which
    EKS refuses twice: made first, it fails, and the running group is left as it was. Before, it was
    deleted first."""
    eks = moto_root.client("eks")
    before = eks.list_nodegroups(clusterName="ml")["nodegroups"]
    settings_file = moto_root.root / "settings.auto.tfvars.json"
    kept = settings_file.read_text()
    settings = json.loads(kept)
    settings["pool_settings"]["aws-eu-eks-a10g"]["instance_type"] = "g5.2xlarge"
    settings_file.write_text(json.dumps(settings, indent=2))
    try:
        proc = moto_root.terraform.run(moto_root.root, "apply", "-auto-approve", "-input=false", timeout=300,
                                       check=False)
    finally:
        settings_file.write_text(kept)
    assert proc.returncode != 0 and "Destroying..." not in proc.stdout, proc.stdout[-3000:]
    assert "already exists" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
    assert eks.list_nodegroups(clusterName="ml")["nodegroups"] == before
    assert eks.describe_nodegroup(clusterName="ml", nodegroupName=before[0])["nodegroup"]["instanceTypes"] == ["g5.xlarge"]
