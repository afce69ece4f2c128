"""`vots-ops report`'s options never silently do nothing: a group option a
subcommand ignores is refused and says where it goes, exported variables do not
break the live view, and numbers are finite and bounded, one line each."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import Cli
from tests.support.stacks import BUNDLED


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ("report", "--format", "json", "recommend"),
            "--format is an option of `report` itself; `report recommend` has its own "
            "--format: write it after `recommend`",
        ),
        (
            ("report", "--days", "3", "recommend"),
            "--days is an option of `report` itself; `report recommend` has its own --days: "
            "write it after `recommend`",
        ),
        (
            ("report", "--interval", "1", "install-cron"),
            "--interval is an option of `report` itself; `report install-cron` does not take "
            "it; it is for `vots-ops report` alone",
        ),
        (
            ("report", "--count", "2", "serve"),
            "--count is an option of `report` itself; `report serve` does not take it; it is "
            "for `vots-ops report` alone",
        ),
        (
            ("report", "--textfile", "x.prom", "recommend"),
            "--textfile is an option of `report` itself; `report recommend` does not take it",
        ),
    ],
)
def test_a_group_option_a_subcommand_ignores_is_refused(
    cli: Cli, tmp_path: Path, args: tuple[str, ...], said: str
) -> None:
    where = tmp_path / "out"
    where.mkdir()
    proc = cli.run(*args, "--db", str(where / "h.sqlite3"))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: {said}"), proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert not list(where.iterdir()), "nothing is written"


def test_a_group_option_a_subcommand_takes_is_honoured(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    line = cli.run("report", "--db", str(db), "--no-docker", "install-cron").stdout
    assert f"--db {db}" in line and "--no-docker" in line, line


def _live(cli: Cli, *args: str, env: dict[str, str] | None = None) -> None:
    proc = cli.run("report", "--interval", "0.3", "--count", "1", "--no-docker", *args, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "load 1/5/15" in proc.stdout, "the live table is drawn"


@pytest.mark.parametrize(
    "env", [{"VOTS_OPS_STACK": str(BUNDLED)}, {"VOTS_OPS_QUIET": "1"}], ids=["stack", "quiet"]
)
def test_exported_variables_do_not_stop_the_live_view(cli: Cli, env: dict[str, str]) -> None:
    _live(cli, env=env)


def test_what_the_live_view_cannot_do_is_refused_when_written(cli: Cli) -> None:
    for args in (("--stack", str(BUNDLED)), ("--quiet",)):
        proc = cli.run("report", "--interval", "1", "--no-docker", *args)
        assert proc.returncode == 2, args
        assert "--interval is the live table view" in proc.stderr
    proc = cli.run("-q", "report", "--interval", "1", "--no-docker")
    assert proc.returncode == 2 and "--interval is the live table view" in proc.stderr


def test_an_exported_stack_does_not_stop_the_html_page(cli: Cli, tmp_path: Path) -> None:
    db = str(tmp_path / "h.sqlite3")
    assert cli.run("report", "--no-docker", "--db", db, "--quiet").returncode == 0
    page = cli.run("report", "--format", "html", "--db", db, env={"VOTS_OPS_STACK": str(BUNDLED)})
    assert page.returncode == 0, page.stderr
    assert page.stdout.startswith("<!doctype html>")


HUGE = "9" * 5000
# Every numeric option of `report` and its subcommands, with what it must refuse.
NUMERIC = [
    (("report", "--interval"), ("inf", "nan", "-inf", "1e999", HUGE, "-0", "0.1", "1_0", "\uff19")),
    (("report", "--interval", "1", "--count"), ("inf", "nan", HUGE, "0", "-0", "1e3", "2.5")),
    (("report", "--format", "html", "--days"), ("inf", "nan", "1e999", HUGE, "-0", "1e308")),
    (("report", "--repeat-interval"), ("inf", "nanh", "1e400s", HUGE, "0s", "-0")),
    (("report", "install-cron", "--every"), ("inf", "nan", HUGE, "0", "60", "-0")),
    (("report", "install-cron", "--repeat-interval"), ("inf", "nan", HUGE, "1e999")),
    (("report", "recommend", "--days"), ("inf", "nan", "1e999", HUGE, "-0", "99999")),
    (("report", "recommend", "--min-history"), ("inf", "nan", HUGE, "0d")),
    (("report", "serve", "--port"), ("inf", "nan", HUGE, "0", "65536", "-0")),
    (("report", "serve", "--max-age"), ("inf", "nan", "1e999", HUGE, "0", "-0", "0.5s")),
    (("report", "serve", "--interval"), ("inf", "nan", HUGE)),  # the old spelling of --max-age
]
CASES = [(args, bad) for args, values in NUMERIC for bad in values]


@pytest.mark.parametrize(("args", "bad"), CASES, ids=[f"{' '.join(a)}={b[:8]}" for a, b in CASES])
def test_a_bad_number_is_one_line_and_exit_2(
    cli: Cli, tmp_path: Path, args: tuple[str, ...], bad: str
) -> None:
    where = tmp_path / "out"
    where.mkdir()
    proc = cli.run(*args, bad, "--db", str(where / "h.sqlite3"))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: Invalid value for '{args[-1]}': expected "), proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert not list(where.iterdir()), "nothing is written"


def test_a_huge_number_is_refused_before_it_is_read(cli: Cli) -> None:
    proc = cli.run("report", "recommend", "--days", HUGE)
    assert "(got 5000 characters; at most 32)" in proc.stderr, proc.stderr
