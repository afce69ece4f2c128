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

import click

from ops import __version__
from ops.console import Console, StdoutClosed
from ops.errors import EXIT_BAD_INPUT, DriftError, OpsError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="vots-ops")
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    envvar="VOTS_OPS_QUIET",
    help="Print nothing on success (env VOTS_OPS_QUIET).",
)
@click.pass_context
def cli(ctx: click.Context, quiet: bool) -> None:
    """Operations suite for the VOTS // DYSTOLABS stack.

    \b
    Exit codes: 0 ok, 1 a check failed (drift, SLO breach), 2 bad input or usage.
    """
    ctx.obj = Console(quiet=quiet)


def _register() -> None:
    from ops.cli.loadtest import loadtest
    from ops.cli.plan import plan
    from ops.cli.profile import profile
    from ops.cli.report import report

    cli.add_command(plan)
    cli.add_command(loadtest)
    cli.add_command(profile)
    cli.add_command(report)


_register()


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
