"""Judging a batch of raw events: parse, fold per subject in event-time order, emit verdicts.

Pure of Faust and Kafka so it can be tested in-process and reused for replay; the agent in
`streams/app.py` feeds it consumed messages and sends what it returns.

Arrival order never changes a verdict (event-contract.md, Time). An event that comes after
everything judged for its subject is folded on top of the subject's state: the common case. A
late one is merged into the subject's window, which is judged again (streams/late.py), and
what that changes is re-sent. The store keeps the newest copy of each violation and audit
record, so it ends up with exactly the in-order result.

No input stops the stream: whatever goes wrong while judging one event dead-letters that event
with the reason `internal: ...`, and the subject is judged again without it.
"""

from __future__ import annotations

import heapq
import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from events.limits import DEFAULT_MAX_AHEAD
from events.models import PrivacyEvent
from events.outputs import Violation
from events.pseudonyms import Resolved
from events.validation import InvalidEvent, parse_event
from streams.erasure import DeploymentKeyed, Pseudonyms, fulfils_erasure, start_history
from streams.history import Kept, SubjectHistory, fold, ordering
from streams.late import LateJudge, reject_internal
from streams.rules import Finding, PolicySet
from streams.rules.replay import report_missed
from streams.verdicts import (
    Accepted,
    DeadLetter,
    Incoming,
    Verdicts,
    audit_record,
    deadline_violation,
    event_violation,
)

__all__ = ["DeadLetter", "Incoming", "Judge", "StateLoader", "Verdicts"]

log = logging.getLogger(__name__)

StateLoader = Callable[[str], SubjectHistory | None]

DEFAULT_HORIZON = timedelta(days=7)
DEFAULT_MAX_KEPT = 256


class Judge:
    """Judges events against a policy set, tracking event time and pending deadlines.

    Event time ("now" for deadlines) advances per source partition: it is the lowest of the
    newest event times read from partitions that still have a backlog, or, when all are caught
    up, the newest event time read at all. So a partition read ahead of another during a
    catch-up cannot make a deadline fire before the lagging partition's events are judged.
    """

    def __init__(
        self,
        policy: PolicySet,
        pseudonyms: bytes | Pseudonyms,
        horizon: timedelta = DEFAULT_HORIZON,
        max_kept: int = DEFAULT_MAX_KEPT,
        max_ahead: timedelta = DEFAULT_MAX_AHEAD,
    ) -> None:
        self.policy = policy
        self.horizon = horizon
        self.max_kept = max_kept
        self.max_ahead = max_ahead
        self._late = LateJudge(policy, horizon)
        self._pseudonyms = (
            DeploymentKeyed(pseudonyms) if isinstance(pseudonyms, bytes) else pseudonyms
        )
        # Pseudonym -> erasure day, of subjects seen again after their erasure (this batch).
        self._erased: dict[str, datetime] = {}
        # Source partition -> newest event time read from it.
        self._partition_times: dict[int, datetime] = {}
        # The latest "now" deadlines were judged at: the lateness horizon ends there.
        self._now_reached: datetime | None = None
        # State key -> (next deadline, partition), for the subjects this worker owns; the heap
        # orders them, and entries that no longer match the dict are skipped as stale.
        self._deadlines: dict[str, tuple[datetime, int]] = {}
        self._heap: list[tuple[datetime, str]] = []
        # The source topic, for dead letters of events only kept in a subject's window.
        self._topic = ""

    @property
    def watermark(self) -> datetime | None:
        """The newest event time read from any owned partition."""
        return max(self._partition_times.values(), default=None)

    def event_time(self, lagging: Collection[int] = ()) -> datetime | None:
        """Event-time "now", given the partitions that still have unread events."""
        if any(p not in self._partition_times for p in lagging):
            return None  # nothing read yet from a partition with a backlog
        behind = [self._partition_times[p] for p in lagging]
        return min(behind) if behind else self.watermark

    def judge_batch(
        self, batch: Sequence[Incoming], load: StateLoader, lagging: Collection[int] = ()
    ) -> Verdicts:
        """Judge a batch, then report the deadlines that event time has passed."""
        verdicts = Verdicts()
        received = datetime.now(UTC)
        by_subject: dict[str, list[Accepted]] = defaultdict(list)
        # A subject's events come in runs: its pseudonym (an HMAC) is computed once per batch and
        # source partition, and again only past an erasure.
        pseudonyms: dict[tuple[str, str, int], Resolved] = {}
        self._erased.clear()
        for incoming in batch:
            accepted = self._accept(incoming, verdicts, received, pseudonyms)
            if accepted is not None:
                by_subject[accepted.pseudonym].append(accepted)
        judged_at = datetime.now(UTC)
        for key, items in by_subject.items():
            self._judge_subject(key, items, load, verdicts, judged_at)
        now = self.event_time(lagging)
        if now is not None:
            self._judge_due(now, load, verdicts)
        return verdicts

    def judge_due(self, now: datetime, load: StateLoader) -> Verdicts:
        """Report owned deadlines that passed before `now` unmet."""
        return self._judge_due(now, load, Verdicts())

    def track(self, key: str, partition: int, history: SubjectHistory) -> None:
        """Index a subject's next deadline (also after a rebalance or restart)."""
        self._index(key, partition, self._next_deadline(key, history))

    def index_deadline(self, key: str, partition: int, deadline: datetime | None) -> None:
        """Index a subject's next deadline as computed before (kept in its table entry)."""
        self._index(key, partition, deadline)

    def next_due(self, key: str) -> datetime | None:
        """The subject's next deadline as indexed now: what `index_deadline` takes back."""
        tracked = self._deadlines.get(key)
        return tracked[0] if tracked else None

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        self._deadlines = {k: v for k, v in self._deadlines.items() if v[1] not in gone}
        for partition in gone:
            self._partition_times.pop(partition, None)

    def _accept(
        self,
        incoming: Incoming,
        verdicts: Verdicts,
        now: datetime,
        pseudonyms: dict[tuple[str, str, int], Resolved],
    ) -> Accepted | None:
        try:
            event = parse_event(incoming.value, self.policy.taxonomies, now, self.max_ahead)
            _check_key(incoming.key, event)
            pseudonym = self._pseudonym(event, incoming, pseudonyms)
        except InvalidEvent as error:
            verdicts.dead_letters.append(DeadLetter(incoming, error))
            return None
        except Exception as error:
            reject_internal(incoming, error, verdicts)
            return None
        self._topic = incoming.topic
        newest = self._partition_times.get(incoming.partition)
        if newest is None or event.time > newest:
            self._partition_times[incoming.partition] = event.time
        return Accepted(event, incoming, pseudonym)

    def _pseudonym(
        self,
        event: PrivacyEvent,
        incoming: Incoming,
        pseudonyms: dict[tuple[str, str, int], Resolved],
    ) -> str:
        """The event's subject pseudonym; a fulfilled erasure gives the subject's later events
        another one, in this batch already (events/pseudonyms.py)."""
        org, subject_id = event.data.org, event.data.subject.id.get_secret_value()
        subject = (org, subject_id, incoming.partition)
        resolved = pseudonyms.get(subject)
        if resolved is None or (resolved.until is not None and incoming.offset > resolved.until):
            resolved = self._pseudonyms.resolve(
                org, subject_id, incoming.partition, incoming.offset
            )
            pseudonyms[subject] = resolved
            if resolved.erased_at is not None:
                self._erased[resolved.pseudonym] = resolved.erased_at
        if fulfils_erasure(event):
            self._pseudonyms.erase(org, subject_id, incoming.partition, incoming.offset, event.time)
            del pseudonyms[subject]
        return resolved.pseudonym

    def _judge_subject(
        self,
        key: str,
        items: list[Accepted],
        load: StateLoader,
        verdicts: Verdicts,
        at: datetime,
    ) -> None:
        touched = verdicts.histories.get(key)
        history = touched[1] if touched else load(key)
        if history is None:
            first = items[0].event.data
            history = start_history(first.org, first.subject.kind, self._erased.get(key))
        subject_id = _subject_id(items[0].event)
        fresh = _fresh(sorted(items, key=lambda a: ordering(a.event)), history)
        partition = items[-1].incoming.partition
        verdicts.histories[key] = (partition, history)
        if not fresh:
            return
        if history.follows(fresh[0].event):
            next_due = self._fold_on_top(key, history, fresh, verdicts, at)
        else:
            self._late.rejudge(
                key, subject_id, history, fresh, verdicts, at, self._now_reached, self._topic
            )
            next_due = self._next_deadline(key, history)
        self._trim(key, subject_id, history)
        self._index(key, partition, next_due)

    def _fold_on_top(
        self,
        key: str,
        history: SubjectHistory,
        items: list[Accepted],
        verdicts: Verdicts,
        at: datetime,
    ) -> datetime | None:
        """The in-order case: fold each event onto the subject's current state; returns the
        subject's next deadline."""
        tracked = self._deadlines.get(key)
        next_due = tracked[0] if tracked else None
        for position, item in enumerate(items):
            try:
                step = fold(self.policy, history.state, item.event, next_due)
            except Exception as error:
                # The state may be half-updated: rebuild it from the base without this event.
                reject_internal(item.incoming, error, verdicts)
                remaining = items[position + 1 :]
                subject_id = _subject_id(item.event)
                self._late.rejudge(
                    key,
                    subject_id,
                    history,
                    remaining,
                    verdicts,
                    at,
                    self._now_reached,
                    self._topic,
                )
                return self._next_deadline(key, history)
            next_due = step.next_due
            for finding in step.missed:
                self._report(history, self._deadline(finding, history, key, at), verdicts)
            for finding in step.findings:
                violation = event_violation(finding, item.event, key, self.policy.version, at)
                self._report(history, violation, verdicts)
            violated = tuple(f.rule.rule_id for f in step.findings) if step.findings else ()
            history.keep(
                Kept.of(
                    item.event,
                    item.incoming.value,
                    item.incoming.partition,
                    item.incoming.offset,
                    violated,
                    step.change,
                )
            )
            verdicts.audit.append(
                audit_record(item.event, item.origin, violated, self.policy.version, at)
            )
        return next_due

    def _judge_due(self, now: datetime, load: StateLoader, verdicts: Verdicts) -> Verdicts:
        if self._now_reached is None or now > self._now_reached:
            self._now_reached = now
        due: list[tuple[str, int]] = []
        while self._heap and self._heap[0][0] < now:
            deadline, key = heapq.heappop(self._heap)
            entry = self._deadlines.get(key)
            if entry is None or entry[0] != deadline:
                continue  # stale: the subject's deadline moved or its partition left
            del self._deadlines[key]
            due.append((key, entry[1]))
        judged_at = datetime.now(UTC)
        for key, partition in due:
            # A subject judged in this very batch has newer state than the table.
            touched = verdicts.histories.get(key)
            history = touched[1] if touched else load(key)
            if history is None:
                continue
            try:
                for finding in report_missed(self.policy, history.state, now):
                    violation = self._deadline(finding, history, key, judged_at)
                    self._report(history, violation, verdicts)
            except Exception:
                # Not any one event's fault; the subject's deadlines are judged again when its
                # next event arrives.
                log.exception("judging the deadlines of subject %s failed", key)
                continue
            verdicts.histories[key] = (partition, history)
            self._index(key, partition, self._next_deadline(key, history))
        return verdicts

    def _deadline(
        self, finding: Finding, history: SubjectHistory, key: str, at: datetime
    ) -> Violation:
        return deadline_violation(finding, history.state, key, self.policy, at)

    def _report(self, history: SubjectHistory, violation: Violation, verdicts: Verdicts) -> None:
        history.report(violation)
        verdicts.violations.append(violation)

    def _trim(self, key: str, subject_id: str, history: SubjectHistory) -> None:
        cutoff = self._now_reached - self.horizon if self._now_reached is not None else None
        try:
            history.trim(self.policy, subject_id, cutoff, self.max_kept, self.horizon / 8)
        except Exception:
            log.exception("folding old events of subject %s into its base failed", key)

    def _next_deadline(self, key: str, history: SubjectHistory) -> datetime | None:
        try:
            return self.policy.next_deadline(history.state)
        except Exception:
            log.exception("computing the next deadline of subject %s failed", key)
            return None

    def _index(self, key: str, partition: int, deadline: datetime | None) -> None:
        if deadline is None:
            self._deadlines.pop(key, None)
        elif self._deadlines.get(key) != (deadline, partition):
            self._deadlines[key] = (deadline, partition)
            heapq.heappush(self._heap, (deadline, key))


def _subject_id(event: PrivacyEvent) -> str:
    return event.data.subject.id.get_secret_value()


def _fresh(items: list[Accepted], history: SubjectHistory) -> list[Accepted]:
    """Items whose id the subject has not seen: the same id twice is one event."""
    seen: set[str] = set()
    fresh = []
    for item in items:
        event_id = item.event.id
        if event_id not in seen and not history.seen(event_id):
            seen.add(event_id)
            fresh.append(item)
    return fresh


def _check_key(key: bytes | None, event: PrivacyEvent) -> None:
    # Per-subject ordering and state placement rely on it: every event of a subject must land
    # on the same partition, which only the subject id as message key guarantees.
    if key != event.data.subject.id.get_secret_value().encode():
        raise InvalidEvent("key", "the Kafka message key must be the subject id (data.subject.id)")
