"""One raw sample: the host's and every container's cumulative counters, and when.

Every structure in it is plain JSON (dicts, lists, str, int, float, None): the
raw sample is what the history stores, and the next run computes rates from it
(``ops.report.rates``), so a cron run never sleeps between two readings.
"""

# No `from __future__ import annotations` here: TypedDict reads NotRequired[...]
# from evaluated annotations only (Python 3.11), and tests check the shapes at run time.

import time
from collections.abc import Collection
from typing import Any, NotRequired, TypedDict

from ops.report.containers import DOCKER_TIMEOUT, collect_containers
from ops.report.procfs import collect_host

SCHEMA = 1


class HostCounters(TypedDict):
    """The VM's cumulative counters (``ops.report.procfs.collect_host``). The
    device tables inside stay JSON objects: their keys are the devices'."""

    hostname: str
    boot_time: float
    cpu_count: int | None  # None where the OS does not say
    cpu: dict[str, float]  # cumulative seconds: total, idle, iowait, steal, busy
    cpu_per_core: list[dict[str, float]]
    load_avg: list[float]
    memory: dict[str, int]  # total, available, used
    swap: dict[str, int]  # total, used, free
    disks: list[dict[str, Any]]  # one per real filesystem
    disk_io: dict[str, Any]  # read/write bytes over whole disks, and per disk
    net_io: dict[str, Any]  # bytes recv/sent over physical NICs, and per NIC
    process_count: int
    top_cpu: list[dict[str, Any]]
    top_memory: list[dict[str, Any]]
    boot_id: NotRequired[str | None]


class ContainerCounters(TypedDict, total=False):
    """One container's description and cumulative counters
    (``ops.report.containers.collect_containers``; see its docstring for each key).
    Not every key is there for every container: a stopped one has no ``cpu``."""

    id: str
    name: str | None
    service: str | None
    project: str | None
    image: str | None
    state: str | None
    health: str | None
    started_at: str | None
    finished_at: str | None
    exit_code: int | None
    restarting: bool | None
    restart_count: int | None
    running: bool | None
    oom_killed: bool | None
    oom_kill_count: int | None
    network_mode: str | None
    limits: dict[str, Any] | None
    cpu: dict[str, Any] | None
    memory: dict[str, Any] | None
    blkio: dict[str, Any] | None
    net: dict[str, Any] | None
    pids: int | None
    stats_error: str | None
    stats_source: str | None
    cgroup_version: int | None
    read_mono: float | None


class Sample(TypedDict):
    """One raw sample, as the history stores it (see ``sample``)."""

    schema: int
    time: float
    mono: float
    host: HostCounters
    docker: bool
    containers: list[ContainerCounters]
    docker_error: str | None
    collect_s: float
    # Stored only: a host-only run keeps the previous run's container counters.
    containers_carried: NotRequired[bool]


def sample(
    docker: bool = True,
    *,
    top_n: int = 5,
    timeout: float = DOCKER_TIMEOUT,
    client: Any | None = None,
    source: str = "auto",
    follow: Collection[str] = (),
) -> Sample:
    """One raw sample: host counters, container counters, when, and any engine error.

    Keys: ``schema``, ``time`` (epoch s), ``mono`` (time.monotonic(): intervals
    between two samples of one boot ignore wall-clock steps), ``host``
    (``collect_host``), ``docker`` (whether containers were asked for),
    ``containers`` and ``docker_error`` (``collect_containers``), ``collect_s``
    (what the sample cost in wall time). ``follow``: container ids to describe
    even if they stopped (see ``collect_containers``).
    """
    started = time.perf_counter()
    stamp, mono = time.time(), time.monotonic()
    host = collect_host(top_n)
    containers: list[ContainerCounters] = []
    error: str | None = None
    if docker:
        containers, error = collect_containers(client, timeout, source=source, follow=follow)
    return {
        "schema": SCHEMA,
        "time": stamp,
        "mono": mono,
        "host": host,
        "docker": docker,
        "containers": containers,
        "docker_error": error,
        "collect_s": round(time.perf_counter() - started, 4),
    }
