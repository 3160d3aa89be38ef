"""Outputs that always fit in one Kafka message, whatever the input was (docs/limits.md).

A message the broker refuses would stop the worker: the batch would be judged and refused again
after every restart. So a dead letter too large to fit keeps its size, its SHA-256 and its first
64 KiB (event-contract.md, Rejected input), audit batches are split by encoded size, and an
audit record or violation still too large has its long strings cut, marked as cut.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from events.limits import (
    DEAD_LETTER_KEPT_BYTES,
    DEAD_LETTER_KEPT_KEY_BYTES,
    MAX_HEADER_VALUE_BYTES,
    MAX_ID_CHARS,
    MAX_TEXT_CHARS,
)
from events.outputs import AuditRecord

# Headers of a dead letter that keeps only the start of its value or key.
DLQ_ORIGINAL_SIZE = "privtrail.original.size"
DLQ_ORIGINAL_SHA256 = "privtrail.original.sha256"
DLQ_ORIGINAL_KEY_SIZE = "privtrail.original.key.size"
DLQ_ORIGINAL_KEY_SHA256 = "privtrail.original.key.sha256"

# Kafka's framing around one record: the v2 record batch header (61 bytes) and the record's own
# attributes, timestamp and offset deltas and length varints (at most 21 bytes), plus two length
# varints per header.
_RECORD_OVERHEAD_BYTES = 61 + 21
_HEADER_OVERHEAD_BYTES = 10
_CUT_MARKER = " [truncated]"
_AUDIT_BATCH_START = b'{"records":['
_AUDIT_BATCH_END = b"]}"

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Message:
    key: bytes | None
    value: bytes
    headers: Headers


def message_size(key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]] = ()) -> int:
    """Bytes one record takes in a produce request, framing included."""
    header_bytes = sum(len(name.encode()) + len(v) + _HEADER_OVERHEAD_BYTES for name, v in headers)
    return _RECORD_OVERHEAD_BYTES + len(key or b"") + len(value) + header_bytes


def fit_dead_letter(key: bytes | None, value: bytes, headers: Headers, limit: int) -> Message:
    """The dead letter to produce: the original bytes if they fit in `limit`, else their start,
    with the original's size and SHA-256 in headers."""
    headers = [(name, _cut_utf8(v, MAX_HEADER_VALUE_BYTES)) for name, v in headers]
    if key is not None and len(key) > DEAD_LETTER_KEPT_KEY_BYTES:
        headers += _digest_headers(DLQ_ORIGINAL_KEY_SIZE, DLQ_ORIGINAL_KEY_SHA256, key)
        key = key[:DEAD_LETTER_KEPT_KEY_BYTES]
    if message_size(key, value, headers) > limit:
        headers += _digest_headers(DLQ_ORIGINAL_SIZE, DLQ_ORIGINAL_SHA256, value)
        value = value[:DEAD_LETTER_KEPT_BYTES]
    return Message(key, value, headers)


def fit_record(record: BaseModel, limit: int) -> bytes:
    """The JSON of `record`, with its longest strings cut until it fits in `limit` bytes.

    Strings of up to MAX_ID_CHARS are never cut: ids, keys and times stay exact, and the input
    limits keep a record of only such strings far below any allowed `limit`.
    """
    encoded = record.model_dump_json().encode()
    cap = MAX_TEXT_CHARS
    while len(encoded) > limit and cap >= MAX_ID_CHARS:
        fields = _cut_strings(record.model_dump(mode="json"), cap)
        encoded = type(record).model_validate(fields).model_dump_json().encode()
        cap //= 2
    return encoded


def audit_messages(records: Sequence[AuditRecord], limit: int, max_records: int) -> Iterator[bytes]:
    """AuditBatch values of at most `max_records` records and `limit` bytes (framing included)."""
    budget = limit - message_size(None, _AUDIT_BATCH_START + _AUDIT_BATCH_END)
    chunk: list[bytes] = []
    size = 0
    for record in records:
        encoded = fit_record(record, budget)
        # One comma per record after the first.
        if chunk and (len(chunk) == max_records or size + 1 + len(encoded) > budget):
            yield _audit_batch(chunk)
            chunk, size = [], 0
        size += len(encoded) + (1 if chunk else 0)
        chunk.append(encoded)
    if chunk:
        yield _audit_batch(chunk)


def _audit_batch(encoded_records: list[bytes]) -> bytes:
    # The same JSON as AuditBatch(records=...).model_dump_json(), without encoding twice.
    return _AUDIT_BATCH_START + b",".join(encoded_records) + _AUDIT_BATCH_END


def _digest_headers(size_name: str, digest_name: str, original: bytes) -> Headers:
    return [
        (size_name, str(len(original)).encode()),
        (digest_name, hashlib.sha256(original).hexdigest().encode()),
    ]


def _cut_utf8(value: bytes, limit: int) -> bytes:
    if len(value) <= limit:
        return value
    marker = _CUT_MARKER.encode()
    # Cut on a character boundary: a header value is read as UTF-8 text.
    kept = value[: limit - len(marker)].decode("utf-8", errors="ignore").encode()
    return kept + marker


def _cut_strings(value: Any, cap: int) -> Any:
    if isinstance(value, str) and len(value) > cap:
        return value[:cap] + _CUT_MARKER
    if isinstance(value, dict):
        return {k: _cut_strings(v, cap) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut_strings(v, cap) for v in value]
    return value
