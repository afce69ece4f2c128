"""One error tree: every expected failure is an ops.errors class with a documented exit code,
and library messages name their inputs, never the CLI's flags."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import ops
import ops.errors as errors
from ops.errors import EXIT_TOOL_ERROR, ExternalToolError, OpsError, SpecError

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# Loaded only inside Locust: importing it would patch this interpreter with gevent.
NOT_IMPORTED = {"ops.loadtest._locust_plugin", "ops.loadtest.users"}


def _all_ops_modules() -> list[str]:
    names = [
        m.name
        for m in pkgutil.walk_packages(ops.__path__, "ops.")
        if m.name not in NOT_IMPORTED and ".__main__" not in m.name
    ]
    for name in names:
        importlib.import_module(name)
    return names


def _subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub, *_subclasses(sub)}
    return out


def _documented_codes() -> dict[str, int]:
    """The README's Exit codes section: `ClassName` -> code, from its error table."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (\d) \|", section, re.M)
    assert rows, "no error table in the README's Exit codes section"
    return {name: int(code) for name, code in rows}


def test_every_library_error_is_in_the_tree_and_the_readme() -> None:
    _all_ops_modules()
    classes = {c for c in _subclasses(OpsError) if c.__module__.startswith("ops.")}
    documented = _documented_codes()
    names = {c.__name__ for c in classes} | {"OpsError"}
    assert names == set(documented), "README's Exit codes table and ops.errors differ"
    for cls in classes:
        assert getattr(errors, cls.__name__) is cls, (
            f"{cls.__name__} not importable from ops.errors"
        )
        assert f" {cls.__name__} [" in (errors.__doc__ or ""), f"{cls.__name__} not in the tree"
        assert cls.exit_code == documented[cls.__name__], cls.__name__
    assert OpsError.exit_code == documented["OpsError"]


def test_the_errors_that_stood_apart_are_now_in_the_tree() -> None:
    from ops.engine import EngineError, NotFound
    from ops.profile.target import TargetError
    from ops.report.history import HistoryError

    assert errors.EngineError is EngineError and errors.EngineNotFound is NotFound
    assert errors.TargetError is TargetError and errors.HistoryError is HistoryError
    assert all(issubclass(c, OpsError) for c in (EngineError, NotFound, TargetError, HistoryError))


def test_a_tool_that_times_out_is_not_bad_input() -> None:
    """A real subprocess past its timeout: exit 3, naming the tool, not exit 2."""
    from ops.proc import run

    with pytest.raises(ExternalToolError, match=r"^sleep did not finish within 0.2s$") as info:
        run(["sleep", "30"], timeout=0.2)
    assert info.value.exit_code == EXIT_TOOL_ERROR == 3


def test_a_tool_that_fails_is_not_bad_input() -> None:
    from ops.proc import run

    with pytest.raises(ExternalToolError, match=r"^sh failed: broken$"):
        run(["sh", "-c", "echo broken >&2; exit 4"], check=True)


def test_name_fields_adds_the_callers_spelling() -> None:
    err = OpsError("no host: give one", fields=("host", "stack_path"))
    err.name_fields({"host": "--host URL", "stack_path": "--stack FILE"})
    assert str(err) == "no host: give one [--host URL, --stack FILE]"
    spec = SpecError("bad", path="s.yaml", line=3, key="k", fields=("users",))
    assert str(spec.name_fields({"other": "--other"})) == "s.yaml:3: k: bad"  # nothing to add
    assert str(spec.name_fields({"users": "--users"})) == "s.yaml:3: k: bad [--users]"


_FLAG = re.compile(r"(?<![\w-])--[a-z]")


def _raised_texts(path: Path) -> list[tuple[int, str]]:
    """Every string literal inside a ``raise`` (and in the error-text helpers) of a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            for sub in ast.walk(node.exc):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    out.append((sub.lineno, sub.value))
    return out


@pytest.mark.parametrize(
    "path",
    sorted([*(ROOT / "ops" / "loadtest").glob("*.py"), *(ROOT / "ops" / "profile").glob("*.py")]),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_library_errors_do_not_mention_cli_flags(path: Path) -> None:
    flagged = [f"{path.name}:{n}: {t!r}" for n, t in _raised_texts(path) if _FLAG.search(t)]
    assert not flagged, "a library error names a CLI flag; name the input (fields=...)"


def test_the_scan_finds_a_flag_when_there_is_one(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text('def f():\n    raise ValueError(f"give --pid {1}")\n')
    assert [t for _, t in _raised_texts(bad) if _FLAG.search(t)] == ["give --pid "]
