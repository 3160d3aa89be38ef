"""Erasure by crypto-shredding end to end: a subject with history on the real broker, worker and
chDB store asks for erasure; once it is fulfilled, lineage (API and CLI) says erased, and
nothing in the store (the raw bytes of its rejected inputs included, well within their TTL), the
worker's state changelog or the logs links to the subject's id, while the evidence stays and
`privtrail verify` still passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from config.settings import Settings
from events.emitter import Emitter
from events.key_directory import key_topic
from events.pseudonyms import SubjectKey, lookup_id
from events.tags import pseudonymise
from privtrail.brokers import EmbeddedBroker
from privtrail.topics import ensure_topics
from sinks.clickhouse.store import Store
from tests.e2e.conftest import Pipeline, serving, unstarted_pipeline_settings
from tests.e2e.keys import newest_key
from tests.unit.test_replay import ACCESS, SHARE, raw_event

pytestmark = pytest.mark.e2e

ERASED = "erase-subject-7731"
KEPT = "keep-subject-1902"
# Erased while the store is down.
LATER = "later-subject-5520"
ORG = "linkxup"
START = datetime.now(UTC) - timedelta(days=3)
FULFILLED = START + timedelta(days=1)
# A share on an inapt legal basis: LX-ADNET-001, evidence that must outlive the erasure.
BROKEN_SHARE = {**SHARE, "legal_basis": "legitimate_interests"}


def event(event_id: str, event_type: str, subject: str, hours: float, **data: Any) -> bytes:
    return json.dumps(
        raw_event(event_id, event_type, subject, START + timedelta(hours=hours), **data)
    ).encode()


def history(subject: str, tag: str) -> list[bytes]:
    """A subject's events; their ids hold no subject id (`tag` tells them apart)."""
    return [
        event(f"{tag}-share", "privacy.data.shared", subject, 1, **BROKEN_SHARE),
        event(f"{tag}-access", "privacy.data.accessed", subject, 2, **ACCESS),
        event(
            f"{tag}-open",
            "privacy.request.opened",
            subject,
            3,
            request_id="r-1",
            right="erasure",
        ),
    ]


def bad_field(event_id: str, subject: str, hours: float) -> bytes:
    """A valid-looking access of the subject's data, rejected for a field not in the contract."""
    return event(event_id, "privacy.data.accessed", subject, hours, **ACCESS, purpose="none")


def send(settings: Settings, messages: list[tuple[str, bytes]]) -> None:
    with Emitter(settings.bootstrap, source="/erasure", topic=settings.topics.events) as sdk:
        for key, value in messages:
            sdk.send_raw(key.encode(), value)
        sdk.flush()


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "privtrail", *args],
        env={**os.environ, **settings.as_env()},
        capture_output=True,
        text=True,
        timeout=300,
    )


def topic_bytes(settings: Settings, topic: str) -> list[bytes]:
    """Every key and value in `topic`, read from the broker."""
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert tps, f"no topic {topic}"
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        found: list[bytes] = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=5000).values():
                found += [part for r in records for part in (r.key, r.value) if part]
        return found
    finally:
        consumer.close()


def store_hits(settings: Settings, needles: list[str]) -> list[str]:
    """`table.column` of every stored string that holds one of `needles`, in every table."""
    store = Store.open(settings.store_dsn)
    try:
        # What ClickHouse does in a background merge once the raw bytes' TTL has passed.
        store.command(f"OPTIMIZE TABLE {store.database}.rejected_events FINAL")
        columns = store.query_rows(
            "SELECT c.table AS t, c.name AS c FROM system.columns AS c "
            "JOIN system.tables AS t ON t.database = c.database AND t.name = c.table "
            "WHERE c.database = {db:String} AND c.type LIKE '%String%' "
            "AND t.engine NOT IN ('View', 'MaterializedView')",
            {"db": store.database},
        )
        hits = []
        for column in columns:
            for needle in needles:
                sql = (
                    f"SELECT count() AS n FROM {store.database}.`{column['t']}` "
                    f"WHERE position(toString(`{column['c']}`), {{needle:String}}) > 0"
                )
                if store.query_rows(sql, {"needle": needle})[0]["n"]:
                    hits.append(f"{column['t']}.{column['c']}")
        return hits
    finally:
        store.close()


def stored_under(settings: Settings, pseudonym: str) -> dict[str, int]:
    store = Store.open(settings.store_dsn)
    try:
        return {
            table: store.query_rows(
                f"SELECT count() AS n FROM {store.database}.{table} FINAL "
                "WHERE subject_pseudonym = {p:String}",
                {"p": pseudonym},
            )[0]["n"]
            for table in ("events", "violations")
        }
    finally:
        store.close()


@pytest.mark.timeout(900)
def test_an_erased_subject_can_no_longer_be_linked_and_the_trail_still_verifies(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    # The raw bytes' TTL (30 days) is far off: only the erasure can blank them.
    settings = unstarted_pipeline_settings(broker, tmp_path)
    ensure_topics(settings)
    master = settings.pseudonym_master
    # The id the pseudonyms were before per-subject keys: it must not be stored either.
    deployment_keyed = pseudonymise(master, ORG, ERASED)
    # Where the subject's key is kept: the store keeps it by its rejected inputs until erasure.
    lookup = lookup_id(master, ORG, ERASED)
    malformed = json.dumps({"id": "bad-1", "data": {"org": ORG, "subject": {"id": ERASED}}})

    with serving(settings) as pipeline:
        with pipeline.worker("worker"):
            send(
                settings,
                [(ERASED, m) for m in history(ERASED, "e")]
                + [(KEPT, m) for m in history(KEPT, "k")]
                + [(ERASED, malformed.encode()), (ERASED, bad_field("e-bad", ERASED, 4))]
                + [(KEPT, bad_field("k-bad", KEPT, 4))]
                + [(LATER, event("l-access", "privacy.data.accessed", LATER, 1, **ACCESS))]
                + [(LATER, bad_field("l-bad", LATER, 2))],
            )
            before = wait_lineage(
                pipeline,
                ERASED,
                lambda answer: events_in(answer) == 2 and answer.summary.violations,
            )
            kept = wait_lineage(pipeline, KEPT, lambda answer: events_in(answer) == 2)
            assert before.subject_pseudonym not in (None, deployment_keyed)
            assert {v.rule_id for v in before.summary.violations} == {"LX-ADNET-001"}
            pipeline.wait_for(lambda: rejected_sizes(pipeline, 4), "the rejected inputs")

            send(settings, [(ERASED, fulfilment("e-done", ERASED))])
            after = wait_lineage(pipeline, ERASED, lambda answer: answer.subject_pseudonym is None)
            # The store learns of the erasure from the key topic, and blanks the raw bytes of
            # the subject's rejected inputs: their rows stay.
            sizes = pipeline.wait_for(
                lambda: blanked(rejected_sizes(pipeline, 4), "bad-1", "e-bad"),
                "the erased subject's rejected inputs to be blanked",
            )
            assert sizes["k-bad"] > 0 and sizes["l-bad"] > 0

        assert after.erased_at == datetime.combine(FULFILLED.date(), datetime.min.time(), UTC)
        assert after.edges == [] and after.summary.violations == []
        shown = cli(settings, "lineage", ERASED, "--org", ORG)
        assert shown.returncode == 0, shown.stderr
        assert f"erased at {FULFILLED:%Y-%m-%d}" in shown.stdout

        # A worker that starts over recovers the keys: a kept subject keeps its pseudonym.
        with pipeline.worker("worker-2"):
            send(
                settings,
                [
                    (KEPT, event("k-later", "privacy.data.accessed", KEPT, 30, **ACCESS)),
                    # Naming a subject erased already: stored blanked.
                    (ERASED, bad_field("e-bad-late", ERASED, 30)),
                ],
            )
            again = wait_lineage(pipeline, KEPT, lambda answer: events_in(answer) == 3)
            pipeline.wait_for(
                lambda: blanked(rejected_sizes(pipeline, 5), "bad-1", "e-bad", "e-bad-late"),
                "the rejected input of the erased subject to be stored blanked",
            )
            # The old secret was kept while the fulfilment could be judged again; once its
            # offset is committed, a worker (this one, after a restart) shreds it.
            shredded = pipeline.wait_for(
                lambda: settled_key(settings),
                "the erased subject's retired secret to be shredded",
                timeout=120,
            )
        assert again.subject_pseudonym == kept.subject_pseudonym
        assert shredded == SubjectKey(erased_at=after.erased_at)

    erase_while_the_store_is_down(pipeline)
    with serving(settings) as pipeline:
        # The key topic, read from its start, tells the store of that erasure too.
        pipeline.wait_for(
            lambda: blanked(rejected_sizes(pipeline, 5), "bad-1", "e-bad", "e-bad-late", "l-bad"),
            "the rejected input of the subject erased meanwhile to be blanked",
        )
        checked = cli(settings, "verify", "--json")
        assert checked.returncode == 0, checked.stdout + checked.stderr

    # The evidence stays, under a pseudonym nothing links to the id any more.
    assert before.subject_pseudonym is not None
    assert stored_under(settings, before.subject_pseudonym) == {"events": 4, "violations": 1}
    later_lookup = lookup_id(master, ORG, LATER)
    assert store_hits(settings, [ERASED, deployment_keyed, lookup, LATER, later_lookup]) == []
    # The kept subject's rejected input keeps its bytes (until their TTL).
    assert sorted(store_hits(settings, [KEPT])) == ["rejected_events.key", "rejected_events.raw"]
    for topic in (f"{settings.app_id}-subject-state-changelog", key_topic(settings.app_id)):
        records = topic_bytes(settings, topic)
        assert records, topic
        assert not [r for r in records if ERASED.encode() in r or deployment_keyed.encode() in r]
    for log in sorted(settings.data_dir.glob("*.log")):
        text = log.read_text(errors="replace")
        assert ERASED not in text and deployment_keyed not in text, log.name
        assert LATER not in text, log.name


def fulfilment(event_id: str, subject: str) -> bytes:
    """The fulfilment of the subject's erasure request."""
    fulfilled = raw_event(
        event_id, "privacy.request.fulfilled", subject, FULFILLED, request_id="r-1", right="erasure"
    )
    return json.dumps(fulfilled).encode()


def erase_while_the_store_is_down(stopped: Pipeline) -> None:
    """A worker alone judges LATER's erasure, until it is in the key topic."""
    settings = stopped.settings
    alone = Pipeline(settings, stopped.api)
    with alone.worker("worker-3"):
        send(settings, [(LATER, fulfilment("l-done", LATER))])
        alone.wait_for(
            lambda: (key := newest_key(settings, ORG, LATER)) and key.erased_at,
            f"the erasure of {LATER} in the key topic",
            timeout=120,
        )


def rejected_sizes(pipeline: Pipeline, count: int) -> dict[str, int] | None:
    """Size of the stored raw bytes by rejection, by the event id they had (or the row's id,
    once blanked); None until `count` rejected inputs are stored."""
    rows = pipeline.api.rejected()
    if len(rows) < count:
        return None
    return {row.event_id or row.rejection_id: row.size_bytes for row in rows}


def blanked(sizes: dict[str, int] | None, *event_ids: str) -> dict[str, int] | None:
    """`sizes` once these rejected inputs are blanked: none is found by its event id any more
    (it went with the bytes), and as many rows as them hold no bytes."""
    if sizes is None or any(event_id in sizes for event_id in event_ids):
        return None
    assert list(sizes.values()).count(0) == len(event_ids), sizes
    return sizes


def settled_key(settings: Settings) -> SubjectKey | None:
    """The erased subject's newest key entry, once it holds no secret, retiring or not."""
    key = newest_key(settings, ORG, ERASED)
    return key if key is not None and key.secret is None and not key.retiring else None


def wait_lineage(pipeline: Pipeline, subject: str, done: Any) -> Any:
    def probe() -> Any:
        answer = pipeline.api.lineage(subject, org=ORG)
        return answer if done(answer) else None

    return pipeline.wait_for(probe, f"the lineage of {subject}", timeout=240)


def events_in(lineage: Any) -> int:
    return len({edge.event_id for edge in lineage.edges})
