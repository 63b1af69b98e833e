"""A plan as Markdown, for pull-request comments."""

from __future__ import annotations

from typing import Any

from placer.render.report import SYMBOLS, change_detail, counts_line, model_rows, usd_per_million


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def render(plan: dict[str, Any]) -> str:
    cost = plan.get("cost", {})
    solver = plan.get("solver", {})
    lines = ["### placer plan", ""]
    lines.append(f"**{counts_line(plan)}**")
    lines.append("")
    before = plan.get("costBeforeUsdPerHour")
    after = float(cost.get("totalUsdPerHour", 0.0))
    if isinstance(before, int | float):
        delta = after - before
        lines.append(f"Cost: **{before:,.2f} → {after:,.2f} USD/h** ({delta:+,.2f})")
    else:
        lines.append(f"Cost: **{after:,.2f} USD/h** (no prior apply)")
    per_m = usd_per_million(plan)
    if per_m is not None:
        lines.append(f"Cost per million units served: {per_m:,.4f} USD")
    gap = solver.get("gap")
    gap_text = f"{100 * gap:.2f}%" if isinstance(gap, int | float) else "n/a"
    lines.append(f"Solver: {solver.get('status')} in {solver.get('wallSeconds', 0):.2f} s, gap {gap_text}")
    lines.append("")
    lines += ["| term | USD/h |", "|---|---:|"]
    for label, key in (("compute", "computeUsdPerHour"), ("egress", "egressUsdPerHour"),
                       ("latency", "latencyUsdPerHour"), ("unmet demand", "unmetUsdPerHour"),
                       ("policy penalties", "penaltyUsdPerHour"), ("**total**", "totalUsdPerHour")):
        lines.append(_row([label, f"{cost.get(key, 0):,.2f}"]))
    lines.append(_row(["churn (one-off USD)", f"{cost.get('churnUsd', 0):,.2f}"]))
    lines.append("")
    changes = plan.get("changes", [])
    if changes:
        lines += ["#### Changes", "", "```diff"]
        for c in changes:
            sym = SYMBOLS.get(c["action"], " ")
            why = f"  # {'; '.join(c.get('reasons') or [])}" if c.get("reasons") else ""
            lines.append(f"{sym} {c['address']} [phase {c['phase']}] {change_detail(c)}{why}")
        lines += ["```", ""]
    unmet = plan.get("unmet", [])
    short = plan.get("unplacedReplicas", [])
    if unmet or short:
        lines += ["#### Unmet demand", "", "| model | where | rate |", "|---|---|---:|"]
        lines += [_row([u["model"], u["demandLocation"], f"{u['rate']:,.1f}"]) for u in unmet]
        lines += [_row([u["model"], "(replicas)", str(u["replicas"])]) for u in short]
        lines.append("")
    violations = plan.get("violations", [])
    if violations:
        lines += ["#### Policy violations", "", "| policy | enforcement | amount | detail |", "|---|---|---:|---|"]
        lines += [_row([v["policy"], v["enforcement"], f"{v['amount']:g}", v["detail"]]) for v in violations]
        lines.append("")
    lines += ["<details><summary>Placements</summary>", "", "| model | placement | served | unmet |",
              "|---|---|---:|---:|"]
    lines += [_row([m, where, "-" if s is None else f"{s:,.0f}", f"{u:,.0f}"]) for m, where, s, u in model_rows(plan)]
    lines += ["", "</details>", ""]
    return "\n".join(lines)
