"""The load generator measuring itself: how busy each Locust process (and the machine) was.

Against a fast server the driver is the bottleneck: a Locust process that
always has work queued adds its own queueing to every latency it records and
caps the request rate below what the server could take. Each process samples
its main thread every ``INTERVAL_S`` while users run: the share of wall time it
spent on a CPU (``/proc/self/schedstat`` run time) and waiting for one (run
queue delay, which on a shared machine is time the driver wanted but did not
get). A process whose median sample is at or above ``SATURATED`` of a core
was the bottleneck, whatever else competed for the cores. So is one that
spent ``WAITING`` or more of its time runnable but without a CPU (a machine
busy with other work, or the server under test on the same cores): it then
blocks less on responses, so its demand can stay under ``SATURATED``, but
every timestamp it takes is late by that queueing all the same. The
machine's busy share comes from ``/proc/stat``.

This module imports neither Locust nor gevent: the plugin drives the sampler,
``ops.loadtest.verdict`` summarises what it found.
"""

from __future__ import annotations

import os
import statistics
import time

from ops.loadtest.result import DriverProcess

SATURATED = 0.90  # of one core, median over the run's samples
WAITING = 0.10  # of the wall time runnable but not running, median over the samples
INTERVAL_S = 0.5
ADVICE = "these latencies include the load generator's own queueing; add --processes or machines"


def _schedstat() -> tuple[float, float] | None:
    """(seconds on a CPU, seconds runnable but waiting) of this process's main thread."""
    try:
        with open("/proc/self/schedstat", encoding="ascii") as f:
            run_ns, wait_ns, *_ = f.read().split()
        return int(run_ns) / 1e9, int(wait_ns) / 1e9
    except (OSError, ValueError):
        return None


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def machine_busy() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine since boot (/proc/stat)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    total = sum(fields)
    idle = fields[3] + fields[4]  # idle, iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (total - idle) / tick, total / tick


class Sampler:
    """Samples of this process's demand for a core (and the machine's load)."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.demand: list[float] = []
        self.wait: list[float] = []
        self.cpu: list[float] = []
        self.machine: list[float] = []
        self._last: tuple[float, float, tuple[float, float] | None, tuple[float, float] | None]
        self._last = (time.monotonic(), _cpu_seconds(), _schedstat(), machine_busy())

    def restart(self) -> None:
        """Forget the time before now (the run starts: spawning, not start-up, counts)."""
        self._last = (time.monotonic(), _cpu_seconds(), _schedstat(), machine_busy())

    def sample(self) -> None:
        """One sample: the time since the last call (or ``restart``)."""
        now, cpu, sched, mach = time.monotonic(), _cpu_seconds(), _schedstat(), machine_busy()
        wall0, cpu0, sched0, mach0 = self._last
        self._last = (now, cpu, sched, mach)
        wall = now - wall0
        if wall <= 0.2:  # too short a window to mean anything
            return
        used = (cpu - cpu0) / wall
        self.cpu.append(used)
        if sched is not None and sched0 is not None:
            self.demand.append(((sched[0] - sched0[0]) + (sched[1] - sched0[1])) / wall)
            self.wait.append((sched[1] - sched0[1]) / wall)
        else:
            self.demand.append(used)
        if mach is not None and mach0 is not None and mach[1] > mach0[1]:
            self.machine.append((mach[0] - mach0[0]) / (mach[1] - mach0[1]))

    def export(self) -> DriverProcess:
        def median(values: list[float]) -> float | None:
            return round(statistics.median(values), 3) if values else None

        demand, wait = median(self.demand), median(self.wait)
        busy = (demand is not None and demand >= SATURATED) or (
            wait is not None and wait >= WAITING
        )
        return {
            "role": self.role,
            "pid": os.getpid(),
            "samples": len(self.demand),
            "core_demand": demand,
            "cpu_wait": wait,
            "cpu": median(self.cpu),
            "cpu_max": round(max(self.cpu), 3) if self.cpu else None,
            "machine_busy": median(self.machine),
            "saturated": self.role != "master" and busy,
        }
