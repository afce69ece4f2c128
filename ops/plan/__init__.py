"""Plan: fit resources to the VM and render compose, nginx and Prometheus files.

``plan_stack`` is the one call behind ``vots-ops plan``; the rest are its parts.
"""

from ops.plan.capacity import Allocation, HostCapacity, Plan, fit
from ops.plan.pipeline import ForeignFiles, PlanResult, VerifyReport, plan_stack
from ops.plan.render import NginxRuntime, render_files

__all__ = [
    "Allocation",
    "ForeignFiles",
    "HostCapacity",
    "NginxRuntime",
    "Plan",
    "PlanResult",
    "VerifyReport",
    "fit",
    "plan_stack",
    "render_files",
]
