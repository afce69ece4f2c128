"""Where load may go, and the one request that proves the target answers before the run."""

from __future__ import annotations

import http.server
import ipaddress
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

from ops.errors import TargetRefused, TargetUnreachable
from ops.loadtest.safety import check_allowed, check_target, preflight, same_origin
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


def test_an_allowed_host_is_permitted_and_its_addresses_are_pinned() -> None:
    assert "allowed" in check_allowed("http://192.0.2.10:80", {"192.0.2.10"})
    target = check_target("https://[2001:db8::1]:8443", {"2001:db8::1"})
    assert target.reason == "2001:db8::1 is an allowed host"
    assert (target.host, target.port, target.addresses) == ("2001:db8::1", 8443, ("2001:db8::1",))


def test_an_allowed_name_is_still_resolved_so_it_can_be_pinned() -> None:
    # Allowing a name does not skip the look-up: its addresses are what Locust may reach.
    with pytest.raises(TargetUnreachable, match="cannot resolve"):
        check_target("https://vots.invalid", {"vots.invalid"})


def test_a_name_is_pinned_to_the_addresses_it_was_checked_at() -> None:
    target = check_target("http://localhost:8080")
    assert target.addresses and all(ipaddress.ip_address(a).is_loopback for a in target.addresses)
    assert target.reason == "localhost is loopback" and target.loopback


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("http://127.0.0.1:18001/x", "http://127.0.0.1:1800"),  # a text prefix, another port
        ("https://DOMAIN.evil.net/", "https://DOMAIN"),  # a text prefix, another host
        ("http://127.0.0.1:1800@127.0.0.2:2900/", "http://127.0.0.1:1800"),  # userinfo
        ("http://u@127.0.0.1:1800/", "http://127.0.0.1:1800"),  # userinfo, same host
        ("http://domain/", "https://domain"),  # another scheme
        ("https://domain:8443/", "https://domain"),  # another port
    ],
)
def test_origins_are_compared_parsed_not_as_text(url: str, target: str) -> None:
    assert not same_origin(url, target)


@pytest.mark.parametrize(
    "url", ["/api/v1/search?q=x", "https://Domain/a", "https://domain:443/", "https://domain./"]
)
def test_relative_urls_and_the_same_origin_spelled_otherwise_are_the_targets(url: str) -> None:
    assert same_origin(url, "https://domain")


def test_userinfo_in_the_target_itself_is_refused() -> None:
    with pytest.raises(TargetRefused, match="no credentials in the URL"):
        check_allowed("http://127.0.0.1:1800@127.0.0.2:2900/")


def test_the_stack_domain_is_not_allowed_by_being_the_stacks() -> None:
    """Any host that is not this machine needs allow_hosts, whatever named it."""
    with pytest.raises(TargetRefused, match="not this machine and not an allowed host"):
        check_allowed("https://203.0.113.9")


def test_certificates_are_verified_except_on_loopback_or_when_told() -> None:
    own = next(
        a.address
        for addrs in psutil.net_if_addrs().values()
        for a in addrs
        if a.family == socket.AF_INET and not ipaddress.ip_address(a.address).is_loopback
    )
    mine = check_target(f"https://{own}:8443")
    assert mine.verify_tls() and mine.tls() == "verified"
    assert not mine.verify_tls(insecure=True) and mine.tls(True) == "not verified (--insecure)"
    local = check_target("https://127.0.0.1:8443")
    assert not local.verify_tls() and local.tls() == "not verified (loopback)"
    assert check_target("http://127.0.0.1:80").tls() is None


@pytest.fixture
def self_signed(tmp_path: Path) -> Iterator[str]:
    """A TLS listener on loopback with a self-signed certificate (made by openssl)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_preflight_refuses_an_unverifiable_certificate_when_verifying(self_signed: str) -> None:
    with pytest.raises(TargetUnreachable, match="the certificate was not accepted") as info:
        preflight(self_signed, verify=True)
    assert info.value.fields == ("insecure",)
    assert preflight(self_signed, verify=False) == 503


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
