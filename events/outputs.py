"""What the pipeline produces: violations (public topic), audit records and dead letters."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict

Severity = Literal["low", "medium", "high", "critical"]
# A violation is "open" until late evidence shows it did not happen (event-contract.md, Time):
# the retraction is the same violation id, re-sent with status "retracted" and a newer
# `detected_at`, so the store keeps the newest and the alert sinks see the correction.
ViolationStatus = Literal["open", "retracted"]

# Dead letters follow the Kafka Connect convention: the value and key are the original bytes,
# untouched, and why they were rejected travels in headers.
DLQ_REASON = "privtrail.error.reason"
DLQ_FIELD = "privtrail.error.field"
DLQ_TOPIC = "privtrail.error.topic"
DLQ_PARTITION = "privtrail.error.partition"
DLQ_OFFSET = "privtrail.error.offset"
DLQ_TIME = "privtrail.error.time"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)

    @classmethod
    def of_valid(cls, values: dict[str, Any]) -> Self:
        """A record of values already of their fields' types, one for every field: what
        `model_construct` gives, without its per-field look-ups of aliases and defaults (10 us
        for an audit record, one per judged event)."""
        if len(values) != len(cls.__pydantic_fields__):
            raise ValueError(f"{cls.__name__} needs every one of its fields, got {sorted(values)}")
        record = cls.__new__(cls)
        # As model_construct sets them (pydantic's own `_object_setattr`): a frozen model.
        object.__setattr__(record, "__dict__", values)
        object.__setattr__(record, "__pydantic_fields_set__", set(values))
        object.__setattr__(record, "__pydantic_extra__", None)
        object.__setattr__(record, "__pydantic_private__", None)
        return record


class Violation(_Record):
    """One broken rule, as produced to `privacy.violations` (key: subject pseudonym)."""

    violation_id: str
    rule_id: str
    org: str
    severity: Severity
    policy_version: str
    policy_section: str
    policy_text: str
    explanation: str
    subject_pseudonym: str
    subject_kind: str
    # The event that broke the rule; for a missed deadline, the event that started its clock.
    event_id: str
    event_type: str
    # When the rule was broken, in event time (for a missed deadline: the deadline itself).
    occurred_at: datetime
    detected_at: datetime
    deadline: datetime | None = None
    data_categories: list[str] = []
    data_use: str | None = None
    actor: str | None = None
    recipient: str | None = None
    status: ViolationStatus = "open"

    @staticmethod
    def make_id(rule_id: str, cause: str) -> str:
        """Deterministic, so a replayed or duplicated event yields the same violation id."""
        return hashlib.sha256(f"{rule_id}\x1f{cause}".encode()).hexdigest()[:32]


class AuditRecord(_Record):
    """An accepted event as judged: who touched whose data, which categories, why, sent where.

    Personal identifiers never appear here: the subject is a keyed pseudonym.
    """

    event_id: str
    event_type: str
    source: str
    org: str
    event_time: datetime
    judged_at: datetime
    subject_pseudonym: str
    subject_kind: str
    actor_kind: str | None = None
    actor_id: str | None = None
    data_categories: list[str] = []
    data_use: str | None = None
    legal_basis: str | None = None
    recipient_id: str | None = None
    recipient_kind: str | None = None
    recipient_country: str | None = None
    encrypted: bool | None = None
    safeguard: str | None = None
    aggregated: bool | None = None
    explicit_consent: bool | None = None
    # The remaining `data` fields of state-changing events (status, right, settings, ...).
    details: dict[str, str] = {}
    policy_version: str
    violated_rules: list[str] = []
    partition: int
    offset: int
    # When the broker appended the source event: its Kafka timestamp, which is the broker's
    # clock on topics privtrail creates (LogAppendTime). None on copies re-sent from a
    # subject's window.
    appended_at: datetime | None = None


class AuditBatch(_Record):
    """Audit records of one judged batch, sent as one message to keep the hot path per batch."""

    records: list[AuditRecord]
