"""The emitter SDK with a fake producer: the wire bytes, validation before sending, and
what stays out of reprs and logs."""

from __future__ import annotations

import inspect
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaProducer

from events.emitter import EmitError, Emitter, build_event, encode_event
from events.models import DataSharedEvent, EventType
from events.validation import parse_event
from tests.unit.emitter_support import (
    CONTENT_TYPE_HEADER,
    SOURCE,
    SUBJECT,
    T0,
    TAXONOMIES,
    FakeProducer,
    access,
)


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
