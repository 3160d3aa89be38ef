"""Deadline clocks: when they start (an anchor in the subject's state) and what stops them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from streams.rules.durations import Duration
from streams.rules.schema import Deadline
from streams.state import SubjectState

_UNLESS_PHRASES = {
    "erasure_fulfilled": "no erasure fulfilled",
    "legal_hold": "no legal hold",
    "request_fulfilled": "no fulfilment recorded",
}


@dataclass(frozen=True)
class _Anchor:
    at: datetime
    cause_event_id: str | None
    # What happened at `at`, for the explanation ("account closed").
    what: str


@dataclass(frozen=True)
class PendingDeadline:
    due_at: datetime
    anchor: _Anchor

    @property
    def cause_event_id(self) -> str | None:
        return self.anchor.cause_event_id

    @property
    def started_by(self) -> str:
        return f"{self.anchor.what} at {self.anchor.at.isoformat()}"


@dataclass(frozen=True)
class DeadlineClock:
    spec: Deadline
    duration: Duration

    @classmethod
    def of(cls, spec: Deadline) -> DeadlineClock:
        return cls(spec, spec.duration)

    def pending(self, state: SubjectState) -> list[PendingDeadline]:
        """Deadlines running for this subject that nothing has satisfied yet."""
        return [
            PendingDeadline(self._due(anchor), anchor)
            for anchor in self._anchors(state)
            if not self._satisfied(anchor.at, state)
        ]

    def missed(self, state: SubjectState, now: datetime) -> list[PendingDeadline]:
        """Pending deadlines that fell before `now` (cheapest test first: runs per event)."""
        missed = []
        for anchor in self._anchors(state):
            due_at = self._due(anchor)
            if due_at < now and not self._satisfied(anchor.at, state):
                missed.append(PendingDeadline(due_at, anchor))
        return missed

    def missed_phrase(self) -> str:
        return " and ".join(_UNLESS_PHRASES[u] for u in self.spec.unless) or "nothing to stop it"

    def _due(self, anchor: _Anchor) -> datetime:
        return self.duration.after(anchor.at).astimezone(UTC)

    def _anchors(self, state: SubjectState) -> list[_Anchor]:
        after = self.spec.after
        if after == "closed_at":
            if state.closed_at is None:
                return []
            return [_Anchor(state.closed_at, state.closed_event_id, "account closed")]
        if after == "last_activity_or_closed":
            return _last_activity_or_closed(state)
        return [
            _Anchor(request.opened_at, request.event_id, f"erasure request {rid} opened")
            for rid, request in state.open_requests.items()
            if request.right == "erasure"
        ]

    def _satisfied(self, started: datetime, state: SubjectState) -> bool:
        unless = self.spec.unless
        if "legal_hold" in unless and state.on_legal_hold:
            return True
        # An erasure before the clock started does not cover data kept after it (a reopened
        # account, later activity), so only an erasure at or after the anchor counts.
        # `request_fulfilled` needs no test: the state forgets a request once it is fulfilled.
        return "erasure_fulfilled" in unless and (
            state.erased_at is not None and state.erased_at >= started
        )


def _last_activity_or_closed(state: SubjectState) -> list[_Anchor]:
    closed, active = state.closed_at, state.last_activity_at
    # Whichever is later; closing is itself activity, so on a tie it names the closure.
    if closed is not None and (active is None or closed >= active):
        return [_Anchor(closed, state.closed_event_id, "account closed")]
    if active is not None:
        return [_Anchor(active, state.last_activity_event_id, "last account activity")]
    return []
