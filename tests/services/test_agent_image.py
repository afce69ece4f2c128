"""The agent image, end to end: built from services/agent on the local Debian base
(no registry), run as the plan says, asked for an analysis over HTTP.

The image comes from ``tests/support/service_images.py`` (wheelhouse install, a tag
derived from what went into it, so a second run builds nothing). The container runs
with the CPU, memory and pids limits ``vots-ops plan`` gives one agent replica in
the bundled stack.yaml, a read-only root with the plan's tmpfs (the analysers'
temporary files go to /tmp), every capability dropped, no-new-privileges and the
image's own non-root user, and publishes its port on loopback only. It gets the
stack's environment but for the addresses of Redis and rag, which the test does not
start: the agent then caches in process and analyses without context. Everything
the test started is removed, also when it fails.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from ops.plan import fit
from ops.plan.capacity import Allocation
from ops.proc import free_port
from ops.stack import Workload, load_stack, workloads
from tests.support.base_image import debian_base_image
from tests.support.docker import inspect, ok, run
from tests.support.service_containers import (
    BUILD_PACKAGES,
    build_tools_on_path,
    container_logs,
    hardening_args,
    layer_paths,
    limit_args,
    pip_compilers_or_setuptools,
    timed_build,
    timing,
    wait_healthy,
    wait_http,
)
from tests.support.service_images import AGENT, Built, build_image, pins
from tests.support.stacks import BUNDLED

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(3600)]

LABEL = "io.vots.test"
UID = 10003
PORT = 8000
HEALTH_WAIT = 120.0
STOP_WAIT = 30
# The services the test does not start: their addresses stay out of the environment.
NOT_STARTED = ("REDIS_URL", "RAG_URL")
VENV = "/opt/vots-agent/venv"
# One finding for ruff (an unused import) and one for bandit (a shell command), on
# lines the test knows.
SAMPLE = (
    "import os\nimport subprocess\n\n\ndef run(cmd):\n    return subprocess.call(cmd, shell=True)\n"
)
RUFF_LINE = 1
BANDIT_LINE = 6


def _docker() -> str:
    found = shutil.which("docker")
    assert found, "docker is not installed"
    return found


@pytest.fixture(scope="module")
def image() -> Built:
    base = debian_base_image()
    return timed_build(
        "agent", lambda: build_image(AGENT, base, repository="vots-ops-test/agent", label=LABEL)
    )


# --------------------------------------------------------------------------- the container


@dataclass(frozen=True)
class Planned:
    """What the plan of the bundled stack gives one agent replica."""

    alloc: Allocation
    workload: Workload
    environment: dict[str, str]


@dataclass
class Running:
    image: Built
    planned: Planned
    container: dict[str, Any]  # docker inspect
    base_url: str
    ready: dict[str, Any]  # GET /readyz


@pytest.fixture(scope="module")
def planned() -> Planned:
    loaded = load_stack(BUNDLED)
    env = loaded.stack.services["agent"].environment
    return Planned(
        alloc=fit(loaded).by_name()["agent"],
        workload={w.name: w for w in workloads(loaded.stack)}["agent"],
        environment={k: v for k, v in env.items() if k not in NOT_STARTED},
    )


def _create(image: Built, planned: Planned, name: str, label: str, port: int | None) -> None:
    ok([
        _docker(), "create", "--name", name, "--label", label,
        # The image's own HEALTHCHECK, polled every 2 s instead of 15 s.
        "--health-interval", "2s",
        *(["-p", f"127.0.0.1:{port}:{PORT}"] if port else []),
        *limit_args(planned.alloc), *hardening_args(planned.workload),
        *[a for k, v in planned.environment.items() for a in ("-e", f"{k}={v}")],
        image.tag,
    ])  # fmt: skip


def _start_healthy(name: str) -> float:
    """Start the container; the seconds until its health check passed."""
    docker = _docker()
    start = time.monotonic()
    ok([docker, "start", name])
    status = wait_healthy(docker, [name], HEALTH_WAIT)
    took = time.monotonic() - start
    assert status == {name: "healthy"}, f"{status}\n{container_logs(docker, [name])}"
    return took


@pytest.fixture(scope="module")
def running(image: Built, planned: Planned) -> Iterator[Running]:
    docker = _docker()
    suffix = uuid.uuid4().hex[:12]
    name = f"votsagent-{suffix}"
    port = free_port()
    started: list[str] = []
    try:
        _create(image, planned, name, f"{LABEL}=agent-image-{suffix}", port)
        started.append(name)
        timing(f"agent healthy in {_start_healthy(name):.1f}s")
        base_url = f"http://127.0.0.1:{port}"
        ready = wait_http(f"{base_url}/readyz", HEALTH_WAIT)
        assert ready is not None and ready.status_code == 200, (
            f"/readyz: {ready and ready.status_code} {ready and ready.text}\n"
            f"{container_logs(docker, [name])}"
        )
        yield Running(
            image=image,
            planned=planned,
            container=inspect(docker, [name])[0],
            base_url=base_url,
            ready=ready.json(),
        )
    finally:
        if started:
            proc = run([docker, "rm", "-f", "-v", *started], timeout=120)
            assert proc.returncode == 0, f"teardown left {started} behind: {proc.stderr}"


def _exec(c: dict[str, Any], *argv: str) -> str:
    return ok([_docker(), "exec", c["Id"], *argv])


# --------------------------------------------------------------------------- what Docker applied


def test_limits_are_the_plan(running: Running) -> None:
    host = running.container["HostConfig"]
    a = running.planned.alloc
    assert host["NanoCpus"] == a.cpu_limit * 1_000_000
    assert host["Memory"] == a.mem_limit
    assert host["MemoryReservation"] == a.mem_reservation
    assert host["PidsLimit"] == a.pids
    assert host["CpuShares"] == a.cpu_shares


def test_hardened_and_non_root(running: Running) -> None:
    c = running.container
    host = c["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert not host["CapAdd"]
    assert "no-new-privileges:true" in (host["SecurityOpt"] or [])
    assert host["Privileged"] is False
    assert set(host["Tmpfs"] or {}) == set(running.planned.workload.tmpfs) == {"/tmp"}
    assert c["Config"]["User"] == f"{UID}:{UID}"  # the image's user; the test sets none
    assert _exec(c, "id", "-u").strip() == str(UID)
    status = _exec(c, "cat", "/proc/1/status")
    caps = {k: v for k, _, v in (line.partition(":\t") for line in status.splitlines())}
    assert int(caps["CapEff"], 16) == 0, caps["CapEff"]
    assert caps["NoNewPrivs"].strip() == "1"
    bindings = [b for bs in (host["PortBindings"] or {}).values() for b in bs]
    assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings), bindings


# --------------------------------------------------------------------------- what is in the image


def test_image_recipe(running: Running) -> None:
    config = json.loads(ok([_docker(), "image", "inspect", running.image.tag]))[0]["Config"]
    assert config["ExposedPorts"] == {f"{PORT}/tcp": {}}
    assert config["StopSignal"] == "SIGTERM"
    assert config["User"] == f"{UID}:{UID}"
    assert config["Cmd"] == ["vots-agent", "serve", "--host", "0.0.0.0", "--port", str(PORT)]
    test = config["Healthcheck"]["Test"]
    assert test[:3] == ["CMD", "python", "-c"] and f"127.0.0.1:{PORT}/healthz" in test[3], test
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert not config.get("Volumes"), config.get("Volumes")  # nothing to keep: Redis caches


def test_no_pip_and_no_compiler(running: Running) -> None:
    c = running.container
    no_pip = run([_docker(), "exec", c["Id"], "python", "-c", "import pip"])
    assert no_pip.returncode != 0 and "No module named 'pip'" in no_pip.stderr, no_pip
    assert build_tools_on_path(_docker(), c["Id"]) == ""
    packages = _exec(c, "dpkg-query", "-W", "-f", "${Package}\n").split()
    assert not BUILD_PACKAGES & set(packages)
    paths = layer_paths(_docker(), running.image.tag)
    assert len(paths) > 1000, len(paths)
    assert pip_compilers_or_setuptools(paths) == []
    # No .deb archives left by the installs (the local base has no docker-clean hook).
    assert not [p for p in paths if p.startswith("var/cache/apt/archives/") and p.endswith(".deb")]


def test_ruff_is_the_wheels_binary_and_runs_as_the_service_user(running: Running) -> None:
    c = running.container
    where = _exec(
        c, "python", "-c", "from ruff.__main__ import find_ruff_bin; print(find_ruff_bin())"
    )
    assert where.strip() == f"{VENV}/bin/ruff"
    mode = _exec(c, "stat", "-c", "%a %U", f"{VENV}/bin/ruff").split()
    assert mode == ["755", "root"], mode  # executable by the service, writable only by root
    assert _exec(c, f"{VENV}/bin/ruff", "--version").split() == [
        "ruff",
        pins(AGENT.context / "requirements.lock")["ruff"],
    ]


def test_ready_names_the_locked_analysers(running: Running) -> None:
    locked = pins(AGENT.context / "requirements.lock")
    assert running.ready["status"] == "ready", running.ready
    assert running.ready["tools"] == {
        "ruff": locked["ruff"],
        "bandit": locked["bandit"],
        "complexity": f"radon {locked['radon']}",
    }


def test_workers_follow_the_cpu_limit(running: Running) -> None:
    expected = math.ceil(running.planned.alloc.cpu_limit / 1000)
    v2 = run([_docker(), "exec", running.container["Id"], "test", "-e", "/sys/fs/cgroup/cpu.max"])
    if running.ready["workers"] != expected and v2.returncode != 0:
        pytest.xfail(
            "vots_agent.pool.cpu_limit reads cgroup v2's cpu.max only; "
            "this engine's containers see cgroup v1 (cpu.cfs_quota_us)"
        )
    assert running.ready["workers"] == expected, running.ready


# --------------------------------------------------------------------------- what a client sees


def test_analysis_over_http_finds_ruff_and_bandit_findings(running: Running) -> None:
    with httpx.Client(base_url=running.base_url, trust_env=False, timeout=120) as client:
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        start = time.monotonic()
        answer = client.post(
            "/api/v1/analyze_code", json={"files": [{"name": "app.py", "content": SAMPLE}]}
        )
        timing(f"agent: one analysis in {time.monotonic() - start:.2f}s")
        metrics = client.get("/metrics")
    assert answer.status_code == 200, answer.text
    found = {(f["tool"], f["rule_id"]): f for f in answer.json()["findings"]}
    assert ("ruff", "F401") in found and ("bandit", "B602") in found, sorted(found)
    assert found["ruff", "F401"]["start_line"] == RUFF_LINE
    assert found["bandit", "B602"]["start_line"] == BANDIT_LINE
    assert all(f["file"] == "app.py" for f in found.values()), found
    assert metrics.status_code == 200 and "# TYPE" in metrics.text


def test_sigterm_stops_it_cleanly(image: Built, planned: Planned) -> None:
    """``docker stop`` (the image's STOPSIGNAL) ends the server and its workers well
    within the grace period, with exit code 0: no SIGKILL."""
    docker = _docker()
    suffix = uuid.uuid4().hex[:12]
    name = f"votsagent-stop-{suffix}"
    try:
        _create(image, planned, name, f"{LABEL}=agent-image-{suffix}", None)
        _start_healthy(name)
        start = time.monotonic()
        ok([docker, "stop", "-t", str(STOP_WAIT), name], timeout=STOP_WAIT + 60)
        took = time.monotonic() - start
        timing(f"agent: stopped in {took:.1f}s")
        state = inspect(docker, [name])[0]["State"]
        logs = container_logs(docker, [name])
        assert state["ExitCode"] == 0 and not state["OOMKilled"], f"{state}\n{logs}"
        assert took < STOP_WAIT, f"{took:.1f}s\n{logs}"
    finally:
        proc = run([docker, "rm", "-f", "-v", name], timeout=120)
        assert proc.returncode == 0 or "No such container" in proc.stderr, proc.stderr
