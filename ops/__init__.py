"""vots-ops: plan, load-test, profile and report on the VOTS // DYSTOLABS stack.

The library is usable without the CLI: ``ops.stack.load_stack`` reads a
``stack.yaml``, ``ops.plan.plan_stack`` fits resources and renders files.
"""

__version__ = "0.1.0"
