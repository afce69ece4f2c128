"""``report serve``: ``/metrics`` caches and stops cleanly (thread, SIGTERM,
Ctrl-C), and a real Prometheus on loopback scrapes it and answers queries with the
sampled values."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from ops.proc import free_port
from ops.report.prom import exposition
from ops.report.serve import MetricsServer, serve
from tests.support.processes import stop_process
from tests.support.prom import assert_lint_clean, get, parse, wait_for

REPO = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
Labels = frozenset[tuple[str, str]]


# ------------------------------------------------------------------ HTTP server


def test_server_caches_within_interval_then_resamples(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    with MetricsServer(0, interval=1.0, docker=False, db=db) as server:
        assert server.samples_taken == 1, "first sample is taken before serving"
        status, ctype, first = get(server.url)
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
        assert_lint_clean(first)
        _, _, again = get(server.url)
        stamp = "vots_report_last_run_timestamp_seconds"
        assert parse(first)[stamp] == parse(again)[stamp]
        assert server.samples_taken == 1
        time.sleep(1.1)
        _, _, later = get(server.url)
        assert parse(later)[stamp] != parse(first)[stamp]
        assert server.samples_taken == 2

        # Prometheus asks for OpenMetrics first: served as such, ending in # EOF.
        status, ctype, om = get(
            server.url, accept="application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
        )
        assert status == 200 and ctype.startswith("application/openmetrics-text")
        assert om.endswith("# EOF\n")
        assert "vots_host_cpu_seconds_total{" in om

        assert get(server.url.removesuffix("metrics"))[0] == 200
        assert get(server.url.removesuffix("metrics") + "nope")[0] == 404
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
        wait_for(lambda: ready, "serve() to be ready")
        status, _, text = get(f"http://127.0.0.1:{port}/metrics")
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
        "from ops.report.serve import serve\n"
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
        assert get(url)[0] == 200
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
        up = wait_for(lambda: _query(base, 'up{job="vots-ops"} == 1'), "the target to be up", 20)
    except AssertionError:
        raise AssertionError((tmp_path / "prometheus.log").read_text()[-3000:]) from None
    assert up[0]["metric"]["instance"] == f"127.0.0.1:{server.port}"
    total = wait_for(lambda: _query(base, "vots_host_memory_total_bytes"), "the memory series")
    assert len(total) == 1
    assert float(total[0]["value"][1]) == psutil.virtual_memory().total
    assert total[0]["metric"]["host"] == socket.gethostname()

    # Every family the exposition carries reached the TSDB under the same name.
    exposed = set(parse(exposition(server.current())))
    stored = _query(base, 'group by (__name__) ({__name__=~"vots_.+"})')
    assert {r["metric"]["__name__"] for r in stored} == exposed

    # The counters are usable as counters: two scrapes give a CPU rate in cores.
    busy = wait_for(
        lambda: _query(base, 'sum(rate(vots_host_cpu_seconds_total{job="vots-ops"}[10s]))'),
        "a CPU rate",
    )
    assert 0 < float(busy[0]["value"][1]) <= psutil.cpu_count() * 1.5
    assert time.monotonic() - started < 25
