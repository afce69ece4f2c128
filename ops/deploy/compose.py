"""The installed compose tool, driven with argument lists: docker-compose v1 or the v2 plugin.

``Compose.find()`` prefers the ``docker compose`` plugin (v2) when ``docker
compose version`` answers, and falls back to ``docker-compose`` (v1.27+, which
applies ``deploy.resources`` and ``deploy.replicas``). Every call names the
project (``-p``) and the files (``-f docker-compose.yml -f <override>``), so it
never depends on the current directory or a ``COMPOSE_*`` variable of the
caller: those are removed from the child's environment.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ops.errors import ExternalToolError, ToolMissing
from ops.proc import which

COMPOSE_TIMEOUT = 600.0
# docker-compose v1 says this on every call for the plan's CPU reservations, which
# it cannot apply (the plan gives them as cpu_shares too).
_NOISE = ("The following deploy sub-keys are not supported",)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    env["DOCKER_BUILDKIT"] = "0"
    return env


@dataclass(frozen=True)
class Compose:
    tool: tuple[str, ...]  # ("docker", "compose") or ("docker-compose",)
    version: str
    project: str
    files: tuple[Path, ...]

    @classmethod
    def find(cls, project: str, files: Sequence[Path]) -> Compose:
        docker = which("docker")
        probe = subprocess.run(  # noqa: S603 - an argument list, never a shell
            [docker, "compose", "version", "--short"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
            env=_env(),
        )
        if probe.returncode == 0 and probe.stdout.strip():
            return cls((docker, "compose"), probe.stdout.strip(), project, tuple(files))
        try:
            v1 = which("docker-compose")
        except ToolMissing:
            raise ToolMissing(
                "docker compose",
                "install the compose plugin or docker-compose (apt-get install docker-compose)",
            ) from None
        probe = subprocess.run(  # noqa: S603 - an argument list, never a shell
            [v1, "version", "--short"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
            env=_env(),
        )
        return cls((v1,), probe.stdout.strip() or "1", project, tuple(files))

    @property
    def v1(self) -> bool:
        return len(self.tool) == 1

    @property
    def name(self) -> str:
        return " ".join(Path(t).name for t in self.tool) + f" {self.version}"

    def argv(self, *args: str) -> list[str]:
        out = [*self.tool, "-p", self.project]
        for f in self.files:
            out += ["-f", str(f)]
        return [*out, *args]

    def run(
        self, *args: str, timeout: float = COMPOSE_TIMEOUT, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = self.argv(*args)
        try:
            proc = subprocess.run(  # noqa: S603 - an argument list, never a shell
                argv,
                capture_output=True,
                text=True,
                check=False,
                timeout=timeout,
                cwd=self.files[0].parent,
                env=_env(),
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise ExternalToolError(
                f"{self.name} {' '.join(args[:2])} gave no answer in {timeout:g}s"
            ) from None
        if check and proc.returncode != 0:
            lines = [
                line
                for line in (proc.stderr or proc.stdout).strip().splitlines()
                if not line.startswith(_NOISE) and line.strip()
            ]
            tail = "\n".join(lines[-8:])
            raise ExternalToolError(f"{self.name} {' '.join(args)} failed:\n{tail}")
        return proc

    def config_hashes(self, services: Sequence[str]) -> dict[str, str]:
        """What compose would stamp on each service's containers now
        (``com.docker.compose.config-hash``): a container with another hash is stale."""
        if not services:
            return {}
        out = self.run("config", "--hash", ",".join(services)).stdout
        hashes = {}
        for line in out.splitlines():
            name, _, digest = line.strip().partition(" ")
            if digest:
                hashes[name] = digest.strip()
        return hashes

    def up(
        self,
        service: str,
        *,
        scale: int | None = None,
        recreate: bool = True,
        timeout: float = COMPOSE_TIMEOUT,
    ) -> None:
        """Start one service alone (``--no-deps``: this module orders and waits)."""
        args = ["up", "-d", "--no-deps", "--no-build"]
        if not recreate:
            args.append("--no-recreate")
        if scale is not None:
            args += ["--scale", f"{service}={scale}"]
        if not self.v1:
            args += ["--pull", "never"]
        self.run(*args, service, timeout=timeout)

    def down(self, *, volumes: bool, timeout: float = COMPOSE_TIMEOUT) -> None:
        args = ["down", "--remove-orphans"]
        if volumes:
            args.append("--volumes")
        self.run(*args, timeout=timeout)
