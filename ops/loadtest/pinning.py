"""Inside each Locust process: connections go only to the addresses the target was checked at.

``vots-ops loadtest`` resolves the target's name once (``safety.check_target``)
and hands the addresses to every Locust process it starts. :func:`install`
then, in that process (master and workers alike):

* answers name look-ups for the target's name with those addresses, so a DNS
  change mid-run cannot move the load (the name still goes out as the Host
  header and the TLS server name, as the URL is unchanged);
* refuses, at ``connect()`` -- before a byte is sent -- any TCP or UDP
  connection to an address and port that is not the target's. This is where
  both FastHttpUser (geventhttpclient) and HttpUser (requests/urllib3) end up,
  whatever sent them there: a proxy_host, an absolute URL to another host, a
  followed redirect, a client rebuilt in ``on_start``, a name that resolves
  elsewhere.

:func:`configure_tls` makes both clients verify certificates, or not, as the
CLI decided (``Target.verify_tls``).

Imports gevent (Locust's own dependency); the CLI process never imports this.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Any

#: Set by the benchmark alone (bench/loadtest_throughput.py), to measure what the guard costs.
BENCH_UNGUARDED_ENV = "VOTS_OPS_BENCH_UNGUARDED"


class PinnedConnectionRefused(ConnectionRefusedError):
    """A connection to an address the target was not checked at; nothing was sent."""


class _Pin:
    def __init__(
        self, host: str, port: int, addresses: Sequence[str], on_refused: Callable[[str], None]
    ) -> None:
        self.name = host.lower().rstrip(".").strip("[]")
        self.port = port
        self.ips = tuple(ipaddress.ip_address(a.split("%")[0]) for a in addresses)
        self.allowed = {(ip, port) for ip in self.ips}
        # The checked addresses as connect() gets them from the resolver: a set
        # look-up, so the usual connect pays no address parsing (bench/loadtest_throughput.py).
        self.direct = {(str(ip), port) for ip in self.ips}
        self.direct |= {(f"::ffff:{ip}", port) for ip in self.ips if ip.version == 4}
        self.on_refused = on_refused

    def is_target(self, host: str) -> bool:
        return host.lower().rstrip(".").strip("[]") == self.name

    def addrinfo(self, port: Any, family: int, proto: int) -> list[Any]:
        """getaddrinfo's answer for the target's name: the checked addresses only."""
        try:
            number = int(port) if port is not None else self.port
        except (TypeError, ValueError):
            number = socket.getservbyname(str(port), "tcp")
        out: list[Any] = []
        for ip in self.ips:
            fam = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            if family not in (0, socket.AF_UNSPEC, fam):
                continue
            addr: tuple[Any, ...] = (
                (str(ip), number, 0, 0) if fam == socket.AF_INET6 else (str(ip), number)
            )
            out.append((fam, socket.SOCK_STREAM, proto or socket.IPPROTO_TCP, "", addr))
        if not out:
            raise socket.gaierror(socket.EAI_FAMILY, "the target has no address of this family")
        return out

    def check(self, sock: Any, address: Any) -> Any:
        """The address to connect to (a target name becomes its checked address), or refuse."""
        if type(address) is tuple and address[:2] in self.direct:
            return address  # a checked address and port, whatever the family
        if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
            return address
        if not isinstance(address, tuple) or len(address) < 2:
            return address  # let connect() itself reject a malformed address
        host, port = str(address[0]), address[1]
        try:
            ip = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            ip = None
            if self.is_target(host) and port == self.port:
                fam = sock.family
                for candidate in self.ips:
                    if (candidate.version == 6) == (fam == socket.AF_INET6):
                        return (str(candidate), port, *address[2:])
        if ip is not None and isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if ip is not None and (ip, port) in self.allowed:
            return address
        where = f"[{host}]:{port}" if ip is not None and ip.version == 6 else f"{host}:{port}"
        self.on_refused(where)
        checked = ", ".join(str(i) for i in self.ips)
        raise PinnedConnectionRefused(
            errno.ECONNREFUSED,
            f"vots-ops refused a connection to {where}: only the target {self.name} "
            f"({checked}) port {self.port} may be connected to",
        )


_PIN: list[_Pin] = []


def _socket_classes() -> list[type[Any]]:
    """The socket classes in use: gevent's (Locust monkey-patches) and the original one."""
    classes: list[type[Any]] = [socket.socket]
    try:
        import gevent.monkey
        import gevent.socket

        classes += [gevent.socket.socket, gevent.monkey.get_original("socket", "socket")]
    except ImportError:  # pragma: no cover - Locust always brings gevent
        pass
    return list(dict.fromkeys(classes))


def _guard(cls: type[Any]) -> None:
    if getattr(cls, "_vots_pinned", False):
        return
    connect, connect_ex = cls.connect, cls.connect_ex

    def guarded_connect(self: Any, address: Any) -> Any:
        if _PIN:
            address = _PIN[0].check(self, address)
        return connect(self, address)

    def guarded_connect_ex(self: Any, address: Any) -> Any:
        if _PIN:
            try:
                address = _PIN[0].check(self, address)
            except PinnedConnectionRefused:
                return errno.ECONNREFUSED
        return connect_ex(self, address)

    cls.connect = guarded_connect
    cls.connect_ex = guarded_connect_ex
    cls._vots_pinned = True


def _pin_resolver(module: Any) -> None:
    original = getattr(module, "getaddrinfo", None)
    if original is None or getattr(original, "_vots_pinned", False):
        return

    def getaddrinfo(
        host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> Any:
        if _PIN and isinstance(host, (str, bytes)):
            name = host.decode() if isinstance(host, bytes) else host
            if _PIN[0].is_target(name):
                return _PIN[0].addrinfo(port, family, proto)
        return original(host, port, family, type, proto, flags)

    getaddrinfo._vots_pinned = True  # type: ignore[attr-defined]
    module.getaddrinfo = getaddrinfo


def install(
    host: str, port: int, addresses: Sequence[str], on_refused: Callable[[str], None]
) -> bool:
    """Pin this process's connections to ``addresses`` port ``port``; False if the bench turned it off.

    ``on_refused`` gets ``"host:port"`` of each refused connection (the plugin
    stops the run). Installing again replaces the target.
    """
    import os

    if os.environ.get(BENCH_UNGUARDED_ENV) == "1":
        return False
    _PIN[:] = [_Pin(host, port, addresses, on_refused)]
    for cls in _socket_classes():
        _guard(cls)
    _pin_resolver(socket)
    try:
        import gevent.socket

        _pin_resolver(gevent.socket)
    except ImportError:  # pragma: no cover
        pass
    return True


def configure_tls(verify: bool) -> None:
    """Both Locust clients verify certificates (``verify``) or neither does.

    FastHttpUser defaults to an unverified context and HttpUser (requests) to a
    verified one; a client a locustfile builds itself gets the same default.
    """
    from locust import clients
    from locust.contrib import fasthttp

    if verify:
        import gevent.ssl

        fasthttp.insecure_ssl_context_factory = gevent.ssl.create_default_context
        # geventhttpclient skips the host name check for insecure=True even with
        # a verifying context: every session is made with insecure=False.
        session_init = fasthttp.FastHttpSession.__init__
        if getattr(session_init, "_vots_verified", False):
            return

        def verified_init(self: Any, *args: Any, **kwargs: Any) -> None:
            if len(args) > 3:  # base_url, request_event, user, insecure, ...
                args = (*args[:3], False, *args[4:])
            else:
                kwargs["insecure"] = False
            session_init(self, *args, **kwargs)

        verified_init._vots_verified = True  # type: ignore[attr-defined]
        fasthttp.FastHttpSession.__init__ = verified_init  # type: ignore[method-assign]
        return
    init = clients.HttpSession.__init__
    if getattr(init, "_vots_insecure", False):
        return

    def unverified_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.verify = False

    unverified_init._vots_insecure = True  # type: ignore[attr-defined]
    clients.HttpSession.__init__ = unverified_init  # type: ignore[method-assign]
    import urllib3

    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
