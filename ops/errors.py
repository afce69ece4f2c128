"""One error tree for the whole suite, translated to an exit code in one place.

Every failure the library expects is an ``OpsError``; the CLI prints its
message as one line and exits with its ``exit_code``. Anything else is a bug
and shows a traceback. The tree (exit code in brackets)::

    OpsError [2]                   bad input or usage (the base)
    ├── SpecError [2]              a spec file is wrong at a file, line and key
    │   └── CapacityError [2]      the services' minimums do not fit on the host
    ├── ToolMissing [2]            an external program is not installed (with a hint)
    ├── MissingExtra [2]           a package of an extra is not installed (ops.extras)
    ├── ToolFailed [1]             a checker (nginx -t, promtool) rejected a rendered file
    ├── ExternalToolError [3]      an external tool failed while running (crashed,
    │                              timed out, wrote nothing readable: py-spy, perf, Locust)
    ├── RenderError [2]            a template would emit unsafe configuration text
    ├── OutputError [2]            an output path cannot be written
    │   └── ForeignFiles [2]       plan would replace files it did not write (ops.plan.pipeline)
    ├── CheckFailed [1]            a check the user asked for found something
    │   └── DeployFailed [1]       a service did not become healthy, or runs unlike the
    │                              plan (ops.deploy.run)
    ├── DriftError [1]             committed files differ from what plan renders
    ├── TargetUnreachable [2]      a load-test or profile target does not answer
    ├── TargetRefused [2]          a target load may not go to
    ├── TargetError [2]            a profile target matches nothing, too much, or is unreadable
    ├── EngineError [2]            the Docker engine answered with an error
    │   ├── EngineUnreachable [2]  no usable connection to the engine
    │   ├── EngineNotFound [2]     404: no such container
    │   └── EngineProtocolError [2] an answer the client cannot read
    ├── NotDeployed [2]            status/down: no container of the project (ops.deploy.run)
    ├── ImagesUnavailable [2]      an image the stack needs is not here and nothing can
    │                              make it (ops.images.build)
    ├── HistoryError [2]           the report history cannot be used
    │   └── HistoryTooNewError [2] its schema is newer than this code (ops.report.history)
    ├── NoAdviceData [2]           the history holds nothing to advise on (ops.report.advice)
    └── ListenError [2]            report serve cannot bind its address (ops.report.serve)

Those marked with a module are defined beside the code that raises them and
re-exported here on first use, so importing this module stays cheap.

``fields`` names the inputs of a library call an error is about (``host``,
``duration``), in the library's own words; a front end adds how its user
spells them with :meth:`OpsError.name_fields` (the CLI passes its flags), so
library messages never mention command-line flags.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_TOOL_ERROR = 3


class OpsError(Exception):
    """Base of every expected failure; ``exit_code`` says how the CLI ends."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def __str__(self) -> str:
        return self.message

    def name_fields(self, names: Mapping[str, str]) -> OpsError:
        """Append how the caller spells the inputs this error is about.

        ``names`` maps a field to its spelling (the CLI: ``{"host": "--host URL"}``);
        fields without one are left out. Returns the error itself, to re-raise.
        """
        spelled = list(dict.fromkeys(names[f] for f in self.fields if f in names))
        if spelled:
            self.message = f"{self.message} [{', '.join(spelled)}]"
            self.args = (self.message,)
        return self


class SpecError(OpsError):
    """A stack.yaml (or other spec file) is wrong at a known file, line and key."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        key: str | None = None,
        fields: tuple[str, ...] = (),
    ) -> None:
        self.path, self.line, self.key = path, line, key
        where = path or "<stack>"
        if line is not None:
            where = f"{where}:{line}"
        text = f"{where}: {key}: {message}" if key else f"{where}: {message}"
        super().__init__(text, fields=fields)
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


class ExternalToolError(OpsError):
    """An external tool failed while running: it crashed, did not finish in time,
    or left nothing readable (py-spy, perf, Locust, openssl).

    Not bad input (the same command may work when run again, or the tool needs
    fixing), and not a check that found something: exit 3.
    """

    exit_code = EXIT_TOOL_ERROR


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


class TargetError(OpsError):
    """A profile target that matches nothing, too much, or cannot be read."""


class EngineError(OpsError):
    """The Docker engine could not be used, or answered with an error; ``status``
    is the HTTP status where there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class EngineUnreachable(EngineError):
    """No usable connection: no socket, no permission, refused, or no answer in
    time. The message is one line naming the address and the likely fix;
    ``reason`` is that fix alone, and the ``OSError`` is the ``__cause__``."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        self.timed_out = reason.startswith("no answer within")
        super().__init__(f"Docker engine not usable at {where}: {reason}")


class EngineNotFound(EngineError):
    """404: no such container (removed between the list and the inspect)."""


class EngineProtocolError(EngineError):
    """What came back is not an HTTP/1.x answer the engine client can read."""


class HistoryError(OpsError):
    """The history file cannot be used: not SQLite, not ours, locked, disk full, ..."""


#: Errors defined beside the code that raises them, re-exported on first use.
_ELSEWHERE = {
    "HistoryTooNewError": "ops.report.history",
    "NoAdviceData": "ops.report.advice",
    "ListenError": "ops.report.serve",
    "ForeignFiles": "ops.plan.pipeline",
    "MissingExtra": "ops.extras",
    "DeployFailed": "ops.deploy.run",
    "NotDeployed": "ops.deploy.run",
    "ImagesUnavailable": "ops.images.build",
}


def __getattr__(name: str) -> Any:
    if name in _ELSEWHERE:
        import importlib

        return getattr(importlib.import_module(_ELSEWHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
