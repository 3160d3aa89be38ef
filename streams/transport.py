"""The worker's Kafka transport: Faust's aiokafka transport, three changes.

- An idempotent producer. faust-streaming 0.15.3 has no setting for producer idempotence: it
  turns it on only for its transactional producers (`processing_guarantee="exactly_once"`). An
  idempotent producer gets a producer id and numbers its batches, so a batch it retries after
  a lost answer (a broker restart, a timeout) is written once, not twice. aiokafka requires
  `acks=all` with it.
- Acks only for messages a stream delivered (see `WorkerConsumer.ack`).
- An idle fetch waits `FETCH_MAX_WAIT_MS` on the broker. Faust passes a fixed 1.5 s, so an idle
  worker asks again every 1.5 s per broker connection. The broker answers a fetch as soon as it
  has any data (fetch.min.bytes 1), so the wait costs nothing under load.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import ConsumerT, Message, ProducerT

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
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return LongPollConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def ack(self, message: Message) -> bool:
        # Faust's stream acks a message it skipped (fetched for an older generation, or while
        # the flow was suspended by a rebalance) as if it had been processed. A commit past it
        # would lose an event never judged; unacked, it holds the commit back until it is read
        # again (streams/positions.py). Delivered messages are the tracked ones.
        if not message.tracked:
            return False
        return bool(super().ack(message))


class WorkerTransport(faust_aiokafka.Transport):
    Producer: ClassVar[type[ProducerT]] = IdempotentProducer
    Consumer: ClassVar[type[ConsumerT]] = WorkerConsumer
