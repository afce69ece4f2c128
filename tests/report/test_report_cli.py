"""`vots-ops report` as cron runs it: the installed command, a real history file,
real containers on the local engine."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.images import busybox_image

EXE = shutil.which("vots-ops", path=str(Path(sys.executable).parent)) or "vots-ops"
ENV = {**os.environ, "NO_COLOR": "1", "COLUMNS": "160"}


def vots(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=env or ENV, timeout=120)


def test_first_run_says_so_then_rates_come_from_history(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    first = vots("report", "--db", str(db), "--no-docker", "--format", "json")
    assert first.returncode == 0, first.stderr
    one = json.loads(first.stdout)
    assert one["note"] == "first sample"
    assert one["host"]["rates"]["cpu_pct"] is None
    second = json.loads(vots("report", "--db", str(db), "--no-docker", "--format", "json").stdout)
    assert second["note"] is None
    assert 0 <= second["host"]["rates"]["cpu_pct"] <= 100
    assert second["interval_s"] > 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from samples").fetchone()[0] == 2
        assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_quiet_cron_runs_print_nothing_and_lose_no_rows(tmp_path: Path) -> None:
    """Twenty overlapping cron runs on one history file."""
    db = tmp_path / "h.sqlite3"
    procs = [
        subprocess.Popen(
            [EXE, "report", "--quiet", "--no-docker", "--db", str(db)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for _ in range(20)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out == "" and err == ""
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from samples").fetchone()[0] == 20
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"


def test_no_engine_is_a_warning_and_host_figures(tmp_path: Path) -> None:
    env = {**ENV, "DOCKER_HOST": f"unix://{tmp_path}/missing.sock"}
    proc = vots("report", "--no-history", "--format", "json", env=env)
    assert proc.returncode == 0
    assert proc.stderr.startswith("warning: containers not sampled:"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    data = json.loads(proc.stdout)
    assert data["host"]["cpu_count"] == os.cpu_count()
    assert data["containers"] == []


@pytest.fixture
def throttled() -> Iterator[str]:
    """A busybox container spinning on 0.1 CPU: throttled in most CFS periods."""
    name = f"vots-report-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "--cpus", "0.1", "--memory", "64m",
         "--label", "com.docker.compose.service=agent",
         busybox_image(), "sh", "-c", "while :; do :; done"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    try:
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60, check=False)


@pytest.mark.docker
def test_containers_against_their_limits_and_fail_on(tmp_path: Path, throttled: str) -> None:
    db = str(tmp_path / "h.sqlite3")
    assert vots("report", "--db", db, "--format", "json").returncode == 0
    import time

    time.sleep(2)
    proc = vots("report", "--db", db, "--format", "json", "--fail-on", "over-limit")
    assert proc.returncode == 1, proc.stderr
    assert f"{throttled}: CPU-throttled in" in proc.stderr
    data = json.loads(proc.stdout)
    (c,) = [c for c in data["containers"] if c["name"] == throttled]
    assert c["cpu_limit"] == pytest.approx(0.1)
    assert 50 <= c["cpu_pct_of_limit"] <= 130
    assert c["throttled_ratio"] >= 0.25
    assert c["mem_usage"] < 64 * 1024**2
    table = vots("report", "--db", db)
    assert throttled in table.stdout and "containers" in table.stdout


def test_install_cron_prints_an_absolute_command(tmp_path: Path) -> None:
    proc = vots("report", "install-cron", "--db", str(tmp_path / "h.sqlite3"))
    assert proc.returncode == 0
    line = proc.stdout.strip()
    assert line.startswith("* * * * * /")
    assert "report --quiet --fail-on over-limit --db" in line
    assert Path(line.split()[5]).is_file()


def test_live_view_samples_and_stops(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    proc = vots("report", "--interval", "0.3", "--count", "3", "--no-docker", "--db", str(db))
    assert proc.returncode == 0, proc.stderr
    assert "load 1/5/15" in proc.stdout
    assert "% of" in proc.stdout
    assert not db.exists(), "the live view stores nothing"


@pytest.mark.docker
def test_containers_joined_with_the_plan(tmp_path: Path, throttled: str) -> None:
    from tests.support.stacks import BUNDLED

    proc = vots("report", "--no-history", "--stack", str(BUNDLED), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    (c,) = [c for c in json.loads(proc.stdout)["containers"] if c["name"] == throttled]
    # Labelled as the stack's agent service: the plan's per-replica limits sit beside it.
    assert c["service"] == "agent"
    assert c["planned"]["cpu_limit"] == pytest.approx(0.58)
    assert c["planned"]["memory_limit"] == 2 * 1024**3
    table = vots("report", "--no-history", "--stack", str(BUNDLED))
    assert "planned CPU / mem" in table.stdout and "0.58 / 2G" in table.stdout


def test_html_report_draws_the_history(tmp_path: Path) -> None:
    db = str(tmp_path / "h.sqlite3")
    for _ in range(3):
        assert vots("report", "--db", db, "--no-docker", "--quiet").returncode == 0
    proc = vots("report", "--db", db, "--no-docker", "--format", "html")
    assert proc.returncode == 0, proc.stderr
    page = proc.stdout
    assert page.startswith("<!DOCTYPE html>") or page.lstrip().lower().startswith("<!doctype html>")
    assert page.count("<svg") >= 3  # CPU, memory, disks
    assert "http://" not in page and "https://" not in page
    assert vots("report", "--no-history", "--format", "html").returncode == 2


def test_serve_exposes_metrics_until_terminated(tmp_path: Path) -> None:
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [EXE, "report", "serve", "--port", str(port), "--no-history", "--no-docker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 20
        body = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    body = r.read().decode()
                break
            except OSError:
                time.sleep(0.2)
        assert "vots_host_memory_total_bytes" in body
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert f"serving http://127.0.0.1:{port}/metrics" in err


@pytest.mark.docker
def test_host_only_run_keeps_container_rates(tmp_path: Path, throttled: str) -> None:
    db = str(tmp_path / "h.sqlite3")
    assert vots("report", "--db", db, "--quiet").returncode == 0
    assert vots("report", "--db", db, "--quiet", "--no-docker").returncode == 0
    data = json.loads(vots("report", "--db", db, "--format", "json").stdout)
    (c,) = [c for c in data["containers"] if c["name"] == throttled]
    assert c["cpu_pct"] is not None, c["note"]


def test_flag_combinations_are_refused(tmp_path: Path) -> None:
    assert vots("report", "--interval", "1", "--format", "json").returncode == 2
    assert vots("report", "--count", "2").returncode == 2
    assert vots("report", "--db", "").returncode == 2
    missing = tmp_path / "missing" / "v.prom"
    proc = vots("report", "--no-history", "--no-docker", "--textfile", str(missing))
    assert proc.returncode == 2 and "is not a directory" in proc.stderr
    assert not missing.parent.exists()


def test_group_db_reaches_install_cron(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    proc = vots("report", "--db", str(db), "install-cron")
    assert f"--db {db}" in proc.stdout
