"""The two implementations of ``placer.policy.ModelBuilder`` (the exact route's pywraplp model and
the scalable route's sparse matrix) must state the same problem: the same optimum on fleets with
every generated policy, and the bulk methods the rules use (``replicas_on``, ``max_replicas_on``,
``uses``) must mean what a sum over single pairs means."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from bench.generate import generate, to_fleet
from placer.optimizer.arrays import build_arrays
from placer.optimizer.highs import solve
from placer.optimizer.matrix import build_matrix
from placer.optimizer.solve import optimize
from policies import build_rules

RULES = build_rules(dt.datetime(2026, 11, 28, tzinfo=dt.UTC))


@pytest.mark.parametrize("seed", [3, 5])
def test_both_builders_reach_the_same_optimum(seed):
    fleet = to_fleet(generate(14, 6, seed=seed))
    rules_used = {p.rule.name for p in fleet.policies}
    assert {"spread", "maxSpotFraction", "preferPools"} <= rules_used
    exact = optimize(fleet, RULES, time_limit=60.0)
    assert exact.status == "OPTIMAL"
    model = build_matrix(build_arrays(fleet, RULES), RULES, {})
    sol = solve(model, np.arange(model.n_cols), integer=True, time_limit=60.0, gap=0.0)
    assert sol.status == "OPTIMAL"
    assert sol.objective == pytest.approx(exact.objective, rel=1e-4, abs=1e-3)


def test_matrix_bulk_methods_mean_sums_over_pairs():
    from placer.optimizer.matrix import _Builder

    fleet = to_fleet(generate(10, 6, seed=4))
    a = build_arrays(fleet, RULES)
    b = _Builder(a)
    b.x0 = b.add_cols("x", np.zeros(a.n_pairs), 0.0, a.pair_max.astype(float), True)
    b.blocks["aux"] = (b.n_cols, b.n_cols)
    pools = list(fleet.pools.values())
    some, rest = pools[::2], pools[1::2]

    def columns(model, group):
        return {b.x0 + b._pair(m, p) for m, p in b.pairs([model], group)}

    for model in fleet.models.values():
        expr = b.replicas_on(model.name, some)
        if not columns(model, some):
            assert expr == 0
            continue
        idx, coef, _ = expr.flatten()
        assert set(idx.tolist()) == columns(model, some) and len(idx) == len(set(idx.tolist())) and (coef == 1).all()
        assert b.max_replicas_on(model.name, some) == sum(b.max_replicas(m, p) for m, p in b.pairs([model], some))

    model = next(m for m in fleet.models.values() if columns(m, some) and columns(m, rest))
    zs = b.uses(model.name, [some, [], rest], ["g-some", "g-none", "g-rest"])
    assert zs[1] is None and zs[0] is not None and zs[2] is not None
    b.finish_rules()
    rows = {name: r for r, name in b.row_names.items()}
    assert set(rows) == {"g-some", "g-rest"}
    A = np.zeros((b.n_rows, b.n_cols))
    np.add.at(A, (np.concatenate(b.rows_i), np.concatenate(b.rows_j)), np.concatenate(b.rows_v))
    lo, hi = np.concatenate(b.row_lo), np.concatenate(b.row_hi)
    for name, group, z in (("g-some", some, zs[0]), ("g-rest", rest, zs[2])):
        r = rows[name]
        zcol = int(z.flatten()[0][0])
        assert A[r, zcol] == 1.0 and lo[r] == -np.inf and hi[r] == 0.0  # z - sum x <= 0
        xs = columns(model, group)
        assert set(np.flatnonzero(A[r]).tolist()) - {zcol} == xs and (A[r, sorted(xs)] == -1.0).all()


def test_uses_refuses_a_pool_in_two_groups():
    from placer.candidates import find_candidates
    from placer.optimizer.matrix import _Builder
    from placer.optimizer.model import MipBuilder

    fleet = to_fleet(generate(6, 4, seed=2))
    pools = list(fleet.pools.values())
    model = next(iter(fleet.models))
    matrix = _Builder(build_arrays(fleet, RULES))
    matrix.x0 = matrix.add_cols("x", np.zeros(matrix.arrays.n_pairs), 0.0, 1.0, True)
    matrix.blocks["aux"] = (matrix.n_cols, matrix.n_cols)
    exact = MipBuilder(fleet, find_candidates(fleet, RULES), {})
    for builder in (matrix, exact):
        with pytest.raises(ValueError, match=f"pool {pools[1].name} is in two groups"):
            builder.uses(model, [pools[:2], pools[1:]], ["a", "b"])
