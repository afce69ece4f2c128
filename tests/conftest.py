"""Shared fixtures. Tests use the real tools (nginx, promtool, docker-compose, Docker);
`make test` installs them, so a missing tool is a failure, not a skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.stacks import BUNDLED, REPO

os.environ.setdefault("NO_COLOR", "1")
os.environ.setdefault("COLUMNS", "120")


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def bundled_stack() -> Path:
    return BUNDLED
