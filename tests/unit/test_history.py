"""A subject's window: kept events are judged again from their kept text, however they arrived."""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from events.outputs import Violation
from streams.history import SubjectHistory
from streams.judging import Incoming, Judge, StateLoader
from tests.unit.test_replay import ACCESS, EVERY_TYPE, KEY, POLICY, at, raw_event

CONSENT = "privacy.consent.changed"
ACCESSED = "privacy.data.accessed"


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


def one_at_a_time(
    judge: Judge, documents: list[dict[str, Any]], load: StateLoader
) -> Iterator[tuple[str, SubjectHistory]]:
    """Each document judged in a batch of its own: the subject's key and history after each."""
    for offset, document in enumerate(documents):
        incoming = Incoming("privacy.events", 0, offset, b"s1", json.dumps(document).encode())
        ((key, (_, history)),) = judge.judge_batch([incoming], load).histories.items()
        yield key, history


def test_events_that_arrived_with_a_byte_order_mark_are_judged_again_the_same() -> None:
    documents = [{**d, "id": f"{d['id']}-bom"} for d in EVERY_TYPE]

    assert judged_late(documents, codecs.BOM_UTF8) == judged_late(documents, b"")


def test_the_changelog_value_is_the_history_dumped_when_a_late_event_changes_a_verdict() -> None:
    # The targeted ad use breaks LX-ADS-002 (consent withdrawn) until the consent given after
    # the withdrawal and before the use arrives, late: the kept use's `violated` changes, and
    # its JSON must not be reused as it was.
    use = "marketing.advertising.first_party.targeted"
    documents = [
        raw_event("c-withdrawn", CONSENT, "s1", at(0.2), data_use=use, status="withdrawn"),
        raw_event("c-access", ACCESSED, "s1", at(1), **{**ACCESS, "data_use": use}),
        raw_event("c-given", CONSENT, "s1", at(0.6), data_use=use, status="given"),
    ]
    judge = Judge(POLICY, KEY)
    table: dict[str, SubjectHistory] = {}
    violated = []
    for key, history in one_at_a_time(judge, documents, table.get):
        table[key] = history
        value = history.changelog_json()

        assert value == history.model_dump_json(exclude_defaults=True).encode()
        assert SubjectHistory.model_validate_json(value).changelog_json() == value
        violated += [k.violated for k in history.window if k.id == "c-access"]
    assert violated[0] and not violated[-1]


def test_the_changelog_value_is_the_history_dumped_when_events_are_folded_into_the_base() -> None:
    # Trimming folds old events into the base, and an event older than the window is folded
    # into the base directly: either way the base's JSON must be encoded again.
    judge = Judge(POLICY, KEY, horizon=timedelta(days=1))
    table: dict[str, SubjectHistory] = {}
    documents = [
        {**d, "id": f"{d['id']}-{i}", "time": at(3 * i).isoformat()}
        for i, d in enumerate(EVERY_TYPE)
    ]
    # The second arrives when there is nothing to trim.
    late = [{**EVERY_TYPE[2], "id": f"beyond-{i}", "time": at(1 + i).isoformat()} for i in (0, 1)]
    for key, history in one_at_a_time(judge, [*documents, *late], table.get):
        table[key] = history

        assert history.changelog_json() == history.model_dump_json(exclude_defaults=True).encode()
    assert history.base.seen("beyond-1")


def test_trimming_folds_the_same_base_whether_or_not_the_history_was_read_back() -> None:
    # A kept state change holds what it changes, so trimming folds it into the base without
    # parsing it; read back from the changelog (after a restart) it holds only its text, which
    # trimming parses. Either way the base must come out the same.
    # Trimming runs before the batch moves "now": two more events, so the last change is folded.
    final = [{**EVERY_TYPE[0], "id": f"e-last-{i}"} for i in (1, 2)]
    documents = [{**d, "time": at(3 * i).isoformat()} for i, d in enumerate([*EVERY_TYPE, *final])]

    def bases(read_back: bool) -> list[dict[str, Any]]:
        judge = Judge(POLICY, KEY, horizon=timedelta(days=1))
        table: dict[str, SubjectHistory] = {}
        seen = []
        for key, history in one_at_a_time(judge, documents, table.get):
            seen.append(history.base.model_dump())
            value = history.changelog_json()
            table[key] = SubjectHistory.model_validate_json(value) if read_back else history
        return seen

    live = bases(read_back=False)

    assert live == bases(read_back=True)
    base = live[-1]
    assert base["consents"]["marketing.advertising"]["data_categories"] == ["user.contact.email"]
    assert (base["public_categories"], base["auto_share_with_employers"]) == (["user.name"], True)
    assert (base["account_status"], base["legal_hold_since"]) == ("closed", at(21))
    assert "request:42" in base["changed_at"] and base["erased_at"] == at(18)
