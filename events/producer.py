"""The Kafka producer under the emitter SDK: its settings, its partitioner, and its errors."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kafka import KafkaProducer
from kafka.cluster import ClusterMetadata
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.partitioner import DefaultPartitioner
from kafka.partitioner.default import murmur2

# As Kafka's Java clients (`delivery.timeout.ms`): how long a sent event may take to be
# acknowledged, retries included, before `flush()` reports it undelivered. It rides through a
# broker outage shorter than this.
DEFAULT_DELIVERY_TIMEOUT = 120.0
# How long one produce request may wait for its answer; a delivery timeout is at least this.
REQUEST_TIMEOUT_SECONDS = 30.0
# How long a new emitter waits for a first broker to answer. A broker that answered once and
# goes away is ridden through until the delivery timeout; one that never answered is most
# likely a wrong address, which the caller should hear about at once, not after kafka-python's
# 30 s: `privtrail emit` with a wrong address then fails within 5 s, start-up included.
BOOTSTRAP_TIMEOUT_SECONDS = 3.0
# How long asking a broker why it refused a SASL login may take.
LOGIN_PROBE_MS = 4000

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
    # Throughput (bench/README.md, emitter.py): records of many calls share one request.
    "linger_ms": 20,
    "batch_size": 256 * 1024,
    "bootstrap_timeout_ms": int(BOOTSTRAP_TIMEOUT_SECONDS * 1000),
}
# lz4 shrinks a batch of demo events to 22% of its size, for the fewest events/s of the codecs
# (bench/README.md, emitter.py): worth it where the bytes cross a network, not to a broker on
# this machine, where nothing is saved and the CPU is shared with the broker.
REMOTE_COMPRESSION = "lz4"
# Settings the wire contract depends on: bytes in, bytes out, murmur2 key partitioning.
FIXED_SETTINGS = frozenset({"partitioner", "key_serializer", "value_serializer"})


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


class KafkaUnreachable(EmitError):
    """No broker at the bootstrap address answered when the emitter started."""

    def __init__(self, bootstrap: str, message: str) -> None:
        super().__init__(f"cannot reach Kafka at {bootstrap}: {message}")
        self.bootstrap = bootstrap


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


# A service sends many events about each subject: its key's hash is worth remembering.
_key_hash = functools.lru_cache(maxsize=2**16)(murmur2)


class KeyHashPartitioner(DefaultPartitioner):  # type: ignore[misc]
    """kafka-python's default partitioner (murmur2, as Kafka's Java client), with each key's
    pure-Python hash computed once: the same partition for every key, at a fraction of a send's
    cost instead of a sizeable share of it."""

    def partition(
        self,
        topic: str,
        key: object,
        serialized_key: bytes | None,
        value: object,
        serialized_value: bytes | None,
        cluster: ClusterMetadata,
    ) -> int:
        if serialized_key is None:
            chosen: int = super().partition(
                topic, key, serialized_key, value, serialized_value, cluster
            )
            return chosen
        partitions: list[int] = sorted(cluster.partitions_for_topic(topic))
        hashed: int = _key_hash(serialized_key)
        return partitions[(hashed & 0x7FFFFFFF) % len(partitions)]


def is_loopback(bootstrap: str) -> bool:
    """Whether every broker address in `bootstrap` (comma-separated host:port) is this machine."""
    return all(_is_loopback_host(address) for address in bootstrap.split(","))


def _is_loopback_host(address: str) -> bool:
    host = address.strip().rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: most likely another machine's


class _DropSendRecords(logging.Filter):
    # kafka-python logs every record's key and value at DEBUG; both carry the subject id.
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("%s: Sending (key=")


_SEND_LOG_FILTER = _DropSendRecords()


def drop_send_record_logs() -> None:
    """Keep kafka-python's per-record DEBUG lines, which carry subject ids, out of the logs."""
    logging.getLogger("kafka.producer.kafka").addFilter(_SEND_LOG_FILTER)


def login_refusal(bootstrap: str, config: Mapping[str, Any]) -> str | None:
    """Why the first broker of `bootstrap` refuses the SASL login in `config` (kafka-python
    options); None if it accepts it, cannot be asked, or no SASL is configured.

    For after a bootstrap timed out: kafka-python drops the broker's refusal when the
    connection closes right behind it, and times out without a cause; aiokafka reads it."""
    if not str(config.get("security_protocol", "")).startswith("SASL_"):
        return None
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        return asyncio.run(_login_refusal(host.strip("[]"), int(port), config))
    except (RuntimeError, ValueError):  # inside a running event loop, or no port
        return None


async def _login_refusal(host: str, port: int, config: Mapping[str, Any]) -> str | None:
    # Imported here: only a SASL bootstrap that failed asks, and every emitter (each service's
    # SDK, `privtrail emit`) would otherwise load aiokafka to send its first event.
    from aiokafka.conn import create_conn
    from aiokafka.errors import SaslAuthenticationFailed
    from aiokafka.helpers import create_ssl_context

    ssl_context = None
    if config["security_protocol"] == "SASL_SSL":
        files = {name: config.get(f"ssl_{name}") for name in ("cafile", "certfile", "keyfile")}
        ssl_context = create_ssl_context(**files)
    try:
        connection = await asyncio.wait_for(
            create_conn(
                host,
                port,
                request_timeout_ms=LOGIN_PROBE_MS,
                security_protocol=config["security_protocol"],
                sasl_mechanism=config.get("sasl_mechanism", "PLAIN"),
                sasl_plain_username=config.get("sasl_plain_username"),
                sasl_plain_password=config.get("sasl_plain_password"),
                ssl_context=ssl_context,
            ),
            LOGIN_PROBE_MS / 1000,
        )
    except SaslAuthenticationFailed as error:
        return str(error)
    except Exception:
        return None  # not a refused login: the caller's own error stands
    connection.close()
    return None


def kafka_producer(bootstrap: str, config: Mapping[str, Any]) -> Producer:
    """A kafka-python producer with the emitter's defaults, `config` overriding them; raises
    `KafkaUnreachable` if no broker answers within the bootstrap timeout."""
    settings = {
        **PRODUCER_DEFAULTS,
        "compression_type": None if is_loopback(bootstrap) else REMOTE_COMPRESSION,
        **config,
        "partitioner": KeyHashPartitioner(),
    }
    try:
        producer: Producer = KafkaProducer(bootstrap_servers=bootstrap, **settings)
    except KafkaTimeoutError:
        if refusal := login_refusal(bootstrap, settings):
            raise KafkaUnreachable(bootstrap, f"SASL authentication failed: {refusal}") from None
        waited = settings["bootstrap_timeout_ms"] / 1000
        raise KafkaUnreachable(
            bootstrap, f"no broker answered within {waited:g} s (is the address right?)"
        ) from None
    except KafkaError as exc:
        raise KafkaUnreachable(bootstrap, f"{type(exc).__name__}: {exc}") from exc
    return producer
