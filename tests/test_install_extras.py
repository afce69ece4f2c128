"""What each extra holds, as pyproject.toml declares it and ops.extras names it, and
the one line a missing one gives. (The core install itself: tests/test_install_core.py.)"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

from ops.errors import EXIT_BAD_INPUT, OpsError
from ops.extras import EXTRAS, MissingExtra, install_hint, require, require_tool
from tests.support.stacks import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
CORE = {"click", "rich", "jinja2", "pyyaml", "pydantic", "psutil", "prometheus-client"}


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_the_core_is_what_report_and_plan_import() -> None:
    assert _names(PYPROJECT["dependencies"]) == CORE


def test_each_extra_holds_what_ops_extras_names() -> None:
    optional = PYPROJECT["optional-dependencies"]
    for extra, packages in EXTRAS.items():
        assert _names(optional[extra]) == set(packages), extra
    assert optional["all"] == [f"vots-ops[{','.join(EXTRAS)}]"]
    assert "vots-ops[all]" in optional["test"]
    everything = set().union(*(set(p) for p in EXTRAS.values()))
    assert not everything & CORE


def test_a_missing_module_is_one_line_naming_the_extra() -> None:
    with pytest.raises(MissingExtra) as info:
        require("vots_ops_no_such_module.sub", "loadtest", "loadtest")
    assert str(info.value) == (
        "loadtest needs vots_ops_no_such_module: pip install 'vots-ops[loadtest]'"
    )
    assert isinstance(info.value, OpsError) and info.value.exit_code == EXIT_BAD_INPUT
    assert info.value.extra == "loadtest"


def test_the_distribution_is_named_when_it_differs_from_the_module() -> None:
    with pytest.raises(MissingExtra, match=r"^loadtest needs hdrhistogram: "):
        require("vots_ops_no_such_hdrh", "loadtest", "loadtest", package="hdrhistogram")


def test_an_installed_module_passes_without_being_imported() -> None:
    sys.modules.pop("tomllib", None)
    require("tomllib", "verify", "test")
    assert "tomllib" not in sys.modules


def test_a_program_next_to_this_python_comes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A venv's bin/ is often not on PATH, and a program of that name on PATH may be
    another install's: the one beside this interpreter wins."""
    other = tmp_path / "python3"
    other.write_text("#!/bin/sh\n")
    other.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert require_tool("python3", "profile", "test") == str(
        Path(sys.executable).parent / "python3"
    )
    assert require_tool("python3", "profile", "test") != str(other)
    renamed = tmp_path / "vots-ops-only-on-path"
    other.rename(renamed)
    assert require_tool(renamed.name, "profile", "test") == str(renamed)


def test_a_missing_program_is_one_line_naming_the_extra() -> None:
    with pytest.raises(MissingExtra) as info:
        require_tool("vots-ops-no-such-program", "profile", "profile")
    assert str(info.value) == (
        "profile needs vots-ops-no-such-program: pip install 'vots-ops[profile]'"
    )


def test_an_unknown_extra_is_a_bug_not_a_hint() -> None:
    with pytest.raises(ValueError, match="unknown extra 'lodtest'"):
        require("json", "lodtest", "loadtest")
    assert install_hint("remote") == "pip install 'vots-ops[remote]'"
