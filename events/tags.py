"""Markers for personal data, so a subject's identity can't leak into logs or reprs.

A `Personal` value prints as `**********` in `repr()`, `str()` and log lines; only the JSON wire
format carries the real value, because a producer has to send it and the worker has to key on it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from pydantic import PlainSerializer, SecretStr


def reveal(value: SecretStr) -> str:
    """A personal value as the JSON wire format carries it."""
    return value.get_secret_value()


Personal = Annotated[SecretStr, PlainSerializer(reveal, return_type=str, when_used="json")]


def pseudonymise(key: bytes, org: str, subject_id: str) -> str:
    """A stable, keyed pseudonym for a subject of an org (HMAC-SHA256, 80 bits, hex)."""
    digest = hmac.new(key, f"{org}\x1f{subject_id}".encode(), hashlib.sha256).hexdigest()
    return digest[:20]
