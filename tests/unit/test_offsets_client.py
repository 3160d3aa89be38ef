"""The worker's own offsets clients are stopped with the worker (streams/offsets.py)."""

from __future__ import annotations

import asyncio

from config.kafka_security import KafkaSecurity
from streams.offsets import OffsetsClient


class Started:
    def __init__(self) -> None:
        self.running = True

    async def stop(self) -> None:
        self.running = False

    async def close(self) -> None:
        self.running = False


def test_close_stops_every_client_started_and_forgets_them() -> None:
    offsets = OffsetsClient("127.0.0.1:9", "privtrail-test", KafkaSecurity())
    client, admin = Started(), Started()
    offsets._client, offsets._admin = client, admin  # type: ignore[assignment]

    asyncio.run(offsets.close())
    asyncio.run(offsets.close())  # nothing left to stop

    assert not client.running and not admin.running
    assert (offsets._client, offsets._prober, offsets._admin) == (None, None, None)
