"""Prometheus metrics for the API: requests by route and status, latency, in flight,
the index's size and the ingest and embedding totals the library keeps.

Each app has its own registry (tests start several apps in one process). The
routes are the route *templates* (``/api/v1/search``), never raw paths, so a
scanner cannot create a series per URL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from vots_rag.index import Index

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120)
INGEST_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)


class _IndexCollector(Collector):
    """Index size and library totals, read at scrape time."""

    def __init__(self, index: Callable[[], Index | None]) -> None:
        self._index = index

    def collect(self) -> Iterator[Metric]:
        index = self._index()
        if index is None:
            return
        stats = index.stats()
        c = index.counters
        gauges: list[tuple[str, str, float]] = [
            ("rag_index_files", "Files in the index.", stats.files),
            ("rag_index_chunks", "Chunks in the index (lexical).", stats.chunks),
            (
                "rag_index_chunks_embedded",
                "Chunks with a vector in the dense index.",
                stats.embedded,
            ),
            ("rag_index_chunks_pending", "Chunks waiting for an embedding.", stats.pending),
        ]
        for name, doc, value in gauges:
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], value)
            yield g
        files = CounterMetricFamily(
            "rag_ingest_files", "Files seen by ingests, by outcome.", labels=["outcome"]
        )
        files.add_metric(["changed"], c.files_changed)
        files.add_metric(["unchanged"], c.files_unchanged)
        files.add_metric(["deleted"], c.files_deleted)
        yield files
        totals: list[tuple[str, str, float]] = [
            ("rag_ingests", "Ingest runs.", c.ingests),
            (
                "rag_ingest_failures",
                "Ingest runs that failed or left chunks unembedded.",
                c.ingest_failures,
            ),
            ("rag_ingest_chunks_written", "Chunks written with new text.", c.chunks_written),
            ("rag_embedded_chunks", "Chunks embedded.", c.chunks_embedded),
            ("rag_embedding_failures", "Chunks whose embedding failed.", c.embed_failures),
            ("rag_embedding_batches", "Embedding batches run.", c.embed_batches),
            ("rag_embedding_seconds", "Seconds spent embedding.", c.embed_seconds),
        ]
        for name, doc, total in totals:
            m = CounterMetricFamily(name, doc)
            m.add_metric([], total)
            yield m


class Metrics:
    def __init__(self, index: Callable[[], Index | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "rag_http_requests",
            "HTTP requests.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "rag_http_request_duration_seconds",
            "HTTP request latency.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "rag_http_in_flight", "HTTP requests being served.", registry=self.registry
        )
        self.ingest_duration = Histogram(
            "rag_ingest_duration_seconds",
            "Ingest run duration.",
            buckets=INGEST_BUCKETS,
            registry=self.registry,
        )
        self.search_duration = Histogram(
            "rag_search_duration_seconds",
            "Search duration in the library, by backend.",
            ["backend"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_IndexCollector(index))

    def started(self) -> None:
        self.in_flight.inc()

    def finished(self, method: str, route: str, status: int, seconds: float) -> None:
        self.in_flight.dec()
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
