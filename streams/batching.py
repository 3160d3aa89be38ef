"""Whole fetches of raw source messages, from Faust's consumer to the judge, in lists.

Faust hands an agent one event at a time: per message its fetch loop races the delivery against
a flow-control event (two tasks), the conductor decodes it into an Event and queues it on the
agent's channel, and the Stream's iterator tracks, yields and acks it. That costs more than the
judge has per event. Here the consumer's `getmany` keeps Faust's own fetch, flow control,
generation and read-offset bookkeeping, but takes the source topic's messages out of each fetch
as one list and puts it on a `BatchRoute`; every other topic (table changelogs during recovery)
goes on through Faust's loop unchanged.

Acks and commits stay Faust's: each routed message is tracked as unacked when fetched, so a
rebalance waits for the batch in flight (`Consumer.wait_empty`), and the batch's owner acks
every message once its outputs are flushed and its state written; Faust commits only acked
offsets. Batches still queued when a rebalance starts are dropped with the queue (Faust's
flow-control clear), and a batch from an older consumer generation is dropped when taken: Faust
then seeks to the committed offsets and fetches those messages again, as it does for its own
channel queues.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from typing import Protocol, cast

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, AppT, Message
from mode.utils.queues import FlowControlQueue

# Fetches waiting for the judge: bounded, so a slow judge holds back the fetcher, not memory.
QUEUED_FETCHES = 2


class BatchRoute:
    """Where the consumer puts the source topic's fetched messages, and the judge takes them."""

    def __init__(self, app: AppT, topic: str, max_batch: int) -> None:
        self.app = app
        self.topic = topic
        self.max_batch = max_batch
        # Registered with the app's flow control: cleared when a rebalance is over.
        self._queue: FlowControlQueue[list[Message]] = app.FlowControlQueue(
            maxsize=QUEUED_FETCHES, clear_on_resume=True
        )
        # Taken from the queue, not yet handed out: the rest of a fetch beyond `max_batch`.
        self._taken: list[Message] = []

    async def put(self, messages: list[Message]) -> None:
        await self._queue.put(messages)

    async def take(self) -> list[Message]:
        """The next batch: what is queued, up to `max_batch`, waiting only while none is.

        Messages fetched before a rebalance that a newer consumer generation will fetch again
        are left out, and so is anything taken while flow is stopped for a rebalance.
        """
        while True:
            if not self._taken:
                self._taken = await self._queue.get()
            while len(self._taken) < self.max_batch and not self._queue.empty():
                self._taken = self._taken + self._queue.get_nowait()
            batch, self._taken = self._taken[: self.max_batch], self._taken[self.max_batch :]
            current = self._current(batch)
            if current:
                return current

    def ack(self, messages: Iterable[Message]) -> None:
        """Mark messages done: their offsets may be committed."""
        consumer = self.app.consumer
        on_message_out = self.app.sensors.on_message_out
        for message in messages:
            if consumer.ack(message):
                on_message_out(message.tp, message.offset, message)

    def _current(self, batch: list[Message]) -> list[Message]:
        if not self.app.flow_control.is_active():
            return []
        generation = self.app.consumer_generation_id
        return [message for message in batch if message.generation_id == generation]


class BatchingConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, with the routed topics' messages fetched in whole lists."""

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        routes = cast(RoutedTransport, self.transport).batch_routes
        routed: dict[str, list[Message]] = {}
        async for tp, message in super().getmany(timeout):
            if tp.topic not in routes:
                yield tp, message
            elif await self._fresh(tp, message):
                routed.setdefault(tp.topic, []).append(message)
        for topic, messages in routed.items():
            self._mark_read(messages)
            # Like Faust's own delivery, a rebalance starting interrupts a wait for space.
            await self.wait_first(routes[topic].put(messages), self.suspend_flow.wait())
        await self._commit_if_due()

    async def _fresh(self, tp: TP, message: Message) -> bool:
        """Track a message not read before, as Faust's fetch loop does for the messages it
        delivers: offsets read again are skipped, and a gap (compaction, transaction markers)
        is registered so that commits can pass it."""
        read = self._read_offset[tp]
        offset = message.offset
        if read is not None and offset < read:
            return False
        if read and offset - read > 1 and self.app.topics.acks_enabled_for(tp.topic):
            await self._add_gap(tp, read + 1, offset)
        self._read_offset[tp] = offset
        message.tracked = True
        self.track_message(message)
        return True

    def _mark_read(self, messages: list[Message]) -> None:
        # What keeps Faust's livelock detector from reporting a stream that stopped.
        now = time.monotonic()
        inbound = self.app.monitor.stream_inbound_time
        for tp in {message.tp for message in messages}:
            inbound[tp] = now

    async def _commit_if_due(self) -> None:
        commit_every = self._commit_every
        if commit_every is not None and self._n_acked >= commit_every:
            self._n_acked = 0
            await self.commit()


class RoutedTransport(Protocol):
    """A transport that knows which topics its consumer hands over in batches."""

    batch_routes: dict[str, BatchRoute]
