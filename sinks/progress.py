"""Whether a consumer makes progress, told from observations of its lag.

Progress is advancing, or being seen with nothing left to consume: an idle consumer is healthy,
a lag that appears after an idle spell gets the full threshold before it counts, and a consumer
that is no longer observed at all (lag unknown, or the observer stuck) stalls like one that lags.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]


class Progress:
    """When a consumer last made progress, fed with observations of its lag."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        # (lag, monotonic time of the last progress), replaced as one, so a reader in another
        # thread never pairs a new lag with an old time.
        self._state: tuple[int | None, float] = (None, clock())

    def observe(self, lag: int | None, advanced: bool) -> None:
        """`lag`: messages left to consume (None: unknown); `advanced`: it consumed some."""
        _, progress_at = self._state
        if advanced or lag == 0:
            progress_at = self._clock()
        self._state = (lag, progress_at)

    @property
    def lag(self) -> int | None:
        return self._state[0]

    def seconds_since_progress(self) -> float:
        return self._clock() - self._state[1]

    def problem(self, who: str, unit: str, threshold: float) -> str | None:
        """Why `who` counts as stalled, or None while it has progressed within `threshold`."""
        lag, progress_at = self._state
        waited = self._clock() - progress_at
        if waited <= threshold:
            return None
        if lag is None:
            behind = "lag unknown"
        elif lag == 0:
            behind = "not observed since it caught up"
        else:
            behind = f"{lag} {unit} behind"
        return f"{who}: {behind}, no progress for {waited:.0f} s"
