"""Recombination: a plan put together from the configurations the search has already seen.

The sweep (``lns.sweep``) changes one model at a time around all the others, so an answer that
would need many models to move together (each freeing part of a node another one then fills)
is out of its reach. Every step, though, leaves behind a configuration of the model it solved:
the values of that model's own columns (its replicas, routes, unmet demand, and the policy
variables only its rows use), which meet every row that touches that model alone.
``Configurations`` keeps the distinct ones per model (the first plan's and every step's answer,
taken or not), and ``recombine`` solves a small MIP over them: pick one configuration per model,
and the columns no model owns (elastic nodes, shared policy variables), so that the rows between
models (capacity, budgets, spot share, ...) hold, at least cost. The incumbent is one of its
answers (its start), so the result is never worse; a plan that moves many models at once comes
out when their recorded configurations fit together better than the incumbent's.

This is the restricted master of a Dantzig-Wolfe decomposition by model (the blocks of
``bound.model_blocks``), solved as a MIP over the columns at hand: price-and-branch. Its columns
come from three places:

- the sweep: each step's answer, a model re-placed around all the others;
- the LP: ``consolidated`` gathers each model's fractions of replicas onto one pair, and
  ``Configurations.add_replicas`` completes those configurations by MIPs over the rows of single
  models (ADD_CHUNK models each);
- pricing: ``Configurations.add_priced`` solves each model's own problem with the rows between
  models priced at the LP's duals (one small MIP per model, over the pairs nearest to pricing out,
  started from the model's configuration in the plan); where there is the time, again at duals
  between the LP's and those of the master's own LP (``master_duals``), and where the time holds
  several rounds, round after round until the master's LP stops falling, over every pair of each
  model or, where those rounds would take too long, over the pairs cheapest at each round's prices
  (``large.price_configurations``, ``large.pairs_at_prices``), most rounds over the models the
  round before improved alone (``Priced.improved``).

On a fleet too large for one master, ``recombine(models=...)`` solves it over some models, every
other one kept as it is.

The plans the sweep reaches pay for whole replicas spread over many pools, and each model's
answer there is the best around the others as they are; the LP's and the priced configurations
are each model's best when capacity is priced rather than taken, and which of them fit together
is what the master decides. At the LP's duals, with every pair and 0.5 s a model, the priced
configurations of bench M's 500 models took 8 s, and a master over them and the sweep's found
9,048 USD/h in 1.5 s against 9,180 for the master's optimum over the sweep's and the LP's alone;
over the nearest pairs, 0.05 s at most a model, 1 % gap, pricing takes 1.1-1.2 s at M and
4.8-4.9 s at L's 2,000 models on two threads.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from placer.knobs import env_choice
from placer.optimizer.arrays import BoolArray, FloatArray, IntArray
from placer.optimizer.batchprice import BatchPricer
from placer.optimizer.bound import Blocks, model_blocks
from placer.optimizer.greedy import per_replica_cost
from placer.optimizer.highs import Solution, solve_arrays, solve_within
from placer.optimizer.lns import START_OPTIONS, STEP_OPTIONS
from placer.optimizer.lp import violated_rows
from placer.optimizer.matrix import MatrixModel, rows_broken

MAX_PER_MODEL = 12  # configurations kept per model beyond the incumbent's (the first seen are kept)
ADD_CHUNK = 500  # models completed per MIP by ``add_replicas``
# the master gains from more of HiGHS' primal heuristics than its default 0.05 (its answers are close
# to its own LP bound; what it lacks in its time is incumbents). Side by side, three runs each: M
# 9,056-9,059 against 9,053-9,074, L 37,065-37,076 against 37,070-37,123; on one dumped L master
# given 9 s, 37,143 against 37,178 (0.8: the same 37,143)
# Restarts off: at L, both seeds' masters once ran 13 minutes past a 6 s limit inside HiGHS 1.16's
# presolve of a restart (HPresolve::strengthenInequalities, which checks no time limit there), until
# killed; without restarts, M 9,021 and 9,031 against 9,029 and 9,026, L 36,949 and 36,949 against
# 36,950 and 36,967 (side by side)
MASTER_OPTIONS: dict[str, object] = {"mip_heuristic_effort": 0.3, "mip_allow_restart": False}
# a master over this many configurations or more runs in a child process, stopped at its time limit
# (``highs.solve_within``): HiGHS 1.16's presolve of the sub-MIP its RENS heuristic solves at the
# root (HPresolve::strengthenInequalities again) checks no time limit either; at L given 120 s, with
# three pairs a group at prices (PRICED_PAIRS), a master ran 11 minutes past its limit there, until
# killed. L's last masters hold 7,000-15,000 configurations and run 6 s or more, XL's parts'
# 4,500-4,900; a fork and the answer's way back cost about 20 ms (M's dumped master: the same
# answers as in this process at 0.5-2 s). M's (1,600-3,000) stay here: isolated from 1,000, M at 5
# s gave 9,036.59-9,067.95 (four runs, mean 9,050.6) against 9,013.38-9,038.40 (mean 9,028.4)
# side by side, perhaps noise, not taken. L at 30 s, isolated or not, five runs each: mean
# 37,018.7 against 37,012.9
ISOLATE_MASTER = 3_500
# a master over fewer configurations than this searches with HiGHS' pool of cuts held to
# SMALL_MASTER_OPTIONS' (its default 10,000; 200 when measured here): at the root, HiGHS separated cuts for 5-6 s of a 6.5 s
# window on a dumped L master over batch-priced columns (7,977 binaries, 6,457 cuts) and found
# nothing better than its start in one of three seeds. On M's dumped masters (2026-12-01, seeds
# 0-2, their own 1.1-1.3 s): 9,021.8-9,043.5 against 9,040.1-9,073.4 (batch-priced columns) and
# 9,098.9-9,116.7 against 9,102.6-9,130.3 (HiGHS'); in the route, M at 5 s with batch pricing
# 9,002.71-9,059.86 (four runs, mean 9,025.7) against 9,031.36-9,254.67 (mean 9,090.5), side by
# side. L's large masters do not gain (three runs side by side: 37,058-37,163 against
# 37,010-37,030 with HiGHS' pricing), so their options stay HiGHS' own
SMALL_MASTER = ISOLATE_MASTER
# 50, for every search of a small master (until 2026-12-02 the first held 200 and the second 50):
# given M's 1.0-1.3 s, HiGHS' root at 200 now and then found nothing better than its start (on M's
# dumped masters of seed 1 at 1.1 s, 17 of 48 searches; at 50, 3 of 48). On twelve masters dumped
# from the route (seeds 0 and 1, six each), the better of two searches, the second at 50 from the start:
# at 0.85 s, seed 0 9,020.9-9,026.5 USD/h mean (three times) against 9,031.0-9,034.4 with the first at
# 200, seed 1 10,796.2-10,801.8 against 10,803.5-10,861.4; at 1.2 s 9,017.9 against 9,022.3 and
# 10,794.7 against 10,797.8; at 2 s the same (9,012.6 against 9,012.7)
SMALL_MASTER_OPTIONS: dict[str, object] = {"mip_pool_soft_limit": 50}
# relative gap of a pricing MIP. L, three runs each: 1e-2 37,091-37,104 (pricing 4.9-5.0 s), 5e-2
# 37,126-37,158 (4.0-4.3 s), 1e-3 37,080-37,137 (5.2-5.4 s)
PRICE_GAP = 1e-2
PRICE_STEP = 0.05  # seconds at most for one model's pricing MIP (most take 1-4 ms; a few would take 0.5 s)
LP_WEIGHED = 1e-6  # a configuration the master's LP weighs more than this is searched in ``around_lp``
IMPROVED = 1e-3  # USD/h: a priced configuration cheaper than a model's recorded ones by more improves it


@dataclass(frozen=True)
class Priced:
    """What ``Configurations.add_priced`` did."""

    added: int  # configurations new to the record
    improved: IntArray  # the models whose priced configuration beat every one recorded for them
    # per model, the least cost of its pricing problem its MIP proved (NaN: not priced, or proved
    # nothing); over every pair, a bound on that model's own problem in L(rc's multipliers)
    proven: FloatArray
    # HiGHS' pace: the seconds its MIPs over the batch's blocks took, summed over the threads, and how
    # many ran (the hybrid's second answers, or a sample: ``add_priced``'s ``pace``); 0 where none did
    mip_seconds: float = 0.0
    mip_models: int = 0


def on_columns(rows: Any, cols: IntArray) -> Any:
    """The columns ``cols`` (sorted) of the CSR matrix ``rows``, as CSC. (scipy's column selection
    on a CSR matrix allocates a vector of every column per call: 2.8 ms at XL's 8.3M columns,
    against 1-4 ms for a model's pricing MIP.)"""
    idx = rows.indices
    pos = np.minimum(np.searchsorted(cols, idx), max(0, len(cols) - 1))
    hit = cols[pos] == idx if len(cols) else np.zeros(len(idx), dtype=bool)
    row = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
    return sp.csc_matrix((rows.data[hit], (row[hit], pos[hit])), shape=(rows.shape[0], len(cols)))


def pricing_mode(configurations: int) -> str:
    """How the inference models of a pricing round are priced (the round whose proven bounds count
    stays on HiGHS): ``batch``, all at once by ``batchprice`` alone, where the master holds fewer
    than SMALL_MASTER ``configurations`` (M's: it searches the batch's many columns in its window,
    and gains); ``hybrid`` where it holds more (L's: over the batch's answers alone, 9,500-11,500
    configurations, its search moved no model in 7.8 s in some runs and lost to HiGHS' in the
    others): the batch, then HiGHS on the models whose answer lies more than HYBRID_GAP above the
    batch's estimate from below. ``mip``: HiGHS alone. PLACER_PRICING=batch|hybrid|mip forces one."""
    forced = env_choice("PLACER_PRICING", PRICING_MODES, "by the master's size")
    if forced is not None:
        return forced
    return "batch" if configurations < SMALL_MASTER else "hybrid"


PRICING_MODES = ("batch", "hybrid", "mip")
# USD/h: in hybrid pricing, HiGHS prices again the models whose batch answer costs more than this
# above ``BatchPricer.lower``. On L's first round (seed 0) HiGHS' answers were cheaper than the
# batch's on 12% of its 1,758 blocks, by 153 USD/h in all; those above 1 USD/h were 29% of the
# blocks and held 132 of the 153, and the master's LP over the batch's answers with HiGHS' for
# those was 37,014.12 against 37,014.37 over HiGHS' alone (37,239.12 over the batch's alone)
HYBRID_GAP = 1.0
# in batch mode, the batch's blocks HiGHS prices too where asked for its pace (in hybrid mode its
# second answers tell it): the first round's pace guesses an exact round's (HiGHS on every model, for
# a bound), and the batch prices a block 10-50 times faster than HiGHS. At M: 2.5 ms a MIP over the
# nearest pairs, 8 of them 0.02 s; the exact round over every pair took 2.8-2.9 s
PACE_SAMPLE = 8


class Configurations:
    """Per model, the distinct values its own columns took in the plans and steps recorded."""

    def __init__(self, model: MatrixModel, blocks: Blocks | None = None, csr: Any = None, csc: Any = None) -> None:
        """``csr``, ``csc``: the model's matrix as CSR and as CSC, when the caller has them."""
        self.model = model
        self.csr = model.A.tocsr() if csr is None else csr
        self.blocks = blocks if blocks is not None else model_blocks(model, self.csr, csc)
        self.n_models = len(self.blocks.col_ptr) - 1
        self._seen: list[dict[bytes, int]] = [{} for _ in range(self.n_models)]  # key -> entry
        self.entries: list[tuple[int, FloatArray]] = []  # (model, values on its columns)
        self._local: tuple[IntArray, IntArray] | None = None
        self._batch: BatchPricer | None = None

    def columns(self, m: int) -> IntArray:
        b = self.blocks
        out: IntArray = b.cols[b.col_ptr[m]:b.col_ptr[m + 1]]
        return out

    def _add(self, m: int, z: FloatArray, force: bool = False) -> int:
        """The entry of configuration ``z`` of model ``m``, added when new (-1: not kept)."""
        key = np.round(z, 9).tobytes()
        seen = self._seen[m]
        if key in seen:
            return seen[key]
        if not force and len(seen) > MAX_PER_MODEL:
            return -1
        seen[key] = len(self.entries)
        self.entries.append((m, z))
        return seen[key]

    def add(self, m: int, z: FloatArray) -> None:
        """Model ``m``'s configuration ``z`` (its values on ``columns(m)``), kept however many the
        model has: ``bound.model_bound``'s ``record``, whose sub-MIPs' answers are columns of the
        master."""
        self._add(m, z.copy(), force=True)

    def local_rows(self) -> tuple[IntArray, IntArray]:
        """The rows of single models, model by model: model m's are ``rows[ptr[m]:ptr[m + 1]]``
        (row indices of the matrix; its CSR, ``csr``, gives their entries)."""
        if self._local is None:
            local = np.flatnonzero(self.blocks.local)
            owner = self.blocks.row_owner[local]
            order = np.argsort(owner, kind="stable")
            self._local = (local[order], np.searchsorted(owner[order], np.arange(self.n_models + 1)))
        return self._local

    def add_plan(self, v: FloatArray, models: IntArray | None = None) -> IntArray:
        """Every model's configuration in the plan ``v`` (of ``models`` alone, when given);
        returns their entries."""
        which = range(self.n_models) if models is None else models.tolist()
        got = [self._add(m, v[cols].copy(), force=True) for m in which if len(cols := self.columns(m))]
        return np.array(got, dtype=np.int64)

    def models_of_entries(self) -> IntArray:
        """The model of each entry."""
        return np.fromiter((m for m, _ in self.entries), dtype=np.int64, count=len(self.entries))

    def add_step(self, v: FloatArray, free: IntArray, new: FloatArray, models: IntArray) -> None:
        """The configurations of ``models`` in the plan ``v`` with its (sorted) ``free`` columns
        set to ``new``: a step's answer, taken or not."""
        for m in models:
            cols = self.columns(int(m))
            if not len(cols):
                continue
            z = v[cols].copy()
            pos = np.minimum(np.searchsorted(free, cols), len(free) - 1)
            hit = free[pos] == cols
            z[hit] = new[pos[hit]]
            self._add(int(m), z)

    def add_replicas(self, x: IntArray, v: FloatArray, time_limit: float) -> int:
        """The configuration of each model whose replicas ``x`` (per pair) differ from the plan
        ``v``'s: those replicas, and every other column of the model's own set at least cost by
        MIPs over the rows of single models (block-diagonal: each model apart), ADD_CHUNK models
        at a time, so that what is done when the time is up is kept. A model whose replicas break
        one of its own rules (a spot cap, a spread) is left out; returns how many configurations
        were added."""
        model = self.model
        a = model.arrays
        x0, x1 = model.blocks["x"]
        changed = np.unique(a.pair_model[np.flatnonzero(np.round(v[x0:x1]) != x)])
        deadline = time.monotonic() + time_limit
        added = 0
        for s in range(0, len(changed), ADD_CHUNK):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            added += self._complete(changed[s:s + ADD_CHUNK], x, v, left)
        return added

    def _complete(self, models: IntArray, x: IntArray, v: FloatArray, time_limit: float) -> int:
        """``add_replicas`` for the given models."""
        model = self.model
        local, _ = self.local_rows()
        row_model = self.blocks.row_owner[local]
        a = model.arrays
        x0, x1 = model.blocks["x"]
        y0 = model.blocks["y"][0]
        changed = np.zeros(self.n_models, dtype=bool)
        changed[models] = True
        started = time.monotonic()
        for _ in range(4):
            models = np.flatnonzero(changed)
            if not len(models) or time.monotonic() - started >= time_limit:
                return 0
            cols = np.sort(np.concatenate([self.columns(int(m)) for m in models]))
            w = v.copy()
            w[x0:x1] = np.where(changed[a.pair_model], x, w[x0:x1])
            is_x = (cols >= x0) & (cols < x1)
            is_y = (cols >= y0) & (cols < y0 + a.n_routes)
            open_route = np.zeros(len(cols), dtype=bool)
            open_route[is_y] = w[x0 + a.route_pair[cols[is_y] - y0]] > 0.5
            w[cols[is_y & ~open_route]] = 0.0  # routes of pairs without replicas
            free = cols[~is_x & (~is_y | open_route)]
            rows = np.sort(local[changed[row_model]])
            sub = self.csr[rows]
            part = on_columns(sub, free)
            fixed = sub @ w - part @ w[free]
            lo, hi = model.row_lo[rows] - fixed, model.row_hi[rows] - fixed
            left = max(0.05, time_limit - (time.monotonic() - started))
            sol = solve_arrays(part, model.cost[free], model.lb[free], model.ub[free], lo, hi, model.integer[free],
                               time_limit=left, gap=1e-4)
            if sol.values is not None:
                before = len(self.entries)
                self.add_step(w, free, sol.values, models)
                return len(self.entries) - before
            if sol.status != "INFEASIBLE":
                return 0  # out of time
            bad = violated_rows(part, model.cost[free], model.lb[free], model.ub[free], lo, hi,
                                integer=model.integer[free], time_limit=left)
            if not len(bad):
                return 0
            changed[self.blocks.row_owner[rows[bad]]] = False
        return 0

    def batch(self) -> BatchPricer:
        """The batched pricing routine over this record's blocks (their shapes built on first use)."""
        if self._batch is None:
            self._batch = BatchPricer(self.model, self.columns, self.local_rows(), self.csr, self.n_models)
        return self._batch

    def add_priced(self, rc: FloatArray, pairs: BoolArray, v: FloatArray, deadline: float, workers: int = 1,
                   step_limit: float = PRICE_STEP, models: IntArray | None = None, exact: bool = False,
                   batched: bool = True, pace: bool = False) -> Priced:
        """Each model's least-cost configuration at reduced costs ``rc`` (the rows between models
        priced by duals, the model's own rows kept): the pricing problem of the decomposition,
        one small MIP per model over its ``pairs`` alone, ``step_limit`` seconds at most each,
        on ``workers`` threads, until ``deadline``. The models whose configuration in the plan
        ``v`` costs most at ``rc`` go first; a model's configuration in ``v`` is its MIP's start
        when it lies within the given pairs. ``models``: these alone (default: every model).
        Returns how many configurations were added, and the models whose configuration costs less
        at ``rc`` than every one recorded for them before (by more than IMPROVED). Unless ``exact``
        (a round whose proven bounds count), where ``pricing_mode`` says so for this record's
        size, the inference models go to ``batchprice`` first, all at once, which proves nothing
        (``proven`` stays NaN for them); HiGHS prices the models it leaves, and in hybrid mode
        again those whose answer is farthest from the batch's estimate (from that answer). Not
        ``batched``: HiGHS alone, whatever the mode (a fleet priced by parts: at XL a first round with
        the batch's one call over its 10,000 models took 32 s, where HiGHS' alone stops at its
        deadline, 9 s). ``pace``: in batch mode HiGHS prices PACE_SAMPLE of the batch's blocks as well,
        so that ``Priced.mip_seconds`` tells its pace on them (in hybrid mode its second answers do)."""
        model = self.model
        b = self.blocks
        # a pair left out takes its replicas, routes and gang and churn columns with it (at 0)
        out = ~model.with_pairs(pairs) & (model.lb <= 0)
        local, row_ptr = self.local_rows()
        owned = b.owner >= 0
        worth = np.bincount(b.owner[owned], weights=(rc * v)[owned], minlength=self.n_models)
        order = np.argsort(-worth, kind="stable")
        if models is not None:
            order = order[np.isin(order, models)]
        got: list[tuple[int, FloatArray]] = []
        improved: list[int] = []
        proven = np.full(self.n_models, math.nan)
        lock = threading.Lock()

        def record(m: int, z: FloatArray) -> None:
            """Keep ``z``, model ``m``'s answer on its columns, and whether it beats every configuration
            recorded for ``m`` so far (the new ones are added once every thread is done)."""
            price = rc[self.columns(m)]
            best = min((float(price @ self.entries[k][1]) for k in self._seen[m].values()), default=math.inf)
            with lock:
                got.append((m, z))
                if float(price @ z) < best - IMPROVED:
                    improved.append(m)

        starts: dict[int, FloatArray] = {}  # hybrid: the batch's answer, HiGHS' start
        timed: set[int] = set()  # the batch's blocks HiGHS prices too, and its seconds and MIPs on them
        spent = [0.0, 0]

        def one(m: int) -> None:
            left = deadline - time.monotonic()
            cols = self.columns(m)
            if left < 0.01 or not len(cols):
                return
            keep = ~out[cols]
            free = cols[keep]
            rows = local[row_ptr[m]:row_ptr[m + 1]]
            sub = on_columns(self.csr[rows], free)
            # the plan's configuration meets the model's own rows: from it, the MIP needs no search
            # for a first answer, and never answers worse (M 9,038-9,055 against 9,050-9,086, five
            # runs each side by side; L 37,002-37,047 against 37,014-37,061, three); the batch's
            # answer, where there is one, is a better start still
            start = starts[m][keep] if m in starts else v[free] if not np.any(v[cols[~keep]]) else None
            began = time.monotonic()
            sol = solve_arrays(sub, rc[free], model.lb[free], model.ub[free], model.row_lo[rows],
                               model.row_hi[rows], model.integer[free], time_limit=min(step_limit, left),
                               gap=PRICE_GAP, options=START_OPTIONS if start is not None else STEP_OPTIONS,
                               start=start)
            if m in timed:
                with lock:
                    spent[0] += time.monotonic() - began
                    spent[1] += 1
            proven[m] = sol.bound
            if sol.values is None:
                return
            z = np.zeros(len(cols))
            z[keep] = sol.values
            record(m, z)

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            mode = "mip" if exact or not batched else pricing_mode(len(self))
            if mode != "mip" and len(order) and deadline - time.monotonic() > 0.01:
                batch = self.batch()
                mine = batch.flat.handled[order]
                # HiGHS prices the blocks the batch does not take while the batch prices the others
                # (and, for its pace, a few of the batch's)
                sample = order[mine][:PACE_SAMPLE].tolist() if pace and mode == "batch" else []
                timed.update(sample)
                rest = pool.map(one, [*order[~mine].tolist(), *sample])
                answers = batch.price(order[mine], rc, pairs, v)
                for m, z in answers.items():
                    record(m, z)
                again = [m for m in order[mine].tolist() if m not in answers]
                if mode == "hybrid":  # and those whose answer may lie farthest from their best
                    for m, z in answers.items():
                        if not float(rc[self.columns(m)] @ z) - batch.lower[m] <= HYBRID_GAP:
                            starts[m] = z
                            timed.add(m)
                    again += [m for m in order[mine].tolist() if m in starts]
                list(rest)
                list(pool.map(one, again))
            else:
                list(pool.map(one, order.tolist()))
        before = len(self.entries)
        for m, z in got:
            self._add(m, z, force=True)
        return Priced(len(self.entries) - before, np.sort(np.array(improved, dtype=np.int64)), proven,
                      spent[0], int(spent[1]))

    def __len__(self) -> int:
        return len(self.entries)


ONTO = ("fraction", "cheapest", "replicas")


def consolidated(model: MatrixModel, lp_values: FloatArray, v: FloatArray, onto: str = "fraction") -> IntArray:
    """Replicas per pair from the LP's: each inference model's rounded down, and the throughput of
    its fractions gathered onto one of its pairs, rounded up there: the pair with the largest
    fraction (``onto="fraction"``), the cheapest per unit of throughput (``"cheapest"``), or the
    one with most replicas in the LP (``"replicas"``); every other model's as in the plan ``v``."""
    a = model.arrays
    x0, x1 = model.blocks["x"]
    f = lp_values[x0:x1]
    x = np.floor(f + 1e-6)
    fraction = f - x
    inference = a.model_inference
    js = np.flatnonzero((fraction > 1e-6) & inference[a.pair_model] & (a.pair_thr > 0))
    if len(js):
        if onto == "fraction":
            key = -fraction[js]
        elif onto == "cheapest":
            key = per_replica_cost(model)[js] / a.pair_thr[js]
        elif onto == "replicas":
            key = -f[js]
        else:
            raise ValueError(f"consolidated: onto must be one of {', '.join(ONTO)}, not {onto!r}")
        order = js[np.lexsort((key, a.pair_model[js]))]
        pm = a.pair_model[order]
        head = order[np.r_[True, pm[1:] != pm[:-1]]]
        mass = np.bincount(a.pair_model[js], weights=fraction[js] * a.pair_thr[js], minlength=len(a.models))
        x[head] += np.ceil(mass[a.pair_model[head]] / a.pair_thr[head] - 1e-6)
    x = np.where(inference[a.pair_model], np.minimum(x, model.ub[x0:x1]), np.round(v[x0:x1]))
    out: IntArray = x.astype(np.int64)
    return out


@dataclass
class RecombineResult:
    values: FloatArray | None  # the better plan, or None (no better one, or none in time)
    status: str
    configurations: int
    seconds: float
    moved: int = 0  # models whose configuration changed
    retried: bool = False  # HiGHS gave the start back at once: the master ran again without it


def around_lp(problem: tuple[Any, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, Any], K: int,
              start: FloatArray, incumbent: BoolArray, deadline: float, solve: Callable[..., Solution],
              options: dict[str, object]) -> Solution:
    """The master's LP, then the master over the configurations the LP weighs (and the incumbent's)
    alone, from ``start``, until ``deadline`` or its optimum (RENS, before HiGHS' own: HiGHS runs
    its RENS at the root only after its cuts). ``problem``: the master, its first ``K`` columns
    the configurations; ``solve``: ``solve_arrays``, or ``solve_within`` for a large master. No
    values where the LP did not finish.

    At M on a machine slower than usual (2026-12-02), the master's whole search found its first
    answer better than the start only after 0.75-1.55 s: on eight masters dumped from the route
    (1,735-1,771 configurations, windows of 0.71-1.11 s), given 0.8 s, the route's two searches
    (seed 0 from the start, seed 1 without) found nothing in 5 of 8 (the start, 9,319-9,375 USD/h).
    The LP takes 0.03-0.06 s; the master over its 857-865 configurations found a plan within
    0.03-0.05 s in 7 of 8 (9,130-9,228) and 9,104-9,154 in the 0.8 s; so seed 0 searching so, and
    seed 1 as it did, found something in 8 of 8 (mean 9,115 against 9,257); given 0.5 s, 7 of 8
    (9,154 against 9,313). Given 1.0-3.0 s the two ways are the same within 8 USD/h. In the route,
    M at 5 s alternated with the route before (sixteen runs each): 9,054.50-9,158.36 (mean 9,108.6),
    none finding nothing, against 9,029.77-9,354.23 (mean 9,169.7), five of them 9,313.95-9,354.23
    with 0 models moved (the other eleven's mean 9,094.5)."""
    A, cost, lb, ub, row_lo, row_hi, integer = problem
    lp = solve_arrays(A, cost, lb, ub, row_lo, row_hi, None, time_limit=deadline - time.monotonic())
    if lp.values is None or deadline - time.monotonic() < 0.05:
        return replace(lp, values=None, status=lp.status if lp.values is None else "TIME_LIMIT")
    out = np.zeros(len(ub), dtype=bool)
    out[:K] = (lp.values[:K] <= LP_WEIGHED) & ~incumbent
    return solve(A, cost, lb, np.where(out, 0.0, ub), row_lo, row_hi, integer,
                 time_limit=deadline - time.monotonic(), start=start, gap=1e-6, options=options)


@dataclass
class _Problem:
    """The master: one column per configuration (``picked`` entries), then the ``alone`` columns
    no model owns; its rows: the rows between models (``link``), then one per model (pick one)."""

    problem: tuple[Any, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, Any]
    A: Any  # the model's matrix, CSR
    link: IntArray
    alone: IntArray
    picked: IntArray
    entries: list[tuple[int, FloatArray]]
    ms: IntArray  # the model of each configuration column


def _master(model: MatrixModel, configs: Configurations, A: Any, models: IntArray | None = None,
            v: FloatArray | None = None) -> _Problem:
    """``recombine``'s master (see there for ``models`` and the plan ``v``, which only a master
    over some models needs); ``A``: the model's matrix as CSR."""
    b = configs.blocks
    link = np.flatnonzero(~b.local)
    alone = np.flatnonzero(b.owner < 0)
    picked = np.arange(len(configs))
    if models is not None:
        in_part = np.zeros(configs.n_models, dtype=bool)
        in_part[models] = True
        picked = np.flatnonzero(in_part[configs.models_of_entries()])
    entries = [configs.entries[int(k)] for k in picked]
    ms = np.fromiter((m for m, _ in entries), dtype=np.int64, count=len(entries))
    K = len(ms)
    # every configuration as a column of Z (model columns x configurations)
    # no configuration at all where no model has a pair to run on (a fleet of pools of no nodes)
    rows = np.concatenate([configs.columns(int(m)) for m in ms]) if K else np.zeros(0, dtype=np.int64)
    data = np.concatenate([z for _, z in entries]) if K else np.zeros(0)
    owner_ptr = np.repeat(np.arange(K), [len(z) for _, z in entries])
    Z = sp.csc_matrix((data, (rows, owner_ptr)), shape=(model.n_cols, K))
    A_link = A[link, :]
    V = (A_link @ Z).tocsc()
    lo, hi = model.row_lo[link], model.row_hi[link]
    if models is not None:
        assert v is not None, "a master over some models keeps the others as in the plan v"
        # the rows the part's configurations touch, the unowned columns in them, and every row
        # those touch; everything else stays as in ``v``, its share of those rows in their bounds
        touched = np.zeros(len(link), dtype=bool)
        touched[V.indices] = True
        A_alone = A_link[:, alone].tocsc()
        hits = np.diff(A_alone[touched].tocsc().indptr) > 0
        alone, A_alone = alone[hits], A_alone[:, hits]
        touched[A_alone.indices] = True
        keep = np.flatnonzero(touched)
        fixed = v.copy()
        fixed[rows] = 0.0
        fixed[alone] = 0.0
        rest = A_link[keep] @ fixed
        link, A_link, V = link[keep], A_link[keep], V[keep]
        lo, hi = lo[keep] - rest, hi[keep] - rest
    conv_models, conv_row = np.unique(ms, return_inverse=True)
    conv = sp.csc_matrix((np.ones(K), (conv_row, np.arange(K))), shape=(len(conv_models), K))
    master = sp.vstack([sp.hstack([V, A_link[:, alone]]),
                        sp.hstack([conv, sp.csc_matrix((len(conv_models), len(alone)))])]).tocsc()
    cost = np.concatenate([Z.T @ model.cost, model.cost[alone]])
    lb = np.concatenate([np.zeros(K), model.lb[alone]])
    ub = np.concatenate([np.ones(K), model.ub[alone]])
    ones = np.ones(len(conv_models))
    integer = np.concatenate([np.ones(K, dtype=bool), model.integer[alone]])
    problem = (master, cost, lb, ub, np.concatenate([lo, ones]), np.concatenate([hi, ones]), integer)
    return _Problem(problem, A, link, alone, picked, entries, ms)


def master_duals(model: MatrixModel, configs: Configurations, time_limit: float,
                 csr: Any = None) -> tuple[float, FloatArray] | None:
    """The LP of ``recombine``'s master over every configuration: its value, and its duals on the
    rows between models (0 on every other row of the model), the prices a next round of
    ``Configurations.add_priced`` may set from. None when the LP did not solve in time."""
    mp = _master(model, configs, model.A.tocsr() if csr is None else csr)
    sol = solve_arrays(*mp.problem[:6], None, time_limit=time_limit)
    if sol.status != "OPTIMAL" or sol.row_duals is None:
        return None
    pi = np.zeros(model.n_rows)
    pi[mp.link] = sol.row_duals[:len(mp.link)]
    return sol.objective, pi


def recombine(model: MatrixModel, configs: Configurations, v: FloatArray, time_limit: float,
              csr: Any = None, workers: int = 1, models: IntArray | None = None) -> RecombineResult:
    """The least-cost plan made of one recorded configuration per model (the incumbent ``v``'s
    among them) and any values of the columns no model owns; ``csr``: the model's matrix as CSR,
    when the caller has it. ``workers``: searches at once, each on its own random seed (the other
    threads of the route are idle while the master runs), the best answer taken. ``models``: only
    these models change (every other one keeps its configuration in ``v``), and of the columns no
    model owns, only those in the rows theirs touch: a master over a part of a fleet too large for
    one."""
    started = time.monotonic()
    mine = configs.add_plan(v, models)  # the incumbent's configurations: the master's start, and its feasibility
    if not len(mine):  # no model with columns: nothing to pick
        return RecombineResult(None, "EMPTY", 0, time.monotonic() - started)
    mp = _master(model, configs, model.A.tocsr() if csr is None else csr, models, v)
    A, picked, entries, alone, ms, K = mp.A, mp.picked, mp.entries, mp.alone, mp.ms, len(mp.picked)
    problem = mp.problem
    cost = problem[1]
    # start: the incumbent's configuration of each model (its entry, added with force above)
    incumbent = np.isin(picked, mine).astype(float)
    start = np.concatenate([incumbent, v[alone]])
    left = time_limit - (time.monotonic() - started)
    if left < 0.05:
        return RecombineResult(None, "TIME_LIMIT", K, time.monotonic() - started)
    deadline = time.monotonic() + left

    solve = solve_within if K >= ISOLATE_MASTER else solve_arrays

    def attempt(seed: int) -> tuple[Solution, bool]:
        """The master on HiGHS' random seed ``seed``, from the start (a small master's searches after
        the first without it: its answer counts only where it beats the start, below); whether it
        ran again without. The first search, on seed 0, searches first around the master's LP
        (``around_lp``), and then the whole master from its answer in the time left."""
        small = K < SMALL_MASTER
        options = {**MASTER_OPTIONS, **(SMALL_MASTER_OPTIONS if small else {}), "random_seed": seed}
        if seed == 0:
            near = around_lp(problem, K, start, incumbent > 0.5, deadline, solve, options)
            if deadline - time.monotonic() < 0.05:
                return near, False
            if near.values is not None and float(cost @ near.values) < float(cost @ start) - 1e-9:
                sol = solve(*problem, time_limit=deadline - time.monotonic(), start=near.values, gap=1e-6,
                            options=options)
                # its answer, or the one around the LP where HiGHS gave that start back (or worse)
                better = sol.values is not None and float(cost @ sol.values) < float(cost @ near.values)
                return (sol if better else near), False
        # HiGHS 1.16's presolve now and then prices a start wrongly in the model it reduced (its
        # Aggregator rule: "MIP start solution is feasible in the reduced space: objective value is
        # 10895.78" for a start of 11,077.14 USD/h), and its search then gives the start back, however
        # far from the optimum: at M's 1.0 s, every search of a dumped master that found nothing
        # better than its start was such a one (14 of 24 at seed 1, 1 of 24 at seed 0), where the same
        # masters without the start found 10,751.7-10,852.5. Without a start HiGHS' own heuristics
        # find a first answer at once; with one it spends the window on cuts. So a small master's
        # second search runs without (side by side, M at 5 s, with the round by HiGHS of pricing
        # where the batch stalls: seed 0 9,023.1 mean over 14 runs against 9,030.3 with both from the
        # start, pools 200 and 50; seed 1 10,795.2 against 10,803.0 over 16)
        given = None if small and seed > 0 else start
        sol = solve(*problem, time_limit=deadline - time.monotonic(), start=given, gap=1e-6, options=options)
        left = deadline - time.monotonic()
        if given is not None and sol.inconsistent and left >= 0.1:
            # HiGHS gave the start back at once (``highs.solve_arrays``): the time left goes to the
            # master without it, whose answer counts only if better than the incumbent (below); a
            # search already without it is not run again as it was
            return solve(*problem, time_limit=left, gap=1e-6, options=options), True
        return sol, False

    # one search per thread, each on its own seed (HiGHS' MIP search runs on one): the best answer counts
    searches = max(1, workers)
    with ThreadPoolExecutor(max_workers=searches) as pool:
        tries = list(pool.map(attempt, range(searches)))
    found = [(t, t[0].values) for t in tries if t[0].values is not None]
    sol, retried = min(found, key=lambda f: float(cost @ f[1]))[0] if found else tries[0]
    if sol.values is None:
        return RecombineResult(None, sol.status, K, time.monotonic() - started, retried=retried)
    lam = sol.values[:K]
    new = v.copy()
    new[alone] = sol.values[K:]
    moved = 0
    # per model, its configuration with the largest weight (1 within HiGHS' tolerance)
    order = np.lexsort((-lam, ms))
    first = order[np.r_[True, ms[order][1:] != ms[order][:-1]]]
    for k in first:
        m, z = entries[int(k)]
        if incumbent[k] < 0.5:
            moved += 1
        new[configs.columns(m)] = z
    if np.any(rows_broken(A, new, A @ new, model.row_lo, model.row_hi)):
        return RecombineResult(None, "ROWS", K, time.monotonic() - started, retried=retried)
    if float(model.cost @ new) >= float(model.cost @ v) - 1e-7 * max(1.0, abs(float(model.cost @ v))):
        return RecombineResult(None, sol.status, K, time.monotonic() - started, retried=retried)
    return RecombineResult(new, sol.status, K, time.monotonic() - started, moved, retried)
