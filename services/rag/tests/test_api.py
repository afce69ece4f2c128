"""The API under real uvicorn (``vots-rag serve`` in its own process), on loopback."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Service, make_tree

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Path]]:
    base = tmp_path_factory.mktemp("api")
    tree = make_tree(base / "code")
    svc = Service(
        {"RAG_ROOT": str(tree), "RAG_INDEX_DIR": str(base / "index"), "RAG_THREADS": "2"},
        base / "log",
    )
    try:
        svc.ready()
        resp = httpx.post(svc.url + "/api/v1/ingest", json={"path": "."}, timeout=600)
        assert resp.status_code == 200, resp.text
        yield svc, tree
    finally:
        svc.stop()


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
    return total


def test_health_and_readiness(api: tuple[Service, Path]) -> None:
    svc, _ = api
    assert httpx.get(svc.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(svc.url + "/readyz").json()
    assert (
        ready["status"] == "ready"
        and ready["files"] == 5
        and ready["chunks"] == ready["embedded"] > 10
    )
    assert ready["model"] == "all-MiniLM-L6-v2-int8"


def test_search_returns_ranked_chunks_with_their_place(api: tuple[Service, Path]) -> None:
    svc, _ = api
    body = httpx.get(svc.url + "/api/v1/search", params={"q": "format_bytes", "k": 3}).json()
    first = body["results"][0]
    assert (first["path"], first["symbol"]) == ("ops/units.py", "format_bytes")
    assert first["start_line"] < first["end_line"] and "def format_bytes" in first["snippet"]
    assert body["kind"] == "symbol" and body["backend"] == "hybrid" and len(body["results"]) == 3
    for backend in ("lexical", "dense"):
        got = httpx.get(
            svc.url + "/api/v1/search", params={"q": "format_bytes", "backend": backend}
        ).json()
        assert got["backend"] == backend and got["results"]


def test_pages_do_not_overlap(api: tuple[Service, Path]) -> None:
    svc, _ = api
    pages = [
        httpx.get(svc.url + "/api/v1/search", params={"q": "cpu rates", "k": 4, "page": p}).json()
        for p in (1, 2)
    ]
    assert pages[0]["has_more"]
    ids = [(r["path"], r["start_line"]) for page in pages for r in page["results"]]
    assert len(ids) == len(set(ids)) == 8


@pytest.mark.parametrize(
    ("method", "route", "kwargs", "status", "field"),
    [
        ("POST", "/api/v1/ingest", {"json": {"path": "../.."}}, 403, "path"),
        ("POST", "/api/v1/ingest", {"json": {"path": "/etc/passwd"}}, 403, "path"),
        ("POST", "/api/v1/ingest", {"json": {"path": "nope/missing.py"}}, 404, "path"),
        ("POST", "/api/v1/ingest", {"json": {"path": 3}}, 422, "path"),
        ("POST", "/api/v1/ingest", {"json": {"path": ".", "extra": 1}}, 422, "extra"),
        (
            "POST",
            "/api/v1/ingest",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            422,
            "body",
        ),
        (
            "POST",
            "/api/v1/ingest",
            {"content": b"x" * 100_000, "headers": {"content-type": "application/json"}},
            413,
            "body",
        ),
        ("GET", "/api/v1/search", {"params": {"q": ""}}, 422, "q"),
        ("GET", "/api/v1/search", {"params": {"q": "x" * 1001}}, 422, "q"),
        ("GET", "/api/v1/search", {"params": {"q": "x", "k": 0}}, 422, "k"),
        ("GET", "/api/v1/search", {"params": {"q": "x", "k": "lots"}}, 422, "k"),
        ("GET", "/api/v1/search", {"params": {"q": "x", "page": 101}}, 422, "page"),
        ("GET", "/api/v1/search", {"params": {"q": "x", "backend": "magic"}}, 422, "backend"),
        ("GET", "/api/v1/search", {}, 422, "q"),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_field(
    api: tuple[Service, Path], method: str, route: str, kwargs: dict, status: int, field: str
) -> None:
    svc, _ = api
    resp = httpx.request(method, svc.url + route, **kwargs)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    assert resp.json()["error"]["field"] == field


def test_a_chunked_body_over_the_limit_is_refused(api: tuple[Service, Path]) -> None:
    svc, _ = api

    def body() -> Iterator[bytes]:
        for _ in range(100):
            yield b" " * 4096

    resp = httpx.post(
        svc.url + "/api/v1/ingest", content=body(), headers={"content-type": "application/json"}
    )
    assert resp.status_code == 413 and resp.json()["error"]["field"] == "body"


def test_unknown_routes_answer_in_the_error_shape(api: tuple[Service, Path]) -> None:
    svc, _ = api
    resp = httpx.get(svc.url + "/api/v1/nothing")
    assert resp.status_code == 404 and "message" in resp.json()["error"]


def test_change_and_delete_over_http_and_metrics_move(api: tuple[Service, Path]) -> None:
    svc, tree = api
    before = httpx.get(svc.url + "/metrics").text
    (tree / "ops" / "fresh.py").write_text(
        'def freshly_added_function():\n    """Returns the answer."""\n    return 42\n'
    )
    report = httpx.post(svc.url + "/api/v1/ingest", json={"path": "ops"}, timeout=600).json()
    assert (
        report["ok"]
        and report["changed"] == 1
        and report["embedded"] >= 1
        and report["unchanged"] == 3
    )
    hit = httpx.get(svc.url + "/api/v1/search", params={"q": "freshly_added_function"}).json()[
        "results"
    ][0]
    assert (hit["path"], hit["symbol"]) == ("ops/fresh.py", "freshly_added_function")
    (tree / "ops" / "fresh.py").unlink()
    report = httpx.post(
        svc.url + "/api/v1/ingest", json={"path": "ops/fresh.py"}, timeout=600
    ).json()
    assert report["deleted"] == 1
    results = httpx.get(
        svc.url + "/api/v1/search", params={"q": "freshly_added_function", "k": 50}
    ).json()["results"]
    assert all(r["path"] != "ops/fresh.py" for r in results)
    after = httpx.get(svc.url + "/metrics").text
    assert (
        _metric(after, "rag_embedded_chunks_total")
        >= _metric(before, "rag_embedded_chunks_total") + 1
    )
    assert (
        _metric(after, "rag_ingest_files_total", outcome="deleted")
        == _metric(before, "rag_ingest_files_total", outcome="deleted") + 1
    )
    assert _metric(after, "rag_ingest_files_total", outcome="unchanged") > _metric(
        before, "rag_ingest_files_total", outcome="unchanged"
    )
    assert _metric(
        after, "rag_http_requests_total", route="/api/v1/search", status="200"
    ) > _metric(before, "rag_http_requests_total", route="/api/v1/search", status="200")
    assert _metric(after, "rag_http_requests_total", route="/api/v1/ingest", status="403") >= 0
    assert _metric(after, "rag_index_files") == 5
    assert _metric(after, "rag_http_request_duration_seconds_count", route="/api/v1/search") > 0
    assert "rag_http_in_flight" in after and "rag_ingest_duration_seconds_bucket" in after


def test_logs_are_json_lines(api: tuple[Service, Path]) -> None:
    svc, _ = api
    httpx.get(svc.url + "/api/v1/search", params={"q": "units"})
    entries = [json.loads(line) for line in svc.lines() if line.startswith("{")]
    requests = [
        e for e in entries if e.get("msg") == "request" and e.get("route") == "/api/v1/search"
    ]
    assert requests and {"ts", "level", "status", "ms", "method"} <= set(requests[-1])
    assert any(e.get("msg") == "index ready" for e in entries)
    # Nothing but JSON on the log stream.
    assert all(line.startswith("{") for line in svc.lines() if line.strip())


def test_sigterm_drains_and_exits_cleanly(service_env: dict[str, str], tmp_path: Path) -> None:
    svc = Service(service_env, tmp_path / "term.log")
    try:
        svc.ready()
    finally:
        rc = svc.stop(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal so the parent sees it.
    assert rc in (0, -signal.SIGTERM)
    assert any('"msg": "stopped"' in line for line in svc.lines()), svc.lines()[-5:]


def test_ready_waits_for_chroma_and_search_says_why(tree: Path, tmp_path: Path) -> None:
    """A Chroma server that is not there yet: /healthz answers, /readyz and the API 503."""
    from tests.conftest import ChromaServer, free_port, wait_http

    port = free_port()
    svc = Service(
        {
            "RAG_ROOT": str(tree),
            "RAG_INDEX_DIR": str(tmp_path / "ix"),
            "CHROMA_URL": f"http://127.0.0.1:{port}",
        },
        tmp_path / "wait.log",
    )
    server = ChromaServer(tmp_path / "late-chroma", port)
    try:
        wait_http(svc.url + "/healthz", proc=svc.proc)
        reason = ""
        for _ in range(600):  # the model loads first, then Chroma is tried
            reason = wait_http(svc.url + "/readyz", ok=(503,), proc=svc.proc).json()["reason"]
            if "Chroma" in reason:
                break
            time.sleep(0.2)
        assert f"127.0.0.1:{port}" in reason
        search = httpx.get(svc.url + "/api/v1/search", params={"q": "x"})
        assert search.status_code == 503 and search.headers["retry-after"]
        server.start()
        assert svc.ready().json()["status"] == "ready"
    finally:
        svc.stop()
        server.kill()
