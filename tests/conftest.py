"""Fixtures shared by unit and e2e tests: real embedded brokers on free 127.0.0.1 ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from privtrail.broker import EmbeddedBroker, embedded_broker
from tests.support import free_port


def _running_broker(kind: str, data_dir: Path) -> Iterator[EmbeddedBroker]:
    broker = embedded_broker(kind, free_port(), data_dir)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def noida_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One noida broker for the whole run; tests keep apart by using their own topic names."""
    yield from _running_broker("noida", tmp_path_factory.mktemp("noida"))


@pytest.fixture(scope="module")
def tansu_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A Tansu broker per test module, so its in-memory state cannot grow across the run."""
    yield from _running_broker("tansu", tmp_path_factory.mktemp("tansu"))


@pytest.fixture(
    params=[
        pytest.param("noida", id="noida"),
        pytest.param("tansu", id="tansu", marks=pytest.mark.tansu),
    ]
)
def broker(request: pytest.FixtureRequest) -> EmbeddedBroker:
    """The running broker of each kind in turn; override with indirect parametrization."""
    kind: str = request.param
    started: EmbeddedBroker = request.getfixturevalue(f"{kind}_broker")
    return started
