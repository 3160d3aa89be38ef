"""The bench store's synthetic history: deterministic events, their AuditBatch and violation
messages as the worker writes them, and a stand-in for the Kafka consumer that hands them out.

bench/store.py fills its store with them through the ingest loop, store_fill.py the same events
as columns, and integrity.py reads the same messages.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

RECORDS_PER_MESSAGE = 500  # the worker's AUDIT_RECORDS_PER_MESSAGE (streams/app.py)
EVENT_SPACING = timedelta(seconds=3)
T0 = datetime(2025, 1, 1, tzinfo=UTC)
ORGS = ("linkxup", "connectx")
RULES = {org: [f"{org[:2].upper()}-RULE-{n:03d}" for n in range(4)] for org in ORGS}
CATEGORIES = ("user.contact.email", "user.name", "user.location", "user.financial")
KINDS = ("privacy.data.accessed",) * 6 + ("privacy.data.shared",) * 3 + ("privacy.consent.changed",)
VIOLATION_EVERY = 10  # one event in ten breaks a rule
RETRACT_EVERY = 100  # one violation in a hundred is retracted, 50,000 events later
RETRACT_AFTER = 50_000


def _audit_template(kind: str, categories: Sequence[str]) -> str:
    """One audit record's JSON with %-placeholders for what varies from event to event: made
    once per kind and category count, so a 10M-event fill does not spend minutes formatting."""
    listed = ",".join(f'"{c}"' for c in categories)
    shared = kind == "privacy.data.shared"
    recipient = (
        '"adnet-7","recipient_kind":"ad_network","recipient_country":"FR"'
        if shared
        else 'null,"recipient_kind":null,"recipient_country":null'
    )
    return (
        f'{{"event_id":"ev-%012d","event_type":"{kind}","source":"/%s/app",'
        '"org":"%s","event_time":"%sZ","judged_at":"%sZ",'
        '"subject_pseudonym":"%s","subject_kind":"customer",'
        f'"actor_kind":"service","actor_id":"svc-%d","data_categories":[{listed}],'
        '"data_use":"marketing.advertising","legal_basis":"consent",'
        f'"recipient_id":{recipient}'
        ',"encrypted":true,"safeguard":null,"aggregated":null,"explicit_consent":null,'
        '"details":{},"policy_version":"2025.1","violated_rules":[],'
        '"partition":%d,"offset":%d}'
    )


# Event n's record is template n % 30: its kind is KINDS[n % 10], its categories the first
# 1 + n % 3.
_AUDIT_TEMPLATES = tuple(
    _audit_template(KINDS[k % len(KINDS)], CATEGORIES[: 1 + k % 3]) for k in range(30)
)
_NAIVE_T0 = T0.replace(tzinfo=None)
_JUDGING = timedelta(seconds=1)


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    value: bytes
    timestamp: int | None = None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes | None], ...] = ()


class Events:
    """Deterministic synthetic history: event n of `subjects` subjects, 3 s apart."""

    def __init__(self, subjects: int) -> None:
        self.subjects = subjects

    def subject(self, index: int) -> tuple[str, str]:
        return ORGS[index % 2], f"{index * 0x9E3779B97F4A7C15 % 2**80:020x}"

    def time(self, n: int) -> datetime:
        return T0 + n * EVENT_SPACING

    def audit_json(self, n: int) -> str:
        org, pseudonym = self.subject(n % self.subjects)
        at = _NAIVE_T0 + n * EVENT_SPACING
        judged = at + _JUDGING
        return _AUDIT_TEMPLATES[n % len(_AUDIT_TEMPLATES)] % (
            n,
            org,
            org,
            at.isoformat(),
            judged.isoformat(),
            pseudonym,
            n % 17,
            n % 4,
            n,
        )

    def violation_json(self, n: int, status: str = "open") -> bytes:
        org, pseudonym = self.subject(n % self.subjects)
        rule = RULES[org][(n // VIOLATION_EVERY) % 4]
        at = self.time(n)
        detected = at + timedelta(seconds=1 if status == "open" else 90)
        return (
            f'{{"violation_id":"v-{n:012d}","rule_id":"{rule}","org":"{org}","severity":"high",'
            f'"policy_version":"2025.1","policy_section":"3.3","policy_text":"No ad networks.",'
            f'"explanation":"shared with adnet-7","subject_pseudonym":"{pseudonym}",'
            f'"subject_kind":"customer","event_id":"ev-{n:012d}",'
            f'"event_type":"privacy.data.shared","occurred_at":"{at:%Y-%m-%dT%H:%M:%S}Z",'
            f'"detected_at":"{detected:%Y-%m-%dT%H:%M:%S}Z","deadline":null,'
            '"data_categories":["user.name"],"data_use":"marketing.advertising",'
            f'"actor":"service:svc-1","recipient":"ad_network:adnet-7","status":"{status}"}}'
        ).encode()

    def messages(self, start: int, count: int) -> Iterator[Message]:
        """Events start..start+count: one audit message, then the violations they raise."""
        records = ",".join(self.audit_json(n) for n in range(start, start + count))
        yield Message("privacy.audit", 0, start, f'{{"records":[{records}]}}'.encode())
        for n in range(start - start % VIOLATION_EVERY, start + count, VIOLATION_EVERY):
            if n >= start:
                yield Message("privacy.violations", 0, n, self.violation_json(n))
            late = n - RETRACT_AFTER
            if late >= 0 and late % (VIOLATION_EVERY * RETRACT_EVERY) == 0 and n >= start:
                yield Message("privacy.violations", 1, n, self.violation_json(late, "retracted"))


@dataclass
class ScriptedConsumer:
    """Stands in for KafkaConsumer: hands out the messages of events up to `allowed`."""

    events: Events
    allowed: int = 0
    next_event: int = 0
    generating: float = 0.0
    # The ingest thread's CPU seconds spent making messages, left out of the CPU figures too.
    generating_cpu: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> Mapping[Any, list[Any]]:
        # `max_records` is the ingest buffer's room in rows; hand out about that many.
        started, started_cpu = time.perf_counter(), time.thread_time()
        taken: list[Message] = []
        with self.lock:
            room = max_records or RECORDS_PER_MESSAGE
            while self.next_event < self.allowed and room > 0:
                count = min(RECORDS_PER_MESSAGE, self.allowed - self.next_event)
                taken.extend(self.events.messages(self.next_event, count))
                self.next_event += count
                room -= count
        self.generating += time.perf_counter() - started
        self.generating_cpu += time.thread_time() - started_cpu
        if not taken:
            time.sleep(min(timeout_ms, 50) / 1000)
        return {"scripted": taken} if taken else {}

    def commit(self) -> None:
        pass

    def assignment(self) -> set[Any]:
        return set()

    def position(self, partition: Any, timeout_ms: int | None = None) -> int | None:
        return None

    def highwater(self, partition: Any) -> int | None:
        return None

    def close(self, autocommit: bool = True) -> None:
        pass
