"""Events written to `privacy.events` in Kafka transactions are all judged, none twice.

Each committed transaction leaves a marker that takes an offset no consumer is given: the
worker, which judges every partition in offset order and reads a partition again from any
hole that lost events, must tell those holes from losses and neither stall nor re-read.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from config.settings import Settings
from privtrail.demo import default_start, demo_events
from tests.e2e.conftest import Pipeline

pytestmark = pytest.mark.e2e
EVENTS = 400
PER_TRANSACTION = 7  # markers land between events of every partition


def test_events_sent_in_transactions_are_all_judged_without_reading_again(
    pipeline: Pipeline,
) -> None:
    messages = [
        (m.key, m.value) for m in demo_events(20261202, EVENTS, default_start(), malformed_share=0)
    ]
    asyncio.run(send_in_transactions(pipeline.settings, messages))
    with pipeline.worker():
        pipeline.wait_for(
            lambda: pipeline.api.stats().events >= EVENTS, f"all {EVENTS} events stored"
        )
    assert pipeline.api.stats().events == EVENTS
    worker_log = (pipeline.settings.data_dir / "worker.log").read_text()
    assert "reading again" not in worker_log, "a transaction marker was taken for a lost event"


async def send_in_transactions(settings: Settings, messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap, transactional_id=f"{settings.app_id}-source"
    )
    await producer.start()
    try:
        for first in range(0, len(messages), PER_TRANSACTION):
            async with producer.transaction():
                for key, value in messages[first : first + PER_TRANSACTION]:
                    await producer.send(settings.topics.events, key=key, value=value)
    finally:
        await producer.stop()
