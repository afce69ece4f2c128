"""The HTML report on a real history file: page structure, the time axis, findings,
markers, notes, escaping, downsampling, and the page as headless Chromium draws it."""

from __future__ import annotations

import html
import json
import math
import random
import re
import shutil
import struct
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from ops.report.findings import Judgement, anomaly_finding, judge, track
from ops.report.history import HOUR, FindingEvent, FindingState, History, Point
from ops.report.html import (
    LEFT,
    MAX_EVENT_ROWS,
    MAX_MARKER_GROUPS,
    MAX_POINTS,
    MIN_SPAN_S,
    PLOT_W,
    downsample,
    render_html,
    split_gaps,
    time_axis,
)
from tests.support.browser import chromium
from tests.support.cli import Cli
from tests.support.docker import ok, run
from tests.support.images import busybox_image

T0 = 1_700_000_000 // HOUR * HOUR  # an hour boundary
MiB = 1024**2
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


# -- histories with findings -------------------------------------------------------

AGENT, RAG, DASH = "vots-agent-1", "vots-rag-1", "vots-dashboard-1"


def _limits(cpus: float | None, memory: int | None, cpuset: str | None = None) -> dict:
    """A container's ``limits`` as ``report`` stores them in the raw sample."""
    return {
        "cpus": cpus,
        "cpuset_cpus": cpuset,
        "cpu_shares": None,
        "memory": memory,
        "memory_reservation": None,
        "pids": 256,
    }


LIMITS = {
    AGENT: _limits(0.5, 512 * MiB),
    RAG: _limits(0.33, 256 * MiB),
    DASH: _limits(0.25, 128 * MiB),
    EVIL: _limits(None, None),
}
CRASH_MINUTES, CRASH_FROM = 180, 135  # the rag container crash-loops for the last 45 minutes
THROTTLED = range(60, 76)  # minutes the agent is throttled in 40% of its periods
EVIL_RESTART, ANOMALY_AT = 100, 150


def _crash_rates(i: int, rnd: random.Random) -> list[dict[str, Any]]:
    """One minute's container rates, shaped like ``rates()`` gives them."""
    phase = 2 * math.pi * i / 60
    agent_limit = 0.5 * 1000
    agent_cpu = 55 + 25 * math.sin(phase) + rnd.uniform(-5, 5)
    agent = {
        "name": AGENT,
        "state": "running",
        "exit_code": 0,
        "cpu_pct": agent_cpu * agent_limit / 1000,
        "cpu_pct_of_limit": agent_cpu,
        "throttled_ratio": 0.4 if i in THROTTLED else 0.02,
        "mem_usage": (0.5 + 0.1 * i / CRASH_MINUTES) * 512 * MiB,
        "memory_limit_bytes": 512 * MiB,
        "restarts": 0 if i else None,
        "oom_kills": 0 if i else None,
    }
    agent["mem_pct_of_limit"] = 100 * agent["mem_usage"] / (512 * MiB)
    rag: dict[str, Any] = {"name": RAG, "memory_limit_bytes": 256 * MiB, "exit_code": 0}
    if i < CRASH_FROM:
        rag.update(
            state="running",
            cpu_pct=0.33 * (30 + rnd.uniform(-5, 5)),
            cpu_pct_of_limit=30 + rnd.uniform(-5, 5),
            throttled_ratio=0.01,
            mem_usage=(0.6 + 0.3 * i / CRASH_FROM) * 256 * MiB,
            restarts=0 if i else None,
            oom_kills=0 if i else None,
        )
        rag["mem_pct_of_limit"] = 100 * rag["mem_usage"] / (256 * MiB)
    else:
        # Restarted since the last sample every minute: no CPU rate, and every third
        # minute it was OOM-killed and is waiting out its restart delay (no memory).
        killed = (i - CRASH_FROM) % 3 == 0
        rag.update(restarts=1, oom_kills=1 if killed else 0, exit_code=137)
        if killed:
            rag.update(state="restarting")
        else:
            rag.update(state="running", mem_usage=(0.9 + 0.03 * ((i - CRASH_FROM) % 3)) * 256 * MiB)
            rag["mem_pct_of_limit"] = 100 * rag["mem_usage"] / (256 * MiB)
    evil = {
        "name": EVIL,
        "state": "running",
        "exit_code": 1 if i >= EVIL_RESTART else 0,
        "cpu_pct": None if i == EVIL_RESTART else 4 + rnd.uniform(0, 2),
        "mem_usage": 90e6 + rnd.uniform(0, 5e6),
        "restarts": (1 if i == EVIL_RESTART else 0) if i else None,
        "oom_kills": 0 if i else None,
    }
    out = [agent, rag, evil]
    if i == CRASH_MINUTES - 1:
        # New in the newest sample: one memory reading, no rate yet.
        dash = {"name": DASH, "state": "running", "mem_usage": 50 * MiB}
        dash["mem_pct_of_limit"] = 100 * dash["mem_usage"] / (128 * MiB)
        out.append(dash)
    return out


_CONTAINER_METRICS = (
    "cpu_pct",
    "cpu_pct_of_limit",
    "throttled_ratio",
    "mem_usage",
    "mem_pct_of_limit",
    "restarts",
    "oom_kills",
)


def _record_crash_loop(h: History, host: str = "vm1") -> list[FindingEvent]:
    """Three hours of a stack with a crash loop, recorded as `report` would (points
    and the raw containers' limits), and findings judged and tracked minute by minute
    by the real ``judge``/``track``, stored in one ``update_findings``."""
    rnd = random.Random(11)
    samples, states, events = [], {}, []
    for i in range(CRASH_MINUTES):
        ts = T0 + 60 * i
        containers = _crash_rates(i, rnd)
        points = [
            Point("host", "cpu_pct", (95.0 if i == ANOMALY_AT else 30 + rnd.uniform(-3, 3))),
            Point("host", "memory_used_pct", 62 + rnd.uniform(-1, 1)),
            Point("host", "disk_used_pct:/", 48.0),
        ]
        for c in containers:
            for metric in _CONTAINER_METRICS:
                if c.get(metric) is not None:
                    points.append(Point(f"container:{c['name']}", metric, c[metric]))
        raw = {"containers": [{"name": c["name"], "limits": LIMITS[c["name"]]} for c in containers]}
        samples.append((ts, host, raw, points))
        judged = judge({"containers": containers})
        if i == ANOMALY_AT:
            found = anomaly_finding("host", "cpu_pct", 95.0, 30.0, 14.0)
            judged = Judgement([*judged.findings, found], judged.clear, judged.scopes)
        states, new, _ = track(states, judged, ts)
        events += new
    h._record_many(samples)
    h.update_findings(host, lambda _old: (states, events))
    return events


@pytest.fixture
def crash(tmp_path: Path) -> Iterator[History]:
    with History(tmp_path / "crash.sqlite3", auto_compact=False) as h:
        _record_crash_loop(h)
        yield h


def _short(h: History, minutes: int = 16, start: float = T0) -> None:
    """A quarter of an hour of history: a host and one container with limits."""
    rnd = random.Random(3)
    h._record_many(
        (
            start + 60 * i,
            "vm1",
            {"containers": [{"name": AGENT, "limits": LIMITS[AGENT]}]},
            [
                Point("host", "cpu_pct", 20 + 10 * math.sin(i / 3) + rnd.uniform(-2, 2)),
                Point("host", "memory_used_pct", 40 + i / 4),
                Point("host", "disk_used_pct:/", 31.0),
                Point(f"container:{AGENT}", "cpu_pct", 20 + rnd.uniform(0, 10)),
                Point(f"container:{AGENT}", "cpu_pct_of_limit", 40 + rnd.uniform(0, 20)),
                Point(f"container:{AGENT}", "mem_usage", 200 * MiB + i * MiB),
                Point(f"container:{AGENT}", "mem_pct_of_limit", 100 * (200 + i) / 512),
                Point(f"container:{AGENT}", "restarts", 0),
                Point(f"container:{AGENT}", "oom_kills", 0),
            ],
        )
        for i in range(minutes)
    )


# -- reading the page --------------------------------------------------------------


class _Page(HTMLParser):
    """Collects elements and attributes the way a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def joined(self) -> str:
        """The text as a reader sees it: one space between words, none before a comma."""
        return re.sub(r" ([,.;:])", r"\1", " ".join(" ".join(self.text).split()))

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        """Elements by tag and attributes (``class_`` matches one class, ``http_equiv``
        is ``http-equiv``, ``data_marker`` is ``data-marker``)."""
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


def _xs(d: str) -> list[float]:
    return [float(x) for x, _ in re.findall(r"(-?\d+(?:\.\d+)?) (-?\d+(?:\.\d+)?)", d)]


def _between(text: str, start: str, end: str) -> str:
    """The markup from the first ``start`` to the next ``end`` after it."""
    i = text.index(start)
    return text[i : text.index(end, i) + len(end)]


def _figures(text: str) -> dict[str, _Page]:
    """Each chart's figure, by its id."""
    out = {}
    for m in re.finditer(r'<figure class="figure" id="([^"]+)">.*?</figure>', text, re.S):
        out[m.group(1)] = _parse(m.group(0))
    return out


def _section(text: str, name: str) -> str:
    """The section of the container called ``name``."""
    m = re.search(
        r'<section class="container" id="([^"]+)"[^>]*><h3 id="[^"]+">'
        + re.escape(html.escape(name, quote=True))
        + r"</h3>.*?</section>",
        text,
        re.S,
    )
    assert m, name
    return m.group(0)


def _overview_rows(text: str) -> dict[str, str]:
    table = _between(text, '<table class="overview">', "</table>")
    rows = {}
    for row in re.findall(r"<tr><th scope=\"row\">.*?</tr>", table):
        name = re.search(r'<a href="#[^"]+">(.*?)</a>', row)
        assert name
        rows[name.group(1)] = row
    return rows


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
    rows = _overview_rows(text)
    assert rows["vots-agent-1"].count('class="warn"') == 3
    assert "<strong>130.0%</strong>" in rows["vots-agent-1"]
    assert rows["&lt;script&gt;x"].count('class="warn"') == 0
    # The findings counted from the samples say the same, with no cron run behind them.
    seen = _between(text, '<table class="findings seen">', "</table>")
    assert "vots-agent-1" in seen and "&lt;script&gt;x" not in seen


def test_page_loads_nothing(history: History, crash: History) -> None:
    for h, since, until in ((history, T0, T0 + 4 * HOUR), (crash, T0, T0 + 3 * HOUR)):
        text = render_html(h, since=since, until=until)
        page = _parse(text)
        assert "http://" not in text and "https://" not in text
        assert "url(" not in text and "@import" not in text
        for tag, attrs in page.tags:
            assert tag not in ("script", "link", "img", "iframe", "object", "embed"), tag
            for name in ("src", "href", "xlink:href", "srcset", "action"):
                assert name not in attrs or attrs[name].startswith("#"), (tag, attrs)
        csp = page.find("meta", http_equiv="Content-Security-Policy")
        assert csp and "default-src 'none'" in csp[0]["content"]


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
    with pytest.raises(ValueError):
        render_html(history, since=T0, until=T0 + HOUR, min_span=0)


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


# -- the time axis -----------------------------------------------------------------


def test_time_axis_follows_the_samples() -> None:
    day = 86400.0
    # Samples over the whole range: the range, exactly.
    assert time_axis(T0, T0 + day, T0, T0 + day + 1) == (T0, T0 + day + 1)
    # A quarter of an hour at the end of a day: that quarter, padded on the left
    # only (the right end is the newest sample, which the CLI's range ends at).
    lo, hi = time_axis(T0 + day - 900, T0 + day, T0, T0 + day + 1)
    assert (lo, hi) == (T0 + day - 900 - 18, T0 + day + 1)
    # One sample at the end asked for (the CLI's newest): the minimum span before it.
    assert time_axis(T0 + 3600, T0 + 3600, T0, T0 + 3601) == (T0 + 3601 - MIN_SPAN_S, T0 + 3601)
    # One sample inside the range: the minimum span around it; never before the range.
    assert time_axis(T0 + 3600, T0 + 3600, T0, T0 + 7200) == (
        T0 + 3600 - MIN_SPAN_S / 2,
        T0 + 3600 + MIN_SPAN_S / 2,
    )
    assert time_axis(T0 + 60, T0 + 60, T0, T0 + 7200) == (T0, T0 + MIN_SPAN_S)
    # Samples in the middle of the range: padded on both sides.
    lo, hi = time_axis(T0 + 3600, T0 + 7200, T0, T0 + day)
    assert (lo, hi) == (T0 + 3600 - 72, T0 + 7200 + 72)
    with pytest.raises(ValueError):
        time_axis(T0 + 1, T0, T0, T0 + day)


def test_one_sample_says_so(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite3", auto_compact=False) as h:
        _short(h, minutes=1)
        text = render_html(h, since=T0 - 86400 + 1, until=T0 + 1)
    header = _parse(_between(text, '<p class="meta span">', "</p>")).joined
    assert header.startswith("One sample, at 2023-11-14 22:00 UTC. Limited by the data"), header
    # Drawn as dots at the right edge of a ten-minute axis.
    page = _parse(text)
    assert len(page.find("circle", class_="lone")) == 5
    ticks = [t for t in _figures(text)["h1-cpu"].text if re.fullmatch(r"\d\d:\d\d", t)]
    assert ticks == ["21:52", "21:54", "21:56", "21:58", "22:00"], ticks


def test_a_short_history_fills_the_charts(tmp_path: Path, history: History) -> None:
    with History(tmp_path / "short.sqlite3", auto_compact=False) as h:
        _short(h)
        now = h.newest_ts()
        assert now is not None
        text = render_html(h, since=now - 86400, until=now + 1)
    page = _parse(text)
    paths = _series_paths(page)
    assert paths
    for key, d in paths.items():
        xs = _xs(d)
        # The first sample near the left edge, the last at the right: the chart is
        # the quarter of an hour that exists, not a sliver of a day.
        assert min(xs) - LEFT < 0.05 * PLOT_W, key
        assert LEFT + PLOT_W - max(xs) < 0.01 * PLOT_W, key
    header = _between(text, '<p class="meta span">', "</p>")
    assert "Limited by the data" in header, header
    assert "(15 min)" in header and "of the 24 h asked for" in header
    assert "nothing before 2023-11-14 22:00 UTC" in _parse(header).joined
    # Time ticks every five minutes, not every six hours.
    ticks = [t for t in _figures(text)["h1-cpu"].text if re.fullmatch(r"\d\d:\d\d", t)]
    assert ticks == ["22:00", "22:05", "22:10", "22:15"], ticks
    # A range the samples fill says so, without "limited".
    full = _between(
        render_html(history, since=T0, until=T0 + 4 * HOUR), '<p class="meta span">', "</p>"
    )
    assert "Limited" not in full and "(4 h)" in full


def test_cli_html_of_a_short_history(cli: Cli, tmp_path: Path) -> None:
    """The real `report --format html --days 1` on a quarter of an hour of history."""
    db = tmp_path / "h.sqlite3"
    with History(db, auto_compact=False) as h:
        _short(h)
    proc = cli.run("report", "--format", "html", "--days", "1", "--db", str(db))
    assert proc.returncode == 0, proc.stderr
    header = _parse(_between(proc.stdout, '<p class="meta span">', "</p>")).joined
    assert header == (
        "Samples from 2023-11-14 22:00 to 22:15 UTC (15 min). Limited by the data: of the "
        "24 h asked for (2023-11-13 22:15 to 2023-11-14 22:15 UTC), the history holds nothing "
        "before 2023-11-14 22:00 UTC."
    ), header
    page = _parse(proc.stdout)
    assert all(min(_xs(d)) - LEFT < 0.05 * PLOT_W for d in _series_paths(page).values())
    assert "No findings" in page.text


CRASH_LOOP = "x=$(head -c 100000000 /dev/urandom)"  # the shell itself outgrows 32 MiB


@pytest.mark.docker
@pytest.mark.slow
def test_cli_html_of_a_real_crash_loop(cli: Cli, tmp_path: Path) -> None:
    """A container OOM-killed and restarted by the engine over and over, and one
    started just before the last sample, both limited to 0.33 CPU: sampled by the
    real cron command, drawn by the real `report --format html`."""
    docker = shutil.which("docker")
    assert docker, "docker CLI not installed"
    image = busybox_image()
    run_id = uuid.uuid4().hex[:10]
    label = f"io.vots.test.html={run_id}"
    loop, once = f"vots-html-{run_id}-loop", f"vots-html-{run_id}-once"
    db = tmp_path / "h.sqlite3"
    limits = ["--label", label, "--cpus", "0.33", "--memory", "32m"]
    cron = ("report", "--db", str(db), "--quiet", "--fail-on", "restart", "--fail-on", "over-limit")

    def restarts() -> int:
        return json.loads(ok([docker, "inspect", "--format", "{{json .RestartCount}}", loop]))

    def wait_for_a_restart(after: int) -> None:
        deadline = time.monotonic() + 120  # the engine's back-off doubles every restart
        while restarts() <= after:
            assert time.monotonic() < deadline, "the engine did not restart the crash loop"
            time.sleep(0.2)

    try:
        always = ["--restart", "always", image, "sh", "-c", CRASH_LOOP]
        ok([docker, "run", "-d", "--name", loop, *limits, *always])
        wait_for_a_restart(0)
        # Cron runs with a restart between each two: every interval has one to count.
        for _ in range(3):
            seen_by_engine = restarts()
            assert cli.run(*cron).returncode in (0, 1)
            wait_for_a_restart(seen_by_engine)
        ok([docker, "run", "-d", "--name", once, *limits, image, "sleep", "300"])
        assert cli.run(*cron).returncode in (0, 1)
        proc = cli.run("report", "--format", "html", "--days", "1", "--db", str(db))
    finally:
        ids = run([docker, "ps", "-aq", "--filter", f"label={label}"]).stdout.split()
        if ids:
            run([docker, "rm", "-f", "-v", *ids])
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    (tmp_path / "report.html").write_text(text, encoding="utf-8")  # to look at when it fails
    # The crash loop: counted from its samples, marked on its charts, reported by cron.
    seen = _parse(_between(text, '<table class="findings seen">', "</table>")).joined
    row = re.search(rf"{re.escape(loop)} .*? (\d+) restarts? in (\d+) samples?", seen)
    assert row and int(row.group(1)) >= 3 and int(row.group(2)) == 3, seen
    section = _section(text, loop)
    assert _parse(section).find("g", data_marker="restart")
    events = _parse(_between(text, '<table class="findings events">', "</table>")).joined
    assert loop in events
    # Both have a 0.33 CPU limit: never "no CPU limit set", whatever was sampled.
    for name in (loop, once):
        cpu = _parse(_between_fig(text, name, "cpu"))
        assert "limit (100% = 0.33 CPU)" in cpu.text, cpu.text
        assert "no CPU limit set" not in _note(text, name, "cpu")
    assert _note(text, once, "cpu") == "no CPU samples in this range (limit 0.33 CPU)"
    assert "limit (100% = 32 MiB)" in _parse(_between_fig(text, once, "mem")).text


# -- findings ----------------------------------------------------------------------


def test_findings_section_comes_first_and_links_to_the_charts(crash: History) -> None:
    text = render_html(crash, since=T0, until=T0 + 3 * HOUR)
    page = _parse(text)
    main = text[text.index("<main>") :]
    assert main.startswith('<main><section id="findings"')
    findings = _between(text, '<section id="findings"', "</section>")
    # Every link of the page goes to an element of the page.
    ids = {a["id"] for _, a in page.tags if "id" in a}
    hrefs = [a["href"] for a in _parse(findings).find("a")]
    assert hrefs and all(h.startswith("#") and h[1:] in ids for h in hrefs), hrefs
    # Open now: the crash loop's OOM kills (restarts are part of them: judge says so).
    open_now = _parse(_between(findings, '<table class="findings open">', "</table>")).joined
    assert "vots-rag-1" in open_now and "OOM-killed once" in open_now, open_now
    rag = _section(text, RAG)
    rag_mem = re.search(r'id="([^"]+-mem)"', rag)
    assert rag_mem
    assert f'href="#{rag_mem.group(1)}">vots-rag-1</a>' in findings  # memory: its memory chart
    # Reported by cron: newest first, over-limit (throttling, OOM), restarts and the
    # anomaly, each where it belongs.
    events = _between(findings, '<table class="findings events">', "</table>")
    rows = re.findall(r'<tr class="state-(\w+)"><td class="when">([^<]+)</td>(.*?)</tr>', events)
    times = [when for _, when, _ in rows]
    assert times == sorted(times, reverse=True) and len(rows) == len(crash.finding_events("vm1"))
    said = _parse(events).joined
    assert "CPU-throttled in 40% of periods" in said
    assert "resolved after 16 min" in said  # the throttling, once it stopped
    assert "restarted once since the last sample" in said  # EVIL's restart
    assert "CPU 95.0% is up from its usual 30.0%" in said
    agent = re.search(r'id="([^"]+-cpu)"', _section(text, AGENT))
    assert agent and f'href="#{agent.group(1)}">vots-agent-1</a>' in events  # throttling: CPU
    assert 'href="#h1-cpu">host</a>' in events  # the host's anomaly: the host's CPU chart


def test_restarts_and_oom_kills_are_counted_from_the_samples(crash: History) -> None:
    text = render_html(crash, since=T0, until=T0 + 3 * HOUR)
    seen = _between(text, '<table class="findings seen">', "</table>")
    rows = {
        _parse(r).joined.split(" ")[0]: _parse(r).joined
        for r in re.findall(r"<tr><th scope=\"row\"[^>]*>.*?</tr>", seen)
    }
    crashing = CRASH_MINUTES - CRASH_FROM
    assert rows[RAG].startswith(
        f"{RAG} {crashing // 3} OOM kills in {crashing // 3} samples, last 2023-11-15 00:57 UTC "
        f"{crashing} restarts in {crashing} samples, last 2023-11-15 00:59 UTC"
    ), rows[RAG]
    assert "peak 96%" in rows[RAG]  # memory at >= 90% between the kills
    assert rows[AGENT].endswith(f"{len(THROTTLED)} samples, peak 40%")
    assert rows[EVIL].startswith(f"{EVIL} — 1 restart in 1 sample")
    # Cron said far fewer lines than the samples hold: that is what this table is for.
    reported = [e for e in crash.finding_events("vm1") if e.scope == RAG]
    assert 0 < len(reported) < crashing
    # Newest first: the rag container's last restart is the latest.
    assert list(rows) == [RAG, EVIL, AGENT]


def test_a_crash_loop_shows_when_no_cron_run_reported_it(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite3", auto_compact=False) as h:
        h._record_many(
            (
                T0 + 60 * i,
                "vm1",
                {"containers": [{"name": RAG, "limits": LIMITS[RAG]}]},
                [
                    Point("host", "cpu_pct", 20.0),
                    Point(f"container:{RAG}", "restarts", 1),
                    Point(f"container:{RAG}", "oom_kills", i % 2),
                ],
            )
            for i in range(30)
        )
        text = render_html(h, since=T0, until=T0 + 30 * 60)
    findings = _parse(_between(text, '<section id="findings"', "</section>")).joined
    assert "No findings" not in findings
    assert f"{RAG} 15 OOM kills in 15 samples" in findings
    assert "30 restarts in 30 samples" in findings
    # Its section exists (with no CPU or memory sample at all), markers on both charts.
    rag = _section(text, RAG)
    assert "30 restarts" in _parse(rag).joined and "15 OOM kills" in _parse(rag).joined
    assert len(_figures(rag)) == 2


def test_no_findings_said_plainly(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite3", auto_compact=False) as h:
        _short(h)
        text = render_html(h, since=T0, until=T0 + 16 * 60)
    findings = _parse(_between(text, '<section id="findings"', "</section>"))
    assert findings.joined.startswith("Findings No findings in this range")
    assert not findings.find("table")


# -- markers -----------------------------------------------------------------------


def test_markers_where_oom_kills_restarts_and_findings_happened(crash: History) -> None:
    text = render_html(crash, since=T0, until=T0 + 3 * HOUR)
    crashing = CRASH_MINUTES - CRASH_FROM
    rag = _section(text, RAG)
    figures = _figures(rag)
    assert len(figures) == 2
    for fig in figures.values():  # CPU and memory: the same events on both
        counts = Counter()
        for kind in ("oom", "restart"):
            for g in fig.find("g", data_marker=kind):
                counts[kind] += float(g["data-count"])
                assert T0 + CRASH_FROM * 60 <= float(g["data-ts"]) < T0 + CRASH_MINUTES * 60
        assert counts == {"oom": crashing // 3, "restart": crashing}
        # Drawn as lines from the top to the bottom of the plot, inside it, titled for
        # a pointer and a screen reader.
        lines = [
            float(m.group(1))
            for d in (a["d"] for a in fig.find("path") if "V" in a.get("d", ""))
            for m in re.finditer(r"M(-?[\d.]+) 14V184(?!H)", d)
        ]
        assert len(lines) == crashing // 3 + 2  # the OOM kills, and the band's two edges
        assert all(LEFT <= px <= LEFT + PLOT_W for px in lines)
        assert "OOM kill" in fig.text and "restart" in fig.text  # the legend
        titles = [t for t in fig.text if t.startswith(("1 restart", "2 restarts", "1 OOM"))]
        assert titles, fig.text
        (svg,) = fig.find("svg")
        assert f"marked: {crashing // 3} OOM kills, {crashing} restarts" in svg["aria-label"]
    # A restart a minute (under four units apart here) is one band with its count;
    # an OOM kill every three minutes is a line each.
    fig = next(iter(figures.values()))
    (band,) = fig.find("g", data_marker="restart")
    assert "marker-band" in band["class"] and band["data-count"] == str(crashing)
    assert (band["data-ts"], band["data-until"]) == (
        f"{T0 + CRASH_FROM * 60}",
        f"{T0 + (CRASH_MINUTES - 1) * 60}",
    )
    assert f"{crashing} restarts" in fig.text  # its label, readable without a pointer
    assert len(fig.find("g", data_marker="oom")) == crashing // 3
    assert not any("marker-band" in g["class"] for g in fig.find("g", data_marker="oom"))
    # The agent's throttling started at minute 60: a finding marker on its CPU chart.
    agent = _figures(_section(text, AGENT))
    cpu = next(f for k, f in agent.items() if k.endswith("-cpu"))
    (started,) = cpu.find("g", data_marker="finding")
    assert float(started["data-ts"]) == T0 + THROTTLED[0] * 60
    assert any("CPU-throttled in 40% of periods" in t for t in cpu.text)
    # The host's anomaly on the host's CPU chart.
    (anomaly,) = _figures(text)["h1-cpu"].find("g", data_marker="finding")
    assert float(anomaly["data-ts"]) == T0 + ANOMALY_AT * 60
    # No markers where nothing happened.
    assert not _figures(text)["h1-disk"].find("g", class_="marker")


def test_a_week_of_crash_loop_stays_bounded(tmp_path: Path) -> None:
    """A restart every minute for a week, and one every 80 minutes (just over the
    merge distance apart on a week's axis): markers merged and capped per chart,
    counts kept, the report list capped, the page small."""
    minutes = 7 * 24 * 60
    sparse = "vots-sparse-1"
    with History(tmp_path / "h.sqlite3", auto_compact=False) as h:
        h._record_many(
            (
                T0 + 60 * i,
                "vm1",
                {"containers": [{"name": RAG, "limits": LIMITS[RAG]}]},
                [
                    Point(f"container:{RAG}", "mem_pct_of_limit", 80 + i % 20),
                    Point(f"container:{RAG}", "restarts", 1),
                    Point(f"container:{RAG}", "oom_kills", 1 if i % 5 == 0 else 0),
                    Point(f"container:{sparse}", "restarts", 1 if i % 80 == 0 else 0),
                ],
            )
            for i in range(minutes)
        )
        events = [
            FindingEvent(T0 + 60 * i, f"restart/{RAG}/restarts", "restart", RAG, "repeat", "x")
            for i in range(0, minutes, 30)
        ]
        h.update_findings("vm1", lambda states: (states, events))
        text = render_html(h, since=T0, until=T0 + minutes * 60)
    page = _parse(text)
    for name, kind, total in (
        (RAG, "restart", minutes),
        (RAG, "oom", minutes // 5),
        (sparse, "restart", math.ceil(minutes / 80)),
    ):
        for fig in _figures(_section(text, name)).values():
            groups = fig.find("g", data_marker=kind)
            assert 0 < len(groups) <= MAX_MARKER_GROUPS, (name, kind, len(groups))
            assert sum(float(g["data-count"]) for g in groups) == total
    rows = re.findall(r'<tr class="state-repeat">', text)
    assert len(rows) == MAX_EVENT_ROWS
    assert f"and {len(events) - MAX_EVENT_ROWS} older reports not listed" in page.joined
    assert len(text) < 300_000


# -- notes where samples are missing ---------------------------------------------------


def _note(text: str, heading: str, chart: str) -> str:
    """The note under a container's ``cpu`` or ``mem`` chart ("" without one)."""
    m = re.search(r'<p class="note">(.*?)</p>', _between_fig(text, heading, chart))
    return _parse(m.group(1)).joined if m else ""


def _between_fig(text: str, heading: str, chart: str) -> str:
    section = _section(text, heading)
    m = re.search(rf'<figure class="figure" id="[^"]+-{chart}">.*?</figure>', section, re.S)
    assert m
    return m.group(0)


def test_notes_tell_no_limit_from_no_samples(crash: History, tmp_path: Path) -> None:
    # The crash window only: the rag container has no CPU sample (restarted before
    # every one), the dashboard was sampled once (no rate yet); both have limits.
    window = render_html(crash, since=T0 + CRASH_FROM * 60, until=T0 + CRASH_MINUTES * 60)
    assert _note(window, RAG, "cpu") == "no CPU samples in this range (limit 0.33 CPU)"
    assert _note(window, DASH, "cpu") == "no CPU samples in this range (limit 0.25 CPU)"
    assert _note(window, RAG, "mem") == ""  # between kills it has memory samples
    assert _note(window, EVIL, "cpu") == "no CPU limit set: 100% is one CPU"
    assert _note(window, EVIL, "mem") == "no memory limit set"
    # The empty charts are still against the limit, with its line and its size.
    rag_cpu = _parse(_between_fig(window, RAG, "cpu"))
    assert "% of CPU limit" in rag_cpu.text and rag_cpu.find("line", class_="limit")
    assert "limit (100% = 0.33 CPU)" in rag_cpu.text
    assert "limit (100% = 256 MiB)" in _parse(_between_fig(window, RAG, "mem")).text
    rows = _overview_rows(window)
    assert '<td colspan="2" class="na">no samples</td>' in rows[RAG]

    # Limits unknown: the container is not in the newest sample, or it is, without
    # limits (the engine's inspect failed), or the newest sample has no containers.
    with History(tmp_path / "h.sqlite3", auto_compact=False) as h:
        h._record_many(
            [
                (T0, "vm1", {}, [Point("container:gone", "mem_usage", 1e8)]),
                (
                    T0 + 60,
                    "vm1",
                    {"containers": [{"name": "blind", "limits": None}]},
                    [
                        Point("container:blind", "cpu_pct", 50),
                        Point("container:gone", "restarts", 0),
                    ],
                ),
            ]
        )
        unknown = render_html(h, since=T0, until=T0 + 120)
        h._record_many([(T0 + 120, "vm1", {}, [Point("container:blind", "cpu_pct", 50)])])
        bare = render_html(h, since=T0, until=T0 + 180)
    assert _note(unknown, "gone", "cpu") == (
        "no CPU samples in this range; CPU limit unknown (the container is not in the newest "
        "sample)"
    )
    assert _note(unknown, "gone", "mem") == (
        "memory limit unknown (the container is not in the newest sample)"
    )
    assert _note(unknown, "blind", "cpu") == (
        "CPU limit unknown (the newest sample has no limits for it): 100% is one CPU"
    )
    assert _note(bare, "blind", "cpu") == (
        "CPU limit unknown (the newest sample has no containers): 100% is one CPU"
    )
    assert "limit unknown" in _overview_rows(unknown)["blind"]


def test_limit_set_after_the_samples(tmp_path: Path) -> None:
    """Samples without a share of the limit, a limit in the newest sample: drawn in
    cores and bytes with the newest limit's line, and the note says so."""
    with History(tmp_path / "h.sqlite3", auto_compact=False) as h:
        h._record_many(
            (
                T0 + 60 * i,
                "vm1",
                {"containers": [{"name": "late", "limits": _limits(None, 1024 * MiB, "0-1")}]},
                [
                    Point("container:late", "cpu_pct", 150 + i),
                    Point("container:late", "mem_usage", 600 * MiB),
                ],
            )
            for i in range(30)
        )
        text = render_html(h, since=T0, until=T0 + HOUR)
    cpu, mem = _parse(_between_fig(text, "late", "cpu")), _parse(_between_fig(text, "late", "mem"))
    assert "limit (2 CPUs (cpuset 0-1), newest sample)" in cpu.text
    assert "was not set when these samples were taken" in _note(text, "late", "cpu")
    assert cpu.find("line", class_="limit") and mem.find("line", class_="limit")
    assert "limit (1 GiB, newest sample)" in mem.text
    assert "used (GiB)" in mem.text  # the scale reaches the limit line


def test_containers_without_limits_fall_back_to_cores_and_bytes(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite3", auto_compact=False) as h:
        h._record_many(
            (
                T0 + 60 * i,
                "vm1",
                {"containers": [{"name": "free", "limits": _limits(None, None)}]},
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
    assert "no memory limit set" in page.text
    assert any("no samples in this range" in t for t in page.text)  # host memory, disks


# -- escaping ----------------------------------------------------------------------


HOSTILE = '"><img src=x onerror=alert(1)><script>alert(2)</script>'


def test_names_are_escaped(history: History) -> None:
    text = render_html(history, since=T0, until=T0 + 4 * HOUR, title="<b>title</b>")
    assert EVIL not in text  # nowhere raw: not in text, attributes or paths
    assert "<b>" not in text
    page = _parse(text)
    assert not page.find("script") and not page.find("b")
    # ... and it reads back as the name, as heading, legend and overview row.
    assert page.text.count(EVIL) >= 3
    assert "&lt;script&gt;x" in text


def test_names_in_findings_and_events_are_escaped(crash: History, tmp_path: Path) -> None:
    """Hostile container names and messages in open findings, reports and markers."""
    ts = T0 + 170 * 60
    key = f"over-limit/{HOSTILE}/memory"
    state = FindingState(key, "over-limit", HOSTILE, ts, ts, ts, 1, 0.0, f"memory {HOSTILE}")
    event = FindingEvent(ts, key, "over-limit", HOSTILE, "new", f"memory at 93% {HOSTILE}")
    with History(tmp_path / "hostile.sqlite3", auto_compact=False) as h:
        _record_crash_loop(h)
        h._record_many([(ts + 1, "vm1", {}, [Point(f"container:{HOSTILE}", "mem_usage", 1e8)])])
        h.update_findings("vm1", lambda states: ({**states, key: state}, [event]))
        text = render_html(h, since=T0, until=T0 + 3 * HOUR)
    page = _parse(text)
    assert HOSTILE not in text and EVIL not in text
    assert not page.find("script") and not page.find("img")
    findings = _parse(_between(text, '<section id="findings"', "</section>"))
    assert findings.joined.count(HOSTILE) >= 3  # open, reported, and in the messages
    assert EVIL in findings.joined
    # The hostile container's memory chart carries the finding's marker, escaped.
    hostile = _figures(_section(text, HOSTILE))
    mem = next(f for k, f in hostile.items() if k.endswith("-mem"))
    (_marker,) = mem.find("g", data_marker="finding")
    assert any(HOSTILE in t for t in mem.text)
    # Links carry our ids only, never a name.
    for a in page.find("a"):
        assert re.fullmatch(r"#[a-z0-9-]+", a["href"]), a


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


@pytest.mark.slow
def test_a_week_of_minutes_with_folded_history_stays_small(tmp_path: Path) -> None:
    """Eight days: the oldest day folded into hourly means by compaction, as in
    production; the page stays small and the fold is not drawn as a gap."""
    days = 8
    with History(tmp_path / "h.sqlite3", auto_compact=False) as h:
        h._record_many(_samples(T0, days * 24 * 60, outage=None))
        end = T0 + days * 24 * HOUR
        done = h.compact(end, raw_days=7, hourly_days=90)
        assert done.points > 0
        text = render_html(h, since=T0, until=end)
    paths = _series_paths(_parse(text))
    assert set(paths) == EXPECTED_SERIES
    for key, d in paths.items():
        assert d.count("M") == 1, key
        per_chart = MAX_POINTS // (2 if "disk" in key else 1)
        assert _coords(d) <= per_chart, key
    assert len(text) < 200_000


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


@pytest.mark.slow
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


def _draw(tmp_path: Path, name: str, text: str, height: int) -> tuple[_Page, Path]:
    """The page as Chromium builds it (its DOM) and paints it (a PNG in ``tmp_path``)."""
    page_file = tmp_path / f"{name}.html"
    page_file.write_text(text, encoding="utf-8")
    dom = chromium("--dump-dom", page_file.as_uri(), profile=tmp_path / f"{name}-dom")
    shot = tmp_path / f"{name}.png"
    chromium(
        f"--screenshot={shot}",
        f"--window-size=1280,{height}",
        page_file.as_uri(),
        profile=tmp_path / f"{name}-shot",
    )
    assert shot.is_file()
    return _parse(dom.stdout), shot


@pytest.mark.slow
def test_chromium_draws_a_crash_loop(tmp_path: Path, crash: History) -> None:
    """Findings first, markers on the crash-looping container's charts, painted."""
    drawn, shot = _draw(
        tmp_path, "crashloop", render_html(crash, since=T0, until=T0 + 3 * HOUR), 4000
    )
    # The DOM Chromium built: the findings section first in <main>, its three tables,
    # links that resolve, and the markers with their titles.
    sections = drawn.find("section")
    assert sections[0].get("id") == "findings"
    tables = [a["class"] for a in drawn.find("table")]
    assert tables[:3] == ["findings open", "findings seen", "findings events"], tables
    ids = {a["id"] for _, a in drawn.tags if "id" in a}
    assert all(a["href"][1:] in ids for a in drawn.find("a"))
    crashing = CRASH_MINUTES - CRASH_FROM
    restarts = drawn.find("g", data_marker="restart")
    ooms = drawn.find("g", data_marker="oom")
    assert sum(float(g["data-count"]) for g in restarts) == 2 * crashing + 2  # rag, and EVIL
    assert sum(float(g["data-count"]) for g in ooms) == 2 * (crashing // 3)
    assert len(drawn.find("g", data_marker="finding")) >= 2
    assert any(t.startswith("1 OOM kill at 2023-11-15") for t in drawn.text)
    # Painted: the OOM kills' colour and the restarts' dark dashes are on screen.
    width, height, pixels = _png_pixels(shot)
    assert (width, height) == (1280, 4000)
    colors = Counter(pixels)
    assert _near(colors, "#D55E00", 25) > 300
    assert _near(colors, "#3D3D3D", 12) > 300
    assert _near(colors, "#0072B2") > 2000


@pytest.mark.slow
def test_chromium_draws_a_short_history(tmp_path: Path) -> None:
    """Fifteen minutes of history fill the charts' width, as painted."""
    with History(tmp_path / "short.sqlite3", auto_compact=False) as h:
        _short(h)
        now = h.newest_ts()
        assert now is not None
        text = render_html(h, since=now - 86400, until=now + 1)
    drawn, shot = _draw(tmp_path, "short", text, 1500)
    assert any("Limited by the data" in t for t in drawn.text)
    assert any("No findings" in t for t in drawn.text)
    paths = _series_paths(drawn)
    assert len(paths) == 5
    width, height, pixels = _png_pixels(shot)
    # The host CPU line spans most of its chart's width: find the columns where the
    # line's colour is painted in the upper half of the page, left column of charts.
    blue = {
        x
        for i, px in enumerate(pixels)
        if (x := i % width) < width // 2
        and i // width < height // 2
        and all(abs(a - b) <= 30 for a, b in zip(px, (0x00, 0x72, 0xB2), strict=True))
    }
    assert blue and max(blue) - min(blue) > 0.8 * (width // 2 - 80), (min(blue), max(blue))
