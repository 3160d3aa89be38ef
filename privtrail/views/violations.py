"""A list of violations in the terminal: one entry per violation, its details wrapped beside
the time the rule was broken."""

from __future__ import annotations

from typing import Any

from privtrail.views import Piece, Row, Screen, timestamp


def violation_lines(found: list[dict[str, Any]], screen: Screen) -> list[str]:
    """`found`: the violations as GET /violations answers them (events.outputs.Violation)."""
    rows: list[Row] = [(timestamp(v["occurred_at"]), _entry(v)) for v in found]
    return [*screen.timeline(rows), screen.paint(f"{len(found)} violation(s)", "dim")]


def _entry(v: dict[str, Any]) -> list[list[Piece]]:
    heading: list[Piece] = [("RETRACTED ", "yellow")] if v["status"] == "retracted" else []
    heading += [
        (v["rule_id"], "bold red"),
        (f" {v['severity']} ", ""),
        (v["org"], "cyan"),
        (" subject ", ""),
        (v["subject_pseudonym"], "magenta"),
    ]
    details = f"event {v['event_id']}, policy {v['policy_version']}"
    return [heading, [(v["explanation"], "")], [(details, "dim")]]
