"""The worker's batch path under Faust: fetched source messages reach the judge as lists, are
tracked until acked, and are committable only once acked; other topics stay on Faust's path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import faust
import pytest
from faust.transport.conductor import Conductor
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from faust.types.tuples import ConsumerMessage

from streams.batching import BatchRoute
from streams.transport import FETCH_MAX_WAIT_MS, WorkerConsumer, WorkerTransport

SOURCE = "privacy.events"
OTHER = "privtrail-subject-state-changelog"


def _app() -> faust.App:
    app = faust.App("test-batching", broker="kafka://127.0.0.1:1", store="memory://")
    app.transport = WorkerTransport(app.conf.broker_consumer, app)
    return app


def _message(app: faust.App, topic: str, partition: int, offset: int) -> Message:
    tp = TP(topic, partition)
    return ConsumerMessage(
        topic, partition, offset, 0.0, 0, [], b"k", b"v", None, 1, 1, tp,
        generation_id=app.consumer_generation_id,
    )  # fmt: skip


async def _route_with_acks(app: faust.App, max_batch: int = 100) -> BatchRoute:
    route = BatchRoute(app, SOURCE, max_batch)
    cast(WorkerTransport, app.transport).add_route(route)
    app.topics.add(app.topic(SOURCE))
    # What the conductor does once the worker subscribes: acks are on for an agent's topic.
    await cast(Conductor, app.topics)._update_indices()
    # As after a rebalance: flow resumed, so fetched messages are delivered.
    app.flow_control.resume()
    _consumer(app).resume_flow()
    return route


def _consumer(app: faust.App) -> WorkerConsumer:
    return cast(WorkerConsumer, app.consumer)


def _fetched(pairs: list[tuple[TP, Message]]) -> Any:
    async def getmany(self: Any, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        for pair in pairs:
            yield pair

    return getmany


async def _drain(consumer: WorkerConsumer) -> list[tuple[TP, Message]]:
    return [pair async for pair in consumer.getmany(timeout=0)]


def test_fetched_source_messages_reach_the_route_as_one_list_and_others_stay_on_faust(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        app = _app()
        route = await _route_with_acks(app)
        source = [_message(app, SOURCE, p, o) for p, o in [(0, 0), (1, 0), (0, 1)]]
        other = _message(app, OTHER, 0, 5)
        pairs = [(m.tp, m) for m in source[:2]] + [(other.tp, other), (source[2].tp, source[2])]
        monkeypatch.setattr(faust_aiokafka.Consumer, "getmany", _fetched(pairs))
        consumer = _consumer(app)
        assert await _drain(consumer) == [(other.tp, other)]
        assert await route.take() == source
        assert set(consumer.unacked) == set(source)

    asyncio.run(scenario())


def test_an_offset_read_again_is_not_handed_over_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        app = _app()
        route = await _route_with_acks(app)
        first, second = _message(app, SOURCE, 0, 7), _message(app, SOURCE, 0, 8)
        again = _message(app, SOURCE, 0, 7)
        fetches = iter([[(first.tp, first), (second.tp, second)], [(again.tp, again)]])
        monkeypatch.setattr(
            faust_aiokafka.Consumer,
            "getmany",
            lambda self, timeout: _fetched(next(fetches))(self, timeout),
        )
        await _drain(_consumer(app))
        await _drain(_consumer(app))
        assert await route.take() == [first, second]
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(route.take(), 0.05)

    asyncio.run(scenario())


def test_only_acked_offsets_become_committable(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        app = _app()
        route = await _route_with_acks(app)
        batch = [_message(app, SOURCE, 0, offset) for offset in range(3)]
        monkeypatch.setattr(
            faust_aiokafka.Consumer, "getmany", _fetched([(m.tp, m) for m in batch])
        )
        consumer = _consumer(app)
        await _drain(consumer)
        taken = await route.take()
        tp = TP(SOURCE, 0)
        assert consumer._new_offset(tp) is None
        route.ack(taken[:2])
        assert consumer._new_offset(tp) == 2
        route.ack(taken[2:])
        assert consumer._new_offset(tp) == 3
        assert not consumer.unacked

    asyncio.run(scenario())


def test_take_joins_queued_fetches_up_to_the_batch_size() -> None:
    async def scenario() -> None:
        app = _app()
        route = await _route_with_acks(app, max_batch=4)
        messages = [_message(app, SOURCE, 0, offset) for offset in range(6)]
        await route.put(messages[:3])
        await route.put(messages[3:])
        assert await route.take() == messages[:4]
        assert await route.take() == messages[4:]

    asyncio.run(scenario())


def test_messages_fetched_before_a_rebalance_are_left_for_the_new_generation() -> None:
    async def scenario() -> None:
        app = _app()
        route = await _route_with_acks(app)
        stale = _message(app, SOURCE, 0, 0)
        app.consumer_generation_id += 1
        fresh = _message(app, SOURCE, 0, 0)
        await route.put([stale])
        await route.put([fresh])
        assert await route.take() == [fresh]

    asyncio.run(scenario())


def test_the_worker_consumer_waits_on_the_broker_for_an_idle_fetch() -> None:
    async def scenario() -> None:
        app = _app()
        thread = _consumer(app)._thread
        consumer = thread._create_worker_consumer(cast(WorkerTransport, app.transport))
        assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS

    asyncio.run(scenario())
