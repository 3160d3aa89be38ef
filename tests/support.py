"""Helpers for tests that run real processes on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from config.settings import Settings, Topics
from privtrail.brokers import EmbeddedBroker, tuned_settings
from privtrail.client import ApiClient, ApiError
from privtrail.credentials import TOKEN_FILE
from privtrail.processes import spawn, stop_process_group

LOCALHOST = "127.0.0.1"
# Debian's chromium, which .ci/run installs, and the flags it needs to run headless here.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
STOP_TIMEOUT = 10.0
START_SECONDS = 60.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_process(
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `argv` (output appended to `log_path`), always stopped when the block exits."""
    process = spawn(argv, log_path, env, cwd)
    try:
        yield process
    finally:
        stop_process_group(process, STOP_TIMEOUT)


@contextmanager
def serving_without_broker(data_dir: Path) -> Iterator[str]:
    """`privtrail serve` on a free port over a fresh store in `data_dir`: its base URL, while
    it runs. Nothing listens at its broker address: the API answers while ingest waits."""
    port = free_port()
    env = {
        **os.environ,
        "PRIVTRAIL_DATA_DIR": str(data_dir),
        "PRIVTRAIL_API_PORT": str(port),
        "PRIVTRAIL_KAFKA_BOOTSTRAP": f"{LOCALHOST}:{free_port()}",
    }
    log = data_dir / "serve.log"
    with running_process([sys.executable, "-m", "privtrail", "serve"], log, env=env) as serve:
        url = f"http://{LOCALHOST}:{port}"
        wait_until_up(ApiClient(url), serve, log)
        yield url


def wait_until_up(api: ApiClient, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        assert process.poll() is None, f"serve exited early:\n{log_tail(log)}"
        try:
            api.health()
            return
        except ApiError:
            assert time.monotonic() < deadline, f"serve did not answer:\n{log_tail(log)}"
            time.sleep(0.2)


def zero_config_client(url: str, data_dir: Path) -> ApiClient:
    """A client of the API at `url` with the admin token that the store/API process writes to
    `data_dir` on loopback (`privtrail up`), or with none while it is not written yet."""
    path = data_dir / TOKEN_FILE
    return ApiClient(url, token=path.read_text().strip() if path.exists() else None)


def log_tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a process log, for assertion messages."""
    if not path.exists():
        return f"({path} does not exist)"
    with path.open(encoding="utf-8", errors="replace") as log:
        return "".join(deque(log, maxlen=lines))


def settings_for(broker: EmbeddedBroker, tmp_path: Path, partitions: int = 4) -> Settings:
    """Settings pointing at `broker`, with the broker's client tuning and a fresh `data_dir`.

    Topic names get a unique suffix so tests sharing one broker never see each other's data.
    """
    suffix = uuid.uuid4().hex[:8]
    topics = Topics(
        events=f"privacy.events.{suffix}",
        violations=f"privacy.violations.{suffix}",
        deadletter=f"privacy.deadletter.{suffix}",
        audit=f"privacy.audit.{suffix}",
        checkpoints=f"privacy.checkpoints.{suffix}",
    )
    settings = Settings.model_validate(
        {
            "data_dir": tmp_path,
            "kafka_bootstrap": None,
            "broker": broker.name,
            "embedded_kafka_port": broker.port,
            "partitions": partitions,
            "topics": topics,
        }
    )
    return tuned_settings(settings)
