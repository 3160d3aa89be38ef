"""Apache Kafka in KRaft mode: one node that is both broker and controller, on 127.0.0.1."""

from __future__ import annotations

import base64
import secrets
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from pydantic import SecretStr

from config.kafka_security import KafkaSecurity
from config.settings import Settings
from privtrail.brokers.base import BrokerError, EmbeddedBroker
from privtrail.brokers.java import find_java
from privtrail.brokers.kafka_jars import KAFKA_VERSION, LOG4J_CONFIG, default_lib_dir, missing_jars

NODE_ID = 1
# The broker's own SASL user, for its inter-broker connections and its readiness probe.
BROKER_USER = "privtrail_broker"
# A small heap starts fast and is plenty for one development node; the serial collector has
# no background GC threads, which keeps an idle broker idle on a small machine.
JVM_OPTIONS = (
    "-Xms64m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:+ExitOnOutOfMemoryError",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
)


class KafkaBroker(EmbeddedBroker):
    """Apache Kafka run from the jars `make install` fetched, with a Java 17+ runtime.

    Its storage is formatted once per data dir; topics, records and committed offsets survive
    restarts. The controller listens on a second port, picked once and kept in the data dir.
    """

    name = "kafka"
    persistent = True
    supports_transactions = True
    client_tuning: ClassVar[dict[str, int | float]] = {}

    def __init__(
        self,
        port: int,
        data_dir: Path,
        host: str = "127.0.0.1",
        binary: Path | None = None,
        lib_dir: Path | None = None,
        sasl_users: Mapping[str, str] | None = None,
    ) -> None:
        """`sasl_users` (name: password): the client listener takes SASL_PLAINTEXT with the
        PLAIN mechanism, and only these users, instead of PLAINTEXT."""
        super().__init__(port, data_dir, host, binary)
        self.lib_dir = lib_dir if lib_dir is not None else configured_lib_dir()
        self.sasl_users: dict[str, str] | None = None
        if sasl_users is not None:
            self.sasl_users = {**sasl_users, BROKER_USER: secrets.token_urlsafe(24)}
            check_sasl_users(self.sasl_users)
            self.security = KafkaSecurity(
                protocol="SASL_PLAINTEXT",
                username=BROKER_USER,
                password=SecretStr(self.sasl_users[BROKER_USER]),
            )

    @classmethod
    def default_binary(cls) -> Path:
        return find_java(Settings().java)

    @classmethod
    def release(cls) -> str:
        return f"Apache Kafka {KAFKA_VERSION}"

    @classmethod
    def missing(cls) -> str | None:
        return super().missing() or missing_jars(configured_lib_dir())

    @property
    def kafka_dir(self) -> Path:
        return self.data_dir / "kafka"

    @property
    def log_dirs(self) -> Path:
        return self.kafka_dir / "data"

    @property
    def properties_path(self) -> Path:
        return self.kafka_dir / "server.properties"

    @property
    def controller_port_path(self) -> Path:
        return self.kafka_dir / "controller.port"

    def command(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.properties_path))

    def prepare(self, deadline: float) -> None:
        missing = missing_jars(self.lib_dir)
        if missing is not None:
            raise BrokerError(f"cannot start the kafka broker: {missing}")
        self.kafka_dir.mkdir(parents=True, exist_ok=True)
        self.properties_path.write_text(
            server_properties(
                self.host, self.port, self._controller_port(), self.log_dirs, self.sasl_users
            ),
            encoding="utf-8",
        )
        # Formatting writes meta.properties; formatting again would fail on a used log dir.
        if not (self.log_dirs / "meta.properties").exists():
            self._format_storage(deadline)

    def _controller_port(self) -> int:
        """The controller port this data dir used before if it is still free, else a new one.

        The quorum is a static voter set that lives in server.properties only, so a new port
        is safe; keeping the old one keeps the logs of successive runs comparable.
        """
        path = self.controller_port_path
        if path.exists():
            kept = int(path.read_text(encoding="utf-8"))
            if kept != self.port and _port_free(self.host, kept):
                return kept
        port = free_port(self.host, avoid=self.port)
        path.write_text(f"{port}\n", encoding="utf-8")
        return port

    def _format_storage(self, deadline: float) -> None:
        argv = self._java(
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            new_cluster_id(),
            "--config",
            str(self.properties_path),
        )
        with self.log_path.open("ab") as log:
            try:
                done = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.data_dir,
                    timeout=max(1.0, deadline - time.monotonic()),
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise BrokerError(
                    f"formatting the kafka storage in {self.log_dirs} did not finish in time; "
                    f"last output of {self.log_path}:\n{self.log_tail()}"
                ) from None
            except OSError as error:
                raise BrokerError(f"cannot run {self.binary}: {error.strerror}") from error
        if done.returncode != 0:
            raise BrokerError(
                f"formatting the kafka storage in {self.log_dirs} failed with code "
                f"{done.returncode}; last output of {self.log_path}:\n{self.log_tail()}"
            )

    def _java(self, main_class: str, *args: str) -> list[str]:
        return [
            str(self.binary),
            *JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            f"-Dprivtrail.kafka.log={self.log_path.resolve()}",
            "-cp",
            str(self.lib_dir / "*"),
            main_class,
            *args,
        ]


def configured_lib_dir() -> Path:
    return Settings().kafka_lib_dir or default_lib_dir()


def server_properties(
    host: str,
    port: int,
    controller_port: int,
    log_dirs: Path,
    sasl_users: Mapping[str, str] | None = None,
) -> str:
    """The configuration of a single node that is its own controller quorum.

    With `sasl_users`, the client listener is SASL_PLAINTEXT (PLAIN) for those users, the
    first of them `BROKER_USER`; the controller listener stays PLAINTEXT either way.
    """
    listener = "PLAINTEXT" if sasl_users is None else "SASL_PLAINTEXT"
    properties = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{host}:{controller_port}",
        "listeners": f"{listener}://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"{listener}://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": listener,
        "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,{listener}:{listener}",
        **(sasl_properties(listener, sasl_users) if sasl_users is not None else {}),
        "log.dirs": str(log_dirs.resolve()),
        # One node: every internal topic has one replica, or it cannot be created at all.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Fewer partitions of the internal topics than Kafka's 50: created faster on first use.
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.num.partitions": "4",
        # A new group's first member need not wait 3 s for others; tests and restarts join at once.
        "group.initial.rebalance.delay.ms": "0",
        # privtrail creates its topics with a checked partition count (privtrail/topics.py), and
        # Faust declares its own; a typo in a topic name must fail, not create a topic.
        "auto.create.topics.enable": "false",
        # Threads sized for a laptop, not a server: fewer threads also idle more cheaply.
        "num.network.threads": "2",
        "num.io.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        # The cleaner's 128 MB default buffer would take a quarter of the heap.
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        # The controller appends a no-op record this often to show other nodes it is alive;
        # there are none, and every 500 ms (the default) doubled the idle broker's CPU.
        "metadata.max.idle.interval.ms": "10000",
    }
    return "".join(f"{key}={value}\n" for key, value in properties.items())


def sasl_properties(listener: str, users: Mapping[str, str]) -> dict[str, str]:
    """PLAIN on `listener`: its JAAS config names the broker's own login and every user."""
    accounts = " ".join(f'user_{name}="{password}"' for name, password in users.items())
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{BROKER_USER}" password="{users[BROKER_USER]}" {accounts};'
    )
    return {
        "sasl.enabled.mechanisms": "PLAIN",
        "connection.failed.authentication.delay.ms": "0",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        f"listener.name.{listener.lower()}.plain.sasl.jaas.config": jaas,
    }


def check_sasl_users(users: Mapping[str, str]) -> None:
    """Refuse names and passwords the JAAS config could not hold as they are."""
    for name, password in users.items():
        if not name or not all(c.isalnum() or c == "_" for c in name):
            raise BrokerError(f"SASL user name {name!r} must be letters, digits and '_'")
        if not password or any(c in password for c in '"\\\n\r'):
            raise BrokerError(
                f"the password of SASL user {name!r} must be non-empty, without quotes, "
                "backslashes or line breaks"
            )


def new_cluster_id() -> str:
    """A random cluster id as Kafka writes them: 16 bytes, URL-safe base64 without padding."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # Kafka's own ids never start with "-", which command lines would read as an option.
        if not cluster_id.startswith("-"):
            return cluster_id


def free_port(host: str = "127.0.0.1", avoid: int | None = None) -> int:
    """A port nothing listens on now (other than `avoid`), picked by the kernel."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port != avoid:
            return port


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True
