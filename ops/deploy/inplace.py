"""Limit-only changes applied to running containers with ``docker update``.

``plan --recommendations`` moves CPU and memory limits, and the plan's
water-fill hands what one service frees to the others, so a redeploy after it
usually changes the limits of every service and nothing else. Compose would
recreate each one (its config hash covers the limits): a short outage for every
single-replica service and for the edge. The kernel changes a cgroup's limits
on a running process, so such a change needs no new container.

A service qualifies when each of its containers runs the planned image and was
created from the configuration the plan renders now, limits aside. That is
known from :class:`State`, ``.vots-deploy.state.json`` next to the compose
file: for each container deploy left as planned, its compose config hash and a
fingerprint of its service's configuration without the limit keys. A container
the state does not know (another tool made it, the file was lost) never
qualifies: it is replaced the ordinary way, which is always correct.

The state also maps a container updated in place to the config hash of the
plan it now matches: compose's label on the container cannot change, and
without the map the next deploy would find it stale.
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.deploy.inspect import Container
from ops.engine import Engine, SdkEngine
from ops.errors import ExternalToolError, OpsError
from ops.plan.capacity import Allocation
from ops.proc import which
from ops.units import format_bytes

STATE_FILE = ".vots-deploy.state.json"
STATE_VERSION = 1
UPDATE_TIMEOUT_S = 60.0
# A memory limit lowered in place stays this far above what the container uses.
MEMORY_HEADROOM = 1.25
# What ``docker update`` changes on a running container, as the rendered compose
# file names it; every other key is part of the fingerprint.
_LIMIT_KEYS = ("cpu_shares", "pids_limit", "cpus", "mem_limit", "mem_reservation", "cpu_quota")


def fingerprint(service: Mapping[str, Any], image_id: str | None) -> str:
    """A digest of one service's compose configuration with its limits taken out,
    and of the image it runs: equal fingerprints differ in limits alone."""
    spec = copy.deepcopy(dict(service))
    for key in _LIMIT_KEYS:
        spec.pop(key, None)
    deploy = spec.get("deploy")
    if isinstance(deploy, dict):
        deploy.pop("resources", None)
        if not deploy:
            spec.pop("deploy")
    text = json.dumps({"service": spec, "image": image_id or ""}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Entry:
    label: str  # the container's compose config-hash label
    hash: str  # the config hash of the plan it matches (the label, or a later one)
    fingerprint: str


class State:
    """``.vots-deploy.state.json``: what deploy knows of each container it left as planned."""

    def __init__(self, path: Path, entries: dict[str, Entry] | None = None) -> None:
        self.path = path
        self.entries: dict[str, Entry] = entries or {}

    @classmethod
    def load(cls, out: Path) -> State:
        """The state in ``out``; an unreadable or foreign file counts as none (every
        container then takes the ordinary path)."""
        path = out / STATE_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls(path)
        entries: dict[str, Entry] = {}
        if isinstance(raw, dict) and raw.get("version") == STATE_VERSION:
            for cid, e in (raw.get("containers") or {}).items():
                if isinstance(e, dict) and all(
                    isinstance(e.get(k), str) for k in ("label", "hash", "fingerprint")
                ):
                    entries[str(cid)] = Entry(e["label"], e["hash"], e["fingerprint"])
        return cls(path, entries)

    def _entry(self, c: Container) -> Entry | None:
        e = self.entries.get(c.id)
        # A container id is never reused, but a file copied from elsewhere could name
        # one with another label: then it is not what the entry describes.
        return e if e is not None and e.label == c.config_hash else None

    def effective_hash(self, c: Container) -> str:
        """The config hash of the plan ``c`` matches."""
        e = self._entry(c)
        return e.hash if e else c.config_hash

    def fingerprint_of(self, c: Container) -> str | None:
        e = self._entry(c)
        return e.fingerprint if e else None

    def record(self, c: Container, config_hash: str, fp: str) -> None:
        self.entries[c.id] = Entry(c.config_hash, config_hash, fp)

    def save(self, alive: Sequence[str]) -> None:
        """Write the state, keeping only containers in ``alive``."""
        from ops.files import write_all

        keep = {cid: e for cid, e in self.entries.items() if cid in set(alive)}
        doc = {
            "version": STATE_VERSION,
            "written_by": "vots-ops deploy; what it knows of each container it left as planned",
            "containers": {
                cid: {"label": e.label, "hash": e.hash, "fingerprint": e.fingerprint}
                for cid, e in sorted(keep.items())
            },
        }
        write_all(self.path.parent, {self.path.name: json.dumps(doc, indent=1) + "\n"})


@dataclass(frozen=True)
class Limits:
    """What ``docker update`` sets: the values ``inspect.verify`` checks."""

    nano_cpus: int
    memory: int
    memory_reservation: int
    cpu_shares: int
    pids: int

    @classmethod
    def of(cls, a: Allocation) -> Limits:
        return cls(a.cpu_limit * 1_000_000, a.mem_limit, a.mem_reservation, a.cpu_shares, a.pids)

    @classmethod
    def applied(cls, c: Container) -> Limits:
        host = c.raw.get("HostConfig") or {}
        return cls(
            int(host.get("NanoCpus") or 0),
            int(host.get("Memory") or 0),
            int(host.get("MemoryReservation") or 0),
            int(host.get("CpuShares") or 0),
            int(host.get("PidsLimit") or 0),
        )


def update_argv(c: Container, want: Limits) -> list[str] | None:
    """``docker update`` arguments bringing ``c`` to ``want``; None when it already is."""
    if Limits.applied(c) == want:
        return None
    host = c.raw.get("HostConfig") or {}
    args = [
        "update",
        "--cpus",
        f"{want.nano_cpus / 1e9:.9g}",
        "--memory",
        str(want.memory),
        "--memory-reservation",
        str(want.memory_reservation),
        "--cpu-shares",
        str(want.cpu_shares),
        "--pids-limit",
        str(want.pids),
    ]
    # Docker gives a container created with a memory limit and no swap limit a
    # swap limit of twice the memory; a recreated container would get that for the
    # new limit, and a memory limit above the old swap limit is refused.
    swap = int(host.get("MemorySwap") or 0)
    memory = int(host.get("Memory") or 0)
    if swap == -1:
        args += ["--memory-swap", "-1"]
    elif swap > 0 and memory > 0 and swap == 2 * memory:
        args += ["--memory-swap", str(2 * want.memory)]
    elif swap > 0 and swap < want.memory:
        args += ["--memory-swap", str(want.memory)]
    return [*args, c.id]


def working_set(engine: Engine | SdkEngine, c: Container) -> int | None:
    """Memory ``c`` uses now and cannot give back at once: usage less inactive
    page cache (what ``docker stats`` shows); None when the engine cannot say."""
    try:
        mem = engine.stats(c.id).get("memory_stats") or {}
    except OpsError:
        return None
    usage = mem.get("usage")
    if not isinstance(usage, int):
        return None
    stats = mem.get("stats") or {}
    inactive = stats.get("inactive_file", stats.get("total_inactive_file", 0))
    return max(0, usage - int(inactive or 0))


def apply(engine: Engine | SdkEngine, c: Container, want: Limits) -> bool:
    """Set ``want`` on the running container ``c``; False when nothing needed changing.

    Raises ExternalToolError, naming the reason, when it must not or cannot be done
    in place: a memory limit lowered to less than ``MEMORY_HEADROOM`` above what the
    container uses now (on cgroup v2 the kernel would reclaim, then OOM-kill it),
    or the engine refusing.
    """
    argv = update_argv(c, want)
    if argv is None:
        return False
    if want.memory and want.memory < Limits.applied(c).memory:
        used = working_set(engine, c)
        if used is None or used * MEMORY_HEADROOM > want.memory:
            shown = "unknown" if used is None else format_bytes(used)
            raise ExternalToolError(
                f"{c.name} uses {shown} of memory now: a limit of "
                f"{format_bytes(want.memory)} is not set on it while it runs"
            )
    try:
        proc = subprocess.run(  # noqa: S603 - an argument list, never a shell
            [which("docker"), *argv],
            capture_output=True,
            text=True,
            check=False,
            timeout=UPDATE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise ExternalToolError(
            f"docker update {c.name} gave no answer in {UPDATE_TIMEOUT_S:g}s"
        ) from None
    if proc.returncode != 0:
        reason = (proc.stderr or proc.stdout).strip().splitlines()
        raise ExternalToolError(
            f"docker update {c.name} failed: {reason[-1] if reason else proc.returncode}"
        )
    return True
