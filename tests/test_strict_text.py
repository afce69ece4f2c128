"""Numbers in stack.yaml are ASCII digits, and JSON on stdout is always JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.cli import Cli
from tests.support.stacks import minimal, write_stack


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("memory", {"min": "\u0661\u0662\u0668M", "max": "1G"}),  # Arabic-Indic digits
        ("memory", {"min": "128M", "max": "\uff11G"}),  # a fullwidth digit
        ("cpu", {"min": "\u0665\u0660\u0660m", "max": 1}),
    ],
)
def test_a_number_in_other_digits_is_refused(cli: Cli, key: str, value: object) -> None:
    data = minimal()
    data["services"]["agent"]["resources"][key] = value
    write_stack(cli.cwd, data)
    proc = cli.run("plan", "--dry-run")
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert f"services.agent.resources.{key}" in line, line


def test_a_non_finite_number_is_written_as_null() -> None:
    code = (
        "from ops.console import Console;"
        "Console().json({'p99': float('nan'), 'rates': [1.5, float('inf'), -float('inf')]})"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "NaN" not in out and "Infinity" not in out
    assert json.loads(out) == {"p99": None, "rates": [1.5, None, None]}
