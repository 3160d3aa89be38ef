"""Outputs always fit in one Kafka message: dead letters, audit batches and violations."""

from __future__ import annotations

import hashlib

from events.fitting import (
    DLQ_ORIGINAL_KEY_SHA256,
    DLQ_ORIGINAL_KEY_SIZE,
    DLQ_ORIGINAL_SHA256,
    DLQ_ORIGINAL_SIZE,
    audit_messages,
    fit_dead_letter,
    fit_record,
    message_size,
)
from events.limits import (
    DEAD_LETTER_KEPT_BYTES,
    DEAD_LETTER_KEPT_KEY_BYTES,
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_HEADER_VALUE_BYTES,
)
from events.outputs import DLQ_FIELD, DLQ_REASON, AuditBatch, Violation
from tests.unit.chdb_store import audit, violation

LIMIT = DEFAULT_MAX_MESSAGE_BYTES
HEADERS = [(DLQ_REASON, b"data.reason: longer than the limit"), (DLQ_FIELD, b"data.reason")]


def test_a_dead_letter_that_fits_keeps_its_bytes_and_headers() -> None:
    value = b'{"id": "x"}' * 1000
    fitted = fit_dead_letter(b"cust-1", value, list(HEADERS), LIMIT)
    assert (fitted.key, fitted.value, fitted.headers) == (b"cust-1", value, HEADERS)


def test_a_dead_letter_too_large_keeps_its_start_size_and_digest() -> None:
    value = b"x" * 1_000_000
    fitted = fit_dead_letter(b"cust-1", value, list(HEADERS), LIMIT)
    assert fitted.value == value[:DEAD_LETTER_KEPT_BYTES]
    headers = dict(fitted.headers)
    assert headers[DLQ_ORIGINAL_SIZE] == b"1000000"
    assert headers[DLQ_ORIGINAL_SHA256] == hashlib.sha256(value).hexdigest().encode()
    assert headers[DLQ_REASON] == dict(HEADERS)[DLQ_REASON]
    assert message_size(fitted.key, fitted.value, fitted.headers) <= LIMIT


def test_a_value_just_over_the_limit_with_its_headers_is_cut() -> None:
    headers = list(HEADERS)
    value = b"x" * (LIMIT - message_size(b"k", b"", headers) + 1)
    assert fit_dead_letter(b"k", value, headers, LIMIT).value == value[:DEAD_LETTER_KEPT_BYTES]


def test_an_oversized_key_is_cut_with_its_size_and_digest() -> None:
    key = b"k" * 100_000
    fitted = fit_dead_letter(key, b"{}", list(HEADERS), LIMIT)
    assert fitted.key == key[:DEAD_LETTER_KEPT_KEY_BYTES] and fitted.value == b"{}"
    headers = dict(fitted.headers)
    assert headers[DLQ_ORIGINAL_KEY_SIZE] == b"100000"
    assert headers[DLQ_ORIGINAL_KEY_SHA256] == hashlib.sha256(key).hexdigest().encode()


def test_long_header_values_are_cut_on_a_character_boundary() -> None:
    reason = ("é" * 100_000).encode()
    fitted = fit_dead_letter(None, b"{}", [(DLQ_REASON, reason), (DLQ_FIELD, b"x" * 5000)], LIMIT)
    for _, value in fitted.headers:
        assert len(value) <= MAX_HEADER_VALUE_BYTES
        assert value.decode().endswith(" [truncated]")


def test_audit_batches_are_split_by_encoded_size() -> None:
    records = [audit(f"e{i}", source="/" + "s" * 200_000) for i in range(10)]
    messages = list(audit_messages(records, LIMIT, max_records=500))
    assert len(messages) > 1
    assert all(message_size(None, m) <= LIMIT for m in messages)
    decoded = [r for m in messages for r in AuditBatch.model_validate_json(m).records]
    assert decoded == records


def test_audit_batches_also_keep_the_record_count_bound() -> None:
    records = [audit(f"e{i}") for i in range(7)]
    messages = list(audit_messages(records, LIMIT, max_records=3))
    assert [len(AuditBatch.model_validate_json(m).records) for m in messages] == [3, 3, 1]
    assert messages[0] == AuditBatch(records=records[:3]).model_dump_json().encode()


def test_a_record_too_large_alone_has_its_long_strings_cut_and_ids_kept() -> None:
    huge = violation("v1", explanation="because " * 200_000, actor="service:" + "a" * 300_000)
    encoded = fit_record(huge, LIMIT)
    assert len(encoded) <= LIMIT
    fitted = Violation.model_validate_json(encoded)
    assert fitted.explanation.startswith("because because") and fitted.explanation.endswith(
        " [truncated]"
    )
    assert fitted.model_dump(exclude={"explanation", "actor"}) == huge.model_dump(
        exclude={"explanation", "actor"}
    )


def test_an_audit_record_too_large_alone_still_makes_a_message() -> None:
    record = audit("e1", details={"reason": "r" * 2_000_000})
    (message,) = audit_messages([record], LIMIT, max_records=500)
    assert message_size(None, message) <= LIMIT
    (fitted,) = AuditBatch.model_validate_json(message).records
    assert fitted.event_id == "e1" and fitted.details["reason"].endswith(" [truncated]")
