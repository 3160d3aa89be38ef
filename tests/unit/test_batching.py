"""The source topic in whole fetches: nothing is acked that the judge did not judge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import faust
import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from streams.batching import SourceRoute
from streams.transport import WorkerTransport

SOURCE = "privacy.events"
CHANGELOG = "privtrail-subject-state-changelog"
PARTITION = TP(SOURCE, 0)


def route_of_an_app(generation: int = 1) -> tuple[Any, SourceRoute]:
    app = faust.App("batch-test", broker="kafka://127.0.0.1:1", web_enabled=False)
    app.transport = WorkerTransport(app.conf.broker_consumer, app)
    # What subscribing the source topic through the conductor does.
    cast(Any, app.topics)._acking_topics.add(SOURCE)
    app.consumer_generation_id = generation
    cast(Any, app.consumer).assignment = lambda: {PARTITION}
    app.flow_control.resume()  # as when a rebalance and recovery are over
    route = SourceRoute(app, SOURCE)
    app.consumer.route_in_batches(route)
    return app, route


def fetch(offsets: range, *, generation: int = 1, topic: str = SOURCE) -> list[ConsumerMessage]:
    return [
        ConsumerMessage(topic, 0, o, 0.0, 0, [], b"k", b"v", None, generation_id=generation)
        for o in offsets
    ]


class Unset:
    def is_set(self) -> bool:
        return False

    async def wait(self) -> None:
        await asyncio.Event().wait()


def test_a_batch_is_acked_only_when_settled_and_only_what_was_judged() -> None:
    app, route = route_of_an_app()
    consumer = app.consumer

    async def scenario() -> list[ConsumerMessage]:
        await route.hand_over(fetch(range(80, 83)), Unset())
        await route.hand_over(fetch(range(83, 86)), Unset())
        return cast(list[ConsumerMessage], await asyncio.wait_for(route.take(max_batch=100), 5))

    batch = asyncio.run(scenario())
    assert [m.offset for m in batch] == [80, 81, 82, 83, 84, 85], "queued fetches join"
    assert len(consumer.unacked) == 6, "a rebalance waits for the batch in flight"
    assert not consumer._acked[PARTITION], "nothing acked before outputs are acknowledged"
    for message in batch[4:]:
        message.tracked = False  # what the offset-order guard does after a hole
    route.settle(batch)
    assert consumer._acked[PARTITION] == [80, 81, 82, 83]
    assert not consumer.unacked, "the unjudged ones hold no rebalance up"
    assert consumer._new_offset(PARTITION) == 84, "the commit stops at the hole"


def test_a_batch_holds_at_most_max_batch_messages_in_fetch_order() -> None:
    _, route = route_of_an_app()

    async def scenario() -> list[list[int]]:
        await route.hand_over(fetch(range(80, 85)), Unset())
        await route.hand_over(fetch(range(85, 88)), Unset())
        batches = [await asyncio.wait_for(route.take(max_batch=3), 5) for _ in range(3)]
        return [[m.offset for m in batch] for batch in batches]

    assert asyncio.run(scenario()) == [[80, 81, 82], [83, 84, 85], [86, 87]]


def test_a_fetch_from_an_older_generation_is_released_unacked() -> None:
    app, route = route_of_an_app(generation=1)
    stale = fetch(range(80, 83), generation=1)

    async def scenario() -> list[ConsumerMessage]:
        await route.hand_over(stale, Unset())
        app.consumer_generation_id = 2  # a rebalance: Faust seeks back to the committed offsets
        await route.hand_over(fetch(range(80, 82), generation=2), Unset())
        return cast(list[ConsumerMessage], await asyncio.wait_for(route.take(max_batch=10), 5))

    batch = asyncio.run(scenario())
    assert [(m.offset, m.generation_id) for m in batch] == [(80, 2), (81, 2)]
    assert not any(m.tracked for m in stale)
    route.settle(stale)
    assert not app.consumer._acked[PARTITION], "a stale message is never acked"
    assert set(app.consumer.unacked) == set(batch)


def test_a_fetch_taken_while_flow_is_suspended_is_released() -> None:
    app, route = route_of_an_app()
    suspended = asyncio.Event()
    suspended.set()
    fetched = fetch(range(80, 83))
    asyncio.run(route.hand_over(fetched, suspended))
    assert route._queue.empty()
    assert not any(m.tracked for m in fetched)
    assert not app.consumer.unacked


def test_the_consumer_hands_over_the_source_topic_in_whole_fetches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, route = route_of_an_app()
    fetched = fetch(range(80, 82)) + fetch(range(5, 7), topic=CHANGELOG) + fetch(range(82, 84))

    async def faust_getmany(self: Any, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        for message in fetched:
            yield message.tp, message

    monkeypatch.setattr(faust_aiokafka.Consumer, "getmany", faust_getmany)

    async def scenario() -> tuple[list[int], list[int]]:
        yielded = [m.offset async for _, m in app.consumer.getmany(timeout=1.0)]
        batch = await asyncio.wait_for(route.take(max_batch=100), 5)
        return yielded, [m.offset for m in batch]

    to_faust, to_judge = asyncio.run(scenario())
    assert to_faust == [5, 6], "table changelogs go on through Faust's own loop"
    assert to_judge == [80, 81, 82, 83]
