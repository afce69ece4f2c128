"""``vots-ops profile``: sample a Python, Go or Rust service and show where the time goes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ops.cli.options import (
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
    from ops.profile import Outcome, ProfilePlan, ThreadDump
    from ops.profile.model import Language, Profile, Profiler


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

    def __init__(self, console: Console) -> None:
        self.console = console
        self.duration, self.label = 0.0, "target"
        self.line: StatusLine | None = None

    def __enter__(self) -> _Ticker:
        self.line = self.console.status_line()
        return self

    def start(self, plan: ProfilePlan) -> None:
        self.duration, self.label = plan.duration_s, plan.label

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
      vots-ops profile --list                        # the recipes
      vots-ops profile --pid 4242 --native           # C-extension frames too (host processes)
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
@click.option("--pid", type=FiniteInt(1, 4_194_304), default=None, help="Profile this process.")
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
    help="How long to sample, e.g. 10s, 1m30s or 8 (seconds) [default: the recipe's, else 10s].",
)
@click.option(
    "--rate",
    type=FiniteFloat(1, 1000),
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
@click.option("--list", "list_only", is_flag=True, help="List the recipes and exit.")
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
    type=FiniteInt(1, 500),
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
    language: Language | None,  # click.Choice of exactly these names
    profiler: Profiler | None,
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
    list_only: bool,
    runs_dir: Path,
    top_n: int,
    fmt: str,
) -> None:
    """Sample a process and write speedscope, flamegraph and folded stacks."""
    from ops.errors import OpsError
    from ops.profile import ProfileRequest, dump_threads, empty_cause, plan_profile, run_profile

    ctx = click.get_current_context()
    if list_only:
        refuse_unused(
            ctx,
            [p.name or "" for p in ctx.command.params if p.name not in _LIST_USES],
            "with --list",
        )
        _list(console, recipes_dir, fmt)
        return
    req = ProfileRequest(
        recipe=recipe,
        recipes_dir=recipes_dir,
        stack_path=Path(stack_path),
        pid=pid,
        match=match,
        container=container,
        service=service,
        language=language,
        profiler=profiler,
        duration_s=duration,
        rate_hz=rate,
        native=native,
        gil=gil,
        idle=idle,
        subprocesses=subprocesses,
        blocking=blocking,
        pprof_url=pprof_url,
        heap=heap,
    )
    if dump:
        refuse_unused(ctx, ["top_n", "runs_dir"], "with --dump (it prints one snapshot)")
    try:
        plan = plan_profile(req, dump=dump)
        _refuse(ctx, plan)
        if dump:
            _print_dumps(console, dump_threads(plan), fmt)
            return
        with _Ticker(console) as ticker:
            started = time.monotonic()
            outcome = run_profile(
                plan, runs_dir=runs_dir, top_n=top_n, on_start=ticker.start, on_tick=ticker
            )
    except OpsError as exc:
        raise exc.name_fields(FLAGS) from None
    empty = empty_cause(outcome.profile)
    if fmt == "json":
        console.json(
            {**outcome.profile.header(), "top": outcome.top, "run_dir": str(outcome.run_dir)}
        )
    elif not console.quiet:
        _print_outcome(console, outcome, started)
    if empty is not None:  # nothing to read in it: say why, and fail the command
        from ops.errors import CheckFailed

        console.warning(empty)
        raise CheckFailed("")  # exit 1; the warning said it


def _print_outcome(console: Console, outcome: Outcome, started: float) -> None:
    from ops.profile.report import top_table

    console.print(top_table(outcome.profile, outcome.top))
    p = outcome.profile
    console.info(f"{outcome.note}; {p.samples:,} {p.weight} in {time.monotonic() - started:.1f}s")
    for warning in _warnings(p):
        console.warning(warning)
    console.success(
        f"wrote {outcome.run_dir}/ (flamegraph.svg, speedscope.json — open in https://www.speedscope.app, profile.folded, profile.json)"
    )


#: How the command line spells the fields of ops.profile.ProfileRequest, for
#: the library's errors that name them.
FLAGS = {
    "recipe": "a RECIPE",
    "stack_path": "--stack FILE",
    "pid": "--pid",
    "match": "--match",
    "container": "--container",
    "service": "--service",
    "language": "--language",
    "profiler": "--profiler",
    "pprof_url": "--pprof-url URL",
    "heap": "--heap",
    "native": "--no-native",
    "blocking": "--blocking",
    "runs_dir": "--out DIR",
    "dump": "no --dump",
}

#: What ``--list`` reads; any other option typed with it is refused.
_LIST_USES = {"list_only", "recipes_dir", "fmt", "quiet"}


def _list(console: Console, recipes_dir: Path | None, fmt: str) -> None:
    from rich.table import Table

    from ops.profile.recipe import default_recipes, list_recipes

    directory = recipes_dir or default_recipes()
    recipes = list_recipes(directory)
    if fmt == "json":
        console.json(
            {
                "directory": str(directory),
                "recipes": {
                    name: {
                        "description": r.description,
                        "language": r.language,
                        "profiler": r.chosen_profiler,
                        "target": r.target.model_dump(exclude_none=True) if r.target else None,
                        "pprof": r.pprof.model_dump() if r.pprof else None,
                        "duration_s": r.duration,
                        "rate_hz": r.rate,
                    }
                    for name, r in recipes
                },
            }
        )
        return
    t = Table(title=str(directory), title_justify="left")
    for col in ("recipe", "language", "profiler", "target", "duration", "description"):
        t.add_column(col)
    for name, r in recipes:
        tgt = r.target.model_dump(exclude_none=True) if r.target else {}
        where = ", ".join(f"{k} {v}" for k, v in tgt.items()) or (r.pprof.url if r.pprof else "-")
        t.add_row(name, r.language, r.chosen_profiler, where, f"{r.duration:g}s", r.description)
    console.print(t)


#: The command's parameter behind a ProfileRequest field, where the names differ.
_PARAMS = {"duration_s": "duration", "rate_hz": "rate"}


def _refuse(ctx: click.Context, plan: ProfilePlan) -> None:
    """Refuse, naming the flags, what the plan says the typed request does not use."""
    if not plan.unused:
        return
    why = next(iter(plan.unused.values()))
    names = [_PARAMS.get(f, f) for f, w in plan.unused.items() if w == why]
    refuse_unused(ctx, names, why)


def _warnings(p: Profile) -> list[str]:
    """What makes this profile less than it seems, from its metadata (all replicas)."""
    metas = p.meta.get("replicas") or [p.meta]
    out = []
    if any(m.get("target_exited") for m in metas):
        out.append(
            f"the target exited during sampling: {p.duration_s:g}s of samples, not the planned duration"
        )
    reused = [m for m in metas if m.get("pid_reused")]
    for m in reused:
        out.append(
            f"PID {m.get('pid')} was taken by a new process while sampling: the target exited "
            "and the profile covers it until then (unreadable samples after that are not torn stacks)"
        )
    if any(m.get("interrupted") for m in metas):
        out.append(
            "stopped early (Ctrl-C, SIGTERM or SIGHUP): the profile covers what was sampled until then"
        )
    if any(m.get("idle_unknown") for m in metas):
        out.append(
            "in a container py-spy cannot tell idle threads from running ones: time spent waiting "
            "(sleep, I/O, locks) counts as busy here"
        )
    errors = sum(m.get("sample_errors") or 0 for m in metas if not m.get("target_exited"))
    if errors and p.samples and errors > 0.05 * p.samples:
        out.append(
            f"{errors} samples could not be read (torn stacks in non-blocking mode); --blocking reads exact stacks"
        )
    return out


def _print_dumps(console: Console, dumps: list[ThreadDump], fmt: str) -> None:
    for d in dumps:
        if fmt == "json":
            console.json({"target": d.target, "pid": d.pid, "threads": d.threads})
            continue
        lines = [f"{d.target} (PID {d.pid}): {len(d.threads)} threads"]
        for th in d.threads:
            state = "active" if th.get("active") else "idle"
            gil = ", holds the GIL" if th.get("owns_gil") else ""
            name = f" {th['thread_name']}" if th.get("thread_name") else ""
            tid = th.get("os_thread_id") or th.get("thread_id")
            lines.append(f"\nThread {tid}{name} ({state}{gil})")
            for f in th.get("frames", []):
                lines.append(
                    f"    {f.get('name')} ({f.get('short_filename') or f.get('filename')}:{f.get('line')})"
                )
        console.text("\n".join(lines) + "\n")


@profile.command("diff")
@click.argument("base", type=click.Path(exists=True, path_type=Path))
@click.argument("new", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--top",
    "top_n",
    type=FiniteInt(1, 500),
    default=20,
    show_default=True,
    help="Rows to show.",
)
@click.option(
    "--min-delta",
    type=FiniteFloat(0, 100),
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
