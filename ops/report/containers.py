"""Every running container's description, limits and counters, through the engine.

One ``containers`` list call, then per container an inspect (limits, labels,
health, restarts, OOMKilled, pid) and its counters from its cgroup files
(``ops.report.cgroups``) when this host can read them; the engine's stats
endpoint is the fallback. Even one-shot, Docker 20.10 answers stats only on its
collector's next 1 s tick (measured 0.6-1.0 s per sample), so those calls run
concurrently. The engine is spoken to by ``ops.engine`` (standard library only:
no SDK import on the cron path). A missing or stuck engine is an expected
condition on a VM, not a crash: ``collect_containers`` returns ``([], reason)``
within its timeout.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, cast

from ops import engine as _engine
from ops.report.cgroups import Cgroups, parse_net_dev
from ops.report.procfs import _read

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from ops.report.sample import ContainerCounters

#: Default per-call budget for the engine (connect, list, inspect, stats).
DOCKER_TIMEOUT = 3.0
#: Threads waiting on engine stats at once (and our client's connection pool size).
MAX_WORKERS = 16
STATS_SOURCES = ("auto", "cgroup", "docker")


def _from_docker_stats(raw: dict[str, Any]) -> dict[str, Any] | None:
    """The cumulative counters of one ``/containers/<id>/stats`` answer.

    Memory is usage minus inactive_file (v1: total_inactive_file), the
    ``docker stats`` convention: page cache the kernel can drop is not pressure.
    An empty io_service_bytes_recursive (common on cgroup v2 and on kernels
    without CFQ) means "not reported", so block I/O is None, not 0.
    """
    cpu = raw.get("cpu_stats") or {}
    usage = (cpu.get("cpu_usage") or {}).get("total_usage")
    if not usage and not raw.get("memory_stats"):
        return None  # the engine answers zeros for a container that is not running
    throttling = cpu.get("throttling_data") or {}
    mem = raw.get("memory_stats") or {}
    mstats = mem.get("stats") or {}
    inactive = mstats.get("total_inactive_file", mstats.get("inactive_file", 0))
    mem_usage = mem.get("usage")
    if mem_usage is not None and inactive < mem_usage:
        mem_usage -= inactive
    entries = (raw.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    read = sum(e.get("value", 0) for e in entries if str(e.get("op", "")).lower() == "read")
    write = sum(e.get("value", 0) for e in entries if str(e.get("op", "")).lower() == "write")
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or [])
    return {
        "cpu": {
            "usage_ns": usage,
            "system_ns": cpu.get("system_cpu_usage"),
            "online_cpus": online or None,
            "periods": throttling.get("periods"),
            "throttled_periods": throttling.get("throttled_periods"),
            "throttled_ns": throttling.get("throttled_time"),
        },
        "memory": {"usage": mem_usage, "limit": mem.get("limit")},
        "blkio": (
            {"read_bytes": read, "write_bytes": write}
            if entries
            else {"read_bytes": None, "write_bytes": None}
        ),
        "pids": (raw.get("pids_stats") or {}).get("current"),
        "net": _docker_net(raw.get("networks")),
    }


def _docker_net(networks: dict[str, Any] | None) -> dict[str, int] | None:
    if not networks:
        return None  # host or none network mode: no namespace of its own
    return {
        "rx_bytes": sum(n.get("rx_bytes", 0) for n in networks.values()),
        "tx_bytes": sum(n.get("tx_bytes", 0) for n in networks.values()),
    }


def _cpuset_count(spec: str | None) -> int | None:
    """Number of CPUs in a cpuset like ``0-2,5``."""
    if not spec:
        return None
    count = 0
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        count += int(hi) - int(lo) + 1 if hi else 1
    return count


def _limits(host: dict[str, Any]) -> dict[str, Any]:
    """What ``docker run``/compose set: CPUs (NanoCpus, else CpuQuota/CpuPeriod),
    cpuset, cpu_shares, memory limit and reservation, pids limit; None = unset."""
    nano = host.get("NanoCpus") or 0
    quota = host.get("CpuQuota") or 0
    period = host.get("CpuPeriod") or 100_000
    cpus = nano / 1e9 if nano > 0 else quota / period if quota > 0 else None
    pids = host.get("PidsLimit")
    return {
        "cpus": round(cpus, 4) if cpus is not None else None,
        "cpuset_cpus": host.get("CpusetCpus") or None,
        "cpu_shares": host.get("CpuShares") or None,
        "memory": host.get("Memory") or None,
        "memory_reservation": host.get("MemoryReservation") or None,
        "pids": pids if pids and pids > 0 else None,
    }


def _describe(summary: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    state = info.get("State") or {}
    labels = (info.get("Config") or {}).get("Labels") or summary.get("Labels") or {}
    host = info.get("HostConfig") or {}
    health = state.get("Health")
    return {
        "id": info.get("Id") or summary["Id"],
        "name": (info.get("Name") or "").lstrip("/"),
        "service": labels.get("com.docker.compose.service"),
        "project": labels.get("com.docker.compose.project"),
        "image": (info.get("Config") or {}).get("Image") or summary.get("Image"),
        "state": state.get("Status"),
        "health": health.get("Status") if health else None,
        "started_at": state.get("StartedAt"),
        "finished_at": state.get("FinishedAt"),
        "exit_code": state.get("ExitCode"),
        "restarting": bool(state.get("Restarting")),
        "restart_count": info.get("RestartCount", 0),
        "oom_killed": bool(state.get("OOMKilled")),
        "network_mode": host.get("NetworkMode"),
        "limits": _limits(host),
    }


_NO_STATS: dict[str, Any] = {
    "cpu": None,
    "memory": None,
    "blkio": None,
    "net": None,
    "pids": None,
}


def _engine_stats(api: Any, cid: str) -> tuple[dict[str, Any] | None, float]:
    """One engine stats reading and when it arrived (runs in the worker pool).

    Docker 20.10 answers even a one-shot request only on its collector's next
    1 s tick, so these calls are issued together: they share one tick.
    """
    return _from_docker_stats(api.stats(cid)), time.monotonic()


def _inspect_and_read(
    api: Any,
    summary: dict[str, Any],
    source: str,
    cgroups: Cgroups,
    host_memory: int,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Inspect one container and, unless ``source`` is "docker", read its cgroup."""
    info = api.inspect(summary["Id"], timeout=timeout)
    entry = _describe(summary, info)
    entry.update(_NO_STATS)
    entry.update(
        stats_source=None,
        stats_error=None,
        read_mono=None,
        oom_kill_count=None,
        cgroup_version=None,
    )
    state = info.get("State") or {}
    pid = state.get("Pid") or 0
    entry["running"] = bool(state.get("Running")) and not state.get("Restarting") and pid > 0
    if not entry["running"]:
        # Exited, or waiting out a restart delay: no processes, no cgroup to read.
        entry["stats_error"] = f"not running ({entry['state'] or 'unknown'})"
        return entry
    dirs = cgroups.locate(entry["id"], pid)
    if dirs is None:
        entry["stats_error"] = "cgroup not found on this host"
        return entry
    entry["cgroup_version"] = cgroups.version
    entry["oom_kill_count"] = cgroups.oom_kills(dirs)
    if source == "docker":
        return entry
    try:
        entry.update(cgroups.read(dirs, host_memory))
    except (OSError, ValueError, KeyError) as exc:
        entry["stats_error"] = f"cgroup read failed: {exc}"
        return entry
    entry["net"] = _proc_net(pid, entry["network_mode"])
    entry["stats_source"] = "cgroup"
    entry["read_mono"] = time.monotonic()
    return entry


def _proc_net(pid: int, network_mode: str | None) -> dict[str, int] | None:
    """Bytes through the container's own network namespace, like ``docker stats``
    (None for host/none network modes, which have no namespace of their own)."""
    if pid <= 0 or network_mode in ("host", "none"):
        return None
    try:
        rx, tx = parse_net_dev(_read(f"/proc/{pid}/net/dev"))
    except (OSError, ValueError, IndexError):
        return None
    return {"rx_bytes": rx, "tx_bytes": tx}


def docker_error_reason(exc: BaseException, where: str, timeout: float) -> str:
    """One line saying why the engine could not be used (see ``engine.error_reason``)."""
    return _engine.error_reason(exc, where, timeout)


def collect_containers(
    client: Any | None = None,
    timeout: float = DOCKER_TIMEOUT,
    *,
    source: str = "auto",
    max_workers: int = MAX_WORKERS,
    follow: Collection[str] = (),
) -> tuple[list[ContainerCounters], str | None]:
    """Cumulative counters of every running container, and why not if no engine.

    ``follow``: ids of containers to describe even when they are no longer
    running (those of the previous sample), so a container that was OOM-killed
    and stopped between two samples is still seen exiting. Containers waiting
    out a restart delay are listed by the engine as running; they have no
    cgroup and get ``stats_error`` "not running (restarting)".

    One ``containers`` list call, then per container an inspect (limits,
    labels, health, restarts, OOMKilled, pid) and its counters. ``source``:
    ``"cgroup"`` reads the cgroup files only, ``"docker"`` asks the engine only
    (``stats(stream=False, one_shot=True)``), ``"auto"`` (default) reads the
    files and asks the engine for the containers whose cgroup it cannot read.
    Engine stats calls run concurrently (at most ``max_workers`` threads) since
    each waits for the engine's 1 s collector tick; inspects and file reads are
    serial, being faster so on a small VM. ``timeout`` bounds each engine request
    and the whole collection; a container not read in time gets ``stats_error``.

    Returns ``(containers, None)``, or ``([], "one-line reason")`` when the
    engine cannot be reached (no socket, permission denied, no answer). Never
    raises for an engine problem.

    Keys per container: ``id``, ``name``, ``service`` and ``project`` (compose
    labels), ``image``, ``state``, ``health``, ``started_at``, ``finished_at`` (the
    last exit), ``exit_code``, ``restarting``, ``restart_count`` (restarts by the
    engine's policy; survives them), ``running`` (processes up: not exited, not
    waiting to restart), ``oom_killed`` (the *last* exit only), ``oom_kill_count`` (kernel OOM kills in
    the current cgroup, any process; None if unreadable), ``network_mode``,
    ``limits`` (cpus, cpuset_cpus, cpu_shares, memory, memory_reservation, pids),
    ``cpu`` (usage_ns, system_ns, online_cpus, periods, throttled_periods,
    throttled_ns), ``memory`` (usage without inactive file cache, limit: host
    memory when unlimited, as ``docker stats``), ``blkio`` (read_bytes,
    write_bytes; None = not reported), ``net`` (rx_bytes, tx_bytes; None without
    a namespace of its own), ``pids``, ``stats_source`` ("cgroup" | "docker" |
    None), ``stats_error``, ``read_mono`` (time.monotonic() of the reading),
    ``cgroup_version`` (1, 2, or None when the cgroup was not found).
    """
    if source not in STATS_SOURCES:
        raise ValueError(f"source must be one of {STATS_SOURCES}, got {source!r}")
    deadline = time.monotonic() + timeout
    where = _engine.docker_host() if client is None else "the given Docker client"
    api: Any = None
    try:
        if client is None:
            api = _engine.connect(timeout=timeout, pool_size=max_workers)
        else:
            api = _engine.wrap_client(client)
        where = api.url
        summaries = api.containers(all=bool(follow))
        if follow:
            summaries = [
                s
                for s in summaries
                if s.get("State") in ("running", "restarting") or s.get("Id") in follow
            ]
    except Exception as exc:  # any engine failure is reported, never raised
        if api is not None and client is None:
            api.close()
        return [], docker_error_reason(exc, where, timeout)
    pool: ThreadPoolExecutor | None = None
    try:
        if not summaries:
            return [], None
        # What the engine (or the way to it) can throw; anything else is a bug here.
        engine_errors: tuple[type[BaseException], ...] = (_engine.EngineError, OSError)

        host_memory = _host_memory()
        cgroups = Cgroups()
        # The engine's connection pool bounds useful concurrency.
        workers = max(1, min(max_workers, api.pool_size, len(summaries)))
        futures: dict[int, Future[tuple[dict[str, Any] | None, float]]] = {}

        def ask_engine(i: int) -> None:
            nonlocal pool
            if pool is None:
                from concurrent.futures import ThreadPoolExecutor

                pool = ThreadPoolExecutor(workers, thread_name_prefix="vots-ops-stats")
            futures[i] = pool.submit(_engine_stats, api, summaries[i]["Id"])

        if source == "docker":  # start the wait for the engine's tick first
            for i in range(len(summaries)):
                ask_engine(i)
        entries: dict[int, dict[str, Any]] = {}
        raised: list[BaseException] = []
        # Inspect and cgroup reads are a fraction of a millisecond each, over one
        # kept-alive connection: serial beats threads on a small VM (measured).
        for i, summary in enumerate(summaries):
            left = deadline - time.monotonic()
            if left <= 0:
                entries[i] = _unreadable(summary, f"no answer within {timeout:g} s")
                continue
            try:
                entries[i] = _inspect_and_read(api, summary, source, cgroups, host_memory, left)
            except _engine.NotFound:
                continue  # removed between the list and the inspect
            except engine_errors as exc:
                raised.append(exc)
                entries[i] = _unreadable(summary, docker_error_reason(exc, where, timeout))
                continue
            if entries[i]["stats_source"] is None and source == "auto" and entries[i]["running"]:
                ask_engine(i)
        if futures:
            from concurrent.futures import wait as wait_futures

            wait_futures(futures.values(), timeout=max(0.0, deadline - time.monotonic()))
        for i, fut in futures.items():
            entry = entries.get(i)
            if entry is None or entry["limits"] is None:
                continue
            if not fut.done():
                entry["stats_error"] = f"engine stats: no answer within {timeout:g} s"
            elif (err := fut.exception()) is not None:
                if not isinstance(err, engine_errors):
                    raise err
                entry["stats_error"] = "engine stats: " + docker_error_reason(err, where, timeout)
            elif (parsed := fut.result()[0]) is None:
                entry["stats_error"] = "engine returned no stats (not running?)"
            else:
                entry.update(parsed, stats_source="docker", stats_error=None)
                entry["read_mono"] = fut.result()[1]
        # Built up piecewise above (description, then counters from either source);
        # what leaves this module is the documented shape.
        out = [cast("ContainerCounters", entries[i]) for i in sorted(entries)]
        if raised and len(raised) == len(summaries):
            # Every inspect failed: the engine went away after listing; say so once.
            return out, docker_error_reason(raised[0], where, timeout)
        return out, None
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if client is None:
            api.close()


def _host_memory() -> int:
    """Physical memory in bytes (MemTotal, what psutil's virtual_memory().total says)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):  # pragma: no cover - not Linux
        import psutil

        return psutil.virtual_memory().total


def _unreadable(summary: dict[str, Any], error: str) -> dict[str, Any]:
    """A listed container whose inspect or stats failed: what the list said, no stats."""
    labels = summary.get("Labels") or {}
    names = summary.get("Names") or []
    return {
        "id": summary["Id"],
        "name": names[0].lstrip("/") if names else None,
        "service": labels.get("com.docker.compose.service"),
        "project": labels.get("com.docker.compose.project"),
        "image": summary.get("Image"),
        "state": summary.get("State"),
        "health": None,
        "started_at": None,
        "finished_at": None,
        "exit_code": None,
        "restarting": None,
        "running": None,
        "restart_count": None,
        "oom_killed": None,
        "network_mode": None,
        "limits": None,
        **_NO_STATS,
        "stats_source": None,
        "stats_error": error,
        "read_mono": None,
        "oom_kill_count": None,
        "cgroup_version": None,
    }
