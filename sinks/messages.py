"""Consumed Kafka messages as the rows the store keeps: AuditBatch records as columns, one
violation or one rejected input per other message.

Nothing is dropped: a message the store cannot decode becomes a rejected input holding its
exact bytes and the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol, TypeAlias, TypeVar

import pyarrow as pa
from pydantic import BaseModel, ValidationError

from config.settings import Topics
from events.fitting import (
    DLQ_ORIGINAL_KEY_SHA256,
    DLQ_ORIGINAL_KEY_SIZE,
    DLQ_ORIGINAL_SHA256,
    DLQ_ORIGINAL_SIZE,
)
from events.outputs import (
    DLQ_FIELD,
    DLQ_OFFSET,
    DLQ_PARTITION,
    DLQ_REASON,
    DLQ_TIME,
    DLQ_TOPIC,
    AuditBatch,
    AuditRecord,
    Violation,
)
from sinks import Rejected
from sinks.clickhouse.audit_columns import audit_columns_of, records_columns

M = TypeVar("M", bound=BaseModel)

StoredRow = AuditRecord | Violation | Rejected
# One consumed message's rows: an AuditBatch's records as columns, or rows as models.
MessageRows: TypeAlias = "pa.Table | list[Violation | Rejected]"


class Message(Protocol):
    """The parts of a consumed Kafka record the ingest loop reads (kafka-python ConsumerRecord)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int | None: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...


def message_rows(topics: Topics, messages: Sequence[Message]) -> list[MessageRows]:
    """What the store keeps of each consumed message: an AuditBatch's records as columns when
    it is in the worker's form (sinks/clickhouse/audit_columns.py), else rows as models.

    The AuditBatch messages of a poll are read together, in one call."""
    values = [m.value for m in messages if m.topic == topics.audit and m.value is not None]
    fast = iter(audit_columns_of(values))
    return [
        _audit_rows(message, next(fast) if message.value is not None else None)
        if message.topic == topics.audit
        else [_single_row(topics, message)]
        for message in messages
    ]


def stored_rows(topics: Topics, message: Message) -> list[StoredRow]:
    """The rows the store keeps of one consumed message, in the message's order."""
    if message.topic == topics.audit:
        batch = _decode(AuditBatch, message)
        return list(batch.records) if isinstance(batch, AuditBatch) else [batch]
    return [_single_row(topics, message)]


def _single_row(topics: Topics, message: Message) -> Violation | Rejected:
    """The one row of a message from a topic other than the audit batches'."""
    if message.topic == topics.deadletter:
        return rejected_from_dead_letter(message)
    if message.topic == topics.violations:
        return _decode(Violation, message)
    reason = f"message from topic {message.topic!r}, which the store does not consume"
    return rejected_message(message, reason, None)


def rejected_from_dead_letter(message: Message) -> Rejected:
    """A dead letter as stored: original bytes, and the reason and origin from its headers."""
    headers = {
        name: (value or b"").decode("utf-8", errors="replace") for name, value in message.headers
    }
    origin = _origin(headers) or (message.topic, message.partition, message.offset)
    return Rejected(
        rejection_id=Rejected.make_id(*origin),
        received_at=_parse_time(headers.get(DLQ_TIME)) or _message_time(message),
        source_topic=origin[0],
        source_partition=origin[1],
        source_offset=origin[2],
        # Kept as sent: an empty field header means the input as a whole (e.g. not JSON).
        field=headers.get(DLQ_FIELD),
        reason=_reason(headers) + _truncation_note(headers),
        raw=message.value or b"",
        key=message.key,
    )


def _reason(headers: Mapping[str, str]) -> str:
    return headers.get(DLQ_REASON) or f"dead letter without a {DLQ_REASON} header"


def _truncation_note(headers: Mapping[str, str]) -> str:
    """What a dead letter too large to fit kept of its input (events/fitting.py): told in the
    reason, so the stored row says which bytes it lacks and how to recognise the original."""
    notes = [
        f"{part} was {headers[size]} bytes, SHA-256 {headers.get(digest, 'unknown')}"
        for part, size, digest in (
            ("input", DLQ_ORIGINAL_SIZE, DLQ_ORIGINAL_SHA256),
            ("key", DLQ_ORIGINAL_KEY_SIZE, DLQ_ORIGINAL_KEY_SHA256),
        )
        if size in headers
    ]
    return f" (stored truncated: {'; '.join(notes)})" if notes else ""


def rejected_message(message: Message, reason: str, field: str | None) -> Rejected:
    """A message the store itself cannot decode, kept with its exact bytes."""
    return Rejected(
        rejection_id=Rejected.make_id(message.topic, message.partition, message.offset),
        received_at=_message_time(message),
        source_topic=message.topic,
        source_partition=message.partition,
        source_offset=message.offset,
        field=field,
        reason=reason,
        raw=message.value or b"",
        key=message.key,
    )


def _audit_rows(message: Message, fast: pa.Table | None) -> MessageRows:
    """An AuditBatch's records as columns: `fast`, read straight from the worker's JSON when it
    is in the worker's form, else validated record by record (and rejected with the reason)."""
    if fast is not None:
        return fast
    batch = _decode(AuditBatch, message)
    return records_columns(batch.records) if isinstance(batch, AuditBatch) else [batch]


def _decode(model: type[M], message: Message) -> M | Rejected:
    if message.value is None:
        reason = f"empty message where a {model.__name__} was expected"
        return rejected_message(message, reason, None)
    try:
        return model.model_validate_json(message.value)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or None
        more = f" (and {error.error_count() - 1} more errors)" if error.error_count() > 1 else ""
        reason = f"not a valid {model.__name__}: {first['msg']}{more}"
        return rejected_message(message, reason, where)


def _origin(headers: Mapping[str, str]) -> tuple[str, int, int] | None:
    # All three or none: mixing the dead letter's own coordinates with a source topic could
    # give two different rejections the same id.
    topic = headers.get(DLQ_TOPIC)
    partition = headers.get(DLQ_PARTITION, "")
    offset = headers.get(DLQ_OFFSET, "")
    if not topic or not partition.isdigit() or not offset.isdigit():
        return None
    return topic, int(partition), int(offset)


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _message_time(message: Message) -> datetime:
    if message.timestamp is not None and message.timestamp > 0:
        return datetime.fromtimestamp(message.timestamp / 1000, UTC)
    return datetime.now(UTC)
