"""The target is enforced where connections are made, in every Locust process.

Each test starts loopback listeners of its own that count what reaches them:
the target on 127.0.0.1 and "another host" on 127.0.0.2 (or another port of
127.0.0.1). A locustfile then tries every way off the target -- a proxy, an
absolute URL, a followed redirect, a client rebuilt in on_start, a DNS answer
that changes mid-run -- and the other listener must see no connection at all:
the guard refuses at connect(), before a byte is sent. Runs are the CLI a user
types (a subprocess running real Locust), a few seconds each.
"""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ops.proc import free_port
from tests.support.cli import Cli

RUN_TIMEOUT_S = 90
OTHER_IP = "127.0.0.2"


@dataclass
class Counts:
    connections: int = 0
    requests: list[str] = field(default_factory=list)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    counts: Counts
    other: str  # base URL of the other listener, for /away

    def get_request(self) -> tuple[socket.socket, Any]:
        pair = super().get_request()
        self.counts.connections += 1
        return pair


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self.server.counts.requests.append(self.path)
        if self.path == "/away":
            self._answer(302, {"Location": f"{self.server.other}/stolen"})
        elif self.path == "/here":
            self._answer(302, {"Location": "/ok"})  # relative, as servers often send
        else:
            self._answer(200, {})

    def _answer(self, status: int, headers: dict[str, str]) -> None:
        body = b'{"ok": true}'
        self.send_response(status)
        for k, v in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Listener:
    ip: str
    port: int
    counts: Counts

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.port}"


def _serve(ip: str, port: int, other: str = "") -> tuple[_Server, Listener]:
    server = _Server((ip, port), _Handler)
    server.counts = Counts()
    server.other = other
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, Listener(ip, port, server.counts)


def _port_pair() -> tuple[int, int]:
    """(target, other): the other port's digits begin with the target's (:1800 and :18001)."""
    for _ in range(200):
        other = free_port()
        target = other // 10
        if target < 1024:
            continue
        try:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", target))
        except OSError:
            continue
        return target, other
    raise RuntimeError("no free port pair")


@dataclass
class Hosts:
    target: Listener
    other: Listener  # 127.0.0.2, the target's port
    near: Listener  # 127.0.0.1, a port whose digits begin with the target's


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    port, near_port = _port_pair()
    s_other, other = _serve(OTHER_IP, port)
    s_near, near = _serve("127.0.0.1", near_port)
    s_target, target = _serve("127.0.0.1", port, other=other.url)
    try:
        yield Hosts(target, other, near)
    finally:
        for s in (s_target, s_other, s_near):
            s.shutdown()
            s.server_close()


SCENARIO = """\
scenarios:
  run:
    locustfile: users.py
    user_classes: [{cls}]
    users: 2
    duration: {duration}
    max_requests: 300
"""

HEADER = """\
import gevent
from locust import HttpUser, FastHttpUser, constant, task
from locust.contrib.fasthttp import FastHttpSession
from ops.loadtest.users import VotsUser
OTHER = {other!r}
NEAR = {near!r}
"""


def _run(
    cli: Cli, tmp: Path, hosts: Hosts, cls: str, body: str, *extra: str, duration: str = "3s"
) -> tuple[int, dict[str, Any], str]:
    (tmp / "scenarios.yaml").write_text(SCENARIO.format(cls=cls, duration=duration))
    head = HEADER.format(other=hosts.other.url, near=hosts.near.url)
    (tmp / "users.py").write_text(head + textwrap.dedent(body))
    proc = cli.run(
        "loadtest", "run", "--scenarios", str(tmp / "scenarios.yaml"),
        "--host", extra[0] if extra else hosts.target.url, "--processes", "1",
        "--out", str(tmp / "runs"), "--format", "json", *extra[1:],
        cwd=tmp, timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    result = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, result, proc.stderr


def _refused(code: int, err: str, hosts: Hosts, where: str) -> None:
    assert code == 2, err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"error: stopped: a request went to {where} (refused at connect"), line
    # Nothing reached the other listeners: not a request, not even a TCP connection.
    assert hosts.other.counts.connections == 0 and hosts.other.counts.requests == []
    assert hosts.near.counts.connections == 0 and hosts.near.counts.requests == []


@pytest.mark.slow
def test_a_proxy_set_in_the_locustfile_gets_no_connection(
    cli: Cli, tmp_path: Path, hosts: Hosts
) -> None:
    body = """
    class Proxied(FastHttpUser):
        wait_time = constant(0.05)
        proxy_host = "127.0.0.2"
        proxy_port = int(OTHER.rsplit(":", 1)[1])

        @task
        def get(self):
            self.client.get("/ok")
    """
    code, _result, err = _run(cli, tmp_path, hosts, "Proxied", body)
    _refused(code, err, hosts, f"{OTHER_IP}:{hosts.target.port}")
    assert hosts.target.counts.requests == ["/"]  # the preflight alone


@pytest.mark.slow
def test_an_absolute_url_to_a_port_sharing_the_targets_digits_gets_nothing(
    cli: Cli, tmp_path: Path, hosts: Hosts
) -> None:
    body = """
    class Absolute(VotsUser):
        @task
        def get(self):
            self.client.get("/ok")
            self.client.get(NEAR + "/stolen")
    """
    code, _result, err = _run(cli, tmp_path, hosts, "Absolute", body)
    _refused(code, err, hosts, f"127.0.0.1:{hosts.near.port}")


@pytest.mark.slow
def test_a_redirect_followed_by_a_plain_httpuser_is_refused_and_named(
    cli: Cli, tmp_path: Path, hosts: Hosts
) -> None:
    body = """
    class Follows(HttpUser):
        wait_time = constant(0.05)

        @task
        def get(self):
            self.client.get("/away")
    """
    code, _result, err = _run(cli, tmp_path, hosts, "Follows", body)
    # The redirect's real destination is named, not the URL that was asked for.
    _refused(code, err, hosts, f"{OTHER_IP}:{hosts.target.port}")
    assert "/away" in hosts.target.counts.requests


@pytest.mark.slow
def test_a_client_rebuilt_in_on_start_for_another_host_gets_nothing(
    cli: Cli, tmp_path: Path, hosts: Hosts
) -> None:
    body = """
    class Rebuilt(FastHttpUser):
        wait_time = constant(0.05)

        def on_start(self):
            self.client = FastHttpSession(OTHER, self.environment.events.request, self)

        @task
        def get(self):
            self.client.get("/ok")
    """
    code, _result, err = _run(cli, tmp_path, hosts, "Rebuilt", body)
    _refused(code, err, hosts, f"{OTHER_IP}:{hosts.target.port}")


DNS_CHANGE = """
import gevent.hub

class Moving:
    \"\"\"The system resolver, changed mid-run: localhost now answers the other host.\"\"\"

    def __init__(self, real):
        self.real = real

    def getaddrinfo(self, host, port, *args, **kwargs):
        if str(host).rstrip(".") == "localhost":
            import socket
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", int(port)))]
        return self.real.getaddrinfo(host, port, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.real, name)


class Resolving(HttpUser):
    wait_time = constant(0.02)
    sent = [0]

    @task
    def get(self):
        self.sent[0] += 1
        if self.sent[0] == 5:
            hub = gevent.hub.get_hub()
            hub.resolver = Moving(hub.resolver)
        # A new connection (and name look-up) for every request.
        self.client.get("/ok", headers={"Connection": "close"})
"""


@pytest.mark.slow
def test_a_dns_change_mid_run_does_not_move_the_load(
    cli: Cli, tmp_path: Path, hosts: Hosts
) -> None:
    target = f"http://localhost:{hosts.target.port}"
    code, result, err = _run(cli, tmp_path, hosts, "Resolving", DNS_CHANGE, target)
    assert code == 0, err
    # Every request went to the address checked before the run, named as the user wrote it.
    assert result["overall"]["requests"] > 10 and result["overall"]["failures"] == 0
    assert hosts.target.counts.requests.count("/ok") == result["overall"]["requests"]
    assert hosts.other.counts.connections == 0


@pytest.mark.slow
def test_a_resolver_replaced_above_the_pin_is_still_refused_at_connect(
    cli: Cli, tmp_path: Path, hosts: Hosts
) -> None:
    body = """
    import socket

    class Replaced(HttpUser):
        wait_time = constant(0.02)
        sent = [0]

        @task
        def get(self):
            self.sent[0] += 1
            if self.sent[0] == 5:
                real = socket.getaddrinfo

                def moved(host, port, *args, **kwargs):
                    if host == "localhost":
                        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port))]
                    return real(host, port, *args, **kwargs)

                socket.getaddrinfo = moved
            self.client.get("/ok", headers={"Connection": "close"})
    """
    target = f"http://localhost:{hosts.target.port}"
    code, _result, err = _run(cli, tmp_path, hosts, "Replaced", body, target)
    _refused(code, err, hosts, f"{OTHER_IP}:{hosts.target.port}")


@pytest.mark.slow
def test_a_plain_httpuser_with_relative_redirects_runs_and_passes(
    cli: Cli, tmp_path: Path, hosts: Hosts
) -> None:
    body = """
    class Plain(HttpUser):
        wait_time = constant(0.05)

        @task
        def get(self):
            self.client.get("/here")  # 302 to a relative /ok, followed
    """
    code, result, err = _run(cli, tmp_path, hosts, "Plain", body, hosts.target.url, "-q")
    assert code == 0, err
    assert result["verdict"] == "pass" and result["stop_reason"] == "duration"
    assert result["overall"]["requests"] > 5 and result["overall"]["failures"] == 0
    assert hosts.target.counts.requests.count("/ok") >= result["overall"]["requests"]
    assert result["tls"] is None  # plain http: nothing to verify
    assert hosts.other.counts.connections == 0


def test_the_guard_refuses_before_connecting_for_stdlib_and_gevent_sockets(
    hosts: Hosts,
) -> None:
    """The mechanism alone, in a process of its own (it patches socket classes)."""
    script = f"""
import gevent.monkey; gevent.monkey.patch_all()
import socket, gevent.socket
from ops.loadtest import pinning
seen = []
pinning.install("localhost", {hosts.target.port}, ["127.0.0.1"], seen.append)
out = []
for make in (socket.socket, gevent.monkey.get_original("socket", "socket")):
    for where in (("127.0.0.2", {hosts.target.port}), ("127.0.0.1", {hosts.near.port})):
        s = make()
        try:
            s.connect(where)
            out.append("connected")
        except ConnectionRefusedError as exc:
            out.append("refused")
        finally:
            s.close()
    s = make(); s.connect(("localhost", {hosts.target.port})); s.close(); out.append("target")
out.append(socket.getaddrinfo("localhost", 80)[0][4][0])
print(" ".join(out), len(seen))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [
        *["refused", "refused", "target"] * 2,
        "127.0.0.1",
        "4",
    ]
    assert hosts.other.counts.connections == 0 and hosts.near.counts.connections == 0
    for _ in range(100):  # the listener's thread accepts in its own time
        if hosts.target.counts.connections == 2:
            break
        time.sleep(0.05)
    assert hosts.target.counts.connections == 2


def _own_address() -> str:
    import ipaddress

    import psutil

    return next(
        a.address
        for addrs in psutil.net_if_addrs().values()
        for a in addrs
        if a.family == socket.AF_INET and not ipaddress.ip_address(a.address).is_loopback
    )


@pytest.fixture
def tls_on_this_machine(tmp_path: Path) -> Iterator[Listener]:
    """A self-signed TLS listener on this machine's own (non-loopback) address."""
    import ssl

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=vots.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    server, listener = _serve(_own_address(), 0)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    listener.port = server.server_address[1]
    try:
        yield listener
    finally:
        server.shutdown()
        server.server_close()


TLS_USER = """
class Secure(VotsUser):
    @task
    def get(self):
        self.client.get("/ok")
"""


@pytest.mark.slow
def test_certificates_are_verified_off_loopback_unless_insecure(
    cli: Cli, tmp_path: Path, hosts: Hosts, tls_on_this_machine: Listener
) -> None:
    url = f"https://{tls_on_this_machine.ip}:{tls_on_this_machine.port}"
    code, _result, err = _run(cli, tmp_path, hosts, "Secure", TLS_USER, url)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: {url}: the certificate was not accepted (")
    assert line.endswith("[--insecure]")
    assert not (tmp_path / "runs").exists()

    # Opted out: the run works, and both the table and result.json say how TLS was used.
    (tmp_path / "users.py").write_text(
        HEADER.format(other=hosts.other.url, near=hosts.near.url) + TLS_USER
    )
    proc = cli.run(
        "loadtest", "run", "--scenarios", str(tmp_path / "scenarios.yaml"), "--host", url,
        "--insecure", "--processes", "1", "--out", str(tmp_path / "runs"),
        cwd=tmp_path, timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "TLS certificates not verified (--insecure)" in proc.stdout
    (result_file,) = (tmp_path / "runs").glob("*/result.json")
    result = json.loads(result_file.read_text())
    assert result["tls"] == "not verified (--insecure)" and result["overall"]["requests"] > 5
    assert tls_on_this_machine.counts.requests.count("/ok") >= result["overall"]["requests"]


ROOT = Path(__file__).resolve().parents[2]


def test_the_stacks_domain_is_not_a_default_target_off_this_machine(
    cli: Cli, tmp_path: Path
) -> None:
    """Run in a checkout without --host, the stack's domain (production) needs an explicit allow."""
    stack = (
        (ROOT / "stack.yaml").read_text().replace("domain: vots.example.com", "domain: 203.0.113.9")
    )
    (tmp_path / "stack.yaml").write_text(stack)
    (tmp_path / "scenarios.yaml").write_text(
        SCENARIO.format(cls="Any", duration="2s") + "    allow_hosts: [staging.vots.test]\n"
    )
    (tmp_path / "users.py").write_text(
        "from locust import HttpUser\nclass Any(HttpUser):\n    pass\n"
    )
    proc = cli.run(
        "loadtest", "run", "--scenarios", str(tmp_path / "scenarios.yaml"),
        "--out", str(tmp_path / "runs"), cwd=tmp_path, timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: refusing to send load to https://203.0.113.9: 203.0.113.9 is ")
    # The scenario's allow_hosts were read (and do not include the domain).
    assert "not an allowed host (staging.vots.test)" in line
    assert line.endswith("[--allow-host HOST]")
    assert not (tmp_path / "runs").exists()


def test_the_benchs_switch_that_turns_the_guard_off_is_said_out_loud(
    cli: Cli, tmp_path: Path
) -> None:
    """Only bench/ sets it; exported anywhere else, every run says the guard is off."""
    proc = cli.run(
        "loadtest",
        "smoke",
        "--host",
        "http://127.0.0.1:9",  # nothing listens: the run stops at its probe
        "--out",
        str(tmp_path / "runs"),
        env={"VOTS_OPS_BENCH_UNGUARDED": "1"},
    )
    assert proc.returncode == 2, proc.stderr
    first = proc.stderr.splitlines()[0]
    assert "VOTS_OPS_BENCH_UNGUARDED=1: the connect-time target guard is off" in first, first
