"""The dashboard's endpoints over a real chDB store."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from config.settings import Settings
from privtrail.api import create_app
from sinks.clickhouse.store import Store
from tests.unit.chdb_store import audit, store_dsn, violation
from tests.unit.tokens import bearer

NOW = datetime.now(UTC).replace(microsecond=0)
DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"


def ago(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


@pytest.fixture
def http() -> Iterator[TestClient]:
    store = Store.open(store_dsn())
    store.write_audit([audit("e-ads", subject_pseudonym="p-1", event_time=ago(2))])
    broken = [
        violation("v-ads", event_id="e-ads", subject_pseudonym="p-1", occurred_at=ago(2)),
        violation(
            "v-enc",
            org="connectx",
            rule_id="CX-ENC-004",
            severity="critical",
            subject_pseudonym="p-2",
            occurred_at=ago(30),
        ),
        *(
            violation(
                f"v-old-{n:03}", rule_id="LX-VIS-006", severity="low", occurred_at=ago(200 + n)
            )
            for n in range(150)
        ),
    ]
    store.write_violations(broken)
    store.write_violations(broken[:2])  # replayed copies change no count
    with TestClient(
        create_app(Settings(pseudonym_key="k"), store), headers=bearer(store)
    ) as client:
        yield client
    store.close()


def ids(response: object) -> list[str]:
    assert getattr(response, "status_code", None) == 200, getattr(response, "text", response)
    return [row["violation_id"] for row in response.json()["rows"]]  # type: ignore[attr-defined]


def test_the_summary_counts_from_the_store_counters(http: TestClient) -> None:
    summary = http.get("/dashboard/summary").json()

    assert summary["open_violations"] == 152
    assert summary["by_severity"] == {"critical": 1, "high": 1, "medium": 0, "low": 150}
    assert summary["last_24h"] == 1
    assert summary["events"] == 1
    assert summary["orgs"] == ["connectx", "linkxup"]
    assert http.get("/dashboard/summary", params={"org": "CONNECTX"}).json()["open_violations"] == 1


def test_the_chart_covers_24_hours_or_7_days_by_severity(http: TestClient) -> None:
    day = http.get("/dashboard/chart").json()
    week = http.get("/dashboard/chart", params={"range": "7d"}).json()

    assert (len(day["buckets"]), day["bucket_hours"]) == (24, 1)
    assert (len(week["buckets"]), week["bucket_hours"]) == (28, 6)
    assert sum(b["high"] for b in day["buckets"]) == 1
    assert sum(b["critical"] for b in day["buckets"]) == 0
    assert sum(b["critical"] for b in week["buckets"]) == 1
    assert sum(b["low"] for b in week["buckets"]) == sum(200 + n < 168 for n in range(150))
    only_connectx = http.get("/dashboard/chart", params={"range": "7d", "org": "connectx"})
    assert sum(b["high"] for b in only_connectx.json()["buckets"]) == 0


def test_filters_narrow_the_feed(http: TestClient) -> None:
    feed = "/dashboard/violations"
    assert ids(http.get(feed, params={"limit": 2})) == ["v-ads", "v-enc"]
    assert ids(http.get(feed, params={"severity": "critical"})) == ["v-enc"]
    assert ids(http.get(feed, params={"rule": "cx-enc-004"})) == ["v-enc"]
    assert ids(http.get(feed, params={"org": "linkxup", "since": ago(24).isoformat()})) == ["v-ads"]
    # `until` is exclusive: v-old-001 occurred at that very time.
    assert ids(http.get(feed, params={"until": ago(201).isoformat(), "limit": 1})) == ["v-old-002"]


def test_bad_filters_are_422s_that_name_the_problem(http: TestClient) -> None:
    for params, name, message in (
        ({"severity": "urgent"}, "severity", "'low', 'medium', 'high' or 'critical'"),
        ({"org": "nosuch"}, "org", "unknown org 'nosuch'; known orgs: connectx, linkxup"),
        ({"triage": "done"}, "triage", "'unresolved'"),
        ({"cursor": "xyz"}, "cursor", "not a next_cursor"),
        ({"since": "yesterday"}, "since", "datetime"),
        ({"sort": "asc"}, "sort", "unknown query parameter"),
    ):
        response = http.get("/dashboard/violations", params=params)
        assert response.status_code == 422, params
        [error] = response.json()["detail"]
        assert error["loc"] == ["query", name]
        assert message in error["msg"]


def test_pages_load_more_until_every_row_is_shown(http: TestClient) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = http.get("/dashboard/violations", params=params).json()
        seen += [row["violation_id"] for row in page["rows"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert len(seen) == len(set(seen)) == 152


def test_exports_hold_every_row_of_the_filtered_view(http: TestClient) -> None:
    params = {"org": "linkxup", "triage": "unresolved"}
    as_json = http.get("/dashboard/export.json", params=params)
    as_csv = http.get("/dashboard/export.csv", params=params)

    assert as_json.status_code == as_csv.status_code == 200
    assert re.search(
        r'attachment; filename="privtrail-violations-\w+\.csv"',
        as_csv.headers["content-disposition"],
    )
    rows = json.loads(as_json.text)
    table = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert len(rows) == len(table) == 151
    assert [r["violation_id"] for r in rows] == [r["violation_id"] for r in table]
    assert table[0]["occurred_at"] == rows[0]["occurred_at"]
    assert table[0]["data_categories"] == "user.contact.email"
    assert table[0]["triage_state"] == ""
    assert json.loads(http.get("/dashboard/export.json", params={"triage": "resolved"}).text) == []


def test_a_csv_cell_that_looks_like_a_formula_is_exported_as_text(http: TestClient) -> None:
    note = '=HYPERLINK("http://127.0.0.1/x","open")'
    triage = {"state": "acknowledged", "note": note, "analyst": "@ann"}
    assert http.post("/dashboard/violations/connectx/v-enc/triage", json=triage).status_code == 200

    exported = http.get("/dashboard/export.csv", params={"org": "connectx"}).text
    [row] = list(csv.DictReader(io.StringIO(exported)))
    assert row["triage_note"] == "'" + note
    assert row["triage_analyst"] == "'@ann"
    assert row["violation_id"] == "v-enc", "other cells are left as they are"


def test_drill_down_shows_the_event_the_policy_and_the_subject(http: TestClient) -> None:
    detail = http.get("/dashboard/violations/linkxup/v-ads").json()
    subject = http.get("/dashboard/subjects/linkxup/p-1").json()

    assert detail["violation"]["policy_text"].startswith("We do not share your personal data")
    assert detail["event"]["event_id"] == "e-ads"
    assert detail["event"]["recipient_id"] == "adnet-42"
    assert [e["data_category"] for e in subject["edges"]] == ["user.contact.email", "user.name"]
    assert [v["violation_id"] for v in subject["violations"]] == ["v-ads"]
    assert http.get("/dashboard/violations/LinkXUP/v-ads").json() == detail
    for path in ("/dashboard/violations/nosuch/v-ads", "/dashboard/subjects/nosuch/p-1"):
        [error] = http.get(path).json()["detail"]
        assert error["loc"] == ["path", "org"]
        assert error["msg"].startswith("unknown org 'nosuch'; known orgs: connectx, linkxup")
    missing = http.get("/dashboard/violations/linkxup/nosuch")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no violation 'nosuch' is stored for org 'linkxup'"


def test_triage_is_stored_with_who_and_when_and_shown_in_the_feed(http: TestClient) -> None:
    url = "/dashboard/violations/connectx/v-enc/triage"
    body = {"state": "resolved", "note": "key rotated", "analyst": "ann"}
    entry = http.post(url, json=body).json()

    [row] = http.get("/dashboard/violations", params={"triage": "resolved"}).json()["rows"]
    assert row["violation_id"] == "v-enc"
    assert row["triage"] == entry
    assert entry["analyst"] == "ann" and entry["note"] == "key rotated"
    assert abs(datetime.fromisoformat(entry["at"]) - datetime.now(UTC)) < timedelta(minutes=1)
    assert "v-enc" not in ids(http.get("/dashboard/violations", params={"triage": "unresolved"}))
    assert http.get("/dashboard/summary").json()["triage"] == {"acknowledged": 0, "resolved": 1}
    history = http.get("/dashboard/violations/connectx/v-enc").json()["triage_history"]
    assert [t["state"] for t in history] == ["resolved"]


def test_bad_triage_is_refused_and_nothing_is_stored(http: TestClient) -> None:
    unknown = http.post(
        "/dashboard/violations/linkxup/nosuch/triage",
        json={"state": "resolved", "note": "", "analyst": "ann"},
    )
    invalid = http.post(
        "/dashboard/violations/linkxup/v-ads/triage",
        json={"state": "closed", "note": "x" * 5000, "analyst": "  "},
    )

    assert unknown.status_code == 404
    assert invalid.status_code == 422
    assert {e["loc"][-1] for e in invalid.json()["detail"]} == {"state", "note", "analyst"}
    assert http.get("/dashboard/violations/linkxup/v-ads").json()["triage_history"] == []


def test_the_page_and_its_assets_are_served_with_no_external_url(http: TestClient) -> None:
    page = http.get("/")
    script = http.get("/dashboard/assets/dashboard.js")
    style = http.get("/dashboard/assets/dashboard.css")

    assert page.status_code == script.status_code == style.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert http.get("/dashboard/assets/secret.txt").status_code == 404
    for text in (page.text, script.text, style.text):
        assert not re.search(r"(src|href)=[\"']?(https?:)?//", text)
        assert "@import" not in text and "url(http" not in text
    assert sorted(p.name for p in DASHBOARDS.iterdir()) == [
        "dashboard.css",
        "dashboard.js",
        "index.html",
    ]
