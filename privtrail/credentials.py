"""The API token a local client sends: PRIVTRAIL_API_TOKEN, or else the admin token that
`privtrail up` (the store/API process, on loopback) writes to the data directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from config.settings import Settings
from privtrail.client import ApiClient

TOKEN_FILE: Final = "api-token"


def token_path(settings: Settings) -> Path:
    return settings.data_dir / TOKEN_FILE


def local_token(settings: Settings) -> str | None:
    if settings.api_token is not None:
        return settings.api_token.get_secret_value()
    try:
        return token_path(settings).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def write_token(path: Path, token: str) -> None:
    """Write `token` readable by its owner only (0600), from its first byte on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # a file that existed keeps its mode through O_CREAT
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(token + "\n")


def api_client(settings: Settings, timeout: float = 10.0) -> ApiClient:
    """A client of the configured API that sends the local token."""
    return ApiClient(settings.api_url, timeout=timeout, token=local_token(settings))
