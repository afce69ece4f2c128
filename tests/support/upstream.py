"""A small real upstream for nginx tests and benches: a plain ASGI app served by uvicorn.

``serve_upstream()`` starts it on a free loopback port in a background thread and
waits until ``/healthz`` answers. The app counts every TCP connection uvicorn
accepts (in the protocol's ``connection_made``, so a reused ephemeral port is
still a new connection) and every request, which is what a keep-alive test needs:
N requests through a pooling proxy should arrive over far fewer than N connections.

Routes:

* ``/healthz``: ``{"status": "ok"}``.
* ``/api/v1/...``: a JSON document of a few KiB, deterministic per path
  (``api_body(path)``), compressible text.
* ``/_next/static/...``: a JavaScript file, deterministic per path
  (``static_body(path)``), sent with ``Cache-Control: no-cache`` so a test can
  see the proxy replace it.
* ``/``: a small HTML page. ``/__stats``: the counters as JSON (not counted as a
  request). Anything else: 404.

Every counted response carries ``X-Upstream-Request: N`` (N = requests so far),
so a cached response can be told apart from a fresh one.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

LOOPBACK = "127.0.0.1"


def api_body(path: str) -> bytes:
    """The JSON body served for ``path`` under /api/v1/: > 1 KiB, repetitive, compressible."""
    items = [
        {
            "id": i,
            "path": path,
            "title": f"Finding {i} for {path}",
            "severity": ("low", "medium", "high")[i % 3],
            "description": "The analysed snippet repeats a pattern that the model flags "
            "as a likely defect; see the linked rule for details.",
        }
        for i in range(24)
    ]
    return json.dumps({"path": path, "count": len(items), "items": items}).encode()


def static_body(path: str) -> bytes:
    """The JavaScript served for ``path`` under /_next/static/."""
    lines = [f"// {path}"]
    lines += [
        f"export function chunk{i}(value) {{ return value.map((x) => x * {i} + 1).filter(Boolean); }}"
        for i in range(40)
    ]
    return ("\n".join(lines) + "\n").encode()


INDEX_HTML = (
    "<!doctype html><html><head><title>upstream</title></head><body>"
    + "".join(f"<p>Paragraph {i}: a real upstream for nginx tests.</p>" for i in range(30))
    + "</body></html>"
).encode()


@dataclass
class Stats:
    """Counters shared between the server thread and the test."""

    connections: int = 0
    requests: int = 0
    peers: set[tuple[str, int]] = field(default_factory=set)
    paths: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def connection_made(self, peer: Any) -> None:
        with self.lock:
            self.connections += 1
            if isinstance(peer, tuple) and len(peer) >= 2:
                self.peers.add((str(peer[0]), int(peer[1])))

    def request(self, path: str) -> int:
        with self.lock:
            self.requests += 1
            self.paths[path] += 1
            return self.requests

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "connections": self.connections,
                "distinct_peers": len(self.peers),
                "requests": self.requests,
                "paths": dict(self.paths),
            }

    def reset(self) -> None:
        with self.lock:
            self.connections = 0
            self.requests = 0
            self.peers.clear()
            self.paths.clear()


class UpstreamApp:
    """The ASGI callable."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        # Drain the request body so POSTs behave like a real app.
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False) and message["type"] == "http.request"
        path: str = scope["path"]
        if path == "/__stats":
            await _respond(
                send, 200, "application/json", json.dumps(self.stats.snapshot()).encode()
            )
            return
        n = self.stats.request(path)
        extra = [(b"x-upstream-request", str(n).encode())]
        if path == "/healthz":
            await _respond(send, 200, "application/json", b'{"status": "ok"}', extra)
        elif path.startswith("/api/v1/"):
            await _respond(send, 200, "application/json", api_body(path), extra)
        elif path.startswith("/_next/static/") and path.endswith(".js"):
            extra.append((b"cache-control", b"no-cache"))
            await _respond(send, 200, "application/javascript", static_body(path), extra)
        elif path == "/":
            await _respond(send, 200, "text/html; charset=utf-8", INDEX_HTML, extra)
        else:
            await _respond(send, 404, "application/json", b'{"error": "not found"}', extra)


async def _respond(
    send: Any,
    status: int,
    content_type: str,
    body: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _counting_protocol(stats: Stats) -> type[asyncio.Protocol]:
    class CountingH11Protocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            stats.connection_made(transport.get_extra_info("peername"))
            # Like any real server: no Nagle, or each keep-alive response after the first
            # waits ~40 ms for the peer's delayed ACK (headers and body are two writes).
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().connection_made(transport)

    return CountingH11Protocol


@dataclass
class RunningUpstream:
    host: str
    port: int
    stats: Stats

    @property
    def address(self) -> str:
        """``host:port``, as an nginx ``server`` line wants it."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@contextmanager
def serve_upstream(timeout: float = 60.0) -> Iterator[RunningUpstream]:
    """Run the app on a free loopback port until the block exits."""
    stats = Stats()
    # proto=IPPROTO_TCP so asyncio treats accepted sockets as TCP (it sets TCP_NODELAY on those).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        UpstreamApp(stats),
        host=LOOPBACK,
        port=port,
        http=_counting_protocol(stats),
        lifespan="off",
        log_level="warning",
        access_log=False,
        # Longer than nginx's upstream keepalive_timeout, as a deployed app should be,
        # so the proxy never reuses a socket this side has just closed.
        timeout_keep_alive=75,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"upstream-{port}", daemon=True
    )
    thread.start()
    try:
        _wait_ready(server, thread, f"http://{LOOPBACK}:{port}/healthz", timeout)
        stats.reset()
        yield RunningUpstream(LOOPBACK, port, stats)
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)
        sock.close()


def _wait_ready(server: uvicorn.Server, thread: threading.Thread, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError("upstream server thread exited during startup")
        if server.started:
            try:
                with httpx.Client(trust_env=False, timeout=2) as client:
                    if client.get(url).status_code == 200:
                        return
            except httpx.HTTPError as exc:
                last = exc
        time.sleep(0.02)
    raise TimeoutError(f"upstream at {url} did not answer within {timeout:g}s (last error: {last})")


__all__ = [
    "INDEX_HTML",
    "RunningUpstream",
    "Stats",
    "UpstreamApp",
    "api_body",
    "serve_upstream",
    "static_body",
]
