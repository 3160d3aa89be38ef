"""A typed client of the query API, for the CLI and for scripts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, TypeAdapter

from events.outputs import AuditRecord, Violation
from privtrail.client_http import Answer, Http, HttpxHttp, NoAnswer, StdlibHttp, Unreachable
from privtrail.schemas import HistoryPage, Latency, Lineage, RejectedInput, Stats

if TYPE_CHECKING:
    import httpx

    from privtrail.api import Health
    from privtrail.integrity_api import CheckpointExport
    from sinks.integrity.verify import VerifyReport

T = TypeVar("T")

_VIOLATIONS = TypeAdapter(list[Violation])
_REJECTED = TypeAdapter(list[RejectedInput])


class ApiError(RuntimeError):
    """The service is not reachable, or answered with an error."""


class ApiClient:
    def __init__(
        self, base_url: str, timeout: float = 10.0, http: httpx.Client | None = None
    ) -> None:
        """`http`: an httpx client to send the requests with (a test's app client); by default
        the standard library's, over one kept-alive connection: one thread at a time."""
        self.base_url = base_url.rstrip("/")
        self._http: Http = (
            HttpxHttp(http) if http is not None else StdlibHttp(self.base_url, timeout)
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

    def violations(
        self,
        org: str | None = None,
        rule: str | None = None,
        since: str | datetime | None = None,
        limit: int = 100,
        retracted: bool = False,
        severity: str | Sequence[str] = (),
    ) -> list[Violation]:
        """`since`: a datetime, an ISO 8601 string, or relative like `15m`, `2h`, `7d`;
        `severity`: one, or any of several."""
        params: dict[str, Any] = {"org": org, "rule": rule, "limit": limit}
        params["severity"] = [severity] if isinstance(severity, str) else list(severity) or None
        if retracted:
            params["retracted"] = "true"
        params["since"] = since.isoformat() if isinstance(since, datetime) else since
        return self._get(_VIOLATIONS, "/violations", params)

    def lineage(self, subject_id: str, org: str) -> Lineage:
        # The id is sent, never shown: errors name the route, not the subject.
        path = f"/lineage/{quote(subject_id, safe='')}"
        response = self._request(path, "/lineage/<subject>", {"org": org})
        return Lineage.model_validate_json(response.content)

    def rejected(self, limit: int = 100) -> list[RejectedInput]:
        return self._get(_REJECTED, "/rejected", {"limit": limit})

    def stats(self) -> Stats:
        return Stats.model_validate_json(self._request("/stats", "/stats", {}).content)

    def latency(self, since: str | datetime | None = None) -> Latency:
        """Event age and pipeline lag of events stored since `since` (as in `violations`)."""
        params = {"since": since.isoformat() if isinstance(since, datetime) else since}
        path = "/stats/latency"
        return Latency.model_validate_json(self._request(path, path, params).content)

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
        records: list[AuditRecord] = []
        while True:
            response = self._request("/history", "/history", params)
            page = HistoryPage.model_validate_json(response.content)
            records.extend(page.records)
            if page.next_cursor is None:
                return records
            params["cursor"] = page.next_cursor

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

    def _get(self, adapter: TypeAdapter[T], path: str, params: dict[str, Any]) -> T:
        return adapter.validate_json(self._request(path, path, params).content)

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
            raise ApiError(f"GET {route} failed with HTTP {answer.status}: {_detail(answer)}")
        return answer


class _ErrorBody(BaseModel):
    detail: Any = None


def _detail(answer: Answer) -> str:
    try:
        detail = _ErrorBody.model_validate_json(answer.content).detail
    except ValueError:
        return answer.content[:200].decode(errors="replace") or answer.reason
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
