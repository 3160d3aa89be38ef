"""A deterministic demo workload: the traffic of the three reference orgs' services.

Each subject's story builds up state in a plausible order (account, consent screen, settings,
then months of accesses and shares; some close their account, ask for erasure, get a legal hold,
withdraw a consent and give it again). Most stories are compliant. A configurable share are
violating stories that, together, break every rule of the reference policies, and a small share
of inputs are malformed, to show dead-lettering. One story is always about `TOUR_SUBJECT` of
XpertAIze, the subject the README's tour looks up.

Event time follows a simulated clock spanning `DEMO_SPAN` from `start`, long enough for every
deadline rule (72 hours, 30 days, 36 months) to be crossed within one run, and a share of the
stories end within its last `RECENT`. Events are yielded in event-time order, so the pipeline's
"now" (the highest event time seen) advances as it would live. Once the pipeline has caught up
it uses the wall clock instead, so start a demo at `default_start()` to make the simulated
history end at the present.

The `salt` names the run: subject and event ids differ from one salt to another, and nothing
else does, so a store that has seen one run takes another as new traffic (ids are deduplicated)
and shows the same detections again. `LiveDemo` is what `privtrail up --demo` sends.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from events.emitter import Emitter
from privtrail.demo.planner import (
    COMPLIANT,
    DEMO_SPAN,
    FILLER,
    MALFORMED,
    RECENT,
    TOUR_SUBJECT,
    VIOLATING,
    Planner,
    in_time_order,
)
from privtrail.demo.story import DEFECTS, Defect, DemoEvent, ScenarioInfo

__all__ = [
    "DEFAULT_MALFORMED_SHARE",
    "DEFAULT_VIOLATION_SHARE",
    "DEFECTS",
    "DEMO_SPAN",
    "FILLER",
    "FULL_COVERAGE_COUNT",
    "MALFORMED",
    "RECENT",
    "TOUR_SUBJECT",
    "Defect",
    "DemoEvent",
    "DemoSubject",
    "LiveDemo",
    "ScenarioInfo",
    "default_start",
    "demo_events",
    "scenario_catalog",
    "send_demo",
]

DEFAULT_VIOLATION_SHARE = 0.02
DEFAULT_MALFORMED_SHARE = 0.005
# Large enough for one violating story of every kind besides the compliant traffic.
FULL_COVERAGE_COUNT = 2000


def default_start(now: datetime | None = None) -> datetime:
    """The start that makes a demo's simulated history end at `now` (default: the wall clock)."""
    return (now or datetime.now(UTC)).replace(microsecond=0) - DEMO_SPAN


def scenario_catalog() -> list[ScenarioInfo]:
    """Every story the demo tells, with the rule ids each violating one breaks."""
    return [s.info for s in (*COMPLIANT, *VIOLATING)]


def demo_events(
    seed: int,
    count: int,
    start: datetime,
    *,
    violation_share: float = DEFAULT_VIOLATION_SHARE,
    malformed_share: float = DEFAULT_MALFORMED_SHARE,
    salt: str = "",
) -> Iterator[DemoEvent]:
    """`count` demo messages in event-time order; the same arguments give the same messages.

    Violating stories take at least `violation_share` of the events and, when `count` allows
    (from about `FULL_COVERAGE_COUNT`), include one story for every violating scenario.
    About `malformed_share` of the messages are malformed. Another `salt` gives the same
    stories at the same times under other subject and event ids (but `TOUR_SUBJECT`'s).
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    for name, share in (("violation_share", violation_share), ("malformed_share", malformed_share)):
        if not 0 <= share < 1:
            raise ValueError(f"{name} must be in [0, 1), got {share}")
    planner = Planner(random.Random(seed), start, count, salt)
    return in_time_order(planner.plan(violation_share, malformed_share))


def send_demo(
    emitter: Emitter,
    events: Iterable[DemoEvent],
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Send demo messages verbatim (malformed ones too) and flush; returns how many were sent.

    `on_sent` is called after each message with the number sent so far. Raises `EmitError` if
    any message was not delivered.
    """
    sent = 0
    for demo_event in events:
        emitter.send_raw(demo_event.key, demo_event.value)
        sent += 1
        if on_sent is not None:
            on_sent(sent)
    emitter.flush()
    return sent


@dataclass(frozen=True)
class DemoSubject:
    """A subject of a violating story, by the id its org knows it by."""

    org: str
    subject_id: str
    rules: tuple[str, ...]


class LiveDemo:
    """The demo of one `privtrail up --demo` run: a new salt, so new subjects and event ids
    every run, and a history ending at `now`.

    Iterating sends nothing itself: it yields the messages and notes in `subjects`, per org,
    the subject of the latest violating story seen so far, for the closing summary to suggest.
    """

    def __init__(self, seed: int, count: int, now: datetime | None = None) -> None:
        self.salt = secrets.token_hex(8)
        self._events = demo_events(seed, count, default_start(now), salt=self.salt)
        self._rules = {s.name: s.violates for s in scenario_catalog() if s.violates}
        self.subjects: dict[str, DemoSubject] = {}

    def __iter__(self) -> Iterator[DemoEvent]:
        for demo_event in self._events:
            rules = self._rules.get(demo_event.scenario)
            if rules and demo_event.event is not None:
                data = demo_event.event.data
                subject_id = data.subject.id.get_secret_value()
                self.subjects[data.org] = DemoSubject(data.org, subject_id, rules)
            yield demo_event
