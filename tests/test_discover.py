"""Merging discovered documents into a hand-written fleet, and `placer discover` end to end
(NVML from a recording, AWS against moto in server mode)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

import placer.cli
from placer.catalog import type_name
from placer.cli_discover import discover as discover_command
from placer.discover import (
    DISCOVERED_FILE,
    MergeError,
    PoolNote,
    _changed_text,
    field_changes,
    merge,
    notes_for,
    plan_merge,
    refused,
    relocate,
    render,
    to_yaml,
)
from placer.fleet import load_fleet
from placer.planfile import atomic_write
from placer.spec import read_fleet_dir
from placer.spec.loader import kind_and_name
from providers.nvml import ReplayNvml, discover_host
from providers.places import GCP_OTHER_ACCELERATORS, aws_instance_gpu
from tests import denied
from tests.servers.gcp_server import FakeCompute
from tests.servers.kube_server import FakeKubeApiServer, write_kubeconfig
from tests.servers.moto_server import (
    Fault,
    FaultProxy,
    ec2_error,
    json_error,
    moto_server,
    query_error,
    set_eks_nodegroup,
)

if "discover" not in placer.cli.cli.commands:  # until placer.cli registers it
    placer.cli.cli.add_command(discover_command)

ROOT = Path(__file__).resolve().parents[1]
NVML = ROOT / "tests" / "data" / "nvml"
API = "placer.dev/v1alpha1"

LOCATIONS = """\
# Sites we run. Jurisdictions come from legal: do not change them.
apiVersion: placer.dev/v1alpha1
kind: Location
metadata:
  name: fra-dc1
spec:
  environment: onprem
  jurisdiction: EU    # Frankfurt
---
apiVersion: placer.dev/v1alpha1
kind: Location
metadata:
  name: aws-eu-west-1
spec:
  environment: cloud
"""

POOLS = """\
# On-prem racks in Frankfurt, and what we rent.
apiVersion: placer.dev/v1alpha1
kind: Pool
metadata:
  name: dgx-h100-01
  labels: {owner: research, rack: b4}
spec:
  location: fra-dc1
  provider: static          # bought 2025, 3-year amortisation
  gpu: {type: H100-80GB, perNode: 4}   # half the GPUs were out for RMA
  nodes: {count: 1}
  usdPerGpuHour: 1.85       # finance: amortised + power
  target:
    kubernetes:
      context: onprem-fra
      namespace: research
---
# GPU nodes of the on-prem cluster
apiVersion: placer.dev/v1alpha1
kind: Pool
metadata:
  name: k8s-l4
spec:
  location: fra-dc1
  provider: kubernetes
  gpu:
    type: L4-24GB
    perNode: 1
  nodes:
    count: 2   # as of the last audit
  usdPerGpuHour: 0.8
  target:
    kubernetes:
      context: onprem-fra
      namespace: inference      # where our deployments live
      nodeSelector:
        nvidia.com/gpu.product: NVIDIA-L4
      tolerations:
          - key: nvidia.com/gpu
            operator: Exists
            effect: NoSchedule
---
apiVersion: placer.dev/v1alpha1
kind: Pool
metadata:
  name: aws-p4d
spec:
  location: aws-eu-west-1
  provider: aws
  gpu: {type: A100-40GB, perNode: 8}
  nodes: {count: 2}
  usdPerGpuHour: 4.1
  spot: true
  target:
    aws: {region: eu-west-1, autoScalingGroupName: p4d-old}
"""


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    root = tmp_path / "fleet"
    (root / "pools").mkdir(parents=True)
    (root / "locations.yaml").write_text(LOCATIONS)
    (root / "pools" / "pools.yaml").write_text(POOLS)
    load_fleet(root)  # the hand-written fleet is valid to begin with
    return root


def write(files: dict[Path, str]) -> None:
    for path, text in files.items():
        atomic_write(path, text)


def nvml_docs(name: str, **kwargs: Any) -> list[dict[str, Any]]:
    return discover_host(ReplayNvml(NVML / name), **kwargs)[0].documents


def pool_doc(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "Pool", "metadata": {"name": name}, "spec": spec}


def kube_l4(count: int) -> dict[str, Any]:
    """As providers.kubernetes discovers it: namespace is always "default" there."""
    return pool_doc("k8s-l4", {
        "location": "fra-dc1", "provider": "kubernetes", "gpu": {"type": "L4-24GB", "perNode": 1},
        "nodes": {"count": count}, "usdPerGpuHour": 0,
        "target": {"kubernetes": {"context": "onprem-fra", "namespace": "default",
                                  "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L4"},
                                  "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                                                   "effect": "NoSchedule"}]}}})


def aws_p4d(name: str, target: dict[str, Any], low: int = 0, high: int = 4) -> dict[str, Any]:
    return pool_doc(name, {"location": "aws-eu-west-1", "provider": "aws", "gpu": {"type": "A100-40GB", "perNode": 8},
                           "nodes": {"min": low, "max": high}, "usdPerGpuHour": 2.745, "spot": False,
                           "target": {"aws": target}})


# ---------------------------------------------------------------- merge


def test_merge_updates_discovered_fields_in_place_and_keeps_everything_else(fleet: Path) -> None:
    pools = fleet / "pools" / "pools.yaml"
    docs = nvml_docs("h100x8.json", location="fra-dc1") + nvml_docs("t4x2.json", location="fra-dc1") + [kube_l4(3)]
    plan = plan_merge(fleet, docs, ["from a test"], ["a note"])
    # byte for byte: only the two values changed; comments, labels, prices, style and the other pool untouched.
    # The static pool keeps its node count (one host sees one node) and its hand-written target.
    # (the host's GPUs 6 and 7 are in MIG mode: 6 whole GPUs)
    assert plan.files[pools] == (POOLS.replace("perNode: 4}   # half", "perNode: 6}   # half")
                                 .replace("count: 2   # as of", "count: 3   # as of"))
    assert sorted(plan.updated) == [f"{pools}: Pool/dgx-h100-01: spec.gpu.perNode: 4 -> 6",
                                    f"{pools}: Pool/k8s-l4: spec.nodes.count: 2 -> 3"]
    assert plan.unchanged == ["Location/fra-dc1"]  # jurisdiction kept; discovery has nothing to add
    # the T4 host is new: appended to discovered.yaml, with the header and notes as comments
    added = plan.files[fleet / DISCOVERED_FILE]
    assert added.startswith("# from a test\n# Notes:\n# - a note\n---\n")
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(added)] == ["infer-t4-07"]
    assert plan.added == [f"{fleet / DISCOVERED_FILE}: Pool/infer-t4-07"]
    assert (fleet / "locations.yaml") not in plan.files
    write(plan.files)
    loaded = load_fleet(fleet)
    assert loaded.pools["dgx-h100-01"].spec.gpu.per_node == 6
    assert loaded.pools["dgx-h100-01"].spec.usd_per_gpu_hour == 1.85
    assert loaded.pools["k8s-l4"].spec.target.kubernetes.namespace == "inference"
    assert loaded.pools["infer-t4-07"].spec.gpu.type == "T4-16GB"


def test_merge_is_pure_and_idempotent(fleet: Path) -> None:
    before = {p: p.read_bytes() for p in fleet.rglob("*.yaml")}
    docs = [*nvml_docs("t4x2.json", location="fra-dc1"), kube_l4(5)]
    files = merge(fleet, docs)
    assert {p: p.read_bytes() for p in fleet.rglob("*.yaml")} == before  # merge only reads
    write(files)
    again = plan_merge(fleet, docs)
    assert again.files == {} and again.updated == [] and again.added == []
    assert sorted(again.unchanged) == ["Location/fra-dc1", "Pool/infer-t4-07", "Pool/k8s-l4"]


def edited(fleet: Path, found: dict[str, Any]) -> dict[Path, str]:
    """The fleet's files with ``found`` merged into its namesake, whatever its target (the editing
    alone: ``plan_merge`` adds a group of another target as a new pool)."""
    raw = next(r for r in read_fleet_dir(fleet)[0] if kind_and_name(r.data) == ("Pool", found["metadata"]["name"]))
    path = Path(raw.path)
    changes = field_changes(raw.data, found)
    return {path: _changed_text(path, path.read_text(), [(raw, changes, f"Pool/{found['metadata']['name']}")])}


def test_exclusive_fields_are_swapped_not_mixed(fleet: Path) -> None:
    pools = fleet / "pools" / "pools.yaml"
    found = aws_p4d("aws-p4d", {"region": "eu-west-1", "eks": {"cluster": "ml", "nodegroup": "p4d"}})
    files = edited(fleet, found)
    new = files[pools]
    assert "  nodes: {min: 0, max: 4}\n" in new  # count -> min/max, still in flow style
    assert "    aws: {region: eu-west-1, eks: {cluster: ml, nodegroup: p4d}}\n" in new
    assert "  usdPerGpuHour: 4.1\n  spot: false\n" in new  # the hand-written price stays
    assert new.split("name: aws-p4d")[0] == POOLS.split("name: aws-p4d")[0]  # other documents byte for byte
    write(files)
    assert load_fleet(fleet).pools["aws-p4d"].spec.target.aws.eks.nodegroup == "p4d"


def test_comments_below_a_removed_key_and_before_the_next_document_stay(fleet: Path) -> None:
    pools = fleet / "pools" / "pools.yaml"
    pools.write_text(POOLS.replace(
        "    aws: {region: eu-west-1, autoScalingGroupName: p4d-old}\n",
        "    aws:\n      region: eu-west-1\n      autoScalingGroupName: p4d-old   # the old group\n"
        "      # terraform: modules/gpu-asg\n    kubernetes:\n      namespace: ml\n"
        "# the next document is generated\n---\n") + "apiVersion: placer.dev/v1alpha1\nkind: GPUType\n"
        "metadata: {name: MI300X-192GB}\nspec: {memoryGiB: 192}\n")
    found = aws_p4d("aws-p4d", {"region": "eu-west-1", "eks": {"cluster": "ml", "nodegroup": "p4d"}})
    new = edited(fleet, found)[pools]
    assert ("    aws:\n      region: eu-west-1\n      # terraform: modules/gpu-asg\n      eks:\n        cluster: ml\n"
            "        nodegroup: p4d\n    kubernetes:\n      namespace: ml\n"
            "# the next document is generated\n---\n") in new
    assert "  usdPerGpuHour: 4.1\n  spot: false\n  target:\n" in new
    assert "the old group" not in new  # an end-of-line comment goes with its key
    pools.write_text(new)
    assert load_fleet(fleet).pools["aws-p4d"].spec.target.kubernetes.namespace == "ml"


def gcp_l4(nodes: dict[str, int]) -> dict[str, Any]:
    return pool_doc("infer", {"location": "aws-eu-west-1", "provider": "gcp", "gpu": {"type": "L4-24GB", "perNode": 8},
                              "nodes": nodes, "usdPerGpuHour": 0.71, "spot": False,
                              "target": {"gcp": {"project": "acme", "zone": "europe-west4-a",
                                                 "instanceGroupManager": "infer"}}})


def test_placeholder_sizes_fill_gaps_but_never_overwrite_what_the_user_set(tmp_path: Path) -> None:
    """A MIG without an autoscaler has no size range: discovery's min 0 / max 8 turned the user's
    max 4 into 8 on every merge. Marked as guesses, they only fill in; an autoscaler's are facts."""
    guessed = [("spec", "nodes", "min"), ("spec", "nodes", "max")]
    found = gcp_l4({"min": 0, "max": 8})
    assert field_changes(gcp_l4({"min": 1, "max": 4}), found, guessed) == []
    assert field_changes(gcp_l4({"count": 2}), found, guessed) == []  # nor swaps count for guesses
    assert [str(c) for c in field_changes(gcp_l4({"min": 1}), found, guessed)] == ["spec.nodes.max: (none) -> 8"]
    assert [str(c) for c in field_changes(gcp_l4({"min": 1, "max": 4}), found)] == [
        "spec.nodes.min: 1 -> 0", "spec.nodes.max: 4 -> 8"]  # facts (an autoscaler's) still update
    root = tmp_path / "fleet"
    root.mkdir()
    (root / "fleet.yaml").write_text(LOCATIONS + "---\n" + to_yaml(gcp_l4({"min": 0, "max": 4})))
    plan = plan_merge(root, [found], guessed={"infer": guessed})
    assert plan.files == {} and plan.unchanged == ["Pool/infer"]


def test_a_crlf_fleet_stays_crlf_and_a_comment_below_a_removed_first_key_stays(fleet: Path) -> None:
    """A merge into a CRLF fleet wrote it all with LF (read_text hid the CR), and dropped the
    comment below nodes.count when count, the first key, gave way to min/max."""
    pools, discovered = fleet / "pools" / "pools.yaml", fleet / DISCOVERED_FILE
    assert POOLS.count("  nodes: {count: 2}\n") == 1
    text = POOLS.replace("  nodes: {count: 2}\n", "  nodes:\n    count: 2   # legacy\n"
                         "    # TODO: min/max once we trust the autoscaler\n")
    pools.write_bytes(text.replace("\n", "\r\n").encode())
    discovered.write_bytes(b"# found earlier\r\n")
    found = aws_p4d("aws-p4d", {"region": "eu-west-1", "autoScalingGroupName": "p4d-old"}, high=6)
    plan = plan_merge(fleet, [found, *nvml_docs("t4x2.json", location="fra-dc1")])
    assert plan.added == [f"{discovered}: Pool/infer-t4-07"]
    for new in plan.files.values():
        assert "\n" not in new.replace("\r\n", ""), new  # every line ends as the file's did
    assert ("  nodes:\r\n    # TODO: min/max once we trust the autoscaler\r\n    min: 0\r\n    max: 6\r\n"
            "  usdPerGpuHour: 4.1") in plan.files[pools]
    assert plan.files[discovered].startswith("# found earlier\r\n---\r\n")
    write(plan.files)
    assert load_fleet(fleet).pools["aws-p4d"].spec.nodes.max == 6


def test_a_fleet_file_with_a_byte_order_mark_keeps_it(fleet: Path) -> None:
    """A file an editor saved with a byte-order mark lost it when a merge edited a pool in it (the
    line ends stayed): a change to the file's first bytes the merge was not asked for."""
    pools = fleet / "pools" / "pools.yaml"
    docs = POOLS.split("---\n")
    first = [d for d in docs if "name: aws-p4d" in d] + [d for d in docs if "name: aws-p4d" not in d]
    pools.write_bytes(b"\xef\xbb\xbf" + "---\n".join(first).replace("\n", "\r\n").encode())  # the pool edited first
    found = aws_p4d("aws-p4d", {"region": "eu-west-1", "autoScalingGroupName": "p4d-old"}, high=6)
    plan = plan_merge(fleet, [found])
    new = plan.files[pools]
    assert new.startswith("\ufeff" + first[0][:20].replace("\n", "\r\n")) and new.count("\ufeff") == 1, new[:40]
    assert "\n" not in new.replace("\r\n", "")
    write(plan.files)
    assert load_fleet(fleet).pools["aws-p4d"].spec.nodes.max == 6


def test_a_pool_found_under_another_name_is_matched_by_its_target(fleet: Path) -> None:
    found = aws_p4d("p4d-old", {"region": "eu-west-1", "autoScalingGroupName": "p4d-old"}, high=6)
    plan = plan_merge(fleet, [found])
    assert list(plan.files) == [fleet / "pools" / "pools.yaml"] and plan.added == []
    assert any("Pool/aws-p4d (discovered as Pool/p4d-old: same aws target): spec.nodes.max: (none) -> 6" in line
               for line in plan.updated)


def test_a_pool_of_another_cloud_by_the_same_name_is_added_under_its_own_name_not_written_over(fleet: Path) -> None:
    """An AWS group named as the fleet's Kubernetes pool is another pool: its GPUs and target were
    written over the pool's, and the group never added."""
    found = aws_p4d("k8s-l4", {"region": "eu-west-1", "autoScalingGroupName": "k8s-l4"})
    plan = plan_merge(fleet, [found])
    assert list(plan.files) == [fleet / DISCOVERED_FILE]  # the fleet's pool is left alone
    assert plan.added == [f"{fleet / DISCOVERED_FILE}: Pool/k8s-l4-eu-west-1"]
    assert plan.renamed == [f"Pool/k8s-l4 -> Pool/k8s-l4-eu-west-1: {fleet / 'pools' / 'pools.yaml'}:22: Pool/k8s-l4 "
                            "is a kubernetes pool (discovery found one on aws)"]


def test_a_namesake_group_in_another_region_is_a_new_pool_not_a_retargeted_one(fleet: Path) -> None:
    """A group named as the fleet's pool in another region moved the pool there (region, group,
    GPUs), kept its hand price and Location, and exit 0."""
    found = aws_p4d("aws-p4d", {"region": "us-east-1", "autoScalingGroupName": "aws-p4d"})
    found["spec"]["location"] = "aws-us-east-1"
    location = {"apiVersion": API, "kind": "Location", "metadata": {"name": "aws-us-east-1"},
                "spec": {"environment": "cloud", "jurisdiction": "US"}}
    plan = plan_merge(fleet, [location, found])
    assert list(plan.files) == [fleet / DISCOVERED_FILE] and plan.updated == []
    assert plan.added == [f"{fleet / DISCOVERED_FILE}: Location/aws-us-east-1",
                          f"{fleet / DISCOVERED_FILE}: Pool/aws-p4d-us-east-1"]
    assert plan.renamed == [f"Pool/aws-p4d -> Pool/aws-p4d-us-east-1: {fleet / 'pools' / 'pools.yaml'}:46: "
                            "Pool/aws-p4d is the pool of another aws group (eu-west-1 p4d-old; discovery found "
                            "us-east-1 aws-p4d)"]
    write(plan.files)
    assert load_fleet(fleet).pools["aws-p4d"].spec.target.aws.region == "eu-west-1"
    again = plan_merge(fleet, [location, found])  # the renamed pool is found by its target next time
    assert again.files == {} and "Pool/aws-p4d-us-east-1 (discovered as Pool/aws-p4d: same aws target)" in again.unchanged


def test_a_cloud_group_named_as_a_static_pool_is_added_not_written_over(fleet: Path) -> None:
    """An ASG named as an on-prem static pool turned the H100 x4 rack into A100 spot capacity on AWS.
    Only NVML discovery (provider static) sees a host of an on-prem pool."""
    found = aws_p4d("dgx-h100-01", {"region": "eu-west-1", "autoScalingGroupName": "dgx-h100-01"})
    plan = plan_merge(fleet, [found])
    assert list(plan.files) == [fleet / DISCOVERED_FILE] and plan.updated == []
    assert plan.added == [f"{fleet / DISCOVERED_FILE}: Pool/dgx-h100-01-eu-west-1"]
    assert plan.renamed[0].endswith("Pool/dgx-h100-01 is a static pool (discovery found one on aws)")
    assert plan_merge(fleet, nvml_docs("h100x8.json", location="fra-dc1")).updated  # NVML still updates it


def test_a_second_host_of_an_on_prem_pool_updates_the_pool_not_a_copy_of_it(fleet: Path, tmp_path: Path) -> None:
    """--pool rack1 on the rack's second host added Pool/rack1-static, "the pool of another nvml
    group": NVML sees one host of an on-prem pool, and the host a pool was first discovered on is
    no group of its own."""
    recording = json.loads((NVML / "h100x8.json").read_text())
    recording["hostname"] = "dgx-h100-02.lab.example.com"
    (tmp_path / "host2.json").write_text(json.dumps(recording))
    write(plan_merge(fleet, discover_host(ReplayNvml(NVML / "h100x8.json"), "fra-dc1", "rack1")[0].documents).files)
    plan = plan_merge(fleet, discover_host(ReplayNvml(tmp_path / "host2.json"), "fra-dc1", "rack1")[0].documents)
    assert plan.renamed == [] and plan.added == [] and plan.files == {}
    assert plan.unchanged == ["Location/fra-dc1", "Pool/rack1"]


def test_a_group_is_matched_by_its_target_before_a_namesake_without_one(fleet: Path) -> None:
    """Pool p4d-old (no target yet: the fleet is being written) took the group that the fleet's aws-p4d
    sizes, by name: two pools sizing one group."""
    pools = fleet / "pools" / "pools.yaml"
    pools.write_text(POOLS + "---\n" + POOLS.split("---\n")[-1].replace("name: aws-p4d", "name: p4d-old")
                     .replace("  target:\n    aws: {region: eu-west-1, autoScalingGroupName: p4d-old}\n", ""))
    found = aws_p4d("p4d-old", {"region": "eu-west-1", "autoScalingGroupName": "p4d-old"}, high=6)
    plan = plan_merge(fleet, [found])
    assert plan.updated and plan.added == [] and plan.renamed == []
    assert all(line.startswith(f"{pools}: Pool/aws-p4d (discovered as Pool/p4d-old: same aws target)")
               for line in plan.updated)
    assert plan.files[pools].endswith("  name: p4d-old\n" + POOLS.split("name: aws-p4d\n")[1].split("  target:")[0])


def test_a_merge_that_would_leave_the_fleet_invalid_writes_nothing(fleet: Path) -> None:
    """A discovered pool the fleet could not hold was merged, exit 0, and validate refused the
    fleet: the merge checks the merged fleet as validate does. (A pool of a GPU type nobody
    defines is left out beforehand, with a line saying so: test_a_group_no_fleet_would_take_...)"""
    found = aws_p4d("p5", {"region": "eu-west-1", "autoScalingGroupName": "p5"})
    found["spec"]["location"] = "nowhere"
    with pytest.raises(MergeError, match=r"nothing was written: .*discovered.yaml:\d+: Pool/p5: spec.location"):
        plan_merge(fleet, [found])
    assert not (fleet / DISCOVERED_FILE).exists()


def test_two_discovered_pools_of_one_name_are_refused_not_one_dropped(fleet: Path) -> None:
    one = aws_p4d("twin", {"region": "eu-west-1", "autoScalingGroupName": "a"})
    two = aws_p4d("twin", {"region": "eu-west-1", "autoScalingGroupName": "b"})
    with pytest.raises(MergeError, match="discovery found two Pools named twin; name them apart"):
        plan_merge(fleet, [one, two])
    assert plan_merge(fleet, [one, one]).added == [f"{fleet / DISCOVERED_FILE}: Pool/twin"]  # the same twice: once


def test_long_names_stay_distinct() -> None:
    """A host's two GPU types, with a long host name, made one pool name (cut at 63)."""
    from providers.base import dns_label

    base = "gpu-host-in-the-frankfurt-datacentre-rack-row-07-slot-0012345678"
    names = {dns_label(f"{base}-{t}") for t in ("H100-80GB", "L4-24GB")}
    assert len(names) == 2 and all(len(n) <= 63 for n in names)
    assert dns_label("Frankfurt DC--1") == "frankfurt-dc-1" and dns_label("***", "host") == "host"


def test_other_kinds_only_gain_missing_fields(fleet: Path) -> None:
    cloud = {"apiVersion": API, "kind": "Location", "metadata": {"name": "aws-eu-west-1"},
             "spec": {"environment": "cloud", "jurisdiction": "EU"}}
    onprem = {"apiVersion": API, "kind": "Location", "metadata": {"name": "fra-dc1"},
              "spec": {"environment": "edge", "jurisdiction": "DE"}}
    files = merge(fleet, [cloud, onprem])
    assert files[fleet / "locations.yaml"] == LOCATIONS + "  jurisdiction: EU\n"


def test_existing_discovered_file_is_updated_and_appended_to(fleet: Path) -> None:
    write(merge(fleet, nvml_docs("t4x2.json", location="fra-dc1")))
    first = (fleet / DISCOVERED_FILE).read_text()
    t4 = nvml_docs("t4x2.json", location="fra-dc1")
    t4[-1]["spec"]["gpu"]["perNode"] = 4
    plan = plan_merge(fleet, t4 + nvml_docs("mixed.json", location="fra-dc1"), ["second run"])
    text = plan.files[fleet / DISCOVERED_FILE]
    assert text.startswith(first.split("---\n")[0])  # the first run's header comments stay
    assert "perNode: 4}" in text and "\n---\n# second run\n" in text
    write(plan.files)
    loaded = load_fleet(fleet)
    assert loaded.pools["infer-t4-07"].spec.gpu.per_node == 4
    assert "ws-render-02-rtx-a6000-48gb" in loaded.pools and "RTX-A6000-48GB" in loaded.gpu_types


def test_an_edit_the_yaml_round_trip_cannot_make_exactly_is_refused(fleet: Path) -> None:
    # PyYAML (the fleet loader) reads {kubernetes:} as kubernetes: null; ruamel.yaml as a key "kubernetes:"
    odd = POOLS.replace("  target:\n    aws: {region: eu-west-1, autoScalingGroupName: p4d-old}\n",
                        "  target: {kubernetes:}\n")
    (fleet / "pools" / "pools.yaml").write_text(odd)
    found = copy.deepcopy(kube_l4(1))
    found["metadata"]["name"] = "aws-p4d"
    found["spec"]["provider"] = "aws"  # the fleet's pool's own (a pool on another cloud is refused before)
    with pytest.raises(MergeError, match=r"pools.yaml:\d+: Pool/aws-p4d: cannot update it in place"):
        merge(fleet, [found])


def test_a_fleet_that_does_not_parse_or_exist_is_refused(fleet: Path, tmp_path: Path) -> None:
    with pytest.raises(MergeError, match="no such fleet directory"):
        merge(tmp_path / "nowhere", [])
    (fleet / "broken.yaml").write_text("kind: [unclosed\n")
    with pytest.raises(MergeError, match=r"broken.yaml:\d+: invalid YAML"):
        merge(fleet, nvml_docs("t4x2.json"))


def test_a_fleet_holding_a_rendered_tree_is_merged_into(fleet: Path) -> None:
    """The loader skips a tree `placer render` wrote inside the fleet, with a warning; discover
    --merge took that warning for a fleet that does not parse ("fix the fleet first")."""
    pools = len(load_fleet(fleet).pools)
    tree = fleet / "deploy"
    (tree / "terraform").mkdir(parents=True)
    (tree / "terraform" / "placer.auto.tfvars.json").write_text('{"placer_pools": {}}\n')
    (tree / "clusters" / "dc1").mkdir(parents=True)
    (tree / "clusters" / "dc1" / "m-p.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: m-p}\n")
    write(merge(fleet, nvml_docs("t4x2.json", location="fra-dc1")))
    assert len(load_fleet(fleet).pools) == pools + 1


def test_a_fleet_directory_without_documents_can_be_started(tmp_path: Path) -> None:
    """validate refuses a fleet whose files hold no documents; discover --merge starts one there."""
    root = tmp_path / "fleet"
    root.mkdir()
    (root / "README.yaml").write_text("# pools are discovered into discovered.yaml\n")
    write(merge(root, nvml_docs("t4x2.json", location="fra-dc1")))
    assert len(load_fleet(root).pools) == 1


@pytest.mark.parametrize("text", ["hello\n", "- a\n- b\n"])
def test_a_fleet_holding_a_document_that_is_no_mapping_is_merged_into(
        capsys: pytest.CaptureFixture[str], fleet: Path, text: str) -> None:
    """A fleet file holding a text or a list (a note, a stray list) made discover --merge an internal
    error (AttributeError: 'str' object has no attribute 'get'); validate says what is wrong with it."""
    (fleet / "stray.yaml").write_text(text)
    code, out, err = run(capsys, "discover", "nvml", "--replay", str(NVML / "t4x2.json"), "--location", "fra-dc1",
                         "--merge", str(fleet))
    assert code == 0, err
    assert "internal error" not in err
    assert f"added {fleet / DISCOVERED_FILE}: Pool/infer-t4-07" in out
    assert (fleet / "stray.yaml").read_text() == text  # not the merge's to change


def test_a_merge_whose_discovered_file_is_a_directory_says_what_to_do(
        capsys: pytest.CaptureFixture[str], fleet: Path) -> None:
    """A directory named discovered.yaml in the fleet was "Error: [Errno 21] Is a directory", not where
    new documents go nor what to do."""
    (fleet / DISCOVERED_FILE).mkdir()
    code, out, err = run(capsys, "discover", "nvml", "--replay", str(NVML / "t4x2.json"), "--location", "fra-dc1",
                         "--merge", str(fleet))
    assert code == 1 and out == ""
    err = " ".join(err.split())
    assert f"Error: cannot merge into {fleet}: {fleet / DISCOVERED_FILE} is a directory, not a file; new " \
           "documents go into that file: move the directory away, then discover again" in err, err


def test_relocate_puts_every_pool_at_one_location() -> None:
    docs = [{"apiVersion": API, "kind": "Location", "metadata": {"name": n}, "spec": {"environment": "cloud"}}
            for n in ("aws-eu-west-1", "aws-us-east-1")]
    docs += [aws_p4d("a", {}), aws_p4d("b", {})]
    docs[-1]["spec"]["location"] = "aws-us-east-1"
    moved = relocate(docs, "rented")
    assert [(d["kind"], d["metadata"]["name"]) for d in moved] == [("Location", "rented"), ("Pool", "a"), ("Pool", "b")]
    assert {d["spec"]["location"] for d in moved if d["kind"] == "Pool"} == {"rented"}
    assert moved[0]["spec"] == {"environment": "cloud"}
    assert docs[2]["spec"]["location"] == "aws-eu-west-1"  # the input is not changed
    for d in docs[:2]:
        d["spec"]["jurisdiction"] = "EU"
    assert relocate(docs, "rented")[0]["spec"] == {"environment": "cloud", "jurisdiction": "EU"}  # they agree


def test_render_is_multi_document_yaml_with_comments() -> None:
    text = render(nvml_docs("t4x2.json"), ["head"], ["note one", "note two"])
    assert text.splitlines()[:4] == ["# head", "# Notes:", "# - note one", "# - note two"]
    assert "  gpu: {type: T4-16GB, perNode: 2}\n" in text
    assert [d["kind"] for d in yaml.safe_load_all(text)] == ["Location", "Pool"]


# ---------------------------------------------------------------- the command


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = placer.cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_discover_nvml_replay_prints_a_valid_fleet(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "discover", "nvml", "--replay", str(NVML / "h100x8.json"))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("# Discovered by placer ") and "NVML on host dgx-h100-01.lab.example.com" in lines[0]
    assert all(line.startswith("#") for line in lines[:lines.index("---")])  # header and notes are comments
    assert any("usdPerGpuHour is 0" in line for line in lines if line.startswith("#"))
    docs = list(yaml.safe_load_all(out))
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [("Location", "onprem"), ("Pool", "dgx-h100-01")]
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "fleet.yaml").write_text(out)
    loaded = load_fleet(tmp_path / "f")
    assert loaded.pools["dgx-h100-01"].spec.gpu.type == "H100-80GB"
    assert loaded.pools["dgx-h100-01"].spec.gpu.per_node == 6  # GPUs 6 and 7 are in MIG mode
    assert loaded.locations["onprem"].spec.environment == "onprem"
    # the per-GPU table goes to stderr, so stdout stays YAML
    assert "GPU-" in err and "79.6" in err and "enabled" in err


@pytest.mark.parametrize(("edit", "said"), [
    (lambda d: d["devices"][0]["memory"].update(total=float("nan")), "devices[0].memory.total nan is no count"),
    (lambda d: d["devices"][0]["memory"].update(total="lots"), "devices[0].memory.total 'lots' is no count"),
    (lambda d: d["devices"][0]["memory"].update(total=-1), "devices[0].memory.total -1 is no count"),
    (lambda d: d["devices"][1].update(utilization=[97, 3]), "devices[1].utilization [97, 3] is not an object of gpu and memory"),
    (lambda d: d["devices"][2].pop("name"), "devices[2] has no name"),
    (lambda d: d.update(devices={"0": {}}), "devices is not a list"),
    (lambda d: d.update(cudaDriverVersion="12.4"), "cudaDriverVersion '12.4' is no count"),
])
def test_a_malformed_nvml_recording_is_refused_saying_where(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                            edit: Any, said: str) -> None:
    """A recording edited or made by another tool: a memory of NaN or "lots" was an internal error,
    and one of -1 byte a pool of a GPU type named `NVIDIA-H100-80GB-HBM3-0GB`."""
    data = json.loads((NVML / "h100x8.json").read_text())
    edit(data)
    path = tmp_path / "host.json"
    path.write_text(json.dumps(data))
    code, out, err = run(capsys, "discover", "nvml", "--replay", str(path))
    assert code == 1 and out == "", out
    assert f"NVML replay {path}: malformed recording ({said}); record the host again" in " ".join(err.split()), err
    assert "internal error" not in err


def test_discover_nvml_merge_writes_the_fleet_and_says_what_changed(
        capsys: pytest.CaptureFixture[str], fleet: Path) -> None:
    replay = str(NVML / "h100x8.json")
    code, out, err = run(capsys, "discover", "nvml", "--replay", replay, "--location", "fra-dc1", "--merge", str(fleet))
    assert code == 0, err
    assert f"updated {fleet / 'pools' / 'pools.yaml'}: Pool/dgx-h100-01: spec.gpu.perNode: 4 -> 6" in out
    assert "unchanged Location/fra-dc1" in out
    # the fleet's price (1.85) and jurisdiction (EU) stay: discovery's "is 0" and "set it" are not true of them
    assert "usdPerGpuHour" not in err and "jurisdiction" not in err
    assert load_fleet(fleet).pools["dgx-h100-01"].spec.gpu.per_node == 6
    code, out, _ = run(capsys, "discover", "nvml", "--replay", replay, "--location", "fra-dc1", "--merge", str(fleet))
    assert code == 0 and "No changes" in out


@pytest.mark.parametrize("how", denied.HOWS)
def test_a_merge_into_a_folder_it_cannot_write_says_so_once(capsys: pytest.CaptureFixture[str], fleet: Path,
                                                              monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """A fleet file in a folder it cannot write (`chmod 500`) said "cannot write FILE: cannot write
    FILE: Permission denied"; now once, exit 1, the file as it was."""
    path = fleet / "pools" / "pools.yaml"
    denied.unwritable(path.parent, monkeypatch, how)
    try:
        code, _, err = run(capsys, "discover", "nvml", "--replay", str(NVML / "h100x8.json"), "--location",
                             "fra-dc1", "--merge", str(fleet))
    finally:
        denied.restore(path.parent)
    said = " ".join(err.split())
    assert code == 1 and said.endswith(f"Error: cannot write {path}: Permission denied; files written before it keep "
                                       "their new contents"), said
    assert path.read_text() == POOLS


def test_discover_merge_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "discover", "nvml", "--replay", str(NVML / "t4x2.json"),
                         "--merge", str(tmp_path / "nowhere"))
    assert code == 1 and out == ""
    assert err.strip().startswith("Error: ") and "no such fleet directory" in err and len(err.strip().splitlines()) == 1


def test_discover_refuses_a_pool_name_no_fleet_would_take(capsys: pytest.CaptureFixture[str]) -> None:
    """--pool "Ünïcode" silently became n-code, while such a --location was refused."""
    code, out, err = run(capsys, "discover", "nvml", "--replay", str(NVML / "t4x2.json"), "--pool", "Ünïcode")
    assert code == 1 and out == ""
    assert "Invalid value for '--pool': 'Ünïcode' is not a DNS-1123 label" in " ".join(err.split())


@pytest.mark.parametrize("location", ["Frankfurt DC", "eu_west/1"])
def test_discover_refuses_a_location_no_fleet_would_take(capsys: pytest.CaptureFixture[str], location: str) -> None:
    """Such a --location printed documents `placer validate` refused, exit 0."""
    code, out, err = run(capsys, "discover", "nvml", "--replay", str(NVML / "t4x2.json"), "--location", location)
    assert code == 1 and out == ""
    assert f"Invalid value for '--location': {location!r} is not a DNS-1123 label" in " ".join(err.split())


@pytest.mark.parametrize("gfd_count", [False, True])
def test_discover_kubernetes_merge_finds_the_hand_written_pool_by_its_target(
        capsys: pytest.CaptureFixture[str], fleet: Path, tmp_path: Path, gfd_count: bool) -> None:
    """GPU Feature Discovery labels every GPU node with nvidia.com/gpu.count, which discovery selects
    on and a hand-written selector seldom names: the pool was not recognised and its nodes were
    added again as a second pool."""
    labels = {"nvidia.com/gpu.product": "NVIDIA-L4", "nvidia.com/gpu.memory": "23034"}
    if gfd_count:
        labels["nvidia.com/gpu.count"] = "1"
    with FakeKubeApiServer() as kube:
        for name in ("l4-a", "l4-b", "l4-c"):
            kube.add_node(name, gpus=1, labels=labels)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"onprem-fra": kube.url})
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", str(kubeconfig),
                             "--context", "onprem-fra", "--merge", str(fleet))
        assert code == 0, err
        pools = fleet / "pools" / "pools.yaml"
        assert out.splitlines()[:2] == [
            f"updated {pools}: Pool/k8s-l4 (discovered as Pool/onprem-fra-l4-24gb: same kubernetes target): "
            "spec.nodes.count: 2 -> 3",
            "skipped Location/onprem-fra: no new pool is there"]
        # --location: every discovered pool is there, and that Location is the fleet's (nothing to add)
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", str(kubeconfig), "--location",
                             "fra-dc1")
        assert code == 0, err
        docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out)}
        assert set(docs) == {("Location", "fra-dc1"), ("Pool", "onprem-fra-l4-24gb")}
        assert docs[("Pool", "onprem-fra-l4-24gb")]["spec"]["location"] == "fra-dc1"
    # the namespace discovery cannot know and the hand-written tolerations stay
    assert pools.read_text() == POOLS.replace("count: 2   # as of", "count: 3   # as of")
    assert not (fleet / DISCOVERED_FILE).exists()


def test_a_403_says_the_can_i_of_the_context_and_kubeconfig_discovery_read(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`placer discover kubernetes --context prod --kubeconfig K` refused by RBAC said to run
    `kubectl auth can-i --list`: no context, no kubeconfig, so the operator checked the current
    context of the default kubeconfig, another cluster."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    with FakeKubeApiServer() as kube:
        kube.add_node("l4-a", gpus=1, labels={"nvidia.com/gpu.product": "NVIDIA-L4"})
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"staging": kube.url, "prod": kube.url}))
        kube.fail_next(1, 403, path_contains="/api/v1/nodes")
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig, "--context", "prod")
        said = " ".join(err.split())
        assert code == 1 and out == "" and "HTTP 403" in said, said
        assert f"(`kubectl auth can-i list nodes --context prod --kubeconfig {kubeconfig}`)" in said, said
        kube.fail_next(1, 403, path_contains="/api/v1/nodes")  # the current context, named as it is now
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig)
        said = " ".join(err.split())
        assert code == 1 and f"(`kubectl auth can-i list nodes --context staging --kubeconfig {kubeconfig}`)" in said


def test_the_price_note_names_only_the_pools_printed_or_added(
        capsys: pytest.CaptureFixture[str], fleet: Path, tmp_path: Path) -> None:
    """"usdPerGpuHour is 0 for ..." named every discovered pool: those merged into the fleet's priced
    pools, skipped ones, and, after "No changes", all of them again."""
    l4 = {"nvidia.com/gpu.product": "NVIDIA-L4", "nvidia.com/gpu.memory": "23034"}
    with FakeKubeApiServer() as kube:
        for name in ("l4-a", "l4-b", "l4-c"):
            kube.add_node(name, gpus=1, labels=l4)
        kube.add_node("h100-a", gpus=8, labels={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"})
        kube.add_node("gh-0", gpus=1, labels={"nvidia.com/gpu.product": "NVIDIA-GH200-480GB"})  # skipped
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"onprem-fra": kube.url}))
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig)
        assert code == 0, err
        assert "# - usdPerGpuHour is 0 for onprem-fra-h100-80gb, onprem-fra-l4-24gb: fill in" in out
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig, "--merge", str(fleet))
        assert code == 0, err
        assert "added" in out and "Pool/k8s-l4 (discovered as Pool/onprem-fra-l4-24gb" in out
        notes = [line for line in err.splitlines() if "usdPerGpuHour" in line]
        assert notes == ["note: usdPerGpuHour is 0 for onprem-fra-h100-80gb: fill in what a GPU hour costs you"]
        assert [line for line in (fleet / DISCOVERED_FILE).read_text().splitlines() if "usdPerGpuHour is" in line] \
            == ["# - usdPerGpuHour is 0 for onprem-fra-h100-80gb: fill in what a GPU hour costs you"]
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig, "--merge", str(fleet))
        assert code == 0 and "No changes" in out and "usdPerGpuHour" not in err


def test_a_pool_note_follows_its_pools_renamed_and_goes_with_the_last() -> None:
    note = PoolNote("usdPerGpuHour is 0 for {names}: fill in", ["a", "b", "c"])
    assert note == "usdPerGpuHour is 0 for a, b, c: fill in" and copy.deepcopy(note).names == ("a", "b", "c")
    assert notes_for(["plain", note], {"Pool": {"c": "c-fra", "b": "b"}}) == ["plain", "usdPerGpuHour is 0 for b, c-fra: fill in"]
    assert notes_for([note], {}) == []
    assert "for a:" in render([pool_doc("a", {})], notes=[note])


def test_a_pool_discovery_no_longer_finds_is_reported_with_its_place(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A NoExecute taint made a second pool; once it was lifted, a merge updated the first to all 3
    nodes and said nothing of the second: 4 nodes claimed where 3 exist."""
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    labels = {"nvidia.com/gpu.product": "NVIDIA-L4", "nvidia.com/gpu.memory": "23034"}
    with FakeKubeApiServer() as kube:
        for name in ("l4-a", "l4-b", "l4-c"):
            kube.add_node(name, gpus=1, labels=labels, taints=[{"key": "maintenance", "value": "disk",
                                                                "effect": "NoExecute"}] if name == "l4-c" else None)
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"prod": kube.url}))
        assert run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig, "--merge", str(fleet))[0] == 0
        kube.add_node("l4-c", gpus=1, labels=labels)  # maintenance over: the taint is gone
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig, "--merge", str(fleet))
    assert code == 0, err
    assert f"updated {fleet / DISCOVERED_FILE}: Pool/prod-l4-24gb: spec.nodes.count: 2 -> 3" in out
    assert (f"not found {fleet / DISCOVERED_FILE}:36: Pool/prod-l4-24gb-2 (nodes {{\"count\": 1}}): discovery read "
            "kubernetes context prod and found no such group there") in out
    # only pools of what discovery read: another context's, or another provider's, are not its business
    assert plan_merge(fleet, [], scopes=[("kubernetes", "staging")]).missing == []


L4_ONE = {"nvidia.com/gpu.product": "NVIDIA-L4", "nvidia.com/gpu.memory": "23034", "nvidia.com/gpu.count": "1"}
L4_FOUR = {**L4_ONE, "nvidia.com/gpu.count": "4"}


def merge_kube(capsys: pytest.CaptureFixture[str], tmp_path: Path, fleet: Path, context: str,
               nodes: dict[str, tuple[int, dict[str, str]]]) -> tuple[int, str, str]:
    """discover kubernetes --merge against a cluster of these nodes (name: GPUs, labels)."""
    with FakeKubeApiServer() as kube:
        for name, (gpus, labels) in nodes.items():
            kube.add_node(name, gpus=gpus, labels=labels)
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {context: kube.url}))
        return run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig, "--merge", str(fleet))


ONES = {f"one-{i}": (1, L4_ONE) for i in range(2)}
FOURS = {f"four-{i}": (4, L4_FOUR) for i in range(3)}


def test_a_discovered_kubernetes_pool_whose_pods_may_run_on_another_pools_nodes_says_so(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A node tainted dedicated=ml became a pool of its own with the group's nodeSelector and a
    toleration: its Deployments could run on the group's untainted nodes, whose GPUs placer counts
    as the other pool's, and nothing said so (a hand-written pool like it is refused as ambiguous)."""
    with FakeKubeApiServer() as kube:
        for name in ("l4-a", "l4-b"):
            kube.add_node(name, gpus=1, labels=L4_ONE)
        kube.add_node("l4-ml", gpus=1, labels=L4_ONE, taints=[{"key": "dedicated", "value": "ml",
                                                                "effect": "NoSchedule"}])
        kube.add_node("h100", gpus=8, labels={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                                              "nvidia.com/gpu.count": "8"})
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"prod": kube.url}))
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig)
    assert code == 0, err
    pools = {d["metadata"]["name"]: d for d in yaml.safe_load_all(out) if d["kind"] == "Pool"}
    assert pools["prod-l4-24gb-2"]["spec"]["target"]["kubernetes"]["tolerations"][0]["key"] == "dedicated"
    notes = " ".join(line.removeprefix("# ").strip() for line in out.splitlines() if line.startswith("#"))
    assert ("pool prod-l4-24gb-2: its nodeSelector and tolerations also let its pods onto the nodes of pool "
            "prod-l4-24gb (l4-a, l4-b), whose GPUs placer counts there too: label its own nodes "
            "placer.dev/pool=prod-l4-24gb-2") in notes
    assert "pool prod-l4-24gb:" not in notes and "pool prod-h100" not in notes  # the others select their own nodes


def test_discover_kubernetes_lists_again_when_the_continue_token_expired_part_way(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A 410 Expired on a later page of the node listing (the API server compacted past its token)
    failed discovery with 'fix the request and re-plan'; a new listing from the first page is whole."""
    with FakeKubeApiServer() as kube:
        kube.page_size = 2
        for i in range(5):
            kube.add_node(f"l4-{i}", gpus=1, labels=L4_ONE)
        kube.expire_continue = 1
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"prod": kube.url}))
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig)
        assert code == 0, err
        assert [d["spec"]["nodes"] for d in yaml.safe_load_all(out) if d["kind"] == "Pool"] == [{"count": 5}]
        kube.expire_continue = 2  # expired again: said, and what to do
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig)
    assert code == 1 and out == ""
    err = " ".join(err.split())
    assert "HTTP 410 Expired" in err and "re-plan" not in err
    assert err.endswith("the listing took longer than the API server keeps its continue token; run it again")


def test_discover_kubernetes_tries_a_throttled_page_again_not_the_whole_listing(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 429 on page 3 of a node listing listed again from page 1: an API server that throttles each
    page of a long listing once (priority and fairness) got it one page further a try, and 1,200 nodes
    at 100 a page failed after 6 tries, 'tried 6 times ... and it still failed', exit 1."""
    monkeypatch.setenv("PLACER_RETRY_BASE_SECONDS", "0.001")
    with FakeKubeApiServer() as kube:
        for i in range(1200):
            kube.add_node(f"l4-{i:04d}", gpus=1, labels=L4_ONE)
        kube.page_size, kube.throttle_pages = 100, True
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"prod": kube.url}))
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig)
        lists = [r for r in kube.requests if r.path == "/api/v1/nodes"]
    assert code == 0, err
    assert [d["spec"]["nodes"] for d in yaml.safe_load_all(out) if d["kind"] == "Pool"] == [{"count": 1200}]
    assert len(lists) == 12 + 11  # each page once, and again each continued page once throttled
    assert err.count("retrying in") == 11


def test_a_merge_says_a_gpu_type_was_added_only_when_it_was(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Every merge after the first said 'added a GPUType document named NVIDIA-RTX-6000-Ada-Generation'
    beside 'unchanged GPUType/NVIDIA-RTX-6000-Ada-Generation': the fleet had it, nothing was added."""
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    rtx = {"nvidia.com/gpu.product": "NVIDIA-RTX-6000-Ada-Generation", "nvidia.com/gpu.memory": "49140",
           "nvidia.com/gpu.count": "2"}
    code, out, err = merge_kube(capsys, tmp_path, fleet, "prod", {"rtx-a": (2, rtx)})
    assert code == 0, err
    assert f"added {fleet / DISCOVERED_FILE}: GPUType/RTX-6000-Ada-Generation-48GB" in out
    assert "added a GPUType document named RTX-6000-Ada-Generation-48GB of 48.0 GiB" in " ".join(err.split())
    code, out, err = merge_kube(capsys, tmp_path, fleet, "prod", {"rtx-a": (2, rtx), "rtx-b": (2, rtx)})
    assert code == 0, err
    assert "unchanged GPUType/RTX-6000-Ada-Generation-48GB" in out and "spec.nodes.count: 1 -> 2" in out
    assert "GPUType" not in err


def test_a_kubernetes_pool_of_other_sized_nodes_is_not_written_over_when_its_nodes_are_gone(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """With nvidia.com/gpu.count left out of a pool's identity, once the 1-GPU nodes were gone a merge
    wrote the 4-GPU group over their pool (perNode 4, count 3, its selector still gpu.count 1) and
    said the 4-GPU pool was not found, for the user to remove."""
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    assert merge_kube(capsys, tmp_path, fleet, "prod", {**ONES, **FOURS})[0] == 0
    code, out, err = merge_kube(capsys, tmp_path, fleet, "prod", FOURS)  # the 1-GPU nodes are gone
    assert code == 0, err
    assert "updated" not in out and "added" not in out
    assert "unchanged Pool/prod-l4-24gb-2 (discovered as Pool/prod-l4-24gb: same kubernetes target)" in out
    assert f"not found {fleet / DISCOVERED_FILE}:15: Pool/prod-l4-24gb (nodes {{\"count\": 2}})" in out
    pools = load_fleet(fleet).pools
    assert pools["prod-l4-24gb"].spec.gpu.per_node == 1 and pools["prod-l4-24gb-2"].spec.gpu.per_node == 4


def test_a_hand_written_kubernetes_pool_over_several_groups_is_said_not_added_to(
        capsys: pytest.CaptureFixture[str], fleet: Path, tmp_path: Path) -> None:
    """k8s-l4 selects every L4 node, of 1 and of 4 GPUs: the first merge took it for the 1-GPU group
    and added the 4-GPU one, the second added the 1-GPU group again and called k8s-l4 not found
    (3 pools over 5 nodes, validate exit 0). It is neither group; the merge says so and adds none."""
    before = {path: path.read_text() for path in fleet.rglob("*.yaml")}
    for _ in range(2):
        code, out, err = merge_kube(capsys, tmp_path, fleet, "onprem-fra", {**ONES, **FOURS})
        assert code == 0, err
        assert not [line for line in out.splitlines() if line.startswith(("added", "updated", "not found"))]
        assert (f"ambiguous {fleet / 'pools' / 'pools.yaml'}:22: Pool/k8s-l4 (nodeSelector "
                '{"nvidia.com/gpu.product": "NVIDIA-L4"}) selects the nodes of 2 discovered groups, not one '
                "group's: onprem-fra-l4-24gb (one-0, one-1), onprem-fra-l4-24gb-2 (four-0, four-1, four-2); it "
                "is neither, and they were not added: add nvidia.com/gpu.count or a node-group label "
                "(placer.dev/pool) to its nodeSelector so that it selects exactly one group's nodes, and merge again"
                ) in " ".join(out.split())
        assert {path: path.read_text() for path in fleet.rglob("*.yaml")} == before
    # once it names the count, it is the 1-GPU group, and the 4-GPU group is added
    pools = fleet / "pools" / "pools.yaml"
    pools.write_text(POOLS.replace("nvidia.com/gpu.product: NVIDIA-L4\n",
                                   "nvidia.com/gpu.product: NVIDIA-L4\n        nvidia.com/gpu.count: '1'\n"))
    code, out, err = merge_kube(capsys, tmp_path, fleet, "onprem-fra", {**ONES, **FOURS})
    assert code == 0, err
    assert "ambiguous" not in out and "not found" not in out
    assert f"added {fleet / DISCOVERED_FILE}: Pool/onprem-fra-l4-24gb-2" in out
    assert "unchanged Pool/k8s-l4 (discovered as Pool/onprem-fra-l4-24gb: same kubernetes target)" in out


def test_a_hand_written_kubernetes_pool_is_found_by_the_nodes_its_selector_and_tolerations_select(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A pool selecting its nodes by a label discovery does not group by was "found no such group
    there ... remove it" on every merge, its nodes live, and its group added again."""
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    (fleet / "pools.yaml").write_text(LOCATIONS.split("---\n")[0] + """---
apiVersion: placer.dev/v1alpha1
kind: Pool
metadata: {name: gpu-workers}
spec:
  location: fra-dc1
  provider: kubernetes
  gpu: {type: L4-24GB, perNode: 1}
  nodes: {count: 3}
  usdPerGpuHour: 1
  target:
    kubernetes: {context: prod, namespace: ml, nodeSelector: {node-role.example.com/gpu: "true"}}
""")
    labels = {**L4_ONE, "node-role.example.com/gpu": "true"}
    with FakeKubeApiServer() as kube:
        for name in ("l4-a", "l4-b", "l4-c", "l4-d"):
            kube.add_node(name, gpus=1, labels=labels)
        # a node it does not tolerate is none of its nodes: a pool of its own
        kube.add_node("l4-e", gpus=1, labels=labels, taints=[{"key": "maintenance", "effect": "NoSchedule"}])
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"prod": kube.url}))
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig, "--merge", str(fleet))
    assert code == 0, err
    assert "not found" not in out and "ambiguous" not in out
    assert (f"updated {fleet / 'pools.yaml'}: Pool/gpu-workers (discovered as Pool/prod-l4-24gb: same kubernetes "
            "target): spec.nodes.count: 3 -> 4") in out.splitlines()
    assert f"added {fleet / DISCOVERED_FILE}: Pool/prod-l4-24gb-2" in out
    assert 'nodeSelector: {node-role.example.com/gpu: "true"}' in (fleet / "pools.yaml").read_text()


def test_a_group_no_fleet_would_take_is_left_out_with_why_and_the_rest_is_merged(fleet: Path) -> None:
    """One such group refused the whole merge (an ASG named with a line break: "remove it", though
    it is someone else's group), or was printed for validate to refuse (perNode 10^12)."""
    def kube(name: str, product: str, gpu: str, per_node: int) -> dict[str, Any]:
        target = {"context": "onprem-fra", "nodeSelector": {"nvidia.com/gpu.product": product}}
        return pool_doc(name, {**kube_l4(1)["spec"], "gpu": {"type": gpu, "perNode": per_node},
                               "target": {"kubernetes": target}})

    rtx = kube("rtx", "NVIDIA-RTX-PRO-6000", "NVIDIA-RTX-PRO-6000", 2)
    huge = kube("huge", "NVIDIA-L4-X", "L4-24GB", 10**12)
    newline = aws_p4d("nl-here", {"region": "eu-west-1", "autoScalingGroupName": "nl\nhere"})
    plan = plan_merge(fleet, [newline, huge, rtx, *nvml_docs("t4x2.json", location="fra-dc1")])
    assert plan.added == [f"{fleet / DISCOVERED_FILE}: Pool/infer-t4-07"]
    assert [line.split(":")[0] for line in plan.refused] == ["Pool/nl-here", "Pool/huge", "Pool/rtx"]
    assert "spec.gpu.perNode: Input should be less than or equal to 1024" in plan.refused[1]
    assert plan.refused[2].endswith("add a GPUType document named NVIDIA-RTX-PRO-6000 with its memoryGiB to the "
                                    "fleet, then discover again with --merge")
    write(plan.files)
    load_fleet(fleet)
    # once the fleet describes the GPU type, its pool is merged
    (fleet / "types.yaml").write_text("apiVersion: placer.dev/v1alpha1\nkind: GPUType\n"
                                      "metadata: {name: NVIDIA-RTX-PRO-6000}\nspec: {memoryGiB: 96}\n")
    assert plan_merge(fleet, [rtx]).added == [f"{fleet / DISCOVERED_FILE}: Pool/rtx"]
    assert refused([rtx, huge])[0] == []  # printed (no fleet to know the type from): left out too
    # the fleet's pool of a group left out is not "not found": discovery saw it
    bad_l4 = kube("l4-bad", "NVIDIA-L4", "L4-24GB", 10**12)
    assert plan_merge(fleet, [bad_l4], scopes=[("kubernetes", "onprem-fra")]).missing == []


def test_discover_gcp_says_a_group_could_not_be_read_not_that_there_are_no_gpus(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A 403 on a GPU group's template printed "Nothing found: no GPU pools there", exit 0."""
    with FakeCompute() as gcp:
        gcp.add_machine_type("n1-standard-8")
        template = gcp.add_template("acme", "t4", "n1-standard-8", accelerators=[("nvidia-tesla-t4", 1)])
        gcp.add_mig("acme", "infer", template, zone="us-central1-a", target_size=1)
        gcp.fail_next(5, 403, path_contains="instanceTemplates")
        code, out, err = run(capsys, "discover", "gcp", "--project", "acme", "--api-endpoint", gcp.endpoint)
    assert code == 1 and out == ""
    err = " ".join(err.split())
    assert "Nothing found" not in err and "403" in err and "skipped" in err  # the note says why
    assert err.endswith("found no GPU pool in the rest; the notes above say why: fix that and discover again")
    assert "Error: could not read 1 group (" in err and "infer" in err.split("Error: ")[1]
    # a read-only command's 403 names the read-only role: it told discovery to grant instanceAdmin
    assert "grant roles/compute.viewer on the project" in err, err
    assert "grant roles/compute.instanceAdmin.v1" not in err, err


def test_discover_gcp_refused_the_listing_names_the_read_only_role(capsys: pytest.CaptureFixture[str]) -> None:
    """A 403 on the project's listing of groups said "grant roles/compute.instanceAdmin.v1", a role that
    lets one resize every group: discovery only reads, and roles/compute.viewer is enough."""
    with FakeCompute() as gcp:
        gcp.fail_next(5, 403)
        code, out, err = run(capsys, "discover", "gcp", "--project", "acme", "--api-endpoint", gcp.endpoint)
    err = " ".join(err.split())
    assert code == 1 and out == "" and "403" in err, err
    assert "grant roles/compute.viewer on the project" in err and "grant roles/compute.instanceAdmin" not in err, err


def test_discover_gcp_tries_a_throttled_page_again_not_the_whole_listing(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A 429 on page 3 of a project's groups listed them again from page 1: a project whose read quota
    each page spends got one page further a try, and 14 pages failed, 'tried 6 times', exit 1."""
    monkeypatch.setenv("PLACER_RETRY_BASE_SECONDS", "0.001")
    with FakeCompute() as gcp:
        gcp.add_machine_type("n1-standard-8")
        template = gcp.add_template("acme", "t4", "n1-standard-8", accelerators=[("nvidia-tesla-t4", 1)])
        for i in range(14):
            gcp.add_mig("acme", f"infer-{i:02d}", template, zone=f"us-central1-{'abcf'[i % 4]}" if i < 4 else
                        f"europe-west{i}-a", target_size=1)
        gcp.add_mig("acme", "infer-more", template, zone="us-central1-a", target_size=1)
        gcp.state.page_size, gcp.state.throttle_pages = 1, True  # a scope a page: 14 pages; us-central1-a 2
        for scope in ([], ["--zone", "us-central1-a"]):
            code, out, err = run(capsys, "discover", "gcp", "--project", "acme", "--api-endpoint", gcp.endpoint,
                                 *scope)
            assert code == 0, err
            assert len([d for d in yaml.safe_load_all(out) if d["kind"] == "Pool"]) == (2 if scope else 15)
        assert len(gcp.requests_to("aggregated/instanceGroupManagers")) == 14 + 13
        assert len(gcp.requests_to("zones/us-central1-a/instanceGroupManagers", "GET")) == 2 + 1


def test_discover_gcp_by_project_number_writes_pools_that_validate(capsys: pytest.CaptureFixture[str],
                                                                   tmp_path: Path) -> None:
    """`discover gcp --project 123456789012` (a project's number, which the Compute API takes for its ID)
    wrote target.gcp.project as given, which validate refused: every pool it found was skipped ("a fleet
    would refuse it as discovered"), exit 0 with no pool."""
    with FakeCompute() as gcp:
        gcp.add_machine_type("g2-standard-4")
        l4 = gcp.add_template("123456789012", "l4", "g2-standard-4", accelerators=[("nvidia-l4", 1)])
        gcp.add_mig("123456789012", "infer", l4, zone="us-central1-a", target_size=1)
        code, out, err = run(capsys, "discover", "gcp", "--project", "123456789012", "--api-endpoint", gcp.endpoint)
    assert code == 0, err
    assert "skipped" not in out, out
    pools = [d for d in yaml.safe_load_all(out) if d["kind"] == "Pool"]
    assert [p["spec"]["target"]["gcp"]["project"] for p in pools] == ["123456789012"]
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "found.yaml").write_text(out)
    assert run(capsys, "validate", str(tmp_path / "f"))[0] == 0


def test_discover_gcp_names_every_group_of_a_template_or_machine_type_it_could_not_read(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A 403 on a machine type three GPU groups share said one of them could not be read; the
    other two were read from the remembered failure as groups without GPUs and left out unsaid."""
    with FakeCompute() as gcp:
        gcp.add_machine_type("a2-highgpu-8g", [("nvidia-tesla-a100", 8)])
        a100 = gcp.add_template("acme", "a100", "a2-highgpu-8g")
        l4 = gcp.add_template("acme", "l4", "g2-standard-4", accelerators=[("nvidia-l4", 1)])
        for name in ("train-a", "train-b", "train-c"):
            gcp.add_mig("acme", name, a100, zone="us-central1-a", target_size=1)
        gcp.add_mig("acme", "infer", l4, zone="us-central1-a", target_size=1)
        gcp.fail_next(1, 403, path_contains="machineTypes")
        code, out, err = run(capsys, "discover", "gcp", "--project", "acme", "--api-endpoint", gcp.endpoint)
    assert code == 0, err
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(out) if d["kind"] == "Pool"] == ["infer"]
    err = " ".join(err.split())
    assert "3 group(s) could not be read and are left out" in err
    assert all(f"group {name} (project acme" in err.split("left out")[1] for name in ("train-a", "train-b", "train-c"))
    assert "train-b (project acme, zone us-central1-a): skipped: reading machine type a2-highgpu-8g failed" in out


def test_a_place_named_twice_is_discovered_once(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--zone, --project or --context given twice read the place twice: each group came out as two
    pools of one target (the second renamed), a fleet `placer validate` refused (a group sizes one pool)."""
    with FakeCompute() as gcp:
        l4 = gcp.add_template("acme", "l4", "g2-standard-4", accelerators=[("nvidia-l4", 1)])
        gcp.add_mig("acme", "infer", l4, zone="us-central1-a", target_size=1)
        for twice in (["--zone", "us-central1-a", "--zone", "us-central1-a"], ["--project", "acme"]):
            code, out, err = run(capsys, "discover", "gcp", "--project", "acme", *twice, "--api-endpoint", gcp.endpoint)
            assert code == 0, err
            assert [d["metadata"]["name"] for d in yaml.safe_load_all(out) if d["kind"] == "Pool"] == ["infer"]
    with FakeKubeApiServer() as kube:
        kube.add_node("l4-a", gpus=1, labels=L4_ONE)
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"prod": kube.url}))
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig, "--context", "prod",
                             "--context", "prod")
    assert code == 0, err
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(out) if d["kind"] == "Pool"] == ["prod-l4-24gb"]


def test_one_unknown_gpu_product_at_two_memory_sizes_is_two_gpu_types(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Kubernetes named a GPU the catalog lacks by its product alone: groups of one product at two
    memory sizes (ECC on in one) were one GPUType of the first's memory, the other pool's GPUs typed
    larger than they are, and its note said a GPUType of its size was added. Named by its memory too,
    as AWS and NVML discovery name one, each group's type is its own."""
    ada, named = "NVIDIA-RTX-6000-Ada-Generation", "RTX-6000-Ada-Generation"  # its name, less the maker's
    with FakeKubeApiServer() as kube, FakeKubeApiServer() as edge:
        kube.add_node("ecc-off", gpus=1, labels={"nvidia.com/gpu.product": ada, "nvidia.com/gpu.memory": "49140",
                                                 "placer.dev/pool": "render"})
        kube.add_node("ecc-on", gpus=1, labels={"nvidia.com/gpu.product": ada, "nvidia.com/gpu.memory": "46068",
                                                "placer.dev/pool": "render-ecc"})
        edge.add_node("edge-1", gpus=1, labels={"nvidia.com/gpu.product": ada, "nvidia.com/gpu.memory": "40960"})
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"prod": kube.url, "edge": edge.url}))
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig, "--context", "prod",
                             "--context", "edge")
    assert code == 0, err
    docs = list(yaml.safe_load_all(out))
    types = {d["metadata"]["name"]: d["spec"]["memoryGiB"] for d in docs if d["kind"] == "GPUType"}
    assert types == {f"{named}-48GB": 48.0, f"{named}-45GB": 45.0, f"{named}-40GB": 40.0}
    pools = {d["metadata"]["name"]: d["spec"]["gpu"]["type"] for d in docs if d["kind"] == "Pool"}
    assert pools == {"render": f"{named}-48GB", "render-ecc": f"{named}-45GB",
                     f"edge-{named.lower()}-40gb": f"{named}-40GB"}
    notes = " ".join(out.split())
    assert f"pool render-ecc: GPU product '{ada}' is not in the built-in catalog: added a GPUType document named " \
           f"{named}-45GB of 45.0 GiB" in notes
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "fleet.yaml").write_text(out)
    fleet = load_fleet(tmp_path / "f")
    assert {name: fleet.gpu_types[pool.spec.gpu.type].memory_gib for name, pool in fleet.pools.items()} \
        == {"render": 48.0, "render-ecc": 45.0, f"edge-{named.lower()}-40gb": 40.0}


def test_two_contexts_of_one_api_server_are_discovered_once(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--context prod --context prod-admin, both of one API server, made a pool of each context over the
    same nodes: a fleet `placer validate` took, with every GPU of that cluster counted twice."""
    with FakeKubeApiServer() as kube:
        kube.add_node("l4-a", gpus=1, labels=L4_ONE)
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"prod": kube.url, "prod-admin": kube.url}))
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig, "--context", "prod",
                             "--context", "prod-admin")
        url = kube.url
    assert code == 0, err
    pools = [d for d in yaml.safe_load_all(out) if d["kind"] == "Pool"]
    assert [(p["metadata"]["name"], p["spec"]["target"]["kubernetes"]["context"]) for p in pools] \
        == [("prod-l4-24gb", "prod")]
    assert f"context prod-admin: the API server of context prod ({url}); its nodes are read once, as " \
           "context prod's" in " ".join(out.split())


def test_discover_gcp_leaves_out_a_group_whose_autoscaler_it_could_not_read(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A 403 on a group's autoscaler printed its pool with the placeholder sizes 0 to 8 and without the
    note that the autoscaler overrides placer, while the notes said it was skipped and left out."""
    with FakeCompute() as gcp:
        l4 = gcp.add_template("acme", "l4", "g2-standard-4", accelerators=[("nvidia-l4", 1)])
        gcp.add_mig("acme", "scaled", l4, zone="us-central1-a", target_size=1, autoscaler_max=5)
        gcp.add_mig("acme", "fixed", l4, zone="us-central1-a", target_size=1)
        gcp.fail_next(1, 403, path_contains="autoscalers")
        code, out, err = run(capsys, "discover", "gcp", "--project", "acme", "--api-endpoint", gcp.endpoint)
    assert code == 0, err
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(out) if d["kind"] == "Pool"] == ["fixed"]
    assert "reading the autoscaler of managed instance group scaled" in out and "skipped" in out
    assert "1 group(s) could not be read and are left out (see the notes): managed instance group scaled" in err


# ---------------------------------------------------------------- AWS against moto


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _asg(moto: str, region: str, name: str, instance_type: str) -> None:
    """An Auto Scaling group of 0-4 ``instance_type`` nodes from a launch configuration of its name."""
    autoscaling = boto3.Session(region_name=region).client("autoscaling", endpoint_url=moto)
    autoscaling.create_launch_configuration(LaunchConfigurationName=name, ImageId="ami-12c6146b",
                                            InstanceType=instance_type)
    autoscaling.create_auto_scaling_group(AutoScalingGroupName=name, LaunchConfigurationName=name, MinSize=0,
                                          MaxSize=4, DesiredCapacity=0, AvailabilityZones=[f"{region}a"])


def test_discover_aws_prints_pool_documents(capsys: pytest.CaptureFixture[str], moto: str, aws_env: None,
                                            tmp_path: Path) -> None:
    region = "eu-west-3"
    _asg(moto, region, "train-p4d", "p4d.24xlarge")

    code, out, err = run(capsys, "discover", "aws", "--region", region, "--endpoint-url", moto)
    assert code == 0, err
    assert out.startswith(f"# Discovered by placer 0.1.0 from AWS: {region} at ")
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out)}
    pool = docs[("Pool", "train-p4d")]
    assert pool["spec"]["gpu"] == {"type": "A100-40GB", "perNode": 8}
    assert pool["spec"]["nodes"] == {"min": 0, "max": 4}
    assert pool["spec"]["target"] == {"aws": {"region": region, "autoScalingGroupName": "train-p4d"}}
    assert docs[("Location", "aws-eu-west-3")]["spec"] == {"environment": "cloud", "jurisdiction": "EU"}
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "fleet.yaml").write_text(out)
    assert "train-p4d" in load_fleet(tmp_path / "f").pools


def test_discover_aws_price_notes_name_only_the_pools_it_prices(capsys: pytest.CaptureFixture[str], moto: str,
                                                                  aws_env: None, tmp_path: Path) -> None:
    """"usdPerGpuHour of discovered AWS pools comes from a built-in table" (and "is 0" of a pool,
    and "set spec.jurisdiction" of a Location) were said on every merge, of pools merged into the
    fleet's priced ones too: a merge never overwrites a price."""
    region = "ap-southeast-3"  # no jurisdiction guessed
    for name, instance_type in (("train-p4d", "p4d.24xlarge"), ("odd-p5", "p5e.48xlarge")):
        _asg(moto, region, name, instance_type)
    code, out, err = run(capsys, "discover", "aws", "--region", region, "--endpoint-url", moto)
    assert code == 0, err
    assert "# - usdPerGpuHour of train-p4d comes from a small built-in table" in out
    assert "# - Pool odd-p5: usdPerGpuHour is 0: no built-in price for p5e.48xlarge; fill it in" in out
    assert "# - Location aws-ap-southeast-3: set spec.jurisdiction" in out
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    (fleet / "fleet.yaml").write_text(f"""\
apiVersion: placer.dev/v1alpha1
kind: Location
metadata: {{name: jakarta}}
spec: {{environment: cloud, jurisdiction: ID}}
---
apiVersion: placer.dev/v1alpha1
kind: Pool
metadata: {{name: p4d}}
spec:
  location: jakarta
  provider: aws
  gpu: {{type: A100-40GB, perNode: 8}}
  nodes: {{min: 0, max: 4}}
  usdPerGpuHour: 2.5
  target: {{aws: {{region: {region}, autoScalingGroupName: train-p4d}}}}
---
apiVersion: placer.dev/v1alpha1
kind: Pool
metadata: {{name: p5e}}
spec:
  location: jakarta
  provider: aws
  gpu: {{type: H200-141GB, perNode: 8}}
  nodes: {{min: 0, max: 4}}
  usdPerGpuHour: 1.2
  target: {{aws: {{region: {region}, autoScalingGroupName: odd-p5}}}}
""")
    load_fleet(fleet)
    code, out, err = run(capsys, "discover", "aws", "--region", region, "--endpoint-url", moto, "--merge", str(fleet))
    assert code == 0, err
    assert "usdPerGpuHour" not in err and "jurisdiction" not in err  # the fleet's prices and location stay
    assert load_fleet(fleet).pools["p4d"].spec.usd_per_gpu_hour == 2.5


def test_discover_aws_leaves_out_only_the_eks_node_group_it_may_not_read(capsys: pytest.CaptureFixture[str], moto: str,
                                                                         aws_env: None) -> None:
    """One refused eks:DescribeNodegroup (a policy scoped to some clusters, or a group deleted since it
    was listed) dropped every node group of every cluster in the region: 'Nothing found: no GPU pools
    there', exit 0."""
    region = "sa-east-1"
    eks = boto3.Session(region_name=region).client("eks", endpoint_url=moto)
    for cluster in ("alpha", "beta"):
        eks.create_cluster(name=cluster, roleArn="arn:aws:iam::123456789012:role/eks",
                           resourcesVpcConfig={"subnetIds": ["subnet-1"]})
        for group in ("ng1", "ng2"):
            eks.create_nodegroup(clusterName=cluster, nodegroupName=group, nodeRole="arn:aws:iam::123456789012:role/n",
                                 subnets=["subnet-1"], instanceTypes=["g5.xlarge"],
                                 scalingConfig={"minSize": 0, "maxSize": 2, "desiredSize": 0})
    denied = json_error("AccessDeniedException", "User is not authorized to perform eks:DescribeNodegroup", 403)
    with FaultProxy(moto) as proxy:
        # Auto Scaling groups, EKS clusters, alpha's groups, alpha ng1, alpha ng2, beta's groups, beta ng1: then refused
        proxy.fail_after(7, denied)
        code, out, err = run(capsys, "discover", "aws", "--region", region, "--endpoint-url", proxy.endpoint)
    assert code == 0, err
    assert sorted(d["metadata"]["name"] for d in yaml.safe_load_all(out) if d["kind"] == "Pool") == [
        "alpha-ng1", "alpha-ng2", "beta-ng1"]
    assert "EKS node group 'ng2' of cluster 'beta' in sa-east-1 skipped: AWS refused" in out
    assert "1 group(s) could not be read and are left out (see the notes): EKS node group 'ng2' of cluster 'beta'" in err


def test_discover_aws_says_on_stderr_that_a_region_s_eks_clusters_could_not_be_listed(
        capsys: pytest.CaptureFixture[str], moto: str, aws_env: None, tmp_path: Path) -> None:
    """A refused eks:ListClusters in one region left every EKS node group of it out with a comment in
    the printed YAML alone: exit 0, nothing on stderr, and a merge said nothing at all, so a fleet
    went on without those GPUs. It is now a group left unread, said on stderr with the permission."""
    region = "me-south-1"
    _asg(moto, region, "train-p4d", "p4d.24xlarge")
    denied = json_error("AccessDeniedException", "User: arn:aws:iam::1:user/ops is not authorized to perform: "
                        "eks:ListClusters", 403)
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    with FaultProxy(moto) as proxy:
        for merge in ([], ["--merge", str(fleet)]):
            # the Auto Scaling groups, train-p4d's launch configuration, its instance type: then ListClusters
            proxy.fail_after(3, denied)
            code, out, err = run(capsys, "discover", "aws", "--region", region, "--endpoint-url", proxy.endpoint,
                                 *merge)
            assert code == 0, err
            said = " ".join(err.split())
            assert (f"1 group(s) could not be read and are left out (see the notes): the EKS node groups in {region}"
                    in said), said
            assert "allow eks:ListClusters, eks:ListNodegroups and eks:DescribeNodegroup" in said + " ".join(
                line.removeprefix("#").strip() for line in out.splitlines())
    assert "train-p4d" in load_fleet(fleet).pools


def test_a_place_refused_among_several_stops_discovery_and_says_how_to_discover_the_others(
        capsys: pytest.CaptureFixture[str], moto: str, aws_env: None, tmp_path: Path) -> None:
    """One region, project or context refused among several stops discovery, nothing printed: a fleet
    silently lacking a region's GPUs is worse. It said what was refused and to check the credentials,
    never that the other places can be discovered by leaving that one out."""
    _asg(moto, "af-south-1", "train-p4d", "p4d.24xlarge")
    refused = query_error("AccessDenied", "User: arn:aws:iam::1:user/ops is not authorized to perform: "
                          "autoscaling:DescribeAutoScalingGroups", 403)
    with FaultProxy(moto) as proxy:
        proxy.fail_next(1, refused)  # the first region's Auto Scaling groups
        code, out, err = run(capsys, "discover", "aws", "--region", "il-central-1", "--region", "af-south-1",
                             "--endpoint-url", proxy.endpoint)
    said = " ".join(err.split())
    assert code == 1 and out == "", said
    assert said.startswith("Error: AWS refused to list the Auto Scaling groups in il-central-1 (AccessDenied: "), said
    assert said.endswith("nothing was printed or written; to discover the other regions without it, run it again "
                         "without --region il-central-1"), said
    with FakeCompute() as gcp:
        gcp.add_machine_type("n1-standard-8")
        for project in ("acme", "beta"):
            template = gcp.add_template(project, "t4", "n1-standard-8", accelerators=[("nvidia-tesla-t4", 1)])
            gcp.add_mig(project, "infer", template, zone="us-central1-a", target_size=1)
        gcp.fail_next(1, 403, path_contains="projects/beta/aggregated")
        code, out, err = run(capsys, "discover", "gcp", "--project", "acme", "--project", "beta",
                             "--api-endpoint", gcp.endpoint)
    said = " ".join(err.split())
    assert code == 1 and out == "" and "project beta failed: 403" in said, said
    assert said.endswith("to discover the other projects without it, run it again without --project beta"), said
    with FakeKubeApiServer() as prod, FakeKubeApiServer() as edge:
        for kube in (prod, edge):
            kube.add_node("l4-a", gpus=1, labels=L4_ONE)
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"prod": prod.url, "edge": edge.url}))
        edge.fail_next(1, 403, path_contains="/api/v1/nodes")
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig, "--context", "prod",
                             "--context", "edge")
    said = " ".join(err.split())
    assert code == 1 and out == "" and "context edge: listing nodes of context edge failed: HTTP 403" in said, said
    assert said.endswith("to discover the other contexts without it, run it again without --context edge"), said
    code, out, err = run(capsys, "discover", "aws", "--region", "af-south-1", "--endpoint-url", moto)
    assert code == 0 and "train-p4d" in out, err  # the other region alone: discovered


def test_discover_aws_tries_a_throttled_page_again_not_the_whole_listing(
        capsys: pytest.CaptureFixture[str], moto: str, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A throttled page 2 of the Auto Scaling groups listed them again from page 1: an account throttled
    every other call (another tool sharing its API rate) never got past page 2, and discovery said
    'tried 6 times ... and it still failed', exit 1, where each call tried again gets through."""
    import providers.aws_discovery

    monkeypatch.setattr(providers.aws_discovery, "PAGE", 20, raising=False)  # 3 pages (they were 50 a page: 2)
    monkeypatch.setenv("PLACER_RETRY_BASE_SECONDS", "0.001")
    region = "ap-south-2"
    for i in range(51):
        _asg(moto, region, f"infer-{i:02d}", "g5.xlarge")
    throttled = query_error("Throttling", "Rate exceeded", 400)
    with FaultProxy(moto) as proxy:
        proxy.fail_next(0, throttled)
        proxy._faults = [None, throttled] * 200  # every other request throttled
        code, out, err = run(capsys, "discover", "aws", "--region", region, "--endpoint-url", proxy.endpoint)
    assert code == 0, err
    assert sorted(d["metadata"]["name"] for d in yaml.safe_load_all(out) if d["kind"] == "Pool") == [
        f"infer-{i:02d}" for i in range(51)]
    assert "retrying in" in err and "Rate exceeded" in err
    with FaultProxy(moto) as proxy:
        proxy.fail_next(6, throttled)
        code, out, err = run(capsys, "discover", "aws", "--region", region, "--endpoint-url", proxy.endpoint)
    said = " ".join(err.split()).split("Error: ")[-1]
    assert code == 1 and out == "", said
    assert said.startswith(f"AWS throttled the request to list the Auto Scaling groups in {region} (Throttling: "
                           "Rate exceeded): the account's API request rate is spent, shared with every tool calling "
                           "AWS there (an apply's Settings apply.parallelism adds to it); tried 6 times over "), said
    assert said.endswith("s and it still failed: wait a few minutes, then run `placer discover aws` again (nothing "
                         "was written)"), said


def test_discover_aws_reads_a_launch_configuration_groups_share_once(
        capsys: pytest.CaptureFixture[str], moto: str, aws_env: None) -> None:
    """Each Auto Scaling group's launch configuration or template was read once per group: three groups
    of one configuration made three DescribeLaunchConfigurations, 1,000 groups 1,000 calls. A refusal
    of the shared read leaves each of its groups out, said."""
    region = "ap-southeast-4"
    session = boto3.Session(region_name=region)
    autoscaling = session.client("autoscaling", endpoint_url=moto)
    autoscaling.create_launch_configuration(LaunchConfigurationName="g5-shared", ImageId="ami-12c6146b",
                                            InstanceType="g5.xlarge")
    for name in ("infer-a", "infer-b", "infer-c"):
        autoscaling.create_auto_scaling_group(AutoScalingGroupName=name, LaunchConfigurationName="g5-shared",
                                              MinSize=0, MaxSize=4, DesiredCapacity=0,
                                              AvailabilityZones=[f"{region}a"])
    with FaultProxy(moto) as proxy:
        proxy.fail_next(0, query_error("Throttling", "Rate exceeded"))
        code, out, err = run(capsys, "discover", "aws", "--region", region, "--endpoint-url", proxy.endpoint)
        assert code == 0, err
        assert sorted(d["metadata"]["name"] for d in yaml.safe_load_all(out) if d["kind"] == "Pool") == [
            "infer-a", "infer-b", "infer-c"]
        # the groups, the configuration once, the instance type, the EKS clusters
        assert proxy.requests == 4
        proxy.fail_after(1, query_error("AccessDenied", "not authorized to perform "
                                        "autoscaling:DescribeLaunchConfigurations", 403))
        code, out, err = run(capsys, "discover", "aws", "--region", region, "--endpoint-url", proxy.endpoint)
    said = " ".join(err.split())
    assert code == 1 and "could not read 3 groups (Auto Scaling group 'infer-a' in" in said, said
    assert (f"Auto Scaling group 'infer-c' in {region} skipped: AWS refused to read launch configuration "
            f"'g5-shared' in {region}, as for Auto Scaling group 'infer-a' in {region} above") in said, said


@pytest.mark.parametrize(("region", "source", "fault", "refused"), [
    ("us-east-2", "template", ec2_error("UnauthorizedOperation", "You are not authorized to perform this operation.",
                                        403), "ec2:DescribeLaunchTemplateVersions"),
    ("ap-northeast-2", "configuration", query_error(
        "AccessDenied", "User is not authorized to perform autoscaling:DescribeLaunchConfigurations", 403),
     "autoscaling:DescribeLaunchConfigurations"),
    ("ca-west-1", "template", ec2_error("InvalidParameterValue", "bad version", 400), None),
], ids=["template-refused", "configuration-refused", "template-rejected"])
def test_discover_aws_leaves_out_only_the_auto_scaling_group_it_may_not_read(
        capsys: pytest.CaptureFixture[str], moto: str, aws_env: None, region: str, source: str, fault: Fault,
        refused: str | None) -> None:
    """One refused read of an Auto Scaling group's launch template or configuration (a policy scoped
    to some templates) stopped discovery: 'AWS refused to read launch template ...', exit 1, and no
    other group of the account was discovered. A failure other than a refusal still stops it."""
    session = boto3.Session(region_name=region)
    autoscaling, ec2 = (session.client(s, endpoint_url=moto) for s in ("autoscaling", "ec2"))
    for group, instance_type in (("a-train", "p4d.24xlarge"), ("b-infer", "g5.xlarge")):
        if source == "template":
            ec2.create_launch_template(LaunchTemplateName=group, LaunchTemplateData={
                "ImageId": "ami-12c6146b", "InstanceType": instance_type})
            launch: dict[str, Any] = {"LaunchTemplate": {"LaunchTemplateName": group}}
        else:
            autoscaling.create_launch_configuration(LaunchConfigurationName=group, ImageId="ami-12c6146b",
                                                    InstanceType=instance_type)
            launch = {"LaunchConfigurationName": group}
        autoscaling.create_auto_scaling_group(AutoScalingGroupName=group, MinSize=0, MaxSize=4, DesiredCapacity=0,
                                              AvailabilityZones=[f"{region}a"], **launch)
    with FaultProxy(moto) as proxy:
        proxy.fail_after(1, fault)  # the Auto Scaling groups, then a-train's template or configuration: refused
        code, out, err = run(capsys, "discover", "aws", "--region", region, "--endpoint-url", proxy.endpoint)
    if refused is None:
        assert code == 1 and out == ""
        assert err.startswith("Error: AWS rejected the request to read launch template lt-") and "bad version" in err
        return
    assert code == 0, err
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(out) if d["kind"] == "Pool"] == ["b-infer"]
    group = f"Auto Scaling group 'a-train' in {region}"
    note = " ".join(line.removeprefix("#").strip() for line in out.splitlines() if line.startswith("#"))
    assert f"{group} skipped: AWS refused to read launch {source} " in note
    assert f"allow {refused} on it to discover the group" in note
    assert f"1 group(s) could not be read and are left out (see the notes): {group}" in err


def test_discover_aws_without_a_region_is_one_line(capsys: pytest.CaptureFixture[str], aws_env: None) -> None:
    code, out, err = run(capsys, "discover", "aws")
    assert code == 1 and out == ""
    assert err.strip() == ("Error: AWS discovery needs regions: pass --region (repeatable), or set AWS_REGION or "
                           "the profile's region (`aws configure set region eu-west-1`)")


def test_discover_gcp_without_credentials_says_how_to_get_them(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The README tour's `placer discover gcp` without Google credentials said "run `gcloud auth
    application-default login`, or name the projects": naming one, it failed for want of them."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    code, out, err = run(capsys, "discover", "gcp")
    assert code == 1 and out == ""
    assert err.startswith("Error: gcp: discovery needs credentials (") and "no-such-key.json" in err, err
    assert err.rstrip().endswith("): run `gcloud auth application-default login` or set "
                                 "GOOGLE_APPLICATION_CREDENTIALS, and pass --project where they name no project"), err


def test_discover_aws_of_a_malformed_region_says_the_region_is_wrong(capsys: pytest.CaptureFixture[str],
                                                                      aws_env: None) -> None:
    """--region eu_west_1 said 'AWS endpoint None is not a URL': set AWS_ENDPOINT_URL or unset it."""
    code, out, err = run(capsys, "discover", "aws", "--region", "eu_west_1")
    assert code == 1 and out == ""
    assert err.strip() == ("Error: 'eu_west_1' is not an AWS region name (such as eu-west-1): fix --region, "
                           "AWS_REGION or the pool's target.aws.region")


def test_discover_kubernetes_without_a_kubeconfig_file_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A kubeconfig path that names no file: the path and "no such file" (the client's own words
    were "Invalid kube-config file. No configuration found."), for --kubeconfig and KUBECONFIG."""
    missing = tmp_path / "nope"
    code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", str(missing))
    assert code == 1 and out == ""
    assert f"cannot load the current context from {missing}: no such file" in " ".join(err.split())
    monkeypatch.setenv("KUBECONFIG", f"{missing}{os.pathsep}{tmp_path / 'also-nope'}")
    code, out, err = run(capsys, "discover", "kubernetes")
    assert code == 1 and out == ""
    assert (f"from the default kubeconfig ({missing}{os.pathsep}{tmp_path / 'also-nope'}): no such file"
            in " ".join(err.split()))
    # and what to do: it said "check `kubectl config get-contexts` and target.kubernetes.context",
    # of a kubeconfig that is not there, to a newcomer who had passed --context
    monkeypatch.setenv("KUBECONFIG", str(missing))
    code, out, err = run(capsys, "discover", "kubernetes", "--context", "prod")
    assert code == 1 and out == ""
    assert err.strip() == (f"Error: cannot load context 'prod' from the default kubeconfig ({missing}): no such "
                           "file; give placer your clusters' kubeconfig: set KUBECONFIG to its path (discover: or "
                           "--kubeconfig FILE)"), err


@pytest.mark.parametrize(("text", "why"), [
    ("root:x:0:0:root:/root:/bin/bash\n", "a kubeconfig is a YAML mapping of clusters, contexts and users"),
    ("clusters: [1\n", "not YAML at line 2 (expected ',' or ']', but got '<stream end>')"),
])
def test_discover_kubernetes_of_a_file_that_is_no_kubeconfig_says_so(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, why: str) -> None:
    """KUBECONFIG naming a file that is no kubeconfig (/etc/passwd) said "'str' object does not
    support item assignment"; one that is no YAML gave the parser's error over four lines."""
    path = tmp_path / "config"
    path.write_text(text)
    monkeypatch.setenv("KUBECONFIG", str(path))
    code, out, err = run(capsys, "discover", "kubernetes")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert f"cannot load the current context from the default kubeconfig ({path}): {path} is not a kubeconfig: {why}" \
        in err, err


@pytest.mark.parametrize("second", ["apiVersion: v1\nkind: Config\npreferences: {}\n", "{}\n"],
                         ids=["preferences-only", "empty-mapping"])
def test_discover_kubernetes_reads_a_kubeconfig_list_with_a_file_of_no_cluster(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, second: str) -> None:
    """A file of a KUBECONFIG list holding only its preferences (kind: Config), or `{}` (no
    configuration, as an empty file), which the client merges as any, was refused as 'not a
    kubeconfig ... (kind: Config)'."""
    other = tmp_path / "other"
    other.write_text(second)
    with FakeKubeApiServer() as kube:
        kube.add_node("gpu-a", gpus=8, labels={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                                               "nvidia.com/gpu.memory": "81559"})
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"lab": kube.url})
        listed = f"{kubeconfig}{os.pathsep}{other}"
        monkeypatch.setenv("KUBECONFIG", listed)
        # the client reads KUBECONFIG once, when it is imported: as in a process started with it set
        monkeypatch.setattr("kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", listed)
        code, out, err = run(capsys, "discover", "kubernetes", "--context", "lab")
    assert code == 0 and "kind: Pool" in out, err


# ---------------------------------------------------------------- text that looks like a number


def test_discovered_text_that_yaml_1_2_reads_as_a_number_is_written_quoted(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A node pool named 8e1 and a taint 0o10 were written plain: the fleet loader (YAML 1.2) read
    them back as 80.0 and 8, and `placer validate` refused the file discover had just written."""
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    with FakeKubeApiServer() as kube:
        for name in ("gpu-a", "gpu-b"):
            kube.add_node(name, gpus=8, labels={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                                                "nvidia.com/gpu.memory": "81559", "karpenter.sh/nodepool": "8e1"},
                          taints=[{"key": "dedicated", "value": "0o10", "effect": "NoSchedule"}])
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"lab": kube.url})
        code, _, err = run(capsys, "discover", "kubernetes", "--kubeconfig", str(kubeconfig), "--context", "lab",
                           "--merge", str(fleet))
        assert code == 0, err
    code, out, err = run(capsys, "validate", str(fleet))
    assert code == 0, out + err
    target = next(iter(load_fleet(fleet).pools.values())).spec.target.kubernetes
    assert target is not None
    assert target.node_selector["karpenter.sh/nodepool"] == "8e1"
    assert [t.value for t in target.tolerations] == ["0o10"]
    text = (fleet / DISCOVERED_FILE).read_text()
    assert "karpenter.sh/nodepool: '8e1'" in text and "value: '0o10'" in text


def test_a_merge_edit_quotes_new_text_that_yaml_1_2_or_1_1_would_misread(fleet: Path) -> None:
    """ruamel.yaml wrote a new context -.5e3 plain (the fleet loader read -500.0, and the merged
    fleet no longer loaded) and a nodeSelector yes and toleration n plain (YAML 1.1 booleans)."""
    found = kube_l4(3)
    kube = found["spec"]["target"]["kubernetes"]
    kube["context"] = "-.5e3"
    kube["nodeSelector"]["acme.io/shared"] = "yes"
    kube["tolerations"].append({"key": "tier", "operator": "Equal", "value": "n", "effect": "NoSchedule"})
    write(edited(fleet, found))  # another context and selector: plan_merge would add it as a new pool
    target = load_fleet(fleet).pools["k8s-l4"].spec.target.kubernetes
    assert target is not None
    assert target.context == "-.5e3"
    assert target.node_selector == {"nvidia.com/gpu.product": "NVIDIA-L4", "acme.io/shared": "yes"}
    assert [t.value for t in target.tolerations] == [None, "n"]
    text = (fleet / "pools" / "pools.yaml").read_text()
    pool = next(d for d in yaml.safe_load_all(text) if d["metadata"]["name"] == "k8s-l4")  # YAML 1.1 too
    assert pool["spec"]["target"]["kubernetes"]["context"] == "-.5e3"
    assert pool["spec"]["target"]["kubernetes"]["nodeSelector"]["acme.io/shared"] == "yes"
    assert pool["spec"]["target"]["kubernetes"]["tolerations"][1]["value"] == "n"


def test_a_pool_holding_text_yaml_1_1_reads_otherwise_is_updated_in_place(tmp_path: Path) -> None:
    """The edit was re-read with PyYAML (YAML 1.1: shared: yes is true, 2.5e0 is text), so a valid
    fleet's pool could not be updated: "the YAML round trip differs"."""
    root = tmp_path / "fleet"
    root.mkdir()
    pools = root / "pools.yaml"
    pools.write_text(LAB_POOL)
    load_fleet(root)
    found = pool_doc("lab-h100", {
        "location": "lab", "provider": "kubernetes", "gpu": {"type": "H100-80GB", "perNode": 8},
        "nodes": {"count": 2}, "usdPerGpuHour": 0,
        "target": {"kubernetes": {"context": "lab", "namespace": "default",
                                  "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                                  "tolerations": [{"key": "dedicated", "operator": "Exists"}]}}})
    plan = plan_merge(root, [found])
    assert plan.updated == [f"{pools}: Pool/lab-h100: spec.nodes.count: 1 -> 2",
                            f"{pools}: Pool/lab-h100: spec.target.kubernetes.tolerations: "
                            '[{"key": "dedicated"}] -> [{"key": "dedicated"}, {"key": "dedicated", "operator": "Exists"}]']
    write(plan.files)
    text = pools.read_text()
    assert "labels: {shared: yes}" in text and "usdPerGpuHour: 2.5e0" in text and "nodes: {count: 2}" in text
    pool = load_fleet(root).pools["lab-h100"]
    assert dict(pool.labels) == {"shared": "yes"} and pool.spec.usd_per_gpu_hour == 2.5


def test_a_pool_without_tolerations_does_not_gain_an_empty_list(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Nodes without taints were discovered with tolerations: [], and merge wrote that into a pool
    that left the field out (the same thing), as an update."""
    root = tmp_path / "fleet"
    root.mkdir()
    pools = root / "pools.yaml"
    pools.write_text(LAB_POOL.replace("      tolerations: [{key: dedicated}]\n", ""))
    with FakeKubeApiServer() as kube:
        for name in ("gpu-a", "gpu-b"):
            kube.add_node(name, gpus=8, labels={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                                                "nvidia.com/gpu.memory": "81559"})
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"lab": kube.url})
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", str(kubeconfig), "--context", "lab",
                             "--merge", str(root))
    assert code == 0, err
    assert out.splitlines()[0] == (f"updated {pools}: Pool/lab-h100 (discovered as Pool/lab-h100-80gb: same "
                                   "kubernetes target): spec.nodes.count: 1 -> 2")
    assert "tolerations" not in out
    assert pools.read_text() == LAB_POOL.replace("      tolerations: [{key: dedicated}]\n", "").replace(
        "nodes: {count: 1}", "nodes: {count: 2}")


LAB_POOL = """\
apiVersion: placer.dev/v1alpha1
kind: Location
metadata: {name: lab}
spec: {environment: onprem, jurisdiction: NO}
---
apiVersion: placer.dev/v1alpha1
kind: Pool
metadata:
  name: lab-h100
  labels: {shared: yes}
spec:
  location: lab
  provider: kubernetes
  gpu: {type: H100-80GB, perNode: 8}
  nodes: {count: 1}
  usdPerGpuHour: 2.5e0
  target:
    kubernetes:
      context: lab
      namespace: default
      nodeSelector: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}
      tolerations: [{key: dedicated}]
"""


# ---------------------------------------------------------------- throttling: discovery tries again


@pytest.fixture
def short_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLACER_RETRY_BASE_SECONDS", "0.001")  # the knob apply's tests use: the same waits


def _spent(err: str, kind: str) -> str:
    """The error a discovery whose retries were spent ends with, in one line of words: how many
    tries over how long, and what to do."""
    said = " ".join(err.split())
    assert said.count("Error: ") == 1 and said.count("retrying in ") == 5, said  # 6 tries, each wait said
    error = said.split("Error: ")[1]
    assert "tried 6 times over " in error, error
    assert error.endswith(f"run `placer discover {kind}` again (nothing was written)"), error
    # the provider's advice to retry is not said of what was retried ("a retry should get through; tried 6 times")
    assert "retry" not in error.split("tried 6 times")[0], error
    return error


def test_discover_kubernetes_tries_a_throttled_listing_again(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                             short_waits: None) -> None:
    """One 429 or 503 on the node listing stopped the whole discovery, exit 1, "a retry should get
    through", where apply tries its calls again: discovery tries again as apply does, its Retry-After
    honoured, and stops only once the policy's tries are spent, saying so, nothing written."""
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    (fleet / "pools.yaml").write_text(LAB_POOL)
    with FakeKubeApiServer() as kube:
        kube.add_node("l4-a", gpus=1, labels=L4_ONE)
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"prod": kube.url}))
        kube.fail_next(1, 429, retry_after=1, path_contains="/nodes")
        kube.fail_next(1, 503, path_contains="/nodes")
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig)
        assert code == 0, err
        assert [d["metadata"]["name"] for d in yaml.safe_load_all(out) if d["kind"] == "Pool"] == ["prod-l4-24gb"]
        said = " ".join(err.split())
        assert said.count("retrying in ") == 2 and "as the server asked (Retry-After 1s)" in said, said
        kube.fail_next(100, 429, retry_after=None, path_contains="/nodes")
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig, "--merge", str(fleet))
    assert code == 1 and out == ""
    assert "HTTP 429" in _spent(err, "kubernetes")
    assert [p.name for p in fleet.iterdir()] == ["pools.yaml"] and (fleet / "pools.yaml").read_text() == LAB_POOL


def test_discover_aws_tries_a_throttled_call_again(capsys: pytest.CaptureFixture[str], moto: str, aws_env: None,
                                                   short_waits: None) -> None:
    region = "eu-north-1"
    _asg(moto, region, "infer-g5", "g5.xlarge")
    with FaultProxy(moto) as proxy:
        proxy.fail_next(2, query_error("Throttling", "Rate exceeded"))
        code, out, err = run(capsys, "discover", "aws", "--region", region, "--endpoint-url", proxy.endpoint)
        assert code == 0, err
        assert [d["metadata"]["name"] for d in yaml.safe_load_all(out) if d["kind"] == "Pool"] == ["infer-g5"]
        assert " ".join(err.split()).count("retrying in ") == 2, err  # discovery's tries, not botocore's, silent
        proxy.fail_next(100, query_error("RequestLimitExceeded", "Request limit exceeded."))
        code, out, err = run(capsys, "discover", "aws", "--region", region, "--endpoint-url", proxy.endpoint)
        assert proxy.requests == 6  # one request a try: botocore's own retries would be 3 a try
    assert code == 1 and out == ""
    assert "AWS throttled the request" in _spent(err, "aws")


def test_discover_gcp_tries_a_throttled_read_again(capsys: pytest.CaptureFixture[str], short_waits: None) -> None:
    with FakeCompute() as gcp:
        l4 = gcp.add_template("acme", "l4", "g2-standard-4", accelerators=[("nvidia-l4", 1)])
        gcp.add_mig("acme", "infer", l4, zone="us-central1-a", target_size=1)
        gcp.fail_next(1, 429, path_contains="instanceTemplates")
        gcp.fail_next(1, 503, path_contains="aggregated")
        code, out, err = run(capsys, "discover", "gcp", "--project", "acme", "--api-endpoint", gcp.endpoint)
        assert code == 0, err
        assert [d["metadata"]["name"] for d in yaml.safe_load_all(out) if d["kind"] == "Pool"] == ["infer"]
        assert " ".join(err.split()).count("retrying in ") == 2, err
        gcp.fail_next(100, 503)
        code, out, err = run(capsys, "discover", "gcp", "--project", "acme", "--api-endpoint", gcp.endpoint)
    assert code == 1 and out == ""
    assert "503" in _spent(err, "gcp")


# ---------------------------------------------------------------- discovered fleets, validated and planned


def planned(capsys: pytest.CaptureFixture[str], tmp_path: Path, discovered: str,
            *docs: dict[str, Any]) -> dict[str, Any]:
    """``discovered`` (what `placer discover` printed) as a fleet with ``docs`` beside it: it passes
    `placer validate`, and `placer plan --json`'s plan is returned."""
    fleet = tmp_path / "planned"
    fleet.mkdir()
    (fleet / "discovered.yaml").write_text(discovered)
    settings = {"apiVersion": API, "kind": "Settings", "metadata": {"name": "s"},
                "spec": {"state": {"path": str(tmp_path / "state.json")}}}
    (fleet / "more.yaml").write_text(yaml.safe_dump_all([*docs, settings], sort_keys=False))
    code, out, err = run(capsys, "validate", str(fleet))
    assert code == 0, out + err
    code, out, err = run(capsys, "plan", str(fleet), "--json")
    assert code == 0, err
    return dict(json.loads(out))


def eu_data_model(location: str, throughput: dict[str, float]) -> list[dict[str, Any]]:
    """A model whose data must stay in the EU, demanded at ``location``, and the policy that says so."""
    model = {"apiVersion": API, "kind": "Model", "metadata": {"name": "contracts", "labels": {"data": "eu"}},
             "spec": {"replica": {"gpus": 1, "memoryGiBPerGpu": 20}, "throughput": throughput,
                      "demand": [{"location": location, "rate": 100}]}}
    rule = {"apiVersion": API, "kind": "Policy", "metadata": {"name": "eu-data-stays-in-eu"},
            "spec": {"enforcement": "required", "models": {"labels": {"data": "eu"}},
                     "pools": {"jurisdiction": ["EU"]}, "rule": {"allowPools": {}}}}
    return [model, rule]


def test_discover_aws_says_london_and_zurich_are_no_eu(capsys: pytest.CaptureFixture[str], moto: str,
                                                       aws_env: None, tmp_path: Path) -> None:
    """Every `eu-` region was jurisdiction EU: London (eu-west-2) and Zurich (eu-central-2) too, so a
    required allowPools of EU placed data that must stay in the EU on a group in London."""
    for region in ("eu-west-2", "eu-central-2"):
        _asg(moto, region, f"infer-{region}", "g5.xlarge")
    code, out, err = run(capsys, "discover", "aws", "--region", "eu-west-2", "--region", "eu-central-2",
                         "--endpoint-url", moto)
    assert code == 0, err
    locations = {d["metadata"]["name"]: d["spec"].get("jurisdiction") for d in yaml.safe_load_all(out)
                 if d["kind"] == "Location"}
    assert locations == {"aws-eu-west-2": "GB", "aws-eu-central-2": "CH"}
    plan = planned(capsys, tmp_path, out, *eu_data_model("aws-eu-west-2", {"A10G-24GB": 200}))
    assert plan["placements"] == [] and plan["unmet"][0]["rate"] == 100


def test_discover_gcp_says_london_zurich_and_mexico_are_where_they_are(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Every `europe-` region was jurisdiction EU (London's europe-west2 and Zurich's europe-west6 too),
    and every `northamerica-` one CA (Mexico's northamerica-south1 too)."""
    with FakeCompute() as gcp:
        l4 = gcp.add_template("acme", "l4", "g2-standard-4", accelerators=[("nvidia-l4", 1)])
        for zone in ("europe-west2-a", "europe-west6-b", "northamerica-south1-a", "europe-west4-a"):
            gcp.add_mig("acme", f"infer-{zone}", l4, zone=zone, target_size=1)
        code, out, err = run(capsys, "discover", "gcp", "--project", "acme", "--api-endpoint", gcp.endpoint)
    assert code == 0, err
    locations = {d["metadata"]["name"]: d["spec"].get("jurisdiction") for d in yaml.safe_load_all(out)
                 if d["kind"] == "Location"}
    assert locations == {"gcp-europe-west2": "GB", "gcp-europe-west6": "CH", "gcp-northamerica-south1": "MX",
                         "gcp-europe-west4": "EU"}
    plan = planned(capsys, tmp_path, out, *eu_data_model("gcp-europe-west2", {"L4-24GB": 200}))
    assert plan["placements"] == [] and plan["unmet"][0]["rate"] == 100  # no Link: not served from europe-west4


def test_an_eks_clusters_pools_are_at_the_location_aws_discovery_names_its_region(
        capsys: pytest.CaptureFixture[str], moto: str, aws_env: None, tmp_path: Path) -> None:
    """Kubernetes discovery named an EKS cluster's Location by its region alone (`eu-south-1`), AWS
    discovery of that region `aws-eu-south-1`: merged into one fleet, two Locations no Link joins, so
    demand at the AWS one was never served by the cluster's GPUs, and the cluster's had no jurisdiction
    (a residency policy of EU left them out)."""
    region = "eu-south-1"
    _asg(moto, region, "infer-g5", "g5.xlarge")
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    code, _, err = run(capsys, "discover", "aws", "--region", region, "--endpoint-url", moto, "--merge", str(fleet))
    assert code == 0, err
    labels = {"nvidia.com/gpu.product": "NVIDIA-A10G", "nvidia.com/gpu.memory": "23028", "nvidia.com/gpu.count": "1",
              "eks.amazonaws.com/nodegroup": "g5", "topology.kubernetes.io/region": region,
              "topology.kubernetes.io/zone": f"{region}a"}
    with FakeKubeApiServer() as kube:
        for i in range(2):
            kube.add_node(f"ip-10-0-1-{i}.{region}.compute.internal", gpus=1, labels=labels,
                          provider_id=f"aws:///{region}a/i-0{i}")
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"prod": kube.url}))
        code, _, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig, "--merge", str(fleet))
    assert code == 0, err
    fleet_now = load_fleet(fleet)
    assert set(fleet_now.locations) == {f"aws-{region}"}
    assert fleet_now.pools["prod-g5"].spec.location == f"aws-{region}"
    text = (fleet / DISCOVERED_FILE).read_text()
    plan = planned(capsys, tmp_path, text, *eu_data_model(f"aws-{region}", {"A10G-24GB": 200}))
    assert [p["pool"] for p in plan["placements"]] == ["prod-g5"]  # its GPUs are paid for already (0 USD/h)


def test_discover_nvml_counts_no_gpu_in_mig_mode(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A GPU in MIG mode takes no whole-GPU replica, yet NVML discovery counted it (Kubernetes discovery
    leaves MIG slices out): the DGX whose GPUs 6 and 7 are in MIG mode was a pool of 8, and a plan put an
    8-GPU training replica there, which no scheduler can start. A host all of whose GPUs are is no pool."""
    code, out, err = run(capsys, "discover", "nvml", "--replay", str(NVML / "h100x8.json"))
    assert code == 0, err
    training = {"apiVersion": API, "kind": "Model", "metadata": {"name": "pretrain"},
                "spec": {"workload": "training", "replica": {"gpus": 8, "memoryGiBPerGpu": 70}, "replicas": 1}}
    plan = planned(capsys, tmp_path, out, training)
    assert plan["placements"] == [] and plan["pools"] == [{"pool": "dgx-h100-01", "nodes": 1, "gpusUsed": 0,
                                                          "gpusCapacity": 6}]
    recording = json.loads((NVML / "h100x8.json").read_text())
    for device in recording["devices"]:
        device["migMode"] = {"current": 1, "pending": 1}
    (tmp_path / "all-mig.json").write_text(json.dumps(recording))
    code, out, err = run(capsys, "discover", "nvml", "--replay", str(tmp_path / "all-mig.json"))
    assert code == 0, err
    assert list(yaml.safe_load_all(out)) == []
    assert "every H100-80GB GPU (0, 1, 2, 3, 4, 5, 6, 7) is in MIG mode" in " ".join(out.split())


def test_one_gpu_the_catalog_lacks_is_one_gpu_type_whichever_discovery_found_it(
        capsys: pytest.CaptureFixture[str], moto: str, aws_env: None, tmp_path: Path) -> None:
    """AWS names a B200 "B200", GPU Feature Discovery "NVIDIA-B200", NVML "NVIDIA B200": discovered
    into one fleet they were GPUTypes B200-179GB and NVIDIA-B200-179GB, and a model's throughput
    for B200-179GB left the cluster's B200s out (its demand there unmet)."""
    region = "ap-northeast-3"  # moto's in-process servers share their resources: a region no other test uses
    autoscaling = boto3.Session(region_name=region).client("autoscaling", endpoint_url=moto)
    ec2 = boto3.Session(region_name=region).client("ec2", endpoint_url=moto)
    ec2.create_launch_template(LaunchTemplateName="lt-b200", LaunchTemplateData={
        "ImageId": "ami-12c6146b", "InstanceType": "p6-b200.48xlarge"})
    autoscaling.create_auto_scaling_group(AutoScalingGroupName="train-b200", MinSize=0, MaxSize=2, DesiredCapacity=0,
                                          LaunchTemplate={"LaunchTemplateName": "lt-b200", "Version": "$Latest"},
                                          AvailabilityZones=[f"{region}a"])
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    code, _, err = run(capsys, "discover", "aws", "--region", region, "--endpoint-url", moto, "--merge", str(fleet))
    assert code == 0, err
    with FakeKubeApiServer() as kube:
        kube.add_node("gpu01.dc1.example.com", gpus=8, labels={
            "nvidia.com/gpu.product": "NVIDIA-B200", "nvidia.com/gpu.memory": "183359", "nvidia.com/gpu.count": "8"})
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"dc1": kube.url}))
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig, "--merge", str(fleet))
    assert code == 0, err
    assert "unchanged GPUType/B200-179GB" in out  # AWS discovery's, which the fleet has
    loaded = load_fleet(fleet)
    assert {name: pool.spec.gpu.type for name, pool in loaded.pools.items()} == {"train-b200": "B200-179GB",
                                                                                  "dc1-b200-179gb": "B200-179GB"}
    model = {"apiVersion": API, "kind": "Model", "metadata": {"name": "frontier"},
             "spec": {"replica": {"gpus": 8, "memoryGiBPerGpu": 150}, "throughput": {"B200-179GB": 500},
                      "demand": [{"location": "dc1", "rate": 500}]}}
    plan = planned(capsys, tmp_path, (fleet / DISCOVERED_FILE).read_text(), model)
    assert [(p["pool"], p["replicas"]) for p in plan["placements"]] == [("dc1-b200-179gb", 1)]


def test_a_merge_keeps_the_name_a_fleet_gave_a_gpu_type_the_catalog_lacks(fleet: Path) -> None:
    """Discovery named a GPU the catalog lacks with its maker (NVIDIA-RTX-A6000-48GB), now without it
    (RTX-A6000-48GB): a merge into a fleet of the old name keeps it, which its models' throughput names,
    and finds its NVML pool by it rather than adding the host's GPUs again as a second pool."""
    documents = nvml_docs("mixed.json", location="fra-dc1")
    for doc in documents:  # as discovery wrote them before
        if doc["kind"] == "GPUType":
            doc["metadata"]["name"] = "NVIDIA-RTX-A6000-48GB"
        if doc["kind"] == "Pool" and doc["spec"]["gpu"]["type"] == "RTX-A6000-48GB":
            doc["metadata"]["name"] = "ws-render-02-nvidia-rtx-a6000-48gb"
            doc["spec"]["gpu"]["type"] = "NVIDIA-RTX-A6000-48GB"
    write(merge(fleet, documents))
    plan = plan_merge(fleet, nvml_docs("mixed.json", location="fra-dc1"))
    assert not plan.updated
    assert "Pool/ws-render-02-nvidia-rtx-a6000-48gb (discovered as Pool/ws-render-02-rtx-a6000-48gb: same nvml " \
           "target)" in plan.unchanged
    assert [line for line in plan.added if "Pool/" in line] == []


def test_discover_gcp_names_a_gpu_the_catalog_lacks_as_the_other_discoveries_do(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """GCP's accelerator types tell no memory, so `discover gcp` skipped every group of a GPU outside
    the catalog (nvidia-b200, nvidia-tesla-v100, nvidia-tesla-p4): a fleet of a Kubernetes cluster's
    B200s and V100s got none of the project's. Now they are pools of the GPUType Kubernetes discovery
    named them by (one type per GPU, B200-179GB), and a model's throughput for it reaches both."""
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    code, _, err = merge_kube(capsys, tmp_path, fleet, "dc1", {
        "b200-01": (8, {"nvidia.com/gpu.product": "NVIDIA-B200", "nvidia.com/gpu.memory": "183359",
                        "nvidia.com/gpu.count": "8"}),
        "v100-01": (8, {"nvidia.com/gpu.product": "Tesla-V100-SXM2-16GB", "nvidia.com/gpu.memory": "16160",
                        "nvidia.com/gpu.count": "8"})})
    assert code == 0, err
    with FakeCompute() as gcp:
        gcp.add_machine_type("a4-highgpu-8g", [("nvidia-b200", 8)])
        gcp.add_machine_type("n1-standard-8")
        gcp.add_mig("acme", "train-b200", gcp.add_template("acme", "a4", "a4-highgpu-8g"), zone="us-central1-b",
                    target_size=1, autoscaler_max=2)
        gcp.add_mig("acme", "old-v100", gcp.add_template("acme", "v100", "n1-standard-8", accelerators=[
            ("nvidia-tesla-v100", 4)]), zone="us-central1-a", target_size=1)
        gcp.add_mig("acme", "video-p4", gcp.add_template("acme", "p4", "n1-standard-8", accelerators=[
            ("nvidia-tesla-p4", 1)]), zone="us-central1-a", target_size=1)
        code, out, err = run(capsys, "discover", "gcp", "--project", "acme", "--api-endpoint", gcp.endpoint,
                             "--merge", str(fleet))
    assert code == 0, err
    assert "unchanged GPUType/B200-179GB" in out and "unchanged GPUType/V100-16GB" in out
    assert f"added {fleet / DISCOVERED_FILE}: GPUType/P4-8GB" in out
    notes = " ".join(err.split())
    assert "GPUType P4-8GB: GCP accelerator nvidia-tesla-p4 is not in the built-in catalog; added it" in notes
    assert "B200-179GB: GCP" not in notes  # the fleet had it: not added
    loaded = load_fleet(fleet)
    assert {name: t.memory_gib for name, t in loaded.gpu_types.items() if name in ("B200-179GB", "V100-16GB",
                                                                                   "P4-8GB")} \
        == {"B200-179GB": 179.1, "V100-16GB": 15.8, "P4-8GB": 7.4}
    assert {name: pool.spec.gpu.type for name, pool in loaded.pools.items() if pool.spec.provider == "gcp"} \
        == {"train-b200": "B200-179GB", "old-v100": "V100-16GB", "video-p4": "P4-8GB"}
    model = {"apiVersion": API, "kind": "Model", "metadata": {"name": "frontier"},
             "spec": {"replica": {"gpus": 8, "memoryGiBPerGpu": 150}, "throughput": {"B200-179GB": 500},
                      "demand": [{"location": "gcp-us-central1", "rate": 500}]}}
    plan = planned(capsys, tmp_path, (fleet / DISCOVERED_FILE).read_text(), model)
    assert [(p["pool"], p["replicas"]) for p in plan["placements"]] == [("train-b200", 1)]


def test_discover_gcp_leaves_a_gpu_it_cannot_tell_the_memory_of_to_a_gpu_type_the_user_adds(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An accelerator type neither placer's tables nor its description place (a new one) was skipped,
    "add a GPUType document and a Pool by hand": the pool, target and all, to be written. Now the
    note names the GPUType to add and how to find its memory; with it in the fleet, a merge adds the
    pool. (A GPUType of a guessed memory would place models on GPUs they may not fit.)"""
    with FakeCompute() as gcp:
        gcp.add_machine_type("g4-standard-48", [("nvidia-rtx-pro-6000", 1)])
        gcp.add_accelerator_type("nvidia-rtx-pro-6000", "NVIDIA RTX PRO 6000")
        gcp.add_mig("acme", "render", gcp.add_template("acme", "g4", "g4-standard-48"), zone="us-central1-b",
                    target_size=1)
        code, out, err = run(capsys, "discover", "gcp", "--project", "acme", "--api-endpoint", gcp.endpoint)
        assert code == 0, err
        text = " ".join(out.split())
        assert "Pool" not in [d["kind"] for d in yaml.safe_load_all(out) if d]
        assert "accelerator nvidia-rtx-pro-6000 (NVIDIA RTX PRO 6000) is not in the built-in catalog and GCP " \
               "does not report its memory: pool render is of GPU type RTX-PRO-6000, which needs a GPUType " \
               "document named RTX-PRO-6000 in the fleet" in text
        assert "skipped Pool/render: its GPU type RTX-PRO-6000 is not built in" in text
        assert "add a GPUType document named RTX-PRO-6000 with its memoryGiB to the fleet, then discover again " \
               "with --merge" in text
        fleet = tmp_path / "fleet"
        fleet.mkdir()
        (fleet / "types.yaml").write_text(yaml.safe_dump({"apiVersion": API, "kind": "GPUType", "metadata": {
            "name": "RTX-PRO-6000"}, "spec": {"memoryGiB": 94.97}}))
        code, out, err = run(capsys, "discover", "gcp", "--project", "acme", "--api-endpoint", gcp.endpoint,
                             "--merge", str(fleet))
    assert code == 0, err
    assert f"added {fleet / DISCOVERED_FILE}: Pool/render" in out
    assert load_fleet(fleet).pools["render"].spec.gpu.type == "RTX-PRO-6000"


def test_a_merge_into_a_fleet_of_a_gpu_types_old_name_adds_no_second_gpu_type(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A fleet whose B200s are GPUType NVIDIA-B200-179GB (as Kubernetes discovery named them before),
    which its model lists: a merge of a cluster's and a GCP project's B200s kept that name for the pools
    it added, yet appended GPUType B200-179GB, unused, and said "added a GPUType document": noise in
    the fleet and in review. Now the fleet's GPUType is that GPU's, said unchanged, and nothing is added
    beside it."""
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    old = {"apiVersion": API, "kind": "GPUType", "metadata": {"name": "NVIDIA-B200-179GB"},
           "spec": {"memoryGiB": 179.1, "vendor": "nvidia"}}
    (fleet / "types.yaml").write_text(yaml.safe_dump(old, sort_keys=False))
    code, out, err = merge_kube(capsys, tmp_path, fleet, "dc1", {"b200-01": (8, {
        "nvidia.com/gpu.product": "NVIDIA-B200", "nvidia.com/gpu.memory": "183359", "nvidia.com/gpu.count": "8"})})
    assert code == 0, err
    with FakeCompute() as gcp:
        gcp.add_machine_type("a4-highgpu-8g", [("nvidia-b200", 8)])
        gcp.add_mig("acme", "train-b200", gcp.add_template("acme", "a4", "a4-highgpu-8g"), zone="us-central1-b",
                    target_size=1, autoscaler_max=2)
        code, gcp_out, gcp_err = run(capsys, "discover", "gcp", "--project", "acme", "--api-endpoint",
                                     gcp.endpoint, "--merge", str(fleet))
    assert code == 0, gcp_err
    for said, notes in ((out, err), (gcp_out, gcp_err)):
        assert "unchanged GPUType/NVIDIA-B200-179GB (discovered as GPUType/B200-179GB: the same GPU)" in said
        assert "GPUType/B200-179GB" not in said.replace("discovered as GPUType/B200-179GB", "")
        assert "GPUType" not in notes  # no "added a GPUType document"
    assert [d["kind"] for d in yaml.safe_load_all((fleet / DISCOVERED_FILE).read_text()) if d].count("GPUType") == 0
    loaded = load_fleet(fleet)
    assert [name for name in loaded.gpu_types if "B200" in name] == ["NVIDIA-B200-179GB"]
    assert {name: pool.spec.gpu.type for name, pool in loaded.pools.items()} \
        == {"dc1-b200-179gb": "NVIDIA-B200-179GB", "train-b200": "NVIDIA-B200-179GB"}


# ---------------------------------------------------------------- Kubernetes nodes as GKE and Karpenter label them

GKE_GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}  # GKE taints every GPU node


def add_gke_node(kube: FakeKubeApiServer, name: str, accelerator: str, count: int, node_pool: str, *,
                 gpus: int | None = None, labels: dict[str, str] | None = None) -> None:
    """A GPU node as GKE labels it without GPU Feature Discovery (Google's device plugin): its
    accelerator type and count, its node pool, its region; ``gpus`` allocatable (``count``)."""
    zone = "us-central1-a"
    kube.add_node(name, gpus=count if gpus is None else gpus, taints=[GKE_GPU_TAINT],
                  provider_id=f"gce://acme-prod/{zone}/{name}", labels={
                      "cloud.google.com/gke-accelerator": accelerator,
                      "cloud.google.com/gke-accelerator-count": str(count),
                      "cloud.google.com/gke-gpu": "true", "cloud.google.com/gke-gpu-driver-version": "default",
                      "cloud.google.com/gke-nodepool": node_pool, "cloud.google.com/gke-os-distribution": "cos",
                      "topology.kubernetes.io/region": "us-central1", "topology.kubernetes.io/zone": zone,
                      **(labels or {})})


def l4_model(location: str, rate: float) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "Model", "metadata": {"name": "chat"},
            "spec": {"replica": {"gpus": 1, "memoryGiBPerGpu": 20}, "throughput": {"L4-24GB": 100},
                     "demand": [{"location": location, "rate": rate}]}}


def test_discover_kubernetes_finds_gke_gpu_nodes_without_gpu_feature_discovery(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """GKE labels a GPU node cloud.google.com/gke-accelerator (and -count), and most GKE clusters run
    no GPU Feature Discovery: discovery said every such node had no nvidia.com/gpu.product label and left
    it out, so a GKE cluster was no pool at all. Its accelerator names the GPU as GCP discovery names it
    (nvidia-tesla-a100 is the 40 GB A100); MIG partitions and shared GPUs are left out with a note."""
    with FakeKubeApiServer() as kube:
        for i in range(2):
            add_gke_node(kube, f"gke-prod-l4-pool-{i}", "nvidia-l4", 1, "l4-pool")
        add_gke_node(kube, "gke-prod-a100-pool-0", "nvidia-tesla-a100", 8, "a100-pool")
        add_gke_node(kube, "gke-prod-h100-pool-0", "nvidia-h100-mega-80gb", 8, "h100-pool")
        add_gke_node(kube, "gke-prod-mig-pool-0", "nvidia-a100-80gb", 8, "mig-pool", gpus=56,
                     labels={"cloud.google.com/gke-gpu-partition-size": "1g.10gb"})
        add_gke_node(kube, "gke-prod-shared-pool-0", "nvidia-l4", 1, "shared-pool", gpus=4,
                     labels={"cloud.google.com/gke-gpu-sharing-strategy": "time-sharing",
                             "cloud.google.com/gke-max-shared-clients-per-gpu": "4"})
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"prod": kube.url}))
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig)
    assert code == 0, err
    pools = {d["metadata"]["name"]: d["spec"] for d in yaml.safe_load_all(out) if d["kind"] == "Pool"}
    assert {name: (spec["gpu"]["type"], spec["gpu"]["perNode"], spec["nodes"]["count"])
            for name, spec in pools.items()} == {"prod-l4-pool": ("L4-24GB", 1, 2),
                                                 "prod-a100-pool": ("A100-40GB", 8, 1),
                                                 "prod-h100-pool": ("H100-80GB", 8, 1)}
    l4 = pools["prod-l4-pool"]
    assert l4["location"] == "gcp-us-central1"  # as GCP discovery names the region
    assert l4["target"]["kubernetes"]["nodeSelector"] == {
        "cloud.google.com/gke-accelerator": "nvidia-l4", "cloud.google.com/gke-accelerator-count": "1",
        "cloud.google.com/gke-nodepool": "l4-pool"}
    assert l4["target"]["kubernetes"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}]
    said = " ".join(line.removeprefix("# ").strip() for line in out.splitlines() if line.startswith("#"))
    assert "no nvidia.com/gpu.product label" not in said, said
    assert ("context prod: nodes gke-prod-mig-pool-0 offer MIG partitions of 1g.10gb "
            "(cloud.google.com/gke-gpu-partition-size) as nvidia.com/gpu, not whole GPUs; placer places whole "
            "GPUs only, so they are not in any pool: give placer's models a node pool without GPU partitions") in said
    assert ("context prod: nodes gke-prod-shared-pool-0 share each GPU (cloud.google.com/gke-gpu-sharing-strategy="
            "time-sharing, cloud.google.com/gke-max-shared-clients-per-gpu=4)") in said
    plan = planned(capsys, tmp_path, out, l4_model("gcp-us-central1", 150))
    assert [(p["pool"], p["replicas"]) for p in plan["placements"]] == [("prod-l4-pool", 2)]


def test_discover_kubernetes_splits_a_karpenter_nodepool_of_spot_and_on_demand_nodes(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A Karpenter NodePool that allows both capacity types (karpenter.sh/capacity-type spot and
    on-demand) was one pool marked spot, "mixes spot and on-demand nodes": a model that may not run on
    spot (spotTolerant false, the default) lost the on-demand nodes too, its demand unmet. Each half is
    a pool of its own now, selecting its nodes by that label; the on-demand one keeps the group's name."""
    region = "us-east-1"
    with FakeKubeApiServer() as kube:
        for i, capacity in enumerate(("spot", "spot", "spot", "on-demand", "on-demand")):
            kube.add_node(f"ip-10-0-2-{i}.ec2.internal", gpus=1, provider_id=f"aws:///{region}a/i-0a{i}", labels={
                **L4_ONE, "karpenter.sh/nodepool": "gpu-l4", "karpenter.sh/capacity-type": capacity,
                "karpenter.sh/registered": "true", "karpenter.sh/initialized": "true",
                "karpenter.k8s.aws/instance-gpu-name": "l4", "karpenter.k8s.aws/instance-gpu-count": "1",
                "node.kubernetes.io/instance-type": "g6.xlarge", "topology.kubernetes.io/region": region,
                "topology.kubernetes.io/zone": f"{region}a"})
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"prod": kube.url}))
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig)
    assert code == 0, err
    pools = {d["metadata"]["name"]: d["spec"] for d in yaml.safe_load_all(out) if d["kind"] == "Pool"}
    assert {name: (spec["nodes"]["count"], spec.get("spot", False),
                   spec["target"]["kubernetes"]["nodeSelector"].get("karpenter.sh/capacity-type"))
            for name, spec in pools.items()} == {"prod-gpu-l4": (2, False, "on-demand"),
                                                 "prod-gpu-l4-spot": (3, True, "spot")}
    said = " ".join(line.removeprefix("# ").strip() for line in out.splitlines() if line.startswith("#"))
    assert "mixes spot" not in said and "also let its pods onto" not in said, said
    plan = planned(capsys, tmp_path, out, l4_model(f"aws-{region}", 200))
    assert [(p["pool"], p["replicas"]) for p in plan["placements"]] == [("prod-gpu-l4", 2)]


def test_discover_kubernetes_leaves_out_time_sliced_gpus(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A node whose 4 L4s the device plugin time-slices 4 ways (GFD: nvidia.com/gpu.replicas 4,
    sharing-strategy time-slicing, product NVIDIA-L4-SHARED; 16 allocatable) was a pool of 4 whole
    L4s with a note: a plan put 4 replicas there, which may all get shares of one L4 beside whatever
    else asks for the other 12. It is no pool now, and a note says why; the dedicated nodes are."""
    shared = {**L4_FOUR, "nvidia.com/gpu.product": "NVIDIA-L4-SHARED", "nvidia.com/gpu.replicas": "4",
              "nvidia.com/gpu.sharing-strategy": "time-slicing", "nvidia.com/device-plugin.config": "l4-shared"}
    older = {**L4_ONE, "nvidia.com/gpu.replicas": "2"}  # a GFD before the -SHARED product: the L4s' selector
    with FakeKubeApiServer() as kube:
        for i in range(2):
            kube.add_node(f"gpu-l4-{i}", gpus=1, labels=L4_ONE)
        kube.add_node("gpu-l4-shared-0", gpus=16, labels=shared)
        kube.add_node("gpu-l4-old-0", gpus=2, labels=older)
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"dc1": kube.url}))
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig)
    assert code == 0, err
    pools = {d["metadata"]["name"]: d["spec"] for d in yaml.safe_load_all(out) if d["kind"] == "Pool"}
    assert {name: (spec["gpu"]["perNode"], spec["nodes"]["count"]) for name, spec in pools.items()} \
        == {"dc1-l4-24gb": (1, 2)}
    said = " ".join(line.removeprefix("# ").strip() for line in out.splitlines() if line.startswith("#"))
    assert ("context dc1: nodes gpu-l4-shared-0 share each GPU (nvidia.com/gpu.replicas=4, "
            "nvidia.com/gpu.sharing-strategy=time-slicing, nvidia.com/gpu.product=NVIDIA-L4-SHARED): nvidia.com/gpu "
            "counts the shares, and a pod asking for one gets a share of a GPU other pods use too, not the GPU; "
            "placer places whole GPUs only, so they are not in any pool") in said, said
    assert "nodes gpu-l4-old-0 share each GPU (nvidia.com/gpu.replicas=2)" in said
    assert "pool dc1-l4-24gb: its nodeSelector also let its pods onto nodes gpu-l4-old-0, whose GPUs are shared" in said
    plan = planned(capsys, tmp_path, out, l4_model("dc1", 600))
    assert [(p["pool"], p["replicas"]) for p in plan["placements"]] == [("dc1-l4-24gb", 2)]
    assert plan["unmet"][0]["rate"] == 400


def test_a_pool_discovered_over_a_karpenter_nodepool_of_both_capacity_types_is_said_how_to_split(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A fleet's pool as discovery wrote it before its spot and on-demand nodes were two pools (5 nodes,
    spot) selects both: the merge calls it ambiguous and names the label that tells them apart, where it
    said to add nvidia.com/gpu.count, which it had. With that label it is the on-demand half, no longer
    spot, and the spot half is added."""
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    l4 = {k: v for k, v in L4_ONE.items() if k != "nvidia.com/gpu.memory"}
    old = {"apiVersion": API, "kind": "Pool", "metadata": {"name": "prod-gpu-l4"},
           "spec": {"location": "prod", "provider": "kubernetes", "gpu": {"type": "L4-24GB", "perNode": 1},
                    "nodes": {"count": 5}, "usdPerGpuHour": 0, "spot": True,
                    "target": {"kubernetes": {"context": "prod", "namespace": "default",
                                              "nodeSelector": {**l4, "karpenter.sh/nodepool": "gpu-l4"}}}}}
    place = {"apiVersion": API, "kind": "Location", "metadata": {"name": "prod"}, "spec": {"environment": "onprem"}}
    (fleet / "pools.yaml").write_text(yaml.safe_dump_all([old, place], sort_keys=False))
    nodes = {f"l4-{i}": (1, {**L4_ONE, "karpenter.sh/nodepool": "gpu-l4", "karpenter.sh/capacity-type": capacity})
             for i, capacity in enumerate(("spot", "spot", "spot", "on-demand", "on-demand"))}
    code, out, err = merge_kube(capsys, tmp_path, fleet, "prod", nodes)
    assert code == 0, err
    assert ("prod-gpu-l4 (l4-3, l4-4), prod-gpu-l4-spot (l4-0, l4-1, l4-2); it is neither, and they were not added: "
            "add karpenter.sh/capacity-type or a node-group label (placer.dev/pool) to its nodeSelector") \
        in " ".join(out.split()), out
    old["spec"]["target"]["kubernetes"]["nodeSelector"]["karpenter.sh/capacity-type"] = "on-demand"
    (fleet / "pools.yaml").write_text(yaml.safe_dump_all([old, place], sort_keys=False))
    code, out, err = merge_kube(capsys, tmp_path, fleet, "prod", nodes)
    assert code == 0, err
    assert f"updated {fleet / 'pools.yaml'}: Pool/prod-gpu-l4: spec.spot: true -> false" in out
    pools = load_fleet(fleet).pools
    assert {name: (pool.spec.nodes.count, pool.spec.spot) for name, pool in pools.items()} \
        == {"prod-gpu-l4": (2, False), "prod-gpu-l4-spot": (3, True)}


def test_discover_kubernetes_names_a_gke_accelerator_the_catalog_lacks_as_gcp_discovery_does(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A GKE node of an accelerator the catalog lacks (nvidia-b200, nvidia-tesla-v100) was a GPUType named
    by the accelerator (nvidia-b200, with a note to add it by hand), beside GCP discovery's B200-179GB of
    the same GPU: a model's throughput for the one missed the other's pools. It is now the GPU GCP
    discovery names, with its GPUType document, and a model of B200-179GB is placed on it."""
    with FakeKubeApiServer() as kube:
        for i in range(2):
            add_gke_node(kube, f"gke-prod-b200-pool-{i}", "nvidia-b200", 8, "b200-pool")
        add_gke_node(kube, "gke-prod-v100-pool-0", "nvidia-tesla-v100", 1, "v100-pool")
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"prod": kube.url}))
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig)
    assert code == 0, err
    docs = list(yaml.safe_load_all(out))
    pools = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "Pool"}
    assert {name: (spec["gpu"]["type"], spec["gpu"]["perNode"], spec["nodes"]["count"])
            for name, spec in pools.items()} == {"prod-b200-pool": ("B200-179GB", 8, 2),
                                                 "prod-v100-pool": ("V100-16GB", 1, 1)}
    assert {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "GPUType"} == {
        "B200-179GB": {"memoryGiB": 179.1, "vendor": "nvidia"}, "V100-16GB": {"memoryGiB": 15.8, "vendor": "nvidia"}}
    said = " ".join(line.removeprefix("# ").strip() for line in out.splitlines() if line.startswith("#"))
    assert "GKE accelerator 'nvidia-b200' is not in the built-in catalog: added a GPUType document named B200-179GB" \
        in said, said
    model = {"apiVersion": API, "kind": "Model", "metadata": {"name": "big"},
             "spec": {"replica": {"gpus": 8, "memoryGiBPerGpu": 150}, "throughput": {"B200-179GB": 100},
                      "demand": [{"location": "gcp-us-central1", "rate": 150}]}}
    plan = planned(capsys, tmp_path, out, model)
    assert [(p["pool"], p["replicas"]) for p in plan["placements"]] == [("prod-b200-pool", 2)]


def karpenter_labels(node_pool: str, gpu: str, count: int, mib: int, maker: str = "nvidia") -> dict[str, str]:
    """The labels Karpenter on AWS sets on a node of an instance type with GPUs (its name lowercased)."""
    return {"karpenter.sh/nodepool": node_pool, "karpenter.sh/capacity-type": "on-demand",
            "karpenter.k8s.aws/instance-gpu-name": gpu, "karpenter.k8s.aws/instance-gpu-count": str(count),
            "karpenter.k8s.aws/instance-gpu-memory": str(mib), "karpenter.k8s.aws/instance-gpu-manufacturer": maker}


def add_eks_node(kube: FakeKubeApiServer, name: str, instance_type: str, gpus: int, labels: dict[str, str]) -> None:
    """An EC2 instance node of an EKS cluster without GPU Feature Discovery: its instance type, region and
    ``labels`` (an EKS managed node group's or Karpenter's), ``gpus`` allocatable nvidia.com/gpu."""
    zone = "us-east-1a"
    kube.add_node(name, gpus=gpus, provider_id=f"aws:///{zone}/i-{name}", labels={
        "node.kubernetes.io/instance-type": instance_type, "kubernetes.io/arch": "amd64",
        "topology.kubernetes.io/region": "us-east-1", "topology.kubernetes.io/zone": zone, **labels})


def test_discover_kubernetes_finds_eks_gpu_nodes_without_gpu_feature_discovery_typed_as_aws_discovery_types_them(
        capsys: pytest.CaptureFixture[str], moto: str, aws_env: None, tmp_path: Path) -> None:
    """EKS managed node groups' and Karpenter's GPU nodes without GPU Feature Discovery carry their EC2
    instance type (and Karpenter's GPU labels), no nvidia.com/gpu.product: discovery left them all out, so an
    EKS cluster without GFD was no pool. They are pools selected by instance type and node group, of the
    GPUType AWS discovery names that instance type's GPU (p6-b200: B200-179GB, with its GPUType)."""
    with FakeKubeApiServer() as kube:
        for i in range(2):
            add_eks_node(kube, f"ip-10-0-1-{i}", "p5.48xlarge", 8, karpenter_labels("gpu-h100", "h100", 8, 81920))
            add_eks_node(kube, f"ip-10-0-2-{i}", "g6.xlarge", 1, {"eks.amazonaws.com/nodegroup": "l4-ng",
                                                                  "eks.amazonaws.com/capacityType": "ON_DEMAND"})
        add_eks_node(kube, "ip-10-0-3-0", "p6-b200.48xlarge", 8, karpenter_labels("gpu-b200", "b200", 8, 183359))
        # a family placer's table lacks is typed by Karpenter's labels; AMD GPUs and CPU nodes are no pool
        add_eks_node(kube, "ip-10-0-4-0", "p9.48xlarge", 8, karpenter_labels("gpu-next", "x300", 8, 300000))
        add_eks_node(kube, "ip-10-0-5-0", "g4ad.xlarge", 0, karpenter_labels("gpu-amd", "radeon-pro-v520", 1, 8192,
                                                                             "amd"))
        add_eks_node(kube, "ip-10-0-6-0", "m7i.large", 0, {"eks.amazonaws.com/nodegroup": "system"})
        add_eks_node(kube, "ip-10-0-7-0", "g6f.xlarge", 1, karpenter_labels("gpu-frac", "l4", 1, 2861))
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"prod": kube.url}))
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig)
    assert code == 0, err
    docs = list(yaml.safe_load_all(out))
    pools = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "Pool"}
    assert {name: (spec["gpu"]["type"], spec["gpu"]["perNode"], spec["nodes"]["count"], spec["location"])
            for name, spec in pools.items()} == {"prod-gpu-h100": ("H100-80GB", 8, 2, "aws-us-east-1"),
                                                 "prod-l4-ng": ("L4-24GB", 1, 2, "aws-us-east-1"),
                                                 "prod-gpu-b200": ("B200-179GB", 8, 1, "aws-us-east-1"),
                                                 "prod-gpu-next": ("X300-293GB", 8, 1, "aws-us-east-1")}
    assert pools["prod-l4-ng"]["target"]["kubernetes"]["nodeSelector"] == {
        "eks.amazonaws.com/nodegroup": "l4-ng", "node.kubernetes.io/instance-type": "g6.xlarge"}
    assert pools["prod-gpu-h100"]["target"]["kubernetes"]["nodeSelector"] == {
        "karpenter.sh/nodepool": "gpu-h100", "node.kubernetes.io/instance-type": "p5.48xlarge"}
    assert {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "GPUType"} == {
        "B200-179GB": {"memoryGiB": 179.1, "vendor": "nvidia"}, "X300-293GB": {"memoryGiB": 293.0, "vendor": "nvidia"}}
    said = " ".join(line.removeprefix("# ").strip() for line in out.splitlines() if line.startswith("#"))
    assert "nodes ip-10-0-7-0 offer nvidia.com/gpu but have no nvidia.com/gpu.product label" in said, said
    assert "ip-10-0-1-0" not in said and "ip-10-0-2-0" not in said, said
    # AWS discovery names the GPUs of those instance types alike (from EC2's, here moto's, DescribeInstanceTypes)
    region = "ap-southeast-2"  # no other test's: moto's in-process data is shared between test files
    for instance_type in ("p5.48xlarge", "g6.xlarge", "p6-b200.48xlarge"):
        _asg(moto, region, f"eks-{instance_type.replace('.', '-')}", instance_type)
    code, aws_out, err = run(capsys, "discover", "aws", "--region", region, "--endpoint-url", moto)
    assert code == 0, err
    assert sorted(d["spec"]["gpu"]["type"] for d in yaml.safe_load_all(aws_out) if d["kind"] == "Pool") \
        == ["B200-179GB", "H100-80GB", "L4-24GB"]
    plan = planned(capsys, tmp_path, out, l4_model("aws-us-east-1", 150))
    assert [(p["pool"], p["replicas"]) for p in plan["placements"]] == [("prod-l4-ng", 2)]


def test_the_gpus_placer_knows_of_ec2_instance_families_are_those_ec2_reports(moto: str, aws_env: None) -> None:
    """Kubernetes discovery types an EKS node by providers/places.py's table of instance families; AWS
    discovery by EC2's DescribeInstanceTypes. Every NVIDIA instance type of whole GPUs that EC2 (here
    moto's copy of it) knows is in the table with EC2's name and memory, so that both name one GPU alike."""
    ec2 = boto3.Session(region_name="us-east-1").client("ec2", endpoint_url=moto)
    reported = {(info["InstanceType"], gpu["Name"], gpu["MemoryInfo"]["SizeInMiB"])
                for page in ec2.get_paginator("describe_instance_types").paginate()
                for info in page["InstanceTypes"] for gpu in (info.get("GpuInfo") or {}).get("Gpus", [])
                if gpu["Manufacturer"] == "NVIDIA" and gpu["Count"] > 0}
    assert len(reported) > 40
    assert {(t, aws_instance_gpu(t)) for t, _, _ in reported} == {(t, (name, mib)) for t, name, mib in reported}


def test_an_eks_p6e_gb200_node_is_the_gb200_gcp_and_nvml_name(capsys: pytest.CaptureFixture[str],
                                                              tmp_path: Path) -> None:
    """p6e-gb200 (a P6e-GB200 UltraServer's instances, 4 GPUs each, 185 GB of HBM3e a GPU as AWS publishes
    it) was missing from the EC2 family table: an EKS node group of them without GPU Feature Discovery was
    "no nvidia.com/gpu.product label", in no pool. It is a pool of GB200-185GB, the name GCP discovery
    gives nvidia-gb200 and NVML an NVIDIA GB200 (189471 MiB), so one model throughput reaches both clouds."""
    with FakeKubeApiServer() as kube:
        add_eks_node(kube, "ip-10-0-9-0", "p6e-gb200.36xlarge", 4, {"eks.amazonaws.com/nodegroup": "gb200"})
        add_gke_node(kube, "gke-prod-gb200-pool-0", "nvidia-gb200", 4, "gb200-pool")
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"prod": kube.url}))
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig)
    assert code == 0, err
    docs = list(yaml.safe_load_all(out))
    pools = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "Pool"}
    assert {name: (spec["gpu"]["type"], spec["gpu"]["perNode"]) for name, spec in pools.items()} == {
        "prod-gb200": ("GB200-185GB", 4), "prod-gb200-pool": ("GB200-185GB", 4)}
    assert [d["spec"] for d in docs if d["kind"] == "GPUType"] == [{"memoryGiB": 185.0, "vendor": "nvidia"}]
    assert aws_instance_gpu("p6e-gb200.36xlarge") == ("GB200", 189471)


# ---------------------------------------------------------------- one node group, found by two discoveries


def merged_in_turn(capsys: pytest.CaptureFixture[str], fleet: Path, *commands: list[str]) -> list[str]:
    """Each discovery ``commands`` names merged into ``fleet`` in turn, as a user builds a fleet: their stdout."""
    fleet.mkdir()
    outs = []
    for command in commands:
        code, out, err = run(capsys, "discover", *command, "--merge", str(fleet))
        assert code == 0, out + err
        outs.append(out)
    return outs


def test_an_eks_node_group_found_by_aws_and_kubernetes_discovery_is_one_pool(
        capsys: pytest.CaptureFixture[str], moto: str, aws_env: None, tmp_path: Path) -> None:
    """An EKS managed node group is found by `discover aws` (the node group) and by `discover kubernetes`
    (its nodes, labelled eks.amazonaws.com/nodegroup): merged into one fleet they were two pools over the
    same 2 L4s, and the plan placed 4 replicas on them. The second merge keeps the fleet's pool, whichever
    came first, adds none, and says which it kept and why."""
    region = "ap-south-1"  # no other test's: moto's data is shared between test files
    eks = boto3.Session(region_name=region).client("eks", endpoint_url=moto)
    eks.create_cluster(name="prod", roleArn="arn:aws:iam::123456789012:role/eks",
                       resourcesVpcConfig={"subnetIds": ["subnet-1"]})
    eks.create_nodegroup(clusterName="prod", nodegroupName="l4-ng", nodeRole="arn:aws:iam::123456789012:role/n",
                         subnets=["subnet-1"], instanceTypes=["g6.xlarge"],
                         scalingConfig={"minSize": 0, "maxSize": 2, "desiredSize": 2})
    aws = ["aws", "--region", region, "--endpoint-url", moto]
    context = f"arn:aws:eks:{region}:123456789012:cluster/prod"  # as `aws eks update-kubeconfig` names it
    with FakeKubeApiServer() as kube:
        for i in range(2):
            kube.add_node(f"ip-10-0-2-{i}.{region}.compute.internal", gpus=1,
                          provider_id=f"aws:///{region}a/i-0{i}", labels={
                              "node.kubernetes.io/instance-type": "g6.xlarge", "eks.amazonaws.com/nodegroup": "l4-ng",
                              "topology.kubernetes.io/region": region})
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {context: kube.url}))
        k8s = ["kubernetes", "--kubeconfig", kubeconfig]
        code, printed, err = run(capsys, "discover", *k8s)
        assert code == 0, err
        annotations = [d["metadata"]["annotations"] for d in yaml.safe_load_all(printed) if d["kind"] == "Pool"]
        assert [a["placer.dev/node-groups"] for a in annotations] == [f"eks {region}/prod/l4-ng"]
        for first, then in ((aws, k8s), (k8s, aws)):
            fleet = tmp_path / f"fleet-{first[0]}"
            outs = merged_in_turn(capsys, fleet, first, then)
            pools = load_fleet(fleet).pools
            assert [pool.spec.provider for pool in pools.values()] == [first[0]], outs[1]
            kept = [line for line in outs[1].splitlines() if line.startswith("kept ")]
            assert len(kept) == 1, outs[1]
            assert f"({first[0]}, EKS node group l4-ng of cluster prod in {region}): discovered Pool/" in kept[0]
            assert f"({then[0]}) is over the same nodes, so it was not added and the fleet's pool is kept" in kept[0]
            assert "added" not in outs[1].replace("not added", "")
        # a context named otherwise tells no cluster: the node group's name and region are taken for it, said
        renamed = str(write_kubeconfig(tmp_path / "renamed", {"prod": kube.url}))
        outs = merged_in_turn(capsys, tmp_path / "fleet-renamed", aws, ["kubernetes", "--kubeconfig", renamed])
        kept = " ".join(line for line in outs[1].splitlines() if line.startswith("kept "))
        assert (f"(aws, EKS node group l4-ng of cluster prod in {region} (Kubernetes discovery could not tell the "
                "cluster of its nodes and took the node group's name and region for it: if they are another "
                "cluster's node group of that name, name the kubeconfig context after the cluster's ARN") in kept, outs
        code, unsure, err = run(capsys, "discover", "kubernetes", "--kubeconfig", renamed)
        assert code == 0, err
    # both printed and saved into one fleet, no merge: `placer validate` says which two pools they are
    code, printed_aws, err = run(capsys, "discover", *aws)
    assert code == 0, err
    both = tmp_path / "printed"
    both.mkdir()
    (both / "aws.yaml").write_text(printed_aws)
    (both / "kubernetes.yaml").write_text(yaml.safe_dump_all(  # its Location is the one aws.yaml holds
        [d for d in yaml.safe_load_all(printed) if d["kind"] != "Location"], sort_keys=False))
    code, out, err = run(capsys, "validate", str(both))
    said = " ".join((out + err).split())
    assert "1 error in the fleet" in said, said
    assert code != 0 and (f"pool prod-l4-ng (aws, {both / 'aws.yaml'}:" in said), said
    assert (f"is over the same nodes, EKS node group l4-ng of cluster prod in {region}: the plan counts their GPUs "
            "twice; keep one of the two pools") in said, said
    pools = [d for d in yaml.safe_load_all(unsure) if d["kind"] == "Pool"]
    pools[0]["metadata"]["name"] = "k8s-l4"  # the context's name made it prod-l4-ng, the aws pool's
    (both / "kubernetes.yaml").write_text(yaml.safe_dump_all(pools, sort_keys=False))  # cluster not known: a warning
    code, out, err = run(capsys, "validate", str(both))
    said = " ".join((out + err).split())
    assert code == 0 and "is over the same nodes, EKS node group l4-ng of cluster prod in" in said, said
    assert "(Kubernetes discovery could not tell the cluster of its nodes" in said, said


def test_a_self_managed_node_group_found_by_aws_and_kubernetes_discovery_is_one_pool(
        capsys: pytest.CaptureFixture[str], moto: str, aws_env: None, tmp_path: Path) -> None:
    """An Auto Scaling group that is no EKS managed node group but whose nodes join an EKS cluster (a
    self-managed node group, eksctl's) was a pool of `discover aws` (named after the group) and another of
    `discover kubernetes` (its nodes): merged into one fleet, two pools over the same 2 L4s. eksctl names
    the node group on both sides, the group's tags and the nodes' labels alpha.eksctl.io/nodegroup-name and
    alpha.eksctl.io/cluster-name: both discoveries write it as placer.dev/node-groups, the second merge keeps
    the fleet's pool, whichever came first, and validate refuses the two printed side by side."""
    region = "eu-south-2"  # no other test's: moto's data is shared between test files
    asg = "eksctl-prod-nodegroup-l4-self-NodeGroup-1A2B3C"  # as eksctl's CloudFormation names it
    _asg(moto, region, asg, "g6.xlarge")
    boto3.Session(region_name=region).client("autoscaling", endpoint_url=moto).create_or_update_tags(Tags=[
        {"ResourceId": asg, "ResourceType": "auto-scaling-group", "Key": key, "Value": value, "PropagateAtLaunch": True}
        for key, value in {"alpha.eksctl.io/nodegroup-name": "l4-self", "alpha.eksctl.io/nodegroup-type": "unmanaged",
                           "alpha.eksctl.io/cluster-name": "prod", "kubernetes.io/cluster/prod": "owned"}.items()])
    aws = ["aws", "--region", region, "--endpoint-url", moto]
    with FakeKubeApiServer() as kube:
        for i in range(2):
            kube.add_node(f"ip-10-1-0-{i}.{region}.compute.internal", gpus=1, provider_id=f"aws:///{region}a/i-1{i}",
                          labels={"node.kubernetes.io/instance-type": "g6.xlarge", "topology.kubernetes.io/region": region,
                                  "alpha.eksctl.io/nodegroup-name": "l4-self", "alpha.eksctl.io/cluster-name": "prod"})
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"prod": kube.url}))
        k8s = ["kubernetes", "--kubeconfig", kubeconfig]
        code, printed, err = run(capsys, "discover", *k8s)
        assert code == 0, err
        code, printed_aws, err = run(capsys, "discover", *aws)
        assert code == 0, err
        for out in (printed, printed_aws):
            assert [d["metadata"]["annotations"].get("placer.dev/node-groups") for d in yaml.safe_load_all(out)
                    if d["kind"] == "Pool"] == [f"eksctl {region}/prod/l4-self"], out
        for first, then in ((aws, k8s), (k8s, aws)):
            fleet = tmp_path / f"fleet-{first[0]}"
            outs = merged_in_turn(capsys, fleet, first, then)
            assert [pool.spec.provider for pool in load_fleet(fleet).pools.values()] == [first[0]], outs[1]
            kept = [line for line in outs[1].splitlines() if line.startswith("kept ")]
            assert len(kept) == 1, outs[1]
            assert (f"({first[0]}, self-managed node group l4-self of cluster prod in {region} "
                    "(alpha.eksctl.io/nodegroup-name)): discovered Pool/") in kept[0], kept
            assert f"({then[0]}) is over the same nodes, so it was not added and the fleet's pool is kept" in kept[0]
            assert "added" not in outs[1].replace("not added", "")
        assert ": Pool/prod-l4-24gb (kubernetes, self-managed node group l4-self" in kept[0], kept  # the last: k8s first
        assert ": discovered Pool/eksctl-prod-nodegroup-l4-self-nodegroup-1a2b3c (aws) is over" in kept[0], kept
        # a fleet's aws pool merged before discovery wrote the annotation gains it on the next aws merge
        old = tmp_path / "old"
        old.mkdir()
        (old / "aws.yaml").write_text(printed_aws.replace(f"placer.dev/node-groups: eksctl {region}/prod/l4-self", ""))
        outs = [run(capsys, "discover", *command, "--merge", str(old)) for command in (aws, k8s)]
        assert [code for code, _, _ in outs] == [0, 0], outs
        assert f"placer.dev/node-groups: (none) -> eksctl {region}/prod/l4-self" in outs[0][1], outs[0]
        assert [line for line in outs[1][1].splitlines() if line.startswith("kept ")], outs[1]
        assert len(load_fleet(old).pools) == 1
    # both printed and saved into one fleet, no merge: `placer validate` says which two pools they are
    both = tmp_path / "printed"
    both.mkdir()
    (both / "aws.yaml").write_text(printed_aws)
    (both / "kubernetes.yaml").write_text(yaml.safe_dump_all(  # its Location is the one aws.yaml holds
        [d for d in yaml.safe_load_all(printed) if d["kind"] != "Location"], sort_keys=False))
    code, out, err = run(capsys, "validate", str(both))
    said = " ".join((out + err).split())
    assert code != 0 and "1 error in the fleet" in said, said
    assert (f"is over the same nodes, self-managed node group l4-self of cluster prod in {region} "
            "(alpha.eksctl.io/nodegroup-name): the plan counts their GPUs twice; keep one of the two pools") in said, said


def _eks_group(eks: Any, cluster: str, name: str, instance_type: str, spot: bool, high: int = 4) -> None:
    eks.create_nodegroup(clusterName=cluster, nodegroupName=name, nodeRole="arn:aws:iam::123456789012:role/n",
                         subnets=["subnet-1"], instanceTypes=[instance_type], capacityType="SPOT" if spot else "ON_DEMAND",
                         scalingConfig={"minSize": 0, "maxSize": high, "desiredSize": 0})


def test_discover_aws_finds_an_eks_replacement_group_as_the_pool_it_replaces(
        capsys: pytest.CaptureFixture[str], moto: str, aws_env: None, tmp_path: Path) -> None:
    """A spot change of an EKS pool makes its new node group as <nodegroup>-alt before the old one goes
    (diff.sized_target): discovery listed h100-alt as a pool of its own (ml-h100-alt, target h100-alt),
    beside ml-h100 mid-replacement (two pools over one pool's GPUs), and after it a fleet merge added
    it as a new pool. Now it is the pool the fleet knows, under its name, said in a note: alone (after
    the swap), or with the group it replaces (mid-swap: one pool, the newer group's spot and range)."""
    region = "us-west-1"
    eks = boto3.Session(region_name=region).client("eks", endpoint_url=moto)
    for cluster in ("before", "after", "mid", "back"):
        eks.create_cluster(name=cluster, roleArn="arn:aws:iam::123456789012:role/eks",
                           resourcesVpcConfig={"subnetIds": ["subnet-1"]})
    _eks_group(eks, "before", "l4", "g6.xlarge", spot=False)  # no replacement: as it was
    _eks_group(eks, "after", "l4-alt", "g6.xlarge", spot=True)  # the swap done: h100 is gone
    _eks_group(eks, "mid", "l4", "g6.xlarge", spot=False, high=2)  # mid-swap, to spot
    _eks_group(eks, "mid", "l4-alt", "g6.xlarge", spot=True, high=6)
    _eks_group(eks, "back", "l4-alt", "g6.xlarge", spot=True, high=2)  # mid-swap back to on-demand: l4 is the new one
    _eks_group(eks, "back", "l4", "g6.xlarge", spot=False, high=6)

    code, out, err = run(capsys, "discover", "aws", "--region", region, "--endpoint-url", moto)
    assert code == 0, err
    pools = {d["metadata"]["name"]: d["spec"] for d in yaml.safe_load_all(out) if d["kind"] == "Pool"}
    assert sorted(pools) == ["after-l4", "back-l4", "before-l4", "mid-l4"], out
    assert {name: (spec["target"]["aws"]["eks"]["nodegroup"], spec["spot"], spec["nodes"])
            for name, spec in pools.items()} == {
        "before-l4": ("l4", False, {"min": 0, "max": 4}), "after-l4": ("l4", True, {"min": 0, "max": 4}),
        "mid-l4": ("l4", True, {"min": 0, "max": 6}), "back-l4": ("l4", False, {"min": 0, "max": 6})}
    text = " ".join(out.replace("\n# ", " ").split())
    assert (f"aws {region}: EKS node group 'l4-alt' of cluster 'after' in {region} is the replacement placer makes "
            "of node group 'l4' (a change of the pool's spot replaces its node group") in text, out
    assert ("discovered as one pool, after-l4, target nodegroup 'l4' (the name the fleet knows; placer finds the "
            "replacement through its state), its spot and nodes those of 'l4-alt' (spot, min 0, max 4)") in text, out
    assert (f"EKS node groups 'l4' and 'l4-alt' of cluster 'mid' in {region} are one pool mid-replacement, 'l4-alt' "
            "the newer") in text, out
    assert "the older group's nodes are going and are not added" in text, out
    assert f"EKS node groups 'l4' and 'l4-alt' of cluster 'back' in {region} are one pool mid-replacement, 'l4' " \
        "the newer" in text, out
    assert "cluster 'before'" not in text, out

    fleet = tmp_path / "fleet"  # the fleet names l4; after the swap discovery updates it, adds none
    fleet.mkdir()
    (fleet / "fleet.yaml").write_text(f"""\
apiVersion: placer.dev/v1alpha1
kind: Location
metadata: {{name: sf}}
spec: {{environment: cloud, jurisdiction: US}}
---
apiVersion: placer.dev/v1alpha1
kind: Pool
metadata: {{name: l4}}
spec:
  location: sf
  provider: aws
  gpu: {{type: L4-24GB, perNode: 1}}
  nodes: {{min: 0, max: 4}}
  usdPerGpuHour: 0.8
  spot: false
  target: {{aws: {{region: {region}, eks: {{cluster: after, nodegroup: l4}}}}}}
""")
    code, out, err = run(capsys, "discover", "aws", "--region", region, "--endpoint-url", moto, "--merge", str(fleet))
    assert code == 0, out + err
    merged = load_fleet(fleet).pools
    assert "after-l4" not in merged and "after-l4-alt" not in merged, out
    assert merged["l4"].spec.spot is True
    assert merged["l4"].spec.target.aws is not None and merged["l4"].spec.target.aws.eks is not None
    assert merged["l4"].spec.target.aws.eks.nodegroup == "l4"

    # a fleet that names the replacement (an earlier discovery wrote after-l4-alt): the same pool, its name kept
    (fleet / "fleet.yaml").write_text((fleet / "fleet.yaml").read_text().replace("name: l4}", "name: after-l4-alt}")
                                      .replace("nodegroup: l4}", "nodegroup: l4-alt}"))
    code, out, err = run(capsys, "discover", "aws", "--region", region, "--endpoint-url", moto, "--merge", str(fleet))
    assert code == 0, out + err
    merged = load_fleet(fleet).pools
    assert "after-l4" not in merged and "l4" not in merged, out
    assert "unchanged Pool/after-l4-alt (discovered as Pool/after-l4: same aws target)" in out
    assert merged["after-l4-alt"].spec.target.aws is not None and merged["after-l4-alt"].spec.target.aws.eks is not None
    assert merged["after-l4-alt"].spec.target.aws.eks.nodegroup == "l4-alt"


def _described(name: str, status: str, hour: int, spot: bool) -> dict[str, Any]:
    """A node group as DescribeNodegroup answers it (boto3's ``["nodegroup"]``), of cluster ml, made at ``hour``."""
    made = dt.datetime(2026, 12, 1, hour, tzinfo=dt.UTC)
    return {"nodegroupName": name, "clusterName": "ml", "version": "1.31", "releaseVersion": "1.31.2-20261120",
            "nodegroupArn": f"arn:aws:eks:us-west-1:123456789012:nodegroup/ml/{name}/0ac9a1b2",
            "createdAt": made, "modifiedAt": made, "status": status,
            "capacityType": "SPOT" if spot else "ON_DEMAND", "instanceTypes": ["g6.xlarge"],
            "scalingConfig": {"minSize": 0, "maxSize": 4, "desiredSize": 0}, "subnets": ["subnet-1"],
            "amiType": "AL2_x86_64_GPU", "nodeRole": "arn:aws:iam::123456789012:role/n", "diskSize": 20,
            "resources": {"autoScalingGroups": [{"name": f"eks-{name}-0ac9a1b2"}]}, "health": {"issues": []},
            "labels": {}, "tags": {}}


SERVING = ("CREATING", "ACTIVE", "UPDATING", "DEGRADED")  # runs its nodes, or will
GONE = ("CREATE_FAILED", "DELETING", "DELETE_FAILED")  # has none, or is going


@pytest.mark.parametrize("newer", [*SERVING, *GONE])
@pytest.mark.parametrize("older", ["ACTIVE", "DEGRADED", *GONE])
@pytest.mark.parametrize("new_name", ["l4-alt", "l4"], ids=["to-alt", "back"])
def test_mid_swap_the_pool_is_the_newer_node_group_unless_it_failed_or_is_going(older: str, newer: str,
                                                                                new_name: str) -> None:
    """Mid-swap a pool's EKS node groups are l4 and l4-alt, either one the newer: the pool is the newer
    one's where it runs its nodes or will (creating, active, updating, or degraded: a health issue, its nodes
    still run), the older one's where the newer has failed to be made or is going (or failed to go), and a
    group that is going or failed loses whatever its age; both gone, the one picked is gone too (skipped)."""
    from providers.aws_discovery import pool_nodegroup

    old_name = "l4" if new_name == "l4-alt" else "l4-alt"
    old, new = _described(old_name, older, 9, spot=False), _described(new_name, newer, 11, spot=True)
    for members in ([old, new], [new, old]):  # as listed, either way
        picked = pool_nodegroup(members, "l4")
        if newer in SERVING or older in GONE:
            assert picked is new, (older, newer)
        else:
            assert picked is old, (older, newer)
    # made in the same second: the one that serves, and where both do (or neither), the replacement, l4-alt
    same = _described(new_name, newer, 9, spot=True)
    if (newer in SERVING) != (older in SERVING):
        assert pool_nodegroup([old, same], "l4") is (same if newer in SERVING else old)
    else:
        assert pool_nodegroup([old, same], "l4")["nodegroupName"] == "l4-alt"


def test_discover_aws_mid_swap_says_which_node_group_serves_the_pool(
        capsys: pytest.CaptureFixture[str], moto: str, aws_env: None) -> None:
    """A swap whose new group failed to be made (CREATE_FAILED, or is being deleted): the pool is the old
    group's, as it was, and the note said "'l4' the newer ... the older group's nodes are going", of the
    group that stays and serves the pool, and never named the failed one. Both gone: the pool is skipped
    and the note named one of the two. A degraded newer group still runs its nodes: the pool is its."""
    region = "ap-southeast-5"  # a region no other test uses (moto shares its resources between tests)
    eks = boto3.Session(region_name=region).client("eks", endpoint_url=moto)
    cases = {"failed": ("ACTIVE", "CREATE_FAILED"), "undone": ("DEGRADED", "DELETING"),
             "gone": ("DELETING", "CREATE_FAILED"), "sick": ("DELETING", "DEGRADED"), "rolling": ("ACTIVE", "CREATING")}
    for cluster, (older, newer) in cases.items():
        eks.create_cluster(name=cluster, roleArn="arn:aws:iam::123456789012:role/eks",
                           resourcesVpcConfig={"subnetIds": ["subnet-1"]})
        _eks_group(eks, cluster, "l4", "g6.xlarge", spot=False, high=2)
        _eks_group(eks, cluster, "l4-alt", "g6.xlarge", spot=True, high=6)
        set_eks_nodegroup(region, cluster, "l4", older, dt.datetime(2026, 12, 1, 9))
        set_eks_nodegroup(region, cluster, "l4-alt", newer, dt.datetime(2026, 12, 1, 11))

    code, out, err = run(capsys, "discover", "aws", "--region", region, "--endpoint-url", moto)
    assert code == 0, err
    pools = {d["metadata"]["name"]: d["spec"] for d in yaml.safe_load_all(out) if d["kind"] == "Pool"}
    assert {name: (spec["target"]["aws"]["eks"]["nodegroup"], spec["spot"], spec["nodes"]["max"])
            for name, spec in pools.items()} == {
        "failed-l4": ("l4", False, 2), "undone-l4": ("l4", False, 2), "sick-l4": ("l4", True, 6),
        "rolling-l4": ("l4", True, 6)}, out
    text = " ".join(out.replace("\n# ", " ").split())
    for cluster, lost in (("failed", "CREATE_FAILED"), ("undone", "DELETING")):
        assert (f"EKS node groups 'l4' and 'l4-alt' of cluster '{cluster}' in {region} are one pool mid-replacement, "
                f"'l4' the one that serves it ('l4-alt' is {lost})") in text, out
        assert (f"discovered as one pool, {cluster}-l4, target nodegroup 'l4' (the name the fleet knows; placer finds "
                f"the replacement through its state), its spot and nodes those of 'l4' (on-demand, min 0, max 2); "
                f"the newer 'l4-alt' is {lost}: left out") in text, out
    for cluster in ("sick", "rolling"):
        assert (f"of cluster '{cluster}' in {region} are one pool mid-replacement, 'l4-alt' the newer") in text, out
    assert text.count("the older group's nodes are going and are not added") == 2, out
    assert (f"aws {region}: EKS node groups 'l4' and 'l4-alt' of cluster 'gone' in {region} are one pool "
            "mid-replacement and neither serves it ('l4' is DELETING, 'l4-alt' is CREATE_FAILED): skipped; fix the "
            "node group (EKS console or its Terraform) and discover again") in text, out


def test_an_eks_replacement_group_found_by_aws_and_kubernetes_discovery_is_one_pool(
        capsys: pytest.CaptureFixture[str], moto: str, aws_env: None, tmp_path: Path) -> None:
    """After a spot change replaced EKS node group l4-ng by l4-ng-alt, `discover aws` names the pool's group
    l4-ng (the fleet's name) and `discover kubernetes` reads l4-ng-alt off the nodes' labels: the merge of
    the second took them for two groups and added a second pool over the same 2 L4s."""
    region = "me-central-1"
    eks = boto3.Session(region_name=region).client("eks", endpoint_url=moto)
    eks.create_cluster(name="prod", roleArn="arn:aws:iam::123456789012:role/eks",
                       resourcesVpcConfig={"subnetIds": ["subnet-1"]})
    _eks_group(eks, "prod", "l4-ng-alt", "g6.xlarge", spot=True, high=2)
    aws = ["aws", "--region", region, "--endpoint-url", moto]
    context = f"arn:aws:eks:{region}:123456789012:cluster/prod"
    with FakeKubeApiServer() as kube:
        for i in range(2):
            kube.add_node(f"ip-10-0-3-{i}.{region}.compute.internal", gpus=1,
                          provider_id=f"aws:///{region}a/i-0{i}", labels={
                              "node.kubernetes.io/instance-type": "g6.xlarge",
                              "eks.amazonaws.com/nodegroup": "l4-ng-alt", "topology.kubernetes.io/region": region})
        k8s = ["kubernetes", "--kubeconfig", str(write_kubeconfig(tmp_path / "kubeconfig", {context: kube.url}))]
        for first, then in ((aws, k8s), (k8s, aws)):
            fleet = tmp_path / f"fleet-{first[0]}"
            outs = merged_in_turn(capsys, fleet, first, then)
            assert [pool.spec.provider for pool in load_fleet(fleet).pools.values()] == [first[0]], outs[1]
            kept = [line for line in outs[1].splitlines() if line.startswith("kept ")]
            assert len(kept) == 1 and "is over the same nodes, so it was not added" in kept[0], outs[1]


def test_a_gke_node_pool_found_by_gcp_and_kubernetes_discovery_is_one_pool(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A GKE node pool is a MIG `discover gcp` finds (gke-CLUSTER-POOL-HASH-grp) and nodes `discover
    kubernetes` finds (its instances, gke-CLUSTER-POOL-HASH-xxxx): two pools over the same L4s once both
    were merged. The nodes' providerIDs name the MIG: the second merge keeps the fleet's pool."""
    mig = "gke-prod-l4-pool-1a2b3c4d-grp"
    with FakeCompute() as gcp, FakeKubeApiServer() as kube:
        gcp.add_machine_type("g2-standard-8", [("nvidia-l4", 1)])
        gcp.add_mig("acme-prod", mig, gcp.add_template("acme-prod", "gke-prod-l4-pool", "g2-standard-8"),
                    zone="us-central1-a", target_size=2)
        gcp.add_mig("acme-prod", "batch-l4", gcp.add_template("acme-prod", "batch-l4", "g2-standard-8"),
                    zone="us-central1-a", target_size=1)  # no GKE node pool's: a pool of its own
        for suffix in ("x1k2", "p9q8"):
            add_gke_node(kube, f"gke-prod-l4-pool-1a2b3c4d-{suffix}", "nvidia-l4", 1, "l4-pool")
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"gke_acme-prod_us-central1_prod": kube.url}))
        k8s = ["kubernetes", "--kubeconfig", kubeconfig]
        google = ["gcp", "--project", "acme-prod", "--api-endpoint", gcp.endpoint]
        for first, then in ((google, k8s), (k8s, google)):
            fleet = tmp_path / f"fleet-{first[0]}"
            outs = merged_in_turn(capsys, fleet, first, then)
            pools = load_fleet(fleet).pools
            assert sorted((pool.spec.provider, pool.spec.nodes.count or pool.spec.nodes.max)
                          for name, pool in pools.items() if name != "batch-l4") == [(first[0], 2 if first is k8s else 8)]
            assert "batch-l4" in pools
            kept = [line for line in outs[1].splitlines() if line.startswith("kept ")]
            assert len(kept) == 1 and f"GKE node pool MIG {mig} in acme-prod/us-central1-a" in kept[0], outs[1]


# ---------------------------------------------------------------- one GPU, one name, whoever read its memory


def test_a_gpu_is_named_by_the_size_it_is_sold_as_whichever_discovery_read_its_memory(fleet: Path) -> None:
    """A GPU the catalog lacks is named by its memory; NVML reports a little less than a cloud's table (it
    keeps some back), and rounded to the nearest GB one GPU could get two names: a P4's 7611 MiB (7.4
    GiB) was P4-7GB where GCP sells an 8 GB P4, and the H200 recorded for real (NVML 140.4 GiB) would be
    H200-140GB beside EC2's H200-141GB (144384 MiB) were it not built in. A fleet's GPUType of the old
    name is still that GPU's: a merge keeps it and adds no second one."""
    total = json.loads((NVML / "h200-recorded-idle.json").read_text())["devices"][0]["memory"]["total"]
    assert total / 2**30 == pytest.approx(140.4, abs=0.01)
    assert type_name("NVIDIA H200", total / 2**30) == type_name("H200", 144384 / 1024) == "H200-141GB"
    p4 = nvml_docs("p4.json", location="fra-dc1")
    assert {d["metadata"]["name"]: d["spec"] for d in p4 if d["kind"] == "GPUType"} == {
        "P4-8GB": {"memoryGiB": 7.4, "vendor": "nvidia"}}
    # one GPU as NVML (or GFD, its MiB) and as EC2 report it, named alike as if the catalog lacked it;
    # the H200's was H200-140GB and H200-141GB
    for product, nvml_mib, ec2_mib in [("H200", total / 2**20, 144384), ("H100", 81559, 81920), ("V100", 16160, 16384),
                                       ("A10G", 23028, 22888), ("L4", 23034, 22888), ("L40S", 46068, 45776)]:
        assert type_name(product, nvml_mib / 1024) == type_name(product, ec2_mib / 1024), product
    assert dict(GCP_OTHER_ACCELERATORS.values())["Tesla P4"] == 7611  # the P4 GCP discovery names as NVML's
    assert aws_instance_gpu("p5e.48xlarge") == ("H200", 144384)
    (fleet / "types.yaml").write_text("apiVersion: placer.dev/v1alpha1\nkind: GPUType\nmetadata:\n  name: P4-7GB\n"
                                      "spec: {memoryGiB: 7.4, vendor: nvidia}\n")
    plan = plan_merge(fleet, p4)
    assert "GPUType/P4-7GB (discovered as GPUType/P4-8GB: the same GPU)" in plan.unchanged
    added = [d for d in yaml.safe_load_all(plan.files[fleet / DISCOVERED_FILE]) if d]
    assert [(d["kind"], d["spec"]["gpu"]["type"]) for d in added if d["kind"] != "Location"] == [("Pool", "P4-7GB")]


def test_ec2s_rtx_pro_server_6000_is_the_rtx_pro_6000_blackwell_server_edition_nvml_names(
        capsys: pytest.CaptureFixture[str], moto: str, aws_env: None, tmp_path: Path) -> None:
    """EC2 names g7e's GPU "RTX PRO Server 6000" (98304 MiB); on a g7e node GPU Feature Discovery, from
    NVML, names it "NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition" (NVML: 97887 MiB). One GPU, it was two
    GPUTypes, RTX-PRO-Server-6000-96GB and RTX-PRO-6000-Blackwell-Server-Edition-96GB, and a model's
    throughput for the one left the other's pools out. A fleet's GPUType of the old AWS name is kept."""
    assert aws_instance_gpu("g7e.48xlarge") == ("RTX PRO Server 6000", 98304)
    named = "RTX-PRO-6000-Blackwell-Server-Edition-96GB"
    assert type_name("RTX PRO Server 6000", 98304 / 1024) == type_name(
        "NVIDIA RTX PRO 6000 Blackwell Server Edition", 97887 / 1024) == named
    region = "ap-east-1"  # moto's in-process servers share their resources: a region no other test uses
    _asg(moto, region, "serve-g7e", "g7e.48xlarge")
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    code, out, err = run(capsys, "discover", "aws", "--region", region, "--endpoint-url", moto, "--merge", str(fleet))
    assert code == 0, err
    assert f"GPUType/{named}" in out, out
    with FakeKubeApiServer() as kube:
        kube.add_node("gpu01.dc1.example.com", gpus=8, labels={
            "nvidia.com/gpu.product": "NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition",
            "nvidia.com/gpu.memory": "97887", "nvidia.com/gpu.count": "8"})
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"dc1": kube.url}))
        code, out, err = run(capsys, "discover", "kubernetes", "--kubeconfig", kubeconfig, "--merge", str(fleet))
    assert code == 0, err
    assert f"unchanged GPUType/{named}" in out, out  # AWS discovery's, which the fleet has
    loaded = load_fleet(fleet)
    assert {pool.spec.gpu.type for pool in loaded.pools.values()} == {named}
    assert set(loaded.gpu_types) >= {named} and not {t for t in loaded.gpu_types if "RTX" in t} - {named}

    old = tmp_path / "old"
    old.mkdir()
    (old / "types.yaml").write_text("apiVersion: placer.dev/v1alpha1\nkind: GPUType\nmetadata:\n"
                                    "  name: RTX-PRO-Server-6000-96GB\nspec: {memoryGiB: 96, vendor: nvidia}\n")
    code, out, err = run(capsys, "discover", "aws", "--region", region, "--endpoint-url", moto, "--merge", str(old))
    assert code == 0, err
    assert f"GPUType/RTX-PRO-Server-6000-96GB (discovered as GPUType/{named}: the same GPU)" in " ".join(out.split())
    assert {pool.spec.gpu.type for pool in load_fleet(old).pools.values()} == {"RTX-PRO-Server-6000-96GB"}


def test_ec2s_rtx_pro_4500_is_g7s_rtx_pro_4500_blackwell_server_edition() -> None:
    """EC2 names g7's GPU "RTX PRO 4500" (32768 MiB); AWS, announcing g7, and NVIDIA name it "NVIDIA RTX PRO
    4500 Blackwell Server Edition", as NVML names g7e's "NVIDIA RTX PRO 6000 Blackwell Server Edition".
    It was RTX-PRO-4500-32GB from AWS discovery and RTX-PRO-4500-Blackwell-Server-Edition-32GB from NVML
    or GPU Feature Discovery: one GPU, two GPUTypes. The workstation card, "NVIDIA RTX PRO 4500 Blackwell",
    stays a type of its own."""
    assert aws_instance_gpu("g7.48xlarge") == ("RTX PRO 4500", 32768)
    named = "RTX-PRO-4500-Blackwell-Server-Edition-32GB"
    # a driver reports a little less than the GPU is sold as (g7e's: 97887 of 98304 MiB)
    nvml = 32768 * 97887 // 98304
    assert type_name("RTX PRO 4500", 32768 / 1024) == named
    assert type_name("NVIDIA RTX PRO 4500 Blackwell Server Edition", nvml / 1024) == named
    assert type_name("NVIDIA-RTX-PRO-4500-Blackwell-Server-Edition", nvml / 1024) == named  # GFD's label
    assert type_name("NVIDIA RTX PRO 4500 Blackwell", nvml / 1024) == "RTX-PRO-4500-Blackwell-32GB"


def test_a_kubernetes_pool_discovered_before_gains_its_node_groups_and_then_keeps_its_gcp_twin_out(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A Kubernetes pool merged before discovery wrote placer.dev/node-groups has none, and a merge only
    edited spec: every later `discover gcp --merge` added the GKE node pool's MIG beside it. A merge of
    Kubernetes discovery writes the annotation into it; the GCP twin is then kept out."""
    mig = "gke-prod-l4-pool-1a2b3c4d-grp"
    with FakeCompute() as gcp, FakeKubeApiServer() as kube:
        gcp.add_machine_type("g2-standard-8", [("nvidia-l4", 1)])
        gcp.add_mig("acme-prod", mig, gcp.add_template("acme-prod", "gke-prod-l4-pool", "g2-standard-8"),
                    zone="us-central1-a", target_size=2)
        for suffix in ("x1k2", "p9q8"):
            add_gke_node(kube, f"gke-prod-l4-pool-1a2b3c4d-{suffix}", "nvidia-l4", 1, "l4-pool")
        kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", {"prod": kube.url}))
        k8s = ["kubernetes", "--kubeconfig", kubeconfig]
        fleet = tmp_path / "fleet"
        merged_in_turn(capsys, fleet, k8s)
        saved = fleet / DISCOVERED_FILE
        saved.write_text("".join(line for line in saved.read_text(encoding="utf-8").splitlines(keepends=True)
                                 if "placer.dev/node-groups" not in line))  # as discovery wrote it before
        code, out, err = run(capsys, "discover", *k8s, "--merge", str(fleet))
        assert code == 0, err
        assert (f"Pool/prod-l4-pool: metadata.annotations.placer.dev/node-groups: (none) -> gcp acme-prod/"
                f"us-central1-a/{mig}") in out, out
        code, out, err = run(capsys, "discover", "gcp", "--project", "acme-prod", "--api-endpoint", gcp.endpoint,
                             "--merge", str(fleet))
        assert code == 0, err
        assert [line for line in out.splitlines() if line.startswith("kept ")], out
        assert [pool.spec.provider for pool in load_fleet(fleet).pools.values()] == ["kubernetes"]
