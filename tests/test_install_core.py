"""The core install alone (``pip install vots-ops``, no extra) does what a host running
only the ``report`` cron job needs, and every command that needs an extra says which.

The wheel is built from the checkout and installed into a fresh venv with no extra;
the checkout's venv is kept off PATH, so neither its packages nor its programs
(py-spy, check-jsonschema, locust) can stand in for missing ones. ``.ci/test`` runs
this file as its own step before the suite, so a hidden core dependency fails CI
early and by name.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import Cli
from tests.support.processes import stop_process
from tests.support.wheel import Installed, install_wheel

pytestmark = pytest.mark.slow

# Distributions the core must not pull in: the extras' packages and the heaviest of
# what they bring (Locust's gevent/flask, the Docker SDK's requests).
NOT_IN_CORE = (
    "locust",
    "hdrhistogram",
    "py-spy",
    "httpx",
    "check-jsonschema",
    "docker",
    "gevent",
    "flask",
    "requests",
)


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    return install_wheel(tmp_path_factory.mktemp("core"))


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single line a refused command printed on stderr."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_the_core_installs_none_of_the_extras(core: Installed) -> None:
    installed = core.distributions()
    assert "vots-ops" in installed
    assert {"click", "rich", "jinja2", "pyyaml", "pydantic", "psutil"} <= installed
    assert "prometheus-client" in installed
    unexpected = sorted(set(NOT_IN_CORE) & installed)
    assert unexpected == [], f"the core install pulled in {unexpected}"
    programs = {p.name for p in (core.venv / "bin").iterdir()}
    assert not {"py-spy", "locust", "check-jsonschema"} & programs


def test_help_and_plan_of_the_bundled_stack(core: Installed, cli: Cli, tmp_path: Path) -> None:
    assert "plan" in core.run(cli, "--help", cwd=tmp_path).stdout
    probe = "import ops, pathlib; print(pathlib.Path(ops.__file__).parent / '_data' / 'stack.yaml')"
    bundled = Path(core.run(cli, "-c", probe, cwd=tmp_path, python=True).stdout.strip())
    assert core.venv.resolve() in bundled.resolve().parents  # the wheel's package data
    out = tmp_path / "out"
    core.run(cli, "plan", "--stack", str(bundled), "--out", str(out), "--quiet", cwd=tmp_path)
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert "docker-compose.yml" in written and "nginx/nginx.conf" in written
    core.run(cli, "plan", "--stack", str(bundled), "--out", str(out), "--check", cwd=tmp_path)


def test_report_samples_the_host(core: Installed, cli: Cli, tmp_path: Path) -> None:
    proc = core.run(cli, "report", "--format", "json", cwd=tmp_path)
    sample = json.loads(proc.stdout)
    assert sample["host"]["cpu_count"] >= 1
    assert sample["host"]["memory"]["total"] > 0


def test_loadtest_names_its_extra(core: Installed, cli: Cli, tmp_path: Path) -> None:
    proc = core.run(
        cli, "loadtest", "health", "--host", "http://127.0.0.1:9", "--duration", "2s",
        cwd=tmp_path, ok=(2,),
    )  # fmt: skip
    assert _one_line(proc) == "error: loadtest needs locust: pip install 'vots-ops[loadtest]'"
    assert not (tmp_path / "loadtest-runs").exists()  # refused before a run directory


def test_profile_names_its_extra(core: Installed, cli: Cli, tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        proc = core.run(
            cli, "profile", "--pid", str(sleeper.pid), "--language", "python",
            "--duration", "1s", cwd=tmp_path, ok=(2,),
        )  # fmt: skip
    finally:
        stop_process(sleeper)
    assert _one_line(proc) == "error: profile needs py-spy: pip install 'vots-ops[profile]'"
    runs = tmp_path / "profile-runs"
    assert not runs.exists() or list(runs.iterdir()) == []  # no run directory left
    proc = core.run(
        cli, "profile", "--language", "go", "--pprof-url", "http://127.0.0.1:9",
        "--duration", "1s", cwd=tmp_path, ok=(2,),
    )  # fmt: skip
    assert _one_line(proc) == (
        "error: profile --pprof-url needs httpx: pip install 'vots-ops[profile]'"
    )


def test_plan_verify_names_its_extra_and_writes_nothing(
    core: Installed, cli: Cli, tmp_path: Path
) -> None:
    probe = "import ops, pathlib; print(pathlib.Path(ops.__file__).parent / '_data' / 'stack.yaml')"
    bundled = core.run(cli, "-c", probe, cwd=tmp_path, python=True).stdout.strip()
    out = tmp_path / "out"
    proc = core.run(
        cli, "plan", "--stack", bundled, "--out", str(out), "--verify", "--quiet",
        cwd=tmp_path, ok=(2,),
    )  # fmt: skip
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: plan --verify needs check-jsonschema: pip install 'vots-ops[verify]'"]
    assert not out.exists()


def test_a_remote_docker_host_names_its_extra(core: Installed, cli: Cli, tmp_path: Path) -> None:
    """A tcp:// engine needs the Docker SDK; the cron sample still has the host's figures
    and says, as its warning, what to install for the containers."""
    proc = core.run(
        cli, "report", "--format", "json", cwd=tmp_path, env={"DOCKER_HOST": "tcp://127.0.0.1:9"}
    )
    assert json.loads(proc.stdout)["host"]["cpu_count"] >= 1
    assert "a tcp:// DOCKER_HOST needs docker: pip install 'vots-ops[remote]'" in proc.stderr
