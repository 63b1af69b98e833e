"""Hand-worked optimizer cases: each constraint and each objective term changes the answer."""

from __future__ import annotations

import pytest

from placer.cost import price
from placer.fleet import Fleet
from placer.optimizer import explain_infeasible, optimize
from placer.placement import check_hard_constraints
from placer.planner import InfeasibleError, make_plan
from placer.render.manifests import deployment_manifest
from placer.state import State
from tests.fleetkit import (
    NOW,
    RULES,
    FleetError,
    doc,
    fleet,
    inference,
    link,
    location,
    policy,
    pool,
    settings,
    training,
)

NO_CHURN = settings(churnUsdPerReplica=0)


def solve(f, current=None):
    result = optimize(f, RULES, current=current)
    assert result.placement is not None, result.status
    cost = price(f, result.placement, RULES, current)
    assert cost.objective == pytest.approx(result.objective, rel=1e-6, abs=1e-6)
    thr = {k: p.throughput for k, p in result.candidates.pairs.items()}
    assert check_hard_constraints(f, result.placement, thr) == []
    assert [v for v in cost.violations if v.enforcement == "required"] == []
    return result.placement, cost


def two_sites(*extra, cheap="a", **kw):
    return fleet(location("a"), location("b"), link("a", "b", 5), *extra, **kw)


def test_capacity_spills_to_the_dearer_pool():
    f = two_sites(pool("cheap", "a", usd=1), pool("dear", "a", usd=3),
                  inference("m", [{"location": "a", "rate": 1200}]), NO_CHURN)
    placement, cost = solve(f)
    assert placement.replicas == {("m", "cheap"): 8, ("m", "dear"): 4}
    assert cost.compute == pytest.approx(8 * 1 + 4 * 3)


def test_stranded_gpus_count_against_capacity():
    f = two_sites(pool("p", "a", per_node=8, count=1),
                  inference("m", [{"location": "a", "rate": 300}], gpus=3), NO_CHURN)
    placement, cost = solve(f)
    assert f.pools["p"].gpus_per_replica(3) == 4
    assert placement.replicas == {("m", "p"): 2}  # 2 replicas x 4 GPUs fill the node
    assert placement.unmet(f) == [("m", "a", pytest.approx(100))]
    assert cost.compute == pytest.approx(8)


def test_elastic_pool_buys_whole_nodes():
    f = two_sites(pool("e", "a", provider="aws", min_nodes=0, max_nodes=4, usd=2),
                  inference("m", [{"location": "a", "rate": 1000}]), NO_CHURN)
    placement, cost = solve(f)
    assert placement.nodes["e"] == 2 and placement.replicas == {("m", "e"): 10}
    assert cost.compute == pytest.approx(2 * 8 * 2)


@pytest.mark.parametrize("field,value,expect", [
    ("memory", 60, "a100"),                      # 60 GiB does not fit L4's 24
    ("gpuTypes", ["A100-80GB"], "a100"),         # allow-list
    ("throughput", {"A100-80GB": 100}, "a100"),  # L4 not listed
])
def test_fit_rules_move_the_model(field, value, expect):
    kw = {"throughput": {"A100-80GB": 100, "L4-24GB": 100}, "mem": 20}
    if field == "memory":
        kw["mem"] = value
    elif field == "gpuTypes":
        kw["gpuTypes"] = value
    else:
        kw["throughput"] = value
    f = two_sites(pool("l4", "a", gpu="L4-24GB", usd=0.5), pool("a100", "a", usd=3),
                  inference("m", [{"location": "a", "rate": 100}], **kw), NO_CHURN)
    placement, _ = solve(f)
    assert set(p for _, p in placement.replicas) == {expect}
    f_free = two_sites(pool("l4", "a", gpu="L4-24GB", usd=0.5), pool("a100", "a", usd=3),
                       inference("m", [{"location": "a", "rate": 100}],
                                 throughput={"A100-80GB": 100, "L4-24GB": 100}), NO_CHURN)
    assert set(p for _, p in solve(f_free)[0].replicas) == {"l4"}


def test_spot_only_for_tolerant_models():
    base = [pool("spot", "a", usd=0.5, spot=True), pool("ondemand", "a", usd=2)]
    f = two_sites(*base, inference("m", [{"location": "a", "rate": 100}]), NO_CHURN)
    assert set(p for _, p in solve(f)[0].replicas) == {"ondemand"}
    f = two_sites(*base, inference("m", [{"location": "a", "rate": 100}], spotTolerant=True), NO_CHURN)
    assert set(p for _, p in solve(f)[0].replicas) == {"spot"}


def test_unreachable_data_rules_a_pool_out():
    f = fleet(location("a"), location("b"), location("island"), link("a", "b", 5),
              pool("pa", "a", usd=5), pool("pb", "b", usd=1),
              inference("m", [{"location": "a", "rate": 100}], data=[{"location": "island", "gbPerHour": 1}]),
              NO_CHURN)
    result = optimize(f, RULES)
    assert result.placement.replicas == {}
    assert result.candidates.excluded[("m", "pb")].reason == "data-unreachable"


def test_latency_slo_limits_routes():
    docs = [pool("far", "b", usd=1), inference("m", [{"location": "a", "rate": 100, "latencySloMs": 3}])]
    f = two_sites(*docs, NO_CHURN)
    placement, cost = solve(f)
    assert placement.replicas == {} and cost.unmet == pytest.approx(100)
    f = two_sites(pool("far", "b", usd=1), inference("m", [{"location": "a", "rate": 100, "latencySloMs": 6}]),
                  NO_CHURN)
    placement, _ = solve(f)
    assert placement.replicas == {("m", "far"): 1}


def test_a_route_as_long_as_its_slo_meets_it():
    """Links of 1.1 and 2.2 ms make a path of 3.3000000000000003 ms: an SLO of 3.3 refused it, and
    the demand went unmet ("3.3 ms > 3.3 ms")."""
    f = fleet(location("a"), location("b"), location("c"), link("a", "b", 1.1), link("b", "c", 2.2),
              pool("p", "c"), inference("m", [{"location": "a", "rate": 50, "latencySloMs": 3.3}]))
    placement, _ = solve(f)
    assert placement.routed("m", "a") == pytest.approx(50) and placement.unmet(f) == []


def test_egress_term_prefers_the_pool_near_the_data():
    f = fleet(location("a"), location("b"), location("c"), link("a", "c", 5, egress=0.0), link("b", "c", 5, egress=0.5),
              pool("pa", "a", usd=1), pool("pb", "b", usd=1),
              inference("m", [{"location": "c", "rate": 100}], data=[{"location": "c", "gbPerHour": 10}]), NO_CHURN)
    placement, cost = solve(f)
    assert set(p for _, p in placement.replicas) == {"pa"}
    assert cost.egress == 0
    # the same fleet with the egress flipped moves the model
    f = fleet(location("a"), location("b"), location("c"), link("a", "c", 5, egress=0.5), link("b", "c", 5, egress=0.0),
              pool("pa", "a", usd=1), pool("pb", "b", usd=1),
              inference("m", [{"location": "c", "rate": 100}], data=[{"location": "c", "gbPerHour": 10}]), NO_CHURN)
    assert set(p for _, p in solve(f)[0].replicas) == {"pb"}


def test_of_two_paths_equally_short_data_moves_over_the_cheaper():
    """SPEC: egress is summed along the latency path; where two paths tie on latency, it was
    whichever networkx found first (2 ms direct at 10 USD/GB over 2 ms through c for nothing)."""
    for links in ([link("a", "b", 2, egress=10), link("a", "c", 1), link("c", "b", 1)],
                  [link("a", "c", 1), link("c", "b", 1), link("a", "b", 2, egress=10)]):
        f = fleet(location("a"), location("b"), location("c"), *links, pool("p", "b"))
        for x, y in (("a", "b"), ("b", "a")):
            assert f.topology.latency_ms(x, y) == 2
            assert f.topology.egress_usd_per_gb(x, y) == 0
        assert f.topology.egress_usd_per_gb("a", "c") == 0 and not f.topology.reachable("a", "nowhere")


def test_latency_term_routes_to_the_closer_pool():
    f = fleet(location("a"), location("b"), location("c"), link("a", "c", 2), link("b", "c", 40),
              pool("pa", "a", usd=1), pool("pb", "b", usd=1),
              inference("m", [{"location": "c", "rate": 1000}], throughput={"A100-80GB": 1000}),
              settings(churnUsdPerReplica=0, latencyUsdPerMsPer1kRate=0.01))
    placement, cost = solve(f)
    assert placement.replicas == {("m", "pa"): 1}
    assert cost.latency == pytest.approx(0.01 * 1 * 2)


def test_unmet_is_cheaper_than_dear_gpus_when_its_price_is_low():
    docs = [pool("dear", "a", usd=50), inference("m", [{"location": "a", "rate": 100}])]
    assert solve(two_sites(*docs, NO_CHURN))[0].replicas == {("m", "dear"): 1}
    placement, cost = solve(two_sites(*docs, settings(churnUsdPerReplica=0, unmetUsdPerRate=0.01)))
    assert placement.replicas == {} and cost.unmet == pytest.approx(1.0)


def test_priority_wins_scarce_capacity():
    f = two_sites(pool("p", "a", count=1, per_node=1),
                  inference("low", [{"location": "a", "rate": 100}]),
                  inference("high", [{"location": "a", "rate": 100}], priority=50), NO_CHURN)
    placement, cost = solve(f)
    assert placement.replicas == {("high", "p"): 1}
    assert cost.unmet == pytest.approx(100)


def test_churn_keeps_what_runs():
    docs = [pool("pa", "a", usd=1.0), pool("pb", "a", usd=1.1), inference("m", [{"location": "a", "rate": 100}])]
    current = {("m", "pb"): 1}
    placement, cost = solve(two_sites(*docs, settings(churnUsdPerReplica=5)), current)
    assert placement.replicas == {("m", "pb"): 1} and cost.churn == 0
    placement, _ = solve(two_sites(*docs, NO_CHURN), current)
    assert placement.replicas == {("m", "pa"): 1}


@pytest.mark.parametrize("route", ["exact", "scalable"])
def test_a_gang_is_placed_whole_on_one_pool_or_not_at_all(route, monkeypatch):
    """Two pools of one 8-GPU node, a training gang of two 8-GPU replicas: one replica was placed
    (1,000 USD/h unmet), its GPUs held for a job whose workers start together or not at all."""
    monkeypatch.setenv("PLACER_OPTIMIZER", route)
    pools = [pool("p1", "a", count=1), pool("p2", "b", count=1)]
    placement, cost = solve(two_sites(*pools, training("t", 2), NO_CHURN))
    assert placement.replicas == {} and cost.unmet == pytest.approx(2000)
    placement, cost = solve(two_sites(*pools, training("t", 2, gang=False), NO_CHURN))
    assert sum(placement.replicas.values()) == 2 and cost.unmet == 0
    placement, cost = solve(two_sites(pool("p1", "a", count=2), pool("p2", "b", count=1), training("t", 2),
                                      NO_CHURN))
    assert placement.replicas == {("t", "p1"): 2} and cost.unmet == 0
    # a gang running in part (placed before this rule) is completed where there is room
    placement, _ = solve(two_sites(pool("p1", "a", count=1), pool("p2", "b", count=2), training("t", 2),
                                   NO_CHURN), current={("t", "p1"): 1})
    assert placement.replicas == {("t", "p2"): 2}


def test_min_and_max_replicas():
    docs = [pool("p", "a", count=2)]
    placement, _ = solve(two_sites(*docs, inference("m", [{"location": "a", "rate": 100}], minReplicas=3), NO_CHURN))
    assert placement.replicas_of("m") == 3
    placement, _ = solve(two_sites(*docs, inference("m", [{"location": "a", "rate": 1000}], maxReplicas=4), NO_CHURN))
    assert placement.replicas_of("m") == 4


# ------------------------------------------------------------------ policies, required and preferred

EU_US = [location("eu", jurisdiction="EU"), location("us", jurisdiction="US"), link("eu", "us", 40),
         pool("eu-pool", "eu", usd=3), pool("us-pool", "us", usd=1)]


def residency(penalty=None):
    return policy("eu-stays", {"allowPools": {}}, models={"labels": {"data": "eu"}}, pools={"jurisdiction": ["EU"]},
                  penalty=penalty)


def eu_model():
    return inference("m", [{"location": "eu", "rate": 100}], labels={"data": "eu"})


def test_allow_pools_required_and_preferred():
    assert set(p for _, p in solve(fleet(*EU_US, eu_model(), NO_CHURN))[0].replicas) == {"us-pool"}
    assert set(p for _, p in solve(fleet(*EU_US, eu_model(), residency(), NO_CHURN))[0].replicas) == {"eu-pool"}
    placement, cost = solve(fleet(*EU_US, eu_model(), residency(penalty=0.5), NO_CHURN))
    assert set(p for _, p in placement.replicas) == {"us-pool"} and cost.penalty == pytest.approx(0.5)
    assert set(p for _, p in solve(fleet(*EU_US, eu_model(), residency(penalty=5), NO_CHURN))[0].replicas) == {"eu-pool"}


def test_deny_and_prefer_pools():
    deny = policy("no-us", {"denyPools": {}}, pools={"jurisdiction": ["US"]})
    assert set(p for _, p in solve(fleet(*EU_US, eu_model(), deny, NO_CHURN))[0].replicas) == {"eu-pool"}
    prefer = policy("prefer-eu", {"preferPools": {}}, pools={"names": ["eu-pool"]}, penalty=3)
    assert set(p for _, p in solve(fleet(*EU_US, eu_model(), prefer, NO_CHURN))[0].replicas) == {"eu-pool"}


def test_separate_workloads():
    docs = [pool("cheap", "a", count=2, usd=1), pool("dear", "a", count=2, usd=2),
            inference("serve", [{"location": "a", "rate": 100}]), training("train", 1)]
    placement, _ = solve(two_sites(*docs, NO_CHURN))
    assert {p for _, p in placement.replicas} == {"cheap"}
    sep = policy("sep", {"separateWorkloads": ["training", "inference"]})
    placement, _ = solve(two_sites(*docs, sep, NO_CHURN))
    assert len({p for _, p in placement.replicas}) == 2


@pytest.mark.parametrize("route", ["exact", "scalable"])
def test_a_pool_mixing_three_workloads_is_one_violation(route, monkeypatch):
    """SPEC's unit for separateWorkloads is the pool: one pool hosting inference, training and batch
    broke the preferred rule once, not twice (it was charged 2 x the penalty)."""
    monkeypatch.setenv("PLACER_OPTIMIZER", route)
    docs = [pool("a", "a", count=2, per_node=4, usd=1), inference("inf", [{"location": "a", "rate": 100}]),
            training("tr", 1, gpus=1), training("bt", 1, gpus=1, workload="batch")]
    sep = policy("sep", {"separateWorkloads": ["training", "inference", "batch"]}, penalty=0.5)
    placement, cost = solve(two_sites(*docs, sep, NO_CHURN))
    assert {p for _, p in placement.replicas} == {"a"}
    assert [(v.policy, v.amount) for v in cost.violations] == [("sep", 1)]
    assert cost.penalty == pytest.approx(0.5)


@pytest.mark.parametrize("listed", [["training", "training"], ["training", "inference", "training"]])
def test_a_workload_listed_twice_is_refused(listed):
    """As required, [training, training] kept training off every pool (2,000 USD/h unmet); as
    preferred it charged a penalty the plan did not show."""
    with pytest.raises(FleetError) as refused:
        two_sites(pool("a", "a"), training("tr", 1, gpus=1), policy("sep", {"separateWorkloads": listed}))
    assert [d.message for d in refused.value.diagnostics] == ["lists training more than once; name each workload once"]


def test_spread_over_failure_domains():
    docs = [pool("p1", "a", usd=1), pool("p2", "a", usd=1, failureDomain="rack-2"), pool("p3", "b", usd=5),
            inference("m", [{"location": "a", "rate": 200}], minReplicas=2)]
    placement, _ = solve(two_sites(*docs[:1], *docs[2:], NO_CHURN))
    assert placement.pools_of("m") == {"p1": 2}
    spread = policy("spread", {"spread": {"minFailureDomains": 2}})
    placement, _ = solve(two_sites(docs[0], docs[2], docs[3], spread, NO_CHURN))
    assert placement.pools_of("m") == {"p1": 1, "p3": 1}
    placement, _ = solve(two_sites(*docs, spread, NO_CHURN))
    assert placement.pools_of("m") == {"p1": 1, "p2": 1}


@pytest.mark.parametrize("penalty", [None, 100])
def test_a_spread_counts_every_pool_whatever_pools_it_names(penalty):
    """spread names no pools (SPEC): a pools selector on it is ignored, with a warning. Its rows
    once counted only the selected pools' domains while its check counted all: required, a plan
    that kept the rule was refused as a conflict; preferred, the solver paid a penalty no priced
    plan showed (objective 1,075.74 against 375.74 on the example fleet)."""
    from placer.fleet import build_fleet
    from placer.spec import load_document
    from placer.spec.source import RawDocument

    spread = policy("spread", {"spread": {"minFailureDomains": 2}}, pools={"names": ["p1"]}, penalty=penalty)
    if penalty:
        spread["spec"]["enforcement"] = "preferred"
    docs = [pool("p1", "a", usd=1), pool("p3", "b", usd=5), inference("m", [{"location": "a", "rate": 200}],
                                                                      minReplicas=2), spread, NO_CHURN]
    placement, cost = solve(two_sites(*docs))  # solve() checks the objective against the priced plan
    assert placement.pools_of("m") == {"p1": 1, "p3": 1} and cost.violations == ()
    loaded = [load_document(RawDocument(path="f.yaml", line=1, data=d))[0]
              for d in (location("a"), location("b"), link("a", "b", 5), *docs)]
    _, diags = build_fleet([d for d in loaded if d is not None])
    assert [(d.field, d.severity) for d in diags] == [("spec.pools", "warning")]
    assert "spread names no pools (it counts the failure domains of every pool a model runs on): this pools " \
        "selector is ignored; remove it" in str(diags[0])


@pytest.mark.parametrize("rate, least, row", [(200, None, "serve-or-spread"), (80, 2, "always"), (80, None, None)])
def test_the_lp_sees_a_spread_the_demand_or_min_replicas_force(rate, least, row):
    """The spread rule's `applies` is a big-M. When the demand needs two replicas (the valid row
    unmet + short * applies >= short), or minReplicas is 2 (applies >= 1), the LP relaxation itself
    puts a whole replica in a second failure domain (without those rows it keeps both in the cheap
    one and pays a sliver elsewhere). Demand one replica serves, without minReplicas, gets neither."""
    import numpy as np

    from placer.optimizer.arrays import build_arrays
    from placer.optimizer.highs import solve as highs_solve
    from placer.optimizer.matrix import build_matrix

    spread = policy("spread", {"spread": {"minFailureDomains": 2}})
    extra = {"minReplicas": least} if least else {}
    f = two_sites(pool("p1", "a", usd=1), pool("p3", "b", usd=5),
                  inference("m", [{"location": "a", "rate": rate}], **extra), spread, NO_CHURN)
    model = build_matrix(build_arrays(f, RULES), RULES, {})
    a = model.arrays
    assert a.pair_thr.max() < 200 <= 2 * a.pair_thr.max() and a.pair_thr.max() >= 80  # two replicas, or one
    names = [n for n in model.row_names.values() if n.endswith((":serve-or-spread", ":always"))]
    assert names == ([f"spread:m:{row}"] if row else [])
    lp = highs_solve(model, np.arange(model.n_cols), integer=False, time_limit=10)
    on_p3 = lp.values[model.block("x")][a.find_pair("m", "p3")]
    if row:
        assert on_p3 >= 1 - 1e-6
        assert solve(f)[0].pools_of("m") == {"p1": 1, "p3": 1}  # and the plan is what it was
    else:
        assert on_p3 <= 1e-6


def test_max_spot_fraction():
    docs = [pool("spot", "a", usd=0.5, spot=True), pool("od", "a", usd=2),
            inference("m", [{"location": "a", "rate": 400}], spotTolerant=True)]
    assert solve(two_sites(*docs, NO_CHURN))[0].pools_of("m") == {"spot": 4}
    cap = policy("half-spot", {"maxSpotFraction": 0.5})
    assert solve(two_sites(*docs, cap, NO_CHURN))[0].pools_of("m") == {"spot": 2, "od": 2}


def test_trim_drops_the_replicas_no_route_or_rule_needs():
    """The scalable route's last step (``large.trim``): a replica no route uses and no rule needs
    goes (the search left some when its time ran out: bench M had replicas serving no demand on
    another continent); one a rule needs stays (n's second replica, for its minReplicas, serves
    nothing either); and the plan left holds every row."""
    import numpy as np

    from placer.optimizer.arrays import build_arrays
    from placer.optimizer.highs import solve as highs_solve
    from placer.optimizer.large import trim
    from placer.optimizer.matrix import build_matrix, rows_broken

    f = two_sites(pool("spot", "a", usd=0.5, spot=True), pool("od", "a", usd=2), pool("far", "b", usd=1),
                  inference("m", [{"location": "a", "rate": 100, "latencySloMs": 50}], spotTolerant=True),
                  inference("n", [{"location": "a", "rate": 100, "latencySloMs": 50}], minReplicas=2),
                  policy("half-spot", {"maxSpotFraction": 0.5}, models={"names": ["m"]}))
    model = build_matrix(build_arrays(f, RULES), RULES, {})
    a, x = model.arrays, model.block("x")
    best = highs_solve(model, np.arange(model.n_cols), integer=True, time_limit=10).values
    assert best is not None and round(sum(best[x][a.find_pair("n", p)] for p in ("od", "far"))) == 2
    padded = best.copy()
    padded[x][a.find_pair("n", "od")] += 1  # idle: nothing routes to it, and n has its two
    padded[x][a.find_pair("m", "far")] += 1  # idle too
    assert model.cost @ padded > model.cost @ best + 1
    trimmed = trim(model, padded)
    assert np.array_equal(np.round(trimmed[x]), np.round(best[x]))
    assert model.cost @ trimmed == pytest.approx(model.cost @ best)
    assert not rows_broken(model.A, trimmed, model.A @ trimmed, model.row_lo, model.row_hi).any()
    assert np.array_equal(trim(model, best), model.rounded(best))  # nothing to drop: unchanged


def test_budget_caps_compute():
    docs = [pool("p", "a", usd=2), inference("m", [{"location": "a", "rate": 400}])]
    assert solve(two_sites(*docs, NO_CHURN))[0].replicas_of("m") == 4
    budget = policy("budget", {"budget": {"maxUsdPerHour": 4}})
    placement, cost = solve(two_sites(*docs, budget, NO_CHURN))
    assert placement.replicas_of("m") == 2 and cost.compute == pytest.approx(4)


def test_headroom_keeps_gpus_free():
    docs = [pool("p", "a", count=1), inference("m", [{"location": "a", "rate": 800}])]
    assert solve(two_sites(*docs, NO_CHURN))[0].replicas_of("m") == 8
    head = policy("head", {"headroom": {"fraction": 0.25}})
    assert solve(two_sites(*docs, head, NO_CHURN))[0].replicas_of("m") == 6


def test_max_models_per_pool():
    docs = [pool("cheap", "a", usd=1), pool("dear", "a", usd=2),
            inference("m1", [{"location": "a", "rate": 100}]), inference("m2", [{"location": "a", "rate": 100}])]
    assert {p for _, p in solve(two_sites(*docs, NO_CHURN))[0].replicas} == {"cheap"}
    one = policy("one", {"maxModelsPerPool": 1})
    assert {p for _, p in solve(two_sites(*docs, one, NO_CHURN))[0].replicas} == {"cheap", "dear"}


def test_retire_by_age_and_versions():
    docs = [pool("p", "a", count=2),
            inference("v1", [{"location": "a", "rate": 100}], labels={"family": "llm"}, version="1.9"),
            inference("v2", [{"location": "a", "rate": 100}], labels={"family": "llm"}, version="1.10"),
            inference("v3", [{"location": "a", "rate": 100}], labels={"family": "llm"}, version="2.0"),
            inference("idle", [{"location": "a", "rate": 100}], lastUsed="2026-09-01")]
    retire = policy("retire", {"retire": {"unusedForDays": 30, "keepVersions": 2}})
    result = optimize(two_sites(*docs, retire, NO_CHURN), RULES)
    assert set(result.candidates.retired) == {"v1", "idle"}
    assert {m for m, _ in result.placement.replicas} == {"v2", "v3"}
    assert result.terms["unmet"] == 0  # retired demand is not counted as unmet


@pytest.mark.parametrize(("versions", "kept"), [
    ({"ga": "2.0.0", "rc": "2.0.0-rc1"}, {"ga"}),  # a pre-release comes before its release
    ({"ga": "2.0.0", "rc": "2.0.0rc1"}, {"ga"}),
    ({"beta": "2.0.0-beta.2", "rc": "2.0.0-rc1"}, {"rc"}),
    ({"base": "1.2.3", "fix": "1.2.3-hotfix1"}, {"fix"}),  # a hotfix comes after
    ({"chat": "2", "q4": "2.0", "old": "1"}, {"chat", "q4"}),  # one version, two models: both newest
])
def test_retire_keeps_the_newest_versions_not_models(versions, kept):
    docs = [pool("p", "a", count=2),
            *(inference(name, [{"location": "a", "rate": 100}], labels={"family": "llm"}, version=v)
              for name, v in versions.items())]
    retire = policy("retire", {"retire": {"keepVersions": 1}})
    result = optimize(two_sites(*docs, retire, NO_CHURN), RULES)
    assert set(result.candidates.retired) == set(versions) - kept


@pytest.mark.parametrize(("canary", "retired"), [("1.0", {"canary"}), ("3.0-rc1", set())])
def test_retire_ranks_versions_over_the_whole_family_not_only_the_models_it_selects(canary, retired):
    """SPEC: a matched model older than the newest K versions of its family is not placed. Ranked
    among the policy's own models (`stage: canary` alone), a canary 1.0 was the newest and kept
    beside the family's 2.0; a canary newer than every other version stays either way, and the
    models the policy does not select are never retired by it."""
    docs = [pool("p", "a", count=2),
            inference("canary", [{"location": "a", "rate": 100}], labels={"family": "llm", "stage": "canary"},
                      version=canary),
            inference("prod", [{"location": "a", "rate": 100}], labels={"family": "llm", "stage": "prod"},
                      version="2.0"),
            inference("prod-old", [{"location": "a", "rate": 100}], labels={"family": "llm", "stage": "prod"},
                      version="0.9")]
    retire = policy("canaries-keep-newest", {"retire": {"keepVersions": 1}}, models={"labels": {"stage": "canary"}})
    result = optimize(two_sites(*docs, retire, NO_CHURN), RULES)
    assert set(result.candidates.retired) == retired
    assert {m for m, _ in result.placement.replicas} == {"canary", "prod", "prod-old"} - retired


def test_infeasible_required_policies_are_named():
    f = two_sites(pool("p", "a", count=1, per_node=2), pool("q", "b", count=1),
                  inference("m", [{"location": "a", "rate": 100}], minReplicas=4, labels={"pin": "yes"}),
                  policy("pin-to-p", {"allowPools": {}}, models={"labels": {"pin": "yes"}}, pools={"names": ["p"]}),
                  policy("unrelated", {"headroom": {"fraction": 0.1}}, pools={"names": ["q"]}), NO_CHURN)
    assert optimize(f, RULES).status == "INFEASIBLE"
    conflict = explain_infeasible(f, RULES)
    assert conflict.policies == ("pin-to-p",) and conflict.models == ("m",)
    assert conflict.capacity == (2, 4) and conflict.checks == 0  # by arithmetic: p holds 2 replicas of m
    with pytest.raises(InfeasibleError, match=r"pin-to-p.*minReplicas of m.*m needs 4 replicas; the pools these "
                                              r"policies leave it hold at most 2"):
        make_plan(f, State(), RULES, NOW)


def pinned_pair() -> Fleet:
    """m1 and m2 each fit p alone (3 of its 4 GPUs), not both, pinned there by pin-to-p; free and
    the headroom on q are unrelated to that conflict."""
    pinned = {"labels": {"pin": "yes"}}
    return two_sites(pool("p", "a", count=1, per_node=4), pool("q", "b", count=1),
                     inference("m1", [{"location": "a", "rate": 100}], minReplicas=3, labels={"pin": "yes"}),
                     inference("m2", [{"location": "a", "rate": 100}], minReplicas=3, labels={"pin": "yes"}),
                     inference("free", [{"location": "b", "rate": 100}], minReplicas=2),
                     policy("pin-to-p", {"allowPools": {}}, models=pinned, pools={"names": ["p"]}),
                     policy("unrelated", {"headroom": {"fraction": 0.1}}, pools={"names": ["q"]}), NO_CHURN)


def test_a_conflict_between_models_is_found_by_the_solver():
    """m1 and m2 each fit p alone (3 of its 4 GPUs), not both: no single model's arithmetic sees
    it, so QuickXplain's feasibility MIPs name the pin and both minimums, and nothing unrelated."""
    f = pinned_pair()
    assert optimize(f, RULES).status == "INFEASIBLE"
    seen: list[str] = []
    conflict = explain_infeasible(f, RULES, progress=seen.append)
    assert conflict.policies == ("pin-to-p",) and conflict.models == ("m1", "m2")
    assert conflict.minimal and conflict.capacity is None
    assert 0 < conflict.checks == len(seen) and seen[0].startswith("conflict check 1: ")
    with pytest.raises(InfeasibleError, match=r"pin-to-p \(test\.yaml:\d+\) and minReplicas of m1 \(test\.yaml:\d+\), m2 "
                       r"\(test\.yaml:\d+\) together"):
        make_plan(f, State(), RULES, NOW)


def test_validate_sees_models_whose_minimums_the_pool_they_share_cannot_hold():
    """m1 and m2 fit p alone, not together: validate passed the fleet, which plan refused after its
    solver's search. The max flow of ``shared`` sees it without one, and names the pin and both
    minimums with the numbers (free and the headroom on q take no part)."""
    from placer.optimizer.shared import shared_conflicts

    (conflict,) = shared_conflicts(pinned_pair(), RULES)
    assert conflict.policies == ("pin-to-p",) and conflict.models == ("m1", "m2")
    assert conflict.shared is not None
    assert conflict.shared.needs == (("m1", 3, 1), ("m2", 3, 1)) and conflict.shared.pools == (("p", 4, 4),)
    assert ("they take at least 6 GPUs (m1 3 x 1 GPU, m2 3 x 1 GPU) and the only pool they may use, p, holds 4; "
            "relax one of them (drop the policy or make it preferred, lower a minReplicas, or add capacity to that "
            "pool)") in conflict.message()


@pytest.mark.parametrize("q_nodes", [1, 2])
def test_validates_flows_agree_whichever_max_flow_solves_them(monkeypatch, q_nodes):
    """A network of more than ``BIG_NETWORK`` arcs is solved by OR-Tools' max flow, a smaller one by
    networkx's: both give the same conflicts, numbers and advice (a minimum cut's sides are the same in
    every maximum flow), on a spread whose models span 10 failure domains, short of room in all but one
    (one node on q) or not (two)."""
    from placer.optimizer import shared

    rs = [f"r{i}" for i in range(8)]
    demand = [{"location": "a", "rate": 100}]
    f = two_sites(pool("p", "a"), pool("q", "b", per_node=1, count=q_nodes),
                  *(pool(r, "b", per_node=1, failureDomain=r) for r in rs),
                  *(inference(m, demand, minReplicas=2) for m in ("m1", "m2")),
                  inference("fill", demand, minReplicas=8, labels={"pin": "r"}),
                  policy("on-r", {"allowPools": {}}, models={"labels": {"pin": "r"}}, pools={"names": rs}),
                  policy("two-domains", {"spread": {"minFailureDomains": 2}}))
    small = shared.shared_conflicts(f, RULES)
    monkeypatch.setattr(shared, "BIG_NETWORK", 0)
    big = shared.shared_conflicts(f, RULES)
    assert [c.message() for c in big] == [c.message() for c in small]
    assert len(small) == (1 if q_nodes == 1 else 0)
    if small:
        assert small[0].shared is not None and small[0].shared.held == 11 and small[0].shared.filled[0] == "q"


def test_validate_names_the_few_models_and_pools_that_cannot_hold_their_minimums():
    """Three models pinned to p and q hold 11 GPUs of minReplicas where the pools keep 10 usable (q's
    headroom keeps 2 of its 8 free); each fits alone, two of them together. The models that may use
    r too, and those the pools hold beside them, are not named; a model already short alone is left
    to capacity_conflicts (``skip``)."""
    from placer.optimizer.shared import shared_conflicts

    pinned = {"labels": {"pin": "yes"}}
    demand = [{"location": "a", "rate": 100}]
    f = two_sites(pool("p", "a", count=1, per_node=4), pool("q", "a", count=1), pool("r", "b", count=1),
                  *(inference(m, demand, minReplicas=n, labels={"pin": "yes"}) for m, n in (("m1", 5), ("m2", 4),
                                                                                          ("m3", 2))),
                  inference("free", demand, minReplicas=6), inference("alone", demand, minReplicas=30),
                  policy("pin", {"allowPools": {}}, models=pinned, pools={"names": ["p", "q"]}),
                  policy("q-room", {"headroom": {"fraction": 0.25}}, pools={"names": ["q"]}), NO_CHURN)
    assert optimize(f, RULES).status == "INFEASIBLE"
    (conflict,) = shared_conflicts(f, RULES, skip={"alone"})
    assert conflict.models == ("m1", "m2", "m3") and conflict.policies == ("pin", "q-room")
    assert conflict.shared is not None and conflict.shared.pools == (("p", 4, 4), ("q", 6, 8))
    assert ("they take at least 11 GPUs (m1 5 x 1 GPU, m2 4 x 1 GPU, m3 2 x 1 GPU) and the only pools they may use "
            "hold 10 (q 6 of 8, p 4; a headroom keeps the rest free)") in conflict.message()


def test_quickxplain_finds_a_minimal_conflict_in_few_checks():
    from placer.optimizer.conflicts import quickxplain

    items = [f"g{i}" for i in range(265)]
    checks = [0]

    def needs(*conflict: str):
        def infeasible(active: set[str]) -> bool:
            checks[0] += 1
            return set(conflict) <= active
        return infeasible

    assert quickxplain(items, needs("g7")) == ["g7"]
    assert checks[0] <= 20  # a deletion filter would check 265 times
    checks[0] = 0
    assert sorted(quickxplain(items, needs("g3", "g150", "g264"))) == ["g150", "g264", "g3"]
    assert checks[0] <= 60
    assert quickxplain([], needs()) == []


def test_a_conflict_found_through_checks_that_ran_out_of_time_is_not_called_minimal(monkeypatch):
    """A check that runs out of time counts as feasible, so QuickXplain keeps groups it may not
    need (here every one, the unrelated headroom and free's minimum too); the last check proves
    the set a conflict, not that relaxing any one member frees it. It said "relax one of them"."""
    import numpy as np

    import placer.optimizer.conflicts as conflicts
    import placer.optimizer.highs as highs

    f = pinned_pair()
    every = set(conflicts.groups(f))
    checked: list[set[str]] = []
    real_touched, real_solve = conflicts.touched, highs.solve_arrays

    def touched(fleet, rules, active):
        checked.append(set(active))
        return real_touched(fleet, rules, active)

    def solve(*args, **kw):  # every check but that of all the groups runs out of time
        if checked[-1] != every:
            return highs.Solution("UNKNOWN", np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), None,
                                  float("nan"), float("nan"))
        return real_solve(*args, **kw)

    monkeypatch.setattr(conflicts, "touched", touched)
    monkeypatch.setattr(highs, "solve_arrays", solve)
    conflict = explain_infeasible(f, RULES)
    assert conflict.policies == ("pin-to-p", "unrelated") and conflict.models == ("m1", "m2", "free")
    assert not conflict.minimal
    message = str(InfeasibleError(conflict))
    assert "not proven minimal" in message and "relax some of them" in message


def test_a_conflict_the_solver_cannot_settle_names_every_group(monkeypatch):
    """When the last check of the set QuickXplain found does not prove it infeasible (a check ran
    out of time), the answer is every group, and says it is not minimal."""
    import placer.optimizer.conflicts as conflicts

    pinned = {"labels": {"pin": "yes"}}
    f = two_sites(pool("p", "a", count=1, per_node=4), pool("q", "b", count=1),
                  inference("m1", [{"location": "a", "rate": 100}], minReplicas=3, labels={"pin": "yes"}),
                  inference("m2", [{"location": "a", "rate": 100}], minReplicas=3, labels={"pin": "yes"}),
                  policy("pin-to-p", {"allowPools": {}}, models=pinned, pools={"names": ["p"]}), NO_CHURN)
    monkeypatch.setattr(conflicts, "quickxplain", lambda items, infeasible: [items[0]])
    conflict = explain_infeasible(f, RULES)
    assert not conflict.minimal and conflict.policies == ("pin-to-p",) and conflict.models == ("m1", "m2")
    assert "not proven minimal" in str(InfeasibleError(conflict))


@pytest.mark.parametrize("route", ["exact", "scalable"])
def test_a_plan_says_why_a_pool_is_no_longer_allowed_on_either_route(route, monkeypatch):
    """A replica on a pool a new required policy forbids is deleted with the policy as its reason;
    the scalable route keeps no reasons in its arrays, so they come from ``Exclusions``."""
    monkeypatch.setenv("PLACER_OPTIMIZER", route)
    f = two_sites(pool("p", "a", count=1), pool("q", "b", count=1),
                  inference("m", [{"location": "a", "rate": 100}]),
                  policy("off-q", {"denyPools": {}}, models={"names": ["m"]}, pools={"names": ["q"]}), NO_CHURN)
    state = State(deployments={"m@q": {"replicas": 1, "target": {}}})
    plan = make_plan(f, state, RULES, NOW).plan
    gone = [c for c in plan.changes if c.address == "deployment/m@q"]
    assert len(gone) == 1 and gone[0].action == "delete"
    assert gone[0].reasons == ("no longer eligible: policy: off-q: q is among the pools this policy names",)


def test_replicas_changing_hands_on_a_full_pool_make_room_first():
    """p has 4 GPUs, all held by a; demand moves a to 2 replicas and b to 2. Made before broken, b's
    replicas (phase 2) needed 6 of p's 4 GPUs, never became healthy, and the apply stopped at
    their health wait for good, before a's scale-down (phase 3). On p the scale-down goes first."""
    f = fleet(location("a"), pool("p", "a", count=1, per_node=4),
              inference("a", [{"location": "a", "rate": 200}]), inference("b", [{"location": "a", "rate": 200}]),
              NO_CHURN)
    running = {"a@p": {"replicas": 4, "target": {"gpus": 1}}}
    plan = make_plan(f, State(deployments=running), RULES, NOW).plan
    order = [(c.address, c.phase, c.action) for c in plan.changes]
    assert order == [("deployment/a@p", 2, "update"), ("deployment/b@p", 2, "create")]
    assert plan.changes[0].reasons[0] == ("scaled down first: p cannot hold the old replicas and the new at once "
                                          "(make before break needs 6 of its 4 GPUs)")
    # only what makes the room goes first: 3 of a's 4 GPUs are enough for c's 3, and b and a's
    # last replica wait their turn
    f = fleet(location("a"), pool("p", "a", count=1, per_node=8),
              inference("a", [{"location": "a", "rate": 200}]), inference("b", [{"location": "a", "rate": 100}]),
              inference("c", [{"location": "a", "rate": 300}]), NO_CHURN)
    running = {"a@p": {"replicas": 6, "target": {"gpus": 1}}, "b@p": {"replicas": 2, "target": {"gpus": 1}}}
    plan = make_plan(f, State(deployments=running), RULES, NOW).plan
    assert [(c.address, c.phase, c.before, c.after) for c in plan.changes] == [
        ("deployment/a@p", 2, {"replicas": 6}, {"replicas": 3}), ("deployment/c@p", 2, None, {"replicas": 3}),
        ("deployment/a@p", 3, {"replicas": 3}, {"replicas": 2}), ("deployment/b@p", 3, {"replicas": 2}, {"replicas": 1})]
    # a deletion too: a, gone from the fleet, keeps 2 of its 4 GPUs until b is healthy
    f = fleet(location("a"), pool("p", "a", count=1, per_node=4),
              inference("b", [{"location": "a", "rate": 200}]), NO_CHURN)
    running = {"a@p": {"replicas": 4, "target": {"gpus": 1}}}
    plan = make_plan(f, State(deployments=running), RULES, NOW).plan
    assert [(c.address, c.phase, c.action, c.before, c.after) for c in plan.changes] == [
        ("deployment/a@p", 2, "update", {"replicas": 4}, {"replicas": 2}),
        ("deployment/b@p", 2, "create", None, {"replicas": 2}),
        ("deployment/a@p", 3, "delete", {"replicas": 2}, None)]
    # with room for both (a second node), make before break as ever
    f = fleet(location("a"), pool("p", "a", count=2, per_node=4),
              inference("a", [{"location": "a", "rate": 200}]), inference("b", [{"location": "a", "rate": 200}]),
              inference("c", [{"location": "a", "rate": 100}]), NO_CHURN)
    running = {"a@p": {"replicas": 4, "target": {"gpus": 1}}, "c@p": {"replicas": 1, "target": {"gpus": 1}}}
    plan = make_plan(f, State(deployments=running), RULES, NOW).plan
    assert [(c.address, c.phase) for c in plan.changes] == [("deployment/b@p", 2), ("deployment/a@p", 3)]


def test_an_elastic_pool_grows_for_make_before_break_and_shrinks_after():
    """An aws pool of 1-GPU nodes (0 to 10), both held by a; demand moves a to 1 and b to 1. a was
    scaled down first (make before break needs 3 of its 2 GPUs) on a pool that could grow: it grows
    to 3 nodes in phase 1, b is made and waited healthy, a scaled down, and the pool back to 2."""
    def elastic(most):
        return fleet(location("a"), pool("p", "a", per_node=1, min_nodes=0, max_nodes=most, provider="aws"),
                     inference("a", [{"location": "a", "rate": 100}]), inference("b", [{"location": "a", "rate": 100}]),
                     NO_CHURN)
    running = {"a@p": {"replicas": 2, "target": {"gpus": 1}}}
    pools = {"p": {"nodes": 2, "target": {"provider": "aws", "aws": {"region": "eu-west-1",
                                                                    "autoScalingGroupName": "p"}}}}
    plan = make_plan(elastic(10), State(deployments=running, pools=pools), RULES, NOW).plan
    assert [(c.address, c.phase, c.action, c.before, c.after) for c in plan.changes] == [
        ("pool/p", 1, "update", {"nodes": 2}, {"nodes": 3}),
        ("deployment/b@p", 2, "create", None, {"replicas": 1}),
        ("deployment/a@p", 3, "update", {"replicas": 2}, {"replicas": 1}),
        ("pool/p", 4, "update", {"nodes": 3}, {"nodes": 2})]
    assert plan.changes[0].reasons[0] == ("room for make before break: the old replicas and the new at once need "
                                          "3 GPUs (3 nodes) until phase 3; back to 2 nodes in phase 4")
    assert plan.changes[-1].reasons[0] == ("back to its planned size: the room make before break needed in phases 2 "
                                           "and 3 is free")
    assert [p["nodes"] for p in plan.body["pools"]] == [2]  # what the pool is sized to at the end
    # where even its most nodes cannot hold both, it grows to them, and the rest makes room first
    plan = make_plan(elastic(2), State(deployments=running, pools=pools), RULES, NOW).plan
    assert [(c.address, c.phase) for c in plan.changes] == [("deployment/a@p", 2), ("deployment/b@p", 2)]
    assert "needs 3 of its 2 GPUs" in plan.changes[0].reasons[0]


def test_a_pool_grown_to_its_most_nodes_scales_down_first_only_what_it_cannot_hold():
    """An aws pool of 1-GPU nodes (at most 4), its 3 held by a; a goes to 1 and b to 2, which need
    5 GPUs at once. The pool grew to 4 and all of a's scale-down ran first anyway: the node it grew
    by held nothing. Now a goes to 2 first, what the 4th node cannot hold, and to 1 once b is
    healthy; where what must go first frees the room on its own, the pool does not grow."""
    def elastic(**ns):
        return fleet(location("a"), pool("p", "a", per_node=1, min_nodes=0, max_nodes=4, provider="aws",
                                          target={"aws": {"region": "eu-west-1", "autoScalingGroupName": "p"},
                                                  "kubernetes": {"namespace": ns.get("a", "default")}}),
                     inference("a", [{"location": "a", "rate": 100}], minReplicas=ns.get("n", 1), maxReplicas=ns.get("n", 1)),
                     *([] if "a" in ns else [inference("b", [{"location": "a", "rate": 100}], minReplicas=2,
                                                       maxReplicas=2)]),
                     NO_CHURN)
    pools = {"p": {"nodes": 3, "target": {"provider": "aws", "aws": {"region": "eu-west-1",
                                                                    "autoScalingGroupName": "p"}}}}
    running = {"a@p": {"replicas": 3, "target": {"gpus": 1, "kubernetes": {"namespace": "default"}}}}
    plan = make_plan(elastic(), State(deployments=running, pools=pools), RULES, NOW).plan
    assert [(c.address, c.phase, c.action, c.before, c.after) for c in plan.changes] == [
        ("pool/p", 1, "update", {"nodes": 3}, {"nodes": 4}),
        ("deployment/a@p", 2, "update", {"replicas": 3}, {"replicas": 2}),
        ("deployment/b@p", 2, "create", None, {"replicas": 2}),
        ("deployment/a@p", 3, "update", {"replicas": 2}, {"replicas": 1}),
        ("pool/p", 4, "update", {"nodes": 4}, {"nodes": 3})]
    assert plan.changes[0].reasons[0] == ("room for make before break: the old replicas and the new at once need "
                                          "5 GPUs, less 1 scaled down first in phase 2: 4 (4 nodes) until phase 3; "
                                          "back to 3 nodes in phase 4")
    assert plan.changes[1].reasons[0] == ("scaled down first: p cannot hold the old replicas and the new at once "
                                          "(make before break needs 5 of its 4 GPUs at nodes.max): to 2 only, and on to 1 in "
                                          "phase 3 once the new replicas are healthy")
    # a moves namespace: its old copy's delete (whole or not at all) frees the room by itself
    plan = make_plan(elastic(a="new", n=3), State(deployments=running, pools=pools), RULES, NOW).plan
    assert [(c.address, c.phase, c.action) for c in plan.changes] == [
        ("deployment/a@p", 2, "delete"), ("deployment/a@p", 2, "create")]


def test_a_new_image_with_fewer_replicas_is_rolled_out_in_phase_2():
    """A spec change with a scale-down went to phase 3, where nothing waits for a rollout: the
    apply said complete while the new pods never became ready."""
    f = fleet(location("a"), pool("p", "a", count=1, per_node=8),
              inference("m", [{"location": "a", "rate": 300}], image="reg/m:2"), NO_CHURN)
    running = {"m@p": {"replicas": 5, "target": {"gpus": 1, "image": "reg/m:1", "kubernetes": {"namespace": "default"}}}}
    plan = make_plan(f, State(deployments=running), RULES, NOW).plan
    assert [(c.address, c.action, c.phase, c.before, c.after) for c in plan.changes] == [
        ("deployment/m@p", "update", 2, {"replicas": 5, "image": "reg/m:1"}, {"replicas": 3, "image": "reg/m:2"})]


def _after_phase_2(plan, running, pool):
    """GPUs (1 a replica) ``pool`` holds between phases 2 and 3, the old replicas and the new at once."""
    held = sum(e["replicas"] for k, e in running.items() if k.endswith(f"@{pool}"))
    for c in plan.changes:
        if c.phase == 2 and c.pool == pool and c.kind == "deployment":
            held += (c.after or {}).get("replicas", 0) - (c.before or {}).get("replicas", 0)
    return held


def test_make_before_break_keeps_a_required_headroom_between_phases_2_and_3():
    """pb keeps 25% of its 8 GPUs free (required); m2 grows 3 -> 5 there and m1 moves a replica to
    pa to make room. The plan's end state holds 6 of 8, but made before broken pb held 7 between
    phases 2 and 3: make before break counted GPUs only. m1's scale-down on pb now goes first, in
    phase 2, and says why, as one that makes room for GPUs does."""
    both = {"A100-80GB": 100, "H100-80GB": 100}
    f = fleet(location("a"), pool("pa", "a", gpu="H100-80GB", usd=2), pool("pb", "a", usd=1),
              inference("m1", [{"location": "a", "rate": 200}], throughput=both),
              inference("m2", [{"location": "a", "rate": 500}], throughput=both),
              policy("keep-free", {"headroom": {"fraction": 0.25}}, pools={"names": ["pb"]}), NO_CHURN)
    running = {"m1@pb": {"replicas": 2, "target": {"gpus": 1}}, "m2@pb": {"replicas": 3, "target": {"gpus": 1}}}
    plan = make_plan(f, State(deployments=running), RULES, NOW).plan
    assert [(c.address, c.phase, c.before, c.after) for c in plan.changes] == [
        ("deployment/m1@pb", 2, {"replicas": 2}, {"replicas": 1}), ("deployment/m1@pa", 2, None, {"replicas": 1}),
        ("deployment/m2@pb", 2, {"replicas": 3}, {"replicas": 5})]
    assert plan.changes[0].reasons[0] == ("scaled down first: pb cannot hold the old replicas and the new at once "
                                          "(make before break needs 7 of its 8 GPUs, of which required policy "
                                          "keep-free keeps 2 free)")
    assert _after_phase_2(plan, running, "pb") == 6
    # a pool that breaks the policy as it runs (m1 on all 8) breaks it no further until phase 3: its
    # scale-down to 2 waits for phase 3 as ever, not 8 -> 6 first
    f = fleet(location("a"), pool("pb", "a"), inference("m1", [{"location": "a", "rate": 200}]),
              policy("keep-free", {"headroom": {"fraction": 0.25}}, pools={"names": ["pb"]}), NO_CHURN)
    running = {"m1@pb": {"replicas": 8, "target": {"gpus": 1}}}
    plan = make_plan(f, State(deployments=running), RULES, NOW).plan
    assert [(c.address, c.phase, c.before, c.after) for c in plan.changes] == [
        ("deployment/m1@pb", 3, {"replicas": 8}, {"replicas": 2})]


def test_an_elastic_pool_grows_for_make_before_break_within_its_required_headroom():
    """An aws pool of 4-GPU nodes that keeps 25% free: a holds its 3 allowed GPUs of one node, and
    goes to 2 as b comes with 1. The old replicas and the new at once fit the node's 4 GPUs, not its
    headroom: the pool grew nothing, and held 4 of 4 until phase 3. It grows to 2 nodes for them
    now; at nodes.max 1, a's scale-down goes first."""
    def elastic(most):
        return fleet(location("a"), pool("p", "a", per_node=4, min_nodes=0, max_nodes=most, provider="aws"),
                     inference("a", [{"location": "a", "rate": 100}], minReplicas=2, maxReplicas=2),
                     inference("b", [{"location": "a", "rate": 100}], minReplicas=1, maxReplicas=1),
                     policy("keep-free", {"headroom": {"fraction": 0.25}}, pools={"names": ["p"]}), NO_CHURN)
    running = {"a@p": {"replicas": 3, "target": {"gpus": 1}}}
    pools = {"p": {"nodes": 1, "target": {"provider": "aws", "aws": {"region": "eu-west-1",
                                                                    "autoScalingGroupName": "p"}}}}
    plan = make_plan(elastic(4), State(deployments=running, pools=pools), RULES, NOW).plan
    assert [(c.address, c.phase, c.before, c.after) for c in plan.changes] == [
        ("pool/p", 1, {"nodes": 1}, {"nodes": 2}), ("deployment/b@p", 2, None, {"replicas": 1}),
        ("deployment/a@p", 3, {"replicas": 3}, {"replicas": 2}), ("pool/p", 4, {"nodes": 2}, {"nodes": 1})]
    assert plan.changes[0].reasons[0] == ("room for make before break: the old replicas and the new at once need "
                                          "4 GPUs (2 nodes: 8 GPUs, of which required policy keep-free keeps 2 "
                                          "free) until phase 3; back to 1 node in phase 4")
    plan = make_plan(elastic(1), State(deployments=running, pools=pools), RULES, NOW).plan
    assert [(c.address, c.phase, c.before, c.after) for c in plan.changes] == [
        ("deployment/a@p", 2, {"replicas": 3}, {"replicas": 2}), ("deployment/b@p", 2, None, {"replicas": 1})]
    assert plan.changes[0].reasons[0] == ("scaled down first: p cannot hold the old replicas and the new at once "
                                          "(make before break needs 4 of its 4 GPUs at nodes.max, of which required "
                                          "policy keep-free keeps 1 free)")


def test_a_required_headroom_no_scale_down_can_keep_during_the_apply_is_said():
    """m's new image rolls out with one replica fewer (6 -> 5) as n comes with 1, on a pool that
    keeps 2 of its 8 GPUs free: m's old replicas stay until its new ones are healthy, and no
    scale-down on p can make the room first. The plan broke the policy until phase 3 and said
    nothing; now its phase-2 changes there say so."""
    f = fleet(location("a"), pool("p", "a", count=1, per_node=8),
              inference("m", [{"location": "a", "rate": 500}], image="reg/m:2", minReplicas=5, maxReplicas=5),
              inference("n", [{"location": "a", "rate": 100}], minReplicas=1, maxReplicas=1),
              policy("keep-free", {"headroom": {"fraction": 0.25}}, pools={"names": ["p"]}), NO_CHURN)
    running = {"m@p": {"replicas": 6, "target": {"gpus": 1, "image": "reg/m:1", "kubernetes": {"namespace": "default"}}}}
    plan = make_plan(f, State(deployments=running), RULES, NOW).plan
    said = ("breaks required policy keep-free on p until phase 3: p cannot hold the old replicas and the new at "
            "once (make before break needs 7 of its 8 GPUs, of which required policy keep-free keeps 2 free) even "
            "with its scale-downs first")
    # m's rollout starts no surge pod either (Kubernetes' default would start one, on p's 8th GPU)
    assert [(c.address, c.phase, c.reasons[1 if c.model == "m" else 0]) for c in plan.changes] == [
        ("deployment/m@p", 2, said), ("deployment/n@p", 2, said)]
    assert plan.changes[0].target["strategy"] == {"maxSurge": 0, "maxUnavailable": 1}
    # without the policy, on 6 GPUs: the same, for the GPUs themselves
    f = fleet(location("a"), pool("p", "a", count=1, per_node=6),
              inference("m", [{"location": "a", "rate": 500}], image="reg/m:2", minReplicas=5, maxReplicas=5),
              inference("n", [{"location": "a", "rate": 100}], minReplicas=1, maxReplicas=1), NO_CHURN)
    plan = make_plan(f, State(deployments=running), RULES, NOW).plan
    said = ("p cannot hold the old replicas and the new at once (make before break needs 7 of its 6 GPUs) even "
            "with its scale-downs first: the new replicas may wait for room")
    assert [(c.address, c.phase, c.reasons[0]) for c in plan.changes] == [
        ("deployment/m@p", 2, said), ("deployment/n@p", 2, said)]


def test_a_rollout_its_pool_has_no_room_to_surge_for_goes_without_a_surge_pod():
    """m and n, 2 replicas each, fill p's 4 GPUs, and m's image changes. Kubernetes' default
    rollout (maxSurge 25% rounded up: 1 pod; maxUnavailable 25% rounded down: 0) starts a pod before
    an old one goes, no GPU was free for it, and the rollout (the apply's health wait) hung until its
    timeout. m is rolled out with maxSurge 0, maxUnavailable 1 now (its target's strategy, which its
    manifest renders), and says so. 4 replicas may take one down first: they keep the default, as
    does a rollout whose surge pod the GPUs a headroom keeps free can hold. Churn is free here
    (NO_CHURN), and the rollout's reason says nothing of it (it said '(0.00 USD of churn)')."""
    def full(replicas):
        return fleet(location("a"), pool("p", "a", count=1, per_node=2 * replicas),
                     inference("m", [{"location": "a", "rate": 100}], image="reg/m:2", minReplicas=replicas,
                               maxReplicas=replicas),
                     inference("n", [{"location": "a", "rate": 100}], minReplicas=replicas, maxReplicas=replicas),
                     NO_CHURN)

    def running(replicas):
        return {"m@p": {"replicas": replicas, "target": {"gpus": 1, "image": "reg/m:1",
                                                        "kubernetes": {"namespace": "default"}}},
                "n@p": {"replicas": replicas, "target": {"gpus": 1, "kubernetes": {"namespace": "default"}}}}
    plan = make_plan(full(2), State(deployments=running(2)), RULES, NOW).plan
    assert [(c.address, c.phase, c.before, c.after) for c in plan.changes] == [
        ("deployment/m@p", 2, {"replicas": 2, "image": "reg/m:1"}, {"replicas": 2, "image": "reg/m:2"})]
    assert plan.changes[0].reasons == (
        "rolled out with maxSurge 0, maxUnavailable 1: p has no room for the surge pod Kubernetes' default rollout "
        "starts first (the old replicas, the new and it need 5 of its 4 GPUs), so one of its 2 replicas at a time "
        "is down while it rolls out",
        "image changed in the fleet: the rollout starts all 2 of its replicas anew")
    assert plan.changes[0].target["strategy"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert deployment_manifest(plan.changes[0].target, 2)["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    # the tree render writes from the plan's placements has it too
    placed = {(p["model"], p["pool"]): p["target"] for p in plan.body["placements"]}
    assert placed[("m", "p")]["strategy"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert "strategy" not in placed[("n", "p")]
    plan = make_plan(full(4), State(deployments=running(4)), RULES, NOW).plan
    assert [(c.address, c.reasons, "strategy" in c.target) for c in plan.changes] == [
        ("deployment/m@p", ("image changed in the fleet: the rollout starts all 4 of its replicas anew",), False)]
    # GPUs a required headroom keeps free may hold the surge pod while it rolls out (they are free)
    kept = fleet(location("a"), pool("p", "a", count=1, per_node=8),
                 inference("m", [{"location": "a", "rate": 100}], image="reg/m:2", minReplicas=2, maxReplicas=2),
                 inference("n", [{"location": "a", "rate": 100}], minReplicas=4, maxReplicas=4),
                 policy("keep-free", {"headroom": {"fraction": 0.25}}, pools={"names": ["p"]}), NO_CHURN)
    plan = make_plan(kept, State(deployments={**running(2), "n@p": {"replicas": 4, "target": {"gpus": 1}}}),
                     RULES, NOW).plan
    assert [(c.address, c.reasons, "strategy" in c.target) for c in plan.changes] == [
        ("deployment/m@p", ("image changed in the fleet: the rollout starts all 2 of its replicas anew",), False)]


def test_an_elastic_pool_grows_for_a_rollouts_surge_pod():
    """m's 2 replicas fill an aws pool of 1-GPU nodes, and its image changes: the pool grows a node
    for the surge pod in phase 1 (it grew nothing, and the rollout hung), and back in phase 4. At its
    nodes.max it cannot: m goes without a surge pod, one replica at a time down."""
    def elastic(most):
        return fleet(location("a"), pool("p", "a", per_node=1, min_nodes=0, max_nodes=most, provider="aws"),
                     inference("m", [{"location": "a", "rate": 100}], image="reg/m:2", minReplicas=2, maxReplicas=2),
                     NO_CHURN)
    running = {"m@p": {"replicas": 2, "target": {"gpus": 1, "image": "reg/m:1", "kubernetes": {"namespace": "default"}}}}
    pools = {"p": {"nodes": 2, "target": {"provider": "aws", "aws": {"region": "eu-west-1",
                                                                    "autoScalingGroupName": "p"}}}}
    plan = make_plan(elastic(4), State(deployments=running, pools=pools), RULES, NOW).plan
    assert [(c.address, c.phase, c.before, c.after, "strategy" in c.target) for c in plan.changes] == [
        ("pool/p", 1, {"nodes": 2}, {"nodes": 3}, False),
        ("deployment/m@p", 2, {"replicas": 2, "image": "reg/m:1"}, {"replicas": 2, "image": "reg/m:2"}, False),
        ("pool/p", 4, {"nodes": 3}, {"nodes": 2}, False)]
    assert plan.changes[0].reasons[0] == ("room for make before break: the old replicas and the new at once need "
                                          "2 GPUs, and 1 more for the surge pods of rollouts in phase 2: 3 (3 nodes) "
                                          "until phase 3; back to 2 nodes in phase 4")
    plan = make_plan(elastic(2), State(deployments=running, pools=pools), RULES, NOW).plan
    assert [(c.address, c.target.get("strategy")) for c in plan.changes] == [
        ("deployment/m@p", {"maxSurge": 0, "maxUnavailable": 1})]
    assert "need 3 of its 2 GPUs at nodes.max), so one of its 2 replicas" in plan.changes[0].reasons[0]


def test_a_rollout_of_4_or_more_keeps_its_surge_pods_off_the_gpus_a_required_headroom_keeps_free():
    """Kubernetes' default rollout of N replicas starts ceil(N/4) surge pods at once (maxSurge 25%
    rounded up) as floor(N/4) old ones go: with 4 and more it never hangs, and the plan counted no
    surge for it, but on a pool with GPUs free those pods start there, GPUs a required headroom
    keeps free: m's 4 replicas beside n's 2 held 7 of p's 8 GPUs, kept to 6. It is rolled out with
    the surge the room within the policy holds (maxSurge 0 here, 1 of 2 for 8 replicas on 16 GPUs),
    the default's maxUnavailable kept, and says so; no elastic pool grows for it."""
    def kept(replicas, per_node, others, **nodes):
        return fleet(location("a"), pool("p", "a", per_node=per_node, **nodes),
                     inference("m", [{"location": "a", "rate": 100}], image="reg/m:2", minReplicas=replicas,
                               maxReplicas=replicas),
                     inference("n", [{"location": "a", "rate": 100}], minReplicas=others, maxReplicas=others),
                     policy("keep-free", {"headroom": {"fraction": 0.25}}, pools={"names": ["p"]}), NO_CHURN)

    def running(replicas, others):
        return {"m@p": {"replicas": replicas, "target": {"gpus": 1, "image": "reg/m:1",
                                                        "kubernetes": {"namespace": "default"}}},
                "n@p": {"replicas": others, "target": {"gpus": 1, "kubernetes": {"namespace": "default"}}}}
    plan = make_plan(kept(4, 8, 2), State(deployments=running(4, 2)), RULES, NOW).plan
    assert [(c.address, c.phase, c.target.get("strategy")) for c in plan.changes] == [
        ("deployment/m@p", 2, {"maxSurge": 0, "maxUnavailable": 1})]
    assert plan.changes[0].reasons[0] == (
        "rolled out with maxSurge 0, maxUnavailable 1: Kubernetes' default rollout starts 1 surge pod first, and p "
        "holds none beside the old replicas and the new (with it they would hold 7 of its 8 GPUs, of which required "
        "policy keep-free keeps 2 free); at most 1 of its 4 replicas at a time is down, as with the default, and the "
        "rollout goes slower")
    assert deployment_manifest(plan.changes[0].target, 4)["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    plan = make_plan(kept(8, 16, 3), State(deployments=running(8, 3)), RULES, NOW).plan
    assert [(c.address, c.target.get("strategy")) for c in plan.changes] == [
        ("deployment/m@p", {"maxSurge": 1, "maxUnavailable": 2})]
    assert plan.changes[0].reasons[0].startswith(
        "rolled out with maxSurge 1, maxUnavailable 2: Kubernetes' default rollout starts 2 surge pods first, and p "
        "holds only 1 beside the old replicas and the new (with them they would hold 13 of its 16 GPUs, of which "
        "required policy keep-free keeps 4 free)")
    placed = {(p["model"], p["pool"]): p["target"] for p in plan.body["placements"]}
    assert placed[("m", "p")]["strategy"] == {"maxSurge": 1, "maxUnavailable": 2}
    # room for both surge pods within the policy: Kubernetes' default, as before
    plan = make_plan(kept(8, 16, 2), State(deployments=running(8, 2)), RULES, NOW).plan
    assert [(c.address, c.reasons[0].split(":")[0], "strategy" in c.target) for c in plan.changes] == [
        ("deployment/m@p", "image changed in the fleet", False)]
    # an elastic pool does not grow for it: a smaller surge costs the rollout speed only
    pools = {"p": {"nodes": 1, "target": {"provider": "aws", "aws": {"region": "eu-west-1",
                                                                    "autoScalingGroupName": "p"}}}}
    plan = make_plan(kept(4, 8, 2, count=None, min_nodes=0, max_nodes=3, provider="aws"),
                     State(deployments=running(4, 2), pools=pools), RULES, NOW).plan
    assert [(c.address, c.target.get("strategy")) for c in plan.changes] == [
        ("deployment/m@p", {"maxSurge": 0, "maxUnavailable": 1})]


def test_a_conflict_check_over_the_models_with_a_minimum_answers_as_the_whole_fleet():
    """``conflicts.touched``: the fleet cut to the models whose minimum the check holds (and that
    it does not retire), with only the required policies it holds, is feasible exactly when the
    whole fleet with those groups is (every model, the preferred policy too): on the exact route,
    for any set of groups. (tests/test_property.py checks the same on random fleets.)"""
    import random

    import placer.optimizer.conflicts as conflicts
    from tests.fleetkit import with_groups

    pinned = {"labels": {"pin": "yes"}}
    f = two_sites(pool("p", "a", count=1, per_node=4), pool("q", "b", count=1),
                  inference("m1", [{"location": "a", "rate": 100}], minReplicas=3, labels={"pin": "yes"}),
                  inference("m2", [{"location": "a", "rate": 100}], minReplicas=3, labels={"pin": "yes"}),
                  inference("free", [{"location": "b", "rate": 100}], minReplicas=2),
                  inference("chat-old", [{"location": "b", "rate": 100}], minReplicas=7, version="1.0",
                            labels={"family": "chat"}),
                  inference("chat-new", [{"location": "b", "rate": 100}], minReplicas=1, version="2.0",
                            labels={"family": "chat"}),
                  inference("pinned-no-minimum", [{"location": "a", "rate": 900}], labels={"pin": "yes"}),
                  training("t", 1, gpus=8),
                  policy("pin-to-p", {"allowPools": {}}, models=pinned, pools={"names": ["p"]}),
                  policy("q-headroom", {"headroom": {"fraction": 0.25}}, pools={"names": ["q"]}),
                  policy("latest-chat", {"retire": {"keepVersions": 1}}, models={"labels": {"family": "chat"}}),
                  policy("spread", {"spread": {"minFailureDomains": 2}}, penalty=5),
                  NO_CHURN)
    every = conflicts.groups(f)
    assert conflicts.touched(f, RULES, {"policy:pin-to-p"}).models == {}  # no minimum: every model may go unplaced
    cut = conflicts.touched(f, RULES, {"policy:pin-to-p", "model:m1:minReplicas"})
    assert list(cut.models) == ["m1"] and [p.name for p in cut.policies] == ["pin-to-p"]
    assert "chat-old" not in conflicts.touched(f, RULES, set(every)).models  # retired by latest-chat
    rng = random.Random(0)
    subsets = [set(every), *({g for g in every if rng.random() < 0.5} for _ in range(14))]
    checks = [conflicts.feasible(f, RULES, s) for s in subsets]
    whole = [optimize(with_groups(f, s), RULES).status != "INFEASIBLE" for s in subsets]
    assert checks == whole and False in whole and True in whole


def test_a_fleet_with_no_demand_to_serve_plans_nothing():
    """No model with demand, and no capacity (found by hypothesis: the exact MIP stops without an
    answer, and the scalable route read its cover cuts' levels from an empty list): no cut, an
    empty plan, by either route."""
    from placer.optimizer.large import optimize_large

    f = two_sites(pool("p0", "a", per_node=1, count=0, usd=0.0, spot=True),
                  pool("p1", "a", per_node=1, count=0, usd=0.0, spot=True),
                  inference("m0", [], mem=10.0, spotTolerant=False), policy("spot", {"maxSpotFraction": 0.5}),
                  policy("room", {"headroom": {"fraction": 0.2}}))
    placement, cost = solve(f)
    assert not placement.replicas and cost.objective == pytest.approx(0.0, abs=1e-6)
    large = optimize_large(f, RULES, time_limit=5.0)
    assert large.placement is not None and not large.placement.replicas


@pytest.mark.parametrize("route", ["exact", "scalable"])
def test_a_minimum_no_pool_can_host_is_infeasible_even_when_nothing_else_is_placeable(route, monkeypatch):
    """m needs a replica and no pool fits it (its only throughput is for H100s; the pool has
    A100s). With another model placeable both routes said INFEASIBLE; with nothing placeable the
    solver was handed no column and answered "optimal" over nothing, m's minimum ignored (a
    property test's counterexample). Both routes now say INFEASIBLE, and the conflict names m."""
    monkeypatch.setenv("PLACER_OPTIMIZER", route)
    f = fleet(location("a"), pool("p", "a"),
              inference("m", [], throughput={"H100-80GB": 10.0}, minReplicas=1))
    result = optimize(f, RULES)
    assert result.status == "INFEASIBLE" and result.placement is None
    conflict = explain_infeasible(f, RULES)
    assert conflict.models == ("m",) and "(m needs 1 replica; the pools it fits hold at most 0)" in conflict.message()


@pytest.mark.parametrize("route", ["exact", "scalable"])
def test_demand_beyond_reach_is_priced_but_left_out_of_the_solvers_objective(route, monkeypatch):
    """m's demand at a (1e9 of rate) is far beyond the one pool in its SLO (8 GPUs, 800 of rate);
    n's at b beyond its maxReplicas of 2 (200). What no plan can serve is a constant: the model
    leaves it out, and the plan's objective and bound get it back, so that the plan is the cost
    function's, fills what it can, and its gap is measured on what the plan decides."""
    monkeypatch.setenv("PLACER_OPTIMIZER", route)
    f = two_sites(pool("p", "a", usd=1), pool("q", "b", usd=2),
                  inference("m", [{"location": "a", "rate": 1e9, "latencySloMs": 1}]),
                  inference("n", [{"location": "b", "rate": 1e6, "latencySloMs": 1}], maxReplicas=2), NO_CHURN)
    result = optimize(f, RULES)
    placement, cost = solve(f)
    assert placement.replicas == {("m", "p"): 8, ("n", "q"): 2}
    assert cost.unmet == pytest.approx(1e9 - 800 + 1e6 - 200)
    assert result.objective == pytest.approx(cost.objective, rel=1e-9)
    assert result.bound <= result.objective + 1e-6
    assert result.objective - result.bound <= 1e-3 * (8 + 4)  # within the gap of what is decided


def generated_at_gap(gap: float) -> Fleet:
    """A generated fleet of 12 models x 8 pools (seed 5) whose exact MIP, stopped within a relative
    gap of 5%, holds a plan 3% above its optimum."""
    from bench.generate import generate, to_fleet

    docs = generate(12, 8, seed=5)
    next(d for d in docs if d["kind"] == "Settings")["spec"]["solver"] = {"relativeGap": gap, "timeLimitSeconds": 20}
    return to_fleet(docs)


def test_the_exact_routes_bound_stopped_within_the_gap_is_no_higher_than_the_optimum(monkeypatch):
    """HiGHS stops within solver.relativeGap of its bound, and OR-Tools reports that plan's objective
    as the best bound: the exact route took it for its bound, above the optimum, and a gap of 0 (a
    generated 20 x 10 fleet: bound 430.89 USD/h at the default gap, the optimum 430.55). Here the
    gap is 5%, on a fleet whose MIP stops 3% above its optimum."""
    monkeypatch.setenv("PLACER_OPTIMIZER", "exact")
    stopped, optimum = optimize(generated_at_gap(0.05), RULES), optimize(generated_at_gap(0.0), RULES)
    assert stopped.status == optimum.status == "OPTIMAL"
    assert stopped.objective > optimum.objective + 1.0  # the stop left a dearer plan
    assert stopped.bound <= optimum.objective + 1e-6
    assert 0 < stopped.gap <= 0.05 + 1e-6

@pytest.mark.parametrize("route", ["exact", "scalable"])
def test_a_plan_that_costs_nothing_has_a_bound_of_0_not_below(route, monkeypatch):
    """Every term of the objective is >= 0: a plan of 0 USD/h (a free pool, no latency or churn price)
    was reported with HiGHS' absolute gap under it, boundUsdPerHour -1e-06 and "bound -0.00"."""
    monkeypatch.setenv("PLACER_OPTIMIZER", route)
    free = settings(latencyUsdPerMsPer1kRate=0, churnUsdPerReplica=0)
    result = optimize(fleet(location("a"), pool("p", "a", usd=0), inference("m", [{"location": "a", "rate": 100}]),
                            free), RULES)
    assert result.objective == 0.0
    assert result.bound == 0.0 and result.gap == 0.0


def test_an_exact_replan_stopped_within_the_gap_keeps_what_runs_unless_moving_pays(monkeypatch):
    """Re-planned from its optimum, the fleet's MIP stopped within 5% at a plan that moved 2 replicas
    and cost 710.14 USD/h, churn priced, against 708.69 for keeping what runs: the exact route
    took it. It now keeps what runs where the plan it stopped at costs no less."""
    monkeypatch.setenv("PLACER_OPTIMIZER", "exact")
    optimum = optimize(generated_at_gap(0.0), RULES)
    current = dict(optimum.placement.replicas)
    f = generated_at_gap(0.05)
    again = optimize(f, RULES, current=current)
    assert again.placement.replicas == current
    assert again.objective == pytest.approx(price(f, optimum.placement, RULES, current).objective, rel=1e-6)
    assert again.objective == pytest.approx(price(f, again.placement, RULES, current).objective, rel=1e-6)
    assert again.bound <= again.objective


def test_servable_caps_each_entry_at_its_routes_and_maxreplicas():
    import numpy as np

    from placer.optimizer.arrays import servable

    # entry 0: two routes, 3 replicas of 10 and 1 of 50; entry 1: the same, at most 1 replica
    # (the fastest); entry 2: no route at all
    served, beyond = servable(np.array([1000.0, 1000.0, 7.0]), np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]),
                              np.array([10.0, 50.0]), np.array([3, 1]), np.array([0, 1, 0]))
    assert served.tolist() == [80.0, 50.0, 0.0] and beyond.tolist() == [920.0, 950.0, 7.0]
    served, beyond = servable(np.array([60.0]), np.array([0]), np.array([0]), np.array([10.0]), np.array([9]),
                              np.array([0]))
    assert served.tolist() == [60.0] and beyond.tolist() == [0.0]


def both_routes(f, monkeypatch, current=None):
    """The plans of both routes (the scalable route forced, as on a fleet past 800 pairs or an exact
    MIP out of time), each checked by solve() against the cost function and the rules."""
    out = {}
    for route in ("exact", "scalable"):
        monkeypatch.setenv("PLACER_OPTIMIZER", route)
        out[route] = solve(f, current)
    return out


def test_the_scalable_route_plans_fleets_the_exact_route_does(monkeypatch):
    """Found by planning 1,000 random small fleets both ways (the exact route was right on all):
    the scalable route priced a batch model no pool can take at 0 (its replicas unplaced, 3,000 due),
    crashed on a fleet with no demand routes, and on one whose last row (a headroom on a pool of
    no nodes) is empty."""
    no_pool = fleet(location("a"), pool("p", "a", gpu="L4-24GB"), training("t", replicas=3, gpus=2, mem=54),
                    NO_CHURN)
    got = both_routes(no_pool, monkeypatch)
    assert got["exact"][1].objective == got["scalable"][1].objective == pytest.approx(3000)
    only_training = fleet(location("a"), pool("p", "a", count=2), training("t", replicas=1, gpus=2, mem=20))
    got = both_routes(only_training, monkeypatch)
    assert got["scalable"][0].replicas == got["exact"][0].replicas == {("t", "p"): 1}
    empty_last_row = fleet(location("a"), pool("p", "a", per_node=1, count=3, usd=0.0),
                           pool("q", "a", gpu="T4-16GB", per_node=1, count=0),
                           inference("m", [{"location": "a", "rate": 280}]), policy("h", {"headroom": {"fraction": 0.0}}))
    got = both_routes(empty_last_row, monkeypatch)
    assert got["scalable"][0].replicas == got["exact"][0].replicas == {("m", "p"): 3}


@pytest.mark.parametrize("rule", ["spread", "maxModelsPerPool"])
def test_a_scalable_replan_of_an_unchanged_fleet_keeps_a_plan_that_pays_a_preferred_penalty(rule, monkeypatch):
    """The plan pays a preferred rule's penalty (one failure domain of two; two models on a pool
    meant for one). Re-planned from itself on the scalable route, the penalty's column was left out
    of the search, the rule found "broken", and a replica dropped: 157 USD/h against 73 kept."""
    if rule == "spread":
        f = fleet(location("a"), location("b"), link("a", "b", 25.0), pool("p", "b", gpu="T4-16GB", usd=3.0),
                  inference("m", [{"location": "a", "rate": 243}], gpus=3, mem=13, throughput={"T4-16GB": 98.0}),
                  policy("soft", {"spread": {"minFailureDomains": 2}}, penalty=2.0))
    else:
        f = fleet(location("a"), pool("p", "a", usd=1.0), pool("dear", "a", usd=9.0),
                  inference("m", [{"location": "a", "rate": 300}]), inference("n", [{"location": "a", "rate": 300}]),
                  policy("soft", {"maxModelsPerPool": 1}, penalty=0.5))
    first, _ = both_routes(f, monkeypatch)["exact"]
    current = dict(first.replicas)
    for route, (again, cost) in both_routes(f, monkeypatch, current).items():
        assert again.replicas == current, route
        assert cost.objective == pytest.approx(price(f, first, RULES, current).objective), route


def test_a_scalable_replan_around_a_model_no_pool_can_run(monkeypatch):
    """The search's "unmet" neighbourhood took the models leaving most unserved: a batch model no
    pool can run had no pools, and gathering their neighbours failed ("need at least one array to
    concatenate"); and there is nothing the search can do for it."""
    f = fleet(location("a"), pool("p", "a", min_nodes=0, max_nodes=2, count=None, provider="aws"),
              inference("m", [{"location": "a", "rate": 700}]),
              training("t", replicas=1, gpus=4, mem=20, gpuTypes=["H100-80GB"]))
    first, _ = both_routes(f, monkeypatch)["exact"]
    current = dict(first.replicas)
    for route, (again, cost) in both_routes(f, monkeypatch, current).items():
        assert again.replicas == current and cost.unmet == pytest.approx(1000), route


def test_a_plan_that_breaks_a_hard_rule_is_never_written(monkeypatch):
    """Whatever the search returns, `plan` checks it against the SPEC's hard constraints and the
    required policies before it can be applied (the scalable route once returned a minReplicas
    left short as OPTIMAL)."""
    import placer.planner as planner
    from placer.optimizer import SolveResult
    from placer.placement import Placement

    f = fleet(location("a"), pool("p", "a"), inference("m", [{"location": "a", "rate": 100}], minReplicas=3))
    real = planner.optimize

    def short(*args, **kwargs):
        result = real(*args, **kwargs)
        return SolveResult(result.status, Placement({("m", "p"): 2}, result.placement.nodes, result.placement.routes),
                           result.objective, result.bound, result.wall_seconds, candidates=result.candidates)

    monkeypatch.setattr(planner, "optimize", short)
    with pytest.raises(planner.SolveError, match=r"breaks 1 hard rule\(s\), first m: 2 replicas < minReplicas 3; "
                                                 "nothing was written: this is a bug in placer"):
        make_plan(f, State(), RULES, NOW)


def test_the_scalable_routes_rounding_keeps_a_minimum_of_replicas(monkeypatch):
    """A random fleet, minimized: m7 must run 3 replicas (no demand of its own); the LP's rounding
    left it 2, and the scalable route completed that plan around them, calling it OPTIMAL below
    the MIP's proven bound: a row over replicas alone is no column's to mend."""
    f = fleet(location("l1"), location("l3"), location("l4"),
              pool("p0", "l4", gpu="H100-80GB", per_node=4, count=None, min_nodes=1, max_nodes=3, usd=1.0,
                   provider="aws"),
              pool("p1", "l3", gpu="H100-80GB", per_node=4, count=1, usd=2.0),
              training("t0", replicas=1, gpus=1, mem=30), training("t2", replicas=2, gpus=4, mem=50, workload="batch"),
              inference("m4", [{"location": "l1", "rate": 116}, {"location": "l4", "rate": 288}], mem=27,
                        throughput={"H100-80GB": 133}),
              inference("m7", [], gpus=2, mem=32, throughput={"H100-80GB": 66}, minReplicas=3))
    got = both_routes(f, monkeypatch)  # solve() checks the hard constraints of each
    assert got["scalable"][1].objective == pytest.approx(got["exact"][1].objective, rel=1e-3)
    assert got["scalable"][0].replicas_of("m7") == 3


@pytest.mark.parametrize("elastic", [False, True])
def test_the_scalable_route_plans_a_model_with_nothing_to_do(elastic, monkeypatch):
    """Found by the routes' property test: a model with no demand, no minimum, and no pair (every
    pool spot or of no nodes) gave the master no configuration to recombine ("need at least one
    array to concatenate"); with one idle pair, the bound's sums met an integer zero."""
    pools = [pool("p0", "a", gpu="L4-24GB", per_node=1, count=0), pool("p1", "a", per_node=1, count=0, spot=True)]
    if elastic:
        pools.append(pool("p2", "a", per_node=1, count=None, min_nodes=0, max_nodes=1, provider="aws", usd=0.0))
    f = fleet(location("a"), *pools, inference("m", [], mem=10))
    got = both_routes(f, monkeypatch)
    assert got["scalable"][0].replicas == got["exact"][0].replicas == {}


def test_validate_warns_on_a_fleet_without_pools_instead_of_crashing():
    """With no pools, the arrays' per-GPU-type columns were numpy's default float (an empty list),
    and a model with gpuTypes or demand ended `placer validate` in an internal error (TypeError:
    bitwise_and on float64): each model now gets its warning that no pool can host it."""
    from placer.optimizer.arrays import fleet_warnings

    f = fleet(location("dc"), inference("m", [{"location": "dc", "rate": 100}], throughput={"H100-80GB": 100}),
              inference("t", [{"location": "dc", "rate": 10}], gpuTypes=["A100-80GB"]))
    warned = [str(d) for d in fleet_warnings(f, RULES)]
    assert len(warned) == 2 and all("no pool can host this model" in w for w in warned), warned


def test_fit_gives_the_gpu_types_reason_before_the_nodes_size():
    """A replica of 3 GPUs with 40 GiB each on L4 nodes of 2 was "node-size" (bigger nodes would
    help), though an L4 has 24 GiB: the GPU type's reasons (memory, gpuTypes, throughput) come
    first, node-size only where the GPU would do."""
    from placer.candidates import fit

    f = fleet(location("a"), pool("l4", "a", gpu="L4-24GB", per_node=2), pool("a100", "a", per_node=2),
              pool("h100", "a", gpu="H100-80GB", per_node=2), pool("wide", "a", gpu="H100-80GB", per_node=4),
              inference("big", [{"location": "a", "rate": 10}], gpus=3, mem=40,
                        throughput={"A100-80GB": 100, "L4-24GB": 10}, gpuTypes=["A100-80GB", "L4-24GB"]),
              inference("any", [{"location": "a", "rate": 10}], gpus=3, mem=40, throughput={"A100-80GB": 100}))
    reason = {(m, p): str(fit(f, f.models[m], f.pools[p])) for m in ("big", "any") for p in ("l4", "a100", "h100")}
    assert reason[("big", "l4")] == "memory: needs 40 GiB per GPU; L4-24GB has 24"
    assert reason[("big", "h100")].startswith("gpu-type: H100-80GB is not in gpuTypes")
    assert reason[("any", "h100")] == "throughput: no throughput given for H100-80GB"
    assert reason[("big", "a100")] == "node-size: a replica needs 3 GPUs on one node; a100 nodes have 2"


def test_a_conflicts_advice_is_true_of_its_members():
    """The message said "with the fleet's capacity" and "add capacity" of a conflict the solver
    found among placement rules alone (spread and maxModelsPerPool), offered to lower a
    minReplicas where none took part, and "relax one of them" as if that were sure to give a
    plan, where the fleet may hold a second conflict."""
    from placer.optimizer.conflicts import Conflict

    rules = Conflict(("spread-all", "max-one"), ("a", "b"), 3).message()
    assert "capacity" not in rules
    assert rules == ("no placement on the fleet's pools satisfies required policies spread-all, max-one and "
                     "minReplicas of a, b together; relax one of them (drop a policy or make it preferred, or lower a "
                     "minReplicas); other conflicts may remain")
    assert Conflict(("p",), (), 1).message().endswith("relax it (drop the policy or make it preferred); other "
                                                      "conflicts may remain")
    short = Conflict((), ("m",), 0, capacity=(0, 2)).message()
    assert short == ("no placement satisfies minReplicas of m with the fleet's capacity (m needs 2 replicas; the pools "
                     "it fits hold at most 0); relax it (lower the minReplicas, or add capacity); other conflicts may "
                     "remain")
    assert "relax some of them" in Conflict(("p", "q"), (), 5, minimal=False).message()


def test_the_scalable_routes_progress_names_each_step_as_it_starts():
    """Its progress was each step's timing once the step was done ("seed: 0.21s lp: 23889 pairs",
    shown through the LP's 8.8 s at L): the spinner showed the last finished step, not the current one."""
    import re

    from placer.optimizer.large import optimize_large

    said: list[str] = []
    f = two_sites(pool("p", "a", usd=1), pool("q", "b", usd=2), inference("m0", [{"location": "a", "rate": 100}]))
    assert optimize_large(f, RULES, progress=said.append, time_limit=5.0).placement is not None
    assert said[:3] == ["finding eligible pools", "building the model: 2 eligible (model, pool) pairs",
                        "a first plan to start from"], said
    assert "rounding to whole replicas" in said and "neighbourhood search" in said, said
    assert not [s for s in said if re.match(r"[a-z ]+: \d+\.\d\ds", s)], said  # no "seed: 0.21s ..."


def test_the_exact_route_plans_a_fleet_of_no_pair_whose_rules_add_rows(monkeypatch):
    """Found by brute force on tiny fleets: no model fits any pool, and a headroom adds its row
    (0 GPUs used <= 1.5) to a MIP of no variable. HiGHS answered that model with no status (99):
    the plan fell back to the scalable route, or, the exact route forced, failed with 'no placement
    within 20 s; raise Settings solver.timeLimitSeconds'."""
    monkeypatch.setenv("PLACER_OPTIMIZER", "exact")
    f = fleet(location("a"), pool("p", "a", gpu="T4-16GB", per_node=3),
              inference("m", [{"location": "a", "rate": 250}], mem=30, throughput={"T4-16GB": 100}),
              policy("h", {"headroom": {"fraction": 0.5}}), NO_CHURN)
    result = optimize(f, RULES)
    assert result.status == "OPTIMAL" and result.placement is not None and not result.placement.replicas
    assert result.objective == pytest.approx(250)


def test_the_scalable_route_leaves_a_gang_unplaced_where_its_penalty_costs_more(monkeypatch):
    """Found by brute force on tiny fleets: placing the gang t costs 2 (compute) + 10 (the
    preferred allowPools) + 1 (churn) USD/h, leaving it 10. HiGHS, started from the first plan
    (t placed), handed that start back with an objective it did not have; the answer was taken as
    it came, and the search's own started MIPs fared the same: 17.60 USD/h against 14.60."""
    f = fleet(location("us", jurisdiction="US"), location("eu"),
              pool("p", "us", per_node=4, usd=0.5),
              pool("q", "eu", per_node=2, count=None, min_nodes=0, max_nodes=2, provider="aws", usd=2.0, spot=True),
              training("b", 1, gpus=2, mem=30, spotTolerant=True, workload="batch", priority=50),
              training("t", 2, gpus=2, mem=10, spotTolerant=True),
              policy("eu", {"allowPools": {}}, pools={"jurisdiction": ["EU"]}, penalty=5),
              policy("p-only", {"allowPools": {}}, pools={"names": ["p"]}, penalty=0.1),
              settings(churnUsdPerReplica=0.5, unmetUsdPerReplica=5))
    got = both_routes(f, monkeypatch)
    assert got["exact"][1].objective == pytest.approx(14.6)
    assert got["scalable"][0].replicas == got["exact"][0].replicas == {("b", "q"): 1}


def test_a_scalable_replan_that_finds_no_plan_around_what_runs_proves_the_fleet_infeasible(monkeypatch):
    """m runs on p and q (a required spread over 2 failure domains); q lost, no plan can hold it.
    The re-plan around what runs found none and answered UNKNOWN, which whatif and plan told the
    user to cure by raising the time limit (bench M with a pool down, after 1.8 s of 5), naming no
    conflict; the whole route's LP proves it INFEASIBLE, whose conflict explain_infeasible names."""
    monkeypatch.setenv("PLACER_OPTIMIZER", "scalable")
    docs = [location("a"), pool("p", "a", failureDomain="da"),
            inference("m", [{"location": "a", "rate": 100}], minReplicas=2),
            policy("two-domains", {"spread": {"minFailureDomains": 2}})]
    both = fleet(*docs, pool("q", "a", failureDomain="db"))
    first, _ = solve(both)
    assert first.replicas == {("m", "p"): 1, ("m", "q"): 1}
    lost = fleet(*docs, pool("q", "a", count=0, failureDomain="db"))
    result = optimize(lost, RULES, current=dict(first.replicas))
    assert result.placement is None and result.status == "INFEASIBLE"


def test_a_search_that_stops_without_a_plan_on_a_fleet_that_has_none_names_its_conflict(monkeypatch):
    """A search that stops with no plan and no proof (at bench M, a re-plan from an applied state
    whose LP did not finish a round in time) on a fleet that has no plan: the fleet is checked as the
    conflict search checks it, and the plan names the conflict; it said "raise Settings
    solver.timeLimitSeconds", which no time would have mended. A fleet that has a plan stays UNKNOWN."""
    import math

    import placer.optimizer.large as large

    def stopped(*args, **kwargs):
        return large.LargeResult("UNKNOWN", None, math.inf, -math.inf, 0.0, {})

    monkeypatch.setenv("PLACER_OPTIMIZER", "scalable")
    monkeypatch.setattr(large, "solve_model", stopped)
    f = pinned_pair()
    assert optimize(f, RULES).status == "INFEASIBLE"
    with pytest.raises(InfeasibleError, match=r"pin-to-p \(test\.yaml:\d+\) and minReplicas of m1"):
        make_plan(f, State(), RULES, NOW)
    # one pinned minimum alone has a plan: there the search's stop is not the fleet's
    alone = two_sites(pool("p", "a", count=1, per_node=4),
                      inference("m1", [{"location": "a", "rate": 100}], minReplicas=3, labels={"pin": "yes"}),
                      policy("pin-to-p", {"allowPools": {}}, models={"labels": {"pin": "yes"}}, pools={"names": ["p"]}),
                      NO_CHURN)
    assert optimize(alone, RULES).status == "UNKNOWN"


def test_the_exact_routes_objective_is_the_cost_functions_where_it_stops_within_the_gap(monkeypatch):
    """HiGHS stops within relativeGap 0.001 of its bound at a plan whose headroom slack (3 GPUs short)
    is above what the plan breaks (1 GPU: 10 of 12 used, 9 kept); the plan's objective counted the
    slack, 4520.64 USD/h where the cost function prices the plan at 4519.64 (found by planning random
    fleets both ways)."""
    monkeypatch.setenv("PLACER_OPTIMIZER", "exact")
    gap = doc("Settings", "settings", {"solver": {"relativeGap": 0.001, "timeLimitSeconds": 20}})
    f = fleet(
        location("l0", env="onprem"), location("l1", env="edge", jurisdiction="US", local=0.5),
        pool("p3", "l0", per_node=4, count=None, min_nodes=1, max_nodes=4, provider="aws", usd=1.47, spot=True),
        pool("p4", "l1", per_node=2, count=None, min_nodes=0, max_nodes=4, provider="aws", usd=4.55),
        training("m0", 2, gpus=3, mem=70, labels={"team": "y"}, priority=10, spotTolerant=True),
        training("m1", 3, gpus=1, mem=20, labels={"team": "y"}, priority=50, spotTolerant=True, workload="batch",
                 gang=True),
        inference("m3", [{"location": "l0", "rate": 10, "latencySloMs": 60}], gpus=2, mem=40, labels={"team": "x"},
                  throughput={"A100-80GB": 300}, spotTolerant=True),
        policy("pol0", {"headroom": {"fraction": 0.25}}, penalty=0.5),
        policy("pol1", {"spread": {"minFailureDomains": 2}}, models={"labels": {"team": "x"}}, penalty=50),
        policy("pol2", {"spread": {"minFailureDomains": 3}}, models={"labels": {"team": "y"}}),
        gap,
    )
    result = optimize(f, RULES)
    assert result.placement is not None
    cost = price(f, result.placement, RULES)
    assert result.objective == pytest.approx(cost.objective, rel=1e-9, abs=1e-6)
    assert result.terms["penalty"] == pytest.approx(cost.penalty, rel=1e-9, abs=1e-6)
    assert result.bound <= result.objective + 1e-9
