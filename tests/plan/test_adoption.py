"""`plan` in someone else's repository: hand-written files are never replaced unless
forced, generated files it no longer renders are removed (only those with the
header), and the drift hint prints the command that fixes the drift.

Everything runs for real: the CLI as a subprocess on real files.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from ops.plan import plan_stack
from ops.plan.pipeline import GENERATED_MARK, MANIFEST, ForeignFiles
from ops.plan.render import OUTPUTS
from tests.support.cli import Cli
from tests.support.stacks import minimal, write_stack


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """The user's repository: a directory of its own (the CLI keeps state in tmp_path)."""
    (tmp_path / "site").mkdir()
    return tmp_path / "site"


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _stack(root: Path, prometheus: bool = True, port: int = 8000) -> Path:
    data = minimal()
    data["monitoring"]["prometheus"] = prometheus
    data["services"]["agent"]["port"] = port
    return write_stack(root, data)


# ------------------------------------------------------------ hand-written files


def test_a_hand_written_file_is_never_replaced_and_nothing_is_written(cli: Cli, site: Path) -> None:
    _stack(site)
    (site / "docker-compose.yml").write_text("services:\n  mine: {image: busybox}\n")
    before = _snapshot(site)

    proc = cli.run("plan", cwd=site)

    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"error: {site / 'docker-compose.yml'}: no generated-by header")
    assert line.endswith("--force replaces it")
    assert "Traceback" not in proc.stderr
    # Not the hand-written file, and none of the other four, nor the manifest.
    assert _snapshot(site) == before
    assert sorted(p.name for p in site.iterdir()) == ["docker-compose.yml", "stack.yaml"]


def test_force_replaces_a_hand_written_file(cli: Cli, site: Path) -> None:
    _stack(site)
    (site / "nginx").mkdir()
    (site / "nginx" / "nginx.conf").write_text("events {}\n")
    proc = cli.run("plan", "--force", cwd=site)
    assert proc.returncode == 0, proc.stderr
    assert GENERATED_MARK in (site / "nginx" / "nginx.conf").read_text().splitlines()[0]
    assert all((site / name).is_file() for name in OUTPUTS)


def test_a_generated_file_edited_by_hand_is_replaced(cli: Cli, site: Path) -> None:
    """The header says "do not edit by hand": a file that keeps it is ours to rewrite."""
    _stack(site)
    assert cli.run("plan", cwd=site).returncode == 0
    compose = site / "docker-compose.yml"
    rendered = compose.read_text()
    compose.write_text(rendered + "# a local edit\n")
    assert cli.run("plan", cwd=site).returncode == 0
    assert compose.read_text() == rendered


def test_a_file_without_header_that_already_matches_is_not_a_conflict(cli: Cli, site: Path) -> None:
    """The DH parameters carry no header; the same bytes on disk need no replacing."""
    _stack(site)
    assert cli.run("plan", cwd=site).returncode == 0
    (site / "docker-compose.yml").unlink()
    proc = cli.run("plan", cwd=site)
    assert proc.returncode == 0, proc.stderr
    # A different PEM is someone's own: refused.
    (site / "nginx" / "ffdhe2048.pem").write_text("-----BEGIN DH PARAMETERS-----\n")
    proc = cli.run("plan", cwd=site)
    assert proc.returncode == 2
    assert "ffdhe2048.pem: no generated-by header" in proc.stderr


def test_library_refuses_without_naming_a_flag(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    with pytest.raises(ForeignFiles) as caught:
        plan_stack(stack, mode="write")
    assert caught.value.paths == (tmp_path / "docker-compose.yml",)
    assert "--" not in str(caught.value)
    assert not (tmp_path / "nginx").exists()


def test_check_and_dry_run_warn_about_hand_written_files(cli: Cli, site: Path) -> None:
    _stack(site)
    (site / "docker-compose.yml").write_text("services: {}\n")
    dry = cli.run("plan", "--dry-run", cwd=site)
    assert dry.returncode == 0
    assert "docker-compose.yml has no generated-by header" in dry.stderr
    check = cli.run("plan", "--check", cwd=site)
    assert check.returncode == 1
    assert "--force" in check.stderr.splitlines()[-1]


# ------------------------------------------------------------ stale generated files


def test_files_no_longer_rendered_are_stale_then_removed(cli: Cli, site: Path) -> None:
    _stack(site, prometheus=True)
    assert cli.run("plan", cwd=site).returncode == 0
    manifest = (site / MANIFEST).read_text()
    assert GENERATED_MARK in manifest.splitlines()[0]
    assert "prometheus/alerts.yml" in manifest.splitlines()

    _stack(site, prometheus=False)
    check = cli.run("plan", "--check", cwd=site)
    assert check.returncode == 1, check.stderr
    last = check.stderr.splitlines()[-1]
    assert "no longer rendered: prometheus/prometheus.yml, prometheus/alerts.yml" in last
    assert "+++ /dev/null" in check.stdout and "--- a/prometheus/alerts.yml" in check.stdout
    assert (site / "prometheus" / "alerts.yml").is_file(), "--check writes nothing"

    proc = cli.run("plan", cwd=site)
    assert proc.returncode == 0, proc.stderr
    assert "removed 2 no longer rendered" in proc.stderr
    assert not (site / "prometheus").exists(), "the emptied directory goes too"
    assert "prometheus/alerts.yml" not in (site / MANIFEST).read_text()
    assert cli.run("plan", "--check", cwd=site).returncode == 0


def test_a_stale_file_without_the_header_is_reported_not_deleted(cli: Cli, site: Path) -> None:
    _stack(site, prometheus=True)
    assert cli.run("plan", cwd=site).returncode == 0
    alerts = site / "prometheus" / "alerts.yml"
    mine = "".join(alerts.read_text().splitlines(keepends=True)[1:])  # header dropped: mine now
    alerts.write_text(mine)

    _stack(site, prometheus=False)
    proc = cli.run("plan", cwd=site)
    assert proc.returncode == 0, proc.stderr
    assert alerts.read_text() == mine
    assert not (site / "prometheus" / "prometheus.yml").exists()
    warning = [line for line in proc.stderr.splitlines() if "alerts.yml" in line]
    assert len(warning) == 1 and warning[0].startswith("warning: ")
    assert "no generated-by header" in warning[0] and "left in place" in warning[0]
    assert cli.run("plan", "--check", cwd=site).returncode == 0


def test_stale_files_are_found_without_a_manifest(tmp_path: Path) -> None:
    """Files rendered before the manifest existed are still ours if they carry the header."""
    stack = _stack(tmp_path, prometheus=True)
    plan_stack(stack, mode="write")
    (tmp_path / MANIFEST).unlink()
    stack = _stack(tmp_path, prometheus=False)
    result = plan_stack(stack, mode="check")
    assert result.drift and result.stale == ("prometheus/prometheus.yml", "prometheus/alerts.yml")
    assert (tmp_path / "prometheus" / "alerts.yml").exists()


def test_a_manifest_cannot_point_outside_the_directory(tmp_path: Path) -> None:
    out = tmp_path / "out"
    stack = _stack(tmp_path)
    plan_stack(stack, out, mode="write")
    victim = tmp_path / "victim.yml"
    victim.write_text(f"# {GENERATED_MARK} from elsewhere\n")
    manifest = out / MANIFEST
    manifest.write_text(manifest.read_text() + "../victim.yml\n/etc/hostname\n")
    result = plan_stack(stack, out, mode="write")
    assert victim.exists() and result.stale == ()


# ------------------------------------------------------------ the typed result


def test_the_library_result_says_what_changed(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    first = plan_stack(stack, mode="write")
    assert first.written and set(first.changed) == set(OUTPUTS) and first.unchanged == ()
    assert [a.name for a in first.plan.allocations][:2] == ["agent", "redis"]

    stack = _stack(tmp_path, port=8100)
    before = _snapshot(tmp_path)
    check = plan_stack(stack, mode="check")
    assert check.drift and not check.written
    assert check.changed == (
        "docker-compose.yml",
        "nginx/upstreams.conf",
        "prometheus/prometheus.yml",
    )
    assert set(check.unchanged) == set(OUTPUTS) - set(check.changed)
    assert check.status()["docker-compose.yml"] == "differs"
    assert "+++ b/nginx/upstreams.conf" in check.diff
    assert _snapshot(tmp_path) == before


def test_recommendations_are_applied_by_the_library(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    advice = tmp_path / "advice.yaml"
    advice.write_text(
        "services:\n  agent: {cpu: {min: 0.5, max: 0.6}}\n  ghost: {memory: {min: 64M}}\n"
    )
    seen: list[str] = []
    result = plan_stack(stack, recommendations=advice, on_warning=seen.append)
    agent = result.plan.by_name()["agent"]
    assert agent.cpu_reservation == 500
    assert result.advice is not None and set(result.advice) == {"agent"}
    # The VM cannot give the advised 0.6 limit: said, as the CLI used to say it.
    assert seen == [
        f"{advice}: ghost is not a service of {stack}; skipped",
        result.advice["agent"].line(),
    ]
    assert seen[1].startswith("agent: advised CPU limit 600m, planned 500m: ")
    assert list(result.warnings) == seen


# ------------------------------------------------------------ the drift hint


def test_the_drift_hint_is_the_command_that_fixes_it(cli: Cli, site: Path) -> None:
    (site / "my stack").mkdir()
    stack = _stack(site / "my stack")
    out = "rendered files"
    assert cli.run("plan", "--stack", str(stack), "--out", out, cwd=site).returncode == 0
    _stack(site / "my stack", port=8100)

    check = cli.run("plan", "--check", "--stack", str(stack), "--out", out, cwd=site)
    assert check.returncode == 1
    last = check.stderr.splitlines()[-1]
    fix = f"vots-ops plan --stack {shlex.quote(str(stack))} --out {shlex.quote(out)}"
    assert f"run `{fix}` to update" in last

    argv = shlex.split(fix)
    assert cli.run(*argv[1:], cwd=site).returncode == 0
    assert cli.run("plan", "--check", "--stack", str(stack), "--out", out, cwd=site).returncode == 0


def test_the_drift_hint_without_options_is_plain(cli: Cli, site: Path) -> None:
    _stack(site)
    check = cli.run("plan", "--check", cwd=site)
    assert check.returncode == 1
    assert check.stderr.splitlines()[-1].endswith("run `vots-ops plan` to update")


# ------------------------------------------------------------ the edge build context


def test_a_stack_without_edge_builds_the_shipped_edge(cli: Cli, site: Path) -> None:
    from ops.plan.render import edge_context

    stack = _stack(site)
    assert "edge" not in yaml.safe_load(stack.read_text())
    assert cli.run("plan", cwd=site).returncode == 0
    compose = yaml.safe_load((site / "docker-compose.yml").read_text())
    assert compose["services"]["nginx"]["image"] == "vots/edge:latest"
    context = Path(compose["services"]["nginx"]["build"]["context"])
    assert context.is_absolute() and context == edge_context()
    assert (context / "Dockerfile").is_file()

    # docker-compose itself resolves the context and finds it.
    import subprocess

    proc = subprocess.run(
        ["docker-compose", "-f", str(site / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        cwd=site,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    resolved = yaml.safe_load(proc.stdout)["services"]["nginx"]["build"]["context"]
    assert Path(resolved).is_dir() and (Path(resolved) / "Dockerfile").is_file()


def test_an_edge_image_of_ones_own_is_not_given_a_build(tmp_path: Path) -> None:
    data = minimal(edge={"image": "registry.example.com/edge:1.4"})
    stack = write_stack(tmp_path, data)
    compose = yaml.safe_load(plan_stack(stack).files["docker-compose.yml"])
    assert "build" not in compose["services"]["nginx"]


@pytest.mark.slow
def test_the_wheel_ships_the_edge_context_where_edge_context_looks(tmp_path: Path) -> None:
    """The built wheel carries services/edge as ops/_data/edge, and the package
    unpacked from it (no checkout around it) resolves the edge context there."""
    import os
    import subprocess
    import sys
    import zipfile

    from tests.support.stacks import REPO

    dist = tmp_path / "dist"
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(REPO)],
        capture_output=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
        check=True,
    )
    (wheel,) = dist.glob("vots_ops-*.whl")
    site = tmp_path / "site-packages"
    with zipfile.ZipFile(wheel) as whl:
        whl.extractall(site)
    probe = "import ops.plan.render as r; print(r.edge_context())"
    proc = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {probe}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    shipped = Path(proc.stdout.strip())
    assert shipped == site / "ops" / "_data" / "edge"
    assert (shipped / "Dockerfile").read_bytes() == (REPO / "services/edge/Dockerfile").read_bytes()
