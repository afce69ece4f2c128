"""``vots-ops report``: sample the VM and its containers, store, show, judge."""

from __future__ import annotations

import click

from ops.cli.options import format_option, quiet_option
from ops.console import Console


def _not_empty(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value == "":
        raise click.BadParameter("must not be empty (leave it out for the default)")
    return value


def _group_db() -> str | None:
    """`vots-ops report --db X install-cron` means the same as `... install-cron --db X`."""
    ctx = click.get_current_context()
    return ctx.parent.params.get("db") if ctx.parent is not None else None


def _db_option(f: object) -> object:
    return click.option(
        "--db",
        callback=_not_empty,
        type=click.Path(dir_okay=False),
        default=None,
        envvar="VOTS_OPS_DB",
        help="History database (env VOTS_OPS_DB) [default: $XDG_STATE_HOME/vots-ops/history.sqlite3].",
    )(f)


@click.group(invoke_without_command=True)
@_db_option
@click.option(
    "--stack",
    "stack_path",
    type=click.Path(dir_okay=False),
    default=None,
    envvar="VOTS_OPS_STACK",
    help="Show what `plan` gives each service next to its usage (env VOTS_OPS_STACK).",
)
@click.option(
    "--textfile",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the figures for node_exporter's textfile collector (atomically), e.g. "
    "/var/lib/node_exporter/textfile_collector/vots.prom.",
)
@click.option("--no-history", is_flag=True, help="Sample without reading or writing the history.")
@click.option("--no-docker", is_flag=True, help="Host figures only; do not ask the Docker engine.")
@click.option(
    "--fail-on",
    type=click.Choice(["over-limit", "anomaly"]),
    multiple=True,
    help="Exit 1 when this is found: over-limit (memory >= 90% of a limit, heavy throttling, "
    "an OOM kill) or anomaly (a figure far from its own recent behaviour). Repeatable.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.2),
    default=None,
    help="Live view: sample every N seconds until Ctrl-C (nothing is stored).",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    help="With --interval: stop after N samples.",
)
@click.option(
    "--days",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="With --format html: how much history the charts cover.",
)
@format_option("table", "json", "markdown", "html")
@quiet_option
@click.pass_context
def report(
    ctx: click.Context,
    db: str | None,
    stack_path: str | None,
    textfile: str | None,
    no_history: bool,
    no_docker: bool,
    fail_on: tuple[str, ...],
    interval: float | None,
    count: int | None,
    days: float,
    fmt: str,
) -> None:
    """Sample VM and per-container utilisation, store it, and show it.

    Rates (CPU %, I/O per second) come from the previous stored sample, so a
    cron run never sleeps; the first run says so instead of inventing a rate.
    Cron-friendly: with --quiet a healthy run prints nothing.
    """
    if ctx.invoked_subcommand is not None:
        return
    from pathlib import Path

    from ops.errors import CheckFailed
    from ops.report.history import default_db_path
    from ops.report.render import report_json, report_markdown, report_tables
    from ops.report.run import take_sample

    console: Console = ctx.obj
    if count is not None and interval is None:
        raise click.UsageError("--count needs --interval")
    if interval is not None:
        if fmt != "table" or fail_on or textfile or stack_path or console.quiet:
            raise click.UsageError(
                "--interval is the live table view; it takes no --format, --fail-on, "
                "--textfile, --stack or --quiet"
            )
        _live(console, interval, count, not no_docker)
        return
    if textfile and not Path(textfile).parent.is_dir():
        from ops.errors import OutputError

        raise OutputError(f"cannot write {textfile}: {Path(textfile).parent} is not a directory")
    path = None if no_history else Path(db) if db else default_db_path()
    planned = {}
    if stack_path:
        from ops.report.run import planned_limits

        planned = planned_limits(Path(stack_path))
    run = take_sample(path, docker=not no_docker)
    run.planned = planned
    if textfile:
        from ops.report.prom import write_textfile

        write_textfile(run, Path(textfile))
    if run.sample.get("docker_error") and not no_docker:
        console.warning(f"containers not sampled: {run.sample['docker_error']}")
    if fmt == "json":
        console.json(report_json(run))
    elif fmt == "markdown":
        console.text(report_markdown(run))
    elif fmt == "html":
        if path is None:
            raise click.UsageError("--format html draws the history: drop --no-history")
        from ops.report.history import History
        from ops.report.html import render_html

        with History(path) as history:
            now = run.sample["time"]
            console.text(render_html(history, since=now - days * 86400, until=now + 1))
    elif not console.quiet:
        for table in report_tables(run):
            console.print(table)
    failing = [f for f in run.findings if f.kind in fail_on]
    if failing:
        raise CheckFailed(
            f"{len(failing)} finding(s): " + "; ".join(f"{f.scope}: {f.message}" for f in failing)
        )


@report.command("install-cron")
@_db_option
@click.option(
    "--every",
    type=click.IntRange(1, 59),
    default=1,
    show_default=True,
    help="Minutes between samples.",
)
@click.option(
    "--systemd", is_flag=True, help="Print a systemd service and timer instead of a crontab line."
)
@click.option("--install", is_flag=True, help="Add (or replace) the line in this user's crontab.")
@click.pass_obj
def install_cron(
    console: Console, db: str | None, every: int, systemd: bool, install: bool
) -> None:
    """Print (or install) the crontab line that samples every minute.

    The line uses the absolute path of this vots-ops and --quiet, so cron mails
    only problems.
    """
    from pathlib import Path

    from ops.report.history import default_db_path
    from ops.report.schedule import Schedule, cron_line, executable, install_crontab, systemd_units

    db = db or _group_db()
    path = Path(db).resolve() if db else default_db_path()
    schedule = Schedule(executable=executable(), db=str(path), every_minutes=every)
    if systemd:
        if install:
            raise click.UsageError(
                "--install works with cron only; copy the units shown by --systemd"
            )
        for name, text in systemd_units(schedule).items():
            console.text(f"# {name}\n{text}\n")
        return
    line = cron_line(schedule)
    if install:
        install_crontab(line)
        console.success(f"installed in the crontab: {line}")
        return
    console.text(line + "\n")


@report.command("recommend")
@_db_option
@click.option(
    "--days",
    type=click.FloatRange(min=0.01),
    default=14.0,
    show_default=True,
    help="How much history to use.",
)
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the advice to FILE (atomically) instead of stdout.",
)
@format_option("table", "yaml", "json")
@quiet_option
@click.pass_obj
def recommend(
    console: Console, db: str | None, days: float, out_file: str | None, fmt: str
) -> None:
    """Right-sizing advice per service from the history, with the reason for each value.

    CPU request/limit and memory request/limit per replica, from KRR's simple
    strategy and a VPA-style decaying histogram; OOM kills raise memory. The
    yaml format is what `vots-ops plan --recommendations FILE` applies.
    """
    import json
    import time
    from pathlib import Path

    from ops.errors import SpecError
    from ops.report.advice import recommendations, recommendations_yaml
    from ops.report.history import History, default_db_path

    db = db or _group_db()
    path = Path(db) if db else default_db_path()
    if not path.exists():
        raise SpecError(
            "no history yet; run `vots-ops report` (e.g. from cron) first", path=str(path)
        )
    with History(path) as history:
        recs = recommendations(history, since=time.time() - days * 86400)
    if fmt == "yaml":
        text = recommendations_yaml(recs)
    elif fmt == "json":
        text = json.dumps([r.__dict__ for r in recs], indent=2) + "\n"
    else:
        text = ""
    if out_file:
        from ops.files import atomic_write

        atomic_write(Path(out_file), text or recommendations_yaml(recs))
        console.success(f"wrote advice for {len(recs)} service(s) to {out_file}")
        return
    if text:
        console.text(text)
        return
    if console.quiet:
        return
    from rich.table import Table

    from ops.units import format_bytes, format_cpus

    table = Table(title="right-sizing advice (per replica)", title_justify="left", show_lines=True)
    for col in ("service", "CPU req", "CPU limit", "mem req", "mem limit", "why"):
        table.add_column(col, justify="left" if col in ("service", "why") else "right")
    for r in recs:
        table.add_row(
            r.service,
            format_cpus(r.cpu_request) if r.cpu_request else "—",
            format_cpus(r.cpu_limit) if r.cpu_limit else "—",
            format_bytes(r.memory_request) if r.memory_request else "—",
            format_bytes(r.memory_limit) if r.memory_limit else "—",
            "\n".join(r.reasons),
        )
    console.print(table)


def _live(console: Console, interval: float, count: int | None, docker: bool) -> None:
    """A small htop for the stack: one Rich Live view redrawn every interval."""
    from rich.console import Group
    from rich.live import Live

    from ops.report.render import report_tables
    from ops.report.run import live

    samples = live(interval, docker=docker, count=count)
    first = next(samples)
    if first.sample.get("docker_error") and docker:
        console.warning(f"containers not sampled: {first.sample['docker_error']}")
    try:
        with Live(Group(*report_tables(first)), console=console.out, refresh_per_second=4) as view:
            for run in samples:
                view.update(Group(*report_tables(run)))
    except KeyboardInterrupt:
        pass


@report.command("serve")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=9858,
    show_default=True,
    help="Port for /metrics.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind (loopback by default; anything else is readable by whoever can "
    "reach it).",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=1),
    default=15.0,
    show_default=True,
    help="Sample at most this often (seconds); scrapes in between get the cached sample.",
)
@click.option(
    "--db",
    callback=_not_empty,
    type=click.Path(dir_okay=False),
    default=None,
    envvar="VOTS_OPS_DB",
    help="Also store every new sample in this history (env VOTS_OPS_DB) [default: samples "
    "stay in memory].",
)
@click.option(
    "--no-history", is_flag=True, help="Keep samples in memory only, even with --db or VOTS_OPS_DB."
)
@click.option("--no-docker", is_flag=True, help="Host figures only.")
@click.pass_obj
def serve_cmd(
    console: Console,
    port: int,
    host: str,
    interval: float,
    db: str | None,
    no_history: bool,
    no_docker: bool,
) -> None:
    """Expose the figures on /metrics for Prometheus, until SIGTERM or Ctrl-C.

    Samples stay in memory unless a history is given (--db or VOTS_OPS_DB).
    Idle or slow clients cannot starve it: a request must arrive within 5 s,
    connections are capped below the open-file limit (the oldest idle one is
    closed at the cap), and a failed re-sample logs one line, counts in
    vots_report_errors_total{stage="sample"} and serves the previous sample.
    """
    import ipaddress
    import logging
    import os
    import sys
    from pathlib import Path

    from ops.report.serve import MetricsServer, serve

    db = db or _group_db()
    path = Path(db) if db and not no_history else None
    debug = bool(os.environ.get("VOTS_OPS_DEBUG"))

    class OneLine(logging.Formatter):
        """`warning: message` on one line, as the console prints; a traceback only
        for a bug (an error logged with one) or with VOTS_OPS_DEBUG."""

        def format(self, record: logging.LogRecord) -> str:
            text = f"{record.levelname.lower()}: {' '.join(record.getMessage().split())}"
            if record.exc_info and (debug or record.levelno >= logging.ERROR):
                text += "\n" + self.formatException(record.exc_info)
            return text

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLine())
    logger = logging.getLogger("ops")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)

    def ready(server: MetricsServer) -> None:
        stored = f"; storing samples in {path}" if path else ""
        console.info(f"serving {server.url}{stored}")
        if not ipaddress.ip_address(server.address[0].split("%")[0]).is_loopback:
            console.warning(f"{server.address[0]} is not loopback: /metrics is open to the network")

    try:
        serve(port, host, interval, db=path, docker=not no_docker, on_ready=ready)
    finally:
        logger.removeHandler(handler)
