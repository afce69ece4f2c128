"""The OpenAI-compatible embeddings backend against a real HTTP endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from vots_rag.index import Index
from vots_rag.settings import load_settings, open_index

from tests.conftest import HERE, free_port, stop, wait_http

pytestmark = pytest.mark.slow
KEY = "sk-test-not-a-secret"


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "embeddings_server.py"), str(port), KEY],
        cwd=HERE.parent,
        env={**os.environ, "PYTHONPATH": str(HERE.parent)},
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/state", proc=proc)
        yield url
    finally:
        stop(proc)


def _open(endpoint: str, tree: Path, tmp_path: Path, model: str = "m", **extra: object) -> Index:
    """An index on the endpoint, through the settings a user would give."""
    settings = load_settings(
        root=tree,
        index_dir=tmp_path / "ix",
        embeddings="openai",
        embeddings_url=endpoint,
        embeddings_model=model,
        **extra,
    )
    index: Index = open_index(settings)
    return index


def test_ingest_and_search_through_the_endpoint(endpoint: str, tree: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    index = _open(endpoint, tree, tmp_path, "all-minilm", embeddings_key_file=key_file)
    try:
        report = index.ingest(".")
        assert report.ok and report.embedded == report.chunks
        served = httpx.get(endpoint + "/state").json()
        assert served["inputs"] == report.chunks  # every vector came over HTTP
        assert index.search("format_bytes").hits[0].chunk.symbol == "format_bytes"
        dense = index.search("bytes in human units", backend="dense").hits
        assert dense and dense[0].chunk.path == "ops/units.py"
        # The collection is per model: the local model's vectors never mix with these.
        assert index.vectors is not None and "openai-all-minilm" in index.vectors.name
    finally:
        index.close()


def test_an_endpoint_that_keeps_failing_leaves_chunks_pending(
    endpoint: str, tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_EMBEDDINGS_KEY", KEY)
    index = _open(endpoint, tree, tmp_path)
    try:
        httpx.post(endpoint + "/fail", json={"count": 1000})
        report = index.ingest(".")
        assert not report.ok and report.embedded == 0 and report.failed == report.chunks
        assert "HTTP 503" in report.errors[0]
        httpx.post(endpoint + "/fail", json={"count": 1})  # one more 503, then it recovers: retried
        retry = index.ingest(".")
        assert retry.ok and retry.embedded == report.failed
    finally:
        index.close()


def test_a_wrong_key_is_not_retried_and_says_so(endpoint: str, tree: Path, tmp_path: Path) -> None:
    index = _open(endpoint, tree, tmp_path)
    try:
        report = index.ingest(".")
        assert report.failed == report.chunks and "HTTP 401" in report.errors[0]
        assert httpx.get(endpoint + "/state").json()["calls"] == 0  # refused before counting
    finally:
        index.close()
