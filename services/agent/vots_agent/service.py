"""The agent: cache → analysis (in the pool) → context (RAG) → explanation (LLM).

:class:`Agent` is the library the API and the CLI share; it never raises for a
dependency being away: the cache falls back to its LRU, context and explanation
become ``None`` with the reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from vots_agent.analysis import Options, SourceFile, analyze, cache_key
from vots_agent.cache import Cache
from vots_agent.codec import analysis_dict, analysis_from_dict, finding_dict
from vots_agent.context import ContextUnavailable, RagClient, queries
from vots_agent.findings import RANK, SEVERITIES, Analysis, ContextHit
from vots_agent.llm import LlmAnswer, LlmClient, LlmFix, LlmUnavailable

if TYPE_CHECKING:
    from vots_agent.metrics import Metrics
    from vots_agent.pool import Pool

log = logging.getLogger("vots_agent")
DOCUMENT_VERSION = "1"


@dataclass(frozen=True, slots=True)
class Report:
    analysis: Analysis
    cached: bool
    cache_backend: str
    context: tuple[ContextHit, ...] | None
    context_reason: str | None
    llm: LlmAnswer | None
    llm_reason: str | None
    seconds: float


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


class Agent:
    def __init__(
        self,
        *,
        cache: Cache,
        pool: Pool | None = None,
        rag: RagClient | None = None,
        llm: LlmClient | None = None,
        metrics: Metrics | None = None,
        cache_ttl_s: int = 7 * 24 * 3600,
        context_ttl_s: int = 300,
    ) -> None:
        self.cache = cache
        self.pool = pool
        self.rag = rag
        self.llm = llm
        self.metrics = metrics
        self.cache_ttl_s = cache_ttl_s
        self.context_ttl_s = context_ttl_s

    async def _analysis(
        self, files: Sequence[SourceFile], options: Options
    ) -> tuple[Analysis, bool]:
        key = await asyncio.to_thread(cache_key, files, options)
        raw = await self.cache.get("analysis", key)
        if raw is not None:
            try:
                return analysis_from_dict(raw), True
            except (KeyError, TypeError, ValueError):
                log.warning("corrupt cache entry dropped", extra={"key": key})
        if self.pool is not None:
            result = await self.pool.run(files, options)
        else:
            result = await asyncio.to_thread(analyze, files, options)
        if self.metrics is not None:
            for run in result.tools:
                self.metrics.analysis.labels(run.name).observe(run.seconds)
        await self.cache.put("analysis", key, analysis_dict(result), self.cache_ttl_s)
        return result, False

    async def _context(
        self, files: Sequence[SourceFile], analysis: Analysis
    ) -> tuple[Analysis, tuple[ContextHit, ...] | None, str | None]:
        if self.rag is None:
            return analysis, None, "RAG_URL is not set"
        qs = queries(files, analysis.findings)
        key = _digest([self.rag.base_url, asdict(qs)])
        raw = await self.cache.get("context", key)
        context: list[ContextHit]
        similar: dict[str, list[ContextHit]]
        try:
            if raw is not None:
                context = [ContextHit(**h) for h in raw["context"]]
                similar = {fp: [ContextHit(**h) for h in hs] for fp, hs in raw["similar"].items()}
            else:
                context, similar = await self.rag.gather(qs, exclude={f.name for f in files})
                await self.cache.put(
                    "context",
                    key,
                    {
                        "context": [asdict(h) for h in context],
                        "similar": {fp: [asdict(h) for h in hs] for fp, hs in similar.items()},
                    },
                    self.context_ttl_s,
                )
                self._count("rag", "ok")
        except ContextUnavailable as exc:
            self._count("rag", "error")
            log.warning("no context", extra={"reason": exc.reason})
            return analysis, None, exc.reason
        except (KeyError, TypeError, ValueError):  # a corrupt cached context
            return analysis, None, "cached context unreadable"
        findings = tuple(
            replace(f, similar=tuple(similar[f.fingerprint])) if similar.get(f.fingerprint) else f
            for f in analysis.findings
        )
        return replace(analysis, findings=findings), tuple(context), None

    async def _explain(
        self,
        files: Sequence[SourceFile],
        analysis: Analysis,
        context: tuple[ContextHit, ...] | None,
    ) -> tuple[LlmAnswer | None, str | None]:
        if self.llm is None:
            return None, "LLM_BASE_URL and LLM_MODEL are not set"
        if not analysis.findings:
            return None, "no findings to explain"
        key = _digest(
            [self.llm.base_url, self.llm.model, analysis.key, [asdict(h) for h in context or ()]]
        )
        raw = await self.cache.get("llm", key)
        if raw is not None:
            try:
                return (
                    LlmAnswer(**{**raw, "fixes": tuple(LlmFix(**x) for x in raw["fixes"])}),
                    None,
                )
            except (KeyError, TypeError):
                pass
        start = time.perf_counter()
        try:
            answer = await self.llm.explain(files, analysis.findings, context or ())
        except LlmUnavailable as exc:
            self._count("llm", "error")
            if self.metrics is not None:
                self.metrics.llm_latency.observe(time.perf_counter() - start)
            log.warning("no explanation", extra={"reason": exc.reason})
            return None, exc.reason
        self._count("llm", "ok")
        if self.metrics is not None:
            self.metrics.llm_latency.observe(answer.seconds)
        await self.cache.put("llm", key, asdict(answer), self.cache_ttl_s)
        return answer, None

    def _count(self, what: str, outcome: str) -> None:
        if self.metrics is not None:
            getattr(self.metrics, what).labels(outcome).inc()

    async def analyze(
        self,
        files: Sequence[SourceFile],
        options: Options | None = None,
        *,
        context: bool = True,
        explain: bool = True,
    ) -> Report:
        start = time.perf_counter()
        options = options or Options()
        analysis, cached = await self._analysis(files, options)
        if self.metrics is not None:
            for f in analysis.findings:
                self.metrics.findings.labels(f.tool, f.severity).inc()
        hits: tuple[ContextHit, ...] | None = None
        context_reason: str | None = "not asked for"
        if context:
            analysis, hits, context_reason = await self._context(files, analysis)
        answer: LlmAnswer | None = None
        llm_reason: str | None = "not asked for"
        if explain:
            answer, llm_reason = await self._explain(files, analysis, hits)
        return Report(
            analysis=analysis,
            cached=cached,
            cache_backend=self.cache.backend,
            context=hits,
            context_reason=context_reason,
            llm=answer,
            llm_reason=llm_reason,
            seconds=time.perf_counter() - start,
        )

    async def close(self) -> None:
        for part in (self.rag, self.llm):
            if part is not None:
                await part.close()
        await self.cache.close()


def max_severity(analysis: Analysis) -> str | None:
    return max((f.severity for f in analysis.findings), key=lambda s: RANK[s], default=None)


def to_document(report: Report) -> dict[str, Any]:
    """The API's JSON document (``--format json`` prints the same)."""
    a = report.analysis
    counts = a.counts()
    by_tool: dict[str, int] = {}
    for f in a.findings:
        by_tool[f.tool] = by_tool.get(f.tool, 0) + 1
    body = analysis_dict(a)
    return {
        "version": DOCUMENT_VERSION,
        "summary": {
            "files": len(a.files),
            "findings": len(a.findings),
            "max_severity": max_severity(a),
            "by_severity": {s: counts[s] for s in SEVERITIES},
            "by_tool": by_tool,
        },
        "findings": [finding_dict(f) for f in a.findings],
        "files": body["files"],
        "tools": body["tools"],
        "options": a.options,
        "context": None if report.context is None else [asdict(h) for h in report.context],
        "context_reason": report.context_reason,
        "llm": None if report.llm is None else asdict(report.llm),
        "llm_reason": report.llm_reason,
        "cache": {"hit": report.cached, "backend": report.cache_backend, "key": a.key},
        "took_ms": round(report.seconds * 1000, 3),
    }
