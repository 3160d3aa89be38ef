"""The ingest loop: Kafka topics into the store, at least once, each row stored once.

It consumes the audit, violation and dead-letter topics in one consumer group, buffers rows per
table, and writes them when `sink_batch_size` rows are buffered or `sink_flush_interval` has
passed; only then are the offsets committed. A crash between write and commit replays the
batch, and the store's ReplacingMergeTree tables keep one copy of each row.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import pyarrow as pa
from pydantic import BaseModel

from config.settings import Settings
from events.outputs import Violation
from sinks import Rejected
from sinks.clickhouse.store import Store
from sinks.erasure import Erasures, RejectedShredder
from sinks.integrity.ledger import Ledger
from sinks.messages import Message, MessageRows, message_rows
from sinks.progress import Progress

# Upper bound on one poll, so `stop()` is noticed quickly even with nothing to consume.
MAX_POLL_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 5.0
IDLE_FETCH_WAIT_MS = 5000
BOOTSTRAP_TIMEOUT_MS = 5000

log = logging.getLogger(__name__)

ViolationListener = Callable[[Sequence[Violation]], None]


class Consumer(Protocol):
    """The parts of kafka-python's KafkaConsumer the ingest loop uses."""

    def poll(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> Mapping[Any, list[Any]]: ...
    def commit(self) -> None: ...
    def assignment(self) -> set[Any]: ...
    def position(self, partition: Any, timeout_ms: int | None = None) -> int | None: ...
    def highwater(self, partition: Any) -> int | None: ...
    def close(self, autocommit: bool = True) -> None: ...


ConsumerFactory = Callable[[], Consumer]


class IngestStatus(BaseModel):
    running: bool
    # Whether the Kafka consumer has been created (the broker answered).
    connected: bool
    # Messages behind the end of the assigned partitions (None: nothing assigned, or no fetch
    # has told their end yet).
    lag: int | None
    # Since the loop last consumed a message or was seen caught up.
    seconds_since_progress: float
    last_flush: datetime | None
    pending_rows: int
    rows_written: dict[str, int]
    # The latest problem, cleared by the next successful write.
    last_error: str | None


@dataclass
class _Buffer:
    # AuditBatch messages' records, as columns (sinks/clickhouse/audit_columns.py).
    audit: list[pa.Table] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    # Monotonic time the oldest unwritten row arrived (None: empty).
    since: float | None = None

    @property
    def rows(self) -> int:
        return self.audit_rows + len(self.violations) + len(self.rejected)

    @property
    def audit_rows(self) -> int:
        return sum(table.num_rows for table in self.audit)

    def mark_arrival(self) -> None:
        if self.since is None:
            self.since = time.monotonic()

    def add(self, rows: MessageRows) -> None:
        if isinstance(rows, pa.Table):
            self.audit.append(rows)
        else:
            for row in rows:
                self._add(row)

    def _add(self, row: Violation | Rejected) -> None:
        if isinstance(row, Violation):
            self.violations.append(row)
        else:
            self.rejected.append(row)


class Ingestor:
    """Runs the ingest loop in a daemon thread of the process that owns the store."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        consumer_factory: ConsumerFactory | None = None,
        ledger: Ledger | None = None,
        erasures: Erasures | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        # Chains every stored row and signs checkpoints (sinks/integrity/); None: off.
        self.ledger = ledger
        # Blanks the raw bytes of erased subjects' rejected inputs; None erasures: none known.
        self._shredder = RejectedShredder(settings.pseudonym_master, store, erasures)
        # Called with each batch of violations once it is stored (e.g. an alert sink's send).
        self.listeners: list[ViolationListener] = []
        self._consumer_factory = consumer_factory or (lambda: kafka_consumer(settings))
        self._buffer = _Buffer()
        self._stored_violations: list[Violation] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected = False
        self._progress = Progress()
        self._last_flush: datetime | None = None
        self._rows_written = {"events": 0, "violations": 0, "rejected_events": 0}
        self._last_error: str | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the ingestor is already started")
        self._thread = threading.Thread(target=self._run, name="privtrail-ingest", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop consuming, write and commit what is buffered, close the consumer."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("ingest thread did not stop within %.0f s", timeout)

    def status(self) -> IngestStatus:
        thread = self._thread
        return IngestStatus(
            running=thread is not None and thread.is_alive(),
            connected=self._connected,
            lag=self._progress.lag,
            seconds_since_progress=round(self._progress.seconds_since_progress(), 1),
            last_flush=self._last_flush,
            pending_rows=self._buffer.rows,
            rows_written=dict(self._rows_written),
            last_error=self._last_error,
        )

    def problems(self) -> list[str]:
        """Why the loop is not storing what waits for it, if it is not; empty when it is."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return [self._last_error or "ingest is not running"]
        found = [self._last_error] if self._last_error else []
        stalled = self._progress.problem("ingest", "messages", self.settings.health_stall_seconds)
        if stalled:
            found.append(stalled)
        return found

    def _run(self) -> None:
        consumer = self._connect()
        if consumer is None:
            return
        try:
            while not self._stopping.is_set():
                self._step(consumer)
            self._flush(consumer)
            if self.ledger is not None:
                self.ledger.close()
        except Exception as error:
            # Uncommitted messages are consumed again after a restart; /health says why.
            self._last_error = f"ingest stopped: {error}"
            log.exception("ingest stopped")
        finally:
            # Offsets are committed only after a successful write, never on close.
            consumer.close(autocommit=False)
            self._connected = False

    def _connect(self) -> Consumer | None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                consumer = self._consumer_factory()
            except Exception as error:
                self._note_error(f"cannot connect to Kafka at {self.settings.bootstrap}: {error}")
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            else:
                self._connected = True
                self._last_error = None
                return consumer
        return None

    def _step(self, consumer: Consumer) -> None:
        self._sign_checkpoint()
        self._apply_erasures()
        if self._buffer.rows and self._flush_due():
            if not self._flush(consumer):
                self._stopping.wait(MAX_BACKOFF_SECONDS)
            return
        try:
            polled = consumer.poll(timeout_ms=self._poll_timeout_ms(), max_records=self._room())
        except Exception as error:
            self._note_error(f"polling Kafka failed: {error}")
            self._stopping.wait(MAX_BACKOFF_SECONDS)
            return
        messages = [record for records in polled.values() for record in records]
        for message, rows in zip(
            messages, message_rows(self.settings.topics, messages), strict=True
        ):
            self._accept(message, rows)
        self._progress.observe(_lag(consumer), advanced=bool(messages))

    def _flush_due(self) -> bool:
        if self._buffer.rows >= self.settings.sink_batch_size:
            return True
        since = self._buffer.since
        return since is not None and time.monotonic() - since >= self.settings.sink_flush_interval

    def _poll_timeout_ms(self) -> int:
        wait = MAX_POLL_SECONDS
        if self._buffer.since is not None:
            left = self.settings.sink_flush_interval - (time.monotonic() - self._buffer.since)
            wait = min(wait, max(left, 0.0))
        return int(wait * 1000)

    def _room(self) -> int:
        return max(self.settings.sink_batch_size - self._buffer.rows, 1)

    def _accept(self, message: Message, rows: MessageRows) -> None:
        self._buffer.mark_arrival()
        self._buffer.add(rows)
        if self.ledger is not None:
            self.ledger.observe(message.topic, message.partition, message.offset, rows)

    def _sign_checkpoint(self) -> None:
        if self.ledger is None:
            return
        try:
            self.ledger.tick()
        except Exception as error:
            self._note_error(f"signing an integrity checkpoint failed, will retry: {error}")

    def _apply_erasures(self) -> None:
        try:
            self._shredder.apply_erasures()
        except Exception as error:
            self._note_error(f"blanking erased subjects' rejected inputs failed: {error}")

    def _flush(self, consumer: Consumer) -> bool:
        """Write every buffered row, then commit; False (buffer kept) if the store failed."""
        buffer = self._buffer
        if not buffer.rows:
            return True
        try:
            if self.ledger is not None:
                # Entries first: no row is ever stored without the entry that chains it.
                self.ledger.write()
            self._write("events", buffer.audit, self.store.write_audit_columns, buffer.audit_rows)
            violations = list(buffer.violations)
            self._write("violations", buffer.violations, self.store.write_violations)
            # Kept until the whole flush succeeds, so a retry after a partial failure still
            # hands them to the listeners.
            self._stored_violations.extend(violations)
            self._write("rejected_events", buffer.rejected, self._shredder.write)
        except Exception as error:
            self._note_error(f"writing to the store failed, will retry: {error}")
            return False
        buffer.since = None
        self._last_flush = datetime.now(UTC)
        self._last_error = None
        self._commit(consumer)
        if self._stored_violations:
            self._notify(self._stored_violations)
            self._stored_violations = []
        return True

    def _write(
        self,
        table: str,
        rows: list[Any],
        write: Callable[[Sequence[Any]], None],
        count: int | None = None,
    ) -> None:
        if not rows:
            return
        write(rows)
        self._rows_written[table] += len(rows) if count is None else count
        # Cleared table by table: after a partial failure the retry skips what is written.
        rows.clear()

    def _commit(self, consumer: Consumer) -> None:
        try:
            consumer.commit()
        except Exception as error:
            # The rows are stored; a redelivery after a rebalance only re-writes them, and the
            # store keeps one copy.
            self._note_error(f"committing offsets failed (rows are stored): {error}")

    def _notify(self, violations: Sequence[Violation]) -> None:
        for listener in self.listeners:
            try:
                listener(violations)
            except Exception:
                log.exception("violation listener %r failed", listener)

    def _note_error(self, message: str) -> None:
        self._last_error = message
        log.warning(message)


def _lag(consumer: Consumer) -> int | None:
    """Messages between the consumer's positions and the ends of its assigned partitions."""
    lag = 0
    known = False
    for partition in consumer.assignment() or ():
        try:
            # No wait: a partition whose position is still being looked up is not known yet.
            position = consumer.position(partition, timeout_ms=0)
            end = consumer.highwater(partition)
        except Exception:
            continue  # revoked since assignment() answered: no longer ours to report
        if position is not None and end is not None:
            lag += max(end - position, 0)
            known = True
    return lag if known else None


def kafka_consumer(settings: Settings) -> Consumer:
    from kafka import KafkaConsumer

    tuning: dict[str, int] = {}
    if settings.broker_session_timeout is not None:
        tuning["session_timeout_ms"] = int(settings.broker_session_timeout * 1000)
    if settings.broker_heartbeat_interval is not None:
        tuning["heartbeat_interval_ms"] = int(settings.broker_heartbeat_interval * 1000)
    consumer: Consumer = KafkaConsumer(
        settings.topics.audit,
        settings.topics.violations,
        settings.topics.deadletter,
        bootstrap_servers=settings.bootstrap,
        group_id=f"{settings.app_id}-store",
        client_id=f"{settings.app_id}-store",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # Short, so that stop() is not held up by a broker that isn't there; _connect retries.
        bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
        # An idle fetch waits this long on the broker for data (a Fetch returns as soon as
        # there is any): the 0.5 s default made the idle broker answer two fetches a second.
        fetch_max_wait_ms=IDLE_FETCH_WAIT_MS,
        **tuning,
        **settings.kafka_security.kafka_python(),
    )
    return consumer
