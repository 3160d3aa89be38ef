"""The tokens the store/API process starts with: zero configuration on loopback, and no API
open to a network without tokens."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from config.settings import Settings
from privtrail.auth import hash_token, issue_token
from privtrail.credentials import local_token, token_path, write_token
from privtrail.security import InsecureSettings, is_loopback, pseudonym_key_warning
from sinks.clickhouse.access import (
    EVERY_ORG,
    TokenRecord,
    ensure_access_tables,
    has_valid_token,
    save_token,
    token_by_hash,
)
from sinks.clickhouse.store import Store

log = logging.getLogger(__name__)

LOCAL_ADMIN = "local admin (data dir)"
CONFIGURED_ADMIN = "PRIVTRAIL_API_TOKEN"
TOKEN_ADVICE = (
    "set PRIVTRAIL_API_TOKEN to a long random secret (it becomes an admin token), or serve on "
    "127.0.0.1 once and create tokens with `privtrail token create`"
)


class TokenSetupError(InsecureSettings):
    """The API would be served beyond loopback with no token to guard it."""


def prepare_tokens(settings: Settings, store: Store) -> None:
    """Register PRIVTRAIL_API_TOKEN if set; on loopback, make sure the data directory holds a
    valid admin token; beyond loopback, refuse to start unless some token is valid."""
    ensure_access_tables(store)
    if settings.api_token is not None:
        _register(store, settings.api_token.get_secret_value())
    if is_loopback(settings.api_host):
        _ensure_local_admin(settings, store)
    elif not has_valid_token(store):
        raise TokenSetupError(
            f"refusing to serve the API on {settings.api_host}, beyond loopback, with no API "
            f"token: {TOKEN_ADVICE}"
        )


def start_warning(settings: Settings) -> str | None:
    """The warning to print at start while the development pseudonym key is in use; beyond
    loopback, InsecureSettings that also names the token the API will need, unless one is
    configured: both refusals in one start, before the store (which holds tokens) opens."""
    try:
        return pseudonym_key_warning(settings)
    except InsecureSettings as error:
        if settings.api_token is not None:
            raise
        raise InsecureSettings(
            f"{error}. Beyond loopback the API also needs a token, unless the store already "
            f"holds one: {TOKEN_ADVICE}"
        ) from None


def _register(store: Store, token: str) -> None:
    # Once: a revoked or expired configured token stays so, it is not revived by a restart.
    if token_by_hash(store, hash_token(token)) is not None:
        return
    now = datetime.now(UTC)
    record = TokenRecord(
        token_id=f"env-{hash_token(token)[:8]}",
        token_hash=hash_token(token),
        role="admin",
        orgs=[EVERY_ORG],
        name=CONFIGURED_ADMIN,
        created_at=now,
        expires_at=None,
        revoked_at=None,
    )
    save_token(store, record)
    log.info("registered PRIVTRAIL_API_TOKEN as admin token %s", record.token_id)


def _ensure_local_admin(settings: Settings, store: Store) -> None:
    path = token_path(settings)
    existing = local_token(settings.model_copy(update={"api_token": None}))
    if existing is not None:
        found = token_by_hash(store, hash_token(existing))
        if found is not None and found.problem(datetime.now(UTC)) is None:
            return
    token, record = issue_token(store, "admin", [EVERY_ORG], LOCAL_ADMIN, None)
    write_token(path, token)
    log.warning(
        "wrote a new admin API token (%s) to %s, readable by you only", record.token_id, path
    )
