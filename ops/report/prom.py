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

import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from ops.files import atomic_write
from ops.report.run import ReportRun, take_sample

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
        "Findings of this run by kind (over-limit: memory >= 90% of its limit, "
        "throttled in >= 25% of CFS periods, or an OOM kill since the last sample).",
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
        "Processes the kernel OOM-killed in the container's cgroup.",
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


def _host(f: _Families, sample: dict[str, Any]) -> None:
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


def _containers(f: _Families, sample: dict[str, Any], rates: dict[str, Any]) -> None:
    host = sample["host"]["hostname"]
    cpu_limits = {c["id"]: c.get("cpu_limit") for c in rates.get("containers") or []}
    for c in sample.get("containers") or []:
        who = {"host": host, "container": c.get("name") or c["id"][:12]}
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
    kinds = {"over-limit"} | {finding.kind for finding in run.findings}
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


# ------------------------------------------------------------------ HTTP server


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the log."""


def _server_class(host: str, port: int) -> tuple[type[WSGIServer], str]:
    """A threading WSGI server of the address family ``host`` resolves to."""
    from socketserver import ThreadingMixIn

    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        allow_reuse_address = True
        address_family = family

    return Server, str(sockaddr[0])


_INDEX = b'<html><body><a href="/metrics">/metrics</a></body></html>\n'


class MetricsServer:
    """``/metrics`` over HTTP from a background thread, sampled at most every
    ``interval`` seconds (on scrape, cached); the first sample is taken by
    ``start()``, so the first scrape already has data.

    With ``db`` each new sample is also stored in that history (as a cron run
    would); without it, rates and findings come from the previous in-memory
    sample. ``port=0`` binds a free port (see ``port``). A failed re-sample is
    logged and the last good sample is served (its
    ``vots_report_last_run_timestamp_seconds`` shows its age).

    Use ``with MetricsServer(...) as server:`` or ``start()``/``stop()``.
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        interval: float = 15.0,
        db: Path | str | None = None,
        docker: bool = True,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self.host = host
        self.interval = float(interval)
        self.db = Path(db) if db is not None else None
        self.docker = docker
        self._requested_port = port
        self._lock = threading.Lock()
        self._run: ReportRun | None = None
        self._taken = 0.0
        self._prev: dict[str, Any] | None = None
        self._httpd: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.samples_taken = 0

    # -- sampling
    def _take(self) -> ReportRun:
        if self.db is not None:
            return take_sample(self.db, docker=self.docker)
        from ops.report import collect
        from ops.report.run import _findings

        cur = collect.sample(docker=self.docker)
        rates = collect.rates(self._prev, cur)
        self._prev = cur
        return ReportRun(cur, rates, None, None, _findings(rates))

    def current(self) -> ReportRun:
        """The cached run, re-sampled first if it is ``interval`` seconds old."""
        with self._lock:
            now = time.monotonic()
            if self._run is None or now - self._taken >= self.interval:
                try:
                    self._run = self._take()
                    self.samples_taken += 1
                except Exception:
                    if self._run is None:
                        raise
                    log.exception("re-sampling failed; serving the previous sample")
                self._taken = now
            return self._run

    # -- HTTP
    def _app(self) -> Callable[..., Iterable[bytes]]:
        from prometheus_client import make_wsgi_app

        metrics = make_wsgi_app(_registry(lambda: families(self.current())))

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO") or "/"
            if path == "/metrics":
                return metrics(environ, start_response)
            if path == "/":
                start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
                return [_INDEX]
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"not found; metrics are at /metrics\n"]

        return app

    def start(self) -> MetricsServer:
        if self._httpd is not None:
            raise RuntimeError("already started")
        self.current()
        cls, addr = _server_class(self.host, self._requested_port)
        httpd = cls((addr, self._requested_port), _QuietHandler)
        httpd.set_app(self._app())
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="vots-ops-metrics",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self._httpd.server_address[0] if self._httpd else self.host
        host = f"[{host}]" if ":" in str(host) else str(host)
        return f"http://{host}:{self.port}/metrics"

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    port: int,
    host: str = "127.0.0.1",
    interval: float = 15.0,
    db: Path | str | None = None,
    docker: bool = True,
    *,
    stop: threading.Event | None = None,
    on_ready: Callable[[MetricsServer], None] | None = None,
) -> None:
    """Serve ``/metrics`` until SIGTERM, Ctrl-C (SIGINT) or ``stop`` is set.

    Blocks. ``on_ready(server)`` is called once the port is bound (the CLI can
    print ``server.url``). SIGTERM is handled only when called from the main
    thread (where Python allows signal handlers); from another thread, set
    ``stop`` instead, or use ``MetricsServer`` directly.
    """
    done = stop if stop is not None else threading.Event()
    server = MetricsServer(port, host, interval=interval, db=db, docker=docker)
    previous: Any = None
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: done.set())
    try:
        server.start()
        if on_ready is not None:
            on_ready(server)
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if in_main and previous is not None:
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signal.SIGTERM, previous)


__all__ = ["METRICS", "MetricsServer", "exposition", "families", "serve", "write_textfile"]
