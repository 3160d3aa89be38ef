"""Arrival order never changes a verdict: any order within the lateness horizon, split over any
batch boundaries, ends with exactly the violations and audit verdicts of in-order judging.

The histories are the conformance suite (every case on subjects of its own) and generated ones;
the judge is the real one with the real policies. "The store" keeps the newest copy of each
violation and audit record, as ClickHouse's ReplacingMergeTree does.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.settings import REPO_POLICIES
from events.models import PrivacyEvent
from events.outputs import Violation
from events.tags import pseudonymise
from streams.entries import changelog_value, index_deadlines, parse_entry
from streams.history import SubjectHistory
from streams.judging import Incoming, Judge, Verdicts
from streams.rules import judge_history, load_policy_set
from tests.conformance.cases import case_files, org_of
from tests.conformance.compact import build_events
from tests.conformance.prepared import (
    in_global_time_order,
    in_process_verdict,
    prepare,
    stored_verdict,
    subject_id,
)

POLICY = load_policy_set(REPO_POLICIES)
KEY = b"arrival-order"
# Well inside the default 7-day lateness horizon.
MAX_DELAY = timedelta(days=3)


@dataclass
class Run:
    """One judge and its state table, and what a store would hold after its outputs."""

    judge: Judge = field(default_factory=lambda: Judge(POLICY, KEY))
    table: dict[str, SubjectHistory] = field(default_factory=dict)
    violations: dict[str, Violation] = field(default_factory=dict)
    audit: dict[str, list[str]] = field(default_factory=dict)

    def feed(self, batch: Sequence[Incoming]) -> None:
        self.keep(self.judge.judge_batch(batch, self.table.get))

    def finish(self, now: datetime) -> None:
        self.keep(self.judge.judge_due(now, self.table.get))

    def keep(self, verdicts: Verdicts) -> None:
        assert not verdicts.dead_letters, [d.error for d in verdicts.dead_letters]
        for key, (_, history) in verdicts.histories.items():
            self.table[key] = history
        for violation in verdicts.violations:
            self.violations[violation.violation_id] = violation
        for record in verdicts.audit:
            self.audit[record.event_id] = record.violated_rules

    def open_violations(self) -> dict[str, dict[str, Any]]:
        return {
            vid: v.model_dump(exclude={"detected_at"})
            for vid, v in self.violations.items()
            if v.status == "open"
        }


def message(event: PrivacyEvent, offset: int) -> Incoming:
    subject = subject_id(event)
    body = json.loads(event.model_dump_json())
    return Incoming("privacy.events", 0, offset, subject.encode(), json.dumps(body).encode())


def in_order(events: Sequence[PrivacyEvent], batch: int = 100) -> Run:
    ordered = sorted(events, key=lambda e: (e.time, e.id))
    return arrive(ordered, [batch] * len(ordered))


def arrive(events: Sequence[PrivacyEvent], sizes: Sequence[int]) -> Run:
    run = Run()
    messages = [message(e, offset) for offset, e in enumerate(events)]
    start = 0
    for size in sizes:
        if start >= len(messages):
            break
        run.feed(messages[start : start + size])
        start += size
    run.feed(messages[start:])
    run.finish(max(e.time for e in events))
    return run


def delayed(events: Sequence[PrivacyEvent], rng: random.Random) -> list[PrivacyEvent]:
    """The events as a producer retrying through an outage delivers them: each up to
    MAX_DELAY late, so arrivals cross subjects, batches and deadlines."""
    seconds = MAX_DELAY.total_seconds()
    return sorted(events, key=lambda e: e.time + timedelta(seconds=rng.uniform(0, seconds)))


def batch_sizes(rng: random.Random, total: int) -> list[int]:
    return [rng.choice((1, 2, 7, 30, 200)) for _ in range(total)]


def assert_same_verdicts(got: Run, expected: Run) -> None:
    mine, theirs = got.open_violations(), expected.open_violations()
    missing = sorted(theirs.keys() - mine.keys())
    extra = sorted(mine.keys() - theirs.keys())
    assert not missing and not extra, (
        f"missing {[theirs[v]['rule_id'] for v in missing]}, "
        f"extra {[mine[v]['rule_id'] for v in extra]}"
    )
    changed = [v for v in mine if mine[v] != theirs[v]]
    assert not changed, [(mine[v], theirs[v]) for v in changed[:2]]
    assert got.audit == expected.audit


@pytest.fixture(scope="module")
def conformance_history() -> list[PrivacyEvent]:
    prepared, _ = prepare(POLICY)
    return in_global_time_order(prepared)


def test_in_order_judging_agrees_with_judge_history(
    conformance_history: list[PrivacyEvent],
) -> None:
    run = in_order(conformance_history)
    end = max(e.time for e in conformance_history)
    expected = sorted(
        in_process_verdict(f) for f in judge_history(POLICY, conformance_history, end)
    )
    subjects = {_pseudonym(e): subject_id(e) for e in conformance_history}
    assert sorted(stored_verdict(v, subjects) for v in run.violations.values()) == expected


@pytest.mark.parametrize("seed", range(12))
def test_the_conformance_suite_in_any_arrival_order(
    conformance_history: list[PrivacyEvent], seed: int
) -> None:
    rng = random.Random(seed)
    arrival = delayed(conformance_history, rng)
    assert arrival != conformance_history  # the test must actually reorder
    got = arrive(arrival, batch_sizes(rng, len(arrival)))
    assert_same_verdicts(got, in_order(conformance_history))


def test_a_retracted_violation_is_sent_again_as_retracted() -> None:
    """Consent at 09:00, withdrawn at 11:00, a marketing use at 10:00 that arrives last: the
    use is compliant. Had the withdrawal's verdict been sent first, the late consent corrects it."""
    use = "marketing.communications.email"
    compact = [
        {"at": "2025-03-01T11:00:00Z", "type": "consent", "use": use, "status": "withdrawn"},
        {
            "at": "2025-03-01T10:00:00Z",
            "type": "accessed",
            "categories": ["user.contact.email"],
            "use": use,
        },
        {"at": "2025-03-01T09:00:00Z", "type": "consent", "use": use, "status": "given"},
    ]
    events = build_events(compact, "connectx", "customer", POLICY.taxonomies, "late")
    run = Run()
    sent: list[Violation] = []
    for offset, event in enumerate(events):  # one batch each: verdicts go out in between
        verdicts = run.judge.judge_batch([message(event, offset)], run.table.get)
        run.keep(verdicts)
        sent.extend(verdicts.violations)
    assert sent, "the access judged before the consent arrived must break a consent rule"
    assert {v.status for v in sent[-len(sent) // 2 :]} == {"retracted"}
    assert not run.open_violations()
    assert run.open_violations() == in_order(events).open_violations()


def test_an_event_later_than_the_horizon_is_judged_against_the_oldest_state_and_says_so() -> None:
    use = "marketing.communications.email"
    compact = [
        {"at": "2025-03-01T09:00:00Z", "type": "consent", "use": use, "status": "withdrawn"},
        *(
            {
                "at": f"2025-03-{day}T10:00:00Z",
                "type": "accessed",
                "categories": ["user.contact.email"],
                "use": "essential.service",
            }
            for day in (20, 21)  # the second one folds the first fortnight into the base
        ),
        {
            "at": "2025-03-02T10:00:00Z",
            "type": "accessed",
            "categories": ["user.contact.email"],
            "use": use,
        },
    ]
    events = build_events(compact, "connectx", "customer", POLICY.taxonomies, "old")
    run = Run(judge=Judge(POLICY, KEY, horizon=timedelta(days=7)))
    for offset, event in enumerate(events):
        run.feed([message(event, offset)])
        run.finish(event.time)  # event time moves on with each event, as on a live stream
    late = [v for v in run.violations.values() if v.event_id == events[3].id]
    assert late, "the late marketing use after a withdrawal must still be found"
    assert all("lateness horizon of 7 days" in v.explanation for v in late)


def test_a_deadline_already_reported_is_retracted_when_late_evidence_meets_it() -> None:
    compact = [
        {"at": "2025-03-01T10:00:00Z", "type": "account", "status": "closed"},
        {"at": "2025-04-15T10:00:00Z", "type": "account", "status": "active", "subject": "s2"},
        {
            "at": "2025-03-20T10:00:00Z",
            "type": "request_fulfilled",
            "request_id": "del-1",
            "right": "erasure",
        },
    ]
    events = build_events(compact, "linkxup", "customer", POLICY.taxonomies, "dl")
    horizon = timedelta(days=60)  # the erasure arrives 26 days late
    run = Run(judge=Judge(POLICY, KEY, horizon=horizon))
    run.feed([message(events[0], 0), message(events[1], 1)])
    fired = [v for v in run.violations.values() if v.rule_id == "LX-CLOSE-008"]
    assert [v.status for v in fired] == ["open"]
    run.feed([message(events[2], 2)])
    assert run.violations[fired[0].violation_id].status == "retracted"
    assert run.open_violations() == in_order(events).open_violations()


@st.composite
def histories(draw: st.DrawFn) -> list[PrivacyEvent]:
    """A few subjects' events drawn from the conformance cases' vocabulary, at random times."""
    org = draw(st.sampled_from(sorted(_VOCABULARY)))
    items = draw(st.lists(st.sampled_from(_VOCABULARY[org]), min_size=2, max_size=25))
    start = datetime(2025, 3, 1, tzinfo=UTC)
    compact = []
    for i, item in enumerate(items):
        minutes = draw(st.integers(0, 20 * 24 * 60))
        subject = draw(st.sampled_from(("a", "b", "c")))
        compact.append(
            {
                **item,
                "at": (start + timedelta(minutes=minutes)).isoformat(),
                "subject": subject,
                "id": f"h{i}",
            }
        )
    kind = POLICY.policies[org].subject_kinds[0]
    return build_events(compact, org, kind, POLICY.taxonomies, "h")


@settings(derandomize=True, max_examples=150, deadline=None)
@given(events=histories(), seed=st.integers(0, 2**32 - 1))
def test_generated_histories_in_any_arrival_order(events: list[PrivacyEvent], seed: int) -> None:
    rng = random.Random(seed)
    arrival = delayed(events, rng)
    got = arrive(arrival, batch_sizes(rng, len(arrival)))
    assert_same_verdicts(got, in_order(events))


def _compact_vocabulary() -> dict[str, list[dict[str, Any]]]:
    """Every event shape the conformance cases use, per org, without time, subject or id."""
    vocabulary: dict[str, list[dict[str, Any]]] = {}
    for rule_id, file in case_files().items():
        org = org_of(POLICY, rule_id)
        for case in file.cases:
            if case.policy is not None:
                continue
            for item in case.events:
                if "subject" in item or "org" in item or "kind" in item:
                    continue  # a shape tied to a case's own subjects
                shape = {k: v for k, v in item.items() if k not in ("at", "id")}
                if shape not in vocabulary.setdefault(org, []):
                    vocabulary[org].append(shape)
    return vocabulary


_VOCABULARY = _compact_vocabulary()


def _pseudonym(event: PrivacyEvent) -> str:
    return pseudonymise(KEY, event.data.org, subject_id(event))


def test_a_worker_recovering_its_histories_from_the_changelog_judges_on_the_same(
    conformance_history: list[PrivacyEvent],
) -> None:
    """Half the late deliveries, then every history through its changelog entry into a new
    judge (a restarted worker), then the rest: the same verdicts as in order."""
    rng = random.Random(99)
    arrival = delayed(conformance_history, rng)
    messages = [message(e, offset) for offset, e in enumerate(arrival)]
    half = len(messages) // 2
    first = Run()
    for start in range(0, half, 25):
        first.feed(messages[start : min(start + 25, half)])
    version = first.judge.policy.version
    # As the worker writes its entries, and recovers them: deadlines read off each header.
    entries = {
        key: changelog_value(0, history, version, first.judge.next_due(key))
        for key, history in first.table.items()
    }
    restarted = Run(
        table={key: parse_entry(raw).history for key, raw in entries.items()},
        violations=dict(first.violations),
        audit=dict(first.audit),
    )
    index_deadlines(restarted.judge, entries.items(), {0})
    for start in range(half, len(messages), 25):
        restarted.feed(messages[start : start + 25])
    restarted.finish(max(e.time for e in arrival))
    assert_same_verdicts(restarted, in_order(conformance_history))
