"""The dashboard's endpoints: headline counters, charts, the filtered feed page by page and its
export, drill-down to a violation and its subject, and triage.

Counters and charts are read from the store's counter views, never by counting rows. Subjects
are named by pseudonym only, as everywhere in the API.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, and those
# naming the filter dependency refer to names local to `dashboard_router`.
import base64
import binascii
import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, Field

from events.outputs import AuditRecord, Severity
from privtrail.auth import CallerDep
from privtrail.filters import KnownValues, UnknownValue
from privtrail.params import in_store_range, parse_since, time_query
from sinks import LineageEdge
from sinks.clickhouse.feed import (
    Bucket,
    Cursor,
    FeedFilter,
    FeedRow,
    TriageFilter,
    feed_all,
    feed_page,
    find_event,
    find_violation,
    violations_over_time,
)
from sinks.clickhouse.store import Store
from sinks.clickhouse.triage import (
    MAX_NOTE_CHARS,
    TriageEntry,
    TriageState,
    UnknownViolation,
    ensure_triage,
    record_triage,
    triage_counts,
    triage_history,
)

ASSETS: Final = Path(__file__).resolve().parent.parent / "dashboards"
_ASSET_TYPES: Final = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
PAGE_LIMIT: Final = 1000
TOP_RULES: Final = 10
SEVERITIES: Final = ("critical", "high", "medium", "low")
# The chart's ranges: how far back, and the hours each bar sums.
RANGES: Final = {"24h": (timedelta(hours=24), 1), "7d": (timedelta(days=7), 6)}
ChartRange = Literal["24h", "7d"]
# The CSV export's columns, in order; lists are joined with "; ".
CSV_COLUMNS: Final = (
    *(name for name in FeedRow.model_fields if name != "triage"),
    "triage_state",
    "triage_note",
    "triage_analyst",
    "triage_at",
)


class TopRule(BaseModel):
    org: str
    rule_id: str
    severity: str
    count: int


class Summary(BaseModel):
    """The headline counters, from the store's counter views (exact under duplicates)."""

    open_violations: int
    by_severity: dict[str, int]
    last_24h: int
    events: int
    rejected: int | None
    triage: dict[str, int]
    top_rules: list[TopRule]
    orgs: list[str]


class Chart(BaseModel):
    range: ChartRange
    bucket_hours: int
    buckets: list[Bucket]


class FeedPage(BaseModel):
    rows: list[FeedRow]
    # None on the last page; pass it back as `cursor` for the next one.
    next_cursor: str | None


class ViolationDetail(BaseModel):
    violation: FeedRow
    # The audit record of the event that broke the rule; None if it is not stored.
    event: AuditRecord | None
    triage_history: list[TriageEntry]


class SubjectTimeline(BaseModel):
    org: str
    subject_pseudonym: str
    edges: list[LineageEdge]
    violations: list[FeedRow]


class TriageRequest(BaseModel):
    state: TriageState
    note: str = Field(max_length=MAX_NOTE_CHARS)
    analyst: str = Field(min_length=1, max_length=200, pattern=r"\S")


def dashboard_router(store: Store, known: KnownValues) -> APIRouter:
    """The `/dashboard/...` routes over `store`; `known` checks org and rule filters."""
    ensure_triage(store)
    router = APIRouter(prefix="/dashboard", tags=["dashboard"])
    Filtered = Annotated[FeedFilter, Depends(_feed_filter_dependency(known))]
    Charted = Annotated[FeedFilter, Depends(_chart_filter_dependency(known))]

    @router.get("/assets/{name}", include_in_schema=False)
    def asset(name: str) -> FileResponse:
        media_type = _ASSET_TYPES.get(name)
        if media_type is None:
            raise HTTPException(404, f"no dashboard asset {name!r}")
        return FileResponse(ASSETS / name, media_type=media_type)

    @router.get("/summary", response_model=Summary)
    def summary(caller: CallerDep, org: _Org = None) -> Summary:
        """Headline counters and the top rules, for one org or all the token's."""
        checked = _org(known, org)
        caller.orgs_to_read(checked)
        held = sorted(caller.orgs) if caller.orgs is not None else None
        return _summary(store, checked, held)

    @router.get("/chart", response_model=Chart)
    def chart(where: Charted, range: ChartRange = "24h") -> Chart:
        """Open violations per bar by severity, over the last 24 h or 7 d of event time."""
        span, hours = RANGES[range]
        now = datetime.now(UTC)
        buckets = violations_over_time(store, where, now, span, timedelta(hours=hours))
        return Chart(range=range, bucket_hours=hours, buckets=buckets)

    @router.get("/violations", response_model=FeedPage)
    def violations(
        where: Filtered,
        cursor: Annotated[str | None, Query(description="The previous page's next_cursor.")] = None,
        limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT)] = 100,
    ) -> FeedPage:
        """Open violations matching the filters, newest in event time first, a page at a time."""
        after = _decode_cursor(cursor) if cursor is not None else None
        rows = feed_page(store, where, after, limit)
        last = rows[-1] if len(rows) == limit else None
        return FeedPage(rows=rows, next_cursor=_encode_cursor(last) if last else None)

    @router.get("/export.json")
    def export_json(where: Filtered) -> StreamingResponse:
        """Every violation of the filtered view, as a JSON array."""
        return _download(_json_lines(feed_all(store, where)), "application/json", "json")

    @router.get("/export.csv", responses={200: {"content": {"text/csv": {}}}})
    def export_csv(where: Filtered) -> StreamingResponse:
        """Every violation of the filtered view, as CSV with a header row."""
        return _download(_csv_lines(feed_all(store, where)), "text/csv", "csv")

    @router.get(
        "/violations/{org}/{violation_id}", response_model=ViolationDetail, responses=_NOT_STORED
    )
    def violation(org: str, violation_id: str, caller: CallerDep) -> ViolationDetail:
        """One violation, the event that broke the rule, and its triage history."""
        org = _path_org(known, org)
        caller.require_org(org)
        found = find_violation(store, org, violation_id)
        if found is None:
            raise HTTPException(404, f"no violation {violation_id!r} is stored for org {org!r}")
        event = find_event(store, org, found.subject_pseudonym, found.event_id)
        history = triage_history(store, org, violation_id)
        return ViolationDetail(violation=found, event=event, triage_history=history)

    @router.post(
        "/violations/{org}/{violation_id}/triage",
        response_model=TriageEntry,
        responses={**_NOT_STORED, 400: {"description": "The body is not JSON."}},
    )
    def triage(
        org: str, violation_id: str, request: TriageRequest, caller: CallerDep
    ) -> TriageEntry:
        """Acknowledge or resolve a violation, with a note; kept with who and when."""
        org = _path_org(known, org)
        caller.require_org(org)
        try:
            return record_triage(
                store, org, violation_id, request.state, request.note, request.analyst.strip()
            )
        except UnknownViolation as error:
            raise HTTPException(404, str(error)) from None

    @router.get("/subjects/{org}/{pseudonym}", response_model=SubjectTimeline)
    def subject(
        org: str,
        pseudonym: Annotated[str, PathParam(description="The subject's keyed pseudonym.")],
        caller: CallerDep,
    ) -> SubjectTimeline:
        """The subject's lineage timeline and every open violation of theirs."""
        org = _path_org(known, org)
        caller.looked_at(pseudonym)
        caller.require_org(org)
        edges = store.lineage(org, pseudonym)
        broken = list(feed_all(store, FeedFilter(org=org, subject_pseudonym=pseudonym)))
        return SubjectTimeline(org=org, subject_pseudonym=pseudonym, edges=edges, violations=broken)

    return router


_Org = Annotated[str | None, Query(description="Only this org (any case).")]
_NOT_STORED: Final[dict[int | str, dict[str, Any]]] = {
    404: {"description": "No violation of that id is stored for the org."}
}


_Rule = Annotated[str | None, Query(description="Only this rule id (any case).")]
_Severity = Annotated[Severity | None, Query(description="Only this severity.")]


def _chart_filter_dependency(known: KnownValues) -> Callable[..., FeedFilter]:
    def chart_filter(
        caller: CallerDep, org: _Org = None, rule: _Rule = None, severity: _Severity = None
    ) -> FeedFilter:
        checked_org = _org(known, org)
        return FeedFilter(
            org=checked_org,
            rule=_rule(known, rule, checked_org),
            severity=severity,
            orgs=_tuple(caller.orgs_to_read(checked_org)),
        )

    return chart_filter


def _feed_filter_dependency(known: KnownValues) -> Callable[..., FeedFilter]:
    def feed_filter(
        caller: CallerDep,
        org: _Org = None,
        rule: _Rule = None,
        severity: _Severity = None,
        since: Annotated[str | None, time_query("Broken at or after (event time).")] = None,
        until: Annotated[str | None, time_query("Broken before (event time).")] = None,
        triage: Annotated[
            TriageFilter, Query(description="By triage; unresolved is new or acknowledged.")
        ] = "any",
    ) -> FeedFilter:
        checked_org = _org(known, org)
        return FeedFilter(
            org=checked_org,
            rule=_rule(known, rule, checked_org),
            severity=severity,
            since=_time("since", since),
            until=_time("until", until),
            triage=triage,
            orgs=_tuple(caller.orgs_to_read(checked_org)),
        )

    return feed_filter


def _tuple(orgs: list[str] | None) -> tuple[str, ...] | None:
    return tuple(orgs) if orgs is not None else None


def _summary(store: Store, org: str | None, held: list[str] | None) -> Summary:
    """Of `org`, or of every org the token holds (`held`; None: every org)."""
    stats = store.stats(held)
    rules = [TopRule(**row) for row in stats["violations_by_rule"]]
    orgs = sorted({rule.org for rule in rules})
    if org is not None:
        rules = [rule for rule in rules if rule.org == org]
    by_severity = dict.fromkeys(SEVERITIES, 0)
    for rule in rules:
        by_severity[rule.severity] = by_severity.get(rule.severity, 0) + rule.count
    day = violations_over_time(
        store,
        FeedFilter(org=org, orgs=_tuple(held)),
        datetime.now(UTC),
        timedelta(hours=24),
        timedelta(hours=1),
    )
    return Summary(
        open_violations=sum(by_severity.values()),
        by_severity=by_severity,
        last_24h=sum(b.low + b.medium + b.high + b.critical for b in day),
        events=stats["tables"]["events"],
        # Rejected inputs belong to no org: counted for a token of every org only.
        rejected=stats["tables"]["rejected_events"] if held is None else None,
        triage=triage_counts(store, [org] if org is not None else held),
        top_rules=rules[:TOP_RULES],
        orgs=orgs,
    )


def _org(known: KnownValues, text: str | None) -> str | None:
    try:
        return known.org(text) if text is not None else None
    except UnknownValue as error:
        raise _invalid("org", str(error), text or "") from None


def _path_org(known: KnownValues, text: str) -> str:
    try:
        return known.org(text)
    except UnknownValue as error:
        raise _invalid("org", str(error), text, location="path") from None


def _rule(known: KnownValues, text: str | None, org: str | None) -> str | None:
    try:
        return known.rule(text, org) if text is not None else None
    except UnknownValue as error:
        raise _invalid("rule", str(error), text or "") from None


def _time(name: str, text: str | None) -> datetime | None:
    try:
        return parse_since(text, datetime.now(UTC)) if text is not None else None
    except ValueError as error:
        raise _invalid(name, str(error), text or "") from None


def _encode_cursor(row: FeedRow) -> str:
    text = json.dumps([row.occurred_at.isoformat(), row.violation_id])
    return base64.urlsafe_b64encode(text.encode()).decode()


def _decode_cursor(cursor: str) -> Cursor:
    try:
        moment, violation_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return in_store_range(datetime.fromisoformat(moment)), str(violation_id)
    # RecursionError: a forged cursor of deeply nested JSON.
    except (binascii.Error, ValueError, TypeError, RecursionError):
        message = "not a next_cursor returned by /dashboard/violations"
        raise _invalid("cursor", message, cursor[:64]) from None


def _invalid(name: str, message: str, text: str, location: str = "query") -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": (location, name), "msg": message, "input": text}]
    )


def _download(lines: Iterator[str], media_type: str, suffix: str) -> StreamingResponse:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    disposition = f'attachment; filename="privtrail-violations-{stamp}.{suffix}"'
    return StreamingResponse(
        lines, media_type=media_type, headers={"Content-Disposition": disposition}
    )


def _json_lines(rows: Iterable[FeedRow]) -> Iterator[str]:
    # One row per line inside the array: streamed, so an export of any size never sits whole
    # in memory.
    separator = "[\n"
    for row in rows:
        yield separator + row.model_dump_json()
        separator = ",\n"
    yield "[]\n" if separator == "[\n" else "\n]\n"


def _csv_lines(rows: Iterable[FeedRow]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(_csv_values(row))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _csv_values(row: FeedRow) -> list[str]:
    values = row.model_dump(mode="json", exclude={"triage"})
    triage = row.triage.model_dump(mode="json") if row.triage else {}
    cells = [*values.values(), *(triage.get(name) for name in ("state", "note", "analyst", "at"))]
    text = ["; ".join(c) if isinstance(c, list) else "" if c is None else str(c) for c in cells]
    return [_inert(cell) for cell in text]


def _inert(cell: str) -> str:
    # A spreadsheet runs a cell that starts like a formula; a triage note or an event's actor
    # id is free text that anyone who can emit or triage writes (OWASP's CSV injection).
    return f"'{cell}" if cell.startswith(_FORMULA_STARTS) else cell


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
