"""The capacity planner: exact examples and invariants over random stacks and hosts."""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ops.errors import CapacityError
from ops.plan.capacity import CPU_QUANTUM, MEM_QUANTUM, fit, host_capacity, water_fill
from ops.stack import GiB, MiB, parse_stack, workloads
from tests.support.stacks import BUNDLED, minimal, stacks


def _load(data: dict[str, Any]) -> Any:
    return parse_stack(yaml.safe_dump(data, sort_keys=False), "stack.yaml")


def test_water_fill_splits_by_weight() -> None:
    # Two groups, no bounds in the way: 3:1 weights split 100 as 75:25.
    assert water_fill(100, [(1, 3, 0, 100), (1, 1, 0, 100)]) == [75, 25]


def test_water_fill_respects_min_and_max_and_replicas() -> None:
    amounts = water_fill(1000, [(2, 1, 100, 150), (1, 1, 50, 1000), (1, 10, 400, 1000)])
    # The low-weight first group stays at its min; the rest is shared 1:10 by weight.
    assert amounts[0] == 100
    assert 2 * amounts[0] + amounts[1] + amounts[2] == 1000
    assert amounts[2] == 10 * amounts[1]
    assert water_fill(10_000, [(2, 1, 100, 150), (1, 1, 50, 1000)]) == [150, 1000]


def test_water_fill_everything_at_max_leaves_rest_unused() -> None:
    assert water_fill(1000, [(1, 1, 10, 100), (2, 1, 10, 50)]) == [100, 50]


def test_bundled_plan_uses_the_vm_without_overcommitting() -> None:
    loaded = parse_stack(BUNDLED.read_text(), BUNDLED)
    plan = fit(loaded)
    host = plan.host
    assert (host.cpus, host.memory) == (4000, 16 * GiB)
    assert plan.total_mem_limit <= host.usable_memory
    assert plan.total_cpu_limit <= host.usable_cpus
    # "Fully": what is left is below one rounding quantum per container.
    containers = sum(a.replicas for a in plan.allocations)
    assert host.usable_memory - plan.total_mem_limit < containers * MEM_QUANTUM
    assert host.usable_cpus - plan.total_cpu_limit < containers * CPU_QUANTUM
    by = plan.by_name()
    assert by["agent"].replicas == 2
    # Weight 4 vs weight 2: the agent's limit is larger than the dashboard's.
    assert by["agent"].cpu_limit > by["dashboard"].cpu_limit


def test_same_input_same_output() -> None:
    text = BUNDLED.read_text()
    assert fit(parse_stack(text, "a")) == fit(parse_stack(text, "a"))


def test_auto_host_reads_this_machine() -> None:
    import os

    data = minimal(host={"cpus": "auto", "memory": "auto"})
    cap = host_capacity(_load(data).stack)
    assert cap.cpus == os.cpu_count() * 1000
    with open("/proc/meminfo") as fh:
        total_kib = int(next(line for line in fh if line.startswith("MemTotal:")).split()[1])
    assert cap.memory == total_kib * 1024
    assert cap.detected


def test_impossible_capacity_names_the_fix() -> None:
    data = minimal(host={"cpus": 1, "memory": "1G", "reserve": {"cpus": 0.5, "memory": "512M"}})
    data["services"]["agent"]["replicas"] = 8
    with pytest.raises(CapacityError, match=r"minimums need .* after its reserve; lower replicas"):
        fit(_load(data))


def test_single_replica_larger_than_host() -> None:
    data = minimal()
    data["services"]["agent"]["resources"]["memory"] = {"min": "8G"}
    with pytest.raises(CapacityError, match="one replica needs at least"):
        fit(_load(data))


def test_overcommit_applies_to_cpu_limits_only() -> None:
    data = minimal(host={"cpus": 2, "memory": "4G", "cpu_overcommit": 2})
    plan = fit(_load(data))
    assert plan.total_cpu_limit > plan.host.usable_cpus
    assert plan.total_cpu_limit <= 2 * plan.host.usable_cpus
    assert plan.total_cpu_reservation <= plan.host.usable_cpus
    assert plan.total_mem_limit <= plan.host.usable_memory
    assert all(a.cpu_limit <= plan.host.usable_cpus for a in plan.allocations)


@pytest.mark.slow  # 300 examples: seconds
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stacks())
def test_invariants_hold_or_input_is_rejected(data: dict[str, Any]) -> None:
    loaded = _load(data)
    items = {w.name: w for w in workloads(loaded.stack)}
    try:
        plan = fit(loaded)
    except CapacityError as exc:
        # Rejected only when the minimums really do not fit, with a clear line.
        host = host_capacity(loaded.stack)
        need_cpu = sum(w.replicas * w.cpu_min for w in items.values())
        need_mem = sum(w.replicas * w.mem_min for w in items.values())
        too_big = any(
            w.cpu_min > host.usable_cpus or w.mem_min > host.usable_memory for w in items.values()
        )
        assert (
            host.usable_cpus <= 0
            or host.usable_memory <= 0
            or too_big
            or need_cpu > host.usable_cpus
            or need_mem > host.usable_memory
        )
        assert str(exc).startswith("stack.yaml:")
        return
    host = plan.host
    assert plan.total_cpu_reservation <= host.usable_cpus
    assert plan.total_mem_reservation <= host.usable_memory
    assert plan.total_mem_limit <= host.usable_memory
    assert plan.total_cpu_limit <= int(host.usable_cpus * host.cpu_overcommit)
    for a in plan.allocations:
        w = items[a.name]
        assert a.replicas == w.replicas
        assert w.cpu_min == a.cpu_reservation <= a.cpu_limit <= host.usable_cpus
        assert w.mem_min == a.mem_reservation <= a.mem_limit <= host.usable_memory
        if w.cpu_max is not None:
            assert a.cpu_limit <= max(w.cpu_max, w.cpu_min)
        if w.mem_max is not None:
            assert a.mem_limit <= max(w.mem_max, w.mem_min)
        assert a.pids > 0 and a.cpu_shares >= 2
    # Used fully: either every service sits at its max, or the leftover is rounding.
    containers = sum(a.replicas for a in plan.allocations)
    mem_at_max = all(
        a.mem_limit
        >= min(items[a.name].mem_max or host.usable_memory, host.usable_memory) - MEM_QUANTUM
        for a in plan.allocations
    )
    assert mem_at_max or host.usable_memory - plan.total_mem_limit < containers * MEM_QUANTUM
    # Deterministic.
    assert fit(loaded) == plan


@given(
    st.lists(
        st.tuples(st.integers(1, 4), st.integers(1, 20), st.integers(0, 500), st.integers(0, 5000)),
        min_size=1,
        max_size=10,
    ),
    st.integers(1, 100_000),
)
def test_water_fill_properties(raw: list[tuple[int, int, int, int]], capacity: int) -> None:
    groups = [(r, w, lo, lo + extra) for r, w, lo, extra in raw]
    if sum(r * lo for r, _, lo, _ in groups) > capacity:
        return
    amounts = water_fill(capacity, groups)
    total = sum(r * a for (r, *_), a in zip(groups, amounts, strict=True))
    assert total <= capacity
    for (_, _w, lo, hi), a in zip(groups, amounts, strict=True):
        assert lo <= a <= hi
    if total < capacity:
        assert all(a == hi for (_, _, _, hi), a in zip(groups, amounts, strict=True))
    # Weighted fairness: two unclamped groups get amounts in proportion to their weights.
    free = [(w, a) for (_, w, lo, hi), a in zip(groups, amounts, strict=True) if lo < a < hi]
    for (w1, a1), (w2, a2) in itertools.pairwise(free):
        assert Fraction(a1) / w1 == Fraction(a2) / w2


def test_memory_quantum_is_whole_mib(tmp_path: Path) -> None:
    plan = fit(_load(minimal()))
    for a in plan.allocations:
        assert a.mem_limit % MiB == 0 or a.mem_limit == a.mem_reservation
