"""Shared fixtures. Tests use the real tools (nginx, promtool, docker-compose, Docker);
`.ci/test` installs them, so a missing tool is a failure, not a skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.cli import Cli
from tests.support.stacks import BUNDLED, REPO

os.environ.setdefault("NO_COLOR", "1")
os.environ.setdefault("COLUMNS", "120")


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def bundled_stack() -> Path:
    return BUNDLED


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """`vots-ops` in a sealed environment, with this test's own state directory
    (so the default history is never the developer's) and ``tmp_path`` as cwd."""
    state = tmp_path / ".xdg-state"
    state.mkdir()
    return Cli(state, tmp_path)
