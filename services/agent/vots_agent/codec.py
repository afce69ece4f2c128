"""Analyses to and from plain JSON (the cache's format: data, never pickles, so a
tampered cache entry cannot run code; a malformed one is a miss)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from vots_agent.findings import (
    Analysis,
    ContextHit,
    Edit,
    FileReport,
    Finding,
    Fix,
    FunctionMetrics,
    ToolRun,
)


def finding_dict(f: Finding) -> dict[str, Any]:
    d = asdict(f)
    if not f.similar:
        d.pop("similar")
    return d


def analysis_dict(a: Analysis) -> dict[str, Any]:
    return {
        "findings": [finding_dict(f) for f in a.findings],
        "files": [asdict(f) for f in a.files],
        "tools": [asdict(t) for t in a.tools],
        "seconds": a.seconds,
        "key": a.key,
        "options": a.options,
    }


def _finding(d: dict[str, Any]) -> Finding:
    fix = d.get("fix")
    return Finding(
        **{k: v for k, v in d.items() if k not in ("fix", "similar")},
        fix=None
        if fix is None
        else Fix(fix["description"], fix["applicability"], tuple(Edit(**e) for e in fix["edits"])),
        similar=tuple(ContextHit(**h) for h in d.get("similar", ())),
    )


def analysis_from_dict(d: dict[str, Any]) -> Analysis:
    """Raises KeyError/TypeError/ValueError on anything that is not an analysis."""
    return Analysis(
        findings=tuple(_finding(f) for f in d["findings"]),
        files=tuple(
            FileReport(
                **{k: v for k, v in f.items() if k not in ("functions", "skipped")},
                functions=tuple(FunctionMetrics(**m) for m in f["functions"]),
                skipped=tuple(f["skipped"]),
            )
            for f in d["files"]
        ),
        tools=tuple(ToolRun(**t) for t in d["tools"]),
        seconds=float(d["seconds"]),
        key=str(d["key"]),
        options=dict(d["options"]),
    )
