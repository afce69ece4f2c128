"""`report serve`'s own HTTP server beside the libraries that could replace it.

Each candidate serves prometheus_client's exposition on loopback in a process of its
own with RLIMIT_NOFILE=64, and meets what tests/report/test_serve.py asks of
`report serve`: GET/HEAD/POST answers, a request line without a version, a 9 KiB
head (431), a half-sent head and a head trickled a byte per 0.1 s (closed within
10 s when a 1 s limit is asked for), a scrape behind 192 idle connections
(3x the descriptors), the CPU used while they are held, and a scrape 10 s after
they left. Candidates: ours (`ops.report.serve.MetricsServer`),
prometheus_client's `start_http_server`, uvicorn with h11 (with and without
`limit_concurrency`) and aiohttp (taken from services/rag/.venv, where chromadb
brings it; skipped when absent). Prints one JSON object per candidate, then the
number of checks each passed as the last line.

Run: .venv/bin/python bench/serve_alternatives.py [CANDIDATE ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RAG_PYTHON = REPO / "services" / "rag" / ".venv" / "bin" / "python"
CANDIDATES = ("ours", "prometheus_client", "uvicorn-h11", "uvicorn-h11-limited", "aiohttp")
MAX_HEAD = 8 * 1024


def serve(kind: str, port: int) -> None:
    """Run one candidate in this process until killed."""
    if kind == "ours":
        sys.path.insert(0, str(REPO))
        from ops.report.serve import MetricsServer

        MetricsServer(port, docker=False, header_timeout=1.0).start()
        print("ready", flush=True)
        while True:
            time.sleep(3600)
    elif kind == "prometheus_client":
        from prometheus_client import start_http_server

        start_http_server(port, addr="127.0.0.1")
        print("ready", flush=True)
        while True:
            time.sleep(3600)
    elif kind.startswith("uvicorn-h11"):
        import uvicorn
        from prometheus_client import make_asgi_app

        limit = 32 if kind.endswith("-limited") else None
        print("ready", flush=True)
        uvicorn.run(
            make_asgi_app(), host="127.0.0.1", port=port, http="h11", timeout_keep_alive=1,
            limit_concurrency=limit, h11_max_incomplete_event_size=MAX_HEAD,
            log_level="warning", lifespan="off",
        )  # fmt: skip
    elif kind == "aiohttp":
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        async def metrics(_request: web.Request) -> web.Response:
            return web.Response(
                body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        app = web.Application(handler_args={"max_line_size": MAX_HEAD, "max_field_size": MAX_HEAD})
        app.router.add_get("/metrics", metrics)
        print("ready", flush=True)
        web.run_app(app, host="127.0.0.1", port=port, keepalive_timeout=1, print=None)


def _start(kind: str) -> tuple[subprocess.Popen[str], tuple[str, int]]:
    sys.path.insert(0, str(REPO))
    from ops.proc import free_port
    from tests.support.sockets import nofile_limit

    port = free_port()
    python = str(RAG_PYTHON) if kind == "aiohttp" else sys.executable
    proc = subprocess.Popen(
        [python, __file__, "--serve", kind, str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=nofile_limit(64),
    )  # fmt: skip
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise SystemExit(f"{kind} did not start: {proc.communicate()[1][-500:]}")
    for _ in range(200):
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        time.sleep(0.05)
    return proc, ("127.0.0.1", port)


def _status(addr: tuple[str, int], data: bytes, timeout: float = 10) -> str:
    from tests.support.sockets import exchange, split_response

    try:
        return split_response(exchange(addr, data, timeout=timeout))[0][:60]
    except Exception as exc:
        return f"no answer ({type(exc).__name__})"


def _scrape(addr: tuple[str, int], timeout: float = 15) -> str:
    return _status(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout)


def _closed_within(sock: socket.socket, seconds: float, feed: bytes = b"") -> bool:
    from tests.support.sockets import closed_by_peer

    end = time.monotonic() + seconds
    with contextlib.suppress(OSError):
        while time.monotonic() < end:
            if closed_by_peer(sock):
                return True
            if feed:
                sock.sendall(feed[:1])
                feed = feed[1:] or b"a"
            time.sleep(0.1)
    return closed_by_peer(sock)


def probe(kind: str) -> dict[str, Any]:
    import psutil

    from tests.support.sockets import open_files_allowed

    def cpu(p: psutil.Process) -> float:
        t = p.cpu_times()
        return float(t.user + t.system)

    close = b"Connection: close\r\n"
    r: dict[str, Any] = {}
    proc, addr = _start(kind)
    try:
        r["GET 200"] = _scrape(addr)
        r["HEAD 200"] = _status(addr, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n" + close + b"\r\n")
        r["POST 405"] = _status(
            addr, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n" + close + b"\r\nabc"
        )
        r["no version 400"] = _status(addr, b"GET /metrics\r\n\r\n")
        pad = b"X-Pad: " + b"a" * (MAX_HEAD + 10) + b"\r\n"
        r["9 KiB head 431"] = _status(addr, b"GET /metrics HTTP/1.1\r\n" + pad + close + b"\r\n")
        with socket.create_connection(addr) as half:
            half.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            r["half-sent head closed"] = _closed_within(half, 10)
        with socket.create_connection(addr) as trickle:
            r["trickled head closed"] = _closed_within(trickle, 10, b"GET /metrics HTTP/1.1\r\nX: ")
        idle: list[socket.socket] = []
        with open_files_allowed(600):
            with contextlib.suppress(OSError):
                for _ in range(192):
                    idle.append(socket.create_connection(addr, timeout=5))
            r["idle connections accepted"] = len(idle)
            r["scrape behind 192 idle"] = _scrape(addr)
            server = psutil.Process(proc.pid)
            c0, w0 = cpu(server), time.monotonic()
            time.sleep(3)
            r["CPU while held"] = round((cpu(server) - c0) / (time.monotonic() - w0), 2)
            for sock in idle:
                sock.close()
        time.sleep(10)
        r["scrape 10 s after"] = _scrape(addr)
    finally:
        proc.kill()
        _, err = proc.communicate()
    r["stderr lines"] = len(err.splitlines())
    return r


def passed(r: dict[str, Any]) -> int:
    checks = [
        r["GET 200"].endswith("200 OK"),
        r["HEAD 200"].endswith("200 OK"),
        "405" in r["POST 405"],
        "400" in r["no version 400"],
        "431" in r["9 KiB head 431"],
        r["half-sent head closed"],
        r["trickled head closed"],
        r["scrape behind 192 idle"].endswith("200 OK"),
        r["CPU while held"] < 0.10,
        r["scrape 10 s after"].endswith("200 OK"),
    ]
    return sum(bool(c) for c in checks)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("candidates", nargs="*", default=list(CANDIDATES))
    args = parser.parse_args()
    scores = {}
    for kind in args.candidates:
        if kind == "aiohttp" and not RAG_PYTHON.exists():
            print("aiohttp: skipped (no services/rag/.venv)", flush=True)
            continue
        result = probe(kind)
        scores[kind] = passed(result)
        print(kind, json.dumps(result), flush=True)
    print("checks passed of 10: " + ", ".join(f"{k} {v}" for k, v in scores.items()))


if __name__ == "__main__":
    main()
