"""Workers SIGKILLed while judging a backlog, on Apache Kafka.

The emitting fault test (test_faults.py) kills workers while traffic trickles in at 100 events/s,
so a kill often lands on a worker that is starting or idle. Here every event is on the broker
before the first worker starts, and each worker is killed right after its group has committed
progress: fetches queued for the judge, a batch judged, its outputs or changelog in flight and
offsets not yet committed (once the backlog is judged, the kills stop). Nothing may be lost or
counted twice: every event is stored once, with exactly the violations of judging the same
events in-process.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from config.settings import Settings
from events.models import PrivacyEvent
from privtrail.brokers import EmbeddedBroker
from privtrail.demo import default_start, demo_events
from tests.e2e.test_faults import Emitting, fault_settings, stack_on

pytestmark = pytest.mark.e2e
SEED = 20261207
EVENTS = 20_000
KILLS = 4
PROGRESS_TIMEOUT = 180.0
# Small batches committed often, so however fast the machine judges, a kill lands with part of
# the backlog judged and committed, part judged and not, and part not read yet.
BATCHING = {"batch_size": 1000, "commit_interval": 0.25}


def backlog() -> list[PrivacyEvent]:
    messages = demo_events(SEED, EVENTS, default_start(), malformed_share=0)
    return [m.event for m in messages if m.event is not None]


def committed(admin: KafkaAdminClient, settings: Settings) -> int:
    """The worker group's committed source offsets, summed (0 before its first commit)."""
    try:
        offsets = admin.list_group_offsets(settings.app_id).get(settings.app_id, {})
    except KafkaError:
        return 0
    return sum(m.offset for tp, m in offsets.items() if tp.topic == settings.topics.events)


def wait_for_progress(admin: KafkaAdminClient, settings: Settings, past: int) -> int:
    deadline = time.monotonic() + PROGRESS_TIMEOUT
    while time.monotonic() < deadline:
        now = committed(admin, settings)
        if now > past:
            return now
        time.sleep(0.2)
    raise AssertionError(f"the worker group committed nothing past {past} in {PROGRESS_TIMEOUT}s")


def test_workers_killed_while_judging_a_backlog(broker: EmbeddedBroker, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    events = backlog()
    settings = fault_settings(broker, tmp_path).model_copy(update=BATCHING)
    with stack_on(broker, tmp_path, settings) as stack:
        stack.start_serve()
        Emitting(stack.settings, events, rate=1e9).finish()
        progress = [0]
        with KafkaAdminClient(bootstrap_servers=stack.settings.bootstrap) as admin:
            while len(progress) <= KILLS and progress[-1] < len(events):
                stack.start_worker()
                progress.append(wait_for_progress(admin, stack.settings, progress[-1]))
                # Somewhere inside the next batch, not always right after a commit.
                time.sleep(rng.uniform(0.0, 0.5))
                stack.kill(stack.worker)
        print(f"committed offsets at each kill: {progress[1:]} of {len(events)}")
        assert progress[1] < len(events), "the first kill must land inside the backlog"
        stack.start_worker()
        stack.check(events)
