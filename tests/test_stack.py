"""stack.yaml validation: every bad input is one line with file, line and key path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.errors import SpecError
from ops.stack import parse_cpus, parse_size, parse_stack
from tests.support.stacks import BUNDLED, MINIMAL


def _text(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False)


def _error(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_stack(text, "stack.yaml")
    return info.value


def _line_of(text: str, needle: str) -> int:
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in text")


def test_bundled_stack_is_valid() -> None:
    loaded = parse_stack(BUNDLED.read_text(), BUNDLED)
    stack = loaded.stack
    assert set(stack.services) == {"agent", "rag", "dashboard", "redis", "chroma"}
    assert stack.services["agent"].replicas == 2
    assert any(
        r.path == "/_next/static/" and r.immutable for r in stack.services["dashboard"].routes
    )


@pytest.mark.parametrize(
    ("text", "bytes_"),
    [
        ("512M", 512 * 1024**2),
        ("2G", 2 * 1024**3),
        ("1.5G", 1536 * 1024**2),
        ("64k", 64 * 1024),
        ("1T", 1024**4),
    ],
)
def test_sizes_accepted(text: str, bytes_: int) -> None:
    assert parse_size(text) == bytes_


@pytest.mark.parametrize(
    "value", ["2 GB", "-1", "0", "0M", -1, 0, 512, "512", "1.5", "", "2GB", "M", None, True]
)
def test_sizes_rejected(value: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(value)


@pytest.mark.parametrize(("value", "milli"), [(0.5, 500), (2, 2000), ("250m", 250), (0.001, 1)])
def test_cpus(value: object, milli: int) -> None:
    assert parse_cpus(value) == milli


@pytest.mark.parametrize("value", [0, -1, "0m", 0.0001, "half", True, None])
def test_cpus_rejected(value: object) -> None:
    with pytest.raises(ValueError):
        parse_cpus(value)


# Each case edits the bundled stack's text (first occurrence) and names the
# key path and a fragment of the message the user must see.
BAD_EDITS = [
    (
        "memory: {min: 512M, max: 2G}",
        "memory: {min: 2 GB, max: 2G}",
        "services.agent.resources.memory.min",
        "expected a size like 512M",
    ),
    (
        "memory: {min: 512M, max: 2G}",
        "memory: {min: -1, max: 2G}",
        "services.agent.resources.memory.min",
        "expected a size",
    ),
    (
        "memory: {min: 512M, max: 2G}",
        "memory: {min: 0, max: 2G}",
        "services.agent.resources.memory.min",
        "expected a size",
    ),
    (
        "memory: {min: 512M, max: 2G}",
        "memory: {min: 3G, max: 2G}",
        "services.agent.resources.memory",
        "min is larger than max",
    ),
    (
        "memory: {min: 512M, max: 2G}",
        "memroy: {min: 512M, max: 2G}",
        "services.agent.resources.memroy",
        "did you mean 'memory'?",
    ),
    (
        "cpu: {min: 0.25, max: 2}",
        "cpu: {min: 5m, max: 2}",
        "services.agent.resources.cpu",
        "at least 0.01 (10m)",
    ),
    (
        "cpu: {min: 0.25, max: 2}",
        "cpu: {max: 0.1}",
        "services.agent.resources.cpu.max",
        "max 0.1 is below the minimum 0.25",
    ),
    ("  cpus: 4\n", "  cpus: .inf\n", "host.cpus", "not a finite number"),
    ("  memory: 16G\n", "  memory: 4GB\n", "host.memory", "expected 'auto' or a size like 16G"),
    (
        "cpu: {min: 0.25, max: 2}",
        "cpu: {min: .nan, max: 2}",
        "services.agent.resources.cpu.min",
        "not a finite number",
    ),
    ("    replicas: 2", "    replicas: true", "services.agent.replicas", "valid integer"),
    (
        "{path: /_next/static/, immutable: true}",
        '{path: /_next/static/, immutable: "yes"}',
        "services.dashboard.routes[0].immutable",
        "valid boolean",
    ),
    ("cache: 5s", "cache: 500ms", "services.rag.routes[0].cache", "whole seconds"),
    (
        "{path: /_next/static/, immutable: true}",
        "{path: /_next/static/, immutable: true, cache: 5s}",
        "services.dashboard.routes[0]",
        "not both",
    ),
    (
        "{path: /, rate_limit: 50r/s, burst: 100}",
        "{path: /, burst: 100}",
        "services.dashboard.routes[1]",
        "'burst' needs a 'rate_limit'",
    ),
    ("LOG_LEVEL: info", "LOG_LEVEL: 0755", "services.agent.environment.LOG_LEVEL", "quote it"),
    ("  redis:\n", '  "yes":\n', "services.yes", "reads as a boolean or null"),
    ("edge:\n", "edge:\n  bind: 300.1.1.1\n", "edge.bind", "expected an IPv4 address"),
    (
        "edge:\n",
        "edge:\n  http_port: 443\n",
        "edge.https_port",
        "host port 443 is already published by edge.http_port",
    ),
    (
        "edge:\n",
        "edge:\n  https_port: 9090\n",
        "monitoring.port",
        "host port 9090 is already published by edge.https_port",
    ),
    ("edge:\n", "edge:\n  replicas: 2\n", "edge.replicas", "unknown key"),
    (
        "  headers:\n",
        "  headers:\n    x-frame-options: SAMEORIGIN\n    X-Frame-Options: DENY\n",
        "edge.headers.X-Frame-Options",
        "header names ignore case",
    ),
    ("    replicas: 2", "    replicas: two", "services.agent.replicas", "valid integer"),
    ("    replicas: 2", "    replicas: 0", "services.agent.replicas", "greater than or equal to 1"),
    ("    port: 8000", "    port: 70000", "services.agent.port", "less than or equal to 65535"),
    ("    language: python", "    language: cobol", "services.agent.language", "python"),
    (
        "    health: /healthz",
        "    helth: /healthz",
        "services.agent.helth",
        "did you mean 'health'?",
    ),
    (
        "depends_on: [redis, rag]",
        "depends_on: [redis, ragg]",
        "services.agent.depends_on[1]",
        "no service named 'ragg' (did you mean 'rag'?)",
    ),
    (
        "services:\n  agent:\n",
        "secrets:\n  llm_api_key: {file: ./secrets/llm_api_key}\n"
        "services:\n  agent:\n    secrets: [llm_api_kye]\n",
        "services.agent.secrets[0]",
        "did you mean 'llm_api_key'?",
    ),
    (
        "path: /api/v1/search",
        "path: /api/v1/analyze_code",
        "services.rag.routes[0].path",
        "already served by services.agent.routes[0]",
    ),
    (
        "rate_limit: 20r/s",
        "rate_limit: 20/s",
        "services.agent.routes[0].rate_limit",
        "expected a rate like 20r/s",
    ),
    ("cache: 5s", "cache: soon", "services.rag.routes[0].cache", "expected a duration"),
    (
        "    image: vots/agent:latest",
        "    image: Vots/Agent latest",
        "services.agent.image",
        "expected an image reference",
    ),
    (
        "LOG_LEVEL: info",
        "DB_PASSWORD: hunter2",
        "services.agent.environment.DB_PASSWORD",
        "looks like a secret",
    ),
    ("domain: vots.example.com", "domain: vots example", "domain", "expected a host name"),
    (
        "  certificate: /etc/ssl/vots/fullchain.pem",
        "  certificate: fullchain.pem",
        "tls.certificate",
        "absolute path",
    ),
    ("  cpus: 4\n", "  cpus: 1\n", "host.cpus", "minimums need 2 CPUs but the host offers 0.5"),
    ("  memory: 16G\n", "  memory: 4G\n", "host.memory", "minimums need"),
    ("  memory: 16G\n", "  memory: 1G\n", "host.reserve", "nothing is left"),
    (
        "    build: services/chroma\n",
        "    build: services/chroma\n    routes: [{path: /r/}]\n",
        "services.chroma.routes",
        "internal service cannot have routes",
    ),
    ("    depends_on: [chroma]", "    depends_on: [agent]", "depends_on", "dependency cycle"),
]


@pytest.mark.parametrize(
    ("old", "new", "key", "fragment"), BAD_EDITS, ids=[c[2] + ":" + c[3][:20] for c in BAD_EDITS]
)
def test_bad_input_names_file_line_and_key(old: str, new: str, key: str, fragment: str) -> None:
    from ops.plan import fit

    text = BUNDLED.read_text()
    assert old in text, old
    bad = text.replace(old, new, 1)
    with pytest.raises(SpecError) as info:
        fit(parse_stack(bad, "stack.yaml"))
    err = info.value
    message = str(err)
    assert "\n" not in message
    assert message.startswith("stack.yaml:"), message
    assert f": {key}: " in message or message.split(": ")[1].endswith(key), message
    assert fragment in message, message
    # The line is the one holding the offending key (or its nearest ancestor).
    assert err.line is not None
    assert bad.splitlines()[err.line - 1].strip(), message


def test_line_points_at_the_key() -> None:
    text = BUNDLED.read_text().replace(
        "memory: {min: 512M, max: 2G}", "memory: {min: 2 GB, max: 2G}", 1
    )
    err = _error(text)
    assert err.line == _line_of(text, "memory: {min: 2 GB")


def test_duplicate_service_is_an_error_not_an_overwrite() -> None:
    text = BUNDLED.read_text().replace("\n  rag:\n", "\n  agent:\n", 1)
    err = _error(text)
    assert "duplicate key 'agent'" in str(err)
    assert err.line == text.splitlines().index("  agent:", _line_of(text, "  agent:")) + 1


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "the file is empty"),
        ("- a\n- b\n", "expected a mapping"),
        ("services: [\n", "invalid YAML"),
        ("domain: a\n  bad: indent\n", "invalid YAML"),
    ],
)
def test_unparseable_files(text: str, fragment: str) -> None:
    assert fragment in str(_error(text))


def test_missing_required_key() -> None:
    data = copy.deepcopy(MINIMAL)
    del data["tls"]
    assert "tls: required key is missing" in str(_error(_text(data)))


# ------------------------------------------------------------------ injection

EVIL = ["\n", ";", "{", "}", '"', "'", "$"]


@pytest.mark.parametrize("char", EVIL, ids=repr)
def test_service_name_cannot_inject(char: str) -> None:
    data = copy.deepcopy(MINIMAL)
    data["services"][f"agent{char}x"] = data["services"].pop("agent")
    err = _error(_text(data))
    assert "expected a lowercase name" in str(err)


@pytest.mark.parametrize("char", EVIL, ids=repr)
def test_route_path_cannot_inject(char: str) -> None:
    data = copy.deepcopy(MINIMAL)
    data["services"]["agent"]["routes"][0]["path"] = f"/api{char}x/"
    assert "expected a URL path" in str(_error(_text(data)))


@pytest.mark.parametrize("char", ["\n", "\r", "\t", "$"], ids=repr)
def test_header_value_rejects_what_cannot_be_quoted(char: str) -> None:
    data = copy.deepcopy(MINIMAL)
    data["edge"] = {"headers": {"X-Test": f"a{char}b"}}
    assert "edge.headers.X-Test" in str(_error(_text(data)))


@pytest.mark.parametrize("char", [";", "{", "}", '"', "'", "\\"], ids=repr)
def test_header_value_free_text_is_quoted(char: str, tmp_path: Path) -> None:
    """Legitimate free text (a CSP has ';' and quotes) is emitted inside one nginx string."""
    from ops.plan import fit, render_files

    data = copy.deepcopy(MINIMAL)
    value = f"default-src 'self'{char} x"
    data["edge"] = {"headers": {"Content-Security-Policy": value}}
    loaded = parse_stack(_text(data), tmp_path / "stack.yaml")
    conf = render_files(loaded, fit(loaded), tmp_path)["nginx/nginx.conf"]
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    assert f'add_header Content-Security-Policy "{escaped}" always;' in conf


@pytest.mark.parametrize("char", EVIL, ids=repr)
def test_header_name_cannot_inject(char: str) -> None:
    data = copy.deepcopy(MINIMAL)
    data["edge"] = {"headers": {f"X-A{char}": "v"}}
    assert "expected a header name" in str(_error(_text(data)))


@pytest.mark.parametrize("char", ["\n", "\r"], ids=repr)
def test_environment_value_rejects_control_characters(char: str) -> None:
    data = copy.deepcopy(MINIMAL)
    data["services"]["agent"]["environment"] = {"MODE": f"a{char}b: c"}
    assert "control characters" in str(_error(_text(data)))


@pytest.mark.parametrize("value", ["a: b", "x'y", 'q"uote', "$HOME", "{a}", "a;b", "#c", "- d"])
def test_environment_values_are_quoted_in_compose(value: str, tmp_path: Path) -> None:
    """Free text lands in compose as one YAML scalar with '$' doubled, and means itself."""
    from ops.plan import fit, render_files

    data = copy.deepcopy(MINIMAL)
    data["services"]["agent"]["environment"] = {"MODE": value}
    loaded = parse_stack(_text(data), tmp_path / "stack.yaml")
    compose = yaml.safe_load(render_files(loaded, fit(loaded), tmp_path)["docker-compose.yml"])
    assert compose["services"]["agent"]["environment"] == {"MODE": value.replace("$", "$$")}


def test_render_guard_refuses_unquoted_text(tmp_path: Path) -> None:
    """Even a value that skipped validation cannot reach the output raw."""
    from ops.errors import RenderError
    from ops.plan import fit, render_files
    from ops.stack import Stack

    loaded = parse_stack(_text(MINIMAL), tmp_path / "stack.yaml")
    plan = fit(loaded)
    bad = Stack.model_construct(**{**dict(loaded.stack), "domain": "x; include /etc/passwd"})
    sneaky = type(loaded)(stack=bad, path=loaded.path, lines=loaded.lines)
    with pytest.raises(RenderError, match="refusing to render"):
        render_files(sneaky, plan, tmp_path)
