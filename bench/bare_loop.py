"""The yardstick of the throughput benches: a bare aiokafka loop that consumes pre-produced
messages from one topic and produces each to another, per batch, flushing before it commits, as
the worker does; and the demo workload both it and the pipeline are given.

Used by throughput.py and backlog.py.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from config.settings import Settings
from privtrail.demo import default_start, demo_events

SEED = 7
BARE_INPUT = "bench.bare.in"
BARE_OUTPUT = "bench.bare.out"
# The pipeline or the bare loop is declared stuck when nothing moves for this long.
STALL_SECONDS = 60.0


class BenchError(RuntimeError):
    """The benchmark could not run to the end."""


@dataclass(frozen=True)
class Message:
    """A demo event as its emitter sends it, split around its `time` so it can be restamped."""

    key: bytes | None
    before_time: bytes
    after_time: bytes

    @property
    def size(self) -> int:
        return len(self.before_time) + len(self.after_time) + len(now_iso())

    def value(self, time_iso: bytes) -> bytes:
        return self.before_time + time_iso + self.after_time


@dataclass(frozen=True)
class BareResult:
    messages: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def demo_workload(count: int) -> list[Message]:
    started = time.perf_counter()
    # Valid events only: every input then becomes one `events` row with a `stored_at`.
    events = demo_events(SEED, count, default_start(), malformed_share=0)
    messages = [_split_at_time(event.key, event.value) for event in events]
    progress(f"generated {count} demo events in {time.perf_counter() - started:.1f} s")
    return messages


def _split_at_time(key: bytes | None, value: bytes) -> Message:
    # The envelope's `time` precedes `data`, so the first occurrence is the envelope's.
    marker = b'"time":"'
    start = value.index(marker) + len(marker)
    end = value.index(b'"', start)
    return Message(key, value[:start], value[end:])


def now_iso() -> bytes:
    return datetime.now(UTC).isoformat().encode()


async def bare_loop(bootstrap: str, messages: list[Message], settings: Settings) -> BareResult:
    """Time consuming every message from one topic and producing it to another."""
    _create_topics(bootstrap, [BARE_INPUT, BARE_OUTPUT], settings.partitions)
    await preproduce(bootstrap, messages)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id="bench-bare",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = _bare_producer(bootstrap, settings)
    await consumer.start()
    await producer.start()
    try:
        consumer.assign([TopicPartition(BARE_INPUT, p) for p in range(settings.partitions)])
        return await _consume_produce(consumer, producer, len(messages), settings.batch_size)
    finally:
        await consumer.stop()
        await producer.stop()


def _bare_producer(bootstrap: str, settings: Settings) -> AIOKafkaProducer:
    # The worker's producer settings: acks from all replicas, the broker's batch-size tuning.
    tuning = {}
    if settings.producer_max_batch_size is not None:
        tuning["max_batch_size"] = settings.producer_max_batch_size
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **tuning)


async def preproduce(bootstrap: str, messages: list[Message]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        stamp = now_iso()
        for message in messages:
            await producer.send(BARE_INPUT, message.value(stamp), key=message.key)
        await producer.flush()
    finally:
        await producer.stop()


async def _consume_produce(
    consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, total: int, batch_size: int
) -> BareResult:
    consumed = 0
    started = last_progress = time.perf_counter()
    while consumed < total:
        batches = await consumer.getmany(timeout_ms=1000, max_records=batch_size)
        for records in batches.values():
            for record in records:
                await producer.send(BARE_OUTPUT, record.value, key=record.key)
            consumed += len(records)
        await producer.flush()
        await consumer.commit()
        if batches:
            last_progress = time.perf_counter()
        elif time.perf_counter() - last_progress > STALL_SECONDS:
            raise BenchError(f"the bare loop got nothing for {STALL_SECONDS:.0f} s at {consumed}")
    return BareResult(consumed, time.perf_counter() - started)


def _create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    with KafkaAdminClient(bootstrap_servers=bootstrap, client_id="privtrail-bench") as admin:
        admin.create_topics([NewTopic(name, partitions, 1) for name in names])
        admin.wait_for_topics(names, timeout_ms=30_000)


def progress(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)
