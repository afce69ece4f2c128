"""Running `vots-ops` as a user does, from tests: a subprocess with a clean environment.

``run()`` waits for the command; ``start()`` returns it running, and
``signal_midway()`` sends it a signal after a while and collects what it
printed, with the processes it had started at that moment, so a test can
check that none of them outlived it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.support.processes import stop_process


def cli_env(**extra: str) -> dict[str, str]:
    """No VOTS_OPS_* settings from the developer's shell; a wide terminal for tables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOTS_OPS_")}
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


def argv(*args: str, prefix: tuple[str, ...] = ()) -> list[str]:
    return [*prefix, sys.executable, "-m", "ops", *args]


def run(
    *args: str,
    cwd: Path,
    timeout: float = 120,
    prefix: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv(*args, prefix=prefix),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env or cli_env(),
    )


def start(*args: str, cwd: Path, **popen: Any) -> subprocess.Popen[str]:
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    popen.setdefault("env", cli_env())
    return subprocess.Popen(argv(*args), text=True, cwd=cwd, **popen)


def signal_midway(
    proc: subprocess.Popen[str], sig: int, after: float, *, group: bool = False, timeout: float = 45
) -> tuple[str, str, list[Any]]:
    """Send ``sig`` after ``after`` seconds; (stdout, stderr, the children it had then)."""
    import psutil

    try:
        time.sleep(after)
        children = psutil.Process(proc.pid).children(recursive=True)
        if group:
            os.killpg(proc.pid, sig)  # what a terminal's Ctrl-C does
        else:
            proc.send_signal(sig)
        out, err = proc.communicate(timeout=timeout)
    finally:
        stop_process(proc)
    return out, err, children
