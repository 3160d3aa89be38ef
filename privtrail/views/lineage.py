"""A subject's lineage in the terminal: the rules it broke, then a timeline per recipient its
data was shared with and per actor that accessed it, readable at 80 columns.

Each timeline line is one event: its time, the categories it touched, for what use, and the
rules it broke. Lines wrap at the terminal's width instead of cutting words short.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import groupby

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.text import Text

from events.outputs import Violation
from privtrail.schemas import Lineage
from privtrail.views import INDENT, TIME, timeline_grid
from sinks import LineageEdge


def render_lineage(lineage: Lineage, console: Console) -> None:
    """Print `lineage`; the caller says so when nothing is recorded."""
    console.print(_heading(lineage), highlight=False)
    console.print(_counts(lineage), highlight=False)
    broken = sorted(lineage.summary.violations, key=lambda v: (v.occurred_at, v.rule_id))
    if broken:
        console.print()
        console.print(_violations(broken), highlight=False)
    rules_by_event: dict[str, list[str]] = {}
    for violation in broken:
        rules_by_event.setdefault(violation.event_id, []).append(violation.rule_id)
    for title, edges in _groups(lineage.edges):
        console.print()
        console.print(Text(title, style="bold cyan"), _timeline(edges, rules_by_event))


def _heading(lineage: Lineage) -> Text:
    kind = f" ({lineage.subject_kind})" if lineage.subject_kind else ""
    return Text.assemble(
        "Subject ",
        (lineage.subject_pseudonym, "magenta"),
        f"{kind} in ",
        (lineage.org, "cyan"),
        style="bold",
    )


def _counts(lineage: Lineage) -> Text:
    summary = lineage.summary
    events = len({edge.event_id for edge in lineage.edges})
    versions = sorted({edge.policy_version for edge in lineage.edges})
    counts = [
        _plural(events, "event"),
        _plural(len(summary.categories), "data category", "data categories"),
        _plural(len(summary.actors), "actor"),
        _plural(len(summary.recipients), "recipient"),
        _plural(len(summary.violations), "violation"),
    ]
    policy = f"; judged under policy {', '.join(versions)}" if versions else ""
    return Text(", ".join(counts) + policy, style="dim")


def _violations(broken: list[Violation]) -> RenderableType:
    rows = timeline_grid()
    for v in broken:
        line = Text.assemble((v.rule_id, "bold red"), f" {v.severity}")
        if v.status == "retracted":
            line.append(" RETRACTED", style="yellow")
        line.append(f" event {v.event_id}\n", style="dim")
        line.append(f"{v.explanation}\n")
        line.append(f"policy {v.policy_section}: {v.policy_text}", style="dim")
        rows.add_row(f"{v.occurred_at:{TIME}}", line)
    title = Text(f"Rules broken ({len(broken)})", style="bold red")
    return Group(title, Padding(rows, (0, 0, 0, INDENT)))


def _groups(edges: list[LineageEdge]) -> list[tuple[str, list[LineageEdge]]]:
    """Shares by recipient, then accesses by actor, each group in order of its first event."""
    shares = _grouped((e for e in edges if e.action == "shared"), _recipient_title)
    accesses = _grouped((e for e in edges if e.action == "accessed"), _actor_title)
    return shares + accesses


def _grouped(
    edges: Iterable[LineageEdge], title_of: Callable[[LineageEdge], str]
) -> list[tuple[str, list[LineageEdge]]]:
    groups: dict[str, list[LineageEdge]] = {}
    for edge in edges:
        groups.setdefault(title_of(edge), []).append(edge)
    return sorted(groups.items(), key=lambda group: min(e.event_time for e in group[1]))


def _recipient_title(edge: LineageEdge) -> str:
    country = f" ({edge.recipient_country})" if edge.recipient_country else ""
    return f"Shared with {_party(edge.recipient_kind, edge.recipient_id)}{country}"


def _actor_title(edge: LineageEdge) -> str:
    return f"Accessed by {_party(edge.actor_kind, edge.actor_id)}"


def _party(kind: str | None, party_id: str | None) -> str:
    return " ".join(part for part in (kind, party_id) if part) or "unknown"


def _timeline(edges: list[LineageEdge], rules_by_event: dict[str, list[str]]) -> Padding:
    rows = timeline_grid()
    ordered = sorted(edges, key=lambda e: (e.event_time, e.event_id))
    for _, same_event in groupby(ordered, key=lambda e: e.event_id):
        event = list(same_event)
        rows.add_row(f"{event[0].event_time:{TIME}}", _event_line(event, rules_by_event))
    return Padding(rows, (0, 0, 0, INDENT))


def _event_line(event: list[LineageEdge], rules_by_event: dict[str, list[str]]) -> Text:
    first = event[0]
    line = Text(", ".join(sorted({e.data_category for e in event})))
    if first.data_use:
        line.append(f" for {first.data_use}")
    if first.action == "shared":
        line.append(f" by {_party(first.actor_kind, first.actor_id)}", style="dim")
    if first.legal_basis:
        line.append(f", basis {first.legal_basis}", style="dim")
    rules = rules_by_event.get(first.event_id)
    if rules:
        line.append(f"  breaks {', '.join(sorted(set(rules)))}", style="bold red")
    return line


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"
