"""AuditBatch messages straight to Arrow columns, without a model per record.

Validating each record into an `AuditRecord` and then converting the models to Arrow cost more
than the whole insert (bench/README.md, store.py). The worker writes its batches in one regular
form (`AuditBatch.model_dump_json`): Arrow's JSON reader parses that form in C, against the
table's own column types, into the columns the store inserts.

The fast path only takes what the model would accept with the same values: a message it is not
sure of (a JSON null where a list is expected, a number in a string field, a missing required
field, anything Arrow cannot read) yields None, and the caller validates it with the model,
which either accepts it or rejects it with the reason.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from itertools import accumulate
from typing import Any, Final

import orjson
import pyarrow as pa
import pyarrow.json as pa_json

from events.outputs import AuditRecord
from sinks.clickhouse.arrow import arrow_rows, arrow_schema
from sinks.clickhouse.schema import EVENTS

# `details` is a JSON object of strings: Arrow's JSON reader has no map type, so it is read on
# the side (only when some record has details).
_DETAILS: Final = "details"
_MODEL_FIELDS: Final = AuditRecord.model_fields
# Columns whose field has no default: a null there is a record the model rejects.
_REQUIRED: Final = tuple(n for n in EVENTS.column_names if _MODEL_FIELDS[n].is_required())
# List columns: null (or a null item) where the model wants a list of strings.
_LISTS: Final = ("data_categories", "violated_rules")

AUDIT_COLUMNS: Final = pa.schema(list(arrow_schema(EVENTS))[: len(EVENTS.columns)])
_READ_SCHEMA: Final = pa.schema(
    [("records", pa.list_(pa.struct([f for f in AUDIT_COLUMNS if f.name != _DETAILS])))]
)
_PARSE: Final = pa_json.ParseOptions(
    explicit_schema=_READ_SCHEMA, unexpected_field_behavior="ignore", newlines_in_values=False
)
# One thread: on a small machine the store's inserts need the other cores more than the reader.
_READ: Final = pa_json.ReadOptions(use_threads=False, block_size=1 << 24)
_EMPTY_DETAILS: Final = b'"details":{}'
_ANY_DETAILS: Final = b'"details":'


def audit_columns(value: bytes) -> pa.Table | None:
    """The records of an AuditBatch message as columns of `AUDIT_COLUMNS`, or None when the
    message must be validated record by record."""
    read = _columns([value])
    return None if read is None else read[0]


def audit_columns_of(values: Sequence[bytes]) -> list[pa.Table | None]:
    """`audit_columns` of each message, all read in one pass of Arrow's JSON reader when every
    one takes the fast path (a call per 500-record message cost a third more per record);
    else message by message, so a message in another form costs no other its fast path."""
    if len(values) > 1 and not any(b"\n" in value for value in values):
        together = _columns(values)
        if together is not None:
            records, sizes = together
            starts = accumulate(sizes, initial=0)
            return [records.slice(start, size) for start, size in zip(starts, sizes, strict=False)]
    return [audit_columns(value) for value in values]


def records_columns(records: Sequence[AuditRecord]) -> pa.Table:
    """Validated records as columns of `AUDIT_COLUMNS` (the path for any other message)."""
    return arrow_rows(EVENTS, records, [])


def audit_column_values(records: pa.Table) -> Iterator[dict[str, Any]]:
    """Each record of `AUDIT_COLUMNS` as its column values, `details` a dict as the model
    holds it (Arrow gives a map as a list of pairs): what the integrity chain digests."""
    for values in records.to_pylist():
        values[_DETAILS] = dict(values[_DETAILS] or ())
        yield values


def _columns(values: Sequence[bytes]) -> tuple[pa.Table, list[int]] | None:
    """The records of every message in `values` as one table, and how many each message holds;
    None when any message must be validated record by record. One message per line: the
    worker's JSON has no raw newline."""
    try:
        read = pa_json.read_json(
            io.BytesIO(b"\n".join(values)), read_options=_READ, parse_options=_PARSE
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    if read.num_rows != len(values) or read.column("records").null_count:
        return None
    batch = read.column("records").combine_chunks()
    records = pa.Table.from_struct_array(batch.flatten())
    if not _complete(records):
        return None
    details = _details(values, records.num_rows)
    if details is None:
        return None
    columns = [
        details if name == _DETAILS else records.column(name) for name in AUDIT_COLUMNS.names
    ]
    return pa.Table.from_arrays(columns, schema=AUDIT_COLUMNS), batch.value_lengths().to_pylist()


def _complete(records: pa.Table) -> bool:
    """No null where the model has no default, nor in a list of strings."""
    if any(records.column(name).null_count for name in _REQUIRED):
        return False
    for name in _LISTS:
        column = records.column(name).combine_chunks()
        if column.null_count or column.flatten().null_count:
            return False
    return True


def _details(values: Sequence[bytes], rows: int) -> pa.Array | None:
    """The `details` column: all empty when every record says so, else read with orjson."""
    given = sum(value.count(_ANY_DETAILS) for value in values)
    if given == rows == sum(value.count(_EMPTY_DETAILS) for value in values):
        return _empty_maps(rows)
    try:
        found = [
            record.get(_DETAILS, {})
            for value in values
            for record in orjson.loads(value)["records"]
        ]
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None
    if len(found) != rows or not all(_string_map(item) for item in found):
        return None
    return pa.array([list(item.items()) for item in found], AUDIT_COLUMNS.field(_DETAILS).type)


def _empty_maps(rows: int) -> pa.Array:
    # Built from offsets, in C: a list of empty lists cost a tenth of the whole decoding.
    offsets = pa.repeat(pa.scalar(0, pa.int32()), rows + 1)
    empty = pa.array([], pa.string())
    return pa.MapArray.from_arrays(offsets, empty, empty, type=AUDIT_COLUMNS.field(_DETAILS).type)


def _string_map(item: object) -> bool:
    return isinstance(item, dict) and all(isinstance(v, str) for v in item.values())
