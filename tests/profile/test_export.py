"""speedscope and flame graph exports, checked against speedscope's own schema and a browser."""

from __future__ import annotations

import itertools
import json
import random
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ops.profile.export import (
    CHAR_W,
    EXPORTER,
    FRAME_H,
    MIN_FRACTION,
    PAD_X,
    SPEEDSCOPE_SCHEMA,
    flame_frames,
    flamegraph_svg,
    parse_frame,
    speedscope_json,
    speedscope_unit,
)
from ops.profile.model import Profile, Stack
from tests.report.test_html import _near, _png_pixels
from tests.support.browser import chromium

DATA = Path(__file__).parent / "data"
SVG = "{http://www.w3.org/2000/svg}"
EVIL = '<script>&"'

WEB = (
    ("handle (app/views.py:42)", "query (app/db.py:7)", "execute (/usr/lib/python3/sqlite3.py)"),
    ("handle (app/views.py:42)", "render (app/views.py:60)"),
    ("handle (app/views.py:42)", "query (app/db.py:7)"),
    ("<module> (<string>:1)",),
)


def _profile(stacks: dict[Stack, int], weight: str = "samples") -> Profile:
    return Profile(
        stacks=stacks,
        target="agent",
        language="python",
        backend="py-spy",
        duration_s=30.0,
        rate_hz=100.0,
        weight=weight,
    )


def _web() -> Profile:
    return _profile(dict(zip(WEB, (50, 30, 15, 5), strict=True)))


# -- speedscope ------------------------------------------------------------------


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads((DATA / "speedscope-file-format-schema.json").read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _stacks_back(doc: dict[str, Any]) -> dict[Stack, int]:
    """Rebuild ``function (file:line)`` stacks from a speedscope document."""

    def full(frame: dict[str, Any]) -> str:
        if "file" not in frame:
            return frame["name"]
        where = f"{frame['file']}:{frame['line']}" if "line" in frame else frame["file"]
        return f"{frame['name']} ({where})"

    frames = [full(f) for f in doc["shared"]["frames"]]
    (prof,) = doc["profiles"]
    out: Counter[Stack] = Counter()
    for sample, weight in zip(prof["samples"], prof["weights"], strict=True):
        out[tuple(frames[i] for i in sample)] += weight
    return dict(out)


@pytest.mark.parametrize(
    ("stacks", "weight", "unit"),
    [
        (dict(zip(WEB, (50, 30, 15, 5), strict=True)), "samples", "none"),
        ({("main", "alloc", "malloc"): 4096, ("main", "json.loads"): 512}, "bytes", "bytes"),
        ({("main", "alloc"): 1}, "alloc_space", "bytes"),
        ({(EVIL, "a\x00b\ud800", "ünïcødé"): 3}, "samples", "none"),
        ({}, "samples", "none"),
    ],
    ids=["py-spy", "bytes", "pprof-space", "hostile-names", "empty"],
)
def test_speedscope_is_valid_by_the_official_schema(
    validator: jsonschema.protocols.Validator, stacks: dict[Stack, int], weight: str, unit: str
) -> None:
    text = speedscope_json(_profile(stacks, weight))
    text.encode("utf-8")  # writable as UTF-8 whatever the names held
    doc = json.loads(text)
    validator.validate(doc)
    assert doc["$schema"] == SPEEDSCOPE_SCHEMA
    assert doc["exporter"] == EXPORTER == "vots-ops"
    (prof,) = doc["profiles"]
    assert prof["type"] == "sampled" and prof["unit"] == unit
    assert len(prof["samples"]) == len(prof["weights"])
    assert prof["startValue"] == 0 and prof["endValue"] == sum(stacks.values())
    assert all(0 <= i < len(doc["shared"]["frames"]) for s in prof["samples"] for i in s)
    assert _stacks_back(doc) == stacks


def test_the_schema_really_constrains(validator: jsonschema.protocols.Validator) -> None:
    """The stored schema is the full one (speedscope once published an empty stub)."""
    good = json.loads(speedscope_json(_web()))
    validator.validate(good)
    broken: list[dict[str, Any]] = []
    for path, value in (
        (("profiles", 0, "unit"), "furlongs"),
        (("profiles", 0, "type"), "sampledd"),
        (("shared", "frames", 0, "line"), "42"),
        (("$schema",), "https://example.invalid/schema.json"),
    ):
        doc = json.loads(json.dumps(good))
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        broken.append(doc)
    missing = json.loads(json.dumps(good))
    del missing["profiles"][0]["weights"]
    broken.append(missing)
    for doc in broken:
        assert not validator.is_valid(doc), doc


def test_speedscope_frames_are_shared_and_stacks_go_root_to_leaf() -> None:
    doc = json.loads(speedscope_json(_web(), name="agent-cpu"))
    assert doc["name"] == doc["profiles"][0]["name"] == "agent-cpu"
    frames = doc["shared"]["frames"]
    assert len(frames) == len({f for s in WEB for f in s}) == 5
    assert {"name": "handle", "file": "app/views.py", "line": 42} in frames
    assert {"name": "execute", "file": "/usr/lib/python3/sqlite3.py"} in frames
    assert {"name": "<module>", "file": "<string>", "line": 1} in frames
    handle = frames.index({"name": "handle", "file": "app/views.py", "line": 42})
    prof = doc["profiles"][0]
    assert all(s[0] == handle for s in prof["samples"] if len(s) > 1)
    assert json.loads(speedscope_json(_web()))["name"] == "agent"  # the target by default


@pytest.mark.parametrize(
    ("frame", "parsed"),
    [
        ("handle (app/views.py:42)", {"name": "handle", "file": "app/views.py", "line": 42}),
        (
            "run (/usr/lib/python3.11/threading.py)",
            {"name": "run", "file": "/usr/lib/python3.11/threading.py"},
        ),
        ("<module> (<string>:1)", {"name": "<module>", "file": "<string>", "line": 1}),
        ("operator() (src/a.cc:9)", {"name": "operator()", "file": "src/a.cc", "line": 9}),
        ("f (C:\\app\\main.py:10)", {"name": "f", "file": "C:\\app\\main.py", "line": 10}),
        ("malloc", {"name": "malloc"}),
        (
            "std::vector<int>::push_back(int const&)",
            {"name": "std::vector<int>::push_back(int const&)"},
        ),
        ("thread (0x7f3a2c)", {"name": "thread (0x7f3a2c)"}),
        ("f (a (b.py:1)", {"name": "f (a", "file": "b.py", "line": 1}),
        ("", {"name": ""}),
    ],
)
def test_frame_names_split_into_name_file_line(frame: str, parsed: dict[str, Any]) -> None:
    assert parse_frame(frame) == parsed


@pytest.mark.parametrize(
    ("weight", "unit"),
    [
        ("samples", "none"),
        ("bytes", "bytes"),
        ("inuse_space", "bytes"),
        ("nanoseconds", "nanoseconds"),
        ("ms", "milliseconds"),
        ("objects", "none"),
    ],
)
def test_speedscope_unit(weight: str, unit: str) -> None:
    assert speedscope_unit(weight) == unit


# -- flame graph -----------------------------------------------------------------


def _frames(svg: str) -> list[dict[str, Any]]:
    """Each drawn frame of the SVG: its tooltip, label and box."""
    root = ET.fromstring(svg)
    out = []
    for g in root.iter(f"{SVG}g"):
        if g.get("class") != "f":
            continue
        rects = g.findall(f"{SVG}rect")
        assert len(rects) == 1
        r = rects[0]
        text = g.find(f"{SVG}text")
        out.append(
            {
                "title": g.findtext(f"{SVG}title"),
                "label": None if text is None else text.text,
                "x": float(r.get("x", "")),
                "y": float(r.get("y", "")),
                "w": float(r.get("width", "")),
                "fill": r.get("fill", ""),
            }
        )
    return out


def test_svg_parses_with_one_rect_per_frame() -> None:
    svg = flamegraph_svg(_web(), "agent · CPU")
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg" and root.get("width") == "1200"
    frames = _frames(svg)
    # all, handle, query, execute, render, <module>
    assert len(frames) == 6 == len(flame_frames(_web()))
    assert len(list(root.iter(f"{SVG}rect"))) == 6 + 1  # and the background
    titles = {f["title"] for f in frames}
    assert titles == {
        "all (100 samples, 100.00%)",
        "handle (app/views.py:42) (95 samples, 95.00%)",
        "query (app/db.py:7) (65 samples, 65.00%)",
        "execute (/usr/lib/python3/sqlite3.py) (50 samples, 50.00%)",
        "render (app/views.py:60) (30 samples, 30.00%)",
        "<module> (<string>:1) (5 samples, 5.00%)",
    }
    header = "".join(root.itertext())
    assert "agent · CPU" in header and "100 samples" in header and "py-spy" in header


def test_svg_root_is_at_the_bottom_and_widths_are_proportional() -> None:
    frames = {f["title"].split(" (")[0]: f for f in _frames(flamegraph_svg(_web(), "t"))}
    full = 1200 - 2 * PAD_X
    assert frames["all"]["w"] == pytest.approx(full, abs=0.01)
    assert frames["query"]["w"] == pytest.approx(full * 0.65, abs=0.01)
    assert frames["all"]["y"] > frames["handle"]["y"] > frames["query"]["y"]
    assert frames["query"]["y"] - frames["execute"]["y"] == FRAME_H
    # children by name, left to right, as flamegraph.pl lays them out
    assert frames["<module>"]["x"] < frames["handle"]["x"]
    assert frames["query"]["x"] < frames["render"]["x"]


def test_hostile_frame_names_are_escaped() -> None:
    names = (EVIL, "</title><script>alert(1)</script>", "bell\x07 nul\x00 lone\udc80 ok")
    prof = _profile({("main", n): 10 for n in names}, weight="samples")
    svg = flamegraph_svg(prof, f"title {EVIL}")
    svg.encode("utf-8")
    root = ET.fromstring(svg)  # would raise on a raw '<', '&' or a control character
    assert not list(root.iter(f"{SVG}script"))
    assert "<script" not in svg
    titles = {f["title"] for f in _frames(svg)}
    assert f"{EVIL} (10 samples, 33.33%)" in titles
    assert "</title><script>alert(1)</script> (10 samples, 33.33%)" in titles
    assert "bell\ufffd nul\ufffd lone\ufffd ok (10 samples, 33.33%)" in titles
    assert root.findtext(f"{SVG}title") == f"title {EVIL}"
    assert "&lt;script&gt;&amp;&quot;" in svg


def test_svg_loads_nothing_and_runs_nothing() -> None:
    svg = flamegraph_svg(_web(), "t")
    lowered = svg.lower()
    for needle in ("href", "url(", "@import", "<script", "<image", "<foreignobject", "<iframe"):
        assert needle not in lowered, needle
    assert lowered.count("http") == 1  # the SVG namespace, which is a name, not a load
    assert "<style>" in svg


def test_svg_is_deterministic_and_warm() -> None:
    a, b = flamegraph_svg(_web(), "t"), flamegraph_svg(_web(), "t")
    assert a == b
    fills = {f["title"].split(" (")[0]: f["fill"] for f in _frames(a)}
    for fill in fills.values():
        r, g, bl = (int(fill[i : i + 2], 16) for i in (1, 3, 5))
        assert r >= 205 and g <= 230 and bl <= 55, fill
    assert len(set(fills.values())) > 1
    # one colour per function, whichever line of it was sampled
    again = _frames(flamegraph_svg(_profile({("f (a.py:1)",): 1, ("g", "f (a.py:2)"): 1}), "t"))
    by_title = {f["title"].split(" (")[0]: f["fill"] for f in again}
    assert len({by_title["f"], by_title["g"]}) == 2
    f_fills = {f["fill"] for f in again if f["title"].startswith("f (")}
    assert len(f_fills) == 1


def test_long_names_are_elided_to_fit() -> None:
    long = "very_long_function_name_" * 10 + " (pkg/module.py:1)"
    prof = _profile({("main", long): 30, ("main", "other"): 970})
    frames = {f["title"].split(" (")[0]: f for f in _frames(flamegraph_svg(prof, "t"))}
    box = frames[long.split(" (")[0]]
    assert box["label"] is not None and box["label"].endswith("…")
    assert long.startswith(box["label"][:-1])
    assert len(box["label"]) * CHAR_W <= box["w"]
    wide = frames["other"]
    assert wide["label"] == "other"


def test_narrow_frames_are_left_out() -> None:
    total = 10_000
    stacks = {
        ("main", "busy"): total - 11,
        ("main", "tiny", "below"): 1,  # 0.01%: not drawn, nor what is above it
        ("main", "edge"): 10,  # exactly 0.1%: drawn
    }
    frames = flame_frames(_profile(stacks))
    names = {f.name for f in frames}
    assert names == {"all", "main", "busy", "edge"}
    assert all(f.count >= total * MIN_FRACTION for f in frames)
    svg = flamegraph_svg(_profile(stacks), "t")
    assert "tiny" not in svg and "below" not in svg


def test_a_huge_profile_stays_small() -> None:
    """50,000 distinct stacks up to 40 deep, a few hot functions and a long tail (Pareto)."""
    rnd = random.Random(7)
    funcs = [f"fn_{i} (pkg/mod_{i % 40}.py:{i})" for i in range(2_000)]
    stacks: dict[Stack, int] = {}
    for _ in range(50_000):
        depth = rnd.randint(3, 40)
        hot = (funcs[int(rnd.paretovariate(1.5)) % len(funcs)] for _ in range(depth))
        stack = ("main (app.py:1)", *hot)
        stacks[stack] = stacks.get(stack, 0) + rnd.randint(1, 20)
    prof = _profile(stacks)
    assert len(prof.stacks) > 40_000
    svg = flamegraph_svg(prof, "huge")
    frames = _frames(svg)
    # Bounded by what can be seen, not by the input: frames too narrow to draw are left out.
    assert 100 < len(frames) < 5_000
    assert len(svg) < 500_000
    least = MIN_FRACTION * (1200 - 2 * PAD_X)
    assert all(f["w"] >= least - 0.01 for f in frames)
    assert len(speedscope_json(prof)) < len(prof.folded())  # frames shared, not repeated


def test_deep_stacks_do_not_recurse() -> None:
    deep = tuple(f"rec (r.py:{i})" for i in range(3_000))
    frames = _frames(flamegraph_svg(_profile({deep: 1}), "deep"))
    assert len(frames) == 3_001


def test_empty_profile_draws_a_header_only() -> None:
    svg = flamegraph_svg(_profile({}), "idle")
    root = ET.fromstring(svg)
    assert _frames(svg) == []
    assert "no samples" in "".join(root.itertext())
    assert "0 samples" in "".join(root.itertext())


def test_bytes_profile_says_bytes() -> None:
    svg = flamegraph_svg(_profile({("main", "alloc"): 2048}, weight="bytes"), "heap")
    assert "alloc (2,048 bytes, 100.00%)" in {f["title"] for f in _frames(svg)}


def test_too_narrow_is_refused() -> None:
    with pytest.raises(ValueError, match="width"):
        flamegraph_svg(_web(), "t", width=50)


_names = st.sampled_from(["a", "b", "c", "d", "e (x.py:1)", "f (x.py:2)"])
_stacks = st.dictionaries(
    st.lists(_names, min_size=1, max_size=8).map(tuple),
    st.integers(min_value=1, max_value=5_000),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(stacks=_stacks, width=st.integers(min_value=200, max_value=3_000))
def test_children_never_outgrow_their_parents(stacks: dict[Stack, int], width: int) -> None:
    frames = _frames(flamegraph_svg(_profile(stacks), "t", width=width))
    eps = 0.02
    bottom = max(f["y"] for f in frames)
    roots = [f for f in frames if f["y"] == bottom]
    assert len(roots) == 1
    assert roots[0]["w"] == pytest.approx(width - 2 * PAD_X, abs=eps)
    children: dict[int, list[dict[str, Any]]] = {}
    for i, f in enumerate(frames):
        if f is roots[0]:
            continue
        parents = [
            j
            for j, p in enumerate(frames)
            if p["y"] == f["y"] + FRAME_H
            and p["x"] - eps <= f["x"]
            and f["x"] + f["w"] <= p["x"] + p["w"] + eps
        ]
        assert len(parents) == 1, (i, f)
        children.setdefault(parents[0], []).append(f)
    for j, kids in children.items():
        assert sum(k["w"] for k in kids) <= frames[j]["w"] + eps * len(kids)
        kids.sort(key=lambda k: k["x"])
        for left, right in itertools.pairwise(kids):
            assert left["x"] + left["w"] <= right["x"] + eps  # siblings never overlap


@pytest.mark.slow
def test_chromium_draws_the_flame_graph(tmp_path: Path) -> None:
    page = tmp_path / "flame.svg"
    page.write_text(flamegraph_svg(_web(), f"agent {EVIL}"), encoding="utf-8")
    blank = tmp_path / "blank.html"
    blank.write_text("<!doctype html><title>blank</title>", encoding="utf-8")
    shots = {}
    for src, name in ((page, "flame"), (blank, "blank")):
        shots[name] = tmp_path / f"{name}.png"
        chromium(
            f"--screenshot={shots[name]}",
            "--window-size=1200,400",
            src.as_uri(),
            profile=tmp_path / f"p-{name}",
        )
        assert shots[name].is_file()
    width, height, pixels = _png_pixels(shots["flame"])
    assert (width, height) == (1200, 400)
    colors = Counter(pixels)
    _, _, blank_pixels = _png_pixels(shots["blank"])
    assert len(Counter(blank_pixels)) <= 2
    assert len(colors) > 50  # text is anti-aliased
    warm = sum(n for (r, g, b), n in colors.items() if r >= 200 and g <= 235 and b <= 70)
    # 4 rows of frames 15px high across most of 1180px, less the labels
    assert warm > 40_000
    for f in _frames(page.read_text(encoding="utf-8")):
        if f["w"] > 50:
            assert _near(colors, f["fill"], tolerance=8) > 0.5 * f["w"] * (FRAME_H - 1) - 200, f
