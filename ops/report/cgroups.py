"""A container's counters straight from its cgroup files (v1 and v2).

When the engine is local this is the data ``docker stats`` itself reads, in
microseconds instead of the engine's one-second stats tick. The directory of a
container is found once per collection (``Cgroups``) and read with the small
readers of ``ops.report.procfs``.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from ops.report.procfs import _read, _read_bytes, _read_int

_NO_LIMIT = 1 << 62  # cgroup v1 "unlimited" is 0x7FFFFFFFFFFFF000


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


class Cgroups:
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
