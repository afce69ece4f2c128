"""SARIF 2.1.0: one run per tool, so GitHub code scanning and IDEs show each tool's rules.

Levels: ``critical``/``high`` are ``error``, ``medium`` ``warning``, ``low``/``info``
``note``; security rules carry GitHub's ``security-severity`` (critical 9.5, high 8.0,
medium 5.5, low 3.0, info 1.0) and a ``external/cwe/cwe-N`` tag. Every result has
our fingerprint under ``partialFingerprints["votsFingerprint/v1"]`` and our severity
and category in its property bag.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from vots_agent.findings import Analysis, Finding

SCHEMA_URI = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "1.0"}
DRIVERS = {
    "ruff": ("ruff", "https://docs.astral.sh/ruff/"),
    "bandit": ("bandit", "https://bandit.readthedocs.io/"),
    "complexity": ("radon", "https://radon.readthedocs.io/"),
}


def _uri(path: str) -> str:
    return quote(path.replace("\\", "/"), safe="/._-~")


def _region(start_line: int, start_col: int, end_line: int, end_col: int) -> dict[str, int]:
    start_col = max(1, start_col)
    end_line = max(start_line, end_line)
    end_col = max(1, end_col)
    if end_line == start_line and end_col < start_col:
        end_col = start_col
    return {
        "startLine": max(1, start_line),
        "startColumn": start_col,
        "endLine": max(1, end_line),
        "endColumn": end_col,
    }


def _rule(f: Finding) -> dict[str, Any]:
    tags: list[str] = [f.category]
    props: dict[str, Any] = {"tags": tags}
    if f.cwe is not None:
        tags.append(f"external/cwe/cwe-{f.cwe}")
    if f.category == "security":
        props["security-severity"] = SECURITY_SEVERITY[f.severity]
    rule: dict[str, Any] = {
        "id": f.rule_id,
        "shortDescription": {"text": f.rule_name or f.rule_id},
        "defaultConfiguration": {"level": LEVEL[f.severity]},
        "properties": props,
    }
    if f.rule_name:
        rule["name"] = f.rule_name
    if f.help_uri:
        rule["helpUri"] = f.help_uri
    return rule


def _result(f: Finding, rule_index: int) -> dict[str, Any]:
    location = {
        "physicalLocation": {
            "artifactLocation": {"uri": _uri(f.file)},
            "region": _region(f.start_line, f.start_column, f.end_line, f.end_column),
        }
    }
    props: dict[str, Any] = {"severity": f.severity, "category": f.category, "tool": f.tool}
    if f.cwe is not None:
        props["cwe"] = f"CWE-{f.cwe}"
    result: dict[str, Any] = {
        "ruleId": f.rule_id,
        "ruleIndex": rule_index,
        "level": LEVEL[f.severity],
        "message": {"text": f.message},
        "locations": [location],
        "partialFingerprints": {"votsFingerprint/v1": f.fingerprint},
        "properties": props,
    }
    if f.similar:
        result["relatedLocations"] = [
            {
                "id": i,
                "physicalLocation": {
                    "artifactLocation": {"uri": _uri(h.path)},
                    "region": {"startLine": max(1, h.start_line), "endLine": max(1, h.end_line)},
                },
                "message": {"text": f"similar code (score {h.score:.3f})"},
            }
            for i, h in enumerate(f.similar)
        ]
    if f.fix is not None:
        result["fixes"] = [
            {
                "description": {"text": f.fix.description},
                "artifactChanges": [
                    {
                        "artifactLocation": {"uri": _uri(f.file)},
                        "replacements": [
                            {
                                "deletedRegion": _region(
                                    e.start_line, e.start_column, e.end_line, e.end_column
                                ),
                                "insertedContent": {"text": e.content},
                            }
                            for e in f.fix.edits
                        ],
                    }
                ],
            }
        ]
    return result


def to_sarif(analysis: Analysis) -> dict[str, Any]:
    """The SARIF log of an analysis (findings with their similar places, if any)."""
    runs = []
    for run in analysis.tools:
        name, uri = DRIVERS[run.name]
        rules: list[dict[str, Any]] = []
        index: dict[str, int] = {}
        results = []
        for f in analysis.findings:
            if f.tool != run.name:
                continue
            if f.rule_id not in index:
                index[f.rule_id] = len(rules)
                rules.append(_rule(f))
            results.append(_result(f, index[f.rule_id]))
        invocation: dict[str, Any] = {"executionSuccessful": run.error is None}
        if run.error:
            invocation["toolExecutionNotifications"] = [
                {"level": "error", "message": {"text": run.error}}
            ]
        version = run.version.split()[-1]
        runs.append(
            {
                "tool": {
                    "driver": {
                        "name": name,
                        "version": version,
                        "informationUri": uri,
                        "rules": rules,
                    }
                },
                "invocations": [invocation],
                "results": results,
                "columnKind": "unicodeCodePoints",
            }
        )
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": runs}
