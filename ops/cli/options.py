"""Option sets shared by several commands, as decorators."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

# What an option decorator takes and gives back: a command function, or a
# command already made (Click's own bound), so decorators stack in any order.
FC = TypeVar("FC", bound=Callable[..., Any] | click.Command)


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
