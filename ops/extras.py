"""Optional parts of the install: which extra a command needs, and the line that says so.

The core install (``pip install vots-ops``) is what a host running only the
``report`` cron job needs, plus ``plan``. Each other command's packages are an
extra (``vots-ops[loadtest]``, ``[profile]``, ``[verify]``, ``[remote]``, or
``[all]``). A command that needs one calls :func:`require` (a package it imports
or runs as ``python -m``) or :func:`require_tool` (a program the package puts
next to this Python) first, so a missing extra is one line naming what to
install, never an ``ImportError`` from deep inside.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

from ops.errors import OpsError

EXTRAS = {
    "loadtest": ("locust", "hdrhistogram"),
    "profile": ("py-spy", "httpx"),
    "verify": ("check-jsonschema", "kubernetes-validate"),
    "remote": ("docker",),
}


class MissingExtra(OpsError):
    """A command needs a package of an extra that is not installed (exit 2)."""

    def __init__(self, purpose: str, package: str, extra: str) -> None:
        self.purpose, self.package, self.extra = purpose, package, extra
        super().__init__(f"{purpose} needs {package}: pip install 'vots-ops[{extra}]'")


def install_hint(extra: str) -> str:
    """The install line for ``extra``."""
    _known(extra)
    return f"pip install 'vots-ops[{extra}]'"


def require(module: str, extra: str, purpose: str, *, package: str | None = None) -> None:
    """Raise :class:`MissingExtra` unless ``module`` can be imported.

    Only the module's spec is looked up: nothing is imported, so the check costs
    a directory scan, not the package's own start-up. ``package`` names the
    distribution when it differs from the module (``hdrh`` comes from
    ``hdrhistogram``).
    """
    _known(extra)
    top = module.partition(".")[0]
    try:
        found = importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):  # a broken or half-removed install
        found = False
    if not found:
        raise MissingExtra(purpose, package or top, extra)


def require_tool(program: str, extra: str, purpose: str) -> str:
    """The path of ``program``, installed by a package of ``extra``; else :class:`MissingExtra`.

    The copy next to this Python comes first: a venv's ``bin/`` is often not on
    PATH (cron, systemd, ``/path/to/venv/bin/vots-ops``), and a program of that
    name elsewhere on PATH may belong to another install.
    """
    _known(extra)
    here = Path(sys.executable).parent / program
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which(program)
    if found is None:
        raise MissingExtra(purpose, program, extra)
    return found


def _known(extra: str) -> None:
    if extra not in EXTRAS:  # a typo here would send users to a nonexistent extra
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(sorted(EXTRAS))}")
