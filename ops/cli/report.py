"""``vots-ops report``: sample the VM and its containers, store, show, judge."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ops.cli.options import (
    FC,
    Duration,
    FiniteFloat,
    FiniteInt,
    format_option,
    quiet_option,
    renamed,
)
from ops.console import Console

if TYPE_CHECKING:
    from ops.report.run import Planned


def _not_empty(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value == "":
        raise click.BadParameter("must not be empty (leave it out for the default)")
    return value


def _from_group(ctx: click.Context, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The options given to `report` before this subcommand that it takes too
    (`report --db X install-cron` means `install-cron --db X`), by name. One given
    on the command line that the subcommand does not take is refused: an option
    must never silently do nothing."""
    parent = ctx.parent
    if parent is None:
        return {}
    out: dict[str, Any] = {}
    for param in parent.command.params:
        name = param.name
        if name is None or name not in parent.params:
            continue
        source = parent.get_parameter_source(name)
        if name in allowed:
            if source is not click.core.ParameterSource.DEFAULT:
                out[name] = parent.params[name]
        elif source is click.core.ParameterSource.COMMANDLINE:
            flag = max(param.opts, key=len) if param.opts else name
            sub = ctx.info_name
            own = any(flag in p.opts for p in ctx.command.params if not getattr(p, "hidden", False))
            where = (
                f"`report {sub}` has its own {flag}: write it after `{sub}`"
                if own
                else f"`report {sub}` does not take it; it is for `vots-ops report` alone"
            )
            raise click.UsageError(f"{flag} is an option of `report` itself; {where}")
    return out


def _parent_exists(path: str, what: str = "") -> None:
    """A file named on the command line goes into an existing directory: a typo in
    --db must not quietly create a new tree (and an empty history) somewhere."""
    from pathlib import Path

    from ops.errors import OutputError
    from ops.files import not_a_directory

    parent = Path(path).absolute().parent
    if not parent.is_dir():
        blocker = not_a_directory(parent)
        why = f"{blocker} is not a directory" if blocker else f"{parent} does not exist"
        raise OutputError(f"cannot write {path}{what}: {why}")


def _own(ctx: click.Context, name: str) -> bool:
    """Whether the subcommand's own option ``name`` was given (not its default)."""
    return ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT


def _typed(ctx: click.Context, name: str) -> bool:
    """Whether option ``name`` was written on the command line, not taken from the
    environment: a variable exported for cron (VOTS_OPS_STACK, VOTS_OPS_QUIET) must
    not make an interactive view refuse to start."""
    return ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE


def _quiet_typed(ctx: click.Context) -> bool:
    """``-q`` written before the command or ``--quiet`` after it (not VOTS_OPS_QUIET)."""
    return _typed(ctx.find_root(), "quiet") or _typed(ctx, "quiet")


#: Bounds of the numeric options: wide enough for any real use, and finite.
MAX_DAYS = 3650.0  # ten years of history
MAX_INTERVAL_S = 86400.0  # a live view or a cached sample at most a day apart
MAX_COUNT = 1_000_000


def _db_option(f: FC) -> FC:
    return click.option(
        "--db",
        callback=_not_empty,
        type=click.Path(dir_okay=False),
        default=None,
        envvar="VOTS_OPS_DB",
        help="History database (env VOTS_OPS_DB) [default: $XDG_STATE_HOME/vots-ops/history.sqlite3].",
    )(f)


FAIL_ON = ("over-limit", "restart", "anomaly")
_FAIL_ON_HELP = (
    "Exit 1 while this is found, and with --quiet say it (when it starts, worsens, repeats "
    "and resolves): over-limit (memory >= 90% of a limit, CPU-throttled in >= 25% of "
    "periods, an OOM kill), restart (restarted by the engine or by hand), anomaly (a "
    "figure far from its own recent behaviour, in the direction that hurts). Repeatable."
)


def _stack_option(f: FC) -> FC:
    return click.option(
        "--stack",
        "stack_path",
        type=click.Path(dir_okay=False),
        default=None,
        envvar="VOTS_OPS_STACK",
        help="Show what `plan` gives each service of this stack next to its containers "
        "(matched by Compose project and service; env VOTS_OPS_STACK).",
    )(f)


def _textfile_option(f: FC) -> FC:
    return click.option(
        "--textfile",
        type=click.Path(dir_okay=False),
        default=None,
        help="Also write the figures for node_exporter's textfile collector (atomically), e.g. "
        "/var/lib/node_exporter/textfile_collector/vots.prom.",
    )(f)


def _fail_on_option(f: FC) -> FC:
    return click.option("--fail-on", type=click.Choice(FAIL_ON), multiple=True, help=_FAIL_ON_HELP)(
        f
    )


def _repeat_option(f: FC) -> FC:
    return click.option(
        "--repeat-interval",
        type=Duration(min=1, max=MAX_DAYS * 86400),
        default="4h",
        show_default=True,
        help="With a history: say a finding that lasts again after this long (Alertmanager's "
        "repeat_interval), e.g. 30m, 4h, 1d.",
    )(f)


def _no_docker_option(f: FC) -> FC:
    return click.option(
        "--no-docker", is_flag=True, help="Host figures only; do not ask the Docker engine."
    )(f)


@click.group(invoke_without_command=True)
@_db_option
@_stack_option
@_textfile_option
@click.option("--no-history", is_flag=True, help="Sample without reading or writing the history.")
@_no_docker_option
@_fail_on_option
@_repeat_option
@click.option(
    "--interval",
    type=Duration(min=0.2, max=MAX_INTERVAL_S),
    default=None,
    help="Live view: sample every N seconds (or 2s, 1m) until Ctrl-C (nothing is stored).",
)
@click.option(
    "--count",
    type=FiniteInt(min=1, max=MAX_COUNT),
    default=None,
    help="With --interval: stop after N samples.",
)
@click.option(
    "--days",
    type=FiniteFloat(min=0.01, max=MAX_DAYS),
    default=1.0,
    show_default=True,
    help="With --format html: how far back from the newest sample to look; the charts span "
    "the samples found.",
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
    repeat_interval: float,
    interval: float | None,
    count: int | None,
    days: float,
    fmt: str,
) -> None:
    """Sample VM and per-container utilisation, store it, and show it.

    Rates (CPU %, I/O per second) come from the previous stored sample, so a
    cron run never sleeps; the first run says so instead of inventing a rate.
    Cron-friendly: with --quiet a healthy run prints nothing, and a finding is
    said when it starts, worsens, repeats and resolves, not every minute.
    --format html draws the history only (it samples and writes nothing).
    """
    if ctx.invoked_subcommand is not None:
        return
    from pathlib import Path

    from ops.report.history import default_db_path

    console: Console = ctx.obj
    if count is not None and interval is None:
        raise click.UsageError("--count needs --interval")
    given = {name for name in ("db", "days", "repeat_interval") if _own(ctx, name)}
    if ctx.get_parameter_source("db") is click.core.ParameterSource.ENVIRONMENT:
        given.discard("db")  # VOTS_OPS_DB set for cron must not break the live view
    stack_typed = bool(stack_path) and _typed(ctx, "stack_path")
    if interval is not None:
        if fmt != "table" or fail_on or textfile or stack_typed or _quiet_typed(ctx) or given:
            raise click.UsageError(
                "--interval is the live table view; it stores nothing and takes no --format, "
                "--fail-on, --textfile, --stack, --quiet, --db, --days or --repeat-interval"
            )
        _live(console, interval, count, not no_docker)
        return
    if "days" in given and fmt != "html":
        raise click.UsageError("--days is for --format html (and `report recommend --days`)")
    path = None if no_history else Path(db) if db else default_db_path()
    if fmt == "html":
        if path is None:
            raise click.UsageError("--format html draws the history: drop --no-history")
        if fail_on or textfile or no_docker or stack_typed:
            raise click.UsageError(
                "--format html only draws the history; it takes no --fail-on, --textfile, "
                "--no-docker or --stack"
            )
        _html(console, path, days)
        return
    if textfile:
        _parent_exists(textfile)
    if db:
        _parent_exists(db)
    project: str | None = None
    planned: dict[str, Planned] = {}
    if stack_path:
        from ops.report.run import planned_limits

        project, planned = planned_limits(Path(stack_path))
    from ops.report.run import take_sample

    # A quiet run (cron) reports the --fail-on kinds, and only it moves what was
    # said about them: an operator's look at the same history takes nothing away.
    says = fail_on if console.quiet else ()
    run = take_sample(path, docker=not no_docker, says=says, repeat_interval=repeat_interval)
    run.project, run.planned = project, planned
    _say(console, run, fail_on, no_docker)  # before anything else can fail: said is said
    if textfile:
        from ops.report.prom import write_textfile

        write_textfile(run, Path(textfile))
    if fmt == "json":
        from ops.report.render import report_json

        console.json(report_json(run))
    elif fmt == "markdown":
        from ops.report.render import report_markdown

        console.text(report_markdown(run))
    elif not console.quiet:
        from ops.report.render import report_tables

        for table in report_tables(run):
            console.print(table)
    failing = [f for f in run.findings if f.kind in fail_on]
    if failing:
        from ops.errors import CheckFailed

        if console.quiet:
            raise CheckFailed("")  # the lines that matter were said above
        raise CheckFailed(
            f"{len(failing)} finding(s) (--fail-on {' '.join(fail_on)}): "
            + "; ".join(f"{f.scope}: {f.message}" for f in failing)
        )


def _say(console: Console, run: object, fail_on: tuple[str, ...], no_docker: bool) -> None:
    """Status lines on stderr. With --quiet (cron), only what is news: a finding of a
    --fail-on kind that started, worsened, repeats or resolved, a change of the
    clock's verdict, the engine going away or coming back, a damaged row
    skipped (each is said once)."""
    from ops.report.findings import event_line
    from ops.report.run import ReportRun

    assert isinstance(run, ReportRun)
    if run.sample.get("docker_error") and not no_docker:
        line = f"containers not sampled: {run.sample['docker_error']}"
        if run.docker_news == "down" or run.db is None:
            console.alert(line)  # news, even under --quiet: cron mails it once
        else:
            console.warning(line)
    elif run.docker_news == "back":
        console.alert("containers are sampled again: the Docker engine answers", label="")
    for line in run.warnings:
        console.alert(line)
    if run.clock_note and (run.clock_note_is_new or not console.quiet):
        console.alert(run.clock_note)
    if console.quiet:
        for event in run.events:
            if event.kind in fail_on:
                console.alert(event_line(event), label="")
        if run.db is None:  # no history, no state: every finding is news
            for f in run.findings:
                if f.kind in fail_on:
                    console.alert(f.line(), label="")


def _html(console: Console, path: object, days: float) -> None:
    """The history as one HTML page: read-only, up to its newest trusted sample."""
    from ops.report.history import History
    from ops.report.html import render_html

    with History(path, readonly=True) as history:  # type: ignore[arg-type]
        now = history.newest_ts()
        if now is None:
            from ops.errors import SpecError

            raise SpecError("no samples yet; run `vots-ops report` first", path=str(path))
        page = render_html(history, since=now - days * 86400, until=now + 1)
        for line in history.warnings:
            console.alert(line)
    console.text(page)


@report.command("install-cron")
@_db_option
@_stack_option
@_textfile_option
@_no_docker_option
@click.option(
    "--fail-on",
    type=click.Choice(FAIL_ON),
    multiple=True,
    default=("over-limit", "restart"),
    show_default=True,
    help="What the cron line reports (and exits 1 on); repeatable.",
)
@_repeat_option
@click.option(
    "--every",
    type=FiniteInt(1, 59),
    default=1,
    show_default=True,
    help="Minutes between samples.",
)
@click.option(
    "--systemd", is_flag=True, help="Print a systemd service and timer instead of a crontab line."
)
@click.option("--install", is_flag=True, help="Add (or replace) the line in this user's crontab.")
@click.pass_context
def install_cron(
    ctx: click.Context,
    db: str | None,
    stack_path: str | None,
    textfile: str | None,
    no_docker: bool,
    fail_on: tuple[str, ...],
    repeat_interval: float,
    every: int,
    systemd: bool,
    install: bool,
) -> None:
    """Print (or install) the crontab line that samples every minute.

    The line uses the absolute path of this vots-ops and --quiet, so cron mails
    only what is news: a finding of a --fail-on kind when it starts, worsens,
    repeats (--repeat-interval) or resolves. Options given to `report` before
    `install-cron` (--db, --stack, --textfile, --no-docker) count too.
    """
    from pathlib import Path

    from ops.report.history import default_db_path
    from ops.report.schedule import Schedule, cron_line, executable, install_crontab, systemd_units

    console: Console = ctx.obj
    group = _from_group(
        ctx, ("db", "stack_path", "textfile", "no_docker", "fail_on", "repeat_interval")
    )
    db = db or group.get("db")
    stack_path = stack_path or group.get("stack_path")
    textfile = textfile or group.get("textfile")
    no_docker = no_docker or bool(group.get("no_docker"))
    if not _own(ctx, "fail_on") and group.get("fail_on"):
        fail_on = group["fail_on"]
    repeat_given = _own(ctx, "repeat_interval") or "repeat_interval" in group
    if not _own(ctx, "repeat_interval") and "repeat_interval" in group:
        repeat_interval = group["repeat_interval"]
    path = Path(db).resolve() if db else default_db_path()
    # What would fail every minute is refused now, once: the stack must load and
    # plan, the history must be ours (or not exist yet), the directories exist.
    if stack_path:
        from ops.errors import SpecError
        from ops.report.run import planned_limits

        if not Path(stack_path).is_file():
            raise SpecError("file not found", path=stack_path)
        planned_limits(Path(stack_path))
    if textfile:
        _parent_exists(textfile)
    if db:
        _parent_exists(db)
    if path.exists() and path.stat().st_size > 0:  # an empty file is a new history
        from ops.report.history import History

        History(path, readonly=True).close()
    schedule = Schedule(
        executable=executable(),
        db=str(path),
        every_minutes=every,
        stack=str(Path(stack_path).resolve()) if stack_path else None,
        textfile=str(Path(textfile).resolve()) if textfile else None,
        fail_on=fail_on,
        no_docker=no_docker,
        repeat_interval=repeat_interval if repeat_given else None,
    )
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
    type=FiniteFloat(min=0.01, max=MAX_DAYS),
    default=14.0,
    show_default=True,
    help="How much history to use, up to its newest sample (KRR looks back 14 days).",
)
@click.option(
    "--min-history",
    type=Duration(min=1, max=MAX_DAYS * 86400),
    default="1d",
    show_default=True,
    help="Advice from a shorter span of samples is provisional: shown, marked, and left "
    "out of the yaml (e.g. 6h, 1d, 7d).",
)
@click.option(
    "--include-provisional",
    is_flag=True,
    help="Put provisional advice (less than --min-history of data) into the yaml too.",
)
@click.option(
    "--output-file",
    "out_file",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the advice to FILE (atomically) instead of stdout.",
)
@click.option(
    "--project",
    default=None,
    help="Only this Compose project's containers (the stack's `project`); without it a "
    "service name used by several projects is advised per project.",
)
@format_option("table", "yaml", "json")
@quiet_option
@click.pass_context
@renamed("--out", "--output-file", "out_file", type=click.Path(dir_okay=False))
def recommend(
    ctx: click.Context,
    db: str | None,
    days: float,
    min_history: float,
    include_provisional: bool,
    out_file: str | None,
    project: str | None,
    fmt: str,
) -> None:
    """Right-sizing advice per service from the history, with the reason for each value.

    CPU request/limit and memory request/limit per replica, from KRR's simple
    strategy and a VPA-style decaying histogram; OOM kills raise memory. Every
    reason says what span of data it stands on; advice from less than
    --min-history of it is provisional. The yaml format is what `vots-ops plan
    --recommendations FILE` applies. The history is opened read-only.
    """
    import json
    from pathlib import Path

    from ops.report.advice import (
        advice_table,
        advise,
        recommendations_json,
        recommendations_yaml,
    )
    from ops.report.history import History, default_db_path
    from ops.report.rightsizing import DAY

    window = days * DAY
    if min_history > window:
        raise click.UsageError(
            f"--min-history ({min_history / DAY:g} d) is longer than --days ({days:g}): "
            "no advice could be more than provisional"
        )
    console: Console = ctx.obj
    group = _from_group(ctx, ("db",))  # always: it also refuses what recommend ignores
    db = db or group.get("db")
    path = Path(db) if db else default_db_path()
    with History(path, readonly=True) as history:
        advice = advise(history, window=window, min_span=min_history, project=project)
    for line in advice.warnings:
        console.alert(line)
    summary = advice.summary(include_provisional)
    if fmt == "json":
        text = json.dumps(recommendations_json(advice, include_provisional), indent=2) + "\n"
    elif fmt == "yaml" or out_file:
        text = recommendations_yaml(advice, include_provisional)
    else:
        text = ""
    if out_file:
        from ops.files import atomic_write

        _parent_exists(out_file)
        atomic_write(Path(out_file), text)
        console.success(f"wrote {out_file}: {summary}")
        return
    if text:
        console.text(text)
    elif not console.quiet:
        console.print(advice_table(advice))
    console.info(summary)


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
    type=FiniteInt(1, 65535),
    default=9858,
    show_default=True,
    help="Port for /metrics.",
)
@click.option(
    "--bind",
    metavar="ADDRESS",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (loopback by default; anything else is readable by whoever "
    "can reach it).",
)
@click.option(
    "--max-age",
    type=Duration(min=1, max=MAX_INTERVAL_S),
    default="15s",
    show_default=True,
    help="A scrape gets the cached sample until it is this old, then a new one is taken "
    "(e.g. 15s, 1m; a bare number is seconds).",
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
@click.pass_context
@renamed("--host", "--bind", "bind")
@renamed("--interval", "--max-age", "max_age", type=Duration(min=1, max=MAX_INTERVAL_S))
def serve_cmd(
    ctx: click.Context,
    port: int,
    bind: str,
    max_age: float,
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

    console: Console = ctx.obj
    group = _from_group(ctx, ("db", "no_history", "no_docker"))
    db = db or group.get("db")
    no_history = no_history or bool(group.get("no_history"))
    no_docker = no_docker or bool(group.get("no_docker"))
    path = Path(db) if db and not no_history else None
    if path is not None:
        _parent_exists(str(path))
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
        serve(port, bind, max_age, db=path, docker=not no_docker, on_ready=ready)
    finally:
        logger.removeHandler(handler)
