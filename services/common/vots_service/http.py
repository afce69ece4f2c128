"""The HTTP edge every service shares: one error shape and the request guard.

Every error is ``{"error": {"message": ..., "field": ...}}``: a
:class:`~vots_service.errors.ServiceError` with its status (and ``Retry-After``
when it says how long), a validation error as 422 naming the field
(``files.0.content``, ``q``; ``body`` for JSON that does not parse), any other
HTTP error with its status.

:class:`Guard` sits in front of the app: a body over the limit is refused with
413 ``body`` before the app sees it (a declared length at once, a chunked upload
as soon as it passes the limit), a body that does not arrive in time gets 408,
and every request is counted and timed by route *template* (never the raw path,
so a scanner cannot mint series) and logged as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from vots_service.errors import ServiceError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
QUIET_ROUTES = ("/healthz", "/readyz", "/metrics")


def error_body(message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "field": field}}


def install_error_handlers(app: Any) -> None:
    """The one error shape for ``ServiceError``, HTTP errors and validation errors."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(ServiceError)
    async def _service_error(_: Any, exc: ServiceError) -> JSONResponse:
        headers = None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
        return JSONResponse(
            error_body(exc.message, exc.field), status_code=exc.status, headers=headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Any, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Any, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path", "header", "cookie"):
            loc = loc[1:]  # where the field was, not its name
        if err.get("type") == "json_invalid":
            loc = []
        field = ".".join(loc) or "body"
        return JSONResponse(
            error_body(f"{field}: {err.get('msg', 'invalid')}", field), status_code=422
        )


class RequestMetrics(Protocol):
    """What the guard records; each service's Metrics implements it."""

    def started(self) -> None: ...

    def finished(self, method: str, route: str, status: int, seconds: float) -> None: ...


class Guard:
    """Body limit (413), body timeout (408), per-route metrics and request logs."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int,
        metrics: RequestMetrics,
        logger: str,
        body_timeout: float | None = None,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics
        self.log = logging.getLogger(logger)
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        seen = {"status": 500}
        declared = dict(scope.get("headers", [])).get(b"content-length")
        over = declared is not None and (not declared.isdigit() or int(declared) > self.max_body)

        async def watched_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            await send(message)

        self.metrics.started()
        try:
            body: bytes | None = None
            if not over:
                try:
                    body = await asyncio.wait_for(
                        read_at_most(receive, self.max_body), self.body_timeout
                    )
                except TimeoutError:
                    seen["status"] = 408
                    message = f"request body not received within {self.body_timeout:g} s"
                    await send_json(send, 408, error_body(message, "body"))
                    return
            if body is None:
                seen["status"] = 413
                message = f"request body larger than {self.max_body} bytes"
                await send_json(send, 413, error_body(message, "body"))
                return
            await self.app(scope, replay(body, receive), watched_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "other"
            method = scope.get("method", "GET")
            took = time.perf_counter() - started
            self.metrics.finished(method, route, seen["status"], took)
            if route not in QUIET_ROUTES:
                self.log.info(
                    "request",
                    extra={
                        "method": method,
                        "route": route,
                        "status": seen["status"],
                        "ms": round(took * 1000, 2),
                    },
                )


async def read_at_most(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None as soon as it passes ``limit``."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return bytes(body)
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            return bytes(body)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the buffered body, then the real channel."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


async def send_json(send: Send, status: int, doc: dict[str, Any]) -> None:
    payload = json.dumps(doc).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
