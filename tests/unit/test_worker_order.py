"""The agent judges each partition in offset order: what follows a lost hole waits, unacked."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, cast

import faust
import pytest
from faust.types import TP

from config.settings import Settings
from streams.app import Pipeline
from streams.rules.policy import load_policy_set
from streams.transport import LongPollConsumerThread, WorkerTransport

SETTINGS = Settings(pseudonym_key="test-key")
SOURCE = SETTINGS.topics.events


@dataclass
class Message:
    partition: int
    offset: int
    tracked: bool = True
    topic: str = SOURCE
    key: bytes | None = b"key"
    value: bytes | None = b"{}"
    timestamp: float = 1_800_000_000.0

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


class Broker:
    """Answers the probe: the first readable offset at or after a start."""

    def __init__(self, readable: dict[int, list[int]]) -> None:
        self.readable = readable
        self.probes: list[tuple[int, int]] = []

    async def first_offset(self, tp: TP, start: int, isolation_level: str) -> int | None:
        self.probes.append((tp.partition, start))
        return next((o for o in self.readable[tp.partition] if o >= start), None)


@pytest.fixture
def pipeline() -> Pipeline:
    app = faust.App("order-test", broker="kafka://127.0.0.1:1", web_enabled=False)
    app.transport = WorkerTransport(app.conf.broker_consumer, app)
    pipeline = Pipeline(app, SETTINGS, load_policy_set(SETTINGS.policies_dir))
    pipeline.positions.start_generation(1, {0: 80})
    return pipeline


def in_order(
    pipeline: Pipeline, broker: Broker, offsets: list[int]
) -> tuple[list[int], list[Message]]:
    pipeline.offsets = cast(Any, broker)
    messages = [Message(0, offset) for offset in offsets]
    judged = asyncio.run(pipeline._in_order(cast(Any, messages)))
    return [incoming.offset for incoming in judged], messages


def test_events_after_lost_ones_wait_unacked_and_the_partition_is_read_again(
    pipeline: Pipeline,
) -> None:
    broker = Broker({0: list(range(80, 200))})
    judged, messages = in_order(pipeline, broker, [80, 81, 129, 130])
    assert judged == [80, 81]
    assert [m.tracked for m in messages] == [True, True, False, False]
    assert broker.probes == [(0, 82)], "one look at the broker per hole"
    assert pipeline.positions.due_rewinds() == {0: 82}


def test_a_hole_of_transaction_markers_is_no_loss(pipeline: Pipeline) -> None:
    broker = Broker({0: [80, 81, 83, 84, 88]})  # 82: a commit marker; 85..87: an aborted one
    judged, messages = in_order(pipeline, broker, [80, 81, 83, 84, 88])
    assert judged == [80, 81, 83, 84, 88]
    assert all(m.tracked for m in messages)
    assert pipeline.positions.due_rewinds() == {}
    gaps = cast(Any, pipeline.app.consumer)._gap[TP(SOURCE, 0)]
    assert sorted((gap.begin, gap.end) for gap in gaps) == [(82, 83), (85, 88)], (
        "Faust commits past a hole only once told it holds nothing"
    )


def test_messages_fetched_twice_are_not_judged_twice(pipeline: Pipeline) -> None:
    broker = Broker({0: list(range(80, 200))})
    judged, messages = in_order(pipeline, broker, [80, 81, 82, 81, 82, 83, 70])
    assert judged == [80, 81, 82, 83]
    assert all(m.tracked for m in messages), "each is acked: it was judged once"


class FetchingConsumer:
    """An aiokafka consumer that records the loop each seek was made on."""

    def __init__(self) -> None:
        self.seeks: list[tuple[TP, int, asyncio.AbstractEventLoop]] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset, asyncio.get_running_loop()))

    async def position(self, tp: TP) -> int:
        return next(offset for seen, offset, _ in reversed(self.seeks) if seen == tp)


class ConsumerThreadWithoutBroker(LongPollConsumerThread):
    def _create_consumer(self, loop: asyncio.AbstractEventLoop) -> Any:
        return FetchingConsumer()


def test_a_partition_is_read_again_by_a_seek_on_the_consumer_thread(pipeline: Pipeline) -> None:
    consumer = cast(Any, pipeline.app.consumer)

    async def rewind() -> asyncio.AbstractEventLoop:
        consumer._thread = ConsumerThreadWithoutBroker(
            consumer, loop=asyncio.get_running_loop(), beacon=consumer.beacon
        )
        thread = consumer._thread
        await thread.start()
        try:
            await pipeline._rewind({0: 82}, "messages before it never arrived")
        finally:
            await thread.stop()
        return asyncio.get_running_loop()

    caller = asyncio.run(rewind())
    thread = consumer._thread
    [(tp, offset, loop)] = thread._consumer.seeks
    assert (tp, offset) == (TP(SOURCE, 0), 82)
    # aiokafka's fetcher walks its records on that loop: a seek from another thread breaks it.
    assert loop is thread.thread_loop and loop is not caller
