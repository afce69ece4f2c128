"""A ``vots-ops report`` sample in the Prometheus text format: a textfile for
node_exporter's textfile collector, or ``/metrics`` over HTTP.

Conventions (https://prometheus.io/docs/practices/naming/):

* Base units only: seconds, bytes, ratios 0-1 (never percents).
* Cumulative counters of the sample (CPU seconds, bytes, CFS periods, OOM kills,
  restarts) are exported as counters ending in ``_total``; Prometheus computes
  the rates (``rate(vots_container_cpu_seconds_total[5m])`` is cores used), so
  the report's own percentages are not exported a second time.
* Current values (memory, limits, load, filesystem use) are gauges. A limit that
  is not set is *absent* (not 0, not host memory), so ``working_set / limit``
  only yields series for limited containers.
* Every series carries ``host`` (the sampled hostname); container series also
  ``container`` (name) and ``service`` (compose service, empty if none). Label
  values are escaped by prometheus_client's writer, names are fixed here.

``prometheus_client`` is imported inside the functions, so importing this
module stays cheap for ``vots-ops --help``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ops.files import atomic_write
from ops.report.run import ReportRun

if TYPE_CHECKING:
    from ops.report.rates import Rates
    from ops.report.sample import Sample

log = logging.getLogger(__name__)

#: Metric families and what they mean, in exposition order: name -> (type, help).
#: Counters are named with their ``_total`` suffix, as they appear on the wire.
METRICS: dict[str, tuple[str, str]] = {
    # ------------------------------------------------------------- the run itself
    "vots_report_last_run_timestamp_seconds": (
        "gauge",
        "Unix time when this sample was taken.",
    ),
    "vots_report_collect_duration_seconds": (
        "gauge",
        "Wall time the sample took to collect.",
    ),
    "vots_report_docker_engine_up": (
        "gauge",
        "1 if the Docker engine answered, 0 if it could not be used (absent with --no-docker).",
    ),
    "vots_report_findings": (
        "gauge",
        "Open findings by kind (over-limit: memory >= 90% of its limit, throttled in "
        ">= 25% of CFS periods, OOM kills; restart: restarts; anomaly).",
    ),
    # ----------------------------------------------------------------------- host
    "vots_host_boot_time_seconds": ("gauge", "Unix time the host booted."),
    "vots_host_cpus": ("gauge", "Logical CPUs of the host."),
    "vots_host_cpu_seconds_total": (
        "counter",
        "CPU seconds of all cores by mode; busy + idle + iowait is all CPU time "
        "(busy includes steal).",
    ),
    "vots_host_cpu_steal_seconds_total": (
        "counter",
        "CPU seconds stolen by the hypervisor, all cores (part of busy).",
    ),
    "vots_host_load1": ("gauge", "1-minute load average."),
    "vots_host_load5": ("gauge", "5-minute load average."),
    "vots_host_load15": ("gauge", "15-minute load average."),
    "vots_host_memory_total_bytes": ("gauge", "Physical memory of the host."),
    "vots_host_memory_available_bytes": (
        "gauge",
        "Memory available to new work without swapping (MemAvailable).",
    ),
    "vots_host_memory_used_bytes": ("gauge", "Memory in use (psutil's used)."),
    "vots_host_swap_total_bytes": ("gauge", "Swap space of the host."),
    "vots_host_swap_used_bytes": ("gauge", "Swap space in use."),
    "vots_host_filesystem_size_bytes": ("gauge", "Size of a real filesystem."),
    "vots_host_filesystem_used_bytes": ("gauge", "Bytes used on a filesystem."),
    "vots_host_filesystem_free_bytes": (
        "gauge",
        "Bytes free on a filesystem for unprivileged users.",
    ),
    "vots_host_filesystem_used_ratio": (
        "gauge",
        "Used share of a filesystem, used / (used + free) as df's Use% (0-1).",
    ),
    "vots_host_disk_read_bytes_total": ("counter", "Bytes read from a whole disk."),
    "vots_host_disk_written_bytes_total": ("counter", "Bytes written to a whole disk."),
    "vots_host_disk_reads_completed_total": ("counter", "Reads completed by a whole disk."),
    "vots_host_disk_writes_completed_total": ("counter", "Writes completed by a whole disk."),
    "vots_host_disk_io_time_seconds_total": (
        "counter",
        "Seconds a whole disk spent doing I/O (iostat's %util is its rate).",
    ),
    "vots_host_network_receive_bytes_total": (
        "counter",
        "Bytes received by a physical network interface.",
    ),
    "vots_host_network_transmit_bytes_total": (
        "counter",
        "Bytes sent by a physical network interface.",
    ),
    "vots_host_network_receive_packets_total": (
        "counter",
        "Packets received by a physical network interface.",
    ),
    "vots_host_network_transmit_packets_total": (
        "counter",
        "Packets sent by a physical network interface.",
    ),
    "vots_host_network_errors_total": (
        "counter",
        "Receive and transmit errors of a physical network interface.",
    ),
    "vots_host_network_drops_total": (
        "counter",
        "Receive and transmit drops of a physical network interface.",
    ),
    "vots_host_processes": ("gauge", "Processes on the host."),
    # ----------------------------------------------------------------- containers
    "vots_container_info": (
        "info",
        "A running container: id, image, compose project, state and health.",
    ),
    "vots_container_start_time_seconds": ("gauge", "Unix time the container last started."),
    "vots_container_restarts_total": (
        "counter",
        "Restarts of the container by the engine (its restart count).",
    ),
    "vots_container_oom_kills_total": (
        "counter",
        "Processes the kernel OOM-killed in the container's current cgroup (a restart "
        "starts a new cgroup; see vots_container_last_exit_oom_killed).",
    ),
    "vots_container_last_exit_oom_killed": (
        "gauge",
        "1 if the container's last exit was an OOM kill (kept across restarts), else 0.",
    ),
    "vots_container_cpu_seconds_total": ("counter", "CPU seconds used by the container."),
    "vots_container_cpu_periods_total": (
        "counter",
        "CFS enforcement periods elapsed for the container.",
    ),
    "vots_container_cpu_throttled_periods_total": (
        "counter",
        "CFS periods in which the container was throttled.",
    ),
    "vots_container_cpu_throttled_seconds_total": (
        "counter",
        "Seconds the container was throttled by its CPU quota.",
    ),
    "vots_container_cpu_limit_cores": (
        "gauge",
        "CPU limit of the container in cores (--cpus, quota/period or cpuset size).",
    ),
    "vots_container_memory_working_set_bytes": (
        "gauge",
        "Memory of the container without inactive file cache (docker stats).",
    ),
    "vots_container_memory_limit_bytes": ("gauge", "Memory limit of the container."),
    "vots_container_memory_reservation_bytes": (
        "gauge",
        "Memory reservation (soft limit) of the container.",
    ),
    "vots_container_block_read_bytes_total": ("counter", "Bytes the container read from disks."),
    "vots_container_block_written_bytes_total": (
        "counter",
        "Bytes the container wrote to disks.",
    ),
    "vots_container_network_receive_bytes_total": (
        "counter",
        "Bytes received in the container's network namespace (loopback excluded).",
    ),
    "vots_container_network_transmit_bytes_total": (
        "counter",
        "Bytes sent from the container's network namespace (loopback excluded).",
    ),
    "vots_container_pids": ("gauge", "Processes and threads in the container."),
    "vots_container_pids_limit": ("gauge", "Pids limit of the container."),
}


def _text(value: Any) -> str:
    """A label value: any string (surrogate-escaped bytes of odd mountpoints kept
    readable instead of failing the UTF-8 encoding of the whole exposition)."""
    if value is None:
        return ""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def _start_time(started_at: Any) -> float | None:
    """Epoch seconds of the engine's RFC 3339 ``StartedAt`` (None if never started)."""
    if not isinstance(started_at, str) or started_at.startswith("0001-"):
        return None
    try:
        return datetime.fromisoformat(started_at).timestamp()
    except ValueError:
        return None


class _Families:
    """Metric families in METRICS order; a family only appears once it has a value."""

    def __init__(self) -> None:
        self._samples: dict[str, list[tuple[dict[str, str], Any]]] = {}

    def add(self, name: str, value: Any, **labels: Any) -> None:
        if value is None:
            return
        if name not in METRICS:
            raise KeyError(f"undeclared metric {name}")
        kind = METRICS[name][0]
        if kind != "info":
            value = float(value)
        self._samples.setdefault(name, []).append(({k: _text(v) for k, v in labels.items()}, value))

    def build(self) -> list[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            InfoMetricFamily,
        )

        out: list[Any] = []
        for name, (kind, doc) in METRICS.items():
            rows = self._samples.get(name)
            if not rows:
                continue
            labelnames = list(rows[0][0])
            family: Any
            if kind == "counter":
                family = CounterMetricFamily(name, doc, labels=labelnames)
            elif kind == "info":
                family = InfoMetricFamily(name.removesuffix("_info"), doc, labels=labelnames)
            else:
                family = GaugeMetricFamily(name, doc, labels=labelnames)
            for labels, value in rows:
                if list(labels) != labelnames:
                    raise ValueError(f"{name}: label names {list(labels)} != {labelnames}")
                family.add_metric([labels[k] for k in labelnames], value)
            out.append(family)
        return out


def _host(f: _Families, sample: Sample) -> None:
    h = sample["host"]
    host = h["hostname"]
    f.add("vots_host_boot_time_seconds", h.get("boot_time"), host=host)
    f.add("vots_host_cpus", h.get("cpu_count"), host=host)
    cpu = h.get("cpu") or {}
    for mode in ("busy", "idle", "iowait"):
        f.add("vots_host_cpu_seconds_total", cpu.get(mode), host=host, mode=mode)
    f.add("vots_host_cpu_steal_seconds_total", cpu.get("steal"), host=host)
    for name, value in zip(
        ("vots_host_load1", "vots_host_load5", "vots_host_load15"),
        h.get("load_avg") or [],
        strict=False,
    ):
        f.add(name, value, host=host)
    mem, swap = h.get("memory") or {}, h.get("swap") or {}
    f.add("vots_host_memory_total_bytes", mem.get("total"), host=host)
    f.add("vots_host_memory_available_bytes", mem.get("available"), host=host)
    f.add("vots_host_memory_used_bytes", mem.get("used"), host=host)
    f.add("vots_host_swap_total_bytes", swap.get("total"), host=host)
    f.add("vots_host_swap_used_bytes", swap.get("used"), host=host)
    for d in h.get("disks") or []:
        where = {"host": host, "mountpoint": d["mountpoint"], "device": d.get("device")}
        where["fstype"] = d.get("fstype")
        f.add("vots_host_filesystem_size_bytes", d.get("total"), **where)
        f.add("vots_host_filesystem_used_bytes", d.get("used"), **where)
        f.add("vots_host_filesystem_free_bytes", d.get("free"), **where)
        used, free = d.get("used"), d.get("free")
        if used is not None and free is not None and used + free > 0:
            f.add("vots_host_filesystem_used_ratio", used / (used + free), **where)
    for device, io in sorted(((h.get("disk_io") or {}).get("disks") or {}).items()):
        f.add("vots_host_disk_read_bytes_total", io.get("read_bytes"), host=host, device=device)
        f.add("vots_host_disk_written_bytes_total", io.get("write_bytes"), host=host, device=device)
        f.add(
            "vots_host_disk_reads_completed_total", io.get("read_count"), host=host, device=device
        )
        f.add(
            "vots_host_disk_writes_completed_total", io.get("write_count"), host=host, device=device
        )
        busy = io.get("busy_ms")
        f.add(
            "vots_host_disk_io_time_seconds_total",
            busy / 1000.0 if busy is not None else None,
            host=host,
            device=device,
        )
    for device, nic in sorted(((h.get("net_io") or {}).get("nics") or {}).items()):
        where = {"host": host, "device": device}
        f.add("vots_host_network_receive_bytes_total", nic.get("bytes_recv"), **where)
        f.add("vots_host_network_transmit_bytes_total", nic.get("bytes_sent"), **where)
        f.add("vots_host_network_receive_packets_total", nic.get("packets_recv"), **where)
        f.add("vots_host_network_transmit_packets_total", nic.get("packets_sent"), **where)
        f.add("vots_host_network_errors_total", nic.get("errors"), **where)
        f.add("vots_host_network_drops_total", nic.get("drops"), **where)
    f.add("vots_host_processes", h.get("process_count"), host=host)


def _containers(f: _Families, sample: Sample, rates: Rates) -> None:
    host = sample["host"]["hostname"]
    cpu_limits = {
        c["id"]: limit / 1000 if (limit := c["cpu_limit_millicores"]) else None
        for c in rates.get("containers") or []
    }
    for c in sample.get("containers") or []:
        who: dict[str, str | None] = {"host": host, "container": c.get("name") or c["id"][:12]}
        who["service"] = c.get("service")
        f.add(
            "vots_container_info",
            {
                "id": c["id"][:12],
                "image": _text(c.get("image")),
                "project": _text(c.get("project")),
                "state": _text(c.get("state")),
                "health": _text(c.get("health")),
            },
            **who,
        )
        f.add("vots_container_start_time_seconds", _start_time(c.get("started_at")), **who)
        f.add("vots_container_restarts_total", c.get("restart_count"), **who)
        f.add("vots_container_oom_kills_total", c.get("oom_kill_count"), **who)
        oomed = c.get("oom_killed")
        f.add("vots_container_last_exit_oom_killed", None if oomed is None else int(oomed), **who)
        cpu = c.get("cpu") or {}
        usage = cpu.get("usage_ns")
        f.add("vots_container_cpu_seconds_total", usage / 1e9 if usage is not None else None, **who)
        f.add("vots_container_cpu_periods_total", cpu.get("periods"), **who)
        f.add("vots_container_cpu_throttled_periods_total", cpu.get("throttled_periods"), **who)
        throttled = cpu.get("throttled_ns")
        f.add(
            "vots_container_cpu_throttled_seconds_total",
            throttled / 1e9 if throttled is not None else None,
            **who,
        )
        f.add("vots_container_cpu_limit_cores", cpu_limits.get(c["id"]), **who)
        limits = c.get("limits") or {}
        f.add(
            "vots_container_memory_working_set_bytes", (c.get("memory") or {}).get("usage"), **who
        )
        f.add("vots_container_memory_limit_bytes", limits.get("memory"), **who)
        f.add("vots_container_memory_reservation_bytes", limits.get("memory_reservation"), **who)
        blk, net = c.get("blkio") or {}, c.get("net") or {}
        f.add("vots_container_block_read_bytes_total", blk.get("read_bytes"), **who)
        f.add("vots_container_block_written_bytes_total", blk.get("write_bytes"), **who)
        f.add("vots_container_network_receive_bytes_total", net.get("rx_bytes"), **who)
        f.add("vots_container_network_transmit_bytes_total", net.get("tx_bytes"), **who)
        f.add("vots_container_pids", c.get("pids"), **who)
        f.add("vots_container_pids_limit", limits.get("pids"), **who)


def families(run: ReportRun) -> list[Any]:
    """The prometheus_client metric families of one run (for a custom collector)."""
    sample = run.sample
    host = sample["host"]["hostname"]
    f = _Families()
    f.add("vots_report_last_run_timestamp_seconds", sample.get("time"), host=host)
    f.add("vots_report_collect_duration_seconds", sample.get("collect_s"), host=host)
    if sample.get("docker"):
        f.add("vots_report_docker_engine_up", 0 if sample.get("docker_error") else 1, host=host)
    from ops.report.findings import KINDS

    kinds = set(KINDS) | {finding.kind for finding in run.findings}
    for kind in sorted(kinds):
        count = sum(1 for finding in run.findings if finding.kind == kind)
        f.add("vots_report_findings", count, host=host, kind=kind)
    _host(f, sample)
    _containers(f, sample, run.rates)
    return f.build()


class _Collector:
    def __init__(self, source: Callable[[], Iterable[Any]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Any]:
        yield from self._source()


def _registry(source: Callable[[], Iterable[Any]]) -> Any:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(source))
    return registry


def exposition(run: ReportRun) -> str:
    """The run in the Prometheus text format (0.0.4, what node_exporter's textfile
    collector reads): HELP and TYPE lines, escaped label values, no timestamps."""
    from prometheus_client import generate_latest

    fams = families(run)
    return generate_latest(_registry(lambda: fams)).decode("utf-8")


def write_textfile(run: ReportRun, path: Path | str) -> Path:
    """Write the exposition to ``path`` atomically (temp file in the same directory,
    then rename), so node_exporter never reads half a file.

    node_exporter's textfile collector reads only ``*.prom`` files; the temp file
    is a hidden ``.<name>.*.tmp`` it ignores.
    """
    path = Path(path)
    atomic_write(path, exposition(run))
    return path


__all__ = ["METRICS", "exposition", "families", "write_textfile"]
