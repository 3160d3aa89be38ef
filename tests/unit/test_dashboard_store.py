"""The dashboard's store reads and writes on a real chDB store: the hourly counter, triage, and
the feed's pages."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from sinks.clickhouse.counters import VIOLATION_HOURS
from sinks.clickhouse.feed import FeedFilter, feed_all, feed_page, violations_over_time
from sinks.clickhouse.store import Store
from sinks.clickhouse.triage import (
    UnknownViolation,
    ensure_triage,
    record_triage,
    triage_counts,
    triage_history,
)
from tests.unit.chdb_store import T0, store_dsn, violation

HOUR = timedelta(hours=1)


@pytest.fixture
def store() -> Iterator[Store]:
    opened = Store.open(store_dsn())
    ensure_triage(opened)
    yield opened
    opened.close()


def per_hour(store: Store, **where: object) -> list[tuple[int, int, int]]:
    """(hour after T0, high, low) of each non-empty hour of the 6 h from T0."""
    buckets = violations_over_time(store, FeedFilter(**where), T0 + 5 * HOUR, 6 * HOUR, HOUR)  # type: ignore[arg-type]
    return [(int((b.start - T0) / HOUR), b.high, b.low) for b in buckets if b.high or b.low]


def test_the_hourly_counter_is_exact_under_duplicates_and_retractions(store: Store) -> None:
    first = violation("v1", occurred_at=T0 + timedelta(minutes=10))
    store.write_violations([first, violation("v2", occurred_at=T0 + timedelta(minutes=50))])
    store.write_violations([first])  # a replayed copy
    store.write_violations([violation("v3", severity="low", occurred_at=T0 + 2 * HOUR)])
    retraction = first.model_copy(
        update={"status": "retracted", "detected_at": first.detected_at + HOUR}
    )
    store.write_violations([retraction, retraction])

    assert per_hour(store) == [(0, 1, 0), (2, 0, 1)]
    assert per_hour(store, severity="low") == [(2, 0, 1)]
    assert per_hour(store, org="connectx") == []


def test_a_store_older_than_the_hourly_counter_gets_it_back_filled() -> None:
    dsn = store_dsn()
    old = Store.open(dsn)
    old.write_violations([violation("v1"), violation("v2", occurred_at=T0 + 3 * HOUR)])
    old.command(f"DROP VIEW {old.database}.violation_hours_mv")
    old.command(f"DROP TABLE {old.database}.{VIOLATION_HOURS.name}")
    old.write_violations([violation("v3", occurred_at=T0 + 3 * HOUR)])
    old.close()

    reopened = Store.open(dsn)
    try:
        assert per_hour(reopened) == [(0, 1, 0), (3, 2, 0)]
    finally:
        reopened.close()


def test_buckets_cover_the_whole_span_empty_ones_too(store: Store) -> None:
    buckets = violations_over_time(store, FeedFilter(), T0, timedelta(days=7), 6 * HOUR)

    assert len(buckets) == 28
    assert [b.start for b in buckets[-2:]] == [T0 - 6 * HOUR, T0]
    assert all(b.start.hour % 6 == 0 for b in buckets)


def test_triage_keeps_every_action_and_the_newest_one_counts(store: Store) -> None:
    store.write_violations([violation("v1"), violation("v2")])
    record_triage(store, "linkxup", "v1", "acknowledged", "looking into it", "ann")
    record_triage(store, "linkxup", "v1", "resolved", "contract with adnet-42 ended", "bob")
    record_triage(store, "linkxup", "v2", "acknowledged", "", "ann")

    history = triage_history(store, "linkxup", "v1")
    assert [(t.state, t.analyst, t.note) for t in history] == [
        ("acknowledged", "ann", "looking into it"),
        ("resolved", "bob", "contract with adnet-42 ended"),
    ]
    assert history[0].at < history[1].at
    assert triage_counts(store, None) == {"acknowledged": 1, "resolved": 1}
    assert triage_counts(store, ["connectx"]) == {"acknowledged": 0, "resolved": 0}


def test_triage_of_a_violation_not_stored_is_refused(store: Store) -> None:
    store.write_violations([violation("v1")])

    with pytest.raises(UnknownViolation, match="no violation 'v1' is stored for org 'connectx'"):
        record_triage(store, "connectx", "v1", "resolved", "", "ann")
    assert triage_history(store, "connectx", "v1") == []


def test_the_feed_filters_by_triage_state(store: Store) -> None:
    store.write_violations([violation(f"v{n}", occurred_at=T0 + n * HOUR) for n in range(3)])
    record_triage(store, "linkxup", "v0", "resolved", "done", "ann")
    record_triage(store, "linkxup", "v1", "acknowledged", "", "ann")

    def ids(triage: str) -> list[str]:
        rows = feed_page(store, FeedFilter(triage=triage), None, 10)  # type: ignore[arg-type]
        return [row.violation_id for row in rows]

    assert ids("any") == ["v2", "v1", "v0"]
    assert ids("new") == ["v2"]
    assert ids("acknowledged") == ["v1"]
    assert ids("resolved") == ["v0"]
    assert ids("unresolved") == ["v2", "v1"]
    [resolved] = feed_page(store, FeedFilter(triage="resolved"), None, 10)
    assert resolved.triage is not None and resolved.triage.note == "done"


def test_pages_cover_every_violation_once_even_with_equal_event_times(store: Store) -> None:
    # Five share one event time, so the page key's id breaks their tie.
    store.write_violations(
        [violation(f"v{n:02}", occurred_at=T0 + (n // 5) * HOUR) for n in range(23)]
    )
    seen: list[str] = []
    after = None
    while True:
        page = feed_page(store, FeedFilter(), after, 4)
        seen += [row.violation_id for row in page]
        if len(page) < 4:
            break
        after = (page[-1].occurred_at, page[-1].violation_id)

    assert sorted(seen) == [f"v{n:02}" for n in range(23)]
    assert len(seen) == 23
    assert seen == [row.violation_id for row in feed_all(store, FeedFilter())]
