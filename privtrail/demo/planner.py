"""Which stories make up a demo run and when each begins, and the run's messages in event-time
order; also the malformed inputs mixed into it."""

from __future__ import annotations

import heapq
import itertools
import json
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from events.models import EventType
from privtrail.demo.connectx import COMPLIANT as CX_COMPLIANT
from privtrail.demo.connectx import VIOLATING as CX_VIOLATING
from privtrail.demo.connectx import cx_long_standing
from privtrail.demo.linkxup import COMPLIANT as LX_COMPLIANT
from privtrail.demo.linkxup import VIOLATING as LX_VIOLATING
from privtrail.demo.story import DEFECTS, SUPPORT, WHATSAPP, Defect, DemoEvent, Scenario, Story
from privtrail.demo.xpertaize import COMPLIANT as XA_COMPLIANT
from privtrail.demo.xpertaize import SHARE_DESPITE_OPT_OUT as TOUR_SCENARIO
from privtrail.demo.xpertaize import VIOLATING as XA_VIOLATING

DEMO_SPAN = timedelta(days=1140)
MALFORMED = "malformed-input"
FILLER = "cx-long-standing-customer"
# The newest stretch of history, which a share of the stories end in, so that questions about
# the last hours (`violations --since 2h`) find this run's traffic.
RECENT = timedelta(hours=1)
RECENT_SHARE = 0.2
# The subject the README's tour asks about, and the seed that fixes how its story goes.
TOUR_SUBJECT = "cand-0042"
TOUR_SEED = 42
COMPLIANT: tuple[Scenario, ...] = (*LX_COMPLIANT, *XA_COMPLIANT, *CX_COMPLIANT)
VIOLATING: tuple[Scenario, ...] = (*LX_VIOLATING, *XA_VIOLATING, *CX_VIOLATING)


@dataclass(frozen=True, order=True)
class _Plan:
    """A story to tell: which scenario, about whom (its seed), and when it begins."""

    start: datetime
    order: int
    seed: int = field(compare=False)
    name: str = field(compare=False)
    org: str = field(compare=False)
    subject_kind: str = field(compare=False)
    play: Callable[[Story], None] = field(compare=False)
    salt: str = field(compare=False)
    subject_id: str | None = field(default=None, compare=False)

    def tell(self, *, dry: bool) -> Story:
        story = Story(
            random.Random(self.seed),
            self.name,
            self.org,
            self.subject_kind,
            self.start,
            dry=dry,
            salt=self.salt,
            subject_id=self.subject_id,
        )
        self.play(story)
        return story


class Planner:
    """Decides which stories make up a run, and when each begins, before any is told."""

    def __init__(self, rng: random.Random, start: datetime, count: int, salt: str) -> None:
        self.rng = rng
        self.salt = salt
        self.start = start
        self.end = start + DEMO_SPAN
        self.count = count
        self.plans: list[_Plan] = []
        self.used = 0

    def plan(self, violation_share: float, malformed_share: float) -> list[_Plan]:
        malformed = round(self.count * malformed_share)
        # One event is kept for the long-standing customer whose chats run to the end.
        budget = self.count - malformed - 1
        self._add_violating(budget, violation_share * self.count)
        self._add_compliant(budget)
        self._add_filler(self.count - malformed - self.used)
        for i in range(malformed):
            self._add_malformed(DEFECTS[i % len(DEFECTS)])
        return sorted(self.plans)

    def _add_violating(self, budget: int, target: float) -> None:
        """Whole rounds of every violating scenario first, then more until `target` events."""
        order = list(VIOLATING)
        self.rng.shuffle(order)
        told = self._add_tour(budget)
        for i, scenario in enumerate(itertools.cycle(order)):
            if i >= len(order) and told >= target:
                return
            length = self._try(scenario, budget)
            if length == 0:
                return
            told += length

    def _add_compliant(self, budget: int) -> None:
        weights = [s.weight for s in COMPLIANT]
        while self._try(self.rng.choices(COMPLIANT, weights)[0], budget):
            pass

    def _add_tour(self, budget: int) -> int:
        """The README tour's subject, told the same way in every run (only its event ids
        change) and ending within `RECENT`; returns its length, or 0 if it does not fit."""
        scenario = TOUR_SCENARIO
        info = scenario.info
        plan = _Plan(
            self.start,
            len(self.plans),
            TOUR_SEED,
            info.name,
            info.org,
            scenario.subject_kind,
            scenario.play,
            self.salt,
            TOUR_SUBJECT,
        )
        return self._place(scenario, plan, budget, recent=True)

    def _try(self, scenario: Scenario, budget: int) -> int:
        """Plan a story of `scenario` if it fits in the budget; returns its length, or 0.

        A story without a deadline to cross ends within the last `RECENT` at `RECENT_SHARE`."""
        info = scenario.info
        plan = self._plan(self.start, info.name, info.org, scenario.subject_kind, scenario.play)
        free = not scenario.margin and scenario.not_after is None
        return self._place(scenario, plan, budget, recent=free and self.rng.random() < RECENT_SHARE)

    def _place(self, scenario: Scenario, plan: _Plan, budget: int, *, recent: bool) -> int:
        story = plan.tell(dry=True)
        if self.used + story.length > budget:
            return 0
        latest = self.end - (story.now - self.start) - scenario.margin
        if scenario.not_after is not None:
            latest = min(latest, self.start + scenario.not_after)
        earliest = self.start + scenario.not_before
        room = max(0.0, (latest - earliest).total_seconds())
        offset = self.rng.uniform(max(0.0, room - RECENT.total_seconds()) if recent else 0.0, room)
        begin = (earliest + timedelta(seconds=round(offset))).replace(microsecond=0)
        self.plans.append(replace(plan, start=begin))
        self.used += story.length
        return story.length

    def _add_filler(self, events: int) -> None:
        span = self.end - self.start

        def play(story: Story) -> None:
            cx_long_standing(story, events, span)

        self.plans.append(self._plan(self.start, FILLER, "connectx", "customer", play))

    def _add_malformed(self, defect: Defect) -> None:
        at = self.start + timedelta(seconds=self.rng.randrange(int(DEMO_SPAN.total_seconds())))

        def play(story: Story) -> None:
            story.events.append(_malformed(story, defect))

        self.plans.append(self._plan(at, MALFORMED, "connectx", "customer", play))

    def _plan(
        self,
        start: datetime,
        name: str,
        org: str,
        subject_kind: str,
        play: Callable[[Story], None],
    ) -> _Plan:
        seed = self.rng.getrandbits(64)
        return _Plan(start, len(self.plans), seed, name, org, subject_kind, play, self.salt)


_Pending = tuple[datetime, int, int, DemoEvent, Iterator[DemoEvent]]


def in_time_order(plans: Sequence[_Plan]) -> Iterator[DemoEvent]:
    """Tell each story when its start comes up and merge all of them by event time."""
    pending: list[_Pending] = []
    for plan in plans:
        while pending and pending[0][0] <= plan.start:
            yield _pop_next(pending)
        events = iter(plan.tell(dry=False).events)
        first = next(events, None)
        if first is not None:
            heapq.heappush(pending, (first.time, plan.order, 0, first, events))
    while pending:
        yield _pop_next(pending)


def _pop_next(pending: list[_Pending]) -> DemoEvent:
    _, order, position, event, rest = heapq.heappop(pending)
    following = next(rest, None)
    if following is not None:
        heapq.heappush(pending, (following.time, order, position + 1, following, rest))
    return event


# --- Malformed input -----------------------------------------------------------------------


def _malformed(story: Story, defect: Defect) -> DemoEvent:
    """A support-chat access as a careless producer might send it, broken in one way."""
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": story.new_event_id(),
        "source": "/connectx/whatsapp-inbox",
        "type": str(EventType.DATA_ACCESSED),
        "time": story.now.isoformat(),
        "data": {
            "org": "connectx",
            "subject": story.subject(),
            "actor": {"kind": "service", "id": "inbox-router"},
            "data_categories": [WHATSAPP],
            "data_use": SUPPORT,
            "legal_basis": "contract",
        },
    }
    if defect == "unknown event type":
        envelope["type"] = "privacy.data.deleted"
    elif defect == "unknown taxonomy key":
        envelope["data"]["data_categories"] = ["user.contact.shoe_size"]
    elif defect == "wrong field type":
        envelope["data"]["data_categories"] = WHATSAPP
    elif defect == "missing attribute":
        del envelope["time"]
    value = json.dumps(envelope).encode()
    if defect == "bad JSON":
        value = value[: len(value) // 2]
    return DemoEvent(story.subject_id.encode(), value, story.now, MALFORMED, defect=defect)
