from __future__ import annotations

import random
from datetime import timedelta, timezone

import pytest

from events.outputs import AuditRecord, Violation
from sinks import LineageEdge, Rejected
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
from tests.unit.chdb_store import T0, audit, rejected, store_dsn, violation


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
