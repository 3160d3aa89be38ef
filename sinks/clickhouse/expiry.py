"""The raw bytes of rejected inputs expire: they may hold subject ids in the clear.

A column TTL on `raw` and `key` of `rejected_events`: ClickHouse empties them (to '' and NULL)
when it merges a part past the TTL, and the rest of the row stays. A subject's erasure empties
them the same way at once (sinks/erasure.py). The integrity chain commits to
those bytes apart from the row (sinks/integrity/canonical.py), so the row still verifies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import orjson

from sinks.clickhouse.schema import REJECTED_EVENTS
from sinks.clickhouse.store import Store

_RAW_COLUMNS = (("raw", "String"), ("key", "Nullable(String)"))
_LOOKUP_ID = re.compile(r"[0-9a-f]{32}")
# Lookup ids per statement: bounds the SQL when a store starts with many erasures to catch up.
_LOOKUPS_PER_STATEMENT = 5000


def expire_raw_bytes(store: Store, ttl: timedelta) -> None:
    """Set the TTL of the raw columns to `ttl` after `received_at`, unless already set so."""
    seconds = int(ttl.total_seconds())
    expression = f"toDateTime(received_at) + toIntervalSecond({seconds})"
    current = store.query_rows(
        "SELECT create_table_query AS ddl FROM system.tables "
        "WHERE database = {db:String} AND name = {t:String}",
        {"db": store.database, "t": REJECTED_EVENTS.name},
    )
    if current and current[0]["ddl"].count(f"TTL {expression}") == len(_RAW_COLUMNS):
        return
    table = f"{store.database}.{REJECTED_EVENTS.name}"
    for column, kind in _RAW_COLUMNS:
        store.command(f"ALTER TABLE {table} MODIFY COLUMN `{column}` {kind} TTL {expression}")


def erase_raw_bytes(store: Store, lookups: Sequence[str]) -> int:
    """Empty the raw columns and the lookup id of the rejected inputs naming these subjects (by
    lookup id); returns how many of them had any. Waits until the rows are rewritten."""
    bad = [lookup for lookup in lookups if not _LOOKUP_ID.fullmatch(lookup)]
    if bad:
        raise ValueError(f"not a subject lookup id: {bad[0]!r}")
    table = f"{store.database}.{REJECTED_EVENTS.name}"
    found = 0
    for start in range(0, len(lookups), _LOOKUPS_PER_STATEMENT):
        chunk = ", ".join(
            f"'{lookup}'" for lookup in lookups[start : start + _LOOKUPS_PER_STATEMENT]
        )
        # Most erased subjects have no rejected input: only a match costs a mutation.
        stored = store.query_rows(
            f"SELECT DISTINCT subject_lookup AS lookup FROM {table} "
            f"WHERE subject_lookup IN ({chunk})",
            {},
        )
        if not stored:
            continue
        found += len(stored)
        matched = ", ".join(f"'{row['lookup']}'" for row in stored)
        store.command(
            f"ALTER TABLE {table} UPDATE raw = '', key = NULL, subject_lookup = '' "
            f"WHERE subject_lookup IN ({matched}) SETTINGS mutations_sync = 1"
        )
    return found


def unmarked_raw_bytes(store: Store) -> list[dict[str, Any]]:
    """Rejected inputs with raw bytes or a key but no lookup id: stored before the column was,
    or naming no subject that could be read."""
    return store.query_rows(
        f"SELECT rejection_id, raw, key FROM {store.database}.{REJECTED_EVENTS.name} "
        "WHERE subject_lookup = '' AND (raw != '' OR key IS NOT NULL)",
        {},
        dict.fromkeys(REJECTED_EVENTS.bytes_columns, "bytes"),
    )


def mark_subjects(store: Store, lookups: Mapping[str, str]) -> None:
    """Set the lookup ids of these rejected inputs (rejection id -> lookup id)."""
    table = f"{store.database}.{REJECTED_EVENTS.name}"
    marked = sorted(lookups.items())
    for start in range(0, len(marked), _LOOKUPS_PER_STATEMENT):
        chunk = marked[start : start + _LOOKUPS_PER_STATEMENT]
        ids, values = _strings([id_ for id_, _ in chunk]), _strings([v for _, v in chunk])
        store.command(
            f"ALTER TABLE {table} UPDATE subject_lookup = "
            f"transform(rejection_id, {ids}, {values}, subject_lookup) "
            f"WHERE has({ids}, rejection_id) SETTINGS mutations_sync = 1"
        )


def _strings(values: list[str]) -> str:
    # Hex-encoded JSON: no value (a rejection id holds a topic name from a header) breaks out.
    return f"JSONExtract(unhex('{orjson.dumps(values).hex()}'), 'Array(String)')"
