"""The suite on pytest-xdist workers (`make test`): what the controller and its workers share.

- One Kafka broker for the whole run, started by the controller while the workers start, instead
  of one JVM per worker; tests keep apart by their own topic names, as in a run without xdist.
- Each test is a unit of work on its own, except the tests of a module that uses a module-scoped
  fixture (a stack, a browser, a broker of its own): those run on one worker, where the fixture
  starts once. (xdist's own `loadgroup` cannot carry groups under this pytest: node ids can no
  longer be renamed.)
- The longest e2e tests are handed out first, so no worker is left with one at the end.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

from privtrail.brokers import BrokerError, EmbeddedBroker, KafkaBroker, embedded_broker
from tests.support import free_port, log_tail

# Keys of each worker's `workerinput`.
SHARED_KAFKA = "privtrail_shared_kafka"
GROUPS_DIR = "privtrail_groups_dir"
# The shared broker starts while every worker starts and collects, on two cores that others
# use too: it gets longer than the 60 s a broker started alone gets.
SHARED_START_SECONDS = 240.0
# Workers wait past that: the controller reports a failed start before this.
WAIT_FOR_SHARED_SECONDS = SHARED_START_SECONDS + 60
# Modules holding the longest tests (minutes each: fixed outages, a 20k backlog, schema fuzzing,
# a timed demo), handed out first. Only an order: a module missing here runs all the same.
LONGEST_FIRST = (
    "tests/e2e/test_faults.py",
    "tests/e2e/test_schema_fuzz.py",
    "tests/e2e/test_backlog_faults.py",
    "tests/e2e/test_bench_suite.py",
    "tests/e2e/test_tour.py",
    "tests/e2e/test_up.py",
    "tests/e2e/test_dashboard.py",
    "tests/e2e/test_integrity_e2e.py",
    "tests/e2e/test_access_e2e.py",
    "tests/e2e/test_sasl.py",
)


class SharedKafka:
    """The controller's Kafka broker. It is started and stopped by a thread that lives as long
    as the broker does (an embedded broker dies with the thread that started it), so workers
    start meanwhile; each waits for the file that says how the start went."""

    def __init__(self) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="privtrail-kafka-"))
        self.broker = embedded_broker("kafka", free_port(), self.data_dir)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shared-kafka", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.broker.start(timeout=SHARED_START_SECONDS)
        except BrokerError as error:
            (self.data_dir / "failed").write_text(str(error), encoding="utf-8")
            return
        (self.data_dir / "started").touch()
        self._stop.wait()
        self.broker.stop()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def configure_node(node: Any, shared: SharedKafka, groups_dir: Path) -> None:
    node.workerinput[SHARED_KAFKA] = [shared.broker.port, str(shared.data_dir)]
    node.workerinput[GROUPS_DIR] = str(groups_dir)


def shared_kafka(config: pytest.Config) -> EmbeddedBroker | None:
    """In a worker, the controller's broker once it answers; None outside xdist."""
    shared = getattr(config, "workerinput", {}).get(SHARED_KAFKA)
    if shared is None:
        return None
    port, data_dir = shared
    broker = KafkaBroker(port, Path(data_dir))
    deadline = time.monotonic() + WAIT_FOR_SHARED_SECONDS
    while not (broker.data_dir / "started").exists():
        failed = broker.data_dir / "failed"
        if failed.exists():
            pytest.fail(f"the shared Kafka broker did not start: {failed.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"the shared Kafka broker did not start:\n{log_tail(broker.log_path)}")
        time.sleep(0.1)
    return broker


def group_and_order(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a worker: tell the controller which tests go together, and put the longest first."""
    workerinput = getattr(config, "workerinput", {})
    groups_dir = workerinput.get(GROUPS_DIR)
    if groups_dir is None:
        return
    groups = {item.nodeid: _module(item) for item in items if _uses_module_fixture(item)}
    worker = workerinput["workerid"]
    (Path(groups_dir) / f"{worker}.json").write_text(json.dumps(groups), encoding="utf-8")
    items.sort(key=_rank)


def _module(item: pytest.Item) -> str:
    return item.nodeid.split("::")[0]


def _rank(item: pytest.Item) -> int:
    module = _module(item)
    if module in LONGEST_FIRST:
        return LONGEST_FIRST.index(module)
    return len(LONGEST_FIRST) + (0 if item.get_closest_marker("e2e") else 1)


def _uses_module_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(
        fixture.scope in ("module", "class")
        for fixtures in info.name2fixturedefs.values()
        for fixture in fixtures
    )


class GroupedScheduling(LoadScopeScheduling):
    """xdist's scope scheduling with the units of work that `group_and_order` wrote down, in
    the order the workers collected them."""

    def __init__(self, config: pytest.Config, log: Any, groups_dir: Path) -> None:
        config.option.loadscopereorder = False
        super().__init__(config, log)
        self.groups_dir = groups_dir
        self.groups: dict[str, str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self.groups is None:
            # Read once every worker has collected, which is when scheduling starts.
            self.groups = {}
            for path in self.groups_dir.glob("*.json"):
                self.groups.update(json.loads(path.read_text(encoding="utf-8")))
        return self.groups.get(nodeid, nodeid)
