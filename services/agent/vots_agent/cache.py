"""Results cached by content: Redis when ``REDIS_URL`` is set, an in-process LRU otherwise.

Redis is optional at run time too: when it stops answering (each call has a
short timeout) the cache falls back to the LRU, logs one warning, says so in
``status()`` (and so in ``/readyz``), and tries Redis again every few seconds;
the first answer moves it back. Values are zlib-compressed JSON.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import zlib
from collections import OrderedDict
from typing import Any

log = logging.getLogger("vots_agent")
PREFIX = "vots-agent:v1:"
RETRY_S = 5.0
REDIS_TIMEOUT_S = 0.5


class LRU:
    """At most ``max_bytes`` of compressed values, least recently used out first."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._data: OrderedDict[str, bytes] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        old = self._data.pop(key, None)
        if old is not None:
            self.bytes -= len(old)
        self._data[key] = value
        self.bytes += len(value)
        while self.bytes > self.max_bytes:
            _, dropped = self._data.popitem(last=False)
            self.bytes -= len(dropped)

    def __len__(self) -> int:
        return len(self._data)


class Cache:
    def __init__(self, redis_url: str | None, lru_bytes: int = 64 * 1024 * 1024) -> None:
        self.redis_url = redis_url
        self.lru = LRU(lru_bytes)
        self._redis: Any = None
        self.redis_error: str | None = None
        self._retry_at = 0.0
        self.hits: dict[str, int] = {}
        self.misses: dict[str, int] = {}
        if redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(
                redis_url,
                socket_timeout=REDIS_TIMEOUT_S,
                socket_connect_timeout=REDIS_TIMEOUT_S,
                retry_on_timeout=False,
                health_check_interval=0,
            )

    @property
    def backend(self) -> str:
        return "redis" if self._redis is not None and self.redis_error is None else "lru"

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": self.backend, "lru_entries": len(self.lru)}
        if self._redis is None:
            out["detail"] = "REDIS_URL is not set: in-process LRU"
        elif self.redis_error is not None:
            out["detail"] = f"redis unreachable, using the in-process LRU: {self.redis_error}"
        return out

    def _use_redis(self) -> bool:
        if self._redis is None:
            return False
        return self.redis_error is None or time.monotonic() >= self._retry_at

    def _down(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"[:300]
        if self.redis_error is None:
            log.warning("redis unreachable, caching in process", extra={"reason": reason})
        self.redis_error = reason
        self._retry_at = time.monotonic() + RETRY_S

    def _up(self) -> None:
        if self.redis_error is not None:
            log.warning("redis reachable again", extra={"url": _safe(self.redis_url)})
        self.redis_error = None

    async def ping(self) -> None:
        """Probe Redis now (``/readyz``), whatever the retry timer says."""
        if self._redis is None:
            return
        try:
            await self._redis.ping()
        except Exception as exc:  # redis' errors and OSErrors alike
            self._down(exc)
        else:
            self._up()

    async def get(self, kind: str, key: str) -> Any | None:
        raw: bytes | None = None
        full = f"{PREFIX}{kind}:{key}"
        if self._use_redis():
            try:
                raw = await self._redis.get(full)
                self._up()
            except Exception as exc:
                self._down(exc)
                raw = self.lru.get(full)
        else:
            raw = self.lru.get(full)
        value = None
        if raw is not None:
            try:
                value = json.loads(zlib.decompress(raw))
            except (zlib.error, ValueError):
                value = None  # a corrupt entry is a miss, and is overwritten
        counter = self.hits if value is not None else self.misses
        counter[kind] = counter.get(kind, 0) + 1
        return value

    async def put(self, kind: str, key: str, value: Any, ttl_s: int) -> None:
        raw = zlib.compress(json.dumps(value, separators=(",", ":")).encode(), 3)
        full = f"{PREFIX}{kind}:{key}"
        if self._use_redis():
            try:
                await self._redis.set(full, raw, ex=ttl_s)
                self._up()
                return
            except Exception as exc:
                self._down(exc)
        self.lru.put(full, raw)

    async def close(self) -> None:
        if self._redis is not None:
            with contextlib.suppress(Exception):  # closing a dead connection: nothing to keep
                await self._redis.aclose()


def _safe(url: str | None) -> str:
    """The URL without its password, for logs."""
    from urllib.parse import urlsplit

    if not url:
        return ""
    u = urlsplit(url)
    host = u.hostname or ""
    return f"{u.scheme}://{host}{':' + str(u.port) if u.port else ''}{u.path}"
