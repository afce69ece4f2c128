"""Prometheus output of ``vots-ops report``: promtool lints the exposition, the
textfile is replaced atomically under a concurrent reader, ``/metrics`` caches and
stops cleanly (thread, SIGTERM, Ctrl-C), a real Prometheus on loopback scrapes it
and answers queries with the sampled values, and a real container under limits
yields the container families. Nothing is mocked; only a copy of a real sample is
edited to carry hostile label values."""

from __future__ import annotations

import copy
import json
import math
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from ops.proc import free_port
from ops.report.prom import METRICS, MetricsServer, exposition, serve, write_textfile
from ops.report.run import ReportRun, take_sample
from tests.support.docker import ok, run
from tests.support.images import busybox_image
from tests.support.processes import stop_process

REPO = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
Labels = frozenset[tuple[str, str]]


# ---------------------------------------------------------------------- helpers


def _promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool is not installed (apt-get install prometheus)"
    return subprocess.run(
        [exe, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )


def _assert_lint_clean(text: str) -> None:
    proc = _promtool_check(text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "" and proc.stderr.strip() == "", proc.stdout + proc.stderr


def _parse(text: str) -> dict[str, dict[Labels, float]]:
    """sample name -> {labels: value}, through prometheus_client's own text parser."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = frozenset(s.labels.items())
            assert key not in out.setdefault(s.name, {}), f"duplicate series {s.name}{s.labels}"
            out[s.name][key] = s.value
    return out


def _one(series: dict[Labels, float], **want: str) -> float:
    found = [v for k, v in series.items() if set(want.items()) <= set(k)]
    assert len(found) == 1, (want, series)
    return found[0]


def _types(text: str) -> dict[str, str]:
    return {
        line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE ")
    }


def _get(url: str, accept: str | None = None) -> tuple[int, str, str]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def _wait_for(check: Any, what: str, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def host_run() -> ReportRun:
    return take_sample(None, docker=False)


# ------------------------------------------------------------------- exposition


def test_importing_the_module_loads_no_heavy_dependency() -> None:
    code = (
        "import sys, ops.report.prom\n"
        "heavy = {'prometheus_client', 'docker', 'psutil', 'requests'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


def test_promtool_accepts_the_exposition_without_lint_problems(host_run: ReportRun) -> None:
    text = exposition(host_run)
    _assert_lint_clean(text)
    types = _types(text)
    helps = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")}
    assert set(types) == helps, "every family has HELP and TYPE"
    assert set(types) <= set(METRICS)
    for name, kind in types.items():
        declared = METRICS[name][0]
        assert kind == ("gauge" if declared == "info" else declared), name
        assert name.endswith("_total") == (kind == "counter"), name
        assert "percent" not in name and "pct" not in name, name
    # Every sample line is a declared family (counters keep their _total on the wire).
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert line.split("{")[0].split(" ")[0] in types, line
    for expected in (
        "vots_report_last_run_timestamp_seconds",
        "vots_report_collect_duration_seconds",
        "vots_report_findings",
        "vots_host_cpu_seconds_total",
        "vots_host_memory_total_bytes",
        "vots_host_memory_available_bytes",
        "vots_host_load1",
        "vots_host_processes",
    ):
        assert expected in types, expected
    # --no-docker: no engine verdict, no container families.
    assert "vots_report_docker_engine_up" not in types
    assert not any(name.startswith("vots_container_") for name in types)


def test_values_are_in_base_units_and_match_the_sample(host_run: ReportRun) -> None:
    h = host_run.sample["host"]
    got = _parse(exposition(host_run))
    host = h["hostname"]
    assert _one(got["vots_host_memory_total_bytes"], host=host) == psutil.virtual_memory().total
    assert _one(got["vots_host_memory_available_bytes"], host=host) == h["memory"]["available"]
    assert _one(got["vots_host_load1"], host=host) == h["load_avg"][0]
    assert _one(got["vots_host_cpus"], host=host) == psutil.cpu_count()
    stamp = _one(got["vots_report_last_run_timestamp_seconds"], host=host)
    assert stamp == host_run.sample["time"] and abs(stamp - time.time()) < 60
    assert 0 < _one(got["vots_report_collect_duration_seconds"], host=host) < 10
    assert _one(got["vots_report_findings"], host=host, kind="over-limit") == 0
    cpu = got["vots_host_cpu_seconds_total"]
    modes = {dict(k)["mode"]: v for k, v in cpu.items()}
    assert set(modes) == {"busy", "idle", "iowait"}
    assert math.isclose(sum(modes.values()), h["cpu"]["total"], abs_tol=0.05)
    for disk in h["disks"]:
        ratio = _one(got["vots_host_filesystem_used_ratio"], mountpoint=disk["mountpoint"])
        assert 0.0 <= ratio <= 1.0
        assert abs(ratio - disk["percent"] / 100.0) < 0.001  # psutil rounds to 0.1 %
        size = _one(got["vots_host_filesystem_size_bytes"], mountpoint=disk["mountpoint"])
        assert size == disk["total"]
    for nic, io in h["net_io"]["nics"].items():
        rx = _one(got["vots_host_network_receive_bytes_total"], device=nic)
        assert rx == io["bytes_recv"]
    for name, io in h["disk_io"]["disks"].items():
        assert _one(got["vots_host_disk_read_bytes_total"], device=name) == io["read_bytes"]
        if io["busy_ms"] is not None:
            busy = _one(got["vots_host_disk_io_time_seconds_total"], device=name)
            assert math.isclose(busy, io["busy_ms"] / 1000.0)


def test_hostile_label_values_are_escaped(host_run: ReportRun) -> None:
    sample = copy.deepcopy(host_run.sample)
    hostname = 'vm "quoted" back\\slash\nnew line é'
    sample["host"]["hostname"] = hostname
    mount = '/mnt/we"ird\\dir\nx'
    sample["host"]["disks"] = [
        {
            "mountpoint": mount,
            "device": "/dev/fake0",
            "fstype": "ext4",
            "total": 1000,
            "used": 250,
            "free": 750,
            "percent": 25.0,
        },
        {  # an undecodable byte from the kernel (surrogate-escaped by Python)
            "mountpoint": "/mnt/\udcff",
            "device": "/dev/fake1",
            "fstype": "ext4",
            "total": 10,
            "used": 0,
            "free": 10,
            "percent": 0.0,
        },
    ]
    edited = ReportRun(sample, host_run.rates, None, None, [])
    text = exposition(edited)
    _assert_lint_clean(text)
    got = _parse(text)
    assert _one(got["vots_host_load1"], host=hostname) == sample["host"]["load_avg"][0]
    assert _one(got["vots_host_filesystem_used_ratio"], mountpoint=mount, host=hostname) == 0.25
    assert _one(got["vots_host_filesystem_free_bytes"], mountpoint="/mnt/\\udcff") == 10


# --------------------------------------------------------------------- textfile


def test_textfile_is_replaced_atomically(tmp_path: Path, host_run: ReportRun) -> None:
    target = tmp_path / "textfile" / "vots_ops.prom"
    small = exposition(host_run)
    bigger_sample = copy.deepcopy(host_run.sample)
    bigger_sample["host"]["disks"] = [
        {
            "mountpoint": f"/srv/d{i}",
            "device": f"/dev/x{i}",
            "fstype": "xfs",
            "total": 10**12,
            "used": i,
            "free": 10**12 - i,
            "percent": 0.0,
        }
        for i in range(300)
    ]
    bigger_run = ReportRun(bigger_sample, host_run.rates, None, None, [])
    big = exposition(bigger_run)
    assert len(big) > 50_000 > len(small)

    assert write_textfile(host_run, target) == target
    assert target.read_text() == small
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # node_exporter may run as another user

    seen: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.append(target.read_text())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(60):
            write_textfile(bigger_run if i % 2 else host_run, target)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert len(seen) > 5
    torn = [len(s) for s in seen if s not in (small, big)]
    assert not torn, f"{len(torn)} of {len(seen)} reads saw a partial file: {torn[:5]}"
    assert sorted(p.name for p in target.parent.iterdir()) == ["vots_ops.prom"], "temp left"
    _assert_lint_clean(target.read_text())


# ------------------------------------------------------------------ HTTP server


def test_server_caches_within_interval_then_resamples(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    with MetricsServer(0, interval=1.0, docker=False, db=db) as server:
        assert server.samples_taken == 1, "first sample is taken before serving"
        status, ctype, first = _get(server.url)
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
        _assert_lint_clean(first)
        _, _, again = _get(server.url)
        stamp = "vots_report_last_run_timestamp_seconds"
        assert _parse(first)[stamp] == _parse(again)[stamp]
        assert server.samples_taken == 1
        time.sleep(1.1)
        _, _, later = _get(server.url)
        assert _parse(later)[stamp] != _parse(first)[stamp]
        assert server.samples_taken == 2

        # Prometheus asks for OpenMetrics first: served as such, ending in # EOF.
        status, ctype, om = _get(
            server.url, accept="application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
        )
        assert status == 200 and ctype.startswith("application/openmetrics-text")
        assert om.endswith("# EOF\n")
        assert "vots_host_cpu_seconds_total{" in om

        assert _get(server.url.removesuffix("metrics"))[0] == 200
        assert _get(server.url.removesuffix("metrics") + "nope")[0] == 404
        port = server.port
    with sqlite3.connect(db) as conn:  # with a db, every new sample is stored
        assert conn.execute("select count(*) from samples").fetchone()[0] == 2
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_serve_in_a_thread_stops_on_its_event() -> None:
    stop = threading.Event()
    ready: list[MetricsServer] = []
    port = free_port()
    thread = threading.Thread(
        target=serve,
        kwargs={"port": port, "docker": False, "stop": stop, "on_ready": ready.append},
    )
    thread.start()
    try:
        _wait_for(lambda: ready, "serve() to be ready")
        status, _, text = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "vots_host_memory_total_bytes" in text
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stops_cleanly_on_sigterm_and_ctrl_c(signum: int) -> None:
    code = (
        "import sys\n"
        "from ops.report.prom import serve\n"
        "serve(int(sys.argv[1]), docker=False,\n"
        "      on_ready=lambda s: print(s.url, flush=True))\n"
        "print('stopped', flush=True)\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url == f"http://127.0.0.1:{port}/metrics", proc.stderr.read() if proc.stderr else ""
        assert _get(url)[0] == 200
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert out.strip() == "stopped"
        assert "Traceback" not in err
    finally:
        stop_process(proc)


# ------------------------------------------------------------- real Prometheus


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.load(resp)
    except (urllib.error.URLError, ConnectionError):
        return []
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, MetricsServer]]:
    """``serve``'s server on a free loopback port, scraped every second by a real
    Prometheus on another; both always stopped."""
    exe = shutil.which("prometheus")
    assert exe, "prometheus is not installed (apt-get install prometheus)"
    server = MetricsServer(0, interval=1.0, docker=False).start()
    web = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: vots-ops\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{server.port}']\n"
    )
    log = (tmp_path / "prometheus.log").open("w")
    proc: subprocess.Popen[bytes] | None = None
    try:
        proc = subprocess.Popen(
            [
                exe,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{web}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
        yield f"http://127.0.0.1:{web}", server
    finally:
        stop_process(proc)
        log.close()
        server.stop()


def test_real_prometheus_scrapes_and_queries_the_values_back(
    prometheus: tuple[str, MetricsServer], tmp_path: Path
) -> None:
    base, server = prometheus
    started = time.monotonic()
    try:
        up = _wait_for(lambda: _query(base, 'up{job="vots-ops"} == 1'), "the target to be up", 20)
    except AssertionError:
        raise AssertionError((tmp_path / "prometheus.log").read_text()[-3000:]) from None
    assert up[0]["metric"]["instance"] == f"127.0.0.1:{server.port}"
    total = _wait_for(lambda: _query(base, "vots_host_memory_total_bytes"), "the memory series")
    assert len(total) == 1
    assert float(total[0]["value"][1]) == psutil.virtual_memory().total
    assert total[0]["metric"]["host"] == socket.gethostname()

    # Every family the exposition carries reached the TSDB under the same name.
    exposed = set(_parse(exposition(server.current())))
    stored = _query(base, 'group by (__name__) ({__name__=~"vots_.+"})')
    assert {r["metric"]["__name__"] for r in stored} == exposed

    # The counters are usable as counters: two scrapes give a CPU rate in cores.
    busy = _wait_for(
        lambda: _query(base, 'sum(rate(vots_host_cpu_seconds_total{job="vots-ops"}[10s]))'),
        "a CPU rate",
    )
    assert 0 < float(busy[0]["value"][1]) <= psutil.cpu_count() * 1.5
    assert time.monotonic() - started < 25


# ------------------------------------------------------------------ containers


@pytest.fixture
def limited_container() -> Iterator[str]:
    """One busybox ``sleep 60`` under --cpus 0.5 --memory 64m, labelled with a compose
    service name that needs escaping; always removed."""
    docker = shutil.which("docker")
    assert docker, "docker CLI not installed"
    image = busybox_image()
    name = f"vots-prom-{uuid.uuid4().hex[:10]}"
    try:
        ok(
            [
                docker, "run", "-d", "--name", name,
                "--cpus", "0.5", "--memory", "64m",
                "--label", 'com.docker.compose.service=we"ird\\svc',
                "--label", "com.docker.compose.project=vots-prom-test",
                image, "sleep", "60",
            ]
        )  # fmt: skip
        yield name
    finally:
        run([docker, "rm", "-f", "-v", name])


@pytest.mark.docker
def test_container_families_from_a_real_container(limited_container: str) -> None:
    name = limited_container
    sample_run = take_sample(None, docker=True)
    assert sample_run.sample["docker_error"] is None
    entry = next(c for c in sample_run.sample["containers"] if c["name"] == name)
    text = exposition(sample_run)
    _assert_lint_clean(text)
    got = _parse(text)
    host = socket.gethostname()
    assert _one(got["vots_report_docker_engine_up"], host=host) == 1

    def value(metric: str) -> float:
        return _one(got[metric], container=name)

    assert value("vots_container_memory_limit_bytes") == 64 * MiB
    assert value("vots_container_cpu_limit_cores") == 0.5
    assert 0 < value("vots_container_memory_working_set_bytes") < 64 * MiB
    assert value("vots_container_cpu_seconds_total") == entry["cpu"]["usage_ns"] / 1e9
    assert value("vots_container_cpu_throttled_periods_total") >= 0
    assert value("vots_container_cpu_periods_total") >= value(
        "vots_container_cpu_throttled_periods_total"
    )
    assert value("vots_container_oom_kills_total") == 0
    assert value("vots_container_restarts_total") == 0
    assert value("vots_container_pids") >= 1
    assert abs(value("vots_container_start_time_seconds") - time.time()) < 120
    info = _one(got["vots_container_info"], container=name)
    assert info == 1
    (labels,) = [dict(k) for k in got["vots_container_info"] if ("container", name) in k]
    assert labels["service"] == 'we"ird\\svc'
    assert labels["project"] == "vots-prom-test"
    assert labels["host"] == host
    assert labels["id"] == entry["id"][:12]
    assert labels["image"] == busybox_image()
    assert labels["state"] == "running"
    # No limit set: the family has no series for that container (not 0, not host memory).
    unlimited = [
        c["name"] for c in sample_run.sample["containers"] if not (c["limits"] or {}).get("memory")
    ]
    limited = {dict(k)["container"] for k in got["vots_container_memory_limit_bytes"]}
    assert not limited & set(unlimited)
    assert sample_run.db is None
