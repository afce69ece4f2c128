"""The host figures read from /proc, against /proc itself and against psutil
(the reference the readers mirror) on this machine and on constructed files."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.report.procfs import (
    _disk_usage,
    _proc_diskstats,
    _proc_host,
    _proc_memory,
    _proc_net_dev,
    _proc_partitions,
    _psutil_host,
    _UseLibrary,
    collect_host,
)
from tests.support.cli import wait_for

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]


def _roundtrip(value: Any) -> Any:
    """What the history store gives back: the sample must be plain JSON."""
    return json.loads(json.dumps(value, allow_nan=False))


# -------------------------------------------------------------------------- host


def _meminfo_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def test_host_figures_match_proc() -> None:
    host = collect_host(top_n=3)
    assert _roundtrip(host) == host

    processors = sum(
        1 for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("processor")
    )
    assert host["cpu_count"] == os.cpu_count() == processors
    assert len(host["cpu_per_core"]) == processors
    assert host["memory"]["total"] == _meminfo_total()
    assert 0 < host["memory"]["available"] <= host["memory"]["total"]

    btime = next(
        int(line.split()[1])
        for line in Path("/proc/stat").read_text().splitlines()
        if line.startswith("btime ")
    )
    assert abs(host["boot_time"] - btime) <= 1

    proc_loads = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    assert all(abs(a - b) < 1.0 for a, b in zip(host["load_avg"], proc_loads, strict=True))

    for cpu in [host["cpu"], *host["cpu_per_core"]]:
        assert cpu["busy"] == pytest.approx(cpu["total"] - cpu["idle"] - cpu["iowait"], abs=0.02)
        assert 0 <= cpu["busy"] <= cpu["total"]
    # The overall line is the sum of the cores (clock ticks, rounded to 10 ms each).
    assert host["cpu"]["total"] == pytest.approx(
        sum(c["total"] for c in host["cpu_per_core"]), abs=0.05 * processors
    )

    # Every process that lives through both reads is counted (others may come and go).
    before = {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()}
    again = collect_host(top_n=10_000)
    after = {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()}
    counted = {r["pid"] for r in again["top_cpu"]}
    assert before & after <= counted
    assert again["process_count"] == len(counted)
    assert len(host["top_cpu"]) == len(host["top_memory"]) == 3
    cpu_secs = [p["cpu_seconds"] for p in host["top_cpu"]]
    assert cpu_secs == sorted(cpu_secs, reverse=True)
    rss = [p["rss"] for p in host["top_memory"]]
    assert rss == sorted(rss, reverse=True) and rss[0] > 0
    assert {"pid", "name", "cpu_seconds", "rss", "create_time"} <= set(host["top_cpu"][0])

    devices = [d["device"] for d in host["disks"]]
    assert devices and len(devices) == len(set(devices))
    for disk in host["disks"]:
        st = os.statvfs(disk["mountpoint"])
        assert disk["total"] == st.f_blocks * st.f_frsize
        assert disk["fstype"] not in ("tmpfs", "overlay", "proc", "sysfs", "cgroup")
    assert host["disk_io"]["read_bytes"] == sum(
        d["read_bytes"] for d in host["disk_io"]["disks"].values()
    )
    nics = set(host["net_io"]["nics"])
    assert "lo" not in nics and not any(n.startswith(("veth", "docker")) for n in nics)


def _asleep(pid: int, comm: str) -> bool:
    """``pid`` runs ``comm`` (exec done) and sleeps (state S)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    name, _, rest = stat.partition("(")[2].rpartition(")")
    return name == comm and rest.split()[0] == "S"


@pytest.fixture
def own_processes(tmp_path: Path) -> Iterator[list[int]]:
    """Two processes of this test's own, one with a name longer than the kernel's
    15 characters (the readers must extend it from the command line, as psutil)."""
    import shutil

    sleep = shutil.which("sleep")
    assert sleep
    long = tmp_path / "vots-test-a-long-process-name"
    long.symlink_to(sleep)
    procs = [subprocess.Popen([sleep, "300"]), subprocess.Popen([str(long), "300"])]
    try:
        for proc, comm in zip(procs, ("sleep", long.name[:15]), strict=True):
            # Compared as asleep: wait until exec is done and sleep(1) is in its
            # nanosleep (on a busy machine a first read can catch it mid-start).
            wait_for(
                lambda pid=proc.pid, comm=comm: _asleep(pid, comm),
                timeout=60, what=f"{comm} to fall asleep", proc=proc,
            )  # fmt: skip
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_proc_readers_give_what_psutil_gives(own_processes: list[int]) -> None:
    """The /proc readers replace psutil on the cron path: same figures, read from
    the same files at (nearly) the same moment. Processes are compared where they
    cannot change between the two reads: this test's own, and start times (a kernel
    thread may rename itself in between, others start and exit)."""
    mine, ref = _proc_host(10_000), _psutil_host(10_000)
    for key in ("hostname", "boot_time", "cpu_count", "disks", "swap"):
        if key == "disks":  # used/free move with any write; the rest may not
            fields = ("mountpoint", "device", "fstype", "total")
            assert [{k: d[k] for k in fields} for d in mine[key]] == [
                {k: d[k] for k in fields} for d in ref[key]
            ]
        else:
            assert mine[key] == ref[key], key
    assert mine["memory"]["total"] == ref["memory"]["total"]
    assert abs(mine["memory"]["available"] - ref["memory"]["available"]) < 64 * MiB
    assert set(mine["disk_io"]["disks"]) == set(ref["disk_io"]["disks"])
    assert set(mine["net_io"]["nics"]) == set(ref["net_io"]["nics"])
    for got, want in zip(mine["cpu_per_core"], ref["cpu_per_core"], strict=True):
        assert want["total"] - 1 <= got["total"] <= want["total"]  # read first, never more
    a = {r["pid"]: r for r in mine["top_cpu"]}
    b = {r["pid"]: r for r in ref["top_cpu"]}
    assert mine["process_count"] == len(a) and ref["process_count"] == len(b)
    short, long = own_processes
    for pid in (1, short, long, os.getpid()):
        assert pid in a and pid in b, pid
    assert a[short]["name"] == b[short]["name"] == "sleep"
    assert a[long]["name"] == b[long]["name"] == "vots-test-a-long-process-name"
    for pid in set(a) & set(b):
        assert a[pid]["create_time"] == b[pid]["create_time"], pid
        if pid != os.getpid() and a[pid]["cpu_seconds"] is not None:
            assert a[pid]["cpu_seconds"] <= b[pid]["cpu_seconds"], pid  # read first
    for pid in own_processes:  # asleep: nothing moves
        assert a[pid]["rss"] == b[pid]["rss"] and a[pid]["cpu_seconds"] == b[pid]["cpu_seconds"]


DISKSTATS = (  # 2.6+ (14 fields), 4.18+ (18), 5.5+ (20), 2.4 (15), old partitions (7)
    "   8       0 sda 10 1 100 5 20 2 200 6 0 7 11\n"
    " 259       0 nvme0n1 1 0 8 0 2 0 16 0 0 3 0 0 0 0 0 0 0 0\n"
    "   8      16 sdb 1 0 8 0 2 0 16 0 0 4 0 0 0 0 0 0 0 0 0 0\n"
    "   3       0 4 hda 1 32 0 5 0 40 0 0 9 0 0\n"
    "   8       1 sda1 3 24 4 32\n"
)
NET_DEV = (
    "Inter-|   Receive |  Transmit\n"
    " face |bytes packets errs drop fifo frame compressed multicast|bytes ...\n"
    "    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n"
    "  eth0: 5000 50 1 2 0 0 0 0 7000 70 3 4 0 0 0 0\n"
    "br-x1:12 1 0 0 0 0 0 0 34 1 0 0 0 0 0 0\n"
)
MEMINFO = (
    "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 600 kB\nBuffers: 10 kB\n"
    "Cached: 200 kB\nShmem: 5 kB\nActive: 300 kB\nInactive: 200 kB\n"
    "SwapTotal: 50 kB\nSwapFree: 20 kB\n"
)


@pytest.fixture
def fake_procfs(tmp_path: Path) -> Iterator[Path]:
    """psutil pointed at constructed /proc files (its PROCFS_PATH), as the reference."""
    import psutil

    (tmp_path / "net").mkdir()
    (tmp_path / "diskstats").write_text(DISKSTATS)
    (tmp_path / "net" / "dev").write_text(NET_DEV)
    (tmp_path / "meminfo").write_text(MEMINFO)
    (tmp_path / "vmstat").write_text("pswpin 0\npswpout 0\n")
    saved = psutil.PROCFS_PATH
    psutil.PROCFS_PATH = str(tmp_path)
    try:
        yield tmp_path
    finally:
        psutil.PROCFS_PATH = saved


def test_proc_parsers_read_what_psutil_reads(fake_procfs: Path) -> None:
    import psutil

    mine = _proc_diskstats(DISKSTATS)
    ref = psutil.disk_io_counters(perdisk=True, nowrap=False)
    assert set(mine) == set(ref) == {"sda", "nvme0n1", "sdb", "hda", "sda1"}
    for name, c in ref.items():
        assert mine[name] == (c.read_bytes, c.write_bytes, c.read_count, c.write_count, c.busy_time)
    assert mine["sda"] == (100 * 512, 200 * 512, 10, 20, 7)
    with pytest.raises(_UseLibrary):
        _proc_diskstats("8 0 sda 1 2 3\n")

    net = _proc_net_dev(NET_DEV)
    ref_net = psutil.net_io_counters(pernic=True, nowrap=False)
    assert set(net) == set(ref_net) == {"lo", "eth0", "br-x1"}
    for name, c in ref_net.items():
        errors, drops = c.errin + c.errout, c.dropin + c.dropout
        assert net[name] == (
            c.bytes_recv,
            c.bytes_sent,
            c.packets_recv,
            c.packets_sent,
            errors,
            drops,
        )

    memory, swap = _proc_memory(MEMINFO.encode())
    vm, sw = psutil.virtual_memory(), psutil.swap_memory()
    assert memory == {"total": vm.total, "available": vm.available, "used": vm.used}
    assert swap == {"total": sw.total, "used": sw.used, "free": sw.free}
    lxc = MEMINFO.replace("MemAvailable: 600", "MemAvailable: 5000")
    assert _proc_memory(lxc.encode())[0]["available"] == 100 * 1024  # free, as psutil says
    with pytest.raises(_UseLibrary):  # kernels before 3.14: psutil estimates it
        _proc_memory(MEMINFO.replace("MemAvailable: 600 kB\n", "").encode())


def test_mount_table_is_read_as_psutil_reads_it() -> None:
    filesystems = "nodev\tsysfs\nnodev\ttmpfs\n\text4\n\txfs\nnodev\tzfs\nnodev\toverlay\n"
    mounts = (
        "sysfs /sys sysfs rw 0 0\n"
        "/dev/sda1 / ext4 rw 0 0\n"
        "/dev/sdb1 /mnt/my\\040disk xfs rw 0 0\n"
        "tank/data /tank zfs rw 0 0\n"
        "none /weird ext4 rw 0 0\n"
        "overlay /var/lib/docker/overlay2/x/merged overlay rw 0 0\n"
    )
    assert _proc_partitions(filesystems, mounts) == [
        ("/dev/sda1", "/", "ext4"),
        ("/dev/sdb1", "/mnt/my disk", "xfs"),
        ("tank/data", "/tank", "zfs"),
    ]
    with pytest.raises(_UseLibrary):  # psutil resolves /dev/root through /sys
        _proc_partitions(filesystems, "/dev/root / ext4 rw 0 0\n")
    total, used, free, _ = _disk_usage("/")
    st = os.statvfs("/")
    assert total == st.f_blocks * st.f_frsize and free <= total - used
