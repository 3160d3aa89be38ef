"""The source topic's messages in whole fetches, from Faust's consumer to the judge.

Faust hands an agent one event at a time: per message its fetch loop races the delivery against
its flow-control event (two tasks), the conductor decodes the message into an Event and queues
it on the agent's channel, and the Stream's iterator tracks, yields and acks it. That costs
more than judging the event. Here the worker's consumer (streams/transport.py) keeps Faust's
fetch, group membership, recovery and commits, but takes the source topic's messages out of
each fetch as one list and puts it on a `SourceRoute`; every other topic (table changelogs
during recovery) goes on through Faust's loop.

Faust's own stream lost events on this seam's far side: it skips messages fetched for an older
generation or while flow is suspended, and acks them as if processed. The route never acks
what the judge has not judged:

- every routed message is tracked as unacked when fetched, so a rebalance waits for the batch
  in flight (`Consumer.wait_empty`) before it commits and revokes;
- a message the judge may not take (flow suspended, rebalancing, an older generation, a
  partition no longer assigned) is *released*: untracked and never acked. Faust seeks every
  assigned partition to its committed offset when a rebalance ends, so it is fetched again;
- the judge acks a batch's messages only once its outputs, then its state changelog, are
  acknowledged by the broker, and only those it judged in offset order or had judged before
  (streams/positions.py). The rest are released and read again from the hole.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any, Protocol

from faust.types import AppT, Message

# Fetches waiting for the judge: bounded, so a slow judge holds back the fetcher, not memory.
QUEUED_FETCHES = 8


class Waitable(Protocol):
    def is_set(self) -> bool: ...

    async def wait(self) -> Any: ...


class SourceRoute:
    """Where the consumer puts the source topic's fetched messages, and the judge takes them."""

    def __init__(self, app: AppT, topic: str) -> None:
        self.app = app
        self.topic = topic
        self._queue: asyncio.Queue[list[Message]] = asyncio.Queue(maxsize=QUEUED_FETCHES)
        # Taken from the queue, not handed to the judge yet: a fetch's rest past `max_batch`.
        self._pending: list[Message] = []

    async def hand_over(self, messages: list[Message], suspended: Waitable) -> None:
        """Queue a fetch's messages for the judge, or release them if flow is suspended first
        (a rebalance started: they are fetched again from the committed offsets)."""
        consumer = self.app.consumer
        for message in messages:
            message.tracked = True
            consumer.track_message(message)
        if suspended.is_set() or not await _first(self._queue.put(messages), suspended.wait()):
            self.release(messages)

    async def take(self, max_batch: int) -> list[Message]:
        """The next batch the judge may take: up to `max_batch` of what is queued, waiting only
        while none is. Each partition's messages stay in fetch order."""
        while True:
            if not self._pending:
                self._pending = await self._queue.get()
            while len(self._pending) < max_batch and not self._queue.empty():
                self._pending = self._pending + self._queue.get_nowait()
            batch, self._pending = self._pending[:max_batch], self._pending[max_batch:]
            current = self._current(batch)
            if current:
                self._mark_inbound(current)
                return current

    def settle(self, messages: Iterable[Message]) -> None:
        """After the batch's outputs and changelog are acknowledged: ack the messages still
        tracked (judged), release the rest (left for a read from their hole)."""
        consumer = self.app.consumer
        on_message_out = self.app.sensors.on_message_out
        for message in messages:
            if not message.tracked:
                self.release((message,))
            elif consumer.ack(message):
                on_message_out(message.tp, message.offset, message)

    def release(self, messages: Iterable[Message]) -> None:
        """Never ack `messages`: neither a commit nor a rebalance's wait counts on them."""
        unacked: Any = self.app.consumer.unacked  # Faust's own (mutable) weak set
        for message in messages:
            message.tracked = False
            unacked.discard(message)

    def _current(self, batch: list[Message]) -> list[Message]:
        app = self.app
        if app.rebalancing or not app.flow_control.is_active():
            current = []
        else:
            generation = app.consumer_generation_id
            assigned = app.consumer.assignment()
            current = [m for m in batch if m.generation_id == generation and m.tp in assigned]
        if len(current) < len(batch):
            kept = set(map(id, current))
            self.release(m for m in batch if id(m) not in kept)
        return current

    def _mark_inbound(self, messages: list[Message]) -> None:
        # What keeps Faust's livelock detector from reporting a stream that stopped.
        now = time.monotonic()
        inbound = self.app.monitor.stream_inbound_time
        for tp in {message.tp for message in messages}:
            inbound[tp] = now


async def _first(wanted: Any, other: Any) -> bool:
    """Await both coroutines until one is done, cancel the other; whether `wanted` finished."""
    wanted_task = asyncio.ensure_future(wanted)
    other_task = asyncio.ensure_future(other)
    done, pending = await asyncio.wait({wanted_task, other_task}, return_when="FIRST_COMPLETED")
    for task in pending:
        task.cancel()
    return wanted_task in done and not wanted_task.cancelled()
