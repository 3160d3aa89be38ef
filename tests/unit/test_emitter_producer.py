"""The emitter's producer: delivery errors reported by flush and close, and the Kafka
settings the event contract depends on."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from kafka.cluster import ClusterMetadata
from kafka.errors import KafkaTimeoutError, NotLeaderForPartitionError
from kafka.future import Future
from kafka.partitioner import DefaultPartitioner
from kafka.producer.record_accumulator import RecordAccumulator

import events.producer
from events.emitter import EmitError, Emitter, KafkaUnreachable
from events.producer import BOOTSTRAP_TIMEOUT_SECONDS, KeyHashPartitioner
from tests.unit.emitter_support import (
    SOURCE,
    SUBJECT,
    FakeProducer,
    access,
)


def test_a_delivery_failure_is_raised_by_flush_once(
    emitter: Emitter, producer: FakeProducer
) -> None:
    ids = [access(emitter) for _ in range(3)]
    producer.sent[0].future.success(None)
    producer.sent[1].future.failure(NotLeaderForPartitionError("leader moved"))
    producer.sent[2].future.success(None)

    with pytest.raises(EmitError) as error:
        emitter.flush()

    assert "1 message(s) not delivered" in str(error.value)
    assert ids[1] in str(error.value) and "NotLeaderForPartitionError" in str(error.value)
    assert [f.message for f in error.value.failures] == [f"event {ids[1]}"]
    emitter.flush()


def test_a_send_that_failed_before_the_errback_was_added_is_still_reported(
    producer: FakeProducer,
) -> None:
    class FailingProducer(FakeProducer):
        def send(self, *args: Any, **kwargs: Any) -> Future:
            return super().send(*args, **kwargs).failure(KafkaTimeoutError("no metadata"))

    emitter = Emitter("127.0.0.1:9", source=SOURCE, producer=FailingProducer())
    emitter.send_raw(b"k", b"{}")

    with pytest.raises(EmitError, match=r"raw message #1: KafkaTimeoutError"):
        emitter.flush()


def test_a_flush_timeout_is_an_emit_error(emitter: Emitter, producer: FakeProducer) -> None:
    access(emitter)
    producer.flush_error = KafkaTimeoutError("Timeout waiting for future")

    with pytest.raises(EmitError, match=r"undelivered after 2\.5 s"):
        emitter.flush(timeout=2.5)


def test_close_flushes_reports_failures_and_closes_the_producer(
    emitter: Emitter, producer: FakeProducer
) -> None:
    access(emitter)
    producer.sent[0].future.failure(NotLeaderForPartitionError())

    with pytest.raises(EmitError):
        emitter.close()

    assert producer.flushes == 1 and producer.closed
    with pytest.raises(EmitError, match="closed"):
        access(emitter)


def test_the_context_manager_closes_the_emitter(producer: FakeProducer) -> None:
    with Emitter("127.0.0.1:9", source=SOURCE, producer=producer) as emitter:
        access(emitter)

    assert producer.flushes == 1 and producer.closed


def test_producer_defaults_batch_and_wait_for_all_replicas(monkeypatch: pytest.MonkeyPatch) -> None:
    configs: list[dict[str, Any]] = []
    monkeypatch.setattr(events.producer, "KafkaProducer", lambda **config: configs.append(config))

    Emitter("broker:9092", source=SOURCE, linger_ms=50)

    [config] = configs
    assert config["bootstrap_servers"] == "broker:9092"
    assert config["acks"] == "all" and config["retries"] > 0
    assert config["linger_ms"] == 50 and config["batch_size"] >= 16384


@pytest.mark.parametrize(
    ("bootstrap", "config", "compression"),
    [
        ("127.0.0.1:9092", {}, None),
        ("localhost:9092,[::1]:9093", {}, None),
        ("broker:9092", {}, "lz4"),
        ("127.0.0.1:9092,broker:9092", {}, "lz4"),
        ("127.0.0.1:9092", {"compression_type": "gzip"}, "gzip"),
    ],
)
def test_batches_are_compressed_only_when_they_cross_a_network(
    monkeypatch: pytest.MonkeyPatch,
    bootstrap: str,
    config: dict[str, Any],
    compression: str | None,
) -> None:
    configs: list[dict[str, Any]] = []
    monkeypatch.setattr(events.producer, "KafkaProducer", lambda **config: configs.append(config))

    Emitter(bootstrap, source=SOURCE, **config)

    assert configs[0]["compression_type"] == compression


def test_keys_go_to_the_partitions_of_kafkas_default_murmur2_partitioner() -> None:
    class SixPartitions(ClusterMetadata):  # type: ignore[misc]
        def topics(self, exclude_internal_topics: bool = True) -> set[str]:
            return {"t"}

        def partitions_for_topic(self, topic: str) -> set[int]:
            return {0, 1, 2, 3, 4, 5}

        def available_partitions_for_topic(self, topic: str) -> set[int]:
            return {0, 1, 2, 3, 4, 5}

    cluster = SixPartitions()
    default, ours = DefaultPartitioner(), KeyHashPartitioner()
    keys = [f"subject-{n}".encode() for n in range(500)] + [SUBJECT.encode(), "🦄".encode()]

    for key in keys * 2:  # the second time from the remembered hash
        assert ours.partition("t", key, key, None, b"", cluster) == default.partition(
            "t", key, key, None, b"", cluster
        )


def test_no_broker_at_the_address_fails_within_seconds_naming_it() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{unused.getsockname()[1]}"  # bound, never listening
        started = time.monotonic()
        with pytest.raises(KafkaUnreachable) as error:
            Emitter(address, source=SOURCE)

    assert time.monotonic() - started < 2 * BOOTSTRAP_TIMEOUT_SECONDS
    assert isinstance(error.value, EmitError) and error.value.bootstrap == address
    assert str(error.value) == (
        f"cannot reach Kafka at {address}: no broker answered within 3 s (is the address right?)"
    )


@pytest.mark.parametrize("setting", ["partitioner", "key_serializer", "value_serializer"])
def test_settings_the_contract_depends_on_cannot_be_overridden(
    producer: FakeProducer, setting: str
) -> None:
    config: dict[str, Any] = {setting: object()}
    with pytest.raises(ValueError, match=setting):
        Emitter("127.0.0.1:9", source=SOURCE, producer=producer, **config)


def test_sends_retry_until_a_delivery_timeout_of_120_s_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configs: list[dict[str, Any]] = []
    monkeypatch.setattr(events.producer, "KafkaProducer", lambda **config: configs.append(config))

    Emitter("broker:9092", source=SOURCE)
    Emitter("broker:9092", source=SOURCE, delivery_timeout=45)

    default, shorter = configs
    assert default["delivery_timeout_ms"] == 120_000 and shorter["delivery_timeout_ms"] == 45_000
    for config in configs:
        # Bounded by the delivery timeout, not by a count that a 30 s outage would exhaust.
        assert config["retries"] >= 2**31 - 1
        assert config["request_timeout_ms"] + config["linger_ms"] <= config["delivery_timeout_ms"]
        assert 0 < config["retry_backoff_ms"] <= 1000
        assert config["reconnect_backoff_max_ms"] <= 1000
        assert config["enable_idempotence"] is True


@pytest.mark.parametrize("timeout", [30.02, 120])
def test_kafka_python_accepts_the_timeouts(monkeypatch: pytest.MonkeyPatch, timeout: float) -> None:
    configs: list[dict[str, Any]] = []
    monkeypatch.setattr(events.producer, "KafkaProducer", lambda **config: configs.append(config))
    Emitter("broker:9092", source=SOURCE, delivery_timeout=timeout)
    [config] = configs
    # The check kafka-python's producer runs on these settings, without a broker.
    RecordAccumulator(**{k: v for k, v in config.items() if k in RecordAccumulator.DEFAULT_CONFIG})


@pytest.mark.parametrize("timeout", [0, 5, 30])
def test_a_delivery_timeout_shorter_than_a_request_is_refused(
    producer: FakeProducer, timeout: float
) -> None:
    with pytest.raises(ValueError, match="delivery_timeout"):
        Emitter("127.0.0.1:9", source=SOURCE, producer=producer, delivery_timeout=timeout)


def test_a_delivery_timeout_is_kept(producer: FakeProducer) -> None:
    emitter = Emitter("127.0.0.1:9", source=SOURCE, producer=producer, delivery_timeout=60)
    assert emitter.delivery_timeout == 60
