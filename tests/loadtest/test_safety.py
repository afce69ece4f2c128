"""Where load may go, and the one request that proves the target answers before the run."""

from __future__ import annotations

import http.server
import ipaddress
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import psutil
import pytest

from ops.errors import TargetRefused, TargetUnreachable
from ops.loadtest.safety import check_allowed, preflight
from ops.proc import free_port


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "https://127.0.0.2", "http://localhost:9", "http://[::1]:8080"]
)
def test_loopback_is_allowed(url: str) -> None:
    assert "loopback" in check_allowed(url)


def test_this_machines_own_addresses_are_allowed() -> None:
    own = [
        a.address
        for addrs in psutil.net_if_addrs().values()
        for a in addrs
        if a.family == socket.AF_INET and not ipaddress.ip_address(a.address).is_loopback
    ]
    assert own, "this machine has no non-loopback IPv4 address (docker0 at least is expected)"
    assert "this machine" in check_allowed(f"http://{own[0]}:8080")


@pytest.mark.parametrize(
    "url", ["http://192.0.2.10", "https://203.0.113.5:8443", "http://[2001:db8::1]/"]
)
def test_other_hosts_are_refused_with_the_way_out(url: str) -> None:
    with pytest.raises(TargetRefused) as info:
        check_allowed(url)
    message = str(info.value)
    assert message.startswith(f"refusing to send load to {url}: ")
    # The library names the input (allow_hosts); the CLI adds its flag.
    host = urlsplit(url).hostname
    assert f"allow {host} if you own it" in message
    assert info.value.fields == ("allow_hosts",) and "--" not in message and "\n" not in message


def test_allow_host_and_the_stack_domain_permit_a_host_without_resolving_it() -> None:
    assert "allowed" in check_allowed("http://192.0.2.10:80", {"192.0.2.10"})
    assert "allowed" in check_allowed("https://vots.example.com", {"vots.example.com"})
    assert "allowed" in check_allowed("https://VOTS.example.com.", {"vots.example.com"})


def test_a_name_that_does_not_resolve_is_unreachable() -> None:
    with pytest.raises(TargetUnreachable, match=r"cannot resolve 'no-such-host\.invalid'"):
        check_allowed("http://no-such-host.invalid")


@pytest.mark.parametrize("url", ["ftp://127.0.0.1", "http://127.0.0.1:99999", "http://"])
def test_malformed_targets_are_refused(url: str) -> None:
    with pytest.raises(TargetRefused):
        check_allowed(url)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_preflight_accepts_any_http_answer(http_server: str) -> None:
    assert preflight(http_server) == 503


def test_preflight_names_a_refused_connection() -> None:
    port = free_port()
    with pytest.raises(TargetUnreachable, match=f"nothing listens on 127.0.0.1:{port}"):
        preflight(f"http://127.0.0.1:{port}")


def test_preflight_times_out_on_a_silent_server() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with pytest.raises(TargetUnreachable, match=r"did not answer within 0\.5s"):
            preflight(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.5)


def test_preflight_reports_tls_to_a_plain_http_port(http_server: str) -> None:
    with pytest.raises(TargetUnreachable, match="TLS handshake failed"):
        preflight(http_server.replace("http://", "https://"))


def test_credentials_in_the_url_are_refused() -> None:
    with pytest.raises(TargetRefused, match="no credentials in the URL") as info:
        check_allowed("http://admin:hunter2@127.0.0.1:8000")
    assert "hunter2" not in str(info.value)
