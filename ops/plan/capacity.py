"""Fit every container's CPU, memory and pids to the VM.

Reservations are each service's minimum, so their sum over all replicas is
checked against capacity (host minus reserve) and never exceeds it. Limits are
a weighted water-fill of that same capacity, clamped to each service's
[min, max]: the VM is used fully, and the limits never add up to more than it
has, so one service's burst cannot push the host into swapping or the OOM
killer. All arithmetic is exact (integers and fractions): same input, same output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from ops.errors import CapacityError
from ops.stack import LoadedStack, MiB, Stack, Workload, workloads
from ops.units import format_bytes, format_cpus

CPU_QUANTUM = 10  # millicores: limits are rounded down to 0.01 CPU
MEM_QUANTUM = MiB  # limits are rounded down to whole MiB


@dataclass(frozen=True)
class HostCapacity:
    """What the VM has and what the plan may hand out (``usable_*``)."""

    cpus: int  # millicores
    memory: int  # bytes
    reserve_cpus: int
    reserve_memory: int
    detected: bool
    cpu_overcommit: float = 1.0

    @property
    def usable_cpus(self) -> int:
        return self.cpus - self.reserve_cpus

    @property
    def usable_memory(self) -> int:
        return self.memory - self.reserve_memory


@dataclass(frozen=True)
class Allocation:
    """What each replica of one service gets."""

    name: str
    kind: str
    replicas: int
    cpu_reservation: int  # millicores per replica
    cpu_limit: int
    mem_reservation: int  # bytes per replica
    mem_limit: int
    pids: int

    @property
    def cpu_shares(self) -> int:
        """Relative CPU weight that makes the reservation hold under contention."""
        return max(2, self.cpu_reservation * 1024 // 1000)


@dataclass(frozen=True)
class Plan:
    host: HostCapacity
    allocations: tuple[Allocation, ...]

    def by_name(self) -> dict[str, Allocation]:
        return {a.name: a for a in self.allocations}

    @property
    def total_cpu_reservation(self) -> int:
        return sum(a.cpu_reservation * a.replicas for a in self.allocations)

    @property
    def total_cpu_limit(self) -> int:
        return sum(a.cpu_limit * a.replicas for a in self.allocations)

    @property
    def total_mem_reservation(self) -> int:
        return sum(a.mem_reservation * a.replicas for a in self.allocations)

    @property
    def total_mem_limit(self) -> int:
        return sum(a.mem_limit * a.replicas for a in self.allocations)


def detect_host() -> tuple[int, int]:
    """Logical CPUs (as millicores) and total memory of this machine."""
    import psutil

    return (psutil.cpu_count(logical=True) or 1) * 1000, psutil.virtual_memory().total


def host_capacity(stack: Stack, detected: tuple[int, int] | None = None) -> HostCapacity:
    """Resolve ``auto`` host figures; ``detected`` lets tests pin the machine."""
    spec = stack.host
    auto = spec.cpus == "auto" or spec.memory == "auto"
    if auto and detected is None:
        detected = detect_host()
    cpus = detected[0] if spec.cpus == "auto" else spec.cpus  # type: ignore[index]
    memory = detected[1] if spec.memory == "auto" else spec.memory  # type: ignore[index]
    return HostCapacity(
        cpus=int(cpus),
        memory=int(memory),
        reserve_cpus=spec.reserve.cpus,
        reserve_memory=spec.reserve.memory,
        detected=auto,
        cpu_overcommit=spec.cpu_overcommit,
    )


def water_fill(capacity: int, groups: Sequence[tuple[int, int, int, int]]) -> list[Fraction]:
    """Per-replica amounts ``clamp(lam * weight, lo, hi)`` with the largest ``lam``
    such that ``sum(replicas * amount) <= capacity``.

    ``groups`` holds ``(replicas, weight, lo, hi)``; the caller guarantees
    ``sum(replicas * lo) <= capacity``. The total is piecewise linear in ``lam``,
    so we evaluate it at every breakpoint and interpolate exactly.
    """

    def amounts(lam: Fraction) -> list[Fraction]:
        return [min(Fraction(hi), max(Fraction(lo), lam * w)) for _, w, lo, hi in groups]

    def total(lam: Fraction) -> Fraction:
        return sum((r * a for (r, *_), a in zip(groups, amounts(lam), strict=True)), Fraction(0))

    points = sorted(
        {Fraction(lo, w) for _, w, lo, _ in groups} | {Fraction(hi, w) for _, w, _, hi in groups}
    )
    if total(points[-1]) <= capacity:
        return amounts(points[-1])
    prev = Fraction(0)
    for point in points:
        t = total(point)
        if t >= capacity:
            # Between prev and point the total is linear: solve for capacity.
            t0 = total(prev)
            lam = point if t == t0 else prev + (point - prev) * (capacity - t0) / (t - t0)
            return amounts(lam)
        prev = point
    raise AssertionError("unreachable: total at the last breakpoint exceeded capacity")


def _floor(value: Fraction, quantum: int, lo: int) -> int:
    return max(lo, int(value) // quantum * quantum)


def fit(loaded: LoadedStack, detected: tuple[int, int] | None = None) -> Plan:
    """Allocate every workload of a validated stack; CapacityError when minimums do not fit."""
    stack = loaded.stack
    host = host_capacity(stack, detected)
    items = workloads(stack)
    if host.usable_cpus <= 0 or host.usable_memory <= 0:
        raise CapacityError(
            f"host has {format_cpus(host.cpus)} CPUs and {format_bytes(host.memory)} but the reserve takes "
            f"{format_cpus(host.reserve_cpus)} CPUs and {format_bytes(host.reserve_memory)}; nothing is left",
            path=str(loaded.path),
            line=loaded.lines.line(("host", "reserve")),
            key="host.reserve",
        )
    _check_fits(loaded, host, items)
    cpu = water_fill(
        int(host.usable_cpus * host.cpu_overcommit),
        [
            (
                w.replicas,
                w.cpu_weight,
                w.cpu_min,
                min(w.cpu_max or host.usable_cpus, host.usable_cpus),
            )
            for w in items
        ],
    )
    mem = water_fill(
        host.usable_memory,
        [
            (
                w.replicas,
                w.mem_weight,
                w.mem_min,
                min(w.mem_max or host.usable_memory, host.usable_memory),
            )
            for w in items
        ],
    )
    allocations = tuple(
        Allocation(
            name=w.name,
            kind=w.kind,
            replicas=w.replicas,
            cpu_reservation=w.cpu_min,
            cpu_limit=_floor(c, CPU_QUANTUM, w.cpu_min),
            mem_reservation=w.mem_min,
            mem_limit=_floor(m, MEM_QUANTUM, w.mem_min),
            pids=w.pids,
        )
        for w, c, m in zip(items, cpu, mem, strict=True)
    )
    return Plan(host=host, allocations=allocations)


def _check_fits(loaded: LoadedStack, host: HostCapacity, items: list[Workload]) -> None:
    need_cpu = sum(w.replicas * w.cpu_min for w in items)
    need_mem = sum(w.replicas * w.mem_min for w in items)
    path = str(loaded.path)
    for w in items:
        for what, lo, hi, unit in (
            ("cpu", w.cpu_min, w.cpu_max, format_cpus),
            ("memory", w.mem_min, w.mem_max, format_bytes),
        ):
            if hi is not None and hi < lo:
                raise CapacityError(
                    f"max {unit(hi)} is below the minimum {unit(lo)} (a default when min is not set); set min too",
                    path=path,
                    line=loaded.lines.line((*w.yaml_loc, "resources", what, "max")),
                    key=".".join(w.yaml_loc) + f".resources.{what}.max",
                )
        if w.cpu_min > host.usable_cpus or w.mem_min > host.usable_memory:
            raise CapacityError(
                f"one replica needs at least {format_cpus(w.cpu_min)} CPUs and {format_bytes(w.mem_min)}, "
                f"but the host offers {format_cpus(host.usable_cpus)} CPUs and {format_bytes(host.usable_memory)} after its reserve",
                path=path,
                line=loaded.lines.line((*w.yaml_loc, "resources")),
                key=".".join(w.yaml_loc) + ".resources",
            )
    if need_cpu > host.usable_cpus:
        raise CapacityError(
            f"the services' minimums need {format_cpus(need_cpu)} CPUs but the host offers "
            f"{format_cpus(host.usable_cpus)} after its reserve; lower replicas or cpu.min, or use a bigger VM",
            path=path,
            line=loaded.lines.line(("host", "cpus")),
            key="host.cpus",
        )
    if need_mem > host.usable_memory:
        raise CapacityError(
            f"the services' minimums need {format_bytes(need_mem)} but the host offers "
            f"{format_bytes(host.usable_memory)} after its reserve; lower replicas or memory.min, or use a bigger VM",
            path=path,
            line=loaded.lines.line(("host", "memory")),
            key="host.memory",
        )
