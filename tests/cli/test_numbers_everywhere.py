"""Every numeric option of every command reads its number strictly: ``inf``,
``nan``, ``1e999`` and a number with thousands of digits are one line naming the
option, exit 2, never a traceback and never accepted.

The Click tree is walked from ``ops.cli.COMMANDS``; an option counts as numeric
by its type. Click's own number types are not allowed at all, since
``click.FloatRange`` lets ``inf`` and ``nan`` through.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from ops.cli import COMMANDS, cli, main
from ops.cli.options import Duration, FiniteFloat, FiniteInt

NUMERIC = (FiniteFloat, FiniteInt, Duration)
CLICK_NUMBERS = (click.types.FloatParamType, click.types.IntParamType)
#: Options read by a parser of their own (``ops.cli.options.parsed``): durations
#: and rates in the one grammar.
PARSED = {"duration", "arrival_rate"}


def _commands(
    command: click.Command, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for sub in sorted(command.commands):
            yield from _commands(command.commands[sub], (*path, sub))


def _numeric_options() -> list[tuple[tuple[str, ...], str, click.Command]]:
    found = []
    for name in sorted(COMMANDS):
        for path, command in _commands(cli.commands[name], (name,)):
            for param in command.params:
                parsed = param.callback is not None and param.name in PARSED
                if isinstance(param, click.Option) and (isinstance(param.type, NUMERIC) or parsed):
                    long = next(o for o in param.opts if o.startswith("--"))
                    found.append((path, long, command))
    return found


OPTIONS = _numeric_options()


def test_no_option_uses_clicks_own_number_types() -> None:
    loose = [
        f"{' '.join(path)} {param.opts[-1]}"
        for name in sorted(COMMANDS)
        for path, command in _commands(cli.commands[name], (name,))
        for param in command.params
        if isinstance(param.type, CLICK_NUMBERS)
    ]
    assert not loose, f"use ops.cli.options.FiniteFloat/FiniteInt/Duration for {loose}"
    assert len(OPTIONS) >= 15  # the walk found the commands' options


def _arguments(command: click.Command, tmp_path: Path) -> list[str]:
    """Values for the command's required arguments, given after the option so
    that Click reads the option first."""
    args = []
    for param in command.params:
        if isinstance(param, click.Argument) and param.required:
            placeholder = tmp_path / f"{param.name}.txt"
            placeholder.write_text("x\n")
            args.append(str(placeholder))
    return args


@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "1e999", "9" * 5000])
@pytest.mark.parametrize(
    ("path", "option", "command"), OPTIONS, ids=[f"{' '.join(p)} {o}" for p, o, _ in OPTIONS]
)
def test_a_hostile_number_is_one_line_exit_2(
    path: tuple[str, ...],
    option: str,
    command: click.Command,
    value: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing the command might write lands in the checkout
    with pytest.raises(SystemExit) as exited:
        main([*path, f"{option}={value}", *_arguments(command, tmp_path)])
    err = capsys.readouterr().err
    assert exited.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert option in lines[0] and "Traceback" not in err, lines[0]
