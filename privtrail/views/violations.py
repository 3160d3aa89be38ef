"""A list of violations in the terminal: one entry per violation, its details wrapped beside
the time the rule was broken."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from events.outputs import Violation
from privtrail.views import TIME, timeline_grid


def render_violations(found: list[Violation], console: Console) -> None:
    rows = timeline_grid()
    for v in found:
        rows.add_row(f"{v.occurred_at:{TIME}}", _entry(v))
    console.print(rows, highlight=False)
    console.print(f"{len(found)} violation(s)", style="dim")


def _entry(v: Violation) -> Text:
    line = Text()
    if v.status == "retracted":
        line.append("RETRACTED ", style="yellow")
    line.append(v.rule_id, style="bold red")
    line.append(f" {v.severity} ")
    line.append(v.org, style="cyan")
    line.append(" subject ")
    line.append(v.subject_pseudonym, style="magenta")
    line.append(f"\n{v.explanation}\n")
    line.append(f"event {v.event_id}, policy {v.policy_version}", style="dim")
    return line
