"""Plan: fit resources to the VM and render compose, nginx and Prometheus files."""

from ops.plan.capacity import Allocation, HostCapacity, Plan, fit
from ops.plan.render import NginxRuntime, PlanResult, plan_stack, render_files

__all__ = [
    "Allocation",
    "HostCapacity",
    "NginxRuntime",
    "Plan",
    "PlanResult",
    "fit",
    "plan_stack",
    "render_files",
]
