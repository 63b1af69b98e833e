"""The human summary of a plan, for a terminal (rich tables that line up)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from placer.render.report import (
    COST_TERMS,
    SYMBOLS,
    change_detail,
    counts_line,
    gap_text,
    model_rows,
    rate_column,
    usd_per_million,
)
from placer.render.tables import LABEL, NUMBER, TEXT, print_table

STYLE = {"create": "green", "update": "yellow", "delete": "red"}


def render(plan: dict[str, Any], console: Console, pool_prices: dict[str, float] | None = None) -> None:
    solver = plan.get("solver", {})
    gap = solver.get("gap")
    cost = plan.get("cost", {})
    churn = cost.get("churnUsd") or 0
    # the objective adds the one-off churn to the running cost: a first plan read "objective 266.28
    # USD/h" above a cost table whose total was 217.28, and nothing said why
    parts = (f" ({cost.get('totalUsdPerHour', 0):,.2f} USD/h and {churn:,.2f} USD of one-off churn)"
             if churn else "")
    console.print(Text.assemble(("Solver: ", "bold"), f"{solver.get('status')} in {solver.get('wallSeconds', 0):.2f} s, "
                                f"objective {solver.get('objectiveUsdPerHour', 0):,.2f} USD/h{parts}, bound "
                                f"{solver.get('boundUsdPerHour', 0):,.2f}, gap {gap_text(gap)}"))
    if solver.get("note"):
        console.print(Text(f"  ({solver['note']})", style="dim"))

    # names fold rather than cut (on a CI log's 80 columns "…" made names ending -zone-a and -zone-b
    # one row twice); numbers are never cut (print_table)
    pools = [[p["pool"], f"{p['nodes']:,}", f"{p['gpusUsed']:,} / {p['gpusCapacity']:,}",
              f"{100 * p['gpusUsed'] / p['gpusCapacity']:.0f}%" if p["gpusCapacity"] else "-"]
             for p in plan.get("pools", [])]
    print_table(console, Table(title="Pools", title_justify="left", show_edge=False),
                [("pool", LABEL), ("nodes", NUMBER), ("GPUs used / capacity", NUMBER), ("util", NUMBER)], pools)

    rows = model_rows(plan)
    served_col, unmet_col = rate_column([r[2] for r in rows]), rate_column([r[3] for r in rows])
    models: list[list[str | Text]] = [
        [name, where, served_text, Text(unmet_text, style="red") if unmet else unmet_text]
        for (name, where, _, unmet), served_text, unmet_text in zip(rows, served_col, unmet_col, strict=True)]
    print_table(console, Table(title="Models", title_justify="left", show_edge=False),
                [("model", LABEL), ("placement", TEXT), ("served", NUMBER), ("unmet", NUMBER)], models)
    for r in plan.get("retired", []):
        console.print(f"  retired: {r['model']} ({r['reason']})", style="dim")

    cost = plan.get("cost", {})
    costs = Table(title="Cost (USD/h)", title_justify="left", show_edge=False)
    costs.add_column("term")
    costs.add_column("USD/h", justify="right")
    for label, key in (*COST_TERMS, ("total", "totalUsdPerHour")):
        costs.add_row(label, f"{cost.get(key, 0):,.2f}", style="bold" if key == "totalUsdPerHour" else None)
    costs.add_row("churn (one-off USD)", f"{cost.get('churnUsd', 0):,.2f}")
    console.print(costs)
    per_m = usd_per_million(plan)
    if per_m is not None:
        console.print(f"Cost per million units served: {per_m:,.4f} USD")
    before = plan.get("costBeforeUsdPerHour")
    if isinstance(before, int | float):
        # the cost recorded at the last apply, of the fleet as it was: not what runs now priced
        # against today's demand (a plan serving a moved demand once read "+50" where not applying
        # it left 600 units/s unmet)
        console.print(f"Cost at the last apply: {before:,.2f} USD/h (the fleet as it was then); this plan: "
                      f"{cost.get('totalUsdPerHour', 0):,.2f} USD/h")

    for v in plan.get("violations", []):
        style = "red" if v["enforcement"] == "required" else "yellow"
        console.print(f"  policy {v['policy']} ({v['enforcement']}): {v['detail']}", style=style)

    changes = plan.get("changes", [])
    if changes:
        console.print()
        console.print("Changes (make before break):", style="bold")
    for c in changes:
        sym = SYMBOLS.get(c["action"], "?")
        why = f"  # {'; '.join(c.get('reasons') or [])}" if c.get("reasons") else ""
        console.print(Text.assemble((f"  {sym} {c['address']}", STYLE.get(c["action"], "")),
                                    f"  [phase {c['phase']}] {change_detail(c)}", (why, "dim")))
    console.print()
    console.print(counts_line(plan), style="bold")
