"""Human formats for CPUs and bytes, in a module light enough for the cron path."""

from __future__ import annotations

import math
import re

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


#: How much of a value an error line repeats before cutting it short.
SHOWN_CHARS = 40


def shown(value: object) -> str:
    """``repr(value)`` for an error line, a long one cut short with its length:
    ``'99999…' (5012 characters)``, so a hostile value never floods the terminal."""
    text = repr(value)
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS]}\u2026 ({len(text)} characters)"


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


_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
#: The longest duration any option or file may name: past it a value is a typo
#: (or an attack), and it is refused before anything is scheduled or slept on.
MAX_DURATION_S = 10 * 365 * 86400.0
_MAX_DURATION_TEXT = 64  # characters: refuse thousands of digits before reading them
DURATION_HINT = "a duration like 30s, 2m, 1h, 1d, 1h30m or a number of seconds"


def parse_duration_s(text: str | float) -> float:
    """The one duration grammar, as seconds > 0.

    ``30s``, ``500ms``, ``2m`` (``min`` too), ``1h``, ``1d``, sums of them
    written together as Alertmanager and Go do (``1h30m``), or a bare number
    meaning seconds (``8``, also a YAML number). Refused with a ValueError
    that says what is expected: ``inf``, ``nan``, negatives, zero, text longer
    than 64 characters (thousands of digits are refused before they are read)
    and anything above ten years. Callers add the file and key or the flag.
    """
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"expected {DURATION_HINT} (got {shown(text)})")
    if isinstance(text, int | float):
        if isinstance(text, int) and abs(text) > MAX_DURATION_S:
            digits = round(abs(text).bit_length() * math.log10(2)) or 1  # str() may refuse it
            raise ValueError(f"at most 10 years (got a number of about {digits} digits)")
        seconds = float(text)
    else:
        value = text.strip().lower()
        if len(value) > _MAX_DURATION_TEXT:
            raise ValueError(f"expected {DURATION_HINT} (got {len(text)} characters)")
        if value.startswith("-"):
            raise ValueError(f"a duration cannot be negative (got {shown(text)})")
        if _NUMBER.fullmatch(value):
            seconds = float(value)
        else:
            parts = _PART.findall(value)
            if not value or "".join(n + u for n, u in parts) != value:
                raise ValueError(f"expected {DURATION_HINT} (got {shown(text)})")
            seconds = sum(float(n) * _SECONDS[u] for n, u in parts)
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"expected {DURATION_HINT} (got {shown(text)})")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative (got {shown(text)})")
    if seconds == 0:
        raise ValueError(f"expected a duration above zero (got {shown(text)})")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"at most 10 years (got {shown(text)})")
    return seconds


def format_duration_spec(seconds: float) -> str:
    """Seconds in the grammar's own canonical form, whole units largest first:
    ``5400`` -> ``1h30m``, ``0.5`` -> ``500ms`` (what nginx, Prometheus and
    Compose all read). Below a millisecond is rounded to one."""
    ms = max(1, round(seconds * 1000))
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        n, ms = divmod(ms, size)
        if n:
            out.append(f"{n}{unit}")
    if ms:
        out.append(f"{ms}ms")
    return "".join(out)


# ASCII digits only: ``\d`` also matches other scripts' digits (``١٢``), which
# float() would then read as a number.
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|min|[smhd])")


def format_utc(ts: float) -> str:
    """An epoch time as ``2026-12-01 10:04 UTC`` (a damaged one as its number)."""
    import datetime as dt

    try:
        return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return f"{ts:.0f}"
