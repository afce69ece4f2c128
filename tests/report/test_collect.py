"""Samples and rates against this machine: /proc, a real CPU burner, real containers
under real limits (the kernel really throttles and OOM-kills them), and engines that
are missing or never answer. Nothing is mocked; only inputs to ``rates`` are edited
(a sample's timestamp or boot time) to stand for a gap or a reboot."""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.report import engine
from ops.report.collect import (
    _disk_usage,
    _kv,
    _proc_diskstats,
    _proc_host,
    _proc_memory,
    _proc_net_dev,
    _proc_partitions,
    _psutil_host,
    _UseLibrary,
    collect_containers,
    collect_host,
    parse_blkio_v1,
    parse_io_stat_v2,
    parse_mountinfo,
    parse_net_dev,
    rates,
    sample,
)
from tests.support.docker import ok, run
from tests.support.images import busybox_image

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]


def _roundtrip(value: Any) -> Any:
    """What the history store gives back: the sample must be plain JSON."""
    return json.loads(json.dumps(value, allow_nan=False))


# ------------------------------------------------------------------- module cost


HEAVY = "{'docker', 'psutil', 'requests', 'urllib3', 'http.client', 'ssl', 'concurrent.futures'}"


def test_importing_the_module_loads_neither_docker_nor_psutil() -> None:
    code = (
        "import sys, ops.report.collect\n"
        f"heavy = {HEAVY} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


def test_a_whole_sample_needs_no_heavy_module() -> None:
    """The cron path: /proc and the engine's socket, no SDK, psutil, http.client or ssl
    (whether or not an engine answers here)."""
    code = (
        "import sys\n"
        "from ops.report.collect import sample\n"
        "s = sample()\n"
        "assert s['host']['process_count'] > 0\n"
        f"heavy = {HEAVY} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


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

    pids = sum(1 for p in Path("/proc").iterdir() if p.name.isdigit())
    assert abs(host["process_count"] - pids) <= 20
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


def test_proc_readers_give_what_psutil_gives() -> None:
    """The /proc readers replace psutil on the cron path: same figures, read from
    the same files at (nearly) the same moment."""
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
    # Processes: same pids (give or take a few starting or exiting), same names and
    # start times; RSS and CPU of a process that is not running now are the same too.
    a = {r["pid"]: r for r in mine["top_cpu"]}
    b = {r["pid"]: r for r in ref["top_cpu"]}
    common = set(a) & set(b)
    assert len(common) >= 0.9 * max(len(a), len(b))
    assert mine["process_count"] == pytest.approx(ref["process_count"], abs=10)
    for pid in common - {os.getpid()}:
        assert a[pid]["name"] == b[pid]["name"], pid
        assert a[pid]["create_time"] == b[pid]["create_time"], pid
        assert a[pid]["cpu_seconds"] <= b[pid]["cpu_seconds"], pid
    init = a.get(1), b.get(1)
    if init[0] and init[1]:
        assert abs(init[0]["rss"] - init[1]["rss"]) < 16 * MiB
    long_names = [r for r in a.values() if len(r["name"] or "") > 15]
    assert all(b[r["pid"]]["name"] == r["name"] for r in long_names if r["pid"] in b)


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


def test_rates_between_two_real_samples_while_burning_cpu() -> None:
    first = sample(docker=False)
    burn = "import time\nend = time.monotonic() + 1.0\nwhile time.monotonic() < end: pass\n"
    subprocess.run([sys.executable, "-c", burn], check=True, timeout=30)
    second = sample(docker=False)
    assert second["docker"] is False and second["containers"] == []
    assert second["docker_error"] is None

    r = rates(first, second)
    assert r["note"] is None
    assert 1.0 <= r["interval_s"] < 10
    host = r["host"]
    # One core busy for ~1 s of a ~1 s interval: at least half a core's share, surely.
    assert 50 / second["host"]["cpu_count"] <= host["cpu_pct"] <= 100
    assert all(0 <= c <= 100 for c in host["cpu_pct_per_core"])
    for key in ("disk_read_Bps", "disk_write_Bps", "net_rx_Bps", "net_tx_Bps"):
        assert host[key] is not None and host[key] >= 0, key
    assert r == rates(_roundtrip(first), _roundtrip(second))


def test_rates_refuse_to_invent_across_first_sample_gap_and_reboot() -> None:
    prev = sample(docker=False)
    cur = sample(docker=False)

    def no_rates(r: dict[str, Any]) -> bool:
        return r["interval_s"] is None and all(v is None for v in r["host"].values())

    first = rates(None, cur)
    assert first["note"] == "first sample" and no_rates(first)

    gap = copy.deepcopy(prev)
    gap["mono"] -= 3 * 3600
    r = rates(gap, cur)
    assert r["note"] == "gap of 3 h since the last sample" and no_rates(r)
    assert rates(gap, cur, max_interval=4 * 3600)["note"] is None

    rebooted = copy.deepcopy(prev)
    rebooted["host"]["boot_time"] -= 86400
    r = rates(rebooted, cur)
    assert r["note"] == "host rebooted since the last sample" and no_rates(r)

    assert rates(cur, prev)["note"] == "samples are not in time order"

    backwards = copy.deepcopy(prev)
    backwards["host"]["cpu"]["total"] += 10**6
    r = rates(backwards, cur)
    assert "went backwards" in r["note"] and no_rates(r)


def test_parsers_read_the_kernel_formats() -> None:
    # Constructed file contents for the layouts this (cgroup v1) machine lacks.
    io_stat = "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n259:0 rbytes=1 wbytes=2\n"
    assert parse_io_stat_v2(io_stat) == (4097, 8194)
    assert parse_blkio_v1("8:0 Read 10\n8:0 Write 20\n8:0 Sync 30\n8:16 Read 1\nTotal 61\n") == (
        11,
        20,
    )
    events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n"
    assert _kv(events)["oom_kill"] == 2
    v1, v2 = parse_mountinfo(
        "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
        "31 23 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    )
    assert v2 == ("/sys/fs/cgroup", "/")
    assert v1["cpu"] == v1["cpuacct"] == ("/sys/fs/cgroup/cpu,cpuacct", "/")
    # And the real ones of this process.
    rx, tx = parse_net_dev(Path("/proc/self/net/dev").read_text())
    assert rx >= 0 and tx >= 0


# ---------------------------------------------------------------------- no engine


def test_missing_socket_is_a_one_line_reason_not_an_exception(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import docker

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    started = time.monotonic()
    containers, reason = collect_containers()
    assert time.monotonic() - started < 1.0
    assert containers == []
    assert reason is not None and "\n" not in reason
    assert "unix:///nonexistent.sock" in reason and "socket not found" in reason

    client = docker.DockerClient(base_url="unix:///nonexistent.sock", version="1.41")
    started = time.monotonic()
    containers, reason = collect_containers(client)
    assert time.monotonic() - started < 1.0
    assert containers == [] and reason is not None and "socket not found" in reason

    s = sample()
    assert s["docker"] is True and s["containers"] == []
    assert "socket not found" in s["docker_error"]
    assert s["host"]["cpu_count"] == os.cpu_count()


def test_engine_that_never_answers_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket that accepts and then says nothing (a wedged dockerd) must not hang cron."""
    path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
        started = time.monotonic()
        containers, reason = collect_containers(timeout=0.5)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()
    assert containers == []
    assert reason is not None and "no answer within 0.5 s" in reason, reason
    assert elapsed < 1.5


# ------------------------------------------------------------ the engine client


class ScriptedEngine:
    """A real AF_UNIX HTTP peer that answers each request with the next scripted
    bytes (``None``: close the connection without answering; ``b""``: say nothing
    and hold the connection, like a wedged dockerd), and counts connections and
    requests."""

    def __init__(self, path: Path, answers: list[bytes | None]) -> None:
        self.path, self.answers = path, list(answers)
        self.connections = 0
        self.requests: list[str] = []
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen(8)
        self.server.settimeout(0.1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn = self.server.accept()[0]
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                buf = b""
                while self.answers:
                    while b"\r\n\r\n" not in buf:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        buf += chunk
                    if b"\r\n\r\n" not in buf:
                        break
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    self.requests.append(head.split(b"\r\n")[0].decode())
                    answer = self.answers.pop(0)
                    if answer is None:
                        break
                    if not answer:
                        self.stop.wait()
                        break
                    conn.sendall(answer)
                    if b"Connection: close" in answer:
                        break

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.server.close()


def _http(status: str, body: bytes, *headers: str, chunked: bool = False) -> bytes:
    head = [f"HTTP/1.1 {status}", "Content-Type: application/json", *headers]
    if chunked:
        head.append("Transfer-Encoding: chunked")
        body = (
            b"".join(
                f"{len(body[i : i + 7]):x};ext=1\r\n".encode() + body[i : i + 7] + b"\r\n"
                for i in range(0, len(body), 7)
            )
            + b"0\r\nX-Trailer: 1\r\n\r\n"
        )
    else:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@pytest.fixture
def scripted(tmp_path: Path) -> Iterator[Any]:
    made: list[ScriptedEngine] = []

    def make(*answers: bytes | None) -> ScriptedEngine:
        made.append(ScriptedEngine(tmp_path / f"engine{len(made)}.sock", list(answers)))
        return made[-1]

    yield make
    for server in made:
        server.close()


def test_engine_client_keeps_one_connection_and_reads_both_framings(scripted: Any) -> None:
    listing = json.dumps([{"Id": "a" * 64, "Names": ["/x"]}]).encode()
    server = scripted(
        _http("200 OK", b"OK", "Content-Type: text/plain"),
        _http("200 OK", listing, chunked=True),
        _http("200 OK", b'{"Id": "abc", "State": {"Pid": 1}}'),
        _http("100 Continue", b"")[: -len(b"Content-Length: 0\r\n\r\n")]
        + b"\r\n"
        + _http("200 OK", b'{"read": "now"}', chunked=True),
        _http("404 Not Found", b'{"message": "No such container: gone"}'),
        _http("500 Internal Server Error", b'{"message": "boom\\nsecond line"}'),
    )
    with engine.Engine(str(server.path), timeout=2) as api:
        assert api.url == f"unix://{server.path}"
        assert api.ping() == "OK"
        assert api.containers() == json.loads(listing)
        assert api.inspect("abc")["State"]["Pid"] == 1
        assert api.stats("abc") == {"read": "now"}
        with pytest.raises(engine.NotFound, match="No such container: gone"):
            api.inspect("gone")
        with pytest.raises(engine.EngineError, match=r"engine answered 500 .*: boom$") as err:
            api.containers(all=True)
        assert err.value.status == 500
        assert api.connections_opened == 1
    assert server.connections == 1
    assert server.requests == [
        "GET /_ping HTTP/1.1",
        "GET /containers/json HTTP/1.1",
        "GET /containers/abc/json HTTP/1.1",
        "GET /containers/abc/stats?stream=false&one-shot=true HTTP/1.1",
        "GET /containers/gone/json HTTP/1.1",
        "GET /containers/json?all=1 HTTP/1.1",
    ]


def test_engine_client_reconnects_when_the_engine_drops_the_connection(scripted: Any) -> None:
    server = scripted(
        _http("200 OK", b"[]"),
        None,  # the engine closed the kept-alive connection meanwhile
        _http("200 OK", b'{"Version": "20.10"}', "Connection: close"),
        _http("200 OK", b"[1]"),
    )
    with engine.Engine(str(server.path), timeout=2) as api:
        assert api.containers() == []
        assert api.version() == {"Version": "20.10"}  # retried once, transparently
        assert api.containers() == [1]  # the server said close: a new connection
    assert server.connections == 3


def test_engine_client_reports_garbage_and_silence(scripted: Any, tmp_path: Path) -> None:
    server = scripted(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    with engine.Engine(str(server.path), timeout=2) as api, pytest.raises(engine.ProtocolError):
        api.containers()
    silent = scripted(b"")  # accepts, reads the request, never answers
    with engine.Engine(str(silent.path), timeout=0.3) as api:
        started = time.monotonic()
        with pytest.raises(TimeoutError) as err:
            api.containers()
        assert time.monotonic() - started < 1.0
    reason = engine.error_reason(err.value, api.url, 0.3)
    assert reason == f"Docker engine not usable at unix://{silent.path}: no answer within 0.3 s"
    with pytest.raises(FileNotFoundError):
        engine.Engine(str(tmp_path / "missing.sock")).ping()
    dead = tmp_path / "dead.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(dead))
    listener.close()  # the file stays, nobody listens: what a stopped dockerd leaves
    containers, why = collect_containers(engine.Engine(str(dead)))
    assert containers == [] and why is not None and "connection refused" in why


def test_engine_address_follows_docker_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert engine.docker_host() == "unix:///var/run/docker.sock"
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/user/1000/docker.sock")
    api = engine.connect()
    assert isinstance(api, engine.Engine) and api.socket_path == "/run/user/1000/docker.sock"
    assert engine.unix_socket_path("unix://") == "/var/run/docker.sock"
    assert engine.unix_socket_path("http+unix:///x.sock") == "/x.sock"
    assert engine.unix_socket_path("tcp://127.0.0.1:2375") is None
    # tcp:// goes through the Docker SDK (TLS, ssh...), with the same one-line reasons.
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    containers, why = collect_containers(timeout=1)
    assert containers == []
    assert why == (
        "Docker engine not usable at tcp://127.0.0.1:1: "
        "connection refused (is the Docker engine running?)"
    )


# --------------------------------------------------------------- real containers

BURN = "while :; do :; done"
HOLD = (  # ~36 MiB of anonymous memory in three shell variables; `; :` keeps sh alive
    "a=$(head -c 12000000 /dev/urandom); b=$(head -c 12000000 /dev/urandom); "
    "c=$(head -c 12000000 /dev/urandom); echo ready; sleep 300; :"
)
OOM_CHILD = "(x=$(head -c 100000000 /dev/urandom)); echo survived; sleep 300"
OOM_RESTART = (  # OOM-killed on the first run only, then stays up
    "if test -e /data/oomed; then echo back; sleep 300; "
    "else touch /data/oomed; x=$(head -c 100000000 /dev/urandom); fi"
)


def _docker() -> str:
    found = shutil.which("docker")
    assert found, "docker CLI not installed"
    return found


def _wait_for(check: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Five containers under real limits; names unique to this run, always removed."""
    docker = _docker()
    image = busybox_image()
    run_id = uuid.uuid4().hex[:10]
    label = f"io.vots.test.collect={run_id}"
    marker_dir = tmp_path_factory.mktemp("oom-marker")
    names = {k: f"vots-collect-{run_id}-{k}" for k in ("burn", "hold", "oom", "oomr", "quota")}
    specs = {
        "burn": ["--cpus", "0.5", "--cpu-shares", "512", image, "sh", "-c", BURN],
        "hold": [
            "--memory", "64m", "--memory-reservation", "48m", "--pids-limit", "50",
            "--label", "com.docker.compose.service=holder",
            "--label", f"com.docker.compose.project=collect{run_id}",
            "--health-cmd", "true", "--health-interval", "1s",
            image, "sh", "-c", HOLD,
        ],
        "oom": ["--memory", "32m", image, "sh", "-c", OOM_CHILD],
        "oomr": [
            "--memory", "32m", "--restart", "on-failure:3", "-v", f"{marker_dir}:/data",
            image, "sh", "-c", OOM_RESTART,
        ],
        "quota": [
            "--cpu-quota", "30000", "--cpu-period", "100000", "--cpuset-cpus", "0",
            image, "sleep", "300",
        ],
    }  # fmt: skip
    try:
        for key, args in specs.items():
            ok([docker, "run", "-d", "--name", names[key], "--label", label, *args])

        def logs(key: str) -> str:
            return run([docker, "logs", names[key]]).stdout

        def state(key: str) -> dict[str, Any]:
            out = ok([docker, "inspect", "--format", "{{json .}}", names[key]])
            return json.loads(out)

        _wait_for(lambda: "ready" in logs("hold"), "the holder to allocate")
        _wait_for(lambda: "survived" in logs("oom"), "the OOM child to be killed")
        _wait_for(
            lambda: "back" in logs("oomr") and state("oomr")["State"]["Running"],
            "the OOM-killed container to restart",
        )
        yield names
    finally:
        ids = run([docker, "ps", "-aq", "--filter", f"label={label}"]).stdout.split()
        if ids:
            run([docker, "rm", "-f", "-v", *ids])


def _by_name(containers: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in containers}


@pytest.mark.docker
def test_containers_counters_limits_and_oom_kills(lab: dict[str, str]) -> None:
    first = sample()
    time.sleep(2)
    second = sample()
    assert second["docker_error"] is None
    assert _roundtrip(second) == second
    now = _by_name(second["containers"])
    assert set(lab.values()) <= set(now)
    r = rates(first, second)
    assert r["note"] is None
    rated = _by_name(r["containers"])

    burn, burn_rate = now[lab["burn"]], rated[lab["burn"]]
    assert burn["state"] == "running" and burn["stats_source"] == "cgroup"
    assert burn["limits"]["cpus"] == 0.5 and burn["limits"]["cpu_shares"] == 512
    assert burn_rate["note"] is None and burn_rate["cpu_limit"] == 0.5
    assert burn_rate["cpu_pct_of_limit"] > 60, burn_rate
    assert burn_rate["cpu_pct"] <= 60  # the kernel holds it to half a core
    assert burn_rate["throttled_ratio"] > 0 and burn_rate["throttled_s_per_s"] > 0
    assert burn["pids"] == 1 and burn["net"] is not None

    hold, hold_rate = now[lab["hold"]], rated[lab["hold"]]
    assert hold["limits"]["memory"] == 64 * MiB
    assert hold["limits"]["memory_reservation"] == 48 * MiB
    assert hold["limits"]["pids"] == 50 and hold["limits"]["cpus"] is None
    assert hold["memory"]["limit"] == 64 * MiB
    assert 30 * MiB < hold["memory"]["usage"] <= 64 * MiB
    assert hold_rate["mem_pct_of_limit"] > 46
    assert hold["service"] == "holder" and hold["project"].startswith("collect")
    assert hold["health"] in ("starting", "healthy")
    assert hold_rate["cpu_limit"] is None and hold_rate["cpu_pct_of_limit"] is None

    # A child was OOM-killed but the container lives on: only the cgroup counter knows.
    oom = now[lab["oom"]]
    assert oom["state"] == "running" and oom["oom_killed"] is False
    assert oom["oom_kill_count"] is not None and oom["oom_kill_count"] >= 1
    assert oom["limits"]["memory"] == 32 * MiB

    # The main process was OOM-killed and restarted: the engine keeps the last exit.
    oomr = now[lab["oomr"]]
    assert oomr["state"] == "running" and oomr["oom_killed"] is True
    assert oomr["restart_count"] >= 1

    quota = now[lab["quota"]]
    assert quota["limits"]["cpus"] == 0.3 and quota["limits"]["cpuset_cpus"] == "0"
    assert rated[lab["quota"]]["cpu_limit"] == 0.3

    # Memory gauges need no previous sample; CPU rates do.
    lone = _by_name(rates(None, second)["containers"])[lab["hold"]]
    assert lone["note"] == "first sample" and lone["cpu_pct"] is None
    assert lone["mem_pct_of_limit"] == hold_rate["mem_pct_of_limit"]
    restarted = copy.deepcopy(first)
    for c in restarted["containers"]:
        c["started_at"] = "2001-01-01T00:00:00Z"
    again = _by_name(rates(restarted, second)["containers"])[lab["burn"]]
    assert again["note"] == "container restarted since the last sample"
    assert again["cpu_pct"] is None
    gone = copy.deepcopy(first)
    gone["containers"] = [c for c in gone["containers"] if c["name"] != lab["burn"]]
    fresh = _by_name(rates(gone, second)["containers"])[lab["burn"]]
    assert fresh["cpu_pct"] is None and "no previous sample" in fresh["note"]


@pytest.mark.docker
def test_engine_stats_agree_with_the_cgroup_files(lab: dict[str, str]) -> None:
    files, err = collect_containers(source="cgroup")
    assert err is None
    first = sample(source="docker")
    assert first["docker_error"] is None
    files_by, engine_by = _by_name(files), _by_name(first["containers"])
    for name in lab.values():
        a, b = files_by[name], engine_by[name]
        assert a["stats_source"] == "cgroup" and b["stats_source"] == "docker", b["stats_error"]
        assert a["limits"] == b["limits"]
        assert a["memory"]["limit"] == b["memory"]["limit"]
        assert abs(a["memory"]["usage"] - b["memory"]["usage"]) < 4 * MiB
        assert b["cpu"]["usage_ns"] >= a["cpu"]["usage_ns"]  # read later, never less
        assert a["cpu"]["online_cpus"] == b["cpu"]["online_cpus"]
        # The lab's shells fork (sleep, dd) between the two reads: the counts
        # are live, so both must be there and small, not equal.
        assert 1 <= a["pids"] <= 16 and 1 <= b["pids"] <= 16, (a["pids"], b["pids"])
        assert a["net"] is not None and b["net"] is not None
        assert b["net"]["rx_bytes"] >= a["net"]["rx_bytes"]
        assert a["oom_kill_count"] == b["oom_kill_count"]
    # The engine's counters give the same CPU figures.
    time.sleep(1.5)
    second = sample(source="docker")
    burn = _by_name(rates(first, second)["containers"])[lab["burn"]]
    assert burn["note"] is None
    assert burn["cpu_pct_of_limit"] > 60 and burn["throttled_ratio"] > 0, burn


@pytest.mark.docker
def test_engine_client_answers_as_the_sdk_does(lab: dict[str, str]) -> None:
    import docker

    sdk = docker.from_env()
    try:
        with engine.connect(timeout=5) as api:
            assert isinstance(api, engine.Engine)
            assert api.ping() == "OK"
            assert api.version()["ApiVersion"] == sdk.version()["ApiVersion"]
            listed = {c["Id"] for c in api.containers()}
            assert listed == {c["Id"] for c in sdk.api.containers()}
            for name in lab.values():
                mine = api.inspect(name)
                assert mine["Id"] in listed
                ref = sdk.api.inspect_container(name)
                for key in ("Id", "Name", "HostConfig", "Config", "RestartCount"):
                    assert mine[key] == ref[key], key
            raw = api.stats(lab["hold"])
            assert raw["memory_stats"]["limit"] == 64 * MiB
            with pytest.raises(engine.NotFound):
                api.inspect(f"vots-no-such-{uuid.uuid4().hex}")
            assert api.connections_opened == 1  # one kept-alive connection for all calls
    finally:
        sdk.close()
    # A passed-in SDK client is used as is, and left open.
    client = docker.from_env()
    try:
        containers, err = collect_containers(client, source="cgroup")
        assert err is None and set(lab.values()) <= {c["name"] for c in containers}
        assert client.api.containers() is not None
    finally:
        client.close()


@pytest.mark.docker
def test_sample_cost_with_containers_running(lab: dict[str, str]) -> None:
    """What one cron run costs: a fresh interpreter importing everything (reported,
    not asserted: bench/ measures performance)."""
    code = (
        "import json, time\n"
        "t = time.perf_counter()\n"
        "from ops.report.collect import sample\n"
        "s = sample()\n"
        "wall = time.perf_counter() - t\n"
        "status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
        "rss = int(status.split()[0])  # this image's peak; ru_maxrss spans the exec\n"
        "print(json.dumps({'wall': wall, 'collect_s': s['collect_s'], 'rss_kib': rss,\n"
        "    'containers': len(s['containers']), 'error': s['docker_error'],\n"
        "    'sources': sorted({str(c['stats_source']) for c in s['containers']})}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    cost = json.loads(out.stdout)
    assert cost["error"] is None and cost["containers"] >= len(lab)
    assert cost["sources"] == ["cgroup"]
    print(
        f"\nsample cost (fresh process, {cost['containers']} containers): "
        f"{cost['wall'] * 1000:.0f} ms wall incl. imports, {cost['collect_s'] * 1000:.0f} ms "
        f"in sample(), peak RSS {cost['rss_kib'] / 1024:.1f} MiB"
    )
