"""Whatever was rejected is stored and shown: huge, truncated, deeply nested, not UTF-8."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from config.settings import Settings
from events.fitting import fit_dead_letter
from events.limits import DEAD_LETTER_KEPT_BYTES, DEFAULT_MAX_MESSAGE_BYTES
from events.outputs import DLQ_FIELD, DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_TOPIC
from privtrail.api import create_app
from privtrail.client import ApiClient
from sinks import Rejected
from sinks.clickhouse.store import Store
from sinks.messages import rejected_from_dead_letter
from tests.unit.chdb_store import T0, store_dsn
from tests.unit.tokens import bearer

DEEP = b'{"id": "deep-1", "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
# An id of about 1 MB: the dead letter keeps only its first 64 KiB.
HUGE = json.dumps({"specversion": "1.0", "type": "privacy.data.accessed", "id": "i" * 1_000_000})


@dataclass(frozen=True)
class DeadLetterRecord:
    """A consumed dead letter, as kafka-python hands it to the ingest loop."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    topic: str = "privacy.deadletter"
    partition: int = 0
    offset: int = 0
    timestamp: int | None = None


def stored_dead_letter(value: bytes, offset: int, reason: bytes) -> Rejected:
    headers = [
        (DLQ_REASON, reason),
        (DLQ_FIELD, b"id"),
        (DLQ_TOPIC, b"privacy.events"),
        (DLQ_PARTITION, b"0"),
        (DLQ_OFFSET, str(offset).encode()),
    ]
    fitted = fit_dead_letter(b"subject-1", value, headers, DEFAULT_MAX_MESSAGE_BYTES)
    return rejected_from_dead_letter(DeadLetterRecord(fitted.key, fitted.value, fitted.headers))


def row(offset: int, raw: bytes) -> Rejected:
    return Rejected(
        rejection_id=f"privacy.events-0-{offset}",
        received_at=T0 + timedelta(seconds=offset),
        source_topic="privacy.events",
        source_partition=0,
        source_offset=offset,
        field="",
        reason="not valid JSON",
        raw=raw,
        key=None,
    )


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    opened = Store.open(store_dsn())
    opened.write_rejected(
        [
            stored_dead_letter(HUGE.encode(), 1, b"id: longer than the limit of 256 characters"),
            row(2, DEEP),
            row(3, b"[" * 900_000),
            row(4, b'{"id": "\xff\xfe", "type": 1}'),
            row(5, b'{"id": "\\ud800"}'),
            row(6, b""),
        ]
    )
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def http(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(), store), headers=bearer(store)) as client:
        yield client


def test_a_dead_letter_too_large_is_stored_with_its_size_and_digest(store: Store) -> None:
    (stored,) = [r for r in store.rejected(limit=100) if r.source_offset == 1]
    digest = hashlib.sha256(HUGE.encode()).hexdigest()
    assert stored.raw == HUGE.encode()[:DEAD_LETTER_KEPT_BYTES]
    assert stored.reason == (
        "id: longer than the limit of 256 characters"
        f" (stored truncated: input was {len(HUGE)} bytes, SHA-256 {digest})"
    )


def test_rejected_answers_whatever_the_stored_bytes_are(http: TestClient) -> None:
    answer = http.get("/rejected", params={"limit": 1000})
    assert answer.status_code == 200
    shown = {r["source_offset"]: r for r in answer.json()}
    assert sorted(shown) == [1, 2, 3, 4, 5, 6]
    # The start of a truncated input still names its attributes, cut for display.
    assert shown[1]["event_type"] == "privacy.data.accessed"
    assert shown[1]["event_id"] == "i" * 200
    assert all(shown[offset]["event_id"] is None for offset in (2, 3, 4, 5, 6))


def test_a_forged_cursor_of_deep_json_is_a_422(http: TestClient) -> None:
    cursor = base64.urlsafe_b64encode(b"[" * 20_000).decode()
    answer = http.get("/history", params={"cursor": cursor})
    assert answer.status_code == 422
    assert "is not a cursor returned by /history" in answer.text


def test_the_client_reads_every_rejected_row(http: TestClient) -> None:
    rows = ApiClient(str(http.base_url), http=http).rejected(limit=1000)
    assert len(rows) == 6 and all(r.reason for r in rows)
