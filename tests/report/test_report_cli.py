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
    env = {"VOTS_OPS_DB": str(db)}  # set for cron: the live view still stores nothing
    proc = cli.run("report", "--interval", "0.3", "--count", "3", "--no-docker", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "load 1/5/15" in proc.stdout
    assert "% of" in proc.stdout
    assert not db.exists(), "the live view stores nothing"
    # An option it would ignore is refused instead.
    refused = cli.run("report", "--interval", "1", "--db", str(db))
    assert refused.returncode == 2 and "stores nothing and takes no" in refused.stderr
    assert cli.run("report", "--days", "3", "--no-history").returncode == 2


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
        "cpu_limit_millicores": 630,
        "cpu_reservation_millicores": 250,
        "memory_limit_bytes": 2 * 1024**3,
        "memory_reservation_bytes": 512 * 1024**2,
        "replicas": 2,
    }
    assert theirs["project"] == "someoneelse" and theirs["planned"] is None
    table = cli.run("report", "--no-history", "--stack", str(BUNDLED)).stdout
    (row,) = [line for line in table.splitlines() if throttled in line]
    (other,) = [line for line in table.splitlines() if stranger in line]
    assert "planned CPU / mem" in table and "0.63 / 2G" in row and "not in stack" in other
    markdown = cli.run("report", "--no-history", "--stack", str(BUNDLED), "--format", "markdown")
    (md_row,) = [line for line in markdown.stdout.splitlines() if throttled in line]
    assert "planned CPU / mem" in markdown.stdout and md_row.endswith("| 0.63 / 2G |")


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
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert not missing.parent.exists()


# ------------------------------------------------ findings from real containers, as cron sees them

FILL = r"""
m=/sys/fs/cgroup/memory
if [ -r $m/memory.limit_in_bytes ]; then lim=$(cat $m/memory.limit_in_bytes); use=$m/memory.usage_in_bytes
else lim=$(cat /sys/fs/cgroup/memory.max); use=/sys/fs/cgroup/memory.current; fi
i=0
while [ $(( $(cat $use) * 100 / lim )) -lt 95 ]; do
  i=$((i+1)); eval "v$i=\$(head -c 500000 /dev/urandom)"
done
echo ready; while [ ! -e /tmp/free ]; do sleep 0.2; done
"""  # fills its cgroup to 95% of the limit with anonymous memory, holds it until told
HOLDER = f"( {FILL} ); echo freed; sleep 600"  # the subshell's memory goes with it
OOM_LOOP = "x=$(head -c 100000000 /dev/urandom)"  # killed at once, every time it starts


def _docker(*args: str) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _until(check: object, what: str, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def container() -> Iterator[object]:
    """Starts busybox containers of this test's own (unique names), always removed."""
    names: list[str] = []

    def start(*args: str, command: str) -> str:
        name = f"vots-report-test-{uuid.uuid4().hex[:8]}"
        _docker("run", "-d", "--name", name, *args, busybox_image(), "sh", "-c", command)
        names.append(name)
        return name

    yield start
    if names:
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True, timeout=60)


def _lines(proc: subprocess.CompletedProcess[str], name: str) -> list[str]:
    """What a run said about this test's container (others on the host are not ours)."""
    return [line for line in proc.stderr.splitlines() if f" {name}: " in line]


def _oom(proc: subprocess.CompletedProcess[str], name: str) -> list[str]:
    return [line for line in _lines(proc, name) if "OOM-killed" in line]


def _ours(proc: subprocess.CompletedProcess[str], name: str) -> list[dict]:
    return [f for f in json.loads(proc.stdout)["findings"] if f["scope"] == name]


@pytest.mark.docker
@pytest.mark.slow
def test_an_oom_crash_loop_is_found_in_every_format(
    cli: Cli, tmp_path: Path, container: object
) -> None:
    """A service whose memory limit is too small, restarted by its restart policy:
    RestartCount and OOMKilled survive each restart, the cgroup does not. (A run may
    also catch it on its way up, at >= 90% of its limit: a memory finding, for real,
    so only the OOM lines are counted here.)"""
    name = container("--memory", "16m", "--memory-swap", "16m", "--restart", "unless-stopped",
                     command=OOM_LOOP)  # type: ignore[operator]  # fmt: skip

    def restarts() -> int:
        return int(_docker("inspect", "--format", "{{.RestartCount}}", name))

    _until(lambda: restarts() >= 1, "the first OOM restart")
    db = str(tmp_path / "h.sqlite3")
    cron = ("report", "--db", db, "--quiet", "--fail-on", "over-limit")
    first = cli.run(*cron)
    assert _oom(first, name) == []  # nothing to compare with yet
    seen = restarts()
    _until(lambda: restarts() > seen, "another restart")
    second = cli.run(*cron, "--format", "json")
    assert second.returncode == 1, second.stderr
    (line,) = _oom(second, name)
    assert line.startswith(f"over-limit {name}: OOM-killed ")
    assert "since the last sample, restarted" in line and line.endswith("(memory limit 16M) (new)")
    (c,) = [c for c in json.loads(second.stdout)["containers"] if c["name"] == name]
    assert c["oom_kills"] >= 1 and c["restarts"] >= 1
    (finding,) = [f for f in _ours(second, name) if f["check"] == "oom"]
    assert (finding["kind"], finding["check"], finding["state"]) == ("over-limit", "oom", "new")

    # While the loop goes on, every run fails (--fail-on) but says nothing new ...
    seen = restarts()
    _until(lambda: restarts() > seen, "another restart")
    third = cli.run(*cron, "--format", "markdown")
    assert third.returncode == 1 and _oom(third, name) == []
    (row,) = [r for r in third.stdout.splitlines() if r.startswith(f"| {name.replace('-', '-')}")]
    cells = [x.strip() for x in row.strip("|").split("|")]
    assert cells[1] in ("restarting", "running") and int(cells[7]) >= 1 and int(cells[8]) >= 1
    # ... and the table, for a person, shows it with its state and the counts.
    table = cli.run("report", "--db", db, "--fail-on", "over-limit")
    assert table.returncode == 1
    assert f"{name}: OOM-killed" in table.stderr  # the error line names it
    assert "OOM kills" in table.stdout and "since 20" in table.stdout


@pytest.mark.docker
@pytest.mark.slow
def test_memory_near_the_limit_is_said_once_then_again_then_resolved(
    cli: Cli, tmp_path: Path, container: object
) -> None:
    """A container at 95% of its memory limit, sampled by cron: one line when it
    starts, silence, one line after the repeat interval, one when it resolves."""
    import time

    name = container("--memory", "32m", "--memory-swap", "32m", command=HOLDER)  # type: ignore[operator]
    _until(lambda: "ready" in _docker("logs", name), "the holder to fill its memory")
    db = str(tmp_path / "h.sqlite3")
    cron = ("report", "--db", db, "--quiet", "--fail-on", "over-limit", "--format", "json",
            "--repeat-interval", "4s")  # fmt: skip
    first = cli.run(*cron)
    assert first.returncode == 1, first.stderr
    (line,) = _lines(first, name)
    assert line.startswith(f"over-limit {name}: memory at 9") and "of 32M) (new)" in line
    again = cli.run(*cron)
    # Silence while it holds. The kernel's own pages move the figure by a percent or
    # two between samples (and report reads a little under what the holder aimed
    # at), so a sample may cross into the next band (95%): that is said once, "worse".
    said = _lines(again, name)
    assert again.returncode == 1 and len(said) <= 1, again.stderr
    assert all(line.endswith("(worse)") for line in said), said
    assert [f["state"] for f in _ours(again, name)] == (["worse"] if said else ["ongoing"])
    time.sleep(4.5)  # past the repeat interval (a lower bound, never an upper one)
    repeat = cli.run(*cron)
    (line,) = _lines(repeat, name)
    assert line.endswith("(still)")
    _docker("exec", name, "touch", "/tmp/free")
    _until(lambda: "freed" in _docker("logs", name), "the holder to free its memory")
    done = cli.run(*cron)
    (line,) = _lines(done, name)
    assert line.startswith(f"over-limit {name}: resolved after ") and "(was: memory at 9" in line
    assert _ours(done, name) == []
    assert cli.run(*cron).stderr.count(name) == 0


def test_options_a_subcommand_ignores_are_refused(cli: Cli, tmp_path: Path) -> None:
    db = str(tmp_path / "h.sqlite3")
    for args, flag in (
        (("report", "--format", "json", "recommend", "--db", db), "--format"),
        (("report", "--days", "3", "serve"), "--days"),
        (("report", "--stack", "stack.yaml", "recommend"), "--stack"),
    ):
        proc = cli.run(*args)
        assert proc.returncode == 2, args
        assert f"{flag} is an option of `report` itself" in proc.stderr, proc.stderr
    # What they take is taken, wherever it is written.
    line = cli.run("report", "--repeat-interval", "30m", "--fail-on", "anomaly", "install-cron",
                   "--db", db).stdout  # fmt: skip
    assert "--fail-on anomaly --db" in line and line.rstrip().endswith("--repeat-interval 1800s")


def test_a_history_in_a_directory_that_does_not_exist_is_refused(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "h.sqlite3"
    for args in (("report", "--no-docker", "--db", str(missing)),
                 ("report", "install-cron", "--db", str(missing)),
                 ("report", "serve", "--db", str(missing), "--port", "1")):  # fmt: skip
        proc = cli.run(*args)
        assert proc.returncode == 2, args
        assert proc.stderr.strip().endswith(f"{missing.parent} does not exist"), proc.stderr
    assert not (tmp_path / "no").exists()


def test_help_to_a_full_disk_is_one_line(cli: Cli) -> None:
    with open("/dev/full", "w") as full:
        proc = cli.run("report", "--help", stdout=full)
    assert proc.returncode == 2
    assert (
        proc.stderr == "error: cannot write: No space left on device (the output is incomplete)\n"
    )


def test_an_engine_that_goes_away_is_said_once_under_cron(cli: Cli, tmp_path: Path) -> None:
    db = str(tmp_path / "h.sqlite3")
    gone = {"DOCKER_HOST": f"unix://{tmp_path}/missing.sock"}
    cron = ("report", "--db", db, "--quiet", "--fail-on", "over-limit")
    first = cli.run(*cron, env=gone)  # the first sample: nothing to compare with, said
    assert first.stderr.startswith("warning: containers not sampled: Docker engine not usable")
    second = cli.run(*cron, env=gone)
    assert (second.returncode, second.stderr) == (0, "")
