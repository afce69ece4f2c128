"""``vots-ops report serve``: the report's figures on ``/metrics`` over HTTP.

Sampled at most every ``interval`` seconds (on scrape, cached); the exposition
itself is ``ops.report.prom``.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from ops.report.prom import _registry, families
from ops.report.run import ReportRun, measure, take_sample

log = logging.getLogger(__name__)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the log."""


def _server_class(host: str, port: int) -> tuple[type[WSGIServer], str]:
    """A threading WSGI server of the address family ``host`` resolves to."""
    from socketserver import ThreadingMixIn

    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        allow_reuse_address = True
        address_family = family

    return Server, str(sockaddr[0])


_INDEX = b'<html><body><a href="/metrics">/metrics</a></body></html>\n'


class MetricsServer:
    """``/metrics`` over HTTP from a background thread, sampled at most every
    ``interval`` seconds (on scrape, cached); the first sample is taken by
    ``start()``, so the first scrape already has data.

    With ``db`` each new sample is also stored in that history (as a cron run
    would); without it, rates and findings come from the previous in-memory
    sample. ``port=0`` binds a free port (see ``port``). A failed re-sample is
    logged and the last good sample is served (its
    ``vots_report_last_run_timestamp_seconds`` shows its age).

    Use ``with MetricsServer(...) as server:`` or ``start()``/``stop()``.
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        interval: float = 15.0,
        db: Path | str | None = None,
        docker: bool = True,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self.host = host
        self.interval = float(interval)
        self.db = Path(db) if db is not None else None
        self.docker = docker
        self._requested_port = port
        self._lock = threading.Lock()
        self._run: ReportRun | None = None
        self._taken = 0.0
        self._prev: dict[str, Any] | None = None
        self._httpd: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.samples_taken = 0

    # -- sampling
    def _take(self) -> ReportRun:
        if self.db is not None:
            return take_sample(self.db, docker=self.docker)
        run = measure(self._prev, docker=self.docker)
        self._prev = run.sample
        return run

    def current(self) -> ReportRun:
        """The cached run, re-sampled first if it is ``interval`` seconds old."""
        with self._lock:
            now = time.monotonic()
            if self._run is None or now - self._taken >= self.interval:
                try:
                    self._run = self._take()
                    self.samples_taken += 1
                except Exception:
                    if self._run is None:
                        raise
                    log.exception("re-sampling failed; serving the previous sample")
                self._taken = now
            return self._run

    # -- HTTP
    def _app(self) -> Callable[..., Iterable[bytes]]:
        from prometheus_client import make_wsgi_app

        metrics = make_wsgi_app(_registry(lambda: families(self.current())))

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO") or "/"
            if path == "/metrics":
                return metrics(environ, start_response)
            if path == "/":
                start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
                return [_INDEX]
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"not found; metrics are at /metrics\n"]

        return app

    def start(self) -> MetricsServer:
        if self._httpd is not None:
            raise RuntimeError("already started")
        self.current()
        cls, addr = _server_class(self.host, self._requested_port)
        httpd = cls((addr, self._requested_port), _QuietHandler)
        httpd.set_app(self._app())
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="vots-ops-metrics",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self._httpd.server_address[0] if self._httpd else self.host
        host = f"[{host}]" if ":" in str(host) else str(host)
        return f"http://{host}:{self.port}/metrics"

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    port: int,
    host: str = "127.0.0.1",
    interval: float = 15.0,
    db: Path | str | None = None,
    docker: bool = True,
    *,
    stop: threading.Event | None = None,
    on_ready: Callable[[MetricsServer], None] | None = None,
) -> None:
    """Serve ``/metrics`` until SIGTERM, Ctrl-C (SIGINT) or ``stop`` is set.

    Blocks. ``on_ready(server)`` is called once the port is bound (the CLI can
    print ``server.url``). SIGTERM is handled only when called from the main
    thread (where Python allows signal handlers); from another thread, set
    ``stop`` instead, or use ``MetricsServer`` directly.
    """
    done = stop if stop is not None else threading.Event()
    server = MetricsServer(port, host, interval=interval, db=db, docker=docker)
    previous: Any = None
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: done.set())
    try:
        server.start()
        if on_ready is not None:
            on_ready(server)
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if in_main and previous is not None:
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signal.SIGTERM, previous)


__all__ = ["MetricsServer", "serve"]
