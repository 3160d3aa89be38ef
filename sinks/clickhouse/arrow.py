"""Rows as Arrow tables for `INSERT ... FORMAT Arrow`.

pyarrow converts the rows in C, where clickhouse-connect's Native insert encodes every value in
Python: for 100,000 audit records the Arrow insert took less than half the time. ClickHouse casts
each Arrow column to its table column (strings to LowCardinality and Enum, UTC timestamps to
DateTime64), so the Arrow types only need to carry the values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache

import pyarrow as pa
from pydantic import BaseModel

from sinks.clickhouse.schema import Table

_WRAPPER = re.compile(r"^(?:LowCardinality|Nullable)\((.*)\)$")
_SCALARS = {
    "String": pa.string(),
    "Bool": pa.bool_(),
    "Int8": pa.int8(),
    "UInt8": pa.uint8(),
    "Int32": pa.int32(),
    "Int64": pa.int64(),
}


def arrow_type(kind: str, binary: bool = False) -> pa.DataType:
    """The Arrow type carrying values of a ClickHouse column type (its DEFAULT clause aside).

    `binary`: the String column holds bytes, not text (kept exactly, UTF-8 or not).
    """
    kind = kind.split(" DEFAULT ", 1)[0].strip()
    while wrapped := _WRAPPER.match(kind):
        kind = wrapped.group(1)
    if kind.startswith("Array("):
        return pa.list_(arrow_type(kind[len("Array(") : -1]))
    if kind.startswith("Map("):
        return pa.map_(pa.string(), pa.string())
    if kind.startswith("DateTime64("):
        return pa.timestamp("us", tz="UTC")
    if kind.startswith("Enum8("):
        return pa.string()
    if kind == "String" and binary:
        return pa.binary()
    try:
        return _SCALARS[kind]
    except KeyError:
        raise ValueError(f"no Arrow type for ClickHouse type {kind!r}") from None


@cache
def arrow_schema(table: Table) -> pa.Schema:
    """The Arrow schema of what an insert into `table` writes (Table.inserted)."""
    return pa.schema(
        [(name, arrow_type(kind, name in table.bytes_columns)) for name, kind in table.inserted]
    )


def arrow_rows(
    table: Table, rows: Sequence[BaseModel], bookkeeping: Sequence[Sequence[int | str]]
) -> pa.Table:
    """`rows` and their bookkeeping columns as one Arrow table.

    Built from each model's field dict in one pass in C: three to four times faster at 20,000
    audit records than collecting the columns in Python first.
    """
    schema = arrow_schema(table)
    models = pa.Table.from_pylist(
        [row.__dict__ for row in rows], schema=pa.schema(list(schema)[: len(table.columns)])
    )
    for index, values in enumerate(bookkeeping, start=len(table.columns)):
        models = models.append_column(
            schema.field(index), pa.array(values, schema.field(index).type)
        )
    return models
