"""`vots-ops plan` as a user runs it: the sealed CLI runner, real files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from ops.plan.pipeline import MANIFEST
from ops.plan.render import OUTPUTS
from tests.support.cli import Cli
from tests.support.stacks import BUNDLED, REPO, minimal, write_stack


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copy(BUNDLED, tmp_path / "stack.yaml")
    return tmp_path


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_committed_files_match_the_bundled_stack(cli: Cli) -> None:
    """The repository's docker-compose.yml, nginx/ and prometheus/ are the plan's output."""
    proc = cli.run("plan", "--check", cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_plan_writes_every_file_then_reports_unchanged(cli: Cli, workdir: Path) -> None:
    first = cli.run("plan", cwd=workdir)
    assert first.returncode == 0, first.stderr
    for name in OUTPUTS:
        assert (workdir / name).is_file(), name
    assert "agent" in first.stdout and "total" in first.stdout
    assert "wrote 6 file(s)" in first.stderr
    before = _snapshot(workdir)
    second = cli.run("plan", cwd=workdir)
    assert second.returncode == 0
    assert "wrote 0 file(s)" in second.stderr and "6 unchanged" in second.stderr
    assert _snapshot(workdir) == before
    assert not list(workdir.rglob("*.tmp")), "temp files left behind"


def test_out_dir(cli: Cli, workdir: Path) -> None:
    proc = cli.run("plan", "--out", "rendered", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert sorted(
        str(p.relative_to(workdir / "rendered"))
        for p in (workdir / "rendered").rglob("*")
        if p.is_file()
    ) == sorted([*OUTPUTS, MANIFEST])


def test_check_fails_with_a_diff_on_drift(cli: Cli, workdir: Path) -> None:
    assert cli.run("plan", cwd=workdir).returncode == 0
    compose = workdir / "docker-compose.yml"
    compose.write_text(compose.read_text().replace('cpus: "0.63"', 'cpus: "3"', 1))
    before = _snapshot(workdir)
    proc = cli.run("plan", "--check", cwd=workdir)
    assert proc.returncode == 1
    assert '-          cpus: "3"' in proc.stdout and '+          cpus: "0.63"' in proc.stdout
    assert "--- a/docker-compose.yml" in proc.stdout
    assert "differ from" in proc.stderr
    assert _snapshot(workdir) == before


def test_dry_run_shows_the_diff_and_writes_nothing(cli: Cli, workdir: Path) -> None:
    before = _snapshot(workdir)
    proc = cli.run("plan", "--dry-run", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert "+++ b/nginx/nginx.conf" in proc.stdout
    assert "nothing written" in proc.stderr
    assert _snapshot(workdir) == before


def test_json_output_is_pipeable(cli: Cli, workdir: Path) -> None:
    proc = cli.run("plan", "--format", "json", "--dry-run", cwd=workdir)
    assert proc.returncode == 0
    data = json.loads(proc.stdout)
    names = [s["name"] for s in data["services"]]
    assert {"agent", "rag", "dashboard", "redis", "chroma", "nginx", "prometheus"} <= set(names)
    agent = next(s for s in data["services"] if s["name"] == "agent")
    assert agent["replicas"] == 2
    assert agent["memory_reservation_bytes"] == 512 * 1024**2
    assert data["totals"]["memory_limit_bytes"] <= data["host"]["usable_memory_bytes"]
    assert {f["status"] for f in data["files"]} == {"would-write"}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "memory: {min: 512M, max: 2G}",
            "memory: {min: 2 GB, max: 2G}",
            "services.agent.resources.memory.min: expected a size like 512M",
        ),
        ("  cpus: 4\n", "  cpus: 1\n", "host.cpus: the services' minimums need"),
        (
            "    health: /healthz",
            "    helth: /healthz",
            "services.agent.helth: unknown key (did you mean 'health'?)",
        ),
    ],
)
def test_bad_stack_is_one_line_exit_2_and_nothing_written(
    cli: Cli, workdir: Path, old: str, new: str, expected: str
) -> None:
    assert cli.run("plan", cwd=workdir).returncode == 0
    stack = workdir / "stack.yaml"
    stack.write_text(stack.read_text().replace(old, new, 1))
    before = _snapshot(workdir)
    proc = cli.run("plan", cwd=workdir)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert expected in lines[0]
    needle = new.strip().splitlines()[0]
    line = next(i for i, text in enumerate(stack.read_text().splitlines(), 1) if needle in text)
    assert lines[0].startswith(f"error: stack.yaml:{line}: "), lines[0]
    assert "Traceback" not in proc.stderr
    assert _snapshot(workdir) == before


def test_missing_stack_file(cli: Cli, tmp_path: Path) -> None:
    proc = cli.run("plan", "--stack", "nope.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == "error: nope.yaml: file not found (pass --stack PATH or set VOTS_OPS_STACK)"
    )


def test_unwritable_output_is_exit_2_and_nothing_half_written(cli: Cli, workdir: Path) -> None:
    (workdir / "out").mkdir()
    (workdir / "out" / "nginx").write_text("a file where a directory must go")
    proc = cli.run("plan", "--out", "out", cwd=workdir)
    assert proc.returncode == 2
    assert "not a directory" in proc.stderr
    assert sorted(p.name for p in (workdir / "out").iterdir()) == ["nginx"]


def test_bad_flags_are_usage_errors(cli: Cli, workdir: Path) -> None:
    proc = cli.run("plan", "--format", "xml", cwd=workdir)
    assert proc.returncode == 2
    assert "Invalid value for '--format'" in proc.stderr
    proc = cli.run("plan", "--check", "--dry-run", cwd=workdir)
    assert proc.returncode == 2


def test_stack_from_environment(
    cli: Cli, workdir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("cwd")
    proc = cli.run(
        "plan", "--dry-run", cwd=elsewhere, env={"VOTS_OPS_STACK": str(workdir / "stack.yaml")}
    )
    assert proc.returncode == 0, proc.stderr


def test_quiet_prints_nothing_on_success(cli: Cli, workdir: Path) -> None:
    proc = cli.run("--quiet", "plan", cwd=workdir)
    assert proc.returncode == 0
    assert proc.stdout == "" and proc.stderr == ""


def test_verify_runs_the_real_tools(cli: Cli) -> None:
    proc = cli.run("plan", "--verify", "--dry-run", cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "nginx -t, promtool" in proc.stderr


def test_verify_reports_a_missing_build_context(cli: Cli, workdir: Path) -> None:
    """Copied away from services/edge, the compose file cannot build nginx: say so."""
    proc = cli.run("plan", "--verify", "--dry-run", cwd=workdir)
    said = [line for line in proc.stderr.splitlines() if "services/edge" in line]
    assert len(said) == 1, proc.stderr  # named once, by --verify's check of referenced files
    assert said[0].startswith(
        "warning: stack.yaml:18: edge.build: services/edge: no such directory"
    )
    assert proc.returncode == 1
    assert "docker-compose rejected the rendered files: build path" in proc.stderr


def test_check_with_json_keeps_stdout_json(cli: Cli, workdir: Path) -> None:
    assert cli.run("plan", cwd=workdir).returncode == 0
    compose = workdir / "docker-compose.yml"
    compose.write_text(compose.read_text() + "# local edit\n")
    proc = cli.run("plan", "--check", "--format", "json", cwd=workdir)
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    status = {f["path"]: f["status"] for f in data["files"]}
    assert status["docker-compose.yml"] == "differs"
    assert status["nginx/nginx.conf"] == "unchanged"
    assert "differ from" in proc.stderr


def test_empty_out_is_refused(cli: Cli, workdir: Path) -> None:
    proc = cli.run("plan", "--out", "", cwd=workdir)
    assert proc.returncode == 2
    assert "'--out'" in proc.stderr


def test_verify_names_the_nginx_error(repo: Path, tmp_path: Path) -> None:
    """A rejected config reports nginx's [emerg] line, not its last line."""
    from ops.plan import fit
    from ops.plan.verify import verify_plan
    from ops.stack import load_stack

    loaded = load_stack(BUNDLED)
    (result,) = verify_plan(loaded, fit(loaded), tmp_path, checks=["nginx"])
    assert result.ok
    conf = tmp_path / "nginx" / "nginx.conf"
    conf.write_text(conf.read_text().replace("keepalive_timeout 65s;", "keepalive_timeout soon;"))
    from ops.plan.verify import _result

    bad = _result("nginx", ["nginx", "-t", "-p", str(tmp_path), "-c", str(conf), "-e", "/dev/null"])
    assert not bad.ok
    assert "[emerg]" in bad.summary and "keepalive_timeout" in bad.summary


UNITLESS = {"replicas", "pids_limit", "cpu_shares", "cpu_overcommit"}
UNITS = ("_millicores", "_bytes", "_pct")


def test_json_names_its_units(cli: Cli, workdir: Path) -> None:
    """CPU in millicores and memory in bytes, the unit in the key, as in
    `vots-ops report --format json`: no bare 0.58 that could be cores or anything."""
    proc = cli.run("plan", "--format", "json", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    sections = [data["host"], data["totals"], *data["services"]]
    for section in sections:
        for key, value in section.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                assert key.endswith(UNITS) or key in UNITLESS, key
    assert data["host"]["cpu_millicores"] == 4000
    assert data["host"]["usable_cpu_millicores"] == 3500
    agent = next(s for s in data["services"] if s["name"] == "agent")
    assert agent["cpu_limit_millicores"] == 630  # docker-compose.yml: cpus: "0.63"
    assert agent["cpu_reservation_millicores"] == 250
    assert agent["advice"] is None  # no --recommendations


def _small_vm(tmp_path: Path) -> Path:
    """2 CPUs and 4G less a 0.25 / 512M reserve: 1.75 CPUs and 3.5G for five replicas
    (agent x 2, redis, nginx, prometheus)."""
    return write_stack(tmp_path, minimal())


def _advice(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "advice.yaml"
    path.write_text(text)
    return path


def _by_name(stdout: str) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in json.loads(stdout)["services"]}


def test_plan_says_when_the_vm_overrides_the_advice(cli: Cli, tmp_path: Path) -> None:
    from ops.units import format_bytes

    _small_vm(tmp_path)
    advice = _advice(
        tmp_path,
        "services:\n"
        "  agent:\n"
        "    cpu: {min: 250m, max: 1500m}\n"  # x 2 replicas: more than the 1.75 CPUs
        "    memory: {min: 256M, max: 3G}\n"  # x 2: more than the 3.5G
        "  redis:\n"
        "    cpu: {min: 100m, max: 120m}\n"
        "    memory: {min: 64M, max: 128M}\n",
    )
    proc = cli.run("plan", "--recommendations", str(advice), "--format", "json", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    planned = _by_name(proc.stdout)
    agent, redis = planned["agent"], planned["redis"]
    cpu, memory = agent["cpu_limit_millicores"], agent["memory_limit_bytes"]
    assert cpu < 1500 and memory < 3 * 1024**3
    # Reservations are the advised minimums.
    assert agent["cpu_reservation_millicores"] == 250
    assert agent["memory_reservation_bytes"] == 256 * 1024**2
    assert agent["advice"] == {
        "cpu_request_millicores": 250,
        "cpu_limit_millicores": 1500,
        "memory_request_bytes": 256 * 1024**2,
        "memory_limit_bytes": 3 * 1024**3,
        "overridden": [
            {
                "key": "cpu_limit_millicores",
                "advised": 1500,
                "planned": cpu,
                "reason": "the VM's 1.75 usable CPUs are shared by 5 replicas by cpu_weight "
                "(agent's: 4) and the limits take them all; more CPUs, host.cpu_overcommit "
                "or a higher cpu_weight would give it more",
            },
            {
                "key": "memory_limit_bytes",
                "advised": 3 * 1024**3,
                "planned": memory,
                "reason": "the VM's 3.5G of usable memory is shared by 5 replicas by memory "
                "weight (agent's: 4) and the limits take it all; more memory or a higher "
                "memory_weight would give it more",
            },
        ],
    }
    # redis got what was advised: no override, no warning.
    assert redis["cpu_limit_millicores"] == 120 and redis["memory_limit_bytes"] == 128 * 1024**2
    assert redis["advice"]["overridden"] == []
    assert planned["nginx"]["advice"] is None
    # One line per overridden service on stderr.
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    overridden = agent["advice"]["overridden"]
    assert warnings == [
        f"warning: agent: advised CPU limit 1500m, planned {cpu}m: {overridden[0]['reason']}; "
        f"advised memory limit 3G, planned {format_bytes(memory)}: {overridden[1]['reason']}"
    ]
    # The table says the same on stderr.
    table = cli.run("plan", "--recommendations", str(advice), "--dry-run")
    assert table.returncode == 0, table.stderr
    assert [line for line in table.stderr.splitlines() if line.startswith("warning:")] == warnings


def test_plan_says_when_rounding_lowers_an_advised_limit(cli: Cli, tmp_path: Path) -> None:
    roomy = minimal()
    roomy["host"]["cpus"] = 8  # room for redis's advised maximum
    write_stack(tmp_path, roomy)
    advice = _advice(
        tmp_path, "services:\n  redis:\n    cpu: {min: 100m, max: 205m}\n    memory: {min: 64M}\n"
    )
    proc = cli.run("plan", "--recommendations", str(advice), "--format", "json", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    redis = _by_name(proc.stdout)["redis"]
    assert redis["cpu_limit_millicores"] == 200
    assert proc.stderr.splitlines()[0] == (
        "warning: redis: advised CPU limit 205m, planned 200m: limits are rounded down to 0.01 CPU"
    )
    # memory: only the minimum was advised; the stack's (default) maximum stays.
    assert redis["advice"]["memory_limit_bytes"] is None
    assert redis["memory_reservation_bytes"] == 64 * 1024**2


def test_advised_minimums_that_do_not_fit_are_refused(cli: Cli, tmp_path: Path) -> None:
    stack = _small_vm(tmp_path)
    advice = _advice(
        tmp_path, "services:\n  agent:\n    cpu: {min: 1, max: 1.5}\n    memory: {min: 256M}\n"
    )
    proc = cli.run("plan", "--recommendations", str(advice))
    assert proc.returncode == 2
    assert proc.stdout == ""
    line = next(i for i, t in enumerate(stack.read_text().splitlines(), 1) if "cpus: 2" in t)
    assert proc.stderr.splitlines() == [
        f"error: stack.yaml:{line}: host.cpus: the services' minimums need 2.75 CPUs but the "
        "host offers 1.75 after its reserve; lower replicas or cpu.min, or use a bigger VM "
        f"(with the advised minimums from {advice})"
    ]
    assert not (tmp_path / "docker-compose.yml").exists()
