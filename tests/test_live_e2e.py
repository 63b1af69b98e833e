"""End to end in live mode: plan and apply through the real AWS, GCP and Kubernetes clients against
local servers (moto, a fake Compute API, a fake kube-apiserver), then a re-plan shows no changes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
import yaml

from tests.fleetkit import doc, inference, location, training
from tests.servers.gcp_server import FakeCompute
from tests.servers.kube_server import FakeKubeApiServer, status_object, write_kubeconfig
from tests.servers.moto_server import (
    FaultProxy,
    instances_pending,
    moto_server,
    query_error,
    reset_moto,
    scaling_activity,
)

ROOT = Path(__file__).resolve().parents[1]
REGION = "eu-west-1"
AMI = "ami-12c6146b"  # one of moto's built-in images


def _fleet(tmp: Path, *, aws_pool: bool = True, asr_image: str | None = None, dc_namespace: str = "ml",
           aws_context: str | None = "eks-eu", aws_nodes: dict[str, int] | None = None) -> Path:
    fleet = tmp / "fleet"
    fleet.mkdir(exist_ok=True)
    k8s = lambda ctx: {**({"context": ctx} if ctx else {}), "namespace": "ml",  # noqa: E731
                       "nodeSelector": {"placer.dev/pool": "x"}}
    docs = [
        location("eu"), location("dc", env="onprem"),
        doc("Link", "eu-dc", {"between": ["eu", "dc"], "latencyMs": 8}),
        doc("Pool", "aws-h100", {"location": "eu", "provider": "aws", "gpu": {"type": "H100-80GB", "perNode": 8},
                                 "nodes": aws_nodes or {"min": 0, "max": 4}, "usdPerGpuHour": 4.0,
                                 "target": {"aws": {"region": REGION, "autoScalingGroupName": "e2e-h100"},
                                            "kubernetes": k8s(aws_context)}}),
        doc("Pool", "gcp-a100", {"location": "eu", "provider": "gcp", "gpu": {"type": "A100-80GB", "perNode": 8},
                                 "nodes": {"min": 0, "max": 4}, "usdPerGpuHour": 3.0,
                                 "target": {"gcp": {"project": "acme", "zone": "europe-west4-a",
                                                    "instanceGroupManager": "placer-a100"},
                                            "kubernetes": k8s("gke-eu")}}),
        doc("Pool", "dc-l4", {"location": "dc", "provider": "kubernetes", "gpu": {"type": "L4-24GB", "perNode": 4},
                              "nodes": {"count": 2}, "usdPerGpuHour": 0.5, "target": {"kubernetes": {**k8s("onprem"), "namespace": dc_namespace}}}),
        inference("chat-70b", [{"location": "eu", "rate": 2500}], throughput={"H100-80GB": 1000}, gpus=4, mem=70),
        inference("embed", [{"location": "eu", "rate": 1100}], throughput={"A100-80GB": 100}, gpus=1, mem=30),
        inference("asr", [{"location": "dc", "rate": 300}], throughput={"L4-24GB": 100}, gpus=1, mem=16,
                  **({"image": asr_image} if asr_image else {})),
        doc("Settings", "s", {"state": {"path": str(tmp / "state.json")}, "apply": {"mode": "live"}}),
    ]
    if not aws_pool:
        docs = [d for d in docs if d["metadata"]["name"] != "aws-h100"]
    (fleet / "fleet.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return fleet


@pytest.fixture
def world(tmp_path, monkeypatch):
    with moto_server() as aws_url, FakeCompute() as gcp, FakeKubeApiServer() as kube:
        reset_moto(aws_url)  # moto's in-process servers share their resources: each test starts from none
        env = dict(os.environ)
        env.update({"AWS_ENDPOINT_URL": aws_url, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                    "AWS_DEFAULT_REGION": REGION, "PLACER_GCP_API_ENDPOINT": gcp.endpoint,
                    "KUBECONFIG": str(write_kubeconfig(tmp_path / "kubeconfig",
                                                       {c: kube.url for c in ("eks-eu", "gke-eu", "onprem")})),
                    "PLACER_RETRY_BASE_SECONDS": "0.01"})
        session = boto3.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION)
        session.client("ec2", endpoint_url=aws_url).create_launch_template(
            LaunchTemplateName="lt-h100", LaunchTemplateData={"ImageId": AMI, "InstanceType": "p4d.24xlarge"})
        autoscaling = session.client("autoscaling", endpoint_url=aws_url)
        autoscaling.create_auto_scaling_group(AutoScalingGroupName="e2e-h100", MinSize=0, MaxSize=4,
                                              DesiredCapacity=0, AvailabilityZones=[f"{REGION}a"],
                                              LaunchTemplate={"LaunchTemplateName": "lt-h100"})
        link = gcp.add_template("acme", "a100-tpl", "a2-ultragpu-8g", accelerators=[("nvidia-a100-80gb", 8)])
        gcp.add_mig("acme", "placer-a100", link, zone="europe-west4-a", target_size=0)
        yield {"env": env, "autoscaling": autoscaling, "gcp": gcp, "kube": kube, "tmp": tmp_path}


def placer(world, *args):
    return subprocess.run([sys.executable, "-m", "placer", *args], cwd=world["tmp"], env=world["env"],
                          capture_output=True, text=True, timeout=240)


def _apply_stopped_by_sigterm(world, plan, ready):
    """`placer apply PLAN` in a process of its own, sent SIGTERM once ``ready()`` holds: its exit
    status and what it said (stderr, its whitespace runs as one space)."""
    proc = subprocess.Popen([sys.executable, "-m", "placer", "apply", str(plan)], cwd=world["tmp"],
                            env={**world["env"], "COLUMNS": "400"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        while not ready():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, " ".join(stderr.split())


def test_a_fixed_aws_pool_is_sized_at_its_count(world):
    """aws-h100 `nodes: {count: 2}`, its group at 0: the plan put chat-70b's replicas on its 2 nodes, and
    apply never set the group's desired capacity (a fixed pool placer had not sized before stayed
    unmanaged), so the replicas had no nodes. The group is now set to its count, and a re-plan is clean."""
    fleet = _fleet(world["tmp"], aws_nodes={"count": 2})
    plan = world["tmp"] / "plan.json"
    r = placer(world, "plan", str(fleet), "-o", str(plan), "--detailed-exitcode")
    assert r.returncode == 2, r.stderr
    data = json.loads(plan.read_text())
    assert any(p["pool"] == "aws-h100" and p["replicas"] > 0 for p in data["placements"])
    assert [(c["action"], c["after"]) for c in data["changes"] if c["address"] == "pool/aws-h100"] == [
        ("create", {"nodes": 2})]
    r = placer(world, "apply", str(plan))
    assert r.returncode == 0, r.stderr + r.stdout
    group = world["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=["e2e-h100"])
    assert group["AutoScalingGroups"][0]["DesiredCapacity"] == 2
    r = placer(world, "plan", str(fleet), "--detailed-exitcode")
    assert r.returncode == 0, r.stderr + r.stdout


def test_plan_apply_replan_through_live_providers(world):
    fleet = _fleet(world["tmp"])
    plan = world["tmp"] / "plan.json"
    r = placer(world, "plan", str(fleet), "-o", str(plan), "--detailed-exitcode")
    assert r.returncode == 2, r.stderr
    data = json.loads(plan.read_text())
    nodes = {p["pool"]: p["nodes"] for p in data["pools"]}
    replicas = {p["model"] + "@" + p["pool"]: p["replicas"] for p in data["placements"]}
    assert replicas == {"chat-70b@aws-h100": 3, "embed@gcp-a100": 11, "asr@dc-l4": 3}
    assert nodes["aws-h100"] == 2 and nodes["gcp-a100"] == 2

    r = placer(world, "apply", str(plan))
    assert r.returncode == 0, r.stderr + r.stdout
    group = world["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=["e2e-h100"])
    assert group["AutoScalingGroups"][0]["DesiredCapacity"] == 2
    assert world["gcp"].target_size("acme", "placer-a100", zone="europe-west4-a") == 2
    kube = world["kube"]
    assert kube.deployment("ml", "chat-70b-aws-h100")["spec"]["replicas"] == 3
    assert kube.deployment("ml", "embed-gcp-a100")["spec"]["replicas"] == 11
    deployment = kube.deployment("ml", "asr-dc-l4")
    assert deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "placer"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"

    r = placer(world, "plan", str(fleet), "--detailed-exitcode")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "No changes" in r.stdout
    r = placer(world, "refresh", str(fleet))
    assert r.returncode == 0 and "No drift" in r.stdout, r.stderr

    # someone scales a Deployment by hand: refresh reports the drift, plan --refresh puts it back
    from kubernetes import client, config
    api = client.AppsV1Api(config.new_client_from_config(world["env"]["KUBECONFIG"], context="onprem"))
    api.patch_namespaced_deployment("asr-dc-l4", "ml", {"spec": {"replicas": 1}})
    r = placer(world, "refresh", str(fleet))
    assert "deployment/asr@dc-l4: state records 3 replicas, the cluster runs 1" in r.stderr
    r = placer(world, "plan", str(fleet), "--refresh", "--detailed-exitcode")
    assert r.returncode == 2 and "deployment/asr@dc-l4" in r.stdout

    # a Deployment placer owns that the state never recorded (an apply killed between the two), and a
    # pool whose group is gone: refresh said "No drift" for both
    orphan = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "stray-dc-l4", "namespace": "ml", "labels": {
                  "app.kubernetes.io/managed-by": "placer", "placer.dev/model": "stray", "placer.dev/pool": "dc-l4"}},
              "spec": {"replicas": 2, "selector": {"matchLabels": {"placer.dev/model": "stray"}},
                       "template": {"metadata": {"labels": {"placer.dev/model": "stray"}},
                                    "spec": {"containers": [{"name": "m", "image": "x"}]}}}}
    api.create_namespaced_deployment("ml", orphan)
    world["autoscaling"].delete_auto_scaling_group(AutoScalingGroupName="e2e-h100", ForceDelete=True)
    r = placer(world, "refresh", str(fleet))
    said = " ".join(r.stderr.split())
    # (its three contexts are one fake server here, so each sees the stray)
    assert re.search(r"deployment/stray@dc-l4: runs \d+ replica\(s\) labelled as placer's that the state does not "
                     r"record", said), said
    assert "pool/aws-h100: state records 2 nodes, the provider has no such group" in said, said
    assert "No drift" not in r.stdout


def _plan_and_apply(world, fleet):
    """Plan ``fleet`` into plan.json and apply it; the plan's path."""
    plan = world["tmp"] / "plan.json"
    assert placer(world, "plan", str(fleet), "-o", str(plan)).returncode == 0
    r = placer(world, "apply", str(plan))
    assert r.returncode == 0, r.stderr + r.stdout
    return plan


def test_a_pool_removed_from_the_fleet_is_released_and_its_group_left_as_it_is(world):
    fleet = _fleet(world["tmp"])
    plan = _plan_and_apply(world, fleet)

    _fleet(world["tmp"], aws_pool=False)
    r = placer(world, "plan", str(fleet), "-o", str(plan), "--detailed-exitcode")
    assert r.returncode == 2, r.stderr
    said = " ".join(r.stdout.split())
    assert ("pool/aws-h100 [phase 4] nodes 2, released: no longer sized by placer # pool removed from the fleet: "
            "placer stops sizing Auto Scaling group e2e-h100 in eu-west-1 and leaves it as it is (2 nodes)") in said, said
    r = placer(world, "apply", str(plan))
    assert r.returncode == 0, r.stderr + r.stdout
    group = world["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=["e2e-h100"])
    assert group["AutoScalingGroups"][0]["DesiredCapacity"] == 2, "a released group is not shrunk behind the user's back"
    assert world["kube"].deployment("ml", "chat-70b-aws-h100") is None
    state = json.loads((world["tmp"] / "state.json").read_text())
    assert sorted(state["pools"]) == ["gcp-a100"]
    r = placer(world, "plan", str(fleet), "--detailed-exitcode")
    assert r.returncode == 0 and "No changes" in r.stdout, r.stdout + r.stderr


def test_naming_the_current_context_moves_nothing(world):
    """aws-h100's target names context eks-eu, the kubeconfig's current one; then no context. The
    plan replaces the Deployment (it cannot read the kubeconfig), and the replacement's delete, at
    the old place, deleted the object its create had just applied: the only copy."""
    fleet = _fleet(world["tmp"])
    _plan_and_apply(world, fleet)
    before = world["kube"].deployment("ml", "chat-70b-aws-h100")
    assert before is not None
    _fleet(world["tmp"], aws_context=None)
    plan = world["tmp"] / "plan.json"
    r = placer(world, "plan", str(fleet), "-o", str(plan))
    assert r.returncode == 0, r.stderr
    actions = sorted(c["action"] for c in json.loads(plan.read_text())["changes"]
                     if c["address"] == "deployment/chat-70b@aws-h100")
    assert actions == ["create", "delete"]
    r = placer(world, "apply", str(plan))
    assert r.returncode == 0, r.stderr + r.stdout
    after = world["kube"].deployment("ml", "chat-70b-aws-h100")
    assert after is not None and after["spec"]["replicas"] == before["spec"]["replicas"]
    r = placer(world, "refresh", str(fleet))
    assert r.returncode == 0 and "No drift" in r.stdout, r.stdout + r.stderr
    r = placer(world, "plan", str(fleet), "--detailed-exitcode")
    assert r.returncode == 0, r.stdout + r.stderr


def test_refresh_reports_a_copy_in_a_place_the_state_does_not_record(world):
    """An apply killed in a replacement's health wait left the new copy (namespace ml2) beside the
    recorded one (ml): refresh summed placer's Deployments over namespaces and said "No drift"."""
    from kubernetes import client, config

    fleet = _fleet(world["tmp"])
    _plan_and_apply(world, fleet)
    api = client.AppsV1Api(config.new_client_from_config(world["env"]["KUBECONFIG"], context="onprem"))
    copy = api.read_namespaced_deployment("asr-dc-l4", "ml").to_dict()
    body = {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "asr-dc-l4", "namespace": "ml2", "labels": copy["metadata"]["labels"]},
            "spec": {"replicas": 3, "selector": {"matchLabels": copy["spec"]["selector"]["match_labels"]},
                     "template": {"metadata": {"labels": copy["spec"]["template"]["metadata"]["labels"]},
                                  "spec": {"containers": [{"name": "m", "image": "x"}]}}}}
    api.create_namespaced_deployment("ml2", body)
    r = placer(world, "refresh", str(fleet))
    said = " ".join(r.stderr.split())
    assert re.search(r"deployment/asr@dc-l4: runs 3 replica\(s\) in namespace ml2 of \S+, where the state records "
                     r"none \(an apply stopped in the middle of a replacement\?\)", said), said
    assert "namespace ml of" not in said and "No drift" not in r.stdout  # the recorded copy is no drift


def test_a_changed_image_updates_and_a_changed_namespace_replaces_the_deployment(world):
    fleet = _fleet(world["tmp"])
    plan = _plan_and_apply(world, fleet)
    kube = world["kube"]
    image = lambda d: d["spec"]["template"]["spec"]["containers"][0]["image"]  # noqa: E731

    _fleet(world["tmp"], asr_image="reg/asr:2")  # "No changes" before: the cluster kept the old image
    r = placer(world, "plan", str(fleet), "-o", str(plan), "--detailed-exitcode")
    assert r.returncode == 2 and "Plan: 0 to create, 1 to update, 0 to delete." in r.stdout, r.stdout + r.stderr
    r = placer(world, "apply", str(plan))
    assert r.returncode == 0, r.stderr + r.stdout
    assert image(kube.deployment("ml", "asr-dc-l4")) == "reg/asr:2"

    # another namespace: the new Deployment is made and rolled out before the old one is deleted
    # (both ran on, and refresh said "No drift")
    _fleet(world["tmp"], asr_image="reg/asr:2", dc_namespace="ml2")
    r = placer(world, "plan", str(fleet), "-o", str(plan))
    assert r.returncode == 0 and "Plan: 1 to create, 0 to update, 1 to delete." in r.stdout, r.stdout + r.stderr
    r = placer(world, "apply", str(plan))
    assert r.returncode == 0, r.stderr + r.stdout
    assert kube.deployment("ml", "asr-dc-l4") is None
    assert image(kube.deployment("ml2", "asr-dc-l4")) == "reg/asr:2"
    r = placer(world, "refresh", str(fleet))
    assert r.returncode == 0 and "No drift" in r.stdout, r.stdout + r.stderr
    r = placer(world, "plan", str(fleet), "--detailed-exitcode")
    assert r.returncode == 0 and "No changes" in r.stdout, r.stdout + r.stderr



# ---------------------------------------------------------------- refresh: the drift a refreshed plan keeps


def _kube_apps(world, context: str):
    from kubernetes import client, config
    return client.AppsV1Api(config.new_client_from_config(world["env"]["KUBECONFIG"], context=context))


def test_applying_a_refreshed_plan_records_the_drift_it_kept(world):
    """Drift a refreshed plan keeps (the cluster already runs what the fleet now places there: no
    change) is recorded by its apply, with the changes it makes: asr@dc-l4 scaled to 1 by hand and
    the fleet now placing 1, aws-h100's group grown to 3 nodes by hand and the fleet now needing 3.
    The state kept their old records (3 replicas, 2 nodes), and the next plain plan said
    "asr@dc-l4 3 -> 1" and "nodes 2 -> 3" of what the cluster already ran."""
    fleet = _fleet(world["tmp"])
    _plan_and_apply(world, fleet)
    _kube_apps(world, "onprem").patch_namespaced_deployment("asr-dc-l4", "ml", {"spec": {"replicas": 1}})
    world["autoscaling"].set_desired_capacity(AutoScalingGroupName="e2e-h100", DesiredCapacity=3)
    text = (fleet / "fleet.yaml").read_text()
    # asr: 3 -> 1 replica, as it runs; chat-70b: 3 -> 5 replicas, on the 3 nodes aws-h100 now has
    (fleet / "fleet.yaml").write_text(text.replace("rate: 300", "rate: 100").replace("rate: 2500", "rate: 5000"))
    plan = world["tmp"] / "refreshed.json"
    r = placer(world, "plan", str(fleet), "--refresh", "-o", str(plan))
    assert r.returncode == 0, r.stdout + r.stderr
    changes = {c["address"] for c in json.loads(plan.read_text())["changes"] if c["action"] != "no-op"}
    assert changes == {"deployment/chat-70b@aws-h100"}, r.stdout
    applied = placer(world, "apply", str(plan))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    r = placer(world, "plan", str(fleet), "--detailed-exitcode")
    assert r.returncode == 0 and "No changes" in r.stdout, r.stdout + r.stderr
    state = json.loads((world["tmp"] / "state.json").read_text())
    assert state["deployments"]["asr@dc-l4"]["replicas"] == 1 and state["pools"]["aws-h100"]["nodes"] == 3
    assert state["serial"] == 2, "one apply, one serial"
    said = " ".join(applied.stdout.split())
    assert ("the state now records what the refresh saw run, which the plan kept: deployment/asr@dc-l4 "
            "(replicas 1), pool/aws-h100 (nodes 3)") in said, said
    r = placer(world, "refresh", str(fleet))
    assert r.returncode == 0 and "No drift" in r.stdout, r.stdout + r.stderr

    # a refreshed plan with no change at all: its apply records the drift, as a new serial (a plan made
    # from the old record is stale), and the same plan applied again is refused as applied
    _kube_apps(world, "onprem").patch_namespaced_deployment("asr-dc-l4", "ml", {"spec": {"replicas": 2}})
    (fleet / "fleet.yaml").write_text((fleet / "fleet.yaml").read_text().replace("rate: 100", "rate: 200"))
    stale = world["tmp"] / "stale.json"
    assert placer(world, "plan", str(fleet), "-o", str(stale)).returncode == 0  # 1 -> 2, from the state
    r = placer(world, "plan", str(fleet), "--refresh", "--detailed-exitcode", "-o", str(plan))
    assert r.returncode == 0 and "No changes" in r.stdout, r.stdout + r.stderr
    r = placer(world, "apply", str(plan))
    assert r.returncode == 0, r.stdout + r.stderr
    said = " ".join(r.stdout.split())
    assert ("No changes. The infrastructure matches the plan; the state now records what the refresh saw run, "
            "which the plan kept: deployment/asr@dc-l4 (replicas 2); state serial 3.") in said, said
    assert json.loads((world["tmp"] / "state.json").read_text())["deployments"]["asr@dc-l4"]["replicas"] == 2
    r = placer(world, "plan", str(fleet), "--detailed-exitcode")
    assert r.returncode == 0 and "No changes" in r.stdout, r.stdout + r.stderr
    r = placer(world, "apply", str(stale))
    assert r.returncode == 1 and "stale plan" in r.stderr, r.stdout + r.stderr
    r = placer(world, "apply", str(plan))
    assert r.returncode == 1 and "it was applied already" in " ".join(r.stderr.split()), r.stdout + r.stderr


def test_a_refreshed_plan_records_no_drift_the_world_moved_from_before_its_apply(world):
    """Scaled again between the refreshed plan and its apply, the Deployment runs neither what the
    refresh saw nor what the state records: the state keeps its record (the next plan puts it back)
    and the apply says so; the refresh's figure was not written over what runs."""
    fleet = _fleet(world["tmp"])
    _plan_and_apply(world, fleet)
    apps = _kube_apps(world, "onprem")
    apps.patch_namespaced_deployment("asr-dc-l4", "ml", {"spec": {"replicas": 1}})
    (fleet / "fleet.yaml").write_text((fleet / "fleet.yaml").read_text().replace("rate: 300", "rate: 100"))
    plan = world["tmp"] / "refreshed.json"
    r = placer(world, "plan", str(fleet), "--refresh", "--detailed-exitcode", "-o", str(plan))
    assert r.returncode == 0, r.stdout + r.stderr
    apps.patch_namespaced_deployment("asr-dc-l4", "ml", {"spec": {"replicas": 2}})
    r = placer(world, "apply", str(plan))
    assert r.returncode == 0, r.stdout + r.stderr
    said = " ".join(r.stderr.split())
    assert ("deployment/asr@dc-l4: the refresh saw replicas 1 run and the plan kept them, but the kubernetes "
            "provider now reports 2 (it was changed since the plan): the state keeps its record, replicas 3; run "
            "`placer plan --refresh` again") in said, said
    state = json.loads((world["tmp"] / "state.json").read_text())
    assert state["deployments"]["asr@dc-l4"]["replicas"] == 3 and state["serial"] == 1
    r = placer(world, "plan", str(fleet), "--detailed-exitcode")
    assert r.returncode == 2 and "deployment/asr@dc-l4" in r.stdout, r.stdout + r.stderr


# ---------------------------------------------------------------- refresh: throttled reads tried again


def _spent(stderr: str, then: str) -> str:
    """The error a command ends with once its retries are spent: one line saying how many tries over
    how long and what to do, each of the 5 waits before it said."""
    said = " ".join(stderr.split())
    assert said.count("Error: ") == 1 and said.count("retrying in ") == 5, said
    error = said.split("Error: ")[1]
    assert "tried 6 times over " in error and error.endswith(then), error
    assert "retry" not in error.split("tried 6 times")[0], error  # no advice to retry what was retried
    return error


def test_refresh_tries_a_throttled_read_again_and_changes_nothing_once_its_tries_are_spent(world):
    """One throttled or failed read (a Deployment's, a group's, placer's Deployments listed) stopped
    `placer refresh` and `plan --refresh`, exit 1, where apply and discovery try theirs again: each
    read is tried again by the same policy, each wait said; once its tries are spent the command says
    so in one line, exit 1, the state byte for byte as it was and no plan written."""
    fleet = _fleet(world["tmp"])
    _plan_and_apply(world, fleet)
    state = world["tmp"] / "state.json"
    before = state.read_bytes()
    kube, gcp = world["kube"], world["gcp"]
    with FaultProxy(world["env"]["AWS_ENDPOINT_URL"]) as proxy:
        throttled = {**world, "env": {**world["env"], "AWS_ENDPOINT_URL": proxy.endpoint}}
        kube.fail_next(1, 429, retry_after=1, path_contains="/namespaces/ml/deployments/")
        kube.fail_next(1, 503, path_contains="/apis/apps/v1/deployments")  # the listing of placer's
        gcp.fail_next(1, 503, path_contains="instanceGroupManagers/placer-a100")
        proxy.fail_next(1, query_error("Throttling", "Rate exceeded"))
        r = placer(throttled, "refresh", str(fleet))
        assert r.returncode == 0 and "No drift" in r.stdout, r.stdout + r.stderr
        said = " ".join(r.stderr.split())
        assert said.count("retrying in ") == 4 and "as the server asked (Retry-After 1s)" in said, said
        assert "AWS throttled the request" in said and "Error: " not in said, said

        gcp.fail_next(6, 503, path_contains="instanceGroupManagers/placer-a100")
        r = placer(throttled, "refresh", str(fleet))
        assert r.returncode == 1 and "No drift" not in r.stdout and "drift:" not in r.stderr, r.stdout + r.stderr
        error = _spent(r.stderr, f"run `placer refresh {fleet}` again (it changes nothing: the state is as it was)")
        assert error.startswith("pool/gcp-a100: ") and "503" in error, error
        kube.fail_next(6, 429, retry_after=None, path_contains="/apis/apps/v1/deployments")
        r = placer(throttled, "refresh", str(fleet))
        assert r.returncode == 1 and "HTTP 429" in _spent(r.stderr, "(it changes nothing: the state is as it was)")

        refreshed = world["tmp"] / "refreshed.json"
        proxy.fail_next(6, query_error("RequestLimitExceeded", "Request limit exceeded."))
        r = placer(throttled, "plan", str(fleet), "--refresh", "-o", str(refreshed))
        assert r.returncode == 1 and not refreshed.exists(), r.stdout + r.stderr
        error = _spent(r.stderr, f"run `placer plan {fleet} --refresh` again (no plan was written)")
        assert error.startswith("pool/aws-h100: ") and "AWS throttled the request" in error, error
        assert proxy.requests == 6  # one request a try: botocore's own retries would be 3 a try
        assert state.read_bytes() == before

        proxy.fail_next(1, query_error("Throttling", "Rate exceeded"))
        r = placer(throttled, "plan", str(fleet), "--refresh", "-o", str(refreshed), "--detailed-exitcode")
        assert r.returncode == 0 and "No changes" in r.stdout, r.stdout + r.stderr
        assert " ".join(r.stderr.split()).count("retrying in ") == 1, r.stderr
    assert state.read_bytes() == before


# ---------------------------------------------------------------- a rollout that never became healthy


def _one_model_fleet(tmp: Path, version: str, replicas: int) -> Path:
    """asr, a training model of ``replicas`` replicas at ``version``, on a Kubernetes pool of 8 L4s."""
    fleet = tmp / "fleet"
    fleet.mkdir(exist_ok=True)
    docs = [
        location("dc", env="onprem"),
        doc("Pool", "dc-l4", {"location": "dc", "provider": "kubernetes", "gpu": {"type": "L4-24GB", "perNode": 4},
                              "nodes": {"count": 2}, "usdPerGpuHour": 0.5,
                              "target": {"kubernetes": {"context": "onprem", "namespace": "ml"}}}),
        training("asr", replicas, gpus=1, mem=16, version=version),
        doc("Settings", "s", {"state": {"path": str(tmp / "state.json")},
                              "apply": {"mode": "live", "healthTimeoutSeconds": 1}}),
    ]
    (fleet / "fleet.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return fleet


@pytest.fixture
def cluster(tmp_path):
    """A fake kube-apiserver only (``world`` without the clouds), for the ``placer`` helper."""
    with FakeKubeApiServer() as kube:
        env = dict(os.environ)
        env.update({"KUBECONFIG": str(write_kubeconfig(tmp_path / "kubeconfig", {"onprem": kube.url})),
                    "PLACER_RETRY_BASE_SECONDS": "0.01"})
        yield {"env": env, "kube": kube, "tmp": tmp_path}


def _rolled_out_but_never_healthy(cluster):
    """asr runs v1 with 3 replicas (applied); the fleet then says v2 with 2, and the apply's rollout
    is made but its pods never become ready: the health wait fails. The fleet's path."""
    tmp, kube = cluster["tmp"], cluster["kube"]
    fleet = _one_model_fleet(tmp, "v1", 3)
    _plan_and_apply(cluster, fleet)
    _one_model_fleet(tmp, "v2", 2)
    kube.ready_after_polls = None  # the new pods never become ready
    plan = tmp / "plan.json"
    assert placer(cluster, "plan", str(fleet), "-o", str(plan)).returncode == 0
    r = placer(cluster, "apply", str(plan))
    assert r.returncode == 1 and "not rolled out after 1s" in r.stderr, r.stdout + r.stderr
    assert ("records exactly what was done (deployment/asr@dc-l4, whose health wait did not pass, as made but not "
            "healthy: the next plan applies it again and waits for it)") in " ".join(r.stderr.split()), r.stderr
    made = kube.deployment("ml", "asr-dc-l4")
    assert made["spec"]["replicas"] == 2
    assert made["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"] == "v2"
    return fleet


def _entry(cluster):
    return json.loads((cluster["tmp"] / "state.json").read_text())["deployments"]["asr@dc-l4"]


UNHEALTHY = ("~ deployment/asr@dc-l4 [phase 2] healthy false -> true # the last apply made it, but it did not "
             "become healthy: applied again, and waited healthy")


def test_a_rollout_that_never_became_healthy_is_recorded_as_made_and_not_healthy(cluster):
    """A phase-2 rollout (v1 -> v2) that also lowered the count (3 -> 2) never became healthy: the
    state kept v1 and 3 replicas while the cluster ran v2 and 2, so the plan of the fleet backed out
    to v1/3 said "No changes". The state records what was made, marked not healthy: the plan of the
    same fleet applies it again and waits for it, and once healthy the mark is cleared."""
    fleet = _rolled_out_but_never_healthy(cluster)
    entry = _entry(cluster)
    assert (entry["replicas"], entry["target"]["version"], entry["healthy"]) == (2, "v2", False)

    r = placer(cluster, "plan", str(fleet), "--detailed-exitcode")
    assert r.returncode == 2, r.stdout + r.stderr
    said = " ".join(r.stdout.split())
    assert UNHEALTHY in said and "Plan: 0 to create, 1 to update, 0 to delete." in said, said
    r = placer(cluster, "refresh", str(fleet))  # no drift, and the mark is said, not lost
    assert r.returncode == 0 and "No drift" in r.stdout, r.stdout + r.stderr
    assert ("deployment/asr@dc-l4: the last apply made it, but it did not become healthy; the next plan applies "
            "it again and waits for it") in " ".join(r.stderr.split())
    r = placer(cluster, "plan", str(fleet), "--refresh", "--detailed-exitcode")
    assert r.returncode == 2 and UNHEALTHY in " ".join(r.stdout.split()), r.stdout + r.stderr

    # still not ready: the re-apply waits again, fails again, and the mark stays
    plan = cluster["tmp"] / "plan.json"
    assert placer(cluster, "plan", str(fleet), "-o", str(plan)).returncode == 0
    r = placer(cluster, "apply", str(plan))
    assert r.returncode == 1 and "not rolled out after 1s" in r.stderr, r.stdout + r.stderr
    assert _entry(cluster)["healthy"] is False

    cluster["kube"].roll_out("ml", "asr-dc-l4")  # what held the pods is fixed
    _plan_and_apply(cluster, fleet)
    assert "healthy" not in _entry(cluster)
    r = placer(cluster, "plan", str(fleet), "--detailed-exitcode")
    assert r.returncode == 0 and "No changes" in r.stdout, r.stdout + r.stderr


def test_backing_out_of_a_rollout_that_never_became_healthy_changes_what_runs(cluster):
    """The same failed rollout, then the fleet backed out to v1 and 3 replicas: the plan said "No
    changes" (the state still said v1/3) and the cluster kept v2/2. It changes v2/2 back to v1/3."""
    fleet = _rolled_out_but_never_healthy(cluster)
    _one_model_fleet(cluster["tmp"], "v1", 3)
    cluster["kube"].ready_after_polls = 0
    plan = cluster["tmp"] / "plan.json"
    r = placer(cluster, "plan", str(fleet), "-o", str(plan), "--detailed-exitcode")
    assert r.returncode == 2, r.stdout + r.stderr
    said = " ".join(r.stdout.split())
    assert ("~ deployment/asr@dc-l4 [phase 2] healthy false -> true, replicas 2 -> 3, version v2 -> v1 # version "
            "changed in the fleet: the rollout starts all 3 of its replicas anew (1.50 USD of churn); the last apply "
            "made it, but it did not become healthy") in said, said
    r = placer(cluster, "apply", str(plan))
    assert r.returncode == 0, r.stdout + r.stderr
    running = cluster["kube"].deployment("ml", "asr-dc-l4")
    assert running["spec"]["replicas"] == 3
    assert running["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"] == "v1"
    entry = _entry(cluster)
    assert (entry["replicas"], entry["target"]["version"], "healthy" in entry) == (3, "v1", False)
    r = placer(cluster, "plan", str(fleet), "--detailed-exitcode")
    assert r.returncode == 0 and "No changes" in r.stdout, r.stdout + r.stderr


# ---------------------------------------------------------------- rollouts the pool's GPUs hold


def _full_pool_fleet(tmp: Path, version: str, replicas: int, gpus: int, others: int = 0,
                     headroom: float | None = None) -> Path:
    """``_one_model_fleet``'s pool of 8 L4s, asr at ``version`` with ``replicas`` of ``gpus`` GPUs,
    tts (``others`` of 1 GPU) beside it, and a required headroom on the pool."""
    fleet = _one_model_fleet(tmp, version, replicas)
    docs = list(yaml.safe_load_all((fleet / "fleet.yaml").read_text()))
    for d in docs:
        if d["kind"] == "Model":
            d["spec"]["replica"]["gpus"] = gpus
    if others:
        docs.append(training("tts", others, gpus=1, mem=16))
    if headroom is not None:
        docs.append(doc("Policy", "keep-free", {"rule": {"headroom": {"fraction": headroom}},
                                                "pools": {"names": ["dc-l4"]}}))
    (fleet / "fleet.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return fleet


def _gpu_nodes(kube):
    """The pool's 2 nodes of 4 GPUs, where rollouts schedule their pods (``gpu_rollouts``)."""
    kube.gpu_rollouts = True
    for i in range(2):
        kube.add_node(f"dc-l4-{i}", gpus=4)


def test_a_rollout_of_4_keeps_its_surge_pod_off_the_gpus_a_required_headroom_keeps_free(cluster):
    """asr's 4 replicas and tts's 2 hold 6 of the pool's 8 GPUs, which keep-free keeps to 6. asr's
    new version rolled out with Kubernetes' default (maxSurge 1, maxUnavailable 1) started its surge
    pod on a free GPU: the pool held 7 of 8. Rolled out with maxSurge 0 now, it holds 6 at most."""
    tmp, kube = cluster["tmp"], cluster["kube"]
    _gpu_nodes(kube)
    fleet = _full_pool_fleet(tmp, "v1", 4, 1, others=2, headroom=0.25)
    _plan_and_apply(cluster, fleet)
    _full_pool_fleet(tmp, "v2", 4, 1, others=2, headroom=0.25)
    plan = tmp / "plan.json"
    r = placer(cluster, "plan", str(fleet), "-o", str(plan))
    assert r.returncode == 0, r.stdout + r.stderr
    assert ("# rolled out with maxSurge 0, maxUnavailable 1: Kubernetes' default rollout starts 1 surge pod first, "
            "and dc-l4 holds none beside the old replicas and the new") in " ".join(r.stdout.split()), r.stdout
    r = placer(cluster, "apply", str(plan))
    assert r.returncode == 0, r.stdout + r.stderr
    running = kube.deployment("ml", "asr-dc-l4")
    assert running["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert running["status"]["updatedReplicas"] == 4
    assert kube.peak_gpus[("ml", "asr-dc-l4")] == 6


def test_a_rollout_an_earlier_apply_left_stuck_is_rolled_out_with_the_strategy_that_fits(cluster):
    """asr's 2 replicas of 4 GPUs fill the pool's 8. An earlier placer (or a user) rolled v2 out with
    Kubernetes' default: its surge pod had no GPU, no old pod may go first, and the Deployment is stuck
    (ProgressDeadlineExceeded), the apply's health wait failed, and the state marks it not healthy.
    The next plan applied the same manifest again, which could not move it, and the wait failed again.
    Now the plan rolls it out with maxSurge 0, maxUnavailable 1 (the pool has no room for the surge
    pod), saying it may be stuck so, and the apply's wait sees it through."""
    tmp, kube = cluster["tmp"], cluster["kube"]
    _gpu_nodes(kube)
    fleet = _full_pool_fleet(tmp, "v1", 2, 4)
    _plan_and_apply(cluster, fleet)
    _full_pool_fleet(tmp, "v2", 2, 4)
    plan = tmp / "plan.json"
    assert placer(cluster, "plan", str(fleet), "-o", str(plan)).returncode == 0
    target = {k: v for k, v in json.loads(plan.read_text())["changes"][0]["target"].items() if k != "strategy"}
    # what the earlier apply did: the manifest with Kubernetes' default strategy, its wait failed
    from placer.planfile import Change
    from providers.kubernetes import KubernetesProvider
    provider = KubernetesProvider(cluster["env"]["KUBECONFIG"])
    provider.apply(Change("deployment/asr@dc-l4", "update", 2, {"replicas": 2}, {"replicas": 2}, (), target))
    provider.close()
    stuck = kube.deployment("ml", "asr-dc-l4")["status"]
    assert (stuck["updatedReplicas"], stuck["unavailableReplicas"], stuck["conditions"][1]["reason"]) == (
        1, 1, "ProgressDeadlineExceeded")
    state = json.loads((tmp / "state.json").read_text())
    state["deployments"]["asr@dc-l4"].update(target=target, healthy=False)
    (tmp / "state.json").write_text(json.dumps(state))

    r = placer(cluster, "plan", str(fleet), "-o", str(plan))
    said = " ".join(r.stdout.split())
    assert r.returncode == 0 and ("~ deployment/asr@dc-l4 [phase 2] healthy false -> true # rolled out with "
                                  "maxSurge 0, maxUnavailable 1: dc-l4 has no room for the surge pod Kubernetes' "
                                  "default rollout starts first (the old replicas, the new and it need 12 of its 8 "
                                  "GPUs): the last apply's rollout may be stuck waiting for that pod, which no "
                                  "re-apply of it would start, so one of its 2 replicas at a time is down while it "
                                  "rolls out") in said, said
    r = placer(cluster, "apply", str(plan))
    assert r.returncode == 0, r.stdout + r.stderr
    running = kube.deployment("ml", "asr-dc-l4")
    assert running["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert (running["status"]["updatedReplicas"], running["status"]["availableReplicas"]) == (2, 2)
    assert "healthy" not in _entry(cluster) and kube.peak_gpus[("ml", "asr-dc-l4")] == 8
    r = placer(cluster, "plan", str(fleet), "--detailed-exitcode")
    assert r.returncode == 0 and "No changes" in r.stdout, r.stdout + r.stderr


def test_a_rollout_stuck_after_its_apply_is_found_by_refresh_and_rolled_out_again(cluster):
    """asr's 2 replicas of 4 GPUs fill the pool's 8, applied and healthy. Then someone changes its image
    behind placer's back (`kubectl edit`): Kubernetes' default rollout has no GPU for its surge pod and
    is stuck (ProgressDeadlineExceeded), while the state still says healthy. `placer refresh` said "No
    drift" and `plan --refresh` "No changes": the stuck rollout was seen only once an apply touched it.
    Refresh now says which deployment, since when and what its conditions say; the refreshed plan
    applies it again (with the strategy its pool has room for) and waits for it, and then all is quiet."""
    tmp, kube = cluster["tmp"], cluster["kube"]
    _gpu_nodes(kube)
    fleet = _full_pool_fleet(tmp, "v1", 2, 4)
    _plan_and_apply(cluster, fleet)
    assert "healthy" not in _entry(cluster)
    apps = _kube_apps(cluster, "onprem")
    containers = kube.deployment("ml", "asr-dc-l4")["spec"]["template"]["spec"]["containers"]
    placed = containers[0]["image"]
    apps.patch_namespaced_deployment("asr-dc-l4", "ml", {"spec": {"template": {"spec": {"containers": [
        {**containers[0], "image": "reg/asr:hotfix"}]}}}}, field_manager="kubectl-edit")
    status = kube.deployment("ml", "asr-dc-l4")["status"]
    progressing = status["conditions"][1]
    assert (progressing["reason"], status["updatedReplicas"]) == ("ProgressDeadlineExceeded", 1)
    since = progressing["lastUpdateTime"]
    state = tmp / "state.json"
    before = state.read_bytes()

    r = placer(cluster, "refresh", str(fleet))
    said = " ".join(r.stderr.split())
    assert r.returncode == 0 and "No drift" not in r.stdout, r.stdout + r.stderr
    assert (f"drift: deployment/asr@dc-l4: the state records it healthy, but in the cluster its rollout has been "
            f"stuck since {since} (Progressing False, ProgressDeadlineExceeded: ReplicaSet \"asr-dc-l4-7d9f8b6c5\" "
            "has timed out progressing.); 1 of 2 replicas updated, 2 available; its spec was changed by "
            "kubectl-edit too, not by placer alone; see `kubectl --context onprem -n ml describe deployment "
            "asr-dc-l4` and its pods' events. A plan made with --refresh applies it again and waits for it") in said, said
    assert state.read_bytes() == before  # refresh changes nothing

    plan = tmp / "plan.json"
    r = placer(cluster, "plan", str(fleet), "--refresh", "-o", str(plan), "--detailed-exitcode")
    said = " ".join(r.stdout.split())
    assert r.returncode == 2, r.stdout + r.stderr
    assert ("~ deployment/asr@dc-l4 [phase 2] healthy false -> true # rolled out with maxSurge 0, maxUnavailable 1: "
            "dc-l4 has no room for the surge pod Kubernetes' default rollout starts first (the old replicas, the new "
            "and it need 12 of its 8 GPUs): its rollout may be stuck waiting for that pod, which no re-apply of it "
            "would start, so one of its 2 replicas at a time is down while it rolls out; recorded healthy, but the "
            f"refresh found it not healthy in the cluster: its rollout has been stuck since {since}") in said, said
    assert "Plan: 0 to create, 1 to update, 0 to delete." in said, said
    assert state.read_bytes() == before

    r = placer(cluster, "apply", str(plan))
    assert r.returncode == 0, r.stdout + r.stderr
    running = kube.deployment("ml", "asr-dc-l4")
    assert running["spec"]["template"]["spec"]["containers"][0]["image"] == placed
    assert (running["status"]["updatedReplicas"], running["status"]["availableReplicas"]) == (2, 2)
    assert "healthy" not in _entry(cluster) and "unhealthy" not in _entry(cluster)
    r = placer(cluster, "refresh", str(fleet))
    assert r.returncode == 0 and "No drift" in r.stdout, r.stdout + r.stderr
    r = placer(cluster, "plan", str(fleet), "--refresh", "--detailed-exitcode")
    assert r.returncode == 0 and "No changes" in r.stdout, r.stdout + r.stderr


def test_replicas_a_dead_node_took_after_the_apply_are_found_by_refresh(cluster):
    """asr's 2 replicas of 4 GPUs, one on each of the pool's nodes, applied and healthy; then a node
    dies and its pod is pending. The controller keeps the Deployment's rollout finished (Progressing
    True, NewReplicaSetAvailable) and never times it out, so only its counts and its Available
    condition tell: refresh said "No drift". It now says so, the refreshed plan applies it again and
    waits for it (which fails while the node is gone, and the state keeps it marked not healthy), and
    once the node is back the next plan sees it through."""
    tmp, kube = cluster["tmp"], cluster["kube"]
    _gpu_nodes(kube)
    fleet = _full_pool_fleet(tmp, "v1", 2, 4)
    _plan_and_apply(cluster, fleet)
    kube.remove_node("dc-l4-1")
    available = kube.deployment("ml", "asr-dc-l4")["status"]["conditions"][0]
    assert (available["status"], available["reason"]) == ("False", "MinimumReplicasUnavailable")

    r = placer(cluster, "refresh", str(fleet))
    said = " ".join(r.stderr.split())
    assert r.returncode == 0 and "No drift" not in r.stdout, r.stdout + r.stderr
    assert ("drift: deployment/asr@dc-l4: the state records it healthy, but in the cluster 1 of its 2 replicas "
            f"available since {available['lastTransitionTime']}, though its rollout had finished (Progressing True, "
            "NewReplicaSetAvailable; Available False, MinimumReplicasUnavailable): pods lost with a node, pending for "
            "GPUs, or crashing?; see `kubectl --context onprem -n ml describe deployment asr-dc-l4`") in said, said
    assert "changed by" not in said  # placer alone set its spec

    plan = tmp / "plan.json"
    r = placer(cluster, "plan", str(fleet), "--refresh", "-o", str(plan), "--detailed-exitcode")
    said = " ".join(r.stdout.split())
    assert r.returncode == 2 and "~ deployment/asr@dc-l4 [phase 2] healthy false -> true #" in said, said
    assert "recorded healthy, but the refresh found it not healthy in the cluster: 1 of its 2 replicas" in said, said
    r = placer(cluster, "apply", str(plan))  # healthTimeoutSeconds 1: the pod has no node
    assert r.returncode == 1 and "not rolled out after 1s" in r.stderr, r.stdout + r.stderr
    assert _entry(cluster)["healthy"] is False and "unhealthy" not in _entry(cluster)
    r = placer(cluster, "plan", str(fleet), "--detailed-exitcode")  # from the state now, without --refresh
    said = " ".join(r.stdout.split())
    assert r.returncode == 2 and "~ deployment/asr@dc-l4 [phase 2] healthy false -> true #" in said, said
    assert "the last apply made it, but it did not become healthy: applied again, and waited healthy" in said, said

    kube.add_node("dc-l4-1", gpus=4)  # replaced: the pending pod runs
    _plan_and_apply(cluster, fleet)
    assert "healthy" not in _entry(cluster)
    r = placer(cluster, "plan", str(fleet), "--refresh", "--detailed-exitcode")
    assert r.returncode == 0 and "No changes" in r.stdout and "drift" not in r.stderr, r.stdout + r.stderr


# ---------------------------------------------------------------- an apply interrupted in a provider's wait


def _planned_gcp_growth(world):
    """The fleet applied, then planned with more demand for embed: gcp-a100 2 -> 3 nodes."""
    fleet = _fleet(world["tmp"])
    _plan_and_apply(world, fleet)
    text = (fleet / "fleet.yaml").read_text()
    (fleet / "fleet.yaml").write_text(text.replace("rate: 1100", "rate: 2200"))
    plan = world["tmp"] / "plan.json"
    assert placer(world, "plan", str(fleet), "-o", str(plan)).returncode == 0
    return fleet, plan


def test_a_resize_interrupted_in_its_operation_wait_is_recorded_as_made(world):
    """SIGTERM while the apply waited on GCP's resize operation: the resize was sent and GCP held the
    new size, but the apply said "interrupted after 0 of 4 change(s) ... The state records exactly what
    was done", with the pool at its old size (refresh: drift). What the provider holds once the wait
    ends is recorded, as a change in flight is."""
    fleet, plan = _planned_gcp_growth(world)
    gcp = world["gcp"]
    gcp.operations_run_for(10_000)  # the resize's operation runs on
    code, said = _apply_stopped_by_sigterm(world, plan, lambda: gcp.requests_to("/operations/"))  # in its wait
    assert code == 1 and "Traceback" not in said, said
    assert gcp.target_size("acme", "placer-a100", zone="europe-west4-a") == 3
    assert "apply interrupted (SIGTERM) after 1 of " in said, said
    assert json.loads((world["tmp"] / "state.json").read_text())["pools"]["gcp-a100"]["nodes"] == 3
    r = placer(world, "refresh", str(fleet))
    assert r.returncode == 0 and "No drift" in r.stdout, r.stdout + r.stderr


def test_a_resize_interrupted_while_its_operation_is_pending_is_recorded_as_asked_not_confirmed(world):
    """SIGTERM while GCP held the resize's operation PENDING, the group still at its old size: the apply
    recorded nothing of the resize it had sent (the state said 2 nodes), and once GCP carried it out the
    group ran 3 that no plan knew of. It is recorded at the 3 asked for, not confirmed (``"healthy":
    false``), the error says where to see the operation, and the next plan sends the size again and waits."""
    fleet, plan = _planned_gcp_growth(world)
    gcp = world["gcp"]
    gcp.operations_pending()
    code, said = _apply_stopped_by_sigterm(world, plan, lambda: gcp.requests_to("/operations/"))  # in its wait
    assert code == 1 and "Traceback" not in said, said
    assert gcp.target_size("acme", "placer-a100", zone="europe-west4-a") == 2  # still PENDING at GCP
    assert ("The interrupt stopped the apply's wait for what it had sent: pool/gcp-a100: gcp: "
            "resizing managed instance group placer-a100 (project acme, zone europe-west4-a) to 3 nodes: the resize "
            "was sent, and the apply stopped waiting for its operation") in said, said
    entry = json.loads((world["tmp"] / "state.json").read_text())["pools"]["gcp-a100"]
    assert (entry["nodes"], entry["healthy"]) == (3, False), entry

    gcp.finish_operations()
    _plan_and_apply(world, fleet)
    assert "healthy" not in json.loads((world["tmp"] / "state.json").read_text())["pools"]["gcp-a100"]
    r = placer(world, "plan", str(fleet), "--detailed-exitcode")
    assert r.returncode == 0 and "No changes" in r.stdout, r.stdout + r.stderr


def test_every_change_of_a_phase_that_failed_is_said(world):
    """A fleet whose AWS pool names another region and whose GCP pool another zone: both resizes of
    phase 1 fail, and the apply said only one of them (whichever ended first); the user mended it,
    planned and applied again, only to be told of the other."""
    fleet = _fleet(world["tmp"])
    text = (fleet / "fleet.yaml").read_text()
    (fleet / "fleet.yaml").write_text(text.replace(f"region: {REGION}", "region: us-east-1")
                                      .replace("zone: europe-west4-a", "zone: europe-west4-b"))
    plan = world["tmp"] / "plan.json"
    assert placer(world, "plan", str(fleet), "-o", str(plan)).returncode == 0
    r = placer(world, "apply", str(plan))
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "Traceback" not in said, said
    assert "apply failed after 0 of 5 change(s)" in said, said
    assert "Auto Scaling group 'e2e-h100' in us-east-1 not found" in said, said
    assert "zones/europe-west4-b/instanceGroupManagers/placer-a100' was not found" in said, said
    assert "1 other change failed too" in said, said
    assert not (world["tmp"] / "state.json").exists() or not json.loads(
        (world["tmp"] / "state.json").read_text()).get("pools")


def _apply_answered(cluster, plan, answer):
    """`placer apply PLAN`, the API server's answers made by ``answer`` (which calls the server's own
    handler, as it was before, where it passes a request on), then the server as it was."""
    kube = cluster["kube"]
    handle = kube.handle
    kube.handle = answer
    try:
        return placer(cluster, "apply", str(plan))
    finally:
        kube.handle = handle


def _next_plan_heals(cluster, fleet):
    """A deployment the apply recorded as not healthy: the next plan applies it again and waits for
    it, and once applied the state marks it healthy."""
    r = placer(cluster, "plan", str(fleet), "--detailed-exitcode")
    assert r.returncode == 2 and UNHEALTHY in " ".join(r.stdout.split()), r.stdout + r.stderr
    _plan_and_apply(cluster, fleet)
    assert "healthy" not in _entry(cluster)


def test_a_change_made_whose_verification_fails_is_recorded_as_made(cluster):
    """The server-side apply of asr's Deployment went through, then every read of it answered 503,
    so its verification failed: the state did not record it while the cluster ran it, the apply said
    the state recorded exactly what was done, and refresh called it a copy the state does not record.
    It is recorded as made, not healthy yet: the next plan applies it again and waits for it."""
    tmp, kube = cluster["tmp"], cluster["kube"]
    fleet = _one_model_fleet(tmp, "v1", 3)
    plan = tmp / "plan.json"
    assert placer(cluster, "plan", str(fleet), "-o", str(plan)).returncode == 0
    handle, made = kube.handle, []

    def reads_fail_once_made(method, path, *rest):
        if method == "PATCH" and path.endswith("/asr-dc-l4"):
            made.append(path)
        elif made and method == "GET" and path.endswith("/asr-dc-l4"):
            return 503, status_object(503, "ServiceUnavailable", "the server is currently unable to handle "
                                      "the request"), {}
        return handle(method, path, *rest)

    r = _apply_answered(cluster, plan, reads_fail_once_made)
    assert r.returncode == 1 and "HTTP 503" in r.stderr, r.stdout + r.stderr
    assert kube.deployment("ml", "asr-dc-l4")["spec"]["replicas"] == 3
    assert "records exactly what was done (deployment/asr@dc-l4," in " ".join(r.stderr.split()), r.stderr
    entry = _entry(cluster)
    assert (entry["replicas"], entry["healthy"]) == (3, False)

    _next_plan_heals(cluster, fleet)


def _asr_and_tts_fleet(tmp: Path) -> Path:
    """``_one_model_fleet``'s asr (3 replicas) and tts beside it (a training model of 2)."""
    fleet = _one_model_fleet(tmp, "v1", 3)
    docs = list(yaml.safe_load_all((fleet / "fleet.yaml").read_text()))
    docs.insert(-1, training("tts", 2, gpus=1, mem=16))
    (fleet / "fleet.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return fleet


def _asr_made_tts_refused(cluster):
    """asr (3 replicas) and tts (a training model of 2) planned together, and applied with every write
    of tts refused (HTTP 403): the apply stops after asr is made. The fleet, the plan file and the apply's run."""
    tmp = cluster["tmp"]
    fleet = _asr_and_tts_fleet(tmp)
    plan = tmp / "plan.json"
    assert placer(cluster, "plan", str(fleet), "-o", str(plan)).returncode == 0
    cluster["kube"].fail_next(100, 403, path_contains="/tts-dc-l4")
    return fleet, plan, placer(cluster, "apply", str(plan))


def test_a_deployment_made_before_another_failed_is_not_said_to_have_failed_its_health_wait(cluster):
    """asr and tts are created together; tts is refused (403), so the apply stops before any health
    wait. asr, made and recorded as not healthy yet, was said to be one "whose health wait did not
    pass", which sent the operator to look for what held pods that had never been waited for."""
    kube = cluster["kube"]
    _, _, r = _asr_made_tts_refused(cluster)
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "HTTP 403" in said, said
    assert kube.deployment("ml", "asr-dc-l4") is not None and _entry(cluster)["healthy"] is False
    assert "whose health wait did not pass" not in said, said
    assert ("(deployment/asr@dc-l4, which the apply stopped before waiting for its health, as made but not "
            "healthy: the next plan applies it again and waits for it)") in said, said


def test_a_rollout_stuck_at_once_stops_the_health_wait_of_another(cluster):
    """asr and tts are created together; tts's rollout is stuck at once (ProgressDeadlineExceeded: an
    image its nodes may not pull) while asr's pods never become ready: the apply said tts's failure
    only once asr's wait had timed out (120 s here, 600 s by default). The first failure stops the
    other waits: the apply fails in seconds, saying tts is stuck and that it stopped asr's wait; both
    are recorded as made, not healthy, and the next plan applies them again and waits for them."""
    tmp, kube = cluster["tmp"], cluster["kube"]
    fleet = _asr_and_tts_fleet(tmp)
    path = fleet / "fleet.yaml"
    path.write_text(path.read_text().replace("healthTimeoutSeconds: 1", "healthTimeoutSeconds: 120"))
    plan = tmp / "plan.json"
    assert placer(cluster, "plan", str(fleet), "-o", str(plan)).returncode == 0
    kube.ready_after_polls = None  # neither's pods become ready
    handle = kube.handle
    stuck = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": 'ReplicaSet "tts-dc-l4-6c9f" has timed out progressing.',
             "lastUpdateTime": "2026-11-28T07:00:00Z", "lastTransitionTime": "2026-11-28T07:00:00Z"}

    def tts_stuck(method, path, *rest):
        code, body, headers = handle(method, path, *rest)
        if method == "GET" and path.endswith("/tts-dc-l4") and code == 200:
            conditions = [c for c in body["status"]["conditions"] if c["type"] != "Progressing"]
            body = {**body, "status": {**body["status"], "conditions": [*conditions, stuck]}}
        return code, body, headers

    started = time.monotonic()
    r = _apply_answered(cluster, plan, tts_stuck)
    elapsed = time.monotonic() - started
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "Traceback" not in said, said
    assert elapsed < 30, f"waited {elapsed:.1f}s: tts's failure waited for asr's wait"
    assert ("apply failed after 2 of 2 change(s): deployment/tts@dc-l4: the rollout of deployment ml/tts-dc-l4 in "
            "context onprem has been stuck since 2026-11-28T07:00:00Z (Progressing False, "
            "ProgressDeadlineExceeded") in said, said
    assert "other change" not in said and "not rolled out after" not in said, said
    assert ("(deployment/tts@dc-l4, whose health wait did not pass; deployment/asr@dc-l4, whose health wait the "
            "apply stopped when another wait failed, as made but not healthy: the next plan applies them again and "
            "waits for them)") in said, said
    deployments = json.loads((tmp / "state.json").read_text())["deployments"]
    assert {k: (v["replicas"], v["healthy"]) for k, v in deployments.items()} == {
        "asr@dc-l4": (3, False), "tts@dc-l4": (2, False)}, deployments

    for name in ("asr-dc-l4", "tts-dc-l4"):  # what held their pods is fixed: the next plan waits for them again
        kube.roll_out("ml", name)
    _plan_and_apply(cluster, fleet)
    deployments = json.loads((tmp / "state.json").read_text())["deployments"]
    assert not any("healthy" in v for v in deployments.values()), deployments


# ---------------------------------------------------------------- a change made whose answer was lost


def test_a_change_the_api_server_made_whose_answer_was_lost_is_recorded_as_made(cluster):
    """A proxy in front of the API server answered asr's server-side apply 504 after the server had
    made it, every try: the apply said the state recorded exactly what was done, and the state had no
    asr while the cluster ran it. What the provider holds after a failed change is looked at: asr is
    recorded as made (not healthy yet), said so, and the next plan applies it again and waits for it."""
    tmp, kube = cluster["tmp"], cluster["kube"]
    fleet = _one_model_fleet(tmp, "v1", 3)
    plan = tmp / "plan.json"
    assert placer(cluster, "plan", str(fleet), "-o", str(plan)).returncode == 0
    handle = kube.handle

    def made_then_lost(method, path, *rest):
        answer = handle(method, path, *rest)
        if method == "PATCH" and path.endswith("/asr-dc-l4"):
            return 504, status_object(504, "Timeout", "the server was unable to return a response in the time "
                                      "allotted, but may still be processing the request"), {}
        return answer

    r = _apply_answered(cluster, plan, made_then_lost)
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "HTTP 504" in said and "tried 6 times" in said, said
    assert kube.deployment("ml", "asr-dc-l4")["spec"]["replicas"] == 3
    assert "apply failed after 1 of 1 change(s)" in said, said
    assert ("Even so, the provider holds deployment/asr@dc-l4 as planned (it took the change; its answer or the "
            "wait for it failed): the state records it as made.") in said, said
    entry = _entry(cluster)
    assert (entry["replicas"], entry["healthy"]) == (3, False)

    _next_plan_heals(cluster, fleet)


def test_a_resize_whose_operation_wait_failed_is_recorded_where_the_group_holds_it(world):
    """GCP took the resize, and every wait on its operation answered 503: the apply said the state
    recorded exactly what was done, without gcp-a100, whose group had been resized (the next plan
    sized it again, and refresh said nothing of it). It is recorded at the size the group holds."""
    fleet = _fleet(world["tmp"])
    plan = world["tmp"] / "plan.json"
    assert placer(world, "plan", str(fleet), "-o", str(plan)).returncode == 0
    gcp = world["gcp"]
    gcp.operations_run_for(5)
    gcp.fail_next(100, 503, "/operations/")
    r = placer(world, "apply", str(plan))
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "Traceback" not in said and "503" in said, said
    assert gcp.target_size("acme", "placer-a100", zone="europe-west4-a") == 2
    assert "Even so, the provider holds pool/gcp-a100 as planned" in said, said
    pools = json.loads((world["tmp"] / "state.json").read_text())["pools"]
    assert {name: entry["nodes"] for name, entry in pools.items()} == {"aws-h100": 2, "gcp-a100": 2}

    gcp.state.faults.clear()
    gcp.operations_run_for(0)
    r = placer(world, "plan", str(fleet), "-o", str(plan))
    assert r.returncode == 0, r.stderr
    # not sized again; waited for, as the apply stopped before it waited for their nodes
    pools = {c["address"]: (c["before"], c["after"]) for c in json.loads(plan.read_text())["changes"]
             if c["address"].startswith("pool/")}
    assert pools == {f"pool/{name}": ({"nodes": 2, "healthy": False}, {"nodes": 2, "healthy": True})
                     for name in ("aws-h100", "gcp-a100")}, pools
    r = placer(world, "apply", str(plan))
    assert r.returncode == 0, r.stdout + r.stderr
    r = placer(world, "plan", str(fleet), "--detailed-exitcode")
    assert r.returncode == 0 and "No changes" in r.stdout, r.stdout + r.stderr


STOCKOUT = ("The zone 'projects/acme/zones/europe-west4-a' does not have enough resources available to fulfill the "
            "request.  Try a different zone, or try again later.")


def _stockout(world, fleet, plan):
    """`placer apply PLAN` while europe-west4-a has no A100s: GCP ends the resize's operation with
    ZONE_RESOURCE_POOL_EXHAUSTED and HTTP 503. What it said (whitespace runs as one space), once
    checked that it failed at once, after one resize, saying where, what and what to do."""
    gcp = world["gcp"]
    resizes = len(gcp.requests_to("/instanceGroupManagers/placer-a100/resize", "POST"))
    gcp.operations_run_for(1)
    gcp.operations_fail("ZONE_RESOURCE_POOL_EXHAUSTED", STOCKOUT, http_status=503)
    env = {k: v for k, v in world["env"].items() if k != "PLACER_RETRY_BASE_SECONDS"}  # the CLI's own backoff
    r = placer({**world, "env": env}, "apply", str(plan))
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "Traceback" not in said, said
    assert len(gcp.requests_to("/instanceGroupManagers/placer-a100/resize", "POST")) == resizes + 1, "not retried"
    assert "retrying" not in said and "tried 6 times" not in said, said
    assert ("GCP has no A100-80GB nodes (8 GPUs each) to give in zone europe-west4-a now (a stockout), so pool "
            "gcp-a100 cannot grow; not retried") in said, said
    assert "lower pool gcp-a100's nodes.max" in said and "a group in another zone" in said, said
    gcp.state.op_error = None
    return said


def _embed_anywhere(fleet, gcp_max):
    """embed runs on H100s as on A100s; gcp-a100's A100s are the cheaper, up to ``gcp_max`` nodes."""
    path = fleet / "fleet.yaml"
    docs = list(yaml.safe_load_all(path.read_text()))
    for d in docs:
        if d["metadata"]["name"] == "embed":
            d["spec"]["throughput"] = {"A100-80GB": 100, "H100-80GB": 100}
        if d["metadata"]["name"] == "gcp-a100":
            d["spec"]["usdPerGpuHour"], d["spec"]["nodes"]["max"] = 1.0, gcp_max
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def test_a_stockout_stops_a_move_before_anything_of_it_is_made(world):
    """embed moves from aws-h100 to gcp-a100, whose group cannot grow (a stockout): the apply stops at
    once, in phase 1, and makes nothing of the move: embed keeps its 11 replicas on aws-h100 and
    aws-h100 its 3 nodes, which the state still records. The advice holds: with gcp-a100's nodes.max
    lowered to the 0 it has, the plan has no changes."""
    fleet = _fleet(world["tmp"])
    _embed_anywhere(fleet, gcp_max=0)
    plan = _plan_and_apply(world, fleet)
    state = world["tmp"] / "state.json"
    before = json.loads(state.read_text())
    _embed_anywhere(fleet, gcp_max=4)
    r = placer(world, "plan", str(fleet), "-o", str(plan))
    assert r.returncode == 0, r.stderr
    changes = {c["address"]: c["phase"] for c in json.loads(plan.read_text())["changes"]}
    assert changes == {"pool/gcp-a100": 1, "deployment/embed@gcp-a100": 2, "deployment/embed@aws-h100": 3,
                       "pool/aws-h100": 4}, changes

    said = _stockout(world, fleet, plan)
    assert "to the 0 it has" in said and "apply failed after 0 of 4 change(s)" in said, said
    kube = world["kube"]
    assert kube.deployment("ml", "embed-aws-h100")["spec"]["replicas"] == 11
    assert kube.deployment("ml", "embed-gcp-a100") is None
    group = world["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=["e2e-h100"])
    assert group["AutoScalingGroups"][0]["DesiredCapacity"] == 3
    after = json.loads(state.read_text())
    assert (after["deployments"], after["pools"], after["serial"]) == (
        before["deployments"], before["pools"], before["serial"])

    _embed_anywhere(fleet, gcp_max=0)
    r = placer(world, "plan", str(fleet), "--detailed-exitcode")
    assert r.returncode == 0 and "No changes" in r.stdout, r.stdout + r.stderr


def test_a_group_gcp_cannot_create_instances_for_stops_a_move_before_its_replicas_go(world):
    """The resize is taken (its operation ends well) and GCP then cannot create the instances, which
    only the group's listErrors says: the apply put embed's replicas on gcp-a100 and scaled them down on
    aws-h100 once the fake API server had rolled them out (a real cluster: 600 s of pods pending, then
    "pods pending?"). Phase 1 waits for gcp-a100's node and stops at the stockout: gcp-a100 is recorded
    at the size it keeps trying for, embed keeps its 11 replicas on aws-h100, nothing is made on gcp-a100."""
    fleet = _fleet(world["tmp"])
    _embed_anywhere(fleet, gcp_max=0)
    plan = _plan_and_apply(world, fleet)
    _embed_anywhere(fleet, gcp_max=4)
    assert placer(world, "plan", str(fleet), "-o", str(plan)).returncode == 0
    gcp = world["gcp"]
    gcp.instances_fail("ZONE_RESOURCE_POOL_EXHAUSTED", STOCKOUT)
    started = time.monotonic()
    r = placer(world, "apply", str(plan))
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "Traceback" not in said and time.monotonic() - started < 60, said
    assert ("pool/gcp-a100: gcp: managed instance group placer-a100 (project acme, zone europe-west4-a) cannot create "
            "the instances of its 1 nodes: ZONE_RESOURCE_POOL_EXHAUSTED") in said, said
    assert "GCP has no A100-80GB nodes (8 GPUs each) to give in zone europe-west4-a now (a stockout)" in said, said
    assert "apply failed after 1 of 4 change(s)" in said, said
    kube = world["kube"]
    assert kube.deployment("ml", "embed-aws-h100")["spec"]["replicas"] == 11
    assert kube.deployment("ml", "embed-gcp-a100") is None
    state = json.loads((world["tmp"] / "state.json").read_text())
    assert state["deployments"]["embed@aws-h100"]["replicas"] == 11 and "embed@gcp-a100" not in state["deployments"]
    assert {k: v["nodes"] for k, v in state["pools"].items()} == {"aws-h100": 3, "gcp-a100": 1}


def test_a_stockout_after_another_pool_grew_records_that_pool_alone(world):
    """The first apply grows aws-h100 and meets a stockout at gcp-a100: aws-h100's 2 nodes are recorded,
    gcp-a100 and every deployment are not, and the next plan, the zone's capacity back, starts from that."""
    fleet = _fleet(world["tmp"])
    plan = world["tmp"] / "plan.json"
    assert placer(world, "plan", str(fleet), "-o", str(plan)).returncode == 0
    said = _stockout(world, fleet, plan)
    assert "apply failed after 1 of 5 change(s)" in said and "records exactly what was done" in said, said
    state = json.loads((world["tmp"] / "state.json").read_text())
    assert {k: v["nodes"] for k, v in state["pools"].items()} == {"aws-h100": 2} and state["deployments"] == {}
    assert world["kube"].deployment("ml", "embed-gcp-a100") is None
    assert world["gcp"].target_size("acme", "placer-a100", zone="europe-west4-a") == 0

    r = placer(world, "plan", str(fleet), "-o", str(plan))
    assert r.returncode == 0, r.stderr
    # not sized again; waited for, as the apply stopped before it waited for its nodes
    again = [(c["before"], c["after"]) for c in json.loads(plan.read_text())["changes"] if c["address"] == "pool/aws-h100"]
    assert again == [({"nodes": 2, "healthy": False}, {"nodes": 2, "healthy": True})], again
    r = placer(world, "apply", str(plan))
    assert r.returncode == 0, r.stdout + r.stderr
    assert world["gcp"].target_size("acme", "placer-a100", zone="europe-west4-a") == 2


def test_an_aws_group_ec2_cannot_launch_for_stops_the_apply_before_anything_moves_onto_it(world):
    """EC2 has no p4d.24xlarge to give (InsufficientInstanceCapacity): the group takes its new desired
    capacity, and its scaling activities say the launches failed, which no API call does. The apply took
    the size as made and put chat-70b's replicas on the group, whose rollout waited the whole health
    timeout (600 s) for pods no node came up for, then said "pods pending?"; here, with a fake API
    server that runs what it is given, it said "Apply complete". Phase 1 now waits for the nodes a pool
    grew by, and stops at the refused launch: aws-h100's and gcp-a100's sizes are recorded (the group
    goes on trying at desired 2), no deployment was made, and the message says capacity."""
    fleet = _fleet(world["tmp"])
    plan = world["tmp"] / "plan.json"
    assert placer(world, "plan", str(fleet), "-o", str(plan)).returncode == 0
    said = ("We currently do not have sufficient p4d.24xlarge capacity in the Availability Zone you requested "
            f"({REGION}a). Our system will be working on provisioning additional capacity. Launching EC2 instance "
            "failed.")
    with FaultProxy(world["env"]["AWS_ENDPOINT_URL"]) as proxy:
        proxy.rewrite("DescribeAutoScalingGroups", instances_pending)
        proxy.answer("DescribeScalingActivities", scaling_activity("e2e-h100", "Failed", said))
        started = time.monotonic()
        r = placer({**world, "env": {**world["env"], "AWS_ENDPOINT_URL": proxy.endpoint}}, "apply", str(plan))
    message = " ".join(r.stderr.split())
    assert r.returncode == 1 and "Traceback" not in message, message
    assert time.monotonic() - started < 60, "not waited out"
    assert ("pool/aws-h100: Auto Scaling group 'e2e-h100' in eu-west-1 cannot launch its H100-80GB instances "
            "(8 GPUs each): EC2 has no capacity for them where the group may launch (a stockout: scaling activity "
            "Failed: We currently do not have sufficient p4d.24xlarge capacity") in message, message
    assert "0 of 2 instances InService" in message and "lower pool aws-h100's nodes.max" in message, message
    assert "apply failed after 2 of 5 change(s)" in message, message
    state = json.loads((world["tmp"] / "state.json").read_text())
    assert {k: v["nodes"] for k, v in state["pools"].items()} == {"aws-h100": 2, "gcp-a100": 2}
    assert state["deployments"] == {}
    assert world["kube"].deployment("ml", "chat-70b-aws-h100") is None


def test_a_refused_launch_stops_the_wait_for_another_pool_at_once(world):
    """EC2 refuses aws-h100's launch at once while gcp-a100's nodes never come up: the apply said the
    refusal only once gcp-a100's wait had timed out (61.2 s with a 60 s timeout; 600 s by default). The
    first failure stops the other waits: the apply fails in seconds, not at the 120 s timeout, saying the
    refusal, and that it stopped gcp-a100's wait; both pools are recorded at their sizes, not healthy."""
    fleet = _fleet(world["tmp"])
    path = fleet / "fleet.yaml"
    path.write_text(path.read_text().replace("mode: live", "mode: live\n    healthTimeoutSeconds: 120"))
    plan = world["tmp"] / "plan.json"
    assert placer(world, "plan", str(fleet), "-o", str(plan)).returncode == 0
    world["gcp"].settle_after(10**9)  # gcp-a100's instances are created for ever
    said = "We currently do not have sufficient p4d.24xlarge capacity in the Availability Zone you requested."
    with FaultProxy(world["env"]["AWS_ENDPOINT_URL"]) as proxy:
        proxy.rewrite("DescribeAutoScalingGroups", instances_pending)
        proxy.answer("DescribeScalingActivities", scaling_activity("e2e-h100", "Failed", said))
        started = time.monotonic()
        r = placer({**world, "env": {**world["env"], "AWS_ENDPOINT_URL": proxy.endpoint}}, "apply", str(plan))
        elapsed = time.monotonic() - started
    message = " ".join(r.stderr.split())
    assert r.returncode == 1 and "Traceback" not in message, message
    assert elapsed < 30, f"waited {elapsed:.1f}s: the refusal waited for gcp-a100's wait"
    assert "apply failed after 2 of 5 change(s): pool/aws-h100: Auto Scaling group 'e2e-h100'" in message, message
    assert "cannot launch its H100-80GB instances" in message and "other change" not in message, message
    assert ("(pool/aws-h100, whose nodes the wait did not see come up; pool/gcp-a100, whose wait for its nodes "
            "the apply stopped when another wait failed, as made but not healthy: the next plan applies them "
            "again and waits for them)") in message, message
    state = json.loads((world["tmp"] / "state.json").read_text())
    assert {k: (v["nodes"], v["healthy"]) for k, v in state["pools"].items()} == {
        "aws-h100": (2, False), "gcp-a100": (2, False)}, state["pools"]
    assert state["deployments"] == {} and world["kube"].deployment("ml", "chat-70b-aws-h100") is None


def test_a_resize_refused_at_once_stops_the_wait_for_another_pools_resize_operation(world):
    """EC2 refuses aws-h100's resize at once (ValidationError) while GCP holds gcp-a100's resize operation
    PENDING, each wait on it held as GCP holds one: the apply said the refusal only once that operation
    was done or its wait timed out (600 s). The first failure stops the operation's wait: the apply fails
    in seconds, saying the refusal alone as a failure, that gcp-a100's resize was sent and its operation
    left running at GCP, and how to check it; the state records gcp-a100 at the size asked for, not
    confirmed (``"healthy": false``), and once GCP has carried it out the next plan converges."""
    gcp = world["gcp"]
    fleet = _fleet(world["tmp"])
    path = fleet / "fleet.yaml"
    path.write_text(path.read_text().replace("mode: live", "mode: live\n    healthTimeoutSeconds: 120"))
    plan = world["tmp"] / "plan.json"
    assert placer(world, "plan", str(fleet), "-o", str(plan)).returncode == 0
    gcp.operations_pending()
    gcp.delay_next(1000, 50.0, "/wait")  # GCP's wait holds up to 2 minutes while the operation is not done
    refused = "New SetDesiredCapacity value 2 is above max value 1 for the AutoScalingGroup."
    with FaultProxy(world["env"]["AWS_ENDPOINT_URL"]) as proxy:
        proxy.answer("SetDesiredCapacity", query_error("ValidationError", refused))
        started = time.monotonic()
        r = placer({**world, "env": {**world["env"], "AWS_ENDPOINT_URL": proxy.endpoint}}, "apply", str(plan))
        elapsed = time.monotonic() - started
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "Traceback" not in said, said
    assert elapsed < 30, f"waited {elapsed:.1f}s: the refusal waited for gcp-a100's resize operation"
    assert gcp.requests_to("/instanceGroupManagers/placer-a100/resize", "POST"), "the resize was sent"
    assert gcp.target_size("acme", "placer-a100", zone="europe-west4-a") == 0  # still PENDING at GCP
    assert "apply failed after 1 of 5 change(s): pool/aws-h100: " in said and refused.rstrip(".") in said, said
    assert "other change" not in said and "Even so" not in said, said
    assert ("That failure stopped the apply's wait for what it had sent: pool/gcp-a100: gcp: "
            "resizing managed instance group placer-a100 (project acme, zone europe-west4-a) to 2 nodes: the resize "
            "was sent, and the apply stopped waiting for its operation operation-0001-resize (still PENDING): GCP may "
            "still carry it out, or fail it; `gcloud compute operations describe operation-0001-resize --zone "
            "europe-west4-a --project acme` says whether it is DONE") in said, said
    assert ("records exactly what was done (pool/gcp-a100, at the size its resize asked for, which was sent and not "
            "seen done, as made but not healthy: the next plan applies it again and waits for it)") in said, said
    state = json.loads((world["tmp"] / "state.json").read_text())
    assert {k: (v["nodes"], v.get("healthy")) for k, v in state["pools"].items()} == {
        "gcp-a100": (2, False)}, state["pools"]
    assert state["deployments"] == {}

    gcp.finish_operations()  # GCP carries the resize out; EC2 takes aws-h100's again
    gcp.state.faults.clear()
    r = placer(world, "plan", str(fleet), "-o", str(plan))
    assert r.returncode == 0, r.stderr
    assert ("~ pool/gcp-a100 [phase 1] healthy false -> true # the last apply grew it, but did not see its nodes "
            "come up") in " ".join(r.stdout.split()), r.stdout
    r = placer(world, "apply", str(plan))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "waiting for pool/gcp-a100's 2 nodes to come up" in r.stderr, r.stderr
    assert len(gcp.requests_to("/instanceGroupManagers/placer-a100/resize", "POST")) == 2  # the same size, again
    pools = json.loads((world["tmp"] / "state.json").read_text())["pools"]
    assert {k: (v["nodes"], v.get("healthy")) for k, v in pools.items()} == {
        "aws-h100": (2, None), "gcp-a100": (2, None)}, pools
    r = placer(world, "plan", str(fleet), "--detailed-exitcode")
    assert r.returncode == 0 and "No changes" in r.stdout, r.stdout + r.stderr


def test_a_pool_whose_nodes_did_not_come_up_is_waited_for_again_by_the_next_plan(world):
    """After a refused launch the group keeps its new desired size (it goes on trying) and the state
    recorded that size as it was: the next plan had no change at aws-h100, nothing waited for its nodes
    again, and chat-70b's replicas were put on it to wait the whole health timeout (600 s) for pods no
    node came up for. The state now marks the pool not healthy, as it marks a deployment whose rollout
    did not pass; the next plan waits for its nodes again in phase 1, stops at the same refusal before
    anything moves onto it, and once EC2 has capacity again its apply waits, clears the mark and goes on."""
    fleet = _fleet(world["tmp"])
    plan = world["tmp"] / "plan.json"
    assert placer(world, "plan", str(fleet), "-o", str(plan)).returncode == 0
    said = "We currently do not have sufficient p4d.24xlarge capacity in the Availability Zone you requested."
    state = world["tmp"] / "state.json"
    with FaultProxy(world["env"]["AWS_ENDPOINT_URL"]) as proxy:
        proxy.rewrite("DescribeAutoScalingGroups", instances_pending)
        proxy.answer("DescribeScalingActivities", scaling_activity("e2e-h100", "Failed", said))
        stocked_out = {**world, "env": {**world["env"], "AWS_ENDPOINT_URL": proxy.endpoint}}
        r = placer(stocked_out, "apply", str(plan))
        message = " ".join(r.stderr.split())
        assert r.returncode == 1 and "cannot launch its H100-80GB instances" in message, message
        assert ("records exactly what was done (pool/aws-h100, whose nodes the wait did not see come up, as made but "
                "not healthy: the next plan applies it again and waits for it)") in message, message
        pools = json.loads(state.read_text())["pools"]
        assert pools["aws-h100"]["nodes"] == 2 and pools["aws-h100"]["healthy"] is False, pools
        assert "healthy" not in pools["gcp-a100"], pools  # its nodes came up

        r = placer(stocked_out, "plan", str(fleet), "-o", str(plan))
        assert r.returncode == 0, r.stderr
        assert ("~ pool/aws-h100 [phase 1] healthy false -> true # the last apply grew it, but did not see its nodes "
                "come up") in " ".join(r.stdout.split()), r.stdout
        r = placer(stocked_out, "refresh", str(fleet))
        assert ("pool/aws-h100: the last apply grew it to 2 nodes, but did not see them come up; the next plan waits "
                "for them again") in " ".join(r.stderr.split()), r.stderr
        started = time.monotonic()
        r = placer(stocked_out, "apply", str(plan))  # still no capacity: it stops before chat-70b is made
        message = " ".join(r.stderr.split())
        assert r.returncode == 1 and "cannot launch its H100-80GB instances" in message, message
        assert "lower pool aws-h100's nodes.max to the nodes it runs" in message, message
        assert time.monotonic() - started < 60 and world["kube"].deployment("ml", "chat-70b-aws-h100") is None
        assert json.loads(state.read_text())["pools"]["aws-h100"]["healthy"] is False

    # EC2 has capacity again: the plan waits for the nodes, then puts the replicas on them
    r = placer(world, "plan", str(fleet), "-o", str(plan))
    assert r.returncode == 0 and "pool/aws-h100 [phase 1] healthy false -> true" in " ".join(r.stdout.split())
    r = placer(world, "apply", str(plan))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "waiting for pool/aws-h100's 2 nodes to come up" in r.stderr, r.stderr
    assert "healthy" not in json.loads(state.read_text())["pools"]["aws-h100"]
    assert world["kube"].deployment("ml", "chat-70b-aws-h100")["spec"]["replicas"] == 3
    r = placer(world, "plan", str(fleet), "--detailed-exitcode")
    assert r.returncode == 0 and "No changes" in r.stdout, r.stdout + r.stderr


def test_a_wait_for_nodes_goes_on_past_reads_gcp_throttles_and_times_out_at_its_timeout(world):
    """Phase 1's wait for gcp-a100's nodes, GCP throttling one read in three (429): each throttled read
    ended the wait, and the apply's 6 tries of it, counted over the whole wait, were spent in 18 s
    ("tried 6 times over 18s and it still failed: wait until the provider answers again") though the
    group came up at its next reads. It goes on, as a rollout's wait does. A group that never comes up
    timed out a poll interval early, and the apply tried the wait again in what was left, its last
    try saying "not stable after 0.9s ... tried 6 times over 59s"; it says the timeout it was given."""
    fleet = _fleet(world["tmp"])
    plan = world["tmp"] / "plan.json"
    assert placer(world, "plan", str(fleet), "-o", str(plan)).returncode == 0
    gcp, group = world["gcp"], "/instanceGroupManagers/placer-a100"
    gcp.settle_after(8)
    stop = threading.Event()

    def throttle() -> None:  # a 429 after each two reads that passed
        seen = 0
        while not stop.is_set():
            if len(gcp.requests_to(group, "GET")) >= seen + 2:
                gcp.fail_next(1, 429, group)
                seen = len(gcp.requests_to(group, "GET")) + 1
            time.sleep(0.01)

    thread = threading.Thread(target=throttle, daemon=True)
    thread.start()
    try:
        env = {k: v for k, v in world["env"].items() if k != "PLACER_RETRY_BASE_SECONDS"}  # the CLI's own backoff
        r = placer({**world, "env": env}, "apply", str(plan))
    finally:
        stop.set()
        thread.join()
    assert r.returncode == 0, r.stdout + r.stderr
    assert len([q for q in gcp.requests_to(group, "GET") if not q.path.endswith("/listErrors")]) >= 10

    path = fleet / "fleet.yaml"
    path.write_text(path.read_text().replace("mode: live", "mode: live\n    healthTimeoutSeconds: 8")
                    .replace("rate: 1100", "rate: 2200"))  # embed: gcp-a100 2 -> 3 nodes
    assert placer(world, "plan", str(fleet), "-o", str(plan)).returncode == 0
    gcp.settle_after(10**6)  # its new node never comes up
    r = placer(world, "apply", str(plan))
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "Traceback" not in said, said
    assert ("pool/gcp-a100: gcp: managed instance group placer-a100 (project acme, zone europe-west4-a) not stable "
            "after 8s (creating 3)") in said, said
    assert "tried 6 times" not in said and "retrying" not in said, said


def test_a_deployment_scaled_by_someone_else_while_placer_waits_fails_its_wait(cluster):
    """`kubectl scale --replicas=0` (or an autoscaler) while the apply waited for asr's rollout of 3:
    the wait passed on the 0 replicas rolled out, the apply said "Apply complete" and the state 3
    replicas healthy while nothing ran. The wait fails and says who may have scaled it; the state
    marks asr not healthy, so the next plan sets it back to 3 and waits for it."""
    tmp, kube = cluster["tmp"], cluster["kube"]
    fleet = _one_model_fleet(tmp, "v1", 3)
    plan = tmp / "plan.json"
    assert placer(cluster, "plan", str(fleet), "-o", str(plan)).returncode == 0
    handle, reads = kube.handle, []

    def scaled_in_the_wait(method, path, *rest):
        if method == "GET" and path.endswith("/asr-dc-l4") and kube.deployment("ml", "asr-dc-l4") is not None:
            reads.append(path)
            if len(reads) == 2:  # the first read after the apply's read-back: the health wait's
                handle("PATCH", path, {}, {"content-type": "application/merge-patch+json",
                                           "user-agent": "kubectl/v1.33.0"}, b'{"spec": {"replicas": 0}}')
        return handle(method, path, *rest)

    r = _apply_answered(cluster, plan, scaled_in_the_wait)
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "Apply complete" not in r.stdout, r.stdout + said
    assert ("deployment/asr@dc-l4: deployment ml/asr-dc-l4 in context onprem was scaled to 0 replica(s) by someone "
            "else while placer waited for its rollout of 3 (a HorizontalPodAutoscaler, `kubectl scale`? see "
            "`kubectl --context onprem -n ml get hpa`") in said, said
    assert kube.deployment("ml", "asr-dc-l4")["spec"]["replicas"] == 0
    assert (_entry(cluster)["replicas"], _entry(cluster)["healthy"]) == (3, False)

    _next_plan_heals(cluster, fleet)
    assert kube.deployment("ml", "asr-dc-l4")["spec"]["replicas"] == 3


def test_a_namespace_that_does_not_exist_is_said_with_the_command_for_its_cluster(cluster):
    """The pool's namespace does not exist in its context's cluster: the error said to run `kubectl
    create namespace ml`, which makes it in the kubeconfig's current context, another cluster where
    the pool names another context. It names the context, and nothing is recorded."""
    tmp, kube = cluster["tmp"], cluster["kube"]
    fleet = _one_model_fleet(tmp, "v1", 3)
    env = {**cluster["env"], "KUBECONFIG": str(write_kubeconfig(
        tmp / "kubeconfig", {"laptop": "http://127.0.0.1:9", "onprem": kube.url}, current="laptop"))}
    local = {**cluster, "env": env}
    plan = tmp / "plan.json"
    assert placer(local, "plan", str(fleet), "-o", str(plan)).returncode == 0
    kube.namespaces = {"default"}
    r = placer(local, "apply", str(plan))
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "retrying" not in said, said
    assert ('deployment/asr@dc-l4: server-side apply of deployment ml/asr-dc-l4 in context onprem failed: HTTP 404 '
            'NotFound: namespaces "ml" not found; does namespace \'ml\' exist? (`kubectl --context onprem create '
            "namespace ml`)") in said, said
    assert "apply failed after 0 of 1 change(s)" in said and kube.deployments() == [], said

    kube.namespaces = {"default", "ml"}  # the command run
    _plan_and_apply(local, fleet)
    assert kube.deployment("ml", "asr-dc-l4")["spec"]["replicas"] == 3


def test_a_plan_applied_again_after_its_apply_stopped_part_way_says_so(cluster):
    """A CI job run again after its apply failed half-way (tts refused, asr made): the refusal of the
    same plan said "something was applied since", as of another apply. It says the plan was applied
    in part, how far, and that nothing was applied now; the re-plan holds what remains."""
    tmp, kube = cluster["tmp"], cluster["kube"]
    fleet, plan, r = _asr_made_tts_refused(cluster)
    assert r.returncode == 1 and "apply failed after 1 of 2 change(s)" in " ".join(r.stderr.split()), r.stderr
    kube._faults.clear()
    state = (tmp / "state.json").read_bytes()
    writes = len(kube.writes())

    r = placer(cluster, "apply", str(plan))
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "something was applied since" not in said, said
    assert re.search(r"stale plan: it was applied in part already: its apply \(started at \S+Z\) stopped after 1 "
                     r"of its 2 change\(s\), which the state \(serial 1\) records; nothing was applied now\. Run "
                     r"`placer plan` again: the new plan starts from what that apply did and holds what remains; "
                     r"apply it\.", said), said
    assert (tmp / "state.json").read_bytes() == state and len(kube.writes()) == writes

    r = placer(cluster, "plan", str(fleet), "-o", str(plan))
    assert r.returncode == 0 and "+ deployment/tts@dc-l4" in r.stdout, r.stdout + r.stderr
    assert placer(cluster, "apply", str(plan)).returncode == 0
    r = placer(cluster, "plan", str(fleet), "--detailed-exitcode")
    assert r.returncode == 0 and "No changes" in r.stdout, r.stdout + r.stderr


def test_a_health_wait_an_interrupt_ended_is_not_said_to_have_failed(cluster):
    """SIGTERM while the apply waited for asr's rollout: the error said asr was one "whose health wait
    did not pass", and the operator looked for what held pods the apply had not given the time. It
    says the interrupt ended its wait; asr is recorded made, not healthy, as before."""
    tmp, kube = cluster["tmp"], cluster["kube"]
    fleet = _one_model_fleet(tmp, "v1", 3)
    text = (fleet / "fleet.yaml").read_text()
    (fleet / "fleet.yaml").write_text(text.replace("healthTimeoutSeconds: 1", "healthTimeoutSeconds: 120"))
    plan = tmp / "plan.json"
    assert placer(cluster, "plan", str(fleet), "-o", str(plan)).returncode == 0
    kube.ready_after_polls = None  # its pods never become ready: the wait runs until the signal
    reads = lambda: [r for r in kube.requests if r.method == "GET" and r.path.endswith("/asr-dc-l4")]  # noqa: E731
    # once the apply has read asr, read it back, and begun its health wait
    code, said = _apply_stopped_by_sigterm(cluster, plan, lambda: len(reads()) >= 3)
    assert code == 1 and "apply interrupted (SIGTERM) after 1 of 1 change(s)" in said, said
    assert ("records exactly what was done (deployment/asr@dc-l4, whose health wait the interrupt ended, as made "
            "but not healthy: the next plan applies it again and waits for it)") in said, said
    assert "did not pass" not in said and _entry(cluster)["healthy"] is False, said
