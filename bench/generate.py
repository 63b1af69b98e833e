"""Seeded generator of SPEC-format fleets of any size, for benchmarks and tests.

``generate(models, pools, seed)`` returns the fleet's documents as plain YAML-shaped dicts
(apiVersion, kind, metadata, spec); ``to_fleet`` validates and resolves them through the
same loader and ``placer.fleet.build_fleet`` as a fleet read from disk; ``write_fleet``
writes them as a fleet directory. The same seed always gives the same fleet.

What a generated fleet looks like:
- locations in three jurisdictions (US, EU, APAC), each an on-prem data centre, a cloud
  region or an edge site, on a connected topology (a spanning tree plus nearest-neighbour
  links inside each jurisdiction, backbone links between them); latency grows with
  distance, egress is charged on links that touch a cloud;
- fixed on-prem pools (DGX-like nodes at an amortised price), elastic on-demand and spot
  cloud pools (aws / gcp, list prices with regional variation), and small fixed edge
  pools; several pools of one GPU type in one place share a price, as real node groups do;
- models of mixed sizes (1 to 8 GPUs a replica, 8 to 130 GiB a GPU), inference with
  demand at 1-3 locations, latency SLOs, data to read and replica bounds, plus some
  training (gang) and batch models; demand is scaled so that cheap fixed capacity is
  oversubscribed and the cloud takes the rest, and every demand entry has a cloud region
  within its SLO, so a good plan leaves nothing unmet;
- a policy mix: EU data residency (allowPools), a spot cap, spread over failure domains
  for critical models, headroom on on-prem pools, no training or batch at the edge, and a
  preferred rule (one team prefers on-prem).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from placer.fleet import Fleet, build_fleet
from placer.spec import API_VERSION, Document, FleetError, RawDocument, load_document
from placer.spec.writer import dump_all

SIZES: dict[str, tuple[int, int]] = {
    "T": (12, 8),  # tiny, for tests
    "S": (50, 20),
    "M": (500, 100),
    "L": (2_000, 300),
    "XL": (10_000, 1_000),
}
TIME_LIMITS: dict[str, float] = {"T": 5.0, "S": 5.0, "M": 5.0, "L": 30.0, "XL": 120.0}

JURISDICTIONS = ("US", "EU", "APAC")
JURISDICTION_WEIGHT = (0.4, 0.35, 0.25)
CENTRES = {"US": (0.0, 0.0), "EU": (70.0, 10.0), "APAC": (140.0, -15.0)}
SPREAD_MS = 18.0

# On-demand cloud list price (USD per GPU-hour) and speed relative to an H100.
CLOUD_PRICE = {
    "H200-141GB": 4.6, "H100-80GB": 3.9, "A100-80GB": 2.5, "A100-40GB": 1.8, "L40S-48GB": 1.45,
    "L4-24GB": 0.75, "A10G-24GB": 1.0, "T4-16GB": 0.5, "Orin-64GB": 0.45,
}
SPEED = {
    "H200-141GB": 1.35, "H100-80GB": 1.0, "A100-80GB": 0.62, "A100-40GB": 0.58, "L40S-48GB": 0.5,
    "L4-24GB": 0.2, "A10G-24GB": 0.19, "T4-16GB": 0.09, "Orin-64GB": 0.12,
}
MEMORY = {
    "H200-141GB": 141, "H100-80GB": 80, "A100-80GB": 80, "A100-40GB": 40, "L40S-48GB": 48,
    "L4-24GB": 24, "A10G-24GB": 24, "T4-16GB": 16, "Orin-64GB": 64,
}
ONPREM_TYPES = (("H100-80GB", 0.3), ("A100-80GB", 0.3), ("A100-40GB", 0.15), ("L40S-48GB", 0.25))
CLOUD_TYPES = {
    "aws": (("H200-141GB", 0.08), ("H100-80GB", 0.25), ("A100-80GB", 0.2), ("A100-40GB", 0.1),
            ("L40S-48GB", 0.12), ("L4-24GB", 0.13), ("A10G-24GB", 0.12)),
    "gcp": (("H200-141GB", 0.08), ("H100-80GB", 0.25), ("A100-80GB", 0.2), ("A100-40GB", 0.12),
            ("L4-24GB", 0.2), ("T4-16GB", 0.15)),
}
# Real region names for each cloud site's pools, by jurisdiction, the site's number picking one in
# turn: `placer validate` refuses an AWS region botocore does not list and a malformed GCP zone.
REGIONS = {
    "aws": {"US": ("us-east-1", "us-east-2", "us-west-2", "us-west-1", "ca-central-1"),
            "EU": ("eu-west-1", "eu-central-1", "eu-west-2", "eu-west-3", "eu-north-1", "eu-south-1"),
            "APAC": ("ap-northeast-1", "ap-southeast-1", "ap-southeast-2", "ap-south-1", "ap-northeast-2")},
    "gcp": {"US": ("us-central1", "us-east1", "us-east4", "us-west1", "us-west4"),
            "EU": ("europe-west4", "europe-west1", "europe-west3", "europe-west2", "europe-north1"),
            "APAC": ("asia-northeast1", "asia-southeast1", "australia-southeast1", "asia-south1", "asia-east1")},
}
EDGE_TYPES = (("L4-24GB", 0.5), ("T4-16GB", 0.3), ("Orin-64GB", 0.2))
TEAMS = ("search", "assistant", "ads", "media", "vision", "speech", "research", "risk")


@dataclass
class _Loc:
    name: str
    env: str
    jur: str
    xy: tuple[float, float]


def _doc(kind: str, name: str, spec: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = dict(labels)
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": dict(spec)}


def _pick(rng: np.random.Generator, table: Iterable[tuple[str, float]]) -> str:
    names, weights = zip(*table, strict=True)
    w = np.asarray(weights, dtype=float)
    return str(names[int(rng.choice(len(names), p=w / w.sum()))])


def _round(x: float, step: float = 0.01) -> float:
    return round(round(x / step) * step, 4)


def _dist(a: _Loc, b: _Loc) -> float:
    return math.hypot(a.xy[0] - b.xy[0], a.xy[1] - b.xy[1])


# ---------------------------------------------------------------- locations and links


def _locations(rng: np.random.Generator, n_pools: int) -> list[_Loc]:
    n = max(6, round(n_pools / 7))
    out: list[_Loc] = []
    counters: dict[str, int] = {}
    jurs = [JURISDICTIONS[i % 3] for i in range(3)]  # every jurisdiction at least once
    jurs += [str(j) for j in rng.choice(JURISDICTIONS, size=n - 3, p=JURISDICTION_WEIGHT)]
    for i, jur in enumerate(jurs):
        # each jurisdiction gets a cloud region and an on-prem site first
        seen = sum(1 for loc in out if loc.jur == jur)
        if seen == 0:
            env = "cloud"
        elif seen == 1:
            env = "onprem"
        else:
            env = str(rng.choice(["onprem", "cloud", "edge"], p=[0.25, 0.45, 0.30]))
        cx, cy = CENTRES[jur]
        xy = (cx + float(rng.normal(0, SPREAD_MS)), cy + float(rng.normal(0, SPREAD_MS)))
        key = f"{env}-{jur.lower()}"
        counters[key] = counters.get(key, 0) + 1
        out.append(_Loc(f"{key}-{counters[key]:03d}", env, jur, xy))
        del i
    return out


def _links(rng: np.random.Generator, locs: list[_Loc]) -> list[dict[str, Any]]:
    edges: dict[tuple[str, str], tuple[float, float]] = {}

    def egress(a: _Loc, b: _Loc, backbone: bool) -> float:
        cloud = a.env == "cloud" or b.env == "cloud"
        if backbone:
            return 0.05 if cloud else 0.03
        return 0.02 if cloud else 0.0

    def add(a: _Loc, b: _Loc, backbone: bool = False) -> None:
        key = (a.name, b.name) if a.name < b.name else (b.name, a.name)
        if key in edges or a.name == b.name:
            return
        lat = _round(1.0 + _dist(a, b) * float(rng.uniform(1.0, 1.3)), 0.1)
        edges[key] = (lat, egress(a, b, backbone))

    by_jur: dict[str, list[_Loc]] = {j: [x for x in locs if x.jur == j] for j in JURISDICTIONS}
    for members in by_jur.values():
        core = [x for x in members if x.env != "edge"]
        # spanning tree (Prim) over the core sites, then each site to its nearest neighbour
        inside = [core[0]]
        rest = core[1:]
        while rest:
            a, b = min(((a, b) for a in inside for b in rest), key=lambda ab: _dist(*ab))
            add(a, b)
            inside.append(b)
            rest.remove(b)
        for a in core:
            near = sorted((b for b in core if b is not a), key=lambda b, a=a: _dist(a, b))[:2]
            for b in near:
                add(a, b)
        for e in (x for x in members if x.env == "edge"):
            near = sorted(core, key=lambda b, e=e: _dist(e, b))
            for b in near[: 1 + int(rng.random() < 0.5)]:
                add(e, b)
    for i, ja in enumerate(JURISDICTIONS):
        for jb in JURISDICTIONS[i + 1:]:
            core_a = [x for x in by_jur[ja] if x.env != "edge"]
            core_b = [x for x in by_jur[jb] if x.env != "edge"]
            pairs = sorted(((a, b) for a in core_a for b in core_b), key=lambda ab: _dist(*ab))
            for a, b in pairs[:2]:
                add(a, b, backbone=True)
    return [
        _doc("Link", f"l-{a}--{b}"[:63].rstrip("-"), {"between": [a, b], "latencyMs": lat, "egressUsdPerGB": eg})
        for (a, b), (lat, eg) in sorted(edges.items())
    ]


# ---------------------------------------------------------------- pools


def _region(provider: str, loc: _Loc) -> str:
    """The real region a cloud site's pools of ``provider`` are in: its jurisdiction's, by the site's number."""
    regions = REGIONS[provider][loc.jur]
    return regions[(int(loc.name.rsplit("-", 1)[1]) - 1) % len(regions)]


def _pools(rng: np.random.Generator, locs: list[_Loc], n_pools: int) -> list[dict[str, Any]]:
    weight = {"onprem": 6.0, "cloud": 7.0, "edge": 1.5}
    w = np.array([weight[x.env] for x in locs])
    counts = np.ones(len(locs), dtype=int)
    extra = n_pools - len(locs)
    if extra < 0:
        counts = np.zeros(len(locs), dtype=int)
        counts[rng.choice(len(locs), size=n_pools, replace=False)] = 1
    else:
        counts += rng.multinomial(extra, w / w.sum())
    out: list[dict[str, Any]] = []
    for loc, k in zip(locs, counts, strict=True):
        site_price: dict[tuple[str, bool], float] = {}
        provider = "aws" if rng.random() < 0.55 else "gcp"
        region_factor = float(rng.uniform(0.95, 1.15))
        for j in range(int(k)):
            name = f"{loc.name}-p{j:02d}"
            labels = {"site": loc.name}
            if loc.env == "onprem":
                gpu = _pick(rng, ONPREM_TYPES)
                per_node = 8 if gpu != "L40S-48GB" else int(rng.choice([4, 8]))
                key = (gpu, False)
                if key not in site_price:
                    site_price[key] = _round(CLOUD_PRICE[gpu] * float(rng.uniform(0.3, 0.45)), 0.05)
                hall = "a" if rng.random() < 0.5 else "b"
                spec: dict[str, Any] = {
                    "location": loc.name,
                    "provider": "kubernetes" if rng.random() < 0.8 else "static",
                    "gpu": {"type": gpu, "perNode": per_node},
                    "nodes": {"count": int(rng.integers(2, 13))},
                    "usdPerGpuHour": site_price[key],
                    "failureDomain": f"{loc.name}-hall-{hall}",
                }
                if spec["provider"] == "kubernetes":
                    spec["target"] = {"kubernetes": {"context": loc.name, "namespace": "inference"}}
            elif loc.env == "cloud":
                gpu = _pick(rng, CLOUD_TYPES[provider])
                if provider == "gcp" and gpu != "H200-141GB":  # a2/a3/g2 machine shapes: 1, 2, 4 or 8 GPUs
                    per_node = int(rng.choice([1, 2, 4, 8]))
                elif gpu in ("H200-141GB", "H100-80GB", "A100-80GB", "A100-40GB"):
                    per_node = 8  # p4d / p5 / p5e
                else:
                    per_node = int(rng.choice([1, 4, 8]))  # g5 / g6 / g6e
                spot = bool(rng.random() < 0.35)
                key = (gpu, spot)
                if key not in site_price:
                    factor = float(rng.uniform(0.3, 0.45)) if spot else region_factor
                    site_price[key] = _round(CLOUD_PRICE[gpu] * factor)
                zone = "abc"[int(rng.integers(0, 3))]
                spec = {
                    "location": loc.name,
                    "provider": provider,
                    "gpu": {"type": gpu, "perNode": per_node},
                    "nodes": {"min": 0, "max": int(rng.integers(2, 17))},
                    "usdPerGpuHour": site_price[key],
                    "spot": spot,
                    "failureDomain": f"{loc.name}-{zone}",
                }
                region = _region(provider, loc)
                if provider == "aws":
                    spec["target"] = {"aws": {"region": region, "autoScalingGroupName": name}}
                else:
                    spec["target"] = {"gcp": {"project": "acme-ml", "zone": f"{region}-{zone}",
                                              "instanceGroupManager": name}}
                labels["spot"] = "yes" if spot else "no"
            else:
                gpu = _pick(rng, EDGE_TYPES)
                per_node = 1 if gpu == "Orin-64GB" else int(rng.choice([1, 2, 4]))
                key = (gpu, False)
                if key not in site_price:
                    site_price[key] = _round(CLOUD_PRICE[gpu] * float(rng.uniform(0.5, 0.8)), 0.05)
                spec = {
                    "location": loc.name,
                    "provider": "kubernetes",
                    "gpu": {"type": gpu, "perNode": per_node},
                    "nodes": {"count": int(rng.integers(1, 7))},
                    "usdPerGpuHour": site_price[key],
                    "target": {"kubernetes": {"context": loc.name, "namespace": "edge"}},
                }
            out.append(_doc("Pool", name, spec, labels))
    return out


# ---------------------------------------------------------------- models


@dataclass
class _Shape:
    gpus: int
    memory: float
    per_gpu: float  # tokens/s per GPU on an H100


def _shape(rng: np.random.Generator, workload: str) -> _Shape:
    if workload == "training":
        return _Shape(8, float(rng.uniform(55, 78)), 0.0)
    if workload == "batch":
        return _Shape(int(rng.choice([1, 2])), float(rng.uniform(10, 40)), 0.0)
    r = rng.random()
    if r < 0.45:
        return _Shape(1, float(rng.uniform(6, 15)), float(rng.uniform(2800, 4500)))
    if r < 0.75:
        return _Shape(1, float(rng.uniform(18, 38)), float(rng.uniform(1200, 2200)))
    if r < 0.93:
        return _Shape(int(rng.choice([2, 4])), float(rng.uniform(40, 75)), float(rng.uniform(500, 1000)))
    return _Shape(8, float(rng.uniform(60, 130)), float(rng.uniform(250, 450)))


def _models(rng: np.random.Generator, n_models: int, locs: list[_Loc], pools: list[dict[str, Any]],
            lat: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    by_jur = {j: [x for x in locs if x.jur == j] for j in JURISDICTIONS}
    core_by_jur = {j: [x for x in v if x.env != "edge"] for j, v in by_jur.items()}
    # on-demand cloud offers (location, jurisdiction, type, perNode): every model fits one, and
    # every SLO reaches one, so that demand can always be served
    offers = [(p["spec"]["location"], p["spec"]["location"].split("-")[1].upper(), p["spec"]["gpu"]["type"],
               p["spec"]["gpu"]["perNode"]) for p in pools if "min" in p["spec"]["nodes"] and not p["spec"].get("spot")]

    def fitting(memory: float, gpus: int, resident: bool) -> list[str]:
        ok = {t for (_, j, t, pn) in offers if pn >= gpus and MEMORY[t] >= memory and (not resident or j == "EU")}
        return [t for t in CLOUD_PRICE if t in ok]

    raw: list[dict[str, Any]] = []
    weights: list[float] = []
    for i in range(n_models):
        u = rng.random()
        workload = "inference" if u < 0.88 else ("training" if u < 0.93 else "batch")
        jur = str(rng.choice(JURISDICTIONS, p=JURISDICTION_WEIGHT))
        team = str(rng.choice(TEAMS))
        shape = _shape(rng, workload)
        eu_resident = jur == "EU" and rng.random() < 0.4
        fits = fitting(shape.memory, shape.gpus, eu_resident)
        if not fits:  # no on-demand offer is large enough: shrink the model to one that fits
            shape = _Shape(1, 12.0, shape.per_gpu or 3000.0)
            fits = fitting(shape.memory, shape.gpus, eu_resident)
        if not fits and eu_resident:  # tiny fleets may have no on-demand offer in the EU
            eu_resident = False
            fits = fitting(shape.memory, shape.gpus, eu_resident)
        if not fits:  # nor any at all: list every type (the model may stay unplaced)
            fits = list(CLOUD_PRICE)
        labels = {"team": team, "home": jur.lower()}
        spec: dict[str, Any] = {
            "workload": workload,
            "version": f"{int(rng.integers(1, 5))}.{int(rng.integers(0, 10))}",
            "replica": {"gpus": shape.gpus, "memoryGiBPerGpu": _round(shape.memory, 0.5)},
        }
        if eu_resident:
            labels["data"] = "eu"
        home = core_by_jur[jur]
        if workload == "inference":
            listed = [t for t in fits if not (len(fits) > 2 and rng.random() < 0.12)] or fits
            spec["throughput"] = {
                t: _round(shape.per_gpu * SPEED[t] * shape.gpus * float(rng.uniform(0.9, 1.1)), 1.0)
                for t in listed
            }
            if rng.random() < 0.1 and len(listed) > 2:
                best = sorted(listed, key=lambda t: -SPEED[t])[:2]
                spec["gpuTypes"] = best
                listed = best
            n_dem = 1 + int(rng.random() < 0.5) + int(rng.random() < 0.15)
            pool_locs = by_jur[jur] if (eu_resident or rng.random() < 0.85) else locs
            where = rng.choice(len(pool_locs), size=min(n_dem, len(pool_locs)), replace=False)
            share = rng.dirichlet(np.ones(len(where)))
            demand = []
            clouds = sorted({loc for (loc, j, t, pn) in offers if t in listed and pn >= shape.gpus
                             and (not eu_resident or j == "EU")})
            for j, s in zip(where, share, strict=True):
                loc = pool_locs[int(j)].name
                entry: dict[str, Any] = {"location": loc, "rate": float(s)}
                tier = rng.random()
                if tier > 0.25:
                    nearest = min((lat[loc][c] for c in clouds), default=math.inf)
                    slo = 25.0 if tier < 0.45 else (60.0 if tier < 0.7 else 150.0)
                    if math.isfinite(nearest):
                        slo = max(slo, math.ceil(nearest + 5.0))
                        entry["latencySloMs"] = float(slo)
                demand.append(entry)
            spec["demand"] = demand
            r = rng.random()
            if r < 0.3:
                spec["minReplicas"] = 1
            elif r < 0.6:
                spec["minReplicas"] = 2
                # critical: spread over two failure domains, for models that two cloud regions can host
                where_ok = {loc for (loc, j, t, pn) in offers if t in listed and pn >= shape.gpus
                            and (not eu_resident or j == "EU")}
                if rng.random() < 0.45 and len(where_ok) >= 2:
                    labels["tier"] = "critical"
            if shape.gpus >= 4 and rng.random() < 0.2:
                spec["maxReplicas"] = int(rng.integers(8, 20))
            spec["spotTolerant"] = bool(rng.random() < 0.35)
            if rng.random() < 0.3 and home:
                src = home[int(rng.integers(0, len(home)))]
                spec["data"] = [{"location": src.name, "gbPerHour": _round(float(rng.uniform(1, 30)), 0.5)}]
            # size: H100-replica equivalents (lognormal), scaled below to the fleet's capacity
            weights.append(float(rng.lognormal(1.0, 0.8)))
        else:
            spec["gpuTypes"] = [t for t in fits if t in ("H200-141GB", "H100-80GB", "A100-80GB")] or fits
            spec["replicas"] = int(rng.integers(1, 5)) if workload == "training" else int(rng.integers(1, 17))
            spec["spotTolerant"] = bool(rng.random() < (0.3 if workload == "training" else 0.8))
            if home:
                src = home[int(rng.integers(0, len(home)))]
                gb = rng.uniform(100, 500) if workload == "training" else rng.uniform(5, 50)
                spec["data"] = [{"location": src.name, "gbPerHour": _round(float(gb), 0.5)}]
            weights.append(0.0)
        if rng.random() < 0.1:
            spec["priority"] = int(rng.choice([50, 100]))
        labels.setdefault("tier", "standard")
        raw.append(_doc("Model", f"m{i:05d}-{team}", spec, labels))

    # demand: each inference model wants w H100-replica equivalents (lognormal, median ~2.7)
    for d, w in zip(raw, weights, strict=True):
        s = d["spec"]
        if s["workload"] != "inference":
            continue
        h100_rate = s["throughput"].get("H100-80GB") or max(s["throughput"].values()) / SPEED[
            max(s["throughput"], key=lambda t: SPEED[t])]
        for entry in s["demand"]:
            entry["rate"] = _round(max(10.0, entry["rate"] * w * h100_rate), 1.0)
        if "maxReplicas" in s:  # a cap the demand can live with, on its slowest listed GPU
            slowest = min(s["throughput"].values())
            s["maxReplicas"] = max(s["maxReplicas"], math.ceil(sum(e["rate"] for e in s["demand"]) / slowest) + 2)
    return raw


def _fit_capacity(pools: list[dict[str, Any]], models: list[dict[str, Any]], fixed_share: float,
                  elastic_share: float) -> None:
    """Scale node counts so that fixed pools hold ``fixed_share`` of the GPUs the models want
    (in H100 equivalents) and elastic pools can grow to ``elastic_share`` of it."""
    want = 0.0
    for d in models:
        s = d["spec"]
        if s["workload"] == "inference":
            best = max(s["throughput"], key=lambda t: SPEED[t])
            want += sum(e["rate"] for e in s["demand"]) / s["throughput"][best] * SPEED[best] * s["replica"]["gpus"]
        else:
            want += s["replicas"] * s["replica"]["gpus"] * 0.8
    fixed = sum(p["spec"]["nodes"]["count"] * p["spec"]["gpu"]["perNode"] * SPEED[p["spec"]["gpu"]["type"]]
                for p in pools if "count" in p["spec"]["nodes"])
    elastic = sum(p["spec"]["nodes"]["max"] * p["spec"]["gpu"]["perNode"] * SPEED[p["spec"]["gpu"]["type"]]
                  for p in pools if "max" in p["spec"]["nodes"])
    for p in pools:
        nodes = p["spec"]["nodes"]
        if "count" in nodes and fixed > 0:
            nodes["count"] = max(1, round(nodes["count"] * fixed_share * want / fixed))
        elif "max" in nodes and elastic > 0:
            nodes["max"] = max(1, round(nodes["max"] * elastic_share * want / elastic))


def _policies() -> list[dict[str, Any]]:
    return [
        _doc("Policy", "eu-data-stays-in-eu", {
            "enforcement": "required", "models": {"labels": {"data": "eu"}},
            "pools": {"jurisdiction": ["EU"]}, "rule": {"allowPools": {}}}),
        _doc("Policy", "inference-spot-cap", {
            "enforcement": "required", "models": {"workload": ["inference"]}, "rule": {"maxSpotFraction": 0.5}}),
        _doc("Policy", "critical-spread", {
            "enforcement": "required", "models": {"labels": {"tier": "critical"}},
            "rule": {"spread": {"minFailureDomains": 2}}}),
        _doc("Policy", "onprem-headroom", {
            "enforcement": "required", "pools": {"environment": ["onprem"]}, "rule": {"headroom": {"fraction": 0.1}}}),
        _doc("Policy", "no-training-at-edge", {
            "enforcement": "required", "models": {"workload": ["training", "batch"]},
            "pools": {"environment": ["edge"]}, "rule": {"denyPools": {}}}),
        _doc("Policy", "research-prefers-onprem", {
            "enforcement": "preferred", "penaltyUsdPerHour": 0.5, "models": {"labels": {"team": "research"}},
            "pools": {"environment": ["onprem"]}, "rule": {"preferPools": {}}}),
    ]


def _latencies(locs: list[_Loc], links: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(x.name for x in locs)
    for d in links:
        a, b = d["spec"]["between"]
        g.add_edge(a, b, latency=d["spec"]["latencyMs"])
    out: dict[str, dict[str, float]] = {}
    for x in locs:
        lengths = nx.single_source_dijkstra_path_length(g, x.name, weight="latency")
        lengths[x.name] = 1.0
        out[x.name] = {k: float(v) for k, v in lengths.items()}
    return out


def generate(models: int, pools: int, seed: int = 0, time_limit: float | None = None,
             unmet_usd_per_rate: float | None = None) -> list[dict[str, Any]]:
    """The documents of a fleet of ``models`` models on ``pools`` pools (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    locs = _locations(rng, pools)
    links = _links(rng, locs)
    pool_docs = _pools(rng, locs, pools)
    lat = _latencies(locs, links)
    model_docs = _models(rng, models, locs, pool_docs, lat)
    _fit_capacity(pool_docs, model_docs, fixed_share=0.55, elastic_share=10.0)
    docs: list[dict[str, Any]] = [
        _doc("Location", x.name, {"environment": x.env, "jurisdiction": x.jur,
                                  "localLatencyMs": 2.0 if x.env == "edge" else 1.0})
        for x in locs
    ]
    docs += links + pool_docs + model_docs + _policies()
    settings: dict[str, Any] = {"objective": {"latencyUsdPerMsPer1kRate": 0.001}}
    if unmet_usd_per_rate is not None:
        settings["objective"]["unmetUsdPerRate"] = unmet_usd_per_rate
    if time_limit is not None:
        settings["solver"] = {"timeLimitSeconds": time_limit}
    docs.append(_doc("Settings", "bench", settings))
    return docs


def size_docs(size: str, seed: int = 0) -> list[dict[str, Any]]:
    models, pools = SIZES[size]
    return generate(models, pools, seed, TIME_LIMITS[size])


def to_fleet(docs: list[dict[str, Any]]) -> Fleet:
    """Validate and resolve generated documents exactly as ``load_fleet`` does a directory."""
    typed: list[Document] = []
    diags = []
    for i, data in enumerate(docs):
        raw = RawDocument(path=f"<generated>/{data['kind']}/{data['metadata']['name']}", line=i + 1, data=data)
        doc, more = load_document(raw)
        diags.extend(more)
        if doc is not None:
            typed.append(doc)
    fleet, more = build_fleet(typed)
    diags.extend(more)
    if fleet is None or any(d.severity == "error" for d in diags):
        raise FleetError(diags)
    return fleet


def make_fleet(size: str, seed: int = 0) -> Fleet:
    return to_fleet(size_docs(size, seed))


def scale_demand(docs: list[dict[str, Any]], seed: int, low: float = 0.95, high: float = 1.05) -> list[dict[str, Any]]:
    """A copy of ``docs`` with every demand rate multiplied by a factor drawn from [low, high]."""
    import copy

    rng = np.random.default_rng(seed)
    out = copy.deepcopy(docs)
    for d in out:
        if d["kind"] == "Model":
            for entry in d["spec"].get("demand", []):
                entry["rate"] = _round(entry["rate"] * float(rng.uniform(low, high)), 1.0)
    return out


FILE_OF_KIND = {"Location": "locations", "Link": "links", "GPUType": "gpu-types", "Policy": "policies",
                "Settings": "settings"}


def write_fleet(docs: list[dict[str, Any]], directory: str | Path, chunk: int = 500) -> Path:
    """Write ``docs`` as a fleet directory (locations, links, pools, models in chunks, policies)."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        kind = d["kind"]
        if kind == "Pool":
            groups.setdefault(f"pools/{d['spec']['location']}.yaml", []).append(d)
        elif kind == "Model":
            n = sum(1 for k in groups if k.startswith("models/"))
            current = f"models/models-{max(n - 1, 0):03d}.yaml"
            if current not in groups or len(groups[current]) >= chunk:
                current = f"models/models-{n:03d}.yaml"
            groups.setdefault(current, []).append(d)
        else:
            groups.setdefault(f"{FILE_OF_KIND.get(kind, kind.lower())}.yaml", []).append(d)
    for rel, items in groups.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump_all(items, sort_keys=False, default_flow_style=None, width=120))
    return root


def main(argv: list[str] | None = None) -> None:
    """python -m bench.generate SIZE DIR [SEED]: the fleet into DIR, new or empty (files of
    another fleet left beside it would make one fleet of both)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.generate",
                                     description="Write a seeded SPEC-format fleet of a bench size to DIR.")
    parser.add_argument("size", choices=sorted(SIZES), help="models x pools: " + ", ".join(
        f"{k} {m:,} x {p:,}" for k, (m, p) in SIZES.items()))
    parser.add_argument("dir", help="the fleet directory to write, new or empty")
    parser.add_argument("seed", nargs="?", type=int, default=0, help="the generator's seed, 0 or more (0)")
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"the seed must be a whole number 0 or more, not {args.seed}")
    root = Path(args.dir)
    if root.exists() and not root.is_dir():
        parser.error(f"{root} is a file, not a directory; give a new or empty directory")
    held = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    if held:
        parser.error(f"{root} already holds {len(held)} file(s) ({held[0]}, ...), which would be read as part of "
                     "the fleet; give a new or empty directory, or remove them first")
    written = write_fleet(size_docs(args.size, args.seed), root)
    print(f"wrote {args.size} fleet (seed {args.seed}) to {written}")


if __name__ == "__main__":
    main()
