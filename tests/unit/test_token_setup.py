"""The tokens the store/API process starts with: the data directory's admin token on loopback,
PRIVTRAIL_API_TOKEN registered once, and no API beyond loopback without a token."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from config.settings import Settings
from privtrail.auth import hash_token
from privtrail.credentials import local_token, token_path
from privtrail.security import DEV_KEY_WARNING, InsecureSettings, is_loopback
from privtrail.token_setup import TokenSetupError, prepare_tokens, start_warning
from sinks.clickhouse.access import revoke_token, token_by_hash
from sinks.clickhouse.store import Store
from tests.unit.chdb_store import store_dsn


@pytest.fixture
def store() -> Iterator[Store]:
    opened = Store.open(store_dsn())
    yield opened
    opened.close()


def _valid(store: Store, token: str | None) -> bool:
    found = token_by_hash(store, hash_token(token or ""))
    return found is not None and found.problem(datetime.now(UTC)) is None


def test_on_loopback_an_admin_token_is_written_for_its_owner_only_and_kept(
    store: Store, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path)
    prepare_tokens(settings, store)
    first = local_token(settings)
    prepare_tokens(settings, store)

    assert stat.S_IMODE(token_path(settings).stat().st_mode) == 0o600
    assert first is not None and local_token(settings) == first
    found = token_by_hash(store, hash_token(first))
    assert found is not None and (found.role, found.orgs) == ("admin", ["*"])


def test_a_revoked_local_token_is_replaced_at_the_next_start(store: Store, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    prepare_tokens(settings, store)
    old = local_token(settings)
    found = token_by_hash(store, hash_token(old or ""))
    assert found is not None
    revoke_token(store, found)

    prepare_tokens(settings, store)

    assert local_token(settings) != old and _valid(store, local_token(settings))


def test_beyond_loopback_with_no_token_the_service_refuses_to_start(
    store: Store, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, api_host="0.0.0.0")
    with pytest.raises(TokenSetupError, match=r"refusing to serve the API on 0\.0\.0\.0"):
        prepare_tokens(settings, store)
    assert not token_path(settings).exists()


def test_a_configured_token_is_registered_once_and_a_revocation_sticks(
    store: Store, tmp_path: Path
) -> None:
    secret = "ptk_configured-by-the-operator-0123456789abcdef"
    settings = Settings(data_dir=tmp_path, api_host="0.0.0.0", api_token=SecretStr(secret))
    prepare_tokens(settings, store)
    assert _valid(store, secret)
    found = token_by_hash(store, hash_token(secret))
    assert found is not None
    revoke_token(store, found)

    with pytest.raises(TokenSetupError):
        prepare_tokens(settings, store)  # the only token is revoked: nothing guards the API
    assert not _valid(store, secret)


def test_beyond_loopback_one_refusal_names_the_development_key_and_the_token() -> None:
    with pytest.raises(InsecureSettings) as both:
        start_warning(Settings(api_host="0.0.0.0"))
    assert "PRIVTRAIL_PSEUDONYM_KEY" in str(both.value)
    assert "also needs a token" in str(both.value) and "PRIVTRAIL_API_TOKEN" in str(both.value)

    configured = Settings(api_host="0.0.0.0", api_token=SecretStr("ptk_configured"))
    with pytest.raises(InsecureSettings) as key_only:
        start_warning(configured)
    assert "PRIVTRAIL_PSEUDONYM_KEY" in str(key_only.value)
    assert "PRIVTRAIL_API_TOKEN" not in str(key_only.value)

    assert start_warning(Settings(api_host="0.0.0.0", pseudonym_key="private")) is None
    assert start_warning(Settings()) == DEV_KEY_WARNING


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False),
     ("10.0.0.5", False), ("api.example.com", False)],
)  # fmt: skip
def test_only_loopback_addresses_count_as_local(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
