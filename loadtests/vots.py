"""Locust users for the VOTS stack, through its nginx edge (one class per routed service).

Each task is one request named ``METHOD path`` so the SLOs in scenarios.yaml
can name it. The nginx edge rate-limits per client address (stack.yaml
``routes[].rate_limit``); load from one machine above those limits measures
429s, which count as failures, as they should.
"""

from __future__ import annotations

import random

from locust import task

from ops.loadtest.users import VotsUser

SNIPPETS = [
    "def add(a, b):\n    return a + b\n",
    "import os\n\ndef read(path):\n    return open(path).read()\n",
    "for i in range(10):\n    print(i * i)\n",
    "class Cache(dict):\n    def get_or(self, k, f):\n        return self[k] if k in self else f()\n",
]
# Code-search queries, verbatim from the RAG service's labelled set
# (services/rag/eval/queries.yaml, which a wheel does not ship): symbol lookups
# as an engineer types them, and questions in words (its natural and
# architecture kinds). tests/loadtest/test_vots_users.py keeps them in step.
RAG_SYMBOL_QUERIES = (
    "plan_stack",
    "EngineError",
    "take_sample",
    "History.record",
    "parse duration",
    "format_bytes",
    "HostCapacity",
    "detect_anomalies",
    "Cgroups.locate",
    "MetricsServer",
    "fold_perf_script",
    "parse_pprof",
    "parse_threshold",
    "locust_argv",
    "VotsUser",
    "atomic_write",
    "Profile.top",
    "verify_plan",
)
RAG_NATURAL_QUERIES = (
    "restarts and OOM kills of a container between two samples",
    "container CPU percent computed like docker stats, where 100 means one full core",
    "how are week-old raw points rolled into hourly mean, min, max and p95?",
    "escaping percent signs for cron",
    "absolute path of the installed command, since cron's PATH is minimal",
    "exit status 141 when the output is piped into head and the reader goes away",
    "how are circular depends_on chains between services caught?",
    "refusing to send load to a host that is neither this machine nor explicitly permitted",
    "combining each worker process's latency histograms on the master so percentiles are exact",
    "turning py-spy's error output into a cause such as missing ptrace permission",
    "which module talks to the Docker Engine API over its unix socket",
    "how does the CLI keep startup fast by loading commands lazily",
    "where are the load test scenarios and their SLO thresholds configured",
    "which profiling backend reads Go profiles from net/http/pprof",
)
RAG_SYMBOL_SHARE = 0.6  # the rest are questions in words
RAG_SECOND_PAGE = 0.2  # share of searches that ask for the next page of results
RAG_K = (5, 10)
_RNG = random.Random()


def rag_search_params(rng: random.Random = _RNG) -> dict[str, str | int]:
    """One search as a person sends it: query, page size, sometimes the second page.
    Passed as ``params=``, so the client percent-encodes ``?``, ``'``, ``,`` and spaces."""
    symbol = rng.random() < RAG_SYMBOL_SHARE
    params: dict[str, str | int] = {
        "q": rng.choice(RAG_SYMBOL_QUERIES if symbol else RAG_NATURAL_QUERIES),
        "k": rng.choice(RAG_K),
    }
    if rng.random() < RAG_SECOND_PAGE:
        params["page"] = 2
    return params


class AgentUser(VotsUser):
    """The core agent: code analysis requests (rate limit 20 r/s per client)."""

    weight = 1
    think_time = (1.0, 3.0)

    @task
    def analyze_code(self) -> None:
        body = {"language": "python", "code": random.choice(SNIPPETS)}
        self.client.post("/api/v1/analyze_code", json=body, name="/api/v1/analyze_code")


class RagUser(VotsUser):
    """The RAG service: code search (rate limit 30 r/s per client, 5 s microcache).

    60% symbol lookups, 40% questions in words, k of 5 or 10, one in five for
    page 2: the edge's microcache sees as many distinct URLs as people make."""

    weight = 1
    think_time = (0.5, 2.0)

    @task
    def search(self) -> None:
        self.client.get("/api/v1/search", params=rag_search_params(), name="/api/v1/search")


class DashboardUser(VotsUser):
    """The Next.js dashboard: the page (rate limit 50 r/s) and its immutable static chunks."""

    weight = 2
    think_time = (0.5, 2.0)

    @task(1)
    def page(self) -> None:
        self.client.get("/", name="/")

    @task(3)
    def static_chunk(self) -> None:
        n = random.randrange(8)
        self.client.get(f"/_next/static/chunks/{n}.js", name="/_next/static/[chunk]")


class HealthUser(VotsUser):
    """A service's health endpoint, straight at the service (its /healthz is not routed by nginx)."""

    think_time = (0.0, 0.0)

    @task
    def healthz(self) -> None:
        self.client.get("/healthz", name="/healthz")
