"""Shared fixtures. Tests use the real tools (nginx, promtool, docker-compose, Docker);
`.ci/test` installs them, so a missing tool is a failure, not a skip.

Two things hold for every test, whatever the developer's shell exports:

* The test process itself runs sealed: no ``VOTS_OPS_*`` setting of the shell
  (a default stack, history or run directory), pinned ``NO_COLOR``, ``COLUMNS``
  and ``TZ``, and ``XDG_STATE_HOME`` in a directory of each test's own. CLI
  runs go through the ``cli`` fixture (tests/support/cli.py), which seals the
  child's environment the same way.
* Only a test marked ``docker`` reaches the Docker engine. For any other test,
  ``DOCKER_HOST`` points at a socket that does not exist while its fixtures
  are set up and while it runs, so an unmarked test that touches the engine
  (the Docker SDK, ``docker``, ``docker-compose``, ``ops.engine``, a CLI run)
  fails loudly, also on a machine that has an engine. That keeps
  ``pytest -m "not docker"`` honest on a machine without one.

Tests that take more than a few seconds are marked ``slow``; the end of a run
names unmarked ones that took longer than ``SLOW_S`` (setup included).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import Cli
from tests.support.stacks import BUNDLED, REPO

# A suite started as `cmd &` from a script (POSIX shells ignore SIGINT in such
# jobs) or by a CI runner that ignores it would pass the ignored SIGINT on to this
# process and every child: Ctrl-C tests would see nothing. Tests get SIGINT as a
# terminal delivers it; a test of an ignored signal sets that up itself.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# What the test process pins for in-process code (Rich tables, time formatting).
PINNED = {"NO_COLOR": "1", "COLUMNS": "120", "TZ": "UTC"}
# Test-only switches of our own (e.g. VOTS_OPS_REGEN_PERF_FIXTURES) survive the seal.
KEEP_PREFIX = "VOTS_OPS_REGEN_"
NO_ENGINE = "unix:///nonexistent/vots-ops-tests/not-marked-docker.sock"


def _seal_process_environment() -> None:
    for name in [n for n in os.environ if n.startswith("VOTS_OPS_")]:
        if not name.startswith(KEEP_PREFIX):
            del os.environ[name]
    os.environ.update(PINNED)
    time.tzset()


_seal_process_environment()


@pytest.fixture(autouse=True)
def _own_state_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A default history (``$XDG_STATE_HOME/vots-ops``) is never the developer's, nor
    another test's."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))


# --------------------------------------------------------------------- the docker marker

_REAL_KEY = pytest.StashKey[object]()
_UNSET = object()


def _guard_engine(item: pytest.Item) -> None:
    if item.get_closest_marker("docker") is None:
        item.stash[_REAL_KEY] = os.environ.get("DOCKER_HOST", _UNSET)
        os.environ["DOCKER_HOST"] = NO_ENGINE


def _release_engine(item: pytest.Item) -> None:
    real = item.stash.get(_REAL_KEY, None)
    if real is None:
        return
    if real is _UNSET:
        os.environ.pop("DOCKER_HOST", None)
    else:
        os.environ["DOCKER_HOST"] = real  # type: ignore[assignment]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    # Before any fixture of the test is set up, session- and module-scoped ones included.
    _guard_engine(item)
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    # The real engine again for finalizers: a module's compose project may be torn
    # down in the teardown of whichever test of the module ran last.
    _release_engine(item)
    try:
        return (yield)
    finally:
        _release_engine(item)  # a test's monkeypatch.undo() may have put the guard back


# ----------------------------------------------------------------------- the slow marker

SLOW_S = 5.0  # unmarked tests above this are named at the end of the run
_UNMARKED_TIMES: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when in ("setup", "call") and "slow" not in report.keywords:
        _UNMARKED_TIMES[report.nodeid] = _UNMARKED_TIMES.get(report.nodeid, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """A hint, never a failure (it is wall-clock time): tests that slow down the
    ``-m "not docker and not slow"`` loop and may want ``@pytest.mark.slow``."""
    slow = sorted(((t, n) for n, t in _UNMARKED_TIMES.items() if t > SLOW_S), reverse=True)
    if slow:
        terminalreporter.section(f"unmarked tests over {SLOW_S:g} s (mark them slow?)")
        for seconds, nodeid in slow:
            terminalreporter.write_line(f"{seconds:6.1f}s  {nodeid}")


# --------------------------------------------------------------------------- fixtures


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
    return Cli.in_dir(tmp_path)
