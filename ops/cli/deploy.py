"""``vots-ops deploy``, ``status`` and ``down``: thin over ``ops.deploy.run``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ops.cli.options import Duration, format_option, quiet_option, stack_option
from ops.console import Console

if TYPE_CHECKING:
    from ops.deploy.run import DeployResult, Status


def _out_option(f: Any) -> Any:
    return click.option(
        "--out",
        "out_dir",
        type=click.Path(file_okay=False),
        default=None,
        help="Where plan wrote the files (default: the stack file's directory).",
    )(f)


def _recommendations_option(f: Any) -> Any:
    return click.option(
        "--recommendations",
        type=click.Path(dir_okay=False),
        default=None,
        help="The recommendations file plan was run with (the plan is checked with it).",
    )(f)


def _seconds(value: float | None) -> str:
    from ops.units import format_duration

    return "-" if value is None else format_duration(value)


def status_table(st: Status) -> Any:
    from rich.table import Table

    from ops.units import format_bytes, format_cpus

    table = Table(title=f"{st.project} ({st.compose})", title_justify="left")
    for name in ("service", "container", "image", "state", "up", "restarts", "cpu limit"):
        table.add_column(name)
    for name in ("memory limit", "used", "vs plan"):
        table.add_column(name)
    for r in st.rows:
        image = r.image + (f"\nstand-in for {r.standin_for}" if r.standin_for else "")
        state = r.state if r.health == "none" else f"{r.state}, {r.health}"
        restarts = str(r.restarts) + (" OOM-killed" if r.oom_killed else "")
        cpu = "-" if r.cpu_limit is None else format_cpus(r.cpu_limit)
        if r.cpu_planned is not None and r.cpu_planned != r.cpu_limit:
            cpu += f" (plan {format_cpus(r.cpu_planned)})"
        mem = "-" if r.mem_limit is None else format_bytes(r.mem_limit)
        if r.mem_planned is not None and r.mem_planned != r.mem_limit:
            mem += f" (plan {format_bytes(r.mem_planned)})"
        used = []
        if r.cpu_used is not None:
            used.append(f"{r.cpu_used:.2f} CPU")
        if r.mem_used is not None:
            used.append(format_bytes(r.mem_used))
        verdict = (
            "[green]as planned[/]"
            if not r.differences
            else "[red]differs[/]: "
            + "; ".join(f"{d.field} {d.applied} (plan {d.planned})" for d in r.differences)
        )
        table.add_row(
            r.service,
            r.container,
            image,
            state,
            _seconds(r.uptime),
            restarts,
            cpu,
            mem,
            ", ".join(used) or "-",
            verdict,
        )
    return table


def status_json(st: Status) -> dict[str, Any]:
    return {
        "project": st.project,
        "compose": st.compose,
        "ok": st.ok,
        "missing": list(st.missing),
        "omitted": list(st.omitted),
        "containers": [
            {
                "service": r.service,
                "container": r.container,
                "image": r.image,
                "standin_for": r.standin_for,
                "state": r.state,
                "health": r.health,
                "uptime_s": r.uptime,
                "restarts": r.restarts,
                "oom_killed": r.oom_killed,
                "cpu_limit_m": r.cpu_limit,
                "cpu_planned_m": r.cpu_planned,
                "memory_limit": r.mem_limit,
                "memory_planned": r.mem_planned,
                "cpu_used": r.cpu_used,
                "memory_used": r.mem_used,
                "differences": [
                    {"field": d.field, "planned": d.planned, "applied": d.applied}
                    for d in r.differences
                ],
                "ok": r.ok,
            }
            for r in st.rows
        ],
    }


def _notes(console: Console, st: Status) -> None:
    for name in st.omitted:
        console.warning(f"{name}: left out of this deployment (--without)")
    for name in st.missing:
        console.error(f"{name}: fewer running containers than the plan's replicas")
    for r in st.rows:
        if r.standin_for:
            console.info(f"{r.container}: offline stand-in for {r.standin_for}")


def _result_json(result: DeployResult) -> dict[str, Any]:
    return {
        "seconds": result.seconds,
        "images": [
            {
                "service": i.service,
                "ref": i.ref,
                "use": i.use,
                "action": i.action,
                "seconds": i.seconds,
                "standin_for": i.standin_for,
            }
            for i in result.images
        ],
        "actions": dict(result.actions),
        "healthy_after_s": dict(result.healthy_after),
        "rollouts": {
            name: {
                "replaced": r.replaced,
                "edge_drain_s": r.drain_seconds,
                "drain_timeouts": r.drain_timed_out,
            }
            for name, r in result.rollouts.items()
        },
        "status": status_json(result.status),
    }


@click.command()
@stack_option
@_out_option
@_recommendations_option
@click.option(
    "--without",
    multiple=True,
    metavar="SERVICE",
    help="Leave a service out (one that has no image here); repeatable.",
)
@click.option(
    "--offline",
    is_flag=True,
    help="Never pull: use the engine's images, build the rest, and the stack's "
    "offline stand-ins for images that are not here.",
)
@click.option(
    "--no-build",
    "no_build",
    is_flag=True,
    help="Fail instead of building an image that is missing.",
)
@click.option(
    "--health-timeout",
    type=Duration(1, 3600),
    default="300s",
    show_default=True,
    help="How long each service may take to become healthy (e.g. 90s, 5m).",
)
@click.option(
    "--drain-timeout",
    type=Duration(1, 3600),
    default="120s",
    show_default=True,
    help="How long the edge's old workers may take to finish their requests on a reload.",
)
@format_option("table", "json")
@quiet_option
@click.pass_context
def deploy(
    ctx: click.Context,
    stack_path: str,
    out_dir: str | None,
    recommendations: str | None,
    without: tuple[str, ...],
    offline: bool,
    no_build: bool,
    health_timeout: float,
    drain_timeout: float,
    fmt: str,
) -> None:
    """Bring the planned stack up on the Docker engine, healthy and verified.

    Refuses a plan whose files drifted from the stack, builds the images that
    are missing, starts the services in dependency order and waits for each to
    be healthy, replaces changed replicas one at a time (the edge follows), then
    checks every container against the plan with docker inspect. Exit 1 when a
    service does not become healthy or differs from the plan.
    """
    from ops.deploy.run import DeployFailed, Events
    from ops.deploy.run import deploy as run_deploy

    console: Console = ctx.obj
    board = console.status_board()

    def image_done(r: Any) -> None:
        board.drop(r.service)
        console.info(
            f"{r.service}: image {r.use} {r.action.replace('-', ' ')}"
            + (f" in {r.seconds:.1f}s" if r.did_work else "")
        )

    def service_done(name: str, action: str, seconds: float) -> None:
        board.drop(name)
        console.success(f"{name}: {action}, healthy in {seconds:.1f}s")

    events = Events(
        image_start=lambda w, what: board.set(w.name, what),
        image_done=image_done,
        service_start=lambda name, action, n: board.set(name, f"{action}, {n} replica(s)"),
        service_progress=lambda name, ready, n: board.set(name, f"{ready}/{n} healthy"),
        service_done=service_done,
        note=console.info,
        warning=console.warning,
    )
    try:
        result = run_deploy(
            stack_path,
            out_dir,
            recommendations=recommendations,
            without=without,
            offline=offline,
            build=not no_build,
            health_timeout=health_timeout,
            drain_timeout=drain_timeout,
            events=events,
            on_warning=console.warning,
        )
    except DeployFailed as exc:
        board.stop()
        if exc.details:
            console.evidence(exc.details)
        raise
    finally:
        board.stop()
    if fmt == "json":
        console.json(_result_json(result))
        return
    if not console.quiet:
        console.print(status_table(result.status))
    _notes(console, result.status)
    console.success(
        f"deployed {len(result.actions)} service(s) in {result.seconds:.1f}s; "
        "every container as planned"
    )


@click.command()
@stack_option
@_out_option
@_recommendations_option
@format_option("table", "json")
@quiet_option
@click.pass_context
def status(
    ctx: click.Context,
    stack_path: str,
    out_dir: str | None,
    recommendations: str | None,
    fmt: str,
) -> None:
    """Show every container of the stack: health, uptime, restarts, limits vs the plan.

    Exit 1 when a container is unhealthy, was OOM-killed, a service has fewer
    replicas than planned, or anything differs from the plan.
    """
    from ops.deploy.run import load
    from ops.deploy.run import status as run_status
    from ops.errors import CheckFailed

    console: Console = ctx.obj
    d = load(
        stack_path,
        out_dir,
        recommendations=recommendations,
        on_warning=console.warning,
        refuse_drift=False,
    )
    st = run_status(d)
    if fmt == "json":
        console.json(status_json(st))
    elif not console.quiet:
        console.print(status_table(st))
        _notes(console, st)
    if not st.rows:
        raise CheckFailed(
            f"no container of project {st.project!r} is on this engine (vots-ops deploy starts it)"
        )
    if not st.ok:
        bad = [r.container for r in st.rows if not r.ok] + list(st.missing)
        raise CheckFailed(f"not as planned: {', '.join(bad)}")
    if fmt != "json":
        console.success(f"{len(st.rows)} container(s) healthy and as planned")


@click.command()
@stack_option
@_out_option
@click.option(
    "--volumes", is_flag=True, help="Also remove the stack's volumes (its data): asks first."
)
@click.option("--yes", is_flag=True, help="Do not ask before removing volumes.")
@quiet_option
@click.pass_context
def down(
    ctx: click.Context, stack_path: str, out_dir: str | None, volumes: bool, yes: bool
) -> None:
    """Stop and remove the stack's containers; volumes stay unless --volumes."""
    from ops.cli.options import refuse_unused
    from ops.deploy.run import Deployment, load
    from ops.deploy.run import down as run_down

    console: Console = ctx.obj
    if not volumes:
        refuse_unused(ctx, ["yes"], "without --volumes")
    # Stopping never waits for the plan: the project and the files on disk are enough.
    d: Deployment = load(stack_path, out_dir, refuse_drift=False, on_warning=console.warning)
    if volumes and not yes:
        click.confirm(
            f"remove the volumes of project {d.project!r} (their data is lost)?",
            abort=True,
            err=True,
        )
    names = run_down(d, volumes=volumes)
    kept = "" if volumes else "; volumes kept"
    console.success(f"stopped and removed {len(names)} container(s) of {d.project}{kept}")
