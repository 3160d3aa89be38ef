"""The Faust worker: judges `privacy.events` and produces violations, audit batches, dead letters.

Hot path per batch, not per event: the worker takes up to `batch_size` source messages in whole
fetches (streams/batching.py; or, with `worker_delivery="events"`, through a Faust agent's
stream), judges them in one go (streams/judging.py), sends all outputs, then writes each touched
subject's state once, and only then acks them.

Delivery: the broker acknowledges the outputs *before* the state changelog is written, and both
before the batch's offsets can be committed. A crash in between re-judges the batch against the
old state and re-sends the same (deterministic) ids, which the store dedups; a crash after it
finds the events already folded into the state (`SubjectState.seen`) and skips them. Either
way each event counts once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import faust
from faust.types import TP

from config.settings import Settings
from events.fitting import audit_messages, fit_dead_letter, fit_record, message_size
from events.key_directory import KEY_TABLE
from events.pseudonyms import SubjectKeys
from streams.batching import SourceRoute
from streams.entries import Entry, ParsedEntries, changelog_value, index_deadlines
from streams.erasure import key_topic_configs
from streams.history import SubjectHistory
from streams.judging import Incoming, Judge, Verdicts
from streams.offsets import OffsetsClient
from streams.positions import Arrival, Positions
from streams.rules import PolicySet
from streams.transport import WorkerConsumer, WorkerTransport

log = logging.getLogger(__name__)

# At most this many audit records per message; `audit_messages` also splits by encoded size.
AUDIT_RECORDS_PER_MESSAGE = 500
DEADLINE_TICK_SECONDS = 5.0
# How long the worker waits for the broker's end offsets before "now" stands still.
OFFSETS_TIMEOUT_SECONDS = 5.0
POSITIONS_TICK_SECONDS = 5.0
# How often a worker with nothing to judge looks for erasures whose offsets were committed.
RETIRING_TICK_SECONDS = 2.0
# With events left to judge, this long without a batch means they were lost on the way.
STALLED_SECONDS = 10.0


def create_app(settings: Settings, policy: PolicySet) -> faust.App:
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap}",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        store="memory://",
        datadir=str(settings.data_dir / "worker"),
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # Outputs and changelog writes are sent per batch: let them share produce requests.
        producer_linger=0.05,
        processing_guarantee=settings.processing_guarantee,
        broker_commit_interval=settings.commit_interval,
        **_client_tuning(settings),
        **settings.kafka_security.faust(),
    )
    # Idempotent outputs and changelog writes: a retried produce request is not written twice.
    app.transport = WorkerTransport(app.conf.broker_consumer, app)
    Pipeline(app, settings, policy)
    return app


def _client_tuning(settings: Settings) -> dict[str, Any]:
    tuning = {
        "producer_max_batch_size": settings.producer_max_batch_size,
        "broker_session_timeout": settings.broker_session_timeout,
        "broker_heartbeat_interval": settings.broker_heartbeat_interval,
        "broker_rebalance_timeout": settings.broker_rebalance_timeout,
    }
    return {name: value for name, value in tuning.items() if value is not None}


class Pipeline:
    """Wires the judge into a Faust app: source topic, state table, outputs, deadline timer."""

    def __init__(self, app: faust.App, settings: Settings, policy: PolicySet) -> None:
        self.app = app
        self.settings = settings
        # Lookup id -> the subject's secret behind its pseudonym (events/pseudonyms.py). The
        # compacted changelog is where the keys live: shredding one overwrites it there.
        self.keys_table = app.Table(
            KEY_TABLE,
            partitions=settings.partitions,
            schema=faust.Schema(key_serializer="json", value_serializer="json"),
            extra_topic_configs=key_topic_configs(settings),
        )
        self.keys = SubjectKeys(settings.pseudonym_master, self.keys_table.data)
        self.judge = Judge(
            policy,
            self.keys,
            horizon=settings.lateness_horizon,
            max_kept=settings.history_max_events,
            max_ahead=settings.max_event_skew,
        )
        topics = settings.topics
        self.source = self._raw_topic(topics.events)
        self.violations = self._raw_topic(topics.violations)
        self.deadletter = self._raw_topic(topics.deadletter)
        self.audit = self._raw_topic(topics.audit)
        # Keyed by subject pseudonym, so the changelog never carries a raw subject id. Values
        # stay the changelog's JSON bytes: a million subjects parsed would not fit in memory.
        self.states = app.Table(
            "subject-state",
            partitions=settings.partitions,
            value_type=bytes,
            schema=faust.Schema(key_serializer="json", value_serializer="raw"),
        )
        self._parsed = ParsedEntries(settings.worker_parsed_subjects)
        # The source partitions whose subjects' deadlines the judge has indexed.
        self._indexed: set[int] | None = None
        # The source partitions whose retiring subject keys are indexed.
        self._keys_indexed: set[int] | None = None
        # Per source partition, the next offset to judge: no event is skipped, and partitions
        # with a backlog are told apart.
        self.positions = Positions(time.monotonic)
        # When the judge last finished a batch, and whether it is judging one now.
        self._last_batch = time.monotonic()
        self._judging = False
        self.offsets = OffsetsClient(settings.bootstrap, settings.app_id, settings.kafka_security)
        app.on_before_shutdown.connect(self._close_offsets)
        consumer = cast(WorkerConsumer, app.consumer)
        consumer.deliver_every_message(self.source.get_topic_name())
        self.route = SourceRoute(app, self.source.get_topic_name())
        if settings.worker_delivery == "batches":
            consumer.route_in_batches(self.route)
            # Subscribed through Faust's conductor, as an agent's topic would be.
            app.topics.add(self.source)
            # An exception here crashes the worker (Faust's task supervision): nothing of the
            # batch is acked, and a restarted worker judges from the last committed offsets.
            app.task(self._judge_batches)
        else:
            app.agent(self.source, name="privtrail.judge")(self._judge_stream)
        app.timer(DEADLINE_TICK_SECONDS, name="privtrail.deadlines")(self._deadline_tick)
        app.timer(POSITIONS_TICK_SECONDS, name="privtrail.positions")(self._watch_positions)
        app.timer(RETIRING_TICK_SECONDS, name="privtrail.retiring")(self._retiring_tick)

    async def _close_offsets(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """On the app's stop, after its consumer's: nothing asks about offsets any more."""
        await self.offsets.close()

    def _raw_topic(self, name: str) -> faust.TopicT:
        return self.app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=self.settings.partitions,
        )

    async def _judge_stream(self, stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        size, window = self.settings.batch_size, self.settings.batch_window
        # take_events is on the concrete Stream only; agents are always given one.
        batches = cast(faust.Stream[bytes], stream).take_events(size, within=window)
        async for events in batches:
            # Faust's stream acks each event once the agent asks for the next batch.
            await self._judge([event.message for event in events])
            yield None

    async def _judge_batches(self) -> None:
        while True:
            messages = await self.route.take(self.settings.batch_size)
            await self._judge(messages)
            self.route.settle(messages)

    async def _judge(self, messages: Sequence[faust.types.Message]) -> None:
        self._judging = True
        try:
            await self._sync_generation()
            self._refresh_deadline_index()
            await self._drop_retired_keys()
            batch = await self._in_order(messages)
            await self._publish(self.judge.judge_batch(batch, self._load, self._lagging()))
            await self._rewind(self.positions.due_rewinds(), "messages before it never arrived")
        finally:
            # A batch that takes longer than STALLED_SECONDS (5,000 events on a busy machine)
            # is no stall: counted from its start, every such batch was read again.
            self._judging = False
            self._last_batch = time.monotonic()

    async def _in_order(self, messages: Sequence[faust.types.Message]) -> list[Incoming]:
        """The messages to judge now: each partition's in offset order from its committed one.

        A message left out for a hole is untracked: its ack is refused.
        """
        batch = []
        for message in messages:
            arrival = self.positions.admit(message.partition, message.offset)
            if arrival is Arrival.AFTER_HOLE:
                if self.positions.held_back(message.partition) or await self._lost_before(message):
                    # Judged once the hole is read again; its ack must not let a commit pass it.
                    message.tracked = False
                    continue
                arrival = await self._skip_hole(message)
            if arrival is Arrival.NEXT:
                batch.append(_incoming(message))
        return batch

    async def _lost_before(self, message: faust.types.Message) -> bool:
        """Whether the hole before `message` held records this worker should have been given,
        rather than only transaction markers or aborted or compacted records."""
        start = self.positions.next_offset(message.partition) or 0
        try:
            first = await self.offsets.first_offset(message.tp, start, self._isolation_level())
        except Exception as error:
            log.warning("cannot look into offsets %d.. of %s (%s)", start, message.tp, error)
            first = None
        lost = first is None or first < message.offset
        if lost:
            self.positions.lost(message.partition)
        return lost

    async def _skip_hole(self, message: faust.types.Message) -> Arrival:
        start = self.positions.next_offset(message.partition) or 0
        # Faust commits past a gap only once told it holds nothing to process.
        await cast(Any, self.app.consumer)._add_gap(message.tp, start, message.offset - 1)
        self.positions.skip_to(message.partition, message.offset)
        return self.positions.admit(message.partition, message.offset)

    def _isolation_level(self) -> str:
        # As Faust's own consumer reads: committed only when it runs transactions.
        return "read_committed" if self.app.consumer.in_transaction else "read_uncommitted"

    async def _sync_generation(self) -> None:
        """After a rebalance, judge each owned partition from its committed offset on."""
        generation = self.app.consumer_generation_id
        if self.app.rebalancing or generation == self.positions.generation:
            return
        owned = self._owned_tps()
        committed: dict[TP, int | None] = cast(Any, self.app.consumer)._committed_offset
        starts = {tp.partition: committed.get(tp) for tp in owned}
        uncommitted = [tp for tp in owned if starts[tp.partition] is None]
        if uncommitted:
            # Nothing committed (or offset 0): the group starts at the earliest offset.
            earliest = await self.offsets.beginning_offsets(uncommitted)
            starts.update({tp.partition: offset for tp, offset in earliest.items()})
        self.positions.start_generation(generation, starts)

    async def _watch_positions(self) -> None:
        """Read a partition again when its events stopped reaching the agent.

        Events Faust fetched and then lost on the way to the stream leave no hole for the agent
        to see when nothing newer arrives: the broker holds records past what was judged, and
        no batch has come for a while.
        """
        if self.app.rebalancing:
            return
        await self._sync_generation()
        if self._judging or time.monotonic() - self._last_batch < STALLED_SECONDS:
            return
        name = self.source.get_topic_name()
        owned = self._owned_tps()
        if not owned:
            return
        try:
            ends = await asyncio.wait_for(self.offsets.end_offsets(owned), OFFSETS_TIMEOUT_SECONDS)
            behind = self.positions.behind({tp.partition: end for tp, end in ends.items()})
            stalled = {p: start for p, start in behind.items() if await self._readable(p, start)}
        except Exception as error:
            log.warning("no offsets from the broker (%s): cannot tell a stall", error)
            return
        if stalled:
            # Fetching again is no use on a partition left paused.
            self.app.consumer.resume_partitions({TP(name, p) for p in stalled})
            await self._rewind(stalled, "its events stopped arriving")

    async def _readable(self, partition: int, start: int) -> bool:
        tp = TP(self.source.get_topic_name(), partition)
        return await self.offsets.first_offset(tp, start, self._isolation_level()) is not None

    async def _rewind(self, starts: dict[int, int], why: str) -> None:
        name = self.source.get_topic_name()
        for partition, offset in sorted(starts.items()):
            log.warning("partition %d: reading again from offset %d: %s", partition, offset, why)
            self.positions.rewinding(partition)
            # On the consumer's own thread: a seek from here lands while aiokafka's fetcher
            # walks its records on that thread, and crashes it.
            await self.app.consumer.seek_wait({TP(name, partition): offset})

    async def _retiring_tick(self) -> None:
        if not self._judging:  # else the batch drops them first
            await self._drop_retired_keys()

    async def _drop_retired_keys(self) -> None:
        """Shred the secrets erasures retired once the group's committed offset passed the
        fulfilment: no batch that needs them will be judged again (events/pseudonyms.py).

        Also after a restart or a rebalance: the owner of a partition finds its retiring keys
        in the recovered table, and shreds them without another fulfilment.
        """
        if self.app.rebalancing:
            return  # tables are recovering, or the partitions move
        owned = self._owned()
        if owned != self._keys_indexed:
            self.keys.index_retiring(owned)
            self._keys_indexed = owned
        if not self.keys.retiring:
            return
        try:
            committed = await asyncio.wait_for(
                self.offsets.committed_offsets(self.app.conf.id, self._owned_tps()),
                OFFSETS_TIMEOUT_SECONDS,
            )
        except Exception as error:
            log.warning("no committed offsets from the broker (%s): keys retire later", error)
            return
        if self.app.rebalancing:
            return  # a partition's new owner may be writing its keys by now
        still_owned = self._owned()
        dropped = self.keys.drop_committed(
            {tp.partition: n for tp, n in committed.items() if tp.partition in still_owned}
        )
        if dropped:
            log.info("shredded %d retired subject key(s)", dropped)
            await self._delivered(self._persist_keys())

    async def _deadline_tick(self) -> None:
        """Once everything is read, deadlines still fall due: on the wall clock.

        Silence is not proof of that (a broker coming back after an outage has events that
        were not delivered yet), so the wall clock takes over only while this worker's
        positions equal the end offsets a broker has just answered with.
        """
        if not self.settings.wall_clock_deadlines:
            return
        if self.app.rebalancing or not await self._caught_up():
            return  # tables are recovering, or there are events still to judge
        self._refresh_deadline_index()
        verdicts = self.judge.judge_due(self._now(), self._load)
        if verdicts.violations:
            await self._publish(verdicts)

    async def _caught_up(self) -> bool:
        owned = self._owned_tps()
        if not owned:
            return False
        try:
            ends = await asyncio.wait_for(self.offsets.end_offsets(owned), OFFSETS_TIMEOUT_SECONDS)
        except Exception as error:
            log.warning("no end offsets from the broker (%s): event time stands still", error)
            return False
        # Faust seeks each assigned partition to its committed offset: what this worker
        # starts reading from when it has judged nothing there yet.
        committed: dict[TP, int | None] = cast(Any, self.app.consumer)._committed_offset
        for tp in owned:
            position = self.positions.next_offset(tp.partition)
            if position is None:
                position = committed.get(tp) or 0
            if ends.get(tp) is None or ends[tp] > position:
                return False
        return True

    def _owned_tps(self) -> list[TP]:
        name = self.source.get_topic_name()
        return [TP(name, partition) for partition in sorted(self._owned())]

    def _owned(self) -> set[int]:
        name = self.source.get_topic_name()
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == name}

    def _lagging(self) -> set[int]:
        """Owned source partitions with events not judged yet."""
        name = self.source.get_topic_name()
        lagging = set()
        for partition in self._owned():
            end = self.app.consumer.highwater(TP(name, partition))
            if end is None or end > (self.positions.next_offset(partition) or 0):
                lagging.add(partition)
        return lagging

    def _refresh_deadline_index(self) -> None:
        """After a rebalance, index pending deadlines of the subjects this worker now owns."""
        owned = self._owned()
        if owned == self._indexed:
            return
        self.judge.forget_partitions(set(range(self.settings.partitions)) - owned)
        index_deadlines(self.judge, self.states.data.items(), owned - (self._indexed or set()))
        self._indexed = owned

    def _now(self) -> datetime:
        wall = datetime.now(UTC)
        watermark = self.judge.watermark
        return max(wall, watermark) if watermark else wall

    def _load(self, key: str) -> SubjectHistory | None:
        entry = self._entry(key)
        return entry.history if entry else None

    def _entry(self, key: str) -> Entry | None:
        """A subject's table entry, parsed from its changelog JSON unless kept parsed."""
        raw = self.states.data.get(key)
        if raw is None:
            return None
        return self._parsed.get(key, raw)

    async def _publish(self, verdicts: Verdicts) -> None:
        # Key changes first: a batch judged again must find the secrets behind pseudonyms
        # already sent, and each erasure where it happened.
        await self._delivered(self._persist_keys())
        # Every output is fitted to the message limit: one the broker refuses would stop the
        # agent, and the same batch would be refused again after each restart.
        now = datetime.now(UTC)
        limit = self.settings.max_message_bytes
        sent: list[asyncio.Future[Any]] = []
        for letter in verdicts.dead_letters:
            incoming = letter.incoming
            fitted = fit_dead_letter(incoming.key, incoming.value, letter.headers(now), limit)
            sent.append(
                self.deadletter.send_soon(
                    key=fitted.key, value=fitted.value, headers=fitted.headers
                )
            )
        for violation in verdicts.violations:
            key = violation.subject_pseudonym.encode()
            value = fit_record(violation, limit - message_size(key, b""))
            sent.append(self.violations.send_soon(key=key, value=value))
        for value in audit_messages(verdicts.audit, limit, AUDIT_RECORDS_PER_MESSAGE):
            sent.append(self.audit.send_soon(value=value))
        await self._delivered(sent)
        await self._delivered(self._persist(verdicts))

    async def _delivered(self, sent: list[asyncio.Future[Any]]) -> None:
        """Wait until the broker has acknowledged every message in `sent`.

        Faust's `producer.flush()` is not that: its buffer gives up after 0.1 s without a send,
        leaving messages queued. The state changelog must not land before the outputs it
        records (a restarted worker would skip those events as judged), and the offsets that
        Faust commits after this batch must not run ahead of either.
        """
        if sent:
            await self.app.producer.flush()  # hands the buffer over now, not after the linger
            await asyncio.gather(*sent)

    def _persist(self, verdicts: Verdicts) -> list[asyncio.Future[Any]]:
        sent: list[asyncio.Future[Any]] = []
        version = self.judge.policy.version
        for key, (partition, history) in verdicts.histories.items():
            # The changelog partition follows the source partition, as Faust does per event.
            value = changelog_value(partition, history, version, self.judge.next_due(key))
            self.states.data[key] = value
            self._parsed.keep(key, value, Entry(partition, history))
            sent.append(self.states.send_changelog(partition, key, value, value_serializer="raw"))
        return sent

    def _persist_keys(self) -> list[asyncio.Future[Any]]:
        return [
            self.keys_table.send_changelog(
                partition,
                lookup,
                key.model_dump_json(exclude_defaults=True).encode(),
                value_serializer="raw",
            )
            for lookup, (partition, key) in self.keys.take_pending().items()
        ]


def _incoming(message: faust.types.Message) -> Incoming:
    # Faust gives the Kafka timestamp in seconds; 0 or less means the message has none.
    timestamp = message.timestamp
    appended = datetime.fromtimestamp(timestamp, UTC) if timestamp and timestamp > 0 else None
    return Incoming(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value or b"",
        appended_at=appended,
    )
