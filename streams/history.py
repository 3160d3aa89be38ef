"""A subject's recent history in event time, so a late event is judged as if it came in order.

Per subject the worker keeps:
- `base`: the state folded from every event older than the window (judged long ago);
- `window`: the events since `since`, in event-time order (time, then id), each with the rules
  it broke when last judged;
- `state`: `base` with the window folded on top: what an event arriving in order is judged
  against;
- `reported`: the violations reported for the window, by id, so a re-fold can tell what it
  adds, changes or retracts.

The window spans the lateness horizon in event time, and at most `max_kept` events: an event
older than `since` is judged against `base`, the oldest state kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, Field, PrivateAttr, TypeAdapter

from events.models import EventType, PrivacyEvent
from events.outputs import Violation
from events.validation import parse_accepted
from streams.rules import Finding, PolicySet
from streams.rules.replay import report_missed
from streams.state import StateChange, SubjectState, state_change

# The changelog must never carry a raw subject id, so a kept event has every JSON string equal
# to it (the subject's id, and an actor's or recipient's that is the subject) replaced by this;
# it holds a NUL, which no identifier may. Judging again needs a new event of the subject,
# which brings the real id back.
SUBJECT_PLACEHOLDER = json.dumps("\x00privtrail:subject\x00")
_ACCESS_TYPES = frozenset({EventType.DATA_ACCESSED, EventType.DATA_SHARED})


@dataclass(slots=True)
class Kept:
    """One event of the window, with what it takes to judge it again.

    A dataclass with slots, not a model: one is made per event on the hot path, and every one
    kept is an object the garbage collector walks.
    """

    id: str
    time: datetime
    type: str
    partition: int
    offset: int
    # The event as it arrived, its subject id replaced by SUBJECT_PLACEHOLDER.
    event: str
    # Rule ids the event broke when last judged: a re-fold re-sends its audit record on a change.
    # A tuple: the garbage collector stops walking it, and it is usually the shared empty one.
    violated: tuple[str, ...] = ()
    # Its changelog JSON, and the `violated` it was encoded with: a kept event is written at
    # every batch that touches its subject, and only `violated` ever changes.
    encoded: Annotated[tuple[tuple[str, ...], bytes] | None, Field(exclude=True)] = field(
        default=None, compare=False, repr=False
    )
    # What a state change changes (`state_change`), so trimming folds it into the base without
    # parsing it again. Not in the changelog: after a recovery trimming parses the text.
    change: Annotated[StateChange | None, Field(exclude=True)] = field(
        default=None, compare=False, repr=False
    )

    @classmethod
    def of(
        cls,
        event: PrivacyEvent,
        raw: bytes,
        partition: int,
        offset: int,
        violated: tuple[str, ...],
        change: StateChange | None,
    ) -> Kept:
        return cls(
            id=event.id,
            time=event.time,
            type=event.type,
            partition=partition,
            offset=offset,
            event=_without_subject_id(raw.decode(), event.data.subject.id.get_secret_value()),
            violated=violated,
            change=change,
        )

    @property
    def order(self) -> tuple[datetime, str]:
        return (self.time, self.id)

    def changelog_json(self) -> bytes:
        """The JSON the history's `changelog_json` holds for this event, encoded once."""
        encoded = self.encoded
        if encoded is None or encoded[0] != self.violated:
            encoded = self.encoded = (self.violated, _KEPT.dump_json(self, exclude_defaults=True))
        return encoded[1]

    def parse(self, subject_id: str) -> PrivacyEvent:
        """The event again, with the subject's real id.

        Its shape (size, nesting, unique keys) was checked when it arrived, and putting the id
        back changes one string's content, so only the wire models run. The parsed event is not
        kept: about a dozen objects each, which every collection of the garbage collector's
        middle generation walked, cost more than parsing a state change again when it is trimmed.
        """
        return parse_accepted(
            self.event.replace(SUBJECT_PLACEHOLDER, _json_string(subject_id)).encode()
        )


_KEPT = TypeAdapter(Kept)


def _without_subject_id(text: str, subject_id: str) -> str:
    if SUBJECT_PLACEHOLDER in text:
        raise ValueError("the event holds privtrail's reserved subject placeholder")
    # Producers escape non-ASCII characters, or don't: either spelling of the id is replaced.
    text = text.replace(_json_string(subject_id), SUBJECT_PLACEHOLDER)
    if not subject_id.isascii():
        text = text.replace(json.dumps(subject_id, ensure_ascii=False), SUBJECT_PLACEHOLDER)
    if SUBJECT_PLACEHOLDER not in text:
        # Spelled some other way (escapes of the producer's own choosing): re-encode the event.
        body = json.loads(text)
        _replace_strings(body, subject_id, json.loads(SUBJECT_PLACEHOLDER))
        text = json.dumps(body)
    return text


def _json_string(text: str) -> str:
    """`json.dumps(text)`, without its cost for the usual id: ASCII, no quote or backslash
    (and no control character: no identifier may hold one), so nothing to escape."""
    if text.isascii() and '"' not in text and "\\" not in text and text.isprintable():
        return f'"{text}"'
    return json.dumps(text)


def _replace_strings(node: Any, old: str, new: str) -> Any:
    if isinstance(node, dict):
        for key, value in node.items():
            node[key] = _replace_strings(value, old, new)
    elif isinstance(node, list):
        node[:] = [_replace_strings(value, old, new) for value in node]
    return new if node == old else node


@dataclass(frozen=True, slots=True)
class Step:
    """What folding one event found: deadlines missed before it, and the rules it broke."""

    missed: list[Finding]
    findings: list[Finding]
    next_due: datetime | None
    # What the event changed in the state, for the kept event (`Kept.change`).
    change: StateChange | None


def fold(
    policy: PolicySet, state: SubjectState, event: PrivacyEvent, next_due: datetime | None
) -> Step:
    """Judge `event` against `state` and fold it in, reporting the deadlines that fell due first.

    `next_due` is the subject's earliest pending deadline: only when it falls before the event
    are deadlines judged, and only events that change what a deadline reads move it (accesses,
    the bulk, never do).
    """
    due = next_due is not None and next_due < event.time
    missed = report_missed(policy, state, event.time) if due else []
    findings = policy.judge(event, state)
    change = state_change(event)
    state.apply_change(event.id, event.time, change)
    if due or policy.moves_deadlines(event):
        next_due = policy.next_deadline(state)
    return Step(missed, findings, next_due, change)


def ordering(event: PrivacyEvent) -> tuple[datetime, str]:
    """The one order events of a subject are judged in, whatever order they arrive in."""
    return (event.time, event.id)


class SubjectHistory(BaseModel):
    base: SubjectState
    state: SubjectState
    # Events before this instant are folded into `base`; None while nothing was.
    since: datetime | None = None
    window: list[Kept] = Field(default_factory=list)
    reported: dict[str, Violation] = Field(default_factory=dict)
    # The latest deadline reported missed in the window: an event before it arrived too late
    # to be folded on top, since in order it would have been judged before that deadline.
    fired_until: datetime | None = None
    # Ids of the window's events, for dedup; rebuilt from the window, never serialized.
    ids: set[str] = Field(default_factory=set, exclude=True)
    # `base` as the changelog encodes it, while `base` is unchanged: it changes only when
    # events are folded into it (`trim`, `changing_base`), far less often than it is written.
    _base_json: bytes | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any) -> None:
        self.ids = {kept.id for kept in self.window}

    @classmethod
    def start(cls, org: str, subject_kind: str) -> SubjectHistory:
        return cls(
            base=SubjectState(org=org, subject_kind=subject_kind),
            state=SubjectState(org=org, subject_kind=subject_kind),
        )

    @classmethod
    def of_state(cls, state: SubjectState) -> SubjectHistory:
        """A history with nothing in its window, e.g. from a changelog written before windows."""
        return cls(base=state.model_copy(deep=True), state=state, since=state.last_event_time)

    def changelog_json(self) -> bytes:
        """`model_dump_json(exclude_defaults=True)` as bytes, each kept event's part encoded
        once and reused: the window is most of the value, and it is written at every batch
        that touches the subject. Fields left at their default are left out: a million
        subjects' entries are held as these bytes, and most of a state's fields are unset.
        """
        base = self._base_json
        if base is None:
            base = self._base_json = self.base.__pydantic_serializer__.to_json(
                self.base, exclude_defaults=True
            )
        serializer = self.__pydantic_serializer__
        # The fields between `base` and the window (`state` at least, it has no default), and
        # those after the window (in the order they are declared).
        middle = serializer.to_json(self, exclude=_NOT_MIDDLE, exclude_defaults=True)
        after = b"}"
        # Both at their defaults for most subjects (no violation in the window): nothing to add.
        if self.reported or self.fired_until is not None:
            tail = serializer.to_json(self, include=_AFTER_WINDOW, exclude_defaults=True)
            after = b"," + tail[1:]
        # One join: the window is most of the value, copied once.
        parts = [b'{"base":', base, b",", middle[1:-1], b',"window":[']
        for kept in self.window:
            parts += (kept.changelog_json(), b",")
        if self.window:
            parts.pop()
        parts += (b"]", after)
        return b"".join(parts)

    def changing_base(self) -> SubjectState:
        """`base`, to be changed in place (by an event older than the window)."""
        self._base_json = None
        return self.base

    def seen(self, event_id: str) -> bool:
        return event_id in self.ids or self.base.seen(event_id)

    def too_old(self, event: PrivacyEvent) -> bool:
        return self.since is not None and event.time < self.since

    def follows(self, event: PrivacyEvent) -> bool:
        """Whether `event` comes after everything judged for the subject, so folding it on top
        of `state` gives the in-order verdict."""
        if self.too_old(event):
            return False
        if self.window and ordering(event) < self.window[-1].order:
            return False
        return self.fired_until is None or event.time > self.fired_until

    def keep(self, kept: Kept) -> None:
        self.window.append(kept)
        self.ids.add(kept.id)

    def replace_window(self, window: list[Kept]) -> None:
        self.window = window
        self.ids = {kept.id for kept in window}

    def report(self, violation: Violation) -> None:
        self.reported[violation.violation_id] = violation
        if violation.deadline is not None and (
            self.fired_until is None or violation.deadline > self.fired_until
        ):
            self.fired_until = violation.deadline

    def trim(
        self,
        policy: PolicySet,
        subject_id: str,
        cutoff: datetime | None,
        max_kept: int,
        slack: timedelta = timedelta(0),
    ) -> None:
        """Fold the events older than `cutoff`, and any beyond the newest `max_kept`, into
        `base`. Their violations were reported when they were judged, so they are not judged
        again: only their state changes are folded in.

        Trimming waits until a quarter of `max_kept` more events, or `slack` more event time,
        has built up, so it is paid for once per many events, not once per batch.
        """
        drop = self._excess(cutoff, max_kept, slack)
        if drop == 0:
            return
        trimmed = self.window[:drop]
        self._base_json = None
        # Parsed first, so a failure cannot leave events folded into both; applying cannot
        # fail, each of them was applied once already when it was judged.
        changes = [_change(kept, subject_id) for kept in trimmed]
        base = self.base
        for kept, change in zip(trimmed, changes, strict=True):
            base.apply_change(kept.id, kept.time, change)
        since = self.window[drop - 1].time
        since = max(since, cutoff) if cutoff is not None else since
        # In order, every deadline before `since` was judged before the first kept event, so
        # the current state knows which of them fired.
        base.fired_deadlines = self.state.fired_before(since)
        self.base, self.since = base, since
        self.replace_window(self.window[drop:])
        self.reported = {vid: v for vid, v in self.reported.items() if v.occurred_at >= since}

    def _excess(self, cutoff: datetime | None, max_kept: int, slack: timedelta) -> int:
        """How many of the oldest kept events to fold into the base now."""
        window = self.window
        over = len(window) - max_kept
        drop = over if over > max_kept // 4 else 0
        if cutoff is not None and window and window[0].time < cutoff - slack:
            while drop < len(window) and window[drop].time < cutoff:
                drop += 1
        return drop


def _change(kept: Kept, subject_id: str) -> StateChange | None:
    if kept.type in _ACCESS_TYPES:
        return None  # an access changes no state but the recent ids and the newest time
    if kept.change is None:  # read back from the changelog
        kept.change = state_change(kept.parse(subject_id))
    return kept.change


_AFTER_WINDOW = {"reported", "fired_until"}
_NOT_MIDDLE = {"base", "window", *_AFTER_WINDOW}
