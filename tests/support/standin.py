"""A real stand-in service for load tests: a plain ASGI app that uvicorn serves in its own process.

Routes (all JSON):

* ``/healthz``, ``/fast``: answer at once.
* ``/sleep/N``: answer after ``N`` ms (``asyncio.sleep``: the server stays free).
* ``/delayed``: answer after the delay last set with ``POST /__delay/N`` (ms),
  so two runs can see the same endpoint get slower.
* ``/fail``: a real 500.
* ``/redirect``: a 302 to another loopback address where nothing listens.
* ``/stall``: when at least a second has passed since the last stall ended,
  block the whole event loop for one second (``time.sleep``), as a GC pause or
  a stuck lock does; otherwise answer at once. Under steady traffic the server
  is stalled for one second in every two.
* ``/api/v1/...``, ``/_next/static/...``, ``/``: small bodies, so the bundled
  locustfile runs against it through the rendered nginx (POSTs are read).
* ``/__count``: how many requests it has answered (``/__`` ones not counted), so
  a test can wait until a run has really sent load instead of sleeping a while.

``serve_standin()`` starts ``uvicorn`` on a free loopback port and waits for
``/healthz``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ops.proc import free_port
from tests.support.processes import stop_process

STATE: dict[str, float] = {"delay_ms": 0.0, "stall_end": 0.0, "requests": 0}


async def _send(
    send: Any, status: int, body: dict[str, Any], ctype: str = "application/json"
) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", ctype.encode()),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the body, as a real app does
        message = await receive()
        more = message.get("more_body", False)
    path: str = scope["path"]
    if not path.startswith("/__"):
        STATE["requests"] += 1
    if path == "/__count":
        await _send(send, 200, {"requests": STATE["requests"]})
    elif path in ("/healthz", "/fast"):
        await _send(send, 200, {"status": "ok"})
    elif path.startswith("/sleep/"):
        await asyncio.sleep(int(path.rsplit("/", 1)[1]) / 1000.0)
        await _send(send, 200, {"slept_ms": int(path.rsplit("/", 1)[1])})
    elif path.startswith("/__delay/") and scope["method"] == "POST":
        STATE["delay_ms"] = float(path.rsplit("/", 1)[1])
        await _send(send, 200, {"delay_ms": STATE["delay_ms"]})
    elif path == "/delayed":
        await asyncio.sleep(STATE["delay_ms"] / 1000.0)
        await _send(send, 200, {"delay_ms": STATE["delay_ms"]})
    elif path == "/redirect":  # elsewhere on loopback, where nothing listens
        await send(
            {
                "type": "http.response.start",
                "status": 302,
                "headers": [
                    (b"location", b"http://127.0.0.2:9/elsewhere"),
                    (b"content-length", b"0"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})
    elif path == "/fail":
        await _send(send, 500, {"error": "deliberate failure"})
    elif path == "/stall":
        now = time.monotonic()
        if now - STATE["stall_end"] >= 1.0:
            time.sleep(1.0)  # blocks the event loop: every connection waits
            STATE["stall_end"] = time.monotonic()
        await _send(send, 200, {"status": "ok"})
    elif path.startswith("/api/v1/") or path.startswith("/_next/static/") or path == "/":
        await _send(send, 200, {"path": path, "items": list(range(20))})
    else:
        await _send(send, 404, {"error": "not found"})


@dataclass
class Standin:
    """A running stand-in: its base URL and process."""

    url: str
    proc: subprocess.Popen[bytes]

    def requests(self) -> int:
        """Requests answered so far (across every test using this stand-in)."""
        with urllib.request.urlopen(f"{self.url}/__count", timeout=5) as resp:
            return int(json.loads(resp.read())["requests"])

    def set_delay(self, ms: float) -> None:
        req = urllib.request.Request(f"{self.url}/__delay/{ms:g}", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=5) as resp:
            resp.read()


def _start_standin(timeout: float) -> tuple[str, subprocess.Popen[bytes]] | None:
    """Start uvicorn on a free port; None if it exited before answering (the port was
    taken between choosing and binding it, by some other process on this machine)."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "tests.support.standin:app", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as resp:
                resp.read()
            return url, proc
        except OSError:
            if proc.poll() is not None:
                return None
            if time.monotonic() > deadline:
                stop_process(proc)
                raise AssertionError(f"the stand-in did not answer within {timeout:g}s") from None
            time.sleep(0.05)


@contextmanager
def serve_standin(timeout: float = 60.0, attempts: int = 3) -> Iterator[Standin]:
    """Run the stand-in with uvicorn on a free loopback port until the block ends."""
    for _ in range(attempts):
        started = _start_standin(timeout)
        if started is not None:
            break
    else:
        raise AssertionError(f"the stand-in exited at start {attempts} times (see its stderr)")
    url, proc = started
    try:
        yield Standin(url, proc)
    finally:
        stop_process(proc)
