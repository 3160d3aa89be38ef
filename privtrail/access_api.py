"""The API's token management (admin) and its access log (auditor) routes.

An admin manages the tokens of its own orgs only: it grants no org it does not hold, and lists
or revokes no token that reaches beyond them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, Strict

from config.settings import Settings
from events.key_directory import KeyDirectory, current_pseudonym
from privtrail.auth import Caller, CallerDep, Role, issue_token
from privtrail.filters import KnownValues, UnknownValue
from privtrail.params import NO_ROUTE, ONE_LINE, edit_openapi, parse_since, time_query
from sinks.access import AccessEntry, IssuedToken, TokenInfo
from sinks.clickhouse.access import (
    EVERY_ORG,
    access_entries,
    all_tokens,
    revoke_token,
    token_by_id,
)
from sinks.clickhouse.store import Store

MAX_ACCESS_ROWS = 10_000


class TokenRequest(BaseModel):
    # A misspelt field or `true` for a number is the caller's mistake, not a default to apply.
    model_config = ConfigDict(extra="forbid")

    role: Role
    orgs: list[str] = Field(min_length=1, description="Org names, or `*` for every org.")
    name: str = Field(min_length=1, max_length=200, description="Whose token, or what for.")
    expires_in_days: Annotated[float, Strict()] | None = Field(
        default=90, gt=0, le=36_500, description="Days until it expires; null: never."
    )


def access_router(
    settings: Settings, store: Store, known: KnownValues, keys: KeyDirectory
) -> APIRouter:
    router = APIRouter(tags=["access"])
    key = settings.pseudonym_master

    @router.post(
        "/tokens",
        response_model=IssuedToken,
        status_code=201,
        responses={400: {"description": "The body is not JSON."}},
    )
    def create_token(request: TokenRequest, caller: CallerDep) -> IssuedToken:
        """A new token with a role and orgs; the answer is the only time it is shown."""
        orgs = [_token_org(known, org) for org in request.orgs]
        _require_orgs(caller, orgs)
        caller.read_orgs = orgs
        days = request.expires_in_days
        expires = datetime.now(UTC) + timedelta(days=days) if days is not None else None
        token, record = issue_token(store, request.role, orgs, request.name, expires)
        return IssuedToken(token=token, **_info(record).model_dump())

    @router.get("/tokens", response_model=list[TokenInfo])
    def list_tokens(caller: CallerDep) -> list[TokenInfo]:
        """Every token within this token's orgs, revoked and expired ones too."""
        caller.orgs_to_read(None)
        return [_info(t) for t in all_tokens(store) if _within(caller, t.orgs)]

    @router.delete(
        "/tokens/{token_id}",
        response_model=TokenInfo,
        responses={404: {"description": "No token of that id within this token's orgs."}},
    )
    def revoke(token_id: str, caller: CallerDep) -> TokenInfo:
        """Revoke a token: it is refused from the next request on. Its record stays."""
        found = token_by_id(store, token_id)
        if found is None or not _within(caller, found.orgs):
            raise HTTPException(404, f"no token {token_id!r} within this token's orgs")
        caller.read_orgs = found.orgs
        return _info(found if found.revoked_at else revoke_token(store, found))

    @router.get("/access-log", response_model=list[AccessEntry])
    def access_log(
        caller: CallerDep,
        org: Annotated[str | None, Query(description="Requests that read this org.")] = None,
        subject_pseudonym: Annotated[
            str | None, Query(description="Requests that looked at this subject.")
        ] = None,
        token_id: Annotated[str | None, Query(description="Requests by this token.")] = None,
        since: Annotated[str | None, time_query("At or after.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_ACCESS_ROWS)] = 100,
    ) -> list[AccessEntry]:
        """Who called the API, newest first: token, role, route, orgs read, subject, status."""
        checked = _org(known, org)
        caller.orgs_to_read(checked)
        if subject_pseudonym is not None:
            caller.looked_at(subject_pseudonym)
        return access_entries(
            store, _scope(caller), checked, subject_pseudonym, token_id, _since(since), limit
        )

    @router.get(
        "/access-log/subjects/{subject_id:path}",
        response_model=list[AccessEntry],
        responses=NO_ROUTE,
    )
    def subject_access_log(
        subject_id: Annotated[
            str, PathParam(description="The subject's id in the org's systems.", pattern=ONE_LINE)
        ],
        org: Annotated[str, Query(min_length=1, description="The org the subject belongs to.")],
        caller: CallerDep,
        limit: Annotated[int, Query(ge=1, le=MAX_ACCESS_ROWS)] = 100,
    ) -> list[AccessEntry]:
        """Who looked at this subject (its lineage, timeline or access log), newest first."""
        checked = _org(known, org) or org
        caller.orgs_to_read(checked)
        pseudonym, _ = current_pseudonym(keys, key, checked, subject_id)
        if pseudonym is None:
            return []  # erased: what was logged under its pseudonym no longer links to it
        caller.looked_at(pseudonym)
        return access_entries(store, _scope(caller), checked, pseudonym, None, None, limit)

    return router


def state_token_orgs(app: FastAPI, orgs: Iterable[str]) -> None:
    """State in `app`'s OpenAPI schema the orgs a new token may be given: the policy's, or
    `*`, as `_token_org` checks."""
    accepted = [*sorted(orgs), EVERY_ORG]

    def state_orgs(schema: dict[str, Any]) -> None:
        request = schema["components"]["schemas"][TokenRequest.__name__]
        request["properties"]["orgs"]["items"] = {"type": "string", "enum": accepted}

    edit_openapi(app, state_orgs)


def _since(text: str | None) -> datetime | None:
    try:
        return parse_since(text, datetime.now(UTC)) if text is not None else None
    except ValueError as error:
        raise _invalid("since", "query", str(error), text) from None


def _scope(caller: Caller) -> list[str] | None:
    return sorted(caller.orgs) if caller.orgs is not None else None


def _within(caller: Caller, orgs: list[str]) -> bool:
    if caller.orgs is None:
        return True
    return EVERY_ORG not in orgs and all(org in caller.orgs for org in orgs)


def _require_orgs(caller: Caller, orgs: list[str]) -> None:
    if not _within(caller, orgs):
        held = ", ".join(sorted(caller.orgs or ()))
        raise HTTPException(403, f"this token may only grant its own orgs: {held}")


def _token_org(known: KnownValues, text: str) -> str:
    return EVERY_ORG if text.strip() == EVERY_ORG else _org(known, text, "orgs", "body") or text


def _org(
    known: KnownValues, text: str | None, name: str = "org", where: str = "query"
) -> str | None:
    try:
        return known.org(text) if text is not None else None
    except UnknownValue as error:
        raise _invalid(name, where, str(error), text) from None


def _invalid(name: str, where: str, message: str, text: str | None) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": (where, name), "msg": message, "input": text}]
    )


def _info(record: TokenInfo) -> TokenInfo:
    return TokenInfo.model_validate(record.model_dump(exclude={"token_hash"}))
