"""The worker's side of erasure: which pseudonym a subject's event is judged under, and which
events erase a subject (events/pseudonyms.py holds the keys themselves)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from config.settings import Settings
from events.models import PrivacyEvent, RequestFulfilledEvent
from events.pseudonyms import Resolved
from events.tags import pseudonymise
from streams.history import SubjectHistory


class Pseudonyms(Protocol):
    def resolve(self, org: str, subject_id: str, partition: int, offset: int) -> Resolved:
        """The pseudonym of the subject's event at `offset` of source partition `partition`."""

    def erase(self, org: str, subject_id: str, partition: int, offset: int, at: datetime) -> None:
        """The subject's erasure was fulfilled at that offset, at time `at`."""


class DeploymentKeyed:
    """Pseudonyms under the deployment's key alone: nothing can be erased. For judging in
    memory (tests, benchmarks), where no key table exists."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def resolve(self, org: str, subject_id: str, partition: int, offset: int) -> Resolved:
        return Resolved(pseudonymise(self._key, org, subject_id), None, None)

    def erase(self, org: str, subject_id: str, partition: int, offset: int, at: datetime) -> None:
        pass  # no key of the subject's own to take away


def start_history(org: str, subject_kind: str, erased_at: datetime | None) -> SubjectHistory:
    """A new subject's history; one seen again after its erasure starts out erased, so that
    processing its data again breaks the rules about erased subjects."""
    history = SubjectHistory.start(org, subject_kind)
    if erased_at is not None:
        history.base.erased_at = history.state.erased_at = erased_at
    return history


def fulfils_erasure(event: PrivacyEvent) -> bool:
    """Whether the event erases its subject: every valid fulfilment of an erasure request,
    whatever its verdict, as the subject's right does not wait on the rules."""
    return isinstance(event, RequestFulfilledEvent) and event.data.right == "erasure"


def key_topic_configs(settings: Settings) -> dict[str, str]:
    """The key topic's compaction: a shredded secret is cleaned out of the log within
    `subject_key_compaction` (the active segment rolls by then, and is cleaned as soon as it
    may be)."""
    lag = str(int(settings.subject_key_compaction.total_seconds() * 1000))
    return {"segment.ms": lag, "max.compaction.lag.ms": lag, "min.cleanable.dirty.ratio": "0.01"}
