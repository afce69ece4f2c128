"""The one findings model every tool's output is normalised into.

Severity is one scale for all tools, ``critical > high > medium > low > info``,
and each tool's own levels are mapped onto it explicitly:

* **bandit** rates every issue twice, severity and confidence (each LOW, MEDIUM,
  HIGH). The scale takes both (:data:`BANDIT_SEVERITY`): a HIGH-severity issue
  bandit is sure of is ``critical``; one it is unsure of drops a step per
  confidence level; a LOW-severity issue is ``low``, or ``info`` when bandit is
  unsure too.
* **ruff** gives every rule the same level, so its rules are rated by what they
  catch (:func:`ruff_rating`): code that cannot run (syntax errors, undefined
  names, pylint's errors) is ``high``; likely bugs (pyflakes, bugbear) are
  ``medium``; dead code, performance and style are ``low`` or ``info``.
* **complexity** (radon): a function's cyclomatic complexity by radon's ranks,
  C (11-20) ``low``, D (21-30) ``medium``, E and F (over 30) ``high``; a file
  whose maintainability index is below 10 (radon's C) is ``medium``.

Categories: ``security``, ``bug-risk``, ``style``, ``complexity``,
``performance``. A finding's ``fingerprint`` hashes the tool, the rule, the file
and the flagged source text (whitespace-insensitive) with its occurrence count,
never line numbers, so the same finding keeps its fingerprint when code above it
moves.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["critical", "high", "medium", "low", "info"]
Category = Literal["security", "bug-risk", "style", "complexity", "performance"]
Tool = Literal["ruff", "bandit", "complexity"]

SEVERITIES: tuple[Severity, ...] = ("critical", "high", "medium", "low", "info")
RANK: dict[str, int] = {name: len(SEVERITIES) - i for i, name in enumerate(SEVERITIES)}
TOOLS: tuple[Tool, ...] = ("ruff", "bandit", "complexity")

# bandit (severity, confidence) -> our severity.
BANDIT_SEVERITY: dict[tuple[str, str], Severity] = {
    ("HIGH", "HIGH"): "critical",
    ("HIGH", "MEDIUM"): "high",
    ("HIGH", "LOW"): "medium",
    ("MEDIUM", "HIGH"): "high",
    ("MEDIUM", "MEDIUM"): "medium",
    ("MEDIUM", "LOW"): "low",
    ("LOW", "HIGH"): "low",
    ("LOW", "MEDIUM"): "low",
    ("LOW", "LOW"): "info",
}

# ruff's rules by (prefix, severity, category); the longest matching prefix decides.
RUFF_RATINGS: tuple[tuple[str, Severity, Category], ...] = (
    ("invalid-syntax", "high", "bug-risk"),  # the file does not parse
    ("E9", "high", "bug-risk"),  # syntax and IO errors: the file does not compile
    ("F821", "high", "bug-risk"),  # undefined name
    ("F822", "high", "bug-risk"),  # undefined name in __all__
    ("F823", "high", "bug-risk"),  # local variable referenced before assignment
    ("F63", "high", "bug-risk"),  # invalid comparisons, asserts on tuples
    ("F7", "high", "bug-risk"),  # misplaced break/continue/return/yield
    ("PLE", "high", "bug-risk"),  # pylint errors
    ("F401", "low", "style"),  # unused import
    ("F841", "low", "bug-risk"),  # unused local variable
    ("F", "medium", "bug-risk"),  # other pyflakes checks
    ("B", "medium", "bug-risk"),  # bugbear
    ("E711", "low", "bug-risk"),  # comparison to None with ==
    ("E712", "low", "bug-risk"),  # comparison to True/False with ==
    ("E721", "low", "bug-risk"),  # type comparison
    ("E722", "medium", "bug-risk"),  # bare except
    ("E", "info", "style"),
    ("W", "info", "style"),
    ("PERF", "low", "performance"),
    ("C4", "info", "style"),
    ("SIM", "info", "style"),
    ("UP", "info", "style"),
)
# The rules ruff runs (ruff's own defaults plus bugbear, performance, pylint errors
# and the idiom checks); security is bandit's.
RUFF_SELECT = ("E4", "E7", "E9", "F", "B", "PERF", "PLE", "C4", "SIM", "UP", "W")


def ruff_rating(code: str) -> tuple[Severity, Category]:
    best: tuple[str, Severity, Category] | None = None
    for prefix, severity, category in RUFF_RATINGS:
        if code.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, severity, category)
    if best is None:
        return "low", "style"
    return best[1], best[2]


def complexity_severity(cyclomatic: int) -> Severity | None:
    """radon's ranks: A-B (1-10) none, C ``low``, D ``medium``, E-F ``high``."""
    if cyclomatic <= 10:
        return None
    if cyclomatic <= 20:
        return "low"
    if cyclomatic <= 30:
        return "medium"
    return "high"


def at_least(severity: str, threshold: str) -> bool:
    return RANK[severity] >= RANK[threshold]


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace ``[start, end)`` (1-based lines and columns) with ``content``."""

    start_line: int
    start_column: int
    end_line: int
    end_column: int
    content: str


@dataclass(frozen=True, slots=True)
class Fix:
    description: str
    applicability: str  # ruff's: safe, unsafe, display-only
    edits: tuple[Edit, ...]


@dataclass(frozen=True, slots=True)
class ContextHit:
    """A place in the indexed code base the RAG service found similar."""

    path: str
    start_line: int
    end_line: int
    score: float
    symbol: str | None = None
    snippet: str | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    rule_id: str
    tool: Tool
    message: str
    file: str
    start_line: int
    start_column: int
    end_line: int
    end_column: int
    severity: Severity
    category: Category
    rule_name: str | None = None
    cwe: int | None = None
    help_uri: str | None = None
    fix: Fix | None = None
    fingerprint: str = ""
    similar: tuple[ContextHit, ...] = ()


@dataclass(frozen=True, slots=True)
class FunctionMetrics:
    name: str  # qualified: Class.method
    kind: Literal["function", "method", "class"]
    start_line: int
    end_line: int
    length: int  # lines, end - start + 1
    cyclomatic: int
    rank: str  # radon's A-F
    maintainability: float  # radon's maintainability index of the function's own source, 0-100


@dataclass(frozen=True, slots=True)
class FileReport:
    file: str
    language: str
    lines: int
    sloc: int | None = None
    maintainability: float | None = None
    functions: tuple[FunctionMetrics, ...] = ()
    skipped: tuple[str, ...] = ()  # "tool: why", for the tools that did not run on it


@dataclass(frozen=True, slots=True)
class ToolRun:
    name: Tool
    version: str
    seconds: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Analysis:
    """The deterministic result for a set of files: what is cached by content."""

    findings: tuple[Finding, ...]
    files: tuple[FileReport, ...]
    tools: tuple[ToolRun, ...]
    seconds: float
    key: str = ""  # the cache key it was computed for
    options: dict[str, object] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        c = Counter(f.severity for f in self.findings)
        return {s: c.get(s, 0) for s in SEVERITIES}


def _norm(text: str) -> str:
    return "".join(text.split())


def fingerprint_all(
    findings: Iterable[Finding], sources: dict[str, Sequence[str]]
) -> list[Finding]:
    """Each finding with its fingerprint: tool, rule, file, the flagged lines' text
    without whitespace, and how many identical ones came before it in that file."""
    from dataclasses import replace

    seen: Counter[tuple[str, str, str, str]] = Counter()
    out: list[Finding] = []
    ordered = sorted(
        findings, key=lambda f: (f.file, f.start_line, f.start_column, f.tool, f.rule_id)
    )
    for f in ordered:
        lines = sources.get(f.file, ())
        text = _norm("\n".join(lines[f.start_line - 1 : f.end_line])) if lines else ""
        base = (f.tool, f.rule_id, f.file, text)
        n = seen[base]
        seen[base] += 1
        digest = hashlib.sha256("\x1f".join((*base, str(n))).encode()).hexdigest()[:32]
        out.append(replace(f, fingerprint=digest))
    return out
