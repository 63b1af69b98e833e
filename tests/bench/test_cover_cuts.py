"""The cover cuts of ``placer.optimizer.matrix.cover_cuts`` on generated fleets: built with array
operations, they are the rows the textbook construction gives group by group (written out here
one group at a time, as the definition), in the same order; and they are valid: no integer
choice of replicas, with the demand they leave unserved, breaks one."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from bench.generate import generate, to_fleet
from placer.optimizer.arrays import build_arrays
from placer.optimizer.matrix import MatrixModel, build_matrix
from policies import build_rules

RULES = build_rules(dt.datetime(2026, 11, 28, tzinfo=dt.UTC))


def by_definition(model: MatrixModel, per_group: int) -> list[tuple[dict[int, float], float]]:
    """Per cut, in order: {column: coefficient} and its right-hand side, one group at a time."""
    a = model.arrays
    x0, u0 = model.blocks["x"][0], model.blocks["u"][0]
    has_routes = np.zeros(a.n_pairs, dtype=bool)
    has_routes[a.route_pair] = True
    groups = []
    for mi in range(len(a.models)):
        dems = np.flatnonzero(a.dem_model == mi)
        if not len(dems):
            continue
        pairs = [p for p in range(a.pair_ptr[mi], a.pair_ptr[mi + 1]) if has_routes[p]]
        if pairs:
            groups.append((pairs, list(dems), float(a.dem_rate[dems].sum())))
        if len(dems) > 1:
            for d in dems:
                rp = sorted(set(a.route_pair[a.route_ptr[d]:a.route_ptr[d + 1]].tolist()))
                if rp:
                    groups.append((rp, [int(d)], float(a.dem_rate[d])))
    cuts = []
    for pairs, dems, rate in groups:
        thr = [float(a.pair_thr[p]) for p in pairs]
        top = max(thr)
        if top <= 0 or rate <= 0:
            continue
        count: dict[float, int] = {}
        for t in sorted(t for t in thr if t > 0):
            count[t] = count.get(t, 0) + 1
        others = sorted((t for t in count if t != top), key=lambda t: (-count[t], t))
        for T in [top, *others[:per_group - 1]]:
            q = rate / T
            f = q - math.floor(q)
            if f < 1e-6 or f > 1 - 1e-6:
                continue
            row = {}
            for p, t in zip(pairs, thr, strict=True):
                fp = t / T - math.floor(t / T)
                row[x0 + p] = math.floor(t / T) + min(fp, f) / f
            for d in dems:
                row[u0 + d] = 1.0 / (T * f)
            cuts.append((row, float(math.ceil(q))))
    return cuts


@pytest.fixture(scope="module", params=[(60, 14, 3, 4), (40, 10, 5, 2), (30, 12, 7, 1)])
def built(request):
    models, pools, seed, levels = request.param
    arrays = build_arrays(to_fleet(generate(models, pools, seed=seed)), RULES)
    plain = build_matrix(arrays, RULES, {}, cuts=False)
    model = build_matrix(arrays, RULES, {}, cuts=True, cut_levels=levels)
    return plain, model, levels


def test_cuts_are_the_definitions_rows_in_order(built) -> None:
    plain, model, levels = built
    expected = by_definition(model, levels)
    assert len(expected) > 20, "too few cuts: the fixture no longer tests them"
    assert model.n_rows == plain.n_rows + len(expected)
    A = model.A.tocsr()
    for k, (row, rhs) in enumerate(expected):
        r = plain.n_rows + k
        got = dict(zip(A.indices[A.indptr[r]:A.indptr[r + 1]].tolist(), A.data[A.indptr[r]:A.indptr[r + 1]].tolist(),
                       strict=True))
        assert got.keys() == row.keys(), f"cut {k}: columns differ"
        assert np.allclose([got[c] for c in row], list(row.values()), rtol=1e-12), f"cut {k}: coefficients differ"
        assert model.row_lo[r] == rhs and model.row_hi[r] == np.inf
    # the rows before the cuts are the model without them
    assert abs(model.A.tocsr()[:plain.n_rows] - plain.A.tocsr()).max() == 0


def test_no_integer_replicas_break_a_cut(built) -> None:
    """Any integer replicas on a cut's pairs, with the demand they leave unserved put on its
    entries, meet it: the cut removes fractional replicas only."""
    plain, model, _ = built
    a = model.arrays
    x0, x1 = model.blocks["x"]
    u0 = model.blocks["u"][0]
    A = model.A.tocsr()
    rng = np.random.default_rng(0)
    for r in range(plain.n_rows, model.n_rows):
        cols = A.indices[A.indptr[r]:A.indptr[r + 1]]
        coef = A.data[A.indptr[r]:A.indptr[r + 1]]
        is_x = (cols >= x0) & (cols < x1)
        pairs, dems = cols[is_x] - x0, cols[~is_x] - u0
        rate = float(a.dem_rate[dems].sum())
        for _ in range(20):
            x = rng.integers(0, 3, size=len(pairs)) * (rng.random(len(pairs)) < 0.5)
            served = float(a.pair_thr[pairs] @ x)
            u = np.zeros(len(dems))
            u[0] = max(0.0, rate - served)  # on one entry: every entry weighs the same in a cut
            lhs = float(coef[is_x] @ x + coef[~is_x] @ u)
            assert lhs >= model.row_lo[r] - 1e-9, f"cut row {r}: x={x.tolist()} u={u.tolist()} gives {lhs}"
