"""New events and their wire bytes (CloudEvents structured-mode JSON), built and validated for
the emitter: what a caller gives is checked against the wire models, what is made here is valid
by construction."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from events.event_ids import new_event_id
from events.limits import DEFAULT_MAX_AHEAD
from events.models import EventType, PrivacyEvent
from events.producer import EmitError
from events.validation import (
    InvalidEvent,
    check_encoded_shape,
    check_size,
    check_time,
    parse_structure,
    validate_data_json,
    validate_envelope,
    validate_json,
)


def build_event(
    event_type: EventType,
    *,
    source: str,
    data: Mapping[str, Any],
    event_id: str | None = None,
    time: datetime | None = None,
) -> PrivacyEvent:
    """A validated contract event; `id` defaults to a random UUID, `time` to now (UTC)."""
    _, _, value = new_event(
        event_type, source, _without_nulls(data), event_id, time, source_checked=False
    )
    return _checked(validate_json, value)


def validate_event(raw: bytes) -> PrivacyEvent:
    """The event in `raw` (CloudEvents JSON), checked against the wire models only.

    Taxonomy keys are not checked here: which keys exist depends on the org's policy, which the
    worker knows and the emitter does not. The time window is, on this machine's clock, so an
    event the worker would reject for its `time` is refused here already.
    """
    return _checked(parse_structure, raw)


def encode_event(event: PrivacyEvent) -> bytes:
    """The structured-mode CloudEvents JSON value of an event (UTF-8)."""
    return event.model_dump_json(exclude_none=True).encode()


def event_key(event: PrivacyEvent) -> bytes:
    """The Kafka message key of an event: its subject id."""
    return event.data.subject.id.get_secret_value().encode()


def check_source(source: str) -> None:
    """Refuse a `source` no event could carry, once, rather than every event it would send."""
    try:
        validate_envelope(
            {"specversion": "1.0", "id": "-", "source": source, "time": datetime.now(UTC)}
        )
    except InvalidEvent as error:
        raise ValueError(str(error)) from None


def new_event(
    event_type: EventType,
    source: str,
    data: Mapping[str, Any],
    event_id: str | None,
    time: datetime | None,
    *,
    source_checked: bool,
) -> tuple[str, bytes, bytes]:
    """A new event's id, key and wire bytes, validated. What the caller gave is checked: `data`
    against its type's model (from the bytes sent), a given id and time against the envelope.
    The rest is valid by construction: a new random id, the time now, the type, and a `source`
    the `Emitter` checked once (`source_checked`). Optional fields of `data` are left out
    rather than sent as null: `data` holds no None."""
    now = datetime.now(UTC)
    try:
        if event_id or time or not source_checked:
            given = {"specversion": "1.0", "id": event_id or "-", "source": source}
            check_time(validate_envelope({**given, "time": time or now}), now, DEFAULT_MAX_AHEAD)
        data_json = _to_json(data)
        subject_id = validate_data_json(event_type, data_json).subject.id.get_secret_value()
    except InvalidEvent as error:
        raise EmitError(error.reason, field=error.field or None) from None
    new_id = event_id or new_event_id()
    envelope = {
        "specversion": "1.0",
        "id": new_id,
        "source": source,
        "type": str(event_type),
        "time": time or now,
        "datacontenttype": "application/json",
        "data": orjson.Fragment(data_json),
    }
    value = _to_json(envelope)
    _checked_size(value)
    return new_id, subject_id.encode(), value


def encode_dict_event(event: Mapping[str, Any]) -> tuple[PrivacyEvent, bytes]:
    """A CloudEvent given as a dict, validated, and its wire bytes (the dict as given, so
    CloudEvents extension attributes survive)."""
    value = _to_json(event)
    return _checked(_parse_own_encoding, value), value


def _checked_size(value: bytes) -> None:
    try:
        check_size(value)
    except InvalidEvent as error:
        raise EmitError(error.reason) from None


def _parse_own_encoding(raw: bytes) -> PrivacyEvent:
    # Encoded here from a dict: unique keys and valid UTF-8 by construction, so only size and
    # nesting are left of the shape check.
    check_encoded_shape(raw)
    return validate_json(raw)


def _checked(parse: Callable[[bytes], PrivacyEvent], raw: bytes) -> PrivacyEvent:
    try:
        event = parse(raw)
        check_time(event, datetime.now(UTC), DEFAULT_MAX_AHEAD)
    except InvalidEvent as error:
        raise EmitError(error.reason, field=error.field or None) from None
    return event


def _to_json(envelope: Mapping[str, Any]) -> bytes:
    try:
        # UTC as `Z`, as the wire models write it.
        return orjson.dumps(envelope, option=orjson.OPT_UTC_Z)
    except orjson.JSONEncodeError as exc:
        raise EmitError(f"event is not JSON-serialisable ({exc})") from None


def present(document: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes that are not None (at the top level only)."""
    return {k: v for k, v in document.items() if v is not None}


def _without_nulls(document: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: _without_nulls(v) if isinstance(v, dict) else v
        for k, v in document.items()
        if v is not None
    }
