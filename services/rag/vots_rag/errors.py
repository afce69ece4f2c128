"""The service's errors: :class:`~vots_service.errors.ServiceError` with its own names."""

from __future__ import annotations

from vots_service.errors import ServiceError


class RagError(ServiceError):
    """An expected failure: bad input, bad settings, an unreachable dependency.

    ``field`` names the request field or setting at fault (``path``, ``q``,
    ``RAG_ROOT``); ``status`` is the HTTP status the API answers with (409 and 503
    with ``Retry-After: 2``).
    """

    def __init__(self, message: str, *, field: str | None = None, status: int = 400) -> None:
        super().__init__(
            message, field=field, status=status, retry_after=2 if status in (409, 503) else None
        )


class NotReady(RagError):
    """The index is still loading, or a dependency (Chroma, the model) is not there."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=503)


class Busy(RagError):
    """Another ingest is running; one at a time keeps the index consistent."""

    def __init__(self, message: str = "an ingest is already running; retry when it ends") -> None:
        super().__init__(message, status=409)
