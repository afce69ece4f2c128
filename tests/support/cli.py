"""Running `vots-ops` as a user does, from tests: a subprocess with a sealed environment.

Every CLI test goes through here, so no setting of the developer's shell
(``VOTS_OPS_STACK``, ``VOTS_OPS_DB``, ``XDG_STATE_HOME``, a narrow terminal, a
local time zone) can change what a test sees. The environment is built from an
allow-list: the variables a command needs to find its tools (``PATH``, ``HOME``,
the locale, the Docker engine's address) and nothing else, plus pinned
``NO_COLOR``, ``COLUMNS`` and ``TZ``. ``XDG_STATE_HOME`` points into a directory
of the test's own, so a default history is never the developer's.

``run()`` waits for the command; ``start()`` returns it running, and
``signal_midway()`` sends it a signal after a while and collects what it
printed, with the processes it had started at that moment, so a test can
check that none of them outlived it. ``Cli`` binds the three to one state
directory and working directory (the ``cli`` fixture gives each test its own).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.processes import stop_process

# What a command may inherit from the caller: how to find programs, the user, the
# locale, temp space, and which Docker engine the tests target.
PASS_THROUGH = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TMPDIR",
    "DOCKER_HOST",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONPYCACHEPREFIX",
)
PINNED = {"NO_COLOR": "1", "COLUMNS": "200", "TZ": "UTC", "PYTHONUNBUFFERED": "1"}

_DEFAULT_STATE = Path(tempfile.mkdtemp(prefix="vots-ops-test-state-"))


def cli_env(state: Path | None = None, **extra: str) -> dict[str, str]:
    """The sealed environment: the allow-list, the pinned values, ``XDG_STATE_HOME``
    under ``state`` (a temp dir of this test session by default), then ``extra``."""
    env = {k: os.environ[k] for k in PASS_THROUGH if k in os.environ}
    env.update(PINNED)
    env["XDG_STATE_HOME"] = str(state or _DEFAULT_STATE)
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
    input: str | None = None,
    stdout: Any = subprocess.PIPE,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv(*args, prefix=prefix),
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env or cli_env(),
        input=input,
        check=False,
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


class Cli:
    """``vots-ops`` for one test: its own state directory and working directory.

    ``env`` holds extra variables for every call (e.g. ``PATH`` with a fake
    ``crontab`` first); a call's own ``env=`` entries are added on top.
    """

    def __init__(self, state: Path, cwd: Path, **env: str) -> None:
        self.state, self.cwd = state, cwd
        self.extra = dict(env)

    def env(self, **extra: str) -> dict[str, str]:
        return cli_env(self.state, **{**self.extra, **extra})

    def run(
        self,
        *args: str,
        cwd: Path | None = None,
        timeout: float = 120,
        prefix: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        input: str | None = None,
        stdout: Any = subprocess.PIPE,
    ) -> subprocess.CompletedProcess[str]:
        return run(
            *args,
            cwd=cwd or self.cwd,
            timeout=timeout,
            prefix=prefix,
            env=self.env(**(env or {})),
            input=input,
            stdout=stdout,
        )

    def start(
        self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, **popen: Any
    ) -> subprocess.Popen[str]:
        return start(*args, cwd=cwd or self.cwd, env=self.env(**(env or {})), **popen)
