"""ClickHouse tables of the audit trail, and `ensure_schema` to create them.

Every table is a ReplacingMergeTree whose sorting key ends in the row's own id, so a replayed
or duplicated message is stored once; readers query with FINAL so a not-yet-merged duplicate
never shows. `lineage_edges` is filled by a materialized view over `events`, one row per data
category of each access or share. The counters the dashboard reads (counters.py) are kept by
views too, from the bookkeeping columns the store writes with each row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from clickhouse_connect.driver.client import Client

DEFAULT_DATABASE: Final = "privtrail"

TIME: Final = "DateTime64(6, 'UTC')"
LABEL: Final = "LowCardinality(String)"
OPTIONAL_LABEL: Final = "LowCardinality(Nullable(String))"
LABELS: Final = "Array(LowCardinality(String))"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]
    order_by: tuple[str, ...]
    # The column whose highest value wins among duplicates (None: any copy, they are equal).
    version: str | None = None
    partition_by: str | None = None
    # Columns ClickHouse fills from their DEFAULT on insert: (name, type with DEFAULT clause).
    # They are not in `column_names`, so inserts leave them out and the default applies.
    store_filled: tuple[tuple[str, str], ...] = ()
    # Columns the store writes for the counters (sinks/clickhouse/counters.py) and never reads
    # back into a row model; rows of a store older than them read the DEFAULT.
    bookkeeping: tuple[tuple[str, str], ...] = ()
    # String columns holding bytes (any, UTF-8 or not) rather than text.
    bytes_columns: frozenset[str] = frozenset()
    # Data skipping indexes: (name, "expression TYPE kind GRANULARITY n").
    indexes: tuple[tuple[str, str], ...] = ()
    # Rows per granule, the unit a query reads (ClickHouse's default: 8192). Set when the table
    # is created: a store made before keeps its granules.
    index_granularity: int | None = None
    # False: a plain MergeTree, append-only, whose rows are never replaced (no FINAL to read).
    replacing: bool = True

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    @property
    def inserted(self) -> tuple[tuple[str, str], ...]:
        """The columns an insert writes: the row model's, then the bookkeeping."""
        return (*self.columns, *self.bookkeeping)

    def ddl(self, database: str) -> str:
        every_column = (*self.columns, *self.store_filled, *self.bookkeeping)
        columns = ",\n    ".join(
            [f"`{name}` {kind}" for name, kind in every_column]
            + [f"INDEX {name} {index}" for name, index in self.indexes]
        )
        engine = f"ReplacingMergeTree({self.version or ''})" if self.replacing else "MergeTree"
        partition = f"\nPARTITION BY {self.partition_by}" if self.partition_by else ""
        granularity = self.index_granularity
        settings = f"\nSETTINGS index_granularity = {granularity}" if granularity else ""
        return (
            f"CREATE TABLE IF NOT EXISTS {database}.{self.name} (\n    {columns}\n)\n"
            f"ENGINE = {engine}{partition}\nORDER BY ({', '.join(self.order_by)}){settings}"
        )


EVENTS = Table(
    name="events",
    columns=(
        ("event_id", "String"),
        ("event_type", LABEL),
        ("source", LABEL),
        ("org", LABEL),
        ("event_time", TIME),
        ("judged_at", TIME),
        ("subject_pseudonym", "String"),
        ("subject_kind", LABEL),
        ("actor_kind", OPTIONAL_LABEL),
        ("actor_id", "Nullable(String)"),
        ("data_categories", LABELS),
        ("data_use", OPTIONAL_LABEL),
        ("legal_basis", OPTIONAL_LABEL),
        ("recipient_id", "Nullable(String)"),
        ("recipient_kind", OPTIONAL_LABEL),
        ("recipient_country", OPTIONAL_LABEL),
        ("encrypted", "Nullable(Bool)"),
        ("safeguard", "Nullable(String)"),
        ("aggregated", "Nullable(Bool)"),
        ("explicit_consent", "Nullable(Bool)"),
        ("details", "Map(String, String)"),
        ("policy_version", LABEL),
        ("violated_rules", LABELS),
        ("partition", "Int32"),
        ("offset", "Int64"),
        ("appended_at", "Nullable(DateTime64(3, 'UTC'))"),
    ),
    order_by=("org", "subject_pseudonym", "event_id"),
    version="judged_at",
    # When the row reached the store: `stored_at - event_time` is the event's age when stored,
    # `stored_at - appended_at` the pipeline's lag.
    store_filled=(("stored_at", "DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')"),),
    # An event's time never changes, so all copies of it land in the same partition and merge.
    partition_by="toYYYYMM(event_time)",
    # 1 on the first stored copy of an event: the one copy the counters count.
    bookkeeping=(("counted", "UInt8 DEFAULT 0"),),
)

VIOLATIONS = Table(
    name="violations",
    columns=(
        ("violation_id", "String"),
        ("rule_id", LABEL),
        ("org", LABEL),
        ("severity", "Enum8('low' = 1, 'medium' = 2, 'high' = 3, 'critical' = 4)"),
        ("policy_version", LABEL),
        ("policy_section", LABEL),
        ("policy_text", "String"),
        ("explanation", "String"),
        ("subject_pseudonym", "String"),
        ("subject_kind", LABEL),
        ("event_id", "String"),
        ("event_type", LABEL),
        ("occurred_at", TIME),
        ("detected_at", TIME),
        ("deadline", f"Nullable({TIME})"),
        ("data_categories", LABELS),
        ("data_use", OPTIONAL_LABEL),
        ("actor", "Nullable(String)"),
        ("recipient", "Nullable(String)"),
        # A retraction is the same violation re-sent with a newer `detected_at`: the newest
        # copy wins, so a retracted violation reads as such and is kept for the record.
        ("status", "Enum8('open' = 1, 'retracted' = 2) DEFAULT 'open'"),
    ),
    order_by=("org", "rule_id", "violation_id"),
    version="detected_at",
    # A retraction re-sends the violation with its `occurred_at`: all copies share a partition.
    partition_by="toYYYYMM(occurred_at)",
    # What this row changes in the count of open violations: +1 opens, -1 retracts, 0 neither
    # (a duplicate, an older copy, or a copy that leaves the status as it was).
    bookkeeping=(("open_delta", "Int8 DEFAULT 0"),),
    # A subject's violations (the lineage answer) without reading every violation of its org.
    # Exact under FINAL: all copies of a violation have the same subject.
    indexes=(("subject_pseudonym_idx", "subject_pseudonym TYPE bloom_filter GRANULARITY 1"),),
)

LINEAGE_EDGES = Table(
    name="lineage_edges",
    columns=(
        ("event_id", "String"),
        ("org", LABEL),
        ("subject_pseudonym", "String"),
        ("subject_kind", LABEL),
        ("event_time", TIME),
        ("action", "Enum8('accessed' = 1, 'shared' = 2)"),
        ("actor_kind", OPTIONAL_LABEL),
        ("actor_id", "Nullable(String)"),
        ("data_category", LABEL),
        ("data_use", OPTIONAL_LABEL),
        ("legal_basis", OPTIONAL_LABEL),
        ("recipient_id", "Nullable(String)"),
        ("recipient_kind", OPTIONAL_LABEL),
        ("recipient_country", OPTIONAL_LABEL),
        ("policy_version", LABEL),
    ),
    order_by=("org", "subject_pseudonym", "event_id", "data_category"),
    partition_by="toYYYYMM(event_time)",
    # A subject's edges are a few rows in each part: 1024-row granules read an eighth of what
    # 8192 did (bench/README.md, store.py).
    index_granularity=1024,
)

REJECTED_EVENTS = Table(
    name="rejected_events",
    columns=(
        ("rejection_id", "String"),
        ("received_at", TIME),
        ("source_topic", LABEL),
        ("source_partition", "Int32"),
        ("source_offset", "Int64"),
        ("field", "Nullable(String)"),
        ("reason", "String"),
        # ClickHouse Strings are byte strings: the original input is kept exactly.
        ("raw", "String"),
        ("key", "Nullable(String)"),
    ),
    order_by=("rejection_id",),
    bookkeeping=(
        ("counted", "UInt8 DEFAULT 0"),
        # The lookup id of the subject the input names, '' when none or erased (sinks/erasure.py).
        # Outside the chained row: erasing a subject empties it.
        ("subject_lookup", "String DEFAULT ''"),
    ),
    bytes_columns=frozenset({"raw", "key"}),
)

TABLES: Final = (EVENTS, VIOLATIONS, LINEAGE_EDGES, REJECTED_EVENTS)

_EDGE_COLUMNS_FROM_EVENT: Final = {
    "action": "if(event_type = 'privacy.data.shared', 'shared', 'accessed')",
    "data_category": "arrayJoin(data_categories)",
}


def lineage_view_ddl(database: str) -> str:
    """The materialized view that turns each inserted access or share into lineage edges."""
    select = ",\n    ".join(
        f"{_EDGE_COLUMNS_FROM_EVENT.get(name, f'`{name}`')} AS `{name}`"
        for name in LINEAGE_EDGES.column_names
    )
    return (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.lineage_edges_mv\n"
        f"TO {database}.{LINEAGE_EDGES.name} AS\nSELECT\n    {select}\n"
        f"FROM {database}.{EVENTS.name}\n"
        "WHERE event_type IN ('privacy.data.accessed', 'privacy.data.shared')"
    )


def check_database_name(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"invalid ClickHouse database name {name!r}: use letters, digits and underscores"
        )
    return name


def ensure_schema(client: Client, database: str = DEFAULT_DATABASE) -> None:
    """Create the database, the tables and the lineage view where missing; safe to repeat."""
    check_database_name(database)
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}", use_database=False)
    for table in TABLES:
        client.command(table.ddl(database), use_database=False)
        add_missing_columns(client, database, table)
        _add_missing_indexes(client, database, table)
    client.command(lineage_view_ddl(database), use_database=False)


def add_missing_columns(client: Client, database: str, table: Table) -> None:
    """Stores created by an earlier version lack the columns added since."""
    result = client.query(
        "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String}",
        parameters={"db": database, "t": table.name},
    )
    present = {row[0] for row in result.result_rows}
    for column, kind in (*table.columns, *table.store_filled, *table.bookkeeping):
        if column not in present:
            client.command(
                f"ALTER TABLE {database}.{table.name} ADD COLUMN `{column}` {kind}",
                use_database=False,
            )


def _add_missing_indexes(client: Client, database: str, table: Table) -> None:
    """Stores created by an earlier version lack the indexes added since; their existing parts
    get the index built by a background mutation (queries are exact before it is done)."""
    result = client.query(
        "SELECT name FROM system.data_skipping_indices "
        "WHERE database = {db:String} AND table = {t:String}",
        parameters={"db": database, "t": table.name},
    )
    present = {row[0] for row in result.result_rows}
    for name, index in table.indexes:
        if name not in present:
            target = f"{database}.{table.name}"
            client.command(f"ALTER TABLE {target} ADD INDEX {name} {index}", use_database=False)
            client.command(f"ALTER TABLE {target} MATERIALIZE INDEX {name}", use_database=False)
