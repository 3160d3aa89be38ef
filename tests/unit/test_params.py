"""The times the query API accepts: what the schema states is exactly what is parsed, every
accepted time fits the store, and anything else is a 422 naming the parameter."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from config.settings import Settings
from privtrail.api import create_app
from privtrail.params import STORE_FIRST, STORE_LAST, TIME_PATTERN, parse_since
from sinks.clickhouse.store import Store
from tests.unit.chdb_store import store_dsn
from tests.unit.tokens import bearer

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
PATTERN = re.compile(TIME_PATTERN)
TIMED = (
    ("/violations", "since"),
    ("/history", "since"),
    ("/history", "until"),
    ("/stats/latency", "since"),
    ("/dashboard/violations", "since"),
    ("/dashboard/violations", "until"),
    ("/access-log", "since"),
)


@pytest.fixture(scope="module")
def http() -> Iterator[TestClient]:
    store = Store.open(store_dsn())
    app = create_app(Settings(pseudonym_key="test-key"), store)
    with TestClient(app, headers=bearer(store)) as client:
        yield client
    store.close()


OVERFLOW = "reaches too far back: a time ago is at most"
OUT_OF_RANGE = "outside the times the store holds (1900-01-01 to 2299-12-31)"


@pytest.mark.parametrize("path, name", TIMED)
@pytest.mark.parametrize(
    "value, message",
    [
        ("999999999d", OVERFLOW),
        ("1000000w", OVERFLOW),
        ("99999999999999999999s", OVERFLOW),
        ("0001-01-01", OUT_OF_RANGE),
        ("1899-12-31T23:59:59", OUT_OF_RANGE),
        ("2300-01-01", OUT_OF_RANGE),
        ("9999-12-31", OUT_OF_RANGE),
    ],
)
def test_a_time_the_store_cannot_hold_is_a_422_naming_the_parameter(
    http: TestClient, path: str, name: str, value: str, message: str
) -> None:
    response = http.get(path, params={name: value})
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", name]
    assert message in error["msg"]
    assert "DB::Exception" not in response.text


def test_a_failing_store_query_answers_without_the_engines_message(
    http: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*args: object, **kwargs: object) -> None:
        raise DatabaseError("Code: 457. DB::Exception: internal detail of the engine")

    monkeypatch.setattr(Store, "latency", failing)
    response = http.get("/stats/latency")
    assert response.status_code == 503
    assert response.json() == {"detail": "store query failed; see the log"}


def test_the_schema_states_the_times_and_filter_values_accepted(http: TestClient) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    for path, name in TIMED:
        [parameter] = [p for p in paths[path]["get"]["parameters"] if p["name"] == name]
        assert parameter["schema"]["pattern"] == TIME_PATTERN
        assert "1900-01-01 to 2299-12-31" in parameter["description"]
    orgs = {"connectx", "linkxup", "xpertaize"}
    for path, method in (
        ("/violations", "get"),
        ("/dashboard/violations/{org}/{violation_id}", "get"),
    ):
        [org] = [p for p in paths[path][method]["parameters"] if p["name"] == "org"]
        assert set(org["schema"]["enum"]) == orgs
    [rule] = [p for p in paths["/violations"]["get"]["parameters"] if p["name"] == "rule"]
    assert {"LX-ADNET-001", "CX-ENC-004", "XA-EMP-001"} <= set(rule["schema"]["enum"])


@given(st.from_regex(TIME_PATTERN, fullmatch=True))
def test_every_time_the_pattern_allows_parses_into_the_store_range(text: str) -> None:
    assert STORE_FIRST <= parse_since(text, NOW) <= STORE_LAST


@given(st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2299, 12, 30)))
def test_every_datetime_in_range_is_allowed_as_python_writes_it(moment: datetime) -> None:
    for text in (moment.isoformat(), moment.replace(tzinfo=UTC).isoformat(), str(moment.date())):
        assert PATTERN.fullmatch(text), text


@pytest.mark.parametrize("year", [1900, 1904, 2000, 2023, 2024, 2100, 2200, 2296, 2299])
def test_the_pattern_knows_every_calendar_day_and_no_other(year: int) -> None:
    for month in range(1, 13):
        for day in range(1, 32):
            try:
                valid = date(year, month, day)
            except ValueError:
                valid = None
            text = f"{year}-{month:02}-{day:02}"
            assert bool(PATTERN.fullmatch(text)) == (valid is not None), text


def test_relative_times_and_the_ends_of_the_range() -> None:
    assert parse_since("9999d", NOW) == NOW - timedelta(days=9999)
    assert parse_since("999w", NOW) == NOW - timedelta(weeks=999)
    assert parse_since("1900-01-01", NOW) == STORE_FIRST
    # An offset can carry the first day before the range: the store holds nothing earlier.
    assert parse_since("1900-01-01T00:00+05:00", NOW) == STORE_FIRST
    assert parse_since("2299-12-31T23:00-05:00", NOW) == STORE_LAST
    for text in (" 7d", "7 d", "-5m", "7y", "2026-02-29", "2026-12-06T24:00", "20261206"):
        with pytest.raises(ValueError, match="ISO 8601"):
            parse_since(text, NOW)


@pytest.mark.parametrize("path", ["/history", "/dashboard/violations"])
def test_a_forged_cursor_outside_the_store_range_is_a_422(http: TestClient, path: str) -> None:
    for moment in ("0001-01-01T00:00:00+00:00", "2026-01-01T00:00:00"):
        cursor = base64.urlsafe_b64encode(json.dumps([moment, "e1"]).encode()).decode()
        response = http.get(path, params={"cursor": cursor})
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["query", "cursor"]
