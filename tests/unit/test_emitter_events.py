"""What the emitter checks once or takes as valid by construction, and what it still checks on
every event: a bad source refused when the emitter is made, a given id or time checked, a dict's
nesting and size checked though its keys are unique by construction."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from events.emitter import EmitError, Emitter, build_event
from events.limits import MAX_EVENT_BYTES
from events.models import EventType
from tests.unit.test_emitter import SUBJECT, FakeProducer, access, cloudevent


def test_a_source_no_event_could_carry_is_refused_when_the_emitter_is_made(
    producer: FakeProducer,
) -> None:
    with pytest.raises(ValueError, match=r"^source: contains U\+000A"):
        Emitter("127.0.0.1:9", source="/linkxup/\nads", producer=producer)


def test_build_event_checks_the_source_it_is_given() -> None:
    with pytest.raises(EmitError) as error:
        build_event(
            EventType.ACCOUNT_CHANGED,
            source="x" * 2_000,
            data={
                "org": "linkxup",
                "subject": {"id": SUBJECT, "kind": "customer"},
                "status": "active",
            },
        )
    assert error.value.field == "source"


def test_a_given_event_id_is_checked(emitter: Emitter, producer: FakeProducer) -> None:
    with pytest.raises(EmitError) as error:
        access(emitter, event_id="order-7\u202e")
    assert error.value.field == "id"
    assert producer.sent == []


def test_a_given_time_is_sent_as_given(emitter: Emitter, producer: FakeProducer) -> None:
    when = datetime(2026, 3, 1, 12, 30, 0, 250_000, tzinfo=UTC)
    access(emitter, time=when)
    assert b'"time":"2026-03-01T12:30:00.250000Z"' in producer.sent[0].value


def test_a_dict_nested_too_deep_is_refused_naming_the_attribute(
    emitter: Emitter, producer: FakeProducer
) -> None:
    deep: object = "bottom"
    for _ in range(40):
        deep = {"level": deep}

    with pytest.raises(EmitError) as error:
        emitter.emit(cloudevent(tracestate=deep))

    assert error.value.field == "tracestate"
    assert "nested deeper than the limit" in str(error.value)
    assert producer.sent == []


def test_an_oversized_dict_is_refused(emitter: Emitter, producer: FakeProducer) -> None:
    with pytest.raises(EmitError, match="exceeds the limit"):
        emitter.emit(cloudevent(padding="x" * MAX_EVENT_BYTES))
    assert producer.sent == []
