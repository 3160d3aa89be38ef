"""Judging with per-subject keys, as the worker does: an erased subject's trail is unlinked, and
processing its data after the erasure is still a violation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from events.pseudonyms import SubjectKeys
from events.tags import pseudonymise
from streams.erasure import erasures
from streams.history import SubjectHistory
from streams.judging import Incoming, Judge, Verdicts
from tests.unit.test_replay import ACCESS, KEY, POLICY, at, encoded, raw_event


def connectx(event_id: str, event_type: str, days: float, **data: Any) -> dict[str, Any]:
    document = raw_event(event_id, event_type, "cust-7", at(days), **data)
    document["data"]["org"] = "connectx"
    document["source"] = "/connectx/test"
    return document


ERASURE = [
    connectx("c-access", "privacy.data.accessed", 0, **ACCESS),
    connectx("c-opened", "privacy.request.opened", 1, request_id="r1", right="erasure"),
    connectx("c-fulfilled", "privacy.request.fulfilled", 2, request_id="r1", right="erasure"),
]
AFTER = connectx("c-after", "privacy.data.accessed", 3, **ACCESS)
# Happened before the erasure, arrives after it was carried out.
LATE = connectx("c-late", "privacy.data.accessed", 1.5, **ACCESS)


class Worker:
    """The worker's steps around the judge (streams/app.py): judge, store, then shred."""

    def __init__(self) -> None:
        self.keys = SubjectKeys(KEY, {})
        self.judge = Judge(POLICY, self.keys)
        self.table: dict[str, SubjectHistory] = {}
        self.offset = 0

    def run(self, documents: Sequence[dict[str, Any]]) -> Verdicts:
        batch = []
        for document in documents:
            batch.append(Incoming("privacy.events", 0, self.offset, b"cust-7", encoded(document)))
            self.offset += 1
        verdicts = self.judge.judge_batch(batch, self.table.get)
        assert not verdicts.dead_letters, [d.error for d in verdicts.dead_letters]
        self.table.update({key: history for key, (_, history) in verdicts.histories.items()})
        for pseudonym, time in erasures(verdicts.audit):
            self.keys.erase(pseudonym, time)
        self.keys.forget_resolved()
        return verdicts


def broken(verdicts: Verdicts) -> set[tuple[str, str]]:
    return {(v.event_id, v.rule_id) for v in verdicts.violations}


def test_after_an_erasure_the_subject_is_judged_under_a_pseudonym_that_starts_erased() -> None:
    worker = Worker()
    before = worker.run(ERASURE)
    (old,) = {record.subject_pseudonym for record in before.audit}
    assert old != pseudonymise(KEY, "connectx", "cust-7")

    after = worker.run([AFTER])

    (new,) = {record.subject_pseudonym for record in after.audit}
    assert new != old
    assert ("c-after", "CX-ERASED-006") in broken(after)
    (violation,) = [v for v in after.violations if v.rule_id == "CX-ERASED-006"]
    # Only the day: the exact instant would match the fulfilment's record under `old`.
    assert "erasure fulfilled at 2026-01-03T00:00:00+00:00" in violation.explanation


def test_an_event_from_before_the_erasure_that_arrives_after_it_is_not_judged_erased() -> None:
    worker = Worker()
    worker.run(ERASURE)

    late = worker.run([LATE])

    assert ("c-late", "CX-ERASED-006") not in broken(late)


def test_the_same_events_in_one_batch_break_the_same_rules() -> None:
    split, whole = Worker(), Worker()
    in_two = broken(split.run(ERASURE)) | broken(split.run([AFTER]))

    assert broken(whole.run([*ERASURE, AFTER])) == in_two


def test_a_subject_acting_on_its_own_data_is_stored_by_its_pseudonym() -> None:
    own = {**ACCESS, "actor": {"kind": "member", "id": "cust-7"}}
    verdicts = Worker().run([connectx("c-self", "privacy.data.accessed", 0, **own)])

    (record,) = verdicts.audit
    assert record.actor_id == record.subject_pseudonym
    assert "cust-7" not in record.model_dump_json()
