"""The raw bytes of rejected inputs expire: they may hold subject ids in the clear.

A column TTL on `raw` and `key` of `rejected_events`: ClickHouse empties them (to '' and NULL)
when it merges a part past the TTL, and the rest of the row stays. The integrity chain commits to
those bytes apart from the row (sinks/integrity/canonical.py), so the row still verifies.
"""

from __future__ import annotations

from datetime import timedelta

from sinks.clickhouse.schema import REJECTED_EVENTS
from sinks.clickhouse.store import Store

_RAW_COLUMNS = (("raw", "String"), ("key", "Nullable(String)"))


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
