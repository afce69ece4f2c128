"""Where load may go, and whether the target answers before a minute is spent on errors.

Allowed targets: an address on this machine (loopback, or one of its own
interfaces such as the Docker bridge), or a host the user named with
``--allow-host`` (or a scenario's ``allow_hosts:``) -- whatever named the host,
the stack's ``domain`` included. A name is judged by every address it resolves
to, so ``localtest.me`` is fine and a name that also points elsewhere is not.
The addresses checked here are the only ones the Locust processes may connect
to (see ``ops.loadtest.pinning``): the name is resolved once, here.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
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


Origin = tuple[str, str, int]


def origin(url: str) -> Origin | None:
    """(scheme, host, port) of an absolute URL, host lower-cased; None for a relative one.

    Raises ValueError for userinfo or a bad port: such a URL is never the target's.
    """
    parts = urlsplit(url)
    if not parts.scheme and not parts.netloc:
        return None
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError(f"{url}: userinfo in the URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme.lower(), (parts.hostname or "").lower().rstrip("."), port


def same_origin(url: str, target: str) -> bool:
    """Whether ``url`` is relative or has the target's scheme, host and port (not a text prefix)."""
    try:
        got = origin(url)
        return got is None or got == origin(target)
    except ValueError:
        return False


@dataclass(frozen=True)
class Target:
    """A target that may be load-tested, and the addresses its connections are pinned to."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]
    reason: str
    loopback: bool

    def verify_tls(self, insecure: bool = False) -> bool:
        """Certificates are verified for https to names other than loopback, unless --insecure."""
        return self.scheme == "https" and not insecure and not self.loopback

    def tls(self, insecure: bool = False) -> str | None:
        """What result.json and the table say about certificates (None for http)."""
        if self.scheme != "https":
            return None
        if self.verify_tls(insecure):
            return "verified"
        return "not verified (--insecure)" if insecure else "not verified (loopback)"


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


def check_target(url: str, allowed: Iterable[str] = ()) -> Target:
    """Resolve ``url``'s host once and return it with its addresses, or raise TargetRefused.

    A host that is not this machine must be in ``allowed`` (by name or address).
    """
    scheme, host, port = split_host(url)
    names = {h.lower().rstrip(".") for h in allowed}
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    addrs = [literal] if literal is not None else _resolve(host, port)
    pinned = tuple(str(a) for a in addrs)

    def target(reason: str) -> Target:
        loopback = all(a.is_loopback for a in addrs)
        return Target(url, scheme, host, port, pinned, reason, loopback)

    if all(a.is_loopback for a in addrs):
        return target(f"{host} is loopback")
    own = _own_addresses()
    if all(a.is_loopback or a in own for a in addrs):
        return target(f"{host} is this machine")
    if host.lower().rstrip(".") in names:
        return target(f"{host} is an allowed host")
    others = ", ".join(str(a) for a in addrs if not a.is_loopback and a not in own)
    what = host if literal is not None else f"{host} ({others})"
    named = f" ({', '.join(sorted(names))})" if names else ""
    raise TargetRefused(
        f"refusing to send load to {url}: {what} is not this machine and not an allowed "
        f"host{named}; allow {host} if you own it and mean it",
        fields=("allow_hosts",),
    )


def check_allowed(url: str, allowed: Iterable[str] = ()) -> str:
    """Return why ``url`` may be load-tested, or raise TargetRefused saying how to allow it."""
    return check_target(url, allowed).reason


def preflight(url: str, *, timeout: float = 5.0, path: str = "/", verify: bool = False) -> int:
    """One request before the run: any HTTP answer is fine, no answer is an error (exit 2).

    ``verify``: check the certificate (``Target.verify_tls``); off, the stack's
    self-signed edge on loopback answers.
    """
    scheme, host, port = split_host(url)
    conn: http.client.HTTPConnection
    if scheme == "https":
        ctx = ssl.create_default_context()
        if not verify:
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
    except ssl.SSLCertVerificationError as exc:
        raise TargetUnreachable(
            f"{url}: the certificate was not accepted ({exc.verify_message or exc}); "
            "skip the check (insecure) only if you mean it",
            fields=("insecure",),
        ) from None
    except ssl.SSLError as exc:
        raise TargetUnreachable(f"{url}: TLS handshake failed ({exc.reason or exc})") from None
    except (OSError, http.client.HTTPException) as exc:
        raise TargetUnreachable(
            f"{url} did not answer HTTP ({exc.__class__.__name__}: {exc})"
        ) from None
    finally:
        conn.close()
