"""Rates between two raw samples, computed the way sysstat computes them from sadc.

No rate is ever made up: across the first sample, a reboot, a gap or a counter
reset the figure is None and ``note`` says why.
"""

from __future__ import annotations

from typing import Any

from ops.report.containers import _cpuset_count
from ops.report.sample import Sample

#: Longest interval between two samples that still yields rates (one hour).
MAX_INTERVAL = 3600.0
#: ``boot_time`` is derived from the wall clock; it may move by a second or two.
BOOT_TIME_TOLERANCE = 5.0


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def _interval(prev: Sample | None, cur: Sample, max_interval: float) -> tuple[float | None, str]:
    """Seconds between two samples, or why there is no usable interval."""
    if prev is None:
        return None, "first sample"
    if prev.get("schema") != cur.get("schema"):
        return None, "previous sample has another format"
    pb, cb = prev["host"]["boot_time"], cur["host"]["boot_time"]
    if abs(cb - pb) > BOOT_TIME_TOLERANCE:
        return None, "host rebooted since the last sample"
    # Same boot: the monotonic clock is shared by all processes and immune to NTP steps.
    dt = cur["mono"] - prev["mono"]
    if dt <= 0:
        return None, "samples are not in time order"
    if dt > max_interval:
        return None, f"gap of {_human(dt)} since the last sample"
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


def _host_rates(prev: Sample | None, cur: Sample, dt: float | None) -> dict[str, Any]:
    none: dict[str, Any] = {
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


def _cpu_limit(limits: dict[str, Any] | None) -> float | None:
    if not limits:
        return None
    cpus = limits.get("cpus")
    cpuset = _cpuset_count(limits.get("cpuset_cpus"))
    candidates = [x for x in (cpus, cpuset) if x]
    return min(candidates) if candidates else None


def _container_rates(
    prev: dict[str, Any] | None, cur: dict[str, Any], dt: float | None, note: str
) -> dict[str, Any]:
    mem = cur.get("memory") or {}
    usage = mem.get("usage")
    limits = cur.get("limits") or {}
    out: dict[str, Any] = {
        "id": cur["id"],
        "name": cur.get("name"),
        "service": cur.get("service"),
        "note": None,
        "cpu_limit": _cpu_limit(limits),
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
    if note:
        out["note"] = note
        return out
    if prev is None:
        out["note"] = "no previous sample of this container (new or recreated)"
        return out
    out["restarts"] = _delta(cur.get("restart_count"), prev.get("restart_count"))
    if prev.get("started_at") != cur.get("started_at"):
        out["note"] = "container restarted since the last sample"
        return out
    out["oom_kills"] = _delta(cur.get("oom_kill_count"), prev.get("oom_kill_count"))
    pc, cc = prev.get("cpu"), cur.get("cpu")
    if not pc or not cc:
        out["note"] = "no stats in " + ("the previous sample" if not pc else "this sample")
        return out
    if cc["usage_ns"] < pc["usage_ns"]:
        out["note"] = "container counters went backwards (cgroup recreated)"
        return out
    if prev.get("read_mono") is not None and cur.get("read_mono") is not None:
        dt = cur["read_mono"] - prev["read_mono"]
    d_usage = cc["usage_ns"] - pc["usage_ns"]
    d_system = _delta(cc.get("system_ns"), pc.get("system_ns"))
    online = cc.get("online_cpus")
    if d_system and d_system > 0 and online:
        # docker stats: share of all CPUs' time, scaled so 100% = one full core.
        out["cpu_pct"] = round(d_usage / d_system * online * 100.0, 2)
        if out["cpu_limit"]:
            out["cpu_pct_of_limit"] = round(out["cpu_pct"] / out["cpu_limit"], 2)
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


def rates(
    prev: Sample | None, cur: Sample, *, max_interval: float = MAX_INTERVAL
) -> dict[str, Any]:
    """Rates between two raw samples, like sysstat computes from sadc's counters.

    Host: ``cpu_pct`` (busy = total - idle - iowait), ``iowait_pct``,
    ``steal_pct``, ``cpu_pct_per_core``, ``disk_read_Bps``/``disk_write_Bps``
    (whole disks), ``disk_util_pct`` (busiest disk, iostat's %util),
    ``net_rx_Bps``/``net_tx_Bps`` (physical NICs), and per device ``disks`` /
    ``nics``. Per container (matched by id): ``cpu_pct`` (docker stats: Δusage /
    Δsystem x online CPUs x 100, so 100 = one core), ``cpu_limit`` and
    ``cpu_pct_of_limit``, ``throttled_ratio`` (throttled / elapsed CFS periods),
    ``throttled_s_per_s``, ``blk_read_Bps``/``blk_write_Bps``,
    ``net_rx_Bps``/``net_tx_Bps``, ``restarts`` and ``oom_kills`` during the
    interval, and the current gauges ``mem_usage``, ``mem_pct`` (of the limit
    the engine reports) and ``mem_pct_of_limit`` (of the configured limit).

    No rate is ever made up: with no previous sample, a reboot, a gap longer
    than ``max_interval``, or counters that went backwards, the rates are None
    and ``note`` says why (the same per container for a new or restarted one).
    Top-level keys: ``time``, ``interval_s``, ``note``, ``host``, ``containers``.
    """
    dt, note = _interval(prev, cur, max_interval)
    before = {c["id"]: c for c in prev.get("containers", [])} if prev else {}
    return {
        "time": cur["time"],
        "interval_s": round(dt, 3) if dt is not None else None,
        "note": note or None,
        "host": _host_rates(prev, cur, dt),
        "containers": [
            _container_rates(before.get(c["id"]), c, dt, note) for c in cur.get("containers", [])
        ],
    }


__all__ = ["MAX_INTERVAL", "rates"]
