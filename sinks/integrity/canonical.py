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
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel

from sinks.clickhouse.schema import Table

_PRECISION = re.compile(r"DateTime64\((\d)")


def row_values(row: BaseModel | Mapping[str, Any]) -> Mapping[str, Any]:
    return row.__dict__ if isinstance(row, BaseModel) else row


def row_digest(table: Table, row: BaseModel | Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the row's canonical encoding, its bytes columns left out."""
    values = row_values(row)
    plain = {
        name: _plain(values[name], _precision(kind))
        for name, kind in table.columns
        if name not in table.bytes_columns
    }
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
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _bytes_digest(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    data = value.encode() if isinstance(value, str) else value
    return _sha256(data)


def _precision(kind: str) -> int | None:
    match = _PRECISION.search(kind)
    return int(match.group(1)) if match else None


def _plain(value: Any, precision: int | None) -> Any:
    if isinstance(value, datetime):
        return _time(value, precision if precision is not None else 6)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return sorted([str(key), _plain(item, None)] for key, item in value.items())
    if isinstance(value, list | tuple):
        return [_plain(item, precision) for item in value]
    return value


def _time(moment: datetime, precision: int) -> str:
    # The store keeps `precision` decimal places: the written value is cut to what reads back.
    utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    step = 10 ** (6 - precision)
    micros = utc.microsecond - utc.microsecond % step
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{micros:06d}Z"
