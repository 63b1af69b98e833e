"""A what-if comparison for a terminal: base plan beside the scenario."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def render(report: dict[str, Any], console: Console) -> None:
    base, scen = report["base"], report["scenario"]
    console.print(f"What if: {report['description']}", style="bold")
    if not scen.get("feasible"):
        if scen["status"] == "INFEASIBLE":
            console.print(f"The scenario has no feasible plan, a collapse: {scen['conflict']['message']}.",
                          style="red")
        else:
            console.print(f"The solver found no plan for the scenario within the time limit ({scen['status']}); "
                          "raise Settings solver.timeLimitSeconds and try again.", style="yellow")
        return
    table = Table(show_edge=False)
    table.add_column("")
    table.add_column("base", justify="right")
    table.add_column("scenario", justify="right")
    table.add_column("change", justify="right")

    def row(label: str, a: float, b: float, fmt: str = "{:,.2f}") -> None:
        table.add_row(label, fmt.format(a), fmt.format(b), fmt.replace("{:", "{:+").format(b - a))  # as precise as the row

    row("total USD/h", base["cost"]["totalUsdPerHour"], scen["cost"]["totalUsdPerHour"])
    row("compute USD/h", base["cost"]["computeUsdPerHour"], scen["cost"]["computeUsdPerHour"])
    row("demand (rate)", base["demand"], scen["demand"], "{:,.0f}")
    row("served (rate)", base["served"], scen["served"], "{:,.0f}")
    row("GPUs used", base["gpus"]["used"], scen["gpus"]["used"], "{:,.0f}")
    console.print(table)
    unmet = scen["unmet"]
    if unmet:
        t = Table(title="Unmet in the scenario (rate, or replicas for training/batch)", title_justify="left",
                  show_edge=False)
        t.add_column("model")
        t.add_column("base", justify="right")
        t.add_column("scenario", justify="right")
        for model, amount in sorted(unmet.items(), key=lambda kv: -kv[1]):
            t.add_row(model, f"{base['unmet'].get(model, 0):,.1f}", f"{amount:,.1f}")
        console.print(t)
    if scen["saturated"]:
        console.print(f"Saturated pools (at their maximum): {', '.join(scen['saturated'])}", style="yellow")
    short = max(0.0, scen["demand"] - scen["served"])
    share = scen["served"] / scen["demand"] if scen["demand"] else 1.0
    replicas = int(scen.get("unplacedReplicas", 0))
    if short > 1e-6:
        verdict = f"partly collapses: {100 * share:.2f}% of demand served, {short:,.1f} units/s unmet"
        if replicas:
            verdict += f", and {replicas} training/batch replica(s) unplaced"
    elif unmet:
        verdict = "scales for inference; some training/batch replicas go unplaced"
    else:
        verdict = "scales: all demand is served"
    console.print(f"Verdict: {verdict}.", style="bold green" if not unmet else "bold red")
