"""One profile model for every backend: folded stacks -> sample counts, plus what was sampled.

py-spy, pprof and perf all end up here, so the top table, the exporters
(folded, speedscope, flamegraph SVG) and ``profile diff`` exist once. A stack
is a tuple of frame names from the root to the leaf; a frame name is
``function (file)`` or a symbol, whatever the backend can say.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypedDict

Stack = tuple[str, ...]
Language = Literal["python", "go", "rust"]
Profiler = Literal["py-spy", "pprof", "perf"]
DEFAULT_PROFILER: dict[Language, Profiler] = {"python": "py-spy", "go": "pprof", "rust": "perf"}


class ProfileMeta(TypedDict, total=False):
    """What a backend says about its run, beyond the stacks (``profile.json``'s ``meta``).

    Every key is optional: each backend sets its own. ``replicas`` holds one
    per sampled process when a service's replicas were merged.
    """

    # the process (py-spy, perf)
    pid: int
    cmdline: str
    container: str | None
    comm: str | None
    threads: int
    threads_sampled: int
    # how it was sampled
    used: str
    blocking: bool
    native: bool
    gil: bool
    idle: bool
    subprocesses: bool
    event: str
    call_graph: str
    perf_data: str
    # what happened
    interrupted: bool
    target_exited: bool
    pid_reused: bool
    idle_unknown: bool
    sample_errors: int | None
    other_pid_samples: int
    # pprof's own header
    format: str
    sample_type: str
    sample_types: list[str]
    totals: dict[str, int]
    period: int
    period_type: str | None
    default_sample_type: str
    comments: list[str]
    replicas: list[ProfileMeta]


class TopRow(TypedDict):
    """One row of ``Profile.top``: a function's samples as the leaf (self) and anywhere (total)."""

    function: str
    self: int
    total: int
    self_share: float
    total_share: float


class Change(TypedDict):
    """One row of ``diff``: a function's shares of samples before and after, and the change."""

    function: str
    self_before: float
    self_after: float
    total_before: float
    total_after: float
    self_delta: float
    total_delta: float


@dataclass
class Profile:
    """Sampled stacks with their counts; ``weight`` says what a count means."""

    stacks: dict[Stack, int]
    target: str
    language: str
    backend: str
    duration_s: float
    rate_hz: float | None = None
    weight: str = "samples"  # what one count is: a sample, or for pprof CPU, a sample too
    started: float | None = None
    meta: ProfileMeta = field(default_factory=lambda: ProfileMeta())

    @property
    def samples(self) -> int:
        return sum(self.stacks.values())

    def header(self) -> dict[str, Any]:
        """Everything but the stacks, for JSON and the files' metadata."""
        data = asdict(self)
        data.pop("stacks")
        data["samples"] = self.samples
        data["distinct_stacks"] = len(self.stacks)
        return data

    @property
    def by_function(self) -> bool:
        """Whether the counts group frames by function: a ``--native`` py-spy
        profile names each native frame with a line (a call site), so one C
        function would fill a row per line. The stacks keep the lines."""
        return bool(self.meta.get("native"))

    def _key(self, frame: str) -> str:
        return function_of(frame) if self.by_function else frame

    def self_counts(self) -> Counter[str]:
        """Samples in which each frame was the leaf (its own code was running)."""
        out: Counter[str] = Counter()
        for stack, n in self.stacks.items():
            if stack:
                out[self._key(stack[-1])] += n
        return out

    def total_counts(self) -> Counter[str]:
        """Samples in which each frame was anywhere on the stack (counted once per sample)."""
        out: Counter[str] = Counter()
        for stack, n in self.stacks.items():
            for frame in {self._key(f) for f in stack}:
                out[frame] += n
        return out

    def top(self, n: int = 20, by: str = "self") -> list[TopRow]:
        """The ``n`` functions with the largest self (or total) share of samples."""
        total = self.samples or 1
        selfc, totc = self.self_counts(), self.total_counts()
        order = selfc if by == "self" else totc
        names = sorted(totc, key=lambda f: (-order.get(f, 0), -totc[f], f))[:n]
        return [
            TopRow(
                function=name,
                self=selfc.get(name, 0),
                total=totc[name],
                self_share=round(selfc.get(name, 0) / total, 6),
                total_share=round(totc[name] / total, 6),
            )
            for name in names
        ]

    def folded(self) -> str:
        """Brendan Gregg's folded format: ``root;...;leaf COUNT`` per line, heaviest first."""
        lines = [
            f"{';'.join(_fold_safe(f) for f in stack)} {n}"
            for stack, n in sorted(self.stacks.items(), key=lambda kv: (-kv[1], kv[0]))
            if stack
        ]
        return "\n".join(lines) + ("\n" if lines else "")


_LINE = re.compile(r"^(.*) \((.*):\d+\)$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]+ \((.*)\)$")


def function_of(frame: str) -> str:
    """``deflate_slow (deflate.c:1630)`` -> ``deflate_slow (deflate.c)``; an
    unsymbolized ``0x7f3a… (libz.so.1)`` -> ``?? (libz.so.1)``; others unchanged."""
    if m := _ADDRESS.match(frame):
        return f"?? ({m.group(1)})"
    if m := _LINE.match(frame):
        return f"{m.group(1)} ({m.group(2)})"
    return frame


def _fold_safe(frame: str) -> str:
    # ';' separates frames and a newline ends a record: neither may appear inside one.
    return frame.replace(";", ":").replace("\n", " ")


def parse_folded(text: str) -> dict[Stack, int]:
    """``a;b;c 12`` lines -> {("a", "b", "c"): 12}; repeated stacks add up."""
    out: Counter[Stack] = Counter()
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            raise ValueError(f"not a folded stack line: {raw[:120]!r}")
        if not stack.strip():
            # A sample with no frames (py-spy's non-blocking mode can read a
            # thread between frames): nothing to attribute, so not counted.
            continue
        out[tuple(stack.split(";"))] += int(count)
    return dict(out)


def diff(base: Profile, new: Profile, n: int = 20, min_delta: float = 0.005) -> list[Change]:
    """Functions whose share of samples changed most between two profiles.

    Shares, not counts: two runs rarely have the same number of samples.
    ``min_delta`` (half a percentage point) keeps sampling noise out.
    """
    bt, nt = base.samples or 1, new.samples or 1
    bself, nself = base.self_counts(), new.self_counts()
    btot, ntot = base.total_counts(), new.total_counts()
    rows: list[Change] = []
    for name in set(btot) | set(ntot):
        self_before = round(bself.get(name, 0) / bt, 6)
        self_after = round(nself.get(name, 0) / nt, 6)
        total_before = round(btot.get(name, 0) / bt, 6)
        total_after = round(ntot.get(name, 0) / nt, 6)
        row = Change(
            function=name,
            self_before=self_before,
            self_after=self_after,
            total_before=total_before,
            total_after=total_after,
            self_delta=round(self_after - self_before, 6),
            total_delta=round(total_after - total_before, 6),
        )
        if abs(row["self_delta"]) >= min_delta or abs(row["total_delta"]) >= min_delta:
            rows.append(row)
    rows.sort(key=lambda r: (-abs(r["self_delta"]), -abs(r["total_delta"]), r["function"]))
    return rows[:n]
