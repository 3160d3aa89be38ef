"""The broker launcher: registry, start failures that explain themselves, and clean stops."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from config.settings import Settings
from privtrail.brokers import (
    BROKERS,
    BrokerError,
    KafkaBroker,
    NoidaBroker,
    embedded_broker,
    tuned_settings,
)
from privtrail.processes import stop_process_group
from tests.support import free_port


def fake_binary(tmp_path: Path, script: str) -> Path:
    path = tmp_path / "fake-broker"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_registry_names_each_embedded_broker() -> None:
    assert dict(BROKERS) == {"kafka": KafkaBroker, "noida": NoidaBroker}


def test_unknown_broker_kind_lists_the_known_kinds(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match=r"unknown embedded broker 'tansu'.*kafka, noida"):
        embedded_broker("tansu", 9092, tmp_path)


@pytest.mark.parametrize("port", [0, 65536])
def test_out_of_range_port_is_rejected(port: int, tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match=f"got {port}"):
        embedded_broker("noida", port, tmp_path)


@pytest.mark.parametrize("kind", sorted(BROKERS))
def test_factory_builds_an_unstarted_broker_with_a_runnable_binary(
    kind: str, tmp_path: Path
) -> None:
    broker = embedded_broker(kind, 19999, tmp_path)

    assert isinstance(broker, BROKERS[kind])
    assert broker.bootstrap == "127.0.0.1:19999"
    assert broker.log_path.parent == tmp_path
    assert not broker.running
    assert os.access(broker.binary, os.X_OK)


@pytest.mark.parametrize("kind", sorted(BROKERS))
def test_client_tuning_names_real_settings(kind: str) -> None:
    assert set(BROKERS[kind].client_tuning) <= set(Settings.model_fields)


@pytest.mark.parametrize("kind", sorted(BROKERS))
def test_tuned_settings_leave_brokers_without_quirks_alone(kind: str) -> None:
    settings = Settings.model_validate({"broker": kind})

    assert tuned_settings(settings) == settings


def test_start_reports_the_broker_output_when_it_exits(tmp_path: Path) -> None:
    binary = fake_binary(tmp_path, 'echo "fatal: data dir is corrupt" >&2; exit 3')
    broker = NoidaBroker(free_port(), tmp_path / "data", binary=binary)

    with pytest.raises(BrokerError, match="exited with code 3") as raised:
        broker.start(timeout=10)

    assert "fatal: data dir is corrupt" in str(raised.value)
    assert str(broker.log_path) in str(raised.value)
    assert not broker.running


def test_start_reports_a_missing_binary(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-broker"
    broker = NoidaBroker(free_port(), tmp_path, binary=missing)

    with pytest.raises(BrokerError, match=f"cannot run the noida broker binary {missing}"):
        broker.start()


def test_start_refuses_a_port_that_is_already_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = NoidaBroker(port, tmp_path)

        with pytest.raises(BrokerError, match=f"127.0.0.1:{port} is unavailable"):
            broker.start()

    assert not broker.log_path.exists()


def test_start_gives_up_on_a_silent_broker_and_kills_it(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    binary = fake_binary(
        tmp_path, f'echo $$ > {pid_file}; echo "waiting for quorum"; exec sleep 60'
    )
    broker = NoidaBroker(free_port(), tmp_path / "data", binary=binary)
    started = time.monotonic()

    with pytest.raises(BrokerError, match="not ready in time") as raised:
        broker.start(timeout=1)

    assert time.monotonic() - started < 10
    assert "waiting for quorum" in str(raised.value)
    assert not process_exists(int(pid_file.read_text()))


def test_stop_is_idempotent_and_frees_the_port(tmp_path: Path) -> None:
    broker = NoidaBroker(free_port(), tmp_path)
    broker.stop()
    broker.start()
    assert broker.running

    broker.stop()
    broker.stop()

    assert not broker.running
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", broker.port))


def test_stop_kills_a_process_group_that_ignores_sigterm() -> None:
    process = subprocess.Popen(
        ["sh", "-c", "trap '' TERM; sleep 60 & wait"], start_new_session=True
    )
    time.sleep(0.2)

    assert stop_process_group(process, timeout=0.5) == -signal.SIGKILL
