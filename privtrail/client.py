"""A typed client of the query API, for the CLI and for scripts.

The typed answers' models are imported when first asked for: the query commands print the
decoded JSON (`violations_json`, `lineage_json`) and need not build them (bench/cli_latency.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypedDict, Unpack
from urllib.parse import quote

from privtrail.client_http import Answer, Http, HttpxHttp, NoAnswer, StdlibHttp, Unreachable

if TYPE_CHECKING:
    import httpx
    from pydantic import TypeAdapter

    from events.outputs import AuditRecord, Violation
    from privtrail.api import Health
    from privtrail.integrity_api import CheckpointExport
    from privtrail.schemas import Latency, Lineage, RejectedInput, Stats
    from sinks.integrity.verify import VerifyReport


class ViolationFilters(TypedDict, total=False):
    """Which violations to ask for: by default the newest 100 of every org and rule, retracted
    ones left out. `since`: a datetime, an ISO 8601 string, or relative like `15m`, `2h`, `7d`;
    `severity`: one, or any of several."""

    org: str | None
    rule: str | None
    since: str | datetime | None
    limit: int
    retracted: bool
    severity: str | Sequence[str]


class ApiError(RuntimeError):
    """The service is not reachable, or answered with an error."""


class ApiClient:
    def __init__(
        self,
        base_url: str,
        timeout: float = 10.0,
        http: httpx.Client | None = None,
        token: str | None = None,
    ) -> None:
        """`http`: an httpx client to send the requests with (a test's app client); by default
        the standard library's, over one kept-alive connection: one thread at a time.
        `token`: the API token sent with every request (privtrail/credentials.py finds one)."""
        self.base_url = base_url.rstrip("/")
        self._http: Http = (
            HttpxHttp(http, token)
            if http is not None
            else StdlibHttp(self.base_url, timeout, token)
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def health(self) -> Health:
        """The service's health; a degraded service (HTTP 503) still answers with its state."""
        # Imported here: its model brings the whole server along, which queries need not load.
        from privtrail.api import Health

        response = self._request("/health", "/health", {}, accept=(200, 503))
        return Health.model_validate_json(response.content)

    def violations(self, **filters: Unpack[ViolationFilters]) -> list[Violation]:
        return _violations().validate_python(self.violations_json(**filters))

    def violations_json(self, **filters: Unpack[ViolationFilters]) -> list[dict[str, Any]]:
        """`violations` as the API answers them, decoded JSON (events.outputs.Violation)."""
        since, severity = filters.get("since"), filters.get("severity", ())
        params: dict[str, Any] = {
            "org": filters.get("org"),
            "rule": filters.get("rule"),
            "limit": filters.get("limit", 100),
            "severity": [severity] if isinstance(severity, str) else list(severity) or None,
            "since": since.isoformat() if isinstance(since, datetime) else since,
        }
        if filters.get("retracted"):
            params["retracted"] = "true"
        found: list[dict[str, Any]] = json.loads(self._content("/violations", params))
        return found

    def lineage(self, subject_id: str, org: str) -> Lineage:
        from privtrail.schemas import Lineage

        return Lineage.model_validate(self.lineage_json(subject_id, org))

    def lineage_json(self, subject_id: str, org: str) -> dict[str, Any]:
        """`lineage` as the API answers it, decoded JSON (privtrail.schemas.Lineage)."""
        # The id is sent, never shown: errors name the route, not the subject.
        path = f"/lineage/{quote(subject_id, safe='')}"
        response = self._request(path, "/lineage/<subject>", {"org": org})
        answer: dict[str, Any] = json.loads(response.content)
        return answer

    def rejected(self, limit: int = 100) -> list[RejectedInput]:
        return _rejected().validate_json(self._content("/rejected", {"limit": limit}))

    def stats(self) -> Stats:
        from privtrail.schemas import Stats

        return Stats.model_validate_json(self._content("/stats", {}))

    def latency(self, since: str | datetime | None = None) -> Latency:
        """Event age and pipeline lag of events stored since `since` (as in `violations`)."""
        from privtrail.schemas import Latency

        params = {"since": since.isoformat() if isinstance(since, datetime) else since}
        return Latency.model_validate_json(self._content("/stats/latency", params))

    def history(
        self,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        org: str | None = None,
        page_size: int = 5000,
    ) -> list[AuditRecord]:
        """Every stored audit record with `since <= event time < until`, oldest first, read
        page by page. `since`, `until`: datetimes, ISO 8601 strings, or relative like `7d`."""
        params: dict[str, Any] = {"org": org, "limit": page_size}
        params["since"] = since.isoformat() if isinstance(since, datetime) else since
        params["until"] = until.isoformat() if isinstance(until, datetime) else until
        from privtrail.schemas import HistoryPage

        records: list[AuditRecord] = []
        while True:
            response = self._request("/history", "/history", params)
            page = HistoryPage.model_validate_json(response.content)
            records.extend(page.records)
            if page.next_cursor is None:
                return records
            params["cursor"] = page.next_cursor

    def _content(self, path: str, params: dict[str, Any]) -> bytes:
        return self._request(path, path, params).content

    def verify(self, since: str | datetime | None = None, org: str | None = None) -> VerifyReport:
        """The store's integrity check (see `privtrail verify`); `since` as in `violations`."""
        from sinks.integrity.verify import VerifyReport

        params = {"org": org, "since": since.isoformat() if isinstance(since, datetime) else since}
        return VerifyReport.model_validate_json(self._request("/verify", "/verify", params).content)

    def checkpoints(self) -> CheckpointExport:
        """Every signed checkpoint, with the public key that checks them."""
        from privtrail.integrity_api import CheckpointExport

        answer = self._request("/checkpoints", "/checkpoints", {})
        return CheckpointExport.model_validate_json(answer.content)

    def _request(
        self,
        path: str,
        route: str,
        params: dict[str, Any],
        accept: tuple[int, ...] = (200,),
    ) -> Answer:
        query = {name: value for name, value in params.items() if value is not None}
        try:
            answer = self._http.get(path, query)
        except Unreachable as error:
            raise ApiError(
                f"privtrail service not reachable at {self.base_url}: is `privtrail up` running?"
            ) from error
        except NoAnswer as error:
            raise ApiError(
                f"privtrail service at {self.base_url} did not answer GET {route}: {error}"
            ) from error
        if answer.status not in accept:
            raise ApiError(f"GET {route} failed with HTTP {answer.status}: {error_detail(answer)}")
        return answer


@cache
def _violations() -> TypeAdapter[list[Violation]]:
    from pydantic import TypeAdapter

    from events.outputs import Violation

    return TypeAdapter(list[Violation])


@cache
def _rejected() -> TypeAdapter[list[RejectedInput]]:
    from pydantic import TypeAdapter

    from privtrail.schemas import RejectedInput

    return TypeAdapter(list[RejectedInput])


def error_detail(answer: Answer) -> str:
    """What an error answer says went wrong: FastAPI's detail, each bad parameter named."""
    try:
        body = json.loads(answer.content)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return answer.content[:200].decode(errors="replace") or answer.reason
    detail = body.get("detail")
    if isinstance(detail, list):
        # FastAPI's validation errors: name each bad parameter.
        return "; ".join(_validation_message(item) for item in detail)
    return str(detail) if detail is not None else answer.reason


def _validation_message(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    location = [str(part) for part in item.get("loc", []) if part not in ("query", "path")]
    name = ".".join(location)
    return f"{name}: {item.get('msg', 'invalid')}" if name else str(item.get("msg", item))
