"""The emitter SDK with a fake producer: wire bytes, validation before sending, delivery errors."""

from __future__ import annotations

import inspect
import json
import logging
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.cluster import ClusterMetadata
from kafka.errors import KafkaTimeoutError, NotLeaderForPartitionError
from kafka.future import Future
from kafka.partitioner import DefaultPartitioner
from kafka.producer.record_accumulator import RecordAccumulator

import events.producer
from events.emitter import EmitError, Emitter, KafkaUnreachable, build_event, encode_event
from events.models import DataSharedEvent, EventType
from events.producer import BOOTSTRAP_TIMEOUT_SECONDS, KeyHashPartitioner
from events.taxonomy import Taxonomy
from events.validation import parse_event

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


def test_an_access_goes_out_as_a_structured_cloudevent_keyed_by_subject(
    emitter: Emitter, producer: FakeProducer
) -> None:
    event_id = access(emitter, time=T0)

    [message] = producer.sent
    assert message.topic == "privacy.events"
    assert message.key == SUBJECT.encode()
    assert message.headers == CONTENT_TYPE_HEADER
    body = json.loads(message.value.decode("utf-8"))
    assert body == {
        "specversion": "1.0",
        "id": event_id,
        "source": SOURCE,
        "type": "privacy.data.accessed",
        "time": "2026-03-01T12:30:00Z",
        "datacontenttype": "application/json",
        "data": {
            "org": "linkxup",
            "subject": {"id": SUBJECT, "kind": "customer"},
            "actor": {"kind": "service", "id": "ads-ranker"},
            "data_categories": ["user.behavior.browsing_history"],
            "data_use": "marketing.advertising.first_party.targeted",
            "legal_basis": "consent",
        },
    }
    assert parse_event(message.value, TAXONOMIES).id == event_id


def test_ids_are_fresh_uuids_and_time_defaults_to_now(
    emitter: Emitter, producer: FakeProducer
) -> None:
    before = datetime.now(UTC)
    first, second = access(emitter), access(emitter)

    assert first != second and len(first) == 36
    sent_at = parse_event(producer.sent[0].value, TAXONOMIES).time
    assert before <= sent_at <= datetime.now(UTC)


def test_a_given_event_id_is_kept_so_a_retry_is_the_same_event(
    emitter: Emitter, producer: FakeProducer
) -> None:
    assert access(emitter, event_id="order-7-access") == "order-7-access"
    assert json.loads(producer.sent[0].value)["id"] == "order-7-access"


def test_a_share_carries_recipient_transfer_and_flags(
    emitter: Emitter, producer: FakeProducer
) -> None:
    emitter.shared(
        "linkxup",
        SUBJECT,
        "customer",
        "service",
        "directory-sync",
        ["user.name"],
        "essential.service.operations",
        recipient_id="linkxup-europe-sas",
        recipient_kind="affiliate",
        recipient_country="FR",
        encrypted=True,
        safeguard="standard_contractual_clauses",
        aggregated=True,
        legal_basis="contract",
    )

    event = parse_event(producer.sent[0].value, TAXONOMIES)
    assert isinstance(event, DataSharedEvent)
    assert event.data.recipient.model_dump() == {
        "id": "linkxup-europe-sas",
        "kind": "affiliate",
        "country": "FR",
    }
    assert event.data.transfer.model_dump() == {
        "encrypted": True,
        "safeguard": "standard_contractual_clauses",
    }
    assert (event.data.aggregated, event.data.explicit_consent) == (True, False)


@pytest.mark.parametrize(
    ("helper", "arguments", "event_type", "data"),
    [
        (
            "consent_changed",
            {"data_use": "personalize", "status": "objected"},
            "privacy.consent.changed",
            {"data_use": "personalize", "status": "objected"},
        ),
        (
            "settings_changed",
            {"profile_visible": False, "public_categories": ["user.name"]},
            "privacy.settings.changed",
            {"settings": {"profile_visible": False, "public_categories": ["user.name"]}},
        ),
        ("account_changed", {"status": "closed"}, "privacy.account.changed", {"status": "closed"}),
        (
            "request_opened",
            {"request_id": "dsr-1", "right": "erasure"},
            "privacy.request.opened",
            {"request_id": "dsr-1", "right": "erasure"},
        ),
        (
            "request_fulfilled",
            {"request_id": "dsr-1", "right": "erasure"},
            "privacy.request.fulfilled",
            {"request_id": "dsr-1", "right": "erasure"},
        ),
        (
            "legal_hold_changed",
            {"status": "placed", "reason": "billing dispute"},
            "privacy.legal_hold.changed",
            {"status": "placed", "reason": "billing dispute"},
        ),
    ],
)
def test_each_state_change_helper_sends_its_contract_type(
    emitter: Emitter,
    producer: FakeProducer,
    helper: str,
    arguments: dict[str, Any],
    event_type: str,
    data: dict[str, Any],
) -> None:
    getattr(emitter, helper)("linkxup", SUBJECT, "customer", **arguments)

    body = json.loads(producer.sent[0].value)
    assert body["type"] == event_type
    assert body["data"] == {
        "org": "linkxup",
        "subject": {"id": SUBJECT, "kind": "customer"},
        **data,
    }
    assert parse_event(producer.sent[0].value, TAXONOMIES).type == event_type


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"actor_kind": "robot"}, "data.actor.kind"),
        ({"data_categories": []}, "data.data_categories"),
        ({"legal_basis": "because"}, "data.legal_basis"),
        ({"subject_id": ""}, "data.subject.id"),
        ({"time": datetime(2026, 3, 1, 12, 30)}, "time"),
        # The worker would reject it: more than a day ahead of the clock.
        ({"time": datetime.now(UTC) + timedelta(days=2)}, "time"),
        ({"time": datetime(1969, 12, 31, 23, 59, tzinfo=UTC)}, "time"),
        ({"actor_id": "ads\u202eranker"}, "data.actor.id"),
    ],
)
def test_an_invalid_event_is_refused_before_anything_is_sent(
    emitter: Emitter, producer: FakeProducer, overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(EmitError) as error:
        access(emitter, **overrides)

    assert error.value.field == field
    assert str(error.value).startswith(f"{field}: ")
    assert producer.sent == []


def test_a_bad_recipient_country_is_named(emitter: Emitter, producer: FakeProducer) -> None:
    with pytest.raises(EmitError, match=r"^data\.recipient\.country: .*'XX'"):
        emitter.shared(
            "linkxup",
            SUBJECT,
            "customer",
            "service",
            "billing",
            ["user.name"],
            "essential.service.payment_processing",
            recipient_id="payzone-ma",
            recipient_kind="service_provider",
            recipient_country="XX",
            encrypted=True,
        )
    assert producer.sent == []


def test_a_settings_change_without_any_setting_is_refused(
    emitter: Emitter, producer: FakeProducer
) -> None:
    with pytest.raises(EmitError, match=r"^data\.settings: no setting given"):
        emitter.settings_changed("linkxup", SUBJECT, "customer")
    assert producer.sent == []


def cloudevent(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "/connectx/payments",
        "type": "privacy.account.changed",
        "time": "2026-03-01T12:30:00+04:00",
        "data": {
            "org": "connectx",
            "subject": {"id": SUBJECT, "kind": "customer"},
            "status": "active",
        },
    }
    event.update(changes)
    return {k: v for k, v in event.items() if v is not None}


def test_a_dict_is_validated_then_sent_as_given(emitter: Emitter, producer: FakeProducer) -> None:
    raw = cloudevent(traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")

    assert emitter.emit(raw) == "evt-1"

    [message] = producer.sent
    assert json.loads(message.value) == raw
    assert message.key == SUBJECT.encode()
    assert message.headers == CONTENT_TYPE_HEADER


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"source": None}, "source", "missing required field"),
        ({"type": "privacy.data.deleted"}, "type", "unknown event type"),
        ({"type": None}, "type", "missing required attribute"),
        ({"time": "yesterday"}, "time", ""),
        ({"data": {"org": "connectx", "status": "active"}}, "data.subject", "missing"),
    ],
)
def test_an_invalid_dict_is_refused_naming_the_field(
    emitter: Emitter, producer: FakeProducer, changes: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(EmitError) as error:
        emitter.emit(cloudevent(**changes))

    assert error.value.field == field
    assert reason in str(error.value)
    assert producer.sent == []


def test_a_prebuilt_model_is_sent_as_its_json(emitter: Emitter, producer: FakeProducer) -> None:
    event = build_event(
        EventType.ACCOUNT_CHANGED,
        source="/xpertaize/accounts",
        data={
            "org": "xpertaize",
            "subject": {"id": SUBJECT, "kind": "job_applicant"},
            "status": "created",
        },
        time=T0,
    )

    assert emitter.emit(event) == event.id
    assert producer.sent[0].value == encode_event(event)
    assert producer.sent[0].key == SUBJECT.encode()


def test_send_raw_sends_bytes_verbatim_without_validation(
    emitter: Emitter, producer: FakeProducer
) -> None:
    emitter.send_raw(None, b'{"specversion": "1.0", "id": ')

    [message] = producer.sent
    assert (message.key, message.value) == (None, b'{"specversion": "1.0", "id": ')
    assert message.headers == CONTENT_TYPE_HEADER


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


def test_the_subject_id_stays_out_of_reprs_and_errors(emitter: Emitter) -> None:
    event = build_event(
        EventType.ACCOUNT_CHANGED,
        source=SOURCE,
        data={"org": "linkxup", "subject": {"id": SUBJECT, "kind": "customer"}, "status": "active"},
    )
    with pytest.raises(EmitError) as error:
        access(emitter, actor_kind="robot")

    for text in (repr(event), str(event), repr(emitter), str(error.value)):
        assert SUBJECT not in text


def test_kafka_python_debug_lines_with_keys_and_values_are_dropped(
    emitter: Emitter, caplog: pytest.LogCaptureFixture
) -> None:
    # The exact format kafka-python logs each record with; the filter matches on it.
    send_format = "%s: Sending (key=%r value=%r headers=%r) to %s"
    assert f'"{send_format}"' in inspect.getsource(KafkaProducer.send)
    kafka_log = logging.getLogger("kafka.producer.kafka")

    with caplog.at_level(logging.DEBUG, logger="kafka.producer.kafka"):
        kafka_log.debug(send_format, "producer", SUBJECT.encode(), b"{}", [], "privacy.events-0")
        kafka_log.debug("%s: Flushing accumulated records in producer.", "producer")

    assert SUBJECT not in caplog.text
    assert "Flushing accumulated records" in caplog.text


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
