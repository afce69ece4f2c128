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

_RNG = random.Random()

# Code the agent is asked about, as people send it: small snippets with the
# findings it exists to catch (services/agent/tests/test_corpus.py checks each is
# found), and this package's own modules, real code of every size.
AGENT_FINDING_SNIPPETS = (
    "import subprocess\n\n\ndef run(cmd):\n    return subprocess.call(cmd, shell=True)\n",
    "import os\n\n\ndef add(item, seen=[]):\n    seen.append(item)\n    return seen\n",
    "import yaml\n\n\ndef load(path):\n    with open(path) as f:\n        return yaml.load(f)\n",
    "import hashlib\n\n\ndef digest(data):\n    return hashlib.md5(data).hexdigest()\n",
    "def parse(text):\n    try:\n        return int(text)\n    except:\n        return None\n",
    "def calc(expr):\n    return eval(expr)\n",
    "import pickle\n\n\ndef restore(blob):\n    return pickle.loads(blob)\n",
    "import requests\n\n\ndef fetch(url):\n    return requests.get(url, verify=False, timeout=5)\n",
)
AGENT_SIZE_SHARES = (("small", 0.5), ("medium", 0.35), ("large", 0.15))  # <80, 80-300, >300 lines
AGENT_EDITED_SHARE = 0.3  # code changed since it was last sent: a cache miss
_CORPUS: dict[str, list[tuple[str, str]]] = {}


def agent_corpus() -> dict[str, list[tuple[str, str]]]:
    """(name, code) by size: the snippets and every module of the installed ops package."""
    if not _CORPUS:
        from pathlib import Path

        import ops

        files = [(f"snippets/s{i}.py", code) for i, code in enumerate(AGENT_FINDING_SNIPPETS)]
        root = Path(ops.__file__).parent
        for path in sorted(root.rglob("*.py")):
            files.append((f"ops/{path.relative_to(root)}", path.read_text(encoding="utf-8")))
        for name, code in files:
            lines = code.count("\n")
            size = "small" if lines < 80 else "medium" if lines <= 300 else "large"
            _CORPUS.setdefault(size, []).append((name, code))
    return _CORPUS


def agent_request(rng: random.Random = _RNG) -> dict[str, object]:
    """One analysis request: a file of a drawn size, sometimes freshly edited."""
    corpus = agent_corpus()
    sizes = [s for s, _ in AGENT_SIZE_SHARES]
    size = rng.choices(sizes, weights=[w for _, w in AGENT_SIZE_SHARES])[0]
    name, code = rng.choice(corpus[size])
    if rng.random() < AGENT_EDITED_SHARE:
        code = f"{code}\n# edited {rng.getrandbits(64):016x}\n"
    return {"files": [{"name": name, "content": code}], "options": {"llm": False}}


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
    """The core agent: code analysis requests (rate limit 20 r/s per client).

    Half small files, a third medium, the rest large (up to ~900 lines); three in
    ten edited since last sent, so the agent's cache sees misses as well as hits."""

    weight = 1
    think_time = (1.0, 3.0)

    @task
    def analyze_code(self) -> None:
        self.client.post("/api/v1/analyze_code", json=agent_request(), name="/api/v1/analyze_code")


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
