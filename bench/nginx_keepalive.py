"""Bench: the nginx config `vots-ops plan` renders vs a naive proxy_pass, same upstream.

One upstream and two nginx instances in front of it, side by side in one run:

* rendered: the config rendered for a one-service stack routing ``/`` to the
  upstream (upstream keepalive pool, HTTP/1.1 with ``Connection ""``, buffered
  access log, TLS settings, security headers ...), run on loopback via
  ``local_runtime``;
* naive: ``location / { proxy_pass http://127.0.0.1:PORT; }`` with the same
  certificate, listen line, worker count and user, and nginx defaults for the
  rest (HTTP/1.0 to the upstream, a new upstream connection per request,
  unbuffered access log).

``--upstream nginx`` (default) answers from memory, so the proxy's own cost is
what is measured; ``--upstream uvicorn`` uses the Python test app
(tests/support/upstream.py), where the app's own cost dominates both.

wrk drives each in turn (interleaved rounds, alternating which goes first). On a
small machine wrk, both proxies and the upstream share the CPUs, so besides
requests/sec the bench reports the proxy's CPU time per request, which does
not depend on how much CPU wrk takes. The last line printed is the ratio of the
median requests/sec, rendered / naive.

Run: ``python bench/nginx_keepalive.py`` (about 75 s with the defaults).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from ops.files import write_all  # noqa: E402
from ops.plan import fit  # noqa: E402
from ops.plan.render import NginxRuntime, render_files  # noqa: E402
from ops.plan.verify import free_port, local_runtime  # noqa: E402
from ops.proc import which  # noqa: E402
from ops.stack import parse_stack  # noqa: E402
from tests.support.processes import stop_process  # noqa: E402
from tests.support.stacks import minimal  # noqa: E402
from tests.support.upstream import serve_upstream  # noqa: E402

PATH = "/api/v1/items"

STACK = minimal(
    services={
        "app": {
            "image": "vots/app:bench",
            "language": "python",
            "port": 8000,
            "resources": {"cpu_weight": 1, "memory": {"min": "128M", "max": "1G"}},
            "health": "/healthz",
            # No rate limit: wrk would measure the limiter, not the proxy.
            "routes": [{"path": "/"}],
        },
    },
    monitoring={"prometheus": False, "node_exporter": False, "cadvisor": False},
)

# Both hand-written configs keep nginx's temp files in the work dir.
TEMP_PATHS = "\n    ".join(
    f"{kind}_temp_path {{workdir}}/temp/{kind};"
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
)

NAIVE_CONF = """\
# Naive baseline: what a first nginx config in front of an app usually looks like.
{user}
worker_processes auto;
pid {workdir}/nginx.pid;
error_log {workdir}/logs/error.log warn;

events {{
}}

http {{
    include /etc/nginx/mime.types;
    access_log {workdir}/logs/access.log;
    {temp_paths}

    server {{
        listen {listen} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};

        location / {{
            proxy_pass http://{upstream};
        }}
    }}
}}
"""


UPSTREAM_CONF = """\
# A fast upstream: nginx answering from memory, so proxy overhead is what is measured.
{user}
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/logs/error.log warn;
events {{
}}
http {{
    access_log off;
    keepalive_requests 100000;
    {temp_paths}
    server {{
        listen {listen};
        location = /__status {{
            stub_status;
        }}
        location / {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
"""


class NginxUpstream:
    """An nginx upstream with the same interface as ``serve_upstream()``'s handle:
    ``address`` and ``stats.snapshot()`` (connections and requests from stub_status)."""

    def __init__(self, workdir: Path, user: str | None) -> None:
        for sub in ("logs", "temp", "nginx"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        self.address = f"127.0.0.1:{free_port()}"
        conf = workdir / "nginx" / "nginx.conf"
        body = (
            '{"items": ['
            + ", ".join(f'{{"id": {i}, "name": "item-{i}"}}' for i in range(40))
            + "]}"
        )
        conf.write_text(
            UPSTREAM_CONF.format(
                temp_paths=TEMP_PATHS.format(workdir=workdir),
                user=f"user {user};" if user else "",
                workdir=workdir,
                listen=self.address,
                body=body,
            )
        )
        self.instance = Instance("upstream", workdir, conf, self.address)
        self.stats = self

    def snapshot(self) -> dict[str, int]:
        import urllib.request

        with urllib.request.urlopen(f"http://{self.address}/__status", timeout=5) as resp:
            text = resp.read().decode()
        accepts, _handled, requests = (int(n) for n in text.splitlines()[2].split())
        return {"connections": accepts, "requests": requests}


@dataclass
class Instance:
    name: str
    workdir: Path
    conf: Path
    listen: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://{self.listen}{PATH}"


@dataclass
class Run:
    name: str
    rps: float
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    upstream_connections: int
    upstream_requests: int
    proxy_cpu_s: float = 0.0

    @property
    def proxy_us_per_request(self) -> float:
        return self.proxy_cpu_s / max(1, self.requests) * 1e6


def render_instance(workdir: Path, upstream: Any) -> tuple[Instance, NginxRuntime]:
    workdir.mkdir(parents=True, exist_ok=True)
    stack_path = workdir / "stack.yaml"
    text = yaml.safe_dump(STACK, sort_keys=False)
    stack_path.write_text(text)
    loaded = parse_stack(text, stack_path)
    runtime = local_runtime(workdir, loaded, upstreams={"app": [upstream.address]})
    write_all(workdir, render_files(loaded, fit(loaded), workdir, runtime))
    conf = workdir / "nginx" / "nginx.conf"
    return Instance("rendered", workdir, conf, runtime.https_listen), runtime


def naive_instance(workdir: Path, upstream: Any, rendered: NginxRuntime) -> Instance:
    for sub in ("logs", "temp", "nginx"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    listen = f"127.0.0.1:{free_port()}"
    conf = workdir / "nginx" / "nginx.conf"
    conf.write_text(
        NAIVE_CONF.format(
            temp_paths=TEMP_PATHS.format(workdir=workdir),
            user=f"user {rendered.user};" if rendered.user else "",
            workdir=workdir,
            listen=listen,
            cert=rendered.certificate,
            key=rendered.key,
            upstream=upstream.address,
        )
    )
    return Instance("naive", workdir, conf, listen)


def _port_open(listen: str) -> bool:
    host, _, port = listen.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.2):
            return True
    except OSError:
        return False


def start(instance: Instance, timeout: float = 10.0) -> None:
    error_log = instance.workdir / "logs" / "error.log"
    argv = [which("nginx"), "-p", str(instance.workdir), "-c", str(instance.conf)]
    argv += ["-e", str(error_log), "-g", "daemon off;"]
    with (instance.workdir / "logs" / "nginx.out").open("wb") as out:
        instance.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    deadline = time.monotonic() + timeout
    while not _port_open(instance.listen):
        if instance.proc.poll() is not None or time.monotonic() > deadline:
            stop(instance)
            log = error_log.read_text(errors="replace") if error_log.exists() else ""
            raise SystemExit(f"{instance.name} nginx did not start:\n{log[-2000:]}")
        time.sleep(0.05)


def stop(instance: Instance) -> None:
    stop_process(instance.proc)


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def wrk(instance: Instance, stats: Any, args: argparse.Namespace, seconds: int) -> Run:
    argv = [which("wrk"), f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s"]
    argv += ["--timeout", "5s", "--latency", instance.url]
    before = stats.snapshot()
    cpu_before = _tree_cpu(instance)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    after = stats.snapshot()
    cpu_after = _tree_cpu(instance)
    out = proc.stdout
    if proc.returncode != 0 or "Requests/sec" not in out:
        raise SystemExit(f"wrk failed against {instance.name}:\n{out}\n{proc.stderr}")
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s|m)", out, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)", out, re.M)
    non = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    assert done and rps and p50 and p99, out
    return Run(
        name=instance.name,
        rps=float(rps.group(1)),
        requests=int(done.group(1)),
        seconds=_ms(done.group(2), done.group(3)) / 1000,
        non_2xx=int(non.group(1)) if non else 0,
        socket_errors=sum(int(g) for g in errs.groups()) if errs else 0,
        p50_ms=_ms(*p50.groups()),
        p99_ms=_ms(*p99.groups()),
        upstream_connections=after["connections"] - before["connections"],
        upstream_requests=after["requests"] - before["requests"],
        proxy_cpu_s=cpu_after - cpu_before,
    )


def _tree_cpu(instance: Instance) -> float:
    """CPU seconds used so far by an nginx master and its workers."""
    import psutil

    assert instance.proc is not None
    master = psutil.Process(instance.proc.pid)
    total = 0.0
    for proc in [master, *master.children(recursive=True)]:
        times = proc.cpu_times()
        total += times.user + times.system
    return total


@contextlib.contextmanager
def _upstream(args: argparse.Namespace, tmp: Path) -> Iterator[Any]:
    if args.upstream == "uvicorn":
        with serve_upstream() as up:
            yield up
        return
    user = None
    if os.geteuid() == 0:
        import pwd

        user = pwd.getpwuid(0).pw_name
    up = NginxUpstream(tmp / "upstream", user)
    start(up.instance)
    try:
        yield up
    finally:
        stop(up.instance)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--upstream",
        choices=["nginx", "uvicorn"],
        default="nginx",
        help="nginx: a fast in-memory upstream (proxy overhead dominates); "
        "uvicorn: the Python test app (the app dominates)",
    )
    args = parser.parse_args()
    if not 1 <= args.rounds <= 5 or not 1 <= args.duration <= 15:
        parser.error("keep it bounded: 1-5 rounds of 1-15 s")

    print(
        f"host: {os.cpu_count()} CPUs; wrk -t{args.threads} -c{args.connections} -d{args.duration}s;"
        f" upstream: {args.upstream}"
    )
    with (
        tempfile.TemporaryDirectory(prefix="nginx-keepalive-") as tmp,
        _upstream(args, Path(tmp)) as up,
    ):
        rendered, runtime = render_instance(Path(tmp) / "rendered", up)
        naive = naive_instance(Path(tmp) / "naive", up, runtime)
        instances = [rendered, naive]
        try:
            for instance in instances:
                start(instance)
            for instance in instances:  # warm up TLS, workers and the upstream pool
                wrk(instance, up.stats, args, 2)
            runs: list[Run] = []
            for i in range(args.rounds):
                for instance in instances if i % 2 == 0 else instances[::-1]:
                    run = wrk(instance, up.stats, args, args.duration)
                    runs.append(run)
                    print(
                        f"round {i + 1} {run.name:>8}: {run.rps:9.1f} req/s  "
                        f"p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms  "
                        f"non-2xx {run.non_2xx}  socket errors {run.socket_errors}  "
                        f"upstream: {run.upstream_requests} requests over "
                        f"{run.upstream_connections} connections  "
                        f"proxy CPU {run.proxy_us_per_request:5.1f} us/request",
                        flush=True,
                    )
        finally:
            for instance in instances:
                stop(instance)

    medians = {}
    cpu = {}
    for name in ("rendered", "naive"):
        mine = [r for r in runs if r.name == name]
        medians[name] = statistics.median(r.rps for r in mine)
        cpu[name] = statistics.median(r.proxy_us_per_request for r in mine)
        p99 = statistics.median(r.p99_ms for r in mine)
        print(
            f"median {name:>8}: {medians[name]:9.1f} req/s  (median p99 {p99:.2f} ms, "
            f"proxy CPU {cpu[name]:.1f} us/request)"
        )
    print(f"proxy CPU per request, naive / rendered: {cpu['naive'] / cpu['rendered']:.2f}x")
    bad = [r for r in runs if r.non_2xx or r.socket_errors]
    if bad:
        print(f"warning: {len(bad)} runs had non-2xx responses or socket errors (see above)")
    print(
        f"ratio requests/s rendered / naive: {medians['rendered'] / medians['naive']:.2f}x (goal >= 3x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
