"""The API under uvicorn, for real: Redis, the RAG service over this repository, the
worker pool, limits, degradation, shutdown."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from tests.conftest import KNOWN, Redis, Server, free_port, metric
from tests.sarif_schema import load

API = "/api/v1/analyze_code"


def big_source(n: int, salt: str = "") -> str:
    """n small functions, each with a bugbear finding: slow enough to overlap with
    other requests (seconds), small enough for the body limit."""
    body = "".join(
        f"def f{i}(x, y=[]):\n    if x > {i}:\n        return x * {i}\n"
        f"    for k in range(x):\n        y.append(k)\n    return y\n\n\n"
        for i in range(n)
    )
    return f"# {salt}\n{body}"


def post(server: Server, doc: dict[str, Any], **kw: Any) -> httpx.Response:
    return httpx.post(server.url + API, json=doc, timeout=300, **kw)


def known(name: str = "pkg/run.py") -> dict[str, Any]:
    return {"files": [{"name": name, "content": KNOWN}]}


def rules(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["rule_id"]: f for f in doc["findings"]}


def scrape(server: Server) -> str:
    return httpx.get(server.url + "/metrics", timeout=30).text


def group_alive(pgid: int) -> list[int]:
    """Processes still in a process group (the server and its analysis workers)."""
    alive = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            alive.append(int(entry))
    return alive


def wait_for(cond: Any, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --------------------------------------------------------------------------- the main path


def test_findings_context_sarif_and_cache_hit(
    agent_factory: Any, redis_server: Redis, rag_server: Server
) -> None:
    agent = agent_factory(REDIS_URL=redis_server.url, RAG_URL=rag_server.url)
    r = post(agent, known())
    assert r.status_code == 200, r.text
    doc = r.json()
    found = rules(doc)
    assert found["F401"]["tool"] == "ruff" and found["F401"]["start_line"] == 1
    assert found["B602"]["tool"] == "bandit" and found["B602"]["start_line"] == 6
    assert found["B602"]["severity"] == "critical" and found["B602"]["cwe"] == 78
    assert doc["summary"]["max_severity"] == "critical"
    # Context from the RAG service over this repository: real places, with lines and scores.
    assert doc["context_reason"] is None and doc["context"], doc["context_reason"]
    for hit in doc["context"]:
        assert (Path(__file__).parents[3] / hit["path"]).is_file()
        assert hit["end_line"] >= hit["start_line"] >= 1 and hit["score"] > 0
    assert found["B602"].get("similar"), "a critical finding gets similar places"
    assert doc["llm"] is None and "LLM_BASE_URL" in doc["llm_reason"]
    assert doc["cache"] == {"hit": False, "backend": "redis", "key": doc["cache"]["key"]}

    again = post(agent, known()).json()
    assert again["cache"]["hit"] is True and set(rules(again)) == set(found)
    text = scrape(agent)
    assert metric(text, "agent_cache_hits_total", kind="analysis") == 1
    assert metric(text, "agent_cache_misses_total", kind="analysis") == 1
    assert metric(text, "agent_cache_hits_total", kind="context") == 1
    assert any(k.endswith(doc["cache"]["key"]) for k in redis_server.stored())
    assert metric(text, "agent_http_requests_total", method="POST", route=API, status="200") == 2
    assert metric(text, "agent_findings_total", tool="bandit", severity="critical") == 2

    sarif = httpx.post(agent.url + API, params={"format": "sarif"}, json=known(), timeout=120)
    assert sarif.status_code == 200 and sarif.headers["content-type"].startswith(
        "application/sarif+json"
    )
    schema = load()
    cls = jsonschema.validators.validator_for(schema)
    assert not list(cls(schema).iter_errors(sarif.json()))

    ready = httpx.get(agent.url + "/readyz", timeout=30).json()
    assert (
        ready["status"] == "ready"
        and ready["cache"]["backend"] == "redis"
        and ready["rag"] == "ready"
    )
    assert set(ready["tools"]) == {"ruff", "bandit", "complexity"} and ready["workers"] == 2
    # Logs are JSON lines, the request among them.
    lines = [json.loads(line) for line in agent.output().splitlines() if line.startswith("{")]
    assert any(e.get("msg") == "request" and e.get("route") == API for e in lines)


def test_redis_down_falls_back_to_the_lru_and_readyz_says_so(
    agent_factory: Any, redis_server: Redis
) -> None:
    agent = agent_factory(REDIS_URL=redis_server.url)
    assert post(agent, known()).json()["cache"]["backend"] == "redis"
    redis_server.stop()
    doc = post(agent, known("other.py")).json()
    assert doc["cache"] == {"hit": False, "backend": "lru", "key": doc["cache"]["key"]}
    assert rules(doc)["B602"]["start_line"] == 6
    assert post(agent, known("other.py")).json()["cache"]["hit"] is True  # from the LRU
    ready = httpx.get(agent.url + "/readyz", timeout=30)
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "degraded" and body["cache"]["backend"] == "lru"
    assert "redis unreachable" in body["cache"]["detail"]
    assert "redis unreachable" in agent.output()  # the warning, logged
    assert metric(scrape(agent), "agent_cache_backend", backend="lru") == 1
    # Redis back: /readyz probes it and the cache moves back.
    redis_server.start()
    wait_for(
        lambda: httpx.get(agent.url + "/readyz", timeout=30).json()["cache"]["backend"] == "redis",
        "the cache to return to redis",
    )


def test_rag_down_still_returns_findings_and_says_why_there_is_no_context(
    agent_factory: Any,
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    agent = agent_factory(RAG_URL=dead)
    r = post(agent, known())
    assert r.status_code == 200
    doc = r.json()
    assert "B602" in rules(doc) and doc["context"] is None
    assert "RAG service unreachable" in doc["context_reason"]
    # The next requests skip the service at once for a few seconds, with the reason.
    again = post(agent, known("second.py")).json()
    assert again["context"] is None and "next try in" in again["context_reason"]
    ready = httpx.get(agent.url + "/readyz", timeout=30).json()
    assert ready["status"] == "degraded" and ready["rag"].startswith("unreachable")
    assert metric(scrape(agent), "agent_rag_requests_total", outcome="error") == 2
    assert "never retrieved" not in agent.output()


# --------------------------------------------------------------------------- bad input


def test_bad_requests_get_a_4xx_naming_the_field(agent_factory: Any, tmp_path: Path) -> None:
    agent = agent_factory(
        AGENT_MAX_BODY_BYTES="65536", AGENT_MAX_FILE_BYTES="8192", AGENT_MAX_FILES="3"
    )
    url = agent.url + API

    def check(resp: httpx.Response, status: int, field: str) -> None:
        assert resp.status_code == status, (resp.status_code, resp.text)
        err = resp.json()["error"]
        assert err["field"] == field and err["message"], err

    check(httpx.post(url, content=b"x" * 70_000, timeout=30), 413, "body")

    def chunks() -> Any:
        for _ in range(20):
            yield b"y" * 8192

    check(httpx.post(url, content=chunks(), timeout=30), 413, "body")  # chunked, no length
    check(httpx.post(url, content=b'{"files": [', timeout=30), 422, "body")
    check(
        httpx.post(url, json={"files": [{"name": "a.py", "content": 3}]}, timeout=30),
        422,
        "files.0.content",
    )
    check(httpx.post(url, json={"files": [{"name": "a.py"}]}, timeout=30), 422, "files.0.content")
    check(httpx.post(url, json={"sources": []}, timeout=30), 422, "sources")
    check(
        httpx.post(url, json={"files": [{"name": "a.py", "content": "x" * 9000}]}, timeout=30),
        413,
        "files.0.content",
    )
    many = {"files": [{"name": f"m{i}.py", "content": "x = 1\n"} for i in range(4)]}
    check(httpx.post(url, json=many, timeout=30), 413, "files")
    check(
        httpx.post(url, json={"files": [{"name": "../up.py", "content": ""}]}, timeout=30),
        400,
        "files.0.name",
    )
    check(
        httpx.post(url, json={"files": [{"name": "a\x00.py", "content": ""}]}, timeout=30),
        400,
        "files.0.name",
    )
    two = {"files": [{"name": "a.py", "content": ""}, {"name": "a.py", "content": ""}]}
    check(httpx.post(url, json=two, timeout=30), 422, "files.1.name")
    check(httpx.post(url, json={"code": "x = 1\n", "files": []}, timeout=30), 422, "files")
    check(httpx.post(url, json={}, timeout=30), 422, "files")
    check(httpx.post(url, json={"path": "pkg"}, timeout=30), 400, "path")
    check(
        httpx.post(url, json={"code": "x\n", "options": {"tools": ["eslint"]}}, timeout=30),
        422,
        "options.tools.0",
    )
    check(
        httpx.post(url, json={"code": "x\n", "options": {"max_complexity": 0}}, timeout=30),
        422,
        "options.max_complexity",
    )
    check(
        httpx.post(url, params={"format": "xml"}, json={"code": "x\n"}, timeout=30), 422, "format"
    )
    check(httpx.post(url, json={"code": "x\n", "language": "py thon"}, timeout=30), 422, "language")
    # The service is still fine, and never answered 500.
    assert post(agent, {"code": "import os\n"}).status_code == 200
    assert (
        metric(scrape(agent), "agent_http_requests_total", method="POST", route=API, status="500")
        == 0
    )


def test_a_body_that_never_arrives_is_a_408_not_a_held_worker(agent_factory: Any) -> None:
    agent = agent_factory(AGENT_BODY_TIMEOUT="1")
    port = int(agent.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(
            b"POST /api/v1/analyze_code HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"files": ['
        )
        data = b""
        while not data.endswith(b"}}"):  # the head and the JSON body may come in two reads
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        head = data.decode()
    assert head.startswith("HTTP/1.1 408") and '"field": "body"' in head, head
    assert post(agent, {"code": "import os\n"}).status_code == 200


def test_a_path_under_the_code_root_and_nothing_outside(agent_factory: Any, tmp_path: Path) -> None:
    root = tmp_path / "code"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "run.py").write_text(KNOWN)
    (root / "pkg" / "ok.py").write_text("X = 1\n")
    outside = tmp_path / "secret.py"
    outside.write_text("import os\n")
    (root / "pkg" / "link.py").symlink_to(outside)
    (root / "escape").symlink_to(tmp_path)
    agent = agent_factory(AGENT_CODE_ROOT=str(root))
    doc = post(agent, {"path": "pkg/run.py"}).json()
    assert rules(doc)["B602"]["file"] == "pkg/run.py"
    tree = post(agent, {"path": "pkg"}).json()  # a directory: its Python files; the link is skipped
    assert [f["file"] for f in tree["files"]] == ["pkg/ok.py", "pkg/run.py"]
    for path, status in (
        ("../secret.py", 400),
        ("pkg/link.py", 403),
        ("escape/secret.py", 403),
        ("nope.py", 404),
    ):
        r = post(agent, {"path": path})
        assert r.status_code == status and r.json()["error"]["field"] == "path", (path, r.text)


# --------------------------------------------------------------------------- load and faults


def test_healthz_keeps_answering_while_8_analyses_run(agent_factory: Any) -> None:
    agent = agent_factory(AGENT_WORKERS="1")
    docs = [
        {"files": [{"name": "big.py", "content": big_source(300, salt=str(i))}]} for i in range(8)
    ]
    health: list[int] = []
    depth_seen = 0.0
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        futures = [ex.submit(post, agent, d) for d in docs]
        while not all(f.done() for f in futures):
            health.append(httpx.get(agent.url + "/healthz", timeout=60).status_code)
            text = scrape(agent)
            depth_seen = max(depth_seen, metric(text, "agent_queue_depth"))
        results = [f.result() for f in futures]
    assert all(r.status_code == 200 for r in results)
    assert len({r.json()["cache"]["key"] for r in results}) == 8  # eight real analyses
    assert health and set(health) == {200}
    assert depth_seen >= 1, "some analyses waited in the queue while /healthz answered"


def test_a_full_queue_is_refused_with_503_and_retry_after(agent_factory: Any) -> None:
    agent = agent_factory(AGENT_WORKERS="1", AGENT_QUEUE="0")
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        slow = ex.submit(post, agent, {"code": big_source(1000)})
        wait_for(
            lambda: metric(scrape(agent), "agent_analyses_running") == 1, "the analysis to start"
        )
        r = post(agent, {"code": "import os\n"})
        assert r.status_code == 503 and r.headers["retry-after"].isdigit()
        assert "queued" in r.json()["error"]["message"]
        assert slow.result().status_code == 200
    assert post(agent, {"code": "import os\n"}).status_code == 200


def test_an_analysis_past_its_deadline_loses_its_worker_not_the_service(agent_factory: Any) -> None:
    agent = agent_factory(AGENT_WORKERS="1", AGENT_TIMEOUT="0.5")
    r = post(agent, {"code": big_source(1500)})
    assert r.status_code == 504 and "did not finish in 0.5 s" in r.json()["error"]["message"]
    ok = post(agent, {"code": "import os\n"})
    assert ok.status_code == 200 and "F401" in rules(ok.json())
    assert metric(scrape(agent), "agent_worker_restarts_total") == 1


def test_sigterm_lets_the_analysis_in_flight_finish(agent_factory: Any) -> None:
    agent = agent_factory(AGENT_WORKERS="1")
    pgid = agent.proc.pid
    assert len(group_alive(pgid)) >= 2  # the server and its worker
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        slow = ex.submit(post, agent, {"code": big_source(1000)})
        wait_for(
            lambda: metric(scrape(agent), "agent_analyses_running") == 1, "the analysis to start"
        )
        agent.proc.send_signal(signal.SIGTERM)
        r = slow.result()
    assert r.status_code == 200 and len(r.json()["findings"]) >= 1000
    # uvicorn re-raises the SIGTERM it handled once shut down: "killed by SIGTERM" after
    # a clean drain; the lifespan's last log line shows the shutdown ran to its end.
    assert agent.proc.wait(120) in (0, -signal.SIGTERM)
    wait_for(lambda: not group_alive(pgid), "the workers to exit")
    assert '"stopped"' in agent.output()


def test_sigkill_of_the_server_leaves_no_worker_behind(agent_factory: Any) -> None:
    agent = agent_factory(AGENT_WORKERS="2")
    pgid = agent.proc.pid
    assert len(group_alive(pgid)) >= 3
    os.kill(agent.proc.pid, signal.SIGKILL)
    agent.proc.wait(30)
    wait_for(lambda: not group_alive(pgid), "the workers to die with the server")


def test_a_worker_killed_mid_analysis_is_replaced(agent_factory: Any) -> None:
    agent = agent_factory(AGENT_WORKERS="1")
    server_pid = agent.proc.pid
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        slow = ex.submit(post, agent, {"code": big_source(1000)})
        wait_for(
            lambda: metric(scrape(agent), "agent_analyses_running") == 1, "the analysis to start"
        )
        workers = [p for p in group_alive(server_pid) if p != server_pid]
        for pid in workers:  # what the OOM killer would do
            os.kill(pid, signal.SIGKILL)
        r = slow.result()
    assert r.status_code == 503 and "worker died" in r.json()["error"]["message"]
    assert post(agent, {"code": "import os\n"}).status_code == 200


# --------------------------------------------------------------------------- the model


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        ("slow", "did not answer in 1 s"),
        ("notjson", "not JSON"),
        ("broken", "malformed"),
        ("error", "HTTP 500"),
    ],
)
def test_a_model_that_fails_degrades_to_the_deterministic_answer(
    agent_factory: Any, llm_server: Server, model: str, reason: str
) -> None:
    agent = agent_factory(LLM_BASE_URL=llm_server.url + "/v1", LLM_MODEL=model, LLM_TIMEOUT="1")
    r = post(agent, known())
    assert r.status_code == 200
    doc = r.json()
    assert doc["llm"] is None and reason in doc["llm_reason"]
    assert "B602" in rules(doc)
    assert metric(scrape(agent), "agent_llm_requests_total", outcome="error") == 1


def test_the_model_explains_only_the_findings_it_was_given(
    agent_factory: Any, llm_server: Server, tmp_path: Path
) -> None:
    key = tmp_path / "llm-key"
    key.write_text("sk-test\n")
    agent = agent_factory(
        LLM_BASE_URL=llm_server.url + "/v1", LLM_MODEL="good", LLM_API_KEY_FILE=str(key)
    )
    doc = post(agent, known()).json()
    llm = doc["llm"]
    assert llm is not None, doc["llm_reason"]
    assert llm["model"] == "good-2026" and "auth=yes" in llm["summary"]
    fingerprints = {f["fingerprint"] for f in doc["findings"]}
    assert (
        len(llm["fixes"]) == 1 and llm["fixes"][0]["fingerprint"] in fingerprints
    )  # the invented one dropped
    text = scrape(agent)
    assert metric(text, "agent_llm_requests_total", outcome="ok") == 1
    assert metric(text, "agent_llm_duration_seconds_count") == 1
    # The same request again: the explanation is cached with the analysis.
    assert post(agent, known()).json()["llm"] == llm
    assert metric(scrape(agent), "agent_cache_hits_total", kind="llm") == 1


def test_bad_settings_are_one_line_and_exit_2(tmp_path: Path) -> None:
    import subprocess

    from tests.conftest import BIN, clean_env

    for env, word in (
        ({"AGENT_WORKERS": "0"}, "AGENT_WORKERS"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"LLM_BASE_URL": "http://127.0.0.1:9/v1"}, "LLM_MODEL"),
        ({"AGENT_CODE_ROOT": str(tmp_path / "nope")}, "AGENT_CODE_ROOT"),
    ):
        p = subprocess.run(
            [str(BIN / "vots-agent"), "serve", "--port", str(free_port())],
            env=clean_env(**env),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 2 and word in p.stderr and len(p.stderr.strip().splitlines()) == 1, (
            p.stderr
        )


def test_a_port_in_use_is_one_line_and_exit_2() -> None:
    import subprocess

    from tests.conftest import BIN, clean_env

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = subprocess.run(
            [str(BIN / "vots-agent"), "serve", "--port", str(port)],
            env=clean_env(AGENT_WORKERS="1"),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert p.returncode != 0 and "Traceback" not in p.stderr
