"""The HTML report on a real history file: page structure, escaping, downsampling,
and the page as headless Chromium draws it."""

from __future__ import annotations

import math
import random
import re
import struct
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ops.report.history import HOUR, History, Point
from ops.report.html import MAX_POINTS, downsample, render_html, split_gaps
from tests.support.browser import chromium

T0 = 1_700_000_000 // HOUR * HOUR  # an hour boundary
EVIL = "<script>x"  # a container name that must stay text
MOUNTS = ("/", "/var/lib/docker")
# Four hours of per-minute samples with a cron outage in the middle.
OUTAGE = (T0 + 2 * HOUR, T0 + 2 * HOUR + 30 * 60)


def _samples(
    start: float, minutes: int, host: str = "vm1", *, outage: tuple[float, float] | None = OUTAGE
) -> list[tuple[float, str, dict, list[Point]]]:
    """Per-minute samples as `report` records them: host gauges and rates, and two
    containers with limits, one of them over its CPU limit and leaking memory."""
    rnd = random.Random(7)
    out = []
    for i in range(minutes):
        ts = start + 60 * i
        if outage and outage[0] <= ts < outage[1]:
            continue
        phase = 2 * math.pi * i / 90
        points = [
            Point("host", "cpu_pct", 35 + 20 * math.sin(phase) + rnd.uniform(-5, 5)),
            Point("host", "memory_used_pct", 58 + 4 * math.sin(phase / 3) + rnd.uniform(-1, 1)),
            Point("host", "memory_used_bytes", 9.3e9 + 1e8 * math.sin(phase / 3)),
            Point("host", "load1", 1.2 + math.sin(phase)),
            Point("host", f"disk_used_pct:{MOUNTS[0]}", 41 + 2 * i / minutes),
            Point("host", f"disk_used_pct:{MOUNTS[1]}", 70 + 5 * i / minutes),
        ]
        spike = 130.0 if i % 97 == 50 else 0.0
        agent_cpu = max(spike, 45 + 25 * math.sin(phase) + rnd.uniform(-8, 8))
        points += [
            Point("container:vots-agent-1", "cpu_pct", agent_cpu * 2),
            Point("container:vots-agent-1", "cpu_pct_of_limit", agent_cpu),
            Point("container:vots-agent-1", "throttled_ratio", 0.3 if spike else 0.01),
            Point("container:vots-agent-1", "mem_usage", 1.0e9 * (0.6 + 0.35 * i / minutes)),
            Point("container:vots-agent-1", "mem_pct_of_limit", 60 + 35 * i / minutes),
            Point(f"container:{EVIL}", "cpu_pct", 8 + rnd.uniform(0, 4)),
            Point(f"container:{EVIL}", "cpu_pct_of_limit", 16 + rnd.uniform(0, 8)),
            Point(f"container:{EVIL}", "mem_usage", 2.0e8 + rnd.uniform(0, 1e7)),
            Point(f"container:{EVIL}", "mem_pct_of_limit", 37 + rnd.uniform(0, 2)),
        ]
        out.append((ts, host, {}, points))
    return out


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    with History(tmp_path / "h.sqlite3", auto_compact=False) as h:
        h._record_many(_samples(T0, 4 * 60))
        yield h


class _Page(HTMLParser):
    """Collects elements and attributes the way a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self._stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        """Elements by tag and attributes (``class_`` matches one class, ``http_equiv``
        is ``http-equiv``)."""
        want = {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()}

        def matches(a: dict[str, str]) -> bool:
            return all(
                v in a.get(k, "").split() if k == "class" else a.get(k) == v
                for k, v in want.items()
            )

        return [a for t, a in self.tags if t == tag and matches(a)]


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


def _series_paths(page: _Page) -> dict[str, str]:
    return {a["data-series"]: a["d"] for a in page.find("path", class_="series")}


def _coords(d: str) -> int:
    return len(re.findall(r"-?\d+(?:\.\d+)? -?\d+(?:\.\d+)?", d))


EXPECTED_SERIES = {
    "host/cpu_pct",
    "host/memory_used_pct",
    "host/disk_used_pct:/",
    "host/disk_used_pct:/var/lib/docker",
    "container:vots-agent-1/cpu_pct_of_limit",
    "container:vots-agent-1/mem_pct_of_limit",
    f"container:{EVIL}/cpu_pct_of_limit",
    f"container:{EVIL}/mem_pct_of_limit",
}


# -- structure -------------------------------------------------------------------


def test_page_has_one_chart_per_series_with_limit_lines(history: History) -> None:
    text = render_html(history, since=T0, until=T0 + 4 * HOUR, title="VOTS utilisation")
    page = _parse(text)
    assert text.startswith("<!doctype html>")
    assert page.find("title") and "VOTS utilisation" in page.text
    # Host: CPU, memory, disks (one chart, a line per mount); per container CPU and memory.
    svgs = page.find("svg")
    assert len(svgs) == 3 + 2 * 2
    for svg in svgs:
        assert svg["role"] == "img"
        assert svg["aria-label"].strip()
        assert svg["viewbox"]
    paths = _series_paths(page)
    assert set(paths) == EXPECTED_SERIES
    for key, d in paths.items():
        # The outage breaks every line in two instead of drawing a slope across it.
        assert d.count("M") == 2, key
        assert _coords(d) > 100, key
    # Container charts are against the limit: four dashed 100% lines, in the legend too.
    assert len(page.find("line", class_="limit")) == 4
    assert sum("limit (100%)" in t for t in page.text) == 4
    # Axis labels and legends.
    assert sum(t == "time (UTC)" for t in page.text) == 7
    assert sum(t == "% of CPU limit" for t in page.text) == 2
    assert sum(t == "% of memory limit" for t in page.text) == 2
    assert len(page.find("ul", class_="legend")) == 7
    assert MOUNTS[1] in page.text
    # The overview flags what `--fail-on over-limit` would: the agent's CPU peak past
    # its limit, memory at >= 90% and throttling in >= 25% of periods; nothing else.
    rows = {row.split("</th>")[0]: row for row in text.split('<th scope="row">')[1:]}
    assert rows["vots-agent-1"].count('class="warn"') == 3
    assert "<strong>130.0%</strong>" in rows["vots-agent-1"]
    assert rows["&lt;script&gt;x"].count('class="warn"') == 0


def test_page_loads_nothing(history: History) -> None:
    text = render_html(history, since=T0, until=T0 + 4 * HOUR)
    page = _parse(text)
    assert "http://" not in text and "https://" not in text
    assert "url(" not in text and "@import" not in text
    for tag, attrs in page.tags:
        assert tag not in ("script", "link", "img", "iframe", "object", "embed"), tag
        for name in ("src", "href", "xlink:href", "srcset", "action"):
            assert name not in attrs or attrs[name].startswith("#"), (tag, attrs)
    csp = page.find("meta", http_equiv="Content-Security-Policy")
    assert csp and "default-src 'none'" in csp[0]["content"]


def test_names_are_escaped(history: History) -> None:
    text = render_html(history, since=T0, until=T0 + 4 * HOUR, title="<b>title</b>")
    assert EVIL not in text  # nowhere raw: not in text, attributes or paths
    assert "<b>" not in text
    page = _parse(text)
    assert not page.find("script") and not page.find("b")
    # ... and it reads back as the name, as heading, legend and overview row.
    assert page.text.count(EVIL) >= 3
    assert "&lt;script&gt;x" in text


def test_no_samples_in_range(tmp_path: Path, history: History) -> None:
    empty = History(tmp_path / "empty.sqlite3")
    with empty:
        text = render_html(empty, since=T0, until=T0 + HOUR)
    page = _parse(text)
    assert "no samples in this range" in page.text
    assert not page.find("svg")
    # A range before the history, and a host it does not know.
    for host in (None, "nope"):
        page = _parse(render_html(history, since=T0 - 2 * HOUR, until=T0 - HOUR, host=host))
        assert any("no samples in this range" in t for t in page.text)
        assert not page.find("svg")
    with pytest.raises(ValueError):
        render_html(history, since=T0, until=T0)


def test_one_section_per_host_and_host_filter(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite3", auto_compact=False) as h:
        h._record_many(_samples(T0, 60, "vm1", outage=None) + _samples(T0, 60, "vm2", outage=None))
        both = _parse(render_html(h, since=T0, until=T0 + HOUR))
        one = _parse(render_html(h, since=T0, until=T0 + HOUR, host="vm2"))
    assert {"Host vm1", "Host vm2"} <= set(both.text)
    assert len(both.find("svg")) == 2 * 7
    assert "Host vm2" in one.text and "Host vm1" not in one.text
    assert len(one.find("svg")) == 7
    # Each host's line has its own 60 points, not the two hosts zig-zagged together.
    assert all(_coords(d) == 60 for d in _series_paths(one).values())


def test_containers_without_limits_fall_back_to_cores_and_bytes(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite3", auto_compact=False) as h:
        h._record_many(
            (
                T0 + 60 * i,
                "vm1",
                {},
                [
                    Point("host", "cpu_pct", 10),
                    Point("container:free", "cpu_pct", 150 + i),
                    Point("container:free", "mem_usage", 3 * 1024**3),
                ],
            )
            for i in range(30)
        )
        page = _parse(render_html(h, since=T0, until=T0 + HOUR))
    paths = _series_paths(page)
    assert {"container:free/cpu_pct", "container:free/mem_usage"} <= set(paths)
    assert not page.find("line", class_="limit")
    assert "% of one CPU" in page.text and "used (GiB)" in page.text
    assert "no CPU limit set: 100% is one CPU" in page.text
    assert any("no samples in this range" in t for t in page.text)  # host memory, disks


# -- downsampling ------------------------------------------------------------------


def test_downsampling_bounds_points_and_keeps_the_peaks() -> None:
    week = [(T0 + 60.0 * i, 10.0 + (i % 7)) for i in range(7 * 24 * 60)]
    week[5000] = (week[5000][0], 100.0)  # a one-minute spike
    week[8000] = (week[8000][0], 0.0)
    segments = downsample(week, MAX_POINTS, T0, T0 + 7 * 24 * HOUR)
    pts = [p for s in segments for p in s]
    assert len(segments) == 1
    assert 400 <= len(pts) <= MAX_POINTS
    assert max(v for _, v in pts) == 100.0 and min(v for _, v in pts) == 0.0
    assert [t for t, _ in pts] == sorted(t for t, _ in pts)
    # Gappy data stays within the budget too.
    gappy = [(float(t), 1.0) for t in range(0, 10_000_000, 5000) if (t // 5000) % 3 != 1]
    assert sum(len(s) for s in downsample(gappy, 100)) <= 100


def test_gaps_follow_the_local_sampling_interval() -> None:
    hourly = [(T0 + HOUR * i, 1.0) for i in range(48)]
    minutes = [(T0 + 48 * HOUR + 60.0 * i, 2.0) for i in range(600)]
    # Hourly means followed by raw minutes: one line.
    assert len(split_gaps(hourly + minutes)) == 1
    # One missed cron run is not a gap; a 40-minute outage is.
    missed_one = [p for i, p in enumerate(minutes) if i != 100]
    assert len(split_gaps(missed_one)) == 1
    outage = [p for i, p in enumerate(minutes) if not 100 <= i < 140]
    assert [len(s) for s in split_gaps(outage)] == [100, 460]


def test_a_week_of_minutes_with_folded_history_stays_small(tmp_path: Path) -> None:
    """Eight days: the oldest day folded into hourly means by compaction, as in
    production; the page stays small and the fold is not drawn as a gap."""
    days = 8
    with History(tmp_path / "h.sqlite3", auto_compact=False) as h:
        h._record_many(_samples(T0, days * 24 * 60, outage=None))
        end = T0 + days * 24 * HOUR
        done = h.compact(end, raw_days=7, hourly_days=90)
        assert done.points > 0
        started = time.perf_counter()
        text = render_html(h, since=T0, until=end)
        elapsed = time.perf_counter() - started
    paths = _series_paths(_parse(text))
    assert set(paths) == EXPECTED_SERIES
    for key, d in paths.items():
        assert d.count("M") == 1, key
        per_chart = MAX_POINTS // (2 if "disk" in key else 1)
        assert _coords(d) <= per_chart, key
    assert len(text) < 200_000
    assert elapsed < 5


# -- in a browser ----------------------------------------------------------------


def _png_pixels(path: Path) -> tuple[int, int, list[tuple[int, ...]]]:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes) with zlib."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, header
    bpp = 3 if color == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    rows: list[bytearray] = []
    prev = bytearray(stride)
    for r in range(height):
        kind, line = (
            raw[r * (stride + 1)],
            bytearray(raw[r * (stride + 1) + 1 : (r + 1) * (stride + 1)]),
        )
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xFF
        rows.append(line)
        prev = line
    pixels = [tuple(row[i : i + 3]) for row in rows for i in range(0, stride, bpp)]
    return width, height, pixels


def _near(pixels: Counter[tuple[int, ...]], hex_color: str, tolerance: int = 40) -> int:
    want = tuple(int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return sum(
        n
        for px, n in pixels.items()
        if all(abs(a - b) <= tolerance for a, b in zip(px, want, strict=True))
    )


def test_chromium_draws_the_charts(tmp_path: Path, history: History) -> None:
    page_file = tmp_path / "report.html"
    page_file.write_text(render_html(history, since=T0, until=T0 + 4 * HOUR), encoding="utf-8")
    blank_file = tmp_path / "blank.html"
    blank_file.write_text("<!doctype html><title>blank</title>", encoding="utf-8")

    dom = chromium("--dump-dom", page_file.as_uri(), profile=tmp_path / "p1").stdout
    drawn = _parse(dom)
    paths = _series_paths(drawn)
    assert set(paths) == EXPECTED_SERIES
    assert all(d.strip().startswith("M") and _coords(d) > 100 for d in paths.values())
    assert len(drawn.find("svg")) == 7

    shot, blank = tmp_path / "report.png", tmp_path / "blank.png"
    for html_file, png, profile in ((page_file, shot, "p2"), (blank_file, blank, "p3")):
        chromium(
            f"--screenshot={png}",
            "--window-size=1280,2000",
            html_file.as_uri(),
            profile=tmp_path / profile,
        )
        assert png.is_file()
    width, height, pixels = _png_pixels(shot)
    assert (width, height) == (1280, 2000)
    colors = Counter(pixels)
    _, _, blank_pixels = _png_pixels(blank)
    assert len(Counter(blank_pixels)) <= 2  # the blank page really is blank
    assert len(colors) > 200  # text, anti-aliased lines, cards
    white = colors[(255, 255, 255)]
    assert white < 0.9 * width * height
    # The series colours and the limit line are actually painted.
    assert _near(colors, "#0072B2") > 2000
    assert _near(colors, "#E69F00") > 200  # the second disk
    assert _near(colors, "#C62828") > 200
    assert shot.stat().st_size > 5 * blank.stat().st_size
