"""A worker recovering its state table from the changelog, on the real broker: entries of the
current format (next deadline in the header) and of the earlier one (history only, as workers
before the header wrote them) both come back with their subjects' deadlines."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.partitioner.default import murmur2

from events.outputs import Violation
from streams.entries import changelog_value
from streams.history import SubjectHistory
from streams.judging import Incoming, Judge
from streams.rules.policy import load_policy_set
from tests.e2e.conftest import Pipeline

pytestmark = pytest.mark.e2e
CLOSED_AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
# LinkXup deletes a closed account's data within 30 days: long past for an account closed then.
RULE = "LX-CLOSE-008"


def closed_account(subject: str) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/linkxup/accounts",
            "type": "privacy.account.changed",
            "time": CLOSED_AT.isoformat(),
            "data": {
                "org": "linkxup",
                "subject": {"id": subject, "kind": "customer"},
                "status": "closed",
            },
        }
    ).encode()


def judged(pipeline: Pipeline, subject: str) -> tuple[Judge, str, int, SubjectHistory]:
    """The subject's table entry as a worker judging its one event would hold it."""
    settings = pipeline.settings
    judge = Judge(load_policy_set(settings.policies_dir), settings.pseudonym_master)
    key = subject.encode()
    partition = (murmur2(key) & 0x7FFFFFFF) % settings.partitions
    incoming = Incoming(settings.topics.events, partition, 0, key, closed_account(subject))
    verdicts = judge.judge_batch([incoming], lambda _: None)
    assert [v.rule_id for v in verdicts.violations] == [], "not due yet in event time"
    ((pseudonym, (_, history)),) = verdicts.histories.items()
    return judge, pseudonym, partition, history


def write_changelog(pipeline: Pipeline, entries: dict[str, tuple[int, bytes]]) -> None:
    """The entries in the worker's changelog, as a worker that ran before would have left it."""
    settings = pipeline.settings
    topic = f"{settings.app_id}-subject-state-changelog"
    layout = {
        "num_partitions": settings.partitions,
        "replication_factor": settings.replication_factor,
        "configs": {"cleanup.policy": "compact"},
    }
    with KafkaAdminClient(bootstrap_servers=settings.bootstrap) as admin:
        admin.create_topics({topic: layout})
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap)
    try:
        for pseudonym, (partition, value) in entries.items():
            key = json.dumps(pseudonym).encode()  # the table's keys are JSON strings
            producer.send(topic, key=key, value=value, partition=partition)
        producer.flush()
    finally:
        producer.close()


def test_a_restarted_worker_reports_the_deadlines_of_entries_of_either_format(
    pipeline: Pipeline,
) -> None:
    judge, current, partition, history = judged(pipeline, "lx-current")
    header = changelog_value(partition, history, judge.policy.version, judge.next_due(current))
    _, earlier, earlier_partition, earlier_history = judged(pipeline, "lx-earlier")
    unheaded = b'{"partition":%d,"history":%s}' % (
        earlier_partition,
        earlier_history.model_dump_json().encode(),
    )
    write_changelog(
        pipeline, {current: (partition, header), earlier: (earlier_partition, unheaded)}
    )

    def both_reported() -> list[Violation] | None:
        found = pipeline.api.violations(rule=RULE, limit=10)
        return found if len(found) >= 2 else None

    with pipeline.worker():
        # Nothing to judge: the wall clock makes both deadlines due once the table is back.
        found = pipeline.wait_for(both_reported, f"{RULE} for both recovered subjects", 180)
    assert sorted(v.subject_pseudonym for v in found) == sorted([current, earlier])
