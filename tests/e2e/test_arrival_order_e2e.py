"""Arrival order end to end: the conformance history delivered out of order, as a producer that
re-sends after an outage does, through the real broker, worker and store, ends with exactly the
violations of judging it in order.

The worker reads in small batches, so late events meet windows judged before they arrived: the
store must receive retractions and apply them.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from datetime import timedelta

import pytest

from events.emitter import Emitter
from events.models import PrivacyEvent
from privtrail.api import MAX_LIMIT
from streams.rules import judge_history, load_policy_set
from tests.conformance.cases import POLICIES
from tests.conformance.prepared import (
    in_global_time_order,
    in_process_verdict,
    prepare,
    stored_verdict,
    subject_id,
)
from tests.e2e.conftest import Pipeline, settled
from tests.e2e.keys import subjects_by_pseudonym

pytestmark = pytest.mark.e2e
SEED = 2
MAX_DELAY = timedelta(days=3)  # well inside the 7-day lateness horizon
BATCH = 20


def delivered_late(events: list[PrivacyEvent], seed: int) -> list[PrivacyEvent]:
    rng = random.Random(seed)
    seconds = MAX_DELAY.total_seconds()
    return sorted(events, key=lambda e: e.time + timedelta(seconds=rng.uniform(0, seconds)))


def test_out_of_order_delivery_stores_the_in_order_violations(pipeline: Pipeline) -> None:
    policy = load_policy_set(POLICIES)
    prepared, _ = prepare(policy)
    history = in_global_time_order(prepared)
    arrival = delivered_late(history, SEED)
    assert arrival != history
    small_batches = {"wall_clock_deadlines": False, "batch_size": BATCH}
    judged = replace(pipeline, settings=pipeline.settings.model_copy(update=small_batches))
    topic = judged.settings.topics.events
    with Emitter(judged.settings.bootstrap, source="/late", topic=topic) as emitter:
        for event in arrival:
            emitter.emit(event)
        emitter.flush()

    with judged.worker():
        judged.wait_for(lambda: judged.api.stats().events == len(history), "all events stored", 90)
        judged.wait_for(
            settled(lambda: len(judged.api.violations(limit=MAX_LIMIT, retracted=True))),
            "a settled violation count",
            30,
        )
        standing = judged.api.violations(limit=MAX_LIMIT)
        on_record = judged.api.violations(limit=MAX_LIMIT, retracted=True)

    subjects = subjects_by_pseudonym(
        judged.settings, {(e.data.org, subject_id(e)) for e in history}
    )
    got = Counter(stored_verdict(v, subjects) for v in standing)
    expected = Counter(
        in_process_verdict(f) for f in judge_history(policy, history, history[-1].time)
    )
    assert got == expected, (
        f"only stored: {sorted((got - expected).elements())}\n"
        f"only in order: {sorted((expected - got).elements())}"
    )
    retracted = [v for v in on_record if v.status == "retracted"]
    assert retracted, "late events in small batches must have retracted some verdicts"
    assert {v.violation_id for v in retracted}.isdisjoint(v.violation_id for v in standing)
