"""Per-subject keys: stable pseudonyms while a subject is kept, none to recompute once erased."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from events.pseudonyms import Retiring, SubjectKey, SubjectKeys, erasure_day, lookup_id
from events.tags import pseudonymise

MASTER = b"deployment-key"
ERASED = datetime(2026, 3, 4, 15, 30, tzinfo=UTC)


def counting_secrets() -> Any:
    numbers = itertools.count(1)
    return lambda: next(numbers).to_bytes(32, "big")


def test_a_subject_keeps_its_pseudonym_and_it_is_not_the_deployment_keyed_one() -> None:
    keys = SubjectKeys(MASTER, {}, counting_secrets())
    first = keys.resolve("xpertaize", "cand-0042", 1, 0)
    again = keys.resolve("xpertaize", "cand-0042", 1, 9)
    assert first.pseudonym == again.pseudonym and first.erased_at is None and first.until is None
    assert first.pseudonym != pseudonymise(MASTER, "xpertaize", "cand-0042")
    assert keys.resolve("linkxup", "cand-0042", 1, 0).pseudonym != first.pseudonym


def test_a_recovered_table_gives_the_same_pseudonym() -> None:
    keys = SubjectKeys(MASTER, {}, counting_secrets())
    pseudonym = keys.resolve("xpertaize", "cand-0042", 2, 0).pseudonym
    written = keys.take_pending()
    assert [partition for partition, _ in written.values()] == [2]
    restarted = SubjectKeys(MASTER, recovered(written), counting_secrets())
    assert restarted.resolve("xpertaize", "cand-0042", 2, 1).pseudonym == pseudonym
    assert restarted.take_pending() == {}


def recovered(written: dict[str, tuple[int, SubjectKey]]) -> dict[str, Any]:
    """What a recovering worker's table holds: the changelog's JSON, decoded."""
    return {lookup: key.model_dump(mode="json") for lookup, (_, key) in written.items()}


def erased_at_offset_7() -> tuple[SubjectKeys, dict[str, Any], str]:
    table: dict[str, Any] = {}
    keys = SubjectKeys(MASTER, table, counting_secrets())
    old = keys.resolve("xpertaize", "cand-0042", 0, 5).pseudonym
    keys.erase("xpertaize", "cand-0042", 0, 7, ERASED)
    return keys, table, old


def test_erasure_retires_the_secret_for_later_offsets_and_keeps_only_the_day() -> None:
    keys, table, old = erased_at_offset_7()
    lookup = lookup_id(MASTER, "xpertaize", "cand-0042")
    day = datetime(2026, 3, 4, tzinfo=UTC)
    retiring = Retiring(secret=(1).to_bytes(32, "big").hex(), partition=0, offset=7)
    assert table[lookup] == SubjectKey(erased_at=day, retiring=[retiring])
    assert keys.take_pending()[lookup] == (0, table[lookup])
    # The events up to the fulfilment keep the old pseudonym, the later ones start erased.
    assert keys.resolve("xpertaize", "cand-0042", 0, 7) == (old, None, 7)
    new = keys.resolve("xpertaize", "cand-0042", 0, 8)
    assert new.pseudonym != old and new.erased_at == day == erasure_day(ERASED)


def test_judging_the_fulfilment_again_changes_nothing() -> None:
    keys, table, old = erased_at_offset_7()
    keys.take_pending()
    before = dict(table)
    assert keys.resolve("xpertaize", "cand-0042", 0, 7).pseudonym == old
    keys.erase("xpertaize", "cand-0042", 0, 7, ERASED)
    assert table == before and keys.take_pending() == {}


def test_the_retired_secret_is_shredded_once_the_fulfilment_is_committed() -> None:
    keys, table, old = erased_at_offset_7()
    new = keys.resolve("xpertaize", "cand-0042", 0, 9).pseudonym
    assert new != old
    keys.take_pending()
    assert keys.drop_committed({0: 7}) == 0  # offset 7 itself may still be judged again
    assert keys.drop_committed({1: 100}) == 0  # another partition's offsets say nothing
    assert keys.drop_committed({0: 8}) == 1
    lookup = lookup_id(MASTER, "xpertaize", "cand-0042")
    ((partition, written),) = keys.take_pending().values()
    assert partition == 0 and written == table[lookup]
    assert written.retiring == [] and (1).to_bytes(32, "big").hex() not in written.model_dump_json()
    assert keys.resolve("xpertaize", "cand-0042", 0, 9).pseudonym == new
    assert keys.drop_committed({0: 100}) == 0


def test_a_restarted_worker_shreds_the_retiring_secrets_of_its_partitions() -> None:
    keys, _, _ = erased_at_offset_7()
    table = recovered(keys.take_pending())
    elsewhere = SubjectKeys(MASTER, table, counting_secrets())
    elsewhere.index_retiring({1, 2})
    assert elsewhere.drop_committed({0: 8}) == 0  # not its partition: its owner shreds it

    owner = SubjectKeys(MASTER, table, counting_secrets())
    owner.index_retiring({0})
    assert owner.drop_committed({0: 8}) == 1
    ((_, written),) = owner.take_pending().values()
    assert written.retiring == [] and written.erased_at == datetime(2026, 3, 4, tzinfo=UTC)


def test_two_erasures_before_a_commit_keep_each_secret_to_its_own_offset() -> None:
    keys = SubjectKeys(MASTER, {}, counting_secrets())
    first = keys.resolve("o", "s", 0, 1).pseudonym
    keys.erase("o", "s", 0, 2, datetime(2026, 1, 1, tzinfo=UTC))
    second = keys.resolve("o", "s", 0, 3).pseudonym
    keys.erase("o", "s", 0, 4, ERASED)
    third = keys.resolve("o", "s", 0, 5).pseudonym
    assert len({first, second, third}) == 3
    pseudonyms = [keys.resolve("o", "s", 0, offset).pseudonym for offset in range(6)]
    assert pseudonyms == [first] * 3 + [second] * 2 + [third]
    assert keys.drop_committed({0: 3}) == 1
    assert [keys.resolve("o", "s", 0, offset).pseudonym for offset in (3, 4, 5)] == pseudonyms[3:]


def test_a_later_erasure_moves_the_day_and_an_earlier_one_does_not() -> None:
    keys = SubjectKeys(MASTER, {}, counting_secrets())
    keys.resolve("o", "s", 0, 0)
    keys.erase("o", "s", 0, 0, ERASED)
    keys.resolve("o", "s", 0, 1)
    keys.erase("o", "s", 0, 1, datetime(2026, 1, 1, tzinfo=UTC))
    assert keys.resolve("o", "s", 0, 2).erased_at == datetime(2026, 3, 4, tzinfo=UTC)


def test_lookup_ids_differ_from_pseudonyms_and_between_orgs() -> None:
    lookup = lookup_id(MASTER, "xpertaize", "cand-0042")
    assert len(lookup) == 32
    assert not lookup.startswith(pseudonymise(MASTER, "xpertaize", "cand-0042"))
    assert lookup != lookup_id(MASTER, "linkxup", "cand-0042")
    assert lookup != lookup_id(b"other-key", "xpertaize", "cand-0042")
