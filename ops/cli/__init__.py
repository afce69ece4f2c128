"""The ``vots-ops`` command: a thin Click layer over the ``ops`` library.

Each command lives in its own module and is registered here explicitly.
Errors from the library (``OpsError``) become one line on stderr and the
documented exit code; anything else is a bug and keeps its traceback
(``VOTS_OPS_DEBUG=1`` adds local variables).
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from typing import Any

import click

from ops import __version__
from ops.console import Console, StdoutClosed
from ops.errors import EXIT_BAD_INPUT, DriftError, OpsError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

#: Every command: its module, and the line ``vots-ops --help`` shows for it. A
#: command's module is imported only when that command runs (or its help is
#: asked for): a cron run of `report` does not pay for `loadtest`'s options.
#: tests/cli keeps these lines equal to the commands' own first lines.
COMMANDS: dict[str, tuple[str, str]] = {
    "plan": (
        "ops.cli.plan",
        "Fit resources to the VM and render the files for compose, a swarm or Kubernetes.",
    ),
    "loadtest": (
        "ops.cli.loadtest",
        "Run a Locust scenario headless and judge its SLOs.",
    ),
    "profile": (
        "ops.cli.profile",
        "Profile a Python, Go or Rust service: py-spy, pprof or perf, one output.",
    ),
    "report": ("ops.cli.report", "Sample VM and per-container utilisation, store it, and show it."),
    "images": (
        "ops.cli.images",
        "Build the stack's images on a local base, with or without a registry.",
    ),
    "deploy": (
        "ops.cli.deploy",
        "Bring the planned stack up on the Docker engine, healthy and verified.",
    ),
    "status": (
        "ops.cli.deploy",
        "Show every container of the stack: health, uptime, restarts, limits vs the plan.",
    ),
    "down": (
        "ops.cli.deploy",
        "Stop and remove the stack's containers; volumes stay unless --volumes.",
    ),
}


class _Commands(dict[str, click.Command]):
    """The group's commands, each imported on first use: ``cli.commands[name]``
    and ``.get`` (what Click calls) load it; iteration and ``in`` need nothing."""

    def __init__(self, table: dict[str, tuple[str, str]]) -> None:
        super().__init__()
        self._table = table

    def _load(self, name: str) -> click.Command | None:
        if not super().__contains__(name) and name in self._table:
            import importlib

            module = importlib.import_module(self._table[name][0])
            super().__setitem__(name, getattr(module, name))
        return super().get(name)

    def __getitem__(self, name: str) -> click.Command:
        found = self._load(name)
        if found is None:
            raise KeyError(name)
        return found

    def get(self, name: str, default: Any = None) -> Any:
        found = self._load(name)
        return default if found is None else found

    def __contains__(self, name: object) -> bool:
        return name in self._table or super().__contains__(name)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted({*self._table, *super().keys()}))

    def __len__(self) -> int:
        return len({*self._table, *super().keys()})

    def keys(self) -> Any:
        return list(self)

    def values(self) -> Any:
        return [self[name] for name in self]

    def items(self) -> Any:
        return [(name, self[name]) for name in self]


class _Group(click.Group):
    """The top-level group: commands load lazily; ``--help`` lists them from
    ``COMMANDS`` without importing any."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in sorted(COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


_YES = frozenset({"1", "true", "yes", "on", "y", "t"})
_NO = frozenset({"0", "false", "no", "off", "n", "f", ""})


def env_flag(variable: str) -> bool:
    """A yes/no variable exported for cron. A value that is neither
    (``VOTS_OPS_QUIET=banana``) is ignored with one warning line: an exported
    variable never makes a command refuse what was typed."""
    value = os.environ.get(variable)
    if value is None:
        return False
    text = value.strip().lower()
    if text in _YES:
        return True
    if text not in _NO:
        shown = value if len(value) <= 40 else f"{value[:40]}…"
        sys.stderr.write(
            f"warning: {variable}={shown!r} is not yes or no (1/true/yes/on, 0/false/no/off);"
            " ignored\n"
        )
    return False


@click.group(cls=_Group, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="vots-ops")
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="Print nothing on success (env VOTS_OPS_QUIET).",
)
@click.pass_context
def cli(ctx: click.Context, quiet: bool) -> None:
    """Operations suite for the VOTS // DYSTOLABS stack.

    \b
    Exit codes: 0 ok, 1 a check failed (drift, SLO breach), 2 bad input or usage,
    3 an external tool failed while running.
    """
    # VOTS_OPS_QUIET is read here, not by Click, which would refuse a value it cannot read.
    ctx.obj = Console(quiet=quiet or env_flag("VOTS_OPS_QUIET"))


cli.commands = _Commands(COMMANDS)


#: What a shell reports for a program killed by SIGPIPE (128 + 13): ``| head`` closed
#: the pipe; nothing is printed, and a pipeline under ``set -o pipefail`` still fails.
EXIT_BROKEN_PIPE = 141


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final
    flush does not complain about the pipe a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


#: OSErrors that say a path given to a command cannot be used as it is.
_PATH_ERRNOS = frozenset(
    {
        errno.ENAMETOOLONG,
        errno.ELOOP,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ENOENT,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.EEXIST,
    }
)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the group and map errors to exit codes."""
    console = Console()
    try:
        cli.main(args=argv, prog_name="vots-ops", standalone_mode=False)
        sys.stdout.flush()  # here, not at exit, so a failed write is an error below
    except (StdoutClosed, BrokenPipeError):
        _silence_stdout()
        sys.exit(EXIT_BROKEN_PIPE)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        # One line, as for every other bad input: what is wrong and where to look.
        where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        console.error(" ".join(exc.format_message().split()) + where)
        sys.exit(EXIT_BAD_INPUT)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_BAD_INPUT if exc.exit_code == 2 else exc.exit_code)
    except click.exceptions.Abort:
        console.error("aborted")
        sys.exit(130)
    except DriftError as exc:
        console.text(exc.diff)
        console.error(str(exc))
        sys.exit(exc.exit_code)
    except OpsError as exc:
        if str(exc):  # an empty message: the command said what mattered already
            console.error(str(exc))
        sys.exit(exc.exit_code)
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            _silence_stdout()
            sys.exit(EXIT_BROKEN_PIPE)
        if exc.filename is not None and exc.errno in _PATH_ERRNOS:
            # A path no handler on the way expected (a name too long for the file
            # system, a loop of links): still one line naming it, not a traceback.
            console.error(f"{exc.filename}: {exc.strerror or exc}")
            sys.exit(EXIT_BAD_INPUT)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO):
            # What Click printed itself (help, usage) to a full disk: the same one
            # line as for any other output.
            _silence_stdout()
            console.error(f"cannot write: {exc.strerror} (the output is incomplete)")
            sys.exit(EXIT_BAD_INPUT)
        raise
    except BaseException:
        if os.environ.get("VOTS_OPS_DEBUG") and sys.exc_info()[0] not in (
            SystemExit,
            KeyboardInterrupt,
        ):
            from rich.console import Console as RichConsole

            RichConsole(stderr=True).print_exception(show_locals=True)
            sys.exit(70)
        raise
    sys.exit(0)
