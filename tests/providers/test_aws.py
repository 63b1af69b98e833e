"""AwsProvider against moto in server mode (a real HTTP endpoint on 127.0.0.1), plus fault servers
for throttling, server errors, refusals and timeouts."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest

from placer.catalog import BUILTIN_GPU_TYPES
from placer.planfile import Change
from placer.spec.kinds import API_VERSION, DNS1123_LABEL, SPEC_TYPES
from providers.aws import AwsProvider
from providers.base import Provider, ProviderError
from tests.servers.moto_server import (
    Fault,
    FaultProxy,
    SilentServer,
    free_port,
    instances_pending,
    json_error,
    moto_server,
    query_error,
    scaling_activity,
)

EU = "eu-west-1"
# Discovery sees whole regions: those tests get regions of their own. Everything else shares EU with
# names made unique per test, because resetting moto makes it rebuild every backend (seconds each time).
DISCOVERY_EU, DISCOVERY_US, DISCOVERY_EMPTY = "eu-central-1", "us-west-2", "ca-central-1"
AMI = "ami-12c6146b"  # one of moto's built-in images
ROLE = "arn:aws:iam::123456789012:role/eks"

Clients = Callable[[str, str], Any]


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def session() -> boto3.Session:
    """One session for the module: it parses each service's API model once (seconds for EC2's)."""
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                         aws_session_token="testing", region_name=EU)


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials; nothing from the developer's own AWS configuration; no metadata service."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EKS",
                 "AWS_ENDPOINT_URL_AUTO_SCALING", "AWS_ENDPOINT_URL_EC2", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", EU)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def endpoint(moto_endpoint: str) -> str:
    return moto_endpoint


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def aws(endpoint: str, session: boto3.Session) -> Clients:
    """boto3 clients on moto, to set up and inspect the world independently of the provider."""
    cache: dict[tuple[str, str], Any] = {}

    def client(service: str, region: str = EU) -> Any:
        if (service, region) not in cache:
            cache[(service, region)] = session.client(service, region_name=region, endpoint_url=endpoint)
        return cache[(service, region)]

    return client


@pytest.fixture
def provider(endpoint: str, session: boto3.Session) -> AwsProvider:
    return AwsProvider(region_names=[EU], endpoint_url=endpoint, session=session, poll_interval_s=0.05)


# ---------------------------------------------------------------- world builders


def launch_template(aws: Clients, name: str, instance_type: str, region: str = EU, spot: bool = False) -> None:
    data: dict[str, Any] = {"ImageId": AMI, "InstanceType": instance_type}
    if spot:
        data["InstanceMarketOptions"] = {"MarketType": "spot"}
    aws("ec2", region).create_launch_template(LaunchTemplateName=name, LaunchTemplateData=data)


def asg(aws: Clients, name: str, *, template: str | None = None, region: str = EU, low: int = 0, high: int = 4,
        desired: int = 1, **extra: Any) -> None:
    if template:
        extra["LaunchTemplate"] = {"LaunchTemplateName": template}
    aws("autoscaling", region).create_auto_scaling_group(
        AutoScalingGroupName=name, MinSize=low, MaxSize=high, DesiredCapacity=desired,
        AvailabilityZones=[f"{region}a"], **extra)


def nodegroup(aws: Clients, cluster: str, name: str, *, region: str = EU, low: int = 0, high: int = 3,
              desired: int = 1, **extra: Any) -> None:
    client = aws("eks", region)
    if cluster not in client.list_clusters()["clusters"]:
        client.create_cluster(name=cluster, roleArn=ROLE, resourcesVpcConfig={"subnetIds": ["subnet-1"]})
    client.create_nodegroup(clusterName=cluster, nodegroupName=name, nodeRole=ROLE, subnets=["subnet-1"],
                            scalingConfig={"minSize": low, "maxSize": high, "desiredSize": desired}, **extra)


def desired_of(aws: Clients, name: str, region: str = EU) -> int:
    return int(aws("autoscaling", region).describe_auto_scaling_groups(
        AutoScalingGroupNames=[name])["AutoScalingGroups"][0]["DesiredCapacity"])


def pool_change(nodes: int | None, *, asg_name: str | None = None, eks: tuple[str, str] | None = None,
                region: str = EU, min_nodes: int = 0, max_nodes: int = 10, action: str = "update") -> Change:
    target_aws: dict[str, Any] = {"region": region}
    if asg_name:
        target_aws["autoScalingGroupName"] = asg_name
    if eks:
        target_aws["eks"] = {"cluster": eks[0], "nodegroup": eks[1]}
    return Change(address="pool/gpu", action=action, phase=1, before=None,  # type: ignore[arg-type]
                  after=None if nodes is None else {"nodes": nodes},
                  target={"provider": "aws", "pool": "gpu", "minNodes": min_nodes, "maxNodes": max_nodes,
                          "gpuType": "A10G-24GB", "gpusPerNode": 1, "spot": False, "aws": target_aws})


# ---------------------------------------------------------------- protocol


def test_is_a_provider_and_handles_only_aws_pool_changes() -> None:
    provider = AwsProvider(region_names=[EU], endpoint_url="http://127.0.0.1:9")
    assert isinstance(provider, Provider)
    assert provider.handles(pool_change(1, asg_name="a"))
    gcp = Change("pool/gpu", "update", 1, None, {"nodes": 1}, target={"provider": "gcp"})
    deployment = Change("deployment/llm@gpu", "create", 2, None, {"replicas": 1}, target={"provider": "aws"})
    assert not provider.handles(gcp)
    assert not provider.handles(deployment)


# ---------------------------------------------------------------- discovery


def test_discover_finds_gpu_groups_and_ignores_the_rest(aws: Clients, endpoint: str, session: boto3.Session) -> None:
    eu, us = DISCOVERY_EU, DISCOVERY_US
    # Auto Scaling groups: launch template, launch configuration (spot price), mixed instances (all spot)
    launch_template(aws, "lt-p4d", "p4d.24xlarge", region=eu)
    asg(aws, "Train_P4d.Fleet", template="lt-p4d", region=eu, low=0, high=4)
    aws("autoscaling", eu).create_launch_configuration(LaunchConfigurationName="g5-spot", ImageId=AMI,
                                                       InstanceType="g5.xlarge", SpotPrice="0.50")
    asg(aws, "inference-g5", LaunchConfigurationName="g5-spot", region=eu, low=1, high=8)
    launch_template(aws, "lt-base", "m5.large", region=eu)
    asg(aws, "l4-mixed", region=eu, low=0, high=6, desired=0, MixedInstancesPolicy={
        "LaunchTemplate": {"LaunchTemplateSpecification": {"LaunchTemplateName": "lt-base", "Version": "$Latest"},
                           "Overrides": [{"InstanceType": "g6.xlarge"}, {"InstanceType": "g6.2xlarge"}]},
        "InstancesDistribution": {"OnDemandPercentageAboveBaseCapacity": 0}})
    launch_template(aws, "lt-b200", "p6-b200.48xlarge", region=eu)
    asg(aws, "b200", template="lt-b200", region=eu, low=0, high=2, desired=0)
    # ignored: CPU only; GPUs that differ between instance types; the ASG behind an EKS node group
    asg(aws, "web", template="lt-base", region=eu)
    asg(aws, "uneven", region=eu, low=0, high=2, desired=0, MixedInstancesPolicy={
        "LaunchTemplate": {"LaunchTemplateSpecification": {"LaunchTemplateName": "lt-base"},
                           "Overrides": [{"InstanceType": "g5.xlarge"}, {"InstanceType": "g5.12xlarge"}]}})
    launch_template(aws, "lt-g5", "g5.xlarge", region=eu)
    asg(aws, "eks-ml-gpu-spot-1234", template="lt-g5", region=eu,
        Tags=[{"Key": "eks:nodegroup-name", "Value": "gpu-spot", "PropagateAtLaunch": True}])
    # EKS: a spot GPU node group, a CPU one, and one whose instance type comes from its launch template
    nodegroup(aws, "ml", "gpu-spot", region=eu, instanceTypes=["g6e.xlarge"], capacityType="SPOT", high=5)
    nodegroup(aws, "ml", "cpu", region=eu, instanceTypes=["t3.medium"])
    launch_template(aws, "lt-p5", "p5.48xlarge", region=eu)
    nodegroup(aws, "ml", "h100", region=eu, launchTemplate={"name": "lt-p5"}, high=2)
    # the second region: a T4 group, and a group name that collides with the first region's
    launch_template(aws, "lt-g4dn", "g4dn.xlarge", region=us)
    asg(aws, "us-inference", template="lt-g4dn", region=us, low=0, high=3, desired=0)
    launch_template(aws, "lt-p4d", "p4d.24xlarge", region=us)
    asg(aws, "train-p4d-fleet", template="lt-p4d", region=us, desired=0)

    started = time.monotonic()
    found = AwsProvider(region_names=[eu, us], endpoint_url=endpoint, session=session).discover()
    assert time.monotonic() - started < 20

    pools = {d["metadata"]["name"]: d for d in found.documents if d["kind"] == "Pool"}
    assert set(pools) == {"train-p4d-fleet", "inference-g5", "l4-mixed", "b200", "ml-gpu-spot", "ml-h100",
                          "us-inference", f"train-p4d-fleet-{us}"}

    def summary(name: str) -> tuple[Any, ...]:
        s = pools[name]["spec"]
        return (s["location"], s["gpu"]["type"], s["gpu"]["perNode"], s["nodes"]["min"], s["nodes"]["max"],
                s["spot"], s["target"]["aws"])

    loc_eu, loc_us = f"aws-{eu}", f"aws-{us}"
    assert summary("train-p4d-fleet") == (loc_eu, "A100-40GB", 8, 0, 4, False,
                                          {"region": eu, "autoScalingGroupName": "Train_P4d.Fleet"})
    assert summary("inference-g5") == (loc_eu, "A10G-24GB", 1, 1, 8, True,
                                       {"region": eu, "autoScalingGroupName": "inference-g5"})
    assert summary("l4-mixed") == (loc_eu, "L4-24GB", 1, 0, 6, True,
                                   {"region": eu, "autoScalingGroupName": "l4-mixed"})
    assert summary("ml-gpu-spot") == (loc_eu, "L40S-48GB", 1, 0, 5, True,
                                      {"region": eu, "eks": {"cluster": "ml", "nodegroup": "gpu-spot"}})
    assert summary("ml-h100") == (loc_eu, "H100-80GB", 8, 0, 2, False,
                                  {"region": eu, "eks": {"cluster": "ml", "nodegroup": "h100"}})
    assert summary("us-inference") == (loc_us, "T4-16GB", 1, 0, 3, False,
                                       {"region": us, "autoScalingGroupName": "us-inference"})
    assert summary(f"train-p4d-fleet-{us}")[-1] == {"region": us, "autoScalingGroupName": "train-p4d-fleet"}

    # prices: the built-in table, per GPU; an instance type it lacks gets 0 and a note
    assert pools["train-p4d-fleet"]["spec"]["usdPerGpuHour"] == pytest.approx(21.96 / 8, rel=1e-3)
    assert pools["inference-g5"]["spec"]["usdPerGpuHour"] == pytest.approx(1.006, rel=1e-3)
    assert pools["b200"]["spec"]["usdPerGpuHour"] == 0
    assert any("Pool b200" in n and "fill it in" in n for n in found.notes)
    assert any("approximate" in n for n in found.notes)

    # a GPU the catalog lacks becomes a GPUType document the pool refers to
    gpu_types = {d["metadata"]["name"]: d for d in found.documents if d["kind"] == "GPUType"}
    assert set(gpu_types) == {"B200-179GB"}
    assert pools["b200"]["spec"]["gpu"] == {"type": "B200-179GB", "perNode": 8}
    assert gpu_types["B200-179GB"]["spec"]["memoryGiB"] == pytest.approx(179.1, abs=0.1)

    locations = {d["metadata"]["name"]: d["spec"] for d in found.documents if d["kind"] == "Location"}
    assert locations == {loc_eu: {"environment": "cloud", "jurisdiction": "EU"},
                         loc_us: {"environment": "cloud", "jurisdiction": "US"}}
    assert any("'uneven'" in n and "differ" in n for n in found.notes)

    # every document is one the fleet's typed models accept, and every reference resolves
    for doc in found.documents:
        assert doc["apiVersion"] == API_VERSION
        SPEC_TYPES[doc["kind"]].model_validate(doc["spec"])
        if doc["kind"] != "GPUType":
            assert DNS1123_LABEL.match(doc["metadata"]["name"]), doc["metadata"]["name"]
    for pool in pools.values():
        assert pool["spec"]["gpu"]["type"] in BUILTIN_GPU_TYPES or pool["spec"]["gpu"]["type"] in gpu_types
        assert pool["spec"]["location"] in locations


def test_discover_in_a_region_without_gpu_groups_returns_only_a_note(
        aws: Clients, endpoint: str, session: boto3.Session) -> None:
    aws("autoscaling", DISCOVERY_EMPTY).create_launch_configuration(
        LaunchConfigurationName="cpu", ImageId=AMI, InstanceType="m5.large")
    asg(aws, "web", LaunchConfigurationName="cpu", region=DISCOVERY_EMPTY, desired=0)
    found = AwsProvider(endpoint_url=endpoint, session=session).discover([DISCOVERY_EMPTY])
    assert found.documents == []
    assert found.notes == [f"aws {DISCOVERY_EMPTY}: no GPU Auto Scaling groups or EKS node groups found"]


# ---------------------------------------------------------------- apply, observe, wait


@pytest.fixture
def gpu_asg(aws: Clients, uid: str) -> str:
    """A g5.xlarge Auto Scaling group in EU: MinSize 0, MaxSize 4, desired 1."""
    launch_template(aws, f"lt-{uid}", "g5.xlarge")
    asg(aws, f"gpu-{uid}", template=f"lt-{uid}", high=4, desired=1)
    return f"gpu-{uid}"


@pytest.fixture
def gpu_nodegroup(aws: Clients, uid: str) -> tuple[str, str]:
    """A g5.xlarge EKS node group in EU: minSize 0, maxSize 3, desired 1."""
    nodegroup(aws, f"ml-{uid}", "gpu", instanceTypes=["g5.xlarge"], high=3, desired=1)
    return f"ml-{uid}", "gpu"


def test_apply_sets_asg_desired_capacity_and_observe_reads_it_back(
        aws: Clients, provider: AwsProvider, gpu_asg: str) -> None:
    change = pool_change(3, asg_name=gpu_asg)
    assert provider.observe(change) == {"nodes": 1}
    provider.apply(change)
    assert desired_of(aws, gpu_asg) == 3
    assert provider.observe(change) == {"nodes": 3}
    provider.wait_healthy(change, timeout_s=10)
    group = aws("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[gpu_asg])["AutoScalingGroups"][0]
    assert [i["LifecycleState"] for i in group["Instances"]] == ["InService"] * 3

    provider.apply(change)  # idempotent
    assert desired_of(aws, gpu_asg) == 3

    down = pool_change(0, asg_name=gpu_asg)
    provider.apply(down)
    provider.wait_healthy(down, timeout_s=10)
    assert provider.observe(down) == {"nodes": 0}


def test_apply_sets_eks_nodegroup_desired_size(
        aws: Clients, provider: AwsProvider, gpu_nodegroup: tuple[str, str]) -> None:
    change = pool_change(2, eks=gpu_nodegroup)
    assert provider.observe(change) == {"nodes": 1}
    provider.apply(change)
    cluster, name = gpu_nodegroup
    scaling = aws("eks").describe_nodegroup(clusterName=cluster, nodegroupName=name)["nodegroup"]["scalingConfig"]
    assert scaling["desiredSize"] == 2
    assert provider.observe(change) == {"nodes": 2}
    provider.wait_healthy(change, timeout_s=5)  # ACTIVE; moto creates no Auto Scaling group behind it


def test_eks_wait_healthy_counts_the_instances_behind_the_node_group(
        aws: Clients, provider: AwsProvider, gpu_nodegroup: tuple[str, str], uid: str) -> None:
    cluster, name = gpu_nodegroup
    ng = aws("eks").describe_nodegroup(clusterName=cluster, nodegroupName=name)["nodegroup"]
    backing = ng["resources"]["autoScalingGroups"][0]["name"]
    launch_template(aws, f"lt-ng-{uid}", "g5.xlarge")
    asg(aws, backing, template=f"lt-ng-{uid}", high=3, desired=1)  # what EKS keeps behind a node group

    change = pool_change(2, eks=gpu_nodegroup)
    provider.apply(change)
    with pytest.raises(ProviderError) as err:
        provider.wait_healthy(change, timeout_s=0.3)
    assert err.value.retryable and "1 of 2 instances InService" in str(err.value)

    aws("autoscaling").set_desired_capacity(AutoScalingGroupName=backing, DesiredCapacity=2)  # EKS scales it
    provider.wait_healthy(change, timeout_s=5)


def test_desired_above_the_groups_max_is_refused_and_nothing_changes(
        aws: Clients, provider: AwsProvider, gpu_asg: str, gpu_nodegroup: tuple[str, str]) -> None:
    with pytest.raises(ProviderError) as err:
        provider.apply(pool_change(5, asg_name=gpu_asg, max_nodes=10))
    assert not err.value.retryable
    message = str(err.value)
    assert f"'{gpu_asg}'" in message and EU in message and "0..4" in message and "MaxSize" in message
    assert desired_of(aws, gpu_asg) == 1

    with pytest.raises(ProviderError) as err:
        provider.apply(pool_change(4, eks=gpu_nodegroup))
    cluster, name = gpu_nodegroup
    assert not err.value.retryable
    assert f"'{name}' of cluster '{cluster}'" in str(err.value) and "0..3" in str(err.value)
    scaling = aws("eks").describe_nodegroup(clusterName=cluster, nodegroupName=name)["nodegroup"]["scalingConfig"]
    assert scaling["desiredSize"] == 1


def test_desired_outside_the_pools_own_bounds_is_refused(
        aws: Clients, provider: AwsProvider, gpu_asg: str) -> None:
    with pytest.raises(ProviderError) as err:
        provider.apply(pool_change(3, asg_name=gpu_asg, min_nodes=0, max_nodes=2))
    assert not err.value.retryable and "0..2" in str(err.value) and "re-plan" in str(err.value)
    assert desired_of(aws, gpu_asg) == 1


def test_unknown_groups_are_not_found_errors_that_a_retry_will_not_fix(provider: AwsProvider, uid: str) -> None:
    missing = pool_change(2, asg_name=f"nope-{uid}")
    assert provider.observe(missing) is None
    for call in (lambda: provider.apply(missing), lambda: provider.wait_healthy(missing, 1)):
        with pytest.raises(ProviderError) as err:
            call()
        assert not err.value.retryable
        assert f"'nope-{uid}'" in str(err.value) and "not found" in str(err.value) and EU in str(err.value)
        assert err.value.address == "pool/gpu"

    missing_ng = pool_change(2, eks=(f"no-cluster-{uid}", "no-group"))
    assert provider.observe(missing_ng) is None
    with pytest.raises(ProviderError) as err:
        provider.apply(missing_ng)
    assert not err.value.retryable and "not found" in str(err.value) and "'no-group'" in str(err.value)


def test_wait_healthy_times_out_retryably_with_what_it_saw(provider: AwsProvider, gpu_asg: str) -> None:
    started = time.monotonic()
    with pytest.raises(ProviderError) as err:
        provider.wait_healthy(pool_change(3, asg_name=gpu_asg), timeout_s=0.3)
    assert time.monotonic() - started < 5
    assert err.value.retryable
    assert "1 of 3 instances InService" in str(err.value) and f"'{gpu_asg}'" in str(err.value)
    # the state records the size as not come up yet, and the next plan waits for it again (``Applier._grows``)
    assert str(err.value).endswith("The group keeps its desired size 1, which the state records as not come up yet: "
                                   "run `placer plan` and apply the new plan, which waits for its instances again"), \
        str(err.value)


def test_a_wait_goes_on_past_throttled_reads_and_says_the_last_at_its_timeout(endpoint: str, session: boto3.Session,
                                                                              gpu_asg: str) -> None:
    """A throttled read (429) of the group ended the wait, which the apply tried again at most 6 times
    over the whole wait: six throttles among minutes of good reads failed the apply. The wait goes on
    past them, as a rollout's does, and its timeout says the last read where it failed."""
    with FaultProxy(endpoint) as proxy:
        provider = AwsProvider(endpoint_url=proxy.endpoint, session=session, poll_interval_s=0.05, max_attempts=1)
        change = replace(pool_change(3, asg_name=gpu_asg), before={"nodes": 1})
        provider.apply(change)
        throttled = query_error("Throttling", "Rate exceeded", 400)
        proxy.fail_next(8, throttled)  # the group's and its activities' reads, polls on end
        provider.wait_healthy(change, timeout_s=30)  # moto's instances are InService once read
        assert proxy.requests > 8
        proxy.rewrite("DescribeAutoScalingGroups", instances_pending)
        proxy.answer("DescribeAutoScalingGroups", throttled)
        with pytest.raises(ProviderError) as err:
            provider.wait_healthy(change, timeout_s=0.5)
    message = str(err.value)
    assert message.startswith(f"pool/gpu: timed out after 0.5s waiting for Auto Scaling group '{gpu_asg}'"), message
    assert "every read of it failed; its last read failed: " in message and "Rate exceeded" in message, message


STOCKOUT = ("We currently do not have sufficient g5.xlarge capacity in the Availability Zone you requested "
            "(eu-west-1a). Our system will be working on provisioning additional capacity. Launching EC2 instance "
            "failed.")
QUOTA = ("VcpuLimitExceeded - You have requested more vCPU capacity than your current vCPU limit of 0 allows for the "
         "instance bucket that the specified instance type belongs to. Launching EC2 instance failed.")


@pytest.mark.parametrize(("said", "words"), [
    (STOCKOUT, "EC2 has no capacity for them where the group may launch (a stockout: scaling activity Failed: "
               "We currently do not have sufficient g5.xlarge capacity"),
    (QUOTA, "the account's EC2 quota does not allow them (scaling activity Failed: VcpuLimitExceeded")],
    ids=["stockout", "quota"])
def test_a_group_ec2_cannot_launch_for_is_not_waited_out(endpoint: str, session: boto3.Session, gpu_asg: str,
                                                         said: str, words: str) -> None:
    """EC2 refusing a group's launches (InsufficientInstanceCapacity, a vCPU quota) shows in its scaling
    activities, not as an API error: the wait went on to its timeout and said "1 of 3 instances InService",
    nothing of capacity. It stops at the first poll that sees it, and says the pool, the GPU type, why
    and what to do."""
    with FaultProxy(endpoint) as proxy:
        provider = AwsProvider(endpoint_url=proxy.endpoint, session=session, poll_interval_s=0.05)
        change = replace(pool_change(3, asg_name=gpu_asg), before={"nodes": 1})
        provider.apply(change)
        proxy.rewrite("DescribeAutoScalingGroups", instances_pending)
        proxy.answer("DescribeScalingActivities", scaling_activity(gpu_asg, "Failed", said))
        started = time.monotonic()
        with pytest.raises(ProviderError) as err:
            provider.wait_healthy(change, timeout_s=30)
    message = str(err.value)
    assert time.monotonic() - started < 5 and not err.value.retryable, message
    assert message.startswith(f"pool/gpu: Auto Scaling group '{gpu_asg}' in eu-west-1 cannot launch its A10G-24GB "
                              "instances (1 GPUs each): "), message
    assert words in message and "0 of 3 instances InService" in message, message
    assert "lower pool gpu's nodes.max to the 1 it had" in message and "run `placer plan`" in message, message


def test_an_eks_node_group_ec2_cannot_launch_for_is_not_waited_out(endpoint: str, session: boto3.Session,
                                                                   gpu_nodegroup: tuple[str, str]) -> None:
    """An EKS node group says a refused launch in its health issues (AsgInstanceLaunchFailures)."""
    import json

    def failing(body: bytes) -> bytes:
        answer = json.loads(body)
        answer["nodegroup"]["health"] = {"issues": [{"code": "AsgInstanceLaunchFailures", "message": (
            f"Could not launch On-Demand Instances. InsufficientInstanceCapacity - {STOCKOUT}")}]}
        return json.dumps(answer).encode()

    cluster, name = gpu_nodegroup
    with FaultProxy(endpoint) as proxy:
        provider = AwsProvider(endpoint_url=proxy.endpoint, session=session, poll_interval_s=0.05)
        change = replace(pool_change(3, eks=(cluster, name)), before={"nodes": 1})
        provider.apply(change)
        proxy.rewrite(f"/node-groups/{name}", failing)
        with pytest.raises(ProviderError) as err:
            provider.wait_healthy(change, timeout_s=30)
    assert not err.value.retryable, str(err.value)
    assert ("cannot launch its A10G-24GB instances (1 GPUs each): EC2 has no capacity for them where the group may "
            "launch (a stockout: health issue: AsgInstanceLaunchFailures: Could not launch On-Demand Instances. "
            "InsufficientInstanceCapacity") in str(err.value), str(err.value)


def test_a_launch_refused_before_the_size_was_asked_for_is_waited_past(endpoint: str, session: boto3.Session,
                                                                       gpu_asg: str) -> None:
    """Yesterday's stockout, the group's newest activity still, is not this resize's: the wait goes on
    (here to its timeout, the instances never in service) and says what it saw."""
    with FaultProxy(endpoint) as proxy:
        provider = AwsProvider(endpoint_url=proxy.endpoint, session=session, poll_interval_s=0.05)
        change = pool_change(3, asg_name=gpu_asg)
        provider.apply(change)
        proxy.rewrite("DescribeAutoScalingGroups", instances_pending)
        yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        proxy.answer("DescribeScalingActivities", scaling_activity(gpu_asg, "Failed", STOCKOUT, yesterday))
        with pytest.raises(ProviderError) as err:
            provider.wait_healthy(change, timeout_s=0.3)
    assert err.value.retryable and "timed out after 0.3s" in str(err.value) and "stockout" not in str(err.value)


def test_a_released_group_is_left_alone_and_malformed_targets_are_refused_without_calls() -> None:
    provider = AwsProvider(region_names=[EU], endpoint_url=f"http://127.0.0.1:{free_port()}")
    # a pool that left the fleet: placer stops sizing its group and calls nothing (nobody answers there)
    provider.apply(pool_change(None, asg_name="gpu-asg", action="delete"))
    with pytest.raises(ProviderError, match=r"after\.nodes"):
        provider.apply(pool_change(None, asg_name="gpu-asg"))

    no_region = Change("pool/gpu", "update", 1, None, {"nodes": 1},
                       target={"provider": "aws", "aws": {"autoScalingGroupName": "a"}})
    both = pool_change(1, asg_name="a", eks=("c", "n"))
    for change, text in ((no_region, "target.aws.region is missing"), (both, "exactly one of")):
        with pytest.raises(ProviderError) as err:
            provider.observe(change)
        assert not err.value.retryable and text in str(err.value)


def test_endpoint_comes_from_aws_endpoint_url(aws: Clients, endpoint: str, gpu_asg: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    provider = AwsProvider(region_names=[EU])
    assert provider.endpoint_url == endpoint
    assert provider.observe(pool_change(1, asg_name=gpu_asg)) == {"nodes": 1}


# ---------------------------------------------------------------- error classification


@pytest.mark.parametrize(("fault", "retryable", "attempts", "words"), [
    (query_error("Throttling", "Rate exceeded"), True, 2, "throttled"),
    (query_error("RequestLimitExceeded", "Request limit exceeded."), True, 2, "throttled"),
    (query_error("InternalFailure", "oops", status=500), True, 2, "HTTP 500"),
    (query_error("AccessDenied", "not authorized", status=403), False, 1, "AWS_PROFILE"),
    (query_error("ValidationError", "bad parameter"), False, 1, "rejected"),
], ids=["Throttling", "RequestLimitExceeded", "500", "403", "400"])
def test_asg_errors_are_classified_and_sdk_retries_are_bounded(
        endpoint: str, session: boto3.Session, fault: Fault, retryable: bool, attempts: int, words: str) -> None:
    with FaultProxy(endpoint) as proxy:
        provider = AwsProvider(endpoint_url=proxy.endpoint, session=session, max_attempts=2)
        proxy.fail_next(10, fault)
        with pytest.raises(ProviderError) as err:
            provider.observe(pool_change(1, asg_name="gpu-asg"))
        assert err.value.retryable is retryable
        assert str(err.value).startswith("pool/gpu: ") and err.value.address == "pool/gpu"
        assert words in str(err.value) and "'gpu-asg'" in str(err.value)
        assert proxy.requests == attempts  # botocore retried at most once, then handed the error to us


def test_a_throttled_discovery_is_not_told_to_lower_apply_parallelism() -> None:
    from botocore.exceptions import ClientError

    from providers.aws import classify

    throttled = ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"},
                             "ResponseMetadata": {"HTTPStatusCode": 400}}, "DescribeAutoScalingGroups")
    error = classify(throttled, "list the Auto Scaling groups of eu-west-1")
    assert error is not None and error.retryable
    assert "retry later" in str(error) and "or lower apply parallelism" not in str(error)


def test_one_throttle_is_absorbed_by_the_sdks_single_retry(
        aws: Clients, endpoint: str, session: boto3.Session, gpu_asg: str) -> None:
    with FaultProxy(endpoint) as proxy:
        provider = AwsProvider(endpoint_url=proxy.endpoint, session=session, max_attempts=2)
        proxy.fail_next(1, query_error("Throttling", "Rate exceeded"))
        provider.apply(pool_change(2, asg_name=gpu_asg))
        assert proxy.requests == 3  # describe (throttled, then retried) + set_desired_capacity
    assert desired_of(aws, gpu_asg) == 2


@pytest.mark.parametrize("retry_after", ["9", "Wed, 21 Oct 2015 07:28:00 GMT"], ids=["seconds", "past-date"])
def test_the_wait_a_throttled_answer_asks_for_goes_with_the_error(endpoint: str, session: boto3.Session,
                                                                  retry_after: str) -> None:
    throttled = query_error("Throttling", "Rate exceeded")
    with FaultProxy(endpoint) as proxy:
        provider = AwsProvider(endpoint_url=proxy.endpoint, session=session, max_attempts=1)
        proxy.fail_next(1, Fault(throttled.status, throttled.body, {**throttled.headers, "Retry-After": retry_after}))
        with pytest.raises(ProviderError) as err:
            provider.observe(pool_change(1, asg_name="gpu-asg"))
    assert err.value.retryable and err.value.retry_after == (9 if retry_after == "9" else 0)


@pytest.mark.parametrize(("fault", "retryable"), [
    (json_error("ServiceUnavailableException", "try later", 503), True),
    (json_error("ThrottlingException", "Rate exceeded", 429), True),
    (json_error("InvalidParameterException", "bad nodegroup", 400), False),
], ids=["503", "429", "400"])
def test_eks_errors_are_classified(endpoint: str, session: boto3.Session, fault: Fault, retryable: bool) -> None:
    with FaultProxy(endpoint) as proxy:
        provider = AwsProvider(endpoint_url=proxy.endpoint, session=session, max_attempts=1)
        proxy.fail_next(10, fault)
        with pytest.raises(ProviderError) as err:
            provider.apply(pool_change(2, eks=("ml", "gpu")))
        assert err.value.retryable is retryable
        assert "'gpu' of cluster 'ml'" in str(err.value)
        assert proxy.requests == 1


def test_the_apply_s_aws_provider_leaves_retrying_to_the_apply_engine(endpoint: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore made 3 tries (20 s each on a hung endpoint) inside each of the apply's 6: 377 s
    without a progress line for a minute at a time; the apply engine retries, and says so."""
    from placer.cli import providers_for

    with FaultProxy(endpoint) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        aws = next(p for p in providers_for({"mode": "live"}) if p.name == "aws")
        proxy.fail_next(10, query_error("InternalFailure", "oops", status=500))
        with pytest.raises(ProviderError) as err:
            aws.observe(pool_change(1, asg_name="gpu-asg"))
        assert err.value.retryable and proxy.requests == 1


def test_a_server_that_never_answers_is_a_retryable_timeout(session: boto3.Session) -> None:
    with SilentServer() as silent:
        provider = AwsProvider(endpoint_url=silent.endpoint, session=session, read_timeout_s=0.3, max_attempts=1)
        started = time.monotonic()
        with pytest.raises(ProviderError) as err:
            provider.observe(pool_change(1, asg_name="gpu-asg"))
        assert time.monotonic() - started < 5
    assert err.value.retryable and "timed out" in str(err.value)


def test_an_endpoint_nobody_listens_on_is_retryable(session: boto3.Session) -> None:
    provider = AwsProvider(endpoint_url=f"http://127.0.0.1:{free_port()}", session=session,
                           connect_timeout_s=1, max_attempts=1)
    with pytest.raises(ProviderError) as err:
        provider.observe(pool_change(1, eks=("ml", "gpu")))
    assert err.value.retryable and "could not reach AWS" in str(err.value)
    assert str(err.value).endswith("; check network, proxy or AWS_ENDPOINT_URL, then retry"), str(err.value)


def test_missing_credentials_are_not_retryable(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    provider = AwsProvider(region_names=[EU], endpoint_url=endpoint)
    with pytest.raises(ProviderError) as err:
        provider.observe(pool_change(1, asg_name="gpu-asg"))
    assert not err.value.retryable and "AWS_ACCESS_KEY_ID" in str(err.value)


def test_a_profile_or_endpoint_aws_cannot_use_is_said_as_such_and_only_when_aws_is_called(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_PROFILE naming no profile made every live apply and refresh (of kubernetes pools only
    too: the provider was built for each) an internal error, 'ProfileNotFound ... report it'; an
    AWS_ENDPOINT_URL that is no URL, 'ValueError: Invalid endpoint'."""
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    provider = AwsProvider(region_names=[EU])  # nothing is read yet: a fleet without AWS pools is not held up
    with pytest.raises(ProviderError) as err:
        provider.observe(pool_change(1, asg_name="gpu-asg"))
    assert not err.value.retryable and "AWS_PROFILE" in str(err.value) and "'no-such-profile'" in str(err.value)
    with pytest.raises(ProviderError, match="no-such-profile"):
        provider.discover()
    monkeypatch.delenv("AWS_PROFILE")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "not-a-url")
    with pytest.raises(ProviderError) as err:
        AwsProvider(region_names=[EU]).observe(pool_change(1, asg_name="gpu-asg"))
    assert not err.value.retryable and "'not-a-url'" in str(err.value) and "AWS_ENDPOINT_URL" in str(err.value)


def test_the_aws_configure_command_for_a_missing_profile_quotes_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_PROFILE='ml team' naming no profile said to run `aws configure --profile ml team`, which,
    pasted, configures a profile 'ml' and fails on 'team'."""
    monkeypatch.setenv("AWS_PROFILE", "ml team")
    with pytest.raises(ProviderError) as err:
        AwsProvider(region_names=[EU]).observe(pool_change(1, asg_name="gpu-asg"))
    assert "`aws configure --profile 'ml team'`" in str(err.value), str(err.value)
