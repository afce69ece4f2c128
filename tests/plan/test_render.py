"""Rendered text for choices a user makes in stack.yaml (the live tests cover the wire)."""

from __future__ import annotations

from pathlib import Path

import yaml

from ops.plan import fit, render_files
from ops.stack import parse_stack
from tests.support.stacks import minimal


def _render(tmp_path: Path, **changes: object) -> dict[str, str]:
    loaded = parse_stack(yaml.safe_dump(minimal(**changes)), tmp_path / "stack.yaml")
    return render_files(loaded, fit(loaded), tmp_path)


def test_redirect_uses_the_published_https_port(tmp_path: Path) -> None:
    files = _render(tmp_path, edge={"http_port": 8080, "https_port": 8443, "bind": "127.0.0.1"})
    assert "return 301 https://$host:8443$request_uri;" in files["nginx/nginx.conf"]
    nginx = yaml.safe_load(files["docker-compose.yml"])["services"]["nginx"]
    assert nginx["ports"] == ["127.0.0.1:8080:80", "127.0.0.1:8443:443"]


def test_default_https_port_has_no_port_in_redirect(tmp_path: Path) -> None:
    assert "return 301 https://$host$request_uri;" in _render(tmp_path)["nginx/nginx.conf"]


def test_upstream_pool_scales_with_replicas(tmp_path: Path) -> None:
    files = _render(tmp_path)
    # nginx.conf includes the upstreams from their own file, which deploy rewrites.
    assert "include /etc/nginx/vots/upstreams.conf;" in files["nginx/nginx.conf"]
    assert "upstream agent {" not in files["nginx/nginx.conf"]
    conf = files["nginx/upstreams.conf"]
    block = conf[conf.index("upstream agent {") :]
    block = block[: block.index("}")]
    assert "least_conn;" in block
    assert "keepalive 128;" in block  # two replicas
    assert "keepalive_timeout 4s;" in block


def test_monitoring_off_renders_no_monitoring_services(tmp_path: Path) -> None:
    files = _render(
        tmp_path, monitoring={"prometheus": False, "node_exporter": False, "cadvisor": False}
    )
    services = yaml.safe_load(files["docker-compose.yml"])["services"]
    assert set(services) == {"agent", "redis", "nginx"}


def test_stack_header_replaces_the_default_whatever_its_case(tmp_path: Path) -> None:
    conf = _render(tmp_path, edge={"headers": {"x-frame-options": "SAMEORIGIN"}})[
        "nginx/nginx.conf"
    ]
    assert 'add_header x-frame-options "SAMEORIGIN" always;' in conf
    assert "X-Frame-Options" not in conf


def test_unrouted_paths_are_404_not_the_default_page(tmp_path: Path) -> None:
    conf = _render(tmp_path)["nginx/nginx.conf"]
    assert "location / {\n            return 404;" in conf


def test_names_and_keys_yaml_could_misread_are_quoted(tmp_path: Path) -> None:
    data = minimal()
    data["services"]["agent"]["environment"] = {"ON": "1", "NULL": "x"}
    data["services"]["agent"]["image"] = "1234"
    loaded = parse_stack(yaml.safe_dump(data), tmp_path / "stack.yaml")
    compose = yaml.safe_load(render_files(loaded, fit(loaded), tmp_path)["docker-compose.yml"])
    agent = compose["services"]["agent"]
    assert agent["environment"] == {"ON": "1", "NULL": "x"}
    assert agent["image"] == "1234"


def test_monitoring_off_writes_no_prometheus_files(tmp_path: Path) -> None:
    files = _render(tmp_path, monitoring={"prometheus": False})
    assert not [name for name in files if name.startswith("prometheus/")]


def test_plan_stack_is_the_library_entry_point(repo: Path) -> None:
    """``ops.plan.plan_stack`` gives the committed files for the bundled stack, no CLI involved."""
    from ops.plan import plan_stack

    result = plan_stack(repo / "stack.yaml")
    assert result.files
    for name, text in result.files.items():
        assert (repo / name).read_text() == text, name
    assert result.plan.by_name()["agent"].replicas == 2
