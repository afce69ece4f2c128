"""Small helpers shared by the tests that drive docker and docker-compose."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any


def run(
    argv: list[str],
    *,
    cwd: Path | None = None,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False, env=env
    )


def ok(argv: list[str], *, cwd: Path | None = None, timeout: float = 120, **kw: Any) -> str:
    """Run and return stdout; a non-zero exit fails the test with both outputs."""
    proc = run(argv, cwd=cwd, timeout=timeout, **kw)
    assert proc.returncode == 0, f"{argv} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def project_containers(docker: str, project: str) -> list[str]:
    out = ok([docker, "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"])
    return out.split()


def inspect(docker: str, ids: list[str]) -> list[dict[str, Any]]:
    return json.loads(ok([docker, "inspect", *ids])) if ids else []


def force_cleanup(docker: str, project: str) -> None:
    """Last resort when ``down`` fails: remove whatever carries the project label."""
    label = f"label=com.docker.compose.project={project}"
    ids = project_containers(docker, project)
    if ids:
        run([docker, "rm", "-f", "-v", *ids])
    for kind in ("network", "volume"):
        names = run([docker, kind, "ls", "-q", "--filter", label]).stdout.split()
        if names:
            run([docker, kind, "rm", *names])


def health(container: dict[str, Any]) -> str:
    return container["State"].get("Health", {}).get("Status", "none")


def wait_healthy(docker: str, ids: list[str], timeout: float) -> dict[str, str]:
    """Health by container name once all are healthy, or as it stood when one
    failed (unhealthy, stopped, restarting) or ``timeout`` ran out."""
    deadline = time.monotonic() + timeout
    status: dict[str, str] = {}
    while time.monotonic() < deadline:
        inspected = inspect(docker, ids)
        status = {c["Name"]: health(c) for c in inspected}
        if all(s == "healthy" for s in status.values()):
            return status
        if any(
            health(c) == "unhealthy" or not c["State"]["Running"] or c["RestartCount"]
            for c in inspected
        ):
            break
        time.sleep(0.5)
    return status


def compose_down(base: list[str], docker: str, project: str, *, cwd: Path, timeout: float) -> None:
    """``docker-compose down -v``; if it fails or leaves containers, remove them by label
    anyway, then fail the test: a leak would poison the next run."""
    down = run([*base, "down", "-v", "-t", "1"], cwd=cwd, timeout=timeout)
    leftovers = project_containers(docker, project)
    if down.returncode != 0 or leftovers:
        force_cleanup(docker, project)
    assert down.returncode == 0, f"docker-compose down failed:\n{down.stderr}"
    assert not leftovers, f"containers survived docker-compose down: {leftovers}"
