"""The worker never judges past a hole in a partition, and reads it again from the hole."""

from __future__ import annotations

from streams.positions import REWIND_INTERVAL_SECONDS, Arrival, Positions


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def started(committed: dict[int, int | None]) -> tuple[Positions, Clock]:
    clock = Clock()
    positions = Positions(clock)
    positions.start_generation(1, committed)
    return positions, clock


def test_messages_in_order_from_the_committed_offset_are_judged() -> None:
    positions, _ = started({0: 80})
    assert [positions.admit(0, offset) for offset in (80, 81, 82)] == [Arrival.NEXT] * 3
    assert positions.next_offset(0) == 83
    assert positions.due_rewinds() == {}


def test_a_lost_hole_holds_back_what_follows_and_is_read_again() -> None:
    positions, _ = started({3: 80})
    assert positions.admit(3, 80) is Arrival.NEXT
    assert positions.admit(3, 129) is Arrival.AFTER_HOLE, "81..128 never arrived: 129 waits"
    positions.lost(3)
    assert positions.held_back(3)
    assert positions.next_offset(3) == 81
    assert positions.due_rewinds() == {3: 81}
    # Read again from 81: the hole fills and judging goes on in order.
    assert {positions.admit(3, offset) for offset in range(81, 131)} == {Arrival.NEXT}
    assert positions.next_offset(3) == 131


def test_a_hole_without_records_is_skipped() -> None:
    positions, _ = started({0: 10})
    assert positions.admit(0, 12) is Arrival.AFTER_HOLE, "11 may be a transaction marker"
    positions.skip_to(0, 12)
    assert positions.admit(0, 12) is Arrival.NEXT
    assert not positions.held_back(0)
    assert positions.due_rewinds() == {}


def test_the_first_message_after_a_rebalance_must_be_the_committed_one() -> None:
    positions, _ = started({2: 128})
    assert positions.admit(2, 130) is Arrival.AFTER_HOLE


def test_a_message_fetched_twice_is_told_as_judged() -> None:
    positions, _ = started({0: 10})
    assert positions.admit(0, 10) is positions.admit(0, 11) is Arrival.NEXT
    assert positions.admit(0, 10) is Arrival.JUDGED
    assert positions.admit(0, 3) is Arrival.JUDGED, "below the committed offset"
    assert positions.next_offset(0) == 12


def test_a_hole_is_read_again_at_most_once_per_interval() -> None:
    positions, clock = started({0: 5})
    positions.lost(0)
    assert positions.due_rewinds() == {0: 5}
    assert positions.held_back(0), "messages fetched past the hole still arrive"
    positions.lost(0)
    assert positions.due_rewinds() == {}
    clock.now += REWIND_INTERVAL_SECONDS
    assert not positions.held_back(0)
    positions.lost(0)
    assert positions.due_rewinds() == {0: 5}


def test_a_partition_without_a_known_start_starts_at_its_first_message() -> None:
    positions, _ = started({1: None})
    assert positions.admit(1, 42) is Arrival.NEXT
    assert positions.next_offset(1) == 43


def test_a_new_generation_starts_from_the_new_committed_offsets() -> None:
    positions, _ = started({0: 5})
    positions.admit(0, 5)
    positions.lost(0)
    positions.start_generation(2, {0: 300})
    assert positions.generation == 2
    assert not positions.held_back(0)
    assert positions.admit(0, 300) is Arrival.NEXT
    assert positions.admit(0, 302) is Arrival.AFTER_HOLE


def test_partitions_behind_their_end_are_told() -> None:
    positions, _ = started({0: 80, 1: 50, 2: 7})
    positions.admit(1, 50)
    assert positions.behind({0: 200, 1: 51, 2: None}) == {0: 80}, "1 is caught up; 2 unknown"
