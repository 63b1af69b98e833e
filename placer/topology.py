"""Latency and egress between locations (SPEC section 1, Link).

Latency between two locations is the shortest path by ``latencyMs``; the egress price is
the sum of ``egressUsdPerGB`` along that same path. Demand and a pool at the same
location see the location's ``localLatencyMs`` and no egress. Unconnected locations
have infinite latency.

The graph is a plain adjacency dict: networkx's Graph held it, and importing networkx (0.2-0.4 s, its
whole algorithm library) was most of what a small fleet's `placer plan` spent outside its solve.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from functools import lru_cache

INFINITY = math.inf


@dataclass(frozen=True)
class LinkInfo:
    a: str
    b: str
    latency_ms: float
    egress_usd_per_gb: float


class Topology:
    def __init__(self, local_latency_ms: dict[str, float], links: Iterable[LinkInfo]) -> None:
        self._local = dict(local_latency_ms)
        self._links = tuple(links)
        # location -> neighbour -> (latency, egress) of the link between them, both ways; a later
        # link between the same two replaces an earlier one (as networkx's Graph did)
        self._adjacent: dict[str, dict[str, tuple[float, float]]] = {name: {} for name in self._local}
        for link in self._links:
            self._adjacent.setdefault(link.a, {})[link.b] = (link.latency_ms, link.egress_usd_per_gb)
            self._adjacent.setdefault(link.b, {})[link.a] = (link.latency_ms, link.egress_usd_per_gb)
        self._from = lru_cache(maxsize=None)(self._single_source)

    @property
    def links(self) -> tuple[LinkInfo, ...]:
        return self._links

    def without(self, locations: Collection[str]) -> Topology:
        """This topology with ``locations`` gone from the network, as a site that fails takes its
        network with it: every link to or from them is dropped, so no path passes through them and a
        pair connected only through them is unconnected. They stay locations, each reaching itself
        alone (its ``localLatencyMs``)."""
        gone = set(locations)
        return Topology(self._local, [k for k in self._links if k.a not in gone and k.b not in gone])

    def _single_source(self, source: str) -> tuple[dict[str, float], dict[str, float]]:
        """Dijkstra on (latency, egress) in that order: the shortest path by latency and, among
        paths equally short, the cheapest to move data over (networkx's kept whichever it found
        first, so 2 ms direct at 10 USD/GB won over 2 ms through a free hop)."""
        done: dict[str, tuple[float, float]] = {}
        best = {source: (0.0, 0.0)}
        heap: list[tuple[float, float, str]] = [(0.0, 0.0, source)]
        while heap:
            lat, egr, node = heapq.heappop(heap)
            if node in done:
                continue
            done[node] = (lat, egr)
            for nxt, (latency, egress) in self._adjacent[node].items():
                if nxt in done:
                    continue
                key = (lat + latency, egr + egress)
                if key < best.get(nxt, (INFINITY, INFINITY)):
                    best[nxt] = key
                    heapq.heappush(heap, (*key, nxt))
        return {n: v[0] for n, v in done.items()}, {n: v[1] for n, v in done.items()}

    def latency_ms(self, a: str, b: str) -> float:
        if a == b:
            return self._local.get(a, 1.0)
        lengths, _ = self._from(a)
        return float(lengths.get(b, INFINITY))

    def egress_usd_per_gb(self, a: str, b: str) -> float:
        if a == b:
            return 0.0
        _, egress = self._from(a)
        return float(egress.get(b, INFINITY))

    def reachable(self, a: str, b: str) -> bool:
        return math.isfinite(self.latency_ms(a, b))
