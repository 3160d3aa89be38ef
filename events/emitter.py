"""The Python SDK a service uses to report what it does with personal data.

    with Emitter("127.0.0.1:9092", source="/linkxup/ads-targeting") as emitter:
        emitter.data_accessed(
            "linkxup", member_id, "customer",
            actor_kind="service", actor_id="ads-ranker",
            data_categories=["user.behavior.browsing_history"],
            data_use="marketing.advertising.first_party.targeted",
            legal_basis="consent",
        )

Every helper builds a contract event (event-contract.md), validates it before anything is sent
(an invalid event raises `EmitError` naming the field) and produces it as a CloudEvents 1.0
structured-mode JSON value, keyed by the subject id. Delivery is asynchronous and batched;
`flush()` and `close()` raise `EmitError` if any event could not be delivered. Sends retry with
backoff until `delivery_timeout` (120 s by default, Kafka's `delivery.timeout.ms`), so a broker
outage shorter than that loses nothing and reports nothing.

Partitioning: messages are keyed by subject id and MUST be partitioned with Kafka's default
murmur2 key hash (the Java client's and kafka-python's default). That is what keeps one subject's
events in order on one partition, and the worker's partitioned tables rely on the same placement.
Other clients default to other hashes; configure them to match, e.g. kcat / librdkafka
`-X partitioner=murmur2_random`, confluent-kafka `{"partitioner": "murmur2_random"}`.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Protocol, Self

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from events.limits import DEFAULT_MAX_AHEAD
from events.models import (
    CONTENT_TYPE,
    ActorKind,
    EventType,
    LegalBasis,
    PrivacyEvent,
    RecipientKind,
    Right,
)
from events.validation import InvalidEvent, check_time, parse_structure

ConsentStatus = Literal["given", "withdrawn", "objected"]
AccountStatus = Literal["created", "closed", "reopened", "active"]
HoldStatus = Literal["placed", "released"]

_HEADERS = [("content-type", CONTENT_TYPE.encode())]

# As Kafka's Java clients (`delivery.timeout.ms`): how long a sent event may take to be
# acknowledged, retries included, before `flush()` reports it undelivered. It rides through a
# broker outage shorter than this.
DEFAULT_DELIVERY_TIMEOUT = 120.0
# How long one produce request may wait for its answer; a delivery timeout is at least this.
REQUEST_TIMEOUT_SECONDS = 30.0

PRODUCER_DEFAULTS: dict[str, Any] = {
    "client_id": "privtrail-emitter",
    # Durability: a send counts only once every in-sync replica has it. Transient errors
    # (a broker down, a leader moving) retry without a count limit: the delivery timeout bounds
    # them, as with Kafka's Java clients (retries = Integer.MAX_VALUE).
    "acks": "all",
    "retries": 2**31 - 1,
    "retry_backoff_ms": 100,
    # Reconnect attempts back off exponentially up to this; kafka-python's 30 s would leave a
    # broker that is back unused for up to 30 s.
    "reconnect_backoff_max_ms": 1000,
    # The idempotent producer (kafka-python's default): a retried batch is not written twice.
    "enable_idempotence": True,
    # Throughput: wait a few milliseconds so records of many calls share one request.
    "linger_ms": 20,
    "batch_size": 128 * 1024,
}
# Settings the wire contract depends on: bytes in, bytes out, murmur2 key partitioning.
_FIXED_SETTINGS = frozenset({"partitioner", "key_serializer", "value_serializer"})
_MAX_REPORTED_FAILURES = 5


class EmitError(Exception):
    """An event that is invalid, or could not be handed to or delivered by Kafka."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        failures: Sequence[DeliveryFailure] = (),
    ) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.failures = list(failures)


@dataclass(frozen=True)
class DeliveryFailure:
    """A message Kafka did not accept: which one (event id, never the subject) and why."""

    message: str
    error: BaseException

    def __str__(self) -> str:
        return f"{self.message}: {type(self.error).__name__}: {self.error}"


class SendFuture(Protocol):
    def add_errback(self, f: Callable[..., Any], *args: Any) -> Any: ...


class Producer(Protocol):
    """The part of `kafka.KafkaProducer` the emitter uses (a test can pass a fake)."""

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> SendFuture: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...


class _DropSendRecords(logging.Filter):
    # kafka-python logs every record's key and value at DEBUG; both carry the subject id.
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("%s: Sending (key=")


_SEND_LOG_FILTER = _DropSendRecords()


def build_event(
    event_type: EventType,
    *,
    source: str,
    data: Mapping[str, Any],
    event_id: str | None = None,
    time: datetime | None = None,
) -> PrivacyEvent:
    """A validated contract event; `id` defaults to a random UUID, `time` to now (UTC)."""
    envelope = {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": source,
        "type": str(event_type),
        "time": time or datetime.now(UTC),
        "datacontenttype": "application/json",
        "data": dict(data),
    }
    # Optional fields are left out rather than sent as null.
    return validate_event(_to_json(_without_nulls(envelope)))


def validate_event(raw: bytes) -> PrivacyEvent:
    """The event in `raw` (CloudEvents JSON), checked against the wire models only.

    Taxonomy keys are not checked here: which keys exist depends on the org's policy, which the
    worker knows and the emitter does not. The time window is, on this machine's clock, so an
    event the worker would reject for its `time` is refused here already.
    """
    try:
        event = parse_structure(raw)
        check_time(event, datetime.now(UTC), DEFAULT_MAX_AHEAD)
    except InvalidEvent as error:
        raise EmitError(error.reason, field=error.field or None) from None
    return event


def encode_event(event: PrivacyEvent) -> bytes:
    """The structured-mode CloudEvents JSON value of an event (UTF-8)."""
    return event.model_dump_json(exclude_none=True).encode()


def event_key(event: PrivacyEvent) -> bytes:
    """The Kafka message key of an event: its subject id."""
    return event.data.subject.id.get_secret_value().encode()


class Emitter:
    """Produces privacy events to Kafka for one emitting service (`source`)."""

    def __init__(
        self,
        bootstrap: str,
        *,
        source: str,
        topic: str = "privacy.events",
        producer: Producer | None = None,
        delivery_timeout: float = DEFAULT_DELIVERY_TIMEOUT,
        **producer_config: Any,
    ) -> None:
        """`delivery_timeout`: seconds an event may take to be delivered, retries included
        (at least the 30 s a single request may take). `producer_config` goes to kafka-python's
        `KafkaProducer` and overrides the emitter's defaults."""
        fixed = sorted(_FIXED_SETTINGS & producer_config.keys())
        if fixed:
            raise ValueError(
                f"producer setting(s) {', '.join(fixed)} cannot be changed: the event contract "
                "needs raw bytes and Kafka's default murmur2 key partitioner"
            )
        if not source:
            raise ValueError("source must be the URI-reference of the emitting service")
        linger = producer_config.get("linger_ms", PRODUCER_DEFAULTS["linger_ms"]) / 1000
        if delivery_timeout < REQUEST_TIMEOUT_SECONDS + linger:
            raise ValueError(
                f"delivery_timeout must be at least {REQUEST_TIMEOUT_SECONDS + linger:g} s: one "
                "request's timeout plus the linger"
            )
        self.delivery_timeout = delivery_timeout
        self.source = source
        self.topic = topic
        self._failures: list[DeliveryFailure] = []
        self._lock = threading.Lock()
        self._raw_sent = 0
        self._closed = False
        logging.getLogger("kafka.producer.kafka").addFilter(_SEND_LOG_FILTER)
        timeouts = {
            "delivery_timeout_ms": int(delivery_timeout * 1000),
            "request_timeout_ms": int(REQUEST_TIMEOUT_SECONDS * 1000),
        }
        self._producer: Producer = producer or _kafka_producer(
            bootstrap, {**timeouts, **producer_config}
        )

    def __repr__(self) -> str:
        return f"Emitter(source={self.source!r}, topic={self.topic!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def emit(self, event: PrivacyEvent | Mapping[str, Any]) -> str:
        """Send a prebuilt event model, or a CloudEvent given as a dict; returns the event id.

        A dict is validated first and sent as given (CloudEvents extension attributes survive).
        """
        if isinstance(event, Mapping):
            value = _to_json(event)
            model = validate_event(value)
        else:
            model, value = event, encode_event(event)
        self._send(event_key(model), value, label=f"event {model.id}")
        return model.id

    def send_raw(self, key: bytes | None, value: bytes) -> None:
        """Send bytes verbatim, without any validation.

        For replaying captured input (`privtrail emit FILE`, the demo's malformed events): an
        invalid event must reach the worker, which dead-letters it with the reason, instead of
        being refused here. Services should use the typed helpers or `emit`.
        """
        with self._lock:
            self._raw_sent += 1
            label = f"raw message #{self._raw_sent}"
        self._send(key, value, label=label)

    def data_accessed(
        self,
        org: str,
        subject_id: str,
        subject_kind: str,
        actor_kind: ActorKind,
        actor_id: str,
        data_categories: Sequence[str],
        data_use: str,
        legal_basis: LegalBasis | None = None,
        *,
        event_id: str | None = None,
        time: datetime | None = None,
    ) -> str:
        data = {
            **_base(org, subject_id, subject_kind),
            "actor": {"kind": actor_kind, "id": actor_id},
            "data_categories": list(data_categories),
            "data_use": data_use,
            "legal_basis": legal_basis,
        }
        return self._emit_new(EventType.DATA_ACCESSED, data, event_id, time)

    def shared(
        self,
        org: str,
        subject_id: str,
        subject_kind: str,
        actor_kind: ActorKind,
        actor_id: str,
        data_categories: Sequence[str],
        data_use: str,
        recipient_id: str,
        recipient_kind: RecipientKind,
        recipient_country: str,
        encrypted: bool,
        safeguard: str | None = None,
        aggregated: bool = False,
        explicit_consent: bool = False,
        legal_basis: LegalBasis | None = None,
        *,
        event_id: str | None = None,
        time: datetime | None = None,
    ) -> str:
        data = {
            **_base(org, subject_id, subject_kind),
            "actor": {"kind": actor_kind, "id": actor_id},
            "data_categories": list(data_categories),
            "data_use": data_use,
            "legal_basis": legal_basis,
            "recipient": {"id": recipient_id, "kind": recipient_kind, "country": recipient_country},
            "transfer": {"encrypted": encrypted, "safeguard": safeguard},
            "aggregated": aggregated,
            "explicit_consent": explicit_consent,
        }
        return self._emit_new(EventType.DATA_SHARED, data, event_id, time)

    def consent_changed(
        self,
        org: str,
        subject_id: str,
        subject_kind: str,
        data_use: str,
        status: ConsentStatus,
        data_categories: Sequence[str] | None = None,
        *,
        event_id: str | None = None,
        time: datetime | None = None,
    ) -> str:
        """`status`: given, withdrawn or objected; `data_categories` limits an objection."""
        data = {
            **_base(org, subject_id, subject_kind),
            "data_use": data_use,
            "status": status,
            "data_categories": None if data_categories is None else list(data_categories),
        }
        return self._emit_new(EventType.CONSENT_CHANGED, data, event_id, time)

    def settings_changed(
        self,
        org: str,
        subject_id: str,
        subject_kind: str,
        *,
        profile_visible: bool | None = None,
        public_categories: Sequence[str] | None = None,
        auto_share_with_employers: bool | None = None,
        event_id: str | None = None,
        time: datetime | None = None,
    ) -> str:
        """Report the settings that changed (at least one)."""
        settings = {
            "profile_visible": profile_visible,
            "public_categories": None if public_categories is None else list(public_categories),
            "auto_share_with_employers": auto_share_with_employers,
        }
        data = {**_base(org, subject_id, subject_kind), "settings": settings}
        return self._emit_new(EventType.SETTINGS_CHANGED, data, event_id, time)

    def account_changed(
        self,
        org: str,
        subject_id: str,
        subject_kind: str,
        status: AccountStatus,
        *,
        event_id: str | None = None,
        time: datetime | None = None,
    ) -> str:
        """`status`: created, closed, reopened, or active (a last-activity marker)."""
        data = {**_base(org, subject_id, subject_kind), "status": status}
        return self._emit_new(EventType.ACCOUNT_CHANGED, data, event_id, time)

    def request_opened(
        self,
        org: str,
        subject_id: str,
        subject_kind: str,
        request_id: str,
        right: Right,
        *,
        event_id: str | None = None,
        time: datetime | None = None,
    ) -> str:
        data = {**_base(org, subject_id, subject_kind), "request_id": request_id, "right": right}
        return self._emit_new(EventType.REQUEST_OPENED, data, event_id, time)

    def request_fulfilled(
        self,
        org: str,
        subject_id: str,
        subject_kind: str,
        request_id: str,
        right: Right,
        *,
        event_id: str | None = None,
        time: datetime | None = None,
    ) -> str:
        data = {**_base(org, subject_id, subject_kind), "request_id": request_id, "right": right}
        return self._emit_new(EventType.REQUEST_FULFILLED, data, event_id, time)

    def legal_hold_changed(
        self,
        org: str,
        subject_id: str,
        subject_kind: str,
        status: HoldStatus,
        reason: str,
        *,
        event_id: str | None = None,
        time: datetime | None = None,
    ) -> str:
        """`status`: placed or released."""
        data = {**_base(org, subject_id, subject_kind), "status": status, "reason": reason}
        return self._emit_new(EventType.LEGAL_HOLD_CHANGED, data, event_id, time)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every event sent so far is delivered; raise if any was not.

        Without a `timeout` this waits at most about the delivery timeout: by then every event
        is either acknowledged or reported undelivered."""
        try:
            self._producer.flush(timeout=timeout)
        except KafkaTimeoutError as exc:
            raise EmitError(f"events still undelivered after {timeout} s") from exc
        self._raise_failures()

    def close(self, timeout: float | None = None) -> None:
        """Flush, then release the producer; raises like `flush` if anything was not delivered."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush(timeout)
        finally:
            self._producer.close(timeout=timeout)

    def _emit_new(
        self,
        event_type: EventType,
        data: Mapping[str, Any],
        event_id: str | None,
        time: datetime | None,
    ) -> str:
        event = build_event(event_type, source=self.source, data=data, event_id=event_id, time=time)
        return self.emit(event)

    def _send(self, key: bytes | None, value: bytes, *, label: str) -> None:
        if self._closed:
            raise EmitError(f"cannot send {label}: the emitter is closed")
        try:
            future = self._producer.send(self.topic, value=value, key=key, headers=list(_HEADERS))
        except KafkaError as exc:
            raise EmitError(f"Kafka refused {label}: {exc}") from exc
        future.add_errback(functools.partial(self._record_failure, label))

    def _record_failure(self, label: str, error: BaseException) -> None:
        # Runs on the producer's I/O thread.
        with self._lock:
            self._failures.append(DeliveryFailure(label, error))

    def _raise_failures(self) -> None:
        with self._lock:
            failures, self._failures = self._failures, []
        if not failures:
            return
        shown = "; ".join(str(f) for f in failures[:_MAX_REPORTED_FAILURES])
        more = len(failures) - _MAX_REPORTED_FAILURES
        suffix = f"; and {more} more" if more > 0 else ""
        raise EmitError(
            f"{len(failures)} message(s) not delivered: {shown}{suffix}", failures=failures
        )


def _kafka_producer(bootstrap: str, config: Mapping[str, Any]) -> Producer:
    try:
        producer: Producer = KafkaProducer(
            bootstrap_servers=bootstrap, **{**PRODUCER_DEFAULTS, **config}
        )
    except KafkaError as exc:
        raise EmitError(f"cannot reach Kafka at {bootstrap}: {type(exc).__name__}: {exc}") from exc
    return producer


def _base(org: str, subject_id: str, subject_kind: str) -> dict[str, Any]:
    return {"org": org, "subject": {"id": subject_id, "kind": subject_kind}}


def _to_json(envelope: Mapping[str, Any]) -> bytes:
    try:
        return json.dumps(envelope, default=_json_default).encode()
    except (TypeError, ValueError) as exc:
        raise EmitError(f"event is not JSON-serialisable ({exc})") from None


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} values are not JSON")
