"""Rates between two samples: real samples around a real CPU burner, and the
cases where no rate may be made up. Only inputs to ``rates`` are edited (a
sample's timestamp or boot time) to stand for a gap or a reboot."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ops.report.rates import HostRates, Rates, rates
from ops.report.sample import HostCounters, Sample, sample

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]


def _roundtrip(value: Any) -> Any:
    """What the history store gives back: the sample must be plain JSON."""
    return json.loads(json.dumps(value, allow_nan=False))


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
    rebooted["host"]["boot_id"] = "00000000-0000-0000-0000-000000000000"
    r = rates(rebooted, cur)
    assert r["note"] == "host rebooted since the last sample" and no_rates(r)
    # A clock step moves btime (it is derived from the wall clock), not boot_id:
    # the same boot, so the monotonic clock still gives the interval.
    stepped = copy.deepcopy(prev)
    stepped["host"]["boot_time"] -= 400 * 86400
    stepped["time"] += 400 * 86400
    assert cur["host"]["boot_id"], "this kernel exposes boot_id"
    assert rates(stepped, cur)["note"] is None
    # Without boot_id (another OS, an old sample), btime decides.
    old = copy.deepcopy(prev)
    old["host"].pop("boot_id")
    old["host"]["boot_time"] -= 86400
    assert rates(old, cur)["note"] == "host rebooted since the last sample"

    assert rates(cur, prev)["note"] == "samples are not in time order"

    backwards = copy.deepcopy(prev)
    backwards["host"]["cpu"]["total"] += 10**6
    r = rates(backwards, cur)
    assert "went backwards" in r["note"] and no_rates(r)


def _keys_fit(value: dict[str, Any], typed: Any) -> None:
    """``value`` has every key its TypedDict requires and none it does not declare."""
    keys = set(value)
    assert typed.__required_keys__ <= keys, typed.__required_keys__ - keys
    assert keys <= typed.__required_keys__ | typed.__optional_keys__, keys - set(
        typed.__annotations__
    )


def test_a_sample_and_its_rates_have_the_typed_shape() -> None:
    """What crosses module boundaries is what the TypedDicts declare (mypy checks
    the code against them; this checks them against what is produced)."""
    first, second = sample(docker=False), sample(docker=False)
    for raw in (first, second):
        _keys_fit(raw, Sample)
        _keys_fit(raw["host"], HostCounters)
    for r in (rates(None, second), rates(first, second)):
        _keys_fit(r, Rates)
        _keys_fit(r["host"], HostRates)
