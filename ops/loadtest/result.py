"""The shapes a load test passes between its parts, typed: what the Locust plugin
writes (``RawRun``, ``Status``) and the result document (``LoadtestResult``).

``LoadtestResult`` is ``result.json`` (schema ``vots-ops/loadtest-result/1``,
documented in the README): TypedDicts, so the file stays plain JSON and a
reader of an older run gets the same keys. Latency maps are keyed by
percentile names (``p50``, ``p99.9``, ``p75`` when an SLO asks for it), so
they are mappings, not records. This module imports nothing: the plugin
(inside Locust) and the CLI both read it.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

Latency = dict[str, float | None]
Mode = Literal["local", "master", "worker"]


class Status(TypedDict, total=False):
    """One status line the plugin writes each second while the run goes on."""

    elapsed: float
    state: str
    users: int
    workers: int
    requests: int
    failures: int
    rps: float
    p95_ms: float | None
    measured_s: float  # since the first request: the final req/s's denominator


class DriverProcess(TypedDict):
    """How busy one Locust process was while users ran (``ops.loadtest.driver``)."""

    role: str  # "local", "worker" or "master"
    pid: int
    samples: int  # half-second samples taken while users ran
    core_demand: float | None  # median share of a core on it or waiting for it
    cpu_wait: float | None  # median share of the wall time runnable but waiting for a core
    cpu: float | None  # median share of a core used
    cpu_max: float | None
    machine_busy: float | None  # median share of all cores busy, as this process saw it
    saturated: bool


class Driver(TypedDict):
    processes: list[DriverProcess]
    machine_busy: float | None
    cores: int
    threshold: float  # core_demand at which a process is saturated
    wait_threshold: float  # cpu_wait at which it is, whatever its demand


class RawEntry(TypedDict, total=False):
    """Locust's figures for one endpoint (``method`` empty: the total); read with ``get``,
    as the file comes from another process."""

    method: str | None
    name: str
    requests: int
    failures: int
    min_ms: float | None
    max_ms: float
    avg_ms: float
    bytes: int
    first_request: float | None
    last_request: float | None
    locust_p50_ms: float | None
    locust_p95_ms: float | None
    locust_p99_ms: float | None


class RawError(TypedDict):
    method: str
    name: str
    error: str
    count: int


class RawException(TypedDict):
    msg: str
    count: int
    traceback: str


class RawRun(TypedDict, total=False):
    """The plugin's result file: Locust's stats plus the exact histograms."""

    locust_exit_code: int
    stop_reason: str
    foreign_url: str | None
    exceptions: list[RawException]
    started: float | None
    ended: float
    runner: str
    workers: int
    entries: list[RawEntry]
    errors: list[RawError]
    driver: list[DriverProcess]
    #: endpoint -> [service-time histogram, intended-start histogram or None], encoded
    hdr: dict[str, list[str | None]]


class Figures(TypedDict):
    """One endpoint's (or the whole run's) figures."""

    requests: int
    failures: int
    error_rate: float | None
    rps: float | None
    bytes: int
    latency_ms: Latency
    latency_from_intended_ms: Latency | None
    locust_latency_ms: Latency


class Planned(TypedDict):
    users: int
    spawn_rate: float
    duration_s: float
    arrival_rate: float | None
    max_requests: int
    processes: int
    mode: str
    workers: int


class ErrorRow(TypedDict):
    endpoint: str
    error: str
    count: int


class ExceptionRow(TypedDict):
    msg: str
    count: int


# "pass" is a keyword, so this one is spelled the functional way.
SloRow = TypedDict(
    "SloRow",
    {
        "target": str,
        "threshold": str,
        "metric": str,
        "op": str,
        "value": float,
        "unit": str,
        "actual": float | None,
        "pass": bool,
        "margin": float | None,
        "note": NotRequired[str],
    },
)


class Regression(TypedDict):
    target: str
    metric: str
    baseline: float
    actual: float
    unit: str
    change_pct: float | None
    tolerance_pct: float


class RunFiles(TypedDict):
    result: str
    report: str
    locust_report: str
    log: str


class LoadtestResult(TypedDict):
    """``result.json``: what was planned, measured and judged."""

    schema: str
    scenario: str
    host: str
    started: str | None
    ended: str | None
    measured_s: float
    planned: Planned
    stop_reason: str
    latency_basis: Literal["intended", "service"]
    endpoints: dict[str, Figures]
    overall: Figures
    errors: list[ErrorRow]
    exceptions: list[ExceptionRow]
    hdr_counts_match: bool
    # https: "verified", "not verified (loopback)" or "not verified (--insecure)"; None for http
    tls: NotRequired[str | None]
    #: a process generating load sat at a full core: the latencies include its queueing
    driver_saturated: bool
    driver: Driver
    # set once judged
    slos: NotRequired[list[SloRow]]
    baseline: NotRequired[str | None]
    #: why the baseline is not this run's counterpart (compared anyway: --force)
    baseline_mismatch: NotRequired[list[str]]
    tolerance_pct: NotRequired[float | None]
    regressions: NotRequired[list[Regression]]
    verdict: NotRequired[Literal["pass", "fail"]]
    files: NotRequired[RunFiles]
    run_dir: NotRequired[str]
