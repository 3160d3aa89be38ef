"""The closing summary of `privtrail up`: what the run sent, what the store gained meanwhile, and
commands to try next about subjects of the run."""

from __future__ import annotations

import shlex
import sys
from collections import Counter
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from events.outputs import Severity
from privtrail.schemas import Stats

if TYPE_CHECKING:
    from privtrail.demo import DemoSubject

SEVERITIES: tuple[Severity, ...] = ("critical", "high", "medium", "low")
# The demo's newest stories end within the last hour; this window finds them for a while.
RECENT_WINDOW = "2h"


def violations_by_severity(stats: Stats) -> Counter[str]:
    counts: Counter[str] = Counter()
    for row in stats.violations_by_rule:
        counts[row.severity] += row.count
    return counts


def summary_lines(
    sent: int,
    elapsed: float,
    before: Stats | str,
    after: Stats | str,
    subjects: Iterable[DemoSubject] = (),
    program: str | None = None,
) -> list[str]:
    """What to print when `up` ends. `before` and `after` are the store's counts when the run
    began and ended, or why they could not be read; the store may hold earlier runs' rows, so
    only the difference belongs to this run. `subjects` are violating subjects the demo sent,
    to suggest commands about; `program` is how to invoke privtrail (default: as it was)."""
    lines = [
        f"privtrail ran for {timedelta(seconds=round(elapsed))}",
        f"  demo events sent: {sent}",
        *_store_lines(before, after),
    ]
    return [*lines, *try_next_lines(list(subjects), program or invocation())]


def _store_lines(before: Stats | str, after: Stats | str) -> list[str]:
    if isinstance(before, str) or isinstance(after, str):
        why = before if isinstance(before, str) else after
        return [f"  stored violations and rejected inputs unknown: {why}"]
    gained = violations_by_severity(after)
    gained.subtract(violations_by_severity(before))
    by_severity = ", ".join(f"{name} {gained[name]}" for name in SEVERITIES if gained[name])
    total = sum(gained.values())
    return [
        f"  violations stored: {total}" + (f" ({by_severity})" if by_severity else ""),
        f"  rejected inputs stored: {(after.rejected_events or 0) - (before.rejected_events or 0)}",
    ]


def try_next_lines(subjects: list[DemoSubject], program: str) -> list[str]:
    """Commands about real subjects of the run, one per subject, with the rules it broke."""
    if not subjects:
        return []
    lookups = [
        (f"{program} lineage {shlex.quote(s.subject_id)} --org {s.org}", ", ".join(s.rules))
        for s in subjects
    ]
    width = max(len(command) for command, _ in lookups)
    return [
        "try next:",
        f"  {program} violations --since {RECENT_WINDOW}",
        *(f"  {command:<{width}}  # broke {rules}" for command, rules in lookups),
    ]


def invocation() -> str:
    """How to run privtrail again as this process was run: `.venv/bin/privtrail` under
    `make run`, the interpreter with `-m privtrail` otherwise."""
    argv0 = sys.argv[0]
    if Path(argv0).name == "privtrail":
        return shlex.quote(argv0)
    return f"{shlex.quote(sys.executable)} -m privtrail"
