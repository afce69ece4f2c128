"""``plan --target swarm``: a stack file that Docker's own stack loader accepts, with
what Swarm would ignore translated or refused, and said.

The checker is the real one: ``docker stack config`` (the docker CLI's loader
for ``docker stack deploy``; it needs no swarm and no engine). The deployment
itself is tests/deploy/test_swarm.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.errors import SpecError
from ops.plan import fit, plan_stack
from ops.plan.swarm import STACK_FILE, render_swarm
from ops.stack import load_stack
from tests.support.cli import Cli
from tests.support.stacks import BUNDLED, minimal, write_stack


def _stack_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "stack", "config", "--compose-file", str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=path.parent,
        timeout=120,
    )


def _render(tmp_path: Path, data: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    loaded = load_stack(write_stack(tmp_path, data))
    out = render_swarm(loaded, fit(loaded), tmp_path)
    return yaml.safe_load(out.files[STACK_FILE]), out.notes


def test_the_bundled_stack_is_accepted_by_docker_stack_config(tmp_path: Path) -> None:
    result = plan_stack(BUNDLED, tmp_path, mode="write", target="swarm")
    proc = _stack_config(tmp_path / STACK_FILE)
    assert proc.returncode == 0, proc.stderr
    loaded = yaml.safe_load(proc.stdout)
    plan = result.plan.by_name()
    for name, svc in loaded["services"].items():
        limits = svc["deploy"]["resources"]["limits"]
        assert limits["pids"] == plan[name].pids, name
        assert int(limits["memory"]) == plan[name].mem_limit, name
        assert float(limits["cpus"]) == pytest.approx(plan[name].cpu_limit / 1000, abs=0.01)
        reservations = svc["deploy"]["resources"]["reservations"]
        assert int(reservations["memory"]) == plan[name].mem_reservation, name
    assert loaded["services"]["agent"]["deploy"]["replicas"] == plan["agent"].replicas


def test_the_compose_target_is_what_docker_stack_deploy_refuses(tmp_path: Path) -> None:
    plan_stack(BUNDLED, tmp_path, mode="write")
    proc = _stack_config(tmp_path / "docker-compose.yml")
    assert proc.returncode != 0
    assert "forbidden properties" in proc.stderr  # cpu_shares


def test_nothing_swarm_ignores_or_refuses_is_rendered(tmp_path: Path) -> None:
    doc, _ = _render(tmp_path, yaml.safe_load(BUNDLED.read_text()))
    for name, svc in doc["services"].items():
        assert not {
            "cpu_shares", "pids_limit", "mem_limit", "restart", "security_opt", "depends_on",
            "tmpfs", "container_name", "expose", "build",
        } & set(svc), name  # fmt: skip
        policy = svc["deploy"]["restart_policy"]
        assert policy == {"condition": "on-failure", "delay": "5s", "window": "120s"}
        assert svc["deploy"]["endpoint_mode"] == "dnsrr", name
        assert svc["cap_drop"] == ["ALL"] and svc["read_only"] is True, name
        assert "healthcheck" in svc, name
    # tmpfs became mounts of type tmpfs
    assert {"type": "tmpfs", "target": "/app/.next/cache"} in doc["services"]["dashboard"][
        "volumes"
    ]


def test_warnings_say_what_swarm_cannot_carry(tmp_path: Path) -> None:
    _, notes = _render(tmp_path, yaml.safe_load(BUNDLED.read_text()))
    text = "\n".join(notes)
    assert "no CPU weight (cpu_shares)" in text
    assert "no-new-privileges" in text
    assert "depends_on (agent, dashboard, rag)" in text
    assert "monitoring.bind 127.0.0.1" in text and "not published" in text


def test_update_order_follows_what_the_service_allows(tmp_path: Path) -> None:
    doc, _ = _render(tmp_path, yaml.safe_load(BUNDLED.read_text()))
    deploy = {name: svc["deploy"] for name, svc in doc["services"].items()}
    # Stateless: the new task starts (and turns healthy) before the old one stops.
    for name in ("agent", "dashboard"):
        assert deploy[name]["update_config"]["order"] == "start-first", name
        assert deploy[name]["update_config"]["failure_action"] == "rollback", name
        assert deploy[name]["rollback_config"]["order"] == "start-first", name
        assert deploy[name]["placement"] == {"preferences": [{"spread": "node.labels.zone"}]}
    # A volume has one writer; host-mode ports one holder per node.
    for name in ("rag", "redis", "chroma", "prometheus", "nginx"):
        assert deploy[name]["update_config"]["order"] == "stop-first", name
    for name in ("rag", "redis", "chroma", "prometheus"):
        assert deploy[name]["placement"]["constraints"] == ["node.labels.vots.datastores == true"]
    # Monitored at least as long as the healthcheck needs to fail a bad task:
    # start period 20s + 3 x (15s interval + 5s timeout).
    assert deploy["agent"]["update_config"]["monitor"] == "80s"


def test_the_edge_publishes_in_host_mode_so_rate_limits_see_clients(tmp_path: Path) -> None:
    doc, _ = _render(tmp_path, yaml.safe_load(BUNDLED.read_text()))
    ports = doc["services"]["nginx"]["ports"]
    assert {p["mode"] for p in ports} == {"host"}
    assert sorted(p["published"] for p in ports) == [80, 443]
    assert "ports" not in doc["services"]["prometheus"]  # 127.0.0.1 cannot be honoured


def test_prometheus_on_every_interface_is_published_when_asked(tmp_path: Path) -> None:
    data = yaml.safe_load(BUNDLED.read_text())
    data["monitoring"]["bind"] = "0.0.0.0"
    doc, notes = _render(tmp_path, data)
    assert doc["services"]["prometheus"]["ports"] == [
        {"target": 9090, "published": 9090, "protocol": "tcp", "mode": "host"}
    ]
    assert not any("monitoring.bind" in n for n in notes)


def test_an_edge_bound_to_one_address_is_refused_with_file_line_and_key(cli: Cli) -> None:
    data = minimal()
    data["edge"] = {"bind": "127.0.0.1"}
    stack = write_stack(cli.cwd, data)
    proc = cli.run("plan", "--stack", str(stack), "--target", "swarm")
    assert proc.returncode == 2
    line = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(line) == 1, proc.stderr
    assert "stack.yaml:" in line[0] and "edge.bind" in line[0] and "0.0.0.0" in line[0]
    assert not (cli.cwd / "swarm").exists()


def test_the_configs_and_secrets_are_named_by_their_content(tmp_path: Path) -> None:
    secret = tmp_path / "api_key"
    secret.write_text("one\n")
    data = minimal()
    data["secrets"] = {"api_key": {"file": "./api_key"}}
    data["services"]["agent"]["secrets"] = ["api_key"]
    first, _ = _render(tmp_path, data)
    secret.write_text("two\n")
    data["services"]["agent"]["routes"][0]["rate_limit"] = "30r/s"  # a new nginx.conf
    second, _ = _render(tmp_path, data)
    assert first["secrets"]["api_key"]["name"] != second["secrets"]["api_key"]["name"]
    assert first["secrets"]["api_key"]["name"].startswith("vots_api_key_")
    assert (
        first["configs"]["nginx_nginx_conf"]["name"]
        != second["configs"]["nginx_nginx_conf"]["name"]
    )
    assert first["configs"]["nginx_ffdhe2048_pem"] == second["configs"]["nginx_ffdhe2048_pem"]
    assert "nginx_upstreams_conf" not in first["configs"]  # nginx resolves the tasks itself


def test_values_reach_the_containers_as_written(tmp_path: Path) -> None:
    data = minimal()
    tricky = "p@ss$word: {x} # not a comment ${HOME} 'q' \"dq\""
    data["services"]["agent"]["environment"] = {"GREETING": tricky}
    plan_stack(write_stack(tmp_path, data), tmp_path, mode="write", target="swarm")
    proc = _stack_config(tmp_path / STACK_FILE)
    assert proc.returncode == 0, proc.stderr
    loaded = yaml.safe_load(proc.stdout)
    assert loaded["services"]["agent"]["environment"]["GREETING"] == tricky


def test_compose_and_swarm_files_live_side_by_side(cli: Cli) -> None:
    stack = write_stack(cli.cwd, minimal())
    for target in ("compose", "swarm", "compose"):
        proc = cli.run("plan", "--stack", str(stack), "--target", target, "-q")
        assert proc.returncode == 0, proc.stderr
    assert (cli.cwd / "docker-compose.yml").is_file() and (cli.cwd / STACK_FILE).is_file()
    for target in ("compose", "swarm"):
        check = cli.run("plan", "--stack", str(stack), "--target", target, "--check", "-q")
        assert check.returncode == 0, check.stderr
    # Prometheus finds each swarm task by tasks.<service>; compose by the name.
    assert '"tasks.agent"' in (cli.cwd / "swarm" / "prometheus" / "prometheus.yml").read_text()
    assert '"tasks.agent"' not in (cli.cwd / "prometheus" / "prometheus.yml").read_text()


def test_verify_runs_docker_stack_config_and_nginx_and_promtool(tmp_path: Path) -> None:
    result = plan_stack(write_stack(tmp_path, minimal()), verify=True, target="swarm")
    assert result.verify is not None
    assert result.verify.ran == ("nginx", "promtool", "docker-stack")
    assert result.verify.failed == ()


def test_a_refused_bind_raises_a_spec_error_in_the_library(tmp_path: Path) -> None:
    data = minimal()
    data["edge"] = {"bind": "10.0.0.5"}
    loaded = load_stack(write_stack(tmp_path, data))
    with pytest.raises(SpecError, match=r"edge\.bind"):
        render_swarm(loaded, fit(loaded), tmp_path)


def test_a_secret_file_missing_here_is_said_to_leave_its_name_without_a_digest(
    tmp_path: Path,
) -> None:
    data = minimal()
    data["secrets"] = {"api_key": {"file": "./api_key"}}
    data["services"]["agent"]["secrets"] = ["api_key"]
    doc, notes = _render(tmp_path, data)
    assert doc["secrets"]["api_key"]["name"] == "vots_api_key"
    assert any(n.startswith("./api_key: no such file here") for n in notes), notes


def test_replicas_of_a_volume_owner_run_one_per_node_and_say_so(tmp_path: Path) -> None:
    data = yaml.safe_load(BUNDLED.read_text())
    data["services"]["rag"]["replicas"] = 3
    doc, notes = _render(tmp_path, data)
    placement = doc["services"]["rag"]["deploy"]["placement"]
    assert placement["max_replicas_per_node"] == 1
    assert any(n.startswith("rag: 3 replicas with volumes run one per node") for n in notes)
    assert "max_replicas_per_node" not in doc["services"]["redis"]["deploy"]["placement"]
