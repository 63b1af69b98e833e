"""Refresh: what the providers really hold, as a State, and its drift from the recorded state.

Each provider read is made through a ``Retrier`` (``placer.retry``): a throttled, failed (5xx) or
timed-out read is tried again, as apply and discovery try theirs; its tries spent, it raises, and
nothing of what was read is kept (the caller writes nothing)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from placer.planfile import Change, deployment_place
from placer.retry import Retrier
from placer.state import State


def reading(address: str, target: dict[str, Any]) -> Change:
    """The no-op change a provider's ``observe`` reads ``address`` at ``target`` (a state entry's) by.
    Its target names the model and pool of its address, as a plan's change does (a recorded one
    without them, of an older placer or edited by hand, failed the gitops provider's read with a
    KeyError)."""
    change = Change(address, "no-op", 0, None, None, (), target)
    names = {"pool": change.pool} if change.model is None else {"model": change.model, "pool": change.pool}
    return replace(change, target={**target, **names})


def _observe(providers: Sequence[Any], address: str, target: dict[str, Any],
             retry: Retrier) -> tuple[bool, dict[str, Any] | None]:
    """(whether some provider handles ``address``, what it reports there)."""
    change = reading(address, target)
    provider = next((p for p in providers if p.handles(change)), None)
    if provider is None:
        return False, None
    return True, retry(partial(provider.observe, change))


def observe_state(state: State, providers: Sequence[Any], retry: Retrier | None = None) -> State:
    """A copy of ``state`` whose replicas and nodes are what the providers report now; ``retry``
    tries each read again after a retryable failure (without it each is made once)."""
    retry = retry or Retrier()
    seen = copy.deepcopy(state)
    for key, entry in state.deployments.items():
        handled, now = _observe(providers, f"deployment/{key}", entry.get("target") or {}, retry)
        if not handled:
            continue
        if now is None:  # kept at 0, for the plan to delete the record (and any replaced copies still to delete)
            seen.deployments[key] = {**entry, "replicas": 0}
        else:
            seen.deployments[key] = {**entry, "replicas": int(now.get("replicas", 0))}
            if now.get("unhealthy") and entry.get("healthy") is not False:
                # healthy when an apply recorded it, not now: marked as an apply marks one whose wait did
                # not pass, with why, so that the refreshed plan applies it again and waits for it
                seen.deployments[key].update(healthy=False, unhealthy=str(now["unhealthy"]))
    for name, entry in state.pools.items():
        handled, now = _observe(providers, f"pool/{name}", entry.get("target") or {}, retry)
        if not handled:
            continue
        if now is None:  # its group is gone: kept without nodes, created again or its record dropped by the plan
            seen.pools[name] = {k: v for k, v in entry.items() if k != "nodes"}
        else:
            seen.pools[name] = {**entry, "nodes": int(now.get("nodes", 0))}
    return seen


def unrecorded(state: State, providers: Sequence[Any], retry: Retrier | None = None) -> list[str]:
    """Deployments placer owns that the providers run and the state does not record (an apply
    killed between a change and its record: refresh said "No drift" while it ran on GPUs the
    planner counts as free), from the providers that can list what placer owns (``observed``),
    each listing through ``retry`` (without it made once)."""
    retry = retry or Retrier()
    contexts = sorted({str(ctx) for e in state.deployments.values()
                       if (ctx := ((e.get("target") or {}).get("kubernetes") or {}).get("context"))})
    lines = []
    for provider in providers:
        observed = getattr(provider, "observed", None)
        if observed is None:
            continue
        cluster_key = getattr(provider, "cluster_key", lambda context: str(context))
        for (model, pool, cluster, namespace), replicas in sorted(retry(partial(observed, contexts or None)).items()):
            entry = state.deployments.get(f"{model}@{pool}")
            if entry is None:
                lines.append(f"deployment/{model}@{pool}: runs {replicas} replica(s) labelled as placer's that the "
                             "state does not record (an apply stopped before recording it?); a plan does not remove "
                             "it: delete it, or apply a plan that places it there")
                continue
            places = set()
            for kept in [entry, *(entry.get("deposed") or [])]:
                context, recorded_namespace = deployment_place(kept.get("target") or {})
                try:
                    places.add((cluster_key(context), recorded_namespace))
                except Exception:  # a context the kubeconfig lacks: its own drift line says so
                    places.add((str(context), recorded_namespace))
            if (cluster, namespace) not in places:
                lines.append(f"deployment/{model}@{pool}: runs {replicas} replica(s) in namespace {namespace} of "
                             f"{cluster}, where the state records none (an apply stopped in the middle of a "
                             "replacement?); a plan does not remove it: delete it there")
    return lines


def unhealthy(state: State) -> list[str]:
    """The deployments the last apply made whose health wait did not pass (``"healthy": false``):
    no drift, what runs is what the state records; said, as the state keeps them to wait for again."""
    return [f"deployment/{key}: the last apply made it, but it did not become healthy; the next plan applies "
            "it again and waits for it" for key, entry in sorted(state.deployments.items())
            if entry.get("healthy") is False]


def unready_pools(state: State) -> list[str]:
    """The pools the last apply grew whose nodes its wait did not see come up (``"healthy": false``: a
    launch refused for capacity or quota, a wait timed out or interrupted), said as ``unhealthy`` says
    deployments: the group keeps the size the state records, and the next plan waits for its nodes."""
    return [(f"pool/{key}: the last apply shrank it to {entry.get('nodes')} nodes, but did not see the group reach "
             "that size; the next plan sizes it again and waits for it") if entry.get("shrank") else
            (f"pool/{key}: the last apply grew it to {entry.get('nodes')} nodes, but did not see them come up; the "
             "next plan waits for them again before it puts anything on them")
            for key, entry in sorted(state.pools.items()) if entry.get("healthy") is False]


def drift(recorded: State, observed: State) -> list[str]:
    """What the providers hold otherwise than the state records: counts, a pool's group gone, and a
    deployment recorded healthy whose status in the cluster says it is not (``observe_state``'s mark)."""
    lines = []
    for key in sorted(set(recorded.deployments) | set(observed.deployments)):
        a = recorded.deployments.get(key, {}).get("replicas")
        b = observed.deployments.get(key, {}).get("replicas")
        if a != b:
            lines.append(f"deployment/{key}: state records {a} replicas, the cluster runs "
                         f"{b or 'none'}")
        why = observed.deployments.get(key, {}).get("unhealthy")
        if why and recorded.deployments.get(key, {}).get("healthy") is not False:
            lines.append(f"deployment/{key}: the state records it healthy, but in the cluster {why}. A plan made "
                         "with --refresh applies it again and waits for it (`placer plan --refresh -o PLAN`, then "
                         "`placer apply PLAN`); a plan without --refresh does not see it")
    for key in sorted(set(recorded.pools) | set(observed.pools)):
        a = recorded.pools.get(key, {}).get("nodes")
        b = observed.pools.get(key, {}).get("nodes")
        if a != b:
            lines.append(f"pool/{key}: state records {a} nodes, the provider has "
                         f"{'no such group' if b is None else b}")
    return lines
