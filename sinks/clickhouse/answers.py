"""What the store's dashboard queries answer: row counts, counts per rule, and latencies."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict


class RuleCount(TypedDict):
    org: str
    rule_id: str
    severity: str
    count: int


class StoreStats(TypedDict):
    # Rows per table, duplicates not counted.
    tables: dict[str, int]
    violations_by_rule: list[RuleCount]


class StoreLatency(TypedDict):
    """Milliseconds from events' own time to their storage (their age when stored), and from
    the broker's append to their storage (the pipeline's lag), over the events counted."""

    events: int
    # None when no event was counted.
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    last_stored_at: datetime | None
    # Over the events whose append time is known.
    pipeline_events: int
    pipeline_p50_ms: float | None
    pipeline_p99_ms: float | None
    pipeline_max_ms: float | None


@dataclass(frozen=True)
class Lag:
    events: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    last_stored_at: datetime | None
