"""AuditBatch messages read straight into columns store exactly what the model path stores."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from events.outputs import AuditBatch
from sinks.clickhouse.audit_columns import audit_columns, audit_columns_of, records_columns
from tests.unit.chdb_store import T0, audit


def worker_message(**first_record: object) -> bytes:
    """A batch as the worker writes it, its first record with `first_record` changed."""
    records = [
        audit("e1", details={"status": "granted"}),
        audit("e2", event_type="privacy.data.accessed", recipient_id=None, encrypted=None),
        audit("e3", event_time=T0 + timedelta(microseconds=123456), data_categories=[]),
    ]
    message = json.loads(AuditBatch(records=records).model_dump_json())
    message["records"][0].update(first_record)
    return json.dumps(message).encode()


def by_model(value: bytes) -> Any:
    return records_columns(AuditBatch.model_validate_json(value).records)


def test_a_worker_batch_reads_into_the_columns_the_model_path_builds() -> None:
    value = worker_message()

    columns = audit_columns(value)

    assert columns is not None
    assert columns.equals(by_model(value))
    assert columns.column("details").to_pylist()[0] == [("status", "granted")]


@pytest.mark.parametrize(
    "changes",
    [
        {"event_time": "2025-01-01T02:00:00.5+02:00"},
        {"unknown_field": 1},
        {"details": {}},
    ],
)
def test_forms_the_model_accepts_read_into_the_same_values(changes: dict[str, object]) -> None:
    value = worker_message(**changes)

    columns = audit_columns(value)

    assert columns is not None
    assert columns.equals(by_model(value))


@pytest.mark.parametrize(
    "changes",
    [
        {"data_categories": None},  # the model rejects null for a list
        {"violated_rules": ["a", None]},
        {"event_id": 5},  # the model rejects a number for a string
        {"org": None},
        {"partition": "3"},  # the model coerces it: its values are the ones stored
        {"details": {"count": 1}},
        {"event_time": 1735689600},
    ],
)
def test_a_message_out_of_the_worker_form_is_left_to_the_model(
    changes: dict[str, object],
) -> None:
    assert audit_columns(worker_message(**changes)) is None


def test_what_is_not_one_batch_is_left_to_the_model() -> None:
    value = worker_message()

    assert audit_columns(value + b"\n" + value) is None
    assert audit_columns(b'{"records": null}') is None
    assert audit_columns(b"not json") is None


def test_a_poll_of_worker_batches_reads_into_each_message_s_own_columns() -> None:
    values = [worker_message(), worker_message(details={}), worker_message(event_id="e9")]

    columns = audit_columns_of(values)

    assert all(
        c is not None and c.equals(by_model(v)) for c, v in zip(columns, values, strict=True)
    )


@pytest.mark.parametrize(
    "other",
    [
        worker_message(data_categories=None),  # the model's to reject
        b"not json",
        b"",
        b'{"records": null}',
    ],
)
def test_a_message_out_of_the_worker_form_leaves_the_others_of_its_poll_read(
    other: bytes,
) -> None:
    values = [worker_message(), other, worker_message(event_id="e9")]

    columns = audit_columns_of(values)

    assert columns[1] is None
    for column, value in zip(columns[::2], values[::2], strict=True):
        assert column is not None
        assert column.equals(by_model(value))


def test_a_batch_over_several_lines_is_read_alone_into_its_own_columns() -> None:
    over_lines = worker_message().replace(b", ", b",\n")
    values = [worker_message(event_id="e9"), over_lines]

    columns = audit_columns_of(values)

    assert all(
        c is not None and c.equals(by_model(v)) for c, v in zip(columns, values, strict=True)
    )
