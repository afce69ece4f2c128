"""The utilisation history as one self-contained HTML page with inline SVG charts.

The page is meant to be mailed, attached to a ticket or opened from a VM with
no internet access, so it loads nothing: inline CSS, SVG drawn here in Python,
no JavaScript, and a Content-Security-Policy that would block any load that
slipped in. Every name that comes from the history (hosts, containers, mounts)
is escaped, since container names are chosen by whoever runs ``docker run``.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ops.report.findings import MEMORY_NEAR_LIMIT_PCT, THROTTLED_RATIO
from ops.report.history import History

MAX_POINTS = 500
# A gap wider than this many times the local sampling interval breaks the line,
# so a stopped cron or a powered-off VM shows as a gap, not as a made-up slope.
GAP_FACTOR = 3.0
# Neighbouring intervals on each side that define "the local sampling interval".
GAP_WINDOW = 5

# Chart geometry in SVG user units; the SVG scales to the column width.
WIDTH, HEIGHT = 600, 230
LEFT, RIGHT, TOP, BOTTOM = 56, 14, 14, 46
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

# Okabe-Ito: tells series apart for the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#000000", "#D55E00")
LIMIT_COLOR = "#C62828"

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
class _Chart:
    title: str
    y_label: str
    unit: str  # "%" or "bytes"
    series: list[_Series]
    limit: float | None = None  # draw the limit line at this value
    note: str = ""

    @property
    def has_data(self) -> bool:
        return any(s.points for s in self.series)


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


# -- scales and ticks ----------------------------------------------------------


def _nice_step(raw: float) -> float:
    """The 1-2-2.5-5 step at or above ``raw``, so ticks land on round numbers."""
    exp = math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * 10**exp >= raw:
            return m * 10**exp
    return 10 ** (exp + 1)  # pragma: no cover - the loop always returns


def _y_scale(chart: _Chart) -> tuple[float, float, str, float]:
    """(y max, tick step, unit suffix, divisor): percentages in 25s up to at least
    100 (past the limit line when there is one); bytes in a binary unit."""
    top = max((v for s in chart.series for _, v in s.points), default=0.0)
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


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def _fmt_time(ts: float) -> str:
    return _utc(ts).strftime("%Y-%m-%d %H:%M UTC")


# -- SVG -----------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _chart_svg(chart: _Chart, since: float, until: float) -> str:
    ymax, ystep, suffix, div = _y_scale(chart)
    span = until - since

    def x(ts: float) -> float:
        return LEFT + (ts - since) / span * PLOT_W

    def y(value: float) -> float:
        return TOP + PLOT_H - (value / div) / ymax * PLOT_H

    summary = "; ".join(_stats_text(s, chart.unit) for s in chart.series if s.points)
    label = f"{chart.title}, {_fmt_time(since)} to {_fmt_time(until)}: " + (
        summary or "no samples in this range"
    )
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
        ly = y(chart.limit * div)
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
        parts.append(
            f'<path class="series" data-series="{_e(s.key)}" d="{d}" fill="none" '
            f'stroke="{PALETTE[i % len(PALETTE)]}"/>'
        )
    if chart.limit is not None:
        # After the lines, with a halo (CSS paint-order), so data never hides it.
        parts.append(
            f'<text class="limit-label" x="{LEFT + PLOT_W - 4}" y="{y(chart.limit * div) - 4:.1f}" '
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


def _figure(chart: _Chart, since: float, until: float, chart_id: str) -> str:
    legend = [
        f'<li><span class="swatch" style="background:{PALETTE[i % len(PALETTE)]}"></span>'
        f"{_e(s.label)}</li>"
        for i, s in enumerate(chart.series)
    ]
    if chart.limit is not None:
        legend.append('<li><span class="swatch limit-swatch"></span>limit (100%)</li>')
    stats = [f"<li>{_e(_stats_text(s, chart.unit))}</li>" for s in chart.series if s.points]
    note = f'<p class="note">{_e(chart.note)}</p>' if chart.note else ""
    return (
        f'<figure class="figure" id="{chart_id}">'
        f"<figcaption><h4>{_e(chart.title)}</h4>"
        f'<ul class="legend">{"".join(legend)}</ul></figcaption>'
        f"{_chart_svg(chart, since, until)}"
        f'{note}<ul class="stats">{"".join(stats)}</ul>'
        "</figure>"
    )


# -- the page ------------------------------------------------------------------


def _host_charts(history: History, host: str, since: float, until: float) -> list[_Chart]:
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
        ),
        _Chart(
            "Memory",
            "% used",
            "%",
            [_Series("memory used", "host/memory_used_pct", get("host", "memory_used_pct"))],
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
        ),
    ]


def _container_charts(
    history: History, host: str, scope: str, since: float, until: float
) -> list[_Chart]:
    """CPU and memory against the limit; without a limit, CPU in cores and memory in bytes."""
    name = scope.removeprefix("container:")

    def get(metric: str) -> list[tuple[float, float]]:
        return history.series(scope, metric, since, until, host)

    cpu = get("cpu_pct_of_limit")
    if cpu:
        cpu_chart = _Chart(
            "CPU",
            "% of CPU limit",
            "%",
            [_Series(name, f"{scope}/cpu_pct_of_limit", cpu)],
            limit=100.0,
        )
    else:
        cpu_chart = _Chart(
            "CPU",
            "% of one CPU",
            "%",
            [_Series(name, f"{scope}/cpu_pct", get("cpu_pct"))],
            note="no CPU limit set: 100% is one CPU",
        )
    mem = get("mem_pct_of_limit")
    if mem:
        mem_chart = _Chart(
            "Memory",
            "% of memory limit",
            "%",
            [_Series(name, f"{scope}/mem_pct_of_limit", mem)],
            limit=100.0,
        )
    else:
        mem_chart = _Chart(
            "Memory",
            "used",
            "bytes",
            [_Series(name, f"{scope}/mem_usage", get("mem_usage"))],
            note="no memory limit set",
        )
    return [cpu_chart, mem_chart]


def _overview(rows: list[tuple[str, list[_Chart], list[tuple[float, float]]]]) -> str:
    """One line per container: last and peak against the limits, so the page says
    where to look before anyone reads a chart. Peaks past the thresholds of
    ``--fail-on over-limit`` are bold and red (bold for readers who miss red)."""

    def flag(text: str, bad: bool) -> str:
        return f'<td class="warn"><strong>{text}</strong></td>' if bad else f"<td>{text}</td>"

    def cells(chart: _Chart, warn_at: float) -> str:
        pts = chart.series[0].points
        if not pts:
            return '<td colspan="2" class="na">no samples</td>'
        last, peak = pts[-1][1], max(v for _, v in pts)
        if chart.limit is None:
            return (
                f"<td>{_e(_fmt_value(last, chart.unit))}</td>"
                f'<td>{_e(_fmt_value(peak, chart.unit))} <span class="na">(no limit)</span></td>'
            )
        return f"<td>{last:.1f}%</td>" + flag(f"{peak:.1f}%", peak >= warn_at)

    body = []
    for name, (cpu, mem), throttled in rows:
        peak_t = max((v for _, v in throttled), default=None)
        throttled_cell = (
            "<td>—</td>"
            if peak_t is None
            else flag(f"{100 * peak_t:.0f}%", peak_t >= THROTTLED_RATIO)
        )
        body.append(
            f'<tr><th scope="row">{_e(name)}</th>{cells(cpu, 100.0)}'
            f"{cells(mem, MEMORY_NEAR_LIMIT_PCT)}{throttled_cell}</tr>"
        )
    return (
        '<table class="overview"><caption>Containers: last value and peak in this range, '
        "as a share of the container's limit</caption><thead><tr>"
        '<th scope="col">container</th>'
        '<th scope="col">CPU last</th><th scope="col">CPU peak</th>'
        '<th scope="col">memory last</th><th scope="col">memory peak</th>'
        '<th scope="col">throttled peak</th></tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


_CSS = """
:root{color-scheme:light;--fg:#1b1f24;--muted:#5b6470;--grid:#e3e6ea;--bg:#fff;--card:#f7f8fa}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
header,main,footer{max-width:1240px;margin:0 auto;padding:0 20px}
header{padding-top:18px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:18px;margin:26px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--grid)}
h3{font-size:15px;margin:18px 0 8px}
h4{font-size:14px;margin:0}
.meta,.note,.na,footer{color:var(--muted)}
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
.empty-page{padding:30px;border:1px dashed var(--grid);border-radius:6px;text-align:center;
font-size:16px;color:var(--muted)}
table.overview{border-collapse:collapse;margin:4px 0 8px;font-size:13px}
.overview caption{text-align:left;color:var(--muted);padding-bottom:4px}
.overview th,.overview td{padding:4px 12px;border-bottom:1px solid var(--grid);text-align:right}
.overview th[scope=row],.overview th:first-child{text-align:left;font-weight:600}
.overview .warn{color:#B71C1C;font-weight:700}
footer{font-size:12px;margin:28px auto 20px}
@media print{body{font-size:12px}.grid{grid-template-columns:1fr 1fr}}
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
) -> str:
    """The history between ``since`` and ``until`` (epoch seconds) as one HTML page.

    ``host=None`` gives one section per host in the file (points of different
    hosts are never drawn as one line). The x axis always spans the requested
    range, so charts line up and missing data shows as missing.
    """
    if not (math.isfinite(since) and math.isfinite(until)) or since >= until:
        raise ValueError(f"need finite since < until (got {since}, {until})")
    hosts = [host] if host is not None else history.hosts()
    sections: list[str] = []
    counter = 0

    def next_id() -> str:
        nonlocal counter
        counter += 1
        return f"c{counter}"

    for h in hosts:
        host_charts = _host_charts(history, h, since, until)
        containers = []
        for scope in history.scopes(h):
            if not scope.startswith("container:"):
                continue
            charts = _container_charts(history, h, scope, since, until)
            if any(c.has_data for c in charts):
                throttled = history.series(scope, "throttled_ratio", since, until, h)
                containers.append((scope.removeprefix("container:"), charts, throttled))
        if not containers and not any(c.has_data for c in host_charts):
            continue
        sid = next_id()
        parts = [f'<section aria-labelledby="{sid}"><h2 id="{sid}">Host {_e(h)}</h2>']
        parts.append('<div class="grid">')
        parts += [_figure(c, since, until, next_id()) for c in host_charts]
        parts.append("</div>")
        if containers:
            parts.append(f"<h3>Containers ({len(containers)})</h3>")
            parts.append(_overview(containers))
            for name, charts, _ in containers:
                cid = next_id()
                parts.append(
                    f'<section class="container" aria-labelledby="{cid}">'
                    f'<h3 id="{cid}">{_e(name)}</h3><div class="grid">'
                )
                parts += [_figure(c, since, until, next_id()) for c in charts]
                parts.append("</div></section>")
        parts.append("</section>")
        sections.append("".join(parts))
    if not sections:
        sections.append(
            '<p class="empty-page" role="status">no samples in this range'
            + (f" for host {_e(host)}" if host is not None else "")
            + "</p>"
        )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1>"
        f'<p class="meta">{_e(_fmt_time(since))} to {_e(_fmt_time(until))}'
        f"{' · host ' + _e(host) if host is not None else ''}</p></header>"
        f"<main>{''.join(sections)}</main>"
        "<footer>Made by vots-ops report from its SQLite history. Each chart keeps the "
        f"minimum and maximum of each time slice (at most {MAX_POINTS} points); history "
        "older than the raw retention is drawn from hourly means. Lines break where "
        "samples are missing.</footer>"
        "</body></html>\n"
    )
