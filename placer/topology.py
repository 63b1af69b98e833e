"""Latency and egress between locations (SPEC section 1, Link).

Latency between two locations is the shortest path by ``latencyMs``; the egress price is
the sum of ``egressUsdPerGB`` along that same path. Demand and a pool at the same
location see the location's ``localLatencyMs`` and no egress. Unconnected locations
have infinite latency.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import networkx as nx

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
        self.graph: nx.Graph = nx.Graph()
        self.graph.add_nodes_from(self._local)
        for link in links:
            self.graph.add_edge(link.a, link.b, latency=link.latency_ms, egress=link.egress_usd_per_gb)
        self._from = lru_cache(maxsize=None)(self._single_source)

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
            for nxt, edge in self.graph.adj[node].items():
                if nxt in done:
                    continue
                key = (lat + edge["latency"], egr + edge["egress"])
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

    def components(self) -> list[set[str]]:
        return [set(c) for c in nx.connected_components(self.graph)]
