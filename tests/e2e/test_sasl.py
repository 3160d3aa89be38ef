"""A SASL-secured Kafka end to end: the worker, the store writer and the emitter authenticate.

One broker of its own, whose client listener takes SASL_PLAINTEXT (PLAIN) only: a client that
forgot its credentials, or has the wrong ones, cannot reach the pipeline at all.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from config.settings import Settings
from events.emitter import Emitter
from events.producer import KafkaUnreachable
from privtrail.brokers import KafkaBroker
from privtrail.topics import ensure_topics
from tests.e2e.conftest import Pipeline, serving, unstarted_pipeline_settings
from tests.e2e.test_pipeline import emit_whatsapp_ads
from tests.support import free_port

pytestmark = pytest.mark.e2e
USER = "privtrail_svc"
PASSWORD = secrets.token_urlsafe(16)
# Far beyond the few seconds a refused login takes; only a client that hangs reaches it.
REFUSAL_BOUND_SECONDS = 60


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    data_dir = tmp_path_factory.mktemp("sasl-kafka")
    with KafkaBroker(free_port(), data_dir, sasl_users={USER: PASSWORD}) as broker:
        yield broker


def secured_settings(broker: KafkaBroker, tmp_path: Path, password: str) -> Settings:
    return unstarted_pipeline_settings(
        broker,
        tmp_path,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username=USER,
        kafka_sasl_password=SecretStr(password),
    )


@pytest.fixture
def sasl_pipeline(sasl_broker: KafkaBroker, tmp_path: Path) -> Iterator[Pipeline]:
    settings = secured_settings(sasl_broker, tmp_path, PASSWORD)
    ensure_topics(settings)
    with serving(settings) as running:
        yield running


def test_events_emitted_through_sasl_are_judged_and_stored(sasl_pipeline: Pipeline) -> None:
    settings = sasl_pipeline.settings
    with sasl_pipeline.worker():
        with Emitter(
            settings.bootstrap,
            source="/e2e/sasl",
            topic=settings.topics.events,
            **settings.kafka_security.kafka_python(),
        ) as emitter:
            ads = emit_whatsapp_ads(emitter)
        api = sasl_pipeline.api
        sasl_pipeline.wait_for(lambda: api.stats().events >= 3, "three stored events")
        found = sasl_pipeline.wait_for(api.violations, "the violation")
    assert [(v.rule_id, v.event_id) for v in found] == [("CX-WA-ADS-001", ads)]
    assert api.stats().events == 3


def test_an_emitter_with_a_wrong_password_is_refused_naming_authentication(
    sasl_broker: KafkaBroker,
) -> None:
    started = time.monotonic()
    with pytest.raises(KafkaUnreachable, match=r"(?i)authentication") as refused:
        Emitter(
            sasl_broker.bootstrap,
            source="/e2e/sasl",
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="PLAIN",
            sasl_plain_username=USER,
            sasl_plain_password="not-the-password",
        )
    assert time.monotonic() - started < REFUSAL_BOUND_SECONDS, refused.value
    assert "not-the-password" not in str(refused.value)


def test_privtrail_topics_with_a_wrong_password_fails_naming_authentication(
    sasl_broker: KafkaBroker, tmp_path: Path
) -> None:
    settings = secured_settings(sasl_broker, tmp_path, "not-the-password")
    done = subprocess.run(
        [sys.executable, "-m", "privtrail", "topics"],
        env={**os.environ, **settings.as_env()},
        capture_output=True,
        timeout=REFUSAL_BOUND_SECONDS,  # a hang fails here
        check=False,
    )
    said = " ".join(done.stderr.decode().split())
    assert done.returncode == 1, said
    assert "SASL authentication failed" in said
    assert "Invalid username or password" in said
    assert "not-the-password" not in said
