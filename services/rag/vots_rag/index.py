"""The index: ingest a tree incrementally, search it lexically, densely or both.

:class:`Index` is the library the API and the CLI share. Ingest is two
phases per run: first every changed file's chunks replace its old ones in
SQLite and the lexical index (searchable at once), then every chunk still
pending is embedded in batches and written to Chroma. A file whose sha256 is
unchanged costs one read and one hash; a changed file re-embeds only chunks
whose text changed; a file gone from the tree (deleted, now ignored, now too
big) loses its chunks. A batch the model or Chroma fails stays pending and is
counted as failed: the run never reports success over it, and the next run
retries it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vots_rag.chunk import Chunk, Chunker
from vots_rag.errors import Busy, NotReady, RagError
from vots_rag.fusion import Weights, fuse, query_kind, reciprocal_rank
from vots_rag.lexical import Lexical
from vots_rag.model import Embedder
from vots_rag.store import DenseMirror, FileRecord, State, Vectors
from vots_rag.walk import WalkStats, inside, walk

Backend = Literal["lexical", "dense", "hybrid"]
BACKENDS: tuple[Backend, ...] = ("lexical", "dense", "hybrid")
EMBED_BATCH = 64
MAX_K = 50
MAX_PAGE = 100
MAX_QUERY_CHARS = 1000


@dataclass
class IngestReport:
    """What one ingest did. ``failed`` chunks are in the lexical index but not embedded."""

    path: str
    files: int = 0  # files walked and kept (indexable)
    changed: int = 0  # new or changed files (re-chunked)
    unchanged: int = 0
    deleted: int = 0
    chunks: int = 0  # chunks written by this run (new text)
    embedded: int = 0
    failed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    lexical_seconds: float = 0.0
    embed_seconds: float = 0.0
    embedding: bool = True  # False when the backend is lexical: nothing is embedded

    @property
    def ok(self) -> bool:
        return self.failed == 0


@dataclass(frozen=True)
class Progress:
    phase: str  # "chunk" | "embed"
    files: int
    chunks: int
    embedded: int
    failed: int
    pending: int


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float
    lexical: float | None
    dense: float | None


@dataclass(frozen=True)
class SearchPage:
    query: str
    backend: Backend
    kind: str
    k: int
    page: int
    hits: list[Hit]
    has_more: bool
    seconds: float


@dataclass(frozen=True)
class IndexStats:
    files: int
    chunks: int
    pending: int
    embedded: int
    backend: Backend
    model: str | None
    chroma: str | None


@dataclass
class Counters:
    """Totals since start, read by ``/metrics`` (the library never imports prometheus)."""

    ingests: int = 0
    ingest_failures: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    files_deleted: int = 0
    chunks_written: int = 0
    chunks_embedded: int = 0
    embed_failures: int = 0
    embed_seconds: float = 0.0
    embed_batches: int = 0


def _under(path: str, prefix: str) -> bool:
    return not prefix or path == prefix or path.startswith(prefix + "/")


class Index:
    """Chunks of the files under ``root``, searchable by words and by meaning."""

    def __init__(
        self,
        root: Path,
        index_dir: Path,
        *,
        embedder: Embedder | None,
        chunk_counter: Callable[[Sequence[str]], list[int]] | None = None,
        chroma_url: str | None = None,
        collection: str = "vots-code",
        backend: Backend = "hybrid",
        max_file_bytes: int = 1_000_000,
        max_files: int = 50_000,
    ) -> None:
        if backend != "lexical" and embedder is None:
            raise RagError(f"backend {backend} needs an embedding model", field="RAG_BACKEND")
        self.root = root.resolve()
        if not self.root.is_dir():
            raise RagError(f"{root}: not a directory", field="RAG_ROOT")
        self.index_dir = index_dir
        self.backend: Backend = backend
        self.embedder = embedder if backend != "lexical" else None
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.counters = Counters()
        counter = chunk_counter or (embedder.count_tokens if embedder else None)
        if counter is None:
            counter = _estimate_tokens
        max_tokens = embedder.max_tokens if embedder else 256
        self.chunker = Chunker(counter, max_tokens)
        self.state = State(index_dir / "state.sqlite")
        self.lexical = Lexical()
        self._chunks: dict[str, Chunk] = {}
        self._lock = threading.RLock()
        self._ingesting = threading.Lock()
        self.vectors: Vectors | None = None
        self.mirror: DenseMirror | None = None
        for chunk in self.state.chunks():
            self._chunks[chunk.id] = chunk
            self.lexical.add(chunk.id, chunk.document, chunk.symbol, chunk.path)
        if self.embedder is not None:
            self.vectors = Vectors(index_dir, chroma_url, collection, self.embedder.name)
            self._load_vectors()

    # ------------------------------------------------------------------ loading

    def _load_vectors(self) -> None:
        assert self.vectors is not None and self.embedder is not None
        if self.state.meta("model") != self.embedder.name:
            self.state.mark_all_pending()
            self.state.set_meta("model", self.embedder.name)
        embedded = self.state.embedded_ids()
        stray: list[str] = []
        mirror: DenseMirror | None = None
        found: set[str] = set()
        for ids, vectors in self.vectors.all_vectors():
            if mirror is None:
                mirror = DenseMirror(int(vectors.shape[1]))
            keep = [i for i, cid in enumerate(ids) if cid in self._chunks]
            stray.extend(cid for cid in ids if cid not in self._chunks)
            mirror.add([ids[i] for i in keep], vectors[keep])
            found.update(ids[i] for i in keep)
        if stray:
            self.vectors.delete(stray)
        missing = embedded - found
        if missing:
            self.state.mark_embedded(missing, 0)
        unmarked = found - embedded
        if unmarked:
            self.state.mark_embedded(unmarked, 1)
        dim = self.embedder.dim
        self.mirror = mirror or (DenseMirror(dim) if dim else None)

    def close(self) -> None:
        self.state.close()

    # ------------------------------------------------------------------ ingest

    def ingest(
        self, requested: str | Path = ".", progress: Callable[[Progress], None] | None = None
    ) -> IngestReport:
        if not self._ingesting.acquire(blocking=False):
            raise Busy()
        try:
            report = self._ingest(requested, progress)
        except BaseException:
            self.counters.ingest_failures += 1
            raise
        finally:
            self._ingesting.release()
        self.counters.ingests += 1
        if not report.ok:
            self.counters.ingest_failures += 1
        return report

    def _ingest(
        self, requested: str | Path, progress: Callable[[Progress], None] | None
    ) -> IngestReport:
        start = time.perf_counter()
        target = inside(self.root, requested)
        prefix = "" if target == self.root else target.relative_to(self.root).as_posix()
        report = IngestReport(path=prefix or ".", embedding=self.embedder is not None)
        known = {p: r for p, r in self.state.files().items() if _under(p, prefix)}
        if not target.exists() and not known:
            raise RagError(
                f"{requested}: no such file or directory under {self.root}",
                field="path",
                status=404,
            )
        stats = WalkStats()
        seen: set[str] = set()
        gone_ids: set[str] = set()
        if target.exists():
            for source in walk(
                self.root,
                target,
                max_bytes=self.max_file_bytes,
                max_files=self.max_files,
                stats=stats,
            ):
                seen.add(source.rel)
                report.files += 1
                try:
                    data = source.path.read_bytes()
                except OSError as exc:  # kept as it was: unreadable now is not deleted
                    report.errors.append(f"{source.rel}: {exc.strerror}")
                    continue
                sha = hashlib.sha256(data).hexdigest()
                old = known.get(source.rel)
                if old is not None and old.sha == sha:
                    report.unchanged += 1
                    continue
                text = data.decode("utf-8", errors="replace")
                chunks = self.chunker.chunk(source.rel, text, source.language)
                record = FileRecord(source.rel, sha, len(data), source.language)
                gone_ids |= self._replace(record, chunks, report)
                report.changed += 1
                if progress:
                    progress(Progress("chunk", report.files, report.chunks, 0, 0, 0))
        seen.update(stats.unreadable)  # a permission problem is not a deletion
        for path in sorted(set(known) - seen):
            ids = self.state.remove_file(path)
            with self._lock:
                self._forget(ids)
            gone_ids |= ids
            report.deleted += 1
        report.skipped = stats.skipped
        report.lexical_seconds = time.perf_counter() - start
        if self.vectors is not None and gone_ids:
            try:
                self.vectors.delete(gone_ids)
            except NotReady as exc:  # reconciled at the next start
                report.errors.append(str(exc))
        if self.embedder is not None:
            self._embed_pending(report, progress)
        report.seconds = time.perf_counter() - start
        c = self.counters
        c.files_changed += report.changed
        c.files_unchanged += report.unchanged
        c.files_deleted += report.deleted
        c.chunks_written += report.chunks
        return report

    def _forget(self, ids: set[str]) -> None:
        """Drop chunks from the in-memory side (table, lexical, mirror); lock held."""
        for cid in ids:
            self._chunks.pop(cid, None)
        self.lexical.remove(ids)
        if self.mirror is not None:
            self.mirror.remove(ids)

    def _replace(self, record: FileRecord, chunks: list[Chunk], report: IngestReport) -> set[str]:
        old_ids = self.state.chunk_ids(record.path)
        keep = old_ids & {c.id for c in chunks}
        gone = self.state.replace_file(record, chunks, keep)
        fresh = [c for c in chunks if c.id not in keep]
        with self._lock:
            self._forget(gone)
            for chunk in chunks:
                self._chunks[chunk.id] = chunk
            for chunk in fresh:
                self.lexical.add(chunk.id, chunk.document, chunk.symbol, chunk.path)
        report.chunks += len(fresh)
        return gone

    def _embed_pending(
        self, report: IngestReport, progress: Callable[[Progress], None] | None
    ) -> None:
        assert self.embedder is not None and self.vectors is not None
        pending = self.state.pending()
        t0 = time.perf_counter()
        for start in range(0, len(pending), EMBED_BATCH):
            batch = pending[start : start + EMBED_BATCH]
            b0 = time.perf_counter()
            try:
                vectors = self.embedder.embed([c.document for c in batch])
                self.vectors.upsert(batch, vectors)
            except RagError as exc:
                report.failed += len(batch)
                self.counters.embed_failures += len(batch)
                if len(report.errors) < 20:
                    report.errors.append(f"{len(batch)} chunks not embedded: {exc.message}")
                continue
            finally:
                self.counters.embed_seconds += time.perf_counter() - b0
                self.counters.embed_batches += 1
            with self._lock:
                live = [i for i, c in enumerate(batch) if c.id in self._chunks]
                if self.mirror is None:
                    self.mirror = DenseMirror(int(vectors.shape[1]))
                self.mirror.add([batch[i].id for i in live], vectors[live])
            self.state.mark_embedded(c.id for c in batch)
            report.embedded += len(batch)
            self.counters.chunks_embedded += len(batch)
            if progress:
                progress(
                    Progress(
                        "embed",
                        report.files,
                        report.chunks,
                        report.embedded,
                        report.failed,
                        len(pending),
                    )
                )
        report.embed_seconds = time.perf_counter() - t0

    # ------------------------------------------------------------------ search

    def search(
        self,
        query: str,
        *,
        k: int = 10,
        page: int = 1,
        backend: Backend | None = None,
        weights: Weights | None = None,
        fusion: Literal["weighted", "rrf"] = "weighted",
    ) -> SearchPage:
        """One page of ranked chunks. ``fusion="rrf"`` is the equal-weight
        reciprocal-rank baseline the weighted fusion is measured against."""
        t0 = time.perf_counter()
        query = query.strip()
        if not query:
            raise RagError("q: empty query", field="q", status=422)
        if len(query) > MAX_QUERY_CHARS:
            raise RagError(f"q: longer than {MAX_QUERY_CHARS} characters", field="q", status=422)
        if not 1 <= k <= MAX_K:
            raise RagError(f"k: between 1 and {MAX_K}", field="k", status=422)
        if not 1 <= page <= MAX_PAGE:
            raise RagError(f"page: between 1 and {MAX_PAGE}", field="page", status=422)
        mode: Backend = backend or self.backend
        if mode != "lexical" and self.embedder is None:
            raise RagError(
                f"backend {mode}: this index runs without a model (RAG_BACKEND=lexical)",
                field="backend",
                status=422,
            )
        pool = max(50, k * page + k)
        lexical = self.lexical.search(query, pool) if mode != "dense" else []
        dense: list[tuple[str, float]] = []
        if mode != "lexical" and self.embedder is not None and self.mirror is not None:
            vector = self.embedder.embed([query])[0]
            dense = self.mirror.search(vector, pool)
        with self._lock:
            lexical = [(cid, s) for cid, s in lexical if cid in self._chunks]
            dense = [(cid, s) for cid, s in dense if cid in self._chunks]
            if mode == "lexical":
                ranked = lexical
            elif mode == "dense":
                ranked = dense
            elif fusion == "rrf":
                ranked = reciprocal_rank(lexical, dense)
            else:
                found = [self._chunks[cid] for cid, _ in lexical + dense]
                symbols = {c.id: c.symbol for c in found}
                paths = {c.id: c.path for c in found}
                ranked = fuse(query, lexical, dense, symbols, weights, paths)
            lex_scores = dict(lexical)
            dense_scores = dict(dense)
            window = ranked[(page - 1) * k : page * k]
            hits = [
                Hit(self._chunks[cid], score, lex_scores.get(cid), dense_scores.get(cid))
                for cid, score in window
            ]
        return SearchPage(
            query=query,
            backend=mode,
            kind=query_kind(query),
            k=k,
            page=page,
            hits=hits,
            has_more=len(ranked) > page * k,
            seconds=time.perf_counter() - t0,
        )

    # ------------------------------------------------------------------ state

    def stats(self) -> IndexStats:
        files, chunks, pending = self.state.counts()
        return IndexStats(
            files=files,
            chunks=chunks,
            pending=pending if self.embedder is not None else 0,
            embedded=len(self.mirror) if self.mirror is not None else 0,
            backend=self.backend,
            model=self.embedder.name if self.embedder else None,
            chroma=self.vectors.where if self.vectors else None,
        )

    def check(self) -> None:
        """Raise :class:`NotReady` when Chroma does not answer."""
        if self.vectors is not None:
            self.vectors.heartbeat()


def _estimate_tokens(texts: Sequence[str]) -> list[int]:
    """Without a tokenizer (lexical backend, no model installed): a safe over-estimate."""
    return [len(t) // 2 + 2 for t in texts]
