"""The worker-group probe and the health verdicts, against a scripted Kafka admin client."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from kafka.admin import OffsetSpec
from kafka.errors import CoordinatorNotAvailableError
from kafka.structs import OffsetAndMetadata, OffsetAndTimestamp, TopicPartition

from config.settings import Settings, Topics
from privtrail.api import create_app
from privtrail.client import ApiClient
from privtrail.health import WorkerWatch
from privtrail.stack import HEALTH_POLL_SECONDS, HealthWatch
from sinks.clickhouse.store import Store
from tests.unit.chdb_store import store_dsn

GROUP, EVENTS = "pt-test", "privacy.events"
SETTINGS = Settings(app_id=GROUP, topics=Topics(events=EVENTS), health_stall_seconds=30)


@dataclass
class FakeAdmin:
    """A broker's view of the events topic and the worker group, changed by the test."""

    ends: dict[int, int]
    starts: dict[int, int] = field(default_factory=dict)
    committed: dict[int, int] = field(default_factory=dict)
    members: int = 1
    describe_fails: bool = False
    closed: bool = False

    def describe_topics(self, topics: Sequence[str]) -> list[dict[str, Any]]:
        partitions = [{"partition_index": p} for p in self.ends]
        return [{"name": topic, "partitions": partitions} for topic in topics]

    def list_group_offsets(
        self, group_specs: Mapping[str, Sequence[TopicPartition]]
    ) -> dict[str, dict[TopicPartition, Any]]:
        return {
            group: {
                tp: OffsetAndMetadata(self.committed.get(tp.partition, -1), "", -1)
                for tp in partitions
            }
            for group, partitions in group_specs.items()
        }

    def list_partition_offsets(
        self, topic_partition_specs: Mapping[TopicPartition, int], timeout_ms: int | None = None
    ) -> dict[TopicPartition, Any]:
        offsets = {OffsetSpec.LATEST: self.ends, OffsetSpec.EARLIEST: self.starts}
        return {
            tp: OffsetAndTimestamp(offsets[spec].get(tp.partition, 0), -1, None)
            for tp, spec in topic_partition_specs.items()
        }

    def describe_groups(self, group_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if self.describe_fails:
            raise ValueError("15 is not a valid ACLOperation")
        return {group: {"members": [{}] * self.members} for group in group_ids}

    def close(self) -> None:
        self.closed = True


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def watch_of(admin: FakeAdmin, clock: Clock) -> WorkerWatch:
    return WorkerWatch(SETTINGS, admin_factory=lambda: admin, clock=clock)


def test_worker_lag_counts_uncommitted_partitions_from_their_start(clock: Clock) -> None:
    admin = FakeAdmin(ends={0: 10, 1: 5, 2: 7}, committed={0: 4}, starts={1: 5, 2: 3})
    watch = watch_of(admin, clock)

    watch.probe()

    status = watch.status()
    assert (status.group, status.lag, status.members, status.error) == (GROUP, 6 + 0 + 4, 1, None)
    assert watch.problems() == []


def test_no_worker_while_events_wait_is_degraded_at_once(clock: Clock) -> None:
    watch = watch_of(FakeAdmin(ends={0: 3, 1: 2}, members=0), clock)

    watch.probe()

    assert watch.problems() == [f"no worker in consumer group {GROUP!r} while 5 events wait"]


def test_an_empty_group_with_nothing_to_judge_is_healthy(clock: Clock) -> None:
    watch = watch_of(FakeAdmin(ends={0: 3}, starts={0: 3}, members=0), clock)

    watch.probe()

    assert (watch.status().lag, watch.problems()) == (0, [])


def test_a_lagging_group_whose_commits_stand_still_is_degraded_after_the_threshold(
    clock: Clock,
) -> None:
    admin = FakeAdmin(ends={0: 10}, committed={0: 4})
    watch = watch_of(admin, clock)
    watch.probe()
    clock.now += 25
    watch.probe()
    assert watch.problems() == []

    clock.now += 10
    watch.probe()

    (problem,) = watch.problems()
    assert problem == (f"worker group {GROUP!r}: 6 events on {EVENTS} behind, no progress for 35 s")
    assert watch.status().seconds_since_progress == 35

    admin.committed = {0: 5}
    clock.now += 5
    watch.probe()
    assert watch.problems() == []


def test_a_lag_after_a_long_idle_spell_gets_the_whole_threshold(clock: Clock) -> None:
    admin = FakeAdmin(ends={0: 4}, committed={0: 4})
    watch = watch_of(admin, clock)
    for _ in range(10):
        clock.now += 100
        watch.probe()
    assert watch.problems() == []

    admin.ends = {0: 9}
    watch.probe()
    clock.now += 20
    assert (watch.status().lag, watch.problems()) == (5, [])

    clock.now += 15
    assert watch.problems() != []


def test_a_group_no_longer_observed_is_not_taken_for_caught_up(clock: Clock) -> None:
    watch = watch_of(FakeAdmin(ends={0: 4}, committed={0: 4}), clock)
    watch.probe()

    clock.now += 31  # the probe thread is stuck: no observation since

    assert watch.problems() == [
        f"worker group {GROUP!r}: not observed since it caught up, no progress for 31 s"
    ]


def test_an_unreachable_broker_is_degraded_naming_it_and_retried_with_a_new_client(
    clock: Clock,
) -> None:
    admins = [FakeAdmin(ends={0: 1}, committed={0: 1})]

    def connect() -> FakeAdmin:
        if len(admins) == 1:
            admins.append(FakeAdmin(ends={0: 1}, committed={0: 1}))
            raise ConnectionError("no broker at 127.0.0.1:1")
        return admins.pop()

    watch = WorkerWatch(SETTINGS, admin_factory=connect, clock=clock)
    watch.probe()

    assert watch.problems() == [f"cannot observe worker group {GROUP!r}: no broker at 127.0.0.1:1"]
    assert (watch.status().lag, watch.status().members) == (None, None)

    watch.probe()

    assert watch.problems() == []


def test_a_failing_client_is_closed_and_the_failure_reported(clock: Clock) -> None:
    admin = FakeAdmin(ends={0: 1})
    watch = watch_of(admin, clock)
    watch.probe()

    admin.ends = {}  # the topic has no partitions: nothing to list offsets for
    admin.describe_topics = lambda topics: []  # type: ignore[method-assign]
    watch.probe()

    assert admin.closed
    assert watch.problems()[0].startswith(f"cannot observe worker group {GROUP!r}: ")


def test_a_coordinator_that_asks_to_retry_is_a_stall_only_if_it_lasts(clock: Clock) -> None:
    admin = FakeAdmin(ends={0: 1})

    def starting(group_specs: Mapping[str, Sequence[TopicPartition]]) -> dict[str, Any]:
        raise CoordinatorNotAvailableError("the offsets topic is being created")

    admin.list_group_offsets = starting  # type: ignore[method-assign]
    watch = watch_of(admin, clock)
    watch.probe()
    assert (watch.problems(), admin.closed) == ([], False)

    clock.now += 31
    watch.probe()

    assert watch.problems() == [f"worker group {GROUP!r}: lag unknown, no progress for 31 s"]


def test_a_broker_that_cannot_describe_groups_still_shows_a_stall(clock: Clock) -> None:
    watch = watch_of(FakeAdmin(ends={0: 10}, committed={0: 4}, describe_fails=True), clock)
    watch.probe()
    assert (watch.status().members, watch.problems()) == (None, [])

    clock.now += 31
    watch.probe()

    assert len(watch.problems()) == 1 and "6 events" in watch.problems()[0]


def test_the_probe_thread_starts_and_stops_promptly() -> None:
    admin = FakeAdmin(ends={0: 2}, committed={0: 2})
    watch = WorkerWatch(SETTINGS, admin_factory=lambda: admin)

    watch.start()
    watch.stop()

    assert watch.status().lag == 0 and admin.closed


@pytest.fixture
def store() -> Iterator[Store]:
    opened = Store.open(store_dsn())
    yield opened
    opened.close()


def test_health_names_the_worker_lag_and_why_it_is_degraded(store: Store, clock: Clock) -> None:
    watch = watch_of(FakeAdmin(ends={0: 3}, members=0), clock)
    watch.probe()

    with TestClient(create_app(SETTINGS, store, worker=watch)) as http:
        body = http.get("/health").json()

    assert body["status"] == "degraded"
    assert body["reasons"] == [f"no worker in consumer group {GROUP!r} while 3 events wait"]
    assert body["worker"] == {
        "group": GROUP,
        "lag": 3,
        "seconds_since_progress": 0.0,
        "members": 0,
        "error": None,
    }


def scripted_api(answers: list[list[str] | None]) -> ApiClient:
    """An API answering /health with the next of `answers`: its reasons, or None for no answer."""
    remaining = list(answers)

    def answer(request: httpx.Request) -> httpx.Response:
        reasons = remaining.pop(0)
        if reasons is None:
            raise httpx.ConnectError("connection refused", request=request)
        body = {
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            "version": "test",
            "store": {"ok": True},
            "ingest": None,
        }
        return httpx.Response(200, json=body)

    url = "http://privtrail.test"
    return ApiClient(url, http=httpx.Client(base_url=url, transport=httpx.MockTransport(answer)))


def test_up_reports_each_change_to_degraded_and_back_once(clock: Clock) -> None:
    watch = HealthWatch(
        scripted_api([[], ["ingest: 5 behind"], ["ingest: 9 behind"], []]), clock=clock
    )

    changes = []
    for _ in range(4):
        changes.append(watch.poll())
        assert watch.poll() is None  # not asked again before HEALTH_POLL_SECONDS
        clock.now += HEALTH_POLL_SECONDS

    assert changes == [None, ["ingest: 5 behind"], None, []]


def test_up_reports_an_api_that_does_not_answer_as_degraded(clock: Clock) -> None:
    watch = HealthWatch(scripted_api([None]), clock=clock)

    (reason,) = watch.poll() or []

    assert "not reachable at http://privtrail.test" in reason
