"""The rendered Prometheus files: promtool accepts them, every service that exposes
metrics is scraped, and the alert rules fire on bad series and stay quiet on good
ones (``promtool test rules`` with synthetic series)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings

from ops.errors import CapacityError
from ops.files import write_all
from ops.plan import fit
from ops.plan.render import render_files
from ops.plan.verify import verify_plan
from ops.stack import LoadedStack, load_stack, workloads
from tests.support.stacks import BUNDLED, minimal, stacks, write_stack

ALERTS = {
    "TargetDown",
    "HighHttp5xxRate",
    "ContainerMemoryNearLimit",
    "ContainerCpuThrottled",
    "HostMemoryLow",
    "HostDiskFilling",
}


def _promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool is not installed (apt-get install prometheus)"
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False
    )


def _render(loaded: LoadedStack, out: Path) -> dict[str, str]:
    files = render_files(loaded, fit(loaded), out)
    write_all(out, files)
    return files


def assert_scrape_jobs(loaded: LoadedStack, prometheus_yml: str) -> None:
    config = yaml.safe_load(prometheus_yml)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert len(jobs) == len(config["scrape_configs"]), "duplicate job names"
    monitoring = loaded.stack.monitoring
    expected = {"prometheus"}
    if monitoring.node_exporter.enabled:
        expected.add("node-exporter")
    if monitoring.cadvisor.enabled:
        expected.add("cadvisor")
    metered = {w.name: w for w in workloads(loaded.stack) if w.spec is not None and w.spec.metrics}
    assert set(jobs) == expected | set(metered)
    for name, w in metered.items():
        assert w.spec is not None
        job = jobs[name]
        assert job["metrics_path"] == w.spec.metrics
        (sd,) = job["dns_sd_configs"]
        assert sd["names"] == [name]
        assert sd["type"] == "A"
        assert sd["port"] == w.port
    assert config["rule_files"] == ["alerts.yml"]
    g = config["global"]
    assert g["scrape_interval"] == monitoring.scrape_interval
    assert g["external_labels"] == {"project": loaded.stack.project}


def _assert_promtool_ok(directory: Path) -> None:
    config = _promtool("check", "config", str(directory / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    rules = _promtool("check", "rules", str(directory / "alerts.yml"))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    groups = yaml.safe_load((directory / "alerts.yml").read_text())["groups"]
    expected = sum(len(g["rules"]) for g in groups)
    assert set().union(*({r["alert"] for r in g["rules"]} for g in groups)) <= ALERTS
    assert f"SUCCESS: {expected} rules found" in rules.stdout


def test_bundled_stack_passes_promtool(tmp_path: Path) -> None:
    loaded = load_stack(BUNDLED)
    _render(loaded, tmp_path)
    _assert_promtool_ok(tmp_path / "prometheus")
    rules = _promtool("check", "rules", str(tmp_path / "prometheus" / "alerts.yml"))
    assert f"SUCCESS: {len(ALERTS)} rules found" in rules.stdout
    results = verify_plan(loaded, fit(loaded), tmp_path / "verify", checks=["promtool"])
    assert results and all(r.ok for r in results), [r.output for r in results]


def test_bundled_stack_scrapes_every_metrics_service(tmp_path: Path) -> None:
    loaded = load_stack(BUNDLED)
    files = _render(loaded, tmp_path)
    assert_scrape_jobs(loaded, files["prometheus/prometheus.yml"])
    jobs = {
        j["job_name"] for j in yaml.safe_load(files["prometheus/prometheus.yml"])["scrape_configs"]
    }
    assert {"agent", "rag"} <= jobs and "dashboard" not in jobs
    # Prometheus must share a network with every target it scrapes.
    compose = yaml.safe_load(files["docker-compose.yml"])["services"]
    prom_nets = set(compose["prometheus"]["networks"])
    for job in jobs - {"prometheus"}:
        assert prom_nets & set(compose[job]["networks"]), job


def test_alert_rules_are_the_documented_set(tmp_path: Path) -> None:
    files = _render(load_stack(BUNDLED), tmp_path)
    groups = yaml.safe_load(files["prometheus/alerts.yml"])["groups"]
    assert [g["name"] for g in groups] == ["vots-availability", "vots-containers", "vots-host"]
    rules = {r["alert"]: r for g in groups for r in g["rules"]}
    assert set(rules) == ALERTS
    assert rules["TargetDown"]["labels"]["severity"] == "critical"
    assert rules["TargetDown"]["for"] == "2m"


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=stacks())
def test_generated_stacks_pass_promtool(data: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory(prefix="vots-prom-") as tmp:
        root = Path(tmp)
        loaded = load_stack(write_stack(root, data))
        try:
            files = _render(loaded, root / "out")
        except CapacityError:
            assume(False)
            raise
        if not loaded.stack.monitoring.prometheus.enabled:
            assert not any(name.startswith("prometheus/") for name in files)
            return
        assert_scrape_jobs(loaded, files["prometheus/prometheus.yml"])
        _assert_promtool_ok(root / "out" / "prometheus")
        groups = {g["name"] for g in yaml.safe_load(files["prometheus/alerts.yml"])["groups"]}
        monitoring = loaded.stack.monitoring
        # Rules about cadvisor's or node-exporter's series only exist when they are scraped.
        assert ("vots-containers" in groups) == monitoring.cadvisor.enabled
        assert ("vots-host" in groups) == monitoring.node_exporter.enabled


@pytest.mark.parametrize("interval", ["1s", "1500ms", "15s", "1m", "90s"])
def test_scrape_timeout_never_exceeds_interval(tmp_path: Path, interval: str) -> None:
    data = minimal(
        monitoring={
            "prometheus": True,
            "node_exporter": False,
            "cadvisor": False,
            "scrape_interval": interval,
        }
    )
    loaded = load_stack(write_stack(tmp_path, data))
    _render(loaded, tmp_path / "out")
    _assert_promtool_ok(tmp_path / "out" / "prometheus")


def test_sub_second_scrape_interval(tmp_path: Path) -> None:
    data = minimal(
        monitoring={
            "prometheus": True,
            "node_exporter": False,
            "cadvisor": False,
            "scrape_interval": "500ms",
        }
    )
    loaded = load_stack(write_stack(tmp_path, data))
    _render(loaded, tmp_path / "out")
    _assert_promtool_ok(tmp_path / "out" / "prometheus")


# --------------------------------------------------------------------------- alert unit tests

CADVISOR = {"job": "cadvisor", "instance": "cadvisor:8080"}


def _series(metric: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{inner}}}", "values": values}


def _alert(name: str, at: str, *expected: dict[str, Any]) -> dict[str, Any]:
    return {"eval_time": at, "alertname": name, "exp_alerts": list(expected)}


def _unit_tests() -> dict[str, Any]:
    hot = {**CADVISOR, "name": "vots_agent_1"}
    calm = {**CADVISOR, "name": "vots_rag_1"}
    unlimited = {**CADVISOR, "name": "vots_adhoc_1"}
    cgroup = {**CADVISOR, "name": "", "id": "/system.slice/docker.service"}
    return {
        "rule_files": ["alerts.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": "TargetDown fires after 2m of up == 0 and only for the down target",
                "interval": "1m",
                "input_series": [
                    _series("up", {"job": "agent", "instance": "10.0.0.2:8000"}, "0x10"),
                    _series("up", {"job": "rag", "instance": "10.0.0.3:8001"}, "1x10"),
                    # Down for one minute, then back: a blip never fires.
                    _series(
                        "up",
                        {"job": "dashboard", "instance": "10.0.0.4:3000"},
                        "1 0 1 1 1 1 1 1 1 1 1",
                    ),
                ],
                "alert_rule_test": [
                    _alert("TargetDown", "0m"),
                    _alert("TargetDown", "1m"),
                    _alert(
                        "TargetDown",
                        "2m",
                        {
                            "exp_labels": {
                                "severity": "critical",
                                "job": "agent",
                                "instance": "10.0.0.2:8000",
                            },
                            "exp_annotations": {
                                "summary": "agent target 10.0.0.2:8000 is down",
                                "description": "Prometheus has not scraped 10.0.0.2:8000 for 2 minutes.",
                            },
                        },
                    ),
                    _alert(
                        "TargetDown",
                        "10m",
                        {
                            "exp_labels": {
                                "severity": "critical",
                                "job": "agent",
                                "instance": "10.0.0.2:8000",
                            },
                            "exp_annotations": {
                                "summary": "agent target 10.0.0.2:8000 is down",
                                "description": "Prometheus has not scraped 10.0.0.2:8000 for 2 minutes.",
                            },
                        },
                    ),
                ],
            },
            {
                "name": "ContainerMemoryNearLimit above 90% of a real limit",
                "interval": "1m",
                "input_series": [
                    _series("container_memory_working_set_bytes", hot, "950x10"),
                    _series("container_spec_memory_limit_bytes", hot, "1000x10"),
                    _series("container_memory_working_set_bytes", calm, "500x10"),
                    _series("container_spec_memory_limit_bytes", calm, "1000x10"),
                    # Exactly 90% is not "more than 90%".
                    _series(
                        "container_memory_working_set_bytes",
                        {**calm, "name": "vots_edge_1"},
                        "900x10",
                    ),
                    _series(
                        "container_spec_memory_limit_bytes",
                        {**calm, "name": "vots_edge_1"},
                        "1000x10",
                    ),
                    # No limit (0) must not divide into +Inf and fire.
                    _series("container_memory_working_set_bytes", unlimited, "5000x10"),
                    _series("container_spec_memory_limit_bytes", unlimited, "0x10"),
                    # Cgroups that are not containers (name="") are ignored.
                    _series("container_memory_working_set_bytes", cgroup, "990x10"),
                    _series("container_spec_memory_limit_bytes", cgroup, "1000x10"),
                ],
                "alert_rule_test": [
                    _alert("ContainerMemoryNearLimit", "4m"),
                    _alert(
                        "ContainerMemoryNearLimit",
                        "5m",
                        {
                            "exp_labels": {"severity": "warning", **hot},
                            "exp_annotations": {
                                "summary": "vots_agent_1 uses more than 90% of its memory limit",
                                "description": "Working set is 95% of the limit; the OOM killer is next.",
                            },
                        },
                    ),
                ],
            },
            {
                "name": "ContainerCpuThrottled above 25% of CFS periods for 10m",
                "interval": "1m",
                "input_series": [
                    _series("container_cpu_cfs_throttled_periods_total", hot, "0+50x30"),
                    _series("container_cpu_cfs_periods_total", hot, "0+100x30"),
                    _series("container_cpu_cfs_throttled_periods_total", calm, "0+10x30"),
                    _series("container_cpu_cfs_periods_total", calm, "0+100x30"),
                    _series("container_cpu_cfs_throttled_periods_total", cgroup, "0+90x30"),
                    _series("container_cpu_cfs_periods_total", cgroup, "0+100x30"),
                ],
                "alert_rule_test": [
                    _alert("ContainerCpuThrottled", "10m"),
                    _alert(
                        "ContainerCpuThrottled",
                        "11m",
                        {
                            "exp_labels": {"severity": "warning", **hot},
                            "exp_annotations": {
                                "summary": "vots_agent_1 is CPU-throttled in more than 25% of periods",
                                "description": "Throttled in 50% of CFS periods; raise its CPU limit or weight.",
                            },
                        },
                    ),
                    _alert(
                        "ContainerCpuThrottled",
                        "30m",
                        {
                            "exp_labels": {"severity": "warning", **hot},
                            "exp_annotations": {
                                "summary": "vots_agent_1 is CPU-throttled in more than 25% of periods",
                                "description": "Throttled in 50% of CFS periods; raise its CPU limit or weight.",
                            },
                        },
                    ),
                ],
            },
            {
                "name": "HighHttp5xxRate above 5% of a job's requests for 5m",
                "interval": "1m",
                "input_series": [
                    _series(
                        "http_requests_total",
                        {"job": "agent", "instance": "a1", "status": "200"},
                        "0+45x30",
                    ),
                    _series(
                        "http_requests_total",
                        {"job": "agent", "instance": "a2", "status": "200"},
                        "0+45x30",
                    ),
                    _series(
                        "http_requests_total",
                        {"job": "agent", "instance": "a1", "status": "503"},
                        "0+10x30",
                    ),
                    _series(
                        "http_requests_total",
                        {"job": "rag", "instance": "r1", "status": "200"},
                        "0+99x30",
                    ),
                    _series(
                        "http_requests_total",
                        {"job": "rag", "instance": "r1", "status": "500"},
                        "0+1x30",
                    ),
                    _series(
                        "http_requests_total",
                        {"job": "dashboard", "instance": "d1", "status": "404"},
                        "0+50x30",
                    ),
                    _series(
                        "http_requests_total",
                        {"job": "dashboard", "instance": "d1", "status": "200"},
                        "0+50x30",
                    ),
                ],
                "alert_rule_test": [
                    _alert("HighHttp5xxRate", "5m"),
                    _alert(
                        "HighHttp5xxRate",
                        "6m",
                        {
                            "exp_labels": {"severity": "warning", "job": "agent"},
                            "exp_annotations": {
                                "summary": "agent answers more than 5% of requests with 5xx",
                                "description": "5xx ratio is 10% over 5 minutes.",
                            },
                        },
                    ),
                ],
            },
            {
                "name": "Host alerts",
                "interval": "1m",
                "input_series": [
                    _series("node_memory_MemAvailable_bytes", {"instance": "node"}, "50x20"),
                    _series("node_memory_MemTotal_bytes", {"instance": "node"}, "1000x20"),
                    _series(
                        "node_filesystem_avail_bytes",
                        {"instance": "node", "mountpoint": "/", "fstype": "ext4"},
                        "5x20",
                    ),
                    _series(
                        "node_filesystem_size_bytes",
                        {"instance": "node", "mountpoint": "/", "fstype": "ext4"},
                        "100x20",
                    ),
                    _series(
                        "node_filesystem_avail_bytes",
                        {"instance": "node", "mountpoint": "/run", "fstype": "tmpfs"},
                        "1x20",
                    ),
                    _series(
                        "node_filesystem_size_bytes",
                        {"instance": "node", "mountpoint": "/run", "fstype": "tmpfs"},
                        "100x20",
                    ),
                ],
                "alert_rule_test": [
                    _alert("HostMemoryLow", "4m"),
                    _alert(
                        "HostMemoryLow",
                        "5m",
                        {
                            "exp_labels": {"severity": "warning", "instance": "node"},
                            "exp_annotations": {
                                "summary": "Less than 10% of host memory is available",
                                "description": "Available memory is 5%.",
                            },
                        },
                    ),
                    _alert("HostDiskFilling", "9m"),
                    _alert(
                        "HostDiskFilling",
                        "10m",
                        {
                            "exp_labels": {
                                "severity": "warning",
                                "instance": "node",
                                "mountpoint": "/",
                                "fstype": "ext4",
                            },
                            "exp_annotations": {
                                "summary": "/ has less than 10% space left",
                                "description": "Free space is 5%.",
                            },
                        },
                    ),
                ],
            },
            {
                "name": "A healthy stack raises nothing",
                "interval": "1m",
                "input_series": [
                    _series("up", {"job": "agent", "instance": "10.0.0.2:8000"}, "1x40"),
                    _series("container_memory_working_set_bytes", hot, "600x40"),
                    _series("container_spec_memory_limit_bytes", hot, "1000x40"),
                    _series("container_cpu_cfs_throttled_periods_total", hot, "0+5x40"),
                    _series("container_cpu_cfs_periods_total", hot, "0+100x40"),
                    _series(
                        "http_requests_total",
                        {"job": "agent", "instance": "a1", "status": "200"},
                        "0+999x40",
                    ),
                    _series(
                        "http_requests_total",
                        {"job": "agent", "instance": "a1", "status": "500"},
                        "0+1x40",
                    ),
                    _series("node_memory_MemAvailable_bytes", {"instance": "node"}, "600x40"),
                    _series("node_memory_MemTotal_bytes", {"instance": "node"}, "1000x40"),
                ],
                "alert_rule_test": [_alert(name, "40m") for name in sorted(ALERTS)],
            },
        ],
    }


@pytest.fixture
def bundled_prometheus(tmp_path: Path) -> Path:
    _render(load_stack(BUNDLED), tmp_path)
    return tmp_path / "prometheus"


def test_alerts_fire_on_bad_series_and_not_on_healthy_ones(bundled_prometheus: Path) -> None:
    unit = bundled_prometheus / "alerts_test.yml"
    unit.write_text(yaml.safe_dump(_unit_tests(), sort_keys=False))
    proc = _promtool("test", "rules", unit.name, cwd=bundled_prometheus)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_alert_unit_test_detects_a_broken_rule(bundled_prometheus: Path) -> None:
    """The unit test can fail: with TargetDown's ``for`` raised, it must not pass."""
    alerts = bundled_prometheus / "alerts.yml"
    text = alerts.read_text()
    assert text.count("for: 2m") == 1
    alerts.write_text(text.replace("for: 2m", "for: 3m"))
    unit = bundled_prometheus / "alerts_test.yml"
    unit.write_text(yaml.safe_dump(_unit_tests(), sort_keys=False))
    proc = _promtool("test", "rules", unit.name, cwd=bundled_prometheus)
    assert proc.returncode != 0
    assert "TargetDown" in proc.stdout + proc.stderr
