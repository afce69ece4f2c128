"""The analysis library, without HTTP: real ruff, bandit and radon on real code."""

from __future__ import annotations

from pathlib import Path

import pytest
from vots_agent.analysis import Options, SourceFile, analyze, cache_key
from vots_agent.codec import analysis_dict, analysis_from_dict
from vots_agent.findings import BANDIT_SEVERITY, ruff_rating

from tests.conftest import KNOWN, REPO


def by_rule(a: object) -> dict[str, object]:
    return {f.rule_id: f for f in a.findings}  # type: ignore[attr-defined]


def test_known_ruff_and_bandit_findings_normalised_with_lines() -> None:
    a = analyze([SourceFile("pkg/run.py", KNOWN)])
    rules = by_rule(a)
    f401, b006, b602 = rules["F401"], rules["B006"], rules["B602"]
    assert (f401.tool, f401.file, f401.start_line, f401.start_column) == (
        "ruff",
        "pkg/run.py",
        1,
        8,
    )
    assert f401.severity == "low" and f401.category == "style"
    assert f401.fix is not None and f401.fix.applicability == "safe"
    assert (b006.tool, b006.start_line, b006.severity, b006.category) == (
        "ruff",
        5,
        "medium",
        "bug-risk",
    )
    assert (b602.tool, b602.start_line, b602.end_line) == ("bandit", 6, 6)
    # bandit rates it HIGH severity, HIGH confidence: the top of our scale.
    assert b602.severity == "critical" and b602.category == "security" and b602.cwe == 78
    assert b602.help_uri and "b602" in b602.help_uri
    assert {t.name for t in a.tools} == {"ruff", "bandit", "complexity"}
    assert all(t.error is None for t in a.tools)
    assert all(len(f.fingerprint) == 32 for f in a.findings)


def test_severity_scale_is_explicit_for_every_bandit_pair_and_ruff_family() -> None:
    levels = ("LOW", "MEDIUM", "HIGH")
    assert set(BANDIT_SEVERITY) == {(s, c) for s in levels for c in levels}
    assert BANDIT_SEVERITY["HIGH", "HIGH"] == "critical"
    assert BANDIT_SEVERITY["LOW", "LOW"] == "info"
    assert ruff_rating("F821") == ("high", "bug-risk")
    assert ruff_rating("F401") == ("low", "style")
    assert ruff_rating("PERF401") == ("low", "performance")
    assert ruff_rating("invalid-syntax") == ("high", "bug-risk")


def test_fingerprint_survives_code_moving_and_tells_twins_apart() -> None:
    before = by_rule(analyze([SourceFile("m.py", KNOWN)]))
    moved = "# a comment\n\n\n" + KNOWN
    after = by_rule(analyze([SourceFile("m.py", moved)]))
    assert after["B602"].start_line == before["B602"].start_line + 3
    assert after["B602"].fingerprint == before["B602"].fingerprint
    assert after["F401"].fingerprint == before["F401"].fingerprint
    twice = KNOWN + "\n\ndef again(cmd):\n    subprocess.call(cmd, shell=True)\n"
    b602s = [f for f in analyze([SourceFile("m.py", twice)]).findings if f.rule_id == "B602"]
    assert len(b602s) == 2 and b602s[0].fingerprint != b602s[1].fingerprint


def test_complexity_per_function_with_length_and_maintainability() -> None:
    branches = "\n".join(f"    if x == {i}:\n        return {i}" for i in range(24))
    code = f"def tangled(x):\n{branches}\n    return -1\n\n\nclass K:\n    def small(self):\n        return 1\n"
    a = analyze([SourceFile("c.py", code)])
    report = a.files[0]
    fns = {m.name: m for m in report.functions}
    assert fns["tangled"].cyclomatic == 25 and fns["tangled"].rank == "D"
    assert fns["tangled"].length == 50 and fns["tangled"].start_line == 1
    assert 0 <= fns["tangled"].maintainability <= 100
    assert fns["K.small"].kind == "method" and fns["K.small"].cyclomatic == 1
    assert report.maintainability is not None and report.sloc
    finding = next(f for f in a.findings if f.rule_id == "cyclomatic")
    assert finding.severity == "medium" and "tangled" in finding.message and finding.start_line == 1


def test_a_file_that_does_not_parse_is_a_finding_not_a_failure() -> None:
    a = analyze([SourceFile("bad.py", "def f(:\n    pass\n")])
    syntax = [f for f in a.findings if f.rule_id == "invalid-syntax"]
    assert syntax and syntax[0].severity == "high" and syntax[0].start_line == 1
    assert any("does not parse" in s for s in a.files[0].skipped)
    assert all(t.error is None for t in a.tools)


def test_submitted_code_is_never_run_or_imported(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('x')\nraise SystemExit(3)\n"
    setup = f"open({str(marker)!r}, 'w').write('x')\n"
    analyze(
        [
            SourceFile("evil.py", code),
            SourceFile("setup.py", setup),
            SourceFile("conftest.py", setup),
        ]
    )
    assert not marker.exists()


def test_names_are_display_only(tmp_path: Path) -> None:
    """A submitted name is never a path the analysers open."""
    a = analyze([SourceFile("../../etc/passwd.py", KNOWN)])
    assert {f.file for f in a.findings} == {"../../etc/passwd.py"}
    assert "B602" in by_rule(a)


def test_suppressions_in_the_payload_do_not_configure_the_tools() -> None:
    quiet = KNOWN.replace("import os", "import os  # noqa").replace(
        "shell=True)", "shell=True)  # nosec"
    )
    default = by_rule(analyze([SourceFile("q.py", quiet)]))
    assert "F401" in default and "B602" in default
    honoured = by_rule(analyze([SourceFile("q.py", quiet)], Options(respect_suppressions=True)))
    assert "F401" not in honoured and "B602" not in honoured


def test_other_languages_are_reported_as_skipped() -> None:
    a = analyze([SourceFile("ui.ts", "export const x = 1;\n", "typescript")])
    assert a.findings == () and a.tools == ()
    assert a.files[0].language == "typescript" and "not analysed" in a.files[0].skipped[0]


def test_only_the_tools_asked_for_run() -> None:
    a = analyze([SourceFile("k.py", KNOWN)], Options(tools=("bandit",)))
    assert {f.tool for f in a.findings} == {"bandit"} and [t.name for t in a.tools] == ["bandit"]


def test_cache_key_covers_content_names_and_options() -> None:
    files = [SourceFile("k.py", KNOWN)]
    key = cache_key(files, Options())
    assert key == cache_key([SourceFile("k.py", KNOWN)], Options())
    assert key != cache_key([SourceFile("k.py", KNOWN + "\n")], Options())
    assert key != cache_key([SourceFile("j.py", KNOWN)], Options())
    assert key != cache_key(files, Options(max_complexity=5))


def test_codec_round_trips_and_refuses_garbage() -> None:
    a = analyze([SourceFile("k.py", KNOWN)])
    assert analysis_from_dict(analysis_dict(a)) == a
    with pytest.raises((KeyError, TypeError, ValueError)):
        analysis_from_dict({"findings": [{"rule_id": 1}]})


def test_this_repository_analyses_cleanly_enough() -> None:
    """Real code at scale: every file of ops/ through every tool, no tool errors."""
    files = [
        SourceFile(str(p.relative_to(REPO)), p.read_text())
        for p in sorted((REPO / "ops").rglob("*.py"))
    ]
    a = analyze(files)
    assert len(a.files) == len(files) > 50
    assert all(t.error is None for t in a.tools)
    assert not [f for f in a.findings if f.rule_id == "invalid-syntax"]


def test_a_file_that_breaks_a_tool_costs_only_its_own_findings() -> None:
    """A 50,000-term expression overflows ruff's stack, bandit's and radon's recursion:
    the other files keep every finding, and the broken one says what did not run."""
    hostile = {
        "long.py": "x = " + "+".join(["1"] * 50_000) + "\n",
        "deep.py": "x = " + "(" * 5000 + "1" + ")" * 5000 + "\n",
        "bom.py": "\ufeffimport os\n",
        "lone.py": 'x = "\ud800"\nimport os\n',
    }
    a = analyze([SourceFile(n, c) for n, c in hostile.items()] + [SourceFile("ok.py", KNOWN)])
    assert all(t.error is None for t in a.tools)
    ok = {f.rule_id for f in a.findings if f.file == "ok.py"}
    assert {"F401", "B006", "B602"} <= ok
    assert "F401" in {f.rule_id for f in a.findings if f.file == "bom.py"}
    assert "F401" in {f.rule_id for f in a.findings if f.file == "lone.py"}
    long_notes = " ".join(next(r for r in a.files if r.file == "long.py").skipped)
    assert "ruff:" in long_notes and "complexity:" in long_notes
