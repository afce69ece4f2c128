"""``vots-ops report serve``: the report's figures on ``/metrics`` over HTTP, from a
server that idle or slow clients cannot starve.

prometheus_client's ``start_http_server`` (wsgiref, one thread per connection)
has no connection timeout and no connection cap: a few hundred idle connections
from any local user use up the process's file descriptors, every scrape then
times out, and the accept loop spins on EMFILE. This server instead:

* accepts and reads requests on one event-loop thread (``selectors``,
  non-blocking). A request head must arrive complete within ``header_timeout``
  seconds of the connection and fit in ``MAX_HEAD`` bytes, or the connection is
  closed (431 when it is too large);
* holds at most ``max_connections`` connections, by default derived from
  RLIMIT_NOFILE with headroom for the sampler's own files (SQLite, /proc reads,
  the Docker socket). At the cap the oldest connection that has not sent a
  complete request is closed, so a scrape queued behind idle connections is
  still accepted and answered;
* pauses accepting with short, growing sleeps when ``accept()`` fails for want
  of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) instead of spinning
  on a listening socket that stays readable, and logs one line per episode;
* builds and writes responses on a small pool of worker threads, each write
  bounded by ``write_timeout``; every response closes its connection.

Figures are sampled at most every ``interval`` seconds, on scrape, and cached;
the exposition itself is ``ops.report.prom``. Importing this module costs only
the standard library; prometheus_client is imported when a server starts.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import itertools
import logging
import os
import queue
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ops.errors import OpsError

if TYPE_CHECKING:
    from ops.report.run import ReportRun
    from ops.report.sample import Sample

log = logging.getLogger(__name__)

#: A request head (request line and headers) larger than this is refused (431).
MAX_HEAD = 8 * 1024
#: Seconds a client has, from its connection, to send a complete request head.
HEADER_TIMEOUT = 5.0
#: Seconds a worker may spend writing one response.
WRITE_TIMEOUT = 10.0
#: Threads that build and write responses.
WORKERS = 4
#: The connection cap never exceeds this, whatever RLIMIT_NOFILE allows.
MAX_CONNECTIONS = 1024
#: Connections accepted per wake-up of the event loop before it reads again.
ACCEPT_BURST = 64
BACKLOG = 128
#: Pauses after failed accept() calls grow from the first to the second.
BACKOFF = (0.01, 1.0)

# accept() failing for want of a resource: retrying at once would spin.
_STARVED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# accept() failing because that one client is already gone: take the next.
_CLIENT_GONE = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.ECONNRESET, errno.EPERM})

_INDEX = b'<html><body><a href="/metrics">/metrics</a></body></html>\n'
_LISTENER, _WAKE = object(), object()


class ListenError(OpsError, OSError):
    """The address cannot be bound: a bad host, a port in use, no permission.

    Also an ``OSError``, as the bind failure it replaces was.
    """

    def __init__(self, host: str, port: int, cause: OSError) -> None:
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        super().__init__(f"cannot listen on {where}: {cause.strerror or cause}")
        self.errno = cause.errno


def connection_cap(soft_limit: int | None = None, open_now: int | None = None) -> int:
    """How many client connections a server may hold open.

    The soft RLIMIT_NOFILE minus the descriptors already open minus headroom for
    what sampling opens meanwhile (SQLite's database, WAL and shared-memory
    files, /proc reads, the Docker socket): an eighth of the limit, at least 24.
    Within [4, ``MAX_CONNECTIONS``]; an unlimited soft limit counts as the cap.
    """
    import resource

    if soft_limit is None:
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft_limit < 0 or soft_limit == resource.RLIM_INFINITY:
        soft_limit = MAX_CONNECTIONS * 2
    if open_now is None:
        try:
            open_now = len(os.listdir("/proc/self/fd"))
        except OSError:
            open_now = 16
    headroom = max(24, soft_limit // 8)
    return max(4, min(MAX_CONNECTIONS, soft_limit - open_now - headroom))


# ------------------------------------------------------------------ HTTP


class _Request(NamedTuple):
    method: str
    target: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "


def _head_end(buf: bytearray) -> int:
    """Index just past the blank line ending a request head, or -1 (bare LF allowed)."""
    ends = [i + 4 for i in (buf.find(b"\r\n\r\n"),) if i >= 0]
    ends += [i + 2 for i in (buf.find(b"\n\n"),) if i >= 0]
    return min(ends) if ends else -1


def _parse(head: bytes) -> _Request | None:
    """The request line and headers, or None when they are not HTTP/1.x."""
    lines = head.decode("latin-1").split("\n")
    parts = lines[0].rstrip("\r").split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[2].startswith("HTTP/1."):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        line = line.rstrip("\r")
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            return None
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return _Request(parts[0], parts[1], headers)


def _http(
    status: str, body: bytes, headers: list[tuple[str, str]] | None = None, *, head: bool = False
) -> bytes:
    """A whole HTTP/1.1 response that closes the connection (no body for HEAD)."""
    from email.utils import formatdate

    lines = [f"HTTP/1.1 {status}", f"Date: {formatdate(usegmt=True)}"]
    headers = headers or [("Content-Type", "text/plain; charset=utf-8")]
    lines += [f"{k}: {v}" for k, v in headers]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + (b"" if head else body)


class _Conn:
    """A connection still sending its request head."""

    __slots__ = ("buf", "deadline", "sock")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock, self.deadline = sock, deadline
        self.buf = bytearray()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, OpsError) else f"{type(exc).__name__}: {text}"


class _Errors:
    """``vots_report_errors_total{stage}``: what failed while serving (a re-sample
    whose previous sample was served instead), registered beside the figures."""

    def __init__(self, counts: dict[str, int]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(
            "vots_report_errors",
            "Failures while serving by stage (sample: re-sampling failed and the "
            "previous sample was served).",
            labels=["stage"],
        )
        for stage, count in sorted(self._counts.items()):
            family.add_metric([stage], count)
        yield family


class _Only:
    """Only the samples named in ``?name[]=``, as prometheus_client serves them
    (its own ``restricted_registry`` skips collectors that do not describe
    themselves, such as ours)."""

    def __init__(self, registry: Any, names: set[str]) -> None:
        self._registry, self._names = registry, names

    def collect(self) -> Iterator[Any]:
        from prometheus_client.metrics_core import Metric

        for family in self._registry.collect():
            samples = [s for s in family.samples if s.name in self._names]
            if samples:
                only = Metric(family.name, family.documentation, family.type, family.unit)
                only.samples = samples
                yield only


class MetricsServer:
    """``/metrics`` over HTTP from background threads, sampled at most every
    ``interval`` seconds (on scrape, cached); the first sample is taken by
    ``start()``, so the first scrape already has data.

    With ``db`` each new sample is also stored in that history (as a cron run
    would); without it, rates and findings come from the previous in-memory
    sample. ``port=0`` binds a free port (see ``port``). A failed re-sample is
    logged (one line), counted in ``vots_report_errors_total{stage="sample"}``
    (``errors``), and the last good sample is served (its
    ``vots_report_last_run_timestamp_seconds`` shows its age).

    ``header_timeout``, ``write_timeout``, ``max_connections`` (default
    ``connection_cap()``) and ``workers`` bound what one client can hold; see
    the module's docstring. Use ``with MetricsServer(...) as server:`` or
    ``start()``/``stop()``.
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        interval: float = 15.0,
        db: Path | str | None = None,
        docker: bool = True,
        header_timeout: float = HEADER_TIMEOUT,
        write_timeout: float = WRITE_TIMEOUT,
        max_connections: int | None = None,
        workers: int = WORKERS,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        if header_timeout <= 0 or write_timeout <= 0:
            raise ValueError("timeouts must be > 0")
        if max_connections is not None and max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.host = host
        self.interval = float(interval)
        self.db = Path(db) if db is not None else None
        self.docker = docker
        self.header_timeout = float(header_timeout)
        self.write_timeout = float(write_timeout)
        self.max_connections = max_connections
        self.workers = workers
        self._requested_port = port
        self._sample_lock = threading.Lock()
        self._run: ReportRun | None = None
        self._taken = 0.0
        self._good = 0.0
        self._prev: Sample | None = None
        self.samples_taken = 0
        #: stage -> failures, exported as ``vots_report_errors_total``.
        self.errors: dict[str, int] = {"sample": 0}
        self._address: tuple[str, int] | None = None
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []

    # -- sampling
    def _take(self) -> ReportRun:
        from ops.report import run

        if self.db is not None:
            return run.take_sample(self.db, docker=self.docker)
        taken = run.measure(self._prev, docker=self.docker)
        self._prev = taken.sample
        return taken

    def current(self) -> ReportRun:
        """The cached run, re-sampled first if it is ``interval`` seconds old.

        If re-sampling fails, the previous run is returned (and the failure
        logged and counted); only the very first sample's failure is raised.
        """
        with self._sample_lock:
            now = time.monotonic()
            if self._run is None or now - self._taken >= self.interval:
                try:
                    run = self._take()
                except Exception as exc:
                    if self._run is None:
                        raise
                    self.errors["sample"] += 1
                    log.warning(
                        "re-sampling failed, serving the previous sample (%.0f s old): %s",
                        now - self._good,
                        _one_line(exc),
                    )
                    log.debug("re-sampling failed", exc_info=True)
                else:
                    self._run, self._good = run, time.monotonic()
                    self.samples_taken += 1
                self._taken = now
            return self._run

    # -- lifecycle
    def _bind(self) -> socket.socket:
        try:
            infos = socket.getaddrinfo(
                self.host, self._requested_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family, _, _, _, sockaddr = infos[0]
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(sockaddr)
                sock.listen(BACKLOG)
                sock.setblocking(False)
            except BaseException:
                sock.close()
                raise
        except OSError as exc:
            raise ListenError(self.host, self._requested_port, exc) from exc
        return sock

    def start(self) -> MetricsServer:
        """Bind, take the first sample, then serve from background threads."""
        if self._listener is not None:
            raise RuntimeError("already started")
        # What answering needs, imported now: under descriptor pressure a first
        # import (which opens files) could fail mid-request.
        import email.utils  # noqa: F401
        import gzip  # noqa: F401
        import urllib.parse  # noqa: F401

        import prometheus_client.exposition  # noqa: F401

        from ops.report.prom import _registry, families

        listener = self._bind()
        try:
            self.current()
            self._registry = _registry(lambda: families(self.current()))
            self._registry.register(_Errors(self.errors))
            self._cap = self.max_connections or connection_cap()
            self._sel = selectors.DefaultSelector()
            self._wake_r, self._wake_w = socket.socketpair()
        except BaseException:
            listener.close()
            raise
        for sock in (self._wake_r, self._wake_w):
            sock.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        self._sel.register(listener, selectors.EVENT_READ, _LISTENER)
        self._listening = True
        self._resume_at: float | None = None
        self._failed_accepts = 0
        self._at_cap = False
        self._reading: collections.OrderedDict[socket.socket, _Conn] = collections.OrderedDict()
        self._busy = 0  # connections handed to the workers, not yet closed
        self._busy_lock = threading.Lock()
        self._jobs: queue.SimpleQueue[tuple[socket.socket, bytes | None] | None] = (
            queue.SimpleQueue()
        )
        self._stopping = threading.Event()
        host, port = listener.getsockname()[:2]
        self._address = (str(host), int(port))
        self._listener = listener
        self._threads = [threading.Thread(target=self._loop, name="vots-ops-metrics", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work, name=f"vots-ops-metrics-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every socket (idempotent)."""
        listener, threads = self._listener, self._threads
        if listener is None:
            return
        self._stopping.set()
        self._wake()
        for _ in threads[1:]:
            self._jobs.put(None)
        # Workers may be inside a sample or a write; they are daemons, so a slow
        # one is left behind rather than waited for.
        deadline = time.monotonic() + 5
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._listener, self._threads, self._address = None, [], None
        _close(listener)
        self._sel.close()
        _close(self._wake_r)
        _close(self._wake_w)

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port)."""
        if self._address is None:
            raise RuntimeError("not started")
        return self._address

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def url(self) -> str:
        host = self.address[0]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/metrics"

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the event loop: accept, read request heads, expire, evict
    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _loop(self) -> None:
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                self._expire(now)
                self._resume(now)
                for key, _ in self._sel.select(self._timeout(now)):
                    if key.data is _LISTENER:
                        self._accept()
                    elif key.data is _WAKE:
                        with contextlib.suppress(OSError):
                            while self._wake_r.recv(4096):
                                pass
                    elif key.fileobj in self._reading:
                        self._read(key.data)
        except Exception:
            log.exception("the /metrics event loop failed")
        finally:
            for sock in list(self._reading):
                self._drop(sock)

    def _timeout(self, now: float) -> float | None:
        """Seconds until the oldest head is due or accepting resumes; None: nothing due."""
        due = [conn.deadline for conn in itertools.islice(self._reading.values(), 1)]
        if not self._listening and self._resume_at is not None:
            due.append(self._resume_at)
        return max(0.0, min(due) - now) if due else None

    def _expire(self, now: float) -> None:
        # Every connection gets the same timeout, so accept order is deadline order.
        while self._reading:
            sock, conn = next(iter(self._reading.items()))
            if conn.deadline > now:
                return
            self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        del self._reading[sock]
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(sock)
        _close(sock)
        if not self._reading:
            self._at_cap = False

    def _evict_oldest(self) -> None:
        if not self._at_cap:
            self._at_cap = True
            log.warning(
                "%d connections open (cap %d) or out of descriptors: closing the oldest "
                "that have not sent a request",
                len(self._reading) + self._busy,
                self._cap,
            )
        self._drop(next(iter(self._reading)))

    def _pause(self, until: float | None) -> None:
        """Stop accepting until ``until`` (None: until a worker frees a slot)."""
        if self._listening:
            assert self._listener is not None
            self._sel.unregister(self._listener)
            self._listening = False
        self._resume_at = until

    def _resume(self, now: float) -> None:
        if self._listening or (self._resume_at is not None and now < self._resume_at):
            return
        if not self._reading and self._busy >= self._cap:
            self._resume_at = None  # a worker's wake-up resumes it, not the clock
            return
        assert self._listener is not None
        self._sel.register(self._listener, selectors.EVENT_READ, _LISTENER)
        self._listening, self._resume_at = True, None

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        for _ in range(ACCEPT_BURST):
            if len(self._reading) + self._busy >= self._cap:
                if not self._reading:
                    self._pause(None)  # every slot is a request being answered
                    return
                self._evict_oldest()
            try:
                sock, _ = listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in _CLIENT_GONE:
                    continue
                if exc.errno in _STARVED and self._reading:
                    self._evict_oldest()  # frees a descriptor for the next try
                    continue
                self._back_off(exc)
                return
            if self._failed_accepts:
                log.info("accepting again after %d failed attempts", self._failed_accepts)
                self._failed_accepts = 0
            sock.setblocking(False)
            conn = _Conn(sock, time.monotonic() + self.header_timeout)
            self._reading[sock] = conn
            self._sel.register(sock, selectors.EVENT_READ, conn)
            self._read(conn)  # a request sent right after the handshake is taken at once

    def _back_off(self, exc: OSError) -> None:
        if not self._failed_accepts:
            log.warning("cannot accept connections (%s); pausing and retrying", exc.strerror or exc)
        self._failed_accepts += 1
        low, high = BACKOFF
        delay = min(high, low * 2 ** min(self._failed_accepts - 1, 16))
        self._pause(time.monotonic() + delay)

    def _read(self, conn: _Conn) -> None:
        sock = conn.sock
        try:
            data = sock.recv(MAX_HEAD + 1 - len(conn.buf))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sock)
            return
        conn.buf += data
        end = _head_end(conn.buf)
        if end < 0 and len(conn.buf) <= MAX_HEAD:
            return
        head = bytes(conn.buf[:end]) if 0 <= end <= MAX_HEAD else None
        del self._reading[sock]
        self._sel.unregister(sock)
        if not self._reading:
            self._at_cap = False
        with self._busy_lock:
            self._busy += 1
        self._jobs.put((sock, head))

    # -- the workers: answer one request, close
    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            sock, head = job
            try:
                if not self._stopping.is_set():
                    self._answer(sock, head)
            finally:
                _close(sock)
                with self._busy_lock:
                    self._busy -= 1
                self._wake()

    def _answer(self, sock: socket.socket, head: bytes | None) -> None:
        try:
            data = self._response(head)
        except Exception:
            log.exception("building a /metrics response failed")
            data = _http("500 Internal Server Error", b"internal error; see the server's log\n")
        try:
            sock.settimeout(self.write_timeout)
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            # Read what the client sent beyond the head, so closing does not reset
            # the connection (and discard the response) under its feet.
            sock.setblocking(False)
            for _ in range(16):
                if not sock.recv(65536):
                    break
        except OSError:
            pass  # gone, stopped reading, or nothing more to read

    def _response(self, head: bytes | None) -> bytes:
        if head is None:
            return _http("431 Request Header Fields Too Large", b"request head too large\n")
        request = _parse(head)
        if request is None:
            return _http("400 Bad Request", b"bad request\n")
        from urllib.parse import parse_qs, urlsplit

        target = urlsplit(request.target)
        only_head = request.method == "HEAD"
        if target.path not in ("/", "/metrics"):
            return _http("404 Not Found", b"not found; metrics are at /metrics\n", head=only_head)
        if request.method not in ("GET", "HEAD"):
            allow = [("Allow", "GET, HEAD"), ("Content-Type", "text/plain; charset=utf-8")]
            return _http("405 Method Not Allowed", b"use GET or HEAD\n", allow)
        if target.path == "/":
            html = [("Content-Type", "text/html; charset=utf-8")]
            return _http("200 OK", _INDEX, html, head=only_head)
        import gzip

        from prometheus_client.exposition import choose_encoder, gzip_accepted

        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        registry: Any = self._registry
        names = parse_qs(target.query).get("name[]")
        if names:
            registry = _Only(registry, set(names))
        body = encoder(registry)
        headers = [("Content-Type", content_type), ("Vary", "Accept, Accept-Encoding")]
        if gzip_accepted(request.headers.get("accept-encoding", "")):
            body = gzip.compress(body)
            headers.append(("Content-Encoding", "gzip"))
        return _http("200 OK", body, headers, head=only_head)


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
    ``stop`` instead, or use ``MetricsServer`` directly. A port that cannot be
    bound raises ``ListenError``.
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


__all__ = ["ListenError", "MetricsServer", "connection_cap", "serve"]
