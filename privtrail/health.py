"""Whether the pipeline's consumers keep up: the store's ingest loop and the worker group.

A consumer is stalled once it has not made progress for `health_stall_seconds`. Progress is
advancing, or being seen with nothing left to consume: an idle consumer is healthy, a lag that
appears after an idle spell gets the full threshold before it counts, and a consumer that is no
longer observed at all (lag unknown, or the observer stuck) stalls like one that lags.

The worker is watched from the store process over the Kafka protocol: its consumer group's
committed offsets and members, against the end offsets of the events topic.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from kafka.admin import OffsetSpec
from kafka.errors import BrokerResponseError, RetriableError
from kafka.structs import TopicPartition
from pydantic import BaseModel

from config.settings import Settings
from sinks.progress import Clock, Progress

# The worker group is probed this many times per stall threshold (every 10 s by default): a
# stall is reported at most a third of the threshold late, and an idle stack, whose broker
# answers each probe's few requests, is not woken more often than that needs.
PROBES_PER_STALL_THRESHOLD = 3
# Bounds each probe request, so a broker that does not answer is reported instead of waited on.
PROBE_TIMEOUT_MS = 3000

log = logging.getLogger(__name__)


class WorkerStatus(BaseModel):
    """The worker's consumer group as the last probe saw it."""

    group: str
    # Events of the events topic the group has not committed (None: not observed yet).
    lag: int | None
    # Since its committed offsets last advanced, or it was last seen caught up.
    seconds_since_progress: float
    # Consumers in the group (None: not observed, or the broker cannot describe groups).
    members: int | None
    # Why the last probe failed, cleared by the next one that succeeds.
    error: str | None


class GroupAdmin(Protocol):
    """The parts of kafka-python's KafkaAdminClient the worker probe uses."""

    def describe_topics(self, topics: Sequence[str]) -> list[dict[str, Any]]: ...
    def list_group_offsets(
        self, group_specs: Mapping[str, Sequence[TopicPartition]]
    ) -> dict[str, dict[TopicPartition, Any]]: ...
    def list_partition_offsets(
        self, topic_partition_specs: Mapping[TopicPartition, int], timeout_ms: int | None = None
    ) -> dict[TopicPartition, Any]: ...
    def describe_groups(self, group_ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...
    def close(self) -> None: ...


AdminFactory = Callable[[], GroupAdmin]


class WorkerWatch:
    """Probes the worker's consumer group in a daemon thread; `/health` reads the last answer."""

    def __init__(
        self,
        settings: Settings,
        admin_factory: AdminFactory | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        # Faust names its consumer group after the app id.
        self.group = settings.app_id
        self.topic = settings.topics.events
        self._threshold = settings.health_stall_seconds
        self._admin_factory = admin_factory or (lambda: kafka_admin(settings))
        self._admin: GroupAdmin | None = None
        self._progress = Progress(clock)
        self._committed: dict[int, int] | None = None
        self._members: int | None = None
        self._error: str | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="privtrail-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            # A probe in flight ends within its request timeouts.
            self._thread.join(2 * PROBE_TIMEOUT_MS / 1000)
        self._close_admin()

    def status(self) -> WorkerStatus:
        return WorkerStatus(
            group=self.group,
            lag=self._progress.lag,
            seconds_since_progress=round(self._progress.seconds_since_progress(), 1),
            members=self._members,
            error=self._error,
        )

    def problems(self) -> list[str]:
        """Why the worker is not judging what waits for it, if it is not; empty when it is."""
        found = [self._error] if self._error else []
        lag = self._progress.lag
        if self._members == 0 and lag:
            found.append(f"no worker in consumer group {self.group!r} while {lag} events wait")
        stalled = self._progress.problem(
            f"worker group {self.group!r}", f"events on {self.topic}", self._threshold
        )
        if stalled:
            found.append(stalled)
        return found

    def probe(self) -> None:
        """Observe the group once; a failure is kept as the reason, with the lag unknown."""
        try:
            admin = self._admin or self._open_admin()
            committed, lag = _committed_and_lag(admin, self.group, self.topic)
            members = _members(admin, self.group)
        except Exception as error:
            self._failed(error)
            return
        advanced = self._committed is not None and committed != self._committed
        self._committed, self._members, self._error = committed, members, None
        self._progress.observe(lag, advanced)

    def _failed(self, error: Exception) -> None:
        if _asks_to_retry(error):
            # E.g. the group's coordinator is still starting, as Kafka's is until it has made
            # its offsets topic: no new observation, which is a stall only if it lasts.
            log.debug("worker group %r not observable yet: %s", self.group, error)
            return
        self._error = f"cannot observe worker group {self.group!r}: {error}"
        self._members = None
        self._progress.observe(None, advanced=False)
        # A fresh client next time: one whose broker went away may not come back by itself.
        self._close_admin()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.probe()
            self._stopping.wait(self._threshold / PROBES_PER_STALL_THRESHOLD)

    def _open_admin(self) -> GroupAdmin:
        self._admin = self._admin_factory()
        return self._admin

    def _close_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            try:
                admin.close()
            except Exception:
                log.debug("closing the worker probe's admin client failed", exc_info=True)


def kafka_admin(settings: Settings) -> GroupAdmin:
    from kafka.admin import KafkaAdminClient

    admin: GroupAdmin = KafkaAdminClient(
        bootstrap_servers=settings.bootstrap,
        client_id=f"{settings.app_id}-health",
        bootstrap_timeout_ms=PROBE_TIMEOUT_MS,
        request_timeout_ms=PROBE_TIMEOUT_MS,
        **settings.kafka_security.kafka_python(),
    )
    return admin


def _committed_and_lag(admin: GroupAdmin, group: str, topic: str) -> tuple[dict[int, int], int]:
    """The group's committed offset per partition of `topic`, and the events after them."""
    (described,) = admin.describe_topics([topic])
    partitions = [TopicPartition(topic, p["partition_index"]) for p in described["partitions"]]
    offsets = admin.list_group_offsets({group: partitions}).get(group, {})
    # A negative offset is the broker's "nothing committed".
    committed = {tp.partition: o.offset for tp, o in offsets.items() if o.offset >= 0}
    ends = _offsets(admin, partitions, OffsetSpec.LATEST)
    # An uncommitted partition is read from its start, which retention may have moved past 0.
    uncommitted = [tp for tp in partitions if tp.partition not in committed]
    starts = _offsets(admin, uncommitted, OffsetSpec.EARLIEST)
    lag = sum(max(end - committed.get(p, starts.get(p, 0)), 0) for p, end in ends.items())
    return committed, lag


def _offsets(admin: GroupAdmin, partitions: list[TopicPartition], spec: int) -> dict[int, int]:
    if not partitions:
        return {}
    answer = admin.list_partition_offsets(
        dict.fromkeys(partitions, spec), timeout_ms=PROBE_TIMEOUT_MS
    )
    return {tp.partition: found.offset for tp, found in answer.items()}


def _asks_to_retry(error: Exception) -> bool:
    """The broker answered, and its answer means "not now" (not: unreachable, or refused)."""
    return isinstance(error, RetriableError) and isinstance(error, BrokerResponseError)


def _members(admin: GroupAdmin, group: str) -> int | None:
    try:
        described = admin.describe_groups([group])
    except Exception as error:
        # Some Kafka-protocol brokers answer DescribeGroups in a way kafka-python cannot parse;
        # a stall then still shows, by the committed offsets, only later and without the cause.
        log.debug("cannot describe consumer group %r: %s", group, error)
        return None
    return len(described[group]["members"])
