"""Outputs built from judged events: an audit record built without validation is the record
validation would give."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from events.models import DataAccessed
from events.outputs import AuditRecord
from streams.verdicts import Origin, audit_record
from tests.unit.test_replay import EVERY_TYPE, SPARSE, parsed

JUDGED_AT = datetime(2026, 3, 1, 12, tzinfo=UTC)


def with_offset(document: dict[str, Any]) -> dict[str, Any]:
    return {**document, "time": "2026-01-01T11:00:00.250+02:00"}


@pytest.mark.parametrize(
    "document",
    [*EVERY_TYPE, *SPARSE, *(with_offset(d) for d in EVERY_TYPE[:2])],
    ids=lambda d: f"{d['id']}@{d['time']}",
)
def test_an_audit_record_is_what_validating_it_gives(document: dict[str, Any]) -> None:
    record = audit_record(parsed(document), Origin("pseudonym", 3, 17), ["R-1"], "v1", JUDGED_AT)
    validated = AuditRecord.model_validate(record.model_dump())

    assert record == validated
    assert {name: type(value) for name, value in record} == {
        name: type(value) for name, value in validated
    }
    assert record.model_dump_json() == validated.model_dump_json()
    assert record.event_type == document["type"]
    assert record.event_time == datetime.fromisoformat(document["time"])


def test_an_audit_record_does_not_share_the_lists_it_was_given() -> None:
    violated = ["R-1"]
    event = parsed(EVERY_TYPE[0])
    record = audit_record(event, Origin("pseudonym", 0, 0), violated, "v1", JUDGED_AT)
    violated.append("R-2")

    assert record.violated_rules == ["R-1"]
    assert record.data_categories is not event.data.categories


@pytest.mark.parametrize("document", [*EVERY_TYPE, *SPARSE], ids=lambda d: d["id"])
def test_an_audit_records_details_are_a_state_changes_own_fields(document: dict[str, Any]) -> None:
    event = parsed(document)
    record = audit_record(event, Origin("pseudonym", 0, 0), [], "v1", JUDGED_AT)
    own = event.data.model_dump(mode="json", exclude={"org", "subject"}, exclude_none=True)

    if isinstance(event.data, DataAccessed):
        assert record.details == {}
    else:
        assert list(record.details.items()) == [
            (name, value if isinstance(value, str) else json.dumps(value))
            for name, value in own.items()
        ]
