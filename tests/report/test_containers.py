"""Containers sampled for real: the cron path's imports, and busybox containers
under real limits (the kernel really throttles and OOM-kills them). Nothing is
mocked; only inputs to ``rates`` are edited to stand for a restart."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops import engine
from ops.report.containers import collect_containers
from ops.report.rates import ContainerRates, rates
from ops.report.sample import ContainerCounters, sample
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
        "import sys, ops.report.sample\n"
        f"heavy = {HEAVY} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


def test_a_whole_sample_needs_no_heavy_module() -> None:
    """The cron path: /proc and the engine's socket, no SDK, psutil, http.client or ssl
    (whether or not an engine answers here)."""
    code = (
        "import sys\n"
        "from ops.report.sample import sample\n"
        "s = sample()\n"
        "assert s['host']['process_count'] > 0\n"
        f"heavy = {HEAVY} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


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
@pytest.mark.slow
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
    # The typed shapes (ContainerCounters, ContainerRates) are what is produced.
    declared = set(ContainerCounters.__annotations__)
    for name in lab.values():
        assert set(now[name]) <= declared, set(now[name]) - declared
        assert set(rated[name]) == ContainerRates.__required_keys__

    burn, burn_rate = now[lab["burn"]], rated[lab["burn"]]
    assert burn["state"] == "running" and burn["stats_source"] == "cgroup"
    assert burn["limits"]["cpus"] == 0.5 and burn["limits"]["cpu_shares"] == 512
    assert burn_rate["note"] is None and burn_rate["cpu_limit_millicores"] == 500
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
    assert hold_rate["cpu_limit_millicores"] is None and hold_rate["cpu_pct_of_limit"] is None

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
    assert rated[lab["quota"]]["cpu_limit_millicores"] == 300

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
            # Only this test's containers are compared: others may come and go between
            # the two listings.
            listed = {c["Id"] for c in api.containers()}
            theirs = {c["Id"] for c in sdk.api.containers()}
            ours = {sdk.api.inspect_container(name)["Id"] for name in lab.values()}
            assert ours <= listed and ours <= theirs
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
        "from ops.report.sample import sample\n"
        "s = sample()\n"
        "wall = time.perf_counter() - t\n"
        "status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
        "rss = int(status.split()[0])  # this image's peak; ru_maxrss spans the exec\n"
        "print(json.dumps({'wall': wall, 'collect_s': s['collect_s'], 'rss_kib': rss,\n"
        "    'containers': len(s['containers']), 'error': s['docker_error'],\n"
        "    'sources': {c['name']: c['stats_source'] for c in s['containers']}}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    cost = json.loads(out.stdout)
    assert cost["error"] is None and cost["containers"] >= len(lab)
    # The lab's containers are read from their cgroup files (others on the host may be
    # stopped or restarting, and are not this test's).
    assert {cost["sources"][name] for name in lab.values()} == {"cgroup"}
    print(
        f"\nsample cost (fresh process, {cost['containers']} containers): "
        f"{cost['wall'] * 1000:.0f} ms wall incl. imports, {cost['collect_s'] * 1000:.0f} ms "
        f"in sample(), peak RSS {cost['rss_kib'] / 1024:.1f} MiB"
    )
