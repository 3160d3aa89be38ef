"""Judging with per-subject keys, as the worker does: an erased subject's trail is unlinked, and
processing its data after the erasure is still a violation."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from events.pseudonyms import SubjectKeys, parse_key
from events.tags import pseudonymise
from streams.history import SubjectHistory
from streams.judging import Incoming, Judge, Verdicts
from tests.unit.test_pseudonyms import counting_secrets
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
    """The worker's steps around the judge (streams/app.py): key changes, then outputs and
    state; its key table and states are what a restarted worker recovers."""

    def __init__(
        self,
        keys: dict[str, Any] | None = None,
        states: dict[str, SubjectHistory] | None = None,
        offset: int = 0,
    ) -> None:
        self.key_table: dict[str, Any] = {} if keys is None else keys
        self.keys = SubjectKeys(KEY, self.key_table, counting_secrets())
        self.judge = Judge(POLICY, self.keys)
        self.table: dict[str, SubjectHistory] = {} if states is None else states
        self.offset = offset

    def run(self, documents: Sequence[dict[str, Any]]) -> Verdicts:
        batch = []
        for document in documents:
            batch.append(Incoming("privacy.events", 0, self.offset, b"cust-7", encoded(document)))
            self.offset += 1
        verdicts = self.judge.judge_batch(batch, self.table.get)
        assert not verdicts.dead_letters, [d.error for d in verdicts.dead_letters]
        self.keys.take_pending()
        self.table.update({key: history for key, (_, history) in verdicts.histories.items()})
        return verdicts

    def restarted(self, states: dict[str, SubjectHistory], offset: int) -> Worker:
        """A worker that recovered this one's keys and the given states, and reads on from
        `offset`: as after a crash before the batch's offsets were committed."""
        keys = {lookup: parse(value) for lookup, value in self.key_table.items()}
        return Worker(keys, dict(states), offset)


def parse(value: Any) -> Any:
    key = parse_key(value)
    assert key is not None
    return key.model_dump(mode="json")


def outputs(verdicts: Verdicts) -> list[dict[str, Any]]:
    """What the worker sends, without the times it judged at."""
    return [r.model_dump(exclude={"judged_at"}) for r in verdicts.audit] + [
        v.model_dump(exclude={"detected_at"}) for v in verdicts.violations
    ]


def pseudonyms(verdicts: Verdicts) -> dict[str, str]:
    return {record.event_id: record.subject_pseudonym for record in verdicts.audit}


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


def test_the_same_events_in_one_batch_get_the_same_pseudonyms_and_break_the_same_rules() -> None:
    split, whole = Worker(), Worker()
    first, second = split.run(ERASURE), split.run([AFTER])

    together = whole.run([*ERASURE, AFTER])

    assert broken(together) == broken(first) | broken(second)
    assert pseudonyms(together) == pseudonyms(first) | pseudonyms(second)
    assert pseudonyms(together)["c-after"] != pseudonyms(together)["c-fulfilled"]


def test_a_batch_judged_again_after_a_crash_gives_the_same_outputs() -> None:
    worker = Worker()
    worker.run(ERASURE[:1])
    # The judge folds into the loaded histories: what the changelog held is a copy.
    states, offset = copy.deepcopy(worker.table), worker.offset
    batch = [*ERASURE[1:], AFTER, LATE]
    first = worker.run(batch)

    # Killed after the batch's keys were written, before its state or offsets were.
    again = worker.restarted(states, offset).run(batch)

    assert outputs(again) == outputs(first)
    assert broken(first) >= {("c-after", "CX-ERASED-006")}


def test_a_batch_judged_again_after_its_state_was_written_is_not_counted_twice() -> None:
    worker = Worker()
    worker.run(ERASURE[:1])
    offset = worker.offset
    worker.run([*ERASURE[1:], AFTER])

    again = worker.restarted(worker.table, offset).run([*ERASURE[1:], AFTER])

    assert again.audit == [] and again.violations == []


def test_a_subject_acting_on_its_own_data_is_stored_by_its_pseudonym() -> None:
    own = {**ACCESS, "actor": {"kind": "member", "id": "cust-7"}}
    verdicts = Worker().run([connectx("c-self", "privacy.data.accessed", 0, **own)])

    (record,) = verdicts.audit
    assert record.actor_id == record.subject_pseudonym
    assert "cust-7" not in record.model_dump_json()
