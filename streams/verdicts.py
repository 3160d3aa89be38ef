"""What judging a batch produces: violations, audit records and dead letters, and how each is
built from an event, a finding and the subject's pseudonym.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from events.models import DataAccessed, DataShared, EventData, PrivacyEvent
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
from events.validation import InvalidEvent
from streams.rules import Finding, PolicySet
from streams.state import SubjectState, deadline_key

if TYPE_CHECKING:
    from streams.history import SubjectHistory


@dataclass(frozen=True, slots=True)
class Incoming:
    """A consumed Kafka message, before anything is known about its content."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    # The message's Kafka timestamp: when the broker appended it, on topics privtrail creates.
    appended_at: datetime | None = None


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
    """Everything one batch produces; the caller sends it and persists `histories`."""

    violations: list[Violation] = field(default_factory=list)
    audit: list[AuditRecord] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # State key -> (source partition, new history): the changelog partition follows the source.
    histories: dict[str, tuple[int, SubjectHistory]] = field(default_factory=dict)

    @property
    def states(self) -> dict[str, tuple[int, SubjectState]]:
        """Each touched subject's current state, by state key."""
        return {key: (p, history.state) for key, (p, history) in self.histories.items()}


def event_violation(
    finding: Finding, event: PrivacyEvent, pseudonym: str, version: str, at: datetime
) -> Violation:
    data = event.data
    access = data if isinstance(data, DataAccessed) else None
    recipient = data.recipient if isinstance(data, DataShared) else None
    subject_id = data.subject.id.get_secret_value()
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
        actor=f"{access.actor.kind}:{_party(access.actor.id, subject_id, pseudonym)}"
        if access
        else None,
        recipient=f"{recipient.kind}:{_party(recipient.id, subject_id, pseudonym)}"
        if recipient
        else None,
    )


def _party(party_id: str, subject_id: str, pseudonym: str) -> str:
    """An actor's or recipient's id as stored: the subject's pseudonym when it is the subject,
    whose id must never be stored (an erasure could not unlink it)."""
    return pseudonym if party_id == subject_id else party_id


def deadline_violation(
    finding: Finding, state: SubjectState, pseudonym: str, policy: PolicySet, at: datetime
) -> Violation:
    if finding.deadline is None:
        raise ValueError(f"{finding.rule.rule_id}: a deadline finding must carry its deadline")
    deadline = finding.deadline
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


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an accepted event was read from, and whose it is."""

    pseudonym: str
    partition: int
    offset: int
    appended_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    """A consumed message that parsed into a valid event, with its subject's pseudonym."""

    event: PrivacyEvent
    incoming: Incoming
    pseudonym: str

    @property
    def origin(self) -> Origin:
        incoming = self.incoming
        return Origin(self.pseudonym, incoming.partition, incoming.offset, incoming.appended_at)


def audit_record(
    event: PrivacyEvent, origin: Origin, violated: Sequence[str], version: str, at: datetime
) -> AuditRecord:
    data = event.data
    access = data if isinstance(data, DataAccessed) else None
    share = data if isinstance(data, DataShared) else None
    # State-changing events keep their own fields (status, right, settings...) as details.
    details = {} if access else _details(data)
    subject_id = data.subject.id.get_secret_value()
    # Built without validation: one record per event, every value taken from a validated event
    # and of the field's type already (tests/unit/test_verdicts.py checks that validating the
    # record changes nothing).
    return AuditRecord.of_valid(
        {
            "event_id": event.id,
            # A StrEnum's text: `.value` goes through the enum's descriptor, several times slower.
            "event_type": str(event.type),
            "source": event.source,
            "org": data.org,
            "event_time": event.time,
            "judged_at": at,
            "subject_pseudonym": origin.pseudonym,
            "subject_kind": data.subject.kind,
            "actor_kind": access.actor.kind if access else None,
            "actor_id": _party(access.actor.id, subject_id, origin.pseudonym) if access else None,
            "data_categories": list(data.categories),
            "data_use": data.use,
            "legal_basis": access.legal_basis if access else None,
            "recipient_id": _party(share.recipient.id, subject_id, origin.pseudonym)
            if share
            else None,
            "recipient_kind": share.recipient.kind if share else None,
            "recipient_country": share.recipient.country if share else None,
            "encrypted": share.transfer.encrypted if share else None,
            "safeguard": share.transfer.safeguard if share else None,
            "aggregated": share.aggregated if share else None,
            "explicit_consent": share.explicit_consent if share else None,
            "details": details,
            "policy_version": version,
            "violated_rules": list(violated),
            "partition": origin.partition,
            "offset": origin.offset,
            "appended_at": origin.appended_at,
        }
    )


_NOT_DETAILS = {"org", "subject"}


def _details(data: EventData) -> dict[str, str]:
    """A state change's own fields, each a string: JSON for those that are not strings."""
    # Most state changes hold strings only (a status, a request id): their values as they are,
    # without dumping the model.
    fields = {k: v for k, v in data.__dict__.items() if k not in _NOT_DETAILS and v is not None}
    if all(type(v) is str for v in fields.values()):
        return fields
    fields = data.model_dump(mode="json", exclude=_NOT_DETAILS, exclude_none=True)
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
