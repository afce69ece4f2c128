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


def format_duration(seconds: float) -> str:
    """A span as people say it: ``45 s``, ``12 min``, ``5 h``, ``400 d``."""
    seconds = abs(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration_s(text: str) -> float:
    """``90s``, ``30m``, ``4h``, ``1d`` or a sum of them (``1h30m``, as Alertmanager
    writes them) as seconds > 0. A unit is required: a bare ``5`` is more likely
    five hours or minutes meant than five seconds."""
    import re

    value = text.strip().lower()
    parts = re.findall(r"(\d+(?:\.\d+)?)(min|[smhd])", value)
    if not value or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"expected a duration like 90s, 30m, 4h, 1d or 1h30m (got {text!r})")
    seconds = sum(float(n) * _SECONDS[u] for n, u in parts)
    if not seconds > 0:
        raise ValueError(f"expected a duration above zero (got {text!r})")
    return seconds


def format_utc(ts: float) -> str:
    """An epoch time as ``2026-12-01 10:04 UTC`` (a damaged one as its number)."""
    import datetime as dt

    try:
        return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return f"{ts:.0f}"
