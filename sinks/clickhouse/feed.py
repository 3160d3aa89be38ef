"""The dashboard's reads: the filtered violation feed with its triage, page by page; charts of
open violations over time from the `violation_hours` counter; one violation and its event."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from pydantic import BaseModel

from events.outputs import AuditRecord, Severity, Violation
from sinks.clickhouse.counters import VIOLATION_HOURS
from sinks.clickhouse.schema import EVENTS, VIOLATIONS
from sinks.clickhouse.store import Store
from sinks.clickhouse.triage import TriageEntry, latest_triage_sql

# Which violations to show by their triage: `unresolved` is new and acknowledged together.
TriageFilter = Literal["any", "new", "acknowledged", "resolved", "unresolved"]
# Rows read per query when exporting the whole filtered view.
EXPORT_PAGE: Final = 5000

_TIME: Final = "DateTime64(6, 'UTC')"
ORGS_CONDITION: Final = "has({orgs:Array(String)}, org)"
_TRIAGE_CONDITIONS: Final[dict[str, str]] = {
    "any": "1",
    "new": "triage_state = ''",
    "acknowledged": "triage_state = 'acknowledged'",
    "resolved": "triage_state = 'resolved'",
    "unresolved": "triage_state != 'resolved'",
}


class FeedRow(Violation):
    """A violation as the dashboard lists it: with its newest triage action, if any."""

    triage: TriageEntry | None = None


@dataclass(frozen=True)
class FeedFilter:
    org: str | None = None
    rule: str | None = None
    severity: Severity | None = None
    # Bounds on `occurred_at`, the event time the rule was broken at: since <= t < until.
    since: datetime | None = None
    until: datetime | None = None
    triage: TriageFilter = "any"
    subject_pseudonym: str | None = None
    # Only these orgs' violations (None: every org's): what the caller's token may read.
    orgs: tuple[str, ...] | None = None

    def where(self) -> tuple[str, dict[str, Any]]:
        """The SQL condition (open violations matching every given filter) and its parameters."""
        filters: dict[str, tuple[str, object]] = {
            "org": ("org = {org:String}", self.org),
            "rule": ("rule_id = {rule:String}", self.rule),
            "severity": ("toString(severity) = {severity:String}", self.severity),
            "since": (f"occurred_at >= {{since:{_TIME}}}", self.since and _utc(self.since)),
            "until": (f"occurred_at < {{until:{_TIME}}}", self.until and _utc(self.until)),
            "subject": ("subject_pseudonym = {subject:String}", self.subject_pseudonym),
            "orgs": (ORGS_CONDITION, None if self.orgs is None else list(self.orgs)),
        }
        given = {name: f for name, f in filters.items() if f[1] is not None}
        conditions = [
            "status = 'open'",
            _TRIAGE_CONDITIONS[self.triage],
            *(condition for condition, _ in given.values()),
        ]
        return " AND ".join(conditions), {name: value for name, (_, value) in given.items()}


# The last row of a page: the next page starts after it, in feed order.
Cursor = tuple[datetime, str]


def feed_page(store: Store, where: FeedFilter, after: Cursor | None, limit: int) -> list[FeedRow]:
    """Up to `limit` matching violations after `after`, newest in event time first.

    Pages are keyed by (occurred_at, violation_id), not offsets, so violations arriving while
    an analyst pages back never shift a row into the next page twice.
    """
    condition, parameters = where.where()
    if after is not None:
        condition += (
            f" AND (occurred_at < {{after_time:{_TIME}}} "
            f"OR (occurred_at = {{after_time:{_TIME}}} AND violation_id > {{after_id:String}}))"
        )
        parameters.update(after_time=_utc(after[0]), after_id=after[1])
    return _select_feed(store, condition, parameters, limit)


def feed_all(store: Store, where: FeedFilter) -> Iterator[FeedRow]:
    """Every matching violation in feed order, read a page at a time."""
    after: Cursor | None = None
    while True:
        page = feed_page(store, where, after, EXPORT_PAGE)
        yield from page
        if len(page) < EXPORT_PAGE:
            return
        after = (page[-1].occurred_at, page[-1].violation_id)


def find_violation(store: Store, org: str, violation_id: str) -> FeedRow | None:
    """One violation, open or retracted, with its newest triage action."""
    rows = _select_feed(
        store,
        "org = {org:String} AND violation_id = {violation_id:String}",
        {"org": org, "violation_id": violation_id},
        1,
    )
    return rows[0] if rows else None


def find_event(store: Store, org: str, subject_pseudonym: str, event_id: str) -> AuditRecord | None:
    """The stored audit record of one event (the one that broke a rule)."""
    columns = ", ".join(f"`{name}`" for name in EVENTS.column_names)
    rows = store.query_rows(
        f"SELECT {columns} FROM {store.database}.{EVENTS.name} FINAL "
        "WHERE org = {org:String} AND subject_pseudonym = {subject:String} "
        "AND event_id = {event_id:String} LIMIT 1",
        {"org": org, "subject": subject_pseudonym, "event_id": event_id},
    )
    return AuditRecord(**rows[0]) if rows else None


class Bucket(BaseModel):
    """Open violations that occurred in [start, start + bucket), by severity."""

    start: datetime
    low: int = 0
    medium: int = 0
    high: int = 0
    critical: int = 0


def violations_over_time(
    store: Store, where: FeedFilter, end: datetime, span: timedelta, bucket: timedelta
) -> list[Bucket]:
    """Every bucket of `span` up to `end` (empty ones too), summed from `violation_hours`.

    `bucket` is a whole number of hours; triage and subject filters do not apply (the counter
    does not key by them).
    """
    hours = int(bucket / timedelta(hours=1))
    last = _utc(end).replace(minute=0, second=0, microsecond=0)
    first = _bucket_start(last, hours) - span + bucket
    filters = {"org": where.org, "rule_id": where.rule, "severity": where.severity}
    given: dict[str, object] = {name: value for name, value in filters.items() if value is not None}
    conditions = ["hour >= {first:DateTime('UTC')}", "hour <= {last:DateTime('UTC')}"]
    conditions += [f"{name} = {{{name}:String}}" for name in given]
    if where.orgs is not None:
        conditions.append(ORGS_CONDITION)
        given["orgs"] = list(where.orgs)
    rows = store.query_rows(
        f"SELECT toStartOfInterval(hour, INTERVAL {hours} HOUR) AS start, severity, "
        f"toInt64(sum(open)) AS n FROM {store.database}.{VIOLATION_HOURS.name} "
        f"WHERE {' AND '.join(conditions)} GROUP BY start, severity",
        {"first": first, "last": last, **given},
    )
    buckets = _empty_buckets(first, last, hours)
    for row in rows:
        start = _utc(row["start"])
        if start in buckets:
            setattr(buckets[start], row["severity"], int(row["n"]))
    return list(buckets.values())


def _empty_buckets(first: datetime, last: datetime, hours: int) -> dict[datetime, Bucket]:
    buckets: dict[datetime, Bucket] = {}
    start = first
    while start <= last:
        buckets[start] = Bucket(start=start)
        start += timedelta(hours=hours)
    return buckets


def _bucket_start(moment: datetime, hours: int) -> datetime:
    # Aligned the way toStartOfInterval aligns them: on multiples of `hours` since the epoch.
    epoch_hours = int(moment.timestamp()) // 3600
    return datetime.fromtimestamp((epoch_hours - epoch_hours % hours) * 3600, UTC)


def _select_feed(
    store: Store, condition: str, parameters: dict[str, Any], limit: int
) -> list[FeedRow]:
    columns = ", ".join(f"`{name}`" for name in VIOLATIONS.column_names)
    sql = (
        f"SELECT {columns}, triage_state, triage_note, triage_analyst, triage_at "
        f"FROM {store.database}.{VIOLATIONS.name} FINAL "
        f"LEFT JOIN ({latest_triage_sql(store.database)}) AS triage "
        "ON org = triage_org AND violation_id = triage_violation_id "
        f"WHERE {condition} ORDER BY occurred_at DESC, violation_id LIMIT {max(limit, 1)}"
    )
    return [_feed_row(row) for row in store.query_rows(sql, parameters)]


def _feed_row(row: dict[str, Any]) -> FeedRow:
    triage = {name: row.pop(f"triage_{name}") for name in ("state", "note", "analyst", "at")}
    # An untriaged violation joins no triage row: its state reads as the empty string.
    entry = None
    if triage["state"]:
        entry = TriageEntry.model_validate(
            {"org": row["org"], "violation_id": row["violation_id"], **triage}
        )
    return FeedRow(**row, triage=entry)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
