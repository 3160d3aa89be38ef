"""API tokens for unit tests of the query API."""

from __future__ import annotations

from datetime import datetime

from privtrail.auth import Role, hash_token, issue_token
from sinks.clickhouse.access import ensure_access_tables, token_by_hash
from sinks.clickhouse.store import Store


def bearer(
    store: Store,
    role: Role = "admin",
    orgs: tuple[str, ...] = ("*",),
    expires_at: datetime | None = None,
) -> dict[str, str]:
    """The Authorization header of a new token stored in `store`."""
    ensure_access_tables(store)
    token, _ = issue_token(store, role, list(orgs), f"test {role}", expires_at)
    return {"Authorization": f"Bearer {token}"}


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def token_id(store: Store, headers: dict[str, str]) -> str:
    """The id of the token in `headers`."""
    found = token_by_hash(store, hash_token(token_of(headers)))
    assert found is not None
    return found.token_id
