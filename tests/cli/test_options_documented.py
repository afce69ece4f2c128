"""Every option of every command is exercised by a test and documented in the README.

The Click tree is walked from ``ops.cli.COMMANDS`` (each command loaded), groups
into their subcommands; hidden options (the deprecated spellings) count too, since
they still work. An option counts as tested when a test file other than this
one writes its long name; as documented when README.md does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import click
import pytest

from ops.cli import COMMANDS, cli
from tests.support.stacks import REPO

TESTS = REPO / "tests"


def _walk(command: click.Command, path: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    for param in command.params:
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                if name.startswith("--"):
                    yield " ".join(path), name
    if isinstance(command, click.Group):
        for sub in sorted(command.commands):
            yield from _walk(command.commands[sub], (*path, sub))


def _options() -> list[tuple[str, str]]:
    found = list(_walk(cli, ("vots-ops",)))
    for name in sorted(COMMANDS):
        found += _walk(cli.commands[name], ("vots-ops", name))
    return sorted(set(found))


def _written(name: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")


@cache
def _test_text() -> str:
    here = Path(__file__).resolve()
    files = (p for p in TESTS.rglob("*.py") if p.resolve() != here)
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(files))


@cache
def _readme() -> str:
    return (REPO / "README.md").read_text(encoding="utf-8")


OPTIONS = _options()


def test_the_walk_finds_the_commands_and_their_subcommands() -> None:
    commands = {command for command, _ in OPTIONS}
    assert {"vots-ops", "vots-ops plan", "vots-ops report", "vots-ops report serve"} <= commands
    assert any(command.startswith("vots-ops profile ") for command in commands)
    assert ("vots-ops report recommend", "--out") in OPTIONS, "hidden spellings count"


@pytest.mark.parametrize(("command", "name"), OPTIONS, ids=[f"{c} {n}" for c, n in OPTIONS])
def test_every_option_is_tested_and_documented(command: str, name: str) -> None:
    written = _written(name)
    missing = [
        where
        for where, text in (("a test under tests/", _test_text()), ("README.md", _readme()))
        if not written.search(text)
    ]
    assert not missing, f"`{command} {name}` is not in {' or '.join(missing)}"
