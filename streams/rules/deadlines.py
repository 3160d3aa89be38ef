"""Deadline clocks: when they start (an anchor in the subject's state) and what stops them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from events.models import EventType
from streams.rules.durations import Duration
from streams.rules.schema import Anchor, Deadline, Unless
from streams.state import SubjectState

# The event types that change what a clock reads (its anchor, what stops it): no other event
# can move a subject's next deadline, so the judge recomputes it only after these.
_ANCHOR_INPUTS: dict[Anchor, frozenset[EventType]] = {
    "closed_at": frozenset({EventType.ACCOUNT_CHANGED}),
    "last_activity_or_closed": frozenset({EventType.ACCOUNT_CHANGED}),
    "erasure_request_opened": frozenset({EventType.REQUEST_OPENED, EventType.REQUEST_FULFILLED}),
}
_UNLESS_INPUTS: dict[Unless, frozenset[EventType]] = {
    "erasure_fulfilled": frozenset({EventType.REQUEST_FULFILLED}),
    "legal_hold": frozenset({EventType.LEGAL_HOLD_CHANGED}),
    "request_fulfilled": frozenset({EventType.REQUEST_FULFILLED}),
}
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

    @property
    def moved_by(self) -> frozenset[EventType]:
        """The event types whose state changes can start, move or stop this clock."""
        inputs = [_ANCHOR_INPUTS[self.spec.after], *(_UNLESS_INPUTS[u] for u in self.spec.unless)]
        return frozenset().union(*inputs)

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

    def next_due(self, state: SubjectState, rule_id: str) -> datetime | None:
        """The earliest pending deadline not yet reported (runs after the events in
        `moved_by` only)."""
        due = (p.due_at for p in self.pending(state) if not state.has_fired(rule_id, p.due_at))
        return min(due, default=None)

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
