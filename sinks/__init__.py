"""What the store keeps beyond the pipeline's own outputs: rejected inputs and lineage edges.

`Violation` and `AuditRecord` (events/outputs.py) are stored as they are; these are the other
row shapes the ingest loop writes and the query API returns.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict


class Rejected(BaseModel):
    """An input the pipeline could not accept, kept byte for byte with the reason why."""

    model_config = ConfigDict(frozen=True)

    # "topic-partition-offset" of the rejected input: a replayed dead letter is stored once.
    rejection_id: str
    received_at: datetime
    source_topic: str
    source_partition: int
    source_offset: int
    field: str | None
    reason: str
    raw: bytes
    key: bytes | None

    @staticmethod
    def make_id(topic: str, partition: int, offset: int) -> str:
        return f"{topic}-{partition}-{offset}"


class LineageEdge(BaseModel):
    """One data category of a subject accessed or shared by one event."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    org: str
    subject_pseudonym: str
    subject_kind: str
    event_time: datetime
    action: Literal["accessed", "shared"]
    actor_kind: str | None
    actor_id: str | None
    data_category: str
    data_use: str | None
    legal_basis: str | None
    recipient_id: str | None
    recipient_kind: str | None
    recipient_country: str | None
    policy_version: str
