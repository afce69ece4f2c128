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
QUERIES = [
    "open file without close",
    "sql injection",
    "retry with backoff",
    "thread pool",
    "jwt validation",
]


class AgentUser(VotsUser):
    """The core agent: code analysis requests (rate limit 20 r/s per client)."""

    weight = 1
    think_time = (1.0, 3.0)

    @task
    def analyze_code(self) -> None:
        body = {"language": "python", "code": random.choice(SNIPPETS)}
        self.client.post("/api/v1/analyze_code", json=body, name="/api/v1/analyze_code")


class RagUser(VotsUser):
    """The RAG service: code search (rate limit 30 r/s per client, 5 s microcache)."""

    weight = 1
    think_time = (0.5, 2.0)

    @task
    def search(self) -> None:
        q = random.choice(QUERIES)
        self.client.get(f"/api/v1/search?q={q.replace(' ', '+')}", name="/api/v1/search")


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
