"""deploy, status and down on a small real stack, and what they do when things go wrong.

The stack is two busybox services (``tests/support/images.py``, imported
locally) started by the real compose tool, without the edge and monitoring
(``--without nginx``: they are the loop test's business). Each test that
deploys has a project of its own and removes it, volumes too.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.plan import fit
from ops.stack import load_stack
from tests.support.cli import Cli
from tests.support.docker import force_cleanup, inspect, ok, project_containers
from tests.support.images import busybox_image
from tests.support.stacks import minimal, write_stack

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]


def _stack(root: Path, project: str, image: str, **changes: Any) -> Path:
    services = {
        "web": {
            "image": image,
            "language": "go",
            "port": 8000,
            "replicas": 2,
            "command": ["httpd", "-f", "-p", "8000", "-h", "/www"],
            "resources": {"cpu": {"min": 0.1, "max": 0.5}, "memory": {"min": "16M", "max": "64M"}},
            "health": {"path": "/healthz", "interval": "1s", "timeout": "2s", "start_period": "1s"},
            "depends_on": ["store"],
            "routes": [{"path": "/"}],
        },
        "store": {
            "image": image,
            "language": "datastore",
            "port": 6379,
            "command": ["httpd", "-f", "-p", "6379", "-h", "/www"],
            "health": {"path": "/healthz", "interval": "1s", "timeout": "2s", "start_period": "1s"},
            "volumes": {"data": "/data"},
        },
    }
    for name, change in changes.items():
        services[name] = {**services[name], **change}
    data = minimal(
        project=project,
        host={"cpus": 2, "memory": "4G", "reserve": {"cpus": 0.25, "memory": "512M"}},
        tls={"certificate": str(root / "cert.pem"), "key": str(root / "key.pem")},
        services=services,
        monitoring={"prometheus": False, "node_exporter": False, "cadvisor": False},
    )
    (root / "cert.pem").write_text("not used: the edge is left out\n")
    (root / "key.pem").write_text("not used: the edge is left out\n")
    return write_stack(root, data)


class Site:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.project = f"votsdeploy{uuid.uuid4().hex[:10]}"
        self.image = busybox_image()
        self.cli = Cli.in_dir(root)
        self.last_stderr = ""  # of the last deploy _new_web_limits ran

    def write(self, **changes: Any) -> None:
        _stack(self.root, self.project, self.image, **changes)

    def vots(self, *args: str, timeout: float = 300, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.cli.run(*args, timeout=timeout, **kw)

    def deploy(self, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.vots("deploy", "--offline", "--without", "nginx", *extra, timeout=timeout)

    def containers(self, service: str | None = None) -> list[dict[str, Any]]:
        found = inspect("docker", project_containers("docker", self.project))
        label = "com.docker.compose.service"
        return [c for c in found if service is None or c["Config"]["Labels"][label] == service]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path)
    s.write()
    assert s.vots("plan", timeout=120).returncode == 0
    try:
        yield s
    finally:
        force_cleanup("docker", s.project)


def test_deploy_status_down(site: Site) -> None:
    proc = site.deploy("--format", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["actions"] == {"store": "created", "web": "created"}
    assert result["status"]["ok"] and result["status"]["omitted"] == ["nginx"]
    plan = fit(load_stack(site.root / "stack.yaml")).by_name()
    web = site.containers("web")
    assert len(web) == 2
    for c in web:
        assert c["State"]["Health"]["Status"] == "healthy"
        assert c["HostConfig"]["NanoCpus"] == plan["web"].cpu_limit * 1_000_000
        assert c["HostConfig"]["Memory"] == plan["web"].mem_limit
    # The dependency was healthy before its dependent started.
    store = site.containers("store")[0]
    assert store["State"]["StartedAt"] < min(c["State"]["StartedAt"] for c in web)

    status = site.vots("status")
    assert status.returncode == 0, status.stderr
    assert "as planned" in status.stdout and "nginx: left out" in status.stderr

    down = site.vots("down")
    assert down.returncode == 0, down.stderr
    assert "volumes kept" in down.stderr
    assert site.containers() == []
    volumes = ok(["docker", "volume", "ls", "-q", "--filter", f"name={site.project}_"]).split()
    assert f"{site.project}_store.data" in volumes
    ok(["docker", "volume", "rm", *volumes])


def test_progress_rows_on_a_terminal(site: Site) -> None:
    """On a terminal, a live row per service (spinner, state, seconds), redrawn;
    then a line per service with its outcome."""
    import os
    import pty
    import select

    primary, secondary = pty.openpty()
    try:
        proc = site.cli.start(
            "deploy", "--offline", "--without", "nginx",
            stderr=secondary, env={"TERM": "xterm", "COLUMNS": "120"},
        )  # fmt: skip
        os.close(secondary)
        secondary = -1
        seen = b""
        while True:  # until the child closes the terminal (pytest's timeout for a hang)
            if not select.select([primary], [], [], 1.0)[0]:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(primary, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        proc.communicate(timeout=300)
    finally:
        os.close(primary)
        if secondary != -1:
            os.close(secondary)
    assert proc.returncode == 0
    screen = seen.decode(errors="replace")
    # The rows, each with its elapsed seconds, for both waves.
    assert re.search(r"store: created, 1 replica\(s\) +\d+s", screen), screen[-2000:]
    assert re.search(r"web: (created, 2 replica\(s\)|[012]/2 healthy) +\d+s", screen), screen[
        -2000:
    ]
    assert re.search(r"web: created, healthy in [\d.]+s", screen), screen[-2000:]


def test_status_finds_a_container_docker_update_changed(site: Site) -> None:
    assert site.deploy().returncode == 0
    victim = site.containers("web")[0]
    ok(["docker", "update", "--memory", "48m", "--memory-swap", "96m", victim["Id"]])
    proc = site.vots("status", "--format", "json")
    assert proc.returncode == 1
    status = json.loads(proc.stdout)
    row = next(r for r in status["containers"] if r["container"] == victim["Name"].lstrip("/"))
    assert [d["field"] for d in row["differences"]] == ["memory limit"]
    assert row["differences"][0]["applied"] == "48M"
    assert "not as planned" in proc.stderr and victim["Name"].lstrip("/") in proc.stderr


def test_a_drifted_plan_is_refused_and_nothing_starts(site: Site) -> None:
    site.write(web={"port": 8100})  # stack.yaml changed, plan not run again
    proc = site.deploy()
    assert proc.returncode == 1
    assert "differ from what stack.yaml renders; run `vots-ops plan`" in proc.stderr
    assert site.containers() == []


def test_an_unhealthy_service_fails_the_deploy_with_its_evidence(site: Site) -> None:
    # The health check asks a path the server does not have: the container runs but
    # turns unhealthy after its retries.
    site.write(web={"health": {"path": "/missing", "interval": "1s", "timeout": "1s",
                               "retries": 2, "start_period": "1s"}})  # fmt: skip
    assert site.vots("plan").returncode == 0
    proc = site.deploy("--health-timeout", "120")
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: web: ") and "unhealthy" in lines[-1]
    assert "last health check: exit 1" in proc.stderr  # the health output, shown
    assert "404" in proc.stderr or "Not Found" in proc.stderr


def test_a_health_timeout_names_the_replicas_and_their_state(site: Site) -> None:
    # Never answers; its first health check is 30 s away, so it stays "starting".
    site.write(web={"command": ["sleep", "3600"],
                    "health": {"path": "/healthz", "interval": "30s", "start_period": "30s"}})  # fmt: skip
    assert site.vots("plan").returncode == 0
    proc = site.deploy("--health-timeout", "3s")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert "web: 0 of 2 replica(s) healthy after 3s" in last and "starting" in last


def test_bad_input_is_one_line_and_exit_2(site: Site) -> None:
    proc = site.vots("deploy", "--without", "nosuch")
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == (
            "error: --without nosuch: not a service of "
            f"{site.root / 'stack.yaml'} (services: nginx, store, web) [--without]"
        )
        or "--without nosuch: not a service" in proc.stderr
    )
    assert site.containers() == []

    site.write(web={"image": "vots-ops-test/not-here:1"})
    assert site.vots("plan").returncode == 0
    proc = site.deploy()
    assert proc.returncode == 2
    message = proc.stderr.strip().splitlines()[-1]
    assert "web (vots-ops-test/not-here:1): offline: not pulled" in message
    assert "offline:" in message and "--without" in message
    assert site.containers() == []


def test_status_and_down_with_nothing_deployed(site: Site) -> None:
    status = site.vots("status")
    assert status.returncode == 1 and "no container of project" in status.stderr
    down = site.vots("down")
    assert down.returncode == 2 and "no container of project" in down.stderr


def test_down_volumes_asks_first(site: Site) -> None:
    assert site.deploy().returncode == 0
    refused = site.vots("down", "--volumes", input="n\n")
    assert refused.returncode != 0 and "remove the volumes" in refused.stderr
    assert len(site.containers()) == 3
    gone = site.vots("down", "--volumes", input="y\n")
    assert gone.returncode == 0, gone.stderr
    assert site.containers() == []
    volumes = ok(["docker", "volume", "ls", "-q", "--filter", f"name={site.project}_"]).split()
    assert volumes == []


def test_a_changed_service_is_rolled_and_the_unchanged_one_left(site: Site) -> None:
    assert site.deploy().returncode == 0
    before = {c["Id"]: c for c in site.containers()}
    site.write(web={"environment": {"RELEASE": "2"}})
    assert site.vots("plan").returncode == 0
    proc = site.deploy("--format", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    actions = json.loads(proc.stdout)["actions"]
    assert actions["store"] == "unchanged"
    assert actions["web"] == "rolled 2 replica(s), one at a time"
    after = site.containers()
    web = [c for c in after if c["Config"]["Labels"]["com.docker.compose.service"] == "web"]
    assert len(web) == 2 and not {c["Id"] for c in web} & set(before)
    assert all("RELEASE=2" in c["Config"]["Env"] for c in web)
    store = [c for c in after if c["Id"] in before]
    assert len(store) == 1  # the datastore kept its container


def _limits(c: dict[str, Any]) -> tuple[int, int, int, int, int]:
    h = c["HostConfig"]
    return (h["NanoCpus"], h["Memory"], h["MemoryReservation"], h["CpuShares"], h["PidsLimit"])


def _planned(a: Any) -> tuple[int, int, int, int, int]:
    return (a.cpu_limit * 1_000_000, a.mem_limit, a.mem_reservation, a.cpu_shares, a.pids)


def _new_web_limits(site: Site, cpu_max: float, mem_min: str, mem_max: str) -> dict[str, str]:
    """Give web new limits, plan, deploy; what deploy did to each service."""
    site.write(
        web={
            "resources": {
                "cpu": {"min": 0.1, "max": cpu_max},
                "memory": {"min": mem_min, "max": mem_max},
            }
        }
    )
    assert site.vots("plan").returncode == 0
    proc = site.deploy("--format", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    site.last_stderr = proc.stderr
    actions: dict[str, str] = json.loads(proc.stdout)["actions"]
    return actions


def test_changed_limits_are_set_on_the_running_containers(site: Site) -> None:
    assert site.deploy().returncode == 0
    before = {c["Id"]: c for c in site.containers()}
    actions = _new_web_limits(site, 0.4, "24M", "96M")
    plan = fit(load_stack(site.root / "stack.yaml")).by_name()
    assert _planned(plan["web"]) != _limits(next(iter(before.values())))
    assert actions["web"] == "limits updated in place on 2 container(s)", actions
    after = site.containers()
    # The same containers, never restarted, with the new plan's limits.
    assert {c["Id"] for c in after} == set(before)
    for c in after:
        old = before[c["Id"]]
        assert c["State"]["StartedAt"] == old["State"]["StartedAt"]
        assert c["RestartCount"] == 0
        service = c["Config"]["Labels"]["com.docker.compose.service"]
        assert _limits(c) == _planned(plan[service])
    # Known as planned now: the next deploy leaves everything alone.
    again = site.deploy("--format", "json")
    assert again.returncode == 0, again.stderr[-3000:]
    assert set(json.loads(again.stdout)["actions"].values()) == {"unchanged"}
    assert site.vots("status").returncode == 0


def test_limits_changed_by_hand_are_put_back_by_deploy(site: Site) -> None:
    assert site.deploy().returncode == 0
    victim = site.containers("web")[0]
    ok(["docker", "update", "--cpus", "0.2", victim["Id"]])
    proc = site.deploy("--format", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["actions"]["web"] == "limits updated in place on 2 container(s)"
    plan = fit(load_stack(site.root / "stack.yaml")).by_name()
    assert _limits(site.containers("web")[0]) == _planned(plan["web"])


def test_limits_are_not_lowered_under_what_a_container_uses(site: Site) -> None:
    # A real working set: 40 MiB written to the container's tmpfs /tmp, charged to
    # its memory cgroup. On cgroup v2 a limit below it would OOM-kill the server.
    assert site.deploy().returncode == 0
    before = {c["Id"] for c in site.containers("web")}
    for cid in before:
        ok(
            [
                "docker",
                "exec",
                cid,
                "/bin/busybox",
                "dd",
                "if=/dev/zero",
                "of=/tmp/fill",
                "bs=1M",
                "count=40",
            ]
        )
    actions = _new_web_limits(site, 0.5, "16M", "40M")
    assert actions["web"] == "rolled 2 replica(s), one at a time"
    assert "is not set on it while it runs; replacing its containers instead" in site.last_stderr
    web = site.containers("web")
    assert not {c["Id"] for c in web} & before
    assert all(not c["State"]["OOMKilled"] for c in web)


def test_without_the_state_a_limit_change_replaces_the_containers(site: Site) -> None:
    # What deploy does not know it made, it does not update in place.
    assert site.deploy().returncode == 0
    before = {c["Id"] for c in site.containers("web")}
    (site.root / ".vots-deploy.state.json").unlink()
    assert _new_web_limits(site, 0.4, "24M", "96M")["web"] == "rolled 2 replica(s), one at a time"
    assert not {c["Id"] for c in site.containers("web")} & before


def test_bootstrap_reuses_the_base_it_finds(site: Site) -> None:
    from tests.support.base_image import IMAGE, debian_base_image

    debian_base_image()
    proc = site.vots("images", "bootstrap", "--tag", IMAGE, timeout=2000)
    assert proc.returncode == 0, proc.stderr
    assert f"{IMAGE} is already on the engine: nothing built" in proc.stderr


def test_images_build_lists_what_it_reused(site: Site) -> None:
    proc = site.vots("images", "build", "--offline", "--without", "nginx", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["service"]: r for r in json.loads(proc.stdout)}
    assert set(rows) == {"web", "store"}
    assert all(r["action"] == "present" and r["use"] == site.image for r in rows.values())
    unknown = site.vots("images", "build", "--service", "nosuch")
    assert unknown.returncode == 2 and "nosuch: not a service of" in unknown.stderr


def test_status_and_down_still_work_when_the_plan_drifted(site: Site) -> None:
    assert site.deploy().returncode == 0
    site.write(web={"environment": {"RELEASE": "3"}})  # stack.yaml changed, plan not run
    status = site.vots("status")
    assert status.returncode == 0, status.stderr
    assert "differ from what stack.yaml renders" in status.stderr
    down = site.vots("down")
    assert down.returncode == 0, down.stderr
    assert site.containers() == []
