"""Prometheus metrics of a plan, an apply, a what-if and a refresh, in the text exposition format
that node_exporter's textfile collector reads (``--metrics-file``), so that cron and CI runs can be
alerted on without parsing ``--json``. Pure: the plan's JSON (the what-if report, an apply's
outcome) and the fleet's facts in, text out; the CLI writes the text (``planfile.atomic_write``).

Each command has its own prefix (``placer_plan_``, ``placer_apply_``, ``placer_whatif_``,
``placer_refresh_``), so that the files of several commands can sit side by side in one textfile
directory without two of them exporting the same series. Every value is a gauge: each file holds
one run, so nothing counts across runs (no ``_total``). Labels are model, pool, provider, term,
action, side and status, never a plan id or a time. Money is in USD per hour as the fleet and the
plan state it (a one-off amount in USD), time in seconds, rates in each model's own unit per second;
figures are rounded as the plan file's are.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from placer.planfile import rounded

if TYPE_CHECKING:
    from placer.fleet import Fleet

# the plan's cost terms per hour, by the label they get (the total is their sum: `sum(...)`)
COST_TERMS = (("compute", "computeUsdPerHour"), ("egress", "egressUsdPerHour"), ("latency", "latencyUsdPerHour"),
              ("unmet", "unmetUsdPerHour"), ("penalty", "penaltyUsdPerHour"))
SOLVER_STATUSES = ("OPTIMAL", "FEASIBLE", "INFEASIBLE", "UNKNOWN")
CHANGE_ACTIONS = ("create", "update", "delete")  # a no-op changes nothing: not counted
LAST_SUCCESS = "placer_apply_last_success_timestamp_seconds"
# the most (model, pool) pairs placer_plan_replicas has a series each for, unless --metrics-max-pairs
# says otherwise (0: no most): a bench XL plan places 21,742, which, with the rest, made 45,601 samples
# (3.0 MB), near the 50,000 a Prometheus scrape is often capped at (sample_limit), past which the whole
# node_exporter scrape fails, the host's own metrics with it; without them it is 23,859. An L plan
# places 4,638 (9,915 samples in all).
REPLICA_SERIES_MOST = 10_000


@dataclass(frozen=True)
class PoolFacts:
    provider: str
    max_gpus: int  # the most GPUs it can ever have: fixed count, or elastic at its maximum


@dataclass(frozen=True)
class FleetFacts:
    """What the metrics need of the fleet that a plan file does not hold for every pool and model:
    each pool's provider and its most GPUs (a static pool's entry has no target), each model's
    workload. Its pools and models get a series each (0 where nothing is unmet), so that an alert
    does not see a series vanish when the value is 0."""

    pools: Mapping[str, PoolFacts] = field(default_factory=dict)
    workloads: Mapping[str, str] = field(default_factory=dict)  # model -> inference | training | batch


def fleet_facts(fleet: Fleet) -> FleetFacts:
    return FleetFacts(pools={p.name: PoolFacts(p.provider, p.max_gpus) for p in fleet.pools.values()},
                      workloads={m.name: m.workload for m in fleet.models.values()})


# the labels placer's own series carry: a --metrics-label may not take one of these names
OWN_LABELS = ("model", "pool", "provider", "term", "action", "side", "status")


class _Labelled(GaugeMetricFamily):
    """A gauge family whose every sample carries ``fixed`` labels (``--metrics-label``) before its own."""

    def __init__(self, name: str, doc: str, fixed: Mapping[str, str], labels: list[str]) -> None:
        super().__init__(name, doc, labels=[*fixed, *labels])
        self.fixed = list(fixed.values())

    def add_metric(self, labels: Any, value: float, timestamp: Any = None) -> None:
        super().add_metric([*self.fixed, *labels], value, timestamp)


class _Families(Collector):
    """The families a command's metrics file holds, gathered as they are made, written as text; every
    series carries the ``fixed`` labels (``--metrics-label fleet=prod``: the files of several fleets on
    one node_exporter export distinct series, where the same ones were dropped as duplicates)."""

    def __init__(self, fixed: Mapping[str, str] | None = None) -> None:
        self.families: list[Metric] = []
        self.fixed = dict(fixed or {})

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)

    def gauge(self, name: str, doc: str, value: float | None) -> None:
        """One unlabelled gauge, left out where ``value`` is not known."""
        if value is not None:
            family = _Labelled(name, doc, self.fixed, [])
            family.add_metric([], float(value))
            self.families.append(family)

    def labelled(self, name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
        """A gauge with ``labels``, its samples added by the caller (``add_metric``, the values of
        ``labels`` only)."""
        family = _Labelled(name, doc, self.fixed, labels)
        self.families.append(family)
        return family

    def text(self) -> str:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return generate_latest(registry).decode("utf-8")


def _timestamp(text: Any) -> float | None:
    try:
        when = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _provider(entry: Mapping[str, Any], facts: FleetFacts) -> str:
    known = facts.pools.get(str(entry.get("pool")))
    return known.provider if known else str((entry.get("target") or {}).get("provider", ""))


def _max_gpus(entry: Mapping[str, Any], facts: FleetFacts) -> int | None:
    """The pool's most GPUs: the fleet's, else its target's (an elastic managed pool), else, for a pool
    with no target (fixed), its capacity."""
    known = facts.pools.get(str(entry.get("pool")))
    if known is not None:
        return known.max_gpus
    target = entry.get("target") or {}
    if "maxNodes" in target and "gpusPerNode" in target:
        return int(target["maxNodes"]) * int(target["gpusPerNode"])
    capacity = _number(entry.get("gpusCapacity"))
    return None if capacity is None else int(capacity)


def _unmet_by_model(plan: Mapping[str, Any], facts: FleetFacts) -> dict[str, float]:
    """Each inference model's rate unmet: every model the fleet (or the plan's ``models``) has with
    demand, 0 where all is served."""
    unmet: dict[str, float] = {}
    models = plan.get("models") or {}
    for name, entry in models.items():
        if facts.workloads.get(name, "inference") == "inference" and (_number(entry.get("demand")) or 0.0) > 0:
            unmet[name] = 0.0
    for name, workload in facts.workloads.items():
        if workload == "inference" and name not in models:
            unmet[name] = 0.0
    for row in plan.get("unmet") or []:
        unmet[str(row["model"])] = unmet.get(str(row["model"]), 0.0) + float(row["rate"])
    return unmet


def _unplaced_by_model(rows: Mapping[str, int], facts: FleetFacts) -> dict[str, float]:
    """Each training and batch model's replicas not placed, 0 where all are."""
    unplaced: dict[str, float] = {name: 0.0 for name, w in facts.workloads.items() if w != "inference"}
    for name, replicas in rows.items():
        unplaced[name] = float(replicas)
    return unplaced


def plan_metrics(plan: Mapping[str, Any], facts: FleetFacts | None = None, drifted: int | None = None,
                 fixed: Mapping[str, str] | None = None, most_pairs: int | None = None) -> str:
    """The metrics of a plan (its JSON, as the plan file holds it; ``drifted``: what ``--refresh``
    found running other than the state records, or None without a refresh; ``fixed``: the labels
    every series carries; ``most_pairs``: the most (model, pool) pairs placer_plan_replicas has a
    series each for, 0 for no most, None for ``REPLICA_SERIES_MOST``)."""
    facts = facts or FleetFacts()
    cap = REPLICA_SERIES_MOST if most_pairs is None else most_pairs
    solver = plan.get("solver") or {}
    cost = plan.get("cost") or {}
    out = _Families(fixed)
    out.gauge("placer_plan_created_timestamp_seconds", "When the plan was made (its createdAt), in seconds since "
              "the epoch.", _timestamp(plan.get("createdAt")))
    out.gauge("placer_plan_state_serial", "The serial of the state the plan was made from.",
              _number((plan.get("priorState") or {}).get("serial")))
    status = str(solver.get("status", "UNKNOWN"))
    family = out.labelled("placer_plan_solver_status", "1 for the solver's status of the plan, 0 for the others.",
                          ["status"])
    for each in dict.fromkeys((*SOLVER_STATUSES, status)):
        family.add_metric([each], 1.0 if each == status else 0.0)
    out.gauge("placer_plan_objective_usd_per_hour", "The solver's objective: the plan's cost per hour with its "
              "churn (USD/h).", _number(solver.get("objectiveUsdPerHour")))
    out.gauge("placer_plan_bound_usd_per_hour", "The lower bound the solver proved on the objective (USD/h).",
              _number(solver.get("boundUsdPerHour")))
    out.gauge("placer_plan_gap_ratio", "How far the objective may be above the best plan's, at most, as a share "
              "of it.", _number(solver.get("gap")))
    out.gauge("placer_plan_solve_duration_seconds", "How long the solver ran.", _number(solver.get("wallSeconds")))
    family = out.labelled("placer_plan_cost_usd_per_hour", "The plan's cost per hour by term (USD/h); the plan's "
                          "total is their sum.", ["term"])
    for term, key in COST_TERMS:
        family.add_metric([term], _number(cost.get(key)) or 0.0)
    out.gauge("placer_plan_churn_usd", "The one-off cost of the replicas the plan starts (USD).",
              _number(cost.get("churnUsd")))
    out.gauge("placer_plan_cost_before_usd_per_hour", "The total cost per hour at the last apply (USD/h); absent "
              "before the first apply.", _number(plan.get("costBeforeUsdPerHour")))
    family = out.labelled("placer_plan_demand_rate", "Each model's demand, in its own unit per second.", ["model"])
    for model, entry in sorted((plan.get("models") or {}).items()):
        if (_number(entry.get("demand")) or 0.0) > 0:
            family.add_metric([model], float(entry["demand"]))
    family = out.labelled("placer_plan_unmet_demand_rate", "Each inference model's demand the plan leaves "
                          "unserved, in its own unit per second (0 where all is served).", ["model"])
    for model, rate in sorted(_unmet_by_model(plan, facts).items()):
        family.add_metric([model], rate)
    unplaced = {str(r["model"]): int(r["replicas"]) for r in plan.get("unplacedReplicas") or []}
    family = out.labelled("placer_plan_unplaced_replicas", "Each training or batch model's replicas the plan does "
                          "not place (0 where all are).", ["model"])
    for model, replicas in sorted(_unplaced_by_model(unplaced, facts).items()):
        family.add_metric([model], replicas)
    placements = plan.get("placements") or []
    written = not cap or len(placements) <= cap
    when = (f"where there are at most {cap}, none where there are more" if cap else
            "whatever their number (--metrics-max-pairs 0)")
    out.gauge("placer_plan_placements", "The (model, pool) pairs the plan places replicas on; placer_plan_replicas "
              f"has a series for each {when}.", len(placements))
    # said in the file, so that a reader or an alert tells a family left out from a plan that places nothing
    out.gauge("placer_plan_replica_series_left_out", "The placer_plan_replicas series left out of this file (one a "
              "(model, pool) pair the plan places replicas on): all of them where there are more pairs than "
              f"--metrics-max-pairs allows ({cap or 'no most'}); 0 where all are written.",
              0 if written else len(placements))
    if written:
        family = out.labelled("placer_plan_replicas", "The replicas the plan places of each model on each pool.",
                              ["model", "pool"])
        for placed in placements:
            family.add_metric([str(placed["model"]), str(placed["pool"])], float(placed["replicas"]))
    pools = [(e, [str(e["pool"]), _provider(e, facts)], _max_gpus(e, facts)) for e in plan.get("pools") or []]
    for name, key, doc in (("placer_plan_pool_nodes", "nodes", "The nodes the plan gives each pool."),
                           ("placer_plan_pool_used_gpus", "gpusUsed", "The GPUs the plan uses in each pool."),
                           ("placer_plan_pool_capacity_gpus", "gpusCapacity",
                            "The GPUs each pool has at the plan's node count.")):
        family = out.labelled(name, doc, ["pool", "provider"])
        for entry, labels, _ in pools:
            family.add_metric(labels, float(entry[key]))
    family = out.labelled("placer_plan_pool_max_gpus", "The most GPUs each pool can have (a fixed pool's count, "
                          "an elastic one at its maximum).", ["pool", "provider"])
    for _, labels, most in pools:
        if most is not None:
            family.add_metric(labels, float(most))
    family = out.labelled("placer_plan_pool_saturated", "1 for a pool the plan uses all the GPUs it can ever have "
                          "of, else 0.", ["pool", "provider"])
    for entry, labels, most in pools:
        family.add_metric(labels, 1.0 if most and float(entry["gpusUsed"]) >= most else 0.0)
    actions = dict.fromkeys(CHANGE_ACTIONS, 0)
    for change in plan.get("changes") or []:
        if change.get("action") in actions:
            actions[change["action"]] += 1
    family = out.labelled("placer_plan_changes", "The plan's changes by action (none: the infrastructure matches "
                          "the plan).", ["action"])
    for action, count in actions.items():
        family.add_metric([action], float(count))
    out.gauge("placer_plan_drifted_resources", "With --refresh: the deployments and pools the providers run "
              "otherwise than the state records.", drifted)
    return out.text()


def no_plan_metrics(status: str, drifted: int | None = None, fixed: Mapping[str, str] | None = None) -> str:
    """The metrics of a plan whose solve found none (``status``: INFEASIBLE, or UNKNOWN where none came
    in the time limit or placer refused the one that came): the status alone, and the drift a refresh found. A plan's figures (its cost,
    its unmet demand) are left out, none being known; the file of the last plan kept them, stale, and
    said OPTIMAL while every run failed."""
    out = _Families(fixed)
    family = out.labelled("placer_plan_solver_status", "1 for the solver's status of the plan, 0 for the others.",
                          ["status"])
    for each in dict.fromkeys((*SOLVER_STATUSES, status)):
        family.add_metric([each], 1.0 if each == status else 0.0)
    out.gauge("placer_plan_drifted_resources", "With --refresh: the deployments and pools the providers run "
              "otherwise than the state records.", drifted)
    return out.text()


@dataclass(frozen=True)
class ApplyOutcome:
    """What an apply did, for its metrics: ``success``; ``planned``, the plan's changes (None where the
    plan was not read); ``applied``, those made and recorded; ``serial``, the state's serial after it
    (None where the state was not read); ``retries``; ``duration_s``; ``finished_at``, when it ended;
    ``last_success_at``, when an apply last succeeded (this one's ``finished_at`` on success, else the
    previous file's, or None)."""

    success: bool
    duration_s: float
    finished_at: float
    planned: int | None = None
    applied: int | None = None
    serial: int | None = None
    retries: int | None = None
    last_success_at: float | None = None


def apply_metrics(outcome: ApplyOutcome, fixed: Mapping[str, str] | None = None) -> str:
    out = _Families(fixed)
    out.gauge("placer_apply_success", "1 when the apply completed, 0 when it failed or was stopped.",
              1.0 if outcome.success else 0.0)
    out.gauge("placer_apply_finished_timestamp_seconds", "When the apply ended, in seconds since the epoch.",
              outcome.finished_at)
    out.gauge(LAST_SUCCESS, "When an apply last completed, in seconds since the epoch (kept from the previous "
              "file when this one failed).", outcome.last_success_at)
    out.gauge("placer_apply_duration_seconds", "How long the apply ran.", outcome.duration_s)
    out.gauge("placer_apply_changes_planned", "The changes of the plan applied.", outcome.planned)
    out.gauge("placer_apply_changes_applied", "The changes the apply made and recorded.", outcome.applied)
    out.gauge("placer_apply_retries", "The provider calls the apply tried again.", outcome.retries)
    out.gauge("placer_apply_state_serial", "The state's serial once the apply ended.", outcome.serial)
    return out.text()


def previous_value(text: str, name: str, fixed: Mapping[str, str] | None = None) -> float | None:
    """The value of the gauge ``name`` with only the ``fixed`` labels in a metrics file's ``text``, or
    None (none there, or a file that is not the exposition format)."""
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == dict(fixed or {}) and math.isfinite(sample.value):
                    return float(sample.value)
    except (ValueError, TypeError, KeyError, IndexError):
        return None
    return None


def whatif_metrics(report: Mapping[str, Any], collapse: bool | None, demand_scale: float,
                   facts: FleetFacts | None = None, fixed: Mapping[str, str] | None = None) -> str:
    """The metrics of a what-if comparison (``placer.whatif.compare``'s report) by ``side`` (base,
    scenario); ``collapse``: whether the scenario collapses (None: not known, its solve found no plan
    in time, or the base found none, the report then holding the base alone)."""
    facts = facts or FleetFacts()
    sides = [(side, report[side]) for side in ("base", "scenario") if side in report]
    feasible = [(side, entry) for side, entry in sides if entry.get("feasible")]
    out = _Families(fixed)
    out.gauge("placer_whatif_collapse", "1 when the scenario collapses (demand unmet where no pool in reach has "
              "room, every pool in reach that may run it is down, a failed location cut every route to one or holds "
              "the model's data, or no feasible plan), 0 when it does not; NaN when not known: its solve found no plan in time, "
              "or the base has no plan to compare it with (placer_whatif_feasible{side=\"base\"} 0).",
              math.nan if collapse is None else float(collapse))
    out.gauge("placer_whatif_demand_scale", "The scenario's --demand-scale.", demand_scale)
    family = out.labelled("placer_whatif_feasible", "1 for a side with a feasible plan, else 0.", ["side"])
    for side, entry in sides:
        family.add_metric([side], 1.0 if entry.get("feasible") else 0.0)
    family = out.labelled("placer_whatif_cost_usd_per_hour", "Each side's cost per hour by term (USD/h).",
                          ["side", "term"])
    for side, entry in feasible:
        for term, key in COST_TERMS:
            family.add_metric([side, term], rounded(_number(entry["cost"].get(key)) or 0.0))
    totals: list[tuple[str, str, Callable[[Mapping[str, Any]], float]]] = [
            ("placer_whatif_churn_usd", "Each side's one-off cost of the replicas it starts (USD).",
             lambda e: _number(e["cost"].get("churnUsd")) or 0.0),
            ("placer_whatif_demand_rate", "Each side's demand in all, in the models' units per second.",
             lambda e: float(e["demand"])),
            ("placer_whatif_served_rate", "Each side's demand served in all, in the models' units per second.",
             lambda e: float(e["served"])),
            ("placer_whatif_used_gpus", "The GPUs each side uses in all.", lambda e: float(e["gpus"]["used"])),
            ("placer_whatif_capacity_gpus", "The GPUs each side's pools have in all, at its node counts.",
             lambda e: float(e["gpus"]["capacity"]))]
    for name, doc, value in totals:
        family = out.labelled(name, doc, ["side"])
        for side, entry in feasible:
            family.add_metric([side], rounded(value(entry)))
    cut = out.labelled("placer_whatif_cut_off_demand_rate", "The demand of the users at each location the "
                       "scenario fails, cut off with their site: left out of the scenario's demand, not unmet, in the "
                       "models' units per second.", ["location"])
    for name, lost in sorted((report.get("failedLocations") or {}).items()):
        cut.add_metric([name], rounded(float(lost["cutOffRate"])))
    rates = out.labelled("placer_whatif_unmet_demand_rate", "Each side's unserved demand by inference model, in "
                         "its own unit per second.", ["side", "model"])
    replicas = out.labelled("placer_whatif_unplaced_replicas", "Each side's training or batch replicas not placed, "
                            "by model.", ["side", "model"])
    saturated = out.labelled("placer_whatif_pool_saturated", "1 for a pool a side uses all the GPUs it can ever "
                             "have of, or leaves too few GPUs for a replica of a model short of room there, else 0.",
                             ["side", "pool", "provider"])
    for side, entry in feasible:
        unplaced = {str(m): int(n) for m, n in (entry.get("unplaced") or {}).items()}
        unmet = {m: 0.0 for m, w in facts.workloads.items() if w == "inference"}
        for model, amount in (entry.get("unmet") or {}).items():  # its training replicas are counted in it too
            if model not in unplaced:
                unmet[model] = rounded(float(amount))
        for model, rate in sorted(unmet.items()):
            rates.add_metric([side, model], rate)
        for model, short in sorted(_unplaced_by_model(unplaced, facts).items()):
            replicas.add_metric([side, model], short)
        full = set(entry.get("saturated") or [])
        for pool in sorted(set(facts.pools) | full):
            provider = facts.pools[pool].provider if pool in facts.pools else ""
            saturated.add_metric([side, pool, provider], 1.0 if pool in full else 0.0)
    return out.text()


def refresh_metrics(drifted: int, unhealthy: int, unready: int, fixed: Mapping[str, str] | None = None) -> str:
    """``refresh``'s figures: its drift lines, and its notes, the deployments whose health wait did not
    pass (``unhealthy``) and the pools whose new nodes the last apply did not see come up (``unready``:
    a launch refused for capacity or quota, a wait timed out). The pools were counted nowhere, so a
    stockout that left a pool short was no alert while refresh said it on every run."""
    out = _Families(fixed)
    out.gauge("placer_refresh_drifted_resources", "The deployments and pools the providers run otherwise than the "
              "state records.", drifted)
    out.gauge("placer_refresh_unhealthy_deployments", "The deployments the last apply made whose health wait did "
              "not pass.", unhealthy)
    out.gauge("placer_refresh_unready_pools", "The pools the last apply grew whose new nodes it did not see come up "
              "(a launch refused for capacity or quota, a wait timed out).", unready)
    return out.text()
