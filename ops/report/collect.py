"""One sample of the VM and its containers, and rates between two samples.

``vots-ops report`` runs from cron every minute, so a sample has to stay cheap
(about 0.15 s of wall time and 35 MiB). That shapes everything here:

* Only *cumulative* counters are read (CPU seconds, bytes, CFS periods), once and
  without sleeping. Rates are computed afterwards between two stored samples,
  the way sysstat's ``sa1``/``sadc`` do, so no sample ever waits for a second
  reading. ``rates`` refuses to invent a figure across a gap, a reboot or a
  counter reset and says why in ``note``.
* Per-container counters come from the container's cgroup files when this host
  can read them (the engine is local): that is the same data the engine itself
  reads, in microseconds. The engine's stats endpoint is the fallback, queried
  concurrently with ``one_shot=True``. Even one-shot, Docker 20.10 answers only
  on its stats collector's next 1 s tick (measured 0.6-1.0 s per sample), which
  alone would blow the budget.
* Host figures are read from /proc directly, with psutil's exact definitions
  (psutil itself is the fallback where /proc looks different): importing
  psutil and making one Process object per pid cost more than the reading.
* The engine is spoken to by ``ops.report.engine``, a small HTTP/1.1 client
  over its unix socket on the standard library (one kept-alive connection for
  the list and every inspect). The Docker SDK (``import docker`` alone costs
  about 0.1 s and 20 MiB: requests, urllib3) is imported only for ``tcp://``
  or ``ssh://`` hosts and for a client passed in. On the cron path nothing
  heavier than ``socket`` and ``json`` is loaded (measure with
  ``bench/report_sample.py``).
* A missing or stuck engine is an expected condition on a VM, not a crash:
  ``collect_containers`` then returns ``([], reason)`` within its timeout.

Every returned structure is plain JSON (dicts, lists, str, int, float, None):
the raw sample is what the history stores.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import socket
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ops.report import engine as _engine

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor
    from pathlib import Path

SCHEMA = 1
#: Longest interval between two samples that still yields rates (one hour).
MAX_INTERVAL = 3600.0
#: ``boot_time`` is derived from the wall clock; it may move by a second or two.
BOOT_TIME_TOLERANCE = 5.0
#: Default per-call budget for the engine (connect, list, inspect, stats).
DOCKER_TIMEOUT = 3.0
#: Threads waiting on engine stats at once (and our client's connection pool size).
MAX_WORKERS = 16
STATS_SOURCES = ("auto", "cgroup", "docker")

# Filesystems psutil counts as "physical" whose usage says nothing about free space.
_SKIP_FSTYPES = frozenset({"squashfs", "iso9660", "udf", "erofs", "cramfs"})
_NO_LIMIT = 1 << 62  # cgroup v1 "unlimited" is 0x7FFFFFFFFFFFF000

Sample = dict[str, Any]


# --------------------------------------------------------------------------- host


def _cpu_entry(times: Any) -> dict[str, float]:
    """Cumulative seconds of one CPU (or all): busy = total - idle - iowait.

    ``times`` is psutil's named tuple or the same fields as a dict. guest and
    guest_nice are already included in user and nice in /proc/stat, so they are
    left out of the total (as psutil's own cpu_percent does).
    """
    fields = times if isinstance(times, dict) else times._asdict()
    total = sum(fields.values()) - fields.get("guest", 0.0) - fields.get("guest_nice", 0.0)
    idle = fields.get("idle", 0.0)
    iowait = fields.get("iowait", 0.0)
    return {
        "total": round(total, 2),
        "idle": round(idle, 2),
        "iowait": round(iowait, 2),
        "steal": round(fields.get("steal", 0.0), 2),
        "busy": round(total - idle - iowait, 2),
    }


def _disks(partitions: Iterable[Any], usage_of: Any) -> list[dict[str, Any]]:
    """Usage of each real filesystem once: bind mounts of one device are skipped.

    ``partitions`` are (device, mountpoint, fstype, ...) of
    ``disk_partitions(all=False)``, which already leaves out pseudo and network
    filesystems (proc, tmpfs, overlay, nfs: a hung NFS server must not hang cron).
    """
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for part in partitions:
        device, mountpoint, fstype = part[0], part[1], part[2]
        if fstype in _SKIP_FSTYPES or device in seen:
            continue
        try:
            total, used, free, percent = usage_of(mountpoint)
        except OSError:
            continue
        seen.add(device)
        out.append(
            {
                "mountpoint": mountpoint,
                "device": device,
                "fstype": fstype,
                "total": total,
                "used": used,
                "free": free,
                "percent": percent,
            }
        )
    return out


def _whole_disks(names: Iterable[str]) -> list[str]:
    """Disks whose I/O is counted once: backed by a device (not loop, zram, dm, md,
    nor a partition of a disk already counted)."""
    names = list(names)
    found = [n for n in names if os.path.exists(f"/sys/block/{n.replace('/', '!')}/device")]
    if found:
        return found
    return [
        n
        for n in names
        if os.path.isdir(f"/sys/block/{n}") and not n.startswith(("loop", "ram", "zram"))
    ]


def _disk_io(per: dict[str, tuple[int, int, int, int, int | None]]) -> dict[str, Any]:
    """``per``: name -> (read_bytes, write_bytes, read_count, write_count, busy_ms)."""
    disks = {
        name: dict(
            zip(
                ("read_bytes", "write_bytes", "read_count", "write_count", "busy_ms"),
                per[name],
                strict=True,
            )
        )
        for name in _whole_disks(per)
    }
    return {
        "read_bytes": sum(d["read_bytes"] for d in disks.values()),
        "write_bytes": sum(d["write_bytes"] for d in disks.values()),
        "disks": disks,
    }


def _physical_nics(names: Iterable[str]) -> list[str]:
    """Interfaces whose traffic leaves the VM: the kernel files loopback, veth pairs,
    bridges and tunnels under /sys/devices/virtual/net, so summing the rest does not
    count a container's packets twice (veth, docker0, eth0)."""
    names = [n for n in names if n != "lo"]
    found = [
        n
        for n in names
        if not os.path.realpath(f"/sys/class/net/{n}").startswith("/sys/devices/virtual/")
    ]
    return found or [n for n in names if not n.startswith(("veth", "docker", "br-"))]


def _net_io(per: dict[str, tuple[int, int, int, int, int, int]]) -> dict[str, Any]:
    """``per``: name -> (bytes_recv, bytes_sent, packets_recv, packets_sent, errors, drops)."""
    keys = ("bytes_recv", "bytes_sent", "packets_recv", "packets_sent", "errors", "drops")
    nics = {name: dict(zip(keys, per[name], strict=True)) for name in _physical_nics(per)}
    return {
        "bytes_recv": sum(n["bytes_recv"] for n in nics.values()),
        "bytes_sent": sum(n["bytes_sent"] for n in nics.values()),
        "nics": nics,
    }


def _top_processes(psutil: Any, top_n: int) -> tuple[int, list[dict[str, Any]], list[dict]]:
    """One pass over /proc with psutil (the fallback of ``_proc_processes``)."""
    rows: list[dict[str, Any]] = []
    attrs = ["pid", "name", "cpu_times", "memory_info", "create_time"]
    for proc in psutil.process_iter(attrs=attrs, ad_value=None):
        info = proc.info
        cpu = info["cpu_times"]
        mem = info["memory_info"]
        rows.append(
            {
                "pid": info["pid"],
                "name": info["name"],
                "cpu_seconds": round(cpu.user + cpu.system, 2) if cpu else None,
                "rss": mem.rss if mem else None,
                "create_time": info["create_time"],
            }
        )
    return _top(rows, top_n)


def _top(rows: list[dict[str, Any]], top_n: int) -> tuple[int, list[dict[str, Any]], list[dict]]:
    by_cpu = heapq.nlargest(top_n, rows, key=lambda r: r["cpu_seconds"] or 0.0)
    by_rss = heapq.nlargest(top_n, rows, key=lambda r: r["rss"] or 0)
    return len(rows), by_cpu, by_rss


def _psutil_host(top_n: int) -> dict[str, Any]:
    """``collect_host`` through psutil: where /proc is not Linux's (or not as
    ``_proc_host`` expects it). The reference the /proc readers are tested against."""
    import psutil

    vm = psutil.virtual_memory()
    sw = psutil.swap_memory()
    nprocs, top_cpu, top_mem = _top_processes(psutil, top_n)
    return {
        "hostname": socket.gethostname(),
        "boot_time": psutil.boot_time(),
        "cpu_count": psutil.cpu_count(logical=True),
        "cpu": _cpu_entry(psutil.cpu_times()),
        "cpu_per_core": [_cpu_entry(t) for t in psutil.cpu_times(percpu=True)],
        "load_avg": [round(x, 2) for x in psutil.getloadavg()],
        "memory": {"total": vm.total, "available": vm.available, "used": vm.used},
        "swap": {"total": sw.total, "used": sw.used, "free": sw.free},
        "disks": _disks(psutil.disk_partitions(all=False), psutil.disk_usage),
        "disk_io": _disk_io(
            {
                name: (c.read_bytes, c.write_bytes, c.read_count, c.write_count, c.busy_time)
                for name, c in (psutil.disk_io_counters(perdisk=True) or {}).items()
            }
        ),
        "net_io": _net_io(
            {
                name: (
                    c.bytes_recv,
                    c.bytes_sent,
                    c.packets_recv,
                    c.packets_sent,
                    c.errin + c.errout,
                    c.dropin + c.dropout,
                )
                for name, c in (psutil.net_io_counters(pernic=True) or {}).items()
            }
        ),
        "process_count": nprocs,
        "top_cpu": top_cpu,
        "top_memory": top_mem,
    }


# The same figures read straight from /proc: importing psutil and building one
# Process object per pid cost more than the reading (about 10 ms and 2 MiB of a
# cron run). Each reader below mirrors psutil's Linux code (psutil 5.9-7.x) so the
# stored figures are the same; tests compare the two on the machine they run on.

_CPU_FIELDS = (
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice",
)  # fmt: skip
_MOUNT_ESCAPES = (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\"))
_DISK_SECTOR_SIZE = 512  # /proc/diskstats counts 512-byte sectors whatever the device


class _UseLibrary(Exception):
    """/proc is not what the readers expect: psutil knows more layouts."""


def _proc_cpu(stat: bytes, tck: int) -> tuple[dict[str, float], list[dict[str, float]], float]:
    """The all-CPU line, one line per CPU, and btime from /proc/stat."""
    overall: dict[str, float] | None = None
    cores: list[dict[str, float]] = []
    boot = None
    for line in stat.splitlines():
        if line.startswith(b"cpu"):
            values = line.split()
            entry = dict(zip(_CPU_FIELDS, [float(x) / tck for x in values[1:11]], strict=False))
            if overall is None:
                overall = entry
            else:
                cores.append(entry)
        elif line.startswith(b"btime"):
            boot = float(line.split()[1])
    if overall is None or boot is None:
        raise _UseLibrary("no cpu or btime line in /proc/stat")
    return overall, cores, boot


def _proc_memory(meminfo: bytes) -> tuple[dict[str, int], dict[str, int]]:
    """psutil's virtual_memory() total/available/used and swap_memory() total/used/free."""
    mems: dict[bytes, int] = {}
    for line in meminfo.splitlines():
        fields = line.split()
        if len(fields) >= 2:
            mems[fields[0]] = int(fields[1]) * 1024
    total, free = mems[b"MemTotal:"], mems[b"MemFree:"]
    avail = mems.get(b"MemAvailable:", 0)
    if avail <= 0 or b"SwapTotal:" not in mems:
        raise _UseLibrary("kernel without MemAvailable")  # psutil estimates it
    if avail > total:
        avail = free  # inside LXC, as procps and psutil do
    swap_total, swap_free = mems[b"SwapTotal:"], mems[b"SwapFree:"]
    return (
        {"total": total, "available": avail, "used": total - avail},
        {"total": swap_total, "used": swap_total - swap_free, "free": swap_free},
    )


def _unescape_mount(field: str) -> str:
    for code, char in _MOUNT_ESCAPES:
        field = field.replace(code, char)
    return field


def _mounts_text() -> str:
    """The mount table psutil reads: /etc/mtab if it is a file (a link to
    /proc/self/mounts nowadays), else /proc/self/mounts."""
    mounts = "/etc/mtab" if os.path.isfile("/etc/mtab") else "/proc/self/mounts"
    return _read(os.path.realpath(mounts))


def _proc_partitions(filesystems: str, mounts: str) -> list[tuple[str, str, str]]:
    """psutil.disk_partitions(all=False): (device, mountpoint, fstype) of mounts of a
    filesystem type that needs a device (``nodev`` types left out, zfs kept)."""
    fstypes = set()
    for line in filesystems.splitlines():
        line = line.strip()
        if not line.startswith("nodev"):
            fstypes.add(line)
        elif line.split("\t")[-1] == "zfs":
            fstypes.add("zfs")
    out: list[tuple[str, str, str]] = []
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3 or line.startswith("#"):
            continue
        device, mountpoint, fstype = (_unescape_mount(f) for f in fields[:3])
        if device == "none":
            device = ""
        if device in ("/dev/root", "rootfs"):
            raise _UseLibrary("root device needs resolving")  # psutil's RootFsDeviceFinder
        if device and fstype in fstypes:
            out.append((device, mountpoint, fstype))
    return out


def _disk_usage(path: str) -> tuple[int, int, int, float]:
    """psutil.disk_usage(): total, used, free (for users), percent used (of what
    users can have: root's reserve left out)."""
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    used = total - st.f_bfree * st.f_frsize
    free = st.f_bavail * st.f_frsize
    total_user = used + free
    percent = round(float(used) / total_user * 100, 1) if total_user else 0.0
    return total, used, free, percent


def _proc_diskstats(text: str) -> dict[str, tuple[int, int, int, int, int]]:
    """name -> (read_bytes, write_bytes, read_count, write_count, busy_ms) per block
    device and partition, from /proc/diskstats in every layout psutil reads."""
    out: dict[str, tuple[int, int, int, int, int]] = {}
    for line in text.splitlines():
        fields = line.split()
        flen = len(fields)
        if flen == 15:  # Linux 2.4
            name = fields[3]
            reads = int(fields[2])
            _, rsect, _, writes, _, wsect, _, _, busy, _ = map(int, fields[4:14])
        elif flen == 14 or flen >= 18:  # 2.6+ (18: discards, 20: flushes)
            name = fields[2]
            reads, _, rsect, _, writes, _, wsect, _, _, busy, _ = map(int, fields[3:14])
        elif flen == 7:  # a partition on 2.6.25 and before
            name = fields[2]
            reads, rsect, writes, wsect = map(int, fields[3:])
            busy = 0
        elif not fields:
            continue
        else:
            raise _UseLibrary(f"unknown /proc/diskstats layout: {line!r}")
        out[name] = (
            rsect * _DISK_SECTOR_SIZE,
            wsect * _DISK_SECTOR_SIZE,
            reads,
            writes,
            busy,
        )
    return out


def _proc_net_dev(text: str) -> dict[str, tuple[int, int, int, int, int, int]]:
    """name -> (bytes_recv, bytes_sent, packets_recv, packets_sent, errors, drops)."""
    out: dict[str, tuple[int, int, int, int, int, int]] = {}
    for line in text.splitlines()[2:]:
        colon = line.rfind(":")
        if colon <= 0:
            raise _UseLibrary(f"unknown /proc/net/dev line: {line!r}")
        c = [int(x) for x in line[colon + 1 :].split()]
        out[line[:colon].strip()] = (c[0], c[8], c[1], c[9], c[2] + c[10], c[3] + c[11])
    return out


def _proc_processes(
    top_n: int, tck: int, boot: float, page: int
) -> tuple[int, list[dict[str, Any]], list[dict]]:
    """psutil.process_iter's pid, name, cpu_times, memory_info.rss and create_time,
    from /proc/<pid>/stat and statm (stat's own rss field may differ from statm's
    resident, which psutil reports); /proc/<pid>/cmdline only for a name the
    kernel cut at 15 characters, as psutil's name() does.

    A process that exits meanwhile is left out, as process_iter leaves it out.
    """
    encoding, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
    rows: list[dict[str, Any]] = []
    for entry in sorted(int(d) for d in os.listdir("/proc") if d.isdigit()):
        try:
            data = _read_bytes(f"/proc/{entry}/stat")
        except (FileNotFoundError, ProcessLookupError):
            continue  # gone
        except PermissionError:
            rows.append(
                {"pid": entry, "name": None, "cpu_seconds": None, "rss": None, "create_time": None}
            )
            continue
        rpar = data.rfind(b")")
        name = data[data.find(b"(") + 1 : rpar].decode(encoding, errors)
        fields = data[rpar + 2 :].split()
        if len(name) >= 15:
            try:
                cmdline = _read_bytes(f"/proc/{entry}/cmdline").decode(encoding, errors)
            except (FileNotFoundError, ProcessLookupError):
                continue  # gone
            except PermissionError:
                cmdline = ""
            if cmdline:
                sep = "\x00" if cmdline.endswith("\x00") else " "
                if cmdline.endswith(sep):
                    cmdline = cmdline[:-1]
                args = cmdline.split(sep)
                if sep == "\x00" and len(args) == 1 and " " in cmdline:
                    args = cmdline.split(" ")
                extended = os.path.basename(args[0])
                if extended.startswith(name):
                    name = extended
        try:
            rss: int | None = int(_read_bytes(f"/proc/{entry}/statm").split()[1]) * page
        except (FileNotFoundError, ProcessLookupError):
            continue  # gone
        except PermissionError:
            rss = None
        rows.append(
            {
                "pid": entry,
                "name": name,
                "cpu_seconds": round(float(fields[11]) / tck + float(fields[12]) / tck, 2),
                "rss": rss,
                "create_time": float(fields[19]) / tck + boot,
            }
        )
    return _top(rows, top_n)


def _proc_host(top_n: int) -> dict[str, Any]:
    """``collect_host`` from /proc, without psutil (raises ``_UseLibrary``, OSError...)."""
    tck = os.sysconf("SC_CLK_TCK")
    cpu, cores, boot = _proc_cpu(_read_bytes("/proc/stat"), tck)
    memory, swap = _proc_memory(_read_bytes("/proc/meminfo"))
    nprocs, top_cpu, top_mem = _proc_processes(top_n, tck, boot, os.sysconf("SC_PAGE_SIZE"))
    return {
        "hostname": socket.gethostname(),
        "boot_time": boot,
        "cpu_count": os.sysconf("SC_NPROCESSORS_ONLN"),
        "cpu": _cpu_entry(cpu),
        "cpu_per_core": [_cpu_entry(c) for c in cores],
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "memory": memory,
        "swap": swap,
        "disks": _disks(_proc_partitions(_read("/proc/filesystems"), _mounts_text()), _disk_usage),
        "disk_io": _disk_io(_proc_diskstats(_read("/proc/diskstats"))),
        "net_io": _net_io(_proc_net_dev(_read("/proc/net/dev"))),
        "process_count": nprocs,
        "top_cpu": top_cpu,
        "top_memory": top_mem,
    }


def collect_host(top_n: int = 5) -> dict[str, Any]:
    """One reading of the VM, without sleeping: cumulative counters only.

    Read straight from /proc on Linux, with exactly psutil's definitions (psutil
    itself where /proc is not as expected).

    Keys: ``hostname``, ``boot_time`` (epoch s), ``cpu_count`` (logical),
    ``cpu`` and ``cpu_per_core`` (cumulative seconds: total, idle, iowait, steal,
    busy), ``load_avg`` [1, 5, 15 min], ``memory`` (total, available, used),
    ``swap`` (total, used, free), ``disks`` (one entry per real filesystem:
    mountpoint, device, fstype, total, used, free, percent), ``disk_io`` (read/
    write bytes summed over whole disks, and per disk with counts and busy_ms),
    ``net_io`` (bytes recv/sent summed over physical NICs, and per NIC),
    ``process_count``, ``top_cpu`` and ``top_memory`` (pid, name, cpu_seconds,
    rss, create_time).
    """
    try:
        return _proc_host(top_n)
    except (_UseLibrary, OSError, ValueError, KeyError, IndexError):
        return _psutil_host(top_n)


# ------------------------------------------------------------------------ cgroups


def _read_bytes(path: str | Path) -> bytes:
    """A whole (small, virtual) file in as few system calls as possible: no
    buffered or text wrapper objects, which cost more than the read itself."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = [os.read(fd, 65536)]
        while chunks[-1]:
            chunks.append(os.read(fd, 65536))
    finally:
        os.close(fd)
    return b"".join(chunks)


def _read(path: str | Path) -> str:
    return _read_bytes(path).decode()


def _read_int(path: str | Path) -> int | None:
    """An integer file; ``max`` (cgroup v2 for unlimited) is None."""
    text = _read(path).strip()
    return None if text == "max" else int(text)


def _kv(text: str) -> dict[str, int]:
    """``key value`` lines (memory.stat, cpu.stat, memory.events, oom_control)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def parse_blkio_v1(text: str) -> tuple[int, int]:
    """Read/write bytes from blkio.*io_service_bytes_recursive (``8:0 Read 123``)."""
    read = write = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in ("Read", "Write"):
            if parts[1] == "Read":
                read += int(parts[2])
            else:
                write += int(parts[2])
    return read, write


def parse_io_stat_v2(text: str) -> tuple[int, int]:
    """Read/write bytes from cgroup v2 io.stat (``8:0 rbytes=1 wbytes=2 ...``)."""
    read = write = 0
    for line in text.splitlines():
        for field in line.split()[1:]:
            key, _, value = field.partition("=")
            if key == "rbytes":
                read += int(value)
            elif key == "wbytes":
                write += int(value)
    return read, write


def parse_net_dev(text: str) -> tuple[int, int]:
    """rx/tx bytes over a network namespace's interfaces from /proc/<pid>/net/dev,
    loopback excluded as ``docker stats`` does."""
    rx = tx = 0
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        if name.strip() == "lo" or not rest:
            continue
        cols = rest.split()
        rx += int(cols[0])
        tx += int(cols[8])
    return rx, tx


def parse_mountinfo(text: str) -> tuple[dict[str, tuple[str, str]], tuple[str, str] | None]:
    """cgroup mounts from /proc/self/mountinfo: v1 controller -> (mountpoint, root),
    and the v2 (mountpoint, root) if mounted."""
    v1: dict[str, tuple[str, str]] = {}
    v2: tuple[str, str] | None = None
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        root = fields[3].replace("\\040", " ")
        mountpoint = fields[4].replace("\\040", " ")
        if tail[0] == "cgroup2" and v2 is None:
            v2 = (mountpoint, root)
        elif tail[0] == "cgroup":
            for option in tail[2].split(","):
                v1.setdefault(option, (mountpoint, root))
    return v1, v2


_V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "blkio", "pids")


class _Cgroups:
    """Where this host keeps containers' cgroups, detected once per collection.

    cgroup v1 (or hybrid, where the memory controller is still on v1) has one
    directory per controller; v2 has a single directory. The directory of a
    container is taken from /proc/<pid>/cgroup (right for any driver, cgroup
    parent or cgroup namespace) and must contain the container id, so a pid from
    a remote engine can never point at an unrelated local process; without a pid
    the usual layouts are tried: ``docker/<id>`` (cgroupfs driver) and
    ``system.slice/docker-<id>.scope`` (systemd driver).
    """

    def __init__(self) -> None:
        try:
            v1, v2 = parse_mountinfo(_read("/proc/self/mountinfo"))
        except OSError:
            v1, v2 = {}, None
        self.v1 = {c: v1[c] for c in _V1_CONTROLLERS if c in v1}
        self.v2 = v2
        self.version = 1 if "memory" in self.v1 else 2 if v2 else None
        self.clk_tck = os.sysconf("SC_CLK_TCK")
        self.online_cpus = os.sysconf("SC_NPROCESSORS_ONLN")

    @staticmethod
    def _join(mount: tuple[str, str], path: str) -> str:
        mountpoint, root = mount
        if root != "/" and path.startswith(root):
            path = path[len(root) :]
        return os.path.join(mountpoint, path.lstrip("/"))

    def locate(self, cid: str, pid: int) -> dict[str, str] | None:
        """controller -> directory (v2: the one directory under the key ``""``)."""
        if self.version is None:
            return None
        from_proc: dict[str, str] = {}
        if pid > 0:
            try:
                for line in _read(f"/proc/{pid}/cgroup").splitlines():
                    _, controllers, path = line.split(":", 2)
                    if cid in path:
                        for c in controllers.split(",") if controllers else [""]:
                            from_proc[c] = path
            except (OSError, ValueError):
                from_proc = {}
        guesses = (f"/docker/{cid}", f"/system.slice/docker-{cid}.scope")
        dirs: dict[str, str] = {}
        if self.version == 1:
            for c, mount in self.v1.items():
                candidates = [from_proc[c]] if c in from_proc else list(guesses)
                for path in candidates:
                    d = self._join(mount, path)
                    if os.path.isdir(d):
                        dirs[c] = d
                        break
            return dirs if "memory" in dirs else None
        assert self.v2 is not None
        candidates = [from_proc[""]] if "" in from_proc else list(guesses)
        for path in candidates:
            d = self._join(self.v2, path)
            if os.path.isdir(d):
                return {"": d}
        return None

    def oom_kills(self, dirs: dict[str, str]) -> int | None:
        """Processes the kernel OOM-killed in this cgroup since it was created
        (v2 memory.events, v1 memory.oom_control; kernels before 4.13 lack it)."""
        try:
            if self.version == 1:
                return _kv(_read(dirs["memory"] + "/memory.oom_control")).get("oom_kill")
            return _kv(_read(dirs[""] + "/memory.events")).get("oom_kill")
        except (OSError, KeyError):
            return None

    def system_cpu_ns(self) -> int:
        """The engine's ``system_cpu_usage``: the first seven fields of /proc/stat's
        cpu line (user .. softirq) in nanoseconds, so CPU % matches ``docker stats``."""
        fields = _read_bytes("/proc/stat").split(b"\n", 1)[0].split()
        return sum(int(v) for v in fields[1:8]) * 1_000_000_000 // self.clk_tck

    def read(self, dirs: dict[str, str], host_memory: int) -> dict[str, Any]:
        """The counters ``docker stats`` reports, straight from the cgroup files."""
        blkio: tuple[int, int] | None = None
        if self.version == 1:
            cpu_stat = _kv(_read(dirs["cpu"] + "/cpu.stat")) if "cpu" in dirs else {}
            system = self.system_cpu_ns()
            usage_ns = int(_read(dirs["cpuacct"] + "/cpuacct.usage"))
            mem = dirs["memory"]
            raw_usage = int(_read(mem + "/memory.usage_in_bytes"))
            inactive = _kv(_read(mem + "/memory.stat")).get("total_inactive_file", 0)
            limit = _read_int(mem + "/memory.limit_in_bytes")
            periods = cpu_stat.get("nr_periods")
            throttled = cpu_stat.get("nr_throttled")
            throttled_ns = cpu_stat.get("throttled_time")
            if "blkio" in dirs:
                for name in (
                    "/blkio.throttle.io_service_bytes_recursive",
                    "/blkio.io_service_bytes_recursive",
                ):
                    with contextlib.suppress(FileNotFoundError):
                        blkio = parse_blkio_v1(_read(dirs["blkio"] + name))
                        break
            pids_dir = dirs.get("pids")
        else:
            d = dirs[""]
            system = self.system_cpu_ns()
            cpu_stat = _kv(_read(d + "/cpu.stat"))
            usage_ns = cpu_stat["usage_usec"] * 1000
            raw_usage = int(_read(d + "/memory.current"))
            inactive = _kv(_read(d + "/memory.stat")).get("inactive_file", 0)
            limit = _read_int(d + "/memory.max")
            periods = cpu_stat.get("nr_periods")
            throttled = cpu_stat.get("nr_throttled")
            throttled_ns = (
                cpu_stat["throttled_usec"] * 1000 if "throttled_usec" in cpu_stat else None
            )
            with contextlib.suppress(FileNotFoundError):
                blkio = parse_io_stat_v2(_read(d + "/io.stat"))
            pids_dir = d
        if limit is None or limit >= _NO_LIMIT or limit > host_memory:
            limit = host_memory  # the engine reports host memory for "no limit"
        pids = None
        if pids_dir is not None:
            with contextlib.suppress(FileNotFoundError):
                pids = int(_read(pids_dir + "/pids.current"))
        return {
            "cpu": {
                "usage_ns": usage_ns,
                "system_ns": system,
                "online_cpus": self.online_cpus,
                "periods": periods,
                "throttled_periods": throttled,
                "throttled_ns": throttled_ns,
            },
            "memory": {
                "usage": raw_usage - inactive if inactive < raw_usage else raw_usage,
                "limit": limit,
            },
            "blkio": (
                {"read_bytes": blkio[0], "write_bytes": blkio[1]}
                if blkio
                else {"read_bytes": None, "write_bytes": None}
            ),
            "pids": pids,
        }


# ----------------------------------------------------------------------- docker


def _from_docker_stats(raw: dict[str, Any]) -> dict[str, Any] | None:
    """The cumulative counters of one ``/containers/<id>/stats`` answer.

    Memory is usage minus inactive_file (v1: total_inactive_file), the
    ``docker stats`` convention: page cache the kernel can drop is not pressure.
    An empty io_service_bytes_recursive (common on cgroup v2 and on kernels
    without CFQ) means "not reported", so block I/O is None, not 0.
    """
    cpu = raw.get("cpu_stats") or {}
    usage = (cpu.get("cpu_usage") or {}).get("total_usage")
    if not usage and not raw.get("memory_stats"):
        return None  # the engine answers zeros for a container that is not running
    throttling = cpu.get("throttling_data") or {}
    mem = raw.get("memory_stats") or {}
    mstats = mem.get("stats") or {}
    inactive = mstats.get("total_inactive_file", mstats.get("inactive_file", 0))
    mem_usage = mem.get("usage")
    if mem_usage is not None and inactive < mem_usage:
        mem_usage -= inactive
    entries = (raw.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    read = sum(e.get("value", 0) for e in entries if str(e.get("op", "")).lower() == "read")
    write = sum(e.get("value", 0) for e in entries if str(e.get("op", "")).lower() == "write")
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or [])
    return {
        "cpu": {
            "usage_ns": usage,
            "system_ns": cpu.get("system_cpu_usage"),
            "online_cpus": online or None,
            "periods": throttling.get("periods"),
            "throttled_periods": throttling.get("throttled_periods"),
            "throttled_ns": throttling.get("throttled_time"),
        },
        "memory": {"usage": mem_usage, "limit": mem.get("limit")},
        "blkio": (
            {"read_bytes": read, "write_bytes": write}
            if entries
            else {"read_bytes": None, "write_bytes": None}
        ),
        "pids": (raw.get("pids_stats") or {}).get("current"),
        "net": _docker_net(raw.get("networks")),
    }


def _docker_net(networks: dict[str, Any] | None) -> dict[str, int] | None:
    if not networks:
        return None  # host or none network mode: no namespace of its own
    return {
        "rx_bytes": sum(n.get("rx_bytes", 0) for n in networks.values()),
        "tx_bytes": sum(n.get("tx_bytes", 0) for n in networks.values()),
    }


def _cpuset_count(spec: str | None) -> int | None:
    """Number of CPUs in a cpuset like ``0-2,5``."""
    if not spec:
        return None
    count = 0
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        count += int(hi) - int(lo) + 1 if hi else 1
    return count


def _limits(host: dict[str, Any]) -> dict[str, Any]:
    """What ``docker run``/compose set: CPUs (NanoCpus, else CpuQuota/CpuPeriod),
    cpuset, cpu_shares, memory limit and reservation, pids limit; None = unset."""
    nano = host.get("NanoCpus") or 0
    quota = host.get("CpuQuota") or 0
    period = host.get("CpuPeriod") or 100_000
    cpus = nano / 1e9 if nano > 0 else quota / period if quota > 0 else None
    pids = host.get("PidsLimit")
    return {
        "cpus": round(cpus, 4) if cpus is not None else None,
        "cpuset_cpus": host.get("CpusetCpus") or None,
        "cpu_shares": host.get("CpuShares") or None,
        "memory": host.get("Memory") or None,
        "memory_reservation": host.get("MemoryReservation") or None,
        "pids": pids if pids and pids > 0 else None,
    }


def _describe(summary: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    state = info.get("State") or {}
    labels = (info.get("Config") or {}).get("Labels") or summary.get("Labels") or {}
    host = info.get("HostConfig") or {}
    health = state.get("Health")
    return {
        "id": info.get("Id") or summary["Id"],
        "name": (info.get("Name") or "").lstrip("/"),
        "service": labels.get("com.docker.compose.service"),
        "project": labels.get("com.docker.compose.project"),
        "image": (info.get("Config") or {}).get("Image") or summary.get("Image"),
        "state": state.get("Status"),
        "health": health.get("Status") if health else None,
        "started_at": state.get("StartedAt"),
        "restart_count": info.get("RestartCount", 0),
        "oom_killed": bool(state.get("OOMKilled")),
        "network_mode": host.get("NetworkMode"),
        "limits": _limits(host),
    }


_NO_STATS: dict[str, Any] = {
    "cpu": None,
    "memory": None,
    "blkio": None,
    "net": None,
    "pids": None,
}


def _engine_stats(api: Any, cid: str) -> tuple[dict[str, Any] | None, float]:
    """One engine stats reading and when it arrived (runs in the worker pool).

    Docker 20.10 answers even a one-shot request only on its collector's next
    1 s tick, so these calls are issued together: they share one tick.
    """
    return _from_docker_stats(api.stats(cid)), time.monotonic()


def _inspect_and_read(
    api: Any,
    summary: dict[str, Any],
    source: str,
    cgroups: _Cgroups,
    host_memory: int,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Inspect one container and, unless ``source`` is "docker", read its cgroup."""
    info = api.inspect(summary["Id"], timeout=timeout)
    entry = _describe(summary, info)
    entry.update(_NO_STATS)
    entry.update(
        stats_source=None,
        stats_error=None,
        read_mono=None,
        oom_kill_count=None,
        cgroup_version=None,
    )
    pid = (info.get("State") or {}).get("Pid") or 0
    dirs = cgroups.locate(entry["id"], pid)
    if dirs is None:
        entry["stats_error"] = "cgroup not found on this host"
        return entry
    entry["cgroup_version"] = cgroups.version
    entry["oom_kill_count"] = cgroups.oom_kills(dirs)
    if source == "docker":
        return entry
    try:
        entry.update(cgroups.read(dirs, host_memory))
    except (OSError, ValueError, KeyError) as exc:
        entry["stats_error"] = f"cgroup read failed: {exc}"
        return entry
    entry["net"] = _proc_net(pid, entry["network_mode"])
    entry["stats_source"] = "cgroup"
    entry["read_mono"] = time.monotonic()
    return entry


def _proc_net(pid: int, network_mode: str | None) -> dict[str, int] | None:
    """Bytes through the container's own network namespace, like ``docker stats``
    (None for host/none network modes, which have no namespace of their own)."""
    if pid <= 0 or network_mode in ("host", "none"):
        return None
    try:
        rx, tx = parse_net_dev(_read(f"/proc/{pid}/net/dev"))
    except (OSError, ValueError, IndexError):
        return None
    return {"rx_bytes": rx, "tx_bytes": tx}


def docker_error_reason(exc: BaseException, where: str, timeout: float) -> str:
    """One line saying why the engine could not be used (see ``engine.error_reason``)."""
    return _engine.error_reason(exc, where, timeout)


def collect_containers(
    client: Any | None = None,
    timeout: float = DOCKER_TIMEOUT,
    *,
    source: str = "auto",
    max_workers: int = MAX_WORKERS,
) -> tuple[list[dict[str, Any]], str | None]:
    """Cumulative counters of every running container, and why not if no engine.

    One ``containers`` list call, then per container an inspect (limits,
    labels, health, restarts, OOMKilled, pid) and its counters. ``source``:
    ``"cgroup"`` reads the cgroup files only, ``"docker"`` asks the engine only
    (``stats(stream=False, one_shot=True)``), ``"auto"`` (default) reads the
    files and asks the engine for the containers whose cgroup it cannot read.
    Engine stats calls run concurrently (at most ``max_workers`` threads) since
    each waits for the engine's 1 s collector tick; inspects and file reads are
    serial, being faster so on a small VM. ``timeout`` bounds each engine request
    and the whole collection; a container not read in time gets ``stats_error``.

    Returns ``(containers, None)``, or ``([], "one-line reason")`` when the
    engine cannot be reached (no socket, permission denied, no answer). Never
    raises for an engine problem.

    Keys per container: ``id``, ``name``, ``service`` and ``project`` (compose
    labels), ``image``, ``state``, ``health``, ``started_at``, ``restart_count``,
    ``oom_killed`` (the *last* exit only), ``oom_kill_count`` (kernel OOM kills in
    the current cgroup, any process; None if unreadable), ``network_mode``,
    ``limits`` (cpus, cpuset_cpus, cpu_shares, memory, memory_reservation, pids),
    ``cpu`` (usage_ns, system_ns, online_cpus, periods, throttled_periods,
    throttled_ns), ``memory`` (usage without inactive file cache, limit: host
    memory when unlimited, as ``docker stats``), ``blkio`` (read_bytes,
    write_bytes; None = not reported), ``net`` (rx_bytes, tx_bytes; None without
    a namespace of its own), ``pids``, ``stats_source`` ("cgroup" | "docker" |
    None), ``stats_error``, ``read_mono`` (time.monotonic() of the reading),
    ``cgroup_version`` (1, 2, or None when the cgroup was not found).
    """
    if source not in STATS_SOURCES:
        raise ValueError(f"source must be one of {STATS_SOURCES}, got {source!r}")
    deadline = time.monotonic() + timeout
    where = _engine.docker_host() if client is None else "the given Docker client"
    api: Any = None
    try:
        if client is None:
            api = _engine.connect(timeout=timeout, pool_size=max_workers)
        else:
            api = _engine.wrap_client(client)
        where = api.url
        summaries = api.containers()
    except Exception as exc:  # any engine failure is reported, never raised
        if api is not None and client is None:
            api.close()
        return [], docker_error_reason(exc, where, timeout)
    pool: ThreadPoolExecutor | None = None
    try:
        if not summaries:
            return [], None
        # What the engine (or the way to it) can throw; anything else is a bug here.
        engine_errors: tuple[type[BaseException], ...] = (_engine.EngineError, OSError)
        if isinstance(api, _engine.SdkEngine):
            from docker.errors import DockerException
            from requests.exceptions import RequestException

            engine_errors += (DockerException, RequestException)

        host_memory = _host_memory()
        cgroups = _Cgroups()
        # The engine's connection pool bounds useful concurrency.
        workers = max(1, min(max_workers, api.pool_size, len(summaries)))
        futures: dict[int, Future[tuple[dict[str, Any] | None, float]]] = {}

        def ask_engine(i: int) -> None:
            nonlocal pool
            if pool is None:
                from concurrent.futures import ThreadPoolExecutor

                pool = ThreadPoolExecutor(workers, thread_name_prefix="vots-ops-stats")
            futures[i] = pool.submit(_engine_stats, api, summaries[i]["Id"])

        if source == "docker":  # start the wait for the engine's tick first
            for i in range(len(summaries)):
                ask_engine(i)
        entries: dict[int, dict[str, Any]] = {}
        raised: list[BaseException] = []
        # Inspect and cgroup reads are a fraction of a millisecond each, over one
        # kept-alive connection: serial beats threads on a small VM (measured).
        for i, summary in enumerate(summaries):
            left = deadline - time.monotonic()
            if left <= 0:
                entries[i] = _unreadable(summary, f"no answer within {timeout:g} s")
                continue
            try:
                entries[i] = _inspect_and_read(api, summary, source, cgroups, host_memory, left)
            except _engine.NotFound:
                continue  # removed between the list and the inspect
            except engine_errors as exc:
                raised.append(exc)
                entries[i] = _unreadable(summary, docker_error_reason(exc, where, timeout))
                continue
            if entries[i]["stats_source"] is None and source == "auto":
                ask_engine(i)
        if futures:
            from concurrent.futures import wait as wait_futures

            wait_futures(futures.values(), timeout=max(0.0, deadline - time.monotonic()))
        for i, fut in futures.items():
            entry = entries.get(i)
            if entry is None or entry["limits"] is None:
                continue
            if not fut.done():
                entry["stats_error"] = f"engine stats: no answer within {timeout:g} s"
            elif (exc := fut.exception()) is not None:
                if not isinstance(exc, engine_errors):
                    raise exc
                entry["stats_error"] = "engine stats: " + docker_error_reason(exc, where, timeout)
            elif (parsed := fut.result()[0]) is None:
                entry["stats_error"] = "engine returned no stats (not running?)"
            else:
                entry.update(parsed, stats_source="docker", stats_error=None)
                entry["read_mono"] = fut.result()[1]
        out = [entries[i] for i in sorted(entries)]
        if raised and len(raised) == len(summaries):
            # Every inspect failed: the engine went away after listing; say so once.
            return out, docker_error_reason(raised[0], where, timeout)
        return out, None
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if client is None:
            api.close()


def _host_memory() -> int:
    """Physical memory in bytes (MemTotal, what psutil's virtual_memory().total says)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):  # pragma: no cover - not Linux
        import psutil

        return psutil.virtual_memory().total


def _unreadable(summary: dict[str, Any], error: str) -> dict[str, Any]:
    """A listed container whose inspect or stats failed: what the list said, no stats."""
    labels = summary.get("Labels") or {}
    names = summary.get("Names") or []
    return {
        "id": summary["Id"],
        "name": names[0].lstrip("/") if names else None,
        "service": labels.get("com.docker.compose.service"),
        "project": labels.get("com.docker.compose.project"),
        "image": summary.get("Image"),
        "state": summary.get("State"),
        "health": None,
        "started_at": None,
        "restart_count": None,
        "oom_killed": None,
        "network_mode": None,
        "limits": None,
        **_NO_STATS,
        "stats_source": None,
        "stats_error": error,
        "read_mono": None,
        "oom_kill_count": None,
        "cgroup_version": None,
    }


# ------------------------------------------------------------------------ sample


def sample(
    docker: bool = True,
    *,
    top_n: int = 5,
    timeout: float = DOCKER_TIMEOUT,
    client: Any | None = None,
    source: str = "auto",
) -> Sample:
    """One raw sample: host counters, container counters, when, and any engine error.

    Keys: ``schema``, ``time`` (epoch s), ``mono`` (time.monotonic(): intervals
    between two samples of one boot ignore wall-clock steps), ``host``
    (``collect_host``), ``docker`` (whether containers were asked for),
    ``containers`` and ``docker_error`` (``collect_containers``), ``collect_s``
    (what the sample cost in wall time).
    """
    started = time.perf_counter()
    stamp, mono = time.time(), time.monotonic()
    host = collect_host(top_n)
    containers: list[dict[str, Any]] = []
    error: str | None = None
    if docker:
        containers, error = collect_containers(client, timeout, source=source)
    return {
        "schema": SCHEMA,
        "time": stamp,
        "mono": mono,
        "host": host,
        "docker": docker,
        "containers": containers,
        "docker_error": error,
        "collect_s": round(time.perf_counter() - started, 4),
    }


# ------------------------------------------------------------------------- rates


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def _interval(prev: Sample | None, cur: Sample, max_interval: float) -> tuple[float | None, str]:
    """Seconds between two samples, or why there is no usable interval."""
    if prev is None:
        return None, "first sample"
    if prev.get("schema") != cur.get("schema"):
        return None, "previous sample has another format"
    pb, cb = prev["host"]["boot_time"], cur["host"]["boot_time"]
    if abs(cb - pb) > BOOT_TIME_TOLERANCE:
        return None, "host rebooted since the last sample"
    # Same boot: the monotonic clock is shared by all processes and immune to NTP steps.
    dt = cur["mono"] - prev["mono"]
    if dt <= 0:
        return None, "samples are not in time order"
    if dt > max_interval:
        return None, f"gap of {_human(dt)} since the last sample"
    if cur["host"]["cpu"]["total"] < prev["host"]["cpu"]["total"]:
        return None, "host counters went backwards (host rebooted?)"
    return dt, ""


def _pct(num: float, den: float) -> float | None:
    return round(100.0 * num / den, 2) if den > 0 else None


def _per_second(delta: float | None, dt: float | None) -> float | None:
    if delta is None or dt is None or dt <= 0 or delta < 0:
        return None
    return round(delta / dt, 2)


def _delta(cur: Any, prev: Any) -> Any:
    return None if cur is None or prev is None else cur - prev


def _cpu_rates(prev: dict[str, float], cur: dict[str, float]) -> dict[str, float | None]:
    total = cur["total"] - prev["total"]
    return {
        "busy": _pct(cur["busy"] - prev["busy"], total),
        "iowait": _pct(cur["iowait"] - prev["iowait"], total),
        "steal": _pct(cur["steal"] - prev["steal"], total),
    }


def _device_rates(
    prev: dict[str, dict[str, Any]], cur: dict[str, dict[str, Any]], keys: dict[str, str], dt: float
) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for name, now in cur.items():
        before = prev.get(name)
        if before is None:
            continue
        out[name] = {
            label: _per_second(_delta(now.get(key), before.get(key)), dt)
            for label, key in keys.items()
        }
    return out


def _host_rates(prev: Sample | None, cur: Sample, dt: float | None) -> dict[str, Any]:
    none: dict[str, Any] = {
        "cpu_pct": None,
        "iowait_pct": None,
        "steal_pct": None,
        "cpu_pct_per_core": None,
        "disk_read_Bps": None,
        "disk_write_Bps": None,
        "disk_util_pct": None,
        "net_rx_Bps": None,
        "net_tx_Bps": None,
        "disks": None,
        "nics": None,
    }
    if prev is None or dt is None:
        return none
    p, c = prev["host"], cur["host"]
    cpu = _cpu_rates(p["cpu"], c["cpu"])
    cores = None
    if len(p["cpu_per_core"]) == len(c["cpu_per_core"]):
        cores = [
            _cpu_rates(a, b)["busy"]
            for a, b in zip(p["cpu_per_core"], c["cpu_per_core"], strict=True)
        ]
    disks = _device_rates(
        p["disk_io"]["disks"],
        c["disk_io"]["disks"],
        {"read_Bps": "read_bytes", "write_Bps": "write_bytes", "busy_ms_per_s": "busy_ms"},
        dt,
    )
    for d in disks.values():
        busy = d.pop("busy_ms_per_s")
        d["util_pct"] = round(busy / 10.0, 2) if busy is not None else None  # ms/s -> %
    nics = _device_rates(
        p["net_io"]["nics"],
        c["net_io"]["nics"],
        {"rx_Bps": "bytes_recv", "tx_Bps": "bytes_sent"},
        dt,
    )

    def total(rows: dict[str, dict[str, Any]], key: str) -> float | None:
        values = [r[key] for r in rows.values()]
        return None if not values or None in values else round(sum(values), 2)

    utils = [d["util_pct"] for d in disks.values() if d["util_pct"] is not None]
    return {
        "cpu_pct": cpu["busy"],
        "iowait_pct": cpu["iowait"],
        "steal_pct": cpu["steal"],
        "cpu_pct_per_core": cores,
        "disk_read_Bps": total(disks, "read_Bps"),
        "disk_write_Bps": total(disks, "write_Bps"),
        "disk_util_pct": max(utils) if utils else None,
        "net_rx_Bps": total(nics, "rx_Bps"),
        "net_tx_Bps": total(nics, "tx_Bps"),
        "disks": disks,
        "nics": nics,
    }


def _cpu_limit(limits: dict[str, Any] | None) -> float | None:
    if not limits:
        return None
    cpus = limits.get("cpus")
    cpuset = _cpuset_count(limits.get("cpuset_cpus"))
    candidates = [x for x in (cpus, cpuset) if x]
    return min(candidates) if candidates else None


def _container_rates(
    prev: dict[str, Any] | None, cur: dict[str, Any], dt: float | None, note: str
) -> dict[str, Any]:
    mem = cur.get("memory") or {}
    usage = mem.get("usage")
    limits = cur.get("limits") or {}
    out: dict[str, Any] = {
        "id": cur["id"],
        "name": cur.get("name"),
        "service": cur.get("service"),
        "note": None,
        "cpu_limit": _cpu_limit(limits),
        "cpu_pct": None,
        "cpu_pct_of_limit": None,
        "throttled_ratio": None,
        "throttled_s_per_s": None,
        "blk_read_Bps": None,
        "blk_write_Bps": None,
        "net_rx_Bps": None,
        "net_tx_Bps": None,
        # Gauges of the current sample: no previous one needed.
        "mem_usage": usage,
        "mem_pct": _pct(usage, mem["limit"]) if usage is not None and mem.get("limit") else None,
        "mem_pct_of_limit": (
            _pct(usage, limits["memory"]) if usage is not None and limits.get("memory") else None
        ),
        "restarts": None,
        "oom_kills": None,
    }
    if note:
        out["note"] = note
        return out
    if prev is None:
        out["note"] = "no previous sample of this container (new or recreated)"
        return out
    out["restarts"] = _delta(cur.get("restart_count"), prev.get("restart_count"))
    if prev.get("started_at") != cur.get("started_at"):
        out["note"] = "container restarted since the last sample"
        return out
    out["oom_kills"] = _delta(cur.get("oom_kill_count"), prev.get("oom_kill_count"))
    pc, cc = prev.get("cpu"), cur.get("cpu")
    if not pc or not cc:
        out["note"] = "no stats in " + ("the previous sample" if not pc else "this sample")
        return out
    if cc["usage_ns"] < pc["usage_ns"]:
        out["note"] = "container counters went backwards (cgroup recreated)"
        return out
    if prev.get("read_mono") is not None and cur.get("read_mono") is not None:
        dt = cur["read_mono"] - prev["read_mono"]
    d_usage = cc["usage_ns"] - pc["usage_ns"]
    d_system = _delta(cc.get("system_ns"), pc.get("system_ns"))
    online = cc.get("online_cpus")
    if d_system and d_system > 0 and online:
        # docker stats: share of all CPUs' time, scaled so 100% = one full core.
        out["cpu_pct"] = round(d_usage / d_system * online * 100.0, 2)
        if out["cpu_limit"]:
            out["cpu_pct_of_limit"] = round(out["cpu_pct"] / out["cpu_limit"], 2)
    d_periods = _delta(cc.get("periods"), pc.get("periods"))
    d_throttled = _delta(cc.get("throttled_periods"), pc.get("throttled_periods"))
    if d_periods and d_periods > 0 and d_throttled is not None and d_throttled >= 0:
        out["throttled_ratio"] = round(d_throttled / d_periods, 4)
    d_tns = _delta(cc.get("throttled_ns"), pc.get("throttled_ns"))
    out["throttled_s_per_s"] = _per_second(d_tns / 1e9 if d_tns is not None else None, dt)
    pb, cb = prev.get("blkio") or {}, cur.get("blkio") or {}
    out["blk_read_Bps"] = _per_second(_delta(cb.get("read_bytes"), pb.get("read_bytes")), dt)
    out["blk_write_Bps"] = _per_second(_delta(cb.get("write_bytes"), pb.get("write_bytes")), dt)
    pn, cn = prev.get("net") or {}, cur.get("net") or {}
    out["net_rx_Bps"] = _per_second(_delta(cn.get("rx_bytes"), pn.get("rx_bytes")), dt)
    out["net_tx_Bps"] = _per_second(_delta(cn.get("tx_bytes"), pn.get("tx_bytes")), dt)
    return out


def rates(
    prev: Sample | None, cur: Sample, *, max_interval: float = MAX_INTERVAL
) -> dict[str, Any]:
    """Rates between two raw samples, like sysstat computes from sadc's counters.

    Host: ``cpu_pct`` (busy = total - idle - iowait), ``iowait_pct``,
    ``steal_pct``, ``cpu_pct_per_core``, ``disk_read_Bps``/``disk_write_Bps``
    (whole disks), ``disk_util_pct`` (busiest disk, iostat's %util),
    ``net_rx_Bps``/``net_tx_Bps`` (physical NICs), and per device ``disks`` /
    ``nics``. Per container (matched by id): ``cpu_pct`` (docker stats: Δusage /
    Δsystem x online CPUs x 100, so 100 = one core), ``cpu_limit`` and
    ``cpu_pct_of_limit``, ``throttled_ratio`` (throttled / elapsed CFS periods),
    ``throttled_s_per_s``, ``blk_read_Bps``/``blk_write_Bps``,
    ``net_rx_Bps``/``net_tx_Bps``, ``restarts`` and ``oom_kills`` during the
    interval, and the current gauges ``mem_usage``, ``mem_pct`` (of the limit
    the engine reports) and ``mem_pct_of_limit`` (of the configured limit).

    No rate is ever made up: with no previous sample, a reboot, a gap longer
    than ``max_interval``, or counters that went backwards, the rates are None
    and ``note`` says why (the same per container for a new or restarted one).
    Top-level keys: ``time``, ``interval_s``, ``note``, ``host``, ``containers``.
    """
    dt, note = _interval(prev, cur, max_interval)
    before = {c["id"]: c for c in prev.get("containers", [])} if prev else {}
    return {
        "time": cur["time"],
        "interval_s": round(dt, 3) if dt is not None else None,
        "note": note or None,
        "host": _host_rates(prev, cur, dt),
        "containers": [
            _container_rates(before.get(c["id"]), c, dt, note) for c in cur.get("containers", [])
        ],
    }


__all__ = [
    "DOCKER_TIMEOUT",
    "MAX_INTERVAL",
    "SCHEMA",
    "collect_containers",
    "collect_host",
    "docker_error_reason",
    "rates",
    "sample",
]
