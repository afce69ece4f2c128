"""Human formats for CPUs and bytes, in a module light enough for the cron path."""

from __future__ import annotations

MiB = 1024**2


def format_bytes(n: int) -> str:
    """Human size in binary units, exact where possible (``1.5G``, ``512M``)."""
    for unit, size in (("T", 1024**4), ("G", 1024**3), ("M", MiB), ("K", 1024)):
        if n >= size:
            value = n / size
            return f"{value:.2f}".rstrip("0").rstrip(".") + unit
    return f"{n}B"


def format_cpus(milli: int) -> str:
    """Millicores as a decimal CPU count (``250`` -> ``0.25``)."""
    return f"{milli / 1000:.3f}".rstrip("0").rstrip(".")
