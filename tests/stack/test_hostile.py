"""Hostile and mistaken input costs nothing: refused before any work, one line, exit 2.

The refusals are shown by the message (which names the limit that stopped the
load) and, for the CLI, by exit 2 with nothing written. Time and memory are
measured side by side with plain ``yaml.safe_load`` in bench/spec_hostile.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.errors import SpecError
from ops.loadtest.scenario import load_scenarios
from ops.profile.recipe import load_recipe
from ops.report.advice import load_recommendations
from ops.spec import (
    MAX_BYTES,
    MAX_DEPTH,
    MAX_NODES,
    MAX_SCALAR,
    load_file,
    load_yaml,
    read_text,
)
from ops.stack import load_stack, parse_stack
from tests.stack.hostile import alias_bomb, big_file, deep_nesting
from tests.support.cli import Cli
from tests.support.stacks import BUNDLED, minimal


def _error(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_stack(text, "stack.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert len(message) < 300, message
    return info.value


def _assert_refused_by_cli(cli: Cli, tmp_path: Path, text: str, *fragments: str) -> None:
    """Exit 2, one line on stderr naming the file, and nothing written next to it."""
    path = tmp_path / "stack.yaml"
    path.write_text(text, encoding="utf-8")
    proc = cli.run("plan", "--stack", str(path), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"{path}:" in lines[0] or "stack.yaml:" in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "stack.yaml"
    ]


# --------------------------------------------------------------------------- aliases


def test_the_alias_bomb_is_refused_at_its_first_anchor() -> None:
    text = alias_bomb()
    assert len(text.encode()) < 800  # the 750-byte bomb that took 34 s and 3.6 GB
    err = _error(text)
    assert err.line == 1
    assert "YAML anchors (&l0) are not allowed" in str(err)


def test_an_alias_is_refused_on_its_line() -> None:
    # Without an anchor before it: the alias itself is named, not YAML's "undefined alias".
    text = "project: vots\ndomain: *host\n"
    err = _error(text)
    assert str(err) == (
        "stack.yaml:2: YAML aliases (*host) are not allowed in spec files; write the value out"
    )


def test_a_merge_key_is_refused_with_its_anchor() -> None:
    text = yaml.safe_dump(minimal(), sort_keys=False).replace("  agent:\n", "  agent: &base\n", 1)
    err = _error(text)
    assert "YAML anchors (&base)" in str(err)
    assert err.line == text.splitlines().index("  agent: &base") + 1


def test_cli_refuses_the_alias_bomb_with_exit_2(cli: Cli, tmp_path: Path) -> None:
    _assert_refused_by_cli(cli, tmp_path, alias_bomb(), "stack.yaml:1:", "YAML anchors (&l0)")


@pytest.mark.parametrize(
    "load",
    [load_stack, load_scenarios, load_recipe, load_recommendations, load_file],
    ids=["stack", "scenarios", "recipe", "recommendations", "load_file"],
)
def test_every_spec_reader_refuses_the_alias_bomb(
    load: Callable[[Path], Any], tmp_path: Path
) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(alias_bomb())
    with pytest.raises(SpecError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}:1: YAML anchors (&l0) are not allowed")


# --------------------------------------------------------------------------- size


def test_a_file_over_the_cap_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text(big_file(MAX_BYTES + 1))
    with pytest.raises(SpecError) as info:
        load_stack(path)
    assert str(info.value) == (
        f"{path}: larger than 1 MiB; a spec file this big is a mistake (is it the right file?)"
    )


def test_a_file_at_the_cap_is_read(tmp_path: Path) -> None:
    text = BUNDLED.read_text()
    padded = text + "#" * (MAX_BYTES - len(text.encode()) - 1) + "\n"
    assert len(padded.encode()) == MAX_BYTES
    path = tmp_path / "stack.yaml"
    path.write_text(padded)
    assert set(load_stack(path).stack.services) == set(parse_stack(text).stack.services)


@pytest.mark.timeout(60)
def test_only_cap_plus_one_bytes_are_read() -> None:
    """/dev/zero never ends: reading it whole would never return."""
    with pytest.raises(SpecError, match="larger than 1 MiB"):
        read_text(Path("/dev/zero"))


def test_text_over_the_cap_is_refused_by_the_library_too() -> None:
    err = _error("#" * (MAX_BYTES + 1))
    assert "larger than 1 MiB" in str(err)


def test_cli_refuses_a_50_mb_stack_with_exit_2(cli: Cli, tmp_path: Path) -> None:
    _assert_refused_by_cli(cli, tmp_path, big_file(50 * 1024 * 1024), "larger than 1 MiB")


# --------------------------------------------------------------------------- depth, counts


def test_nesting_just_under_the_parsers_limit_is_one_line() -> None:
    # libyaml refuses 1000 levels itself; 999 used to reach a recursive walk (RecursionError).
    err = _error(deep_nesting(999))
    assert str(err) == f"stack.yaml:1: nested more than {MAX_DEPTH} levels deep"


def test_nesting_at_the_parsers_own_limit_is_one_line() -> None:
    err = _error(deep_nesting(5000))
    assert str(err) == "stack.yaml:1: invalid YAML: exceeded maximum nesting depth"


def test_nesting_up_to_the_depth_cap_is_loaded() -> None:
    # The top-level mapping plus MAX_DEPTH - 1 lists: exactly MAX_DEPTH levels.
    data, _ = load_yaml(deep_nesting(MAX_DEPTH - 1), "spec.yaml")
    assert isinstance(data["services"], list)
    with pytest.raises(SpecError, match=f"spec.yaml:1: nested more than {MAX_DEPTH} levels deep"):
        load_yaml(deep_nesting(MAX_DEPTH), "spec.yaml")


def test_block_nesting_names_the_line_where_it_goes_too_deep() -> None:
    text = "".join("  " * i + f"k{i}:\n" for i in range(MAX_DEPTH + 5))
    err = _error(text)
    assert err.line == MAX_DEPTH + 1
    assert "nested more than" in str(err)


def test_too_many_values_are_refused() -> None:
    text = "services: [" + ", ".join(["x"] * MAX_NODES) + "]\n"
    err = _error(text)
    assert (
        str(err) == f"stack.yaml:1: more than {MAX_NODES} values; a spec file this big is a mistake"
    )


def test_a_huge_scalar_is_refused() -> None:
    err = _error("project: " + "a" * (MAX_SCALAR + 1) + "\n")
    assert (
        str(err) == f"stack.yaml:1: a value of {MAX_SCALAR + 1} characters (at most {MAX_SCALAR})"
    )


def _with_many(where: str, n: int) -> dict[str, Any]:
    data = minimal()
    agent = data["services"]["agent"]
    if where == "services":
        for i in range(n - len(data["services"])):
            data["services"][f"s{i}"] = {"image": "vots/x:1"}
    elif where == "routes":
        agent["routes"] = [{"path": f"/r{i}"} for i in range(n)]
    elif where == "headers":
        data["edge"] = {"headers": {f"X-H{i}": "v" for i in range(n)}}
    elif where == "environment":
        agent["environment"] = {f"E{i}": "v" for i in range(n)}
    elif where == "volumes":
        agent["volumes"] = {f"v{i}": f"/d{i}" for i in range(n)}
    elif where == "command":
        agent["command"] = ["x"] * n
    return data


@pytest.mark.parametrize(
    ("where", "cap", "key"),
    [
        ("services", 100, "services"),
        ("routes", 100, "services.agent.routes"),
        ("headers", 50, "edge.headers"),
        ("environment", 200, "services.agent.environment"),
        ("volumes", 50, "services.agent.volumes"),
    ],
)
def test_entry_counts_are_capped(where: str, cap: int, key: str) -> None:
    ok = yaml.safe_dump(_with_many(where, cap), sort_keys=False)
    parse_stack(ok, "stack.yaml")
    err = _error(yaml.safe_dump(_with_many(where, cap + 1), sort_keys=False))
    assert f": {key}: at most {cap} entries allowed (got {cap + 1})" in str(err), str(err)


def test_command_arguments_are_capped() -> None:
    err = _error(yaml.safe_dump(_with_many("command", 257), sort_keys=False))
    assert "services.agent.command: 257 arguments (at most 256)" in str(err)


# --------------------------------------------------------------------------- numbers

NUMERIC = [
    ("host", "cpus"),
    ("host", "memory"),
    ("host", "cpu_overcommit"),
    ("host", "reserve", "cpus"),
    ("host", "reserve", "memory"),
    ("services", "agent", "port"),
    ("services", "agent", "replicas"),
    ("services", "agent", "resources", "cpu_weight"),
    ("services", "agent", "resources", "memory_weight"),
    ("services", "agent", "resources", "cpu", "min"),
    ("services", "agent", "resources", "cpu", "max"),
    ("services", "agent", "resources", "memory", "min"),
    ("services", "agent", "resources", "memory", "max"),
    ("services", "agent", "resources", "pids"),
    ("services", "agent", "health", "retries"),
    ("services", "agent", "routes", 0, "burst"),
    ("services", "agent", "routes", 0, "max_body"),
    ("edge", "http_port"),
    ("edge", "client_max_body"),
    ("edge", "worker_connections"),
    ("monitoring", "port"),
]
HOSTILE_NUMBERS = {
    "inf": "inf",
    "nan": "nan",
    ".inf": ".inf",
    "-.inf": "-.inf",
    ".nan": ".NaN",
    "float-overflow": "1.0e999",
    "5000-digits": "1" + "0" * 5000,
    "5000-digit-size": "1" + "0" * 5000 + "G",
    "5000-digit-millicores": "1" + "0" * 5000 + "m",
}


def _set(data: dict[str, Any], loc: tuple[str | int, ...], value: Any) -> None:
    node: Any = data
    for part in loc[:-1]:
        if isinstance(node, dict) and part not in node:
            node[part] = {}
        node = node[part]
    node[loc[-1]] = value


def _key(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@pytest.mark.parametrize("loc", NUMERIC, ids=_key)
@pytest.mark.parametrize("token", list(HOSTILE_NUMBERS.values()), ids=list(HOSTILE_NUMBERS))
def test_hostile_numbers_are_one_line_naming_the_key(
    loc: tuple[str | int, ...], token: str
) -> None:
    data = minimal()
    data["services"]["agent"]["health"] = {"path": "/healthz"}
    data["edge"] = {}
    _set(data, loc, "__NUMBER__")
    text = yaml.safe_dump(data, sort_keys=False).replace("__NUMBER__", token)
    err = _error(text)
    assert f": {_key(loc)}: " in str(err), str(err)
    assert err.line == next(i for i, line in enumerate(text.splitlines(), 1) if token in line)


@pytest.mark.parametrize("token", ["1" + "0" * 5000 + "G", ".inf", "1" + "0" * 5000])
def test_cli_refuses_hostile_sizes_with_exit_2(cli: Cli, tmp_path: Path, token: str) -> None:
    text = BUNDLED.read_text().replace("  memory: 16G\n", f"  memory: {token}\n")
    assert token in text
    _assert_refused_by_cli(cli, tmp_path, text, "host.memory")


def test_an_impossible_date_is_one_line() -> None:
    # YAML reads 2026-13-45 as a timestamp; the constructor's ValueError was a traceback.
    err = _error("project: 2026-13-45\n")
    assert str(err).startswith("stack.yaml:1: project: cannot read '2026-13-45' as timestamp")


def test_a_nul_byte_is_one_line_with_its_line_number() -> None:
    err = _error("project: vots\ndomain: a\x00b\n")
    assert (
        str(err)
        == "stack.yaml:2: invalid YAML: character #x00 is not allowed (control characters are not allowed)"
    )


def test_bundled_stack_passes_the_screen() -> None:
    assert os.path.getsize(BUNDLED) < MAX_BYTES
    load_stack(BUNDLED)


@pytest.mark.parametrize(
    "loc",
    [
        ("services", "agent", "routes", 0, "timeout"),
        ("services", "agent", "routes", 0, "cache"),
        ("services", "agent", "health", "interval"),
        ("monitoring", "scrape_interval"),
        ("monitoring", "retention"),
    ],
    ids=_key,
)
@pytest.mark.parametrize("digits", [40, 5000])
def test_durations_with_many_digits_are_one_line(loc: tuple[str | int, ...], digits: int) -> None:
    data = minimal()
    data["services"]["agent"]["health"] = {"path": "/healthz"}
    _set(data, loc, "1" * digits + "s")
    err = _error(yaml.safe_dump(data, sort_keys=False))
    assert f": {_key(loc)}: expected a duration like 5s, 1m or 500ms" in str(err), str(err)


@pytest.mark.parametrize(
    "value", ["!!int abc", "!!bool maybe", "!!timestamp x", "!!float abc", "2026-13-45"]
)
def test_values_the_yaml_constructor_chokes_on_are_one_line(value: str) -> None:
    # Each raised ValueError, KeyError or AttributeError inside PyYAML: a traceback.
    err = _error(f"project: {value}\n")
    assert str(err).startswith("stack.yaml:1: project: cannot read "), str(err)
