"""What each row of a batch changes in the counters (counters.py), given what is stored.

The identities are the ReplacingMergeTree sorting keys, so a row counts once exactly when
FINAL shows it once.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from events.outputs import Violation

K = TypeVar("K", bound=Hashable)

EventKey = tuple[str, str, str]
ViolationKey = tuple[str, str, str]


@dataclass(frozen=True)
class ViolationState:
    """What the counters hold for one violation: counted as open (1) or not (0), and the
    detection time of its newest stored copy."""

    counted_open: int
    latest: datetime


def violation_key(violation: Violation) -> ViolationKey:
    return (violation.org, violation.rule_id, violation.violation_id)


def first_copies(keys: Sequence[K], stored: Collection[K]) -> list[int]:
    """1 for the first occurrence of each key the store does not hold yet, 0 for the rest."""
    seen = set(stored)
    flags = []
    for key in keys:
        flags.append(0 if key in seen else 1)
        seen.add(key)
    return flags


def open_deltas(
    violations: Sequence[Violation], states: Mapping[ViolationKey, ViolationState]
) -> list[int]:
    """Per copy, its change to the count of open violations.

    The newest copy of each violation carries the whole change, as ReplacingMergeTree keeps it:
    the highest `detected_at`, and on a tie the one inserted last (later in the batch, or the
    batch over the store). A batch whose newest copy is older than the stored one changes
    nothing.
    """
    newest: dict[ViolationKey, int] = {}
    for index, violation in enumerate(violations):
        key = violation_key(violation)
        best = newest.get(key)
        if best is None or violation.detected_at >= violations[best].detected_at:
            newest[key] = index
    deltas = [0] * len(violations)
    for key, index in newest.items():
        copy = violations[index]
        state = states.get(key)
        if state is not None and copy.detected_at < state.latest:
            continue
        counted = state.counted_open if state is not None else 0
        deltas[index] = int(copy.status == "open") - counted
    return deltas
