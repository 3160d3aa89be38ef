"""Who may call which API route, for which orgs, and the access log of every call.

Every request carries `Authorization: Bearer <token>`. A token has one role and one or more
orgs (or `*`, every org). Each route declares what it reads (`RULES`, keyed by the route as
declared); a route with no rule is refused to everyone, so a new route is closed until someone
decides who may call it. Routes that read an org's data narrow every query to the orgs the
token holds (`Caller.orgs_to_read`), so one org's token never sees another's rows or counts.

Tokens are 32 random bytes; the store keeps their SHA-256. A slow or salted hash (bcrypt,
argon2) protects low-entropy passwords from guessing; a 256-bit random token cannot be guessed,
so a fast hash is as safe and costs nothing per request.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from typing import Annotated, Any, Final, Literal, get_args

from clickhouse_connect.driver.exceptions import ClickHouseError
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from privtrail.params import edit_openapi
from sinks.access import AccessEntry
from sinks.clickhouse.access import (
    EVERY_ORG,
    TokenRecord,
    append_access,
    save_token,
    token_by_hash,
)
from sinks.clickhouse.store import Store
from sinks.integrity.chain import ACCESS_CHAIN
from sinks.integrity.ledger import Ledger

Role = Literal["analyst", "auditor", "engineer", "admin"]
ROLES: Final = get_args(Role)
TOKEN_PREFIX: Final = "ptk_"


class Need(StrEnum):
    """What a route reads or changes."""

    PUBLIC = "public"  # no data: health, the dashboard's page and assets, the API docs
    VIOLATIONS = "violations"  # violations, their counters and triage
    AUDIT = "audit"  # lineage, history (replay), the access log
    RAW = "raw"  # rejected inputs, with their raw bytes
    TOKENS = "tokens"  # token management


# admin holds everything: the one token `privtrail up` makes serves every CLI command.
GRANTS: Final[dict[str, frozenset[Need]]] = {
    "analyst": frozenset({Need.VIOLATIONS}),
    "auditor": frozenset({Need.VIOLATIONS, Need.AUDIT}),
    "engineer": frozenset({Need.RAW}),
    "admin": frozenset({Need.VIOLATIONS, Need.AUDIT, Need.RAW, Need.TOKENS}),
}


@dataclass(frozen=True)
class Rule:
    need: Need
    # Its answer is not kept per org (rejected inputs, store-wide lag): tokens for `*` only.
    every_org: bool = False


RULES: Final[dict[tuple[str, str], Rule]] = {
    ("GET", "/health"): Rule(Need.PUBLIC),
    ("GET", "/"): Rule(Need.PUBLIC),
    ("GET", "/dashboard/assets/{name}"): Rule(Need.PUBLIC),
    # The API's documentation: the schema and its viewers hold no data.
    ("GET", "/docs"): Rule(Need.PUBLIC),
    ("GET", "/docs/oauth2-redirect"): Rule(Need.PUBLIC),
    ("GET", "/redoc"): Rule(Need.PUBLIC),
    ("GET", "/violations"): Rule(Need.VIOLATIONS),
    ("GET", "/stats"): Rule(Need.VIOLATIONS),
    ("GET", "/stats/latency"): Rule(Need.VIOLATIONS, every_org=True),
    ("GET", "/dashboard/summary"): Rule(Need.VIOLATIONS),
    ("GET", "/dashboard/chart"): Rule(Need.VIOLATIONS),
    ("GET", "/dashboard/violations"): Rule(Need.VIOLATIONS),
    ("GET", "/dashboard/export.json"): Rule(Need.VIOLATIONS),
    ("GET", "/dashboard/export.csv"): Rule(Need.VIOLATIONS),
    ("GET", "/dashboard/violations/{org}/{violation_id}"): Rule(Need.VIOLATIONS),
    ("POST", "/dashboard/violations/{org}/{violation_id}/triage"): Rule(Need.VIOLATIONS),
    ("GET", "/dashboard/subjects/{org}/{pseudonym}"): Rule(Need.AUDIT),
    ("GET", "/lineage/{subject_id:path}"): Rule(Need.AUDIT),
    ("GET", "/history"): Rule(Need.AUDIT),
    ("GET", "/access-log"): Rule(Need.AUDIT),
    ("GET", "/access-log/subjects/{subject_id:path}"): Rule(Need.AUDIT),
    ("GET", "/verify"): Rule(Need.AUDIT),
    # Signed chain heads: their sequence numbers count every org's rows together.
    ("GET", "/checkpoints"): Rule(Need.AUDIT, every_org=True),
    ("GET", "/rejected"): Rule(Need.RAW, every_org=True),
    ("GET", "/rejected/{rejection_id}/raw"): Rule(Need.RAW, every_org=True),
    ("GET", "/tokens"): Rule(Need.TOKENS),
    ("POST", "/tokens"): Rule(Need.TOKENS),
    ("DELETE", "/tokens/{token_id}"): Rule(Need.TOKENS),
}


def mint_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    store: Store, role: Role, orgs: list[str], name: str, expires_at: datetime | None
) -> tuple[str, TokenRecord]:
    """Store a new token and return it: the only time the token itself is seen."""
    token = mint_token()
    record = TokenRecord(
        token_id=secrets.token_hex(6),
        token_hash=hash_token(token),
        role=role,
        orgs=sorted(set(orgs)),
        name=name,
        created_at=datetime.now(UTC),
        expires_at=expires_at,
        revoked_at=None,
    )
    save_token(store, record)
    return token, record


def roles_with(need: Need) -> list[str]:
    return [role for role in ROLES if need in GRANTS[role]]


@dataclass
class Caller:
    """The token behind a request, and what the request read, for the access log."""

    token_id: str
    role: str
    # None: every org.
    orgs: frozenset[str] | None
    read_orgs: list[str] = field(default_factory=list)
    subject_pseudonym: str | None = None

    def orgs_to_read(self, org: str | None) -> list[str] | None:
        """The orgs a query may read: `org` if the token holds it (else a 403), or, when no
        org is asked for, the token's own (None: every org). Noted for the access log."""
        if org is not None:
            self.require_org(org)
            self.read_orgs = [org]
            return [org]
        self.read_orgs = sorted(self.orgs) if self.orgs is not None else [EVERY_ORG]
        return sorted(self.orgs) if self.orgs is not None else None

    def require_org(self, org: str) -> None:
        self.read_orgs = [org]  # refused too: the log shows which org was tried
        if not self.may_read(org):
            held = ", ".join(sorted(self.orgs or ()))
            raise HTTPException(403, f"this token may not read org {org!r}; its orgs: {held}")

    def may_read(self, org: str) -> bool:
        return self.orgs is None or org in self.orgs

    def looked_at(self, subject_pseudonym: str) -> None:
        self.subject_pseudonym = subject_pseudonym


_bearer = HTTPBearer(auto_error=False, description="A privtrail API token: ptk_...")


def authorize(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Iterator[Caller]:
    """The caller of a request allowed by its route's rule (else 401 or 403); every request to
    a route that is not public lands in the access log, refused ones too."""
    route = request.scope["route"]
    method, endpoint = request.method, route.path
    rule = RULES.get((method, endpoint))
    if rule is not None and rule.need is Need.PUBLIC:
        yield Caller(token_id="", role="", orgs=frozenset())  # reads no org's data
        return
    store: Store = request.app.state.store
    caller = Caller(token_id="", role="", orgs=frozenset())
    status = route.status_code or 200  # the route's answer, unless an error replaces it
    try:
        caller = _identify(store, credentials)
        _permit(caller, rule, method, endpoint)
        yield caller
    except HTTPException as error:
        status = error.status_code
        raise
    except RequestValidationError:
        status = 422
        raise
    except ClickHouseError:
        status = 503
        raise
    except Exception:
        status = 500
        raise
    finally:
        _log_access(request, store, _entry(request, caller, method, endpoint, status))


def _log_access(request: Request, store: Store, entry: AccessEntry) -> None:
    """Write the access-log row, chained when the process keeps the hash chains."""
    ledger: Ledger | None = getattr(request.app.state, "ledger", None)
    if ledger is None:
        append_access(store, entry)
    else:
        ledger.append(ACCESS_CHAIN, entry, partial(append_access, store))


def _identify(store: Store, credentials: HTTPAuthorizationCredentials | None) -> Caller:
    if credentials is None:
        raise _unauthorized("this route needs a token: send Authorization: Bearer <token>")
    token = token_by_hash(store, hash_token(credentials.credentials))
    if token is None:
        raise _unauthorized("unknown token")
    problem = token.problem(datetime.now(UTC))
    if problem is not None:
        raise _unauthorized(problem)
    orgs = None if EVERY_ORG in token.orgs else frozenset(token.orgs)
    return Caller(token_id=token.token_id, role=token.role, orgs=orgs)


def _permit(caller: Caller, rule: Rule | None, method: str, endpoint: str) -> None:
    if rule is None:
        raise HTTPException(403, f"no access rule covers {method} {endpoint}: refused to all")
    if rule.need not in GRANTS.get(caller.role, frozenset()):
        roles = " or ".join(roles_with(rule.need))
        raise HTTPException(403, f"role {caller.role} may not {method} {endpoint}; needs {roles}")
    if rule.every_org and caller.orgs is not None:
        raise HTTPException(403, f"{method} {endpoint} spans every org: it needs a token for *")


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def _entry(
    request: Request, caller: Caller, method: str, endpoint: str, status: int
) -> AccessEntry:
    return AccessEntry(
        access_id=str(uuid.uuid4()),
        at=datetime.now(UTC),
        token_id=caller.token_id,
        role=caller.role,
        method=method,
        endpoint=endpoint,
        orgs=caller.read_orgs,
        subject_pseudonym=caller.subject_pseudonym,
        status=status,
        client=request.client.host if request.client else "",
    )


CallerDep = Annotated[Caller, Depends(authorize)]


class Refusal(BaseModel):
    """The body of an error answer, such as a 401 or a 403."""

    detail: str


REFUSALS: Final = {
    "401": "No token, or an unknown, expired or revoked one: send Authorization: Bearer <token>.",
    "403": "The token's role may not call this route, or the token does not hold the org asked "
    "for (or every org, for a route that spans them).",
}


def document_access(app: FastAPI) -> None:
    """State in `app`'s OpenAPI schema which operations need a token, through the bearer
    scheme `authorize` declares, and their 401 and 403 answers; public ones need none."""
    # The schema writes a path without its parameters' converters: {subject_id:path} as
    # {subject_id}.
    public = {
        (method.lower(), re.sub(r":\w+}", "}", endpoint))
        for (method, endpoint), rule in RULES.items()
        if rule.need is Need.PUBLIC
    }

    def state_access(schema: dict[str, Any]) -> None:
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas[Refusal.__name__] = Refusal.model_json_schema()
        body = {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{Refusal.__name__}"}}
        }
        for path, operations in schema["paths"].items():
            for method, operation in operations.items():
                if (method, path) in public:
                    operation.pop("security", None)
                    continue
                for status, description in REFUSALS.items():
                    operation["responses"][status] = {"description": description, "content": body}

    edit_openapi(app, state_access)
