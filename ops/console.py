"""The one console: results on stdout, status on stderr.

Rich is imported only when something is actually drawn, so ``--help`` and
quiet cron runs never pay for it. ``vots-ops ... --format json | jq`` works
because nothing but the result ever reaches stdout.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from functools import cached_property
from typing import Any


class StatusLine:
    """One line of progress on stderr: redrawn on a terminal, else printed every ``plain_every`` s."""

    def __init__(self, console: Console, plain_every: float | None) -> None:
        self.quiet, self.plain_every = console.quiet, plain_every
        self.live: Any = None
        self.last_plain = time.monotonic()  # the first plain line after one interval, with figures
        if not self.quiet and sys.stderr.isatty():
            from rich.live import Live

            self.live = Live(console=console.err, refresh_per_second=4, transient=True)
            self.live.start()

    def update(self, text: str) -> None:
        if self.live is not None:
            from rich.text import Text

            self.live.update(Text(text))
        elif (
            not self.quiet
            and self.plain_every is not None
            and time.monotonic() - self.last_plain >= self.plain_every
        ):
            self.last_plain = time.monotonic()
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


class StatusBoard:
    """Live rows on stderr, one per key (a service), each with a spinner and the
    seconds since it appeared: redrawn on a terminal, nothing elsewhere (the
    caller prints each row's outcome as a line)."""

    def __init__(self, console: Console) -> None:
        self.rows: dict[str, tuple[str, float]] = {}
        self.live: Any = None
        if not console.quiet and sys.stderr.isatty():
            from rich.live import Live

            self.live = Live(
                get_renderable=self._render,
                console=console.err,
                refresh_per_second=4,
                transient=True,
            )
            self.live.start()

    def _render(self) -> Any:
        from rich.spinner import Spinner
        from rich.table import Table

        grid = Table.grid(padding=(0, 1))
        now = time.monotonic()
        for key, (text, since) in self.rows.items():
            grid.add_row(Spinner("dots"), f"{key}: {text}", f"{now - since:.0f}s")
        return grid

    def set(self, key: str, text: str) -> None:
        """Show ``text`` on ``key``'s row (added at the bottom when new)."""
        since = self.rows.get(key, ("", time.monotonic()))[1]
        self.rows[key] = (text, since)
        if self.live is not None:
            self.live.refresh()

    def drop(self, key: str) -> None:
        self.rows.pop(key, None)
        if self.live is not None:
            self.live.refresh()

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


class Console:
    """Thin wrapper over two Rich consoles; pass it around via ``ctx.obj``."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    @cached_property
    def out(self) -> Any:
        import os

        from rich.console import Console as RichConsole

        # Piped or under cron there is no terminal width: Rich would assume 80
        # columns and cut cells ("promet…"). Use COLUMNS if set, else room enough.
        width = None
        if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
            width = 200
        console = RichConsole(
            file=sys.stdout, highlight=False, emoji=False, soft_wrap=True, width=width
        )
        console.on_broken_pipe = _closed  # type: ignore[method-assign]  # not Rich's exit 1
        return console

    @cached_property
    def err(self) -> Any:
        from rich.console import Console as RichConsole

        # emoji=False: a path or value with `:100:` in it is printed as it is.
        return RichConsole(file=sys.stderr, highlight=False, emoji=False, soft_wrap=True)

    def _status(self, style: str, label: str, message: str) -> None:
        if self.quiet:
            return
        from rich.markup import escape

        self.err.print(f"[{style}]{label}[/] {escape(message)}")

    def info(self, message: str) -> None:
        self._status("cyan", "•", message)

    def success(self, message: str) -> None:
        self._status("green", "✓", message)

    def warning(self, message: str) -> None:
        self._status("yellow", "warning:", message)

    def error(self, message: str) -> None:
        """Errors print even with ``--quiet``: cron must mail problems."""
        self._always("bold red", "error:", message)

    def alert(self, message: str, label: str = "warning:") -> None:
        """A line that prints even with ``--quiet``: something cron should mail once
        (a finding that started or resolved, a damaged row skipped)."""
        self._always("yellow", label, message)

    def _always(self, style: str, label: str, message: str) -> None:
        if sys.stderr.isatty():
            from rich.markup import escape

            prefix = f"[{style}]{label}[/] " if label else ""
            self.err.print(f"{prefix}{escape(message)}")
        else:
            sys.stderr.write(f"{label} {message}\n" if label else f"{message}\n")
            sys.stderr.flush()

    def status_line(self, plain_every: float | None = None) -> StatusLine:
        """A live progress line on stderr (see StatusLine); call ``stop()`` when done."""
        return StatusLine(self, plain_every)

    def status_board(self) -> StatusBoard:
        """Live progress rows on stderr, one per service (see StatusBoard)."""
        return StatusBoard(self)

    def print(self, renderable: Any) -> None:
        """A result (table, text) to stdout."""
        with _stdout_errors():
            self.out.print(renderable)
            sys.stdout.flush()

    def text(self, text: str) -> None:
        """Plain text to stdout, byte for byte (diffs, generated files)."""
        with _stdout_errors():
            sys.stdout.write(text)
            sys.stdout.flush()

    def evidence(self, text: str) -> None:
        """Plain text to stderr, even when quiet: what a failure message refers to
        (a container's last log lines, its health check's output)."""
        sys.stderr.write(text.rstrip("\n") + "\n")
        sys.stderr.flush()

    def json(self, data: Any) -> None:
        """``data`` as JSON on stdout; a non-finite number is written as null, so the
        output stays JSON that jq and every other reader accept (never NaN/Infinity)."""
        import json

        self.text(json.dumps(_finite(data), indent=2, sort_keys=False, allow_nan=False) + "\n")


def _finite(data: Any) -> Any:
    import math

    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


class StdoutClosed(Exception):
    """Whoever read our stdout has gone (``| head`` closed the pipe). Not an OSError,
    so nothing on the way (Click turns EPIPE into exit 1) takes it for another
    failure: ``main`` exits quietly with what a program killed by SIGPIPE reports."""


def _closed() -> None:
    raise StdoutClosed


@contextlib.contextmanager
def _stdout_errors() -> Iterator[None]:
    """A failed write to stdout (a full disk under ``> file``, a closed pipe under
    ``| head``) ends the command: never a traceback, never exit 0 on a truncated
    file. A closed pipe is ``StdoutClosed``; anything else is one line and exit 2."""
    try:
        yield
    except BrokenPipeError:
        raise StdoutClosed from None
    except OSError as exc:
        from ops.errors import OutputError

        raise OutputError(
            f"cannot write to standard output: {exc.strerror or exc} (the output is incomplete)"
        ) from None
