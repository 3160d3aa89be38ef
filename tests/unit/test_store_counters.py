"""The store's counters (stats(), latency()) against its rows read with FINAL: exact under
replays, retractions, late copies and ties, and filled for a store made before them."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

from events.outputs import Violation
from sinks.clickhouse.counters import COUNTERS
from sinks.clickhouse.schema import (
    EVENTS,
    LINEAGE_EDGES,
    REJECTED_EVENTS,
    VIOLATIONS,
)
from sinks.clickhouse.store import Store
from tests.unit.chdb_store import T0, audit, rejected, store_dsn, violation


def counted_with_final(store: Store) -> tuple[dict[str, int], list[tuple[str, str, int]]]:
    """What stats() must say, counted the slow way: every table read with FINAL."""
    db = store.database
    tables = {
        t.name: store._client.query(
            f"SELECT count() FROM {db}.{t.name} FINAL"
            + (" WHERE status = 'open'" if t is VIOLATIONS else "")
        ).result_rows[0][0]
        for t in (EVENTS, VIOLATIONS, LINEAGE_EDGES, REJECTED_EVENTS)
    }
    by_rule = store._client.query(
        f"SELECT org, rule_id, count() AS n FROM {db}.violations FINAL WHERE status = 'open' "
        "GROUP BY org, rule_id ORDER BY n DESC, org, rule_id"
    ).result_rows
    return tables, [tuple(row) for row in by_rule]


def test_a_replay_is_found_whatever_characters_its_ids_hold(store: Store) -> None:
    # The lookup before each insert writes the batch's ids into its SQL.
    ids = ["q'uote", "back\\slash", "{batch_ids}", "$ids$", "new\nline", "é€😀", "e1"]
    events = [audit(i, subject_pseudonym=f"p-{n}") for n, i in enumerate(ids)]
    violations = [violation(i) for i in ids]
    rejections = [rejected(i) for i in ids]
    for _ in range(2):
        store.write_audit(events)
        store.write_violations(violations)
        store.write_rejected(rejections)

    assert counted_by_stats(store) == counted_with_final(store)
    assert store.stats()["tables"] == {
        "events": len(ids),
        "violations": len(ids),
        "lineage_edges": 2 * len(ids),
        "rejected_events": len(ids),
    }


def counted_by_stats(store: Store) -> tuple[dict[str, int], list[tuple[str, str, int]]]:
    stats = store.stats()
    return stats["tables"], [
        (r["org"], r["rule_id"], r["count"]) for r in stats["violations_by_rule"]
    ]


def test_counters_match_final_under_replays_retractions_and_late_copies(store: Store) -> None:
    rng = random.Random(7)
    events = [
        audit(
            f"e{n}",
            subject_pseudonym=f"pseudo-{n % 5}",
            event_type=rng.choice(["privacy.data.shared", "privacy.data.accessed", "x.other"]),
            data_categories=rng.choice([["user.name"], ["user.name", "user.name", "user.x"], []]),
            event_time=T0 + timedelta(days=40 * (n % 3)),
        )
        for n in range(30)
    ]
    copies: list[Violation] = []
    for n in range(12):
        first = violation(f"v{n}", rule_id=rng.choice(["R1", "R2"]), org=rng.choice(["a", "b"]))
        # Each violation's history: opened, maybe retracted, maybe re-opened.
        for step in range(rng.randint(1, 3)):
            copies.append(
                first.model_copy(
                    update={
                        "status": "retracted" if step % 2 else "open",
                        "detected_at": first.detected_at + timedelta(minutes=step),
                    }
                )
            )
    for _ in range(25):
        # Batches replay earlier rows, repeat rows within a batch and bring old copies late.
        store.write_audit(rng.choices(events, k=rng.randint(1, 8)))
        store.write_violations(rng.choices(copies, k=rng.randint(1, 6)))
        store.write_rejected([rejected(f"r{rng.randint(0, 4)}") for _ in range(rng.randint(1, 3))])
        assert counted_by_stats(store) == counted_with_final(store)


def test_a_tie_on_detection_time_goes_to_the_copy_inserted_last(store: Store) -> None:
    opened = violation("v1")
    retracted = opened.model_copy(update={"status": "retracted"})
    store.write_violations([opened, retracted])
    assert counted_by_stats(store) == counted_with_final(store) == ({**_EMPTY, "violations": 0}, [])
    store.write_violations([opened])
    assert counted_by_stats(store) == counted_with_final(store)
    assert store.stats()["tables"]["violations"] == 1


_EMPTY = {"events": 0, "violations": 0, "lineage_edges": 0, "rejected_events": 0}


def test_latency_counts_each_event_once_and_since_is_exact(store: Store) -> None:
    store.write_audit([audit("e1", event_time=T0), audit("e2", event_time=T0)])
    between = datetime.now(UTC)
    time.sleep(0.01)
    store.write_audit([audit("e1", event_time=T0), audit("e3", event_time=T0)])

    assert store.latency()["events"] == 3
    later = store.latency(since=between)
    assert later["events"] == 1
    assert later["last_stored_at"] is not None and later["last_stored_at"] > between
    assert store.latency(since=datetime.now(UTC) + timedelta(hours=1))["events"] == 0


def test_pipeline_lag_runs_from_the_broker_append_not_from_the_event_time(store: Store) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=572)
    appended = datetime.now(UTC) - timedelta(seconds=2)
    store.write_audit(
        [
            audit("old", event_time=long_ago, appended_at=appended),
            audit("resent", event_time=long_ago),  # a copy re-sent from a window: no append time
        ]
    )
    store.write_audit([audit("old", event_time=long_ago, appended_at=appended)])

    latency = store.latency()
    assert latency["events"] == 2
    assert latency["p50_ms"] is not None and latency["p50_ms"] > timedelta(days=571) / MS
    assert latency["pipeline_events"] == 1, "each event once, and only with an append time"
    assert latency["pipeline_p50_ms"] is not None
    assert timedelta(seconds=2) / MS <= latency["pipeline_p50_ms"] < timedelta(days=1) / MS


MS = timedelta(milliseconds=1)


def test_a_store_made_before_the_counters_gets_them_filled_from_its_rows() -> None:
    dsn = store_dsn()
    first = Store.open(dsn)
    kept, withdrawn = violation("v-kept"), violation("v-withdrawn", rule_id="R2")
    first.write_audit([audit("e1"), audit("e2", event_type="privacy.data.accessed")])
    first.write_violations([kept, withdrawn])
    first.write_rejected([rejected("r1")])
    db = first.database
    for counter in COUNTERS:
        for view, _ in counter.views:
            first._client.command(f"DROP VIEW {db}.{view}")
        first._client.command(f"DROP TABLE {db}.{counter.name}")
    # Rows of an older store carry no bookkeeping: the columns' defaults.
    for table, column in (("events", "counted"), ("violations", "open_delta")):
        first._client.command(f"ALTER TABLE {db}.{table} DROP COLUMN {column}")
    first.close()

    again = Store.open(dsn)
    try:
        assert counted_by_stats(again) == counted_with_final(again)
        assert again.stats()["tables"] == {
            "events": 2,
            "violations": 2,
            "lineage_edges": 4,
            "rejected_events": 1,
        }
        assert again.latency()["events"] == 2
        # Replays of old rows add nothing; a retraction of an old violation takes it out.
        again.write_audit([audit("e1")])
        again.write_violations(
            [
                kept,
                withdrawn.model_copy(
                    update={
                        "status": "retracted",
                        "detected_at": withdrawn.detected_at + timedelta(minutes=1),
                    }
                ),
            ]
        )
        assert counted_by_stats(again) == counted_with_final(again)
        assert again.stats()["tables"]["violations"] == 1
    finally:
        again.close()
