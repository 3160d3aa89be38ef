"""A subject's lineage in the terminal: the rules it broke, then a timeline per recipient its
data was shared with and per actor that accessed it, readable at 80 columns.

Each timeline line is one event: its time, the categories it touched, for what use, and the
rules it broke. Lines wrap at the terminal's width instead of cutting words short.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from itertools import groupby
from typing import Any

from privtrail.views import INDENT, Piece, Row, Screen, timestamp

# An answer's object as decoded JSON: GET /lineage answers privtrail.schemas.Lineage, whose
# edges are sinks.LineageEdge and whose violations are events.outputs.Violation.
Json = dict[str, Any]


def lineage_lines(lineage: Json, screen: Screen) -> list[str]:
    """`lineage` laid out; the caller says so when nothing is recorded."""
    lines = [*screen.wrap(_heading(lineage)), *screen.wrap([(_counts(lineage), "dim")])]
    violations = lineage["summary"]["violations"]
    broken = sorted(violations, key=lambda v: (_time(v, "occurred_at"), v["rule_id"]))
    if broken:
        lines += ["", *screen.wrap([(f"Rules broken ({len(broken)})", "bold red")])]
        lines += screen.timeline([_violation_row(v) for v in broken], INDENT)
    rules_by_event: dict[str, list[str]] = {}
    for violation in broken:
        rules_by_event.setdefault(violation["event_id"], []).append(violation["rule_id"])
    for title, edges in _groups(lineage["edges"]):
        lines += ["", *screen.wrap([(title, "bold cyan")])]
        lines += screen.timeline(_timeline(edges, rules_by_event), INDENT)
    return lines


def erased_lines(lineage: Json, screen: Screen) -> list[str]:
    """The answer for an erased subject: nothing stored links to it any more."""
    return screen.wrap(
        [
            ("Subject erased ", "bold"),
            (f"at {_day(lineage['erased_at'])}", "bold magenta"),
            (" in ", "bold"),
            (lineage["org"], "bold cyan"),
            (
                ": its events, violations and counts are kept under a pseudonym that no longer "
                "links to its id.",
                "",
            ),
        ]
    )


def _heading(lineage: Json) -> list[Piece]:
    kind = f" ({lineage['subject_kind']})" if lineage["subject_kind"] else ""
    heading: list[Piece] = [
        ("Subject ", "bold"),
        (lineage["subject_pseudonym"], "bold magenta"),
        (f"{kind} in ", "bold"),
        (lineage["org"], "bold cyan"),
    ]
    if lineage.get("erased_at"):
        heading.append((f" (erased at {_day(lineage['erased_at'])}; its trail since)", "dim"))
    return heading


def _day(iso: str) -> str:
    return f"{datetime.fromisoformat(iso):%Y-%m-%d}"


def _counts(lineage: Json) -> str:
    summary, edges = lineage["summary"], lineage["edges"]
    events = len({edge["event_id"] for edge in edges})
    versions = sorted({edge["policy_version"] for edge in edges})
    counts = [
        _plural(events, "event"),
        _plural(len(summary["categories"]), "data category", "data categories"),
        _plural(len(summary["actors"]), "actor"),
        _plural(len(summary["recipients"]), "recipient"),
        _plural(len(summary["violations"]), "violation"),
    ]
    policy = f"; judged under policy {', '.join(versions)}" if versions else ""
    return ", ".join(counts) + policy


def _violation_row(v: Json) -> Row:
    heading: list[Piece] = [(v["rule_id"], "bold red"), (f" {v['severity']}", "")]
    if v["status"] == "retracted":
        heading.append((" RETRACTED", "yellow"))
    heading.append((f" event {v['event_id']}", "dim"))
    policy = f"policy {v['policy_section']}: {v['policy_text']}"
    return timestamp(v["occurred_at"]), [heading, [(v["explanation"], "")], [(policy, "dim")]]


def _groups(edges: list[Json]) -> list[tuple[str, list[Json]]]:
    """Shares by recipient, then accesses by actor, each group in order of its first event."""
    shares = _grouped((e for e in edges if e["action"] == "shared"), _recipient_title)
    accesses = _grouped((e for e in edges if e["action"] == "accessed"), _actor_title)
    return shares + accesses


def _grouped(
    edges: Iterable[Json], title_of: Callable[[Json], str]
) -> list[tuple[str, list[Json]]]:
    groups: dict[str, list[Json]] = {}
    for edge in edges:
        groups.setdefault(title_of(edge), []).append(edge)
    return sorted(groups.items(), key=lambda group: min(_time(e, "event_time") for e in group[1]))


def _recipient_title(edge: Json) -> str:
    country = f" ({edge['recipient_country']})" if edge["recipient_country"] else ""
    return f"Shared with {_party(edge['recipient_kind'], edge['recipient_id'])}{country}"


def _actor_title(edge: Json) -> str:
    return f"Accessed by {_party(edge['actor_kind'], edge['actor_id'])}"


def _party(kind: str | None, party_id: str | None) -> str:
    return " ".join(part for part in (kind, party_id) if part) or "unknown"


def _timeline(edges: list[Json], rules_by_event: dict[str, list[str]]) -> list[Row]:
    ordered = sorted(edges, key=lambda e: (_time(e, "event_time"), e["event_id"]))
    return [
        (timestamp(event[0]["event_time"]), [_event_line(event, rules_by_event)])
        for event in (list(same) for _, same in groupby(ordered, key=lambda e: e["event_id"]))
    ]


def _event_line(event: list[Json], rules_by_event: dict[str, list[str]]) -> list[Piece]:
    first = event[0]
    line: list[Piece] = [(", ".join(sorted({e["data_category"] for e in event})), "")]
    if first["data_use"]:
        line.append((f" for {first['data_use']}", ""))
    if first["action"] == "shared":
        line.append((f" by {_party(first['actor_kind'], first['actor_id'])}", "dim"))
    if first["legal_basis"]:
        line.append((f", basis {first['legal_basis']}", "dim"))
    rules = rules_by_event.get(first["event_id"])
    if rules:
        line.append((f"  breaks {', '.join(sorted(set(rules)))}", "bold red"))
    return line


def _time(answer: Json, field: str) -> datetime:
    return datetime.fromisoformat(answer[field])


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"
