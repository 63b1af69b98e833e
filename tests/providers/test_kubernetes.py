"""KubernetesProvider with the real Python client (and kubectl) against a fake kube-apiserver on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from placer.apply import Applier  # noqa: E402
from placer.fleet import load_fleet  # noqa: E402
from placer.planfile import Change, Plan  # noqa: E402
from placer.render.manifests import FIELD_MANAGER, MANAGED_BY, deployment_manifest  # noqa: E402
from placer.retry import RetriesSpent, RetryPolicy  # noqa: E402
from placer.state import LocalBackend  # noqa: E402
from providers.base import Provider, ProviderError  # noqa: E402
from providers.kubernetes import KubernetesProvider, rollout_status, unhealthy  # noqa: E402
from tests.servers.kube_server import FakeKubeApiServer, write_kubeconfig  # noqa: E402
from tests.servers.moto_server import ClosingServer  # noqa: E402

H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "8",
        "nvidia.com/gpu.memory": "81559", "nvidia.com/gpu.present": "true",
        "feature.node.kubernetes.io/pci-10de.present": "true"}
T4 = {"nvidia.com/gpu.product": "Tesla-T4", "nvidia.com/gpu.count": "1", "nvidia.com/gpu.memory": "15360",
      "nvidia.com/gpu.present": "true"}
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
NS = "ml"
KUBECTL = shutil.which("kubectl")


@pytest.fixture
def kube() -> Iterator[FakeKubeApiServer]:
    with FakeKubeApiServer() as server:
        yield server


@pytest.fixture
def kubeconfig(tmp_path: Path, kube: FakeKubeApiServer) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", {"cluster-a": kube.url})


@pytest.fixture
def provider(kubeconfig: Path) -> Iterator[KubernetesProvider]:
    prov = KubernetesProvider(str(kubeconfig), request_timeout_s=2.0, poll_interval_s=0.01)
    yield prov
    prov.close()


def change(action: str = "create", replicas: int | None = 3, *, model: str = "llama", pool: str = "h100",
           namespace: str = NS, context: str | None = "cluster-a", provider: str = "kubernetes",
           kubernetes: dict[str, Any] | None = None) -> Change:
    k8s = kubernetes if kubernetes is not None else {
        "context": context, "namespace": namespace,
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "cloud.google.com/gke-nodepool": "h100"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
    target = {"provider": provider, "pool": pool, "model": model, "gpus": 2, "gpuType": "H100-80GB",
              "image": "registry.local/models/llama:3.1", "version": "3.1"}
    if k8s:
        target["kubernetes"] = k8s
    return Change(address=f"deployment/{model}@{pool}", action=action,  # type: ignore[arg-type]
                  phase=2 if action != "delete" else 3, before=None,
                  after=None if action == "delete" else {"replicas": replicas}, target=target)


def foreign_deployment(name: str = "llama-h100", namespace: str = NS) -> dict[str, Any]:
    labels = {"app": "llama", MANAGED_BY: "Helm"}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "llama"}},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}}


# ---------------------------------------------------------------- protocol and routing


def test_is_a_provider_and_handles_deployment_changes() -> None:
    prov = KubernetesProvider(api_client_factory=lambda ctx: None)
    assert isinstance(prov, Provider) and prov.name == "kubernetes"
    assert prov.handles(change())
    assert prov.handles(change(provider="aws", kubernetes={}))  # a cloud node group in the current cluster
    assert prov.handles(change(provider="static"))  # a static pool that names its cluster
    assert not prov.handles(change(provider="static", kubernetes={}))  # declared only: nothing to call
    pool_change = Change("pool/h100", "update", 1, {"nodes": 1}, {"nodes": 2}, target={"provider": "kubernetes"})
    assert not prov.handles(pool_change)


# ---------------------------------------------------------------- discovery


def add_fleet_nodes(kube: FakeKubeApiServer) -> None:
    for i in range(3):
        kube.add_node(f"gke-h100-{i}", gpus=8, provider_id=f"gce://proj/us-central1-a/gke-h100-{i}",
                      labels={**H100, "cloud.google.com/gke-nodepool": "h100-pool",
                              "topology.kubernetes.io/region": "us-central1"})
    kube.add_node("gke-h100-3", gpus=8, ready=False,  # NotReady: in the pool, not counted
                  labels={**H100, "cloud.google.com/gke-nodepool": "h100-pool",
                          "topology.kubernetes.io/region": "us-central1"})
    for i in range(2):  # a tainted spot T4 group; one node cordoned-and-tainted by the node controller
        taints = [GPU_TAINT] + ([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}] if i else [])
        kube.add_node(f"t4-{i}", gpus=1, taints=taints, unschedulable=bool(i),
                      labels={**T4, "eks.amazonaws.com/nodegroup": "t4-spot", "eks.amazonaws.com/capacityType": "SPOT",
                              "topology.kubernetes.io/region": "us-east-1"})
    kube.add_node("cpu-0", labels={"node.kubernetes.io/instance-type": "m6i.large"})
    kube.add_node("mystery-gpu", gpus=4)  # no GPU Feature Discovery labels


def test_discover_groups_gpu_nodes_into_pools(kube: FakeKubeApiServer, provider: KubernetesProvider,
                                              tmp_path: Path) -> None:
    add_fleet_nodes(kube)
    found = provider.discover()
    pools = {d["metadata"]["name"]: d["spec"] for d in found.documents if d["kind"] == "Pool"}
    locations = {d["metadata"]["name"]: d["spec"] for d in found.documents if d["kind"] == "Location"}
    assert set(pools) == {"cluster-a-h100-pool", "cluster-a-t4-spot"}
    h100 = pools["cluster-a-h100-pool"]
    assert h100["gpu"] == {"type": "H100-80GB", "perNode": 8}
    assert h100["nodes"] == {"count": 3} and h100["provider"] == "kubernetes" and h100["usdPerGpuHour"] == 0
    assert h100["location"] == "gcp-us-central1" and "spot" not in h100  # as GCP discovery names the region
    assert h100["target"]["kubernetes"] == {
        "context": "cluster-a", "namespace": "default", "tolerations": [],
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "8",
                         "cloud.google.com/gke-nodepool": "h100-pool"}}
    t4 = pools["cluster-a-t4-spot"]
    assert t4["gpu"] == {"type": "T4-16GB", "perNode": 1} and t4["spot"] is True
    assert t4["nodes"] == {"count": 1}  # the cordoned node is not counted; its transient taint is ignored
    assert t4["target"]["kubernetes"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}]
    assert t4["target"]["kubernetes"]["nodeSelector"]["eks.amazonaws.com/nodegroup"] == "t4-spot"
    # GKE (providerID gce://) and EKS (its labels) nodes: their regions as GCP and AWS discovery name them
    assert locations == {"gcp-us-central1": {"environment": "cloud", "jurisdiction": "US"},
                         "aws-us-east-1": {"environment": "cloud", "jurisdiction": "US"}}
    notes = "\n".join(found.notes)
    assert "mystery-gpu" in notes and "nvidia.com/gpu.product" in notes
    assert "gke-h100-3" in notes and "t4-1" in notes
    assert "usdPerGpuHour is 0 for cluster-a-h100-pool, cluster-a-t4-spot" in notes
    # what discovery writes is a valid fleet
    fleet_dir = tmp_path / "fleet"
    fleet_dir.mkdir()
    (fleet_dir / "discovered.yaml").write_text(yaml.safe_dump_all(found.documents), encoding="utf-8")
    fleet = load_fleet(fleet_dir)
    assert set(fleet.pools) == set(pools)


def test_discover_follows_continue_tokens_and_stops_at_a_repeated_one(kube: FakeKubeApiServer,
                                                                    provider: KubernetesProvider) -> None:
    """The first page was all a listing read: a paging server's other nodes were left out."""
    for i in range(5):
        kube.add_node(f"h100-{i}", gpus=8, labels=H100)
    kube.page_size = 2
    pools = [d["spec"] for d in provider.discover().documents if d["kind"] == "Pool"]
    assert [p["nodes"] for p in pools] == [{"count": 5}]
    listed = [r.query for r in kube.requests if r.path == "/api/v1/nodes"]
    assert [q.get("continue") for q in listed] == [None, ["2"], ["4"]]
    kube.repeat_continue = True
    with pytest.raises(ProviderError, match="page token '2' twice"):
        provider.discover()


def test_discover_two_contexts_and_an_unknown_gpu(tmp_path: Path) -> None:
    with FakeKubeApiServer() as east, FakeKubeApiServer() as edge:
        east.add_node("h100-a", gpus=8, labels=H100)
        edge.add_node("jetson-1", gpus=1, labels={"nvidia.com/gpu.product": "NVIDIA-RTX-6000-Ada",
                                                  "nvidia.com/gpu.memory": "49140"})
        edge.add_node("jetson-2", gpus=1, labels={"nvidia.com/gpu.product": "NVIDIA-RTX-6000-Ada",
                                                  "nvidia.com/gpu.memory": "49140"})
        kc = write_kubeconfig(tmp_path / "kc", {"onprem-east": east.url, "edge": edge.url}, current="edge")
        prov = KubernetesProvider(str(kc), contexts=["onprem-east", "edge"], request_timeout_s=2.0)
        found = prov.discover()
        by_kind: dict[str, dict[str, Any]] = {}
        for doc in found.documents:
            by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc["spec"]
        assert by_kind["Location"] == {"onprem-east": {"environment": "onprem"}, "edge": {"environment": "onprem"}}
        assert by_kind["Pool"]["onprem-east-h100-80gb"]["target"]["kubernetes"]["context"] == "onprem-east"
        ada = by_kind["Pool"]["edge-rtx-6000-ada-48gb"]
        assert ada["gpu"] == {"type": "RTX-6000-Ada-48GB", "perNode": 1} and ada["nodes"] == {"count": 2}
        assert by_kind["GPUType"] == {"RTX-6000-Ada-48GB": {"memoryGiB": 48.0, "vendor": "nvidia"}}
        # the GPUType is there: the note says so, not "add a GPUType document" (it was added)
        assert "pool edge-rtx-6000-ada-48gb: GPU product 'NVIDIA-RTX-6000-Ada' is not in the built-in catalog: " \
               "added a GPUType document named RTX-6000-Ada-48GB of 48.0 GiB" in "\n".join(found.notes)
        # no contexts given: the kubeconfig's current one, named explicitly in the pools' target
        current = KubernetesProvider(str(kc), request_timeout_s=2.0).discover()
        assert [d["spec"]["target"]["kubernetes"]["context"] for d in current.documents if d["kind"] == "Pool"] \
            == ["edge"]
        prov.close()


# ---------------------------------------------------------------- apply, observe, delete


def test_apply_creates_a_deployment_by_server_side_apply(kube: FakeKubeApiServer,
                                                         provider: KubernetesProvider) -> None:
    c = change("create", 3)
    assert provider.observe(c) is None
    provider.apply(c)
    (write,) = kube.writes()
    assert write.method == "PATCH" and write.content_type == "application/apply-patch+yaml"
    assert write.path == "/apis/apps/v1/namespaces/ml/deployments/llama-h100"
    assert write.query == {"fieldManager": [FIELD_MANAGER]}  # no force for an object placer does not hold yet
    obj = kube.deployment(NS, "llama-h100")
    assert obj is not None
    assert obj["metadata"]["labels"] == {MANAGED_BY: "placer", "placer.dev/model": "llama", "placer.dev/pool": "h100"}
    assert [(m["manager"], m["operation"]) for m in obj["metadata"]["managedFields"]] == [("placer", "Apply")]
    pod = obj["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert pod["containers"][0]["image"] == "registry.local/models/llama:3.1"
    assert pod["nodeSelector"] == {"cloud.google.com/gke-nodepool": "h100",
                                   "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"] == [{"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}]
    assert obj["spec"]["replicas"] == 3 and obj["metadata"]["generation"] == 1
    assert provider.observe(c) == {"replicas": 3}


def test_update_scales_idempotently_and_delete_removes(kube: FakeKubeApiServer,
                                                       provider: KubernetesProvider) -> None:
    provider.apply(change("create", 3))
    provider.apply(change("update", 5))
    obj = kube.deployment(NS, "llama-h100")
    assert obj is not None and obj["spec"]["replicas"] == 5 and obj["metadata"]["generation"] == 2
    assert kube.writes()[-1].query == {"fieldManager": ["placer"], "force": ["true"]}
    rv = obj["metadata"]["resourceVersion"]
    provider.apply(change("update", 5))  # applying twice changes nothing
    again = kube.deployment(NS, "llama-h100")
    assert again is not None and again["metadata"]["resourceVersion"] == rv
    assert provider.observe(change("update", 5)) == {"replicas": 5}
    provider.apply(change("update", 0))  # scale to zero is an update, not a delete
    assert provider.observe(change()) == {"replicas": 0}

    provider.apply(change("delete"))
    assert kube.deployment(NS, "llama-h100") is None
    assert provider.observe(change()) is None
    delete = kube.writes()[-1]
    assert delete.method == "DELETE" and '"uid"' in delete.body  # only the object it checked
    provider.apply(change("delete"))  # already gone: fine, and nothing is sent
    assert len([w for w in kube.writes() if w.method == "DELETE"]) == 1


def test_a_rollout_with_no_room_to_surge_is_applied_with_its_strategy_which_a_later_change_drops(
        kube: FakeKubeApiServer, provider: KubernetesProvider) -> None:
    """A rollout whose pool has no GPU free for Kubernetes' default surge pod (``diff._surges``) is
    applied with maxSurge 0, maxUnavailable 1, as the gitops tree renders it; a later change of the
    Deployment without it takes it away (server-side apply: a field placer stops applying goes, and
    Kubernetes' default comes back), as the tree's manifest is then written without it."""
    provider.apply(change("create", 2))
    c = change("update", 2)
    rollout = Change(c.address, "update", 2, {"replicas": 2, "image": "registry.local/models/llama:3.1"},
                     {"replicas": 2, "image": "registry.local/models/llama:3.2"}, (),
                     {**c.target, "image": "registry.local/models/llama:3.2",
                      "strategy": {"maxSurge": 0, "maxUnavailable": 1}})
    provider.apply(rollout)
    obj = kube.deployment(NS, "llama-h100")
    assert obj is not None and obj["spec"]["strategy"] == {"type": "RollingUpdate",
                                                           "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    assert obj["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local/models/llama:3.2"
    provider.apply(Change(c.address, "update", 3, {"replicas": 2}, {"replicas": 1}, (),
                          {**c.target, "image": "registry.local/models/llama:3.2"}))
    obj = kube.deployment(NS, "llama-h100")
    assert obj is not None and obj["spec"]["replicas"] == 1 and "strategy" not in obj["spec"]


def _stuck_rollout(kube: FakeKubeApiServer, provider: KubernetesProvider) -> Change:
    """llama, 2 replicas of 2 GPUs, fills its node's 4; its image changes with Kubernetes' default
    strategy (as placer before 58acfc2 applied it, or a user): the surge pod has no GPU, no old pod may
    go first (maxUnavailable 0 of 2), and the rollout is stuck. The rollout's change."""
    kube.gpu_rollouts = True
    kube.add_node("h100-0", gpus=4, labels={**H100, "cloud.google.com/gke-nodepool": "h100"})
    provider.apply(change("create", 2))
    c = change("update", 2)
    rollout = Change(c.address, "update", 2, {"replicas": 2, "image": "registry.local/models/llama:3.1"},
                     {"replicas": 2, "image": "registry.local/models/llama:3.2"}, (),
                     {**c.target, "image": "registry.local/models/llama:3.2"})
    provider.apply(rollout)
    status = (kube.deployment(NS, "llama-h100") or {})["status"]
    assert (status["updatedReplicas"], status["availableReplicas"], status["unavailableReplicas"]) == (1, 2, 1)
    assert status["conditions"][1]["reason"] == "ProgressDeadlineExceeded"
    return rollout


def test_a_stuck_rollout_applied_again_as_it_is_says_since_when_and_what_it_needs(
        kube: FakeKubeApiServer, provider: KubernetesProvider) -> None:
    """The same manifest applied again cannot move a stuck rollout: the wait fails at once, saying
    since when it is stuck and the GPUs its new pod needs on its pool (it said 'rollout ... failed:
    progress deadline exceeded (...)', nothing of the pool or what to do)."""
    rollout = _stuck_rollout(kube, provider)
    since = (kube.deployment(NS, "llama-h100") or {})["status"]["conditions"][1]["lastUpdateTime"]
    provider.apply(rollout)
    with pytest.raises(ProviderError) as err:
        provider.wait_healthy(rollout, 5)
    said = str(err.value)
    assert said.startswith(f"deployment/llama@h100: the rollout of deployment ml/llama-h100 in context cluster-a "
                           f"has been stuck since {since} (Progressing False, ProgressDeadlineExceeded: ")
    assert ("the apply found it so, and applied the same Deployment again, which cannot move it; 1 of 2 replicas "
            "updated, 2 available; 1 of its new pods is not available: where pending, its rollout needs 2 more GPUs "
            "on pool h100 (2 a pod)") in said, said
    assert "run `placer plan` again" in said


def test_a_stuck_rollout_applied_with_a_strategy_that_fits_is_waited_for_past_its_old_condition(
        kube: FakeKubeApiServer, provider: KubernetesProvider) -> None:
    """Applied with maxSurge 0, maxUnavailable 1 (the plan's re-apply of a deployment an apply left
    unhealthy on a full pool), the stuck rollout goes on; until an old pod has gone, the controller
    shows the new generation with its old ProgressDeadlineExceeded condition, which failed the wait at
    once. The wait now takes a condition from before the apply changed the spec as no failure."""
    rollout = _stuck_rollout(kube, provider)
    fitted = Change(rollout.address, "update", 2, {"replicas": 2, "healthy": False},
                    {"replicas": 2, "healthy": True}, (),
                    {**rollout.target, "strategy": {"maxSurge": 0, "maxUnavailable": 1}})
    provider.apply(fitted)
    provider.wait_healthy(fitted, 5)
    obj = kube.deployment(NS, "llama-h100") or {}
    assert obj["status"]["updatedReplicas"] == 2 and obj["status"]["availableReplicas"] == 2
    assert kube.peak_gpus[(NS, "llama-h100")] == 4


def test_an_object_placer_does_not_own_is_left_untouched(kube: FakeKubeApiServer,
                                                         provider: KubernetesProvider) -> None:
    kube.seed_deployment(foreign_deployment(), manager="helm")
    before = kube.deployment(NS, "llama-h100")
    for action, replicas in (("create", 3), ("update", 4), ("delete", None)):
        with pytest.raises(ProviderError) as err:
            provider.apply(change(action, replicas))
        message = str(err.value)
        assert not err.value.retryable
        assert "ml/llama-h100" in message and "helm" in message and f"{MANAGED_BY}=Helm" in message
        assert "cluster-a" in message and "untouched" in message
    assert kube.writes() == []
    assert kube.deployment(NS, "llama-h100") == before
    assert provider.observe(change()) is None  # not placer's deployment
    assert provider.observed() == {}


def test_a_foreign_object_that_appears_mid_apply_is_not_forced(kube: FakeKubeApiServer,
                                                               provider: KubernetesProvider) -> None:
    """The read says "absent" (another tool creates it just after): the apply goes without force, the
    server reports the field conflict (409, retryable), and the retry refuses it by name."""
    kube.seed_deployment(foreign_deployment(), manager="kubectl-client-side-apply")
    before = kube.deployment(NS, "llama-h100")
    kube.fail_next(1, 404, method="GET")
    with pytest.raises(ProviderError) as err:
        provider.apply(change("create", 3))
    assert err.value.retryable and "409" in str(err.value) and "conflict" in str(err.value).lower()
    assert kube.writes()[-1].query == {"fieldManager": ["placer"]}
    with pytest.raises(ProviderError) as again:
        provider.apply(change("create", 3))
    assert not again.value.retryable and "kubectl-client-side-apply" in str(again.value)
    assert kube.deployment(NS, "llama-h100") == before


def test_observed_lists_every_deployment_placer_owns(kube: FakeKubeApiServer,
                                                     provider: KubernetesProvider) -> None:
    provider.apply(change("create", 3))
    provider.apply(change("create", 1, model="mistral", namespace="serving"))
    provider.apply(change("create", 2, model="llama", pool="a100", namespace="serving"))
    kube.seed_deployment(foreign_deployment("web", "default"))
    host = kube.url
    assert provider.observed() == {("llama", "h100", host, NS): 3, ("mistral", "h100", host, "serving"): 1,
                                   ("llama", "a100", host, "serving"): 2}
    listed = [r for r in kube.requests if r.path == "/apis/apps/v1/deployments"]
    assert listed[-1].query["labelSelector"] == [f"{MANAGED_BY}=placer"]


def test_changes_go_to_the_context_they_name(tmp_path: Path) -> None:
    with FakeKubeApiServer() as a, FakeKubeApiServer() as b:
        kc = write_kubeconfig(tmp_path / "kc", {"a": a.url, "b": b.url}, current="a")
        prov = KubernetesProvider(str(kc), request_timeout_s=2.0)
        prov.apply(change("create", 2, context="b"))
        prov.apply(change("create", 1, model="phi", context=None))  # None: the current context
        assert [d["metadata"]["name"] for d in b.deployments()] == ["llama-h100"]
        assert [d["metadata"]["name"] for d in a.deployments()] == ["phi-h100"]
        assert prov.observed(["a", "b"]) == {("llama", "h100", b.url, NS): 2, ("phi", "h100", a.url, NS): 1}
        with pytest.raises(ProviderError) as err:
            prov.apply(change("create", 1, context="nope"))
        assert not err.value.retryable and "'nope'" in str(err.value) and str(kc) in str(err.value)
        prov.close()


def test_one_api_client_per_context(tmp_path: Path) -> None:
    from kubernetes import config

    with FakeKubeApiServer() as a, FakeKubeApiServer() as b:
        kc = write_kubeconfig(tmp_path / "kc", {"a": a.url, "b": b.url})
        made: list[str] = []

        def factory(context: str | None) -> Any:
            made.append(str(context))
            return config.new_client_from_config(str(kc), context)  # type: ignore[no-untyped-call]

        prov = KubernetesProvider(contexts=["a", "b"], api_client_factory=factory)
        for _ in range(2):
            prov.apply(change("create", 1, context="a"))
            prov.apply(change("create", 1, context="b"))
            prov.observed()
        assert sorted(made) == ["a", "b"]
        prov.close()


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(("status", "retryable"), [(409, True), (429, True), (500, True), (503, True),
                                                   (403, False), (404, False), (422, False)])
def test_errors_are_classified(kube: FakeKubeApiServer, provider: KubernetesProvider,
                               status: int, retryable: bool) -> None:
    kube.fail_next(1, status, method="PATCH")
    with pytest.raises(ProviderError) as err:
        provider.apply(change("create", 3))
    message = str(err.value)
    assert err.value.retryable is retryable
    assert f"HTTP {status}" in message and "ml/llama-h100" in message and "cluster-a" in message
    assert err.value.address == "deployment/llama@h100"
    if status == 429:  # the server's closing period does not run into the hint (".;")
        assert ("HTTP 429 TooManyRequests: Too many requests, please try again later; the API server is throttling "
                "(Retry-After 1s); a retry should get through") in message, message
    if status == 404:
        assert "kubectl --context cluster-a create namespace ml" in message
    if status == 403:  # a server-side apply that makes the Deployment is authorized as create
        assert "kubectl auth can-i create deployments --context cluster-a -n ml" in message
    assert kube.deployment(NS, "llama-h100") is None
    provider.apply(change("create", 3))  # the fault passed: a retry works
    assert provider.observe(change()) == {"replicas": 3}


def test_a_refusal_prints_the_check_of_the_call_refused(kube: FakeKubeApiServer, provider: KubernetesProvider,
                                                       kubeconfig: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every 403 said `kubectl auth can-i patch deployments`: of a read, a delete and a listing too,
    where that check answers yes and the operator is none the wiser; a listing's said `--list`,
    without its context."""
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))  # the shell's kubectl reads placer's: no --kubeconfig
    def refused(method: str, call: Any, path: str | None = None) -> str:
        kube.fail_next(1, 403, method=method, path_contains=path)
        with pytest.raises(ProviderError) as err:
            call()
        assert err.value.retryable is False
        return str(err.value)

    assert "`kubectl auth can-i get deployments --context cluster-a -n ml`" in refused(
        "GET", lambda: provider.observe(change()))
    provider.apply(change("create", 1))
    assert "`kubectl auth can-i patch deployments --context cluster-a -n ml`" in refused(
        "PATCH", lambda: provider.apply(change("update", 2)))
    assert "`kubectl auth can-i delete deployments --context cluster-a -n ml`" in refused(
        "DELETE", lambda: provider.apply(change("delete")))
    listed = refused("GET", lambda: provider.observed(["cluster-a"]))
    assert "`kubectl auth can-i list deployments --all-namespaces --context cluster-a`" in listed, listed
    nodes = refused("GET", lambda: provider.discover(["cluster-a"]), "/nodes")
    assert "`kubectl auth can-i list nodes --context cluster-a`" in nodes, nodes


def test_the_kubectl_commands_a_refusal_prints_quote_the_context_and_kubeconfig(
        kube: FakeKubeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kubeconfig's context may be any text (`my cluster`), and so may the path of the kubeconfig placer
    read: the commands to paste said `--context my cluster $(id)`, which checked context `my` and ran `id`."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    odd = "my cluster $(id)"
    config = write_kubeconfig(tmp_path / "kube config", {odd: kube.url})
    prov = KubernetesProvider(str(config), request_timeout_s=2.0, poll_interval_s=0.01)
    try:
        kube.fail_next(1, 403, method="PATCH")
        with pytest.raises(ProviderError) as err:
            prov.apply(change("create", 3, context=odd))
        assert f"(`kubectl auth can-i create deployments --context 'my cluster $(id)' -n ml --kubeconfig '{config}'`)" \
            in str(err.value), str(err.value)
        kube.fail_next(1, 404, method="PATCH")
        with pytest.raises(ProviderError) as err:
            prov.apply(change("create", 3, context=odd))
        assert "`kubectl --context 'my cluster $(id)' create namespace ml`" in str(err.value), str(err.value)
    finally:
        prov.close()


@pytest.mark.parametrize(("method", "call", "verb"), [
    ("PATCH", lambda p: p.apply(change("create", 3, context=None)), "create deployments"),
    ("GET", lambda p: p.observe(change(context=None)), "get deployments")])
def test_a_403_says_the_can_i_of_the_context_namespace_and_kubeconfig_it_was_refused_in(
        kube: FakeKubeApiServer, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch, method: str, call: Any,
        verb: str) -> None:
    """A target without a context is the kubeconfig's current one: the hint said `kubectl auth can-i patch
    deployments -n ml`, which checks kubectl's own current context, of the default
    kubeconfig, by the time the operator runs it; now by name, with the kubeconfig placer read."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    two = write_kubeconfig(kubeconfig.parent / "two", {"cluster-b": kube.url, "cluster-a": kube.url})
    prov = KubernetesProvider(str(two), request_timeout_s=2.0, poll_interval_s=0.01)
    kube.fail_next(1, 403, method=method)
    with pytest.raises(ProviderError) as err:
        call(prov)
    assert f"(`kubectl auth can-i {verb} --context cluster-b -n ml --kubeconfig {two}`)" in str(err.value), str(err.value)
    monkeypatch.setenv("KUBECONFIG", str(two))  # the shell's own: no --kubeconfig needed
    kube.fail_next(1, 403, method=method)
    with pytest.raises(ProviderError) as err:
        call(prov)
    assert f"(`kubectl auth can-i {verb} --context cluster-b -n ml`)" in str(err.value), str(err.value)
    prov.close()


@pytest.mark.parametrize(("asked", "waited"), [(7, 7.0), (3600, 60.0)])
def test_an_apply_waits_as_long_as_a_throttled_answer_asks(kube: FakeKubeApiServer, provider: KubernetesProvider,
                                                           tmp_path: Path, asked: int, waited: float) -> None:
    """Retry-After is honoured, up to a minute: the backoff alone retried after 0.2-3.5 s and
    gave up on a server that asked for 10."""
    kube.fail_next(2, 429, retry_after=asked, method="PATCH")
    backend = LocalBackend(tmp_path / "state.json")
    delays: list[float] = []
    messages: list[str] = []
    applier = Applier(backend, [provider], health_timeout_s=5, retry=RetryPolicy(base_seconds=0.001),
                      sleep=delays.append, progress=lambda m, _c: messages.append(m))
    with backend.lock("apply"):
        report = applier.run(Plan("now", "sha256:x", None, 0, {}, (change("create", 2),)), backend.read(), "p",
                             None, {})
    assert report.retries == 2 and delays == [waited, waited]
    retried = [m for m in messages if m.startswith("retrying")]
    capped = ", at most 60s" if asked > 60 else ""
    assert len(retried) == 2 and all(f"as the server asked (Retry-After {asked}s{capped})" in m for m in retried)
    assert kube.deployment(NS, "llama-h100") is not None


def test_an_invalid_manifest_is_a_422_with_the_field(provider: KubernetesProvider) -> None:
    with pytest.raises(ProviderError) as err:
        provider.apply(change("create", 1, model="Llama_3"))  # not a DNS-1123 name
    assert not err.value.retryable and "HTTP 422" in str(err.value) and "metadata.name" in str(err.value)
    for broken in (change("create", -1), change("create", None),
                   Change("deployment/llama@h100", "create", 2, None, None, target=change().target)):
        with pytest.raises(ProviderError) as bad:
            provider.apply(broken)  # a malformed plan never turns into a delete
        assert not bad.value.retryable and "after.replicas" in str(bad.value)


def test_failures_to_read_are_classified_too(kube: FakeKubeApiServer, provider: KubernetesProvider) -> None:
    kube.fail_next(1, 503, method="GET")
    with pytest.raises(ProviderError) as err:
        provider.observe(change())
    assert err.value.retryable and "HTTP 503" in str(err.value)
    kube.fail_next(1, 429, path_contains="/nodes")
    with pytest.raises(ProviderError) as listing:
        provider.discover()
    assert listing.value.retryable and "listing nodes of context cluster-a" in str(listing.value)


def test_timeouts_and_refused_connections_are_retryable(kube: FakeKubeApiServer, kubeconfig: Path,
                                                        tmp_path: Path) -> None:
    kube.slow(1.0)
    prov = KubernetesProvider(str(kubeconfig), request_timeout_s=0.2)
    before = len(kube.requests)
    with pytest.raises(ProviderError) as err:
        prov.apply(change("create", 3))
    # one short try, no hidden client retries: a request is logged once the server's 1 s delay ends
    # (counted, not timed: a loaded machine took 1.2-2.6 s to set the client up)
    time.sleep(1.5)
    assert len(kube.requests) - before == 1, kube.requests[before:]
    host = kube.url.split("//", 1)[1].rstrip("/")
    # it took the request: not "cannot reach the API server (...: timed out)", as of one that is down
    assert err.value.retryable and f"the API server ({host}) did not answer within 0.2s" in str(err.value)
    assert "cannot reach" not in str(err.value)
    with pytest.raises(ProviderError) as listing:
        prov.discover()
    assert f"listing nodes of context cluster-a failed: the API server ({host}) did not answer within 0.2s; is it " \
           "overloaded? a retry may get through" in str(listing.value)
    # once every try met it, the error says what failed, not to retry what was retried
    spent = str(RetriesSpent(listing.value, 6, 12.0, "run it again later"))
    assert spent.endswith("within 0.2s; is it overloaded? tried 6 times over 12s and it still failed: run it again "
                          "later") and "a retry" not in spent, spent
    kube.slow(0.0)
    dead = FakeKubeApiServer().start()
    url = dead.url
    dead.stop()
    kc = write_kubeconfig(tmp_path / "dead", {"gone": url})
    with pytest.raises(ProviderError) as refused:
        KubernetesProvider(str(kc), request_timeout_s=0.5).observe(change(context="gone"))
    host = url.split("//", 1)[1].rstrip("/")
    assert refused.value.retryable and f"cannot reach the API server ({host}: connection refused)" in str(refused.value)


def test_a_server_that_closes_the_connection_is_said_so_in_a_few_words(tmp_path: Path) -> None:
    """It printed urllib3's whole chain: MaxRetryError: HTTPConnectionPool(...): Max retries exceeded
    ... (Caused by ProtocolError('Connection aborted.', RemoteDisconnected(...)))."""
    with ClosingServer() as closing:
        kc = write_kubeconfig(tmp_path / "closing", {"lb": closing.endpoint})
        with pytest.raises(ProviderError) as err:
            KubernetesProvider(str(kc), request_timeout_s=2).observe(change(context="lb"))
    host = closing.endpoint.split("//", 1)[1]
    message = str(err.value)
    assert err.value.retryable
    assert f"cannot reach the API server ({host}: the server closed the connection without answering)" in message
    assert "MaxRetryError" not in message and "HTTPConnectionPool" not in message


# ---------------------------------------------------------------- waiting for rollouts


def test_wait_healthy_waits_for_the_rollout(kube: FakeKubeApiServer, provider: KubernetesProvider) -> None:
    kube.ready_after_polls = 4
    c = change("create", 3)
    provider.apply(c)
    kube.fail_next(1, 503, method="GET")  # a hiccup while waiting is not a failure
    provider.wait_healthy(c, timeout_s=5)
    reads = [r for r in kube.requests if r.method == "GET" and r.path.endswith("/llama-h100")]
    assert len(reads) >= 5  # 1 failed + 4 polls until ready
    obj = kube.deployment(NS, "llama-h100")
    assert obj is not None and rollout_status(obj) == (True, "3 of 3 replicas ready")


def test_wait_healthy_times_out_retryably(kube: FakeKubeApiServer, provider: KubernetesProvider) -> None:
    kube.ready_after_polls = None  # never ready
    c = change("create", 2)
    provider.apply(c)
    started = time.monotonic()
    with pytest.raises(ProviderError) as err:
        provider.wait_healthy(c, timeout_s=0.3)
    assert 0.3 <= time.monotonic() - started < 5  # the 0.3 s timeout, not a wait without end (a loaded machine's margin)
    message = str(err.value)
    assert err.value.retryable and "not rolled out after 0.3s" in message
    assert "0 ready" in message and "kubectl --context cluster-a -n ml describe deployment llama-h100" in message


def test_an_apply_waits_for_health_once_within_the_timeout(kube: FakeKubeApiServer, provider: KubernetesProvider,
                                                          tmp_path: Path) -> None:
    """healthTimeoutSeconds bounds the whole wait: the provider's timeout was retried like a 503,
    six times (a deployment that never became ready held an apply told 600 s for an hour)."""
    kube.ready_after_polls = None  # never ready
    backend = LocalBackend(tmp_path / "state.json")
    plan = Plan("now", "sha256:x", None, 0, {}, (change("create", 2),))
    messages: list[str] = []
    applier = Applier(backend, [provider], health_timeout_s=0.4, retry=RetryPolicy(base_seconds=0.001),
                      progress=lambda m, _c: messages.append(m))
    with backend.lock("apply"), pytest.raises(ProviderError, match=r"not rolled out after 0\.4s"):
        applier.run(plan, backend.read(), "p", None, {})
    # one wait of 0.4 s, not 6 (each try says "retrying"; timed, a loaded machine's setup ran over)
    assert not [m for m in messages if m.startswith("retrying")], messages
    assert kube.deployment(NS, "llama-h100") is not None
    state = backend.read()  # made, so recorded, but not healthy
    assert state.replicas() == {("llama", "h100"): 2} and state.deployments["llama@h100"]["healthy"] is False


def test_wait_healthy_for_a_delete_waits_until_gone(kube: FakeKubeApiServer, provider: KubernetesProvider) -> None:
    provider.apply(change("create", 1))
    provider.apply(change("delete"))
    provider.wait_healthy(change("delete"), timeout_s=1)


def test_rollout_status_reads_the_controller_fields() -> None:
    meta = {"generation": 3}
    assert rollout_status({"metadata": meta, "spec": {"replicas": 2}, "status": {"observedGeneration": 2}})[0] \
        is False
    assert rollout_status({"metadata": meta, "spec": {"replicas": 0}, "status": {"observedGeneration": 3}}) \
        == (True, "0 of 0 replicas ready")
    half = {"observedGeneration": 3, "replicas": 3, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}
    assert rollout_status({"metadata": meta, "spec": {"replicas": 2}, "status": half})[0] is False  # old pod left



def test_a_deployment_is_not_healthy_where_its_status_says_so_and_not_while_it_rolls_out() -> None:
    """What refresh reports of a Deployment the state records healthy (``unhealthy``): a spec the
    controller has not acted on, a rollout stuck past its deadline, and fewer replicas available than
    wanted once its rollout had finished (a node died: the controller keeps Progressing True,
    NewReplicaSetAvailable); a rollout still running within its deadline, or done, is none."""
    meta = {"generation": 3}
    done = {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
    def status(**kw: Any) -> dict[str, Any]:
        return {"observedGeneration": 3, "replicas": 4, "updatedReplicas": 4, "readyReplicas": 4,
                "availableReplicas": 4, "conditions": [done], **kw}
    def said(**kw: Any) -> str | None:
        return unhealthy({"metadata": meta, "spec": {"replicas": 4}, "status": status(**kw)})
    assert said() is None
    assert said(observedGeneration=2) == ("the Deployment controller has not acted on its generation 3 (it "
                                          "observed 2): is kube-controller-manager running?")
    lost = {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
            "lastTransitionTime": "2026-11-28T03:00:00Z"}
    assert said(availableReplicas=2, readyReplicas=2, conditions=[lost, done]) == (
        "2 of its 4 replicas available since 2026-11-28T03:00:00Z, though its rollout had finished (Progressing "
        "True, NewReplicaSetAvailable; Available False, MinimumReplicasUnavailable): pods lost with a node, "
        "pending for GPUs, or crashing?")
    within = {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}
    assert said(availableReplicas=3, conditions=[within, done]).startswith(  # within maxUnavailable: no since
        "3 of its 4 replicas available, though its rollout had finished (Progressing True, NewReplicaSetAvailable; "
        "Available True, MinimumReplicasAvailable)")
    rolling = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}
    assert said(updatedReplicas=1, replicas=5, availableReplicas=3, conditions=[within, rolling]) is None
    assert said(availableReplicas=3, conditions=[within, rolling]) is None  # new pods starting, in its deadline
    stuck = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "lastUpdateTime": "2026-11-28T02:00:00Z", "message": 'ReplicaSet "x" has timed out progressing.'}
    assert said(updatedReplicas=1, replicas=5, conditions=[within, stuck]) == (
        "its rollout has been stuck since 2026-11-28T02:00:00Z (Progressing False, ProgressDeadlineExceeded: "
        'ReplicaSet "x" has timed out progressing.); 1 of 4 replicas updated, 4 available')


# ---------------------------------------------------------------- the fake itself speaks the protocol


def test_server_rejects_a_stale_put_with_409(kube: FakeKubeApiServer, kubeconfig: Path) -> None:
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    kube.seed_deployment(foreign_deployment())
    api = client.AppsV1Api(config.new_client_from_config(str(kubeconfig)))  # type: ignore[no-untyped-call]
    current = api.read_namespaced_deployment("llama-h100", NS)
    current.spec.replicas = 2
    api.replace_namespaced_deployment("llama-h100", NS, current)
    current.spec.replicas = 4  # still carries the old resourceVersion
    with pytest.raises(ApiException) as err:
        api.replace_namespaced_deployment("llama-h100", NS, current)
    body = json.loads(err.value.body or "{}")
    assert err.value.status == 409 and body["kind"] == "Status" and body["reason"] == "Conflict"
    with pytest.raises(ApiException) as missing:
        api.read_namespaced_deployment("nope", NS)
    assert missing.value.status == 404 and json.loads(missing.value.body or "{}")["reason"] == "NotFound"


# ---------------------------------------------------------------- kubectl and schema validation


def kubectl(kubeconfig: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert KUBECTL is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
    env["HOME"] = str(tmp_path / "home")
    return subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "kcache"),
                           "--request-timeout", "10s", *args], capture_output=True, text=True, env=env, timeout=60,
                          check=False)


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on the PATH")
def test_kubectl_lists_what_placer_applied(kube: FakeKubeApiServer, kubeconfig: Path, tmp_path: Path,
                                           provider: KubernetesProvider) -> None:
    provider.apply(change("create", 3))
    run = kubectl(kubeconfig, tmp_path, "get", "deployments", "-n", NS, "-o", "json")
    assert run.returncode == 0, run.stderr
    items = json.loads(run.stdout)["items"]
    assert [(i["metadata"]["name"], i["spec"]["replicas"], i["metadata"]["labels"][MANAGED_BY]) for i in items] \
        == [("llama-h100", 3, "placer")]
    selected = kubectl(kubeconfig, tmp_path, "get", "deployments", "-A", "-l", f"{MANAGED_BY}=placer", "-o", "name")
    assert selected.returncode == 0 and selected.stdout.split() == ["deployment.apps/llama-h100"]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on the PATH")
def test_kubectl_server_side_applies_a_rendered_manifest(kube: FakeKubeApiServer, kubeconfig: Path,
                                                         tmp_path: Path, provider: KubernetesProvider) -> None:
    c = change("create", 2)
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump(deployment_manifest(c.target, 2)), encoding="utf-8")
    run = kubectl(kubeconfig, tmp_path, "apply", "--server-side", "-f", str(manifest))
    assert run.returncode == 0, run.stderr
    assert "deployment.apps/llama-h100 serverside-applied" in run.stdout
    patch = kube.writes()[-1]
    assert patch.content_type == "application/apply-patch+yaml" and patch.query["fieldManager"] == ["kubectl"]
    assert provider.observe(c) == {"replicas": 2}  # labelled as placer's: placer treats it as its own
    provider.apply(change("update", 4))  # force takes spec.replicas over from kubectl
    obj = kube.deployment(NS, "llama-h100")
    assert obj is not None and obj["spec"]["replicas"] == 4
    owners = {m["manager"]: m["fieldsV1"] for m in obj["metadata"]["managedFields"]}
    assert set(owners) == {"kubectl", "placer"}
    assert "f:replicas" in owners["placer"]["f:spec"] and "f:replicas" not in owners["kubectl"]["f:spec"]
    again = kubectl(kubeconfig, tmp_path, "apply", "--server-side", "-f", str(manifest))  # replicas: 2 vs 4
    assert again.returncode != 0 and "conflict" in again.stderr.lower() and "placer" in again.stderr


def kubernetes_validate() -> list[str] | None:
    exe = Path(sys.executable).parent / "kubernetes-validate"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("kubernetes-validate")
    return [found] if found else None


@pytest.mark.skipif(kubernetes_validate() is None, reason="kubernetes-validate is not installed (pip install "
                    "kubernetes-validate)")
@pytest.mark.parametrize("version", ["1.33.0", "1.37.0"])
def test_rendered_manifest_passes_strict_schema_validation(tmp_path: Path, version: str) -> None:
    command = kubernetes_validate()
    assert command is not None
    good = tmp_path / "deployment.yaml"
    good.write_text(yaml.safe_dump(deployment_manifest(change().target, 3)), encoding="utf-8")
    # a rollout its pool has no room to surge for (diff._surges)
    surgeless = tmp_path / "surgeless.yaml"
    surgeless.write_text(yaml.safe_dump(deployment_manifest(
        {**change().target, "strategy": {"maxSurge": 0, "maxUnavailable": 1}}, 2)), encoding="utf-8")
    # a rollout of 8 whose surge a required headroom holds to 1 of Kubernetes' default 2 (diff._surges)
    less = tmp_path / "less.yaml"
    less.write_text(yaml.safe_dump(deployment_manifest(
        {**change().target, "strategy": {"maxSurge": 1, "maxUnavailable": 2}}, 8)), encoding="utf-8")
    bad_doc = deployment_manifest(change().target, 3)
    bad_doc["spec"]["template"]["spec"]["containers"][0]["gpus"] = 2  # not a field of Container
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(bad_doc), encoding="utf-8")
    offline = {**os.environ, "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
               "NO_PROXY": ""}  # any network use would fail
    ok = subprocess.run([*command, "--strict", "-k", version, str(good), str(surgeless), str(less)],
                        capture_output=True, text=True, env=offline, timeout=60, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "INFO" in ok.stdout and ok.stdout.count("passed") == 3
    rejected = subprocess.run([*command, "--strict", "-k", version, str(bad)], capture_output=True, text=True,
                              env=offline, timeout=60, check=False)
    assert rejected.returncode != 0 and "gpus" in rejected.stdout + rejected.stderr


@pytest.mark.parametrize("body", [b"<html><body>Sign in to the proxy</body></html>", b'{"kind": "NodeList", "ite',
                                  b'{"kind": "NodeList", "items": {"a": 1}}', b'{"items": [{"status": {}}]}', b"[]"])
def test_discover_on_an_answer_that_is_not_json_says_which_server(tmp_path: Path, body: bytes) -> None:
    """A proxy's HTML page, or a body cut short, answered with 200: "internal error (JSONDecodeError)"
    named neither the context nor the request."""
    from http.server import BaseHTTPRequestHandler

    from tests.servers.loopback import LoopbackServer

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    class Proxy(LoopbackServer):
        def handler_class(self) -> type[BaseHTTPRequestHandler]:
            return Page

    with Proxy() as proxy:
        provider = KubernetesProvider(str(write_kubeconfig(tmp_path / "kubeconfig", {"cluster-a": proxy.url})),
                                      request_timeout_s=2.0)
        with pytest.raises(ProviderError, match=r"listing nodes of context cluster-a failed: the (API server's answer "
                                                r"is not JSON .*not a proxy's page\?|answer is not a Kubernetes list of "
                                                r"named objects)") as err:
            provider.discover()
    assert err.value.retryable


def test_discover_counts_whole_gpus_not_mig_slices_or_shared_replicas() -> None:
    """As GPU Feature Discovery labels them: 8 A100s cut 7 ways (MIG single) were 56 "A100-40GB";
    8 A100s all cut (MIG mixed, none allocatable) were 8 whole ones; 8 L4s shared 4 ways, 32, then 8
    whole L4s, which they are not: a pod asking for one gets a share. Shared nodes are no pool."""
    from providers.kubernetes_discovery import pools_from_nodes

    def node(name: str, gpus: int, labels: dict[str, str]) -> dict[str, Any]:
        return {"metadata": {"name": name, "labels": labels}, "spec": {},
                "status": {"allocatable": {"nvidia.com/gpu": str(gpus)},
                           "conditions": [{"type": "Ready", "status": "True"}]}}

    nodes = [node("mig", 56, {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb",
                              "nvidia.com/gpu.count": "56", "nvidia.com/mig.strategy": "single"}),
             node("mixed", 0, {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "nvidia.com/gpu.count": "8",
                               "nvidia.com/mig.strategy": "mixed"}),
             node("shared", 32, {"nvidia.com/gpu.product": "NVIDIA-L4", "nvidia.com/gpu.count": "8",
                                 "nvidia.com/gpu.replicas": "4"})]
    found = pools_from_nodes("ctx", "ctx", nodes, set())
    pools = {d["metadata"]["name"]: d["spec"] for d in found.documents if d["kind"] == "Pool"}
    assert list(pools) == []
    notes = " ".join(found.notes)
    assert "nodes mig offer MIG slices" in notes and "is cut into MIG slices" in notes
    assert "context ctx: nodes shared share each GPU (nvidia.com/gpu.replicas=4)" in notes


def gfd_node(name: str, gpus: int, labels: dict[str, str]) -> dict[str, Any]:
    """A node as GPU Feature Discovery and the device plugin label it, Ready."""
    return {"metadata": {"name": name, "labels": labels}, "spec": {},
            "status": {"allocatable": {"nvidia.com/gpu": str(gpus)},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def test_discover_matches_a_gpu_by_whole_words_and_its_memory() -> None:
    """A GH200 (96 GiB) was an H200-141GB ("H200" is in "GH200"); an Orin matched nothing."""
    from providers.kubernetes_discovery import pools_from_nodes

    nodes = [gfd_node("gh200", 1, {"nvidia.com/gpu.product": "NVIDIA-GH200-480GB", "nvidia.com/gpu.memory": "97871"}),
             gfd_node("orin", 1, {"nvidia.com/gpu.product": "NVIDIA-Jetson-AGX-Orin", "nvidia.com/gpu.memory": "62800"}),
             gfd_node("big-l4", 1, {"nvidia.com/gpu.product": "NVIDIA-L4", "nvidia.com/gpu.memory": "81920",
                                    "placer.dev/pool": "odd"})]
    found = pools_from_nodes("ctx", "ctx", nodes, set())
    gpus = {d["metadata"]["name"]: d["spec"]["gpu"]["type"] for d in found.documents if d["kind"] == "Pool"}
    assert gpus == {"ctx-gh200-96gb": "GH200-96GB", "ctx-orin-64gb": "Orin-64GB",
                    "odd": "L4-80GB"}  # an "L4" of 80 GiB is no L4-24GB: a GPUType of its own
    types = {d["metadata"]["name"]: d["spec"]["memoryGiB"] for d in found.documents if d["kind"] == "GPUType"}
    assert types == {"GH200-96GB": 95.6, "L4-80GB": 80.0}


@pytest.mark.parametrize(("product", "memory_gib", "expected"), [
    ("T4g", 16.0, "T4-16GB"),  # AWS g5g names its T4 so
    ("NVIDIA T4G", None, "T4-16GB"),
    ("Tesla T4", 15.0, "T4-16GB"),
    ("NVIDIA-GH200-480GB", 95.6, None),  # a G- prefix is no variant: a GH200 is no H200
    ("NVIDIA-GH200-480GB", None, None),
    ("NVIDIA H200", 139.8, "H200-141GB"),
    ("NVIDIA L40S", 44.4, "L40S-48GB"),
])
def test_a_gpu_is_matched_by_its_name_or_a_known_variant_of_it(
        product: str, memory_gib: float | None, expected: str | None) -> None:
    """Matching by whole words turned AWS g5g's "T4g" (a T4 of 16 GiB) into a GPUType of its own."""
    from placer.catalog import match_product

    found = match_product(product, memory_gib)
    assert (found.name if found else None) == expected


def test_a_node_reporting_impossibly_many_gpus_is_left_out_alone() -> None:
    """One L4 node whose device plugin reported 10^12 GPUs was taken as the group's perNode: the
    healthy nodes were "fewer than 1000000000000 GPUs" and the pool no fleet takes was skipped."""
    from providers.kubernetes_discovery import pools_from_nodes

    l4 = {"nvidia.com/gpu.product": "NVIDIA-L4", "nvidia.com/gpu.count": "1", "nvidia.com/gpu.memory": "23034"}
    unlabelled = {"nvidia.com/gpu.product": "NVIDIA-L4", "placer.dev/pool": "l4-bare"}  # no gpu.count label
    nodes = [gfd_node("a1-0", 1, l4), gfd_node("a1-1", 1, l4), gfd_node("big-0", 10**12, l4),
             gfd_node("over-0", 4, l4), gfd_node("bare-0", 2, unlabelled), gfd_node("bare-1", 2048, unlabelled),
             gfd_node("lone", 4096, {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "8"})]
    found = pools_from_nodes("prod", "prod", nodes, set())
    pools = {d["metadata"]["name"]: d["spec"] for d in found.documents if d["kind"] == "Pool"}
    assert set(pools) == {"prod-l4-24gb", "l4-bare"}
    assert pools["prod-l4-24gb"]["gpu"]["perNode"] == 1 and pools["prod-l4-24gb"]["nodes"] == {"count": 2}
    assert pools["l4-bare"]["gpu"]["perNode"] == 2 and pools["l4-bare"]["nodes"] == {"count": 1}
    notes = "\n".join(found.notes)
    assert "fewer than" not in notes and "not Ready" not in notes
    assert ("pool prod-l4-24gb: node big-0 reports 1000000000000 allocatable nvidia.com/gpu, but its "
            "nvidia.com/gpu.count label says 1 (`kubectl describe node big-0`); node over-0 reports 4 allocatable "
            "nvidia.com/gpu, but its nvidia.com/gpu.count label says 1") in notes
    assert "pool l4-bare: node bare-1 reports 2048 allocatable nvidia.com/gpu, but a node of a fleet holds at " \
           "most 1024" in notes
    assert "context prod: node lone reports 4096 allocatable nvidia.com/gpu, but its nvidia.com/gpu.count label " \
           "says 8 (`kubectl describe node lone`); not in any pool" in notes
    # the group's nodes, the left-out one too, are what its nodeSelector selects (a merge matches by them)
    assert set(found.members["prod-l4-24gb"]) == {"a1-0", "a1-1", "big-0", "over-0"}
