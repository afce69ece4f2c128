"""scenarios.yaml validation and k6-style thresholds: one line with file, line and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ops.errors import SpecError
from ops.loadtest.scenario import load_scenarios, parse_rate, parse_scenarios, parse_threshold
from tests.support.cli import Cli

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "loadtests" / "scenarios.yaml"

LOCUSTFILE = """\
from locust import task
from ops.loadtest.users import VotsUser


class Fast(VotsUser):
    @task
    def fast(self):
        self.client.get("/fast")
"""

GOOD = """\
scenarios:
  smoke:
    locustfile: users.py
    user_classes: [Fast]
    users: 5
    duration: 10s
    slo:
      overall: ["p(95) < 300ms", "error_rate < 1%"]
      GET /fast: ["p99 < 1s", "rps >= 10"]
"""


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "users.py").write_text(LOCUSTFILE)
    path = tmp_path / "scenarios.yaml"
    path.write_text(text)
    return path


def _error(tmp_path: Path, text: str) -> SpecError:
    path = _write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_scenarios(path)
    return info.value


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_bundled_scenarios_are_valid_and_name_real_classes() -> None:
    loaded = load_scenarios(BUNDLED)
    assert {"smoke", "slo", "health"} <= set(loaded.file.scenarios)
    slo = loaded.get("slo")
    assert slo.arrival_rate == 40.0
    assert {"overall", "POST /api/v1/analyze_code", "GET /api/v1/search"} <= set(slo.slo)
    for name in loaded.file.scenarios:
        assert loaded.locustfile(name).is_file()


def test_thresholds_parse_like_k6() -> None:
    cases = {
        "p(95) < 300ms": ("p95", "<", 300.0),
        "p99<1s": ("p99", "<", 1000.0),
        "p(99.9) <= 1.5s": ("p99.9", "<=", 1500.0),
        "med < 20": ("p50", "<", 20.0),
        "avg < 50ms": ("avg", "<", 50.0),
        "max < 2s": ("max", "<", 2000.0),
        "error_rate < 1%": ("error_rate", "<", 0.01),
        "errors < 0.005": ("error_rate", "<", 0.005),
        "rps >= 40": ("rps", ">=", 40.0),
        "rps > 40/s": ("rps", ">", 40.0),
    }
    for text, (metric, op, value) in cases.items():
        th = parse_threshold(text)
        assert (th.metric, th.op, th.value) == (metric, op, pytest.approx(value)), text


@pytest.mark.parametrize(
    "text",
    [
        "p95 300ms",
        "p(95) < 300 apples",
        "error_rate < 5ms",
        "p(95) < 3%",
        "rps < 2s",
        "p(0) < 1s",
        "",
        95,
    ],
)
def test_bad_thresholds_are_refused(text: object) -> None:
    with pytest.raises(
        ValueError,
        match=r"expected a threshold|makes no sense|error rate|latency is|request rate|percentile",
    ):
        parse_threshold(text)


def test_threshold_margin_and_verdict() -> None:
    th = parse_threshold("p(95) < 300ms")
    assert th.holds(250.0) and th.margin(250.0) == 50.0
    assert not th.holds(300.0) and th.margin(320.0) == -20.0
    rps = parse_threshold("rps >= 40")
    assert rps.holds(40.0) and rps.margin(45.0) == 5.0 and rps.margin(30.0) == -10.0


@pytest.mark.parametrize(
    ("old", "new", "needle", "key", "message"),
    [
        (
            '"p(95) < 300ms", "error_rate < 1%"',
            '"p(95) < 300ms", "errors < 7 apples"',
            "overall:",
            "scenarios.smoke.slo.overall[1]",
            "expected a threshold",
        ),
        (
            "users: 5",
            "users: 50000",
            "users:",
            "scenarios.smoke.users",
            "less than or equal to 10000",
        ),
        ("users: 5", "users: 0", "users:", "scenarios.smoke.users", "greater than or equal to 1"),
        ("duration: 10s", "duration: 5h", "duration:", "scenarios.smoke.duration", "at most 3h"),
        (
            "duration: 10s",
            "duration: ten",
            "duration:",
            "scenarios.smoke.duration",
            "expected a duration",
        ),
        (
            "user_classes: [Fast]",
            "user_classes: [Fastt]",
            "user_classes:",
            "scenarios.smoke.user_classes[0]",
            "did you mean 'Fast'",
        ),
        (
            "locustfile: users.py",
            "locustfile: missing.py",
            "locustfile:",
            "scenarios.smoke.locustfile",
            "cannot read",
        ),
        (
            "locustfile: users.py",
            "locustfile: ../x.py",
            "locustfile:",
            "scenarios.smoke.locustfile",
            "next to scenarios.yaml",
        ),
        (
            "users: 5",
            "users: 5\n    userz: 3",
            "userz:",
            "scenarios.smoke.userz",
            "did you mean 'users'",
        ),
        ("GET /fast:", "/fast:", "/fast:", "scenarios.smoke.slo./fast", "'METHOD name'"),
        (
            "users: 5",
            "users: 5\n    arrival_rate: fast",
            "arrival_rate:",
            "scenarios.smoke.arrival_rate",
            "expected a rate",
        ),
        ("users: 5", "users: 5\n    host: ftp://x", "host:", "scenarios.smoke.host", "base URL"),
        (
            "duration: 10s",
            "duraton: 10s",
            "duraton:",
            "scenarios.smoke.duraton",
            "did you mean 'duration'",
        ),
        (
            "users: 5",
            "users: 5\n    spawn_rate: 0",
            "spawn_rate:",
            "scenarios.smoke.spawn_rate",
            "greater than 0",
        ),
        (
            "users: 5",
            "users: 5\n    max_requests: true",
            "max_requests:",
            "scenarios.smoke.max_requests",
            "valid integer",
        ),
    ],
)
def test_bad_input_is_one_line_with_line_and_key(
    tmp_path: Path, old: str, new: str, needle: str, key: str, message: str
) -> None:
    text = GOOD.replace(old, new)
    assert text != GOOD
    err = _error(tmp_path, text)
    assert err.key == key, str(err)
    assert message in str(err), str(err)
    assert err.line == _line_of(text, needle), str(err)
    assert "\n" not in str(err)
    assert str(err).startswith(f"{tmp_path / 'scenarios.yaml'}:{err.line}: {key}: ")


def test_duplicate_scenario_is_an_error(tmp_path: Path) -> None:
    text = GOOD + GOOD.split("\n", 1)[1]
    err = _error(tmp_path, text)
    assert "duplicate key 'smoke'" in str(err)
    assert err.line == 10


def test_locustfile_syntax_error_names_both_files(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    (tmp_path / "users.py").write_text("class Fast(:\n")
    with pytest.raises(SpecError, match=r"users.py:1: .*syntax"):
        load_scenarios(path)


def test_unknown_scenario_suggests_a_name(tmp_path: Path) -> None:
    loaded = parse_scenarios(GOOD, _write(tmp_path, GOOD))
    with pytest.raises(SpecError, match="did you mean 'smoke'"):
        loaded.get("smok")


def test_cli_bad_scenarios_file_exits_2_with_one_line(cli: Cli, tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("users: 5", "users: many"))
    proc = cli.run(
        "loadtest", "smoke", "--scenarios", str(path), "--host", "http://127.0.0.1:9", timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"scenarios.yaml:{_line_of(GOOD, 'users:')}: scenarios.smoke.users:" in lines[0]
    assert proc.stdout == ""


def test_scenarios_must_not_be_empty(tmp_path: Path) -> None:
    err = _error(tmp_path, "scenarios: {}\n")
    assert err.key == "scenarios" and "at least 1 item" in str(err)


HUGE = "9" * 5000


@pytest.mark.parametrize(
    "text",
    [
        f"p(95) < {HUGE}ms",
        f"rps >= {HUGE}",
        "p(95) < " + "9" * 25 + "ms",
        "p(95) < \u0663\u0660\u0660ms",
        "p(\u0669\u0665) < 300ms",
        "rps >= \uff15\uff10",
    ],
    ids=[
        "huge-latency",
        "huge-rate",
        "25-digits",
        "arabic-indic",
        "arabic-percentile",
        "fullwidth",
    ],
)
def test_thresholds_read_short_ascii_numbers_only(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_threshold(text)
    message = str(info.value)
    assert "\n" not in message and len(message) < 200, message


def test_a_long_threshold_number_is_refused_at_load_with_line_and_key(tmp_path: Path) -> None:
    text = GOOD.replace('"rps >= 10"', f'"p(95) < {HUGE}ms"')
    err = _error(tmp_path, text)
    assert err.key is not None and err.key.startswith("scenarios.smoke.slo"), str(err)
    assert err.line == _line_of(text, "GET /fast"), str(err)
    assert "\n" not in str(err) and len(str(err)) < 400, str(err)


@pytest.mark.parametrize(
    "value",
    ["\u0661\u0660/s", "1\u0660/m", 10**5000, "9" * 5000 + "/s"],
    ids=["arabic-indic", "mixed", "huge-int", "huge-text"],
)
def test_rates_read_ascii_digits_and_refuse_huge_numbers(value: object) -> None:
    with pytest.raises(ValueError) as info:
        parse_rate(value)
    assert len(str(info.value)) < 200


def test_cli_json_never_carries_infinity_from_a_threshold(cli: Cli, tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace('"rps >= 10"', f'"p(95) < {HUGE}ms"'))
    proc = cli.run("loadtest", "--list", "--scenarios", str(path), "--format", "json", timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Infinity" not in proc.stdout and proc.stdout == ""


@pytest.mark.parametrize(
    ("text", "meant"),
    [("error_rate < 1", "1%"), ("errors <= 5", "5%"), ("error_rate < 1.0", "1.0%")],
)
def test_an_error_rate_fraction_of_1_or_more_asks_for_a_percentage(text: str, meant: str) -> None:
    """``error_rate < 1`` as the fraction 1.0 would pass a run with 8.8% errors."""
    with pytest.raises(ValueError, match=rf"did you mean {re.escape(meant)}\?"):
        parse_threshold(text)
    assert parse_threshold("error_rate < 0.99").value == pytest.approx(0.99)
    assert parse_threshold("error_rate < 1%").value == pytest.approx(0.01)


def test_an_error_rate_fraction_of_1_is_refused_at_load_with_line_and_key(tmp_path: Path) -> None:
    text = GOOD.replace('"error_rate < 1%"', '"error_rate < 1"')
    assert text != GOOD
    err = _error(tmp_path, text)
    assert err.key is not None and err.key.startswith("scenarios.smoke.slo"), str(err)
    assert "did you mean 1%?" in str(err) and "\n" not in str(err), str(err)
