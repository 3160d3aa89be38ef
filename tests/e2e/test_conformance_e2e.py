"""The conformance suite end to end: the real broker, worker and store agree with `judge_history`.

Event time is global to a worker, so cases cannot each get their own "now" in one pipeline: a
case's events would fire the deadlines of another case's near miss. Instead every case gets its
own subjects, all cases become ONE history produced before the worker starts (so it catches up
through it), and the stored violations must equal judging that same history in-process, up to
its latest event time. Cases that time cannot affect must, in addition, find exactly what they
expect on their own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import replace

import pytest

from events.emitter import Emitter
from privtrail.api import MAX_LIMIT
from streams.rules import judge_history, load_policy_set
from streams.rules.policy import YamlPolicySet
from streams.state import SubjectState
from tests.conformance.cases import POLICIES, org_of
from tests.conformance.prepared import (
    Prepared,
    Verdict,
    in_global_time_order,
    in_process_verdict,
    prepare,
    stored_verdict,
    subject_id,
)
from tests.e2e.conftest import Pipeline, settled
from tests.e2e.keys import subjects_by_pseudonym

pytestmark = pytest.mark.e2e
# Policy overrides need a policy of their own, which one pipeline cannot give; few may need it.
MAX_OVERRIDDEN = 3
WAIT_SECONDS = 60


def time_sensitive(policy: YamlPolicySet, case: Prepared) -> bool:
    """Whether a later "now" than the case's own last event could change what it finds."""
    org = org_of(policy, case.rule_id)
    rule = next(r for r in policy.policies[org].rules if r.id == case.rule_id)
    return rule.deadline is not None or case.case.now is not None or leaves_deadline(policy, case)


def leaves_deadline(policy: YamlPolicySet, case: Prepared) -> bool:
    """Whether some subject of the case still has a deadline running after its events, as a
    closed account has for a rule about something else: the combined history runs on past it."""
    states: dict[str, SubjectState] = {}
    for event in sorted(case.events, key=lambda e: e.time):
        org, kind = event.data.org, event.data.subject.kind
        states.setdefault(subject_id(event), SubjectState(org=org, subject_kind=kind)).apply(event)
    return any(policy.next_deadline(state) is not None for state in states.values())


def differences(
    stored: Counter[Verdict], expected: Counter[Verdict], names: Mapping[str, str]
) -> str:
    lines = []
    sides = (("only stored", stored - expected), ("only in-process", expected - stored))
    for label, extra in sides:
        for (subject, rule, cause), times in sorted(extra.items()):
            case = names[subject.split("-", 1)[0]]
            lines.append(f"  {label}: {rule} x{times} for {subject} ({case}), {cause}")
    return "\n".join(lines)


def test_the_pipeline_judges_the_conformance_suite_as_judge_history_does(
    pipeline: Pipeline,
) -> None:
    policy = load_policy_set(POLICIES)
    prepared, overridden = prepare(policy)
    assert len(overridden) <= MAX_OVERRIDDEN, f"too many cases skipped here: {overridden}"
    history = in_global_time_order(prepared)
    # Deadlines fire on event time only, as for judge_history: never on the wall clock.
    event_time_only = {"wall_clock_deadlines": False}
    judged = replace(pipeline, settings=pipeline.settings.model_copy(update=event_time_only))
    topic = judged.settings.topics.events
    with Emitter(judged.settings.bootstrap, source="/conformance", topic=topic) as emitter:
        for event in history:
            emitter.emit(event)
        emitter.flush()

    with judged.worker():
        judged.wait_for(
            lambda: judged.api.stats().events == len(history),
            f"all {len(history)} events stored",
            WAIT_SECONDS,
        )
        judged.wait_for(
            settled(lambda: judged.api.stats().violations), "a settled violation count", 30
        )
        stored = judged.api.violations(limit=MAX_LIMIT)
    assert len(stored) < MAX_LIMIT, "the violations query hit its limit; the check would be partial"

    subjects = subjects_by_pseudonym(
        judged.settings, {(e.data.org, subject_id(e)) for e in history}
    )
    names = {p.tag: f"{p.rule_id}: {p.case.name}" for p in prepared}
    got = Counter(stored_verdict(v, subjects) for v in stored)
    end = history[-1].time
    expected = Counter(in_process_verdict(f) for f in judge_history(policy, history, end))
    assert got == expected, (
        f"the pipeline stored {sum(got.values())} violations, judge_history found "
        f"{sum(expected.values())}:\n{differences(got, expected, names)}"
    )

    wrong = []
    for case in prepared:
        if time_sensitive(policy, case):
            continue
        mine = [rule for subject, rule, _ in got.elements() if subject.startswith(f"{case.tag}-")]
        rules = sorted(mine)
        if rules != sorted(case.case.expect):
            wrong.append(f"  {names[case.tag]}: expected {case.case.expect}, stored {rules}")
    assert not wrong, "cases that time cannot affect found the wrong violations:\n" + "\n".join(
        wrong
    )
