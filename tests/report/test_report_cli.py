"""`vots-ops report` as cron runs it: the installed command, a real history file,
real containers on the local engine."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import Cli
from tests.support.images import busybox_image


def test_first_run_says_so_then_rates_come_from_history(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    first = cli.run("report", "--db", str(db), "--no-docker", "--format", "json")
    assert first.returncode == 0, first.stderr
    one = json.loads(first.stdout)
    assert one["note"] == "first sample"
    assert one["host"]["rates"]["cpu_pct"] is None
    second = json.loads(
        cli.run("report", "--db", str(db), "--no-docker", "--format", "json").stdout
    )
    assert second["note"] is None
    assert 0 <= second["host"]["rates"]["cpu_pct"] <= 100
    assert second["interval_s"] > 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from samples").fetchone()[0] == 2
        assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_quiet_cron_runs_print_nothing_and_lose_no_rows(cli: Cli, tmp_path: Path) -> None:
    """Twenty overlapping cron runs on one history file."""
    db = tmp_path / "h.sqlite3"
    procs = [cli.start("report", "--quiet", "--no-docker", "--db", str(db)) for _ in range(20)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out == "" and err == ""
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from samples").fetchone()[0] == 20
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"


def test_no_engine_is_a_warning_and_host_figures(cli: Cli, tmp_path: Path) -> None:
    env = {"DOCKER_HOST": f"unix://{tmp_path}/missing.sock"}
    proc = cli.run("report", "--no-history", "--format", "json", env=env)
    assert proc.returncode == 0
    assert proc.stderr.startswith("warning: containers not sampled:"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    data = json.loads(proc.stdout)
    assert data["host"]["cpu_count"] == os.cpu_count()
    assert data["containers"] == []


def _busybox(name: str, *args: str) -> None:
    subprocess.run(
        ["docker", "run", "-d", "--name", name, *args, busybox_image(), "sh", "-c",
         "while :; do :; done"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip


@pytest.fixture
def throttled() -> Iterator[str]:
    """A busybox container of the stack's agent service (Compose labels of project
    "vots") spinning on 0.1 CPU: throttled in most CFS periods."""
    name = f"vots-report-test-{uuid.uuid4().hex[:8]}"
    labels = ["--label", "com.docker.compose.service=agent",
              "--label", "com.docker.compose.project=vots"]  # fmt: skip
    _busybox(name, "--cpus", "0.1", "--memory", "64m", *labels)
    try:
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60, check=False)


@pytest.fixture
def stranger() -> Iterator[str]:
    """Another Compose project's "agent": not the stack's."""
    name = f"vots-report-other-{uuid.uuid4().hex[:8]}"
    labels = ["--label", "com.docker.compose.service=agent",
              "--label", "com.docker.compose.project=someoneelse"]  # fmt: skip
    _busybox(name, "--cpus", "0.05", *labels)
    try:
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60, check=False)


@pytest.mark.docker
def test_containers_against_their_limits_and_fail_on(
    cli: Cli, tmp_path: Path, throttled: str
) -> None:
    db = str(tmp_path / "h.sqlite3")
    assert cli.run("report", "--db", db, "--format", "json").returncode == 0
    import time

    time.sleep(2)
    proc = cli.run("report", "--db", db, "--format", "json", "--fail-on", "over-limit")
    assert proc.returncode == 1, proc.stderr
    assert f"{throttled}: CPU-throttled in" in proc.stderr
    data = json.loads(proc.stdout)
    (c,) = [c for c in data["containers"] if c["name"] == throttled]
    assert c["cpu_limit_millicores"] == 100
    assert 50 <= c["cpu_pct_of_limit"] <= 130
    assert c["throttled_ratio"] >= 0.25
    assert c["mem_usage"] < 64 * 1024**2
    table = cli.run("report", "--db", db)
    assert throttled in table.stdout and "containers" in table.stdout


def test_install_cron_prints_an_absolute_command(cli: Cli, tmp_path: Path) -> None:
    proc = cli.run("report", "install-cron", "--db", str(tmp_path / "h.sqlite3"))
    assert proc.returncode == 0
    line = proc.stdout.strip()
    assert line.startswith("* * * * * /")
    assert "report --quiet --fail-on over-limit --fail-on restart --db" in line
    assert Path(line.split()[5]).is_file()


def test_live_view_samples_and_stops(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    proc = cli.run("report", "--interval", "0.3", "--count", "3", "--no-docker", "--db", str(db))
    assert proc.returncode == 0, proc.stderr
    assert "load 1/5/15" in proc.stdout
    assert "% of" in proc.stdout
    assert not db.exists(), "the live view stores nothing"


@pytest.mark.docker
def test_containers_joined_with_the_plan(cli: Cli, throttled: str, stranger: str) -> None:
    """The plan's figures sit beside the stack's containers only: matched on the
    Compose project label as well as the service name."""
    from tests.support.stacks import BUNDLED

    proc = cli.run("report", "--no-history", "--stack", str(BUNDLED), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    containers = {c["name"]: c for c in json.loads(proc.stdout)["containers"]}
    ours, theirs = containers[throttled], containers[stranger]
    assert ours["service"] == theirs["service"] == "agent"
    assert ours["planned"] == {
        "cpu_limit_millicores": 580,
        "cpu_reservation_millicores": 250,
        "memory_limit_bytes": 2 * 1024**3,
        "memory_reservation_bytes": 512 * 1024**2,
        "replicas": 2,
    }
    assert theirs["project"] == "someoneelse" and theirs["planned"] is None
    table = cli.run("report", "--no-history", "--stack", str(BUNDLED)).stdout
    (row,) = [line for line in table.splitlines() if throttled in line]
    (other,) = [line for line in table.splitlines() if stranger in line]
    assert "planned CPU / mem" in table and "0.58 / 2G" in row and "not in stack" in other


def test_html_report_draws_the_history(cli: Cli, tmp_path: Path) -> None:
    db = str(tmp_path / "h.sqlite3")
    for _ in range(3):
        assert cli.run("report", "--db", db, "--no-docker", "--quiet").returncode == 0
    before = _sql(db, "SELECT count(*) FROM samples")
    proc = cli.run("report", "--db", db, "--format", "html")
    assert proc.returncode == 0, proc.stderr
    page = proc.stdout
    assert page.lstrip().lower().startswith("<!doctype html>")
    assert page.count("<svg") >= 3  # CPU, memory, disks
    assert "http://" not in page and "https://" not in page
    assert _sql(db, "SELECT count(*) FROM samples") == before, "drawing samples nothing"
    assert cli.run("report", "--no-history", "--format", "html").returncode == 2
    refused = cli.run("report", "--db", db, "--format", "html", "--fail-on", "over-limit")
    assert refused.returncode == 2 and "only draws the history" in refused.stderr


def _sql(db: str, query: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def test_serve_exposes_metrics_until_terminated(cli: Cli, tmp_path: Path) -> None:
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = cli.start("report", "serve", "--port", str(port), "--no-history", "--no-docker")
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
def test_host_only_run_keeps_container_rates(cli: Cli, tmp_path: Path, throttled: str) -> None:
    db = str(tmp_path / "h.sqlite3")
    assert cli.run("report", "--db", db, "--quiet").returncode == 0
    assert cli.run("report", "--db", db, "--quiet", "--no-docker").returncode == 0
    data = json.loads(cli.run("report", "--db", db, "--format", "json").stdout)
    (c,) = [c for c in data["containers"] if c["name"] == throttled]
    assert c["cpu_pct"] is not None, c["note"]


def test_flag_combinations_are_refused(cli: Cli, tmp_path: Path) -> None:
    assert cli.run("report", "--interval", "1", "--format", "json").returncode == 2
    assert cli.run("report", "--count", "2").returncode == 2
    assert cli.run("report", "--db", "").returncode == 2
    missing = tmp_path / "missing" / "v.prom"
    proc = cli.run("report", "--no-history", "--no-docker", "--textfile", str(missing))
    assert proc.returncode == 2 and "is not a directory" in proc.stderr
    assert not missing.parent.exists()
