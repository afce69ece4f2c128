"""One error type for the service: a message for a person and, for input errors, the field."""

from __future__ import annotations


class RagError(Exception):
    """An expected failure: bad input, bad settings, an unreachable dependency.

    ``field`` names the request field or setting at fault (``path``, ``q``,
    ``RAG_ROOT``); ``status`` is the HTTP status the API answers with.
    """

    def __init__(self, message: str, *, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


class NotReady(RagError):
    """The index is still loading, or a dependency (Chroma, the model) is not there."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=503)


class Busy(RagError):
    """Another ingest is running; one at a time keeps the index consistent."""

    def __init__(self, message: str = "an ingest is already running; retry when it ends") -> None:
        super().__init__(message, status=409)
