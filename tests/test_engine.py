"""The Docker Engine client against engines that are missing, silent, scripted
byte for byte (a real AF_UNIX HTTP peer), and the real one."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops import engine
from ops.errors import OpsError
from ops.report.containers import collect_containers
from ops.report.sample import sample

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[1]


def _roundtrip(value: Any) -> Any:
    """What the history store gives back: the sample must be plain JSON."""
    return json.loads(json.dumps(value, allow_nan=False))


# ---------------------------------------------------------------------- no engine


def test_missing_socket_is_a_one_line_reason_not_an_exception(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import docker

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    containers, reason = collect_containers()
    assert containers == []
    assert reason is not None and "\n" not in reason
    assert "unix:///nonexistent.sock" in reason and "socket not found" in reason

    client = docker.DockerClient(base_url="unix:///nonexistent.sock", version="1.41")
    containers, reason = collect_containers(client)
    assert containers == [] and reason is not None and "socket not found" in reason

    s = sample()
    assert s["docker"] is True and s["containers"] == []
    assert "socket not found" in s["docker_error"]
    assert s["host"]["cpu_count"] == os.cpu_count()


def test_engine_that_never_answers_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket that accepts and then says nothing (a wedged dockerd) must not hang cron."""
    path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
        containers, reason = collect_containers(timeout=0.5)
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()
    assert containers == []
    assert reason is not None and "no answer within 0.5 s" in reason, reason


# ------------------------------------------------------------ the engine client


class ScriptedEngine:
    """A real AF_UNIX HTTP peer that answers each request with the next scripted
    bytes (``None``: close the connection without answering; ``b""``: say nothing
    and hold the connection, like a wedged dockerd), and counts connections and
    requests."""

    def __init__(self, path: Path, answers: list[bytes | None]) -> None:
        self.path, self.answers = path, list(answers)
        self.connections = 0
        self.requests: list[str] = []
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen(8)
        self.server.settimeout(0.1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn = self.server.accept()[0]
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                buf = b""
                while self.answers:
                    while b"\r\n\r\n" not in buf:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        buf += chunk
                    if b"\r\n\r\n" not in buf:
                        break
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    self.requests.append(head.split(b"\r\n")[0].decode())
                    answer = self.answers.pop(0)
                    if answer is None:
                        break
                    if not answer:
                        self.stop.wait()
                        break
                    conn.sendall(answer)
                    if b"Connection: close" in answer:
                        break

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.server.close()


def _http(status: str, body: bytes, *headers: str, chunked: bool = False) -> bytes:
    head = [f"HTTP/1.1 {status}", "Content-Type: application/json", *headers]
    if chunked:
        head.append("Transfer-Encoding: chunked")
        body = (
            b"".join(
                f"{len(body[i : i + 7]):x};ext=1\r\n".encode() + body[i : i + 7] + b"\r\n"
                for i in range(0, len(body), 7)
            )
            + b"0\r\nX-Trailer: 1\r\n\r\n"
        )
    else:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@pytest.fixture
def scripted(tmp_path: Path) -> Iterator[Any]:
    made: list[ScriptedEngine] = []

    def make(*answers: bytes | None) -> ScriptedEngine:
        made.append(ScriptedEngine(tmp_path / f"engine{len(made)}.sock", list(answers)))
        return made[-1]

    yield make
    for server in made:
        server.close()


def test_engine_client_keeps_one_connection_and_reads_both_framings(scripted: Any) -> None:
    listing = json.dumps([{"Id": "a" * 64, "Names": ["/x"]}]).encode()
    server = scripted(
        _http("200 OK", b"OK", "Content-Type: text/plain"),
        _http("200 OK", listing, chunked=True),
        _http("200 OK", b'{"Id": "abc", "State": {"Pid": 1}}'),
        _http("100 Continue", b"")[: -len(b"Content-Length: 0\r\n\r\n")]
        + b"\r\n"
        + _http("200 OK", b'{"read": "now"}', chunked=True),
        _http("404 Not Found", b'{"message": "No such container: gone"}'),
        _http("500 Internal Server Error", b'{"message": "boom\\nsecond line"}'),
    )
    with engine.Engine(str(server.path), timeout=30) as api:
        assert api.url == f"unix://{server.path}"
        assert api.ping() == "OK"
        assert api.containers() == json.loads(listing)
        assert api.inspect("abc")["State"]["Pid"] == 1
        assert api.stats("abc") == {"read": "now"}
        with pytest.raises(engine.NotFound, match="No such container: gone"):
            api.inspect("gone")
        with pytest.raises(engine.EngineError, match=r"engine answered 500 .*: boom$") as err:
            api.containers(all=True)
        assert err.value.status == 500
        assert api.connections_opened == 1
    assert server.connections == 1
    assert server.requests == [
        "GET /_ping HTTP/1.1",
        "GET /containers/json HTTP/1.1",
        "GET /containers/abc/json HTTP/1.1",
        "GET /containers/abc/stats?stream=false&one-shot=true HTTP/1.1",
        "GET /containers/gone/json HTTP/1.1",
        "GET /containers/json?all=1 HTTP/1.1",
    ]


def test_engine_client_reconnects_when_the_engine_drops_the_connection(scripted: Any) -> None:
    server = scripted(
        _http("200 OK", b"[]"),
        None,  # the engine closed the kept-alive connection meanwhile
        _http("200 OK", b'{"Version": "20.10"}', "Connection: close"),
        _http("200 OK", b"[1]"),
    )
    with engine.Engine(str(server.path), timeout=30) as api:
        assert api.containers() == []
        assert api.version() == {"Version": "20.10"}  # retried once, transparently
        assert api.containers() == [1]  # the server said close: a new connection
    assert server.connections == 3


def test_engine_client_reports_garbage_and_silence(scripted: Any, tmp_path: Path) -> None:
    server = scripted(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    with engine.Engine(str(server.path), timeout=30) as api, pytest.raises(engine.ProtocolError):
        api.containers()
    silent = scripted(b"")  # accepts, reads the request, never answers
    with (
        engine.Engine(str(silent.path), timeout=0.3) as api,
        pytest.raises(engine.EngineUnreachable) as err,
    ):
        api.containers()
    assert isinstance(err.value.__cause__, TimeoutError) and err.value.timed_out
    assert str(err.value) == (
        f"Docker engine not usable at unix://{silent.path}: no answer within 0.3 s"
    )
    # Part of the OpsError tree: a command that lets it through prints one line, exit 2.
    assert isinstance(err.value, OpsError) and err.value.exit_code == 2
    with pytest.raises(engine.EngineUnreachable, match="socket not found") as err:
        engine.Engine(str(tmp_path / "missing.sock")).ping()
    assert isinstance(err.value.__cause__, FileNotFoundError)
    dead = tmp_path / "dead.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(dead))
    listener.close()  # the file stays, nobody listens: what a stopped dockerd leaves
    containers, why = collect_containers(engine.Engine(str(dead)))
    assert containers == [] and why is not None and "connection refused" in why


def test_engine_address_follows_docker_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert engine.docker_host() == "unix:///var/run/docker.sock"
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/user/1000/docker.sock")
    api = engine.connect()
    assert isinstance(api, engine.Engine) and api.socket_path == "/run/user/1000/docker.sock"
    assert engine.unix_socket_path("unix://") == "/var/run/docker.sock"
    assert engine.unix_socket_path("http+unix:///x.sock") == "/x.sock"
    assert engine.unix_socket_path("tcp://127.0.0.1:2375") is None
    # tcp:// goes through the Docker SDK (TLS, ssh...), with the same one-line reasons.
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    containers, why = collect_containers(timeout=1)
    assert containers == []
    assert why == (
        "Docker engine not usable at tcp://127.0.0.1:1: "
        "connection refused (is the Docker engine running?)"
    )
