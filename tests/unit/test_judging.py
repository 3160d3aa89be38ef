"""The batch judge's mechanics, with a two-rule policy: dedup, ordering, deadlines, dead letters."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from events.models import DataSharedEvent, PrivacyEvent
from events.taxonomy import Taxonomy
from streams.history import SubjectHistory
from streams.judging import Incoming, Judge, Verdicts
from streams.rules import Finding, PolicySet, RuleInfo
from streams.state import SubjectState

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SHARE_RULE = RuleInfo("T-SHARE-1", "acme", "high", "1", "We never share with ad networks.")
CLOSE_RULE = RuleInfo("T-CLOSE-2", "acme", "medium", "2", "We delete within a day of closure.")


class TwoRules(PolicySet):
    version = "test-v1"

    @property
    def taxonomies(self) -> Mapping[str, Taxonomy]:
        return {"acme": Taxonomy.default()}

    def judge(self, event: PrivacyEvent, state: SubjectState) -> list[Finding]:
        if isinstance(event, DataSharedEvent) and event.data.recipient.kind == "ad_network":
            return [Finding(SHARE_RULE, "shared with an ad network")]
        return []

    def due(self, state: SubjectState, now: datetime) -> list[Finding]:
        deadline = self.next_deadline(state)
        if deadline is None or deadline >= now:
            return []
        return [Finding(CLOSE_RULE, "not erased", deadline, state.closed_event_id)]

    def next_deadline(self, state: SubjectState) -> datetime | None:
        if state.closed_at is None or state.erased_at is not None:
            return None
        deadline = state.closed_at + timedelta(days=1)
        return None if state.has_fired(CLOSE_RULE.rule_id, deadline) else deadline


def raw(
    event_id: str, minutes: float, kind: str = "account.changed", subject: str = "s1", **data: Any
) -> bytes:
    body = {"org": "acme", "subject": {"id": subject, "kind": "customer"}, **data}
    if kind == "account.changed":
        body.setdefault("status", "active")
    if kind == "data.shared":
        body |= {
            "actor": {"kind": "service", "id": "exporter"},
            "data_categories": ["user.contact.email"],
            "data_use": "marketing.advertising",
            "recipient": {"id": "ads", "kind": "ad_network", "country": "US"},
            "transfer": {"encrypted": True},
        }
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "/acme/app",
            "type": f"privacy.{kind}",
            "time": (T0 + timedelta(minutes=minutes)).isoformat(),
            "data": body,
        }
    ).encode()


def incoming(value: bytes, key: bytes | None = b"s1", offset: int = 0) -> Incoming:
    return Incoming("privacy.events", 3, offset, key, value)


class Store:
    """A dict standing in for the worker's state table."""

    def __init__(self) -> None:
        self.histories: dict[str, SubjectHistory] = {}

    def load(self, key: str) -> SubjectHistory | None:
        return self.histories.get(key)

    def save(self, verdicts: Verdicts) -> None:
        for key, (_, history) in verdicts.histories.items():
            self.histories[key] = history


def test_violations_audit_and_dead_letters_from_one_batch() -> None:
    judge, store = Judge(TwoRules(), b"k"), Store()
    verdicts = judge.judge_batch(
        [
            incoming(raw("e1", 1, "data.shared")),
            incoming(b"{oops", offset=1),
            incoming(raw("e2", 2), key=b"someone-else", offset=2),
            incoming(raw("e3", 3, org_typo=1), offset=3),
        ],
        store.load,
    )
    assert [v.rule_id for v in verdicts.violations] == ["T-SHARE-1"]
    violation = verdicts.violations[0]
    assert violation.event_id == "e1" and violation.policy_version == "test-v1"
    assert violation.recipient == "ad_network:ads" and violation.actor == "service:exporter"
    assert [r.event_id for r in verdicts.audit] == ["e1"]
    assert verdicts.audit[0].violated_rules == ["T-SHARE-1"]
    reasons = {d.incoming.offset: (d.error.field, d.error.reason) for d in verdicts.dead_letters}
    assert reasons[1][0] == "" and "JSON" in reasons[1][1]
    assert reasons[2][0] == "key"
    assert reasons[3][0] == "data.org_typo"
    headers = dict(verdicts.dead_letters[0].headers(T0))
    assert headers["privtrail.error.offset"] == b"1"


def test_no_raw_subject_id_leaves_the_judge() -> None:
    verdicts = Judge(TwoRules(), b"k").judge_batch(
        [incoming(raw("e1", 1, "data.shared"))], Store().load
    )
    dumped = verdicts.violations[0].model_dump_json() + verdicts.audit[0].model_dump_json()
    assert '"s1"' not in dumped
    assert list(verdicts.states) == [verdicts.audit[0].subject_pseudonym]
    assert verdicts.states[verdicts.audit[0].subject_pseudonym][0] == 3  # source partition


def test_a_duplicated_event_counts_once_within_and_across_batches() -> None:
    judge, store = Judge(TwoRules(), b"k"), Store()
    share = incoming(raw("e1", 1, "data.shared"))
    first = judge.judge_batch([share, share], store.load)
    store.save(first)
    second = judge.judge_batch([share], store.load)
    assert len(first.violations) == 1 and len(first.audit) == 1
    assert not second.violations and not second.audit


def test_events_of_a_subject_are_judged_in_event_time_order() -> None:
    judge, store = Judge(TwoRules(), b"k"), Store()
    verdicts = judge.judge_batch(
        [incoming(raw("late", 5, status="closed")), incoming(raw("early", 1, status="created"))],
        store.load,
    )
    assert [r.event_id for r in verdicts.audit] == ["early", "late"]
    state = next(iter(verdicts.states.values()))[1]
    assert state.account_status == "closed"


def test_deadline_fires_once_before_a_later_event() -> None:
    judge, store = Judge(TwoRules(), b"k"), Store()
    store.save(judge.judge_batch([incoming(raw("c", 0, status="closed"))], store.load))
    two_days = 2 * 24 * 60
    verdicts = judge.judge_batch([incoming(raw("later", two_days), offset=1)], store.load)
    store.save(verdicts)
    assert [v.rule_id for v in verdicts.violations] == ["T-CLOSE-2"]
    missed = verdicts.violations[0]
    assert missed.deadline == T0 + timedelta(days=1) and missed.event_id == "c"
    again = judge.judge_batch([incoming(raw("later2", two_days + 1), offset=2)], store.load)
    assert not again.violations
    assert not judge.judge_due(T0 + timedelta(days=30), store.load).violations


def test_deadline_fires_on_the_clock_without_new_events() -> None:
    judge, store = Judge(TwoRules(), b"k"), Store()
    store.save(judge.judge_batch([incoming(raw("c", 0, status="closed"))], store.load))
    assert not judge.judge_due(T0 + timedelta(hours=23), store.load).violations
    due = judge.judge_due(T0 + timedelta(hours=25), store.load)
    assert [v.rule_id for v in due.violations] == ["T-CLOSE-2"]
    store.save(due)
    assert not judge.judge_due(T0 + timedelta(hours=26), store.load).violations


def test_a_recovered_subject_is_tracked_for_deadlines() -> None:
    judge = Judge(TwoRules(), b"k")
    state = SubjectState(org="acme", subject_kind="customer", closed_at=T0, closed_event_id="c")
    history = SubjectHistory.of_state(state)
    judge.track("subject", 0, history)
    due = judge.judge_due(T0 + timedelta(days=2), {"subject": history}.get)
    assert [v.rule_id for v in due.violations] == ["T-CLOSE-2"]
    judge.forget_partitions([0])
    assert not judge.judge_due(T0 + timedelta(days=9), {"subject": history}.get).violations


def test_audit_records_keep_state_change_details() -> None:
    verdicts = Judge(TwoRules(), b"k").judge_batch(
        [incoming(raw("c", 0, status="closed"))], Store().load
    )
    record = verdicts.audit[0]
    assert record.details == {"status": "closed"} and record.actor_kind is None


def test_a_lagging_partition_holds_event_time_back() -> None:
    """During a catch-up, partition 3 read far ahead must not fire a deadline on partition 0."""
    judge, store = Judge(TwoRules(), b"k"), Store()
    closed = Incoming("privacy.events", 0, 0, b"s1", raw("c", 0, status="closed"))
    store.save(judge.judge_batch([closed], store.load, lagging={0}))
    ahead = Incoming("privacy.events", 3, 0, b"s2", raw("x", 3 * 24 * 60, subject="s2"))
    verdicts = judge.judge_batch([ahead], store.load, lagging={0})
    assert not verdicts.violations and judge.event_time({0}) == T0
    # Partition 0 has caught up: event time is the newest read anywhere, and the deadline is due.
    caught_up = judge.judge_batch([], store.load, lagging=())
    assert [v.rule_id for v in caught_up.violations] == ["T-CLOSE-2"]


def test_no_event_time_before_a_lagging_partition_is_read() -> None:
    judge = Judge(TwoRules(), b"k")
    judge.judge_batch([incoming(raw("e", 5))], Store().load)
    assert judge.event_time({1}) is None
    assert judge.event_time() == T0 + timedelta(minutes=5)


def test_subjects_missing_a_deadline_at_the_same_instant_get_distinct_violations() -> None:
    judge, store = Judge(TwoRules(), b"k"), Store()
    closures = [
        incoming(raw("c1", 0, status="closed", subject="s1"), key=b"s1"),
        incoming(raw("c2", 0, status="closed", subject="s2"), key=b"s2", offset=1),
    ]
    store.save(judge.judge_batch(closures, store.load))
    due = judge.judge_due(T0 + timedelta(days=2), store.load)
    assert len({v.violation_id for v in due.violations}) == 2


class Flaky(TwoRules):
    """Fails on the events whose id starts with "bad": a bug in a rule or in state."""

    def judge(self, event: PrivacyEvent, state: SubjectState) -> list[Finding]:
        if event.id.startswith("bad"):
            raise ValueError(f"cannot judge {event.id}")
        return super().judge(event, state)


def test_an_event_that_cannot_be_judged_is_dead_lettered_and_judging_goes_on() -> None:
    judge, store = Judge(Flaky(), b"k"), Store()
    verdicts = judge.judge_batch(
        [
            incoming(raw("e1", 1, "data.shared")),
            incoming(raw("bad1", 2, "data.shared"), offset=1),
            incoming(raw("e3", 3, "data.shared"), offset=2),
            incoming(raw("e4", 4, "data.shared", subject="s2"), key=b"s2", offset=3),
        ],
        store.load,
    )
    assert [r.event_id for r in verdicts.audit] == ["e1", "e3", "e4"]
    assert [v.event_id for v in verdicts.violations] == ["e1", "e3", "e4"]
    [letter] = verdicts.dead_letters
    assert letter.incoming.offset == 1
    assert letter.error.reason == "internal: ValueError: cannot judge bad1"
    store.save(verdicts)
    # The subject's state holds the judged events only, and later batches go on.
    later = judge.judge_batch([incoming(raw("e5", 5, "data.shared"), offset=4)], store.load)
    assert [r.event_id for r in later.audit] == ["e5"] and not later.dead_letters


def test_a_late_event_that_cannot_be_judged_leaves_the_window_as_it_was() -> None:
    judge, store = Judge(Flaky(), b"k"), Store()
    store.save(judge.judge_batch([incoming(raw("e2", 2, "data.shared"))], store.load))
    late = judge.judge_batch([incoming(raw("bad1", 1, "data.shared"), offset=1)], store.load)
    assert [d.error.reason for d in late.dead_letters] == [
        "internal: ValueError: cannot judge bad1"
    ]
    assert not late.violations and not late.audit  # nothing changed for e2
    store.save(late)
    assert [k.id for k in store.histories[next(iter(store.histories))].window] == ["e2"]
