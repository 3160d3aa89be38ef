"""The query API: violations, a subject's data lineage, rejected inputs and store statistics.

Subjects are only ever named by their keyed pseudonym in answers: `/lineage/{subject_id}` takes
the real id, finds its pseudonym through the subject keys (events/key_directory.py), or that it
was erased, and never echoes it back.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from clickhouse_connect.driver.exceptions import ClickHouseError
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field
from pydantic_core import from_json

from config.settings import Settings
from events.key_directory import KeyDirectory, NoKeys, current_pseudonym
from events.outputs import Severity, Violation
from privtrail import __version__
from privtrail.access_api import access_router, state_token_orgs
from privtrail.allow import allow_every_method
from privtrail.auth import CallerDep, authorize, document_access
from privtrail.dashboard import dashboard_router
from privtrail.filters import KnownValues, UnknownValue
from privtrail.health import WorkerStatus, WorkerWatch
from privtrail.integrity_api import integrity_router
from privtrail.params import (
    NO_ROUTE,
    ONE_LINE,
    describe_accepted_values,
    in_store_range,
    parse_since,
    time_query,
)
from privtrail.schemas import (
    HistoryPage,
    Latency,
    Lineage,
    LineageSummary,
    Party,
    RejectedInput,
    RuleCount,
    Stats,
)
from sinks import LineageEdge, Rejected
from sinks.clickhouse.access import ensure_access_tables
from sinks.clickhouse.store import Store
from sinks.ingest import Ingestor, IngestStatus
from streams.rules import load_policy_set

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboards" / "index.html"
MAX_LIMIT = 10_000
# A rejected input's envelope attributes are shown cut to this length.
MAX_ATTRIBUTE_CHARS = 200

log = logging.getLogger(__name__)

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Most rows to return.")]


class StoreHealth(BaseModel):
    ok: bool
    error: str | None = None


class Health(BaseModel):
    # Degraded whenever there is a reason: the store fails, or a consumer stalls.
    status: Literal["ok", "degraded"]
    reasons: list[str] = Field(default_factory=list)
    version: str
    store: StoreHealth
    # None when this process runs no ingest loop.
    ingest: IngestStatus | None
    # None when this process does not watch the worker group.
    worker: WorkerStatus | None = None


def create_app(
    settings: Settings,
    store: Store,
    ingestor: Ingestor | None = None,
    worker: WorkerWatch | None = None,
    keys: KeyDirectory | None = None,
) -> FastAPI:
    # Swagger UI and ReDoc from the package's copies, not a CDN: /docs works offline.
    app = FastAPIOffline(
        title="privtrail",
        version=__version__,
        summary="Live data flows checked against the privacy policy that governs them.",
        # authorize first: a request without a valid token learns nothing, not even a 422.
        dependencies=[Depends(authorize), Depends(_reject_unknown_parameters)],
    )
    app.state.store = store
    ensure_access_tables(store)
    key = settings.pseudonym_master
    directory = keys or NoKeys()
    known = _known_values(settings, store)

    @app.exception_handler(ClickHouseError)
    def store_unavailable(request: Request, error: ClickHouseError) -> JSONResponse:
        # The engine's message is for the operator's log, not for whoever sent the request.
        log.error("store query for %s failed: %s", request.url.path, error)
        return JSONResponse(status_code=503, content={"detail": "store query failed; see the log"})

    @app.get("/health", response_model=Health)
    def health() -> JSONResponse:
        store_health = _store_health(store)
        reasons = [f"store: {store_health.error}"] if not store_health.ok else []
        if ingestor is not None:
            reasons += ingestor.problems()
        if worker is not None:
            reasons += worker.problems()
        body = Health(
            status="degraded" if reasons else "ok",
            reasons=reasons,
            version=__version__,
            store=store_health,
            ingest=ingestor.status() if ingestor is not None else None,
            worker=worker.status() if worker is not None else None,
        )
        return JSONResponse(
            body.model_dump(mode="json"), status_code=200 if store_health.ok else 503
        )

    @app.get("/violations", response_model=list[Violation])
    def violations(
        caller: CallerDep,
        org: Annotated[str | None, Query(description="Only this org's violations.")] = None,
        rule: Annotated[
            str | None, Query(description="Only this rule ID, in any case, e.g. LX-ADNET-001.")
        ] = None,
        severity: Annotated[
            list[Severity] | None,
            Query(description="Only of this severity; repeat it for any of several."),
        ] = None,
        since: Annotated[
            str | None,
            time_query("Broken at or after."),
        ] = None,
        limit: Limit = 100,
        retracted: Annotated[
            bool,
            Query(description="Also those late evidence retracted (status `retracted`)."),
        ] = False,
    ) -> list[Violation]:
        """Violations, newest first (by when the rule was broken, in event time).

        An org or rule ID that neither the policy nor any stored violation knows is a 422 that
        lists the known ones.
        """
        start = _since_param(since) if since is not None else None
        org = _org_param(known, org) if org is not None else None
        rule = _rule_param(known, rule, org) if rule is not None else None
        orgs = caller.orgs_to_read(org)
        return store.violations(
            rule=rule, since=start, limit=limit, retracted=retracted, severities=severity, orgs=orgs
        )

    @app.get("/history", response_model=HistoryPage)
    def history(
        caller: CallerDep,
        since: Annotated[
            str | None,
            time_query("Event time at or after."),
        ] = None,
        until: Annotated[
            str | None,
            time_query("Event time strictly before."),
        ] = None,
        org: Annotated[str | None, Query(description="Only this org's events.")] = None,
        cursor: Annotated[
            str | None, Query(description="The `next_cursor` of the previous page.")
        ] = None,
        limit: Limit = 5000,
    ) -> HistoryPage:
        """Judged events as stored audit records (subjects by pseudonym only), oldest first.

        Ordered by event time, then event id; each event once. A history longer than `limit`
        comes in pages: repeat the request with `cursor` set to the answer's `next_cursor`
        until it is null. Used by `privtrail replay` to re-judge history under another policy.
        """
        start = _since_param(since, "since") if since is not None else None
        end = _since_param(until, "until") if until is not None else None
        after = _cursor_param(cursor) if cursor is not None else None
        org = _org_param(known, org) if org is not None else None
        records = store.history_page(start, end, None, after, limit, caller.orgs_to_read(org))
        last = records[-1] if len(records) == limit else None
        return HistoryPage(
            records=records,
            next_cursor=encode_cursor(last.event_time, last.event_id) if last else None,
        )

    @app.get("/lineage/{subject_id:path}", response_model=Lineage, responses=NO_ROUTE)
    def lineage(
        subject_id: Annotated[
            str, PathParam(description="The subject's id in the org's systems.", pattern=ONE_LINE)
        ],
        org: Annotated[str, Query(min_length=1, description="The org the subject belongs to.")],
        caller: CallerDep,
    ) -> Lineage:
        """Who accessed or received which of the subject's data, and the rules it broke.

        An unknown org is a 422 that lists the known ones; a subject with nothing recorded
        has empty `edges` and `summary.violations`.
        """
        org = _org_param(known, org)
        pseudonym, erased_at = current_pseudonym(directory, key, org, subject_id)
        if pseudonym is not None:
            caller.looked_at(pseudonym)
        caller.require_org(org)
        if pseudonym is None:
            return Lineage.unlinked(org, erased_at)
        edges = store.lineage(org, pseudonym)
        broken = store.violations(org=org, subject_pseudonym=pseudonym, limit=MAX_LIMIT)
        return Lineage(
            org=org,
            subject_pseudonym=pseudonym,
            subject_kind=_subject_kind(edges, broken),
            edges=edges,
            summary=_summarise(edges, broken),
            erased_at=erased_at,
        )

    @app.get("/rejected", response_model=list[RejectedInput])
    def rejected(caller: CallerDep, limit: Limit = 100) -> list[RejectedInput]:
        """The most recently rejected inputs, newest first."""
        caller.orgs_to_read(None)
        return [_rejected_input(row) for row in store.rejected(limit)]

    @app.get(
        "/rejected/{rejection_id}/raw",
        response_class=Response,
        responses={404: {"description": "No rejected input of that id is stored."}},
    )
    def rejected_raw(rejection_id: str, caller: CallerDep) -> Response:
        """A rejected input's exact bytes, as received: they can hold a subject's real id."""
        caller.orgs_to_read(None)
        found = store.rejected_input(rejection_id)
        if found is None:
            raise HTTPException(404, f"no rejected input {rejection_id!r} is stored")
        return Response(found.raw, media_type="application/octet-stream")

    @app.get("/stats", response_model=Stats)
    def stats(caller: CallerDep) -> Stats:
        """Rows per table and violations per rule and per org, of the token's orgs.

        `rejected_events` is null for a token that does not hold every org: rejected inputs
        belong to no org."""
        orgs = caller.orgs_to_read(None)
        counts = store.stats(orgs)
        if orgs is not None:
            counts["tables"].pop("rejected_events")
        by_rule = [RuleCount(**row) for row in counts["violations_by_rule"]]
        by_org: dict[str, int] = {}
        for row in by_rule:
            by_org[row.org] = by_org.get(row.org, 0) + row.count
        return Stats(
            **{"rejected_events": None, **counts["tables"]},
            violations_by_rule=by_rule,
            violations_by_org=by_org,
        )

    @app.get("/stats/latency", response_model=Latency)
    def latency(
        caller: CallerDep,
        since: Annotated[
            str | None,
            time_query("Only events stored at or after."),
        ] = None,
    ) -> Latency:
        """Event-to-store lag (p50, p99, max) of the events stored in the window."""
        caller.orgs_to_read(None)
        start = _since_param(since) if since is not None else None
        return Latency(**store.latency(start))

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        if not DASHBOARD.is_file():
            raise HTTPException(404, f"dashboard page not found at {DASHBOARD}")
        return FileResponse(DASHBOARD, media_type="text/html")

    app.include_router(dashboard_router(store, known))
    app.include_router(access_router(settings, store, known, directory))
    app.include_router(
        integrity_router(settings, store, _since_param, lambda text: _org_param(known, text))
    )
    describe_accepted_values(app, known.policy_orgs(), known.policy_rules())
    state_token_orgs(app, known.policy_orgs())
    document_access(app)
    allow_every_method(app)
    return app


def _known_values(settings: Settings, store: Store) -> KnownValues:
    def stored() -> list[tuple[str, str]]:
        return [(row["org"], row["rule_id"]) for row in store.stats()["violations_by_rule"]]

    rules = load_policy_set(settings.policies_dir).rules
    return KnownValues(((rule.org, rule.rule_id) for rule in rules), stored)


def _reject_unknown_parameters(request: Request) -> None:
    """A query parameter the route does not document is a 422, not silently ignored."""
    route = request.scope["route"]
    documented = _documented_query_parameters(request.app).get((request.method, route.path_format))
    if documented is None:  # a route left out of the schema, such as the dashboard page
        return
    unknown = sorted(set(request.query_params) - documented)
    if unknown:
        takes = ", ".join(sorted(documented)) or "no query parameters"
        message = f"unknown query parameter; {request.method} {route.path_format} takes: {takes}"
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("query", name),
                    "msg": message,
                    "input": request.query_params[name],
                }
                for name in unknown
            ]
        )


def _documented_query_parameters(app: FastAPI) -> dict[tuple[str, str], frozenset[str]]:
    # The OpenAPI schema is what /docs shows a user, and FastAPI builds it once per app.
    return {
        (method.upper(), path): frozenset(
            p["name"] for p in operation.get("parameters", []) if p["in"] == "query"
        )
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
    }


def _org_param(known: KnownValues, text: str) -> str:
    try:
        return known.org(text)
    except UnknownValue as error:
        raise _invalid("org", str(error), text) from None


def _rule_param(known: KnownValues, text: str, org: str | None) -> str:
    try:
        return known.rule(text, org)
    except UnknownValue as error:
        raise _invalid("rule", str(error), text) from None


def _since_param(text: str, name: str = "since") -> datetime:
    try:
        return parse_since(text, datetime.now(UTC))
    except ValueError as error:
        raise _invalid(name, str(error), text) from None


def encode_cursor(event_time: datetime, event_id: str) -> str:
    """An opaque page cursor: the event time and id of the last record returned."""
    text = json.dumps([event_time.isoformat(), event_id])
    return base64.urlsafe_b64encode(text.encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        moment, event_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return in_store_range(datetime.fromisoformat(moment)), str(event_id)
    # RecursionError: a forged cursor of deeply nested JSON.
    except (binascii.Error, ValueError, TypeError, RecursionError):
        raise ValueError(f"{cursor[:64]!r} is not a cursor returned by /history") from None


def _cursor_param(text: str) -> tuple[datetime, str]:
    try:
        return decode_cursor(text)
    except ValueError as error:
        raise _invalid("cursor", str(error), text) from None


def _invalid(name: str, message: str, text: str) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", name), "msg": message, "input": text}]
    )


def _store_health(store: Store) -> StoreHealth:
    try:
        store.ping()
    except Exception as error:
        return StoreHealth(ok=False, error=str(error))
    return StoreHealth(ok=True)


def _subject_kind(edges: list[LineageEdge], broken: list[Violation]) -> str | None:
    if edges:
        return edges[0].subject_kind
    return broken[0].subject_kind if broken else None


def _summarise(edges: list[LineageEdge], broken: list[Violation]) -> LineageSummary:
    shares = [e for e in edges if e.action == "shared"]
    return LineageSummary(
        categories=_distinct(e.data_category for e in edges),
        uses=_distinct(e.data_use for e in edges),
        actors=_parties(edges, lambda e: (e.actor_kind, e.actor_id, None)),
        recipients=_parties(
            shares, lambda e: (e.recipient_kind, e.recipient_id, e.recipient_country)
        ),
        violations=broken,
    )


def _distinct(values: Iterable[str | None]) -> list[str]:
    return sorted({v for v in values if v is not None})


def _parties(
    edges: list[LineageEdge],
    party_of: Callable[[LineageEdge], tuple[str | None, str | None, str | None]],
) -> list[Party]:
    categories: dict[tuple[str | None, str | None, str | None], set[str]] = {}
    for edge in edges:
        categories.setdefault(party_of(edge), set()).add(edge.data_category)
    return [
        Party(kind=kind, id=party_id, country=country, categories=sorted(cats))
        for (kind, party_id, country), cats in sorted(categories.items(), key=lambda i: str(i[0]))
    ]


def _rejected_input(row: Rejected) -> RejectedInput:
    envelope = _envelope(row.raw)
    return RejectedInput(
        rejection_id=row.rejection_id,
        received_at=row.received_at,
        source_topic=row.source_topic,
        source_partition=row.source_partition,
        source_offset=row.source_offset,
        field=row.field,
        reason=row.reason,
        size_bytes=len(row.raw),
        event_id=envelope.get("id"),
        event_type=envelope.get("type"),
        event_source=envelope.get("source"),
    )


def _envelope(raw: bytes) -> dict[str, str]:
    # Rejected input is anything at all: pydantic's parser stops at a depth limit and on
    # invalid UTF-8 with a ValueError (json.loads overflows the stack), and a partial parse
    # still reads the attributes of a dead letter stored truncated.
    try:
        parsed = from_json(raw, allow_partial="trailing-strings")
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {
        name: value[:MAX_ATTRIBUTE_CHARS]
        for name in ("id", "type", "source")
        if isinstance(value := parsed.get(name), str)
    }
