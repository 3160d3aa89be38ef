"""`privtrail up`: the embedded broker, a worker and the store/API, as supervised processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from kafka import KafkaConsumer

from config.settings import Settings
from events.outputs import Violation
from privtrail.brokers import EmbeddedBroker, embedded_broker, runnable_settings, tuned_settings
from privtrail.client import ApiClient, ApiError
from privtrail.processes import spawn, stop_process_group
from privtrail.topics import ensure_topics

# Faust drains its buffers on SIGTERM; give it time before SIGKILL.
STOP_GRACE_SECONDS = 15.0
IDLE_FETCH_WAIT_MS = 5000
# `privtrail up` asks /health this often: often enough to tell a stall promptly, rarely enough
# to cost an idle stack nothing.
HEALTH_POLL_SECONDS = 5.0
# The embedded broker listens on loopback only.
BROKER_HOST = "127.0.0.1"
LOG_TAIL_LINES = 5


class StackError(RuntimeError):
    """A process of the stack failed to start or died."""


class Stack:
    """Starts what `settings` does not point elsewhere, and stops all of it on exit.

    `say` receives one line for each thing a person starting the stack should know: which
    broker runs when the chosen one cannot, and how long the broker took to start.
    """

    def __init__(self, settings: Settings, say: Callable[[str], None] = print) -> None:
        self.say = say
        self.settings = tuned_settings(runnable_settings(settings, say))
        self.broker: EmbeddedBroker | None = None
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 60) -> None:
        busy = busy_ports(self.settings)
        if busy:
            raise StackError("; ".join(busy))
        if self.settings.kafka_bootstrap is None:
            self.broker = embedded_broker(
                self.settings.broker, self.settings.embedded_kafka_port, self.settings.data_dir
            )
            self.broker.start()
            self.say(
                f"{self.broker.name} broker ({self.broker.release()}) started in "
                f"{self.broker.startup_seconds:.1f} s"
            )
        ensure_topics(self.settings)
        env = {**os.environ, **self.settings.as_env()}
        for name in ("serve", "worker"):
            self._processes[name] = spawn(
                [sys.executable, "-m", "privtrail", name], self._log_path(name), env
            )
        self._wait_for_api(timeout)

    def stop(self) -> None:
        # The worker first, so the store gets its last outputs; the broker last.
        for name in ("worker", "serve"):
            process = self._processes.pop(name, None)
            if process is not None:
                stop_process_group(process, STOP_GRACE_SECONDS)
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def check_alive(self) -> None:
        for name, process in self._processes.items():
            if process.poll() is not None:
                log = self._log_path(name)
                raise StackError(
                    f"the {name} process exited with code {process.returncode}; the end of "
                    f"{log}:\n{log_tail(log)}"
                )

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap if self.broker else self.settings.bootstrap

    def _log_path(self, name: str) -> Path:
        return self.settings.data_dir / f"{name}.log"

    def _wait_for_api(self, timeout: float) -> None:
        client = ApiClient(self.settings.api_url)
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                client.health()
                return
            except ApiError:
                if time.monotonic() > deadline:
                    raise StackError(
                        f"the query API did not answer at {self.settings.api_url} within "
                        f"{timeout:.0f}s; see {self._log_path('serve')}"
                    ) from None
                time.sleep(0.3)


def busy_ports(settings: Settings) -> list[str]:
    """For each port the stack would listen on that something else holds: which, and the
    variable that moves it. The broker's controller port needs none: a free one is picked."""
    wanted = [("the query API", settings.api_host, settings.api_port, "api_port")]
    if settings.kafka_bootstrap is None:
        port = settings.embedded_kafka_port
        wanted.insert(0, ("the embedded broker", BROKER_HOST, port, "embedded_kafka_port"))
    prefix = settings.model_config.get("env_prefix", "")
    return [
        f"cannot start {what}: {host}:{port} is in use ({problem}); set {prefix}{field.upper()} "
        "to a free port"
        for what, host, port, field in wanted
        if (problem := _bind_problem(host, port)) is not None
    ]


def _bind_problem(host: str, port: int) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers themselves bind: a port left in TIME_WAIT is free to them.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            return error.strerror or str(error)
    return None


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace") as log:
            return "".join(deque(log, maxlen=lines)).rstrip() or "(empty)"
    except OSError as error:
        return f"(cannot read it: {error.strerror})"


@contextmanager
def violation_feed(
    settings: Settings, bootstrap: str, on_violation: Callable[[Violation], None]
) -> Iterator[None]:
    """Calls `on_violation` for each violation produced from now on, in a background thread."""
    stop = threading.Event()
    consumer = KafkaConsumer(
        settings.topics.violations,
        bootstrap_servers=bootstrap,
        auto_offset_reset="latest",
        enable_auto_commit=False,
        group_id=None,
        # A fetch returns as soon as a violation arrives; the wait only bounds how often an
        # idle feed asks. At the 500 ms default, its fetches alone cost Kafka 2% of a core.
        fetch_max_wait_ms=IDLE_FETCH_WAIT_MS,
        **settings.kafka_security.kafka_python(),
    )
    consumer.poll(timeout_ms=1000)  # joins and pins "latest" before we return

    def run() -> None:
        while not stop.is_set():
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    on_violation(Violation.model_validate_json(record.value))

    thread = threading.Thread(target=run, name="violation-feed", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        consumer.close()


class HealthWatch:
    """Polls the stack's /health, at most every `HEALTH_POLL_SECONDS`, for status changes."""

    def __init__(self, api: ApiClient, clock: Callable[[], float] = time.monotonic) -> None:
        self._api = api
        self._clock = clock
        self._next_poll = clock()
        self._degraded = False

    def poll(self) -> list[str] | None:
        """The reasons when the stack has just turned degraded, [] when it is ok again, and
        None when nothing changed (or it is not time to ask again yet)."""
        now = self._clock()
        if now < self._next_poll:
            return None
        self._next_poll = now + HEALTH_POLL_SECONDS
        reasons = self._reasons()
        if bool(reasons) == self._degraded:
            return None
        self._degraded = bool(reasons)
        return reasons

    def _reasons(self) -> list[str]:
        try:
            return self._api.health().reasons
        except ApiError as error:
            return [str(error)]
