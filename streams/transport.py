"""The worker's Kafka transport: Faust's aiokafka transport, five changes.

- An idempotent producer. faust-streaming 0.15.3 has no setting for producer idempotence: it
  turns it on only for its transactional producers (`processing_guarantee="exactly_once"`). An
  idempotent producer gets a producer id and numbers its batches, so a batch it retries after
  a lost answer (a broker restart, a timeout) is written once, not twice. aiokafka requires
  `acks=all` with it.
- Acks only for messages a stream delivered, and every message of the source topic delivered
  (see `WorkerConsumer`).
- With a route set, the source topic's messages leave each fetch as one list for the judge
  (streams/batching.py) instead of one by one through Faust's conductor and stream.
- A fetch's table changelog messages are applied to the table in one go while Faust recovers
  it or keeps it as a standby (streams/recovery.py), not one by one through its recovery loop.
- An idle fetch waits `FETCH_MAX_WAIT_MS` on the broker. Faust passes a fixed 1.5 s, so an idle
  worker asks again every 1.5 s per broker connection. The broker answers a fetch as soon as it
  has any data (fetch.min.bytes 1), so the wait costs nothing under load.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, ConsumerT, Message, ProducerT

from streams.batching import SourceRoute
from streams.recovery import apply_changelog, is_changelog

if TYPE_CHECKING:
    import aiokafka

IDEMPOTENT_PRODUCER = {"acks": "all", "enable_idempotence": True}
# As long as the store's consumer and the live feed wait on an idle fetch.
FETCH_MAX_WAIT_MS = 5000


class IdempotentProducer(faust_aiokafka.Producer):
    def _settings_extra(self) -> Mapping[str, Any]:
        extra = super()._settings_extra()
        return {**extra, **IDEMPOTENT_PRODUCER}


class LongPollConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(
        self, transport: faust_aiokafka.Transport
    ) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Faust passes the wait as a literal; aiokafka reads it when start() builds the
        # fetcher, which has not happened yet.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class WorkerConsumer(faust_aiokafka.Consumer):
    _route: SourceRoute | None = None

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return LongPollConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def deliver_every_message(self, topic: str) -> None:
        """Hand every message fetched from `topic` to its stream, duplicates included.

        Faust drops a fetched message whose offset is below the last one it delivered. After a
        seek back, a fetch loop still walking a batch fetched before the seek moves that mark
        forward again, and the messages read again are dropped: the hole stays. The agent
        orders the source topic itself (streams/positions.py). Table changelogs keep Faust's
        rule: a stale copy applied after a newer one would roll a table value back.
        """
        self._read_offset = _ReadOffsetsExcept(topic, self._read_offset)

    def route_in_batches(self, route: SourceRoute) -> None:
        """Hand `route.topic`'s messages over in whole fetches, not to a stream."""
        self._route = route

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        route = self._route
        routed: list[Message] = []
        changelog: list[Message] = []
        async for tp, message in super().getmany(timeout):
            if route is not None and tp.topic == route.topic:
                routed.append(message)
            elif is_changelog(self.app, tp):
                changelog.append(message)
            else:
                yield tp, message
        if changelog:
            apply_changelog(self.app, changelog)
        if route is not None and routed:
            # Like Faust's own delivery, a rebalance starting interrupts a wait for space.
            await route.hand_over(routed, self.suspend_flow)

    def ack(self, message: Message) -> bool:
        # Faust's stream acks a message it skipped (fetched for an older generation, or while
        # the flow was suspended by a rebalance) as if it had been processed. A commit past it
        # would lose an event never judged; unacked, it holds the commit back until it is read
        # again (streams/positions.py). Delivered messages are the tracked ones.
        if not message.tracked:
            return False
        return bool(super().ack(message))


class _ReadOffsetsExcept(dict[TP, int | None]):
    """Faust's read offsets, with none ever reported for one topic."""

    def __init__(self, topic: str, offsets: Mapping[TP, int | None]) -> None:
        super().__init__(offsets)
        self._topic = topic

    def __getitem__(self, tp: TP) -> int | None:
        return None if tp.topic == self._topic else self.get(tp)


class WorkerTransport(faust_aiokafka.Transport):
    Producer: ClassVar[type[ProducerT]] = IdempotentProducer
    Consumer: ClassVar[type[ConsumerT]] = WorkerConsumer
