"""One benchmark measurement in its own process (so that peak memory is its own).

    python -m bench.worker SIZE METHOD [--seed N] [--time-limit S]

prints one JSON object on its last line: cost (``placer.cost.price``), bound, wall seconds
of the method alone (the fleet is generated and the modules imported first, and not timed),
peak RSS, and the checks (hard constraints, required-policy violations).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import resource
import sys
import time
from typing import Any

from bench.generate import SIZES, TIME_LIMITS, scale_demand, size_docs, to_fleet
from placer.cost import price
from placer.fleet import Fleet
from placer.placement import Placement, check_hard_constraints
from policies import build_rules

NOW = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
METHODS = ("placer", "cheapest", "most-allocated", "lp-bound", "model-bound", "mip-bound", "full-mip", "replan")


def peak_mib() -> float:
    """Peak RSS of this process or of the largest child it waited for (the route runs HiGHS on a
    small fleet's whole model in a forked child, whose RSS counts the pages it shares with this one)."""
    return max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024.0


def rss_mib() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def throughputs(fleet: Fleet, rules: Any) -> dict[tuple[str, str], float]:
    from placer.optimizer.arrays import build_arrays

    a = build_arrays(fleet, rules)
    names_m = [m.name for m in a.models]
    names_p = [p.name for p in a.pools]
    return {(names_m[m], names_p[p]): float(t)
            for m, p, t in zip(a.pair_model.tolist(), a.pair_pool.tolist(), a.pair_thr.tolist(), strict=True)}


def check(fleet: Fleet, rules: Any, placement: Placement | None,
          current: dict[tuple[str, str], int] | None = None) -> dict[str, Any]:
    if placement is None:
        return {"cost": None, "total": None, "hard": None, "required_violations": None, "unmet": None}
    started = time.monotonic()
    cost = price(fleet, placement, rules, current)
    hard = check_hard_constraints(fleet, placement, throughputs(fleet, rules))
    required = [v for v in cost.violations if v.enforcement == "required"]
    return {
        "cost": cost.objective,
        "total": cost.total,
        "terms": cost.as_dict(),
        "unmet": cost.unmet,
        "hard": len(hard),
        "hard_examples": hard[:3],
        "required_violations": len(required),
        "required_examples": [f"{v.policy}: {v.detail}" for v in required[:3]],
        "check_seconds": time.monotonic() - started,
    }


def moved(before: dict[tuple[str, str], int], after: Placement) -> dict[str, int]:
    keys = set(before) | set(after.replicas)
    started = sum(max(0, after.replicas.get(k, 0) - before.get(k, 0)) for k in keys)
    stopped = sum(max(0, before.get(k, 0) - after.replicas.get(k, 0)) for k in keys)
    return {"started": started, "stopped": stopped}


def run(size: str, method: str, seed: int, time_limit: float) -> dict[str, Any]:
    rules = build_rules(NOW)
    docs = size_docs(size, seed)
    fleet = to_fleet(docs)
    # the modules the methods need are imported before the clock starts (about a second, once per
    # process: pydantic, OR-Tools, scipy, highspy), as the fleet is generated before it
    import bench.baselines  # noqa: F401
    import placer.optimizer.large
    import placer.optimizer.solve  # noqa: F401

    base_rss = rss_mib()
    out: dict[str, Any] = {"size": size, "method": method, "seed": seed, "time_limit": time_limit,
                           "models": len(fleet.models), "pools": len(fleet.pools), "rss_before_mib": base_rss}
    started = time.monotonic()
    if method == "placer":
        from placer.optimizer.solve import optimize

        result = optimize(fleet, rules, time_limit=time_limit)
        out.update(wall=time.monotonic() - started, peak_mib=peak_mib(), status=result.status,
                   objective=result.objective, bound=result.bound, gap=result.gap)
        out.update(check(fleet, rules, result.placement))
    elif method in ("cheapest", "most-allocated"):
        from bench.baselines import cheapest_pool, most_allocated

        plan = (cheapest_pool if method == "cheapest" else most_allocated)(fleet, rules)
        out.update(wall=time.monotonic() - started, peak_mib=peak_mib(), status=plan.status, bound=None)
        out.update(check(fleet, rules, plan.placement))
    elif method == "lp-bound":
        from bench.baselines import lp_bound

        plan = lp_bound(fleet, rules, time_limit=min(900.0, max(600.0, 10 * time_limit)))
        out.update(wall=time.monotonic() - started, peak_mib=peak_mib(), status=plan.status, bound=plan.bound,
                   cost=None)
    elif method == "model-bound":
        from bench.baselines import model_bound

        plan = model_bound(fleet, rules, time_limit=min(1200.0, max(600.0, 10 * time_limit)))
        out.update(wall=time.monotonic() - started, peak_mib=peak_mib(), status=plan.status,
                   bound=plan.bound if math.isfinite(plan.bound) else None, cost=None)
    elif method == "mip-bound":
        from bench.baselines import mip_bound

        plan = mip_bound(fleet, rules, time_limit=max(300.0, 10 * time_limit))
        out.update(wall=time.monotonic() - started, peak_mib=peak_mib(), status=plan.status,
                   bound=plan.bound if math.isfinite(plan.bound) else None, cost=None)
    elif method == "full-mip":
        from bench.baselines import full_mip

        plan = full_mip(fleet, rules, time_limit)
        out.update(wall=time.monotonic() - started, peak_mib=peak_mib(), status=plan.status,
                   bound=plan.bound if math.isfinite(plan.bound) else None)
        out.update(check(fleet, rules, plan.placement))
        if out["cost"] is not None and math.isfinite(plan.bound):  # its own gap, as placer's row gives
            from placer.optimizer.solve import relative_gap

            out["gap"] = relative_gap(out["cost"], plan.bound)
    elif method == "replan":
        from placer.optimizer.solve import optimize

        first = optimize(fleet, rules, time_limit=time_limit)
        first_wall = time.monotonic() - started
        if first.placement is None:
            out.update(wall=first_wall, status="no first plan")
            return out
        current = {k: r for k, r in first.placement.replicas.items() if r > 0}
        changed = to_fleet(scale_demand(docs, seed + 1))
        t0 = time.monotonic()
        second = optimize(changed, rules, current=current, time_limit=time_limit)
        second_wall = time.monotonic() - t0
        out.update(first_wall=first_wall, wall=second_wall, ratio=second_wall / first_wall if first_wall else None,
                   status=second.status, objective=second.objective, bound=second.bound, peak_mib=peak_mib())
        if second.placement is not None:
            out.update(check(changed, rules, second.placement, current))
            out["moves"] = moved(current, second.placement)
            cost = price(changed, second.placement, rules, current)
            out["churn_usd"] = cost.churn
            out["running_usd_per_hour"] = cost.total
            # the same re-plan with churn made 100x dearer: the fewest moves the new demand needs
            sticky_docs = scale_demand(docs, seed + 1)
            for d in sticky_docs:
                if d["kind"] == "Settings":
                    obj = d["spec"].setdefault("objective", {})
                    obj["churnUsdPerReplica"] = 100 * changed.settings.objective.churn_usd_per_replica
            sticky = optimize(to_fleet(sticky_docs), rules, current=current, time_limit=time_limit)
            if sticky.placement is not None:
                out["sticky_moves"] = moved(current, sticky.placement)
                out["sticky_running_usd_per_hour"] = price(changed, sticky.placement, rules, current).total
    else:
        raise SystemExit(f"unknown method {method!r}; methods: {', '.join(METHODS)}")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("size", choices=list(SIZES))
    ap.add_argument("method", choices=METHODS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-limit", type=float, default=None)
    args = ap.parse_args(argv)
    limit = args.time_limit if args.time_limit is not None else TIME_LIMITS[args.size]
    result = run(args.size, args.method, args.seed, limit)
    sys.stdout.write(json.dumps(result, default=str) + "\n")


if __name__ == "__main__":
    main()
