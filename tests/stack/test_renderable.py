"""Values the stack accepts are values its consumers accept.

Environment values and arguments are written into docker-compose.yml as quoted
YAML scalars: a character outside YAML's printable set breaks the file for
every YAML reader, and YAML's own line breaks (NEL, LS, PS) come back as a
space or a newline. Header values and route paths become nginx parameters,
which nginx holds only up to 4095 bytes each. Each class is refused with one
line naming the key; the longest accepted values render and pass the real
``nginx -t``, and accepted non-ASCII text survives ``docker-compose config``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.errors import SpecError
from ops.files import write_all
from ops.plan import fit
from ops.plan.render import render_files
from ops.plan.verify import local_runtime, verify_plan
from ops.proc import which
from ops.spec import LineMap, validate
from ops.stack import MAX_HEADER_VALUE, MAX_PATH, LoadedStack, Stack, parse_stack
from tests.support.stacks import minimal


def _loaded(data: dict[str, Any]) -> LoadedStack:
    return parse_stack(yaml.safe_dump(data, sort_keys=False), "stack.yaml")


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as info:
        _loaded(data)
    message = str(info.value)
    assert "\n" not in message
    return message


def _with_env(value: str) -> dict[str, Any]:
    data = minimal()
    data["services"]["agent"]["environment"] = {"LOG_LEVEL": value}
    return data


def _with_header(value: str) -> dict[str, Any]:
    return minimal(edge={"headers": {"X-Test": value}})


def _with_path(path: str) -> dict[str, Any]:
    data = minimal()
    data["services"]["agent"]["routes"] = [{"path": path}]
    return data


UNRENDERABLE = {
    "C0 control": (
        "a\x01b",
        "control characters (newlines, tabs, ...) are not allowed (found U+0001)",
    ),
    "DEL": ("a\x7fb", "control characters (newlines, tabs, ...) are not allowed (found U+007F)"),
    "C1 control": ("a\x86b", "control character U+0086 is not allowed (YAML cannot hold it)"),
    "C1 CSI": ("a\x9bb", "control character U+009B is not allowed (YAML cannot hold it)"),
    "NEL": ("a\x85b", "U+0085 (NEL) is a line break in YAML and would not survive"),
    "LS": ("a\u2028b", "U+2028 (LINE SEPARATOR) is a line break in YAML and would not survive"),
    "PS": (
        "a\u2029b",
        "U+2029 (PARAGRAPH SEPARATOR) is a line break in YAML and would not survive",
    ),
    "U+FFFE": ("a\ufffeb", "noncharacter U+FFFE is not allowed (YAML cannot hold it)"),
    "U+FFFF": ("a\uffffb", "noncharacter U+FFFF is not allowed (YAML cannot hold it)"),
    "lone surrogate": ("a\ud800b", "lone surrogate U+D800 is not Unicode text"),
}
# libyaml itself refuses a "\ud800" escape in a file; a surrogate reaches the
# model only from Python (validate() on data built in code).
FROM_FILE = {k: v for k, v in UNRENDERABLE.items() if k != "lone surrogate"}


@pytest.mark.parametrize(("value", "message"), FROM_FILE.values(), ids=FROM_FILE)
def test_environment_values_yaml_cannot_hold_are_refused(value: str, message: str) -> None:
    assert _error(_with_env(value)) == (
        f"stack.yaml:{_line(_with_env(value), 'LOG_LEVEL')}: "
        f"services.agent.environment.LOG_LEVEL: {message}"
    )


@pytest.mark.parametrize(("value", "message"), FROM_FILE.values(), ids=FROM_FILE)
def test_command_arguments_yaml_cannot_hold_are_refused(value: str, message: str) -> None:
    data = minimal()
    data["services"]["agent"]["command"] = ["python", value]
    assert _error(data).endswith(f": services.agent.command: {message}")


def _line(data: dict[str, Any], needle: str) -> int:
    text = yaml.safe_dump(data, sort_keys=False)
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_a_lone_surrogate_is_refused_from_a_file_and_from_code() -> None:
    text = yaml.safe_dump(_with_env("a\ud800b"), sort_keys=False)
    with pytest.raises(SpecError, match="invalid YAML: found invalid Unicode character escape"):
        parse_stack(text, "stack.yaml")
    with pytest.raises(SpecError) as info:
        validate(Stack, _with_env("a\ud800b"), LineMap(), "stack.yaml")
    assert str(info.value) == (
        "stack.yaml: services.agent.environment.LOG_LEVEL: lone surrogate U+D800 is not Unicode text"
    )


# C0 and DEL: json.dumps escapes them (refused since long before). LS and PS:
# PyYAML and libyaml keep them, but YAML 1.1 defines them as line breaks and
# emitters wrap lines there (docker-compose config prints the value over two
# lines); refused so that the value never depends on the reader.
@pytest.mark.parametrize(
    "name", [k for k in UNRENDERABLE if k not in ("C0 control", "DEL", "LS", "PS")]
)
def test_the_refused_values_really_break_docker_compose(name: str, tmp_path: Path) -> None:
    """Why the refusals exist: written as the renderer writes a value (a JSON
    string, raw), docker-compose either refuses the file or reads another value."""
    value = UNRENDERABLE[name][0]
    scalar = json.dumps(value, ensure_ascii=False)
    compose = f"services:\n  x:\n    image: busybox\n    environment:\n      K: {scalar}\n"
    (tmp_path / "docker-compose.yml").write_bytes(compose.encode("utf-8", "surrogatepass"))
    proc = subprocess.run(
        [which("docker-compose"), "config"],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
    )
    if proc.returncode == 0:
        back = yaml.safe_load(proc.stdout)["services"]["x"]["environment"]["K"]
        assert back != value, f"{name} survived docker-compose config"


# Text that YAML readers do hold: accepted, rendered, read back unchanged.
RENDERABLE = ["naïve café", "日本語", "emoji \U0001f600", "nbsp\xa0here", "quote \" and \\ and '"]


def test_renderable_text_survives_compose(tmp_path: Path) -> None:
    data = minimal()
    data["services"]["agent"]["environment"] = {f"V{i}": v for i, v in enumerate(RENDERABLE)}
    data["services"]["agent"]["command"] = ["python", *RENDERABLE]
    loaded = _loaded(data)
    plan = fit(loaded)
    compose = yaml.safe_load(render_files(loaded, plan, tmp_path)["docker-compose.yml"])
    agent = compose["services"]["agent"]
    assert agent["environment"] == {f"V{i}": v for i, v in enumerate(RENDERABLE)}
    assert agent["command"] == ["python", *RENDERABLE]
    results = verify_plan(loaded, plan, tmp_path, checks=["compose-schema", "docker-compose"])
    for result in results:
        assert result.ok, result.output


# --------------------------------------------------------------------------- nginx


def _assert_nginx_t_ok(loaded: LoadedStack, tmp_path: Path) -> str:
    results = verify_plan(loaded, fit(loaded), tmp_path, checks=["nginx"])
    assert results[0].ok, results[0].output
    return (tmp_path / "nginx" / "nginx.conf").read_text()


def test_the_longest_header_value_passes_nginx_t(tmp_path: Path) -> None:
    value = "a" * MAX_HEADER_VALUE
    conf = _assert_nginx_t_ok(_loaded(_with_header(value)), tmp_path)
    assert f'add_header X-Test "{value}" always;' in conf


def test_the_longest_header_value_with_escapes_passes_nginx_t(tmp_path: Path) -> None:
    # Each quote and backslash costs nginx one more byte (its escape).
    value = "a" * (MAX_HEADER_VALUE - 20) + '"\\' * 5
    conf = _assert_nginx_t_ok(_loaded(_with_header(value)), tmp_path)
    assert "add_header X-Test " in conf


@pytest.mark.parametrize(
    "value",
    ["a" * (MAX_HEADER_VALUE + 1), "a" * (MAX_HEADER_VALUE - 20) + '"\\' * 5 + "a"],
    ids=["plain", "escapes"],
)
def test_a_header_value_nginx_cannot_hold_is_refused(value: str) -> None:
    message = _error(_with_header(value))
    assert message.endswith(
        f": edge.headers.X-Test: header value is {MAX_HEADER_VALUE + 1} bytes as nginx reads it "
        f"(quotes escaped); nginx takes at most {MAX_HEADER_VALUE}"
    ), message


def _nginx_t_after(loaded: LoadedStack, tmp_path: Path, short: str, long: str) -> bool:
    """Render for the local nginx, make one parameter longer, and run the real ``nginx -t``."""
    runtime = local_runtime(tmp_path, loaded)
    files = render_files(loaded, fit(loaded), tmp_path, runtime)
    assert short in files["nginx/nginx.conf"]
    files["nginx/nginx.conf"] = files["nginx/nginx.conf"].replace(short, long)
    write_all(tmp_path, files)
    conf = tmp_path / "nginx" / "nginx.conf"
    argv = [which("nginx"), "-t", "-p", str(tmp_path), "-c", str(conf), "-e", runtime.error_log]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        assert "too long parameter" in proc.stderr, proc.stderr
    return proc.returncode == 0


def test_one_byte_more_fails_real_nginx_t(tmp_path: Path) -> None:
    """The limit is nginx's: the accepted maximum plus one, rendered anyway, is refused."""
    value = "a" * MAX_HEADER_VALUE
    loaded = _loaded(_with_header(value))
    assert _nginx_t_after(loaded, tmp_path / "same", value, value)
    assert not _nginx_t_after(loaded, tmp_path / "longer", value, value + "a")


def test_non_ascii_header_values_are_refused() -> None:
    message = _error(_with_header("café"))
    assert message.endswith(
        ": edge.headers.X-Test: header values are ASCII text; "
        "U+00E9 (LATIN SMALL LETTER E WITH ACUTE) is not"
    ), message


def test_the_longest_route_path_passes_nginx_t(tmp_path: Path) -> None:
    path = "/" + "p" * (MAX_PATH - 1)
    conf = _assert_nginx_t_ok(_loaded(_with_path(path)), tmp_path)
    assert f"location {path} {{" in conf


def test_a_route_path_nginx_cannot_hold_is_refused() -> None:
    path = "/" + "p" * MAX_PATH
    message = _error(_with_path(path))
    assert message.endswith(
        f": services.agent.routes[0].path: path is {MAX_PATH + 1} characters; "
        f"nginx takes at most {MAX_PATH}"
    ), message


def test_one_character_more_in_a_path_fails_real_nginx_t(tmp_path: Path) -> None:
    path = "/" + "p" * (MAX_PATH - 1)
    loaded = _loaded(_with_path(path))
    assert _nginx_t_after(loaded, tmp_path / "same", f"location {path} ", f"location {path} ")
    assert not _nginx_t_after(
        loaded, tmp_path / "longer", f"location {path} ", f"location {path}p "
    )
