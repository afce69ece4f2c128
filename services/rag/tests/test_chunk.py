"""Chunking along Python's syntax, windows elsewhere, and never past the model's window."""

from __future__ import annotations

import ast
import inspect
import itertools
import json
import sysconfig
from pathlib import Path

import pytest
from vots_rag.chunk import Chunker
from vots_rag.model import MAX_TOKENS, LocalEmbedder

SOURCE = '''"""Module docstring."""

import os

LIMIT = 3


def top(a, b):
    """Adds."""
    return a + b


class Store:
    """Keeps things."""

    size = 10

    def put(self, key):
        return key

    # A comment that belongs to get.
    @property
    def get(self):
        return self.size


def tail():
    pass
'''


@pytest.fixture(scope="module")
def chunker(embedder: LocalEmbedder) -> Chunker:
    return Chunker(embedder.count_tokens, MAX_TOKENS)


def test_python_is_cut_along_its_syntax(chunker: Chunker) -> None:
    chunks = chunker.chunk("pkg/store.py", SOURCE, "python")
    got = [(c.symbol, c.kind, c.start_line, c.end_line) for c in chunks]
    assert got == [
        (None, "module", 1, 7),
        ("top", "function", 8, 10),
        ("Store", "class", 13, 17),
        ("Store.put", "method", 18, 19),
        ("Store.get", "method", 21, 24),  # with the comment above it
        ("tail", "function", 27, 28),
    ]
    put = next(c for c in chunks if c.symbol == "Store.put")
    assert put.header.splitlines()[:2] == ["# pkg/store.py", "class Store:"]
    assert put.text == "    def put(self, key):\n        return key"
    lines = SOURCE.splitlines()
    for c in chunks:  # every chunk is exactly its lines of the file
        assert c.text == "\n".join(lines[c.start_line - 1 : c.end_line])


def test_a_syntax_error_falls_back_to_line_windows(chunker: Chunker) -> None:
    chunks = chunker.chunk("broken.py", "def f(:\n    pass\n", "python")
    assert [c.kind for c in chunks] == ["window"]


def test_text_windows_overlap_and_cover_every_line(chunker: Chunker) -> None:
    text = "\n".join(
        f"line {i} of the guide, with a few words about caching" for i in range(1, 201)
    )
    chunks = chunker.chunk("docs/guide.md", text, "markdown")
    assert len(chunks) > 3
    covered: set[int] = set()
    for a, b in itertools.pairwise(chunks):
        assert b.start_line <= a.end_line, "windows overlap"
        assert b.start_line > a.start_line, "and move forward"
    for c in chunks:
        covered.update(range(c.start_line, c.end_line + 1))
    assert covered == set(range(1, 201))


def test_ids_of_untouched_functions_survive_an_edit(chunker: Chunker) -> None:
    before = {c.symbol: c.id for c in chunker.chunk("m.py", SOURCE, "python")}
    edited = SOURCE.replace("return a + b", "return a - b")
    after = {c.symbol: c.id for c in chunker.chunk("m.py", edited, "python")}
    assert before["top"] != after["top"]
    assert {k: v for k, v in before.items() if k != "top"} == {
        k: v for k, v in after.items() if k != "top"
    }


def _stdlib_functions() -> list[tuple[str, str]]:
    """(module path, function source) for every top-level function of a spread of stdlib modules."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for name in ("inspect.py", "argparse.py", "typing.py", "subprocess.py", "email/_header_value_parser.py",
                 "json/decoder.py", "tarfile.py", "pathlib.py", "asyncio/base_events.py", "logging/__init__.py"):  # fmt: skip
        path = stdlib / name
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((name, "\n".join(lines[node.lineno - 1 : node.end_lineno])))
    return out


def test_no_chunk_exceeds_the_model_window_on_ordinary_code(
    chunker: Chunker, embedder: LocalEmbedder
) -> None:
    functions = _stdlib_functions()
    # The problem is real: many ordinary functions are longer than the window.
    too_long = [f for f in functions if embedder.count_tokens([f[1]])[0] > MAX_TOKENS]
    assert len(too_long) / len(functions) > 0.1
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in {n for n, _ in functions}:
        text = (stdlib / name).read_text()
        chunks = chunker.chunk(f"lib/{name}", text, "python")
        counts = embedder.count_tokens([c.document for c in chunks])
        assert max(counts) <= MAX_TOKENS, name
        # Nothing is lost: every non-blank line of the file is in some chunk.
        covered = set()
        for c in chunks:
            covered.update(range(c.start_line, c.end_line + 1))
        blank = {i for i, line in enumerate(text.splitlines(), 1) if not line.strip()}
        assert set(range(1, len(text.splitlines()) + 1)) - blank <= covered, name


def test_token_counts_add_up_line_by_line(embedder: LocalEmbedder) -> None:
    """The chunker sums per-line counts; that is exact for this WordPiece tokenizer."""
    text = inspect.getsource(json.JSONEncoder)
    lines = text.splitlines()
    per_line = sum(c - 2 for c in embedder.count_tokens(lines))
    assert embedder.count_tokens([text])[0] - 2 == per_line


def test_one_very_long_line_is_split_not_dropped(chunker: Chunker, embedder: LocalEmbedder) -> None:
    words = " ".join(f"word{i}" for i in range(2000))
    chunks = chunker.chunk("data.txt", words, "text")
    assert len(chunks) > 1
    assert "".join(c.text for c in chunks) == words
    assert max(embedder.count_tokens([c.document for c in chunks])) <= MAX_TOKENS
