"""Placement's per-model and per-pool questions (indexed on first use) answer as a scan of every
pair and route would: the cost function, the diff and the policies ask them thousands of times."""

from __future__ import annotations

import random

import pytest

from placer.placement import Placement, Route
from tests.fleetkit import fleet, inference, location, pool


@pytest.mark.parametrize("seed", range(5))
def test_indexed_answers_are_those_of_a_scan(seed: int) -> None:
    rng = random.Random(seed)
    pools = [f"p{i}" for i in range(6)]
    models = [f"m{i}" for i in range(8)]
    f = fleet(location("a"), *(pool(p, "a", per_node=rng.choice([1, 2, 4, 8]), count=4) for p in pools),
              *(inference(m, [{"location": "a", "rate": 100}], gpus=rng.choice([1, 2])) for m in models))
    replicas = {(m, p): rng.choice([0, 0, 1, 2, 5]) for m in models for p in pools if rng.random() < 0.6}
    replicas[("gone", "p0")] = 3  # a model the fleet no longer has
    routes = tuple(Route(m, rng.choice(["a", "b"]), rng.choice(pools), rng.uniform(0, 50), 1.0)
                   for m in models for _ in range(rng.randint(0, 4)))
    placement = Placement(replicas, {}, routes)
    for m in [*models, "gone", "never"]:
        assert placement.replicas_of(m) == sum(r for (mm, _), r in replicas.items() if mm == m)
        assert placement.pools_of(m) == {p: r for (mm, p), r in replicas.items() if mm == m and r > 0}
        for loc in ("a", "b", "c"):
            assert placement.routed(m, loc) == pytest.approx(
                sum(r.rate for r in routes if r.model == m and r.demand_location == loc))
    for p in pools:
        assert placement.gpus_used(f, p) == sum(
            r * f.pools[p].gpus_per_replica(f.models[m].spec.replica.gpus)
            for (m, q), r in replicas.items() if q == p and m in f.models)


def test_the_cost_function_counts_the_unmet_demand_the_placement_reports() -> None:
    """A solver's route 1e-7 short of its demand row is no unmet demand, in the placement's unmet
    list nor in the cost: at unmetUsdPerRate 1e9 the example's plan cost 628.85 USD/h of unmet
    demand while every model showed 0 unmet. A real shortfall counts in both."""
    from placer.cost import price
    from tests.fleetkit import RULES, settings

    f = fleet(location("a"), pool("p", "a"), inference("m", [{"location": "a", "rate": 6000}]),
              settings(unmetUsdPerRate=1e9, churnUsdPerReplica=0))
    dust = Placement({("m", "p"): 2}, {}, (Route("m", "a", "p", 6000 - 6e-7, 0.0),))
    assert dust.unmet(f) == [] and price(f, dust, RULES).unmet == 0.0
    short = Placement({("m", "p"): 2}, {}, (Route("m", "a", "p", 5999.0, 0.0),))
    assert short.unmet(f) == [("m", "a", pytest.approx(1.0))]
    assert price(f, short, RULES).unmet == pytest.approx(1e9)


def test_a_whole_unit_short_of_a_large_demand_is_unmet_demand() -> None:
    """1,000,001 units/s on ten replicas of 100,000: the plan serves 1,000,000 and leaves one unit
    unmet (cheaper than an eleventh replica), which the solver prices. A shortfall under a
    millionth of the demand was taken for a solver's rounding: the plan said unmet 0.00 and total
    20.10 USD/h beside an objective of 21.10, and listed no unmet demand. A hundredth of a unit
    short of a small rate is still rounding."""
    from placer.cost import price
    from placer.optimizer import optimize
    from tests.fleetkit import RULES, settings

    f = fleet(location("a"), pool("p", "a", per_node=8, count=2, usd=2.0),
              inference("m", [{"location": "a", "rate": 1_000_001}], throughput={"A100-80GB": 100_000}),
              settings(churnUsdPerReplica=0))
    result = optimize(f, RULES)
    assert result.placement is not None and result.placement.replicas_of("m") == 10
    assert result.placement.unmet(f) == [("m", "a", pytest.approx(1.0))]
    cost = price(f, result.placement, RULES)
    assert cost.unmet == pytest.approx(1.0)
    assert cost.objective == pytest.approx(result.objective, abs=1e-6)
    # three routes of a plan file, each rounded to 6 decimals, 1.5e-6 short of 1,000: rounding
    small = fleet(location("a"), pool("p", "a"), inference("m", [{"location": "a", "rate": 1000}]))
    rounded = Placement(replicas={("m", "p"): 1}, nodes={},
                        routes=tuple(Route("m", "a", "p", 333.333333, 1.0) for _ in range(3)))
    assert rounded.unmet(small) == []


def test_a_models_terms_add_up_to_the_fleets() -> None:
    """`placer explain` shows a model's own terms of the running cost; over every model its egress,
    latency and unmet demand sum to the fleet's, and its compute to the fleet's on fixed pools
    (an elastic pool's is paid by the node)."""
    from pathlib import Path

    from placer.cost import model_usd, price
    from placer.fleet import load_fleet
    from placer.optimizer import optimize
    from tests.fleetkit import RULES

    f = load_fleet(str(Path(__file__).resolve().parents[1] / "examples" / "hybrid"))
    placement = optimize(f, RULES).placement
    assert placement is not None
    cost = price(f, placement, RULES)
    terms = [model_usd(f, placement, m) for m in f.models]
    for key, total in (("egress", cost.egress), ("latency", cost.latency), ("unmet demand", cost.unmet)):
        assert sum(t[key] for t in terms) == pytest.approx(total, rel=1e-9, abs=1e-9), key
    assert cost.egress > 0 and cost.latency > 0
    # compute: the fleet pays an elastic pool by the node, whole, and a model for its replicas
    fixed = sum(p.usd_per_gpu_hour * placement.gpus_used(f, p.name) for p in f.pools.values() if not p.elastic)
    assert fixed < sum(t["compute"] for t in terms) <= cost.compute + 1e-9
