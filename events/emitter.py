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
outage shorter than that loses nothing and reports nothing. A broker that never answered is
another matter: `Emitter(...)` raises `KafkaUnreachable`, naming the address, within 3 s.

Partitioning: messages are keyed by subject id and MUST be partitioned with Kafka's default
murmur2 key hash (the Java client's and kafka-python's default). That is what keeps one subject's
events in order on one partition, and the worker's partitioned tables rely on the same placement.
Other clients default to other hashes; configure them to match, e.g. kcat / librdkafka
`-X partitioner=murmur2_random`, confluent-kafka `{"partitioner": "murmur2_random"}`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self

from kafka.errors import KafkaError, KafkaTimeoutError

from events.models import (
    CONTENT_TYPE,
    ActorKind,
    EventType,
    LegalBasis,
    PrivacyEvent,
    RecipientKind,
    Right,
)
from events.new_events import (
    build_event,
    check_source,
    encode_dict_event,
    encode_event,
    event_key,
    new_event,
    present,
    validate_event,
)
from events.producer import (
    DEFAULT_DELIVERY_TIMEOUT,
    FIXED_SETTINGS,
    PRODUCER_DEFAULTS,
    REQUEST_TIMEOUT_SECONDS,
    DeliveryFailure,
    EmitError,
    KafkaUnreachable,
    Producer,
    drop_send_record_logs,
    kafka_producer,
)

__all__ = [
    "DEFAULT_DELIVERY_TIMEOUT",
    "PRODUCER_DEFAULTS",
    "DeliveryFailure",
    "EmitError",
    "Emitter",
    "KafkaUnreachable",
    "build_event",
    "encode_event",
    "event_key",
    "validate_event",
]

ConsentStatus = Literal["given", "withdrawn", "objected"]
AccountStatus = Literal["created", "closed", "reopened", "active"]
HoldStatus = Literal["placed", "released"]

_HEADERS = [("content-type", CONTENT_TYPE.encode())]
_MAX_REPORTED_FAILURES = 5


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
        `KafkaProducer` and overrides the emitter's defaults; a secured cluster's options go
        there too (`security_protocol`, `sasl_mechanism`, `sasl_plain_username`,
        `sasl_plain_password`, `ssl_cafile`, `ssl_certfile`, `ssl_keyfile`). A `source` no
        event could carry raises `ValueError` naming it, here rather than at every send."""
        fixed = sorted(FIXED_SETTINGS & producer_config.keys())
        if fixed:
            raise ValueError(
                f"producer setting(s) {', '.join(fixed)} cannot be changed: the event contract "
                "needs raw bytes and Kafka's default murmur2 key partitioner"
            )
        if not source:
            raise ValueError("source must be the URI-reference of the emitting service")
        check_source(source)
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
        drop_send_record_logs()
        timeouts = {
            "delivery_timeout_ms": int(delivery_timeout * 1000),
            "request_timeout_ms": int(REQUEST_TIMEOUT_SECONDS * 1000),
        }
        self._producer: Producer = producer or kafka_producer(
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
            model, value = encode_dict_event(event)
        else:
            model, value = event, encode_event(event)
        self._send(event_key(model), value, label=model.id)
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
        self._send(key, value, label=label, raw=True)

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
            "transfer": present({"encrypted": encrypted, "safeguard": safeguard}),
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
        data = {**_base(org, subject_id, subject_kind), "settings": present(settings)}
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
        # The helpers' nested objects (transfer, settings) leave out their own nulls.
        new_id, key, value = new_event(
            event_type, self.source, present(data), event_id, time, source_checked=True
        )
        self._send(key, value, label=new_id)
        return new_id

    def _send(self, key: bytes | None, value: bytes, *, label: str, raw: bool = False) -> None:
        """`label`: the event id, or with `raw` what names the message in errors."""
        if self._closed:
            raise EmitError(f"cannot send {_name(label, raw)}: the emitter is closed")
        try:
            future = self._producer.send(self.topic, value=value, key=key, headers=list(_HEADERS))
        except KafkaError as exc:
            raise EmitError(f"Kafka refused {_name(label, raw)}: {exc}") from exc
        future.add_errback(self._record_failure, label, raw)

    def _record_failure(self, label: str, raw: bool, error: BaseException) -> None:
        # Runs on the producer's I/O thread.
        with self._lock:
            self._failures.append(DeliveryFailure(_name(label, raw), error))

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


def _base(org: str, subject_id: str, subject_kind: str) -> dict[str, Any]:
    return {"org": org, "subject": {"id": subject_id, "kind": subject_kind}}


def _name(label: str, raw: bool) -> str:
    # Built only for an error: a send costs no text of its own.
    return label if raw else f"event {label}"
