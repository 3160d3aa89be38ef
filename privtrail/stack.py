"""`privtrail up`: the embedded broker, a worker and the store/API, as supervised processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import TracebackType

from kafka import KafkaConsumer

from events.outputs import Violation
from privtrail.broker import EmbeddedBroker, embedded_broker
from privtrail.client import ApiClient, ApiError
from privtrail.settings import Settings
from privtrail.topics import ensure_topics


class StackError(RuntimeError):
    """A process of the stack failed to start or died."""


class Stack:
    """Starts what `settings` does not point elsewhere, and stops all of it on exit."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker: EmbeddedBroker | None = None
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._exit = ExitStack()

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
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        env = self._child_env()
        if self.settings.kafka_bootstrap is None:
            self.broker = embedded_broker(
                self.settings.broker, self.settings.embedded_kafka_port, self.settings.data_dir
            )
            self.broker.start()
            env.update(_tuning_env(self.broker))
            env["PRIVTRAIL_KAFKA_BOOTSTRAP"] = self.broker.bootstrap
        ensure_topics(self.settings.model_copy(update={"kafka_bootstrap": self.bootstrap}))
        self._spawn("serve", env)
        self._spawn("worker", env)
        self._wait_for_api(timeout)

    def stop(self) -> None:
        for name in ("worker", "serve"):
            process = self._processes.pop(name, None)
            if process is not None:
                _terminate(process)
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        self._exit.close()

    def check_alive(self) -> None:
        for name, process in self._processes.items():
            if process.poll() is not None:
                raise StackError(
                    f"the {name} process exited with code {process.returncode}; "
                    f"see {self._log_path(name)}"
                )

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap if self.broker else self.settings.bootstrap

    def _child_env(self) -> dict[str, str]:
        return {**os.environ, **self.settings.as_env()}

    def _spawn(self, name: str, env: dict[str, str]) -> None:
        log = self._exit.enter_context(self._log_path(name).open("ab"))
        self._processes[name] = subprocess.Popen(
            [sys.executable, "-m", "privtrail", name],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the stack, which stops children in order
        )

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


def _tuning_env(broker: EmbeddedBroker) -> dict[str, str]:
    return {f"PRIVTRAIL_{name.upper()}": str(value) for name, value in broker.client_tuning.items()}


def _terminate(process: subprocess.Popen[bytes], grace: float = 15) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


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
