"""The emitter on a real broker that goes away: `flush()` names every event it did not deliver,
whichever way the event was sent (a typed helper or a dict)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from events.emitter import EmitError, Emitter
from events.producer import REQUEST_TIMEOUT_SECONDS
from privtrail.brokers import embedded_broker
from tests.support import free_port

pytestmark = pytest.mark.e2e

TOPIC = "privacy.events"
# The shortest the emitter allows: one request's timeout plus the linger.
DELIVERY_TIMEOUT = REQUEST_TIMEOUT_SECONDS + 1


def access(emitter: Emitter, subject: str) -> str:
    return emitter.data_accessed(
        "linkxup",
        subject,
        "customer",
        actor_kind="service",
        actor_id="ads-ranker",
        data_categories=["user.behavior.browsing_history"],
        data_use="marketing.advertising.first_party.targeted",
    )


def account(subject: str) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": f"dict-{subject}",
        "source": "/linkxup/accounts",
        "type": "privacy.account.changed",
        "time": "2026-03-01T12:30:00Z",
        "data": {
            "org": "linkxup",
            "subject": {"id": subject, "kind": "customer"},
            "status": "active",
        },
    }


@pytest.mark.timeout(300)
def test_flush_names_every_event_a_stopped_broker_never_got(tmp_path: Path) -> None:
    broker = embedded_broker("kafka", free_port(), tmp_path / "kafka")
    broker.start()
    try:
        with KafkaAdminClient(bootstrap_servers=broker.bootstrap) as admin:
            admin.create_topics([NewTopic(TOPIC, 2, 1)])
        emitter = Emitter(
            broker.bootstrap, source="/linkxup/ads", delivery_timeout=DELIVERY_TIMEOUT
        )
        access(emitter, "lxm_before")
        emitter.flush()  # delivered: the broker is up

        broker.stop()
        lost = [access(emitter, f"lxm_{n}") for n in range(3)]
        lost += [emitter.emit(account(f"lxm_{n}")) for n in range(2)]
        with pytest.raises(EmitError) as error:
            emitter.flush()

        assert sorted(f.message for f in error.value.failures) == sorted(
            f"event {event_id}" for event_id in lost
        )
        assert f"{len(lost)} message(s) not delivered" in str(error.value)
        emitter.close()  # everything was reported once: nothing left to raise
    finally:
        broker.stop()
