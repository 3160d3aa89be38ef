"""Create privtrail's Kafka topics with the configured partition count, or check existing ones.

All topics share one partition count because Faust co-partitions its source topic with its table
changelogs: a subject's events and its state must live on the same partition number, and a
topic with a different count silently sends them to different workers.
"""

from __future__ import annotations

import time
from typing import Any

from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError

from config.settings import Settings
from events.producer import login_refusal

RETRY_SECONDS = 0.5
CONNECT_TIMEOUT_MS = 5000


class TopicError(RuntimeError):
    """privtrail's topics cannot be created, or exist with the wrong layout."""


def topic_names(settings: Settings) -> list[str]:
    topics = settings.topics
    return list(
        dict.fromkeys(
            [topics.events, topics.violations, topics.deadletter, topics.audit, topics.checkpoints]
        )
    )


def ensure_topics(settings: Settings, timeout: float = 30.0) -> None:
    """Create missing topics and verify every topic has `settings.partitions` partitions.

    Retries for up to `timeout` seconds while the broker is unreachable or answers with a
    retriable error (for example, it is still starting).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            _ensure_once(settings, deadline)
            return
        except KafkaError as error:
            # Retrying a refused login cannot help, and the timeout would hide why.
            security = settings.kafka_security.kafka_python()
            if refusal := login_refusal(settings.bootstrap, security):
                raise TopicError(
                    f"cannot set up topics on Kafka at {settings.bootstrap}: "
                    f"SASL authentication failed: {refusal}"
                ) from error
            if not error.retriable or time.monotonic() >= deadline:
                raise TopicError(
                    f"cannot set up topics on Kafka at {settings.bootstrap}: {error}"
                ) from error
        time.sleep(RETRY_SECONDS)


def _ensure_once(settings: Settings, deadline: float) -> None:
    names = topic_names(settings)
    with KafkaAdminClient(
        bootstrap_servers=settings.bootstrap,
        client_id="privtrail-topics",
        bootstrap_timeout_ms=min(CONNECT_TIMEOUT_MS, _remaining_ms(deadline)),
        **settings.kafka_security.kafka_python(),
    ) as admin:
        _create_missing(admin, names, settings)
        admin.wait_for_topics(names, timeout_ms=_remaining_ms(deadline))
        _check_partitions(admin, names, settings.partitions)


def _create_missing(admin: KafkaAdminClient, names: list[str], settings: Settings) -> None:
    existing = set(admin.list_topics())
    missing = [name for name in names if name not in existing]
    if not missing:
        return
    layout: dict[str, Any] = {
        "num_partitions": settings.partitions,
        "replication_factor": settings.replication_factor,
    }
    # The broker stamps each event with its own clock as it appends it, whatever the client
    # sent: `/stats/latency` measures the pipeline's lag from there.
    appended = {**layout, "configs": {"message.timestamp.type": "LogAppendTime"}}
    # Signed checkpoints are kept, not expired: compaction keeps each signing key's newest.
    compacted = {**layout, "configs": {"cleanup.policy": "compact"}}
    special = {settings.topics.events: appended, settings.topics.checkpoints: compacted}
    response = admin.create_topics(
        {name: special.get(name, layout) for name in missing}, raise_errors=False
    )
    for result in response["topics"]:
        _raise_for_create_error(result)


def _raise_for_create_error(result: dict[str, Any]) -> None:
    code = result["error_code"]
    # Another process created it between our listing and our request; its layout is checked next.
    if code in (0, TopicAlreadyExistsError.errno):
        return
    raise TopicError(
        f"cannot create topic {result['name']!r}: error {code} "
        f"({result.get('error_message') or 'no message from the broker'})"
    )


def _check_partitions(admin: KafkaAdminClient, names: list[str], expected: int) -> None:
    wrong = {
        topic["name"]: len(topic["partitions"])
        for topic in admin.describe_topics(names)
        if len(topic["partitions"]) != expected
    }
    if wrong:
        found = ", ".join(f"{name!r} has {count}" for name, count in sorted(wrong.items()))
        raise TopicError(
            f"topics must all have {expected} partitions (PRIVTRAIL_PARTITIONS) because the "
            f"worker's tables are co-partitioned with them, but {found}; recreate those topics "
            f"or set PRIVTRAIL_PARTITIONS to match"
        )


def _remaining_ms(deadline: float) -> int:
    # At least a short window, so the last attempt before the deadline can still succeed.
    return max(500, int((deadline - time.monotonic()) * 1000))
