from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from events.outputs import AuditRecord, Violation
from sinks import LineageEdge, Rejected
from sinks.clickhouse.counters import COUNTERS
from sinks.clickhouse.dsn import StoreError, redact, split_database
from sinks.clickhouse.schema import (
    EVENTS,
    LINEAGE_EDGES,
    REJECTED_EVENTS,
    SUBJECT_VIOLATIONS,
    SUBJECT_VIOLATIONS_VIEW,
    VIOLATIONS,
)
from sinks.clickhouse.store import Store
from tests.unit.chdb_store import T0, audit, store_dsn, violation


@pytest.fixture
def store() -> Iterator[Store]:
    opened = Store.open(store_dsn())
    yield opened
    opened.close()


def rejected(rejection_id: str, **fields: object) -> Rejected:
    values: dict[str, object] = {
        "rejection_id": rejection_id,
        "received_at": T0,
        "source_topic": "privacy.events",
        "source_partition": 1,
        "source_offset": 3,
        "field": "data.recipient.country",
        "reason": "'XX' is not an ISO 3166-1 alpha-2 country code",
        "raw": b'{"id": "e9"}',
        "key": b"subject-9",
    }
    values.update(fields)
    return Rejected.model_validate(values)


def test_tables_have_a_column_for_every_field_of_their_row_model() -> None:
    assert EVENTS.column_names == list(AuditRecord.model_fields)
    assert VIOLATIONS.column_names == list(Violation.model_fields)
    assert REJECTED_EVENTS.column_names == list(Rejected.model_fields)
    assert LINEAGE_EDGES.column_names == list(LineageEdge.model_fields)


def test_a_duplicated_event_is_stored_once(store: Store) -> None:
    record = audit("e1")
    store.write_audit([record, record])
    store.write_audit([record])  # a replay, in a later batch

    assert store.stats()["tables"]["events"] == 1
    edges = store.lineage("linkxup", "pseudo-1")
    assert [(e.event_id, e.data_category) for e in edges] == [
        ("e1", "user.contact.email"),
        ("e1", "user.name"),
    ]


def test_lineage_edges_are_derived_for_accesses_and_shares_only(store: Store) -> None:
    store.write_audit(
        [
            audit("share", event_time=T0 + timedelta(minutes=2), data_categories=["user.name"]),
            audit(
                "access",
                event_type="privacy.data.accessed",
                event_time=T0 + timedelta(minutes=1),
                data_categories=["user.contact.email"],
                recipient_id=None,
                recipient_kind=None,
                recipient_country=None,
            ),
            audit(
                "objection",
                event_type="privacy.consent.changed",
                data_categories=["user.name"],
                actor_kind=None,
                actor_id=None,
                details={"status": "objected"},
            ),
            audit("other-subject", subject_pseudonym="pseudo-2"),
        ]
    )

    edges = store.lineage("linkxup", "pseudo-1")

    assert [(e.event_id, e.action, e.data_category) for e in edges] == [
        ("access", "accessed", "user.contact.email"),
        ("share", "shared", "user.name"),
    ]
    share = edges[1]
    assert (share.recipient_kind, share.recipient_id, share.recipient_country) == (
        "ad_network",
        "adnet-42",
        "FR",
    )
    assert share.event_time == T0 + timedelta(minutes=2)
    assert share.event_time.tzinfo is not None
    assert store.lineage("connectx", "pseudo-1") == []


def test_violations_are_stored_once_and_returned_newest_first(store: Store) -> None:
    old = violation("v-old", occurred_at=T0)
    new = violation("v-new", occurred_at=T0 + timedelta(hours=1))
    store.write_violations([old, new, old])

    assert store.violations() == [new, old]
    assert store.violations(limit=1) == [new]


def test_a_retracted_violation_no_longer_counts_but_stays_on_record(store: Store) -> None:
    kept, withdrawn = violation("v-kept"), violation("v-withdrawn")
    store.write_violations([kept, withdrawn])
    retraction = withdrawn.model_copy(
        update={"status": "retracted", "detected_at": withdrawn.detected_at + timedelta(minutes=1)}
    )
    store.write_violations([retraction])

    assert store.violations() == [kept]
    assert store.stats()["tables"]["violations"] == 1
    assert [r["count"] for r in store.stats()["violations_by_rule"]] == [1]
    on_record = {v.violation_id: v.status for v in store.violations(retracted=True)}
    assert on_record == {"v-kept": "open", "v-withdrawn": "retracted"}
    # A later re-judgement that finds the violation again re-opens it.
    store.write_violations(
        [withdrawn.model_copy(update={"detected_at": retraction.detected_at + timedelta(1)})]
    )
    assert {v.violation_id for v in store.violations()} == {"v-kept", "v-withdrawn"}


def test_a_store_created_before_a_column_existed_gets_it() -> None:
    dsn = store_dsn()
    first = Store.open(dsn)
    first.write_violations([violation("v1")])
    # A store that old had no `subject_violations` either (its view reads every column).
    first._client.command(f"DROP VIEW {first.database}.{SUBJECT_VIOLATIONS_VIEW}")
    first._client.command(f"DROP TABLE {first.database}.{SUBJECT_VIOLATIONS.name}")
    first._client.command(f"ALTER TABLE {first.database}.violations DROP COLUMN status")
    first.close()

    again = Store.open(dsn)
    try:
        assert [v.status for v in again.violations()] == ["open"]
        assert [v.status for v in again.violations(subject_pseudonym="pseudo-1")] == ["open"]
    finally:
        again.close()


def test_a_store_created_before_an_index_existed_gets_it() -> None:
    dsn = store_dsn()
    first = Store.open(dsn)
    first.write_violations([violation("v1"), violation("v2", subject_pseudonym="pseudo-2")])
    first._client.command(
        f"ALTER TABLE {first.database}.violations DROP INDEX subject_pseudonym_idx"
    )
    first.close()

    again = Store.open(dsn)
    try:
        indexes = again._client.query(
            "SELECT name FROM system.data_skipping_indices WHERE database = {db:String}",
            parameters={"db": again.database},
        ).result_rows
        assert indexes == [("subject_pseudonym_idx",)]
        assert [v.violation_id for v in again.violations(subject_pseudonym="pseudo-2")] == ["v2"]
    finally:
        again.close()


def test_violations_filters_combine(store: Store) -> None:
    store.write_violations(
        [
            violation("a", occurred_at=T0),
            violation("b", occurred_at=T0 + timedelta(hours=2)),
            violation("c", rule_id="LX-TLS-012", occurred_at=T0 + timedelta(hours=3)),
            violation("d", org="connectx", rule_id="CX-ENC-004", occurred_at=T0),
            violation("e", subject_pseudonym="pseudo-2", occurred_at=T0 + timedelta(hours=4)),
        ]
    )

    def ids(**filters: object) -> list[str]:
        return [v.violation_id for v in store.violations(**filters)]  # type: ignore[arg-type]

    assert ids(org="connectx") == ["d"]
    assert ids(rule="LX-ADNET-001") == ["e", "b", "a"]
    assert ids(since=T0 + timedelta(hours=1)) == ["e", "c", "b"]
    assert ids(org="linkxup", rule="LX-ADNET-001", since=T0 + timedelta(hours=1)) == ["e", "b"]
    assert ids(subject_pseudonym="pseudo-2") == ["e"]


def test_since_compares_instants_whatever_the_zone(store: Store) -> None:
    store.write_violations([violation("a", occurred_at=T0)])
    later_elsewhere = (T0 + timedelta(minutes=1)).astimezone(timezone(timedelta(hours=5)))

    assert store.violations(since=later_elsewhere) == []
    assert [v.violation_id for v in store.violations(since=T0)] == ["a"]


def test_a_limit_below_one_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="limit must be at least 1"):
        store.violations(limit=0)


def test_rejected_inputs_keep_their_exact_bytes(store: Store) -> None:
    not_utf8 = b'{"id": "e\xff\xfe", \x00 broken'
    first = rejected("privacy.events-1-3", raw=not_utf8, key=None)
    second = rejected("privacy.events-1-4", received_at=T0 + timedelta(seconds=5), field=None)
    store.write_rejected([first, second, first])

    assert store.rejected(limit=10) == [second, first]
    assert store.rejected(limit=10)[1].raw == not_utf8


def test_stats_count_rows_and_violations_per_rule(store: Store) -> None:
    store.write_audit([audit("e1"), audit("e2")])
    store.write_violations(
        [
            violation("a"),
            violation("b"),
            violation("c", org="connectx", rule_id="CX-ENC-004", severity="critical"),
        ]
    )
    store.write_rejected([rejected("r1")])

    stats = store.stats()

    assert stats["tables"] == {
        "events": 2,
        "violations": 3,
        "lineage_edges": 4,
        "rejected_events": 1,
    }
    assert stats["violations_by_rule"] == [
        {"org": "linkxup", "rule_id": "LX-ADNET-001", "severity": "high", "count": 2},
        {"org": "connectx", "rule_id": "CX-ENC-004", "severity": "critical", "count": 1},
    ]


def test_opening_an_existing_store_keeps_its_rows() -> None:
    dsn = store_dsn()
    first = Store.open(dsn)
    first.write_violations([violation("a")])
    first.close()

    again = Store.open(dsn)
    try:
        assert [v.violation_id for v in again.violations()] == ["a"]
    finally:
        again.close()


@pytest.mark.parametrize(
    ("dsn", "server", "database"),
    [
        ("chdb:///var/lib/pt", "chdb:///var/lib/pt", "privtrail"),
        ("chdb:///var/lib/pt?database=audit", "chdb:///var/lib/pt", "audit"),
        ("chdb://memory/audit", "chdb://memory", "audit"),
        ("http://u:p@ch:8123/audit", "http://u:p@ch:8123", "audit"),
        ("https://ch:8443?secure=true", "https://ch:8443?secure=true", "privtrail"),
    ],
)
def test_the_database_comes_from_the_dsn(dsn: str, server: str, database: str) -> None:
    assert split_database(dsn) == (server, database)


def test_a_bad_dsn_is_named_in_the_error_without_its_password() -> None:
    with pytest.raises(
        StoreError, match=r"unsupported store DSN scheme 'mysql' in mysql://u:\*\*\*@h"
    ):
        split_database("mysql://u:secret@h/db")
    with pytest.raises(ValueError, match="invalid ClickHouse database name 'a-b'"):
        split_database("chdb:///tmp/x?database=a-b")
    assert redact("http://u:secret@h:8123/db") == "http://u:***@h:8123/db"


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


def test_records_read_back_as_written_whatever_their_zone(store: Store) -> None:
    elsewhere = timezone(timedelta(hours=5))
    record = audit(
        "e1",
        event_time=T0.astimezone(elsewhere),
        details={"status": "objected", "note": "é \x00 '\""},
        encrypted=None,
        data_categories=[],
    )
    broken = violation("v1", occurred_at=T0.astimezone(elsewhere), deadline=T0)
    store.write_audit([record])
    store.write_violations([broken])

    assert list(store.history()) == [record]
    assert store.violations() == [broken]


def violations_read_from_violations(store: Store, subject: str) -> list[Violation]:
    """A subject's violations, retracted ones too, read from `violations` FINAL (the table
    `Store.violations` read them from before `subject_violations`)."""
    columns = ", ".join(f"`{name}`" for name in VIOLATIONS.column_names)
    rows = store.query_rows(
        f"SELECT {columns} FROM {store.database}.violations FINAL "
        "WHERE subject_pseudonym = {s:String} ORDER BY occurred_at DESC, violation_id",
        {"s": subject},
    )
    return [Violation(**row) for row in rows]


def test_a_subjects_violations_read_as_from_violations_under_copies_and_ties(
    store: Store,
) -> None:
    rng = random.Random(11)
    copies: list[Violation] = []
    for n in range(20):
        first = violation(
            f"v{n}",
            subject_pseudonym=f"pseudo-{n % 3}",
            rule_id=rng.choice(["R1", "R2"]),
            occurred_at=T0 + timedelta(days=45 * (n % 4)),
        )
        for step in range(rng.randint(1, 3)):
            # Some copies tie on detection time: the one inserted last wins in both tables.
            copies.append(
                first.model_copy(
                    update={
                        "status": rng.choice(["open", "retracted"]),
                        "detected_at": first.detected_at + timedelta(minutes=step // 2),
                    }
                )
            )
    for _ in range(15):
        store.write_violations(rng.choices(copies, k=rng.randint(1, 6)))
        for subject in ("pseudo-0", "pseudo-1", "pseudo-2"):
            expected = violations_read_from_violations(store, subject)
            found = store.violations(subject_pseudonym=subject, retracted=True, limit=1000)
            assert found == expected
            assert store.violations(subject_pseudonym=subject, limit=1000) == [
                v for v in expected if v.status == "open"
            ]
