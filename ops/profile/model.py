"""One profile model for every backend: folded stacks -> sample counts, plus what was sampled.

py-spy, pprof and perf all end up here, so the top table, the exporters
(folded, speedscope, flamegraph SVG) and ``profile diff`` exist once. A stack
is a tuple of frame names from the root to the leaf; a frame name is
``function (file)`` or a symbol, whatever the backend can say.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, TypedDict

Stack = tuple[str, ...]


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
    meta: dict[str, Any] = field(default_factory=dict)

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

    def self_counts(self) -> Counter[str]:
        """Samples in which each frame was the leaf (its own code was running)."""
        out: Counter[str] = Counter()
        for stack, n in self.stacks.items():
            if stack:
                out[stack[-1]] += n
        return out

    def total_counts(self) -> Counter[str]:
        """Samples in which each frame was anywhere on the stack (counted once per sample)."""
        out: Counter[str] = Counter()
        for stack, n in self.stacks.items():
            for frame in set(stack):
                out[frame] += n
        return out

    def top(self, n: int = 20, by: str = "self") -> list[dict[str, Any]]:
        """The ``n`` functions with the largest self (or total) share of samples."""
        total = self.samples or 1
        selfc, totc = self.self_counts(), self.total_counts()
        order = selfc if by == "self" else totc
        names = sorted(totc, key=lambda f: (-order.get(f, 0), -totc[f], f))[:n]
        return [
            {
                "function": name,
                "self": selfc.get(name, 0),
                "total": totc[name],
                "self_share": round(selfc.get(name, 0) / total, 6),
                "total_share": round(totc[name] / total, 6),
            }
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
