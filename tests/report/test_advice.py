"""From history to advice to a re-planned compose file, through the real commands."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ops.report.history import History, Point
from tests.support.stacks import BUNDLED

EXE = shutil.which("vots-ops", path=str(Path(sys.executable).parent)) or "vots-ops"
ENV = {**os.environ, "NO_COLOR": "1", "COLUMNS": "160"}
GiB, MiB = 1024**3, 1024**2


def vots(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=120
    )


def _oversized_agent_history(db: Path) -> None:
    """Two days of per-5-minute samples of two agent replicas using ~0.3 cores and
    ~500 MiB under limits of 4 cores and 8 GiB."""
    rng = random.Random(7)
    now = time.time()
    raw = {
        "containers": [
            {
                "name": f"vots_agent_{i}",
                "service": "agent",
                "limits": {
                    "cpus": 4.0,
                    "memory": 8 * GiB,
                    "memory_reservation": 512 * MiB,
                    "cpu_shares": 256,
                },
            }
            for i in (1, 2)
        ]
    }
    with History(db, auto_compact=False) as h:
        for k in range(576):
            ts = now - (576 - k) * 300
            points = []
            for i in (1, 2):
                cpu = 25 + 10 * math.sin(k / 20) + rng.gauss(0, 2)
                mem = 500 * MiB + rng.gauss(0, 10 * MiB)
                scope = f"container:vots_agent_{i}"
                points += [
                    Point(scope, "cpu_pct", cpu),
                    Point(scope, "mem_usage", mem),
                    Point(scope, "throttled_ratio", 0.0),
                ]
            h.record(ts, "prod-vm", raw, points)


def test_recommend_then_plan_applies_the_advice(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    _oversized_agent_history(db)
    table = vots("report", "recommend", "--db", str(db))
    assert table.returncode == 0, table.stderr
    assert "agent" in table.stdout
    data = json.loads(vots("report", "recommend", "--db", str(db), "--format", "json").stdout)
    (agent,) = data
    assert agent["enough_data"]
    # Less than the oversized limits, but above what the replicas actually used.
    assert 350 <= agent["cpu_limit"] < 4000
    assert 500 * MiB < agent["memory_limit"] < 8 * GiB
    assert all(agent["reasons"])

    advice = tmp_path / "advice.yaml"
    proc = vots("report", "recommend", "--db", str(db), "--format", "yaml", "--out", str(advice))
    assert proc.returncode == 0, proc.stderr
    parsed = yaml.safe_load(advice.read_text())
    assert set(parsed["services"]) == {"agent"}

    shutil.copy(BUNDLED, tmp_path / "stack.yaml")
    (tmp_path / "services" / "edge").mkdir(parents=True)
    plan = vots("plan", "--recommendations", str(advice), "--format", "json", cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    planned = {s["name"]: s for s in json.loads(plan.stdout)["services"]}
    assert planned["agent"]["cpu_reservation"] * 1000 == agent["cpu_request"]
    assert planned["agent"]["memory_reservation_bytes"] == agent["memory_request"]
    assert planned["agent"]["memory_limit_bytes"] <= agent["memory_limit"]
    compose = yaml.safe_load((tmp_path / "docker-compose.yml").read_text())
    limits = compose["services"]["agent"]["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) * 1000 <= agent["cpu_limit"]


def test_bad_recommendations_file_is_one_line(tmp_path: Path) -> None:
    shutil.copy(BUNDLED, tmp_path / "stack.yaml")
    bad = tmp_path / "advice.yaml"
    bad.write_text("services:\n  agent:\n    cpu: {min: 2 cores}\n    memory: {min: 1G}\n")
    proc = vots("plan", "--recommendations", str(bad), "--dry-run", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(f"error: {bad}:3: services.agent.cpu.min: expected CPUs")


def test_recommend_without_history(tmp_path: Path) -> None:
    proc = vots("report", "recommend", "--db", str(tmp_path / "none.sqlite3"))
    assert proc.returncode == 2
    assert "no history yet" in proc.stderr
