"""Fixtures the emitter's unit tests share."""

from __future__ import annotations

import pytest

from events.emitter import Emitter
from tests.unit.emitter_support import SOURCE, FakeProducer


@pytest.fixture
def producer() -> FakeProducer:
    """A producer that records sends; each send's future stays pending until the test ends it."""
    return FakeProducer()


@pytest.fixture
def emitter(producer: FakeProducer) -> Emitter:
    return Emitter("127.0.0.1:9", source=SOURCE, producer=producer)
