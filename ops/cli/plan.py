"""``vots-ops plan``: parse options, call ``ops.plan``, print, choose the exit code."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import click

from ops.cli.options import format_option, quiet_option, refuse_unused, stack_option
from ops.console import Console

if TYPE_CHECKING:
    from ops.plan.pipeline import Mode, PlanResult


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
    "--target",
    type=click.Choice(["compose", "swarm", "k8s"]),
    default="compose",
    show_default=True,
    help="compose: docker-compose.yml for one VM; swarm: docker-stack.yml for `docker stack "
    "deploy`; k8s: manifests under k8s/ with a kustomization.yaml. Each target keeps its "
    "own files; what it cannot carry as planned is said in a warning.",
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
    help="Also check what was rendered with the real tools: nginx -t, promtool (when "
    "Prometheus is on) and the compose-spec schema and docker-compose config (compose), "
    "docker stack config (swarm), or the Kubernetes schemas of two versions in strict mode "
    "and cross-object checks (k8s); and warn about every file the stack references (TLS "
    "certificate and key, secrets, build contexts) that does not exist.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="With --verify: a referenced file that does not exist fails the check (exit 1).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace files that have no generated-by header (hand-written ones); "
    "without it they are never overwritten.",
)
@format_option("table", "json")
@quiet_option
@click.pass_context
def plan(
    ctx: click.Context,
    stack_path: str,
    out_dir: str | None,
    target: str,
    check: bool,
    dry_run: bool,
    recommendations: str | None,
    verify: bool,
    strict: bool,
    force: bool,
    fmt: str,
) -> None:
    """Fit resources to the VM and render the files for compose, a swarm or Kubernetes.

    The default target renders docker-compose.yml, nginx/ and prometheus/;
    --target swarm renders swarm/docker-stack.yml and the files its configs
    carry; --target k8s renders k8s/ with a kustomization.yaml.

    Reads the stack file, gives every container CPU and memory reservations and
    limits that fill the host without overcommitting it, and renders the files
    from the Jinja2 templates. Files without the generated-by header are never
    replaced (unless --force); generated files no longer rendered are removed.
    All files are written or none is.
    """
    from pathlib import Path

    from ops.errors import DriftError, SpecError
    from ops.plan.pipeline import ForeignFiles, Target, plan_stack

    console: Console = ctx.obj
    if check and dry_run:
        raise click.UsageError("--check and --dry-run cannot be combined")
    if strict and not verify:
        raise click.UsageError("--strict needs --verify")
    if check or dry_run:  # --force only lets a write replace hand-written files
        refuse_unused(ctx, ["force"], "with --check" if check else "with --dry-run")
    if out_dir == "":
        raise click.BadParameter("must not be empty", param_hint="'--out'")
    try:
        exists = Path(stack_path).exists()
    except OSError as exc:
        raise SpecError(f"cannot read: {exc.strerror}", path=stack_path) from None
    if not exists:
        raise SpecError("file not found (pass --stack PATH or set VOTS_OPS_STACK)", path=stack_path)
    mode: Mode = "check" if check else "dry-run" if dry_run else "write"
    try:
        result = plan_stack(
            stack_path,
            out_dir,
            mode=mode,
            recommendations=recommendations,
            verify=verify,
            strict=strict,
            force=force,
            on_warning=console.warning,
            target=cast(Target, target),
        )
    except ForeignFiles as exc:
        raise ForeignFiles(exc.paths, f"--force replaces {exc.them}") from None
    if result.verify is not None:
        ran = ", ".join(_check_name(n) for n in result.verify.ran)
        console.success(f"{ran} accept the files")
    for swept in result.swept:
        console.info(f"removed {swept}, left by an interrupted run")

    def show() -> None:
        _print(console, result, fmt)

    if mode == "check":
        if result.drift:
            fix = _fix_command(ctx, stack_path, out_dir, recommendations, target)
            message = f"{result.drift_summary(stack_path)}; run `{fix}` to update"
            if result.foreign:
                names = ", ".join(result.foreign)
                message += f" (with --force: {names} has no generated-by header)"
            if fmt == "json":  # stdout stays JSON; the diff is for people
                show()
                raise DriftError(message, "")
            raise DriftError(message, result.diff)
        show()
        console.success(result.drift_summary(stack_path))
        return
    if mode == "dry-run":
        if fmt == "table":
            console.text(result.diff)
        show()
        n = len(result.changed)
        gone = f", {len(result.stale)} would be removed" if result.stale else ""
        console.info(f"dry run: {n} file(s) would change{gone}, nothing written")
        for name in result.foreign:
            console.warning(
                f"{result.out_dir / name} has no generated-by header; "
                "a run would refuse to replace it (--force replaces it)"
            )
        return
    show()
    gone = f", removed {len(result.stale)} no longer rendered" if result.stale else ""
    console.success(
        f"wrote {len(result.changed)} file(s) to {result.out_dir} "
        f"({len(result.unchanged)} unchanged{gone})"
    )


_CHECK_NAMES = {
    "nginx": "nginx -t",
    "promtool": "promtool",
    "compose-schema": "compose schema",
    "docker-compose": "docker-compose config",
    "docker-stack": "docker stack config",
    "k8s-kustomization": "the kustomization check",
    "k8s-cross-check": "the cross-object checks",
}


def _check_name(name: str) -> str:
    if name.startswith("k8s-schema-"):
        return f"the Kubernetes {name.removeprefix('k8s-schema-')} schemas (strict)"
    return _CHECK_NAMES.get(name, name)


def _fix_command(
    ctx: click.Context,
    stack_path: str,
    out_dir: str | None,
    recommendations: str | None,
    target: str = "compose",
) -> str:
    """The command that brings the files up to date: this run's inputs, quoted for a shell."""
    import shlex

    argv = ["vots-ops", "plan"]
    if ctx.get_parameter_source("stack_path") is not click.core.ParameterSource.DEFAULT:
        argv += ["--stack", stack_path]
    if out_dir is not None:
        argv += ["--out", out_dir]
    if target != "compose":
        argv += ["--target", target]
    if recommendations is not None:
        argv += ["--recommendations", recommendations]
    return " ".join(shlex.quote(a) for a in argv)


def _print(console: Console, result: PlanResult, fmt: str) -> None:
    from ops.plan.report import plan_json, plan_table

    if fmt == "json":
        advice = (
            {name: item.as_json() for name, item in result.advice.items()}
            if result.advice is not None
            else None
        )
        console.json(plan_json(result.plan, result.out_dir, dict(result.status()), advice))
    elif not console.quiet:
        console.print(plan_table(result.plan, result.source))
