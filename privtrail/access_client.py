"""The API's token management and access-log calls, for `privtrail token` and
`privtrail access-log`."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter

from config.settings import Settings
from privtrail.client import ApiError, error_detail
from privtrail.client_http import Answer, bearer
from privtrail.credentials import local_token
from sinks.access import AccessEntry, IssuedToken, TokenInfo

_TOKENS = TypeAdapter(list[TokenInfo])
_ENTRIES = TypeAdapter(list[AccessEntry])


class AccessClient:
    def __init__(self, settings: Settings, timeout: float = 10.0) -> None:
        self.base_url = settings.api_url
        headers = bearer(local_token(settings))
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def create_token(
        self, role: str, orgs: list[str], name: str, expires_in_days: float | None
    ) -> IssuedToken:
        body = {"role": role, "orgs": orgs, "name": name, "expires_in_days": expires_in_days}
        return IssuedToken.model_validate_json(self._call("POST", "/tokens", json=body))

    def tokens(self) -> list[TokenInfo]:
        return _TOKENS.validate_json(self._call("GET", "/tokens"))

    def revoke(self, token_id: str) -> TokenInfo:
        return TokenInfo.model_validate_json(self._call("DELETE", f"/tokens/{token_id}"))

    def access_log(self, params: dict[str, Any]) -> list[AccessEntry]:
        query = {name: value for name, value in params.items() if value is not None}
        return _ENTRIES.validate_json(self._call("GET", "/access-log", params=query))

    def subject_access_log(self, subject_id: str, org: str, limit: int) -> list[AccessEntry]:
        # The id goes in the path, where the server's log redacts it, never in a query.
        path = f"/access-log/subjects/{quote(subject_id, safe='')}"
        shown = "/access-log/subjects/<subject>"
        content = self._call("GET", path, shown, params={"org": org, "limit": limit})
        return _ENTRIES.validate_json(content)

    def _call(self, method: str, path: str, shown: str | None = None, **options: Any) -> bytes:
        try:
            response = self._http.request(method, path, **options)
        except httpx.TransportError as error:
            raise ApiError(
                f"privtrail service not reachable at {self.base_url}: is `privtrail up` "
                f"running? ({error})"
            ) from error
        if response.status_code >= 400:
            answer = Answer(response.status_code, response.content, response.reason_phrase)
            raise ApiError(
                f"{method} {shown or path} failed with HTTP {response.status_code}: "
                f"{error_detail(answer)}"
            )
        return response.content
