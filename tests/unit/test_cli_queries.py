"""`privtrail violations` and `privtrail lineage` against a real query API over HTTP: readable
at 80 columns, and an unknown org, rule, severity or subject is said plainly."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import uvicorn
from typer.testing import CliRunner, Result

from config.settings import Settings
from events.tags import pseudonymise
from privtrail import cli
from privtrail.api import create_app
from privtrail.brokers.apache_kafka import free_port
from sinks.clickhouse.store import Store
from tests.unit.chdb_store import T0, audit, store_dsn, violation
from tests.unit.tokens import bearer, token_of

SUBJECT = "cand-0042"
PSEUDONYM = pseudonymise(b"test-key", "xpertaize", SUBJECT)
# The CLI's token (PRIVTRAIL_API_TOKEN) for the API on each port.
TOKENS: dict[int, str] = {}
EXPLANATION = (
    "user.job.employment_history and user.contact.email shared with data_broker "
    "talentbrokers-international-recruitment-analytics for marketing.advertising, which "
    "the policy forbids for candidates"
)


def seed(store: Store) -> None:
    subject = {"org": "xpertaize", "subject_pseudonym": PSEUDONYM, "subject_kind": "candidate"}
    store.write_audit(
        [
            audit(
                "e-read",
                **subject,
                event_type="privacy.data.accessed",
                actor_id="recruiter-console",
                data_categories=["user.job.employment_history"],
                data_use="employment.recruitment",
                recipient_id=None,
                recipient_kind=None,
                recipient_country=None,
            ),
            audit(
                "e-sold",
                **subject,
                event_time=T0 + timedelta(hours=1),
                actor_id="partner-sync",
                data_categories=["user.job.employment_history", "user.contact.email"],
                recipient_id="talentbrokers-international-recruitment-analytics",
                recipient_kind="data_broker",
                recipient_country="US",
            ),
        ]
    )
    store.write_violations(
        [
            violation(
                "v-sold",
                org="xpertaize",
                rule_id="XA-SALE-002",
                severity="critical",
                subject_pseudonym=PSEUDONYM,
                subject_kind="candidate",
                event_id="e-sold",
                occurred_at=T0 + timedelta(hours=1),
                explanation=EXPLANATION,
            ),
            violation("v-ads", occurred_at=T0),
        ]
    )


@pytest.fixture(scope="module")
def api_port() -> Iterator[int]:
    store = Store.open(store_dsn())
    seed(store)
    port = free_port()
    TOKENS[port] = token_of(bearer(store, "auditor"))
    config = uvicorn.Config(
        create_app(Settings(pseudonym_key="test-key"), store), port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(timeout=30)
    store.close()


def run(port: int, *args: str, width: int = 80) -> Result:
    env = {
        "PRIVTRAIL_API_PORT": str(port),
        "PRIVTRAIL_PSEUDONYM_KEY": "test-key",
        "PRIVTRAIL_API_TOKEN": TOKENS[port],
        "COLUMNS": str(width),
    }
    return CliRunner().invoke(cli.app, list(args), env=env)


@pytest.mark.parametrize("width", [80, 120])
def test_lineage_is_a_timeline_per_recipient_and_actor_with_the_rules_broken(
    api_port: int, width: int
) -> None:
    result = run(api_port, "lineage", SUBJECT, "--org", "xpertaize", width=width)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= width
    assert "…" not in result.stdout
    text = " ".join(result.stdout.split())
    assert f"Subject {PSEUDONYM} (candidate) in xpertaize" in text
    assert "2 events, 2 data categories, 2 actors, 1 recipient, 1 violation" in text
    assert "Rules broken (1)" in text
    assert f"2025-03-01 13:00:00 XA-SALE-002 critical event e-sold {EXPLANATION}" in text
    assert (
        "Shared with data_broker talentbrokers-international-recruitment-analytics (US) "
        "2025-03-01 13:00:00 user.contact.email, user.job.employment_history for "
        "marketing.advertising by service partner-sync, basis consent breaks XA-SALE-002"
    ) in text
    assert (
        "Accessed by service recruiter-console 2025-03-01 12:00:00 "
        "user.job.employment_history for employment.recruitment, basis consent"
    ) in text
    assert SUBJECT not in result.stdout


def test_lineage_of_a_subject_with_nothing_recorded_says_so(api_port: int) -> None:
    result = run(api_port, "lineage", "nobody", "--org", "xpertaize")

    assert result.exit_code == 1
    assert result.stdout == ""
    message = " ".join(result.stderr.split())
    assert "nothing is recorded for this subject in xpertaize" in message


def test_lineage_as_json_of_a_subject_with_nothing_recorded_is_an_empty_answer(
    api_port: int,
) -> None:
    result = run(api_port, "lineage", "nobody", "--org", "xpertaize", "--json")

    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert (answer["edges"], answer["summary"]["violations"]) == ([], [])


def test_lineage_of_an_unknown_org_lists_the_known_ones(api_port: int) -> None:
    result = run(api_port, "lineage", SUBJECT, "--org", "nosuch")

    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert "org: unknown org 'nosuch'; known orgs: connectx, linkxup, xpertaize" in message


def test_violations_filters_by_severity_and_rule_in_any_case(api_port: int) -> None:
    critical = run(api_port, "violations", "--severity", "critical")
    by_rule = run(api_port, "violations", "--rule", "xa-sale-002", "--org", "XpertAIze")
    both = run(api_port, "violations", "--severity", "critical", "--severity", "high")

    assert critical.exit_code == 0, critical.output
    assert "XA-SALE-002" in critical.stdout and "LX-ADNET-001" not in critical.stdout
    assert "1 violation(s)" in critical.stdout
    assert by_rule.stdout == critical.stdout
    assert "2 violation(s)" in both.stdout


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("--org", "nosuch", "org: unknown org 'nosuch'; known orgs: connectx, linkxup, xpertaize"),
        ("--rule", "XA-NOPE", "rule: unknown rule id 'XA-NOPE'; known rule ids: CX-"),
        ("--severity", "urgent", "severity.0: Input should be 'low', 'medium', 'high' or"),
    ],
)
def test_violations_with_an_unknown_value_lists_the_valid_ones(
    api_port: int, option: str, value: str, error: str
) -> None:
    result = run(api_port, "violations", option, value)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert error in " ".join(result.stderr.split())
