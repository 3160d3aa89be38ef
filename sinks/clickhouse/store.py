"""The audit trail store: batched column inserts and the queries the API answers.

One `Store` is shared by the ingest thread and the API's worker threads. It holds two
connections to the same store, each used under its own lock: one writes (and reads what a write
needs to decide, under the same lock), the other answers every query. A clickhouse-connect
client runs one call at a time, but chDB runs calls on different connections in parallel, so a
dashboard poll never waits behind a batch being written, nor a write behind a slow query.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
from clickhouse_connect.driver.client import Client
from pydantic import BaseModel

from events.outputs import AuditRecord, Violation
from sinks import LineageEdge, Rejected
from sinks.clickhouse.answers import Lag, RuleCount, StoreLatency, StoreStats
from sinks.clickhouse.arrow import arrow_rows, arrow_schema
from sinks.clickhouse.audit_columns import records_columns
from sinks.clickhouse.connect import connect
from sinks.clickhouse.counters import (
    EVENT_LATENCY,
    ORG_ROW_COUNTS,
    PIPELINE_LAG,
    QUANTILES_MERGE,
    ROW_COUNTS,
    RULE_COUNTS,
    VIOLATION_STATES,
)
from sinks.clickhouse.deltas import (
    EventKey,
    ViolationKey,
    ViolationState,
    first_copies,
    open_deltas,
)
from sinks.clickhouse.owner import OwnerMark
from sinks.clickhouse.schema import (
    EVENTS,
    LINEAGE_EDGES,
    REJECTED_EVENTS,
    SUBJECT_VIOLATIONS,
    TABLES,
    VIOLATIONS,
    Table,
    add_missing_columns,
)

ColumnFormats = dict[str, str | dict[str, str]]

_BYTES_COLUMNS: ColumnFormats = dict.fromkeys(REJECTED_EVENTS.bytes_columns, "bytes")

# Audit records read per query when streaming history: bounds memory, not the history's length.
HISTORY_PAGE = 5000


def _utc(moment: datetime) -> datetime:
    # A naive datetime is taken as UTC, the zone every time column of the store is in.
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


class Store:
    def __init__(
        self,
        client: Client,
        database: str,
        reader: Client | None = None,
        owner: OwnerMark | None = None,
    ) -> None:
        # Writes, the lookups they depend on, and DDL.
        self._client = client
        self._lock = threading.Lock()
        # Queries (the same client when none is given: then they share the lock too).
        self._reader = reader or client
        self._read_lock = threading.Lock() if reader is not None else self._lock
        self.database = database
        # Released by close(): a store that is never closed is recounted when next opened.
        self._owner = owner or OwnerMark(None)

    @classmethod
    def open(cls, dsn: str, verify: bool = True, ca_cert: Path | None = None) -> Store:
        """Connect to `dsn` (chdb:///dir or http(s)://...) and create the schema if missing.

        https:// checks the server's certificate (unless not `verify`) against `ca_cert`, or
        the system's CAs when that is None."""
        opened = connect(dsn, verify, ca_cert)
        return cls(opened.writer, opened.database, opened.reader, opened.owner)

    def close(self) -> None:
        with self._read_lock:
            if self._reader is not self._client:
                self._reader.close()
        with self._lock:
            self._client.close()
        self._owner.release()

    def ping(self) -> None:
        """Raise if the store does not answer a trivial query."""
        with self._read_lock:
            self._reader.command("SELECT 1", use_database=False)

    def write_audit(self, records: Sequence[AuditRecord]) -> None:
        """Insert the records, each marked `counted` if it is the first copy of its event."""
        if records:
            self.write_audit_columns([records_columns(records)])

    def write_audit_columns(self, batches: Sequence[pa.Table]) -> None:
        """`write_audit` for records already in columns (audit_columns.AUDIT_COLUMNS), as the
        ingest loop decodes them: one insert for all the batches."""
        table = pa.concat_tables(batches) if len(batches) > 1 else batches[0]
        if not table.num_rows:
            return
        keys = list(
            zip(
                *(table.column(name).to_pylist() for name in ("org", "subject_pseudonym")),
                table.column("event_id").to_pylist(),
                strict=True,
            )
        )
        with self._lock:
            counted = first_copies(keys, self._stored_events(table, keys))
            field = arrow_schema(EVENTS).field("counted")
            data = table.append_column(field, pa.array(counted, field.type))
            self._client.insert_arrow(
                EVENTS.name, data, database=self.database, settings=_INSERT_SETTINGS
            )

    def write_violations(self, violations: Sequence[Violation]) -> None:
        """Insert the violations with their change to the count of open ones."""
        if not violations:
            return
        with self._lock:
            deltas = open_deltas(violations, self._violation_states(violations))
            self._insert(VIOLATIONS, violations, [deltas])

    def write_rejected(
        self, rejected: Sequence[Rejected], subject_lookups: Sequence[str] | None = None
    ) -> None:
        """Insert rejected inputs, with the lookup ids of the subjects they name ('' for none;
        sinks/erasure.py)."""
        if not rejected:
            return
        with self._lock:
            ids = [row.rejection_id for row in rejected]
            stored = self._query(
                f"SELECT rejection_id FROM {self._table(REJECTED_EVENTS)} "
                f"WHERE rejection_id IN {_ids_literal(ids)}",
                {},
            )
            counted = first_copies(ids, {row[0] for row in stored})
            lookups = list(subject_lookups or [""] * len(rejected))
            self._insert(REJECTED_EVENTS, rejected, [counted, lookups])

    def violations(
        self,
        org: str | None = None,
        rule: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        subject_pseudonym: str | None = None,
        retracted: bool = False,
        severities: Sequence[str] | None = None,
        orgs: Sequence[str] | None = None,
    ) -> list[Violation]:
        """Violations matching every given filter, newest (in event time) first; retracted
        ones (late evidence showed the rule was kept) only with `retracted`; of any of
        `severities` when given; of any of `orgs` when given.

        `since` bounds `occurred_at`: when the rule was broken, not when it was detected.
        """
        filters = {
            "org": ("org = {org:String}", org),
            "rule": ("rule_id = {rule:String}", rule),
            "since": ("occurred_at >= {since:DateTime64(6, 'UTC')}", since and _utc(since)),
            "subject": ("subject_pseudonym = {subject:String}", subject_pseudonym),
            "severities": (
                "has({severities:Array(String)}, toString(severity))",
                list(severities) if severities else None,
            ),
            "orgs": _orgs_filter(orgs),
        }
        given = {name: f for name, f in filters.items() if f[1] is not None}
        conditions = [condition for condition, _ in given.values()]
        if not retracted:
            conditions.append(_OPEN)
        where = " AND ".join(conditions) or "1"
        # The same rows, sorted by subject: a subject's few violations in a few granules.
        table = VIOLATIONS if subject_pseudonym is None else SUBJECT_VIOLATIONS
        sql = (
            f"SELECT {self._select(VIOLATIONS)} FROM {self._table(table)} FINAL "
            f"WHERE {where} ORDER BY occurred_at DESC, violation_id LIMIT {_positive(limit)}"
        )
        parameters = {name: value for name, (_, value) in given.items()}
        return [Violation(**row) for row in self._rows(sql, parameters)]

    def history(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        org: str | None = None,
        page_size: int = HISTORY_PAGE,
    ) -> Iterator[AuditRecord]:
        """Stored audit records with `since <= event_time < until`, by event time then id.

        Read `page_size` rows per query, so a long history never sits in memory at once.
        """
        after: tuple[datetime, str] | None = None
        while True:
            page = self.history_page(since, until, org, after, page_size)
            yield from page
            if len(page) < page_size:
                return
            after = (page[-1].event_time, page[-1].event_id)

    def history_page(
        self,
        since: datetime | None,
        until: datetime | None,
        org: str | None,
        after: tuple[datetime, str] | None,
        limit: int,
        orgs: Sequence[str] | None = None,
    ) -> list[AuditRecord]:
        """One page of `history`: the first `limit` records ordered after `after`
        (the event time and id of the previous page's last record), of any of `orgs`."""
        filters = {
            "since": ("event_time >= {since:DateTime64(6, 'UTC')}", since and _utc(since)),
            "until": ("event_time < {until:DateTime64(6, 'UTC')}", until and _utc(until)),
            "org": ("org = {org:String}", org),
            "after_time": (
                "(event_time, event_id) > ({after_time:DateTime64(6, 'UTC')}, {after_id:String})",
                after and _utc(after[0]),
            ),
            "orgs": _orgs_filter(orgs),
        }
        given = {name: f for name, f in filters.items() if f[1] is not None}
        where = " AND ".join(condition for condition, _ in given.values()) or "1"
        parameters = {name: value for name, (_, value) in given.items()}
        if after is not None:
            parameters["after_id"] = after[1]
        sql = (
            f"SELECT {self._select(EVENTS)} FROM {self._table(EVENTS)} FINAL "
            f"WHERE {where} ORDER BY event_time, event_id LIMIT {_positive(limit)}"
        )
        return [AuditRecord(**row) for row in self._rows(sql, parameters)]

    def lineage(self, org: str, subject_pseudonym: str) -> list[LineageEdge]:
        """Every category of the subject's data accessed or shared, in event-time order."""
        sql = (
            f"SELECT {self._select(LINEAGE_EDGES)} FROM {self._table(LINEAGE_EDGES)} FINAL "
            "WHERE org = {org:String} AND subject_pseudonym = {subject:String} "
            "ORDER BY event_time, event_id, data_category"
        )
        rows = self._rows(sql, {"org": org, "subject": subject_pseudonym})
        return [LineageEdge(**row) for row in rows]

    def rejected(self, limit: int = 100) -> list[Rejected]:
        """The most recently rejected inputs, newest first, with their exact bytes."""
        sql = (
            f"SELECT {self._select(REJECTED_EVENTS)} FROM {self._table(REJECTED_EVENTS)} FINAL "
            f"ORDER BY received_at DESC, rejection_id LIMIT {_positive(limit)}"
        )
        return [Rejected(**row) for row in self._rows(sql, {}, _BYTES_COLUMNS)]

    def rejected_input(self, rejection_id: str) -> Rejected | None:
        """One rejected input, with its exact bytes."""
        sql = (
            f"SELECT {self._select(REJECTED_EVENTS)} FROM {self._table(REJECTED_EVENTS)} FINAL "
            "WHERE rejection_id = {id:String} LIMIT 1"
        )
        rows = self._rows(sql, {"id": rejection_id}, _BYTES_COLUMNS)
        return Rejected(**rows[0]) if rows else None

    def stats(self, orgs: Sequence[str] | None = None) -> StoreStats:
        """Rows per table (each copy once, open violations only) and open violations per rule,
        read from the counters the inserts keep (counters.py).

        With `orgs`, only theirs; rejected inputs belong to no org and count as 0.
        """
        where, parameters = (
            ("WHERE has({orgs:Array(String)}, org)", {"orgs": list(orgs)})
            if (orgs is not None)
            else ("", {})
        )
        counter = ROW_COUNTS.name if orgs is None else ORG_ROW_COUNTS.name
        rows = (
            f"SELECT table_name, sum(rows) AS n FROM {self.database}.{counter} {where} "
            "GROUP BY table_name"
        )
        by_rule = (
            "SELECT org, rule_id, anyLast(severity) AS severity, sum(open) AS count "
            f"FROM {self.database}.{RULE_COUNTS.name} {where} GROUP BY org, rule_id "
            "HAVING count > 0 ORDER BY count DESC, org, rule_id"
        )
        tables = dict.fromkeys((t.name for t in TABLES), 0)
        tables.update(
            {str(row["table_name"]): int(row["n"]) for row in self._rows(rows, parameters)}
        )
        rules = [
            RuleCount(
                org=row["org"], rule_id=row["rule_id"], severity=row["severity"], count=row["count"]
            )
            for row in self._rows(by_rule, parameters)
        ]
        tables[VIOLATIONS.name] = sum(rule["count"] for rule in rules)
        return StoreStats(tables=tables, violations_by_rule=rules)

    def latency(self, since: datetime | None = None) -> StoreLatency:
        """For events stored since `since` (all when None): their age when stored, from their
        own `time` (the emitter's delay and any back-fill included), and the pipeline's lag,
        from the broker's append to the store (queueing, judging and ingest batching).

        Each event is counted once, at its first stored copy. Quantiles are ClickHouse's
        t-digest estimates (`quantilesTDigest`).
        """
        age = self._lag(EVENT_LATENCY.name, since)
        pipeline = self._lag(PIPELINE_LAG.name, since)
        return StoreLatency(
            events=age.events,
            p50_ms=age.p50_ms,
            p99_ms=age.p99_ms,
            max_ms=age.max_ms,
            last_stored_at=age.last_stored_at,
            pipeline_events=pipeline.events,
            pipeline_p50_ms=pipeline.p50_ms,
            pipeline_p99_ms=pipeline.p99_ms,
            pipeline_max_ms=pipeline.max_ms,
        )

    def _lag(self, counter: str, since: datetime | None) -> Lag:
        where = "stored_at >= {since:DateTime64(3, 'UTC')}" if since is not None else "1"
        sql = (
            f"SELECT sum(events) AS events, {QUANTILES_MERGE}(lag_ms) AS q, "
            f"max(max_ms) AS max_ms, max(stored_at) AS last_stored_at "
            f"FROM {self.database}.{counter} WHERE {where}"
        )
        parameters = {"since": _utc(since)} if since is not None else {}
        row = self._rows(sql, parameters)[0]
        if row["events"] == 0:
            return Lag(0, None, None, None, None)
        p50, p99 = row["q"]
        return Lag(
            int(row["events"]), float(p50), float(p99), float(row["max_ms"]), row["last_stored_at"]
        )

    def query_rows(
        self,
        sql: str,
        parameters: dict[str, Any],
        column_formats: ColumnFormats | None = None,
    ) -> list[dict[str, Any]]:
        """Rows of a read by another store module (feed.py, triage.py), on the reading connection;
        its SQL names tables by `database`."""
        return self._rows(sql, parameters, column_formats)

    def insert_arrow(self, table: Table, data: pa.Table) -> None:
        """Rows of another store module's own table (sinks/integrity/), as Arrow."""
        with self._lock:
            self._client.insert_arrow(table.name, data, database=self.database)

    def create_table(self, table: Table) -> None:
        """Another store module's own table, created where missing, and given the columns added
        to it since an earlier version created it."""
        with self._lock:
            self._client.command(table.ddl(self.database), use_database=False)
            add_missing_columns(self._client, self.database, table)

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        """A statement by another store module: its own table's DDL, or an insert into it."""
        with self._lock:
            self._client.command(sql, parameters=parameters, use_database=False)

    def _stored_events(self, table: pa.Table, keys: Sequence[EventKey]) -> set[EventKey]:
        # Copies of an event share its time: the batch's time range bounds where one can be,
        # which skips the partitions (months) and parts outside it.
        times = pc.min_max(table.column("event_time"))
        rows = self._query(
            f"SELECT org, subject_pseudonym, event_id FROM {self._table(EVENTS)} "
            "WHERE event_time BETWEEN {first:DateTime64(6, 'UTC')} AND {last:DateTime64(6, 'UTC')} "
            f"AND event_id IN {_ids_literal(key[2] for key in keys)}",
            {"first": _utc(times["min"].as_py()), "last": _utc(times["max"].as_py())},
        )
        return {(org, subject, event_id) for org, subject, event_id in rows}

    def _violation_states(
        self, violations: Sequence[Violation]
    ) -> dict[ViolationKey, ViolationState]:
        rows = self._query(
            "SELECT org, rule_id, violation_id, sum(counted_open), max(latest) "
            f"FROM {self.database}.{VIOLATION_STATES.name} "
            f"WHERE violation_id IN {_ids_literal(v.violation_id for v in violations)} "
            "GROUP BY org, rule_id, violation_id",
            {},
        )
        return {
            (org, rule, vid): ViolationState(counted_open=int(counted), latest=latest)
            for org, rule, vid, counted, latest in rows
        }

    def _insert(
        self, table: Table, rows: Sequence[BaseModel], bookkeeping: Sequence[Sequence[int | str]]
    ) -> None:
        """Insert `rows` with their bookkeeping columns; the caller holds the lock."""
        data = arrow_rows(table, rows, bookkeeping)
        self._client.insert_arrow(
            table.name, data, database=self.database, settings=_INSERT_SETTINGS
        )

    def _query(self, sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Rows of a lookup run while the caller holds the lock; its SQL carries a batch's ids.

        A raw query read as Arrow: `query` would scan the SQL, long with the ids, with regular
        expressions in Python (about a third of the lookup), where `raw_query` only tokenises
        it, skipping over the literal in C.
        """
        settings = {"max_query_size": max(len(sql) + 1024, _DEFAULT_MAX_QUERY_SIZE)}
        data = self._client.raw_query(
            sql, parameters=parameters, settings=settings, fmt="ArrowStream"
        )
        columns = [_text(column).to_pylist() for column in ipc.open_stream(data).read_all().columns]
        return list(zip(*columns, strict=True))

    def _rows(
        self,
        sql: str,
        parameters: dict[str, Any],
        column_formats: ColumnFormats | None = None,
    ) -> list[dict[str, Any]]:
        with self._read_lock:
            result = self._reader.query(
                sql, parameters=parameters, column_formats=column_formats, settings=_READ_SETTINGS
            )
        names = result.column_names
        return [dict(zip(names, row, strict=True)) for row in result.result_rows]

    def _table(self, table: Table) -> str:
        return f"{self.database}.{table.name}"

    @staticmethod
    def _select(table: Table) -> str:
        return ", ".join(f"`{name}`" for name in table.column_names)


def _orgs_filter(orgs: Sequence[str] | None) -> tuple[str, list[str] | None]:
    return ("has({orgs:Array(String)}, org)", list(orgs) if orgs is not None else None)


# Violations that still stand: late evidence retracts one by re-sending it with this status.
_OPEN = "status = 'open'"


_DEFAULT_MAX_QUERY_SIZE = 262144

# A ReplacingMergeTree insert would first collapse the copies of a row within its own block;
# FINAL and merges collapse them anyway (the newest `version`, on a tie the last inserted, as
# the insert would), and the counters count first copies by lookup, not by what is stored.
# Skipping it cut the CPU time of an `events` insert with its views by about a fifth
# (bench/README.md, store.py).
_INSERT_SETTINGS: Final = {"optimize_on_insert": 0}

# Every copy of a row lands in one partition (schema.py: a row's partitioning time never
# changes), so FINAL need not merge across them. Said, it also lets a filter on that time skip
# partitions: without it, ClickHouse 26.3 on reads every partition under FINAL when the
# partition column is not in the sorting key (`violations(since=...)`, EXPLAIN indexes = 1).
_READ_SETTINGS: Final = {"do_not_merge_across_partitions_select_final": 1}


def _ids_literal(ids: Iterable[str]) -> str:
    """A set of ids to write in SQL: a JSON array, hex-encoded, so no id can break out of it.

    Bound as a parameter, clickhouse-connect escapes strings one character at a time in
    Python: 0.2 s for a batch of 20,000 ids, more than the lookup itself.
    """
    encoded = orjson.dumps(list(set(ids))).hex()
    return f"(SELECT arrayJoin(JSONExtract(unhex('{encoded}'), 'Array(String)')))"


def _text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    # A server may send String columns as Arrow binary, however they hold text.
    return column.cast(pa.string()) if pa.types.is_binary(column.type) else column


def _positive(limit: int) -> int:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    return limit
