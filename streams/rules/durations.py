"""Policy durations ("72 hours", "30 days", "36 months") and calendar-month arithmetic."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_UNITS = {
    "minute": ("delta", 60),
    "hour": ("delta", 3600),
    "day": ("delta", 86400),
    "week": ("delta", 7 * 86400),
    "month": ("months", 1),
    "year": ("months", 12),
}
_PATTERN = re.compile(r"^\s*(\d+)\s+([a-z]+?)s?\s*$")


def add_months(moment: datetime, months: int) -> datetime:
    """The same wall-clock time `months` calendar months later, clamped to the month's last day.

    31 January + 1 month is 28 (or 29) February: a deadline never spills into the month after.
    """
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


@dataclass(frozen=True)
class Duration:
    """A span of time as a policy states it: exact (hours, days) or calendar (months, years)."""

    text: str
    months: int = 0
    delta: timedelta = timedelta(0)

    @classmethod
    def parse(cls, text: str) -> Duration:
        match = _PATTERN.match(text)
        unit = _UNITS.get(match.group(2)) if match else None
        if match is None or unit is None:
            units = ", ".join(f"{u}s" for u in _UNITS)
            raise ValueError(f"{text!r} is not a duration like '30 days' (units: {units})")
        amount = int(match.group(1))
        kind, size = unit
        if kind == "months":
            return cls(text=text.strip(), months=amount * size)
        return cls(text=text.strip(), delta=timedelta(seconds=amount * size))

    def after(self, start: datetime) -> datetime:
        """The moment this long after `start` (calendar months in `start`'s own time zone)."""
        return add_months(start, self.months) + self.delta if self.months else start + self.delta

    def __str__(self) -> str:
        return self.text
