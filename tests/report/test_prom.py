"""Prometheus output of ``vots-ops report``: promtool lints the exposition, the
textfile is replaced atomically under a concurrent reader, and a real container
under limits yields the container families. Nothing is mocked; only a copy of a real sample is
edited to carry hostile label values."""

from __future__ import annotations

import copy
import math
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from ops.report.prom import METRICS, exposition, write_textfile
from ops.report.run import ReportRun, take_sample
from tests.support.docker import ok, run
from tests.support.images import busybox_image
from tests.support.prom import assert_lint_clean, family_types, one, parse

REPO = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
Labels = frozenset[tuple[str, str]]


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
    assert_lint_clean(text)
    types = family_types(text)
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
    got = parse(exposition(host_run))
    host = h["hostname"]
    assert one(got["vots_host_memory_total_bytes"], host=host) == psutil.virtual_memory().total
    assert one(got["vots_host_memory_available_bytes"], host=host) == h["memory"]["available"]
    assert one(got["vots_host_load1"], host=host) == h["load_avg"][0]
    assert one(got["vots_host_cpus"], host=host) == psutil.cpu_count()
    stamp = one(got["vots_report_last_run_timestamp_seconds"], host=host)
    assert stamp == host_run.sample["time"] and abs(stamp - time.time()) < 60
    assert 0 < one(got["vots_report_collect_duration_seconds"], host=host) < 10
    for kind in ("over-limit", "restart", "anomaly"):
        assert one(got["vots_report_findings"], host=host, kind=kind) == 0
    cpu = got["vots_host_cpu_seconds_total"]
    modes = {dict(k)["mode"]: v for k, v in cpu.items()}
    assert set(modes) == {"busy", "idle", "iowait"}
    assert math.isclose(sum(modes.values()), h["cpu"]["total"], abs_tol=0.05)
    for disk in h["disks"]:
        ratio = one(got["vots_host_filesystem_used_ratio"], mountpoint=disk["mountpoint"])
        assert 0.0 <= ratio <= 1.0
        assert abs(ratio - disk["percent"] / 100.0) < 0.001  # psutil rounds to 0.1 %
        size = one(got["vots_host_filesystem_size_bytes"], mountpoint=disk["mountpoint"])
        assert size == disk["total"]
    for nic, io in h["net_io"]["nics"].items():
        rx = one(got["vots_host_network_receive_bytes_total"], device=nic)
        assert rx == io["bytes_recv"]
    for name, io in h["disk_io"]["disks"].items():
        assert one(got["vots_host_disk_read_bytes_total"], device=name) == io["read_bytes"]
        if io["busy_ms"] is not None:
            busy = one(got["vots_host_disk_io_time_seconds_total"], device=name)
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
    assert_lint_clean(text)
    got = parse(text)
    assert one(got["vots_host_load1"], host=hostname) == sample["host"]["load_avg"][0]
    assert one(got["vots_host_filesystem_used_ratio"], mountpoint=mount, host=hostname) == 0.25
    assert one(got["vots_host_filesystem_free_bytes"], mountpoint="/mnt/\\udcff") == 10


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
    assert_lint_clean(target.read_text())


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
    assert_lint_clean(text)
    got = parse(text)
    host = socket.gethostname()
    assert one(got["vots_report_docker_engine_up"], host=host) == 1

    def value(metric: str) -> float:
        return one(got[metric], container=name)

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
    assert value("vots_container_last_exit_oom_killed") == 0
    from datetime import datetime

    started = datetime.fromisoformat(entry["started_at"]).timestamp()
    assert value("vots_container_start_time_seconds") == started
    info = one(got["vots_container_info"], container=name)
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
