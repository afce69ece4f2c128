"""The top-level group loads each command only when it runs, and its --help lists
them from a table that must say what the commands themselves say."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ops.cli import COMMANDS, cli


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_listed_line_is_the_commands_own(name: str) -> None:
    command = cli.commands[name]
    assert command.name == name
    assert command.help is not None
    assert command.help.strip().split("\n")[0] == COMMANDS[name][1]


def test_a_command_loads_only_its_own_module() -> None:
    code = (
        "import sys\n"
        "from ops.cli import main\n"
        "try:\n    main(['report', '--no-history', '--no-docker', '--quiet'])\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "print(' '.join(m for m in sys.modules if m.startswith('ops.cli.')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) == {"ops.cli.report", "ops.cli.options"}
    assert sorted(cli.commands) == sorted(COMMANDS) and "report" in cli.commands
    assert cli.commands.get("nope") is None
