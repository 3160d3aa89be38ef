"""The worker's consumer: a commit never passes a message that no stream processed."""

from __future__ import annotations

from typing import Any, cast

import faust
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from streams.transport import WorkerTransport

SOURCE = "privacy.events"


def consumer_of_an_app() -> Any:
    """The app's consumer, typed loosely: the tests read its acked offsets."""
    app = faust.App("ack-test", broker="kafka://127.0.0.1:1", web_enabled=False)
    app.transport = WorkerTransport(app.conf.broker_consumer, app)
    # What subscribing an agent to the source topic does.
    cast(Any, app.topics)._acking_topics.add(SOURCE)
    return app.consumer


def message(offset: int, *, delivered: bool) -> ConsumerMessage:
    fetched = ConsumerMessage(SOURCE, 0, offset, 0.0, 0, [], b"key", b"value", None)
    # A stream marks each message it delivers to its agent as tracked.
    fetched.tracked = delivered
    return fetched


def test_a_delivered_message_once_acked_can_be_committed() -> None:
    consumer = consumer_of_an_app()
    assert message(6, delivered=True).ack(consumer)
    assert consumer._acked[TP(SOURCE, 0)] == [6]


def test_a_message_the_stream_skipped_is_not_acked() -> None:
    consumer = consumer_of_an_app()
    skipped = message(5, delivered=False)
    assert not skipped.ack(consumer)
    assert not consumer._acked[TP(SOURCE, 0)], "a commit past it would lose an unjudged event"
