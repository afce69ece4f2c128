"""The nginx that `vots-ops plan` renders for the bundled stack, run unprivileged on loopback.

``serve_edge()`` renders the bundled stack's config with every routed service
pointed at one real upstream address, starts nginx in the foreground and waits
until all its listeners accept connections. Shared by the nginx tests and the
load tests, which drive traffic through it.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ops.files import write_all
from ops.plan import fit
from ops.plan.render import NginxRuntime, render_files
from ops.plan.verify import local_runtime
from ops.proc import which
from ops.stack import LoadedStack, load_stack, workloads
from tests.support.processes import stop_process
from tests.support.stacks import BUNDLED


def _split(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host, int(port)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Edge:
    workdir: Path
    loaded: LoadedStack
    runtime: NginxRuntime
    proc: subprocess.Popen[bytes]
    routed: set[str]

    @property
    def https(self) -> str:
        host, port = _split(self.runtime.https_listen)
        return f"https://{host}:{port}"

    @property
    def http(self) -> str:
        host, port = _split(self.runtime.http_listen)
        return f"http://{host}:{port}"

    @property
    def status(self) -> str:
        host, port = _split(self.runtime.status_listen)
        return f"http://{host}:{port}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.runtime.certificate)


def _error_log(workdir: Path) -> str:
    path = workdir / "logs" / "error.log"
    return path.read_text(errors="replace")[-4000:] if path.exists() else "(no error log)"


class PortTaken(AssertionError):
    """nginx could not bind a port chosen free a moment before: someone else took it."""


def start_nginx(workdir: Path, runtime: NginxRuntime, timeout: float = 60.0) -> subprocess.Popen:
    conf = workdir / "nginx" / "nginx.conf"
    argv = [which("nginx"), "-p", str(workdir), "-c", str(conf), "-e", runtime.error_log]
    argv += ["-g", "daemon off;"]
    with (workdir / "logs" / "nginx.out").open("wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    deadline = time.monotonic() + timeout
    listens = [_split(runtime.https_listen), _split(runtime.http_listen)]
    listens.append(_split(runtime.status_listen))
    while not all(_port_open(h, p) for h, p in listens):
        if proc.poll() is not None:
            log = _error_log(workdir)
            if "Address already in use" in log:
                raise PortTaken(f"nginx could not bind its ports:\n{log}")
            raise AssertionError(f"nginx exited with {proc.returncode}:\n{log}")
        if time.monotonic() > deadline:
            stop_process(proc)
            raise AssertionError(
                f"nginx did not listen within {timeout:g}s:\n{_error_log(workdir)}"
            )
        time.sleep(0.05)
    return proc


@contextmanager
def serve_edge(workdir: Path, upstream: str) -> Iterator[Edge]:
    """Run the bundled stack's rendered nginx with every routed service at ``upstream`` (host:port)."""
    loaded = load_stack(BUNDLED)
    routed = {w.name for w in workloads(loaded.stack) if w.spec is not None and w.spec.routes}
    for attempt in range(3):  # new free ports if another process took one meanwhile
        runtime = local_runtime(workdir, loaded, upstreams={n: [upstream] for n in routed})
        write_all(workdir, render_files(loaded, fit(loaded), workdir, runtime))
        (workdir / "logs" / "error.log").unlink(missing_ok=True)
        try:
            proc = start_nginx(workdir, runtime)
            break
        except PortTaken:
            if attempt == 2:
                raise
    try:
        yield Edge(workdir, loaded, runtime, proc, routed)
    finally:
        stop_process(proc)
