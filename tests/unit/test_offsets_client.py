"""The worker's own offsets clients are stopped with the worker (streams/offsets.py)."""

from __future__ import annotations

import asyncio

import pytest

from config.kafka_security import KafkaSecurity
from config.settings import Settings
from streams import app as worker_app
from streams.offsets import OffsetsClient
from streams.rules.policy import load_policy_set


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


def test_stopping_the_worker_app_stops_its_offsets_clients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[OffsetsClient] = []

    class Recorded(OffsetsClient):
        def __init__(self, bootstrap: str, client_id: str, security: KafkaSecurity) -> None:
            super().__init__(bootstrap, client_id, security)
            made.append(self)

    monkeypatch.setattr(worker_app, "OffsetsClient", Recorded)
    settings = Settings(pseudonym_key="test-key")
    app = worker_app.create_app(settings, load_policy_set(settings.policies_dir))
    (offsets,) = made
    clients = client, prober, admin = Started(), Started(), Started()
    offsets._client, offsets._prober, offsets._admin = clients  # type: ignore[assignment]

    asyncio.run(app.stop())  # Faust's own stop, as on SIGTERM or a crash

    assert not client.running and not prober.running and not admin.running
    assert (offsets._client, offsets._prober, offsets._admin) == (None, None, None)
