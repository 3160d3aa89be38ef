"""Erasing a subject blanks the raw bytes of its rejected inputs (sinks/erasure.py), on a real
chDB store: those stored before the erasure, those arriving after it, and those a store that
starts again finds."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest

from events.limits import DEAD_LETTER_KEPT_BYTES, MAX_EVENT_BYTES
from events.pseudonyms import lookup_id
from sinks import Rejected
from sinks.clickhouse.expiry import erase_raw_bytes, expire_raw_bytes
from sinks.clickhouse.store import Store
from sinks.erasure import RejectedShredder, subject_lookup
from tests.unit.chdb_store import store_dsn
from tests.unit.test_raw_expiry import rejected as expiring

MASTER = b"test-pseudonym-key"
ORG = "xpertaize"
ERASED = "cand-0042"
KEPT = "cand-0077"
# Within the raw bytes' TTL, which would blank them otherwise.
RECEIVED = datetime.now(UTC).replace(microsecond=0)


def event_bytes(subject_id: str, **data: object) -> bytes:
    """A valid-looking event with a bad field, as a producer would send it."""
    body = {"org": ORG, "subject": {"kind": "candidate", "id": subject_id}, **data}
    return json.dumps({"id": "e-1", "type": "privacy.data.accessed", "data": body}).encode()


def lookup(subject_id: str) -> str:
    return lookup_id(MASTER, ORG, subject_id)


class Known:
    """Erasures as the key topic tells them (events/key_directory.py KeyFollower)."""

    def __init__(self, *subjects: str) -> None:
        self.lookups = {lookup(subject) for subject in subjects}
        self.new = set(self.lookups)

    def erase(self, subject: str) -> None:
        self.lookups.add(lookup(subject))
        self.new.add(lookup(subject))

    def erased(self, lookups: Iterable[str]) -> set[str]:
        return self.lookups & set(lookups)

    def take_erased(self) -> set[str]:
        taken, self.new = self.new, set()
        return taken


def rejected(offset: int, subject_id: str) -> Rejected:
    """An input naming the subject, rejected for its data use."""
    update = {
        "raw": event_bytes(subject_id, data_use="no-such-use"),
        "key": subject_id.encode(),
        "field": "data.data_use",
        "reason": "unknown data use",
    }
    return expiring(offset, RECEIVED).model_copy(update=update)


def stored(store: Store) -> dict[int, tuple[bytes, bytes | None, str]]:
    """Offset -> (raw, key, lookup id) of every stored rejected input."""
    rows = store.query_rows(
        f"SELECT source_offset AS o, raw, key, subject_lookup AS l "
        f"FROM {store.database}.rejected_events",
        {},
        {"raw": "bytes", "key": "bytes"},
    )
    return {row["o"]: (row["raw"], row["key"], row["l"]) for row in rows}


def test_the_lookup_id_is_read_from_an_event_with_a_bad_field() -> None:
    assert subject_lookup(MASTER, event_bytes(ERASED, data_use=7), None) == lookup(ERASED)


def test_the_lookup_id_is_searched_for_in_bytes_that_are_not_json() -> None:
    cut = event_bytes(ERASED, data_use="hiring")[:-5]
    assert subject_lookup(MASTER, cut, None) == lookup(ERASED)
    escaped = b'{"data": {"org": "xpert\\u0061ize", "subject": {"kind": "c", "id": "cand-0042"'
    assert subject_lookup(MASTER, escaped, None) == lookup(ERASED)


def test_an_oversized_input_cut_to_its_start_still_names_its_subject() -> None:
    padding = "x" * MAX_EVENT_BYTES
    oversized = event_bytes(ERASED, note=padding)
    assert len(oversized) > MAX_EVENT_BYTES
    assert subject_lookup(MASTER, oversized, None) == lookup(ERASED)
    assert subject_lookup(MASTER, oversized[:DEAD_LETTER_KEPT_BYTES], None) == lookup(ERASED)


def test_the_key_names_the_subject_when_the_bytes_do_not() -> None:
    no_subject = json.dumps({"data": {"org": ORG}}).encode()
    assert subject_lookup(MASTER, no_subject, ERASED.encode()) == lookup(ERASED)
    assert subject_lookup(MASTER, no_subject, None) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff\xfe not utf-8 \x00",
        b"[1, 2, 3]",
        b'{"data": "text"}',
        b'{"data": {"subject": {"id": "cand-0042"}}}',  # no org: no lookup id to find
        b'{"data": {"org": 12, "subject": {"id": "cand-0042"}}}',
        b'{"data": {"org": "xpertaize", "subject": {"id": ""}}}',
        b'{"org": "xpertaize", "subject": {"id": "\\x"',  # a bad escape
    ],
)
def test_bytes_that_name_no_subject_have_no_lookup_id(raw: bytes) -> None:
    assert subject_lookup(MASTER, raw, None) is None


def test_rejected_inputs_are_stored_with_their_lookup_id_not_their_subject_id() -> None:
    store = Store.open(store_dsn())
    RejectedShredder(MASTER, store, None).write([rejected(1, KEPT)])
    raw, key, found = stored(store)[1]
    assert (raw, key, found) == (rejected(1, KEPT).raw, KEPT.encode(), lookup(KEPT))
    store.close()


def test_an_erasure_blanks_the_stored_inputs_of_its_subject_only() -> None:
    store = Store.open(store_dsn())
    expire_raw_bytes(store, timedelta(days=30))  # as the service sets the store up
    erasures = Known()
    shredder = RejectedShredder(MASTER, store, erasures)
    shredder.write([rejected(1, ERASED), rejected(2, KEPT), rejected(3, ERASED)])
    assert shredder.apply_erasures() == 0

    erasures.erase(ERASED)
    assert shredder.apply_erasures() == 1

    rows = stored(store)
    assert rows[1] == rows[3] == (b"", None, "")
    assert rows[2] == (rejected(2, KEPT).raw, KEPT.encode(), lookup(KEPT))
    # The evidence stays: that the input was rejected, when, where from, and why.
    evidence = {row.source_offset: row for row in store.rejected()}[1]
    assert (evidence.received_at, evidence.field) == (RECEIVED, "data.data_use")
    assert evidence.reason == "unknown data use"
    store.close()


def test_an_input_arriving_after_its_subjects_erasure_is_stored_blanked() -> None:
    store = Store.open(store_dsn())
    RejectedShredder(MASTER, store, Known(ERASED)).write([rejected(1, ERASED), rejected(2, KEPT)])
    rows = stored(store)
    assert rows[1] == (b"", None, "")
    assert rows[2][0] == rejected(2, KEPT).raw
    store.close()


def test_a_store_that_starts_again_blanks_what_was_stored_before_it_learnt_the_erasure() -> None:
    dsn = store_dsn()
    store = Store.open(dsn)
    RejectedShredder(MASTER, store, None).write([rejected(1, ERASED)])
    store.close()

    store = Store.open(dsn)
    # The key topic read from its start tells every erasure at first.
    assert RejectedShredder(MASTER, store, Known(ERASED)).apply_erasures() == 1
    assert stored(store)[1] == (b"", None, "")
    store.close()


def test_rows_of_an_older_store_are_given_their_lookup_ids_and_blanked() -> None:
    store = Store.open(store_dsn())
    # Written without lookup ids, as before the column; a rejection id names a topic as sent.
    odd = rejected(3, ERASED).model_copy(update={"rejection_id": "it's-0-3"})
    store.write_rejected([rejected(1, ERASED), rejected(2, KEPT), odd])
    store.write_rejected([expiring(4, RECEIVED).model_copy(update={"key": None})])

    shredder = RejectedShredder(MASTER, store, Known(ERASED))
    assert shredder.apply_erasures() == 1

    rows = stored(store)
    assert rows[1] == rows[3] == (b"", None, "")
    assert rows[2][2] == lookup(KEPT)
    assert rows[4][2] == ""  # names no org: nothing to look up
    assert shredder.mark_stored() == 0
    store.close()


def test_only_lookup_ids_reach_the_blanking_statement() -> None:
    store = Store.open(store_dsn())
    with pytest.raises(ValueError, match="not a subject lookup id"):
        erase_raw_bytes(store, ["x' OR 1 = 1 --"])
    store.close()
