"""A Chroma server process (``chroma run``) as the vector store, and losing it mid-flight."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from vots_rag.errors import NotReady
from vots_rag.index import Index
from vots_rag.model import LocalEmbedder

from tests.conftest import ChromaServer

pytestmark = pytest.mark.slow


def test_ingest_and_search_through_a_chroma_server(
    tree: Path, tmp_path: Path, embedder: LocalEmbedder, chroma_server: ChromaServer
) -> None:
    ix = Index(tree, tmp_path / "ix", embedder=embedder, chroma_url=chroma_server.url)
    try:
        report = ix.ingest(".")
        assert report.ok and report.embedded == report.chunks
        assert ix.vectors is not None and ix.vectors.count() == report.chunks
        assert ix.search("format_bytes").hits[0].chunk.symbol == "format_bytes"
    finally:
        ix.close()
    # A second process opening the same index reads the vectors back from the server.
    again = Index(tree, tmp_path / "ix", embedder=embedder, chroma_url=chroma_server.url)
    try:
        assert again.stats().embedded == again.stats().chunks
        assert again.ingest(".").embedded == 0
    finally:
        again.close()


def test_a_lost_chroma_fails_chunks_loudly_and_the_next_ingest_retries_them(
    tree: Path, tmp_path: Path, embedder: LocalEmbedder, chroma_server: ChromaServer
) -> None:
    ix = Index(tree, tmp_path / "ix", embedder=embedder, chroma_url=chroma_server.url)
    try:
        ix.ingest(".")
        (tree / "ops" / "late.py").write_text(
            "def written_while_chroma_was_down():\n    return 1\n"
        )
        chroma_server.kill()
        report = ix.ingest(".")
        assert not report.ok and report.failed >= 1 and report.embedded == 0
        assert any("Chroma" in e for e in report.errors)
        # Words still find it; the chunk waits for its vector.
        assert (
            ix.search("written_while_chroma_was_down", backend="lexical").hits[0].chunk.path
            == "ops/late.py"
        )
        assert ix.stats().pending == report.failed
        with pytest.raises(NotReady):
            ix.check()
        chroma_server.start()  # same data directory, same port
        retry = ix.ingest(".")
        assert retry.ok and retry.embedded == report.failed and retry.unchanged == 6
        assert ix.stats().pending == 0
        dense = ix.search("written_while_chroma_was_down", backend="dense", k=3).hits
        assert "ops/late.py" in [h.chunk.path for h in dense]
    finally:
        ix.close()


def test_an_ingest_killed_while_embedding_resumes(
    tree: Path, tmp_path: Path, embedder: LocalEmbedder
) -> None:
    """SIGKILL in the middle of embedding: chunks already written are pending when the
    index reopens, and the next ingest embeds exactly those, nothing twice."""
    index_dir = tmp_path / "ix"
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "vots-rag"),
            "ingest",
            ".",
            "--root",
            str(tree),
            "--index",
            str(index_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    db_path = index_dir / "state.sqlite"
    try:
        while proc.poll() is None:
            if db_path.exists():
                with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
                    try:
                        files = db.execute("SELECT count(*) FROM files").fetchone()[0]
                        pending = db.execute(
                            "SELECT count(*) FROM chunks WHERE embedded = 0"
                        ).fetchone()[0]
                    except sqlite3.OperationalError:  # tables not created yet
                        files = pending = 0
                if files == 5 and pending > 0:  # every file chunked, embedding under way
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the ingest ended before it could be killed"
    ix = Index(tree, index_dir, embedder=embedder)
    try:
        stats = ix.stats()
        assert stats.files == 5 and 0 < stats.pending <= stats.chunks
        already = stats.chunks - stats.pending
        report = ix.ingest(".")
        assert report.ok and report.unchanged == 5 and report.embedded == stats.pending
        assert ix.stats().pending == 0 and ix.stats().embedded == stats.chunks
        assert ix.vectors is not None and ix.vectors.count() == already + report.embedded
    finally:
        ix.close()
