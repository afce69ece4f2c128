"""Headless Chromium (Debian's package) for tests that must see a page as a browser renders it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

CHROMIUM_TIMEOUT_S = 60


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    """Headless Chromium with an argument list, killed (its whole process group)
    if it outlives the timeout."""
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium is missing: apt-get install chromium (`.ci/setup test` does)")
    argv = [
        exe,
        "--headless=new",
        "--no-sandbox",  # tests run as root in CI
        "--disable-gpu",
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--hide-scrollbars",
        *args,
    ]
    env = {**os.environ, "HOME": str(profile), "XDG_CONFIG_HOME": str(profile / "config")}
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group: the renderers die with it
    )
    try:
        out, err = proc.communicate(timeout=CHROMIUM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium did not finish within {CHROMIUM_TIMEOUT_S}s: {argv}")
    finally:
        with contextlib.suppress(ProcessLookupError):  # helpers that outlived the browser
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-2000:]
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)
