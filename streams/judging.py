"""Judging a batch of raw events: parse, fold per subject in event-time order, emit verdicts.

Pure of Faust and Kafka so it can be tested in-process and reused for replay; the agent in
`streams/agents.py` feeds it consumed messages and sends what it returns.
"""

from __future__ import annotations

import heapq
import json
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from events.models import DataAccessed, DataShared, PrivacyEvent
from events.outputs import (
    DLQ_FIELD,
    DLQ_OFFSET,
    DLQ_PARTITION,
    DLQ_REASON,
    DLQ_TIME,
    DLQ_TOPIC,
    AuditRecord,
    Violation,
)
from events.tags import pseudonymise
from events.validation import InvalidEvent, parse_event
from streams.rules import Finding, PolicySet
from streams.rules.replay import report_missed
from streams.state import SubjectState, deadline_key

StateLoader = Callable[[str], SubjectState | None]


@dataclass(frozen=True)
class Incoming:
    """A consumed Kafka message, before anything is known about its content."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class DeadLetter:
    incoming: Incoming
    error: InvalidEvent

    def headers(self, at: datetime) -> list[tuple[str, bytes]]:
        return [
            (DLQ_REASON, self.error.reason.encode()),
            (DLQ_FIELD, self.error.field.encode()),
            (DLQ_TOPIC, self.incoming.topic.encode()),
            (DLQ_PARTITION, str(self.incoming.partition).encode()),
            (DLQ_OFFSET, str(self.incoming.offset).encode()),
            (DLQ_TIME, at.isoformat().encode()),
        ]


@dataclass
class Verdicts:
    """Everything one batch produces; the caller sends it and persists `states`."""

    violations: list[Violation] = field(default_factory=list)
    audit: list[AuditRecord] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # State key -> (source partition, new state): the changelog partition follows the source.
    states: dict[str, tuple[int, SubjectState]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Accepted:
    event: PrivacyEvent
    incoming: Incoming
    pseudonym: str


class Judge:
    """Judges events against a policy set, tracking event time and pending deadlines.

    Event time ("now" for deadlines) advances per source partition: it is the lowest of the
    newest event times read from partitions that still have a backlog, or, when all are caught
    up, the newest event time read at all. So a partition read ahead of another during a
    catch-up cannot make a deadline fire before the lagging partition's events are judged.
    """

    def __init__(self, policy: PolicySet, pseudonym_key: bytes) -> None:
        self.policy = policy
        self._pseudonym_key = pseudonym_key
        # Source partition -> newest event time read from it.
        self._partition_times: dict[int, datetime] = {}
        # State key -> (next deadline, partition), for the subjects this worker owns; the heap
        # orders them, and entries that no longer match the dict are skipped as stale.
        self._deadlines: dict[str, tuple[datetime, int]] = {}
        self._heap: list[tuple[datetime, str]] = []

    @property
    def watermark(self) -> datetime | None:
        """The newest event time read from any owned partition."""
        return max(self._partition_times.values(), default=None)

    def event_time(self, lagging: Collection[int] = ()) -> datetime | None:
        """Event-time "now", given the partitions that still have unread events."""
        if any(p not in self._partition_times for p in lagging):
            return None  # nothing read yet from a partition with a backlog
        behind = [self._partition_times[p] for p in lagging]
        return min(behind) if behind else self.watermark

    def judge_batch(
        self, batch: Sequence[Incoming], load: StateLoader, lagging: Collection[int] = ()
    ) -> Verdicts:
        """Judge a batch, then report the deadlines that event time has passed."""
        verdicts = Verdicts()
        by_subject: dict[str, list[_Accepted]] = defaultdict(list)
        for incoming in batch:
            accepted = self._accept(incoming, verdicts)
            if accepted is not None:
                by_subject[accepted.pseudonym].append(accepted)
        judged_at = datetime.now(UTC)
        for key, items in by_subject.items():
            items.sort(key=lambda a: a.event.time)  # stable: ties keep arrival order
            state = load(key)
            tracked = self._deadlines.get(key)
            next_due = self._judge_subject(
                items,
                state or _new_state(items[0].event),
                tracked[0] if tracked else None,
                verdicts,
                judged_at,
            )
            self._index(key, items[-1].incoming.partition, next_due)
        now = self.event_time(lagging)
        if now is not None:
            self._judge_due(now, load, verdicts)
        return verdicts

    def judge_due(self, now: datetime, load: StateLoader) -> Verdicts:
        """Report owned deadlines that passed before `now` unmet."""
        return self._judge_due(now, load, Verdicts())

    def _judge_due(self, now: datetime, load: StateLoader, verdicts: Verdicts) -> Verdicts:
        due: list[tuple[str, int]] = []
        while self._heap and self._heap[0][0] < now:
            deadline, key = heapq.heappop(self._heap)
            entry = self._deadlines.get(key)
            if entry is None or entry[0] != deadline:
                continue  # stale: the subject's deadline moved or its partition left
            del self._deadlines[key]
            due.append((key, entry[1]))
        judged_at = datetime.now(UTC)
        for key, partition in due:
            # A subject judged in this very batch has newer state than the table.
            state = verdicts.states[key][1] if key in verdicts.states else load(key)
            if state is not None:
                self._report_due(state, key, now, verdicts, judged_at)
                verdicts.states[key] = (partition, state)
                self._index(key, partition, self.policy.next_deadline(state))
        return verdicts

    def track(self, key: str, partition: int, state: SubjectState) -> None:
        """Index a subject's next deadline (also after a rebalance or restart)."""
        self._index(key, partition, self.policy.next_deadline(state))

    def _index(self, key: str, partition: int, deadline: datetime | None) -> None:
        if deadline is None:
            self._deadlines.pop(key, None)
        elif self._deadlines.get(key) != (deadline, partition):
            self._deadlines[key] = (deadline, partition)
            heapq.heappush(self._heap, (deadline, key))

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        self._deadlines = {k: v for k, v in self._deadlines.items() if v[1] not in gone}
        for partition in gone:
            self._partition_times.pop(partition, None)

    def _accept(self, incoming: Incoming, verdicts: Verdicts) -> _Accepted | None:
        try:
            event = parse_event(incoming.value, self.policy.taxonomies)
            _check_key(incoming.key, event)
        except InvalidEvent as error:
            verdicts.dead_letters.append(DeadLetter(incoming, error))
            return None
        newest = self._partition_times.get(incoming.partition)
        if newest is None or event.time > newest:
            self._partition_times[incoming.partition] = event.time
        subject_id = event.data.subject.id.get_secret_value()
        pseudonym = pseudonymise(self._pseudonym_key, event.data.org, subject_id)
        return _Accepted(event, incoming, pseudonym)

    def _judge_subject(
        self,
        items: list[_Accepted],
        state: SubjectState,
        next_due: datetime | None,
        verdicts: Verdicts,
        judged_at: datetime,
    ) -> datetime | None:
        """Fold one subject's events, in event-time order, through the rules and its state;
        return its next deadline."""
        verdicts.states[items[0].pseudonym] = (items[-1].incoming.partition, state)
        for item in items:
            event = item.event
            if state.seen(event.id):
                continue  # the idempotency key: the same id twice is one event
            # Deadlines that fell due before this event are judged first, in event-time order.
            reported = next_due is not None and next_due < event.time
            if reported:
                self._report_due(state, item.pseudonym, event.time, verdicts, judged_at)
            findings = self.policy.judge(event, state)
            verdicts.violations.extend(
                _violation(f, event, item.pseudonym, self.policy.version, judged_at)
                for f in findings
            )
            verdicts.audit.append(_audit_record(item, findings, self.policy.version, judged_at))
            state.apply(event)
            # Only state-changing events move deadlines; accesses and shares are the bulk.
            if reported or not isinstance(event.data, DataAccessed):
                next_due = self.policy.next_deadline(state)
        return next_due

    def _report_due(
        self, state: SubjectState, key: str, now: datetime, verdicts: Verdicts, at: datetime
    ) -> None:
        for finding in report_missed(self.policy, state, now):
            verdicts.violations.append(_deadline_violation(finding, state, key, self.policy, at))


def _check_key(key: bytes | None, event: PrivacyEvent) -> None:
    # Per-subject ordering and state placement rely on it: every event of a subject must land
    # on the same partition, which only the subject id as message key guarantees.
    if key != event.data.subject.id.get_secret_value().encode():
        raise InvalidEvent("key", "the Kafka message key must be the subject id (data.subject.id)")


def _deadline_of(finding: Finding) -> datetime:
    if finding.deadline is None:
        raise ValueError(f"{finding.rule.rule_id}: a deadline finding must carry its deadline")
    return finding.deadline


def _new_state(event: PrivacyEvent) -> SubjectState:
    return SubjectState(org=event.data.org, subject_kind=event.data.subject.kind)


def _violation(
    finding: Finding, event: PrivacyEvent, pseudonym: str, version: str, at: datetime
) -> Violation:
    data = event.data
    access = data if isinstance(data, DataAccessed) else None
    recipient = data.recipient if isinstance(data, DataShared) else None
    return Violation(
        violation_id=Violation.make_id(finding.rule.rule_id, event.id),
        rule_id=finding.rule.rule_id,
        org=data.org,
        severity=finding.rule.severity,
        policy_version=version,
        policy_section=finding.rule.section,
        policy_text=finding.rule.text,
        explanation=finding.explanation,
        subject_pseudonym=pseudonym,
        subject_kind=data.subject.kind,
        event_id=event.id,
        event_type=event.type,
        occurred_at=event.time,
        detected_at=at,
        data_categories=list(data.categories),
        data_use=data.use,
        actor=f"{access.actor.kind}:{access.actor.id}" if access else None,
        recipient=f"{recipient.kind}:{recipient.id}" if recipient else None,
    )


def _deadline_violation(
    finding: Finding, state: SubjectState, pseudonym: str, policy: PolicySet, at: datetime
) -> Violation:
    deadline = _deadline_of(finding)
    return Violation(
        # Other subjects can miss the same rule's deadline at the same instant.
        violation_id=Violation.make_id(
            finding.rule.rule_id, f"{pseudonym}\x1f{deadline_key(finding.rule.rule_id, deadline)}"
        ),
        rule_id=finding.rule.rule_id,
        org=state.org,
        severity=finding.rule.severity,
        policy_version=policy.version,
        policy_section=finding.rule.section,
        policy_text=finding.rule.text,
        explanation=finding.explanation,
        subject_pseudonym=pseudonym,
        subject_kind=state.subject_kind,
        event_id=finding.cause_event_id or "",
        event_type="deadline",
        occurred_at=deadline,
        detected_at=at,
        deadline=deadline,
    )


def _audit_record(
    item: _Accepted, findings: list[Finding], version: str, at: datetime
) -> AuditRecord:
    event, data = item.event, item.event.data
    access = data if isinstance(data, DataAccessed) else None
    share = data if isinstance(data, DataShared) else None
    # State-changing events keep their own fields (status, right, settings...) as details.
    details = (
        {}
        if access
        else data.model_dump(mode="json", exclude={"org", "subject"}, exclude_none=True)
    )
    return AuditRecord(
        event_id=event.id,
        event_type=event.type,
        source=event.source,
        org=data.org,
        event_time=event.time,
        judged_at=at,
        subject_pseudonym=item.pseudonym,
        subject_kind=data.subject.kind,
        actor_kind=access.actor.kind if access else None,
        actor_id=access.actor.id if access else None,
        data_categories=data.categories,
        data_use=data.use,
        legal_basis=access.legal_basis if access else None,
        recipient_id=share.recipient.id if share else None,
        recipient_kind=share.recipient.kind if share else None,
        recipient_country=share.recipient.country if share else None,
        encrypted=share.transfer.encrypted if share else None,
        safeguard=share.transfer.safeguard if share else None,
        aggregated=share.aggregated if share else None,
        explicit_consent=share.explicit_consent if share else None,
        details={k: v if isinstance(v, str) else json.dumps(v) for k, v in details.items()},
        policy_version=version,
        violated_rules=[f.rule.rule_id for f in findings],
        partition=item.incoming.partition,
        offset=item.incoming.offset,
    )
