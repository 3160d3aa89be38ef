"""Judging a history in-process: the same fold the worker does, without Kafka or a store.

Used by the conformance suite and `privtrail replay`; processing a history live must give the
same violations as this.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from events.models import PrivacyEvent, Subject
from streams.rules.base import Finding, PolicySet
from streams.state import SubjectState


@dataclass(frozen=True)
class SubjectFinding:
    """A finding and whose it is. `event` broke the rule; it is None for a missed deadline."""

    org: str
    subject: Subject
    finding: Finding
    event: PrivacyEvent | None
    # Event time of the breach: the event's time, or the deadline that passed.
    occurred_at: datetime


@dataclass
class _Subject:
    subject: Subject
    state: SubjectState


def judge_history(
    policy: PolicySet, events: Iterable[PrivacyEvent], now: datetime | None = None
) -> list[SubjectFinding]:
    """Judge events per subject in event-time order, then report deadlines missed before `now`.

    Without `now`, "now" is the latest event time seen, as for a pipeline catching up. Each
    subject's deadlines are judged before each of its events, so a deadline that passed before
    an erasure is reported even if the erasure arrives later. Events with an id already seen for
    the subject count once. Findings come out in order of when they occurred.
    """
    ordered = sorted(events, key=lambda e: (e.time, e.id))
    subjects: dict[tuple[str, str], _Subject] = {}
    findings: list[SubjectFinding] = []
    for event in ordered:
        data = event.data
        key = (data.org, data.subject.id.get_secret_value())
        entry = subjects.get(key)
        if entry is None:
            state = SubjectState(org=data.org, subject_kind=data.subject.kind)
            entry = subjects[key] = _Subject(data.subject, state)
        if entry.state.seen(event.id):
            continue
        findings.extend(_missed_deadlines(policy, entry, event.time))
        findings.extend(
            SubjectFinding(data.org, data.subject, finding, event, event.time)
            for finding in policy.judge(event, entry.state)
        )
        entry.state.apply(event)
    end = now if now is not None else (ordered[-1].time if ordered else None)
    if end is not None:
        for entry in subjects.values():
            findings.extend(_missed_deadlines(policy, entry, end))
    return sorted(findings, key=lambda f: f.occurred_at)


def report_missed(policy: PolicySet, state: SubjectState, now: datetime) -> list[Finding]:
    """Deadlines missed before `now`, each marked fired in `state` so it is reported once."""
    missed = policy.due(state, now)
    for finding in missed:
        if finding.deadline is None:
            raise ValueError(f"{finding.rule.rule_id}: a deadline finding carries no deadline")
        state.mark_fired(finding.rule.rule_id, finding.deadline)
    return missed


def _missed_deadlines(policy: PolicySet, entry: _Subject, now: datetime) -> list[SubjectFinding]:
    return [
        SubjectFinding(entry.state.org, entry.subject, finding, None, finding.deadline or now)
        for finding in report_missed(policy, entry.state, now)
    ]
