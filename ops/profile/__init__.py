"""Profiles of Python, Go and Rust services: find the process, sample it, show where time goes.

``run_profile()`` is the library entry point: it resolves the target to host
PIDs (``target``), runs one backend (py-spy, pprof, perf) that returns the
common ``Profile`` (``model``), and writes a run directory with the folded
stacks, a speedscope file, a flamegraph SVG and ``profile.json`` (what was
sampled and the top functions) in one rename. ``load_profile()`` and
``model.diff`` serve ``vots-ops profile diff``.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ops.errors import OpsError, SpecError
from ops.files import atomic_write, finish_run_dir, new_run_dir
from ops.profile.model import Profile, parse_folded

if TYPE_CHECKING:
    from ops.profile.pprof import PprofKind

DEFAULT_RUNS = Path("profile-runs")
FILES = ("profile.folded", "profile.json", "speedscope.json", "flamegraph.svg")


@dataclass
class Request:
    """What to profile and how: a recipe after command-line overrides."""

    language: str
    profiler: str
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


@dataclass
class Outcome:
    profile: Profile
    run_dir: Path
    top: list[dict[str, Any]]
    note: str = ""


def resolve_targets(req: Request) -> list[Any]:
    """The processes ``req`` names, as host PIDs (several for a replicated service)."""
    from ops.profile import target as t

    lang = req.language
    if req.service is not None:
        if not req.project:
            raise OpsError("--service needs the stack's project name (from --stack stack.yaml)")
        return t.by_service(req.service, req.project, language=lang, pattern=req.match)
    if req.container is not None:
        return [t.by_container(req.container, language=lang, pattern=req.match)]
    if req.pid is not None:
        return [t.by_pid(req.pid)]
    if req.match is not None:
        return [t.by_pattern(req.match)]
    raise OpsError("no target: give a recipe, --pid, --match, --container or --service")


def _merge(profiles: list[Profile]) -> Profile:
    if len(profiles) == 1:
        return profiles[0]
    stacks: Counter[tuple[str, ...]] = Counter()
    for p in profiles:
        stacks.update(p.stacks)
    first = profiles[0]
    return Profile(
        stacks=dict(stacks),
        target=", ".join(p.target for p in profiles),
        language=first.language,
        backend=first.backend,
        duration_s=max(p.duration_s for p in profiles),
        rate_hz=first.rate_hz,
        weight=first.weight,
        started=min(p.started or 0 for p in profiles) or None,
        meta={**first.meta, "replicas": [p.meta for p in profiles]},
    )


def _sample(
    req: Request, workdir: Path, on_tick: Callable[[float], None] | None
) -> tuple[Profile, str]:
    """Run the backend; returns the profile and a note on what was used."""
    if req.profiler == "pprof":
        return _pprof(req, on_tick), f"pprof endpoint {req.pprof_url}"
    targets = resolve_targets(req)
    if req.profiler == "perf":
        from ops.profile.perf import perf_available, perf_record

        reason = perf_available()
        if reason is not None:
            if req.pprof_url:
                return _pprof(
                    req, on_tick
                ), f"perf unavailable ({reason}); used the pprof endpoint {req.pprof_url}"
            raise OpsError(
                f"perf cannot sample here: {reason}; or give the service's pprof URL (--pprof-url)"
            )
        runs = [
            lambda tg=tg, i=i, on_tick=None, stop=None: perf_record(
                tg.pid,
                duration_s=req.duration_s,
                rate_hz=req.rate_hz,
                target=tg.label,
                language=req.language,
                workdir=_sub(workdir, i),
                on_tick=on_tick,
                stop=stop,
            )
            for i, tg in enumerate(targets)
        ]
        return _merge(_parallel(runs, on_tick)), "perf record --call-graph dwarf"
    if req.profiler == "py-spy":
        from ops.profile import pyspy

        opts = req.options
        runs = [
            lambda tg=tg, i=i, **kw: pyspy.record(
                tg,
                **kw,
                duration_s=req.duration_s,
                rate_hz=req.rate_hz,
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
        mode = (
            "blocking" if merged.meta.get("blocking") else "non-blocking"
        )  # --native implies blocking
        return merged, f"py-spy record ({mode})"
    raise OpsError(f"unknown profiler {req.profiler!r}")


def _sub(workdir: Path, i: int) -> Path:
    path = workdir / f".work-{i}"
    path.mkdir(exist_ok=True)
    return path


def _parallel(
    runs: list[Callable[..., Profile]], on_tick: Callable[[float], None] | None
) -> list[Profile]:
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
        raise OpsError("no sampler returned a profile")
    return out


def _pprof(req: Request, on_tick: Callable[[float], None] | None = None) -> Profile:
    """One pprof request; the program profiles itself and answers at the end.

    Ctrl-C therefore cancels (there is nothing partial to keep), unlike the
    samplers that run here.
    """
    from ops.profile.pprof import fetch_pprof, parse_pprof

    if not req.pprof_url:
        raise OpsError("the pprof profiler needs --pprof-url (or pprof.url in the recipe)")
    box: dict[str, Any] = {}

    def fetch() -> None:
        try:
            box["data"] = fetch_pprof(
                req.pprof_url or "", kind=req.pprof_kind, seconds=req.duration_s
            )
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=fetch, daemon=True)
    started = time.time()
    worker.start()
    while worker.is_alive():
        worker.join(0.25)
        if on_tick is not None:
            on_tick(time.time() - started)
    if "error" in box:
        raise box["error"]
    data = box["data"]
    # The profile knows its own length (a heap snapshot has none).
    return parse_pprof(data, target=req.pprof_url, language=req.language, duration_s=None)


def run_profile(
    req: Request,
    *,
    runs_dir: Path = DEFAULT_RUNS,
    top_n: int = 20,
    on_tick: Callable[[float], None] | None = None,
) -> Outcome:
    """Sample, then write the run directory; raises OpsError (exit 2) on a bad target."""
    staging, final = new_run_dir(runs_dir, req.name)
    # SIGTERM (timeout, cron, systemd) stops sampling like Ctrl-C: the profiler
    # is told to stop and write, instead of pausing the target until its end.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if main else None
    try:
        profile, note = _sample(req, staging, on_tick)
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
        final = finish_run_dir(staging, final)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
    return Outcome(profile, final, profile.top(top_n), note)


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def write_run(directory: Path, profile: Profile, top_n: int = 20) -> None:
    """The four files of a run: folded stacks, profile.json, speedscope, flamegraph.

    The profiler's own log (and perf.data) sit beside them for when a result
    looks wrong.
    """
    from ops.profile.export import flamegraph_svg, speedscope_json

    title = f"{profile.language} {profile.target} — {profile.backend}, {profile.samples} samples"
    atomic_write(directory / "profile.folded", profile.folded())
    header = {**profile.header(), "top": profile.top(top_n), "files": list(FILES)}
    atomic_write(directory / "profile.json", json.dumps(header, indent=2, default=str) + "\n")
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
        meta=header.get("meta", {}),
    )
