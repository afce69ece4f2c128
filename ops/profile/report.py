"""The profile for people: Rich tables of the top functions and of a diff."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ops.profile.model import Change, Profile, TopRow


def _pct(x: float) -> str:
    return f"{x * 100:5.1f}%"


def top_table(profile: Profile, top: Sequence[TopRow]) -> Any:
    """Top functions by self share, with total share (time under the function)."""
    from rich.table import Table
    from rich.text import Text

    title = (
        f"{profile.target} — {profile.language}, {profile.backend}, {profile.samples:,} "
        f"{profile.weight} over {profile.duration_s:g}s"
    )
    t = Table(title=title, title_justify="left")
    t.add_column("self", justify="right")
    t.add_column("total", justify="right")
    t.add_column("function")
    for row in top:
        t.add_row(_pct(row["self_share"]), _pct(row["total_share"]), Text(row["function"]))
    return t


def diff_table(rows: Sequence[Change], before: Profile, after: Profile, base: str, new: str) -> Any:
    """Share before -> after per function, largest self change first."""
    from rich.table import Table
    from rich.text import Text

    t = Table(
        title=f"{base} ({before.samples:,} samples) → {new} ({after.samples:,} samples)",
        title_justify="left",
    )
    for col in ("self before", "self after", "change", "total before", "total after", "function"):
        t.add_column(col, justify="left" if col == "function" else "right")
    for r in rows:
        delta = r["self_delta"] * 100
        style = "red" if delta > 0 else "green" if delta < 0 else ""
        t.add_row(
            _pct(r["self_before"]),
            _pct(r["self_after"]),
            Text(f"{delta:+.1f} pp", style=style),
            _pct(r["total_before"]),
            _pct(r["total_after"]),
            Text(r["function"]),  # frames like `[unknown]` are not Rich markup
        )
    if not rows:
        t.caption = "no function's share changed by more than the threshold"
    return t
