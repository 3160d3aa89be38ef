"""Erasure reaches the raw bytes of rejected inputs too: they may name the subject in the clear.

Each rejected input is stored with the lookup id of the subject it names (events/pseudonyms.py),
when its bytes tell one: an HMAC under the deployment's key, never the id itself. The store
process follows the worker's key topic (events/key_directory.py); once a subject is erased
there, the raw bytes and key of its rejected inputs are blanked, and their lookup id with them,
whether they were stored before the erasure (a mutation, at once or when the store starts again)
or arrive after it (blanked before they are written). Rows of a store older than the lookup
id are given theirs when the store starts. What stays is the evidence: that an input
was rejected, when, where from, and why (reasons name fields, never their values).
"""

from __future__ import annotations

import codecs
import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import orjson

from events.limits import MAX_EVENT_BYTES
from events.pseudonyms import lookup_id
from sinks import Rejected
from sinks.clickhouse.expiry import erase_raw_bytes, mark_subjects, unmarked_raw_bytes
from sinks.clickhouse.store import Store

log = logging.getLogger(__name__)

# Bytes that are not one JSON document (cut, or malformed) are searched for the attributes.
_JSON_STRING = rb'("(?:[^"\\]|\\.)*")'
_ORG = re.compile(rb'"org"\s*:\s*' + _JSON_STRING)
_SUBJECT_ID = re.compile(rb'"subject"\s*:\s*\{[^{}]*?"id"\s*:\s*' + _JSON_STRING)


class Erasures(Protocol):
    """Which subjects were erased, by lookup id (events/key_directory.py KeyFollower)."""

    def erased(self, lookups: Iterable[str]) -> set[str]:
        """Those of `lookups` whose subject was erased."""

    def take_erased(self) -> set[str]:
        """The lookup ids erased since the last call: every erased one, on the first."""


def subject_lookup(master: bytes, raw: bytes, key: bytes | None) -> str | None:
    """The lookup id of the subject a rejected input names: `data.org` and `data.subject.id` of
    its bytes, the subject id from its key (the contract's message key) when they lack one.
    None when no org and subject id can be read."""
    org, subject_id = _named_subject(raw.removeprefix(codecs.BOM_UTF8))
    if org is None:
        return None
    if subject_id is None and key:
        subject_id = key.decode("utf-8", errors="replace")
    return lookup_id(master, org, subject_id) if subject_id else None


def _named_subject(raw: bytes) -> tuple[str | None, str | None]:
    document = _json(raw) if len(raw) <= MAX_EVENT_BYTES else None
    if document is None:
        return _searched(raw[:MAX_EVENT_BYTES])
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict):
        return None, None
    subject = data.get("subject")
    subject_id = subject.get("id") if isinstance(subject, dict) else None
    return _text(data.get("org")), _text(subject_id)


def _searched(raw: bytes) -> tuple[str | None, str | None]:
    org, subject = _ORG.search(raw), _SUBJECT_ID.search(raw)
    return (
        _text(_json(org.group(1)) if org else None),
        _text(_json(subject.group(1)) if subject else None),
    )


def _json(raw: bytes) -> Any:
    """The JSON value of `raw`; None when it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def blanked(row: Rejected) -> Rejected:
    """The row without the bytes that may name its subject (as the raw bytes' TTL leaves it)."""
    return row.model_copy(update={"raw": b"", "key": None})


class RejectedShredder:
    """Writes rejected inputs with their subject's lookup id, and blanks those of erased ones.

    Both run on the ingest thread, in its order: a row is checked against the erasures known
    when it is written, and an erasure learnt later is applied to the stored rows after that
    write, so no row slips between the two.
    """

    def __init__(self, master: bytes, store: Store, erasures: Erasures | None) -> None:
        self._master = master
        self._store = store
        self._erasures = erasures
        # Erasures learnt but not yet applied to the stored rows (kept while the store fails).
        self._pending: set[str] = set()
        self._marked = False

    def write(self, rows: Sequence[Rejected]) -> None:
        lookups = [subject_lookup(self._master, row.raw, row.key) for row in rows]
        erased = self._erasures.erased(filter(None, lookups)) if self._erasures else set()
        if erased:
            log.info("rejected inputs of %d erased subjects stored blanked", len(erased))
        kept = [lookup not in erased for lookup in lookups]
        self._store.write_rejected(
            [row if keep else blanked(row) for row, keep in zip(rows, kept, strict=True)],
            [(lookup or "") if keep else "" for lookup, keep in zip(lookups, kept, strict=True)],
        )

    def apply_erasures(self) -> int:
        """Blank the stored rejected inputs of subjects erased since the last call; how many
        subjects had any. The first call gives the older rows their lookup ids first."""
        if not self._marked:
            self.mark_stored()
            self._marked = True
        if self._erasures is not None:
            self._pending |= self._erasures.take_erased()
        if not self._pending:
            return 0
        found = erase_raw_bytes(self._store, sorted(self._pending))
        self._pending.clear()
        return found

    def mark_stored(self) -> int:
        """Give the stored rejected inputs without a lookup id the one their bytes tell (rows
        of a store older than the column); returns how many were given one."""
        rows = unmarked_raw_bytes(self._store)
        lookups = {
            row["rejection_id"]: lookup
            for row in rows
            if (lookup := subject_lookup(self._master, row["raw"], row["key"]))
        }
        if lookups:
            mark_subjects(self._store, lookups)
        return len(lookups)
