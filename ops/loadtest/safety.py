"""Where load may go, and whether the target answers before a minute is spent on errors.

Allowed targets: an address on this machine (loopback, or one of its own
interfaces such as the Docker bridge), the domain ``stack.yaml`` names, or a
host the user named with ``--allow-host``. A name is judged by every address
it resolves to, so ``localtest.me`` is fine and a name that also points
elsewhere is not.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from urllib.parse import urlsplit

from ops.errors import TargetRefused, TargetUnreachable
from ops.units import shown

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def split_host(url: str) -> tuple[str, str, int]:
    """``https://h:8443`` -> (scheme, host, port)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused(f"{url}: expected an http:// or https:// base URL")
    if parts.username or parts.password:
        raise TargetRefused(
            f"{parts.scheme}://…@{parts.hostname}: no credentials in the URL (they would land in "
            "result.json and the reports); send them from the locustfile, read from a file or env"
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise TargetRefused(f"{url}: the port is not a number from 1 to 65535") from None
    return parts.scheme, parts.hostname, port


def _own_addresses() -> set[IPAddress]:
    """Addresses assigned to this machine's interfaces (docker0, the VM's own IPs)."""
    try:
        import psutil

        return {
            ipaddress.ip_address(a.address.split("%")[0])
            for addrs in psutil.net_if_addrs().values()
            for a in addrs
            if a.family in (socket.AF_INET, socket.AF_INET6)
        }
    except (ImportError, OSError, ValueError):
        return set()


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TargetUnreachable(f"cannot resolve {shown(host)} ({exc.strerror})") from None
    return sorted({ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}, key=str)


def check_allowed(url: str, allowed: Iterable[str] = ()) -> str:
    """Return why ``url`` may be load-tested, or raise TargetRefused saying how to allow it."""
    _scheme, host, port = split_host(url)
    names = {h.lower().rstrip(".") for h in allowed}
    if host.lower().rstrip(".") in names:
        return f"{host} is an allowed host"
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    addrs = [literal] if literal is not None else _resolve(host, port)
    if all(a.is_loopback for a in addrs):
        return f"{host} is loopback"
    own = _own_addresses()
    if all(a.is_loopback or a in own for a in addrs):
        return f"{host} is this machine"
    others = ", ".join(str(a) for a in addrs if not a.is_loopback and a not in own)
    what = host if literal is not None else f"{host} ({others})"
    named = f" ({', '.join(sorted(names))})" if names else ""
    raise TargetRefused(
        f"refusing to send load to {url}: {what} is not this machine, not the domain "
        f"in stack.yaml and not an allowed host{named}; allow {host} if you own it and mean it",
        fields=("allow_hosts",),
    )


def preflight(url: str, *, timeout: float = 5.0, path: str = "/") -> int:
    """One request before the run: any HTTP answer is fine, no answer is an error (exit 2)."""
    scheme, host, port = split_host(url)
    conn: http.client.HTTPConnection
    if scheme == "https":
        # Load tests target the stack's own (often self-signed) edge, as Locust's
        # FastHttpUser does by default.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "vots-ops-loadtest-preflight"})
        response = conn.getresponse()
        response.read(65536)
        return response.status
    except ConnectionRefusedError:
        raise TargetUnreachable(
            f"{url} refused the connection (nothing listens on {host}:{port}); is the stack up?"
        ) from None
    except TimeoutError:
        raise TargetUnreachable(f"{url} did not answer within {timeout:g}s") from None
    except socket.gaierror as exc:
        raise TargetUnreachable(f"cannot resolve {shown(host)} ({exc.strerror})") from None
    except ssl.SSLError as exc:
        raise TargetUnreachable(f"{url}: TLS handshake failed ({exc.reason or exc})") from None
    except (OSError, http.client.HTTPException) as exc:
        raise TargetUnreachable(
            f"{url} did not answer HTTP ({exc.__class__.__name__}: {exc})"
        ) from None
    finally:
        conn.close()
