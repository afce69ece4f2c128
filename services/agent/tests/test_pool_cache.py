"""The worker pool's size and the cache, against real cgroup-shaped files and a real Redis."""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path

import redis
from vots_agent.cache import PREFIX, Cache
from vots_agent.pool import cpu_limit

from tests.conftest import Redis


def test_workers_follow_the_cgroup_cpu_quota_not_the_host(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("43000 100000\n")  # --cpus 0.43, as the plan gives rag
    assert cpu_limit(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    assert cpu_limit(tmp_path) == 3
    (tmp_path / "cpu.max").write_text("max 100000\n")  # no quota: the affinity mask
    import os

    assert cpu_limit(tmp_path) == len(os.sched_getaffinity(0))
    assert cpu_limit(tmp_path / "missing") == len(os.sched_getaffinity(0))


def test_workers_follow_a_cgroup_v1_quota_too(tmp_path: Path) -> None:
    cpu = tmp_path / "cpu,cpuacct"
    cpu.mkdir()
    (cpu / "cpu.cfs_quota_us").write_text("63000\n")  # --cpus 0.63, the agent's plan
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_limit(tmp_path) == 1
    (cpu / "cpu.cfs_quota_us").write_text("-1\n")  # no quota
    import os

    assert cpu_limit(tmp_path) == len(os.sched_getaffinity(0))


def test_the_lru_is_bounded_by_bytes() -> None:
    async def run() -> Cache:
        cache = Cache(None, lru_bytes=4096)
        for i in range(200):
            await cache.put("analysis", f"k{i}", {"blob": f"{i}" * 500 + str(i)}, 60)
        return cache

    cache = asyncio.run(run())
    assert cache.lru.bytes <= 4096 and 1 <= len(cache.lru) < 200
    assert asyncio.run(cache.get("analysis", "k199")) is not None
    assert asyncio.run(cache.get("analysis", "k0")) is None


def test_a_corrupt_redis_entry_is_a_miss_and_is_replaced(redis_server: Redis) -> None:
    async def run() -> tuple[object, object]:
        cache = Cache(redis_server.url)
        client = redis.Redis(port=redis_server.port)
        client.set(f"{PREFIX}analysis:bad", b"not zlib")
        client.set(f"{PREFIX}analysis:half", zlib.compress(b'{"findings": ['))
        first = await cache.get("analysis", "bad"), await cache.get("analysis", "half")
        await cache.put("analysis", "bad", {"ok": 1}, 60)
        second = await cache.get("analysis", "bad")
        await cache.close()
        return first, second

    first, second = asyncio.run(run())
    assert first == (None, None) and second == {"ok": 1}
