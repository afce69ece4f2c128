"""`vots-ops profile` on real Python processes: on the host, in a container, as a service's replicas.

Each target burns CPU in a known function; the profile must name it. The CLI
is run as a user runs it (a subprocess), and every bad target must be one
line and exit 2.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.profile.model import parse_folded
from tests.support import cli
from tests.support.processes import stop_process
from tests.support.python_image import python_image

PROGRAM = """\
import sys, time


def alpha(n):
    s = 0
    for i in range(n):
        s += i * i
    return s


def beta(n):
    s = 1
    for i in range(n):
        s = (s * 31 + i) % 1000003
    return s


def main(which):
    hot = alpha if which == "alpha" else beta
    while True:
        hot(20000)


main(sys.argv[1])
"""


def vots(
    *args: str, cwd: Path, timeout: float = 120, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return cli.run("profile", *args, cwd=cwd, timeout=timeout, prefix=prefix)


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prog") / f"hotprog_{uuid.uuid4().hex[:8]}.py"
    path.write_text(PROGRAM)
    return path


def _start(program: Path, which: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, str(program), which], stdin=subprocess.DEVNULL)
    time.sleep(0.3)
    assert proc.poll() is None
    return proc


@pytest.fixture
def alpha(program: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = _start(program, "alpha")
    try:
        yield proc
    finally:
        stop_process(proc)


def _json_run(*args: str, cwd: Path) -> dict[str, Any]:
    proc = vots(*args, "--format", "json", "--out", str(cwd / "runs"), cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_hot_function_tops_the_profile_and_the_files_are_valid(
    alpha: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    result = _json_run("--pid", str(alpha.pid), "--duration", "2s", cwd=tmp_path)
    top = result["top"][0]
    assert top["function"].startswith("alpha (hotprog_"), result["top"][:3]
    assert top["self_share"] > 0.8
    assert result["language"] == "python" and result["backend"] == "py-spy record"
    assert result["meta"]["blocking"] is False  # the low-overhead default
    # 100 Hz for ~2 s
    assert 120 <= result["samples"] <= 260, result["samples"]
    run_dir = Path(result["run_dir"])
    assert {"profile.folded", "profile.json", "speedscope.json", "flamegraph.svg"} <= {
        p.name for p in run_dir.iterdir()
    }
    stacks = parse_folded((run_dir / "profile.folded").read_text())
    assert sum(stacks.values()) == result["samples"]
    assert all(s[0].startswith("<module>") for s in stacks)  # root first
    speedscope = json.loads((run_dir / "speedscope.json").read_text())
    assert speedscope["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    assert sum(speedscope["profiles"][0]["weights"]) == result["samples"]
    svg = ET.parse(run_dir / "flamegraph.svg").getroot()
    assert svg.tag.endswith("svg")
    assert any("alpha" in (t.text or "") for t in svg.iter() if t.tag.endswith("title"))
    assert not list(tmp_path.joinpath("runs").glob(".*")), "staging left behind"


def test_table_output_names_the_hot_function(
    alpha: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    proc = vots(
        "--match",
        f"{alpha.args[1]} alpha",
        "--duration",
        "1s",
        "--out",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    first_row = next(ln for ln in lines if "%" in ln)
    assert "alpha (hotprog_" in first_row
    assert "wrote" in proc.stderr and "flamegraph.svg" in proc.stderr


def test_diff_shows_the_shift_between_two_runs(program: Path, tmp_path: Path) -> None:
    runs = []
    for which in ("alpha", "beta"):
        proc = _start(program, which)
        try:
            runs.append(
                _json_run("--pid", str(proc.pid), "--duration", "2s", cwd=tmp_path)["run_dir"]
            )
        finally:
            stop_process(proc)
    out = vots("diff", runs[0], runs[1], "--format", "json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    changes = {c["function"].split(" ")[0]: c for c in json.loads(out.stdout)["changes"]}
    assert changes["alpha"]["self_delta"] < -0.7 and changes["beta"]["self_delta"] > 0.7
    table = vots("diff", runs[0], runs[1], cwd=tmp_path)
    assert table.returncode == 0 and "alpha" in table.stdout and "pp" in table.stdout


def test_dump_prints_every_threads_stack(alpha: subprocess.Popen[bytes], tmp_path: Path) -> None:
    proc = vots("--pid", str(alpha.pid), "--dump", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"PID {alpha.pid}): 1 threads" in proc.stdout
    assert "alpha (hotprog_" in proc.stdout and "main (hotprog_" in proc.stdout


def test_ctrl_c_stops_early_and_keeps_the_samples(
    alpha: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    proc = cli.start(
        "profile", "--pid", str(alpha.pid), "--duration", "60s", "--format", "json",
        "--out", str(tmp_path / "runs"), cwd=tmp_path, start_new_session=True,
    )  # fmt: skip
    out, err, _ = cli.signal_midway(proc, signal.SIGINT, after=3, group=True, timeout=30)
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["meta"]["interrupted"] is True
    assert result["samples"] > 100 and result["duration_s"] < 20
    assert result["top"][0]["function"].startswith("alpha")


def _line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_bad_targets_are_one_line_and_exit_2(
    alpha: subprocess.Popen[bytes], program: Path, tmp_path: Path
) -> None:
    unused = 4_000_000  # above pid_max's default
    proc = vots("--pid", str(unused), cwd=tmp_path)
    assert proc.returncode == 2 and _line(proc) == f"error: no process with PID {unused}"

    proc = vots("--match", "no-such-program-[x]yz", cwd=tmp_path)
    assert proc.returncode == 2 and "no process matches" in _line(proc)

    second = _start(program, "alpha")
    try:
        proc = vots("--match", program.name, cwd=tmp_path)
    finally:
        stop_process(second)
    line = _line(proc)
    assert proc.returncode == 2 and line.startswith(f"error: 2 processes match '{program.name}'")
    assert f"{alpha.pid}: " in line and f"{second.pid}: " in line

    proc = vots("--container", "no-such-container-xyz", cwd=tmp_path)
    assert proc.returncode == 2 and "no container named 'no-such-container-xyz'" in _line(proc)
    assert not (tmp_path / "profile-runs").exists() or not any(
        (tmp_path / "profile-runs").iterdir()
    )


def test_ptrace_refused_names_the_missing_capability(tmp_path: Path) -> None:
    # A target that is not dumpable may only be read with CAP_SYS_PTRACE; the
    # profiler runs as root with that capability dropped (setpriv), for real.
    code = "import ctypes; ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)\nwhile True: sum(range(10000))"
    target = subprocess.Popen([sys.executable, "-c", code])
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is missing"
    try:
        time.sleep(0.3)
        proc = vots(
            "--pid",
            str(target.pid),
            "--duration",
            "1s",
            cwd=tmp_path,
            prefix=(setpriv, "--bounding-set", "-sys_ptrace", "--inh-caps", "-sys_ptrace"),
        )
    finally:
        stop_process(target)
    assert proc.returncode == 2
    assert _line(proc).startswith(
        f"error: ptrace refused for PID {target.pid}: reading another process needs CAP_SYS_PTRACE"
    )


def test_a_missing_profiler_is_named_with_its_install_hint(
    alpha: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    proc = cli.run(
        "profile", "--pid", str(alpha.pid), "--language", "rust", "--duration", "1s",
        cwd=tmp_path, timeout=60, env=cli.cli_env(PATH="/nonexistent"),
    )  # fmt: skip
    assert proc.returncode == 2
    assert "perf" in _line(proc) and "apt-get install linux-perf" in _line(proc)


# --------------------------------------------------------------------------- containers


def _docker(*args: str, timeout: float = 120) -> str:
    docker = shutil.which("docker")
    assert docker
    proc = subprocess.run(
        [docker, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def image() -> str:
    return python_image()


def _run_container(image: str, name: str, which: str, labels: dict[str, str] | None = None) -> None:
    args = ["run", "-d", "--name", name, "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    for k, v in (labels or {}).items():
        args += ["--label", f"{k}={v}"]
    _docker(*args, image, "python3", "-c", PROGRAM.replace("main(sys.argv[1])", f"main({which!r})"))


def test_a_process_in_a_container_through_its_name(image: str, tmp_path: Path) -> None:
    name = f"vots-ops-test-prof-{uuid.uuid4().hex[:8]}"
    _run_container(image, name, "beta")
    try:
        time.sleep(1.0)
        result = _json_run("--container", name, "--duration", "2s", cwd=tmp_path)
    finally:
        _docker("rm", "-f", name)
    assert result["target"] == f"container {name}"
    assert result["top"][0]["function"].startswith("beta (<string>")
    assert result["top"][0]["self_share"] > 0.8
    host_pid = result["meta"]["pid"]
    assert host_pid != 1  # resolved to the host PID, sampled from the host


def test_every_replica_of_a_stack_service(image: str, tmp_path: Path) -> None:
    project = f"votsprof{uuid.uuid4().hex[:6]}"
    names = [f"{project}_agent_{i}" for i in (1, 2)]
    labels = {"com.docker.compose.project": project, "com.docker.compose.service": "agent"}
    stack = tmp_path / "stack.yaml"
    stack.write_text(
        (Path(__file__).resolve().parents[2] / "stack.yaml")
        .read_text()
        .replace("project: vots", f"project: {project}")
    )
    for n in names:
        _run_container(image, n, "alpha", labels)
    try:
        time.sleep(1.0)
        result = _json_run(
            "--service", "agent", "--stack", str(stack), "--duration", "2s", cwd=tmp_path
        )
    finally:
        for n in names:
            _docker("rm", "-f", n)
    assert set(result["target"].split(", ")) == {f"container {n}" for n in names}
    assert len(result["meta"]["replicas"]) == 2
    assert result["top"][0]["function"].startswith("alpha (<string>")
    assert result["samples"] >= 300  # two replicas at 100 Hz for ~2 s


def test_sigterm_stops_sampling_and_leaves_nothing_half_written(
    alpha: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    import psutil

    proc = cli.start(
        "profile", "--pid", str(alpha.pid), "--duration", "60s", "--format", "json",
        "--out", str(tmp_path / "runs"), cwd=tmp_path,
    )  # fmt: skip
    out, err, children = cli.signal_midway(proc, signal.SIGTERM, after=3, timeout=30)
    assert children, "py-spy is not running"
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["meta"]["interrupted"] is True and result["samples"] > 50
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"the profiler kept running: {alive}"
    assert not list((tmp_path / "runs").glob(".*")), "staging left behind"


def test_samples_without_frames_are_skipped_not_fatal() -> None:
    assert parse_folded("a;b 3\n 2\nc 1\n") == {("a", "b"): 3, ("c",): 1}
    with pytest.raises(ValueError, match="not a folded stack line"):
        parse_folded("a;b three\n")
