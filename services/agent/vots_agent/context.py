"""Similar code from the RAG service (``GET /api/v1/search``), as context for an analysis.

Two kinds of question: for each file, what in the code base is most like it (a
query made of its definitions' names and docstrings, or its first lines); for
each finding worth it (security and bug-risk, medium or worse, at most a few per
request), where else the flagged code's pattern appears. All queries run
concurrently under one deadline; the RAG service being away never fails an
analysis: the caller gets the reason instead of hits, and for the next few
seconds requests skip the service at once rather than each waiting out the
deadline.
"""

from __future__ import annotations

import ast
import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from vots_agent.analysis import PYTHON, SourceFile
from vots_agent.findings import RANK, ContextHit, Finding

MAX_QUERY_CHARS = 1000  # the RAG service's own limit
MAX_FINDING_QUERIES = 5
RETRY_S = 5.0  # after the service failed, how long requests skip it
SNIPPET_CHARS = 600


class ContextUnavailable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Queries:
    files: tuple[str, ...]  # one per file
    findings: tuple[tuple[str, str], ...]  # (fingerprint, query)


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def file_query(f: SourceFile) -> str:
    """Names and first docstring lines of the file's definitions (Python), else its
    first lines: what the file is about, in the words the index knows."""
    if f.language == PYTHON:
        try:
            tree = ast.parse(f.content)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            tree = None
        if tree is not None:
            parts: list[str] = []
            doc = ast.get_docstring(tree)
            if doc:
                parts.append(doc.strip().splitlines()[0])
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    parts.append(node.name)
                    d = ast.get_docstring(node)
                    if d:
                        parts.append(d.strip().splitlines()[0])
                if sum(len(p) + 1 for p in parts) > MAX_QUERY_CHARS:
                    break
            q = _collapse(" ".join(parts))
            if q:
                return q[:MAX_QUERY_CHARS]
    return _collapse(f.content)[:MAX_QUERY_CHARS]


def worth_context(f: Finding) -> bool:
    return f.category in ("security", "bug-risk") and RANK[f.severity] >= RANK["medium"]


def queries(files: Sequence[SourceFile], findings: Sequence[Finding]) -> Queries:
    sources = {f.name: f.content.splitlines() for f in files}
    per_finding: list[tuple[str, str]] = []
    ranked = sorted((f for f in findings if worth_context(f)), key=lambda f: -RANK[f.severity])
    for f in ranked[:MAX_FINDING_QUERIES]:
        lines = sources.get(f.file, [])
        text = _collapse(" ".join(lines[f.start_line - 1 : f.end_line]))
        if text:
            per_finding.append((f.fingerprint, text[:MAX_QUERY_CHARS]))
    file_qs = tuple(q for q in (file_query(f) for f in files) if q)
    return Queries(file_qs, tuple(per_finding))


def _hit(d: dict[str, Any]) -> ContextHit:
    snippet = d.get("snippet")
    return ContextHit(
        path=str(d["path"]),
        start_line=int(d["start_line"]),
        end_line=int(d["end_line"]),
        score=float(d["score"]),
        symbol=d.get("symbol"),
        snippet=None if snippet is None else str(snippet)[:SNIPPET_CHARS],
    )


class RagClient:
    def __init__(self, base_url: str, timeout_s: float = 3.0, k: int = 5) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.k = k
        self.down_reason: str | None = None
        self._retry_at = 0.0
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
            trust_env=False,
        )

    async def search(self, q: str, k: int | None = None) -> list[ContextHit]:
        try:
            r = await self._client.get("/api/v1/search", params={"q": q, "k": k or self.k})
        except httpx.HTTPError as exc:
            raise ContextUnavailable(
                f"RAG service unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        if r.status_code != 200:
            try:
                message = r.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = r.text[:200]
            raise ContextUnavailable(f"RAG service answered {r.status_code}: {message}")
        try:
            return [_hit(d) for d in r.json()["results"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ContextUnavailable(f"RAG service sent a malformed answer: {exc}") from exc

    async def ready(self) -> str | None:
        """None when the service is ready, else why not."""
        try:
            r = await self._client.get("/readyz", timeout=1.0)
        except httpx.HTTPError as exc:
            return f"unreachable: {type(exc).__name__}: {exc}"
        if r.status_code != 200:
            try:
                return f"not ready: {r.json().get('reason', r.status_code)}"
            except ValueError:
                return f"not ready: HTTP {r.status_code}"
        return None

    async def gather(
        self, qs: Queries, exclude: set[str]
    ) -> tuple[list[ContextHit], dict[str, list[ContextHit]]]:
        """(context for the files, similar places per finding fingerprint), all under one
        deadline; raises :class:`ContextUnavailable` if the service cannot be used."""

        if self.down_reason is not None and time.monotonic() < self._retry_at:
            wait = self._retry_at - time.monotonic()
            raise ContextUnavailable(f"{self.down_reason} (next try in {wait:.0f} s)")

        async def run() -> list[list[ContextHit] | BaseException]:
            return await asyncio.gather(
                *(self.search(q) for q in qs.files),
                *(self.search(q, k=self.k + 3) for _, q in qs.findings),
                return_exceptions=True,  # every search awaited, none left unretrieved
            )

        try:
            results = await asyncio.wait_for(run(), self.timeout_s)
        except TimeoutError:
            raise self._down(f"RAG service did not answer in {self.timeout_s:g} s") from None
        for r in results:
            if isinstance(r, ContextUnavailable):
                raise self._down(r.reason)
            if isinstance(r, BaseException):
                raise r
        self.down_reason = None
        answers = [r for r in results if not isinstance(r, BaseException)]
        per_file, per_finding = answers[: len(qs.files)], answers[len(qs.files) :]
        merged: dict[tuple[str, int], ContextHit] = {}
        for file_hits in per_file:
            for h in file_hits:
                if h.path in exclude:
                    continue
                key = (h.path, h.start_line)
                if key not in merged or merged[key].score < h.score:
                    merged[key] = h
        context = sorted(merged.values(), key=lambda h: -h.score)[: self.k]
        similar = {
            fp: [h for h in hits if h.path not in exclude][:3]
            for (fp, _), hits in zip(qs.findings, per_finding, strict=True)
        }
        return context, similar

    def _down(self, reason: str) -> ContextUnavailable:
        """Remember the failure: for ``RETRY_S`` requests get the reason at once instead
        of each waiting out the timeout."""
        self.down_reason = reason
        self._retry_at = time.monotonic() + RETRY_S
        return ContextUnavailable(reason)

    async def close(self) -> None:
        await self._client.aclose()
