"""The rendered docker-compose.yml, started for real: what Docker applies must be the plan.

One project is brought up per module (two app replicas and a datastore, all on
a busybox image imported locally), every replica container is inspected, and
the project is torn down with ``docker-compose down -v``. Only the stack's own
services start: the nginx and monitoring images are not available here.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ops.files import write_all
from ops.plan import fit
from ops.plan.capacity import Allocation, Plan
from ops.plan.render import render_files
from ops.stack import LoadedStack, Workload, load_stack, workloads
from tests.support.docker import (
    compose_down,
    inspect,
    ok,
    project_containers,
    run,
    wait_healthy,
)
from tests.support.images import busybox_image
from tests.support.stacks import minimal, write_stack

pytestmark = [pytest.mark.docker, pytest.mark.slow]

APPS = ("agent", "redis")
HEALTH_WAIT = 40.0


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is not installed"
    return found


def _stack_data(image: str, tls_dir: Path) -> dict[str, Any]:
    return minimal(
        project="votsdocker",
        host={"cpus": "auto", "memory": "4G", "reserve": {"cpus": 0.25, "memory": "512M"}},
        tls={"certificate": str(tls_dir / "cert.pem"), "key": str(tls_dir / "key.pem")},
        services={
            "agent": {
                "image": image,
                "language": "go",
                "port": 8000,
                "replicas": 2,
                "command": ["httpd", "-f", "-p", "8000", "-h", "/www"],
                "resources": {
                    "cpu_weight": 3,
                    "cpu": {"min": 0.2, "max": 1},
                    "memory": {"min": "32M", "max": "256M"},
                },
                "health": {
                    "path": "/healthz",
                    "interval": "1s",
                    "timeout": "2s",
                    "start_period": "1s",
                },
                "environment": {"LOG_LEVEL": "info", "REDIS_URL": "http://redis:6379/"},
                "depends_on": ["redis"],
                "routes": [{"path": "/api/", "rate_limit": "20r/s"}],
            },
            "redis": {
                "image": image,
                "language": "datastore",
                "port": 6379,
                "command": ["httpd", "-f", "-p", "6379", "-h", "/www"],
                "resources": {
                    "cpu": {"min": "100m", "max": 0.5},
                    "memory": {"min": "16M", "max": "64M"},
                    "pids": 64,
                },
                "health": {
                    "command": ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:6379/healthz"],
                    "interval": "1s",
                    "timeout": "2s",
                    "start_period": "1s",
                },
                "volumes": {"data": "/data"},
            },
        },
        monitoring={"prometheus": False, "node_exporter": False, "cadvisor": False},
    )


@dataclass
class Deployed:
    loaded: LoadedStack
    plan: Plan
    project: str
    compose_file: Path
    containers: dict[str, list[dict[str, Any]]]  # service -> inspect output per replica

    def alloc(self, service: str) -> Allocation:
        return self.plan.by_name()[service]

    def workload(self, service: str) -> Workload:
        return {w.name: w for w in workloads(self.loaded.stack)}[service]

    def replicas(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for service, items in sorted(self.containers.items()):
            for c in items:
                yield service, c


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    docker = _tool("docker")
    compose = _tool("docker-compose")
    image = busybox_image()
    root = tmp_path_factory.mktemp("compose-docker")
    tls = root / "tls"
    tls.mkdir()
    (tls / "cert.pem").write_text("placeholder\n")
    (tls / "key.pem").write_text("placeholder\n")
    loaded = load_stack(write_stack(root, _stack_data(image, tls)))
    plan = fit(loaded)
    out = root / "out"
    write_all(out, render_files(loaded, plan, out))
    compose_file = out / "docker-compose.yml"
    project = f"votsopstest{uuid.uuid4().hex[:12]}"
    base = [compose, "-p", project, "-f", str(compose_file)]
    try:
        ok([*base, "up", "-d", "--no-build", "--no-deps", *APPS], cwd=out, timeout=180)
        containers: dict[str, list[dict[str, Any]]] = {}
        for c in inspect(docker, project_containers(docker, project)):
            containers.setdefault(c["Config"]["Labels"]["com.docker.compose.service"], []).append(c)
        yield Deployed(loaded, plan, project, compose_file, containers)
    finally:
        compose_down(base, docker, project, cwd=out, timeout=180)


def test_host_cpus_auto_matches_the_engine(deployed: Deployed) -> None:
    ncpu = int(ok([_tool("docker"), "info", "--format", "{{.NCPU}}"]).strip())
    assert deployed.plan.host.detected
    assert deployed.plan.host.cpus == ncpu * 1000


def test_every_replica_is_a_running_container(deployed: Deployed) -> None:
    assert set(deployed.containers) == set(APPS), "only the named app services may start"
    for service in APPS:
        items = deployed.containers[service]
        assert len(items) == deployed.alloc(service).replicas
        numbers = sorted(
            int(c["Config"]["Labels"]["com.docker.compose.container-number"]) for c in items
        )
        assert numbers == list(range(1, deployed.alloc(service).replicas + 1))
        for c in items:
            assert c["State"]["Running"], f"{c['Name']} is {c['State']['Status']}"
    assert len(deployed.containers["agent"]) == 2


def test_resources_are_the_plan(deployed: Deployed) -> None:
    for service, c in deployed.replicas():
        a = deployed.alloc(service)
        host = c["HostConfig"]
        assert host["NanoCpus"] == a.cpu_limit * 1_000_000, c["Name"]
        assert host["Memory"] == a.mem_limit, c["Name"]
        assert host["MemoryReservation"] == a.mem_reservation, c["Name"]
        assert host["PidsLimit"] == a.pids, c["Name"]
        assert host["CpuShares"] == a.cpu_shares, c["Name"]
    # The figures differ per service, so a mix-up between services would show.
    agent, redis = deployed.alloc("agent"), deployed.alloc("redis")
    assert (agent.cpu_limit, agent.mem_limit, agent.pids) != (
        redis.cpu_limit,
        redis.mem_limit,
        redis.pids,
    )


def _cgroup(docker: str, container: str) -> dict[str, int]:
    """What the kernel enforces, read from inside the container (cgroup v1 or v2)."""
    script = (
        "if [ -f /sys/fs/cgroup/cgroup.controllers ]; then echo v2;"
        " cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max;"
        " else echo v1; cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max"
        " /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us; fi"
    )
    words = ok([docker, "exec", container, "sh", "-c", script]).split()
    _version, memory, pids, quota, period = words
    return {"memory": int(memory), "pids": int(pids), "quota": int(quota), "period": int(period)}


def test_kernel_enforces_the_plan(deployed: Deployed) -> None:
    docker = _tool("docker")
    for service, c in deployed.replicas():
        a = deployed.alloc(service)
        got = _cgroup(docker, c["Id"])
        assert got["memory"] == a.mem_limit, c["Name"]
        assert got["pids"] == a.pids, c["Name"]
        assert got["quota"] * 1000 == a.cpu_limit * got["period"], c["Name"]


def test_containers_are_hardened(deployed: Deployed) -> None:
    for service, c in deployed.replicas():
        host = c["HostConfig"]
        w = deployed.workload(service)
        assert host["CapDrop"] == ["ALL"], c["Name"]
        assert sorted(host["CapAdd"] or []) == sorted(w.cap_add), c["Name"]
        assert "no-new-privileges:true" in (host["SecurityOpt"] or []), c["Name"]
        assert host["ReadonlyRootfs"] is w.read_only, c["Name"]
        assert "/tmp" in (host["Tmpfs"] or {}), c["Name"]
        assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 5}, c["Name"]
        assert host["Privileged"] is False, c["Name"]
        assert c["Config"]["Labels"]["io.vots.role"] == w.kind
    assert deployed.workload("agent").read_only is True
    assert deployed.workload("redis").read_only is False
    assert deployed.workload("redis").cap_add, (
        "the datastore keeps the capabilities its entrypoint needs"
    )


def test_nothing_is_published_on_the_host(deployed: Deployed) -> None:
    for service, c in deployed.replicas():
        host = c["HostConfig"]
        assert not host["PortBindings"], c["Name"]
        assert host["PublishAllPorts"] is False, c["Name"]
        published = (c["NetworkSettings"]["Ports"] or {}).values()
        assert all(not bindings for bindings in published), c["Name"]
        port = deployed.workload(service).port
        assert f"{port}/tcp" in (c["Config"]["ExposedPorts"] or {}), c["Name"]


def test_logs_are_rotated(deployed: Deployed) -> None:
    for _service, c in deployed.replicas():
        log = c["HostConfig"]["LogConfig"]
        assert log["Type"] == "json-file", c["Name"]
        assert log["Config"].get("max-size") == "10m", c["Name"]
        assert log["Config"].get("max-file") == "3", c["Name"]


def test_networks(deployed: Deployed) -> None:
    docker = _tool("docker")
    backend, frontend = f"{deployed.project}_backend", f"{deployed.project}_frontend"
    nets = {n["Name"]: n for n in json.loads(ok([docker, "network", "inspect", backend, frontend]))}
    assert nets[backend]["Internal"] is True
    assert nets[frontend]["Internal"] is False
    for service, c in deployed.replicas():
        attached = set(c["NetworkSettings"]["Networks"])
        if deployed.workload(service).internal:
            assert attached == {backend}, c["Name"]
        else:
            assert attached == {backend, frontend}, c["Name"]
    assert deployed.workload("redis").internal


def test_datastore_volume_is_mounted(deployed: Deployed) -> None:
    (redis,) = deployed.containers["redis"]
    mounts = {m["Destination"]: m for m in redis["Mounts"]}
    assert mounts["/data"]["Type"] == "volume"
    assert mounts["/data"]["Name"] == f"{deployed.project}_redis.data"
    assert mounts["/data"]["RW"] is True


def test_rendered_healthchecks_pass(deployed: Deployed) -> None:
    docker = _tool("docker")
    ids = [c["Id"] for _s, c in deployed.replicas()]
    status = wait_healthy(docker, ids, HEALTH_WAIT)
    assert set(status.values()) == {"healthy"}, status


def test_runtime_behaviour(deployed: Deployed) -> None:
    docker = _tool("docker")
    agent = deployed.containers["agent"][0]["Id"]
    (redis,) = deployed.containers["redis"]
    # Read-only root, writable tmpfs.
    assert run([docker, "exec", agent, "touch", "/probe"]).returncode != 0
    ok([docker, "exec", agent, "touch", "/tmp/probe"])
    assert run([docker, "exec", redis["Id"], "touch", "/probe"]).returncode == 0
    # No capabilities left and no way to gain any.
    status = ok([docker, "exec", agent, "cat", "/proc/self/status"])
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["CapEff"].strip() == "0000000000000000"
    assert fields["NoNewPrivs"].strip() == "1"
    # The app reaches the datastore by service name over the backend network.
    request = "printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' | nc -w 3 redis 6379"
    reply = ok([docker, "exec", agent, "sh", "-c", request])
    assert reply.startswith("HTTP/1.") and " 200 " in reply.splitlines()[0], reply
    # The datastore sits on the internal network only: an app replica's frontend
    # address answers another app replica but not the datastore.
    agents = deployed.containers["agent"]
    frontend = agents[0]["NetworkSettings"]["Networks"][f"{deployed.project}_frontend"]["IPAddress"]
    probe = f"printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {frontend} 8000"
    assert " 200 " in ok([docker, "exec", agents[1]["Id"], "sh", "-c", probe])
    blocked = run([docker, "exec", redis["Id"], "sh", "-c", probe])
    assert blocked.returncode != 0 and "200" not in blocked.stdout, blocked.stdout


def test_smallest_cpu_limit_starts(tmp_path: Path) -> None:
    """0.01 CPU is the smallest bound the stack accepts, and Docker applies it."""
    docker = _tool("docker")
    compose = _tool("docker-compose")
    image = busybox_image()
    data = _stack_data(image, tmp_path)
    data["services"] = {
        "tiny": {
            "image": image,
            "language": "static",
            "command": ["sleep", "300"],
            "resources": {
                "cpu": {"min": "10m", "max": "10m"},
                "memory": {"min": "8M", "max": "16M"},
            },
        }
    }
    (tmp_path / "services" / "edge").mkdir(parents=True)
    loaded = load_stack(write_stack(tmp_path, data))
    plan = fit(loaded)
    out = tmp_path / "out"
    write_all(out, render_files(loaded, plan, out))
    project = f"votsopstest{uuid.uuid4().hex[:12]}"
    base = [compose, "-p", project, "-f", str(out / "docker-compose.yml")]
    try:
        up = run([*base, "up", "-d", "--no-build", "--no-deps", "tiny"], cwd=out, timeout=120)
        assert up.returncode == 0, up.stderr
        (cid,) = project_containers(docker, project)
        nano = ok([docker, "inspect", "-f", "{{.HostConfig.NanoCpus}}", cid]).strip()
        assert nano == "10000000"
    finally:
        compose_down(base, docker, project, cwd=out, timeout=120)
