"""``vots-ops loadtest``: run a Locust scenario headless and judge its SLOs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ops.cli.options import (
    MAX_NUMBER_CHARS,
    FiniteFloat,
    FiniteInt,
    format_option,
    lazy,
    parsed,
    quiet_option,
    refuse_unused,
    stack_option,
)
from ops.console import Console, StatusLine

if TYPE_CHECKING:
    from ops.loadtest.result import Mode, Status
    from ops.loadtest.scenario import Scenario


_PERCENT = re.compile(r"[0-9]+(?:\.[0-9]+)?%?")


def _tolerance(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    """``10%`` or ``10`` -> 0.10, read strictly: ASCII digits, no exponent, 0% to 1000%."""
    from ops.units import shown

    text = value.strip()
    if len(text) > MAX_NUMBER_CHARS or not text.isascii() or not _PERCENT.fullmatch(text):
        raise click.BadParameter(f"expected a percentage like 10% (got {shown(value)})")
    number = float(text.removesuffix("%"))
    if not 0 <= number <= 1000:
        raise click.BadParameter(f"expected 0% to 1000% (got {shown(value)})")
    return number / 100.0


class _Progress:
    """Live status on stderr: a redrawn line on a terminal, a line every 10 s otherwise."""

    def __init__(
        self,
        console: Console,
        worker: str | None = None,
        baseline: Path | None = None,
        tolerance: float = 0.0,
    ) -> None:
        self.console, self.duration = console, 0.0
        self.worker, self.baseline, self.tolerance = worker, baseline, tolerance
        self.line: StatusLine | None = None

    def start(self, host: str, scenario: Scenario, reason: str) -> None:
        self.duration = scenario.duration  # as it will run: overrides applied
        if self.console.quiet:
            return
        if self.worker is not None:
            self.console.info(
                f"worker for {host} ({reason}): joining the master at {self.worker}; Locust retries "
                "for up to 5 minutes (see locust.log), Ctrl-C to stop"
            )
            return
        mode = f", arrival rate {scenario.arrival_rate:g}/s" if scenario.arrival_rate else ""
        self.console.info(
            f"{scenario.users} users for {scenario.duration:g}s{mode} → {host} ({reason})"
        )
        if self.baseline is not None:
            self.console.info(f"comparing with {self.baseline} (tolerance {self.tolerance:g}%)")
        self.line = self.console.status_line(plain_every=10.0)

    def __call__(self, s: Status) -> None:
        if self.console.quiet:
            return
        if self.line is not None:
            self.line.update(self.text(s))

    def text(self, s: Status) -> str:
        """The status line: elapsed of planned seconds (never past them: Locust's shutdown
        is not run time), and requests/s as the result defines it, requests over the
        seconds since the first request."""
        elapsed = min(s.get("elapsed", 0.0), self.duration) if self.duration else 0.0
        p95 = s.get("p95_ms")
        requests, measured = s.get("requests", 0), s.get("measured_s", 0.0)
        rps = requests / measured if measured > 0 else 0.0
        workers = f" w{s['workers']}" if s.get("workers") else ""
        return (
            f"{elapsed:3.0f}/{self.duration:.0f}s  users {s.get('users', 0)}{workers}  {rps:7.0f} req/s  "
            f"p95 {p95 if p95 is not None else '-'} ms  {requests:,} req  "
            f"{s.get('failures', 0):,} fail"
        )

    def stop(self) -> None:
        if self.line is not None:
            self.line.stop()


@click.command()
@click.argument("scenario", required=False)
@click.option(
    "--scenarios",
    "scenarios_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    envvar="VOTS_OPS_SCENARIOS",
    help="Scenario file (env VOTS_OPS_SCENARIOS) [default: loadtests/scenarios.yaml, else the bundled one].",
)
@stack_option
@click.option("--list", "list_only", is_flag=True, help="List the scenarios and exit.")
@click.option(
    "--host",
    default=None,
    help="Target base URL, e.g. https://127.0.0.1:8443 (default: the scenario's, then https://DOMAIN from stack.yaml).",
)
@click.option(
    "--allow-host",
    multiple=True,
    metavar="HOST",
    help="Allow load on this host name or address, which is not this machine (loopback and this machine always are; the stack's domain is not). Repeatable.",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Do not verify the target's TLS certificate (verified by default, except on loopback).",
)
@click.option(
    "--users", type=FiniteInt(1, 100_000), default=None, help="Override the scenario's users."
)
@click.option(
    "--spawn-rate",
    type=FiniteFloat(0, 10_000, min_open=True),
    default=None,
    help="Override users started per second.",
)
@click.option(
    "--duration",
    callback=parsed(lazy("ops.loadtest.scenario", "parse_run_time")),
    default=None,
    help="Override the run time, e.g. 30s, 5m, 1m30s or 90 (seconds).",
)
@click.option(
    "--arrival-rate",
    callback=parsed(lazy("ops.loadtest.scenario", "parse_rate")),
    default=None,
    help="Override the arrival rate (requests/s), e.g. 200/s.",
)
@click.option(
    "--max-requests",
    type=FiniteInt(1, 10**9),
    default=None,
    help="Stop after about this many requests.",
)
@click.option(
    "--processes",
    type=FiniteInt(1, 1024),
    default=None,
    help="Locust worker processes on this machine [default: all cores].",
)
@click.option(
    "--master",
    is_flag=True,
    help="Run as Locust master for workers on other machines; judges the SLOs.",
)
@click.option(
    "--expect-workers",
    type=FiniteInt(1, 10_000),
    default=1,
    show_default=True,
    help="With --master: start once this many workers joined (waits up to 60 s).",
)
@click.option(
    "--master-bind-host",
    default="*",
    show_default=True,
    help="With --master: interface to listen on for workers.",
)
@click.option(
    "--worker",
    is_flag=True,
    help="Run as a Locust worker of --master-host (combine with --processes).",
)
@click.option(
    "--master-host",
    default="127.0.0.1",
    show_default=True,
    help="With --worker: the master's address.",
)
@click.option(
    "--master-port",
    type=FiniteInt(1, 65535),
    default=5557,
    show_default=True,
    help="Master's port (both sides).",
)
@click.option(
    "--out",
    "runs_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("loadtest-runs"),
    show_default=True,
    envvar="VOTS_OPS_RUNS",
    help="Where run directories go (env VOTS_OPS_RUNS).",
)
@click.option(
    "--baseline",
    type=click.Path(path_type=Path),
    default=None,
    help="An earlier result.json (or its run directory): fail on regressions beyond --tolerance.",
)
@click.option(
    "--tolerance",
    callback=_tolerance,
    default="10%",
    show_default=True,
    help="Allowed worsening against --baseline.",
)
@click.option(
    "--force",
    "force_baseline",
    is_flag=True,
    help="Compare with a --baseline from another scenario or target (with a warning).",
)
@format_option("table", "json")
@quiet_option
@click.pass_obj
def loadtest(
    console: Console,
    scenario: str | None,
    scenarios_path: Path | None,
    stack_path: str,
    list_only: bool,
    host: str | None,
    allow_host: tuple[str, ...],
    insecure: bool,
    users: int | None,
    spawn_rate: float | None,
    duration: float | None,
    arrival_rate: float | None,
    max_requests: int | None,
    processes: int | None,
    master: bool,
    expect_workers: int,
    master_bind_host: str,
    worker: bool,
    master_host: str,
    master_port: int,
    runs_dir: Path,
    baseline: Path | None,
    tolerance: float,
    force_baseline: bool,
    fmt: str,
) -> None:
    """Run a Locust scenario headless and judge its SLOs.

    \b
    Sends load only to loopback, this machine, or a host given with
    --allow-host (the stack's domain too); every Locust process connects only
    to the addresses checked. Verifies TLS certificates except on loopback
    (--insecure skips it). Checks that the target answers first. Writes
    a run directory (result.json, report.html, locust.html, locust.log).
    Exit 0 when every SLO holds, 1 on a breach or regression, 2 on bad input
    or an unreachable target, 3 when Locust fails while running.

    \b
    Examples:
      vots-ops loadtest smoke --host https://127.0.0.1:8443
      vots-ops loadtest slo --baseline loadtest-runs/slo-20261125T101500Z
      vots-ops loadtest slo --master --expect-workers 2     # machine A
      vots-ops loadtest slo --worker --master-host A        # machines B, C
    """
    from ops.errors import OpsError
    from ops.loadtest import Overrides, check_outcome, default_scenarios, run_scenario

    if master and worker:
        raise click.UsageError("--master and --worker exclude each other")
    ctx = click.get_current_context()

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)

    for name, needs, ok in (
        ("expect_workers", "--master", master),
        ("master_bind_host", "--master", master),
        ("master_host", "--worker", worker),
        ("master_port", "--master or --worker", master or worker),
    ):
        if given(name) and not ok:
            raise click.UsageError(f"--{name.replace('_', '-')} only applies with {needs}")
    if master and processes:
        raise click.UsageError(
            "--processes applies to workers; start workers with --worker --processes N"
        )
    if list_only:  # --list reads the scenario file and prints it, in --format
        refuse_unused(
            ctx,
            [p.name or "" for p in ctx.command.params if p.name not in _LIST_USES],
            "with --list",
        )
    if worker:
        refuse_unused(ctx, _MASTER_DECIDES, "with --worker (its master runs and judges the load)")
    if baseline is None:
        refuse_unused(ctx, ["tolerance", "force_baseline"], "without --baseline")
    scenarios_path = scenarios_path or default_scenarios()
    if list_only:
        _list(console, scenarios_path, fmt)
        return
    if not scenario:
        raise click.UsageError("give a SCENARIO (see --list)")
    mode: Mode = "master" if master else "worker" if worker else "local"
    import os

    from ops.loadtest.pinning import BENCH_UNGUARDED_ENV

    if os.environ.get(BENCH_UNGUARDED_ENV) == "1":
        console.alert(
            f"{BENCH_UNGUARDED_ENV}=1: the connect-time target guard is off (for bench/ only); "
            "the URL check still stops a run that leaves the target"
        )
    progress = _Progress(
        console,
        worker=f"{master_host}:{master_port}" if worker else None,
        baseline=baseline,
        tolerance=tolerance * 100,
    )
    try:
        outcome = run_scenario(
            scenario,
            scenarios_path=scenarios_path,
            stack_path=Path(stack_path),
            host=host,
            allow_hosts=allow_host,
            insecure=insecure,
            overrides=Overrides(users, spawn_rate, duration, arrival_rate, max_requests),
            processes=processes,
            mode=mode,
            expect_workers=expect_workers,
            master_host=master_host,
            master_port=master_port,
            master_bind_host=master_bind_host,
            runs_dir=runs_dir,
            baseline=baseline,
            tolerance=tolerance,
            force_baseline=force_baseline,
            on_status=progress,
            on_start=progress.start,
        )
    except OpsError as exc:
        raise exc.name_fields(FLAGS) from None
    finally:
        progress.stop()
    if outcome.result is None:  # a worker: its master judges the run
        check_outcome(outcome)
        return
    for why in outcome.result.get("baseline_mismatch") or []:
        console.warning(f"compared anyway (--force): the baseline is {why}")
    if fmt == "json":
        console.json(outcome.result)
    elif not console.quiet:
        from ops.loadtest.report import tables

        for renderable in tables(outcome.result):
            console.print(renderable)
    check_outcome(outcome)


#: What ``--list`` reads; any other option typed with it is refused.
_LIST_USES = {"list_only", "scenarios_path", "fmt", "quiet"}
#: What a worker takes from its master (users, rates, run time, request cap) or
#: never produces (a result to compare or print, a run directory to keep); a
#: worker uses the scenario's user classes, --host, --allow-host, --processes,
#: --master-host and --master-port.
_MASTER_DECIDES = (
    "users",
    "spawn_rate",
    "duration",
    "arrival_rate",
    "max_requests",
    "runs_dir",
    "baseline",
    "tolerance",
    "force_baseline",
    "fmt",
)


#: How the command line spells the inputs of ops.loadtest.run_scenario, for the
#: library's errors that name them.
FLAGS = {
    "host": "--host URL",
    "stack_path": "--stack FILE",
    "allow_hosts": "--allow-host HOST",
    "insecure": "--insecure",
    "users": "--users",
    "spawn_rate": "--spawn-rate",
    "duration": "--duration",
    "arrival_rate": "--arrival-rate",
    "max_requests": "--max-requests",
    "force_baseline": "--force to compare anyway",
}


def _list(console: Console, path: Path, fmt: str) -> None:
    from rich.table import Table

    from ops.loadtest.scenario import load_scenarios

    loaded = load_scenarios(path)
    if fmt == "json":
        console.json(
            {
                "file": str(path),
                "scenarios": {
                    name: {
                        "description": sc.description,
                        "users": sc.users,
                        "duration_s": sc.duration,
                        "arrival_rate": sc.arrival_rate,
                        "slos": {k: [t.text for t in v] for k, v in sc.slo.items()},
                    }
                    for name, sc in loaded.file.scenarios.items()
                },
            }
        )
        return
    t = Table(title=str(path), title_justify="left")
    for col in ("scenario", "users", "duration", "arrival rate", "SLOs", "description"):
        t.add_column(col)
    for name, sc in loaded.file.scenarios.items():
        t.add_row(
            name,
            str(sc.users),
            f"{sc.duration:g}s",
            f"{sc.arrival_rate:g}/s" if sc.arrival_rate else "-",
            str(sum(len(v) for v in sc.slo.values())),
            sc.description,
        )
    console.print(t)
