"""Fixtures shared by unit and e2e tests: real embedded brokers on free 127.0.0.1 ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from privtrail.brokers import EmbeddedBroker, embedded_broker
from tests.support import free_port


def _running_broker(kind: str, data_dir: Path) -> Iterator[EmbeddedBroker]:
    broker = embedded_broker(kind, free_port(), data_dir)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One Kafka broker for the whole run; tests keep apart by using their own topic names."""
    yield from _running_broker("kafka", tmp_path_factory.mktemp("kafka"))


@pytest.fixture(scope="session")
def noida_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One noida broker for the whole run, started only by the tests that ask for noida."""
    yield from _running_broker("noida", tmp_path_factory.mktemp("noida"))


@pytest.fixture
def broker(request: pytest.FixtureRequest) -> EmbeddedBroker:
    """The running Kafka broker; indirect parametrization picks another kind by name."""
    kind: str = getattr(request, "param", "kafka")
    started: EmbeddedBroker = request.getfixturevalue(f"{kind}_broker")
    return started
