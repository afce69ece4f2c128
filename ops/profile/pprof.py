"""Go backend: fetch a profile from net/http/pprof and read Go's ``profile.proto``.

A Go service that imports ``net/http/pprof`` profiles itself: ``GET
/debug/pprof/profile?seconds=N`` answers after N seconds with a gzipped
``profile.proto`` (github.com/google/pprof/proto/profile.proto), and
``/debug/pprof/heap`` with the live heap as of the last garbage collection.
No tool runs on the host and nothing needs ptrace, so this works as well for a
service in a container as for one on the host, as long as its port is reachable.

The parser is a small protobuf wire-format decoder for the few messages the
model needs, not a protobuf library. PyPI has no well-kept pprof reader (the
``pprof`` package there is a Python profiler; ``pypprof`` and the Pyroscope
agents write profiles, they do not read them), and a general protobuf library
needs the schema compiled into generated code (``protoc`` / grpcio-tools and a
``profile_pb2.py`` tied to the protobuf runtime's version) plus a compiled
dependency for the CLI, to read six message types. The wire format is small
and frozen (varints, length-delimited fields, packed repeated integers); Go's
own runtime writes ``profile.proto`` with a hand-written encoder for the same
reason. Tests check the decoder against ``go tool pprof -traces`` on profiles
of a real Go program.
"""

from __future__ import annotations

import gzip
import math
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from ops.errors import OpsError, TargetUnreachable
from ops.extras import require
from ops.profile.model import Profile, ProfileMeta, Stack

PprofKind = Literal["cpu", "heap"]  # CPU time over a window, or the live heap

PPROF_HINT = 'is net/http/pprof mounted? add `import _ "net/http/pprof"` to the program'


# --- fetching ----------------------------------------------------------------------------


def pprof_endpoint(url: str, kind: PprofKind = "cpu", seconds: int = 10) -> str:
    """The profile URL for a base URL: ``http://host:port``, ``.../debug/pprof`` or an endpoint.

    A scheme-less ``host:port`` means http. A path that does not end in
    ``/debug/pprof`` gets it appended, so a prefix a service mounts pprof under
    (``/admin/debug/pprof``) is kept.
    """
    if "://" not in url:
        url = f"http://{url}"
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    for endpoint in ("/profile", "/heap"):
        if path.endswith("/debug/pprof" + endpoint):
            path = path[: -len(endpoint)]
    if not path.endswith("/debug/pprof"):
        path += "/debug/pprof"
    if kind == "cpu":
        return urlunsplit((parts.scheme, parts.netloc, f"{path}/profile", f"seconds={seconds}", ""))
    if kind == "heap":
        return urlunsplit((parts.scheme, parts.netloc, f"{path}/heap", "", ""))
    raise OpsError(f"unknown pprof profile kind {kind!r}; expected cpu or heap")


def fetch_pprof(
    url: str,
    *,
    kind: PprofKind = "cpu",
    seconds: float = 10,
    timeout: float | None = None,
) -> bytes:
    """The raw (gzipped) ``profile.proto`` from a Go program's net/http/pprof ``url``.

    ``seconds`` (CPU only; a heap profile is a snapshot) is rounded up to whole
    seconds: Go's handler parses an integer and silently profiles for 30 s
    when it gets anything else. The default
    ``timeout`` allows for that wait (the handler sends nothing until the
    profile is done) plus 15 s; connecting is capped at 5 s, so a dead target
    fails fast. Refused, timed-out or unresolvable targets raise
    TargetUnreachable naming the URL; any status but 200 raises OpsError with
    the status and the first line of the body.
    """
    require("httpx", "profile", "profile --pprof-url")
    import httpx

    if kind == "cpu":
        if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds > 0):
            raise OpsError(
                f"profile duration must be a positive number of seconds, not {seconds!r}"
            )
        whole = max(1, math.ceil(seconds))
    else:
        whole = 0
    endpoint = pprof_endpoint(url, kind, whole)
    if timeout is None:
        timeout = whole + 15.0 if kind == "cpu" else 30.0
    limits = httpx.Timeout(timeout, connect=min(timeout, 5.0))
    try:
        with httpx.Client(timeout=limits, follow_redirects=True) as client:
            response = client.get(endpoint, headers={"User-Agent": "vots-ops-profile"})
    except httpx.ConnectTimeout:
        raise TargetUnreachable(
            f"{endpoint}: no connection within {min(timeout, 5.0):g}s"
        ) from None
    except httpx.TimeoutException:
        raise TargetUnreachable(f"{endpoint} did not answer within {timeout:g}s") from None
    except httpx.ConnectError as exc:
        raise TargetUnreachable(f"{endpoint}: cannot connect ({_reason(exc)})") from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise OpsError(f"not an http(s) URL: {url} ({exc})") from None
    except httpx.TransportError as exc:
        raise TargetUnreachable(f"{endpoint} did not answer HTTP ({_reason(exc)})") from None
    if response.status_code != 200:
        first = next((ln.strip() for ln in response.text.splitlines() if ln.strip()), "")
        detail = f": {first[:200]}" if first else ""
        hint = f"; {PPROF_HINT}" if response.status_code == 404 else ""
        raise OpsError(f"{endpoint} answered {response.status_code}{detail}{hint}")
    if not response.content:
        raise OpsError(f"{endpoint} answered an empty body; {PPROF_HINT}")
    return response.content


def _reason(exc: Exception) -> str:
    text = str(exc) or exc.__class__.__name__
    # "[Errno 111] Connection refused" -> "Connection refused"
    return text.split("] ", 1)[-1].strip()


# --- the protobuf wire format ------------------------------------------------------------


class _Malformed(Exception):
    """The bytes are not a valid protobuf message; the message says where."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """An unsigned varint at ``pos`` -> (value, position after it)."""
    start = pos
    try:
        b = buf[pos]
        if b < 0x80:
            return b, pos + 1
        result, shift = b & 0x7F, 7
        while True:
            pos += 1
            b = buf[pos]
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result, pos + 1
            shift += 7
            if shift > 63:
                raise _Malformed(f"varint longer than 10 bytes at byte {start}")
    except IndexError:
        raise _Malformed(f"truncated varint at byte {start}") from None


def _signed(value: int) -> int:
    """An int64 field's varint (two's complement in 64 bits) -> a Python int."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _fields(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value or start, end) for each field in buf[start:end].

    Varints and fixed-width values come back in the third slot (the fourth is
    0); length-delimited fields as the span [start, end) of their payload.
    """
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Malformed(f"field number 0 at byte {pos}")
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value, 0
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise _Malformed(f"field {number} runs past its message at byte {pos}")
            yield number, wire, pos, pos + length
            pos += length
        elif wire == 1:
            if pos + 8 > end:
                raise _Malformed(f"truncated 64-bit field {number} at byte {pos}")
            yield number, wire, int.from_bytes(buf[pos : pos + 8], "little"), 0
            pos += 8
        elif wire == 5:
            if pos + 4 > end:
                raise _Malformed(f"truncated 32-bit field {number} at byte {pos}")
            yield number, wire, int.from_bytes(buf[pos : pos + 4], "little"), 0
            pos += 4
        else:
            raise _Malformed(f"wire type {wire} (field {number}) at byte {pos}")
    if pos != end:
        raise _Malformed(f"message overruns its length at byte {pos}")


def _ints(buf: bytes, wire: int, a: int, b: int, into: list[int]) -> None:
    """A repeated integer field, packed (one span of varints) or not (one varint)."""
    if wire == 0:
        into.append(a)
    elif wire == 2:
        # The hot loop of a big profile (every sample's location ids): inline, no calls.
        value = shift = 0
        for byte in buf[a:b]:
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                into.append(value)
                value = shift = 0
            else:
                shift += 7
        if shift:
            raise _Malformed(f"packed field ends inside a varint at byte {b}")
    else:
        raise _Malformed(f"integer field with wire type {wire} at byte {a}")


def _scalar(buf: bytes, start: int, end: int) -> dict[int, int]:
    """A message of plain integer fields -> {field number: last value}."""
    return {n: a for n, w, a, _ in _fields(buf, start, end) if w == 0}


@dataclass
class _Location:
    address: int = 0
    mapping_id: int = 0
    lines: list[int] = field(default_factory=list)  # function ids, inlined callee first


@dataclass
class _RawProfile:
    """The parts of a decoded ``Profile`` message the model needs, strings still indices."""

    strings: list[str] = field(default_factory=list)
    sample_types: list[tuple[int, int]] = field(default_factory=list)  # (type, unit)
    samples: list[tuple[int, int]] = field(default_factory=list)  # spans, decoded later
    locations: dict[int, _Location] = field(default_factory=dict)
    functions: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # name, system, file
    mappings: dict[int, int] = field(default_factory=dict)  # id -> filename
    period_type: tuple[int, int] = (0, 0)
    period: int = 0
    time_nanos: int = 0
    duration_nanos: int = 0
    default_sample_type: int = 0
    comments: list[int] = field(default_factory=list)


def _decode(buf: bytes) -> _RawProfile:
    """profile.proto's ``Profile`` message, field numbers as in the .proto file."""
    raw = _RawProfile()
    for number, wire, a, b in _fields(buf, 0, len(buf)):
        if number in (1, 11) and wire == 2:  # sample_type, period_type: ValueType
            vt = _scalar(buf, a, b)
            pair = (vt.get(1, 0), vt.get(2, 0))
            if number == 1:
                raw.sample_types.append(pair)
            else:
                raw.period_type = pair
        elif number == 2 and wire == 2:  # sample
            raw.samples.append((a, b))
        elif number == 3 and wire == 2:  # mapping: id = 1, filename = 5
            m = _scalar(buf, a, b)
            raw.mappings[m.get(1, 0)] = m.get(5, 0)
        elif number == 4 and wire == 2:  # location
            loc_id, loc = 0, _Location()
            for n, w, x, y in _fields(buf, a, b):
                if n == 1 and w == 0:
                    loc_id = x
                elif n == 2 and w == 0:
                    loc.mapping_id = x
                elif n == 3 and w == 0:
                    loc.address = x
                elif n == 4 and w == 2:  # Line: function_id = 1, line = 2
                    loc.lines.append(_scalar(buf, x, y).get(1, 0))
            raw.locations[loc_id] = loc
        elif number == 5 and wire == 2:  # function
            f = _scalar(buf, a, b)
            raw.functions[f.get(1, 0)] = (f.get(2, 0), f.get(3, 0), f.get(4, 0))
        elif number == 6 and wire == 2:  # string_table
            raw.strings.append(buf[a:b].decode("utf-8", errors="replace"))
        elif number == 9 and wire == 0:
            raw.time_nanos = _signed(a)
        elif number == 10 and wire == 0:
            raw.duration_nanos = _signed(a)
        elif number == 12 and wire == 0:
            raw.period = _signed(a)
        elif number == 13:
            _ints(buf, wire, a, b, raw.comments)
        elif number == 14 and wire == 0:
            raw.default_sample_type = a
    return raw


# --- profile.proto -> Profile --------------------------------------------------------------


def parse_pprof(
    data: bytes,
    *,
    target: str,
    language: str = "go",
    duration_s: float | None = None,
    sample_type: str | None = None,
) -> Profile:
    """A (gzipped or plain) ``profile.proto`` -> the common Profile.

    Which value becomes a stack's count: ``sample_type`` if given (``"cpu"``
    or ``"cpu/nanoseconds"``); otherwise ``samples`` when the profile has it
    (a CPU profile: one count per sample, like every other backend, so
    ``samples / (duration * rate)`` is the sampled share of a CPU); otherwise
    the profile's ``default_sample_type``; otherwise the last type, as
    ``go tool pprof`` does (``inuse_space`` for a Go heap profile). ``weight``
    names it: the type alone for a count (``samples``), ``type/unit`` for
    anything else (``inuse_space/bytes``).

    Frames are ``function (file)``, one per function rather than per line, so
    the top table adds a function's samples up as ``go tool pprof -top`` does.
    Inlined calls (a location with several lines) become frames of their own;
    the proto lists stacks leaf first, the model root first. A location
    without symbols becomes its address (and its binary's file name when
    known). Samples whose value is 0 (freed memory in a heap profile) are left
    out. ``rate_hz`` is ``1e9 / period`` for a time-based period (CPU),
    otherwise None; ``duration_s`` defaults to the profile's own duration (0
    for a heap snapshot).
    """
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise OpsError(f"{target}: not a pprof profile (bad gzip data: {exc})") from None
    try:
        raw = _decode(data)
        return _build(raw, data, target, language, duration_s, sample_type)
    except _Malformed as exc:
        raise OpsError(f"{target}: not a pprof profile ({exc})") from None


def _build(
    raw: _RawProfile,
    buf: bytes,
    target: str,
    language: str,
    duration_s: float | None,
    sample_type: str | None,
) -> Profile:
    strings = raw.strings

    def s(index: int) -> str:
        if not 0 <= index < len(strings):
            raise _Malformed(f"string index {index} outside the table of {len(strings)}")
        return strings[index]

    if not raw.sample_types:
        raise _Malformed("no sample types")
    types = [(s(t), s(u)) for t, u in raw.sample_types]
    labels = [f"{t}/{u}" for t, u in types]
    index = _choose(types, labels, sample_type, s(raw.default_sample_type))
    if index is None:
        raise OpsError(f"{target}: no sample type {sample_type!r}; it has {', '.join(labels)}")
    chosen_type, chosen_unit = types[index]

    functions: dict[int, str] = {}
    for fid, (name, system, filename) in raw.functions.items():
        fname = s(name) or s(system) or f"function#{fid}"
        file = s(filename)
        functions[fid] = f"{fname} ({file})" if file else fname

    frames: dict[int, Stack] = {}

    def location(lid: int) -> Stack:
        found = frames.get(lid)
        if found is not None:
            return found
        loc = raw.locations.get(lid)
        if loc is None:
            raise _Malformed(f"a sample refers to location {lid}, which is not in the profile")
        if loc.lines:
            # Line[0] is the innermost inlined call, the last line the caller that
            # holds the address: root -> leaf is the reverse.
            out = tuple(_function(functions, fid) for fid in reversed(loc.lines))
        else:
            binary = s(raw.mappings.get(loc.mapping_id, 0)).rsplit("/", 1)[-1]
            out = (f"0x{loc.address:x} ({binary})" if binary else f"0x{loc.address:x}",)
        frames[lid] = out
        return out

    stacks: Counter[Stack] = Counter()
    totals = [0] * len(types)
    for a, b in raw.samples:
        ids: list[int] = []
        values: list[int] = []
        for n, w, x, y in _fields(buf, a, b):
            if n == 1:
                _ints(buf, w, x, y, ids)
            elif n == 2:
                _ints(buf, w, x, y, values)
        if len(values) != len(types):
            raise _Malformed(f"a sample has {len(values)} values for {len(types)} sample types")
        values = [_signed(v) for v in values]
        for i, v in enumerate(values):
            totals[i] += v
        value = values[index]
        if value == 0:
            continue
        stack: list[str] = []
        for lid in reversed(ids):
            stack.extend(location(lid))
        stacks[tuple(stack)] += value

    period_type = "/".join(s(i) for i in raw.period_type if i) or None
    time_based = s(raw.period_type[1]) == "nanoseconds"
    meta: ProfileMeta = {
        "format": "profile.proto",
        "sample_type": labels[index],
        "sample_types": labels,
        "totals": dict(zip(labels, totals, strict=True)),
        "period": raw.period,
        "period_type": period_type,
    }
    if raw.default_sample_type:
        meta["default_sample_type"] = s(raw.default_sample_type)
    if raw.comments:
        meta["comments"] = [s(i) for i in raw.comments]
    return Profile(
        stacks=dict(stacks),
        target=target,
        language=language,
        backend="pprof",
        duration_s=duration_s if duration_s is not None else raw.duration_nanos / 1e9,
        rate_hz=round(1e9 / raw.period, 6) if time_based and raw.period > 0 else None,
        weight=chosen_type if chosen_unit in ("count", "") else f"{chosen_type}/{chosen_unit}",
        started=raw.time_nanos / 1e9 if raw.time_nanos else None,
        meta=meta,
    )


def _function(functions: dict[int, str], fid: int) -> str:
    found = functions.get(fid)
    if found is None:
        raise _Malformed(f"a location refers to function {fid}, which is not in the profile")
    return found


def _choose(
    types: list[tuple[str, str]], labels: list[str], wanted: str | None, default: str
) -> int | None:
    """The index of the value to count (see parse_pprof); None if ``wanted`` is not there."""
    names = [t for t, _ in types]
    if wanted is not None:
        for candidates in (labels, names):
            if wanted in candidates:
                return candidates.index(wanted)
        return None
    if "samples" in names:
        return names.index("samples")
    if default in names:
        return names.index(default)
    return len(types) - 1
