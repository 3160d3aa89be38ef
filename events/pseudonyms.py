"""Per-subject keys behind the pseudonyms, so that erasing a subject unlinks its trail.

A subject's pseudonym is an HMAC of its id under a random secret of its own. The secrets are
kept by lookup id, itself an HMAC of the id under the deployment's pseudonym key (with its own
domain tag, so it never equals a pseudonym). Erasure replaces the secret by the day it happened:
no one, holding the deployment's key or not, can compute the old pseudonym from the id any more,
so the rows stored under it stay as evidence of what happened without saying to whom.

An id seen again after its erasure gets a new secret, hence a new pseudonym, whose trail starts
with the erasure day (so processing after an erasure is still caught).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime, time
from typing import Any

from pydantic import BaseModel

from events.tags import pseudonymise

SECRET_BYTES = 32
_LOOKUP_TAG = "privtrail:subject-key"


class SubjectKey(BaseModel):
    """One subject's entry: its secret (hex) while it has one, the day of its last erasure."""

    secret: str | None = None
    erased_at: datetime | None = None

    def pseudonym(self, org: str, subject_id: str) -> str:
        if self.secret is None:
            raise ValueError("an erased subject has no pseudonym")
        return pseudonymise(bytes.fromhex(self.secret), org, subject_id)


def lookup_id(master: bytes, org: str, subject_id: str) -> str:
    """Where a subject's key is kept: 128 bits of HMAC, never equal to a pseudonym."""
    message = f"{_LOOKUP_TAG}\x1f{org}\x1f{subject_id}".encode()
    return hmac.new(master, message, hashlib.sha256).hexdigest()[:32]


def erasure_day(at: datetime) -> datetime:
    """The start of the UTC day of an erasure: what is kept of its time.

    The exact instant would match the stored record of the fulfilment, and through it the old
    pseudonym; a day is shared by every subject erased that day.
    """
    day = at.astimezone(UTC).date()
    return datetime.combine(day, time(), UTC)


def parse_key(value: Any) -> SubjectKey | None:
    """A key table value as stored (a model, or the JSON a recovered table holds)."""
    if value is None or isinstance(value, SubjectKey):
        return value
    return SubjectKey.model_validate(value)


class SubjectKeys:
    """The worker's view of the key table: resolves subjects to pseudonyms, erases them.

    `entries` is the table's mapping (lookup id -> key); every change is also queued in
    `pending`, by lookup id with its source partition, for the caller to write to the table's
    changelog: new secrets before any output that uses them, erasures after.
    """

    def __init__(
        self,
        master: bytes,
        entries: MutableMapping[str, Any],
        new_secret: Callable[[], bytes] = lambda: secrets.token_bytes(SECRET_BYTES),
    ) -> None:
        self._master = master
        self._entries = entries
        self._new_secret = new_secret
        self.pending: dict[str, tuple[int, SubjectKey]] = {}
        # Pseudonym -> (lookup id, partition) of subjects resolved since `forget_resolved`:
        # what an erasure, known from an audit record by pseudonym only, needs.
        self._resolved: dict[str, tuple[str, int]] = {}

    def resolve(self, org: str, subject_id: str, partition: int) -> tuple[str, datetime | None]:
        """The subject's pseudonym (a new secret if it has none) and its last erasure day."""
        lookup = lookup_id(self._master, org, subject_id)
        key = parse_key(self._entries.get(lookup))
        if key is None or key.secret is None:
            erased = key.erased_at if key else None
            key = SubjectKey(secret=self._new_secret().hex(), erased_at=erased)
            self._put(lookup, partition, key)
        pseudonym = key.pseudonym(org, subject_id)
        self._resolved[pseudonym] = (lookup, partition)
        return pseudonym, key.erased_at

    def erase(self, pseudonym: str, at: datetime) -> bool:
        """Shred the secret behind a pseudonym resolved since `forget_resolved`.

        False when it was not (already erased, or not this worker's subject).
        """
        found = self._resolved.pop(pseudonym, None)
        if found is None:
            return False
        lookup, partition = found
        previous = parse_key(self._entries.get(lookup))
        day = erasure_day(at)
        if previous is not None and previous.erased_at is not None:
            day = max(day, previous.erased_at)
        self._put(lookup, partition, SubjectKey(erased_at=day))
        return True

    def forget_resolved(self) -> None:
        self._resolved.clear()

    def take_pending(self) -> dict[str, tuple[int, SubjectKey]]:
        pending, self.pending = self.pending, {}
        return pending

    def _put(self, lookup: str, partition: int, key: SubjectKey) -> None:
        self._entries[lookup] = key
        self.pending[lookup] = (partition, key)
