"""`vots-ops plan` as a user runs it: the installed console script, real files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ops.plan.render import OUTPUTS
from tests.support.stacks import BUNDLED, REPO

EXE = shutil.which("vots-ops", path=str(Path(sys.executable).parent)) or "vots-ops"
ENV = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120"}


def vots(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, cwd=cwd, env=ENV, timeout=60
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copy(BUNDLED, tmp_path / "stack.yaml")
    return tmp_path


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_committed_files_match_the_bundled_stack() -> None:
    """The repository's docker-compose.yml, nginx/ and prometheus/ are the plan's output."""
    proc = vots("plan", "--check", cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_plan_writes_every_file_then_reports_unchanged(workdir: Path) -> None:
    first = vots("plan", cwd=workdir)
    assert first.returncode == 0, first.stderr
    for name in OUTPUTS:
        assert (workdir / name).is_file(), name
    assert "agent" in first.stdout and "total" in first.stdout
    assert "wrote 5 file(s)" in first.stderr
    before = _snapshot(workdir)
    second = vots("plan", cwd=workdir)
    assert second.returncode == 0
    assert "wrote 0 file(s)" in second.stderr and "5 unchanged" in second.stderr
    assert _snapshot(workdir) == before
    assert not list(workdir.rglob("*.tmp")), "temp files left behind"


def test_out_dir(workdir: Path) -> None:
    proc = vots("plan", "--out", "rendered", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert sorted(
        str(p.relative_to(workdir / "rendered"))
        for p in (workdir / "rendered").rglob("*")
        if p.is_file()
    ) == sorted(OUTPUTS)


def test_check_fails_with_a_diff_on_drift(workdir: Path) -> None:
    assert vots("plan", cwd=workdir).returncode == 0
    compose = workdir / "docker-compose.yml"
    compose.write_text(compose.read_text().replace('cpus: "0.58"', 'cpus: "3"', 1))
    before = _snapshot(workdir)
    proc = vots("plan", "--check", cwd=workdir)
    assert proc.returncode == 1
    assert '-          cpus: "3"' in proc.stdout and '+          cpus: "0.58"' in proc.stdout
    assert "--- a/docker-compose.yml" in proc.stdout
    assert "differ from" in proc.stderr
    assert _snapshot(workdir) == before


def test_dry_run_shows_the_diff_and_writes_nothing(workdir: Path) -> None:
    before = _snapshot(workdir)
    proc = vots("plan", "--dry-run", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert "+++ b/nginx/nginx.conf" in proc.stdout
    assert "nothing written" in proc.stderr
    assert _snapshot(workdir) == before


def test_json_output_is_pipeable(workdir: Path) -> None:
    proc = vots("plan", "--format", "json", "--dry-run", cwd=workdir)
    assert proc.returncode == 0
    data = json.loads(proc.stdout)
    names = [s["name"] for s in data["services"]]
    assert {"agent", "rag", "dashboard", "redis", "mongo", "chroma", "nginx", "prometheus"} <= set(
        names
    )
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
    workdir: Path, old: str, new: str, expected: str
) -> None:
    assert vots("plan", cwd=workdir).returncode == 0
    stack = workdir / "stack.yaml"
    stack.write_text(stack.read_text().replace(old, new, 1))
    before = _snapshot(workdir)
    proc = vots("plan", cwd=workdir)
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


def test_missing_stack_file(tmp_path: Path) -> None:
    proc = vots("plan", "--stack", "nope.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == "error: nope.yaml: file not found (pass --stack PATH or set VOTS_OPS_STACK)"
    )


def test_unwritable_output_is_exit_2_and_nothing_half_written(workdir: Path) -> None:
    (workdir / "out").mkdir()
    (workdir / "out" / "nginx").write_text("a file where a directory must go")
    proc = vots("plan", "--out", "out", cwd=workdir)
    assert proc.returncode == 2
    assert "not a directory" in proc.stderr
    assert sorted(p.name for p in (workdir / "out").iterdir()) == ["nginx"]


def test_bad_flags_are_usage_errors(workdir: Path) -> None:
    proc = vots("plan", "--format", "xml", cwd=workdir)
    assert proc.returncode == 2
    assert "Invalid value for '--format'" in proc.stderr
    proc = vots("plan", "--check", "--dry-run", cwd=workdir)
    assert proc.returncode == 2


def test_stack_from_environment(workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("cwd")
    env = {**ENV, "VOTS_OPS_STACK": str(workdir / "stack.yaml")}
    proc = subprocess.run(
        [EXE, "plan", "--dry-run"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def test_quiet_prints_nothing_on_success(workdir: Path) -> None:
    proc = vots("--quiet", "plan", cwd=workdir)
    assert proc.returncode == 0
    assert proc.stdout == "" and proc.stderr == ""


def test_verify_runs_the_real_tools() -> None:
    proc = vots("plan", "--verify", "--dry-run", cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "nginx -t, promtool" in proc.stderr


def test_verify_reports_a_missing_build_context(workdir: Path) -> None:
    """Copied away from services/edge, the compose file cannot build nginx: say so."""
    proc = vots("plan", "--verify", "--dry-run", cwd=workdir)
    assert "warning: edge.build: services/edge does not exist next to stack.yaml" in proc.stderr
    assert proc.returncode == 1
    assert "docker-compose rejected the rendered files: build path" in proc.stderr


def test_check_with_json_keeps_stdout_json(workdir: Path) -> None:
    assert vots("plan", cwd=workdir).returncode == 0
    compose = workdir / "docker-compose.yml"
    compose.write_text(compose.read_text() + "# local edit\n")
    proc = vots("plan", "--check", "--format", "json", cwd=workdir)
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    status = {f["path"]: f["status"] for f in data["files"]}
    assert status["docker-compose.yml"] == "differs"
    assert status["nginx/nginx.conf"] == "unchanged"
    assert "differ from" in proc.stderr


def test_empty_out_is_refused(workdir: Path) -> None:
    proc = vots("plan", "--out", "", cwd=workdir)
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
