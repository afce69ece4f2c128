"""Every command has help, appears in the README, and --help stays light."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from ops import __version__
from ops.cli import cli as vots_ops
from tests.support.cli import Cli, cli_env
from tests.support.stacks import REPO

HEAVY = ("docker", "locust", "jinja2", "httpx", "rich", "pydantic", "yaml", "psutil")


def _commands() -> list[str]:
    return sorted(vots_ops.commands)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    """``python -c code`` in the CLI's sealed environment, from the checkout."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=REPO,
        env=cli_env(),
    )


def test_version(cli: Cli) -> None:
    proc = cli.run("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"vots-ops, version {__version__}"


@pytest.mark.parametrize("name", _commands())
def test_every_command_has_help_and_is_documented(name: str) -> None:
    command = vots_ops.commands[name]
    assert command.help and len(command.help.strip()) > 20
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{name} {param.opts} has no help"
            if param.envvar:
                assert f"env {param.envvar}" in param.help
    readme = (REPO / "README.md").read_text()
    assert f"vots-ops {name}" in readme
    assert f"### `vots-ops {name}`" in readme


def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys\n"
        "sys.argv = ['vots-ops', '--help']\n"
        "from ops.cli import main\n"
        "try:\n    main()\n"
        "except SystemExit:\n    pass\n"
        "print(' '.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    proc = _python(code)
    assert "Usage: vots-ops" in proc.stdout
    loaded = set(proc.stderr.split())
    leaked = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not leaked, f"--help imported {leaked}"


@pytest.mark.parametrize("name", _commands())
def test_command_help_is_light_too(name: str) -> None:
    code = (
        "import sys\n"
        f"sys.argv = ['vots-ops', {name!r}, '--help']\n"
        "from ops.cli import main\n"
        "try:\n    main()\n"
        "except SystemExit:\n    pass\n"
        "print(' '.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    proc = _python(code)
    assert f"Usage: vots-ops {name}" in proc.stdout
    leaked = sorted(m for m in proc.stderr.split() if m.split(".")[0] in HEAVY)
    assert not leaked, f"{name} --help imported {leaked}"
