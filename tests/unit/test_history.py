"""A subject's window: kept events are judged again from their kept text, however they arrived."""

from __future__ import annotations

import codecs
import json
from typing import Any

from events.outputs import Violation
from streams.history import SubjectHistory
from streams.judging import Incoming, Judge
from tests.unit.test_replay import EVERY_TYPE, KEY, POLICY


def judged_late(documents: list[dict[str, Any]], prefix: bytes) -> tuple[dict[str, Any], ...]:
    """Every event but the first in order, then the first: the window is judged again."""
    judge = Judge(POLICY, KEY)
    table: dict[str, SubjectHistory] = {}
    violations: dict[str, Violation] = {}
    audit: dict[str, list[str]] = {}
    arrival = [*documents[1:], documents[0]]
    for offset, document in enumerate(arrival):
        value = prefix + json.dumps(document).encode()
        incoming = Incoming("privacy.events", 0, offset, b"s1", value)
        verdicts = judge.judge_batch([incoming], table.get)
        assert not verdicts.dead_letters, [d.error for d in verdicts.dead_letters]
        table.update({key: history for key, (_, history) in verdicts.histories.items()})
        violations.update({v.violation_id: v for v in verdicts.violations})
        audit.update({r.event_id: r.violated_rules for r in verdicts.audit})
    (history,) = table.values()
    return (
        {vid: v.model_dump(exclude={"detected_at"}) for vid, v in violations.items()},
        audit,
        history.state.model_dump(),
    )


def test_events_that_arrived_with_a_byte_order_mark_are_judged_again_the_same() -> None:
    documents = [{**d, "id": f"{d['id']}-bom"} for d in EVERY_TYPE]

    assert judged_late(documents, codecs.BOM_UTF8) == judged_late(documents, b"")
