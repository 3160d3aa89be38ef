"""`/history` over a real chDB store, and a replay that reads its history through the API."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from rich.console import Console
from typer.testing import CliRunner

from config.settings import Settings
from events.tags import pseudonymise
from privtrail.api import create_app
from privtrail.cli import app
from privtrail.client import ApiClient, ApiError
from privtrail.replay import LIVE_UNCHANGED, render, replay_history
from sinks.clickhouse.store import Store
from streams.rules import PolicyError
from streams.rules.rejudge import ReplayError, event_from_audit
from tests.unit.chdb_store import store_dsn
from tests.unit.test_replay import (
    EVERY_TYPE,
    KEY,
    POLICY,
    REPO,
    SPARSE,
    as_pseudonymous,
    at,
    candidate_policies,
    judged,
    keys,
    parsed,
    small_history,
)
from tests.unit.tokens import bearer

SETTINGS = Settings(pseudonym_key=KEY.decode(), policies_dir=REPO / "policies")


def serving(records_of: list[list[dict[str, object]]]) -> Iterator[TestClient]:
    store = Store.open(store_dsn())
    for documents in records_of:
        store.write_audit(judged(documents))
    try:
        with TestClient(create_app(SETTINGS, store), headers=bearer(store)) as http:
            yield http
    finally:
        store.close()


def client_of(http: TestClient) -> ApiClient:
    return ApiClient(str(http.base_url), http=http)


@pytest.fixture(scope="module")
def every_type_http() -> Iterator[TestClient]:
    # Written twice: a duplicate (as after a worker's retry) must come back once.
    yield from serving([EVERY_TYPE + SPARSE, EVERY_TYPE[:3]])


@pytest.fixture
def every_type(every_type_http: TestClient) -> ApiClient:
    return client_of(every_type_http)


@pytest.fixture(scope="module")
def small_http() -> Iterator[TestClient]:
    yield from serving([small_history()])


@pytest.fixture
def small(small_http: TestClient) -> ApiClient:
    return client_of(small_http)


def ordered_ids(documents: list[dict[str, object]]) -> list[str]:
    return [str(d["id"]) for d in sorted(documents, key=lambda d: (str(d["time"]), str(d["id"])))]


def test_history_pages_through_every_event_once_in_event_time_order(every_type: ApiClient) -> None:
    records = every_type.history(page_size=3)

    assert [r.event_id for r in records] == ordered_ids(EVERY_TYPE + SPARSE)
    rebuilt = {r.event_id: event_from_audit(r).model_dump(mode="json") for r in records}
    assert rebuilt == {str(doc["id"]): as_pseudonymous(parsed(doc)) for doc in EVERY_TYPE + SPARSE}


def test_the_store_streams_history_in_pages() -> None:
    store = Store.open(store_dsn())
    try:
        store.write_audit(judged(EVERY_TYPE + SPARSE))
        store.write_audit(judged(EVERY_TYPE[:2]))

        streamed = store.history(page_size=2)

        assert [r.event_id for r in streamed] == ordered_ids(EVERY_TYPE + SPARSE)
        window = store.history(since=at(0.1), until=at(0.3), org="linkxup", page_size=1)
        assert [r.event_id for r in window] == ["e-share", "p-share", "e-consent", "p-consent"]
    finally:
        store.close()


def test_history_is_selected_by_event_time_and_org(every_type: ApiClient) -> None:
    window = every_type.history(since=at(0.2), until=at(0.4), page_size=2)

    assert [r.event_id for r in window] == ["e-consent", "p-consent", "e-settings", "p-settings"]
    assert every_type.history(since="2026-01-01T09:00:00+00:00", until=at(0.1)) == [
        r for r in every_type.history() if r.event_id in ("e-access", "p-access")
    ]
    assert every_type.history(org="xpertaize") == []


def test_bad_history_parameters_are_a_422_naming_them(
    every_type_http: TestClient, every_type: ApiClient
) -> None:
    for name, value in (("cursor", "not-a-cursor"), ("until", "tomorrow")):
        response = every_type_http.get("/history", params={name: value})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", name]
    with pytest.raises(ApiError, match="GET /history failed with HTTP 422: until: 'tomorrow'"):
        every_type.history(until="tomorrow")


def test_the_history_route_and_its_paging_are_documented(every_type_http: TestClient) -> None:
    route = every_type_http.get("/openapi.json").json()["paths"]["/history"]["get"]

    assert "next_cursor" in route["description"]
    assert {p["name"] for p in route["parameters"]} == {"since", "until", "org", "cursor", "limit"}


def test_a_replay_through_the_api_reports_exactly_the_candidates_changes(
    small: ApiClient, tmp_path: Path
) -> None:
    candidate = candidate_policies(tmp_path / "candidate")

    replay = replay_history(SETTINGS, candidate, client=small)

    report = replay.report
    assert (report.events, report.now) == (7, at(20))
    assert replay.stored_versions == [POLICY.version] == [report.baseline_version]
    assert (replay.dropped_rules, replay.new_rules) == (["LX-ADNET-001"], [])
    [adnet, close] = report.changed
    pseudonym = {s: pseudonymise(KEY, "linkxup", s) for s in "abcd"}
    assert (adnet.rule_id, keys(adnet.added), keys(adnet.removed)) == (
        "LX-ADNET-001",
        set(),
        {(pseudonym["a"], "a-share", None)},
    )
    assert close.rule_id == "LX-CLOSE-008"
    assert keys(close.added) == {
        (pseudonym["b"], None, at(10)),
        (pseudonym["c"], None, at(10)),
        (pseudonym["d"], None, at(-30)),
    }
    assert keys(close.removed) == {(pseudonym["d"], None, at(-10))}


def test_until_bounds_the_history_and_is_the_now_of_deadlines(
    small: ApiClient, tmp_path: Path
) -> None:
    candidate = candidate_policies(tmp_path / "candidate")

    replay = replay_history(SETTINGS, candidate, until=at(5).isoformat(), client=small)

    report = replay.report
    assert (report.events, report.now, replay.until) == (5, at(5), at(5))
    [adnet, close] = report.changed
    d = pseudonymise(KEY, "linkxup", "d")
    assert (len(adnet.removed), keys(close.added), keys(close.removed)) == (
        1,
        {(d, None, at(-30))},
        {(d, None, at(-10))},
    )


def test_an_invalid_candidate_is_refused_before_anything_is_fetched(tmp_path: Path) -> None:
    candidate = candidate_policies(tmp_path / "candidate")
    policy = candidate / "xpertaize.yaml"
    lines = policy.read_text().splitlines(keepends=True)
    line = next(i for i, text in enumerate(lines) if "severity: high" in text)
    lines[line] = lines[line].replace("high", "urgent")
    policy.write_text("".join(lines))
    nowhere = ApiClient("http://127.0.0.1:9")

    with pytest.raises(PolicyError) as error:
        replay_history(SETTINGS, candidate, client=nowhere)
    [problem] = error.value.problems
    assert str(problem).startswith(f"{policy}:{line + 1}: ")
    assert "severity" in problem.message


def test_the_cli_prints_each_problem_of_an_invalid_candidate_and_exits_1(tmp_path: Path) -> None:
    candidate = candidate_policies(tmp_path / "candidate")
    (candidate / "connectx.yaml").write_text("org: connectx\nrules: []\ncolour: red\n")

    result = CliRunner().invoke(app, ["replay", "--policy", str(candidate)])

    assert result.exit_code == 1
    problems = [line for line in result.stderr.splitlines() if line]
    assert problems and all(p.startswith(f"{candidate / 'connectx.yaml'}:") for p in problems)
    assert any(p.startswith(f"{candidate / 'connectx.yaml'}:3: ") for p in problems), problems
    assert result.stdout == ""


def test_an_empty_window_and_backwards_bounds(small: ApiClient, tmp_path: Path) -> None:
    candidate = candidate_policies(tmp_path / "candidate")

    empty = replay_history(SETTINGS, candidate, since=at(30).isoformat(), client=small)
    assert (empty.report.events, empty.report.rules) == (0, [])
    with pytest.raises(
        ReplayError, match=r"--since \(2026-02-01T00:00:00\+00:00\) must be before --until"
    ):
        replay_history(SETTINGS, candidate, since="2026-02-01", until="2026-01-01", client=small)


def test_the_rendering_shows_rules_examples_and_that_live_results_stand(
    small: ApiClient, tmp_path: Path
) -> None:
    replay = replay_history(SETTINGS, candidate_policies(tmp_path / "candidate"), client=small)
    out = io.StringIO()

    render(replay, Console(file=out, width=250, color_system=None), examples=2)

    text = out.getvalue()
    assert "Replayed 7 stored events" in text
    assert f"baseline {POLICY.version} (live policy" in text
    lines = {line.split("│")[1].strip(): line for line in text.splitlines() if "│ LX-" in line}
    assert [cell.strip() for cell in lines["LX-CLOSE-008"].split("│")[1:-1]] == [
        "LX-CLOSE-008",
        "linkxup",
        "1",
        "3",
        "+3",
        "-1",
    ]
    assert "LX-CLOSE-008 added (first 2 of 3):" in text
    assert "Rules not in the candidate: LX-ADNET-001" in text
    assert f"subject {pseudonymise(KEY, 'linkxup', 'a')}, event a-share" in text
    assert " ".join(LIVE_UNCHANGED.split()) in " ".join(text.split())
