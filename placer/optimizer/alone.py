"""One model re-placed around a plan, every other model held where the plan has it.

``placer explain`` asks where a model would go without its pools, and what that costs. On the
exact route a new plan answers exactly. On the scalable route a new plan searches again within a
time limit, and two of its runs differ by more than most models' moves cost: at bench XL the
"next best" came out 389 USD/h *cheaper* than the plan, the search having improved other models
in the meantime. Here the model alone moves: one small MIP over its columns (its pairs, routes,
unmet demand, the nodes of the pools it may use and the policy variables of its rows), so the
difference is the move's own, and it takes a second, not another solve of the fleet.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np

from placer.fleet import Fleet
from placer.optimizer.arrays import build_arrays
from placer.optimizer.large import placement_of
from placer.optimizer.lns import Neighbourhoods, solve_free
from placer.optimizer.lp import PairTables
from placer.optimizer.matrix import build_matrix
from placer.optimizer.repair import complete
from placer.placement import Placement
from placer.policy import Rules


class AloneError(Exception):
    """The plan could not be rebuilt on the model (a bug, or a plan made for another fleet)."""


def replace_alone(fleet: Fleet, rules: Rules, plan: Placement, model: str, forbid: Collection[str],
                  current: Mapping[tuple[str, str], int], time_limit: float = 10.0,
                  ) -> tuple[Placement, Placement | None]:
    """(the plan as the model prices it, the plan with ``model`` kept off the ``forbid`` pools and
    re-placed at least cost around every other model, or None when no placement of it fits: its
    required policies or minimum leave it no room). Churn is priced from ``current``."""
    arrays = build_arrays(fleet, rules)
    mi = arrays.model_index[model]
    keep = (arrays.current_vector(plan.replicas) > 0) | (arrays.current_vector(current) > 0)
    keep[arrays.pair_ptr[mi]:arrays.pair_ptr[mi + 1]] = True  # every pool the model may use
    sub = arrays.restrict(keep)
    matrix = build_matrix(sub, rules, current, cuts=False)
    hood = Neighbourhoods(matrix, PairTables.build(matrix), np.ones(sub.n_pairs, dtype=bool))
    x = np.round(sub.current_vector(plan.replicas)).astype(np.int64)
    base = complete(matrix, hood, x, time_limit=time_limit)
    if base is None:
        raise AloneError(f"the plan's replicas do not hold on a model of the fleet (re-placing {model})")
    x0 = matrix.blocks["x"][0]
    for pool in forbid:
        j = sub.find_pair(model, pool)
        if j is not None:
            matrix.ub[x0 + j] = 0.0
    free = hood.columns(np.array([mi], dtype=np.int64))
    values, _status = solve_free(matrix, hood.csc, base, free, time_limit)
    if values is None:
        return placement_of(matrix, base), None
    moved = base.copy()
    moved[free] = values
    return placement_of(matrix, base), placement_of(matrix, moved)
