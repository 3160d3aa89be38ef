"""Fixtures shared by unit and e2e tests: real embedded brokers on free 127.0.0.1 ports."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from privtrail.brokers import EmbeddedBroker, embedded_broker
from tests import parallel
from tests.support import free_port

# What the xdist controller runs for its workers (tests/parallel.py), while it runs.
_controller: dict[str, Any] = {}


def _running_broker(kind: str, data_dir: Path) -> Iterator[EmbeddedBroker]:
    broker = embedded_broker(kind, free_port(), data_dir)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.option.dist not in ("load", "loadgroup"):
        return None
    return parallel.GroupedScheduling(config, log, _groups_dir())


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    if "kafka" not in _controller:
        _controller["kafka"] = parallel.SharedKafka()
    parallel.configure_node(node, _controller["kafka"], _groups_dir())


def _groups_dir() -> Path:
    if "groups" not in _controller:
        _controller["groups"] = Path(tempfile.mkdtemp(prefix="privtrail-groups-"))
    groups: Path = _controller["groups"]
    return groups


def pytest_unconfigure(config: pytest.Config) -> None:
    if "kafka" in _controller:
        _controller.pop("kafka").close()
    if "groups" in _controller:
        shutil.rmtree(_controller.pop("groups"), ignore_errors=True)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    parallel.group_and_order(config, items)


@pytest.fixture(scope="session")
def kafka_broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedBroker]:
    """One Kafka broker for the whole run; tests keep apart by using their own topic names.
    On xdist workers, the controller's, which they share and never stop."""
    shared = parallel.shared_kafka(request.config)
    if shared is not None:
        yield shared
        return
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
