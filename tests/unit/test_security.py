"""The served app answers only its own host names, sends the security headers on every
answer, and the development pseudonym key is announced, or refused beyond loopback."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from config.settings import Settings
from privtrail.api import create_app
from privtrail.cli import app as cli
from privtrail.security import (
    DEV_KEY_WARNING,
    InsecureSettings,
    allowed_hosts,
    pseudonym_key_warning,
    secured,
)
from sinks.clickhouse.store import Store
from tests.unit.chdb_store import store_dsn

SETTINGS = Settings(pseudonym_key="test-key", api_allowed_hosts="audit.example.org, ")


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    opened = Store.open(store_dsn())
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def http(store: Store) -> Iterator[TestClient]:
    served = secured(create_app(SETTINGS, store), SETTINGS)
    with TestClient(served, base_url="http://127.0.0.1:8088") as client:
        yield client


@pytest.mark.parametrize("host", ["evil.example", "attacker.test:8088", "testserver"])
def test_a_foreign_host_header_is_refused(http: TestClient, host: str) -> None:
    response = http.get("/stats", headers={"Host": host})
    assert response.status_code == 400
    assert response.text == "Invalid host header"


@pytest.mark.parametrize(
    "host", ["127.0.0.1:8088", "localhost:8088", "localhost", "audit.example.org"]
)
def test_the_configured_host_names_are_served(http: TestClient, host: str) -> None:
    assert http.get("/health", headers={"Host": host}).status_code == 200


def test_allowed_hosts_follow_the_bind_address() -> None:
    assert allowed_hosts(Settings()) == ["127.0.0.1", "localhost"]
    public = Settings(api_host="0.0.0.0", api_allowed_hosts="audit.example.org,10.0.0.5")
    # Bound beyond loopback, the loopback names are not implied: a rebinding page reaches
    # the service through them just as well.
    assert allowed_hosts(public) == ["0.0.0.0", "audit.example.org", "10.0.0.5"]


@pytest.mark.parametrize(
    "path", ["/", "/dashboard/assets/dashboard.js", "/stats", "/openapi.json", "/nope"]
)
def test_every_answer_carries_the_security_headers(http: TestClient, path: str) -> None:
    headers = http.get(path).headers
    csp = _directives(headers["content-security-policy"])
    assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]
    assert csp["default-src"] == ["'self'"] and csp["frame-ancestors"] == ["'none'"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"


def test_a_refused_host_gets_the_headers_too(http: TestClient) -> None:
    response = http.get("/stats", headers={"Host": "evil.example"})
    assert response.headers["x-frame-options"] == "DENY"


def test_redoc_alone_may_apply_the_styles_it_writes_at_run_time(http: TestClient) -> None:
    csp = _directives(http.get("/redoc").headers["content-security-policy"])
    assert csp["style-src"] == ["'self'", "'unsafe-inline'"]
    assert csp["worker-src"] == ["'self'", "blob:"]
    assert csp["script-src"] == ["'self'"] and csp["frame-ancestors"] == ["'none'"]


def test_swagger_ui_may_run_exactly_its_own_inline_script(http: TestClient) -> None:
    response = http.get("/docs")
    assert response.status_code == 200
    inline = re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL)
    assert inline, response.text
    expected = [
        f"'sha256-{base64.b64encode(hashlib.sha256(part.encode()).digest()).decode()}'"
        for part in inline
    ]
    csp = _directives(response.headers["content-security-policy"])
    assert csp["script-src"] == ["'self'", *expected]
    assert csp["style-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]


def test_the_development_key_is_announced_on_loopback_and_refused_beyond() -> None:
    assert pseudonym_key_warning(Settings()) == DEV_KEY_WARNING
    assert "PRIVTRAIL_PSEUDONYM_KEY" in DEV_KEY_WARNING
    assert pseudonym_key_warning(Settings(pseudonym_key="private")) is None
    assert pseudonym_key_warning(Settings(pseudonym_key="private", api_host="0.0.0.0")) is None
    with pytest.raises(InsecureSettings, match=r"binds to 0\.0\.0\.0.*PRIVTRAIL_PSEUDONYM_KEY"):
        pseudonym_key_warning(Settings(api_host="0.0.0.0"))


@pytest.mark.parametrize("command", ["serve", "up"])
def test_serve_and_up_refuse_the_development_key_beyond_loopback(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PRIVTRAIL_PSEUDONYM_KEY", raising=False)
    monkeypatch.setenv("PRIVTRAIL_API_HOST", "0.0.0.0")
    result = CliRunner().invoke(cli, [command])
    assert result.exit_code == 1
    assert "PRIVTRAIL_PSEUDONYM_KEY" in result.output
    assert "privtrail is up" not in result.output


def test_the_worker_warns_while_the_development_key_is_in_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[Settings] = []
    monkeypatch.setattr("streams.worker.run_worker", started.append)
    monkeypatch.delenv("PRIVTRAIL_PSEUDONYM_KEY", raising=False)
    result = CliRunner().invoke(cli, ["worker"])
    assert result.exit_code == 0 and len(started) == 1
    assert "warning:" in result.output and "PRIVTRAIL_PSEUDONYM_KEY" in result.output
    monkeypatch.setenv("PRIVTRAIL_PSEUDONYM_KEY", "private")
    assert "warning:" not in CliRunner().invoke(cli, ["worker"]).output


def _directives(policy: str) -> dict[str, list[str]]:
    return {rule.split()[0]: rule.split()[1:] for rule in policy.split("; ")}


def test_up_announces_the_development_key_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from privtrail.stack import StackError

    def no_stack(*args: object, **kwargs: object) -> None:
        raise StackError("not started in this test")

    monkeypatch.setattr("privtrail.stack.Stack", no_stack)
    monkeypatch.delenv("PRIVTRAIL_PSEUDONYM_KEY", raising=False)
    monkeypatch.setenv("COLUMNS", "1000")
    result = CliRunner().invoke(cli, ["up"])
    assert "not started in this test" in result.output
    assert result.output.count("PRIVTRAIL_PSEUDONYM_KEY") == 1
