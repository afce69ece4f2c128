"""The HTTP API: routes translate requests to :class:`~vots_rag.index.Index` calls, nothing more.

The index opens in a background thread (the model, Chroma, the lexical index
rebuilt from SQLite), retrying while Chroma is not reachable; until it is
open ``/readyz`` answers 503 with the reason and the API routes 503 too, while
``/healthz`` answers at once. Every error is one JSON shape,
``{"error": {"message": ..., "field": ...}}``, with a 4xx for bad input.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from vots_rag.errors import NotReady, RagError
from vots_rag.index import MAX_K, MAX_PAGE, MAX_QUERY_CHARS, Index, IngestReport, SearchPage
from vots_rag.metrics import Metrics
from vots_rag.settings import Settings, make_embedder, open_index

log = logging.getLogger("vots_rag")
RETRY_S = 2.0
SNIPPET_LINES = 40

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class IngestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(default=".", min_length=1, max_length=4096)


def error_body(message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "field": field}}


class Holder:
    """The index once it is open, and why it is not yet."""

    def __init__(self) -> None:
        self.index: Index | None = None
        self.reason = "loading the model and the index"
        self.stop = threading.Event()

    def get(self) -> Index:
        if self.index is None:
            raise NotReady(f"not ready: {self.reason}")
        return self.index


def _load(holder: Holder, settings: Settings, embedder: Any) -> None:
    try:
        if embedder is None and settings.backend != "lexical":
            embedder = make_embedder(settings)
    except RagError as exc:  # a model that does not load will not load on retry
        holder.reason = exc.message
        log.error("model not loaded", extra={"reason": exc.message})
        return
    while not holder.stop.is_set():
        try:
            holder.index = open_index(settings, embedder)
            stats = holder.index.stats()
            log.info("index ready", extra={k: v for k, v in asdict(stats).items()})
            return
        except NotReady as exc:
            holder.reason = exc.message
            log.warning("index not ready, retrying", extra={"reason": exc.message})
        except RagError as exc:
            holder.reason = exc.message
            log.error("index not opened", extra={"reason": exc.message})
            return
        holder.stop.wait(RETRY_S)


def _hit(h: Any) -> dict[str, Any]:
    c = h.chunk
    lines = c.text.splitlines()
    snippet = "\n".join(lines[:SNIPPET_LINES])
    return {
        "path": c.path,
        "start_line": c.start_line,
        "end_line": c.end_line,
        "symbol": c.symbol,
        "kind": c.kind,
        "language": c.language,
        "score": round(h.score, 6),
        "lexical_score": None if h.lexical is None else round(h.lexical, 6),
        "dense_score": None if h.dense is None else round(h.dense, 6),
        "snippet": snippet,
        "truncated": len(lines) > SNIPPET_LINES,
    }


def page_json(page: SearchPage) -> dict[str, Any]:
    return {
        "query": page.query,
        "backend": page.backend,
        "kind": page.kind,
        "k": page.k,
        "page": page.page,
        "has_more": page.has_more,
        "took_ms": round(page.seconds * 1000, 3),
        "results": [_hit(h) for h in page.hits],
    }


def report_json(report: IngestReport) -> dict[str, Any]:
    out = asdict(report)
    out["ok"] = report.ok
    for key in ("seconds", "lexical_seconds", "embed_seconds"):
        out[key] = round(out[key], 3)
    return out


class _Limits:
    """Refuses bodies over the limit (413 naming ``body``) and counts and logs every
    request by route template, before the app sees it."""

    def __init__(self, app: ASGIApp, max_body: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}
        too_big = False
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_body
                except ValueError:
                    too_big = True

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            replay = None if too_big else await self._buffer(receive)
            if replay is None:
                await self._refuse(send, status)
            else:
                await self.app(scope, replay, recording_send)
        finally:
            self.metrics.in_flight.dec()
            route_obj = scope.get("route")
            route = getattr(route_obj, "path", None) or "other"
            method = scope.get("method", "GET")
            elapsed = time.perf_counter() - start
            self.metrics.requests.labels(method, route, str(status["code"])).inc()
            self.metrics.latency.labels(method, route).observe(elapsed)
            if route not in ("/healthz", "/metrics"):
                log.info(
                    "request",
                    extra={
                        "method": method,
                        "route": route,
                        "status": status["code"],
                        "ms": round(elapsed * 1000, 2),
                    },
                )

    async def _buffer(self, receive: Receive) -> Receive | None:
        """The whole body read first, at most ``max_body`` bytes of it (a chunked upload
        has no Content-Length to refuse it by), then replayed; None when too big."""
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            parts.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(parts)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    async def _refuse(self, send: Send, status: dict[str, int]) -> None:
        import json

        body = json.dumps(
            error_body(f"request body larger than {self.max_body} bytes", "body")
        ).encode()
        status["code"] = 413
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def create_app(settings: Settings, *, embedder: Any = None, index: Index | None = None) -> FastAPI:
    """The API on ``settings``; ``embedder`` or an open ``index`` may be handed in (tests
    reuse one loaded model across apps)."""
    holder = Holder()
    metrics = Metrics(lambda: holder.index)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        loader: threading.Thread | None = None
        if index is not None:
            holder.index = index
        else:
            loader = threading.Thread(target=_load, args=(holder, settings, embedder), daemon=True)
            loader.start()
        yield
        holder.stop.set()
        if loader is not None:
            loader.join(timeout=10)
        if holder.index is not None and index is None:
            holder.index.close()
        log.info("stopped")

    app = FastAPI(
        title="vots-rag", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.holder = holder
    app.state.metrics = metrics

    @app.exception_handler(RagError)
    async def _rag_error(_: Request, exc: RagError) -> JSONResponse:
        headers = {"Retry-After": "2"} if exc.status in (409, 503) else None
        return JSONResponse(
            error_body(exc.message, exc.field), status_code=exc.status, headers=headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
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

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        current = holder.index
        if current is None:
            return JSONResponse({"status": "not ready", "reason": holder.reason}, status_code=503)
        try:
            current.check()
        except NotReady as exc:
            return JSONResponse({"status": "not ready", "reason": exc.message}, status_code=503)
        return JSONResponse({"status": "ready", **asdict(current.stats())})

    @app.get("/metrics")
    def metrics_route() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/v1/search")
    def search(
        q: str = Query(min_length=1, max_length=MAX_QUERY_CHARS),
        k: int = Query(default=10, ge=1, le=MAX_K),
        page: int = Query(default=1, ge=1, le=MAX_PAGE),
        backend: Literal["lexical", "dense", "hybrid"] | None = None,
    ) -> dict[str, Any]:
        result = holder.get().search(q, k=k, page=page, backend=backend)
        metrics.search_duration.labels(result.backend).observe(result.seconds)
        return page_json(result)

    @app.get("/api/v1/stats")
    def stats() -> dict[str, Any]:
        return asdict(holder.get().stats())

    @app.post("/api/v1/ingest")
    async def ingest(body: IngestRequest) -> JSONResponse:
        current = holder.get()
        report = await run_in_threadpool(current.ingest, body.path)
        metrics.ingest_duration.observe(report.seconds)
        data = report_json(report)
        if not report.ok:
            message = f"{report.failed} of {report.failed + report.embedded} chunks not embedded"
            data["error"] = {"message": message, "field": None}
            return JSONResponse(data, status_code=503, headers={"Retry-After": "10"})
        return JSONResponse(data)

    app.add_middleware(_Limits, max_body=settings.max_body_bytes, metrics=metrics)
    return app
