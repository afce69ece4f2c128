"""The rendered nginx config, checked by nginx itself and then run for real.

``nginx -t`` (Brotli modules loaded) must accept the bundled stack and
generated ones. Then the bundled stack's config runs on loopback in front of a
real uvicorn app (tests/support/upstream.py) and every promise the template
makes is checked on the wire: HTTP/2, Brotli and gzip, immutable static
caching, the HTTP->HTTPS redirect, rate limits, upstream keep-alive, security
headers, server_tokens, the microcache and stub_status.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gzip
import math
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings

from ops.errors import CapacityError
from ops.files import write_all
from ops.plan import Plan, fit
from ops.plan.render import render_files
from ops.plan.verify import local_runtime, verify_plan
from ops.proc import which
from ops.stack import LoadedStack, load_stack, parse_stack
from tests.support.edge import Edge, serve_edge
from tests.support.stacks import BUNDLED, stacks
from tests.support.upstream import RunningUpstream, api_body, serve_upstream, static_body

# --------------------------------------------------------------------------- nginx -t


def _assert_nginx_t_ok(loaded: LoadedStack, plan: Plan, workdir: Path | None = None) -> None:
    results = verify_plan(loaded, plan, workdir, checks=["nginx"])
    assert [r.name for r in results] == ["nginx"]
    assert results[0].ok, results[0].output
    assert "syntax is ok" in results[0].output
    assert "test is successful" in results[0].output


@pytest.mark.timeout(30)
def test_bundled_stack_passes_nginx_t(tmp_path: Path) -> None:
    loaded = load_stack(BUNDLED)
    _assert_nginx_t_ok(loaded, fit(loaded), tmp_path)
    conf = (tmp_path / "nginx" / "nginx.conf").read_text()
    # The test ran with the Brotli modules really loaded, not skipped.
    assert "ngx_http_brotli_filter_module.so;" in conf
    assert "ngx_http_brotli_static_module.so;" in conf
    assert "\n    brotli on;" in conf


@pytest.mark.timeout(120)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=stacks())
def test_generated_stacks_pass_nginx_t(data: dict) -> None:
    loaded = parse_stack(yaml.safe_dump(data, sort_keys=False), "stack.yaml")
    try:
        plan = fit(loaded)
    except CapacityError:
        assume(False)
    _assert_nginx_t_ok(loaded, plan)


def test_nginx_t_rejects_a_broken_config(tmp_path: Path) -> None:
    """The check above can fail: the same nginx -t call refuses a config with a bad directive."""
    loaded = load_stack(BUNDLED)
    runtime = local_runtime(tmp_path, loaded)
    files = render_files(loaded, fit(loaded), tmp_path, runtime)
    files["nginx/nginx.conf"] = files["nginx/nginx.conf"].replace("brotli on;", "brotli maybe;")
    write_all(tmp_path, files)
    conf = tmp_path / "nginx" / "nginx.conf"
    argv = [which("nginx"), "-t", "-p", str(tmp_path), "-c", str(conf), "-e", runtime.error_log]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode != 0
    assert "brotli" in proc.stderr


# --------------------------------------------------------------------------- live nginx


ROUTED = {"agent", "rag", "dashboard"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[RunningUpstream]:
    with serve_upstream() as up:
        yield up


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, upstream: RunningUpstream) -> Iterator[Edge]:
    with serve_edge(tmp_path_factory.mktemp("edge"), upstream.address) as running:
        assert running.routed == ROUTED
        yield running


@pytest.fixture(scope="module")
def client(edge: Edge) -> Iterator[httpx.Client]:
    with httpx.Client(
        http2=True, verify=edge.ssl_context(), trust_env=False, timeout=10, base_url=edge.https
    ) as c:
        yield c


def _brotli_decompress(data: bytes, limit: int = 1 << 22) -> bytes:
    """Decode Brotli with the system libbrotlidec (the library nginx's module links to)."""
    lib = ctypes.CDLL(ctypes.util.find_library("brotlidec") or "libbrotlidec.so.1")
    fn = lib.BrotliDecoderDecompress
    fn.argtypes = [
        ctypes.c_size_t,
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.c_char_p,
    ]
    fn.restype = ctypes.c_int
    out = ctypes.create_string_buffer(limit)
    size = ctypes.c_size_t(limit)
    assert fn(len(data), data, ctypes.byref(size), out) == 1, "not a valid Brotli stream"
    return out.raw[: size.value]


def _assert_security_headers(edge: Edge, headers: httpx.Headers) -> None:
    csp = edge.loaded.stack.edge.headers["Content-Security-Policy"]
    assert headers["strict-transport-security"].startswith("max-age=63072000")
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert headers.get_list("content-security-policy") == [csp]
    assert headers["server"] == "nginx"  # server_tokens off: no version


@pytest.mark.timeout(20)
def test_http2_and_plain_json(edge: Edge, client: httpx.Client) -> None:
    path = "/api/v1/analyze_code"
    r = client.get(path, headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200
    assert r.http_version == "HTTP/2"
    assert "content-encoding" not in r.headers
    assert r.content == api_body(path)
    _assert_security_headers(edge, r.headers)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("encoding", ["br", "gzip"])
def test_compression(edge: Edge, client: httpx.Client, encoding: str) -> None:
    path = "/api/v1/analyze_code"
    expected = api_body(path)
    assert len(expected) > 1024
    with client.stream("GET", path, headers={"Accept-Encoding": encoding}) as r:
        raw = b"".join(r.iter_raw())
    assert r.status_code == 200
    assert r.http_version == "HTTP/2"
    assert r.headers["content-encoding"] == encoding
    assert "accept-encoding" in r.headers["vary"].lower()
    decoded = _brotli_decompress(raw) if encoding == "br" else gzip.decompress(raw)
    assert decoded == expected
    assert len(raw) < len(expected) // 3


@pytest.mark.timeout(20)
def test_immutable_static_assets(edge: Edge, client: httpx.Client) -> None:
    path = "/_next/static/chunk.js"
    r = client.get(path, headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200
    assert r.content == static_body(path)
    # The upstream said no-cache; nginx replaces it with exactly one year-long immutable value.
    values = r.headers.get_list("cache-control")
    assert len(values) == 1
    assert "immutable" in values[0]
    assert "max-age=31536000" in values[0]
    _assert_security_headers(edge, r.headers)


@pytest.mark.timeout(20)
def test_http_redirects_to_https(edge: Edge) -> None:
    with httpx.Client(trust_env=False, timeout=5) as plain:
        r = plain.get(f"{edge.http}/api/v1/search?q=redirect", follow_redirects=False)
    assert r.status_code == 301
    assert r.headers["location"] == f"{edge.https}/api/v1/search?q=redirect"
    assert r.headers["server"] == "nginx"


@pytest.mark.timeout(20)
def test_microcache_miss_then_hit(
    edge: Edge, client: httpx.Client, upstream: RunningUpstream
) -> None:
    path = f"/api/v1/search/{uuid.uuid4().hex}"
    first = client.get(path)
    second = client.get(path)
    assert first.status_code == second.status_code == 200
    assert first.headers["x-cache-status"] == "MISS"
    assert second.headers["x-cache-status"] == "HIT"
    assert first.content == second.content == api_body(path)
    # The hit never reached the upstream: same upstream response, one upstream request.
    assert second.headers["x-upstream-request"] == first.headers["x-upstream-request"]
    assert upstream.stats.snapshot()["paths"][path] == 1
    _assert_security_headers(edge, second.headers)


@pytest.mark.timeout(20)
def test_microcache_never_stores_or_serves_authorised_requests(
    client: httpx.Client, upstream: RunningUpstream
) -> None:
    path = f"/api/v1/search/{uuid.uuid4().hex}"
    auth = {"Authorization": "Bearer alice"}
    statuses = []
    for headers in (auth, {}, auth, {}):
        r = client.get(path, headers=headers)
        assert r.status_code == 200
        statuses.append(r.headers["x-cache-status"])
    # Alice's response was not stored (the anonymous GET after it is a MISS) and
    # her second GET went to the upstream rather than to the anonymous cache entry.
    assert statuses == ["BYPASS", "MISS", "BYPASS", "HIT"]
    assert upstream.stats.snapshot()["paths"][path] == 3


@pytest.mark.timeout(30)
def test_upstream_keepalive(client: httpx.Client, upstream: RunningUpstream) -> None:
    n = 50
    before = upstream.stats.snapshot()
    for i in range(n):
        r = client.get(f"/healthz?i={i}")
        assert r.status_code == 200
    after = upstream.stats.snapshot()
    assert after["requests"] - before["requests"] == n
    new_connections = after["connections"] - before["connections"]
    # Without the upstream keepalive pool this is exactly n: one connection per request.
    assert new_connections <= 5, f"{new_connections} upstream connections for {n} requests"


@pytest.mark.timeout(20)
def test_stub_status_on_status_port(edge: Edge) -> None:
    with httpx.Client(trust_env=False, timeout=5) as plain:
        r = plain.get(f"{edge.status}/nginx_status")
        other = plain.get(f"{edge.status}/")
    assert r.status_code == 200
    assert r.text.startswith("Active connections:")
    assert "server accepts handled requests" in r.text
    assert other.status_code == 404


async def _burst(edge: Edge, source: str, path: str, n: int) -> tuple[list[int], float]:
    """n concurrent GETs over one HTTP/2 connection from a fresh loopback source address,
    so the rate-limit zone (keyed by client address) starts empty.

    GET, not POST: nginx can answer 429 and close the stream before httpx has sent the
    (empty) body's END_STREAM, and httpx's HTTP/2 client then fails that request with
    LocalProtocolError (a client quirk, seen as an occasional flake)."""
    transport = httpx.AsyncHTTPTransport(
        http2=True, verify=edge.ssl_context(), local_address=source
    )
    async with httpx.AsyncClient(
        transport=transport, base_url=edge.https, trust_env=False, timeout=10
    ) as c:
        first = await c.get("/healthz")  # open the connection before the clock starts
        assert first.http_version == "HTTP/2"
        start = time.monotonic()
        responses = await asyncio.gather(*(c.get(path) for _ in range(n)))
        elapsed = time.monotonic() - start
    for r in responses:
        if r.status_code == 429:
            _assert_security_headers(edge, r.headers)
    return [r.status_code for r in responses], elapsed


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("source", "path", "rate", "burst"),
    [
        ("127.0.0.21", "/api/v1/ingest", 2, 4),
        ("127.0.0.22", "/api/v1/analyze_code", 20, 40),
    ],
)
def test_rate_limit(edge: Edge, source: str, path: str, rate: int, burst: int) -> None:
    routes = {r.path: r for s in edge.loaded.stack.services.values() for r in s.routes}
    assert routes[path].rate_limit == f"{rate}r/s"
    assert routes[path].burst == burst
    # More than the bucket can refill in the 2 s a busy machine may take to send them.
    n = burst + 1 + 2 * rate + 10
    codes, elapsed = asyncio.run(_burst(edge, source, path, n))
    ok, limited = codes.count(200), codes.count(429)
    assert ok + limited == n, codes
    # burst + 1 pass at once (nodelay); a few more only if the bucket refilled meanwhile.
    # ``elapsed`` (sending to the last answer) contains nginx's refill window, so a slow
    # machine only widens the allowance, never fails it.
    assert burst + 1 <= ok <= burst + 1 + math.ceil(rate * elapsed), (ok, elapsed)
    assert limited >= n - burst - 1 - math.ceil(rate * elapsed)
    assert limited > 0, (codes, elapsed)
