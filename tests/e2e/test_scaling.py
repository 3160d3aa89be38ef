"""Two workers share the partitions; one leaves mid-stream and the other takes over its state."""

from __future__ import annotations

from collections import Counter

import pytest

from events.emitter import Emitter
from events.models import PrivacyEvent
from privtrail.demo import FULL_COVERAGE_COUNT, default_start, demo_events, send_demo
from streams.rules import judge_history, load_policy_set
from tests.e2e.conftest import Pipeline
from tests.e2e.keys import subjects_by_pseudonym

pytestmark = pytest.mark.e2e


def test_work_moves_between_workers_without_losing_or_doubling_verdicts(
    pipeline: Pipeline,
) -> None:
    settings = pipeline.settings
    demo = list(demo_events(11, FULL_COVERAGE_COUNT, default_start()))
    valid = [d.event for d in demo if d.event is not None]
    half = len(demo) // 2
    with (
        Emitter(settings.bootstrap, source="/e2e", topic=settings.topics.events) as emitter,
        pipeline.worker("worker-a"),
    ):
        with pipeline.worker("worker-b"):
            send_demo(emitter, demo[:half])
            pipeline.wait_for(
                lambda: pipeline.api.stats().events >= sum(1 for d in demo[:half] if d.event),
                "the first half, judged by two workers",
                timeout=120,
            )
        # worker-b has left: worker-a now owns every partition, with the state b had built.
        send_demo(emitter, demo[half:])
        pipeline.wait_for(
            lambda: pipeline.api.stats().events >= len(valid), "the second half", timeout=120
        )
        expected = _expected(pipeline, valid)
        subjects = {(e.data.org, e.data.subject.id.get_secret_value()) for e in valid}
        # Exactly the in-process verdicts, none lost in the hand-over and none doubled.
        pipeline.wait_for(
            lambda: _stored(pipeline, subjects) == expected, "the in-process verdicts, exactly"
        )


def _expected(pipeline: Pipeline, events: list[PrivacyEvent]) -> Counter[tuple[str, str]]:
    policy = load_policy_set(pipeline.settings.policies_dir)
    return Counter(
        (f.finding.rule.rule_id, f.subject.id.get_secret_value())
        for f in judge_history(policy, events, max(e.time for e in events))
    )


def _stored(pipeline: Pipeline, subjects: set[tuple[str, str]]) -> Counter[tuple[str, str]]:
    ids = subjects_by_pseudonym(pipeline.settings, subjects)
    return Counter(
        (v.rule_id, ids.get(v.subject_pseudonym, v.subject_pseudonym))
        for v in pipeline.api.violations(limit=10_000)
    )
