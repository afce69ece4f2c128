"""The one error type of every service: a message for a person, the field at fault, the
HTTP status, and (for 409/503) how long to wait before retrying."""

from __future__ import annotations


class ServiceError(Exception):
    """An expected failure: bad input, bad settings, an unreachable dependency."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        status: int = 400,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status
        self.retry_after = retry_after
