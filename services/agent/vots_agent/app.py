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
import logging
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from vots_service.http import Guard, install_error_handlers

from vots_agent.analysis import Options, SourceFile, language_of, tool_versions
from vots_agent.cache import Cache
from vots_agent.context import RagClient
from vots_agent.errors import AgentError
from vots_agent.llm import LlmClient
from vots_agent.metrics import Metrics
from vots_agent.pool import Pool, cpu_limit
from vots_agent.service import Agent, to_document
from vots_agent.settings import Settings, llm_key
from vots_agent.sources import check_content, check_name, from_root

log = logging.getLogger("vots_agent")
SARIF_TYPE = "application/sarif+json"
LANGUAGE = r"^[A-Za-z0-9+#._-]{1,32}$"


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

    install_error_handlers(app)

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
        Guard,
        max_body=settings.max_body_bytes,
        body_timeout=settings.body_timeout_s,
        metrics=metrics,
        logger="vots_agent",
    )
    return app
