"""Reading Prometheus text as Prometheus does, for the tests of ``report``'s outputs."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

Labels = frozenset[tuple[str, str]]


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool is not installed (apt-get install prometheus)"
    return subprocess.run(
        [exe, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )


def assert_lint_clean(text: str) -> None:
    proc = promtool_check(text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "" and proc.stderr.strip() == "", proc.stdout + proc.stderr


def parse(text: str) -> dict[str, dict[Labels, float]]:
    """sample name -> {labels: value}, through prometheus_client's own text parser."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = frozenset(s.labels.items())
            assert key not in out.setdefault(s.name, {}), f"duplicate series {s.name}{s.labels}"
            out[s.name][key] = s.value
    return out


def one(series: dict[Labels, float], **want: str) -> float:
    found = [v for k, v in series.items() if set(want.items()) <= set(k)]
    assert len(found) == 1, (want, series)
    return found[0]


def family_types(text: str) -> dict[str, str]:
    return {
        line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE ")
    }


def get(url: str, accept: str | None = None) -> tuple[int, str, str]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def wait_for(check: Any, what: str, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")
