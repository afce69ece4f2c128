"""Paths no call can use, odd text in messages, odd exported values: one line,
the documented exit code, never a traceback."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import Cli
from tests.support.stacks import BUNDLED, minimal, write_stack

LONG = "x" * 300  # over NAME_MAX (255) on every Linux file system


def _one_line(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ("plan", "--out", "{tmp}/" + LONG),
        ("plan", "--out", "{tmp}/" + "/".join([LONG[:200]] * 25)),
        ("report", "--no-docker", "--db", "{tmp}/" + LONG + ".db"),
        ("report", "--no-docker", "--no-history", "--textfile", "{tmp}/" + LONG + ".prom"),
        ("profile", "--recipes", "{tmp}/" + LONG, "agent"),
    ],
    ids=["plan-out", "plan-out-deep", "report-db", "report-textfile", "profile-recipes"],
)
def test_a_name_too_long_is_one_line_exit_2(
    cli: Cli, tmp_path: Path, args: tuple[str, ...]
) -> None:
    shutil.copyfile(BUNDLED, tmp_path / "stack.yaml")
    argv = ("-q", *(a.replace("{tmp}", str(tmp_path)) for a in args))  # -q: no other warnings
    line = _one_line(cli.run(*argv, cwd=tmp_path))
    assert line.startswith("error:") and "too long" in line.lower(), line


def test_an_output_directory_in_a_loop_of_links_is_one_line(cli: Cli, tmp_path: Path) -> None:
    shutil.copyfile(BUNDLED, tmp_path / "stack.yaml")
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    line = _one_line(cli.run("-q", "plan", "--out", str(tmp_path / "a"), cwd=tmp_path))
    assert str(tmp_path / "a") in line and "loop" in line, line
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "a",
        "b",
        "stack.yaml",
    ]


def test_text_that_looks_like_an_emoji_code_is_printed_as_it_is(cli: Cli, tmp_path: Path) -> None:
    """A warning about line 100 of a file printed ``stack.yaml💯``: Rich's emoji codes are off."""
    import yaml

    data = minimal()
    tls = data.pop("tls")
    text = "#\n" * 98 + yaml.safe_dump({"tls": tls}) + yaml.safe_dump(data, sort_keys=False)
    write_stack(tmp_path, text)
    proc = cli.run("plan", "--verify", cwd=tmp_path)
    assert "stack.yaml:100: tls.certificate" in proc.stderr, proc.stderr
    assert "💯" not in proc.stderr


@pytest.mark.parametrize("value", ["banana", "x" * 500])
def test_an_unreadable_exported_quiet_is_ignored_with_one_warning(
    cli: Cli, tmp_path: Path, value: str
) -> None:
    shutil.copyfile(BUNDLED, tmp_path / "stack.yaml")
    proc = cli.run("plan", "--dry-run", cwd=tmp_path, env={"VOTS_OPS_QUIET": value})
    assert proc.returncode == 0, proc.stderr
    warning, *rest = proc.stderr.splitlines()
    assert warning.startswith("warning: VOTS_OPS_QUIET=") and "ignored" in warning, warning
    assert len(warning) < 200, "a long value is cut short"
    assert any("dry run" in line for line in rest), "not quiet: the value was ignored"


@pytest.mark.parametrize(
    ("value", "quiet"), [("1", True), ("yes", True), ("0", False), ("", False)]
)
def test_an_exported_quiet_is_read_as_yes_or_no(
    cli: Cli, tmp_path: Path, value: str, quiet: bool
) -> None:
    shutil.copyfile(BUNDLED, tmp_path / "stack.yaml")
    proc = cli.run("plan", "--dry-run", cwd=tmp_path, env={"VOTS_OPS_QUIET": value})
    assert proc.returncode == 0, proc.stderr
    assert (proc.stderr == "") is quiet, proc.stderr


def test_a_missing_build_context_is_named_once_under_verify(cli: Cli, tmp_path: Path) -> None:
    data = minimal()
    data["services"]["agent"]["build"] = "services/nowhere"
    write_stack(tmp_path, data)
    proc = cli.run("plan", "--verify", cwd=tmp_path)
    said = [
        line
        for line in proc.stderr.splitlines()
        if line.startswith("warning:") and "services/nowhere" in line
    ]
    assert len(said) == 1, proc.stderr  # (docker-compose config then refuses the path: exit 1)
    assert proc.returncode == 1, proc.stderr
