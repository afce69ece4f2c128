"""From Locust's raw figures to the result a pipeline acts on: exact percentiles, SLOs, regressions.

The result is a plain dict with a stable, versioned schema (``SCHEMA``,
documented in the README). Latency objectives are judged on exact percentiles
from the HdrHistograms; with an arrival rate, on latency from each request's
intended start (what a user waiting in line sees), otherwise on service time.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

from ops.errors import SpecError
from ops.loadtest import driver, hdr
from ops.loadtest.result import (
    Driver,
    ErrorRow,
    ExceptionRow,
    Figures,
    Latency,
    LoadtestResult,
    RawEntry,
    RawRun,
    Regression,
    SloRow,
)
from ops.loadtest.scenario import OVERALL, Scenario, Threshold

if TYPE_CHECKING:
    from ops.loadtest.hdr import Histogram

SCHEMA = "vots-ops/loadtest-result/1"
REGRESSION_METRICS = ("p50", "p95", "p99")
LATENCY_NOISE_MS = 1.0  # a change smaller than this is never a regression
ERROR_RATE_NOISE = 0.001  # 0.1 percentage points


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else None


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _figures(
    requests: int,
    failures: int,
    seconds: float,
    nbytes: int,
    svc: Histogram,
    intended: Histogram | None,
    locust: RawEntry,
) -> Figures:
    latency: Latency = {k: _round(v) for k, v in hdr.summary(svc).items()}
    return {
        "requests": requests,
        "failures": failures,
        "error_rate": _round(failures / requests if requests else 0.0, 6),
        "rps": _round(requests / seconds if seconds > 0 else 0.0, 2),
        "bytes": nbytes,
        "latency_ms": latency,
        "latency_from_intended_ms": (
            {k: _round(v) for k, v in hdr.summary(intended).items()}
            if intended is not None
            else None
        ),
        "locust_latency_ms": {
            "p50": locust.get("locust_p50_ms"),
            "p95": locust.get("locust_p95_ms"),
            "p99": locust.get("locust_p99_ms"),
        },
    }


def _hists(raw: RawRun) -> dict[str, tuple[Histogram, Histogram | None]]:
    return {
        k: (hdr.decode(v[0]), hdr.decode(v[1]) if v[1] else None)
        for k, v in raw.get("hdr", {}).items()
    }


def build_result(
    raw: RawRun,
    *,
    name: str,
    scenario: Scenario,
    host: str,
    processes: int,
    mode: str,
    interrupted: bool = False,
) -> LoadtestResult:
    """The result document (without verdict) from the plugin's raw file."""
    arrival = scenario.arrival_rate is not None
    entries = raw.get("entries", [])
    by_key = {f"{e.get('method')} {e.get('name')}": e for e in entries if e.get("method")}
    total = next((e for e in entries if not e.get("method")), RawEntry())
    seconds = 0.0
    last, first = total.get("last_request"), total.get("first_request")
    if last and first:
        seconds = max(0.0, last - first)
    hists = _hists(raw)
    endpoints: dict[str, Figures] = {}
    all_svc, all_int = hdr.new(), hdr.new() if arrival else None
    for key in sorted(set(by_key) | set(hists)):
        entry = by_key.get(key) or RawEntry()
        svc, intended = hists.get(key, (hdr.new(), None))
        if arrival and intended is None:
            intended = hdr.new()
        all_svc.add(svc)
        if all_int is not None and intended is not None:
            all_int.add(intended)
        endpoints[key] = _figures(
            entry.get("requests", 0),
            entry.get("failures", 0),
            seconds,
            entry.get("bytes", 0),
            svc,
            intended,
            entry,
        )
    overall = _figures(
        total.get("requests", 0),
        total.get("failures", 0),
        seconds,
        total.get("bytes", 0),
        all_svc,
        all_int,
        total,
    )
    errors: list[ErrorRow] = [
        {"endpoint": f"{e['method']} {e['name']}", "error": e["error"], "count": e["count"]}
        for e in sorted(raw.get("errors", []), key=lambda e: -e["count"])
    ]
    exceptions: list[ExceptionRow] = [
        {"msg": e["msg"], "count": e["count"]}
        for e in sorted(raw.get("exceptions", []), key=lambda e: -e["count"])
    ]
    return {
        "schema": SCHEMA,
        "scenario": name,
        "host": host,
        "started": _iso(raw.get("started")),
        "ended": _iso(raw.get("ended")),
        "measured_s": round(seconds, 3),
        "planned": {
            "users": scenario.users,
            "spawn_rate": scenario.effective_spawn_rate,
            "duration_s": scenario.duration,
            "arrival_rate": scenario.arrival_rate,
            "max_requests": scenario.max_requests,
            "processes": processes,
            "mode": mode,
            "workers": raw.get("workers", 0),
        },
        "stop_reason": "interrupted" if interrupted else raw.get("stop_reason", "duration"),
        "latency_basis": "intended" if arrival else "service",
        "endpoints": endpoints,
        "overall": overall,
        "errors": errors,
        "exceptions": exceptions,
        "hdr_counts_match": all_svc.get_total_count() == total.get("requests", 0),
        "driver_saturated": saturated(raw),
        "driver": _driver(raw),
    }


def saturated(raw: RawRun) -> bool:
    """A process generating the load sat at a full core (``ops.loadtest.driver``)."""
    return any(p.get("saturated") for p in raw.get("driver", []))


def _driver(raw: RawRun) -> Driver:
    procs = raw.get("driver", [])
    busy = [b for b in (p.get("machine_busy") for p in procs) if b is not None]
    return {
        "processes": procs,
        "machine_busy": max(busy) if busy else None,
        "cores": os.cpu_count() or 1,
        "threshold": driver.SATURATED,
        "wait_threshold": driver.WAITING,
    }


def _actual(figures: Figures, th: Threshold, basis: str) -> float | None:
    if figures["requests"] == 0:
        return None
    if th.metric == "error_rate":
        return figures["error_rate"]
    if th.metric == "rps":
        return figures["rps"]
    lat = figures["latency_from_intended_ms"] if basis == "intended" else figures["latency_ms"]
    key = th.metric
    if lat is None or lat.get(key) is None:  # a percentile outside the summary set, e.g. p(75)
        return None
    return lat[key]


def judge(result: LoadtestResult, scenario: Scenario) -> list[SloRow]:
    """Each SLO with its actual figure, pass/fail and margin (positive = inside the objective)."""
    out: list[SloRow] = []
    basis = result["latency_basis"]
    for target, thresholds in scenario.slo.items():
        figures = result["overall"] if target == OVERALL else result["endpoints"].get(target)
        for th in thresholds:
            actual = _actual(figures, th, basis) if figures is not None else None
            row: SloRow = {
                "target": target,
                "threshold": th.text,
                "metric": th.metric,
                "op": th.op,
                "value": th.value,
                "unit": th.unit,
                "actual": _round(actual, 6),
                "pass": actual is not None and th.holds(actual),
                "margin": _round(th.margin(actual), 6) if actual is not None else None,
            }
            if figures is None or figures["requests"] == 0:
                row["note"] = f"no requests recorded for {target!r}"
            elif result.get("driver_saturated"):
                row["note"] = f"driver saturated: {driver.ADVICE}"
            out.append(row)
    return out


def _percentiles_for(scenario: Scenario) -> set[str]:
    return {th.metric for ths in scenario.slo.values() for th in ths if th.metric.startswith("p")}


def extra_percentiles(result: LoadtestResult, raw: RawRun, scenario: Scenario) -> None:
    """Add percentiles an SLO names beyond the standard set (``p(75)``) to the figures it judges."""
    wanted = _percentiles_for(scenario) - {f"p{format(q, 'g')}" for q in hdr.PERCENTILES}
    if not wanted:
        return
    hists = _hists(raw)
    all_svc, all_int = hdr.new(), hdr.new()
    for key, (svc, intended) in hists.items():
        all_svc.add(svc)
        if intended is not None:
            all_int.add(intended)
        fig = result["endpoints"].get(key)
        if fig is None:
            continue
        for metric in wanted:
            fig["latency_ms"][metric] = _round(hdr.value_at(svc, metric))
            from_intended = fig["latency_from_intended_ms"]
            if from_intended is not None and intended is not None:
                from_intended[metric] = _round(hdr.value_at(intended, metric))
    overall = result["overall"]
    for metric in wanted:
        overall["latency_ms"][metric] = _round(hdr.value_at(all_svc, metric))
        intended_overall = overall["latency_from_intended_ms"]
        if intended_overall is not None:
            intended_overall[metric] = _round(hdr.value_at(all_int, metric))


def load_baseline(path: Path) -> LoadtestResult:
    """An earlier result file (or a run directory holding ``result.json``)."""
    target = path / "result.json" if path.is_dir() else path
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError("baseline not found", path=str(target)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read the baseline ({exc})", path=str(target)) from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"not JSON ({exc.msg})", path=str(target), line=exc.lineno) from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise SpecError(
            f"not a vots-ops loadtest result (schema {got!r}, expected {SCHEMA!r})",
            path=str(target),
        )
    return cast(LoadtestResult, data)


def compare(result: LoadtestResult, baseline: LoadtestResult, tolerance: float) -> list[Regression]:
    """Regressions beyond ``tolerance`` (0.10 = 10%) in latency, error rate or throughput.

    Latency is compared on the same basis in both runs (service time, and time
    from intended start when both runs had an arrival rate); tiny absolute
    changes (under 1 ms, under 0.1 percentage points of errors) are noise.
    """
    rows: list[Regression] = []
    targets: list[tuple[str, Figures, Figures | None]] = [
        (OVERALL, result["overall"], baseline.get("overall"))
    ]
    targets += [
        (k, v, baseline.get("endpoints", {}).get(k)) for k, v in result["endpoints"].items()
    ]
    for target, new, old in targets:
        if not old or not new["requests"] or not old.get("requests"):
            continue
        bases = ["latency_ms"]
        if new.get("latency_from_intended_ms") and old.get("latency_from_intended_ms"):
            bases.append("latency_from_intended_ms")
        for basis in bases:
            new_lat, old_lat = _latency(new, basis), _latency(old, basis)
            for metric in REGRESSION_METRICS:
                a, b = new_lat.get(metric), old_lat.get(metric)
                if a is None or b is None:
                    continue
                if a > b * (1 + tolerance) and a - b > LATENCY_NOISE_MS:
                    rows.append(
                        _row(
                            target,
                            f"{metric}{'' if basis == 'latency_ms' else ' (intended)'}",
                            b,
                            a,
                            "ms",
                            tolerance,
                        )
                    )
        a, b = new["error_rate"] or 0.0, old["error_rate"] or 0.0
        if a > b * (1 + tolerance) and a - b > ERROR_RATE_NOISE:
            rows.append(_row(target, "error_rate", b, a, "", tolerance))
        a, b = new["rps"] or 0.0, old["rps"] or 0.0
        if b and a < b * (1 - tolerance):
            rows.append(_row(target, "rps", b, a, "/s", tolerance))
    return rows


def _latency(figures: Figures, basis: str) -> Latency:
    found = figures["latency_ms"] if basis == "latency_ms" else figures["latency_from_intended_ms"]
    return found or {}


def _row(
    target: str, metric: str, base: float, actual: float, unit: str, tolerance: float
) -> Regression:
    change = (actual - base) / base * 100 if base else None
    return {
        "target": target,
        "metric": metric,
        "baseline": base,
        "actual": actual,
        "unit": unit,
        "change_pct": _round(change, 1),
        "tolerance_pct": round(tolerance * 100, 1),
    }
