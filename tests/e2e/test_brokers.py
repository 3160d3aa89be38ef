"""The Kafka client behaviour privtrail relies on, checked against each embedded broker."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.errors import CommitFailedError  # type: ignore[import-untyped]
from aiokafka.structs import TopicPartition  # type: ignore[import-untyped]
from kafka.partitioner.default import murmur2

from privtrail.brokers import EmbeddedBroker
from tests.e2e.broker_io import (
    WAIT_SECONDS,
    Record,
    as_records,
    consume_with_kafka_python,
    create_topic,
    group_consumer,
    on_each_broker,
    produce_with_aiokafka,
    produce_with_kafka_python,
    read_topic_with_aiokafka,
    read_topic_with_kafka_python,
    sample_records,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


@on_each_broker()
def test_records_from_kafka_python_reach_aiokafka(broker: EmbeddedBroker) -> None:
    topic = create_topic(broker.bootstrap, partitions=3)
    records = sample_records(30)

    produce_with_kafka_python(broker.bootstrap, topic, records)
    received = asyncio.run(read_topic_with_aiokafka(broker.bootstrap, topic, len(records)))

    assert as_records(received) == Counter(records)


@on_each_broker()
def test_records_from_aiokafka_reach_kafka_python(broker: EmbeddedBroker) -> None:
    topic = create_topic(broker.bootstrap, partitions=3)
    records = sample_records(30)

    asyncio.run(produce_with_aiokafka(broker.bootstrap, topic, records))
    received = read_topic_with_kafka_python(broker.bootstrap, topic, len(records))

    assert as_records(received) == Counter(records)


@on_each_broker()
def test_keyed_records_land_on_murmur2_partition_in_key_order(broker: EmbeddedBroker) -> None:
    partitions = 4
    topic = create_topic(broker.bootstrap, partitions)
    keys = [f"subject-{i}".encode() for i in range(12)]
    # Interleaved so a key's records travel in batches shared with other keys.
    records: list[Record] = [(key, str(seq).encode(), ()) for seq in range(5) for key in keys]

    asyncio.run(produce_with_aiokafka(broker.bootstrap, topic, records))
    received = read_topic_with_kafka_python(broker.bootstrap, topic, len(records))

    assert len(received) == len(records)
    sequences: defaultdict[bytes, list[int]] = defaultdict(list)
    for message in received:
        assert message.partition == (murmur2(message.key) & 0x7FFFFFFF) % partitions, message.key
        sequences[message.key].append(int(message.value))
    assert sequences == {key: list(range(5)) for key in keys}


async def wait_for_assignments(
    consumers: list[AIOKafkaConsumer], done: Callable[[], bool], what: str
) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not done():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting until {what}")
        # Polling keeps every member's fetcher and coordinator moving through the rebalance;
        # getmany blocks while a member has no assignment, so bound each round.
        polls = [asyncio.ensure_future(consumer.getmany(timeout_ms=100)) for consumer in consumers]
        await asyncio.wait(polls, timeout=0.5)
        for poll in polls:
            poll.cancel()


async def stop_consumers(*consumers: AIOKafkaConsumer) -> None:
    # stop() waits for the member to leave its group, which never ends in a stuck rebalance.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(c.stop() for c in consumers)), 10)


async def group_splits_and_rebalances(broker: EmbeddedBroker) -> None:
    topic = create_topic(broker.bootstrap, partitions=4)
    everything = {TopicPartition(topic, p) for p in range(4)}
    group = f"g-{uuid.uuid4().hex[:8]}"
    first, second = (
        AIOKafkaConsumer(
            topic,
            bootstrap_servers=broker.bootstrap,
            group_id=group,
            # Commits racing the rebalance are the next test's subject.
            enable_auto_commit=False,
        )
        for _ in range(2)
    )
    await first.start()
    await second.start()
    try:
        await wait_for_assignments(
            [first, second],
            # A member keeps its old partitions until it has rejoined, so wait for a split.
            lambda: (
                bool(first.assignment())
                and bool(second.assignment())
                and not first.assignment() & second.assignment()
                and first.assignment() | second.assignment() == everything
            ),
            "both members own a share of the partitions",
        )

        await second.stop()
        await wait_for_assignments(
            [first], lambda: first.assignment() == everything, "the remaining member owns all"
        )
    finally:
        await stop_consumers(first, second)


@on_each_broker()
def test_group_members_split_partitions_and_rebalance_when_one_leaves(
    broker: EmbeddedBroker,
) -> None:
    asyncio.run(group_splits_and_rebalances(broker))


async def commit_until_cancelled(consumer: AIOKafkaConsumer) -> None:
    while True:
        # A commit the group refuses mid-rebalance is expected; the member must rejoin after it.
        with contextlib.suppress(CommitFailedError):
            await consumer.commit()
        await asyncio.sleep(0.05)


async def group_survives_commits_during_rebalance(broker: EmbeddedBroker) -> None:
    topic = create_topic(broker.bootstrap, partitions=4)
    await produce_with_aiokafka(broker.bootstrap, topic, sample_records(20))
    everything = {TopicPartition(topic, p) for p in range(4)}
    group = f"g-{uuid.uuid4().hex[:8]}"
    first, second = (
        AIOKafkaConsumer(
            topic,
            bootstrap_servers=broker.bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        for _ in range(2)
    )
    await first.start()
    committer = asyncio.create_task(commit_until_cancelled(first))
    try:
        await wait_for_assignments(
            [first], lambda: first.assignment() == everything, "first owns all"
        )
        try:
            # start() returns once the member has its first assignment.
            await asyncio.wait_for(second.start(), WAIT_SECONDS)
        except TimeoutError:
            raise AssertionError("the joining member never got an assignment") from None
        await wait_for_assignments(
            [first, second],
            lambda: bool(first.assignment()) and bool(second.assignment()),
            "both members own partitions",
        )
    finally:
        committer.cancel()
        await stop_consumers(first, second)


@on_each_broker(
    noida_defect="OffsetCommit during a rebalance answers ILLEGAL_GENERATION, the client drops "
    "its member id, and the group waits for the abandoned member and never settles"
)
def test_offset_commits_during_a_rebalance_do_not_stall_the_group(broker: EmbeddedBroker) -> None:
    # Faust commits on a timer, so its commits regularly race with a new worker joining.
    asyncio.run(group_survives_commits_during_rebalance(broker))


@on_each_broker()
def test_committed_offsets_survive_a_consumer_restart(broker: EmbeddedBroker) -> None:
    topic = create_topic(broker.bootstrap, partitions=2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    before, after = sample_records(10), sample_records(20)[10:]
    produce_with_kafka_python(broker.bootstrap, topic, before)

    consumer = group_consumer(broker, topic, group)
    try:
        assert as_records(consume_with_kafka_python(consumer, len(before))) == Counter(before)
        consumer.commit()
    finally:
        consumer.close(autocommit=False)
    produce_with_kafka_python(broker.bootstrap, topic, after)

    consumer = group_consumer(broker, topic, group)
    try:
        # Replayed old records would arrive before the new ones on their partition.
        assert as_records(consume_with_kafka_python(consumer, len(after))) == Counter(after)
    finally:
        consumer.close(autocommit=False)


async def end_offset_after_one_batch(bootstrap: str, topic: str, count: int) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        batch = producer.create_batch()
        for i in range(count):
            assert batch.append(key=None, value=f"v{i}".encode(), timestamp=None) is not None
        await asyncio.wait_for(await producer.send_batch(batch, topic, partition=0), WAIT_SECONDS)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        end: int = (await consumer.end_offsets([partition]))[partition]
        return end
    finally:
        await consumer.stop()


@on_each_broker()
def test_end_offset_counts_every_record_of_a_batch(broker: EmbeddedBroker) -> None:
    topic = create_topic(broker.bootstrap, partitions=1)

    assert asyncio.run(end_offset_after_one_batch(broker.bootstrap, topic, 10)) == 10


async def fetches_while_idle(bootstrap: str, topic: str, seconds: float) -> int:
    """How many requests an idle consumer sends in `seconds` with a 500 ms fetch wait."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, fetch_max_wait_ms=500)
    await asyncio.wait_for(consumer.start(), WAIT_SECONDS)
    try:
        await consumer.getmany(timeout_ms=1000)  # joined and fetching
        sent = 0
        send = consumer._client.send

        async def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal sent
            sent += 1
            return await send(*args, **kwargs)

        consumer._client.send = counted  # type: ignore[method-assign]
        await consumer.getmany(timeout_ms=int(seconds * 1000))
        return sent
    finally:
        await consumer.stop()


@on_each_broker(
    noida_defect="Fetch answers at once on an empty log instead of waiting up to max_wait_ms, "
    "so every idle consumer spins, costing client and broker CPU"
)
def test_an_idle_fetch_waits_for_data_instead_of_spinning(broker: EmbeddedBroker) -> None:
    topic = create_topic(broker.bootstrap, partitions=1)

    # Waiting 500 ms per fetch allows about 4 requests in 2 s (plus metadata); a spin is 1000s.
    assert asyncio.run(fetches_while_idle(broker.bootstrap, topic, 2.0)) < 20


async def idempotent_write(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    try:
        await asyncio.wait_for(producer.start(), WAIT_SECONDS)
        await asyncio.wait_for(producer.send_and_wait(topic, b"once"), WAIT_SECONDS)
    finally:
        await producer.stop()


@on_each_broker()
def test_idempotent_producer_writes(broker: EmbeddedBroker) -> None:
    topic = create_topic(broker.bootstrap, partitions=1)

    asyncio.run(idempotent_write(broker.bootstrap, topic))

    assert [m.value for m in read_topic_with_kafka_python(broker.bootstrap, topic, 1)] == [b"once"]


async def transactional_write(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"tx-{uuid.uuid4().hex[:8]}"
    )
    try:
        await asyncio.wait_for(producer.start(), WAIT_SECONDS)
        async with producer.transaction():
            await asyncio.wait_for(producer.send_and_wait(topic, b"committed"), WAIT_SECONDS)
    finally:
        await producer.stop()


async def read_committed(bootstrap: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", isolation_level="read_committed"
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        batches = await consumer.getmany(timeout_ms=int(WAIT_SECONDS * 1000))
        return [m.value for batch in batches.values() for m in batch]
    finally:
        await consumer.stop()


@on_each_broker()
def test_transactional_writes_reach_read_committed_consumers(broker: EmbeddedBroker) -> None:
    topic = create_topic(broker.bootstrap, partitions=1)

    asyncio.run(transactional_write(broker.bootstrap, topic))

    assert asyncio.run(read_committed(broker.bootstrap, topic)) == [b"committed"]
