"""Option sets shared by several commands, as decorators."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def format_option(*choices: str, default: str = "table") -> Callable[[Any], Any]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default=default,
        show_default=True,
        help="Output format; json goes to stdout alone, so it pipes into jq.",
    )


def stack_option(f: Any) -> Any:
    return click.option(
        "--stack",
        "stack_path",
        type=click.Path(dir_okay=False, path_type=str),
        default="stack.yaml",
        show_default=True,
        envvar="VOTS_OPS_STACK",
        help="The stack description to read (env VOTS_OPS_STACK).",
    )(f)
