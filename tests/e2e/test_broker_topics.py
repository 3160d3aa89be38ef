"""Topics on each embedded broker: made by `ensure_topics`, and kept with their records and
committed offsets across a broker restart."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from kafka.structs import OffsetAndMetadata
from kafka.structs import TopicPartition as KafkaTopicPartition

from privtrail.brokers import EmbeddedBroker, embedded_broker
from privtrail.brokers.base import START_TIMEOUT_SECONDS
from privtrail.topics import TopicError, ensure_topics, topic_names
from tests.e2e.broker_io import (
    WAIT_SECONDS,
    as_records,
    consume_with_kafka_python,
    create_topic,
    each_kind,
    group_consumer,
    on_each_broker,
    partition_counts,
    produce_with_kafka_python,
    read_topic_with_kafka_python,
    sample_records,
)
from tests.support import free_port, settings_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


@on_each_broker()
def test_ensure_topics_creates_all_topics_and_is_idempotent(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = settings_for(broker, tmp_path, partitions=3)
    names = topic_names(settings)

    ensure_topics(settings)
    ensure_topics(settings)

    # events, violations, deadletter, audit, and the signed integrity checkpoints.
    assert len(names) == 5
    assert partition_counts(broker.bootstrap, names) == dict.fromkeys(names, 3)


@on_each_broker()
def test_ensure_topics_rejects_topics_with_another_partition_count(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = settings_for(broker, tmp_path, partitions=3)
    ensure_topics(settings)

    with pytest.raises(TopicError, match=settings.topics.events) as raised:
        ensure_topics(settings.model_copy(update={"partitions": 2}))

    assert "has 3" in str(raised.value)


@each_kind()
@pytest.mark.timeout(120)
def test_ensure_topics_waits_for_a_broker_that_is_still_starting(kind: str, tmp_path: Path) -> None:
    broker = embedded_broker(kind, free_port(), tmp_path / "broker")
    settings = settings_for(broker, tmp_path, partitions=2)
    errors: list[BaseException] = []
    # Kafka takes 5 s to start on an idle 2-core machine and far longer on a busy one: wait as
    # long as the broker's own start-up may take.
    patience = START_TIMEOUT_SECONDS + WAIT_SECONDS

    def ensure() -> None:
        try:
            ensure_topics(settings, timeout=patience)
        except BaseException as error:
            errors.append(error)

    worker = threading.Thread(target=ensure)
    worker.start()
    time.sleep(1.5)
    with broker:
        worker.join(patience + 5)
        assert not worker.is_alive()
        assert errors == []
        assert set(partition_counts(broker.bootstrap, topic_names(settings)).values()) == {2}


def test_ensure_topics_gives_up_when_no_broker_answers(tmp_path: Path) -> None:
    absent = embedded_broker("noida", free_port(), tmp_path / "never-started")
    settings = settings_for(absent, tmp_path)
    started = time.monotonic()

    with pytest.raises(TopicError, match=settings.bootstrap):
        ensure_topics(settings, timeout=2)

    assert time.monotonic() - started < 10


@each_kind()
def test_broker_restart_keeps_topics_records_and_committed_offsets(
    kind: str, tmp_path: Path
) -> None:
    broker = embedded_broker(kind, free_port(), tmp_path)
    records = sample_records(12)
    group = "restart-group"
    with broker:
        topic = create_topic(broker.bootstrap, partitions=2)
        produce_with_kafka_python(broker.bootstrap, topic, records)
        consumer = group_consumer(broker, topic, group)
        try:
            consume_with_kafka_python(consumer, len(records))
            consumer.commit({KafkaTopicPartition(topic, 0): OffsetAndMetadata(1, "", -1)})
        finally:
            consumer.close(autocommit=False)

    with broker:
        assert partition_counts(broker.bootstrap, [topic]) == {topic: 2}
        received = read_topic_with_kafka_python(broker.bootstrap, topic, len(records))
        assert as_records(received) == Counter(records)
        consumer = group_consumer(broker, topic, group)
        try:
            assert consumer.committed(KafkaTopicPartition(topic, 0)) == 1
        finally:
            consumer.close(autocommit=False)
