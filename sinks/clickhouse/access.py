"""API tokens and the access log: who may read the trail, and who did.

`api_tokens` holds each token's SHA-256 hash, never the token itself, with its role and orgs; a
revocation is a newer version of the row (ReplacingMergeTree on `updated_at`), so the row that
says who held a token stays. `access_log` is append-only, one row per API request, each with its
own `access_id` that never changes, so the rows can be chained or signed after the fact.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from sinks.access import AccessEntry, TokenInfo
from sinks.clickhouse.schema import LABEL, LABELS, TIME, Table
from sinks.clickhouse.store import Store, _utc

TOKENS: Final = "api_tokens"
ACCESS_LOG: Final = "access_log"
# A token's orgs hold this instead of names when it may read every org, present and future.
EVERY_ORG: Final = "*"

_TOKEN_COLUMNS: Final = (
    ("token_id", "String"),
    ("token_hash", "String"),
    ("role", LABEL),
    ("orgs", LABELS),
    ("name", "String"),
    ("created_at", TIME),
    ("expires_at", f"Nullable({TIME})"),
    ("revoked_at", f"Nullable({TIME})"),
    ("updated_at", TIME),
)
_ACCESS_COLUMNS: Final = (
    ("access_id", "String"),
    ("at", TIME),
    ("token_id", "String"),
    ("role", LABEL),
    ("method", LABEL),
    ("endpoint", LABEL),
    ("orgs", LABELS),
    ("subject_pseudonym", "Nullable(String)"),
    ("status", "Int16"),
    ("client", "String"),
)


# The access log's columns as the hash chain digests them (sinks/integrity). Its table is a plain
# MergeTree made by `ensure_access_tables`, not from this; `access_id` alone names a row.
ACCESS = Table(name=ACCESS_LOG, columns=_ACCESS_COLUMNS, order_by=("access_id",), replacing=False)


class TokenRecord(TokenInfo):
    """A stored token: its SHA-256 hash, never the token itself."""

    token_hash: str


def ensure_access_tables(store: Store) -> None:
    """Create the token and access-log tables where missing; safe to repeat."""
    store.command(
        f"CREATE TABLE IF NOT EXISTS {store.database}.{TOKENS} ({_ddl(_TOKEN_COLUMNS)}) "
        "ENGINE = ReplacingMergeTree(updated_at) ORDER BY token_id"
    )
    store.command(
        f"CREATE TABLE IF NOT EXISTS {store.database}.{ACCESS_LOG} ({_ddl(_ACCESS_COLUMNS)}, "
        "INDEX subject_idx subject_pseudonym TYPE bloom_filter GRANULARITY 1) "
        "ENGINE = MergeTree PARTITION BY toYYYYMM(at) ORDER BY (at, access_id)"
    )


def save_token(store: Store, token: TokenRecord) -> None:
    """Store a new token, or a new version of one (a revocation)."""
    _insert(store, TOKENS, _TOKEN_COLUMNS, {**token.model_dump(), "updated_at": _now()})


def token_by_hash(store: Store, token_hash: str) -> TokenRecord | None:
    return _one_token(store, "token_hash", token_hash)


def token_by_id(store: Store, token_id: str) -> TokenRecord | None:
    return _one_token(store, "token_id", token_id)


def _one_token(store: Store, column: str, value: str) -> TokenRecord | None:
    rows = store.query_rows(
        f"SELECT {_names(_TOKEN_COLUMNS[:-1])} FROM {store.database}.{TOKENS} FINAL "
        f"WHERE {column} = {{value:String}} LIMIT 1",
        {"value": value},
    )
    return TokenRecord(**rows[0]) if rows else None


def all_tokens(store: Store) -> list[TokenRecord]:
    """Every token, revoked and expired ones too, oldest first."""
    rows = store.query_rows(
        f"SELECT {_names(_TOKEN_COLUMNS[:-1])} FROM {store.database}.{TOKENS} FINAL "
        "ORDER BY created_at, token_id",
        {},
    )
    return [TokenRecord(**row) for row in rows]


def revoke_token(store: Store, token: TokenRecord) -> TokenRecord:
    revoked = token.model_copy(update={"revoked_at": _now()})
    save_token(store, revoked)
    return revoked


def has_valid_token(store: Store) -> bool:
    now = _now()
    return any(token.problem(now) is None for token in all_tokens(store))


def append_access(store: Store, entry: AccessEntry) -> None:
    _insert(store, ACCESS_LOG, _ACCESS_COLUMNS, entry.model_dump())


def access_row_stored(store: Store, access_id: str) -> bool:
    rows = store.query_rows(
        f"SELECT count() AS n FROM {store.database}.{ACCESS_LOG} "
        "WHERE access_id = {access_id:String}",
        {"access_id": access_id},
    )
    return bool(rows[0]["n"])


def access_entries(
    store: Store,
    readable: Sequence[str] | None,
    org: str | None,
    subject_pseudonym: str | None,
    token_id: str | None,
    since: datetime | None,
    limit: int,
) -> list[AccessEntry]:
    """Access-log rows newest first, of requests that read `org` (or any org), a subject or
    a token. `readable`: only rows whose orgs all lie within these (None: every row)."""
    filters = {
        "readable": (
            "notEmpty(orgs) AND hasAll({readable:Array(String)}, orgs)",
            list(readable) if readable is not None else None,
        ),
        "org": ("(has(orgs, {org:String}) OR has(orgs, '*'))", org),
        "subject": ("subject_pseudonym = {subject:String}", subject_pseudonym),
        "token": ("token_id = {token:String}", token_id),
        "since": (f"at >= {{since:{TIME}}}", since and _utc(since)),
    }
    given = {name: f for name, f in filters.items() if f[1] is not None}
    where = " AND ".join(condition for condition, _ in given.values()) or "1"
    rows = store.query_rows(
        f"SELECT {_names(_ACCESS_COLUMNS)} FROM {store.database}.{ACCESS_LOG} "
        f"WHERE {where} ORDER BY at DESC, access_id LIMIT {max(limit, 1)}",
        {name: value for name, (_, value) in given.items()},
    )
    return [AccessEntry(**row) for row in rows]


def _insert(
    store: Store, table: str, columns: tuple[tuple[str, str], ...], row: dict[str, Any]
) -> None:
    names = ", ".join(f"`{name}`" for name, _ in columns)
    # Parameters are typed without LowCardinality, which only changes how a column is stored.
    values = ", ".join(f"{{{name}:{kind.replace(LABEL, 'String')}}}" for name, kind in columns)
    store.command(f"INSERT INTO {store.database}.{table} ({names}) VALUES ({values})", row)


def _ddl(columns: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"`{name}` {kind}" for name, kind in columns)


def _names(columns: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"`{name}`" for name, _ in columns)


def _now() -> datetime:
    return datetime.now(UTC)
