"""The stable encoding of a stored row that the chain commits to.

A row is encoded from the columns its table stores for the row model (schema.Table.columns),
never from the store's own bookkeeping, which differs between copies of one row. The same
function encodes a row as the ingest loop writes it (a pydantic model) and as the store reads it
back (a dict of column values), so both give the same digest exactly when the stored values are
the written ones: times in UTC at the column's precision, maps by key, enums by name.

Bytes columns (the raw input and key of a rejected input) are not in the row digest: they are
committed to separately as a payload digest, so that removing them (a TTL, an erasure) leaves
the rest of the row verifiable.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from enum import Enum
from functools import cache
from operator import itemgetter
from typing import Any

import orjson
from pydantic import BaseModel

from sinks.clickhouse.schema import Table

_PRECISION = re.compile(r"DateTime64\((\d)")

Convert = Callable[[Any], Any]


def row_values(row: BaseModel | Mapping[str, Any]) -> Mapping[str, Any]:
    return row.__dict__ if isinstance(row, BaseModel) else row


def row_digest(table: Table, row: BaseModel | Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the row's canonical encoding, its bytes columns left out."""
    values = row_values(row)
    names, converted = _plan(table)
    plain = dict(zip(names, itemgetter(*names)(values), strict=True))
    for name, convert in converted:
        plain[name] = convert(plain[name])
    return _sha256(canonical_json(plain))


def payload_digest(table: Table, row: BaseModel | Mapping[str, Any]) -> str | None:
    """SHA-256 (hex) over the SHA-256 of each bytes column; None for a table without any."""
    if not table.bytes_columns:
        return None
    values = row_values(row)
    parts = {name: _bytes_digest(values[name]) for name in sorted(table.bytes_columns)}
    return _sha256(canonical_json(parts))


def payload_removed(table: Table, row: Mapping[str, Any]) -> bool:
    """Whether every bytes column of a stored row is empty: expired or erased, not edited."""
    return all(not row[name] for name in table.bytes_columns)


def canonical_json(value: Any) -> bytes:
    """Keys sorted, no spaces, UTF-8: one byte string per value."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _bytes_digest(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    data = value.encode() if isinstance(value, str) else value
    return _sha256(data)


@cache
def _plan(table: Table) -> tuple[tuple[str, ...], tuple[tuple[str, Convert], ...]]:
    """The digested columns, and how those that are not plain JSON as read become so: worked
    out once per table, as digesting runs for every stored row."""
    digested = [(name, kind) for name, kind in table.columns if name not in table.bytes_columns]
    converted = tuple(
        (name, convert) for name, kind in digested if (convert := _converter(kind)) is not None
    )
    return tuple(name for name, _ in digested), converted


def _converter(kind: str) -> Convert | None:
    precision = _PRECISION.search(kind)
    if precision:
        return _time_at(int(precision.group(1)))
    if kind.startswith("Map("):
        return _map
    if kind.startswith("Enum"):
        return _enum
    return None


def _enum(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _map(value: Mapping[str, Any]) -> list[list[str]]:
    return sorted([str(key), str(item)] for key, item in value.items())


def micros(moment: datetime) -> int:
    """Microseconds since the epoch (a naive time is taken as UTC, as the store does)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (aware - _EPOCH) // _MICROSECOND


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _time_at(precision: int) -> Convert:
    # The store keeps `precision` decimal places: the written value is cut to what reads back.
    step = int(10 ** (6 - precision))

    def plain(moment: datetime | None) -> int | None:
        if moment is None:
            return None
        value = micros(moment)
        return value - value % step

    return plain
