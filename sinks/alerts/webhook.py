"""Webhook alerts: each batch of stored violations POSTed as JSON to `settings.webhook_url`.

Delivery runs in its own thread so a slow or unreachable endpoint never holds up the ingest
loop. A batch that still fails after the retries, or that finds the queue full, is appended to
`<data_dir>/alerts.deadletter.jsonl` with the error, so no alert is dropped silently.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx

from config.settings import Settings
from events.outputs import Violation
from sinks.alerts.base import AlertSink, register_alert_sink

DEADLETTER_FILE = "alerts.deadletter.jsonl"
CLOSE_TIMEOUT_SECONDS = 30.0

log = logging.getLogger(__name__)


class WebhookAlertSink(AlertSink):
    def __init__(
        self,
        url: str,
        deadletter_path: Path,
        *,
        attempts: int = 4,
        backoff: float = 0.5,
        timeout: float = 5.0,
        queue_size: int = 1000,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {attempts}")
        self.url = url
        self.deadletter_path = deadletter_path
        self.attempts = attempts
        self.backoff = backoff
        self._client = httpx.Client(timeout=timeout, transport=transport)
        self._queue: queue.Queue[list[Violation] | None] = queue.Queue(maxsize=queue_size)
        self._closing = threading.Event()
        self._file_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="privtrail-webhook", daemon=True)
        self._thread.start()

    def send(self, violations: Sequence[Violation]) -> None:
        if not violations:
            return
        batch = list(violations)
        try:
            self._queue.put_nowait(batch)
        except queue.Full:
            self._set_aside(batch, "alert queue full: the webhook is not keeping up")

    def close(self) -> None:
        """Deliver what is queued; what fails while closing goes to the dead-letter file."""
        self._closing.set()
        self._queue.put(None)
        self._thread.join(CLOSE_TIMEOUT_SECONDS)
        if self._thread.is_alive():
            log.error("webhook delivery still running after %.0f s", CLOSE_TIMEOUT_SECONDS)
        self._client.close()

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            error = self._deliver(batch)
            if error is None:
                continue
            self._set_aside(batch, error)
            if self._closing.is_set():
                # The endpoint is failing and we are shutting down: don't make every queued
                # batch wait out its retries.
                self._set_aside_queued(error)
                return

    def _deliver(self, batch: list[Violation]) -> str | None:
        """None once the endpoint accepted the batch, else the last error."""
        payload = {"violations": [v.model_dump(mode="json") for v in batch]}
        error = "not attempted"
        for attempt in range(self.attempts):
            try:
                response = self._client.post(self.url, json=payload)
                response.raise_for_status()
            except httpx.HTTPStatusError as failure:
                error = f"webhook answered HTTP {failure.response.status_code}"
            except httpx.HTTPError as failure:
                # Not str(failure) alone: some messages embed the URL, which may hold a token.
                error = f"{type(failure).__name__}: {failure}".replace(self.url, "<webhook>")
            else:
                return None
            if attempt + 1 < self.attempts:
                self._closing.wait(self.backoff * 2**attempt)
        return error

    def _set_aside_queued(self, error: str) -> None:
        while True:
            try:
                batch = self._queue.get_nowait()
            except queue.Empty:
                return
            if batch is not None:
                self._set_aside(batch, error)

    def _set_aside(self, batch: list[Violation], error: str) -> None:
        line = {
            "failed_at": datetime.now(UTC).isoformat(),
            "error": error,
            "violations": [v.model_dump(mode="json") for v in batch],
        }
        log.error(
            "%d violation alert(s) not delivered (%s); kept in %s",
            len(batch),
            error,
            self.deadletter_path,
        )
        with self._file_lock:
            self.deadletter_path.parent.mkdir(parents=True, exist_ok=True)
            with self.deadletter_path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(line) + "\n")


@register_alert_sink("webhook")
def webhook_from_settings(settings: Settings) -> AlertSink | None:
    if not settings.webhook_url:
        return None
    return WebhookAlertSink(settings.webhook_url, settings.data_dir / DEADLETTER_FILE)
