"""``vots-ops report``: sample the VM and its containers, store, show, judge."""

from __future__ import annotations

import click

from ops.cli.options import format_option, quiet_option
from ops.console import Console


def _db_option(f: object) -> object:
    return click.option(
        "--db",
        type=click.Path(dir_okay=False),
        default=None,
        envvar="VOTS_OPS_DB",
        help="History database (env VOTS_OPS_DB) [default: $XDG_STATE_HOME/vots-ops/history.sqlite3].",
    )(f)


@click.group(invoke_without_command=True)
@_db_option
@click.option("--no-history", is_flag=True, help="Sample without reading or writing the history.")
@click.option("--no-docker", is_flag=True, help="Host figures only; do not ask the Docker engine.")
@click.option(
    "--fail-on",
    type=click.Choice(["over-limit"]),
    multiple=True,
    help="Exit 1 when this is found (memory >= 90% of a limit, heavy throttling, an OOM kill).",
)
@format_option("table", "json", "markdown")
@quiet_option
@click.pass_context
def report(
    ctx: click.Context,
    db: str | None,
    no_history: bool,
    no_docker: bool,
    fail_on: tuple[str, ...],
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
    path = None if no_history else Path(db) if db else default_db_path()
    run = take_sample(path, docker=not no_docker)
    if run.sample.get("docker_error") and not no_docker:
        console.warning(f"containers not sampled: {run.sample['docker_error']}")
    if fmt == "json":
        console.json(report_json(run))
    elif fmt == "markdown":
        console.text(report_markdown(run))
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
