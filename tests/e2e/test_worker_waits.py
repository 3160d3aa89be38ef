"""A worker started before its broker waits for it, saying so, and judges once it is up."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from events.emitter import Emitter
from privtrail.brokers import embedded_broker
from privtrail.credentials import api_client
from privtrail.demo import default_start, demo_events
from privtrail.topics import ensure_topics
from tests.e2e.conftest import Pipeline, _healthy, unstarted_pipeline_settings
from tests.support import free_port, log_tail, running_process

pytestmark = pytest.mark.e2e
EVENTS = 300
WAIT_SECONDS = 30


def test_a_worker_started_before_its_broker_judges_once_the_broker_is_up(tmp_path: Path) -> None:
    broker = embedded_broker("kafka", free_port(), tmp_path / "kafka")
    settings = unstarted_pipeline_settings(broker, tmp_path / "pipeline")
    worker_log = settings.data_dir / "worker.log"
    argv = [sys.executable, "-m", "privtrail"]
    with running_process([*argv, "worker"], worker_log, env=settings.as_env()) as worker:
        _wait_for_line(worker_log, f"waiting for Kafka at {broker.bootstrap}")
        assert worker.poll() is None, log_tail(worker_log)
        broker.start()
        try:
            ensure_topics(settings)
            serve_log = settings.data_dir / "serve.log"
            with running_process([*argv, "serve"], serve_log, env=settings.as_env()) as serve:
                pipeline = Pipeline(settings, api_client(settings), [worker, serve])
                pipeline.wait_for(lambda: _healthy(pipeline.api), "the query API", 60)
                messages = demo_events(5, EVENTS, default_start(), malformed_share=0)
                with Emitter(broker.bootstrap, source="/wait", topic=settings.topics.events) as e:
                    for message in messages:
                        e.send_raw(message.key, message.value)
                pipeline.wait_for(
                    lambda: pipeline.api.stats().events >= EVENTS, f"{EVENTS} events judged"
                )
                assert pipeline.api.stats().events == EVENTS
                # Violations are an insert of their own, from a topic of their own: they may
                # be stored a flush after the last event.
                pipeline.wait_for(pipeline.api.violations, "the demo's violating story judged")
        finally:
            broker.stop()


def _wait_for_line(log: Path, text: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not (log.exists() and text in log.read_text(errors="replace")):
        if time.monotonic() > deadline:
            pytest.fail(f"the worker never said {text!r}:\n{log_tail(log)}")
        time.sleep(0.3)
