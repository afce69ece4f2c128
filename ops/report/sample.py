"""One raw sample: the host's and every container's cumulative counters, and when.

Every structure in it is plain JSON (dicts, lists, str, int, float, None): the
raw sample is what the history stores, and the next run computes rates from it
(``ops.report.rates``), so a cron run never sleeps between two readings.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from ops.report.containers import DOCKER_TIMEOUT, collect_containers
from ops.report.procfs import collect_host

SCHEMA = 1

Sample = dict[str, Any]


def sample(
    docker: bool = True,
    *,
    top_n: int = 5,
    timeout: float = DOCKER_TIMEOUT,
    client: Any | None = None,
    source: str = "auto",
    follow: Collection[str] = (),
) -> Sample:
    """One raw sample: host counters, container counters, when, and any engine error.

    Keys: ``schema``, ``time`` (epoch s), ``mono`` (time.monotonic(): intervals
    between two samples of one boot ignore wall-clock steps), ``host``
    (``collect_host``), ``docker`` (whether containers were asked for),
    ``containers`` and ``docker_error`` (``collect_containers``), ``collect_s``
    (what the sample cost in wall time). ``follow``: container ids to describe
    even if they stopped (see ``collect_containers``).
    """
    started = time.perf_counter()
    stamp, mono = time.time(), time.monotonic()
    host = collect_host(top_n)
    containers: list[dict[str, Any]] = []
    error: str | None = None
    if docker:
        containers, error = collect_containers(client, timeout, source=source, follow=follow)
    return {
        "schema": SCHEMA,
        "time": stamp,
        "mono": mono,
        "host": host,
        "docker": docker,
        "containers": containers,
        "docker_error": error,
        "collect_s": round(time.perf_counter() - started, 4),
    }
