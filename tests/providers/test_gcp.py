"""GcpProvider against a fake Compute REST server on 127.0.0.1: the real google-cloud-compute client
sends real HTTP; the fake holds the groups, so resizes are read back, and injects faults."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from placer.planfile import Change
from placer.spec.kinds import GPUTypeSpec, LocationSpec, PoolSpec
from providers.base import Provider, ProviderError
from providers.gcp import GcpProvider
from tests.servers.gcp_server import FakeCompute

PROJECT, OTHER = "demo-ml", "other-proj"


def seed(gcp: FakeCompute) -> None:
    """Zonal and regional GPU groups: accelerators in templates, and implied by a2/a3/g2 machine types."""
    gcp.add_machine_type("n1-standard-8")
    gcp.add_machine_type("n2-standard-4")
    gcp.add_machine_type("a2-highgpu-4g", [("nvidia-tesla-a100", 4)])
    gcp.add_machine_type("g2-standard-24", [("nvidia-l4", 2)])
    gcp.add_machine_type("a3-highgpu-8g", [("nvidia-h100-80gb", 8)])
    gcp.add_accelerator_type("nvidia-a100-80gb-nvl", "NVIDIA A100 80GB")
    gcp.add_accelerator_type("nvidia-tesla-v100", "NVIDIA V100")

    t4 = gcp.add_template(PROJECT, "t4-tmpl", "n1-standard-8", accelerators=[("nvidia-tesla-t4", 2)])
    gcp.add_mig(PROJECT, "t4-pool", t4, zone="us-central1-a", target_size=1)
    a2 = gcp.add_template(PROJECT, "a2-spot", "a2-highgpu-4g", spot=True)
    gcp.add_mig(PROJECT, "a100-spot", a2, zone="europe-west4-a", target_size=2, autoscaler_max=6)
    l4 = gcp.add_template(PROJECT, "l4-tmpl", "zones/europe-west4-b/machineTypes/g2-standard-24",
                          region="europe-west4", preemptible=False)
    gcp.add_mig(PROJECT, "l4-serving", l4, region="europe-west4", target_size=3)
    h100 = gcp.add_template(PROJECT, "h100-tmpl", "a3-highgpu-8g", accelerators=[("nvidia-h100-80gb", 8)],
                            preemptible=True)
    gcp.add_mig(PROJECT, "h100-train", h100, region="us-east4", target_size=0)
    nvl = gcp.add_template(PROJECT, "nvl-tmpl", "n1-standard-8", accelerators=[("nvidia-a100-80gb-nvl", 1)])
    gcp.add_mig(PROJECT, "nvl-pool", nvl, zone="us-central1-a", target_size=0)
    v100 = gcp.add_template(PROJECT, "v100-tmpl", "n1-standard-8", accelerators=[("nvidia-tesla-v100", 1)])
    gcp.add_mig(PROJECT, "v100-legacy", v100, zone="us-central1-a")
    web = gcp.add_template(PROJECT, "web-tmpl", "n2-standard-4")
    gcp.add_mig(PROJECT, "web-frontend", web, zone="us-central1-a", target_size=4)
    gcp.add_mig(PROJECT, "broken", f"https://www.googleapis.com/compute/v1/projects/{PROJECT}"
                "/global/instanceTemplates/deleted-tmpl", zone="us-central1-a")
    other = gcp.add_template(OTHER, "t4-tmpl", "n1-standard-8", accelerators=[("nvidia-tesla-t4", 1)])
    gcp.add_mig(OTHER, "t4-pool", other, zone="us-central1-b", target_size=1)


@pytest.fixture
def gcp() -> Iterator[FakeCompute]:
    with FakeCompute() as server:
        seed(server)
        yield server


@pytest.fixture
def provider(gcp: FakeCompute) -> GcpProvider:
    return GcpProvider(projects=[PROJECT, OTHER], api_endpoint=gcp.endpoint,
                       request_timeout_s=10.0, operation_timeout_s=2.0, poll_interval_s=0.01)


def pool_change(name: str, nodes: int | None, where: dict[str, str], *, low: int = 0, high: int = 8,
                project: str = PROJECT) -> Change:
    return Change(
        address=f"pool/{name}", action="update", phase=1, before=None,
        after=None if nodes is None else {"nodes": nodes},
        target={"provider": "gcp", "pool": name, "minNodes": low, "maxNodes": high, "gpuType": "T4-16GB",
                "gpusPerNode": 2, "spot": False,
                "gcp": {"project": project, **where, "instanceGroupManager": name}})


ZONAL = {"zone": "us-central1-a"}
REGIONAL = {"region": "europe-west4"}
GROUPS = [("t4-pool", ZONAL), ("l4-serving", REGIONAL)]


def by_name(documents: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


# ------------------------------------------------------------------ discovery


def test_discover_finds_gpu_groups_zonal_and_regional(gcp: FakeCompute, provider: GcpProvider) -> None:
    gcp.state.page_size = 1  # make the aggregated list page
    found = provider.discover()
    pools, locations = by_name(found.documents, "Pool"), by_name(found.documents, "Location")

    assert set(pools) == {"t4-pool", "a100-spot", "l4-serving", "h100-train", "nvl-pool", "v100-legacy",
                          "t4-pool-us-central1-b"}
    assert pools["t4-pool"]["spec"] == {
        "location": "gcp-us-central1", "provider": "gcp", "gpu": {"type": "T4-16GB", "perNode": 2},
        "nodes": {"min": 0, "max": 8}, "usdPerGpuHour": 0.55, "spot": False, "failureDomain": "us-central1-a",
        "target": {"gcp": {"project": PROJECT, "zone": "us-central1-a", "instanceGroupManager": "t4-pool"}}}
    # a2 machine type: GPUs come from machineTypes.get; spot template; autoscaler max
    a100 = pools["a100-spot"]["spec"]
    assert a100["gpu"] == {"type": "A100-40GB", "perNode": 4}
    assert a100["spot"] is True and a100["nodes"] == {"min": 0, "max": 6}
    assert a100["usdPerGpuHour"] < 3.67
    assert a100["target"]["gcp"]["instanceGroupManager"] == "a100-spot"  # GCP names are DNS labels already
    # regional group, regional template, g2 machine type given as a partial URL
    l4 = pools["l4-serving"]["spec"]
    assert l4["gpu"] == {"type": "L4-24GB", "perNode": 2} and l4["location"] == "gcp-europe-west4"
    assert l4["target"]["gcp"] == {"project": PROJECT, "region": "europe-west4", "instanceGroupManager": "l4-serving"}
    assert "failureDomain" not in l4
    h100 = pools["h100-train"]["spec"]
    assert h100["gpu"] == {"type": "H100-80GB", "perNode": 8} and h100["spot"] is True  # preemptible
    assert pools["nvl-pool"]["spec"]["gpu"]["type"] == "A100-80GB"  # via acceleratorTypes' description
    assert pools["t4-pool-us-central1-b"]["spec"]["target"]["gcp"]["project"] == OTHER
    # a V100 is not in the catalog: a GPUType of its own, named as the other discoveries name it
    assert pools["v100-legacy"]["spec"]["gpu"] == {"type": "V100-16GB", "perNode": 1}
    assert by_name(found.documents, "GPUType") == {"V100-16GB": {
        "apiVersion": "placer.dev/v1alpha1", "kind": "GPUType", "metadata": {"name": "V100-16GB"},
        "spec": {"memoryGiB": 15.8, "vendor": "nvidia"}}}

    assert {n: d["spec"].get("jurisdiction") for n, d in locations.items()} == {
        "gcp-us-central1": "US", "gcp-europe-west4": "EU", "gcp-us-east4": "US"}
    for doc in found.documents:  # every document is valid fleet input
        assert doc["apiVersion"] == "placer.dev/v1alpha1"
        {"Pool": PoolSpec, "Location": LocationSpec, "GPUType": GPUTypeSpec}[doc["kind"]].model_validate(doc["spec"])

    # without an autoscaler the size range is a placeholder: a merge keeps the user's (the autoscaler's is a fact)
    assert found.guessed == {name: {("spec", "nodes", "min"), ("spec", "nodes", "max")} for name in pools
                             if name != "a100-spot"}
    notes = "\n".join(found.notes)
    assert "approximate" in notes and "nodes.max" in notes
    assert "a100-spot" in notes and "autoscaler" in notes
    assert "nvidia-tesla-v100" in notes and "broken" in notes and "deleted-tmpl" in notes
    assert "web-frontend" not in notes  # CPU-only groups are simply not pools
    assert len(gcp.requests_to(f"/projects/{PROJECT}/aggregated/instanceGroupManagers")) > 1  # paged
    listed = gcp.requests_to("/zones/us-central1-a/acceleratorTypes")  # looked up once per discovery, paged
    assert [r.query.get("pageToken") for r in listed] == [None, ["1"]]


@pytest.mark.parametrize(("accelerator", "gpu_type", "memory_gib"), [
    ("nvidia-tesla-v100", "V100-16GB", 15.8), ("nvidia-tesla-p100", "P100-16GB", 15.9),
    ("nvidia-tesla-p100-vws", "P100-16GB", 15.9), ("nvidia-tesla-p4", "P4-8GB", 7.4),
    ("nvidia-b200", "B200-179GB", 179.1), ("nvidia-gb200", "GB200-185GB", 185.0)])
def test_discover_gives_a_gpu_the_catalog_lacks_the_gpu_type_the_other_discoveries_name_it_by(
        accelerator: str, gpu_type: str, memory_gib: float) -> None:
    """GCP reports no accelerator's memory: groups of these were skipped. Their GPUType is named as
    Kubernetes discovery names the GPU from its nvidia.com/gpu.product and memory labels, and of that memory."""
    with FakeCompute() as gcp:
        gcp.add_machine_type("n1-standard-8")
        gcp.add_mig(PROJECT, "g", gcp.add_template(PROJECT, "t", "n1-standard-8", accelerators=[(accelerator, 2)]),
                    zone="us-central1-a")
        found = GcpProvider(projects=[PROJECT], api_endpoint=gcp.endpoint, request_timeout_s=10.0).discover()
    assert by_name(found.documents, "Pool")["g"]["spec"]["gpu"] == {"type": gpu_type, "perNode": 2}
    assert by_name(found.documents, "GPUType")[gpu_type]["spec"] == {"memoryGiB": memory_gib, "vendor": "nvidia"}


def test_discover_listed_zones_and_regions_only(gcp: FakeCompute, provider: GcpProvider) -> None:
    """A region is every group in it, the zonal ones of its zones too: `--region europe-west4` found
    the regional l4-serving and left out a100-spot of europe-west4-a, exit 0, as if it did not exist."""
    found = provider.discover(projects=[PROJECT], zones=["us-central1-a"], regions=["europe-west4"])
    assert set(by_name(found.documents, "Pool")) == {"t4-pool", "nvl-pool", "v100-legacy", "l4-serving", "a100-spot"}
    assert set(by_name(found.documents, "Location")) == {"gcp-us-central1", "gcp-europe-west4"}
    assert gcp.requests_to("/zones/us-central1-a/instanceGroupManagers", "GET")
    found = provider.discover(projects=[PROJECT], zones=["europe-west4-a"], regions=["europe-west4"])
    assert sorted(by_name(found.documents, "Pool")) == ["a100-spot", "l4-serving"]  # a zone named twice: once
    gcp.state.unreachable = ["zones/us-central1-f"]  # another region's zone: not in this listing
    found = provider.discover(projects=[PROJECT], regions=["us-east4"])
    assert sorted(by_name(found.documents, "Pool")) == ["h100-train"]
    with pytest.raises(ProviderError, match="could not reach zones/us-central1-f"):  # its own region's: said
        provider.discover(projects=[PROJECT], regions=["us-central1"])


def test_discover_names_groups_of_one_name_by_where_they_are_not_by_listing_order(
        gcp: FakeCompute, provider: GcpProvider) -> None:
    """The aggregated list is a map whose order varies: two groups named infer took each other's pool
    name from run to run, so two discoveries of one project gave two different files."""
    t = gcp.add_template(PROJECT, "l4-dup", "g2-standard-24")
    gcp.add_mig(PROJECT, "infer", t, zone="us-central1-a", target_size=1)
    gcp.add_mig(PROJECT, "infer", t, zone="europe-west4-a", target_size=2)
    for zones in (["us-central1-a", "europe-west4-a"], ["europe-west4-a", "us-central1-a"], None):
        pools = by_name(provider.discover(projects=[PROJECT], zones=zones).documents, "Pool")
        assert pools["infer"]["spec"]["target"]["gcp"]["zone"] == "europe-west4-a"
        assert pools["infer-us-central1-a"]["spec"]["target"]["gcp"]["zone"] == "us-central1-a"


def test_discover_throttled_is_retryable(gcp: FakeCompute, provider: GcpProvider) -> None:
    gcp.fail_next(1, 429, path_contains="instanceTemplates")
    with pytest.raises(ProviderError) as err:
        provider.discover(projects=[PROJECT])
    assert err.value.retryable and "429" in str(err.value)


def test_discover_says_which_zones_the_listing_could_not_reach(gcp: FakeCompute, provider: GcpProvider) -> None:
    """A zone the aggregated list could not reach was left out, and the rest printed as the whole
    project (exit 0)."""
    gcp.state.unreachable = ["zones/us-central1-f"]
    with pytest.raises(ProviderError, match=r"could not reach zones/us-central1-f, so the listing is incomplete"):
        provider.discover(projects=[PROJECT])


def test_discover_stops_at_a_page_token_it_was_sent_before(gcp: FakeCompute, provider: GcpProvider) -> None:
    """A page token sent twice listed the same page for ever (600 requests in 30 s)."""
    gcp.state.page_size, gcp.state.stuck_token = 1, True
    with pytest.raises(ProviderError, match="sent the page token '0' twice"):
        provider.discover(projects=[PROJECT])
    assert len(gcp.requests_to(f"/projects/{PROJECT}/aggregated/instanceGroupManagers")) == 2


def test_a_listing_stops_after_the_most_pages_any_account_has() -> None:
    from providers.base import MOST_PAGES, bounded_pages

    with pytest.raises(ProviderError, match=f"more than {MOST_PAGES} pages"):
        list(bounded_pages(iter(range(10 * MOST_PAGES)), "aws eu-west-1: listing the Auto Scaling groups"))
    assert list(bounded_pages(iter(range(3)), "x")) == [0, 1, 2]


# ------------------------------------------------------------------ apply and observe


def test_is_a_provider_and_handles_only_gcp_pool_changes(provider: GcpProvider) -> None:
    assert isinstance(provider, Provider)
    change = pool_change("t4-pool", 2, ZONAL)
    assert provider.handles(change)
    assert not provider.handles(Change("pool/x", "update", 1, None, {"nodes": 1}, target={"provider": "aws"}))
    assert not provider.handles(Change("deployment/m@t4-pool", "create", 2, None, {"replicas": 1},
                                       target={"provider": "gcp"}))


@pytest.mark.parametrize(("name", "where"), GROUPS)
def test_apply_then_observe_round_trip(gcp: FakeCompute, provider: GcpProvider, name: str,
                                       where: dict[str, str]) -> None:
    before = gcp.target_size(PROJECT, name, **where)
    assert provider.observe(pool_change(name, 5, where)) == {"nodes": before}

    provider.apply(pool_change(name, 5, where))

    assert gcp.target_size(PROJECT, name, **where) == 5
    assert provider.observe(pool_change(name, 5, where)) == {"nodes": 5}
    [resize] = gcp.requests_to(f"/instanceGroupManagers/{name}/resize", "POST")
    assert resize.query["size"] == ["5"]
    provider.apply(pool_change(name, 5, where))  # idempotent
    assert gcp.target_size(PROJECT, name, **where) == 5


@pytest.mark.parametrize(("nodes", "low", "high"), [(9, 0, 8), (0, 1, 8), (-1, 0, 8)])
def test_out_of_range_size_is_refused_and_nothing_is_sent(gcp: FakeCompute, provider: GcpProvider,
                                                          nodes: int, low: int, high: int) -> None:
    with pytest.raises(ProviderError) as err:
        provider.apply(pool_change("t4-pool", nodes, ZONAL, low=low, high=high))
    assert not err.value.retryable
    assert "t4-pool" in str(err.value) and f"{low}..{high}" in str(err.value) and "re-plan" in str(err.value)
    assert gcp.state.requests == []
    assert gcp.target_size(PROJECT, "t4-pool", **ZONAL) == 1


def test_bad_target_is_refused_and_nothing_is_sent(gcp: FakeCompute, provider: GcpProvider) -> None:
    change = pool_change("t4-pool", 2, ZONAL)
    both = Change(change.address, "update", 1, None, {"nodes": 2},
                  target={**change.target, "gcp": {"project": PROJECT, "instanceGroupManager": "t4-pool"}})
    with pytest.raises(ProviderError, match="exactly one of zone or region") as err:
        provider.apply(both)
    assert not err.value.retryable and gcp.state.requests == []
    with pytest.raises(ProviderError, match=r"after\.nodes"):
        provider.apply(pool_change("t4-pool", None, ZONAL))
    assert gcp.state.requests == []


def test_a_released_group_is_left_as_it_is_and_nothing_is_sent(gcp: FakeCompute, provider: GcpProvider) -> None:
    change = pool_change("t4-pool", None, ZONAL)
    provider.apply(Change(change.address, "delete", 4, {"nodes": 1}, None, (), change.target))
    assert gcp.state.requests == [] and gcp.target_size(PROJECT, "t4-pool", **ZONAL) == 1


@pytest.mark.parametrize("where", [ZONAL, REGIONAL])
def test_missing_group_is_not_found_and_not_retryable(provider: GcpProvider, where: dict[str, str]) -> None:
    change = pool_change("no-such-group", 2, where)
    assert provider.observe(change) is None
    calls: list[Callable[[], None]] = [lambda: provider.apply(change), lambda: provider.wait_healthy(change, 1.0)]
    for call in calls:
        with pytest.raises(ProviderError) as err:
            call()
        message = str(err.value)
        assert not err.value.retryable
        assert "no-such-group" in message and "404" in message and "was not found" in message
        assert "target.gcp" in message and err.value.address == "pool/no-such-group"
        assert "GET http" not in message and "POST http" not in message


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize(("name", "where"), GROUPS)
def test_throttling_and_server_errors_are_retryable(gcp: FakeCompute, provider: GcpProvider, status: int,
                                                    name: str, where: dict[str, str]) -> None:
    gcp.fail_next(2, status)
    with pytest.raises(ProviderError) as err:
        provider.apply(pool_change(name, 4, where))
    assert err.value.retryable and str(status) in str(err.value) and name in str(err.value)
    with pytest.raises(ProviderError) as err:
        provider.observe(pool_change(name, 4, where))
    assert err.value.retryable
    assert len(gcp.state.requests) == 2  # one request per call: retrying is the apply engine's job
    provider.apply(pool_change(name, 4, where))  # the engine's retry gets through
    assert gcp.target_size(PROJECT, name, **where) == 4


def test_the_wait_a_throttled_answer_asks_for_goes_with_the_error(gcp: FakeCompute, provider: GcpProvider) -> None:
    gcp.fail_next(1, 429, retry_after=7)
    with pytest.raises(ProviderError) as err:
        provider.apply(pool_change("t4-pool", 4, ZONAL))
    assert err.value.retryable and err.value.retry_after == 7  # the apply engine waits at least that long
    gcp.fail_next(1, 503)
    with pytest.raises(ProviderError) as plain:
        provider.observe(pool_change("t4-pool", 4, ZONAL))
    assert plain.value.retryable and plain.value.retry_after is None


def test_client_errors_are_not_retryable(gcp: FakeCompute, provider: GcpProvider) -> None:
    gcp.fail_next(1, 403)
    with pytest.raises(ProviderError) as err:
        provider.apply(pool_change("t4-pool", 2, ZONAL))
    assert not err.value.retryable and "grant roles/compute.instanceAdmin.v1 on the project" in str(err.value)


def test_a_refused_read_names_the_read_only_role(gcp: FakeCompute, provider: GcpProvider) -> None:
    """Every 403 said "grant roles/compute.instanceAdmin.v1"; a read (`placer refresh`, discovery) needs only
    roles/compute.viewer, and the advice says apply's role beside it (apply reads a group before resizing it)."""
    gcp.fail_next(1, 403)
    with pytest.raises(ProviderError) as err:
        provider.observe(pool_change("t4-pool", 2, ZONAL))
    said = str(err.value)
    assert not err.value.retryable and "grant roles/compute.viewer on the project" in said, said
    assert "`placer apply` needs roles/compute.instanceAdmin.v1" in said, said


# ------------------------------------------------------------------ operations


@pytest.mark.parametrize(("name", "where"), GROUPS)
def test_operation_that_finishes_late_is_waited_through(gcp: FakeCompute, provider: GcpProvider, name: str,
                                                        where: dict[str, str]) -> None:
    gcp.operations_run_for(3)
    provider.apply(pool_change(name, 6, where))
    kind = "zones" if "zone" in where else "regions"
    waits = gcp.requests_to(f"/{kind}/", "POST")
    waits = [r for r in waits if r.path.endswith("/wait")]
    assert len(waits) == 3 and all("/operations/operation-" in r.path for r in waits)
    assert gcp.target_size(PROJECT, name, **where) == 6


@pytest.mark.parametrize(("code", "retryable"), [("QUOTA_EXCEEDED", False), ("RATE_LIMIT_EXCEEDED", True)])
@pytest.mark.parametrize(("name", "where"), GROUPS)
def test_operation_that_fails_reports_its_error(gcp: FakeCompute, provider: GcpProvider, code: str,
                                                retryable: bool, name: str, where: dict[str, str]) -> None:
    gcp.operations_run_for(1)
    message = "Quota 'NVIDIA_T4_GPUS' exceeded. Limit: 4.0 in region us-central1."
    gcp.operations_fail(code, message)
    before = gcp.target_size(PROJECT, name, **where)
    with pytest.raises(ProviderError) as err:
        provider.apply(pool_change(name, 7, where))
    assert err.value.retryable is retryable
    assert f"{code}: {message.rstrip('.')}" in str(err.value) and name in str(err.value)
    if not retryable:  # the plan applied is stale once anything was made: the next step is a new plan
        assert "then run `placer plan` and apply the new plan" in str(err.value), str(err.value)
    assert gcp.target_size(PROJECT, name, **where) == before


STOCKOUT = ("The zone 'projects/demo-ml/zones/us-central1-a' does not have enough resources available to fulfill "
            "the request.  Try a different zone, or try again later.")


@pytest.mark.parametrize("code", ["ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
                                  "UNKNOWN"])
@pytest.mark.parametrize(("name", "where", "elsewhere"), [("t4-pool", ZONAL, "another zone"),
                                                          ("l4-serving", REGIONAL, "another region")])
def test_a_stockout_is_not_retried_and_says_where_and_what_to_do(gcp: FakeCompute, provider: GcpProvider, code: str,
                                                                 name: str, where: dict[str, str],
                                                                 elsewhere: str) -> None:
    """GCP ends a resize it has no machines for with ZONE_RESOURCE_POOL_EXHAUSTED(_WITH_DETAILS) and HTTP
    503 (SERVICE UNAVAILABLE), which read as a brief outage: the apply sent the resize 6 times over 37 s
    and then said to wait until the provider answered again. A stockout lasts minutes to hours: the
    error is not retryable and says the pool, where, the GPU type and what to do."""
    gcp.operations_run_for(1)
    gcp.operations_fail(code, STOCKOUT, http_status=503)
    change = replace(pool_change(name, 7, where), before={"nodes": 1})
    with pytest.raises(ProviderError) as err:
        provider.apply(change)
    said = str(err.value)
    assert not err.value.retryable and err.value.retry_advice == "", said
    assert said.startswith(f"pool/{name}: gcp: resizing managed instance group {name} "), said
    assert f"{code}: {STOCKOUT.rstrip('.')}" in said, said
    place = f"zone {where['zone']}" if "zone" in where else f"region {where['region']}"
    assert (f"GCP has no T4-16GB nodes (2 GPUs each) to give in {place} now (a stockout), so pool {name} cannot "
            "grow; not retried") in said, said
    assert f"lower pool {name}'s nodes.max to the 1 it has, or point its target.gcp at a group in {elsewhere}" in said
    assert "run `placer plan` and apply the new plan" in said and "retry may succeed" not in said, said
    assert len(gcp.requests_to("/resize", "POST")) == 1


def test_a_quota_too_small_is_not_retried_and_says_which_quota_to_raise(gcp: FakeCompute,
                                                                        provider: GcpProvider) -> None:
    gcp.operations_fail("QUOTA_EXCEEDED", "Quota 'NVIDIA_T4_GPUS' exceeded.  Limit: 4.0 in region us-central1.")
    with pytest.raises(ProviderError) as err:
        provider.apply(pool_change("t4-pool", 7, ZONAL))
    said = str(err.value)
    assert not err.value.retryable and "Quota 'NVIDIA_T4_GPUS' exceeded" in said, said
    assert ("Project demo-ml's quota does not allow pool t4-pool that many T4-16GB nodes (2 GPUs each) in "
            "us-central1; not retried. Request more of the quota it names") in said, said
    assert "gcloud compute regions describe us-central1 --project demo-ml" in said, said


def test_request_timeout_is_retryable_and_fast(gcp: FakeCompute) -> None:
    # a client timeout of its own: the fixture's is long, so that a loaded machine's slow answers
    # pass (at 0.5 s, a resize on a machine at load 10 timed out in a test of something else)
    provider = GcpProvider(projects=[PROJECT, OTHER], api_endpoint=gcp.endpoint,
                           request_timeout_s=0.5, operation_timeout_s=2.0, poll_interval_s=0.01)
    gcp.delay_next(1, 4.0, path_contains="/resize")
    start = time.monotonic()
    with pytest.raises(ProviderError) as err:
        provider.apply(pool_change("t4-pool", 2, ZONAL))
    assert time.monotonic() - start < 3.5  # the 0.5 s client timeout, not the server's 4 s (a loaded machine's margin)
    assert err.value.retryable and "no answer in time" in str(err.value) and "t4-pool" in str(err.value)
    host = gcp.url.split("//", 1)[1].rstrip("/")
    assert f"({host}: timed out)" in str(err.value), "the socket's reason, not urllib3's three layers"


def test_an_endpoint_nobody_answers_is_named_with_the_reason() -> None:
    dead = GcpProvider(projects=[PROJECT], api_endpoint="http://127.0.0.1:9", request_timeout_s=0.5)
    with pytest.raises(ProviderError) as err:
        dead.apply(pool_change("t4-pool", 2, ZONAL))
    assert err.value.retryable
    assert str(err.value).endswith("cannot reach the Compute API (127.0.0.1:9: connection refused); check the network, "
                                   "then retry"), str(err.value)
    assert "Max retries" not in str(err.value) and "HTTPConnectionPool" not in str(err.value)


def test_operation_not_done_in_time_is_not_retried(gcp: FakeCompute, gcp_slow: GcpProvider) -> None:
    """The operation's whole timeout was waited, and the error said retryable: the apply engine sent the
    resize again and waited it whole again, 6 times (an hour at the default 600 s), for the same size."""
    gcp.operations_run_for(10_000)
    start = time.monotonic()
    with pytest.raises(ProviderError) as err:
        gcp_slow.apply(pool_change("t4-pool", 2, ZONAL))
    assert time.monotonic() - start < 6.0  # 0.3 s and a margin, not the operation's own time nor retries
    assert not err.value.retryable and "not finished after 0.3s" in str(err.value)
    assert "operation-0001-resize" in str(err.value) and "gcloud compute operations describe" in str(err.value)
    assert "run `placer plan` and apply the new plan" in str(err.value)
    assert len(gcp.requests_to("/resize", "POST")) == 1


@pytest.mark.parametrize(("name", "where"), GROUPS)
def test_a_stop_ends_a_wait_for_a_resize_operation_in_flight(gcp: FakeCompute, name: str,
                                                              where: dict[str, str]) -> None:
    """GCP holds a `wait` on a PENDING operation up to 2 minutes, and the apply's ``stop`` (another change of
    the phase failed, or Ctrl-C) was seen only between two waits: the other change's failure was said a whole
    wait later, or once the operation timed out (600 s). The stop ends the wait in flight at once, with an
    error marked ``stopped`` that says the resize was sent, and where to see what became of it."""
    provider = GcpProvider(projects=[PROJECT], api_endpoint=gcp.endpoint, request_timeout_s=10.0,
                           operation_timeout_s=120.0, poll_interval_s=0.01)
    before = gcp.target_size(PROJECT, name, **where)
    gcp.operations_pending()
    gcp.delay_next(100, 20.0, "/wait")  # each wait held 20 s, answered still PENDING

    def stop_in_the_wait() -> None:
        deadline = time.monotonic() + 10
        while not gcp.requests_to("/wait", "POST") and time.monotonic() < deadline:
            time.sleep(0.01)
        provider.stop.set()

    threading.Thread(target=stop_in_the_wait, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(ProviderError) as err:
        provider.apply(pool_change(name, 6, where))
    elapsed = time.monotonic() - started
    said = str(err.value)
    assert elapsed < 5, f"{elapsed:.1f}s: the wait in flight ran on"
    assert err.value.stopped and not err.value.retryable, said
    kind, scope = ("zone", where["zone"]) if "zone" in where else ("region", where["region"])
    assert said == (
        f"pool/{name}: gcp: resizing managed instance group {name} (project {PROJECT}, {kind} {scope}) to 6 nodes: "
        "the resize was sent, and the apply stopped waiting for its operation operation-0001-resize (still "
        "PENDING): GCP may still carry it out, or fail it; `gcloud compute operations describe "
        f"operation-0001-resize --{kind} {scope} --project {PROJECT}` says whether it is DONE and with what error, "
        f"and `gcloud compute instance-groups managed describe {name} --{kind} {scope} --project {PROJECT}` the "
        "group's targetSize"), said
    assert len(gcp.requests_to("/wait", "POST")) == 1 and gcp.target_size(PROJECT, name, **where) == before
    gcp.finish_operations()  # GCP carries it out after all
    assert gcp.target_size(PROJECT, name, **where) == 6


@pytest.fixture
def gcp_slow(gcp: FakeCompute) -> GcpProvider:
    return GcpProvider(projects=[PROJECT], api_endpoint=gcp.endpoint, request_timeout_s=0.5,
                       operation_timeout_s=0.3, poll_interval_s=0.02)


# ------------------------------------------------------------------ wait_healthy


@pytest.mark.parametrize(("name", "where"), GROUPS)
def test_wait_healthy_waits_until_stable(gcp: FakeCompute, provider: GcpProvider, name: str,
                                         where: dict[str, str]) -> None:
    gcp.settle_after(3)
    provider.apply(pool_change(name, 4, where))
    reads = lambda: [r for r in gcp.requests_to(f"/instanceGroupManagers/{name}", "GET")  # noqa: E731
                     if r.path.endswith(f"/{name}")]
    reads_before = len(reads())
    provider.wait_healthy(pool_change(name, 4, where), timeout_s=5.0)
    assert len(reads()) - reads_before == 4
    # while it was creating instances, what it said of them was read each time: none refused for capacity
    assert len(gcp.requests_to(f"/instanceGroupManagers/{name}/listErrors", "GET")) == 3


def test_wait_healthy_times_out_retryable(gcp: FakeCompute, provider: GcpProvider) -> None:
    gcp.settle_after(10_000)
    provider.apply(pool_change("t4-pool", 3, ZONAL))
    with pytest.raises(ProviderError) as err:
        provider.wait_healthy(pool_change("t4-pool", 3, ZONAL), timeout_s=0.3)
    assert err.value.retryable and "not stable after 0.3s" in str(err.value) and "creating 3" in str(err.value)
    assert "list-errors t4-pool --zone us-central1-a" in str(err.value)


@pytest.mark.parametrize(("code", "words"), [
    ("ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", "GCP has no T4-16GB nodes (2 GPUs each) to give in {where} now "
                                                  "(a stockout), so pool {name} cannot grow; not waited out"),
    ("QUOTA_EXCEEDED", "Project demo-ml's quota does not allow pool {name} that many T4-16GB nodes (2 GPUs each)"),
    ("CONDITION_NOT_MET", None)])
@pytest.mark.parametrize(("name", "where"), GROUPS)
def test_a_group_gcp_cannot_create_instances_for_is_not_waited_out(gcp: FakeCompute, provider: GcpProvider,
                                                                   code: str, words: str | None, name: str,
                                                                   where: dict[str, str]) -> None:
    """GCP often takes a resize (the operation ends well) and then cannot create the instances: the
    group stays unstable, creating them, and says why in its listErrors alone. The wait went on to its
    timeout (600 s) and said "instances may be waiting on quota or GPU capacity". A stockout or quota
    stops it at once; another error is waited past."""
    gcp.instances_fail(code, "The zone does not have enough resources available." if "ZONE" in code
                       else "Quota 'NVIDIA_T4_GPUS' exceeded." if "QUOTA" in code else "Some other failure.")
    change = replace(pool_change(name, 7, where), before={"nodes": 1})
    provider.apply(change)
    assert gcp.target_size(PROJECT, name, **where) == 7
    started = time.monotonic()
    with pytest.raises(ProviderError) as err:
        provider.wait_healthy(change, timeout_s=3.0 if words else 0.3)
    said = str(err.value)
    if words is None:
        assert err.value.retryable and "not stable after 0.3s" in said, said
        return
    assert time.monotonic() - started < 2.5 and not err.value.retryable, said
    place = f"zone {where['zone']}" if "zone" in where else f"region {where['region']}"
    assert said.startswith(f"pool/{name}: gcp: managed instance group {name} (project {PROJECT}, {place}) cannot "
                           f"create the instances of its 7 nodes: {code}: "), said
    assert words.format(name=name, where=place) in said, said
    assert "the group keeps its target size 7 and goes on trying" in said, said
    assert f"lower pool {name}'s nodes.max to the 1 it has" in said, said
    assert f"list-errors {name} --{'zone' if 'zone' in where else 'region'} " in said, said


def test_missing_credentials_say_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/adc.json")  # ADC fails at once, offline
    no_adc = GcpProvider(projects=[PROJECT])
    for call in (lambda: no_adc.observe(pool_change("t4-pool", 1, ZONAL)), no_adc.discover):
        with pytest.raises(ProviderError) as err:
            call()
        assert not err.value.retryable and "gcloud auth application-default login" in str(err.value)


def test_an_answer_that_is_not_the_apis_json_is_a_provider_error() -> None:
    """A body cut short was "internal error (ParseError)", naming no project or request."""
    from google.protobuf import json_format

    from providers.gcp import classify

    err = classify("listing managed instance groups in project acme")(json_format.ParseError("Failed to load JSON"))
    assert err is not None and err.retryable
    assert str(err).startswith("gcp: listing managed instance groups in project acme failed: the Compute API's answer "
                               "is not what it sends (Failed to load JSON)")


def test_an_error_names_the_pool_whose_change_failed(gcp: FakeCompute, provider: GcpProvider) -> None:
    """A pool's group is named by target.gcp, often not as the pool is: the failed apply said
    "gcp: resizing managed instance group placer-a100 ... failed", and not which pool of the fleet to mend,
    where the AWS provider's said "pool/<name>: ..." of each."""
    change = replace(pool_change("t4-pool", 2, {"zone": "us-central1-f"}), address="pool/gpu-serving")
    for call in (lambda: provider.apply(change), lambda: provider.wait_healthy(change, 1.0)):
        with pytest.raises(ProviderError) as err:
            call()
        assert str(err.value).startswith("pool/gpu-serving: gcp: "), str(err.value)
        assert "us-central1-f" in str(err.value) and err.value.address == "pool/gpu-serving"
    gcp.operations_fail("QUOTA_EXCEEDED", "Quota 'NVIDIA_T4_GPUS' exceeded. Limit: 0.0 in region us-central1.")
    with pytest.raises(ProviderError) as err:
        provider.apply(replace(pool_change("t4-pool", 2, ZONAL), address="pool/gpu-serving"))
    assert str(err.value).startswith("pool/gpu-serving: gcp: resizing "), str(err.value)
    assert "QUOTA_EXCEEDED" in str(err.value) and not err.value.retryable
