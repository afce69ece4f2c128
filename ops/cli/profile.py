"""``vots-ops profile``: sample a Python, Go or Rust service and show where the time goes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from ops.cli.options import format_option, lazy, parsed, quiet_option, stack_option
from ops.console import Console, StatusLine


class _DefaultGroup(click.Group):
    """``vots-ops profile agent`` runs a recipe; ``vots-ops profile diff A B`` is a subcommand."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        if args and args[0] in self.commands:
            return super().resolve_command(ctx, args)
        return "run", self.commands["run"], args

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["run", *args]
        return super().parse_args(ctx, args)


class _Ticker:
    """Progress on stderr while sampling: a redrawn line on a terminal, nothing otherwise."""

    def __init__(self, console: Console, duration: float, label: str) -> None:
        self.console, self.duration, self.label = console, duration, label
        self.line: StatusLine | None = None

    def __enter__(self) -> _Ticker:
        self.line = self.console.status_line()
        return self

    def __call__(self, elapsed: float) -> None:
        if self.line is not None:
            left = max(0.0, self.duration - elapsed)
            self.line.update(
                f"sampling {self.label}: {elapsed:.0f}/{self.duration:.0f}s, {left:.0f}s left"
            )

    def __exit__(self, *exc: object) -> None:
        if self.line is not None:
            self.line.stop()


@click.group(cls=_DefaultGroup)
def profile() -> None:
    """Profile a Python, Go or Rust service: py-spy, pprof or perf, one output.

    `vots-ops profile [RECIPE] [OPTIONS]` is short for `vots-ops profile run ...`;
    see `vots-ops profile run --help` for the options.

    \b
    Examples:
      vots-ops profile agent                         # profiles/agent.yaml: every agent replica
      vots-ops profile --match 'uvicorn .*agent' --duration 20s
      vots-ops profile --container vots_rag_1 --native
      vots-ops profile --language go --pprof-url http://127.0.0.1:6060
      vots-ops profile --pid 4242 --language rust    # perf record --call-graph dwarf
      vots-ops profile --pid 4242 --dump             # one stack snapshot of every thread
      vots-ops profile diff profile-runs/agent-A profile-runs/agent-B
    """


@profile.command("run")
@click.argument("recipe", required=False)
@click.option(
    "--recipes",
    "recipes_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="VOTS_OPS_RECIPES",
    help="Recipe directory (env VOTS_OPS_RECIPES) [default: profiles/, else the bundled one].",
)
@stack_option
@click.option("--pid", type=click.IntRange(min=1), default=None, help="Profile this process.")
@click.option(
    "--match",
    default=None,
    help="Profile the one process whose command line matches this regular expression.",
)
@click.option(
    "--container",
    default=None,
    help="Profile a container's process (host PID through the Docker engine).",
)
@click.option(
    "--service", default=None, help="Profile every running replica of this stack.yaml service."
)
@click.option(
    "--language",
    type=click.Choice(["python", "go", "rust"]),
    default=None,
    help="The target's language [default: the recipe's, else python].",
)
@click.option(
    "--profiler",
    type=click.Choice(["py-spy", "pprof", "perf"]),
    default=None,
    help="Override the profiler (python: py-spy, go: pprof, rust: perf).",
)
@click.option(
    "--duration",
    callback=parsed(lazy("ops.profile.recipe", "parse_profile_duration")),
    default=None,
    help="How long to sample, e.g. 10s [default: the recipe's, else 10s].",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=1, max=1000),
    default=None,
    help="Samples per second [default: 100; perf 99].",
)
@click.option("--native/--no-native", default=None, help="py-spy: include C/C++ extension frames.")
@click.option("--gil/--no-gil", default=None, help="py-spy: only samples holding the GIL.")
@click.option("--idle/--no-idle", default=None, help="py-spy: include idle (waiting) threads.")
@click.option(
    "--subprocesses/--no-subprocesses", default=None, help="py-spy: follow child processes."
)
@click.option(
    "--blocking/--nonblocking",
    default=None,
    help="py-spy: pause the target per sample (exact stacks; ~7% of its time stopped at 100 Hz) or not (default: never paused, some torn stacks).",
)
@click.option(
    "--dump",
    is_flag=True,
    help="py-spy: print one stack snapshot of every thread instead of sampling.",
)
@click.option(
    "--pprof-url",
    default=None,
    help="pprof base URL (Go net/http/pprof, Rust pprof-rs), e.g. http://127.0.0.1:6060.",
)
@click.option("--heap", is_flag=True, help="pprof: the heap profile instead of CPU.")
@click.option(
    "--out",
    "runs_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("profile-runs"),
    show_default=True,
    envvar="VOTS_OPS_PROFILE_RUNS",
    help="Where run directories go (env VOTS_OPS_PROFILE_RUNS).",
)
@click.option(
    "--top",
    "top_n",
    type=click.IntRange(1, 500),
    default=20,
    show_default=True,
    help="Rows in the top-functions table.",
)
@format_option("table", "json")
@quiet_option
@click.pass_obj
def run(
    console: Console,
    recipe: str | None,
    recipes_dir: Path | None,
    stack_path: str,
    pid: int | None,
    match: str | None,
    container: str | None,
    service: str | None,
    language: str | None,
    profiler: str | None,
    duration: float | None,
    rate: float | None,
    native: bool | None,
    gil: bool | None,
    idle: bool | None,
    subprocesses: bool | None,
    blocking: bool | None,
    dump: bool,
    pprof_url: str | None,
    heap: bool,
    runs_dir: Path,
    top_n: int,
    fmt: str,
) -> None:
    """Sample a process and write speedscope, flamegraph and folded stacks."""
    from ops.profile import run_profile
    from ops.profile.recipe import DEFAULT_PROFILER, default_recipes, find_recipe, load_recipe

    targets_given = [x for x in (pid, container, service) if x is not None]
    if len(targets_given) > 1:
        raise click.UsageError(
            "give one of --pid, --container, --service (--match may narrow a container or service)"
        )
    rec = load_recipe(find_recipe(recipe, recipes_dir or default_recipes())) if recipe else None
    req = _request(
        rec,
        recipe,
        language,
        profiler,
        duration,
        rate,
        pid,
        match,
        container,
        service,
        pprof_url,
        heap,
        dict(native=native, gil=gil, idle=idle, subprocesses=subprocesses, blocking=blocking),
        stack_path,
        DEFAULT_PROFILER,
    )
    if dump:
        _dump(console, req, fmt)
        return
    label = (
        recipe
        or req.service
        or req.container
        or (f"pid {req.pid}" if req.pid else None)
        or req.match
        or req.pprof_url
        or "target"
    )
    with _Ticker(console, req.duration_s, label) as ticker:
        started = time.monotonic()
        outcome = run_profile(req, runs_dir=runs_dir, top_n=top_n, on_tick=ticker)
    if fmt == "json":
        console.json(
            {**outcome.profile.header(), "top": outcome.top, "run_dir": str(outcome.run_dir)}
        )
        return
    if console.quiet:
        return
    from ops.profile.report import top_table

    console.print(top_table(outcome.profile, outcome.top))
    p = outcome.profile
    console.info(f"{outcome.note}; {p.samples:,} {p.weight} in {time.monotonic() - started:.1f}s")
    for warning in _warnings(p):
        console.warning(warning)
    console.success(
        f"wrote {outcome.run_dir}/ (flamegraph.svg, speedscope.json — open in https://www.speedscope.app, profile.folded, profile.json)"
    )


def _warnings(p: Any) -> list[str]:
    """What makes this profile less than it seems, from its metadata (all replicas)."""
    metas = p.meta.get("replicas") or [p.meta]
    out = []
    if any(m.get("target_exited") for m in metas):
        out.append(
            f"the target exited during sampling: {p.duration_s:g}s of samples, not the planned duration"
        )
    if any(m.get("interrupted") for m in metas):
        out.append(
            "stopped early (Ctrl-C or SIGTERM): the profile covers what was sampled until then"
        )
    if any(m.get("idle_unknown") for m in metas):
        out.append(
            "in a container py-spy cannot tell idle threads from running ones: time spent waiting "
            "(sleep, I/O, locks) counts as busy here"
        )
    errors = sum(m.get("sample_errors") or 0 for m in metas)
    if errors and p.samples and errors > 0.05 * p.samples:
        out.append(
            f"{errors} samples could not be read (torn stacks in non-blocking mode); --blocking reads exact stacks"
        )
    return out


def _request(
    rec: Any,
    recipe: str | None,
    language: str | None,
    profiler: str | None,
    duration: float | None,
    rate: float | None,
    pid: int | None,
    match: str | None,
    container: str | None,
    service: str | None,
    pprof_url: str | None,
    heap: bool,
    options: dict[str, bool | None],
    stack_path: str,
    defaults: dict[str, str],
) -> Any:
    from ops.profile import Request

    lang = language or (rec.language if rec else "python")
    prof = profiler or (rec.chosen_profiler if rec and not language else defaults[lang])
    if prof == "pprof" and not (pprof_url or (rec and rec.pprof)):
        raise click.UsageError(
            "pprof needs --pprof-url http://HOST:PORT (or pprof.url in the recipe)"
        )
    if heap and prof != "pprof":
        raise click.UsageError("--heap is a pprof profile; give --pprof-url (Go, Rust pprof-rs)")
    if prof == "pprof" and any(x is not None for x in (pid, container, service, match)):
        raise click.UsageError(
            "pprof samples the --pprof-url endpoint; --pid/--match/--container/--service do not apply"
        )
    if prof == "py-spy" and lang != "python":
        raise click.UsageError(f"py-spy profiles Python, not {lang}; use --profiler perf or pprof")
    tgt = rec.target if rec else None
    cli_target = any(x is not None for x in (pid, container, service))
    req = Request(
        language=lang,
        profiler=prof,
        duration_s=duration or (rec.duration if rec else 10.0),
        rate_hz=rate or (rec.rate if rec else (99.0 if prof == "perf" else 100.0)),
        pid=pid if cli_target else (tgt.pid if tgt else None),
        container=container if cli_target else (tgt.container if tgt else None),
        service=service if cli_target else (tgt.service if tgt else None),
        match=match if match is not None else (tgt.match if tgt else None),
        pprof_url=pprof_url or (rec.pprof.url if rec and rec.pprof else None),
        pprof_kind="heap" if heap else (rec.pprof.kind if rec and rec.pprof else "cpu"),
        options={
            k: v
            for k, v in {
                **(rec.options.model_dump() if rec else {}),
                **{k: v for k, v in options.items() if v is not None},
            }.items()
        },
        name=recipe or "profile",
    )
    if req.service is not None:
        from ops.stack import load_stack

        req.project = load_stack(Path(stack_path)).stack.project
    return req


def _dump(console: Console, req: Any, fmt: str) -> None:
    from ops.profile import pyspy, resolve_targets

    if req.profiler != "py-spy":
        raise click.UsageError("--dump is a py-spy snapshot; it works for Python targets")
    for target in resolve_targets(req):
        _, threads = pyspy.dump(
            target,
            native=bool(req.options.get("native")),
            blocking=bool(req.options.get("blocking")),
        )
        if fmt == "json":
            console.json({"target": target.label, "pid": target.pid, "threads": threads})
            continue
        lines = [f"{target.label} (PID {target.pid}): {len(threads)} threads"]
        for th in threads:
            state = "active" if th.get("active") else "idle"
            gil = ", holds the GIL" if th.get("owns_gil") else ""
            name = f" {th['thread_name']}" if th.get("thread_name") else ""
            tid = th.get("os_thread_id") or th.get("thread_id")
            lines.append(f"\nThread {tid}{name} ({state}{gil})")
            for f in th["frames"]:
                lines.append(
                    f"    {f['name']} ({f.get('short_filename') or f['filename']}:{f['line']})"
                )
        console.text("\n".join(lines) + "\n")


@profile.command("diff")
@click.argument("base", type=click.Path(exists=True, path_type=Path))
@click.argument("new", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--top",
    "top_n",
    type=click.IntRange(1, 500),
    default=20,
    show_default=True,
    help="Rows to show.",
)
@click.option(
    "--min-delta",
    type=click.FloatRange(0, 100),
    default=0.5,
    show_default=True,
    help="Hide changes smaller than this many percentage points.",
)
@format_option("table", "json")
@quiet_option
@click.pass_obj
def diff(console: Console, base: Path, new: Path, top_n: int, min_delta: float, fmt: str) -> None:
    """Which functions grew or shrank in share between two profiles (run dirs or .folded files)."""
    from ops.profile import load_profile
    from ops.profile.model import diff as diff_profiles

    before, after = load_profile(base), load_profile(new)
    rows = diff_profiles(before, after, n=top_n, min_delta=min_delta / 100.0)
    if fmt == "json":
        console.json(
            {
                "base": str(base),
                "new": str(new),
                "base_samples": before.samples,
                "new_samples": after.samples,
                "changes": rows,
            }
        )
        return
    if console.quiet:
        return
    from ops.profile.report import diff_table

    console.print(diff_table(rows, before, after, str(base), str(new)))
