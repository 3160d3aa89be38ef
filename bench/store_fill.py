"""The bench's quick fill: the same events as bench/store.py's messages, made as columns and
written through `Store.write_audit_columns` and `Store.write_violations` directly.

It skips what the ingest loop adds before the store's write: making each AuditBatch message
(JSON) and decoding it. The write itself is the store's (the id lookup that keeps the counters
exact, the insert, every view). bench/store.py fills its first size through the ingest loop
and measures that; `--quick-fill` makes the rest of the way with this, and the loop's rate is
measured again at the largest size by the poller segments.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
from store import FILL_STEP, Bench, load_average
from store_history import (
    _JUDGING,
    CATEGORIES,
    EVENT_SPACING,
    KINDS,
    RETRACT_AFTER,
    RETRACT_EVERY,
    T0,
    VIOLATION_EVERY,
    Events,
)

from events.outputs import Violation
from sinks.clickhouse.audit_columns import AUDIT_COLUMNS
from sinks.clickhouse.store import Store

_SHARED = "privacy.data.shared"
_MICROS = timedelta(microseconds=1)


def _micros(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=moment.tzinfo)) // _MICROS


def audit_table(events: Events, start: int, stop: int) -> pa.Table:
    """Events start..stop as `AUDIT_COLUMNS`: the rows their AuditBatch messages decode to."""
    numbers = range(start, stop)
    subjects = [events.subject(n % events.subjects) for n in numbers]
    orgs = [org for org, _ in subjects]
    shared = [KINDS[n % len(KINDS)] == _SHARED for n in numbers]
    first, step = _micros(T0), EVENT_SPACING // _MICROS
    times = [first + n * step for n in numbers]
    judging = _JUDGING // _MICROS
    columns: dict[str, list[Any]] = {
        "event_id": [f"ev-{n:012d}" for n in numbers],
        "event_type": [KINDS[n % len(KINDS)] for n in numbers],
        "source": [f"/{org}/app" for org in orgs],
        "org": orgs,
        "event_time": times,
        "judged_at": [t + judging for t in times],
        "subject_pseudonym": [pseudonym for _, pseudonym in subjects],
        "subject_kind": ["customer"] * len(numbers),
        "actor_kind": ["service"] * len(numbers),
        "actor_id": [f"svc-{n % 17}" for n in numbers],
        "data_categories": [list(CATEGORIES[: 1 + n % 30 % 3]) for n in numbers],
        "data_use": ["marketing.advertising"] * len(numbers),
        "legal_basis": ["consent"] * len(numbers),
        "recipient_id": ["adnet-7" if s else None for s in shared],
        "recipient_kind": ["ad_network" if s else None for s in shared],
        "recipient_country": ["FR" if s else None for s in shared],
        "encrypted": [True] * len(numbers),
        "safeguard": [None] * len(numbers),
        "aggregated": [None] * len(numbers),
        "explicit_consent": [None] * len(numbers),
        "details": [[] for _ in numbers],
        "policy_version": ["2025.1"] * len(numbers),
        "violated_rules": [[] for _ in numbers],
        "partition": [n % 4 for n in numbers],
        "offset": list(numbers),
        "appended_at": [None] * len(numbers),
    }
    return pa.Table.from_pydict(columns, schema=AUDIT_COLUMNS)


def violations(events: Events, start: int, stop: int) -> Iterator[Violation]:
    """The violations and retractions bench/store.py's messages carry for events start..stop."""
    for n in range(start - start % VIOLATION_EVERY, stop, VIOLATION_EVERY):
        if n < start:
            continue
        yield Violation.model_validate_json(events.violation_json(n))
        late = n - RETRACT_AFTER
        if late >= 0 and late % (VIOLATION_EVERY * RETRACT_EVERY) == 0:
            yield Violation.model_validate_json(events.violation_json(late, "retracted"))


def quick_fill(store: Store, events: Events, start: int, stop: int, batch: int) -> None:
    """Write events start..stop and their violations, `batch` events per write."""
    for first in range(start, stop, batch):
        last = min(stop, first + batch)
        store.write_audit_columns([audit_table(events, first, last)])
        store.write_violations(list(violations(events, first, last)))


def quick_fill_to(bench: Bench, done: int, size: int, deadline: float, batch: int) -> int:
    """Fill up to `size` with `quick_fill`, stopping early past `deadline`; the size reached.
    The ingest loop's stand-in consumer then hands out the events after it."""
    began, target = time.perf_counter(), done
    while target < size and time.monotonic() < deadline:
        step = min(size, target + FILL_STEP) - target
        quick_fill(bench.store, bench.events, target, target + step, batch)
        target += step
    rate = (target - done) / (time.perf_counter() - began)
    bench.stored_before += target - done
    with bench.consumer.lock:
        bench.consumer.allowed = bench.consumer.next_event = target
    stopped = "" if target == size else f" (fill time budget spent: stopped short of {size:,})"
    print(
        f"\n{target:,} events{stopped}: quick fill {done:,} -> {target:,} (Store writes of "
        f"{batch:,}-event batches, no messages) at {rate:,.0f} rows/s = "
        f"{rate / bench.raw_rate:.2f} x raw insert; {load_average()}"
    )
    return target
