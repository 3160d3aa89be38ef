"""Brokers run with their data dir as working directory: every path handed to them is absolute."""

from __future__ import annotations

from pathlib import Path

import pytest

from privtrail.brokers import KafkaBroker, NoidaBroker
from tests.support import free_port


def test_a_relative_data_dir_puts_noida_s_files_directly_under_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    broker = NoidaBroker(free_port(), Path(".privtrail"), binary=Path("/bin/true"))

    command = broker.command()

    assert command[command.index("--data-dir") + 1] == str(tmp_path / ".privtrail" / "noida")


def test_a_relative_data_dir_gives_kafka_an_absolute_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    broker = KafkaBroker(free_port(), Path(".privtrail"), binary=Path("/bin/true"))

    assert broker.command()[-1] == str(tmp_path / ".privtrail" / "kafka" / "server.properties")
    assert broker.log_path == tmp_path / ".privtrail" / "kafka.log"
