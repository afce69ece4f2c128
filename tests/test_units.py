"""The one duration grammar: the same text means the same time in every command and file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ops.errors import SpecError
from ops.loadtest.scenario import parse_run_time
from ops.profile.recipe import parse_profile_duration
from ops.stack import duration_seconds, parse_duration, parse_stack
from ops.units import format_duration_spec, parse_duration_s
from tests.support.stacks import BUNDLED, minimal


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("2m", 120),
        ("2min", 120),
        ("1h", 3600),
        ("1d", 86400),
        ("1h30m", 5400),
        ("1d2h3m4s", 93784),
        ("500ms", 0.5),
        ("1.5h", 5400),
        ("8", 8),
        (" 8 ", 8),
        ("2.5", 2.5),
        (8, 8),
        (2.5, 2.5),
    ],
)
def test_the_grammar(text: str | float, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("inf", "expected a duration like"),
        ("nan", "expected a duration like"),
        (float("inf"), "expected a duration like"),
        (float("nan"), "expected a duration like"),
        ("-5", "cannot be negative"),
        ("-5s", "cannot be negative"),
        (-1, "cannot be negative"),
        ("0", "above zero"),
        ("0s", "above zero"),
        (0, "above zero"),
        ("11y", "expected a duration like"),
        ("3651d", "at most 10 years"),
        ("1" * 4000, "4000 characters"),
        (10**4000, "about 4000 digits"),
        pytest.param(10**5000, "about 5000 digits", id="int-of-5001-digits"),
        (True, "expected a duration like"),
        ("soon", "expected a duration like"),
        ("", "expected a duration like"),
        ("1h 30m", "expected a duration like"),
    ],
)
def test_refused_with_one_line(text: object, says: str) -> None:
    with pytest.raises(ValueError, match=says) as info:
        parse_duration_s(text)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message and len(message) < 200


def test_every_parser_accepts_a_bare_number_of_seconds() -> None:
    """`profile --duration 8` was refused while scenarios accepted it."""
    assert parse_profile_duration("8") == 8
    assert parse_run_time("8") == 8
    assert parse_profile_duration("1m30s") == 90
    assert parse_run_time("1h30m") == 5400


def test_commands_keep_their_own_bounds() -> None:
    with pytest.raises(ValueError, match="at most 1h"):
        parse_profile_duration("2h")
    with pytest.raises(ValueError, match="at most 3h"):
        parse_run_time("3h1s")
    with pytest.raises(ValueError, match="at least 1s"):
        parse_run_time("500ms")


@pytest.mark.parametrize(
    ("written", "kept"),
    [("5s", "5s"), ("15d", "15d"), ("500ms", "500ms"), ("8", "8s"), (8, "8s"), ("1.5h", "1h30m")],
)
def test_stack_durations_use_the_grammar_and_stay_readable_by_nginx(
    written: str | int, kept: str
) -> None:
    """stack.yaml keeps whole-unit durations as written (the committed files do not
    change) and writes anything else in the canonical form nginx, Prometheus and
    Compose all read."""
    assert parse_duration(written) == kept
    assert duration_seconds(kept) == parse_duration_s(written)


def test_canonical_form() -> None:
    assert format_duration_spec(5400) == "1h30m"
    assert format_duration_spec(90.5) == "1m30s500ms"
    assert format_duration_spec(86400) == "1d"


def test_a_bad_stack_duration_names_file_line_and_key() -> None:
    text = BUNDLED.read_text().replace("scrape_interval: 15s", "scrape_interval: nan", 1)
    assert "scrape_interval: nan" in text
    with pytest.raises(SpecError) as info:
        parse_stack(text, "stack.yaml")
    err = info.value
    assert err.key == "monitoring.scrape_interval"
    assert err.line is not None and "expected a duration like" in str(err)


def test_stack_durations_in_the_new_forms_pass_the_real_checkers(tmp_path: Path) -> None:
    """A bare number and a sum, rendered into nginx, Prometheus and Compose files,
    are accepted by nginx -t, promtool and docker-compose config."""
    from ops.plan import fit
    from ops.plan.verify import verify_plan

    data = minimal()
    data["services"]["agent"]["routes"][0].update({"timeout": 90, "cache": "1m30s"})
    data["monitoring"]["scrape_interval"] = "20"
    loaded = parse_stack(yaml.safe_dump(data), tmp_path / "stack.yaml")
    route = loaded.stack.services["agent"].routes[0]
    assert (route.timeout, route.cache) == ("1m30s", "1m30s")
    assert loaded.stack.monitoring.scrape_interval == "20s"
    results = verify_plan(
        loaded, fit(loaded), tmp_path / "out", checks=["nginx", "promtool", "docker-compose"]
    )
    failed = [(r.name, r.output[-300:]) for r in results if not r.ok]
    assert not failed, failed
    assert {r.name for r in results} >= {"nginx", "docker-compose"} and len(results) >= 3


@pytest.mark.parametrize("text", ["\u0661\u0662", "\u0661\u0662s", "1\u0662m", "\uff11\uff12"])
def test_only_ascii_digits_are_read(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration like"):
        parse_duration_s(text)


def test_a_long_value_is_cut_short_in_the_error() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration_s("9" * 60 + "x")  # under the length cap, so echoed
    message = str(info.value)
    assert "\u2026 (63 characters)" in message and len(message) < 160
