"""The subjects' keys for lineage queries, from the worker's compacted key topic.

The worker owns the key table (events/pseudonyms.py); whoever answers "what happened to this
subject?" follows the table's changelog topic, the one copy that outlives every worker.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from events.pseudonyms import SubjectKey, lookup_id, parse_key
from events.tags import pseudonymise

KEY_TABLE = "subject-keys"
POLL_MS = 1000
RETRY_SECONDS = 2.0
log = logging.getLogger(__name__)


def key_topic(app_id: str) -> str:
    """The key table's changelog topic, as Faust names a table's changelog."""
    return f"{app_id}-{KEY_TABLE}-changelog"


class KeyDirectory(Protocol):
    def find(self, org: str, subject_id: str) -> SubjectKey | None:
        """The subject's newest key entry; None when the worker never saw the subject."""

    def unkeyed(self, master: bytes, org: str, subject_id: str) -> str | None:
        """The pseudonym of a subject with no key entry, if it has one."""


class NoKeys:
    """A directory that knows no subject: every subject has the deployment-keyed pseudonym
    (stores written by judging in memory, or before per-subject keys)."""

    def find(self, org: str, subject_id: str) -> SubjectKey | None:
        return None

    def unkeyed(self, master: bytes, org: str, subject_id: str) -> str | None:
        return pseudonymise(master, org, subject_id)


class KeyFollower:
    """Follows the key topic into memory, on a thread of its own, for as long as it runs.

    Look-ups never wait on the broker: while it is away they answer from what was read (a
    subject erased meanwhile still resolves), and before the topic was first read to its end
    they wait up to `ready_wait` seconds, then answer as for a subject never keyed.
    """

    def __init__(
        self,
        bootstrap: str,
        app_id: str,
        master: bytes,
        security: Mapping[str, Any],
        ready_wait: float = 2.0,
    ) -> None:
        self._bootstrap = bootstrap
        self._topic = key_topic(app_id)
        self._master = master
        self._security = dict(security)
        self._ready_wait = ready_wait
        self._entries: dict[bytes, bytes | None] = {}
        # Lookup id -> the day of its last erasure, and the lookup ids whose erasure is new
        # since `take_erased` last answered (the erasures read from the start, at first).
        self._erasures: dict[str, datetime] = {}
        self._newly_erased: set[str] = set()
        self._lock = threading.Lock()
        self._caught_up = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="key-follower", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def find(self, org: str, subject_id: str) -> SubjectKey | None:
        self._caught_up.wait(self._ready_wait)
        wanted = json.dumps(lookup_id(self._master, org, subject_id)).encode()
        with self._lock:
            value = self._entries.get(wanted)
        return None if value is None else parse_key(json.loads(value))

    def unkeyed(self, master: bytes, org: str, subject_id: str) -> str | None:
        return None  # never judged: nothing is stored for it, and nothing is logged about it

    def erased(self, lookups: Iterable[str]) -> set[str]:
        """Those of `lookups` whose subject was erased, as far as the topic was read."""
        with self._lock:
            return {lookup for lookup in lookups if lookup in self._erasures}

    def take_erased(self) -> set[str]:
        """The lookup ids erased since the last call: every erased one, on the first."""
        with self._lock:
            taken, self._newly_erased = self._newly_erased, set()
        return taken

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                consumer = KafkaConsumer(
                    bootstrap_servers=self._bootstrap,
                    enable_auto_commit=False,
                    client_id="privtrail-key-follower",
                    **self._security,
                )
                try:
                    self._follow(consumer)
                finally:
                    consumer.close()
            except KafkaError as error:
                log.warning("cannot read the subject keys from %s: %s", self._topic, error)
                self._stopping.wait(RETRY_SECONDS)

    def _follow(self, consumer: KafkaConsumer) -> None:
        tps = self._assign(consumer)
        if not tps:
            return
        ends: dict[TopicPartition, int] = consumer.end_offsets(tps)
        while not self._stopping.is_set():
            for records in consumer.poll(timeout_ms=POLL_MS).values():
                with self._lock:
                    for record in records:
                        self._entries[record.key] = record.value
                        self._note_erasure(record.key, record.value)
            if not self._caught_up.is_set() and all(
                consumer.position(tp) >= ends[tp] for tp in tps
            ):
                self._caught_up.set()

    def _note_erasure(self, key: bytes, value: bytes | None) -> None:
        """Remember an entry's erasure; the caller holds the lock."""
        # Entries are written without their defaults: most hold no erasure and are not parsed.
        if value is None or b'"erased_at"' not in value:
            return
        try:
            entry, lookup = parse_key(json.loads(value)), json.loads(key)
        except (TypeError, ValueError):  # a value that is no key entry, a key that is no JSON
            entry, lookup = None, None
        if not isinstance(lookup, str):
            # Not the worker's: its text is not logged, as a subject key it would hold a secret.
            log.warning("skipped an entry of %s that is not a subject key", self._topic)
            return
        if entry is None or entry.erased_at is None:
            return
        if self._erasures.get(lookup) != entry.erased_at:
            self._erasures[lookup] = entry.erased_at
            self._newly_erased.add(lookup)

    def _assign(self, consumer: KafkaConsumer) -> list[TopicPartition]:
        """The topic's partitions, read from the start; none until the worker made the topic."""
        while not self._stopping.is_set():
            partitions = consumer.partitions_for_topic(self._topic)
            if partitions:
                tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
                consumer.assign(tps)
                consumer.seek_to_beginning(*tps)
                return tps
            self._caught_up.set()  # no topic: no subject was keyed yet
            self._stopping.wait(RETRY_SECONDS)
        return []


def current_pseudonym(
    directory: KeyDirectory, master: bytes, org: str, subject_id: str
) -> tuple[str | None, datetime | None]:
    """The pseudonym the subject's trail is stored under now (None: never judged, or erased
    and not seen since), and the day of its last erasure."""
    key = directory.find(org, subject_id)
    if key is None:
        return directory.unkeyed(master, org, subject_id), None
    if key.secret is None:
        return None, key.erased_at
    return key.pseudonym(org, subject_id), key.erased_at
