"""Findings across runs: what one run's rates say, and what a quiet cron run reports
when a finding starts, worsens, repeats, resolves or its container goes away.

``judge`` and ``track`` are pure, so the runs here are rates dicts as
``ops.report.rates`` makes them and the clock is a number the test moves; the
state goes through a real history file (``History.update_findings``), as cron's
does. The real containers behind these figures are in test_report_cli.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ops.report.findings import (
    MEMORY_CLEAR_PCT,
    REPEAT_INTERVAL_S,
    RESOLVE_AFTER_S,
    Judgement,
    anomaly_finding,
    event_line,
    judge,
    track,
)
from ops.report.history import FindingEvent, History

MiB = 1024**2
T0 = 1_800_000_000.0


def _container(name: str = "agent-1", **figures: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": name * 4,
        "name": name,
        "state": "running",
        "exit_code": 0,
        "memory_limit_bytes": 64 * MiB,
        "mem_usage": 10 * MiB,
        "mem_pct_of_limit": 15.6,
        "throttled_ratio": 0.0,
        "restarts": 0,
        "oom_kills": 0,
    }
    base.update(figures)
    return base


def _rates(*containers: dict[str, Any]) -> dict[str, Any]:
    return {"containers": list(containers)}


class Cron:
    """Runs of ``judge`` + ``track`` against one history file, at times the test sets."""

    def __init__(self, path: Path, **options: Any) -> None:
        self.path, self.options = path, options

    def run(self, now: float, rates: dict[str, Any], *, sampled: bool = True) -> list[FindingEvent]:
        judged = judge(rates, containers_sampled=sampled)
        with History(self.path) as history:
            return history.update_findings(
                "vm1", lambda states: track(states, judged, now, **self.options)[:2]
            )

    def open(self) -> dict[str, Any]:
        with History(self.path, readonly=True) as history:
            return history.finding_states("vm1")


@pytest.fixture
def cron(tmp_path: Path) -> Cron:
    return Cron(tmp_path / "h.sqlite3")


def _said(events: list[FindingEvent]) -> list[tuple[str, str, str]]:
    return [(e.scope, e.key.rsplit("/", 1)[-1], e.state) for e in events]


@pytest.mark.slow
def test_a_container_at_its_memory_limit_is_said_once_not_every_minute(cron: Cron) -> None:
    at_93 = _rates(_container(mem_pct_of_limit=93.0, mem_usage=int(59.5 * MiB)))
    first = cron.run(T0, at_93)
    assert _said(first) == [("agent-1", "memory", "new")]
    assert event_line(first[0]) == (
        "over-limit agent-1: memory at 93% of its limit (59.5M of 64M) (new)"
    )
    # A day of per-minute runs at the same figure: said again only every 4 hours.
    said = [cron.run(T0 + 60 * m, at_93) for m in range(1, 24 * 60)]
    repeats = [m + 1 for m, events in enumerate(said) if events]
    assert repeats == [240, 480, 720, 960, 1200]
    assert all(e.state == "repeat" for s in said for e in s)
    assert event_line(said[239][0]).endswith("(still)")


def test_worse_then_hysteresis_then_resolved(cron: Cron) -> None:
    def at(pct: float) -> dict[str, Any]:
        return _rates(_container(mem_pct_of_limit=pct))

    assert _said(cron.run(T0, at(91))) == [("agent-1", "memory", "new")]
    assert _said(cron.run(T0 + 60, at(96))) == [("agent-1", "memory", "worse")]
    assert cron.run(T0 + 120, at(91)) == []  # better, still over: no news
    assert cron.run(T0 + 180, at(96)) == []  # back to the peak it was said at: no news
    assert cron.run(T0 + 240, at(99.5)) != []  # a new peak is
    # Between the clear threshold and the finding's: held, not resolved (no flapping).
    assert cron.run(T0 + 300, at(MEMORY_CLEAR_PCT + 2)) == []
    assert "over-limit/agent-1/memory" in cron.open()
    resolved = cron.run(T0 + 360, at(40))
    assert _said(resolved) == [("agent-1", "memory", "resolved")]
    assert event_line(resolved[0]).startswith("over-limit agent-1: resolved after 6 min (was: ")
    assert cron.open() == {}
    assert cron.run(T0 + 420, at(40)) == []


def test_an_oom_crash_loop_is_new_then_worse_at_ten_then_resolves_when_quiet(cron: Cron) -> None:
    looping = _rates(_container(oom_kills=1, restarts=1, state="restarting"))
    said = [cron.run(T0 + 60 * i, looping) for i in range(12)]
    states = [e.state for events in said for e in events if e.kind == "over-limit"]
    assert states == ["new", "worse"]  # 1 kill, then the tenth
    assert [e.state for events in said for e in events if e.kind == "restart"] == ["new", "worse"]
    assert next(e for e in said[0] if e.kind == "over-limit").message == (
        "OOM-killed once since the last sample, restarted once; now restarting (memory limit 64M)"
    )
    assert all("; 10 in the last 9 min" in e.message for e in said[9])
    quiet = _rates(_container())
    assert cron.run(T0 + 60 * 12, quiet) == []  # one quiet minute is not the end of a loop
    assert cron.run(T0 + 60 * 11 + RESOLVE_AFTER_S - 1, quiet) == []
    done = cron.run(T0 + 60 * 11 + RESOLVE_AFTER_S, quiet)
    assert [(e.kind, e.state) for e in done] == [
        ("over-limit", "resolved"),
        ("restart", "resolved"),
    ]
    assert "(was: OOM-killed" in done[0].message


def test_restarts_without_oom_are_their_own_kind(cron: Cron) -> None:
    (restart,) = cron.run(T0, _rates(_container(restarts=3, exit_code=1, state="exited")))
    assert (restart.kind, restart.state) == ("restart", "new")
    assert restart.message == "restarted 3 times since the last sample (exit code 1); now exited"


def test_a_gone_container_resolves_only_when_the_engine_was_asked(cron: Cron) -> None:
    cron.run(T0, _rates(_container(mem_pct_of_limit=95.0)))
    assert cron.run(T0 + 60, _rates(), sampled=False) == []  # --no-docker: cannot know
    assert cron.open()
    (gone,) = cron.run(T0 + 120, _rates())
    assert gone.state == "resolved" and gone.message.startswith("the container is gone after")


def test_unknown_figures_hold_a_finding(cron: Cron) -> None:
    cron.run(T0, _rates(_container(throttled_ratio=0.6)))
    # No stats this run (restarting, cgroup unreadable): not a resolution.
    assert cron.run(T0 + 60, _rates(_container(throttled_ratio=None))) == []
    assert cron.run(T0 + 120, _rates(_container(throttled_ratio=0.2))) == []  # in the band
    assert _said(cron.run(T0 + 180, _rates(_container(throttled_ratio=0.05)))) == [
        ("agent-1", "throttling", "resolved")
    ]


def test_a_clock_step_back_repeats_once_rather_never(cron: Cron) -> None:
    hot = _rates(_container(mem_pct_of_limit=95.0))
    cron.run(T0, hot)
    stepped = T0 - REPEAT_INTERVAL_S - 60  # the clock went back by more than the interval
    assert [e.state for e in cron.run(stepped, hot)] == ["repeat"]
    assert cron.run(stepped + 60, hot) == []


def test_track_without_state_says_everything_new() -> None:
    judged = judge(_rates(_container(mem_pct_of_limit=95.0), _container("b", oom_kills=2)))
    _, events, findings = track({}, judged, T0)
    assert [f.state for f in findings] == ["new", "new"] and all(f.notify for f in findings)
    assert [e.scope for e in events] == ["agent-1", "b"]


def test_anomaly_messages_use_human_units() -> None:
    memory = anomaly_finding("agent-1", "mem_usage", 1.2 * 1024**3, 300 * MiB, 14.2)
    assert memory.message == "memory 1.2G is up from its usual 300M (robust z 14)"
    cpu = anomaly_finding("host", "cpu_pct", 87.5, 12.25, 9)
    assert cpu.message == "CPU 87.5% is up from its usual 12.2% (robust z 9)"
    assert "e+" not in memory.message


def test_anomaly_episodes_resolve_after_a_quiet_spell(tmp_path: Path) -> None:
    cron = Cron(tmp_path / "h.sqlite3")

    def run(now: float, firing: bool) -> list[FindingEvent]:
        found = [anomaly_finding("host", "cpu_pct", 90, 10, 12)] if firing else []
        judged = Judgement(found, frozenset({"anomaly/host/cpu_pct"}), None)
        with History(cron.path) as history:
            return history.update_findings("vm1", lambda s: track(s, judged, now)[:2])

    assert [e.state for e in run(T0, True)] == ["new"]
    assert run(T0 + 60, True) == []
    assert run(T0 + 120, False) == []
    assert [e.state for e in run(T0 + 60 + RESOLVE_AFTER_S, False)] == ["resolved"]


def test_an_open_finding_is_a_finding_of_every_run_until_it_resolves() -> None:
    """The exit status under --fail-on holds while an episode is open (a crash loop
    between two kills), even when this run saw nothing new."""
    loop = judge(_rates(_container(oom_kills=1, restarts=1)))
    states, _, _ = track({}, loop, T0)
    quiet = judge(_rates(_container()))
    states, events, findings = track(states, quiet, T0 + 60)
    assert events == []
    (f,) = [f for f in findings if f.kind == "over-limit"]
    assert (f.kind, f.check, f.state, f.notify) == ("over-limit", "oom", "ongoing", False)
    assert f.message.endswith(" (last seen 2027-01-15 08:00 UTC)")
    _, _, later = track(states, quiet, T0 + 60 + RESOLVE_AFTER_S)
    assert later == []


def test_only_a_run_that_reports_a_kind_moves_what_was_said(cron: Cron, tmp_path: Path) -> None:
    """An operator's look at cron's history (or `serve --db`) must not swallow cron's
    news: a finding first seen by such a run is still "new" to cron, and one that
    resolves in between is still said resolved by cron's next run."""
    cron_says = Cron(cron.path, says=frozenset({"over-limit"}))
    operator = Cron(cron.path, says=frozenset())
    hot = _rates(_container(mem_pct_of_limit=95.0))
    assert operator.run(T0, hot) == []  # seen, not said
    assert _said(cron_says.run(T0 + 60, hot)) == [("agent-1", "memory", "new")]
    assert operator.run(T0 + 120, _rates(_container(mem_pct_of_limit=40.0))) == []
    assert "over-limit/agent-1/memory" not in operator.open()  # resolved, to be said
    assert _said(cron_says.run(T0 + 180, _rates(_container()))) == [
        ("agent-1", "memory", "resolved")
    ]
    # Seen and gone while cron was not looking: nothing to take back.
    operator.run(T0 + 240, hot)
    operator.run(T0 + 300, _rates(_container()))
    assert cron_says.run(T0 + 360, _rates(_container())) == []


def test_an_oom_crash_loop_is_a_restart_finding_too() -> None:
    """`--fail-on restart` sees every restart, OOM or not; an OOM kill never clears one."""
    judged = judge(_rates(_container(oom_kills=1, restarts=2, state="restarting", exit_code=137)))
    checks = {(f.kind, f.check): f.message for f in judged.findings}
    assert checks[("restart", "restarts")] == (
        "restarted 2 times since the last sample (OOM-killed); now restarting"
    )
    assert "restart/agent-1/restarts" not in judged.clear


def test_the_exit_code_is_said_only_while_the_engine_still_has_it() -> None:
    """A container running again shows State.ExitCode 0, not its last exit's code."""
    running = judge(_rates(_container(restarts=1, exit_code=0, state="running")))
    assert running.findings[0].message == "restarted once since the last sample"
    waiting = judge(_rates(_container(restarts=1, exit_code=3, state="restarting")))
    assert waiting.findings[0].message == (
        "restarted once since the last sample (exit code 3); now restarting"
    )


def test_an_astronomical_score_is_not_printed() -> None:
    flat = anomaly_finding("agent-1", "cpu_pct", 90.9, 0.0, 9.086e10)
    assert flat.message == "CPU 90.9% is up from its usual 0.0% (robust z > 1000)"
