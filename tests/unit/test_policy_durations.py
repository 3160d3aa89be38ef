"""Policy durations and calendar-month arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from streams.rules.durations import Duration, add_months


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (datetime(2025, 1, 15, 10, 30), 1, datetime(2025, 2, 15, 10, 30)),
        (datetime(2025, 1, 31), 1, datetime(2025, 2, 28)),
        (datetime(2024, 1, 31), 1, datetime(2024, 2, 29)),
        (datetime(2025, 3, 31), 1, datetime(2025, 4, 30)),
        (datetime(2025, 11, 30), 3, datetime(2026, 2, 28)),
        (datetime(2025, 12, 1), 1, datetime(2026, 1, 1)),
        (datetime(2020, 2, 29, 12), 36, datetime(2023, 2, 28, 12)),
        (datetime(2020, 2, 29), 48, datetime(2024, 2, 29)),
        (datetime(2022, 1, 31), 36, datetime(2025, 1, 31)),
        (datetime(2025, 1, 31), -2, datetime(2024, 11, 30)),
        (datetime(2025, 5, 31), 0, datetime(2025, 5, 31)),
    ],
)
def test_add_months_clamps_to_the_end_of_the_month(
    start: datetime, months: int, expected: datetime
) -> None:
    assert add_months(start, months) == expected


def test_add_months_keeps_the_zone() -> None:
    casablanca = timezone(timedelta(hours=1))
    start = datetime(2022, 1, 31, 23, 30, tzinfo=casablanca)
    assert add_months(start, 36) == datetime(2025, 1, 31, 23, 30, tzinfo=casablanca)


@pytest.mark.parametrize(
    ("text", "months", "delta"),
    [
        ("72 hours", 0, timedelta(hours=72)),
        ("1 hour", 0, timedelta(hours=1)),
        ("30 days", 0, timedelta(days=30)),
        ("2 weeks", 0, timedelta(days=14)),
        ("36 months", 36, timedelta(0)),
        ("1 year", 12, timedelta(0)),
        (" 90  minutes ", 0, timedelta(minutes=90)),
    ],
)
def test_parse(text: str, months: int, delta: timedelta) -> None:
    duration = Duration.parse(text)
    assert (duration.months, duration.delta) == (months, delta)


@pytest.mark.parametrize("text", ["3 fortnights", "thirty days", "", "30", "days 30", "-1 days"])
def test_parse_rejects_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        Duration.parse(text)


def test_calendar_months_are_not_30_day_blocks() -> None:
    closed = datetime(2025, 1, 31, 10, tzinfo=UTC)
    assert Duration.parse("1 month").after(closed) == datetime(2025, 2, 28, 10, tzinfo=UTC)
    assert Duration.parse("30 days").after(closed) == datetime(2025, 3, 2, 10, tzinfo=UTC)
