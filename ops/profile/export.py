"""Profiles as files people already know how to read: speedscope JSON and a flame graph SVG.

Whatever the backend, a profile ends up looked at in one of two places:
speedscope (drag the file onto the page, or ``speedscope FILE`` offline) or a
browser showing a flame graph. Both are written from the one ``Profile``
model, so py-spy, pprof and perf profiles look the same.

The SVG is meant to be attached to a ticket or opened on a VM with no
internet access, so it is one self-contained file: inline CSS, no script, no
external reference, and it reads without JavaScript (a ``<title>`` on every
frame is the tooltip). Frame names come from processes we do not control and
are escaped, with characters XML cannot carry at all replaced. Frames below
``MIN_FRACTION`` of the samples are left out, as flamegraph.pl does, so a
profile with a million distinct stacks still draws in a few hundred KiB; the
space they leave shows as their parent's own time.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from ops.profile.model import Profile, Stack

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"
# The file format version whose fields are written here (`name` arrived in 0.6.0).
SPEEDSCOPE_VERSION = "0.6.0"
EXPORTER = "vots-ops"

MIN_FRACTION = 0.001  # frames under 0.1% of the samples are not drawn
FRAME_H = 16
FONT_PX = 12
CHAR_W = 0.61 * FONT_PX  # advance of a monospace glyph, to elide labels without measuring
PAD_X = 10
HEADER_H = 56
FOOTER_H = 10

# `function (file:line)` or `function (file)`, as py-spy and the pprof reader name frames.
_FRAME_RE = re.compile(r"^(?P<name>.+?) \((?P<file>[^()]+?)(?::(?P<line>\d+))?\)$")
# Characters XML 1.0 cannot carry even as references, and lone surrogates, which
# no UTF-8 writer accepts.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

_UNITS = {
    "samples": "none",
    "sample": "none",
    "count": "none",
    "none": "none",
    "bytes": "bytes",
    "byte": "bytes",
    "nanoseconds": "nanoseconds",
    "ns": "nanoseconds",
    "microseconds": "microseconds",
    "us": "microseconds",
    "µs": "microseconds",
    "milliseconds": "milliseconds",
    "ms": "milliseconds",
    "seconds": "seconds",
    "s": "seconds",
}


def parse_frame(frame: str) -> dict[str, Any]:
    """A frame name as speedscope's ``{name, file?, line?}``.

    Only a parenthesised tail that names a line, or looks like a path, is
    taken as the file: ``push_back(int const&)`` or ``thread (0x7f3a)`` stay
    whole names.
    """
    m = _FRAME_RE.match(frame)
    if m is None:
        return {"name": frame}
    file, line = m["file"], m["line"]
    if line is None and not any(c in file for c in "./\\"):
        return {"name": frame}
    out: dict[str, Any] = {"name": m["name"], "file": file}
    if line is not None:
        out["line"] = int(line)
    return out


def speedscope_unit(weight: str) -> str:
    """speedscope's ``unit`` for what one count of the profile is ("none" for plain samples)."""
    w = weight.strip().lower()
    if w in _UNITS:
        return _UNITS[w]
    if w.endswith("bytes") or w.endswith("_space"):  # pprof's alloc_space / inuse_space
        return "bytes"
    return "none"


def speedscope_json(profile: Profile, name: str | None = None) -> str:
    """The profile as one speedscope "sampled" profile (one sample per distinct stack,
    weighted by its count), sorted by stack so the time-order view groups alike stacks."""
    title = name or profile.target or "profile"
    frames: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    samples: list[list[int]] = []
    weights: list[int] = []
    for stack, count in sorted(profile.stacks.items()):
        if not stack or count <= 0:
            continue
        row = []
        for frame in stack:
            i = index.get(frame)
            if i is None:
                i = index[frame] = len(frames)
                frames.append(parse_frame(frame))
            row.append(i)
        samples.append(row)
        weights.append(count)
    doc = {
        "$schema": SPEEDSCOPE_SCHEMA,
        "version": SPEEDSCOPE_VERSION,
        "exporter": EXPORTER,
        "name": title,
        "activeProfileIndex": 0,
        "shared": {"frames": frames},
        "profiles": [
            {
                "type": "sampled",
                "name": title,
                "unit": speedscope_unit(profile.weight),
                "startValue": 0,
                "endValue": sum(weights),
                "samples": samples,
                "weights": weights,
            }
        ],
    }
    # ASCII escapes: a lone surrogate in a frame name still writes as valid UTF-8.
    return json.dumps(doc, separators=(",", ":")) + "\n"


# -- flame graph -------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """One drawn box: ``start`` and ``count`` in samples, ``depth`` 0 for the root."""

    name: str
    depth: int
    start: int
    count: int


def flame_frames(profile: Profile, min_fraction: float = MIN_FRACTION) -> list[Frame]:
    """The boxes of the flame graph, root first then depth-first, children by name
    (as flamegraph.pl orders them); frames under ``min_fraction`` of the samples,
    and everything above them, are left out.

    Stacks are grouped one level at a time and only under frames that are drawn,
    so the long tail of a big profile costs one pass, not a full call tree.
    """
    members = [(stack, n) for stack, n in profile.stacks.items() if n > 0]
    total = sum(n for _, n in members)
    if total == 0:
        return []
    least = total * min_fraction
    out: list[Frame] = []
    # (name, depth, start, count, the stacks through it); a list, not recursion,
    # since stacks can be thousands of frames deep.
    todo = [("all", 0, 0, total, members)]
    while todo:
        name, depth, start, count, through = todo.pop()
        out.append(Frame(name, depth, start, count))
        groups: dict[str, list[tuple[Stack, int]]] = {}
        sums: dict[str, int] = {}
        for stack, n in through:
            if len(stack) > depth:
                frame = stack[depth]
                sums[frame] = sums.get(frame, 0) + n
                groups.setdefault(frame, []).append((stack, n))
        pending, x = [], start
        for child in sorted(sums):
            if sums[child] >= least:
                pending.append((child, depth + 1, x, sums[child], groups[child]))
            x += sums[child]
        todo.extend(reversed(pending))
    return out


def _xml(text: str) -> str:
    text = _NOT_XML.sub("\ufffd", text)
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#39;")
    )


def _num(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")


def _colour(name: str) -> str:
    """flamegraph.pl's "hot" palette, keyed on the function so all its lines match;
    a digest, not ``hash()``, so the same profile draws the same on every run."""
    key = parse_frame(name)["name"]
    d = hashlib.blake2b(key.encode("utf-8", "replace"), digest_size=3).digest()
    r, g, b = 205 + d[0] * 50 // 255, d[1] * 230 // 255, d[2] * 55 // 255
    return f"#{r:02x}{g:02x}{b:02x}"


def _elide(label: str, width: float) -> str:
    fits = int((width - 6) / CHAR_W)
    if fits < 3:
        return ""
    return label if len(label) <= fits else label[: fits - 1] + "…"


def _amount(n: int, unit: str) -> str:
    return f"{n:,} {unit}"


def flamegraph_svg(profile: Profile, title: str, width: int = 1200) -> str:
    """A self-contained flame graph (root at the bottom) of ``width`` pixels."""
    if width < 200:
        raise ValueError(f"flame graph width must be at least 200 pixels (got {width})")
    unit = profile.weight or "samples"
    frames = flame_frames(profile)
    total = frames[0].count if frames else 0
    depth = max((f.depth for f in frames), default=-1) + 1
    height = HEADER_H + max(depth, 1) * FRAME_H + FOOTER_H
    scale = (width - 2 * PAD_X) / total if total else 0.0
    facts = [_amount(total, unit), profile.backend, profile.target]
    if profile.duration_s:
        facts.append(f"{profile.duration_s:g} s")
    subtitle = " · ".join(f for f in facts if f)

    out = [
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">',
        f"<title>{_xml(title)}</title>",
        "<style>"
        f"text{{font-family:'DejaVu Sans Mono',Menlo,Consolas,monospace;font-size:{FONT_PX}px;"
        "fill:#000}"
        ".head{font-size:17px;font-weight:bold}"
        ".sub{fill:#555}"
        ".f text{pointer-events:none}"
        ".f:hover rect{stroke:#000;stroke-width:0.5}"
        "</style>",
        f'<rect class="bg" x="0" y="0" width="{width}" height="{height}" fill="#f6f6ee"/>',
        f'<text class="head" x="{width / 2:g}" y="24" text-anchor="middle">{_xml(title)}</text>',
        f'<text class="sub" x="{width / 2:g}" y="44" text-anchor="middle">{_xml(subtitle)}</text>',
    ]
    if not frames:
        out.append(
            f'<text class="sub" x="{width / 2:g}" y="{HEADER_H + 12}" '
            f'text-anchor="middle">no samples</text>'
        )
    bottom = height - FOOTER_H
    for f in frames:
        x, w = PAD_X + f.start * scale, f.count * scale
        y = bottom - (f.depth + 1) * FRAME_H
        tip = f"{f.name} ({_amount(f.count, unit)}, {100 * f.count / total:.2f}%)"
        label = _elide(f.name, w)
        text = (
            f'<text x="{_num(x + 3)}" y="{y + FRAME_H - 4}">{_xml(label)}</text>' if label else ""
        )
        out.append(
            f'<g class="f"><title>{_xml(tip)}</title>'
            f'<rect x="{_num(x)}" y="{y}" width="{_num(w)}" height="{FRAME_H - 1}" '
            f'rx="2" fill="{_colour(f.name)}"/>{text}</g>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"
