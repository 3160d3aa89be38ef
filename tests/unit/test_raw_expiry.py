"""Raw bytes of rejected inputs expire after `rejected_raw_ttl`, the rest of each row stays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sinks import Rejected
from sinks.clickhouse.expiry import expire_raw_bytes
from sinks.clickhouse.store import Store
from tests.unit.chdb_store import store_dsn


def rejected(offset: int, received_at: datetime) -> Rejected:
    return Rejected(
        rejection_id=Rejected.make_id("privacy.events", 0, offset),
        received_at=received_at,
        source_topic="privacy.events",
        source_partition=0,
        source_offset=offset,
        field="data",
        reason="Field required",
        raw=b'{"data": {"subject": {"id": "cand-0042"}}}',
        key=b"cand-0042",
    )


def test_raw_bytes_older_than_the_ttl_are_emptied_when_the_store_merges() -> None:
    store = Store.open(store_dsn())
    now = datetime.now(UTC)
    store.write_rejected([rejected(1, now - timedelta(days=31)), rejected(2, now)])

    expire_raw_bytes(store, timedelta(days=30))
    expire_raw_bytes(store, timedelta(days=30))  # already so: no second change
    store.command(f"OPTIMIZE TABLE {store.database}.rejected_events FINAL")

    rows = {row.source_offset: row for row in store.rejected()}
    assert (rows[1].raw, rows[1].key, rows[1].reason) == (b"", None, "Field required")
    assert (rows[2].raw, rows[2].key) == (rejected(2, now).raw, b"cand-0042")
    store.close()
