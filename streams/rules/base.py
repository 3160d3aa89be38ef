"""The interface between the stream processor and the policy-as-code rules."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from events.models import DataAccessed, PrivacyEvent
from events.outputs import Severity
from events.taxonomy import Taxonomy
from streams.state import SubjectState


@dataclass(frozen=True)
class RuleInfo:
    """A rule's identity and the policy sentence it enforces."""

    rule_id: str
    org: str
    severity: Severity
    section: str
    text: str


@dataclass(frozen=True)
class Finding:
    """A rule broken by an event, or a deadline that passed unmet."""

    rule: RuleInfo
    explanation: str
    # Set for a missed deadline: when it fell due, and the id of the event that started it.
    deadline: datetime | None = None
    cause_event_id: str | None = None


class PolicySet(ABC):
    """All orgs' rules at one policy version."""

    version: str

    @property
    @abstractmethod
    def taxonomies(self) -> Mapping[str, Taxonomy]:
        """Per org: the fideslang default taxonomy plus the org's extensions."""

    @abstractmethod
    def judge(self, event: PrivacyEvent, state: SubjectState) -> list[Finding]:
        """Rules this event breaks, given the subject's state before the event."""

    @abstractmethod
    def due(self, state: SubjectState, now: datetime) -> list[Finding]:
        """Deadline rules whose deadline passed before `now` unmet and not yet reported."""

    @abstractmethod
    def next_deadline(self, state: SubjectState) -> datetime | None:
        """The earliest pending deadline for this subject, so the worker knows when to look."""

    def moves_deadlines(self, event: PrivacyEvent) -> bool:
        """Whether folding `event` into a state can change its next deadline (when not, the
        judge keeps the one it has). Accesses and shares change no state a deadline reads."""
        return not isinstance(event.data, DataAccessed)
