"""The service's errors: :class:`~vots_service.errors.ServiceError` with its own names.

``field`` names the request field or setting at fault (``files.0.content``,
``path``, ``REDIS_URL``); ``status`` is the HTTP status the API answers with.
"""

from __future__ import annotations

from vots_service.errors import ServiceError


class AgentError(ServiceError):
    """An expected failure: bad input, bad settings, an unreachable dependency."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 400) -> None:
        super().__init__(
            message, field=field, status=status, retry_after=5 if status == 503 else None
        )


class Overloaded(AgentError):
    """The analysis queue is full: 503 with Retry-After, never an unbounded wait."""

    def __init__(self, message: str, retry_after: int = 2) -> None:
        super().__init__(message, status=503)
        self.retry_after = retry_after


class AnalysisFailed(AgentError):
    """An analysis did not finish: its deadline passed or its worker died."""

    def __init__(self, message: str, status: int = 503) -> None:
        super().__init__(message, status=status)
