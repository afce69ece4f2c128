"""Analyses off the event loop: a fixed set of worker processes, a bounded queue.

Each worker is a spawned process (nothing of the server's state is forked into
it) that imports the analysers once and then serves one analysis at a time over
a pipe. The number of workers comes from the container's CPU limit
(:func:`cpu_limit`), not the host's core count. A request beyond
``workers + queue`` analyses in flight is refused at once
(:class:`~vots_agent.errors.Overloaded`: 503 with Retry-After); an analysis
past its deadline has its worker killed and replaced, as has a worker that died
(OOM-killed, say), and the request gets a clear error, never a hang. Workers
run at a lower CPU priority (nice 10) than the server, so health checks and
cache hits are served first when analyses keep the CPU busy.

Workers exit when their pipe closes, and Linux kills them when the server dies
(``PR_SET_PDEATHSIG``), so none outlives the server, even one SIGKILLed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import math
import multiprocessing
import os
import signal
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from vots_agent.analysis import Options, SourceFile
from vots_agent.errors import AgentError, AnalysisFailed, Overloaded
from vots_agent.findings import Analysis

log = logging.getLogger("vots_agent")
PR_SET_PDEATHSIG = 1
WORKER_NICE = 10


def cpu_limit(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: the cgroup's CPU quota (v2 ``cpu.max``, or v1
    ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``), rounded up; else the CPU
    affinity mask; else 1."""
    quota = _cgroup_quota(cgroup_root)
    if quota is not None:
        return max(1, math.ceil(quota))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except OSError:
        return max(1, os.cpu_count() or 1)


def _cgroup_quota(root: Path) -> float | None:
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for cpu in (root / "cpu", root / "cpu,cpuacct", root):  # v1 mounts
        try:
            q = int((cpu / "cpu.cfs_quota_us").read_text())
            p = int((cpu / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if q <= 0 or p <= 0 else q / p
    return None


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the closed pipe still ends the worker
        pass


def _worker_main(conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when workers stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()
    # Below the server in CPU priority: on a busy CPU, /healthz and cache hits go first.
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICE)
    from vots_agent.analysis import analyze, tool_versions

    try:
        tool_versions()
        analyze([SourceFile("warm.py", "import os\n")])  # imports bandit's plugins, radon
        conn.send(("ready", None))
    except AgentError as exc:
        conn.send(("error", (exc.message, exc.status)))
        return
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        files, options = job
        try:
            conn.send(("ok", analyze(files, options)))
        except AgentError as exc:
            conn.send(("error", (exc.message, exc.status)))
        except Exception as exc:  # a bug in an analyser on this input: report, keep serving
            log.exception("analysis failed")
            conn.send(("error", (f"analysis failed: {type(exc).__name__}: {exc}", 500)))


class _Worker:
    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.conn: Connection
        self.proc: BaseProcess
        self._start()

    def _start(self) -> None:
        parent, child = self.ctx.Pipe(duplex=True)
        self.proc = self.ctx.Process(target=_worker_main, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent

    def wait_ready(self, timeout: float) -> None:
        if not self.conn.poll(timeout):
            raise AgentError(f"analysis worker did not start in {timeout:.0f} s", status=503)
        kind, payload = self.conn.recv()
        if kind != "ready":
            raise AgentError(payload[0], status=payload[1])

    def restart(self, timeout: float = 120.0) -> None:
        """A fresh worker in place of this one, ready before it takes the next job."""
        self.kill()
        self._start()
        try:
            self.wait_ready(timeout)
        except AgentError as exc:  # the next call finds the pipe dead and tries again
            log.error("analysis worker did not restart", extra={"reason": exc.message})

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()

    def call(self, job: tuple[Sequence[SourceFile], Options], deadline: float) -> Analysis:
        try:
            self.conn.send(job)
            if not self.conn.poll(deadline):
                self.restart()
                raise AnalysisFailed(
                    f"analysis did not finish in {deadline:g} s; its worker was replaced",
                    status=504,
                )
            kind, payload = self.conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            code = self.proc.exitcode
            self.restart()
            raise AnalysisFailed(
                f"analysis worker died (exit code {code}); it was replaced, retry"
            ) from None
        if kind == "ok":
            return payload
        raise AgentError(payload[0], status=payload[1])


class Pool:
    """``workers`` analysis processes and room for ``queue`` more requests waiting."""

    def __init__(self, workers: int, queue: int, deadline: float) -> None:
        self.size = workers
        self.queue = queue
        self.deadline = deadline
        self.running = 0
        self.waiting = 0
        self.restarts = 0
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._idle: asyncio.Queue[_Worker] | None = None
        self._lock = threading.Lock()
        self.closed = False

    def start_workers(self, timeout: float = 120.0) -> None:
        """Start every worker and wait until each has its analysers loaded (blocks: run
        it in a thread), then :meth:`open` on the event loop."""
        self._workers = [_Worker(self._ctx) for _ in range(self.size)]
        try:
            for w in self._workers:
                w.wait_ready(timeout)
        except AgentError:
            self.close()
            raise

    def open(self) -> None:
        """Take requests (on the event loop that will await :meth:`run`)."""
        self._idle = asyncio.Queue()
        for w in self._workers:
            self._idle.put_nowait(w)

    @property
    def depth(self) -> int:
        return self.waiting

    async def run(self, files: Sequence[SourceFile], options: Options) -> Analysis:
        if self._idle is None or self.closed:
            raise AgentError("the analysis pool is not running", status=503)
        if self.running + self.waiting >= self.size + self.queue:
            raise Overloaded(
                f"{self.running} analyses running and {self.waiting} queued (limit "
                f"{self.size}+{self.queue}); retry shortly"
            )
        self.waiting += 1
        try:
            worker = await self._idle.get()
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            return await asyncio.to_thread(worker.call, (list(files), options), self.deadline)
        except AnalysisFailed:
            self.restarts += 1
            raise
        finally:
            self.running -= 1
            self._idle.put_nowait(worker)

    def close(self, timeout: float = 10.0) -> None:
        """Ask every worker to exit (after its current analysis), then kill stragglers."""
        self.closed = True
        for w in self._workers:
            with contextlib.suppress(OSError):
                w.conn.send(None)
        for w in self._workers:
            w.proc.join(timeout=timeout)
            w.kill()
        self._workers = []
