"""``vots-agent``: analyse files (the same analysis as the API) or serve the API.

``vots-agent analyze FILE…`` prints a table, ``--format json`` (the API's
document) or ``--format sarif``; exit 1 when a finding is at or above
``--fail-on``, 2 on bad input (one line naming the file or flag), 0 otherwise.
Results go to stdout, errors to stderr.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from vots_agent.errors import AgentError
from vots_agent.findings import SEVERITIES, TOOLS

F = TypeVar("F", bound=Callable[..., Any])
COLORS = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}


def errors(fn: F) -> F:
    """Expected failures as one line and exit 2; a traceback only for a bug."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AgentError as exc:
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(2)
        except BrokenPipeError:
            sys.stderr.close()
            sys.exit(141)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"error: {where}{exc.strerror or exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vots-agent")
def main() -> None:
    """The VOTS core agent: static analysis (ruff, bandit, radon) with code-base context."""


def _collect(paths: tuple[Path, ...], max_files: int, max_bytes: int) -> list[Any]:
    from vots_agent.analysis import SourceFile, language_of
    from vots_agent.sources import SKIP_DIRS, SOURCE_SUFFIXES, check_content

    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found += sorted(
                f
                for f in p.rglob("*")
                if f.suffix in SOURCE_SUFFIXES
                and f.is_file()
                and not any(
                    part in SKIP_DIRS or part.startswith(".")
                    for part in f.relative_to(p).parts[:-1]
                )
            )
        elif p.exists():
            found.append(p)
        else:
            raise AgentError(f"{p}: no such file or directory", field=str(p))
    if len(found) > max_files:
        raise AgentError(f"{len(found)} files, over --max-files {max_files}", field="--max-files")
    out = []
    cwd = Path.cwd()
    seen: set[str] = set()
    for f in found:
        try:
            name = str(f.resolve().relative_to(cwd))
        except ValueError:
            name = str(f)
        if name in seen:
            continue
        seen.add(name)
        text = f.read_text(encoding="utf-8", errors="replace")
        check_content(text, name, max_bytes)
        out.append(SourceFile(name, text, language_of(name)))
    if not out:
        raise AgentError("no source files to analyse", field="FILE")
    return out


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "sarif"]),
    default="table",
    show_default=True,
)
@click.option(
    "--fail-on",
    type=click.Choice(SEVERITIES),
    help="Exit 1 when a finding is at or above this severity.",
)
@click.option(
    "--tool",
    "tools",
    multiple=True,
    type=click.Choice(TOOLS),
    help="Only these analysers (repeatable). [default: all]",
)
@click.option(
    "--max-complexity",
    type=click.IntRange(1, 1000),
    default=10,
    show_default=True,
    help="Cyclomatic complexity above which a function is a finding.",
)
@click.option(
    "--max-function-lines", type=click.IntRange(1, 1_000_000), default=100, show_default=True
)
@click.option(
    "--respect-suppressions",
    is_flag=True,
    help="Honour `# noqa` and `# nosec` comments in the code.",
)
@click.option("--rag-url", help="The RAG service, for similar code as context. [env: RAG_URL]")
@click.option("--max-files", type=click.IntRange(1, 100_000), default=10_000, show_default=True)
@errors
def analyze(
    files: tuple[Path, ...],
    fmt: str,
    fail_on: str | None,
    tools: tuple[str, ...],
    max_complexity: int,
    max_function_lines: int,
    respect_suppressions: bool,
    rag_url: str | None,
    max_files: int,
) -> None:
    """Analyse FILE… (directories: their Python files) and print the findings."""
    from vots_agent.analysis import Options
    from vots_agent.app import build_agent
    from vots_agent.findings import at_least
    from vots_agent.service import to_document
    from vots_agent.settings import load_settings

    settings = load_settings(rag_url=rag_url)
    sources = _collect(files, max_files, settings.max_file_bytes)
    options = Options(
        tools=tuple(tools) or TOOLS,  # type: ignore[arg-type]
        max_complexity=max_complexity,
        max_function_lines=max_function_lines,
        respect_suppressions=respect_suppressions,
    )

    async def run() -> Any:
        agent = build_agent(settings.model_copy(update={"redis_url": None}), None, None)
        try:
            return await agent.analyze(sources, options, context=settings.rag_url is not None)
        finally:
            await agent.close()

    report = asyncio.run(run())
    if fmt == "json":
        click.echo(json.dumps(to_document(report), indent=2))
    elif fmt == "sarif":
        from vots_agent.sarif import to_sarif

        click.echo(json.dumps(to_sarif(report.analysis), indent=2))
    else:
        _table(report)
    if fail_on and any(at_least(f.severity, fail_on) for f in report.analysis.findings):
        sys.exit(1)


def _table(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console(highlight=False, soft_wrap=False)
    err = Console(stderr=True, highlight=False)
    a = report.analysis
    if a.findings:
        table = Table(show_edge=False, pad_edge=False)
        for col in ("severity", "tool", "rule", "where", "message"):
            table.add_column(col, overflow="fold")
        order = {s: i for i, s in enumerate(SEVERITIES)}
        for f in sorted(a.findings, key=lambda f: (order[f.severity], f.file, f.start_line)):
            table.add_row(
                f"[{COLORS[f.severity]}]{f.severity}[/]",
                f.tool,
                f.rule_id,
                f"{f.file}:{f.start_line}:{f.start_column}",
                f.message,
            )
        out.print(table)
    counts = a.counts()
    shown = ", ".join(f"{counts[s]} {s}" for s in SEVERITIES if counts[s])
    err.print(
        f"{len(a.findings)} findings in {len(a.files)} files" + (f" ({shown})" if shown else "")
    )
    for run in a.tools:
        if run.error:
            err.print(f"[red]{run.name}: {run.error}[/]")
    if report.context_reason and report.context_reason not in (
        "not asked for",
        "RAG_URL is not set",
    ):
        err.print(f"no context: {report.context_reason}")


@main.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (loopback unless told).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="Analysis processes. [env: AGENT_WORKERS; default: the CPU limit]",
)
@click.option(
    "--queue",
    type=click.IntRange(0, 10_000),
    help="Requests that may wait for a worker. [env: AGENT_QUEUE; default: 16]",
)
@errors
def serve(host: str, port: int, workers: int | None, queue: int | None) -> None:
    """Start the HTTP API (uvicorn); SIGTERM lets in-flight analyses finish."""
    import uvicorn

    from vots_agent.app import create_app
    from vots_agent.logs import configure
    from vots_agent.settings import load_settings

    settings = load_settings(workers=workers, queue=queue)
    configure(settings.log_level)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.timeout_s) + 10,
        server_header=False,
        http="httptools",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    try:
        server.run()
    except OSError as exc:
        raise AgentError(f"--port {port}: {exc.strerror}") from exc
    if not server.started:
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
