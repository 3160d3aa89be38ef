"""No input stops the stream, end to end: the nastiest inputs among valid events, through the real
broker, worker and store (docs/limits.md).

Every valid event must be stored, every bad input must be in `/rejected` with a reason naming
its field, and the worker must still be the process that started, with no refused produce.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaProducer

from privtrail.api import RejectedInput
from tests.e2e.conftest import Pipeline

pytestmark = pytest.mark.e2e
VALID_EVENTS = 200
# Under the broker's 1 MB `message.max.bytes`, over what a dead letter may carry with headers.
NEAR_ONE_MB = 1_000_000
NOW = datetime.now(UTC)


def access(subject: str, **envelope: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/connectx/poison-test",
        "type": "privacy.data.accessed",
        "time": (NOW - timedelta(minutes=5)).isoformat(),
        "data": {
            "org": "connectx",
            "subject": {"id": subject, "kind": "customer"},
            "actor": {"kind": "service", "id": "inbox"},
            "data_categories": ["user.contact.email"],
            "data_use": "essential.service",
        },
    }
    event.update(envelope)
    return event


def share(subject: str, country: str) -> dict[str, Any]:
    event = access(subject, type="privacy.data.shared")
    event["data"] |= {
        "recipient": {"id": "mailer", "kind": "service_provider", "country": country},
        "transfer": {"encrypted": True},
    }
    return event


def with_data(event: dict[str, Any], **data: Any) -> dict[str, Any]:
    event["data"] |= data
    return event


def legal_hold(subject: str, reason: str) -> dict[str, Any]:
    event = access(subject, type="privacy.legal_hold.changed")
    event["data"] = {
        "org": "connectx",
        "subject": {"id": subject, "kind": "customer"},
        "status": "placed",
        "reason": reason,
    }
    return event


def encoded(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False).encode()


def keyed(event: dict[str, Any]) -> tuple[bytes, bytes]:
    return event["data"]["subject"]["id"].encode(), encoded(event)


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def poison() -> list[tuple[tuple[bytes | None, bytes], str, str]]:
    """(key, value), and the field and start of the reason each must be rejected with."""
    huge_reason = legal_hold("p-1", "r" * NEAR_ONE_MB)
    deep = b'{"specversion": "1.0", "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    duplicate_type = encoded(access("p-2"))[:-1] + b', "type": "privacy.data.shared"}'
    settings = access("p-3", type="privacy.settings.changed")
    settings["data"] = {"org": "connectx", "subject": settings["data"]["subject"], "settings": {}}
    return [
        (keyed(access("p-4", time="9999-12-31T23:59:59Z")), "time", "outside the accepted range"),
        (keyed(access("p-4", time="0001-01-01T00:00:00Z")), "time", "outside the accepted range"),
        (keyed(access("p-4", time="2300-01-01T00:00:00Z")), "time", "outside the accepted range"),
        (keyed(access("p-4", time="2016-12-31T23:59:60Z")), "time", "Input should be a valid"),
        (keyed(huge_reason), "", "message of "),
        (keyed(access("p-5", id="i" * NEAR_ONE_MB)), "", "message of "),
        (keyed(access("p-6", source="/" + "s" * 300_000)), "source", "longer than the limit"),
        (
            keyed(with_data(access("p-7"), actor={"kind": "service", "id": "a" * 1000})),
            "data.actor.id",
            "longer than the limit",
        ),
        (keyed(settings), "data.settings", "no setting given"),
        (keyed(share("p-8", "fr")), "data.recipient.country", "must be an ISO 3166-1"),
        ((b"p-2", duplicate_type), "type", "duplicate key 'type'"),
        (keyed(access("rtl\u202e1")), "data.subject.id", "contains U+202E"),
        (keyed(access("nul\x001")), "data.subject.id", "contains U+0000"),
        (keyed(access("p-9", deepext=nested(40))), "deepext", "nested deeper than the limit"),
        ((b"p-9", deep), "", "nested deeper than the limit"),
        ((b"p-9", b'{"specversion": "1.0", "id": "\xff\xfe"}'), "", "not valid UTF-8"),
        ((b"k" * 100_000, encoded(access("p-10"))), "key", "the Kafka message key must be"),
    ]


def valid_looking() -> list[tuple[bytes, bytes]]:
    """Inputs that look odd but are valid: each must be judged and stored."""
    extensions = access("ok-1", traceparent="00-abc-def-01", myext={"a": [1, 2]})
    bom = access("ok-2")
    return [
        keyed(extensions),
        (b"ok-2", codecs.BOM_UTF8 + encoded(bom)),
        keyed(access("🦄-ok-3")),
    ]


@pytest.fixture
def producer(pipeline: Pipeline) -> Iterator[KafkaProducer]:
    # Large requests allowed: the test plays a producer that ignores the contract's limits.
    producer = KafkaProducer(bootstrap_servers=pipeline.settings.bootstrap, max_request_size=2**21)
    yield producer
    producer.close()


def at_least(count: int, rows: list[RejectedInput]) -> list[RejectedInput]:
    return rows if len(rows) >= count else []


def take(rejected: list[RejectedInput], field: str, reason: str) -> RejectedInput:
    for row in rejected:
        if row.field == field and row.reason.startswith(reason):
            rejected.remove(row)
            return row
    raise AssertionError(f"no rejection of {field!r} with {reason!r} among {rejected}")


def test_poison_among_valid_events_never_stops_the_stream(
    pipeline: Pipeline, producer: KafkaProducer
) -> None:
    topic = pipeline.settings.topics.events
    bad = poison()
    odd = valid_looking()
    valid = [keyed(access(f"cx-{i}")) for i in range(VALID_EVENTS)]
    expected = len(odd) + len(valid)
    with pipeline.worker() as worker:
        for (key, value), _, _ in bad:
            producer.send(topic, key=key, value=value)
        for key, value in [*odd, *valid]:
            producer.send(topic, key=key, value=value)
        producer.flush()

        pipeline.wait_for(
            lambda: pipeline.api.stats().events >= expected, "the valid events stored", 60
        )
        rejected = pipeline.wait_for(
            lambda: at_least(len(bad), pipeline.api.rejected(limit=1000)),
            "every bad input rejected",
            30,
        )
        assert worker.poll() is None, pipeline.logs()
    assert pipeline.api.stats().events == expected
    left = list(rejected)
    for _, field, reason in bad:
        take(left, field, reason)
    assert not left, [(r.field, r.reason[:80]) for r in left]
    # The messages too large to dead-letter whole say what they were.
    reasons = [row.reason for row in rejected]
    for (_, value), _, _ in bad:
        if len(value) > NEAR_ONE_MB:
            told = f"input was {len(value)} bytes, SHA-256 {hashlib.sha256(value).hexdigest()}"
            assert any(told in reason for reason in reasons), reasons
    log = (pipeline.settings.data_dir / "worker.log").read_text(errors="replace")
    for refused in ("ProducerSendError", "MessageSizeTooLarge", "internal:"):
        assert refused not in log, pipeline.logs()
