"""Faults on Apache Kafka while a service emits: killed workers and stores, a store down, a
broker restart, a whole-stack restart. Each run must end exactly where a run without faults
ends: every event stored once, and the violations (ids and contents) of judging the same events
in-process with `judge_history`, none twice.

Demo traffic (fixed seed, no malformed input) goes out through the emitter SDK at a steady
rate from a thread while the test's main thread injects the faults (processes are started from
the main thread: they die with the thread that started them). Deadlines fire on event time
only, so "now" at the end is the last event's time, as for `judge_history`.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from config.settings import Settings
from events.emitter import Emitter
from events.models import PrivacyEvent
from events.outputs import Violation
from privtrail.api import MAX_LIMIT
from privtrail.brokers import EmbeddedBroker, embedded_broker
from privtrail.credentials import api_client
from privtrail.demo import default_start, demo_events
from streams.rules import judge_history, load_policy_set
from streams.state import deadline_key
from tests.e2e.conftest import Pipeline, _healthy, ingest_drained, pipeline_settings, settled
from tests.e2e.keys import subjects_by_pseudonym
from tests.support import free_port, running_process

pytestmark = pytest.mark.e2e
SEED = 20260504
EVENTS = 2000
RATE = 100.0  # events/s: 20 s of traffic
STORE_TIMEOUT = 90
# A SIGKILLed worker stays a group member until its session times out; keep that short.
GROUP_TIMING = {"broker_session_timeout": 10.0, "broker_heartbeat_interval": 1.0}
SERVE_DOWN_SECONDS = 60.0
# The store-down test spreads the same events over the outage and some seconds on either side,
# so traffic goes on for the whole minute the store is down and after it is back.
SERVE_DOWN_RATE = EVENTS / (SERVE_DOWN_SECONDS + 10)
BROKER_DOWN_SECONDS = 15.0

Signature = tuple[str, str, str, str, datetime]


def workload() -> list[PrivacyEvent]:
    messages = demo_events(SEED, EVENTS, default_start(), malformed_share=0)
    events = [m.event for m in messages if m.event is not None]
    assert len(events) == EVENTS
    return events


def expected_violations(settings: Settings, events: list[PrivacyEvent]) -> dict[str, Signature]:
    """Verdict key -> (rule, org, subject id, cause event id, occurred at), in-process."""
    policy = load_policy_set(settings.policies_dir)
    expected: dict[str, Signature] = {}
    for found in judge_history(policy, events, events[-1].time):
        rule = found.finding.rule.rule_id
        subject = found.subject.id.get_secret_value()
        if found.event is not None:
            key = Violation.make_id(rule, found.event.id)
            cause = found.event.id
        else:
            assert found.finding.deadline is not None
            key = deadline_verdict(rule, subject, found.finding.deadline)
            cause = found.finding.cause_event_id or ""
        expected[key] = (rule, found.org, subject, cause, found.occurred_at)
    return expected


def deadline_verdict(rule: str, subject: str, deadline: datetime) -> str:
    """A missed deadline's violation id is made of the subject's pseudonym, a random key's
    HMAC (events/pseudonyms.py): verdicts are compared by subject id instead."""
    return f"{subject}\x1f{deadline_key(rule, deadline.astimezone(UTC))}"


def stored_violations(
    settings: Settings, stored: list[Violation], events: list[PrivacyEvent]
) -> dict[str, Signature]:
    keyed = {(e.data.org, e.data.subject.id.get_secret_value()) for e in events}
    subjects = subjects_by_pseudonym(settings, keyed)
    return {verdict_key(v, subjects): signature(v, subjects) for v in stored}


def verdict_key(v: Violation, subjects: dict[str, str]) -> str:
    if v.deadline is None:
        return v.violation_id
    return deadline_verdict(v.rule_id, subjects[v.subject_pseudonym], v.deadline)


def signature(v: Violation, subjects: dict[str, str]) -> Signature:
    return (v.rule_id, v.org, subjects[v.subject_pseudonym], v.event_id, v.occurred_at)


class Emitting:
    """Sends `events` at `rate` from a thread; `finish()` flushes and raises what went wrong."""

    def __init__(self, settings: Settings, events: list[PrivacyEvent], rate: float = RATE) -> None:
        self.emitter = Emitter(settings.bootstrap, source="/faults", topic=settings.topics.events)
        self.events = events
        self.rate = rate
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()
        self.thread.start()

    def _run(self) -> None:
        try:
            for index, event in enumerate(self.events):
                delay = self.started + index / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.emitter.emit(event)
        except BaseException as error:  # reported by finish()
            self.errors.append(error)

    @property
    def done(self) -> bool:
        return not self.thread.is_alive()

    def finish(self) -> float:
        """Wait for the last send and its delivery; the seconds since the first send."""
        self.thread.join()
        try:
            self.emitter.close()
        except BaseException as error:
            self.errors.append(error)
        assert not self.errors, f"the emitter reported: {self.errors}"
        return time.monotonic() - self.started


class Stack:
    """A store/API process and workers that a test kills, stops and restarts at will."""

    def __init__(self, settings: Settings, exits: ExitStack) -> None:
        self.settings = settings
        self.exits = exits
        self.pipeline = Pipeline(settings, api_client(settings))
        self.serve: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.started = 0

    def _start(self, command: str) -> subprocess.Popen[bytes]:
        self.started += 1
        process = self.exits.enter_context(
            running_process(
                [sys.executable, "-m", "privtrail", command],
                self.settings.data_dir / f"{command}-{self.started}.log",
                env=self.settings.as_env(),
            )
        )
        self.pipeline.processes.append(process)
        return process

    def start_serve(self) -> None:
        self.serve = self._start("serve")
        self.pipeline.wait_for(lambda: _healthy(self.pipeline.api), "the query API", 60)

    def start_worker(self) -> None:
        self.worker = self._start("worker")

    def kill(self, process: subprocess.Popen[bytes] | None, how: int = signal.SIGKILL) -> None:
        assert process is not None and process.poll() is None, "killing a process that died"
        self.pipeline.processes.remove(process)
        os.killpg(process.pid, how)
        process.wait(30)

    def check(self, events: list[PrivacyEvent]) -> dict[str, Violation]:
        """Everything stored once, and the in-process violations, each once."""
        api = self.pipeline.api
        self.pipeline.wait_for(
            lambda: api.stats().events >= len(events),
            f"all {len(events)} events stored",
            STORE_TIMEOUT,
        )
        self.pipeline.wait_for(
            lambda: ingest_drained(api), "the store's ingest to drain its topics", STORE_TIMEOUT
        )
        self.pipeline.wait_for(
            settled(lambda: len(api.violations(limit=MAX_LIMIT, retracted=True))),
            "a settled violation count",
            30,
        )
        assert api.stats().events == len(events), "an event was stored twice or more"
        stored = api.violations(limit=MAX_LIMIT)
        assert len(stored) < MAX_LIMIT
        ids = [v.violation_id for v in stored]
        assert len(ids) == len(set(ids)), "the API shows a violation twice"
        got = stored_violations(self.settings, stored, events)
        expected = expected_violations(self.settings, events)
        assert expected, "the workload must break some rules"
        assert got == expected, (
            f"only stored: {sorted(set(got) - set(expected))}\n"
            f"only in-process: {sorted(set(expected) - set(got))}\n"
            f"differing: {[i for i in got.keys() & expected.keys() if got[i] != expected[i]]}"
        )
        assert not api.rejected(limit=10), "demo traffic without malformed input was rejected"
        return {v.violation_id: v for v in stored}


def fault_settings(broker: EmbeddedBroker, tmp_path: Path) -> Settings:
    settings = pipeline_settings(broker, tmp_path)
    return settings.model_copy(update={"wall_clock_deadlines": False, **GROUP_TIMING})


@contextmanager
def stack_on(
    broker: EmbeddedBroker, tmp_path: Path, settings: Settings | None = None
) -> Iterator[Stack]:
    with ExitStack() as exits:
        yield Stack(settings or fault_settings(broker, tmp_path), exits)


@pytest.fixture
def dedicated_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A Kafka broker of this test's own, which it may stop and start again."""
    broker = embedded_broker("kafka", free_port(), tmp_path / "kafka")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_workers_killed_five_times_while_emitting(broker: EmbeddedBroker, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    events = workload()
    with stack_on(broker, tmp_path) as stack:
        stack.start_serve()
        stack.start_worker()
        kills = sorted(rng.uniform(2, EVENTS / RATE) for _ in range(5))
        emitting = Emitting(stack.settings, events)
        for moment in kills:
            time.sleep(max(0.0, emitting.started + moment - time.monotonic()))
            stack.kill(stack.worker)
            stack.start_worker()
        emitting.finish()
        stack.check(events)


def test_the_store_killed_three_times_while_emitting(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    rng = random.Random(SEED + 1)
    events = workload()
    with stack_on(broker, tmp_path) as stack:
        stack.start_serve()
        stack.start_worker()
        emitting = Emitting(stack.settings, events)
        for _ in range(3):
            # Some seconds of ingest after each (re)start, then SIGKILL, mid-insert or not.
            time.sleep(rng.uniform(1, 5))
            stack.kill(stack.serve)
            stack.start_serve()
        emitting.finish()
        stack.check(events)


def test_the_store_down_while_emitting_drains_its_backlog(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """The store is stopped for SERVE_DOWN_SECONDS (60 s) from the third second of traffic,
    while events keep coming, then started again before the traffic ends."""
    events = workload()
    with stack_on(broker, tmp_path) as stack:
        stack.start_serve()
        stack.start_worker()
        emitting = Emitting(stack.settings, events, SERVE_DOWN_RATE)
        time.sleep(3)
        stack.kill(stack.serve, signal.SIGTERM)
        time.sleep(SERVE_DOWN_SECONDS)
        assert not emitting.done, "the traffic must outlast the outage"
        stack.start_serve()
        emitting.finish()
        stack.check(events)


def test_a_broker_restart_while_emitting_loses_nothing(
    dedicated_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    events = workload()
    with stack_on(dedicated_broker, tmp_path / "pipeline") as stack:
        stack.start_serve()
        stack.start_worker()
        # Restart the broker under a worker that is already judging, not one still starting:
        # the first event alone, stored, before the traffic, however long the worker takes.
        Emitting(stack.settings, events[:1]).finish()
        api = stack.pipeline.api
        stack.pipeline.wait_for(lambda: api.stats().events > 0, "the worker's first event", 90)
        emitting = Emitting(stack.settings, events[1:])
        time.sleep(2)
        assert not emitting.done, "the outage must start within the traffic"
        down = time.monotonic()
        dedicated_broker.stop()
        time.sleep(BROKER_DOWN_SECONDS)
        # Sends go on meanwhile; the emitter buffers and retries them.
        dedicated_broker.start()
        outage = time.monotonic() - down
        emitting.finish()
        stack.check(events)
    assert outage >= BROKER_DOWN_SECONDS


def test_a_whole_stack_restart_keeps_violations_and_lineage(
    dedicated_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    events = workload()
    subjects = {(e.data.subject.id.get_secret_value(), e.data.org) for e in events[::200]}
    with stack_on(dedicated_broker, tmp_path / "pipeline") as stack:
        stack.start_serve()
        stack.start_worker()
        Emitting(stack.settings, events).finish()
        before = stack.check(events)
        lineage = {s: stack.pipeline.api.lineage(*s) for s in sorted(subjects)}
        stats = stack.pipeline.api.stats()
        stack.kill(stack.worker, signal.SIGTERM)
        stack.kill(stack.serve, signal.SIGTERM)
        settings = stack.settings
    dedicated_broker.stop()

    dedicated_broker.start()
    with stack_on(dedicated_broker, tmp_path, settings) as stack:
        stack.start_serve()
        stack.start_worker()
        after = stack.check(events)
        assert after.keys() == before.keys()
        assert {s: stack.pipeline.api.lineage(*s) for s in sorted(subjects)} == lineage
        assert stack.pipeline.api.stats() == stats
