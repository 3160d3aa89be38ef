"""Fixtures the unit tests share: a fake producer's emitter, and a chDB store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from events.emitter import Emitter
from sinks.clickhouse.store import Store
from tests.unit.chdb_store import store_dsn
from tests.unit.emitter_support import SOURCE, FakeProducer


@pytest.fixture
def producer() -> FakeProducer:
    """A producer that records sends; each send's future stays pending until the test ends it."""
    return FakeProducer()


@pytest.fixture
def emitter(producer: FakeProducer) -> Emitter:
    return Emitter("127.0.0.1:9", source=SOURCE, producer=producer)


@pytest.fixture
def store() -> Iterator[Store]:
    """A store of its own (a database of this process's chDB directory), closed afterwards."""
    opened = Store.open(store_dsn())
    yield opened
    opened.close()
