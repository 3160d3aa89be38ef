"""Event ids drawn many at a time: still unique, valid version 4 UUIDs, and never shared with a
forked child."""

from __future__ import annotations

import os
import threading
import uuid

from events.event_ids import RandomIds, new_event_id


def test_ids_are_valid_version_4_uuids_in_their_canonical_text() -> None:
    for text in (new_event_id() for _ in range(2_000)):
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == text


def test_ids_stay_unique_across_many_draws_and_threads() -> None:
    ids = RandomIds(per_draw=8)  # a draw every 8 ids: many refills under contention
    drawn: list[list[str]] = [[] for _ in range(4)]

    def draw(into: list[str]) -> None:
        into.extend(ids() for _ in range(500))

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    every = [text for into in drawn for text in into]
    assert len(every) == len(set(every)) == 2_000


def test_a_forked_child_draws_ids_of_its_own() -> None:
    ids = RandomIds()
    ids()  # the parent's pool now holds the next 1,023 ids
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(write, ids().encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        childs = pipe.read()
    os.waitpid(child, 0)

    assert uuid.UUID(childs).version == 4
    assert childs != ids()
