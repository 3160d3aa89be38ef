"""Per source partition, the next offset the judge must see, so that no event is skipped.

Faust can fail to deliver messages around a rebalance or a table recovery: its stream skips
messages fetched for an older generation, or while the flow was suspended, and acks them as if
they had been processed (faust/streams.py, `skipped_value`); its fetch loop can also drop
messages re-fetched after a seek when an older batch has moved its read offset past them. Either
way the events are never judged, and a commit past them makes that permanent. The worker's
consumer refuses acks for messages that never reached a stream, and delivers every message it
fetches from the source topic, duplicates included (streams/transport.py); this module tells
the agent which delivered messages come after a hole, so that it leaves them unjudged and
unacked too and reads the partition again from the hole, and which were judged already.

Not every hole is a loss: transaction markers and aborted or compacted records take offsets
that no consumer is given. The agent asks the broker before calling a hole a loss.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

# A hole is read again at most this often per partition: messages already fetched past it keep
# arriving for a while after the seek, and each of them shows the same hole.
REWIND_INTERVAL_SECONDS = 2.0


class Arrival(Enum):
    NEXT = "next"  # the next offset: judge it
    # Judged before in this generation, or committed: a message fetched twice, around a seek
    # or a rebalance. Acked again, not judged again.
    JUDGED = "judged"
    AFTER_HOLE = "after a hole"  # messages before it never arrived


@dataclass
class Positions:
    """The next offset to judge per partition, and the partitions to read again from it."""

    clock: Callable[[], float]
    generation: int | None = None
    _next: dict[int, int] = field(default_factory=dict)
    # Partition -> when it was last sent back to its next offset.
    _rewound: dict[int, float] = field(default_factory=dict)
    _holes: set[int] = field(default_factory=set)

    def start_generation(self, generation: int, committed: Mapping[int, int | None]) -> None:
        """After a rebalance, each owned partition starts again from its committed offset
        (None: unknown, the partition's first delivered message sets the start)."""
        self.generation = generation
        self._next = {p: offset for p, offset in committed.items() if offset is not None}
        self._rewound.clear()
        self._holes.clear()

    def admit(self, partition: int, offset: int) -> Arrival:
        """Where the message at `offset` stands: next in order, judged before, or after a hole."""
        expected = self._next.get(partition)
        if expected is None or offset == expected:
            self._next[partition] = offset + 1
            return Arrival.NEXT
        return Arrival.JUDGED if offset < expected else Arrival.AFTER_HOLE

    def next_offset(self, partition: int) -> int | None:
        return self._next.get(partition)

    def held_back(self, partition: int) -> bool:
        """Whether `partition` has a lost hole being read again: messages past it wait."""
        if partition in self._holes:
            return True
        rewound = self._rewound.get(partition)
        return rewound is not None and self.clock() - rewound < REWIND_INTERVAL_SECONDS

    def lost(self, partition: int) -> None:
        """Records that the hole before the next message of `partition` lost events."""
        self._holes.add(partition)

    def skip_to(self, partition: int, offset: int) -> None:
        """Records that no message lies before `offset` in the hole: nothing to judge there."""
        self._next[partition] = offset

    def due_rewinds(self) -> dict[int, int]:
        """Partitions with a lost hole not read again lately: partition -> offset to read from."""
        now = self.clock()
        due = {
            p: self._next[p]
            for p in self._holes
            if now - self._rewound.get(p, float("-inf")) >= REWIND_INTERVAL_SECONDS
        }
        self._holes.clear()
        self._rewound.update(dict.fromkeys(due, now))
        return due

    def behind(self, ends: Mapping[int, int | None]) -> dict[int, int]:
        """Partitions whose end is past their next offset: partition -> their next offset."""
        due: dict[int, int] = {}
        for partition, end in ends.items():
            start = self._next.get(partition)
            if start is not None and end is not None and end > start:
                due[partition] = start
        return due

    def rewinding(self, partition: int) -> None:
        """Records that `partition` is being read again from its next offset."""
        self._rewound[partition] = self.clock()
