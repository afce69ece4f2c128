"""Profiles of Python, Go and Rust services: find the process, sample it, show where time goes.

``run_profile(ProfileRequest(...))`` is the library entry point, the one call
behind ``vots-ops profile``: ``plan_profile`` merges the request over its
recipe (request values win) and checks it as a whole, then it resolves the target to host
PIDs (``target``), runs one backend (py-spy, pprof, perf) that returns the
common ``Profile`` (``model``), and writes a run directory with the folded
stacks, a speedscope file, a flamegraph SVG and ``profile.json`` (what was
sampled and the top functions) in one rename. ``load_profile()`` and
``model.diff`` serve ``vots-ops profile diff``.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from ops.errors import ExternalToolError, OpsError, OutputError, SpecError
from ops.files import atomic_write, finish_run_dir, new_run_dir
from ops.proc import WITH_HANGUP, forward_signals
from ops.profile.model import (
    DEFAULT_PROFILER,
    Language,
    Profile,
    ProfileMeta,
    Profiler,
    TopRow,
    parse_folded,
)

if TYPE_CHECKING:
    from ops.profile.pprof import PprofKind
    from ops.profile.pyspy import DumpThread
    from ops.profile.target import Target

DEFAULT_RUNS = Path("profile-runs")
FILES = ("profile.folded", "profile.json", "speedscope.json", "flamegraph.svg")
TARGET_FIELDS = ("pid", "container", "service")


@dataclass(frozen=True)
class ProfileRequest:
    """What a user asks to profile: an optional recipe and values that override it.

    ``None`` means "not given": the recipe's value, else the default, applies.
    :func:`plan_profile` merges and checks them into a :class:`ProfilePlan`;
    errors name these fields (``fields=("pprof_url",)``), which a front end
    spells its own way.
    """

    recipe: str | None = None
    recipes_dir: Path | None = None
    stack_path: Path = Path("stack.yaml")
    pid: int | None = None
    match: str | None = None
    container: str | None = None
    service: str | None = None
    language: Language | None = None
    profiler: Profiler | None = None
    duration_s: float | None = None
    rate_hz: float | None = None
    native: bool | None = None
    gil: bool | None = None
    idle: bool | None = None
    subprocesses: bool | None = None
    blocking: bool | None = None
    pprof_url: str | None = None
    heap: bool = False


@dataclass
class ProfilePlan:
    """What to profile and how, every value decided: a recipe after the request's overrides."""

    language: Language
    profiler: Profiler
    duration_s: float = 10.0
    rate_hz: float = 100.0
    pid: int | None = None
    match: str | None = None
    container: str | None = None
    service: str | None = None
    project: str | None = None
    pprof_url: str | None = None
    pprof_kind: PprofKind = "cpu"
    options: dict[str, bool] = field(default_factory=dict)
    name: str = "profile"
    #: Settings the request gave that this plan does not use, field -> why
    #: (``{"native": "with the pprof profiler"}``). A front end refuses them;
    #: :func:`run_profile` and :func:`dump_threads` do given a request.
    unused: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """What is being profiled, in a few words (for progress lines)."""
        return (
            (self.name if self.name != "profile" else None)
            or self.service
            or self.container
            or (f"pid {self.pid}" if self.pid else None)
            or self.match
            or self.pprof_url
            or "target"
        )


@dataclass
class Outcome:
    """A finished profile: the merged profile, its run directory and top functions."""

    profile: Profile
    run_dir: Path
    top: list[TopRow]
    note: str = ""
    plan: ProfilePlan | None = None


@dataclass(frozen=True)
class ThreadDump:
    """One process's threads at one moment (py-spy dump)."""

    target: str
    pid: int
    threads: list[DumpThread]


#: Request fields only py-spy uses.
PYSPY_FIELDS = ("native", "gil", "idle", "subprocesses", "blocking")


def plan_profile(req: ProfileRequest, *, dump: bool = False) -> ProfilePlan:
    """The request merged over its recipe (request values win), checked as a whole.

    ``dump``: for :func:`dump_threads`, which samples nothing. What the request
    gives that the chosen profiler (or the dump) does not use is listed in the
    plan's ``unused``; a recipe's values never are.
    """
    from ops.profile.recipe import default_recipes, find_recipe, load_recipe

    given = [f for f in TARGET_FIELDS if getattr(req, f) is not None]
    if len(given) > 1:
        raise OpsError(
            f"give one target, not {' and '.join(given)}: a pid, a container or a service "
            "(a match may narrow a container or service)",
            fields=tuple(given),
        )
    rec = (
        load_recipe(find_recipe(req.recipe, req.recipes_dir or default_recipes()))
        if req.recipe
        else None
    )
    lang: Language = req.language or (rec.language if rec else "python")
    prof: Profiler = req.profiler or (
        rec.chosen_profiler if rec and not req.language else DEFAULT_PROFILER[lang]
    )
    if prof == "pprof" and not (req.pprof_url or (rec and rec.pprof)):
        raise OpsError(
            "the pprof profiler needs the pprof URL, http://HOST:PORT (or pprof.url in the recipe)",
            fields=("pprof_url",),
        )
    if req.heap and prof != "pprof":
        raise OpsError(
            "a heap profile comes from a pprof endpoint; give its URL (Go, Rust pprof-rs)",
            fields=("pprof_url",),
        )
    if prof == "pprof" and (given or req.match is not None):
        raise OpsError(
            "pprof samples the pprof endpoint; a pid, match, container or service does not apply",
            fields=(*given, *(("match",) if req.match is not None else ())),
        )
    if prof == "py-spy" and lang != "python":
        raise OpsError(
            f"py-spy profiles Python, not {lang}; choose the perf or pprof profiler",
            fields=("profiler",),
        )
    tgt = rec.target if rec else None
    options = rec.options.model_dump() if rec else {}
    for name in ("native", "gil", "idle", "subprocesses", "blocking"):
        value = getattr(req, name)
        if value is not None:
            options[name] = value
    if options.get("native") and prof == "py-spy":
        from_recipe = rec is not None and {"native", "blocking"} <= rec.options.model_fields_set
        if req.blocking is False or (
            req.blocking is None and req.native is None and from_recipe and not options["blocking"]
        ):
            raise OpsError(
                "native frames are read only while the target is paused for each sample: "
                "native and non-blocking sampling do not go together; choose one",
                fields=("native", "blocking"),
            )
    plan = ProfilePlan(
        language=lang,
        profiler=prof,
        duration_s=req.duration_s or (rec.duration if rec else 10.0),
        rate_hz=req.rate_hz or (rec.rate if rec else (99.0 if prof == "perf" else 100.0)),
        pid=req.pid if given else (tgt.pid if tgt else None),
        container=req.container if given else (tgt.container if tgt else None),
        service=req.service if given else (tgt.service if tgt else None),
        match=req.match if req.match is not None else (tgt.match if tgt else None),
        pprof_url=req.pprof_url or (rec.pprof.url if rec and rec.pprof else None),
        pprof_kind="heap" if req.heap else (rec.pprof.kind if rec and rec.pprof else "cpu"),
        options=options,
        name=req.recipe or "profile",
    )
    plan.unused = _unused(req, plan, dump)
    if plan.service is not None and prof != "pprof":
        from ops.stack import load_stack

        plan.project = load_stack(req.stack_path).stack.project
    return plan


def _unused(req: ProfileRequest, plan: ProfilePlan, dump: bool) -> dict[str, str]:
    """The request's settings ``plan`` does not use, field -> why."""
    out: dict[str, str] = {}

    def given(*names: str) -> list[str]:
        return [n for n in names if getattr(req, n) is not None]

    if plan.profiler == "pprof":
        for name in given(*PYSPY_FIELDS, "rate_hz"):
            out[name] = "with the pprof profiler (the program samples itself)"
    elif plan.profiler == "perf":
        for name in given(*PYSPY_FIELDS):
            out[name] = "with the perf profiler (a py-spy setting)"
    else:
        for name in given("pprof_url"):
            out[name] = "with the py-spy profiler"
    if (
        req.match is not None
        and plan.pid is not None
        and plan.container is None
        and plan.service is None
    ):
        out["match"] = "with a pid (a match narrows a container or service)"
    if dump:
        for name in given("duration_s", "rate_hz", "gil", "idle", "subprocesses"):
            out.setdefault(name, "with a thread dump (one snapshot, not sampling)")
    return out


def _refuse_unused(plan: ProfilePlan) -> None:
    if plan.unused:
        name, why = next(iter(plan.unused.items()))
        raise OpsError(f"{name} does nothing {why}", fields=tuple(plan.unused))


def resolve_targets(plan: ProfilePlan) -> list[Target]:
    """The processes ``plan`` names, as host PIDs (several for a replicated service)."""
    from ops.profile import target as t

    lang = plan.language
    if plan.service is not None:
        if not plan.project:
            raise OpsError(
                "a service is found by its stack's project name; give the stack",
                fields=("stack_path",),
            )
        return t.by_service(plan.service, plan.project, language=lang, pattern=plan.match)
    if plan.container is not None:
        return [t.by_container(plan.container, language=lang, pattern=plan.match)]
    if plan.pid is not None:
        return [t.by_pid(plan.pid)]
    if plan.match is not None:
        return [t.by_pattern(plan.match)]
    raise OpsError(
        "no target: give a recipe, a pid, a match, a container or a service",
        fields=("recipe", "pid", "match", "container", "service"),
    )


def dump_threads(req: ProfileRequest | ProfilePlan) -> list[ThreadDump]:
    """One stack snapshot of every thread of each target (Python only: py-spy dump)."""
    from ops.profile import pyspy

    if isinstance(req, ProfileRequest):
        plan = plan_profile(req, dump=True)
        _refuse_unused(plan)
    else:
        plan = req
    if plan.profiler != "py-spy":
        raise OpsError(
            "a thread dump is a py-spy snapshot; it works for Python targets", fields=("dump",)
        )
    out = []
    for target in resolve_targets(plan):
        _, threads = pyspy.dump(
            target,
            native=bool(plan.options.get("native")),
            blocking=bool(plan.options.get("blocking")),
        )
        out.append(ThreadDump(target.label, target.pid, threads))
    return out


def _merge(profiles: list[Profile]) -> Profile:
    if len(profiles) == 1:
        return profiles[0]
    stacks: Counter[tuple[str, ...]] = Counter()
    for p in profiles:
        stacks.update(p.stacks)
    first = profiles[0]
    meta: ProfileMeta = {**first.meta, "replicas": [p.meta for p in profiles]}
    return Profile(
        stacks=dict(stacks),
        target=", ".join(p.target for p in profiles),
        language=first.language,
        backend=first.backend,
        duration_s=max(p.duration_s for p in profiles),
        rate_hz=first.rate_hz,
        weight=first.weight,
        started=min(p.started or 0 for p in profiles) or None,
        meta=meta,
    )


class _Sampler(Protocol):
    """One replica's sampler: runs to the end, or until Ctrl-C or ``stop``."""

    def __call__(
        self, *, on_tick: Callable[[float], None] | None, stop: threading.Event | None
    ) -> Profile: ...


def _sample(
    plan: ProfilePlan, workdir: Path, on_tick: Callable[[float], None] | None
) -> tuple[Profile, str]:
    """Run the backend; returns the profile and a note on what was used."""
    if plan.profiler == "pprof":
        return _pprof(plan, on_tick), f"pprof endpoint {plan.pprof_url}"
    targets = resolve_targets(plan)
    runs: list[_Sampler]
    if plan.profiler == "perf":
        from ops.profile.perf import perf_available, perf_record

        reason = perf_available()
        if reason is not None:
            if plan.pprof_url:
                note = f"perf unavailable ({reason}); used the pprof endpoint {plan.pprof_url}"
                return _pprof(plan, on_tick), note
            raise OpsError(
                f"perf cannot sample here: {reason}; or give the service's pprof URL",
                fields=("pprof_url",),
            )
        runs = [
            functools.partial(
                perf_record,
                tg.pid,
                duration_s=plan.duration_s,
                rate_hz=plan.rate_hz,
                target=tg.label,
                language=plan.language,
                workdir=_sub(workdir, i),
            )
            for i, tg in enumerate(targets)
        ]
        return _merge(_parallel(runs, on_tick)), "perf record --call-graph dwarf"
    from ops.profile import pyspy

    opts = plan.options
    runs = [
        functools.partial(
            pyspy.record,
            tg,
            duration_s=plan.duration_s,
            rate_hz=plan.rate_hz,
            workdir=_sub(workdir, i),
            native=opts.get("native", False),
            gil=opts.get("gil", False),
            idle=opts.get("idle", False),
            subprocesses=opts.get("subprocesses", False),
            blocking=opts.get("blocking", False),
        )
        for i, tg in enumerate(targets)
    ]
    merged = _merge(_parallel(runs, on_tick))
    # native frames imply blocking
    mode = "blocking" if merged.meta.get("blocking") else "non-blocking"
    return merged, f"py-spy record ({mode})"


def _sub(workdir: Path, i: int) -> Path:
    path = workdir / f".work-{i}"
    path.mkdir(exist_ok=True)
    return path


def _parallel(runs: list[_Sampler], on_tick: Callable[[float], None] | None) -> list[Profile]:
    """One sampler per replica, all at once.

    A single target samples in this thread, so Ctrl-C reaches the backend,
    which stops its profiler and keeps what was sampled. With replicas, each
    sampler runs in a thread and a Ctrl-C here sets ``stop`` for all of them.
    """
    if len(runs) == 1:
        return [runs[0](on_tick=on_tick, stop=None)]
    stop = threading.Event()
    results: list[Profile | BaseException | None] = [None] * len(runs)

    def work(i: int) -> None:
        try:
            results[i] = runs[i](on_tick=None, stop=stop)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(runs))]
    started = time.time()
    for th in threads:
        th.start()
    try:
        while any(th.is_alive() for th in threads):
            for th in threads:
                th.join(0.25)
            if on_tick is not None:
                on_tick(time.time() - started)
    except KeyboardInterrupt:
        stop.set()
        for th in threads:
            th.join(30)
    out: list[Profile] = []
    for r in results:
        if isinstance(r, BaseException):
            raise r
        if r is not None:
            out.append(r)
    if not out:
        raise ExternalToolError("no sampler returned a profile")
    return out


def _pprof(plan: ProfilePlan, on_tick: Callable[[float], None] | None = None) -> Profile:
    """One pprof request; the program profiles itself and answers at the end.

    Ctrl-C therefore cancels (there is nothing partial to keep), unlike the
    samplers that run here.
    """
    from ops.profile.pprof import fetch_pprof, parse_pprof

    url = plan.pprof_url
    if not url:
        raise OpsError("the pprof profiler needs the pprof URL", fields=("pprof_url",))
    data: list[bytes] = []
    error: list[BaseException] = []

    def fetch() -> None:
        try:
            data.append(fetch_pprof(url, kind=plan.pprof_kind, seconds=plan.duration_s))
        except BaseException as exc:
            error.append(exc)

    worker = threading.Thread(target=fetch, daemon=True)
    started = time.time()
    worker.start()
    while worker.is_alive():
        worker.join(0.25)
        if on_tick is not None:
            on_tick(time.time() - started)
    if error:
        raise error[0]
    # The profile knows its own length (a heap snapshot has none).
    return parse_pprof(data[0], target=url, language=plan.language, duration_s=None)


def run_profile(
    req: ProfileRequest | ProfilePlan,
    *,
    runs_dir: Path = DEFAULT_RUNS,
    top_n: int = 20,
    on_start: Callable[[ProfilePlan], None] | None = None,
    on_tick: Callable[[float], None] | None = None,
) -> Outcome:
    """Plan (a request), sample, then write the run directory.

    Raises OpsError (exit 2) on a bad request or target, ExternalToolError
    (exit 3) when a profiler fails while running. ``on_start`` gets the plan
    before sampling begins, ``on_tick`` the seconds elapsed while it runs.
    """
    if isinstance(req, ProfileRequest):
        plan = plan_profile(req)
        _refuse_unused(plan)
    else:
        plan = req
    if on_start is not None:
        on_start(plan)
    sweep_partials(runs_dir)
    staging, final = new_run_dir(runs_dir, plan.name)
    # SIGTERM (timeout, cron, systemd) and SIGHUP (a dropped ssh session) stop
    # sampling like Ctrl-C: the profiler is told to stop and write, instead of
    # pausing the target until its end.
    with forward_signals(WITH_HANGUP), _hold(staging):
        try:
            profile, note = _sample(plan, staging, on_tick)
            profile.meta["used"] = note
            for m in [profile.meta, *profile.meta.get("replicas", [])]:
                if m.get("perf_data"):  # moved out of the work directory below
                    m["perf_data"] = Path(m["perf_data"]).name
            write_run(staging, profile, top_n)
            works = sorted(staging.glob(".work-*"))
            for i, work in enumerate(works):
                for f in work.iterdir():  # profiler logs (and perf.data): one set per replica
                    name = f.name if len(works) == 1 else f"{f.stem}-{i + 1}{f.suffix}"
                    f.rename(staging / name)
                work.rmdir()
            (staging / LOCK).unlink(missing_ok=True)
            final = finish_run_dir(staging, final)
        except BaseException as exc:
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, OpsError) or not isinstance(exc, OSError):
                raise
            from ops.profile.pyspy import disk_full

            full = disk_full(runs_dir / ".")
            if full is not None:
                raise full from None
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OutputError(
                    f"{runs_dir}: the disk is full (or the quota used up); free some space "
                    "or write the run elsewhere",
                    fields=("runs_dir",),
                ) from None
            raise OutputError(f"cannot write the run under {runs_dir}: {exc.strerror}") from None
    return Outcome(profile, final, profile.top(top_n), note, plan)


#: Held (flock) inside a run's hidden staging directory while the run is going.
LOCK = ".lock"
#: A staging directory without a lock is swept once older than the longest run.
STALE_S = 2 * 3600.0


@contextlib.contextmanager
def _hold(staging: Path) -> Iterator[None]:
    """Hold the staging directory's lock, so that no other run sweeps it."""
    import fcntl

    try:
        fd = os.open(staging / LOCK, os.O_CREAT | os.O_WRONLY, 0o644)
    except OSError:  # nothing to sweep it by but its age
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def sweep_partials(runs_dir: Path) -> list[Path]:
    """Remove hidden ``.NAME-STAMP.partial-*`` run directories left by a profile
    run that was killed (SIGKILL, the OOM killer): only those whose lock no run
    holds, or, without a lock, older than :data:`STALE_S`. Returns what went."""
    import fcntl
    import shutil

    gone: list[Path] = []
    try:
        candidates = [p for p in runs_dir.glob(".*.partial-*") if p.is_dir()]
    except OSError:
        return gone
    for path in candidates:
        try:
            fd = os.open(path / LOCK, os.O_RDONLY)
        except FileNotFoundError:
            try:
                stale = time.time() - path.stat().st_mtime > STALE_S
            except OSError:
                continue
            if stale:
                shutil.rmtree(path, ignore_errors=True)
                gone.append(path)
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a run is writing it
            os.close(fd)
            continue
        try:
            shutil.rmtree(path, ignore_errors=True)
            gone.append(path)
        finally:
            os.close(fd)
    return gone


def empty_cause(profile: Profile) -> str | None:
    """Why a profile holds no samples, in one line, or None if it has some."""
    if profile.samples:
        return None
    metas = profile.meta.get("replicas") or [profile.meta]
    what = profile.target
    if profile.backend == "perf":
        return (
            f"perf recorded no samples of {what}: the target was idle (off the CPU) the whole "
            "time, or perf could not see it (kernel.perf_event_paranoid, another PID namespace)"
        )
    if profile.backend.startswith("py-spy"):
        if any(m.get("target_exited") for m in metas):
            return f"no samples of {what}: it exited before py-spy could read a stack"
        idle = "" if all(m.get("idle") for m in metas) else "; --idle counts waiting threads too"
        return (
            f"no samples of {what}: its threads were idle (sleeping, waiting on I/O or a lock) "
            f"the whole time{idle}"
        )
    return f"no samples of {what}: the program was idle for the whole profile"


def write_run(directory: Path, profile: Profile, top_n: int = 20) -> None:
    """The four files of a run: folded stacks, profile.json, speedscope, flamegraph.

    The profiler's own log (and perf.data) sit beside them for when a result
    looks wrong.
    """
    from ops.profile.export import flamegraph_svg, speedscope_json

    title = f"{profile.language} {profile.target} — {profile.backend}, {profile.samples} samples"
    atomic_write(directory / "profile.folded", profile.folded())
    header = {**profile.header(), "top": profile.top(top_n), "files": list(FILES)}
    atomic_write(
        directory / "profile.json",
        json.dumps(header, indent=2, default=str, allow_nan=False) + "\n",
    )
    atomic_write(directory / "speedscope.json", speedscope_json(profile, name=title))
    atomic_write(directory / "flamegraph.svg", flamegraph_svg(profile, title))


def load_profile(path: Path) -> Profile:
    """A run directory (profile.folded + profile.json) or a bare folded file."""
    folded = path / "profile.folded" if path.is_dir() else path
    try:
        text = folded.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(
            "no profile here (expected a run directory or a .folded file)", path=str(folded)
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read it ({exc})", path=str(folded)) from None
    try:
        stacks = parse_folded(text)
    except ValueError as exc:
        raise SpecError(str(exc), path=str(folded)) from None
    if not stacks:
        raise SpecError("the profile holds no samples", path=str(folded))
    header: dict[str, Any] = {}
    meta_path = folded.with_name("profile.json")
    if meta_path.exists():
        try:
            header = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            header = {}
    return Profile(
        stacks=stacks,
        target=str(header.get("target", folded)),
        language=str(header.get("language", "?")),
        backend=str(header.get("backend", "folded")),
        duration_s=float(header.get("duration_s", 0.0)),
        rate_hz=header.get("rate_hz"),
        weight=str(header.get("weight", "samples")),
        started=header.get("started"),
        meta=cast(ProfileMeta, header.get("meta") or {}),
    )
