"""Run ``vots-ops report`` on a schedule: a crontab line or a systemd timer.

The command line uses the absolute path of the installed executable, because
cron's PATH is minimal and would not find a venv's ``vots-ops``. ``--quiet``
makes a healthy run print nothing, so cron mails only problems.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ops.errors import OpsError

MARKER = "# vots-ops report (managed by `vots-ops report install-cron`)"


@dataclass(frozen=True)
class Schedule:
    """What to run and how often: the report options a cron line needs."""

    executable: str
    db: str
    every_minutes: int = 1
    stack: str | None = None
    textfile: str | None = None
    fail_on: tuple[str, ...] = ("over-limit", "restart")
    no_docker: bool = False
    repeat_interval: float | None = None  # seconds; None: the report's default

    def argv(self) -> list[str]:
        # --fail-on makes a finding that is news print one line, which is what cron mails.
        args = [self.executable, "report", "--quiet"]
        for kind in self.fail_on:
            args += ["--fail-on", kind]
        args += ["--db", self.db]
        if self.stack:
            args += ["--stack", self.stack]
        if self.textfile:
            args += ["--textfile", self.textfile]
        if self.no_docker:
            args.append("--no-docker")
        if self.repeat_interval is not None:
            seconds = self.repeat_interval
            args += [
                "--repeat-interval",
                f"{int(seconds) if seconds == int(seconds) else seconds}s",
            ]
        return args


def executable() -> str:
    """Absolute path of the running ``vots-ops`` (the venv's, not whatever PATH finds)."""
    here = Path(sys.argv[0])
    if here.name == "vots-ops" and here.exists():
        return str(here.resolve())
    found = shutil.which("vots-ops", path=str(Path(sys.executable).parent)) or shutil.which(
        "vots-ops"
    )
    if not found:
        raise OpsError("cannot find the vots-ops executable; install the package first")
    return str(Path(found).resolve())


def cron_line(schedule: Schedule) -> str:
    """One crontab line; the command is shell-quoted, since cron runs it through sh."""
    if not 1 <= schedule.every_minutes <= 59:
        raise OpsError("--every must be between 1 and 59 minutes")
    minute = "*" if schedule.every_minutes == 1 else f"*/{schedule.every_minutes}"
    command = " ".join(shlex.quote(a) for a in schedule.argv())
    # cron turns an unescaped % into a newline.
    command = command.replace("%", "\\%")
    return f"{minute} * * * * {command}"


def merge_crontab(current: str, line: str) -> str:
    """The user's crontab with our one managed line added or replaced, the rest untouched."""
    out: list[str] = []
    skip_next = False
    for existing in current.splitlines():
        if skip_next:
            skip_next = False
            continue
        if existing.strip() == MARKER:
            skip_next = True
            continue
        out.append(existing)
    while out and not out[-1].strip():
        out.pop()
    out += [MARKER, line]
    return "\n".join(out) + "\n"


def systemd_units(schedule: Schedule) -> dict[str, str]:
    """A oneshot service and a timer; OnUnitActiveSec keeps runs evenly spaced."""
    # systemd reads % as a specifier (%h, %1...): a literal one is %%.
    command = " ".join(shlex.quote(a) for a in schedule.argv()).replace("%", "%%")
    service = (
        "[Unit]\n"
        "Description=vots-ops utilisation sample\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={command}\n"
        "Nice=10\n"
        "IOSchedulingClass=idle\n"
    )
    timer = (
        "[Unit]\n"
        "Description=vots-ops utilisation sample every "
        f"{schedule.every_minutes} minute(s)\n\n"
        "[Timer]\n"
        "OnBootSec=1min\n"
        f"OnUnitActiveSec={schedule.every_minutes}min\n"
        "AccuracySec=1s\n\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )
    return {"vots-ops-report.service": service, "vots-ops-report.timer": timer}


def install_crontab(line: str) -> str:
    """Add or replace the managed line in the invoking user's crontab; returns the new table."""
    from ops.proc import run, which

    crontab = which("crontab")
    current = run([crontab, "-l"], timeout=10)
    # `crontab -l` exits 1 with "no crontab for USER" when there is none yet. Any
    # other failure (no permission, a broken spool) must not be taken for an empty
    # table: writing ours would throw the user's lines away.
    if current.returncode == 0:
        text = current.stdout
    elif "no crontab for" in current.stderr:
        text = ""
    else:
        why = current.stderr.strip().splitlines()
        raise OpsError(
            f"crontab -l failed ({why[0] if why else f'exit {current.returncode}'}); "
            "the crontab was left as it is"
        )
    merged = merge_crontab(text, line)
    import subprocess

    proc = subprocess.run(  # noqa: S603 - argument list, resolved executable
        [crontab, "-"], input=merged, capture_output=True, text=True, timeout=10, check=False
    )
    if proc.returncode != 0:
        raise OpsError(f"crontab refused the new table: {proc.stderr.strip()}")
    return merged
