"""`plan --verify` checks what was rendered and only that, and names every file the
stack references that does not exist (a warning; an error under ``--strict``).

The real checkers run: nginx -t, promtool, check-jsonschema, docker-compose config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ops.plan import plan_stack
from tests.support.cli import Cli
from tests.support.stacks import minimal, write_stack


def _with_secret(root: Path, **tls: str) -> dict[str, Any]:
    data = minimal()
    data["secrets"] = {"api_key": {"file": "./secrets/api_key"}}
    data["services"]["agent"]["secrets"] = ["api_key"]
    data["tls"].update(tls)
    return data


def test_verify_with_prometheus_off_checks_only_what_was_rendered(tmp_path: Path) -> None:
    data = minimal()
    data["monitoring"]["prometheus"] = False
    stack = write_stack(tmp_path, data)
    result = plan_stack(stack, verify=True)
    assert result.verify is not None
    assert "prometheus/prometheus.yml" not in result.files
    assert result.verify.ran == ("nginx", "compose-schema", "docker-compose")
    assert result.verify.failed == ()


def test_verify_with_prometheus_on_runs_promtool_on_both_files(tmp_path: Path) -> None:
    stack = write_stack(tmp_path, minimal())
    result = plan_stack(stack, verify=True)
    assert result.verify is not None
    assert [c.name for c in result.verify.checks].count("promtool") == 2
    assert result.verify.failed == ()


def test_cli_verify_passes_with_prometheus_off(cli: Cli, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    data = minimal()
    data["monitoring"]["prometheus"] = False
    write_stack(site, data)
    proc = cli.run("plan", "--verify", "--dry-run", cwd=site)
    assert proc.returncode == 0, proc.stderr
    (ok,) = [line for line in proc.stderr.splitlines() if "accept the files" in line]
    assert "nginx -t" in ok and "docker-compose config" in ok and "promtool" not in ok


@pytest.mark.slow
def test_missing_referenced_files_are_warnings_then_errors_under_strict(
    cli: Cli, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    stack = write_stack(site, _with_secret(site))
    text = stack.read_text().splitlines()

    def line_of(needle: str) -> int:
        return next(i for i, t in enumerate(text, 1) if needle in t)

    expected = [
        f"warning: {stack.name}:{line_of('certificate:')}: tls.certificate: "
        "/etc/ssl/vots/cert.pem: no such file",
        f"warning: {stack.name}:{line_of('key: /etc')}: tls.key: /etc/ssl/vots/key.pem: no such file",
        f"warning: {stack.name}:{line_of('file: ./secrets')}: secrets.api_key.file: "
        f"./secrets/api_key: no such file (looked for {site / 'secrets' / 'api_key'})",
    ]
    proc = cli.run("plan", "--verify", "--dry-run", cwd=site)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == expected

    strict = cli.run("plan", "--verify", "--strict", cwd=site)
    assert strict.returncode == 1, strict.stderr
    (line,) = strict.stderr.splitlines()
    assert line.startswith("error: stack.yaml:") and "tls.certificate" in line
    assert "(and 2 more: " in line and "secrets.api_key.file" in line
    assert not (site / "docker-compose.yml").exists(), "a failed verify writes nothing"


def test_strict_passes_when_every_referenced_file_exists(cli: Cli, tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "secrets").mkdir(parents=True)
    (site / "secrets" / "api_key").write_text("k")
    (site / "tls").mkdir()
    for name in ("cert.pem", "key.pem"):
        (site / "tls" / name).write_text("pem")
    tls = {"certificate": str(site / "tls" / "cert.pem"), "key": str(site / "tls" / "key.pem")}
    write_stack(site, _with_secret(site, **tls))
    proc = cli.run("plan", "--verify", "--strict", cwd=site)
    assert proc.returncode == 0, proc.stderr
    assert "warning:" not in proc.stderr
    assert (site / "docker-compose.yml").is_file()


def test_strict_without_verify_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    write_stack(tmp_path, minimal())
    proc = cli.run("plan", "--strict", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--strict needs --verify" in proc.stderr
