"""Pricing every inference model's block at once, without a MIP (``recombine.pricing_mode``: alone
where the recombination master is small, with HiGHS after it on the answers farthest from
``BatchPricer.lower`` where it is large; ``PLACER_PRICING=batch|hybrid|mip`` forces one).

The pricing problem of ``Configurations.add_priced`` for one inference model is small and has a
shape of its own: integer replicas per pair (``x``), continuous routes from the demand entries to
the pairs (``y``, at most ``thr * x`` a pair), unmet demand (``u``) at its price, rows over the
replicas alone (min/max replicas, a spot cap: ``lo <= G x <= hi``), penalty rows of a preferred
rule (``s >= P x - h``, ``s`` priced) and the cover cuts, valid for every integer answer.
``BatchPricer.price`` answers it for many models at once by a local search over the replica
counts: each model's kept pairs (at most MAX_PAIRS: beyond, half the cheapest per unit of rate,
half the cheapest serving alone what their routes reach; the plan's and those with a lower
bound always) are the columns of arrays padded to the largest block, so that each step of the search is one numpy
operation over every model. Starts: the lower bounds, the plan's replicas, each entry on its
cheapest pair per unit of rate rounded up (these two also with every replica of negative reduced
cost added, up to its bounds: the duals can make a replica pay on its own), each pair alone with the demand its routes reach, and
a spot cap's mixes of the cheapest spot and other pairs; moves: one replica more, one less, one
moved, two more (one on a pair near the cheapest), the best taken while it pays, for every model
at once (a model that stops leaves the arrays). Each candidate's routes are filled entry by
entry, cheapest route first, in every order of up to MAX_ENTRIES entries (exact for one entry).

It proves nothing: its answers are columns, never a bound. A model whose block holds other
columns or rows (training and batch models, gangs, churn, a rule's own variables) is left to
HiGHS, and so is every answer that breaks a row or a bound of its block (each checked).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations
from typing import Any

import numpy as np

from placer.optimizer.arrays import BoolArray, FloatArray, IntArray
from placer.optimizer.matrix import ROW_TOLERANCE, MatrixModel

MAX_PAIRS = 12  # pairs per model the search moves over (the cheapest per unit of rate, and those it must keep)
BY_ALONE = True  # half the pairs kept by their cost serving alone what they reach, half per unit of rate
MAX_ENTRIES = 3  # demand entries whose every filling order is tried (beyond: their own order alone)
MAX_MOVES = 40  # local search steps at most
NEAR = 3  # the pairs cheapest per unit of rate, one of which a "two more" move takes
MOVE3 = False  # one for two and two for one among the moves
MIX_PAIRS = 3  # the spot and the other pairs cheapest per unit of rate a spot cap's starts mix
K_BUCKETS = (4, 6, 8, 10)  # models searched together: those with as many entries and kept pairs up to each of these
CHUNK = 4_000_000  # candidate x pair cells per evaluation at most (memory)
_X, _Y, _U, _AUX, _OTHER = range(5)  # a block's columns by kind


@dataclass
class _Flat:
    """Every handled model's block, concatenated (``m``: the model of each entry)."""

    handled: BoolArray  # per model
    x_m: IntArray  # per replica column: model, column, thr, spot
    x_col: IntArray
    x_thr: FloatArray
    x_spot: BoolArray
    x_local: IntArray  # its index among its model's pairs
    x_ptr: IntArray  # per model, its pairs' range in the x arrays
    r_m: IntArray  # per route: model, column, entry (local), pair (index into the x arrays)
    r_col: IntArray
    r_ent: IntArray
    r_x: IntArray
    e_m: IntArray  # per demand entry: model, its unmet column, rate, index among its model's
    e_col: IntArray
    e_rate: FloatArray
    e_local: IntArray
    g_m: IntArray  # per row over replicas alone: model, index among its model's, lo, hi
    g_local: IntArray
    g_lo: FloatArray
    g_hi: FloatArray
    gv_row: IntArray  # its entries: row (index into the g arrays), pair (index into x), value
    gv_x: IntArray
    gv_val: FloatArray
    p_m: IntArray  # per penalty row: model, local index, its priced column, h
    p_local: IntArray
    p_col: IntArray
    p_h: FloatArray
    pv_row: IntArray
    pv_x: IntArray
    pv_val: FloatArray


@dataclass
class BatchStats:
    handled: int = 0  # models the search answered and whose answers passed every check
    refused: int = 0  # models whose block it does not take
    failed: int = 0  # answers that broke a row or bound (left to HiGHS)


class BatchPricer:
    """The handled blocks' shapes (built once), and ``price``, which answers many models at once."""

    def __init__(self, model: MatrixModel, columns: Any, local_rows: tuple[IntArray, IntArray], csr: Any,
                 n_models: int) -> None:
        """``columns(m)``: model m's columns in the order its configurations use; ``local_rows``:
        ``Configurations.local_rows()``; ``csr``: the model's matrix, CSR."""
        self.model = model
        self.columns = columns
        self.local, self.row_ptr = local_rows
        self.csr = csr
        self.n_models = n_models
        self.stats = BatchStats()
        self.flat = self._build_all()
        # per model, the last ``price``'s estimate from below of its answer at its reduced costs
        # (NaN: none). Not a bound (integrality and every row but demand's dropped, and a replica of
        # negative reduced cost counted for its share only): how far an answer may be from the
        # best, for ``recombine``'s hybrid pricing to hand the farthest to HiGHS
        self.lower: FloatArray = np.full(n_models, np.nan)

    # ---- shapes, once --------------------------------------------------------------------
    def _build_all(self) -> _Flat:
        """Every model's block read at once, as whole-array operations over the columns and the
        rows of single models: a model is handled when its columns are replicas, routes, unmet
        demand and penalties alone, each route joins a pair and an entry of its own model once,
        and each of its rows beyond serve and demand is over its replicas alone, a cover cut
        (replicas and unmet demand) or a penalty (the replicas' share over its bound, in one
        priced column of its own)."""
        model = self.model
        a = model.arrays
        n = self.n_models
        serve = np.zeros(model.n_rows, dtype=bool)
        serve[model.serve_row[model.serve_row >= 0]] = True
        serve[model.demand_row0:model.demand_row0 + len(a.dem_model)] = True
        # the columns, model by model (each model's ascending); their kind: x, y, u, aux, other
        per_model = [self.columns(m) for m in range(n)]
        lens = np.array([len(c) for c in per_model], dtype=np.int64)
        cols = np.concatenate(per_model).astype(np.int64) if per_model else np.zeros(0, dtype=np.int64)
        c_m = np.repeat(np.arange(n, dtype=np.int64), lens)
        kind = np.full(len(cols), _OTHER, dtype=np.int64)
        for k, name in enumerate(("x", "y", "u", "aux")):
            lo_, hi_ = model.blocks.get(name, (0, 0))
            kind[(cols >= lo_) & (cols < hi_)] = k
        count = np.zeros((_OTHER + 1, n), dtype=np.int64)
        np.add.at(count, (kind, c_m), 1)
        inference = np.zeros(n, dtype=bool)
        inf_m = np.asarray(a.model_inference, dtype=bool)[:n]
        inference[:len(inf_m)] = inf_m
        ok = inference & (count[_OTHER] == 0) & (count[_X] > 0)
        # per column of a model: its model, its kind, and its index among its model's of that kind
        owner = np.full(model.n_cols, -1, dtype=np.int64)
        owner[cols] = c_m
        col_kind = np.full(model.n_cols, _OTHER, dtype=np.int64)
        col_kind[cols] = kind
        local = np.zeros(len(cols), dtype=np.int64)
        for k in range(_OTHER):
            sel = np.flatnonzero(kind == k)
            local[sel] = np.arange(len(sel)) - np.searchsorted(c_m[sel], c_m[sel])
        col_local = np.full(model.n_cols, -1, dtype=np.int64)
        col_local[cols] = local

        def refuse(models: IntArray) -> None:
            ok[models] = False

        # routes: each joins a pair and an entry of its own model, each (entry, pair) once
        x0, y0, u0 = model.blocks["x"][0], model.blocks["y"][0], model.blocks["u"][0]
        ys = np.flatnonzero(kind == _Y)
        y_m = c_m[ys]
        route = cols[ys] - y0
        p_col, d_col = x0 + a.route_pair[route], u0 + a.route_dem[route]
        refuse(y_m[(owner[p_col] != y_m) | (owner[d_col] != y_m)])
        r_pair, r_ent = col_local[p_col], col_local[d_col]  # per route: its pair and entry, local
        key = r_ent * (count[_X][y_m] + 1) + r_pair
        order = np.lexsort((key, y_m))
        twice = (y_m[order][1:] == y_m[order][:-1]) & (key[order][1:] == key[order][:-1])
        refuse(y_m[order][1:][twice])
        # the rows of single models: every entry on its own model's columns; each row beyond serve
        # and demand over replicas alone (G), a penalty (P), a cover cut (skipped), or refused
        row_m = np.repeat(np.arange(n, dtype=np.int64), np.diff(self.row_ptr))
        rsel = ok[row_m]
        R, R_m = self.local[rsel], row_m[rsel]
        sub = self.csr[R]
        nz_r = np.repeat(np.arange(len(R), dtype=np.int64), np.diff(sub.indptr))
        nz_c = sub.indices.astype(np.int64)
        nz_v = sub.data
        refuse(R_m[nz_r[owner[nz_c] != R_m[nz_r]]])
        on = nz_v != 0
        nk = col_kind[nz_c]

        def per_row(mask: BoolArray) -> IntArray:
            return np.bincount(nz_r[mask], minlength=len(R))

        other = ~serve[R]
        n_aux = per_row(on & (nk == _AUX))
        g_row = other & (per_row(on & (nk != _X)) == 0)
        p_row = other & (n_aux > 0)
        refuse(R_m[other & (n_aux == 0) & (per_row(on & (nk == _Y)) > 0)])  # a row over routes
        # a penalty: one priced column (-1, continuous, from 0 up, in this row alone), the rest replicas
        aux_nz = np.flatnonzero(on & (nk == _AUX))
        aux_cols, aux_rows_of = np.unique(nz_c[aux_nz], return_counts=True)
        pa = aux_nz[p_row[nz_r[aux_nz]]]  # the penalty rows' priced entries
        pen_c = np.zeros(len(R), dtype=np.int64)
        pen_c[nz_r[pa]] = nz_c[pa]
        pen_v = np.zeros(len(R))
        pen_v[nz_r[pa]] = nz_v[pa]
        pr = np.flatnonzero(p_row)
        pc = pen_c[pr]
        good = ((n_aux[pr] == 1) & (per_row(on & ((nk == _Y) | (nk == _U)))[pr] == 0) & (pen_v[pr] == -1.0)
                & np.isinf(model.row_lo[R[pr]]) & ~model.integer[pc] & (model.lb[pc] == 0.0)
                & np.isposinf(model.ub[pc]) & (aux_rows_of[np.searchsorted(aux_cols, pc)] == 1))
        refuse(R_m[pr[~good]])
        # every priced column of a model in one penalty row
        refuse(np.flatnonzero(np.bincount(R_m[pr], minlength=n) != count[_AUX]))
        handled = ok
        # the handled models' parts, in the order of their columns and rows
        x_ptr = np.zeros(n + 1, dtype=np.int64)
        x_ptr[1:] = np.cumsum(np.where(handled, count[_X], 0))

        def kind_of(k: int) -> IntArray:
            return np.flatnonzero((kind == k) & handled[c_m])

        xs, us = kind_of(_X), kind_of(_U)
        yh = handled[y_m]  # the handled models' routes, among every route above
        r_m = y_m[yh]
        keep = handled[R_m]

        def rows_of(mask: BoolArray) -> tuple[IntArray, IntArray, IntArray, IntArray, IntArray, FloatArray]:
            """The handled rows in ``mask``: their index, model and index among their model's, and
            their entries on replicas: row (into these rows), pair (into the x arrays), value."""
            rows = np.flatnonzero(mask & keep)
            rm = R_m[rows]
            rl = np.arange(len(rows)) - np.searchsorted(rm, rm)
            at = np.full(len(R), -1, dtype=np.int64)
            at[rows] = np.arange(len(rows))
            ent = np.flatnonzero((at[nz_r] >= 0) & on & (nk == _X))
            return (rows, rm, rl, at[nz_r[ent]], x_ptr[R_m[nz_r[ent]]] + col_local[nz_c[ent]],
                    nz_v[ent].astype(float))

        g_rows, g_m, g_local, gv_row, gv_x, gv_val = rows_of(g_row)
        p_rows, p_m, p_local, pv_row, pv_x, pv_val = rows_of(p_row)
        return _Flat(handled=handled, x_m=c_m[xs], x_col=cols[xs], x_thr=a.pair_thr[cols[xs] - x0].astype(float),
                     x_spot=a.pool_spot[a.pair_pool[cols[xs] - x0]], x_local=local[xs], x_ptr=x_ptr,
                     r_m=r_m, r_col=cols[ys[yh]], r_ent=r_ent[yh], r_x=x_ptr[r_m] + r_pair[yh],
                     e_m=c_m[us], e_col=cols[us], e_rate=a.dem_rate[cols[us] - u0], e_local=local[us],
                     g_m=g_m, g_local=g_local, g_lo=model.row_lo[R[g_rows]].astype(float),
                     g_hi=model.row_hi[R[g_rows]].astype(float), gv_row=gv_row, gv_x=gv_x, gv_val=gv_val,
                     p_m=p_m, p_local=p_local, p_col=pen_c[p_rows], p_h=model.row_hi[R[p_rows]].astype(float),
                     pv_row=pv_row, pv_x=pv_x, pv_val=pv_val)

    # ---- one round -------------------------------------------------------------------------
    def price(self, models: IntArray, rc: FloatArray, pairs: BoolArray, v: FloatArray) -> dict[int, FloatArray]:
        """Each of ``models``' least-cost configuration at reduced costs ``rc`` the search finds,
        over its ``pairs`` alone (a pair left out keeps no replica, unless its lower bound says
        otherwise), its values on ``columns(m)``; the models it does not handle, or whose answer
        breaks a row or bound of the block, are left out (HiGHS prices them)."""
        f = self.flat
        model = self.model
        models = np.asarray(models, dtype=np.int64)
        take = models[f.handled[models]]
        self.stats.refused += len(models) - len(take)
        if not len(take):
            return {}
        # the models' pairs, each with its rank among its model's: what must stay, then per unit of rate
        slot_of = np.full(self.n_models, -1, dtype=np.int64)
        slot_of[take] = np.arange(len(take))
        x0 = model.blocks["x"][0]
        xs = np.flatnonzero(slot_of[f.x_m] >= 0)
        xcol = f.x_col[xs]
        lb, ub = model.lb[xcol], model.ub[xcol]
        plan = np.round(v[xcol])
        keep = pairs[xcol - x0] | (lb > 0)
        a_rc = rc[xcol]
        # per pair, the cheapest route per unit of rate that pays against the entry's unmet price
        where_x = np.full(len(f.x_m), -1, dtype=np.int64)
        where_x[xs] = np.arange(len(xs))
        rs = np.flatnonzero(where_x[f.r_x] >= 0)
        rx = where_x[f.r_x[rs]]
        # entries of the taken models: index into f.e arrays by (model, local)
        e_ptr = np.zeros(self.n_models + 1, dtype=np.int64)
        np.add.at(e_ptr, f.e_m + 1, 1)
        e_ptr = np.cumsum(e_ptr)
        e_index = e_ptr[f.r_m[rs]] + f.r_ent[rs]
        r_rc = rc[f.r_col[rs]]
        cu = rc[f.e_col]
        pays = keep[rx] & (r_rc < cu[e_index])
        thr = f.x_thr[xs]
        per_rate = np.full(len(xs), np.inf)
        good = pays & (thr[rx] > 0)
        np.minimum.at(per_rate, rx[good], r_rc[good] + a_rc[rx[good]] / thr[rx[good]])
        must = (lb > 0) | ((plan > 0) & keep)
        bslot = slot_of[f.x_m[xs]]
        # per model, an estimate from below of its answer: each entry's rate at its cheapest route
        # per unit (a replica's share of its pair included), or unmet (``lower``)
        per_unit = cu.copy()
        np.minimum.at(per_unit, e_index[good], r_rc[good] + a_rc[rx[good]] / thr[rx[good]])
        self.lower[take] = np.bincount(f.e_m, weights=f.e_rate * per_unit, minlength=self.n_models)[take]

        def ranked(score: FloatArray) -> IntArray:
            """Each pair's rank among its model's by ``score`` (NaN last)."""
            order = np.lexsort((score, bslot))
            first = np.searchsorted(bslot[order], bslot[order])
            rank: IntArray = np.empty(len(xs), dtype=np.int64)
            rank[order] = np.arange(len(xs)) - first
            return rank

        # the pairs the search moves over: half the cheapest per unit of rate, half the cheapest
        # serving alone all the demand their paying routes reach (one large replica can serve two
        # entries that the cheapest per unit of rate serve with one replica each), and the plan's
        rate_r = f.e_rate[e_index]
        reach = np.bincount(rx[good], weights=rate_r[good], minlength=len(xs))
        gain = np.bincount(rx[good], weights=((r_rc - cu[e_index]) * rate_r)[good], minlength=len(xs))
        alone = np.where(reach > 0, np.ceil(reach / np.where(thr > 0, thr, 1.0) - 1e-9) * a_rc + gain, np.inf)
        eligible = keep | must
        half = MAX_PAIRS // 2 if BY_ALONE else MAX_PAIRS
        near_rate = ranked(np.where(eligible, per_rate, np.nan)) < half
        near_alone = ranked(np.where(eligible, alone, np.nan)) < MAX_PAIRS - half
        # a replica of negative reduced cost pays on its own, as many as its bound allows (the
        # master's duals can price capacity so): those pairs are kept first, most paying first
        free = keep & (a_rc < 0)
        score = np.where(must, -np.inf, np.where(free, -1e12 + a_rc * np.minimum(ub, 1e9), per_rate))
        few = (np.bincount(bslot[eligible], minlength=len(take)) <= MAX_PAIRS)[bslot]  # all kept
        score = np.where(eligible & (must | free | few | near_rate | near_alone), score, np.nan)
        rank = ranked(score)
        kept = ~np.isnan(score) & (rank < MAX_PAIRS)
        if np.any(~np.isfinite(ub[kept])):
            bad = np.unique(slot_of[f.x_m[xs[kept & ~np.isfinite(ub)]]])
            kept &= ~np.isin(slot_of[f.x_m[xs]], bad)
        # a model whose plan or lower bounds need a pair beyond its kept ones starts from the lower bounds
        B = len(take)
        K = max(1, int(rank[kept].max()) + 1) if kept.any() else 1
        kb, kk = bslot[kept], rank[kept]
        A = np.zeros((B, K))
        THR = np.zeros((B, K))
        LB = np.zeros((B, K))
        UB = np.zeros((B, K))
        SPOT = np.zeros((B, K), dtype=bool)
        PLAN = np.zeros((B, K))
        COL = np.full((B, K), -1, dtype=np.int64)
        A[kb, kk], THR[kb, kk], LB[kb, kk], UB[kb, kk] = a_rc[kept], thr[kept], lb[kept], ub[kept]
        SPOT[kb, kk], PLAN[kb, kk], COL[kb, kk] = f.x_spot[xs][kept], plan[kept], xcol[kept]
        plan_fits = np.ones(B, dtype=bool)
        plan_fits[bslot[(plan > 0) & ~kept]] = False
        # entries
        es = np.flatnonzero(slot_of[f.e_m] >= 0)
        eb, el = slot_of[f.e_m[es]], f.e_local[es]
        E = int(el.max()) + 1 if len(es) else 0
        RATE = np.zeros((B, E))
        CU = np.zeros((B, E))
        RATE[eb, el], CU[eb, el] = f.e_rate[es], cu[es]
        n_ent = np.bincount(eb, minlength=B)
        # routes to kept pairs that pay: cost per unit, inf where none
        BR = np.full((B, E, K), np.inf)
        RCOL = np.full((B, E, K), -1, dtype=np.int64)
        ok_r = pays & kept[rx]
        rb, re_, rk = bslot[rx[ok_r]], f.r_ent[rs][ok_r], rank[rx[ok_r]]
        BR[rb, re_, rk] = r_rc[ok_r]
        RCOL[rb, re_, rk] = f.r_col[rs][ok_r]
        # rows over replicas alone, and penalties, padded
        gs = np.flatnonzero(slot_of[f.g_m] >= 0)
        Rg = int(f.g_local[gs].max()) + 1 if len(gs) else 0
        G = np.zeros((B, Rg, K))
        GLO = np.full((B, Rg), -np.inf)
        GHI = np.full((B, Rg), np.inf)
        GLO[slot_of[f.g_m[gs]], f.g_local[gs]] = f.g_lo[gs]
        GHI[slot_of[f.g_m[gs]], f.g_local[gs]] = f.g_hi[gs]
        gvs = np.flatnonzero(slot_of[f.g_m[f.gv_row]] >= 0)
        gx = where_x[f.gv_x[gvs]]
        # a row's entry on a pair left out: that pair holds 0 (no term), unless kept
        on = kept[gx]
        G[slot_of[f.g_m[f.gv_row[gvs]]][on], f.g_local[f.gv_row[gvs]][on], rank[gx][on]] = f.gv_val[gvs][on]
        ps = np.flatnonzero(slot_of[f.p_m] >= 0)
        Rp = int(f.p_local[ps].max()) + 1 if len(ps) else 0
        P = np.zeros((B, Rp, K))
        PH = np.zeros((B, Rp))
        SRC = np.zeros((B, Rp))
        PH[slot_of[f.p_m[ps]], f.p_local[ps]] = f.p_h[ps]
        SRC[slot_of[f.p_m[ps]], f.p_local[ps]] = rc[f.p_col[ps]]
        pvs = np.flatnonzero(slot_of[f.p_m[f.pv_row]] >= 0)
        px = where_x[f.pv_x[pvs]]
        on = kept[px]
        P[slot_of[f.p_m[f.pv_row[pvs]]][on], f.p_local[f.pv_row[pvs]][on], rank[px][on]] = f.pv_val[pvs][on]
        negative_penalty = np.any(SRC < 0, axis=1) if Rp else np.zeros(B, dtype=bool)

        x_best = np.zeros((B, K))
        routes = np.zeros((B, E, K))
        # models by their number of entries: fewer entries, fewer filling orders
        top = min(E, MAX_ENTRIES)
        n_kept = (COL >= 0).sum(axis=1)
        k_class = np.searchsorted(np.array(K_BUCKETS), n_kept)
        e_class = np.minimum(n_ent, top)
        groups = [np.flatnonzero((e_class == e) & (k_class == k)) for e in range(top + 1) for k in range(len(K_BUCKETS) + 1)]
        for g in groups:
            if not len(g):
                continue
            e_g = int(n_ent[g].max())
            k_g = max(1, int(np.max((COL[g] >= 0).sum(axis=1))))  # kept pairs are the first slots
            prob = _Problem(A=A[g, :k_g], THR=THR[g, :k_g], LB=LB[g, :k_g], UB=UB[g, :k_g], SPOT=SPOT[g, :k_g],
                            RATE=RATE[g, :e_g], CU=CU[g, :e_g], BR=BR[g, :e_g, :k_g], G=G[g, :, :k_g],
                            GLO=GLO[g], GHI=GHI[g], P=P[g, :, :k_g], PH=PH[g], SRC=SRC[g])
            xg, og = prob.search(PLAN[g, :k_g], plan_fits[g])
            x_best[g, :k_g] = xg
            # the answers' routes, filled in each model's best order
            rg = np.zeros((len(g), e_g, k_g))
            prob.fill(xg, og, rg)
            routes[g, :e_g, :k_g] = rg
        z = np.zeros(model.n_cols)
        hit = COL >= 0
        z[COL[hit]] = x_best[hit]
        rh = RCOL >= 0
        z[RCOL[rh]] = routes[rh]
        served = routes.sum(axis=2)
        z[f.e_col[es]] = np.maximum(0.0, RATE[eb, el] - served[eb, el])
        if Rp:
            s = np.maximum(0.0, np.einsum("brk,bk->br", P, x_best) - PH)
            z[f.p_col[ps]] = s[slot_of[f.p_m[ps]], f.p_local[ps]]
        ok = ~negative_penalty
        # bounds and integrality of every column of the block, then every row of it
        owner_cols = [self.columns(int(m)) for m in take]
        lens = np.array([len(c) for c in owner_cols], dtype=np.int64)
        allc = np.concatenate(owner_cols) if owner_cols else np.zeros(0, dtype=np.int64)
        cb = np.repeat(np.arange(B), lens)
        zc = z[allc]
        bad = (zc < model.lb[allc] - 1e-9) | (zc > model.ub[allc] + 1e-9)
        bad |= model.integer[allc] & (np.abs(zc - np.round(zc)) > 1e-9)
        ok &= np.bincount(cb[bad], minlength=B) == 0
        rows = np.concatenate([self.local[self.row_ptr[m]:self.row_ptr[m + 1]] for m in take.tolist()])
        rlen = np.array([self.row_ptr[m + 1] - self.row_ptr[m] for m in take.tolist()], dtype=np.int64)
        sub = self.csr[rows]
        act = sub @ z
        size = np.maximum(1.0, abs(sub) @ np.abs(z))
        broken = (act < model.row_lo[rows] - ROW_TOLERANCE * size) | (act > model.row_hi[rows] + ROW_TOLERANCE * size)
        ok &= np.bincount(np.repeat(np.arange(B), rlen)[broken], minlength=B) == 0
        out: dict[int, FloatArray] = {}
        starts = np.concatenate([[0], np.cumsum(lens)])
        for i in np.flatnonzero(ok).tolist():
            out[int(take[i])] = zc[starts[i]:starts[i + 1]].copy()
        self.stats.handled += len(out)
        self.stats.failed += B - len(out)
        return out


@dataclass
class _Problem:
    """A group of models' pricing problems, padded: B models x K pairs x E entries."""

    A: FloatArray  # (B, K) reduced cost of a replica
    THR: FloatArray  # (B, K)
    LB: FloatArray
    UB: FloatArray  # 0 on a padded pair
    SPOT: BoolArray
    RATE: FloatArray  # (B, E)
    CU: FloatArray  # (B, E) unmet's reduced cost per unit
    BR: FloatArray  # (B, E, K) route's reduced cost per unit (inf: none that pays)
    G: FloatArray  # (B, Rg, K)
    GLO: FloatArray
    GHI: FloatArray
    P: FloatArray  # (B, Rp, K)
    PH: FloatArray
    SRC: FloatArray  # (B, Rp)

    def __post_init__(self) -> None:
        E = self.RATE.shape[1]
        self.orders = list(permutations(range(E))) if E <= MAX_ENTRIES else [tuple(range(E))]
        # per entry, which of its routes fill before which (cheapest first, ties by pair): a
        # route's capacity taken before it is its predecessors' (cap @ PREC), no sort per candidate
        self.VALID = np.isfinite(self.BR)
        self.BR0 = np.where(self.VALID, self.BR, 0.0)
        rank = np.argsort(np.argsort(self.BR, axis=2, kind="stable"), axis=2, kind="stable")
        self.PREC = ((rank[:, :, :, None] < rank[:, :, None, :]) & self.VALID[:, :, :, None]).astype(float)

    def _route(self, X: FloatArray, idx: IntArray, order: tuple[int, ...],
               routes: FloatArray | None = None) -> FloatArray:
        """Cost of routing candidates ``X`` (n, C, K) of models ``idx`` entry by entry in ``order``."""
        cap = X * self.THR[idx][:, None, :]
        cost = np.zeros(X.shape[:2])
        for e in order:
            q = self.RATE[idx, e][:, None, None]
            before = cap @ self.PREC[idx, e]
            served = np.minimum(np.maximum(q - before, 0.0), cap) * self.VALID[idx, e][:, None, :]
            cost += (np.einsum("nck,nk->nc", served, self.BR0[idx, e])
                     + self.CU[idx, e][:, None] * (q[:, :, 0] - served.sum(axis=2)))
            cap = cap - served
            if routes is not None:
                routes[idx, e] = served[:, 0]
        return cost

    def evaluate(self, X: FloatArray, idx: IntArray) -> tuple[FloatArray, FloatArray, IntArray]:
        """Candidates ``X`` (n, C, K) of models ``idx``: cost, rows' violation, best filling order."""
        n, C, _ = X.shape
        costs = np.stack([self._route(X, idx, o) for o in self.orders]) if self.orders else np.zeros((1, n, C))
        which = np.argmin(costs, axis=0)
        cost = np.take_along_axis(costs, which[None], axis=0)[0] + np.einsum("nck,nk->nc", X, self.A[idx])
        viol = np.zeros((n, C))
        if self.G.shape[1]:
            R = np.einsum("nck,nrk->ncr", X, self.G[idx])
            viol = (np.maximum(0.0, self.GLO[idx][:, None, :] - R)
                    + np.maximum(0.0, R - self.GHI[idx][:, None, :])).sum(axis=2)
        if self.P.shape[1]:
            S = np.maximum(0.0, np.einsum("nck,nrk->ncr", X, self.P[idx]) - self.PH[idx][:, None, :])
            cost += np.einsum("ncr,nr->nc", S, self.SRC[idx])
        lb, ub = self.LB[idx][:, None, :], self.UB[idx][:, None, :]
        out = (lb > X) | (ub < X)
        viol = np.where(out.any(axis=2), np.inf, np.round(viol, 9))
        return cost, viol, which

    def _starts(self, plan: FloatArray, plan_fits: BoolArray) -> FloatArray:
        B, K = self.A.shape
        LB, UB = self.LB, self.UB
        starts = [LB, np.where(plan_fits[:, None], np.clip(plan, LB, UB), LB), self._free(LB, UB)]
        thr = np.where(self.THR > 0, self.THR, np.inf)
        # per entry, its cheapest pair per unit of rate (route and replica), the demand on it rounded up
        w = self.BR + (self.A / thr)[:, None, :]
        best = np.argmin(w, axis=2)
        pays = np.take_along_axis(w, best[:, :, None], axis=2)[:, :, 0] < self.CU
        flow = np.zeros((B, K))
        bi = np.repeat(np.arange(B), self.RATE.shape[1])
        np.add.at(flow, (bi, best.ravel()), np.where(pays, self.RATE, 0.0).ravel())
        starts.append(np.clip(np.ceil(flow / thr - 1e-9), LB, UB))
        # and from the plan's and that one, every replica of negative reduced cost added
        starts.extend([self._free(starts[1], UB), self._free(starts[3], UB)])
        # each pair alone with the demand its routes reach
        reach = (np.isfinite(self.BR) * self.RATE[:, :, None]).sum(axis=1)
        alone = np.clip(np.ceil(reach / thr - 1e-9), 0, None)
        for j in range(K):
            s = LB.copy()
            s[:, j] = np.maximum(s[:, j], alone[:, j])
            starts.append(np.clip(s, LB, UB))
        # a spot cap's mix: the cheapest spot and other pairs per unit of rate, as many replicas on each
        per_rate = w.min(axis=1, initial=np.inf)
        total = self.RATE.sum(axis=1)
        by_spot = np.argsort(np.where(self.SPOT, per_rate, np.inf), axis=1, kind="stable")
        by_other = np.argsort(np.where(~self.SPOT, per_rate, np.inf), axis=1, kind="stable")
        for spot_rank in range(min(MIX_PAIRS, K)):
            for other_rank in range(min(MIX_PAIRS, K)):
                si, oj = by_spot[:, spot_rank], by_other[:, other_rank]
                r = np.arange(B)
                usable = np.isfinite(per_rate[r, si]) & np.isfinite(per_rate[r, oj])
                both = np.ceil(total / (thr[r, si] + thr[r, oj]) - 1e-9)
                both = np.where(usable & np.isfinite(both), both, 0.0)
                for extra in (0.0, 1.0):
                    s = LB.copy()
                    s[r, si] = np.maximum(s[r, si], both)
                    s[r, oj] = np.maximum(s[r, oj], both + extra * usable)
                    starts.append(np.clip(s, LB, UB))
        return np.stack(starts, axis=1)

    def _free(self, base: FloatArray, UB: FloatArray) -> FloatArray:
        """``base`` with replicas of negative reduced cost added, each paying on its own: the most
        paying pair first, as many as its bound and the rows' upper bounds (max replicas, a spot
        cap) leave, then the next."""
        B = self.A.shape[0]
        x = base.copy()
        r = np.arange(B)
        G, hi = self.G, self.GHI
        for j in np.argsort(self.A, axis=1, kind="stable").T:
            a = self.A[r, j]
            room = UB[r, j] - x[r, j]
            if G.shape[1]:
                g = G[r, :, j]  # (B, Rg): this pair's coefficient in each row
                used = np.einsum("brk,bk->br", G, x)
                with np.errstate(divide="ignore", invalid="ignore"):
                    cap = np.where(g > 0, np.floor((hi - used) / np.where(g > 0, g, 1.0) + 1e-9), np.inf)
                room = np.minimum(room, cap.min(axis=1, initial=np.inf))
            x[r, j] += np.where(a < 0, np.maximum(room, 0.0), 0.0)
        return x

    def _moves(self, K: int) -> FloatArray:
        """The moves, as changes (rows) over K pairs: one more, one less, one moved, two more
        (one of them on one of the NEAR first pairs, the cheapest per unit of rate)."""
        moves = [np.eye(K), -np.eye(K)]
        i, j = np.nonzero(~np.eye(K, dtype=bool))
        d = np.zeros((len(i), K))
        d[np.arange(len(i)), i] -= 1
        d[np.arange(len(i)), j] += 1
        moves.append(d)
        i, j = np.nonzero(np.triu(np.ones((min(NEAR, K), K), dtype=bool)))
        d = np.zeros((len(i), K))
        np.add.at(d, (np.arange(len(i)), i), 1)
        np.add.at(d, (np.arange(len(i)), j), 1)
        moves.append(d)
        if MOVE3:
            # one for two (one of the two on a near pair) and two for one (onto a near pair): other
            # sizes of replicas for the same rate
            near = min(NEAR, K)
            i3, j3, k3 = np.meshgrid(np.arange(K), np.arange(near), np.arange(K), indexing="ij")
            ok = (i3 != j3) & (i3 != k3) & (j3 <= k3)
            d = np.zeros((int(ok.sum()), K))
            r = np.arange(len(d))
            np.add.at(d, (r, i3[ok]), -1)
            np.add.at(d, (r, j3[ok]), 1)
            np.add.at(d, (r, k3[ok]), 1)
            moves.append(d)
            i3, j3, k3 = np.meshgrid(np.arange(K), np.arange(K), np.arange(near), indexing="ij")
            ok = (i3 < j3) & (k3 != i3) & (k3 != j3)
            d = np.zeros((int(ok.sum()), K))
            r = np.arange(len(d))
            np.add.at(d, (r, i3[ok]), -1)
            np.add.at(d, (r, j3[ok]), -1)
            np.add.at(d, (r, k3[ok]), 1)
            moves.append(d)
        out: FloatArray = np.concatenate(moves)
        return out

    def search(self, plan: FloatArray, plan_fits: BoolArray) -> tuple[FloatArray, IntArray]:
        """Each model's best replicas the search finds, and its filling order."""
        B, K = self.A.shape
        allm = np.arange(B)
        S = self._starts(plan, plan_fits)
        cost, viol, which = self._evaluate_chunked(S, allm)
        pick = _lex_best(cost, viol)
        x = S[allm, pick]
        best_c, best_v, best_o = cost[allm, pick], viol[allm, pick], which[allm, pick]
        D = self._moves(K)
        active = allm
        for _ in range(MAX_MOVES):
            if not len(active):
                break
            Y = x[active][:, None, :] + D[None]
            c, vi, wh = self._evaluate_chunked(Y, active)
            t = _lex_best(c, vi)
            r = np.arange(len(active))
            ct, vt = c[r, t], vi[r, t]
            better = (vt < best_v[active]) | ((vt == best_v[active]) & (ct < best_c[active] - 1e-9))
            moved = active[better]
            x[moved] = Y[r[better], t[better]]
            best_c[moved], best_v[moved], best_o[moved] = ct[better], vt[better], wh[r[better], t[better]]
            active = moved
        return x, best_o

    def _evaluate_chunked(self, X: FloatArray, idx: IntArray) -> tuple[FloatArray, FloatArray, IntArray]:
        n, C, K = X.shape
        step = max(1, CHUNK // max(1, C * K * max(1, len(self.orders))))
        if n <= step:
            return self.evaluate(X, idx)
        parts = [self.evaluate(X[s:s + step], idx[s:s + step]) for s in range(0, n, step)]
        return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                np.concatenate([p[2] for p in parts]))

    def fill(self, x: FloatArray, order: IntArray, routes: FloatArray) -> None:
        """Each model's routes for its replicas ``x`` in its filling order, into ``routes`` (B, E, K)."""
        for o, seq in enumerate(self.orders):
            idx = np.flatnonzero(order == o)
            if len(idx):
                self._route(x[idx][:, None, :], idx, seq, routes)


def _lex_best(cost: FloatArray, viol: FloatArray) -> IntArray:
    """Per row, the column of least violation, then least cost."""
    v_min = viol.min(axis=1, keepdims=True)
    c = np.where(viol == v_min, cost, np.inf)
    out: IntArray = np.argmin(c, axis=1)
    return out
