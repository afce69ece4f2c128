"""The one way to run external programs: found up front, argument lists, timeouts."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from ops.errors import OpsError, ToolMissing

INSTALL_HINTS = {
    "nginx": "install it with: apt-get install nginx-light libnginx-mod-http-brotli-filter libnginx-mod-http-brotli-static",
    "promtool": "install it with: apt-get install prometheus",
    "docker-compose": "install it with: apt-get install docker-compose",
    "docker": "install the Docker engine (apt-get install docker.io)",
    "openssl": "install it with: apt-get install openssl",
    "check-jsonschema": "install it with: pip install check-jsonschema",
    "wrk": "install it with: apt-get install wrk",
    "crontab": "install it with: apt-get install cron (or use --systemd)",
    "perf": "install it with: apt-get install linux-perf",
    "go": "install it with: apt-get install golang-go",
    "cargo": "install it with: apt-get install cargo (or rustup)",
}


def which(tool: str) -> str:
    """Absolute path of ``tool`` or ToolMissing with an install hint."""
    found = shutil.which(tool)
    if not found:
        raise ToolMissing(tool, INSTALL_HINTS.get(tool, f"install {tool}"))
    return found


def run(
    argv: Sequence[str],
    *,
    timeout: float = 60,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (never a shell string), capturing text output, with a timeout."""
    argv = [which(argv[0]) if "/" not in argv[0] else argv[0], *argv[1:]]
    try:
        proc = subprocess.run(  # noqa: S603 - argument list, resolved executable
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise OpsError(f"{Path(argv[0]).name} did not finish within {timeout:g}s") from None
    if check and proc.returncode != 0:
        output = (proc.stderr or proc.stdout).strip().splitlines()
        last = output[-1] if output else f"exit code {proc.returncode}"
        raise OpsError(f"{Path(argv[0]).name} failed: {last}")
    return proc


def free_port() -> int:
    """A TCP port free on loopback right now (for servers the suite starts itself)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
