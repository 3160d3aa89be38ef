"""Writing and reading records with both Kafka clients, for the broker behaviour tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.structs import TopicPartition  # type: ignore[import-untyped]
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.structs import TopicPartition as KafkaTopicPartition

from privtrail.brokers import EmbeddedBroker

# (key, value, headers) as a test writes them and expects to read them back.
Record = tuple[bytes, bytes, tuple[tuple[str, bytes], ...]]

WAIT_SECONDS = 20.0


def on_each_broker(noida_defect: str | None = None) -> pytest.MarkDecorator:
    """Run on Kafka and noida. Kafka is the reference and must pass; when noida has a known
    defect the test hits, it must fail it, with the defect named in the expected-failure reason."""
    defect = (
        []
        if noida_defect is None
        else [pytest.mark.xfail(strict=True, raises=AssertionError, reason=noida_defect)]
    )
    return pytest.mark.parametrize(
        "broker",
        [pytest.param("kafka", id="kafka"), pytest.param("noida", id="noida", marks=defect)],
        indirect=True,
    )


def each_kind() -> pytest.MarkDecorator:
    """For tests that launch their own broker instead of sharing the fixture's."""
    return pytest.mark.parametrize("kind", ["kafka", "noida"])


def create_topic(bootstrap: str, partitions: int) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    with KafkaAdminClient(bootstrap_servers=bootstrap) as admin:
        admin.create_topics({name: {"num_partitions": partitions, "replication_factor": 1}})
        admin.wait_for_topics([name])
    return name


def sample_records(count: int) -> list[Record]:
    return [
        (f"subject-{i % 5}".encode(), f"event-{i}".encode(), (("ce_id", str(i).encode()),))
        for i in range(count)
    ]


def produce_with_kafka_python(bootstrap: str, topic: str, records: list[Record]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        futures = [
            producer.send(topic, key=key, value=value, headers=list(headers))
            for key, value, headers in records
        ]
        for future in futures:
            future.get(timeout=WAIT_SECONDS)
    finally:
        producer.close()


def consume_with_kafka_python(consumer: KafkaConsumer, count: int) -> list[Any]:
    received: list[Any] = []
    deadline = time.monotonic() + WAIT_SECONDS
    while len(received) < count and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=200).values():
            received.extend(batch)
    return received


def read_topic_with_kafka_python(bootstrap: str, topic: str, count: int) -> list[Any]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    try:
        partitions = consumer.partitions_for_topic(topic)
        consumer.assign([KafkaTopicPartition(topic, p) for p in sorted(partitions)])
        return consume_with_kafka_python(consumer, count)
    finally:
        consumer.close()


async def produce_with_aiokafka(bootstrap: str, topic: str, records: list[Record]) -> list[Any]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=key, value=value, headers=list(headers))
            for key, value, headers in records
        ]
        return list(await asyncio.wait_for(asyncio.gather(*futures), WAIT_SECONDS))
    finally:
        await producer.stop()


async def read_topic_with_aiokafka(bootstrap: str, topic: str, count: int) -> list[Any]:
    # An unsubscribed aiokafka consumer's metadata names no topics (only noida sends them all).
    partitions = partition_counts(bootstrap, [topic])[topic]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        received: list[Any] = []
        deadline = time.monotonic() + WAIT_SECONDS
        while len(received) < count and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                received.extend(batch)
        return received
    finally:
        await consumer.stop()


def as_records(messages: list[Any]) -> Counter[Record]:
    return Counter((m.key, m.value, tuple((k, v) for k, v in m.headers)) for m in messages)


def group_consumer(broker: EmbeddedBroker, topic: str, group: str) -> KafkaConsumer:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    # kafka-python's group leader assigns only partitions it has metadata for: a join that wins
    # the race with the first metadata fetch assigns nothing ("No partition metadata for
    # topic") and stays empty until the next refresh, minutes later. Fetch it first.
    consumer.partitions_for_topic(topic)
    return consumer


def partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    with KafkaAdminClient(bootstrap_servers=bootstrap) as admin:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(topics)}
