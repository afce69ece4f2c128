"""How a Plan is shown: a Rich table for people, a dict for ``--format json``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ops.plan.capacity import Plan
from ops.units import format_bytes, format_cpus


def _pct(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else 0.0


def plan_json(
    plan: Plan,
    out: Path,
    status: dict[str, str],
    advice: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Machine-readable plan: exact integers with the unit in every key (CPU in
    millicores, memory in bytes, as ``vots-ops report --format json``), plus the file
    status. ``advice`` (from ``--recommendations``) is each advised service's bounds
    and the ones the plan overrode; ``null`` for services without advice."""
    h = plan.host
    advice = advice or {}
    return {
        "host": {
            "cpu_millicores": h.cpus,
            "memory_bytes": h.memory,
            "reserve_cpu_millicores": h.reserve_cpus,
            "reserve_memory_bytes": h.reserve_memory,
            "usable_cpu_millicores": h.usable_cpus,
            "usable_memory_bytes": h.usable_memory,
            "detected": h.detected,
            "cpu_overcommit": h.cpu_overcommit,
        },
        "services": [
            {
                "name": a.name,
                "kind": a.kind,
                "replicas": a.replicas,
                "cpu_reservation_millicores": a.cpu_reservation,
                "cpu_limit_millicores": a.cpu_limit,
                "memory_reservation_bytes": a.mem_reservation,
                "memory_limit_bytes": a.mem_limit,
                "pids_limit": a.pids,
                "cpu_shares": a.cpu_shares,
                "cpu_share_pct": _pct(a.cpu_limit * a.replicas, h.usable_cpus),
                "memory_share_pct": _pct(a.mem_limit * a.replicas, h.usable_memory),
                "advice": advice.get(a.name),
            }
            for a in plan.allocations
        ],
        "totals": {
            "cpu_reservation_millicores": plan.total_cpu_reservation,
            "cpu_limit_millicores": plan.total_cpu_limit,
            "memory_reservation_bytes": plan.total_mem_reservation,
            "memory_limit_bytes": plan.total_mem_limit,
            "cpu_share_pct": _pct(plan.total_cpu_limit, h.usable_cpus),
            "memory_share_pct": _pct(plan.total_mem_limit, h.usable_memory),
        },
        "out": str(out),
        "files": [{"path": name, "status": s} for name, s in status.items()],
    }


def plan_table(plan: Plan, source: str = "stack.yaml") -> Any:
    """Service x replicas x CPU and memory reservation/limit x share of the VM."""
    from rich.table import Table

    h = plan.host
    src = "detected" if h.detected else source
    title = (
        f"Host {format_cpus(h.cpus)} CPUs, {format_bytes(h.memory)} ({src}); "
        f"reserve {format_cpus(h.reserve_cpus)} CPUs, {format_bytes(h.reserve_memory)}; "
        f"usable {format_cpus(h.usable_cpus)} CPUs, {format_bytes(h.usable_memory)}"
    )
    table = Table(title=title, title_justify="left", show_footer=True)
    table.add_column("service", footer="total")
    table.add_column(
        "replicas", justify="right", footer=str(sum(a.replicas for a in plan.allocations))
    )
    table.add_column("CPU res", justify="right", footer=format_cpus(plan.total_cpu_reservation))
    table.add_column("CPU limit", justify="right", footer=format_cpus(plan.total_cpu_limit))
    table.add_column("mem res", justify="right", footer=format_bytes(plan.total_mem_reservation))
    table.add_column("mem limit", justify="right", footer=format_bytes(plan.total_mem_limit))
    table.add_column("pids", justify="right")
    table.add_column("VM share (CPU / mem)", justify="right",
                     footer=f"{_pct(plan.total_cpu_limit, h.usable_cpus):.1f}% / {_pct(plan.total_mem_limit, h.usable_memory):.1f}%")  # fmt: skip
    for a in plan.allocations:
        table.add_row(
            a.name,
            str(a.replicas),
            format_cpus(a.cpu_reservation),
            format_cpus(a.cpu_limit),
            format_bytes(a.mem_reservation),
            format_bytes(a.mem_limit),
            str(a.pids),
            f"{_pct(a.cpu_limit * a.replicas, h.usable_cpus):.1f}% / {_pct(a.mem_limit * a.replicas, h.usable_memory):.1f}%",
        )
    return table
