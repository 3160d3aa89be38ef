"""Per-subject keys: stable pseudonyms while a subject is kept, none to recompute once erased."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from events.pseudonyms import SubjectKey, SubjectKeys, erasure_day, lookup_id
from events.tags import pseudonymise

MASTER = b"deployment-key"
ERASED = datetime(2026, 3, 4, 15, 30, tzinfo=UTC)


def counting_secrets() -> Any:
    numbers = itertools.count(1)
    return lambda: next(numbers).to_bytes(32, "big")


def test_a_subject_keeps_its_pseudonym_and_it_is_not_the_deployment_keyed_one() -> None:
    keys = SubjectKeys(MASTER, {}, counting_secrets())
    first, erased = keys.resolve("xpertaize", "cand-0042", 1)
    again, _ = keys.resolve("xpertaize", "cand-0042", 1)
    assert first == again and erased is None
    assert first != pseudonymise(MASTER, "xpertaize", "cand-0042")
    assert keys.resolve("linkxup", "cand-0042", 1)[0] != first


def test_a_recovered_table_gives_the_same_pseudonym() -> None:
    table: dict[str, Any] = {}
    keys = SubjectKeys(MASTER, table, counting_secrets())
    pseudonym, _ = keys.resolve("xpertaize", "cand-0042", 2)
    written = keys.take_pending()
    # What a recovering worker's table holds: the changelog's JSON, decoded.
    recovered = {lookup: key.model_dump(mode="json") for lookup, (_, key) in written.items()}
    assert [partition for partition, _ in written.values()] == [2]
    restarted = SubjectKeys(MASTER, recovered, counting_secrets())
    assert restarted.resolve("xpertaize", "cand-0042", 2)[0] == pseudonym
    assert restarted.take_pending() == {}


def test_erasure_shreds_the_secret_and_keeps_only_the_day() -> None:
    table: dict[str, Any] = {}
    keys = SubjectKeys(MASTER, table, counting_secrets())
    old, _ = keys.resolve("xpertaize", "cand-0042", 0)
    keys.take_pending()
    assert keys.erase(old, ERASED)
    lookup = lookup_id(MASTER, "xpertaize", "cand-0042")
    assert keys.take_pending() == {lookup: (0, SubjectKey(erased_at=erasure_day(ERASED)))}
    assert table[lookup] == SubjectKey(erased_at=datetime(2026, 3, 4, tzinfo=UTC))
    # Seen again: a new pseudonym, which starts from the erasure day.
    new, erased = keys.resolve("xpertaize", "cand-0042", 0)
    assert new != old and erased == datetime(2026, 3, 4, tzinfo=UTC)


def test_only_a_subject_resolved_since_the_last_batch_can_be_erased() -> None:
    keys = SubjectKeys(MASTER, {}, counting_secrets())
    pseudonym, _ = keys.resolve("xpertaize", "cand-0042", 0)
    keys.forget_resolved()
    assert not keys.erase(pseudonym, ERASED)
    assert not keys.erase("no-such-pseudonym", ERASED)


def test_a_later_erasure_moves_the_day_and_an_earlier_one_does_not() -> None:
    keys = SubjectKeys(MASTER, {}, counting_secrets())
    keys.erase(keys.resolve("o", "s", 0)[0], ERASED)
    keys.erase(keys.resolve("o", "s", 0)[0], datetime(2026, 1, 1, tzinfo=UTC))
    assert keys.resolve("o", "s", 0)[1] == datetime(2026, 3, 4, tzinfo=UTC)


def test_lookup_ids_differ_from_pseudonyms_and_between_orgs() -> None:
    lookup = lookup_id(MASTER, "xpertaize", "cand-0042")
    assert len(lookup) == 32
    assert not lookup.startswith(pseudonymise(MASTER, "xpertaize", "cand-0042"))
    assert lookup != lookup_id(MASTER, "linkxup", "cand-0042")
    assert lookup != lookup_id(b"other-key", "xpertaize", "cand-0042")
