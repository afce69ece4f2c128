"""Every example of `vots-ops profile --help` and of the README's profile section, run.

An example is run as written, with only its placeholders swapped for what
this test started: PID 4242 becomes a Python process (a Rust one for
``--language rust``), ``http://127.0.0.1:6060`` a Go program's pprof
endpoint, the ``agent`` service two containers with its Compose labels
(marked docker), ``profile-runs/agent-…`` two runs made here. An example no
runner here knows fails the collection test, so a new one cannot go
untested.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.cli.profile import profile as profile_group
from tests.profile.test_pprof import go_env, hot_binary, hot_proc, hot_url
from tests.profile.test_profile_python import PROGRAM, _docker, _start, image, program
from tests.support.cli import Cli, wait_for
from tests.support.processes import stop_process

__all__ = ["go_env", "hot_binary", "hot_proc", "hot_url", "image", "program"]  # fixtures

ROOT = Path(__file__).resolve().parents[2]


def _strip(line: str) -> str:
    return re.sub(r"\s+#.*$", "", line).strip()


def help_examples() -> list[str]:
    """The examples of ``vots-ops profile --help`` (its docstring's Examples block)."""
    text = profile_group.help or ""
    block = text.split("Examples:", 1)[1]
    return [_strip(ln) for ln in block.splitlines() if ln.strip().startswith("vots-ops profile")]


def readme_examples() -> list[str]:
    """The ``sh`` block of the README's `vots-ops profile` section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### `vots-ops profile`", 1)[1].split("\n### ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [_strip(ln) for ln in block.splitlines() if ln.startswith("vots-ops profile")]


def _kind(example: str) -> str:
    args = shlex.split(example)[2:]
    if args[:1] == ["diff"]:
        return "diff"
    if "--list" in args:
        return "list"
    if args[:1] == ["agent"] or "--service" in args:
        return "docker"
    if "--pprof-url" in args and "--pid" not in args:
        return "go"
    if "rust" in args:
        return "rust"
    return "python"


MARKS = {
    "docker": [pytest.mark.docker, pytest.mark.slow],
    "go": [pytest.mark.slow],
    "rust": [pytest.mark.slow],
    "python": [pytest.mark.slow],
    "diff": [pytest.mark.slow],
    "list": [],
}
EXAMPLES = list(dict.fromkeys(help_examples() + readme_examples()))


def test_the_examples_are_the_ones_help_prints(cli: Cli) -> None:
    shown = cli.run("profile", "--help")
    assert shown.returncode == 0
    printed = [_strip(ln) for ln in shown.stdout.splitlines() if "vots-ops profile" in ln]
    for example in help_examples():
        assert example in printed
    assert len(EXAMPLES) >= 10 and all(_kind(e) in MARKS for e in EXAMPLES)


@pytest.fixture
def alpha(program: Path) -> Iterator[subprocess.Popen[str]]:
    proc = _start(program, "alpha")
    try:
        yield proc
    finally:
        stop_process(proc)


@pytest.fixture
def named_agent(program: Path, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A Python process whose command line matches 'uvicorn .*agent'."""
    proc = subprocess.Popen(
        [sys.executable, str(program), "alpha", "uvicorn", f"app{uuid.uuid4().hex[:6]}:agent"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    try:
        yield proc
    finally:
        stop_process(proc)


@pytest.fixture
def agent_service(image: str, cli: Cli) -> Iterator[None]:
    """Two `agent` replicas of a stack.yaml project in cli's directory, run as the recipe expects."""
    project = f"votsex{uuid.uuid4().hex[:6]}"
    (cli.cwd / "stack.yaml").write_text(
        (ROOT / "stack.yaml").read_text().replace("project: vots", f"project: {project}")
    )
    names = [f"{project}_agent_{i}" for i in (1, 2)]
    labels = {"com.docker.compose.project": project, "com.docker.compose.service": "agent"}
    code = PROGRAM.replace("main(sys.argv[1])", "main('alpha')")
    try:
        for n in names:
            args = ["run", "-d", "--name", n, "--cap-drop", "ALL"]
            for k, v in labels.items():
                args += ["--label", f"{k}={v}"]
            # the recipe's match: a `vots-agent serve` command line
            _docker(*args, image, "python3", "-c", code, "vots-agent", "serve")
            wait_for(lambda n=n: "ready" in _docker("logs", n), timeout=120, what=f"{n}")
        yield
    finally:
        for n in names:
            _docker("rm", "-f", n)


def _rust_pid(request: pytest.FixtureRequest) -> Iterator[int]:
    from ops.profile.perf import perf_available
    from tests.profile import test_perf

    reason = perf_available()
    if reason is not None:
        pytest.fail(f"perf cannot sample here: {reason}", pytrace=False)
    binary = test_perf._cargo_build(
        request.config, request.getfixturevalue("tmp_path_factory"), test_perf.HOT_SRC, "target"
    )
    proc = test_perf._start_hot(binary)
    try:
        yield proc.pid
    finally:
        stop_process(proc)


def _run(cli: Cli, example: str, swap: dict[str, str]) -> subprocess.CompletedProcess[str]:
    args = shlex.split(example)[2:]
    args = [swap.get(a, a) for a in args]
    return cli.run("profile", *args, timeout=300)


@pytest.mark.parametrize(
    "example", [pytest.param(e, marks=MARKS[_kind(e)], id=e[17:60]) for e in EXAMPLES]
)
def test_the_example_runs(example: str, cli: Cli, request: pytest.FixtureRequest) -> None:
    kind = _kind(example)
    swap: dict[str, str] = {}
    rust: Iterator[int] | None = None
    if kind == "python":
        target = request.getfixturevalue("named_agent" if "--match" in example else "alpha")
        swap["4242"] = str(target.pid)
    elif kind == "rust":
        rust = _rust_pid(request)
        swap["4242"] = str(next(rust))
    elif kind == "go":
        swap["http://127.0.0.1:6060"] = request.getfixturevalue("hot_url")
    elif kind == "docker":
        request.getfixturevalue("agent_service")
    elif kind == "diff":
        target = request.getfixturevalue("alpha")
        for name in shlex.split(example)[3:]:
            made = cli.run(
                "profile", "--pid", str(target.pid), "--duration", "1", "--out", "made",
            )  # fmt: skip
            assert made.returncode == 0, made.stderr
            (run_dir,) = (cli.cwd / "made").iterdir()
            (cli.cwd / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(run_dir, cli.cwd / name)
    try:
        done = _run(cli, example, swap)
    finally:
        if rust is not None:
            rust.close()
    assert done.returncode == 0, f"{example}\n{done.stderr}"
    assert "Traceback" not in done.stderr
    if kind == "list":
        assert "agent" in done.stdout
    elif "--dump" in example:
        assert "Thread" in done.stdout
    elif kind != "diff":
        assert "wrote " in done.stderr + done.stdout
