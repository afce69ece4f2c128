"""profiles/*.yaml: the bundled recipes are valid; bad ones are one line with file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.errors import SpecError
from ops.profile.recipe import find_recipe, load_recipe
from tests.support.cli import Cli

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
description: test
target:
  service: agent
  match: uvicorn
language: python
duration: 5s
rate: 100
options:
  native: false
"""


def test_bundled_recipes_are_valid() -> None:
    recipes = {p.stem: load_recipe(p) for p in (ROOT / "profiles").glob("*.yaml")}
    assert {"agent", "rag", "go-service", "rust-service"} <= set(recipes)
    assert recipes["agent"].target is not None and recipes["agent"].target.service == "agent"
    assert recipes["agent"].chosen_profiler == "py-spy"
    assert (
        recipes["go-service"].chosen_profiler == "pprof" and recipes["go-service"].pprof is not None
    )
    assert recipes["rust-service"].chosen_profiler == "perf"


@pytest.mark.parametrize(
    ("old", "new", "line", "key", "message"),
    [
        ("rate: 100", "rate: 5000", 7, "rate", "less than or equal to 1000"),
        ("duration: 5s", "duration: 2h", 6, "duration", "at most 1h"),
        ("language: python", "language: cobol", 5, "language", "'python', 'go' or 'rust'"),
        ("  native: false", "  natve: false", 9, "options.natve", "did you mean 'native'"),
        ("  match: uvicorn", "  match: '(['", 4, "target.match", "not a regular expression"),
        (
            "  service: agent",
            "  service: agent\n  pid: 3",
            2,
            "target",
            "give one of service, container or pid",
        ),
        ("language: python", "language: go", 1, None, "profiler pprof needs pprof"),
    ],
)
def test_bad_recipes(
    tmp_path: Path, old: str, new: str, line: int, key: str | None, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    text = GOOD.replace(old, new)
    assert text != GOOD
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_recipe(path)
    err = info.value
    assert message in str(err), str(err)
    assert err.line == line and err.key == key, str(err)
    assert "\n" not in str(err)


def test_unknown_recipe_lists_the_known_ones() -> None:
    with pytest.raises(
        SpecError, match=r"did you mean 'agent'.*agent, go-service, rag, rust-service"
    ):
        find_recipe("agnet", ROOT / "profiles")


def test_cli_bad_recipe_exits_2_with_one_line(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "svc.yaml").write_text(GOOD.replace("rate: 100", "rate: fast"))
    proc = cli.run("profile", "svc", timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: profiles/svc.yaml:7: rate: input should be a valid number, unable to parse string as a number (got 'fast')"
    ]
