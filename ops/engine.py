"""A minimal Docker Engine API client, shared by ``report``, ``profile`` and ``deploy``.

``vots-ops report`` runs from cron every minute on a budget of about 0.15 s and
35 MiB. The Docker SDK costs about 0.1 s and 20 MiB just to import (requests,
urllib3), and even ``http.client`` pulls in ``email`` and ``ssl`` (about 15 ms and
5 MiB). The engine's API on its local socket is plain HTTP/1.1 and JSON, so this
module speaks it directly with :mod:`socket` and :mod:`json` only:

* ``GET`` requests over an ``AF_UNIX`` socket, one connection reused
  (keep-alive) for sequential calls; concurrent callers each take a connection
  of their own from a small idle pool, so one :class:`Engine` can be shared by
  threads.
* Bodies sized by ``Content-Length`` or sent ``chunked`` (as the engine sends
  JSON); a connection the engine closed while idle is reopened once.
* Every socket operation has a short timeout. Every failure is an
  :class:`EngineError` (part of the ``OpsError`` tree, so a command that lets it
  through prints one line and exits 2): :class:`EngineUnreachable` for the
  transport (no socket, no permission, refused, no answer: the ``OSError`` is
  its ``cause``), :class:`NotFound` for a 404, :class:`ProtocolError` for an
  answer this client cannot read, :class:`EngineError` itself for other error
  statuses.
* Paths carry no API version: the engine answers with its own, which is what
  the SDK's ``version="auto"`` negotiates with an extra round trip.

:func:`connect` is how every command reaches the engine: it honours
``DOCKER_HOST`` (default ``unix:///var/run/docker.sock``). Only ``unix://``
hosts are spoken to directly; for ``tcp://``, ``ssh://`` or ``npipe://`` (TLS,
SSH tunnels) the Docker SDK is imported lazily and wrapped in
:class:`SdkEngine`, with the same methods and errors. A ``docker.DockerClient``
built elsewhere can be wrapped the same way (:func:`wrap_client`).
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterable
from typing import Any

from ops.errors import (
    EngineError,
    EngineNotFound,
    EngineProtocolError,
    EngineUnreachable,
)
from ops.extras import require

DEFAULT_SOCKET = "/var/run/docker.sock"
DEFAULT_HOST = f"unix://{DEFAULT_SOCKET}"
#: Seconds each socket operation (connect, send, each read) may take.
DEFAULT_TIMEOUT = 3.0
#: Idle connections kept for reuse (one per concurrent caller is enough).
DEFAULT_POOL = 16

_MAX_LINE = 65536
_MAX_HEADERS = 100


# The engine's errors live in the one tree (ops.errors); these names are this
# module's own spelling of them.
NotFound = EngineNotFound
ProtocolError = EngineProtocolError


def docker_host(env: dict[str, str] | None = None) -> str:
    """The engine address in force: ``DOCKER_HOST`` if set, else the default socket."""
    value = (os.environ if env is None else env).get("DOCKER_HOST", "").strip()
    return value or DEFAULT_HOST


def unix_socket_path(host: str) -> str | None:
    """The socket path of a ``unix://`` (or ``http+unix://``) address, else None.

    ``unix://`` alone is the default socket; ``unix://relative/path`` keeps the
    path as written.
    """
    for scheme in ("unix://", "http+unix://"):
        if host.startswith(scheme):
            return host[len(scheme) :] or DEFAULT_SOCKET
    return None


# ----------------------------------------------------------------------- HTTP/1.1


class _Connection:
    """One HTTP/1.1 connection to the engine's socket."""

    def __init__(self, path: str, timeout: float) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.file = sock.makefile("rb")
        self.requests = 0

    def close(self) -> None:
        try:
            self.file.close()
        finally:
            self.sock.close()

    def _line(self) -> bytes:
        line = self.file.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise ProtocolError("header line too long")
        return line

    def request(self, path: str, timeout: float) -> tuple[int, bytes, bool]:
        """Send ``GET path``; return (status, body, whether the connection stays usable).

        Raises ``ConnectionResetError`` when the peer closed the connection
        before the answer was complete (typically a kept-alive connection the
        engine dropped while idle).
        """
        self.sock.settimeout(timeout)
        self.requests += 1
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: vots-ops\r\n"
            "Accept: application/json\r\n\r\n".encode("ascii")
        )
        while True:  # skip interim 1xx answers
            status_line = self._line()
            if not status_line:
                raise ConnectionResetError("the engine closed the connection")
            parts = status_line.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
                raise ProtocolError(f"not an HTTP answer: {status_line[:80]!r}")
            status = int(parts[1])
            headers = self._headers()
            if not 100 <= status < 200:
                break
        keep = parts[0] == b"HTTP/1.1"
        connection = headers.get("connection", "").lower()
        if "close" in connection:
            keep = False
        elif "keep-alive" in connection:
            keep = True
        if status in (204, 304):
            return status, b"", keep
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return status, self._chunked(), keep
        length = headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                raise ProtocolError(f"bad Content-Length: {length!r}")
            return status, self._exactly(int(length)), keep
        return status, self.file.read(), False  # delimited by the close

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS + 1):
            line = self._line()
            if line in (b"\r\n", b"\n"):
                return headers
            if not line:
                raise ConnectionResetError("the engine closed the connection mid-answer")
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ProtocolError(f"bad header line: {line[:80]!r}")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        raise ProtocolError("too many headers")

    def _exactly(self, n: int) -> bytes:
        data = self.file.read(n)
        if len(data) != n:
            raise ConnectionResetError("the engine closed the connection mid-answer")
        return data

    def _chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size_line = self._line()
            if not size_line:
                raise ConnectionResetError("the engine closed the connection mid-answer")
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size: {size_line[:80]!r}") from None
            if size == 0:
                break
            chunks.append(self._exactly(size))
            if self._line() not in (b"\r\n", b"\n"):
                raise ProtocolError("chunk not followed by CRLF")
        while self._line() not in (b"\r\n", b"\n", b""):  # trailers
            pass
        return b"".join(chunks)


_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def _quote(segment: str) -> str:
    """Percent-encode one path segment (ids are hex; a name like ``..`` stays one segment)."""
    if segment.isascii() and segment.isalnum():
        return segment
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in segment.encode("utf-8"))


def _message(body: bytes) -> str:
    """The engine's error text: ``{"message": "..."}`` or the raw body."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        text = data["message"]
    else:
        text = body.decode("utf-8", "replace")
    lines = text.strip().splitlines()
    return lines[0][:200] if lines else ""


class Engine:
    """The engine on a local ``AF_UNIX`` socket; thread-safe, connections reused.

    Use as a context manager, or call :meth:`close`. All methods raise
    ``OSError`` (transport: no socket, no permission, refused, timed out),
    :class:`NotFound` (404) or :class:`EngineError` (other error statuses,
    malformed answers).
    """

    def __init__(
        self,
        socket_path: str = DEFAULT_SOCKET,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        pool_size: int = DEFAULT_POOL,
    ) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.pool_size = max(1, pool_size)
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        #: Connections opened so far (for tests and benchmarks).
        self.connections_opened = 0

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def __repr__(self) -> str:
        return f"Engine({self.url!r}, timeout={self.timeout:g})"

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the idle connections; ones in use close when their call ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- transport

    def _take(self, timeout: float) -> tuple[_Connection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        conn = _Connection(self.socket_path, timeout)
        with self._lock:
            self.connections_opened += 1
        return conn, False

    def _give_back(self, conn: _Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self.pool_size:
                self._idle.append(conn)
                return
        conn.close()

    def request(self, path: str, timeout: float | None = None) -> tuple[int, bytes]:
        """``GET path``: the status and the whole body. A kept-alive connection
        that the engine closed meanwhile is replaced once, transparently (GETs
        are idempotent); timeouts are never retried. Transport failures raise
        :class:`EngineUnreachable`."""
        limit = self.timeout if timeout is None else timeout
        try:
            return self._request(path, limit)
        except OSError as exc:
            raise EngineUnreachable(self.url, _what(exc, limit)) from exc

    def _request(self, path: str, limit: float) -> tuple[int, bytes]:
        for attempt in (1, 2):
            conn, reused = self._take(limit)
            try:
                status, body, keep = conn.request(path, limit)
            except (ConnectionResetError, BrokenPipeError):
                conn.close()
                if reused and attempt == 1:
                    with self._lock:  # idle ones are likely as stale: start afresh
                        stale, self._idle = self._idle, []
                    for other in stale:
                        other.close()
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            if keep:
                self._give_back(conn)
            else:
                conn.close()
            return status, body
        raise AssertionError("unreachable")

    def get(self, path: str, timeout: float | None = None) -> Any:
        """``GET path`` decoded from JSON; error statuses raise."""
        status, body = self.request(path, timeout)
        if status == 404:
            raise NotFound(f"{status} for GET {path}: {_message(body)}", status)
        if not 200 <= status < 300:
            raise EngineError(f"engine answered {status} for GET {path}: {_message(body)}", status)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise EngineError(f"engine answered non-JSON for GET {path}: {exc}", status) from None

    # -- API

    def ping(self, timeout: float | None = None) -> str:
        """``/_ping``: "OK" from a healthy engine."""
        status, body = self.request("/_ping", timeout)
        if status != 200:
            raise EngineError(f"engine answered {status} for GET /_ping: {_message(body)}", status)
        return body.decode("utf-8", "replace").strip()

    def version(self, timeout: float | None = None) -> dict[str, Any]:
        """``/version``: Version, ApiVersion, MinAPIVersion, Os, Arch, KernelVersion..."""
        found: dict[str, Any] = self.get("/version", timeout)
        return found

    def containers(self, all: bool = False, timeout: float | None = None) -> list[dict[str, Any]]:
        """``/containers/json``: running containers (every one with ``all``), as
        ``docker ps`` lists them (Id, Names, Image, Labels, State, ...)."""
        found: list[dict[str, Any]] = self.get(
            "/containers/json" + ("?all=1" if all else ""), timeout
        )
        return found

    def inspect(self, cid: str, timeout: float | None = None) -> dict[str, Any]:
        """``/containers/{id}/json``: State, Config, HostConfig, RestartCount, ..."""
        found: dict[str, Any] = self.get(f"/containers/{_quote(cid)}/json", timeout)
        return found

    def stats(self, cid: str, timeout: float | None = None) -> dict[str, Any]:
        """``/containers/{id}/stats?stream=false&one-shot=true``: one reading.

        Engines before API 1.41 ignore ``one-shot`` and answer after two
        readings (about 2 s); 1.41 (Docker 20.10) still answers only on its
        collector's next 1 s tick.
        """
        found: dict[str, Any] = self.get(
            f"/containers/{_quote(cid)}/stats?stream=false&one-shot=true", timeout
        )
        return found


# ------------------------------------------------------------------- SDK fallback


class SdkEngine:
    """The same calls through a ``docker.DockerClient`` (tcp://, ssh://, TLS...).

    Errors are mapped as :class:`Engine` raises them: 404 -> :class:`NotFound`;
    the SDK's other exceptions pass through (:func:`error_reason` reads them).
    """

    def __init__(self, client: Any, *, owned: bool = False) -> None:
        self.client = client
        self.api = client.api
        self.owned = owned
        adapter = getattr(self.api, "_custom_adapter", None)
        self.pool_size = getattr(adapter, "max_pool_size", 10)
        socket_path = getattr(adapter, "socket_path", None)
        self.url = f"unix://{socket_path}" if socket_path else str(self.api.base_url)
        self.timeout = float(getattr(self.api, "timeout", None) or DEFAULT_TIMEOUT)

    def __repr__(self) -> str:
        return f"SdkEngine({self.url!r})"

    def __enter__(self) -> SdkEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the client if this wrapper made it (a passed-in one stays open)."""
        if self.owned:
            self.client.close()

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from docker.errors import APIError, DockerException
        from docker.errors import NotFound as SdkNotFound
        from requests.exceptions import RequestException

        try:
            return fn(*args, **kwargs)
        except SdkNotFound as exc:
            raise NotFound(_first_line(exc) or "404", 404) from exc
        except APIError as exc:
            raise EngineError(_first_line(exc), exc.status_code) from exc
        except (DockerException, RequestException, OSError) as exc:
            raise EngineUnreachable(self.url, _what(exc, self.timeout)) from exc

    def ping(self, timeout: float | None = None) -> str:
        return "OK" if self._call(self.api.ping) else ""

    def version(self, timeout: float | None = None) -> dict[str, Any]:
        found: dict[str, Any] = self._call(self.api.version)
        return found

    def containers(self, all: bool = False, timeout: float | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._call(self.api.containers, all=all)
        return found

    def inspect(self, cid: str, timeout: float | None = None) -> dict[str, Any]:
        found: dict[str, Any] = self._call(self.api.inspect_container, cid)
        return found

    def stats(self, cid: str, timeout: float | None = None) -> dict[str, Any]:
        try:
            found: dict[str, Any] = self._call(self.api.stats, cid, stream=False, one_shot=True)
            return found
        except EngineUnreachable as exc:
            from docker.errors import InvalidVersion

            if not isinstance(exc.__cause__, InvalidVersion):
                raise
            # Engine API < 1.41: no one-shot, two readings, about 2 s.
            again: dict[str, Any] = self._call(self.api.stats, cid, stream=False)
            return again


def wrap_client(client: Any) -> Engine | SdkEngine:
    """An :class:`Engine` as is; a ``docker.DockerClient`` wrapped (not owned)."""
    if isinstance(client, (Engine, SdkEngine)):
        return client
    return SdkEngine(client, owned=False)


def connect(
    host: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    pool_size: int = DEFAULT_POOL,
) -> Engine | SdkEngine:
    """The engine at ``host`` (default: :func:`docker_host`). Opens nothing yet for
    a unix socket; other schemes build a Docker SDK client (which may raise, and
    asks the engine for its API version on the way)."""
    host = host or docker_host()
    path = unix_socket_path(host)
    if path is not None:
        return Engine(path, timeout, pool_size=pool_size)
    require("docker", "remote", f"a {host.partition('://')[0]}:// DOCKER_HOST")
    import docker
    from docker.errors import DockerException

    try:
        if host == docker_host():  # DOCKER_HOST with DOCKER_TLS_VERIFY/DOCKER_CERT_PATH
            # The SDK's stubs say int; it hands the value to requests, which takes seconds
            # as a float (rounding would change a 0.5 s budget into none).
            client = docker.from_env(timeout=timeout, max_pool_size=pool_size)  # type: ignore[arg-type]
        else:
            client = docker.DockerClient(
                base_url=host,
                timeout=timeout,  # type: ignore[arg-type]  # a float, as above
                max_pool_size=pool_size,
            )
    except (DockerException, OSError) as exc:
        raise EngineUnreachable(host, _what(exc, timeout)) from exc
    return SdkEngine(client, owned=True)


# ------------------------------------------------------------------------ errors


def _exception_chain(exc: BaseException) -> Iterable[BaseException]:
    """The exception and what it wraps (requests/urllib3 nest the OSError in args)."""
    todo, seen = [exc], set()
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        nested = [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args]
        todo.extend(n for n in nested if isinstance(n, BaseException))


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else ""


def error_reason(exc: BaseException, where: str, timeout: float) -> str:
    """One line saying why the engine at ``where`` could not be used."""
    if isinstance(exc, EngineError):
        return str(exc)
    return f"Docker engine not usable at {where}: {_what(exc, timeout)}"


def _what(exc: BaseException, timeout: float) -> str:
    """What went wrong on the way to the engine, with the likely fix."""
    what = None
    for e in _exception_chain(exc):
        if isinstance(e, FileNotFoundError):
            what = "socket not found (is the Docker engine installed and running?)"
        elif isinstance(e, PermissionError):
            what = "permission denied (run as root or add the user to the docker group)"
        elif isinstance(e, ConnectionRefusedError):
            what = "connection refused (is the Docker engine running?)"
        elif isinstance(e, TimeoutError) or "Timeout" in type(e).__name__:
            what = f"no answer within {timeout:g} s"
        if what:
            break
    if what is None:
        what = _first_line(exc) or type(exc).__name__
    return what


__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_SOCKET",
    "DEFAULT_TIMEOUT",
    "Engine",
    "EngineError",
    "EngineUnreachable",
    "NotFound",
    "ProtocolError",
    "SdkEngine",
    "connect",
    "docker_host",
    "error_reason",
    "unix_socket_path",
    "wrap_client",
]
