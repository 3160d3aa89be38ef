"""The ingest loop against a real chDB store and a scripted stand-in for the Kafka consumer."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka.structs import TopicPartition

from config.settings import Settings
from events.outputs import (
    DLQ_FIELD,
    DLQ_OFFSET,
    DLQ_PARTITION,
    DLQ_REASON,
    DLQ_TIME,
    DLQ_TOPIC,
    AuditBatch,
    Violation,
)
from sinks import Rejected, ingest
from sinks.clickhouse.store import Store
from sinks.ingest import Ingestor
from tests.unit.chdb_store import T0, audit, store_dsn, violation

AUDIT, VIOLATIONS, DEADLETTER = "privacy.audit", "privacy.violations", "privacy.deadletter"


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    timestamp: int | None = 1_740_830_400_000
    headers: Sequence[tuple[str, bytes | None]] = ()


@dataclass
class FakeConsumer:
    """Hands out scripted records one poll at a time and remembers what was committed."""

    pending: list[Record] = field(default_factory=list)
    highwaters: dict[tuple[str, int], int] = field(default_factory=dict)
    # The next offset per partition, as a real consumer's position after handing out records.
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    on_commit: Callable[[], None] = lambda: None
    commits: int = 0
    closed_with_autocommit: bool | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def feed(self, *records: Record) -> None:
        with self.lock:
            self.pending.extend(records)

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Any]]:
        with self.lock:
            taken = self.pending[: max_records or len(self.pending)]
            del self.pending[: len(taken)]
        if not taken:
            time.sleep(timeout_ms / 1000)
        polled: dict[Any, list[Any]] = {}
        for record in taken:
            self.positions[(record.topic, record.partition)] = record.offset + 1
            polled.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
        return polled

    def commit(self) -> None:
        self.on_commit()
        self.commits += 1

    def assignment(self) -> set[Any]:
        return {TopicPartition(t, p) for t, p in self.highwaters}

    def position(self, partition: Any, timeout_ms: int | None = None) -> int | None:
        return self.positions.get((partition.topic, partition.partition))

    def highwater(self, partition: Any) -> int | None:
        return self.highwaters.get((partition.topic, partition.partition))

    def close(self, autocommit: bool = True) -> None:
        self.closed_with_autocommit = autocommit


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def audit_message(offset: int, *event_ids: str) -> Record:
    batch = AuditBatch(records=[audit(event_id) for event_id in event_ids])
    return Record(AUDIT, 0, offset, batch.model_dump_json().encode())


def violation_message(offset: int, violation_id: str) -> Record:
    return Record(VIOLATIONS, 0, offset, violation(violation_id).model_dump_json().encode())


@pytest.fixture
def store() -> Iterator[Store]:
    opened = Store.open(store_dsn())
    yield opened
    opened.close()


@pytest.fixture
def consumer() -> FakeConsumer:
    return FakeConsumer()


@pytest.fixture
def settings() -> Settings:
    return Settings(sink_batch_size=1000, sink_flush_interval=0.05)


@pytest.fixture
def ingestor(settings: Settings, store: Store, consumer: FakeConsumer) -> Iterator[Ingestor]:
    running = Ingestor(settings, store, consumer_factory=lambda: consumer)
    yield running
    running.stop()


def test_messages_of_all_three_topics_are_stored_and_then_committed(
    ingestor: Ingestor, store: Store, consumer: FakeConsumer
) -> None:
    stored_at_commit: list[dict[str, int]] = []
    consumer.on_commit = lambda: stored_at_commit.append(store.stats()["tables"])
    consumer.feed(
        audit_message(0, "e1", "e2"),
        violation_message(0, "v1"),
        Record(DEADLETTER, 0, 0, b"not json", key=b"subject-1", headers=[(DLQ_REASON, b"bad")]),
    )

    ingestor.start()
    wait_until(lambda: consumer.commits >= 1)

    expected = {"events": 2, "violations": 1, "lineage_edges": 4, "rejected_events": 1}
    assert stored_at_commit[0] == expected
    assert ingestor.status().rows_written == {"events": 2, "violations": 1, "rejected_events": 1}


def test_an_undecodable_message_is_kept_as_rejected_and_ingest_goes_on(
    ingestor: Ingestor, store: Store, consumer: FakeConsumer
) -> None:
    consumer.feed(
        Record(AUDIT, 2, 10, b'{"records": [{"event_id": 1}]', key=b"k"),
        Record(VIOLATIONS, 1, 4, b'{"violation_id": "x"}'),
        Record(VIOLATIONS, 1, 5, None),
        violation_message(6, "v-after"),
    )

    ingestor.start()
    wait_until(lambda: len(store.rejected()) == 3)

    by_id = {r.rejection_id: r for r in store.rejected()}
    broken_audit = by_id[f"{AUDIT}-2-10"]
    assert broken_audit.reason.startswith("not a valid AuditBatch")
    assert broken_audit.raw == b'{"records": [{"event_id": 1}]'
    assert broken_audit.key == b"k"
    broken_violation = by_id[f"{VIOLATIONS}-1-4"]
    assert broken_violation.reason.startswith("not a valid Violation: Field required (and ")
    assert broken_violation.field == "rule_id"
    assert "empty message" in by_id[f"{VIOLATIONS}-1-5"].reason
    assert [v.violation_id for v in store.violations()] == ["v-after"]


def test_a_dead_letter_is_stored_under_its_source_coordinates(
    ingestor: Ingestor, store: Store, consumer: FakeConsumer
) -> None:
    failed_at = datetime(2025, 3, 1, 13, 0, tzinfo=UTC)
    headers = [
        (DLQ_REASON, b"unknown data category 'user.nope'"),
        (DLQ_FIELD, b"data.data_categories"),
        (DLQ_TOPIC, b"privacy.events"),
        (DLQ_PARTITION, b"3"),
        (DLQ_OFFSET, b"41"),
        (DLQ_TIME, failed_at.isoformat().encode()),
    ]
    original = b'{"specversion": "1.0", "id": "e\xff"}'
    consumer.feed(
        Record(DEADLETTER, 0, 0, original, key=b"alice", headers=headers),
        Record(DEADLETTER, 0, 1, original, key=b"alice", headers=headers),  # duplicated
        Record(DEADLETTER, 1, 7, b"x", headers=[(DLQ_TOPIC, b"privacy.events")]),
        Record(DEADLETTER, 1, 8, b"{", headers=[(DLQ_REASON, b"not JSON"), (DLQ_FIELD, b"")]),
    )

    ingestor.start()
    wait_until(lambda: ingestor.status().rows_written["rejected_events"] == 4)

    first, not_json, second = sorted(store.rejected(), key=lambda r: r.rejection_id)
    assert first.rejection_id == "privacy.deadletter-1-7"
    assert first.reason == "dead letter without a privtrail.error.reason header"
    assert first.field is None
    assert (not_json.field, not_json.reason) == ("", "not JSON")
    assert second.rejection_id == "privacy.events-3-41"
    assert (second.field, second.received_at, second.raw) == (
        "data.data_categories",
        failed_at,
        original,
    )


def test_a_full_batch_is_written_without_waiting_for_the_interval(
    store: Store, consumer: FakeConsumer
) -> None:
    settings = Settings(sink_batch_size=3, sink_flush_interval=600)
    ingestor = Ingestor(settings, store, consumer_factory=lambda: consumer)
    consumer.feed(audit_message(0, "e1", "e2"), violation_message(0, "v1"))
    try:
        ingestor.start()
        wait_until(lambda: consumer.commits == 1)
        assert store.stats()["tables"]["events"] == 2
    finally:
        ingestor.stop()


def test_a_failed_write_is_retried_and_nothing_is_committed_before_it_succeeds(
    ingestor: Ingestor,
    store: Store,
    consumer: FakeConsumer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ingest, "MAX_BACKOFF_SECONDS", 0.05)
    write = store.write_violations
    failures = [RuntimeError("store is down")]

    def flaky(violations: Sequence[Violation]) -> None:
        if failures:
            raise failures.pop()
        write(violations)

    monkeypatch.setattr(store, "write_violations", flaky)
    commits_seen: list[int] = []
    consumer.on_commit = lambda: commits_seen.append(len(store.violations()))
    consumer.feed(audit_message(0, "e1"), violation_message(0, "v1"))

    ingestor.start()
    wait_until(lambda: consumer.commits == 1)

    assert commits_seen == [1]
    assert store.stats()["tables"]["events"] == 1
    assert ingestor.status().last_error is None


def test_violations_written_before_a_failed_write_still_reach_the_listeners(
    ingestor: Ingestor,
    store: Store,
    consumer: FakeConsumer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ingest, "MAX_BACKOFF_SECONDS", 0.05)
    write = store.write_rejected
    failures = [RuntimeError("store is down")]

    def flaky(rejected: Sequence[Rejected], subject_lookups: Sequence[str] | None = None) -> None:
        if failures:
            raise failures.pop()
        write(rejected, subject_lookups)

    monkeypatch.setattr(store, "write_rejected", flaky)
    received: list[list[str]] = []
    ingestor.listeners.append(lambda vs: received.append([v.violation_id for v in vs]))
    consumer.feed(violation_message(0, "v1"), Record(DEADLETTER, 0, 0, b"x"))

    ingestor.start()
    wait_until(lambda: consumer.commits == 1)

    assert received == [["v1"]]
    assert len(store.rejected()) == 1


def test_listeners_get_stored_violations_and_a_failing_one_stops_nothing(
    ingestor: Ingestor, consumer: FakeConsumer
) -> None:
    received: list[list[str]] = []

    def broken(violations: Sequence[Violation]) -> None:
        raise RuntimeError("listener bug")

    ingestor.listeners.append(broken)
    ingestor.listeners.append(lambda vs: received.append([v.violation_id for v in vs]))
    consumer.feed(violation_message(0, "v1"), violation_message(1, "v2"))

    ingestor.start()
    wait_until(lambda: received != [])
    consumer.feed(violation_message(2, "v3"))
    wait_until(lambda: len(received) == 2)

    assert received == [["v1", "v2"], ["v3"]]


def test_stop_writes_what_is_buffered_and_closes_without_autocommit(
    store: Store, consumer: FakeConsumer
) -> None:
    settings = Settings(sink_batch_size=1000, sink_flush_interval=600)
    ingestor = Ingestor(settings, store, consumer_factory=lambda: consumer)
    consumer.feed(violation_message(0, "v1"))
    ingestor.start()
    wait_until(lambda: ingestor.status().pending_rows == 1)

    ingestor.stop()

    assert [v.violation_id for v in store.violations()] == ["v1"]
    assert consumer.commits == 1
    assert consumer.closed_with_autocommit is False
    assert ingestor.status().running is False


def test_lag_is_the_distance_to_the_end_of_the_consumed_partitions(
    ingestor: Ingestor, consumer: FakeConsumer
) -> None:
    consumer.highwaters = {(VIOLATIONS, 0): 10, (AUDIT, 0): 5}
    consumer.feed(violation_message(3, "v1"))

    ingestor.start()
    wait_until(lambda: ingestor.status().lag is not None)

    assert ingestor.status().lag == 6


# Long enough that a write to chDB on a loaded machine is not mistaken for a stall.
STALL_SECONDS = 1.0


@pytest.fixture
def watched(
    store: Store, consumer: FakeConsumer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Ingestor]:
    """An ingestor that counts as stalled after STALL_SECONDS without progress."""
    # Polls well within the threshold, as the real loop does with the default threshold.
    monkeypatch.setattr(ingest, "MAX_POLL_SECONDS", 0.05)
    settings = Settings(sink_flush_interval=0.05, health_stall_seconds=STALL_SECONDS)
    running = Ingestor(settings, store, consumer_factory=lambda: consumer)
    yield running
    running.stop()


def test_a_lagging_ingest_loop_without_progress_is_degraded_naming_its_lag(
    watched: Ingestor, consumer: FakeConsumer
) -> None:
    consumer.highwaters = {(VIOLATIONS, 0): 10}
    consumer.feed(violation_message(3, "v1"))

    watched.start()
    wait_until(lambda: watched.problems() != [])

    (problem,) = watched.problems()
    assert re.fullmatch(r"ingest: 6 messages behind, no progress for \d+ s", problem)
    status = watched.status()
    assert status.lag == 6 and status.seconds_since_progress >= STALL_SECONDS


def test_an_ingest_loop_that_lags_but_keeps_consuming_is_healthy(
    watched: Ingestor, consumer: FakeConsumer
) -> None:
    consumer.highwaters = {(VIOLATIONS, 0): 1000}
    watched.start()

    for offset in range(3 * int(STALL_SECONDS / 0.05)):
        consumer.feed(violation_message(offset, f"v{offset}"))
        time.sleep(0.05)
        assert watched.problems() == []

    assert (watched.status().lag or 0) > 900


def test_a_caught_up_ingest_loop_stays_healthy_while_idle(
    watched: Ingestor, consumer: FakeConsumer
) -> None:
    consumer.highwaters = {(VIOLATIONS, 0): 2}
    consumer.feed(violation_message(0, "v1"), violation_message(1, "v2"))
    watched.start()
    wait_until(lambda: watched.status().lag == 0)

    time.sleep(3 * STALL_SECONDS)

    assert watched.problems() == []
    assert watched.status().seconds_since_progress < STALL_SECONDS


def test_an_ingest_loop_without_partitions_is_degraded_once_its_lag_stays_unknown(
    watched: Ingestor,
) -> None:
    # As after a restart while the group still waits for its killed member: nothing assigned.
    watched.start()
    assert watched.problems() == []

    wait_until(lambda: watched.problems() != [])

    (problem,) = watched.problems()
    assert re.fullmatch(r"ingest: lag unknown, no progress for \d+ s", problem)
    assert watched.status().lag is None


def test_an_unreachable_broker_is_retried_and_reported(
    store: Store, consumer: FakeConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[int] = []

    def connect() -> FakeConsumer:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("no broker")
        return consumer

    settings = Settings(kafka_bootstrap="127.0.0.1:1", sink_flush_interval=0.05)
    ingestor = Ingestor(settings, store, consumer_factory=connect)
    errors: list[str | None] = []
    monkeypatch.setattr(ingestor, "_note_error", errors.append)
    try:
        ingestor.start()
        wait_until(lambda: ingestor.status().connected)
    finally:
        ingestor.stop()

    assert errors == ["cannot connect to Kafka at 127.0.0.1:1: no broker"]


def test_at_least_once_delivery_stores_a_replayed_batch_once(
    ingestor: Ingestor, store: Store, consumer: FakeConsumer
) -> None:
    consumer.feed(audit_message(0, "e1", "e2"), violation_message(0, "v1"))
    # The same messages again, as after a crash between write and commit.
    consumer.feed(audit_message(0, "e1", "e2"), violation_message(0, "v1"))

    ingestor.start()
    # The flush's last write: the events and the violations are stored once it counts.
    wait_until(lambda: ingestor.status().rows_written["violations"] == 2)

    assert store.stats()["tables"] == {
        "events": 2,
        "violations": 1,
        "lineage_edges": 4,
        "rejected_events": 0,
    }
    assert store.violations()[0].occurred_at == T0


def consume_until_committed(settings: Settings, store: Store, messages: list[Record]) -> None:
    """Run an ingest loop over `messages` until it commits, then stop it."""
    consumer = FakeConsumer()
    consumer.feed(*messages)
    running = Ingestor(settings, store, consumer_factory=lambda: consumer)
    running.start()
    wait_until(lambda: consumer.commits >= 1)
    running.stop()


def test_a_replayed_batch_and_a_retraction_leave_the_dashboard_counts_exact(
    settings: Settings, store: Store
) -> None:
    opened = violation("v1")
    retracted = opened.model_copy(
        update={"status": "retracted", "detected_at": opened.detected_at + timedelta(minutes=1)}
    )
    batch = [
        audit_message(0, "e1", "e2"),
        violation_message(0, "v1"),
        Record(VIOLATIONS, 0, 1, violation("v2").model_dump_json().encode()),
    ]
    # A store killed after writing but before committing consumes the batch again on restart.
    for messages in (
        batch,
        [*batch, Record(VIOLATIONS, 0, 2, retracted.model_dump_json().encode())],
    ):
        consume_until_committed(settings, store, messages)

    stats = store.stats()
    assert stats["tables"] == {
        "events": 2,
        "violations": 1,
        "lineage_edges": 4,
        "rejected_events": 0,
    }
    assert [(r["rule_id"], r["count"]) for r in stats["violations_by_rule"]] == [
        ("LX-ADNET-001", 1)
    ]
    assert store.latency()["events"] == 2
