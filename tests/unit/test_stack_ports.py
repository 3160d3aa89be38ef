"""A port the stack needs that is taken is named, with the variable that moves it, at once."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from config.settings import Settings
from privtrail.cli import app
from privtrail.stack import busy_ports
from tests.support import free_port


@contextmanager
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def settings(tmp_path: Path, **fields: object) -> Settings:
    base = {"data_dir": tmp_path, "api_port": free_port(), "embedded_kafka_port": free_port()}
    return Settings.model_validate({**base, **fields})


def test_free_ports_are_no_problem(tmp_path: Path) -> None:
    assert busy_ports(settings(tmp_path)) == []


def test_each_taken_port_is_named_with_its_variable(tmp_path: Path) -> None:
    with taken_port() as api, taken_port() as broker:
        problems = busy_ports(settings(tmp_path, api_port=api, embedded_kafka_port=broker))

    assert len(problems) == 2
    assert f"the embedded broker: 127.0.0.1:{broker} is in use" in problems[0]
    assert "set PRIVTRAIL_EMBEDDED_KAFKA_PORT to a free port" in problems[0]
    assert f"the query API: 127.0.0.1:{api} is in use" in problems[1]
    assert "set PRIVTRAIL_API_PORT to a free port" in problems[1]


def test_an_external_cluster_leaves_the_broker_port_alone(tmp_path: Path) -> None:
    with taken_port() as broker:
        external = settings(tmp_path, embedded_kafka_port=broker, kafka_bootstrap="kafka:9092")
        assert busy_ports(external) == []


def test_up_with_the_api_port_taken_says_so_before_starting_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRIVTRAIL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PRIVTRAIL_EMBEDDED_KAFKA_PORT", str(free_port()))
    # `up` turns SIGTERM into Ctrl-C for itself; the test runner keeps its own handler.
    monkeypatch.setattr(signal, "signal", lambda signum, handler: None)
    with taken_port() as api:
        monkeypatch.setenv("PRIVTRAIL_API_PORT", str(api))
        result = CliRunner().invoke(app, ["up"])

    assert result.exit_code == 1, result.output
    message = " ".join(result.stderr.split())
    assert f"127.0.0.1:{api} is in use" in message
    assert "PRIVTRAIL_API_PORT" in message
    assert not (tmp_path / "kafka").exists(), "the broker was started anyway"
