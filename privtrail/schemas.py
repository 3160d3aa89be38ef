"""The query API's answers as models, apart from the server, so a client can read them
without loading the web framework or the store."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from events.outputs import AuditRecord, Violation
from sinks import LineageEdge


class HistoryPage(BaseModel):
    """Stored audit records in event-time order; pass `next_cursor` back for the next page."""

    records: list[AuditRecord]
    # None on the last page.
    next_cursor: str | None


class Party(BaseModel):
    """An actor or recipient of a subject's data, and which categories it got."""

    kind: str | None
    id: str | None
    country: str | None = None
    categories: list[str]


class LineageSummary(BaseModel):
    categories: list[str]
    uses: list[str]
    actors: list[Party]
    recipients: list[Party]
    violations: list[Violation]


class Lineage(BaseModel):
    org: str
    # None for a subject never judged, or erased: nothing stored links to it (README: Erasure).
    subject_pseudonym: str | None
    subject_kind: str | None
    edges: list[LineageEdge]
    summary: LineageSummary
    # The day of the subject's last erasure: its trail from before is kept, unlinked.
    erased_at: datetime | None = None

    @classmethod
    def unlinked(cls, org: str, erased_at: datetime | None) -> Lineage:
        """The answer for a subject nothing stored links to: when it was erased, if it was."""
        nothing = LineageSummary(categories=[], uses=[], actors=[], recipients=[], violations=[])
        return cls(
            org=org,
            subject_pseudonym=None,
            subject_kind=None,
            edges=[],
            summary=nothing,
            erased_at=erased_at,
        )


class RejectedInput(BaseModel):
    """A rejected input as the API shows it: why, and where from, but not its bytes.

    The raw input and its Kafka key hold the subject's real id, so only the CloudEvents
    envelope attributes `id`, `type` and `source` are read out of it, when it parses.
    """

    rejection_id: str
    received_at: datetime
    source_topic: str
    source_partition: int
    source_offset: int
    field: str | None
    reason: str
    size_bytes: int
    event_id: str | None
    event_type: str | None
    event_source: str | None


class RuleCount(BaseModel):
    org: str
    rule_id: str
    severity: str
    count: int


class Stats(BaseModel):
    """Stored rows (each duplicate counted once) and violations per rule and per org."""

    events: int
    violations: int
    lineage_edges: int
    # None for a token that does not hold every org: rejected inputs belong to no org.
    rejected_events: int | None
    violations_by_rule: list[RuleCount]
    violations_by_org: dict[str, int]


class Latency(BaseModel):
    """Two lags of the events stored in the window, in milliseconds; each event counts once.

    - `p50_ms`, `p99_ms`, `max_ms`: the events' age when stored, from their own `time`. It
      holds the emitter's delay, and any history sent long after it happened.
    - `pipeline_*`: from the broker's append of the event to its row in the store: the queue
      ahead of the worker, judging and ingest batching. Over `pipeline_events`, the events
      whose append time is known.
    """

    events: int
    # None when no event was stored in the window.
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    last_stored_at: datetime | None
    pipeline_events: int
    pipeline_p50_ms: float | None
    pipeline_p99_ms: float | None
    pipeline_max_ms: float | None
