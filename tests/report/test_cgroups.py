"""The cgroup file formats, constructed for the layouts this machine lacks and
read for real where it has them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ops.report.cgroups import _kv, parse_blkio_v1, parse_io_stat_v2, parse_mountinfo, parse_net_dev

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]


def _roundtrip(value: Any) -> Any:
    """What the history store gives back: the sample must be plain JSON."""
    return json.loads(json.dumps(value, allow_nan=False))


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
