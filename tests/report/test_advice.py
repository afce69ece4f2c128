"""From history to advice to a re-planned compose file, through the real commands:
real SQLite files, the sealed CLI, and a real crash-looping container."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.report.history import History, Point
from tests.support.cli import Cli
from tests.support.images import busybox_image
from tests.support.stacks import BUNDLED, minimal, write_stack

GiB, MiB = 1024**3, 1024**2
T0 = 1796119200.0  # 2026-12-01 10:00:00 UTC
OVERSIZED = {"cpus": 4.0, "memory": 8 * GiB, "memory_reservation": 512 * MiB, "cpu_shares": 256}


def _container(name: str, service: str, limits: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "service": service, "project": "vots", "limits": limits or OVERSIZED}


def _samples(
    service: str, start: float, count: int, step: float, replicas: int = 2, seed: int = 7
) -> list[tuple[float, str, dict[str, Any], list[Point]]]:
    """``count`` samples ``step`` seconds apart of ``replicas`` containers using ~0.3
    cores and ~500 MiB under limits of 4 cores and 8 GiB."""
    rng = random.Random(seed)
    names = [f"vots_{service}_{i}" for i in range(1, replicas + 1)]
    raw = {"containers": [_container(n, service) for n in names]}
    out = []
    for k in range(count):
        points = []
        for name in names:
            scope = f"container:{name}"
            points += [
                Point(scope, "cpu_pct", 25 + 10 * math.sin(k / 20) + rng.gauss(0, 2)),
                Point(scope, "mem_usage", 500 * MiB + rng.gauss(0, 10 * MiB)),
                Point(scope, "throttled_ratio", 0.0),
            ]
        out.append((start + k * step, "prod-vm", raw, points))
    return out


def _record(db: Path, *batches: list[tuple[float, str, dict[str, Any], list[Point]]]) -> None:
    """One history from several services' samples, merged in time order (each sample
    carries every container seen so far, as a real run would)."""
    rows = sorted((row for batch in batches for row in batch), key=lambda r: r[0])
    seen: dict[str, dict[str, Any]] = {}
    merged = []
    for ts, host, raw, points in rows:
        for c in raw["containers"]:
            seen[c["name"]] = c
        merged.append((ts, host, {"containers": list(seen.values())}, points))
    with History(db, auto_compact=False) as h:
        h._record_many(merged)


def _two_days(db: Path) -> None:
    _record(db, _samples("agent", T0, 576, 300))


def _short(db: Path) -> None:
    """271 samples a second apart: 4.5 minutes, 10:00:00 to 10:04:30."""
    _record(db, _samples("agent", T0, 271, 1))


def _advice_json(cli: Cli, db: Path, *args: str) -> dict[str, Any]:
    proc = cli.run("report", "recommend", "--db", str(db), "--format", "json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _by_service(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["service"]: s for s in doc["services"]}


def _value_reasons(reasons: list[str]) -> list[str]:
    return [r for r in reasons if r.startswith(("cpu ", "memory "))]


def test_recommend_then_plan_applies_the_advice(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    _two_days(db)
    table = cli.run("report", "recommend", "--db", str(db))
    assert table.returncode == 0, table.stderr
    assert "agent" in table.stdout and "advised" in table.stdout
    assert table.stderr.strip() == "• advice for 1 service(s): agent"
    agent = _by_service(_advice_json(cli, db))["agent"]
    assert agent["status"] == "advised" and agent["in_yaml"]
    # Less than the oversized limits, but above what the replicas actually used.
    assert 350 <= agent["cpu_limit_millicores"] < 4000
    assert agent["cpu_limit_millicores"] % 10 == 0  # the plan's step: nothing lost to rounding
    assert 500 * MiB < agent["memory_limit_bytes"] < 8 * GiB
    assert agent["current"] == {
        "cpu_request_millicores": 250,
        "cpu_limit_millicores": 4000,
        "memory_request_bytes": 512 * MiB,
        "memory_limit_bytes": 8 * GiB,
    }
    # 575 intervals of 5 minutes: 1.997 days, said as 2 d, never as the 14 d window.
    assert agent["data"]["span_s"] == 575 * 300
    assert agent["reasons"][0] == (
        "data: 2 d (2026-12-01 10:00 to 2026-12-03 09:55 UTC), 1152 CPU and 1152 memory samples"
    )
    values = _value_reasons(agent["reasons"])
    assert len(values) == 4 and all(" from 2 d of data: " in r for r in values), values

    advice = tmp_path / "advice.yaml"
    args = ("report", "recommend", "--db", str(db), "--format", "yaml")
    proc = cli.run(*args, "--output-file", str(advice))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == f"✓ wrote {advice}: advice for 1 service(s): agent"
    # The old spelling, --out (a directory everywhere else), still works and says so.
    old = tmp_path / "old.yaml"
    again = cli.run(*args, "--out", str(old))
    assert again.returncode == 0, again.stderr
    assert again.stderr.splitlines()[0] == "warning: --out is deprecated; use --output-file"
    assert old.read_text() == advice.read_text()
    parsed = yaml.safe_load(advice.read_text())
    assert set(parsed["services"]) == {"agent"}

    shutil.copy(BUNDLED, tmp_path / "stack.yaml")
    for context in ("edge", "agent", "rag", "chroma"):  # the bundled stack's build contexts
        (tmp_path / "services" / context).mkdir(parents=True)
    plan = cli.run("plan", "--recommendations", str(advice), "--format", "json")
    assert plan.returncode == 0, plan.stderr
    planned = {s["name"]: s for s in json.loads(plan.stdout)["services"]}
    mine = planned["agent"]
    assert mine["cpu_reservation_millicores"] == agent["cpu_request_millicores"]
    assert mine["memory_reservation_bytes"] == agent["memory_request_bytes"]
    assert mine["memory_limit_bytes"] == agent["memory_limit_bytes"]
    assert planned["rag"]["advice"] is None
    # The bundled VM is full: its 3.5 CPUs go to 10 replicas, and agent's share is less
    # than the advised limit. The plan says so instead of lowering it silently.
    assert mine["cpu_limit_millicores"] < agent["cpu_limit_millicores"]
    (override,) = mine["advice"]["overridden"]
    assert override["key"] == "cpu_limit_millicores"
    assert (override["advised"], override["planned"]) == (
        agent["cpu_limit_millicores"],
        mine["cpu_limit_millicores"],
    )
    warnings = [line for line in plan.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: agent: advised CPU limit {override['advised']}m, planned "
        f"{override['planned']}m: the VM's 3.5 usable CPUs are shared by 10 replicas by "
        "cpu_weight (agent's: 4) and the limits take them all; more CPUs, "
        "host.cpu_overcommit or a higher cpu_weight would give it more"
    ]
    compose = yaml.safe_load((tmp_path / "docker-compose.yml").read_text())
    limits = compose["services"]["agent"]["deploy"]["resources"]["limits"]
    assert round(float(limits["cpus"]) * 1000) == mine["cpu_limit_millicores"]


UNITS = ("_millicores", "_bytes", "_s", "_samples")


def _numeric_keys(obj: Any, path: str = "") -> Iterator[str]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            number = isinstance(v, (int, float)) and not isinstance(v, bool)
            if number or (v is None and k.startswith(("cpu", "memory"))):
                yield f"{path}{k}"
            else:
                yield from _numeric_keys(v, f"{path}{k}.")
    elif isinstance(obj, list):
        for item in obj:
            yield from _numeric_keys(item, path)


def test_recommend_json_names_its_units(cli: Cli, tmp_path: Path) -> None:
    """CPU in millicores, memory in bytes, spans in seconds: the unit in every key."""
    db = tmp_path / "h.sqlite3"
    _two_days(db)
    doc = _advice_json(cli, db)
    keys = set(_numeric_keys(doc))
    unitless = sorted(k for k in keys if not k.endswith(UNITS) and k != "services.oom_kills")
    assert unitless == [], unitless
    assert "services.cpu_request_millicores" in keys
    assert "services.current.memory_limit_bytes" in keys
    assert doc["window_s"] == 14 * 86400 and doc["min_history_s"] == 86400
    assert doc["until"] == "2026-12-03T09:55:00Z"


def test_a_short_history_is_provisional_and_kept_out_of_the_yaml(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    _short(db)
    table = cli.run("report", "recommend", "--db", str(db))
    assert table.returncode == 0, table.stderr
    assert "provisional" in table.stdout
    assert "data: 4.5 min (2026-12-01 10:00 to 10:04 UTC), 542 CPU and 542 memory samples" in (
        table.stdout
    )
    assert table.stderr.strip() == (
        "• advice for 0 service(s); provisional, under 1 d of data: agent "
        "(--include-provisional adds them, --min-history sets the minimum)"
    )
    agent = _by_service(_advice_json(cli, db))["agent"]
    assert agent["status"] == "provisional" and not agent["in_yaml"]
    assert agent["data"]["span_s"] == 270
    assert "provisional: 4.5 min of data, less than the 1 d the advice needs" in agent["reasons"]
    values = _value_reasons(agent["reasons"])
    assert len(values) == 4 and all(" from 4.5 min of data: " in r for r in values), values
    assert not any("14" in r for r in agent["reasons"])

    out = cli.run("report", "recommend", "--db", str(db), "--format", "yaml")
    assert out.returncode == 0, out.stderr
    assert yaml.safe_load(out.stdout) == {"services": {}}
    assert (
        "  # agent: provisional, left out (4.5 min of data, under 1 d; "
        "--include-provisional adds it)\n"
    ) in out.stdout

    asked = cli.run(
        "report", "recommend", "--db", str(db), "--format", "yaml", "--include-provisional"
    )
    assert asked.returncode == 0, asked.stderr
    (entry,) = yaml.safe_load(asked.stdout)["services"].values()
    assert entry["cpu"]["min"] == f"{agent['cpu_request_millicores']}m"
    assert "    # provisional: 4.5 min of data" in asked.stdout
    assert asked.stderr.strip() == "• advice for 1 service(s): agent"

    lowered = _advice_json(cli, db, "--min-history", "2m")
    assert _by_service(lowered)["agent"]["status"] == "advised"
    assert lowered["min_history_s"] == 120


def test_the_summary_counts_only_services_that_got_advice(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    _record(
        db,
        _samples("agent", T0, 576, 300),
        _samples("rag", T0 + 575 * 300 - 270, 271, 1, replicas=1),
        _samples("redis", T0 + 575 * 300 - 2, 3, 1, replicas=1),
    )
    proc = cli.run("report", "recommend", "--db", str(db), "--format", "yaml")
    assert proc.returncode == 0, proc.stderr
    assert set(yaml.safe_load(proc.stdout)["services"]) == {"agent"}
    assert proc.stderr.strip() == (
        "• advice for 1 service(s): agent; provisional, under 1 d of data: rag "
        "(--include-provisional adds them, --min-history sets the minimum); "
        "too few samples: redis"
    )
    statuses = {s: r["status"] for s, r in _by_service(_advice_json(cli, db)).items()}
    assert statuses == {"agent": "advised", "rag": "provisional", "redis": "no-advice"}


def test_a_history_without_container_samples_says_so_in_one_line(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    for _ in range(2):
        assert cli.run("report", "--db", str(db), "--no-docker", "--quiet").returncode == 0
    proc = cli.run("report", "recommend", "--db", str(db))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"error: history {db} has no container samples, only the host's: `vots-ops report` "
        "records containers when it can reach the Docker engine"
    ]


def test_container_samples_outside_the_window_are_said_too(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    later = T0 + 20 * 86400
    _record(db, _samples("agent", T0, 10, 60), [(later, "prod-vm", {"containers": []}, [])])
    proc = cli.run("report", "recommend", "--db", str(db))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: history {db} has no container samples in the 14 d up to its newest sample "
        "(2026-12-21 10:00:00 UTC); use a larger --days"
    ]
    wider = _advice_json(cli, db, "--days", "30")
    assert _by_service(wider)["agent"]["status"] == "no-advice"


def test_recommend_without_history(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "none.sqlite3"
    proc = cli.run("report", "recommend", "--db", str(missing))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: no history at {missing}; run `vots-ops report` (e.g. from cron) first"
    ]
    assert not missing.exists()


def test_min_history_longer_than_the_window_is_refused(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    _two_days(db)
    proc = cli.run("report", "recommend", "--db", str(db), "--days", "1", "--min-history", "2d")
    assert proc.returncode == 2
    assert "--min-history (2 d) is longer than --days (1)" in proc.stderr


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[tuple[Path, Callable[[], None]]]:
    """A directory and the call that makes it read-only: as root (where permission
    bits do not stop anyone) a tmpfs of its own remounted read-only, else mode bits."""
    where = tmp_path / "ro"
    where.mkdir()
    mounted = os.geteuid() == 0
    if mounted:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)],
            check=True,
            capture_output=True,
            timeout=30,
        )

    def freeze() -> None:
        if mounted:
            subprocess.run(
                ["mount", "-o", "remount,ro", str(where)],
                check=True,
                capture_output=True,
                timeout=30,
            )
        else:
            for f in where.iterdir():
                f.chmod(0o444)
            where.chmod(0o555)

    try:
        yield where, freeze
    finally:
        if mounted:
            subprocess.run(["umount", str(where)], check=False, capture_output=True, timeout=30)
        else:
            where.chmod(0o755)


def test_recommend_reads_a_read_only_history(
    cli: Cli, read_only_dir: tuple[Path, Callable[[], None]]
) -> None:
    where, freeze = read_only_dir
    db = where / "h.sqlite3"
    _two_days(db)
    freeze()
    before = {p.name: p.read_bytes() for p in where.iterdir()}
    # The control: a writer is refused here.
    writer = cli.run("report", "--db", str(db), "--no-docker")
    assert writer.returncode == 2 and "read-only" in writer.stderr, writer.stderr
    for fmt in ("table", "yaml", "json"):
        proc = cli.run("report", "recommend", "--db", str(db), "--format", fmt)
        assert proc.returncode == 0, proc.stderr
        assert "agent" in proc.stdout
    assert {p.name: p.read_bytes() for p in where.iterdir()} == before


# --------------------------------------------------------------- a real crash loop

OOM_LOOP = "x=$(head -c 100000000 /dev/urandom)"  # ~100 MB in a shell variable


@pytest.fixture
def crash_loop() -> Iterator[tuple[str, str]]:
    """A busybox container that the kernel OOM-kills under its 32 MiB limit as soon as
    it starts, restarted by the engine again and again; always removed."""
    run_id = uuid.uuid4().hex[:8]
    name, service = f"vots-advice-oom-{run_id}", f"crash{run_id}"
    labels = ["--label", f"com.docker.compose.service={service}",
              "--label", f"com.docker.compose.project=advice{run_id}"]  # fmt: skip
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "--memory", "32m", "--memory-swap", "32m",
         "--restart", "unless-stopped", *labels, busybox_image(), "sh", "-c", OOM_LOOP],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    try:
        yield name, service
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60, check=False)


@pytest.mark.docker
@pytest.mark.slow
def test_a_crash_loop_gets_its_memory_raised(
    cli: Cli, tmp_path: Path, crash_loop: tuple[str, str]
) -> None:
    name, service = crash_loop
    db = tmp_path / "h.sqlite3"
    kills = 0
    for _ in range(10):  # a few real cron-style runs, seconds apart
        proc = cli.run("report", "--db", str(db), "--format", "json")
        assert proc.returncode == 0, proc.stderr
        (mine,) = [c for c in json.loads(proc.stdout)["containers"] if c["name"] == name]
        assert mine["memory_limit_bytes"] == 32 * MiB
        kills += mine["oom_kills"] or 0
        if kills >= 2:
            break
        time.sleep(2)
    assert kills >= 2, "the engine restarted the container without an OOM kill being counted"

    rec = _by_service(_advice_json(cli, db))[service]
    assert rec["status"] == "oom-bump" and rec["in_yaml"]
    assert rec["oom_kills"] == kills
    # Never enough samples (it is dead or restarting at every run), yet memory goes up:
    # KRR's limit + 25% as the request, VPA's +100 MiB bump as the limit.
    assert rec["cpu_request_millicores"] is None and rec["cpu_limit_millicores"] is None
    assert rec["memory_request_bytes"] == 40 * MiB
    assert rec["memory_limit_bytes"] == 132 * MiB
    assert any(r.startswith(f"OOM kills: {kills} (") for r in rec["reasons"]), rec["reasons"]
    memory = [r for r in rec["reasons"] if r.startswith("memory")]
    assert memory and all(f"after {kills} OOM kills from " in r for r in memory), memory

    advice = tmp_path / "advice.yaml"
    proc = cli.run("report", "recommend", "--db", str(db), "--output-file", str(advice))
    assert proc.returncode == 0, proc.stderr
    assert f"{service} (memory only, after OOM kills)" in proc.stderr
    assert yaml.safe_load(advice.read_text())["services"][service] == {
        "memory": {"min": "40M", "max": "132M"}
    }
    # The stack as the container ran: 32 MiB at most. The advice raises it.
    stack = minimal()
    stack["services"] = {
        service: {
            "image": "vots/worker:1",
            "language": "go",
            "resources": {"cpu": {"min": "100m", "max": "500m"}, "memory": {"max": "32M"}},
        }
    }
    write_stack(tmp_path, stack)
    plan = cli.run("plan", "--recommendations", str(advice), "--format", "json", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    (planned,) = [s for s in json.loads(plan.stdout)["services"] if s["name"] == service]
    assert planned["memory_reservation_bytes"] == 40 * MiB
    assert planned["memory_limit_bytes"] == 132 * MiB
    # CPU is left as the stack says.
    assert planned["cpu_reservation_millicores"] == 100
    assert planned["cpu_limit_millicores"] <= 500


def test_services_of_two_compose_projects_are_never_pooled(cli: Cli, tmp_path: Path) -> None:
    """Another project's `agent` is not this stack's: without --project each is advised
    on its own samples (and kept out of the yaml, whose names are one stack's); with
    --project only that project's containers count."""
    db = tmp_path / "h.sqlite3"
    ours = _samples("agent", T0, 576, 300)
    theirs = _samples("agent", T0, 576, 300, seed=9)
    for i, (ts, host, raw, points) in enumerate(theirs):
        rename = {f"vots_agent_{k}": f"other_agent_{k}" for k in (1, 2)}
        containers = [
            {**c, "name": rename[c["name"]], "project": "other"} for c in raw["containers"]
        ]
        moved = [
            Point(p.scope.replace("vots_agent", "other_agent"), p.metric, p.value * 3)
            for p in points
        ]
        theirs[i] = (ts, host, {"containers": containers}, moved)
    _record(db, ours, theirs)
    both = _by_service(_advice_json(cli, db))
    assert set(both) == {"vots/agent", "other/agent"}
    assert both["vots/agent"]["data"]["cpu_samples"] == both["other/agent"]["data"]["cpu_samples"]
    yaml = cli.run("report", "recommend", "--db", str(db), "--format", "yaml").stdout
    assert "  # vots/agent: one of several Compose projects" in yaml
    assert "\n  agent:" not in yaml and "services: {}" in yaml
    only = _by_service(_advice_json(cli, db, "--project", "vots"))
    assert set(only) == {"agent"}
    assert only["agent"]["data"]["cpu_samples"] == both["vots/agent"]["data"]["cpu_samples"]
    assert only["agent"]["cpu_request_millicores"] == both["vots/agent"]["cpu_request_millicores"]
