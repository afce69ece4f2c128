"""The built wheel works on its own: installed into a fresh venv, ``vots-ops plan``
run next to nothing but a copy of stack.yaml renders the same five files as the
checkout, from templates shipped as package data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ops.plan import fit
from ops.plan.render import OUTPUTS, render_files
from ops.stack import load_stack
from tests.support.cli import Cli
from tests.support.stacks import BUNDLED, REPO

pytestmark = pytest.mark.slow

EXPECTED = (
    "docker-compose.yml",
    "nginx/nginx.conf",
    "nginx/ffdhe2048.pem",
    "prometheus/prometheus.yml",
    "prometheus/alerts.yml",
)


def _build_env() -> dict[str, str]:
    """For building and installing the wheel: the caller's environment (a package index
    or proxy it sets is needed), without the checkout's venv or any vots-ops setting."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"} and not k.startswith("VOTS_OPS_")
    }
    env["PATH"] = _path_without_checkout_venv()
    return env


def _path_without_checkout_venv() -> str:
    bindir = str(Path(sys.executable).parent)
    return os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != bindir)


def _run(argv: list[str], *, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_build_env(),
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"{argv} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def run(
        self, cli: Cli, *args: str, cwd: Path, python: bool = False, ok: tuple[int, ...] = (0,)
    ) -> Any:
        """The wheel's ``vots-ops`` (or its ``python``) in the sealed CLI environment,
        with no trace of the checkout's venv on PATH; another exit code fails the test."""
        program = (str(self.venv / "bin" / ("python" if python else "vots-ops")),)
        env = {"PATH": _path_without_checkout_venv()}
        proc = cli.run(*args, cwd=cwd, timeout=180, env=env, program=program)
        assert proc.returncode in ok, (
            f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
        return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("wheel")
    dist, venv = root / "dist", root / "venv"
    uv = shutil.which("uv")
    if uv:
        _run([uv, "build", "--wheel", "--out-dir", str(dist), str(REPO)], cwd=REPO)
        _run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], cwd=root)
    else:
        _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(REPO)], cwd=REPO)
        _run([sys.executable, "-m", "venv", str(venv)], cwd=root)
    (wheel,) = dist.glob("vots_ops-*.whl")
    python = venv / "bin" / "python"
    if uv:
        _run([uv, "pip", "install", "--quiet", "--python", str(python), str(wheel)], cwd=root)
    else:
        _run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], cwd=root)
    yield Installed(wheel, venv)


def test_wheel_plan_matches_checkout(installed: Installed, cli: Cli, tmp_path: Path) -> None:
    work = tmp_path / "site"
    work.mkdir()
    shutil.copyfile(BUNDLED, work / "stack.yaml")
    out = tmp_path / "out"
    installed.run(cli, "plan", "--out", str(out), cwd=work)

    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == sorted(
        [*EXPECTED, ".vots-ops-manifest"]
    )  # what was rendered, for stale files
    assert set(OUTPUTS) == set(EXPECTED)

    loaded = load_stack(work / "stack.yaml")
    expected = render_files(loaded, fit(loaded), out)
    for name in EXPECTED:
        assert (out / name).read_text(encoding="utf-8") == expected[name], (
            f"{name} differs from the checkout"
        )
    # The stack directory itself is left alone: only stack.yaml is there.
    assert sorted(p.name for p in work.iterdir()) == ["stack.yaml"]

    # A second run finds nothing to change.
    installed.run(cli, "plan", "--out", str(out), "--check", cwd=work)


def test_wheel_ships_templates_as_package_data(
    installed: Installed, cli: Cli, tmp_path: Path
) -> None:
    probe = "import ops, ops.plan.render as r; print(ops.__file__); print(r.templates_dir())"
    proc = installed.run(cli, "-c", probe, cwd=tmp_path, python=True)
    package_file, templates = (Path(line) for line in proc.stdout.splitlines())
    package = package_file.parent
    assert installed.venv.resolve() in package.resolve().parents, (
        f"ops imported from {package}, not the wheel"
    )
    assert templates == package / "_data" / "templates"
    assert templates.is_dir()

    shipped = sorted(p.name for p in templates.iterdir() if p.is_file())
    source = sorted(p.name for p in (REPO / "templates").iterdir() if p.is_file())
    assert shipped == source
    for name in source:
        assert (templates / name).read_bytes() == (REPO / "templates" / name).read_bytes(), name
    assert (package / "_data" / "stack.yaml").read_bytes() == BUNDLED.read_bytes()


def test_wheel_contents(installed: Installed) -> None:
    import zipfile

    with zipfile.ZipFile(installed.wheel) as whl:
        names = set(whl.namelist())
    assert "ops/plan/render.py" in names
    for template in (REPO / "templates").iterdir():
        assert f"ops/_data/templates/{template.name}" in names
    assert "ops/_data/edge/Dockerfile" in names  # the default edge build context
    assert not any(n.startswith(("tests/", "templates/")) for n in names), (
        "only the ops package belongs in the wheel"
    )
    entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(installed.wheel) as whl:
        assert "vots-ops = ops.cli:main" in whl.read(entry).decode()


def test_wheel_runs_the_bundled_load_scenarios(
    installed: Installed, cli: Cli, tmp_path: Path
) -> None:
    """Outside a checkout the bundled scenarios and locustfile come from the wheel, and
    Locust (a subprocess of the wheel's Python) loads the plugin and user classes from it."""
    import json

    from tests.support.standin import serve_standin

    listed = installed.run(cli, "loadtest", "--list", cwd=tmp_path)
    assert "ops/_data/loadtests/scenarios.yaml" in listed.stdout
    assert all(name in listed.stdout for name in ("smoke", "slo", "health"))
    with serve_standin() as standin:
        proc = installed.run(
            cli, "loadtest", "health", "--host", standin.url, "--duration", "2s",
            "--users", "4", "--format", "json", cwd=tmp_path, ok=(0, 1),
        )  # fmt: skip
    result = json.loads(proc.stdout)
    # The run itself is the point: the scenario's latency SLO (p99 < 50 ms) may well
    # fail on a loaded machine, and then the exit code says so.
    assert proc.returncode == (0 if result["verdict"] == "pass" else 1), proc.stderr
    overall = result["endpoints"]["GET /healthz"]
    assert overall["requests"] > 0 and overall["failures"] == 0
    assert result["hdr_counts_match"] is True and result["exceptions"] == []
    assert (tmp_path / "loadtest-runs").is_dir()


def test_wheel_ships_the_profile_recipes(installed: Installed, cli: Cli, tmp_path: Path) -> None:
    """Outside a checkout, recipe names resolve against the recipes in the wheel."""
    proc = installed.run(cli, "profile", "no-such-recipe", cwd=tmp_path, ok=(2,))
    (line,) = proc.stderr.strip().splitlines()
    assert "ops/_data/profiles" in line and "agent, go-service, rag, rust-service" in line
