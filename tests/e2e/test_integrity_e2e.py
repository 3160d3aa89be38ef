"""Tamper evidence end to end: demo traffic through the real broker, worker and chDB store,
then the store tampered with SQL while its process is down, and `privtrail verify` (the CLI,
through the API of the restarted store process) naming each change by its row's id."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from config.settings import Settings
from events.emitter import Emitter
from privtrail.brokers import EmbeddedBroker
from privtrail.credentials import api_client
from privtrail.demo import default_start, demo_events
from privtrail.processes import spawn
from tests.e2e.conftest import Pipeline, _healthy, ingest_drained, pipeline_settings, settled
from tests.support import running_process

pytestmark = pytest.mark.e2e
SEED = 20261206
EVENTS = 400
REPO = Path(__file__).resolve().parents[2]


@contextmanager
def serving(settings: Settings, name: str = "serve") -> Iterator[Pipeline]:
    with running_process(
        [sys.executable, "-m", "privtrail", "serve"],
        _log(settings, name),
        env=settings.as_env(),
    ) as serve:
        running = Pipeline(settings, api_client(settings), [serve])
        running.wait_for(lambda: _healthy(running.api), "the query API", timeout=90)
        yield running


@contextmanager
def serving_until_killed(settings: Settings, name: str) -> Iterator[Pipeline]:
    """The store process, killed with SIGKILL when the block ends: no flush, no checkpoint."""
    serve = spawn([sys.executable, "-m", "privtrail", "serve"], _log(settings, name), env(settings))
    try:
        running = Pipeline(settings, api_client(settings), [serve])
        running.wait_for(lambda: _healthy(running.api), "the query API", timeout=90)
        yield running
    finally:
        os.killpg(serve.pid, signal.SIGKILL)
        serve.wait()


@contextmanager
def working(settings: Settings, name: str) -> Iterator[None]:
    with running_process(
        [sys.executable, "-m", "privtrail", "worker"], _log(settings, name), env=env(settings)
    ):
        yield


def _log(settings: Settings, name: str) -> Path:
    return settings.data_dir / f"{name}.log"


def emit(settings: Settings, salt: str, start_days_ago: int = 0) -> int:
    """Demo traffic (malformed inputs included); the number of valid events sent."""
    start = default_start() - timedelta(days=start_days_ago)
    messages = list(demo_events(SEED, EVENTS, start, salt=salt))
    with Emitter(settings.bootstrap, source="/integrity", topic=settings.topics.events) as sdk:
        for message in messages:
            sdk.send_raw(message.key, message.value)
        sdk.flush()
    return sum(message.event is not None for message in messages)


def stored_rows(pipeline: Pipeline) -> int:
    stats = pipeline.api.stats()
    return stats.events + stats.violations + stats.rejected_events


def wait_stored(pipeline: Pipeline, events: int) -> int:
    """Wait until the store holds `events` events and nothing more arrives; its row count."""
    pipeline.wait_for(lambda: pipeline.api.stats().events >= events, f"{events} events", 300)
    pipeline.wait_for(lambda: ingest_drained(pipeline.api), "the store's ingest to drain", 120)
    return pipeline.wait_for(settled(lambda: stored_rows(pipeline)), "the store to settle", 120)


def env(settings: Settings) -> dict[str, str]:
    return {**os.environ, **settings.as_env()}


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "privtrail", *args],
        env=env(settings),
        capture_output=True,
        text=True,
        timeout=600,
    )


def verify(settings: Settings) -> tuple[int, dict[str, Any]]:
    done = cli(settings, "verify", "--json")
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def resend_one_audit_message(settings: Settings) -> None:
    """A copy of a stored audit message sent again: what a worker that crashed after sending
    it, and before committing, does."""
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False)
    partitions = [
        TopicPartition(settings.topics.audit, number)
        for number in sorted(consumer.partitions_for_topic(settings.topics.audit) or ())
    ]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    deadline = time.monotonic() + 60
    records: list[Any] = []
    while not records and time.monotonic() < deadline:
        records = [r for batch in consumer.poll(timeout_ms=1000).values() for r in batch]
    consumer.close()
    assert records, "no audit message to send again"
    first = records[0]
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap)
    producer.send(first.topic, first.value, key=first.key, partition=first.partition).get(30)
    producer.close()


# Three runs of traffic, two crashes and four store processes: minutes on a loaded machine.
@pytest.mark.timeout(900)
def test_a_clean_history_verifies_after_crashes_duplicates_and_a_replay(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = pipeline_settings(broker, tmp_path).model_copy(
        update={"integrity_checkpoint_seconds": 1.0, "integrity_checkpoint_records": 500}
    )
    with serving(settings) as pipeline:
        with pipeline.worker("worker-1") as worker:
            sent = emit(settings, "first")
            pipeline.wait_for(lambda: stored_rows(pipeline) > 0, "the first rows stored")
            worker.send_signal(signal.SIGKILL)  # a worker crash: its outputs come again
            worker.wait()
        with pipeline.worker("worker-2"):
            sent += emit(settings, "second", start_days_ago=400)
            wait_stored(pipeline, sent)
            resend_one_audit_message(settings)
            before = wait_stored(pipeline, sent)
    with working(settings, "worker-3"):
        # The store process killed as it ingests: what it inserted and had not committed yet
        # is consumed and inserted again.
        with serving_until_killed(settings, "serve-2") as killed:
            sent += emit(settings, "third", start_days_ago=800)
            killed.wait_for(lambda: stored_rows(killed) > before, "rows of the third run stored")
        with serving(settings, "serve-3") as pipeline:
            wait_stored(pipeline, sent)
            replayed = cli(settings, "replay", "--policy", str(REPO / "policies"), "--json")
            assert replayed.returncode == 0, replayed.stderr
            pipeline.wait_for(lambda: _signed(settings), "a signed checkpoint", 60)
            code, report = verify(settings)
            exported = tmp_path / "checkpoints.json"
            export = cli(settings, "checkpoints", "export", "--output", str(exported))
    assert (code, report["findings"], report["notes"]) == (0, [], []), report
    assert report["rows_checked"] > EVENTS
    assert export.returncode == 0, export.stderr
    # Checked offline, from the export alone: the anchor an auditor keeps elsewhere.
    checked = cli(settings, "checkpoints", "check", str(exported))
    assert checked.returncode == 0, checked.stderr
    assert json.loads(exported.read_text())["checkpoints"]


def _signed(settings: Settings) -> bool:
    """Whether the trail verifies with at least one signed checkpoint."""
    code, report = verify(settings)
    signed = code == 0 and report["last_checkpoint"] is not None
    if not signed:  # shown with the failure if no verify ever passes
        print(f"verify exited {code}: {json.dumps(report)[:4000]}")
    return signed


@pytest.mark.timeout(600)
def test_verify_names_each_row_tampered_with_in_the_store(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    # No checkpoint before the tampering: the newest rows are cut after the last one.
    settings = pipeline_settings(broker, tmp_path).model_copy(
        update={"integrity_checkpoint_seconds": 3600.0, "integrity_checkpoint_records": 10**6}
    )
    # Killed at the end: a graceful stop would sign the tail the test cuts.
    with working(settings, "worker"), serving_until_killed(settings, "serve") as pipeline:
        sent = emit(settings, "tamper")
        wait_stored(pipeline, sent)
        # A second run once the first is stored: the newest audit message, which the test cuts,
        # is then not a chain's only one, however the worker batched the first run.
        sent += emit(settings, "tamper-again")
        wait_stored(pipeline, sent)
        code, report = verify(settings)
        assert (code, report["findings"]) == (0, []), report
    tampered = subprocess.run(
        [sys.executable, "-m", "tests.e2e.integrity_tamper", settings.store_dsn],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env=env(settings),
    )
    assert tampered.returncode == 0, tampered.stderr
    changed = json.loads(tampered.stdout.strip().splitlines()[-1])
    with serving(settings, "serve-after") as after:
        code, report = verify(settings)
        rewritten = after.api.health().ingest
    named = {(f["kind"], f["table"], f["id"]) for f in report["findings"]}
    expected = {
        *(("truncated", "events", i) for i in changed["truncated"]),
        *(("deleted", "events", i) for i in changed["dropped"]),
        ("edited", "events", changed["edited"]),
        ("inserted", "events", "forged-event"),
        ("deleted", "violations", changed["violation"]),
        ("deleted", "rejected_events", changed["rejected"]),
    }
    assert code == 1
    assert report["notes"] == []
    assert rewritten is not None and sum(rewritten.rows_written.values()) == 0, rewritten
    assert named == expected, report
