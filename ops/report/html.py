"""The utilisation history as one self-contained HTML page with inline SVG charts.

The page is meant to be mailed, attached to a ticket or opened from a VM with
no internet access, so it loads nothing: inline CSS, SVG drawn here in Python,
no JavaScript, and a Content-Security-Policy that would block any load that
slipped in. Every name that comes from the history (hosts, containers, mounts,
findings' messages) is escaped, since container names are chosen by whoever
runs ``docker run``.

It reads top down the way an operator asks: what is wrong (the findings: open
now, reported by cron in the range, and OOM kills, restarts and limits counted
from the samples themselves, so a crash loop shows even when no cron run said
so), where (links to the chart), then the charts, with OOM kills, restarts and
the start of findings marked on them.

The time axis spans the samples that exist in the range asked for, not the
range itself: a history of 15 minutes drawn on a 24-hour axis is a sliver, and
the header says when the data, not the request, set the span. Every chart of a
page shares that axis.

Series are downsampled to at most ``MAX_POINTS`` points per chart by keeping
each time bucket's minimum and maximum: a week of per-minute samples for a host
and a few containers is well under 100 KiB, and a one-minute spike to 100%
still shows. Times are UTC.
"""

from __future__ import annotations

import datetime as dt
import html
import itertools
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ops.report.findings import MEMORY_NEAR_LIMIT_PCT, THROTTLED_RATIO
from ops.report.history import FindingEvent, FindingState, History
from ops.units import format_utc

MAX_POINTS = 500
# A gap wider than this many times the local sampling interval breaks the line,
# so a stopped cron or a powered-off VM shows as a gap, not as a made-up slope.
GAP_FACTOR = 3.0
# Neighbouring intervals on each side that define "the local sampling interval".
GAP_WINDOW = 5
#: The narrowest time axis: one sample, or a few minutes of them, still gets
#: a readable axis instead of a zero-width one.
MIN_SPAN_S = 10 * 60.0
#: Room left of the first and right of the last sample, as a share of their span,
#: so the first point is not drawn on the y axis.
PAD_FRACTION = 0.02
#: Samples this close to an end of the range asked for reach it (a cron interval).
REACH_S = 60.0
#: Finding reports listed in the findings section (newest first); older ones are counted.
MAX_EVENT_ROWS = 100
#: Markers of one kind closer than this (SVG units) to the one before join a run,
#: drawn as a band titled with its count: a week-long crash loop is one band, not
#: ten thousand lines.
MARKER_MERGE = 4.0
#: At most this many markers (lines or bands) of one kind on a chart.
MAX_MARKER_GROUPS = 40

# Chart geometry in SVG user units; the SVG scales to the column width.
WIDTH, HEIGHT = 600, 230
LEFT, RIGHT, TOP, BOTTOM = 56, 14, 14, 46
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

# Okabe-Ito: tells series apart for the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#000000", "#D55E00")
LIMIT_COLOR = "#C62828"
# Markers differ in shape as well as colour: OOM kills a solid line under a
# triangle, restarts a dashed line under a ring, findings a triangle on the axis.
OOM_COLOR = "#D55E00"
RESTART_COLOR = "#3D3D3D"
FINDING_COLOR = "#E69F00"

_TIME_STEPS = (
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    2 * 3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86400,
    2 * 86400,
    7 * 86400,
    14 * 86400,
    30 * 86400,
)
_BYTE_UNITS = (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024), ("B", 1))

Points = Sequence[tuple[float, float]]


@dataclass
class _Series:
    label: str
    key: str  # "scope/metric": stable, for data-series and tests
    points: list[tuple[float, float]]  # all points in range, for the figures under the chart


@dataclass
class _Marker:
    """Something that happened at one time: an OOM kill, a restart, a finding's start."""

    kind: str  # "oom" | "restart" | "finding"
    ts: float
    count: float = 1.0
    text: str = ""  # for findings: what started


@dataclass
class _Chart:
    title: str
    y_label: str
    unit: str  # "%" or "bytes"
    series: list[_Series]
    limit: float | None = None  # draw the limit line at this value (in the chart's unit)
    limit_label: str = "limit (100%)"
    of_limit: bool = False  # values are % of the container's limit
    note: str = ""
    short_note: str = ""  # for the overview table, next to a peak without a limit
    markers: list[_Marker] = field(default_factory=list)
    anchor: str = ""

    @property
    def has_data(self) -> bool:
        return any(s.points for s in self.series)


@dataclass(frozen=True)
class _Limits:
    """A container's limits as of the newest sample; ``known=False`` says why not."""

    known: bool
    cpu_milli: int | None = None
    cpu_text: str = ""  # "0.33 CPU", "2 CPUs (cpuset 0-1)"
    memory: float | None = None  # bytes
    why_unknown: str = ""


@dataclass
class _Container:
    name: str
    scope: str
    anchor: str
    cpu: _Chart
    mem: _Chart
    throttled: list[tuple[float, float]]
    restarts: list[tuple[float, float]]  # samples with restarts > 0
    ooms: list[tuple[float, float]]  # samples with OOM kills > 0


@dataclass
class _HostView:
    host: str
    anchor: str
    charts: list[_Chart]  # CPU, memory, disks
    containers: list[_Container]
    events: list[FindingEvent]  # reported in the range, oldest first
    open: list[FindingState]

    @property
    def has_samples(self) -> bool:
        return bool(self.containers) or any(c.has_data for c in self.charts)


# -- downsampling ------------------------------------------------------------


def split_gaps(points: Points) -> list[list[tuple[float, float]]]:
    """Split where the interval is ``GAP_FACTOR`` times the local sampling interval.

    "Local" is the median of the intervals around it (not the whole series'), so
    hourly means (history older than the raw retention) followed by per-minute
    points are one line, while a two-hour outage in per-minute data is a gap.
    """
    pts = list(points)
    if len(pts) < 3:
        return [pts] if pts else []
    deltas = [b[0] - a[0] for a, b in itertools.pairwise(pts)]
    segments: list[list[tuple[float, float]]] = [[pts[0]]]
    for i, delta in enumerate(deltas):
        around = [
            d
            for d in deltas[max(0, i - GAP_WINDOW) : i] + deltas[i + 1 : i + 1 + GAP_WINDOW]
            if d > 0  # duplicate timestamps say nothing about the sampling interval
        ]
        if around and delta > GAP_FACTOR * statistics.median(around):
            segments.append([])
        segments[-1].append(pts[i + 1])
    return segments


def downsample(
    points: Points,
    max_points: int = MAX_POINTS,
    since: float | None = None,
    until: float | None = None,
) -> list[list[tuple[float, float]]]:
    """Gap-split segments with at most ``max_points`` points in all.

    Keeps the minimum and maximum of each time bucket (in time order) rather
    than a mean or LTTB's pick, because an operator looks for peaks: a spike
    must survive however long the range. Buckets span ``since``..``until`` so
    every chart on a page shares one grid.
    """
    if max_points < 4:
        raise ValueError(f"max_points must be at least 4 (got {max_points})")
    segments = split_gaps(points)
    total = sum(len(s) for s in segments)
    if total <= max_points:
        return segments
    if 4 * len(segments) > max_points:
        # Gappier than the budget can draw: one line beats a budget overrun.
        segments = [[p for s in segments for p in s]]
    lo = segments[0][0][0] if since is None else since
    hi = segments[-1][-1][0] if until is None else until
    # Each (segment, bucket) pair yields at most two points; a segment adds at
    # most one extra pair where it starts inside a bucket the previous one ended in.
    nbuckets = max(1, max_points // 2 - len(segments) + 1)
    width = (hi - lo) / nbuckets or 1.0
    out: list[list[tuple[float, float]]] = []
    for seg in segments:
        result: list[tuple[float, float]] = []
        current: int | None = None
        low = high = seg[0]
        for p in seg:
            b = min(nbuckets - 1, max(0, int((p[0] - lo) / width)))
            if b != current:
                if current is not None:
                    result.extend(_pair(low, high))
                current, low, high = b, p, p
            else:
                if p[1] < low[1]:
                    low = p
                if p[1] > high[1]:
                    high = p
        result.extend(_pair(low, high))
        out.append(result)
    return out


def _pair(low: tuple[float, float], high: tuple[float, float]) -> list[tuple[float, float]]:
    if low is high:
        return [low]
    return [low, high] if low[0] <= high[0] else [high, low]


# -- the time axis -------------------------------------------------------------


def time_axis(
    first: float, last: float, since: float, until: float, min_span: float = MIN_SPAN_S
) -> tuple[float, float]:
    """The x axis for samples from ``first`` to ``last`` asked for in ``since..until``.

    The samples' span plus ``PAD_FRACTION`` each side, but the requested bound
    itself where the samples reach it (within the padding or ``REACH_S``), so a full range is
    drawn exactly as asked. Never narrower than ``min_span``: widened into the past
    when the samples reach the end asked for (the CLI's end is the newest sample,
    so the right edge stays "now"), else about their middle; never before
    ``since`` (then past ``until`` instead).
    """
    if not first <= last:
        raise ValueError(f"need first <= last (got {first}, {last})")
    pad = PAD_FRACTION * (last - first)
    near = max(pad, REACH_S)
    lo = since if first - since <= near else first - pad
    hi = until if until - last <= near else last + pad
    short = min_span - (hi - lo)
    if short > 0:
        if hi >= until:
            lo -= short
        else:
            lo, hi = lo - short / 2, hi + short / 2
        if lo < since:
            lo, hi = since, hi + (since - lo)
    return lo, hi


# -- scales and ticks ----------------------------------------------------------


def _nice_step(raw: float) -> float:
    """The 1-2-2.5-5 step at or above ``raw``, so ticks land on round numbers."""
    exp = math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * 10**exp >= raw:
            return float(m * 10**exp)
    return float(10 ** (exp + 1))  # pragma: no cover - the loop always returns


def _y_scale(chart: _Chart) -> tuple[float, float, str, float]:
    """(y max, tick step, unit suffix, divisor): percentages in 25s up to at least
    100 (past the limit line when there is one); bytes in a binary unit, up to the
    limit line too."""
    top = max((v for s in chart.series for _, v in s.points), default=0.0)
    if chart.limit is not None:
        top = max(top, chart.limit)
    if chart.unit == "%":
        floor = 101.0 if chart.limit is not None else 100.0
        want = max(top * 1.04, floor)
        step = 25.0 if want <= 150 else _nice_step(want / 5)
        return step * math.ceil(want / step), step, "%", 1.0
    name, div = next(((n, d) for n, d in _BYTE_UNITS if top >= d), ("B", 1))
    step = _nice_step(max(top / div * 1.1, 1.0) / 4)
    ymax = step * math.ceil(max(top / div * 1.05, step) / step)
    return ymax, step, f" {name}", float(div)


def _time_ticks(since: float, until: float) -> tuple[list[float], int]:
    """At most about seven ticks on round UTC times (whole days fall on midnight)."""
    span = until - since
    step = next((s for s in _TIME_STEPS if span / s <= 7), _TIME_STEPS[-1])
    first = math.ceil(since / step) * step
    return [first + i * step for i in range(int((until - first) // step) + 1)], step


def _fmt_num(value: float, suffix: str = "") -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:.0f}"
    return text + suffix


def _fmt_value(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:.1f}%"
    name, div = next(((n, d) for n, d in _BYTE_UNITS if value >= d), ("B", 1))
    return f"{value / div:.1f} {name}" if div > 1 else f"{value:.0f} B"


def _fmt_size(value: float) -> str:
    """A limit as people set it: ``512 MiB``, ``1.5 GiB``."""
    name, div = next(((n, d) for n, d in _BYTE_UNITS if value >= d), ("B", 1))
    return _fmt_num(value / div) + f" {name}"


def _fmt_duration(seconds: float) -> str:
    """``15 min``, ``6 h``, ``7 d``; whole minutes below two hours."""
    from ops.units import format_duration

    return format_duration(round(seconds / 60) * 60 if seconds >= 120 else seconds)


def _plural(n: float, one: str, many: str | None = None) -> str:
    n = int(n)
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def _fmt_time(ts: float) -> str:
    return format_utc(ts)


def _fmt_span(lo: float, hi: float) -> str:
    """``2023-11-14 22:00 to 22:15 UTC`` on one day, both dates otherwise."""
    a, b = _utc(lo), _utc(hi)
    if a.date() == b.date():
        return f"{a:%Y-%m-%d %H:%M} to {b:%H:%M} UTC"
    return f"{a:%Y-%m-%d %H:%M} to {b:%Y-%m-%d %H:%M} UTC"


# -- SVG -----------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


_MARKER_NAMES = {"oom": ("OOM kill", "OOM kills"), "restart": ("restart", "restarts")}


def _runs(
    markers: Sequence[_Marker], x: Callable[[float], float], gap: float
) -> list[list[_Marker]]:
    runs: list[list[_Marker]] = []
    for m in markers:
        if runs and x(m.ts) - x(runs[-1][-1].ts) < gap:
            runs[-1].append(m)
        else:
            runs.append([m])
    return runs


def _merge_markers(markers: Sequence[_Marker], x: Callable[[float], float]) -> list[list[_Marker]]:
    """Markers of one kind in runs, each within ``MARKER_MERGE`` units of the one
    before; a run wider than that is drawn as a band (a crash loop), else as one line.
    More than ``MAX_MARKER_GROUPS`` runs of a kind: the gap doubles until they fit."""
    groups: list[list[_Marker]] = []
    for kind in ("restart", "oom", "finding"):
        ordered = sorted((m for m in markers if m.kind == kind), key=lambda m: m.ts)
        gap = MARKER_MERGE
        runs = _runs(ordered, x, gap)
        while len(runs) > MAX_MARKER_GROUPS:
            gap *= 2
            runs = _runs(ordered, x, gap)
        groups += runs
    return groups


def _marker_title(group: Sequence[_Marker]) -> str:
    kind, first, last = group[0].kind, group[0].ts, group[-1].ts
    when = f"at {_fmt_time(first)}" if first == last else f"from {_fmt_span(first, last)}"
    if kind == "finding":
        head = "finding started" if len(group) == 1 else f"{len(group)} findings started"
        return (
            f"{head} {when}: "
            + "; ".join(m.text for m in group[:5])
            + ("; …" if len(group) > 5 else "")
        )
    one, many = _MARKER_NAMES[kind]
    total = sum(m.count for m in group)
    return f"{_plural(total, one, many)} {when}"


def _is_band(group: Sequence[_Marker], x: Callable[[float], float]) -> bool:
    return group[0].kind != "finding" and x(group[-1].ts) - x(group[0].ts) >= MARKER_MERGE


def _marker_svg(group: Sequence[_Marker], x: Callable[[float], float]) -> str:
    """One marker: a line with a symbol above the plot (a triangle for OOM kills, a
    ring for restarts), a shaded band with its count for a run of them, or a
    triangle on the time axis where a finding started. Colours and dashes are in
    the style sheet (``svg .marker-…``): a crash loop draws many of these."""
    kind = group[0].kind
    count = sum(m.count for m in group) if kind != "finding" else len(group)
    x0, x1 = x(group[0].ts), x(group[-1].ts)
    band = _is_band(group, x)
    until = f' data-until="{group[-1].ts:.0f}"' if band else ""
    head = (
        f'<g class="marker marker-{kind}{" marker-band" if band else ""}" data-marker="{kind}" '
        f'data-ts="{group[0].ts:.0f}"{until} data-count="{count:g}">'
        f"<title>{_e(_marker_title(group))}</title>"
    )
    bottom = TOP + PLOT_H
    if kind == "finding":
        return f'{head}<path d="M{x0:.1f} {bottom - 9}l5 9h-10z"/></g>'
    if kind == "oom":
        symbol = f'<path class="symbol" d="M{x0 - 4.5:.1f} {TOP - 9}h9l-4.5 8z"/>'
    else:
        symbol = f'<circle class="symbol" cx="{x0:.1f}" cy="{TOP - 5}" r="3.5"/>'
    if not band:
        return f'{head}<path d="M{x0:.1f} {TOP}V{bottom}"/>{symbol}</g>'
    one, many = _MARKER_NAMES[kind]
    label = ""
    if x1 - x0 >= 70:
        ly = TOP + (12 if kind == "restart" else 25)
        label = (
            f'<text class="band-label" x="{x0 + 4:.1f}" y="{ly}">'
            f"{_e(_plural(count, one, many))}</text>"
        )
    return (
        f'{head}<rect x="{x0:.1f}" y="{TOP}" width="{x1 - x0:.1f}" height="{PLOT_H}"/>'
        f'<path d="M{x0:.1f} {TOP}V{bottom}M{x1:.1f} {TOP}V{bottom}"/>{symbol}{label}</g>'
    )


def _marker_summary(markers: Sequence[_Marker]) -> str:
    """``3 OOM kills, 14 restarts, 1 finding started`` (empty without markers)."""
    parts = []
    for kind in ("oom", "restart"):
        total = sum(m.count for m in markers if m.kind == kind)
        if total:
            parts.append(_plural(total, *_MARKER_NAMES[kind]))
    found = sum(1 for m in markers if m.kind == "finding")
    if found:
        parts.append(_plural(found, "finding") + " started")
    return ", ".join(parts)


def _chart_svg(chart: _Chart, since: float, until: float) -> str:
    ymax, ystep, suffix, div = _y_scale(chart)
    span = until - since

    def x(ts: float) -> float:
        return LEFT + (ts - since) / span * PLOT_W

    def y(value: float) -> float:
        return TOP + PLOT_H - (value / div) / ymax * PLOT_H

    summary = "; ".join(_stats_text(s, chart.unit) for s in chart.series if s.points)
    label = f"{chart.title}, {_fmt_span(since, until)}: " + (summary or "no samples in this range")
    marked = _marker_summary(chart.markers)
    if marked:
        label += f"; marked: {marked}"
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{_e(label)}">',
        f"<title>{_e(label)}</title>",
    ]
    # Horizontal grid and y tick labels.
    n_yticks = round(ymax / ystep)
    for i in range(n_yticks + 1):
        v = i * ystep
        py = TOP + PLOT_H - v / ymax * PLOT_H
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{LEFT + PLOT_W}" y1="{py:.1f}" y2="{py:.1f}"/>'
        )
        parts.append(
            f'<text class="tick" x="{LEFT - 6}" y="{py + 4:.1f}" text-anchor="end">'
            f"{_e(_fmt_num(v, suffix if suffix == '%' else ''))}</text>"
        )
    # Vertical grid and time labels; the date is shown under the first tick and
    # wherever the day changes.
    last_day = None
    ticks, step = _time_ticks(since, until)
    for ts in ticks:
        px = x(ts)
        when = _utc(ts)
        parts.append(
            f'<line class="grid" x1="{px:.1f}" x2="{px:.1f}" y1="{TOP}" y2="{TOP + PLOT_H}"/>'
        )
        day = when.strftime("%b %d")
        if step >= 86400:  # whole days: the time of day says nothing
            text = f'<tspan x="{px:.1f}">{day}</tspan>'
        else:
            text = f'<tspan x="{px:.1f}">{when:%H:%M}</tspan>'
            if day != last_day:
                text += f'<tspan x="{px:.1f}" dy="12">{day}</tspan>'
        last_day = day
        # Labels at the plot's edges would be cut off or meet the y labels: align them.
        anchor = "end" if px > LEFT + PLOT_W - 20 else "start" if px < LEFT + 20 else "middle"
        parts.append(
            f'<text class="tick" x="{px:.1f}" y="{TOP + PLOT_H + 14}" text-anchor="{anchor}">'
            f"{text}</text>"
        )
    # Axes and their labels.
    parts.append(
        f'<path class="axis" d="M{LEFT} {TOP}V{TOP + PLOT_H}H{LEFT + PLOT_W}" fill="none"/>'
    )
    y_label = chart.y_label + ("" if suffix == "%" else f" ({suffix.strip()})")
    parts.append(
        f'<text class="axis-label" transform="translate(13 {TOP + PLOT_H / 2}) rotate(-90)" '
        f'text-anchor="middle">{_e(y_label)}</text>'
    )
    parts.append(
        f'<text class="axis-label" x="{LEFT + PLOT_W / 2}" y="{HEIGHT - 4}" '
        f'text-anchor="middle">time (UTC)</text>'
    )
    if chart.limit is not None:
        ly = y(chart.limit)
        parts.append(
            f'<line class="limit" x1="{LEFT}" x2="{LEFT + PLOT_W}" y1="{ly:.1f}" y2="{ly:.1f}" '
            f'stroke="{LIMIT_COLOR}"/>'
        )
    budget = max(4, MAX_POINTS // max(1, len(chart.series)))
    for i, s in enumerate(chart.series):
        if not s.points:
            continue
        segments = downsample(s.points, budget, since, until)
        d = "".join(_subpath(seg, x, y) for seg in segments if seg)
        color = PALETTE[i % len(PALETTE)]
        parts.append(
            f'<path class="series" data-series="{_e(s.key)}" d="{d}" fill="none" stroke="{color}"/>'
        )
        # A sample with no neighbour in its segment is a dot the line's width: ring it.
        parts += [
            f'<circle class="lone" cx="{x(seg[0][0]):.1f}" cy="{y(seg[0][1]):.1f}" r="3" '
            f'fill="{color}"/>'
            for seg in segments
            if len(seg) == 1
        ]
    # Events over the lines: they are what the reader came for.
    groups = _merge_markers(chart.markers, x)
    parts += [_marker_svg(g, x) for g in groups if _is_band(g, x)]  # under the single lines
    parts += [_marker_svg(g, x) for g in groups if not _is_band(g, x)]
    if chart.limit is not None:
        # After the lines, with a halo (CSS paint-order), so data never hides it.
        parts.append(
            f'<text class="limit-label" x="{LEFT + PLOT_W - 4}" y="{y(chart.limit) - 4:.1f}" '
            f'text-anchor="end" fill="{LIMIT_COLOR}">limit</text>'
        )
    if not chart.has_data:
        parts.append(
            f'<text class="empty" x="{LEFT + PLOT_W / 2}" y="{TOP + PLOT_H / 2}" '
            f'text-anchor="middle">no samples in this range</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _subpath(
    seg: Sequence[tuple[float, float]], x: Callable[[float], float], y: Callable[[float], float]
) -> str:
    coords = [f"{x(t):.1f} {y(v):.1f}" for t, v in seg]
    if len(coords) == 1:
        return f"M{coords[0]}h0"  # a lone sample: a dot (round caps)
    return "M" + coords[0] + "L" + " ".join(coords[1:])


def _stats_text(s: _Series, unit: str) -> str:
    values = [v for _, v in s.points]
    mean = math.fsum(values) / len(values)
    return (
        f"{s.label}: last {_fmt_value(values[-1], unit)}, max {_fmt_value(max(values), unit)}, "
        f"mean {_fmt_value(mean, unit)}"
    )


def _figure(chart: _Chart, since: float, until: float) -> str:
    legend = [
        f'<li><span class="swatch" style="background:{PALETTE[i % len(PALETTE)]}"></span>'
        f"{_e(s.label)}</li>"
        for i, s in enumerate(chart.series)
    ]
    if chart.limit is not None:
        legend.append(f'<li><span class="swatch limit-swatch"></span>{_e(chart.limit_label)}</li>')
    kinds = {m.kind for m in chart.markers}
    for kind, text in (("oom", "OOM kill"), ("restart", "restart"), ("finding", "finding started")):
        if kind in kinds:
            legend.append(f'<li><span class="mark mark-{kind}"></span>{text}</li>')
    stats = [f"<li>{_e(_stats_text(s, chart.unit))}</li>" for s in chart.series if s.points]
    note = f'<p class="note">{_e(chart.note)}</p>' if chart.note else ""
    return (
        f'<figure class="figure" id="{chart.anchor}">'
        f"<figcaption><h4>{_e(chart.title)}</h4>"
        f'<ul class="legend">{"".join(legend)}</ul></figcaption>'
        f"{_chart_svg(chart, since, until)}"
        f'{note}<ul class="stats">{"".join(stats)}</ul>'
        "</figure>"
    )


# -- limits ----------------------------------------------------------------------


def _positive(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def _limits_of(limits: Any) -> _Limits:
    """What a raw sample says of one container's limits (as ``report`` stored them)."""
    if not isinstance(limits, Mapping):
        return _Limits(False, why_unknown="the newest sample has no limits for it")
    from ops.report.rates import _cpu_limit
    from ops.units import format_cpus

    cpus = _positive(limits.get("cpus"))
    cpuset = limits.get("cpuset_cpus")
    try:
        milli = _cpu_limit(
            {"cpus": cpus, "cpuset_cpus": cpuset if isinstance(cpuset, str) else None}
        )
    except ValueError:  # a damaged cpuset string
        milli = round(cpus * 1000) if cpus else None
    cpu_text = ""
    if milli:
        n = format_cpus(milli)
        cpu_text = f"{n} CPU" if milli <= 1000 else f"{n} CPUs"
        if cpus is None or round(cpus * 1000) != milli:
            cpu_text += f" (cpuset {cpuset})"
    return _Limits(True, milli or None, cpu_text, _positive(limits.get("memory")))


def _newest_limits(history: History, host: str) -> tuple[dict[str, _Limits], str]:
    """Each container's limits in the newest sample of ``host``, and why a container
    missing from it has none known."""
    stored = history.previous(host)
    if stored is None:
        return {}, "no raw sample to read them from"
    containers = stored.raw.get("containers")
    if not isinstance(containers, list) or not containers:
        return {}, "the newest sample has no containers"
    out = {
        c["name"]: _limits_of(c.get("limits"))
        for c in containers
        if isinstance(c, Mapping) and isinstance(c.get("name"), str)
    }
    return out, "the container is not in the newest sample"


# -- building the page's content ---------------------------------------------------


def _host_charts(
    history: History, host: str, since: float, until: float, anchor: str
) -> list[_Chart]:
    def get(scope: str, metric: str) -> list[tuple[float, float]]:
        return history.series(scope, metric, since, until, host)

    metrics = history.metrics("host", host)
    mounts = sorted(
        m.removeprefix("disk_used_pct:") for m in metrics if m.startswith("disk_used_pct:")
    )
    return [
        _Chart(
            "CPU",
            "% busy, all CPUs",
            "%",
            [_Series("CPU busy", "host/cpu_pct", get("host", "cpu_pct"))],
            anchor=f"{anchor}-cpu",
        ),
        _Chart(
            "Memory",
            "% used",
            "%",
            [_Series("memory used", "host/memory_used_pct", get("host", "memory_used_pct"))],
            anchor=f"{anchor}-mem",
        ),
        _Chart(
            "Disk space",
            "% used",
            "%",
            [
                _Series(mount, f"host/disk_used_pct:{mount}", get("host", f"disk_used_pct:{mount}"))
                for mount in mounts
            ],
            note="" if mounts else "no disks recorded",
            anchor=f"{anchor}-disk",
        ),
    ]


def _cpu_chart(
    get: Callable[[str], list[tuple[float, float]]], name: str, scope: str, limits: _Limits
) -> _Chart:
    """Against the limit where the samples have it; otherwise in cores, saying whether
    the limit is unset, unknown or simply not sampled."""
    of_limit = get("cpu_pct_of_limit")
    if of_limit:
        label = f"limit (100% = {limits.cpu_text})" if limits.cpu_text else "limit (100%)"
        series = [_Series(name, f"{scope}/cpu_pct_of_limit", of_limit)]
        return _Chart("CPU", "% of CPU limit", "%", series, 100.0, label, of_limit=True)
    cores = get("cpu_pct")
    if not limits.known:
        why = f"CPU limit unknown ({limits.why_unknown})"
        note = f"{why}: 100% is one CPU" if cores else f"no CPU samples in this range; {why}"
        return _Chart(
            "CPU",
            "% of one CPU",
            "%",
            [_Series(name, f"{scope}/cpu_pct", cores)],
            note=note,
            short_note="limit unknown",
        )
    if limits.cpu_milli:
        if not cores:
            return _Chart(
                "CPU",
                "% of CPU limit",
                "%",
                [_Series(name, f"{scope}/cpu_pct_of_limit", [])],
                100.0,
                f"limit (100% = {limits.cpu_text})",
                of_limit=True,
                note=f"no CPU samples in this range (limit {limits.cpu_text})",
            )
        # Samples without a share of the limit were taken before the limit was set.
        return _Chart(
            "CPU",
            "% of one CPU",
            "%",
            [_Series(name, f"{scope}/cpu_pct", cores)],
            limits.cpu_milli / 10,
            f"limit ({limits.cpu_text}, newest sample)",
            note=f"100% is one CPU; the limit of {limits.cpu_text} in the newest sample "
            "was not set when these samples were taken",
            short_note=f"limit {limits.cpu_text} set since",
        )
    return _Chart(
        "CPU",
        "% of one CPU",
        "%",
        [_Series(name, f"{scope}/cpu_pct", cores)],
        note="no CPU limit set: 100% is one CPU"
        if cores
        else "no CPU samples in this range (no CPU limit set)",
        short_note="no limit",
    )


def _mem_chart(
    get: Callable[[str], list[tuple[float, float]]], name: str, scope: str, limits: _Limits
) -> _Chart:
    """Like ``_cpu_chart``: % of the limit, else bytes, with the limit line when known."""
    of_limit = get("mem_pct_of_limit")
    if of_limit:
        label = f"limit (100% = {_fmt_size(limits.memory)})" if limits.memory else "limit (100%)"
        series = [_Series(name, f"{scope}/mem_pct_of_limit", of_limit)]
        return _Chart("Memory", "% of memory limit", "%", series, 100.0, label, of_limit=True)
    used = get("mem_usage")
    if not limits.known:
        why = f"memory limit unknown ({limits.why_unknown})"
        return _Chart(
            "Memory",
            "used",
            "bytes",
            [_Series(name, f"{scope}/mem_usage", used)],
            note=why if used else f"no memory samples in this range; {why}",
            short_note="limit unknown",
        )
    if limits.memory:
        size = _fmt_size(limits.memory)
        if not used:
            return _Chart(
                "Memory",
                "% of memory limit",
                "%",
                [_Series(name, f"{scope}/mem_pct_of_limit", [])],
                100.0,
                f"limit (100% = {size})",
                of_limit=True,
                note=f"no memory samples in this range (limit {size})",
            )
        return _Chart(
            "Memory",
            "used",
            "bytes",
            [_Series(name, f"{scope}/mem_usage", used)],
            limits.memory,
            f"limit ({size}, newest sample)",
            note=f"the limit of {size} in the newest sample was not set when these "
            "samples were taken",
            short_note=f"limit {size} set since",
        )
    return _Chart(
        "Memory",
        "used",
        "bytes",
        [_Series(name, f"{scope}/mem_usage", used)],
        note="no memory limit set"
        if used
        else "no memory samples in this range (no memory limit set)",
        short_note="no limit",
    )


def _container(
    history: History,
    host: str,
    scope: str,
    since: float,
    until: float,
    limits: _Limits,
    anchor: str,
) -> _Container | None:
    """A container's charts and events in the range; None when it has no sample in it."""
    name = scope.removeprefix("container:")

    def get(metric: str) -> list[tuple[float, float]]:
        return history.series(scope, metric, since, until, host)

    cpu, mem = _cpu_chart(get, name, scope, limits), _mem_chart(get, name, scope, limits)
    cpu.anchor, mem.anchor = f"{anchor}-cpu", f"{anchor}-mem"
    throttled = get("throttled_ratio")
    restarts, ooms = get("restarts"), get("oom_kills")
    if not (cpu.has_data or mem.has_data or throttled or restarts or ooms):
        return None
    found = _Container(
        name,
        scope,
        anchor,
        cpu,
        mem,
        throttled,
        [p for p in restarts if p[1] > 0],
        [p for p in ooms if p[1] > 0],
    )
    marks = [_Marker("oom", t, v) for t, v in found.ooms] + [
        _Marker("restart", t, v) for t, v in found.restarts
    ]
    cpu.markers += marks
    mem.markers += marks
    return found


def _host_view(history: History, host: str, since: float, until: float, anchor: str) -> _HostView:
    charts = _host_charts(history, host, since, until, anchor)
    limits, why = _newest_limits(history, host)
    containers: list[_Container] = []
    for scope in history.scopes(host):
        if not scope.startswith("container:"):
            continue
        name = scope.removeprefix("container:")
        known = limits.get(name) or _Limits(False, why_unknown=why)
        found = _container(
            history, host, scope, since, until, known, f"{anchor}-c{len(containers) + 1}"
        )
        if found is not None:
            containers.append(found)
    events = history.finding_events(host, since, until)
    open_now = sorted(
        history.finding_states(host).values(), key=lambda s: (s.last_seen, s.since), reverse=True
    )
    view = _HostView(host, anchor, charts, containers, events, open_now)
    # Where findings started, on the chart they are about (OOM kills and restarts
    # are marked from the samples already).
    for ev in events:
        check = ev.key.rsplit("/", 1)[-1]
        if ev.state != "new" or check in ("oom", "restarts"):
            continue
        chart = _chart_for(view, ev.scope, check)
        if chart is not None:
            chart.markers.append(_Marker("finding", ev.ts, text=f"{ev.kind}: {ev.message}"))
    return view


_CPU_CHECKS = frozenset({"throttling", "cpu_pct", "cpu_pct_of_limit", "throttled_ratio", "load1"})
_MEM_CHECKS = frozenset({"memory", "oom", "mem_usage", "mem_pct_of_limit", "memory_used_pct"})


def _chart_for(view: _HostView, scope: str, check: str) -> _Chart | None:
    """The chart a finding is about: CPU for throttling and CPU, memory for memory and OOM."""
    if scope == "host":
        cpu, mem, disk = view.charts
        if check.startswith("disk"):
            return disk
        return cpu if check in _CPU_CHECKS else mem if check in _MEM_CHECKS else None
    for c in view.containers:
        if c.name == scope:
            return c.cpu if check in _CPU_CHECKS else c.mem if check in _MEM_CHECKS else None
    return None


def _link(view: _HostView, scope: str, check: str, text: str) -> str:
    """``text`` linked to the chart of ``scope`` (its section when no one chart fits);
    plain text, marked, when the range has no chart of it."""
    chart = _chart_for(view, scope, check)
    if chart is not None:
        return f'<a href="#{chart.anchor}">{_e(text)}</a>'
    if scope == "host" and view.has_samples:
        return f'<a href="#{view.anchor}">{_e(text)}</a>'
    for c in view.containers:
        if c.name == scope:
            return f'<a href="#{c.anchor}">{_e(text)}</a>'
    return f'{_e(text)} <span class="na">(no samples in this range)</span>'


# -- the findings section ------------------------------------------------------------


def _counted_cell(points: list[tuple[float, float]], one: str, many: str) -> str:
    if not points:
        return '<td class="na">—</td>'
    total = sum(v for _, v in points)
    where = f"in {_plural(len(points), 'sample')}, last {_fmt_time(points[-1][0])}"
    return f'<td class="warn"><strong>{_e(_plural(total, one, many))}</strong> {_e(where)}</td>'


def _over_cell(points: list[tuple[float, float]], peak: str) -> str:
    if not points:
        return '<td class="na">—</td>'
    return (
        f'<td class="warn"><strong>{_e(_plural(len(points), "sample"))}</strong>, '
        f"peak {_e(peak)}</td>"
    )


def _seen_rows(view: _HostView) -> list[tuple[float, str]]:
    """Per container, what its samples show: OOM kills and restarts (counted from the
    series), memory at or over the near-limit share, throttling over the threshold.
    (last time, row), newest first."""
    rows = []
    for c in view.containers:
        mem = c.mem.series[0].points if c.mem.of_limit else []
        mem_hot = [(t, v) for t, v in mem if v >= MEMORY_NEAR_LIMIT_PCT]
        throttled = [(t, v) for t, v in c.throttled if v >= THROTTLED_RATIO]
        if not (c.ooms or c.restarts or mem_hot or throttled):
            continue
        last = max(t for t, _ in c.ooms + c.restarts + mem_hot + throttled)
        mem_peak = f"{max(v for _, v in mem_hot):.0f}%" if mem_hot else ""
        throttled_peak = f"{100 * max(v for _, v in throttled):.0f}%" if throttled else ""
        row = (
            f'<tr><th scope="row" class="where">{_link(view, c.name, "restarts", c.name)}</th>'
            f"{_counted_cell(c.ooms, 'OOM kill', 'OOM kills')}"
            f"{_counted_cell(c.restarts, 'restart', 'restarts')}"
            f"{_over_cell(mem_hot, mem_peak)}{_over_cell(throttled, throttled_peak)}</tr>"
        )
        rows.append((last, row))
    rows.sort(key=lambda r: r[0], reverse=True)
    return rows


_STATE_TEXT = {"new": "new", "worse": "worse", "repeat": "still", "resolved": "resolved"}


def _findings_block(view: _HostView) -> tuple[str, int]:
    """One host's findings as HTML, and how many things it lists (0: nothing found)."""
    parts = []
    n = 0
    if view.open:
        rows = [
            f'<tr><td><span class="kind">{_e(s.kind)}</span></td>'
            f'<td class="where">{_link(view, s.scope, s.key.rsplit("/", 1)[-1], s.scope)}</td>'
            f"<td>{_e(s.message)}</td>"
            f'<td class="when">{_e(_fmt_time(s.since))}</td>'
            f'<td class="when">{_e(_fmt_time(s.last_seen))}</td></tr>'
            for s in view.open
        ]
        n += len(rows)
        parts.append(
            f'<table class="findings open"><caption>Open now ({len(rows)}), '
            "newest first</caption><thead><tr>"
            '<th scope="col">kind</th><th scope="col">where</th><th scope="col">what</th>'
            '<th scope="col">since</th><th scope="col">last seen</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
    seen = _seen_rows(view)
    if seen:
        n += len(seen)
        parts.append(
            '<table class="findings seen"><caption>In the samples of this range (counted '
            "whether or not a cron run reported them)</caption><thead><tr>"
            '<th scope="col">container</th><th scope="col">OOM kills</th>'
            '<th scope="col">restarts</th>'
            f'<th scope="col">memory ≥ {MEMORY_NEAR_LIMIT_PCT:.0f}% of limit</th>'
            f'<th scope="col">throttled ≥ {100 * THROTTLED_RATIO:.0f}% of periods</th>'
            f"</tr></thead><tbody>{''.join(row for _, row in seen)}</tbody></table>"
        )
    if view.events:
        newest = view.events[::-1][:MAX_EVENT_ROWS]
        rows = [
            f'<tr class="state-{_e(ev.state)}"><td class="when">{_e(_fmt_time(ev.ts))}</td>'
            f'<td><span class="state">{_e(_STATE_TEXT.get(ev.state, ev.state))}</span></td>'
            f'<td><span class="kind">{_e(ev.kind)}</span></td>'
            f'<td class="where">{_link(view, ev.scope, ev.key.rsplit("/", 1)[-1], ev.scope)}</td>'
            f"<td>{_e(ev.message)}</td></tr>"
            for ev in newest
        ]
        n += len(view.events)
        more = len(view.events) - len(newest)
        older = f'<p class="note">… and {more} older reports not listed.</p>' if more > 0 else ""
        parts.append(
            f'<table class="findings events"><caption>Reported by cron in this range '
            f"({len(view.events)}), newest first</caption><thead><tr>"
            '<th scope="col">when</th><th scope="col">state</th><th scope="col">kind</th>'
            '<th scope="col">where</th><th scope="col">what</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>{older}"
        )
    return "".join(parts), n


def _findings_section(views: Sequence[_HostView]) -> str:
    blocks = []
    total = 0
    for view in views:
        block, n = _findings_block(view)
        total += n
        if n and len(views) > 1:
            block = f"<h3>Host {_e(view.host)}</h3>{block}"
        blocks.append(block)
    if not total:
        body = (
            '<p class="no-findings" role="status"><strong>No findings</strong> in this range: '
            "nothing open, nothing reported by cron, and no OOM kill, restart, memory at "
            f"{MEMORY_NEAR_LIMIT_PCT:.0f}% of a limit or throttling in "
            f"{100 * THROTTLED_RATIO:.0f}% of periods in the samples.</p>"
        )
    else:
        body = "".join(blocks)
    return (
        '<section id="findings" class="findings-section" aria-labelledby="findings-title">'
        f'<h2 id="findings-title">Findings</h2>{body}</section>'
    )


# -- the page ------------------------------------------------------------------


def _overview(containers: Sequence[_Container]) -> str:
    """One line per container: last and peak against the limits, OOM kills and
    restarts, so the page says where to look before anyone reads a chart. Peaks past
    the thresholds of ``--fail-on over-limit`` are bold and red (bold for readers
    who miss red)."""

    def flag(text: str, bad: bool) -> str:
        return f'<td class="warn"><strong>{text}</strong></td>' if bad else f"<td>{text}</td>"

    def cells(chart: _Chart, warn_at: float) -> str:
        pts = chart.series[0].points
        if not pts:
            return '<td colspan="2" class="na">no samples</td>'
        last, peak = pts[-1][1], max(v for _, v in pts)
        if not chart.of_limit:
            return (
                f"<td>{_e(_fmt_value(last, chart.unit))}</td>"
                f"<td>{_e(_fmt_value(peak, chart.unit))} "
                f'<span class="na">({_e(chart.short_note)})</span></td>'
            )
        return f"<td>{last:.1f}%</td>" + flag(f"{peak:.1f}%", peak >= warn_at)

    def count(points: list[tuple[float, float]]) -> str:
        total = sum(v for _, v in points)
        return flag(f"{total:.0f}", total > 0)

    body = []
    for c in containers:
        peak_t = max((v for _, v in c.throttled), default=None)
        throttled_cell = (
            "<td>—</td>"
            if peak_t is None
            else flag(f"{100 * peak_t:.0f}%", peak_t >= THROTTLED_RATIO)
        )
        body.append(
            f'<tr><th scope="row"><a href="#{c.anchor}">{_e(c.name)}</a></th>'
            f"{cells(c.cpu, 100.0)}{cells(c.mem, MEMORY_NEAR_LIMIT_PCT)}{throttled_cell}"
            f"{count(c.ooms)}{count(c.restarts)}</tr>"
        )
    return (
        '<table class="overview"><caption>Containers: last value and peak in this range, '
        "as a share of the container's limit</caption><thead><tr>"
        '<th scope="col">container</th>'
        '<th scope="col">CPU last</th><th scope="col">CPU peak</th>'
        '<th scope="col">memory last</th><th scope="col">memory peak</th>'
        '<th scope="col">throttled peak</th><th scope="col">OOM kills</th>'
        '<th scope="col">restarts</th></tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _host_section(view: _HostView, lo: float, hi: float) -> str:
    parts = [
        f'<section aria-labelledby="{view.anchor}-title" id="{view.anchor}">'
        f'<h2 id="{view.anchor}-title">Host {_e(view.host)}</h2><div class="grid">'
    ]
    parts += [_figure(c, lo, hi) for c in view.charts]
    parts.append("</div>")
    if view.containers:
        parts.append(f"<h3>Containers ({len(view.containers)})</h3>")
        parts.append(_overview(view.containers))
        for c in view.containers:
            events = _marker_summary(c.cpu.markers)
            said = f'<p class="happened">{_e(events)} in this range</p>' if events else ""
            parts.append(
                f'<section class="container" id="{c.anchor}" aria-labelledby="{c.anchor}-title">'
                f'<h3 id="{c.anchor}-title">{_e(c.name)}</h3>{said}<div class="grid">'
                f"{_figure(c.cpu, lo, hi)}{_figure(c.mem, lo, hi)}</div></section>"
            )
    parts.append("</section>")
    return "".join(parts)


def _extent(views: Sequence[_HostView]) -> tuple[float, float] | None:
    """The first and last sample time of everything drawn."""
    times: list[float] = []
    for view in views:
        for chart in view.charts:
            times += [p[0] for s in chart.series if s.points for p in (s.points[0], s.points[-1])]
        for c in view.containers:
            for pts in [*(s.points for s in c.cpu.series + c.mem.series), c.throttled]:
                if pts:
                    times += [pts[0][0], pts[-1][0]]
            times += [t for t, _ in c.restarts[:1] + c.restarts[-1:] + c.ooms[:1] + c.ooms[-1:]]
    return (min(times), max(times)) if times else None


def _span_line(first: float, last: float, since: float, until: float) -> str:
    """What span the page covers, and whether the data rather than the request set it."""
    asked = until - since
    slack = max(120.0, 0.01 * asked)
    late, early = first - since > slack, until - last > slack
    if first == last:
        covers = f"One sample, at <strong>{_e(_fmt_time(first))}</strong>."
    else:
        covers = (
            f"Samples from <strong>{_e(_fmt_span(first, last))}</strong> "
            f"({_e(_fmt_duration(last - first))})."
        )
    if not (late or early):
        return covers
    why = []
    if late:
        why.append(f"nothing before {_fmt_time(first)}")
    if early:
        why.append(f"nothing after {_fmt_time(last)}")
    return (
        f"{covers} Limited by the data: of the {_e(_fmt_duration(asked))} asked "
        f"for ({_e(_fmt_span(since, until))}), the history holds {_e(' and '.join(why))}."
    )


_CSS = """
:root{color-scheme:light;--fg:#1b1f24;--muted:#5b6470;--grid:#e3e6ea;--bg:#fff;--card:#f7f8fa;
--warn:#B71C1C}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
header,main,footer{max-width:1240px;margin:0 auto;padding:0 20px}
header{padding-top:18px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:18px;margin:26px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--grid)}
h3{font-size:15px;margin:18px 0 8px}
h4{font-size:14px;margin:0}
a{color:#0b5cad}
.meta,.note,.na,footer{color:var(--muted)}
.meta{margin:2px 0}
.meta strong{color:var(--fg)}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:14px}
.figure{margin:0;background:var(--card);border:1px solid var(--grid);border-radius:6px;
padding:10px 12px;break-inside:avoid}
figcaption{display:flex;flex-wrap:wrap;align-items:baseline;gap:4px 14px;margin-bottom:4px}
.legend,.stats{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:2px 14px;
font-size:12px}
.stats{color:var(--muted);margin-top:2px}
.swatch{display:inline-block;width:14px;height:3px;margin-right:5px;vertical-align:middle}
.limit-swatch{border-top:2px dashed #C62828;height:0}
svg.chart{display:block;width:100%;height:auto}
svg .grid{stroke:var(--grid);stroke-width:1}
svg .axis{stroke:var(--muted);stroke-width:1}
svg .tick{font-size:11px;fill:var(--muted)}
svg .axis-label{font-size:11px;fill:var(--fg)}
svg .series{stroke-width:1.6;stroke-linejoin:round;stroke-linecap:round}
svg .limit{stroke-width:1.4;stroke-dasharray:6 4}
svg .limit-label{font-size:11px;paint-order:stroke;stroke:var(--card);stroke-width:3px;
stroke-linejoin:round}
svg .empty{font-size:14px;fill:var(--muted)}
.note{font-size:12px;margin:2px 0 0}
.happened{margin:-4px 0 8px;color:var(--warn);font-weight:600}
.empty-page{padding:30px;border:1px dashed var(--grid);border-radius:6px;text-align:center;
font-size:16px;color:var(--muted)}
table.overview,table.findings{border-collapse:collapse;margin:4px 0 14px;font-size:13px}
table.findings{width:100%}
.overview caption,.findings caption{text-align:left;color:var(--muted);padding-bottom:4px}
.overview th,.overview td{padding:4px 12px;border-bottom:1px solid var(--grid);text-align:right}
.overview th[scope=row],.overview th:first-child{text-align:left;font-weight:600}
.findings th,.findings td{padding:4px 10px;border-bottom:1px solid var(--grid);text-align:left;
vertical-align:top}
.findings thead th{font-weight:600;color:var(--muted);font-size:12px}
.findings .when,.findings .where{white-space:nowrap;color:var(--muted)}
.findings .where{color:inherit}
.findings .kind,.findings .state{display:inline-block;padding:0 6px;border-radius:3px;
background:var(--card);border:1px solid var(--grid);font-size:12px;white-space:nowrap}
.findings .state-resolved td{color:var(--muted)}
.findings.open{border-left:3px solid var(--warn)}
.warn{color:var(--warn)}
.overview .warn{font-weight:700}
.no-findings{padding:10px 14px;border:1px solid var(--grid);border-radius:6px;background:var(--card)}
footer{font-size:12px;margin:28px auto 20px}
@media print{body{font-size:12px}.grid{grid-template-columns:1fr 1fr}}
"""

# Markers: shape and colour in one place (legend swatches and the SVG marks).
_MARKER_CSS = f"""
.mark{{display:inline-block;margin-right:5px;vertical-align:middle}}
.mark-oom{{width:3px;height:12px;background:{OOM_COLOR}}}
.mark-restart{{width:0;height:12px;border-left:2px dashed {RESTART_COLOR}}}
.mark-finding{{width:0;height:0;border:5px solid transparent;border-top:0;
border-bottom:9px solid {FINDING_COLOR}}}
svg .marker path,svg .marker circle{{stroke-width:1.5}}
svg .marker-oom path{{stroke:{OOM_COLOR};fill:{OOM_COLOR}}}
svg .marker-oom rect{{fill:{OOM_COLOR};fill-opacity:.16}}
svg .marker-restart path{{stroke:{RESTART_COLOR};stroke-dasharray:3 2;fill:none}}
svg .marker-restart circle{{stroke:{RESTART_COLOR};fill:#fff}}
svg .marker-restart rect{{fill:{RESTART_COLOR};fill-opacity:.12}}
svg .marker-finding path{{fill:{FINDING_COLOR};stroke:#1b1f24;stroke-width:.7}}
svg .band-label{{font-size:11px;font-weight:600;paint-order:stroke;stroke:var(--card);
stroke-width:3px;stroke-linejoin:round}}
svg .marker-oom .band-label{{fill:{OOM_COLOR}}}
svg .marker-restart .band-label{{fill:{RESTART_COLOR}}}
"""

# Nothing may load: not a script, font, image or stylesheet, even if an escaped
# name were ever to go wrong. Inline styles are needed by the page itself.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def render_html(
    history: History,
    *,
    since: float,
    until: float,
    host: str | None = None,
    title: str = "vots-ops utilisation report",
    min_span: float = MIN_SPAN_S,
) -> str:
    """The history between ``since`` and ``until`` (epoch seconds) as one HTML page.

    ``host=None`` gives one section per host in the file (points of different
    hosts are never drawn as one line). Every chart shares one time axis: the
    samples that exist in the range (see ``time_axis``; at least ``min_span``
    wide), so a short history fills the chart and the header says so.
    Container limits (for the notes on charts without samples) are read from
    each host's newest raw sample.
    """
    if not (math.isfinite(since) and math.isfinite(until)) or since >= until:
        raise ValueError(f"need finite since < until (got {since}, {until})")
    if not (math.isfinite(min_span) and min_span > 0):
        raise ValueError(f"min_span must be a positive number of seconds (got {min_span})")
    hosts = [host] if host is not None else history.hosts()
    views = [_host_view(history, h, since, until, f"h{i + 1}") for i, h in enumerate(hosts)]
    views = [v for v in views if v.has_samples or v.events or v.open]
    extent = _extent(views)
    if extent is None:
        span = f"{_e(_fmt_span(since, until))} ({_e(_fmt_duration(until - since))})"
        main = [
            _findings_section(views) if views else "",
            '<p class="empty-page" role="status">no samples in this range'
            + (f" for host {_e(host)}" if host is not None else "")
            + "</p>",
        ]
    else:
        first, last = extent
        lo, hi = time_axis(first, last, since, until, min_span)
        span = _span_line(first, last, since, until)
        main = [_findings_section(views)]
        main += [_host_section(v, lo, hi) for v in views if v.has_samples]
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}{_MARKER_CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1>"
        f'<p class="meta span">{span}'
        f"{' · host ' + _e(host) if host is not None else ''}</p></header>"
        f"<main>{''.join(main)}</main>"
        "<footer>Made by vots-ops report from its SQLite history. Each chart keeps the "
        f"minimum and maximum of each time slice (at most {MAX_POINTS} points); history "
        "older than the raw retention is drawn from hourly means. Lines break where "
        "samples are missing. Limits in the notes are those of the newest sample.</footer>"
        "</body></html>\n"
    )
