"""The first plan's rounding (``placer.optimizer.repair.round_and_cover``) on generated fleets: from
the LP, from a greedy start that ignores spot caps, and from a start asking three times the LP's
replicas, its replicas stay within every pair's bound, every row over replicas alone, and every
pool's GPUs, and they serve the demand the LP served."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from bench.generate import generate, to_fleet
from placer.optimizer.arrays import build_arrays
from placer.optimizer.greedy import greedy
from placer.optimizer.large import pseudo_lp
from placer.optimizer.matrix import build_matrix, pure_x_rows
from placer.optimizer.repair import round_and_cover
from policies import build_rules
from tests.bench.firstplan import lp_values

RULES = build_rules(dt.datetime(2026, 11, 28, tzinfo=dt.UTC))


@pytest.fixture(scope="module", params=[11, 12])
def lp_model(request):
    model = build_matrix(build_arrays(to_fleet(generate(60, 14, seed=request.param)), RULES), RULES, {})
    return model, lp_values(model)


def assert_fits(model, x):
    a = model.arrays
    x0, x1 = model.blocks["x"]
    assert np.all(x >= 0) and np.all(x <= model.ub[x0:x1])
    pure = pure_x_rows(model)
    assert len(pure), "no rows over replicas alone: the fixture no longer tests them"
    act = model.A.tocsr()[pure][:, x0:x1] @ x
    assert np.all(act <= model.row_hi[pure] + 1e-7 * np.maximum(1.0, np.abs(act)))
    gpus = np.bincount(a.pair_pool, weights=x * a.pair_c, minlength=len(a.pools))
    room = np.where(a.pool_elastic, a.pool_max_nodes, a.pool_min_nodes) * a.pool_per_node
    assert np.all(gpus <= room + 1e-9)


def test_rounding_the_lp_keeps_every_bound_and_serves_what_the_lp_served(lp_model):
    model, values = lp_model
    a = model.arrays
    x0, x1 = model.blocks["x"]
    u0 = model.blocks["u"][0]
    x = round_and_cover(model, values, np.ones(a.n_pairs, dtype=bool))
    assert_fits(model, x)
    # every model's replicas can serve its demand the LP served: throughput >= rate - LP's unmet
    served_lp = np.bincount(a.dem_model, weights=a.dem_rate - values[u0:u0 + len(a.dem_model)],
                            minlength=len(a.models))
    throughput = np.bincount(a.pair_model, weights=x * a.pair_thr, minlength=len(a.models))
    assert np.all(throughput >= served_lp - 1e-6)
    assert x.sum() >= np.floor(values[x0:x1] + 1e-6).sum()  # nothing the LP placed whole is dropped


def test_a_start_that_breaks_spot_caps_and_capacity_is_brought_within_them(lp_model):
    model, values = lp_model
    a = model.arrays
    x0, x1 = model.blocks["x"]
    gx, _ = greedy(model)
    for start in (pseudo_lp(model, gx.astype(float)), values * 3.0):
        allowed = np.zeros(a.n_pairs, dtype=bool)
        allowed[start[x0:x1] > 0] = True
        x = round_and_cover(model, start, allowed)
        assert_fits(model, x)
        assert allowed[x > 0].all()  # a pair the cover had to use joins the allowed ones
