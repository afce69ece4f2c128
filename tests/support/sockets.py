"""Raw TCP clients for the tests of servers that must survive bad clients: idle
connections, half-sent requests, file-descriptor limits."""

from __future__ import annotations

import contextlib
import resource
import socket
import time
from collections.abc import Callable, Iterator


def exchange(address: tuple[str, int], data: bytes, timeout: float = 30) -> bytes:
    """Send ``data`` as is, then read until the server closes the connection."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(data)
        return read_to_eof(sock)


def read_to_eof(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def split_response(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    """(status line, headers with lower-case names, body) of one HTTP/1.x response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the other end has closed (or reset) the connection; never blocks."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def wait_closed(sock: socket.socket, timeout: float = 60) -> float:
    """Seconds (monotonic) at which the peer closed ``sock``; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if closed_by_peer(sock):
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError("the server kept the connection open")


@contextlib.contextmanager
def open_files_allowed(count: int) -> Iterator[None]:
    """Raise this process's soft RLIMIT_NOFILE to at least ``count`` (within the hard
    limit) for the block, e.g. to open more connections than a server may hold."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count if hard == resource.RLIM_INFINITY else min(count, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def nofile_limit(count: int) -> Callable[[], None]:
    """A ``preexec_fn`` that gives the child process (only) ``count`` open files."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))

    return limit
