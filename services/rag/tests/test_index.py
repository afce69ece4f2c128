"""The index with the real model and embedded Chroma: ingest, search, change, delete, reopen."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from vots_rag.errors import RagError
from vots_rag.index import Index
from vots_rag.model import LocalEmbedder

NOBODY = pwd.getpwnam("nobody").pw_uid
NOGROUP = pwd.getpwnam("nobody").pw_gid


def test_ingest_then_a_known_symbol_comes_first(index: Index) -> None:
    report = index.ingest(".")
    assert report.ok and report.failed == 0
    assert report.files == 5 and report.changed == 5  # 3 modules, README, .gitignore
    assert report.embedded == report.chunks > 10
    assert report.skipped == {"ignored": 1, "binary": 1, "generated": 1}
    for backend in ("lexical", "dense", "hybrid"):
        page = index.search("format_bytes", k=5, backend=backend)  # type: ignore[arg-type]
        if backend != "dense":
            assert (page.hits[0].chunk.path, page.hits[0].chunk.symbol) == (
                "ops/units.py",
                "format_bytes",
            )
    first = index.search("format_bytes").hits[0].chunk
    assert first.start_line >= 1 and "def format_bytes" in first.text


def test_unchanged_reingest_does_no_embedding_work(ingested: tuple[Index, Path]) -> None:
    index, _ = ingested
    before = index.counters.chunks_embedded
    again = index.ingest(".")
    assert again.ok
    assert again.unchanged == 5 and again.changed == 0 and again.chunks == 0 and again.embedded == 0
    assert index.counters.chunks_embedded == before
    assert index.counters.files_unchanged == 5


def test_a_changed_file_replaces_exactly_its_chunks(ingested: tuple[Index, Path]) -> None:
    index, tree = ingested
    stats = index.stats()
    units = tree / "ops" / "units.py"
    text = units.read_text()
    units.write_text(text.replace("def format_bytes(", "def render_byte_count("))
    report = index.ingest("ops/units.py")
    assert report.changed == 1 and report.ok
    # One function's text changed: a handful of chunks re-embedded, not the file's all.
    assert 1 <= report.embedded <= 3
    assert index.stats().chunks == stats.chunks
    hits = index.search("render_byte_count").hits
    assert hits[0].chunk.symbol == "render_byte_count"
    assert not any(
        h.chunk.symbol == "format_bytes" for h in index.search("format_bytes", k=50).hits
    )


def test_lexical_sees_a_change_before_embeddings(ingested: tuple[Index, Path]) -> None:
    index, tree = ingested
    seen: list[str | None] = []

    def during(progress: object) -> None:
        if getattr(progress, "phase", "") == "chunk":
            hits = index.search("brand_new_helper", k=3, backend="lexical").hits
            seen.append(hits[0].chunk.symbol if hits else None)

    (tree / "ops" / "extra.py").write_text("def brand_new_helper():\n    return 42\n")
    index.ingest(".", during)
    assert seen and seen[-1] == "brand_new_helper"


def test_a_deleted_file_loses_its_chunks(ingested: tuple[Index, Path]) -> None:
    index, tree = ingested
    (tree / "ops" / "proc.py").unlink()
    report = index.ingest(".")
    assert report.deleted == 1
    assert all(
        h.chunk.path != "ops/proc.py" for h in index.search("process group deadline", k=50).hits
    )
    assert index.stats().files == 4
    # Ingesting a path that no longer exists removes it too.
    (tree / "ops" / "units.py").unlink()
    assert index.ingest("ops/units.py").deleted == 1
    with pytest.raises(RagError) as err:
        index.ingest("never/was.py")
    assert err.value.status == 404 and err.value.field == "path"


def test_pagination_is_disjoint_and_ordered(ingested: tuple[Index, Path]) -> None:
    index, _ = ingested
    one = index.search("sample rates cpu", k=3, page=1)
    two = index.search("sample rates cpu", k=3, page=2)
    assert one.has_more
    ids = [h.chunk.id for h in one.hits + two.hits]
    assert len(ids) == len(set(ids)) == 6
    scores = [h.score for h in one.hits + two.hits]
    assert scores == sorted(scores, reverse=True)


def test_bad_queries_name_their_field(index: Index) -> None:
    for kwargs, field in (({"query": ""}, "q"), ({"query": "x" * 1001}, "q"), ({"query": "a", "k": 0}, "k"),
                          ({"query": "a", "page": 1000}, "page")):  # fmt: skip
        with pytest.raises(RagError) as err:
            index.search(**kwargs)  # type: ignore[arg-type]
        assert err.value.field == field and 400 <= err.value.status < 500


def test_reopening_loads_everything_without_embedding(
    tree: Path, tmp_path: Path, embedder: LocalEmbedder
) -> None:
    first = Index(tree, tmp_path / "ix", embedder=embedder)
    first.ingest(".")
    expected = [h.chunk.id for h in first.search("container cpu percent").hits]
    first.close()
    second = Index(tree, tmp_path / "ix", embedder=embedder)
    try:
        assert second.stats().embedded == second.stats().chunks
        assert [h.chunk.id for h in second.search("container cpu percent").hits] == expected
        report = second.ingest(".")
        assert report.embedded == 0 and report.unchanged == 5
    finally:
        second.close()


def test_lexical_backend_runs_without_a_model(tree: Path, tmp_path: Path) -> None:
    ix = Index(tree, tmp_path / "lex", embedder=None, backend="lexical")
    try:
        report = ix.ingest(".")
        assert report.ok and report.embedded == 0 and not report.embedding
        assert ix.search("format_bytes").hits[0].chunk.symbol == "format_bytes"
        with pytest.raises(RagError) as err:
            ix.search("x", backend="dense")
        assert err.value.field == "backend"
    finally:
        ix.close()


def test_an_unreadable_file_keeps_its_chunks(
    ingested: tuple[Index, Path], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A permission problem is not a deletion. The ingest runs as ``nobody`` (through
    setpriv when the tests run as root, where nothing is unreadable), for real."""
    index, source = ingested
    index.close()
    # A directory nobody can reach (pytest's own tmp root is private to its user).
    base = Path(tempfile.mkdtemp(prefix="vots-rag-perm-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
    shutil.copytree(source, base / "code")
    shutil.copytree(tmp_path / "index", base / "index")
    tree = base / "code"
    if os.geteuid() == 0:
        for path in [base, *base.rglob("*")]:
            os.chown(path, NOBODY, NOGROUP)
    target = tree / "ops" / "units.py"
    target.chmod(0)
    if os.geteuid() == 0:
        os.chown(target, 0, 0)
    argv = [str(Path(sys.executable).parent / "vots-rag"), "ingest", ".", "--root", str(tree),
            "--index", str(base / "index"), "--format", "json"]  # fmt: skip
    if os.geteuid() == 0:
        argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOGROUP}", "--clear-groups", *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    target.chmod(0o644)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["skipped"].get("unreadable") == 1 and report["deleted"] == 0
    reopened = Index(tree, base / "index", embedder=None, backend="lexical")
    try:
        assert reopened.search("format_bytes").hits[0].chunk.path == "ops/units.py"
    finally:
        reopened.close()
