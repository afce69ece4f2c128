"""The built wheel works on its own: installed into a fresh venv, ``vots-ops plan``
run next to nothing but a copy of stack.yaml renders the same five files as the
checkout, from templates shipped as package data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ops.plan import fit, plan_stack
from ops.plan.render import OUTPUTS, render_files
from ops.stack import load_stack
from tests.support.cli import Cli
from tests.support.stacks import BUNDLED, REPO
from tests.support.wheel import Installed, install_wheel

pytestmark = pytest.mark.slow

EXPECTED = (
    "docker-compose.yml",
    "nginx/nginx.conf",
    "nginx/upstreams.conf",
    "nginx/ffdhe2048.pem",
    "prometheus/prometheus.yml",
    "prometheus/alerts.yml",
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    # With the loadtest extra: the bundled scenarios below are run with Locust.
    return install_wheel(tmp_path_factory.mktemp("wheel"), "[loadtest]")


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


def test_wheel_renders_the_swarm_and_k8s_targets_as_the_checkout(
    installed: Installed, cli: Cli, tmp_path: Path
) -> None:
    work = tmp_path / "site"
    work.mkdir()
    shutil.copyfile(BUNDLED, work / "stack.yaml")
    for target, directory in (("swarm", "swarm"), ("k8s", "k8s")):
        out = tmp_path / f"out-{target}"
        verify = ["--verify"] if target == "swarm" else []  # k8s's needs the verify extra
        installed.run(cli, "plan", "--out", str(out), "--target", target, *verify, cwd=work)
        want = plan_stack(work / "stack.yaml", out, mode="check", target=target).files
        got = {
            str(p.relative_to(out)): p.read_text(encoding="utf-8")
            for p in (out / directory).rglob("*")
            if p.is_file()
        }
        assert got == want, target
    # The k8s checks need the verify extra; the wheel without it says which, writes nothing.
    proc = installed.run(
        cli, "plan", "--out", str(tmp_path / "k8s-verify"), "--target", "k8s", "--verify",
        cwd=work, ok=(2,),
    )  # fmt: skip
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: plan --target k8s --verify needs kubernetes-validate: pip install 'vots-ops[verify]'"
    ]
    assert not (tmp_path / "k8s-verify").exists()


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
