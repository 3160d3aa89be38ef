"""Per-subject keys behind the pseudonyms, so that erasing a subject unlinks its trail.

A subject's pseudonym is an HMAC of its id under a random secret of its own. The secrets are
kept by lookup id, itself an HMAC of the id under the deployment's pseudonym key (with its own
domain tag, so it never equals a pseudonym). Erasure takes the secret away and keeps the day it
happened: no one, holding the deployment's key or not, can compute the old pseudonym from the id
any more, so the rows stored under it stay as evidence of what happened without saying to whom.

Which secret an event is judged under depends on its source offset alone, never on batching or
on when the worker crashed: an erasure fulfilled at offset `o` of partition `p` retires the
secret for the subject's events after `o`, but keeps it ("retiring", with `p` and `o`) until the
group's committed offset of `p` has passed `o`. Up to then a batch judged again after a crash
gives the events up to `o` the old pseudonym, byte for byte as before; after it, nothing will
judge them again and the secret is dropped. An id seen after its erasure gets a new secret,
hence a new pseudonym, whose trail starts with the erasure day (so processing after an erasure
is still caught).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping, MutableMapping
from datetime import UTC, datetime, time
from typing import Any, NamedTuple

from pydantic import BaseModel, Field

from events.tags import pseudonymise

SECRET_BYTES = 32
_LOOKUP_TAG = "privtrail:subject-key"


class Retiring(BaseModel):
    """A secret an erasure took away, kept until the erasure's source offset is committed."""

    secret: str
    erased_at: datetime | None = None  # the erasure day before this one
    partition: int
    offset: int  # the fulfilment's: the last event judged under this secret

    def holds(self, partition: int, offset: int) -> bool:
        return partition == self.partition and offset <= self.offset


class SubjectKey(BaseModel):
    """One subject's entry: its secret (hex) while it has one, the day of its last erasure, and
    the secrets erasures took away that a batch judged again may still need (oldest first)."""

    secret: str | None = None
    erased_at: datetime | None = None
    retiring: list[Retiring] = Field(default_factory=list)

    def pseudonym(self, org: str, subject_id: str) -> str:
        if self.secret is None:
            raise ValueError("an erased subject has no pseudonym")
        return pseudonymise(bytes.fromhex(self.secret), org, subject_id)


class Resolved(NamedTuple):
    """A subject's pseudonym at a source offset, the day of its erasure before then (None:
    never), and the last offset of that partition it holds for (None: all later ones)."""

    pseudonym: str
    erased_at: datetime | None
    until: int | None


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


def _retiring_partitions(value: Any) -> set[int]:
    """The partitions of a table value's retiring secrets; most values hold none, and are
    told apart without parsing them."""
    if isinstance(value, dict) and not value.get("retiring"):
        return set()
    key = parse_key(value)
    return {old.partition for old in key.retiring} if key else set()


class SubjectKeys:
    """The worker's view of the key table: resolves subjects to pseudonyms, erases them.

    `entries` is the table's mapping (lookup id -> key); every change is also queued in
    `pending`, by lookup id with its source partition, for the caller to write to the table's
    changelog before any output that depends on it.
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
        # Lookup ids whose entries hold retiring secrets, of the partitions last indexed.
        self._retiring: set[str] = set()

    def resolve(self, org: str, subject_id: str, partition: int, offset: int) -> Resolved:
        """The pseudonym of the subject's event at `offset` of `partition`; a new secret if the
        subject has none there."""
        lookup = lookup_id(self._master, org, subject_id)
        key = parse_key(self._entries.get(lookup))
        for old in key.retiring if key else ():
            if old.holds(partition, offset):
                secret = bytes.fromhex(old.secret)
                return Resolved(pseudonymise(secret, org, subject_id), old.erased_at, old.offset)
        if key is None or key.secret is None:
            fresh = self._new_secret().hex()
            key = key.model_copy(update={"secret": fresh}) if key else SubjectKey(secret=fresh)
            self._put(lookup, partition, key)
        return Resolved(key.pseudonym(org, subject_id), key.erased_at, None)

    def erase(self, org: str, subject_id: str, partition: int, offset: int, at: datetime) -> None:
        """Erase the subject by its fulfilment at `offset` of `partition`: its secret retires
        there. Judging the fulfilment again changes nothing."""
        lookup = lookup_id(self._master, org, subject_id)
        key = parse_key(self._entries.get(lookup))
        if key is None or key.secret is None:
            return  # never resolved here: nothing to erase
        if any(old.partition == partition and old.offset >= offset for old in key.retiring):
            return  # erased at this offset already, by this batch's first judging
        day = erasure_day(at)
        if key.erased_at is not None:
            day = max(day, key.erased_at)
        old = Retiring(
            secret=key.secret, erased_at=key.erased_at, partition=partition, offset=offset
        )
        self._put(lookup, partition, SubjectKey(erased_at=day, retiring=[*key.retiring, old]))
        self._retiring.add(lookup)

    @property
    def retiring(self) -> bool:
        """Whether retiring secrets wait for their erasure's offset to be committed."""
        return bool(self._retiring)

    def index_retiring(self, partitions: set[int]) -> None:
        """Find the retiring secrets of these partitions (after a restart or a rebalance)."""
        self._retiring = {
            lookup
            for lookup, value in self._entries.items()
            if _retiring_partitions(value) & partitions
        }

    def drop_committed(self, committed: Mapping[int, int]) -> int:
        """Drop the retiring secrets whose erasure is behind the committed offset of its
        partition (partition -> next offset to read); returns how many were dropped."""
        dropped = 0
        for lookup in list(self._retiring):
            key = parse_key(self._entries.get(lookup))
            if key is None:
                self._retiring.discard(lookup)
                continue
            done = [old for old in key.retiring if committed.get(old.partition, -1) > old.offset]
            if not done:
                continue
            kept = [old for old in key.retiring if old not in done]
            self._put(lookup, done[0].partition, key.model_copy(update={"retiring": kept}))
            dropped += len(done)
            if not kept:
                self._retiring.discard(lookup)
        return dropped

    def take_pending(self) -> dict[str, tuple[int, SubjectKey]]:
        pending, self.pending = self.pending, {}
        return pending

    def _put(self, lookup: str, partition: int, key: SubjectKey) -> None:
        self._entries[lookup] = key
        self.pending[lookup] = (partition, key)
