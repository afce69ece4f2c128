"""Fixtures with real parts: the API under uvicorn in its own process, a real
redis-server, the RAG service (``vots-rag serve``) over this repository, and an
OpenAI-compatible endpoint started here (no model server exists on this machine:
``llm_server.py`` answers like one, in the modes the tests need)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent
SERVICE = HERE.parent
REPO = SERVICE.parent.parent
BIN = Path(sys.executable).parent
RAG_BIN = REPO / "services" / "rag" / ".venv" / "bin" / "vots-rag"
ENV_PREFIXES = ("AGENT_", "LLM_", "RAG_")
ENV_NAMES = ("REDIS_URL", "LOG_LEVEL", "CHROMA_URL")

# A file with findings the tests know: ruff F401 (unused import) on line 1 and
# B006 (mutable default) on line 5; bandit B602 (shell=True, CWE-78) on line 6.
KNOWN = """import os
import subprocess


def run(cmd, extra=[]):
    subprocess.call(cmd, shell=True)
    return extra
"""


@pytest.fixture(autouse=True)
def _sealed_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No settings leak in from the caller's environment."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES) or name in ENV_NAMES:
            monkeypatch.delenv(name)


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES) and k not in ENV_NAMES
    }
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(
    url: str,
    *,
    ok: tuple[int, ...] = (200,),
    timeout: float = 120.0,
    proc: subprocess.Popen[bytes] | None = None,
) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before {url} answered")
        try:
            r = httpx.get(url, timeout=5.0)
            if r.status_code in ok:
                return r
            last = r.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {ok} in {timeout} s (last: {last})")


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    argv: list[str] = field(default_factory=list)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        # Nothing of the group may outlive the test (the analysis workers included).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return int(self.proc.returncode)


def start(
    argv: list[str], log: Path, url: str, env: dict[str, str], ready: str, ok: tuple[int, ...]
) -> Server:
    out = log.open("wb")
    proc = subprocess.Popen(
        argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    out.close()
    server = Server(proc, url, log, argv)
    try:
        wait_http(url + ready, ok=ok, proc=proc, timeout=180)
    except AssertionError as exc:
        server.stop(signal.SIGKILL)
        raise AssertionError(f"{exc}\n{server.output()[-3000:]}") from None
    return server


def start_agent(tmp_path: Path, *, ready: bool = True, **env: str) -> Server:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env.setdefault("AGENT_WORKERS", "2")
    log = tmp_path / f"agent-{port}.log"
    server = start(
        [str(BIN / "vots-agent"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        log,
        url,
        clean_env(**env),
        "/readyz" if ready else "/healthz",
        (200,),
    )
    return server


@pytest.fixture
def agent_factory(tmp_path: Path) -> Iterator[object]:
    started: list[Server] = []

    def make(**env: str) -> Server:
        s = start_agent(tmp_path, **env)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@dataclass
class Redis:
    port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise AssertionError("redis-server is not installed (bash .ci/setup test installs it)")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stored(self) -> list[str]:
        import redis

        return sorted(k.decode() for k in redis.Redis(port=self.port).keys("*"))


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Redis]:
    r = Redis(free_port(), tmp_path)
    r.start()
    yield r
    r.stop()


@pytest.fixture(scope="session")
def rag_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The RAG service, for real, over this repository (the lexical backend: the
    whole tree indexes in seconds where embedding it would take minutes)."""
    if not RAG_BIN.exists():
        raise AssertionError(f"{RAG_BIN} missing: bash .ci/setup test sets up services/rag")
    base = tmp_path_factory.mktemp("rag")
    env = clean_env(ANONYMIZED_TELEMETRY="FALSE")
    common = ["--root", str(REPO), "--index", str(base / "index"), "--backend", "lexical"]
    subprocess.run(
        [str(RAG_BIN), "ingest", *common], env=env, check=True, capture_output=True, timeout=600
    )
    port = free_port()
    server = start(
        [str(RAG_BIN), "serve", "--port", str(port), *common],
        base / "rag.log",
        f"http://127.0.0.1:{port}",
        env,
        "/readyz",
        (200,),
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("llm")
    port = free_port()
    server = start(
        [sys.executable, str(HERE / "llm_server.py"), str(port)],
        base / "llm.log",
        f"http://127.0.0.1:{port}",
        clean_env(),
        "/health",
        (200,),
    )
    yield server
    server.stop()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus exposition (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0
