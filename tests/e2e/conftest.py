"""The real pipeline for end-to-end tests: workers and the store/API process on a real broker."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from pydantic import SecretStr

from config.settings import Settings
from privtrail.brokers import EmbeddedBroker
from privtrail.client import ApiClient, ApiError
from privtrail.credentials import api_client
from privtrail.topics import ensure_topics
from tests.support import free_port, log_tail, running_process, settings_for

T = TypeVar("T")
# The store has settled once a count stays the same this long.
QUIET_SECONDS = 3.0


@dataclass
class Pipeline:
    """A running store/API process, plus the workers a test starts and stops."""

    settings: Settings
    api: ApiClient
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @contextmanager
    def worker(self, name: str = "worker") -> Iterator[subprocess.Popen[bytes]]:
        with running_process(
            [sys.executable, "-m", "privtrail", "worker"],
            self.settings.data_dir / f"{name}.log",
            env=self.settings.as_env(),
        ) as process:
            self.processes.append(process)
            try:
                yield process
            finally:
                self.processes.remove(process)

    def wait_for(self, probe: Callable[[], T | None], what: str, timeout: float = 90) -> T:
        """Poll `probe` until it returns something truthy; fail, with the process logs, after
        `timeout` seconds or as soon as a pipeline process has died."""
        deadline = time.monotonic() + timeout
        while True:
            result = probe()
            if result:
                return result
            if any(process.poll() is not None for process in self.processes):
                pytest.fail(f"a pipeline process died waiting for {what}\n{self.logs()}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{self.logs()}")
            time.sleep(0.5)

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{log_tail(path)}"
            for path in sorted(self.settings.data_dir.glob("*.log"))
        )


def unstarted_pipeline_settings(
    broker: EmbeddedBroker, tmp_path: Path, **overrides: object
) -> Settings:
    """Settings of a pipeline on `broker` (which may not be running yet), with an admin API
    token that the store/API process registers as it starts (PRIVTRAIL_API_TOKEN) and the
    test's client sends from the start."""
    return settings_for(broker, tmp_path).model_copy(
        update={
            "kafka_bootstrap": broker.bootstrap,
            "api_port": free_port(),
            "app_id": f"privtrail-{uuid.uuid4().hex[:8]}",
            "api_token": SecretStr(f"ptk_{secrets.token_urlsafe(32)}"),
            **overrides,
        }
    )


def pipeline_settings(broker: EmbeddedBroker, tmp_path: Path) -> Settings:
    """`unstarted_pipeline_settings` on a running broker, with the pipeline's topics made."""
    settings = unstarted_pipeline_settings(broker, tmp_path)
    ensure_topics(settings)
    return settings


@pytest.fixture
def pipeline(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[Pipeline]:
    """The store-owning API process on the parametrized broker; workers are up to the test."""
    with serving(pipeline_settings(broker, tmp_path)) as running:
        yield running


@contextmanager
def serving(settings: Settings) -> Iterator[Pipeline]:
    """`privtrail serve` with `settings`, once its API answers; workers are up to the caller."""
    log = settings.data_dir / "serve.log"
    with running_process(
        [sys.executable, "-m", "privtrail", "serve"], log, env=settings.as_env()
    ) as serve:
        running = Pipeline(settings, api_client(settings), [serve])
        running.wait_for(lambda: _healthy(running.api), "the query API", timeout=60)
        yield running


def ingest_drained(api: ApiClient) -> bool:
    """Whether the store's ingest has read its topics to the end and written what it read.

    Events and violations are separate inserts: a store killed between the two leaves every
    event stored, and its successor writes the violations only once the group hands it the
    topics, after the dead member's session times out. The lag counts the partitions whose
    position is known: use it once the group has committed offsets (a fresh group's partitions
    get theirs one by one)."""
    ingest = api.health().ingest
    return ingest is not None and ingest.lag == 0 and ingest.pending_rows == 0


def _healthy(api: ApiClient) -> bool:
    try:
        api.health()
        return True
    except ApiError:
        return False


def settled(count: Callable[[], int]) -> Callable[[], int | None]:
    """A probe that answers the count once it has not changed for QUIET_SECONDS."""
    last: list[tuple[int, float]] = []

    def probe() -> int | None:
        now, current = time.monotonic(), count()
        if not last or last[0][0] != current:
            last[:] = [(current, now)]
            return None
        return current if now - last[0][1] >= QUIET_SECONDS else None

    return probe
