"""The Go backend against a real Go program: fetch over net/http/pprof, parse profile.proto.

``tests/profile/go/hot`` is built once per session with the system's Go
(stdlib only, offline). It burns CPU in ``main.hotLoop`` (called through
``main.step``, which the compiler inlines into ``main.burn``) and keeps 32 MiB
that ``main.allocRetained`` allocated. The parsed stacks are checked against
``go tool pprof -traces`` on the same bytes, so the decoder is compared with
Go's own reader, inlined frames included. Hand-built messages cover what Go
does not write (packed and unpacked fields, unsymbolized locations, errors).

Every test that needs the Go program is ``slow`` (a build, then seconds of
profiling). Sample counts are judged against the CPU time the program got
while it was profiled, which a busy machine lowers, never against the clock.
"""

from __future__ import annotations

import gzip
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from ops.errors import OpsError, TargetUnreachable, ToolMissing
from ops.proc import free_port, which
from ops.profile.model import Profile
from ops.profile.pprof import fetch_pprof, parse_pprof, pprof_endpoint
from tests.support.cli import Cli
from tests.support.processes import stop_process

HOT_SRC = Path(__file__).parent / "go" / "hot"
HEAP_MIB = 32


# --- the Go program ------------------------------------------------------------------------


def _go() -> str:
    try:
        return which("go")
    except ToolMissing as exc:
        # A missing tool is a failure with the way to get it, not a skip.
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def go_env(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Go's caches in the pytest cache (a temp dir when it is off, as in CI): works as root, offline."""
    cache = getattr(pytestconfig, "cache", None)
    root = cache.mkdir("go") if cache is not None else tmp_path_factory.mktemp("go")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
    env.update(
        HOME=str(root),
        GOCACHE=str(root / "build-cache"),
        GOPATH=str(root / "gopath"),
        GOFLAGS="",
        GOPROXY="off",  # stdlib only: a download attempt fails at once, never hangs
        GOTOOLCHAIN="local",
        PPROF_TMPDIR=str(root / "pprof"),
    )
    return env


@pytest.fixture(scope="session")
def hot_binary(go_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = _go()
    out = tmp_path_factory.mktemp("hot") / "hot"
    proc = subprocess.run(
        [go, "build", "-o", str(out), "."],
        cwd=HOT_SRC,
        env=go_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"go build failed:\n{proc.stderr}"
    return out


@pytest.fixture(scope="module")
def hot_proc(
    hot_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int]]:
    """The running program's base URL and PID; stopped after the module's tests."""
    port = free_port()
    log = tmp_path_factory.mktemp("hot-log") / "hot.log"
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(hot_binary), "-addr", f"127.0.0.1:{port}", "-heap-mb", str(HEAP_MIB)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120  # a hung start, not a slow one
        while True:
            assert proc.poll() is None, f"hot exited early: {log.read_text()}"
            try:
                if httpx.get(f"{url}/debug/pprof/", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"hot did not answer within 120s: {log.read_text()}"
            time.sleep(0.05)
        yield url, proc.pid
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def hot_url(hot_proc: tuple[str, int]) -> str:
    return hot_proc[0]


@dataclass
class CpuFetch:
    data: bytes
    elapsed: float  # wall seconds the fetch took
    cpu: float  # CPU seconds the Go process used meanwhile (user + system)
    sent: float  # wall-clock time (time.time()) the request was sent
    answered: float  # and the answer had arrived


@pytest.fixture(scope="module")
def cpu_fetch(hot_proc: tuple[str, int]) -> CpuFetch:
    url, pid = hot_proc
    process = psutil.Process(pid)
    before, sent, started = process.cpu_times(), time.time(), time.monotonic()
    data = fetch_pprof(url, seconds=2)
    after, elapsed, answered = process.cpu_times(), time.monotonic() - started, time.time()
    cpu = (after.user + after.system) - (before.user + before.system)
    return CpuFetch(data, elapsed, cpu, sent, answered)


@pytest.fixture(scope="module")
def heap_data(hot_url: str) -> bytes:
    return fetch_pprof(hot_url, kind="heap")


def go_traces(
    data: bytes, sample_index: str, go_env: dict[str, str], tmp_path: Path
) -> Counter[tuple[str, ...]]:
    """``go tool pprof -traces`` on ``data``: function-name stacks, root first -> count."""
    path = tmp_path / "profile.pb.gz"
    path.write_bytes(data)
    proc = subprocess.run(
        [_go(), "tool", "pprof", "-traces", f"-sample_index={sample_index}", str(path)],
        env=go_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out: Counter[tuple[str, ...]] = Counter()
    blocks = proc.stdout.split("-----------+" + "-" * 55)[1:]
    for block in blocks:
        value, names = 0, []
        for line in block.splitlines():
            # "%10s   %s%s": the value on the leaf's line only; label lines have ":  " at 10.
            if len(line) > 13 and line[10:13] == "   ":
                if line[:10].strip():
                    value = int(line[:10])
                names.append(line[13:].removesuffix(" (inline)"))
        if value:
            out[tuple(reversed(names))] += value
    return out


def by_function(profile: Profile) -> Counter[tuple[str, ...]]:
    """The profile's stacks with ``(file)`` dropped from each frame, as pprof prints them."""
    out: Counter[tuple[str, ...]] = Counter()
    for stack, n in profile.stacks.items():
        out[tuple(frame.rsplit(" (", 1)[0] for frame in stack)] += n
    return out


# --- live: CPU -----------------------------------------------------------------------------


@pytest.mark.slow
def test_cpu_profile_top_self_is_the_hot_loop(hot_url: str, cpu_fetch: CpuFetch) -> None:
    data = cpu_fetch.data
    assert data[:2] == b"\x1f\x8b"  # Go sends it gzipped
    profile = parse_pprof(data, target=hot_url)
    top = profile.top(3)
    print(
        f"\nCPU top: {top}\nsamples={profile.samples} duration={profile.duration_s}s "
        f"process CPU={cpu_fetch.cpu}s in {cpu_fetch.elapsed:.2f}s"
    )
    hot_loop = f"main.hotLoop ({HOT_SRC / 'main.go'})"
    # The program's own hottest function is the loop, and nearly every sample is in it:
    # its own code (0.99 of all samples on an idle machine) or, on a busy one, the
    # preemption it is stopped in (runtime.asyncPreempt, called from hotLoop), which
    # took up to 42% of the samples with another process spinning on each core.
    ours = [t for t in profile.top(20) if t["function"].startswith("main.")]
    assert ours[0]["function"] == hot_loop and ours[0]["total_share"] >= 0.95, top
    in_loop = sum(
        n
        for stack, n in profile.stacks.items()
        if stack[-1] == hot_loop
        or (stack[-1].startswith("runtime.asyncPreempt ") and stack[-2:-1] == (hot_loop,))
    )
    assert in_loop >= 0.9 * profile.samples, (in_loop, profile.samples, top)
    assert profile.backend == "pprof" and profile.language == "go"
    assert profile.weight == "samples"
    assert profile.rate_hz == 100.0  # Go's fixed CPU profiling rate: period 10 ms
    assert profile.meta["period"] == 10_000_000
    assert profile.meta["period_type"] == "cpu/nanoseconds"
    assert profile.meta["sample_types"] == ["samples/count", "cpu/nanoseconds"]
    assert profile.meta["totals"]["cpu/nanoseconds"] == profile.samples * 10_000_000
    # Go profiles for the 2 s asked (or a hair less, by its own clock), within the fetch.
    assert 1.9 <= profile.duration_s <= cpu_fetch.elapsed
    assert profile.started is not None
    assert cpu_fetch.sent - 0.5 <= profile.started <= cpu_fetch.answered
    # A sample per 10 ms of CPU: the count follows the CPU time the process got
    # (one busy goroutine: about duration * rate on an idle machine, fewer when
    # other work shares the CPUs), never more than the machine's CPUs could give.
    assert profile.samples <= profile.duration_s * profile.rate_hz * (os.cpu_count() or 1) * 1.1
    outside = cpu_fetch.elapsed - profile.duration_s  # measured, but before or after the profile
    assert profile.samples <= cpu_fetch.cpu * profile.rate_hz * 1.1 + 3
    assert profile.samples >= (cpu_fetch.cpu - outside) * profile.rate_hz * 0.8 - 3


@pytest.mark.slow
def test_cpu_stacks_match_go_tool_pprof_and_expand_inlined_frames(
    hot_url: str, cpu_fetch: CpuFetch, go_env: dict[str, str], tmp_path: Path
) -> None:
    profile = parse_pprof(cpu_fetch.data, target=hot_url)
    ours = by_function(profile)
    assert ours == go_traces(cpu_fetch.data, "samples", go_env, tmp_path)
    # main.step is inlined into main.burn: one location, two frames, root first.
    hot = [s for s in ours if s[-1] == "main.hotLoop"]
    assert hot and all(s[-3:] == ("main.burn", "main.step", "main.hotLoop") for s in hot)


@pytest.mark.slow
def test_cpu_sample_type_can_be_chosen(hot_url: str, cpu_fetch: CpuFetch) -> None:
    counted = parse_pprof(cpu_fetch.data, target=hot_url)
    timed = parse_pprof(cpu_fetch.data, target=hot_url, sample_type="cpu", duration_s=2)
    assert timed.weight == "cpu/nanoseconds"
    assert timed.duration_s == 2
    assert timed.meta["sample_type"] == "cpu/nanoseconds"
    assert timed.samples == counted.samples * 10_000_000
    with pytest.raises(OpsError) as info:
        parse_pprof(cpu_fetch.data, target="svc", sample_type="alloc_space")
    assert str(info.value) == (
        "svc: no sample type 'alloc_space'; it has samples/count, cpu/nanoseconds"
    )


# --- live: heap ----------------------------------------------------------------------------


@pytest.mark.slow
def test_heap_profile_finds_the_allocating_function(hot_url: str, heap_data: bytes) -> None:
    profile = parse_pprof(heap_data, target=hot_url)
    top = profile.top(3)
    print(f"\nheap top: {top}")
    assert profile.weight == "inuse_space/bytes"
    assert profile.meta["period_type"] == "space/bytes"
    assert profile.rate_hz is None  # a size period, not a rate
    assert profile.duration_s == 0.0  # a snapshot
    assert top[0]["function"] == f"main.allocRetained ({HOT_SRC / 'main.go'})"
    # Sampled every 512 KiB on average and scaled back up by Go; 4 MiB chunks are
    # all but certain to be sampled, so this is the 32 MiB kept, give or take a chunk.
    assert 0.8 * HEAP_MIB * 2**20 <= top[0]["self"] <= 1.1 * HEAP_MIB * 2**20
    chain = next(s for s in profile.stacks if s[-1].startswith("main.allocRetained "))
    assert [f.split(" ")[0] for f in chain[-2:]] == ["main.main", "main.allocRetained"]


@pytest.mark.slow
def test_heap_stacks_match_go_tool_pprof(
    hot_url: str, heap_data: bytes, go_env: dict[str, str], tmp_path: Path
) -> None:
    objects = parse_pprof(heap_data, target=hot_url, sample_type="inuse_objects")
    assert objects.weight == "inuse_objects"
    assert by_function(objects) == go_traces(heap_data, "inuse_objects", go_env, tmp_path)


# --- live: errors --------------------------------------------------------------------------


def test_unreachable_target_fails_fast_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    # Refused at once, said so (not a read timeout after waiting for the profile).
    with pytest.raises(TargetUnreachable) as info:
        fetch_pprof(url, seconds=1)
    assert str(info.value).startswith(f"{url}/debug/pprof/profile?seconds=1: cannot connect")
    assert "refused" in str(info.value).lower()


def test_silent_target_times_out_as_unreachable() -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        # The 0.5 s timeout given is the one applied, and named.
        with pytest.raises(TargetUnreachable, match=r"did not answer within 0\.5s"):
            fetch_pprof(url, kind="heap", timeout=0.5)


@pytest.mark.slow
def test_pprof_not_mounted_is_a_clear_error(hot_url: str) -> None:
    # The Go program's mux has nothing under /elsewhere: Go's own 404.
    with pytest.raises(OpsError) as info:
        fetch_pprof(f"{hot_url}/elsewhere", kind="heap")
    assert not isinstance(info.value, TargetUnreachable)
    assert str(info.value) == (
        f"{hot_url}/elsewhere/debug/pprof/heap answered 404: 404 page not found; "
        'is net/http/pprof mounted? add `import _ "net/http/pprof"` to the program'
    )


class _Recorder(http.server.BaseHTTPRequestHandler):
    paths: list[str] = []
    status, body = 500, b"Could not enable CPU profiling: cpu profiling already in use\nmore\n"

    def do_GET(self) -> None:
        self.paths.append(self.path)
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type("Handler", (_Recorder,), {"paths": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_other_status_names_it_with_the_first_body_line(
    recorder: tuple[str, type[_Recorder]],
) -> None:
    url, handler = recorder
    with pytest.raises(OpsError) as info:
        fetch_pprof(url, seconds=1.2)
    assert str(info.value) == (
        f"{url}/debug/pprof/profile?seconds=2 answered 500: "
        "Could not enable CPU profiling: cpu profiling already in use"
    )
    # Go's handler reads whole seconds only (anything else means 30 s): rounded up.
    assert handler.paths == ["/debug/pprof/profile?seconds=2"]


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf")])
def test_duration_must_be_positive(seconds: float) -> None:
    with pytest.raises(OpsError, match="positive number of seconds"):
        fetch_pprof("http://127.0.0.1:9", seconds=seconds)


@pytest.mark.parametrize(
    ("base", "kind", "expected"),
    [
        ("http://h:6060", "cpu", "http://h:6060/debug/pprof/profile?seconds=5"),
        ("http://h:6060/", "heap", "http://h:6060/debug/pprof/heap"),
        ("h:6060", "heap", "http://h:6060/debug/pprof/heap"),
        ("http://h:6060/debug/pprof/", "cpu", "http://h:6060/debug/pprof/profile?seconds=5"),
        ("https://h/admin/debug/pprof", "heap", "https://h/admin/debug/pprof/heap"),
        (
            "http://h/debug/pprof/profile?seconds=30",
            "cpu",
            "http://h/debug/pprof/profile?seconds=5",
        ),
        ("http://h/debug/pprof/heap", "cpu", "http://h/debug/pprof/profile?seconds=5"),
        ("http://h/svc", "heap", "http://h/svc/debug/pprof/heap"),
    ],
)
def test_endpoint_from_base_url(base: str, kind: str, expected: str) -> None:
    assert pprof_endpoint(base, kind, 5) == expected  # type: ignore[arg-type]


def test_importing_the_backend_does_not_import_httpx() -> None:
    code = "import sys, ops.profile.pprof; print('httpx' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False"


# --- hand-built messages -------------------------------------------------------------------


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 as protobuf writes it: two's complement, 10 bytes if negative
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _int(number: int, value: int) -> bytes:
    return _key(number, 0) + _varint(value)


def _msg(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _varint(len(payload)) + payload


def _packed(number: int, values: list[int]) -> bytes:
    return _msg(number, b"".join(_varint(v) for v in values))


class _Builder:
    """A profile.proto writer for tests: strings interned, messages appended."""

    def __init__(self) -> None:
        self.strings = [""]
        self.body = b""

    def s(self, text: str) -> int:
        if text not in self.strings:
            self.strings.append(text)
        return self.strings.index(text)

    def value_type(self, number: int, type_: str, unit: str) -> None:
        self.body += _msg(number, _int(1, self.s(type_)) + _int(2, self.s(unit)))

    def function(self, fid: int, name: str, filename: str = "", system: str = "") -> None:
        payload = _int(1, fid) + _int(2, self.s(name)) + _int(4, self.s(filename))
        if system:
            payload += _int(3, self.s(system))
        self.body += _msg(5, payload)

    def location(self, lid: int, *function_ids: int, address: int = 0, mapping: int = 0) -> None:
        payload = _int(1, lid) + _int(2, mapping) + _int(3, address)
        for i, fid in enumerate(function_ids):
            payload += _msg(4, _int(1, fid) + _int(2, 10 + i))
        self.body += _msg(4, payload)

    def sample(self, ids: list[int], values: list[int], *, packed: bool = True) -> None:
        if packed:
            payload = _packed(1, ids) + _packed(2, values)
        else:
            payload = b"".join(_int(1, i) for i in ids) + b"".join(_int(2, v) for v in values)
        self.body += _msg(2, payload)

    def encode(self, **scalars: int) -> bytes:
        numbers = {"time_nanos": 9, "duration_nanos": 10, "period": 12, "default_sample_type": 14}
        tail = b"".join(_int(numbers[k], v) for k, v in scalars.items())
        table = b"".join(_msg(6, s.encode()) for s in self.strings)
        return self.body + tail + table


def _cpu_like() -> _Builder:
    b = _Builder()
    b.value_type(1, "samples", "count")
    b.value_type(1, "cpu", "nanoseconds")
    b.value_type(11, "cpu", "nanoseconds")
    b.function(1, "main.main", "/src/main.go")
    b.function(2, "main.work", "/src/work.go")
    b.function(3, "main.inner", "/src/work.go")
    b.function(4, "", "", system="_sys_only")
    b.location(10, 1)
    b.location(11, 3, 2)  # main.inner inlined into main.work: Line[0] is the callee
    b.location(12, 4)
    b.location(13, address=0x4000AB, mapping=7)
    b.body += _msg(3, _int(1, 7) + _int(5, b.s("/usr/lib/libc.so.6")))
    b.sample([11, 10], [3, 30_000_000])  # leaf first
    b.sample([10], [1, 10_000_000], packed=False)
    b.sample([13, 12, 10], [2, 20_000_000])
    b.sample([11, 10], [4, 40_000_000], packed=False)  # same stack: adds up
    b.sample([10], [0, 0])  # a zero value is no stack
    return b


def test_synthetic_cpu_profile_stacks_inlining_and_metadata() -> None:
    data = _cpu_like().encode(
        time_nanos=1_700_000_000_500_000_000, duration_nanos=1_500_000_000, period=10_000_000
    )
    profile = parse_pprof(data, target="svc")
    assert profile.stacks == {
        ("main.main (/src/main.go)", "main.work (/src/work.go)", "main.inner (/src/work.go)"): 7,
        ("main.main (/src/main.go)",): 1,
        ("main.main (/src/main.go)", "_sys_only", "0x4000ab (libc.so.6)"): 2,
    }
    assert profile.top(1)[0]["function"] == "main.inner (/src/work.go)"
    assert profile.header() == {
        "target": "svc",
        "language": "go",
        "backend": "pprof",
        "duration_s": 1.5,
        "rate_hz": 100.0,
        "weight": "samples",
        "started": 1_700_000_000.5,
        "meta": {
            "format": "profile.proto",
            "sample_type": "samples/count",
            "sample_types": ["samples/count", "cpu/nanoseconds"],
            "totals": {"samples/count": 10, "cpu/nanoseconds": 100_000_000},
            "period": 10_000_000,
            "period_type": "cpu/nanoseconds",
        },
        "samples": 10,
        "distinct_stacks": 3,
    }
    assert parse_pprof(gzip.compress(data), target="svc") == profile


def test_synthetic_default_type_negative_values_and_language() -> None:
    b = _Builder()
    for t in ("alloc_space", "inuse_space"):
        b.value_type(1, t, "bytes")
    b.function(1, "f", "f.rs")
    b.location(1, 1)
    b.sample([1], [-512, 100])
    data = b.encode(default_sample_type=b.s("alloc_space"))
    profile = parse_pprof(data, target="t", language="rust", duration_s=3.0)
    assert (profile.language, profile.duration_s) == ("rust", 3.0)
    assert profile.weight == "alloc_space/bytes"
    assert profile.stacks == {("f (f.rs)",): -512}  # int64 two's complement read back
    assert profile.meta["default_sample_type"] == "alloc_space"
    # Without a default_sample_type, the last type, as go tool pprof picks.
    assert parse_pprof(b.encode(), target="t").weight == "inuse_space/bytes"


def _torn_sample() -> bytes:
    b = _Builder()
    b.value_type(1, "samples", "count")
    b.body += _msg(2, _msg(1, b"\x81\x80") + _packed(2, [1]))  # location ids end mid-varint
    return b.encode()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<html><body>pprof</body></html>", "not a pprof profile (wire type"),
        (b"\x1f\x8b\x08\x00garbage", "not a pprof profile (bad gzip data"),
        (b"", "not a pprof profile (no sample types)"),
        (_cpu_like().encode()[:-3], "not a pprof profile (field 6 runs past"),
        (_Builder().encode() + _msg(1, _int(1, 5)), "not a pprof profile (string index 5"),
        (b"\x08\x80", "not a pprof profile (truncated varint at byte 1)"),
        (_torn_sample(), "not a pprof profile (packed field ends inside a varint"),
    ],
)
def test_malformed_input_is_one_clear_line(data: bytes, reason: str) -> None:
    with pytest.raises(OpsError) as info:
        parse_pprof(data, target="svc")
    assert str(info.value).startswith(f"svc: {reason}"), str(info.value)
    assert "\n" not in str(info.value)


def test_sample_pointing_at_a_missing_location_is_an_error() -> None:
    b = _Builder()
    b.value_type(1, "samples", "count")
    b.sample([99], [1])
    with pytest.raises(OpsError, match="refers to location 99, which is not in the profile"):
        parse_pprof(b.encode(), target="svc")


@pytest.mark.slow
def test_the_cli_profiles_the_go_program_end_to_end(cli: Cli, hot_url: str, tmp_path: Path) -> None:
    """`vots-ops profile --language go --pprof-url` writes the same four files as for Python."""
    import json

    proc = cli.run(
        "profile", "--language", "go", "--pprof-url", hot_url, "--duration", "2s", "--format", "json",
        "--out", str(tmp_path), timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["backend"] == "pprof" and result["language"] == "go"
    # The program's hottest own function (runtime.asyncPreempt may rank above it when
    # the machine is busy: see test_cpu_profile_top_self_is_the_hot_loop).
    ours = [t for t in result["top"] if t["function"].startswith("main.")]
    assert ours[0]["function"].startswith("main.hotLoop"), result["top"]
    assert result["meta"]["used"] == f"pprof endpoint {hot_url}"
    run_dir = Path(result["run_dir"])
    assert {"profile.folded", "profile.json", "speedscope.json", "flamegraph.svg"} <= {
        p.name for p in run_dir.iterdir()
    }
