"""Rates between two raw samples, computed the way sysstat computes them from sadc.

No rate is ever made up: across the first sample, a reboot, a gap or a counter
reset the figure is None and ``note`` says why.
"""

from __future__ import annotations

import math
from typing import Any, TypedDict

from ops.report.containers import _cpuset_count
from ops.report.sample import ContainerCounters, Sample
from ops.units import format_duration


class HostRates(TypedDict):
    """The VM's rates between two samples (None: no rate, see ``Rates.note``)."""

    cpu_pct: float | None
    iowait_pct: float | None
    steal_pct: float | None
    cpu_pct_per_core: list[float | None] | None
    disk_read_Bps: float | None
    disk_write_Bps: float | None
    disk_util_pct: float | None
    net_rx_Bps: float | None
    net_tx_Bps: float | None
    disks: dict[str, dict[str, float | None]] | None  # per disk: read_Bps, write_Bps, util_pct
    nics: dict[str, dict[str, float | None]] | None  # per NIC: rx_Bps, tx_Bps


class ContainerRates(TypedDict):
    """One container's rates, events since the last sample and current gauges."""

    id: str
    name: str | None
    service: str | None
    project: str | None
    state: str | None
    exit_code: int | None
    note: str | None
    cpu_limit_millicores: int | None
    memory_limit_bytes: int | None
    cpu_pct: float | None
    cpu_pct_of_limit: float | None
    throttled_ratio: float | None
    throttled_s_per_s: float | None
    blk_read_Bps: float | None
    blk_write_Bps: float | None
    net_rx_Bps: float | None
    net_tx_Bps: float | None
    mem_usage: int | None
    mem_pct: float | None
    mem_pct_of_limit: float | None
    restarts: int | None
    oom_kills: int | None


class Rates(TypedDict):
    """What ``rates`` gives: when, over what interval (or why none), host and containers."""

    time: float
    interval_s: float | None
    note: str | None
    host: HostRates
    containers: list[ContainerRates]


#: Longest interval between two samples that still yields rates (one hour).
MAX_INTERVAL = 3600.0
#: ``boot_time`` is derived from the wall clock; it may move by a second or two.
BOOT_TIME_TOLERANCE = 5.0


def same_boot(prev: Sample, cur: Sample) -> bool:
    """Whether two samples come from one boot: the kernel's boot_id where both have
    it (it changes exactly at a reboot), else btime within a few seconds (btime is
    derived from the wall clock, so a clock step moves it)."""
    pid, cid = prev["host"].get("boot_id"), cur["host"].get("boot_id")
    if pid and cid:
        return bool(pid == cid)
    return bool(abs(cur["host"]["boot_time"] - prev["host"]["boot_time"]) <= BOOT_TIME_TOLERANCE)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(data: Any, keys: tuple[str, ...], where: str) -> str | None:
    if not isinstance(data, dict):
        return f"{where} is not an object"
    for key in keys:
        value = data.get(key)
        if value is not None and not _is_number(value):
            return f"{where}.{key} is {value!r}, not a number"
    return None


_CPU_KEYS = ("total", "idle", "iowait", "steal", "busy")
_CONTAINER_CPU = ("usage_ns", "system_ns", "online_cpus", "periods", "throttled_periods")


def sample_problem(raw: Any) -> str | None:
    """Why a stored sample cannot serve as the previous one, or None if it can.

    Checks the shape and types of everything ``rates`` reads from it, so a row
    damaged in a way SQLite cannot see (a flipped byte that still parses, a
    string where a number belongs) is skipped with that reason instead of
    raising in the middle of a cron run.
    """
    if not isinstance(raw, dict):
        return "not an object"
    host = raw.get("host")
    if not isinstance(host, dict):
        return "host is missing"
    if not _is_number(raw.get("mono")):
        return f"mono is {raw.get('mono')!r}, not a number"
    if not _is_number(host.get("boot_time")):
        return f"host.boot_time is {host.get('boot_time')!r}, not a number"
    if host.get("boot_id") is not None and not isinstance(host["boot_id"], str):
        return "host.boot_id is not a string"
    cpu = host.get("cpu")
    if not isinstance(cpu, dict):
        return "host.cpu is not an object"
    if problem := _numbers(cpu, _CPU_KEYS, "host.cpu"):
        return problem
    if not _is_number(cpu.get("total")):
        return "host.cpu.total is missing"
    cores = host.get("cpu_per_core")
    if not isinstance(cores, list):
        return "host.cpu_per_core is not a list"
    for i, core in enumerate(cores):
        if problem := _numbers(core, _CPU_KEYS, f"host.cpu_per_core[{i}]"):
            return problem
    for section, devices in (("disk_io", "disks"), ("net_io", "nics")):
        part = host.get(section)
        if not isinstance(part, dict) or not isinstance(part.get(devices), dict):
            return f"host.{section}.{devices} is not an object"
        for name, counters in part[devices].items():
            if problem := _numbers(
                counters,
                tuple(counters) if isinstance(counters, dict) else (),
                f"host.{section}.{devices}.{name}",
            ):
                return problem
    containers = raw.get("containers", [])
    if not isinstance(containers, list):
        return "containers is not a list"
    for i, c in enumerate(containers):
        where = f"containers[{i}]"
        if not isinstance(c, dict) or not isinstance(c.get("id"), str):
            return f"{where} has no id"
        for key in ("restart_count", "oom_kill_count", "read_mono"):
            if c.get(key) is not None and not _is_number(c[key]):
                return f"{where}.{key} is {c[key]!r}, not a number"
        for key in ("started_at", "finished_at"):
            if c.get(key) is not None and not isinstance(c[key], str):
                return f"{where}.{key} is not a string"
        if c.get("cpu") is not None:
            if problem := _numbers(c["cpu"], _CONTAINER_CPU, f"{where}.cpu"):
                return problem
            if not _is_number(c["cpu"].get("usage_ns")):
                return f"{where}.cpu.usage_ns is missing"
        for key, fields in (
            ("blkio", ("read_bytes", "write_bytes")),
            ("net", ("rx_bytes", "tx_bytes")),
        ):
            if c.get(key) is not None and (problem := _numbers(c[key], fields, f"{where}.{key}")):
                return problem
    return None


def _interval(prev: Sample | None, cur: Sample, max_interval: float) -> tuple[float | None, str]:
    """Seconds between two samples, or why there is no usable interval."""
    if prev is None:
        return None, "first sample"
    if prev.get("schema") != cur.get("schema"):
        return None, "previous sample has another format"
    if not same_boot(prev, cur):
        return None, "host rebooted since the last sample"
    # Same boot: the monotonic clock is shared by all processes and immune to NTP steps.
    dt = cur["mono"] - prev["mono"]
    if dt <= 0:
        return None, "samples are not in time order"
    if dt > max_interval:
        return None, f"gap of {format_duration(dt)} since the last sample"
    if cur["host"]["cpu"]["total"] < prev["host"]["cpu"]["total"]:
        return None, "host counters went backwards (host rebooted?)"
    return dt, ""


def _pct(num: float, den: float) -> float | None:
    return round(100.0 * num / den, 2) if den > 0 else None


def _per_second(delta: float | None, dt: float | None) -> float | None:
    if delta is None or dt is None or dt <= 0 or delta < 0:
        return None
    return round(delta / dt, 2)


def _delta(cur: Any, prev: Any) -> Any:
    return None if cur is None or prev is None else cur - prev


def _cpu_rates(prev: dict[str, float], cur: dict[str, float]) -> dict[str, float | None]:
    total = cur["total"] - prev["total"]
    return {
        "busy": _pct(cur["busy"] - prev["busy"], total),
        "iowait": _pct(cur["iowait"] - prev["iowait"], total),
        "steal": _pct(cur["steal"] - prev["steal"], total),
    }


def _device_rates(
    prev: dict[str, dict[str, Any]], cur: dict[str, dict[str, Any]], keys: dict[str, str], dt: float
) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for name, now in cur.items():
        before = prev.get(name)
        if before is None:
            continue
        out[name] = {
            label: _per_second(_delta(now.get(key), before.get(key)), dt)
            for label, key in keys.items()
        }
    return out


def _host_rates(prev: Sample | None, cur: Sample, dt: float | None) -> HostRates:
    none: HostRates = {
        "cpu_pct": None,
        "iowait_pct": None,
        "steal_pct": None,
        "cpu_pct_per_core": None,
        "disk_read_Bps": None,
        "disk_write_Bps": None,
        "disk_util_pct": None,
        "net_rx_Bps": None,
        "net_tx_Bps": None,
        "disks": None,
        "nics": None,
    }
    if prev is None or dt is None:
        return none
    p, c = prev["host"], cur["host"]
    cpu = _cpu_rates(p["cpu"], c["cpu"])
    cores = None
    if len(p["cpu_per_core"]) == len(c["cpu_per_core"]):
        cores = [
            _cpu_rates(a, b)["busy"]
            for a, b in zip(p["cpu_per_core"], c["cpu_per_core"], strict=True)
        ]
    disks = _device_rates(
        p["disk_io"]["disks"],
        c["disk_io"]["disks"],
        {"read_Bps": "read_bytes", "write_Bps": "write_bytes", "busy_ms_per_s": "busy_ms"},
        dt,
    )
    for d in disks.values():
        busy = d.pop("busy_ms_per_s")
        d["util_pct"] = round(busy / 10.0, 2) if busy is not None else None  # ms/s -> %
    nics = _device_rates(
        p["net_io"]["nics"],
        c["net_io"]["nics"],
        {"rx_Bps": "bytes_recv", "tx_Bps": "bytes_sent"},
        dt,
    )

    def total(rows: dict[str, dict[str, Any]], key: str) -> float | None:
        values = [r[key] for r in rows.values()]
        return None if not values or None in values else round(sum(values), 2)

    utils = [d["util_pct"] for d in disks.values() if d["util_pct"] is not None]
    return {
        "cpu_pct": cpu["busy"],
        "iowait_pct": cpu["iowait"],
        "steal_pct": cpu["steal"],
        "cpu_pct_per_core": cores,
        "disk_read_Bps": total(disks, "read_Bps"),
        "disk_write_Bps": total(disks, "write_Bps"),
        "disk_util_pct": max(utils) if utils else None,
        "net_rx_Bps": total(nics, "rx_Bps"),
        "net_tx_Bps": total(nics, "tx_Bps"),
        "disks": disks,
        "nics": nics,
    }


def _cpu_limit(limits: dict[str, Any] | None) -> int | None:
    """The container's CPU limit in millicores: --cpus (or quota/period), or the
    size of its cpuset, whichever is smaller; None without either."""
    if not limits:
        return None
    cpus = limits.get("cpus")
    cpuset = _cpuset_count(limits.get("cpuset_cpus"))
    candidates = [x for x in (cpus, cpuset) if x]
    return round(min(candidates) * 1000) if candidates else None


_NEVER = (None, "", "0001-01-01T00:00:00Z")


def container_events(
    prev: ContainerCounters, cur: ContainerCounters
) -> tuple[int | None, int | None]:
    """(restarts, OOM kills) of one container between two samples of one boot.

    Restarts: the engine's ``RestartCount`` (its restart policy's count, which
    survives the restart), or one when the container exited and started again
    by hand (``docker restart`` does not count).

    OOM kills: the cgroup's ``oom_kill`` counter counts every process the kernel
    killed, but a restart makes a new cgroup counting from zero, and a container
    waiting out its restart delay has none. So: the counter's growth when the
    container kept its cgroup, else the new cgroup's count; plus one when the
    container exited since the last sample and the engine says that exit was an
    OOM kill (``State.OOMKilled``, kept across the restart). A lower bound: kills
    in a cgroup that died between two samples are gone with it.
    """
    restarted = prev.get("started_at") != cur.get("started_at")
    exited = cur.get("finished_at") not in _NEVER and prev.get("finished_at") != cur.get(
        "finished_at"
    )
    delta = _delta(cur.get("restart_count"), prev.get("restart_count"))
    restarts = delta if delta is not None and delta >= 0 else None
    if restarts == 0 and restarted and exited:
        restarts = 1
    if not restarted:
        counted = _delta(cur.get("oom_kill_count"), prev.get("oom_kill_count"))
        if counted is not None and counted < 0:
            counted = None
    else:
        counted = cur.get("oom_kill_count")
    by_engine = 1 if exited and cur.get("oom_killed") else 0
    if counted is None and not exited and cur.get("running", True):
        return restarts, None  # processes that may have been killed, and no counter
    # (Not running and no exit since: no processes, so none was killed.)
    return restarts, (counted or 0) + by_engine


def _container_rates(
    prev: ContainerCounters | None, cur: ContainerCounters, dt: float | None, note: str, boot: bool
) -> ContainerRates:
    mem = cur.get("memory") or {}
    usage = mem.get("usage")
    limits = cur.get("limits") or {}
    out: ContainerRates = {
        "id": cur["id"],
        "name": cur.get("name"),
        "service": cur.get("service"),
        "project": cur.get("project"),
        "state": cur.get("state"),
        "exit_code": cur.get("exit_code"),
        "note": None,
        "cpu_limit_millicores": _cpu_limit(limits),
        "memory_limit_bytes": limits.get("memory"),
        "cpu_pct": None,
        "cpu_pct_of_limit": None,
        "throttled_ratio": None,
        "throttled_s_per_s": None,
        "blk_read_Bps": None,
        "blk_write_Bps": None,
        "net_rx_Bps": None,
        "net_tx_Bps": None,
        # Gauges of the current sample: no previous one needed.
        "mem_usage": usage,
        "mem_pct": _pct(usage, mem["limit"]) if usage is not None and mem.get("limit") else None,
        "mem_pct_of_limit": (
            _pct(usage, limits["memory"]) if usage is not None and limits.get("memory") else None
        ),
        "restarts": None,
        "oom_kills": None,
    }
    if prev is not None and boot:
        # Events are counted across any gap of one boot: the engine's counters keep them.
        out["restarts"], out["oom_kills"] = container_events(prev, cur)
    if note:
        out["note"] = note
        return out
    if prev is None:
        out["note"] = "no previous sample of this container (new or recreated)"
        return out
    if prev.get("started_at") != cur.get("started_at"):
        out["note"] = "container restarted since the last sample"
        return out
    pc, cc = prev.get("cpu"), cur.get("cpu")
    if not pc or not cc:
        if not cur.get("running", True):
            out["note"] = f"not running ({cur.get('state') or 'unknown'})"
        else:
            out["note"] = "no stats in " + ("the previous sample" if not pc else "this sample")
        return out
    if cc["usage_ns"] < pc["usage_ns"]:
        out["note"] = "container counters went backwards (cgroup recreated)"
        return out
    read_then, read_now = prev.get("read_mono"), cur.get("read_mono")
    if read_then is not None and read_now is not None:
        dt = read_now - read_then
    d_usage = cc["usage_ns"] - pc["usage_ns"]
    d_system = _delta(cc.get("system_ns"), pc.get("system_ns"))
    online = cc.get("online_cpus")
    if d_system and d_system > 0 and online:
        # docker stats: share of all CPUs' time, scaled so 100% = one full core.
        cpu_pct = out["cpu_pct"] = round(d_usage / d_system * online * 100.0, 2)
        if limit := out["cpu_limit_millicores"]:
            out["cpu_pct_of_limit"] = round(cpu_pct * 1000 / limit, 2)
    d_periods = _delta(cc.get("periods"), pc.get("periods"))
    d_throttled = _delta(cc.get("throttled_periods"), pc.get("throttled_periods"))
    if d_periods and d_periods > 0 and d_throttled is not None and d_throttled >= 0:
        out["throttled_ratio"] = round(d_throttled / d_periods, 4)
    d_tns = _delta(cc.get("throttled_ns"), pc.get("throttled_ns"))
    out["throttled_s_per_s"] = _per_second(d_tns / 1e9 if d_tns is not None else None, dt)
    pb, cb = prev.get("blkio") or {}, cur.get("blkio") or {}
    out["blk_read_Bps"] = _per_second(_delta(cb.get("read_bytes"), pb.get("read_bytes")), dt)
    out["blk_write_Bps"] = _per_second(_delta(cb.get("write_bytes"), pb.get("write_bytes")), dt)
    pn, cn = prev.get("net") or {}, cur.get("net") or {}
    out["net_rx_Bps"] = _per_second(_delta(cn.get("rx_bytes"), pn.get("rx_bytes")), dt)
    out["net_tx_Bps"] = _per_second(_delta(cn.get("tx_bytes"), pn.get("tx_bytes")), dt)
    return out


def rates(prev: Sample | None, cur: Sample, *, max_interval: float = MAX_INTERVAL) -> Rates:
    """Rates between two raw samples, like sysstat computes from sadc's counters.

    Host: ``cpu_pct`` (busy = total - idle - iowait), ``iowait_pct``,
    ``steal_pct``, ``cpu_pct_per_core``, ``disk_read_Bps``/``disk_write_Bps``
    (whole disks), ``disk_util_pct`` (busiest disk, iostat's %util),
    ``net_rx_Bps``/``net_tx_Bps`` (physical NICs), and per device ``disks`` /
    ``nics``. Per container (matched by id): ``cpu_pct`` (docker stats: Δusage /
    Δsystem x online CPUs x 100, so 100 = one core), ``cpu_limit_millicores`` and
    ``cpu_pct_of_limit``, ``throttled_ratio`` (throttled / elapsed CFS periods),
    ``throttled_s_per_s``, ``blk_read_Bps``/``blk_write_Bps``,
    ``net_rx_Bps``/``net_tx_Bps``, ``restarts`` and ``oom_kills`` since the last
    sample (``container_events``; counted across gaps too, not across a reboot),
    the container's ``state``, ``exit_code``, ``memory_limit_bytes``, and
    the current gauges ``mem_usage``, ``mem_pct`` (of the limit
    the engine reports) and ``mem_pct_of_limit`` (of the configured limit).

    No rate is ever made up: with no previous sample, a reboot, a gap longer
    than ``max_interval``, or counters that went backwards, the rates are None
    and ``note`` says why (the same per container for a new or restarted one).
    Top-level keys: ``time``, ``interval_s``, ``note``, ``host``, ``containers``.
    """
    dt, note = _interval(prev, cur, max_interval)
    boot = prev is not None and prev.get("schema") == cur.get("schema") and same_boot(prev, cur)
    before = {c["id"]: c for c in prev.get("containers", [])} if prev else {}
    return {
        "time": cur["time"],
        "interval_s": round(dt, 3) if dt is not None else None,
        "note": note or None,
        "host": _host_rates(prev, cur, dt),
        "containers": [
            _container_rates(before.get(c["id"]), c, dt, note, boot)
            for c in cur.get("containers", [])
        ],
    }


__all__ = ["MAX_INTERVAL", "ContainerRates", "HostRates", "Rates", "rates"]
