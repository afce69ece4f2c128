"""``vots-agent analyze``: the same analysis from a terminal, CI or pre-commit."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema

from tests.conftest import BIN, KNOWN, clean_env
from tests.sarif_schema import load


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "vots-agent"), *args],
        cwd=cwd,
        env=clean_env(NO_COLOR="1", COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=300,
    )


def tree(tmp_path: Path) -> Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "run.py").write_text(KNOWN)
    (tmp_path / "pkg" / "clean.py").write_text('"""Clean."""\n\nX = 1\n')
    (tmp_path / ".venv" / "lib").mkdir(parents=True)
    (tmp_path / ".venv" / "lib" / "vendored.py").write_text("import os\n")
    return tmp_path


def test_table_names_each_finding_with_its_place(tmp_path: Path) -> None:
    p = run("analyze", "pkg", cwd=tree(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "B602" in p.stdout and "pkg/run.py:6:5" in p.stdout and "F401" in p.stdout
    assert "vendored" not in p.stdout  # hidden directories are not walked
    assert "findings in 2 files" in p.stderr


def test_json_is_the_apis_document(tmp_path: Path) -> None:
    p = run("analyze", "pkg/run.py", "--format", "json", cwd=tree(tmp_path))
    doc = json.loads(p.stdout)
    assert doc["version"] == "1" and doc["summary"]["max_severity"] == "critical"
    assert {f["rule_id"] for f in doc["findings"]} >= {"F401", "B006", "B602"}
    assert doc["context"] is None and doc["llm"] is None


def test_sarif_validates(tmp_path: Path) -> None:
    p = run("analyze", "pkg", "--format", "sarif", cwd=tree(tmp_path))
    log = json.loads(p.stdout)
    schema = load()
    assert not list(jsonschema.validators.validator_for(schema)(schema).iter_errors(log))


def test_fail_on_sets_the_exit_code(tmp_path: Path) -> None:
    root = tree(tmp_path)
    assert run("analyze", "pkg", "--fail-on", "critical", cwd=root).returncode == 1
    assert run("analyze", "pkg/clean.py", "--fail-on", "info", cwd=root).returncode == 0
    only_ruff = run("analyze", "pkg", "--tool", "ruff", "--fail-on", "high", cwd=root)
    assert only_ruff.returncode == 0 and "B602" not in only_ruff.stdout


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    root = tree(tmp_path)
    for args, word in (
        (("analyze", "missing.py"), "missing.py"),
        (("analyze", "pkg", "--fail-on", "severe"), "--fail-on"),
        (("analyze", "pkg", "--max-files", "1"), "--max-files"),
    ):
        p = run(*args, cwd=root)
        assert p.returncode == 2 and word in p.stderr and "Traceback" not in p.stderr, p.stderr
    (root / "locked.py").write_text("x = 1\n")
    (root / "locked.py").chmod(0)
    p = run("analyze", "locked.py", cwd=root)
    if p.returncode != 0:  # root reads it anyway
        assert p.returncode == 2 and "locked.py" in p.stderr and "Traceback" not in p.stderr
