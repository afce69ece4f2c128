"""Option sets shared by several commands, as decorators."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click

# What an option decorator takes and gives back: a command function, or a
# command already made (Click's own bound), so decorators stack in any order.
FC = TypeVar("FC", bound=Callable[..., Any] | click.Command)
#: A command function not yet made a command (what ``renamed`` wraps).
F = TypeVar("F", bound=Callable[..., Any])


def format_option(*choices: str, default: str = "table") -> Callable[[FC], FC]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default=default,
        show_default=True,
        help="Output format; json goes to stdout alone, so it pipes into jq.",
    )


def stack_option(f: FC) -> FC:
    return click.option(
        "--stack",
        "stack_path",
        type=click.Path(dir_okay=False, path_type=str),
        default="stack.yaml",
        show_default=True,
        envvar="VOTS_OPS_STACK",
        help="The stack description to read (env VOTS_OPS_STACK).",
    )(f)


def _set_quiet(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value and ctx.obj is not None:
        ctx.obj.quiet = True
    return value


def quiet_option(f: FC) -> FC:
    """``--quiet`` on the command too, so ``vots-ops plan --quiet`` works like ``vots-ops -q plan``."""
    return click.option(
        "-q",
        "--quiet",
        is_flag=True,
        expose_value=False,
        callback=_set_quiet,
        help="Print nothing on success; errors still go to stderr.",
    )(f)


def parsed(
    parse: Callable[[str], Any],
) -> Callable[[click.Context, click.Parameter, str | None], Any]:
    """A Click callback that runs a spec parser (``30s``, ``200/s``) and turns its ValueError into usage."""

    def callback(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return callback


def lazy(module: str, name: str) -> Callable[[str], Any]:
    """``module.name``, imported on first use: the parsers live in modules that import pydantic."""

    def call(value: str) -> Any:
        import importlib

        return getattr(importlib.import_module(module), name)(value)

    return call


# ------------------------------------------------------------------ numbers and durations

#: Longest text a number or duration option reads. Anything longer is refused before
#: it is converted: a number of thousands of digits is a mistake, never a value.
MAX_NUMBER_CHARS = 32

# ASCII digits only: Python's float() also takes "inf", "nan", "1_000" and other
# scripts' digits, none of which a user means as a count or a span.
_FLOAT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INT = re.compile(r"[+-]?\d+", re.ASCII)


def _bound(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


class _Bounded(click.ParamType[float, Any]):
    """A number read strictly: ASCII digits, finite, within [min, max] (inclusive
    unless ``min_open``), negative zero read as zero. What is refused is one line
    naming the option; the conversion never raises anything else."""

    expected = "a number"

    def __init__(
        self, min: float | None = None, max: float | None = None, *, min_open: bool = False
    ) -> None:
        self.min, self.max, self.min_open = min, max, min_open

    def _read(self, text: str) -> float | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _check(self, number: float, shown: str, param: Any, ctx: Any) -> None:
        low_ok = self.min is None or (number > self.min if self.min_open else number >= self.min)
        if low_ok and (self.max is None or number <= self.max):
            return
        if self.min is not None and self.max is not None:
            bounds = f"from {_bound(self.min)} to {_bound(self.max)}"
        elif self.min is not None:
            bounds = f"{'above' if self.min_open else 'at least'} {_bound(self.min)}"
        else:
            bounds = f"at most {_bound(self.max)}"  # type: ignore[arg-type]
        self.fail(f"expected {self.expected} {bounds} (got {shown})", param, ctx)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, bool):
            self.fail(f"expected {self.expected} (got {value!r})", param, ctx)
        # A number is a default written in the code; text is what was typed.
        text = repr(value) if isinstance(value, (int, float)) else str(value).strip()
        if len(text) > MAX_NUMBER_CHARS:
            self.fail(
                f"expected {self.expected} (got {len(text)} characters; at most "
                f"{MAX_NUMBER_CHARS})",
                param,
                ctx,
            )
        number = self._read(text) if text.isascii() else None
        if number is None:
            self.fail(f"expected {self.expected} (got {text!r})", param, ctx)
        self._check(number, text, param, ctx)
        return number


class FiniteFloat(_Bounded):
    """A finite float option (``click.FloatRange`` lets ``inf`` and ``nan`` through);
    ``1e999``, ``inf``, ``nan`` and ``1_0`` are refused, ``-0`` is 0.0."""

    name = "number"

    def _read(self, text: str) -> float | None:
        if not _FLOAT.fullmatch(text):
            return None
        number = float(text)
        return number + 0.0 if math.isfinite(number) else None  # + 0.0: no negative zero

    def __repr__(self) -> str:
        return f"FiniteFloat({self.min!r}, {self.max!r})"


class FiniteInt(_Bounded):
    """An integer option read from ASCII digits only, within its bounds."""

    name = "integer"
    expected = "a whole number"

    def _read(self, text: str) -> float | None:
        return int(text) if _INT.fullmatch(text) else None

    def __repr__(self) -> str:
        return f"FiniteInt({self.min!r}, {self.max!r})"


class Duration(_Bounded):
    """A span in seconds: ``90s``, ``30m``, ``4h``, ``1d``, ``1h30m`` (read by
    ``ops.units.parse_duration_s``), or a bare number of seconds; finite and
    within its bounds (given in seconds)."""

    name = "duration"
    expected = "a duration like 90s, 30m, 4h or 1d"

    def _read(self, text: str) -> float | None:
        from ops.units import parse_duration_s

        try:
            seconds = parse_duration_s(text)  # a bare number is seconds there too
        except ValueError:
            return None
        return seconds + 0.0 if math.isfinite(seconds) else None

    def _check(self, number: float, shown: str, param: Any, ctx: Any) -> None:
        from ops.units import format_duration

        low_ok = self.min is None or (number > self.min if self.min_open else number >= self.min)
        if low_ok and (self.max is None or number <= self.max):
            return
        if not low_ok:
            bound = f"{'above' if self.min_open else 'at least'} {_seconds(self.min or 0)}"
        else:
            bound = f"at most {_seconds(self.max or 0)} ({format_duration(self.max or 0)})"
        self.fail(f"expected a duration {bound} (got {shown})", param, ctx)

    def __repr__(self) -> str:
        return f"Duration({self.min!r}, {self.max!r})"


def _seconds(value: float) -> str:
    return f"{_bound(value)}s"


# ------------------------------------------------------------------ renamed options


def renamed(old: str, new: str, dest: str, **option: Any) -> Callable[[F], F]:
    """Keep ``old``, the former spelling of the option ``new`` (parameter ``dest``),
    working as a hidden alias that says once on stderr that it is deprecated.

    Apply it to the command function, under ``@click.command``. ``option`` is what
    the new option takes that the alias needs too (its ``type``, ``callback``).
    Both spellings at once are refused, so neither silently wins.
    """
    alias = f"{dest}__{old.lstrip('-').replace('-', '_')}"

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def command(*args: Any, **kwargs: Any) -> Any:
            value = kwargs.pop(alias, None)
            if value is not None:
                ctx = click.get_current_context()
                source = ctx.get_parameter_source(dest)
                if source is click.core.ParameterSource.COMMANDLINE:
                    raise click.UsageError(f"{old} is the old spelling of {new}: give {new} only")
                say = getattr(ctx.obj, "alert", None)
                line = f"{old} is deprecated; use {new}"
                if callable(say):
                    say(line)  # said even with --quiet: the command line needs changing
                else:  # pragma: no cover - every command has a console
                    click.echo(f"warning: {line}", err=True)
                kwargs[dest] = value
            return f(*args, **kwargs)

        return click.option(  # type: ignore[return-value]
            old, alias, hidden=True, default=None, help=f"Deprecated spelling of {new}.", **option
        )(command)

    return decorate


# ------------------------------------------------------------------ options that would do nothing


def _spelled(param: click.Parameter, value: Any) -> str:
    """How a parameter is written on the command line: its long flag (``--no-native``
    for a false ``--native/--no-native``), or an argument's metavar."""
    if not isinstance(param, click.Option):
        return param.human_readable_name
    opts = param.secondary_opts if value is False and param.secondary_opts else param.opts
    return next((o for o in opts if o.startswith("--")), opts[0])


def typed(ctx: click.Context, *names: str) -> list[str]:
    """Of the parameters ``names``, those typed on the command line, spelled as typed,
    in the command's order. A default, an exported variable or a recipe's value is
    never "typed": only what the user wrote is refused as doing nothing."""
    wanted = set(names)
    return [
        _spelled(p, ctx.params.get(p.name))
        for p in ctx.command.params
        if p.name in wanted
        and ctx.get_parameter_source(p.name) is click.core.ParameterSource.COMMANDLINE
    ]


def refuse_unused(ctx: click.Context, names: Iterable[str], why: str) -> None:
    """Refuse (usage, exit 2) the parameters of ``names`` that were typed, in one line:
    ``--tolerance does nothing without --baseline``."""
    spelled = typed(ctx, *names)
    if spelled:
        verb = "does" if len(spelled) == 1 else "do"
        listed = ", ".join(spelled[:-1]) + " and " + spelled[-1] if len(spelled) > 1 else spelled[0]
        raise click.UsageError(f"{listed} {verb} nothing {why}")
