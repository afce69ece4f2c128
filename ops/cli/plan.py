"""``vots-ops plan``: parse options, call ``ops.plan``, print, choose the exit code."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ops.cli.options import format_option, quiet_option, stack_option
from ops.console import Console

if TYPE_CHECKING:
    from pathlib import Path


@click.command()
@stack_option
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write the files under DIRECTORY instead of next to the stack file.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Write nothing; exit 1 with a unified diff if the files on disk drift.",
)
@click.option(
    "--dry-run", is_flag=True, help="Show the diff that a run would apply, without writing."
)
@click.option(
    "--recommendations",
    type=click.Path(dir_okay=False),
    default=None,
    help="Apply a file from `vots-ops report recommend --format yaml` to the services' CPU and "
    "memory bounds; a service that gets less than its advised limit is warned about.",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Also check the output with nginx -t, promtool, the compose-spec schema and docker-compose config.",
)
@format_option("table", "json")
@quiet_option
@click.pass_obj
def plan(
    console: Console,
    stack_path: str,
    out_dir: str | None,
    check: bool,
    dry_run: bool,
    recommendations: str | None,
    verify: bool,
    fmt: str,
) -> None:
    """Fit resources to the VM and render docker-compose.yml, nginx/ and prometheus/.

    Reads the stack file, gives every container CPU and memory reservations and
    limits that fill the host without overcommitting it, and renders the files
    from the Jinja2 templates. Every write is atomic.
    """
    from pathlib import Path

    from ops.errors import CapacityError, DriftError, SpecError, ToolFailed
    from ops.files import diff_all, write_all
    from ops.plan import fit, render_files
    from ops.stack import load_stack, missing_build_contexts

    if check and dry_run:
        raise click.UsageError("--check and --dry-run cannot be combined")
    if out_dir == "":
        raise click.BadParameter("must not be empty", param_hint="'--out'")
    try:
        exists = Path(stack_path).exists()
    except OSError as exc:
        raise SpecError(f"cannot read: {exc.strerror}", path=stack_path) from None
    if not exists:
        raise SpecError("file not found (pass --stack PATH or set VOTS_OPS_STACK)", path=stack_path)
    loaded = load_stack(stack_path)
    advice: dict[str, Any] | None = None
    applied: dict[str, dict[str, Any]] | None = None
    if recommendations:
        from ops.report.advice import apply_recommendations, load_recommendations

        advice = load_recommendations(Path(recommendations))
        loaded, skipped = apply_recommendations(loaded, advice, recommendations)
        for name in skipped:
            console.warning(f"{recommendations}: {name} is not a service of {stack_path}; skipped")
    try:
        fitted = fit(loaded)
    except CapacityError as exc:
        if not advice:
            raise
        raise CapacityError(
            f"{exc.detail} (with the advised minimums from {recommendations})",
            path=exc.path,
            line=exc.line,
            key=exc.key,
        ) from None
    if advice:
        from ops.report.advice import advice_in_plan

        in_plan = advice_in_plan(loaded, fitted, advice)
        for item in in_plan.values():
            if item.overrides:
                console.warning(item.line())
        applied = {name: item.as_json() for name, item in in_plan.items()}
    for problem in missing_build_contexts(loaded):
        console.warning(problem)
    out = Path(out_dir) if out_dir is not None else Path(stack_path).resolve().parent
    files = render_files(loaded, fitted, out)
    diff = diff_all(out, files)
    changed = sorted({line[6:].rstrip() for line in diff.splitlines() if line.startswith("+++ b/")})

    def show(verb: str) -> None:
        _print(console, fitted, fmt, out, files, changed, verb, Path(stack_path).name, applied)

    if verify:
        from ops.plan.verify import verify_plan

        failed = [r for r in verify_plan(loaded, fitted) if not r.ok]
        if failed:
            first = failed[0]
            raise ToolFailed(f"{first.name} rejected the rendered files: {first.summary}")
        console.success(
            "nginx -t, promtool, compose schema and docker-compose config accept the files"
        )

    if check:
        if diff:
            message = (
                f"{len(changed)} file(s) differ from {stack_path}; run `vots-ops plan` to update"
            )
            if fmt == "json":  # stdout stays JSON; the diff is for people
                show("differs")
                raise DriftError(message, "")
            raise DriftError(message, diff)
        show("unchanged")
        console.success(f"{len(files)} files match {stack_path}")
        return
    if dry_run:
        if fmt == "table":
            console.text(diff)
        show("would-write")
        console.info(f"dry run: {len(changed)} file(s) would change, nothing written")
        return
    if changed:
        write_all(out, {name: files[name] for name in changed})
    show("written")
    console.success(
        f"wrote {len(changed)} file(s) to {out} ({len(files) - len(changed)} unchanged)"
    )


def _print(
    console: Console,
    fitted: object,
    fmt: str,
    out: Path,
    files: dict[str, str],
    changed: list[str],
    verb: str,
    source: str,
    advice: dict[str, dict[str, Any]] | None = None,
) -> None:
    from ops.plan.report import plan_json, plan_table

    status = {name: (verb if name in changed else "unchanged") for name in files}
    if fmt == "json":
        console.json(plan_json(fitted, out, status, advice))  # type: ignore[arg-type]
    elif not console.quiet:
        console.print(plan_table(fitted, source))  # type: ignore[arg-type]
