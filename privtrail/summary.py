"""The closing summary of `privtrail up`: what the run sent, and what the store gained meanwhile."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from events.outputs import Severity
from privtrail.schemas import Stats

SEVERITIES: tuple[Severity, ...] = ("critical", "high", "medium", "low")


def violations_by_severity(stats: Stats) -> Counter[str]:
    counts: Counter[str] = Counter()
    for row in stats.violations_by_rule:
        counts[row.severity] += row.count
    return counts


def summary_lines(sent: int, elapsed: float, before: Stats | str, after: Stats | str) -> list[str]:
    """What to print when `up` ends. `before` and `after` are the store's counts when the run
    began and ended, or why they could not be read; the store may hold earlier runs' rows, so
    only the difference belongs to this run."""
    lines = [
        f"privtrail ran for {timedelta(seconds=round(elapsed))}",
        f"  demo events sent: {sent}",
    ]
    if isinstance(before, str) or isinstance(after, str):
        why = before if isinstance(before, str) else after
        return [*lines, f"  stored violations and rejected inputs unknown: {why}"]
    gained = violations_by_severity(after)
    gained.subtract(violations_by_severity(before))
    by_severity = ", ".join(f"{name} {gained[name]}" for name in SEVERITIES if gained[name])
    total = sum(gained.values())
    return [
        *lines,
        f"  violations stored: {total}" + (f" ({by_severity})" if by_severity else ""),
        f"  rejected inputs stored: {after.rejected_events - before.rejected_events}",
    ]
