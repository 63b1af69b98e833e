"""Facts about a plan that every renderer shows: change counts, cost per million, symbols."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from placer.planfile import rounded

SYMBOLS = {"create": "+", "update": "~", "delete": "-", "no-op": " "}

# The running cost's terms (cost.CostBreakdown.as_dict keys), in the order every renderer lists them;
# their sum is totalUsdPerHour.
COST_TERMS = (("compute", "computeUsdPerHour"), ("egress", "egressUsdPerHour"), ("latency", "latencyUsdPerHour"),
              ("unmet demand", "unmetUsdPerHour"), ("policy penalties", "penaltyUsdPerHour"))


def json_report(value: Any) -> str:
    """``value`` (explain's or whatif's report) as indented JSON, every float rounded as the plan
    file's numbers are (``planfile.rounded``: they printed 4800.000000000004 beside the plan's 4800.0)."""

    def each(v: Any) -> Any:
        if isinstance(v, float):
            return rounded(v)
        if isinstance(v, dict):
            return {k: each(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [each(x) for x in v]
        return v

    return json.dumps(each(value), indent=2)


def signed(value: float, fmt: str = "{:,.2f}") -> str:
    """``value`` with its sign, at ``fmt``'s precision: a change that rounds to nothing reads
    0.00 (a plan priced again, or a solver's 1e-10, once read -0.00)."""
    text = fmt.replace("{:", "{:+").format(value)
    return fmt.format(0.0) if float(text.replace(",", "")) == 0 else text


def amount_text(value: float) -> str:
    """A policy violation's amount (replicas, GPUs, USD... as its rule counts): with thousands
    separators and the decimals it has, up to 6 (``:g`` wrote a budget over by 14,814,000 USD/h as
    1.4813e+07)."""
    text = f"{value:,.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def gap_text(gap: Any) -> str:
    """A solver's relative gap in words: a percentage, or n/a where it proved no bound."""
    return f"{100 * gap:.2f}%" if isinstance(gap, int | float) and not isinstance(gap, bool) else "n/a"


def counts(plan: dict[str, Any]) -> dict[str, int]:
    out = {"create": 0, "update": 0, "delete": 0}
    for c in plan.get("changes", []):
        if c["action"] in out:
            out[c["action"]] += 1
    return out


def counts_line(plan: dict[str, Any]) -> str:
    n = counts(plan)
    if not any(n.values()):
        return "No changes. The infrastructure matches the plan."
    return f"Plan: {n['create']} to create, {n['update']} to update, {n['delete']} to delete."


def usd_per_million(plan: dict[str, Any]) -> float | None:
    """The cost of serving (compute + egress + latency, less the training and batch models' own:
    ``servingUsdPerHour``) per million units served (rate is per second). A plan written before
    that field: the whole of compute + egress + latency."""
    served = float(plan.get("servedRate") or 0.0)
    if served <= 0:
        return None
    cost = plan.get("cost", {})
    running = plan.get("servingUsdPerHour")
    if not isinstance(running, int | float) or isinstance(running, bool):
        running = sum(float(cost.get(k, 0.0)) for k in ("computeUsdPerHour", "egressUsdPerHour", "latencyUsdPerHour"))
    return float(running) / (served * 3600.0 / 1e6)


COUNTS = ("replicas", "nodes")


# what a change carries for the providers, not for a reader: a replacement's delete names the new
# place (its reason says it in words)
HIDDEN = frozenset({"replacedBy"})


def _shown(key: str, value: Any) -> str:
    if value is None:
        return "(current)" if key == "context" else "none"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))


def change_detail(change: dict[str, Any]) -> str:
    """A change's before and after in a line: an update shows what it changes; a delete takes counts
    to 0, except a pool's, which is released (placer stops sizing its group; it does not empty it)."""
    before, after = change.get("before") or {}, change.get("after") or {}
    keys = sorted((set(before) | set(after)) - HIDDEN)
    pool = str(change.get("address", "")).startswith("pool/")
    if change["action"] == "update":
        keys = [k for k in keys if before.get(k) != after.get(k)] or keys
    parts = []
    for k in keys:
        if change["action"] == "create":
            parts.append(f"{k} {_shown(k, after.get(k))}")
        elif change["action"] == "delete":
            parts.append(f"{k} {_shown(k, before.get(k))}" + (" -> 0" if k in COUNTS and not pool else ""))
        else:
            parts.append(f"{k} {_shown(k, before.get(k))} -> {_shown(k, after.get(k))}")
    if change["action"] == "delete" and pool:
        parts.append("released: no longer sized by placer")
    return ", ".join(parts)


def model_rows(plan: dict[str, Any]) -> list[tuple[str, str, float | None, float | None]]:
    """(model, placement text, served rate, unmet rate) per model that is placed or short;
    served and unmet are None for models without demand (training, batch: their unplaced
    replicas are in the placement text; an unmet rate of 0 beside them read as nothing missing)."""
    placed: dict[str, list[str]] = {}
    for p in plan.get("placements", []):
        placed.setdefault(p["model"], []).append(f"{p['replicas']}×{p['pool']}")
    served: dict[str, float] = {}
    for r in plan.get("routes", []):
        served[r["model"]] = served.get(r["model"], 0.0) + float(r["rate"])
    unmet: dict[str, float] = {}
    for u in plan.get("unmet", []):
        unmet[u["model"]] = unmet.get(u["model"], 0.0) + float(u["rate"])
    for u in plan.get("unplacedReplicas", []):
        placed.setdefault(u["model"], []).append(f"{u['replicas']} replica(s) unplaced")
    names = sorted(set(placed) | set(unmet))
    demand = plan.get("models", {})
    rows: list[tuple[str, str, float | None, float | None]] = []
    for m in names:
        has_demand = bool(demand.get(m, {}).get("demand", 1.0))
        rows.append((m, ", ".join(placed.get(m, ["-"])), served.get(m, 0.0) if has_demand else None,
                     unmet.get(m, 0.0) if has_demand else None))
    return rows


def rate_format(values: Sequence[float | None]) -> str:
    """The one format of a table's rates: whole numbers without decimals where every value is
    one, else two decimals for all (None is no value); more decimals (up to 6) where a rate that
    is not 0 would read 0 (0.004 units/s unmet read "0", in a table of unmet demand)."""
    whole = all(v is None or abs(v - round(v)) < 0.005 for v in values)
    fmt = "{:,.0f}" if whole else "{:,.2f}"
    for digits in range(3, 7):
        if not any(v and float(fmt.format(v).replace(",", "")) == 0 for v in values):
            break
        fmt = f"{{:,.{digits}f}}"
    return fmt


def rates_apart(values: Sequence[float]) -> str:
    """``rate_format``, with the decimals (up to 6) that tell distinct ``values`` apart: a change
    the tables round away (200 -> 200.004, which took a replica more) read 'demand changed 200 -> 200'."""
    fmt = rate_format(values)
    for digits in range(3, 7):
        if len({fmt.format(v) for v in values}) == len(set(values)):
            break
        fmt = f"{{:,.{digits}f}}"
    return fmt


def rate_column(values: Sequence[float | None]) -> list[str]:
    """A table column of rates in one format (``rate_format``: "30.00" once stood above "500" and
    "1,800"; the pull-request comment showed 0.5 as 0); None is "-" (a model without demand)."""
    fmt = rate_format(values)
    return ["-" if v is None else fmt.format(v) for v in values]
