"""Loaded into every Locust process that ``vots-ops loadtest`` starts (the first ``-f`` file).

It adds what Locust's own statistics lack, without replacing them:

* every response time, to the microsecond, in an HdrHistogram per endpoint
  (Locust rounds to 2 significant digits above 100 ms);
* in arrival-rate mode, a second histogram of latency measured from each
  task's *intended* start (``VotsUser`` paces the schedule), so a server that
  stalls shows up in p99 instead of in a lower request rate;
* workers ship their histograms to the master with each stats report, so the
  percentiles of a multi-process run are exact, not averaged;
* the master (or the single local process) writes a status line each second
  to a pipe the CLI reads, stops at ``max_requests``, and writes the raw result
  file at exit.

Configuration arrives as JSON in ``VOTS_OPS_LOADTEST``; this module imports
Locust, so the CLI process never imports it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import gevent
from locust import events
from locust.runners import MasterRunner, WorkerRunner

from ops.loadtest import driver, pinning, users
from ops.loadtest.hdr import HIGHEST_US, LOWEST_US, Histogram, decode, encode, new
from ops.loadtest.result import RawEntry, RawError, RawRun, Status
from ops.loadtest.safety import same_origin, split_host

CONFIG: dict[str, Any] = json.loads(os.environ.get("VOTS_OPS_LOADTEST", "{}"))
_HOST: str = str(CONFIG.get("host") or "")


F = TypeVar("F", bound=Callable[..., Any])


def _on(hook: Any) -> Callable[[F], F]:
    """``@events.<hook>.add_listener``, keeping the listener's type (Locust's is untyped)."""

    def register(listener: F) -> F:
        hook.add_listener(listener)
        return listener

    return register


class _Recorder:
    """Per-endpoint histograms: service time and (arrival-rate mode) time since intended start."""

    def __init__(self) -> None:
        self.service: dict[str, Histogram] = {}
        self.intended: dict[str, Histogram] = {}
        # Set at test start from the pacing the master decided (users.pacing).
        self.paced = False

    def record(self, key: str, service_us: int, late_us: int) -> None:
        h = self.service.get(key)
        if h is None:
            h = self.service[key] = new()
        h.record_value(service_us)
        if self.paced:
            g = self.intended.get(key)
            if g is None:
                g = self.intended[key] = new()
            g.record_value(min(service_us + late_us, HIGHEST_US))

    def export(self) -> dict[str, list[str | None]]:
        out: dict[str, list[str | None]] = {}
        for key, h in self.service.items():
            g = self.intended.get(key)
            out[key] = [encode(h), encode(g) if g is not None else None]
        return out

    def merge(self, data: dict[str, list[str | None]]) -> None:
        for key, (svc, intended) in data.items():
            self.service.setdefault(key, new()).add(decode(svc))
            if intended is not None:
                self.intended.setdefault(key, new()).add(decode(intended))

    def reset(self) -> None:
        self.service.clear()
        self.intended.clear()


RECORDER = _Recorder()
STATE: dict[str, Any] = {"stop_reason": "duration", "started": None, "workers": 0, "env": None}
# Each process that runs users stops itself at its share of max_requests, so
# the bound holds to within the requests in flight, not a reporting interval.
_SHARE = int(CONFIG.get("max_requests_per_process") or 0)
_COUNT: list[Any] = [0, False]


@_on(events.request)
def _on_request(
    request_type: str,
    name: str,
    response_time: float | None,
    context: dict[str, Any] | None = None,
    url: str | None = None,
    response: Any = None,
    **_: Any,
) -> None:
    service_us = int((response_time or 0.0) * 1000.0)
    if service_us < LOWEST_US:
        service_us = LOWEST_US
    elif service_us > HIGHEST_US:
        service_us = HIGHEST_US
    late = context.get("vots_late_us", 0) if context else 0
    RECORDER.record(f"{request_type} {name}", service_us, late)
    foreign = _foreign_url(url, response)
    if foreign is not None:
        _foreign(foreign)
    if _SHARE:
        _COUNT[0] += 1
        if _COUNT[0] >= _SHARE and not _COUNT[1]:
            _COUNT[1] = True
            users.BUDGET_SPENT[0] = True
            STATE["stop_reason"] = "max_requests"
            if STATE["env"] is not None and STATE["env"].runner is not None:
                gevent.spawn(_stop_self, STATE["env"].runner)


def _foreign_url(url: str | None, response: Any) -> str | None:
    """The second line behind the connect-time pin: a URL (requested, or where a redirect
    ended) whose origin is not the target's. Relative URLs are the target's."""
    if not _HOST:
        return None
    final = getattr(response, "url", None)
    for candidate in (final, url):  # where the response came from is what matters most
        if not candidate:
            continue
        text = str(candidate)
        # Fast path for every request: the authority ends at the first "/".
        if text.startswith(_ORIGIN_PREFIX) or (text.startswith("/") and not text.startswith("//")):
            continue
        if not same_origin(text, _HOST):
            return text
    return None


def _origin_prefix(base: str) -> str:
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}/" if parts.scheme and parts.netloc else "\0"


_ORIGIN_PREFIX = _origin_prefix(_HOST)


def _pin_connections() -> None:
    """Resolve nothing again: connect only to the addresses the CLI checked, before any locustfile runs."""
    addresses = CONFIG.get("addresses")
    if not _HOST or not addresses:
        return
    _scheme, host, port = split_host(_HOST)
    if not pinning.install(host, port, addresses, _refused):
        sys.stderr.write("vots-ops: the connect-time guard is off (benchmark only)\n")
    if "verify_tls" in CONFIG:
        pinning.configure_tls(bool(CONFIG["verify_tls"]))


def _refused(where: str) -> None:
    _foreign(f"{where} (refused at connect: nothing was sent)")


def _foreign(url: str) -> None:
    """A request left the allowed host (an absolute URL, a followed redirect): stop everything."""
    if STATE["stop_reason"] == "foreign_host":
        return
    STATE["stop_reason"] = "foreign_host"
    STATE["foreign_url"] = url
    sys.stderr.write(f"vots-ops: a request went to {url}, outside {_HOST}; stopping the run\n")
    environment = STATE["env"]
    if environment is not None:
        environment.process_exit_code = 2
        if environment.runner is not None:
            gevent.spawn(_stop_self, environment.runner)


def _stop_self(runner: Any) -> None:
    """Stop this process's users; a worker first sends the master its last figures."""
    runner.stop()
    if isinstance(runner, WorkerRunner):
        # The periodic report runs every 3 s; without this one the master would
        # miss whatever this worker did since the last one.
        runner._send_stats()
    runner.quit()


# --- measurement of the driver itself and of task errors -------------------
# (separate from connection handling above: what the run says about itself)

SAMPLER: list[driver.Sampler] = []
DRIVERS: dict[str, Any] = {}  # master: worker id -> its latest DriverProcess
#: "KeyError: 'missing_key'" -> [count, traceback]; Locust's own table drops the type
TASK_ERRORS: dict[str, list[Any]] = {}


def _role(runner: Any) -> str:
    if isinstance(runner, WorkerRunner):
        return "worker"
    return "master" if isinstance(runner, MasterRunner) else "local"


def _sample_loop(environment: Any) -> None:
    """Twice a second while users run, how much of a core this process wanted."""
    sampler = SAMPLER[0]
    running = False
    while True:
        gevent.sleep(driver.INTERVAL_S)
        runner = environment.runner
        now_running = runner is not None and runner.state in ("spawning", "running")
        if now_running and running:
            sampler.sample()
        elif now_running:
            sampler.restart()
        running = now_running


def _start_sampling(environment: Any) -> None:
    SAMPLER.append(driver.Sampler(_role(environment.runner)))
    gevent.spawn(_sample_loop, environment)


@_on(events.user_error)
def _on_user_error(user_instance: Any, exception: BaseException, tb: Any, **_: Any) -> None:
    import traceback

    key = f"{type(exception).__name__}: {exception}"
    row = TASK_ERRORS.setdefault(key, [0, "".join(traceback.format_tb(tb))[-2000:]])
    row[0] += 1


def _merge_task_errors(rows: dict[str, list[Any]]) -> None:
    for key, (count, tb) in rows.items():
        TASK_ERRORS.setdefault(key, [0, tb])[0] += int(count)


def _count_requests_that_raised() -> None:
    """A task that raises inside ``with client.get(..., catch_response=True)`` sent its
    request, but Locust reports only ResponseErrors there: the request vanishes from the
    figures (a run of them said "no requests completed"). Report it as a failure with
    the exception, then let the exception go on to Locust's task error handling."""
    from locust.clients import ResponseContextManager as Plain
    from locust.contrib.fasthttp import ResponseContextManager as Fast

    for cls in (Plain, Fast):
        if getattr(cls, "_vots_counts_raised", False):
            continue
        original = cls.__exit__

        def __exit__(self: Any, exc: Any, value: Any, tb: Any, _orig: Any = original) -> Any:
            if exc is not None and getattr(self, "_manual_result", None) is None:
                from locust.exception import ResponseError

                if not isinstance(value, ResponseError):
                    self.request_meta["exception"] = value
                    self._report_request()
                    return False
            return _orig(self, exc, value, tb)

        cls.__exit__ = __exit__  # type: ignore[method-assign]
        setattr(cls, "_vots_counts_raised", True)  # noqa: B010


_count_requests_that_raised()


def _name_the_users_locustfile(environment: Any) -> None:
    """Locust's HTML report says ``Script:`` of the first ``-f`` file, which is this one."""
    name = CONFIG.get("locustfile")
    if name:
        environment.locustfile = name
        if getattr(environment, "parsed_options", None) is not None:
            environment.parsed_options.locustfile = name


@_on(events.report_to_master)
def _on_report_to_master(client_id: str, data: dict[str, Any]) -> None:
    if SAMPLER:
        data["vots_driver"] = SAMPLER[0].export()
    data["vots_task_errors"] = dict(TASK_ERRORS)
    TASK_ERRORS.clear()
    data["vots_hdr"] = RECORDER.export()
    data["vots_stop_reason"] = STATE["stop_reason"]
    data["vots_foreign_url"] = STATE.get("foreign_url")
    RECORDER.reset()


@_on(events.worker_report)
def _on_worker_report(client_id: str, data: dict[str, Any]) -> None:
    if "vots_hdr" in data:
        RECORDER.merge(data["vots_hdr"])
    if data.get("vots_driver"):
        DRIVERS[client_id] = data["vots_driver"]
    if data.get("vots_task_errors"):
        _merge_task_errors(data["vots_task_errors"])
    if (
        data.get("vots_stop_reason") in ("max_requests", "foreign_host")
        and STATE["stop_reason"] != "foreign_host"
    ):
        STATE["stop_reason"] = data["vots_stop_reason"]
        if data.get("vots_foreign_url"):
            STATE["foreign_url"] = data["vots_foreign_url"]
            sys.stderr.write(
                f"vots-ops: a worker's request went to {data['vots_foreign_url']}; stopping the run\n"
            )
            gevent.spawn(STATE["env"].runner.quit)


@_on(events.init_command_line_parser)
def _on_parser(parser: Any) -> None:
    # Custom arguments reach every worker with Locust's spawn message: the
    # master's pacing (after --users/--arrival-rate) is the one workers use.
    hidden = {"include_in_web_ui": False, "help": argparse.SUPPRESS}
    parser.add_argument("--vots-arrival-rate", type=float, default=0.0, **hidden)
    parser.add_argument("--vots-users", type=int, default=0, **hidden)


def _unpaceable(environment: Any) -> str | None:
    """Why this run's user classes cannot be paced at its arrival rate (None: they can)."""
    if users.pacing(environment) is None:
        return None
    plain = [c.__name__ for c in environment.user_classes if not issubclass(c, users.VotsUser)]
    if not plain:
        return None
    return (
        "vots-ops: arrival_rate needs user classes derived from ops.loadtest.users.VotsUser "
        f"(not: {', '.join(plain)})"
    )


@_on(events.init)
def _on_init(environment: Any, **_: Any) -> None:
    why = _unpaceable(environment)
    if why:
        sys.stderr.write(why + "\n")
        sys.exit(2)
    STATE["env"] = environment
    _name_the_users_locustfile(environment)
    _start_sampling(environment)
    if not isinstance(environment.runner, WorkerRunner):
        gevent.spawn(_status_loop, environment)


@_on(events.test_start)
def _on_test_start(environment: Any, **_: Any) -> None:
    if STATE["started"] is None:
        STATE["started"] = time.time()
    RECORDER.paced = users.pacing(environment) is not None
    why = _unpaceable(environment) if isinstance(environment.runner, WorkerRunner) else None
    if why:
        # Paced by a master elsewhere: refused here, before any user starts.
        sys.stderr.write(why + "\n")
        environment.process_exit_code = 2
        environment.runner.quit()
        return
    expected = CONFIG.get("host")
    if isinstance(environment.runner, WorkerRunner) and expected and environment.host != expected:
        # A master elsewhere could point this worker at another host; only the
        # host this machine's own `vots-ops loadtest --worker` checked is allowed.
        sys.stderr.write(
            f"vots-ops: the master asked for host {environment.host!r}; this worker "
            f"was started for {expected!r} and refuses\n"
        )
        environment.process_exit_code = 2
        environment.runner.quit()


def _status_loop(environment: Any) -> None:
    fd = CONFIG.get("status_fd")
    limit = int(CONFIG.get("max_requests") or 0)
    if fd is not None:
        os.set_blocking(fd, False)
    while True:
        gevent.sleep(1.0)
        runner = environment.runner
        total = environment.stats.total
        if isinstance(runner, MasterRunner):
            STATE["workers"] = max(STATE["workers"], len(runner.clients))
            # Workers elsewhere (--master) do not know their share: stop them from here.
            if (
                limit
                and total.num_requests >= limit
                and runner.state not in ("stopping", "stopped")
            ):
                STATE["stop_reason"] = "max_requests"
                gevent.spawn(runner.quit)
        if fd is None:
            continue
        line: Status = {
            "elapsed": time.time() - STATE["started"] if STATE["started"] else 0.0,
            "state": runner.state,
            "users": runner.user_count,
            "workers": len(runner.clients) if isinstance(runner, MasterRunner) else 0,
            "requests": total.num_requests,
            "failures": total.num_failures,
            "rps": total.current_rps,
            "p95_ms": total.get_current_response_time_percentile(0.95),
            "measured_s": _measured_s(total),
        }
        try:
            os.write(fd, (json.dumps(line) + "\n").encode())
        except BlockingIOError:
            pass  # the reader is behind; the next line supersedes this one
        except OSError:
            fd = None


def _measured_s(total: Any) -> float:
    """Seconds from the first request to the last one so far: the final req/s's span."""
    first, last = total.start_time, total.last_request_timestamp
    return max(0.0, float(last - first)) if first and last else 0.0


def _exceptions(runner: Any) -> list[Any]:
    """Task errors with their type (``KeyError: 'missing_key'``), most frequent first."""
    if TASK_ERRORS:
        return [
            {"msg": key, "count": int(count), "traceback": str(tb)}
            for key, (count, tb) in TASK_ERRORS.items()
        ]
    return [
        {
            "msg": str(row["msg"]),
            "count": int(row["count"]),
            "traceback": str(row["traceback"])[-2000:],
        }
        for row in runner.exceptions.values()
    ]


def _drivers() -> list[Any]:
    own = [SAMPLER[0].export()] if SAMPLER else []
    return [*own, *DRIVERS.values()]


@_on(events.quit)
def _on_quit(exit_code: int, **_: Any) -> None:
    environment = STATE.get("env")
    out = CONFIG.get("result")
    if environment is None or not out or isinstance(environment.runner, WorkerRunner):
        return
    stats = environment.stats
    entries: list[RawEntry] = []
    for entry in [*stats.entries.values(), stats.total]:
        entries.append(
            {
                "method": entry.method,
                "name": entry.name,
                "requests": entry.num_requests,
                "failures": entry.num_failures,
                "min_ms": entry.min_response_time,
                "max_ms": entry.max_response_time,
                "avg_ms": entry.avg_response_time,
                "bytes": entry.total_content_length,
                "first_request": entry.start_time,
                "last_request": entry.last_request_timestamp,
                "locust_p50_ms": entry.get_response_time_percentile(0.5),
                "locust_p95_ms": entry.get_response_time_percentile(0.95),
                "locust_p99_ms": entry.get_response_time_percentile(0.99),
            }
        )
    errors: list[RawError] = [
        {"method": e.method, "name": e.name, "error": str(e.error), "count": e.occurrences}
        for e in stats.errors.values()
    ]
    runner = environment.runner
    raw: RawRun = {
        "locust_exit_code": exit_code,
        "stop_reason": STATE["stop_reason"],
        "foreign_url": STATE.get("foreign_url"),
        "exceptions": _exceptions(runner),
        "driver": _drivers(),
        "started": STATE["started"],
        "ended": time.time(),
        "runner": "master" if isinstance(runner, MasterRunner) else "local",
        "workers": STATE["workers"],
        "entries": entries,
        "errors": errors,
        "hdr": RECORDER.export(),
    }
    tmp = f"{out}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(raw, f)
    os.replace(tmp, out)


# Before Locust imports the locustfile (the next -f): nothing it does connects elsewhere.
_pin_connections()
