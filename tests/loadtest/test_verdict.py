"""The verdict from recorded figures: exact percentiles, SLO margins, regressions against a baseline.

The raw input is what the Locust plugin writes (real HdrHistograms, encoded
the same way); the live runs in test_loadtest_live.py cover the plugin itself.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ops.loadtest import hdr
from ops.loadtest.scenario import Scenario
from ops.loadtest.verdict import build_result, compare, extra_percentiles, judge


def _scenario(slo: dict[str, list[str]] | None = None) -> Scenario:
    data: dict[str, Any] = {"locustfile": "x.py", "users": 4, "duration": "10s", "slo": slo or {}}
    return Scenario.model_validate(data)


def _raw(
    latencies_ms: dict[str, list[float]],
    failures: dict[str, int] | None = None,
    seconds: float = 10.0,
) -> dict[str, Any]:
    failures = failures or {}
    entries, hists = [], {}
    total_n = 0
    for key, values in latencies_ms.items():
        method, name = key.split(" ", 1)
        h = hdr.new()
        for v in values:
            h.record_value(int(v * 1000))
        hists[key] = [h.encode().decode(), None]
        entries.append(
            {
                "method": method,
                "name": name,
                "requests": len(values),
                "failures": failures.get(key, 0),
                "bytes": 0,
            }
        )
        total_n += len(values)
    entries.append(
        {
            "method": "",
            "name": "Aggregated",
            "requests": total_n,
            "failures": sum(failures.values()),
            "bytes": 0,
            "first_request": 1000.0,
            "last_request": 1000.0 + seconds,
        }
    )
    return {
        "entries": entries,
        "hdr": hists,
        "started": 1000.0,
        "ended": 1000.0 + seconds,
        "errors": [],
    }


def _result(raw: dict[str, Any], scenario: Scenario) -> dict[str, Any]:
    return build_result(
        raw, name="t", scenario=scenario, host="http://127.0.0.1:1", processes=2, mode="local"
    )


def test_percentiles_are_exact_to_the_histograms_precision() -> None:
    values = [float(i) for i in range(1, 1001)]  # 1..1000 ms, uniform
    result = _result(_raw({"GET /a": values}), _scenario())
    lat = result["endpoints"]["GET /a"]["latency_ms"]
    for q, expected in (
        ("p50", 500.0),
        ("p95", 950.0),
        ("p99", 990.0),
        ("p99.9", 999.0),
        ("max", 1000.0),
    ):
        assert lat[q] == pytest.approx(expected, rel=1e-3), q
    assert result["overall"]["rps"] == 100.0 and result["hdr_counts_match"] is True


def test_overall_merges_endpoint_histograms_not_their_percentiles() -> None:
    # Averaging per-endpoint p99s (what a naive merge does) would give ~505 ms.
    raw = _raw({"GET /fast": [1.0] * 990, "GET /slow": [1000.0] * 10})
    result = _result(raw, _scenario())
    assert result["overall"]["latency_ms"]["p99"] == pytest.approx(1.0, rel=1e-3)
    assert result["overall"]["latency_ms"]["p99.9"] == pytest.approx(1000.0, rel=1e-3)


def test_slos_report_actual_and_margin() -> None:
    sc = _scenario(
        {"overall": ["p(95) < 300ms", "error_rate < 1%", "rps >= 50"], "GET /a": ["p(75) < 200ms"]}
    )
    raw = _raw({"GET /a": [float(i) for i in range(1, 401)]}, failures={"GET /a": 8}, seconds=10.0)
    result = _result(raw, sc)
    extra_percentiles(result, raw, sc)
    rows = {(r["target"], r["metric"]): r for r in judge(result, sc)}
    assert rows[("overall", "p95")]["pass"] is False
    assert rows[("overall", "p95")]["margin"] == pytest.approx(300.0 - 380.0, rel=1e-2)
    assert (
        rows[("overall", "error_rate")]["pass"] is False
        and rows[("overall", "error_rate")]["actual"] == 0.02
    )
    assert rows[("overall", "rps")]["pass"] is False and rows[("overall", "rps")]["margin"] == -10.0
    assert rows[("GET /a", "p75")]["actual"] == pytest.approx(300.0, rel=1e-2)


def test_an_slo_on_an_endpoint_without_requests_fails_with_a_note() -> None:
    sc = Scenario.model_validate(
        {"locustfile": "x.py", "users": 1, "duration": "1s", "slo": {"GET /b": ["p(95) < 1s"]}}
    )
    (row,) = judge(_result(_raw({"GET /a": [1.0]}), sc), sc)
    assert (
        row["pass"] is False
        and row["actual"] is None
        and "no requests recorded for 'GET /b'" in row["note"]
    )


def _base() -> dict[str, Any]:
    values = [10.0 + (i % 50) for i in range(2000)]
    return _result(_raw({"GET /a": values}), _scenario())


def test_a_run_is_no_regression_of_itself() -> None:
    base = _base()
    assert compare(copy.deepcopy(base), base, 0.10) == []


def test_latency_beyond_tolerance_is_a_regression_within_is_not() -> None:
    base = _base()
    worse = copy.deepcopy(base)
    worse["endpoints"]["GET /a"]["latency_ms"]["p95"] *= 1.15
    ok = copy.deepcopy(base)
    ok["endpoints"]["GET /a"]["latency_ms"]["p95"] *= 1.05
    (row,) = compare(worse, base, 0.10)
    assert (row["target"], row["metric"]) == ("GET /a", "p95") and row[
        "change_pct"
    ] == pytest.approx(15.0, abs=0.1)
    assert compare(ok, base, 0.10) == []


def test_sub_millisecond_changes_are_noise() -> None:
    base = _base()
    for fig in (base["overall"], base["endpoints"]["GET /a"]):
        fig["latency_ms"]["p50"] = 0.4
    new = copy.deepcopy(base)
    for fig in (new["overall"], new["endpoints"]["GET /a"]):
        fig["latency_ms"]["p50"] = 1.1  # +175%, but 0.7 ms
    assert compare(new, base, 0.10) == []


def test_error_rate_and_throughput_regressions() -> None:
    base = _base()
    new = copy.deepcopy(base)
    new["overall"]["error_rate"] = 0.02
    new["overall"]["rps"] = base["overall"]["rps"] * 0.8
    flagged = {(r["target"], r["metric"]) for r in compare(new, base, 0.10)}
    assert flagged == {("overall", "error_rate"), ("overall", "rps")}


def test_latency_from_intended_start_is_compared_when_both_runs_have_it() -> None:
    base = _base()
    for b in (base["overall"],):
        b["latency_from_intended_ms"] = dict(b["latency_ms"])
    new = copy.deepcopy(base)
    new["overall"]["latency_from_intended_ms"]["p99"] *= 3
    (row,) = compare(new, base, 0.10)
    assert row["metric"] == "p99 (intended)"
