"""One error type for the service: a message for a person and, for input errors, the field."""

from __future__ import annotations


class AgentError(Exception):
    """An expected failure: bad input, bad settings, an unreachable dependency.

    ``field`` names the request field or setting at fault (``files.0.content``,
    ``path``, ``REDIS_URL``); ``status`` is the HTTP status the API answers with.
    """

    def __init__(self, message: str, *, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


class Overloaded(AgentError):
    """The analysis queue is full: 503 with Retry-After, never an unbounded wait."""

    def __init__(self, message: str, retry_after: int = 2) -> None:
        super().__init__(message, status=503)
        self.retry_after = retry_after


class AnalysisFailed(AgentError):
    """An analysis did not finish: its deadline passed or its worker died."""

    def __init__(self, message: str, status: int = 503) -> None:
        super().__init__(message, status=status)
