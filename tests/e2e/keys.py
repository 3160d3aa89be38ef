"""Which subject a stored pseudonym stands for, in e2e tests that compare the pipeline's verdicts
with the judge's in memory (which know subjects by id).

The worker keys each subject with a random secret (events/pseudonyms.py): the pseudonyms are
found by reading every secret its key topic still holds, retiring and shredded ones too, which
compaction has not cleaned out yet in a test's minutes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from kafka import KafkaConsumer, TopicPartition

from config.settings import Settings
from events.key_directory import key_topic
from events.pseudonyms import SubjectKey, lookup_id


def subjects_by_pseudonym(
    settings: Settings, subjects: Iterable[tuple[str, str]]
) -> dict[str, str]:
    """Pseudonym -> subject id, for every pseudonym the worker gave these (org, id) subjects."""
    master = settings.pseudonym_master
    wanted = {json.dumps(lookup_id(master, org, sid)).encode(): (org, sid) for org, sid in subjects}
    found: dict[str, str] = {}
    for key, value in key_log(settings):
        if key in wanted and value is not None:
            entry = SubjectKey.model_validate_json(value)
            # A secret made and retired in one batch is written as retiring only.
            held = [entry.secret, *(old.secret for old in entry.retiring)]
            org, sid = wanted[key]
            for secret in filter(None, held):
                found[SubjectKey(secret=secret).pseudonym(org, sid)] = sid
    return found


def newest_key(settings: Settings, org: str, subject_id: str) -> SubjectKey | None:
    """The subject's entry as the key topic holds it last: what a recovering worker gets."""
    master = settings.pseudonym_master
    wanted = json.dumps(lookup_id(master, org, subject_id)).encode()
    values = [value for key, value in key_log(settings) if key == wanted]
    return SubjectKey.model_validate_json(values[-1]) if values and values[-1] else None


def key_log(settings: Settings) -> list[tuple[bytes, bytes | None]]:
    """Every (key, value) of the worker's key topic, from its start to its end now."""
    topic = key_topic(settings.app_id)
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False)
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        log: list[tuple[bytes, bytes | None]] = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=5000).values():
                log += [(record.key, record.value) for record in records]
        return log
    finally:
        consumer.close()
