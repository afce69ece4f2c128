"""An explanation and suggested fixes from an OpenAI-compatible chat endpoint (optional).

The prompt carries only what the deterministic analysis found and the code the
RAG service retrieved (the findings with their flagged lines, the similar
places), and asks for JSON: a summary and, per finding fingerprint, an
explanation and a suggestion. An answer is kept only for fingerprints that
exist; anything else (a timeout, an HTTP error, a malformed body, JSON that is
not the asked shape) raises :class:`LlmUnavailable` with the reason, and the
caller answers with the deterministic result and ``"llm": null``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from vots_agent.analysis import SourceFile
from vots_agent.findings import RANK, ContextHit, Finding

MAX_FINDINGS_IN_PROMPT = 25
MAX_CONTEXT_IN_PROMPT = 5
SYSTEM = (
    "You review code for a team. You are given findings from static analysers "
    "(ruff, bandit, radon) with the flagged lines, and similar code from the same "
    "code base. Explain only these findings; do not invent others. Answer with one "
    "JSON object and nothing else: "
    '{"summary": "<2-4 sentences on what matters most>", '
    '"fixes": [{"fingerprint": "<a fingerprint from the list>", '
    '"explanation": "<why it matters here>", "suggestion": "<the change to make>"}]}'
)


class LlmUnavailable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LlmFix:
    fingerprint: str
    explanation: str
    suggestion: str


@dataclass(frozen=True, slots=True)
class LlmAnswer:
    model: str
    summary: str
    fixes: tuple[LlmFix, ...]
    seconds: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def prompt(
    files: Sequence[SourceFile], findings: Sequence[Finding], context: Sequence[ContextHit]
) -> str:
    sources = {f.name: f.content.splitlines() for f in files}
    ranked = sorted(findings, key=lambda f: (-RANK[f.severity], f.file, f.start_line))
    parts = ["## Findings"]
    for f in ranked[:MAX_FINDINGS_IN_PROMPT]:
        lines = sources.get(f.file, [])
        flagged = "\n".join(lines[f.start_line - 1 : min(f.end_line, f.start_line + 4)])
        parts.append(
            f"- fingerprint {f.fingerprint}: {f.tool} {f.rule_id} ({f.severity}, {f.category}) "
            f"at {f.file}:{f.start_line}: {f.message}\n```\n{flagged}\n```"
        )
    if len(ranked) > MAX_FINDINGS_IN_PROMPT:
        parts.append(f"({len(ranked) - MAX_FINDINGS_IN_PROMPT} lower-severity findings omitted)")
    if context:
        parts.append("## Similar code elsewhere in the code base")
        for h in context[:MAX_CONTEXT_IN_PROMPT]:
            parts.append(f"- {h.path}:{h.start_line}-{h.end_line}\n```\n{h.snippet or ''}\n```")
    return "\n".join(parts)


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


def parse_answer(content: str, known: set[str]) -> tuple[str, tuple[LlmFix, ...]]:
    m = _FENCE.match(content)
    text = m.group(1) if m else content
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LlmUnavailable(f"the model's answer is not JSON ({exc.msg})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("summary"), str):
        raise LlmUnavailable("the model's answer has no summary string")
    fixes: list[LlmFix] = []
    raw = doc.get("fixes", [])
    if not isinstance(raw, list):
        raise LlmUnavailable("the model's answer has fixes that are not a list")
    for item in raw:
        if not isinstance(item, dict):
            continue
        fp = item.get("fingerprint")
        if fp not in known:  # grounded: only the findings it was given
            continue
        fixes.append(
            LlmFix(str(fp), str(item.get("explanation", "")), str(item.get("suggestion", "")))
        )
    return doc["summary"].strip(), tuple(fixes)


class LlmClient:
    def __init__(
        self, base_url: str, model: str, api_key: str | None, timeout_s: float = 30.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s),
            headers=headers,
            trust_env=False,
        )

    async def explain(
        self,
        files: Sequence[SourceFile],
        findings: Sequence[Finding],
        context: Sequence[ContextHit],
    ) -> LlmAnswer:
        body = {
            "model": self.model,
            "temperature": 0,
            "max_tokens": 1200,
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": prompt(files, findings, context)},
            ],
        }
        start = time.perf_counter()
        try:
            r = await self._client.post("/chat/completions", json=body)
        except httpx.TimeoutException:
            raise LlmUnavailable(f"the model did not answer in {self.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise LlmUnavailable(
                f"the model endpoint is unreachable: {type(exc).__name__}"
            ) from exc
        if r.status_code != 200:
            raise LlmUnavailable(f"the model endpoint answered HTTP {r.status_code}")
        try:
            doc: Any = r.json()
            content = doc["choices"][0]["message"]["content"]
            if not isinstance(content, str):
                raise TypeError("content is not a string")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LlmUnavailable(f"the model endpoint sent a malformed response ({exc})") from None
        summary, fixes = parse_answer(content, {f.fingerprint for f in findings})
        usage = doc.get("usage") if isinstance(doc.get("usage"), dict) else {}
        return LlmAnswer(
            model=str(doc.get("model") or self.model),
            summary=summary,
            fixes=fixes,
            seconds=time.perf_counter() - start,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
        )

    async def close(self) -> None:
        await self._client.aclose()
