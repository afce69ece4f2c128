"""The loop, end to end, on the Docker engine here: plan → deploy → load test →
profile → report → recommend → plan → redeploy → down, all through the CLI.

The stack is the bundled ``stack.yaml`` with what this machine needs changed
and nothing else: a self-signed certificate, the edge and Prometheus on free
loopback ports, a project name of its own, redis with its offline stand-in.
Images are the real ones (``vots-ops images build`` caches them by tag);
what has no image here is left out with ``--without``, each with its reason:

* dashboard: a Next.js app; the npm registry is not reachable;
* cadvisor: no registry, and Debian has no package of it;
* node-exporter, where ``/`` is not a shared mount (its ``/:/host:ro,rslave``
  bind needs one; a VM's systemd makes ``/`` shared, this sandbox does not).

The module deploys once; the tests run in order and each leaves the stack as
the next expects. Two redeploy under a load test through the edge, with the
goal of 0 failed requests: a new agent release (its replicas replaced one at
a time), then the limits ``report recommend`` advised (set on the running
containers). Everything is removed at the end, volumes too.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ops.plan import fit
from ops.stack import load_stack
from tests.support.cli import Cli
from tests.support.docker import force_cleanup, inspect, ok, project_containers
from tests.support.loop_site import WITHOUT, WITHOUT_ARGS, LoopSite, make_site

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(3000)]

BUILD_TIMEOUT = 3000.0
DEPLOY_TIMEOUT = 900.0


@dataclass
class Site:
    where: LoopSite
    cli: Cli

    @property
    def root(self) -> Path:
        return self.where.root

    @property
    def project(self) -> str:
        return self.where.project

    @property
    def https(self) -> str:
        return self.where.https

    def vots(self, *args: str, timeout: float = DEPLOY_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return self.cli.run(*args, timeout=timeout)

    def deploy(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.vots("deploy", "--offline", *WITHOUT_ARGS, *extra)

    def containers(self) -> list[dict[str, Any]]:
        return inspect("docker", project_containers("docker", self.project))

    def of(self, service: str) -> list[dict[str, Any]]:
        label = "com.docker.compose.service"
        return [c for c in self.containers() if c["Config"]["Labels"][label] == service]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("loop")
    where = make_site(root, f"votsloop{uuid.uuid4().hex[:8]}")
    s = Site(where, Cli.in_dir(root, VOTS_OPS_SCENARIOS=str(where.scenarios)))
    try:
        plan = s.vots("plan", timeout=120)
        assert plan.returncode == 0, plan.stderr
        built = s.vots("images", "build", "--offline", *WITHOUT_ARGS, timeout=BUILD_TIMEOUT)
        assert built.returncode == 0, built.stderr + built.stdout
        yield s
    finally:
        s.vots("down", "--volumes", "--yes", timeout=300)
        force_cleanup("docker", s.project)


# --------------------------------------------------------------------------- 1. deploy


def test_deploy_brings_every_service_up_healthy_and_as_planned(site: Site) -> None:
    proc = site.deploy("--format", "json")
    assert proc.returncode == 0, proc.stderr[-5000:]
    result = json.loads(proc.stdout)
    loaded = load_stack(site.root / "stack.yaml")
    plan = fit(loaded).by_name()
    wanted = {name for name in plan if name not in WITHOUT}
    assert set(result["actions"]) == wanted
    status = result["status"]
    assert status["ok"] and status["missing"] == []
    assert sorted(status["omitted"]) == sorted(WITHOUT)
    for service in wanted:
        containers = site.of(service)
        assert len(containers) == plan[service].replicas, service
        for c in containers:
            host = c["HostConfig"]
            a = plan[service]
            assert c["State"]["Health"]["Status"] == "healthy", (service, c["State"])
            assert host["NanoCpus"] == a.cpu_limit * 1_000_000, service
            assert host["Memory"] == a.mem_limit, service
            assert host["MemoryReservation"] == a.mem_reservation, service
            assert host["PidsLimit"] == a.pids, service
            assert host["CapDrop"] == ["ALL"] and host["ReadonlyRootfs"] is True, service
            assert "no-new-privileges:true" in host["SecurityOpt"], service
            for bindings in (c["NetworkSettings"]["Ports"] or {}).values():
                for b in bindings or []:  # nothing of this test's published beyond loopback
                    assert b["HostIp"] == "127.0.0.1", (service, b)
    # The offline stand-ins are what they are, never the upstream name.
    redis = site.of("redis")[0]
    assert redis["Config"]["Image"].startswith("vots-standin/redis:")
    assert redis["Config"]["Labels"]["io.vots.standin"] == "redis:7.2-alpine"


def test_a_second_deploy_changes_nothing(site: Site) -> None:
    before = {c["Id"] for c in site.containers()}
    proc = site.deploy("--format", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    actions = json.loads(proc.stdout)["actions"]
    assert all(a.startswith("unchanged") for a in actions.values()), actions
    assert {c["Id"] for c in site.containers()} == before


def test_status_says_healthy_and_marks_the_stand_ins(site: Site) -> None:
    proc = site.vots("status", "--format", "json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["ok"]
    standins = {r["service"]: r["standin_for"] for r in status["containers"] if r["standin_for"]}
    assert standins["redis"] == "redis:7.2-alpine"
    assert standins["prometheus"].startswith("prom/prometheus:")
    assert all(r["state"] == "running" and r["health"] == "healthy" for r in status["containers"])
    assert all(r["differences"] == [] for r in status["containers"])


# --------------------------------------------------------------------------- 2. load


def test_the_edge_speaks_http2_over_tls_to_the_real_services(site: Site) -> None:
    # The certificate names the stack's domain: connect to loopback, verify that name.
    context = ssl.create_default_context(cafile=str(site.where.certificate))
    with httpx.Client(http2=True, verify=context, timeout=30) as client:
        r = client.post(
            f"{site.https}/api/v1/analyze_code",
            json={"code": "import os\nos.system(input())\n", "language": "python"},
            headers={"host": "vots.example.com"},
            extensions={"sni_hostname": "vots.example.com"},
        )
    assert r.http_version == "HTTP/2", r.http_version
    assert r.status_code == 200, r.text
    rules = {f["rule_id"] for f in r.json()["findings"]}
    assert "B605" in rules  # bandit, from the real agent in its container


def test_loadtest_through_the_edge_passes_its_slos(site: Site) -> None:
    proc = site.vots(
        "loadtest", "through-edge", "--host", site.https, "--format", "json", timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    result = json.loads(proc.stdout)
    assert result["verdict"] == "pass"
    assert {"POST /api/v1/analyze_code", "GET /api/v1/search"} <= set(result["endpoints"])
    assert result["overall"]["requests"] > 100 and result["overall"]["failures"] == 0


# --------------------------------------------------------------------------- 3. profile


def test_profile_finds_the_analysis_code_in_the_agent_replicas(site: Site) -> None:
    load = site.cli.start(
        "loadtest", "through-edge", "--host", site.https, "--duration", "40s", "--format", "json"
    )
    try:
        proc = site.vots("profile", "agent", "--duration", "12s", "--format", "json", timeout=180)
    finally:
        load.communicate(timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    profile = json.loads(proc.stdout)
    containers = {r["container"] for r in profile["meta"]["replicas"]}
    assert containers == {c["Name"].lstrip("/") for c in site.of("agent")}
    top = [t["function"] for t in profile["top"][:40]]
    analysis = [
        f for f in top if any(k in f for k in ("bandit/", "radon/", "vots_agent/", "ast.py"))
    ]
    assert analysis, top


# --------------------------------------------------------------------------- 4. report


def test_report_shows_each_container_against_its_planned_limit(site: Site) -> None:
    db = site.root / "history.sqlite3"
    proc = site.vots(
        "report", "--stack", "stack.yaml", "--db", str(db), "--format", "json", timeout=120
    )
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    text = json.dumps(report)
    for c in site.of("agent"):
        assert c["Name"].lstrip("/") in text


def test_prometheus_in_the_stack_has_every_deployed_target_up(site: Site) -> None:
    deadline = time.monotonic() + 120
    while True:
        targets = httpx.get(f"{site.where.prometheus}/api/v1/targets", timeout=10).json()
        active = targets["data"]["activeTargets"]
        jobs: dict[str, list[str]] = {}
        for t in active:
            jobs.setdefault(t["labels"]["job"], []).append(t["health"])
        deployed = {j: h for j, h in jobs.items() if j not in WITHOUT}
        if deployed and all(all(x == "up" for x in h) for h in deployed.values()):
            break
        assert time.monotonic() < deadline, jobs
        time.sleep(2)
    assert len(deployed["agent"]) == 2  # both replicas, found through DNS
    assert {"prometheus", "agent", "rag"} <= set(deployed)


# --------------------------------------------------------------------------- 5. recommend, redeploy


def test_an_agent_change_is_redeployed_under_load_without_a_failed_request(site: Site) -> None:
    import yaml

    path = site.root / "stack.yaml"
    data = yaml.safe_load(path.read_text())
    data["services"]["agent"]["environment"]["RELEASE"] = "2"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    plan = site.vots("plan", timeout=120)
    assert plan.returncode == 0, plan.stderr
    old = site.of("agent")
    load = site.cli.start_load("agent-redeploy", site.https, site.root / "runs")
    try:
        redeploy = site.deploy("--drain-timeout", "60s", "--format", "json")
    finally:
        out, err = load.communicate(timeout=600)
    assert redeploy.returncode == 0, redeploy.stderr[-5000:]
    deployed = json.loads(redeploy.stdout)
    assert deployed["actions"]["agent"] == "rolled 2 replica(s), one at a time"
    assert all(a.startswith("unchanged") for n, a in deployed["actions"].items() if n != "agent"), (
        deployed["actions"]
    )
    new = site.of("agent")
    assert not {c["Id"] for c in new} & {c["Id"] for c in old}
    assert all("RELEASE=2" in c["Config"]["Env"] for c in new)
    result = json.loads(out)
    overall = result["overall"]
    assert overall["requests"] > 500, overall
    assert overall["failures"] == 0, (result["errors"], err[-2000:])
    # The edge was pinned while replicas left, then given its planned file back.
    upstreams = (site.root / "nginx" / "upstreams.conf").read_text()
    assert "server agent:8000" in upstreams and "rolling agent" not in upstreams


def test_recommended_limits_are_applied_under_load_without_a_failed_request(site: Site) -> None:
    # The advice lowers the agent's limits, and the water-fill hands what it frees
    # to the others: every service's limits move and nothing else does, so deploy
    # sets them on the running containers (docker update) and replaces none.
    db = site.root / "history.sqlite3"
    # KRR wants 100 CPU and 100 memory points: 60 samples of the two agent replicas
    # (cron would take an hour at one a minute; the figures are the same kind).
    sampling = site.cli.start(
        "loadtest", "through-edge", "--host", site.https, "--duration", "60s", "--format", "json"
    )
    try:
        for _ in range(60):
            sampled = site.vots("report", "--db", str(db), "-q", timeout=180)
            assert sampled.returncode in (0, 1), sampled.stderr
            time.sleep(0.3)
    finally:
        sampling.communicate(timeout=300)
    advice = site.root / "recommendations.yaml"
    rec = site.vots(
        "report", "recommend", "--db", str(db), "--project", site.project,
        "--include-provisional", "--format", "yaml",
        "--output-file", str(advice), timeout=120,
    )  # fmt: skip
    assert rec.returncode == 0, rec.stderr
    plan = site.vots("plan", "--recommendations", str(advice), timeout=120)
    assert plan.returncode == 0, plan.stderr
    loaded = load_stack(site.root / "stack.yaml")
    from ops.report.advice import apply_recommendations, load_recommendations

    advised, _ = apply_recommendations(loaded, load_recommendations(advice), str(advice))
    planned = fit(advised).by_name()
    old = {c["Id"]: c for c in site.containers()}
    agent_old = site.of("agent")
    assert agent_old[0]["HostConfig"]["NanoCpus"] != planned["agent"].cpu_limit * 1_000_000 or (
        agent_old[0]["HostConfig"]["Memory"] != planned["agent"].mem_limit
    ), "the advice changes nothing for the agent: the redeploy would not be exercised"
    runs = site.root / "runs-limits"
    load = site.cli.start_load("limits-redeploy", site.https, runs)
    try:
        redeploy = site.deploy("--recommendations", str(advice), "--format", "json")
    finally:
        out, err = load.communicate(timeout=600)
    assert redeploy.returncode == 0, redeploy.stderr[-5000:]
    deployed = json.loads(redeploy.stdout)
    assert deployed["actions"]["agent"] == "limits updated in place on 2 container(s)", deployed[
        "actions"
    ]
    assert deployed["status"]["ok"]
    # Every container is the one that was there, never restarted, with the new limits.
    new = site.containers()
    assert {c["Id"] for c in new} == set(old), deployed["actions"]
    for c in new:
        assert c["State"]["StartedAt"] == old[c["Id"]]["State"]["StartedAt"]
        service = c["Config"]["Labels"]["com.docker.compose.service"]
        if service in planned:
            assert c["HostConfig"]["NanoCpus"] == planned[service].cpu_limit * 1_000_000
            assert c["HostConfig"]["Memory"] == planned[service].mem_limit
            assert c["HostConfig"]["MemoryReservation"] == planned[service].mem_reservation
    result = json.loads(out)
    overall = result["overall"]
    assert overall["requests"] > 500, overall
    assert overall["failures"] == 0, (result["errors"], err[-2000:])


# --------------------------------------------------------------------------- 6. down


def test_down_removes_the_containers_and_keeps_the_volumes(site: Site) -> None:
    proc = site.vots("down", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert project_containers("docker", site.project) == []
    volumes = ok(
        [
            "docker",
            "volume",
            "ls",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={site.project}",
        ]
    ).split()
    assert any(v.endswith("redis.data") for v in volumes), volumes
    again = site.vots("status", timeout=60)
    assert again.returncode == 1 and "no container" in again.stderr
