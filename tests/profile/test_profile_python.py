"""`vots-ops profile` on real Python processes: on the host, in a container, as a service's replicas.

Each target burns CPU in a known function; the profile must name it. The CLI
is run as a user runs it (a subprocess), and every bad target must be one
line and exit 2.

Targets say "ready" once they burn CPU (or have made themselves undumpable),
and tests wait for that rather than for a fixed time; a stop (Ctrl-C, SIGTERM)
is sent once the profiler has been sampling for a while. Sample counts are
judged against the rate and the duration the profile reports, with room for
a busy machine, whose py-spy gets fewer turns on a CPU.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.profile.model import parse_folded
from tests.support.cli import Cli, signal_midway, wait_for
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
    hot(10)
    print("ready", flush=True)
    while True:
        hot(20000)


main(sys.argv[1])
"""


def vots(
    cli: Cli, *args: str, timeout: float = 120, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return cli.run("profile", *args, timeout=timeout, prefix=prefix)


def _no_such_pid() -> int:
    """A PID no process can have: above the kernel's pid_max."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prog") / f"hotprog_{uuid.uuid4().hex[:8]}.py"
    path.write_text(PROGRAM)
    return path


def _start(program: Path, which: str) -> subprocess.Popen[str]:
    """The program, once it says it is in its hot loop."""
    proc = subprocess.Popen(
        [sys.executable, str(program), which],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        stop_process(proc)
        pytest.fail(f"{program.name} {which} did not start (exit {proc.poll()})")
    return proc


@pytest.fixture
def alpha(program: Path) -> Iterator[subprocess.Popen[str]]:
    proc = _start(program, "alpha")
    try:
        yield proc
    finally:
        stop_process(proc)


def _json_run(cli: Cli, *args: str) -> dict[str, Any]:
    proc = vots(cli, *args, "--format", "json", "--out", str(cli.cwd / "runs"))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _sampler_running(proc: subprocess.Popen[str], seconds: float) -> Any:
    """A condition: ``proc`` has had a child (py-spy) for ``seconds``."""
    import time

    import psutil

    def sampling() -> bool:
        children = psutil.Process(proc.pid).children(recursive=True)
        return any(time.time() - c.create_time() >= seconds for c in children)

    return sampling


@pytest.mark.slow
def test_the_hot_function_tops_the_profile_and_the_files_are_valid(
    cli: Cli, alpha: subprocess.Popen[str]
) -> None:
    result = _json_run(cli, "--pid", str(alpha.pid), "--duration", "2s")
    top = result["top"][0]
    assert top["function"].startswith("alpha (hotprog_"), result["top"][:3]
    assert top["self_share"] > 0.8
    assert result["language"] == "python" and result["backend"] == "py-spy record"
    assert result["meta"]["blocking"] is False  # the low-overhead default
    # 100 Hz for the ~2 s it reports: never more than that; fewer when py-spy itself
    # waits for a CPU on a busy machine, but not a trickle.
    assert result["rate_hz"] == 100
    nominal = result["rate_hz"] * result["duration_s"]
    assert 0.1 * nominal <= result["samples"] <= 1.1 * nominal + 5, (result["samples"], nominal)
    run_dir = Path(result["run_dir"])
    assert {"profile.folded", "profile.json", "speedscope.json", "flamegraph.svg"} <= {
        p.name for p in run_dir.iterdir()
    }
    stacks = parse_folded((run_dir / "profile.folded").read_text())
    assert stacks
    assert sum(stacks.values()) == result["samples"]
    assert all(s[0].startswith("<module>") for s in stacks)  # root first
    speedscope = json.loads((run_dir / "speedscope.json").read_text())
    assert speedscope["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    assert sum(speedscope["profiles"][0]["weights"]) == result["samples"]
    svg = ET.parse(run_dir / "flamegraph.svg").getroot()
    assert svg.tag.endswith("svg")
    assert any("alpha" in (t.text or "") for t in svg.iter() if t.tag.endswith("title"))
    assert not list(cli.cwd.joinpath("runs").glob(".*")), "staging left behind"
    # The metadata and the top table have the typed shape other modules rely on.
    from ops.profile.model import ProfileMeta, TopRow

    assert set(result["meta"]) <= set(ProfileMeta.__annotations__), set(result["meta"])
    assert all(set(row) == set(TopRow.__annotations__) for row in result["top"])


@pytest.mark.slow
def test_table_output_names_the_hot_function(
    cli: Cli, alpha: subprocess.Popen[str], tmp_path: Path
) -> None:
    proc = vots(
        cli, "--match", f"{alpha.args[1]} alpha", "--duration", "1s", "--out", str(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    first_row = next(ln for ln in lines if "%" in ln)
    assert "alpha (hotprog_" in first_row
    assert "wrote" in proc.stderr and "flamegraph.svg" in proc.stderr


@pytest.mark.slow
def test_diff_shows_the_shift_between_two_runs(cli: Cli, program: Path) -> None:
    runs = []
    for which in ("alpha", "beta"):
        proc = _start(program, which)
        try:
            runs.append(_json_run(cli, "--pid", str(proc.pid), "--duration", "2s")["run_dir"])
        finally:
            stop_process(proc)
    out = vots(cli, "diff", runs[0], runs[1], "--format", "json")
    assert out.returncode == 0, out.stderr
    changes = {c["function"].split(" ")[0]: c for c in json.loads(out.stdout)["changes"]}
    assert changes["alpha"]["self_delta"] < -0.7 and changes["beta"]["self_delta"] > 0.7
    table = vots(cli, "diff", runs[0], runs[1])
    assert table.returncode == 0 and "alpha" in table.stdout and "pp" in table.stdout


def test_dump_prints_every_threads_stack(cli: Cli, alpha: subprocess.Popen[str]) -> None:
    proc = vots(cli, "--pid", str(alpha.pid), "--dump")
    assert proc.returncode == 0, proc.stderr
    assert f"PID {alpha.pid}): 1 threads" in proc.stdout
    assert "alpha (hotprog_" in proc.stdout and "main (hotprog_" in proc.stdout


@pytest.mark.slow
def test_ctrl_c_stops_early_and_keeps_the_samples(
    cli: Cli, alpha: subprocess.Popen[str], tmp_path: Path
) -> None:
    proc = cli.start(
        "profile", "--pid", str(alpha.pid), "--duration", "60s", "--format", "json",
        "--out", str(tmp_path / "runs"), start_new_session=True,
    )  # fmt: skip
    out, err, _ = signal_midway(
        proc, signal.SIGINT, group=True, timeout=60,
        when=_sampler_running(proc, 2.0), what="py-spy to sample for 2 s",
    )  # fmt: skip
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["meta"]["interrupted"] is True
    assert result["samples"] > 0 and result["duration_s"] < 60  # cut short, samples kept
    assert result["top"][0]["function"].startswith("alpha")


def _line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_bad_targets_are_one_line_and_exit_2(
    cli: Cli, alpha: subprocess.Popen[str], program: Path, tmp_path: Path
) -> None:
    unused = _no_such_pid()
    proc = vots(cli, "--pid", str(unused))
    assert proc.returncode == 2 and _line(proc) == f"error: no process with PID {unused}"

    proc = vots(cli, "--match", "no-such-program-[x]yz")
    assert proc.returncode == 2 and "no process matches" in _line(proc)

    second = _start(program, "alpha")
    try:
        proc = vots(cli, "--match", program.name)
    finally:
        stop_process(second)
    line = _line(proc)
    assert proc.returncode == 2 and line.startswith(f"error: 2 processes match '{program.name}'")
    assert line.endswith("[--match, --pid]")
    assert f"{alpha.pid}: " in line and f"{second.pid}: " in line
    assert not (tmp_path / "profile-runs").exists() or not any(
        (tmp_path / "profile-runs").iterdir()
    )


@pytest.mark.docker
def test_an_unknown_container_is_one_line_and_exit_2(cli: Cli, tmp_path: Path) -> None:
    proc = vots(cli, "--container", f"no-such-container-{uuid.uuid4().hex[:8]}")
    assert proc.returncode == 2 and "no container named 'no-such-container-" in _line(proc)
    runs = tmp_path / "profile-runs"
    assert not runs.exists() or not any(runs.iterdir())


def test_without_an_engine_a_container_target_names_the_engine(cli: Cli) -> None:
    """What a machine without Docker says (here: the address every unmarked test gets)."""
    proc = vots(cli, "--container", "web")
    assert proc.returncode == 2
    assert _line(proc).startswith(
        "error: cannot ask about container 'web': Docker engine not usable"
    )
    assert "socket not found" in _line(proc)


def test_ptrace_refused_names_the_missing_capability(cli: Cli) -> None:
    # A target that is not dumpable may only be read with CAP_SYS_PTRACE; the
    # profiler runs as root with that capability dropped (setpriv), for real.
    code = (
        "import ctypes; ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)\n"  # PR_SET_DUMPABLE 0
        "print('ready', flush=True)\n"
        "while True: sum(range(10000))"
    )
    target = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
    )
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is missing"
    try:
        assert target.stdout is not None and target.stdout.readline().strip() == "ready"
        proc = vots(
            cli,
            "--pid",
            str(target.pid),
            "--duration",
            "1s",
            prefix=(setpriv, "--bounding-set", "-sys_ptrace", "--inh-caps", "-sys_ptrace"),
        )
    finally:
        stop_process(target)
    assert proc.returncode == 2
    assert _line(proc).startswith(
        f"error: ptrace refused for PID {target.pid}: reading another process needs CAP_SYS_PTRACE"
    )


def test_a_missing_profiler_is_named_with_its_install_hint(
    cli: Cli, alpha: subprocess.Popen[str]
) -> None:
    proc = cli.run(
        "profile", "--pid", str(alpha.pid), "--language", "rust", "--duration", "1s",
        timeout=60, env={"PATH": "/nonexistent"},
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
    """Start the program in a container and return once it says it is in its hot loop."""
    args = ["run", "-d", "--name", name, "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    for k, v in (labels or {}).items():
        args += ["--label", f"{k}={v}"]
    _docker(*args, image, "python3", "-c", PROGRAM.replace("main(sys.argv[1])", f"main({which!r})"))
    wait_for(
        lambda: "ready" in _docker("logs", name), timeout=120, what=f"{name} to start its loop"
    )


@pytest.mark.docker
@pytest.mark.slow
def test_a_process_in_a_container_through_its_name(cli: Cli, image: str) -> None:
    name = f"vots-ops-test-prof-{uuid.uuid4().hex[:8]}"
    try:
        _run_container(image, name, "beta")
        result = _json_run(cli, "--container", name, "--duration", "2s")
    finally:
        _docker("rm", "-f", name)
    assert result["target"] == f"container {name}"
    assert result["top"][0]["function"].startswith("beta (<string>")
    assert result["top"][0]["self_share"] > 0.8
    host_pid = result["meta"]["pid"]
    assert host_pid != 1  # resolved to the host PID, sampled from the host


@pytest.mark.docker
@pytest.mark.slow
def test_every_replica_of_a_stack_service(cli: Cli, image: str, tmp_path: Path) -> None:
    project = f"votsprof{uuid.uuid4().hex[:6]}"
    names = [f"{project}_agent_{i}" for i in (1, 2)]
    labels = {"com.docker.compose.project": project, "com.docker.compose.service": "agent"}
    stack = tmp_path / "stack.yaml"
    stack.write_text(
        (Path(__file__).resolve().parents[2] / "stack.yaml")
        .read_text()
        .replace("project: vots", f"project: {project}")
    )
    try:
        for n in names:
            _run_container(image, n, "alpha", labels)
        result = _json_run(cli, "--service", "agent", "--stack", str(stack), "--duration", "2s")
    finally:
        for n in names:
            _docker("rm", "-f", n)
    assert set(result["target"].split(", ")) == {f"container {n}" for n in names}
    replicas = result["meta"]["replicas"]
    assert len(replicas) == 2 and len({r["pid"] for r in replicas}) == 2  # two host processes
    assert result["top"][0]["function"].startswith("alpha (<string>")
    # Two samplers at 100 Hz, merged: up to twice what one could take in that time.
    assert 0 < result["samples"] <= 2 * (1.1 * result["rate_hz"] * result["duration_s"] + 5)


@pytest.mark.slow
def test_sigterm_stops_sampling_and_leaves_nothing_half_written(
    cli: Cli, alpha: subprocess.Popen[str], tmp_path: Path
) -> None:
    import psutil

    proc = cli.start(
        "profile", "--pid", str(alpha.pid), "--duration", "60s", "--format", "json",
        "--out", str(tmp_path / "runs"),
    )  # fmt: skip
    out, err, children = signal_midway(
        proc, signal.SIGTERM, timeout=60,
        when=_sampler_running(proc, 2.0), what="py-spy to sample for 2 s",
    )  # fmt: skip
    assert children, "py-spy is not running"
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["meta"]["interrupted"] is True and result["samples"] > 0
    assert result["duration_s"] < 60
    _gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"the profiler kept running: {alive}"
    assert not list((tmp_path / "runs").glob(".*")), "staging left behind"


@pytest.mark.slow
def test_py_spy_switches_reach_py_spy(cli: Cli, alpha: subprocess.Popen[str]) -> None:
    """Each switch is recorded in the profile's metadata as py-spy ran it."""
    result = _json_run(
        cli, "--pid", str(alpha.pid), "--profiler", "py-spy", "--duration", "1", "--rate", "50",
        "--no-native", "--gil", "--idle", "--no-subprocesses", "--blocking",
    )  # fmt: skip
    meta = result["meta"]
    assert result["rate_hz"] == 50 and result["duration_s"] <= 2
    assert (meta["native"], meta["gil"], meta["idle"]) == (False, True, True)
    assert (meta["subprocesses"], meta["blocking"]) == (False, True)
    assert result["top"][0]["function"].startswith("alpha")
    result = _json_run(
        cli, "--pid", str(alpha.pid), "--duration", "1", "--native",
        "--no-gil", "--no-idle", "--subprocesses",
    )  # fmt: skip
    meta = result["meta"]
    # Native frames are read only while the process is paused: --native implies
    # --blocking (and --native --nonblocking is refused, see test_profile_safety).
    assert (meta["native"], meta["blocking"]) == (True, True)
    assert (meta["gil"], meta["idle"], meta["subprocesses"]) == (False, False, True)


def test_profiler_and_rate_are_checked_before_sampling(
    cli: Cli, alpha: subprocess.Popen[str]
) -> None:
    proc = vots(cli, "--pid", str(alpha.pid), "--language", "go", "--profiler", "py-spy")
    assert proc.returncode == 2
    assert _line(proc) == (
        "error: py-spy profiles Python, not go; choose the perf or pprof profiler [--profiler]"
    )
    proc = vots(cli, "--pid", str(alpha.pid), "--rate", "5000")
    assert proc.returncode == 2 and "--rate" in proc.stderr


def test_diff_min_delta_hides_small_changes(cli: Cli, tmp_path: Path) -> None:
    base, new = tmp_path / "base.folded", tmp_path / "new.folded"
    base.write_text("main;a 90\nmain;b 10\n")
    new.write_text("main;a 60\nmain;b 38\nmain;c 2\n")

    def changed(*extra: str) -> set[str]:
        proc = vots(cli, "diff", str(base), str(new), "--format", "json", *extra)
        assert proc.returncode == 0, proc.stderr
        return {c["function"] for c in json.loads(proc.stdout)["changes"]}

    assert changed("--min-delta", "0.5") == {"a", "b", "c"}
    assert changed("--min-delta", "5") == {"a", "b"}  # c moved 2 points


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.slow
def test_started_with_sigint_ignored_sigterm_still_stops_the_profiler(
    cli: Cli, alpha: subprocess.Popen[str], tmp_path: Path
) -> None:
    """A background job of a script (or nohup under some shells) starts with SIGINT
    ignored, and a child inherits that: the SIGINT vots-ops forwards on SIGTERM would
    then be lost and py-spy would sample on. py-spy must start with SIGINT at its
    default, and SIGTERM to vots-ops must stop it, keeping the samples."""
    import psutil

    proc = cli.start(
        "profile", "--pid", str(alpha.pid), "--duration", "60s", "--format", "json",
        "--out", str(tmp_path / "runs"), preexec_fn=_ignore_sigint,
    )  # fmt: skip
    sampling = _sampler_running(proc, 2.0)
    ignored: list[int] = []

    def started() -> bool:
        if not sampling():
            return False
        for child in psutil.Process(proc.pid).children(recursive=True):
            status = Path(f"/proc/{child.pid}/status").read_text()
            ignored.append(int(status.split("SigIgn:")[1].split()[0], 16))
        return True

    out, err, children = signal_midway(
        proc, signal.SIGTERM, timeout=60, when=started, what="py-spy to sample for 2 s"
    )
    assert children and ignored, "py-spy is not running"
    assert not any(mask & (1 << (signal.SIGINT - 1)) for mask in ignored), ignored
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["meta"]["interrupted"] is True and result["samples"] > 0
    _gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"the profiler kept running: {alive}"


def test_flags_name_the_fix_and_a_bare_number_is_seconds(
    cli: Cli, alpha: subprocess.Popen[str]
) -> None:
    """The library's errors name its inputs; the CLI adds the flags."""
    proc = vots(cli, "--pid", str(alpha.pid), "--container", "web", "--duration", "8")
    assert proc.returncode == 2
    assert _line(proc) == (
        "error: give one target, not pid and container: a pid, a container or a service "
        "(a match may narrow a container or service) [--pid, --container]"
    )
    proc = vots(cli, "--pid", str(alpha.pid), "--heap")
    assert proc.returncode == 2 and _line(proc).endswith("[--pprof-url URL]")
    proc = vots(cli, "--duration", "0")
    assert proc.returncode == 2 and "expected a duration above zero" in proc.stderr


def test_samples_without_frames_are_skipped_not_fatal() -> None:
    assert parse_folded("a;b 3\n 2\nc 1\n") == {("a", "b"): 3, ("c",): 1}
    with pytest.raises(ValueError, match="not a folded stack line"):
        parse_folded("a;b three\n")
