"""One error tree for the whole suite, translated to an exit code in one place.

Exit codes: 0 ok, 1 a check failed (drift, SLO breach, ...), 2 bad input or usage.
Expected failures print one line; anything else is a bug and shows a traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2


class OpsError(Exception):
    """Base of every expected failure; ``exit_code`` says how the CLI ends."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class SpecError(OpsError):
    """A stack.yaml (or other spec file) is wrong at a known file, line and key."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        self.path, self.line, self.key = path, line, key
        where = path or "<stack>"
        if line is not None:
            where = f"{where}:{line}"
        text = f"{where}: {key}: {message}" if key else f"{where}: {message}"
        super().__init__(text)
        self.detail = message


class CapacityError(SpecError):
    """The services' minimums do not fit on the host."""


class ToolMissing(OpsError):
    """An external program is not installed; ``hint`` says how to get it."""

    def __init__(self, tool: str, hint: str) -> None:
        self.tool, self.hint = tool, hint
        super().__init__(f"{tool} not found on PATH; {hint}")


class ToolFailed(OpsError):
    """An external checker (nginx -t, promtool, ...) rejected a rendered file."""

    exit_code = EXIT_CHECK_FAILED


class RenderError(OpsError):
    """A template tried to emit a value that could inject configuration text."""


class OutputError(OpsError):
    """An output path cannot be written (permissions, not a directory, ...)."""


class CheckFailed(OpsError):
    """A check the user asked for found something (``--fail-on``, SLO breach)."""

    exit_code = EXIT_CHECK_FAILED


class DriftError(OpsError):
    """Committed files differ from what the plan renders (``plan --check``)."""

    exit_code = EXIT_CHECK_FAILED

    def __init__(self, message: str, diff: str) -> None:
        super().__init__(message)
        self.diff = diff


class TargetUnreachable(OpsError):
    """A load-test or profile target does not answer (refused, timed out, no such host)."""


class TargetRefused(OpsError):
    """A target that is not allowed: load goes only to loopback or hosts the user named."""
