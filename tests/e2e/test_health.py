"""/health on a real broker and store process: events no worker judges make it degraded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from events.emitter import Emitter
from privtrail.api import Health
from tests.e2e.conftest import Pipeline

pytestmark = pytest.mark.e2e

STALL_SECONDS = 10.0
WAITING_EVENTS = 20


@pytest.fixture
def short_stall(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Read by the pipeline's settings, and handed on to its processes."""
    monkeypatch.setenv("PRIVTRAIL_HEALTH_STALL_SECONDS", str(STALL_SECONDS))
    yield


def emit_consents(pipeline: Pipeline, count: int) -> None:
    topic = pipeline.settings.topics.events
    with Emitter(pipeline.settings.bootstrap, source="/e2e/health", topic=topic) as emitter:
        for number in range(count):
            emitter.consent_changed(
                org="connectx",
                subject_id=f"cx-health-{number}",
                subject_kind="customer",
                data_use="marketing",
                status="given",
            )
        emitter.flush()


def degraded(health: Health) -> Health | None:
    return health if health.status == "degraded" else None


def drained(health: Health) -> Health | None:
    """Ok, with nothing left for the worker or the store: a lag within the threshold is ok."""
    worker, ingest = health.worker, health.ingest
    caught_up = worker is not None and worker.lag == 0 and ingest is not None and ingest.lag == 0
    return health if health.status == "ok" and caught_up else None


@pytest.mark.timeout(120)
def test_health_is_degraded_while_no_worker_judges_waiting_events_and_ok_once_drained(
    short_stall: None, pipeline: Pipeline
) -> None:
    assert pipeline.settings.health_stall_seconds == STALL_SECONDS
    emit_consents(pipeline, WAITING_EVENTS)

    waiting = pipeline.wait_for(
        lambda: degraded(pipeline.api.health()), "health to name the waiting events", 20
    )

    assert waiting.worker is not None
    assert (waiting.worker.lag, waiting.worker.members) == (WAITING_EVENTS, 0), waiting.reasons
    assert any(f"while {WAITING_EVENTS} events wait" in reason for reason in waiting.reasons)

    with pipeline.worker():
        done = pipeline.wait_for(
            lambda: drained(pipeline.api.health()), "health to be ok once drained", 60
        )

    assert done.reasons == []
    assert done.worker is not None
    assert done.worker.members is None or done.worker.members >= 1
