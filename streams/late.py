"""Judging late events: an event that comes before something already judged for its subject.

It is merged into the subject's window (streams/history.py) and the window is judged again
from its base; violations that appear, change or disappear are re-sent, a disappeared one with
status "retracted", and audit records whose verdict changed are re-sent too. An event older
than the whole window is judged against the oldest state kept, and its violations say so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from events.outputs import Violation
from events.validation import InvalidEvent
from streams.history import Kept, SubjectHistory, fold
from streams.rules import PolicySet
from streams.rules.replay import report_missed
from streams.state import SubjectState, state_change
from streams.verdicts import (
    Accepted,
    DeadLetter,
    Incoming,
    Origin,
    Verdicts,
    audit_record,
    deadline_violation,
    event_violation,
)

log = logging.getLogger(__name__)


@dataclass
class _Refold:
    """A window judged again from its base: the resulting state and what it reports."""

    state: SubjectState
    reported: dict[str, Violation] = field(default_factory=dict)
    violated: dict[str, tuple[str, ...]] = field(default_factory=dict)


class _EventFailed(Exception):
    def __init__(self, kept: Kept, error: Exception) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.kept = kept


@dataclass(frozen=True)
class LateJudge:
    """Judges a subject's window again with late events merged in, under `policy`; events
    older than `horizon` before the newest "now" are no longer in any window."""

    policy: PolicySet
    horizon: timedelta

    def rejudge(
        self,
        key: str,
        subject_id: str,
        history: SubjectHistory,
        items: list[Accepted],
        verdicts: Verdicts,
        at: datetime,
        now_reached: datetime | None,
        topic: str,
    ) -> None:
        """Merge late events into the window and judge it again from its base; `now_reached`
        is the latest "now" deadlines were judged at, `topic` the source topic."""
        beyond = [item for item in items if history.too_old(item.event)]
        for item in beyond:
            self._judge_beyond_horizon(key, history, item, verdicts, at)
        new = {item.event.id: item for item in items if not history.too_old(item.event)}
        window = sorted(
            [
                *history.window,
                *(
                    Kept.of(
                        i.event,
                        i.incoming.value,
                        i.incoming.partition,
                        i.incoming.offset,
                        (),
                        state_change(i.event),
                    )
                    for i in new.values()
                ),
            ],
            key=lambda kept: kept.order,
        )
        while True:
            try:
                refold = self._refold(key, subject_id, history, window, at, now_reached)
                break
            except _EventFailed as failed:
                window.remove(failed.kept)
                incoming = new[failed.kept.id].incoming if failed.kept.id in new else None
                reject_internal(incoming or _as_incoming(topic, failed.kept), failed, verdicts)
        _send_changes(history, refold, verdicts, at)
        for kept in window:
            violated = refold.violated[kept.id]
            arrived = new.get(kept.id)
            if arrived is not None or violated != kept.violated:
                event = arrived.event if arrived is not None else kept.parse(subject_id)
                origin = Origin(key, kept.partition, kept.offset)
                verdicts.audit.append(
                    audit_record(event, origin, violated, self.policy.version, at)
                )
            kept.violated = violated
        history.replace_window(window)
        history.state = refold.state

    def _refold(
        self,
        key: str,
        subject_id: str,
        history: SubjectHistory,
        window: list[Kept],
        at: datetime,
        now_reached: datetime | None,
    ) -> _Refold:
        refold = _Refold(history.base.model_copy(deep=True))
        next_due = self.policy.next_deadline(refold.state)
        for kept in window:
            try:
                event = kept.parse(subject_id)
                step = fold(self.policy, refold.state, event, next_due)
                missed = [
                    deadline_violation(f, refold.state, key, self.policy, at) for f in step.missed
                ]
            except Exception as error:
                raise _EventFailed(kept, error) from error
            next_due = step.next_due
            for violation in missed:
                refold.reported[violation.violation_id] = violation
            for finding in step.findings:
                violation = event_violation(finding, event, key, self.policy.version, at)
                refold.reported[violation.violation_id] = violation
            refold.violated[kept.id] = tuple(f.rule.rule_id for f in step.findings)
        if now_reached is not None:
            try:
                for finding in report_missed(self.policy, refold.state, now_reached):
                    violation = deadline_violation(finding, refold.state, key, self.policy, at)
                    refold.reported[violation.violation_id] = violation
            except Exception:
                # Not any one event's fault; the deadlines are judged again at the next "now".
                log.exception("judging the deadlines of subject %s failed", key)
        return refold

    def _judge_beyond_horizon(
        self,
        key: str,
        history: SubjectHistory,
        item: Accepted,
        verdicts: Verdicts,
        at: datetime,
    ) -> None:
        """An event older than the window: judged against the oldest state kept, and said so."""
        since = history.since
        assert since is not None
        note = (
            f" (arrived after the lateness horizon of {_span(self.horizon)}: judged against "
            f"the subject's state as of {since.isoformat()})"
        )
        base = history.changing_base()
        try:
            findings = self.policy.judge(item.event, base)
            base.apply(item.event)
            missed = report_missed(self.policy, base, since)
        except Exception as error:
            reject_internal(item.incoming, error, verdicts)
            return
        for finding in findings:
            violation = event_violation(finding, item.event, key, self.policy.version, at)
            verdicts.violations.append(
                violation.model_copy(update={"explanation": violation.explanation + note})
            )
        for finding in missed:
            verdicts.violations.append(deadline_violation(finding, base, key, self.policy, at))
        violated = tuple(f.rule.rule_id for f in findings)
        verdicts.audit.append(
            audit_record(item.event, item.origin, violated, self.policy.version, at)
        )


def reject_internal(incoming: Incoming, error: Exception, verdicts: Verdicts) -> None:
    """Dead-letter an event whose judging failed, with the reason `internal: ...`."""
    reason = (
        f"internal: {error}"
        if isinstance(error, _EventFailed)
        else (f"internal: {type(error).__name__}: {error}")
    )
    log.error(
        "dead-lettering the event at %s[%d]@%d: %s",
        incoming.topic,
        incoming.partition,
        incoming.offset,
        reason,
        exc_info=error,
    )
    verdicts.dead_letters.append(DeadLetter(incoming, InvalidEvent("", reason)))


def _send_changes(
    history: SubjectHistory, refold: _Refold, verdicts: Verdicts, at: datetime
) -> None:
    """Re-send what the re-fold reports differently: new, changed, or no longer found."""
    before = history.reported
    history.reported = {}
    history.fired_until = None
    for violation_id, violation in refold.reported.items():
        old = before.get(violation_id)
        history.report(violation)
        if old is None or _content(old) != _content(violation):
            verdicts.violations.append(violation)
    for violation_id, old in before.items():
        if violation_id not in refold.reported:
            verdicts.violations.append(
                old.model_copy(update={"status": "retracted", "detected_at": at})
            )


def _as_incoming(topic: str, kept: Kept) -> Incoming:
    # An event judged before, failing now that a late event changed what came before it;
    # its original bytes are gone, so the dead letter carries it as kept.
    return Incoming(topic, kept.partition, kept.offset, None, kept.event.encode())


def _span(delta: timedelta) -> str:
    if delta % timedelta(days=1):
        return str(delta)
    return f"{delta.days} day" + ("s" if delta.days != 1 else "")


def _content(violation: Violation) -> dict[str, object]:
    return violation.model_dump(exclude={"detected_at"})
