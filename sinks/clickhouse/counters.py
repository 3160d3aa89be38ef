"""Counters the dashboard polls, kept by materialized views instead of scans with FINAL.

A view sees each inserted block, duplicates and all, so it cannot tell a first copy from a
replay by itself. The store tells it: before each insert it looks up the ids of the batch and
writes, in the bookkeeping columns of the rows (schema.py), what each row changes: `counted`
(events, rejected inputs) is 1 on the first copy of an id only, and `open_delta` (violations)
is +1 when a copy opens a violation, -1 when it retracts an open one, 0 otherwise. The views
sum those, in the same INSERT as the rows, so a replayed batch adds nothing and a retraction
takes its violation out of the count once.

`violation_states` keeps, per violation, what the counters counted for it and its newest
detection time: the store reads it, not `violations` FINAL, to decide the next copy's delta, so
the counters stay consistent with themselves even where FINAL has two copies to choose from.

Writes must not race for the same ids: the store's lock orders them within a process, and
Kafka's partitioning by subject gives each store process of a group its own ids (two may
overlap for the moment of a rebalance). ClickHouse writes a block to a table and to its views
as separate parts, not atomically: a store killed inside one insert can leave the rows without
their counts, or counts without their rows, and the replay that follows cannot tell. So a store
opened after its last owner died recounts every counter from its rows (owner.py).

A store made before these tables existed gets them back-filled from its tables read with FINAL
(`ensure_counters`), once, before anything writes to it; a table whose definition changed since
the store made it (its revision) is dropped with its views and back-filled the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from clickhouse_connect.driver.client import Client

from sinks.clickhouse.schema import REVISION, TIME, fill_table, table_revisions

LINEAGE_EVENT_TYPES: Final = "('privacy.data.accessed', 'privacy.data.shared')"

# Milliseconds from the event's own time to its row in the store: its age when stored.
_LAG: Final = "toInt64(toUnixTimestamp64Milli(stored_at) - toUnixTimestamp64Milli(event_time))"
# Milliseconds from the broker's append of the event to its row in the store: the pipeline.
_PIPELINE_LAG: Final = (
    "toInt64(toUnixTimestamp64Milli(stored_at) "
    "- toUnixTimestamp64Milli(assumeNotNull(appended_at)))"
)
# t-digest quantiles: a state of a few hundred bytes per insert, whatever its size, that merges
# in microseconds. The reservoir (`quantilesState`) kept up to 8192 samples per insert, and
# `latency()` spent most of its time merging them (bench/README.md, store.py).
QUANTILES_STATE: Final = "quantilesTDigestState(0.5, 0.99)"
QUANTILES_MERGE: Final = "quantilesTDigestMerge(0.5, 0.99)"
_QUANTILES_TYPE: Final = "AggregateFunction(quantilesTDigest(0.5, 0.99), Int64)"


@dataclass(frozen=True)
class Counter:
    name: str
    columns: str
    engine: str
    # Materialized views filling it: (view name, SELECT over the inserted rows).
    views: tuple[tuple[str, str], ...]
    # The SELECT that fills it from a store's existing tables.
    backfill: str
    # Raised when the table's columns or engine change: a store holding an older revision has
    # the table rebuilt from its rows when it opens (`ensure_counters`). Kept in the table's
    # comment; a table made before revisions were recorded has none and reads as 1.
    revision: int = 1

    def ddl(self, database: str, name: str) -> str:
        columns = f"({self.columns})"
        return (
            f"CREATE TABLE IF NOT EXISTS {database}.{name} {columns} ENGINE = {self.engine} "
            f"COMMENT '{REVISION}{self.revision}'"
        )


ROW_COUNTS = Counter(
    name="row_counts",
    columns="`table_name` LowCardinality(String), `rows` SimpleAggregateFunction(sum, Int64)",
    engine="AggregatingMergeTree ORDER BY table_name",
    views=(
        (
            "row_counts_events_mv",
            "SELECT 'events' AS table_name, toInt64(sum(counted)) AS rows FROM {db}.events",
        ),
        (
            "row_counts_lineage_mv",
            "SELECT 'lineage_edges' AS table_name, toInt64(sum(if(event_type IN "
            f"{LINEAGE_EVENT_TYPES}, length(arrayDistinct(data_categories)), 0))) AS rows "
            "FROM {db}.events WHERE counted = 1",
        ),
        (
            "row_counts_rejected_mv",
            "SELECT 'rejected_events' AS table_name, toInt64(sum(counted)) AS rows "
            "FROM {db}.rejected_events",
        ),
    ),
    backfill=" UNION ALL ".join(
        f"SELECT '{table}' AS table_name, toInt64(count()) AS rows FROM {{db}}.{table} FINAL"
        for table in ("events", "lineage_edges", "rejected_events")
    ),
)

_LINEAGE_ROWS: Final = (
    f"toInt64(sum(if(event_type IN {LINEAGE_EVENT_TYPES}, "
    "length(arrayDistinct(data_categories)), 0)))"
)

# `row_counts` per org: the counts a token for some orgs may see (privtrail/auth.py).
ORG_ROW_COUNTS = Counter(
    name="org_row_counts",
    columns=(
        "`org` LowCardinality(String), `table_name` LowCardinality(String), "
        "`rows` SimpleAggregateFunction(sum, Int64)"
    ),
    engine="AggregatingMergeTree ORDER BY (org, table_name)",
    views=(
        (
            "org_row_counts_events_mv",
            "SELECT org, 'events' AS table_name, toInt64(sum(counted)) AS rows "
            "FROM {db}.events GROUP BY org",
        ),
        (
            "org_row_counts_lineage_mv",
            f"SELECT org, 'lineage_edges' AS table_name, {_LINEAGE_ROWS} AS rows "
            "FROM {db}.events WHERE counted = 1 GROUP BY org",
        ),
    ),
    backfill=" UNION ALL ".join(
        f"SELECT org, '{table}' AS table_name, toInt64(count()) AS rows "
        f"FROM {{db}}.{table} FINAL GROUP BY org"
        for table in ("events", "lineage_edges")
    ),
)

RULE_COUNTS = Counter(
    name="rule_counts",
    columns=(
        "`org` LowCardinality(String), `rule_id` LowCardinality(String), "
        "`severity` SimpleAggregateFunction(anyLast, LowCardinality(String)), "
        "`open` SimpleAggregateFunction(sum, Int64)"
    ),
    engine="AggregatingMergeTree ORDER BY (org, rule_id)",
    views=(
        (
            "rule_counts_mv",
            "SELECT org, rule_id, anyLast(toString(severity)) AS severity, "
            "toInt64(sum(open_delta)) AS open FROM {db}.violations WHERE open_delta != 0 "
            "GROUP BY org, rule_id",
        ),
    ),
    backfill=(
        "SELECT org, rule_id, any(toString(severity)) AS severity, toInt64(count()) AS open "
        "FROM {db}.violations FINAL WHERE status = 'open' GROUP BY org, rule_id"
    ),
)

VIOLATION_STATES = Counter(
    name="violation_states",
    columns=(
        "`org` LowCardinality(String), `rule_id` LowCardinality(String), "
        "`violation_id` String, `counted_open` SimpleAggregateFunction(sum, Int64), "
        f"`latest` SimpleAggregateFunction(max, {TIME})"
    ),
    engine="AggregatingMergeTree ORDER BY (org, rule_id, violation_id)",
    views=(
        (
            "violation_states_mv",
            "SELECT org, rule_id, violation_id, toInt64(open_delta) AS counted_open, "
            "detected_at AS latest FROM {db}.violations",
        ),
    ),
    backfill=(
        "SELECT org, rule_id, violation_id, toInt64(status = 'open') AS counted_open, "
        "detected_at AS latest FROM {db}.violations FINAL"
    ),
)

# One row per insert (all rows of an insert share its `stored_at`), so `since` stays exact.
EVENT_LATENCY = Counter(
    name="event_latency",
    columns=(
        "`stored_at` DateTime64(3, 'UTC'), `events` SimpleAggregateFunction(sum, UInt64), "
        f"`lag_ms` {_QUANTILES_TYPE}, "
        "`max_ms` SimpleAggregateFunction(max, Int64)"
    ),
    engine="AggregatingMergeTree ORDER BY stored_at",
    views=(
        (
            "event_latency_mv",
            f"SELECT stored_at, count() AS events, {QUANTILES_STATE}({_LAG}) "
            f"AS lag_ms, max({_LAG}) AS max_ms FROM {{db}}.events WHERE counted = 1 "
            "GROUP BY stored_at",
        ),
    ),
    backfill=(
        f"SELECT stored_at, count() AS events, {QUANTILES_STATE}({_LAG}) "
        f"AS lag_ms, max({_LAG}) AS max_ms FROM {{db}}.events FINAL GROUP BY stored_at"
    ),
    # 2: t-digest states instead of reservoirs.
    revision=2,
)

PIPELINE_LAG = Counter(
    name="pipeline_lag",
    columns=EVENT_LATENCY.columns,
    engine=EVENT_LATENCY.engine,
    views=(
        (
            "pipeline_lag_mv",
            f"SELECT stored_at, count() AS events, {QUANTILES_STATE}({_PIPELINE_LAG}) "
            f"AS lag_ms, max({_PIPELINE_LAG}) AS max_ms FROM {{db}}.events "
            "WHERE counted = 1 AND appended_at IS NOT NULL GROUP BY stored_at",
        ),
    ),
    backfill=(
        f"SELECT stored_at, count() AS events, {QUANTILES_STATE}({_PIPELINE_LAG}) "
        f"AS lag_ms, max({_PIPELINE_LAG}) AS max_ms FROM {{db}}.events FINAL "
        "WHERE appended_at IS NOT NULL GROUP BY stored_at"
    ),
    revision=EVENT_LATENCY.revision,
)

# Open violations per hour of event time, org, rule and severity: the dashboard's charts. A
# retraction re-sends its violation with the same `occurred_at`, so its -1 lands in the hour
# its +1 did, and the chart stays exact under duplicates and retractions like `rule_counts`.
VIOLATION_HOURS = Counter(
    name="violation_hours",
    columns=(
        "`hour` DateTime('UTC'), `org` LowCardinality(String), "
        "`rule_id` LowCardinality(String), `severity` LowCardinality(String), "
        "`open` SimpleAggregateFunction(sum, Int64)"
    ),
    engine="AggregatingMergeTree ORDER BY (hour, org, severity, rule_id)",
    views=(
        (
            "violation_hours_mv",
            "SELECT toStartOfHour(occurred_at) AS hour, org, rule_id, "
            "toString(severity) AS severity, toInt64(sum(open_delta)) AS open "
            "FROM {db}.violations WHERE open_delta != 0 GROUP BY hour, org, rule_id, severity",
        ),
    ),
    backfill=(
        "SELECT toStartOfHour(occurred_at) AS hour, org, rule_id, "
        "toString(severity) AS severity, toInt64(count()) AS open "
        "FROM {db}.violations FINAL WHERE status = 'open' GROUP BY hour, org, rule_id, severity"
    ),
)

COUNTERS: Final = (
    ROW_COUNTS,
    ORG_ROW_COUNTS,
    RULE_COUNTS,
    VIOLATION_STATES,
    EVENT_LATENCY,
    PIPELINE_LAG,
    VIOLATION_HOURS,
)


def ensure_counters(client: Client, database: str, recount: bool = False) -> None:
    """Create the counter tables and their views; fill a missing table from the store's rows,
    and rebuild one of an older revision the same way, or every one when `recount` (the
    store's last owner died inside an insert, perhaps: owner.py).

    Run when the store opens, before its ingest starts: rows inserted between a back-fill and
    its views' creation would not be counted.
    """
    revisions = table_revisions(client, database, [counter.name for counter in COUNTERS])
    for counter in COUNTERS:
        stored = revisions.get(counter.name)
        rebuild = stored is not None and (recount or stored != counter.revision)
        if rebuild:
            _drop(client, database, counter)
        if rebuild or stored is None:
            _backfill(client, database, counter)
        for view, select in counter.views:
            client.command(
                f"CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.{view} "
                f"TO {database}.{counter.name} AS {select.format(db=database)}",
                use_database=False,
            )


def _drop(client: Client, database: str, counter: Counter) -> None:
    # The views first: an insert into a view whose table is gone fails.
    for view, _ in counter.views:
        client.command(f"DROP VIEW IF EXISTS {database}.{view}", use_database=False)
    client.command(f"DROP TABLE IF EXISTS {database}.{counter.name}", use_database=False)


def _backfill(client: Client, database: str, counter: Counter) -> None:
    fill_table(
        client,
        database,
        counter.name,
        lambda name: counter.ddl(database, name),
        counter.backfill.format(db=database),
    )
