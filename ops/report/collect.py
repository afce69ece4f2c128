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
* ``docker`` and ``psutil`` are imported inside the functions: importing this
  module stays cheap for ``vots-ops --help``. (``import docker`` itself costs
  about 0.1 s and 20 MiB, since it pulls in requests/urllib3.)
* A missing or stuck engine is an expected condition on a VM, not a crash:
  ``collect_containers`` then returns ``([], reason)`` within its timeout.

Every returned structure is plain JSON (dicts, lists, str, int, float, None):
the raw sample is what the history stores.
"""

from __future__ import annotations

import heapq
import os
import socket
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from pathlib import Path
from typing import Any

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

    guest and guest_nice are already included in user and nice in /proc/stat, so
    they are left out of the total (as psutil's own cpu_percent does).
    """
    fields = times._asdict()
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


def _disks(psutil: Any) -> list[dict[str, Any]]:
    """Usage of each real filesystem once: bind mounts of one device are skipped.

    ``disk_partitions(all=False)`` already leaves out pseudo and network
    filesystems (proc, tmpfs, overlay, nfs: a hung NFS server must not hang cron).
    """
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for part in psutil.disk_partitions(all=False):
        if part.fstype in _SKIP_FSTYPES or part.device in seen:
            continue
        try:
            usage = psutil.disk_usage(part.mountpoint)
        except OSError:
            continue
        seen.add(part.device)
        out.append(
            {
                "mountpoint": part.mountpoint,
                "device": part.device,
                "fstype": part.fstype,
                "total": usage.total,
                "used": usage.used,
                "free": usage.free,
                "percent": usage.percent,
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


def _disk_io(psutil: Any) -> dict[str, Any]:
    per = psutil.disk_io_counters(perdisk=True) or {}
    disks = {
        name: {
            "read_bytes": per[name].read_bytes,
            "write_bytes": per[name].write_bytes,
            "read_count": per[name].read_count,
            "write_count": per[name].write_count,
            "busy_ms": getattr(per[name], "busy_time", None),
        }
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


def _net_io(psutil: Any) -> dict[str, Any]:
    per = psutil.net_io_counters(pernic=True) or {}
    nics = {
        name: {
            "bytes_recv": per[name].bytes_recv,
            "bytes_sent": per[name].bytes_sent,
            "packets_recv": per[name].packets_recv,
            "packets_sent": per[name].packets_sent,
            "errors": per[name].errin + per[name].errout,
            "drops": per[name].dropin + per[name].dropout,
        }
        for name in _physical_nics(per)
    }
    return {
        "bytes_recv": sum(n["bytes_recv"] for n in nics.values()),
        "bytes_sent": sum(n["bytes_sent"] for n in nics.values()),
        "nics": nics,
    }


def _top_processes(psutil: Any, top_n: int) -> tuple[int, list[dict[str, Any]], list[dict]]:
    """One pass over /proc: pid, name, cumulative CPU seconds (user + system) and RSS.

    CPU is cumulative since each process started (no second reading, no sleep);
    ``create_time`` lets a later reader tell a reused pid from the same process.
    """
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
    by_cpu = heapq.nlargest(top_n, rows, key=lambda r: r["cpu_seconds"] or 0.0)
    by_rss = heapq.nlargest(top_n, rows, key=lambda r: r["rss"] or 0)
    return len(rows), by_cpu, by_rss


def collect_host(top_n: int = 5) -> dict[str, Any]:
    """One psutil reading of the VM, without sleeping: cumulative counters only.

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
        "disks": _disks(psutil),
        "disk_io": _disk_io(psutil),
        "net_io": _net_io(psutil),
        "process_count": nprocs,
        "top_cpu": top_cpu,
        "top_memory": top_mem,
    }


# ------------------------------------------------------------------------ cgroups


def _read(path: Path) -> str:
    with open(path) as f:
        return f.read()


def _read_int(path: Path) -> int | None:
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
            v1, v2 = parse_mountinfo(_read(Path("/proc/self/mountinfo")))
        except OSError:
            v1, v2 = {}, None
        self.v1 = {c: v1[c] for c in _V1_CONTROLLERS if c in v1}
        self.v2 = v2
        self.version = 1 if "memory" in self.v1 else 2 if v2 else None
        self.clk_tck = os.sysconf("SC_CLK_TCK")
        self.online_cpus = os.sysconf("SC_NPROCESSORS_ONLN")

    @staticmethod
    def _join(mount: tuple[str, str], path: str) -> Path:
        mountpoint, root = mount
        if root != "/" and path.startswith(root):
            path = path[len(root) :]
        return Path(mountpoint) / path.lstrip("/")

    def locate(self, cid: str, pid: int) -> dict[str, Path] | None:
        """controller -> directory (v2: the one directory under the key ``""``)."""
        if self.version is None:
            return None
        from_proc: dict[str, str] = {}
        if pid > 0:
            try:
                for line in _read(Path(f"/proc/{pid}/cgroup")).splitlines():
                    _, controllers, path = line.split(":", 2)
                    if cid in path:
                        for c in controllers.split(",") if controllers else [""]:
                            from_proc[c] = path
            except (OSError, ValueError):
                from_proc = {}
        guesses = (f"/docker/{cid}", f"/system.slice/docker-{cid}.scope")
        dirs: dict[str, Path] = {}
        if self.version == 1:
            for c, mount in self.v1.items():
                candidates = [from_proc[c]] if c in from_proc else list(guesses)
                for path in candidates:
                    d = self._join(mount, path)
                    if d.is_dir():
                        dirs[c] = d
                        break
            return dirs if "memory" in dirs else None
        assert self.v2 is not None
        candidates = [from_proc[""]] if "" in from_proc else list(guesses)
        for path in candidates:
            d = self._join(self.v2, path)
            if d.is_dir():
                return {"": d}
        return None

    def oom_kills(self, dirs: dict[str, Path]) -> int | None:
        """Processes the kernel OOM-killed in this cgroup since it was created
        (v2 memory.events, v1 memory.oom_control; kernels before 4.13 lack it)."""
        try:
            if self.version == 1:
                return _kv(_read(dirs["memory"] / "memory.oom_control")).get("oom_kill")
            return _kv(_read(dirs[""] / "memory.events")).get("oom_kill")
        except (OSError, KeyError):
            return None

    def system_cpu_ns(self) -> int:
        """The engine's ``system_cpu_usage``: the first seven fields of /proc/stat's
        cpu line (user .. softirq) in nanoseconds, so CPU % matches ``docker stats``."""
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return sum(int(v) for v in fields[1:8]) * 1_000_000_000 // self.clk_tck

    def read(self, dirs: dict[str, Path], host_memory: int) -> dict[str, Any]:
        """The counters ``docker stats`` reports, straight from the cgroup files."""
        if self.version == 1:
            cpu_stat = _kv(_read(dirs["cpu"] / "cpu.stat")) if "cpu" in dirs else {}
            system = self.system_cpu_ns()
            usage_ns = int(_read(dirs["cpuacct"] / "cpuacct.usage"))
            mem = dirs["memory"]
            raw_usage = int(_read(mem / "memory.usage_in_bytes"))
            inactive = _kv(_read(mem / "memory.stat")).get("total_inactive_file", 0)
            limit = _read_int(mem / "memory.limit_in_bytes")
            periods = cpu_stat.get("nr_periods")
            throttled = cpu_stat.get("nr_throttled")
            throttled_ns = cpu_stat.get("throttled_time")
            blkio: tuple[int, int] | None = None
            if "blkio" in dirs:
                for name in (
                    "blkio.throttle.io_service_bytes_recursive",
                    "blkio.io_service_bytes_recursive",
                ):
                    path = dirs["blkio"] / name
                    if path.exists():
                        blkio = parse_blkio_v1(_read(path))
                        break
            pids_dir = dirs.get("pids")
        else:
            d = dirs[""]
            system = self.system_cpu_ns()
            cpu_stat = _kv(_read(d / "cpu.stat"))
            usage_ns = cpu_stat["usage_usec"] * 1000
            raw_usage = int(_read(d / "memory.current"))
            inactive = _kv(_read(d / "memory.stat")).get("inactive_file", 0)
            limit = _read_int(d / "memory.max")
            periods = cpu_stat.get("nr_periods")
            throttled = cpu_stat.get("nr_throttled")
            throttled_ns = (
                cpu_stat["throttled_usec"] * 1000 if "throttled_usec" in cpu_stat else None
            )
            io = d / "io.stat"
            blkio = parse_io_stat_v2(_read(io)) if io.exists() else None
            pids_dir = d
        if limit is None or limit >= _NO_LIMIT or limit > host_memory:
            limit = host_memory  # the engine reports host memory for "no limit"
        pids = None
        if pids_dir is not None and (pids_dir / "pids.current").exists():
            pids = int(_read(pids_dir / "pids.current"))
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
    from docker.errors import InvalidVersion

    try:
        raw = api.stats(cid, stream=False, one_shot=True)
    except InvalidVersion:  # engine API < 1.41: two readings, about 2 s
        raw = api.stats(cid, stream=False)
    return _from_docker_stats(raw), time.monotonic()


def _inspect_and_read(
    api: Any, summary: dict[str, Any], source: str, cgroups: _Cgroups, host_memory: int
) -> dict[str, Any]:
    """Inspect one container and, unless ``source`` is "docker", read its cgroup."""
    info = api.inspect_container(summary["Id"])
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
        rx, tx = parse_net_dev(_read(Path(f"/proc/{pid}/net/dev")))
    except (OSError, ValueError, IndexError):
        return None
    return {"rx_bytes": rx, "tx_bytes": tx}


def _exception_chain(exc: BaseException) -> Iterable[BaseException]:
    """The exception and what it wraps (requests/urllib3 nest the OSError in args)."""
    todo, seen = [exc], set()
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        nested = [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args]
        todo.extend(n for n in nested if isinstance(n, BaseException))


def docker_error_reason(exc: BaseException, where: str, timeout: float) -> str:
    """One line saying why the engine could not be used."""
    what = None
    for e in _exception_chain(exc):
        if isinstance(e, FileNotFoundError):
            what = "socket not found (is the Docker engine installed and running?)"
        elif isinstance(e, PermissionError):
            what = "permission denied (run as root or add the user to the docker group)"
        elif isinstance(e, ConnectionRefusedError):
            what = "connection refused (is the Docker engine running?)"
        elif isinstance(e, TimeoutError) or "Timeout" in type(e).__name__:
            what = f"no answer within {timeout:g} s"
        if what:
            break
    if what is None:
        text = str(exc).strip().splitlines()
        what = (text[0] if text else type(exc).__name__)[:200]
    return f"Docker engine not usable at {where}: {what}"


def _where(client: Any) -> str:
    if client is None:
        return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    adapter = getattr(client.api, "_custom_adapter", None)
    socket_path = getattr(adapter, "socket_path", None)
    return f"unix://{socket_path}" if socket_path else str(client.api.base_url)


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
    where = _where(client)
    own = client is None
    try:
        import docker

        if client is None:
            client = docker.from_env(timeout=timeout, max_pool_size=max_workers)
            where = _where(client)
        api = client.api
        summaries = api.containers()
    except Exception as exc:  # any engine failure is reported, never raised
        if own and client is not None:
            client.close()
        return [], docker_error_reason(exc, where, timeout)
    pool: ThreadPoolExecutor | None = None
    try:
        if not summaries:
            return [], None
        import psutil
        from docker.errors import DockerException, NotFound
        from requests.exceptions import RequestException

        # What the engine (or the way to it) can throw; anything else is a bug here.
        engine_errors = (DockerException, RequestException, OSError)

        host_memory = psutil.virtual_memory().total
        cgroups = _Cgroups()
        # The engine's connection pool bounds useful concurrency (more threads
        # would only open and drop extra connections, with a warning each).
        adapter = getattr(api, "_custom_adapter", None)
        workers = max(1, min(max_workers, getattr(adapter, "max_pool_size", 10), len(summaries)))
        futures: dict[int, Future[tuple[dict[str, Any] | None, float]]] = {}

        def ask_engine(i: int) -> None:
            nonlocal pool
            if pool is None:
                pool = ThreadPoolExecutor(workers, thread_name_prefix="vots-ops-stats")
            futures[i] = pool.submit(_engine_stats, api, summaries[i]["Id"])

        if source == "docker":  # start the wait for the engine's tick first
            for i in range(len(summaries)):
                ask_engine(i)
        entries: dict[int, dict[str, Any]] = {}
        raised: list[BaseException] = []
        # Inspect and cgroup reads are a millisecond each: serial beats threads
        # fighting over the GIL on a small VM.
        for i, summary in enumerate(summaries):
            if time.monotonic() > deadline:
                entries[i] = _unreadable(summary, f"no answer within {timeout:g} s")
                continue
            try:
                entries[i] = _inspect_and_read(api, summary, source, cgroups, host_memory)
            except NotFound:
                continue  # removed between the list and the inspect
            except engine_errors as exc:
                raised.append(exc)
                entries[i] = _unreadable(summary, docker_error_reason(exc, where, timeout))
                continue
            if entries[i]["stats_source"] is None and source == "auto":
                ask_engine(i)
        if futures:
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
        if own:
            client.close()


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
