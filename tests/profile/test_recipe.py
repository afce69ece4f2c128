"""profiles/*.yaml: the bundled recipes are valid; bad ones are one line with file, line and key."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from ops.errors import SpecError
from ops.profile.recipe import find_recipe, load_recipe
from tests.support.cli import Cli

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
description: test
target:
  service: agent
  match: uvicorn
language: python
duration: 5s
rate: 100
options:
  native: false
"""


def test_bundled_recipes_are_valid() -> None:
    recipes = {p.stem: load_recipe(p) for p in (ROOT / "profiles").glob("*.yaml")}
    assert {"agent", "rag", "go-service", "rust-service"} <= set(recipes)
    assert recipes["agent"].target is not None and recipes["agent"].target.service == "agent"
    assert recipes["agent"].chosen_profiler == "py-spy"
    assert (
        recipes["go-service"].chosen_profiler == "pprof" and recipes["go-service"].pprof is not None
    )
    assert recipes["rust-service"].chosen_profiler == "perf"


@pytest.mark.parametrize(
    ("old", "new", "line", "key", "message"),
    [
        ("rate: 100", "rate: 5000", 7, "rate", "less than or equal to 1000"),
        ("duration: 5s", "duration: 2h", 6, "duration", "at most 1h"),
        ("language: python", "language: cobol", 5, "language", "'python', 'go' or 'rust'"),
        ("  native: false", "  natve: false", 9, "options.natve", "did you mean 'native'"),
        ("  match: uvicorn", "  match: '(['", 4, "target.match", "not a regular expression"),
        (
            "  service: agent",
            "  service: agent\n  pid: 3",
            2,
            "target",
            "give one of service, container or pid",
        ),
        ("language: python", "language: go", 1, None, "profiler pprof needs pprof"),
    ],
)
def test_bad_recipes(
    tmp_path: Path, old: str, new: str, line: int, key: str | None, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    text = GOOD.replace(old, new)
    assert text != GOOD
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_recipe(path)
    err = info.value
    assert message in str(err), str(err)
    assert err.line == line and err.key == key, str(err)
    assert "\n" not in str(err)


def test_unknown_recipe_lists_the_known_ones() -> None:
    with pytest.raises(
        SpecError, match=r"did you mean 'agent'.*agent, go-service, rag, rust-service"
    ):
        find_recipe("agnet", ROOT / "profiles")


def test_cli_bad_recipe_exits_2_with_one_line(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "svc.yaml").write_text(GOOD.replace("rate: 100", "rate: fast"))
    proc = cli.run("profile", "svc", timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: profiles/svc.yaml:7: rate: input should be a valid number, unable to parse string as a number (got 'fast')"
    ]


RAG_VENV = ROOT / "services" / "rag" / ".venv" / "bin"


@pytest.mark.parametrize(
    "argv",
    [
        [str(RAG_VENV / "vots-rag"), "serve"],  # the console script, as the image runs it
        [str(RAG_VENV / "python"), "-m", "vots_rag.cli", "serve"],
    ],
    ids=["console-script", "python-m"],
)
def test_the_rag_recipe_matches_a_real_vots_rag_serve(tmp_path: Path, argv: list[str]) -> None:
    """The recipe's pattern picks the real service process, as `--service rag` does inside
    its container (the process tree the pattern is matched within)."""
    from ops.proc import free_port
    from ops.profile.target import TargetError, by_pattern
    from tests.support.processes import stop_process

    if not (RAG_VENV / "vots-rag").is_file():
        pytest.skip("the RAG service's venv is missing (bash .ci/setup test creates it)")
    recipe = load_recipe(ROOT / "profiles" / "rag.yaml")
    assert recipe.target is not None and recipe.target.service == "rag"
    assert recipe.target.match is not None
    (tmp_path / "root").mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "RAG_ROOT": str(tmp_path / "root"),
        "RAG_INDEX_DIR": str(tmp_path / "index"),
        "RAG_BACKEND": "lexical",  # no model to load: the command line is what matters
    }
    port = str(free_port())
    proc = subprocess.Popen(
        [*argv, "--host", "127.0.0.1", "--port", port],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        found = by_pattern(recipe.target.match, within=[proc.pid])
        assert found.pid == proc.pid and " serve --host 127.0.0.1" in found.cmdline
        with pytest.raises(TargetError, match="no process in that container matches"):
            by_pattern("uvicorn", within=[proc.pid])  # what the recipe used to say
    finally:
        stop_process(proc)


AGENT_VENV = ROOT / "services" / "agent" / ".venv" / "bin"


@pytest.mark.slow
def test_the_agent_recipe_profiles_a_real_vots_agent_serve_and_its_workers(tmp_path: Path) -> None:
    """profiles/agent.yaml picks `vots-agent serve` and, following its subprocesses,
    samples the analysis workers where the time goes (ruff, bandit, radon)."""
    import json
    import threading

    import httpx

    from ops.proc import free_port
    from ops.profile.target import by_pattern
    from tests.support.processes import stop_process

    if not (AGENT_VENV / "vots-agent").is_file():
        pytest.skip("the agent service's venv is missing (bash .ci/setup test creates it)")
    recipe = load_recipe(ROOT / "profiles" / "agent.yaml")
    assert recipe.target is not None and recipe.target.service == "agent"
    assert recipe.target.match is not None and recipe.options.subprocesses
    port = free_port()
    proc = subprocess.Popen(
        [str(AGENT_VENV / "vots-agent"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AGENT_WORKERS": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    stop = threading.Event()
    url = f"http://127.0.0.1:{port}"

    def load() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            code = "".join(
                f"def f{i}_{n}(x, y=[]):\n    return x if x else y\n\n\n" for i in range(300)
            )
            try:
                httpx.post(f"{url}/api/v1/analyze_code", json={"code": code}, timeout=120)
            except httpx.HTTPError:
                stop.wait(0.2)

    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        found = by_pattern(recipe.target.match, within=[proc.pid])
        assert found.pid == proc.pid
        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        out = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "vots-ops"), "profile", "run", "agent",
             "--recipes", str(ROOT / "profiles"), "--pid", str(proc.pid), "--duration", "4s",
             "--out", str(tmp_path / "runs"), "--format", "json", "--top", "200"],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )  # fmt: skip
        stop.set()
        loader.join(timeout=180)
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        where = json.dumps(doc)
        assert "vots_agent" in where and ("radon" in where or "bandit" in where), where[:2000]
    finally:
        stop.set()
        stop_process(proc)
