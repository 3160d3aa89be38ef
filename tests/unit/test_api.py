"""The query API and its client, over a real chDB store; and the service process end to end."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from config.settings import Settings
from events.tags import pseudonymise
from privtrail.api import Health, create_app
from privtrail.client import ApiClient, ApiError
from privtrail.params import parse_since
from sinks import Rejected
from sinks.clickhouse.store import Store
from sinks.ingest import Ingestor
from tests.unit.chdb_store import T0, audit, store_dsn, violation
from tests.unit.tokens import bearer

SUBJECT = "alice/42@example.com"
SETTINGS = Settings(pseudonym_key="test-key")
PSEUDONYM = pseudonymise(b"test-key", "linkxup", SUBJECT)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    opened = Store.open(store_dsn())
    seed(opened)
    yield opened
    opened.close()


def seed(store: Store) -> None:
    store.write_audit(
        [
            audit(
                "e1",
                subject_pseudonym=PSEUDONYM,
                event_type="privacy.data.accessed",
                data_categories=["user.name"],
                data_use="essential.service",
                recipient_id=None,
                recipient_kind=None,
                recipient_country=None,
            ),
            audit("e2", subject_pseudonym=PSEUDONYM, event_time=T0 + timedelta(minutes=5)),
            audit("e3", subject_pseudonym="someone-else"),
        ]
    )
    store.write_violations(
        [
            violation("v1", subject_pseudonym=PSEUDONYM, occurred_at=T0 + timedelta(minutes=5)),
            violation("v2", org="connectx", rule_id="CX-ENC-004", occurred_at=T0),
            violation("v3", occurred_at=datetime.now(UTC) - timedelta(minutes=10)),
        ]
    )
    raw = json.dumps(
        {
            "specversion": "1.0",
            "id": "bad-1",
            "type": "privacy.data.shared",
            "source": "/ads",
            "data": {"subject": {"id": SUBJECT}},
        }
    )
    store.write_rejected(
        [
            Rejected(
                rejection_id="privacy.events-0-9",
                received_at=T0,
                source_topic="privacy.events",
                source_partition=0,
                source_offset=9,
                field="data.recipient",
                reason="Field required",
                raw=raw.encode(),
                key=SUBJECT.encode(),
            ),
            Rejected(
                rejection_id="privacy.events-0-10",
                received_at=T0 + timedelta(seconds=1),
                source_topic="privacy.events",
                source_partition=0,
                source_offset=10,
                field=None,
                reason="not JSON",
                raw=b"\xff\xfe",
                key=None,
            ),
        ]
    )


@pytest.fixture(scope="module")
def http(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(SETTINGS, store), headers=bearer(store)) as client:
        yield client


@pytest.fixture
def api(http: TestClient) -> ApiClient:
    return ApiClient(str(http.base_url), http=http)


def test_violations_newest_first_with_filters(api: ApiClient) -> None:
    assert [v.violation_id for v in api.violations()] == ["v3", "v1", "v2"]
    assert [v.violation_id for v in api.violations(org="connectx")] == ["v2"]
    assert [v.violation_id for v in api.violations(rule="LX-ADNET-001", limit=1)] == ["v3"]


def test_since_takes_relative_and_iso_times(api: ApiClient) -> None:
    assert [v.violation_id for v in api.violations(since="1h")] == ["v3"]
    assert [v.violation_id for v in api.violations(since="2025-03-01T12:01:00Z")] == ["v3", "v1"]
    assert [v.violation_id for v in api.violations(since=T0 + timedelta(minutes=1))] == [
        "v3",
        "v1",
    ]


def test_a_bad_since_is_a_422_naming_the_parameter(http: TestClient, api: ApiClient) -> None:
    response = http.get("/violations", params={"since": "yesterday"})

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", "since"]
    assert "'yesterday' is neither an ISO 8601 datetime nor a relative time" in error["msg"]
    with pytest.raises(ApiError, match=r"GET /violations failed with HTTP 422: since: 'yester"):
        api.violations(since="yesterday")
    with pytest.raises(ApiError, match="limit: Input should be greater than or equal to 1"):
        api.violations(limit=0)


def test_an_unknown_org_is_a_422_listing_the_known_ones(http: TestClient, api: ApiClient) -> None:
    known = "known orgs: connectx, linkxup, xpertaize"
    for path in ("/violations", "/history", f"/lineage/{SUBJECT}"):
        response = http.get(path, params={"org": "nosuch"})
        assert response.status_code == 422, path
        [error] = response.json()["detail"]
        assert error["loc"] == ["query", "org"]
        assert error["msg"] == f"unknown org 'nosuch'; {known}"
        assert "alice" not in response.text
    with pytest.raises(ApiError, match=f"HTTP 422: org: unknown org 'nosuch'; {known}$"):
        api.violations(org="nosuch")
    with pytest.raises(ApiError, match=f"org: unknown org 'nosuch'; {known}$"):
        api.lineage(SUBJECT, org="nosuch")


def test_orgs_and_rule_ids_match_in_any_case(api: ApiClient) -> None:
    assert [v.violation_id for v in api.violations(rule="lx-adnet-001")] == ["v3", "v1"]
    assert [v.violation_id for v in api.violations(org="ConnectX", rule="cx-enc-004")] == ["v2"]
    assert api.lineage(SUBJECT, org="LINKXUP").subject_pseudonym == PSEUDONYM


def test_an_unknown_rule_is_a_422_listing_the_valid_ones(api: ApiClient) -> None:
    with pytest.raises(ApiError, match=r"rule: unknown rule id 'XX-1'; known rule ids: CX-.*") as e:
        api.violations(rule="XX-1")
    assert "LX-ADNET-001" in str(e.value) and "XA-EMP-001" in str(e.value)
    with pytest.raises(ApiError, match=r"rule: unknown rule id 'LX-ADNET-001'; org connectx's"):
        api.violations(org="connectx", rule="LX-ADNET-001")
    with pytest.raises(ApiError) as e:
        api.violations(org="connectx", rule="LX-ADNET-001")
    assert "CX-ENC-004" in str(e.value) and "LX-" not in str(e.value).split("rule ids:")[1]


def test_orgs_and_rules_of_stored_violations_stay_queryable() -> None:
    # Judged under an earlier policy that had this org and rule; the live one has neither.
    old = Store.open(store_dsn())
    try:
        old.write_violations([violation("v-old", org="formerco", rule_id="FC-OLD-001")])
        with TestClient(create_app(SETTINGS, old), headers=bearer(old)) as http:
            api = ApiClient(str(http.base_url), http=http)
            found = api.violations(org="FORMERCO", rule="fc-old-001")
            with pytest.raises(ApiError, match="known orgs: connectx, formerco, linkxup, xpert"):
                api.violations(org="nosuch")
    finally:
        old.close()

    assert [v.violation_id for v in found] == ["v-old"]


def test_violations_filter_by_severity() -> None:
    graded = Store.open(store_dsn())
    try:
        graded.write_violations(
            [
                violation("v-low", severity="low", occurred_at=T0),
                violation("v-high", severity="high", occurred_at=T0 + timedelta(minutes=1)),
                violation("v-crit", severity="critical", occurred_at=T0 + timedelta(minutes=2)),
            ]
        )
        with TestClient(create_app(SETTINGS, graded), headers=bearer(graded)) as http:
            api = ApiClient(str(http.base_url), http=http)
            critical = api.violations(severity="critical")
            serious = api.violations(severity=["high", "critical"])
            everything = api.violations()
            bad = http.get("/violations", params={"severity": "urgent"})
    finally:
        graded.close()

    assert [v.violation_id for v in critical] == ["v-crit"]
    assert [v.violation_id for v in serious] == ["v-crit", "v-high"]
    assert [v.violation_id for v in everything] == ["v-crit", "v-high", "v-low"]
    assert bad.status_code == 422
    [error] = bad.json()["detail"]
    assert error["loc"] == ["query", "severity", 0]
    assert "'low', 'medium', 'high' or 'critical'" in error["msg"]


@pytest.mark.parametrize(
    ("path", "takes"),
    [
        ("/violations", "limit, org, retracted, rule, severity, since"),
        ("/lineage/alice", "org"),
        ("/stats", "no query parameters"),
    ],
)
def test_an_unknown_query_parameter_is_a_422_naming_it(
    http: TestClient, path: str, takes: str
) -> None:
    response = http.get(path, params={"org": "linkxup", "colour": "red"})

    assert response.status_code == 422
    errors = {tuple(e["loc"]): e["msg"] for e in response.json()["detail"]}
    route = "/lineage/{subject_id}" if path.startswith("/lineage") else path
    assert errors[("query", "colour")] == f"unknown query parameter; GET {route} takes: {takes}"
    assert {e["input"] for e in response.json()["detail"] if e["loc"][1] == "colour"} == {"red"}
    assert "alice" not in response.text


def test_parse_since() -> None:
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert parse_since("15m", now) == now - timedelta(minutes=15)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("2025-03-01T10:00:00", now) == datetime(2025, 3, 1, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="'-5m' is neither"):
        parse_since("-5m", now)


def test_lineage_names_the_subject_only_by_pseudonym(http: TestClient, api: ApiClient) -> None:
    lineage = api.lineage(SUBJECT, org="linkxup")

    assert lineage.subject_pseudonym == PSEUDONYM
    assert lineage.subject_kind == "customer"
    assert [(e.event_id, e.action, e.data_category) for e in lineage.edges] == [
        ("e1", "accessed", "user.name"),
        ("e2", "shared", "user.contact.email"),
        ("e2", "shared", "user.name"),
    ]
    summary = lineage.summary
    assert summary.categories == ["user.contact.email", "user.name"]
    assert summary.uses == ["essential.service", "marketing.advertising"]
    assert [(a.kind, a.id, a.categories) for a in summary.actors] == [
        ("service", "ads-targeting", ["user.contact.email", "user.name"])
    ]
    assert [(r.kind, r.id, r.country, r.categories) for r in summary.recipients] == [
        ("ad_network", "adnet-42", "FR", ["user.contact.email", "user.name"])
    ]
    assert [v.violation_id for v in summary.violations] == ["v1"]
    raw = http.get(f"/lineage/{SUBJECT}", params={"org": "linkxup"})
    assert raw.status_code == 200
    assert "alice" not in raw.text


def test_lineage_of_an_unknown_subject_is_empty(api: ApiClient) -> None:
    lineage = api.lineage("nobody", org="linkxup")

    assert (lineage.edges, lineage.summary.violations, lineage.subject_kind) == ([], [], None)


def test_lineage_needs_the_org(http: TestClient, api: ApiClient) -> None:
    response = http.get("/lineage/alice")

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "org"]
    with pytest.raises(ApiError, match="org: String should have at least 1 character") as error:
        api.lineage(SUBJECT, org="")
    assert "alice" not in str(error.value)


def test_rejected_inputs_are_shown_without_their_bytes(http: TestClient, api: ApiClient) -> None:
    newest, oldest = api.rejected(limit=10)

    assert (newest.rejection_id, newest.reason, newest.size_bytes) == (
        "privacy.events-0-10",
        "not JSON",
        2,
    )
    assert (newest.event_id, newest.event_type) == (None, None)
    assert (oldest.field, oldest.event_id, oldest.event_type, oldest.event_source) == (
        "data.recipient",
        "bad-1",
        "privacy.data.shared",
        "/ads",
    )
    assert "alice" not in http.get("/rejected").text


def test_stats(api: ApiClient) -> None:
    stats = api.stats()

    assert (stats.events, stats.violations, stats.lineage_edges, stats.rejected_events) == (
        3,
        3,
        5,
        2,
    )
    assert [(r.rule_id, r.count) for r in stats.violations_by_rule] == [
        ("LX-ADNET-001", 2),
        ("CX-ENC-004", 1),
    ]
    assert stats.violations_by_org == {"linkxup": 2, "connectx": 1}


def test_latency_is_the_event_to_store_lag_of_events_stored_in_the_window() -> None:
    lagged = Store.open(store_dsn())
    try:
        now = datetime.now(UTC)
        # Events 1 to 100 seconds old when stored: p50 50 to 51 s (t-digest picks within the
        # middle pair), p99 about 99 s.
        lags = range(1, 101)
        lagged.write_audit(
            [audit(f"e{lag}", event_time=now - timedelta(seconds=lag)) for lag in lags]
        )
        with TestClient(create_app(SETTINGS, lagged), headers=bearer(lagged)) as http:
            api = ApiClient(str(http.base_url), http=http)
            everything, recent, none_yet = (
                api.latency(),
                api.latency(since="10m"),
                api.latency(since=now + timedelta(hours=1)),
            )
            schema = http.get("/openapi.json").json()
            bad = http.get("/stats/latency", params={"since": "soon"})
    finally:
        lagged.close()

    # The insert happens after `now`, so each lag is its offset plus a little.
    slack = 5000
    assert everything.events == 100
    assert everything.p50_ms is not None and 50_000 <= everything.p50_ms <= 51_000 + slack
    assert everything.p99_ms is not None and 99_000 <= everything.p99_ms <= 99_010 + slack
    assert everything.max_ms is not None and 100_000 <= everything.max_ms <= 100_000 + slack
    assert everything.last_stored_at is not None and everything.last_stored_at >= now
    assert recent == everything
    assert (none_yet.events, none_yet.p50_ms, none_yet.last_stored_at) == (0, None, None)
    assert "/stats/latency" in schema["paths"]
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "since"]


def test_health_without_and_with_an_ingest_loop(store: Store, api: ApiClient) -> None:
    health = api.health()
    assert (health.status, health.reasons, health.store.ok, health.ingest) == ("ok", [], True, None)

    stopped = Ingestor(SETTINGS, store)  # never started
    with TestClient(create_app(SETTINGS, store, stopped)) as http:
        health = ApiClient(str(http.base_url), http=http).health()
    assert (health.status, health.reasons) == ("degraded", ["ingest is not running"])
    assert health.ingest is not None and health.ingest.running is False


def test_the_dashboard_and_the_api_schema_are_served(http: TestClient) -> None:
    page = http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    paths = http.get("/openapi.json").json()["paths"]
    assert {"/health", "/violations", "/lineage/{subject_id}", "/rejected", "/stats"} <= set(paths)
    assert http.get("/docs").status_code == 200


@pytest.mark.parametrize(
    ("page", "script"), [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc")]
)
def test_the_api_docs_load_their_assets_from_the_app_itself(
    http: TestClient, page: str, script: str
) -> None:
    html = http.get(page)
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)
    scripts = [url for url in assets if script in url]

    assert html.status_code == 200
    assert scripts, html.text
    assert "//" not in html.text.replace("http://testserver", ""), "an asset from another host"
    for url in assets:
        asset = http.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
    assert http.get(scripts[0]).headers["content-type"].startswith("text/javascript")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_an_unreachable_service_is_reported_clearly() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with (
        ApiClient(url) as client,
        pytest.raises(ApiError, match=rf"not reachable at {url}: is `privtrail up` running\?"),
    ):
        client.stats()


@pytest.mark.timeout(90)
def test_the_service_answers_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PRIVTRAIL_DATA_DIR": str(tmp_path),
        "PRIVTRAIL_API_PORT": str(port),
        # Nothing listens there: the API must work while ingest waits for Kafka.
        "PRIVTRAIL_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
    }
    code = (
        "from privtrail.serve import serve; from config.settings import Settings; serve(Settings())"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        health = wait_for_health(ApiClient(f"http://127.0.0.1:{port}"), process)
        assert health.store.ok and health.ingest is not None and health.ingest.running
        # On loopback with no token configured, the service writes an admin token for you.
        token_file = tmp_path / "api-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        client = ApiClient(f"http://127.0.0.1:{port}", token=token_file.read_text().strip())
        assert client.lineage(SUBJECT, org="linkxup").edges == []

        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=45)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, output
    assert "/lineage/<subject>?org=linkxup" in output
    assert "alice" not in output
    assert (tmp_path / "clickhouse").is_dir()


def wait_for_health(client: ApiClient, process: subprocess.Popen[str]) -> Health:
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise AssertionError(f"service exited early: {process.communicate()[0]}")
        try:
            return client.health()
        except ApiError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
