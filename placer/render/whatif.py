"""A what-if comparison for a terminal: base plan beside the scenario."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from placer.explain import COST, CUT, DATA_CUT, DOWN, NO_POOL, POLICY, reason_text
from placer.render.report import COST_TERMS, gap_text, rate_column, rate_format, signed
from placer.render.tables import LABEL, NUMBER, TEXT, print_table
from placer.words import names

UNMET_ROWS = 20  # models listed with unmet demand; --json lists them all
SATURATED_NAMES = 30  # saturated pools named; --json names them all


def render(report: dict[str, Any], console: Console) -> None:
    base, scen = report["base"], report["scenario"]
    console.print(f"What if: {report['description']}", style="bold")
    failed = report.get("failedLocations", {})
    for name, lost in failed.items():
        console.print(_lost_with(name, lost, scen.get("unplaced", {})))
    if not scen.get("feasible"):
        if scen["status"] == "INFEASIBLE":
            console.print(f"The scenario has no feasible plan, a collapse: {scen['conflict']['message']}.",
                          style="red")
        else:
            console.print(f"The solver found no plan for the scenario within the time limit ({scen['status']}); "
                          "raise Settings solver.timeLimitSeconds and try again.", style="yellow")
        return
    rows: list[list[str]] = []

    def row(label: str, a: float, b: float, fmt: str = "{:,.2f}") -> None:
        rows.append([label, fmt.format(a), fmt.format(b), signed(b - a, fmt)])  # as precise as the row

    def paid(cost: dict[str, float], key: str) -> bool:
        return abs(cost.get(key, 0.0)) >= 0.005  # shows as more than 0.00

    row("total USD/h", base["cost"]["totalUsdPerHour"], scen["cost"]["totalUsdPerHour"])
    for label, key in COST_TERMS:  # the terms that add up to the total, those either side pays
        if key == "computeUsdPerHour" or paid(base["cost"], key) or paid(scen["cost"], key):
            row(f"  {label}", base["cost"].get(key, 0.0), scen["cost"].get(key, 0.0))
    # rates as the plan's tables give them: 0.45 units/s printed whole read "0 -> 1, change 0"
    rates = rate_format([base["demand"], scen["demand"], base["served"], scen["served"]])
    row("demand (rate)", base["demand"], scen["demand"], rates)
    for name, lost in failed.items():  # what the scenario's demand is less by: its users went with their site
        if lost["cutOffRate"] > 0:
            row(f"  cut off with {name}", 0.0, lost["cutOffRate"], rate_format([lost["cutOffRate"]]))
    row("served (rate)", base["served"], scen["served"], rates)
    row("GPUs used", base["gpus"]["used"], scen["gpus"]["used"], "{:,.0f}")
    print_table(console, Table(show_edge=False),
                [("", LABEL), ("base", NUMBER), ("scenario", NUMBER), ("change", NUMBER)], rows)
    console.print(f"Solver: base {base['status']} (gap {gap_text(base.get('gap'))}), scenario {scen['status']} "
                  f"(gap {gap_text(scen.get('gap'))})")
    notes = {side: s["gapNote"] for side, s in (("base", base), ("scenario", scen)) if s.get("gapNote")}
    if len(notes) == 2 and notes["base"] == notes["scenario"]:
        console.print(Text(f"  (both: {notes['base']})", style="dim"))
    else:
        for side, note in notes.items():
            console.print(Text(f"  ({side}: {note})", style="dim"))
    moves = scen.get("fromBase")
    if moves is not None:
        console.print(f"Planned from the base plan: {moves['started']:,} replica(s) started, {moves['stopped']:,} "
                      f"stopped (churn {moves['churnUsd']:,.2f} USD once)")
    unmet = scen["unmet"]
    if unmet:
        t = Table(title="Unmet in the scenario (rate, or replicas for training/batch)", title_justify="left",
                  show_edge=False)
        why = scen.get("unmetWhy", {})
        held = scen.get("unmetPolicyPools", {})
        charged = scen.get("unmetPenalties", {})
        gangs = scen.get("unmetGangs", {})
        data_at: dict[str, list[str]] = {}  # model -> the failed locations its data is at (DATA_CUT)
        for name, lost in failed.items():
            for model in lost.get("dataCut", {}):
                data_at.setdefault(model, []).append(name)
        ranked = sorted(unmet.items(), key=lambda kv: (-kv[1], kv[0]))[:UNMET_ROWS]
        unmet_rates = rate_column([base["unmet"].get(m, 0) for m, _ in ranked] + [amount for _, amount in ranked])
        print_table(console, t, [("model", LABEL), ("base", NUMBER), ("scenario", NUMBER), ("why", TEXT)],
                    [[model, unmet_rates[i], unmet_rates[len(ranked) + i],
                      _why(why.get(model, {}), held.get(model, {}), charged.get(model, {}), gangs.get(model),
                           model in scen.get("unplaced", {}), data_at.get(model, ()))]
                     for i, (model, _) in enumerate(ranked)])
        if len(unmet) > UNMET_ROWS:
            rest = [m for m, _ in sorted(unmet.items(), key=lambda kv: (-kv[1], kv[0]))[UNMET_ROWS:]]
            replicas = sum(scen.get("unplaced", {}).get(m, 0) for m in rest)  # training/batch: replicas, not rate
            short = _amount({"rate": sum(unmet[m] for m in rest) - replicas, "replicas": replicas})
            console.print(f"… and {len(rest)} more model(s) short of {short} in all (--json lists every one)")
    _policies(base.get("violations", {}), scen.get("violations", {}), console)
    pools = scen["saturated"]
    if pools:
        # a pool with GPUs left, too few for a replica of a model short of room there, says so
        full = scen.get("fullFor", {})
        named = ", ".join(f"{p} ({full[p]['gpusUsed']:,}/{full[p]['gpusCapacity']:,} GPUs: too few left for a replica "
                          f"of {names(full[p]['models'], 3)})" if p in full else p for p in pools[:SATURATED_NAMES])
        more = f", and {len(pools) - SATURATED_NAMES} more (--json names every one)" if len(pools) > SATURATED_NAMES else ""
        console.print(f"Saturated pools ({len(pools)} full): {named}{more}", style="yellow")
    verdict, collapses = _verdict(scen)
    console.print(f"Verdict: {verdict}.", style="bold red" if collapses else "bold yellow" if unmet else "bold green")


def _lost_with(name: str, lost: dict[str, Any], unplaced: Mapping[str, int]) -> str:
    """What failed location ``name`` takes with it (``whatif.lost_with``), in a line: its pools, its
    links (no path passes through it), its users' demand, cut off with it and not counted unmet, and
    the models whose data is there, unmet for it (``unplaced``: the scenario's training and batch
    models short of replicas, whose amounts are replicas, not rates)."""
    pools = f"pool{'s' if len(lost['pools']) > 1 else ''} {names(lost['pools'], 8)}" if lost["pools"] else "no pool"
    links = (f"link{'s' if len(lost['links']) > 1 else ''} {names([f'{a} <-> {b}' for a, b in lost['links']], 8)} "
             f"(no path passes through {name})") if lost["links"] else "no link"
    cut = lost["cutOff"]
    users = (f"{rate_format([lost['cutOffRate']]).format(lost['cutOffRate'])} units/s of demand from its users "
             f"({names(list(cut), 5)}), cut off with it: counted apart from unmet demand") if cut else \
        "no demand from users there"
    data = lost.get("dataCut", {})
    if data:
        replicas = sum(int(v) for m, v in data.items() if m in unplaced)
        short = _amount({"rate": sum(v for m, v in data.items() if m not in unplaced), "replicas": replicas})
        users += f"; the data of {names(list(data), 5)}: {short} unmet, for no pool that may run them can read it"
    return f"Location {name} down takes with it: {pools}; {links}; {users}."


def _why(amounts: dict[str, float], holds: Mapping[str, Sequence[str]] | None = None,
         charged: Mapping[str, Sequence[str]] | None = None, gang: str | None = None, replicas: bool = False,
         data_at: Sequence[str] = ()) -> str:
    """The reasons a model's demand is unmet, with how much for each where there are several
    (``holds``: the policies that hold it back, for POLICY, each with the pools it holds;
    ``charged``: the preferred policies whose penalty makes serving it cost more, for COST;
    ``gang``: the size of a gang no pool in reach holds whole, for NO_POOL; ``replicas``: a training
    or batch model's replicas are unmet, not rate; ``data_at``: the failed locations its data is at,
    for DATA_CUT)."""
    def text(reason: str) -> str:
        return reason_text(reason, (charged if reason == COST else holds) or {}, gang, replicas, data_at)

    if len(amounts) == 1:
        return text(next(iter(amounts)))
    fmt = rate_format(list(amounts.values()))
    return "; ".join(f"{text(k)} ({fmt.format(v)})" for k, v in sorted(amounts.items(), key=lambda kv: -kv[1]))


def _amount(entry: dict[str, Any]) -> str:
    parts = []
    if entry.get("rate", 0.0) > 1e-6:
        parts.append(f"{rate_format([entry['rate']]).format(entry['rate'])} units/s")
    if entry.get("replicas", 0):
        parts.append(f"{entry['replicas']} training/batch replica(s)")
    return " and ".join(parts)


def _unmet_charges(scen: dict[str, Any], cost: dict[str, Any]) -> str:
    """The setting, or each of the two with its models, that charges what ``cost`` (the rate and the
    replicas left unserved for cost) leaves unmet: unmetUsdPerRate an inference model's rate,
    unmetUsdPerReplica a training or batch model's replicas."""
    rate, replicas = cost.get("rate", 0.0) > 1e-6, bool(cost.get("replicas", 0))
    if not (rate and replicas):
        return f"{'unmetUsdPerRate' if rate else 'unmetUsdPerReplica'} charges"
    unplaced = scen.get("unplaced", {})
    priced = sorted(m for m, why in scen.get("unmetWhy", {}).items() if COST in why)
    per_rate = names([m for m in priced if m not in unplaced], 5)
    per_replica = names([m for m in priced if m in unplaced], 5)
    return f"unmetUsdPerRate (of {per_rate}) and unmetUsdPerReplica (of {per_replica}) charge"


def collapses(scen: dict[str, Any]) -> bool | None:
    """Whether the scenario collapses, as its verdict says (``_verdict``): demand unmet where no pool in
    reach has room, or no feasible plan at all; None where its solve found no plan in the time limit."""
    if not scen.get("feasible"):
        return True if scen.get("status") == "INFEASIBLE" else None
    return _verdict(scen)[1]


def _verdict(scen: dict[str, Any]) -> tuple[str, bool]:
    """The answer to "would it scale or collapse?", and whether it collapses: demand unmet (or
    training replicas unplaced) where no pool in reach has room, every one is down, a failed
    location cut the routes to them, or the model's data is at a failed location. Demand no pool in reach may run
    at all is not served at any scale, demand beyond a model's
    maxReplicas is the model's own limit, demand that required policies hold back where pools have
    room is theirs, and the rest of what pools in reach have room for is left for its cost (serving
    it would cost more than unmetUsdPerRate charges)."""
    share = scen["served"] / scen["demand"] if scen["demand"] else 1.0
    by = scen.get("unmetByReason", {})
    parts = []
    if _amount(by.get("noRoom", {})):
        parts.append(f"{_amount(by['noRoom'])} unmet where no pool in reach has room")
    if _amount(by.get(DOWN, {})):  # no room either, but growing the pools that are up would not serve it
        parts.append(f"{_amount(by[DOWN])} unmet where every pool in reach that may run it is down")
    if _amount(by.get(CUT, {})):  # pools may run it, but the failed location took every route to them
        parts.append(f"{_amount(by[CUT])} unmet where a failed location cut every route within the SLO to a pool "
                     "that may run it")
    if _amount(by.get(DATA_CUT, {})):  # pools may run it, but none up can read its data
        parts.append(f"{_amount(by[DATA_CUT])} unmet where the model's data is at a failed location, which no pool "
                     "that may run it can read")
    if _amount(by.get(NO_POOL, {})):  # no room would serve it: it is unmet at any scale, not a collapse
        rules = "fit rules, required policies, SLO or a gang bigger than any pool" if scen.get("unmetGangs") else \
            "fit rules, required policies or SLO"
        parts.append(f"{_amount(by[NO_POOL])} that no pool in reach may run ({rules}; "
                     "`placer explain` tells each pool's reason)")
    if _amount(by.get("maxReplicas", {})):
        capped = sorted(m for m, r in scen.get("unmetWhy", {}).items() if "maxReplicas" in r)
        parts.append(f"{_amount(by['maxReplicas'])} beyond the maxReplicas of {', '.join(capped[:5])}"
                     f"{f' and {len(capped) - 5} more' if len(capped) > 5 else ''} (raise maxReplicas to serve them)")
    if _amount(by.get(POLICY, {})):
        holds = scen.get("unmetPolicyPools", {})
        # the policies that hold every pool in reach with room of each model they hold back, and the rest
        named = {p for pools in holds.values() for p in pools}
        every = sorted(p for p in named if all(set(h[p]) == set().union(*h.values()) for h in holds.values() if p in h))
        some = sorted(named - set(every))

        def listed(names: list[str]) -> str:
            return f"{', '.join(names[:5])}{f' and {len(names) - 5} more' if len(names) > 5 else ''}"

        who = ([f"{listed(every)} on every pool in reach with room"] if every else []) + (
            [f"{listed(some)} on some of them"] if some else [])
        parts.append(f"{_amount(by[POLICY])} held back by required policies where pools in reach have room "
                     f"({'; '.join(who)}): a pool serves more only with every policy that holds it relaxed "
                     "(`placer explain` names each pool's)")
    if _amount(by.get("cost", {})):
        because = f"serving them would cost more than Settings objective.{_unmet_charges(scen, by['cost'])}"
        if scen.get("gapNote"):  # a re-plan's short search, whose gap (simple prices) says little
            because += (f", or the short search around what runs did not find how to serve them "
                        f"({scen.get('status')}; its gap, {gap_text(scen.get('gap'))}, says little: see the note "
                        "under Solver)")
        elif scen.get("status") != "OPTIMAL":  # a search stopped short may simply not have found how
            because += (f", or the search stopped before it found how to serve them ({scen.get('status')}, gap "
                        f"{gap_text(scen.get('gap'))}; raise Settings solver.timeLimitSeconds)")
        charged = scen.get("unmetPenalties", {})
        policies = sorted({p for pools in charged.values() for p in pools})
        if policies:  # the preferred policies whose penalty is what makes serving cost more
            one = len(policies) == 1
            because += (f"; for {len(charged)} model(s) the {'penalty' if one else 'penalties'} of preferred "
                        f"{'policy' if one else 'policies'} {', '.join(policies[:5])}"
                        f"{f' and {len(policies) - 5} more' if len(policies) > 5 else ''} make{'s' if one else ''} it so "
                        f"(lower {'its' if one else 'their'} penaltyUsdPerHour to serve them)")
        parts.append(f"{_amount(by['cost'])} left unserved though pools in reach have room: {because}")
    if not parts:
        return "scales: all demand is served", False
    collapses = any(_amount(by.get(reason, {})) for reason in ("noRoom", DOWN, CUT, DATA_CUT))
    # training and batch replicas count as the rate does: a fleet of training jobs, every pool down,
    # "partly collapses: 100.00% of demand served" (no rate was asked for, and nothing ran)
    wanted = scen.get("replicasWanted", 0)
    placed = wanted - scen.get("unplacedReplicas", 0)
    nothing = scen["served"] <= 0 and placed <= 0 and (scen["demand"] > 0 or wanted > 0)
    # demand unmet for other reasons than room is no collapse, but no "scales" either: a doubled demand
    # half beyond a maxReplicas read "scales: 50.00% of demand served"
    how = "no collapse, but not all demand is met" if not collapses else "collapses" if nothing else "partly collapses"
    replicas = f"{placed:,} of {wanted:,} training/batch replica(s) placed"
    served = (f"{_percent(share)} of demand served" if scen["demand"] or not wanted else replicas)
    # "100.00% of demand served" of a fleet whose training job is left out; "partly collapses: 0.00%" of one that runs
    if scen["demand"] and wanted and not nothing and (placed < wanted or scen["served"] <= 0):
        served += f" and {replicas}"
    return f"{how}: {served}; {'; '.join(parts)}", collapses


def _percent(share: float) -> str:
    """``share`` (0 to 1) in per cent to two decimals, never rounded to all or nothing where it is
    neither: 1,760 of 3e11 served read "partly collapses: 0.00% of demand served"."""
    if 0 < share < 0.00005:
        return "under 0.01%"
    if 0.99995 <= share < 1:
        return "over 99.99%"
    return f"{100 * share:.2f}%"


def _policies(base: dict[str, Any], scen: dict[str, Any], console: Console) -> None:
    """The preferred policies either plan breaks (a required one is never broken), the dearest in
    the scenario first: how often, and what their penalties cost an hour."""
    names = sorted(set(base) | set(scen), key=lambda p: (-scen.get(p, {}).get("penaltyUsdPerHour", 0.0), p))
    if not names:
        return
    t = Table(title="Preferred policies broken (times, penalty USD/h)", title_justify="left", show_edge=False)
    print_table(console, t, [("policy", LABEL), ("base", NUMBER), ("scenario", NUMBER)],
           [[name, *(f"{side[name]['count']:,} ({side[name]['penaltyUsdPerHour']:,.2f})" if name in side else "0"
                     for side in (base, scen))] for name in names[:UNMET_ROWS]])
    if len(names) > UNMET_ROWS:
        console.print(f"… and {len(names) - UNMET_ROWS} more policies (--json lists every one)")
