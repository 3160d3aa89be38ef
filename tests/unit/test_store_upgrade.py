"""A store made by an earlier version opens in place with the current counters and table
layouts, and reads that skip partitions still see the newest copy of each row."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sinks.clickhouse.counters import EVENT_LATENCY, PIPELINE_LAG
from sinks.clickhouse.schema import (
    LINEAGE_EDGES,
    LINEAGE_VIEW,
    SUBJECT_VIOLATIONS,
    SUBJECT_VIOLATIONS_VIEW,
    lineage_view_ddl,
)
from sinks.clickhouse.store import Store
from tests.unit.chdb_store import T0, audit, store_dsn, violation

# The latency counters as the first revision made them: reservoir quantiles, no comment.
_RESERVOIR_COLUMNS = (
    "`stored_at` DateTime64(3, 'UTC'), `events` SimpleAggregateFunction(sum, UInt64), "
    "`lag_ms` AggregateFunction(quantiles(0.5, 0.99), Int64), "
    "`max_ms` SimpleAggregateFunction(max, Int64)"
)
_MILLIS_SINCE = "toInt64(toUnixTimestamp64Milli(stored_at) - toUnixTimestamp64Milli({start}))"


def _make_reservoir_counters(store: Store) -> None:
    """Put the first revision's latency tables and views in place of the current ones."""
    db, client = store.database, store._client
    for counter, start, where in (
        (EVENT_LATENCY, "event_time", "counted = 1"),
        (PIPELINE_LAG, "assumeNotNull(appended_at)", "counted = 1 AND appended_at IS NOT NULL"),
    ):
        ((view, _),) = counter.views
        client.command(f"DROP VIEW {db}.{view}")
        client.command(f"DROP TABLE {db}.{counter.name}")
        client.command(
            f"CREATE TABLE {db}.{counter.name} ({_RESERVOIR_COLUMNS}) "
            "ENGINE = AggregatingMergeTree ORDER BY stored_at"
        )
        millis = _MILLIS_SINCE.format(start=start)
        client.command(
            f"CREATE MATERIALIZED VIEW {db}.{view} TO {db}.{counter.name} AS "
            f"SELECT stored_at, count() AS events, quantilesState(0.5, 0.99)({millis}) AS lag_ms, "
            f"max({millis}) AS max_ms FROM {db}.events WHERE {where} GROUP BY stored_at"
        )


def _lag_type(store: Store, table: str) -> str:
    rows = store.query_rows(
        "SELECT type FROM system.columns "
        "WHERE database = {db:String} AND table = {t:String} AND name = 'lag_ms'",
        {"db": store.database, "t": table},
    )
    return str(rows[0]["type"])


def test_a_store_with_reservoir_latency_counters_is_upgraded_in_place() -> None:
    dsn = store_dsn()
    appended = datetime.now(UTC) - timedelta(seconds=3)
    first = Store.open(dsn)
    _make_reservoir_counters(first)
    first.write_audit([audit("e1", appended_at=appended), audit("e2")])
    first.write_audit([audit("e1", appended_at=appended)])  # a replay: counted once
    counted = first.query_rows(f"SELECT sum(events) AS n FROM {first.database}.event_latency", {})
    assert counted == [{"n": 2}], "the first revision's view counted the events"
    first.close()

    again = Store.open(dsn)
    try:
        for counter in (EVENT_LATENCY, PIPELINE_LAG):
            assert "quantilesTDigest" in _lag_type(again, counter.name)
        before = again.latency()
        assert (before["events"], before["pipeline_events"]) == (2, 1)
        assert before["pipeline_p50_ms"] is not None
        assert before["pipeline_p50_ms"] >= timedelta(seconds=3) / timedelta(milliseconds=1)
        # The views the upgrade made count what is written next, and only first copies.
        again.write_audit([audit("e2"), audit("e3", appended_at=appended)])
        after = again.latency()
        assert (after["events"], after["pipeline_events"]) == (3, 2)
    finally:
        again.close()
    # Opening an upgraded store again rebuilds nothing and keeps the counts.
    third = Store.open(dsn)
    try:
        assert third.latency()["events"] == 3
    finally:
        third.close()


def test_since_reads_the_newest_copy_when_older_months_are_skipped() -> None:
    store = Store.open(store_dsn())
    try:
        january, march = datetime(2025, 1, 20, tzinfo=UTC), datetime(2025, 3, 5, tzinfo=UTC)
        old = violation("v-jan", occurred_at=january, detected_at=january)
        recent = violation("v-mar", occurred_at=march, detected_at=march)
        store.write_violations([old, recent])
        # Retracted weeks later: the copy keeps its occurred_at, so its month.
        store.write_violations(
            [
                recent.model_copy(
                    update={"status": "retracted", "detected_at": march + timedelta(30)}
                )
            ]
        )

        since_february = datetime(2025, 2, 1, tzinfo=UTC)
        assert store.violations(since=since_february) == []
        kept = store.violations(since=since_february, retracted=True)
        assert [(v.violation_id, v.status) for v in kept] == [("v-mar", "retracted")]
        assert [v.violation_id for v in store.violations(since=january)] == ["v-jan"]
    finally:
        store.close()


def _make_monthly_lineage(store: Store) -> None:
    """Put the first revision's `lineage_edges` (partitioned by month, no comment) and its view
    in place of the current ones."""
    db, client = store.database, store._client
    client.command(f"DROP VIEW {db}.{LINEAGE_VIEW}")
    client.command(f"DROP TABLE {db}.{LINEAGE_EDGES.name}")
    monthly = replace(LINEAGE_EDGES, partition_by="toYYYYMM(event_time)", revision=1)
    client.command(monthly.ddl(db).rsplit("\nCOMMENT", 1)[0])
    client.command(lineage_view_ddl(db))


def _layout(store: Store, table: str) -> tuple[str, str]:
    rows = store.query_rows(
        "SELECT partition_key, comment FROM system.tables "
        "WHERE database = {db:String} AND name = {t:String}",
        {"db": store.database, "t": table},
    )
    return rows[0]["partition_key"], rows[0]["comment"]


_CURRENT = f"revision {LINEAGE_EDGES.revision}"


def _history() -> list[list[object]]:
    """Batches of a subject's accesses and shares over four months, with replays, and another
    subject's; the replays are stored again as duplicate rows that FINAL hides."""
    months = [T0 + timedelta(days=31 * n) for n in range(4)]
    first = [
        audit(f"e{n}", event_time=at, judged_at=at + timedelta(seconds=1), offset=n)
        for n, at in enumerate(months)
    ]
    other = audit("o1", subject_pseudonym="pseudo-2", event_type="privacy.data.accessed")
    return [first, [first[0], first[2], other], [first[3], other]]


def _store_with_history(dsn: str, make_old_tables: Callable[[Store], None]) -> Store:
    """A store at `dsn` whose tables `make_old_tables` put back as an earlier version made
    them, holding `_history()`."""
    store = Store.open(dsn)
    make_old_tables(store)
    for batch in _history():
        store.write_audit(batch)  # type: ignore[arg-type]
    return store


def test_a_store_with_monthly_lineage_partitions_is_rebuilt_by_year() -> None:
    dsn = store_dsn()
    first = _store_with_history(dsn, _make_monthly_lineage)
    assert _layout(first, LINEAGE_EDGES.name) == ("toYYYYMM(event_time)", "")
    raw = first.query_rows(f"SELECT count() AS n FROM {first.database}.lineage_edges", {})
    assert raw == [{"n": 18}], "the replays were stored again, as duplicates"
    before = {s: first.lineage("linkxup", s) for s in ("pseudo-1", "pseudo-2")}
    before_stats = first.stats()["tables"]
    first.close()

    again = Store.open(dsn)
    try:
        assert _layout(again, LINEAGE_EDGES.name) == ("toYear(event_time)", _CURRENT)
        assert {s: again.lineage("linkxup", s) for s in before} == before
        assert [len(edges) for edges in before.values()] == [8, 2]
        assert again.stats()["tables"] == before_stats
        # The view made again after the rebuild derives the edges of what is written next,
        # and a replay of an old event still reads once.
        late = T0 + timedelta(days=200)
        again.write_audit(
            [audit("e9", event_time=late, judged_at=late, offset=9), _history()[0][1]]
        )
        after = again.lineage("linkxup", "pseudo-1")
        assert after[:-2] == before["pseudo-1"]
        assert [(e.event_id, e.event_time) for e in after[-2:]] == [("e9", late), ("e9", late)]
        # As a rebuild stopped after its swap leaves the old rows.
        db = again.database
        again.command(f"CREATE TABLE {db}.lineage_edges_rebuild AS {db}.lineage_edges")
    finally:
        again.close()
    # Opening it again rebuilds nothing (the table keeps its rows) and drops the leftover.
    third = Store.open(dsn)
    try:
        assert len(third.lineage("linkxup", "pseudo-1")) == 10
        assert _layout(third, LINEAGE_EDGES.name) == ("toYear(event_time)", _CURRENT)
        left = third.query_rows(
            "SELECT name FROM system.tables WHERE database = {db:String} AND name LIKE '%rebuild'",
            {"db": third.database},
        )
        assert left == []
    finally:
        third.close()


def test_a_store_made_before_subject_violations_gets_them_from_its_violations() -> None:
    dsn = store_dsn()
    first = Store.open(dsn)
    opened = violation("v1", occurred_at=T0)
    other = violation("v2", subject_pseudonym="pseudo-2")
    retracted = opened.model_copy(
        update={"status": "retracted", "detected_at": opened.detected_at + timedelta(hours=1)}
    )
    later = violation("v3", occurred_at=T0 + timedelta(days=90))
    db = first.database
    first._client.command(f"DROP VIEW {db}.{SUBJECT_VIOLATIONS_VIEW}")
    first._client.command(f"DROP TABLE {db}.{SUBJECT_VIOLATIONS.name}")
    first.write_violations([opened, other, later])
    first.write_violations([retracted, later])  # a retraction and a replay
    first.close()

    again = Store.open(dsn)
    try:
        assert again.violations(subject_pseudonym="pseudo-1", retracted=True) == [later, retracted]
        assert again.violations(subject_pseudonym="pseudo-1") == [later]
        assert again.violations(subject_pseudonym="pseudo-2") == [other]
        # The view made after the fill copies what is written next.
        reopened = opened.model_copy(update={"detected_at": retracted.detected_at + timedelta(1)})
        again.write_violations([reopened])
        assert again.violations(subject_pseudonym="pseudo-1") == [later, reopened]
    finally:
        again.close()


# The second revision of `lineage_edges` and the first of `subject_violations`, as they wrote
# a store's large parts: one file per column (wide), marks loaded by the first read.
_WIDE = (("min_bytes_for_wide_part", 0),)


def _make_wide_tables(store: Store) -> None:
    db, client = store.database, store._client
    client.command(f"DROP VIEW {db}.{LINEAGE_VIEW}")
    client.command(f"DROP VIEW {db}.{SUBJECT_VIOLATIONS_VIEW}")
    for table in (
        replace(LINEAGE_EDGES, settings=(("index_granularity", 1024), *_WIDE), revision=2),
        replace(SUBJECT_VIOLATIONS, settings=_WIDE, revision=1),
    ):
        client.command(f"DROP TABLE {db}.{table.name}")
        client.command(table.ddl(db))
    client.command(lineage_view_ddl(db))
    client.command(
        f"CREATE MATERIALIZED VIEW {db}.{SUBJECT_VIOLATIONS_VIEW} TO {db}.subject_violations "
        f"AS SELECT {Store._select(SUBJECT_VIOLATIONS)} FROM {db}.violations"
    )


def _part_types(store: Store, table: str) -> set[str]:
    rows = store.query_rows(
        "SELECT DISTINCT part_type AS kind FROM system.parts "
        "WHERE database = {db:String} AND table = {t:String} AND active",
        {"db": store.database, "t": table},
    )
    return {row["kind"] for row in rows}


def test_a_store_with_wide_subject_parts_is_rebuilt_compact_with_the_same_answers() -> None:
    dsn = store_dsn()
    first = _store_with_history(dsn, _make_wide_tables)
    opened = violation("v1", occurred_at=T0)
    retracted = opened.model_copy(
        update={"status": "retracted", "detected_at": opened.detected_at + timedelta(hours=1)}
    )
    first.write_violations([opened, violation("v2", subject_pseudonym="pseudo-2")])
    first.write_violations([retracted, opened])  # a retraction and a replay
    subjects = ("pseudo-1", "pseudo-2")
    lineage = {s: first.lineage("linkxup", s) for s in subjects}
    broken = {s: first.violations(subject_pseudonym=s, retracted=True) for s in subjects}
    tables = ("lineage_edges", "subject_violations")
    assert {t: _part_types(first, t) for t in tables} == {t: {"Wide"} for t in tables}
    first.close()

    again = Store.open(dsn)
    try:
        assert {t: _part_types(again, t) for t in tables} == {t: {"Compact"} for t in tables}
        assert {s: again.lineage("linkxup", s) for s in subjects} == lineage
        assert [len(edges) for edges in lineage.values()] == [8, 2]
        assert {s: again.violations(subject_pseudonym=s, retracted=True) for s in subjects} == (
            broken
        )
        assert [v.status for v in broken["pseudo-1"]] == ["retracted"]
        # Both views, made again, copy what is written next.
        late = T0 + timedelta(days=200)
        again.write_audit([audit("e9", event_time=late, judged_at=late, offset=9)])
        again.write_violations([violation("v3", occurred_at=late)])
        assert [e.event_id for e in again.lineage("linkxup", "pseudo-1")][-2:] == ["e9", "e9"]
        assert [v.violation_id for v in again.violations(subject_pseudonym="pseudo-1")] == ["v3"]
    finally:
        again.close()
