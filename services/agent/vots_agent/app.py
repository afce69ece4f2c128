"""The HTTP API: routes translate requests to :class:`~vots_agent.service.Agent` calls.

``POST /api/v1/analyze_code`` takes ``{"files": [{"name", "content",
"language"?}]}``, or ``{"code", "filename"?, "language"?}`` for one file, or
``{"path"}`` under ``AGENT_CODE_ROOT``, plus ``options``; ``?format=sarif``
answers SARIF 2.1.0. Every error is one JSON shape, ``{"error": {"message",
"field"}}``, a 4xx naming the field for bad input; 503 with ``Retry-After``
when the analysis queue is full. The worker pool starts in the background:
``/healthz`` answers at once, ``/readyz`` once the analysers are loaded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from vots_agent.analysis import Options, SourceFile, language_of, tool_versions
from vots_agent.cache import Cache
from vots_agent.context import RagClient
from vots_agent.errors import AgentError, Overloaded
from vots_agent.llm import LlmClient
from vots_agent.metrics import Metrics
from vots_agent.pool import Pool, cpu_limit
from vots_agent.service import Agent, to_document
from vots_agent.settings import Settings, llm_key
from vots_agent.sources import check_content, check_name, from_root

log = logging.getLogger("vots_agent")
SARIF_TYPE = "application/sarif+json"
LANGUAGE = r"^[A-Za-z0-9+#._-]{1,32}$"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class FileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=255)
    content: str
    language: str | None = Field(default=None, pattern=LANGUAGE)


class OptionsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tools: list[Literal["ruff", "bandit", "complexity"]] | None = Field(default=None, min_length=1)
    max_complexity: int = Field(default=10, ge=1, le=1000)
    max_function_lines: int = Field(default=100, ge=1, le=1_000_000)
    respect_suppressions: bool = False
    context: bool = True
    llm: bool = True


class AnalyzeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    files: list[FileIn] | None = None
    code: str | None = None
    filename: str | None = Field(default=None, min_length=1, max_length=255)
    language: str | None = Field(default=None, pattern=LANGUAGE)
    path: str | None = Field(default=None, min_length=1, max_length=4096)
    options: OptionsIn = OptionsIn()


def error_body(message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "field": field}}


def sources(body: AnalyzeRequest, settings: Settings) -> list[SourceFile]:
    given = [k for k in ("files", "code", "path") if getattr(body, k) is not None]
    if len(given) != 1:
        raise AgentError(
            "give exactly one of files, code or path"
            + (f" (got {', '.join(given)})" if given else ""),
            field="files",
            status=422,
        )
    if body.path is not None:
        return from_root(settings.code_root, body.path, settings.max_files, settings.max_file_bytes)
    if body.code is not None:
        name = check_name(body.filename or "snippet.py", "filename")
        check_content(body.code, "code", settings.max_file_bytes)
        return [SourceFile(name, body.code, language_of(name, body.language))]
    assert body.files is not None
    if not body.files:
        raise AgentError("files: at least one file", field="files", status=422)
    if len(body.files) > settings.max_files:
        raise AgentError(
            f"files: {len(body.files)} files, over the limit of {settings.max_files}",
            field="files",
            status=413,
        )
    out: list[SourceFile] = []
    seen: set[str] = set()
    for i, f in enumerate(body.files):
        name = check_name(f.name, f"files.{i}.name")
        if name in seen:
            raise AgentError(
                f"files.{i}.name: {name!r} given twice", field=f"files.{i}.name", status=422
            )
        seen.add(name)
        check_content(f.content, f"files.{i}.content", settings.max_file_bytes)
        out.append(SourceFile(name, f.content, language_of(name, f.language)))
    return out


class _Guard:
    """Before the app: a body over the limit is refused (413 naming ``body``), chunked
    uploads included, and one that does not arrive within ``body_timeout`` seconds gets
    a 408 (a client trickling bytes holds no worker); after it: every request counted
    and timed by route template and status."""

    def __init__(self, app: ASGIApp, max_body: int, body_timeout: float, metrics: Metrics) -> None:
        self.app, self.max_body, self.body_timeout, self.metrics = (
            app,
            max_body,
            body_timeout,
            metrics,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        seen = {"status": 500}
        declared = dict(scope.get("headers", [])).get(b"content-length")
        over = declared is not None and (not declared.isdigit() or int(declared) > self.max_body)

        async def watched_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            try:
                body = (
                    None
                    if over
                    else await asyncio.wait_for(
                        _read_at_most(receive, self.max_body), self.body_timeout
                    )
                )
            except TimeoutError:
                seen["status"] = 408
                message = f"request body not received within {self.body_timeout:g} s"
                await _json(send, 408, error_body(message, "body"))
                return
            if body is None:
                seen["status"] = 413
                await _json(
                    send, 413, error_body(f"request body over {self.max_body} bytes", "body")
                )
            else:
                await self.app(scope, _replay(body, receive), watched_send)
        finally:
            self.metrics.in_flight.dec()
            route = getattr(scope.get("route"), "path", None) or "other"
            method = scope.get("method", "GET")
            took = time.perf_counter() - started
            self.metrics.requests.labels(method, route, str(seen["status"])).inc()
            self.metrics.latency.labels(method, route, str(seen["status"])).observe(took)
            if route not in ("/healthz", "/metrics", "/readyz"):
                log.info(
                    "request",
                    extra={
                        "method": method,
                        "route": route,
                        "status": seen["status"],
                        "ms": round(took * 1000, 2),
                    },
                )


async def _read_at_most(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None as soon as it passes ``limit`` (a chunked upload
    declares no length to refuse it by)."""
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


def _replay(body: bytes, receive: Receive) -> Receive:
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


async def _json(send: Send, status: int, doc: dict[str, Any]) -> None:
    payload = json.dumps(doc).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class State:
    def __init__(self) -> None:
        self.agent: Agent | None = None
        self.pool: Pool | None = None
        self.reason = "starting the analysis workers"


def build_agent(settings: Settings, metrics: Metrics | None, pool: Pool | None) -> Agent:
    rag = RagClient(settings.rag_url, settings.rag_timeout_s) if settings.rag_url else None
    llm = None
    if settings.llm_base_url and settings.llm_model:
        llm = LlmClient(
            settings.llm_base_url, settings.llm_model, llm_key(settings), settings.llm_timeout_s
        )
    return Agent(
        cache=Cache(settings.redis_url, settings.lru_bytes),
        pool=pool,
        rag=rag,
        llm=llm,
        metrics=metrics,
        cache_ttl_s=settings.cache_ttl_s,
        context_ttl_s=settings.context_ttl_s,
    )


def create_app(settings: Settings) -> FastAPI:
    state = State()
    metrics = Metrics(lambda: state.agent)
    workers = settings.workers or cpu_limit()
    pool = Pool(workers, settings.queue, settings.timeout_s)

    async def start_pool() -> None:
        try:
            await asyncio.to_thread(pool.start_workers)
            pool.open()
            state.pool = pool
            log.info("analysis workers ready", extra={"workers": workers, "queue": settings.queue})
        except AgentError as exc:
            state.reason = exc.message
            log.error("analysis workers did not start", extra={"reason": exc.message})

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        state.agent = build_agent(settings, metrics, pool)
        starter = asyncio.create_task(start_pool())
        yield
        # uvicorn has drained in-flight requests by now: their analyses are done.
        starter.cancel()
        await asyncio.to_thread(pool.close)
        await state.agent.close()
        log.info("stopped")

    app = FastAPI(
        title="vots-agent", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.agent_state = state
    app.state.metrics = metrics

    @app.exception_handler(AgentError)
    async def _agent_error(_: Request, exc: AgentError) -> JSONResponse:
        headers = None
        if isinstance(exc, Overloaded):
            headers = {"Retry-After": str(exc.retry_after)}
        elif exc.status == 503:
            headers = {"Retry-After": "5"}
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
            loc = loc[1:]
        if err.get("type") == "json_invalid":
            loc = []
        field = ".".join(loc) or "body"
        return JSONResponse(
            error_body(f"{field}: {err.get('msg', 'invalid')}", field), status_code=422
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        agent = state.agent
        if state.pool is None or agent is None:
            return JSONResponse({"status": "not ready", "reason": state.reason}, status_code=503)
        await agent.cache.ping()
        rag = "not configured (RAG_URL is not set)"
        if agent.rag is not None:
            rag = await agent.rag.ready() or "ready"
        degraded = agent.cache.backend != "redis" and settings.redis_url is not None
        degraded = degraded or (agent.rag is not None and rag != "ready")
        return JSONResponse(
            {
                "status": "degraded" if degraded else "ready",
                "tools": tool_versions(),
                "workers": pool.size,
                "queue": {"limit": pool.queue, "waiting": pool.depth, "running": pool.running},
                "cache": agent.cache.status(),
                "rag": rag,
                "llm": f"{agent.llm.model} at {agent.llm.base_url}"
                if agent.llm
                else "not configured",
            }
        )

    @app.get("/metrics")
    async def metrics_route() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/api/v1/analyze_code")
    async def analyze_code(
        body: AnalyzeRequest, format: Literal["json", "sarif"] = Query(default="json")
    ) -> Response:
        agent = state.agent
        if state.pool is None or agent is None:
            raise AgentError(f"not ready: {state.reason}", status=503)
        files = await asyncio.to_thread(sources, body, settings)
        o = body.options
        options = Options(
            tools=tuple(dict.fromkeys(o.tools)) if o.tools else Options().tools,
            max_complexity=o.max_complexity,
            max_function_lines=o.max_function_lines,
            respect_suppressions=o.respect_suppressions,
        )
        report = await agent.analyze(files, options, context=o.context, explain=o.llm)
        if format == "sarif":
            from vots_agent.sarif import to_sarif

            return JSONResponse(to_sarif(report.analysis), media_type=SARIF_TYPE)
        return JSONResponse(to_document(report))

    app.add_middleware(
        _Guard,
        max_body=settings.max_body_bytes,
        body_timeout=settings.body_timeout_s,
        metrics=metrics,
    )
    return app
