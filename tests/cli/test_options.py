"""The shared option types, as other commands use them: numbers strictly read
(finite, bounded, ASCII), durations through ``ops.units.parse_duration_s``."""

from __future__ import annotations

import math

import click
import pytest
from click.testing import CliRunner

from ops.cli.options import Duration, FiniteFloat, FiniteInt, renamed


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        (FiniteFloat(0), "-0", 0.0),
        (FiniteFloat(), "1e3", 1000.0),
        (FiniteFloat(), " .5 ", 0.5),
        (FiniteFloat(0, 1), "1", 1.0),
        (FiniteInt(1, 10), "+7", 7),
        (FiniteInt(), "-0", 0),
        (Duration(1), "90s", 90.0),
        (Duration(1), "1h30m", 5400.0),
        (Duration(1), "2", 2.0),
        (Duration(0.2), "0.5", 0.5),
    ],
)
def test_what_is_read(kind: click.ParamType, text: str, value: float) -> None:
    got = kind.convert(text, None, None)
    assert got == value and type(got) is type(value)
    assert math.copysign(1, got) == 1, "never a negative zero"


@pytest.mark.parametrize(
    ("kind", "text", "said"),
    [
        (FiniteFloat(), "inf", "expected a number (got 'inf')"),
        (FiniteFloat(), "NaN", "expected a number (got 'NaN')"),
        (FiniteFloat(), "1e999", "expected a number (got '1e999')"),
        (FiniteFloat(), "1_0", "expected a number (got '1_0')"),
        (FiniteFloat(), "٣", "expected a number (got '٣')"),
        (FiniteFloat(), "9" * 40, "expected a number (got 40 characters; at most 32)"),
        (FiniteFloat(0, min_open=True), "0", "expected a number above 0 (got 0)"),
        (FiniteFloat(0.01, 3650), "-0", "expected a number from 0.01 to 3650 (got -0)"),
        (FiniteInt(1), "1.5", "expected a whole number (got '1.5')"),
        (FiniteInt(max=5), "6", "expected a whole number at most 5 (got 6)"),
        (Duration(1), "inf", "expected a duration like 90s, 30m, 4h or 1d (got 'inf')"),
        (Duration(1), "0s", "expected a duration like 90s, 30m, 4h or 1d (got '0s')"),
        (Duration(1), "0.5", "expected a duration at least 1s (got 0.5)"),
        (Duration(1, 60), "2m", "expected a duration at most 60s (60 s) (got 2m)"),
    ],
)
def test_what_is_refused(kind: click.ParamType, text: str, said: str) -> None:
    with pytest.raises(click.BadParameter) as exc:
        kind.convert(text, None, None)
    assert exc.value.message == said


@click.command()
@click.option("--output-file", "out", default=None, help="new")
@renamed("--out", "--output-file", "out")
def _cmd(out: str | None) -> None:
    click.echo(f"out={out}")


def test_a_renamed_option_keeps_its_old_spelling_hidden() -> None:
    runner = CliRunner()
    assert runner.invoke(_cmd, ["--output-file", "a"]).output == "out=a\n"
    old = runner.invoke(_cmd, ["--out", "b"])
    assert old.exit_code == 0
    assert old.stdout == "out=b\n"
    assert old.stderr == "warning: --out is deprecated; use --output-file\n"
    assert "--out " not in runner.invoke(_cmd, ["--help"]).output
    both = runner.invoke(_cmd, ["--out", "b", "--output-file", "a"])
    assert both.exit_code == 2 and "give --output-file only" in both.output
