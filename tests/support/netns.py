"""Hosts with addresses of their own on this machine: network namespaces on a private bridge.

A test that needs several machines (a Locust master, its workers, a target)
gets them with ``lab(roles)``: one namespace per role, each with one interface
and one address on a /24 of its own, all plugged into a bridge that lives in
one more namespace (the "switch"). Nothing is added to the machine's own
network namespace (no bridge, no veth end, no route, no firewall rule), so a
lab can neither disturb the host's networks (Docker's bridges, its swarm
overlay pool) nor be disturbed by them: Docker's iptables rules do not exist
inside the lab, and bridged traffic between the hosts never meets them.

The subnet is still picked so as not to collide with anything the machine's
own namespace has an address or a route for, from ``10.200.0.0``-``10.249.255.0``
(far from Docker's swarm pool, which starts at ``10.0.0.0``, and outside its
``172.17``-``172.31`` bridge pool). The switch namespace is named after the
subnet (``vots-lt-10-213-57``): creating a namespace is atomic, so two labs
running at once (parallel test runs) never share a subnet, and a lab left
behind by a killed run only takes its subnet out of the choice.

Every process a test starts in the lab goes through ``Lab.start`` (its own
session, so its whole process group can be signalled). When the lab closes,
normally or on a failure, it stops those groups, then kills whatever is still
inside its namespaces (``ip netns pids``: e.g. the Locust child a CLI started
in a session of its own), deletes the namespaces (which destroys their veth
pairs and the bridge) and checks that none is left, by name or held alive by
a process. ``Lab.leftovers()`` says what is left, for a test to assert on.

Run as a script (``python tests/support/netns.py serve ...``) this module is
the target server of the distributed load tests, see ``serve()``.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import random
import re
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

PREFIX = "vots-lt-"
SCRIPT = Path(__file__).resolve()
#: The second octet of the lab subnets (10.X.Y.0/24).
SECOND_OCTETS = range(200, 250)
IP_TIMEOUT_S = 30
STOP_WAIT_S = 10


# ------------------------------------------------------------------------ namespaces


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``ip ARGS`` (iproute2), its output as text; a failure raises with ip's own message."""
    done = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


def unavailable() -> str | None:
    """Why this machine cannot run a lab (None: it can): the reason a test skips with."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add); run the tests as root"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2) to create network namespaces"
    return None


def probe() -> str | None:
    """Why ``ip netns`` does not work here (None: it does), found by creating a namespace
    with a veth pair and a bridge and deleting it again."""
    reason = unavailable()
    if reason:
        return reason
    name = f"{PREFIX}probe-{os.getpid()}-{random.randrange(1 << 30)}"
    try:
        done = _ip("netns", "add", name, check=False)
        if done.returncode != 0:
            return f"`ip netns add` does not work here: {done.stderr.strip()}"
        for args in (
            ("link", "add", "br0", "type", "bridge"),
            ("link", "add", "a0", "type", "veth", "peer", "name", "b0"),
        ):
            done = _ip("-n", name, *args, check=False)
            if done.returncode != 0:
                return f"`ip link add {' '.join(args[2:])}` in a namespace fails: {done.stderr.strip()}"
        return None
    finally:
        _ip("netns", "del", name, check=False)


def listed() -> set[str]:
    """Names of the network namespaces ``ip netns`` knows."""
    out = _ip("netns", "list").stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def netns_pids(name: str) -> list[int]:
    done = _ip("netns", "pids", name, check=False)
    return [int(p) for p in done.stdout.split()] if done.returncode == 0 else []


def _inode(name: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{name}").st_ino
    except OSError:
        return None


def _held(inodes: set[int]) -> list[int]:
    """Processes anywhere on the machine inside one of these network namespaces."""
    wanted = {f"net:[{ino}]" for ino in inodes}
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{entry.name}/ns/net") in wanted:
                found.append(int(entry.name))
    return found


def _taken_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """What this machine's own namespace has an address or a route for (docker0, the
    Docker networks' bridges, the uplink, VPNs)."""
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for line in _ip("-4", "-o", "addr", "show").stdout.splitlines():
        m = re.search(r"\binet (\S+)", line)
        if m:
            nets.append(ipaddress.ip_interface(m.group(1)).network)
    for line in _ip("-4", "route", "show", "table", "all").stdout.splitlines():
        # "10.0.0.0/24 dev ...", "local 127.0.0.1 dev lo ...": the first token that is one
        for token in line.split()[:2]:
            with contextlib.suppress(ValueError):
                nets.append(ipaddress.ip_network(token, strict=False))
                break
    return nets


def _subnets(seed: int) -> Iterator[ipaddress.IPv4Network]:
    """Every candidate /24, in an order that starts where ``seed`` (this pid) says."""
    count = len(SECOND_OCTETS) * 256
    start = seed % count
    for i in range(count):
        n = (start + i) % count
        yield ipaddress.IPv4Network(f"10.{SECOND_OCTETS[n // 256]}.{n % 256}.0/24")


# ---------------------------------------------------------------------------- the lab


@dataclass(frozen=True)
class Host:
    """One namespace of the lab: a machine with one address."""

    role: str
    netns: str
    address: str

    def argv(self, *command: str) -> list[str]:
        """``command`` run inside this host (``ip netns exec``)."""
        return ["ip", "netns", "exec", self.netns, *command]


@dataclass
class Lab:
    subnet: ipaddress.IPv4Network
    switch: str
    hosts: dict[str, Host]
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)
    inodes: set[int] = field(default_factory=set)

    @property
    def namespaces(self) -> list[str]:
        return [h.netns for h in self.hosts.values()] + [self.switch]

    def start(self, host: Host, command: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
        """``command`` running inside ``host``, leading a session of its own; stopped
        (its whole group) when the lab closes, if it has not ended by then."""
        popen.setdefault("stdin", subprocess.DEVNULL)
        proc: subprocess.Popen[Any] = subprocess.Popen(
            host.argv(*command), start_new_session=True, **popen
        )
        self.procs.append(proc)
        return proc

    def leftovers(self) -> list[str]:
        """What is left of the lab: its namespaces by name, processes inside them (also
        of a namespace deleted by name but still alive), processes it started that still
        run. Empty once it is closed. (Its veth pairs and bridge exist only inside its
        namespaces and go with them.)"""
        left = [f"namespace {n}" for n in sorted(listed() & set(self.namespaces))]
        left += [f"process {pid} in a lab namespace" for pid in _held(self.inodes)]
        left += [
            f"process {p.pid} ({p.args!r}) still running" for p in self.procs if p.poll() is None
        ]
        return left


def _stop_group(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM to the process group ``proc`` leads, SIGKILL if it has not exited in time."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=STOP_WAIT_S)
            return
        except subprocess.TimeoutExpired:
            continue


def _empty(name: str) -> None:
    """Kill whatever still runs inside namespace ``name`` (only the lab's processes can)."""
    deadline = time.monotonic() + STOP_WAIT_S
    while pids := netns_pids(name):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {pids} survive SIGKILL in namespace {name}")
        time.sleep(0.05)


def close(lab: Lab) -> None:
    """Stop every process of the lab and delete its namespaces; raise if anything is left."""
    problems = []
    for proc in lab.procs:
        _stop_group(proc)
    for name in lab.namespaces:
        try:
            _empty(name)
        except RuntimeError as exc:
            problems.append(str(exc))
    for name in lab.namespaces:
        if name in listed():
            done = _ip("netns", "del", name, check=False)
            if done.returncode != 0:
                problems.append(f"ip netns del {name}: {done.stderr.strip()}")
    left = lab.leftovers()
    if problems or left:
        raise RuntimeError(f"the lab {lab.subnet} was not cleaned up: {problems + left}")


def _claim_subnet() -> tuple[ipaddress.IPv4Network, str]:
    """A free subnet and its switch namespace, created (the claim on the subnet)."""
    taken = _taken_networks()
    for subnet in _subnets(os.getpid() * 7919 + random.randrange(256)):
        if any(subnet.overlaps(t) for t in taken):
            continue
        name = PREFIX + str(subnet.network_address).replace(".", "-").rsplit("-", 1)[0]
        if _ip("netns", "add", name, check=False).returncode == 0:
            return subnet, name
    raise RuntimeError("no free 10.200-249.x.0/24 subnet for a lab")


@contextlib.contextmanager
def lab(roles: Sequence[str]) -> Iterator[Lab]:
    """Namespaces ``<switch>-<role>``, one per role, addresses .10, .11, ... in role order.

    Closed (every process stopped, every namespace deleted) however the block ends.
    """
    subnet, switch = _claim_subnet()
    net = Lab(subnet, switch, {})
    try:
        _ip("-n", switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", switch, "link", "set", "br0", "up")
        for i, role in enumerate(roles):
            host = Host(role, f"{switch}-{role}", str(subnet.network_address + 10 + i))
            net.hosts[role] = host
            _ip("netns", "add", host.netns)
            # The host's end is created inside it: no interface ever exists in the
            # machine's own namespace.
            port = f"p{i}"
            _ip(
                "-n", switch, "link", "add", port, "type", "veth",
                "peer", "name", "eth0", "netns", host.netns,
            )  # fmt: skip
            _ip("-n", switch, "link", "set", port, "master", "br0", "up")
            _ip(
                "-n", host.netns, "addr", "add", f"{host.address}/{subnet.prefixlen}", "dev", "eth0"
            )
            _ip("-n", host.netns, "link", "set", "eth0", "up")
            _ip("-n", host.netns, "link", "set", "lo", "up")
        net.inodes = {ino for n in net.namespaces if (ino := _inode(n)) is not None}
        yield net
    finally:
        net.inodes |= {ino for n in net.namespaces if (ino := _inode(n)) is not None}
        close(net)


def wait_line(proc: subprocess.Popen[Any], stream: IO[bytes], prefix: bytes, timeout: float) -> str:
    """The first line ``proc`` writes to ``stream`` that starts with ``prefix`` (a
    readiness line), or an AssertionError once it exits or ``timeout`` (a hung start) passes."""
    deadline = time.monotonic() + timeout
    buf = b""
    fd = stream.fileno()
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.2)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
            for line in buf.split(b"\n")[:-1]:
                if line.startswith(prefix):
                    return line.decode()
        elif proc.poll() is not None:
            break
    raise AssertionError(f"no {prefix.decode()!r} line within {timeout:g}s: {buf[-2000:]!r}")


# ------------------------------------------------------------------- the target server

#: The User-Agent of the one request `vots-ops loadtest` sends before any load.
PREFLIGHT_AGENT = "vots-ops-loadtest-preflight"
MAX_SLEEP_MS = 10_000


def route(path: str) -> tuple[int, int]:
    """(status, milliseconds to sleep first) for a request path.

    ``/sleep/N``: 200 after N ms; ``/fail``: a real 500 at once; ``/``: 200 at once
    (the CLI's preflight); anything else: 404.
    """
    if path == "/":
        return 200, 0
    if path == "/fail":
        return 500, 0
    m = re.fullmatch(r"/sleep/(\d{1,5})", path)
    if m and int(m.group(1)) <= MAX_SLEEP_MS:
        return 200, int(m.group(1))
    return 404, 0


class _Handler(BaseHTTPRequestHandler):
    """One line per answered request in the server's log, written after the answer.

    ``server_us`` runs from the moment the request's headers were read to just
    before the first byte of the response is written: an interval inside the
    client's own (which starts before it sends and ends after it has read the
    body), so a client's latency is never below the server time of the same request.
    """

    protocol_version = "HTTP/1.1"  # keep-alive, as a load generator uses it
    server_version = "vots-netns-target"
    timeout = 30  # an idle keep-alive connection does not hold its thread forever

    def do_GET(self) -> None:
        began = time.perf_counter_ns()
        status, sleep_ms = route(self.path)
        if sleep_ms:
            time.sleep(sleep_ms / 1000)
        body = json.dumps({"path": self.path, "status": status}).encode()
        head = (
            f"HTTP/1.1 {status} {self.responses[status][0]}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode("ascii")
        server_us = (time.perf_counter_ns() - began) // 1000
        self.wfile.write(head + body)  # one write: nothing of it before server_us is taken
        assert isinstance(self.server, _Server)
        self.server.log(
            {
                "client": self.client_address[0],
                "port": self.client_address[1],
                "method": "GET",
                "path": self.path,
                "status": status,
                "server_us": server_us,
                "agent": self.headers.get("User-Agent", ""),
                "time": time.time(),
            }
        )

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the JSON log is the record; nothing on stderr per request


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for every connection's thread
    block_on_close = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], log: IO[str]) -> None:
        super().__init__(address, _Handler)
        self._log, self._lock = log, threading.Lock()

    def log(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._log.write(json.dumps(record) + "\n")
            self._log.flush()


def serve(bind: str, port: int, log_path: Path) -> None:
    """Serve until SIGTERM; then finish every open connection, close the log and exit 0.

    Prints ``listening HOST:PORT`` once it accepts connections.
    """
    with log_path.open("a", encoding="utf-8") as log:
        server = _Server((bind, port), log)
        stopping = threading.Event()

        def stop(_sig: int, _frame: Any) -> None:
            if not stopping.is_set():
                stopping.set()
                threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        print(f"listening {bind}:{server.server_address[1]}", flush=True)
        try:
            server.serve_forever(poll_interval=0.1)
        finally:
            server.server_close()


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the lab's target HTTP server")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--bind", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--log", type=Path, required=True)
    args = parser.parse_args(argv)
    serve(args.bind, args.port, args.log)


if __name__ == "__main__":
    main()
