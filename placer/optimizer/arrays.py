"""Eligible (model, pool) pairs and SLO-feasible routes as numpy arrays, for fleets of any size.

The same rules as ``placer.candidates.find_candidates`` (fit: node size, memory, GPU
allow-list, throughput listing, spot, data reachability; the Filter of every required
policy; retirement), computed with array operations instead of one Python object per
pair, so that 10,000 models x 1,000 pools take seconds, not hours. Policy filters are
still asked pair by pair (they are opaque behaviours), but only for the models a
required policy selects and the pairs that pass the fit rules.

Layout: pairs are sorted by (model, pool) in fleet order, so the pairs of model m are
``pair_ptr[m]:pair_ptr[m+1]``; routes are sorted by (demand entry, pool), the routes of
entry d being ``route_ptr[d]:route_ptr[d+1]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from placer.candidates import (
    SLO_SLACK_MS,
    Candidates,
    Exclusion,
    Exclusions,
    Pair,
    RouteOption,
    eligibility_warnings,
)
from placer.fleet import Fleet, Model, Pool, model_matches
from placer.policy import Rules, behaviour
from placer.spec import Diagnostic

# SPEC section 1: what a required rule's Filter depends on. allowPools / denyPools decide by the
# policy's pool selector alone; the other rules filter nothing (they constrain or retire).
# Behaviours are injected, so these shortcuts are checked against the real Filter on a
# sample of pairs, and a policy whose Filter disagrees is asked pair by pair.
POOL_ONLY_FILTERS = frozenset({"allowPools", "denyPools"})
NO_FILTER = frozenset({"preferPools", "separateWorkloads", "spread", "maxSpotFraction", "budget", "headroom",
                       "maxModelsPerPool", "retire"})
SAMPLE = 64

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass
class FleetArrays:
    fleet: Fleet
    models: list[Model]
    pools: list[Pool]
    retired: dict[str, str]
    # pools
    pool_per_node: IntArray
    pool_min_nodes: IntArray
    pool_max_nodes: IntArray
    pool_elastic: BoolArray
    pool_price: FloatArray
    pool_spot: BoolArray
    pool_location: IntArray
    pool_domain: IntArray  # failure domain id
    # pairs
    pair_model: IntArray
    pair_pool: IntArray
    pair_c: IntArray
    pair_thr: FloatArray
    pair_max: IntArray
    pair_egress: FloatArray  # sum over data entries of gbPerHour * USD/GB (USD/h at full load)
    pair_ptr: IntArray
    # demand entries of active inference models
    dem_model: IntArray
    dem_index: IntArray  # position in model.spec.demand
    dem_rate: FloatArray  # its rate less what no route of it could serve (``dem_excess``)
    dem_location: IntArray
    route_ptr: IntArray
    # routes
    route_dem: IntArray
    route_pair: IntArray
    route_latency: FloatArray
    # rate of each demand entry beyond what every pool in its reach could serve, were each full of
    # the model's replicas: unmet whatever the plan, so out of the model (``dem_rate`` holds the rest)
    dem_excess: FloatArray = field(default_factory=lambda: np.zeros(0))
    location_names: list[str] = field(default_factory=list)
    domain_names: list[str] = field(default_factory=list)
    # set on arrays restricted to some pairs (``restrict``): the arrays of every eligible pair
    parent: FleetArrays | None = field(default=None, repr=False, compare=False)

    @property
    def n_pairs(self) -> int:
        return len(self.pair_model)

    @property
    def n_routes(self) -> int:
        return len(self.route_dem)

    @cached_property
    def model_index(self) -> dict[str, int]:
        return {m.name: i for i, m in enumerate(self.models)}

    @cached_property
    def pool_index(self) -> dict[str, int]:
        return {p.name: i for i, p in enumerate(self.pools)}

    def restrict(self, keep: BoolArray) -> FleetArrays:
        """The same fleet with only the ``keep`` pairs and their routes (models, pools and demand
        entries unchanged, so their indices hold). A model built on them is the full model with the
        other pairs held at zero: the rules' big-M terms read the full arrays (``parent``)."""
        js = np.flatnonzero(keep)
        renumber = np.full(self.n_pairs, -1, dtype=np.int64)
        renumber[js] = np.arange(len(js))
        routes = np.flatnonzero(keep[self.route_pair])
        pm = self.pair_model[js]
        rd = self.route_dem[routes]
        return replace(
            self,
            pair_model=pm, pair_pool=self.pair_pool[js], pair_c=self.pair_c[js], pair_thr=self.pair_thr[js],
            pair_max=self.pair_max[js], pair_egress=self.pair_egress[js],
            pair_ptr=np.searchsorted(pm, np.arange(len(self.models) + 1)).astype(np.int64),
            route_dem=rd, route_pair=renumber[self.route_pair[routes]], route_latency=self.route_latency[routes],
            route_ptr=np.searchsorted(rd, np.arange(len(self.dem_model) + 1)).astype(np.int64),
            parent=self.parent if self.parent is not None else self,
        )

    @cached_property
    def pair_keys(self) -> IntArray:
        """model * pools + pool per pair: sorted, as pairs are sorted by model, then pool."""
        keys: IntArray = self.pair_model.astype(np.int64) * len(self.pools) + self.pair_pool
        return keys

    @cached_property
    def dem_ptr(self) -> IntArray:
        """Per model, its demand entries: ``dem_ptr[m]:dem_ptr[m + 1]`` (entries are sorted by model)."""
        ptr: IntArray = np.searchsorted(self.dem_model, np.arange(len(self.models) + 1))
        return ptr

    @cached_property
    def model_inference(self) -> BoolArray:
        """Per model: an inference model (training and batch models are not)."""
        return np.array([m.inference for m in self.models], dtype=bool)

    @cached_property
    def by_pool(self) -> tuple[IntArray, IntArray]:
        """(order, ptr): ``order[ptr[p]:ptr[p + 1]]`` are the pairs on pool p, by model."""
        # a stable sort of 16-bit keys is a radix sort: twice as fast on millions of pairs
        key = self.pair_pool.astype(np.int16) if len(self.pools) < 2**15 else self.pair_pool
        order = np.argsort(key, kind="stable")
        return order, np.searchsorted(self.pair_pool[order], np.arange(len(self.pools) + 1))

    def find_pair(self, model: str, pool: str) -> int | None:
        """The index of the pair (model, pool), or None when it is not eligible."""
        mi = self.model_index.get(model)
        pi = self.pool_index.get(pool)
        if mi is None or pi is None:
            return None
        lo, hi = int(self.pair_ptr[mi]), int(self.pair_ptr[mi + 1])
        k = lo + int(np.searchsorted(self.pair_pool[lo:hi], pi))
        return k if k < hi and int(self.pair_pool[k]) == pi else None

    def current_vector(self, current: Mapping[tuple[str, str], int]) -> FloatArray:
        """Replicas running now, per pair (pairs no longer eligible are left out)."""
        out = np.zeros(self.n_pairs)
        known = [(self.model_index.get(m), self.pool_index.get(p), r) for (m, p), r in current.items() if r > 0]
        known = [k for k in known if k[0] is not None and k[1] is not None]
        if not known or not self.n_pairs:
            return out
        mi, pi, reps = (np.array(col) for col in zip(*known, strict=True))
        want = mi.astype(np.int64) * len(self.pools) + pi
        at = np.minimum(np.searchsorted(self.pair_keys, want), self.n_pairs - 1)
        hit = self.pair_keys[at] == want
        out[at[hit]] = reps[hit]
        return out

    def to_candidates(self) -> Candidates:
        """The same answer as ``find_candidates`` (without exclusion reasons), for small fleets."""
        out = Candidates()
        out.retired = dict(self.retired)
        mn = [m.name for m in self.models]
        pn = [p.name for p in self.pools]
        for j in range(self.n_pairs):
            m, p = int(self.pair_model[j]), int(self.pair_pool[j])
            model = self.models[m]
            egress = tuple(
                (src.gb_per_hour, self.fleet.topology.egress_usd_per_gb(src.location, self.pools[p].location.name))
                for src in model.spec.data
            )
            out.pairs[(mn[m], pn[p])] = Pair(mn[m], pn[p], int(self.pair_c[j]), float(self.pair_thr[j]),
                                             int(self.pair_max[j]), egress)
        for model in self.models:
            for i in range(len(model.spec.demand)):
                out.routes[(model.name, i)] = []
        for r in range(self.n_routes):
            d = int(self.route_dem[r])
            j = int(self.route_pair[r])
            m = int(self.dem_model[d])
            out.routes[(mn[m], int(self.dem_index[d]))].append(RouteOption(
                mn[m], int(self.dem_index[d]), self.location_names[int(self.dem_location[d])], pn[int(self.pair_pool[j])],
                float(self.route_latency[r])))
        return out


class ArrayCandidates(Candidates):
    """``FleetArrays.to_candidates`` built on first use of ``pairs`` or ``routes``: a plan of a large
    fleet reads only ``retired``, and building every pair and route object costs a re-plan's time."""

    def __init__(self, arrays: FleetArrays, excluded: Mapping[tuple[str, str], Exclusion] | None = None) -> None:
        """``excluded``: why pairs are out (``candidates.Exclusions``); the arrays keep no reasons."""
        self._arrays = arrays
        self._built: Candidates | None = None
        super().__init__(retired=dict(arrays.retired), excluded=excluded if excluded is not None else {})

    def _build(self) -> Candidates:
        if self._built is None:
            self._built = self._arrays.to_candidates()
        return self._built

    @property
    def pairs(self) -> dict[tuple[str, str], Pair]:
        return self._build().pairs

    @pairs.setter
    def pairs(self, _value: dict[tuple[str, str], Pair]) -> None:
        """Set by the dataclass constructor; the pairs come from the arrays."""

    @property
    def routes(self) -> dict[tuple[str, int], list[RouteOption]]:
        return self._build().routes

    @routes.setter
    def routes(self, _value: dict[tuple[str, int], list[RouteOption]]) -> None:
        """Set by the dataclass constructor; the routes come from the arrays."""


def spans(lo: IntArray, hi: IntArray) -> tuple[IntArray, IntArray]:
    """For ranges [lo_k, hi_k) (of pairs, routes, entries, a CSR's nonzeros): each element's range k
    and the element itself, range by range, without a Python loop over the ranges."""
    n = hi - lo
    k = np.repeat(np.arange(len(n)), n)
    at: IntArray = lo[k] + np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    return k, at


def _gpus_per_replica(per_node: IntArray, gpus: int) -> IntArray:
    fit = per_node // gpus
    out = np.zeros_like(per_node)
    ok = fit > 0
    out[ok] = -(-per_node[ok] // fit[ok])
    return out


def build_arrays(fleet: Fleet, rules: Rules) -> FleetArrays:
    models = list(fleet.models.values())
    pools = list(fleet.pools.values())
    locations = list(fleet.locations)
    loc_index = {n: i for i, n in enumerate(locations)}
    # latency and egress from where demand and data are (rows) to where pools are (columns), the
    # only ones read: every pair of 5,000 edge locations took `validate` 46 s and 400 MB
    sources = {d.location for m in models for d in m.spec.demand} | {s.location for m in models for s in m.spec.data}
    row_of = {n: i for i, n in enumerate(sorted(sources & set(loc_index)))}
    col_of = {n: j for j, n in enumerate(sorted({p.location.name for p in pools}))}
    latency = np.full((len(row_of), len(col_of)), math.inf)
    egress = np.full((len(row_of), len(col_of)), math.inf)
    for name_a, i in row_of.items():
        for name_b, j in col_of.items():
            latency[i, j] = fleet.topology.latency_ms(name_a, name_b)
            egress[i, j] = fleet.topology.egress_usd_per_gb(name_a, name_b)

    # ---------------------------------------------------------------- pools
    per_node = np.array([p.per_node for p in pools], dtype=np.int64)
    pool_loc = np.array([loc_index[p.location.name] for p in pools], dtype=np.int64)
    pool_col = np.array([col_of[p.location.name] for p in pools], dtype=np.int64)  # in latency and egress
    spot = np.array([p.spot for p in pools], dtype=bool)
    type_names = sorted({p.gpu.name for p in pools})
    type_index = {t: i for i, t in enumerate(type_names)}
    pool_type = np.array([type_index[p.gpu.name] for p in pools], dtype=np.int64)
    type_memory = np.array([fleet.gpu_types[t].memory_gib for t in type_names], dtype=np.float64)
    domains: dict[str, int] = {}
    pool_domain = np.array([domains.setdefault(p.failure_domain, len(domains)) for p in pools], dtype=np.int64)

    # ---------------------------------------------------------------- retirement (as find_candidates)
    required = [p for p in fleet.policies if p.required]
    matched = {p.name: [model_matches(p.spec.models, m) for m in models] for p in required}
    retired: dict[str, str] = {}
    for mi, model in enumerate(models):
        for policy in required:
            if not matched[policy.name][mi]:
                continue
            why = behaviour(rules, policy).retires(policy, fleet, model)
            if why:
                retired[model.name] = f"policy {policy.name}: {why}"
                break

    # ---------------------------------------------------------------- policy filters: shortcut per pool where the
    # rule's semantics allow it, verified on a sample, else exact pair by pair
    rng = np.random.default_rng(0)
    pool_excluded: dict[str, BoolArray | None] = {}
    for policy in required:
        name = policy.rule.name
        chosen = [mi for mi, hit in enumerate(matched[policy.name]) if hit and models[mi].name not in retired]
        if not chosen or name not in POOL_ONLY_FILTERS | NO_FILTER:
            pool_excluded[policy.name] = None
            continue
        rule = behaviour(rules, policy)
        if name in POOL_ONLY_FILTERS:
            probe = models[chosen[0]]
            fast = np.array([bool(rule.excludes(policy, fleet, probe, pool)) for pool in pools], dtype=bool)
        else:
            fast = np.zeros(len(pools), dtype=bool)
        sample_m = rng.choice(chosen, size=min(SAMPLE, len(chosen)), replace=False)
        sample_p = rng.integers(0, len(pools), size=len(sample_m)) if pools else np.zeros(0, dtype=np.int64)
        agrees = all(bool(rule.excludes(policy, fleet, models[int(m)], pools[int(p)])) == bool(fast[int(p)])
                     for m, p in zip(sample_m, sample_p, strict=True))
        pool_excluded[policy.name] = fast if agrees else None

    # ---------------------------------------------------------------- fit, model by model (vectorized over pools)
    pair_model: list[IntArray] = []
    pair_pool: list[IntArray] = []
    pair_c: list[IntArray] = []
    pair_thr: list[FloatArray] = []
    pair_max: list[IntArray] = []
    pair_egress: list[FloatArray] = []
    max_gpus = np.array([p.max_gpus for p in pools], dtype=np.int64)
    c_cache: dict[int, IntArray] = {}
    reach_cache: dict[int, BoolArray] = {}
    for mi, model in enumerate(models):
        if model.name in retired:
            continue
        spec = model.spec
        g = spec.replica.gpus
        if g not in c_cache:
            c_cache[g] = _gpus_per_replica(per_node, g)
        c = c_cache[g]
        allowed_type = type_memory >= spec.replica.memory_gi_b_per_gpu
        if spec.gpu_types is not None:
            allowed_type &= np.array([t in spec.gpu_types for t in type_names], dtype=bool)
        thr_type = np.array([spec.throughput.get(t, 0.0) for t in type_names], dtype=np.float64)
        if model.inference:
            allowed_type &= np.array([t in spec.throughput for t in type_names], dtype=bool)
        ok = (c > 0) & allowed_type[pool_type]
        if not spec.spot_tolerant:
            ok &= ~spot
        for src in spec.data:
            li = row_of[src.location]
            if li not in reach_cache:
                reach_cache[li] = np.isfinite(latency[li, pool_col])
            ok &= reach_cache[li]
        for policy in required:
            excluded = pool_excluded[policy.name]
            if excluded is not None and matched[policy.name][mi]:
                ok &= ~excluded
        idx = np.flatnonzero(ok)
        for policy in required:
            if pool_excluded[policy.name] is None and matched[policy.name][mi] and len(idx):
                rule = behaviour(rules, policy)
                keep = np.array([not rule.excludes(policy, fleet, model, pools[p]) for p in idx.tolist()], dtype=bool)
                idx = idx[keep]
        cap = max_gpus[idx] // c[idx]
        if model.inference:
            if spec.max_replicas is not None:
                cap = np.minimum(cap, spec.max_replicas)
        elif spec.replicas is not None:
            cap = np.minimum(cap, spec.replicas)
        eg = np.zeros(len(idx))
        for src in spec.data:
            eg += src.gb_per_hour * egress[row_of[src.location], pool_col[idx]]
        pair_model.append(np.full(len(idx), mi, dtype=np.int64))
        pair_pool.append(idx.astype(np.int64))
        pair_c.append(c[idx])
        pair_thr.append(thr_type[pool_type[idx]])
        pair_max.append(cap.astype(np.int64))
        pair_egress.append(eg)

    def cat(parts: Sequence[npt.NDArray[Any]], dtype: type) -> npt.NDArray[Any]:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    pm = cat(pair_model, np.int64)
    pp = cat(pair_pool, np.int64)
    pair_ptr = np.searchsorted(pm, np.arange(len(models) + 1)).astype(np.int64)

    # ---------------------------------------------------------------- demand entries and routes
    dem_model: list[int] = []
    dem_index: list[int] = []
    dem_rate: list[float] = []
    dem_loc: list[int] = []
    route_dem: list[IntArray] = []
    route_pair: list[IntArray] = []
    route_lat: list[FloatArray] = []
    for mi, model in enumerate(models):
        if model.name in retired or not model.inference:
            continue
        lo, hi = int(pair_ptr[mi]), int(pair_ptr[mi + 1])
        pcol = pool_col[pp[lo:hi]]
        for i, dem in enumerate(model.spec.demand):
            d = len(dem_model)
            li = loc_index[dem.location]
            dem_model.append(mi)
            dem_index.append(i)
            dem_rate.append(dem.rate)
            dem_loc.append(li)
            lat = latency[row_of[dem.location], pcol]
            ok = np.isfinite(lat)
            if dem.latency_slo_ms is not None:
                ok &= lat <= dem.latency_slo_ms + SLO_SLACK_MS
            sel = np.flatnonzero(ok)
            route_dem.append(np.full(len(sel), d, dtype=np.int64))
            route_pair.append(sel + lo)
            route_lat.append(lat[sel])
    rd = cat(route_dem, np.int64)
    route_ptr = np.searchsorted(rd, np.arange(len(dem_model) + 1)).astype(np.int64)
    rp = cat(route_pair, np.int64)
    rate, excess = servable(np.array(dem_rate, dtype=float), rd, rp, cat(pair_thr, np.float64),
                            cat(pair_max, np.int64), np.array([m.spec.max_replicas or 0 for m in models], dtype=np.int64)[dem_model])
    return FleetArrays(
        fleet=fleet,
        models=models,
        pools=pools,
        retired=retired,
        pool_per_node=per_node,
        pool_min_nodes=np.array([p.min_nodes for p in pools], dtype=np.int64),
        pool_max_nodes=np.array([p.max_nodes for p in pools], dtype=np.int64),
        pool_elastic=np.array([p.elastic for p in pools], dtype=bool),
        pool_price=np.array([p.usd_per_gpu_hour for p in pools], dtype=float),
        pool_spot=spot,
        pool_location=pool_loc,
        pool_domain=pool_domain,
        pair_model=pm,
        pair_pool=pp,
        pair_c=cat(pair_c, np.int64),
        pair_thr=cat(pair_thr, np.float64),
        pair_max=cat(pair_max, np.int64),
        pair_egress=cat(pair_egress, np.float64),
        pair_ptr=pair_ptr,
        dem_model=np.array(dem_model, dtype=np.int64),
        dem_index=np.array(dem_index, dtype=np.int64),
        dem_rate=rate,
        dem_excess=excess,
        dem_location=np.array(dem_loc, dtype=np.int64),
        route_ptr=route_ptr,
        route_dem=rd,
        route_pair=rp,
        route_latency=cat(route_lat, np.float64),
        location_names=locations,
        domain_names=list(domains),
    )


def servable(rate: FloatArray, route_dem: IntArray, route_pair: IntArray, pair_thr: FloatArray,
             pair_max: IntArray, max_replicas: IntArray) -> tuple[FloatArray, FloatArray]:
    """(each demand entry's rate that its routes could serve at most, the rest): its routes' pairs
    each full (``pair_max`` replicas serving ``pair_thr`` each), and no more than ``max_replicas``
    (0: none) of the fastest of them. The rest is unmet in every plan, a constant of the objective:
    left in, a demand far beyond the fleet (``placer whatif --demand-scale 1e5``) made the solver's
    relative gap wider than all it could serve, and its first plan, serving nothing, passed as
    optimal."""
    n = len(rate)
    reach = np.bincount(route_dem, weights=(pair_max * pair_thr)[route_pair], minlength=n)
    fastest = np.zeros(n)
    np.maximum.at(fastest, route_dem, pair_thr[route_pair])
    reach = np.where(max_replicas > 0, np.minimum(reach, max_replicas * fastest), reach)
    served = np.minimum(rate, reach)
    return served, rate - served


def fleet_warnings(fleet: Fleet, rules: Rules, arrays: FleetArrays | None = None) -> list[Diagnostic]:
    """``candidates.eligibility_warnings`` from the arrays (``arrays``, when the caller has them): the
    warnings without a Python object per pair (``placer validate`` on bench XL, 10,000 models x 1,000
    pools, took 68 s and 3.6 GB through ``find_candidates``). Why pools are out is asked only of
    models that have none."""
    a = arrays if arrays is not None else build_arrays(fleet, rules)
    index = a.model_index
    pools_of = np.bincount(a.pair_model, minlength=len(a.models))
    routes_of = {(a.models[int(m)].name, int(i)): int(n)
                 for m, i, n in zip(a.dem_model, a.dem_index, np.diff(a.route_ptr), strict=True)}
    served = {(a.models[int(m)].name, int(i)): float(r) for m, i, r in zip(a.dem_model, a.dem_index, a.dem_rate, strict=True)}
    excluded = Exclusions(fleet, rules, a.retired)

    def reasons(model: str) -> list[Exclusion]:
        return [e for e in (excluded.get((model, pool)) for pool in fleet.pools) if e is not None]

    return eligibility_warnings(fleet, a.retired, lambda model: int(pools_of[index[model]]),
                                lambda model, i: routes_of.get((model, i), 0), reasons,
                                lambda model, i: served.get((model, i), 0.0),
                                lambda model: a.pair_max[a.pair_ptr[index[model]]:a.pair_ptr[index[model] + 1]].tolist())
