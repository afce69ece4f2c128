"""Multi-file writes are all-or-nothing, keep links and modes, and temp files a
killed run left are swept, under a lock so two runs never sweep each other's.

The full disk is a real tmpfs filled with ``dd``; the killed run is a real
process holding the real lock, killed with SIGKILL.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.errors import OutputError
from ops.files import sweep_temps, write_all
from ops.plan import plan_stack
from ops.plan.pipeline import MANIFEST
from tests.support.cli import Cli
from tests.support.stacks import REPO, minimal, write_stack


def _stack(root: Path, port: int = 8000) -> Path:
    data = minimal()
    data["services"]["agent"]["port"] = port
    return write_stack(root, data)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB file system of this test's own, always unmounted."""
    where = tmp_path / "small"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_disk_that_fills_midway_leaves_every_old_file(
    cli: Cli, tmp_path: Path, tmpfs: Path
) -> None:
    stack = _stack(tmp_path, port=8000)
    out = tmpfs / "out"
    assert cli.run("plan", "--stack", str(stack), "--out", str(out)).returncode == 0
    before = _snapshot(out)

    # The new agent port changes the compose file first, then upstreams.conf: leave
    # room for the first temp only.
    stack = _stack(tmp_path, port=8100)
    new = plan_stack(stack, out)
    assert new.changed[:2] == ("docker-compose.yml", "nginx/upstreams.conf")
    filler = tmpfs / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"], capture_output=True)
    assert os.statvfs(tmpfs).f_bavail == 0
    page = os.statvfs(tmpfs).f_frsize
    room = -(-len(new.files["docker-compose.yml"].encode()) // page) * page
    os.truncate(filler, filler.stat().st_size - room)
    assert os.statvfs(tmpfs).f_bavail * page == room

    proc = cli.run("plan", "--stack", str(stack), "--out", str(out))

    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"error: cannot write {out / 'nginx' / 'upstreams.conf'}: ")
    assert "No space left on device" in line and line.endswith("nothing was changed")
    assert _snapshot(out) == before, "the old compose file and upstreams.conf stay a pair"
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")], "temps removed"

    filler.unlink()  # room again: the same command goes through
    assert cli.run("plan", "--stack", str(stack), "--out", str(out)).returncode == 0
    assert _snapshot(out) != before
    assert plan_stack(stack, out, mode="check").drift is False


def test_a_rename_that_fails_midway_puts_the_old_files_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rename refused after the first one succeeded cannot be produced on a real
    file system at will, so this one fault is injected: the second ``os.replace``
    of the commit raises EIO. Everything else is real files."""
    out = tmp_path / "out"
    write_all(out, {"a.yml": "old a\n", "sub/b.yml": "old b\n"})
    before = _snapshot(out)
    real_replace = os.replace
    calls: list[str] = []

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append(str(dst))
        if len(calls) == 2:
            raise OSError(errno.EIO, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr("ops.files.os.replace", replace)
    with pytest.raises(OutputError) as caught:
        write_all(out, {"a.yml": "new a\n", "sub/b.yml": "new b\n", "c.yml": "new c\n"})
    monkeypatch.undo()
    assert "sub/b.yml: Input/output error; nothing was changed" in str(caught.value)
    assert _snapshot(out) == before
    assert sorted(p.name for p in out.rglob("*")) == ["a.yml", "b.yml", "sub"]


def test_a_symlinked_target_keeps_its_link_and_a_file_its_mode(tmp_path: Path) -> None:
    site, shared = tmp_path / "site", tmp_path / "shared"
    site.mkdir()
    stack = _stack(site)
    plan_stack(stack, mode="write")
    shared.mkdir()
    (site / "docker-compose.yml").rename(shared / "compose.yml")
    (site / "docker-compose.yml").symlink_to("../shared/compose.yml")
    (site / "nginx" / "upstreams.conf").chmod(0o640)

    stack = _stack(site, port=8100)
    result = plan_stack(stack, mode="write")

    assert "docker-compose.yml" in result.changed and "nginx/upstreams.conf" in result.changed
    link = site / "docker-compose.yml"
    assert link.is_symlink() and os.readlink(link) == "../shared/compose.yml"
    assert (shared / "compose.yml").read_text() == result.files["docker-compose.yml"]
    assert stat.S_IMODE((site / "nginx" / "upstreams.conf").stat().st_mode) == 0o640
    assert (site / "nginx" / "upstreams.conf").read_text() == result.files["nginx/upstreams.conf"]
    assert not list(shared.glob(".*.tmp")) and not list(site.rglob(".*.tmp"))


_HOLDER = """
import sys, tempfile
from pathlib import Path
from ops.files import dir_lock
out = Path(sys.argv[1])
with dir_lock(out, 10) as held:
    assert held
    fd, name = tempfile.mkstemp(prefix=".docker-compose.yml.", suffix=".tmp", dir=out)
    print(name, flush=True)
    sys.stdin.readline()
"""


def test_a_killed_runs_temps_are_swept_but_never_a_running_ones(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    plan_stack(stack, mode="write")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert holder.stdout is not None
        temp = Path(holder.stdout.readline().strip())
        assert temp.is_file()
        # Another run is writing: this one does not touch its temp, it says so.
        with pytest.raises(OutputError, match="another vots-ops plan is writing here"):
            plan_stack(_stack(tmp_path, port=8100), mode="write", lock_wait=0)
        assert temp.is_file()
    finally:
        holder.kill()  # the run dies mid-write, as under SIGKILL or the OOM killer
        holder.wait()
    assert temp.is_file(), "a killed run leaves its temp behind"
    others = [
        tmp_path / ".docker-compose.yml.tmp",  # not our pattern (no random part)
        tmp_path / ".notes.abcd1234.tmp",  # not one of our files
        tmp_path / "docker-compose.yml.abcd1234.tmp",  # not hidden
    ]
    for other in others:
        other.write_text("someone else's\n")

    result = plan_stack(stack, mode="write")

    assert result.swept == (temp,) and not temp.exists()
    assert all(other.exists() for other in others)


def test_the_cli_says_what_it_swept(cli: Cli, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _stack(site)
    (site / "nginx").mkdir()
    leftover = site / "nginx" / ".nginx.conf.k3j4h5g6.tmp"
    leftover.write_text("half a config")
    proc = cli.run("plan", cwd=site)
    assert proc.returncode == 0, proc.stderr
    assert not leftover.exists()
    assert f"removed {leftover}, left by an interrupted run" in proc.stderr


def test_without_a_lock_only_old_temps_are_swept(tmp_path: Path) -> None:
    """Where the file system has no locks, a temp is another run's unless it is old."""
    temp = tmp_path / f".{MANIFEST}.a1b2c3d4.tmp"
    temp.write_text("")
    mtime = temp.stat().st_mtime
    assert sweep_temps(tmp_path, [MANIFEST], older_than=3600, now=mtime + 60) == []
    assert temp.exists()
    assert sweep_temps(tmp_path, [MANIFEST], older_than=3600, now=mtime + 7200) == [temp]
    assert not temp.exists()
