"""Batched pricing (``placer.optimizer.batchprice``, ``PLACER_PRICING=batch``) against HiGHS' MIP
on the same blocks: every inference model's pricing problem at once, at reduced costs from random
duals on the rows between models, on small generated fleets (one to three demand entries a model,
spot caps, minReplicas, a preferred rule's penalty). Each answer must meet every row and bound of
its block and keep off the pairs left out; never cost less than HiGHS' proven optimum (its value is
what it says); equal that optimum where the search is exact (one pair a model: its cost is convex
in the replicas) and on most blocks otherwise. An answer that breaks its block goes to HiGHS."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pytest

import placer.optimizer.batchprice as batchprice
import placer.optimizer.large as large
import placer.optimizer.recombine as recombine_mod
from bench.generate import generate, to_fleet
from placer.knobs import KnobError
from placer.optimizer.arrays import build_arrays
from placer.optimizer.bound import linking_reduced_costs
from placer.optimizer.highs import solve_arrays
from placer.optimizer.matrix import build_matrix, rows_broken
from placer.optimizer.recombine import Configurations, on_columns
from policies import build_rules

RULES = build_rules(dt.datetime(2026, 11, 28, tzinfo=dt.UTC))


def configurations(seed: int) -> Configurations:
    return Configurations(build_matrix(build_arrays(to_fleet(generate(40, 12, seed=seed)), RULES), RULES, {}))


@pytest.fixture(scope="module", params=[3, 7])
def configs(request):
    return configurations(request.param)


def prices(configs: Configurations, seed: int) -> np.ndarray:
    """Reduced costs at duals a master could give: capacity dear in some pools."""
    model = configs.model
    rng = np.random.default_rng(seed)
    pi = np.where(configs.blocks.local, 0.0, -rng.exponential(0.002, model.n_rows) * (rng.random(model.n_rows) < 0.5))
    rc: np.ndarray = linking_reduced_costs(model, pi, configs.blocks)
    return rc


def highs(configs: Configurations, m: int, rc: np.ndarray, pairs: np.ndarray) -> float:
    """HiGHS' optimum of model m's block over ``pairs``, as ``add_priced`` builds it."""
    model = configs.model
    out = ~model.with_pairs(pairs) & (model.lb <= 0)
    cols = configs.columns(m)
    free = cols[~out[cols]]
    local, ptr = configs.local_rows()
    rows = local[ptr[m]:ptr[m + 1]]
    sol = solve_arrays(on_columns(configs.csr[rows], free), rc[free], model.lb[free], model.ub[free],
                       model.row_lo[rows], model.row_hi[rows], model.integer[free], time_limit=10.0, gap=1e-9)
    assert sol.status == "OPTIMAL", (m, sol.status)
    return sol.objective


def assert_meets_block(configs: Configurations, m: int, z: np.ndarray, pairs: np.ndarray) -> None:
    model = configs.model
    cols = configs.columns(m)
    local, ptr = configs.local_rows()
    rows = local[ptr[m]:ptr[m + 1]]
    v = np.zeros(model.n_cols)
    v[cols] = z
    A = configs.csr[rows]
    assert not np.any(rows_broken(A, v, A @ v, model.row_lo[rows], model.row_hi[rows])), m
    assert np.all(z >= model.lb[cols] - 1e-9) and np.all(z <= model.ub[cols] + 1e-9), m
    integer = model.integer[cols]
    assert np.all(np.abs(z[integer] - np.round(z[integer])) < 1e-9), m
    out = ~model.with_pairs(pairs) & (model.lb <= 0)
    assert not np.any(z[out[cols]]), m  # nothing on a pair left out


def one_pair_each(configs: Configurations, rng: np.random.Generator) -> np.ndarray:
    a = configs.model.arrays
    pairs = np.zeros(a.n_pairs, dtype=bool)
    for m in range(configs.n_models):
        mine = np.flatnonzero(a.pair_model == m)
        if len(mine):
            pairs[rng.choice(mine)] = True
    return pairs


@pytest.mark.parametrize("penalty", [1.0, 1000.0])
def test_with_one_pair_a_model_it_finds_highs_optimum_on_every_block(configs, penalty):
    """One pair: the block's cost is convex in its replicas, so the search's moves reach the
    optimum; ``penalty``: a preferred rule's penalty columns priced that many times higher."""
    rng = np.random.default_rng(1)
    rc = prices(configs, 1)
    aux0, aux1 = configs.model.blocks["aux"]
    rc[aux0:aux1] *= penalty
    pairs = one_pair_each(configs, rng)
    pricer = batchprice.BatchPricer(configs.model, configs.columns, configs.local_rows(), configs.csr,
                                    configs.n_models)
    got = pricer.price(np.arange(configs.n_models), rc, pairs, np.zeros(configs.model.n_cols))
    assert len(got) >= 0.6 * configs.n_models, (len(got), pricer.stats)
    for m, z in got.items():
        assert_meets_block(configs, m, z, pairs)
        best = highs(configs, m, rc, pairs)
        value = float(rc[configs.columns(m)] @ z)
        assert abs(value - best) <= 1e-6 * max(1.0, abs(best)), (m, value, best)


@pytest.mark.parametrize("with_one_pair", [True, False])
def test_replicas_of_negative_reduced_cost_go_to_their_bound(configs, with_one_pair):
    """The master's duals can price capacity so that a replica pays on its own (its reduced cost
    below 0): HiGHS then puts as many there as its bound allows, hundreds; so must the batch, which
    one or two replicas a step would not reach."""
    rng = np.random.default_rng(5)
    model = configs.model
    rc = prices(configs, 5)
    x0, x1 = model.blocks["x"]
    paying = rng.random(x1 - x0) < 0.3
    rc[x0:x1][paying] = -rng.uniform(0.01, 2.0, int(paying.sum()))
    pairs = one_pair_each(configs, rng) if with_one_pair else np.ones(x1 - x0, dtype=bool)
    got = configs.batch().price(np.arange(configs.n_models), rc, pairs, np.zeros(model.n_cols))
    assert len(got) >= 0.6 * configs.n_models
    far = 0
    values: list[float] = []
    bests: list[float] = []
    for m, z in got.items():
        assert_meets_block(configs, m, z, pairs)
        best = highs(configs, m, rc, pairs)
        value = float(rc[configs.columns(m)] @ z)
        assert value >= best - 1e-6 * max(1.0, abs(best)), (m, value, best)
        if with_one_pair:  # exact (convex in the replicas); over every pair a heuristic, near in all
            assert value <= best + 1e-6 * max(1.0, abs(best)), (m, value, best)
        values.append(value)
        bests.append(best)
        far += bool(np.any(z[np.isin(configs.columns(m), np.flatnonzero(rc < 0))] > 100))
    assert sum(values) <= sum(bests) + 0.1 * abs(sum(bests)), (sum(values), sum(bests))
    assert far > 0  # some answers hold more replicas on a pair than the search's steps reach


@pytest.mark.parametrize("share", [1.0, 0.4])
def test_over_many_pairs_its_answers_meet_their_blocks_and_mostly_find_highs_optimum(configs, share):
    rng = np.random.default_rng(int(share * 10))
    rc = prices(configs, int(share * 10))
    pairs = rng.random(configs.model.arrays.n_pairs) < share
    pricer = configs.batch()
    got = pricer.price(np.arange(configs.n_models), rc, pairs, np.zeros(configs.model.n_cols))
    assert len(got) >= 0.6 * configs.n_models, (len(got), pricer.stats)
    equal = 0
    for m, z in got.items():
        assert_meets_block(configs, m, z, pairs)
        best = highs(configs, m, rc, pairs)
        value = float(rc[configs.columns(m)] @ z)
        assert value >= best - 1e-6 * max(1.0, abs(best)), (m, value, best)
        equal += value <= best + 1e-6 * max(1.0, abs(best))
    assert equal >= 0.7 * len(got), (equal, len(got))


def test_an_answer_that_breaks_its_block_goes_to_highs(configs, monkeypatch):
    """A search that answers no replicas at all breaks the blocks with minReplicas (or a lower
    bound): those models are not answered, every answer given still meets its block."""
    monkeypatch.setattr(batchprice._Problem, "search",
                        lambda self, plan, fits: (np.zeros_like(self.A), np.zeros(len(self.A), dtype=np.int64)))
    rc = prices(configs, 2)
    pairs = np.ones(configs.model.arrays.n_pairs, dtype=bool)
    pricer = batchprice.BatchPricer(configs.model, configs.columns, configs.local_rows(), configs.csr,
                                    configs.n_models)
    got = pricer.price(np.arange(configs.n_models), rc, pairs, np.zeros(configs.model.n_cols))
    assert pricer.stats.failed > 0
    for m, z in got.items():
        assert_meets_block(configs, m, z, pairs)


def test_the_switch_sends_the_inference_models_to_the_batch_and_the_rest_to_highs(monkeypatch):
    configs = configurations(3)
    model = configs.model
    rc = prices(configs, 4)
    every = np.ones(model.arrays.n_pairs, dtype=bool)
    calls: list[int] = []
    real = batchprice.BatchPricer.price

    def spy(self, models, *args):
        got = real(self, models, *args)
        calls.append(len(got))
        return got

    monkeypatch.setattr(batchprice.BatchPricer, "price", spy)
    owning = [m for m in range(configs.n_models) if len(configs.columns(m))]
    monkeypatch.setenv("PLACER_PRICING", "mip")
    configs.add_priced(rc, every, np.zeros(model.n_cols), time.monotonic() + 60)
    assert not calls  # mip: HiGHS alone
    monkeypatch.delenv("PLACER_PRICING", raising=False)
    monkeypatch.setattr(recombine_mod, "SMALL_MASTER", len(configs))
    assert recombine_mod.pricing_mode(len(configs)) == "hybrid"  # unset, a master that large: the batch, then HiGHS
    monkeypatch.setattr(recombine_mod, "SMALL_MASTER", len(configs) + 1)
    configs.add_priced(rc, every, np.zeros(model.n_cols), time.monotonic() + 60)
    assert len(calls) == 1 and calls[0] > 0  # unset, a smaller master: the batch
    calls.clear()
    monkeypatch.setattr(recombine_mod, "SMALL_MASTER", 0)  # forced, the batch prices whatever the size
    monkeypatch.setenv("PLACER_PRICING", "batch")
    exact = configs.add_priced(rc, every, np.zeros(model.n_cols), time.monotonic() + 60, exact=True)
    assert not calls and np.isfinite(exact.proven[owning]).all()  # a round whose bounds count: HiGHS
    fresh = Configurations(model, csr=configs.csr)
    got = fresh.add_priced(rc, every, np.zeros(model.n_cols), time.monotonic() + 60)
    assert len(calls) == 1 and calls[0] > 0
    # every model has its configuration: the batch's answers, and HiGHS' for the others (training,
    # batch, refused or failed), whose proofs alone are recorded
    assert {m for m, _ in fresh.entries} == set(owning) and got.added == len(owning)
    assert int(np.isfinite(got.proven[owning]).sum()) == len(owning) - calls[0]
    # a fleet priced by parts: HiGHS alone, whatever the mode (at XL a first round with the batch's
    # one call over its 10,000 models took 32 s, where HiGHS' alone stops at its deadline)
    calls.clear()
    parts = Configurations(model, csr=configs.csr).add_priced(rc, every, np.zeros(model.n_cols),
                                                              time.monotonic() + 60, batched=False)
    assert not calls and np.isfinite(parts.proven[owning]).all()
    monkeypatch.setenv("PLACER_PRICING", "batched")
    with pytest.raises(KnobError, match="PLACER_PRICING"):
        fresh.add_priced(rc, every, np.zeros(model.n_cols), time.monotonic() + 60)


def test_hybrid_pricing_hands_highs_the_answers_farthest_from_the_estimate(monkeypatch):
    """Hybrid (a large master's): the batch prices the inference models, then HiGHS prices again,
    from the batch's answer, those whose answer lies more than HYBRID_GAP above the batch's estimate
    from below, ``lower``; both answers are kept, so no model's best configuration is dearer than
    the batch's."""
    built = configurations(3)
    model = built.model
    rc = prices(built, 4)
    every = np.ones(model.arrays.n_pairs, dtype=bool)
    zero = np.zeros(model.n_cols)

    def priced(mode: str, gap: float) -> tuple[Configurations, object]:
        monkeypatch.setenv("PLACER_PRICING", mode)
        monkeypatch.setattr(recombine_mod, "HYBRID_GAP", gap)
        c = Configurations(model)
        return c, c.add_priced(rc, every, zero, time.monotonic() + 60)

    def best(c: Configurations) -> np.ndarray:
        out = np.full(c.n_models, np.inf)
        for m, z in c.entries:
            out[m] = min(out[m], float(rc[c.columns(m)] @ z))
        return out

    batch, got_b = priced("batch", 1.0)
    handled = batch.batch().flat.handled
    answered = np.isfinite(best(batch)) & handled
    assert answered.sum() >= 10
    lower = batch.batch().lower
    assert np.isfinite(lower[answered]).all()
    far = answered & (best(batch) - lower > 1.0)
    assert 0 < far.sum() < answered.sum()  # the rule picks some, not all
    # beyond every estimate: HiGHS prices the blocks the batch does not take, as in batch mode
    _, got_n = priced("hybrid", np.inf)
    assert np.array_equal(np.isfinite(got_n.proven), np.isfinite(got_b.proven))
    # 1 USD/h: those far from their estimate too, and only those
    hybrid, got_h = priced("hybrid", 1.0)
    again = np.isfinite(got_h.proven) & ~np.isfinite(got_b.proven)
    assert np.array_equal(again, far)
    b, h = best(batch), best(hybrid)
    assert np.all(h[answered] <= b[answered] + 1e-9)
    # below every estimate: every inference model again (HiGHS' answer never dearer than its start)
    full, got_f = priced("hybrid", -np.inf)
    assert np.isfinite(got_f.proven[answered]).all()
    f_best = best(full)
    assert np.all(f_best[answered] <= b[answered] + 1e-9)


def test_in_the_route_the_bounding_round_stays_on_highs_and_the_bound_holds(monkeypatch):
    """Through the scalable route with PLACER_PRICING=batch: the round over every pair at the LP's
    duals, whose proofs make the plan's Lagrangian bound, prices every model by HiGHS (each proof
    there), the other rounds send the inference models to the batch (no proof), and the plan's
    bound stays at or under the optimum."""
    from tests.bench.test_bound import exact

    monkeypatch.setenv("PLACER_PRICING", "batch")
    monkeypatch.setattr(large, "FULL_MIP_COLS", 0)
    monkeypatch.setattr(large, "PRICE_SHARE", 0.9)
    monkeypatch.setattr(large, "EVERY_PAIR_ROUNDS", 0.0)
    monkeypatch.setattr(large, "AT_PRICES_ROUNDS", float("inf"))
    monkeypatch.setattr(large, "SECOND_ROUND", 0.0)  # a round after the first however long it took (load)
    monkeypatch.setattr(large, "BATCH_STALL", 0.0)  # no round by HiGHS where the batch stalls (it proves too)
    rounds: list[tuple[bool, int]] = []  # per round: every model proven, how many proven among the batch's
    real_add = Configurations.add_priced

    def add_seen(self, rc, pairs, *args, **kw):
        got = real_add(self, rc, pairs, *args, **kw)
        owning = [m for m in range(self.n_models) if len(self.columns(m))]
        handled = [m for m in owning if self.batch().flat.handled[m]]
        rounds.append((bool(np.isfinite(got.proven[owning]).all()), int(np.isfinite(got.proven[handled]).sum())))
        return got

    monkeypatch.setattr(Configurations, "add_priced", add_seen)
    fleet = to_fleet(generate(30, 8, seed=3))
    r = large.optimize_large(fleet, RULES, progress=lambda _: None, time_limit=6.0)
    assert r.placement is not None and len(rounds) >= 2, rounds
    # the first round, over the nearest pairs: the batch's, but for the few HiGHS prices for its pace
    assert not rounds[0][0] and 0 < rounds[0][1] <= recombine_mod.PACE_SAMPLE, rounds
    assert sum(proven for proven, _ in rounds) == 1, rounds  # the bounding round alone: HiGHS'
    assert all(n == 0 for proven, n in rounds[1:] if not proven), rounds  # the others: the batch's alone
    opt = exact(build_matrix(build_arrays(fleet, RULES), RULES, {}))
    assert r.bound <= opt + 1e-6 * abs(opt), (r.bound, opt)


def test_asked_for_its_pace_highs_prices_a_few_of_the_batchs_blocks_too(monkeypatch):
    """``add_priced(pace=True)``: HiGHS prices PACE_SAMPLE of the batch's blocks as well (the first of
    the round's order), and ``Priced`` says how long its MIPs there took: the pace at which the route
    guesses an exact round (HiGHS on every model), which the batch's own pace, 10-50 times faster a
    block, made M choose where its window held a third of that round. Not asked, none; HiGHS alone
    (``mip``), none of the batch's blocks to time."""
    monkeypatch.setenv("PLACER_PRICING", "batch")
    built = configurations(3)
    model = built.model
    rc = prices(built, 4)
    every = np.ones(model.arrays.n_pairs, dtype=bool)
    zero = np.zeros(model.n_cols)
    handled = built.batch().flat.handled
    plain = Configurations(model).add_priced(rc, every, zero, time.monotonic() + 60)
    assert plain.mip_models == 0 and plain.mip_seconds == 0.0
    assert np.isnan(plain.proven[handled]).all()
    paced = Configurations(model).add_priced(rc, every, zero, time.monotonic() + 60, pace=True)
    assert handled.sum() > recombine_mod.PACE_SAMPLE
    assert paced.mip_models == recombine_mod.PACE_SAMPLE and paced.mip_seconds > 0.0
    # HiGHS' proofs on those blocks alone (the others of the batch's prove nothing)
    assert int(np.isfinite(paced.proven[handled]).sum()) == recombine_mod.PACE_SAMPLE
    monkeypatch.setenv("PLACER_PRICING", "mip")
    alone = Configurations(model).add_priced(rc, every, zero, time.monotonic() + 60, pace=True)
    assert alone.mip_models == 0 and np.isfinite(alone.proven[handled]).all()


def read_block(configs: Configurations, m: int, csr) -> dict | None:
    """Model m's block read on its own, densely (the rules of ``BatchPricer``'s docstring): None
    where the batch must refuse it."""
    model = configs.model
    a = model.arrays
    cols = configs.columns(m)
    if not a.model_inference[m]:
        return None
    kinds = np.full(len(cols), -1)
    for k, name in enumerate(("x", "y", "u", "aux")):
        lo, hi = model.blocks.get(name, (0, 0))
        kinds[(cols >= lo) & (cols < hi)] = k
    if (kinds < 0).any() or not (kinds == 0).any():
        return None
    x_cols, y_cols, u_cols, aux_cols = (cols[kinds == k] for k in range(4))
    x0, y0, u0 = model.blocks["x"][0], model.blocks["y"][0], model.blocks["u"][0]
    routes = []
    for c in y_cols:
        p, d = x0 + a.route_pair[c - y0], u0 + a.route_dem[c - y0]
        if p not in x_cols or d not in u_cols:
            return None
        routes.append((int(np.flatnonzero(u_cols == d)[0]), int(np.flatnonzero(x_cols == p)[0])))
    if len(set(routes)) != len(routes):
        return None
    local, ptr = configs.local_rows()
    rows = local[ptr[m]:ptr[m + 1]]
    dense = csr[rows].toarray()
    if np.any(np.delete(dense, cols, axis=1)):
        return None
    on = dense[:, cols] != 0
    serve = set(model.serve_row[model.serve_row >= 0].tolist()) | set(
        range(model.demand_row0, model.demand_row0 + len(a.dem_model)))
    g, p = [], []
    for i, r in enumerate(rows.tolist()):
        if r in serve:
            continue
        if not on[i, kinds != 0].any():
            g.append((model.row_lo[r], model.row_hi[r], dense[i, x_cols]))
        elif on[i, kinds == 3].any():
            (k,) = np.flatnonzero(on[i] & (kinds == 3)) if (on[i] & (kinds == 3)).sum() == 1 else (None,)
            if (k is None or on[i, (kinds == 1) | (kinds == 2)].any() or on[:, k].sum() != 1
                    or dense[i, cols[k]] != -1.0 or np.isfinite(model.row_lo[r]) or model.integer[cols[k]]
                    or model.lb[cols[k]] != 0.0 or np.isfinite(model.ub[cols[k]])):
                return None
            p.append((int(cols[k]), model.row_hi[r], dense[i, x_cols]))
        elif on[i, kinds == 1].any():
            return None  # a row over routes beyond serve and demand
    if len(p) != len(aux_cols):
        return None
    return {"x": x_cols, "routes": routes, "u": u_cols, "g": g, "p": p}


def flat_block(flat: batchprice._Flat, m: int) -> dict:
    """Model m's part of the batch's flat arrays, in ``read_block``'s shape."""
    xs = np.flatnonzero(flat.x_m == m)
    rs = np.flatnonzero(flat.r_m == m)
    assert np.array_equal(flat.x_local[xs], np.arange(len(xs)))
    assert flat.x_ptr[m] == xs[0] and flat.x_ptr[m + 1] == xs[-1] + 1

    def rows(kind: str) -> list:
        ids = np.flatnonzero(getattr(flat, f"{kind}_m") == m)
        assert np.array_equal(getattr(flat, f"{kind}_local")[ids], np.arange(len(ids)))
        out = []
        for i in ids:
            on = getattr(flat, f"{kind}v_row") == i
            coef = np.zeros(len(xs))
            coef[getattr(flat, f"{kind}v_x")[on] - xs[0]] = getattr(flat, f"{kind}v_val")[on]
            head = (flat.g_lo[i], flat.g_hi[i]) if kind == "g" else (int(flat.p_col[i]), flat.p_h[i])
            out.append((*head, coef))
        return out

    return {"x": flat.x_col[xs], "routes": list(zip(flat.r_ent[rs].tolist(), (flat.r_x[rs] - xs[0]).tolist(), strict=True)),
            "u": flat.e_col[flat.e_m == m], "g": rows("g"), "p": rows("p")}


def assert_reads_every_block(configs: Configurations, csr) -> int:
    pricer = batchprice.BatchPricer(configs.model, configs.columns, configs.local_rows(), csr, configs.n_models)
    flat = pricer.flat
    for m in range(configs.n_models):
        want = read_block(configs, m, csr)
        assert bool(flat.handled[m]) == (want is not None), m
        if want is None:
            continue
        got = flat_block(flat, m)
        assert np.array_equal(got["x"], want["x"]) and np.array_equal(got["u"], want["u"]), m
        assert got["routes"] == want["routes"], m
        for kind in ("g", "p"):
            assert len(got[kind]) == len(want[kind]), (m, kind)
            for (a1, b1, c1), (a2, b2, c2) in zip(got[kind], want[kind], strict=True):
                assert a1 == a2 and b1 == b2 and np.array_equal(c1, c2), (m, kind)
    return int(flat.handled.sum())


def test_the_blocks_read_at_once_are_each_models_own(configs):
    """``BatchPricer`` reads every model's block in whole-array operations (at L 1.48 s one model at
    a time, 0.25 s at once): each model's part of its arrays is its block read on its own, the
    models it refuses those a reading by the rules refuses (training and batch models among them)."""
    handled = assert_reads_every_block(configs, configs.csr)
    a = configs.model.arrays
    assert 0 < handled < configs.n_models
    assert handled <= int(np.sum(a.model_inference[:configs.n_models]))
    assert configs.model.blocks["aux"][1] > configs.model.blocks["aux"][0]  # a penalty among them


@pytest.mark.parametrize("change", ["route in a replicas row", "penalty of -2", "penalty twice", "foreign column"])
def test_a_block_of_another_shape_is_refused_and_the_others_are_not(configs, change):
    """A model whose block the batch cannot read (a row over its routes beyond serve and demand, a
    penalty column not at -1 or in two rows, a column of another model in its rows) is refused,
    and no other model with it."""
    model = configs.model
    flat = configs.batch().flat
    local, ptr = configs.local_rows()
    csr = configs.csr.tolil(copy=True)
    aux0, aux1 = model.blocks["aux"]
    y0, y1 = model.blocks["y"]
    x0, x1 = model.blocks["x"]
    picked = None
    for m in np.flatnonzero(flat.handled).tolist():
        cols = configs.columns(m)
        rows = local[ptr[m]:ptr[m + 1]]
        dense = configs.csr[rows][:, cols].toarray()
        is_aux = (cols >= aux0) & (cols < aux1)
        pen = [i for i in range(len(rows)) if (dense[i, is_aux] == -1.0).any()]
        only_x = [i for i in range(len(rows)) if dense[i].any() and not dense[i, (cols < x0) | (cols >= x1)].any()]
        ys = cols[(cols >= y0) & (cols < y1)]
        if change == "route in a replicas row" and only_x and len(ys):
            csr[rows[only_x[0]], ys[0]] = 1.0
        elif change == "penalty of -2" and pen:
            csr[rows[pen[0]], cols[is_aux][0]] = -2.0
        elif change == "penalty twice" and pen and only_x:
            k = cols[np.flatnonzero(is_aux & (dense[pen[0]] == -1.0))[0]]
            csr[rows[only_x[0]], k] = -1.0
        elif change == "foreign column" and only_x:
            other = configs.columns((m + 1) % configs.n_models)
            csr[rows[only_x[0]], other[0]] = 1.0
        else:
            continue
        picked = m
        break
    assert picked is not None
    csr = csr.tocsr()
    changed = batchprice.BatchPricer(model, configs.columns, (local, ptr), csr, configs.n_models).flat.handled
    assert not changed[picked]
    assert np.array_equal(np.delete(changed, picked), np.delete(flat.handled, picked))
    assert_reads_every_block(configs, csr)
