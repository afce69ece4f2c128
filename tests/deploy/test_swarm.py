"""``plan --target swarm`` on a real swarm: a one-node swarm on the engine here.

The stack is the bundled one made deployable here (tests/support/swarm.py says
what changes and why). The module initialises the swarm when the engine is in
none, plans with ``--target swarm --verify``, deploys with ``docker stack
deploy`` and then, in order: every service converges with the planned limits
on its tasks, the edge answers over HTTP/2, the agent scales from 2 to 3
replicas and back, a new agent release rolls out under a load test through
the edge with no failed request, and the stack is removed with everything it
made, and the swarm left when this module created it.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml

from ops.plan import fit
from ops.stack import load_stack
from tests.support.cli import Cli
from tests.support.swarm import (
    SwarmSite,
    build_images,
    converged,
    deploy,
    docker,
    one_node_swarm,
    remove,
    services,
    swarm_site,
    swarm_state,
    task_containers,
    tasks,
    update_started,
    wait_converged,
    wait_update,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(3000)]

BUILD_TIMEOUT = 3000.0
CONVERGE_TIMEOUT = 600.0
NAMES = ("agent", "rag", "redis", "chroma", "nginx", "prometheus")


@dataclass
class Site:
    where: SwarmSite
    cli: Cli
    node: str

    def vots(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.cli.run(*args, timeout=timeout)

    def plan(self) -> subprocess.CompletedProcess[str]:
        proc = self.vots("plan", "--target", "swarm", "--verify")
        assert proc.returncode == 0, proc.stderr
        return proc


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("swarm")
    images = build_images(root, BUILD_TIMEOUT)
    project = f"votsswarm{uuid.uuid4().hex[:8]}"
    before = swarm_state()
    with one_node_swarm(f"{project}.datastores") as node:
        (root / "site").mkdir()
        where = swarm_site(root / "site", project, images, duration="180s")
        s = Site(where, Cli.in_dir(where.root, VOTS_OPS_SCENARIOS=str(where.scenarios)), node)
        try:
            s.plan()
            deploy(where)
            yield s
        finally:
            left = remove(where)
            assert left == [], left
    assert swarm_state() == before  # a swarm this module created is left again


def test_plan_renders_what_swarm_honours_and_says_what_it_does_not(site: Site) -> None:
    proc = site.plan()
    assert "docker stack config accept the files" in proc.stderr
    assert "no CPU weight" in proc.stderr and "no-new-privileges" in proc.stderr
    assert "depends_on (agent, rag)" in proc.stderr
    doc = yaml.safe_load(site.where.stack_file.read_text())
    for name, svc in doc["services"].items():
        assert not {"cpu_shares", "pids_limit", "restart", "security_opt", "depends_on"} & set(svc)
        assert svc["deploy"]["restart_policy"]["condition"] == "on-failure", name
    assert doc["services"]["nginx"]["ports"][0]["mode"] == "host"


def test_every_service_converges_with_the_planned_limits(site: Site) -> None:
    state = wait_converged(site.where, NAMES, CONVERGE_TIMEOUT)
    assert all(s.startswith("ok") for s in state.values()), state
    plan = fit(load_stack(site.where.root / "stack.yaml")).by_name()
    for name in NAMES:
        a = plan[name]
        containers = task_containers(site.where, name)
        assert len(containers) == a.replicas, name
        for c in containers:
            host = c["HostConfig"]
            assert host["NanoCpus"] == a.cpu_limit * 1_000_000, name
            assert host["Memory"] == a.mem_limit, name
            assert host["PidsLimit"] == a.pids, name
            assert host["CapDrop"] == ["ALL"] and host["ReadonlyRootfs"] is True, name
            assert c["State"]["Health"]["Status"] == "healthy", name
    spec = {s["Spec"]["Name"]: s["Spec"] for s in services(site.where)}
    agent = spec[site.where.service("agent")]
    assert agent["UpdateConfig"]["Order"] == "start-first"
    assert agent["UpdateConfig"]["FailureAction"] == "rollback"
    reservations = agent["TaskTemplate"]["Resources"]["Reservations"]
    assert reservations["NanoCPUs"] == plan["agent"].cpu_reservation * 1_000_000
    # Datastores only where the node label says, and never two writers on one volume.
    redis = spec[site.where.service("redis")]
    assert redis["TaskTemplate"]["Placement"]["Constraints"] == [
        f"node.labels.{site.where.project}.datastores == true"
    ]
    assert redis["UpdateConfig"]["Order"] == "stop-first"
    secrets = {s["SecretName"] for s in spec[site.where.service("nginx")]["TaskTemplate"]
               ["ContainerSpec"]["Secrets"]}  # fmt: skip
    assert {n.rsplit("_", 1)[0] for n in secrets} == {
        f"{site.where.project}_tls_certificate",
        f"{site.where.project}_tls_key",
    }


def _client(site: Site) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(site.where.certificate))
    return httpx.Client(http2=True, verify=context, timeout=60)


def _analyze(client: httpx.Client, site: Site) -> httpx.Response:
    return client.post(
        f"{site.where.https}/api/v1/analyze_code",
        json={"code": "import os\nos.system(input())\n", "language": "python"},
        headers={"host": "vots.example.com"},
        extensions={"sni_hostname": "vots.example.com"},
    )


def test_the_edge_speaks_http2_to_the_agent_tasks(site: Site) -> None:
    wait_converged(site.where, NAMES, CONVERGE_TIMEOUT)
    with _client(site) as client:
        r = _analyze(client, site)
    assert r.http_version == "HTTP/2"
    assert r.status_code == 200, r.text
    assert "B605" in {f["rule_id"] for f in r.json()["findings"]}


def test_the_agent_scales_from_2_to_3_replicas_and_back(site: Site) -> None:
    agent = site.where.service("agent")
    docker("service", "scale", "--detach", f"{agent}=3")
    wait_converged(site.where, ["agent"], CONVERGE_TIMEOUT)
    assert len(task_containers(site.where, "agent")) == 3
    with _client(site) as client:
        assert all(_analyze(client, site).status_code == 200 for _ in range(6))
    docker("service", "scale", "--detach", f"{agent}=2")
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    while len(tasks(site.where, "agent")) != 2 or not converged(site.where, ["agent"])[
        "agent"
    ].startswith("ok"):
        assert time.monotonic() < deadline, converged(site.where, ["agent"])
        time.sleep(2)
    assert len(task_containers(site.where, "agent")) == 2


def _env(container: dict[str, Any]) -> dict[str, str]:
    return dict(e.split("=", 1) for e in container["Config"]["Env"])


def test_a_new_agent_release_rolls_out_under_load_without_a_failed_request(site: Site) -> None:
    path = site.where.root / "stack.yaml"
    data = yaml.safe_load(path.read_text())
    data["services"]["agent"]["environment"]["RELEASE"] = "2"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    site.plan()
    old = {c["Id"] for c in task_containers(site.where, "agent")}
    runs = site.where.root / "runs"
    load = site.cli.start_load("swarm-update", site.where.https, runs)
    try:
        before = update_started(site.where, "agent")
        deploy(site.where)
        deadline = time.monotonic() + CONVERGE_TIMEOUT
        while True:  # until both tasks are new ones, healthy
            replaced = task_containers(site.where, "agent")
            new = [c for c in replaced if c["Id"] not in old]
            if (
                len(replaced) == 2
                and len(new) == 2
                and all(c["State"].get("Health", {}).get("Status") == "healthy" for c in new)
            ):
                break
            assert time.monotonic() < deadline, converged(site.where, ["agent"])
            time.sleep(1)
        # The load was still running when the last task had been replaced.
        assert load.poll() is None, "the load ended before the update did"
        final = wait_update(site.where, "agent", CONVERGE_TIMEOUT, before)
    finally:
        out, err = load.communicate(timeout=600)
    assert final == "completed", final
    assert all(_env(c).get("RELEASE") == "2" for c in replaced)
    result = json.loads(out)
    overall = result["overall"]
    assert overall["requests"] > 500, overall
    assert overall["failures"] == 0, (overall, err[-3000:])
