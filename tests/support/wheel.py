"""The built wheel in a fresh venv, as a user installs it: for tests of what ships.

``install_wheel()`` builds the checkout's wheel and installs it, with the extras
asked for and nothing else, into a new venv (uv when it is there, else ``build``
and pip). ``Installed.run()`` runs that venv's ``vots-ops`` (or ``python``)
through the sealed CLI environment, with the checkout's venv off PATH, so a
program or package of the checkout can never stand in for a missing one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.cli import Cli
from tests.support.stacks import REPO


def _checkout_bin() -> str:
    return str(Path(sys.executable).parent)


def path_without_checkout_venv() -> str:
    return os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p != _checkout_bin()
    )


def _build_env() -> dict[str, str]:
    """For building and installing the wheel: the caller's environment (a package index
    or proxy it sets is needed), without the checkout's venv or any vots-ops setting."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"} and not k.startswith("VOTS_OPS_")
    }
    env["PATH"] = path_without_checkout_venv()
    return env


def run_checked(
    argv: list[str], *, cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_build_env(),
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"{argv} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _uv() -> str | None:
    """uv from PATH or next to the checkout's Python (``.ci/setup`` puts it there)."""
    here = Path(_checkout_bin()) / "uv"
    return shutil.which("uv") or (str(here) if here.is_file() else None)


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def run(
        self,
        cli: Cli,
        *args: str,
        cwd: Path,
        python: bool = False,
        ok: tuple[int, ...] = (0,),
        env: dict[str, str] | None = None,
    ) -> Any:
        """The wheel's ``vots-ops`` (or its ``python``) in the sealed CLI environment,
        with no trace of the checkout's venv on PATH; another exit code fails the test."""
        program = (str(self.venv / "bin" / ("python" if python else "vots-ops")),)
        full = {"PATH": path_without_checkout_venv(), **(env or {})}
        proc = cli.run(*args, cwd=cwd, timeout=180, env=full, program=program)
        assert proc.returncode in ok, (
            f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
        return proc

    def distributions(self) -> set[str]:
        """The names of every distribution installed in the venv, normalised (PEP 503)."""
        probe = (
            "import importlib.metadata as m, re\n"
            "for d in m.distributions():\n"
            "    print(re.sub(r'[-_.]+', '-', d.metadata['Name']).lower())\n"
        )
        proc = run_checked([str(self.python), "-c", probe], cwd=self.venv)
        return set(proc.stdout.split())


def install_wheel(root: Path, extras: str = "") -> Installed:
    """Build the wheel into ``root/dist`` and install it (``extras`` like ``"[loadtest]"``)
    into the new venv ``root/venv``."""
    dist, venv = root / "dist", root / "venv"
    uv = _uv()
    if uv:
        run_checked([uv, "build", "--wheel", "--out-dir", str(dist), str(REPO)], cwd=REPO)
        run_checked([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], cwd=root)
    else:
        run_checked(
            [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(REPO)], cwd=REPO
        )
        run_checked([sys.executable, "-m", "venv", str(venv)], cwd=root)
    (wheel,) = dist.glob("vots_ops-*.whl")
    python = venv / "bin" / "python"
    target = f"{wheel}{extras}"
    if uv:
        run_checked([uv, "pip", "install", "--quiet", "--python", str(python), target], cwd=root)
    else:
        run_checked([str(python), "-m", "pip", "install", "--quiet", target], cwd=root)
    return Installed(wheel, venv)
