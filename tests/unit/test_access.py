"""Access control over the query API's real route table: every role against every route, one
org's token against another org's data, token life (expiry, revocation) and the access log."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import MagicMock

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from config.settings import Settings
from events.tags import pseudonymise
from privtrail.api import create_app
from privtrail.auth import GRANTS, ROLES, RULES, Need, hash_token
from sinks import Rejected
from sinks.clickhouse.access import TOKENS, all_tokens
from sinks.clickhouse.store import Store
from tests.unit.chdb_store import T0, audit, store_dsn, violation
from tests.unit.tokens import bearer, token_id

SETTINGS = Settings(pseudonym_key="test-key")
KEY = b"test-key"
SUBJECT = "subject-7"
# A value for every path parameter of the routes.
PATH_VALUES = {
    "name": "dashboard.js",
    "org": "xpertaize",
    "violation_id": "v-xa",
    "pseudonym": "p-xa",
    "subject_id": SUBJECT,
    "rejection_id": "privacy.events-0-1",
    "token_id": "no-such-token",
}
# Bodies that pass the routes' own validation, so what is tested is the access rule.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/dashboard/violations/{org}/{violation_id}/triage"): {
        "state": "acknowledged",
        "note": "seen",
        "analyst": "ann",
    },
    ("POST", "/tokens"): {"role": "analyst", "orgs": ["xpertaize"], "name": "from the matrix"},
}


def _routes() -> list[tuple[str, str]]:
    # The route table of the real app; the store is not touched while routes are declared.
    app = create_app(SETTINGS, MagicMock(spec=Store, database="unused"))
    # Routes of included routers come as contexts that carry their full path.
    return sorted(
        (method, str(route.path))
        for route in iter_route_contexts(app.routes)
        if isinstance(route.original_route, APIRoute)
        for method in route.methods or ()
    )


ROUTES = _routes()


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    opened = Store.open(store_dsn())
    xa = pseudonymise(KEY, "xpertaize", SUBJECT)
    lx = pseudonymise(KEY, "linkxup", SUBJECT)
    opened.write_audit(
        [
            audit("e-lx-1", subject_pseudonym=lx),
            audit("e-lx-2", subject_pseudonym=lx, event_time=T0 + timedelta(minutes=1)),
            audit("e-xa", org="xpertaize", subject_pseudonym=xa, source="/xpertaize/hr"),
        ]
    )
    now = datetime.now(UTC)
    opened.write_violations(
        [
            violation("v-lx-1", subject_pseudonym=lx, occurred_at=now - timedelta(hours=1)),
            violation("v-lx-2", subject_pseudonym=lx, occurred_at=now - timedelta(hours=2)),
            violation(
                "v-xa",
                org="xpertaize",
                rule_id="XA-EMP-001",
                event_id="e-xa",
                subject_pseudonym=xa,
                occurred_at=now - timedelta(hours=3),
            ),
        ]
    )
    opened.write_rejected(
        [
            Rejected(
                rejection_id="privacy.events-0-1",
                received_at=T0,
                source_topic="privacy.events",
                source_partition=0,
                source_offset=1,
                field=None,
                reason="not JSON",
                raw=b"\xffraw bytes",
                key=None,
            )
        ]
    )
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def http(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(SETTINGS, store)) as client:
        yield client


@pytest.fixture(scope="module")
def role_headers(store: Store) -> dict[str, dict[str, str]]:
    return {role: bearer(store, role) for role in ROLES}


def _call(http: TestClient, method: str, path: str, headers: dict[str, str]) -> Any:
    url = path.replace(":path}", "}").format(**PATH_VALUES)
    body = BODIES.get((method, path))
    return http.request(method, url, headers=headers, json=body)


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_every_route_has_an_access_rule(method: str, path: str) -> None:
    assert (method, path) in RULES, f"{method} {path} has no rule in privtrail/auth.py RULES"


def test_every_rule_names_a_route_that_exists() -> None:
    assert sorted(RULES) == ROUTES


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_each_role_reaches_exactly_the_routes_its_rule_grants(
    http: TestClient, role_headers: dict[str, dict[str, str]], role: str, method: str, path: str
) -> None:
    rule = RULES[(method, path)]
    response = _call(http, method, path, role_headers[role])

    if rule.need is Need.PUBLIC or rule.need in GRANTS[role]:
        assert response.status_code not in (401, 403), response.text
    else:
        assert response.status_code == 403, response.text
        assert f"role {role} may not {method} {path}" in response.json()["detail"]


def test_the_schema_states_which_operations_need_a_token_and_how_they_refuse(
    http: TestClient,
) -> None:
    schema = http.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A privtrail API token: ptk_...",
    }
    refusal = {"application/json": {"schema": {"$ref": "#/components/schemas/Refusal"}}}
    documented = 0
    for method, path in ROUTES:
        operation = schema["paths"].get(path.replace(":path}", "}"), {}).get(method.lower())
        if operation is None:  # left out of the schema: the dashboard's page and assets
            continue
        documented += 1
        if RULES[(method, path)].need is Need.PUBLIC:
            assert "security" not in operation, path
            assert not {"401", "403"} & set(operation["responses"]), path
        else:
            assert operation["security"] == [{"HTTPBearer": []}], path
            for status in ("401", "403"):
                assert operation["responses"][status]["content"] == refusal, (status, path)
    assert documented == sum(len(operations) for operations in schema["paths"].values())
    # Stating access keeps what the schema states of the parameters' values.
    [org] = [p for p in schema["paths"]["/violations"]["get"]["parameters"] if p["name"] == "org"]
    assert "xpertaize" in org["schema"]["enum"]


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_without_a_valid_token_only_public_routes_answer(
    http: TestClient, method: str, path: str
) -> None:
    public = RULES[(method, path)].need is Need.PUBLIC
    for headers in ({}, {"Authorization": "Bearer ptk_guessed"}, {"Authorization": "Basic x"}):
        response = _call(http, method, path, headers)
        if public:
            assert response.status_code not in (401, 403)
        else:
            assert response.status_code == 401, response.text
            assert response.headers["www-authenticate"] == "Bearer"


def test_one_orgs_token_sees_none_of_another_orgs_rows_or_counts(
    http: TestClient, store: Store
) -> None:
    xa = bearer(store, "admin", ("xpertaize",))
    answers = {
        path: http.get(path, headers=xa, params=params)
        for path, params in [
            ("/violations", {}),
            ("/history", {}),
            ("/stats", {}),
            ("/dashboard/summary", {}),
            ("/dashboard/chart", {"range": "7d"}),
            ("/dashboard/violations", {}),
            ("/dashboard/export.json", {}),
            ("/dashboard/export.csv", {}),
            ("/tokens", {}),
            ("/access-log", {}),
            (f"/lineage/{SUBJECT}", {"org": "xpertaize"}),
        ]
    }
    for path, response in answers.items():
        assert response.status_code == 200, (path, response.text)
        assert "linkxup" not in response.text, path
        assert "v-lx" not in response.text and "e-lx" not in response.text, path

    stats = answers["/stats"].json()
    assert (stats["events"], stats["violations"], stats["lineage_edges"]) == (1, 1, 2)
    assert stats["rejected_events"] is None
    summary = answers["/dashboard/summary"].json()
    assert (summary["open_violations"], summary["events"], summary["orgs"]) == (
        1,
        1,
        ["xpertaize"],
    )
    chart = answers["/dashboard/chart"].json()["buckets"]
    assert sum(b["high"] + b["critical"] + b["medium"] + b["low"] for b in chart) == 1
    assert [r["event_id"] for r in answers["/history"].json()["records"]] == ["e-xa"]


def test_one_orgs_token_is_refused_another_orgs_filters_and_paths(
    http: TestClient, store: Store
) -> None:
    xa = bearer(store, "admin", ("xpertaize",))
    refused = [
        http.get("/violations", headers=xa, params={"org": "linkxup"}),
        http.get("/history", headers=xa, params={"org": "LinkXup"}),
        http.get(f"/lineage/{SUBJECT}", headers=xa, params={"org": "linkxup"}),
        http.get("/dashboard/summary", headers=xa, params={"org": "linkxup"}),
        http.get("/dashboard/violations", headers=xa, params={"org": "linkxup"}),
        http.get("/dashboard/violations/linkxup/v-lx-1", headers=xa),
        http.get("/dashboard/subjects/linkxup/p", headers=xa),
        http.post(
            "/dashboard/violations/linkxup/v-lx-1/triage",
            headers=xa,
            json={"state": "resolved", "note": "", "analyst": "x"},
        ),
        http.post("/tokens", headers=xa, json={"role": "admin", "orgs": ["*"], "name": "up"}),
        http.get("/access-log/subjects/s", headers=xa, params={"org": "linkxup"}),
        # Store-wide answers: rejected inputs and lag belong to no org.
        http.get("/rejected", headers=xa),
        http.get("/stats/latency", headers=xa),
    ]
    for response in refused:
        assert response.status_code == 403, (response.request.url, response.text)
        assert "v-lx" not in response.text


def test_a_token_for_several_orgs_reads_each_of_them(http: TestClient, store: Store) -> None:
    both = bearer(store, "analyst", ("linkxup", "xpertaize"))
    ids = [v["violation_id"] for v in http.get("/violations", headers=both).json()]
    only = http.get("/violations", headers=both, params={"org": "xpertaize"}).json()

    assert sorted(ids) == ["v-lx-1", "v-lx-2", "v-xa"]
    assert [v["violation_id"] for v in only] == ["v-xa"]


def test_only_engineers_of_every_org_read_raw_rejected_bytes(
    http: TestClient, store: Store
) -> None:
    engineer = bearer(store, "engineer")
    raw = http.get("/rejected/privacy.events-0-1/raw", headers=engineer)

    assert raw.status_code == 200 and raw.content == b"\xffraw bytes"
    assert http.get("/rejected/nope/raw", headers=engineer).status_code == 404
    assert (
        http.get("/rejected/privacy.events-0-1/raw", headers=bearer(store, "auditor")).status_code
        == 403
    )


def test_tokens_are_stored_hashed_and_shown_once(http: TestClient, store: Store) -> None:
    admin = bearer(store)
    created = http.post(
        "/tokens", headers=admin, json={"role": "auditor", "orgs": ["XpertAIze"], "name": "ann"}
    )
    token = created.json()["token"]
    rows = store.query_rows(f"SELECT * FROM {store.database}.{TOKENS}", {})

    assert created.status_code == 201 and created.json()["orgs"] == ["xpertaize"]
    assert token.startswith("ptk_") and len(token) > 40
    assert token not in json.dumps(rows, default=str)
    assert hash_token(token) in {row["token_hash"] for row in rows}
    listed = http.get("/tokens", headers=admin).text
    assert token not in listed and hash_token(token) not in listed
    assert http.get("/violations", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    logged = http.get("/access-log", headers=admin, params={"token_id": token_id(store, admin)})
    assert ("POST", "/tokens", 201) in {
        (e["method"], e["endpoint"], e["status"]) for e in logged.json()
    }


def test_a_revoked_token_is_refused_from_the_next_request_on(
    http: TestClient, store: Store
) -> None:
    admin = bearer(store)
    issued = http.post(
        "/tokens", headers=admin, json={"role": "analyst", "orgs": ["linkxup"], "name": "bob"}
    ).json()
    headers = {"Authorization": f"Bearer {issued['token']}"}
    assert http.get("/violations", headers=headers).status_code == 200

    revoked = http.delete(f"/tokens/{issued['token_id']}", headers=admin)
    refused = http.get("/violations", headers=headers)

    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert refused.status_code == 401
    assert refused.json()["detail"].startswith(f"token {issued['token_id']} was revoked at")


def test_an_expired_token_is_refused(http: TestClient, store: Store) -> None:
    expired = bearer(store, "analyst", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    response = http.get("/violations", headers=expired)

    assert response.status_code == 401
    assert re.search(r"token \w+ expired at ", response.json()["detail"])


def test_an_admin_of_one_org_manages_only_that_orgs_tokens(http: TestClient, store: Store) -> None:
    lx_admin = bearer(store, "admin", ("linkxup",))
    other = http.post(
        "/tokens", headers=bearer(store), json={"role": "analyst", "orgs": ["*"], "name": "all"}
    ).json()

    listed = http.get("/tokens", headers=lx_admin).json()
    assert all(token["orgs"] == ["linkxup"] for token in listed)
    assert http.delete(f"/tokens/{other['token_id']}", headers=lx_admin).status_code == 404
    wider = {"role": "analyst", "orgs": ["linkxup", "xpertaize"], "name": "x"}
    assert http.post("/tokens", headers=lx_admin, json=wider).status_code == 403


def test_a_bad_token_request_names_the_problem(http: TestClient, store: Store) -> None:
    admin = bearer(store)
    unknown = http.post(
        "/tokens", headers=admin, json={"role": "analyst", "orgs": ["nosuch"], "name": "x"}
    )
    bad_role = http.post(
        "/tokens", headers=admin, json={"role": "root", "orgs": ["*"], "name": "x"}
    )

    assert unknown.status_code == 422 and "unknown org 'nosuch'" in unknown.text
    assert bad_role.status_code == 422 and "role" in bad_role.text


@pytest.mark.parametrize(
    ("field", "value"), [("expires_in_days", True), ("expires_in_days", "30"), ("expires", 30)]
)
def test_a_token_request_with_a_wrong_type_or_unknown_field_is_refused(
    http: TestClient, store: Store, field: str, value: object
) -> None:
    body = {"role": "analyst", "orgs": ["*"], "name": "x", field: value}
    refused = http.post("/tokens", headers=bearer(store), json=body)

    assert refused.status_code == 422 and field in refused.text
    assert all(token.name != "x" for token in all_tokens(store))


def test_the_access_log_answers_who_looked_at_a_subjects_lineage(
    http: TestClient, store: Store
) -> None:
    auditor = bearer(store, "auditor")
    looker = bearer(store, "auditor", ("xpertaize",))
    stranger = bearer(store, "auditor", ("linkxup",))
    assert (
        http.get(f"/lineage/{SUBJECT}", headers=looker, params={"org": "xpertaize"}).status_code
        == 200
    )
    assert (
        http.get(f"/lineage/{SUBJECT}", headers=stranger, params={"org": "xpertaize"}).status_code
        == 403
    )

    found = http.get(
        f"/access-log/subjects/{SUBJECT}", headers=auditor, params={"org": "xpertaize"}
    )
    entries = [e for e in found.json() if e["endpoint"] == "/lineage/{subject_id:path}"]

    pseudonym = pseudonymise(KEY, "xpertaize", SUBJECT)
    assert found.status_code == 200
    assert {(e["status"], e["role"], e["orgs"][0]) for e in entries} >= {
        (200, "auditor", "xpertaize"),
        (403, "auditor", "xpertaize"),
    }
    assert all(e["subject_pseudonym"] == pseudonym for e in entries)
    assert SUBJECT not in found.text


def test_every_request_is_logged_with_its_token_route_and_status(
    http: TestClient, store: Store
) -> None:
    analyst = bearer(store, "analyst", ("linkxup",))
    http.get("/violations", headers=analyst, params={"org": "linkxup"})
    http.get("/history", headers=analyst)  # refused: analysts read no history
    http.get("/violations", headers={"Authorization": "Bearer ptk_wrong"})
    admin = bearer(store)

    mine = http.get(
        "/access-log", headers=admin, params={"token_id": token_id(store, analyst)}
    ).json()
    anonymous = http.get("/access-log", headers=admin, params={"limit": 1000}).json()

    assert [(e["method"], e["endpoint"], e["status"], e["orgs"]) for e in mine] == [
        ("GET", "/history", 403, []),
        ("GET", "/violations", 200, ["linkxup"]),
    ]
    assert any(e["token_id"] == "" and e["status"] == 401 for e in anonymous)
    assert all(e["access_id"] for e in anonymous)
    assert len({e["access_id"] for e in anonymous}) == len(anonymous)


def test_an_orgs_auditor_reads_only_its_orgs_access_log(http: TestClient, store: Store) -> None:
    http.get("/violations", headers=bearer(store, "analyst", ("linkxup",)))
    entries = http.get("/access-log", headers=bearer(store, "auditor", ("xpertaize",))).json()

    assert entries
    assert all(e["orgs"] and set(e["orgs"]) <= {"xpertaize"} for e in entries)


def test_public_routes_are_not_logged(http: TestClient, store: Store) -> None:
    admin = bearer(store)
    before = len(http.get("/access-log", headers=admin, params={"limit": 10000}).json())
    for path in ("/health", "/", "/dashboard/assets/dashboard.js", "/openapi.json"):
        assert http.get(path).status_code == 200, path
    after = http.get("/access-log", headers=admin, params={"limit": 10000}).json()

    # Only the first access-log read itself was added.
    assert len(after) == before + 1


def test_a_wrong_method_names_every_method_the_path_takes(http: TestClient) -> None:
    # GET and POST /tokens are two routes: the answer names both, not the first one matched.
    response = http.request("PUT", "/tokens")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
