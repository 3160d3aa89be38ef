"""What Kafka still knows, for `verify`: the store writer's committed offsets, the messages at
offsets the store no longer chains, and the checkpoints published to the compacted topic.

The store and the broker are separate: an attacker who rewrites the store's tail, rows and
chain entries alike, leaves the broker's committed offsets and its copy of the checkpoints.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import BaseModel

from config.settings import Settings
from sinks.integrity.chain import LOCAL_CHAINS, chain_name
from sinks.integrity.signing import Checkpoint
from sinks.messages import Message, StoredRow, stored_rows

READ_TIMEOUT_SECONDS = 20.0
CONNECT_TIMEOUT_MS = 5000


class Source(Protocol):
    def committed(self) -> dict[str, int]:
        """Per chain (topic:partition): the next offset the store writer will consume."""
        ...

    def rows(self, chain: str, start: int, end: int) -> Sequence[tuple[int, Sequence[BaseModel]]]:
        """The rows of the messages at offsets [start, end) of a chain's topic-partition."""
        ...

    def checkpoints(self, key_id: str) -> list[Checkpoint]:
        """The checkpoints the broker still holds for one signing key."""
        ...


class KafkaSource:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def committed(self) -> dict[str, int]:
        from kafka.admin import KafkaAdminClient

        with KafkaAdminClient(
            bootstrap_servers=self.settings.bootstrap,
            client_id=f"{self.settings.app_id}-verify",
            bootstrap_timeout_ms=CONNECT_TIMEOUT_MS,
            **self.settings.kafka_security.kafka_python(),
        ) as admin:
            group = f"{self.settings.app_id}-store"
            offsets = admin.list_group_offsets(group)[group]
        return {
            chain_name(tp.topic, tp.partition): meta.offset
            for tp, meta in offsets.items()
            if meta.offset >= 0
        }

    def rows(self, chain: str, start: int, end: int) -> list[tuple[int, list[StoredRow]]]:
        if chain in LOCAL_CHAINS:
            return []  # no topic holds them
        topic, partition = chain.rsplit(":", 1)
        messages = self._read(topic, [int(partition)], start, end)
        return [(m.offset, stored_rows(self.settings.topics, m)) for m in messages]

    def checkpoints(self, key_id: str) -> list[Checkpoint]:
        topic = self.settings.topics.checkpoints
        found = []
        for message in self._read(topic, None, 0, None):
            if message.key == key_id.encode() and message.value:
                found.append(Checkpoint.model_validate(json.loads(message.value)))
        return found

    def _read(
        self, topic: str, partitions: Sequence[int] | None, start: int, end: int | None
    ) -> list[Message]:
        """Messages of `topic` from `start` to `end` (None: the current end)."""
        from kafka import KafkaConsumer, TopicPartition

        consumer: Any = KafkaConsumer(
            bootstrap_servers=self.settings.bootstrap,
            client_id=f"{self.settings.app_id}-verify",
            enable_auto_commit=False,
            group_id=None,
            bootstrap_timeout_ms=CONNECT_TIMEOUT_MS,
            **self.settings.kafka_security.kafka_python(),
        )
        try:
            numbers = partitions or sorted(consumer.partitions_for_topic(topic) or ())
            assigned = [TopicPartition(topic, number) for number in numbers]
            consumer.assign(assigned)
            ends = consumer.end_offsets(assigned)
            stops = {tp: min(ends[tp], end) if end is not None else ends[tp] for tp in assigned}
            for tp in assigned:
                consumer.seek(tp, start)
            return _poll_until(consumer, stops)
        finally:
            consumer.close(autocommit=False)


class Sources:
    """Kafka for the consumed topic-partitions, and the serve process's running Ledger for the
    chains it numbers itself: what it appended, whatever the store holds now."""

    def __init__(self, kafka: Source, local: Source) -> None:
        self.kafka = kafka
        self.local = local

    def committed(self) -> dict[str, int]:
        return self.kafka.committed() | self.local.committed()

    def rows(self, chain: str, start: int, end: int) -> Sequence[tuple[int, Sequence[BaseModel]]]:
        return (self.local if chain in LOCAL_CHAINS else self.kafka).rows(chain, start, end)

    def checkpoints(self, key_id: str) -> list[Checkpoint]:
        return self.kafka.checkpoints(key_id)


def _poll_until(consumer: Any, stops: dict[Any, int]) -> list[Message]:
    found: list[Message] = []
    deadline = time.monotonic() + READ_TIMEOUT_SECONDS
    while any(consumer.position(tp) < stop for tp, stop in stops.items()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"reading {sorted(str(tp) for tp in stops)} from Kafka timed out")
        for tp, records in consumer.poll(timeout_ms=500).items():
            found.extend(r for r in records if r.offset < stops[tp])
    return found
