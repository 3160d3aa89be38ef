"""Questions about source partitions, asked of the broker outside Faust's consumer.

A client of its own: Faust's consumer thread runs its calls one at a time, so a request stuck
behind a rebalance would hold up its fetches too.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust.types import TP

from config.kafka_security import KafkaSecurity

# How long a probe waits for the first record at an offset before giving up on an answer.
PROBE_TIMEOUT_MS = 3000


class OffsetsClient:
    def __init__(self, bootstrap: str, client_id: str, security: KafkaSecurity) -> None:
        self._bootstrap = bootstrap
        self._security = security
        self._client_id = client_id
        self._client: AIOKafkaConsumer | None = None
        self._prober: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None

    async def end_offsets(self, partitions: list[TP]) -> dict[TP, int]:
        client = await self._started()
        ends = await client.end_offsets([_kafka(tp) for tp in partitions])
        return {TP(tp.topic, tp.partition): offset for tp, offset in ends.items()}

    async def beginning_offsets(self, partitions: list[TP]) -> dict[TP, int]:
        client = await self._started()
        starts = await client.beginning_offsets([_kafka(tp) for tp in partitions])
        return {TP(tp.topic, tp.partition): offset for tp, offset in starts.items()}

    async def first_offset(self, tp: TP, start: int, isolation_level: str) -> int | None:
        """The offset of the first record at or after `start` that a consumer reading with
        `isolation_level` is given (None: none came within the probe's timeout)."""
        prober = await self._started_prober(isolation_level)
        partition = _kafka(tp)
        prober.assign([partition])
        prober.seek(partition, start)
        records = await prober.getmany(partition, timeout_ms=PROBE_TIMEOUT_MS, max_records=1)
        fetched = records.get(partition, [])
        return fetched[0].offset if fetched else None

    async def committed_offsets(self, group: str, partitions: list[TP]) -> dict[TP, int]:
        """The group's committed offsets as the broker holds them (partitions with none left
        out): unlike the consumer's own record, never ahead of a commit that failed."""
        admin = await self._started_admin()
        offsets = await admin.list_consumer_group_offsets(
            group, partitions=[_kafka(tp) for tp in partitions]
        )
        return {
            TP(tp.topic, tp.partition): meta.offset
            for tp, meta in offsets.items()
            if meta.offset >= 0
        }

    async def close(self) -> None:
        """Stop the clients started so far; the next question starts them again."""
        consumers, self._client, self._prober = (self._client, self._prober), None, None
        admin, self._admin = self._admin, None
        for consumer in consumers:
            if consumer is not None:
                await consumer.stop()
        if admin is not None:
            await admin.close()

    async def _started_admin(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self._bootstrap,
                client_id=f"{self._client_id}-admin",
                **self._security.aiokafka(),
            )
            await admin.start()
            self._admin = admin
        return self._admin

    async def _started(self) -> AIOKafkaConsumer:
        if self._client is None:
            self._client = await self._start(f"{self._client_id}-offsets", "read_uncommitted")
        return self._client

    async def _started_prober(self, isolation_level: str) -> AIOKafkaConsumer:
        if self._prober is None:
            self._prober = await self._start(f"{self._client_id}-probe", isolation_level)
        return self._prober

    async def _start(self, client_id: str, isolation_level: str) -> AIOKafkaConsumer:
        client = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=isolation_level,
            client_id=client_id,
            **self._security.aiokafka(),
        )
        await client.start()
        return client


def _kafka(tp: TP) -> TopicPartition:
    return TopicPartition(tp.topic, tp.partition)
