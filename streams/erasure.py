"""The worker's side of erasure: which pseudonym a subject is judged under, and which judged
events shred a subject's key (events/pseudonyms.py holds the keys themselves)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from config.settings import Settings
from events.models import EventType
from events.outputs import AuditRecord
from events.tags import pseudonymise
from streams.history import SubjectHistory


class Pseudonyms(Protocol):
    def resolve(self, org: str, subject_id: str, partition: int) -> tuple[str, datetime | None]:
        """The subject's pseudonym, and the day it was last erased (None: never)."""


class DeploymentKeyed:
    """Pseudonyms under the deployment's key alone: nothing can be erased. For judging in
    memory (tests, benchmarks), where no key table exists."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def resolve(self, org: str, subject_id: str, partition: int) -> tuple[str, datetime | None]:
        return pseudonymise(self._key, org, subject_id), None


def start_history(org: str, subject_kind: str, erased_at: datetime | None) -> SubjectHistory:
    """A new subject's history; one seen again after its erasure starts out erased, so that
    processing its data again breaks the rules about erased subjects."""
    history = SubjectHistory.start(org, subject_kind)
    history.base.erased_at = history.state.erased_at = erased_at
    return history


def erasures(audit: Iterable[AuditRecord]) -> list[tuple[str, datetime]]:
    """(pseudonym, event time) of each fulfilled erasure request among the judged events."""
    return [
        (record.subject_pseudonym, record.event_time)
        for record in audit
        if record.event_type == EventType.REQUEST_FULFILLED
        and record.details.get("right") == "erasure"
    ]


def key_topic_configs(settings: Settings) -> dict[str, str]:
    """The key topic's compaction: a shredded secret is cleaned out of the log within
    `subject_key_compaction` (the active segment rolls by then, and is cleaned as soon as it
    may be)."""
    lag = str(int(settings.subject_key_compaction.total_seconds() * 1000))
    return {"segment.ms": lag, "max.compaction.lag.ms": lag, "min.cleanable.dirty.ratio": "0.01"}
