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
``bound.model_blocks``), solved as a MIP over the columns at hand: price-and-branch without the
pricing. Tried with pricing (each model's best configuration at the LP's duals, one small MIP
per model) on the bench's M fleet: 9,316 -> 9,170 in 2 s of master, but pricing the 500 models
took 6.2 s at 20 ms a model, more than M's whole time limit; so configurations come from the
sweep alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from placer.optimizer.arrays import FloatArray, IntArray
from placer.optimizer.bound import Blocks, model_blocks
from placer.optimizer.highs import solve_arrays
from placer.optimizer.matrix import MatrixModel

MAX_PER_MODEL = 12  # configurations kept per model beyond the incumbent's (the first seen are kept)


class Configurations:
    """Per model, the distinct values its own columns took in the plans and steps recorded."""

    def __init__(self, model: MatrixModel, blocks: Blocks | None = None, csr: Any = None) -> None:
        self.blocks = blocks if blocks is not None else model_blocks(model, csr)
        self.n_models = len(self.blocks.col_ptr) - 1
        self._seen: list[dict[bytes, int]] = [{} for _ in range(self.n_models)]  # key -> entry
        self.entries: list[tuple[int, FloatArray]] = []  # (model, values on its columns)

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

    def add_plan(self, v: FloatArray) -> IntArray:
        """Every model's configuration in the plan ``v``; returns their entries."""
        got = [self._add(m, v[cols].copy(), force=True)
               for m in range(self.n_models) if len(cols := self.columns(m))]
        return np.array(got, dtype=np.int64)

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

    def __len__(self) -> int:
        return len(self.entries)


@dataclass
class RecombineResult:
    values: FloatArray | None  # the better plan, or None (no better one, or none in time)
    status: str
    configurations: int
    seconds: float
    moved: int = 0  # models whose configuration changed


def recombine(model: MatrixModel, configs: Configurations, v: FloatArray, time_limit: float,
              csr: Any = None) -> RecombineResult:
    """The least-cost plan made of one recorded configuration per model (the incumbent ``v``'s
    among them) and any values of the columns no model owns; ``csr``: the model's matrix as CSR,
    when the caller has it."""
    started = time.monotonic()
    mine = configs.add_plan(v)  # the incumbent's configurations: the master's start, and its feasibility
    b = configs.blocks
    A = model.A.tocsr() if csr is None else csr
    link = np.flatnonzero(~b.local)
    alone = np.flatnonzero(b.owner < 0)
    ms = np.fromiter((m for m, _ in configs.entries), dtype=np.int64, count=len(configs))
    K = len(ms)
    # every configuration as a column of Z (model columns x configurations)
    rows = np.concatenate([configs.columns(int(m)) for m in ms])
    data = np.concatenate([z for _, z in configs.entries])
    owner_ptr = np.repeat(np.arange(K), [len(z) for _, z in configs.entries])
    Z = sp.csc_matrix((data, (rows, owner_ptr)), shape=(model.n_cols, K))
    A_link = A[link, :]
    V = (A_link @ Z).tocsc()
    conv_models, conv_row = np.unique(ms, return_inverse=True)
    conv = sp.csc_matrix((np.ones(K), (conv_row, np.arange(K))), shape=(len(conv_models), K))
    master = sp.vstack([sp.hstack([V, A_link[:, alone]]),
                        sp.hstack([conv, sp.csc_matrix((len(conv_models), len(alone)))])]).tocsc()
    cost = np.concatenate([Z.T @ model.cost, model.cost[alone]])
    lb = np.concatenate([np.zeros(K), model.lb[alone]])
    ub = np.concatenate([np.ones(K), model.ub[alone]])
    ones = np.ones(len(conv_models))
    lo = np.concatenate([model.row_lo[link], ones])
    hi = np.concatenate([model.row_hi[link], ones])
    integer = np.concatenate([np.ones(K, dtype=bool), model.integer[alone]])
    # start: the incumbent's configuration of each model (its entry, added with force above)
    incumbent = np.zeros(K)
    incumbent[mine] = 1.0
    start = np.concatenate([incumbent, v[alone]])
    left = time_limit - (time.monotonic() - started)
    if left < 0.05:
        return RecombineResult(None, "TIME_LIMIT", K, time.monotonic() - started)
    sol = solve_arrays(master, cost, lb, ub, lo, hi, integer, time_limit=left, start=start, gap=1e-6)
    if sol.values is None:
        return RecombineResult(None, sol.status, K, time.monotonic() - started)
    lam = sol.values[:K]
    new = v.copy()
    new[alone] = model.rounded(sol.values[K:], alone)
    moved = 0
    # per model, its configuration with the largest weight (1 within HiGHS' tolerance)
    order = np.lexsort((-lam, ms))
    first = order[np.r_[True, ms[order][1:] != ms[order][:-1]]]
    for k in first:
        m, z = configs.entries[int(k)]
        if incumbent[k] < 0.5:
            moved += 1
        new[configs.columns(m)] = z
    act = A @ new
    tol = 1e-6 * np.maximum(1.0, np.abs(act))
    if np.any(act < model.row_lo - tol) or np.any(act > model.row_hi + tol):
        return RecombineResult(None, "ROWS", K, time.monotonic() - started)
    if float(model.cost @ new) >= float(model.cost @ v) - 1e-7 * max(1.0, abs(float(model.cost @ v))):
        return RecombineResult(None, sol.status, K, time.monotonic() - started)
    return RecombineResult(new, sol.status, K, time.monotonic() - started, moved)
