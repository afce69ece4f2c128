"""Prometheus metrics: requests and latency by route template and status, in flight,
the analysis queue, cache hits and misses, findings by tool and severity, the RAG
and LLM calls. Each app has its own registry (tests start several in one process);
routes are templates, never raw paths, so a scanner cannot mint series."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from vots_agent.service import Agent

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class _AgentCollector(Collector):
    """The pool's and the cache's state, read at scrape time."""

    def __init__(self, agent: Callable[[], Agent | None]) -> None:
        self._agent = agent

    def collect(self) -> Iterator[Metric]:
        agent = self._agent()
        if agent is None:
            return
        pool = agent.pool
        for name, doc, value in (
            ("agent_queue_depth", "Analyses waiting for a worker.", pool.depth if pool else 0),
            ("agent_analyses_running", "Analyses running in workers.", pool.running if pool else 0),
            ("agent_workers", "Analysis worker processes.", pool.size if pool else 0),
        ):
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], value)
            yield g
        restarts = CounterMetricFamily(
            "agent_worker_restarts", "Workers replaced after a deadline or a crash."
        )
        restarts.add_metric([], pool.restarts if pool else 0)
        yield restarts
        cache = agent.cache
        backend = GaugeMetricFamily(
            "agent_cache_backend", "The cache in use (1) by backend.", labels=["backend"]
        )
        for b in ("redis", "lru"):
            backend.add_metric([b], 1 if cache.backend == b else 0)
        yield backend
        for name, doc, counts in (
            ("agent_cache_hits", "Cache hits by kind.", cache.hits),
            ("agent_cache_misses", "Cache misses by kind.", cache.misses),
        ):
            c = CounterMetricFamily(name, doc, labels=["kind"])
            for kind in ("analysis", "context", "llm"):
                c.add_metric([kind], counts.get(kind, 0))
            yield c


class Metrics:
    def __init__(self, agent: Callable[[], Agent | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "agent_http_requests", "HTTP requests.", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "agent_http_request_duration_seconds",
            "HTTP request latency.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("agent_http_in_flight", "HTTP requests being served.", registry=r)
        self.analysis = Histogram(
            "agent_analysis_duration_seconds",
            "Time in the analysers, by tool (cache misses only).",
            ["tool"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.findings = Counter(
            "agent_findings",
            "Findings reported, by tool and severity.",
            ["tool", "severity"],
            registry=r,
        )
        self.rag = Counter(
            "agent_rag_requests",
            "Context lookups in the RAG service, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.llm = Counter(
            "agent_llm_requests",
            "Calls to the model endpoint, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.llm_latency = Histogram(
            "agent_llm_duration_seconds",
            "Model endpoint latency.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.registry.register(_AgentCollector(agent))
