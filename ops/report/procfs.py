"""The VM's own figures, read straight from /proc without sleeping.

``vots-ops report`` runs from cron every minute, so one reading must stay cheap.
psutil gives the same figures, but importing it and building one ``Process``
object per pid cost more than the reading itself (measured on the cron path:
about 10 ms of CPU and 2 MiB of RSS for a few hundred processes; see
``bench/report_sample.py``). So each reader below mirrors psutil's Linux code
(psutil 5.9-7.x) with exactly its definitions, and psutil itself is the
fallback wherever /proc does not look as expected (``_UseLibrary``). The tests
compare both on the machine they run on.

Only *cumulative* counters are read (CPU seconds, bytes); rates are computed
between two stored samples by ``ops.report.rates``, like sysstat's ``sa1``.
"""

from __future__ import annotations

import heapq
import os
import socket
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ops.report.sample import HostCounters

# Filesystems psutil counts as "physical" whose usage says nothing about free space.
_SKIP_FSTYPES = frozenset({"squashfs", "iso9660", "udf", "erofs", "cramfs"})
BOOT_ID = "/proc/sys/kernel/random/boot_id"


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


def boot_id() -> str | None:
    """This boot's random id: unlike ``btime`` (derived from the wall clock, so it
    moves when the clock is stepped), it changes exactly when the machine reboots."""
    try:
        return _read(BOOT_ID).strip() or None
    except OSError:
        return None


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


def _disk_io(per: Mapping[str, tuple[int, int, int, int, int | None]]) -> dict[str, Any]:
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


def _top_processes(
    psutil: Any, top_n: int
) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
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


def _top(
    rows: list[dict[str, Any]], top_n: int
) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
    by_cpu = heapq.nlargest(top_n, rows, key=lambda r: r["cpu_seconds"] or 0.0)
    by_rss = heapq.nlargest(top_n, rows, key=lambda r: r["rss"] or 0)
    return len(rows), by_cpu, by_rss


def _psutil_host(top_n: int) -> HostCounters:
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
) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
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


def _proc_host(top_n: int) -> HostCounters:
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


def collect_host(top_n: int = 5) -> HostCounters:
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
    rss, create_time), ``boot_id`` (None where the kernel does not expose it).
    """
    try:
        host = _proc_host(top_n)
    except (_UseLibrary, OSError, ValueError, KeyError, IndexError):
        host = _psutil_host(top_n)
    host["boot_id"] = boot_id()
    return host
