"""The deterministic analysis: ruff, bandit and radon over a set of submitted files.

The files are written under a private temporary directory with names of our own
(``f0003.py``), never the submitted names, so a name cannot point anywhere; the
tools parse them and none of them imports or runs them. ruff runs as its binary
with ``--isolated`` (no configuration file is read, the payload cannot configure
it) and ``--ignore-noqa`` unless suppressions are asked to be respected; bandit
runs in-process with ``# nosec`` ignored the same way; radon in-process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

from vots_agent.errors import AgentError
from vots_agent.findings import (
    BANDIT_SEVERITY,
    RUFF_SELECT,
    TOOLS,
    Analysis,
    Edit,
    FileReport,
    Finding,
    Fix,
    FunctionMetrics,
    Severity,
    Tool,
    ToolRun,
    complexity_severity,
    fingerprint_all,
    ruff_rating,
)

# Bumped whenever the analysis of the same input can change (mappings, rule sets):
# it is part of every cache key.
ANALYSIS_VERSION = "1"
RUFF_TIMEOUT_S = 60.0

LANGUAGES = {
    ".py": "python",
    ".pyi": "python",
    ".pyw": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c",
    ".h": "c",
    ".cpp": "cpp",
    ".cc": "cpp",
    ".hpp": "cpp",
    ".rb": "ruby",
    ".sh": "shell",
    ".md": "markdown",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".json": "json",
    ".toml": "toml",
}
PYTHON = "python"


@dataclass(frozen=True, slots=True)
class SourceFile:
    name: str  # as submitted (a relative path); shown in findings, never used as a path
    content: str
    language: str = PYTHON

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.content.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class Options:
    tools: tuple[Tool, ...] = TOOLS
    max_complexity: int = 10  # a function above this is a finding (radon's rank C and worse)
    max_function_lines: int = 100  # a longer function is a finding
    respect_suppressions: bool = False  # honour the code's own ruff and bandit suppressions

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tools"] = list(self.tools)
        return d


def language_of(name: str, given: str | None = None) -> str:
    if given:
        return given.lower()
    return LANGUAGES.get(PurePosixPath(name).suffix.lower(), "text")


@cache
def ruff_bin() -> str:
    try:
        from ruff.__main__ import find_ruff_bin  # type: ignore[import-untyped]

        return str(find_ruff_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("ruff")
        if not found:
            raise AgentError("ruff is not installed", status=503) from None
        return found


@cache
def tool_versions() -> dict[str, str]:
    """Every analyser's version: part of the cache key and of ``/readyz``."""
    from importlib.metadata import version

    out = subprocess.run(  # noqa: S603 - argument list, the wheel's own binary
        [ruff_bin(), "--version"], capture_output=True, text=True, timeout=30, check=True
    )
    return {
        "ruff": out.stdout.split()[-1],
        "bandit": version("bandit"),
        "complexity": f"radon {version('radon')}",
    }


def cache_key(files: Sequence[SourceFile], options: Options) -> str:
    """Content hash of the request: every file's name, language and text digest, the
    options and the tools' versions."""
    doc = {
        "v": ANALYSIS_VERSION,
        "tools": tool_versions(),
        "options": options.as_dict(),
        "files": [(f.name, f.language, f.digest) for f in files],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- ruff


def _ruff(
    names: dict[str, str], workdir: Path, options: Options
) -> tuple[list[Finding], str | None, dict[str, str]]:
    """ruff's findings, its error if it failed on the whole set, and the files it
    failed on when the set was retried one file at a time (a file that crashes ruff,
    say by overflowing its stack, costs only its own findings)."""
    found, error = _ruff_once(names, workdir, options)
    if error is None or len(names) == 1:
        return found, error, {}
    found, failed = [], {}
    for temp, shown in names.items():
        one, err = _ruff_once({temp: shown}, workdir, options)
        found += one
        if err is not None:
            failed[shown] = err
    return found, None, failed


def _ruff_once(
    names: dict[str, str], workdir: Path, options: Options
) -> tuple[list[Finding], str | None]:
    argv = [
        ruff_bin(), "check", "--isolated", "--no-cache", "--exit-zero", "--quiet",
        "--output-format", "json", "--select", ",".join(RUFF_SELECT),
        *([] if options.respect_suppressions else ["--ignore-noqa"]),
        *sorted(names),
    ]  # fmt: skip
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NO_COLOR": "1"}
    try:
        proc = subprocess.run(  # noqa: S603 - argument list, the wheel's own binary
            argv,
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=RUFF_TIMEOUT_S,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return [], f"ruff did not finish in {RUFF_TIMEOUT_S:.0f} s"
    if proc.returncode != 0:
        return [], f"ruff exited {proc.returncode}: {proc.stderr.strip()[:300]}"
    out: list[Finding] = []
    for d in json.loads(proc.stdout or "[]"):
        code = d.get("code") or "invalid-syntax"
        severity, category = ruff_rating(code)
        loc, end = d["location"], d.get("end_location") or d["location"]
        fix = None
        if d.get("fix") and d["fix"].get("edits"):
            fix = Fix(
                description=d["fix"].get("message") or f"ruff's fix for {code}",
                applicability=d["fix"].get("applicability", "unsafe"),
                edits=tuple(
                    Edit(
                        e["location"]["row"],
                        e["location"]["column"],
                        e["end_location"]["row"],
                        e["end_location"]["column"],
                        e.get("content") or "",
                    )
                    for e in d["fix"]["edits"]
                ),
            )
        out.append(
            Finding(
                rule_id=code,
                tool="ruff",
                message=d.get("message", code),
                file=names[Path(d["filename"]).name],
                start_line=loc["row"],
                start_column=loc["column"],
                end_line=end["row"],
                end_column=end["column"],
                severity=severity,
                category=category,
                rule_name=d.get("name"),
                help_uri=d.get("url"),
                fix=fix,
            )
        )
    return out, None


# --------------------------------------------------------------------------- bandit


def _bandit(
    names: dict[str, str], workdir: Path, options: Options
) -> tuple[list[Finding], dict[str, str]]:
    import logging
    import warnings

    # bandit logs a file it could not check at ERROR; it is reported as skipped instead.
    logging.getLogger("bandit").setLevel(logging.CRITICAL)
    # bandit's optional SARIF formatter needs a package it does not require: not an error.
    logging.getLogger("stevedore").setLevel(logging.CRITICAL)
    with warnings.catch_warnings():  # stevedore's deprecation notes, on every plugin load
        warnings.simplefilter("ignore", DeprecationWarning)
        from bandit.core import config, manager

        mgr = manager.BanditManager(
            config.BanditConfig(), "file", quiet=True, ignore_nosec=not options.respect_suppressions
        )
        mgr.discover_files([str(workdir / n) for n in sorted(names)], recursive=False)
        mgr.run_tests()
    out: list[Finding] = []
    for issue in mgr.get_issue_list():
        severity: Severity = BANDIT_SEVERITY.get((issue.severity, issue.confidence), "low")
        lines = list(issue.linerange) or [issue.lineno]
        cwe = getattr(issue, "cwe", None)
        cwe_id = int(cwe.id) if cwe is not None and cwe.id else None
        test = str(issue.test_id)
        out.append(
            Finding(
                rule_id=test,
                tool="bandit",
                message=str(issue.text),
                file=names[Path(issue.fname).name],
                start_line=int(issue.lineno),
                start_column=int(issue.col_offset or 0) + 1,
                end_line=max(int(issue.lineno), int(lines[-1])),
                end_column=int(issue.end_col_offset or 0) + 1,
                severity=severity,
                category="security",
                rule_name=str(issue.test),
                cwe=cwe_id,
                help_uri=_bandit_url(test, str(issue.test)),
            )
        )
    failed = {names[Path(fname).name]: str(reason) for fname, reason in mgr.skipped}
    return out, failed


def _bandit_url(test_id: str, name: str) -> str:
    if test_id.startswith(("B3", "B4")):  # the blacklist checks share one page each
        kind = "calls" if test_id.startswith("B3") else "imports"
        return f"https://bandit.readthedocs.io/en/latest/blacklists/blacklist_{kind}.html"
    return f"https://bandit.readthedocs.io/en/latest/plugins/{test_id.lower()}_{name}.html"


# --------------------------------------------------------------------------- complexity


def _segment_mi(lines: Sequence[str], start: int, end: int) -> float:
    from radon.metrics import h_visit, mi_compute
    from radon.raw import analyze

    code = textwrap.dedent("\n".join(lines[start - 1 : end]))
    try:
        raw = analyze(code)
        volume = h_visit(code).total.volume
        from radon.complexity import cc_visit

        blocks = cc_visit(code)
        cc = max((b.complexity for b in blocks), default=1)
    except (SyntaxError, ValueError, RecursionError):  # a class body alone may not parse
        return 100.0
    return round(float(mi_compute(volume, cc, raw.sloc, raw.comments)), 2)


def _complexity(
    f: SourceFile, options: Options
) -> tuple[list[FunctionMetrics], float | None, int | None, list[Finding], str | None]:
    from radon.complexity import cc_rank, cc_visit
    from radon.metrics import mi_visit
    from radon.raw import analyze

    code = f.content.removeprefix("\ufeff")  # a BOM is valid Python; radon's parser disagrees
    try:
        blocks = cc_visit(code)
        mi = round(float(mi_visit(code, True)), 2)
        sloc = int(analyze(code).sloc)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return [], None, None, [], f"complexity: the file does not parse ({type(exc).__name__})"
    lines = code.splitlines()
    metrics: list[FunctionMetrics] = []
    findings: list[Finding] = []
    for b in blocks:
        is_class = type(b).__name__ == "Class"
        kind = "class" if is_class else ("method" if b.is_method else "function")
        name = f"{b.classname}.{b.name}" if getattr(b, "classname", None) else b.name
        length = int(b.endline) - int(b.lineno) + 1
        m = FunctionMetrics(
            name=name,
            kind=kind,  # type: ignore[arg-type]
            start_line=int(b.lineno),
            end_line=int(b.endline),
            length=length,
            cyclomatic=int(b.complexity),
            rank=str(cc_rank(b.complexity)),
            maintainability=_segment_mi(lines, int(b.lineno), int(b.endline)),
        )
        metrics.append(m)
        if is_class:
            continue
        severity = complexity_severity(m.cyclomatic)
        if severity is not None and m.cyclomatic > options.max_complexity:
            findings.append(
                _cfinding(
                    f, m, "cyclomatic", severity,
                    f"`{name}` has cyclomatic complexity {m.cyclomatic} (rank {m.rank}); "
                    f"split it below {options.max_complexity + 1}",
                )
            )  # fmt: skip
        if length > options.max_function_lines:
            findings.append(
                _cfinding(
                    f, m, "length", "low",
                    f"`{name}` is {length} lines long (over {options.max_function_lines})",
                )
            )  # fmt: skip
    if mi < 10:
        findings.append(
            Finding(
                rule_id="maintainability",
                tool="complexity",
                message=f"maintainability index {mi:.1f} of 100 (radon rank C, below 10)",
                file=f.name,
                start_line=1,
                start_column=1,
                end_line=max(1, len(lines)),
                end_column=1,
                severity="medium",
                category="complexity",
                rule_name="low-maintainability-index",
                help_uri="https://radon.readthedocs.io/en/latest/intro.html#maintainability-index",
            )
        )
    return metrics, mi, sloc, findings, None


def _cfinding(
    f: SourceFile, m: FunctionMetrics, rule: str, severity: Severity, message: str
) -> Finding:
    return Finding(
        rule_id=rule,
        tool="complexity",
        message=message,
        file=f.name,
        start_line=m.start_line,
        start_column=1,
        end_line=m.start_line,  # the definition line: the fingerprint survives edits inside
        end_column=1,
        severity=severity,
        category="complexity",
        rule_name="high-cyclomatic-complexity" if rule == "cyclomatic" else "long-function",
        help_uri="https://radon.readthedocs.io/en/latest/intro.html#cyclomatic-complexity",
    )


# --------------------------------------------------------------------------- all of it


@dataclass
class _Work:
    findings: list[Finding] = field(default_factory=list)
    runs: list[ToolRun] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)  # file -> "tool: why"


def analyze(files: Sequence[SourceFile], options: Options | None = None) -> Analysis:
    """Every tool on every file it applies to. Never raises for what the code contains
    (a file that does not parse is a finding); raises :class:`AgentError` only when a
    tool cannot run at all."""
    options = options or Options()
    start = time.perf_counter()
    files = [_valid_text(f) for f in files]
    versions = tool_versions()
    python = [(i, f) for i, f in enumerate(files) if f.language == PYTHON]
    names = {f"f{i:04d}{_suffix(f.name)}": f.name for i, f in python}
    work = _Work()
    reports: dict[str, FileReport] = {}
    with tempfile.TemporaryDirectory(prefix="vots-agent-") as tmp:
        workdir = Path(tmp)
        for i, f in python:
            (workdir / f"f{i:04d}{_suffix(f.name)}").write_text(f.content, encoding="utf-8")
        if names and "ruff" in options.tools:
            t = time.perf_counter()
            found, error, failed = _ruff(names, workdir, options)
            work.findings += found
            work.runs.append(ToolRun("ruff", versions["ruff"], time.perf_counter() - t, error))
            for shown, why in failed.items():
                work.skipped.setdefault(shown, []).append(f"ruff: {why}")
        if names and "bandit" in options.tools:
            t = time.perf_counter()
            found, failed = _bandit(names, workdir, options)
            work.findings += found
            work.runs.append(ToolRun("bandit", versions["bandit"], time.perf_counter() - t))
            for shown, why in failed.items():
                work.skipped.setdefault(shown, []).append(f"bandit: {why}")
    t = time.perf_counter()
    for f in files:
        n_lines = f.content.count("\n") + (0 if f.content.endswith("\n") or not f.content else 1)
        if f.language != PYTHON:
            reports[f.name] = FileReport(
                f.name,
                f.language,
                n_lines,
                skipped=(f"ruff, bandit, complexity: {f.language} is not analysed",),
            )
            continue
        if "complexity" not in options.tools:
            reports[f.name] = FileReport(
                f.name, f.language, n_lines, skipped=tuple(work.skipped.get(f.name, ()))
            )
            continue
        metrics, mi, sloc, found, skipped = _complexity(f, options)
        work.findings += found
        notes = [*work.skipped.get(f.name, ()), *([skipped] if skipped else [])]
        reports[f.name] = FileReport(
            f.name, f.language, n_lines, sloc, mi, tuple(metrics), tuple(notes)
        )
    if python and "complexity" in options.tools:
        work.runs.append(ToolRun("complexity", versions["complexity"], time.perf_counter() - t))
    sources: dict[str, Sequence[str]] = {f.name: f.content.splitlines() for f in files}
    findings = fingerprint_all(work.findings, sources)
    return Analysis(
        findings=tuple(findings),
        files=tuple(reports[f.name] for f in files),
        tools=tuple(work.runs),
        seconds=time.perf_counter() - start,
        key=cache_key(files, options),
        options=options.as_dict(),
    )


def _valid_text(f: SourceFile) -> SourceFile:
    """Text the tools can read: a lone surrogate (not encodable as UTF-8) becomes U+FFFD."""
    try:
        f.content.encode("utf-8")
    except UnicodeEncodeError:
        fixed = f.content.encode("utf-8", "replace").decode("utf-8")
        return SourceFile(f.name, fixed, f.language)
    return f


def _suffix(name: str) -> str:
    return ".pyi" if name.endswith(".pyi") else ".py"
