"""``vots-rag`` as a user runs it: exit codes, one-line errors, results on stdout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "vots-rag"


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAG_") and k != "CHROMA_URL"}
    return subprocess.run(
        [str(BIN), *args],
        capture_output=True,
        text=True,
        env={**base, "COLUMNS": "120", "NO_COLOR": "1", **(env or {})},
        cwd=cwd,
        timeout=900,
        check=False,
    )


def test_help_does_not_load_the_heavy_parts() -> None:
    code = (
        "import sys; from vots_rag.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('chromadb', 'onnxruntime', 'numpy', 'fastapi', 'tokenizers') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().endswith("[]")


@pytest.mark.slow
def test_ingest_query_and_json(tree: Path, tmp_path: Path) -> None:
    args = ("--root", str(tree), "--index", str(tmp_path / "ix"))
    first = run("ingest", ".", *args)
    assert first.returncode == 0, first.stderr
    assert "5 files (5 changed" in first.stdout and " 0 failed" in first.stdout
    again = run("ingest", ".", *args, "--format", "json")
    report = json.loads(again.stdout)
    assert report["unchanged"] == 5 and report["embedded"] == 0 and report["ok"]
    table = run("query", "format_bytes", *args, "-k", "3")
    assert (
        table.returncode == 0 and "ops/units.py" in table.stdout and "format_bytes" in table.stdout
    )
    body = json.loads(run("query", "format_bytes", *args, "--format", "json").stdout)
    assert body["results"][0]["symbol"] == "format_bytes"
    # Environment instead of flags.
    env = {"RAG_ROOT": str(tree), "RAG_INDEX_DIR": str(tmp_path / "ix"), "RAG_BACKEND": "lexical"}
    lexical = json.loads(run("query", "format_bytes", "--format", "json", env=env).stdout)
    assert lexical["backend"] == "lexical"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["stats", "--root", "/nonexistent"], {}, "RAG_ROOT: /nonexistent is not a directory"),
        (["stats"], {"RAG_BACKEND": "magic"}, "RAG_BACKEND: Input should be"),
        (
            ["stats"],
            {"CHROMA_URL": "ftp://x"},
            "CHROMA_URL: Value error, expected http(s)://host[:port]",
        ),
        (
            ["stats"],
            {"RAG_THREADS": "0"},
            "RAG_THREADS: Input should be greater than or equal to 1",
        ),
        (["stats"], {"RAG_EMBEDDINGS": "openai"}, "RAG_EMBEDDINGS=openai needs RAG_EMBEDDINGS_URL"),
        (
            ["stats", "--model-dir", "/nonexistent"],
            {},
            "RAG_MODEL_DIR: /nonexistent is not a directory",
        ),
        (["query", "x", "-k", "0"], {}, "Invalid value for '-k'"),
    ],
)
def test_bad_settings_are_one_line_and_exit_2(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    proc = run(*args, env={"RAG_INDEX_DIR": str(tmp_path / "ix"), **env}, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "ix").exists(), "nothing written on bad settings"


def test_a_tampered_model_file_is_refused(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "tokenizer.json").write_text("{}")
    proc = run(
        "stats",
        "--model-dir",
        str(model_dir),
        env={"RAG_INDEX_DIR": str(tmp_path / "ix")},
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "does not match the pinned" in proc.stderr and "tokenizer.json" in proc.stderr


def test_an_index_that_is_not_ours_is_named(tmp_path: Path) -> None:
    (tmp_path / "ix").mkdir()
    (tmp_path / "ix" / "state.sqlite").write_bytes(b"this is not sqlite" * 100)
    proc = run(
        "stats", "--backend", "lexical", env={"RAG_INDEX_DIR": str(tmp_path / "ix")}, cwd=tmp_path
    )
    assert proc.returncode == 2 and "state.sqlite" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to nobody with setpriv")
def test_a_root_behind_a_private_directory_is_one_line(tmp_path: Path) -> None:
    private = Path(tempfile.mkdtemp(prefix="vots-rag-private-", dir="/tmp"))
    try:
        (private / "code").mkdir()
        private.chmod(0o700)  # owned by root: nobody cannot look inside
        proc = subprocess.run(
            [
                "setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                str(BIN),
                "stats",
                "--backend",
                "lexical",
                "--root",
                str(private / "code"),
                "--index",
                "/tmp/never-created",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env={"PATH": os.environ["PATH"], "HOME": "/tmp"},
        )
    finally:
        shutil.rmtree(private, ignore_errors=True)
    assert proc.returncode == 2, proc.stderr
    assert "Permission denied" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
