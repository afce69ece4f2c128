"""The service images run as the plan says, and what their layers carry.

Shared by the image tests (``tests/services/test_*_image.py``): ``docker create``
arguments for a replica's fitted limits and for the plan's hardening, waiting for
a container's health check and for an HTTP endpoint, the tail of the logs for a
failure message, and every path in every layer of an image.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import time
from collections.abc import Callable

import httpx

from ops.plan.capacity import Allocation
from ops.stack import Workload
from tests.support.docker import health, inspect, run
from tests.support.service_images import Built, image_size

# Whatever a build stage may leave behind; none of it belongs in a final stage.
BUILD_TOOLS = ("gcc", "cc", "c++", "g++", "make", "ld", "pip", "pip3", "apt-get-build-dep")
BUILD_PACKAGES = frozenset({"gcc", "gcc-12", "cpp", "make", "python3-pip", "python3-venv"})


def timing(message: str) -> None:
    print(f"[timing] {message}", file=sys.stderr)


def timed_build(name: str, build: Callable[[], Built]) -> Built:
    """``build()``, with what it took and the image's size on stderr."""
    start = time.monotonic()
    result = build()
    took = time.monotonic() - start
    size = image_size(result.tag) / 1e6
    steps = ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
    what = f"built ({steps})" if result.built else "reused"
    timing(f"{name}: {result.tag} {what} in {took:.1f}s, {size:.0f} MB")
    return result


def limit_args(a: Allocation) -> list[str]:
    """One replica's CPU, memory and pids limits as the compose file applies them."""
    return [
        "--cpus", f"{a.cpu_limit / 1000:.3f}",
        "--memory", str(a.mem_limit),
        "--memory-reservation", str(a.mem_reservation),
        "--cpu-shares", str(a.cpu_shares),
        "--pids-limit", str(a.pids),
    ]  # fmt: skip


def hardening_args(w: Workload) -> list[str]:
    """A read-only root with the plan's tmpfs, no capabilities, no-new-privileges."""
    args = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true"]
    for path in w.tmpfs:
        args += ["--tmpfs", path]
    return args


def container_logs(docker: str, names: list[str], tail: int = 80) -> str:
    out = []
    for name in names:
        proc = run([docker, "logs", "--tail", str(tail), name])
        out.append(f"--- {name}\n{proc.stdout[-6000:]}{proc.stderr[-6000:]}")
    return "\n".join(out)


def wait_healthy(docker: str, names: list[str], timeout: float) -> dict[str, str]:
    """Health by container name once all are healthy, or as it stood when one turned
    unhealthy or stopped, or ``timeout`` ran out."""
    deadline = time.monotonic() + timeout
    status: dict[str, str] = {}
    while time.monotonic() < deadline:
        inspected = inspect(docker, names)
        status = {c["Name"].lstrip("/"): health(c) for c in inspected}
        if all(s == "healthy" for s in status.values()):
            break
        if any(health(c) == "unhealthy" or not c["State"]["Running"] for c in inspected):
            break
        time.sleep(1)
    return status


def wait_http(url: str, timeout: float) -> httpx.Response | None:
    """The first 200 from ``url``, else the last answer (``None`` if it never answered)."""
    deadline = time.monotonic() + timeout
    last = None
    with httpx.Client(trust_env=False, timeout=10) as client:
        while time.monotonic() < deadline:
            try:
                last = client.get(url)
                if last.status_code == 200:
                    return last
            except httpx.TransportError:
                pass
            time.sleep(1)
    return last


def build_tools_on_path(docker: str, container: str) -> str:
    """What ``command -v`` finds of :data:`BUILD_TOOLS` in a running container."""
    found = run([docker, "exec", container, "sh", "-c",
                 'for t in "$@"; do command -v "$t"; done; true', "sh", *BUILD_TOOLS])  # fmt: skip
    assert found.returncode == 0, found.stderr
    return found.stdout.strip()


def layer_paths(docker: str, tag: str) -> set[str]:
    """Every path in every layer of the image (``docker save``), also files a later
    layer hides: what the image carries, not only what a container sees."""
    paths: set[str] = set()
    with subprocess.Popen([docker, "save", tag], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as outer:
            for member in outer:
                if not member.name.endswith("layer.tar"):
                    continue
                layer = outer.extractfile(member)
                assert layer is not None
                with tarfile.open(fileobj=layer, mode="r|") as inner:
                    paths.update(m.name for m in inner)
    assert proc.returncode == 0
    return paths


def pip_compilers_or_setuptools(paths: set[str]) -> list[str]:
    """The paths of :func:`layer_paths` that are pip, setuptools or a compiler."""
    tools = {"gcc", "cc", "c++", "make", "pip", "pip3"}
    return sorted(
        p
        for p in paths
        if "/site-packages/pip/" in p
        or "/site-packages/setuptools/" in p
        or (
            p.startswith(("usr/bin/", "usr/local/bin/", "opt/"))
            and "/bin/" in p
            and p.rsplit("/", 1)[-1] in tools
        )
    )
