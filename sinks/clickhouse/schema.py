"""ClickHouse tables of the audit trail, and `ensure_schema` to create them.

Every table is a ReplacingMergeTree whose sorting key ends in the row's own id, so a replayed
or duplicated message is stored once; readers query with FINAL so a not-yet-merged duplicate
never shows. `lineage_edges` is filled by a materialized view over `events`, one row per data
category of each access or share. The counters the dashboard reads (counters.py) are kept by
views too, from the bookkeeping columns the store writes with each row.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

from clickhouse_connect.driver.client import Client

DEFAULT_DATABASE: Final = "privtrail"

TIME: Final = "DateTime64(6, 'UTC')"
LABEL: Final = "LowCardinality(String)"
OPTIONAL_LABEL: Final = "LowCardinality(Nullable(String))"
LABELS: Final = "Array(LowCardinality(String))"

# A table's comment: its revision (Table.revision, counters.Counter.revision).
REVISION: Final = "revision "

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# For tables read a granule of every column at a time, in each part (a subject's rows): all
# columns of a part in one file (a "compact" part: ClickHouse makes a part wide past 10 MiB,
# one file per column and substream, about 30 for lineage_edges), and each part's marks and
# primary index put in their caches by the insert or merge that writes it, and when the store
# opens, so the first look-up after a merge or a restart does not load them.
# bench/README.md (store.py) has the measurements.
COMPACT_PARTS: Final = (
    ("min_bytes_for_wide_part", 2**62),
    ("prewarm_mark_cache", 1),
    ("use_primary_key_cache", 1),
    ("prewarm_primary_key_cache", 1),
)


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
    # MergeTree settings given when the table is created (e.g. index_granularity, rows per
    # granule, the unit a query reads): a store made before keeps its own until a rebuild.
    settings: tuple[tuple[str, int], ...] = ()
    # False: a plain MergeTree, append-only, whose rows are never replaced (no FINAL to read).
    replacing: bool = True
    # Raised when the partitioning, sorting key or granules change, which ClickHouse cannot
    # alter in place: a store holding an older revision has the table rebuilt when it opens
    # (`ensure_schema`). Kept in the table's comment; a table made before revisions were recorded
    # has none and reads as 1.
    revision: int = 1

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    @property
    def inserted(self) -> tuple[tuple[str, str], ...]:
        """The columns an insert writes: the row model's, then the bookkeeping."""
        return (*self.columns, *self.bookkeeping)

    def ddl(self, database: str, name: str | None = None) -> str:
        every_column = (*self.columns, *self.store_filled, *self.bookkeeping)
        columns = ",\n    ".join(
            [f"`{name}` {kind}" for name, kind in every_column]
            + [f"INDEX {name} {index}" for name, index in self.indexes]
        )
        engine = f"ReplacingMergeTree({self.version or ''})" if self.replacing else "MergeTree"
        partition = f"\nPARTITION BY {self.partition_by}" if self.partition_by else ""
        given = ", ".join(f"{name} = {value}" for name, value in self.settings)
        settings = f"\nSETTINGS {given}" if given else ""
        return (
            f"CREATE TABLE IF NOT EXISTS {database}.{name or self.name} (\n    {columns}\n)\n"
            f"ENGINE = {engine}{partition}\nORDER BY ({', '.join(self.order_by)}){settings}\n"
            f"COMMENT '{REVISION}{self.revision}'"
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
    # A subject's lineage reads a granule in every part that holds one of its edges, and a
    # subject active all year has edges in every month: partitions by month made it read 55
    # parts at 10M events (bench/README.md, store.py). By year, its edges are in the few parts
    # of one partition a year. Nothing drops or expires partitions of this table.
    partition_by="toYear(event_time)",
    # A subject's edges are a few rows in each part: 1024-row granules read an eighth of what
    # 8192 did (bench/README.md, store.py). A look-up reads every column of one granule in each
    # part, which costs per column file in a wide part; compact parts keep them in one.
    settings=(("index_granularity", 1024), *COMPACT_PARTS),
    # 2: partitioned by year instead of month. 3: compact parts, cached as written.
    revision=3,
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

# A subject's violations (the lineage answer's second query), sorted by subject: `violations`
# is sorted by org and rule and partitioned by month, so a subject's few rows took a granule
# of every part of every month (bench/README.md, store.py). The same rows, copied by a view in
# the same insert and deduplicated the same way (the newest detection wins), so FINAL reads the
# same answer from either table.
SUBJECT_VIOLATIONS = replace(
    VIOLATIONS,
    name="subject_violations",
    order_by=("org", "subject_pseudonym", "violation_id"),
    partition_by="toYear(occurred_at)",
    bookkeeping=(),
    indexes=(),
    # A subject's few violations are a row or two in each part, read with every column.
    settings=COMPACT_PARTS,
    # Raise it with every column `violations` gains: its view copies the columns it was made
    # with, and a store holding an older revision has the table and view made again.
    # 2: compact parts.
    revision=2,
)
SUBJECT_VIOLATIONS_VIEW: Final = "subject_violations_mv"

LINEAGE_VIEW: Final = "lineage_edges_mv"

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
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.{LINEAGE_VIEW}\n"
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
    """Create the database, the tables and the lineage view where missing, and rebuild a table
    of an older revision; safe to repeat.

    Run when the store opens, before its ingest starts: rows written to `events` while the
    lineage view is dropped for a rebuild would have no edges.
    """
    check_database_name(database)
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}", use_database=False)
    revisions = table_revisions(client, database, [table.name for table in TABLES])
    for table in TABLES:
        client.command(table.ddl(database), use_database=False)
        add_missing_columns(client, database, table)
        _add_missing_indexes(client, database, table)
        if revisions.get(table.name, table.revision) != table.revision:
            _rebuild(client, database, table)
        elif table.revision > 1:
            # The old rows, left by a rebuild stopped between its swap and its drop.
            leftover = f"{database}.{_rebuilt(table)}"
            client.command(f"DROP TABLE IF EXISTS {leftover}", use_database=False)
    client.command(lineage_view_ddl(database), use_database=False)
    _ensure_subject_violations(client, database)


def _ensure_subject_violations(client: Client, database: str) -> None:
    """Create `subject_violations` and its view; a store made before it, or before its current
    revision, has it filled from its violations first."""
    source, table = f"{database}.{VIOLATIONS.name}", SUBJECT_VIOLATIONS
    columns = ", ".join(f"`{name}`" for name in table.column_names)
    view = f"{database}.{SUBJECT_VIOLATIONS_VIEW}"
    if table_revisions(client, database, [table.name]).get(table.name) != table.revision:
        client.command(f"DROP VIEW IF EXISTS {view}", use_database=False)
        client.command(f"DROP TABLE IF EXISTS {database}.{table.name}", use_database=False)
        fill_table(
            client,
            database,
            table.name,
            lambda name: table.ddl(database, name),
            f"SELECT {columns} FROM {source}",
        )
    client.command(
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {view} "
        f"TO {database}.{table.name} AS SELECT {columns} FROM {source}",
        use_database=False,
    )


def fill_table(
    client: Client, database: str, name: str, ddl: Callable[[str], str], select: str
) -> None:
    """Create the table `name` (`ddl` gives its DDL under a given name) holding what `select`
    reads, in its column order.

    Filled under another name, then renamed: a fill cut short leaves no table that looks
    complete, and the next open starts it again.
    """
    filling = f"{name}_backfill"
    client.command(f"DROP TABLE IF EXISTS {database}.{filling}", use_database=False)
    client.command(ddl(filling), use_database=False)
    client.command(f"INSERT INTO {database}.{filling} {select}", use_database=False)
    client.command(f"RENAME TABLE {database}.{filling} TO {database}.{name}", use_database=False)


def table_revisions(client: Client, database: str, names: list[str]) -> dict[str, int]:
    """The revision of each of the tables `names` the store has (1 where its comment names
    none)."""
    result = client.query(
        "SELECT name, comment FROM system.tables "
        "WHERE database = {db:String} AND has({names:Array(String)}, name)",
        parameters={"db": database, "names": names},
    )
    return {
        name: int(comment.removeprefix(REVISION)) if comment.startswith(REVISION) else 1
        for name, comment in result.result_rows
    }


def _rebuild(client: Client, database: str, table: Table) -> None:
    """Copy the table's rows into one made with its current layout, then swap the two.

    The copy is filled under another name and swapped in with one EXCHANGE: a rebuild cut
    short leaves the old table in place, at its old revision, and the next open starts again.
    Duplicates are copied as they are, and FINAL hides them as before.
    """
    target, rebuilt = f"{database}.{table.name}", f"{database}.{_rebuilt(table)}"
    if table is LINEAGE_EDGES:
        # Its view writes into the table by name; ensure_schema makes it again afterwards.
        client.command(f"DROP VIEW IF EXISTS {database}.{LINEAGE_VIEW}", use_database=False)
    client.command(f"DROP TABLE IF EXISTS {rebuilt}", use_database=False)
    client.command(table.ddl(database, _rebuilt(table)), use_database=False)
    columns = ", ".join(f"`{name}`" for name, _ in table.inserted + table.store_filled)
    client.command(
        f"INSERT INTO {rebuilt} ({columns}) SELECT {columns} FROM {target}", use_database=False
    )
    client.command(f"EXCHANGE TABLES {target} AND {rebuilt}", use_database=False)
    client.command(f"DROP TABLE {rebuilt}", use_database=False)


def _rebuilt(table: Table) -> str:
    return f"{table.name}_rebuild"


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
