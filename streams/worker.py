"""Entry point of a worker process: load the policies, build the app, run it until stopped.

A worker may start before its broker, or before its topics exist (a broker still starting, a
cluster coming up beside it): it waits for both, saying what it waits for, instead of exiting.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

import faust
from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError

from config.settings import Settings
from streams.app import create_app
from streams.rules.policy import load_policy_set

log = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 10.0
PROBE_TIMEOUT_MS = 5000
# CPython's defaults (700, 10, 10) run a full collection every few batches, each walking every
# object the process holds, the subject table included; with these, young collections are rarer
# and full ones wait for 100 of the middle generation's (bench/README.md, judge.py).
GC_THRESHOLDS = (10_000, 50, 100)


def run_worker(settings: Settings) -> None:
    policy = load_policy_set(settings.policies_dir)
    app = create_app(settings, policy)
    tune_gc()
    worker = PatientWorker(settings, app, loglevel=settings.log_level.upper(), quiet=True)
    worker.execute_from_commandline()


def tune_gc() -> None:
    """Collect less often, and never walk what is loaded at start-up: it lives as long as the
    process (modules, models, the policy)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class PatientWorker(faust.Worker):
    """A Faust worker that waits for its broker and topics before starting its app."""

    def __init__(self, settings: Settings, app: faust.App, **options: Any) -> None:
        super().__init__(app, **options)
        self.settings = settings

    async def on_first_start(self) -> None:
        # Logging and signal handlers are set up by now, and no Kafka client has started yet.
        await super().on_first_start()
        delay = FIRST_RETRY_SECONDS
        while not self.should_stop and (waiting_for := await missing(self.settings)):
            log.warning("waiting for %s; trying again in %.1f s", waiting_for, delay)
            await self.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)


async def missing(settings: Settings) -> str | None:
    """What the worker needs from Kafka and cannot have yet: the broker, or some topics."""
    client = AIOKafkaClient(
        bootstrap_servers=settings.bootstrap,
        client_id=f"{settings.app_id}-startup-probe",
        request_timeout_ms=PROBE_TIMEOUT_MS,
        **settings.kafka_security.aiokafka(),
    )
    try:
        await client.bootstrap()
        existing = (await client.fetch_all_metadata()).topics()
    except KafkaError as error:
        return f"Kafka at {settings.bootstrap} ({error})"
    finally:
        await client.close()
    absent = [name for name in settings.topics.model_dump().values() if name not in existing]
    if absent:
        names = ", ".join(absent)
        return f"topics {names} on {settings.bootstrap} (`privtrail topics` creates them)"
    return None
