"""``vots-rag``: ingest, query, evaluate and serve the index. Thin: parse, call, print.

Results go to stdout (``--format json`` for scripts), progress and errors to
stderr. Exit codes: 0 ok, 1 the run finished but chunks failed to embed,
2 bad input or settings (one line naming the flag or variable).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from vots_service.run import cli_errors

from vots_rag.errors import RagError

F = TypeVar("F", bound=Callable[..., Any])


def _stderr() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _stdout() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def index_options(fn: F) -> F:
    """The settings every command shares; each falls back to its environment variable."""
    opts = [
        click.option("--root", type=click.Path(path_type=Path), help="The only tree ingest may read. [env: RAG_ROOT; default: .]"),
        click.option("--index", "index_dir", type=click.Path(path_type=Path), help="Index directory (state and embedded Chroma). [env: RAG_INDEX_DIR; default: .vots-rag]"),
        click.option("--backend", type=click.Choice(["lexical", "dense", "hybrid"]), help="Retrieval backend. [env: RAG_BACKEND; default: hybrid]"),
        click.option("--chroma-url", help="A Chroma server instead of the embedded store. [env: CHROMA_URL]"),
        click.option("--model-dir", type=click.Path(path_type=Path), help="Directory with model.onnx/tokenizer.json. [env: RAG_MODEL_DIR]"),
    ]  # fmt: skip
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _settings(kw: dict[str, Any]) -> Any:
    from vots_rag.settings import load_settings

    return load_settings(
        root=kw.pop("root", None),
        index_dir=kw.pop("index_dir", None),
        backend=kw.pop("backend", None),
        chroma_url=kw.pop("chroma_url", None),
        model_dir=kw.pop("model_dir", None),
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="vots-rag")
def main() -> None:
    """Code search for the VOTS stack: ingest a tree, query it, serve it over HTTP."""


@main.command()
@click.argument("path", default=".")
@index_options
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@cli_errors
def ingest(path: str, fmt: str, **kw: Any) -> None:
    """Index PATH (relative to --root, or inside it): changed files re-chunked, unchanged
    ones skipped, deleted ones dropped, then pending chunks embedded."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from vots_rag.settings import open_index

    settings = _settings(kw)
    err = _stderr()
    with err.status("loading the model and the index"):
        index = open_index(settings)
    try:
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        )
        with progress:
            task = progress.add_task("chunking", total=None, detail="")

            def tick(p: Any) -> None:
                if p.phase == "embed":
                    progress.update(
                        task,
                        description="embedding",
                        total=p.pending,
                        completed=p.embedded + p.failed,
                        detail=f"{p.files} files, {p.chunks} chunks, {p.embedded} embedded, {p.failed} failed",
                    )
                else:
                    progress.update(task, detail=f"{p.files} files, {p.chunks} chunks")

            report = index.ingest(path, tick)
    finally:
        index.close()
    if fmt == "json":
        from vots_rag.app import report_json

        click.echo(json.dumps(report_json(report), indent=2))
    else:
        skipped = sum(report.skipped.values())
        embedded = (
            f"{report.embedded} embedded, {report.failed} failed"
            if report.embedding
            else "no embeddings (RAG_BACKEND=lexical)"
        )
        line = (
            f"{report.path}: {report.files} files ({report.changed} changed, {report.unchanged} unchanged, "
            f"{report.deleted} deleted, {skipped} skipped), {report.chunks} new chunks, {embedded} "
            f"in {report.seconds:.1f}s"
        )
        _stdout().print(line, markup=False)
        for message in report.errors:
            err.print(f"warning: {message}", markup=False)
    if not report.ok:
        click.echo(
            f"error: {report.failed} chunks not embedded; they stay pending for the next ingest",
            err=True,
        )
        sys.exit(1)


@main.command()
@click.argument("text")
@click.option(
    "-k", type=click.IntRange(1, 50), default=10, show_default=True, help="Results per page."
)
@click.option("--page", type=click.IntRange(1, 100), default=1, show_default=True)
@index_options
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@cli_errors
def query(text: str, k: int, page: int, fmt: str, **kw: Any) -> None:
    """Search the index: ranked chunks with path, lines, symbol, score and snippet."""
    from vots_rag.app import page_json
    from vots_rag.settings import open_index

    backend = kw.get("backend")
    settings = _settings(kw)
    index = open_index(settings)
    try:
        result = index.search(text, k=k, page=page, backend=backend)
    finally:
        index.close()
    if fmt == "json":
        click.echo(json.dumps(page_json(result), indent=2))
        return
    from rich.table import Table

    table = Table(
        title=f"{result.backend} · {result.kind} query · page {result.page}", title_justify="left"
    )
    table.add_column("#", justify="right", no_wrap=True, min_width=2)
    table.add_column("score", justify="right", no_wrap=True, min_width=5)
    table.add_column("path:lines", no_wrap=True, min_width=16)
    table.add_column("symbol", no_wrap=True, overflow="ellipsis", min_width=8, max_width=32)
    table.add_column("snippet", no_wrap=True, overflow="ellipsis", max_width=60)
    for i, hit in enumerate(result.hits, start=(page - 1) * k + 1):
        c = hit.chunk
        first = next((line.strip() for line in c.text.splitlines() if line.strip()), "")
        table.add_row(
            str(i),
            f"{hit.score:.3f}",
            f"{c.path}:{c.start_line}-{c.end_line}",
            c.symbol or "",
            first[:80],
        )
    out = _stdout()
    out.print(table)
    if not result.hits:
        out.print("no results", markup=False)
    elif result.has_more:
        out.print(f"more: --page {page + 1}", markup=False)


@main.command(name="eval")
@click.option(
    "--queries",
    "queries_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Labelled set (default: the bundled eval/queries.yaml).",
)
@click.option(
    "--ingest/--no-ingest",
    "do_ingest",
    default=True,
    show_default=True,
    help="Bring the index up to date with the root first.",
)
@index_options
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@cli_errors
def eval_cmd(queries_file: Path | None, do_ingest: bool, fmt: str, **kw: Any) -> None:
    """Recall@5, MRR and nDCG@10 of each backend on the labelled queries, per kind."""  # fmt: skip
    from vots_rag.evaluate import DEFAULT_QUERIES, evaluate, load_queries
    from vots_rag.index import BACKENDS

    chosen = kw.get("backend")
    settings = _settings(kw)
    path = queries_file or DEFAULT_QUERIES
    queries = load_queries(path)
    from vots_rag.settings import open_index

    index = open_index(settings)
    try:
        if do_ingest:
            report = index.ingest(".")
            if not report.ok:
                raise RagError(f"{report.failed} chunks not embedded; the figures would be wrong")
        exclude = []
        with contextlib.suppress(ValueError):
            exclude.append(path.resolve().relative_to(index.root).as_posix())
        backends = [chosen] if chosen and chosen != settings.backend else list(BACKENDS)
        if settings.backend == "lexical":
            backends = ["lexical"]
        result = evaluate(index, queries, backends, exclude=exclude)
    finally:
        index.close()
    if fmt == "json":
        data = {
            b: {kind: vars(s) for kind, s in kinds.items()}
            | {"median_ms": result.median_ms[b], "misses": result.misses[b]}
            for b, kinds in result.scores.items()
        }
        click.echo(json.dumps(data, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{len(queries)} labelled queries ({path.name})", title_justify="left")
    for col in ("backend", "kind", "n", "recall@5", "MRR", "nDCG@10"):
        table.add_column(col, justify="right" if col not in ("backend", "kind") else "left")
    for b, kinds in result.scores.items():
        for kind, s in kinds.items():
            table.add_row(
                b, kind, str(s.n), f"{s.recall_at_5:.3f}", f"{s.mrr:.3f}", f"{s.ndcg_at_10:.3f}"
            )
    _stdout().print(table)


@main.command()
@index_options
@cli_errors
def stats(**kw: Any) -> None:
    """Files, chunks and embeddings in the index."""
    from dataclasses import asdict

    from vots_rag.settings import open_index

    settings = _settings(kw)
    index = open_index(settings)
    try:
        click.echo(json.dumps(asdict(index.stats()), indent=2))
    finally:
        index.close()


@main.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (loopback unless told).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8001, show_default=True)
@index_options
@cli_errors
def serve(host: str, port: int, **kw: Any) -> None:
    """Start the HTTP API (uvicorn) on the index; SIGTERM drains in-flight requests."""
    import logging

    from vots_service.logs import configure
    from vots_service.run import serve as run_server

    from vots_rag.app import create_app
    from vots_rag.settings import make_embedder

    settings = _settings(kw)
    configure(settings.log_level, {"chromadb": logging.WARNING})  # its telemetry chatter
    embedder = make_embedder(settings)  # a model that does not load fails here, exit 2
    run_server(create_app(settings, embedder=embedder), host, port, graceful_s=20)


if __name__ == "__main__":  # pragma: no cover
    main()
