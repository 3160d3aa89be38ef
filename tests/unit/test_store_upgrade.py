"""A store made by an earlier version opens in place with the current counters, and reads
that skip partitions still see the newest copy of each row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sinks.clickhouse.counters import EVENT_LATENCY, PIPELINE_LAG
from sinks.clickhouse.store import Store
from tests.unit.chdb_store import audit, store_dsn, violation

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
