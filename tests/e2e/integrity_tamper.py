"""Tamper with a stopped store the ways an attacker with SQL access would, and print (JSON)
which rows each change touched: `python -m tests.e2e.integrity_tamper DSN`.

Run in a process of its own: chDB opens one data directory per process.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

from sinks.clickhouse.store import Store

SYNC = " SETTINGS mutations_sync = 2"


def tamper(store: Store) -> dict[str, Any]:
    db = store.database

    def rows(sql: str) -> list[dict[str, Any]]:
        return store.query_rows(sql, {})

    # The newest rows: the last message of the audit chain chained last, rows and entries
    # alike (the worker may send a whole batch's records in one message, so that message can
    # be its chain's only one: the test sends two runs, and the other run's events remain).
    chain = rows(
        f"SELECT chain FROM {db}.integrity_chain FINAL WHERE table = 'events' "
        "ORDER BY chained_at DESC, chain LIMIT 1"
    )[0]["chain"]
    where = f"chain = '{chain}' AND `offset` = (SELECT max(`offset`) FROM {db}.integrity_chain "
    where += f"WHERE chain = '{chain}')"
    cut = sorted(
        {r["row_id"] for r in rows(f"SELECT row_id FROM {db}.integrity_chain WHERE {where}")}
    )
    store.command(f"ALTER TABLE {db}.events DELETE WHERE event_id IN ({_quoted(cut)})" + SYNC)
    store.command(f"ALTER TABLE {db}.integrity_chain DELETE WHERE {where}" + SYNC)
    # A whole month of events.
    month = rows(
        f"SELECT toYYYYMM(event_time) AS m, groupUniqArray(event_id) AS ids "
        f"FROM {db}.events FINAL GROUP BY m ORDER BY m LIMIT 1"
    )[0]
    store.command(f"ALTER TABLE {db}.events DROP PARTITION {month['m']}")
    # One event edited, and one forged.
    edited = _first(rows, db, "events", "event_id")
    store.command(
        f"ALTER TABLE {db}.events UPDATE recipient_country = 'ZZ' WHERE event_id = '{edited}'"
        + SYNC
    )
    store.command(
        f"INSERT INTO {db}.events (event_id, event_type, source, org, event_time, judged_at, "
        "subject_pseudonym, subject_kind, policy_version, `partition`, `offset`) VALUES "
        "('forged-event', 'privacy.data.accessed', '/forged', 'linkxup', now64(6), now64(6), "
        "'forged-subject', 'customer', '2025.1', 0, 0)"
    )
    assert rows(f"SELECT count() AS n FROM {db}.events WHERE event_id = 'forged-event'")[0]["n"]
    # A violation and a rejected input deleted.
    violation = _first(rows, db, "violations", "violation_id")
    store.command(f"ALTER TABLE {db}.violations DELETE WHERE violation_id = '{violation}'" + SYNC)
    rejected = _first(rows, db, "rejected_events", "rejection_id")
    store.command(
        f"ALTER TABLE {db}.rejected_events DELETE WHERE rejection_id = '{rejected}'" + SYNC
    )
    return {
        "truncated": cut,
        "dropped": sorted(month["ids"]),
        "edited": edited,
        "violation": violation,
        "rejected": rejected,
    }


def _first(rows: Any, db: str, table: str, column: str) -> str:
    found: list[dict[str, Any]] = rows(
        f"SELECT {column} FROM {db}.{table} FINAL ORDER BY {column} LIMIT 1"
    )
    return str(found[0][column])


def _quoted(ids: Iterable[str]) -> str:
    return ", ".join(f"'{i}'" for i in ids)


if __name__ == "__main__":
    opened = Store.open(sys.argv[1])
    try:
        print(json.dumps(tamper(opened)))
    finally:
        opened.close()
