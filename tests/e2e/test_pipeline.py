"""End to end on the real broker and the real chDB engine: emit, judge, store, query."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from kafka import KafkaProducer

from events.emitter import Emitter
from tests.e2e.conftest import Pipeline

pytestmark = pytest.mark.e2e
T = TypeVar("T")
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def at_least(count: int, found: list[T]) -> list[T]:
    return found if len(found) >= count else []


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def raw_event(event_type: str, subject: str, org: str, **data: Any) -> dict[str, Any]:
    """A CloudEvent as a team with its own Kafka client would write it."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": f"/{org}/other-team",
        "type": event_type,
        "time": at(30).isoformat(),
        "datacontenttype": "application/json",
        "data": {"org": org, "subject": {"id": subject, "kind": "customer"}, **data},
    }


@pytest.fixture
def producer(pipeline: Pipeline) -> Iterator[KafkaProducer]:
    producer = KafkaProducer(bootstrap_servers=pipeline.settings.bootstrap)
    yield producer
    producer.close()


def emit_whatsapp_ads(emitter: Emitter) -> str:
    """connectx's cx-1 consents to marketing; then its WhatsApp messages are read for targeted
    ads (CX-WA-ADS-001's violation, whose event id this returns) and for the inbox (compliant)."""
    emitter.consent_changed(
        org="connectx",
        subject_id="cx-1",
        subject_kind="customer",
        data_use="marketing",
        status="given",
        time=at(0),
    )
    ads = emitter.data_accessed(
        org="connectx",
        subject_id="cx-1",
        subject_kind="customer",
        actor_kind="service",
        actor_id="ads-ranker",
        data_categories=["user.content.private.whatsapp_message"],
        data_use="marketing.advertising.first_party.targeted",
        time=at(1),
    )
    emitter.data_accessed(
        org="connectx",
        subject_id="cx-1",
        subject_kind="customer",
        actor_kind="service",
        actor_id="inbox",
        data_categories=["user.content.private"],
        data_use="essential.service",
        time=at(2),
    )
    return ads


def emit_mixed_traffic(pipeline: Pipeline, producer: KafkaProducer) -> dict[str, str]:
    """Good, violating, duplicated and malformed events, through the SDK and a raw producer."""
    topic = pipeline.settings.topics.events
    ids: dict[str, str] = {}
    with Emitter(pipeline.settings.bootstrap, source="/e2e", topic=topic) as emitter:
        ids["ads"] = emit_whatsapp_ads(emitter)
        # A consent that makes everything below compliant but for the rule under test.
        emitter.consent_changed(
            org="xpertaize",
            subject_id="xa-1",
            subject_kind="job_applicant",
            data_use="employment.recruitment",
            status="given",
            time=at(0),
        )
        emitter.settings_changed(
            org="xpertaize",
            subject_id="xa-1",
            subject_kind="job_applicant",
            auto_share_with_employers=False,
            time=at(3),
        )
        ids["employer"] = emitter.shared(
            org="xpertaize",
            subject_id="xa-1",
            subject_kind="job_applicant",
            actor_kind="service",
            actor_id="matcher",
            data_categories=["user.name"],
            data_use="employment.recruitment",
            legal_basis="consent",
            recipient_id="acme-hr",
            recipient_kind="employer",
            recipient_country="MA",
            encrypted=True,
            time=at(4),
        )
        # Same subject, same kind of share, but explicitly approved by the subject: compliant.
        emitter.shared(
            org="xpertaize",
            subject_id="xa-1",
            subject_kind="job_applicant",
            actor_kind="service",
            actor_id="matcher",
            data_categories=["user.name"],
            data_use="employment.recruitment",
            legal_basis="consent",
            recipient_id="beta-hr",
            recipient_kind="employer",
            recipient_country="MA",
            encrypted=True,
            explicit_consent=True,
            time=at(5),
        )
        emitter.flush()
    duplicate = raw_event(
        "privacy.data.accessed",
        "cx-2",
        "connectx",
        actor={"kind": "employee", "id": "agent-7"},
        data_categories=["user.contact.email"],
        data_use="essential.service.operations.support",
    )
    ids["duplicate"] = duplicate["id"]
    malformed = [
        (b"cx-3", b'{"specversion": "1.0", "id": '),
        (b"cx-3", json.dumps(raw_event("privacy.data.sold", "cx-3", "connectx")).encode()),
        (
            b"cx-3",
            json.dumps(
                raw_event(
                    "privacy.data.accessed",
                    "cx-3",
                    "connectx",
                    actor={"kind": "service", "id": "x"},
                    data_categories=["user.telepathy"],
                    data_use="essential.service",
                )
            ).encode(),
        ),
        (
            b"cx-3",
            json.dumps(
                raw_event(
                    "privacy.account.changed",
                    "cx-3",
                    "connectx",
                    status=True,
                )
            ).encode(),
        ),
    ]
    for _ in range(2):
        producer.send(topic, key=b"cx-2", value=json.dumps(duplicate).encode())
    for key, value in malformed:
        producer.send(topic, key=key, value=value)
    producer.flush()
    return ids


def test_violations_lineage_and_rejections_reach_the_query_api(
    pipeline: Pipeline, producer: KafkaProducer
) -> None:
    with pipeline.worker():
        ids = emit_mixed_traffic(pipeline, producer)
        found = pipeline.wait_for(
            lambda: at_least(2, pipeline.api.violations(limit=50)), "two violations"
        )
        rejected = pipeline.wait_for(
            lambda: at_least(4, pipeline.api.rejected(limit=50)), "four rejected inputs"
        )
        stats = pipeline.wait_for(
            lambda: (s := pipeline.api.stats()).events >= 8 and s, "eight stored events"
        )
        found = pipeline.api.violations(limit=50)
    by_rule = {v.rule_id: v for v in found}
    assert sorted(by_rule) == ["CX-WA-ADS-001", "XA-EMP-001"], pipeline.logs()
    assert len(found) == 2
    assert by_rule["CX-WA-ADS-001"].event_id == ids["ads"]
    assert by_rule["XA-EMP-001"].event_id == ids["employer"]
    assert "WhatsApp" in by_rule["CX-WA-ADS-001"].explanation
    assert by_rule["XA-EMP-001"].recipient == "employer:acme-hr"

    reasons = {r.field: r.reason for r in rejected}
    assert "" in reasons and "JSON" in reasons[""]
    assert "unknown event type" in reasons["type"]
    assert "user.telepathy" in reasons["data.data_categories[0]"]
    assert "data.status" in reasons

    assert stats.events == 8, "the duplicated event must be stored once"
    latency = pipeline.api.latency()
    assert latency.pipeline_events == 8, "the broker stamps every event it appends"
    assert latency.pipeline_max_ms is not None and latency.pipeline_max_ms >= 0

    lineage = pipeline.api.lineage("xa-1", "xpertaize")
    shares = [e for e in lineage.edges if e.action == "shared"]
    assert {e.recipient_id for e in shares} == {"acme-hr", "beta-hr"}
    assert all(e.data_category == "user.name" and e.policy_version for e in shares)
    assert "xa-1" not in lineage.model_dump_json()

    only = pipeline.api.violations(org="connectx", rule="CX-WA-ADS-001", limit=10)
    assert [v.event_id for v in only] == [ids["ads"]]
    assert not pipeline.api.violations(org="linkxup", limit=10)


def test_a_restarted_worker_recovers_subject_state(pipeline: Pipeline) -> None:
    """Settings folded before a restart still govern the shares judged after it."""
    topic = pipeline.settings.topics.events
    with Emitter(pipeline.settings.bootstrap, source="/e2e", topic=topic) as emitter:
        with pipeline.worker("worker-1"):
            emitter.settings_changed(
                org="xpertaize",
                subject_id="xa-9",
                subject_kind="job_applicant",
                auto_share_with_employers=False,
                time=at(1),
            )
            emitter.flush()
            pipeline.wait_for(lambda: pipeline.api.stats().events >= 1, "the settings change")
        with pipeline.worker("worker-2"):
            share = emitter.shared(
                org="xpertaize",
                subject_id="xa-9",
                subject_kind="job_applicant",
                actor_kind="service",
                actor_id="matcher",
                data_categories=["user.name"],
                data_use="employment.recruitment",
                legal_basis="consent",
                recipient_id="acme-hr",
                recipient_kind="employer",
                recipient_country="MA",
                encrypted=True,
                time=at(2),
            )
            emitter.flush()
            found = pipeline.wait_for(
                lambda: pipeline.api.violations(rule="XA-EMP-001", limit=5), "XA-EMP-001", 120
            )
    assert [v.event_id for v in found] == [share], pipeline.logs()
