"""``vots-ops images build`` and ``images bootstrap``: thin over ``ops.images``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ops.cli.options import format_option, quiet_option, stack_option
from ops.console import Console

if TYPE_CHECKING:
    from ops.images.build import ImageResult


@click.group()
def images() -> None:
    """Build the stack's images on a local base, with or without a registry."""


def _table(results: list[ImageResult]) -> Any:
    from rich.table import Table

    table = Table()
    for name in ("service", "image", "", "seconds", "note"):
        table.add_column(name)
    for r in results:
        note = f"offline stand-in for {r.standin_for}" if r.standin_for else ""
        if r.use != r.ref and not r.standin_for:
            note = f"also tagged {r.ref}"
        table.add_row(r.service, r.use, r.action.replace("-", " "), f"{r.seconds:.1f}", note)
    return table


@images.command()
@stack_option
@click.option(
    "--service",
    "services",
    multiple=True,
    metavar="NAME",
    help="Only this service's image; repeatable (default: every one).",
)
@click.option(
    "--without",
    multiple=True,
    metavar="SERVICE",
    help="Skip a service (one that has no image here); repeatable.",
)
@click.option(
    "--offline",
    is_flag=True,
    help="Never pull: build offline stand-ins for images that are not on the engine.",
)
@format_option("table", "json")
@quiet_option
@click.pass_context
def build(
    ctx: click.Context,
    stack_path: str,
    services: tuple[str, ...],
    without: tuple[str, ...],
    offline: bool,
    fmt: str,
) -> None:
    """Build every image the stack builds, in dependency order, cached by content.

    Each image is tagged <repository>:<digest of what went into it>: a tag that
    exists is reused. Images the stack only names are used when present, pulled
    otherwise; where that fails and the service declares `offline:`, an offline
    stand-in is built from Debian's packages (tagged vots-standin/<name>).
    """
    from ops.errors import OpsError
    from ops.images.build import resolve
    from ops.stack import load_stack, workloads

    console: Console = ctx.obj
    loaded = load_stack(stack_path)
    names = {w.name for w in workloads(loaded.stack)}
    for name in (*services, *without):
        if name not in names:
            raise OpsError(
                f"{name}: not a service of {stack_path} (services: {', '.join(sorted(names))})",
                fields=("services",),
            )
    line = console.status_line()
    done: list[ImageResult] = []
    try:
        done = resolve(
            loaded,
            only=services or None,
            without=without,
            offline=offline,
            on_start=lambda w, what: line.update(f"{w.name}: {what}"),
            on_done=lambda r: line.update(f"{r.service}: {r.action}"),
        )
    finally:
        line.stop()
    if fmt == "json":
        console.json(
            [
                {
                    "service": r.service,
                    "ref": r.ref,
                    "use": r.use,
                    "action": r.action,
                    "seconds": r.seconds,
                    "standin_for": r.standin_for,
                }
                for r in done
            ]
        )
        return
    if not console.quiet:
        console.print(_table(done))
    built = sum(1 for r in done if r.did_work)
    console.success(f"{built} image(s) built or pulled, {len(done) - built} reused")


@images.command()
@click.option(
    "--tag",
    default=None,
    help="The base image's tag (default: vots-local/debian:bookworm-minbase).",
)
@quiet_option
@click.pass_context
def bootstrap(ctx: click.Context, tag: str | None) -> None:
    """Build the local Debian base without a registry (debootstrap | docker import).

    Uses the Debian mirror apt uses here; cached by tag, so a second run does
    nothing. The service Dockerfiles build on it through BASE_IMAGE.
    """
    import time

    from ops.images.base import IMAGE, TIMINGS, debian_base_image, image_exists
    from ops.proc import which

    console: Console = ctx.obj
    wanted = tag or IMAGE
    existed = image_exists(which("docker"), wanted)
    start = time.monotonic()
    line = console.status_line()
    line.update(f"{wanted}: debootstrap bookworm (minbase) and docker import")
    try:
        debian_base_image(wanted)
    finally:
        line.stop()
    if existed:
        console.success(f"{wanted} is already on the engine: nothing built")
    else:
        steps = ", ".join(f"{k} {v:.1f}s" for k, v in TIMINGS.items() if k != "total")
        console.success(f"built {wanted} in {time.monotonic() - start:.1f}s ({steps})")
