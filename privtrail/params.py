"""The time and filter values the query API accepts, and the OpenAPI schema that states them.

Every time a query takes must fit the store: its columns are ClickHouse DateTime64, which holds
1900-01-01 to 2299-12-31. The pattern below is exactly what `parse_since` accepts, so a client
that follows the schema is never refused and one that does not always is, with a 422 that names
the parameter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from fastapi import FastAPI, Query

# ClickHouse DateTime64's range (https://clickhouse.com/docs/sql-reference/data-types/datetime64).
STORE_FIRST: Final = datetime(1900, 1, 1, tzinfo=UTC)
STORE_LAST: Final = datetime(2299, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)

# A relative time's longest amount per unit: each reaches back less than 115 years, so `now`
# minus any of them stays in the store's range.
RELATIVE_DIGITS: Final = {"s": 9, "m": 7, "h": 6, "d": 4, "w": 3}
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

# [0-9], not \d: a schema's pattern is ECMA-262, where \d is ASCII, but Python's matches any
# script's digits.
_YEAR = "(?:19[0-9]{2}|2[0-2][0-9]{2})"
# Leap years of 1900-2299: divisible by 4, except 1900, 2100 and 2200.
_QUADS = "(?:0[48]|[2468][048]|[13579][26])"
_LEAP_YEAR = f"(?:19{_QUADS}|20(?:00|{_QUADS})|2[12]{_QUADS})"
_DATE = (
    f"(?:{_YEAR}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"
    f"|{_YEAR}-(?:0[13-9]|1[0-2])-(?:29|30)"
    f"|{_YEAR}-(?:0[13578]|1[02])-31"
    f"|{_LEAP_YEAR}-02-29)"
)
_CLOCK = "(?:[01][0-9]|2[0-3])(?::[0-5][0-9](?::[0-5][0-9](?:[.][0-9]{1,6})?)?)?"
_OFFSET = "(?:Z|[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?)"
_ISO = f"{_DATE}(?:[T ]{_CLOCK}{_OFFSET}?)?"
_RELATIVE = "|".join(f"[0-9]{{1,{digits}}}{unit}" for unit, digits in RELATIVE_DIGITS.items())
TIME_PATTERN: Final = f"^(?:{_ISO}|{_RELATIVE})$"
TIME_FORMATS: Final = (
    "An ISO 8601 date or datetime from 1900-01-01 to 2299-12-31 (what the store holds; UTC "
    "unless it has an offset), or a time ago: up to "
    + ", ".join(f"{'9' * digits}{unit}" for unit, digits in RELATIVE_DIGITS.items())
    + "."
)

# A subject id in a path: Starlette's `path` converter takes any character but a newline, so a
# newline in it reaches no route at all.
ONE_LINE: Final = r"^[^\n]*$"
NO_ROUTE: Final[dict[int | str, dict[str, Any]]] = {
    404: {"description": "The path reaches no route: a subject id with a newline."}
}

_ISO_MATCH = re.compile(_ISO)
_RELATIVE_MATCH = re.compile(r"([0-9]+)([smhdw])")


def time_query(description: str) -> Any:
    """A query parameter taking a time: the schema states the formats `parse_since` accepts."""
    return Query(
        description=f"{description} {TIME_FORMATS}", json_schema_extra={"pattern": TIME_PATTERN}
    )


def parse_since(text: str, now: datetime) -> datetime:
    """An ISO 8601 date or datetime (UTC if it has no zone), or `now` minus `<n>s|m|h|d|w`,
    within the store's range; a ValueError that says what is wrong otherwise."""
    relative = _RELATIVE_MATCH.fullmatch(text)
    if relative:
        amount, unit = relative.groups()
        if len(amount) > RELATIVE_DIGITS[unit]:
            longest = "9" * RELATIVE_DIGITS[unit] + unit
            raise ValueError(
                f"{text[:64]!r} reaches too far back: a time ago is at most {longest}; "
                "give an ISO 8601 date for older times"
            )
        return now - timedelta(**{_UNITS[unit]: int(amount)})
    if not _ISO_MATCH.fullmatch(text):
        raise ValueError(f"{text[:64]!r} is {_why_not_a_time(text)}. {TIME_FORMATS}")
    moment = datetime.fromisoformat(text)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    # Only an offset can carry a date the pattern allows past the range's ends, by under a
    # day; the store holds nothing beyond them, so the nearest end selects the same rows.
    return min(max(moment, STORE_FIRST), STORE_LAST)


def in_store_range(moment: datetime) -> datetime:
    """`moment` if the store can hold it, else a ValueError (a TypeError if it has no zone)."""
    if not STORE_FIRST <= moment <= STORE_LAST:
        raise ValueError(f"{moment} is outside the times the store holds")
    return moment


def _why_not_a_time(text: str) -> str:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return "neither an ISO 8601 datetime nor a relative time like 15m, 2h or 7d"
    if not STORE_FIRST.year <= moment.year <= STORE_LAST.year:
        return f"outside the times the store holds ({STORE_FIRST:%F} to {STORE_LAST:%F})"
    return "not in a supported ISO 8601 form"


def describe_accepted_values(app: FastAPI, orgs: Iterable[str], rules: Iterable[str]) -> None:
    """State in `app`'s OpenAPI schema the orgs and rule ids its `org` and `rule` parameters
    take: the policy's, which the filters match in any case."""
    values = {"org": sorted(orgs), "rule": sorted(rules)}

    def state_values(schema: dict[str, Any]) -> None:
        for operations in schema["paths"].values():
            for operation in operations.values():
                for parameter in operation.get("parameters", []):
                    if parameter["name"] in values:
                        enum = values[parameter["name"]]
                        parameter["schema"] = {"type": "string", "enum": enum}

    edit_openapi(app, state_values)


def edit_openapi(app: FastAPI, edit: Callable[[dict[str, Any]], None]) -> None:
    """Have `edit` change `app`'s OpenAPI schema once, when it is first built. Edits compose:
    each wraps the schema builder before it, and all change the one schema FastAPI keeps."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        edit(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
