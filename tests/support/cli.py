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
directory and working directory (the ``cli`` fixture gives each test its own;
``Cli.in_dir()`` makes one for a module-scoped fixture).

A machine under load is the normal case here, so nothing in this module waits
for a fixed time and hopes: ``signal_midway()`` can wait for a condition (the
run has started its children, the target has served N requests) before it
signals, and every wait has a generous timeout that only a hung command hits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
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


# The checkout's vots-ops, as ``python -m ops`` with the test's interpreter.
PROGRAM = (sys.executable, "-m", "ops")


def argv(
    *args: str, prefix: tuple[str, ...] = (), program: Sequence[str] | None = None
) -> list[str]:
    """``prefix`` (e.g. setpriv) + ``program`` (default: this checkout's vots-ops) + ``args``."""
    return [*prefix, *(program or PROGRAM), *args]


#: Signals vots-ops handles: a test's command starts with them at their defaults.
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def default_signals() -> None:
    """``preexec_fn``: what the caller ignored (nohup's SIGHUP, a CI runner's SIGINT)
    is not passed on, so a test sees what a command started from a terminal does; a
    test of an ignored signal passes its own ``preexec_fn``."""
    for sig in HANDLED_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)


def run(
    *args: str,
    cwd: Path,
    timeout: float = 120,
    prefix: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    input: str | None = None,
    stdout: Any = subprocess.PIPE,
    program: Sequence[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv(*args, prefix=prefix, program=program),
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=cli_env() if env is None else env,
        input=input,
        check=False,
        preexec_fn=default_signals,
    )


def start(
    *args: str, cwd: Path, program: Sequence[str] | None = None, **popen: Any
) -> subprocess.Popen[str]:
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    popen.setdefault("preexec_fn", default_signals)
    if popen.get("env") is None:
        popen["env"] = cli_env()
    return subprocess.Popen(argv(*args, program=program), text=True, cwd=cwd, **popen)


def wait_for(
    condition: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    proc: subprocess.Popen[Any] | None = None,
    interval: float = 0.05,
) -> bool:
    """Poll ``condition`` until it holds (True), or ``proc`` exited (False: let the
    caller collect and show its output); after ``timeout`` seconds, an AssertionError
    naming ``what``. The timeout is for a hung command, not a slow machine."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g}s for {what}")
        time.sleep(interval)
    return True


def signal_midway(
    proc: subprocess.Popen[str],
    sig: int,
    after: float = 0.0,
    *,
    when: Callable[[], bool] | None = None,
    what: str = "the command to get going",
    within: float = 120,
    group: bool = False,
    timeout: float = 45,
) -> tuple[str, str, list[Any]]:
    """Send ``sig`` once ``when()`` holds (if given) and ``after`` more seconds have
    passed; (stdout, stderr, the children it had then).

    Waiting for a condition rather than a fixed time keeps the test meaningful on a
    loaded machine, where a command may take several times longer to start. If the
    command exits before the condition holds, no signal is sent and its output is
    returned as it is, for the test's assertions to show."""
    import psutil

    children: list[Any] = []
    try:
        if when is not None and not wait_for(when, timeout=within, what=what, proc=proc):
            out, err = proc.communicate(timeout=timeout)
            return out, err, children
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

    @classmethod
    def in_dir(cls, directory: Path, **env: str) -> Cli:
        """A ``Cli`` working in ``directory``, its state under ``directory/.xdg-state``."""
        state = directory / ".xdg-state"
        state.mkdir(parents=True, exist_ok=True)
        return cls(state, directory, **env)

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
        program: Sequence[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return run(
            *args,
            cwd=cwd or self.cwd,
            timeout=timeout,
            prefix=prefix,
            env=self.env(**(env or {})),
            input=input,
            stdout=stdout,
            program=program,
        )

    def start(
        self,
        *args: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        program: Sequence[str] | None = None,
        **popen: Any,
    ) -> subprocess.Popen[str]:
        return start(
            *args, cwd=cwd or self.cwd, env=self.env(**(env or {})), program=program, **popen
        )

    def start_load(
        self, scenario: str, host: str, runs: Path, *extra: str, settle: float = 5.0
    ) -> subprocess.Popen[str]:
        """``vots-ops loadtest SCENARIO --host HOST --format json --out RUNS`` running,
        returned once its Locust is sending (its log exists) and ``settle`` seconds more;
        AssertionError if it ended or did not start within a minute."""
        load = self.start(
            "loadtest", scenario, "--host", host, *extra, "--format", "json", "--out", str(runs)
        )
        deadline = time.monotonic() + 60
        while not list(runs.glob("*/locust.log")):
            if load.poll() is not None or time.monotonic() > deadline:
                err = load.communicate()[1] if load.poll() is not None else ""
                raise AssertionError(f"the load test did not start: {err[-2000:]}")
            time.sleep(0.5)
        time.sleep(settle)
        return load
