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
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any, Literal

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from vots_service.http import Guard, install_error_handlers

from vots_rag.errors import NotReady, RagError
from vots_rag.index import MAX_K, MAX_PAGE, MAX_QUERY_CHARS, Index, IngestReport, SearchPage
from vots_rag.metrics import Metrics
from vots_rag.settings import Settings, make_embedder, open_index

log = logging.getLogger("vots_rag")
RETRY_S = 2.0
SNIPPET_LINES = 40


class IngestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(default=".", min_length=1, max_length=4096)


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

    install_error_handlers(app)

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

    app.add_middleware(Guard, max_body=settings.max_body_bytes, metrics=metrics, logger="vots_rag")
    return app
