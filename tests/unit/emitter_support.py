"""A Kafka producer stand-in for the emitter's unit tests, and what they send."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kafka.future import Future

from events.emitter import Emitter
from events.taxonomy import Taxonomy

SOURCE = "/linkxup/ads-targeting"
SUBJECT = "lxm_subject-0042"
T0 = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
TAXONOMIES = {"linkxup": Taxonomy.default()}
CONTENT_TYPE_HEADER = [("content-type", b"application/cloudevents+json")]


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    future: Future


@dataclass
class FakeProducer:
    """Records sends; each send's future stays pending until the test resolves it."""

    sent: list[Sent] = field(default_factory=list)
    flushes: int = 0
    closed: bool = False
    flush_error: Exception | None = None

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Future:
        assert value is not None
        future = Future()
        self.sent.append(Sent(topic, key, value, list(headers or []), future))
        return future

    def flush(self, timeout: float | None = None) -> None:
        self.flushes += 1
        if self.flush_error is not None:
            raise self.flush_error

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


# The `producer` (a FakeProducer) and `emitter` fixtures are in conftest.py.


def access(emitter: Emitter, **overrides: Any) -> str:
    arguments: dict[str, Any] = {
        "org": "linkxup",
        "subject_id": SUBJECT,
        "subject_kind": "customer",
        "actor_kind": "service",
        "actor_id": "ads-ranker",
        "data_categories": ["user.behavior.browsing_history"],
        "data_use": "marketing.advertising.first_party.targeted",
        "legal_basis": "consent",
        **overrides,
    }
    return emitter.data_accessed(**arguments)
