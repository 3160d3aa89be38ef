"""The store process learns of erasures from the worker's key topic (events/key_directory.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from kafka import TopicPartition

from events.key_directory import KeyFollower, key_topic
from events.pseudonyms import Retiring, SubjectKey, lookup_id

MASTER = b"test-pseudonym-key"
APP = "privtrail-test"
DAY = datetime(2026, 12, 1, tzinfo=UTC)


class Record:
    def __init__(self, lookup: str, key: SubjectKey | None) -> None:
        self.key = json.dumps(lookup).encode()
        self.value = None if key is None else key.model_dump_json(exclude_defaults=True).encode()


class Topic:
    """A one-partition key topic that hands out its records, then stops its follower."""

    def __init__(self, follower: KeyFollower, records: list[Record]) -> None:
        self.follower = follower
        self.records = records
        self.tp = TopicPartition(key_topic(APP), 0)
        self.read = 0

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def assign(self, tps: list[TopicPartition]) -> None: ...

    def seek_to_beginning(self, *tps: TopicPartition) -> None: ...

    def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {self.tp: len(self.records)}

    def position(self, tp: TopicPartition) -> int:
        return self.read

    def poll(self, timeout_ms: int) -> dict[Any, list[Record]]:
        batch, self.read = self.records[self.read :], len(self.records)
        if not batch:
            self.follower.stop()
        return {self.tp: batch}


def follow(follower: KeyFollower, records: list[Record]) -> None:
    follower._follow(Topic(follower, records))
    follower._stopping.clear()


def test_erasures_are_told_once_each_and_known_after() -> None:
    follower = KeyFollower("127.0.0.1:9", APP, MASTER, {})
    erased, kept = lookup_id(MASTER, "o", "erased"), lookup_id(MASTER, "o", "kept")
    retiring = Retiring(secret="ab", partition=0, offset=4)
    follow(
        follower,
        [
            Record(erased, SubjectKey(secret="ab")),
            Record(kept, SubjectKey(secret="cd")),
            Record(erased, SubjectKey(erased_at=DAY, retiring=[retiring])),
        ],
    )
    assert follower.take_erased() == {erased}
    assert follower.take_erased() == set()
    # The retiring secret shredded, the subject seen again: the same erasure, not a new one.
    follow(
        follower,
        [
            Record(erased, SubjectKey(erased_at=DAY)),
            Record(erased, SubjectKey(secret="ef", erased_at=DAY)),
            Record(kept, None),
        ],
    )
    assert follower.take_erased() == set()
    assert follower.erased([erased, kept]) == {erased}


def test_an_entry_that_is_not_a_subject_key_is_skipped() -> None:
    follower = KeyFollower("127.0.0.1:9", APP, MASTER, {})
    broken = Record(lookup_id(MASTER, "o", "x"), None)
    broken.value = b'{"erased_at": "not a time"}'
    follow(follower, [broken])
    assert follower.take_erased() == set()


def test_an_entry_with_a_key_that_is_no_lookup_id_is_skipped_and_following_goes_on() -> None:
    follower = KeyFollower("127.0.0.1:9", APP, MASTER, {})
    erased = lookup_id(MASTER, "o", "erased")
    value = SubjectKey(erased_at=DAY).model_dump_json(exclude_defaults=True).encode()
    foreign, keyless = Record(erased, None), Record(erased, None)
    foreign.key, foreign.value = b"not json", value
    keyless.key, keyless.value = None, value  # type: ignore[assignment]
    follow(follower, [foreign, keyless, Record(erased, SubjectKey(erased_at=DAY))])
    assert follower.take_erased() == {erased}
