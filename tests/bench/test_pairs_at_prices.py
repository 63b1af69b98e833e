"""The pairs each model's pricing MIP may use in the rounds priced at the master's prices
(``placer.optimizer.large.pairs_at_prices``): ranked by what a configuration pays at those
prices, replicas counted whole, spot and on-demand pools apart."""

from __future__ import annotations

import numpy as np

from placer.optimizer.arrays import build_arrays
from placer.optimizer.large import pairs_at_prices
from placer.optimizer.matrix import build_matrix
from tests.fleetkit import RULES, fleet, inference, location, pool, settings

# one demand entry of 250/s in one place, six pools of one node each (USD per GPU-hour, per-replica
# throughput): per unit of rate "big" is the cheapest on-demand pool and "small" the next; one
# replica of "small" serves the entry whole, for less than one of "big"; the two "tiny" pools have
# the cheapest replicas (and need 13 of them); "mid" is beaten on every measure; "spot" is spot
POOLS = {  # name: (GPU type, USD per GPU-hour, spot)
    "big": ("H100-80GB", 4.0, False),
    "small": ("L4-24GB", 1.8, False),
    "mid": ("A10G-24GB", 3.0, False),
    "tiny1": ("T4-16GB", 0.5, False),
    "tiny2": ("T4-16GB", 0.5, False),
    "spot": ("H100-80GB", 1.0, True),
}
THROUGHPUT = {"H100-80GB": 1000, "L4-24GB": 300, "A10G-24GB": 400, "T4-16GB": 20}


def model_and_pairs():
    f = fleet(location("eu"),
              *(pool(name, "eu", gpu=gpu, usd=usd, spot=spot, per_node=8) for name, (gpu, usd, spot) in POOLS.items()),
              inference("m", [{"location": "eu", "rate": 250}], throughput=THROUGHPUT, mem=10, spotTolerant=True),
              settings(churnUsdPerReplica=0))
    model = build_matrix(build_arrays(f, RULES), RULES, {})
    a = model.arrays
    pair = {a.pools[a.pair_pool[j]].name: j for j in range(a.n_pairs)}
    assert set(pair) == set(POOLS)
    return model, pair


def chosen(model, pair, v=None):
    got = pairs_at_prices(model, model.cost.copy(), np.zeros(model.n_cols) if v is None else v, per_group=1)
    return {name for name, j in pair.items() if got[j]}


def test_whole_replicas_spot_and_the_cheapest_replicas_are_in_and_a_pool_beaten_on_every_measure_is_not():
    model, pair = model_and_pairs()
    x0 = model.blocks["x"][0]
    cost = {name: float(model.cost[x0 + j]) for name, j in pair.items()}
    assert cost["small"] < cost["big"] and cost["mid"] > cost["small"]  # the premise, at these prices
    # "big" for its cost per unit of rate, "small" for serving the entry with one replica, the
    # tinies for the cheapest replicas, "spot" as the best spot pool; not "mid"
    assert chosen(model, pair) == {"big", "small", "tiny1", "tiny2", "spot"}


def test_the_pairs_the_plan_uses_are_in_whatever_they_cost():
    model, pair = model_and_pairs()
    v = np.zeros(model.n_cols)
    v[model.blocks["x"][0] + pair["mid"]] = 1
    assert "mid" in chosen(model, pair, v)


def test_the_prices_rank_them():
    """Priced by rows between models, a pool's replicas may cost more than its list price: here a
    dearer "small" leaves "mid" the pool that serves the entry whole for least."""
    model, pair = model_and_pairs()
    rc = model.cost.copy()
    rc[model.blocks["x"][0] + pair["small"]] = 50.0
    got = pairs_at_prices(model, rc, np.zeros(model.n_cols), per_group=1)
    assert {name for name, j in pair.items() if got[j]} == {"big", "mid", "tiny1", "tiny2", "spot"}
