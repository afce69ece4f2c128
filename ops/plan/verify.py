"""Check rendered files with the real tools: nginx -t, promtool, the compose-spec
schema and docker-compose config.

nginx -t resolves upstream host names and opens certificate files, so the
check renders a twin of the nginx config whose upstreams point at loopback and
whose certificate is a throwaway self-signed one; everything else is the same
template output a deploy gets.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ops.extras import require_tool
from ops.files import write_all
from ops.plan.capacity import Plan
from ops.plan.render import NginxRuntime, render_files
from ops.proc import free_port, run, which
from ops.stack import LoadedStack, workloads

CHECKS = ("nginx", "promtool", "compose-schema", "docker-compose")
SWARM_CHECKS = ("nginx", "promtool", "docker-stack")


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    output: str

    @property
    def summary(self) -> str:
        """The line that says what is wrong: nginx's [emerg], promtool's FAILED, else the last."""
        lines = [line.strip() for line in self.output.splitlines() if line.strip()]
        for marker in ("[emerg]", "FAILED", "error", "Error"):
            for line in lines:
                if marker in line:
                    return line
        return lines[-1] if lines else "no output"


def self_signed_cert(directory: Path, domain: str = "localhost") -> tuple[Path, Path]:
    """A one-day EC certificate for tests and checks; never for production."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    if not cert.exists():
        run(
            [
                "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-days", "2", "-subj", f"/CN={domain}",
                "-addext", f"subjectAltName=DNS:{domain},DNS:localhost,IP:127.0.0.1",
                "-keyout", str(key), "-out", str(cert),
            ],
            check=True,
        )  # fmt: skip
    return cert, key


def local_runtime(
    workdir: Path,
    loaded: LoadedStack,
    *,
    upstreams: dict[str, list[str]] | None = None,
    http_port: int | None = None,
    https_port: int | None = None,
    status_port: int | None = None,
) -> NginxRuntime:
    """A runtime that lets the rendered nginx run unprivileged on loopback under ``workdir``."""
    cert, key = self_signed_cert(workdir / "tls", loaded.stack.domain)
    for sub in ("temp", "cache", "logs"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    if upstreams is None:
        upstreams = {
            w.name: [f"127.0.0.1:{w.port}"]
            for w in workloads(loaded.stack)
            if w.spec is not None and w.spec.routes
        }
    https_port = https_port or free_port()
    user = None
    if os.geteuid() == 0:
        import pwd

        user = pwd.getpwuid(0).pw_name
    return NginxRuntime(
        http_listen=f"127.0.0.1:{http_port or free_port()}",
        https_listen=f"127.0.0.1:{https_port}",
        https_port=https_port,
        status_listen=f"127.0.0.1:{status_port or free_port()}",
        certificate=str(cert),
        key=str(key),
        dhparam=str(workdir / "nginx" / "ffdhe2048.pem"),
        upstreams_file=str(workdir / "nginx" / "upstreams.conf"),
        user=user,
        pid=str(workdir / "nginx.pid"),
        error_log=str(workdir / "logs" / "error.log"),
        access_log=str(workdir / "logs" / "access.log"),
        temp_dir=str(workdir / "temp"),
        cache_dir=str(workdir / "cache"),
        upstreams=upstreams,
    )


def _result(name: str, argv: list[str], cwd: Path | None = None) -> CheckResult:
    proc = run(argv, timeout=120, cwd=cwd)
    output = (proc.stdout + proc.stderr).strip()
    return CheckResult(name, proc.returncode == 0, output)


def verify_plan(
    loaded: LoadedStack,
    plan: Plan,
    workdir: Path | None = None,
    checks: Iterable[str] = CHECKS,
    target: str = "compose",
) -> list[CheckResult]:
    """Render into ``workdir`` (a temp dir by default) and run each real checker on it."""
    checks = list(checks)
    for check in checks:
        if check not in (*CHECKS, *SWARM_CHECKS):
            raise ValueError(f"unknown check {check!r}")
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="vots-ops-verify-")
        workdir = Path(tmp.name)
    try:
        runtime = local_runtime(workdir, loaded)
        if target == "swarm":
            from ops.plan.swarm import DIR, render_swarm

            # Checked with swarm/ flattened: the nginx twin reads its files from workdir.
            def flat(rendered: dict[str, str]) -> dict[str, str]:
                return {n.removeprefix(f"{DIR}/"): t for n, t in rendered.items()}

            files = flat(render_swarm(loaded, plan, workdir).files)
            twin = flat(render_swarm(loaded, plan, workdir, runtime).files)
        else:
            files = render_files(loaded, plan, workdir)
            twin = render_files(loaded, plan, workdir, runtime)
        for name in ("nginx/nginx.conf", "nginx/upstreams.conf"):
            if name in twin:  # a swarm's nginx resolves its upstreams itself
                files[name] = twin[name]
        write_all(workdir, files)
        results: list[CheckResult] = []
        if "nginx" in checks:
            conf = workdir / "nginx" / "nginx.conf"
            results.append(
                _result(
                    "nginx",
                    [
                        which("nginx"),
                        "-t",
                        "-p",
                        str(workdir),
                        "-c",
                        str(conf),
                        "-e",
                        runtime.error_log,
                    ],
                )
            )
        # Only what was rendered is checked: with Prometheus off there is no
        # prometheus.yml, and promtool on a missing file says nothing useful.
        if "promtool" in checks and "prometheus/prometheus.yml" in files:
            prom = workdir / "prometheus"
            results.append(
                _result(
                    "promtool", [which("promtool"), "check", "config", str(prom / "prometheus.yml")]
                )
            )
            results.append(
                _result("promtool", [which("promtool"), "check", "rules", str(prom / "alerts.yml")])
            )
        if "docker-stack" in checks:
            # The docker CLI's own stack loader (Docker 23+): it needs no swarm, and it
            # refuses what `docker stack deploy` refuses (forbidden properties, schema).
            stack_file = workdir / "docker-stack.yml"
            results.append(
                _result(
                    "docker-stack",
                    [which("docker"), "stack", "config", "--compose-file", str(stack_file)],
                    cwd=workdir,
                )
            )
        if "compose-schema" in checks:
            results.append(_compose_schema(workdir / "docker-compose.yml"))
        if "docker-compose" in checks:
            results.append(
                _result(
                    "docker-compose",
                    [
                        which("docker-compose"),
                        "-f",
                        str(workdir / "docker-compose.yml"),
                        "config",
                        "-q",
                    ],
                    cwd=workdir,
                )
            )
        return results
    finally:
        if tmp is not None:
            tmp.cleanup()


def verify_swarm(loaded: LoadedStack, plan: Plan, workdir: Path | None = None) -> list[CheckResult]:
    """``--target swarm --verify``: nginx -t, promtool and ``docker stack config``."""
    return verify_plan(loaded, plan, workdir, SWARM_CHECKS, target="swarm")


def missing_references(loaded: LoadedStack) -> list[str]:
    """One line per file the stack references that does not exist on this machine:
    the TLS certificate and key, each secret's file (relative to the stack file)
    and each build context. ``stack.yaml:14: tls.key: /etc/ssl/k.pem does not exist``."""
    stack = loaded.stack
    base = loaded.path.resolve().parent
    wanted: list[tuple[tuple[str | int, ...], str, Path, bool]] = [
        (("tls", "certificate"), stack.tls.certificate, Path(stack.tls.certificate), False),
        (("tls", "key"), stack.tls.key, Path(stack.tls.key), False),
    ]
    for name, secret in sorted(stack.secrets.items()):
        wanted.append((("secrets", name, "file"), secret.file, base / secret.file, False))
    for w in workloads(stack):
        if w.build and w.yaml_loc:
            wanted.append(((*w.yaml_loc, "build"), w.build, base / w.build, True))
    out = []
    for loc, shown, path, directory in wanted:
        try:
            there = path.is_dir() if directory else path.is_file()
        except OSError:
            there = False
        if not there:
            what = "directory" if directory else "file"
            where = "" if Path(shown).is_absolute() else f" (looked for {path})"
            out.append(str(loaded.error(f"{shown}: no such {what}{where}", loc)))
    return out


def _compose_schema(path: Path) -> CheckResult:
    """Validate against the compose-spec JSON schema that check-jsonschema vendors."""
    tool = require_tool("check-jsonschema", "verify", "plan --verify")
    return _result("compose-schema", [tool, "--builtin-schema", "vendor.compose-spec", str(path)])
