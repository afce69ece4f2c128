"""Where the index lives: chunk records in SQLite, vectors in Chroma, a mirror in memory.

SQLite (``<index dir>/state.sqlite``, WAL) is the record of what was ingested:
every file's sha256 and every chunk with ``embedded`` 0 or 1. The lexical index
is rebuilt from it at start, so a chunk is searchable by words the moment its
row commits, and a chunk whose embedding failed or was interrupted (SIGKILL)
is still there, marked pending, and embedded by the next ingest.

Chroma (embedded ``PersistentClient`` under the index dir, or a server at
``CHROMA_URL``) holds the vectors, one collection per model so a model change
never mixes spaces. At start the store reconciles the two: ids Chroma lacks
become pending again, ids SQLite does not know are deleted from Chroma.

Searches read the vectors from an exact in-memory mirror (a float32 matrix,
1.5 KiB per chunk): at the sizes a code base has, one matrix product is both
exact and faster than a round trip to HNSW.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vots_rag.chunk import Chunk
from vots_rag.errors import NotReady, RagError

if TYPE_CHECKING:
    import numpy as np

SCHEMA = 1
CHROMA_BATCH = 1000
_BLOCK_ROWS = 1024  # rows per matrix-vector product in DenseMirror.search

_DDL = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files(
    path TEXT PRIMARY KEY, sha TEXT NOT NULL, size INTEGER NOT NULL, language TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks(
    id TEXT PRIMARY KEY, path TEXT NOT NULL, start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL, language TEXT NOT NULL, symbol TEXT, kind TEXT NOT NULL,
    header TEXT NOT NULL, text TEXT NOT NULL, embedded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS chunks_path ON chunks(path);
CREATE INDEX IF NOT EXISTS chunks_pending ON chunks(embedded) WHERE embedded = 0;
"""


@dataclass(frozen=True)
class FileRecord:
    path: str
    sha: str
    size: int
    language: str


class State:
    """The SQLite record of files and chunks."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_DDL)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES('schema', ?)", (str(SCHEMA),))
            elif row[0] != str(SCHEMA):
                raise RagError(
                    f"{path}: index schema {row[0]}, this vots-rag reads {SCHEMA}; "
                    "ingest into a new RAG_INDEX_DIR",
                    field="RAG_INDEX_DIR",
                )
        except sqlite3.DatabaseError as exc:
            raise RagError(f"{path}: {exc} (not a vots-rag index?)", field="RAG_INDEX_DIR") from exc
        except OSError as exc:
            raise RagError(f"{path.parent}: {exc.strerror}", field="RAG_INDEX_DIR") from exc
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES(?, ?)", (key, value))

    def files(self) -> dict[str, FileRecord]:
        rows = self._db.execute("SELECT path, sha, size, language FROM files")
        return {r[0]: FileRecord(*r) for r in rows}

    def chunks(self) -> Iterator[Chunk]:
        rows = self._db.execute(
            "SELECT id, path, start_line, end_line, language, symbol, kind, text, header FROM chunks"
        )
        for r in rows:
            yield Chunk(*r)

    def chunk_ids(self, path: str) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT id FROM chunks WHERE path=?", (path,))}

    def embedded_ids(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT id FROM chunks WHERE embedded=1")}

    def pending(self) -> list[Chunk]:
        rows = self._db.execute(
            "SELECT id, path, start_line, end_line, language, symbol, kind, text, header "
            "FROM chunks WHERE embedded=0 ORDER BY path, start_line"
        )
        return [Chunk(*r) for r in rows]

    def counts(self) -> tuple[int, int, int]:
        """(files, chunks, chunks pending embedding)."""
        files = self._db.execute("SELECT count(*) FROM files").fetchone()[0]
        chunks, pending = self._db.execute(
            "SELECT count(*), coalesce(sum(embedded = 0), 0) FROM chunks"
        ).fetchone()
        return int(files), int(chunks), int(pending)

    def replace_file(self, record: FileRecord, chunks: Sequence[Chunk], keep: set[str]) -> set[str]:
        """Make ``chunks`` the file's chunks in one transaction. Chunks whose id is in
        ``keep`` (unchanged text) keep their embedding; the ids removed are returned."""
        with self._lock:
            old = {
                r[0] for r in self._db.execute("SELECT id FROM chunks WHERE path=?", (record.path,))
            }
            new_ids = {c.id for c in chunks}
            gone = old - new_ids
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("DELETE FROM chunks WHERE id=?", ((i,) for i in gone))
                self._db.executemany(
                    "INSERT OR IGNORE INTO chunks(id, path, start_line, end_line, language, symbol, "
                    "kind, header, text, embedded) VALUES(?,?,?,?,?,?,?,?,?,0)",
                    (
                        (c.id, c.path, c.start_line, c.end_line, c.language, c.symbol, c.kind,
                         c.header, c.text)
                        for c in chunks
                        if c.id not in keep
                    ),
                )  # fmt: skip
                # A kept chunk may have moved lines within its file.
                self._db.executemany(
                    "UPDATE chunks SET start_line=?, end_line=? WHERE id=?",
                    ((c.start_line, c.end_line, c.id) for c in chunks if c.id in keep),
                )
                self._db.execute(
                    "INSERT OR REPLACE INTO files VALUES(?, ?, ?, ?)",
                    (record.path, record.sha, record.size, record.language),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return gone

    def remove_file(self, path: str) -> set[str]:
        with self._lock:
            ids = {r[0] for r in self._db.execute("SELECT id FROM chunks WHERE path=?", (path,))}
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM chunks WHERE path=?", (path,))
                self._db.execute("DELETE FROM files WHERE path=?", (path,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return ids

    def mark_embedded(self, ids: Iterable[str], value: int = 1) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "UPDATE chunks SET embedded=? WHERE id=?", ((value, i) for i in ids)
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def mark_all_pending(self) -> None:
        with self._lock:
            self._db.execute("UPDATE chunks SET embedded=0")


class DenseMirror:
    """Unit vectors by chunk id in one growing float32 matrix; exact cosine search."""

    def __init__(self, dim: int) -> None:
        import numpy as np

        self.dim = dim
        self._matrix = np.zeros((1024, dim), dtype=np.float32)
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self._rows

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        import numpy as np

        with self._lock:
            for chunk_id, vec in zip(ids, vectors, strict=True):
                row = self._rows.get(chunk_id)
                if row is None:
                    row = len(self._ids)
                    if row >= self._matrix.shape[0]:
                        grown = np.zeros((self._matrix.shape[0] * 2, self.dim), dtype=np.float32)
                        grown[:row] = self._matrix[:row]
                        self._matrix = grown
                    self._ids.append(chunk_id)
                    self._rows[chunk_id] = row
                self._matrix[row] = vec

    def remove(self, ids: Iterable[str]) -> None:
        with self._lock:
            for chunk_id in ids:
                row = self._rows.pop(chunk_id, None)
                if row is None:
                    continue
                last = len(self._ids) - 1
                if row != last:
                    moved = self._ids[last]
                    self._matrix[row] = self._matrix[last]
                    self._ids[row] = moved
                    self._rows[moved] = row
                self._ids.pop()

    def search(self, query: np.ndarray, limit: int) -> list[tuple[str, float]]:
        import numpy as np

        with self._lock:
            n = len(self._ids)
            if n == 0 or limit <= 0:
                return []
            # Row blocks, each a product OpenBLAS computes on the calling thread: one
            # product over every row is split across its thread pool, and waking those
            # threads costs more than the few MFLOP it saves, about 30x more on a busy
            # machine (measured, 5,144 x 384 on 2 contended CPUs: 7.8 ms vs 0.3 ms).
            scores = np.empty(n, dtype=np.float32)
            for start in range(0, n, _BLOCK_ROWS):
                stop = min(start + _BLOCK_ROWS, n)
                np.matmul(self._matrix[start:stop], query, out=scores[start:stop])
            top = np.argpartition(-scores, limit - 1)[:limit] if limit < n else np.arange(n)
            top = top[np.argsort(-scores[top], kind="stable")]
            return [(self._ids[i], float(scores[i])) for i in top]


def _slug(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9._-]+", "-", name).strip("-._")[:60] or "model"


class Vectors:
    """The Chroma collection holding this model's vectors."""

    def __init__(
        self, index_dir: Path, chroma_url: str | None, collection: str, model: str
    ) -> None:
        self.where = chroma_url or str(index_dir / "chroma")
        self.name = f"{_slug(collection)}-{_slug(model)}"
        try:
            import chromadb
            from chromadb.config import Settings as ChromaSettings
        except ImportError as exc:  # pragma: no cover - a broken install
            raise RagError(f"chromadb is not installed: {exc}") from exc
        settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
        try:
            if chroma_url:
                from urllib.parse import urlsplit

                url = urlsplit(chroma_url)
                self._client: Any = chromadb.HttpClient(
                    host=url.hostname or "localhost",
                    port=url.port or (443 if url.scheme == "https" else 8000),
                    ssl=url.scheme == "https",
                    settings=settings,
                )
                self._client.heartbeat()
            else:
                (index_dir / "chroma").mkdir(parents=True, exist_ok=True)
                self._client = chromadb.PersistentClient(
                    path=str(index_dir / "chroma"), settings=settings
                )
            self._collection = self._client.get_or_create_collection(
                self.name,
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"model": model},
            )
        except RagError:
            raise
        except Exception as exc:  # chromadb raises many types; all mean "not usable now"
            raise NotReady(f"Chroma at {self.where}: {type(exc).__name__}: {exc}") from exc

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise NotReady(f"Chroma at {self.where}: {what}: {type(exc).__name__}: {exc}") from exc

    def count(self) -> int:
        return int(self._call("count", self._collection.count))

    def heartbeat(self) -> None:
        self._call("heartbeat", self._client.heartbeat)

    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        for start in range(0, len(chunks), CHROMA_BATCH):
            part = chunks[start : start + CHROMA_BATCH]
            self._call(
                "upsert",
                self._collection.upsert,
                ids=[c.id for c in part],
                embeddings=vectors[start : start + CHROMA_BATCH],
                documents=[c.text for c in part],
                metadatas=[
                    {
                        "path": c.path,
                        "start_line": c.start_line,
                        "end_line": c.end_line,
                        "language": c.language,
                        "symbol": c.symbol or "",
                        "kind": c.kind,
                    }
                    for c in part
                ],
            )

    def delete(self, ids: Iterable[str]) -> None:
        batch = list(ids)
        for start in range(0, len(batch), CHROMA_BATCH):
            self._call("delete", self._collection.delete, ids=batch[start : start + CHROMA_BATCH])

    def all_vectors(self) -> Iterator[tuple[list[str], np.ndarray]]:
        import numpy as np

        offset = 0
        while True:
            got = self._call(
                "get",
                self._collection.get,
                include=["embeddings"],
                limit=CHROMA_BATCH,
                offset=offset,
            )
            ids = list(got["ids"])
            if not ids:
                return
            yield ids, np.asarray(got["embeddings"], dtype=np.float32)
            offset += len(ids)
