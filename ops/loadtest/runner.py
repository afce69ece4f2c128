"""Run one scenario: Locust headless as a managed subprocess, watched through a status pipe.

A subprocess, not Locust as a library, because Locust monkey-patches the whole
interpreter with gevent on import and forks its workers itself
(``--processes``); neither belongs in the CLI's own process. The cost is
start-up and shut-down, paid once per run (``bench/loadtest_throughput.py``):
about 0.7 s with one process and 3.3 s with a master and two workers, most of it
Locust's own waits for its workers to report in and to send their last stats.

The child gets an argument list (never a shell string), its own session so a
timeout can stop the master and every worker it forked, its output in
``locust.log`` of the run directory, and its configuration as JSON in
``VOTS_OPS_LOADTEST``. The run directory is built under a hidden name and
renamed only when the run has produced its result; a run that fails keeps its
log under ``NAME.failed`` and says so.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from ops.extras import require
from ops.loadtest.result import Mode, RawRun, Status
from ops.loadtest.scenario import Scenario
from ops.proc import free_port, signal_group, supervise

PLUGIN = Path(__file__).with_name("_locust_plugin.py")
EXPECT_WORKERS_WAIT_S = 60


@dataclass(frozen=True)
class RunOptions:
    """How to drive the load; the scenario says what load."""

    host: str
    processes: int = 1
    mode: Mode = "local"
    expect_workers: int = 1
    master_host: str = "127.0.0.1"
    master_port: int = 5557
    master_bind_host: str = "*"
    # The target's checked addresses: each Locust process connects to these alone.
    addresses: tuple[str, ...] = ()
    verify_tls: bool = False


@dataclass
class RunOutput:
    """What the Locust run left behind, before any verdict."""

    raw: RawRun
    workdir: Path
    exit_code: int
    interrupted: bool = False
    statuses: list[Status] = field(default_factory=list)


def locust_argv(scenario: Scenario, locustfile: Path, opts: RunOptions, workdir: Path) -> list[str]:
    """The Locust command line; user classes, host and bounds come from the scenario."""
    argv = [sys.executable, "-m", "locust", "-f", f"{PLUGIN},{locustfile}"]
    if opts.mode == "worker":
        argv += [
            "--worker",
            "--master-host",
            opts.master_host,
            "--master-port",
            str(opts.master_port),
        ]
        if opts.processes > 1:
            argv += ["--processes", str(opts.processes)]
        return [*argv, "--loglevel", "INFO", *scenario.user_classes]
    argv += [
        "--headless",
        "--host",
        opts.host,
        "--users",
        str(scenario.users),
        "--spawn-rate",
        format(scenario.effective_spawn_rate, "g"),
        "--run-time",
        f"{max(1, math.ceil(scenario.duration))}s",
        "--html",
        str(workdir / "locust.html"),
        "--only-summary",
        "--exit-code-on-error",
        "0",
        "--loglevel",
        "INFO",
    ]
    if scenario.arrival_rate:
        # Read by users.pacing in every process; Locust passes them to workers.
        argv += ["--vots-arrival-rate", repr(float(scenario.arrival_rate))]
        argv += ["--vots-users", str(scenario.users)]
    if opts.mode == "master":
        argv += [
            "--master",
            "--master-bind-host",
            opts.master_bind_host,
            "--master-bind-port",
            str(opts.master_port),
            "--expect-workers",
            str(opts.expect_workers),
            "--expect-workers-max-wait",
            str(EXPECT_WORKERS_WAIT_S),
        ]
    elif opts.processes > 1:
        # Locust's own default binds the master on every interface at 5557: a
        # second run on the machine would collide, and nothing outside needs it.
        port = str(free_port())
        argv += ["--processes", str(opts.processes), "--master-bind-host", "127.0.0.1"]
        argv += ["--master-bind-port", port, "--master-port", port]
    return [*argv, *scenario.user_classes]


def _check_locust() -> None:
    require("locust", "loadtest", "loadtest")


def _deadline(scenario: Scenario, opts: RunOptions) -> float:
    ramp = scenario.users / scenario.effective_spawn_rate
    wait = EXPECT_WORKERS_WAIT_S if opts.mode == "master" else 0
    return scenario.duration + ramp + wait + 60.0


def run_locust(
    scenario: Scenario,
    locustfile: Path,
    opts: RunOptions,
    workdir: Path,
    on_status: Callable[[Status], None] | None = None,
) -> RunOutput:
    """Run Locust to completion (or Ctrl-C, or the hard deadline) and return its raw result."""
    _check_locust()
    result_path = workdir / "raw.json"
    read_fd, write_fd = os.pipe()
    config = {
        "result": str(result_path) if opts.mode != "worker" else None,
        "status_fd": write_fd if opts.mode != "worker" else None,
        "arrival_rate": scenario.arrival_rate,
        "users": scenario.users,
        "max_requests": scenario.max_requests,
        # --processes N forks N workers that each stop at their share; under
        # --master the master stops remote workers when the total passes it.
        "max_requests_per_process": (
            math.ceil(scenario.max_requests / opts.processes) if opts.mode == "local" else 0
        ),
        "host": opts.host,
        "addresses": list(opts.addresses),
        "verify_tls": opts.verify_tls,
        "locustfile": locustfile.name,  # for Locust's report, which names the first -f file
    }
    env = {**os.environ, "VOTS_OPS_LOADTEST": json.dumps(config), "PYTHONUNBUFFERED": "1"}
    argv = locust_argv(scenario, locustfile, opts, workdir)
    statuses: list[Status] = []
    reader = _StatusReader(read_fd, statuses, on_status)

    def interrupt(proc: subprocess.Popen[bytes]) -> None:
        if opts.mode == "worker":
            signal_group(proc, signal.SIGINT)
        else:
            # Only the master: it stops its workers, which send their last
            # figures first; a SIGINT to each would lose them.
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)

    writer_open = [True]

    def close_writer(_proc: object = None) -> None:
        # The child holds the pipe's write end now: ours must close, or the
        # pipe never ends; once only, as the number may be reused at once.
        if writer_open[0]:
            writer_open[0] = False
            os.close(write_fd)

    log_path = workdir / "locust.log"
    try:
        with log_path.open("wb") as log:
            try:
                done = supervise(
                    argv,
                    name="locust",
                    timeout_s=_deadline(scenario, opts),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=str(locustfile.parent),
                    pass_fds=(write_fd,),
                    on_start=close_writer,
                    on_tick=lambda _elapsed: reader.read(),
                    interrupt=interrupt,
                    stop_signal=signal.SIGTERM,
                    grace_s=30,
                    tick_s=0.5,
                    log=log_path,
                )
            finally:
                close_writer()
        reader.read()  # what the plugin wrote last
    finally:
        os.close(read_fd)
    raw: RawRun = {}
    if result_path.exists():
        raw = cast(RawRun, json.loads(result_path.read_text(encoding="utf-8")))
        result_path.unlink()
    return RunOutput(raw, workdir, done.returncode, done.interrupted, statuses)


class _StatusReader:
    """The status lines the plugin writes to its pipe, passed on as they arrive."""

    def __init__(
        self, fd: int, into: list[Status], on_status: Callable[[Status], None] | None
    ) -> None:
        self.fd, self.into, self.on_status = fd, into, on_status
        self.buf = b""
        os.set_blocking(fd, False)

    def read(self) -> None:
        """Every whole line there is now (never waits)."""
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            if not chunk:
                return
            self.buf += chunk
            *lines, self.buf = self.buf.split(b"\n")
            for line in lines:
                status = cast(Status, json.loads(line))
                self.into.append(status)
                if self.on_status is not None:
                    self.on_status(status)


_CAUSE = re.compile(r"^(vots-ops: |[\w.]*(Error|Exception|Exit)\b)")


def log_tail(workdir: Path) -> str:
    """The line of Locust's output that says why it failed, for a one-line error.

    The last exception (``RPCError: Socket bind failure ...``) or vots-ops'
    own refusal, else the last line: Locust's final lines are usually its
    shutdown notice, not the cause.
    """
    path = workdir / "locust.log"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()]
    causes = [ln for ln in kept if _CAUSE.match(ln)]
    return causes[-1] if causes else (kept[-1] if kept else "")
