"""Transport security: SASL and TLS reach every Kafka client, https:// reaches ClickHouse."""

from __future__ import annotations

import ast
import ssl
from pathlib import Path
from typing import Any

import faust
import pytest
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from config.kafka_security import KafkaSecurity
from config.settings import Settings
from events.producer import login_refusal
from privtrail import cli
from privtrail.brokers.apache_kafka import BROKER_USER, check_sasl_users, server_properties
from privtrail.brokers.base import BrokerError
from sinks.clickhouse.dsn import StoreError
from sinks.clickhouse.store import Store
from sinks.clickhouse.tls import TlsMisconfigured, tls_options
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("config", "events", "streams", "sinks", "privtrail")
CLIENTS = {
    "KafkaProducer",
    "KafkaConsumer",
    "KafkaAdminClient",
    "AIOKafkaProducer",
    "AIOKafkaConsumer",
    "AIOKafkaClient",
    "App",
}
# The emitter SDK cannot import settings (it is the bottom layer): its producer takes the
# options its caller passes, and the CLI passes the settings' (test below).
SECURED_BY_CALLER = {"events/producer.py"}

SCRAM = KafkaSecurity(
    protocol="SASL_SSL",
    mechanism="SCRAM-SHA-512",
    username="privtrail",
    password=SecretStr("s3cret"),
)


def _client_calls() -> list[tuple[str, int, ast.Call]]:
    calls = []
    for package in PRODUCTION:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Call) and _called_name(node.func) in CLIENTS:
                    calls.append((str(path.relative_to(ROOT)), node.lineno, node))
    return calls


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        # faust.App(...), not app.App or any other attribute called App.
        return func.attr if func.attr != "App" or func.value.id == "faust" else None
    return None


def test_every_kafka_client_the_project_makes_takes_the_security_options() -> None:
    calls = _client_calls()
    unsecured = [
        f"{path}:{line}"
        for path, line, call in calls
        if path not in SECURED_BY_CALLER
        and not any(kw.arg is None and "security" in ast.unparse(kw.value) for kw in call.keywords)
        and not any("security" in ast.unparse(arg) for arg in call.args)
    ]
    assert len(calls) >= 9, "the scan no longer finds the clients it guards"
    assert unsecured == []


def test_kafka_python_gets_sasl_and_tls_files() -> None:
    security = SCRAM.model_copy(update={"cafile": Path("/ca.pem")})
    assert security.kafka_python() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "privtrail",
        "sasl_plain_password": "s3cret",
        "ssl_cafile": "/ca.pem",
    }


def test_aiokafka_gets_a_tls_context() -> None:
    options = SCRAM.aiokafka()
    assert isinstance(options.pop("ssl_context"), ssl.SSLContext)
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "privtrail",
        "sasl_plain_password": "s3cret",
    }


def test_faust_gets_broker_credentials() -> None:
    credentials = SCRAM.faust()["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.username == "privtrail"
    assert credentials.password == "s3cret"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert isinstance(credentials.ssl_context, ssl.SSLContext)
    assert isinstance(
        KafkaSecurity(protocol="SSL").faust()["broker_credentials"], faust.SSLCredentials
    )
    assert KafkaSecurity().faust() == {}
    assert KafkaSecurity().kafka_python() == {"security_protocol": "PLAINTEXT"}


def test_the_faust_app_is_made_with_the_credentials() -> None:
    from streams.app import create_app
    from streams.rules import load_policy_set

    settings = Settings(
        kafka_bootstrap="127.0.0.1:9",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="worker",
        kafka_sasl_password=SecretStr("pw"),
    )
    app = create_app(settings, load_policy_set(settings.policies_dir))
    credentials = app.conf.broker_credentials
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.mechanism.value) == ("worker", "SCRAM-SHA-256")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PRIVTRAIL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "PRIVTRAIL_KAFKA_SASL_PASSWORD"),
        (
            {"PRIVTRAIL_KAFKA_SECURITY_PROTOCOL": "SSL", "PRIVTRAIL_KAFKA_SSL_CERTFILE": "/c"},
            "PRIVTRAIL_KAFKA_SSL_KEYFILE",
        ),
        ({"PRIVTRAIL_KAFKA_SSL_CAFILE": "/ca.pem"}, "PRIVTRAIL_KAFKA_SECURITY_PROTOCOL"),
        ({"PRIVTRAIL_KAFKA_SASL_MECHANISM": "GSSAPI"}, "kafka_sasl_mechanism"),
    ],
    ids=["sasl-without-password", "cert-without-key", "ca-on-plaintext", "unknown-mechanism"],
)
def test_incomplete_security_settings_are_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=named):
        Settings()


def test_child_processes_get_the_security_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="svc",
        kafka_sasl_password=SecretStr("pw"),
        kafka_ssl_cafile=Path("/etc/ca.pem"),
        clickhouse_ca_cert=Path("/etc/ch.pem"),
        clickhouse_verify=False,
    )
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    child = Settings()
    assert child.kafka_security == settings.kafka_security
    assert child.kafka_sasl_password == SecretStr("pw")
    assert (child.clickhouse_ca_cert, child.clickhouse_verify) == (Path("/etc/ch.pem"), False)


def test_cli_emit_connects_with_the_settings_security(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    made: list[dict[str, Any]] = []

    class Refused(Exception):
        pass

    def emitter(*_: Any, **options: Any) -> None:
        made.append(options)
        raise Refused

    monkeypatch.setattr("events.emitter.Emitter", emitter)
    monkeypatch.setenv("PRIVTRAIL_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("PRIVTRAIL_KAFKA_SASL_USERNAME", "cli")
    monkeypatch.setenv("PRIVTRAIL_KAFKA_SASL_PASSWORD", "pw")
    path = tmp_path / "event.json"
    path.write_bytes(b"{}")
    CliRunner().invoke(cli.app, ["emit", "--force", str(path)])
    assert made and made[0]["sasl_plain_username"] == "cli"
    assert made[0]["sasl_plain_password"] == "pw"
    assert made[0]["security_protocol"] == "SASL_PLAINTEXT"


def test_https_store_is_secure_and_verified_against_the_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert tls_options("https://ch:8443", True, ca) == {
        "secure": True,
        "verify": True,
        "ca_cert": str(ca),
    }
    assert tls_options("https://ch:8443", False) == {"secure": True, "verify": False}
    assert tls_options("http://ch:8123") == {}
    assert tls_options(f"chdb://{tmp_path}") == {}


@pytest.mark.parametrize(
    ("dsn", "ca", "message"),
    [
        ("http://ch:8123", "ca.pem", "is http://, not https://"),
        ("https://ch:8443", "missing.pem", "missing.pem is not a file"),
    ],
)
def test_tls_options_that_cannot_apply_are_refused(
    tmp_path: Path, dsn: str, ca: str, message: str
) -> None:
    (tmp_path / "ca.pem").write_text("")
    with pytest.raises(TlsMisconfigured, match=message):
        tls_options(dsn, True, tmp_path / ca)


def test_the_store_opens_https_through_clickhouse_connect_with_tls(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}

    def get_client(**options: Any) -> None:
        seen.update(options)
        raise ConnectionRefusedError("no server here")

    monkeypatch.setattr("clickhouse_connect.get_client", get_client)
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    with pytest.raises(
        StoreError, match=r"cannot open the store at https://u:\*\*\*@ch:8443/audit"
    ):
        Store.open("https://u:pw@ch:8443/audit", ca_cert=ca)
    assert seen["dsn"] == "https://u:pw@ch:8443"
    assert (seen["secure"], seen["verify"], seen["ca_cert"]) == (True, True, str(ca))


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_the_sasl_listener_lists_every_user_and_keeps_the_controller_plaintext(
    tmp_path: Path,
) -> None:
    users = {"alice": "a-pw", BROKER_USER: "b-pw"}
    config = _properties(server_properties("127.0.0.1", 9092, 40001, tmp_path, users))
    assert config["listeners"] == "SASL_PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:40001"
    assert config["listener.security.protocol.map"] == (
        "CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
    )
    assert config["inter.broker.listener.name"] == "SASL_PLAINTEXT"
    assert config["sasl.enabled.mechanisms"] == "PLAIN"
    jaas = config["listener.name.sasl_plaintext.plain.sasl.jaas.config"]
    assert jaas.startswith("org.apache.kafka.common.security.plain.PlainLoginModule required ")
    assert f'username="{BROKER_USER}" password="b-pw"' in jaas
    assert 'user_alice="a-pw"' in jaas and jaas.endswith(";")


@pytest.mark.parametrize(
    "users", [{"al ice": "pw"}, {"alice": 'p"w'}, {"alice": ""}], ids=["name", "quote", "empty"]
)
def test_sasl_users_the_jaas_config_cannot_hold_are_refused(users: dict[str, str]) -> None:
    with pytest.raises(BrokerError, match=r"alice|al ice"):
        check_sasl_users(users)


def test_only_a_refused_login_is_reported_as_one() -> None:
    sasl = SCRAM.model_copy(update={"protocol": "SASL_PLAINTEXT"}).kafka_python()
    assert login_refusal("127.0.0.1:9", KafkaSecurity().kafka_python()) is None
    # Nothing listens on a free port: unreachable, not refused.
    assert login_refusal(f"127.0.0.1:{free_port()}", sasl) is None
